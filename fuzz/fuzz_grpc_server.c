/* libFuzzer target for net/grpc_server: arbitrary client bytes on one connection of a real
 * server (socketpair, grpc_server_adopt, the Weft loop), through nghttp2, the request checks,
 * the per-call header arena, the deframer, the handlers and the send queues. After each input
 * the client side closes; the server must then have no connection and no call left (no leak,
 * no stuck state), and ASan/UBSan must stay quiet.
 * The first input byte: bit 0 sends the client preface and an empty SETTINGS frame first (so
 * most inputs reach frame parsing), bits 1-2 pick how much of the server's output is read. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/loop.h"
#include "net/grpc_server.h"

static struct loop *loop;
static struct grpc_server *srv;
static struct timer stop_timer;

static void check(int ok)
{
    if (!ok)
        abort();
}

struct fcall {
    int kind;
    int sent;
};

static void on_start(struct grpc_call *c, void *arg)
{
    struct fcall *f = calloc(1, sizeof *f);
    check(f != NULL);
    f->kind = (int)(long)arg;
    grpc_call_set_data(c, f);
    size_t n;
    const struct grpc_md *md;
    n = grpc_call_metadata(c, &md);
    for (size_t i = 0; i < n; i++)
        check(md[i].name[md[i].name_len] == 0 && md[i].value[md[i].value_len] == 0);
    (void)grpc_call_metadata_get(c, "x-a", NULL);
    (void)grpc_call_deadline_left_ms(c);
    if (f->kind == 2)
        grpc_call_finish(c, GRPC_STATUS_NOT_FOUND, "nope \xff", NULL, 0);
    if (f->kind == 3) {
        static const struct grpc_md h = {"x-h", 3, "v", 1};
        grpc_call_send_headers(c, &h, 1);
    }
}

static void pump(struct grpc_call *c, struct fcall *f)
{
    static uint8_t big[70000];
    while (f->sent < 8 && grpc_call_send(c, big, sizeof big) == 0)
        f->sent++;
    if (f->sent == 8)
        grpc_call_finish(c, GRPC_STATUS_OK, NULL, NULL, 0);
}

static void on_message(struct grpc_call *c, const uint8_t *msg, size_t len)
{
    struct fcall *f = grpc_call_data(c);
    if (f->kind == 0 || f->kind == 3)
        grpc_call_send(c, msg, len);
    else if (f->kind == 1)
        pump(c, f);
}

static void on_half_close(struct grpc_call *c)
{
    static const struct grpc_md t = {"x-t", 3, "w", 1};
    grpc_call_finish(c, GRPC_STATUS_OK, "done", &t, 1);
}

static void on_writable(struct grpc_call *c)
{
    struct fcall *f = grpc_call_data(c);
    if (f->kind == 1)
        pump(c, f);
}

static void on_done(struct grpc_call *c, enum grpc_call_end why)
{
    check(why <= GRPC_END_CLOSED);
    free(grpc_call_data(c));
}

static const struct grpc_handler handler = {on_start, on_message, on_half_close, on_writable, on_done};

static void on_stop(struct loop *l, struct timer *t)
{
    (void)t;
    loop_stop(l);
}

static void run_once(void)
{
    timer_start(loop, &stop_timer, 0);
    loop_run(loop);
}

static void drain(int fd, size_t max)
{
    uint8_t buf[65536];
    size_t got = 0;
    while (got < max) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
}

static void setup(void)
{
    loop = loop_new(NULL, NULL);
    check(loop != NULL);
    struct grpc_server_config cfg = {.max_message = 100000, .max_streams = 8,
                                     .send_queue_bytes = 100000, .max_metadata_bytes = 2048};
    srv = grpc_server_new(loop, &cfg);
    check(srv != NULL);
    check(grpc_server_add_method(srv, "/a.B/Echo", &handler, (void *)0L) == 0);
    check(grpc_server_add_method(srv, "/a.B/Stream", &handler, (void *)1L) == 0);
    check(grpc_server_add_method(srv, "/a.B/Fail", &handler, (void *)2L) == 0);
    check(grpc_server_add_method(srv, "/a.B/Headers", &handler, (void *)3L) == 0);
    timer_init(&stop_timer, on_stop, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 60000)
        return 0;
    if (!loop)
        setup();
    uint8_t mode = data[0];
    int sv[2];
    check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    check(grpc_server_adopt(srv, sv[0]) == 0);
    if (mode & 1) {
        static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
        check(send(sv[1], preface, sizeof preface - 1, 0) == (ssize_t)(sizeof preface - 1));
    }
    size_t off = 1;
    size_t read_max = ((mode >> 1) & 3) == 0 ? 0 : (size_t)1 << (6 + 4 * ((mode >> 1) & 3));
    for (int round = 0; round < 64 && off < size; round++) {
        ssize_t n = send(sv[1], data + off, size - off, 0);
        if (n > 0)
            off += (size_t)n;
        run_once();
        drain(sv[1], read_max);
    }
    for (int i = 0; i < 4; i++) {
        run_once();
        drain(sv[1], read_max);
    }
    close(sv[1]);
    struct grpc_server_stats st;
    for (int i = 0; i < 8; i++) {
        run_once();
        grpc_server_get_stats(srv, &st);
        if (st.live_connections == 0)
            break;
    }
    check(st.live_connections == 0 && st.live_calls == 0 && st.queued_bytes == 0);
    return 0;
}
