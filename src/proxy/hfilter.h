/* HTTP filters before the router: the fault injection filter (envoy.filters.http.fault) and the
 * local rate limit filter (envoy.filters.http.local_ratelimit), as Envoy v3 documents them.
 *
 * Configuration. The HCM's http_filters list (router left out) becomes a struct hf_chain
 * compiled into the route table (route_table_build_hcm): one entry per filter, in order, with
 * its name and its HCM-level config. typed_per_filter_config on the route configuration, a
 * virtual host or a route is keyed by filter name; the most specific one replaces the filter's
 * config for that route, as Envoy's per-route configs do. Each route entry gets a resolved
 * struct hf_route (config per chain entry) when some filter can act on it, else NULL, so a route
 * without active filters costs one pointer test per request.
 *
 * Request time (hf_run): the codecs call it once the route is chosen and the request goes
 * upstream. It returns HF_CONTINUE, HF_REPLY (answer with st->status etc.: a fault abort or a
 * rate-limited 429) or HF_DELAY (arm a timer for st->delay_ms, then call hf_run again: the
 * chain resumes where it stopped). Nothing allocates; the shared state (token buckets, the
 * active fault count) is atomics. */
#ifndef WEFT_PROXY_HFILTER_H
#define WEFT_PROXY_HFILTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "proxy/route.h"

struct worker;
struct stream_info;
struct stat_block;
struct build;
struct Google__Protobuf__Any;
struct Envoy__Config__Route__V3__Route__TypedPerFilterConfigEntry;

#define HF_MAX 8   /* HTTP filters (besides the router) per connection manager */

enum hf_kind { HF_FAULT, HF_LOCAL_RATELIMIT };

/* What a snapshot hands the route builder: one HCM http_filters entry. */
struct hf_spec {
    const char *name;                         /* HttpFilter.name */
    const struct Google__Protobuf__Any *typed_config;
};

struct hf_fault {
    bool delay, delay_header;                 /* delay.fixed_delay / delay.header_delay */
    uint64_t delay_ms;
    uint32_t delay_num, delay_den;
    bool abort, abort_header;                 /* abort.http_status|grpc_status / header_abort */
    int abort_http, abort_grpc;               /* abort_grpc -1 when http_status */
    uint32_t abort_num, abort_den;
    const char *upstream_cluster;             /* NULL: any */
    const struct route_header_match *headers;
    size_t nheaders;
    const char **nodes;                       /* downstream_nodes */
    size_t nnodes;
    uint64_t max_active;                      /* max_active_faults, UINT64_MAX when unset */
};

struct hf_bucket {                            /* Envoy's TokenBucket, shared by every worker */
    uint64_t max_tokens, per_fill, interval_ms;
    _Atomic int64_t tokens;
    _Atomic uint64_t next_fill_ms;            /* monotonic ms of the next fill */
};

struct hf_lrl {
    struct stat_block *stats;                 /* "<stat_prefix>.http_local_rate_limit." */
    bool has_bucket;
    struct hf_bucket bucket;
    uint32_t en_num, en_den, enf_num, enf_den;  /* filter_enabled / filter_enforced defaults */
    int status;                               /* default 429 */
    bool grpc_resource_exhausted;             /* rate_limited_as_resource_exhausted */
    struct header_mutation resp;              /* response_headers_to_add */
};

struct hf_filter {
    uint8_t kind;                             /* enum hf_kind */
    const char *name;
    const void *cfg;                          /* HCM-level config; NULL: inert */
    struct stat_block *stats;                 /* fault: "http.<prefix>.fault." */
    _Atomic uint64_t active_faults;           /* fault: faults in progress, all workers */
};

struct hf_chain {
    size_t n;
    struct hf_filter f[HF_MAX];
};

/* Per-route configs, one slot per chain entry (NULL: none / the HCM's). `disabled` marks a
 * FilterConfig{disabled: true} for that filter. */
struct hf_route {
    const void *cfg[HF_MAX];
    bool set[HF_MAX];
    bool disabled[HF_MAX];
};

/* --- building (route_build.c calls these; hfilter_build.c) --- */
int hf_compile_chain(struct build *b, const struct hf_spec *f, size_t n, const struct hf_chain **out);
/* typed_per_filter_config map entries (Route, VirtualHost and RouteConfiguration entries share a
 * layout: key, value). */
int hf_compile_per_route(struct build *b, void *const *entries, size_t n, const struct hf_route **out);
int hf_resolve_route(struct build *b, const struct hf_chain *chain, struct route_entry *e);
/* True for the HTTP filter types hf_compile_chain takes (by type name, without the URL prefix). */
bool hf_known_type(const char *type_name);

/* --- request time (hfilter.c) --- */

enum hf_verdict { HF_CONTINUE, HF_REPLY, HF_DELAY };

/* Per-stream state; zeroed when the stream starts. */
struct hf_state {
    uint8_t next;                             /* chain index to run next */
    uint8_t phase;                            /* 1: the fault at `next` has delayed */
    bool counted;                             /* holds one active fault on `active` */
    _Atomic uint64_t *active;
    uint64_t delay_ms;
    /* HF_REPLY */
    int status;
    int grpc_status;                          /* explicit grpc-status (fault grpc_status), or -1 */
    uint32_t flag;
    const char *details, *body;
    const struct header_mutation *reply_add;  /* headers for the local reply, or NULL */
    bool ratelimited;                         /* add x-envoy-ratelimited: true */
};

enum hf_verdict hf_run(const struct route_entry *route, struct worker *w, const struct route_request *rr,
                       const char *cluster, struct hf_state *st, struct stream_info *si);
/* The stream is over: gives back its active fault. */
void hf_done(struct hf_state *st, struct worker *w, const struct route_entry *route);
/* Takes one token from b (lock-free, shared by every worker); false when it is empty. */
bool hf_bucket_take(struct hf_bucket *b);

/* Appends the local reply's extra headers (x-envoy-ratelimited, response_headers_to_add). */
int hf_reply_headers(struct buf *b, const struct hf_state *st, const struct stream_info *si);

#endif
