/* RING_HASH: Envoy's ketama-style ring (ring_hash_lb), built so that the same host list gives
 * the same ring, and so the same host for a key, as Envoy.
 *
 * Weights are normalized to sum to 1 over the level's pick hosts. The ring scale is chosen so
 * the lightest host gets a whole number of entries, at least min_size in total, capped at
 * max_size: scale = min(ceil(w_min * min_size) / w_min, max_size). Walking the hosts in order,
 * running sums decide each host's entry count (scale × weight, rounded so the total stays
 * right), and entry i of a host is at XXH64("<key>_<i>", seed 0). A lookup takes the first
 * entry whose hash is >= the request hash, wrapping to the start. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "proxy/lb_internal.h"

static int ring_cmp(const void *a, const void *b)
{
    const struct lb_ring_entry *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->host < y->host ? -1 : x->host > y->host;
}

int lb_ring_build(struct lb_level *lv, const struct lb_host_info *hosts, const uint32_t *weight,
                  uint64_t min_size, uint64_t max_size, uint64_t *budget, char *err, size_t errlen)
{
    if (lv->npick == 0)
        return 0;
    uint64_t sum = 0;
    size_t keymax = 0;
    for (uint32_t i = 0; i < lv->npick; i++) {
        sum += weight[lv->pick[i]];
        size_t kl = hosts[lv->pick[i]].key_len;
        keymax = kl > keymax ? kl : keymax;
    }
    double wmin = 1.0;
    for (uint32_t i = 0; i < lv->npick; i++) {
        double w = (double)weight[lv->pick[i]] / (double)sum;
        wmin = w < wmin ? w : wmin;
    }
    double scale = ceil(wmin * (double)min_size) / wmin;
    if (scale > (double)max_size)
        scale = (double)max_size;
    /* The running sums end at ceil(scale × Σw), and Σw is 1 within far less than 1/scale. */
    uint64_t cap = (uint64_t)ceil(scale) + 2;
    if (cap > *budget) {
        if (err)
            snprintf(err, errlen, "ring hash: rings would exceed %u entries in total",
                     LB_TABLE_ENTRIES_LIMIT);
        return -E2BIG;
    }
    struct lb_ring_entry *ring = malloc(cap * sizeof *ring);
    char *buf = malloc(keymax + 24);   /* key, '_', up to 20 digits, NUL */
    if (!ring || !buf) {
        free(ring);
        free(buf);
        if (err)
            snprintf(err, errlen, "ring hash: out of memory");
        return -ENOMEM;
    }

    size_t nring = 0;
    double current = 0.0, target = 0.0;
    uint64_t minc = UINT64_MAX, maxc = 0;
    for (uint32_t i = 0; i < lv->npick; i++) {
        uint32_t h = lv->pick[i];
        const struct lb_host_info *hi = &hosts[h];
        memcpy(buf, hi->key, hi->key_len);
        buf[hi->key_len] = '_';
        target += scale * ((double)weight[h] / (double)sum);
        uint64_t count = 0;
        while (current < target && nring < cap) {
            int dl = snprintf(buf + hi->key_len + 1, 22, "%llu", (unsigned long long)count);
            ring[nring].hash = XXH64(buf, hi->key_len + 1 + (size_t)dl, 0);
            ring[nring].host = h;
            nring++;
            count++;
            current += 1.0;
        }
        minc = count < minc ? count : minc;
        maxc = count > maxc ? count : maxc;
    }
    free(buf);
    qsort(ring, nring, sizeof *ring, ring_cmp);
    lv->ring = ring;
    lv->nring = nring;
    lv->min_per_host = minc;
    lv->max_per_host = maxc;
    *budget -= cap;
    return 0;
}

size_t lb_ring_find(const struct lb_level *lv, uint64_t h)
{
    size_t lo = 0, hi = lv->nring;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lv->ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == lv->nring ? 0 : lo;
}
