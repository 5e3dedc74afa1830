/* What happened to one request or TCP session: the facts access logs and stats are made of.
 * Filled in by the connection code as the exchange goes on; read by access_log_write(). */
#ifndef WEFT_PROXY_STREAM_INFO_H
#define WEFT_PROXY_STREAM_INFO_H

#include <stdint.h>
#include <sys/socket.h>

#include "net/http1.h"

struct transport;

/* Envoy's response flags, in the order Envoy prints them, joined by ','. */
enum response_flag {
    RF_FAILED_LOCAL_HEALTH_CHECK,  /* LH */
    RF_NO_HEALTHY_UPSTREAM,        /* UH */
    RF_UPSTREAM_REQUEST_TIMEOUT,   /* UT */
    RF_LOCAL_RESET,                /* LR */
    RF_UPSTREAM_REMOTE_RESET,      /* UR */
    RF_UPSTREAM_CONNECTION_FAILURE,/* UF */
    RF_UPSTREAM_CONNECTION_TERMINATION, /* UC */
    RF_UPSTREAM_OVERFLOW,          /* UO */
    RF_NO_ROUTE_FOUND,             /* NR */
    RF_DELAY_INJECTED,             /* DI */
    RF_FAULT_INJECTED,             /* FI */
    RF_RATE_LIMITED,               /* RL */
    RF_UNAUTHORIZED_EXTERNAL_SERVICE, /* UAEX */
    RF_RATELIMIT_SERVICE_ERROR,    /* RLSE */
    RF_DOWNSTREAM_CONNECTION_TERMINATION, /* DC */
    RF_UPSTREAM_RETRY_LIMIT_EXCEEDED, /* URX */
    RF_STREAM_IDLE_TIMEOUT,        /* SI */
    RF_INVALID_ENVOY_REQUEST_HEADERS, /* IH */
    RF_DOWNSTREAM_PROTOCOL_ERROR,  /* DPE */
    RF_UPSTREAM_MAX_STREAM_DURATION_REACHED, /* UMSDR */
    RF_RESPONSE_FROM_CACHE_FILTER, /* RFCF */
    RF_NO_FILTER_CONFIG_FOUND,     /* NFCF */
    RF_DURATION_TIMEOUT,           /* DT */
    RF_UPSTREAM_PROTOCOL_ERROR,    /* UPE */
    RF_NO_CLUSTER_FOUND,           /* NC */
    RF_OVERLOAD_MANAGER,           /* OM */
    RF_DNS_RESOLUTION_FAILURE,     /* DF */
    RF_COUNT
};

/* Writes the flags as Envoy does ("UF,URX", or "-" when none). Returns the length written. */
int response_flags_format(uint32_t flags, char *out, size_t cap);
/* Parses one short flag name ("UH"); returns its bit index or -1. */
int response_flag_parse(const char *name, size_t len);

struct stream_info {
    uint64_t start_wall_us;        /* CLOCK_REALTIME at the first byte of the request */
    uint64_t start_us;             /* monotonic */
    uint64_t end_us;
    uint64_t request_end_us;       /* last byte of the request received */
    uint64_t upstream_start_us;    /* request head written to the upstream */
    uint64_t upstream_headers_us;  /* response head received */
    uint64_t bytes_received, bytes_sent;   /* body bytes, as Envoy counts them */
    int status;                    /* 0 until known */
    uint32_t flags;                /* 1u << enum response_flag */
    const char *protocol;          /* "HTTP/1.1", "HTTP/1.0" or NULL for TCP */
    const struct h1_request *rq;   /* request head (HTTP only) */
    const struct h1_response *rs;  /* upstream response head, when one came */
    const char *request_id;        /* x-request-id sent upstream */
    const char *forwarded_for;     /* x-forwarded-for sent upstream, when the proxy changed it */
    const char *upstream_host;     /* "ip:port" or NULL */
    const char *upstream_cluster;  /* cluster name or NULL */
    const char *route_name;
    const struct sockaddr *downstream_remote;
    const struct sockaddr *downstream_local;
    const char *local_reply_details;
    /* TLS: the downstream connection's transport (SNI, peer SANs, version), NULL when unknown. */
    const struct transport *downstream_tp;
    const char *downstream_transport_failure_reason;
    const char *upstream_transport_failure_reason;
    int grpc_status;               /* grpc-status of the response, -1 when none (%GRPC_STATUS%) */
    uint32_t attempts;             /* upstream attempts so far (0 before the first; retry.h) */
    bool retry_headers;            /* x-envoy-retry-on / x-envoy-retry-grpc-on in the request */
};

#endif
