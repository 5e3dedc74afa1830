/* Reads a Cluster's circuit_breakers, outlier_detection and health_checks into the cluster
 * (struct circuit_breakers, struct cluster_health). Called by snapshot.c's build_cluster, for
 * static clusters and CDS ones alike. */
#ifndef WEFT_PROXY_RESILIENCE_BUILD_H
#define WEFT_PROXY_RESILIENCE_BUILD_H

#include <stddef.h>

#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "proxy/config.h"

/* stat_name: alt_stat_name or the cluster's name. Returns 0, or -1 with "field: problem" in
 * err (the field path relative to the cluster). */
int resilience_build(const Envoy__Config__Cluster__V3__Cluster *pc, struct cluster *cl, const char *stat_name,
                     char *err, size_t errlen);
void resilience_free(struct cluster *cl);

#endif
