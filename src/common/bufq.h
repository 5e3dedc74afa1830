/* A body held as one front buffer plus a FIFO of pool buffers behind it (struct buf's `next`
 * links them while they are in use).
 *
 * An HTTP/2 peer may send as many bytes as the stream window we advertised before we reopen
 * it, and that window is configurable up to 2 GiB (Envoy's initial_stream_window_size): the
 * bytes that do not fit in the front buffer wait here until the other side drains the front.
 * The window, not this queue, is the bound: the codecs reopen it only as bytes leave.
 *
 * Invariant: the front is empty only when the queue is, so readers keep looking at the front
 * alone (buf_rpos / buf_len) and call bufq_refill after taking bytes from it. */
#ifndef WEFT_COMMON_BUFQ_H
#define WEFT_COMMON_BUFQ_H

#include "common/buf.h"

struct bufq {
    struct buf *head, *tail;
    size_t len;           /* bytes queued behind the front */
};

/* Appends n bytes to the body *front + q (taking buffers from pool). Returns 0, or -1 when
 * out of buffers. */
int bufq_append(struct buf **front, struct bufq *q, struct buf_pool *pool, const void *p, size_t n);
/* After bytes were taken from *front: once it is empty, the next queued buffer replaces it. */
void bufq_refill(struct buf **front, struct bufq *q, struct buf_pool *pool);
/* Gives every queued buffer back (the front is the caller's). */
void bufq_clear(struct bufq *q, struct buf_pool *pool);

#endif
