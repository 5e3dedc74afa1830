/* A small gRPC client over HTTP/2 cleartext (prior knowledge) on libnghttp2, driven by one Weft
 * event loop (src/common/loop.h). Built for weft-proxy's xDS client: one connection carrying
 * bidirectional streaming calls. Messages are opaque bytes; callers encode and decode them.
 *
 * Model
 *   - A client is one HTTP/2 connection to one address, on one loop and one thread; nothing
 *     here is thread-safe. grpc_client_new() starts a non-blocking connect at once; calls may
 *     be started and messages sent before it completes (they go out once connected).
 *   - The connection is not re-dialled: when it fails (connect error, connect timeout, peer
 *     close, GOAWAY, protocol error, keepalive PING unanswered) every live call ends with
 *     UNAVAILABLE and the client stays dead (grpc_client_alive() false). Reconnecting with a
 *     backoff is the caller's policy: free this client (not from its own callback) and make
 *     a new one.
 *   - Each call has a bounded send queue: grpc_ccall_send() refuses with -ENOBUFS when the
 *     queued bytes would pass send_queue_bytes. Received messages above max_message end the
 *     call with RESOURCE_EXHAUSTED (RST_STREAM CANCEL is sent).
 *
 * Callbacks and lifetimes
 *   - Callbacks run on the loop thread from loop events only, never from inside a
 *     grpc_client_* / grpc_ccall_* function.
 *   - A call lives from grpc_client_call() until its on_done() returns; on_done() runs exactly
 *     once per call (also for calls cancelled by grpc_ccall_cancel or ended by
 *     grpc_client_free, see there). After it the grpc_ccall pointer must not be used.
 *   - Buffers handed in are copied before the function returns; buffers handed out (received
 *     messages, status message) are valid only during the callback.
 *   - grpc_client_free() must not be called from one of the client's callbacks. */
#ifndef WEFT_NET_GRPC_CLIENT_H
#define WEFT_NET_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/loop.h"
#include "net/grpc.h"

struct grpc_client;
struct grpc_ccall;

/* Limits and timers; a field left 0 takes the default in brackets. See docs/limits.md. */
struct grpc_client_config {
    uint32_t max_message;          /* largest response message accepted [4 MiB] */
    uint32_t send_queue_bytes;     /* bytes queued per call before -ENOBUFS [4 MiB] */
    uint32_t connect_timeout_ms;   /* TCP connect [5000] */
    uint32_t keepalive_ms;         /* PING interval; a PING not acked by the next one fails
                                    * the connection [0: no keepalive] */
    uint32_t window_bytes;         /* HTTP/2 receive window per stream [1 MiB] */
};

/* What a call does with its events. on_done is required; the others may be NULL. */
struct grpc_ccall_handler {
    /* Response headers arrived (HTTP 200, gRPC content-type). */
    void (*on_headers)(struct grpc_ccall *call, void *arg);
    /* One whole response message; msg is valid only during the callback. */
    void (*on_message)(struct grpc_ccall *call, void *arg, const uint8_t *msg, size_t len);
    /* The call is over: status is the grpc-status received (or the one the client made up:
     * UNAVAILABLE for a lost connection, CANCELLED after grpc_ccall_cancel, INTERNAL for a bad
     * response, the HTTP mapping for a non-gRPC reply); message (may be "") is decoded
     * grpc-message text. Last callback for call. */
    void (*on_done)(struct grpc_ccall *call, void *arg, int status, const char *message);
};

/* Creates a client and starts connecting to addr (copied). authority is the :authority of
 * every call (copied; e.g. "xds-grpc"). cfg may be NULL. Returns NULL when out of memory or
 * the socket cannot be made (errno set). */
struct grpc_client *grpc_client_new(struct loop *l, const struct sockaddr *addr, socklen_t addrlen,
                                    const char *authority, const struct grpc_client_config *cfg);
/* Ends every live call (their on_done runs now, with CANCELLED: the one exception to "callbacks
 * only from loop events"), closes the connection and frees the client. NULL is allowed. */
void grpc_client_free(struct grpc_client *c);
/* True until the connection has failed or closed. */
bool grpc_client_alive(const struct grpc_client *c);
/* True once the TCP connection is up and the server's SETTINGS arrived. */
bool grpc_client_connected(const struct grpc_client *c);

/* Starts a call to path ("/pkg.Service/Method", copied). h must stay valid while the call lives;
 * arg is handed to every callback. Returns the call, or NULL when the client is dead or out of
 * memory (no callback runs then). */
struct grpc_ccall *grpc_client_call(struct grpc_client *c, const char *path, const struct grpc_ccall_handler *h,
                                    void *arg);
/* Queues one message (len bytes, copied, framed with the 5-byte prefix). Returns 0, -ENOBUFS
 * when the send queue is full, -EPIPE when the call's sending side is closed or the call is
 * over, -ENOMEM. */
int grpc_ccall_send(struct grpc_ccall *call, const uint8_t *msg, size_t len);
/* Half-closes: END_STREAM goes out after the queued messages. */
void grpc_ccall_close_send(struct grpc_ccall *call);
/* Cancels the call (RST_STREAM CANCEL). on_done runs later, from the loop, with CANCELLED. */
void grpc_ccall_cancel(struct grpc_ccall *call);
/* Bytes waiting in the call's send queue. */
size_t grpc_ccall_queued(const struct grpc_ccall *call);

#endif
