#include <sys/epoll.h>
#include <unistd.h>

#include "common/loop.h"
#include "test.h"

static int fired[8];
static int order[8], norder;

static void on_timer(struct loop *l, struct timer *t)
{
    int id = (int)(intptr_t)t->data;
    fired[id]++;
    order[norder++] = id;
    if (norder == 3)
        loop_stop(l);
}

static void timers_fire_in_order(void)
{
    struct loop *l = loop_new(NULL, NULL);
    struct timer t[4];
    for (int i = 0; i < 4; i++)
        timer_init(&t[i], on_timer, (void *)(intptr_t)i);
    timer_start(l, &t[0], 30);
    timer_start(l, &t[1], 10);
    timer_start(l, &t[2], 20);
    timer_start(l, &t[3], 5);
    timer_stop(l, &t[3]);          /* stopped timers never fire */
    CHECK(!timer_active(&t[3]));
    loop_run(l);
    CHECK_EQ_INT(norder, 3);
    CHECK_EQ_INT(order[0], 1);
    CHECK_EQ_INT(order[1], 2);
    CHECK_EQ_INT(order[2], 0);
    CHECK_EQ_INT(fired[3], 0);
    loop_free(l);
}

static int wakes;
static void on_wake(struct loop *l, void *arg)
{
    (void)arg;
    wakes++;
    loop_stop(l);
}

static void wake_runs_callback(void)
{
    struct loop *l = loop_new(on_wake, NULL);
    loop_wake(l);
    loop_run(l);
    CHECK_EQ_INT(wakes, 1);
    loop_free(l);
}

static int reads;
static void on_read(struct loop *l, struct io *io, uint32_t ev)
{
    char b[16];
    if (ev & EPOLLIN)
        reads += (int)read(io->fd, b, sizeof b);
    loop_stop(l);
}

static void io_reports_readable(void)
{
    int p[2];
    CHECK(pipe(p) == 0);
    struct loop *l = loop_new(NULL, NULL);
    struct io io;
    CHECK(io_start(l, &io, p[0], EPOLLIN, on_read, NULL) == 0);
    CHECK(write(p[1], "hello", 5) == 5);
    loop_run(l);
    CHECK_EQ_INT(reads, 5);
    io_stop(l, &io);
    close(p[0]);
    close(p[1]);
    loop_free(l);
}

static int freed;
static void free_cb(struct deferred *d) { (void)d; freed++; }
static void on_defer_timer(struct loop *l, struct timer *t)
{
    loop_defer(l, t->data, free_cb);
    CHECK_EQ_INT(freed, 0); /* not inside the callback */
    loop_stop(l);
}

static void deferred_runs_after_batch(void)
{
    struct loop *l = loop_new(NULL, NULL);
    struct deferred d;
    struct timer t;
    timer_init(&t, on_defer_timer, &d);
    timer_start(l, &t, 1);
    loop_run(l);
    CHECK_EQ_INT(freed, 1);
    loop_free(l);
}

static void many_timers_heap(void)
{
    struct loop *l = loop_new(NULL, NULL);
    static struct timer t[1000];
    for (int i = 0; i < 1000; i++) {
        timer_init(&t[i], on_timer, 0);
        timer_start(l, &t[i], (uint64_t)((i * 7919) % 1000) + 100000);
    }
    for (int i = 0; i < 1000; i += 2)
        timer_stop(l, &t[i]);
    for (int i = 1; i < 1000; i += 2)
        CHECK(timer_active(&t[i]));
    for (int i = 1; i < 1000; i += 2)
        timer_stop(l, &t[i]);
    loop_free(l);
}

TEST_MAIN(TEST(timers_fire_in_order), TEST(wake_runs_callback), TEST(io_reports_readable),
          TEST(deferred_runs_after_batch), TEST(many_timers_heap))
