/* Retry decisions, back-off and the request body copy (see retry.h). */
#include "proxy/retry.h"

#include "proxy/circuit_breaker.h"
#include "proxy/worker.h"

#include <string.h>

#include "proxy/grpc_headers.h"
#include "proxy/route.h"

static const struct {
    const char *name;
    uint32_t bit;
} retry_names[] = {
    {"5xx", RETRY_ON_5XX},
    {"gateway-error", RETRY_ON_GATEWAY_ERROR},
    {"reset", RETRY_ON_RESET},
    {"reset-before-request", RETRY_ON_RESET_BEFORE_REQUEST},
    {"connect-failure", RETRY_ON_CONNECT_FAILURE},
    {"envoy-ratelimited", RETRY_ON_ENVOY_RATELIMITED},
    {"retriable-4xx", RETRY_ON_RETRIABLE_4XX},
    {"refused-stream", RETRY_ON_REFUSED_STREAM},
    {"retriable-status-codes", RETRY_ON_RETRIABLE_STATUS_CODES},
    {"retriable-headers", RETRY_ON_RETRIABLE_HEADERS},
    {"http3-post-connect-failure", RETRY_ON_HTTP3_POST_CONNECT_FAILURE},
    {"cancelled", RETRY_ON_GRPC_CANCELLED},
    {"deadline-exceeded", RETRY_ON_GRPC_DEADLINE_EXCEEDED},
    {"internal", RETRY_ON_GRPC_INTERNAL},
    {"resource-exhausted", RETRY_ON_GRPC_RESOURCE_EXHAUSTED},
    {"unavailable", RETRY_ON_GRPC_UNAVAILABLE},
};

static bool is_space(char c) { return c == ' ' || c == '\t'; }

int retry_on_parse(const char *s, size_t n, bool http, bool grpc, bool strict, uint32_t *bits, const char **bad,
                   size_t *badlen)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        while (i < n && s[i] != ',')
            i++;
        size_t a = start, e = i;
        while (a < e && is_space(s[a]))
            a++;
        while (e > a && is_space(s[e - 1]))
            e--;
        i++; /* past the comma */
        if (a == e)
            continue;
        bool found = false;
        for (size_t k = 0; k < sizeof retry_names / sizeof retry_names[0]; k++) {
            uint32_t bit = retry_names[k].bit;
            bool allowed = (bit & RETRY_ON_GRPC_MASK) ? grpc : http;
            if (allowed && strlen(retry_names[k].name) == e - a && memcmp(retry_names[k].name, s + a, e - a) == 0) {
                *bits |= bit;
                found = true;
                break;
            }
        }
        if (!found && strict) {
            if (bad) {
                *bad = s + a;
                *badlen = e - a;
            }
            return -1;
        }
    }
    return 0;
}

static const struct h1_str *find_header(const struct h1_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (h1_str_eq_ci(h[i].name, name))
            return &h[i].value;
    return NULL;
}

static bool parse_u32(struct h1_str v, uint32_t *out)
{
    uint64_t x = 0;
    size_t i = 0;
    while (i < v.n && is_space(v.p[i]))
        i++;
    if (i == v.n)
        return false;
    for (; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++) {
        x = x * 10 + (uint64_t)(v.p[i] - '0');
        if (x > UINT32_MAX)
            return false;
    }
    while (i < v.n && is_space(v.p[i]))
        i++;
    if (i != v.n)
        return false;
    *out = (uint32_t)x;
    return true;
}

/* x-envoy-retriable-status-codes: a comma-separated list, each value kept (up to a bound). */
static void header_codes(struct retry_state *rs, struct h1_str v)
{
    size_t i = 0;
    while (i < v.n && rs->n_hdr_codes < RETRY_HEADER_CODES_MAX) {
        size_t a = i;
        while (i < v.n && v.p[i] != ',')
            i++;
        uint32_t code;
        if (parse_u32((struct h1_str){v.p + a, i - a}, &code) && code >= 100 && code < 600)
            rs->hdr_codes[rs->n_hdr_codes++] = code;
        i++;
    }
}

void retry_init(struct retry_state *rs, const struct route_entry *route, const struct h1_request *rq,
                struct route_scratch *scratch, timer_cb cb_backoff, timer_cb cb_per_try, void *data)
{
    memset(rs, 0, sizeof *rs);
    timer_init(&rs->backoff, cb_backoff, data);
    timer_init(&rs->per_try, cb_per_try, data);
    rs->attempt = 1;
    rs->backoff_step = 1;
    rs->base_ms = RETRY_BASE_INTERVAL_MS;
    rs->max_ms = 10 * RETRY_BASE_INTERVAL_MS;
    rs->limit = RETRY_BODY_MAX;
    if (!route || route_kind(route) == ROUTE_REDIRECT || route_kind(route) == ROUTE_DIRECT)
        return;
    rs->priority = route_priority(route);
    if (route->buffer_limit && route->buffer_limit < rs->limit)
        rs->limit = route->buffer_limit;
    const struct retry_policy *p = route->retry;
    if (p) {
        rs->pol = p;
        rs->on = p->on;
        rs->retries_left = p->num_retries;
        rs->base_ms = p->base_ms;
        rs->max_ms = p->max_ms;
        /* retriable_request_headers: the policy only applies to requests that match them. */
        if (p->nrequest_headers &&
            !route_header_list_match(p->request_headers, p->nrequest_headers, rq->headers, rq->nheaders, scratch))
            rs->on = 0;
    } else {
        rs->retries_left = 1;
    }
    /* The request's own conditions are added to the route's (Envoy ORs them). */
    const struct h1_str *v = find_header(rq->headers, rq->nheaders, "x-envoy-retry-on");
    if (v)
        retry_on_parse(v->p, v->n, true, false, false, &rs->on, NULL, NULL);
    if ((v = find_header(rq->headers, rq->nheaders, "x-envoy-retry-grpc-on")))
        retry_on_parse(v->p, v->n, false, true, false, &rs->on, NULL, NULL);
    if (rs->on && (v = find_header(rq->headers, rq->nheaders, "x-envoy-max-retries"))) {
        uint32_t m;
        if (parse_u32(*v, &m))
            rs->retries_left = m;
    }
    if ((v = find_header(rq->headers, rq->nheaders, "x-envoy-retriable-status-codes"))) {
        header_codes(rs, *v);
        if (rs->n_hdr_codes)
            rs->on |= RETRY_ON_RETRIABLE_STATUS_CODES;
    }
    rs->active = rs->on != 0 && rs->retries_left > 0;
    rs->buffering = rs->active;
}

uint64_t retry_per_try_timeout_ms(const struct retry_state *rs)
{
    return rs->pol ? rs->pol->per_try_timeout_ms : 0;
}

/* The circuit breaker's max_retries: one slot per retry in flight, held from the retry's
 * start until the next decision or the end of the stream. */
static void release_budget(struct retry_state *rs)
{
    if (rs->cb_cluster)
        cb_retry_end(rs->cb_cluster, rs->priority);
    rs->cb_cluster = NULL;
}

bool retry_budget_allows(struct retry_state *rs, struct wcluster *wc, unsigned slot)
{
    release_budget(rs);
    if (!cb_retry_begin(wc->c, rs->priority, slot))
        return false;
    rs->cb_cluster = wc->c;
    return true;
}

/* A retriable outcome: yes when a retry is left, the body can be sent again and the budget
 * allows it; otherwise why not. */
static enum retry_decision allowed(struct retry_state *rs, struct wcluster *wc)
{
    if (!rs->buffering)
        return RETRY_NO;
    if (rs->retries_left == 0)
        return RETRY_LIMIT;
    if (!retry_budget_allows(rs, wc, wc->w->id))
        return RETRY_OVERFLOW;
    rs->retries_left--;
    return RETRY_YES;
}

enum retry_decision retry_check_reset(struct retry_state *rs, struct wcluster *wc, enum retry_reset why,
                                      bool request_sent)
{
    if (!rs->active)
        return RETRY_NO;
    uint32_t on = rs->on;
    bool yes = (on & (RETRY_ON_5XX | RETRY_ON_GATEWAY_ERROR | RETRY_ON_RESET)) ||
               ((on & RETRY_ON_RESET_BEFORE_REQUEST) && !request_sent && why != RETRY_RESET_TIMEOUT) ||
               ((on & RETRY_ON_REFUSED_STREAM) && why == RETRY_RESET_REFUSED) ||
               ((on & RETRY_ON_CONNECT_FAILURE) && why == RETRY_RESET_CONNECT_FAILURE);
    return yes ? allowed(rs, wc) : RETRY_NO;
}

static bool code_listed(const uint32_t *codes, size_t n, int status)
{
    for (size_t i = 0; i < n; i++)
        if ((int)codes[i] == status)
            return true;
    return false;
}

enum retry_decision retry_check_response(struct retry_state *rs, struct wcluster *wc, int status,
                                         const struct h1_header *h, size_t n, bool grpc, struct route_scratch *scratch)
{
    if (!rs->active)
        return RETRY_NO;
    uint32_t on = rs->on;
    bool yes = false;
    if ((on & RETRY_ON_5XX) && status >= 500 && status < 600)
        yes = true;
    else if ((on & RETRY_ON_GATEWAY_ERROR) && status >= 502 && status <= 504)
        yes = true;
    else if ((on & RETRY_ON_RETRIABLE_4XX) && status == 409)
        yes = true;
    else if ((on & RETRY_ON_RETRIABLE_STATUS_CODES) &&
             ((rs->pol && code_listed(rs->pol->status_codes, rs->pol->nstatus, status)) ||
              code_listed(rs->hdr_codes, rs->n_hdr_codes, status)))
        yes = true;
    else if ((on & RETRY_ON_ENVOY_RATELIMITED) && find_header(h, n, "x-envoy-ratelimited"))
        yes = true;
    else if ((on & RETRY_ON_RETRIABLE_HEADERS) && rs->pol && rs->pol->nheaders) {
        /* Any one of retriable_headers matching the response is enough. */
        for (size_t i = 0; i < rs->pol->nheaders && !yes; i++)
            yes = route_header_list_match(&rs->pol->headers[i], 1, h, n, scratch);
    }
    if (!yes && grpc && (on & RETRY_ON_GRPC_MASK)) {
        /* A trailers-only gRPC answer carries grpc-status in its head. */
        int gs = grpc_hdr_status(h, n);
        yes = (gs == 1 && (on & RETRY_ON_GRPC_CANCELLED)) || (gs == 4 && (on & RETRY_ON_GRPC_DEADLINE_EXCEEDED)) ||
              (gs == 13 && (on & RETRY_ON_GRPC_INTERNAL)) || (gs == 8 && (on & RETRY_ON_GRPC_RESOURCE_EXHAUSTED)) ||
              (gs == 14 && (on & RETRY_ON_GRPC_UNAVAILABLE));
    }
    return yes ? allowed(rs, wc) : RETRY_NO;
}

uint64_t retry_backoff_ms(struct retry_state *rs, uint64_t rnd)
{
    uint32_t step = rs->backoff_step < 63 ? rs->backoff_step : 63;
    uint64_t mult = (1ull << step) - 1;
    uint64_t range = rs->base_ms && mult > UINT64_MAX / rs->base_ms ? UINT64_MAX : mult * rs->base_ms;
    if (range <= rs->max_ms)
        rs->backoff_step++;
    if (range == 0)
        return 0;
    uint64_t d = rnd % range;
    return d < rs->max_ms ? d : rs->max_ms;
}

void retry_note_host(struct retry_state *rs, uint32_t host)
{
    if (retry_host_tried(rs, host))
        return;
    if (rs->nprev < RETRY_PREV_HOSTS_MAX)
        rs->prev_hosts[rs->nprev++] = host;
    else
        rs->prev_hosts[(rs->attempt - 1) % RETRY_PREV_HOSTS_MAX] = host;
}

bool retry_host_tried(const struct retry_state *rs, uint32_t host)
{
    for (uint8_t i = 0; i < rs->nprev; i++)
        if (rs->prev_hosts[i] == host)
            return true;
    return false;
}

uint32_t retry_host_attempts(const struct retry_state *rs)
{
    if (!rs->pol || !rs->pol->previous_hosts || rs->attempt < 2)
        return 0;
    return rs->pol->host_selection_attempts;
}

size_t retry_body_sent(struct retry_state *rs, struct buf_pool *pool, const char *p, size_t n)
{
    uint64_t end = rs->pos + n;
    size_t fresh = end > rs->acked ? (size_t)(end - rs->acked) : 0;
    if (fresh && rs->buffering) {
        if (!rs->body)
            rs->body = buf_get(pool);
        if (!rs->body || rs->acked + fresh > rs->limit || buf_append(rs->body, p + (n - fresh), fresh) < 0) {
            /* Past the limit: this request is no longer retried. */
            rs->buffering = false;
            buf_put(pool, rs->body);
            rs->body = NULL;
        }
    }
    rs->pos = end;
    if (end > rs->acked)
        rs->acked = end;
    return fresh;
}

int retry_body_rewind(struct retry_state *rs, struct buf_pool *pool, struct buf **rqbody)
{
    size_t sent = rs->body ? buf_len(rs->body) : 0;
    size_t unsent = *rqbody ? buf_len(*rqbody) : 0;
    if (!rs->buffering || sent != rs->acked || sent + unsent > BUF_SIZE)
        return -1;
    rs->pos = 0;
    if (sent == 0)
        return 0;
    /* body = sent ++ unsent becomes the request body; the old body buffer is the new copy. */
    struct buf *b = rs->body;
    buf_compact_to(b, 0);
    if (unsent)
        buf_append(b, buf_rpos(*rqbody), unsent);
    struct buf *old = *rqbody;
    *rqbody = b;
    if (!old)
        old = buf_get(pool);
    if (old)
        old->head = old->tail = 0;
    rs->body = old;
    if (!old)
        rs->buffering = false;
    return 0;
}

void retry_accepted(struct retry_state *rs, struct buf_pool *pool)
{
    rs->active = rs->buffering = false;
    buf_put(pool, rs->body);
    rs->body = NULL;
}

void retry_finish(struct retry_state *rs, struct loop *l, struct buf_pool *pool, struct buf *rqbody)
{
    timer_stop(l, &rs->backoff);
    timer_stop(l, &rs->per_try);
    if (rqbody && rs->acked > rs->pos) {
        size_t replay = rs->acked - rs->pos;
        size_t len = buf_len(rqbody);
        rqbody->head += replay < len ? replay : len;
    }
    rs->pos = rs->acked;
    release_budget(rs);
    buf_put(pool, rs->body);
    rs->body = NULL;
    rs->active = rs->buffering = false;
}
