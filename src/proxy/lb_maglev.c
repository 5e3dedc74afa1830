/* MAGLEV: the lookup table of the Maglev paper (section 3.4) with Envoy's weighting, so a host
 * list gives the same table as Envoy's maglev_lb.
 *
 * Hosts are taken in order of their key (so the table does not depend on list order). Each has
 * offset = XXH64(key, seed 0) % M and skip = XXH64(key, seed 1) % (M - 1) + 1, and fills the
 * table slot (offset + skip × next) % M, moving next on while the slot is taken. Rounds go over
 * the hosts again and again until all M slots are full; with weights normalized to sum to 1,
 * a host takes a slot in round r only when r × weight >= its running target, and each slot it
 * takes adds the largest weight to that target: the heaviest hosts fill a slot every round,
 * a host of a third of that weight every third round. A lookup is table[hash % M]. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "proxy/lb_internal.h"

struct maglev_build {
    const char *key;
    size_t key_len;
    uint32_t host;
    uint64_t offset, skip, next, count;
    double weight, target;
};

/* Byte-wise key order (a prefix sorts first), then host index for equal keys. */
static int build_cmp(const void *a, const void *b)
{
    const struct maglev_build *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = n ? memcmp(x->key, y->key, n) : 0;
    if (c)
        return c;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    return x->host < y->host ? -1 : x->host > y->host;
}

int lb_maglev_build(struct lb_level *lv, const struct lb_host_info *hosts, const uint32_t *weight,
                    uint64_t size, uint64_t *budget, char *err, size_t errlen)
{
    if (lv->npick == 0)
        return 0;
    if (size > *budget) {
        if (err)
            snprintf(err, errlen, "maglev: tables would exceed %u entries in total",
                     LB_TABLE_ENTRIES_LIMIT);
        return -E2BIG;
    }
    struct maglev_build *e = calloc(lv->npick, sizeof *e);
    uint32_t *table = malloc(size * sizeof *table);
    if (!e || !table) {
        free(e);
        free(table);
        if (err)
            snprintf(err, errlen, "maglev: out of memory");
        return -ENOMEM;
    }
    uint64_t sum = 0;
    for (uint32_t i = 0; i < lv->npick; i++)
        sum += weight[lv->pick[i]];
    double wmax = 0.0;
    for (uint32_t i = 0; i < lv->npick; i++) {
        uint32_t h = lv->pick[i];
        e[i].key = hosts[h].key;
        e[i].key_len = hosts[h].key_len;
        e[i].host = h;
        e[i].weight = (double)weight[h] / (double)sum;
        wmax = e[i].weight > wmax ? e[i].weight : wmax;
    }
    qsort(e, lv->npick, sizeof *e, build_cmp);
    for (uint32_t i = 0; i < lv->npick; i++) {
        e[i].offset = XXH64(e[i].key, e[i].key_len, 0) % size;
        e[i].skip = XXH64(e[i].key, e[i].key_len, 1) % (size - 1) + 1;
    }

    for (uint64_t i = 0; i < size; i++)
        table[i] = LB_NO_HOST;
    uint64_t filled = 0;
    for (uint64_t round = 1; filled < size; round++) {
        for (uint32_t i = 0; i < lv->npick && filled < size; i++) {
            struct maglev_build *b = &e[i];
            if ((double)round * b->weight < b->target)
                continue;
            b->target += wmax;
            /* skip < M and next < M (a host's probe sequence visits every slot once within
             * M steps, and the table is full by then), so skip × next cannot overflow. */
            uint64_t c = (b->offset + b->skip * b->next) % size;
            while (table[c] != LB_NO_HOST) {
                b->next++;
                c = (b->offset + b->skip * b->next) % size;
            }
            table[c] = b->host;
            b->next++;
            b->count++;
            filled++;
        }
    }

    uint64_t minc = UINT64_MAX, maxc = 0;
    for (uint32_t i = 0; i < lv->npick; i++) {
        minc = e[i].count < minc ? e[i].count : minc;
        maxc = e[i].count > maxc ? e[i].count : maxc;
    }
    free(e);
    lv->maglev = table;
    lv->min_per_host = minc;
    lv->max_per_host = maxc;
    *budget -= size;
    return 0;
}
