/* HTTP routing, as Envoy's route_config (envoy.config.route.v3) behaves.
 *
 * The main thread compiles a RouteConfiguration once into an immutable struct route_table
 * (route_table_build, in route_build.c): strings copied, clusters resolved to indexes, regexes
 * compiled with PCRE2 (+JIT), domains hashed, direct-response bodies read. Worker threads then
 * call route_select() and the accessors below concurrently, without locks and without malloc;
 * the only per-thread state is a struct route_scratch (PCRE2 match data, JIT stack, a join
 * buffer) that each worker creates once with route_scratch_new() and passes in.
 *
 * Selection (route_select):
 *   1. virtual host by the authority: exact domain (case-insensitive), then the longest suffix
 *      wildcard ("*.foo.com", "*-bar.foo.com"; the '*' matches at least one character), then the
 *      longest prefix wildcard ("foo.*"), then "*". If nothing matched and the authority has a
 *      port ("host:8080", "[::1]:8080"), the search is repeated without the port. Domains may
 *      carry ports themselves ("example.com:8080"). ignore_port_in_host_matching strips the port
 *      before the first search, as Envoy.
 *   2. require_tls (ALL, or EXTERNAL_ONLY without "x-envoy-internal: true") on a request whose
 *      scheme is not https selects the virtual host's built-in 301 redirect to https.
 *   3. routes in order, first match wins. All of the route's conditions must hold: the path
 *      specifier (prefix / path / safe_regex / path_separated_prefix / connect_matcher), headers,
 *      query_parameters, cookies, grpc, runtime_fraction (default_value against `random`).
 *
 * Regexes use PCRE2 instead of RE2: full match for safe_regex, each bounded by
 * ROUTE_REGEX_MATCH_LIMIT / ROUTE_REGEX_HEAP_KIB; a match that hits a limit counts as no match.
 *
 * Not supported (route_table_build reports them as errors rather than silently mis-route):
 * cluster_header, cluster_specifier_plugin(s), ClusterWeight.cluster_header (and its
 * typed_per_filter_config; the route's, vhost's and table's go to hfilter.h), path_match_policy,
 * path_rewrite_policy, path_rewrite, RouteMatch.tls_context (presented/validated), filter_action,
 * non_forwarding_action, vhds, alternate_header_for_host_matching,
 * HashPolicy.header.regex_rewrite. Retry policies (route and virtual host) are compiled into
 * struct retry_policy (retry.h) and carried out by the router (router.c, retry.c); a
 * retry_on value Envoy does not know is an error. Accepted and ignored (no effect
 * on which route or cluster is picked): hedge policies, retry_priority, other retry host
 * predicates, rate_limited_retry_back_off, cors, decorators, tracing,
 * metadata, virtual_clusters, mirror policies' trace_sampled, upgrade_configs,
 * WeightedCluster.runtime_key_prefix / header_name / use_hash_policy, runtime keys (only
 * default values are used), HashPolicy.filter_state (never produces a hash), cookie ttl (the
 * cookie hash policy only hashes a cookie that is present; generating cookies is not done yet). */
#ifndef WEFT_PROXY_ROUTE_H
#define WEFT_PROXY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/http1.h"

struct route_table;
struct route_entry;
struct route_vhost;
struct route_scratch;
struct hf_route;
struct route_header_match;
struct hf_chain;
struct retry_policy;
struct subst_format;
struct pcre2_real_code_8;   /* pcre2_code (8-bit); route.h does not pull in pcre2.h */
struct Envoy__Config__Route__V3__RouteConfiguration;

/* --- limits --- */
#define ROUTE_JOIN_MAX          65536   /* bytes: a multi-valued header joined with ',' for
                                         * matching; longer → the header counts as missing */
#define ROUTE_REGEX_GROUPS      32      /* ovector pairs per scratch; regexes with more capture
                                         * groups than ROUTE_REGEX_GROUPS-1 are refused */
#define ROUTE_REGEX_MATCH_LIMIT 200000  /* PCRE2 match_limit per match / substitution */
#define ROUTE_REGEX_HEAP_KIB    1024    /* PCRE2 heap_limit (interpreter backtracking frames) */
#define ROUTE_JIT_STACK_MAX     (512 * 1024)  /* bytes of JIT stack per scratch */
#define ROUTE_DIRECT_BODY_DEFAULT 4096  /* max_direct_response_body_size_bytes default (Envoy) */
#define ROUTE_TIMEOUT_DEFAULT_MS 15000  /* RouteAction.timeout default (Envoy) */
#define ROUTE_MUTATION_LEVELS   4       /* ClusterWeight, route, virtual host, route config */
#define ROUTE_ERR_PATH_MAX      512     /* field path kept for error messages */

/* --- per-request input --- */

/* What the caller parsed; all strings point into its buffers and are only read. */
struct route_request {
    struct h1_str method;
    struct h1_str path;        /* origin-form path including ?query (empty for CONNECT) */
    struct h1_str authority;   /* Host or :authority */
    struct h1_str scheme;      /* "http"/"https": Envoy uses x-forwarded-proto here (require_tls,
                                * redirects); empty is treated as "http" */
    const struct h1_header *headers;
    size_t nheaders;           /* names as received (compared case-insensitively) */
    const struct sockaddr *source;  /* downstream peer (hash_policy source_ip); may be NULL */
};

/* --- scratch (one per worker thread) --- */

/* Creates per-thread matching state (PCRE2 match data with ROUTE_REGEX_GROUPS pairs, a match
 * context with the limits above, a JIT stack, a ROUTE_JOIN_MAX join buffer). The caller owns it
 * and uses it from one thread at a time. Returns NULL when out of memory. */
struct route_scratch *route_scratch_new(void);
void route_scratch_free(struct route_scratch *s);

/* --- building (main thread) --- */

/* Looks up a cluster by name in the snapshot being built; returns its index or -1. */
typedef int (*route_cluster_lookup)(void *ctx, const char *name);

/* Compiles rc into a table. rc is only read and may be freed afterwards. lookup (may be NULL:
 * then nothing is validated and every cluster index is -1) resolves cluster names; unknown names
 * are an error unless rc->validate_clusters is explicitly false (Envoy's default for static
 * route configs is to validate), in which case their index is -1 (the caller answers with
 * route_cluster_not_found_status()). On error returns NULL and writes one line
 * "field.path: problem" (path relative to the route config, e.g.
 * "virtual_hosts[0].routes[2].match.safe_regex.regex: missing closing parenthesis at offset 4")
 * into err (errlen bytes, NUL-terminated, may be 0). */
struct route_table *route_table_build(const struct Envoy__Config__Route__V3__RouteConfiguration *rc,
                                      route_cluster_lookup lookup, void *lookup_ctx,
                                      char *err, size_t errlen);
/* The same for an HTTP connection manager whose HTTP filters (filters[0..nfilters), the router
 * left out) are compiled into the table with it: their HCM-level configs and every
 * typed_per_filter_config of the route config, its virtual hosts and routes (hfilter.h), with
 * stats under "http.<hcm_stat_prefix>.". */
struct hf_spec;
struct route_table *route_table_build_hcm(const struct Envoy__Config__Route__V3__RouteConfiguration *rc,
                                          route_cluster_lookup lookup, void *lookup_ctx, const char *hcm_stat_prefix,
                                          const struct hf_spec *filters, size_t nfilters, char *err, size_t errlen);
/* Frees t and everything it owns. NULL is fine. No worker may still use it. */
void route_table_free(struct route_table *t);

/* --- selection (any thread, no malloc, no locks) --- */

/* Picks the virtual host and route for rq. Returns NULL when nothing matches (the caller answers
 * 404 with response flag NR). random is a per-request random number; it decides
 * runtime_fraction here and should be passed again to route_cluster()/route_weight_index().
 * The returned entry lives as long as t. */
const struct route_entry *route_select(const struct route_table *t, const struct route_request *rq,
                                       uint64_t random, struct route_scratch *scratch);
/* Only the virtual-host step of route_select (NULL when no domain matches). */
const struct route_vhost *route_find_vhost(const struct route_table *t, struct h1_str authority);

/* --- the selected entry --- */

enum route_action_kind {
    ROUTE_CLUSTER,    /* RouteAction.cluster */
    ROUTE_WEIGHTED,   /* RouteAction.weighted_clusters */
    ROUTE_REDIRECT,   /* RedirectAction (also require_tls redirects) */
    ROUTE_DIRECT,     /* DirectResponseAction */
};

enum route_action_kind route_kind(const struct route_entry *e);
/* Route.name ("" when unnamed) and the virtual host's name: for logs and stats. */
const char *route_name(const struct route_entry *e);
const char *route_vhost_name(const struct route_entry *e);

/* The upstream cluster index: ROUTE_CLUSTER → its cluster; ROUTE_WEIGHTED → the cluster of the
 * ClusterWeight picked by random % total weight (Envoy's interval walk); otherwise -1. Also -1
 * for a cluster unknown at build time when validate_clusters was false. */
int route_cluster(const struct route_entry *e, uint64_t random);
/* The index of the ClusterWeight route_cluster() picks for the same random (so its header
 * mutations and host_rewrite_literal apply), or -1 when the route is not weighted. */
int route_weight_index(const struct route_entry *e, uint64_t random);
/* The picked cluster's configured name (for %UPSTREAM_CLUSTER% and NC errors); "" if none. */
const char *route_cluster_name(const struct route_entry *e, uint64_t random);
/* cluster_not_found_response_code: 503 (default) or 404. */
int route_cluster_not_found_status(const struct route_entry *e);

/* RouteAction.priority (core.v3.RoutingPriority): which circuit breaker thresholds apply. */
int route_priority(const struct route_entry *e);
/* RouteAction.timeout in ms: ROUTE_TIMEOUT_DEFAULT_MS when unset, 0 = disabled. */
uint64_t route_timeout_ms(const struct route_entry *e);
/* RouteAction.idle_timeout in ms, or -1 when unset (the HCM stream idle timeout applies). */
int64_t route_idle_timeout_ms(const struct route_entry *e);
/* True when every matcher of m[0..n) holds for the header list h[0..nh) (Envoy's header
 * matching rules; used for retriable_headers / retriable_request_headers). */
struct route_header_match;
bool route_header_list_match(const struct route_header_match *m, size_t n, const struct h1_header *h, size_t nh,
                         struct route_scratch *s);
/* True when the route honours grpc-timeout; *cap_ms = its cap (0 = no cap). */
bool route_grpc_timeout_max(const struct route_entry *e, uint64_t *cap_ms);

/* Writes the upstream path into out (cap bytes, NUL-terminated): prefix_rewrite replaces the
 * matched prefix (the whole path before '?' for safe_regex/connect routes), regex_rewrite
 * substitutes every match in the path before '?' and keeps the query; otherwise the path is
 * copied unchanged. Returns the length (without the NUL), or -1 if it does not fit or a regex
 * limit was hit. */
int route_rewrite_path(const struct route_entry *e, const struct route_request *rq,
                       struct route_scratch *s, char *out, size_t cap);

/* The Host to send upstream, in Envoy's precedence: the route's host_rewrite_literal, the first
 * value of host_rewrite_header (when present in rq), host_rewrite_path_regex applied to the path
 * before '?', then the picked ClusterWeight's host_rewrite_literal (weight_index from
 * route_weight_index, -1 = none). Writes it into out (NUL-terminated) and returns its length;
 * returns 0 when the Host stays as it is, -1 when it does not fit. *auto_host is set when
 * auto_host_rewrite is on: the caller then uses the chosen upstream host's hostname (or address)
 * instead, as Envoy does after load balancing. */
int route_host_rewrite(const struct route_entry *e, int weight_index, const struct route_request *rq,
                       struct route_scratch *s, char *out, size_t cap, bool *auto_host);

/* Redirects: builds the Location value into location (cap bytes, NUL-terminated) as Envoy does:
 * scheme = scheme_redirect | "https" (https_redirect) | rq->scheme; host = host_redirect | the
 * request's authority, dropping its port when port_redirect is set or when the scheme changes and
 * the port is the old scheme's default (:80/:443); port = ":" port_redirect | ""; path =
 * path_redirect (keeping the request's query unless path_redirect has one) | the request path
 * after the redirect's prefix_rewrite / regex_rewrite; a '/' is prepended if missing; strip_query
 * drops "?..." (not when path_redirect carries a query). *status: 301 (default), 302, 303, 307,
 * 308. For a ROUTE_DIRECT entry whose status is 201 or 3xx, Envoy also sends the request's own
 * URL as Location: this builds it too (status = the direct status).
 * Returns the length, -ENOSPC when it does not fit, -EINVAL for any other entry. */
int route_redirect(const struct route_entry *e, const struct route_request *rq, struct route_scratch *s,
                   char *location, size_t cap, int *status);

/* Direct responses: sets *status and the body (inline_string / inline_bytes / filename read at
 * build time / environment_variable read at build time; *body may be NULL with *len 0).
 * The body belongs to the table. Returns 0, or -EINVAL when e is not ROUTE_DIRECT. */
int route_direct_response(const struct route_entry *e, int *status, const char **body, size_t *len);

/* --- header mutations --- */

/* HeaderValueOption.append_action (the legacy `append` bool maps to APPEND_IF_EXISTS_OR_ADD when
 * true and OVERWRITE_IF_EXISTS_OR_ADD when false). Values equal Envoy's enum numbers. */
enum route_append_action {
    ROUTE_APPEND_IF_EXISTS_OR_ADD = 0,     /* add another value (or the header) */
    ROUTE_ADD_IF_ABSENT = 1,               /* add only if the header is not there */
    ROUTE_OVERWRITE_IF_EXISTS_OR_ADD = 2,  /* replace all values, or add */
    ROUTE_OVERWRITE_IF_EXISTS = 3,         /* replace all values only if present */
};

struct route_header_add {
    struct h1_str name;        /* lower-case, NUL-terminated */
    struct h1_str value;       /* NUL-terminated; "%%" already turned into "%" unless formatted */
    enum route_append_action action;
    bool keep_empty_value;     /* false: skip the header when its (formatted) value is empty */
    const struct subst_format *format; /* value holds Envoy %COMMAND% operators: render this */
};

/* One level's mutations. Apply the removals first, then the additions, in array order. */
struct header_mutation {
    const struct h1_str *remove;          /* lower-case names */
    size_t nremove;
    const struct route_header_add *add;
    size_t nadd;
};

/* Fills levels[] with the request-header mutations that apply to e, in the order the caller must
 * apply them (a later level overrides an earlier one, as Envoy evaluates its header parsers):
 * the picked ClusterWeight's (weight_index, -1 = none) first, then route, virtual host, route
 * config; with most_specific_header_mutations_wins: ClusterWeight, route config, virtual host,
 * route. Empty levels are left out. Returns how many levels were written (at most
 * ROUTE_MUTATION_LEVELS). levels point into the table. */
size_t route_request_mutations(const struct route_entry *e, int weight_index,
                               const struct header_mutation *levels[ROUTE_MUTATION_LEVELS]);
/* The same for response headers (response_headers_to_add / _remove). */
size_t route_response_mutations(const struct route_entry *e, int weight_index,
                                const struct header_mutation *levels[ROUTE_MUTATION_LEVELS]);
/* RouteConfiguration.internal_only_headers (lower-case): stripped from external requests. */
const struct h1_str *route_internal_only_headers(const struct route_table *t, size_t *n);

/* --- hashing --- */

/* True when every matcher of m[0..n) holds for rq (the route's header matching rules). */
bool route_headers_match(const struct route_header_match *m, size_t n, const struct route_request *rq,
                         struct route_scratch *s);

/* Computes the hash for ring hash / maglev from the route's hash_policy list, as Envoy:
 * header (all values of the header, sorted, hashed as one XXH64 stream, seed 0; ":authority",
 * ":path", ":method" and ":scheme" name the request line fields), cookie (XXH64 of the value of a
 * present cookie; a missing cookie produces nothing — cookies are not generated yet),
 * connection_properties.source_ip (XXH64 of the peer address text without port), query_parameter
 * (XXH64 of the first raw value). Results combine as hash = rotl(hash, 1) ^ next; a `terminal`
 * policy that leaves a hash stops the walk. Returns false when no policy produced a hash (or e
 * has no hash policy); *hash is then untouched. */
bool route_hash(const struct route_entry *e, const struct route_request *rq, uint64_t *hash);

/* ------------------------------------------------------------------------------------------
 * Compiled layout. Shared by route.c (per-request) and route_build.c (compile); callers use the
 * functions above and must treat everything below as read-only and subject to change.
 * ------------------------------------------------------------------------------------------ */

enum route_sm_kind { RSM_EXACT, RSM_PREFIX, RSM_SUFFIX, RSM_CONTAINS, RSM_REGEX };

struct route_string_match {
    uint8_t kind;                   /* enum route_sm_kind */
    bool ignore_case;               /* not for RSM_REGEX */
    struct h1_str s;
    struct pcre2_real_code_8 *re;   /* RSM_REGEX: compiled for a full match */
};

enum route_hm_kind { RHM_STRING, RHM_PRESENT, RHM_RANGE };

struct route_header_match {
    struct h1_str name;             /* lower-case */
    uint8_t kind;                   /* enum route_hm_kind */
    bool present;                   /* RHM_PRESENT: present_match value */
    bool invert;
    bool missing_as_empty;
    int64_t start, end;             /* RHM_RANGE: [start, end) */
    struct route_string_match sm;   /* RHM_STRING */
};

struct route_query_match {
    struct h1_str name;
    bool present_only;
    struct route_string_match sm;
};

struct route_cookie_match {
    struct h1_str name;
    bool invert;
    struct route_string_match sm;
};

struct route_weight {
    int cluster;                    /* index or -1 */
    const char *name;
    uint32_t weight;
    const char *host_rewrite;       /* NULL when unset */
    struct header_mutation req, resp;
};

enum route_hash_kind { RHASH_HEADER, RHASH_COOKIE, RHASH_SOURCE_IP, RHASH_QUERY, RHASH_NONE };

struct route_hash_policy {
    uint8_t kind;                   /* enum route_hash_kind */
    bool terminal;
    struct h1_str name;             /* header (lower-case) / cookie / query parameter name */
};

struct route_redirect_cfg {
    const char *scheme;             /* scheme_redirect, or NULL */
    bool https;                     /* https_redirect */
    bool ssl_only;                  /* require_tls redirect: https://<authority><path> */
    const char *host;               /* host_redirect, or NULL */
    char port[8];                   /* ":<port_redirect>" or "" */
    const char *path;               /* path_redirect, or NULL */
    bool path_has_query;
    struct h1_str prefix_rewrite;   /* p == NULL when unset */
    struct pcre2_real_code_8 *re;   /* regex_rewrite pattern, or NULL */
    const char *sub;                /* its substitution in PCRE2 syntax */
    bool strip_query;
    int status;
};

struct route_mirror {
    int cluster;                    /* index, or -1 (unknown cluster, not validated) */
    uint32_t num, den;              /* runtime_fraction.default_value (unset: 100%) */
};

enum route_path_kind { RPATH_PREFIX, RPATH_EXACT, RPATH_REGEX, RPATH_SEP_PREFIX, RPATH_CONNECT };
enum route_host_kind { RHOST_NONE, RHOST_LITERAL, RHOST_AUTO, RHOST_HEADER, RHOST_REGEX };

struct route_entry {
    const char *name;
    const struct route_vhost *vhost;
    /* match */
    uint8_t path_kind;              /* enum route_path_kind */
    bool case_sensitive;
    bool grpc;
    bool has_fraction;
    struct h1_str path;             /* prefix / exact path / separated prefix */
    struct pcre2_real_code_8 *path_re;
    uint32_t frac_num, frac_den;
    const struct route_header_match *headers;
    size_t nheaders;
    const struct route_query_match *queries;
    size_t nqueries;
    const struct route_cookie_match *cookies;
    size_t ncookies;
    /* action */
    enum route_action_kind kind;
    int cluster;
    const char *cluster_name;
    int not_found_status;
    const struct route_weight *weights;
    size_t nweights;
    uint64_t total_weight;
    struct h1_str prefix_rewrite;   /* p == NULL when unset */
    struct pcre2_real_code_8 *rewrite_re;
    const char *rewrite_sub;
    uint8_t host_kind;              /* enum route_host_kind */
    const char *host_literal;
    struct h1_str host_header;
    struct pcre2_real_code_8 *host_re;
    const char *host_sub;
    uint64_t timeout_ms;
    int64_t idle_timeout_ms;
    uint8_t priority;               /* RouteAction.priority: 0 DEFAULT, 1 HIGH (circuit breakers) */
    uint64_t grpc_timeout_max_ms;  /* max_stream_duration.grpc_timeout_header_max / max_grpc_timeout */
    bool grpc_timeout_set;
    const struct route_hash_policy *hash;
    size_t nhash;
    const struct retry_policy *retry;   /* the route's, else its virtual host's; NULL: none */
    uint32_t buffer_limit;          /* per_request_buffer_limit_bytes (route, else vhost); 0 = unset */
    const struct route_redirect_cfg *redirect;
    int direct_status;
    struct h1_str direct_body;
    struct header_mutation req, resp;
    /* HTTP filters (hfilter.h): this route's own typed_per_filter_config, and the resolved
     * view the filters run with (NULL: no filter acts on this route, the fast path). */
    const struct hf_route *hf_own;
    const struct hf_route *hf;
    /* RouteAction.request_mirror_policies (mirror.h) */
    const struct route_mirror *mirrors;
    size_t nmirrors;
};

enum route_tls { ROUTE_TLS_NONE, ROUTE_TLS_EXTERNAL_ONLY, ROUTE_TLS_ALL };

struct route_vhost {
    const char *name;
    const struct route_table *table;
    const struct route_entry *routes;
    size_t nroutes;
    uint8_t require_tls;            /* enum route_tls */
    bool attempt_count_request;     /* include_request_attempt_count: x-envoy-attempt-count upstream */
    bool attempt_count_response;    /* include_attempt_count_in_response */
    const struct retry_policy *retry;   /* VirtualHost.retry_policy, or NULL */
    uint32_t buffer_limit;          /* per_request_buffer_limit_bytes, 0 = unset */
    struct route_entry ssl_redirect;
    struct header_mutation req, resp;
    const struct hf_route *hf_own;  /* typed_per_filter_config */
};

enum route_domain_kind { RDOM_EXACT, RDOM_SUFFIX, RDOM_PREFIX };

struct route_domain {
    const char *s;                  /* lower-case, without the '*' */
    size_t n;
    uint64_t hash;                  /* route_domain_hash(kind, s, n) */
    uint8_t kind;                   /* enum route_domain_kind */
    const struct route_vhost *vhost;
};

struct route_table {
    const char *name;
    const struct route_vhost *vhosts;
    size_t nvhosts;
    const struct route_domain **slots;   /* open addressing, nslots a power of two (or 0) */
    size_t nslots;
    const uint32_t *suffix_lens;    /* distinct wildcard lengths, longest first */
    size_t nsuffix_lens;
    const uint32_t *prefix_lens;
    size_t nprefix_lens;
    const struct route_vhost *default_vhost;   /* "*" */
    bool ignore_port;
    bool most_specific_wins;
    bool ignore_path_params;        /* path matching stops at the first ';' */
    struct header_mutation req, resp;
    const struct h1_str *internal_only;
    size_t ninternal_only;
    const struct hf_chain *chain;   /* the HCM's HTTP filters (NULL: none besides the router) */
    const struct hf_route *hf_own;  /* the route config's typed_per_filter_config */
    /* ownership (route_build.c) */
    void *arena;
    struct pcre2_real_code_8 **codes;
    size_t ncodes;
    struct subst_format **formats;
    size_t nformats;
};

/* The case-insensitive hash used for the domain table (both sides must agree). */
uint64_t route_domain_hash(uint8_t kind, const char *s, size_t n);

#endif
