/* The runtime configuration: one immutable, refcounted snapshot built by the main thread from
 * Envoy v3 protobuf messages (bootstrap now, xDS later). Workers hold a reference for as long as
 * any connection or stream uses it, so a swap never touches in-flight requests.
 * Everything reachable from a snapshot is read-only after snapshot_build() returns. */
#ifndef WEFT_PROXY_CONFIG_H
#define WEFT_PROXY_CONFIG_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/stats.h"

struct route_table;
struct lb_table;
struct lb_config;
struct access_log;
struct dns_resolver;
struct tls_provider;
struct host_health;
struct cluster_health;
struct circuit_breakers;

#define ADDR_STR_MAX 64   /* "[ffff:...]:65535" */

struct cidr {
    struct sockaddr_storage addr;  /* network address, family decides v4/v6 */
    uint32_t prefix_len;
};

/* HTTP/2 codec stats (Envoy's "http2." names): downstream ones in the global block "http2.",
 * upstream ones in "cluster.<name>.http2.". */
enum http2_stat {
    H2S_RX_RESET, H2S_TX_RESET, H2S_HEADER_OVERFLOW, H2S_TRAILERS, H2S_GOAWAY_SENT,
    H2S_STREAMS_ACTIVE, H2S_OUTBOUND_FLOOD, H2S_OUTBOUND_CONTROL_FLOOD, H2S_INBOUND_EMPTY_FRAMES_FLOOD,
    H2S_INBOUND_PRIORITY_FRAMES_FLOOD, H2S_INBOUND_WINDOW_UPDATE_FRAMES_FLOOD, H2S_RX_MESSAGING_ERROR,
    H2S_TOO_MANY_HEADER_FRAMES, H2S_STREAM_REFUSED_ERRORS, H2S_DROPPED_HEADERS_WITH_UNDERSCORES,
    H2S_PENDING_SEND_BYTES, H2S_TX_FLUSH_TIMEOUT, H2S_KEEPALIVE_TIMEOUT,
    H2S_COUNT
};
extern const struct stat_schema http2_stat_schema;

/* Http2ProtocolOptions as weft-proxy applies them (both directions). Defaults are Envoy's,
 * clamped where Weft's bounded buffers need it (docs/limits.md). */
struct h2_options {
    uint32_t hpack_table_size;                 /* 4096 */
    uint32_t max_concurrent_streams;           /* Envoy 2147483647; Weft caps at H2_MAX_STREAMS */
    uint32_t initial_stream_window_size;       /* as configured (Envoy 256 MiB) */
    uint32_t initial_connection_window_size;   /* as configured (Envoy 256 MiB) */
    bool allow_connect;
    uint32_t max_outbound_frames;              /* 10000 */
    uint32_t max_outbound_control_frames;      /* 1000 */
    uint32_t max_consecutive_inbound_frames_with_empty_payload; /* 1 */
    uint32_t max_inbound_priority_frames_per_stream;            /* 100 */
    uint32_t max_inbound_window_update_frames_per_data_frame_sent; /* 10 */
    bool override_stream_error_on_invalid_http_message;        /* false: a bad message closes the connection */
};
/* Most streams one HTTP/2 connection may have open (the per-connection stream pool size). */
#define H2_MAX_STREAMS 1024
#define H2_DEFAULT_MAX_STREAMS 100

/* Fills o with Envoy's defaults. */
void h2_options_defaults(struct h2_options *o);

/* The protocol a cluster speaks to its hosts. UPSTREAM_AUTO (auto_config) only with TLS: each
 * connection offers ALPN "h2,http/1.1" and speaks what the server selected. */
enum upstream_proto { UPSTREAM_HTTP1, UPSTREAM_HTTP2, UPSTREAM_DOWNSTREAM, UPSTREAM_AUTO };

/* --- clusters --- */

enum cluster_type { CLUSTER_STATIC, CLUSTER_STRICT_DNS, CLUSTER_LOGICAL_DNS, CLUSTER_ORIGINAL_DST, CLUSTER_EDS };

struct host {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char addr_str[ADDR_STR_MAX];   /* "10.0.0.1:8080": stats, access log %UPSTREAM_HOST%, hashing */
    char *hostname;                /* from Endpoint.hostname or the DNS name; may be NULL */
    uint32_t weight;
    uint32_t priority;
    bool healthy;                  /* EDS health_status; the lb also reads hh (host_health.h) */
    struct host_health *hh;        /* this address's health record (the cluster's), or NULL */
};

/* Stats fields of a cluster block ("cluster.<name>."); order matches cluster_stat_defs. */
enum cluster_stat {
    CS_UPSTREAM_CX_TOTAL, CS_UPSTREAM_CX_ACTIVE, CS_UPSTREAM_CX_CONNECT_FAIL,
    CS_UPSTREAM_CX_CONNECT_TIMEOUT, CS_UPSTREAM_CX_DESTROY, CS_UPSTREAM_CX_RX_BYTES_TOTAL,
    CS_UPSTREAM_CX_TX_BYTES_TOTAL, CS_UPSTREAM_CX_NONE_HEALTHY, CS_UPSTREAM_RQ_TOTAL,
    CS_UPSTREAM_RQ_ACTIVE, CS_UPSTREAM_RQ_TIMEOUT, CS_UPSTREAM_RQ_1XX, CS_UPSTREAM_RQ_2XX,
    CS_UPSTREAM_RQ_3XX, CS_UPSTREAM_RQ_4XX, CS_UPSTREAM_RQ_5XX, CS_UPSTREAM_RQ_COMPLETED,
    CS_UPSTREAM_CX_DESTROY_LOCAL, CS_UPSTREAM_CX_DESTROY_REMOTE, CS_UPSTREAM_RQ_PENDING_TOTAL,
    CS_MEMBERSHIP_HEALTHY, CS_MEMBERSHIP_TOTAL, CS_UPSTREAM_CX_HTTP1_TOTAL,
    CS_UPSTREAM_CX_HTTP2_TOTAL, CS_UPSTREAM_RQ_RX_RESET, CS_UPSTREAM_RQ_TX_RESET,
    /* retries (router.c, retry.c) */
    CS_UPSTREAM_RQ_RETRY, CS_UPSTREAM_RQ_RETRY_SUCCESS, /* retry_overflow: circuit_breaker.c */
    CS_UPSTREAM_RQ_RETRY_LIMIT_EXCEEDED, CS_UPSTREAM_RQ_RETRY_BACKOFF_EXPONENTIAL, CS_UPSTREAM_RQ_PER_TRY_TIMEOUT,
    CS_UPSTREAM_CX_MAX_DURATION_REACHED, CS_UPSTREAM_CX_MAX_REQUESTS,
    CS_COUNT
};
extern const struct stat_schema cluster_stat_schema;

struct cluster {
    char *name;
    int index;                     /* position in snapshot->clusters */
    enum cluster_type type;
    uint64_t connect_timeout_ms;   /* default 5000 */
    struct sockaddr_storage bind_addr; /* upstream_bind_config.source_address (bind_len 0: none) */
    socklen_t bind_len;
    bool bind_freebind;
    uint32_t max_requests_per_connection; /* 0 = unlimited */
    uint64_t idle_timeout_ms;      /* upstream connection idle timeout, default 1h */
    uint64_t max_connection_duration_ms; /* HttpProtocolOptions common_http_protocol_options, 0 = none */
    uint32_t per_connection_buffer_limit;
    /* Hosts: static ones are fixed; DNS clusters get a new host set (and lb table) from the
     * resolver on the main thread, published like a snapshot (see cluster_hosts). */
    _Atomic(struct host_set *) hosts;
    struct lb_config *lbc;         /* how to build a host set's load-balancing table */
    struct dns_target *dns;        /* STRICT/LOGICAL_DNS: one per lb_endpoint */
    size_t n_dns;
    uint64_t dns_refresh_ms;       /* dns_refresh_rate, default 5 s */
    int dns_family;                /* AF_UNSPEC, AF_INET, AF_INET6 (dns_lookup_family) */
    struct stat_block *stats;
    struct tls_provider *tls;      /* transport_socket envoy.transport_sockets.tls, or NULL */
    struct stat_block *ssl_stats;  /* "cluster.<name>.ssl." when tls */
    enum upstream_proto protocol;  /* typed_extension_protocol_options / http2_protocol_options */
    struct h2_options h2;          /* when protocol may be HTTP/2 */
    struct stat_block *h2_stats;   /* "cluster.<name>.http2." */
    struct circuit_breakers *cb;   /* circuit_breakers.thresholds (circuit_breaker.h) */
    struct cluster_health *health; /* outlier detection, health checks (host_health.h) */
};

struct dns_target {
    char *name;
    uint16_t port;
    uint32_t weight, priority;
};

/* A cluster's current hosts with their load-balancing table: immutable, refcounted. */
struct host_set {
    atomic_int refs;
    struct host *hosts;
    size_t n;
    struct lb_table *lb;
    bool panic;                    /* some priority level of lb is in panic mode */
};

/* --- listeners --- */

enum net_filter_kind { NF_HTTP, NF_TCP_PROXY };

struct header_mutation;  /* defined by route.h */

struct hcm_config {
    struct snapshot *snap;         /* the snapshot this belongs to (not a reference; snapshot_build) */
    char *stat_prefix;
    struct stat_block *stats;      /* "http.<stat_prefix>." */
    struct route_table *routes;
    uint32_t max_request_headers_bytes;   /* max_request_headers_kb * 1024, default 60 KiB */
    uint32_t max_headers_count;           /* common_http_protocol_options.max_headers_count, default 100 */
    uint64_t idle_timeout_ms;             /* common_http_protocol_options.idle_timeout, default 1h */
    uint64_t max_connection_duration_ms;  /* common_http_protocol_options, 0 = none: then drain */
    uint32_t max_requests_per_connection; /* common_http_protocol_options, 0 = unlimited */
    uint64_t stream_idle_timeout_ms;      /* default 5 min */
    uint64_t request_timeout_ms;          /* default 0 = off */
    uint64_t request_headers_timeout_ms;  /* default 0 = off */
    uint64_t drain_timeout_ms;            /* default 5 s */
    bool use_remote_address;
    uint32_t xff_num_trusted_hops;
    bool skip_xff_append;
    bool generate_request_id;             /* default true */
    bool preserve_external_request_id;
    bool always_set_request_id_in_response;
    bool proxy_100_continue;
    int forward_client_cert;              /* forward_client_cert_details: enum xfcc_mode, default SANITIZE */
    unsigned xfcc_details;                /* set_current_client_cert_details: XFCC_* bits */
    char *server_name;                    /* default "envoy" (Envoy's default; we keep it for compat) */
    int server_header_transformation;     /* OVERWRITE(0), APPEND_IF_ABSENT(1), PASS_THROUGH(2) */
    bool websocket_upgrade;               /* upgrade_configs contains "websocket" */
    int codec_type;                       /* AUTO(0), HTTP1(1), HTTP2(2) */
    struct h2_options h2;                 /* http2_protocol_options */
    struct stat_block *h2_stats;          /* "http2." */
    struct access_log **access_logs;
    size_t n_access_logs;
};

struct tcp_proxy_config {
    char *stat_prefix;
    struct stat_block *stats;      /* "tcp.<stat_prefix>." */
    int cluster;                   /* index, or -1 when weighted */
    int *weighted_clusters;
    uint32_t *weights;
    size_t n_weighted;
    uint32_t total_weight;
    uint64_t idle_timeout_ms;      /* default 1h */
    uint32_t max_connect_attempts; /* default 1 */
    struct access_log **access_logs;
    size_t n_access_logs;
};

struct filter_chain_match {
    uint32_t destination_port;     /* 0 = any */
    struct cidr *prefix_ranges; size_t n_prefix_ranges;
    struct cidr *source_prefix_ranges; size_t n_source_prefix_ranges;
    uint32_t *source_ports; size_t n_source_ports;
    int source_type;               /* ANY(0), SAME_IP_OR_LOOPBACK(1), EXTERNAL(2) */
    char *transport_protocol;      /* NULL = any; "raw_buffer" or "tls" */
    char **server_names; size_t n_server_names;           /* lower-cased; "*.suffix" wildcards */
    char **application_protocols; size_t n_application_protocols;
};

/* envoy.filters.network.local_ratelimit: one token per connection (netrl.c). */
struct netrl_config;
#define NETRL_MAX 4

struct filter_chain {
    char *name;
    struct netrl_config *netrl[NETRL_MAX];  /* network local rate limits before the terminal filter */
    size_t n_netrl;
    struct filter_chain_match match;
    enum net_filter_kind kind;
    struct hcm_config *hcm;
    struct tcp_proxy_config *tcp;
    struct tls_provider *tls;      /* transport_socket envoy.transport_sockets.tls, or NULL */
    uint64_t handshake_timeout_ms; /* transport_socket_connect_timeout, default 10 s */
};

/* Listener stats ("listener.<address>."). */
enum listener_stat { LS_DOWNSTREAM_CX_TOTAL, LS_DOWNSTREAM_CX_ACTIVE, LS_DOWNSTREAM_CX_DESTROY,
                     LS_NO_FILTER_CHAIN_MATCH, LS_DOWNSTREAM_CX_OVERFLOW, LS_DOWNSTREAM_PRE_CX_TIMEOUT,
                     LS_DOWNSTREAM_PRE_CX_ACTIVE, LS_COUNT };
extern const struct stat_schema listener_stat_schema;

/* HTTP connection manager stats ("http.<stat_prefix>."). */
enum http_stat {
    HS_DOWNSTREAM_CX_TOTAL, HS_DOWNSTREAM_CX_ACTIVE, HS_DOWNSTREAM_CX_HTTP1_TOTAL,
    HS_DOWNSTREAM_CX_HTTP1_ACTIVE, HS_DOWNSTREAM_CX_DESTROY, HS_DOWNSTREAM_CX_PROTOCOL_ERROR,
    HS_DOWNSTREAM_CX_RX_BYTES_TOTAL, HS_DOWNSTREAM_CX_TX_BYTES_TOTAL, HS_DOWNSTREAM_CX_UPGRADES_TOTAL,
    HS_DOWNSTREAM_CX_UPGRADES_ACTIVE, HS_DOWNSTREAM_CX_IDLE_TIMEOUT, HS_DOWNSTREAM_CX_DRAIN_CLOSE,
    HS_DOWNSTREAM_RQ_TOTAL, HS_DOWNSTREAM_RQ_HTTP1_TOTAL, HS_DOWNSTREAM_RQ_ACTIVE,
    HS_DOWNSTREAM_RQ_1XX, HS_DOWNSTREAM_RQ_2XX, HS_DOWNSTREAM_RQ_3XX, HS_DOWNSTREAM_RQ_4XX,
    HS_DOWNSTREAM_RQ_5XX, HS_DOWNSTREAM_RQ_COMPLETED, HS_DOWNSTREAM_RQ_TIMEOUT,
    HS_DOWNSTREAM_RQ_HEADER_TIMEOUT, HS_DOWNSTREAM_RQ_IDLE_TIMEOUT, HS_DOWNSTREAM_RQ_RX_RESET,
    HS_DOWNSTREAM_RQ_TX_RESET, HS_DOWNSTREAM_RQ_TOO_LARGE, HS_RQ_DIRECT_RESPONSE, HS_RQ_REDIRECT,
    HS_NO_ROUTE, HS_NO_CLUSTER, HS_RQ_TOTAL,
    HS_DOWNSTREAM_CX_HTTP2_TOTAL, HS_DOWNSTREAM_CX_HTTP2_ACTIVE, HS_DOWNSTREAM_RQ_HTTP2_TOTAL,
    HS_DOWNSTREAM_CX_MAX_DURATION_REACHED, HS_DOWNSTREAM_CX_MAX_REQUESTS_REACHED,
    HS_COUNT
};
extern const struct stat_schema http_stat_schema;

enum tcp_stat { TS_DOWNSTREAM_CX_TOTAL, TS_DOWNSTREAM_CX_RX_BYTES_TOTAL, TS_DOWNSTREAM_CX_TX_BYTES_TOTAL,
                TS_UPSTREAM_FLUSH_TOTAL, TS_IDLE_TIMEOUT, TS_DOWNSTREAM_CX_NO_ROUTE, TS_COUNT };
extern const struct stat_schema tcp_stat_schema;

struct listener_config {
    char *name;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char addr_str[ADDR_STR_MAX];
    bool use_original_dst;         /* Listener.use_original_dst: hand the connection to the listener of its original destination */
    bool restore_original_dst;     /* that, or the original_dst listener filter: match chains on the original destination */
    bool bind_to_port;             /* default true */
    struct filter_chain **chains;
    size_t n_chains;
    struct filter_chain *default_chain;
    uint32_t per_connection_buffer_limit;
    struct stat_block *stats;
    /* Listener filters and TLS: connections go through a pending phase (listener/pending.c)
     * when an inspector is configured or any chain terminates TLS. */
    bool tls_inspector, http_inspector;
    bool any_tls;                  /* some chain has a TLS transport socket */
    uint64_t listener_filters_timeout_ms;  /* default 15 s, 0 = none */
    bool continue_on_listener_filters_timeout;
    struct stat_block *ssl_stats;  /* "listener.<address>.ssl." */
    struct stat_block *tls_inspector_stats, *http_inspector_stats;
    struct access_log **access_logs;       /* Listener.access_log: connections that never reach a filter */
    size_t n_access_logs;
    uint64_t config_hash;          /* xDS: hash of the Listener as received (rds not resolved); a
                                    * worker drains the connections of a listener whose hash changed */
};

/* Listener filter stats, Envoy's global "tls_inspector." and "http_inspector." blocks. */
enum tls_inspector_stat { TI_TLS_FOUND, TI_TLS_NOT_FOUND, TI_SNI_FOUND, TI_SNI_NOT_FOUND, TI_ALPN_FOUND,
                          TI_ALPN_NOT_FOUND, TI_CLIENT_HELLO_TOO_LARGE, TI_COUNT };
enum http_inspector_stat { HI_HTTP10_FOUND, HI_HTTP11_FOUND, HI_HTTP2_FOUND, HI_HTTP_NOT_FOUND, HI_COUNT };
extern const struct stat_schema tls_inspector_stat_schema, http_inspector_stat_schema;

struct admin_config {
    bool enabled;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *access_log_path;
};

struct snapshot {
    atomic_int refs;
    uint64_t version;
    struct listener_config **listeners;
    size_t n_listeners;
    struct cluster **clusters;
    size_t n_clusters;
    struct admin_config admin;
    char *node_id, *node_cluster;
    char *config_json;             /* /config_dump body, rendered at build time */
};

/* Builds a snapshot from an envoy.config.bootstrap.v3.Bootstrap message. On error returns NULL
 * and writes one line "field.path: problem" into err. The message is not kept. */
struct ProtobufCMessage;
struct snapshot *snapshot_build(const struct ProtobufCMessage *bootstrap, char *err, size_t errlen);
/* The same with the Secrets received over ADS (envoy...tls.v3.Secret messages, borrowed) for
 * references with sds_config; sds_on: one that is missing is awaited (its TLS context has no
 * certificate yet) instead of being an error. */
struct snapshot *snapshot_build_sds(const struct ProtobufCMessage *bootstrap, const struct ProtobufCMessage *const *secrets,
                                    size_t n_secrets, bool sds_on, char *err, size_t errlen);
/* Replaces inline private keys, key passwords and session ticket keys in a /config_dump JSON
 * tree with "[redacted]", as Envoy does. */
struct json_t;
void config_dump_redact(struct json_t *j);
struct snapshot *snapshot_ref(struct snapshot *s);
void snapshot_unref(struct snapshot *s);
int snapshot_cluster_index(const struct snapshot *s, const char *name);

struct host_set *cluster_hosts_acquire(struct cluster *c);
void host_set_release(struct host_set *hs);
/* Builds a host set (takes ownership of hosts) with its load-balancing table; NULL + err on failure. */
struct host_set *host_set_new(struct host *hosts, size_t n, const struct lb_config *lbc, char *err, size_t errlen);
/* Main thread: makes hs the cluster's host set. The old one is released after a grace period,
 * long enough for any worker that has just loaded the old pointer to take its own reference. */
void cluster_set_hosts(struct cluster *c, struct host_set *hs, uint64_t now_ms);
/* Main thread: releases retired host sets whose grace period is over (all with force). */
void host_sets_reap(uint64_t now_ms, bool force);

#endif
