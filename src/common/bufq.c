#include "common/bufq.h"

/* Queues n bytes at the tail, filling the last buffer before taking another. */
static int enqueue(struct bufq *q, struct buf_pool *pool, const char *p, size_t n)
{
    while (n) {
        struct buf *t = q->tail;
        if (!t || buf_room(t) == 0) {
            if (!(t = buf_get(pool)))
                return -1;
            t->next = NULL;
            if (q->tail)
                q->tail->next = t;
            else
                q->head = t;
            q->tail = t;
        }
        size_t k = n < buf_room(t) ? n : buf_room(t);
        buf_append(t, p, k);
        q->len += k;
        p += k;
        n -= k;
    }
    return 0;
}

int bufq_append(struct buf **front, struct bufq *q, struct buf_pool *pool, const void *p, size_t n)
{
    if (!q->head) {
        if (!*front && !(*front = buf_get(pool)))
            return -1;
        struct buf *f = *front;
        if (buf_len(f) == 0)
            f->head = f->tail = 0;
        if (buf_room(f) < n)
            buf_compact_to(f, 0);
        if (buf_room(f) >= n)
            return buf_append(f, p, n);
    }
    return enqueue(q, pool, p, n);
}

void bufq_refill(struct buf **front, struct bufq *q, struct buf_pool *pool)
{
    struct buf *f = *front;
    if (f && buf_len(f))
        return;
    if (f)
        f->head = f->tail = 0;
    struct buf *b = q->head;
    if (!b)
        return;
    q->head = b->next;
    if (!q->head)
        q->tail = NULL;
    q->len -= buf_len(b);
    b->next = NULL;
    buf_put(pool, f);
    *front = b;
}

void bufq_clear(struct bufq *q, struct buf_pool *pool)
{
    for (struct buf *b = q->head, *next; b; b = next) {
        next = b->next;
        buf_put(pool, b);
    }
    q->head = q->tail = NULL;
    q->len = 0;
}
