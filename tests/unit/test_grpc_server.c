/* Tests for net/grpc_server through its public API, in one process: a real server on a loop,
 * a socketpair handed over with grpc_server_adopt(), and an nghttp2 client session on the other
 * end. Covers the API's error returns (-EALREADY, -EINVAL, -EPIPE, -EMSGSIZE, -ENOBUFS), the
 * on_done reasons, that callbacks never run inside a grpc_call_* call, and grpc_server_free()
 * and grpc_server_shutdown() with live calls. */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/loop.h"
#include "net/grpc_server.h"
#include "test.h"

/* --- the client side --- */

struct cstream {
    int32_t id;
    char status[8], grpc_status[8], grpc_message[128];
    uint8_t data[1 << 16];
    size_t len;
    uint32_t close_code;
    bool closed;
    int headers_frames;
};

struct client {
    int fd;
    nghttp2_session *h2;
    struct cstream st[8];
    int n;
    int goaways;
    bool stop_reading;
};

static struct cstream *cs_find(struct client *cl, int32_t id)
{
    for (int i = 0; i < cl->n; i++)
        if (cl->st[i].id == id)
            return &cl->st[i];
    return NULL;
}

static int c_on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                       const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)h2;
    (void)flags;
    struct cstream *s = cs_find(ud, f->hd.stream_id);
    if (!s)
        return 0;
    char *dst = NULL;
    size_t cap = 0;
    if (nl == 7 && !memcmp(name, ":status", 7))
        dst = s->status, cap = sizeof s->status;
    else if (nl == 11 && !memcmp(name, "grpc-status", 11))
        dst = s->grpc_status, cap = sizeof s->grpc_status;
    else if (nl == 12 && !memcmp(name, "grpc-message", 12))
        dst = s->grpc_message, cap = sizeof s->grpc_message;
    if (dst) {
        size_t n = vl < cap - 1 ? vl : cap - 1;
        memcpy(dst, value, n);
        dst[n] = 0;
    }
    return 0;
}

static int c_on_frame(nghttp2_session *h2, const nghttp2_frame *f, void *ud)
{
    (void)h2;
    if (f->hd.type == NGHTTP2_GOAWAY)
        ((struct client *)ud)->goaways++;
    struct cstream *s = cs_find(ud, f->hd.stream_id);
    if (s && f->hd.type == NGHTTP2_HEADERS)
        s->headers_frames++;
    return 0;
}

static int c_on_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *d, size_t n,
                     void *ud)
{
    (void)h2;
    (void)flags;
    struct cstream *s = cs_find(ud, id);
    if (s && s->len + n <= sizeof s->data) {
        memcpy(s->data + s->len, d, n);
        s->len += n;
    }
    return 0;
}

static int c_on_close(nghttp2_session *h2, int32_t id, uint32_t code, void *ud)
{
    (void)h2;
    struct cstream *s = cs_find(ud, id);
    if (s) {
        s->closed = true;
        s->close_code = code;
    }
    return 0;
}

static void client_init(struct client *cl, int fd)
{
    memset(cl, 0, sizeof *cl);
    cl->fd = fd;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, c_on_frame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_on_close);
    nghttp2_session_client_new(&cl->h2, cb, cl);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(cl->h2, NGHTTP2_FLAG_NONE, NULL, 0);
}

static void client_free(struct client *cl)
{
    nghttp2_session_del(cl->h2);
    if (cl->fd >= 0)
        close(cl->fd);
}

static void client_io(struct client *cl)
{
    const uint8_t *p;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(cl->h2, &p)) > 0)
        CHECK(send(cl->fd, p, (size_t)n, 0) == n);
    if (cl->stop_reading)
        return;
    uint8_t buf[16384];
    while ((n = recv(cl->fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
        nghttp2_session_mem_recv(cl->h2, buf, (size_t)n);
}

struct body {
    const uint8_t *p;
    size_t len, off;
    bool end;
};

static ssize_t body_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)h2;
    (void)id;
    (void)ud;
    struct body *b = src->ptr;
    size_t n = b->len - b->off < length ? b->len - b->off : length;
    memcpy(buf, b->p + b->off, n);
    b->off += n;
    if (b->off == b->len) {
        if (!b->end)
            return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

/* Starts a gRPC call; body (framed here, may be NULL) is sent, END_STREAM if end. */
static struct cstream *call(struct client *cl, const char *path, const char *timeout,
                            const char *msg, bool end, struct body *b)
{
    nghttp2_nv nv[7];
    int n = 0;
#define NV(a, v) nv[n++] = (nghttp2_nv){(uint8_t *)a, (uint8_t *)v, strlen(a), strlen(v), 0}
    NV(":method", "POST");
    NV(":scheme", "http");
    NV(":path", path);
    NV(":authority", "t");
    NV("content-type", "application/grpc");
    NV("te", "trailers");
    if (timeout)
        NV("grpc-timeout", timeout);
#undef NV
    static uint8_t framed[8][256];
    static int next;
    uint8_t *fb = framed[next++ % 8];
    size_t ml = msg ? strlen(msg) : 0;
    if (msg) {
        grpc_prefix_write(fb, false, (uint32_t)ml);
        memcpy(fb + 5, msg, ml);
    }
    *b = (struct body){fb, msg ? ml + 5 : 0, 0, end};
    nghttp2_data_provider prd = {.source.ptr = b, .read_callback = body_read};
    int32_t id = nghttp2_submit_request(cl->h2, NULL, nv, (size_t)n, &prd, NULL);
    CHECK(id > 0);
    struct cstream *s = &cl->st[cl->n++];
    memset(s, 0, sizeof *s);
    s->id = id;
    return s;
}

/* --- the server side --- */

static struct loop *L;
static struct grpc_server *S;
static struct timer stop_t;
static int in_api;               /* > 0 while a test calls into a grpc_call_* function */
static int reentered;            /* a callback ran while in_api */
static int done_reasons[GRPC_END_CLOSED + 1];
static struct grpc_call *last_call;
static int api_rc[16];

/* Calls a grpc_call_* function with the re-entrancy detector armed; yields its result. */
static int api_enter(void) { in_api++; return 0; }
static int api_leave(int rc) { in_api--; return rc; }
#define API(expr) (api_enter(), api_leave(expr))

static void note(void)
{
    if (in_api)
        reentered++;
}

static void h_start(struct grpc_call *c, void *arg)
{
    note();
    last_call = c;
    grpc_call_set_data(c, arg);
    long kind = (long)arg;
    if (kind == 1) {   /* API misuse checks, then a normal answer */
        static const struct grpc_md bad = {"Bad-Name", 8, "v", 1};
        static const struct grpc_md badv = {"x-ok", 4, "a\nb", 3};
        static const struct grpc_md good = {"x-h", 3, "1", 1};
        api_rc[1] = API(grpc_call_send_headers(c, &bad, 1));
        api_rc[2] = API(grpc_call_send_headers(c, &badv, 1));
        api_rc[3] = API(grpc_call_send_headers(c, &good, 1));
        api_rc[4] = API(grpc_call_send_headers(c, &good, 1));
        api_rc[5] = API(grpc_call_finish(c, 17, NULL, NULL, 0));
        static uint8_t big[2000];
        api_rc[6] = API(grpc_call_send(c, big, sizeof big));   /* > max_message 1000 */
        api_rc[7] = API(grpc_call_send(c, "a", 1));
        api_rc[8] = API(grpc_call_send(c, big, 900));           /* queue holds 6 < 1000: taken */
        api_rc[9] = API(grpc_call_send(c, big, 900));           /* queue holds 911: taken (< 1000) */
        api_rc[10] = API(grpc_call_send(c, "b", 1));            /* 1816 >= 1000: -ENOBUFS */
        api_rc[11] = API(grpc_call_finish(c, GRPC_STATUS_OK, "fine", NULL, 0));
        api_rc[12] = API(grpc_call_send(c, "c", 1));            /* after finish: -EPIPE */
        api_rc[13] = API(grpc_call_finish(c, GRPC_STATUS_OK, NULL, NULL, 0));
    }
}

static void h_message(struct grpc_call *c, const uint8_t *m, size_t n)
{
    note();
    if ((long)grpc_call_data(c) == 0)
        (void)API(grpc_call_send(c, m, n));
}

static void h_half_close(struct grpc_call *c)
{
    note();
    if ((long)grpc_call_data(c) == 0)
        (void)API(grpc_call_finish(c, GRPC_STATUS_OK, NULL, NULL, 0));
}

static void h_done(struct grpc_call *c, enum grpc_call_end why)
{
    (void)c;
    note();
    done_reasons[why]++;
}

static const struct grpc_handler H = {h_start, h_message, h_half_close, NULL, h_done};

static void on_stop(struct loop *l, struct timer *t)
{
    (void)t;
    loop_stop(l);
}

/* Runs the loop and the client for a few rounds. */
static void spin(struct client *cl, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        client_io(cl);
        timer_start(L, &stop_t, 0);
        loop_run(L);
        client_io(cl);
    }
}

static void setup(struct client *cl)
{
    L = loop_new(NULL, NULL);
    struct grpc_server_config cfg = {.max_message = 1000, .send_queue_bytes = 1000};
    S = grpc_server_new(L, &cfg);
    CHECK(S != NULL);
    CHECK_EQ_INT(grpc_server_add_method(S, "/t.S/Echo", &H, (void *)0L), 0);
    CHECK_EQ_INT(grpc_server_add_method(S, "/t.S/Api", &H, (void *)1L), 0);
    CHECK_EQ_INT(grpc_server_add_method(S, "/t.S/Hold", &H, (void *)2L), 0);
    CHECK_EQ_INT(grpc_server_add_method(S, "/t.S/Echo", &H, NULL), -EEXIST);
    CHECK_EQ_INT(grpc_server_add_method(S, "no-slash", &H, NULL), -EINVAL);
    timer_init(&stop_t, on_stop, NULL);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    CHECK_EQ_INT(grpc_server_adopt(S, sv[0]), 0);
    client_init(cl, sv[1]);
    memset(done_reasons, 0, sizeof done_reasons);
    reentered = 0;
}

static void teardown(struct client *cl)
{
    client_free(cl);
    grpc_server_free(S);
    loop_free(L);
}

static void test_echo_and_errors(void)
{
    struct client cl;
    setup(&cl);
    struct body b1, b2, b3;
    struct cstream *echo = call(&cl, "/t.S/Echo", NULL, "hello", true, &b1);
    struct cstream *unk = call(&cl, "/t.S/Nope", NULL, "x", true, &b2);
    struct cstream *big = call(&cl, "/t.S/Echo", NULL, NULL, false, &b3);
    static uint8_t bigmsg[1100];
    grpc_prefix_write(bigmsg, false, 1095);
    b3 = (struct body){bigmsg, sizeof bigmsg, 0, true};
    nghttp2_session_resume_data(cl.h2, big->id);
    spin(&cl, 10);
    CHECK(echo->closed && echo->len == 10 && memcmp(echo->data + 5, "hello", 5) == 0);
    CHECK_EQ_STR(echo->grpc_status, "0");
    CHECK_EQ_INT(echo->headers_frames, 2);
    CHECK(unk->closed);
    CHECK_EQ_STR(unk->grpc_status, "12");
    CHECK_EQ_INT(unk->headers_frames, 1);   /* trailers-only */
    CHECK(big->closed);
    CHECK_EQ_STR(big->grpc_status, "8");
    CHECK_EQ_INT(done_reasons[GRPC_END_FINISHED], 1);
    CHECK_EQ_INT(done_reasons[GRPC_END_ERROR], 1);
    CHECK_EQ_INT(reentered, 0);
    teardown(&cl);
}

static void test_api_returns(void)
{
    struct client cl;
    setup(&cl);
    struct body b;
    struct cstream *s = call(&cl, "/t.S/Api", NULL, NULL, true, &b);
    spin(&cl, 10);
    CHECK_EQ_INT(api_rc[1], -EINVAL);
    CHECK_EQ_INT(api_rc[2], -EINVAL);
    CHECK_EQ_INT(api_rc[3], 0);
    CHECK_EQ_INT(api_rc[4], -EALREADY);
    CHECK_EQ_INT(api_rc[5], -EINVAL);
    CHECK_EQ_INT(api_rc[6], -EMSGSIZE);
    CHECK_EQ_INT(api_rc[7], 0);
    CHECK_EQ_INT(api_rc[8], 0);
    CHECK_EQ_INT(api_rc[9], 0);
    CHECK_EQ_INT(api_rc[10], -ENOBUFS);
    CHECK_EQ_INT(api_rc[11], 0);
    CHECK_EQ_INT(api_rc[12], -EPIPE);
    CHECK_EQ_INT(api_rc[13], -EPIPE);
    CHECK(s->closed);
    CHECK_EQ_STR(s->grpc_status, "0");
    CHECK_EQ_STR(s->grpc_message, "fine");
    CHECK_EQ_INT(s->len, 6 + 905 + 905);   /* the three messages that were taken */
    CHECK_EQ_INT(done_reasons[GRPC_END_FINISHED], 1);
    CHECK_EQ_INT(reentered, 0);
    teardown(&cl);
}

static void test_cancel_deadline_free(void)
{
    struct client cl;
    setup(&cl);
    struct body b1, b2, b3;
    struct cstream *cancel = call(&cl, "/t.S/Hold", NULL, "x", false, &b1);
    struct cstream *dl = call(&cl, "/t.S/Hold", "30m", "x", false, &b2);
    spin(&cl, 3);
    nghttp2_submit_rst_stream(cl.h2, NGHTTP2_FLAG_NONE, cancel->id, NGHTTP2_CANCEL);
    spin(&cl, 3);
    CHECK_EQ_INT(done_reasons[GRPC_END_CANCELLED], 1);
    usleep(40000);
    loop_update_time(L);
    spin(&cl, 5);
    CHECK_EQ_INT(done_reasons[GRPC_END_DEADLINE], 1);
    CHECK(dl->closed);
    CHECK_EQ_STR(dl->grpc_status, "4");
    /* a call still running when the server is freed ends CLOSED, synchronously */
    call(&cl, "/t.S/Hold", NULL, "x", false, &b3);
    spin(&cl, 3);
    struct grpc_server_stats st;
    grpc_server_get_stats(S, &st);
    CHECK_EQ_INT(st.live_calls, 1);
    CHECK_EQ_INT(st.calls_cancelled, 1);
    CHECK_EQ_INT(st.calls_deadline, 1);
    CHECK_EQ_INT(reentered, 0);
    client_free(&cl);
    grpc_server_free(S);
    CHECK_EQ_INT(done_reasons[GRPC_END_CLOSED], 1);
    loop_free(L);
}

static bool shut_done;
static void on_shut(struct grpc_server *s, void *arg)
{
    (void)s;
    (void)arg;
    shut_done = true;
}

static void test_shutdown_grace(void)
{
    struct client cl;
    setup(&cl);
    struct body b1;
    struct cstream *held = call(&cl, "/t.S/Hold", NULL, "x", false, &b1);
    spin(&cl, 3);
    shut_done = false;
    grpc_server_shutdown(S, 20, on_shut, NULL);
    grpc_server_shutdown(S, 20, on_shut, NULL);   /* a second call does nothing */
    spin(&cl, 3);
    CHECK_EQ_INT(cl.goaways, 1);
    CHECK(!held->closed);   /* in-flight calls go on after GOAWAY */
    CHECK(!shut_done);
    usleep(30000);
    loop_update_time(L);
    spin(&cl, 6);
    CHECK(held->closed);
    CHECK_EQ_STR(held->grpc_status, "14");   /* grace over: UNAVAILABLE */
    CHECK(shut_done);
    CHECK_EQ_INT(done_reasons[GRPC_END_CLOSED] + done_reasons[GRPC_END_ERROR], 1);
    CHECK_EQ_INT(reentered, 0);
    teardown(&cl);
}

TEST_MAIN(TEST(test_echo_and_errors), TEST(test_api_returns), TEST(test_cancel_deadline_free),
          TEST(test_shutdown_grace))
