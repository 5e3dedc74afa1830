/* gRPC client over h2c on nghttp2 (see grpc_client.h for the model). */
#include "net/grpc_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/sock.h"

#define GC_DEFAULT_SEND_QUEUE (4u * 1024u * 1024u)
#define GC_DEFAULT_CONNECT_MS 5000u
#define GC_DEFAULT_WINDOW (1u * 1024u * 1024u)
#define GC_STATUS_MSG_MAX 512

struct grpc_ccall {
    struct grpc_client *c;
    struct grpc_ccall *prev, *next;   /* c->calls */
    const struct grpc_ccall_handler *h;
    void *arg;
    int32_t stream_id;
    uint8_t *q;                       /* framed messages waiting for nghttp2 to read them */
    size_t q_len, q_off, q_cap;
    bool send_closed, eof_sent, deferred_data;
    bool got_headers, cancelled, done;
    int http_status;
    int grpc_status;                  /* -1 until received */
    char grpc_message[GC_STATUS_MSG_MAX];
    struct grpc_deframer df;
};

struct grpc_client {
    struct loop *loop;
    struct io io;
    struct timer connect_timer, keepalive_timer;
    struct grpc_client_config cfg;
    nghttp2_session *sess;
    char *authority;
    struct grpc_ccall *calls;
    uint8_t *out;                     /* bytes nghttp2 produced that the socket has not taken */
    size_t out_len, out_off;
    bool connecting, connected, dead, in_io, ping_outstanding;
    int connect_errno;                /* connect() failed at once: reported from a 0 ms timer */
    char fail_reason[128];
};

static void call_finish(struct grpc_ccall *k, int status, const char *msg);

static void client_fail(struct grpc_client *c, const char *why)
{
    if (c->dead)
        return;
    c->dead = true;
    snprintf(c->fail_reason, sizeof c->fail_reason, "%s", why);
    if (c->io.fd >= 0) {
        io_stop(c->loop, &c->io);
        close(c->io.fd);
        c->io.fd = -1;
    }
    timer_stop(c->loop, &c->connect_timer);
    timer_stop(c->loop, &c->keepalive_timer);
    /* The session stays until grpc_client_free: we may be inside one of its callbacks. */
    while (c->calls)
        call_finish(c->calls, GRPC_STATUS_UNAVAILABLE, c->fail_reason);
}

static void call_unlink(struct grpc_ccall *k)
{
    struct grpc_client *c = k->c;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
}

/* Ends the call: unlinks it, runs on_done once, frees it. */
static void call_finish(struct grpc_ccall *k, int status, const char *msg)
{
    if (k->done)
        return;
    k->done = true;
    call_unlink(k);
    if (k->stream_id > 0 && k->c->sess)
        nghttp2_session_set_stream_user_data(k->c->sess, k->stream_id, NULL);
    k->h->on_done(k, k->arg, status, msg ? msg : "");
    grpc_deframer_free(&k->df);
    free(k->q);
    free(k);
}

/* --- output --- */

/* Writes what nghttp2 has to send. Returns 0 or -1 (the client failed). */
static int flush_out(struct grpc_client *c)
{
    if (c->dead || !c->connected || c->io.fd < 0)
        return 0;
    for (;;) {
        if (c->out_off == c->out_len) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->sess, &data);
            if (n < 0) {
                client_fail(c, nghttp2_strerror((int)n));
                return -1;
            }
            if (n == 0)
                break;
            /* Copy: the pointer from mem_send is valid only until the next nghttp2 call. */
            uint8_t *nb = realloc(c->out, (size_t)n);
            if (!nb) {
                client_fail(c, "out of memory");
                return -1;
            }
            c->out = nb;
            memcpy(c->out, data, (size_t)n);
            c->out_len = (size_t)n;
            c->out_off = 0;
        }
        ssize_t w = sock_send(c->io.fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                io_want_write(c->loop, &c->io, true);
                return 0;
            }
            client_fail(c, strerror(errno));
            return -1;
        }
        c->out_off += (size_t)w;
    }
    io_want_write(c->loop, &c->io, false);
    if (!nghttp2_session_want_read(c->sess) && !nghttp2_session_want_write(c->sess)) {
        client_fail(c, "connection closed (GOAWAY)");
        return -1;
    }
    return 0;
}

/* --- nghttp2 callbacks --- */

static ssize_t data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)s, (void)id, (void)ud;
    struct grpc_ccall *k = src->ptr;
    size_t have = k->q_len - k->q_off;
    if (have == 0) {
        if (k->send_closed) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            k->eof_sent = true;
            return 0;
        }
        k->deferred_data = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = have < len ? have : len;
    memcpy(buf, k->q + k->q_off, n);
    k->q_off += n;
    if (k->q_off == k->q_len)
        k->q_off = k->q_len = 0;
    if (k->q_len == 0 && k->send_closed) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        k->eof_sent = true;
    }
    return (ssize_t)n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags, (void)ud;
    struct grpc_ccall *k = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!k || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (nlen == 7 && !memcmp(name, ":status", 7)) {
        int st = 0;
        for (size_t i = 0; i < vlen && i < 3; i++)
            st = st * 10 + (value[i] - '0');
        k->http_status = st;
    } else if (nlen == 11 && !memcmp(name, "grpc-status", 11)) {
        k->grpc_status = grpc_status_parse((const char *)value, vlen);
        if (k->grpc_status < 0)
            k->grpc_status = GRPC_STATUS_UNKNOWN;
    } else if (nlen == 12 && !memcmp(name, "grpc-message", 12)) {
        size_t n = vlen < sizeof k->grpc_message - 1 ? vlen : sizeof k->grpc_message - 1;
        memcpy(k->grpc_message, value, n);
        k->grpc_message[grpc_message_decode(k->grpc_message, n, k->grpc_message)] = '\0';
    } else if (nlen == 12 && !memcmp(name, "content-type", 12)) {
        if (!grpc_content_type_ok((const char *)value, vlen))
            k->http_status = k->http_status ? -k->http_status : -1; /* not gRPC: remembered as negative */
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct grpc_client *c = ud;
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
        c->connected = true;
        return 0;
    }
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)) {
        c->ping_outstanding = false;
        return 0;
    }
    struct grpc_ccall *k = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (k && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        !k->eof_sent) {
        /* The server is done: the call is over even though we could still send. Close our
         * side too (RST_STREAM NO_ERROR, as gRPC clients do), which ends the stream. */
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (!k || k->got_headers || f->headers.cat != NGHTTP2_HCAT_RESPONSE)
        return 0;
    k->got_headers = true;
    if (k->http_status == 200 && k->grpc_status < 0 && k->h->on_headers)
        k->h->on_headers(k, k->arg);
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)flags, (void)ud;
    struct grpc_ccall *k = nghttp2_session_get_stream_user_data(s, id);
    if (!k || k->cancelled)
        return 0;
    if (k->http_status != 200) {
        return 0; /* not a gRPC response: its body is ignored, the status comes from HTTP */
    }
    while (len > 0 && !k->done) {
        size_t used = 0;
        struct grpc_msg m;
        int r = grpc_deframer_feed(&k->df, data, len, &used, &m);
        if (r == GRPC_DF_ERROR) {
            k->cancelled = true;
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
            k->grpc_status = (int)k->df.error_status;
            snprintf(k->grpc_message, sizeof k->grpc_message, "response: %s", k->df.error);
            return 0;
        }
        data += used;
        len -= used;
        if (r == GRPC_DF_MESSAGE && k->h->on_message)
            k->h->on_message(k, k->arg, m.data, m.len);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)ud;
    struct grpc_ccall *k = nghttp2_session_get_stream_user_data(s, id);
    if (!k)
        return 0;
    int st = k->grpc_status;
    const char *msg = k->grpc_message;
    if (k->cancelled && st < 0) {
        st = GRPC_STATUS_CANCELLED;
        msg = "cancelled";
    } else if (k->http_status != 200 && k->http_status != 0 && st < 0) {
        st = k->http_status < 0 ? GRPC_STATUS_UNKNOWN : (int)grpc_status_from_http(k->http_status);
        msg = "not a gRPC response";
    } else if (st < 0) {
        st = code == NGHTTP2_REFUSED_STREAM ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_INTERNAL;
        msg = code == NGHTTP2_NO_ERROR ? "stream ended without grpc-status" : nghttp2_http2_strerror(code);
    } else if (!grpc_deframer_idle(&k->df) && st == GRPC_STATUS_OK) {
        st = GRPC_STATUS_INTERNAL;
        msg = "stream ended inside a message";
    }
    k->stream_id = -1;
    call_finish(k, st, msg);
    return 0;
}

/* --- I/O --- */

static void on_io(struct loop *l, struct io *io, uint32_t events)
{
    (void)l;
    struct grpc_client *c = io->data;
    if (c->dead)
        return;
    if (c->connecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            char why[128];
            snprintf(why, sizeof why, "connect: %s", strerror(err));
            client_fail(c, why);
            return;
        }
        c->connecting = false;
        timer_stop(c->loop, &c->connect_timer);
        c->connected = true; /* TCP is up: our preface and SETTINGS may go out */
        if (c->cfg.keepalive_ms)
            timer_start(c->loop, &c->keepalive_timer, c->cfg.keepalive_ms);
    }
    if (events & EPOLLIN) {
        uint8_t buf[16384];
        for (;;) {
            ssize_t n = sock_recv(io->fd, buf, sizeof buf);
            if (n == 0) {
                client_fail(c, "connection closed by the server");
                return;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                client_fail(c, strerror(errno));
                return;
            }
            ssize_t r = nghttp2_session_mem_recv(c->sess, buf, (size_t)n);
            if (c->dead)
                return;
            if (r < 0) {
                client_fail(c, nghttp2_strerror((int)r));
                return;
            }
            if (flush_out(c) < 0)
                return;
            if ((size_t)n < sizeof buf)
                break; /* a short read: the socket is empty (edge-triggered) */
        }
    }
    if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN)) {
        client_fail(c, "connection error");
        return;
    }
    flush_out(c);
}

static void on_connect_timeout(struct loop *l, struct timer *t)
{
    (void)l;
    struct grpc_client *c = t->data;
    char why[128];
    if (c->connect_errno)
        snprintf(why, sizeof why, "connect: %s", strerror(c->connect_errno));
    client_fail(c, c->connect_errno ? why : "connect timeout");
}

static void on_keepalive(struct loop *l, struct timer *t)
{
    struct grpc_client *c = t->data;
    if (c->ping_outstanding) {
        client_fail(c, "keepalive PING not answered");
        return;
    }
    c->ping_outstanding = true;
    nghttp2_submit_ping(c->sess, NGHTTP2_FLAG_NONE, NULL);
    timer_start(l, t, c->cfg.keepalive_ms);
    flush_out(c);
}

/* --- API --- */

struct grpc_client *grpc_client_new(struct loop *l, const struct sockaddr *addr, socklen_t addrlen,
                                    const char *authority, const struct grpc_client_config *cfg)
{
    struct grpc_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = l;
    c->io.fd = -1;
    if (cfg)
        c->cfg = *cfg;
    if (!c->cfg.max_message)
        c->cfg.max_message = GRPC_DEFAULT_MAX_MESSAGE;
    if (!c->cfg.send_queue_bytes)
        c->cfg.send_queue_bytes = GC_DEFAULT_SEND_QUEUE;
    if (!c->cfg.connect_timeout_ms)
        c->cfg.connect_timeout_ms = GC_DEFAULT_CONNECT_MS;
    if (!c->cfg.window_bytes)
        c->cfg.window_bytes = GC_DEFAULT_WINDOW;
    timer_init(&c->connect_timer, on_connect_timeout, c);
    timer_init(&c->keepalive_timer, on_keepalive, c);
    c->authority = strdup(authority ? authority : "localhost");
    nghttp2_session_callbacks *cbs = NULL;
    if (!c->authority || nghttp2_session_callbacks_new(&cbs) != 0)
        goto fail;
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    int r = nghttp2_session_client_new(&c->sess, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (r != 0)
        goto fail;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->cfg.window_bytes},
    };
    nghttp2_submit_settings(c->sess, NGHTTP2_FLAG_NONE, iv, 2);
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->connecting = true;
    if (connect(fd, addr, addrlen) < 0 && errno != EINPROGRESS) {
        /* Report it from the loop, as every other failure. */
        c->connect_errno = errno;
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        c->connecting = false;
        timer_start(l, &c->connect_timer, 0);
        return c;
    }
    if (io_start(l, &c->io, fd, EPOLLIN | EPOLLOUT, on_io, c) < 0) {
        close(fd);
        goto fail;
    }
    timer_start(l, &c->connect_timer, c->cfg.connect_timeout_ms);
    return c;
fail:
    if (c->sess)
        nghttp2_session_del(c->sess);
    free(c->authority);
    free(c);
    return NULL;
}

void grpc_client_free(struct grpc_client *c)
{
    if (!c)
        return;
    while (c->calls) {
        struct grpc_ccall *k = c->calls;
        k->cancelled = true;
        call_finish(k, GRPC_STATUS_CANCELLED, "client closed");
    }
    if (c->io.fd >= 0) {
        io_stop(c->loop, &c->io);
        close(c->io.fd);
    }
    timer_stop(c->loop, &c->connect_timer);
    timer_stop(c->loop, &c->keepalive_timer);
    nghttp2_session_del(c->sess);
    free(c->out);
    free(c->authority);
    free(c);
}

bool grpc_client_alive(const struct grpc_client *c) { return c && !c->dead; }
bool grpc_client_connected(const struct grpc_client *c) { return c && !c->dead && c->connected && !c->connecting; }

/* Asks the loop to flush soon: sends happen outside the caller's stack. */
static void kick(struct grpc_client *c)
{
    if (c->connected && !c->connecting && c->io.fd >= 0)
        io_want_write(c->loop, &c->io, true); /* EPOLLOUT fires at once on a writable socket */
}

struct grpc_ccall *grpc_client_call(struct grpc_client *c, const char *path, const struct grpc_ccall_handler *h,
                                    void *arg)
{
    if (!c || c->dead || !h || !h->on_done)
        return NULL;
    struct grpc_ccall *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->c = c;
    k->h = h;
    k->arg = arg;
    k->grpc_status = -1;
    grpc_deframer_init(&k->df, c->cfg.max_message, false);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv hdrs[] = {
        NV(":method", "POST"), NV(":scheme", "http"), NV(":path", path), NV(":authority", c->authority),
        NV("content-type", "application/grpc"), NV("te", "trailers"),
        NV("user-agent", "weft-proxy grpc-c"),
    };
#undef NV
    nghttp2_data_provider dp = {.source.ptr = k, .read_callback = data_read};
    int32_t id = nghttp2_submit_request(c->sess, NULL, hdrs, sizeof hdrs / sizeof hdrs[0], &dp, k);
    if (id < 0) {
        grpc_deframer_free(&k->df);
        free(k);
        return NULL;
    }
    k->stream_id = id;
    k->next = c->calls;
    if (c->calls)
        c->calls->prev = k;
    c->calls = k;
    kick(c);
    return k;
}

int grpc_ccall_send(struct grpc_ccall *k, const uint8_t *msg, size_t len)
{
    if (!k || k->done || k->send_closed || k->cancelled || k->c->dead)
        return -EPIPE;
    size_t have = k->q_len - k->q_off;
    if (len > UINT32_MAX || have + len + GRPC_PREFIX_LEN > k->c->cfg.send_queue_bytes)
        return -ENOBUFS;
    if (k->q_off) {
        memmove(k->q, k->q + k->q_off, have);
        k->q_len = have;
        k->q_off = 0;
    }
    size_t need = k->q_len + GRPC_PREFIX_LEN + len;
    if (need > k->q_cap) {
        size_t cap = k->q_cap ? k->q_cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *nq = realloc(k->q, cap);
        if (!nq)
            return -ENOMEM;
        k->q = nq;
        k->q_cap = cap;
    }
    grpc_prefix_write(k->q + k->q_len, false, (uint32_t)len);
    if (len)
        memcpy(k->q + k->q_len + GRPC_PREFIX_LEN, msg, len);
    k->q_len += GRPC_PREFIX_LEN + len;
    if (k->deferred_data) {
        k->deferred_data = false;
        nghttp2_session_resume_data(k->c->sess, k->stream_id);
    }
    kick(k->c);
    return 0;
}

void grpc_ccall_close_send(struct grpc_ccall *k)
{
    if (!k || k->done || k->send_closed)
        return;
    k->send_closed = true;
    if (k->deferred_data) {
        k->deferred_data = false;
        nghttp2_session_resume_data(k->c->sess, k->stream_id);
    }
    kick(k->c);
}

void grpc_ccall_cancel(struct grpc_ccall *k)
{
    if (!k || k->done || k->cancelled)
        return;
    k->cancelled = true;
    nghttp2_submit_rst_stream(k->c->sess, NGHTTP2_FLAG_NONE, k->stream_id, NGHTTP2_CANCEL);
    kick(k->c);
}

size_t grpc_ccall_queued(const struct grpc_ccall *k) { return k ? k->q_len - k->q_off : 0; }
