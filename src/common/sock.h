/* Socket I/O for the request path. send/recv/sendmsg go straight to the socket layer, skipping
 * the generic file path that read/write/writev take (measured: a few percent of CPU per request
 * under load), and MSG_NOSIGNAL turns a write to a closed peer into EPIPE instead of SIGPIPE. */
#ifndef WEFT_COMMON_SOCK_H
#define WEFT_COMMON_SOCK_H

#include <sys/socket.h>
#include <sys/uio.h>

static inline ssize_t sock_recv(int fd, void *buf, size_t n)
{
    return recv(fd, buf, n, 0);
}

/* Writes up to iovcnt buffers in one call; returns bytes written or -1 with errno. */
static inline ssize_t sock_sendv(int fd, const struct iovec *iov, int iovcnt)
{
    if (iovcnt == 1)
        return send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return sendmsg(fd, &m, MSG_NOSIGNAL);
}

static inline ssize_t sock_send(int fd, const void *buf, size_t n)
{
    return send(fd, buf, n, MSG_NOSIGNAL);
}

#endif
