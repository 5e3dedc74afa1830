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
#include "proxy/grpc_headers.h"
#include "proxy/hstream.h"
#include "proxy/http_headers.h"
#include "proxy/http_util.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/route.h"
#include "proxy/upstream.h"
#include "proxy/upstream_h2.h"
#include "proxy/worker.h"

static inline void hstat(struct hstream *s, size_t field, int64_t delta)
{
    stats_add(s->hcm->stats, s->w->id, field, delta);
}

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

/* Parses the head text at rsbuf[text..tail) into s->rs (our slots). */
static int parse_built_head(struct hstream *s, size_t text)
{
    struct buf *b = s->rsbuf;
    struct h1_limits lim = {.max_head_bytes = BUF_SIZE, .max_headers = head_slots(s)};
    s->rs.headers = our_slots(s);
    int r = h1_parse_response(b->data + text, b->tail - text, &lim, &s->rs);
    return r > 0 ? 0 : -1;
}

void router_local_reply(struct hstream *s, int status, uint32_t flag, const char *details, const char *body)
{
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
    size_t blen = body ? strlen(body) : 0;
    char date[40];
    http_date_now(date, sizeof date);
    if (s->grpc) {
        /* gRPC clients read errors from grpc-status, not from :status: answer trailers-only
         * (a 200 HEADERS frame with END_STREAM), as Envoy does. */
        char hdr[512];
        char msg[256];
        const char *text = body ? body : http_reason(status);
        size_t mlen = grpc_message_encode(text, strlen(text), msg, sizeof msg - 1);
        msg[mlen < sizeof msg ? mlen : sizeof msg - 1] = '\0'; /* cut to fit: a cut %XX reads as text */
        int n = snprintf(hdr, sizeof hdr,
                         "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: %d\r\n"
                         "grpc-message: %s\r\ndate: %s\r\nserver: %s\r\n\r\n",
                         (int)grpc_status_from_http(status), msg, date, s->hcm->server_name);
        buf_append(b, hdr, (size_t)n);
        s->si.grpc_status = (int)grpc_status_from_http(status);
        blen = 0;
    } else {
        char hdr[512];
        int n = snprintf(hdr, sizeof hdr, "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\n%sdate: %s\r\nserver: %s\r\n\r\n",
                         status, http_reason(status), blen, blen ? "content-type: text/plain\r\n" : "", date,
                         s->hcm->server_name);
        buf_append(b, hdr, (size_t)n);
    }
    if (parse_built_head(s, text) < 0) {
        s->reset = true;
        return;
    }
    buf_put(&s->w->bufs, s->rsbody);
    s->rsbody = NULL;
    if (blen && !s->head_request && (s->rsbody = buf_get(&s->w->bufs))) {
        buf_append(s->rsbody, body, blen < BUF_SIZE ? blen : BUF_SIZE);
        s->si.bytes_sent = blen;
    }
    s->si.status = s->grpc ? 200 : status; /* what went on the wire (gRPC: trailers-only 200) */
    s->si.flags |= flag;
    s->si.local_reply_details = details;
    s->local_reply = true;
    s->rs_head = true;
    s->rs_end = true;
    timer_stop(s->w->loop, &s->timer);
}

static void on_route_timeout(struct loop *l, struct timer *t)
{
    (void)l;
    struct hstream *s = t->data;
    s->timed_out = true;
    if (s->wc)
        stats_inc(s->wc->c->stats, s->w->id, CS_UPSTREAM_RQ_TIMEOUT);
    router_local_reply(s, 504, 1u << RF_UPSTREAM_REQUEST_TIMEOUT, "upstream_response_timeout",
                       "upstream request timeout");
    s->ops->wake(s);
}

static void on_upstream_event(struct uconn *u, enum uconn_event ev, void *owner)
{
    (void)u;
    struct hstream *s = owner;
    if (ev == UE_CONNECT_FAILED || ev == UE_CONNECT_TIMEOUT) {
        s->u = NULL;
        router_local_reply(s, 503, 1u << RF_UPSTREAM_CONNECTION_FAILURE, "upstream_reset_before_response_started",
                           ev == UE_CONNECT_TIMEOUT
                               ? "upstream connect error or disconnect/reset before headers. reset reason: connection timeout"
                               : "upstream connect error or disconnect/reset before headers. reset reason: connection failure");
    }
    s->ops->wake(s);
}

/* --- the upstream request head (HTTP/1.1 text; HTTP/2 upstreams parse it back) --- */

static int put(struct buf *b, const char *p, size_t n) { return buf_append(b, p, n); }

static int build_upstream_head(struct hstream *s, const struct route_request *rr, const struct host *host,
                               bool h2_upstream)
{
    const struct h1_request *rq = &s->rq;
    const struct hcm_config *hcm = s->hcm;
    struct buf *b = s->uhead = buf_get(&s->w->bufs);
    if (!b)
        return -1;
    if (put(b, rq->method.p, rq->method.n) || put(b, " ", 1))
        return -1;
    int plen = route_rewrite_path(s->route, rr, s->w->scratch, buf_wpos(b), buf_room(b));
    if (plen < 0)
        return -1;
    b->tail += (size_t)plen;
    if (put(b, " HTTP/1.1\r\n", 11))
        return -1;
    char hostbuf[512];
    bool auto_host = false;
    int hl = route_host_rewrite(s->route, s->cluster_weight, rr, s->w->scratch, hostbuf, sizeof hostbuf, &auto_host);
    const char *hn = host->hostname ? host->hostname : host->addr_str;
    if (hl > 0)
        http_put_header(b, "host", hostbuf, (size_t)hl);
    else if (auto_host)
        http_put_header(b, "host", hn, strlen(hn));
    else
        http_put_header(b, "host", rq->host.p, rq->host.n);
    const struct header_mutation *lv[ROUTE_MUTATION_LEVELS];
    size_t nlv = route_request_mutations(s->route, s->cluster_weight, lv);
    bool have_xfp = false, cookie_done = false;
    for (size_t i = 0; i < rq->nheaders; i++) {
        const struct h1_header *h = &rq->headers[i];
        struct h1_str n = h->name;
        if (h1_str_eq_ci(n, "host") || http_in_connection_tokens(rq->headers, rq->nheaders, n))
            continue;
        if (http_is_hop_by_hop(n)) {
            /* te: trailers is the one connection-specific header HTTP/2 keeps (gRPC needs it). */
            if (!(h2_upstream && h1_str_eq_ci(n, "te") && h->value.n == 8 && strncasecmp(h->value.p, "trailers", 8) == 0))
                continue;
        }
        if (h1_str_eq_ci(n, "expect") && !hcm->proxy_100_continue)
            continue;
        if (h1_str_eq_ci(n, "x-request-id") || h1_str_eq_ci(n, "x-forwarded-for"))
            continue;
        if (h1_str_eq_ci(n, "x-forwarded-proto")) {
            if (hcm->use_remote_address)
                continue;
            have_xfp = true;
        }
        if (nlv && http_mutation_drops(lv, nlv, n))
            continue;
        if (h1_str_eq_ci(n, "cookie") && !h2_upstream) {
            /* HTTP/2 splits cookies into one field per crumb; HTTP/1.1 wants one line joined
             * with "; " (RFC 9113 8.2.3). */
            if (cookie_done)
                continue;
            cookie_done = true;
            if (put(b, "cookie: ", 8))
                return -1;
            bool first = true;
            for (size_t j = i; j < rq->nheaders; j++) {
                if (!h1_str_eq_ci(rq->headers[j].name, "cookie"))
                    continue;
                if ((!first && put(b, "; ", 2)) || put(b, rq->headers[j].value.p, rq->headers[j].value.n))
                    return -1;
                first = false;
            }
            if (put(b, "\r\n", 2))
                return -1;
            continue;
        }
        if (put(b, n.p, n.n) || put(b, ": ", 2) || put(b, h->value.p, h->value.n) || put(b, "\r\n", 2))
            return -1;
    }
    if (s->si.forwarded_for && http_put_header(b, "x-forwarded-for", s->si.forwarded_for, strlen(s->si.forwarded_for)))
        return -1;
    bool tls = s->tp && transport_is_tls(s->tp);
    if (!have_xfp && http_put_header(b, "x-forwarded-proto", tls ? "https" : "http", tls ? 5 : 4))
        return -1;
    if (s->si.request_id && http_put_header(b, "x-request-id", s->si.request_id, strlen(s->si.request_id)))
        return -1;
    if (s->timeout_ms) {
        char t[24];
        if (http_put_header(b, "x-envoy-expected-rq-timeout-ms", t, u64_to_dec(s->timeout_ms, t)))
            return -1;
    }
    if (nlv && http_mutation_add(b, lv, nlv, rq->headers, rq->nheaders) < 0)
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

static void set_forwarding_headers(struct hstream *s)
{
    const struct h1_request *rq = &s->rq;
    struct h1_str xff = {0}, rid = {0};
    for (size_t i = 0; i < rq->nheaders; i++) {
        if (h1_str_eq_ci(rq->headers[i].name, "x-forwarded-for"))
            xff = rq->headers[i].value;
        else if (h1_str_eq_ci(rq->headers[i].name, "x-request-id"))
            rid = rq->headers[i].value;
    }
    if (s->hcm->use_remote_address && !s->hcm->skip_xff_append) {
        char ip[64];
        http_peer_ip(s->peer, ip, sizeof ip);
        if (xff.n)
            snprintf(s->xff, sizeof s->xff, "%.*s,%s", (int)xff.n, xff.p, ip);
        else
            snprintf(s->xff, sizeof s->xff, "%s", ip);
        s->si.forwarded_for = s->xff;
    } else if (xff.n) {
        snprintf(s->xff, sizeof s->xff, "%.*s", (int)xff.n, xff.p);
        s->si.forwarded_for = s->xff;
    }
    bool keep = rid.n && rid.n < sizeof s->request_id &&
                (!s->hcm->use_remote_address || s->hcm->preserve_external_request_id);
    if (keep || (!s->hcm->generate_request_id && rid.n && rid.n < sizeof s->request_id)) {
        memcpy(s->request_id, rid.p, rid.n);
        s->request_id[rid.n] = '\0';
        s->si.request_id = s->request_id;
    } else if (s->hcm->generate_request_id) {
        uuid4_format(worker_random(s->w), worker_random(s->w), s->request_id);
        s->si.request_id = s->request_id;
    }
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

/* What routing looks at in s's request. */
static struct route_request request_of(const struct hstream *s)
{
    return (struct route_request){
        .method = s->rq.method, .path = s->rq.path, .authority = s->rq.host,
        .scheme = s->scheme.n ? s->scheme : (struct h1_str){"http", 4},
        .headers = s->rq.headers, .nheaders = s->rq.nheaders, .source = (const struct sockaddr *)s->peer,
    };
}

void router_start(struct hstream *s)
{
    struct worker *w = s->w;
    s->si.start_us = clock_now_us();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->si.start_wall_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    s->si.protocol = s->protocol;
    s->si.rq = &s->rq;
    s->si.downstream_remote = (const struct sockaddr *)s->peer;
    s->si.downstream_local = (const struct sockaddr *)s->local;
    s->si.downstream_tp = s->tp;
    s->si.grpc_status = -1;
    s->cluster = -1;
    s->cluster_weight = -1;
    timer_init(&s->timer, on_route_timeout, s);
    s->grpc = grpc_hdr_is_request(s->rq.headers, s->rq.nheaders);
    s->head_request = s->rq.method.n == 4 && memcmp(s->rq.method.p, "HEAD", 4) == 0;
    set_forwarding_headers(s);

    if (s->rq.connect) {
        router_local_reply(s, 403, 0, "upgrade_failed", NULL);
        return;
    }
    struct route_request rr = request_of(s);
    uint64_t rnd = worker_random(w);
    s->route = route_select(s->hcm->routes, &rr, rnd, w->scratch);
    if (!s->route) {
        hstat(s, HS_NO_ROUTE, 1);
        router_local_reply(s, 404, 1u << RF_NO_ROUTE_FOUND, "route_not_found", NULL);
        return;
    }
    s->si.route_name = route_name(s->route);
    switch (route_kind(s->route)) {
    case ROUTE_DIRECT: {
        hstat(s, HS_RQ_DIRECT_RESPONSE, 1);
        size_t blen = 0;
        const char *body = NULL;
        int status = 200;
        route_direct_response(s->route, &status, &body, &blen);
        char tmp[4097];
        size_t n = blen < sizeof tmp - 1 ? blen : sizeof tmp - 1;
        if (body)
            memcpy(tmp, body, n);
        tmp[n] = '\0';
        bool grpc = s->grpc;
        s->grpc = false; /* a direct response is what the route says, gRPC or not */
        router_local_reply(s, status, 0, "direct_response", n ? tmp : NULL);
        s->grpc = grpc;
        return;
    }
    case ROUTE_REDIRECT: {
        hstat(s, HS_RQ_REDIRECT, 1);
        char loc[4096];
        int status = 301;
        if (route_redirect(s->route, &rr, w->scratch, loc, sizeof loc, &status) < 0) {
            router_local_reply(s, 500, 0, "redirect_too_long", NULL);
            return;
        }
        /* Rebuild the local reply with a location header. */
        router_local_reply(s, status, 0, "via_redirect", NULL);
        struct buf *b = s->rsbuf;
        if (b) {
            size_t text = b->tail;
            char hdr[4200];
            char date[40];
            http_date_now(date, sizeof date);
            int n = snprintf(hdr, sizeof hdr, "HTTP/1.1 %d %s\r\ncontent-length: 0\r\nlocation: %s\r\ndate: %s\r\nserver: %s\r\n\r\n",
                             status, http_reason(status), loc, date, s->hcm->server_name);
            if (n > 0 && (size_t)n < sizeof hdr && buf_append(b, hdr, (size_t)n) == 0)
                parse_built_head(s, text);
        }
        return;
    }
    default:
        break;
    }
    s->cluster = route_cluster(s->route, rnd);
    s->cluster_weight = route_weight_index(s->route, rnd);
    if (s->cluster < 0) {
        hstat(s, HS_NO_CLUSTER, 1);
        router_local_reply(s, route_cluster_not_found_status(s->route), 1u << RF_NO_CLUSTER_FOUND, "cluster_not_found", NULL);
        return;
    }
    s->wc = worker_cluster(w, s->cluster);
    wcluster_hold(s->wc);
    struct stat_block *cs = s->wc->c->stats;
    s->si.upstream_cluster = s->wc->c->name;
    stats_inc(cs, w->id, CS_UPSTREAM_RQ_TOTAL);
    stats_add(cs, w->id, CS_UPSTREAM_RQ_ACTIVE, 1);
    s->timeout_ms = route_timeout_ms(s->route);
    if (s->grpc) {
        /* grpc-timeout becomes the timeout when the route allows it (max_grpc_timeout /
         * max_stream_duration.grpc_timeout_header_max), capped by that value (0 = no cap);
         * without the header the route timeout stands. */
        uint64_t cap, t;
        if (route_grpc_timeout_max(s->route, &cap) && grpc_hdr_timeout_ms(s->rq.headers, s->rq.nheaders, &t)) {
            if (cap && t > cap)
                t = cap;
            s->timeout_ms = t;
        }
    }
    const struct host *h;
    struct host od;
    if (s->wc->c->type == CLUSTER_ORIGINAL_DST) {
        od = (struct host){.addr = *s->local};
        sockaddr_format(s->local, s->orig_dst, sizeof s->orig_dst);
        snprintf(od.addr_str, sizeof od.addr_str, "%s", s->orig_dst);
        s->si.upstream_host = s->orig_dst;
        h = &od;
        s->host = UPSTREAM_NO_POOL;
    } else {
        uint64_t hash = 0;
        bool has_hash = route_hash(s->route, &rr, &hash);
        int host = s->wc->hs->n ? lb_pick(s->wc->hs->lb, s->wc->lb, has_hash, hash, s->wc->active_rq, NULL) : -1;
        if (host < 0) {
            stats_inc(cs, w->id, CS_UPSTREAM_CX_NONE_HEALTHY);
            router_local_reply(s, 503, 1u << RF_NO_HEALTHY_UPSTREAM, "no_healthy_upstream", "no healthy upstream");
            return;
        }
        s->host = (uint32_t)host;
        s->wc->pools[host].active_rq++;
        s->wc->active_rq[host]++;
        s->host_counted = true;
        h = &s->wc->hs->hosts[host];
        s->si.upstream_host = h->addr_str;
    }
    bool h2 = use_h2_upstream(s);
    if (build_upstream_head(s, &rr, h, h2) < 0) {
        router_local_reply(s, 431, 0, "request_headers_too_large", NULL);
        return;
    }
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
        router_local_reply(s, 503, 1u << RF_UPSTREAM_CONNECTION_FAILURE, "upstream_reset_before_response_started",
                           "upstream connect error or disconnect/reset before headers. reset reason: connection failure");
        return;
    }
    if (s->timeout_ms)
        timer_start(w->loop, &s->timer, s->timeout_ms);
}

int router_upstream_h1_fallback(struct hstream *s, struct uconn *u)
{
    struct route_request rr = request_of(s);
    buf_put(&s->w->bufs, s->uhead);
    s->uhead = NULL;
    s->uhead_chunked = false;
    if (build_upstream_head(s, &rr, &s->wc->hs->hosts[s->host], false) < 0) {
        router_local_reply(s, 431, 0, "request_headers_too_large", NULL);
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
            s->rqbody->head += n;
            taken = n;
            s->si.bytes_received += n;
            if (buf_len(s->rqbody) == 0)
                s->rqbody->head = s->rqbody->tail = 0;
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
    size_t taken = frame_request_body(s);
    if (taken) {
        progress = true;
        s->ops->request_consumed(s, taken);
    }
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
        router_local_reply(s, 503, 1u << RF_UPSTREAM_CONNECTION_TERMINATION, "upstream_reset_before_response_started",
                           "upstream connect error or disconnect/reset before headers. reset reason: connection termination");
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
    const struct h1_response *rs = &s->urs;
    char line[64];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", rs->status, http_reason(rs->status));
    if (put(o, line, (size_t)n))
        return -1;
    bool have_date = false, have_server = false;
    const struct header_mutation *lv[ROUTE_MUTATION_LEVELS];
    size_t nlv = route_response_mutations(s->route, s->cluster_weight, lv);
    for (size_t i = 0; i < rs->nheaders; i++) {
        const struct h1_header *h = &rs->headers[i];
        if (http_is_hop_by_hop(h->name) || h1_str_eq_ci(h->name, "transfer-encoding") ||
            http_in_connection_tokens(rs->headers, rs->nheaders, h->name))
            continue;
        if (h1_str_eq_ci(h->name, "server")) {
            if (s->hcm->server_header_transformation == 0)
                continue;
            have_server = true;
        }
        if (h1_str_eq_ci(h->name, "date"))
            have_date = true;
        if (nlv && http_mutation_drops(lv, nlv, h->name))
            continue;
        if (put(o, h->name.p, h->name.n) || put(o, ": ", 2) || put(o, h->value.p, h->value.n) || put(o, "\r\n", 2))
            return -1;
    }
    char date[40];
    http_date_now(date, sizeof date);
    if (!have_date && http_put_header(o, "date", date, strlen(date)))
        return -1;
    if (!have_server && s->hcm->server_header_transformation != 2 &&
        http_put_header(o, "server", s->hcm->server_name, strlen(s->hcm->server_name)))
        return -1;
    char t[24];
    size_t tn = u64_to_dec((s->si.upstream_headers_us - s->si.upstream_start_us) / 1000u, t);
    if (http_put_header(o, "x-envoy-upstream-service-time", t, tn))
        return -1;
    if (s->hcm->always_set_request_id_in_response && s->si.request_id &&
        http_put_header(o, "x-request-id", s->si.request_id, strlen(s->si.request_id)))
        return -1;
    if (nlv && http_mutation_add(o, lv, nlv, rs->headers, rs->nheaders) < 0)
        return -1;
    if (put(o, "\r\n", 2))
        return -1;
    return parse_built_head(s, text);
}

/* Called by the HTTP/2 upstream too: the upstream's head is in s->urs. */
int router_upstream_head(struct hstream *s)
{
    s->si.upstream_headers_us = clock_now_us();
    if (build_response_head(s) < 0) {
        router_local_reply(s, 502, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "response_headers_too_large", NULL);
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
            router_local_reply(s, 503, 1u << RF_UPSTREAM_CONNECTION_TERMINATION, "upstream_reset_before_response_started", NULL);
            return true;
        }
        s->urs.headers = s->urs_headers;
        int r = h1_parse_response(buf_rpos(u->in), buf_len(u->in), &lim, &s->urs);
        if (r == H1_INCOMPLETE) {
            if (buf_room(u->in) == 0 && u->in->head == 0) {
                router_local_reply(s, 502, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "upstream_headers_too_large", NULL);
                return true;
            }
            if (u->peer_closed) {
                router_local_reply(s, 503, 1u << RF_UPSTREAM_CONNECTION_TERMINATION, "upstream_reset_before_response_started",
                                   "upstream connect error or disconnect/reset before headers. reset reason: connection termination");
                return true;
            }
            return false;
        }
        if (r < 0) {
            router_local_reply(s, 502, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "upstream_protocol_error", NULL);
            return true;
        }
        if (s->urs.status >= 100 && s->urs.status < 200) {
            u->in->head += (size_t)r; /* interim responses are not forwarded (Envoy's default) */
            buf_compact_to(u->in, 0);
            if (s->urs.status == 101) {
                router_local_reply(s, 502, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "upstream_protocol_error", NULL);
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
    s->n_rs_trailers = 0;
    const char *p = b->data + text, *e = b->data + end;
    while (p < e && s->n_rs_trailers < HSTREAM_MAX_TRAILERS) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        if (!nl)
            break;
        const char *line_end = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon && colon > p) {
            const char *v = colon + 1, *ve = line_end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            s->rs_trailers[s->n_rs_trailers++] =
                (struct h1_header){{p, (size_t)(colon - p)}, {v, (size_t)(ve - v)}};
        }
        p = nl + 1;
    }
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
        router_local_reply(s, 502, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "upstream_protocol_error", NULL);
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
            if (buf_len(s->rsbody) == 0)
                s->rsbody->head = s->rsbody->tail = 0;
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

static void count_response(struct hstream *s, int status)
{
    static const size_t classes[] = {HS_DOWNSTREAM_RQ_1XX, HS_DOWNSTREAM_RQ_2XX, HS_DOWNSTREAM_RQ_3XX,
                                     HS_DOWNSTREAM_RQ_4XX, HS_DOWNSTREAM_RQ_5XX};
    if (status >= 100 && status < 600)
        hstat(s, classes[status / 100 - 1], 1);
}

void router_finish(struct hstream *s, bool downstream_reset)
{
    if (s->finished)
        return;
    s->finished = true;
    struct worker *w = s->w;
    timer_stop(w->loop, &s->timer);
    s->si.end_us = clock_now_us();
    if (downstream_reset)
        s->si.flags |= 1u << RF_DOWNSTREAM_CONNECTION_TERMINATION;
    if (s->si.grpc_status < 0 && s->grpc) {
        const struct h1_header *src = s->n_rs_trailers ? s->rs_trailers : s->rs.headers;
        size_t ns = s->n_rs_trailers ? s->n_rs_trailers : (s->rs_head ? s->rs.nheaders : 0);
        s->si.grpc_status = grpc_hdr_status(src, ns);
    }
    count_response(s, s->si.status);
    hstat(s, HS_DOWNSTREAM_RQ_ACTIVE, -1);
    hstat(s, HS_DOWNSTREAM_RQ_COMPLETED, 1);
    if (s->wc) {
        struct stat_block *cs = s->wc->c->stats;
        stats_add(cs, w->id, CS_UPSTREAM_RQ_ACTIVE, -1);
        if (s->si.rs) {
            static const size_t classes[] = {CS_UPSTREAM_RQ_1XX, CS_UPSTREAM_RQ_2XX, CS_UPSTREAM_RQ_3XX,
                                             CS_UPSTREAM_RQ_4XX, CS_UPSTREAM_RQ_5XX};
            stats_inc(cs, w->id, classes[s->rs.status / 100 - 1]);
            stats_code(cs, w->id, s->rs.status);
            stats_inc(cs, w->id, CS_UPSTREAM_RQ_COMPLETED);
        }
    }
    for (size_t i = 0; i < s->hcm->n_access_logs; i++)
        access_log_write(s->hcm->access_logs[i], &s->si, w->log_buf);
    bool reusable = !downstream_reset && !s->local_reply && s->rs_end && s->rq_sent && s->urs_ready == 0 &&
                    s->urs_kind != H1_BODY_UNTIL_CLOSE && (s->uh2 || s->urs.keep_alive) &&
                    (!s->uhead || buf_len(s->uhead) == 0);
    release_upstream(s, reusable);
    if (s->host_counted) {
        s->wc->pools[s->host].active_rq--;
        s->wc->active_rq[s->host]--;
        s->host_counted = false;
    }
    if (s->wc) {
        wcluster_put(s->wc);
        s->wc = NULL;
    }
    buf_put(&w->bufs, s->uhead);
    buf_put(&w->bufs, s->rsbuf);
    buf_put(&w->bufs, s->rsbody);
    s->uhead = s->rsbuf = s->rsbody = NULL;
}
