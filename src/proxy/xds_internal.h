/* What xds_client.c (the stream, state of the world, warming) and xds_delta.c (incremental xDS)
 * share: the client's state and the helpers both use. Not for other files. */
#ifndef WEFT_PROXY_XDS_INTERNAL_H
#define WEFT_PROXY_XDS_INTERNAL_H

#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "proxy/xds_client.h"

struct xds_sub {
    struct xds_set set;
    char *version;                 /* last accepted version_info / system_version_info ("" before any) */
    char *nonce;                   /* last nonce received on this stream */
    char **names;                  /* EDS/RDS: the resource names asked for (owned) */
    size_t n_names;
    char **stream_names;           /* Delta, EDS/RDS: the names subscribed on this stream (owned) */
    size_t n_stream_names;
    bool subscribed;               /* asked for at least once (re-sent on every new stream) */
    bool node_sent;                /* this stream carried the node for this type */
    bool warming;                  /* asked for new names; nothing published until answered */
    uint64_t warm_deadline_ms;     /* 0: wait for ever (initial_fetch_timeout 0s) */
    struct stat_block *stats;
};

struct xds_client {
    struct loop *loop;
    Envoy__Config__Bootstrap__V3__Bootstrap *b; /* owned copy of the bootstrap (node overrides applied) */
    struct xds_hooks hooks;
    char *cluster_name;            /* ads_config.grpc_services[0].envoy_grpc.cluster_name */
    bool delta;                    /* ads_config.api_type DELTA_GRPC: DeltaAggregatedResources */
    uint64_t fetch_timeout_ms[XDS_NTYPES];
    struct xds_sub sub[XDS_NTYPES];
    struct grpc_client *gc;
    struct grpc_ccall *call;
    bool stream_open, started, closing;
    struct timer retry_timer, warm_timer;
    unsigned attempt;
    uint64_t rng;
    struct stat_block *cp_stats;
    int64_t connected_state;
};

/* --- xds_client.c --- */

/* Packs m and sends it on the stream (or to hooks.send); t names the type in a warning. */
void xds_send_msg(struct xds_client *x, const ProtobufCMessage *m, enum xds_type t);
/* Decodes one resource (an Any that must be of type t) into *out; on error writes
 * "resources[i]: problem" into err and returns -1. */
int xds_decode_any(enum xds_type t, const Google__Protobuf__Any *any, size_t i, ProtobufCMessage **out, char *err,
                   size_t errlen);
/* The name a resource of type t carries inside it. */
const char *xds_resource_name(enum xds_type t, const ProtobufCMessage *m);
/* Whether t's subscription asks for name (CDS/LDS: always, they are wildcard). */
bool xds_wanted(const struct xds_sub *s, enum xds_type t, const char *name);
/* Checks a response's n resources against XDS_MAX_RESOURCES and gives cand (empty) room for
 * them plus every resource s holds. Returns 0 or -1 with err. */
int xds_cand_alloc(const struct xds_sub *s, size_t n, struct xds_set *cand, char *err, size_t errlen);
/* Appends a deep copy of src to cand (whose array has room). Returns 0 or -1 (out of memory). */
int xds_set_copy_in(struct xds_set *cand, const struct xds_resource *src);

/* --- xds_delta.c --- */

enum xds_delta_kind {
    XDS_DELTA_INITIAL,   /* first request of t on a stream: every name and initial_resource_versions */
    XDS_DELTA_NAMES,     /* the names asked for changed: resource_names_subscribe / _unsubscribe */
    XDS_DELTA_ACK,       /* response_nonce, and error_detail when error is set (a NACK) */
};
/* Sends a DeltaDiscoveryRequest of kind k for t (nothing when the stream is down; a NAMES
 * request with nothing to change is not sent). */
void xds_delta_request(struct xds_client *x, enum xds_type t, enum xds_delta_kind k, const char *error);
/* Decodes a DeltaDiscoveryResponse's resources and removed_resources for t into cand (owned):
 * the resources held now, with the changed ones in place and the removed ones gone. Returns 0
 * or -1 with err. */
int xds_delta_decode(struct xds_client *x, enum xds_type t, const Envoy__Service__Discovery__V3__DeltaDiscoveryResponse *r,
                     struct xds_set *cand, char *err, size_t errlen);

#endif
