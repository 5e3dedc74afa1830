/* Stats, Envoy-style names, lock-free on the hot path.
 *
 * A stat block is a named prefix ("cluster.backend.", "http.ingress.", "listener.0.0.0.0_8080.")
 * with a fixed schema of counters and gauges. Every worker thread writes only its own slice of
 * every block (a plain uint64 increment, no atomics); the main thread sums the slices when
 * rendering /stats. Blocks are created on the main thread when config is built and are kept by
 * name for the life of the process, so counters survive config updates as they do in Envoy.
 * Slot (workers) index nworkers is the main thread's own slice. */
#ifndef WEFT_COMMON_STATS_H
#define WEFT_COMMON_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum stat_kind { STAT_COUNTER, STAT_GAUGE };

struct stat_def {
    const char *name;          /* suffix after the block prefix, e.g. "upstream_rq_total" */
    enum stat_kind kind;
};

struct stat_schema {
    const char *id;            /* schema identity, e.g. "cluster" */
    const struct stat_def *defs;
    size_t n;
    /* Optional: a range of per-status-code counters, rendered as "<code_prefix><code>" for
     * every code in [100, 600) that is non-zero (e.g. "upstream_rq_" → upstream_rq_503). */
    const char *code_prefix;
};

#define STATS_CODE_MIN 100
#define STATS_CODE_MAX 600
#define STATS_MAX_SLOTS 257    /* at most 256 workers + the main thread */

struct stat_block {
    char *prefix;
    const struct stat_schema *schema;
    size_t stride;             /* uint64 values per slot, cache-line padded */
    _Atomic uint64_t *vals;    /* slots * stride values */
    struct stat_block *next;
};

/* Sets the number of worker slots (call once at startup, before any block is made). */
void stats_init(unsigned nworkers);
unsigned stats_slots(void);
/* Finds or creates the block for prefix (which must end in '.'). Main thread only. Never NULL
 * (aborts on out of memory at config time). */
struct stat_block *stats_block(const char *prefix, const struct stat_schema *schema);
/* Only the slot's own thread writes it, so an update is a relaxed load and store (a plain
 * add on x86-64, no lock prefix); the atomics only make the main thread's reads well defined. */
static inline void stats_add(struct stat_block *b, unsigned slot, size_t field, int64_t delta)
{
    _Atomic uint64_t *v = b->vals + (size_t)slot * b->stride + field;
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + (uint64_t)delta,
                          memory_order_relaxed);
}
static inline void stats_inc(struct stat_block *b, unsigned slot, size_t field)
{
    stats_add(b, slot, field, 1);
}
/* Counts a status code in the block's code range. */
static inline void stats_code(struct stat_block *b, unsigned slot, int code)
{
    if (b->schema->code_prefix && code >= STATS_CODE_MIN && code < STATS_CODE_MAX)
        stats_add(b, slot, b->schema->n + (size_t)(code - STATS_CODE_MIN), 1);
}
/* Sum over slots (gauges may be negative in a slot: they are signed deltas). */
int64_t stats_value(const struct stat_block *b, size_t field);
int64_t stats_code_value(const struct stat_block *b, int code);

/* Visits every stat with its full name and value, blocks in creation order. */
typedef void (*stats_visit_fn)(void *arg, const char *name, enum stat_kind kind, int64_t value);
void stats_visit(stats_visit_fn fn, void *arg);
/* Frees everything (tests and clean shutdown). */
void stats_shutdown(void);

#endif
