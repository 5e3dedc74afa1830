/* weft-grpc-testsrv: a gRPC echo server built on src/net/grpc_server, for the end-to-end tests
 * (tests/e2e/test_grpc_server.py). Service weft.test.Echo, messages are raw bytes:
 *   Unary         echoes the request; request metadata named x-echo-* comes back as response
 *                 headers; exactly one request message is required
 *   ServerStream  request "COUNT,SIZE": COUNT messages of SIZE bytes ("<i>:" then 'x' padding),
 *                 sent as fast as the client's flow control lets (backpressure via on_writable)
 *   ClientStream  replies with the concatenation of every request message
 *   Bidi          echoes each message as it arrives; finishes OK when the client half-closes
 *   Fail          request "CODE MESSAGE": finishes with that status, message and a trailer
 *                 x-fail-trailer: yes
 *   Delay         request "MS": waits MS milliseconds, then echoes the request
 *   Stats         text counters of the server (grpc_server_get_stats) and of on_done reasons
 * Usage: weft-grpc-testsrv [--addr A] [--port P] [--max-message N] [--max-streams N]
 *        [--max-conns N] [--send-queue N] [--idle-ms N] [--grace-ms N]
 * Prints "listening on PORT" when ready. SIGTERM/SIGINT: graceful shutdown (GOAWAY, in-flight
 * calls finish, at most --grace-ms), then exit 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/loop.h"
#include "net/grpc_server.h"

enum kind { K_UNARY, K_SSTREAM, K_CSTREAM, K_BIDI, K_FAIL, K_DELAY, K_STATS };

struct tcall {
    enum kind kind;
    struct grpc_call *c;
    uint8_t *buf;            /* request bytes (unary, fail, delay) or the concatenation */
    size_t len, cap;
    size_t nmsg;
    uint64_t next, count;    /* server streaming */
    size_t size;
    uint8_t *out;
    struct timer t;
    bool finished;
};

static struct grpc_server *srv;
static unsigned long long done_count[GRPC_END_CLOSED + 1];   /* on_done reasons seen */
static uint32_t max_message = GRPC_DEFAULT_MAX_MESSAGE;

static int finish(struct tcall *t, int status, const char *msg)
{
    t->finished = true;
    return grpc_call_finish(t->c, status, msg, NULL, 0);
}

static int append(struct tcall *t, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    if (t->len + n > max_message)
        return -1;
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        while (cap < t->len + n)
            cap *= 2;
        uint8_t *b = realloc(t->buf, cap);
        if (!b)
            return -1;
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, p, n);
    t->len += n;
    return 0;
}

/* Sends the next server-streaming messages until done or the queue is full. */
static void pump(struct tcall *t)
{
    while (!t->finished && t->next < t->count) {
        int n = snprintf((char *)t->out, t->size + 1, "%llu:", (unsigned long long)t->next);
        size_t len = t->size;
        if ((size_t)n < t->size)
            memset(t->out + n, 'x', t->size - (size_t)n);
        int rc = grpc_call_send(t->c, t->out, len);
        if (rc == -ENOBUFS)
            return;   /* on_writable calls us again */
        if (rc == -EMSGSIZE) {
            finish(t, GRPC_STATUS_RESOURCE_EXHAUSTED, "response larger than max message");
            return;
        }
        if (rc < 0) {   /* -EPIPE: the call is over (cancelled, deadline) */
            t->finished = true;
            return;
        }
        t->next++;
    }
    if (!t->finished)
        finish(t, GRPC_STATUS_OK, NULL);
}

static void on_delay(struct loop *l, struct timer *tm)
{
    (void)l;
    struct tcall *t = tm->data;
    grpc_call_send(t->c, t->buf, t->len);
    finish(t, GRPC_STATUS_OK, NULL);
}

static void on_start(struct grpc_call *c, void *arg)
{
    struct tcall *t = calloc(1, sizeof *t);
    if (!t) {
        grpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
        return;
    }
    t->kind = (enum kind)(long)arg;
    t->c = c;
    timer_init(&t->t, on_delay, t);
    grpc_call_set_data(c, t);
}

static void on_message(struct grpc_call *c, const uint8_t *msg, size_t len)
{
    struct tcall *t = grpc_call_data(c);
    if (!t || t->finished)
        return;
    t->nmsg++;
    if (t->kind == K_BIDI) {
        int rc = grpc_call_send(c, msg, len);
        if (rc < 0)
            finish(t, GRPC_STATUS_RESOURCE_EXHAUSTED, "echo backlog full");
        return;
    }
    if (t->kind != K_CSTREAM && t->nmsg > 1) {
        finish(t, GRPC_STATUS_INTERNAL, "more than one request message");
        return;
    }
    if (append(t, msg, len) < 0)
        finish(t, GRPC_STATUS_RESOURCE_EXHAUSTED, "request too large");
}

static void reply_stats(struct tcall *t)
{
    struct grpc_server_stats st;
    grpc_server_get_stats(srv, &st);
    char b[768];
    int n = snprintf(b, sizeof b,
                     "connections=%llu refused=%llu calls=%llu unimplemented=%llu cancelled=%llu "
                     "deadline=%llu send_blocked=%llu live_connections=%u live_calls=%u "
                     "queued_bytes=%zu queued_bytes_max=%zu done_finished=%llu "
                     "done_cancelled=%llu done_deadline=%llu done_error=%llu done_closed=%llu",
                     (unsigned long long)st.connections, (unsigned long long)st.connections_refused,
                     (unsigned long long)st.calls, (unsigned long long)st.calls_unimplemented,
                     (unsigned long long)st.calls_cancelled, (unsigned long long)st.calls_deadline,
                     (unsigned long long)st.send_blocked, st.live_connections, st.live_calls,
                     st.queued_bytes, st.queued_bytes_max, done_count[GRPC_END_FINISHED],
                     done_count[GRPC_END_CANCELLED], done_count[GRPC_END_DEADLINE],
                     done_count[GRPC_END_ERROR], done_count[GRPC_END_CLOSED]);
    grpc_call_send(t->c, b, (size_t)n);
    finish(t, GRPC_STATUS_OK, NULL);
}

static void on_half_close(struct grpc_call *c)
{
    struct tcall *t = grpc_call_data(c);
    if (!t || t->finished)
        return;
    if (t->kind == K_BIDI || t->kind == K_CSTREAM) {
        if (t->kind == K_CSTREAM)
            grpc_call_send(c, t->buf ? t->buf : (const uint8_t *)"", t->len);
        finish(t, GRPC_STATUS_OK, NULL);
        return;
    }
    if (t->nmsg != 1) {
        finish(t, GRPC_STATUS_INTERNAL, "expected one request message");
        return;
    }
    char req[64];
    size_t rl = t->len < sizeof req - 1 ? t->len : sizeof req - 1;
    if (rl)
        memcpy(req, t->buf, rl);
    req[rl] = '\0';
    switch (t->kind) {
    case K_UNARY: {
        const struct grpc_md *md;
        size_t n = grpc_call_metadata(c, &md);
        struct grpc_md echo[GRPC_SERVER_MAX_MD];
        size_t ne = 0;
        for (size_t i = 0; i < n; i++)
            if (md[i].name_len > 7 && memcmp(md[i].name, "x-echo-", 7) == 0)
                echo[ne++] = md[i];
        if (ne)
            grpc_call_send_headers(c, echo, ne);
        if (grpc_call_send(c, t->buf, t->len) < 0)
            finish(t, GRPC_STATUS_RESOURCE_EXHAUSTED, "response too large");
        else
            finish(t, GRPC_STATUS_OK, NULL);
        break;
    }
    case K_SSTREAM: {
        unsigned long long count = 0, size = 0;
        /* sizes above the max message are allowed here: grpc_call_send refuses them */
        if (sscanf(req, "%llu,%llu", &count, &size) != 2 || size > 64ull * 1024 * 1024) {
            finish(t, GRPC_STATUS_INVALID_ARGUMENT, "want COUNT,SIZE");
            return;
        }
        t->count = count;
        t->size = (size_t)size;
        t->out = malloc(t->size + 24);
        if (!t->out) {
            finish(t, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        pump(t);
        break;
    }
    case K_FAIL: {
        int code = atoi(req);
        const char *sp = strchr(req, ' ');
        /* the message is the rest of the request as sent (may be UTF-8 beyond req's copy) */
        char *msg = NULL;
        if (sp) {
            size_t off = (size_t)(sp + 1 - req);
            msg = strndup((const char *)t->buf + off, t->len - off);
        }
        static const struct grpc_md tr = {"x-fail-trailer", 14, "yes", 3};
        t->finished = true;
        if (grpc_call_finish(c, code, msg, &tr, 1) < 0)
            grpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "bad status code", NULL, 0);
        free(msg);
        break;
    }
    case K_DELAY:
        timer_start(grpc_server_loop(srv), &t->t, (uint64_t)strtoull(req, NULL, 10));
        break;
    case K_STATS:
        reply_stats(t);
        break;
    default:
        break;
    }
}

static void on_writable(struct grpc_call *c)
{
    struct tcall *t = grpc_call_data(c);
    if (t && t->kind == K_SSTREAM)
        pump(t);
}

static void on_done(struct grpc_call *c, enum grpc_call_end why)
{
    if ((unsigned)why <= GRPC_END_CLOSED)
        done_count[why]++;
    struct tcall *t = grpc_call_data(c);
    if (!t)
        return;
    timer_stop(grpc_server_loop(srv), &t->t);
    free(t->buf);
    free(t->out);
    free(t);
}

static const struct grpc_handler handler = {
    .on_start = on_start,
    .on_message = on_message,
    .on_half_close = on_half_close,
    .on_writable = on_writable,
    .on_done = on_done,
};

static struct io sig_io;
static uint64_t grace_ms = 10000;

static void on_shutdown_done(struct grpc_server *s, void *arg)
{
    (void)s;
    loop_stop(arg);
}

static void on_signal(struct loop *l, struct io *io, uint32_t events)
{
    (void)events;
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof si) == sizeof si) {
        fprintf(stderr, "weft-grpc-testsrv: signal %u, shutting down\n", si.ssi_signo);
        grpc_server_shutdown(srv, grace_ms, on_shutdown_done, l);
    }
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1";
    unsigned port = 0;
    struct grpc_server_config cfg = {0};
    for (int i = 1; i + 1 < argc; i += 2) {
        unsigned long v = strtoul(argv[i + 1], NULL, 10);
        if (!strcmp(argv[i], "--addr"))
            addr = argv[i + 1];
        else if (!strcmp(argv[i], "--port"))
            port = (unsigned)v;
        else if (!strcmp(argv[i], "--max-message"))
            cfg.max_message = (uint32_t)v;
        else if (!strcmp(argv[i], "--max-streams"))
            cfg.max_streams = (uint32_t)v;
        else if (!strcmp(argv[i], "--max-conns"))
            cfg.max_connections = (uint32_t)v;
        else if (!strcmp(argv[i], "--send-queue"))
            cfg.send_queue_bytes = (uint32_t)v;
        else if (!strcmp(argv[i], "--idle-ms"))
            cfg.idle_timeout_ms = (uint32_t)v;
        else if (!strcmp(argv[i], "--grace-ms"))
            grace_ms = v;
        else {
            fprintf(stderr, "unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (cfg.max_message)
        max_message = cfg.max_message;
    struct loop *l = loop_new(NULL, NULL);
    srv = l ? grpc_server_new(l, &cfg) : NULL;
    if (!srv)
        return 1;
    static const struct { const char *path; enum kind k; } methods[] = {
        {"/weft.test.Echo/Unary", K_UNARY}, {"/weft.test.Echo/ServerStream", K_SSTREAM},
        {"/weft.test.Echo/ClientStream", K_CSTREAM}, {"/weft.test.Echo/Bidi", K_BIDI},
        {"/weft.test.Echo/Fail", K_FAIL}, {"/weft.test.Echo/Delay", K_DELAY},
        {"/weft.test.Echo/Stats", K_STATS},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        grpc_server_add_method(srv, methods[i].path, &handler, (void *)(long)methods[i].k);
    int p = grpc_server_listen(srv, addr, (uint16_t)port);
    if (p < 0) {
        fprintf(stderr, "weft-grpc-testsrv: listen %s:%u: %s\n", addr, port, strerror(-p));
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    io_start(l, &sig_io, sfd, EPOLLIN, on_signal, NULL);
    printf("listening on %d\n", p);
    fflush(stdout);
    loop_run(l);
    io_stop(l, &sig_io);
    close(sfd);
    grpc_server_free(srv);
    loop_free(l);
    return 0;
}
