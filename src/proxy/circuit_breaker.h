/* Envoy's circuit breakers (Cluster.circuit_breakers.thresholds): per cluster and routing
 * priority, caps on connections, pending requests, active requests, active retries and
 * connection pools. The counts are shared by every worker: one relaxed atomic per resource
 * (an increment that undoes itself when it went over the cap), never a lock. Tripping costs
 * the request a local 503 with response flag UO and counts the overflow stat. */
#ifndef WEFT_PROXY_CIRCUIT_BREAKER_H
#define WEFT_PROXY_CIRCUIT_BREAKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/stats.h"

struct cluster;

/* core.v3.RoutingPriority, same numbers. */
enum cb_priority { CB_DEFAULT = 0, CB_HIGH = 1, CB_PRIORITIES };

enum cb_resource { CB_CX, CB_PENDING, CB_RQ, CB_RETRY, CB_POOLS, CB_RESOURCES };

#define CB_DEFAULT_MAX 1024u   /* max_connections, max_pending_requests, max_requests */
#define CB_DEFAULT_RETRIES 3u  /* max_retries */
#define CB_UNLIMITED UINT64_MAX /* max_connection_pools default */

/* Cluster-level overflow counters, "cluster.<name>." (a block of its own beside the
 * cluster's main one). */
enum cb_stat { CBS_CX_OVERFLOW, CBS_RQ_PENDING_OVERFLOW, CBS_RQ_RETRY_OVERFLOW, CBS_CX_POOL_OVERFLOW,
               CBS_LB_HEALTHY_PANIC, CBS_COUNT };
/* "cluster.<name>.circuit_breakers.<priority>." : *_open (always) and remaining_* (with
 * track_remaining), both indexed by enum cb_resource. */
enum cb_gauge_set { CBG_OPEN, CBG_REMAINING };

struct cb_level {
    uint64_t max[CB_RESOURCES];
    bool track_remaining;
    struct stat_block *open, *remaining;   /* remaining is NULL without track_remaining */
    _Alignas(64) _Atomic uint64_t count[CB_RESOURCES];
};

struct circuit_breakers {
    struct cb_level level[CB_PRIORITIES];
    struct stat_block *stats;              /* enum cb_stat */
};

/* Fills cb with Envoy's defaults and makes its stat blocks for cluster stat name `name`. */
void cb_init(struct circuit_breakers *cb, const char *name);
/* Once the thresholds are read: makes the remaining_* blocks of the levels with
 * track_remaining (only those have them, as in Envoy) and sets every gauge. */
void cb_track_remaining(struct circuit_breakers *cb, const char *name);
/* Takes one unit of resource r at priority p when under the cap; counts the overflow stat
 * (in stats slot `slot`, the caller's worker) and returns false otherwise. */
bool cb_acquire(struct circuit_breakers *cb, int p, enum cb_resource r, unsigned slot);
void cb_release(struct circuit_breakers *cb, int p, enum cb_resource r);
/* Takes one unit past the cap (Envoy lets a pool with no connection open one anyway). */
void cb_force(struct circuit_breakers *cb, int p, enum cb_resource r);
/* Sets every *_open / remaining_* gauge from the current counts (main thread, periodically:
 * workers set them too, but two racing workers may leave a stale value for a moment). */
void cb_refresh_gauges(struct circuit_breakers *cb);

/* For the retry logic: true when one more retry of a request at route priority p may start
 * (max_retries); otherwise counts upstream_rq_retry_overflow and the retry must not be made
 * (Envoy: the upstream's response is passed on / URX). Each true is paired with one
 * cb_retry_end when that retry attempt ends. */
bool cb_retry_begin(struct cluster *c, int p, unsigned slot);
void cb_retry_end(struct cluster *c, int p);

#endif
