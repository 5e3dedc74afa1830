/* weft-proxy's xDS client: the bootstrap's dynamic_resources over one ADS stream (gRPC,
 * transport and resource API V3; state of the world, or incremental with ads_config api_type
 * DELTA_GRPC: see xds_delta.c), as Envoy does it.
 *
 * Model (main thread only; nothing here is thread-safe)
 *   - Subscriptions in Envoy's order: CDS (wildcard) first; EDS for the EDS clusters it names
 *     (eds_cluster_config.service_name, or the cluster name); LDS (wildcard) once the clusters
 *     are warm; RDS for every route_config_name an HCM's `rds` names; SDS (Secret) for every
 *     secret a cluster's or listener's TLS context names with `sds_config: {ads: {}}`.
 *   - Each response (DiscoveryResponse, or DeltaDiscoveryResponse applied to the held set) is
 *     decoded, checked and tried: a candidate snapshot is built from the
 *     static resources plus every current xDS resource with the response's resources in place.
 *     A response that builds is ACKed (version_info = its version, response_nonce = its nonce);
 *     one that does not is NACKed (the last accepted version, the nonce, and error_detail, a
 *     google.rpc.Status with code INVALID_ARGUMENT and the reason; Delta: the nonce and
 *     error_detail) and the last good config stays.
 *   - Warming: a snapshot is published (hooks.publish) only when no subscription made for new
 *     names (EDS for added clusters, RDS for added route names, SDS for added secret names, LDS
 *     after CDS and the clusters' EDS and SDS) is waiting for its
 *     first answer, or when initial_fetch_timeout (default 15 s, as Envoy) has passed for it. A
 *     listener whose route configuration never came is left out (not ready); an EDS cluster
 *     whose ClusterLoadAssignment never came has no hosts; a TLS context whose secret never came
 *     has no SSL_CTX (its connections fail, "Secret is not supplied by SDS"). A new version of a
 *     secret is a new snapshot: new connections use it, open ones keep theirs (nothing drains,
 *     since the Listener resources did not change).
 *   - The stream goes to the first host of the static cluster that ads_config.grpc_services[0]
 *     .envoy_grpc.cluster_name names. When it ends, the client keeps the last config and
 *     reconnects after a jittered exponential backoff (base 500 ms, doubling, at most 30 s,
 *     each delay drawn from [d/2, d]; reset once a response arrives), then re-sends every
 *     subscription with the versions it holds.
 *
 * Ownership: the client copies what it needs from the bootstrap. Snapshots handed to
 * hooks.publish carry one reference the hook takes over. */
#ifndef WEFT_PROXY_XDS_CLIENT_H
#define WEFT_PROXY_XDS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <protobuf-c/protobuf-c.h>

#include "common/loop.h"
#include "proxy/config.h"

enum xds_type { XDS_CDS, XDS_EDS, XDS_LDS, XDS_RDS, XDS_SDS, XDS_NTYPES };

/* Most resources of one type the client keeps, and the largest response it takes (docs/limits.md). */
#define XDS_MAX_RESOURCES 10000
#define XDS_MAX_RESPONSE (64u * 1024u * 1024u)
#define XDS_BACKOFF_BASE_MS 500u
#define XDS_BACKOFF_MAX_MS 30000u
#define XDS_DEFAULT_INITIAL_FETCH_MS 15000u

/* One accepted resource. */
struct xds_resource {
    char *name;
    ProtobufCMessage *msg;         /* decoded, owned */
    char *version;                 /* version_info of the response that brought it */
    time_t last_updated;
};

struct xds_set {
    struct xds_resource *r;
    size_t n;
};

struct xds_hooks {
    void *arg;
    /* A new snapshot to make current (one reference, taken over by the hook). */
    void (*publish)(void *arg, struct snapshot *s);
    /* The snapshot in use now (borrowed): where the xds-grpc cluster's hosts are found. */
    struct snapshot *(*current)(void *arg);
    /* Tests: takes each serialized DiscoveryRequest instead of the gRPC stream. */
    void (*send)(void *arg, const uint8_t *req, size_t len);
};

struct xds_client;

/* Creates the client for bootstrap b (an envoy.config.bootstrap.v3.Bootstrap, borrowed: what is
 * needed is copied). node_id / node_cluster (may be NULL) override b->node. Returns NULL with
 * err[0] == '\0' when b has no ADS dynamic_resources, or NULL with err set ("field.path:
 * problem") when they are wrong or unsupported. */
struct xds_client *xds_client_new(struct loop *l, const ProtobufCMessage *b, const struct xds_hooks *hooks,
                                  const char *node_id, const char *node_cluster, char *err, size_t errlen);
/* Sets the loop the client runs on (when it was created before the loop, with l NULL). */
void xds_client_set_loop(struct xds_client *x, struct loop *l);
/* Opens the stream (or, with hooks.send, starts a fake one) and sends the first request. */
void xds_client_start(struct xds_client *x);
/* Closes the stream and frees everything. NULL is allowed. */
void xds_client_free(struct xds_client *x);

/* Handles one serialized DiscoveryResponse as if it came on the stream (the stream's own
 * handler; tests and the fuzzer call it directly). Returns 1 when it was ACKed, 0 when NACKed,
 * -1 when it was not a usable DiscoveryResponse (ignored). */
int xds_client_handle_response(struct xds_client *x, const uint8_t *msg, size_t len);
/* As if the stream broke and a new one opened: re-sends every subscription (tests). */
void xds_client_resync(struct xds_client *x);
/* Lets every warming subscription's initial_fetch_timeout pass now (tests). */
void xds_client_expire_warming(struct xds_client *x);

/* Read-only views for admin and tests. */
const struct xds_set *xds_client_resources(const struct xds_client *x, enum xds_type t);
const char *xds_client_version(const struct xds_client *x, enum xds_type t);
bool xds_client_connected(const struct xds_client *x);
const char *xds_type_url(enum xds_type t);

/* --- xds_compose.c --- */

/* Builds a snapshot from bootstrap b (borrowed; its static_resources) plus the xDS resources in
 * sets (borrowed): dynamic clusters with their ClusterLoadAssignment in place of
 * load_assignment for EDS ones, dynamic listeners whose HCM `rds` is replaced by the named
 * RouteConfiguration (listeners whose route configuration is missing are skipped). /config_dump
 * gets Envoy's dynamic_* sections. On error returns NULL and writes one line naming the
 * resource and field into err. */
struct snapshot *xds_snapshot_build(const ProtobufCMessage *b, const struct xds_set sets[XDS_NTYPES], char *err,
                                    size_t errlen);
/* The resource names an EDS cluster / HCM asks for, collected from sets[XDS_CDS] / sets[XDS_LDS]
 * into *names (malloc'd array of borrowed strings, deduplicated). Returns the count. */
size_t xds_eds_names(const struct xds_set *cds, const char ***names);
size_t xds_rds_names(const struct xds_set *lds, const char ***names);
/* The secret names the TLS contexts of sets cds and lds reference with sds_config (malloc'd array
 * of malloc'd strings, as xds_rds_names), and into *fetch_ms the longest initial_fetch_timeout of
 * those sds_configs (0, wait for ever, when one says 0s; unchanged when there are none). */
size_t xds_sds_names(const struct xds_set *cds, const struct xds_set *lds, const char ***names, uint64_t *fetch_ms);
/* A ConfigSource's initial_fetch_timeout in ms (Envoy's default 15 s when cs or it is unset). */
uint64_t xds_fetch_ms(const ProtobufCMessage *cs);

#endif
