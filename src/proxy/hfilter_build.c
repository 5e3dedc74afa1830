/* Compiles the HCM's fault and local rate limit filters and their typed_per_filter_config
 * entries into the route table's arena (see hfilter.h). Main thread, at config build. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbmap.h"
#include "common/stats.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/config/route/v3/route_components.pb-c.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb-c.h"
#include "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.pb-c.h"
#include "proxy/hfilter.h"
#include "proxy/route_build_internal.h"

typedef Envoy__Extensions__Filters__Http__Fault__V3__HTTPFault HTTPFault;
typedef Envoy__Extensions__Filters__Http__LocalRatelimit__V3__LocalRateLimit LocalRateLimit;
typedef Envoy__Type__V3__FractionalPercent FractionalPercent;

#define T_FAULT "envoy.extensions.filters.http.fault.v3.HTTPFault"
#define T_LRL "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
#define T_FILTER_CONFIG "envoy.config.route.v3.FilterConfig"

static const struct stat_def fault_defs[] = {
    {"delays_injected", STAT_COUNTER}, {"aborts_injected", STAT_COUNTER}, {"response_rl_injected", STAT_COUNTER},
    {"faults_overflow", STAT_COUNTER}, {"active_faults", STAT_GAUGE},
};
const struct stat_schema hf_fault_stat_schema = {"http_fault", fault_defs, sizeof fault_defs / sizeof fault_defs[0], NULL};
static const struct stat_def lrl_defs[] = {
    {"enabled", STAT_COUNTER}, {"enforced", STAT_COUNTER}, {"rate_limited", STAT_COUNTER}, {"ok", STAT_COUNTER},
};
const struct stat_schema hf_lrl_stat_schema = {"http_local_rate_limit", lrl_defs, sizeof lrl_defs / sizeof lrl_defs[0],
                                               NULL};

static const char *type_of(const Google__Protobuf__Any *any)
{
    if (!any || !any->type_url)
        return "";
    const char *slash = strrchr(any->type_url, '/');
    return slash ? slash + 1 : any->type_url;
}

bool hf_known_type(const char *t)
{
    return strcmp(t, T_FAULT) == 0 || strcmp(t, T_LRL) == 0;
}

/* FractionalPercent → numerator/denominator (unset: 0%, the proto default Envoy reads). */
static int percent(struct build *b, const char *field, const FractionalPercent *p, uint32_t *num, uint32_t *den)
{
    *num = 0;
    *den = 100;
    if (!p)
        return 0;
    if (!(*den = rb_fraction_den(p->denominator)))
        return rb_fail(b, field, "unknown denominator %d", (int)p->denominator);
    *num = p->numerator > *den ? *den : p->numerator;
    return 0;
}

static uint64_t dur_ms(const Google__Protobuf__Duration *d)
{
    if (!d || d->seconds < 0 || d->nanos < 0)
        return 0;
    return (uint64_t)d->seconds * 1000u + (uint64_t)d->nanos / 1000000u;
}

static int build_fault(struct build *b, const HTTPFault *f, const struct hf_fault **out)
{
    struct hf_fault *c = rb_alloc(b, sizeof *c);
    if (!c)
        return -1;
    c->abort_grpc = -1;
    c->max_active = f->max_active_faults ? f->max_active_faults->value : UINT64_MAX;
    if (f->delay) {
        const Envoy__Extensions__Filters__Common__Fault__V3__FaultDelay *d = f->delay;
        switch (d->fault_delay_secifier_case) {
        case ENVOY__EXTENSIONS__FILTERS__COMMON__FAULT__V3__FAULT_DELAY__FAULT_DELAY_SECIFIER_FIXED_DELAY:
            c->delay_ms = dur_ms(d->fixed_delay);
            break;
        case ENVOY__EXTENSIONS__FILTERS__COMMON__FAULT__V3__FAULT_DELAY__FAULT_DELAY_SECIFIER_HEADER_DELAY:
            c->delay_header = true;
            break;
        default:
            return rb_fail(b, ".delay", "one of fixed_delay, header_delay is required");
        }
        c->delay = true;
        if (percent(b, ".delay.percentage", d->percentage, &c->delay_num, &c->delay_den) < 0)
            return -1;
    }
    if (f->abort) {
        const Envoy__Extensions__Filters__Http__Fault__V3__FaultAbort *a = f->abort;
        switch (a->error_type_case) {
        case ENVOY__EXTENSIONS__FILTERS__HTTP__FAULT__V3__FAULT_ABORT__ERROR_TYPE_HTTP_STATUS:
            if (a->http_status < 200 || a->http_status >= 600)
                return rb_fail(b, ".abort.http_status", "%u is not in [200, 600)", a->http_status);
            c->abort_http = (int)a->http_status;
            break;
        case ENVOY__EXTENSIONS__FILTERS__HTTP__FAULT__V3__FAULT_ABORT__ERROR_TYPE_GRPC_STATUS:
            c->abort_grpc = (int)a->grpc_status;
            c->abort_http = 200;
            break;
        case ENVOY__EXTENSIONS__FILTERS__HTTP__FAULT__V3__FAULT_ABORT__ERROR_TYPE_HEADER_ABORT:
            c->abort_header = true;
            break;
        default:
            return rb_fail(b, ".abort", "one of http_status, grpc_status, header_abort is required");
        }
        c->abort = true;
        if (percent(b, ".abort.percentage", a->percentage, &c->abort_num, &c->abort_den) < 0)
            return -1;
    }
    if (f->response_rate_limit)
        return rb_fail(b, ".response_rate_limit", "not supported by weft");
    if (f->upstream_cluster && *f->upstream_cluster && !(c->upstream_cluster = rb_dup(b, f->upstream_cluster)))
        return -1;
    if (f->n_headers) {
        struct route_header_match *h = rb_alloc(b, f->n_headers * sizeof *h);
        if (!h)
            return -1;
        for (size_t i = 0; i < f->n_headers; i++) {
            size_t mk = rb_path_push(b, ".headers[%zu]", i);
            if (rb_header_match(b, f->headers[i], &h[i]) < 0)
                return -1;
            rb_path_pop(b, mk);
        }
        c->headers = h;
        c->nheaders = f->n_headers;
    }
    if (f->n_downstream_nodes) {
        const char **nodes = rb_alloc(b, f->n_downstream_nodes * sizeof *nodes);
        if (!nodes)
            return -1;
        for (size_t i = 0; i < f->n_downstream_nodes; i++)
            if (!(nodes[i] = rb_dup(b, f->downstream_nodes[i])))
                return -1;
        c->nodes = nodes;
        c->nnodes = f->n_downstream_nodes;
    }
    *out = (c->delay || c->abort) ? c : NULL; /* nothing to inject: inert */
    return 0;
}

static int runtime_percent(struct build *b, const char *field, const Envoy__Config__Core__V3__RuntimeFractionalPercent *r,
                           uint32_t *num, uint32_t *den)
{
    return percent(b, field, r ? r->default_value : NULL, num, den);
}

static int build_lrl(struct build *b, const LocalRateLimit *l, const struct hf_lrl **out)
{
    struct hf_lrl *c = rb_alloc(b, sizeof *c);
    if (!c)
        return -1;
    if (!l->stat_prefix || !*l->stat_prefix)
        return rb_fail(b, ".stat_prefix", "is required");
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s.http_local_rate_limit.", l->stat_prefix);
    c->stats = stats_block(prefix, &hf_lrl_stat_schema);
    c->status = 429;
    if (l->status && l->status->code) {
        if (l->status->code < 400 || l->status->code >= 600)
            return rb_fail(b, ".status.code", "%d must be a 4xx or 5xx status", (int)l->status->code);
        c->status = (int)l->status->code;
    }
    if (l->token_bucket) {
        const Envoy__Type__V3__TokenBucket *tb = l->token_bucket;
        if (tb->max_tokens == 0)
            return rb_fail(b, ".token_bucket.max_tokens", "must be greater than 0");
        c->bucket.max_tokens = tb->max_tokens;
        c->bucket.per_fill = tb->tokens_per_fill ? tb->tokens_per_fill->value : 1;
        if (c->bucket.per_fill == 0)
            return rb_fail(b, ".token_bucket.tokens_per_fill", "must be greater than 0");
        c->bucket.interval_ms = dur_ms(tb->fill_interval);
        if (c->bucket.interval_ms < 50)
            return rb_fail(b, ".token_bucket.fill_interval", "must be at least 50ms");
        atomic_init(&c->bucket.tokens, (int64_t)c->bucket.max_tokens);
        atomic_init(&c->bucket.next_fill_ms, 0); /* set at the first request */
        c->has_bucket = true;
    }
    if (runtime_percent(b, ".filter_enabled.default_value", l->filter_enabled, &c->en_num, &c->en_den) < 0 ||
        runtime_percent(b, ".filter_enforced.default_value", l->filter_enforced, &c->enf_num, &c->enf_den) < 0)
        return -1;
    if (l->n_descriptors)
        return rb_fail(b, ".descriptors", "not supported by weft");
    if (l->local_rate_limit_per_downstream_connection)
        return rb_fail(b, ".local_rate_limit_per_downstream_connection", "not supported by weft");
    c->grpc_resource_exhausted = l->rate_limited_as_resource_exhausted;
    if (l->n_response_headers_to_add) {
        struct route_header_add *a = rb_alloc(b, l->n_response_headers_to_add * sizeof *a);
        if (!a)
            return -1;
        for (size_t i = 0; i < l->n_response_headers_to_add; i++) {
            size_t mk = rb_path_push(b, ".response_headers_to_add[%zu]", i);
            if (rb_header_add(b, l->response_headers_to_add[i], &a[i]) < 0)
                return -1;
            rb_path_pop(b, mk);
        }
        c->resp.add = a;
        c->resp.nadd = l->n_response_headers_to_add;
    }
    *out = c;
    return 0;
}

/* Unpacks any as the filter type t and compiles it. *cfg is NULL for an inert config. */
static int build_typed(struct build *b, const char *t, const Google__Protobuf__Any *any, const void **cfg)
{
    struct pbmap_error pe;
    *cfg = NULL;
    if (strcmp(t, T_FAULT) == 0) {
        HTTPFault *f = (HTTPFault *)pbmap_unpack_any(&any->base, &envoy__extensions__filters__http__fault__v3__httpfault__descriptor, &pe);
        if (!f)
            return rb_fail(b, "", "%s", pe.msg);
        const struct hf_fault *c = NULL;
        int r = build_fault(b, f, &c);
        protobuf_c_message_free_unpacked(&f->base, NULL);
        *cfg = c;
        return r;
    }
    LocalRateLimit *l = (LocalRateLimit *)pbmap_unpack_any(
        &any->base, &envoy__extensions__filters__http__local_ratelimit__v3__local_rate_limit__descriptor, &pe);
    if (!l)
        return rb_fail(b, "", "%s", pe.msg);
    const struct hf_lrl *c = NULL;
    int r = build_lrl(b, l, &c);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    *cfg = c;
    return r;
}

int hf_compile_chain(struct build *b, const struct hf_spec *f, size_t n, const struct hf_chain **out)
{
    if (n > HF_MAX)
        return rb_fail(b, "http_filters", "at most %d HTTP filters besides the router", HF_MAX);
    struct hf_chain *ch = rb_alloc(b, sizeof *ch);
    if (!ch)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t mk = rb_path_push(b, "http_filters[%zu].typed_config", i);
        const char *t = type_of(f[i].typed_config);
        struct hf_filter *e = &ch->f[i];
        e->kind = strcmp(t, T_FAULT) == 0 ? HF_FAULT : HF_LOCAL_RATELIMIT;
        if (!(e->name = rb_dup(b, f[i].name)) || build_typed(b, t, f[i].typed_config, &e->cfg) < 0)
            return -1;
        if (e->kind == HF_FAULT) {
            char prefix[600];
            snprintf(prefix, sizeof prefix, "http.%s.fault.", rb_hcm_stat_prefix(b));
            e->stats = stats_block(prefix, &hf_fault_stat_schema);
        }
        atomic_init(&e->active_faults, 0);
        rb_path_pop(b, mk);
    }
    ch->n = n;
    *out = ch;
    return 0;
}

/* Route, VirtualHost and RouteConfiguration map entries have this one layout. */
typedef Envoy__Config__Route__V3__Route__TypedPerFilterConfigEntry PfEntry;
_Static_assert(offsetof(PfEntry, key) == offsetof(Envoy__Config__Route__V3__VirtualHost__TypedPerFilterConfigEntry, key) &&
               offsetof(PfEntry, value) == offsetof(Envoy__Config__Route__V3__VirtualHost__TypedPerFilterConfigEntry, value) &&
               offsetof(PfEntry, key) == offsetof(Envoy__Config__Route__V3__RouteConfiguration__TypedPerFilterConfigEntry, key) &&
               offsetof(PfEntry, value) == offsetof(Envoy__Config__Route__V3__RouteConfiguration__TypedPerFilterConfigEntry, value),
               "typed_per_filter_config entries share a layout");

int hf_compile_per_route(struct build *b, void *const *entries, size_t n, const struct hf_route **out)
{
    *out = NULL;
    if (!n)
        return 0;
    const struct hf_chain *chain = rb_chain(b);
    struct hf_route *r = rb_alloc(b, sizeof *r);
    if (!r)
        return -1;
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        const PfEntry *pe = entries[i];
        const char *key = pe->key ? pe->key : "";
        size_t mk = rb_path_push(b, ".typed_per_filter_config['%s']", key);
        const Google__Protobuf__Any *v = pe->value;
        const char *t = type_of(v);
        bool optional = false, disabled = false;
        Envoy__Config__Route__V3__FilterConfig *fc = NULL;
        if (strcmp(t, T_FILTER_CONFIG) == 0) {
            struct pbmap_error err;
            fc = (Envoy__Config__Route__V3__FilterConfig *)pbmap_unpack_any(
                &v->base, &envoy__config__route__v3__filter_config__descriptor, &err);
            if (!fc)
                return rb_fail(b, "", "%s", err.msg);
            optional = fc->is_optional;
            disabled = fc->disabled;
            v = fc->config;
            t = type_of(v);
        }
        int slot = -1;
        for (size_t k = 0; chain && k < chain->n; k++)
            if (strcmp(chain->f[k].name, key) == 0)
                slot = (int)k;
        int rc = 0;
        if (v && hf_known_type(t)) {
            const void *cfg = NULL;
            rc = build_typed(b, t, v, &cfg);
            if (rc == 0 && slot >= 0) {
                bool want_fault = chain->f[slot].kind == HF_FAULT;
                if (want_fault != (strcmp(t, T_FAULT) == 0))
                    rc = rb_fail(b, "", "'%s' does not configure the filter of that name", t);
                r->cfg[slot] = cfg;
                r->set[slot] = true;
            }
        } else if (disabled && slot < 0) {
            rc = 0; /* disabling a filter this HCM does not run */
        } else if (!(optional || (disabled && !v))) {
            rc = rb_fail(b, "", "per-route config for '%s' is not supported yet", key);
        }
        if (rc == 0 && disabled && slot >= 0) {
            r->disabled[slot] = true;
            r->set[slot] = true;
        }
        if (fc)
            protobuf_c_message_free_unpacked(&fc->base, NULL);
        if (rc < 0)
            return -1;
        any = true;
        rb_path_pop(b, mk);
    }
    *out = any ? r : NULL;
    return 0;
}

/* Resolves e's view: per chain entry the route's config, else its virtual host's, else the
 * route config's, else the HCM's. Leaves e->hf NULL when nothing would act. */
int hf_resolve_route(struct build *b, const struct hf_chain *chain, struct route_entry *e)
{
    if (!chain || (e->kind != ROUTE_CLUSTER && e->kind != ROUTE_WEIGHTED))
        return 0;
    const struct hf_route *lv[3] = {e->hf_own, e->vhost ? e->vhost->hf_own : NULL,
                                    e->vhost && e->vhost->table ? e->vhost->table->hf_own : NULL};
    struct hf_route res = {0};
    bool active = false;
    for (size_t i = 0; i < chain->n; i++) {
        const void *cfg = chain->f[i].cfg;
        for (size_t k = 0; k < 3; k++) {
            if (lv[k] && lv[k]->set[i]) {
                cfg = lv[k]->disabled[i] ? NULL : lv[k]->cfg[i];
                break;
            }
        }
        res.cfg[i] = cfg;
        active |= cfg != NULL;
    }
    if (!active)
        return 0;
    struct hf_route *r = rb_alloc(b, sizeof *r);
    if (!r)
        return -1;
    *r = res;
    e->hf = r;
    return 0;
}
