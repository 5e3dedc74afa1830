/* Upstream connections and per-worker, per-host keep-alive pools.
 *
 * An owner (an HTTP stream or a TCP proxy session) acquires a connection to one host; it gets
 * an idle pooled one at once or a new one that is connecting. Events go to the owner's
 * callback. When done, the owner releases it: back to the idle list when reusable, else closed.
 * Idle connections close on their idle timeout or when the server closes them. */
#ifndef WEFT_PROXY_UPSTREAM_H
#define WEFT_PROXY_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "common/loop.h"
#include "net/transport.h"

struct cluster;
struct worker;
struct wcluster;

enum uconn_state { UC_CONNECTING, UC_OPEN, UC_IDLE, UC_CLOSED };

enum uconn_event {
    UE_CONNECTED,       /* the connection is established and may be written */
    UE_IO,              /* readable and/or writable (see u->readable, u->writable) */
    UE_CONNECT_FAILED,  /* refused/unreachable: response flag UF */
    UE_CONNECT_TIMEOUT, /* connect_timeout expired: UF as well, counted separately */
};

struct uconn;
typedef void (*uconn_cb)(struct uconn *u, enum uconn_event ev, void *owner);

struct uconn {
    struct io io;
    struct transport tp;           /* the socket, plaintext or TLS (cluster transport_socket) */
    struct worker *w;
    struct wcluster *wc;
    uint32_t host;
    enum uconn_state state;
    struct timer timer;            /* connect timeout, then idle timeout */
    struct buf *in;                /* bytes read from the upstream, owned while busy */
    void *owner;
    uconn_cb cb;
    struct uconn *next_idle;
    uint32_t requests;             /* requests served (max_requests_per_connection) */
    uint64_t opened_ms;            /* connect start (max_connection_duration) */
    bool readable, writable, peer_closed;
    bool hup;                      /* epoll reported the peer's EOF or an error */
    int error;                     /* errno of the last failure */
    bool handshaking;              /* TCP is up, TLS is not yet (still UC_CONNECTING to the owner) */
    uint8_t alpn;                  /* enum upstream_alpn: what TLS offers when alpn_protocols is empty */
    const char *tls_error;         /* after a failed TLS handshake: %UPSTREAM_TRANSPORT_FAILURE_REASON%
                                    * (worker-local storage that outlives the connection) */
    bool cb_cx, cb_pending;        /* counted on the circuit breaker: a connection, a pending request */
    struct deferred def;
};

/* Milliseconds left before a connection opened at opened_ms reaches cluster c's
 * max_connection_duration: UINT64_MAX without one, 0 once reached (Envoy then lets the
 * connection finish its requests and closes it instead of reusing it). */
uint64_t upstream_duration_left(const struct cluster *c, uint64_t opened_ms, uint64_t now_ms);

/* Gets a connection to host `host` of wc for owner. Returns 0 with *out set (state UC_OPEN for
 * a reused one, UC_CONNECTING for a new one: wait for UE_CONNECTED), or -errno when a socket
 * could not even be created (treat as connect failure), or -EBUSY when the circuit breaker's
 * max_connections / max_pending_requests is reached (reply 503 UO). */
int upstream_acquire(struct worker *w, struct wcluster *wc, uint32_t host, uconn_cb cb, void *owner,
                     struct uconn **out);
/* For ORIGINAL_DST clusters: a connection to an address that is not one of wc's hosts (the
 * downstream connection's original destination). Pooled per address, as Envoy keeps a host per
 * original destination: an idle one to addr is reused. Same results as upstream_acquire. */
int upstream_connect_addr(struct worker *w, struct wcluster *wc, const struct sockaddr_storage *addr,
                          uconn_cb cb, void *owner, struct uconn **out);
#define UPSTREAM_NO_POOL UINT32_MAX
/* uconn.host of a pooled ORIGINAL_DST connection: UPSTREAM_ODST_BASE + its slot in wc->odst. */
#define UPSTREAM_ODST_BASE 0x80000000u

/* The ALPN a connection offers when the cluster's UpstreamTlsContext lists none (Envoy derives
 * it from the protocol): nothing (explicit HTTP/1.1, as before), "h2", or "h2,http/1.1"
 * (auto_config). */
enum upstream_alpn { UA_NONE, UA_H2, UA_AUTO, UA_H1 };
/* upstream_acquire for HTTP: a new connection offers ALPN per alpn (the router passes UA_H1
 * for an auto_config host that answered HTTP/1.1). */
int upstream_acquire_alpn(struct worker *w, struct wcluster *wc, uint32_t host, enum upstream_alpn alpn, uconn_cb cb,
                          void *owner, struct uconn **out);
/* A new, unpooled connection to host `host` of wc for an HTTP/2 connection (upstream_h2.c) or
 * an auto_config one: offers ALPN per alpn, counts upstream_cx_http2_total when h2_stat.
 * Never goes to the idle list on its own; the owner closes it with upstream_close or hands it
 * on (upstream_set_owner, then upstream_release puts it in the HTTP/1.1 idle list). Same
 * results and events as upstream_acquire. */
int upstream_connect_alpn(struct worker *w, struct wcluster *wc, uint32_t host, enum upstream_alpn alpn, bool h2_stat,
                          uconn_cb cb, void *owner, struct uconn **out);
/* Makes owner (with cb) the one u reports to. */
static inline void upstream_set_owner(struct uconn *u, uconn_cb cb, void *owner)
{
    u->cb = cb;
    u->owner = owner;
}
/* True when u's TLS handshake selected ALPN "h2". */
bool upstream_alpn_is_h2(const struct uconn *u);
/* Closes u (the owner counts why: destroy_local / destroy_remote). u must not be used afterwards. */
void upstream_close(struct uconn *u);

/* Gives u back. reusable: the exchange ended cleanly and the connection may carry another
 * request; otherwise it is closed. u must not be used afterwards. */
void upstream_release(struct uconn *u, bool reusable);
/* Sends the buffers on u (plaintext or TLS). Same results as transport_sendv. */
static inline ssize_t upstream_sendv(struct uconn *u, const struct iovec *iov, int n)
{
    return transport_sendv(&u->tp, iov, n);
}
/* Half-closes u's write side (TLS: close_notify first). */
static inline void upstream_shutdown(struct uconn *u) { transport_shutdown(&u->tp); }

/* Reads into u->in until EAGAIN, EOF or a full buffer. Returns bytes read (0 = nothing new),
 * sets u->peer_closed on EOF, returns -errno on error. */
long upstream_read(struct uconn *u);
/* Closes every idle connection of wc (config change, drain). */
void upstream_close_idle(struct wcluster *wc, size_t npools);

#endif
