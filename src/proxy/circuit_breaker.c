/* Circuit breakers: shared counts, caps and their stats (see circuit_breaker.h). */
#include "proxy/circuit_breaker.h"

#include <stdio.h>
#include <string.h>

#include "proxy/config.h"

static const struct stat_def cb_stat_defs[CBS_COUNT] = {
    [CBS_CX_OVERFLOW] = {"upstream_cx_overflow", STAT_COUNTER},
    [CBS_RQ_PENDING_OVERFLOW] = {"upstream_rq_pending_overflow", STAT_COUNTER},
    [CBS_RQ_RETRY_OVERFLOW] = {"upstream_rq_retry_overflow", STAT_COUNTER},
    [CBS_CX_POOL_OVERFLOW] = {"upstream_cx_pool_overflow", STAT_COUNTER},
    [CBS_LB_HEALTHY_PANIC] = {"upstream_rq_lb_healthy_panic", STAT_COUNTER},
};
static const struct stat_schema cb_stat_schema = {"cluster_cb", cb_stat_defs, CBS_COUNT, NULL};

static const struct stat_def cb_open_defs[CB_RESOURCES] = {
    [CB_CX] = {"cx_open", STAT_GAUGE},           [CB_PENDING] = {"rq_pending_open", STAT_GAUGE},
    [CB_RQ] = {"rq_open", STAT_GAUGE},           [CB_RETRY] = {"rq_retry_open", STAT_GAUGE},
    [CB_POOLS] = {"cx_pool_open", STAT_GAUGE},
};
static const struct stat_schema cb_open_schema = {"cluster_cb_open", cb_open_defs, CB_RESOURCES, NULL};

static const struct stat_def cb_remaining_defs[CB_RESOURCES] = {
    [CB_CX] = {"remaining_cx", STAT_GAUGE},      [CB_PENDING] = {"remaining_pending", STAT_GAUGE},
    [CB_RQ] = {"remaining_rq", STAT_GAUGE},      [CB_RETRY] = {"remaining_retries", STAT_GAUGE},
    [CB_POOLS] = {"remaining_cx_pools", STAT_GAUGE},
};
static const struct stat_schema cb_remaining_schema = {"cluster_cb_remaining", cb_remaining_defs, CB_RESOURCES,
                                                       NULL};

/* Which overflow counter a refused resource counts: Envoy counts a refused active request
 * (max_requests) as upstream_rq_pending_overflow too. */
static const enum cb_stat overflow_stat[CB_RESOURCES] = {
    [CB_CX] = CBS_CX_OVERFLOW, [CB_PENDING] = CBS_RQ_PENDING_OVERFLOW, [CB_RQ] = CBS_RQ_PENDING_OVERFLOW,
    [CB_RETRY] = CBS_RQ_RETRY_OVERFLOW, [CB_POOLS] = CBS_CX_POOL_OVERFLOW,
};

static const char *const prio_names[CB_PRIORITIES] = {"default", "high"};

void cb_init(struct circuit_breakers *cb, const char *name)
{
    char prefix[600];
    snprintf(prefix, sizeof prefix, "cluster.%s.", name);
    cb->stats = stats_block(prefix, &cb_stat_schema);
    for (int p = 0; p < CB_PRIORITIES; p++) {
        struct cb_level *lv = &cb->level[p];
        lv->max[CB_CX] = lv->max[CB_PENDING] = lv->max[CB_RQ] = CB_DEFAULT_MAX;
        lv->max[CB_RETRY] = CB_DEFAULT_RETRIES;
        lv->max[CB_POOLS] = CB_UNLIMITED;
        for (int r = 0; r < CB_RESOURCES; r++)
            atomic_init(&lv->count[r], 0);
        snprintf(prefix, sizeof prefix, "cluster.%s.circuit_breakers.%s.", name, prio_names[p]);
        lv->open = stats_block(prefix, &cb_open_schema);
    }
}

/* Stats that are not deltas but a value the cluster's owner sets (Envoy's Gauge::set): stored
 * in the main thread's slot, where the other slots stay 0, so /stats reads exactly it. */
static void gauge_set(struct stat_block *b, size_t field, uint64_t v)
{
    size_t slot = stats_slots() - 1;
    atomic_store_explicit(&b->vals[slot * b->stride + field], v, memory_order_relaxed);
}

static void set_gauges(struct cb_level *lv, enum cb_resource r)
{
    uint64_t n = atomic_load_explicit(&lv->count[r], memory_order_relaxed), max = lv->max[r];
    gauge_set(lv->open, r, n >= max);
    if (lv->remaining)
        gauge_set(lv->remaining, r, n >= max ? 0 : max - n);
}

void cb_refresh_gauges(struct circuit_breakers *cb)
{
    for (int p = 0; p < CB_PRIORITIES; p++)
        for (int r = 0; r < CB_RESOURCES; r++)
            set_gauges(&cb->level[p], (enum cb_resource)r);
}

void cb_track_remaining(struct circuit_breakers *cb, const char *name)
{
    char prefix[600];
    for (int p = 0; p < CB_PRIORITIES; p++) {
        struct cb_level *lv = &cb->level[p];
        if (lv->track_remaining && !lv->remaining) {
            snprintf(prefix, sizeof prefix, "cluster.%s.circuit_breakers.%s.", name, prio_names[p]);
            lv->remaining = stats_block(prefix, &cb_remaining_schema);
        }
    }
    cb_refresh_gauges(cb);
}

bool cb_acquire(struct circuit_breakers *cb, int p, enum cb_resource r, unsigned slot)
{
    struct cb_level *lv = &cb->level[p == CB_HIGH ? CB_HIGH : CB_DEFAULT];
    uint64_t max = lv->max[r];
    if (max == CB_UNLIMITED && !lv->remaining) {
        atomic_fetch_add_explicit(&lv->count[r], 1, memory_order_relaxed);
        return true;
    }
    uint64_t old = atomic_fetch_add_explicit(&lv->count[r], 1, memory_order_relaxed);
    if (old >= max) {
        atomic_fetch_sub_explicit(&lv->count[r], 1, memory_order_relaxed);
        stats_inc(cb->stats, slot, overflow_stat[r]);
        return false;
    }
    if (old + 1 >= max || lv->remaining)
        set_gauges(lv, r);
    return true;
}

void cb_force(struct circuit_breakers *cb, int p, enum cb_resource r)
{
    struct cb_level *lv = &cb->level[p == CB_HIGH ? CB_HIGH : CB_DEFAULT];
    atomic_fetch_add_explicit(&lv->count[r], 1, memory_order_relaxed);
    set_gauges(lv, r);
}

void cb_release(struct circuit_breakers *cb, int p, enum cb_resource r)
{
    struct cb_level *lv = &cb->level[p == CB_HIGH ? CB_HIGH : CB_DEFAULT];
    uint64_t old = atomic_fetch_sub_explicit(&lv->count[r], 1, memory_order_relaxed);
    if (old >= lv->max[r] || lv->remaining)
        set_gauges(lv, r);
}

bool cb_retry_begin(struct cluster *c, int p, unsigned slot)
{
    return cb_acquire(c->cb, p, CB_RETRY, slot);
}

void cb_retry_end(struct cluster *c, int p)
{
    cb_release(c->cb, p, CB_RETRY);
}
