/* A small gRPC server over HTTP/2 cleartext (prior knowledge, no TLS yet) on libnghttp2, driven
 * by one Weft event loop (src/common/loop.h). Built for weftd's control plane: ADS streams,
 * later Istio's CA service. Messages are opaque bytes; callers decode them (protobuf-c).
 *
 * Model
 *   - A server belongs to one loop and one thread; nothing here is thread-safe.
 *   - Methods are registered by full path ("/package.Service/Method"). Every call is a
 *     bidirectional stream at this level: a unary method is one that replies once and finishes,
 *     a server-streaming one sends many messages, and so on. Unknown paths get UNIMPLEMENTED.
 *   - Requests are checked before a handler sees them: POST, content-type application/grpc
 *     (with an optional "+proto"/";..." suffix; otherwise HTTP 415), grpc-encoding absent or
 *     "identity" (otherwise UNIMPLEMENTED with grpc-accept-encoding: identity), a well-formed
 *     grpc-timeout. Early errors are trailers-only responses (one HEADERS frame, END_STREAM).
 *   - Request messages above max_message end the call with RESOURCE_EXHAUSTED; a compressed
 *     message (no compression is negotiated) with INTERNAL.
 *   - grpc-timeout starts a deadline; when it passes the server ends the call with
 *     DEADLINE_EXCEEDED itself (queued messages are dropped).
 *   - Sends respect HTTP/2 flow control. Each call has a bounded send queue: grpc_call_send()
 *     refuses (-ENOBUFS) when it is full and on_writable() says when to go on, so a client that
 *     stops reading holds the handler back instead of growing server memory.
 *
 * Callbacks and lifetimes
 *   - All callbacks run on the loop thread, never from inside a grpc_call_* or grpc_server_*
 *     function (those only queue work; bytes go out once the current callback returns).
 *   - A handler may call any grpc_call_* function on any live call from any callback, and may
 *     start or stop its own timers. It must not call grpc_server_free() from a callback.
 *   - A call lives from on_start() until on_done() returns; on_done() is called exactly once per
 *     started call, and after it the grpc_call pointer must not be used. The handler frees its
 *     own per-call data in on_done().
 *   - Buffers passed in (messages, metadata, status messages) are copied before the function
 *     returns; buffers passed out (request messages, metadata, path) belong to the server and are
 *     valid as documented on each function. */
#ifndef WEFT_NET_GRPC_SERVER_H
#define WEFT_NET_GRPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/loop.h"
#include "net/grpc.h"

struct grpc_server;
struct grpc_call;

/* Most request metadata entries one call keeps. */
#define GRPC_SERVER_MAX_MD 64

/* One metadata entry (an HTTP/2 header). Names are lowercase; "-bin" values are raw base64 text
 * as on the wire (not decoded). Strings handed in need no NUL; the request metadata the server
 * hands out is also NUL-terminated. */
struct grpc_md {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Why a call ended (the on_done reason). */
enum grpc_call_end {
    GRPC_END_FINISHED = 0,    /* the handler's status and trailers went out completely */
    GRPC_END_CANCELLED = 1,   /* the client reset the stream (RST_STREAM) before the status went out */
    GRPC_END_DEADLINE = 2,    /* the grpc-timeout deadline passed; the server sent DEADLINE_EXCEEDED */
    GRPC_END_ERROR = 3,       /* a request message was too large or malformed; the server sent the status */
    GRPC_END_CLOSED = 4,      /* the connection closed, failed, or the server shut down */
};

/* What a method does. Every callback may be NULL except on_done. */
struct grpc_handler {
    /* A call arrived (request headers checked). May set grpc_call_set_data, send, finish. */
    void (*on_start)(struct grpc_call *c, void *method_arg);
    /* One whole request message. msg is the server's and valid only during the callback. */
    void (*on_message)(struct grpc_call *c, const uint8_t *msg, size_t len);
    /* The client half-closed: no more messages will come. A unary or client-streaming handler
     * usually replies and finishes here. */
    void (*on_half_close)(struct grpc_call *c);
    /* The send queue has room again after grpc_call_send() returned -ENOBUFS. */
    void (*on_writable)(struct grpc_call *c);
    /* The call is over (see enum grpc_call_end). Last callback for c; free per-call data here. */
    void (*on_done)(struct grpc_call *c, enum grpc_call_end why);
};

/* Limits; a field left 0 takes the default in brackets. See docs/limits.md. */
struct grpc_server_config {
    uint32_t max_message;          /* largest request and response message [4 MiB] */
    uint32_t max_streams;          /* concurrent calls per connection, SETTINGS_MAX_CONCURRENT_STREAMS [100] */
    uint32_t max_connections;      /* open connections; more are closed at accept [1024] */
    uint32_t send_queue_bytes;     /* queued response bytes per call before -ENOBUFS [1 MiB] */
    uint32_t max_metadata_bytes;   /* request header block per call, names + values [16 KiB] */
    uint32_t window_bytes;         /* HTTP/2 receive window per stream [1 MiB] */
    uint32_t idle_timeout_ms;      /* a connection without calls this long gets GOAWAY and is
                                    * closed (also a client that never sends the preface), and
                                    * one whose socket takes no byte this long while output is
                                    * pending is closed [300000 = 5 min; UINT32_MAX: never] */
};

/* Creates a server on loop l (cfg may be NULL for defaults). Returns NULL when out of memory. */
struct grpc_server *grpc_server_new(struct loop *l, const struct grpc_server_config *cfg);
/* Registers a method. path is copied ("/pkg.Service/Method"); h must stay valid while the server
 * lives; arg is handed to on_start. Returns 0, -EEXIST for a duplicate path, -EINVAL, -ENOMEM. */
int grpc_server_add_method(struct grpc_server *s, const char *path, const struct grpc_handler *h,
                           void *arg);
/* Listens on addr:port (numeric IPv4 or IPv6; port 0 picks one) and starts accepting.
 * May be called more than once. Returns the bound port (> 0) or -errno. */
int grpc_server_listen(struct grpc_server *s, const char *addr, uint16_t port);
/* Takes an already connected stream socket (made non-blocking here) as a new HTTP/2
 * connection, as if accepted: for socket hand-off and tests. The server owns fd from now on
 * and closes it on failure. Returns 0, -ECONNREFUSED when shutting down or at
 * max_connections, -ENOMEM. */
int grpc_server_adopt(struct grpc_server *s, int fd);
/* Graceful shutdown: stops accepting, sends GOAWAY (NO_ERROR) on every connection and lets
 * in-flight calls finish. After grace_ms the calls still running are ended with UNAVAILABLE
 * and their connections closed (their handlers see GRPC_END_CLOSED). done (may be NULL) runs
 * once, from a loop callback, when no connection is left. Calling it again does nothing. */
void grpc_server_shutdown(struct grpc_server *s, uint64_t grace_ms,
                          void (*done)(struct grpc_server *s, void *arg), void *arg);
/* Closes everything now (each live call gets on_done(GRPC_END_CLOSED), synchronously: the one
 * exception to "callbacks only from the loop") and frees the server. Not from inside one of the
 * server's callbacks. Run the loop or loop_free() afterwards to release deferred memory. */
void grpc_server_free(struct grpc_server *s);
/* Counters since grpc_server_new, for tests and debug pages. */
struct grpc_server_stats {
    uint64_t connections, connections_refused, calls, calls_unimplemented, calls_cancelled,
             calls_deadline, send_blocked;
    uint32_t live_connections, live_calls;
    size_t queued_bytes, queued_bytes_max;   /* response bytes queued now, and the peak */
};
void grpc_server_get_stats(const struct grpc_server *s, struct grpc_server_stats *out);

/* --- calls --- */

void grpc_call_set_data(struct grpc_call *c, void *data);
void *grpc_call_data(const struct grpc_call *c);
struct grpc_server *grpc_call_server(const struct grpc_call *c);
struct loop *grpc_server_loop(const struct grpc_server *s);
/* The :path, NUL-terminated; valid while the call lives. */
const char *grpc_call_path(const struct grpc_call *c);
/* Request metadata: every header except pseudo-headers, content-type, te, grpc-timeout,
 * grpc-encoding and grpc-accept-encoding (user-agent stays), in arrival order, at most GRPC_SERVER_MAX_MD entries (more end the call with
 * RESOURCE_EXHAUSTED). Names and values are also NUL-terminated. Valid while the call lives.
 * Returns the count; *md points at the array. */
size_t grpc_call_metadata(const struct grpc_call *c, const struct grpc_md **md);
/* The first value of a metadata entry by lowercase name, or NULL (len set when found). */
const char *grpc_call_metadata_get(const struct grpc_call *c, const char *name, size_t *len);
/* Milliseconds left before the call's deadline (0 when passed), or UINT64_MAX without one. */
uint64_t grpc_call_deadline_left_ms(const struct grpc_call *c);

/* Sends the response headers (":status 200", content-type, then md) now instead of with the
 * first message. At most once, before any send. Returns 0, -EALREADY, -EPIPE when the call is
 * finished, -EINVAL for a metadata name that is not lowercase token characters or a value with
 * CR, LF or NUL. */
int grpc_call_send_headers(struct grpc_call *c, const struct grpc_md *md, size_t n);
/* Queues one response message (len bytes copied, prefix added). Returns 0; -ENOBUFS when the
 * queue already holds send_queue_bytes (nothing queued: wait for on_writable; a message is
 * always taken when the queue is empty); -EMSGSIZE above max_message; -EPIPE after finish,
 * cancellation or the deadline; -ENOMEM. */
int grpc_call_send(struct grpc_call *c, const void *msg, size_t len);
/* Ends the call with status (0..16), an optional message (UTF-8, may be NULL; percent-encoded
 * here) and trailing metadata. Queued messages go out first, then the trailers; if nothing was
 * sent yet the response is trailers-only. If the client has not half-closed, RST_STREAM
 * (NO_ERROR) follows the trailers. on_done follows once it is all sent (or the stream died).
 * Returns 0, -EPIPE when already finished/cancelled, -EINVAL for a status outside 0..16 or
 * metadata as for send_headers. */
int grpc_call_finish(struct grpc_call *c, int status, const char *message,
                     const struct grpc_md *trailers, size_t n);

#endif
