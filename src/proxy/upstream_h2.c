/* HTTP/2 upstream connections (see upstream_h2.h): an nghttp2 client session per connection,
 * kept per worker per host in wc->pools[host].h2, streams multiplexed up to the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS (and the cluster's own max_concurrent_streams), a new
 * connection when every one is full, and max_requests_per_connection streams at most on one.
 *
 * The connection under a session is a struct uconn (upstream.c): connecting, connect_timeout,
 * the TLS handshake (SNI, ALPN, SAN checks, client certificates, session reuse), UF failures,
 * cluster.<name>.ssl.* stats and %UPSTREAM_TRANSPORT_FAILURE_REASON% live there once for both
 * protocols. This file owns the uconn from its start and reads and writes it through the
 * transport (plaintext or TLS). For auto_config (UPSTREAM_AUTO) the connection offers ALPN
 * "h2,http/1.1"; when the server does not select h2, the streams waiting on it go to the
 * HTTP/1.1 path (router_upstream_h1_fallback), the first one taking this very connection.
 *
 * Bytes: one input buffer (fed to nghttp2_session_mem_recv, then given back) and one output
 * buffer (the send callback fills it, transport_sendv drains it). Request bodies are pulled from
 * the hstream's body buffer as the server's window allows; response DATA goes into the
 * hstream's response buffer (and the queue behind it, s->rsq) and the stream and connection
 * windows (the cluster's initial_stream_window_size / initial_connection_window_size, as
 * advertised) reopen only as the downstream takes it: a stream holds at most its window, a
 * connection at most its connection window.
 *
 * nghttp2 callbacks never call into the downstream codec: they mark streams dirty, and the
 * downstream is woken after the I/O round (no re-entry into either session). */
#include "proxy/upstream_h2.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "common/log.h"
#include "common/sock.h"
#include "proxy/config.h"
#include "proxy/h2_mem.h"
#include "proxy/hstream.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

enum uh2_state { UH2_CONNECTING, UH2_OPEN, UH2_CLOSED };

struct uh2c {
    struct uconn *u;               /* the connection (NULL once closed or handed over) */
    struct worker *w;
    struct wcluster *wc;
    uint32_t host;
    enum uh2_state state;
    nghttp2_session *ng;
    struct buf *in, *out;
    struct timer timer;            /* idle timeout (the uconn times the connect) */
    struct uh2_stream *streams;    /* attached streams */
    uint32_t active;               /* attached streams */
    uint32_t requests;             /* streams ever started (max_requests_per_connection) */
    uint64_t opened_ms;            /* max_connection_duration */
    struct uh2c *next;             /* in the host's list */
    bool goaway, in_run, rerun, settings_seen, auto_alpn;
    struct deferred def;
};

static void ustat(struct uh2c *c, size_t f, int64_t d) { stats_add(c->wc->c->stats, c->w->id, f, d); }
static uint64_t duration_left(const struct uh2c *c)
{
    return upstream_duration_left(c->wc->c, c->opened_ms, loop_now_ms(c->w->loop));
}
static void h2stat(struct uh2c *c, size_t f) { stats_inc(c->wc->c->h2_stats, c->w->id, f); }

static void free_deferred(struct deferred *d)
{
    struct uh2c *c = (struct uh2c *)((char *)d - offsetof(struct uh2c, def));
    nghttp2_session_del(c->ng);
    free(c);
}

static void unlink_conn(struct uh2c *c)
{
    struct upool *p = &c->wc->pools[c->host];
    for (struct uh2c **pp = &p->h2; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
}

static void wake_dirty(struct uh2c *c);

/* Closes the connection; every attached stream that has no complete response gets a 503:
 * connection failure (UF, with the uconn's TLS failure reason; timeout: the connect timed out)
 * when it never opened, else connection termination. */
static void conn_close(struct uh2c *c, bool connect_failed, bool timeout, const char *tls_error)
{
    if (c->state == UH2_CLOSED)
        return;
    c->state = UH2_CLOSED;
    struct loop *l = c->w->loop;
    timer_stop(l, &c->timer);
    if (c->u) {
        upstream_close(c->u); /* counts upstream_cx_destroy and the active gauge */
        c->u = NULL;
    }
    buf_put(&c->w->bufs, c->in);
    buf_put(&c->w->bufs, c->out);
    c->in = c->out = NULL;
    unlink_conn(c);
    /* Every stream still here gets its answer, then its downstream is woken. The list is
     * taken first: answering detaches streams, and waking may start new ones. */
    struct uh2_stream *list = c->streams;
    c->streams = NULL;
    struct hstream **wake = c->active ? malloc(c->active * sizeof *wake) : NULL; /* error path only */
    size_t nw = 0;
    for (struct uh2_stream *us = list, *next; us; us = next) {
        next = us->next;
        struct hstream *s = us->s;
        us->closed = true;
        us->c = NULL;
        s->uh2 = NULL;
        if (wake && nw < c->active)
            wake[nw++] = s;
        if (s->rs_end)
            continue;
        if (connect_failed) {
            s->si.upstream_transport_failure_reason = tls_error;
            router_local_reply(s, 503, 1u << RF_UPSTREAM_CONNECTION_FAILURE, "upstream_reset_before_response_started",
                               timeout ? "upstream connect error or disconnect/reset before headers. reset reason: connection timeout"
                                       : "upstream connect error or disconnect/reset before headers. reset reason: connection failure");
        }
        else
            router_local_reply(s, 503, 1u << RF_UPSTREAM_CONNECTION_TERMINATION, "upstream_reset_before_response_started",
                               "upstream connect error or disconnect/reset before headers. reset reason: connection termination");
    }
    c->active = 0;
    for (size_t i = 0; i < nw; i++)
        wake[i]->ops->wake(wake[i]);
    free(wake);
    wcluster_put(c->wc);
    loop_defer(l, &c->def, free_deferred);
}

enum { FAIL_NONE, FAIL_RESET_BEFORE, FAIL_RESET_AFTER, FAIL_SUBMIT };

/* Applies what a callback decided (a reset becomes a local reply: this detaches the stream),
 * then tells the stream's downstream codec. Runs outside nghttp2 callbacks only. */
static void settle(struct uh2_stream *us)
{
    struct hstream *s = us->s;
    int fail = us->fail;
    us->fail = FAIL_NONE;
    us->dirty = false;
    if (us->head_ready) {
        us->head_ready = false;
        if (!s->local_reply && !s->rs_head && router_upstream_head(s) < 0) {
            s->ops->wake(s);
            return;
        }
    }
    if (fail == FAIL_RESET_BEFORE)
        router_local_reply(s, 503, 1u << RF_UPSTREAM_REMOTE_RESET, "upstream_reset_before_response_started",
                           "upstream connect error or disconnect/reset before headers. reset reason: remote reset");
    else if (fail == FAIL_RESET_AFTER)
        router_local_reply(s, 503, 1u << RF_UPSTREAM_REMOTE_RESET, "upstream_reset_after_response_started", NULL);
    else if (fail == FAIL_SUBMIT)
        router_local_reply(s, 503, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "upstream_reset_before_response_started", NULL);
    s->ops->wake(s);
}

static void wake_dirty(struct uh2c *c)
{
    /* Waking may detach streams from c (router_finish): restart the walk after each. */
    for (int guard = 0; guard < 100000; guard++) {
        struct uh2_stream *us = c->streams;
        while (us && !us->dirty)
            us = us->next;
        if (!us)
            return;
        settle(us);
    }
}

static int submit_request(struct uh2c *c, struct uh2_stream *us);

/* Streams wait for the server's first SETTINGS (its MAX_CONCURRENT_STREAMS) before they are
 * submitted. */
static void submit_pending(struct uh2c *c)
{
    if (!c->settings_seen)
        return;
    for (struct uh2_stream *us = c->streams; us; us = us->next)
        if (us->id == 0 && !us->closed && !us->fail && submit_request(c, us) < 0) {
            us->fail = FAIL_SUBMIT;
            us->dirty = true;
        }
}

static struct uh2_stream *stream_of(struct uh2c *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->ng, id);
}

/* --- nghttp2 callbacks --- */

static ssize_t on_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)ng;
    (void)flags;
    struct uh2c *c = ud;
    if (!c->out && !(c->out = buf_get(&c->w->bufs)))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (buf_len(c->out) == 0)
        c->out->head = c->out->tail = 0;
    size_t room = buf_room(c->out);
    if (room == 0)
        return NGHTTP2_ERR_WOULDBLOCK;
    size_t n = len < room ? len : room;
    buf_append(c->out, data, n);
    return (ssize_t)n;
}

static int save(struct buf *b, const uint8_t *p, size_t n, struct h1_str *out)
{
    if (buf_append(b, p, n) < 0)
        return -1;
    out->p = b->data + b->tail - n;
    out->n = n;
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)ng;
    (void)flags;
    struct uh2c *c = ud;
    struct uh2_stream *us = stream_of(c, f->hd.stream_id);
    if (!us || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct hstream *s = us->s;
    struct buf *b = router_rsbuf(s);
    if (!b)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (us->in_trailers) {
        if (s->n_rs_trailers >= HSTREAM_MAX_TRAILERS)
            return 0;
        struct h1_header h;
        if (save(b, name, namelen, &h.name) < 0 || save(b, value, valuelen, &h.value) < 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        s->rs_trailers[s->n_rs_trailers++] = h;
        return 0;
    }
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int st = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            st = st * 10 + (value[i] - '0');
        s->urs.status = st;
        return 0;
    }
    if (namelen && name[0] == ':')
        return 0;
    if (s->urs.nheaders >= router_head_slots(s))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    struct h1_header h;
    if (save(b, name, namelen, &h.name) < 0 || save(b, value, valuelen, &h.value) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->urs.headers[s->urs.nheaders++] = h;
    return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ng;
    struct uh2c *c = ud;
    struct uh2_stream *us = stream_of(c, f->hd.stream_id);
    if (!us || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct hstream *s = us->s;
    if (us->in_trailers) {
        /* Trailers: their slots go after what is in rsbuf, aligned. */
        struct buf *b = router_rsbuf(s);
        if (!b)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        size_t at = (b->tail + 15) & ~(size_t)15;
        size_t need = HSTREAM_MAX_TRAILERS * sizeof(struct h1_header);
        if (at + need > BUF_SIZE)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        s->rs_trailers = (struct h1_header *)(b->data + at);
        b->tail = at + need;
        s->n_rs_trailers = 0;
    } else {
        if (!router_rsbuf(s))
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        s->urs.headers = s->urs_headers;
        s->urs.nheaders = 0;
        s->urs.status = 0;
        s->urs.content_length = -1;
        s->urs.keep_alive = 1;
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ng;
    struct uh2c *c = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true; /* no new streams here; those above last_stream_id close as refused */
        return 0;
    }
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
        c->settings_seen = true;
        return 0;
    }
    struct uh2_stream *us = f->hd.stream_id ? stream_of(c, f->hd.stream_id) : NULL;
    if (!us)
        return 0;
    struct hstream *s = us->s;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (f->hd.type == NGHTTP2_HEADERS) {
        if (us->in_trailers) {
            h2stat(c, H2S_TRAILERS);
        } else if (s->urs.status >= 100 && s->urs.status < 200) {
            return 0; /* interim: dropped, as for HTTP/1.1 upstreams */
        } else if (!s->local_reply) {
            us->head_ready = true; /* built in settle(), outside nghttp2 */
            us->in_trailers = true; /* any later HEADERS are trailers */
        }
        if (end)
            s->rs_end = true;
        us->dirty = true;
    } else if (f->hd.type == NGHTTP2_DATA) {
        if (end)
            s->rs_end = true;
        us->dirty = true;
    } else if (f->hd.type == NGHTTP2_RST_STREAM) {
        h2stat(c, H2S_RX_RESET);
        stats_inc(c->wc->c->stats, c->w->id, CS_UPSTREAM_RQ_RX_RESET);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)flags;
    struct uh2c *c = ud;
    struct uh2_stream *us = stream_of(c, id);
    if (!us || us->s->local_reply) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    struct hstream *s = us->s;
    if (s->head_request) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    /* At most the stream window we advertised is ever held here: it reopens only as the
     * downstream takes the bytes (uh2_stream_consumed). */
    if (bufq_append(&s->rsbody, &s->rsq, &c->w->bufs, data, len) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    ustat(c, CS_UPSTREAM_CX_RX_BYTES_TOTAL, 0);
    us->dirty = true;
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    struct uh2c *c = ud;
    struct uh2_stream *us = stream_of(c, id);
    if (!us)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    us->closed = true;
    us->dirty = true;
    struct hstream *s = us->s;
    if (!s->rs_end) { /* the server reset the stream (or refused it after GOAWAY) */
        us->fail = s->rs_head_taken ? FAIL_RESET_AFTER : FAIL_RESET_BEFORE;
        s->rt.refused = code == NGHTTP2_REFUSED_STREAM; /* retry_on refused-stream */
    }
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ng;
    struct uh2c *c = ud;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        h2stat(c, H2S_TX_RESET);
        stats_inc(c->wc->c->stats, c->w->id, CS_UPSTREAM_RQ_TX_RESET);
    } else if (f->hd.type == NGHTTP2_GOAWAY) {
        h2stat(c, H2S_GOAWAY_SENT);
    } else if (f->hd.type == NGHTTP2_HEADERS) {
        struct uh2_stream *us = stream_of(c, f->hd.stream_id);
        if (us && !us->s->si.upstream_start_us)
            us->s->si.upstream_start_us = clock_now_us();
    }
    return 0;
}

/* Request body for the server, as its window allows. */
static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)id;
    (void)ud;
    struct uh2_stream *us = src->ptr;
    struct hstream *s = us->s;
    size_t n = s->rqbody ? buf_len(s->rqbody) : 0;
    if (n) {
        if (n > len)
            n = len;
        memcpy(out, buf_rpos(s->rqbody), n);
        router_body_sent(s, n); /* counts, keeps a copy for retries, reopens the window */
        us->dirty = true; /* the downstream may reopen its window */
    }
    if (s->rq_end && (!s->rqbody || buf_len(s->rqbody) == 0)) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        s->rq_sent = true;
        s->si.request_end_us = clock_now_us();
        if (s->n_rq_trailers) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_nv nva[HSTREAM_MAX_TRAILERS];
            for (size_t i = 0; i < s->n_rq_trailers; i++)
                nva[i] = (nghttp2_nv){(uint8_t *)s->rq_trailers[i].name.p, (uint8_t *)s->rq_trailers[i].value.p,
                                      s->rq_trailers[i].name.n, s->rq_trailers[i].value.n, NGHTTP2_NV_FLAG_NONE};
            nghttp2_submit_trailer(us->c->ng, us->id, nva, s->n_rq_trailers);
        }
        return (ssize_t)n;
    }
    if (n)
        return (ssize_t)n;
    us->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
}

/* --- submitting a request --- */

static void lower(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 'A' && p[i] <= 'Z')
            p[i] = (char)(p[i] + 32);
}

/* Turns the HTTP/1.1 head the router built (s->uhead) into HEADERS. Returns 0 or -1. */
static int submit_request(struct uh2c *c, struct uh2_stream *us)
{
    struct hstream *s = us->s;
    struct h1_header hs[512];
    struct h1_request rq = {.headers = hs};
    struct h1_limits lim = {.max_head_bytes = BUF_SIZE, .max_headers = 512};
    int r = h1_parse_request(buf_rpos(s->uhead), buf_len(s->uhead), &lim, &rq);
    if (r <= 0)
        return -1;
    nghttp2_nv nva[520];
    size_t n = 0;
    nva[n++] = (nghttp2_nv){(uint8_t *)":method", (uint8_t *)rq.method.p, 7, rq.method.n, NGHTTP2_NV_FLAG_NONE};
    nva[n++] = (nghttp2_nv){(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE};
    nva[n++] = (nghttp2_nv){(uint8_t *)":authority", (uint8_t *)rq.host.p, 10, rq.host.n, NGHTTP2_NV_FLAG_NONE};
    nva[n++] = (nghttp2_nv){(uint8_t *)":path", (uint8_t *)rq.target.p, 5, rq.target.n, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < rq.nheaders; i++) {
        struct h1_str nm = hs[i].name;
        if (h1_str_eq_ci(nm, "host") || h1_str_eq_ci(nm, "transfer-encoding") || h1_str_eq_ci(nm, "connection") ||
            h1_str_eq_ci(nm, "keep-alive") || h1_str_eq_ci(nm, "proxy-connection") || h1_str_eq_ci(nm, "upgrade"))
            continue;
        lower((char *)nm.p, nm.n);
        nva[n++] = (nghttp2_nv){(uint8_t *)nm.p, (uint8_t *)hs[i].value.p, nm.n, hs[i].value.n, NGHTTP2_NV_FLAG_NONE};
    }
    bool body = !(s->rq_end && (!s->rqbody || buf_len(s->rqbody) == 0) && !s->n_rq_trailers);
    nghttp2_data_provider prd = {.source.ptr = us, .read_callback = read_body};
    int32_t id = nghttp2_submit_request(c->ng, NULL, nva, n, body ? &prd : NULL, us);
    if (id < 0)
        return -1;
    us->id = id;
    if (!body) {
        s->rq_sent = true;
        s->si.request_end_us = clock_now_us();
    }
    buf_put(&c->w->bufs, s->uhead);
    s->uhead = NULL;
    return 0;
}

/* --- I/O --- */

/* Reads, feeds nghttp2, writes; then wakes streams that changed. */
static void conn_run(struct uh2c *c)
{
    if (c->in_run) {
        c->rerun = true;
        return;
    }
    if (c->state != UH2_OPEN)
        return;
    c->in_run = true;
    bool failed = false;
    int passes = 0;
again:
    c->rerun = false;
    for (int rounds = 0; rounds < 64 && !failed; rounds++) {
        bool progress = false;
        struct uconn *u = c->u;
        while (u->readable) {
            if (!c->in && !(c->in = buf_get(&c->w->bufs)))
                break;
            ssize_t n = transport_recv(&u->tp, buf_wpos(c->in), buf_room(c->in));
            if (n > 0) {
                ustat(c, CS_UPSTREAM_CX_RX_BYTES_TOTAL, n);
                ssize_t r = nghttp2_session_mem_recv(c->ng, (const uint8_t *)c->in->data, (size_t)n);
                progress = true;
                if (r < 0) {
                    log_debug("upstream http2: %s", nghttp2_strerror((int)r));
                    for (struct uh2_stream *us = c->streams; us; us = us->next)
                        if (!us->s->rs_end)
                            us->s->si.flags |= 1u << RF_UPSTREAM_PROTOCOL_ERROR;
                    failed = true;
                    break;
                }
                if ((size_t)n < BUF_SIZE && !u->hup)
                    u->readable = false; /* drained (after an EOF, read on until we see it) */
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                failed = true;
                break;
            } else if (errno == EAGAIN) {
                u->readable = false;
            }
        }
        buf_put(&c->w->bufs, c->in);
        c->in = NULL;
        if (failed)
            break;
        submit_pending(c);
        for (;;) {
            int r = nghttp2_session_send(c->ng);
            if (r != 0 && r != NGHTTP2_ERR_WOULDBLOCK) {
                failed = true;
                break;
            }
            if (!c->out || buf_len(c->out) == 0 || !u->writable)
                break;
            struct iovec iov = {buf_rpos(c->out), buf_len(c->out)};
            ssize_t w = upstream_sendv(u, &iov, 1);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    u->writable = false;
                    io_want_write(c->w->loop, &u->io, true);
                    break;
                }
                failed = true;
                break;
            }
            ustat(c, CS_UPSTREAM_CX_TX_BYTES_TOTAL, w);
            c->out->head += (size_t)w;
            progress = true;
            if (buf_len(c->out) == 0) {
                buf_put(&c->w->bufs, c->out);
                c->out = NULL;
                if (r == 0)
                    break;
            }
        }
        if (!progress)
            break;
    }
    if (!failed && c->state == UH2_OPEN) {
        wake_dirty(c); /* may submit, resume or detach streams: they ask for a rerun */
        if (c->rerun && c->state == UH2_OPEN && ++passes < 16)
            goto again;
    }
    c->in_run = false;
    if (c->state != UH2_OPEN)
        return;
    if (failed || (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng))) {
        conn_close(c, false, false, NULL);
        return;
    }
    uint64_t left = duration_left(c);
    if (c->active == 0 && left == 0) {
        ustat(c, CS_UPSTREAM_CX_MAX_DURATION_REACHED, 1);
        conn_close(c, false, false, NULL);
    } else if (c->active == 0 && !c->wc->retired && !c->w->drain_started && !c->goaway) {
        timer_start(c->w->loop, &c->timer, left < c->wc->c->idle_timeout_ms ? left : c->wc->c->idle_timeout_ms);
    } else if (c->active == 0) {
        conn_close(c, false, false, NULL);
    }
    else if (c->rerun)
        conn_run(c);
}

static void on_timer(struct loop *l, struct timer *t)
{
    (void)l;
    struct uh2c *c = t->data;
    if (c->state == UH2_OPEN && c->active == 0) {
        if (duration_left(c) == 0)
            ustat(c, CS_UPSTREAM_CX_MAX_DURATION_REACHED, 1);
        ustat(c, CS_UPSTREAM_CX_DESTROY_LOCAL, 1);
        conn_close(c, false, false, NULL);
    }
}

/* auto_config and the server did not select h2: this host speaks HTTP/1.1 from now on. The
 * waiting streams restart on the HTTP/1.1 path, the first one on this connection; the session
 * shell closes without touching it. */
static void fall_back_to_h1(struct uh2c *c)
{
    struct uconn *u = c->u;
    c->u = NULL;
    c->goaway = true; /* no new streams here while the old ones move */
    c->wc->pools[c->host].auto_h1 = true;
    stats_inc(c->wc->c->stats, c->w->id, CS_UPSTREAM_CX_HTTP1_TOTAL);
    struct uh2_stream *list = c->streams;
    c->streams = NULL;
    c->active = 0;
    for (struct uh2_stream *us = list, *next; us; us = next) {
        next = us->next;
        struct hstream *s = us->s;
        us->c = NULL;
        us->closed = true;
        s->uh2 = NULL;
        if (router_upstream_h1_fallback(s, u) == 1)
            u = NULL; /* s has it now */
        s->ops->wake(s);
    }
    if (u)
        upstream_release(u, true); /* nobody waits: an idle HTTP/1.1 connection */
    conn_close(c, false, false, NULL);
}

/* Events of the uconn under the session. */
static void on_uconn(struct uconn *u, enum uconn_event ev, void *owner)
{
    struct uh2c *c = owner;
    if (ev == UE_CONNECT_FAILED || ev == UE_CONNECT_TIMEOUT) {
        c->u = NULL; /* the uconn closed itself (and counted why) */
        conn_close(c, true, ev == UE_CONNECT_TIMEOUT, u->tls_error);
        return;
    }
    if (ev == UE_CONNECTED) {
        if (c->auto_alpn) {
            if (!upstream_alpn_is_h2(u)) {
                fall_back_to_h1(c);
                return;
            }
            c->wc->pools[c->host].auto_h1 = false;
            stats_inc(c->wc->c->stats, c->w->id, CS_UPSTREAM_CX_HTTP2_TOTAL);
        }
        c->state = UH2_OPEN;
    }
    conn_run(c);
}

static struct uh2c *conn_new(struct worker *w, struct wcluster *wc, uint32_t host, int *err)
{
    *err = -ENOMEM;
    struct uh2c *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->opened_ms = loop_now_ms(w->loop);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, wc->c->h2.max_outbound_control_frames);
    int r = nghttp2_session_client_new3(&c->ng, cb, c, opt, h2_mem_get(&w->h2mem));
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (r != 0) {
        free(c);
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, wc->c->h2.initial_stream_window_size},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, wc->c->h2.hpack_table_size},
    };
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 3);
    if (wc->c->h2.initial_connection_window_size > 65535)
        nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, (int32_t)wc->c->h2.initial_connection_window_size);
    c->w = w;
    c->wc = wc;
    wcluster_hold(wc);
    c->host = host;
    c->state = UH2_CONNECTING;
    timer_init(&c->timer, on_timer, c);
    /* Explicit HTTP/2 offers "h2"; auto_config "h2,http/1.1" and counts the protocol once known. */
    c->auto_alpn = wc->c->protocol == UPSTREAM_AUTO;
    int cr = upstream_connect_alpn(w, wc, host, c->auto_alpn ? UA_AUTO : UA_H2, !c->auto_alpn, on_uconn, c, &c->u);
    if (cr < 0) {
        *err = cr;
        nghttp2_session_del(c->ng);
        wcluster_put(wc);
        free(c);
        return NULL;
    }
    struct upool *p = &wc->pools[host];
    c->next = p->h2;
    p->h2 = c;
    return c;
}

/* How many streams c may carry at once. */
static uint32_t capacity(const struct uh2c *c)
{
    uint32_t cap = c->wc->c->h2.max_concurrent_streams;
    if (c->settings_seen) {
        uint32_t remote = nghttp2_session_get_remote_settings(c->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if (remote < cap)
            cap = remote;
    } else if (cap > 100) {
        cap = 100; /* until the server's SETTINGS arrive (RFC 9113 6.5.2 suggests at least 100) */
    }
    return cap;
}

static bool usable(const struct uh2c *c)
{
    uint32_t maxrq = c->wc->c->max_requests_per_connection;
    return c->state != UH2_CLOSED && !c->goaway && c->active < capacity(c) && (!maxrq || c->requests < maxrq) &&
           duration_left(c) > 0;
}

int uh2_stream_start(struct hstream *s, const struct host *h)
{
    (void)h;
    if (s->host == UINT32_MAX)
        return -ENOTSUP; /* ORIGINAL_DST over HTTP/2: not pooled, not supported */
    struct upool *p = &s->wc->pools[s->host];
    struct uh2c *c = p->h2;
    while (c && !usable(c))
        c = c->next;
    int err;
    if (!c && !(c = conn_new(s->w, s->wc, s->host, &err)))
        return err;
    timer_stop(s->w->loop, &c->timer); /* the idle timer */
    struct uh2_stream *us = &s->uh2s;
    *us = (struct uh2_stream){.c = c, .s = s, .next = c->streams};
    c->streams = us;
    c->active++;
    uint32_t maxrq = s->wc->c->max_requests_per_connection;
    if (++c->requests == maxrq && maxrq)
        ustat(c, CS_UPSTREAM_CX_MAX_REQUESTS, 1); /* its last stream: closed once idle */
    s->uh2 = us;
    if (c->state == UH2_OPEN && c->settings_seen) {
        if (submit_request(c, us) < 0) {
            uh2_stream_detach(us, false);
            return -EPROTO;
        }
        conn_run(c);
    }
    return 0;
}

bool uh2_stream_pump(struct hstream *s)
{
    struct uh2_stream *us = s->uh2;
    if (!us || us->closed)
        return false;
    struct uh2c *c = us->c;
    bool progress = false;
    if (us->deferred && us->id && ((s->rqbody && buf_len(s->rqbody)) || s->rq_end)) {
        us->deferred = false;
        nghttp2_session_resume_data(c->ng, us->id);
        progress = true;
    }
    if (progress || (c->out && buf_len(c->out)) || nghttp2_session_want_write(c->ng))
        conn_run(c);
    return progress;
}

void uh2_stream_consumed(struct hstream *s, size_t n)
{
    struct uh2_stream *us = s->uh2;
    s->si.bytes_sent += n;
    /* Also once nghttp2 closed the stream: then only the connection window reopens (a stream
     * that ended with bytes still here must not keep them from the other streams). */
    if (us && us->c && us->id)
        nghttp2_session_consume(us->c->ng, us->id, n);
}

void uh2_stream_detach(struct uh2_stream *us, bool reset)
{
    struct uh2c *c = us->c;
    if (!c)
        return;
    for (struct uh2_stream **pp = &c->streams; *pp; pp = &(*pp)->next)
        if (*pp == us) {
            *pp = us->next;
            break;
        }
    c->active--;
    struct hstream *s = us->s;
    size_t held = s->local_reply ? 0 : (s->rsbody ? buf_len(s->rsbody) : 0) + s->rsq.len;
    if (c->state != UH2_CLOSED && us->id && held)
        nghttp2_session_consume_connection(c->ng, held); /* dropped unread: the connection window reopens */
    if (c->state != UH2_CLOSED && us->id && !us->closed) {
        nghttp2_session_set_stream_user_data(c->ng, us->id, NULL);
        if (reset || !us->s->rs_end)
            nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, us->id, NGHTTP2_CANCEL);
    }
    us->c = NULL;
    us->s->uh2 = NULL;
    if (c->state == UH2_CLOSED)
        return;
    if (c->active == 0 && (c->wc->retired || c->w->drain_started)) {
        conn_close(c, false, false, NULL);
        return;
    }
    if (!c->in_run)
        conn_run(c);
}

void uh2_close_idle(struct wcluster *wc)
{
    size_t n = wc->hs->n;
    for (size_t i = 0; i < n; i++) {
        struct uh2c *c = wc->pools[i].h2;
        while (c) {
            struct uh2c *next = c->next;
            if (c->active == 0)
                conn_close(c, false, false, NULL);
            else
                c->goaway = true; /* no new streams; closes when the last one is done */
            c = next;
        }
    }
}
