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
#include "proxy/access_log.h"
#include "proxy/codec_h2.h"
#include "proxy/config.h"
#include "proxy/http_codec.h"
#include "proxy/hstream.h"
#include "proxy/http_headers.h"
#include "proxy/http_util.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/route.h"
#include "proxy/stream_info.h"
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
    struct timer timer;            /* route timeout */
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
static void bridge_start(struct hconn *d);

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
                        const char *body, size_t body_len, const char *location, bool close_conn)
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
    char date[40];
    http_date_now(date, sizeof date);
    int n = snprintf(buf_wpos(o), buf_room(o),
                     "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\ndate: %s\r\nserver: %s\r\n", status,
                     http_reason(status), body_len, date, d->hcm->server_name);
    o->tail += (size_t)n;
    if (body_len && body)
        buf_append(o, "content-type: text/plain\r\n", 26);
    if (location) {
        buf_append(o, "location: ", 10);
        buf_append(o, location, strlen(location));
        buf_append(o, "\r\n", 2);
    }
    if (s->close_after)
        buf_append(o, "connection: close\r\n", 19);
    buf_append(o, "\r\n", 2);
    if (body_len && body && !head_only) {
        buf_append(o, body, body_len);
        s->si.bytes_sent = body_len;
    }
    s->si.status = status;
    s->si.flags |= flag;
    s->si.local_reply_details = details;
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
    local_reply(d, status, flag, details, body, body ? strlen(body) : 0, NULL, false);
}

/* --- stream lifecycle --- */

static void release_host(struct stream *s)
{
    if (s->host_counted) {
        s->wc->pools[s->host].active_rq--;
        s->wc->active_rq[s->host]--;
        s->host_counted = false;
    }
}

static void count_response(struct hconn *d, int status)
{
    static const size_t classes[] = {HS_DOWNSTREAM_RQ_1XX, HS_DOWNSTREAM_RQ_2XX, HS_DOWNSTREAM_RQ_3XX,
                                     HS_DOWNSTREAM_RQ_4XX, HS_DOWNSTREAM_RQ_5XX};
    if (status >= 100 && status < 600)
        hstat(d, classes[status / 100 - 1], 1);
}

/* Ends the current exchange: access log, stats, upstream back to its pool. */
static void stream_finish(struct hconn *d, bool upstream_reusable)
{
    struct stream *s = &d->s;
    struct loop *l = d->w->loop;
    timer_stop(l, &s->timer);
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
    count_response(d, s->si.status);
    hstat(d, HS_DOWNSTREAM_RQ_ACTIVE, -1);
    hstat(d, HS_DOWNSTREAM_RQ_COMPLETED, 1);
    if (s->wc) {
        struct stat_block *cs = s->wc->c->stats;
        stats_add(cs, d->w->id, CS_UPSTREAM_RQ_ACTIVE, -1);
        if (s->rs_head_done) {
            static const size_t classes[] = {CS_UPSTREAM_RQ_1XX, CS_UPSTREAM_RQ_2XX, CS_UPSTREAM_RQ_3XX,
                                             CS_UPSTREAM_RQ_4XX, CS_UPSTREAM_RQ_5XX};
            stats_inc(cs, d->w->id, classes[s->rs.status / 100 - 1]);
            stats_code(cs, d->w->id, s->rs.status);
            stats_inc(cs, d->w->id, CS_UPSTREAM_RQ_COMPLETED);
        }
    }
    for (size_t i = 0; i < d->hcm->n_access_logs; i++)
        access_log_write(d->hcm->access_logs[i], &s->si, d->w->log_buf);
    if (s->u) {
        upstream_release(s->u, upstream_reusable);
        s->u = NULL;
    }
    release_host(s);
    if (s->wc) {
        wcluster_put(s->wc);
        s->wc = NULL;
    }
done:
    buf_put(&d->w->bufs, s->uhead);
    s->uhead = NULL;
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
    error_reply(d, 504, 1u << RF_UPSTREAM_REQUEST_TIMEOUT, "upstream_response_timeout",
                "upstream request timeout");
    hconn_run(d);
}

static void on_upstream_event(struct uconn *u, enum uconn_event ev, void *owner)
{
    struct hconn *d = owner;
    struct stream *s = &d->s;
    if (ev == UE_CONNECT_FAILED || ev == UE_CONNECT_TIMEOUT) {
        s->u = NULL;
        s->si.upstream_transport_failure_reason = u->tls_error;
        char body[160];
        snprintf(body, sizeof body,
                 "upstream connect error or disconnect/reset before headers. reset reason: %s",
                 ev == UE_CONNECT_TIMEOUT ? "connection timeout" : "connection failure");
        local_reply(d, 503, 1u << RF_UPSTREAM_CONNECTION_FAILURE, "upstream_reset_before_response_started",
                    body, strlen(body), NULL, false);
    }
    (void)u;
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
    const struct hcm_config *hcm = d->hcm;
    struct buf *b = s->uhead = buf_get(&d->w->bufs);
    if (!b)
        return -1;
    if (put_str(b, rq->method.p, rq->method.n) || put_str(b, " ", 1))
        return -1;
    int plen = route_rewrite_path(s->route, rr, d->w->scratch, buf_wpos(b), buf_room(b));
    if (plen < 0)
        return -1;
    b->tail += (size_t)plen;
    if (put_cstr(b, " HTTP/1.1\r\n"))
        return -1;
    /* Host: rewritten, or as received. */
    char hostbuf[512];
    bool auto_host = false;
    int hl = route_host_rewrite(s->route, s->cluster_weight, rr, d->w->scratch, hostbuf, sizeof hostbuf, &auto_host);
    if (hl > 0)
        put_header(b, "host", hostbuf, (size_t)hl);
    else if (auto_host)
        put_header(b, "host", host->hostname ? host->hostname : host->addr_str,
                   strlen(host->hostname ? host->hostname : host->addr_str));
    else
        put_header(b, "host", rq->host.p, rq->host.n);
    const struct header_mutation *lv[ROUTE_MUTATION_LEVELS];
    size_t nlv = route_request_mutations(s->route, s->cluster_weight, lv);
    bool have_xfp = false;
    for (size_t i = 0; i < rq->nheaders; i++) {
        const struct h1_header *h = &rq->headers[i];
        struct h1_str n = h->name;
        if (h1_str_eq_ci(n, "host") || http_is_hop_by_hop(n) || http_in_connection_tokens(rq->headers, rq->nheaders, n))
            continue;
        if (h1_str_eq_ci(n, "expect") && !hcm->proxy_100_continue)
            continue;
        if (h1_str_eq_ci(n, "x-request-id") || h1_str_eq_ci(n, "x-forwarded-for"))
            continue; /* written below */
        if (h1_str_eq_ci(n, "x-forwarded-proto")) {
            if (hcm->use_remote_address)
                continue; /* the edge proxy sets it from the real connection */
            have_xfp = true;
        }
        if (nlv && http_mutation_drops(lv, nlv, n))
            continue;
        if (put_str(b, n.p, n.n) || put_str(b, ": ", 2) || put_str(b, h->value.p, h->value.n) ||
            put_str(b, "\r\n", 2))
            return -1;
    }
    if (s->si.forwarded_for && put_header(b, "x-forwarded-for", s->si.forwarded_for, strlen(s->si.forwarded_for)))
        return -1;
    if (!have_xfp && put_header(b, "x-forwarded-proto", transport_is_tls(&d->tp) ? "https" : "http",
                                transport_is_tls(&d->tp) ? 5 : 4))
        return -1;
    if (s->si.request_id && put_header(b, "x-request-id", s->si.request_id, strlen(s->si.request_id)))
        return -1;
    uint64_t timeout = route_timeout_ms(s->route);
    if (timeout) {
        char t[24];
        if (put_header(b, "x-envoy-expected-rq-timeout-ms", t, u64_to_dec(timeout, t)))
            return -1;
    }
    if (nlv && http_mutation_add(b, lv, nlv, rq->headers, rq->nheaders) < 0)
        return -1;
    if (s->tunnel_requested &&
        (put_cstr(b, "connection: upgrade\r\n") || put_header(b, "upgrade", rq->upgrade_proto.p, rq->upgrade_proto.n)))
        return -1;
    return put_str(b, "\r\n", 2);
}

/* --- starting an exchange: route, pick a host, connect --- */

static void set_forwarding_headers(struct hconn *d)
{
    struct stream *s = &d->s;
    const struct h1_request *rq = &s->rq;
    struct h1_str xff = {0}, rid = {0};
    for (size_t i = 0; i < rq->nheaders; i++) {
        if (h1_str_eq_ci(rq->headers[i].name, "x-forwarded-for"))
            xff = rq->headers[i].value;
        else if (h1_str_eq_ci(rq->headers[i].name, "x-request-id"))
            rid = rq->headers[i].value;
    }
    /* Envoy appends the peer address to x-forwarded-for only with use_remote_address. */
    if (d->hcm->use_remote_address && !d->hcm->skip_xff_append) {
        char ip[INET6_ADDRSTRLEN];
        http_peer_ip(&d->peer, ip, sizeof ip);
        if (xff.n)
            snprintf(s->xff, sizeof s->xff, "%.*s,%s", (int)xff.n, xff.p, ip);
        else
            snprintf(s->xff, sizeof s->xff, "%s", ip);
        s->si.forwarded_for = s->xff;
    } else if (xff.n) {
        snprintf(s->xff, sizeof s->xff, "%.*s", (int)xff.n, xff.p);
        s->si.forwarded_for = s->xff;
    }
    /* x-request-id: kept when present (unless an edge proxy must not trust it), else generated. */
    bool keep = rid.n && rid.n < sizeof s->request_id &&
                (!d->hcm->use_remote_address || d->hcm->preserve_external_request_id);
    if (keep) {
        memcpy(s->request_id, rid.p, rid.n);
        s->request_id[rid.n] = '\0';
        s->si.request_id = s->request_id;
    } else if (d->hcm->generate_request_id) {
        uuid4_format(worker_random(d->w), worker_random(d->w), s->request_id);
        s->si.request_id = s->request_id;
    } else if (rid.n && rid.n < sizeof s->request_id) {
        memcpy(s->request_id, rid.p, rid.n);
        s->request_id[rid.n] = '\0';
        s->si.request_id = s->request_id;
    }
}

static void start_stream(struct hconn *d, int head_len)
{
    struct stream *s = &d->s;
    struct worker *w = d->w;
    timer_stop(w->loop, &d->idle_timer);
    s->active = true;
    s->head_len = (size_t)head_len;
    s->si.start_us = clock_now_us();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->si.start_wall_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    s->si.protocol = s->rq.minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    s->si.rq = &s->rq;
    s->si.downstream_remote = (const struct sockaddr *)&d->peer;
    s->si.downstream_local = (const struct sockaddr *)&d->local;
    s->si.downstream_tp = &d->tp;
    hstat(d, HS_DOWNSTREAM_RQ_TOTAL, 1);
    hstat(d, HS_DOWNSTREAM_RQ_HTTP1_TOTAL, 1);
    hstat(d, HS_DOWNSTREAM_RQ_ACTIVE, 1);

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
    set_forwarding_headers(d);

    if (s->rq.upgrade || s->rq.connect) {
        bool websocket = s->rq.upgrade && h1_str_eq_ci(s->rq.upgrade_proto, "websocket");
        if (!websocket || !d->hcm->websocket_upgrade) {
            error_reply(d, 403, 0, "upgrade_failed", NULL);
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

    struct route_request rr = {
        .method = s->rq.method, .path = s->rq.path, .authority = s->rq.host,
        .scheme = {"http", 4}, .headers = s->rq.headers, .nheaders = s->rq.nheaders,
        .source = (const struct sockaddr *)&d->peer,
    };
    uint64_t rnd = worker_random(w);
    s->route = route_select(d->hcm->routes, &rr, rnd, w->scratch);
    if (!s->route) {
        hstat(d, HS_NO_ROUTE, 1);
        error_reply(d, 404, 1u << RF_NO_ROUTE_FOUND, "route_not_found", NULL);
        return;
    }
    s->si.route_name = route_name(s->route);
    switch (route_kind(s->route)) {
    case ROUTE_DIRECT: {
        hstat(d, HS_RQ_DIRECT_RESPONSE, 1);
        size_t blen = 0;
        const char *body = NULL;
        int status = 200;
        route_direct_response(s->route, &status, &body, &blen);
        char loc[4096];
        int ds;
        bool with_loc = (status == 201 || (status >= 300 && status < 400)) &&
                        route_redirect(s->route, &rr, w->scratch, loc, sizeof loc, &ds) > 0;
        local_reply(d, status, 0, "direct_response", body, blen, with_loc ? loc : NULL, false);
        return;
    }
    case ROUTE_REDIRECT: {
        hstat(d, HS_RQ_REDIRECT, 1);
        char loc[4096];
        int status = 301;
        if (route_redirect(s->route, &rr, w->scratch, loc, sizeof loc, &status) < 0) {
            error_reply(d, 500, 0, "redirect_too_long", NULL);
            return;
        }
        local_reply(d, status, 0, "via_redirect", NULL, 0, loc, false);
        return;
    }
    default:
        break;
    }
    s->cluster = route_cluster(s->route, rnd);
    s->cluster_weight = route_weight_index(s->route, rnd);
    if (s->cluster < 0) {
        hstat(d, HS_NO_CLUSTER, 1);
        error_reply(d, route_cluster_not_found_status(s->route), 1u << RF_NO_CLUSTER_FOUND,
                    "cluster_not_found", NULL);
        return;
    }
    enum upstream_proto up = d->snap->clusters[s->cluster]->protocol; /* AUTO: ALPN decides (router.c) */
    if (__builtin_expect(up == UPSTREAM_HTTP2 || up == UPSTREAM_AUTO, 0) && !s->tunnel_requested) {
        bridge_start(d);
        return;
    }
    s->wc = worker_cluster(w, s->cluster);
    wcluster_hold(s->wc);
    struct stat_block *cs = s->wc->c->stats;
    s->si.upstream_cluster = s->wc->c->name;
    stats_inc(cs, w->id, CS_UPSTREAM_RQ_TOTAL);
    stats_add(cs, w->id, CS_UPSTREAM_RQ_ACTIVE, 1);
    if (s->wc->c->type == CLUSTER_ORIGINAL_DST) {
        /* The upstream is where the client was going before iptables redirected it. */
        struct host h = {.addr = d->local};
        sockaddr_format(&d->local, s->orig_dst, sizeof s->orig_dst);
        s->si.upstream_host = s->orig_dst;
        if (build_upstream_head(d, &rr, &h) < 0) {
            error_reply(d, 431, 0, "request_headers_too_large", NULL);
            return;
        }
        if (upstream_connect_addr(w, s->wc, &d->local, on_upstream_event, d, &s->u) < 0) {
            s->u = NULL;
            error_reply(d, 503, 1u << RF_UPSTREAM_CONNECTION_FAILURE, "upstream_reset_before_response_started",
                        "upstream connect error or disconnect/reset before headers. reset reason: connection failure");
            return;
        }
    } else {
        uint64_t hash = 0;
        bool has_hash = route_hash(s->route, &rr, &hash);
        int host = s->wc->hs->n ? lb_pick(s->wc->hs->lb, s->wc->lb, has_hash, hash, s->wc->active_rq, NULL) : -1;
        if (host < 0) {
            stats_inc(cs, w->id, CS_UPSTREAM_CX_NONE_HEALTHY);
            error_reply(d, 503, 1u << RF_NO_HEALTHY_UPSTREAM, "no_healthy_upstream", "no healthy upstream");
            return;
        }
        s->host = (uint32_t)host;
        s->wc->pools[host].active_rq++;
        s->wc->active_rq[host]++;
        s->host_counted = true;
        const struct host *h = &s->wc->hs->hosts[host];
        s->si.upstream_host = h->addr_str;
        if (build_upstream_head(d, &rr, h) < 0) {
            error_reply(d, 431, 0, "request_headers_too_large", NULL);
            return;
        }
        if (upstream_acquire(w, s->wc, s->host, on_upstream_event, d, &s->u) < 0) {
            s->u = NULL;
            error_reply(d, 503, 1u << RF_UPSTREAM_CONNECTION_FAILURE, "upstream_reset_before_response_started",
                        "upstream connect error or disconnect/reset before headers. reset reason: connection failure");
            return;
        }
    }
    uint64_t timeout = route_timeout_ms(s->route);
    if (timeout)
        timer_start(w->loop, &s->timer, timeout);
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
            const char *data;
            int r = h1_chunked_feed(&bd->chunk, buf_rpos(b) + bd->ready + bd->dead, unframed, &used, &data,
                                    &dlen);
            if (r == H1_CHUNK_BAD)
                return -1;
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
        error_reply(d, 400, 1u << RF_DOWNSTREAM_PROTOCOL_ERROR, "bad_chunked_body", NULL);
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
                error_reply(d, 503, 1u << RF_UPSTREAM_CONNECTION_TERMINATION,
                            "upstream_reset_before_response_started",
                            "upstream connect error or disconnect/reset before headers. reset reason: connection termination");
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
    const struct h1_response *rs = &s->rs;
    char date[40];
    http_date_now(date, sizeof date);
    char code[4] = {(char)('0' + rs->status / 100), (char)('0' + rs->status / 10 % 10), (char)('0' + rs->status % 10), ' '};
    if (put_str(o, "HTTP/1.1 ", 9) || put_str(o, code, 4) || put_cstr(o, http_reason(rs->status)) || put_str(o, "\r\n", 2))
        return -1;
    bool have_date = false, have_server = false;
    const struct header_mutation *lv[ROUTE_MUTATION_LEVELS];
    size_t nlv = route_response_mutations(s->route, s->cluster_weight, lv);
    for (size_t i = 0; i < rs->nheaders; i++) {
        const struct h1_header *h = &rs->headers[i];
        if (http_is_hop_by_hop(h->name) && !(s->tunnel && h1_str_eq_ci(h->name, "upgrade")))
            continue;
        if (s->rsb.dechunk && h1_str_eq_ci(h->name, "transfer-encoding"))
            continue;
        if (h1_str_eq_ci(h->name, "server")) {
            if (d->hcm->server_header_transformation == 0)
                continue;
            have_server = true;
        }
        if (h1_str_eq_ci(h->name, "date"))
            have_date = true;
        if (nlv && http_mutation_drops(lv, nlv, h->name))
            continue;
        if (put_str(o, h->name.p, h->name.n) || put_str(o, ": ", 2) || put_str(o, h->value.p, h->value.n) ||
            put_str(o, "\r\n", 2))
            return -1;
    }
    if (!have_date && put_header(o, "date", date, strlen(date)))
        return -1;
    if (!have_server && d->hcm->server_header_transformation != 2 &&
        put_header(o, "server", d->hcm->server_name, strlen(d->hcm->server_name)))
        return -1;
    char t[24];
    size_t tn = u64_to_dec((s->si.upstream_headers_us - s->si.upstream_start_us) / 1000u, t);
    if (put_header(o, "x-envoy-upstream-service-time", t, tn))
        return -1;
    if (d->hcm->always_set_request_id_in_response && s->si.request_id &&
        put_header(o, "x-request-id", s->si.request_id, strlen(s->si.request_id)))
        return -1;
    if (nlv && http_mutation_add(o, lv, nlv, rs->headers, rs->nheaders) < 0)
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
        if (r == H1_INCOMPLETE) {
            if (buf_room(u->in) == 0 && u->in->head == 0) {
                error_reply(d, 502, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "upstream_headers_too_large", NULL);
                return true;
            }
            if (u->peer_closed) {
                upstream_release(u, false);
                s->u = NULL;
                error_reply(d, 503, 1u << RF_UPSTREAM_CONNECTION_TERMINATION, "upstream_reset_before_response_started",
                            "upstream connect error or disconnect/reset before headers. reset reason: connection termination");
                return true;
            }
            return false;
        }
        if (r < 0) {
            error_reply(d, 502, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "upstream_protocol_error", NULL);
            return true;
        }
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
            error_reply(d, 502, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "response_headers_too_large", NULL);
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

static void bridge_start(struct hconn *d)
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
    if (s->rqb.kind == BODY_CHUNKED)
        s->rqb.dechunk = true;
    hs->rq_end = s->rqb.done;
    s->bridge = true;
    router_start(hs);
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
            router_local_reply(hs, 400, 1u << RF_DOWNSTREAM_PROTOCOL_ERROR, "bad_chunked_body", NULL);
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
        if (write_downstream(d, NULL, 0) < 0)
            d->peer_closed = true;
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

static bool try_start(struct hconn *d)
{
    if (d->draining)
        return false;
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
    timer_init(&d->s.timer, on_route_timeout, d);
    d->link.drain = drain_conn;
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
