/* Routing: a realistic RouteConfiguration built in C (protobuf-c messages, as the YAML mapper
 * or xDS would produce), compiled once, then table-driven checks of every match and action
 * kind, rewrites, redirects, header-mutation order, hashing, weighted splits, virtual host
 * search order with ports, and build-time validation errors. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/config/route/v3/route_components.pb-c.h"
#include "proxy/route.h"
#include "test.h"

/* Deprecated Envoy fields are part of what is tested. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

typedef Envoy__Config__Route__V3__RouteConfiguration RouteConfiguration;
typedef Envoy__Config__Route__V3__VirtualHost VirtualHost;
typedef Envoy__Config__Route__V3__Route Route;
typedef Envoy__Config__Route__V3__RouteMatch RouteMatch;
typedef Envoy__Config__Route__V3__RouteAction RouteAction;
typedef Envoy__Config__Route__V3__RedirectAction RedirectAction;
typedef Envoy__Config__Route__V3__DirectResponseAction DirectResponseAction;
typedef Envoy__Config__Route__V3__WeightedCluster WeightedCluster;
typedef Envoy__Config__Route__V3__WeightedCluster__ClusterWeight ClusterWeight;
typedef Envoy__Config__Route__V3__HeaderMatcher HeaderMatcher;
typedef Envoy__Config__Route__V3__QueryParameterMatcher QueryParameterMatcher;
typedef Envoy__Config__Route__V3__CookieMatcher CookieMatcher;
typedef Envoy__Config__Route__V3__RouteAction__HashPolicy HashPolicy;
typedef Envoy__Config__Core__V3__HeaderValueOption HeaderValueOption;
typedef Envoy__Config__Core__V3__HeaderValue HeaderValue;
typedef Envoy__Config__Core__V3__DataSource DataSource;
typedef Envoy__Type__Matcher__V3__StringMatcher StringMatcher;
typedef Envoy__Type__Matcher__V3__RegexMatcher RegexMatcher;
typedef Envoy__Type__Matcher__V3__RegexMatchAndSubstitute RegexMatchAndSubstitute;

/* --- message construction (everything malloc'ed, released by protobuf_c_message_free_unpacked) --- */

static void *mk(const void *init, size_t size)
{
    void *p = malloc(size);
    memcpy(p, init, size);
    return p;
}
#define NEW(T, INIT) ((T *)mk(&(T)INIT, sizeof(T)))
#define PUSH(arr, n, item)                                              \
    do {                                                                \
        (arr) = realloc((arr), ((n) + 1) * sizeof *(arr));             \
        (arr)[(n)++] = (item);                                          \
    } while (0)

static char *S(const char *s)
{
    return strdup(s);
}

static RegexMatcher *regex(const char *re)
{
    RegexMatcher *m = NEW(RegexMatcher, ENVOY__TYPE__MATCHER__V3__REGEX_MATCHER__INIT);
    m->regex = S(re);
    return m;
}

static RegexMatchAndSubstitute *subst(const char *re, const char *sub)
{
    RegexMatchAndSubstitute *m = NEW(RegexMatchAndSubstitute, ENVOY__TYPE__MATCHER__V3__REGEX_MATCH_AND_SUBSTITUTE__INIT);
    m->pattern = regex(re);
    m->substitution = S(sub);
    return m;
}

static StringMatcher *sm(int kind, const char *s, bool icase)
{
    StringMatcher *m = NEW(StringMatcher, ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__INIT);
    m->match_pattern_case = kind;
    m->ignore_case = icase;
    switch (kind) {
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_EXACT: m->exact = S(s); break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_PREFIX: m->prefix = S(s); break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_SUFFIX: m->suffix = S(s); break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_CONTAINS: m->contains = S(s); break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_SAFE_REGEX: m->safe_regex = regex(s); break;
    }
    return m;
}
#define SM_EXACT ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_EXACT
#define SM_PREFIX ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_PREFIX
#define SM_SUFFIX ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_SUFFIX
#define SM_CONTAINS ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_CONTAINS
#define SM_REGEX ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_SAFE_REGEX

static Google__Protobuf__BoolValue *boolv(bool v)
{
    Google__Protobuf__BoolValue *b = NEW(Google__Protobuf__BoolValue, GOOGLE__PROTOBUF__BOOL_VALUE__INIT);
    b->value = v;
    return b;
}

static Google__Protobuf__UInt32Value *u32v(uint32_t v)
{
    Google__Protobuf__UInt32Value *b = NEW(Google__Protobuf__UInt32Value, GOOGLE__PROTOBUF__UINT32_VALUE__INIT);
    b->value = v;
    return b;
}

static Google__Protobuf__Duration *dur(int64_t s, int32_t ns)
{
    Google__Protobuf__Duration *d = NEW(Google__Protobuf__Duration, GOOGLE__PROTOBUF__DURATION__INIT);
    d->seconds = s;
    d->nanos = ns;
    return d;
}

static HeaderValueOption *hvo(const char *k, const char *v, int action)
{
    HeaderValueOption *o = NEW(HeaderValueOption, ENVOY__CONFIG__CORE__V3__HEADER_VALUE_OPTION__INIT);
    o->header = NEW(HeaderValue, ENVOY__CONFIG__CORE__V3__HEADER_VALUE__INIT);
    o->header->key = S(k);
    o->header->value = S(v);
    o->append_action = action;
    return o;
}
#define APPEND ENVOY__CONFIG__CORE__V3__HEADER_VALUE_OPTION__HEADER_APPEND_ACTION__APPEND_IF_EXISTS_OR_ADD
#define ADD_IF_ABSENT ENVOY__CONFIG__CORE__V3__HEADER_VALUE_OPTION__HEADER_APPEND_ACTION__ADD_IF_ABSENT
#define OVERWRITE ENVOY__CONFIG__CORE__V3__HEADER_VALUE_OPTION__HEADER_APPEND_ACTION__OVERWRITE_IF_EXISTS_OR_ADD

static RouteMatch *match_new(void)
{
    return NEW(RouteMatch, ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__INIT);
}

static Route *route_new(const char *name, RouteMatch *m)
{
    Route *r = NEW(Route, ENVOY__CONFIG__ROUTE__V3__ROUTE__INIT);
    r->name = S(name);
    r->match = m;
    return r;
}

static Route *rprefix(const char *name, const char *prefix)
{
    RouteMatch *m = match_new();
    m->path_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PREFIX;
    m->prefix = S(prefix);
    return route_new(name, m);
}

static Route *rpath(const char *name, const char *path)
{
    RouteMatch *m = match_new();
    m->path_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PATH;
    m->path = S(path);
    return route_new(name, m);
}

static RouteAction *to_cluster(Route *r, const char *cluster)
{
    RouteAction *a = NEW(RouteAction, ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__INIT);
    a->cluster_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_CLUSTER;
    a->cluster = S(cluster);
    r->action_case = ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_ROUTE;
    r->route = a;
    return a;
}

static RedirectAction *to_redirect(Route *r)
{
    RedirectAction *a = NEW(RedirectAction, ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__INIT);
    r->action_case = ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_REDIRECT;
    r->redirect = a;
    return a;
}

static DirectResponseAction *to_direct(Route *r, uint32_t status, const char *body)
{
    DirectResponseAction *a = NEW(DirectResponseAction, ENVOY__CONFIG__ROUTE__V3__DIRECT_RESPONSE_ACTION__INIT);
    a->status = status;
    if (body) {
        a->body = NEW(DataSource, ENVOY__CONFIG__CORE__V3__DATA_SOURCE__INIT);
        a->body->specifier_case = ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_STRING;
        a->body->inline_string = S(body);
    }
    r->action_case = ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_DIRECT_RESPONSE;
    r->direct_response = a;
    return a;
}

static HeaderMatcher *hm(Route *r, const char *name)
{
    HeaderMatcher *h = NEW(HeaderMatcher, ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__INIT);
    h->name = S(name);
    PUSH(r->match->headers, r->match->n_headers, h);
    return h;
}

static VirtualHost *vhost(RouteConfiguration *rc, const char *name, const char *const *domains)
{
    VirtualHost *v = NEW(VirtualHost, ENVOY__CONFIG__ROUTE__V3__VIRTUAL_HOST__INIT);
    v->name = S(name);
    for (size_t i = 0; domains && domains[i]; i++)
        PUSH(v->domains, v->n_domains, S(domains[i]));
    PUSH(rc->virtual_hosts, rc->n_virtual_hosts, v);
    return v;
}

static Route *add(VirtualHost *v, Route *r)
{
    PUSH(v->routes, v->n_routes, r);
    return r;
}

static RouteConfiguration *rc_new(void)
{
    RouteConfiguration *rc = NEW(RouteConfiguration, ENVOY__CONFIG__ROUTE__V3__ROUTE_CONFIGURATION__INIT);
    rc->name = S("local_route");
    return rc;
}

static void rc_free(RouteConfiguration *rc)
{
    protobuf_c_message_free_unpacked(&rc->base, NULL);
}

/* --- clusters --- */

static const char *const clusters[] = { "reviews-v1", "reviews-v2", "reviews-v3", "api", "api-debug",
                                        "api-grpc", "api-canary", "api-hash", NULL };

static int lookup(void *ctx, const char *name)
{
    (void)ctx;
    for (int i = 0; clusters[i]; i++)
        if (strcmp(clusters[i], name) == 0)
            return i;
    return -1;
}

/* --- the realistic config --- */

static RouteConfiguration *main_config(void)
{
    RouteConfiguration *rc = rc_new();
    PUSH(rc->request_headers_to_add, rc->n_request_headers_to_add, hvo("x-level", "rc", OVERWRITE));
    PUSH(rc->response_headers_to_add, rc->n_response_headers_to_add, hvo("x-served-by", "weft", OVERWRITE));
    PUSH(rc->request_headers_to_remove, rc->n_request_headers_to_remove, S("X-Debug"));
    PUSH(rc->internal_only_headers, rc->n_internal_only_headers, S("X-Internal-Secret"));

    /* vhost 0: a bookinfo-like service with a header match and a weighted split */
    VirtualHost *rv = vhost(rc, "reviews", (const char *const[]){ "reviews", "reviews:9080",
                                                                  "reviews.default.svc.cluster.local", NULL });
    PUSH(rv->request_headers_to_add, rv->n_request_headers_to_add, hvo("x-level", "vhost", OVERWRITE));
    PUSH(rv->response_headers_to_add, rv->n_response_headers_to_add, hvo("x-vhost", "reviews", APPEND));
    Route *r = add(rv, rprefix("jason-v2", "/"));
    HeaderMatcher *h = hm(r, "end-user");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_STRING_MATCH;
    h->string_match = sm(SM_EXACT, "jason", false);
    to_cluster(r, "reviews-v2");
    r = add(rv, rprefix("split", "/"));
    PUSH(r->request_headers_to_add, r->n_request_headers_to_add, hvo("x-level", "route", OVERWRITE));
    PUSH(r->response_headers_to_remove, r->n_response_headers_to_remove, S("x-envoy-upstream-service-time"));
    RouteAction *a = to_cluster(r, "reviews-v1");
    free(a->cluster);
    a->cluster_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_WEIGHTED_CLUSTERS;
    a->weighted_clusters = NEW(WeightedCluster, ENVOY__CONFIG__ROUTE__V3__WEIGHTED_CLUSTER__INIT);
    ClusterWeight *cw = NEW(ClusterWeight, ENVOY__CONFIG__ROUTE__V3__WEIGHTED_CLUSTER__CLUSTER_WEIGHT__INIT);
    cw->name = S("reviews-v1");
    cw->weight = u32v(80);
    cw->host_rewrite_specifier_case =
        ENVOY__CONFIG__ROUTE__V3__WEIGHTED_CLUSTER__CLUSTER_WEIGHT__HOST_REWRITE_SPECIFIER_HOST_REWRITE_LITERAL;
    cw->host_rewrite_literal = S("v1.reviews");
    PUSH(cw->request_headers_to_add, cw->n_request_headers_to_add, hvo("x-level", "cw", OVERWRITE));
    PUSH(a->weighted_clusters->clusters, a->weighted_clusters->n_clusters, cw);
    cw = NEW(ClusterWeight, ENVOY__CONFIG__ROUTE__V3__WEIGHTED_CLUSTER__CLUSTER_WEIGHT__INIT);
    cw->name = S("reviews-v3");
    cw->weight = u32v(20);
    PUSH(a->weighted_clusters->clusters, a->weighted_clusters->n_clusters, cw);
    a->weighted_clusters->total_weight = u32v(100);

    /* vhost 1: an API gateway exercising every match and action kind */
    VirtualHost *api = vhost(rc, "api", (const char *const[]){ "api.example.com", "api.example.com:8443", NULL });
    to_cluster(add(api, rpath("exact", "/exact")), "api");
    r = add(api, route_new("sep", match_new()));
    r->match->path_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PATH_SEPARATED_PREFIX;
    r->match->path_separated_prefix = S("/sep");
    to_cluster(r, "api");
    r = add(api, route_new("regex", match_new()));
    r->match->path_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_SAFE_REGEX;
    r->match->safe_regex = regex("/v[0-9]+/items/[0-9]+");
    a = to_cluster(r, "api");
    a->regex_rewrite = subst("^/v([0-9]+)/items/([0-9]+)$", "/items/\\2/v\\1");
    r = add(api, rprefix("old", "/old/"));
    a = to_cluster(r, "api");
    a->prefix_rewrite = S("/new/");
    a->timeout = dur(2, 500000000);
    a->idle_timeout = dur(30, 0);
    r = add(api, rprefix("case", "/CaSe"));
    r->match->case_sensitive = boolv(false);
    to_cluster(r, "api");
    r = add(api, rprefix("query", "/q"));
    QueryParameterMatcher *q = NEW(QueryParameterMatcher, ENVOY__CONFIG__ROUTE__V3__QUERY_PARAMETER_MATCHER__INIT);
    q->name = S("debug");
    q->query_parameter_match_specifier_case =
        ENVOY__CONFIG__ROUTE__V3__QUERY_PARAMETER_MATCHER__QUERY_PARAMETER_MATCH_SPECIFIER_PRESENT_MATCH;
    q->present_match = true;
    PUSH(r->match->query_parameters, r->match->n_query_parameters, q);
    q = NEW(QueryParameterMatcher, ENVOY__CONFIG__ROUTE__V3__QUERY_PARAMETER_MATCHER__INIT);
    q->name = S("mode");
    q->query_parameter_match_specifier_case =
        ENVOY__CONFIG__ROUTE__V3__QUERY_PARAMETER_MATCHER__QUERY_PARAMETER_MATCH_SPECIFIER_STRING_MATCH;
    q->string_match = sm(SM_EXACT, "fast", false);
    PUSH(r->match->query_parameters, r->match->n_query_parameters, q);
    to_cluster(r, "api-debug");
    r = add(api, rprefix("grpc", "/grpc"));
    r->match->grpc = NEW(Envoy__Config__Route__V3__RouteMatch__GrpcRouteMatchOptions,
                         ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__GRPC_ROUTE_MATCH_OPTIONS__INIT);
    to_cluster(r, "api-grpc");
    r = add(api, rprefix("canary", "/frac"));
    r->match->runtime_fraction = NEW(Envoy__Config__Core__V3__RuntimeFractionalPercent,
                                     ENVOY__CONFIG__CORE__V3__RUNTIME_FRACTIONAL_PERCENT__INIT);
    r->match->runtime_fraction->default_value = NEW(Envoy__Type__V3__FractionalPercent,
                                                    ENVOY__TYPE__V3__FRACTIONAL_PERCENT__INIT);
    r->match->runtime_fraction->default_value->numerator = 25;
    to_cluster(r, "api-canary");
    to_cluster(add(api, rprefix("frac-rest", "/frac")), "api");
    RedirectAction *rd = to_redirect(add(api, rprefix("r-path", "/redirect/path")));
    rd->path_rewrite_specifier_case = ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__PATH_REWRITE_SPECIFIER_PATH_REDIRECT;
    rd->path_redirect = S("/landing");
    rd->response_code = ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__REDIRECT_RESPONSE_CODE__FOUND;
    rd = to_redirect(add(api, rprefix("r-pq", "/redirect/pq")));
    rd->path_rewrite_specifier_case = ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__PATH_REWRITE_SPECIFIER_PATH_REDIRECT;
    rd->path_redirect = S("landing?k=v");
    rd->strip_query = true;
    rd = to_redirect(add(api, rprefix("r-https", "/redirect/https")));
    rd->scheme_rewrite_specifier_case = ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__SCHEME_REWRITE_SPECIFIER_HTTPS_REDIRECT;
    rd->https_redirect = true;
    rd->strip_query = true;
    rd = to_redirect(add(api, rprefix("r-prefix", "/redirect/prefix/")));
    rd->path_rewrite_specifier_case = ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__PATH_REWRITE_SPECIFIER_PREFIX_REWRITE;
    rd->prefix_rewrite = S("/p2/");
    rd->host_redirect = S("other.example.com");
    rd->port_redirect = 8080;
    rd->response_code = ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__REDIRECT_RESPONSE_CODE__PERMANENT_REDIRECT;
    rd = to_redirect(add(api, rprefix("r-regex", "/redirect/regex/")));
    rd->path_rewrite_specifier_case = ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__PATH_REWRITE_SPECIFIER_REGEX_REWRITE;
    rd->regex_rewrite = subst("^/redirect/regex/(.*)$", "/r/\\1");
    rd->scheme_rewrite_specifier_case = ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__SCHEME_REWRITE_SPECIFIER_SCHEME_REDIRECT;
    rd->scheme_redirect = S("https");
    rd->response_code = ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__REDIRECT_RESPONSE_CODE__TEMPORARY_REDIRECT;
    to_direct(add(api, rpath("direct", "/direct")), 503, "down for maintenance");
    DirectResponseAction *d = to_direct(add(api, rpath("teapot", "/teapot")), 418, NULL);
    d->body = NEW(DataSource, ENVOY__CONFIG__CORE__V3__DATA_SOURCE__INIT);
    d->body->specifier_case = ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_BYTES;
    d->body->inline_bytes.data = (uint8_t *)S("tea\x01");
    d->body->inline_bytes.len = 4;
    to_direct(add(api, rpath("moved", "/moved")), 301, NULL);

    /* header matcher kinds, one route each */
    r = add(api, rprefix("h-exact", "/h/exact"));
    h = hm(r, "X-A");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_STRING_MATCH;
    h->string_match = sm(SM_EXACT, "Foo", true);
    to_cluster(r, "api");
    r = add(api, rprefix("h-prefix", "/h/prefix"));
    h = hm(r, "x-a");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_PREFIX_MATCH;
    h->prefix_match = S("pre");
    to_cluster(r, "api");
    r = add(api, rprefix("h-suffix", "/h/suffix"));
    h = hm(r, "x-a");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_SUFFIX_MATCH;
    h->suffix_match = S("fix");
    to_cluster(r, "api");
    r = add(api, rprefix("h-contains", "/h/contains"));
    h = hm(r, "x-a");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_STRING_MATCH;
    h->string_match = sm(SM_CONTAINS, "mid", false);
    to_cluster(r, "api");
    r = add(api, rprefix("h-regex", "/h/regex"));
    h = hm(r, "x-a");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_SAFE_REGEX_MATCH;
    h->safe_regex_match = regex("ab+c");
    to_cluster(r, "api");
    r = add(api, rprefix("h-range", "/h/range"));
    h = hm(r, "x-a");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_RANGE_MATCH;
    h->range_match = NEW(Envoy__Type__V3__Int64Range, ENVOY__TYPE__V3__INT64_RANGE__INIT);
    h->range_match->start = -10;
    h->range_match->end = 200;
    to_cluster(r, "api");
    r = add(api, rprefix("h-present", "/h/present"));
    h = hm(r, "x-a");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_PRESENT_MATCH;
    h->present_match = true;
    to_cluster(r, "api");
    r = add(api, rprefix("h-absent", "/h/absent"));
    h = hm(r, "x-a");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_PRESENT_MATCH;
    h->present_match = false;
    to_cluster(r, "api");
    r = add(api, rprefix("h-invert", "/h/invert"));
    h = hm(r, "x-a");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_EXACT_MATCH;
    h->exact_match = S("bad");
    h->invert_match = true;
    to_cluster(r, "api");
    r = add(api, rprefix("h-empty", "/h/empty"));
    h = hm(r, "x-a");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_STRING_MATCH;
    h->string_match = sm(SM_EXACT, "", false);
    h->treat_missing_header_as_empty = true;
    to_cluster(r, "api");
    r = add(api, rprefix("h-multi", "/h/multi"));
    h = hm(r, "x-a");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_STRING_MATCH;
    h->string_match = sm(SM_EXACT, "a,b", false);
    to_cluster(r, "api");
    r = add(api, rprefix("h-legacy", "/h/legacy"));
    hm(r, "x-a");   /* no specifier: presence */
    to_cluster(r, "api");
    r = add(api, rprefix("h-method", "/h/method"));
    h = hm(r, ":method");
    h->header_match_specifier_case = ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_STRING_MATCH;
    h->string_match = sm(SM_REGEX, "GET|HEAD", false);
    to_cluster(r, "api");
    r = add(api, rprefix("cookie", "/cookie"));
    CookieMatcher *cm = NEW(CookieMatcher, ENVOY__CONFIG__ROUTE__V3__COOKIE_MATCHER__INIT);
    cm->name = S("session");
    cm->string_match = sm(SM_PREFIX, "abc", false);
    PUSH(r->match->cookies, r->match->n_cookies, cm);
    to_cluster(r, "api");

    /* hashing and host rewrites */
    r = add(api, rprefix("hash", "/hash"));
    a = to_cluster(r, "api-hash");
    HashPolicy *hp = NEW(HashPolicy, ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__INIT);
    hp->policy_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_HEADER;
    hp->header = NEW(Envoy__Config__Route__V3__RouteAction__HashPolicy__Header,
                     ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__HEADER__INIT);
    hp->header->header_name = S("X-User");
    PUSH(a->hash_policy, a->n_hash_policy, hp);
    hp = NEW(HashPolicy, ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__INIT);
    hp->policy_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_COOKIE;
    hp->cookie = NEW(Envoy__Config__Route__V3__RouteAction__HashPolicy__Cookie,
                     ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__COOKIE__INIT);
    hp->cookie->name = S("sess");
    hp->terminal = true;
    PUSH(a->hash_policy, a->n_hash_policy, hp);
    hp = NEW(HashPolicy, ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__INIT);
    hp->policy_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_CONNECTION_PROPERTIES;
    hp->connection_properties = NEW(Envoy__Config__Route__V3__RouteAction__HashPolicy__ConnectionProperties,
                                    ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__CONNECTION_PROPERTIES__INIT);
    hp->connection_properties->source_ip = true;
    PUSH(a->hash_policy, a->n_hash_policy, hp);
    hp = NEW(HashPolicy, ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__INIT);
    hp->policy_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_QUERY_PARAMETER;
    hp->query_parameter = NEW(Envoy__Config__Route__V3__RouteAction__HashPolicy__QueryParameter,
                              ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__QUERY_PARAMETER__INIT);
    hp->query_parameter->name = S("uid");
    PUSH(a->hash_policy, a->n_hash_policy, hp);
    a = to_cluster(add(api, rprefix("host-lit", "/hostlit")), "api");
    a->host_rewrite_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HOST_REWRITE_SPECIFIER_HOST_REWRITE_LITERAL;
    a->host_rewrite_literal = S("backend.internal");
    a = to_cluster(add(api, rprefix("host-auto", "/hostauto")), "api");
    a->host_rewrite_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HOST_REWRITE_SPECIFIER_AUTO_HOST_REWRITE;
    a->auto_host_rewrite = boolv(true);
    a->timeout = dur(0, 0);
    a = to_cluster(add(api, rprefix("host-hdr", "/hosthdr")), "api");
    a->host_rewrite_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HOST_REWRITE_SPECIFIER_HOST_REWRITE_HEADER;
    a->host_rewrite_header = S("X-Host");
    a = to_cluster(add(api, rprefix("host-re", "/hostre/")), "api");
    a->host_rewrite_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HOST_REWRITE_SPECIFIER_HOST_REWRITE_PATH_REGEX;
    a->host_rewrite_path_regex = subst("^/hostre/([^/]+).*$", "\\1.svc");
    r = add(api, route_new("connect", match_new()));
    r->match->path_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_CONNECT_MATCHER;
    r->match->connect_matcher = NEW(Envoy__Config__Route__V3__RouteMatch__ConnectMatcher,
                                    ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__CONNECT_MATCHER__INIT);
    to_cluster(r, "api");

    /* wildcard and port-specific virtual hosts, TLS requirements */
    to_cluster(add(vhost(rc, "wild-suffix-long", (const char *const[]){ "*-bar.foo.com", NULL }), rprefix("r", "/")), "api");
    to_cluster(add(vhost(rc, "wild-suffix", (const char *const[]){ "*.foo.com", NULL }), rprefix("r", "/")), "api");
    to_cluster(add(vhost(rc, "wild-prefix", (const char *const[]){ "foo.*", NULL }), rprefix("r", "/")), "api");
    to_cluster(add(vhost(rc, "exact-in-wild", (const char *const[]){ "A.Foo.Com", NULL }), rprefix("r", "/")), "api");
    to_cluster(add(vhost(rc, "ported", (const char *const[]){ "ported.com:8080", NULL }), rprefix("r", "/")), "api");
    VirtualHost *sec = vhost(rc, "secure", (const char *const[]){ "secure.example.com", NULL });
    sec->require_tls = ENVOY__CONFIG__ROUTE__V3__VIRTUAL_HOST__TLS_REQUIREMENT_TYPE__ALL;
    to_cluster(add(sec, rprefix("r", "/")), "api");
    sec = vhost(rc, "ext", (const char *const[]){ "ext.example.com", NULL });
    sec->require_tls = ENVOY__CONFIG__ROUTE__V3__VIRTUAL_HOST__TLS_REQUIREMENT_TYPE__EXTERNAL_ONLY;
    to_cluster(add(sec, rprefix("r", "/")), "api");
    return rc;
}

/* --- requests --- */

struct req {
    struct route_request rq;
    struct h1_header h[16];
    struct sockaddr_storage ss;
};

static struct h1_str str(const char *s)
{
    return (struct h1_str){ s, s ? strlen(s) : 0 };
}

/* hdrs: "name: value\n..." (points into the literal, no copies). */
static const struct route_request *mkreq(struct req *r, const char *authority, const char *method, const char *path,
                                         const char *hdrs)
{
    memset(r, 0, sizeof *r);
    r->rq.authority = str(authority);
    r->rq.method = str(method ? method : "GET");
    r->rq.path = str(path);
    r->rq.scheme = str("http");
    r->rq.headers = r->h;
    for (const char *p = hdrs; p && *p && r->rq.nheaders < 16;) {
        const char *colon = strchr(p, ':');
        if (colon == p)   /* pseudo-looking name: find the next ':' */
            colon = strchr(p + 1, ':');
        const char *eol = strchr(p, '\n');
        if (!eol)
            eol = p + strlen(p);
        struct h1_header *h = &r->h[r->rq.nheaders++];
        h->name = (struct h1_str){ p, (size_t)(colon - p) };
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        h->value = (struct h1_str){ v, (size_t)(eol - v) };
        p = *eol ? eol + 1 : eol;
    }
    return &r->rq;
}

static struct route_table *build_main(void)
{
    char err[512];
    RouteConfiguration *rc = main_config();
    struct route_table *t = route_table_build(rc, lookup, NULL, err, sizeof err);
    if (!t)
        fprintf(stderr, "build failed: %s\n", err);
    rc_free(rc);   /* the table keeps nothing of the message */
    return t;
}

static const char *select_name(const struct route_table *t, const struct route_request *rq, uint64_t random,
                               struct route_scratch *s)
{
    const struct route_entry *e = route_select(t, rq, random, s);
    return e ? route_name(e) : NULL;
}

/* --- tests --- */

static void test_vhost_selection(void)
{
    struct route_table *t = build_main();
    CHECK(t != NULL);
    if (!t)
        return;
    static const struct { const char *authority, *vhost; } cases[] = {
        { "reviews", "reviews" },
        { "REVIEWS", "reviews" },                       /* case-insensitive */
        { "reviews:9080", "reviews" },                  /* exact, with port */
        { "reviews:1234", "reviews" },                  /* no match with port: retried without */
        { "reviews.default.svc.cluster.local", "reviews" },
        { "api.example.com:8443", "api" },
        { "x.foo.com", "wild-suffix" },
        { "x-bar.foo.com", "wild-suffix-long" },        /* longest suffix wins */
        { "y.x-bar.foo.com", "wild-suffix-long" },
        { "a.foo.com", "exact-in-wild" },               /* exact beats wildcards */
        { "foo.com", "wild-prefix" },                   /* ".foo.com" is not a suffix of it */
        { "foo.bar", "wild-prefix" },
        { "foo.", NULL },                               /* the '*' must cover one character */
        { ".foo.com", NULL },
        { "x.foo.com:80", "wild-suffix" },              /* retried without the port */
        { "ported.com:8080", "ported" },
        { "ported.com", NULL },
        { "ported.com:9090", NULL },
        { "[::1]:80", NULL },
        { "unknown", NULL },
        { "", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct route_vhost *v = route_find_vhost(t, str(cases[i].authority));
        if (cases[i].vhost)
            CHECK_EQ_STR(v ? v->name : "(none)", cases[i].vhost);
        else if (v)
            CHECK_EQ_STR(v->name, "(none)");
    }
    CHECK(route_find_vhost(t, (struct h1_str){ NULL, 0 }) == NULL);
    route_table_free(t);

    /* With "*": it is the fallback before any port retry (Envoy), and ignore_port_in_host_matching. */
    RouteConfiguration *rc = rc_new();
    to_cluster(add(vhost(rc, "exact", (const char *const[]){ "exact.com", NULL }), rprefix("r", "/")), "api");
    to_cluster(add(vhost(rc, "star", (const char *const[]){ "*", NULL }), rprefix("r", "/")), "api");
    char err[256];
    t = route_table_build(rc, lookup, NULL, err, sizeof err);
    CHECK(t != NULL);
    CHECK_EQ_STR(route_find_vhost(t, str("exact.com"))->name, "exact");
    CHECK_EQ_STR(route_find_vhost(t, str("exact.com:99"))->name, "star");
    CHECK_EQ_STR(route_find_vhost(t, str("other"))->name, "star");
    route_table_free(t);
    rc->ignore_port_in_host_matching = true;
    t = route_table_build(rc, lookup, NULL, err, sizeof err);
    CHECK_EQ_STR(route_find_vhost(t, str("exact.com:99"))->name, "exact");
    route_table_free(t);
    rc_free(rc);

    /* Only "*": the fast path takes any authority, even none. */
    rc = rc_new();
    to_cluster(add(vhost(rc, "star", (const char *const[]){ "*", NULL }), rprefix("r", "/")), "api");
    t = route_table_build(rc, lookup, NULL, err, sizeof err);
    CHECK_EQ_STR(route_find_vhost(t, (struct h1_str){ NULL, 0 })->name, "star");
    route_table_free(t);
    rc_free(rc);
}

static void test_route_matching(void)
{
    struct route_table *t = build_main();
    struct route_scratch *s = route_scratch_new();
    CHECK(t && s);
    if (!t || !s)
        return;
    static const struct {
        const char *authority, *method, *path, *headers, *route;
    } cases[] = {
        { "reviews", "GET", "/reviews/1", "end-user: jason", "jason-v2" },
        { "reviews", "GET", "/reviews/1", "End-User: jason", "jason-v2" },   /* names case-insensitive */
        { "reviews", "GET", "/reviews/1", "end-user: Jason", "split" },      /* values case-sensitive */
        { "reviews", "GET", "/reviews/1", NULL, "split" },
        { "api.example.com", "GET", "/exact", NULL, "exact" },
        { "api.example.com", "GET", "/exact?x=1", NULL, "exact" },           /* query ignored */
        { "api.example.com", "GET", "/exact/", NULL, NULL },
        { "api.example.com", "GET", "/EXACT", NULL, NULL },
        { "api.example.com", "GET", "/sep", NULL, "sep" },
        { "api.example.com", "GET", "/sep/x", NULL, "sep" },
        { "api.example.com", "GET", "/sep?a", NULL, "sep" },
        { "api.example.com", "GET", "/sep#f", NULL, "sep" },
        { "api.example.com", "GET", "/separate", NULL, NULL },
        { "api.example.com", "GET", "/v2/items/42", NULL, "regex" },
        { "api.example.com", "GET", "/v2/items/42?x=y", NULL, "regex" },     /* full match of the path only */
        { "api.example.com", "GET", "/v2/items/42/more", NULL, NULL },
        { "api.example.com", "GET", "/xv2/items/42", NULL, NULL },
        { "api.example.com", "GET", "/old/thing", NULL, "old" },
        { "api.example.com", "GET", "/case/x", NULL, "case" },                /* case_sensitive: false */
        { "api.example.com", "GET", "/CASE", NULL, "case" },
        { "api.example.com", "GET", "/q?debug&mode=fast", NULL, "query" },
        { "api.example.com", "GET", "/q?mode=fast&debug=1", NULL, "query" },
        { "api.example.com", "GET", "/q?debug=1&mode=slow", NULL, NULL },
        { "api.example.com", "GET", "/q?mode=fast", NULL, NULL },
        { "api.example.com", "GET", "/q?mode=fast&mode=slow&debug", NULL, "query" },   /* first value */
        { "api.example.com", "GET", "/q?mode=slow&mode=fast&debug", NULL, NULL },
        { "api.example.com", "POST", "/grpc/svc/M", "content-type: application/grpc", "grpc" },
        { "api.example.com", "POST", "/grpc/svc/M", "content-type: application/grpc+proto", "grpc" },
        { "api.example.com", "POST", "/grpc/svc/M", "content-type: application/grpc-web", NULL },
        { "api.example.com", "POST", "/grpc/svc/M", NULL, NULL },
        { "api.example.com", "GET", "/h/exact", "x-a: fOO", "h-exact" },
        { "api.example.com", "GET", "/h/exact", "x-a: foox", NULL },
        { "api.example.com", "GET", "/h/prefix", "x-a: prefix", "h-prefix" },
        { "api.example.com", "GET", "/h/prefix", "x-a: Prefix", NULL },
        { "api.example.com", "GET", "/h/suffix", "x-a: suffix", "h-suffix" },
        { "api.example.com", "GET", "/h/contains", "x-a: amidst", "h-contains" },
        { "api.example.com", "GET", "/h/contains", "x-a: am", NULL },
        { "api.example.com", "GET", "/h/regex", "x-a: abbbc", "h-regex" },
        { "api.example.com", "GET", "/h/regex", "x-a: xabbbc", NULL },       /* full match */
        { "api.example.com", "GET", "/h/range", "x-a: 150", "h-range" },
        { "api.example.com", "GET", "/h/range", "x-a: -10", "h-range" },
        { "api.example.com", "GET", "/h/range", "x-a: 200", NULL },          /* end is exclusive */
        { "api.example.com", "GET", "/h/range", "x-a: 15x", NULL },
        { "api.example.com", "GET", "/h/range", NULL, NULL },
        { "api.example.com", "GET", "/h/present", "x-a: ", "h-present" },
        { "api.example.com", "GET", "/h/present", NULL, NULL },
        { "api.example.com", "GET", "/h/absent", NULL, "h-absent" },
        { "api.example.com", "GET", "/h/absent", "x-a: 1", NULL },
        { "api.example.com", "GET", "/h/invert", "x-a: good", "h-invert" },
        { "api.example.com", "GET", "/h/invert", "x-a: bad", NULL },
        { "api.example.com", "GET", "/h/invert", NULL, NULL },               /* missing never matches */
        { "api.example.com", "GET", "/h/empty", NULL, "h-empty" },           /* treat_missing_header_as_empty */
        { "api.example.com", "GET", "/h/empty", "x-a: v", NULL },
        { "api.example.com", "GET", "/h/multi", "x-a: a\nx-b: z\nX-A: b", "h-multi" },   /* joined with ',' */
        { "api.example.com", "GET", "/h/multi", "x-a: a", NULL },
        { "api.example.com", "GET", "/h/legacy", "x-a: anything", "h-legacy" },
        { "api.example.com", "GET", "/h/legacy", NULL, NULL },
        { "api.example.com", "HEAD", "/h/method", NULL, "h-method" },
        { "api.example.com", "POST", "/h/method", NULL, NULL },
        { "api.example.com", "GET", "/cookie", "cookie: a=1; session=abcdef", "cookie" },
        { "api.example.com", "GET", "/cookie", "cookie: a=1\ncookie: session=\"abc\"", "cookie" },
        { "api.example.com", "GET", "/cookie", "cookie: xsession=abc", NULL },
        { "api.example.com", "GET", "/cookie", NULL, NULL },
        { "api.example.com", "CONNECT", "", NULL, "connect" },
        { "api.example.com", "GET", "/nothing", NULL, NULL },
        { "nowhere", "GET", "/", NULL, NULL },
        { "x.foo.com", "GET", "/anything", NULL, "r" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct req r;
        const struct route_request *rq = mkreq(&r, cases[i].authority, cases[i].method, cases[i].path, cases[i].headers);
        const char *got = select_name(t, rq, 0, s);
        if (cases[i].route)
            CHECK_EQ_STR(got ? got : "(none)", cases[i].route);
        else if (got)
            CHECK_EQ_STR(got, "(none)");
        if ((cases[i].route == NULL) != (got == NULL))
            fprintf(stderr, "  case %zu: %s %s\n", i, cases[i].method, cases[i].path);
    }
    /* runtime_fraction: random % 100 < 25 */
    struct req r;
    const struct route_request *rq = mkreq(&r, "api.example.com", "GET", "/frac", NULL);
    CHECK_EQ_STR(select_name(t, rq, 24, s), "canary");
    CHECK_EQ_STR(select_name(t, rq, 25, s), "frac-rest");
    CHECK_EQ_STR(select_name(t, rq, 1000000, s), "canary");
    size_t canary = 0;
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        canary += strcmp(select_name(t, rq, x, s), "canary") == 0;
    }
    CHECK(canary > 23000 && canary < 27000);
    /* require_tls */
    rq = mkreq(&r, "secure.example.com", "GET", "/a", NULL);
    const struct route_entry *e = route_select(t, rq, 0, s);
    CHECK(e && route_kind(e) == ROUTE_REDIRECT);
    r.rq.scheme = str("https");
    e = route_select(t, rq, 0, s);
    CHECK(e && route_kind(e) == ROUTE_CLUSTER);
    rq = mkreq(&r, "ext.example.com", "GET", "/a", NULL);
    e = route_select(t, rq, 0, s);
    CHECK(e && route_kind(e) == ROUTE_REDIRECT);
    rq = mkreq(&r, "ext.example.com", "GET", "/a", "x-envoy-internal: true");
    e = route_select(t, rq, 0, s);
    CHECK(e && route_kind(e) == ROUTE_CLUSTER);
    route_scratch_free(s);
    route_table_free(t);
}

static void test_actions(void)
{
    struct route_table *t = build_main();
    struct route_scratch *s = route_scratch_new();
    struct req r;
    const struct route_entry *e;
    if (!t || !s)
        return;
    e = route_select(t, mkreq(&r, "api.example.com", "GET", "/exact", NULL), 0, s);
    CHECK_EQ_INT(route_kind(e), ROUTE_CLUSTER);
    CHECK_EQ_INT(route_cluster(e, 0), 3);
    CHECK_EQ_STR(route_cluster_name(e, 0), "api");
    CHECK_EQ_INT(route_weight_index(e, 0), -1);
    CHECK_EQ_INT(route_timeout_ms(e), 15000);
    CHECK_EQ_INT(route_idle_timeout_ms(e), -1);
    CHECK_EQ_INT(route_cluster_not_found_status(e), 503);
    CHECK_EQ_STR(route_vhost_name(e), "api");
    e = route_select(t, mkreq(&r, "api.example.com", "GET", "/old/x", NULL), 0, s);
    CHECK_EQ_INT(route_timeout_ms(e), 2500);
    CHECK_EQ_INT(route_idle_timeout_ms(e), 30000);
    e = route_select(t, mkreq(&r, "api.example.com", "GET", "/hostauto", NULL), 0, s);
    CHECK_EQ_INT(route_timeout_ms(e), 0);   /* 0 disables */

    /* direct responses */
    int status = 0;
    const char *body;
    size_t len;
    e = route_select(t, mkreq(&r, "api.example.com", "GET", "/direct", NULL), 0, s);
    CHECK_EQ_INT(route_kind(e), ROUTE_DIRECT);
    CHECK_EQ_INT(route_direct_response(e, &status, &body, &len), 0);
    CHECK_EQ_INT(status, 503);
    CHECK(len == 20 && memcmp(body, "down for maintenance", 20) == 0);
    CHECK_EQ_INT(route_cluster(e, 0), -1);
    e = route_select(t, mkreq(&r, "api.example.com", "GET", "/teapot", NULL), 0, s);
    CHECK_EQ_INT(route_direct_response(e, &status, &body, &len), 0);
    CHECK(status == 418 && len == 4 && memcmp(body, "tea\x01", 4) == 0);
    e = route_select(t, mkreq(&r, "api.example.com", "GET", "/moved", NULL), 0, s);
    CHECK_EQ_INT(route_direct_response(e, &status, &body, &len), 0);
    CHECK(status == 301 && len == 0);
    e = route_select(t, mkreq(&r, "api.example.com", "GET", "/exact", NULL), 0, s);
    CHECK_EQ_INT(route_direct_response(e, &status, &body, &len), -EINVAL);

    /* weighted split: 80/20 by random % 100, and 100k picks within ±2% */
    e = route_select(t, mkreq(&r, "reviews", "GET", "/", NULL), 0, s);
    CHECK_EQ_INT(route_kind(e), ROUTE_WEIGHTED);
    CHECK_EQ_INT(route_cluster(e, 0), 0);
    CHECK_EQ_INT(route_cluster(e, 79), 0);
    CHECK_EQ_INT(route_cluster(e, 80), 2);
    CHECK_EQ_INT(route_cluster(e, 199), 2);
    CHECK_EQ_INT(route_weight_index(e, 170), 0);
    CHECK_EQ_INT(route_weight_index(e, 180), 1);
    CHECK_EQ_STR(route_cluster_name(e, 99), "reviews-v3");
    size_t n[3] = { 0 };
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int c = route_cluster(e, x);
        CHECK(c == 0 || c == 2);
        CHECK_EQ_INT(route_weight_index(e, x), c == 0 ? 0 : 1);
        n[c == 0 ? 0 : 2]++;
    }
    CHECK(n[0] > 78000 && n[0] < 82000);
    CHECK(n[2] > 18000 && n[2] < 22000);
    route_scratch_free(s);
    route_table_free(t);
}

static void test_rewrites(void)
{
    struct route_table *t = build_main();
    struct route_scratch *s = route_scratch_new();
    struct req r;
    char out[256];
    bool autoh;
    if (!t || !s)
        return;
    static const struct { const char *path, *want; } cases[] = {
        { "/old/x?y=1", "/new/x?y=1" },                   /* prefix_rewrite keeps the rest */
        { "/old/", "/new/" },
        { "/v2/items/42?z=1", "/items/42/v2?z=1" },       /* regex_rewrite on the path, query kept */
        { "/exact?q", "/exact?q" },                       /* no rewrite: unchanged */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct route_request *rq = mkreq(&r, "api.example.com", "GET", cases[i].path, NULL);
        const struct route_entry *e = route_select(t, rq, 0, s);
        CHECK(e != NULL);
        if (!e)
            continue;
        int n = route_rewrite_path(e, rq, s, out, sizeof out);
        CHECK_EQ_INT(n, (long long)strlen(cases[i].want));
        CHECK_EQ_STR(out, cases[i].want);
    }
    const struct route_request *rq = mkreq(&r, "api.example.com", "GET", "/old/x?y=1", NULL);
    const struct route_entry *e = route_select(t, rq, 0, s);
    CHECK_EQ_INT(route_rewrite_path(e, rq, s, out, 10), -1);   /* "/new/x?y=1" + NUL needs 11 */
    CHECK_EQ_INT(route_rewrite_path(e, rq, s, out, 11), 10);
    rq = mkreq(&r, "api.example.com", "GET", "/v2/items/42", NULL);
    e = route_select(t, rq, 0, s);
    CHECK_EQ_INT(route_rewrite_path(e, rq, s, out, 5), -1);

    /* host rewrites */
    rq = mkreq(&r, "api.example.com", "GET", "/hostlit", NULL);
    e = route_select(t, rq, 0, s);
    CHECK_EQ_INT(route_host_rewrite(e, -1, rq, s, out, sizeof out, &autoh), 16);
    CHECK_EQ_STR(out, "backend.internal");
    CHECK(!autoh);
    CHECK_EQ_INT(route_host_rewrite(e, -1, rq, s, out, 5, &autoh), -1);
    rq = mkreq(&r, "api.example.com", "GET", "/hostauto", NULL);
    e = route_select(t, rq, 0, s);
    CHECK_EQ_INT(route_host_rewrite(e, -1, rq, s, out, sizeof out, &autoh), 0);
    CHECK(autoh);
    rq = mkreq(&r, "api.example.com", "GET", "/hosthdr", "x-host: from.header");
    e = route_select(t, rq, 0, s);
    CHECK_EQ_INT(route_host_rewrite(e, -1, rq, s, out, sizeof out, &autoh), 11);
    CHECK_EQ_STR(out, "from.header");
    rq = mkreq(&r, "api.example.com", "GET", "/hosthdr", NULL);
    CHECK_EQ_INT(route_host_rewrite(e, -1, rq, s, out, sizeof out, &autoh), 0);
    rq = mkreq(&r, "api.example.com", "GET", "/hostre/ratings/x?y", NULL);
    e = route_select(t, rq, 0, s);
    CHECK_EQ_INT(route_host_rewrite(e, -1, rq, s, out, sizeof out, &autoh), 11);
    CHECK_EQ_STR(out, "ratings.svc");
    rq = mkreq(&r, "reviews", "GET", "/", NULL);
    e = route_select(t, rq, 0, s);
    CHECK_EQ_INT(route_host_rewrite(e, route_weight_index(e, 5), rq, s, out, sizeof out, &autoh), 10);
    CHECK_EQ_STR(out, "v1.reviews");
    CHECK_EQ_INT(route_host_rewrite(e, route_weight_index(e, 95), rq, s, out, sizeof out, &autoh), 0);
    route_scratch_free(s);
    route_table_free(t);
}

static void test_redirects(void)
{
    struct route_table *t = build_main();
    struct route_scratch *s = route_scratch_new();
    if (!t || !s)
        return;
    static const struct {
        const char *authority, *scheme, *path, *hdrs, *want;
        int status;
    } cases[] = {
        { "api.example.com", "http", "/redirect/path?a=1", NULL, "http://api.example.com/landing?a=1", 302 },
        { "api.example.com", "http", "/redirect/path", NULL, "http://api.example.com/landing", 302 },
        /* path_redirect with its own query: that query wins, strip_query does not apply, '/' added */
        { "api.example.com", "http", "/redirect/pq?a=1", NULL, "http://api.example.com/landing?k=v", 301 },
        /* https_redirect: the old scheme's default port goes, strip_query drops the query */
        { "api.example.com:80", "http", "/redirect/https?a=1", NULL, "https://api.example.com/redirect/https", 301 },
        { "api.example.com:8443", "http", "/redirect/https", NULL, "https://api.example.com:8443/redirect/https", 301 },
        { "api.example.com:443", "https", "/redirect/https", NULL, "https://api.example.com:443/redirect/https", 301 },
        /* host + port + prefix rewrite */
        { "api.example.com:8443", "http", "/redirect/prefix/abc?q", NULL, "http://other.example.com:8080/p2/abc?q", 308 },
        /* regex rewrite + scheme_redirect; the request's :443 goes only if the scheme changes from https */
        { "api.example.com:8443", "http", "/redirect/regex/foo/bar?x", NULL, "https://api.example.com:8443/r/foo/bar?x", 307 },
        { "api.example.com:80", "http", "/redirect/regex/a", NULL, "https://api.example.com/r/a", 307 },
        /* require_tls: https://<authority><path> */
        { "secure.example.com", "http", "/a?b=c", NULL, "https://secure.example.com/a?b=c", 301 },
        { "ext.example.com:80", "", "/z", NULL, "https://ext.example.com:80/z", 301 },
        /* direct 301: Location is the request's own URL */
        { "api.example.com", "http", "/moved?x", NULL, "http://api.example.com/moved?x", 301 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct req r;
        const struct route_request *rq = mkreq(&r, cases[i].authority, "GET", cases[i].path, cases[i].hdrs);
        r.rq.scheme = str(cases[i].scheme);
        const struct route_entry *e = route_select(t, rq, 0, s);
        CHECK(e != NULL);
        if (!e)
            continue;
        char loc[256];
        int status = 0;
        int n = route_redirect(e, rq, s, loc, sizeof loc, &status);
        CHECK_EQ_INT(n, (long long)strlen(cases[i].want));
        if (n >= 0)
            CHECK_EQ_STR(loc, cases[i].want);
        CHECK_EQ_INT(status, cases[i].status);
    }
    struct req r;
    char loc[256];
    int status;
    const struct route_request *rq = mkreq(&r, "api.example.com", "GET", "/redirect/path?a=1", NULL);
    const struct route_entry *e = route_select(t, rq, 0, s);
    CHECK_EQ_INT(route_redirect(e, rq, s, loc, 10, &status), -ENOSPC);
    CHECK_EQ_INT(route_redirect(e, rq, s, loc, 34, &status), -ENOSPC);   /* exactly too short for the NUL */
    CHECK_EQ_INT(route_redirect(e, rq, s, loc, 35, &status), 34);
    rq = mkreq(&r, "api.example.com", "GET", "/direct", NULL);
    e = route_select(t, rq, 0, s);
    CHECK_EQ_INT(route_redirect(e, rq, s, loc, sizeof loc, &status), -EINVAL);   /* 503: no Location */
    rq = mkreq(&r, "api.example.com", "GET", "/exact", NULL);
    e = route_select(t, rq, 0, s);
    CHECK_EQ_INT(route_redirect(e, rq, s, loc, sizeof loc, &status), -EINVAL);
    route_scratch_free(s);
    route_table_free(t);
}

static bool has_add(const struct header_mutation *m, const char *name, const char *value)
{
    for (size_t i = 0; i < m->nadd; i++)
        if (strcmp(m->add[i].name.p, name) == 0 && strcmp(m->add[i].value.p, value) == 0)
            return true;
    return false;
}

static void test_header_mutations(void)
{
    struct route_table *t = build_main();
    struct route_scratch *s = route_scratch_new();
    struct req r;
    const struct header_mutation *lv[ROUTE_MUTATION_LEVELS];
    if (!t || !s)
        return;
    const struct route_request *rq = mkreq(&r, "reviews", "GET", "/", NULL);
    const struct route_entry *e = route_select(t, rq, 0, s);
    /* default: ClusterWeight, route, vhost, route config; the last one applied wins */
    size_t n = route_request_mutations(e, route_weight_index(e, 0), lv);
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK(has_add(lv[0], "x-level", "cw"));
        CHECK(has_add(lv[1], "x-level", "route"));
        CHECK(has_add(lv[2], "x-level", "vhost"));
        CHECK(has_add(lv[3], "x-level", "rc"));
        CHECK_EQ_INT(lv[3]->add[0].action, ROUTE_OVERWRITE_IF_EXISTS_OR_ADD);
        CHECK_EQ_INT(lv[3]->nremove, 1);
        CHECK_EQ_STR(lv[3]->remove[0].p, "x-debug");   /* lower-cased */
    }
    /* the 20% cluster has no mutations of its own */
    n = route_request_mutations(e, route_weight_index(e, 90), lv);
    CHECK_EQ_INT(n, 3);
    n = route_response_mutations(e, -1, lv);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(lv[0]->nremove, 1);   /* route: removes x-envoy-upstream-service-time */
        CHECK(has_add(lv[1], "x-vhost", "reviews"));
        CHECK_EQ_INT(lv[1]->add[0].action, ROUTE_APPEND_IF_EXISTS_OR_ADD);
        CHECK(has_add(lv[2], "x-served-by", "weft"));
    }
    /* a route without its own mutations in a vhost without any: only the route config level */
    e = route_select(t, mkreq(&r, "api.example.com", "GET", "/exact", NULL), 0, s);
    n = route_request_mutations(e, -1, lv);
    CHECK_EQ_INT(n, 1);
    /* the require_tls redirect has none */
    rq = mkreq(&r, "secure.example.com", "GET", "/", NULL);
    e = route_select(t, rq, 0, s);
    CHECK_EQ_INT(route_response_mutations(e, -1, lv), 0);
    size_t ni;
    const struct h1_str *io = route_internal_only_headers(t, &ni);
    CHECK(ni == 1 && strcmp(io[0].p, "x-internal-secret") == 0);
    route_table_free(t);

    /* most_specific_header_mutations_wins: ClusterWeight, config, vhost, route */
    RouteConfiguration *rc = main_config();
    rc->most_specific_header_mutations_wins = true;
    char err[256];
    t = route_table_build(rc, lookup, NULL, err, sizeof err);
    rc_free(rc);
    e = route_select(t, mkreq(&r, "reviews", "GET", "/", NULL), 0, s);
    n = route_request_mutations(e, 0, lv);
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK(has_add(lv[0], "x-level", "cw"));
        CHECK(has_add(lv[1], "x-level", "rc"));
        CHECK(has_add(lv[2], "x-level", "vhost"));
        CHECK(has_add(lv[3], "x-level", "route"));
    }
    route_table_free(t);

    /* values: "%%" unescaped, other % compiled as a format; legacy append; keep_empty_value */
    rc = rc_new();
    VirtualHost *v = vhost(rc, "v", (const char *const[]){ "*", NULL });
    Route *rt = add(v, rprefix("r", "/"));
    to_cluster(rt, "api");
    PUSH(rt->request_headers_to_add, rt->n_request_headers_to_add, hvo("x-pct", "50%%", APPEND));
    PUSH(rt->request_headers_to_add, rt->n_request_headers_to_add,
         hvo("x-peer", "%DOWNSTREAM_REMOTE_ADDRESS%", ADD_IF_ABSENT));
    HeaderValueOption *o = hvo("x-legacy", "", APPEND);
    o->append = boolv(false);
    o->keep_empty_value = true;
    PUSH(rt->request_headers_to_add, rt->n_request_headers_to_add, o);
    t = route_table_build(rc, lookup, NULL, err, sizeof err);
    CHECK(t != NULL);
    if (t) {
        e = route_select(t, mkreq(&r, "x", "GET", "/", NULL), 0, s);
        n = route_request_mutations(e, -1, lv);
        CHECK_EQ_INT(n, 1);
        CHECK_EQ_STR(lv[0]->add[0].value.p, "50%");
        CHECK(lv[0]->add[0].format == NULL);
        CHECK_EQ_STR(lv[0]->add[1].value.p, "%DOWNSTREAM_REMOTE_ADDRESS%");
        CHECK(lv[0]->add[1].format != NULL);
        CHECK_EQ_INT(lv[0]->add[1].action, ROUTE_ADD_IF_ABSENT);
        CHECK_EQ_INT(lv[0]->add[2].action, ROUTE_OVERWRITE_IF_EXISTS_OR_ADD);
        CHECK(lv[0]->add[2].keep_empty_value);
    }
    route_table_free(t);
    rc_free(rc);

    /* an unknown command in a header value is a config error naming the field */
    rc = rc_new();
    v = vhost(rc, "v", (const char *const[]){ "*", NULL });
    rt = add(v, rprefix("r", "/"));
    to_cluster(rt, "api");
    PUSH(rt->request_headers_to_add, rt->n_request_headers_to_add, hvo("x-bad", "%NOT_A_COMMAND%", APPEND));
    t = route_table_build(rc, lookup, NULL, err, sizeof err);
    CHECK(t == NULL);
    CHECK(strstr(err, "request_headers_to_add[0]") != NULL);
    CHECK(strstr(err, "unknown command %NOT_A_COMMAND%") != NULL);
    route_table_free(t);
    rc_free(rc);
    route_scratch_free(s);
}

static uint64_t rotl1(uint64_t h)
{
    return (h << 1) | (h >> 63);
}

static void test_hash(void)
{
    struct route_table *t = build_main();
    struct route_scratch *s = route_scratch_new();
    struct req r;
    uint64_t h = 0, h2 = 0;
    if (!t || !s)
        return;
    const struct route_request *rq = mkreq(&r, "api.example.com", "GET", "/hash", "x-user: alice");
    const struct route_entry *e = route_select(t, rq, 0, s);
    CHECK(route_hash(e, rq, &h));
    CHECK(h == XXH64("alice", 5, 0));
    CHECK(route_hash(e, rq, &h2) && h2 == h);   /* stable */
    /* several values: sorted, hashed as one stream, order does not matter */
    rq = mkreq(&r, "api.example.com", "GET", "/hash", "x-user: bob\nX-User: alice\nx-user: bob");
    CHECK(route_hash(e, rq, &h));
    CHECK(h == XXH64("alicebobbob", 11, 0));
    rq = mkreq(&r, "api.example.com", "GET", "/hash", "x-user: alice\nx-user: bob\nx-user: bob");
    CHECK(route_hash(e, rq, &h2) && h2 == h);
    /* header then the terminal cookie: rotl(h1, 1) ^ h2, and later policies are skipped */
    rq = mkreq(&r, "api.example.com", "GET", "/hash?uid=7", "x-user: alice\ncookie: a=b; sess=\"s1\"");
    CHECK(route_hash(e, rq, &h));
    CHECK(h == (rotl1(XXH64("alice", 5, 0)) ^ XXH64("s1", 2, 0)));
    /* no header or cookie: source ip, then the query parameter */
    rq = mkreq(&r, "api.example.com", "GET", "/hash?x&uid=7&uid=8", NULL);
    struct sockaddr_in *sin = (struct sockaddr_in *)&r.ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(5555);
    inet_pton(AF_INET, "10.1.2.3", &sin->sin_addr);
    r.rq.source = (struct sockaddr *)&r.ss;
    CHECK(route_hash(e, rq, &h));
    CHECK(h == (rotl1(XXH64("10.1.2.3", 8, 0)) ^ XXH64("7", 1, 0)));
    rq = mkreq(&r, "api.example.com", "GET", "/hash", NULL);
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r.ss;
    sin6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::1", &sin6->sin6_addr);
    r.rq.source = (struct sockaddr *)&r.ss;
    CHECK(route_hash(e, rq, &h) && h == XXH64("::1", 3, 0));
    /* nothing to hash: false, *hash untouched */
    rq = mkreq(&r, "api.example.com", "GET", "/hash", NULL);
    h = 42;
    CHECK(!route_hash(e, rq, &h) && h == 42);
    rq = mkreq(&r, "api.example.com", "GET", "/hash?uid=", NULL);
    CHECK(route_hash(e, rq, &h) && h == XXH64("", 0, 0));   /* an empty parameter value still hashes */
    e = route_select(t, mkreq(&r, "api.example.com", "GET", "/exact", NULL), 0, s);
    CHECK(!route_hash(e, &r.rq, &h));
    route_scratch_free(s);
    route_table_free(t);
}

/* A config mutation and the exact error route_table_build must report. */
struct bad_case {
    void (*mutate)(RouteConfiguration *rc);
    const char *err;
};

static Route *first_route(RouteConfiguration *rc, size_t vh, size_t r)
{
    return rc->virtual_hosts[vh]->routes[r];
}

static void bad_cluster(RouteConfiguration *rc)
{
    Route *r = first_route(rc, 0, 1);
    r->route->cluster_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_CLUSTER;
    protobuf_c_message_free_unpacked(&r->route->weighted_clusters->base, NULL);
    r->route->cluster = S("nope");
}
static void bad_weighted_cluster(RouteConfiguration *rc)
{
    ClusterWeight *cw = first_route(rc, 0, 1)->route->weighted_clusters->clusters[1];
    free(cw->name);
    cw->name = S("reviews-v9");
}
static void bad_regex(RouteConfiguration *rc)
{
    Route *r = first_route(rc, 1, 2);
    free(r->match->safe_regex->regex);
    r->match->safe_regex->regex = S("/a(b");
}
static void bad_dup_domain(RouteConfiguration *rc)
{
    VirtualHost *v = rc->virtual_hosts[1];
    PUSH(v->domains, v->n_domains, S("Reviews:9080"));
}
static void bad_empty_domains(RouteConfiguration *rc)
{
    vhost(rc, "empty", NULL);
}
static void bad_two_stars(RouteConfiguration *rc)
{
    vhost(rc, "s1", (const char *const[]){ "*", NULL });
    vhost(rc, "s2", (const char *const[]){ "*", NULL });
}
static void bad_total_weight(RouteConfiguration *rc)
{
    first_route(rc, 0, 1)->route->weighted_clusters->total_weight->value = 90;
}
static void bad_zero_weights(RouteConfiguration *rc)
{
    WeightedCluster *wc = first_route(rc, 0, 1)->route->weighted_clusters;
    wc->clusters[0]->weight->value = 0;
    wc->clusters[1]->weight->value = 0;
    wc->total_weight->value = 0;
}
static void bad_two_rewrites(RouteConfiguration *rc)
{
    RouteAction *a = first_route(rc, 1, 3)->route;
    a->regex_rewrite = subst("x", "y");
}
static void bad_substitution(RouteConfiguration *rc)
{
    RegexMatchAndSubstitute *rs = first_route(rc, 1, 2)->route->regex_rewrite;
    free(rs->substitution);
    rs->substitution = S("/\\3");
}
static void bad_status(RouteConfiguration *rc)
{
    first_route(rc, 1, 14)->direct_response->status = 700;
}
static void bad_host_header(RouteConfiguration *rc)
{
    Route *r = first_route(rc, 1, 0);
    PUSH(r->request_headers_to_add, r->n_request_headers_to_add, hvo("Host", "x", OVERWRITE));
}
static void bad_sep_prefix(RouteConfiguration *rc)
{
    Route *r = first_route(rc, 1, 1);
    free(r->match->path_separated_prefix);
    r->match->path_separated_prefix = S("/sep/");
}
static void bad_cluster_header(RouteConfiguration *rc)
{
    RouteAction *a = first_route(rc, 1, 0)->route;
    free(a->cluster);
    a->cluster_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_CLUSTER_HEADER;
    a->cluster_header = S("x-cluster");
}
static void bad_body_size(RouteConfiguration *rc)
{
    rc->max_direct_response_body_size_bytes = u32v(4);
}
static void bad_no_action(RouteConfiguration *rc)
{
    add(rc->virtual_hosts[2], rprefix("none", "/"));
}
static void bad_header_name(RouteConfiguration *rc)
{
    HeaderMatcher *h = first_route(rc, 0, 0)->match->headers[0];
    free(h->name);
    h->name = S("bad name");
}
static void bad_append_both(RouteConfiguration *rc)
{
    HeaderValueOption *o = rc->request_headers_to_add[0];
    o->append = boolv(true);
}
static void bad_prefix_empty(RouteConfiguration *rc)
{
    HeaderMatcher *h = first_route(rc, 1, 18)->match->headers[0];
    free(h->prefix_match);
    h->prefix_match = S("");
}

static void test_build_errors(void)
{
    static const struct bad_case cases[] = {
        { bad_cluster, "virtual_hosts[0].routes[1].route.cluster: unknown cluster 'nope'" },
        { bad_weighted_cluster,
          "virtual_hosts[0].routes[1].route.weighted_clusters.clusters[1].name: unknown cluster 'reviews-v9'" },
        { bad_regex, "virtual_hosts[1].routes[2].match.safe_regex.regex: missing closing parenthesis at offset 4" },
        { bad_dup_domain, "virtual_hosts[1].domains[2]: duplicate domain 'Reviews:9080' (also in virtual host 'reviews')" },
        { bad_empty_domains, "virtual_hosts[9].domains: at least one domain is required" },
        { bad_two_stars, "virtual_hosts[10].domains[0]: only a single wildcard domain '*' is permitted (also in virtual host 's1')" },
        { bad_total_weight, "virtual_hosts[0].routes[1].route.weighted_clusters.total_weight: is 90 but the weights add up to 100" },
        { bad_zero_weights, "virtual_hosts[0].routes[1].route.weighted_clusters.clusters: the sum of the weights must be greater than 0" },
        { bad_two_rewrites, "virtual_hosts[1].routes[3].route: specify only one of prefix_rewrite, regex_rewrite or path_rewrite_policy" },
        { bad_substitution,
          "virtual_hosts[1].routes[2].route.regex_rewrite.substitution: \\3 refers to a group the pattern does not have (2)" },
        { bad_status, "virtual_hosts[1].routes[14].direct_response.status: must be in [100, 599], got 700" },
        { bad_host_header,
          "virtual_hosts[1].routes[0].request_headers_to_add[0].header.key: :-prefixed or host headers may not be modified ('Host')" },
        { bad_sep_prefix, "virtual_hosts[1].routes[1].match.path_separated_prefix: '/sep/' must not contain '?' or '#' nor end with '/'" },
        { bad_cluster_header, "virtual_hosts[1].routes[0].route.cluster_header: not supported by weft" },
        { bad_body_size, "virtual_hosts[1].routes[14].direct_response.body: response body size is 20 bytes; maximum is 4" },
        { bad_no_action, "virtual_hosts[2].routes[1]: one of route, redirect, direct_response is required" },
        { bad_header_name, "virtual_hosts[0].routes[0].match.headers[0].name: invalid character 0x20 in header name 'bad name'" },
        { bad_append_both, "request_headers_to_add[0]: both append and append_action are set, which is not allowed" },
        { bad_prefix_empty, "virtual_hosts[1].routes[18].match.headers[0].prefix_match: must not be empty" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        RouteConfiguration *rc = main_config();
        cases[i].mutate(rc);
        char err[512] = "unset";
        struct route_table *t = route_table_build(rc, lookup, NULL, err, sizeof err);
        CHECK(t == NULL);
        CHECK_EQ_STR(err, cases[i].err);
        route_table_free(t);
        rc_free(rc);
    }
    /* the same unknown cluster is fine when validate_clusters is false: index -1 */
    RouteConfiguration *rc = main_config();
    bad_cluster(rc);
    rc->validate_clusters = boolv(false);
    char err[256] = "";
    struct route_table *t = route_table_build(rc, lookup, NULL, err, sizeof err);
    CHECK(t != NULL);
    struct route_scratch *s = route_scratch_new();
    struct req r;
    const struct route_entry *e = t ? route_select(t, mkreq(&r, "reviews", "GET", "/", NULL), 0, s) : NULL;
    CHECK(e && route_cluster(e, 0) == -1 && strcmp(route_cluster_name(e, 0), "nope") == 0);
    route_table_free(t);
    rc_free(rc);
    /* err may be tiny or absent */
    rc = main_config();
    bad_regex(rc);
    char tiny[8];
    CHECK(route_table_build(rc, lookup, NULL, tiny, sizeof tiny) == NULL);
    CHECK_EQ_STR(tiny, "virtual");
    CHECK(route_table_build(rc, lookup, NULL, NULL, 0) == NULL);
    rc_free(rc);
    CHECK(route_table_build(NULL, lookup, NULL, err, sizeof err) == NULL);
    route_scratch_free(s);
    route_table_free(NULL);
}

static void test_regex_limits(void)
{
    /* A catastrophic pattern fails closed (no match) instead of spinning. */
    RouteConfiguration *rc = rc_new();
    VirtualHost *v = vhost(rc, "v", (const char *const[]){ "*", NULL });
    Route *r = add(v, route_new("evil", match_new()));
    r->match->path_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_SAFE_REGEX;
    r->match->safe_regex = regex("/(a+)+b");
    to_cluster(r, "api");
    to_cluster(add(v, rprefix("rest", "/")), "api");
    char err[256];
    struct route_table *t = route_table_build(rc, lookup, NULL, err, sizeof err);
    rc_free(rc);
    CHECK(t != NULL);
    struct route_scratch *s = route_scratch_new();
    struct req rq;
    char path[64] = "/";
    memset(path + 1, 'a', 40);
    CHECK_EQ_STR(select_name(t, mkreq(&rq, "x", "GET", path, NULL), 0, s), "rest");
    CHECK_EQ_STR(select_name(t, mkreq(&rq, "x", "GET", "/aaab", NULL), 0, s), "evil");
    route_scratch_free(s);
    route_table_free(t);
}

TEST_MAIN(TEST(test_vhost_selection), TEST(test_route_matching), TEST(test_actions), TEST(test_rewrites),
          TEST(test_redirects), TEST(test_header_mutations), TEST(test_hash), TEST(test_build_errors),
          TEST(test_regex_limits))
