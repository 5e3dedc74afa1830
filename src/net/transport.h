/* The transport under every proxied connection: a plain socket or TLS over it (Envoy's
 * "transport socket"). Connection code reads and writes through transport_recv/transport_sendv
 * with the same results as recv/sendmsg, so it does not care which one it has. Plaintext is an
 * inline branch straight to sock_recv/sock_sendv: no call, no extra state touched.
 *
 * A transport is a small value: the owner embeds it and may copy it (the listener hands an
 * accepted, handshaken transport to the HTTP connection manager or tcp_proxy). After a copy,
 * call transport_attach() on the new home before using it. */
#ifndef WEFT_NET_TRANSPORT_H
#define WEFT_NET_TRANSPORT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/uio.h>

#include "common/loop.h"
#include "common/sock.h"

typedef struct ssl_st SSL;

struct transport {
    int fd;
    SSL *ssl;                  /* NULL: plaintext */
    struct loop *loop;         /* set by transport_attach: TLS may need EPOLLOUT to read */
    struct io *io;
    bool rd_wants_write;       /* SSL_read must write first: an EPOLLOUT also means "read" */
    bool wr_wants_read;        /* SSL_write must read first: an EPOLLIN also means "write" */
    bool failed;               /* fatal TLS error: no close_notify on close */
    char *server_name;         /* SNI (from the TLS inspector or the handshake), owned, or NULL */
    char *peer_uri_san;        /* first URI SAN of the peer certificate, owned, or NULL */
    bool peer_cert;            /* the peer presented a certificate (mTLS on a server) */
    char *xfcc;                /* this connection's x-forwarded-client-cert element (xfcc.h), owned, or NULL */
};

/* A plaintext transport over fd (not yet attached). */
static inline struct transport transport_plain(int fd)
{
    return (struct transport){.fd = fd};
}

static inline bool transport_is_tls(const struct transport *t) { return t->ssl != NULL; }

ssize_t tls_transport_recv(struct transport *t, void *buf, size_t n);
ssize_t tls_transport_sendv(struct transport *t, const struct iovec *iov, int iovcnt);

/* Reads up to n bytes: >0 bytes, 0 end of stream, -1 with errno (EAGAIN: nothing now). For TLS
 * it reads records until n bytes or the socket is drained, so a short read still means
 * "drained", as with recv on an edge-triggered socket. */
static inline ssize_t transport_recv(struct transport *t, void *buf, size_t n)
{
    if (!t->ssl)
        return sock_recv(t->fd, buf, n);
    return tls_transport_recv(t, buf, n);
}

/* Writes the buffers in order: bytes written (maybe fewer than asked) or -1 with errno
 * (EAGAIN: blocked; the caller asks for EPOLLOUT). TLS gathers small buffers into one record
 * through a per-thread 16 KiB scratch area (no allocation). A caller retrying after a short or
 * blocked write must pass the same unwritten bytes first (it always does: they are still its
 * own buffers). */
static inline ssize_t transport_sendv(struct transport *t, const struct iovec *iov, int iovcnt)
{
    if (!t->ssl)
        return sock_sendv(t->fd, iov, iovcnt);
    return tls_transport_sendv(t, iov, iovcnt);
}

static inline ssize_t transport_send(struct transport *t, const void *buf, size_t n)
{
    struct iovec iov = {(void *)buf, n};
    return transport_sendv(t, &iov, 1);
}

/* Maps epoll events for a TLS transport that is waiting on the other direction (see
 * rd_wants_write). Call at the top of the connection's io callback. */
static inline uint32_t transport_events(const struct transport *t, uint32_t events)
{
    if (t->rd_wants_write && (events & EPOLLOUT))
        events |= EPOLLIN;
    if (t->wr_wants_read && (events & EPOLLIN))
        events |= EPOLLOUT;
    return events;
}

/* Records where the transport now lives (its loop and the io registered for its fd). */
void transport_attach(struct transport *t, struct loop *l, struct io *io);
/* Ends the write side: TLS close_notify, then shutdown(SHUT_WR). Returns 0 or -errno. */
int transport_shutdown(struct transport *t);
/* Frees the TLS state and closes the fd. Safe on a zeroed transport with fd -1. */
void transport_close(struct transport *t);

/* The negotiated ALPN protocol ("h2", "http/1.1"): pointer and length, or NULL when none
 * (always NULL for plaintext). The bytes live as long as the transport. */
const char *transport_alpn(const struct transport *t, size_t *len);
/* "TLSv1.2" / "TLSv1.3", or NULL for plaintext. */
const char *transport_tls_version(const struct transport *t);
/* True when the TLS session was resumed. */
bool transport_session_reused(const struct transport *t);
/* Copies the peer certificate's SANs of one type (TRANSPORT_SAN_URI or _DNS), joined by ',',
 * into out (always NUL-terminated). Returns the number of SANs, 0 when none or plaintext. */
enum { TRANSPORT_SAN_DNS = 2, TRANSPORT_SAN_URI = 6 };  /* GEN_DNS, GEN_URI */
int transport_peer_sans(const struct transport *t, int type, char *out, size_t cap);

#endif
