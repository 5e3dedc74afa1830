/* pilot/translate: model snapshot x proxy identity -> Envoy v3 resources, shaped and named
 * as istiod names them.
 *
 * For a sidecar: listeners "virtualOutbound" (0.0.0.0:15001, use_original_dst, catch-all to
 * PassthroughCluster or BlackHoleCluster), "virtualInbound" (0.0.0.0:15006, one filter chain
 * per inbound port), "0.0.0.0_PORT" per outbound HTTP port (RDS "PORT") and "VIP_PORT" per
 * outbound TCP port (tcp_proxy); route configurations "PORT" with one virtual host per
 * service; clusters "outbound|PORT|SUBSET|HOST" (EDS) and "inbound|PORT||"; and
 * ClusterLoadAssignments for the EDS clusters. For a router (gateway): one listener per
 * Gateway server port ("0.0.0.0_PORT", RDS "http.PORT").
 *
 * Resources are built as proto3 JSON and read back through the mapper (pbmap), so every
 * name is checked against the Envoy protos in api/envoy. Config-time code.
 *
 * Threads: pilot_translate only reads the model (immutable) and the proxy, so any number of
 * threads may translate at once, each holding a reference to the snapshot it works from,
 * while the store publishes newer snapshots on its own thread. */
#ifndef WEFT_PILOT_TRANSLATE_H
#define WEFT_PILOT_TRANSLATE_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "istio/config.h"
#include "pilot/model.h"

enum pilot_proxy_type { PILOT_PROXY_SIDECAR, PILOT_PROXY_ROUTER };

/* Who asks. Built from an Envoy node id "TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.SUFFIX" and
 * node metadata (LABELS, NAMESPACE, SERVICE_ACCOUNT). Owns its strings. */
struct pilot_proxy {
    enum pilot_proxy_type type;
    char *id;
    char *ip;
    char *pod;              /* "" when the id has none */
    char *ns;
    char *service_account;  /* "" when unknown */
    struct istio_kv *labels; /* sorted, owned */
    size_t n_labels;
};

/* Parses node_id into p (zeroed by the caller). Returns 0, or -1 with err filled. */
int pilot_proxy_parse(const char *node_id, struct pilot_proxy *p, char *err, size_t errlen);
/* From an xDS Node (borrowed): its id as pilot_proxy_parse, then Istio's node metadata:
 * LABELS (a struct of strings), NAMESPACE, SERVICE_ACCOUNT, and INSTANCE_IPS (the first
 * address overrides the id's IP). Returns 0, or -1 with err filled. */
struct Envoy__Config__Core__V3__Node;
int pilot_proxy_from_node(const struct Envoy__Config__Core__V3__Node *node, struct pilot_proxy *p,
                          char *err, size_t errlen);
/* Adds/overrides a label (copied). Returns 0 or -1. */
int pilot_proxy_set_label(struct pilot_proxy *p, const char *key, const char *value);
/* When the proxy has no labels, takes labels, namespace and service account from the
 * WorkloadEntry of model m whose address is the proxy's IP (what weftd does for a proxy
 * without metadata, e.g. with --dump). */
void pilot_proxy_complete(struct pilot_proxy *p, const struct pilot_model *m);
void pilot_proxy_free(struct pilot_proxy *p);

enum pilot_type { PILOT_CDS, PILOT_EDS, PILOT_LDS, PILOT_RDS, PILOT_TYPE_COUNT };

/* Type URL of the resources of one type ("type.googleapis.com/envoy.config.cluster.v3.Cluster"
 * ...) and a short name ("cds"). */
const char *pilot_type_url(enum pilot_type t);
const char *pilot_type_name(enum pilot_type t);

/* Resources of one type, sorted by name. */
struct pilot_resources {
    ProtobufCMessage **msgs; /* Cluster / ClusterLoadAssignment / Listener / RouteConfiguration */
    char **names;
    size_t n;
};

/* Generates the resources of type t that proxy p receives from model m. Problems found
 * while translating (a route to an unknown host, ...) are appended to warnings (may be
 * NULL). Returns 0 with out filled (owned by the caller: pilot_resources_free), or -1 when
 * out of memory or when a generated resource does not map onto the Envoy protos (a bug;
 * the message is in warnings). */
int pilot_translate(const struct pilot_model *m, const struct pilot_proxy *p, enum pilot_type t,
                    struct pilot_resources *out, struct istio_errors *warnings);
void pilot_resources_free(struct pilot_resources *r);

/* The problems istioctl analyze would report about references between objects and
 * validation cannot see: VirtualService destinations whose host is not in the registry or
 * whose subset no DestinationRule defines. Appends one line per problem to warnings.
 * Returns 0, or -1 when out of memory. */
int pilot_check_references(const struct pilot_model *m, struct istio_errors *warnings);

/* What `weftd --dump` prints: for type t (or every type in ADS order, CDS EDS LDS RDS, when
 * t < 0) a DiscoveryResponse {versionInfo: model version, resources: [Any...], typeUrl} as
 * pretty-printed proto3 JSON (a JSON array of them when t < 0). Returns a malloc'd string,
 * or NULL (error in warnings). Golden tests compare this text. */
char *pilot_dump_json(const struct pilot_model *m, const struct pilot_proxy *p, int t,
                      struct istio_errors *warnings);

/* For a proxyless gRPC client (node metadata GENERATOR: grpc): the resources of type t as
 * Istio's grpcgen builds them (see translate_grpc.c): api_listener Listeners and
 * RouteConfigurations named "HOST:PORT" as requested (names[0..n_names), or every service
 * when wildcard), EDS clusters and their ClusterLoadAssignments. Returns and ownership as
 * pilot_translate. */
int pilot_translate_grpc(const struct pilot_model *m, const struct pilot_proxy *p, enum pilot_type t,
                         char *const *names, size_t n_names, int wildcard, unsigned timeout_pad_ms,
                         struct pilot_resources *out, struct istio_errors *warnings);
/* What pilot_translate_grpc adds to route timeouts for a client with this node
 * user_agent_name: PILOT_GRPC_CORE_TIMEOUT_PAD_MS for gRPC C-core ("gRPC C-core linux Python",
 * whose method-config deadlines fire 1-2 s early), else 0. */
#define PILOT_GRPC_CORE_TIMEOUT_PAD_MS 2000u
unsigned pilot_grpc_timeout_pad_ms(const char *user_agent_name);

#endif
