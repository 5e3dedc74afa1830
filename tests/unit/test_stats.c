#include "common/buf.h"
#include "common/stats.h"
#include "test.h"

static const struct stat_def defs[] = {{"rq_total", STAT_COUNTER}, {"cx_active", STAT_GAUGE}};
static const struct stat_schema schema = {"test", defs, 2, "rq_"};

struct seen {
    int n;
    long long total, active, c503;
};

static void visit(void *arg, const char *name, enum stat_kind kind, int64_t v)
{
    struct seen *s = arg;
    s->n++;
    if (!strcmp(name, "cluster.x.rq_total"))
        s->total = v;
    if (!strcmp(name, "cluster.x.cx_active") && kind == STAT_GAUGE)
        s->active = v;
    if (!strcmp(name, "cluster.x.rq_503"))
        s->c503 = v;
}

static void slots_sum(void)
{
    stats_init(3);
    struct stat_block *b = stats_block("cluster.x.", &schema);
    CHECK(stats_block("cluster.x.", &schema) == b); /* found again by name */
    stats_inc(b, 0, 0);
    stats_inc(b, 1, 0);
    stats_add(b, 2, 0, 5);
    stats_add(b, 0, 1, 2);
    stats_add(b, 1, 1, -1);
    stats_code(b, 0, 503);
    stats_code(b, 2, 503);
    stats_code(b, 1, 99);  /* out of range: ignored */
    CHECK_EQ_INT(stats_value(b, 0), 7);
    CHECK_EQ_INT(stats_value(b, 1), 1);
    CHECK_EQ_INT(stats_code_value(b, 503), 2);
    struct seen s = {0};
    stats_visit(visit, &s);
    CHECK_EQ_INT(s.n, 3); /* two defs + one non-zero code */
    CHECK_EQ_INT(s.total, 7);
    CHECK_EQ_INT(s.active, 1);
    CHECK_EQ_INT(s.c503, 2);
    stats_shutdown();
}

static void buffers_recycle(void)
{
    struct buf_pool p;
    buf_pool_init(&p, 2);
    struct buf *a = buf_get(&p), *b = buf_get(&p), *c = buf_get(&p);
    CHECK(a && b && c);
    CHECK(buf_append(a, "hello", 5) == 0);
    CHECK_EQ_INT(buf_len(a), 5);
    a->head = 2;
    buf_compact_to(a, 0);
    CHECK(memcmp(buf_rpos(a), "llo", 3) == 0);
    buf_put(&p, a);
    buf_put(&p, b);
    buf_put(&p, c);           /* beyond max_free: freed */
    CHECK_EQ_INT(p.nfree, 2);
    struct buf *d = buf_get(&p);
    CHECK(d == b);             /* most recent first */
    CHECK_EQ_INT(buf_len(d), 0);
    buf_put(&p, d);
    buf_pool_drain(&p);
    CHECK_EQ_INT(p.nfree, 0);
}

TEST_MAIN(TEST(slots_sum), TEST(buffers_recycle))
