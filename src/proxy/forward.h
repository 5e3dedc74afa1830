/* The forwarding decisions every downstream codec shares: the HTTP/1.1 fast path in
 * http_conn.c and the codec-neutral router (router.c) call these, so that each routing
 * concept (forwarding headers, route/local-reply decision, host choice, timeout, the
 * upstream request head, the downstream response head, local reply heads, stream-end stats
 * and access logs) is written once. Nothing here allocates: results go into caller storage. */
#ifndef WEFT_PROXY_FORWARD_H
#define WEFT_PROXY_FORWARD_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "net/http1.h"
#include "proxy/route.h"
#include "proxy/stream_info.h"

struct hcm_config;
struct worker;
struct wcluster;
struct host;
struct transport;

#define FWD_LOCATION_MAX 4096

/* Starts a stream's record: start times (monotonic and wall clock), protocol, the request
 * view and the downstream connection's addresses and transport; grpc_status -1. */
void fwd_stream_info_start(struct stream_info *si, const char *protocol, const struct h1_request *rq,
                           const struct sockaddr_storage *peer, const struct sockaddr_storage *local,
                           const struct transport *tp);

/* Computes x-forwarded-for and x-request-id as Envoy does (use_remote_address appends the
 * peer; an external request id is kept unless an edge proxy must not trust it; otherwise one
 * is generated when generate_request_id) into xff[xff_cap] / rid[rid_cap], and points
 * si->forwarded_for / si->request_id at them (left NULL when there is none). Returns true
 * when the request is gRPC (content-type application/grpc*), seen in the same pass. */
bool fwd_headers(const struct hcm_config *hcm, struct worker *w, const struct h1_request *rq,
                 const struct sockaddr_storage *peer, char *xff, size_t xff_cap, char *rid, size_t rid_cap,
                 struct stream_info *si);

/* The outcome of routing one request. status != 0: answer locally with status, flag (a
 * response-flag bit or 0), details, body[0..body_len) (owned by the route table, may be NULL)
 * and location (NUL-terminated, or NULL). Otherwise forward to cluster (weight index
 * cluster_weight) with timeout_ms (0 = none). route is the selected entry (NULL: no route).
 * grpc_reply: answer as gRPC (trailers-only); false for the route's own answers
 * (direct_response, redirect), which go out as configured. */
struct fwd_decision {
    const struct route_entry *route;
    bool grpc_reply;
    int status;
    uint32_t flag;
    const char *details;
    const char *body;
    size_t body_len;
    const char *location;
    int cluster, cluster_weight;
    uint64_t timeout_ms;
    char loc[FWD_LOCATION_MAX];
};

/* The routing view of a request: rq's method, path, authority and headers; scheme as given
 * (HTTP/2 :scheme), else "https" on TLS and "http" otherwise; the peer as source. */
struct route_request fwd_route_request(const struct h1_request *rq, struct h1_str scheme, bool tls,
                                       const struct sockaddr_storage *peer);

/* Selects the route for rr and decides between a local reply (no route, direct_response,
 * redirect, no cluster) and an upstream cluster; counts the HCM stats of those outcomes and
 * sets si->route_name. grpc: the request is gRPC (grpc-timeout may set the timeout, capped by
 * max_stream_duration.grpc_timeout_header_max / max_grpc_timeout). rnd: one random draw
 * for route and cluster choice. Returns true when the request goes upstream. */
bool fwd_route(struct fwd_decision *fd, const struct hcm_config *hcm, struct worker *w, const struct route_request *rr,
               bool grpc, uint64_t rnd, struct stream_info *si);

/* Takes the worker's state for cluster index `cluster` of snapshot snap (the stream's own: an
 * index means nothing in another snapshot; one hold, given back by fwd_finish) and counts the
 * request on it. Sets si->upstream_cluster. */
struct snapshot;
struct wcluster *fwd_cluster(struct worker *w, struct snapshot *snap, int cluster, struct stream_info *si);

/* Chooses the upstream host in wc. ORIGINAL_DST clusters: the connection's original
 * destination (*od is filled from local, its text into orig_dst[orig_cap], *host_idx =
 * UPSTREAM_NO_POOL). Others: the load balancer's pick (hash policy of route over rr), with
 * one active request counted on it and on the circuit breaker (*host_counted;
 * fwd_release_host(route) gives both back). Sets
 * si->upstream_host. Returns the host, or NULL when none is healthy (counted; the caller
 * replies 503 no_healthy_upstream). */
const struct host *fwd_pick_host(struct worker *w, struct wcluster *wc, const struct route_entry *route,
                                 const struct route_request *rr, const struct sockaddr_storage *local,
                                 struct host *od, char *orig_dst, size_t orig_cap, uint32_t *host_idx,
                                 bool *host_counted, struct stream_info *si);
/* The same for a retry: while avoid(ctx, pick) says the pick was tried already, up to
 * extra_picks more picks are made; then the last pick stands (Envoy's
 * host_selection_retry_max_attempts). */
const struct host *fwd_pick_host_avoiding(struct worker *w, struct wcluster *wc, const struct route_entry *route,
                                          const struct route_request *rr, const struct sockaddr_storage *local,
                                          struct host *od, char *orig_dst, size_t orig_cap, uint32_t *host_idx,
                                          bool *host_counted, struct stream_info *si,
                                          bool (*avoid)(const void *ctx, uint32_t host), const void *ctx,
                                          uint32_t extra_picks);
void fwd_release_host(struct wcluster *wc, const struct route_entry *route, uint32_t host_idx, bool *host_counted);
/* *host_idx after fwd_pick_host returned NULL because the circuit breaker's max_requests is
 * reached (counted): reply FWD_R_OVERFLOW (503 UO) instead of no_healthy_upstream. */
#define FWD_HOST_OVERFLOW (UINT32_MAX - 1)

/* The inputs of the HTTP/1.1 upstream request head that differ between callers. */
struct fwd_request_head {
    const struct h1_request *rq;       /* as received (HTTP/2: the translated view) */
    const struct route_request *rr;
    const struct route_entry *route;
    int cluster_weight;
    const struct host *host;           /* the chosen upstream host (auto_host_rewrite) */
    const struct stream_info *si;      /* forwarded_for, request_id */
    uint64_t timeout_ms;               /* x-envoy-expected-rq-timeout-ms (0 = none) */
    bool tls;                          /* downstream is TLS: x-forwarded-proto https */
    bool h2_upstream;                  /* keep "te: trailers" */
    bool join_cookies;                 /* one cookie line joined with "; " (from HTTP/2) */
};

/* Appends the upstream request line and headers (without the blank line ending the head)
 * to b: rewritten path and host, hop-by-hop and Connection-nominated headers removed, the
 * route's mutations, x-forwarded-for/-proto, x-request-id, the expected timeout.
 * Returns 0, or -1 when it does not fit. */
int fwd_write_request_head(struct buf *b, const struct hcm_config *hcm, struct worker *w,
                           const struct fwd_request_head *in);

/* Appends our response head's status line and headers (without the blank line) from the
 * upstream's rs: hop-by-hop and Connection-nominated headers removed (keep_upgrade keeps
 * "upgrade" for a tunnel; drop_te drops transfer-encoding), server/date per the HCM, the
 * route's response mutations, x-envoy-upstream-service-time, x-request-id when configured.
 * Returns 0, or -1 when it does not fit. */
int fwd_write_response_head(struct buf *b, const struct hcm_config *hcm, const struct route_entry *route,
                            int cluster_weight, const struct h1_response *rs, const struct stream_info *si,
                            bool keep_upgrade, bool drop_te);

/* Appends a local reply's status line and headers (without the blank line) to b. grpc: a
 * gRPC request gets a trailers-only answer (200, grpc-status from status, grpc-message from
 * body or the reason) as Envoy sends; *wire_status is what goes on the wire and *grpc_status
 * the gRPC status (-1 when not gRPC). Otherwise content-length body_len, content-type
 * text/plain when there is a body, location when given. Returns 0, or -1 when full. */
int fwd_write_local_head(struct buf *b, const struct hcm_config *hcm, int status, const char *body, size_t body_len,
                         const char *location, bool grpc, int *wire_status, int *grpc_status);

/* The same with an explicit gRPC status (grpc_override >= 0, e.g. a fault's grpc_status) instead
 * of the one mapped from status. */
int fwd_write_local_head_grpc(struct buf *b, const struct hcm_config *hcm, int status, const char *body, size_t body_len,
                              const char *location, bool grpc, int grpc_override, int *wire_status, int *grpc_status);

/* Records a local reply in si: the status on the wire, the gRPC status (-1: not gRPC, left
 * as it is), the response flag bit and %RESPONSE_CODE_DETAILS%. */
void fwd_note_local_reply(struct stream_info *si, int wire_status, int grpc_status, uint32_t flag,
                          const char *details);

/* The local replies both paths send for the same failure, as Envoy words them. */
enum fwd_reply_kind {
    FWD_R_NO_HEALTHY,                /* 503 no_healthy_upstream */
    FWD_R_CONNECT_FAILURE,           /* 503 connect failed */
    FWD_R_CONNECT_TIMEOUT,           /* 503 connect timed out */
    FWD_R_TERMINATION,               /* 503 upstream closed before the response started */
    FWD_R_ROUTE_TIMEOUT,             /* 504 the route timeout fired */
    FWD_R_UPSTREAM_HEADERS_TOO_LARGE,/* 502 the upstream's head does not fit */
    FWD_R_UPSTREAM_PROTOCOL_ERROR,   /* 502 the upstream spoke bad HTTP */
    FWD_R_RESPONSE_HEADERS_TOO_LARGE,/* 502 our rebuilt response head does not fit */
    FWD_R_REQUEST_HEADERS_TOO_LARGE, /* 431 the upstream request head does not fit */
    FWD_R_UPGRADE_FAILED,            /* 403 an upgrade / CONNECT that is not allowed */
    FWD_R_BAD_CHUNKED_BODY,          /* 400 the client's chunked body is malformed */
    FWD_R_OVERFLOW,                  /* 503 UO a circuit breaker is open */
};
struct fwd_reply {
    int status;
    uint32_t flag;                   /* response-flag bit, or 0 */
    const char *details;             /* %RESPONSE_CODE_DETAILS% */
    const char *body;                /* NULL: none */
};
extern const struct fwd_reply fwd_replies[];

/* What a failed upstream_acquire / upstream_connect_addr / uh2_stream_start result r means:
 * -EBUSY a circuit breaker (UO), -ENOSPC max_connection_pools (Envoy: no healthy upstream),
 * anything else a connect failure. */
static inline enum fwd_reply_kind fwd_connect_error(int r)
{
    return r == -EBUSY ? FWD_R_OVERFLOW : r == -ENOSPC ? FWD_R_NO_HEALTHY : FWD_R_CONNECT_FAILURE;
}

/* What an HTTP/1.1 upstream response head parse outcome r (h1_parse_response) means:
 * a failure to answer (a fwd_reply_kind), or -1 when it is fine or needs more bytes. full: the
 * read buffer is full from its start; peer_closed: the upstream has closed. */
int fwd_h1_head_failure(int r, bool full, bool peer_closed);

/* Tells outlier detection how one upstream attempt to si->upstream_host went: its response
 * status, or (0) what failed, from response flags `flags`. Every attempt counts, a retried one
 * too (Envoy reports each upstream request to the host's outlier detector). */
void fwd_report_attempt(const struct wcluster *wc, const struct stream_info *si, int upstream_status, uint32_t flags);

/* Ends a stream's accounting: downstream response class, active/completed counts, the
 * cluster's request stats (upstream_status: the upstream's response status, 0 when there was
 * none), every access log. Gives back nothing else. */
void fwd_finish(const struct hcm_config *hcm, struct worker *w, struct wcluster *wc, const struct stream_info *si,
                int upstream_status);

#endif
