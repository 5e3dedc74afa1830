/* Per-host health state that outlives host sets: active health check and outlier detection
 * flags, the outlier detector's counters, and per-host request/connection gauges for /clusters.
 *
 * Who writes what: workers only do relaxed atomic adds/stores on a host's counters
 * (outlier_report, the rq/cx gauges); the main thread owns every decision (ejecting,
 * un-ejecting, health check results) and, when a host's health changes, publishes a new host
 * set whose load-balancing table was built with the new health (cluster_set_hosts), so that
 * priority loads and panic mode stay exact. Workers never read the flags on the request
 * path; they pick from the table they hold. One record per address per cluster, owned by the
 * cluster (its snapshot), found by host->hh. */
#ifndef WEFT_PROXY_HOST_HEALTH_H
#define WEFT_PROXY_HOST_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/loop.h"
#include "proxy/config.h"

enum host_health_flag {
    HHF_FAILED_ACTIVE_HC = 1u << 0,   /* /failed_active_hc */
    HHF_FAILED_OUTLIER = 1u << 1,     /* /failed_outlier_check */
    HHF_PENDING_ACTIVE_HC = 1u << 2,  /* /pending_active_hc: no check has answered yet */
};
#define HHF_UNHEALTHY (HHF_FAILED_ACTIVE_HC | HHF_FAILED_OUTLIER)

/* Worker-to-main events: a consecutive-failure counter reached its threshold. */
enum outlier_event { OE_5XX = 1u << 0, OE_GATEWAY = 1u << 1, OE_LOCAL_ORIGIN = 1u << 2 };

struct hc_session;

struct host_health {
    char addr[ADDR_STR_MAX];
    struct sockaddr_storage sa;
    _Atomic uint32_t flags;              /* enum host_health_flag; written by the main thread */
    /* Written by workers. */
    _Atomic uint32_t consecutive_5xx, consecutive_gateway, consecutive_local;
    _Atomic uint32_t events;             /* enum outlier_event, taken by the main thread */
    _Atomic uint64_t ext_total, ext_success;    /* this interval: external origin (HTTP status) */
    _Atomic uint64_t local_total, local_success;/* this interval: local origin (split mode) */
    _Atomic int64_t rq_active, cx_active;
    _Atomic uint64_t rq_total, rq_error, rq_success, rq_timeout, cx_connect_fail;
    /* Main thread only. */
    uint64_t ejected_at_ms, eject_ms;    /* when ejected, for how long */
    uint32_t num_ejections;              /* Envoy's ejection multiplier */
    double success_rate;                 /* last interval's, -1 when not computed */
    double local_success_rate;
    uint32_t hc_fails, hc_oks;           /* consecutive active health check results */
    uint64_t hc_next_ms;
    struct hc_session *hc;               /* a check in flight, or NULL */
    bool in_use;                         /* in the cluster's current host set */
    uint64_t healthy_since_ms;           /* slow start: joined, or passed active health checking
                                          * after failing (clock_now_us() / 1000) */
};

/* Outlier detection settings (Cluster.outlier_detection), Envoy's defaults. */
struct outlier_config {
    uint32_t consecutive_5xx, consecutive_gateway_failure, consecutive_local_origin_failure;
    uint64_t interval_ms, base_ejection_ms, max_ejection_ms, max_ejection_jitter_ms;
    uint32_t max_ejection_percent;
    uint32_t enforcing_consecutive_5xx, enforcing_consecutive_gateway_failure,
        enforcing_consecutive_local_origin_failure, enforcing_success_rate, enforcing_local_origin_success_rate,
        enforcing_failure_percentage, enforcing_failure_percentage_local_origin;
    uint32_t success_rate_minimum_hosts, success_rate_request_volume, success_rate_stdev_factor;
    uint32_t failure_percentage_threshold, failure_percentage_minimum_hosts, failure_percentage_request_volume;
    bool split_external_local_origin_errors;
    bool successful_active_health_check_uneject_host;
    bool always_eject_one_host;
};

enum hc_kind { HC_HTTP, HC_TCP };
struct hc_range { int64_t start, end; };   /* [start, end) */
struct hc_header { char *name, *value; bool append; };

/* One Cluster.health_checks entry. */
struct hc_config {
    enum hc_kind kind;
    uint64_t timeout_ms, interval_ms, interval_jitter_ms, initial_jitter_ms, no_traffic_interval_ms,
        unhealthy_interval_ms, unhealthy_edge_interval_ms, healthy_edge_interval_ms;
    uint32_t interval_jitter_percent;
    uint32_t unhealthy_threshold, healthy_threshold;
    uint32_t alt_port;
    char *path, *host;                   /* HTTP */
    struct hc_header *headers; size_t n_headers;
    struct hc_range *expected; size_t n_expected;   /* default [200, 300) */
    uint8_t *send; size_t send_len;      /* TCP (and HTTP body is not supported) */
    uint8_t **receive; size_t *receive_len; size_t n_receive;
};

/* Stats "cluster.<name>.outlier_detection." */
enum od_stat {
    ODS_EJECTIONS_ACTIVE, ODS_EJECTIONS_OVERFLOW, ODS_EJECTIONS_TOTAL, ODS_EJECTIONS_ENFORCED_TOTAL,
    ODS_ENFORCED_5XX, ODS_DETECTED_5XX, ODS_ENFORCED_GATEWAY, ODS_DETECTED_GATEWAY,
    ODS_ENFORCED_LOCAL, ODS_DETECTED_LOCAL, ODS_ENFORCED_SR, ODS_DETECTED_SR, ODS_ENFORCED_LOCAL_SR,
    ODS_DETECTED_LOCAL_SR, ODS_ENFORCED_FP, ODS_DETECTED_FP, ODS_ENFORCED_LOCAL_FP, ODS_DETECTED_LOCAL_FP,
    ODS_EJECTIONS_CONSECUTIVE_5XX,
    ODS_COUNT
};
/* Stats "cluster.<name>.health_check." */
enum hc_stat { HCS_ATTEMPT, HCS_SUCCESS, HCS_FAILURE, HCS_NETWORK_FAILURE, HCS_PASSIVE_FAILURE,
               HCS_VERIFY_CLUSTER, HCS_HEALTHY, HCS_DEGRADED, HCS_COUNT };

/* A cluster's health machinery; NULL in struct cluster when it has neither outlier detection
 * nor health checks. */
struct cluster_health {
    struct cluster *c;
    bool od_enabled;
    struct outlier_config od;
    struct hc_config *hc;                /* the first health check (others are refused) */
    struct stat_block *od_stats, *hc_stats;
    struct host_health **hosts;          /* every address seen; records live with the cluster */
    size_t n, cap;
    uint64_t next_interval_ms;
    bool republish;                      /* a host's health changed: publish a new host set */
};

/* Builds a cluster's health state from parsed settings (either may be NULL); takes hc. */
struct cluster_health *cluster_health_new(struct cluster *c, const char *stat_name, const struct outlier_config *od,
                                          struct hc_config *hc);
void cluster_health_free(struct cluster_health *ch);
void hc_config_free(struct hc_config *hc);
void outlier_config_defaults(struct outlier_config *od);

/* Main thread, before a host set is published: points each host at its record (made on
 * first sight: failed/pending active HC when health checks are configured). Returns true
 * when some host is unhealthy by its record, so the set's load-balancing table must be
 * rebuilt with host_healthy_for_lb. */
bool cluster_health_attach(struct cluster *c, struct host_set *hs);
/* What the load balancer treats as healthy: EDS health and no failed check or ejection. */
static inline bool host_healthy_for_lb(const struct host *h)
{
    return h->healthy &&
           !(h->hh && (atomic_load_explicit(&h->hh->flags, memory_order_relaxed) & HHF_UNHEALTHY));
}

/* Worker: the outcome of one request to host h of c. status: the upstream's HTTP status (0:
 * none). local: what happened on the connection when there was no status: 0 none/success,
 * else enum outlier_local. */
enum outlier_local { OL_NONE, OL_CONNECT_FAILED, OL_TIMEOUT, OL_RESET };
void outlier_report(struct cluster *c, const struct host *h, int status, enum outlier_local local);

/* Main thread: health checks and outlier decisions for the clusters of s. old: the snapshot s
 * replaces (NULL at start): hosts of a cluster with the same name keep their health. */
struct health;
struct health *health_start(struct loop *loop, struct snapshot *s, struct snapshot *old);
void health_stop(struct health *h);

/* health.c internals shared with health_check.c. */
void health_host_result(struct cluster_health *ch, struct host_health *hh, bool ok, bool network, uint64_t now_ms);
void hc_start_check(struct loop *loop, struct cluster_health *ch, struct host_health *hh);
void hc_cancel(struct loop *loop, struct host_health *hh);
/* Renders a host's flags as Envoy's /clusters does ("healthy" or "/failed_active_hc/..."). */
const char *host_health_flags(const struct host *h, char *buf, size_t cap);

#endif
