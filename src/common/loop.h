/* One event loop per thread: epoll for sockets, a binary min-heap of timers, and an eventfd
 * so that other threads can wake the loop (config snapshot swaps, drain, stop).
 * Nothing here allocates after loop_new() except the timer heap growing past its capacity. */
#ifndef WEFT_COMMON_LOOP_H
#define WEFT_COMMON_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

struct loop;
struct io;
struct timer;

typedef void (*io_cb)(struct loop *l, struct io *io, uint32_t events);
typedef void (*timer_cb)(struct loop *l, struct timer *t);
typedef void (*loop_wake_cb)(struct loop *l, void *arg);

/* A file descriptor watched by a loop. Embed it in the owning object; `data` is free for the owner. */
struct io {
    int fd;
    uint32_t events;   /* EPOLLIN | EPOLLOUT currently registered (edge-triggered) */
    io_cb cb;
    void *data;
};

/* A one-shot timer. Embed it; it is inactive when heap_index < 0. */
struct timer {
    uint64_t deadline_ms;
    timer_cb cb;
    void *data;
    int heap_index;
};

/* Deferred release: objects that die inside an event callback must stay valid until the
 * current epoll batch is done (another event in the batch may point at them). Embed one and
 * pass it to loop_defer(); fn runs after the batch. */
struct deferred {
    struct deferred *next;
    void (*fn)(struct deferred *d);
};
void loop_defer(struct loop *l, struct deferred *d, void (*fn)(struct deferred *d));
/* Takes back a deferred call that has not run yet (its object is going away). */
void loop_undefer(struct loop *l, struct deferred *d);

/* Creates a loop; wake_cb (may be NULL) runs on the loop's thread after loop_wake() from any thread. */
struct loop *loop_new(loop_wake_cb wake_cb, void *wake_arg);
/* Runs any deferred releases still pending, then frees the loop. */
void loop_free(struct loop *l);
/* Runs until loop_stop(). Returns 0. */
int loop_run(struct loop *l);
/* Stops the loop after the current iteration. Loop thread only; use loop_wake from others. */
void loop_stop(struct loop *l);
/* Thread-safe: makes the loop call its wake_cb soon. */
void loop_wake(struct loop *l);

/* Milliseconds of CLOCK_MONOTONIC, cached at the start of each loop iteration. */
uint64_t loop_now_ms(const struct loop *l);
/* Refreshes the cached time (for measuring within one iteration). */
uint64_t loop_update_time(struct loop *l);
/* Monotonic time in microseconds, not cached. */
uint64_t clock_now_us(void);

/* Registers io->fd with the given events (EPOLLIN/EPOLLOUT, edge-triggered). Returns 0 or -errno. */
int io_start(struct loop *l, struct io *io, int fd, uint32_t events, io_cb cb, void *data);
/* Changes the watched events; no syscall when unchanged. */
int io_modify(struct loop *l, struct io *io, uint32_t events);
/* Connections are watched for EPOLLIN only: an edge-triggered EPOLLOUT would wake the loop
 * every time the peer reads what was sent (once per request on a busy keep-alive connection).
 * A writer that could not write everything asks for EPOLLOUT (on = true) and drops it again
 * (on = false) when the event comes. */
static inline int io_want_write(struct loop *l, struct io *io, bool on)
{
    return io_modify(l, io, on ? io->events | EPOLLOUT : io->events & ~(uint32_t)EPOLLOUT);
}
/* Unregisters (does not close the fd). Safe to call twice. */
void io_stop(struct loop *l, struct io *io);

void timer_init(struct timer *t, timer_cb cb, void *data);
/* (Re)arms the timer to fire after ms milliseconds. */
void timer_start(struct loop *l, struct timer *t, uint64_t ms);
void timer_stop(struct loop *l, struct timer *t);
static inline bool timer_active(const struct timer *t) { return t->heap_index >= 0; }

#endif
