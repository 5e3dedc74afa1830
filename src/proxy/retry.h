/* Envoy's route retry policy (envoy.config.route.v3.RetryPolicy) for the codec-neutral router.
 *
 * Two halves. The policy (struct retry_policy) is compiled once per route by route_build.c
 * (retry_on names parsed here) and only read afterwards. The per-stream state (struct
 * retry_state, embedded in struct hstream) is set up by retry_init() from the policy and
 * the request's x-envoy-retry-on / x-envoy-retry-grpc-on / x-envoy-max-retries /
 * x-envoy-retriable-status-codes headers, then asked at each upstream failure whether to try
 * again (retry_check_*), how long to back off (retry_backoff_ms), and keeps a copy of the
 * request body sent so far so that a new attempt can send it again (retry_body_*).
 *
 * The router (router.c) owns the attempts themselves: it calls the checks where an upstream
 * attempt fails or answers, and starts the next attempt from the back-off timer. Nothing here
 * allocates: the body copy is one buffer from the worker's free list. */
#ifndef WEFT_PROXY_RETRY_H
#define WEFT_PROXY_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/loop.h"
#include "net/http1.h"

struct route_entry;
struct route_header_match;
struct route_scratch;
struct wcluster;

/* retry_on conditions (x-envoy-retry-on and x-envoy-retry-grpc-on names). */
enum {
    RETRY_ON_5XX = 1u << 0,
    RETRY_ON_GATEWAY_ERROR = 1u << 1,
    RETRY_ON_RESET = 1u << 2,
    RETRY_ON_CONNECT_FAILURE = 1u << 3,
    RETRY_ON_RETRIABLE_4XX = 1u << 4,
    RETRY_ON_REFUSED_STREAM = 1u << 5,
    RETRY_ON_RETRIABLE_STATUS_CODES = 1u << 6,
    RETRY_ON_RETRIABLE_HEADERS = 1u << 7,
    RETRY_ON_ENVOY_RATELIMITED = 1u << 8,
    RETRY_ON_RESET_BEFORE_REQUEST = 1u << 9,
    RETRY_ON_HTTP3_POST_CONNECT_FAILURE = 1u << 10, /* accepted; never fires (no HTTP/3) */
    RETRY_ON_GRPC_CANCELLED = 1u << 16,
    RETRY_ON_GRPC_DEADLINE_EXCEEDED = 1u << 17,
    RETRY_ON_GRPC_INTERNAL = 1u << 18,
    RETRY_ON_GRPC_RESOURCE_EXHAUSTED = 1u << 19,
    RETRY_ON_GRPC_UNAVAILABLE = 1u << 20,
};
#define RETRY_ON_HTTP_MASK 0x0000ffffu
#define RETRY_ON_GRPC_MASK 0xffff0000u

#define RETRY_BASE_INTERVAL_MS 25u        /* retry_back_off.base_interval default (Envoy) */
#define RETRY_PREV_HOSTS_MAX 8u           /* hosts remembered for the previous_hosts predicate */
#define RETRY_HEADER_CODES_MAX 8u         /* x-envoy-retriable-status-codes values kept */
/* Most request body bytes kept for a retry: one worker buffer less an HTTP/2 stream window,
 * so that the replayed bytes plus what a client may still send always fit one buffer. A
 * longer body is forwarded without retries (Envoy: the buffer limit disables retries). */
#define RETRY_BODY_MAX (BUF_SIZE - 65536u)

/* The compiled RetryPolicy of a route (or of its virtual host). */
struct retry_policy {
    uint32_t on;                       /* RETRY_ON_* */
    uint32_t num_retries;              /* default 1 */
    uint64_t per_try_timeout_ms;       /* 0 = none */
    uint64_t base_ms, max_ms;          /* back-off: base (25 ms), cap (10 x base) */
    bool previous_hosts;               /* envoy.retry_host_predicates.previous_hosts */
    uint32_t host_selection_attempts;  /* host_selection_retry_max_attempts (default 1) */
    const uint32_t *status_codes;      /* retriable_status_codes */
    size_t nstatus;
    const struct route_header_match *headers;          /* retriable_headers */
    size_t nheaders;
    const struct route_header_match *request_headers;  /* retriable_request_headers */
    size_t nrequest_headers;
};

/* Parses a comma-separated retry_on list into *bits. http / grpc: which name sets are
 * accepted (RetryPolicy.retry_on takes both; each header one). Unknown names: with strict,
 * returns -1 and points *bad / *badlen at the first one; otherwise they are skipped (Envoy
 * ignores unknown header values). Returns 0. */
int retry_on_parse(const char *s, size_t n, bool http, bool grpc, bool strict, uint32_t *bits, const char **bad,
                   size_t *badlen);

/* What a failed or answered attempt leads to. */
enum retry_decision {
    RETRY_NO,          /* not a retriable outcome (or retries are off): answer as usual */
    RETRY_YES,         /* try again after retry_backoff_ms */
    RETRY_LIMIT,       /* retriable, but no retries are left: URX */
    RETRY_OVERFLOW,    /* retriable, but the cluster's retry budget says no: UO */
};

/* How an attempt failed before any response head. */
enum retry_reset {
    RETRY_RESET_CONNECT_FAILURE,   /* UF: connecting (or connect_timeout) failed */
    RETRY_RESET_REMOTE,            /* UC / UR / UPE: closed, reset or garbled before the head */
    RETRY_RESET_REFUSED,           /* HTTP/2 RST_STREAM REFUSED_STREAM */
    RETRY_RESET_TIMEOUT,           /* the per-try timeout fired before the head */
};

struct retry_state {
    const struct retry_policy *pol;    /* NULL when only headers asked for retries */
    uint32_t on;                       /* effective conditions */
    uint32_t retries_left;
    uint32_t attempt;                  /* 1 for the first try */
    uint32_t backoff_step;             /* Envoy's current_retry (starts at 1) */
    uint64_t base_ms, max_ms;
    uint32_t hdr_codes[RETRY_HEADER_CODES_MAX];
    uint8_t n_hdr_codes;
    bool active;                       /* retries are possible for this request */
    bool buffering;                    /* the body sent so far is all in `body` */
    bool waiting;                      /* the back-off timer runs: no attempt is in flight */
    bool refused;                      /* the last reset was REFUSED_STREAM */
    bool retried;                      /* at least one retry was made */
    struct buf *body;                  /* request body bytes sent (from the worker's pool) */
    uint64_t pos;                      /* body bytes sent in this attempt */
    uint64_t acked;                    /* body bytes ever reported to the downstream codec */
    uint64_t limit;                    /* most body bytes kept (RETRY_BODY_MAX or the route's) */
    uint32_t prev_hosts[RETRY_PREV_HOSTS_MAX];
    uint8_t nprev;
    struct timer backoff, per_try;
    struct cluster *cb_cluster;        /* a max_retries slot is held on it (cb_retry_begin) */
    int priority;                      /* the route's (circuit breaker thresholds) */
};

/* Sets rs up for a new stream on route (NULL: no route): the route's policy, merged with the
 * request's retry headers as Envoy merges them. rs's timers are initialised with cb_backoff /
 * cb_per_try and data (they must be set before anything can stop them). */
void retry_init(struct retry_state *rs, const struct route_entry *route, const struct h1_request *rq,
                struct route_scratch *scratch, timer_cb cb_backoff, timer_cb cb_per_try, void *data);

/* The per-try timeout of this request (0 = none). */
uint64_t retry_per_try_timeout_ms(const struct retry_state *rs);

/* Hook for circuit breakers (cluster max_retries / retry_budget): may one more retry start on
 * wc? Today always true. */
bool retry_budget_allows(struct retry_state *rs, struct wcluster *wc, unsigned slot);

/* An attempt failed before its response head. */
enum retry_decision retry_check_reset(struct retry_state *rs, struct wcluster *wc, enum retry_reset why,
                                      bool request_sent);
/* An attempt answered with status and headers h[0..n) (grpc: the request is gRPC, grpc-status
 * in the headers counts). */
enum retry_decision retry_check_response(struct retry_state *rs, struct wcluster *wc, int status,
                                         const struct h1_header *h, size_t n, bool grpc, struct route_scratch *scratch);

/* Envoy's jittered exponential back-off for the next retry: a random value in
 * [0, (2^step - 1) * base) capped at max; step grows while the range is below max. */
uint64_t retry_backoff_ms(struct retry_state *rs, uint64_t rnd);

/* Remembers host for previous_hosts. True when host is one of the hosts tried already. */
void retry_note_host(struct retry_state *rs, uint32_t host);
bool retry_host_tried(const struct retry_state *rs, uint32_t host);
/* How many extra picks a retry may make to avoid tried hosts (0 without the predicate). */
uint32_t retry_host_attempts(const struct retry_state *rs);

/* n body bytes at p are being sent upstream in this attempt. Keeps a copy while buffering
 * (a body past RETRY_BODY_MAX or the route's limit stops buffering: no more retries).
 * Returns how many of the n bytes are new to the downstream codec (not a replay): the caller
 * reports those as consumed. */
size_t retry_body_sent(struct retry_state *rs, struct buf_pool *pool, const char *p, size_t n);
/* For a new attempt: *rqbody becomes the whole body again (the bytes sent, then those not
 * sent yet). Returns 0, or -1 when that cannot be done (nothing changes). */
int retry_body_rewind(struct retry_state *rs, struct buf_pool *pool, struct buf **rqbody);
/* A response head was accepted as the answer: no more retries, the body copy goes back. */
void retry_accepted(struct retry_state *rs, struct buf_pool *pool);
/* The stream ends: bytes of a replay still in rqbody were reported already and are dropped
 * from it (so the codec does not count them twice); buffers and timers are given back. */
void retry_finish(struct retry_state *rs, struct loop *l, struct buf_pool *pool, struct buf *rqbody);

#endif
