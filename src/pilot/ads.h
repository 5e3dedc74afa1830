/* pilot/ads: weftd's Aggregated Discovery Service (envoy.service.discovery.v3), state of the
 * world (StreamAggregatedResources) and incremental (DeltaAggregatedResources).
 *
 * Model
 *   - One ads_server per weftd, on the loop thread; nothing here is thread-safe.
 *   - An ads_conn is one ADS stream (one gRPC call). Its transport is a send function, so the
 *     request handler runs the same under gRPC (ads_server_register), in unit tests and in
 *     the fuzzer. The proxy's identity comes from the first request's node.
 *   - Per type URL (CDS, EDS, LDS, RDS) a stream keeps its subscription (wildcard or names),
 *     the last version/nonce sent, acked and nacked, and a 64-bit hash of what was sent
 *     (SotW: every serialized resource in order; Delta: one hash per resource, which is also
 *     the resource's version). A push sends a type only when its hash changed, so a config
 *     change reaches only the proxies and types it affects, and a NACKed version is never
 *     sent again: the proxy keeps its last good config until the config changes again.
 *   - Config changes are debounced: ads_server_set_model() arms a quiet-period timer
 *     (debounce_ms after the last change, at most debounce_max_ms after the first), then
 *     every stream is pushed in Envoy's warming order (CDS, EDS, LDS, RDS).
 *   - Backpressure: when the transport refuses a message (-ENOBUFS) the type is marked
 *     pending and nothing is buffered; ads_conn_on_writable() regenerates it from the latest
 *     model. A slow proxy costs at most one queued message plus a flag per type. */
#ifndef WEFT_PILOT_ADS_H
#define WEFT_PILOT_ADS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/loop.h"
#include "pilot/model.h"
#include "pilot/translate.h"

struct ads_server;
struct ads_conn;
struct grpc_server;

#define ADS_PATH_SOTW "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
#define ADS_PATH_DELTA "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
#define ADS_MAX_NAMES 100000      /* subscribed resource names per stream and type */
#define ADS_MAX_CONNS 100000      /* ADS streams per weftd */
#define ADS_ERROR_MAX 1024        /* bytes of a NACK's error message kept per type */
#define ADS_CACHE_MAX_BYTES (512u * 1024 * 1024) /* generated resources shared per model version */

/* Debounce bookkeeping, separate from the timer so it can be tested alone. */
struct ads_debounce {
    uint64_t quiet_ms, max_ms;   /* wait quiet_ms after the last event, never past max_ms after the first */
    uint64_t first_ms, last_ms;
    bool pending;
};
/* Records a change at time now (ms). */
void ads_debounce_event(struct ads_debounce *d, uint64_t now);
/* When the pending push is due (ms), or UINT64_MAX when nothing is pending. */
uint64_t ads_debounce_deadline(const struct ads_debounce *d);
/* True when a push is pending and due at now; the caller then pushes and calls
 * ads_debounce_reset(). */
bool ads_debounce_due(const struct ads_debounce *d, uint64_t now);
void ads_debounce_reset(struct ads_debounce *d);

struct ads_config {
    uint64_t debounce_ms;        /* [100] */
    uint64_t debounce_max_ms;    /* [10000] */
};

/* Creates the server on loop l with the first model m (referenced). Returns NULL when out of
 * memory. */
struct ads_server *ads_server_new(struct loop *l, struct pilot_model *m, const struct ads_config *cfg);
/* Ends every stream's state (the transport must already be gone) and frees the server. */
void ads_server_free(struct ads_server *s);
/* A new config snapshot (referenced): debounced push to the streams it affects. */
void ads_server_set_model(struct ads_server *s, struct pilot_model *m);
/* Pushes the latest model to every stream now (what the debounce timer does). */
void ads_server_push_all(struct ads_server *s);
/* The model streams are served from (borrowed). */
struct pilot_model *ads_server_model(const struct ads_server *s);
/* Registers both ADS methods on g. Returns 0 or a negative errno. */
int ads_server_register(struct ads_server *s, struct grpc_server *g);
/* Ends every gRPC ADS stream with UNAVAILABLE (for shutdown). */
void ads_server_finish_all(struct ads_server *s);

/* Sends one serialized (Delta)DiscoveryResponse on the stream's transport. Returns 0,
 * -ENOBUFS when the transport cannot take it now (nothing was queued: wait for
 * ads_conn_on_writable), or another negative errno (the stream is failing). */
typedef int (*ads_send_fn)(void *ctx, const uint8_t *msg, size_t len);

/* A new stream (delta: DeltaAggregatedResources) sending through send(ctx, ...). Returns NULL
 * when out of memory or at ADS_MAX_CONNS. */
struct ads_conn *ads_conn_new(struct ads_server *s, bool delta, ads_send_fn send, void *ctx);
/* One request message (borrowed bytes). Returns 0, or -EINVAL with *why (static text) when the
 * stream must end with INVALID_ARGUMENT (undecodable message, missing or bad node). */
int ads_conn_on_message(struct ads_conn *c, const uint8_t *msg, size_t len, const char **why);
/* The transport has room again: sends the pending types. */
void ads_conn_on_writable(struct ads_conn *c);
void ads_conn_free(struct ads_conn *c);

/* What one stream knows about one type, for /debug/syncz and tests. */
struct ads_type_state {
    bool subscribed, wildcard;
    size_t n_names;               /* subscribed names (not wildcard) */
    size_t n_resources;           /* resources in the last response sent (SotW) / known to the client (Delta) */
    char sent_version[32], sent_nonce[32], acked_version[32], acked_nonce[32];
    char nacked_version[32], nacked_nonce[32];
    const char *nack_error;       /* the last NACK's error message ("" when none); borrowed */
    uint64_t sent, acks, nacks;
    bool pending;                 /* a push waits for the transport */
};
/* Fills st for type t. Returns -1 for a bad type. */
int ads_conn_type_state(const struct ads_conn *c, enum pilot_type t, struct ads_type_state *st);
/* The stream's node id ("" before the first request). */
const char *ads_conn_node_id(const struct ads_conn *c);

/* Server-wide counters (Istio's metric names are in ads_server_metrics). */
struct ads_stats {
    uint64_t pushes[PILOT_TYPE_COUNT];      /* responses sent per type */
    uint64_t rejects[PILOT_TYPE_COUNT];     /* NACKs per type */
    uint64_t internal_errors;               /* translation or encoding failures */
    uint64_t stale_requests;                /* requests with a nonce that is not the last sent */
    uint64_t conns, live_conns, pending_pushes;
    uint64_t cache_hits, cache_misses;      /* generation cache (streams with the same inputs) */
    /* pilot_proxy_convergence_time: time from the first config change of a debounced batch
     * to the push reaching a stream, bucketed (seconds, Istio's buckets) */
    uint64_t conv_buckets[9];   /* .1 .5 1 3 5 10 20 30 +Inf (cumulative when rendered) */
    uint64_t conv_count;
    double conv_sum;
};
void ads_server_get_stats(const struct ads_server *s, struct ads_stats *out);

/* JSON text (malloc'd, NULL when out of memory) of every stream and its per-type state
 * (/debug/syncz). */
char *ads_server_syncz_json(const struct ads_server *s);
/* Appends the Prometheus text of the ADS metrics to a malloc'd string (returned; NULL when
 * out of memory): pilot_xds, pilot_xds_pushes, pilot_total_xds_rejects,
 * pilot_total_xds_internal_errors, pilot_proxy_convergence_time, config counts. */
char *ads_server_metrics(const struct ads_server *s);
/* The first connected stream whose node id is id, or NULL. */
struct ads_conn *ads_server_find(const struct ads_server *s, const char *id);
/* The proxy identity of a stream (NULL before its first request). */
const struct pilot_proxy *ads_conn_proxy(const struct ads_conn *c);

#endif
