#include "common/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned g_slots = 1;
static struct stat_block *g_blocks, *g_last;

void stats_init(unsigned nworkers)
{
    g_slots = nworkers + 1;
    if (g_slots > STATS_MAX_SLOTS)
        g_slots = STATS_MAX_SLOTS;
}

unsigned stats_slots(void) { return g_slots; }

struct stat_block *stats_block(const char *prefix, const struct stat_schema *schema)
{
    for (struct stat_block *b = g_blocks; b; b = b->next)
        if (b->schema == schema && strcmp(b->prefix, prefix) == 0)
            return b;
    struct stat_block *b = calloc(1, sizeof *b);
    size_t n = schema->n + (schema->code_prefix ? STATS_CODE_MAX - STATS_CODE_MIN : 0);
    b->stride = (n + 7) & ~(size_t)7; /* 64-byte slots: no false sharing between workers */
    b->vals = calloc((size_t)g_slots * b->stride, sizeof *b->vals);
    b->prefix = strdup(prefix);
    b->schema = schema;
    if (!b->vals || !b->prefix)
        abort();
    if (g_last)
        g_last->next = b;
    else
        g_blocks = b;
    g_last = b;
    return b;
}

int64_t stats_value(const struct stat_block *b, size_t field)
{
    uint64_t sum = 0;
    for (unsigned s = 0; s < g_slots; s++)
        sum += atomic_load_explicit(&b->vals[(size_t)s * b->stride + field], memory_order_relaxed);
    return (int64_t)sum;
}

int64_t stats_code_value(const struct stat_block *b, int code)
{
    return stats_value(b, b->schema->n + (size_t)(code - STATS_CODE_MIN));
}

void stats_visit(stats_visit_fn fn, void *arg)
{
    char name[512];
    for (struct stat_block *b = g_blocks; b; b = b->next) {
        for (size_t i = 0; i < b->schema->n; i++) {
            snprintf(name, sizeof name, "%s%s", b->prefix, b->schema->defs[i].name);
            fn(arg, name, b->schema->defs[i].kind, stats_value(b, i));
        }
        if (!b->schema->code_prefix)
            continue;
        for (int code = STATS_CODE_MIN; code < STATS_CODE_MAX; code++) {
            int64_t v = stats_code_value(b, code);
            if (v == 0)
                continue;
            snprintf(name, sizeof name, "%s%s%d", b->prefix, b->schema->code_prefix, code);
            fn(arg, name, STAT_COUNTER, v);
        }
    }
}

void stats_shutdown(void)
{
    while (g_blocks) {
        struct stat_block *b = g_blocks;
        g_blocks = b->next;
        free(b->prefix);
        free(b->vals);
        free(b);
    }
    g_last = NULL;
}
