/* The router for codec-neutral streams (struct hstream, see hstream.h): route selection, host
 * choice, the upstream request over HTTP/1.1 (here) or HTTP/2 (upstream_h2.c), the response
 * head rebuilt for the downstream codec, local replies, access logs and stats.
 *
 * Heads cross codecs as HTTP/1.1 text built into a buffer and parsed back into slices with
 * the strict parser (src/net/http1.c): one representation of "a head being built" for every
 * codec pair, with the same header rules (hop-by-hop removal, mutations, forwarding headers)
 * as the HTTP/1.1 fast path in http_conn.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"
#include "common/sock.h"
#include "net/transport.h"
#include "proxy/access_log.h"
#include "proxy/config.h"
#include "proxy/forward.h"
#include "proxy/grpc_headers.h"
#include "proxy/h1_trailers.h"
#include "proxy/hstream.h"
#include "proxy/http_headers.h"
#include "proxy/http_util.h"
#include "proxy/lb.h"
#include "proxy/retry.h"
#include "proxy/listener.h"
#include "proxy/route.h"
#include "proxy/upstream.h"
#include "proxy/upstream_h2.h"
#include "proxy/worker.h"

/* Slots for parsed heads at the front of s->rsbuf: the upstream's head, then ours. */
static size_t head_slots(const struct hstream *s)
{
    size_t n = s->hcm->max_headers_count + 16;
    return n > 512 ? 512 : n;
}

static struct buf *rsbuf(struct hstream *s)
{
    if (!s->rsbuf) {
        if (!(s->rsbuf = buf_get(&s->w->bufs)))
            return NULL;
        size_t arrays = 2 * head_slots(s) * sizeof(struct h1_header);
        s->urs_headers = (struct h1_header *)s->rsbuf->data;
        s->rsbuf->head = s->rsbuf->tail = arrays;
    }
    return s->rsbuf;
}

struct buf *router_rsbuf(struct hstream *s) { return rsbuf(s); }
size_t router_head_slots(const struct hstream *s) { return head_slots(s); }

static struct h1_header *our_slots(struct hstream *s)
{
    return s->urs_headers + head_slots(s);
}

static void release_upstream(struct hstream *s, bool reusable)
{
    if (s->u) {
        upstream_release(s->u, reusable);
        s->u = NULL;
    }
    if (s->uh2) {
        uh2_stream_detach(s->uh2, !reusable);
        s->uh2 = NULL;
    }
}

static int put(struct buf *b, const char *p, size_t n) { return buf_append(b, p, n); }

/* Parses the head text at rsbuf[text..tail) into s->rs (our slots). */
static int parse_built_head(struct hstream *s, size_t text)
{
    struct buf *b = s->rsbuf;
    struct h1_limits lim = {.max_head_bytes = BUF_SIZE, .max_headers = head_slots(s)};
    s->rs.headers = our_slots(s);
    int r = h1_parse_response(b->data + text, b->tail - text, &lim, &s->rs);
    return r > 0 ? 0 : -1;
}

/* The one local-reply path of this router: body[0..blen) (copied), location (or NULL). */
static bool retry_instead(struct hstream *s, uint32_t flag);
static bool retry_decided(struct hstream *s, enum retry_decision d, int status, uint32_t flag);
static void retry_stop(struct hstream *s);

static void local_reply(struct hstream *s, int status, uint32_t flag, const char *details, const char *body,
                        size_t blen, const char *location, bool grpc)
{
    if (retry_instead(s, flag))
        return; /* an upstream failure that the retry policy covers: the next attempt follows */
    retry_stop(s);
    if (s->rs_head_taken) {
        /* The client has a response head already: all that is left is resetting the stream. */
        s->si.flags |= flag;
        s->reset = true;
        s->reset_code = 2; /* INTERNAL_ERROR */
        release_upstream(s, false);
        return;
    }
    release_upstream(s, false);
    buf_put(&s->w->bufs, s->rsbuf);
    s->rsbuf = NULL;
    struct buf *b = rsbuf(s);
    if (!b) {
        s->reset = true;
        return;
    }
    size_t text = b->tail;
    int wire = status, gs = -1;
    int go = s->hf.status ? s->hf.grpc_status : -1; /* a filter's reply may carry its own grpc-status */
    grpc = grpc || go >= 0;
    if (fwd_write_local_head_grpc(b, s->hcm, status, body, blen, location, grpc, go, &wire, &gs) < 0 ||
        (s->hf.status && hf_reply_headers(b, &s->hf, &s->si) < 0) || put(b, "\r\n", 2) || parse_built_head(s, text) < 0) {
        s->reset = true;
        return;
    }
    if (grpc)
        blen = 0; /* trailers-only */
    buf_put(&s->w->bufs, s->rsbody);
    bufq_clear(&s->rsq, &s->w->bufs);
    s->rsbody = NULL;
    if (blen && !s->head_request && (s->rsbody = buf_get(&s->w->bufs))) {
        buf_append(s->rsbody, body, blen < BUF_SIZE ? blen : BUF_SIZE);
        s->si.bytes_sent = blen;
    }
    fwd_note_local_reply(&s->si, wire, gs, flag, details);
    s->local_reply = true;
    s->rs_head = true;
    s->rs_end = true;
    timer_stop(s->w->loop, &s->timer);
}

void router_local_reply(struct hstream *s, int status, uint32_t flag, const char *details, const char *body)
{
    local_reply(s, status, flag, details, body, body ? strlen(body) : 0, NULL, s->grpc);
}

void router_reply(struct hstream *s, enum fwd_reply_kind k)
{
    const struct fwd_reply *r = &fwd_replies[k];
    router_local_reply(s, r->status, r->flag, r->details, r->body);
}

static void reply(struct hstream *s, enum fwd_reply_kind k) { router_reply(s, k); }

static void on_route_timeout(struct loop *l, struct timer *t)
{
    (void)l;
    struct hstream *s = t->data;
    s->timed_out = true;
    if (s->wc)
        stats_inc(s->wc->c->stats, s->w->id, CS_UPSTREAM_RQ_TIMEOUT);
    reply(s, FWD_R_ROUTE_TIMEOUT);
    s->ops->wake(s);
}

static void on_upstream_event(struct uconn *u, enum uconn_event ev, void *owner)
{
    struct hstream *s = owner;
    if (ev == UE_CONNECT_FAILED || ev == UE_CONNECT_TIMEOUT) {
        s->u = NULL;
        s->si.upstream_transport_failure_reason = u->tls_error;
        reply(s, ev == UE_CONNECT_TIMEOUT ? FWD_R_CONNECT_TIMEOUT : FWD_R_CONNECT_FAILURE);
    }
    s->ops->wake(s);
}

/* --- the upstream request head (HTTP/1.1 text; HTTP/2 upstreams parse it back) --- */


static int build_upstream_head(struct hstream *s, const struct route_request *rr, const struct host *host,
                               bool h2_upstream)
{
    const struct h1_request *rq = &s->rq;
    struct buf *b = s->uhead = buf_get(&s->w->bufs);
    if (!b)
        return -1;
    /* x-envoy-expected-rq-timeout-ms: the per-try timeout when it is the shorter one. */
    uint64_t expect = s->timeout_ms, per_try = retry_per_try_timeout_ms(&s->rt);
    if (per_try && (!expect || per_try < expect))
        expect = per_try;
    struct fwd_request_head in = {
        .rq = rq, .rr = rr, .route = s->route, .cluster_weight = s->cluster_weight, .host = host, .si = &s->si,
        .timeout_ms = expect, .tls = s->tp && transport_is_tls(s->tp), .h2_upstream = h2_upstream,
        .join_cookies = !h2_upstream,
    };
    if (fwd_write_request_head(b, s->hcm, s->w, &in) < 0)
        return -1;
    /* HTTP/2 requests carry no framing headers; HTTP/1.1 needs one when there is a body. */
    if (!h2_upstream && !(s->rq_end && (!s->rqbody || buf_len(s->rqbody) == 0))) {
        if (rq->content_length >= 0) {
            char t[24];
            if (!http_has_header(rq->headers, rq->nheaders, (struct h1_str){"content-length", 14}) &&
                http_put_header(b, "content-length", t, u64_to_dec((uint64_t)rq->content_length, t)))
                return -1;
        } else {
            s->uhead_chunked = true;
            if (http_put_header(b, "transfer-encoding", "chunked", 7))
                return -1;
        }
    }
    return put(b, "\r\n", 2);
}

/* The upstream protocol for s (its host is chosen): explicit HTTP/2; the downstream's with
 * use_downstream_protocol_config; for auto_config (TLS only) HTTP/2 with ALPN "h2,http/1.1"
 * unless this host last answered with HTTP/1.1 (the HTTP/2 upstream falls back per connection,
 * see router_upstream_h1_fallback). ORIGINAL_DST connections are HTTP/1.1 in auto mode. */
static bool use_h2_upstream(const struct hstream *s)
{
    enum upstream_proto p = s->wc->c->protocol;
    if (p == UPSTREAM_AUTO)
        return s->host != UPSTREAM_NO_POOL && !s->wc->pools[s->host].auto_h1;
    return p == UPSTREAM_HTTP2 || (p == UPSTREAM_DOWNSTREAM && s->protocol && strcmp(s->protocol, "HTTP/2") == 0);
}

/* --- attempts and retries (the policy and its decisions are in retry.c) --- */

static bool host_tried(const void *ctx, uint32_t host) { return retry_host_tried(ctx, host); }

/* Starts one upstream attempt: picks the host (a retry avoids the hosts tried when the
 * previous_hosts predicate is configured), builds the request head and connects or opens an
 * HTTP/2 stream; arms the per-try timeout. Failures answer (or retry) through local_reply. */
static void start_attempt(struct hstream *s)
{
    struct worker *w = s->w;
    struct route_request rr = fwd_route_request(&s->rq, s->scheme, s->tp && transport_is_tls(s->tp), s->peer);
    struct host od;
    s->si.attempts++;
    uint32_t extra = retry_host_attempts(&s->rt);
    const struct host *h = fwd_pick_host_avoiding(w, s->wc, s->route, &rr, s->local, &od, s->orig_dst,
                                                  sizeof s->orig_dst, &s->host, &s->host_counted, &s->si,
                                                  extra ? host_tried : NULL, &s->rt, extra);
    if (!h) {
        reply(s, s->host == FWD_HOST_OVERFLOW ? FWD_R_OVERFLOW : FWD_R_NO_HEALTHY);
        return;
    }
    if (s->host != UPSTREAM_NO_POOL)
        retry_note_host(&s->rt, s->host);
    bool h2 = use_h2_upstream(s);
    if (build_upstream_head(s, &rr, h, h2) < 0) {
        reply(s, FWD_R_REQUEST_HEADERS_TOO_LARGE);
        return;
    }
    uint64_t per_try = retry_per_try_timeout_ms(&s->rt);
    if (per_try)
        timer_start(w->loop, &s->rt.per_try, per_try);
    int r;
    if (h2) {
        r = uh2_stream_start(s, h);
    } else if (s->host == UPSTREAM_NO_POOL) {
        r = upstream_connect_addr(w, s->wc, s->local, on_upstream_event, s, &s->u);
    } else {
        r = upstream_acquire_alpn(w, s->wc, s->host, s->wc->c->protocol == UPSTREAM_AUTO ? UA_H1 : UA_NONE,
                                  on_upstream_event, s, &s->u);
    }
    if (r < 0) {
        s->u = NULL;
        reply(s, fwd_connect_error(r));
    }
}

static void on_backoff(struct loop *l, struct timer *t)
{
    (void)l;
    struct hstream *s = t->data;
    s->rt.waiting = false;
    if (s->finished || s->local_reply)
        return;
    start_attempt(s);
    s->ops->wake(s);
}

static void on_per_try_timeout(struct loop *l, struct timer *t)
{
    (void)l;
    struct hstream *s = t->data;
    if (s->finished || s->local_reply || s->rs_end)
        return; /* the attempt's response is complete: the timeout no longer applies */
    if (s->wc)
        stats_inc(s->wc->c->stats, s->w->id, CS_UPSTREAM_RQ_PER_TRY_TIMEOUT);
    if (!s->rs_head && !s->rs_head_taken && s->rt.active) {
        enum retry_decision d = retry_check_reset(&s->rt, s->wc, RETRY_RESET_TIMEOUT, s->rq_sent);
        if (retry_decided(s, d, 0, 1u << RF_UPSTREAM_REQUEST_TIMEOUT)) {
            s->ops->wake(s);
            return;
        }
    }
    s->rt.active = false;
    if (s->rs_head || s->rs_head_taken)
        reply(s, FWD_R_ROUTE_TIMEOUT); /* the response has started: the stream is reset */
    else
        router_local_reply(s, 504, 1u << RF_UPSTREAM_REQUEST_TIMEOUT, "upstream_per_try_timeout",
                           "upstream request timeout");
    s->ops->wake(s);
}

/* Drops everything of the attempt that failed (upstream, host hold, request head, response
 * state) and arms the back-off timer for the next one. The failed attempt (its status, or
 * response flag `flag`) still counts for outlier detection. */
static void schedule_retry(struct hstream *s, int status, uint32_t flag)
{
    struct worker *w = s->w;
    fwd_report_attempt(s->wc, &s->si, status, flag);
    release_upstream(s, false);
    if (s->wc)
        fwd_release_host(s->wc, s->route, s->host, &s->host_counted);
    timer_stop(w->loop, &s->rt.per_try);
    buf_put(&w->bufs, s->uhead);
    buf_put(&w->bufs, s->rsbuf);
    buf_put(&w->bufs, s->rsbody);
    bufq_clear(&s->rsq, &w->bufs);
    s->uhead = s->rsbuf = s->rsbody = NULL;
    s->urs_headers = NULL;
    s->uhead_chunked = s->rq_sent = false;
    s->rs_head = s->rs_end = false;
    s->rs_trailers = NULL;
    s->n_rs_trailers = 0;
    s->urs_kind = 0;
    s->urs_remaining = 0;
    s->urs_trailer_at = s->urs_ready = 0;
    s->si.rs = NULL;
    s->si.status = 0;
    s->si.upstream_transport_failure_reason = NULL;
    s->rt.attempt++;
    s->rt.retried = true;
    s->rt.waiting = true;
    struct stat_block *cs = s->wc->c->stats;
    stats_inc(cs, w->id, CS_UPSTREAM_RQ_RETRY);
    stats_inc(cs, w->id, CS_UPSTREAM_RQ_RETRY_BACKOFF_EXPONENTIAL);
    stats_inc(cs, w->id, CS_UPSTREAM_RQ_TOTAL); /* every attempt is an upstream request */
    timer_start(w->loop, &s->rt.backoff, retry_backoff_ms(&s->rt, worker_random(w)));
}

/* Carries out a decision: true when a retry was scheduled. A retriable outcome that may not
 * be retried marks the stream (URX: limit reached, UO: the budget said no). */
static bool retry_decided(struct hstream *s, enum retry_decision d, int status, uint32_t flag)
{
    struct stat_block *cs = s->wc ? s->wc->c->stats : NULL;
    switch (d) {
    case RETRY_YES:
        if (retry_body_rewind(&s->rt, &s->w->bufs, &s->rqbody) == 0) {
            schedule_retry(s, status, flag);
            return true;
        }
        return false;
    case RETRY_LIMIT:
        s->si.flags |= 1u << RF_UPSTREAM_RETRY_LIMIT_EXCEEDED;
        if (cs)
            stats_inc(cs, s->w->id, CS_UPSTREAM_RQ_RETRY_LIMIT_EXCEEDED);
        return false;
    case RETRY_OVERFLOW:
        s->si.flags |= 1u << RF_UPSTREAM_OVERFLOW; /* cb_retry_begin counted upstream_rq_retry_overflow */
        return false;
    default:
        return false;
    }
}

/* The hook in local_reply: an upstream failure before any response head (UF: connect, UC /
 * UR / UPE: closed, reset, garbled) is retried when the policy covers it. */
static bool retry_instead(struct hstream *s, uint32_t flag)
{
    if (!s->rt.active || s->rs_head || s->rs_head_taken || s->finished || s->rt.waiting || !s->wc)
        return false;
    enum retry_reset why;
    if (flag & (1u << RF_UPSTREAM_CONNECTION_FAILURE))
        why = RETRY_RESET_CONNECT_FAILURE;
    else if (flag & ((1u << RF_UPSTREAM_CONNECTION_TERMINATION) | (1u << RF_UPSTREAM_REMOTE_RESET) |
                     (1u << RF_UPSTREAM_PROTOCOL_ERROR)))
        why = s->rt.refused ? RETRY_RESET_REFUSED : RETRY_RESET_REMOTE;
    else
        return false;
    s->rt.refused = false;
    if (retry_decided(s, retry_check_reset(&s->rt, s->wc, why, s->rq_sent), 0, flag))
        return true;
    s->rt.active = false;
    return false;
}

/* The stream answers for good: no attempt follows. */
static void retry_stop(struct hstream *s)
{
    timer_stop(s->w->loop, &s->rt.backoff);
    timer_stop(s->w->loop, &s->rt.per_try);
    s->rt.waiting = false;
    s->rt.active = false;
}

void router_body_sent(struct hstream *s, size_t n)
{
    size_t fresh = retry_body_sent(&s->rt, &s->w->bufs, buf_rpos(s->rqbody), n);
    s->rqbody->head += n;
    bufq_refill(&s->rqbody, &s->rqq, &s->w->bufs);
    if (fresh) {
        s->si.bytes_received += fresh;
        s->ops->request_consumed(s, fresh);
    }
}

static bool filters_pass(struct hstream *s, const struct route_request *rr);
static void router_upstream(struct hstream *s, const struct route_request *rr);
static void on_fault_delay(struct loop *l, struct timer *t);

/* The per-stream start every entry point shares: stream record, timer, forwarding headers. */
static void begin(struct hstream *s)
{
    fwd_stream_info_start(&s->si, s->protocol, &s->rq, s->peer, s->local, s->tp);
    s->cluster = -1;
    s->cluster_weight = -1;
    timer_init(&s->timer, on_route_timeout, s);
    timer_init(&s->hf_timer, on_fault_delay, s);
    retry_init(&s->rt, NULL, &s->rq, s->w->scratch, on_backoff, on_per_try_timeout, s);
    s->head_request = s->rq.method.n == 4 && memcmp(s->rq.method.p, "HEAD", 4) == 0;
    s->grpc = fwd_headers(s->hcm, s->w, &s->rq, s->peer, s->xff, sizeof s->xff, s->request_id, sizeof s->request_id,
                          &s->si);
}

static void forward(struct hstream *s, const struct route_request *rr, const struct fwd_decision *fd);

void router_start(struct hstream *s)
{
    begin(s);
    if (s->rq.connect) {
        reply(s, FWD_R_UPGRADE_FAILED);
        return;
    }
    struct route_request rr = fwd_route_request(&s->rq, s->scheme, s->tp && transport_is_tls(s->tp), s->peer);
    struct fwd_decision fd;
    if (!fwd_route(&fd, s->hcm, s->w, &rr, s->grpc, worker_random(s->w), &s->si)) {
        s->route = fd.route;
        s->cluster = fd.cluster;
        s->cluster_weight = fd.cluster_weight;
        local_reply(s, fd.status, fd.flag, fd.details, fd.body, fd.body_len, fd.location, fd.grpc_reply);
        return;
    }
    forward(s, &rr, &fd);
}

void router_start_routed(struct hstream *s, const struct fwd_decision *fd)
{
    begin(s);
    s->si.route_name = route_name(fd->route);
    struct route_request rr = fwd_route_request(&s->rq, s->scheme, s->tp && transport_is_tls(s->tp), s->peer);
    forward(s, &rr, fd);
}

/* Sends s to the cluster fd chose: the host, the upstream head, the connection or stream. */
static void forward(struct hstream *s, const struct route_request *rr, const struct fwd_decision *fd)
{
    struct worker *w = s->w;
    s->route = fd->route;
    s->cluster = fd->cluster;
    s->cluster_weight = fd->cluster_weight;
    s->wc = fwd_cluster(w, s->hcm->snap, s->cluster, &s->si);
    s->timeout_ms = fd->timeout_ms;
    if (__builtin_expect(s->route->hf != NULL, 0) && !filters_pass(s, rr))
        return;
    router_upstream(s, rr);
}

/* The HTTP filters before the router (hfilter.h): true to go on upstream; false when they
 * answered (fault abort, rate limit) or delay the request (hf_timer resumes it). */
static bool filters_pass(struct hstream *s, const struct route_request *rr)
{
    switch (hf_run(s->route, s->w, rr, s->si.upstream_cluster, &s->hf, &s->si)) {
    case HF_CONTINUE:
        return true;
    case HF_DELAY:
        timer_start(s->w->loop, &s->hf_timer, s->hf.delay_ms);
        return false;
    default:
        router_local_reply(s, s->hf.status, s->hf.flag, s->hf.details, s->hf.body);
        return false;
    }
}

static void on_fault_delay(struct loop *l, struct timer *t)
{
    (void)l;
    struct hstream *s = t->data;
    struct route_request rr = fwd_route_request(&s->rq, s->scheme, s->tp && transport_is_tls(s->tp), s->peer);
    if (filters_pass(s, &rr))
        router_upstream(s, &rr);
    s->ops->wake(s);
}

/* Starts the upstream side once the filters let the request through: the retry state, the
 * first attempt, and the route timeout that spans every attempt. */
static void router_upstream(struct hstream *s, const struct route_request *rr)
{
    (void)rr; /* each attempt (start_attempt) builds its own */
    struct worker *w = s->w;
    retry_init(&s->rt, s->route, &s->rq, w->scratch, on_backoff, on_per_try_timeout, s);
    start_attempt(s);
    if (s->timeout_ms && !s->local_reply)
        timer_start(w->loop, &s->timer, s->timeout_ms);
}

int router_upstream_h1_fallback(struct hstream *s, struct uconn *u)
{
    struct route_request rr = fwd_route_request(&s->rq, s->scheme, s->tp && transport_is_tls(s->tp), s->peer);
    buf_put(&s->w->bufs, s->uhead);
    s->uhead = NULL;
    s->uhead_chunked = false;
    if (build_upstream_head(s, &rr, &s->wc->hs->hosts[s->host], false) < 0) {
        reply(s, FWD_R_REQUEST_HEADERS_TOO_LARGE);
        return 0;
    }
    if (u) {
        s->u = u;
        upstream_set_owner(u, on_upstream_event, s);
        return 1;
    }
    if (upstream_acquire_alpn(s->w, s->wc, s->host, UA_H1, on_upstream_event, s, &s->u) < 0) {
        s->u = NULL;
        router_local_reply(s, 503, 1u << RF_UPSTREAM_CONNECTION_FAILURE, "upstream_reset_before_response_started",
                           "upstream connect error or disconnect/reset before headers. reset reason: connection failure");
    }
    return 0;
}

/* --- HTTP/1.1 upstream: request bytes out --- */

/* Moves request body bytes from s->rqbody into the upstream send buffer, framed (chunked
 * when the length is unknown). Returns bytes taken from rqbody. */
static size_t frame_request_body(struct hstream *s)
{
    struct buf *ub = s->uhead;
    size_t taken = 0;
    if (s->rqbody && buf_len(s->rqbody)) {
        size_t room = buf_room(ub);
        size_t over = s->uhead_chunked ? 12 : 0;
        if (room > over) {
            size_t n = buf_len(s->rqbody);
            if (n > room - over)
                n = room - over;
            if (s->uhead_chunked) {
                char hx[12];
                int hn = snprintf(hx, sizeof hx, "%zx\r\n", n);
                buf_append(ub, hx, (size_t)hn);
            }
            buf_append(ub, buf_rpos(s->rqbody), n);
            if (s->uhead_chunked)
                buf_append(ub, "\r\n", 2);
            router_body_sent(s, n);
            taken = n;
        }
    }
    if (s->rq_end && (!s->rqbody || buf_len(s->rqbody) == 0) && !s->rq_sent) {
        if (s->uhead_chunked) {
            /* The last chunk, with the request's trailers (HTTP/2 trailing HEADERS) if any. */
            size_t mark = ub->tail;
            int bad = buf_append(ub, "0\r\n", 3);
            for (size_t i = 0; i < s->n_rq_trailers && !bad; i++) {
                const struct h1_header *t = &s->rq_trailers[i];
                bad = buf_append(ub, t->name.p, t->name.n) || buf_append(ub, ": ", 2) ||
                      buf_append(ub, t->value.p, t->value.n) || buf_append(ub, "\r\n", 2);
            }
            if (!bad && buf_append(ub, "\r\n", 2) == 0)
                s->rq_sent = true;
            else
                ub->tail = mark; /* retried when the buffer has drained */
        } else {
            s->rq_sent = true;
        }
    }
    return taken;
}

static bool pump_h1_request(struct hstream *s)
{
    struct uconn *u = s->u;
    bool progress = false;
    if (!s->uhead && !s->rq_sent)
        s->uhead = buf_get(&s->w->bufs);
    if (!s->uhead)
        return false;
    if (s->uhead->head == s->uhead->tail)
        s->uhead->head = s->uhead->tail = 0;
    if (frame_request_body(s))
        progress = true;
    if (!u->writable || buf_len(s->uhead) == 0)
        return progress;
    struct iovec iov = {buf_rpos(s->uhead), buf_len(s->uhead)};
    ssize_t wr = upstream_sendv(u, &iov, 1); /* plaintext or TLS */
    if (wr < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            u->writable = false;
            io_want_write(s->w->loop, &u->io, true);
            return progress;
        }
        reply(s, FWD_R_TERMINATION);
        return true;
    }
    stats_add(s->wc->c->stats, s->w->id, CS_UPSTREAM_CX_TX_BYTES_TOTAL, wr);
    if (!s->si.upstream_start_us)
        s->si.upstream_start_us = clock_now_us();
    s->uhead->head += (size_t)wr;
    if (buf_len(s->uhead) > 0) {
        u->writable = false;
        io_want_write(s->w->loop, &u->io, true);
    } else if (s->rq_sent) {
        if (!s->si.request_end_us)
            s->si.request_end_us = clock_now_us();
        buf_put(&s->w->bufs, s->uhead); /* all sent: give the buffer back now */
        s->uhead = NULL;
    }
    return true;
}

/* --- HTTP/1.1 upstream: response bytes in --- */

/* Builds our response head (for any downstream codec) from the upstream's into rsbuf. */
static int build_response_head(struct hstream *s)
{
    struct buf *o = rsbuf(s);
    if (!o)
        return -1;
    size_t text = o->tail;
    if (fwd_write_response_head(o, s->hcm, s->route, s->cluster_weight, &s->urs, &s->si, false, true) < 0 ||
        put(o, "\r\n", 2))
        return -1;
    return parse_built_head(s, text);
}

/* Called by the HTTP/2 upstream too: the upstream's head is in s->urs. */
int router_upstream_head(struct hstream *s)
{
    s->si.upstream_headers_us = clock_now_us();
    if (s->rt.active && !s->rs_head_taken) {
        /* A retriable answer is dropped for the next attempt; any other is the answer. */
        enum retry_decision d = retry_check_response(&s->rt, s->wc, s->urs.status, s->urs.headers, s->urs.nheaders,
                                                     s->grpc, s->w->scratch);
        if (retry_decided(s, d, s->urs.status, 0))
            return -1;
        if (d == RETRY_NO && s->rt.retried)
            stats_inc(s->wc->c->stats, s->w->id, CS_UPSTREAM_RQ_RETRY_SUCCESS);
        retry_accepted(&s->rt, &s->w->bufs);
    }
    if (build_response_head(s) < 0) {
        reply(s, FWD_R_RESPONSE_HEADERS_TOO_LARGE);
        return -1;
    }
    s->si.rs = &s->rs;
    s->si.status = s->rs.status;
    s->rs_head = true;
    return 0;
}

static bool handle_h1_response_head(struct hstream *s)
{
    struct uconn *u = s->u;
    struct h1_limits lim = {.max_head_bytes = 64 * 1024, .max_headers = head_slots(s)};
    for (;;) {
        if (!rsbuf(s)) {
            reply(s, FWD_R_TERMINATION);
            return true;
        }
        s->urs.headers = s->urs_headers;
        int r = h1_parse_response(buf_rpos(u->in), buf_len(u->in), &lim, &s->urs);
        int fail = fwd_h1_head_failure(r, buf_room(u->in) == 0 && u->in->head == 0, u->peer_closed);
        if (fail >= 0) {
            reply(s, (enum fwd_reply_kind)fail);
            return true;
        }
        if (r == H1_INCOMPLETE)
            return false;
        if (s->urs.status >= 100 && s->urs.status < 200) {
            u->in->head += (size_t)r; /* interim responses are not forwarded (Envoy's default) */
            buf_compact_to(u->in, 0);
            if (s->urs.status == 101) {
                reply(s, FWD_R_UPSTREAM_PROTOCOL_ERROR);
                return true;
            }
            continue;
        }
        u->in->head = (size_t)r;
        s->urs_kind = h1_response_body_kind(&s->urs, s->head_request, false);
        s->urs_remaining = s->urs_kind == H1_BODY_LENGTH ? (uint64_t)s->urs.content_length : 0;
        if (s->urs_kind == H1_BODY_CHUNKED)
            h1_chunked_init(&s->urs_chunk, 64 * 1024);
        if (router_upstream_head(s) < 0)
            return true;
        /* The upstream's head is no longer needed: body bytes start at the front. */
        buf_compact_to(u->in, 0);
        if (s->urs_kind == H1_BODY_NONE || (s->urs_kind == H1_BODY_LENGTH && s->urs_remaining == 0))
            s->rs_end = true;
        return true;
    }
}

/* Trailer section bytes of a chunked HTTP/1.1 response, kept in rsbuf after the head text
 * (s->urs_trailer_at marks their start); parsed into s->rs_trailers when the body ends. */
static void keep_trailer_bytes(struct hstream *s, const char *p, size_t n)
{
    struct buf *b = s->rsbuf;
    if (!b)
        return;
    if (!s->urs_trailer_at)
        s->urs_trailer_at = b->tail;
    buf_append(b, p, n); /* beyond the buffer: dropped (the decoder bounds the section anyway) */
}

static void parse_kept_trailers(struct hstream *s)
{
    struct buf *b = s->rsbuf;
    if (!b || !s->urs_trailer_at)
        return;
    size_t text = s->urs_trailer_at, end = b->tail;
    size_t at = (end + 15) & ~(size_t)15;
    if (at + HSTREAM_MAX_TRAILERS * sizeof(struct h1_header) > BUF_SIZE)
        return;
    s->rs_trailers = (struct h1_header *)(b->data + at);
    b->tail = at + HSTREAM_MAX_TRAILERS * sizeof(struct h1_header);
    s->n_rs_trailers = h1_trailers_parse(b->data + text, end - text, s->rs_trailers, HSTREAM_MAX_TRAILERS);
}

/* Frames newly read response bytes: payload is kept contiguous at the front of u->in
 * (chunk framing is squeezed out), urs_ready counts it. */
static int frame_h1_response(struct hstream *s)
{
    struct buf *b = s->u->in;
    size_t unframed = buf_len(b) - s->urs_ready;
    if (!unframed || s->rs_end)
        return 0;
    char *at = buf_rpos(b) + s->urs_ready;
    switch (s->urs_kind) {
    case H1_BODY_LENGTH: {
        size_t take = unframed < s->urs_remaining ? unframed : (size_t)s->urs_remaining;
        s->urs_ready += take;
        s->urs_remaining -= take;
        if (s->urs_remaining == 0)
            s->rs_end = true;
        b->tail = b->head + s->urs_ready; /* anything after the body is not trusted */
        return 0;
    }
    case H1_BODY_UNTIL_CLOSE:
        s->urs_ready += unframed;
        return 0;
    case H1_BODY_CHUNKED: {
        /* Data spans go through in bulk; framing is fed a byte at a time so that the trailer
         * section's bytes can be kept (they become HTTP/2 trailers). */
        size_t out = 0, in = 0;
        while (in < unframed) {
            enum h1_chunk_phase ph = h1_chunked_phase(&s->urs_chunk);
            size_t used = 0, dlen = 0;
            const char *data;
            int r = h1_chunked_feed(&s->urs_chunk, at + in, ph == H1_PHASE_DATA ? unframed - in : 1, &used, &data,
                                    &dlen);
            if (r == H1_CHUNK_BAD)
                return -1;
            if (ph == H1_PHASE_TRAILERS && used)
                keep_trailer_bytes(s, at + in, used);
            if (r == H1_CHUNK_DATA) {
                memmove(at + out, data, dlen);
                out += dlen;
            }
            in += used;
            if (r == H1_CHUNK_DONE) {
                parse_kept_trailers(s);
                s->rs_end = true;
                break;
            }
            if (used == 0)
                break;
        }
        /* Unconsumed framing (a partial size line) moves down behind the payload. */
        memmove(at + out, at + in, unframed - in);
        s->urs_ready += out;
        b->tail -= in - out;
        if (s->rs_end)
            b->tail = b->head + s->urs_ready;
        return 0;
    }
    default:
        return 0;
    }
}

static bool pump_h1_response(struct hstream *s)
{
    struct uconn *u = s->u;
    bool progress = false;
    if (u->in && buf_room(u->in) == 0 && s->rs_head)
        buf_compact_to(u->in, 0);
    long r = upstream_read(u);
    if (r > 0)
        progress = true;
    if (!s->rs_head && u->in && (r > 0 || u->peer_closed || buf_len(u->in))) {
        if (handle_h1_response_head(s))
            progress = true;
        if (!s->rs_head || !s->u)
            return progress;
    }
    if (s->rs_head && frame_h1_response(s) < 0) {
        reply(s, FWD_R_UPSTREAM_PROTOCOL_ERROR);
        return true;
    }
    if (u->peer_closed && !s->rs_end && s->urs_ready == buf_len(u->in)) {
        if (s->urs_kind == H1_BODY_UNTIL_CLOSE) {
            s->rs_end = true;
        } else {
            s->si.flags |= 1u << RF_UPSTREAM_CONNECTION_TERMINATION;
            router_local_reply(s, 503, 1u << RF_UPSTREAM_CONNECTION_TERMINATION, "upstream_reset_after_response_started",
                               NULL);
        }
        progress = true;
    }
    return progress;
}

bool router_pump(struct hstream *s)
{
    if (s->local_reply || s->finished)
        return false;
    if (s->uh2)
        return uh2_stream_pump(s);
    struct uconn *u = s->u;
    if (!u || u->state != UC_OPEN)
        return false;
    bool progress = false;
    if (!s->rq_sent || (s->uhead && buf_len(s->uhead)))
        progress |= pump_h1_request(s);
    if (s->u && !s->local_reply)
        progress |= pump_h1_response(s);
    return progress;
}

void router_response_body(struct hstream *s, const char **p, size_t *n)
{
    *p = NULL;
    *n = 0;
    if (s->local_reply || s->uh2) {
        if (s->rsbody) {
            *p = buf_rpos(s->rsbody);
            *n = buf_len(s->rsbody);
        }
    } else if (s->u && s->u->in && s->rs_head) {
        *p = buf_rpos(s->u->in);
        *n = s->urs_ready;
    }
}

void router_response_consumed(struct hstream *s, size_t n)
{
    if (s->local_reply || s->uh2) {
        if (s->rsbody) {
            s->rsbody->head += n;
            bufq_refill(&s->rsbody, &s->rsq, &s->w->bufs);
        }
        if (s->uh2 && !s->local_reply)
            uh2_stream_consumed(s, n);
        else if (!s->local_reply)
            s->si.bytes_sent += n;
        return;
    }
    struct buf *b = s->u->in;
    b->head += n;
    s->urs_ready -= n;
    s->si.bytes_sent += n;
    if (buf_len(b) == 0)
        b->head = b->tail = 0;
}

void router_finish(struct hstream *s, bool downstream_reset)
{
    if (s->finished)
        return;
    s->finished = true;
    struct worker *w = s->w;
    timer_stop(w->loop, &s->timer);
    if (__builtin_expect(s->route && s->route->hf != NULL, 0)) {
        timer_stop(w->loop, &s->hf_timer);
        hf_done(&s->hf, w, s->route);
    }
    retry_finish(&s->rt, w->loop, &w->bufs, s->rqbody);
    s->si.end_us = clock_now_us();
    if (downstream_reset)
        s->si.flags |= 1u << RF_DOWNSTREAM_CONNECTION_TERMINATION;
    if (s->si.grpc_status < 0 && s->grpc) {
        const struct h1_header *src = s->n_rs_trailers ? s->rs_trailers : s->rs.headers;
        size_t ns = s->n_rs_trailers ? s->n_rs_trailers : (s->rs_head ? s->rs.nheaders : 0);
        s->si.grpc_status = grpc_hdr_status(src, ns);
    }
    fwd_finish(s->hcm, w, s->wc, &s->si, s->si.rs ? s->rs.status : 0);
    bool reusable = !downstream_reset && !s->local_reply && s->rs_end && s->rq_sent && s->urs_ready == 0 &&
                    s->urs_kind != H1_BODY_UNTIL_CLOSE && (s->uh2 || s->urs.keep_alive) &&
                    (!s->uhead || buf_len(s->uhead) == 0);
    release_upstream(s, reusable);
    if (s->wc)
        fwd_release_host(s->wc, s->route, s->host, &s->host_counted);
    if (s->wc) {
        wcluster_put(s->wc);
        s->wc = NULL;
    }
    buf_put(&w->bufs, s->uhead);
    buf_put(&w->bufs, s->rsbuf);
    buf_put(&w->bufs, s->rsbody);
    bufq_clear(&s->rsq, &w->bufs);
    s->uhead = s->rsbuf = s->rsbody = NULL;
}
