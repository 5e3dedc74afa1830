/* gRPC server over HTTP/2 cleartext on libnghttp2, driven by one Weft loop. See grpc_server.h
 * for the model. Internals in short:
 *   - one `gconn` per TCP connection, owning an nghttp2 server session; bytes are read with
 *     recv() into a stack buffer and handed to nghttp2_session_mem_recv(); output is pulled
 *     with nghttp2_session_mem_send() into a small per-connection buffer and written with
 *     send(). When the socket blocks, the rest stays in that buffer (and in nghttp2's single
 *     pending frame) and we ask for EPOLLOUT; nothing more is pulled meanwhile.
 *   - one `grpc_call` per stream, created at the first HEADERS frame; request headers are
 *     copied into an arena inline in the call (max_metadata_bytes), the deframer holds at most
 *     one partial request message, and a queue of response messages is bounded by
 *     send_queue_bytes (plus one message when it was empty).
 *   - public functions never run nghttp2_session_mem_send (which calls back into handlers):
 *     they submit frames and arm a 0 ms flush timer, so callbacks never nest inside calls. */
#include "net/grpc_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sock.h"

#define GS_MAX_LISTENERS 4
#define GS_OUT_BUF (32 * 1024)
#define GS_READ_BUF (16 * 1024)
#define GS_READS_PER_EVENT 16     /* then yield to other connections and come back by timer */
#define GS_FLUSH_ROUNDS 8         /* on_writable → more output rounds within one flush */
#define GS_CONN_WINDOW (16u * 1024 * 1024)
#define GS_MAX_DEADLINE_MS (1ull << 40)

struct gs_method {
    char *path;
    const struct grpc_handler *h;
    void *arg;
};

struct gs_listener {
    struct io io;
    struct grpc_server *s;
};

struct grpc_server {
    struct loop *loop;
    struct grpc_server_config cfg;
    struct gs_method *methods;
    size_t nmethods;
    struct gs_listener lst[GS_MAX_LISTENERS];
    size_t nlst;
    struct gconn *conns;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    struct grpc_server_stats st;
    bool shutting_down, done_called;
    struct timer grace_timer, done_timer;
    void (*done)(struct grpc_server *s, void *arg);
    void *done_arg;
};

struct gconn {
    struct gconn *prev, *next;
    struct grpc_server *s;
    struct io io;
    nghttp2_session *h2;
    struct grpc_call *calls;
    struct timer flush_timer, read_timer, idle_timer, stall_timer;
    struct deferred dfr;
    bool closing, write_blocked, notify_pending;
    const uint8_t *pend;          /* rest of the last nghttp2_session_mem_send() chunk */
    size_t pend_len;
    size_t out_off, out_len;
    uint8_t out[GS_OUT_BUF];
};

/* One queued response message: prefix and body. */
struct gs_qmsg {
    struct gs_qmsg *next;
    size_t len, off;
    uint8_t data[];
};

/* A header block to submit later: nv array and its strings in one allocation. */
struct gs_nvblock {
    size_t n;
    nghttp2_nv nv[];
};

struct grpc_call {
    struct grpc_call *prev, *next;
    struct gconn *conn;
    int32_t stream_id;
    const struct gs_method *m;
    void *data;
    /* request */
    char *path;
    bool is_post, ct_ok, ct_seen, bad_timeout, bad_encoding, too_many_md;
    uint64_t timeout_ns;
    bool has_timeout;
    size_t md_n;
    struct grpc_md md[GRPC_SERVER_MAX_MD];
    struct grpc_deframer df;
    /* lifecycle */
    bool started, half_closed, finished, headers_sent, data_deferred, trailers_sent,
         end_sent, blocked, notify, done;
    enum grpc_call_end end_kind;       /* what a clean end of our side means */
    struct gs_nvblock *trailers;       /* until submitted */
    struct gs_qmsg *qhead, *qtail;
    size_t qbytes;
    struct timer deadline;
    uint64_t deadline_at;
    struct deferred dfr;
    size_t arena_used, arena_cap;
    char arena[];
};

static void conn_close(struct gconn *c);
static void conn_flush(struct gconn *c);
static void conn_idle_arm(struct gconn *c);

/* --- small helpers --- */

static void conn_kick(struct gconn *c)
{
    if (!c->closing && !timer_active(&c->flush_timer))
        timer_start(c->s->loop, &c->flush_timer, 0);
}

static bool md_name_ok(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
              ch == '.'))
            return false;
    }
    return true;
}

static bool md_value_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
            return false;
    return true;
}

static int md_check(const struct grpc_md *md, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!md_name_ok(md[i].name, md[i].name_len) || !md_value_ok(md[i].value, md[i].value_len))
            return -EINVAL;
    return 0;
}

static nghttp2_nv mknv(const char *name, size_t nlen, const char *value, size_t vlen)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
}
#define NV_LIT(n, v) mknv(n, sizeof(n) - 1, v, strlen(v))

static char *put(char **p, const void *src, size_t n)
{
    char *at = *p;
    if (n)
        memcpy(at, src, n);
    *p += n;
    return at;
}

/* Builds base[0..nb) + md[0..n) + an optional grpc-message (percent-encoded) into one block
 * whose nv entries point at copies inside it. */
static struct gs_nvblock *nvblock_build(const nghttp2_nv *base, size_t nb, const struct grpc_md *md,
                                        size_t n, const char *message)
{
    size_t mlen = message ? strlen(message) : 0;
    size_t enc = message ? grpc_message_encode(message, mlen, NULL, 0) : 0;
    size_t count = nb + n + (message ? 1 : 0);
    size_t bytes = sizeof(struct gs_nvblock) + count * sizeof(nghttp2_nv) + enc;
    for (size_t i = 0; i < nb; i++)
        bytes += base[i].namelen + base[i].valuelen;
    for (size_t i = 0; i < n; i++)
        bytes += md[i].name_len + md[i].value_len;
    struct gs_nvblock *b = malloc(bytes);
    if (!b)
        return NULL;
    b->n = 0;
    char *p = (char *)(b->nv + count);
    for (size_t i = 0; i < nb; i++) {
        char *nm = put(&p, base[i].name, base[i].namelen);
        char *vl = put(&p, base[i].value, base[i].valuelen);
        b->nv[b->n++] = mknv(nm, base[i].namelen, vl, base[i].valuelen);
    }
    if (message) {
        char *vl = p;
        grpc_message_encode(message, mlen, p, enc);
        p += enc;
        b->nv[b->n++] = mknv("grpc-message", 12, vl, enc);
    }
    for (size_t i = 0; i < n; i++) {
        char *nm = put(&p, md[i].name, md[i].name_len);
        char *vl = put(&p, md[i].value, md[i].value_len);
        b->nv[b->n++] = mknv(nm, md[i].name_len, vl, md[i].value_len);
    }
    return b;
}

/* --- send side --- */

static void queue_drop(struct grpc_call *call, bool keep_started)
{
    struct grpc_server *s = call->conn->s;
    struct gs_qmsg *keep = NULL;
    while (call->qhead) {
        struct gs_qmsg *q = call->qhead;
        call->qhead = q->next;
        if (keep_started && q->off > 0 && !keep) {
            keep = q;   /* half-sent: finish it, or the client sees a torn message */
            continue;
        }
        call->qbytes -= q->len - q->off;
        s->st.queued_bytes -= q->len - q->off;
        free(q);
    }
    call->qhead = call->qtail = keep;
    if (keep)
        keep->next = NULL;
}

static ssize_t data_read(nghttp2_session *h2, int32_t sid, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ud;
    struct grpc_call *call = src->ptr;
    struct grpc_server *s = call->conn->s;
    size_t n = 0;
    while (n < length && call->qhead) {
        struct gs_qmsg *q = call->qhead;
        size_t take = q->len - q->off;
        if (take > length - n)
            take = length - n;
        memcpy(buf + n, q->data + q->off, take);
        q->off += take;
        n += take;
        if (q->off == q->len) {
            call->qhead = q->next;
            if (!call->qhead)
                call->qtail = NULL;
            free(q);
        }
    }
    call->qbytes -= n;
    s->st.queued_bytes -= n;
    if (call->blocked && call->qbytes < s->cfg.send_queue_bytes) {
        call->blocked = false;
        call->notify = true;
        call->conn->notify_pending = true;
    }
    if (!call->qhead) {
        if (call->trailers) {
            *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
            struct gs_nvblock *t = call->trailers;
            call->trailers = NULL;
            if (nghttp2_submit_trailer(h2, sid, t->nv, t->n) != 0)
                *flags &= ~(uint32_t)NGHTTP2_DATA_FLAG_NO_END_STREAM;   /* end the stream anyway */
            free(t);
            call->trailers_sent = true;
        } else if (n == 0) {
            call->data_deferred = true;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    return (ssize_t)n;
}

/* Submits ":status 200" + content-type + md with our data source. */
static int submit_headers(struct grpc_call *call, const struct grpc_md *md, size_t n)
{
    nghttp2_nv base[] = {NV_LIT(":status", "200"), NV_LIT("content-type", "application/grpc")};
    struct gs_nvblock *b = nvblock_build(base, 2, md, n, NULL);
    if (!b)
        return -ENOMEM;
    nghttp2_data_provider prd = {.source.ptr = call, .read_callback = data_read};
    int rc = nghttp2_submit_response(call->conn->h2, call->stream_id, b->nv, b->n, &prd);
    free(b);
    if (rc != 0)
        return -EIO;
    call->headers_sent = true;
    return 0;
}

static void resume(struct grpc_call *call)
{
    if (call->data_deferred) {
        call->data_deferred = false;
        nghttp2_session_resume_data(call->conn->h2, call->stream_id);
    }
    conn_kick(call->conn);
}

/* Ends our side: trailers-only when nothing was sent, else trailers after the queue. */
static int call_end(struct grpc_call *call, int http_status, int status, const char *message,
                    const struct grpc_md *md, size_t n, enum grpc_call_end kind)
{
    char st[4];
    snprintf(st, sizeof st, "%d", status);
    call->finished = true;
    call->end_kind = kind;
    timer_stop(call->conn->s->loop, &call->deadline);
    if (!call->headers_sent) {
        char hs[4];
        snprintf(hs, sizeof hs, "%d", http_status);
        nghttp2_nv base[] = {NV_LIT(":status", hs), NV_LIT("content-type", "application/grpc"),
                             NV_LIT("grpc-status", st)};
        struct gs_nvblock *b = nvblock_build(base, 3, md, n, message);
        if (!b)
            return -ENOMEM;
        int rc = nghttp2_submit_response(call->conn->h2, call->stream_id, b->nv, b->n, NULL);
        free(b);
        call->headers_sent = call->trailers_sent = true;
        conn_kick(call->conn);
        return rc ? -EIO : 0;
    }
    nghttp2_nv base[] = {NV_LIT("grpc-status", st)};
    call->trailers = nvblock_build(base, 1, md, n, message);
    if (!call->trailers) {
        nghttp2_submit_rst_stream(call->conn->h2, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        conn_kick(call->conn);
        return -ENOMEM;
    }
    resume(call);
    return 0;
}

static bool call_alive(const struct grpc_call *call)
{
    return !call->done && !call->finished && !call->conn->closing;
}

int grpc_call_send_headers(struct grpc_call *c, const struct grpc_md *md, size_t n)
{
    if (!call_alive(c))
        return -EPIPE;
    if (c->headers_sent)
        return -EALREADY;
    if (md_check(md, n) < 0)
        return -EINVAL;
    int rc = submit_headers(c, md, n);
    conn_kick(c->conn);
    return rc;
}

int grpc_call_send(struct grpc_call *c, const void *msg, size_t len)
{
    struct grpc_server *s = c->conn->s;
    if (!call_alive(c))
        return -EPIPE;
    if (len > s->cfg.max_message)
        return -EMSGSIZE;
    if (c->qhead && c->qbytes >= s->cfg.send_queue_bytes) {
        if (!c->blocked)
            s->st.send_blocked++;
        c->blocked = true;
        return -ENOBUFS;
    }
    struct gs_qmsg *q = malloc(sizeof *q + GRPC_PREFIX_LEN + len);
    if (!q)
        return -ENOMEM;
    if (!c->headers_sent) {
        int rc = submit_headers(c, NULL, 0);
        if (rc < 0) {
            free(q);
            return rc;
        }
    }
    q->next = NULL;
    q->len = GRPC_PREFIX_LEN + len;
    q->off = 0;
    grpc_prefix_write(q->data, false, (uint32_t)len);
    if (len)
        memcpy(q->data + GRPC_PREFIX_LEN, msg, len);
    if (c->qtail)
        c->qtail->next = q;
    else
        c->qhead = q;
    c->qtail = q;
    c->qbytes += q->len;
    s->st.queued_bytes += q->len;
    if (s->st.queued_bytes > s->st.queued_bytes_max)
        s->st.queued_bytes_max = s->st.queued_bytes;
    resume(c);
    return 0;
}

int grpc_call_finish(struct grpc_call *c, int status, const char *message,
                     const struct grpc_md *trailers, size_t n)
{
    if (!call_alive(c))
        return -EPIPE;
    if (status < 0 || status > GRPC_STATUS_MAX || md_check(trailers, n) < 0)
        return -EINVAL;
    return call_end(c, 200, status, message, trailers, n, GRPC_END_FINISHED);
}

/* Server-side errors on a started or unstarted call. */
static void call_fail(struct grpc_call *call, int http_status, int status, const char *message,
                      const struct grpc_md *md, size_t n)
{
    if (call->finished || call->done)
        return;
    queue_drop(call, true);
    call_end(call, http_status, status, message, md, n, GRPC_END_ERROR);
}

/* --- accessors --- */

void grpc_call_set_data(struct grpc_call *c, void *data) { c->data = data; }
void *grpc_call_data(const struct grpc_call *c) { return c->data; }
struct grpc_server *grpc_call_server(const struct grpc_call *c) { return c->conn->s; }
struct loop *grpc_server_loop(const struct grpc_server *s) { return s->loop; }
const char *grpc_call_path(const struct grpc_call *c) { return c->path ? c->path : ""; }

size_t grpc_call_metadata(const struct grpc_call *c, const struct grpc_md **md)
{
    *md = c->md;
    return c->md_n;
}

const char *grpc_call_metadata_get(const struct grpc_call *c, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < c->md_n; i++)
        if (c->md[i].name_len == nl && memcmp(c->md[i].name, name, nl) == 0) {
            if (len)
                *len = c->md[i].value_len;
            return c->md[i].value;
        }
    return NULL;
}

uint64_t grpc_call_deadline_left_ms(const struct grpc_call *c)
{
    if (!c->has_timeout)
        return UINT64_MAX;
    uint64_t now = loop_now_ms(c->conn->s->loop);
    return c->deadline_at > now ? c->deadline_at - now : 0;
}

/* --- receive side: nghttp2 callbacks --- */

static void call_free_deferred(struct deferred *d)
{
    struct grpc_call *call = (struct grpc_call *)((char *)d - offsetof(struct grpc_call, dfr));
    free(call);
}

/* Unlinks the call, tells its handler (once) and frees it after the current batch. */
static void call_release(struct grpc_call *call, enum grpc_call_end why)
{
    struct gconn *c = call->conn;
    struct grpc_server *s = c->s;
    if (call->prev)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    if (!c->calls && !c->closing)
        conn_idle_arm(c);
    timer_stop(s->loop, &call->deadline);
    queue_drop(call, false);
    free(call->trailers);
    call->trailers = NULL;
    grpc_deframer_free(&call->df);
    if (c->h2)
        nghttp2_session_set_stream_user_data(c->h2, call->stream_id, NULL);
    s->st.live_calls--;
    bool started = call->started;
    call->done = true;
    if (started) {
        if (why == GRPC_END_CANCELLED)
            s->st.calls_cancelled++;
        if (call->m->h->on_done)
            call->m->h->on_done(call, why);
    }
    loop_defer(s->loop, &call->dfr, call_free_deferred);
}

static void on_deadline(struct loop *l, struct timer *t)
{
    (void)l;
    struct grpc_call *call = t->data;
    if (call->finished || call->done)
        return;
    call->conn->s->st.calls_deadline++;
    queue_drop(call, true);
    call_end(call, 200, GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded", NULL, 0,
             GRPC_END_DEADLINE);
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
    struct gconn *c = ud;
    struct grpc_server *s = c->s;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct grpc_call *call = calloc(1, sizeof *call + s->cfg.max_metadata_bytes);
    if (!call)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;   /* resets this stream */
    call->conn = c;
    call->stream_id = frame->hd.stream_id;
    call->arena_cap = s->cfg.max_metadata_bytes;
    timer_init(&call->deadline, on_deadline, call);
    timer_stop(s->loop, &c->idle_timer);
    grpc_deframer_init(&call->df, s->cfg.max_message, false);
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    s->st.live_calls++;
    nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id, call);
    return 0;
}

static char *arena_put(struct grpc_call *call, const uint8_t *p, size_t n)
{
    if (call->arena_cap - call->arena_used < n + 1)
        return NULL;
    char *at = call->arena + call->arena_used;
    memcpy(at, p, n);
    at[n] = '\0';
    call->arena_used += n + 1;
    return at;
}

static bool name_is(const uint8_t *name, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(name, lit, l) == 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;   /* request trailers: ignored */
    struct grpc_call *call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (!call || call->too_many_md)
        return 0;
    if (name_is(name, namelen, ":path")) {
        call->path = arena_put(call, value, valuelen);
        if (!call->path)
            call->too_many_md = true;
    } else if (name_is(name, namelen, ":method")) {
        call->is_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (namelen && name[0] == ':') {
        /* :scheme, :authority: nghttp2 checked them */
    } else if (name_is(name, namelen, "content-type")) {
        call->ct_seen = true;
        call->ct_ok = grpc_content_type_ok((const char *)value, valuelen);
    } else if (name_is(name, namelen, "grpc-timeout")) {
        call->has_timeout = grpc_timeout_parse((const char *)value, valuelen, &call->timeout_ns) == 0;
        call->bad_timeout = !call->has_timeout;
    } else if (name_is(name, namelen, "grpc-encoding")) {
        call->bad_encoding = !(valuelen == 8 && memcmp(value, "identity", 8) == 0);
    } else if (name_is(name, namelen, "te") || name_is(name, namelen, "grpc-accept-encoding")) {
        /* te: trailers is checked by nghttp2; we only ever send identity */
    } else {
        if (call->md_n == GRPC_SERVER_MAX_MD) {
            call->too_many_md = true;
            return 0;
        }
        char *n = arena_put(call, name, namelen);
        char *v = n ? arena_put(call, value, valuelen) : NULL;
        if (!v) {
            call->too_many_md = true;
            return 0;
        }
        call->md[call->md_n++] = (struct grpc_md){n, namelen, v, valuelen};
    }
    return 0;
}

static const struct gs_method *find_method(struct grpc_server *s, const char *path)
{
    for (size_t i = 0; i < s->nmethods; i++)
        if (strcmp(s->methods[i].path, path) == 0)
            return &s->methods[i];
    return NULL;
}

/* Request headers complete: check them, then start the handler or answer trailers-only. */
static void call_begin(struct grpc_call *call)
{
    struct grpc_server *s = call->conn->s;
    s->st.calls++;
    if (!call->is_post) {
        call_fail(call, 405, GRPC_STATUS_INTERNAL, "method must be POST", NULL, 0);
        return;
    }
    if (!call->ct_ok) {
        call_fail(call, 415, GRPC_STATUS_INTERNAL,
                  call->ct_seen ? "invalid content-type" : "missing content-type", NULL, 0);
        return;
    }
    if (call->too_many_md) {
        call_fail(call, 200, GRPC_STATUS_RESOURCE_EXHAUSTED, "request metadata too large", NULL, 0);
        return;
    }
    if (call->bad_timeout) {
        call_fail(call, 200, GRPC_STATUS_INTERNAL, "invalid grpc-timeout", NULL, 0);
        return;
    }
    if (call->bad_encoding) {
        static const struct grpc_md acc = {"grpc-accept-encoding", 20, "identity", 8};
        call_fail(call, 200, GRPC_STATUS_UNIMPLEMENTED, "unsupported grpc-encoding", &acc, 1);
        return;
    }
    const struct gs_method *m = call->path ? find_method(s, call->path) : NULL;
    if (!m) {
        s->st.calls_unimplemented++;
        char msg[160];
        snprintf(msg, sizeof msg, "unknown method %.120s", call->path ? call->path : "");
        call_fail(call, 200, GRPC_STATUS_UNIMPLEMENTED, msg, NULL, 0);
        return;
    }
    call->m = m;
    call->started = true;
    if (call->has_timeout) {
        uint64_t ms = call->timeout_ns / 1000000u + (call->timeout_ns % 1000000u != 0);
        if (ms > GS_MAX_DEADLINE_MS)
            ms = GS_MAX_DEADLINE_MS;
        call->deadline_at = loop_now_ms(s->loop) + ms;
        timer_start(s->loop, &call->deadline, ms);
    }
    if (m->h->on_start)
        m->h->on_start(call, m->arg);
}

static void call_half_close(struct grpc_call *call)
{
    if (call->half_closed)
        return;
    call->half_closed = true;
    if (!call->started || call->finished || call->done)
        return;
    if (!grpc_deframer_idle(&call->df)) {
        call_fail(call, 200, GRPC_STATUS_INTERNAL, "stream ended inside a message", NULL, 0);
        return;
    }
    if (call->m->h->on_half_close)
        call->m->h->on_half_close(call);
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
    (void)ud;
    struct grpc_call *call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (!call)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        call_begin(call);
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !call->done)
        call_half_close(call);
    return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    struct grpc_call *call = nghttp2_session_get_stream_user_data(h2, sid);
    size_t off = 0;
    while (call && off < len && call->started && !call->finished && !call->done) {
        size_t used;
        struct grpc_msg m;
        int rc = grpc_deframer_feed(&call->df, data + off, len - off, &used, &m);
        off += used;
        if (rc == GRPC_DF_ERROR) {
            char msg[128];
            if (call->df.error_status == GRPC_STATUS_RESOURCE_EXHAUSTED)
                snprintf(msg, sizeof msg, "grpc: received message larger than max (%u vs. %u)",
                         call->df.error_len, call->df.max_message);
            else
                snprintf(msg, sizeof msg, "grpc: %s", call->df.error);
            call_fail(call, 200, (int)call->df.error_status, msg, NULL, 0);
            break;
        }
        if (rc == GRPC_DF_MESSAGE && call->m->h->on_message)
            call->m->h->on_message(call, m.data, m.len);
    }
    return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
    (void)ud;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct grpc_call *call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (!call)
        return 0;
    call->end_sent = true;
    /* RFC 9113 8.1: a complete response may be followed by RST_STREAM(NO_ERROR) so the client
     * stops sending a request we no longer read */
    if (!nghttp2_session_get_stream_remote_close(h2, frame->hd.stream_id))
        nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t sid, uint32_t error_code, void *ud)
{
    (void)error_code;
    (void)ud;
    struct grpc_call *call = nghttp2_session_get_stream_user_data(h2, sid);
    if (!call || call->done)
        return 0;
    call_release(call, call->end_sent ? call->end_kind : GRPC_END_CANCELLED);
    return 0;
}

/* --- connections --- */

static void conn_free_deferred(struct deferred *d)
{
    struct gconn *c = (struct gconn *)((char *)d - offsetof(struct gconn, dfr));
    free(c);
}

static void server_check_done(struct grpc_server *s)
{
    if (s->shutting_down && !s->conns && !s->done_called && !timer_active(&s->done_timer))
        timer_start(s->loop, &s->done_timer, 0);
}

static void conn_close(struct gconn *c)
{
    struct grpc_server *s = c->s;
    if (c->closing)
        return;
    c->closing = true;
    timer_stop(s->loop, &c->flush_timer);
    timer_stop(s->loop, &c->read_timer);
    timer_stop(s->loop, &c->idle_timer);
    timer_stop(s->loop, &c->stall_timer);
    io_stop(s->loop, &c->io);
    close(c->io.fd);
    while (c->calls)
        call_release(c->calls, GRPC_END_CLOSED);
    nghttp2_session_del(c->h2);
    c->h2 = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->st.live_connections--;
    loop_defer(s->loop, &c->dfr, conn_free_deferred);
    server_check_done(s);
}

/* Writes what nghttp2 has to say until it has nothing or the socket blocks. */
static void conn_flush(struct gconn *c)
{
    if (c->closing || c->write_blocked)
        return;
    for (int round = 0; round < GS_FLUSH_ROUNDS; round++) {
        for (;;) {
            while (c->out_len < GS_OUT_BUF) {
                if (!c->pend_len) {
                    ssize_t n = nghttp2_session_mem_send(c->h2, &c->pend);
                    if (n < 0) {
                        log_debug("grpc: nghttp2 send: %s", nghttp2_strerror((int)n));
                        conn_close(c);
                        return;
                    }
                    if (n == 0)
                        break;
                    c->pend_len = (size_t)n;
                }
                size_t take = GS_OUT_BUF - c->out_len;
                if (take > c->pend_len)
                    take = c->pend_len;
                memcpy(c->out + c->out_len, c->pend, take);
                c->out_len += take;
                c->pend += take;
                c->pend_len -= take;
            }
            if (c->out_off == c->out_len)
                break;
            ssize_t w = sock_send(c->io.fd, c->out + c->out_off, c->out_len - c->out_off);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    c->write_blocked = true;
                    io_want_write(c->s->loop, &c->io, true);
                    if (!timer_active(&c->stall_timer) && c->s->cfg.idle_timeout_ms != UINT32_MAX)
                        timer_start(c->s->loop, &c->stall_timer, c->s->cfg.idle_timeout_ms);
                    return;
                }
                if (errno == EINTR)
                    continue;
                conn_close(c);
                return;
            }
            c->out_off += (size_t)w;
            if (w > 0)
                timer_stop(c->s->loop, &c->stall_timer);   /* the peer reads: not stalled */
            if (c->out_off == c->out_len)
                c->out_off = c->out_len = 0;
        }
        if (c->closing)
            return;
        if (!c->notify_pending)
            break;
        c->notify_pending = false;
        for (struct grpc_call *call = c->calls, *next; call; call = next) {
            next = call->next;
            if (call->notify && !call->done) {
                call->notify = false;
                if (!call->finished && call->m->h->on_writable)
                    call->m->h->on_writable(call);
            }
        }
        if (c->closing)
            return;
        if (!nghttp2_session_want_write(c->h2))
            break;
    }
    if (nghttp2_session_want_write(c->h2) || c->notify_pending) {
        conn_kick(c);
        return;
    }
    if (!nghttp2_session_want_read(c->h2) && c->out_len == 0 && c->pend_len == 0)
        conn_close(c);
}

static void conn_read(struct gconn *c)
{
    uint8_t buf[GS_READ_BUF];
    for (int i = 0; i < GS_READS_PER_EVENT; i++) {
        ssize_t n = sock_recv(c->io.fd, buf, sizeof buf);
        if (n == 0) {
            conn_close(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_close(c);
            goto out;
        }
        ssize_t r = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
        if (r < 0) {
            log_debug("grpc: nghttp2 recv: %s", nghttp2_strerror((int)r));
            /* nghttp2 queued a GOAWAY for protocol errors: try to get it out, then close */
            c->write_blocked = false;
            conn_flush(c);
            conn_close(c);
            return;
        }
        if (c->closing)
            return;
    }
    /* more may be waiting: come back after other connections had their turn */
    timer_start(c->s->loop, &c->read_timer, 0);
out:
    conn_flush(c);
}

static void on_conn_io(struct loop *l, struct io *io, uint32_t events)
{
    struct gconn *c = io->data;
    if (events & EPOLLOUT) {
        c->write_blocked = false;
        io_want_write(l, &c->io, false);
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
        conn_read(c);
    else
        conn_flush(c);
}

static void on_flush_timer(struct loop *l, struct timer *t)
{
    (void)l;
    conn_flush(t->data);
}

/* No call for idle_timeout_ms: say goodbye; conn_flush closes once the GOAWAY is out. */
static void on_idle_timer(struct loop *l, struct timer *t)
{
    (void)l;
    struct gconn *c = t->data;
    if (c->calls || c->closing)
        return;
    nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->h2),
                          NGHTTP2_NO_ERROR, NULL, 0);
    conn_flush(c);
}

/* The socket took no byte for idle_timeout_ms while we had output: the peer is gone or
 * hostile; its calls and queues would otherwise live forever. */
static void on_stall_timer(struct loop *l, struct timer *t)
{
    (void)l;
    struct gconn *c = t->data;
    log_debug("grpc: closing a connection that read nothing for %u ms", c->s->cfg.idle_timeout_ms);
    conn_close(c);
}

static void conn_idle_arm(struct gconn *c)
{
    if (c->s->cfg.idle_timeout_ms != UINT32_MAX)
        timer_start(c->s->loop, &c->idle_timer, c->s->cfg.idle_timeout_ms);
}

static void on_read_timer(struct loop *l, struct timer *t)
{
    (void)l;
    conn_read(t->data);
}

static int conn_new(struct grpc_server *s, int fd)
{
    struct gconn *c = calloc(1, sizeof *c);
    if (!c || nghttp2_session_server_new2(&c->h2, s->cbs, c, s->opt) != 0) {
        free(c);
        close(fd);
        return -ENOMEM;
    }
    c->s = s;
    timer_init(&c->flush_timer, on_flush_timer, c);
    timer_init(&c->read_timer, on_read_timer, c);
    timer_init(&c->idle_timer, on_idle_timer, c);
    timer_init(&c->stall_timer, on_stall_timer, c);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s->cfg.max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, s->cfg.window_bytes},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, s->cfg.max_metadata_bytes},
    };
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, GS_CONN_WINDOW);
    int rc = io_start(s->loop, &c->io, fd, EPOLLIN, on_conn_io, c);
    if (rc < 0) {
        nghttp2_session_del(c->h2);
        free(c);
        close(fd);
        return rc;
    }
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->st.connections++;
    s->st.live_connections++;
    conn_idle_arm(c);
    conn_flush(c);
    return 0;
}

int grpc_server_adopt(struct grpc_server *s, int fd)
{
    if (s->shutting_down || s->st.live_connections >= s->cfg.max_connections) {
        s->st.connections_refused++;
        close(fd);
        return -ECONNREFUSED;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return conn_new(s, fd);
}

static void on_accept(struct loop *l, struct io *io, uint32_t events)
{
    (void)l;
    (void)events;
    struct gs_listener *li = io->data;
    struct grpc_server *s = li->s;
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;   /* EAGAIN, or out of fds: the next connection tries again */
        }
        if (s->shutting_down || s->st.live_connections >= s->cfg.max_connections) {
            s->st.connections_refused++;
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        (void)conn_new(s, fd);
    }
}

/* --- server --- */

struct grpc_server *grpc_server_new(struct loop *l, const struct grpc_server_config *cfg)
{
    struct grpc_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->loop = l;
    if (cfg)
        s->cfg = *cfg;
    if (!s->cfg.max_message)
        s->cfg.max_message = GRPC_DEFAULT_MAX_MESSAGE;
    if (!s->cfg.max_streams)
        s->cfg.max_streams = 100;
    if (!s->cfg.max_connections)
        s->cfg.max_connections = 1024;
    if (!s->cfg.send_queue_bytes)
        s->cfg.send_queue_bytes = 1024 * 1024;
    if (!s->cfg.max_metadata_bytes)
        s->cfg.max_metadata_bytes = 16 * 1024;
    if (!s->cfg.idle_timeout_ms)
        s->cfg.idle_timeout_ms = 300000;
    if (!s->cfg.window_bytes)
        s->cfg.window_bytes = 1024 * 1024;
    if (s->cfg.window_bytes > NGHTTP2_MAX_WINDOW_SIZE)
        s->cfg.window_bytes = NGHTTP2_MAX_WINDOW_SIZE;
    timer_init(&s->grace_timer, NULL, s);
    timer_init(&s->done_timer, NULL, s);
    if (nghttp2_session_callbacks_new(&s->cbs) != 0 || nghttp2_option_new(&s->opt) != 0) {
        grpc_server_free(s);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(s->cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(s->cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(s->cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(s->cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(s->cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(s->cbs, on_stream_close);
    return s;
}

int grpc_server_add_method(struct grpc_server *s, const char *path, const struct grpc_handler *h,
                           void *arg)
{
    if (!path || path[0] != '/' || !h || !h->on_done)
        return -EINVAL;
    if (find_method(s, path))
        return -EEXIST;
    struct gs_method *m = realloc(s->methods, (s->nmethods + 1) * sizeof *m);
    if (!m)
        return -ENOMEM;
    s->methods = m;
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    s->methods[s->nmethods++] = (struct gs_method){p, h, arg};
    return 0;
}

int grpc_server_listen(struct grpc_server *s, const char *addr, uint16_t port)
{
    if (s->nlst == GS_MAX_LISTENERS || s->shutting_down)
        return -ENOSPC;
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        len = sizeof *in4;
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        len = sizeof *in6;
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 512) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    struct gs_listener *li = &s->lst[s->nlst];
    li->s = s;
    int rc = io_start(s->loop, &li->io, fd, EPOLLIN, on_accept, li);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    s->nlst++;
    return ntohs(ss.ss_family == AF_INET ? in4->sin_port : in6->sin6_port);
}

static void close_listeners(struct grpc_server *s)
{
    for (size_t i = 0; i < s->nlst; i++) {
        io_stop(s->loop, &s->lst[i].io);
        close(s->lst[i].io.fd);
    }
    s->nlst = 0;
}

static void on_grace(struct loop *l, struct timer *t)
{
    (void)l;
    struct grpc_server *s = t->data;
    for (struct gconn *c = s->conns; c; c = c->next)
        for (struct grpc_call *call = c->calls; call; call = call->next)
            call_fail(call, 200, GRPC_STATUS_UNAVAILABLE, "server shutting down", NULL, 0);
    /* one last best-effort write, then close whatever is left */
    for (struct gconn *c = s->conns; c; c = c->next)
        conn_flush(c);
    while (s->conns)
        conn_close(s->conns);
}

static void on_done_timer(struct loop *l, struct timer *t)
{
    (void)l;
    struct grpc_server *s = t->data;
    if (s->done_called)
        return;
    s->done_called = true;
    timer_stop(s->loop, &s->grace_timer);
    if (s->done)
        s->done(s, s->done_arg);
}

void grpc_server_shutdown(struct grpc_server *s, uint64_t grace_ms,
                          void (*done)(struct grpc_server *s, void *arg), void *arg)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    s->done = done;
    s->done_arg = arg;
    close_listeners(s);
    s->grace_timer.cb = on_grace;
    s->done_timer.cb = on_done_timer;
    for (struct gconn *c = s->conns; c; c = c->next) {
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                              NULL, 0);
        conn_kick(c);
    }
    timer_start(s->loop, &s->grace_timer, grace_ms);
    server_check_done(s);
}

void grpc_server_free(struct grpc_server *s)
{
    if (!s)
        return;
    close_listeners(s);
    while (s->conns)
        conn_close(s->conns);
    timer_stop(s->loop, &s->grace_timer);
    timer_stop(s->loop, &s->done_timer);
    for (size_t i = 0; i < s->nmethods; i++)
        free(s->methods[i].path);
    free(s->methods);
    nghttp2_session_callbacks_del(s->cbs);
    nghttp2_option_del(s->opt);
    free(s);
}

void grpc_server_get_stats(const struct grpc_server *s, struct grpc_server_stats *out)
{
    *out = s->st;
}
