/* Load balancer tables, per-worker state and the pick path (see lb.h). The consistent-hash
 * builders are lb_ring_hash.c and lb_maglev.c, the EDF schedule lb_edf.c and the priority
 * math lb_priority.c. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/loop.h"
#include "proxy/lb_internal.h"

/* Per priority level of a worker's state. */
struct lb_sched {
    uint32_t rr;                 /* next position in pick[] for unweighted round robin */
    struct lb_edf edf;           /* weighted round robin / least request, when level->weighted */
};

struct lb_state {
    const struct lb_table *t;
    struct lb_rng rng;
    struct lb_sched *sched;      /* one per level */
    struct lb_edf_entry *edf_mem;
};

static const char *const policy_names[] = {
    [LB_ROUND_ROBIN] = "ROUND_ROBIN", [LB_LEAST_REQUEST] = "LEAST_REQUEST",
    [LB_RANDOM] = "RANDOM", [LB_RING_HASH] = "RING_HASH", [LB_MAGLEV] = "MAGLEV",
};

int lb_policy_parse(const char *envoy_name)
{
    if (!envoy_name)
        return -EINVAL;
    for (size_t i = 0; i < sizeof policy_names / sizeof policy_names[0]; i++)
        if (strcmp(envoy_name, policy_names[i]) == 0)
            return (int)i;
    return -EINVAL;
}

void lb_config_defaults(struct lb_config *cfg, enum lb_policy policy)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->policy = policy;
    cfg->ring_min_size = LB_RING_MIN_SIZE_DEFAULT;
    cfg->ring_max_size = LB_RING_MAX_SIZE_DEFAULT;
    cfg->ring_hash_fn = LB_HASH_XX_HASH;
    cfg->maglev_table_size = LB_MAGLEV_SIZE_DEFAULT;
    cfg->choice_count = LB_CHOICE_COUNT_DEFAULT;
    cfg->active_request_bias = 1.0;
    cfg->healthy_panic_threshold_pct = LB_PANIC_THRESHOLD_DEFAULT;
    cfg->overprovisioning_factor = LB_OVERPROVISIONING_DEFAULT;
    cfg->slow_start_aggression = 1.0;
    cfg->slow_start_min_weight = 0.1;
}

uint64_t lb_hash_key(const void *p, size_t n)
{
    return XXH64(p, n, 0);
}

static bool is_prime(uint64_t v)
{
    if (v < 2)
        return false;
    if (v % 2 == 0)
        return v == 2;
    for (uint64_t d = 3; d * d <= v; d += 2)
        if (v % d == 0)
            return false;
    return true;
}

#define FAIL(...) do { if (err) snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)

/* Checks cfg and writes it into c with zeros replaced by defaults. */
static int config_resolve(const struct lb_config *cfg, struct lb_config *c, char *err, size_t errlen)
{
    if (!cfg)
        FAIL("lb: no config");
    *c = *cfg;
    if ((unsigned)c->policy > LB_MAGLEV)
        FAIL("lb_policy: unknown value %d", (int)c->policy);
    if (c->ring_min_size == 0)
        c->ring_min_size = LB_RING_MIN_SIZE_DEFAULT;
    if (c->ring_max_size == 0)
        c->ring_max_size = LB_RING_MAX_SIZE_DEFAULT;
    if (c->maglev_table_size == 0)
        c->maglev_table_size = LB_MAGLEV_SIZE_DEFAULT;
    if (c->choice_count == 0)
        c->choice_count = LB_CHOICE_COUNT_DEFAULT;
    if (c->overprovisioning_factor == 0.0)
        c->overprovisioning_factor = LB_OVERPROVISIONING_DEFAULT;

    if (c->policy == LB_RING_HASH) {
        if (c->ring_min_size > LB_RING_SIZE_LIMIT)
            FAIL("ring_hash_lb_config.minimum_ring_size: %llu is over %u",
                 (unsigned long long)c->ring_min_size, LB_RING_SIZE_LIMIT);
        if (c->ring_max_size > LB_RING_SIZE_LIMIT)
            FAIL("ring_hash_lb_config.maximum_ring_size: %llu is over %u",
                 (unsigned long long)c->ring_max_size, LB_RING_SIZE_LIMIT);
        if (c->ring_min_size > c->ring_max_size)
            FAIL("ring hash: minimum_ring_size (%llu) > maximum_ring_size (%llu)",
                 (unsigned long long)c->ring_min_size, (unsigned long long)c->ring_max_size);
        if (c->ring_hash_fn != LB_HASH_XX_HASH)
            FAIL("ring_hash_lb_config.hash_function: only XX_HASH is supported");
    }
    if (c->policy == LB_MAGLEV) {
        if (c->maglev_table_size > LB_MAGLEV_SIZE_LIMIT)
            FAIL("maglev_lb_config.table_size: %llu is over %u",
                 (unsigned long long)c->maglev_table_size, LB_MAGLEV_SIZE_LIMIT);
        if (!is_prime(c->maglev_table_size))
            FAIL("maglev_lb_config.table_size: %llu is not a prime number",
                 (unsigned long long)c->maglev_table_size);
    }
    if (c->policy == LB_LEAST_REQUEST) {
        if (c->choice_count < 2 || c->choice_count > LB_CHOICE_COUNT_LIMIT)
            FAIL("least_request_lb_config.choice_count: %u is not in [2, %u]",
                 c->choice_count, LB_CHOICE_COUNT_LIMIT);
        if (!(c->active_request_bias >= 0.0) || !isfinite(c->active_request_bias))
            FAIL("least_request_lb_config.active_request_bias: must be a number >= 0");
    }
    if (c->slow_start_window_ms) {
        if (!(c->slow_start_aggression > 0.0) || !isfinite(c->slow_start_aggression))
            FAIL("slow_start_config.aggression: must be a number above 0");
        if (!(c->slow_start_min_weight >= 0.0 && c->slow_start_min_weight <= 1.0))
            FAIL("slow_start_config.min_weight_percent: must be in [0, 100]");
    }
    if (!(c->overprovisioning_factor > 0.0) || c->overprovisioning_factor > 1e6)
        FAIL("policy.overprovisioning_factor: must be above 0 and at most 1e6");
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Index of priority p in the sorted distinct list prio[0..n). */
static size_t level_of(const uint32_t *prio, size_t n, uint32_t p)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (prio[mid] < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void lb_table_free(struct lb_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nlevels; i++) {
        free(t->levels[i].ring);
        free(t->levels[i].maglev);
    }
    free(t->levels);
    free(t->pick_mem);
    free(t->weight);
    free(t->since);
    free(t);
}

/* Finds the distinct priorities and sets up t->levels with host counts. */
static int build_levels(struct lb_table *t, const struct lb_host_info *hosts, size_t n,
                        uint32_t *prio, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        prio[i] = hosts[i].priority;
    qsort(prio, n, sizeof *prio, cmp_u32);
    size_t nl = 0;
    for (size_t i = 0; i < n; i++)
        if (nl == 0 || prio[nl - 1] != prio[i])
            prio[nl++] = prio[i];
    if (nl > LB_MAX_PRIORITIES)
        FAIL("lb: %zu distinct priorities, at most %u are supported", nl, LB_MAX_PRIORITIES);
    t->levels = calloc(nl ? nl : 1, sizeof *t->levels);
    if (!t->levels)
        FAIL("lb: out of memory");
    t->nlevels = nl;
    uint64_t wsum[LB_MAX_PRIORITIES] = {0};
    for (size_t l = 0; l < nl; l++)
        t->levels[l].priority = prio[l];
    for (size_t i = 0; i < n; i++) {
        size_t l = level_of(prio, nl, hosts[i].priority);
        t->levels[l].nhosts++;
        t->levels[l].nhealthy += hosts[i].healthy;
        wsum[l] += t->weight[i];
    }
    for (size_t l = 0; l < nl; l++)
        if (wsum[l] > UINT32_MAX)
            FAIL("lb: the sum of weights of the hosts at priority %u exceeds %u",
                 prio[l], UINT32_MAX);
    return 0;
}

/* Fills each level's pick list (healthy hosts, or all in panic) in input order. */
static void build_picks(struct lb_table *t, const struct lb_host_info *hosts, size_t n,
                        const uint32_t *prio)
{
    size_t off = 0;
    for (size_t l = 0; l < t->nlevels; l++) {
        struct lb_level *lv = &t->levels[l];
        lv->pick = t->pick_mem + off;
        lv->npick = 0;
        off += lv->panic ? lv->nhosts : lv->nhealthy;
    }
    for (size_t i = 0; i < n; i++) {
        struct lb_level *lv = &t->levels[level_of(prio, t->nlevels, hosts[i].priority)];
        if (lv->panic || hosts[i].healthy)
            lv->pick[lv->npick++] = (uint32_t)i;
    }
    t->npick_total = off;
    for (size_t l = 0; l < t->nlevels; l++) {
        struct lb_level *lv = &t->levels[l];
        /* Slow start changes weights over time: always the EDF schedule. */
        lv->weighted = t->ss_window_ms != 0;
        for (uint32_t k = 1; k < lv->npick; k++)
            if (t->weight[lv->pick[k]] != t->weight[lv->pick[0]])
                lv->weighted = true;
    }
}

#undef FAIL

struct lb_table *lb_table_build(const struct lb_config *cfg, const struct lb_host_info *hosts,
                                size_t n, char *err, size_t errlen)
{
    struct lb_config c;
    if (err && errlen)
        err[0] = '\0';
    if (config_resolve(cfg, &c, err, errlen) < 0)
        return NULL;
    if (n > LB_MAX_HOSTS || (n && !hosts)) {
        if (err)
            snprintf(err, errlen, "lb: %zu hosts, at most %u are supported", n, LB_MAX_HOSTS);
        return NULL;
    }
    bool hashing = c.policy == LB_RING_HASH || c.policy == LB_MAGLEV;
    for (size_t i = 0; hashing && i < n; i++) {
        if (!hosts[i].key || hosts[i].key_len == 0 || hosts[i].key_len > LB_KEY_MAX) {
            if (err)
                snprintf(err, errlen, "lb: host %zu has no address to hash, or one over %u bytes",
                         i, LB_KEY_MAX);
            return NULL;
        }
    }

    struct lb_table *t = calloc(1, sizeof *t);
    uint32_t *prio = malloc((n ? n : 1) * sizeof *prio);
    if (!t || !prio)
        goto oom;
    t->policy = c.policy;
    t->choice_count = c.choice_count;
    t->bias = c.active_request_bias;
    t->maglev_size = c.maglev_table_size;
    t->nhosts = n;
    t->weight = malloc((n ? n : 1) * sizeof *t->weight);
    t->pick_mem = malloc((n ? n : 1) * sizeof *t->pick_mem);
    if (!t->weight || !t->pick_mem)
        goto oom;
    for (size_t i = 0; i < n; i++)
        t->weight[i] = hosts[i].weight ? hosts[i].weight : 1;
    if (c.slow_start_window_ms && (c.policy == LB_ROUND_ROBIN || c.policy == LB_LEAST_REQUEST)) {
        t->since = malloc((n ? n : 1) * sizeof *t->since);
        if (!t->since)
            goto oom;
        t->ss_window_ms = c.slow_start_window_ms;
        t->ss_exponent = 1.0 / c.slow_start_aggression;
        t->ss_min = c.slow_start_min_weight;
        for (size_t i = 0; i < n; i++) {
            t->since[i] = hosts[i].since_ms;
            if (hosts[i].since_ms && hosts[i].since_ms + c.slow_start_window_ms > t->ss_until_ms)
                t->ss_until_ms = hosts[i].since_ms + c.slow_start_window_ms;
        }
    }

    if (build_levels(t, hosts, n, prio, err, errlen) < 0)
        goto fail;
    uint32_t op_pct = (uint32_t)lround(c.overprovisioning_factor * 100.0);
    lb_priority_compute(t->levels, t->nlevels, op_pct, c.healthy_panic_threshold_pct);
    build_picks(t, hosts, n, prio);

    uint64_t budget = LB_TABLE_ENTRIES_LIMIT;
    for (size_t l = 0; l < t->nlevels; l++) {
        int rc = 0;
        if (c.policy == LB_RING_HASH)
            rc = lb_ring_build(&t->levels[l], hosts, t->weight, c.ring_min_size, c.ring_max_size,
                               &budget, err, errlen);
        else if (c.policy == LB_MAGLEV)
            rc = lb_maglev_build(&t->levels[l], hosts, t->weight, c.maglev_table_size, &budget,
                                 err, errlen);
        if (rc < 0)
            goto fail;
    }
    free(prio);
    return t;
oom:
    if (err)
        snprintf(err, errlen, "lb: out of memory");
fail:
    free(prio);
    lb_table_free(t);
    return NULL;
}

size_t lb_table_levels(const struct lb_table *t)
{
    return t ? t->nlevels : 0;
}

size_t lb_table_hosts(const struct lb_table *t)
{
    return t ? t->nhosts : 0;
}

int lb_table_level(const struct lb_table *t, size_t i, struct lb_level_info *out)
{
    if (!t || i >= t->nlevels || !out)
        return -EINVAL;
    const struct lb_level *lv = &t->levels[i];
    *out = (struct lb_level_info){
        .priority = lv->priority, .hosts = lv->nhosts, .healthy = lv->nhealthy,
        .health_pct = lv->health, .load_pct = lv->load, .panic = lv->panic,
        .pick_hosts = lv->npick,
        .entries = t->policy == LB_RING_HASH ? lv->nring
                 : t->policy == LB_MAGLEV && lv->maglev ? t->maglev_size : 0,
        .min_entries_per_host = lv->min_per_host, .max_entries_per_host = lv->max_per_host,
    };
    return 0;
}

/* --- per-worker state --- */

struct lb_state *lb_state_new(const struct lb_table *t, uint64_t seed)
{
    if (!t)
        return NULL;
    struct lb_state *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->t = t;
    lb_rng_seed(&s->rng, seed);
    s->sched = calloc(t->nlevels ? t->nlevels : 1, sizeof *s->sched);
    bool edf = t->policy == LB_ROUND_ROBIN || t->policy == LB_LEAST_REQUEST;
    if (edf)
        s->edf_mem = calloc(t->npick_total ? t->npick_total : 1, sizeof *s->edf_mem);
    if (!s->sched || (edf && !s->edf_mem)) {
        lb_state_free(s);
        return NULL;
    }
    size_t off = 0;
    for (size_t l = 0; l < t->nlevels; l++) {
        const struct lb_level *lv = &t->levels[l];
        struct lb_sched *sc = &s->sched[l];
        sc->rr = lv->npick ? lb_rng_below(&s->rng, lv->npick) : 0;
        if (edf && lv->weighted) {
            lb_edf_init(&sc->edf, s->edf_mem + off, lv->pick, lv->npick, t->weight, &s->rng);
            off += lv->npick;
        }
    }
    return s;
}

void lb_state_free(struct lb_state *s)
{
    if (!s)
        return;
    free(s->edf_mem);
    free(s->sched);
    free(s);
}

/* --- picking --- */

/* Envoy's choosePriority: x % 100 + 1 against the running sum of level loads. */
static size_t choose_level(const struct lb_table *t, uint64_t x)
{
    if (t->nlevels == 1)
        return 0;
    uint32_t point = (uint32_t)(x % 100) + 1, acc = 0;
    for (size_t l = 0; l < t->nlevels; l++) {
        acc += t->levels[l].load;
        if (point <= acc)
            return l;
    }
    return 0;
}

/* LEAST_REQUEST weight: weight / (active + 1)^bias, Envoy's formula. */
static double lr_weight(const struct lb_table *t, uint32_t host, const uint32_t *active_rq)
{
    double w = (double)t->weight[host];
    if (!active_rq || t->bias == 0.0)
        return w;
    double a = (double)active_rq[host] + 1.0;
    return t->bias == 1.0 ? w / a : w / pow(a, t->bias);
}

/* Power of choice_count random choices: the one with the fewest active requests wins, the
 * first sampled on a tie. */
static uint32_t lr_unweighted(const struct lb_table *t, struct lb_state *s,
                              const struct lb_level *lv, const uint32_t *active_rq)
{
    uint32_t best = lv->pick[lb_rng_below(&s->rng, lv->npick)];
    if (!active_rq)
        return best;
    for (uint32_t c = 1; c < t->choice_count; c++) {
        uint32_t h = lv->pick[lb_rng_below(&s->rng, lv->npick)];
        if (active_rq[h] < active_rq[best])
            best = h;
    }
    return best;
}

double lb_slow_start_factor(const struct lb_table *t, size_t i, uint64_t now_ms)
{
    if (!t->since || i >= t->nhosts || now_ms >= t->ss_until_ms || !t->since[i])
        return 1.0;
    uint64_t age = now_ms > t->since[i] ? now_ms - t->since[i] : 0;
    if (age >= t->ss_window_ms)
        return 1.0;
    double tf = (double)(age < 1000 ? 1000 : age) / (double)t->ss_window_ms;
    double f = t->ss_exponent == 1.0 ? tf : pow(tf, t->ss_exponent);
    return f > t->ss_min ? (f < 1.0 ? f : 1.0) : t->ss_min;
}

/* One pick for the non-hashing policies: a level by a fresh random draw, then a host in it.
 * now_ms: for slow start (0 when no host of t ramps). */
static int pick_once(const struct lb_table *t, struct lb_state *s, const uint32_t *active_rq, uint64_t now_ms)
{
    size_t l = choose_level(t, lb_rng_next(&s->rng));
    const struct lb_level *lv = &t->levels[l];
    struct lb_sched *sc = &s->sched[l];
    if (lv->npick == 0)
        return -1;
    uint32_t h;
    switch (t->policy) {
    case LB_ROUND_ROBIN:
        if (lv->weighted) {
            h = lb_edf_top(&sc->edf);
            lb_edf_requeue(&sc->edf, (double)t->weight[h] * (now_ms ? lb_slow_start_factor(t, h, now_ms) : 1.0));
        } else {
            h = lv->pick[sc->rr];
            if (++sc->rr == lv->npick)
                sc->rr = 0;
        }
        break;
    case LB_LEAST_REQUEST:
        if (lv->weighted) {
            /* As in Envoy, the weight is read when the host is queued again, so it reflects
             * the active requests at its last pick. */
            h = lb_edf_top(&sc->edf);
            lb_edf_requeue(&sc->edf,
                           lr_weight(t, h, active_rq) * (now_ms ? lb_slow_start_factor(t, h, now_ms) : 1.0));
        } else {
            h = lr_unweighted(t, s, lv, active_rq);
        }
        break;
    default:
        h = lv->pick[lb_rng_below(&s->rng, lv->npick)];
        break;
    }
    return (int)h;
}

/* Ring hash and Maglev: the level comes from the hash itself (so a key keeps its level), and a
 * reselection moves along the ring (Envoy: "as if this host was not in the ring") or, for
 * Maglev, flips most bits of the hash. */
static int pick_hashed(const struct lb_table *t, uint64_t h, const uint8_t *exclude)
{
    const struct lb_level *lv = &t->levels[choose_level(t, h)];
    if (lv->npick == 0)
        return -1;
    uint32_t host = LB_NO_HOST;
    size_t pos = t->policy == LB_RING_HASH ? lb_ring_find(lv, h) : 0;
    for (uint32_t attempt = 0; attempt < LB_PICK_ATTEMPTS; attempt++) {
        if (t->policy == LB_RING_HASH) {
            host = lv->ring[(pos + attempt) % lv->nring].host;
        } else {
            uint64_t x = attempt ? h ^ (~0ULL - attempt + 1) : h;
            host = lv->maglev[x % t->maglev_size];
        }
        if (!exclude || !exclude[host])
            break;
    }
    return (int)host;
}

int lb_pick(const struct lb_table *t, struct lb_state *s, bool has_hash, uint64_t hash,
            const uint32_t *active_rq, const uint8_t *exclude)
{
    if (!t || !s || s->t != t || t->npick_total == 0)
        return -1;
    if (t->policy == LB_RING_HASH || t->policy == LB_MAGLEV)
        return pick_hashed(t, has_hash ? hash : lb_rng_next(&s->rng), exclude);
    /* Slow start reads the clock (vDSO, no syscall) only while some host ramps up. */
    uint64_t now_ms = 0;
    if (t->ss_until_ms && (now_ms = clock_now_us() / 1000u) >= t->ss_until_ms)
        now_ms = 0;
    int h = -1;
    for (uint32_t attempt = 0; attempt < LB_PICK_ATTEMPTS; attempt++) {
        h = pick_once(t, s, active_rq, now_ms);
        if (h < 0 || !exclude || !exclude[h])
            break;
    }
    return h;
}
