/* Host health on the main thread: the per-address records (host_health.h), outlier detection
 * decisions (Envoy's consecutive 5xx / gateway / local-origin, success rate and failure
 * percentage), and publishing a new host set when a host's health changes. Active checks
 * themselves are in health_check.c. */
#include "proxy/host_health.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "proxy/circuit_breaker.h"
#include "proxy/lb.h"

#define HEALTH_TICK_MS 50   /* how often the main thread looks at workers' outlier events */

static const struct stat_def od_stat_defs[ODS_COUNT] = {
    [ODS_EJECTIONS_ACTIVE] = {"ejections_active", STAT_GAUGE},
    [ODS_EJECTIONS_OVERFLOW] = {"ejections_overflow", STAT_COUNTER},
    [ODS_EJECTIONS_TOTAL] = {"ejections_total", STAT_COUNTER},
    [ODS_EJECTIONS_ENFORCED_TOTAL] = {"ejections_enforced_total", STAT_COUNTER},
    [ODS_ENFORCED_5XX] = {"ejections_enforced_consecutive_5xx", STAT_COUNTER},
    [ODS_DETECTED_5XX] = {"ejections_detected_consecutive_5xx", STAT_COUNTER},
    [ODS_ENFORCED_GATEWAY] = {"ejections_enforced_consecutive_gateway_failure", STAT_COUNTER},
    [ODS_DETECTED_GATEWAY] = {"ejections_detected_consecutive_gateway_failure", STAT_COUNTER},
    [ODS_ENFORCED_LOCAL] = {"ejections_enforced_consecutive_local_origin_failure", STAT_COUNTER},
    [ODS_DETECTED_LOCAL] = {"ejections_detected_consecutive_local_origin_failure", STAT_COUNTER},
    [ODS_ENFORCED_SR] = {"ejections_enforced_success_rate", STAT_COUNTER},
    [ODS_DETECTED_SR] = {"ejections_detected_success_rate", STAT_COUNTER},
    [ODS_ENFORCED_LOCAL_SR] = {"ejections_enforced_local_origin_success_rate", STAT_COUNTER},
    [ODS_DETECTED_LOCAL_SR] = {"ejections_detected_local_origin_success_rate", STAT_COUNTER},
    [ODS_ENFORCED_FP] = {"ejections_enforced_failure_percentage", STAT_COUNTER},
    [ODS_DETECTED_FP] = {"ejections_detected_failure_percentage", STAT_COUNTER},
    [ODS_ENFORCED_LOCAL_FP] = {"ejections_enforced_local_origin_failure_percentage", STAT_COUNTER},
    [ODS_DETECTED_LOCAL_FP] = {"ejections_detected_local_origin_failure_percentage", STAT_COUNTER},
    [ODS_EJECTIONS_CONSECUTIVE_5XX] = {"ejections_consecutive_5xx", STAT_COUNTER},
};
static const struct stat_schema od_stat_schema = {"outlier_detection", od_stat_defs, ODS_COUNT, NULL};

static const struct stat_def hc_stat_defs[HCS_COUNT] = {
    [HCS_ATTEMPT] = {"attempt", STAT_COUNTER},           [HCS_SUCCESS] = {"success", STAT_COUNTER},
    [HCS_FAILURE] = {"failure", STAT_COUNTER},           [HCS_NETWORK_FAILURE] = {"network_failure", STAT_COUNTER},
    [HCS_PASSIVE_FAILURE] = {"passive_failure", STAT_COUNTER},
    [HCS_VERIFY_CLUSTER] = {"verify_cluster", STAT_COUNTER},
    [HCS_HEALTHY] = {"healthy", STAT_GAUGE},             [HCS_DEGRADED] = {"degraded", STAT_GAUGE},
};
static const struct stat_schema hc_stat_schema = {"health_check", hc_stat_defs, HCS_COUNT, NULL};

static unsigned main_slot(void) { return stats_slots() - 1; }
static void mstat(struct stat_block *b, size_t f, int64_t d) { if (b) stats_add(b, main_slot(), f, d); }

void outlier_config_defaults(struct outlier_config *od)
{
    *od = (struct outlier_config){
        .consecutive_5xx = 5, .consecutive_gateway_failure = 5, .consecutive_local_origin_failure = 5,
        .interval_ms = 10000, .base_ejection_ms = 30000, .max_ejection_ms = 300000,
        .max_ejection_percent = 10,
        .enforcing_consecutive_5xx = 100, .enforcing_consecutive_gateway_failure = 0,
        .enforcing_consecutive_local_origin_failure = 100, .enforcing_success_rate = 100,
        .enforcing_local_origin_success_rate = 100, .enforcing_failure_percentage = 0,
        .enforcing_failure_percentage_local_origin = 0,
        .success_rate_minimum_hosts = 5, .success_rate_request_volume = 100, .success_rate_stdev_factor = 1900,
        .failure_percentage_threshold = 85, .failure_percentage_minimum_hosts = 5,
        .failure_percentage_request_volume = 50,
        .successful_active_health_check_uneject_host = true,
    };
}

void hc_config_free(struct hc_config *hc)
{
    if (!hc)
        return;
    free(hc->path);
    free(hc->host);
    for (size_t i = 0; i < hc->n_headers; i++) {
        free(hc->headers[i].name);
        free(hc->headers[i].value);
    }
    free(hc->headers);
    free(hc->expected);
    free(hc->send);
    for (size_t i = 0; i < hc->n_receive; i++)
        free(hc->receive[i]);
    free(hc->receive);
    free(hc->receive_len);
    free(hc);
}

struct cluster_health *cluster_health_new(struct cluster *c, const char *stat_name, const struct outlier_config *od,
                                          struct hc_config *hc)
{
    struct cluster_health *ch = calloc(1, sizeof *ch);
    if (!ch)
        abort(); /* configuration time */
    ch->c = c;
    char prefix[600];
    if (od) {
        ch->od_enabled = true;
        ch->od = *od;
        snprintf(prefix, sizeof prefix, "cluster.%s.outlier_detection.", stat_name);
        ch->od_stats = stats_block(prefix, &od_stat_schema);
        /* A new snapshot starts with no ejections; the gauge follows. */
        mstat(ch->od_stats, ODS_EJECTIONS_ACTIVE, -stats_value(ch->od_stats, ODS_EJECTIONS_ACTIVE));
    }
    ch->hc = hc;
    if (hc) {
        snprintf(prefix, sizeof prefix, "cluster.%s.health_check.", stat_name);
        ch->hc_stats = stats_block(prefix, &hc_stat_schema);
    }
    return ch;
}

void cluster_health_free(struct cluster_health *ch)
{
    if (!ch)
        return;
    for (size_t i = 0; i < ch->n; i++)
        free(ch->hosts[i]);
    free(ch->hosts);
    hc_config_free(ch->hc);
    free(ch);
}

static struct host_health *find_or_add(struct cluster_health *ch, const struct host *h)
{
    for (size_t i = 0; i < ch->n; i++)
        if (strcmp(ch->hosts[i]->addr, h->addr_str) == 0)
            return ch->hosts[i];
    if (ch->n == ch->cap) {
        size_t cap = ch->cap ? 2 * ch->cap : 8;
        struct host_health **nh = realloc(ch->hosts, cap * sizeof *nh);
        if (!nh)
            return NULL;
        ch->hosts = nh;
        ch->cap = cap;
    }
    struct host_health *hh = calloc(1, sizeof *hh);
    if (!hh)
        return NULL;
    snprintf(hh->addr, sizeof hh->addr, "%s", h->addr_str);
    hh->sa = h->addr;
    /* Envoy: with active health checking a host starts failed until its first check passes. */
    atomic_init(&hh->flags, ch->hc ? HHF_FAILED_ACTIVE_HC | HHF_PENDING_ACTIVE_HC : 0);
    hh->success_rate = hh->local_success_rate = -1;
    hh->healthy_since_ms = clock_now_us() / 1000u;
    ch->hosts[ch->n++] = hh;
    return hh;
}

bool cluster_health_attach(struct cluster *c, struct host_set *hs)
{
    struct cluster_health *ch = c->health;
    if (!ch)
        return false;
    bool rebuild = false;
    for (size_t i = 0; i < ch->n; i++)
        ch->hosts[i]->in_use = false;
    for (size_t i = 0; i < hs->n; i++) {
        struct host *h = &hs->hosts[i];
        bool had = h->hh != NULL;
        if (!had)
            h->hh = find_or_add(ch, h);
        if (h->hh) {
            h->hh->in_use = true;
            if (!had && (atomic_load(&h->hh->flags) & HHF_UNHEALTHY) && h->healthy)
                rebuild = true;
        }
    }
    return rebuild;
}

const char *host_health_flags(const struct host *h, char *buf, size_t cap)
{
    uint32_t f = h->hh ? atomic_load_explicit(&h->hh->flags, memory_order_relaxed) : 0;
    if (h->healthy && !(f & (HHF_UNHEALTHY | HHF_PENDING_ACTIVE_HC)))
        return "healthy";
    snprintf(buf, cap, "%s%s%s%s", (f & HHF_FAILED_ACTIVE_HC) ? "/failed_active_hc" : "",
             (f & HHF_FAILED_OUTLIER) ? "/failed_outlier_check" : "", h->healthy ? "" : "/failed_eds_health",
             (f & HHF_PENDING_ACTIVE_HC) ? "/pending_active_hc" : "");
    return buf;
}

/* --- worker side --- */

static void consecutive(_Atomic uint32_t *ctr, uint32_t threshold, struct host_health *hh, uint32_t ev)
{
    uint32_t n = atomic_fetch_add_explicit(ctr, 1, memory_order_relaxed) + 1;
    if (threshold && n == threshold)
        atomic_fetch_or_explicit(&hh->events, ev, memory_order_relaxed);
}

/* Envoy's putHttpResponseCode: a 5xx counts toward consecutive 5xx, a 502/503/504 toward
 * consecutive gateway failure too (another 5xx resets that one); anything else resets both. */
static void put_http_status(struct cluster_health *ch, struct host_health *hh, int status)
{
    atomic_fetch_add_explicit(&hh->ext_total, 1, memory_order_relaxed);
    if (status >= 500 && status < 600) {
        if (status >= 502 && status <= 504)
            consecutive(&hh->consecutive_gateway, ch->od.consecutive_gateway_failure, hh, OE_GATEWAY);
        else
            atomic_store_explicit(&hh->consecutive_gateway, 0, memory_order_relaxed);
        consecutive(&hh->consecutive_5xx, ch->od.consecutive_5xx, hh, OE_5XX);
    } else {
        atomic_fetch_add_explicit(&hh->ext_success, 1, memory_order_relaxed);
        atomic_store_explicit(&hh->consecutive_5xx, 0, memory_order_relaxed);
        atomic_store_explicit(&hh->consecutive_gateway, 0, memory_order_relaxed);
    }
}

void outlier_report(struct cluster *c, const struct host *h, int status, enum outlier_local local)
{
    struct host_health *hh = h->hh;
    if (!hh)
        return;
    atomic_fetch_add_explicit(&hh->rq_total, 1, memory_order_relaxed);
    if (status >= 500 || (!status && local != OL_NONE))
        atomic_fetch_add_explicit(&hh->rq_error, 1, memory_order_relaxed);
    else if (status)
        atomic_fetch_add_explicit(&hh->rq_success, 1, memory_order_relaxed);
    if (local == OL_TIMEOUT)
        atomic_fetch_add_explicit(&hh->rq_timeout, 1, memory_order_relaxed);
    struct cluster_health *ch = c->health;
    if (!ch || !ch->od_enabled)
        return;
    if (!status && local != OL_NONE) {
        if (ch->od.split_external_local_origin_errors) {
            atomic_fetch_add_explicit(&hh->local_total, 1, memory_order_relaxed);
            consecutive(&hh->consecutive_local, ch->od.consecutive_local_origin_failure, hh, OE_LOCAL_ORIGIN);
        } else {
            /* Not split: a connect failure or reset reads as 503, a timeout as 504. */
            put_http_status(ch, hh, local == OL_TIMEOUT ? 504 : 503);
        }
        return;
    }
    if (ch->od.split_external_local_origin_errors) {
        /* The connection worked: a local-origin success. */
        atomic_fetch_add_explicit(&hh->local_total, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&hh->local_success, 1, memory_order_relaxed);
        atomic_store_explicit(&hh->consecutive_local, 0, memory_order_relaxed);
    }
    if (status)
        put_http_status(ch, hh, status);
}

/* --- main thread: ejection --- */

struct health_cluster_run {
    struct cluster_health *ch;
    struct timer tick;
    struct loop *loop;
};

struct health {
    struct loop *loop;
    struct health_cluster_run *runs;
    size_t n;
};

static uint32_t rnd100(void) { return (uint32_t)(random() % 100); }

static size_t hosts_in_use(const struct cluster_health *ch, size_t *ejected)
{
    size_t n = 0, e = 0;
    for (size_t i = 0; i < ch->n; i++) {
        if (!ch->hosts[i]->in_use)
            continue;
        n++;
        e += (atomic_load(&ch->hosts[i]->flags) & HHF_FAILED_OUTLIER) != 0;
    }
    *ejected = e;
    return n;
}

static void set_flag(struct cluster_health *ch, struct host_health *hh, uint32_t flag, bool on)
{
    uint32_t f = atomic_load(&hh->flags);
    uint32_t nf = on ? f | flag : f & ~flag;
    if (nf == f)
        return;
    atomic_store(&hh->flags, nf);
    if ((f & HHF_UNHEALTHY) != (nf & HHF_UNHEALTHY))
        ch->republish = true;
    /* Slow start (Envoy: from the last health check pass after failing) starts again. */
    if ((f & HHF_FAILED_ACTIVE_HC) && !(nf & HHF_FAILED_ACTIVE_HC))
        hh->healthy_since_ms = clock_now_us() / 1000u;
}

/* One detected outlier: counted as detected; ejected when the enforcing percentage says so
 * and max_ejection_percent allows (at least one host can always be ejected). */
static void eject(struct cluster_health *ch, struct host_health *hh, size_t detected, size_t enforced,
                  uint32_t enforcing, uint64_t now)
{
    const struct outlier_config *od = &ch->od;
    if (atomic_load(&hh->flags) & HHF_FAILED_OUTLIER)
        return;
    mstat(ch->od_stats, detected, 1);
    mstat(ch->od_stats, ODS_EJECTIONS_TOTAL, 1);
    if (detected == ODS_DETECTED_5XX)
        mstat(ch->od_stats, ODS_EJECTIONS_CONSECUTIVE_5XX, 1);
    if (enforcing == 0 || rnd100() >= enforcing)
        return;
    size_t ejected, n = hosts_in_use(ch, &ejected);
    bool allowed = ejected == 0 ? (od->max_ejection_percent > 0 || od->always_eject_one_host)
                                : 100 * (uint64_t)ejected < (uint64_t)od->max_ejection_percent * n;
    if (!allowed) {
        mstat(ch->od_stats, ODS_EJECTIONS_OVERFLOW, 1);
        return;
    }
    hh->num_ejections++;
    uint64_t t = od->base_ejection_ms * hh->num_ejections;
    uint64_t cap = od->max_ejection_ms > od->base_ejection_ms ? od->max_ejection_ms : od->base_ejection_ms;
    if (t > cap)
        t = cap;
    if (od->max_ejection_jitter_ms)
        t += (uint64_t)random() % (od->max_ejection_jitter_ms + 1);
    hh->ejected_at_ms = now;
    hh->eject_ms = t;
    set_flag(ch, hh, HHF_FAILED_OUTLIER, true);
    mstat(ch->od_stats, ODS_EJECTIONS_ACTIVE, 1);
    mstat(ch->od_stats, ODS_EJECTIONS_ENFORCED_TOTAL, 1);
    mstat(ch->od_stats, enforced, 1);
    log_info("outlier: cluster %s: ejected %s for %llu ms", ch->c->name, hh->addr, (unsigned long long)t);
}

static void uneject(struct cluster_health *ch, struct host_health *hh)
{
    if (!(atomic_load(&hh->flags) & HHF_FAILED_OUTLIER))
        return;
    set_flag(ch, hh, HHF_FAILED_OUTLIER, false);
    atomic_store(&hh->consecutive_5xx, 0);
    atomic_store(&hh->consecutive_gateway, 0);
    atomic_store(&hh->consecutive_local, 0);
    mstat(ch->od_stats, ODS_EJECTIONS_ACTIVE, -1);
    log_info("outlier: cluster %s: %s is back", ch->c->name, hh->addr);
}

static void take_events(struct cluster_health *ch, uint64_t now)
{
    const struct outlier_config *od = &ch->od;
    for (size_t i = 0; i < ch->n; i++) {
        struct host_health *hh = ch->hosts[i];
        uint32_t ev = atomic_exchange_explicit(&hh->events, 0, memory_order_relaxed);
        if (!ev || !hh->in_use)
            continue;
        /* Gateway first: Envoy counts a 502/503/504 toward gateway failure before 5xx, so of
         * two thresholds reached by the same response the gateway one is seen first. */
        if (ev & OE_GATEWAY)
            eject(ch, hh, ODS_DETECTED_GATEWAY, ODS_ENFORCED_GATEWAY, od->enforcing_consecutive_gateway_failure, now);
        if (ev & OE_5XX)
            eject(ch, hh, ODS_DETECTED_5XX, ODS_ENFORCED_5XX, od->enforcing_consecutive_5xx, now);
        if (ev & OE_LOCAL_ORIGIN)
            eject(ch, hh, ODS_DETECTED_LOCAL, ODS_ENFORCED_LOCAL, od->enforcing_consecutive_local_origin_failure,
                  now);
    }
}

/* Success-rate ejection over one interval's counts (external or local origin): hosts with at
 * least request_volume requests; with at least minimum_hosts of them, those under
 * mean - stdev × stdev_factor / 1000 are outliers. */
static void success_rate_sweep(struct cluster_health *ch, bool local, uint64_t now, const uint64_t *tot,
                               const uint64_t *ok)
{
    const struct outlier_config *od = &ch->od;
    double sum = 0, sq = 0;
    size_t k = 0;
    for (size_t i = 0; i < ch->n; i++) {
        if (!ch->hosts[i]->in_use || tot[i] < od->success_rate_request_volume || !tot[i])
            continue;
        double sr = 100.0 * (double)ok[i] / (double)tot[i];
        sum += sr;
        k++;
    }
    if (k == 0 || k < od->success_rate_minimum_hosts)
        return;
    double mean = sum / (double)k;
    for (size_t i = 0; i < ch->n; i++) {
        if (!ch->hosts[i]->in_use || tot[i] < od->success_rate_request_volume || !tot[i])
            continue;
        double d = 100.0 * (double)ok[i] / (double)tot[i] - mean;
        sq += d * d;
    }
    double stdev = sqrt(sq / (double)k);
    double limit = mean - stdev * ((double)od->success_rate_stdev_factor / 1000.0);
    for (size_t i = 0; i < ch->n; i++) {
        struct host_health *hh = ch->hosts[i];
        if (!hh->in_use || tot[i] < od->success_rate_request_volume || !tot[i])
            continue;
        double sr = 100.0 * (double)ok[i] / (double)tot[i];
        if (local)
            hh->local_success_rate = sr;
        else
            hh->success_rate = sr;
        if (sr < limit)
            eject(ch, hh, local ? ODS_DETECTED_LOCAL_SR : ODS_DETECTED_SR, local ? ODS_ENFORCED_LOCAL_SR : ODS_ENFORCED_SR,
                  local ? od->enforcing_local_origin_success_rate : od->enforcing_success_rate, now);
    }
}

/* Failure-percentage ejection: with at least minimum_hosts hosts of request_volume requests,
 * a host whose failures are at least threshold percent is an outlier. */
static void failure_percentage_sweep(struct cluster_health *ch, bool local, uint64_t now, const uint64_t *tot,
                                     const uint64_t *ok)
{
    const struct outlier_config *od = &ch->od;
    size_t k = 0;
    for (size_t i = 0; i < ch->n; i++)
        k += ch->hosts[i]->in_use && tot[i] && tot[i] >= od->failure_percentage_request_volume;
    if (k == 0 || k < od->failure_percentage_minimum_hosts)
        return;
    for (size_t i = 0; i < ch->n; i++) {
        struct host_health *hh = ch->hosts[i];
        if (!hh->in_use || !tot[i] || tot[i] < od->failure_percentage_request_volume)
            continue;
        double fp = 100.0 * (double)(tot[i] - ok[i]) / (double)tot[i];
        if (fp >= (double)od->failure_percentage_threshold)
            eject(ch, hh, local ? ODS_DETECTED_LOCAL_FP : ODS_DETECTED_FP, local ? ODS_ENFORCED_LOCAL_FP : ODS_ENFORCED_FP,
                  local ? od->enforcing_failure_percentage_local_origin : od->enforcing_failure_percentage, now);
    }
}

/* Envoy's interval sweep: return hosts whose ejection time is over, lower the multiplier of
 * hosts that stayed in, then the success-rate and failure-percentage checks. */
static void interval_sweep(struct cluster_health *ch, uint64_t now)
{
    size_t n = ch->n;
    uint64_t *m = calloc(4 * (n ? n : 1), sizeof *m);
    if (!m)
        return;
    uint64_t *et = m, *eo = m + n, *lt = m + 2 * n, *lo = m + 3 * n;
    for (size_t i = 0; i < n; i++) {
        struct host_health *hh = ch->hosts[i];
        et[i] = atomic_exchange(&hh->ext_total, 0);
        eo[i] = atomic_exchange(&hh->ext_success, 0);
        lt[i] = atomic_exchange(&hh->local_total, 0);
        lo[i] = atomic_exchange(&hh->local_success, 0);
        if (eo[i] > et[i])
            eo[i] = et[i];
        if (lo[i] > lt[i])
            lo[i] = lt[i];
        if (atomic_load(&hh->flags) & HHF_FAILED_OUTLIER) {
            if (now - hh->ejected_at_ms >= hh->eject_ms)
                uneject(ch, hh);
        } else if (hh->num_ejections > 0) {
            hh->num_ejections--;
        }
    }
    success_rate_sweep(ch, false, now, et, eo);
    failure_percentage_sweep(ch, false, now, et, eo);
    if (ch->od.split_external_local_origin_errors) {
        success_rate_sweep(ch, true, now, lt, lo);
        failure_percentage_sweep(ch, true, now, lt, lo);
    }
    free(m);
}

/* A new host set with the same hosts and the health they have now. */
static void republish(struct cluster_health *ch, uint64_t now)
{
    struct cluster *c = ch->c;
    ch->republish = false;
    struct host_set *cur = cluster_hosts_acquire(c);
    struct host *hosts = calloc(cur->n ? cur->n : 1, sizeof *hosts);
    if (!hosts) {
        host_set_release(cur);
        ch->republish = true;
        return;
    }
    for (size_t i = 0; i < cur->n; i++) {
        hosts[i] = cur->hosts[i];
        hosts[i].hostname = cur->hosts[i].hostname ? strdup(cur->hosts[i].hostname) : NULL;
    }
    char err[256];
    struct host_set *hs = host_set_new(hosts, cur->n, c->lbc, err, sizeof err);
    size_t n = cur->n;
    host_set_release(cur);
    if (!hs) {
        for (size_t i = 0; i < n; i++)
            free(hosts[i].hostname);
        free(hosts);
        log_warn("health: cluster %s: %s", c->name, err);
        return;
    }
    cluster_set_hosts(c, hs, now);
}

static void hc_healthy_gauge(struct cluster_health *ch)
{
    if (!ch->hc_stats)
        return;
    int64_t healthy = 0;
    for (size_t i = 0; i < ch->n; i++)
        healthy += ch->hosts[i]->in_use && !(atomic_load(&ch->hosts[i]->flags) & HHF_FAILED_ACTIVE_HC);
    mstat(ch->hc_stats, HCS_HEALTHY, healthy - stats_value(ch->hc_stats, HCS_HEALTHY));
}

void health_host_result(struct cluster_health *ch, struct host_health *hh, bool ok, bool network, uint64_t now)
{
    const struct hc_config *hc = ch->hc;
    uint32_t f = atomic_load(&hh->flags);
    mstat(ch->hc_stats, ok ? HCS_SUCCESS : HCS_FAILURE, 1);
    if (!ok && network)
        mstat(ch->hc_stats, HCS_NETWORK_FAILURE, 1);
    if (ok) {
        hh->hc_fails = 0;
        hh->hc_oks++;
        /* During startup one passing check is enough (Envoy); later healthy_threshold. */
        if ((f & HHF_FAILED_ACTIVE_HC) && ((f & HHF_PENDING_ACTIVE_HC) || hh->hc_oks >= hc->healthy_threshold))
            set_flag(ch, hh, HHF_FAILED_ACTIVE_HC, false);
        if (ch->od_enabled && ch->od.successful_active_health_check_uneject_host)
            uneject(ch, hh);
    } else {
        hh->hc_oks = 0;
        hh->hc_fails++;
        if (!(f & HHF_FAILED_ACTIVE_HC) && hh->hc_fails >= hc->unhealthy_threshold)
            set_flag(ch, hh, HHF_FAILED_ACTIVE_HC, true);
    }
    set_flag(ch, hh, HHF_PENDING_ACTIVE_HC, false);
    hc_healthy_gauge(ch);
    if (ch->republish)
        republish(ch, now); /* at once: the next tick may be 50 ms away */
}

/* When the next check of hh goes out: no_traffic_interval until the cluster has carried a
 * request, then interval (unhealthy_interval for an unhealthy host), plus jitter. */
static uint64_t next_check_in(const struct cluster_health *ch, const struct host_health *hh)
{
    const struct hc_config *hc = ch->hc;
    uint64_t base;
    if (stats_value(ch->c->stats, CS_UPSTREAM_RQ_TOTAL) == 0)
        base = hc->no_traffic_interval_ms;
    else if (atomic_load(&hh->flags) & HHF_FAILED_ACTIVE_HC)
        base = hc->unhealthy_interval_ms;
    else
        base = hc->interval_ms;
    uint64_t j = 0;
    if (hc->interval_jitter_ms)
        j += (uint64_t)random() % hc->interval_jitter_ms;
    if (hc->interval_jitter_percent && base)
        j += (uint64_t)random() % (base * hc->interval_jitter_percent / 100 + 1);
    return base + j;
}

static void on_tick(struct loop *l, struct timer *t)
{
    struct health_cluster_run *r = t->data;
    struct cluster_health *ch = r->ch;
    uint64_t now = loop_now_ms(l);
    if (ch->od_enabled) {
        take_events(ch, now);
        if (now >= ch->next_interval_ms) {
            ch->next_interval_ms = now + ch->od.interval_ms;
            interval_sweep(ch, now);
        }
    }
    if (ch->hc) {
        for (size_t i = 0; i < ch->n; i++) {
            struct host_health *hh = ch->hosts[i];
            if (!hh->in_use) {
                hc_cancel(l, hh);
                continue;
            }
            if (!hh->hc && now >= hh->hc_next_ms) {
                mstat(ch->hc_stats, HCS_ATTEMPT, 1);
                hc_start_check(l, ch, hh);
                hh->hc_next_ms = now + next_check_in(ch, hh);
            }
        }
    }
    if (ch->republish)
        republish(ch, now);
    if (ch->c->cb)
        cb_refresh_gauges(ch->c->cb);
    /* Circuit-breaker-only clusters just refresh gauges: once a second is plenty. */
    timer_start(l, t, ch->od_enabled || ch->hc ? HEALTH_TICK_MS : 1000);
}

/* Carries the health of the hosts of old's cluster with the same name over to c's. */
static void inherit(struct cluster *c, struct snapshot *old)
{
    int i = old ? snapshot_cluster_index(old, c->name) : -1;
    if (i < 0 || !old->clusters[i]->health || !c->health)
        return;
    struct cluster_health *from = old->clusters[i]->health, *to = c->health;
    bool changed = false;
    for (size_t a = 0; a < to->n; a++) {
        for (size_t b = 0; b < from->n; b++) {
            if (strcmp(to->hosts[a]->addr, from->hosts[b]->addr) != 0)
                continue;
            uint32_t keep = atomic_load(&from->hosts[b]->flags);
            if (!to->hc)
                keep &= ~(uint32_t)(HHF_FAILED_ACTIVE_HC | HHF_PENDING_ACTIVE_HC);
            if (!to->od_enabled)
                keep &= ~(uint32_t)HHF_FAILED_OUTLIER;
            if ((keep & HHF_FAILED_OUTLIER) && to->od_stats)
                mstat(to->od_stats, ODS_EJECTIONS_ACTIVE, 1);
            changed |= (keep & HHF_UNHEALTHY) != (atomic_load(&to->hosts[a]->flags) & HHF_UNHEALTHY);
            atomic_store(&to->hosts[a]->flags, keep);
            to->hosts[a]->ejected_at_ms = from->hosts[b]->ejected_at_ms;
            to->hosts[a]->eject_ms = from->hosts[b]->eject_ms;
            to->hosts[a]->num_ejections = from->hosts[b]->num_ejections;
            changed |= c->lbc && c->lbc->slow_start_window_ms &&
                       to->hosts[a]->healthy_since_ms != from->hosts[b]->healthy_since_ms;
            to->hosts[a]->healthy_since_ms = from->hosts[b]->healthy_since_ms;
        }
    }
    to->republish |= changed;
}

struct health *health_start(struct loop *loop, struct snapshot *s, struct snapshot *old)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_clusters; i++)
        n += s->clusters[i]->health != NULL || s->clusters[i]->cb != NULL;
    if (n == 0)
        return NULL;
    struct health *h = calloc(1, sizeof *h);
    h->runs = calloc(n, sizeof *h->runs);
    if (!h || !h->runs)
        abort();
    h->loop = loop;
    uint64_t now = loop_now_ms(loop);
    for (size_t i = 0; i < s->n_clusters; i++) {
        struct cluster *c = s->clusters[i];
        if (!c->health && !c->cb)
            continue;
        if (!c->health) {
            /* Only circuit breakers: the tick keeps their gauges current. */
            c->health = cluster_health_new(c, c->name, NULL, NULL);
        }
        inherit(c, old);
        struct cluster_health *ch = c->health;
        ch->next_interval_ms = now + ch->od.interval_ms;
        for (size_t k = 0; ch->hc && k < ch->n; k++)
            ch->hosts[k]->hc_next_ms =
                now + (ch->hc->initial_jitter_ms ? (uint64_t)random() % ch->hc->initial_jitter_ms : 0);
        hc_healthy_gauge(ch);
        struct health_cluster_run *r = &h->runs[h->n++];
        r->ch = ch;
        r->loop = loop;
        timer_init(&r->tick, on_tick, r);
        timer_start(loop, &r->tick, 0);
    }
    return h;
}

void health_stop(struct health *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        timer_stop(h->loop, &h->runs[i].tick);
        struct cluster_health *ch = h->runs[i].ch;
        for (size_t k = 0; k < ch->n; k++)
            hc_cancel(h->loop, ch->hosts[k]);
    }
    free(h->runs);
    free(h);
}
