/* The transport's out-of-line parts (see transport.h): TLS record I/O shaped for the
 * edge-triggered loop, and the accessors connection code and access logs use. Contexts and
 * handshakes live in tls.c. */
#include "net/transport.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

ssize_t tls_transport_recv(struct transport *t, void *buf, size_t n)
{
    size_t total = 0;
    t->rd_wants_write = false;
    while (total < n) {
        size_t got = 0;
        int r = SSL_read_ex(t->ssl, (char *)buf + total, n - total, &got);
        if (r == 1) {
            total += got;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (e == SSL_ERROR_WANT_WRITE) {
                t->rd_wants_write = true;
                if (t->loop && t->io)
                    io_want_write(t->loop, t->io, true);
            }
            if (total)
                return (ssize_t)total;
            errno = EAGAIN;
            return -1;
        }
        if (total)
            return (ssize_t)total; /* the EOF or error comes again on the next call */
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        t->failed = true;
        ERR_clear_error();
        if (e != SSL_ERROR_SYSCALL || errno == 0 || errno == EAGAIN)
            errno = ECONNRESET;
        return -1;
    }
    return (ssize_t)total;
}

ssize_t tls_transport_sendv(struct transport *t, const struct iovec *iov, int iovcnt)
{
    static _Thread_local char scratch[16384];
    size_t total = 0;
    int i = 0;
    size_t off = 0;
    t->wr_wants_read = false;
    for (;;) {
        while (i < iovcnt && off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        if (i >= iovcnt)
            break;
        const char *p;
        size_t len, seg = iov[i].iov_len - off;
        if (seg >= sizeof scratch || i == iovcnt - 1) {
            p = (const char *)iov[i].iov_base + off;
            len = seg;
        } else {
            /* Gather small buffers into one record: one SSL_write, one send. */
            len = 0;
            int j = i;
            size_t o = off;
            while (j < iovcnt && len < sizeof scratch) {
                size_t take = iov[j].iov_len - o;
                if (take > sizeof scratch - len)
                    take = sizeof scratch - len;
                memcpy(scratch + len, (const char *)iov[j].iov_base + o, take);
                len += take;
                o += take;
                if (o == iov[j].iov_len) {
                    j++;
                    o = 0;
                }
            }
            p = scratch;
        }
        size_t w = 0;
        int r = SSL_write_ex(t->ssl, p, len, &w);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                t->wr_wants_read = e == SSL_ERROR_WANT_READ;
                if (total)
                    return (ssize_t)total;
                errno = EAGAIN;
                return -1;
            }
            t->failed = true;
            ERR_clear_error();
            if (total)
                return (ssize_t)total;
            errno = EPIPE;
            return -1;
        }
        total += w;
        /* Advance through the iovec by w bytes. */
        while (w > 0 && i < iovcnt) {
            size_t left = iov[i].iov_len - off;
            if (w < left) {
                off += w;
                w = 0;
            } else {
                w -= left;
                i++;
                off = 0;
            }
        }
    }
    return (ssize_t)total;
}

void transport_attach(struct transport *t, struct loop *l, struct io *io)
{
    t->loop = l;
    t->io = io;
    if (t->ssl)
        SSL_set_app_data(t->ssl, t);
}

int transport_shutdown(struct transport *t)
{
    if (t->ssl && !t->failed) {
        SSL_shutdown(t->ssl); /* sends close_notify; we do not wait for the peer's */
        ERR_clear_error();
    }
    return shutdown(t->fd, SHUT_WR) < 0 ? -errno : 0;
}

void transport_close(struct transport *t)
{
    if (t->ssl) {
        if (!t->failed && SSL_is_init_finished(t->ssl))
            SSL_shutdown(t->ssl);
        ERR_clear_error();
        SSL_free(t->ssl);
        t->ssl = NULL;
    }
    free(t->server_name);
    free(t->peer_uri_san);
    free(t->xfcc);
    t->server_name = t->peer_uri_san = t->xfcc = NULL;
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
}

const char *transport_alpn(const struct transport *t, size_t *len)
{
    if (!t->ssl)
        return NULL;
    const unsigned char *p = NULL;
    unsigned n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    *len = n;
    return n ? (const char *)p : NULL;
}

const char *transport_tls_version(const struct transport *t)
{
    return t->ssl ? SSL_get_version(t->ssl) : NULL;
}

bool transport_session_reused(const struct transport *t)
{
    return t->ssl && SSL_session_reused(t->ssl);
}

int transport_peer_sans(const struct transport *t, int type, char *out, size_t cap)
{
    if (cap)
        out[0] = '\0';
    X509 *peer = t->ssl ? SSL_get0_peer_certificate(t->ssl) : NULL;
    if (!peer)
        return 0;
    GENERAL_NAMES *names = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
    int count = 0;
    size_t used = 0;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type != type)
            continue;
        const char *p = (const char *)ASN1_STRING_get0_data(g->d.ia5);
        size_t n = (size_t)ASN1_STRING_length(g->d.ia5);
        if (used + n + 2 > cap)
            break;
        if (count)
            out[used++] = ',';
        memcpy(out + used, p, n);
        used += n;
        out[used] = '\0';
        count++;
    }
    GENERAL_NAMES_free(names);
    return count;
}
