/* The fault and local rate limit filters at request time (see hfilter.h). Lock-free: the
 * shared state is a token bucket of two atomics per config and one active-fault counter per
 * HCM fault filter; per-worker stats slots as everywhere else. */
#include "proxy/hfilter.h"

#include <string.h>

#include "common/loop.h"
#include "common/stats.h"
#include "proxy/http_headers.h"
#include "proxy/stream_info.h"
#include "proxy/worker.h"

enum { FS_DELAYS, FS_ABORTS, FS_RESPONSE_RL, FS_OVERFLOW, FS_ACTIVE };
enum { LS_ENABLED, LS_ENFORCED, LS_RATE_LIMITED, LS_OK };

static bool draw(struct worker *w, uint32_t num, uint32_t den)
{
    return num && (num >= den || worker_random(w) % den < num);
}

static bool header_u64(const struct route_request *rr, const char *name, uint64_t *out)
{
    for (size_t i = 0; i < rr->nheaders; i++) {
        if (!h1_str_eq_ci(rr->headers[i].name, name))
            continue;
        struct h1_str v = rr->headers[i].value;
        if (!v.n || v.n > 18)
            return false;
        uint64_t x = 0;
        for (size_t k = 0; k < v.n; k++) {
            if (v.p[k] < '0' || v.p[k] > '9')
                return false;
            x = x * 10 + (uint64_t)(v.p[k] - '0');
        }
        *out = x;
        return true;
    }
    return false;
}

/* The percentage of a header-controlled fault: the -percentage header's numerator (capped by
 * the configured one) over the configured denominator; the configured one without it. */
static bool header_draw(struct worker *w, const struct route_request *rr, const char *pct_header, uint32_t num,
                        uint32_t den)
{
    uint64_t h;
    if (header_u64(rr, pct_header, &h) && h < num)
        num = (uint32_t)h;
    return draw(w, num, den);
}

static bool fault_matches(const struct hf_fault *c, const struct route_request *rr, const char *cluster,
                          struct worker *w)
{
    if (c->upstream_cluster && (!cluster || strcmp(cluster, c->upstream_cluster) != 0))
        return false;
    if (c->nnodes) {
        struct h1_str node = {0};
        for (size_t i = 0; i < rr->nheaders; i++)
            if (h1_str_eq_ci(rr->headers[i].name, "x-envoy-downstream-service-node"))
                node = rr->headers[i].value;
        bool found = false;
        for (size_t i = 0; i < c->nnodes && node.p && !found; i++)
            found = strlen(c->nodes[i]) == node.n && memcmp(c->nodes[i], node.p, node.n) == 0;
        if (!found)
            return false;
    }
    return !c->nheaders || route_headers_match(c->headers, c->nheaders, rr, w->scratch);
}

/* The delay for this request, or 0 for none (a zero delay is none, as in Envoy). */
static uint64_t fault_delay(const struct hf_fault *c, const struct route_request *rr, struct worker *w)
{
    if (!c->delay)
        return 0;
    if (c->delay_header) {
        uint64_t ms;
        if (!header_u64(rr, "x-envoy-fault-delay-request", &ms) ||
            !header_draw(w, rr, "x-envoy-fault-delay-request-percentage", c->delay_num, c->delay_den))
            return 0;
        return ms;
    }
    return draw(w, c->delay_num, c->delay_den) ? c->delay_ms : 0;
}

/* Whether to abort, with which HTTP status and gRPC status (-1: none). */
static bool fault_abort(const struct hf_fault *c, const struct route_request *rr, struct worker *w, int *http,
                        int *grpc)
{
    if (!c->abort)
        return false;
    if (!c->abort_header) {
        *http = c->abort_http;
        *grpc = c->abort_grpc;
        return draw(w, c->abort_num, c->abort_den);
    }
    uint64_t v;
    if (header_u64(rr, "x-envoy-fault-abort-request", &v) && v >= 200 && v < 600) {
        *http = (int)v;
        *grpc = -1;
    } else if (header_u64(rr, "x-envoy-fault-abort-grpc-request", &v) && v <= 16) {
        *http = 200;
        *grpc = (int)v;
    } else {
        return false;
    }
    return header_draw(w, rr, "x-envoy-fault-abort-request-percentage", c->abort_num, c->abort_den);
}

/* Takes one active fault on f unless max_active faults are in progress (then faults_overflow). */
static bool take_fault(struct hf_filter *f, const struct hf_fault *c, struct hf_state *st, struct worker *w)
{
    if (st->counted)
        return true;
    uint64_t n = atomic_load_explicit(&f->active_faults, memory_order_relaxed);
    do {
        if (n >= c->max_active) {
            stats_inc(f->stats, w->id, FS_OVERFLOW);
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(&f->active_faults, &n, n + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    st->counted = true;
    st->active = &f->active_faults;
    stats_add(f->stats, w->id, FS_ACTIVE, 1);
    return true;
}

static enum hf_verdict run_abort(struct hf_filter *f, const struct hf_fault *c, const struct route_request *rr,
                                 struct worker *w, struct hf_state *st, struct stream_info *si)
{
    int http, grpc;
    if (!fault_abort(c, rr, w, &http, &grpc) || !take_fault(f, c, st, w))
        return HF_CONTINUE;
    stats_inc(f->stats, w->id, FS_ABORTS);
    si->flags |= 1u << RF_FAULT_INJECTED;
    st->status = http;
    st->grpc_status = grpc;
    st->flag = 1u << RF_FAULT_INJECTED;
    st->details = "fault_filter_abort";
    st->body = "fault filter abort";
    return HF_REPLY;
}

static enum hf_verdict run_fault(struct hf_filter *f, const struct hf_fault *c, const struct route_request *rr,
                                 const char *cluster, struct worker *w, struct hf_state *st, struct stream_info *si)
{
    if (st->phase == 1) { /* the delay is over */
        st->phase = 0;
        return run_abort(f, c, rr, w, st, si);
    }
    if (!fault_matches(c, rr, cluster, w))
        return HF_CONTINUE;
    uint64_t ms = fault_delay(c, rr, w);
    if (ms && take_fault(f, c, st, w)) {
        stats_inc(f->stats, w->id, FS_DELAYS);
        si->flags |= 1u << RF_DELAY_INJECTED;
        st->delay_ms = ms;
        st->phase = 1;
        return HF_DELAY;
    }
    return run_abort(f, c, rr, w, st, si);
}

static uint64_t now_ms(void) { return clock_now_us() / 1000u; }

/* Takes a token from b: refills lazily by whole fill intervals since the last fill (the CAS
 * winner on next_fill_ms adds the tokens), then decrements if any is left. */
bool hf_bucket_take(struct hf_bucket *b)
{
    uint64_t now = now_ms();
    uint64_t next = atomic_load_explicit(&b->next_fill_ms, memory_order_relaxed);
    if (next == 0) {
        if (atomic_compare_exchange_strong_explicit(&b->next_fill_ms, &next, now + b->interval_ms, memory_order_relaxed,
                                                    memory_order_relaxed))
            next = now + b->interval_ms;
    }
    if (next && now >= next) {
        uint64_t fills = (now - next) / b->interval_ms + 1;
        if (atomic_compare_exchange_strong_explicit(&b->next_fill_ms, &next, next + fills * b->interval_ms,
                                                    memory_order_relaxed, memory_order_relaxed)) {
            uint64_t add = fills * b->per_fill;
            int64_t t = atomic_load_explicit(&b->tokens, memory_order_relaxed), nt;
            do {
                uint64_t sum = (uint64_t)(t > 0 ? t : 0) + add;
                nt = (int64_t)(sum > b->max_tokens || sum < add ? b->max_tokens : sum);
            } while (!atomic_compare_exchange_weak_explicit(&b->tokens, &t, nt, memory_order_relaxed,
                                                            memory_order_relaxed));
        }
    }
    int64_t t = atomic_load_explicit(&b->tokens, memory_order_relaxed);
    do {
        if (t <= 0)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&b->tokens, &t, t - 1, memory_order_relaxed, memory_order_relaxed));
    return true;
}

static enum hf_verdict run_lrl(const struct hf_lrl *cc, struct worker *w, struct hf_state *st, struct stream_info *si)
{
    struct hf_lrl *c = (struct hf_lrl *)cc; /* the bucket is the one mutable part */
    if (!c->has_bucket || !draw(w, c->en_num, c->en_den))
        return HF_CONTINUE;
    stats_inc(c->stats, w->id, LS_ENABLED);
    if (hf_bucket_take(&c->bucket)) {
        stats_inc(c->stats, w->id, LS_OK);
        return HF_CONTINUE;
    }
    stats_inc(c->stats, w->id, LS_RATE_LIMITED);
    if (!draw(w, c->enf_num, c->enf_den))
        return HF_CONTINUE;
    stats_inc(c->stats, w->id, LS_ENFORCED);
    si->flags |= 1u << RF_RATE_LIMITED;
    st->status = c->status;
    st->grpc_status = c->grpc_resource_exhausted ? 8 /* RESOURCE_EXHAUSTED */ : -1;
    st->flag = 1u << RF_RATE_LIMITED;
    st->details = "local_rate_limited";
    st->body = "local_rate_limited";
    st->reply_add = c->resp.nadd ? &c->resp : NULL;
    st->ratelimited = true;
    return HF_REPLY;
}

enum hf_verdict hf_run(const struct route_entry *route, struct worker *w, const struct route_request *rr,
                       const char *cluster, struct hf_state *st, struct stream_info *si)
{
    const struct hf_route *r = route->hf;
    struct hf_chain *chain = (struct hf_chain *)route->vhost->table->chain;
    for (; st->next < chain->n; st->next++) {
        const void *cfg = r->cfg[st->next];
        if (!cfg)
            continue;
        struct hf_filter *f = &chain->f[st->next];
        enum hf_verdict v = f->kind == HF_FAULT ? run_fault(f, cfg, rr, cluster, w, st, si) : run_lrl(cfg, w, st, si);
        if (v == HF_DELAY)
            return v; /* resumes at this filter, phase 1 */
        if (v == HF_REPLY) {
            st->next = (uint8_t)chain->n;
            return v;
        }
    }
    return HF_CONTINUE;
}

void hf_done(struct hf_state *st, struct worker *w, const struct route_entry *route)
{
    if (!st->counted)
        return;
    st->counted = false;
    atomic_fetch_sub_explicit(st->active, 1, memory_order_relaxed);
    const struct hf_chain *chain = route->vhost->table->chain;
    for (size_t i = 0; i < chain->n; i++)
        if (&chain->f[i].active_faults == st->active)
            stats_add(chain->f[i].stats, w->id, FS_ACTIVE, -1);
}

int hf_reply_headers(struct buf *b, const struct hf_state *st, const struct stream_info *si)
{
    if (st->ratelimited && http_put_header(b, "x-envoy-ratelimited", "true", 4))
        return -1;
    if (st->reply_add) {
        const struct header_mutation *lv[1] = {st->reply_add};
        if (http_mutation_add(b, lv, 1, NULL, 0, si) < 0)
            return -1;
    }
    return 0;
}
