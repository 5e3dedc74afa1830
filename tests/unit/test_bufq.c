/* common/bufq.h: a body as a front buffer plus queued pool buffers, read from the front only. */
#include <stdlib.h>

#include "common/bufq.h"
#include "test.h"

/* Reads the whole body the way the codecs do (front, take, refill); checks byte i == i % 251. */
static size_t drain(struct buf **front, struct bufq *q, struct buf_pool *pool, size_t step)
{
    size_t got = 0;
    while (*front && buf_len(*front)) {
        size_t n = buf_len(*front) < step ? buf_len(*front) : step;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)buf_rpos(*front)[i] != (got + i) % 251)
                return (size_t)-1;
        got += n;
        (*front)->head += n;
        bufq_refill(front, q, pool);
    }
    return got;
}

static void fill(struct buf **front, struct bufq *q, struct buf_pool *pool, size_t from, size_t total, size_t chunk)
{
    unsigned char b[16384];
    for (size_t off = from; off < total; off += chunk) {
        size_t n = total - off < chunk ? total - off : chunk;
        for (size_t i = 0; i < n; i++)
            b[i] = (unsigned char)((off + i) % 251);
        CHECK_EQ_INT(bufq_append(front, q, pool, b, n), 0);
    }
}

static void test_window_of_bytes_round_trips(void)
{
    struct buf_pool pool;
    buf_pool_init(&pool, 8);
    struct buf *front = NULL;
    struct bufq q = {0};
    size_t total = 1000000; /* about ten buffers */
    fill(&front, &q, &pool, 0, total, 16384);
    CHECK(q.len > 0);
    CHECK_EQ_INT(buf_len(front) + q.len, total);
    CHECK_EQ_INT(drain(&front, &q, &pool, 7000), total);
    CHECK(q.head == NULL && q.tail == NULL && q.len == 0);
    buf_put(&pool, front);
    buf_pool_drain(&pool);
}

static void test_interleaved_append_and_take(void)
{
    struct buf_pool pool;
    buf_pool_init(&pool, 8);
    struct buf *front = NULL;
    struct bufq q = {0};
    /* Half of the body arrives, some is taken, the rest arrives: order is kept. */
    fill(&front, &q, &pool, 0, 300000, 10000);
    size_t taken = 0;
    while (taken < 150000) {
        size_t n = buf_len(front) < 5000 ? buf_len(front) : 5000;
        front->head += n;
        taken += n;
        bufq_refill(&front, &q, &pool);
    }
    fill(&front, &q, &pool, 300000, 600000, 10000);
    CHECK_EQ_INT(buf_len(front) + q.len, 600000 - taken);
    /* What is left starts at byte `taken`. */
    size_t left = 0;
    while (front && buf_len(front)) {
        CHECK_EQ_INT((unsigned char)buf_rpos(front)[0], (taken + left) % 251);
        left += buf_len(front);
        front->head = front->tail;
        bufq_refill(&front, &q, &pool);
    }
    CHECK_EQ_INT(left, 600000 - taken);
    buf_put(&pool, front);
    bufq_clear(&q, &pool);
    buf_pool_drain(&pool);
}

static void test_clear_gives_buffers_back(void)
{
    struct buf_pool pool;
    buf_pool_init(&pool, 64);
    struct buf *front = NULL;
    struct bufq q = {0};
    fill(&front, &q, &pool, 0, 500000, 16384);
    bufq_clear(&q, &pool);
    CHECK(q.head == NULL && q.len == 0);
    CHECK(pool.nfree >= 4);
    buf_put(&pool, front);
    buf_pool_drain(&pool);
}

TEST_MAIN(TEST(test_window_of_bytes_round_trips), TEST(test_interleaved_append_and_take),
          TEST(test_clear_gives_buffers_back))
