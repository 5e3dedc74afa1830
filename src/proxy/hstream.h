/* A codec-neutral HTTP stream: one request and its response, as the router sees them.
 *
 * A downstream codec (today codec_h2.c; HTTP/1.1 keeps its own zero-copy stream in
 * http_conn.c, see docs/design.md) fills the request side: the head as name/value slices in
 * a struct h1_request view (method, path, authority, regular headers — pseudo-headers are
 * already taken out), body bytes appended to `rqbody`, trailers, and `rq_end` when the request
 * is complete. The router (router.c) routes it, talks to an upstream over HTTP/1.1 or HTTP/2
 * and fills the response side: status and headers as slices (`rs`), body bytes readable with
 * router_response_body(), trailers, `rs_end`. The codec turns that into its wire format.
 *
 * Ownership: the codec owns the hstream object (from its per-connection pool) and the buffers
 * of the request side; the router owns everything under "router state" and gives it all back
 * in router_finish(). Buffers come from the worker's free list, so a stream in steady state
 * allocates nothing. */
#ifndef WEFT_PROXY_HSTREAM_H
#define WEFT_PROXY_HSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "common/bufq.h"
#include "common/loop.h"
#include "net/http1.h"
#include "proxy/forward.h"
#include "proxy/hfilter.h"
#include "proxy/retry.h"
#include "proxy/stream_info.h"
#include "proxy/upstream_h2.h"

struct worker;
struct hcm_config;
struct route_entry;
struct wcluster;
struct uconn;
struct uh2_stream;
struct hstream;
struct transport;

/* What the router needs from the downstream codec. */
struct hstream_ops {
    /* Something changed for s (upstream bytes, a timeout, a local reply): run the codec. */
    void (*wake)(struct hstream *s);
    /* n request body bytes were taken from s->rqbody and sent upstream: the codec may let
     * the client send that many more (HTTP/2: WINDOW_UPDATE). */
    void (*request_consumed)(struct hstream *s, size_t n);
};

/* Most trailers one message may carry (more are dropped and counted as header overflow). */
#define HSTREAM_MAX_TRAILERS 32

struct hstream {
    const struct hstream_ops *ops;
    void *codec;                    /* the codec's connection object */
    struct worker *w;
    struct hcm_config *hcm;
    const struct sockaddr_storage *peer, *local;
    const struct transport *tp;     /* the downstream connection's transport, or NULL */
    int32_t id;                     /* codec stream id (HTTP/2 stream identifier) */
    bool in_use;
    const char *protocol;           /* "HTTP/2" for the access log */

    /* --- request (filled by the codec) --- */
    struct h1_request rq;           /* view: method, path, host = :authority, regular headers */
    struct h1_str scheme;
    struct buf *hbuf;               /* owns header bytes and the header slice arrays */
    size_t hbuf_strings;            /* where header strings start in hbuf (after the arrays) */
    struct h1_header *rq_trailers;  /* in hbuf */
    size_t n_rq_trailers;
    size_t header_bytes;            /* decoded size of the header list (max_request_headers_kb) */
    struct buf *rqbody;             /* request body bytes not yet sent upstream */
    struct bufq rqq;                /* more of them, behind rqbody (an HTTP/2 window's worth) */
    bool rq_headers_done;
    bool rq_end;                    /* the request (body and trailers) is complete */
    bool grpc;                      /* content-type application/grpc* */
    bool head_request;

    /* --- response (filled by the router, read by the codec) --- */
    bool rs_head;                   /* rs is ready */
    bool rs_head_taken;             /* the codec has sent it on */
    struct h1_response rs;          /* status + headers to send downstream (slices in rsbuf) */
    struct buf *rsbuf;              /* response head (and trailers) as built for the codec */
    struct h1_header *rs_trailers;  /* slices into rsbuf (or the upstream's buffer) */
    size_t n_rs_trailers;
    bool rs_end;                    /* no more body after what router_response_body gives */
    bool rs_trailers_ready;
    bool reset;                     /* the stream must be reset downstream (RST_STREAM) */
    uint32_t reset_code;            /* HTTP/2 error code for that reset */

    /* --- router state --- */
    const struct route_entry *route;
    int cluster, cluster_weight;
    struct wcluster *wc;
    uint32_t host;
    bool host_counted;
    struct uconn *u;                /* HTTP/1.1 upstream */
    struct uh2_stream *uh2;         /* HTTP/2 upstream (= &uh2s while attached) */
    struct uh2_stream uh2s;
    struct buf *uhead;              /* upstream request head (HTTP/1.1 text) still to send */
    bool uhead_chunked;             /* the request body goes upstream chunked */
    bool rq_sent;                   /* the whole request went upstream */
    struct h1_response urs;         /* the upstream's response head (HTTP/1.1 upstream) */
    struct h1_header *urs_headers;  /* slices (in rsbuf's tail area) */
    int urs_kind;                   /* enum h1_body_kind */
    uint64_t urs_remaining;
    struct h1_chunked urs_chunk;
    size_t urs_trailer_at;          /* where kept chunked trailer bytes start in rsbuf (0 = none) */
    size_t urs_ready;               /* framed payload bytes at the front of the body buffer */
    struct buf *rsbody;             /* response payload (HTTP/2 upstream, local replies) */
    struct bufq rsq;                /* more of it, behind rsbody (an HTTP/2 window's worth) */
    bool local_reply;
    bool timed_out;
    bool finished;
    struct timer timer;             /* route timeout (spans every attempt) */
    struct timer hf_timer;          /* a fault delay (hfilter.h) */
    struct hf_state hf;             /* fault / local rate limit filters */
    uint64_t timeout_ms;
    struct retry_state rt;          /* retry policy state, body copy, back-off / per-try timers */
    char request_id[40];
    char xff[256];
    char orig_dst[64];
    struct stream_info si;
};

/* Starts routing s once its request head is complete (s->rq filled, rq_headers_done). May
 * answer at once with a local reply (s->rs_head set, s->local_reply). */
void router_start(struct hstream *s);
/* The same for a request its codec has routed already (fd: fwd_route said "upstream"), so
 * that one request is routed once: one random draw picks both the codec path and the cluster
 * (the HTTP/1.1 connection bridging to an HTTP/2 cluster). */
void router_start_routed(struct hstream *s, const struct fwd_decision *fd);
/* Moves bytes between s and its upstream as far as they go without blocking. Returns true
 * when anything changed. */
bool router_pump(struct hstream *s);
/* Response payload ready for the codec: sets *p, *n (n may be 0). */
void router_response_body(struct hstream *s, const char **p, size_t *n);
/* The codec sent n bytes of what router_response_body gave. */
void router_response_consumed(struct hstream *s, size_t n);
/* The stream is over (complete, or reset by either side): access log, stats, upstream back
 * to its pool (reusable only when the exchange completed cleanly), buffers returned. Safe to
 * call once per started stream; the codec then puts s back in its pool. */
void router_finish(struct hstream *s, bool downstream_reset);
/* For upstream codecs: the upstream's response head is in s->urs; builds ours. Returns 0, or
 * -1 after answering with a local reply. */
int router_upstream_head(struct hstream *s);
/* Called by the HTTP/2 upstream when an auto_config connection's server did not select h2:
 * rebuilds s's request head for HTTP/1.1 and sends it on u (when not NULL: a connected uconn
 * nobody else uses) or on a connection of its own. Returns 1 when it took u, else 0 (it may
 * have answered locally). */
struct uconn;
int router_upstream_h1_fallback(struct hstream *s, struct uconn *u);
/* For upstream codecs: the first n bytes of s->rqbody go upstream now (the caller copied
 * them). Keeps the copy a retry needs, counts them, tells the downstream codec about bytes it
 * had not been told of (a retry sends the same bytes again: the window reopens once), then
 * takes them off rqbody (the next queued buffer moves up when it empties). */
void router_body_sent(struct hstream *s, size_t n);
/* For upstream codecs: the storage for the upstream's head slices and strings (rsbuf). */
struct buf *router_rsbuf(struct hstream *s);
size_t router_head_slots(const struct hstream *s);
/* Answers s with a local reply (status, optional text body). Used by the codec too. */
void router_local_reply(struct hstream *s, int status, uint32_t flag, const char *details, const char *body);
/* The same with one of the shared failure replies (forward.h). */
void router_reply(struct hstream *s, enum fwd_reply_kind k);

#endif
