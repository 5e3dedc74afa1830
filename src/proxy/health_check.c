/* Active health checks (Cluster.health_checks), on the main thread's loop: one non-blocking
 * connection per check. HTTP: "GET path" with the configured host and headers, healthy when
 * the status is in expected_statuses (default [200, 300)). TCP: connect, send the payload,
 * healthy when every receive payload is found in the answer, in order (Envoy's fuzzy match);
 * with no payloads a completed connect is healthy. */
#include "proxy/host_health.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HC_BUF 4096

struct hc_session {
    struct io io;
    struct timer timer;
    struct loop *loop;
    struct cluster_health *ch;
    struct host_health *hh;
    char out[HC_BUF];
    size_t out_len, out_off;
    char in[HC_BUF];
    size_t in_len;
    bool connected;
};

static void finish(struct hc_session *s, bool ok, bool network)
{
    struct loop *l = s->loop;
    timer_stop(l, &s->timer);
    io_stop(l, &s->io);
    close(s->io.fd);
    s->hh->hc = NULL;
    health_host_result(s->ch, s->hh, ok, network, loop_now_ms(l));
    free(s);
}

void hc_cancel(struct loop *l, struct host_health *hh)
{
    struct hc_session *s = hh->hc;
    if (!s)
        return;
    timer_stop(l, &s->timer);
    io_stop(l, &s->io);
    close(s->io.fd);
    hh->hc = NULL;
    free(s);
}

static void on_timeout(struct loop *l, struct timer *t)
{
    (void)l;
    finish(t->data, false, true);
}

/* The answer so far: 1 healthy, 0 unhealthy, -1 need more. */
static int judge(struct hc_session *s, bool eof)
{
    const struct hc_config *hc = s->ch->hc;
    if (hc->kind == HC_HTTP) {
        /* "HTTP/1.x NNN" is all that decides. */
        if (s->in_len < 12)
            return eof ? 0 : -1;
        if (memcmp(s->in, "HTTP/1.", 7) != 0 || s->in[8] != ' ')
            return 0;
        int st = (s->in[9] - '0') * 100 + (s->in[10] - '0') * 10 + (s->in[11] - '0');
        if (hc->n_expected == 0)
            return st >= 200 && st < 300;
        for (size_t i = 0; i < hc->n_expected; i++)
            if (st >= hc->expected[i].start && st < hc->expected[i].end)
                return 1;
        return 0;
    }
    size_t pos = 0;
    for (size_t i = 0; i < hc->n_receive; i++) {
        const uint8_t *p = hc->receive[i];
        size_t n = hc->receive_len[i];
        bool found = false;
        for (; n && pos + n <= s->in_len; pos++) {
            if (memcmp(s->in + pos, p, n) == 0) {
                pos += n;
                found = true;
                break;
            }
        }
        if (!found && n)
            return eof || s->in_len == sizeof s->in ? 0 : -1;
    }
    return 1;
}

static void on_io(struct loop *l, struct io *io, uint32_t events)
{
    struct hc_session *s = io->data;
    if (!s->connected) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (events & (EPOLLERR | EPOLLHUP)) == (EPOLLERR | EPOLLHUP)) {
            finish(s, false, true);
            return;
        }
        if (!(events & EPOLLOUT) && !(events & EPOLLIN))
            return;
        s->connected = true;
        if (s->ch->hc->kind == HC_TCP && s->out_len == 0 && s->ch->hc->n_receive == 0) {
            finish(s, true, false);
            return;
        }
    }
    while (s->out_off < s->out_len) {
        ssize_t w = send(io->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN)
                break;
            finish(s, false, true);
            return;
        }
        s->out_off += (size_t)w;
    }
    if (s->out_off == s->out_len && (io->events & EPOLLOUT))
        io_modify(l, io, EPOLLIN);
    for (;;) {
        if (s->in_len == sizeof s->in) {
            int v = judge(s, true);
            finish(s, v == 1, false);
            return;
        }
        ssize_t r = recv(io->fd, s->in + s->in_len, sizeof s->in - s->in_len, 0);
        if (r < 0) {
            if (errno == EAGAIN)
                break;
            finish(s, false, true);
            return;
        }
        if (r == 0) {
            int v = judge(s, true);
            /* Closed before any answer: a network failure. */
            finish(s, v == 1, s->in_len == 0);
            return;
        }
        s->in_len += (size_t)r;
        int v = judge(s, false);
        if (v >= 0) {
            finish(s, v == 1, false);
            return;
        }
    }
}

/* Writes the HTTP/1.1 request: the cluster's (or configured) host, the configured headers,
 * a User-Agent as Envoy's, and "connection: close" (a new connection per check). */
static size_t http_request(const struct hc_config *hc, const struct cluster_health *ch, char *out, size_t cap)
{
    const char *host = hc->host && *hc->host ? hc->host : ch->c->name;
    int n = snprintf(out, cap, "GET %s HTTP/1.1\r\nhost: %s\r\nuser-agent: Envoy/HC\r\nconnection: close\r\n",
                     hc->path && *hc->path ? hc->path : "/", host);
    size_t len = n > 0 && (size_t)n < cap ? (size_t)n : cap;
    for (size_t i = 0; i < hc->n_headers && len < cap; i++) {
        n = snprintf(out + len, cap - len, "%s: %s\r\n", hc->headers[i].name, hc->headers[i].value);
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
    }
    if (len + 2 < cap) {
        memcpy(out + len, "\r\n", 2);
        len += 2;
    }
    return len;
}

void hc_start_check(struct loop *l, struct cluster_health *ch, struct host_health *hh)
{
    const struct hc_config *hc = ch->hc;
    struct sockaddr_storage sa = hh->sa;
    if (hc->alt_port) {
        if (sa.ss_family == AF_INET)
            ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)hc->alt_port);
        else
            ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)hc->alt_port);
    }
    socklen_t len = sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        health_host_result(ch, hh, false, true, loop_now_ms(l));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, len) < 0 && errno != EINPROGRESS) {
        close(fd);
        health_host_result(ch, hh, false, true, loop_now_ms(l));
        return;
    }
    struct hc_session *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return;
    }
    s->loop = l;
    s->ch = ch;
    s->hh = hh;
    if (hc->kind == HC_HTTP) {
        s->out_len = http_request(hc, ch, s->out, sizeof s->out);
    } else {
        s->out_len = hc->send_len < sizeof s->out ? hc->send_len : sizeof s->out;
        if (s->out_len)
            memcpy(s->out, hc->send, s->out_len);
    }
    hh->hc = s;
    timer_init(&s->timer, on_timeout, s);
    timer_start(l, &s->timer, hc->timeout_ms);
    io_start(l, &s->io, fd, EPOLLIN | EPOLLOUT, on_io, s);
}
