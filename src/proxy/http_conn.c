/* The HTTP connection manager for HTTP/1.1 downstream connections, with the router.
 *
 * One connection carries one exchange (a "stream") at a time; pipelined requests wait in the
 * read buffer. The request head stays at the start of the downstream read buffer for the whole
 * exchange (routing, hashing and the access log read it in place); body bytes stream through
 * the rest of that buffer straight to the upstream socket. The response works the same way in
 * the upstream connection's read buffer. Bytes are copied only to build the rewritten heads.
 *
 * Everything is driven by hconn_run(): after any socket event it does all the work that can be
 * done without blocking, and returns when nothing moves. */
#include "proxy/http_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sock.h"
#include "net/http1.h"
#include "net/transport.h"
#include "net/xfcc.h"
#include "proxy/access_log.h"
#include "proxy/codec_h2.h"
#include "proxy/config.h"
#include "proxy/forward.h"
#include "proxy/http_codec.h"
#include "proxy/h1_trailers.h"
#include "proxy/hstream.h"
#include "proxy/http_headers.h"
#include "proxy/http_util.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/route.h"
#include "proxy/stream_info.h"
#include "proxy/hfilter.h"
#include "proxy/mirror.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

enum body_kind { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_UNTIL_CLOSE, BODY_TUNNEL };

/* One direction of body transfer. From b->head the buffer holds `ready` bytes to forward,
 * then `dead` bytes already framed but not to be forwarded (chunk framing, when dechunking),
 * then bytes not yet framed. Framing ends when `done`. */
struct body {
    enum body_kind kind;
    uint64_t remaining;            /* BODY_LENGTH */
    struct h1_chunked chunk;       /* BODY_CHUNKED */
    bool dechunk;                  /* forward only chunk data (to an HTTP/1.0 client) */
    size_t ready;
    size_t dead;
    size_t base;                   /* where body bytes start in the buffer (after the head) */
    bool done;                     /* framing has seen the end of the body */
    struct buf *trailers;          /* when set (bridge, dechunking): the trailer section's bytes */
};

struct stream {
    bool active;
    struct h1_request rq;
    size_t head_len;
    const struct route_entry *route;
    int cluster;
    int cluster_weight;            /* index of the weighted_clusters entry, or -1 */
    struct wcluster *wc;
    uint32_t host;
    bool host_counted;             /* holds one active_rq on wc->pools[host] */
    struct uconn *u;
    struct buf *uhead;             /* upstream request head still to send */
    struct body rqb, rsb;
    struct h1_response rs;
    struct h1_header *rs_headers;  /* = hconn->rs_headers */
    bool rs_head_done;
    bool rs_head_sent;             /* the response head (ours or upstream's) went downstream */
    bool local_reply;
    bool tunnel_requested, tunnel;
    bool close_after;              /* close the downstream connection after this exchange */
    bool request_complete;         /* all request bytes forwarded */
    bool timed_out;
    bool bridge;                   /* this exchange goes through the codec-neutral router */
    bool bridge_chunked;           /* its response goes downstream chunked */
    bool bridge_done;              /* its response is all in d->out */
    bool grpc;                     /* content-type application/grpc*: gRPC local replies */
    uint64_t timeout_ms;           /* the route timeout (grpc-timeout applied), 0 = none */
    struct hf_state hf;            /* fault / local rate limit filters (hfilter.h) */
    struct timer timer;            /* route timeout */
    struct timer hf_timer;         /* a fault delay */
    struct stream_info si;
    char request_id[40];
    char xff[256];
    char orig_dst[ADDR_STR_MAX];
};

struct hconn {
    struct io io;
    struct transport tp;           /* the downstream socket, plaintext or TLS */
    struct worker *w;
    struct snapshot *snap;         /* one reference */
    struct listener_config *lc;
    struct hcm_config *hcm;
    struct sockaddr_storage peer, local;
    struct conn_link link;
    struct buf *in;                /* downstream bytes: [request head][body...][pipelined...] */
    struct buf *out;               /* bytes to write downstream before any upstream body bytes */
    struct timer idle_timer;
    struct timer dur_timer;        /* max_connection_duration: drain, then drain_timeout: close */
    uint32_t requests;             /* max_requests_per_connection (HTTP/1.1) */
    bool dur_draining;
    bool readable, writable, peer_closed, closed, draining;
    struct stream s;
    struct h1_limits lim;
    enum http_codec codec;         /* HTTP_CODEC_NEED_MORE until the first bytes decide (AUTO) */
    struct h2c *h2;                /* the HTTP/2 codec, when codec is HTTP_CODEC_H2 */
    struct hstream *hs;            /* HTTP/1.1 ⇄ HTTP/2 translation: allocated once, reused */
    bool in_bridge, bridge_rerun;
    struct deferred def;
    struct h1_header *rs_headers;
    struct h1_header rq_headers[];  /* lim.max_headers entries, then as many for responses */
};

static void hconn_run(struct hconn *d);
static void stream_reset(struct hconn *d);
static bool filters_pass(struct hconn *d, const struct route_request *rr);
static void stream_upstream(struct hconn *d, const struct route_request *rr);
static void on_fault_delay(struct loop *l, struct timer *t);
static void bridge_start(struct hconn *d, const struct fwd_decision *fd);

static inline void hstat(struct hconn *d, size_t field, int64_t delta)
{
    stats_add(d->hcm->stats, d->w->id, field, delta);
}

static void free_deferred(struct deferred *df)
{
    struct hconn *d = (struct hconn *)((char *)df - offsetof(struct hconn, def));
    h2c_free(d->h2);
    free(d->hs);
    snapshot_unref(d->snap);
    free(d);
}

static void hconn_close(struct hconn *d)
{
    if (d->closed)
        return;
    if (d->s.active)
        stream_reset(d);
    if (d->h2)
        h2c_shutdown(d->h2);
    d->closed = true;
    struct loop *l = d->w->loop;
    timer_stop(l, &d->idle_timer);
    timer_stop(l, &d->dur_timer);
    io_stop(l, &d->io);
    transport_close(&d->tp);
    buf_put(&d->w->bufs, d->in);
    buf_put(&d->w->bufs, d->out);
    d->in = d->out = NULL;
    conn_link_del(&d->link);
    d->w->n_conns--;
    hstat(d, HS_DOWNSTREAM_CX_ACTIVE, -1);
    if (d->codec == HTTP_CODEC_H1)
        hstat(d, HS_DOWNSTREAM_CX_HTTP1_ACTIVE, -1);
    hstat(d, HS_DOWNSTREAM_CX_DESTROY, 1);
    stats_add(d->lc->stats, d->w->id, LS_DOWNSTREAM_CX_ACTIVE, -1);
    stats_inc(d->lc->stats, d->w->id, LS_DOWNSTREAM_CX_DESTROY);
    loop_defer(l, &d->def, free_deferred);
}

/* --- downstream I/O --- */

/* Reads until EAGAIN, EOF or a full buffer. Returns bytes read. */
static size_t read_downstream(struct hconn *d, size_t keep)
{
    if (!d->in && !(d->in = buf_get(&d->w->bufs)))
        return 0;
    if (buf_room(d->in) == 0 && d->in->head > keep)
        buf_compact_to(d->in, keep);
    size_t total = 0;
    while (d->readable && buf_room(d->in) > 0) {
        size_t room = buf_room(d->in);
        ssize_t n = transport_recv(&d->tp, buf_wpos(d->in), room);
        if (n > 0) {
            d->in->tail += (size_t)n;
            total += (size_t)n;
            /* A short read drained the socket: with edge-triggered epoll, bytes that arrive
             * later raise a new event, so skip the read that would only say EAGAIN. */
            if ((size_t)n < room)
                d->readable = false;
        } else if (n == 0) {
            d->peer_closed = true;
            d->readable = false;
        } else if (errno == EAGAIN) {
            d->readable = false;
        } else if (errno != EINTR) {
            d->peer_closed = true;
            d->readable = false;
        }
    }
    if (total)
        hstat(d, HS_DOWNSTREAM_CX_RX_BYTES_TOTAL, (int64_t)total);
    return total;
}

/* Writes d->out, then up to body_len bytes at body. Returns body bytes written, or -1 when
 * the connection failed. */
static long write_downstream(struct hconn *d, const char *body, size_t body_len)
{
    struct iovec iov[2];
    int n = 0;
    size_t out_len = d->out ? buf_len(d->out) : 0;
    if (out_len)
        iov[n++] = (struct iovec){buf_rpos(d->out), out_len};
    if (body_len)
        iov[n++] = (struct iovec){(void *)body, body_len};
    if (n == 0 || !d->writable)
        return 0;
    ssize_t w = transport_sendv(&d->tp, iov, n);
    if (w < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            d->writable = false;
            io_want_write(d->w->loop, &d->io, true);
            return 0;
        }
        return -1;
    }
    hstat(d, HS_DOWNSTREAM_CX_TX_BYTES_TOTAL, w);
    size_t from_out = (size_t)w < out_len ? (size_t)w : out_len;
    if (out_len) {
        d->out->head += from_out;
        if (buf_len(d->out) == 0) {
            buf_put(&d->w->bufs, d->out);
            d->out = NULL;
        }
    }
    if ((size_t)w < out_len + body_len) {
        d->writable = false;
        io_want_write(d->w->loop, &d->io, true);
    }
    return (long)((size_t)w - from_out);
}

static struct buf *out_buf(struct hconn *d)
{
    if (!d->out)
        d->out = buf_get(&d->w->bufs);
    return d->out;
}

/* --- plumbing for the HTTP/2 codec (codec_h2.c): the same read/write pair --- */

static struct buf *io_input(void *ctx)
{
    struct hconn *d = ctx;
    read_downstream(d, 0);
    return d->in;
}

static void io_input_done(void *ctx)
{
    struct hconn *d = ctx;
    if (d->in) {
        buf_put(&d->w->bufs, d->in);
        d->in = NULL;
    }
}

static struct buf *io_output(void *ctx) { return out_buf(ctx); }

static long io_flush(void *ctx)
{
    struct hconn *d = ctx;
    size_t before = d->out ? buf_len(d->out) : 0;
    if (write_downstream(d, NULL, 0) < 0)
        return -1;
    size_t after = d->out ? buf_len(d->out) : 0;
    return (long)(before - after);
}

static bool io_output_pending(void *ctx)
{
    struct hconn *d = ctx;
    return d->out && buf_len(d->out) > 0;
}

static bool io_peer_closed(void *ctx) { return ((struct hconn *)ctx)->peer_closed; }
static void io_close(void *ctx) { hconn_close(ctx); }

static const struct h2c_io h2_io = {io_input, io_input_done, io_output, io_flush, io_output_pending,
                                    io_peer_closed, io_close};

/* Decides the codec once the first bytes are in (HCM codec_type AUTO), or at once
 * (HTTP1/HTTP2). The ALPN of a TLS transport plugs in here. Returns false while undecided. */
static bool choose_codec(struct hconn *d)
{
    /* TLS: the protocol ALPN negotiated ("h2", "http/1.1"), as a C string. */
    char alpn[16];
    size_t alen = 0;
    const char *ap = transport_alpn(&d->tp, &alen);
    if (ap && alen < sizeof alpn) {
        memcpy(alpn, ap, alen);
        alpn[alen] = '\0';
    }
    d->codec = http_codec_select(d->hcm->codec_type, ap && alen < sizeof alpn ? alpn : NULL,
                                 d->in ? buf_rpos(d->in) : "", d->in ? buf_len(d->in) : 0);
    if (d->codec == HTTP_CODEC_NEED_MORE)
        return false;
    if (d->codec == HTTP_CODEC_H1) {
        hstat(d, HS_DOWNSTREAM_CX_HTTP1_TOTAL, 1);
        hstat(d, HS_DOWNSTREAM_CX_HTTP1_ACTIVE, 1);
        return true;
    }
    d->h2 = h2c_new(&h2_io, d, d->w, d->hcm, &d->peer, &d->local, &d->tp);
    if (!d->h2) {
        d->draining = true;
        return true;
    }
    timer_start(d->w->loop, &d->idle_timer, d->hcm->idle_timeout_ms);
    return true;
}

/* --- local replies (404, 503, 504, redirects, direct responses, protocol errors) --- */

static void local_reply(struct hconn *d, int status, uint32_t flag, const char *details,
                        const char *body, size_t body_len, const char *location, bool close_conn, bool grpc)
{
    struct stream *s = &d->s;
    if (s->rs_head_sent) {
        /* The client already has a response head: the only signal left is closing. */
        s->si.flags |= flag;
        s->close_after = true;
        s->local_reply = true;
        s->rsb.done = true;
        s->rsb.ready = 0;
        return;
    }
    if (!s->rqb.done || s->rqb.ready)
        close_conn = true; /* the rest of the request body would be read as a new request */
    if (close_conn || d->draining)
        s->close_after = true;
    struct buf *o = out_buf(d);
    if (!o) {
        s->close_after = true;
        return;
    }
    o->head = o->tail = 0;
    bool head_only = s->rq.method.n == 4 && memcmp(s->rq.method.p, "HEAD", 4) == 0;
    int wire = status, gs = -1;
    int go = s->hf.status ? s->hf.grpc_status : -1; /* a filter's reply may carry its own grpc-status */
    grpc = grpc || go >= 0;
    if (fwd_write_local_head_grpc(o, d->hcm, status, body, body_len, location, grpc, go, &wire, &gs) < 0 ||
        (s->hf.status && hf_reply_headers(o, &s->hf, &s->si) < 0))
        s->close_after = true;
    if (grpc) {
        buf_append(o, "content-length: 0\r\n", 19); /* trailers-only: the head is all */
        body_len = 0;
    }
    if (s->close_after)
        buf_append(o, "connection: close\r\n", 19);
    buf_append(o, "\r\n", 2);
    if (body_len && body && !head_only) {
        buf_append(o, body, body_len);
        s->si.bytes_sent = body_len;
    }
    fwd_note_local_reply(&s->si, wire, gs, flag, details);
    s->local_reply = true;
    s->rs_head_sent = true;
    s->rsb.kind = BODY_NONE;
    s->rsb.done = true;
    s->rsb.ready = 0;
    if (s->u) {
        upstream_release(s->u, false);
        s->u = NULL;
    }
}

static void error_reply(struct hconn *d, int status, uint32_t flag, const char *details, const char *body)
{
    local_reply(d, status, flag, details, body, body ? strlen(body) : 0, NULL, false, d->s.grpc);
}

static void reply(struct hconn *d, enum fwd_reply_kind k)
{
    const struct fwd_reply *r = &fwd_replies[k];
    error_reply(d, r->status, r->flag, r->details, r->body);
}

/* --- stream lifecycle --- */

/* Ends the current exchange: access log, stats, upstream back to its pool. */
static void stream_finish(struct hconn *d, bool upstream_reusable)
{
    struct stream *s = &d->s;
    struct loop *l = d->w->loop;
    timer_stop(l, &s->timer);
    if (__builtin_expect(s->route && s->route->hf != NULL, 0)) {
        timer_stop(l, &s->hf_timer);
        hf_done(&s->hf, d->w, s->route);
    }
    if (__builtin_expect(s->bridge, 0)) {
        /* The router logged and counted it. */
        router_finish(d->hs, !s->bridge_done);
        buf_put(&d->w->bufs, d->hs->rqbody); /* the request side is ours */
        d->hs->rqbody = NULL;
        s->bridge = false;
        d->hs->in_use = false;
        if (!d->hs->rs_end || d->hs->reset)
            s->close_after = true;
        goto done;
    }
    s->si.end_us = clock_now_us();
    if (s->si.status == 0 && !s->rs_head_sent)
        s->si.flags |= 1u << RF_DOWNSTREAM_CONNECTION_TERMINATION;
    fwd_finish(d->hcm, d->w, s->wc, &s->si, s->rs_head_done ? s->rs.status : 0);
    if (s->u) {
        upstream_release(s->u, upstream_reusable);
        s->u = NULL;
    }
    if (s->wc)
        fwd_release_host(s->wc, s->route, s->host, &s->host_counted);
    if (s->wc) {
        wcluster_put(s->wc);
        s->wc = NULL;
    }
done:
    buf_put(&d->w->bufs, s->uhead);
    s->uhead = NULL;
    buf_put(&d->w->bufs, s->rqb.trailers);
    s->rqb.trailers = NULL;
    s->active = false;
    if (s->close_after || !s->rq.keep_alive || !s->rqb.done || s->tunnel) {
        d->draining = true;
        return;
    }
    /* Pipelined bytes after this request's body become the start of the buffer. */
    if (d->in) {
        buf_compact_to(d->in, 0);
        if (buf_len(d->in) == 0) {
            buf_put(&d->w->bufs, d->in);
            d->in = NULL;
        }
    }
    timer_start(l, &d->idle_timer, d->hcm->idle_timeout_ms);
}

/* Abandons the current exchange (client went away, fatal error). */
static void stream_reset(struct hconn *d)
{
    struct stream *s = &d->s;
    if (!s->active)
        return;
    s->close_after = true;
    stream_finish(d, false);
}

static void on_route_timeout(struct loop *l, struct timer *t)
{
    (void)l;
    struct hconn *d = t->data;
    struct stream *s = &d->s;
    s->timed_out = true;
    if (s->wc)
        stats_inc(s->wc->c->stats, d->w->id, CS_UPSTREAM_RQ_TIMEOUT);
    if (s->u) {
        upstream_release(s->u, false);
        s->u = NULL;
    }
    reply(d, FWD_R_ROUTE_TIMEOUT);
    hconn_run(d);
}

static void on_upstream_event(struct uconn *u, enum uconn_event ev, void *owner)
{
    struct hconn *d = owner;
    struct stream *s = &d->s;
    if (ev == UE_CONNECT_FAILED || ev == UE_CONNECT_TIMEOUT) {
        s->u = NULL;
        s->si.upstream_transport_failure_reason = u->tls_error;
        reply(d, ev == UE_CONNECT_TIMEOUT ? FWD_R_CONNECT_TIMEOUT : FWD_R_CONNECT_FAILURE);
    }
    hconn_run(d);
}

/* --- building the upstream request head --- */

static int put_str(struct buf *b, const char *s, size_t n) { return buf_append(b, s, n); }
static int put_cstr(struct buf *b, const char *s) { return buf_append(b, s, strlen(s)); }
#define put_header http_put_header

/* Writes the request head for the upstream into s->uhead. Returns 0 or -1 (does not fit). */
static int build_upstream_head(struct hconn *d, const struct route_request *rr, const struct host *host)
{
    struct stream *s = &d->s;
    const struct h1_request *rq = &s->rq;
    struct buf *b = s->uhead = buf_get(&d->w->bufs);
    if (!b)
        return -1;
    struct fwd_request_head in = {
        .rq = rq, .rr = rr, .route = s->route, .cluster_weight = s->cluster_weight, .host = host, .si = &s->si,
        .timeout_ms = s->timeout_ms, .tls = transport_is_tls(&d->tp),
    };
    if (fwd_write_request_head(b, d->hcm, d->w, &in) < 0)
        return -1;
    if (s->tunnel_requested &&
        (put_cstr(b, "connection: upgrade\r\n") || put_header(b, "upgrade", rq->upgrade_proto.p, rq->upgrade_proto.n)))
        return -1;
    return put_str(b, "\r\n", 2);
}

/* --- starting an exchange: route, pick a host, connect --- */

static void start_stream(struct hconn *d, int head_len)
{
    struct stream *s = &d->s;
    struct worker *w = d->w;
    timer_stop(w->loop, &d->idle_timer);
    s->active = true;
    s->head_len = (size_t)head_len;
    fwd_stream_info_start(&s->si, s->rq.minor == 0 ? "HTTP/1.0" : "HTTP/1.1", &s->rq, &d->peer, &d->local, &d->tp);
    hstat(d, HS_DOWNSTREAM_RQ_TOTAL, 1);
    hstat(d, HS_DOWNSTREAM_RQ_HTTP1_TOTAL, 1);
    hstat(d, HS_DOWNSTREAM_RQ_ACTIVE, 1);
    if (d->hcm->max_requests_per_connection && ++d->requests >= d->hcm->max_requests_per_connection) {
        /* Envoy: the last request's response carries Connection: close. */
        hstat(d, HS_DOWNSTREAM_CX_MAX_REQUESTS_REACHED, 1);
        s->close_after = true;
    }

    /* Request body framing. */
    d->in->head = s->head_len;
    s->rqb.base = s->head_len;
    if (s->rq.chunked) {
        s->rqb.kind = BODY_CHUNKED;
        h1_chunked_init(&s->rqb.chunk, d->lim.max_head_bytes);
    } else if (s->rq.content_length > 0) {
        s->rqb.kind = BODY_LENGTH;
        s->rqb.remaining = (uint64_t)s->rq.content_length;
    } else {
        s->rqb.kind = BODY_NONE;
        s->rqb.done = true;
    }
    s->grpc = fwd_headers(d->hcm, w, &s->rq, &d->peer, s->xff, sizeof s->xff, s->request_id, sizeof s->request_id,
                          &s->si);

    if (s->rq.upgrade || s->rq.connect) {
        bool websocket = s->rq.upgrade && h1_str_eq_ci(s->rq.upgrade_proto, "websocket");
        if (!websocket || !d->hcm->websocket_upgrade) {
            reply(d, FWD_R_UPGRADE_FAILED);
            return;
        }
        s->tunnel_requested = true;
    }
    /* 100-continue: answered here unless configured to pass it through (Envoy's default). */
    if (s->rq.expect_continue && !d->hcm->proxy_100_continue && s->rqb.kind != BODY_NONE) {
        struct buf *o = out_buf(d);
        if (o)
            buf_append(o, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }

    struct route_request rr = fwd_route_request(&s->rq, (struct h1_str){0}, transport_is_tls(&d->tp), &d->peer);
    struct fwd_decision fd;
    bool up = fwd_route(&fd, d->hcm, w, &rr, s->grpc, worker_random(w), &s->si);
    s->route = fd.route;
    s->cluster = fd.cluster;
    s->cluster_weight = fd.cluster_weight;
    if (!up) {
        local_reply(d, fd.status, fd.flag, fd.details, fd.body, fd.body_len, fd.location, false, fd.grpc_reply);
        return;
    }
    enum upstream_proto proto = d->snap->clusters[s->cluster]->protocol; /* AUTO: ALPN decides (router.c) */
    /* HTTP/2 upstreams and requests that may be retried (a retry policy, or the request's own
     * x-envoy-retry-on) go through the router, which keeps the body for a retry; the rest stays
     * on this zero-copy path. */
    bool retry = s->route->retry || s->si.retry_headers;
    if (__builtin_expect(proto == UPSTREAM_HTTP2 || proto == UPSTREAM_AUTO || retry, 0) && !s->tunnel_requested) {
        bridge_start(d, &fd);
        return;
    }
    s->wc = fwd_cluster(w, d->snap, s->cluster, &s->si);
    s->timeout_ms = fd.timeout_ms;
    if (__builtin_expect(s->route->hf != NULL, 0) && !filters_pass(d, &rr))
        return;
    stream_upstream(d, &rr);
}

/* The HTTP filters before the router (hfilter.h): true to go on upstream; false when they
 * answered (fault abort, rate limit) or delay the request (hf_timer resumes it). */
static bool filters_pass(struct hconn *d, const struct route_request *rr)
{
    struct stream *s = &d->s;
    switch (hf_run(s->route, d->w, rr, s->si.upstream_cluster, &s->hf, &s->si)) {
    case HF_CONTINUE:
        return true;
    case HF_DELAY:
        timer_start(d->w->loop, &s->hf_timer, s->hf.delay_ms);
        return false;
    default:
        error_reply(d, s->hf.status, s->hf.flag, s->hf.details, s->hf.body);
        return false;
    }
}

static void on_fault_delay(struct loop *l, struct timer *t)
{
    (void)l;
    struct hconn *d = t->data;
    struct stream *s = &d->s;
    struct route_request rr = fwd_route_request(&s->rq, (struct h1_str){0}, transport_is_tls(&d->tp), &d->peer);
    if (filters_pass(d, &rr))
        stream_upstream(d, &rr);
    hconn_run(d);
}

/* Shadows the request to the route's mirror clusters (mirror.h) when its whole body is here. */
static void mirror_h1(struct hconn *d)
{
    struct stream *s = &d->s;
    const char *body = NULL;
    size_t n = 0;
    if (s->rqb.kind == BODY_LENGTH) {
        if ((uint64_t)buf_len(d->in) < (uint64_t)s->rq.content_length)
            return; /* not all here yet: not mirrored (docs/limits.md) */
        body = buf_rpos(d->in);
        n = (size_t)s->rq.content_length;
    } else if (s->rqb.kind != BODY_NONE) {
        return;
    }
    mirror_request(d->w, d->snap, s->route, s->uhead, body, n, s->timeout_ms);
}

/* Picks the host and connects: the rest of start_stream once the filters let the request go. */
static void stream_upstream(struct hconn *d, const struct route_request *rrp)
{
    struct stream *s = &d->s;
    struct worker *w = d->w;
    struct route_request rr = *rrp;
    struct host od;
    const struct host *h = fwd_pick_host(w, s->wc, s->route, &rr, &d->local, &od, s->orig_dst, sizeof s->orig_dst,
                                         &s->host, &s->host_counted, &s->si);
    if (!h) {
        reply(d, s->host == FWD_HOST_OVERFLOW ? FWD_R_OVERFLOW : FWD_R_NO_HEALTHY);
        return;
    }
    if (build_upstream_head(d, &rr, h) < 0) {
        reply(d, FWD_R_REQUEST_HEADERS_TOO_LARGE);
        return;
    }
    if (__builtin_expect(s->route->nmirrors != 0, 0) && !s->tunnel_requested)
        mirror_h1(d);
    int r = s->host == UPSTREAM_NO_POOL ? upstream_connect_addr(w, s->wc, &d->local, on_upstream_event, d, &s->u)
                                        : upstream_acquire(w, s->wc, s->host, on_upstream_event, d, &s->u);
    if (r < 0) {
        s->u = NULL;
        reply(d, fwd_connect_error(r));
        return;
    }
    if (s->timeout_ms)
        timer_start(w->loop, &s->timer, s->timeout_ms);
}

/* --- body framing shared by both directions --- */

/* Frames newly arrived bytes of b. Returns -1 on a framing error. */
static int frame_body(struct body *bd, struct buf *b)
{
    if (bd->done && bd->kind != BODY_UNTIL_CLOSE && bd->kind != BODY_TUNNEL)
        return 0;
    size_t unframed = buf_len(b) - bd->ready - bd->dead;
    if (unframed == 0)
        return 0;
    switch (bd->kind) {
    case BODY_NONE:
        return 0;
    case BODY_LENGTH: {
        size_t take = unframed < bd->remaining ? unframed : (size_t)bd->remaining;
        bd->ready += take;
        bd->remaining -= take;
        if (bd->remaining == 0)
            bd->done = true;
        return 0;
    }
    case BODY_CHUNKED:
        while (unframed && !bd->done) {
            size_t used = 0, dlen = 0;
            const char *data, *at = buf_rpos(b) + bd->ready + bd->dead;
            /* Keeping trailers: framing goes a byte at a time, so trailer bytes are told apart. */
            enum h1_chunk_phase ph = bd->trailers ? h1_chunked_phase(&bd->chunk) : H1_PHASE_DATA;
            int r = h1_chunked_feed(&bd->chunk, at, ph == H1_PHASE_DATA ? unframed : 1, &used, &data, &dlen);
            if (r == H1_CHUNK_BAD)
                return -1;
            if (ph == H1_PHASE_TRAILERS && used)
                buf_append(bd->trailers, at, used); /* bounded by the decoder's trailer limit */
            unframed -= used;
            if (!bd->dechunk) {
                bd->ready += used; /* passed through as it came, framing and all */
            } else {
                /* Keep only the payload: slide it down over the framing already seen. */
                if (r == H1_CHUNK_DATA) {
                    memmove(buf_rpos(b) + bd->ready, data, dlen);
                    bd->ready += dlen;
                    used -= dlen;
                }
                bd->dead += used;
            }
            if (r == H1_CHUNK_DONE)
                bd->done = true;
            else if (r == H1_CHUNK_NEED_MORE && used == 0)
                break;
        }
        return 0;
    case BODY_UNTIL_CLOSE:
    case BODY_TUNNEL:
        bd->ready += unframed;
        return 0;
    }
    return 0;
}

/* After bytes were forwarded: reclaim the body area once it is empty. */
static void body_consumed(struct body *bd, struct buf *b, size_t n)
{
    b->head += n;
    bd->ready -= n;
    if (bd->ready == 0) {
        b->head += bd->dead;
        bd->dead = 0;
    }
    if (buf_len(b) == 0)
        b->head = b->tail = bd->base;
}

/* --- request direction: downstream → upstream --- */

static bool pump_request(struct hconn *d)
{
    struct stream *s = &d->s;
    struct uconn *u = s->u;
    bool progress = false;
    if (!s->rqb.done || s->rqb.kind == BODY_TUNNEL) {
        if (read_downstream(d, s->rqb.base))
            progress = true;
    }
    if (frame_body(&s->rqb, d->in) < 0) {
        hstat(d, HS_DOWNSTREAM_CX_PROTOCOL_ERROR, 1);
        reply(d, FWD_R_BAD_CHUNKED_BODY);
        return true;
    }
    if (!u || u->state != UC_OPEN || !u->writable || s->local_reply)
        return progress;
    struct iovec iov[2];
    int n = 0;
    size_t head_len = s->uhead ? buf_len(s->uhead) : 0;
    if (head_len)
        iov[n++] = (struct iovec){buf_rpos(s->uhead), head_len};
    if (s->rqb.ready && (s->tunnel || !s->tunnel_requested))
        iov[n++] = (struct iovec){buf_rpos(d->in), s->rqb.ready};
    if (n) {
        ssize_t wr = transport_sendv(&u->tp, iov, n);
        if (wr < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                u->writable = false;
                io_want_write(d->w->loop, &u->io, true);
            } else {
                upstream_release(u, false);
                s->u = NULL;
                reply(d, FWD_R_TERMINATION);
                return true;
            }
        } else {
            progress = true;
            stats_add(s->wc->c->stats, d->w->id, CS_UPSTREAM_CX_TX_BYTES_TOTAL, wr);
            size_t from_head = (size_t)wr < head_len ? (size_t)wr : head_len;
            if (head_len) {
                s->uhead->head += from_head;
                if (buf_len(s->uhead) == 0) {
                    buf_put(&d->w->bufs, s->uhead);
                    s->uhead = NULL;
                    s->si.upstream_start_us = clock_now_us();
                }
            }
            size_t body = (size_t)wr - from_head;
            if (body) {
                s->si.bytes_received += body;
                body_consumed(&s->rqb, d->in, body);
            }
            size_t total = 0;
            for (int i = 0; i < n; i++)
                total += iov[i].iov_len;
            if ((size_t)wr < total) {
                u->writable = false;
                io_want_write(d->w->loop, &u->io, true);
            }
        }
    }
    if (!s->request_complete && !s->uhead && s->rqb.done && s->rqb.ready == 0 && s->rqb.kind != BODY_TUNNEL) {
        s->request_complete = true;
        s->si.request_end_us = clock_now_us();
        progress = true;
    }
    return progress;
}

/* --- response direction: upstream → downstream --- */

static bool is_head_request(const struct stream *s)
{
    return s->rq.method.n == 4 && memcmp(s->rq.method.p, "HEAD", 4) == 0;
}

/* Builds the downstream response head from the upstream's into d->out. */
static int build_downstream_head(struct hconn *d)
{
    struct stream *s = &d->s;
    struct buf *o = out_buf(d);
    if (!o)
        return -1;
    if (fwd_write_response_head(o, d->hcm, s->route, s->cluster_weight, &s->rs, &s->si, s->tunnel, s->rsb.dechunk) < 0)
        return -1;
    if (s->tunnel) {
        if (put_cstr(o, "connection: upgrade\r\n"))
            return -1;
    } else if (s->close_after || d->draining || !s->rq.keep_alive) {
        if (put_cstr(o, "connection: close\r\n"))
            return -1;
    } else if (s->rq.minor == 0) {
        if (put_cstr(o, "connection: keep-alive\r\n"))
            return -1;
    }
    return put_str(o, "\r\n", 2);
}

/* Parses the upstream response head. Returns true on progress. */
static bool handle_response_head(struct hconn *d)
{
    struct stream *s = &d->s;
    struct uconn *u = s->u;
    for (;;) {
        s->rs.headers = d->rs_headers;
        int r = h1_parse_response(buf_rpos(u->in), buf_len(u->in), &d->lim, &s->rs);
        int fail = fwd_h1_head_failure(r, buf_room(u->in) == 0 && u->in->head == 0, u->peer_closed);
        if (fail >= 0) {
            reply(d, (enum fwd_reply_kind)fail);
            return true;
        }
        if (r == H1_INCOMPLETE)
            return false;
        if (s->rs.status >= 100 && s->rs.status < 200 && s->rs.status != 101) {
            /* Interim responses: our own 100 Continue was already sent; drop theirs. */
            u->in->head += (size_t)r;
            buf_compact_to(u->in, 0);
            continue;
        }
        s->rs_head_done = true;
        s->si.upstream_headers_us = clock_now_us();
        s->si.rs = &s->rs;
        s->si.status = s->rs.status;
        u->in->head = (size_t)r;
        s->rsb.base = (size_t)r;
        if (s->rs.status == 101 && s->tunnel_requested) {
            s->tunnel = true;
            s->rsb.kind = BODY_TUNNEL;
            s->rqb.kind = BODY_TUNNEL;
            s->rqb.done = false;
            s->rqb.ready = buf_len(d->in);
            timer_stop(d->w->loop, &s->timer);
            hstat(d, HS_DOWNSTREAM_CX_UPGRADES_TOTAL, 1);
        } else {
            switch (h1_response_body_kind(&s->rs, is_head_request(s), false)) {
            case H1_BODY_NONE: s->rsb.kind = BODY_NONE; s->rsb.done = true; break;
            case H1_BODY_LENGTH: s->rsb.kind = BODY_LENGTH; s->rsb.remaining = (uint64_t)s->rs.content_length; break;
            case H1_BODY_CHUNKED:
                s->rsb.kind = BODY_CHUNKED;
                h1_chunked_init(&s->rsb.chunk, d->lim.max_head_bytes);
                if (s->rq.minor == 0) {
                    /* HTTP/1.0 has no chunked coding: send the payload and frame it by closing. */
                    s->rsb.dechunk = true;
                    s->close_after = true;
                }
                break;
            case H1_BODY_UNTIL_CLOSE: s->rsb.kind = BODY_UNTIL_CLOSE; s->close_after = true; break;
            }
            if (s->rsb.kind == BODY_LENGTH && s->rsb.remaining == 0)
                s->rsb.done = true;
        }
        if (build_downstream_head(d) < 0) {
            reply(d, FWD_R_RESPONSE_HEADERS_TOO_LARGE);
            return true;
        }
        s->rs_head_sent = true;
        return true;
    }
}

static bool pump_response(struct hconn *d)
{
    struct stream *s = &d->s;
    struct uconn *u = s->u;
    bool progress = false;
    if (u && u->state == UC_OPEN) {
        if (u->in && buf_room(u->in) == 0 && s->rs_head_done && u->in->head > s->rsb.base)
            buf_compact_to(u->in, s->rsb.base);
        long r = upstream_read(u);
        if (r > 0)
            progress = true;
        if (!s->rs_head_done && u->in && (r > 0 || u->peer_closed || buf_len(u->in))) {
            if (handle_response_head(d))
                progress = true;
            if (!s->rs_head_done)
                return progress;
            u = s->u;
        }
        if (u && s->rs_head_done && frame_body(&s->rsb, u->in) < 0) {
            s->si.flags |= 1u << RF_UPSTREAM_PROTOCOL_ERROR;
            s->close_after = true;
            s->rsb.done = true;
            s->rsb.ready = 0;
        }
        if (u && u->peer_closed && s->rsb.ready == 0 && !s->rsb.done) {
            if (s->rsb.kind == BODY_UNTIL_CLOSE || s->rsb.kind == BODY_TUNNEL) {
                s->rsb.done = true;
            } else {
                s->si.flags |= 1u << RF_UPSTREAM_CONNECTION_TERMINATION;
                s->close_after = true;
                s->rsb.done = true;
            }
            progress = true;
        }
    }
    const char *body = NULL;
    size_t body_len = 0;
    if (u && u->in && s->rsb.ready) {
        body = buf_rpos(u->in);
        body_len = s->rsb.ready;
    }
    long w = write_downstream(d, body, body_len);
    if (w < 0) {
        d->peer_closed = true;
        return true;
    }
    if (w > 0) {
        progress = true;
        s->si.bytes_sent += (uint64_t)w;
        body_consumed(&s->rsb, u->in, (size_t)w);
    }
    return progress;
}

static bool response_complete(const struct hconn *d)
{
    const struct stream *s = &d->s;
    return s->rs_head_sent && s->rsb.done && s->rsb.ready == 0 && !d->out;
}

/* --- HTTP/1.1 downstream ⇄ HTTP/2 upstream: the exchange goes through the router --- */

/* Used when a request routes to a cluster that speaks HTTP/2: the HTTP/1.1 head stays in
 * place in d->in (the hstream's request view points into it), the body is de-chunked into
 * the hstream's body buffer, and the response comes back as slices that are written here as
 * HTTP/1.1 (chunked when it has no length, with the HTTP/2 trailers as chunked trailers).
 * This path copies bodies; the HTTP/1.1 → HTTP/1.1 path above never takes it. */

static void bridge_wake(struct hstream *hs)
{
    struct hconn *d = hs->codec;
    if (d->in_bridge) {
        d->bridge_rerun = true;
        return;
    }
    hconn_run(d);
}

static void bridge_consumed(struct hstream *hs, size_t n)
{
    (void)hs;
    (void)n; /* backpressure is the body buffer's room */
}

static const struct hstream_ops bridge_ops = {bridge_wake, bridge_consumed};

static void bridge_start(struct hconn *d, const struct fwd_decision *fd)
{
    struct stream *s = &d->s;
    if (!d->hs && !(d->hs = calloc(1, sizeof *d->hs))) { /* once per connection */
        error_reply(d, 503, 0, "out_of_memory", NULL);
        return;
    }
    struct hstream *hs = d->hs;
    memset(hs, 0, sizeof *hs);
    hs->ops = &bridge_ops;
    hs->codec = d;
    hs->w = d->w;
    hs->hcm = d->hcm;
    hs->peer = &d->peer;
    hs->local = &d->local;
    hs->tp = &d->tp;
    hs->in_use = true;
    hs->protocol = s->si.protocol;
    hs->rq = s->rq;
    hs->rq.content_length = s->rq.chunked ? -1 : s->rq.content_length;
    hs->rq_headers_done = true;
    if (s->rqb.kind == BODY_CHUNKED) {
        s->rqb.dechunk = true;
        s->rqb.trailers = buf_get(&d->w->bufs); /* NULL: trailers are dropped */
    }
    hs->rq_end = s->rqb.done;
    s->bridge = true;
    router_start_routed(hs, fd); /* routed once: the decision that chose this path */
}

static int bridge_head(struct hconn *d)
{
    struct stream *s = &d->s;
    struct hstream *hs = d->hs;
    struct buf *o = out_buf(d);
    if (!o)
        return -1;
    int code = hs->rs.status;
    char line[64];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", code, http_reason(code));
    if (put_str(o, line, (size_t)n))
        return -1;
    bool has_len = false;
    for (size_t i = 0; i < hs->rs.nheaders; i++) {
        const struct h1_header *h = &hs->rs.headers[i];
        if (h1_str_eq_ci(h->name, "content-length"))
            has_len = true;
        if (put_str(o, h->name.p, h->name.n) || put_str(o, ": ", 2) || put_str(o, h->value.p, h->value.n) ||
            put_str(o, "\r\n", 2))
            return -1;
    }
    bool bodyless = is_head_request(s) || code == 204 || code == 304 || (code >= 100 && code < 200);
    if (!has_len && !bodyless) {
        if (s->rq.minor == 1) {
            s->bridge_chunked = true;
            if (put_cstr(o, "transfer-encoding: chunked\r\n"))
                return -1;
        } else {
            s->close_after = true; /* HTTP/1.0: the end of the body is the end of the connection */
        }
    }
    if ((s->close_after || d->draining || !s->rq.keep_alive) && put_cstr(o, "connection: close\r\n"))
        return -1;
    else if (!s->close_after && !d->draining && s->rq.keep_alive && s->rq.minor == 0 &&
             put_cstr(o, "connection: keep-alive\r\n"))
        return -1;
    return put_str(o, "\r\n", 2);
}

/* The chunked request's trailer section becomes the hstream's request trailers (an HTTP/2
 * upstream gets them as a trailing HEADERS frame): slices after the text in the same buffer. */
static void bridge_request_trailers(struct hconn *d)
{
    struct buf *b = d->s.rqb.trailers;
    if (!b || buf_len(b) <= 2) /* nothing but the final CRLF */
        return;
    size_t at = (b->tail + 15) & ~(size_t)15;
    if (at + HSTREAM_MAX_TRAILERS * sizeof(struct h1_header) > BUF_SIZE)
        return;
    d->hs->rq_trailers = (struct h1_header *)(b->data + at);
    d->hs->n_rq_trailers = h1_trailers_parse(b->data, b->tail, d->hs->rq_trailers, HSTREAM_MAX_TRAILERS);
}

static bool bridge_pump(struct hconn *d)
{
    struct stream *s = &d->s;
    struct hstream *hs = d->hs;
    bool progress = false;
    d->in_bridge = true;
    do {
        d->bridge_rerun = false;
        /* Request body: de-chunked payload into the hstream's buffer, as room allows. */
        if (!s->rqb.done && read_downstream(d, s->rqb.base))
            progress = true;
        if (d->in && frame_body(&s->rqb, d->in) < 0 && !hs->rs_head_taken) {
            router_reply(hs, FWD_R_BAD_CHUNKED_BODY);
            s->close_after = true;
        }
        if (s->rqb.ready && !hs->local_reply) {
            if (!hs->rqbody)
                hs->rqbody = buf_get(&d->w->bufs);
            if (hs->rqbody) {
                if (buf_len(hs->rqbody) == 0)
                    hs->rqbody->head = hs->rqbody->tail = 0;
                size_t take = s->rqb.ready < buf_room(hs->rqbody) ? s->rqb.ready : buf_room(hs->rqbody);
                if (take) {
                    buf_append(hs->rqbody, buf_rpos(d->in), take);
                    body_consumed(&s->rqb, d->in, take);
                    progress = true;
                }
            }
        } else if (s->rqb.ready && hs->local_reply) {
            body_consumed(&s->rqb, d->in, s->rqb.ready);
        }
        if (s->rqb.done && s->rqb.ready == 0 && !hs->rq_end) {
            bridge_request_trailers(d);
            hs->rq_end = true;
            progress = true;
        }
        if (hs->rq_end && (!hs->rqbody || buf_len(hs->rqbody) == 0))
            s->request_complete = true;
        if (router_pump(hs))
            progress = true;
        /* Response. */
        if (hs->rs_head && !hs->rs_head_taken) {
            hs->rs_head_taken = true;
            s->rs_head_sent = true;
            if (bridge_head(d) < 0) {
                s->close_after = true;
                s->bridge_done = true;
            }
            progress = true;
        }
        if (hs->rs_head_taken && !s->bridge_done) {
            struct buf *o = out_buf(d);
            const char *p;
            size_t n;
            router_response_body(hs, &p, &n);
            if (o && n && !is_head_request(s)) {
                size_t room = buf_room(o);
                size_t over = s->bridge_chunked ? 12 : 0;
                if (room > over) {
                    size_t take = n < room - over ? n : room - over;
                    if (s->bridge_chunked) {
                        char hx[12];
                        buf_append(o, hx, (size_t)snprintf(hx, sizeof hx, "%zx\r\n", take));
                    }
                    buf_append(o, p, take);
                    if (s->bridge_chunked)
                        buf_append(o, "\r\n", 2);
                    router_response_consumed(hs, take);
                    progress = true;
                }
            } else if (n) {
                router_response_consumed(hs, n);
            }
            router_response_body(hs, &p, &n);
            if (hs->reset) {
                s->close_after = true; /* the only way to say "broken" to an HTTP/1.1 client */
                s->bridge_done = true;
            } else if (hs->rs_end && n == 0 && o) {
                if (s->bridge_chunked) {
                    put_str(o, "0\r\n", 3);
                    for (size_t i = 0; i < hs->n_rs_trailers; i++) {
                        const struct h1_header *t = &hs->rs_trailers[i];
                        put_str(o, t->name.p, t->name.n);
                        put_str(o, ": ", 2);
                        put_str(o, t->value.p, t->value.n);
                        put_str(o, "\r\n", 2);
                    }
                    put_str(o, "\r\n", 2);
                }
                s->bridge_done = true;
                progress = true;
            }
        }
        /* A write that made room in a full output buffer is progress: the body waiting
         * behind it (up to an HTTP/2 upstream's window) moves on in the next round. */
        size_t out_before = d->out ? buf_len(d->out) : 0;
        if (write_downstream(d, NULL, 0) < 0)
            d->peer_closed = true;
        else if ((d->out ? buf_len(d->out) : 0) < out_before)
            progress = true;
    } while (d->bridge_rerun);
    d->in_bridge = false;
    if (s->bridge_done) {
        s->rsb.done = true;
        s->rsb.ready = 0;
        if (!hs->rq_end)
            s->close_after = true;
    }
    return progress;
}

/* --- the driver --- */

/* xDS moved the worker to a new snapshot: when this connection's Listener resource is the same
 * (an RDS-only change), its next request (HTTP/1.1, plaintext or TLS) or its next streams
 * (HTTP/2) use the new routes, as in Envoy. HTTP/2 streams in flight keep the routes and
 * clusters they started with: each holds the old snapshot until it ends (h2c_rebind). A TLS
 * connection's SSL holds its own reference on its SSL_CTX, and its handshake is over. */
static void follow_snapshot(struct hconn *d)
{
    struct snapshot *old = snapshot_ref(d->snap);
    if (worker_rebind(d->w, &d->snap, &d->lc, &d->hcm, &d->link) && d->h2)
        h2c_rebind(d->h2, d->hcm, old);
    snapshot_unref(old);
}

static bool try_start(struct hconn *d)
{
    if (d->draining)
        return false;
    if (__builtin_expect(d->snap != d->w->snap, 0))
        follow_snapshot(d);
    read_downstream(d, 0);
    if (!d->in || buf_len(d->in) == 0)
        return false;
    struct stream *s = &d->s;
    memset(s, 0, offsetof(struct stream, timer));
    memset(&s->si, 0, sizeof s->si);
    s->si.grpc_status = -1;
    s->rq.headers = d->rq_headers;
    int r = h1_parse_request(buf_rpos(d->in), buf_len(d->in), &d->lim, &s->rq);
    if (r == H1_INCOMPLETE) {
        if (buf_room(d->in) > 0 && d->in->tail < d->lim.max_head_bytes + 1)
            return false;
        r = H1_TOO_LARGE;
    }
    if (r < 0) {
        /* A broken or oversized head: answer and close (the rest is not trustworthy). */
        s->active = true;
        s->si.start_us = clock_now_us();
        s->si.protocol = "HTTP/1.1";
        hstat(d, HS_DOWNSTREAM_RQ_TOTAL, 1);
        hstat(d, HS_DOWNSTREAM_RQ_ACTIVE, 1);
        int status = 400;
        const char *details = "http1.codec_error";
        if (r == H1_TOO_LARGE) {
            status = 431;
            details = "http1.headers_too_large";
            hstat(d, HS_DOWNSTREAM_RQ_TOO_LARGE, 1);
        } else if (r == H1_BAD_VERSION) {
            status = 505;
        } else if (r == H1_NOT_IMPLEMENTED) {
            status = 501;
        }
        hstat(d, HS_DOWNSTREAM_CX_PROTOCOL_ERROR, 1);
        log_debug("http: rejecting request: %s", s->rq.error ? s->rq.error : "bad request");
        error_reply(d, status, 1u << RF_DOWNSTREAM_PROTOCOL_ERROR, details, NULL);
        s->close_after = true;
        return true;
    }
    start_stream(d, r);
    return true;
}

static void hconn_run(struct hconn *d)
{
    if (d->closed)
        return;
    if (__builtin_expect(d->codec != HTTP_CODEC_H1, 0)) {
        if (d->codec == HTTP_CODEC_NEED_MORE) {
            read_downstream(d, 0);
            if (!choose_codec(d)) {
                if (d->peer_closed)
                    hconn_close(d);
                return;
            }
        }
        if (d->h2) {
            if (__builtin_expect(d->snap != d->w->snap, 0))
                follow_snapshot(d);
            h2c_run(d->h2);
            return;
        }
    }
    struct stream *s = &d->s;
    for (int rounds = 0; rounds < 64; rounds++) {
        bool progress = false;
        if (!s->active) {
            if (d->peer_closed || d->draining)
                break;
            progress = try_start(d);
            if (!s->active)
                break;
        }
        if (__builtin_expect(s->bridge, 0)) {
            progress |= bridge_pump(d);
        } else {
            progress |= pump_request(d);
            progress |= pump_response(d);
        }
        if (d->peer_closed && s->active && !response_complete(d) && !s->tunnel) {
            /* The client left before its response was complete. */
            s->si.flags |= 1u << RF_DOWNSTREAM_CONNECTION_TERMINATION;
            hstat(d, HS_DOWNSTREAM_RQ_RX_RESET, 1);
            stream_reset(d);
            break;
        }
        if (s->tunnel && (d->peer_closed || (s->rsb.done && s->rsb.ready == 0 && !d->out))) {
            stream_finish(d, false);
            break;
        }
        if (s->active && response_complete(d) && (s->request_complete || s->close_after || s->local_reply)) {
            bool reusable = s->request_complete && !s->local_reply && s->rsb.kind != BODY_UNTIL_CLOSE &&
                            s->rs.keep_alive;
            stream_finish(d, reusable);
            progress = true;
        }
        if (!progress)
            break;
    }
    if ((d->draining || d->peer_closed) && !s->active && !d->out)
        hconn_close(d);
}

static void on_io(struct loop *l, struct io *io, uint32_t events)
{
    struct hconn *d = io->data;
    events = transport_events(&d->tp, events);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        d->readable = true;
    if (events & EPOLLOUT) {
        d->writable = true;
        io_want_write(l, io, false);
    }
    /* A client that shuts down its sending side is gone for HTTP/1.1 purposes (as in Envoy,
     * which does not support downstream half-close on the HTTP connection manager). */
    if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
        d->peer_closed = true;
    hconn_run(d);
}

static void on_idle_timeout(struct loop *l, struct timer *t)
{
    struct hconn *d = t->data;
    if (d->s.active)
        return;
    uint64_t since;
    if (d->h2 && (h2c_busy(d->h2, &since) || loop_now_ms(l) - since < d->hcm->idle_timeout_ms)) {
        /* Streams are open, or the last one closed recently: look again later. */
        uint64_t left = h2c_busy(d->h2, &since) ? d->hcm->idle_timeout_ms : d->hcm->idle_timeout_ms - (loop_now_ms(l) - since);
        timer_start(l, &d->idle_timer, left);
        return;
    }
    hstat(d, HS_DOWNSTREAM_CX_IDLE_TIMEOUT, 1);
    hconn_close(d);
}

static void drain_conn(struct conn_link *link, bool force)
{
    struct hconn *d = (struct hconn *)((char *)link - offsetof(struct hconn, link));
    d->draining = true;
    hstat(d, HS_DOWNSTREAM_CX_DRAIN_CLOSE, 1);
    if (d->h2 && !force) {
        h2c_drain(d->h2);
        h2c_run(d->h2);
        return;
    }
    if (!d->s.active || force)
        hconn_close(d);
    else
        d->s.close_after = true;
}

/* max_connection_duration: the drain sequence (Connection: close on HTTP/1.1, GOAWAY on
 * HTTP/2, an idle connection closes at once); drain_timeout later whatever is left closes. */
static void on_max_duration(struct loop *l, struct timer *t)
{
    struct hconn *d = t->data;
    if (d->dur_draining) {
        drain_conn(&d->link, true);
        return;
    }
    d->dur_draining = true;
    hstat(d, HS_DOWNSTREAM_CX_MAX_DURATION_REACHED, 1);
    timer_start(l, &d->dur_timer, d->hcm->drain_timeout_ms);
    drain_conn(&d->link, false);
}

void http_conn_start(struct worker *w, struct listener_config *lc, struct filter_chain *fc, struct transport *tp,
                     const struct sockaddr_storage *peer, const struct sockaddr_storage *local)
{
    struct hcm_config *hcm = fc->hcm;
    size_t nh = hcm->max_headers_count;
    struct hconn *d = calloc(1, sizeof *d + 2 * nh * sizeof(struct h1_header));
    if (!d) {
        transport_close(tp);
        return;
    }
    d->tp = *tp;
    /* The connection's own XFCC element is the same for every request on it: built once here. */
    if (d->tp.peer_cert && (hcm->forward_client_cert == XFCC_APPEND_FORWARD || hcm->forward_client_cert == XFCC_SANITIZE_SET))
        d->tp.xfcc = xfcc_element(&d->tp, hcm->xfcc_details);
    d->w = w;
    d->snap = snapshot_ref(w->snap);
    d->lc = lc;
    d->hcm = hcm;
    d->peer = *peer;
    d->local = *local;
    d->lim.max_head_bytes = hcm->max_request_headers_bytes;
    d->lim.max_headers = nh;
    d->rs_headers = d->rq_headers + nh;
    d->writable = true;
    d->readable = true;
    timer_init(&d->idle_timer, on_idle_timeout, d);
    timer_init(&d->dur_timer, on_max_duration, d);
    if (hcm->max_connection_duration_ms)
        timer_start(w->loop, &d->dur_timer, hcm->max_connection_duration_ms);
    timer_init(&d->s.timer, on_route_timeout, d);
    timer_init(&d->s.hf_timer, on_fault_delay, d);
    d->link.drain = drain_conn;
    d->link.lc = lc;
    conn_link_add(&w->conns, &d->link);
    w->n_conns++;
    hstat(d, HS_DOWNSTREAM_CX_TOTAL, 1);
    hstat(d, HS_DOWNSTREAM_CX_ACTIVE, 1);
    timer_start(w->loop, &d->idle_timer, hcm->idle_timeout_ms);
    size_t alpn_len;
    if (hcm->codec_type != 0 || transport_alpn(&d->tp, &alpn_len))
        choose_codec(d); /* decided without waiting for bytes: configured, or by ALPN */
    if (io_start(w->loop, &d->io, d->tp.fd, EPOLLIN, on_io, d) < 0) {
        hconn_close(d);
        return;
    }
    transport_attach(&d->tp, w->loop, &d->io);
    hconn_run(d);
}
