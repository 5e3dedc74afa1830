/* Forwarding decisions shared by the HTTP/1.1 fast path (http_conn.c) and the codec-neutral
 * router (router.c); see forward.h. Where the two used to differ, Envoy's behaviour is the
 * one kept here. */
#include "proxy/forward.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy/access_log.h"
#include "proxy/circuit_breaker.h"
#include "proxy/host_health.h"
#include "proxy/config.h"
#include "net/grpc.h"
#include "net/xfcc.h"
#include "proxy/grpc_headers.h"
#include "proxy/listener.h"
#include "proxy/http_headers.h"
#include "proxy/http_util.h"
#include "proxy/lb.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

static inline void hstat(const struct hcm_config *hcm, struct worker *w, size_t field, int64_t delta)
{
    stats_add(hcm->stats, w->id, field, delta);
}

static void copy_str(char *out, size_t cap, struct h1_str v)
{
    memcpy(out, v.p, v.n);
    out[v.n] = '\0';
    (void)cap;
}

void fwd_stream_info_start(struct stream_info *si, const char *protocol, const struct h1_request *rq,
                           const struct sockaddr_storage *peer, const struct sockaddr_storage *local,
                           const struct transport *tp)
{
    si->start_us = clock_now_us();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    si->start_wall_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    si->protocol = protocol;
    si->rq = rq;
    si->downstream_remote = (const struct sockaddr *)peer;
    si->downstream_local = (const struct sockaddr *)local;
    si->downstream_tp = tp;
    si->grpc_status = -1;
}

bool fwd_headers(const struct hcm_config *hcm, struct worker *w, const struct h1_request *rq,
                 const struct sockaddr_storage *peer, char *xff_out, size_t xff_cap, char *rid_out, size_t rid_cap,
                 struct stream_info *si)
{
    struct h1_str xff = {0}, rid = {0}, ct = {0};
    for (size_t i = 0; i < rq->nheaders; i++) {
        struct h1_str nm = rq->headers[i].name;
        if ((nm.n == 16 && h1_str_eq_ci(nm, "x-envoy-retry-on")) || (nm.n == 21 && h1_str_eq_ci(nm, "x-envoy-retry-grpc-on")))
            si->retry_headers = true; /* the request asks for retries itself (router.c) */
        if (h1_str_eq_ci(rq->headers[i].name, "x-forwarded-for"))
            xff = rq->headers[i].value;
        else if (h1_str_eq_ci(rq->headers[i].name, "x-request-id"))
            rid = rq->headers[i].value;
        else if (!ct.p && h1_str_eq_ci(rq->headers[i].name, "content-type"))
            ct = rq->headers[i].value;
    }
    /* Envoy appends the peer address to x-forwarded-for only with use_remote_address. */
    if (hcm->use_remote_address && !hcm->skip_xff_append) {
        char ip[64];
        http_peer_ip(peer, ip, sizeof ip);
        if (xff.n)
            snprintf(xff_out, xff_cap, "%.*s,%s", (int)xff.n, xff.p, ip);
        else
            snprintf(xff_out, xff_cap, "%s", ip);
        si->forwarded_for = xff_out;
    } else if (xff.n) {
        snprintf(xff_out, xff_cap, "%.*s", (int)xff.n, xff.p);
        si->forwarded_for = xff_out;
    }
    /* x-request-id: kept when present (unless an edge proxy must not trust it), else
     * generated; without generation an external one is kept as it is. */
    bool fits = rid.n && rid.n < rid_cap;
    bool keep = fits && (!hcm->use_remote_address || hcm->preserve_external_request_id);
    if (keep || (!hcm->generate_request_id && fits)) {
        copy_str(rid_out, rid_cap, rid);
        si->request_id = rid_out;
    } else if (hcm->generate_request_id && rid_cap >= 37) {
        uuid4_format(worker_random(w), worker_random(w), rid_out);
        si->request_id = rid_out;
    }
    return ct.p && grpc_content_type_ok(ct.p, ct.n);
}

static void local(struct fwd_decision *fd, int status, uint32_t flag, const char *details, const char *body)
{
    fd->status = status;
    fd->flag = flag;
    fd->details = details;
    fd->body = body;
    fd->body_len = body ? strlen(body) : 0;
}

struct route_request fwd_route_request(const struct h1_request *rq, struct h1_str scheme, bool tls,
                                       const struct sockaddr_storage *peer)
{
    if (!scheme.n)
        scheme = tls ? (struct h1_str){"https", 5} : (struct h1_str){"http", 4};
    return (struct route_request){
        .method = rq->method, .path = rq->path, .authority = rq->host, .scheme = scheme,
        .headers = rq->headers, .nheaders = rq->nheaders, .source = (const struct sockaddr *)peer,
    };
}

bool fwd_route(struct fwd_decision *fd, const struct hcm_config *hcm, struct worker *w, const struct route_request *rr,
               bool grpc, uint64_t rnd, struct stream_info *si)
{
    fd->grpc_reply = grpc;
    fd->status = 0;
    fd->flag = 0;
    fd->details = NULL;
    fd->body = NULL;
    fd->body_len = 0;
    fd->location = NULL;
    fd->cluster = fd->cluster_weight = -1;
    fd->timeout_ms = 0;
    fd->route = route_select(hcm->routes, rr, rnd, w->scratch);
    if (!fd->route) {
        hstat(hcm, w, HS_NO_ROUTE, 1);
        local(fd, 404, 1u << RF_NO_ROUTE_FOUND, "route_not_found", NULL);
        return false;
    }
    si->route_name = route_name(fd->route);
    switch (route_kind(fd->route)) {
    case ROUTE_DIRECT: {
        hstat(hcm, w, HS_RQ_DIRECT_RESPONSE, 1);
        int status = 200, ds;
        route_direct_response(fd->route, &status, &fd->body, &fd->body_len);
        fd->status = status;
        fd->details = "direct_response";
        fd->grpc_reply = false;
        /* Envoy sends the request's own URL as Location with a 201 or 3xx direct response. */
        if ((status == 201 || (status >= 300 && status < 400)) &&
            route_redirect(fd->route, rr, w->scratch, fd->loc, sizeof fd->loc, &ds) > 0)
            fd->location = fd->loc;
        return false;
    }
    case ROUTE_REDIRECT: {
        hstat(hcm, w, HS_RQ_REDIRECT, 1);
        int status = 301;
        if (route_redirect(fd->route, rr, w->scratch, fd->loc, sizeof fd->loc, &status) < 0) {
            local(fd, 500, 0, "redirect_too_long", NULL);
            return false;
        }
        local(fd, status, 0, "via_redirect", NULL);
        fd->location = fd->loc;
        fd->grpc_reply = false;
        return false;
    }
    default:
        break;
    }
    fd->cluster = route_cluster(fd->route, rnd);
    fd->cluster_weight = route_weight_index(fd->route, rnd);
    if (fd->cluster < 0) {
        hstat(hcm, w, HS_NO_CLUSTER, 1);
        local(fd, route_cluster_not_found_status(fd->route), 1u << RF_NO_CLUSTER_FOUND, "cluster_not_found", NULL);
        return false;
    }
    fd->timeout_ms = route_timeout_ms(fd->route);
    if (grpc) {
        /* grpc-timeout becomes the timeout when the route allows it (max_grpc_timeout /
         * max_stream_duration.grpc_timeout_header_max), capped by that value (0 = no cap);
         * without the header the route timeout stands. */
        uint64_t cap, t;
        if (route_grpc_timeout_max(fd->route, &cap) && grpc_hdr_timeout_ms(rr->headers, rr->nheaders, &t)) {
            if (cap && t > cap)
                t = cap;
            fd->timeout_ms = t;
        }
    }
    return true;
}

struct wcluster *fwd_cluster(struct worker *w, struct snapshot *snap, int cluster, struct stream_info *si)
{
    struct wcluster *wc = worker_cluster_in(w, snap, cluster);
    wcluster_hold(wc);
    si->upstream_cluster = wc->c->name;
    stats_inc(wc->c->stats, w->id, CS_UPSTREAM_RQ_TOTAL);
    stats_add(wc->c->stats, w->id, CS_UPSTREAM_RQ_ACTIVE, 1);
    return wc;
}

const struct host *fwd_pick_host(struct worker *w, struct wcluster *wc, const struct route_entry *route,
                                 const struct route_request *rr, const struct sockaddr_storage *local,
                                 struct host *od, char *orig_dst, size_t orig_cap, uint32_t *host_idx,
                                 bool *host_counted, struct stream_info *si)
{
    return fwd_pick_host_avoiding(w, wc, route, rr, local, od, orig_dst, orig_cap, host_idx, host_counted, si, NULL,
                                  NULL, 0);
}

const struct host *fwd_pick_host_avoiding(struct worker *w, struct wcluster *wc, const struct route_entry *route,
                                          const struct route_request *rr, const struct sockaddr_storage *local,
                                          struct host *od, char *orig_dst, size_t orig_cap, uint32_t *host_idx,
                                          bool *host_counted, struct stream_info *si,
                                          bool (*avoid)(const void *ctx, uint32_t host), const void *ctx,
                                          uint32_t extra_picks)
{
    if (wc->c->type == CLUSTER_ORIGINAL_DST) {
        /* The upstream is where the client was going before iptables redirected it. */
        *od = (struct host){.addr = *local};
        sockaddr_format(local, orig_dst, orig_cap);
        snprintf(od->addr_str, sizeof od->addr_str, "%s", orig_dst);
        si->upstream_host = orig_dst;
        *host_idx = UPSTREAM_NO_POOL;
        return od;
    }
    /* Circuit breaker max_requests, at the route's priority. */
    if (!cb_acquire(wc->c->cb, route_priority(route), CB_RQ, w->id)) {
        *host_idx = FWD_HOST_OVERFLOW;
        return NULL;
    }
    uint64_t hash = 0;
    bool has_hash = route_hash(route, rr, &hash);
    int host = wc->hs->n ? lb_pick(wc->hs->lb, wc->lb, has_hash, hash, wc->active_rq, NULL) : -1;
    /* A retry's host predicate (previous_hosts): pick again while the pick was tried already. */
    for (uint32_t i = 0; avoid && host >= 0 && i < extra_picks && avoid(ctx, (uint32_t)host); i++)
        host = lb_pick(wc->hs->lb, wc->lb, has_hash, hash, wc->active_rq, NULL);
    if (host < 0) {
        cb_release(wc->c->cb, route_priority(route), CB_RQ);
        stats_inc(wc->c->stats, w->id, CS_UPSTREAM_CX_NONE_HEALTHY);
        return NULL;
    }
    if (wc->hs->panic)
        stats_inc(wc->c->cb->stats, w->id, CBS_LB_HEALTHY_PANIC);
    *host_idx = (uint32_t)host;
    wc->pools[host].active_rq++;
    wc->active_rq[host]++;
    if (wc->hs->hosts[host].hh)
        atomic_fetch_add_explicit(&wc->hs->hosts[host].hh->rq_active, 1, memory_order_relaxed);
    *host_counted = true;
    si->upstream_host = wc->hs->hosts[host].addr_str;
    return &wc->hs->hosts[host];
}

void fwd_release_host(struct wcluster *wc, const struct route_entry *route, uint32_t host_idx, bool *host_counted)
{
    if (*host_counted) {
        wc->pools[host_idx].active_rq--;
        wc->active_rq[host_idx]--;
        if (wc->hs->hosts[host_idx].hh)
            atomic_fetch_sub_explicit(&wc->hs->hosts[host_idx].hh->rq_active, 1, memory_order_relaxed);
        cb_release(wc->c->cb, route_priority(route), CB_RQ);
        *host_counted = false;
    }
}

/* The host of wc's host set that si->upstream_host names (a pointer into it), or NULL. */
static const struct host *stream_host(const struct wcluster *wc, const struct stream_info *si)
{
    const struct host_set *hs = wc->hs;
    if (!si->upstream_host || !hs->n)
        return NULL;
    const char *p = si->upstream_host, *base = (const char *)hs->hosts;
    if (p < base || p >= base + hs->n * sizeof *hs->hosts)
        return NULL;
    size_t i = (size_t)(p - base) / sizeof *hs->hosts;
    return hs->hosts[i].addr_str == p ? &hs->hosts[i] : NULL;
}

void fwd_report_attempt(const struct wcluster *wc, const struct stream_info *si, int upstream_status, uint32_t flags)
{
    const struct host *h = stream_host(wc, si);
    if (!h || !h->hh || (flags & (1u << RF_UPSTREAM_OVERFLOW)))
        return;
    enum outlier_local local = OL_NONE;
    if (!upstream_status) {
        if (flags & (1u << RF_UPSTREAM_CONNECTION_FAILURE))
            local = OL_CONNECT_FAILED;
        else if (flags & (1u << RF_UPSTREAM_REQUEST_TIMEOUT))
            local = OL_TIMEOUT;
        else if (flags & ((1u << RF_UPSTREAM_CONNECTION_TERMINATION) | (1u << RF_UPSTREAM_REMOTE_RESET)))
            local = OL_RESET;
    }
    outlier_report(wc->c, h, upstream_status, local);
}

static int put(struct buf *b, const char *p, size_t n) { return buf_append(b, p, n); }

static int put_line(struct buf *b, struct h1_str n, struct h1_str v)
{
    return put(b, n.p, n.n) || put(b, ": ", 2) || put(b, v.p, v.n) || put(b, "\r\n", 2);
}

/* True when some header of h[0..n) is Connection (only then can a name be nominated). */
static bool has_connection(const struct h1_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].name.n == 10 && h1_str_eq_ci(h[i].name, "connection"))
            return true;
    return false;
}

/* x-forwarded-client-cert as Envoy's connection manager treats it (mutateXfccRequestHeader):
 * ALWAYS_FORWARD_ONLY passes it on; SANITIZE, or any mode on a connection without a client
 * certificate, drops it; FORWARD_ONLY passes it on; APPEND_FORWARD appends this connection's
 * element after the received value(s) with ','; SANITIZE_SET replaces it with the element.
 * Returns true when the received header lines are not copied as they are. */
static bool xfcc_rewritten(const struct hcm_config *hcm, const struct transport *tp)
{
    int m = hcm->forward_client_cert;
    if (m == XFCC_ALWAYS_FORWARD_ONLY)
        return false;
    if (m == XFCC_FORWARD_ONLY)
        return !(tp && tp->peer_cert);
    return true;
}

static bool is_xfcc(struct h1_str n) { return n.n == 23 && h1_str_eq_ci(n, "x-forwarded-client-cert"); }

/* Writes the APPEND_FORWARD / SANITIZE_SET header (nothing otherwise). */
static int put_xfcc(struct buf *b, const struct hcm_config *hcm, const struct transport *tp, const struct h1_request *rq)
{
    int m = hcm->forward_client_cert;
    if ((m != XFCC_APPEND_FORWARD && m != XFCC_SANITIZE_SET) || !tp || !tp->xfcc)
        return 0;
    if (put(b, "x-forwarded-client-cert: ", 25))
        return -1;
    if (m == XFCC_APPEND_FORWARD) {
        for (size_t i = 0; i < rq->nheaders; i++) {
            if (is_xfcc(rq->headers[i].name) && rq->headers[i].value.n &&
                (put(b, rq->headers[i].value.p, rq->headers[i].value.n) || put(b, ",", 1)))
                return -1;
        }
    }
    return put(b, tp->xfcc, strlen(tp->xfcc)) || put(b, "\r\n", 2) ? -1 : 0;
}

int fwd_write_request_head(struct buf *b, const struct hcm_config *hcm, struct worker *w,
                           const struct fwd_request_head *in)
{
    const struct h1_request *rq = in->rq;
    if (put(b, rq->method.p, rq->method.n) || put(b, " ", 1))
        return -1;
    int plen = route_rewrite_path(in->route, in->rr, w->scratch, buf_wpos(b), buf_room(b));
    if (plen < 0)
        return -1;
    b->tail += (size_t)plen;
    if (put(b, " HTTP/1.1\r\n", 11))
        return -1;
    /* Host: rewritten, or as received. */
    char hostbuf[512];
    bool auto_host = false;
    int hl = route_host_rewrite(in->route, in->cluster_weight, in->rr, w->scratch, hostbuf, sizeof hostbuf, &auto_host);
    const char *hn = in->host->hostname ? in->host->hostname : in->host->addr_str;
    int bad;
    if (hl > 0)
        bad = http_put_header(b, "host", hostbuf, (size_t)hl);
    else if (auto_host)
        bad = http_put_header(b, "host", hn, strlen(hn));
    else
        bad = http_put_header(b, "host", rq->host.p, rq->host.n);
    if (bad)
        return -1;
    const struct header_mutation *lv[ROUTE_MUTATION_LEVELS];
    size_t nlv = route_request_mutations(in->route, in->cluster_weight, lv);
    bool conn = has_connection(rq->headers, rq->nheaders);
    bool have_xfp = false, cookie_done = false;
    bool attempts = in->route && in->route->vhost && in->route->vhost->attempt_count_request;
    const struct transport *dtp = in->si->downstream_tp;
    bool xfcc_own = xfcc_rewritten(hcm, dtp);
    for (size_t i = 0; i < rq->nheaders; i++) {
        const struct h1_header *h = &rq->headers[i];
        struct h1_str n = h->name;
        if (h1_str_eq_ci(n, "host") || (conn && http_in_connection_tokens(rq->headers, rq->nheaders, n)))
            continue;
        if (http_is_hop_by_hop(n)) {
            /* te: trailers is the one connection-specific header HTTP/2 keeps (gRPC needs it). */
            if (!(in->h2_upstream && h1_str_eq_ci(n, "te") && h->value.n == 8 &&
                  strncasecmp(h->value.p, "trailers", 8) == 0))
                continue;
        }
        if (h1_str_eq_ci(n, "expect") && !hcm->proxy_100_continue)
            continue;
        if (h1_str_eq_ci(n, "x-request-id") || h1_str_eq_ci(n, "x-forwarded-for") ||
            (attempts && h1_str_eq_ci(n, "x-envoy-attempt-count")) || (xfcc_own && is_xfcc(n)))
            continue; /* written below */
        if (h1_str_eq_ci(n, "x-forwarded-proto")) {
            if (hcm->use_remote_address)
                continue; /* the edge proxy sets it from the real connection */
            have_xfp = true;
        }
        if (nlv && http_mutation_drops(lv, nlv, n))
            continue;
        if (in->join_cookies && h1_str_eq_ci(n, "cookie")) {
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
        if (put_line(b, n, h->value))
            return -1;
    }
    const struct stream_info *si = in->si;
    if (si->forwarded_for && http_put_header(b, "x-forwarded-for", si->forwarded_for, strlen(si->forwarded_for)))
        return -1;
    if (!have_xfp && http_put_header(b, "x-forwarded-proto", in->tls ? "https" : "http", in->tls ? 5 : 4))
        return -1;
    if (si->request_id && http_put_header(b, "x-request-id", si->request_id, strlen(si->request_id)))
        return -1;
    if (xfcc_own && put_xfcc(b, hcm, dtp, rq) < 0)
        return -1;
    if (in->timeout_ms) {
        char t[24];
        if (http_put_header(b, "x-envoy-expected-rq-timeout-ms", t, u64_to_dec(in->timeout_ms, t)))
            return -1;
    }
    if (attempts) {
        /* VirtualHost.include_request_attempt_count: 1 for the first try, then per retry. */
        char t[24];
        if (http_put_header(b, "x-envoy-attempt-count", t, u64_to_dec(si->attempts ? si->attempts : 1, t)))
            return -1;
    }
    if (nlv && http_mutation_add(b, lv, nlv, rq->headers, rq->nheaders, si) < 0)
        return -1;
    return 0;
}

int fwd_write_response_head(struct buf *o, const struct hcm_config *hcm, const struct route_entry *route,
                            int cluster_weight, const struct h1_response *rs, const struct stream_info *si,
                            bool keep_upgrade, bool drop_te)
{
    int st = rs->status;
    char code[4] = {(char)('0' + st / 100 % 10), (char)('0' + st / 10 % 10), (char)('0' + st % 10), ' '};
    const char *reason = http_reason(st);
    if (put(o, "HTTP/1.1 ", 9) || put(o, code, 4) || put(o, reason, strlen(reason)) || put(o, "\r\n", 2))
        return -1;
    bool have_date = false, have_server = false;
    const struct header_mutation *lv[ROUTE_MUTATION_LEVELS];
    size_t nlv = route_response_mutations(route, cluster_weight, lv);
    bool conn = has_connection(rs->headers, rs->nheaders);
    for (size_t i = 0; i < rs->nheaders; i++) {
        const struct h1_header *h = &rs->headers[i];
        if (http_is_hop_by_hop(h->name) && !(keep_upgrade && h1_str_eq_ci(h->name, "upgrade")))
            continue;
        if (conn && !keep_upgrade && http_in_connection_tokens(rs->headers, rs->nheaders, h->name))
            continue;
        if (drop_te && h1_str_eq_ci(h->name, "transfer-encoding"))
            continue;
        if (h1_str_eq_ci(h->name, "server")) {
            if (hcm->server_header_transformation == 0)
                continue;
            have_server = true;
        }
        if (h1_str_eq_ci(h->name, "date"))
            have_date = true;
        if (nlv && http_mutation_drops(lv, nlv, h->name))
            continue;
        if (put_line(o, h->name, h->value))
            return -1;
    }
    if (!have_date) {
        char date[40];
        http_date_now(date, sizeof date);
        if (http_put_header(o, "date", date, strlen(date)))
            return -1;
    }
    if (!have_server && hcm->server_header_transformation != 2 &&
        http_put_header(o, "server", hcm->server_name, strlen(hcm->server_name)))
        return -1;
    char t[24];
    size_t tn = u64_to_dec((si->upstream_headers_us - si->upstream_start_us) / 1000u, t);
    if (http_put_header(o, "x-envoy-upstream-service-time", t, tn))
        return -1;
    if (hcm->always_set_request_id_in_response && si->request_id &&
        http_put_header(o, "x-request-id", si->request_id, strlen(si->request_id)))
        return -1;
    if (route && route->vhost && route->vhost->attempt_count_response &&
        http_put_header(o, "x-envoy-attempt-count", t, u64_to_dec(si->attempts ? si->attempts : 1, t)))
        return -1;
    if (nlv && http_mutation_add(o, lv, nlv, rs->headers, rs->nheaders, si) < 0)
        return -1;
    return 0;
}

int fwd_write_local_head(struct buf *b, const struct hcm_config *hcm, int status, const char *body, size_t body_len,
                         const char *location, bool grpc, int *wire_status, int *grpc_status)
{
    return fwd_write_local_head_grpc(b, hcm, status, body, body_len, location, grpc, -1, wire_status, grpc_status);
}

int fwd_write_local_head_grpc(struct buf *b, const struct hcm_config *hcm, int status, const char *body, size_t body_len,
                              const char *location, bool grpc, int grpc_override, int *wire_status, int *grpc_status)
{
    char date[40];
    http_date_now(date, sizeof date);
    char hdr[640];
    int n;
    if (grpc) {
        /* gRPC clients read errors from grpc-status, not from :status: answer trailers-only
         * (a 200 head that ends the stream), as Envoy does. */
        char text[256], msg[256];
        size_t tl = body ? (body_len < sizeof text - 1 ? body_len : sizeof text - 1) : 0;
        if (body)
            memcpy(text, body, tl);
        else
            tl = (size_t)snprintf(text, sizeof text, "%s", http_reason(status));
        size_t mlen = grpc_message_encode(text, tl, msg, sizeof msg - 1);
        msg[mlen < sizeof msg ? mlen : sizeof msg - 1] = '\0'; /* cut to fit: a cut %XX reads as text */
        *grpc_status = grpc_override >= 0 ? grpc_override : (int)grpc_status_from_http(status);
        *wire_status = 200;
        n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: %d\r\n"
                     "grpc-message: %s\r\ndate: %s\r\nserver: %s\r\n",
                     *grpc_status, msg, date, hcm->server_name);
    } else {
        *grpc_status = -1;
        *wire_status = status;
        n = snprintf(hdr, sizeof hdr, "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\n%sdate: %s\r\nserver: %s\r\n", status,
                     http_reason(status), body_len, body_len ? "content-type: text/plain\r\n" : "", date,
                     hcm->server_name);
    }
    if (n < 0 || (size_t)n >= sizeof hdr || put(b, hdr, (size_t)n))
        return -1;
    if (location && !grpc && http_put_header(b, "location", location, strlen(location)))
        return -1;
    return 0;
}

void fwd_note_local_reply(struct stream_info *si, int wire_status, int grpc_status, uint32_t flag,
                          const char *details)
{
    si->status = wire_status;
    if (grpc_status >= 0)
        si->grpc_status = grpc_status;
    si->flags |= flag;
    si->local_reply_details = details;
}

#define RESET_BEFORE "upstream connect error or disconnect/reset before headers. reset reason: "

const struct fwd_reply fwd_replies[] = {
    [FWD_R_NO_HEALTHY] = {503, 1u << RF_NO_HEALTHY_UPSTREAM, "no_healthy_upstream", "no healthy upstream"},
    [FWD_R_CONNECT_FAILURE] = {503, 1u << RF_UPSTREAM_CONNECTION_FAILURE, "upstream_reset_before_response_started",
                               RESET_BEFORE "connection failure"},
    [FWD_R_CONNECT_TIMEOUT] = {503, 1u << RF_UPSTREAM_CONNECTION_FAILURE, "upstream_reset_before_response_started",
                               RESET_BEFORE "connection timeout"},
    [FWD_R_TERMINATION] = {503, 1u << RF_UPSTREAM_CONNECTION_TERMINATION, "upstream_reset_before_response_started",
                           RESET_BEFORE "connection termination"},
    [FWD_R_ROUTE_TIMEOUT] = {504, 1u << RF_UPSTREAM_REQUEST_TIMEOUT, "upstream_response_timeout",
                             "upstream request timeout"},
    [FWD_R_UPSTREAM_HEADERS_TOO_LARGE] = {502, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "upstream_headers_too_large", NULL},
    [FWD_R_UPSTREAM_PROTOCOL_ERROR] = {502, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "upstream_protocol_error", NULL},
    [FWD_R_RESPONSE_HEADERS_TOO_LARGE] = {502, 1u << RF_UPSTREAM_PROTOCOL_ERROR, "response_headers_too_large", NULL},
    [FWD_R_REQUEST_HEADERS_TOO_LARGE] = {431, 0, "request_headers_too_large", NULL},
    [FWD_R_UPGRADE_FAILED] = {403, 0, "upgrade_failed", NULL},
    [FWD_R_BAD_CHUNKED_BODY] = {400, 1u << RF_DOWNSTREAM_PROTOCOL_ERROR, "bad_chunked_body", NULL},
    [FWD_R_OVERFLOW] = {503, 1u << RF_UPSTREAM_OVERFLOW, "upstream_reset_before_response_started{overflow}",
                        RESET_BEFORE "overflow"},
};

int fwd_h1_head_failure(int r, bool full, bool peer_closed)
{
    if (r == H1_INCOMPLETE) {
        if (full)
            return FWD_R_UPSTREAM_HEADERS_TOO_LARGE;
        return peer_closed ? FWD_R_TERMINATION : -1;
    }
    return r < 0 ? FWD_R_UPSTREAM_PROTOCOL_ERROR : -1;
}

void fwd_finish(const struct hcm_config *hcm, struct worker *w, struct wcluster *wc, const struct stream_info *si,
                int upstream_status)
{
    static const size_t classes[] = {HS_DOWNSTREAM_RQ_1XX, HS_DOWNSTREAM_RQ_2XX, HS_DOWNSTREAM_RQ_3XX,
                                     HS_DOWNSTREAM_RQ_4XX, HS_DOWNSTREAM_RQ_5XX};
    if (si->status >= 100 && si->status < 600)
        hstat(hcm, w, classes[si->status / 100 - 1], 1);
    hstat(hcm, w, HS_DOWNSTREAM_RQ_ACTIVE, -1);
    hstat(hcm, w, HS_DOWNSTREAM_RQ_COMPLETED, 1);
    if (wc) {
        struct stat_block *cs = wc->c->stats;
        stats_add(cs, w->id, CS_UPSTREAM_RQ_ACTIVE, -1);
        if (upstream_status >= 100 && upstream_status < 600) {
            static const size_t uclasses[] = {CS_UPSTREAM_RQ_1XX, CS_UPSTREAM_RQ_2XX, CS_UPSTREAM_RQ_3XX,
                                              CS_UPSTREAM_RQ_4XX, CS_UPSTREAM_RQ_5XX};
            stats_inc(cs, w->id, uclasses[upstream_status / 100 - 1]);
            stats_code(cs, w->id, upstream_status);
            stats_inc(cs, w->id, CS_UPSTREAM_RQ_COMPLETED);
        }
        fwd_report_attempt(wc, si, upstream_status, si->flags);
    }
    for (size_t i = 0; i < hcm->n_access_logs; i++)
        access_log_write(hcm->access_logs[i], si, w->log_buf);
}
