/* Load balancing: Envoy's ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH and MAGLEV policies with
 * Envoy's priority levels, overprovisioning factor and panic threshold.
 *
 * The main thread builds one immutable `struct lb_table` per host set (cluster × config
 * snapshot); it may be read by every worker at once. Each worker owns one small mutable
 * `struct lb_state` per table (round-robin cursors, EDF schedules, its random generator), made
 * once with lb_state_new(). lb_pick() takes no locks, uses no atomics and never allocates.
 *
 * Hosts are named by their index in the array given to lb_table_build(); lb_pick() returns such
 * an index, and active_rq / exclude are indexed the same way. */
#ifndef WEFT_PROXY_LB_H
#define WEFT_PROXY_LB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults (Envoy's) and the limits lb_table_build() enforces. */
#define LB_RING_MIN_SIZE_DEFAULT    1024u      /* RingHashLbConfig.minimum_ring_size */
#define LB_RING_MAX_SIZE_DEFAULT    8388608u   /* RingHashLbConfig.maximum_ring_size (8M) */
#define LB_RING_SIZE_LIMIT          8388608u   /* Envoy's upper bound for both ring sizes */
#define LB_MAGLEV_SIZE_DEFAULT      65537u     /* MaglevLbConfig.table_size (prime) */
#define LB_MAGLEV_SIZE_LIMIT        5000011u   /* Envoy's upper bound (prime) */
#define LB_CHOICE_COUNT_DEFAULT     2u         /* LeastRequestLbConfig.choice_count */
#define LB_CHOICE_COUNT_LIMIT       100u       /* ours: samples per pick; more is a full scan anyway */
#define LB_PANIC_THRESHOLD_DEFAULT  50u        /* CommonLbConfig.healthy_panic_threshold, percent */
#define LB_OVERPROVISIONING_DEFAULT 1.4        /* ClusterLoadAssignment.Policy: 140 percent */
#define LB_MAX_HOSTS                1048576u   /* hosts in one table */
#define LB_KEY_MAX                  4096u      /* bytes of a host key (RING_HASH, MAGLEV) */
#define LB_MAX_PRIORITIES           32u        /* distinct priority values in one table */
#define LB_TABLE_ENTRIES_LIMIT      33554432u  /* ring or Maglev entries over all priority levels
                                                * (12 or 4 bytes each): 4 full 8M rings */
#define LB_PICK_ATTEMPTS            6u         /* picks tried while the result is excluded: the first
                                                * plus Istio's host_selection_retry_max_attempts (5) */

/* RingHashLbConfig.HashFunction, same numbers as the proto enum. */
enum lb_ring_hash_fn { LB_HASH_XX_HASH = 0, LB_HASH_MURMUR_HASH_2 = 1 };

/* Input to lb_table_build. Nothing is kept after it returns. */
struct lb_host_info {
    const char *key;      /* host identity for hashing: Envoy hashes the address string "ip:port"
                           * ("[v6]:port"); only read by RING_HASH and MAGLEV, where it must be
                           * 1..LB_KEY_MAX bytes */
    size_t key_len;
    uint32_t weight;      /* load_balancing_weight, >= 1 (0 is read as 1, Envoy's default) */
    uint32_t priority;    /* LocalityLbEndpoints.priority, 0 = highest */
    bool healthy;         /* false: failed health check / EDS health_status not HEALTHY or UNKNOWN */
    uint64_t since_ms;    /* slow start: when the host joined or last passed its health check
                           * after failing (CLOCK_MONOTONIC ms, clock_now_us() / 1000); 0: long ago */
};

enum lb_policy { LB_ROUND_ROBIN, LB_LEAST_REQUEST, LB_RANDOM, LB_RING_HASH, LB_MAGLEV };

/* Cluster-level settings. Fields left 0 take the default, except healthy_panic_threshold_pct
 * (0 disables panic mode, as in Envoy) and active_request_bias (0 = plain weights): start from
 * lb_config_defaults(). */
struct lb_config {
    enum lb_policy policy;
    uint64_t ring_min_size, ring_max_size;   /* RingHashLbConfig: defaults 1024 and 8M */
    int ring_hash_fn;                        /* LB_HASH_XX_HASH; MURMUR_HASH_2 is rejected */
    uint64_t maglev_table_size;              /* default 65537, must be prime */
    uint32_t choice_count;                   /* LeastRequest: default 2, >= 2 */
    double active_request_bias;              /* LeastRequest: default 1.0, >= 0 */
    uint32_t healthy_panic_threshold_pct;    /* default 50; values over 100 act as 100 */
    double overprovisioning_factor;          /* default 1.4 (Envoy's 140 percent) */
    /* {round_robin,least_request}_lb_config.slow_start_config: a host's weight ramps up over
     * the window after since_ms as weight × max(min_weight, (max(t, 1 s) / window)^(1 /
     * aggression)). window 0: off. Read by ROUND_ROBIN and LEAST_REQUEST only. */
    uint64_t slow_start_window_ms;
    double slow_start_aggression;            /* default 1.0, > 0 */
    double slow_start_min_weight;            /* min_weight_percent / 100, default 0.1 */
};

/* Fills cfg with Envoy's defaults for policy. */
void lb_config_defaults(struct lb_config *cfg, enum lb_policy policy);

/* Parses an Envoy Cluster.LbPolicy name ("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM",
 * "RING_HASH", "MAGLEV"). Returns the enum lb_policy value, or -EINVAL for any other name. */
int lb_policy_parse(const char *envoy_name);

/* Builds the table for hosts[0..n) under cfg (both only read; nothing is kept). hosts may be
 * NULL when n is 0: such a table picks nothing. Returns a table the caller frees with
 * lb_table_free(), or NULL with a one-line reason in err (may be NULL) on bad config, a limit
 * above, or out of memory. Main thread: ring and Maglev tables take time to build. */
struct lb_table *lb_table_build(const struct lb_config *cfg, const struct lb_host_info *hosts,
                                size_t n, char *err, size_t errlen);
/* Frees t (NULL is fine). Every lb_state made from t must be freed first or not used again. */
void lb_table_free(struct lb_table *t);

/* What the table decided for one priority level (for admin output, stats and tests). */
struct lb_level_info {
    uint32_t priority;             /* the LocalityLbEndpoints.priority value */
    uint32_t hosts, healthy;       /* hosts at this priority, and how many are healthy */
    uint32_t health_pct;           /* healthy share × overprovisioning factor, capped at 100 */
    uint32_t load_pct;             /* share of requests sent to this level; sums to 100 */
    bool panic;                    /* picks among all hosts of the level, healthy or not */
    uint32_t pick_hosts;           /* hosts picks are made from (healthy, or all in panic) */
    uint64_t entries;              /* RING_HASH ring size / MAGLEV table size, else 0 */
    uint64_t min_entries_per_host; /* Envoy's min/max_hashes_per_host (ring) and */
    uint64_t max_entries_per_host; /* min/max_entries_per_host (maglev) gauges, else 0 */
};
/* Number of priority levels in t: the distinct priority values, in increasing order. */
size_t lb_table_levels(const struct lb_table *t);
/* Fills *out for level i (0-based, increasing priority value). Returns 0, or -EINVAL when i is
 * out of range. */
int lb_table_level(const struct lb_table *t, size_t i, struct lb_level_info *out);
/* Hosts in t (the n given to lb_table_build). */
size_t lb_table_hosts(const struct lb_table *t);

/* Makes a worker's state for t (only read; must outlive the state). seed picks this worker's
 * random stream and round-robin starting points: give each worker a different one. Returns
 * NULL on out of memory. Free with lb_state_free(). */
struct lb_state *lb_state_new(const struct lb_table *t, uint64_t seed);
void lb_state_free(struct lb_state *s);

/* Picks a host for one request. t is only read; s (made from t) is updated and must be used by
 * one thread only. has_hash/hash: the route's hash_policy result (see lb_hash_key); used by
 * RING_HASH and MAGLEV, which fall back to a random value without one. active_rq (may be NULL
 * = all idle): this worker's in-flight requests per host, read by LEAST_REQUEST. exclude (may
 * be NULL): hosts to avoid if possible (retry previous_hosts predicate); up to
 * LB_PICK_ATTEMPTS picks are tried, then the last one is returned even if excluded. Both arrays
 * have lb_table_hosts(t) entries. Returns a host index, or -1 when there is no host to pick
 * (no hosts, or no healthy host with panic mode disabled). */
int lb_pick(const struct lb_table *t, struct lb_state *s, bool has_hash, uint64_t hash,
            const uint32_t *active_rq, const uint8_t *exclude);

/* The slow-start factor (0, 1] of host i of t at time now_ms (1 when not ramping). */
double lb_slow_start_factor(const struct lb_table *t, size_t i, uint64_t now_ms);

/* The hash Envoy's hash policies produce from a header, cookie, source IP or query value:
 * xxHash64 of the bytes p[0..n) with seed 0. */
uint64_t lb_hash_key(const void *p, size_t n);

#endif
