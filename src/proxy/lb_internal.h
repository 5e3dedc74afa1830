/* Internals shared by the lb_*.c files: the table layout, the per-worker random generator,
 * the EDF scheduler, priority-load math and the two consistent-hash builders. Not for use
 * outside the load balancer; the API is lb.h. */
#ifndef WEFT_PROXY_LB_INTERNAL_H
#define WEFT_PROXY_LB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/lb.h"

#define LB_NO_HOST UINT32_MAX

struct lb_ring_entry {
    uint64_t hash;
    uint32_t host;
};

/* One priority level of a table. */
struct lb_level {
    uint32_t priority;
    uint32_t nhosts, nhealthy;
    uint32_t health;             /* percent, after overprovisioning, capped at 100 */
    uint32_t load;               /* percent of requests; sum over levels is 100 */
    bool panic;
    bool weighted;               /* weights differ among pick[]: EDF instead of plain rotation */
    uint32_t *pick;              /* host indices picks are made from (into table->pick_mem) */
    uint32_t npick;
    struct lb_ring_entry *ring;  /* RING_HASH: sorted by hash; NULL when npick == 0 */
    size_t nring;
    uint32_t *maglev;            /* MAGLEV: maglev_size host indices; NULL when npick == 0 */
    uint64_t min_per_host, max_per_host;
};

struct lb_table {
    enum lb_policy policy;
    uint32_t choice_count;
    double bias;                 /* active_request_bias */
    uint64_t maglev_size;
    size_t nhosts;
    uint32_t *weight;            /* per host, 0 already read as 1 */
    uint64_t *since;             /* slow start: per host since_ms (NULL without slow start) */
    uint64_t ss_window_ms;       /* 0: no slow start */
    uint64_t ss_until_ms;        /* no host ramps at or after this time */
    double ss_exponent, ss_min;  /* 1 / aggression, min weight fraction */
    uint32_t *pick_mem;          /* every level's pick list, back to back */
    size_t npick_total;
    struct lb_level *levels;
    size_t nlevels;
};

/* --- random numbers: xoshiro256** seeded through splitmix64 --- */

struct lb_rng {
    uint64_t s[4];
};

static inline uint64_t lb_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline void lb_rng_seed(struct lb_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        r->s[i] = z ^ (z >> 31);
    }
}

static inline uint64_t lb_rng_next(struct lb_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = lb_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = lb_rotl(s[3], 45);
    return out;
}

/* Uniform in [0, n) for n < 2^32 by multiply-shift: no division, bias below 2^-32. */
static inline uint32_t lb_rng_below(struct lb_rng *r, uint32_t n)
{
    return (uint32_t)(((lb_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* Uniform double in [0, 1). */
static inline double lb_rng_unit(struct lb_rng *r)
{
    return (double)(lb_rng_next(r) >> 11) * 0x1.0p-53;
}

/* --- earliest-deadline-first schedule (weighted round robin, weighted least request) ---
 * Each host has a deadline; a pick takes the earliest and gives it a new one 1/weight later,
 * so over time each host is picked in proportion to its weight, smoothly interleaved. */

struct lb_edf_entry {
    double deadline;
    uint64_t seq;                /* ties go to the one queued first */
    uint32_t host;
};

struct lb_edf {
    struct lb_edf_entry *heap;   /* caller's memory, n entries */
    uint32_t n;
    double now;
    uint64_t seq;
};

/* Fills the schedule with hosts[0..n) (weights by host index in weight[]) in mem (n entries,
 * owned by the caller). First deadlines are spread at random within one period, so workers
 * do not all start on the same host. */
void lb_edf_init(struct lb_edf *e, struct lb_edf_entry *mem, const uint32_t *hosts, uint32_t n,
                 const uint32_t *weight, struct lb_rng *rng);
/* The host with the earliest deadline (n must be > 0). */
static inline uint32_t lb_edf_top(const struct lb_edf *e)
{
    return e->heap[0].host;
}
/* Consumes the earliest host and queues it again with weight w (> 0). */
void lb_edf_requeue(struct lb_edf *e, double w);

/* --- priority levels --- */

/* Sets health, load and panic of levels[0..n) from their nhosts/nhealthy, as Envoy does:
 * overprovisioning op_pct (140 = 1.4), panic threshold panic_pct (percent, capped at 100). */
void lb_priority_compute(struct lb_level *levels, size_t n, uint32_t op_pct, uint32_t panic_pct);

/* --- consistent hashing: build the level's ring / table from its pick list. Return 0, or
 * -ENOMEM / -E2BIG (over *budget entries, which is decreased by what is used) with err set. */

int lb_ring_build(struct lb_level *lv, const struct lb_host_info *hosts, const uint32_t *weight,
                  uint64_t min_size, uint64_t max_size, uint64_t *budget, char *err, size_t errlen);
/* Position of the first ring entry with hash >= h, wrapping to 0 (nring must be > 0). */
size_t lb_ring_find(const struct lb_level *lv, uint64_t h);

int lb_maglev_build(struct lb_level *lv, const struct lb_host_info *hosts, const uint32_t *weight,
                    uint64_t size, uint64_t *budget, char *err, size_t errlen);

#endif
