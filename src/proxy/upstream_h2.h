/* HTTP/2 upstream connections: per worker, per host, streams multiplexed over as few
 * connections as the server's SETTINGS_MAX_CONCURRENT_STREAMS (and the cluster's
 * max_concurrent_streams / max_requests_per_connection) allow; a new connection opens when
 * every one is full. The router (router.c) attaches one upstream stream per hstream. */
#ifndef WEFT_PROXY_UPSTREAM_H2_H
#define WEFT_PROXY_UPSTREAM_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hstream;
struct host;
struct wcluster;
struct uh2c;

/* One stream on an upstream HTTP/2 connection; embedded in its hstream. */
struct uh2_stream {
    struct uh2c *c;
    struct hstream *s;
    int32_t id;                    /* 0 until submitted */
    struct uh2_stream *next;       /* in c's list */
    bool deferred;                 /* the request body provider is waiting for bytes */
    bool closed;                   /* nghttp2 closed it */
    bool dirty;                    /* tell the downstream codec after this I/O round */
    bool in_trailers;              /* the response head is done: HEADERS now are trailers */
    bool head_ready;               /* the response head arrived: build ours outside the callback */
    int fail;                      /* set in a callback: answer with this local reply (0 = none) */
};

/* Starts s's request on an HTTP/2 connection to host s->host of s->wc (s->uhead holds the
 * request head as HTTP/1.1 text; it is parsed into HEADERS here). Returns 0 (s->uh2 set) or
 * -errno (treat as connect failure). */
int uh2_stream_start(struct hstream *s, const struct host *h);
/* Moves request body and response bytes for s. Returns true on progress. */
bool uh2_stream_pump(struct hstream *s);
/* The downstream took n response body bytes: the server may send that many more. */
void uh2_stream_consumed(struct hstream *s, size_t n);
/* The stream is done with (reset: send RST_STREAM CANCEL if still open). */
void uh2_stream_detach(struct uh2_stream *us, bool reset);
/* Closes every idle HTTP/2 connection of wc (drain, retire). */
void uh2_close_idle(struct wcluster *wc);

#endif
