/* Fixed-size I/O buffers from a per-thread free list.
 *
 * A buffer is one malloc'd block: header + data. Buffers are taken when a connection has
 * bytes to hold and given back as soon as it is idle, so an idle proxy holds almost none, and
 * in steady state every buffer comes from the free list (no malloc on the request path).
 * A pool belongs to one thread; it is never shared. */
#ifndef WEFT_COMMON_BUF_H
#define WEFT_COMMON_BUF_H

#include <stddef.h>
#include <string.h>

/* Every buffer holds BUF_SIZE bytes: room for a 64 KiB request head (Envoy's largest default
 * is 60 KiB) plus 32 KiB of body in flight. */
#define BUF_SIZE (96 * 1024)

struct buf {
    size_t head;          /* first unread byte */
    size_t tail;          /* one past the last written byte */
    struct buf *next;     /* free-list link */
    char data[BUF_SIZE];
};

struct buf_pool {
    struct buf *free;
    size_t nfree;
    size_t max_free;      /* beyond this, returned buffers are freed */
};

void buf_pool_init(struct buf_pool *p, size_t max_free);
void buf_pool_drain(struct buf_pool *p);
/* Returns an empty buffer, or NULL when out of memory. */
struct buf *buf_get(struct buf_pool *p);
/* Returns b (may be NULL) to the pool. */
void buf_put(struct buf_pool *p, struct buf *b);

static inline size_t buf_len(const struct buf *b) { return b->tail - b->head; }
static inline size_t buf_room(const struct buf *b) { return BUF_SIZE - b->tail; }
static inline char *buf_rpos(struct buf *b) { return b->data + b->head; }
static inline char *buf_wpos(struct buf *b) { return b->data + b->tail; }
/* Moves unread bytes to offset `keep` (bytes before it are preserved), making room at the end. */
static inline void buf_compact_to(struct buf *b, size_t keep)
{
    if (b->head == keep)
        return;
    size_t n = buf_len(b);
    memmove(b->data + keep, b->data + b->head, n);
    b->head = keep;
    b->tail = keep + n;
}
/* Appends n bytes; returns 0, or -1 if they do not fit. */
static inline int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n > buf_room(b))
        return -1;
    memcpy(b->data + b->tail, p, n);
    b->tail += n;
    return 0;
}

#endif
