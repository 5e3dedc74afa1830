#include "common/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 256

struct loop {
    int epfd;
    struct io wake_io;
    loop_wake_cb wake_cb;
    void *wake_arg;
    bool stopping;
    uint64_t now_ms;
    struct timer **heap;
    size_t heap_len, heap_cap;
    struct deferred *deferred;
};

void loop_defer(struct loop *l, struct deferred *d, void (*fn)(struct deferred *d))
{
    d->fn = fn;
    d->next = l->deferred;
    l->deferred = d;
}

void loop_undefer(struct loop *l, struct deferred *d)
{
    for (struct deferred **p = &l->deferred; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            return;
        }
}

static void run_deferred(struct loop *l)
{
    while (l->deferred) {
        struct deferred *d = l->deferred;
        l->deferred = d->next;
        d->fn(d);
    }
}

uint64_t clock_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t loop_update_time(struct loop *l)
{
    l->now_ms = clock_now_us() / 1000u;
    return l->now_ms;
}

uint64_t loop_now_ms(const struct loop *l) { return l->now_ms; }

static void on_wake(struct loop *l, struct io *io, uint32_t events)
{
    (void)events;
    uint64_t v;
    while (read(io->fd, &v, sizeof v) > 0) {
    }
    if (l->wake_cb)
        l->wake_cb(l, l->wake_arg);
}

struct loop *loop_new(loop_wake_cb wake_cb, void *wake_arg)
{
    struct loop *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->heap_cap = 64;
    l->heap = malloc(l->heap_cap * sizeof *l->heap);
    if (l->epfd < 0 || efd < 0 || !l->heap) {
        if (efd >= 0)
            close(efd);
        if (l->epfd >= 0)
            close(l->epfd);
        free(l->heap);
        free(l);
        return NULL;
    }
    l->wake_cb = wake_cb;
    l->wake_arg = wake_arg;
    loop_update_time(l);
    io_start(l, &l->wake_io, efd, EPOLLIN, on_wake, NULL);
    return l;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    run_deferred(l); /* objects closed after the loop stopped still need their memory back */
    close(l->wake_io.fd);
    close(l->epfd);
    free(l->heap);
    free(l);
}

void loop_stop(struct loop *l) { l->stopping = true; }

void loop_wake(struct loop *l)
{
    uint64_t one = 1;
    ssize_t r = write(l->wake_io.fd, &one, sizeof one);
    (void)r; /* EAGAIN means a wake is already pending */
}

int io_start(struct loop *l, struct io *io, int fd, uint32_t events, io_cb cb, void *data)
{
    io->fd = fd;
    io->cb = cb;
    io->data = data;
    io->events = events;
    struct epoll_event ev = {.events = events | EPOLLET | EPOLLRDHUP, .data.ptr = io};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int io_modify(struct loop *l, struct io *io, uint32_t events)
{
    if (io->events == events)
        return 0;
    io->events = events;
    struct epoll_event ev = {.events = events | EPOLLET | EPOLLRDHUP, .data.ptr = io};
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0 ? -errno : 0;
}

void io_stop(struct loop *l, struct io *io)
{
    if (io->fd >= 0 && io->cb) {
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
        io->cb = NULL;
    }
}

/* --- timers: a binary min-heap ordered by deadline, each timer knows its slot --- */

static void heap_set(struct loop *l, size_t i, struct timer *t)
{
    l->heap[i] = t;
    t->heap_index = (int)i;
}

static void heap_up(struct loop *l, size_t i)
{
    struct timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->deadline_ms <= t->deadline_ms)
            break;
        heap_set(l, i, l->heap[parent]);
        i = parent;
    }
    heap_set(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
    struct timer *t = l->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->heap_len)
            break;
        if (c + 1 < l->heap_len && l->heap[c + 1]->deadline_ms < l->heap[c]->deadline_ms)
            c++;
        if (l->heap[c]->deadline_ms >= t->deadline_ms)
            break;
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

void timer_init(struct timer *t, timer_cb cb, void *data)
{
    t->cb = cb;
    t->data = data;
    t->heap_index = -1;
    t->deadline_ms = 0;
}

void timer_stop(struct loop *l, struct timer *t)
{
    if (t->heap_index < 0)
        return;
    size_t i = (size_t)t->heap_index;
    t->heap_index = -1;
    struct timer *last = l->heap[--l->heap_len];
    if (i == l->heap_len)
        return;
    heap_set(l, i, last);
    heap_down(l, i);
    heap_up(l, (size_t)last->heap_index);
}

void timer_start(struct loop *l, struct timer *t, uint64_t ms)
{
    timer_stop(l, t);
    if (l->heap_len == l->heap_cap) {
        struct timer **h = realloc(l->heap, 2 * l->heap_cap * sizeof *h);
        if (!h)
            abort(); /* out of memory for a timer: nothing sane to do */
        l->heap = h;
        l->heap_cap *= 2;
    }
    t->deadline_ms = l->now_ms + ms;
    l->heap[l->heap_len] = t;
    t->heap_index = (int)l->heap_len++;
    heap_up(l, l->heap_len - 1);
}

static int next_timeout(struct loop *l)
{
    if (l->heap_len == 0)
        return 1000;
    uint64_t d = l->heap[0]->deadline_ms;
    if (d <= l->now_ms)
        return 0;
    uint64_t w = d - l->now_ms;
    return w > 1000 ? 1000 : (int)w;
}

static void run_timers(struct loop *l)
{
    while (l->heap_len > 0 && l->heap[0]->deadline_ms <= l->now_ms) {
        struct timer *t = l->heap[0];
        timer_stop(l, t);
        t->cb(l, t);
    }
}

int loop_run(struct loop *l)
{
    struct epoll_event evs[LOOP_MAX_EVENTS];
    while (!l->stopping) {
        int n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, next_timeout(l));
        loop_update_time(l);
        for (int i = 0; i < n; i++) {
            struct io *io = evs[i].data.ptr;
            if (io->cb)
                io->cb(l, io, evs[i].events);
        }
        run_deferred(l);
        run_timers(l);
        run_deferred(l);
    }
    l->stopping = false;
    return 0;
}
