#include "proxy/pending.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "net/inspect.h"
#include "net/tls.h"
#include "net/transport.h"
#include "proxy/access_log.h"
#include "proxy/config.h"
#include "proxy/http_conn.h"
#include "proxy/listener.h"
#include "proxy/netrl.h"
#include "proxy/stream_info.h"
#include "proxy/tcp_proxy.h"
#include "proxy/worker.h"

enum pending_phase { PH_INSPECT, PH_HANDSHAKE };

struct pending {
    struct io io;
    struct worker *w;
    struct snapshot *snap;         /* one reference: lc and fc live in it */
    struct listener_config *lc;
    struct filter_chain *fc;
    struct sockaddr_storage peer, local;
    struct transport tp;
    struct timer timer;            /* listener_filters_timeout, then the handshake timeout */
    struct conn_link link;
    enum pending_phase phase;
    bool closed;
    uint64_t start_us, start_wall_us;
    /* What the inspectors found. */
    const char *transport_protocol;
    struct tls_hello hello;
    const char *alpn[INSPECT_MAX_ALPN];
    size_t n_alpn;
    struct deferred def;
};

static void free_deferred(struct deferred *d)
{
    struct pending *p = (struct pending *)((char *)d - offsetof(struct pending, def));
    snapshot_unref(p->snap);
    free(p);
}

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* One listener access log entry for a connection that ends here. */
static void log_conn(struct worker *w, struct listener_config *lc, const struct sockaddr_storage *peer,
                     const struct sockaddr_storage *local, const struct transport *tp, uint64_t start_us,
                     uint64_t start_wall_us, const char *reason, uint32_t flags)
{
    if (!lc->n_access_logs)
        return;
    struct stream_info si = {0};
    si.start_us = start_us;
    si.start_wall_us = start_wall_us;
    si.end_us = clock_now_us();
    si.downstream_remote = (const struct sockaddr *)peer;
    si.downstream_local = (const struct sockaddr *)local;
    si.downstream_tp = tp;
    si.downstream_transport_failure_reason = reason;
    si.flags = flags;
    for (size_t i = 0; i < lc->n_access_logs; i++)
        access_log_write(lc->access_logs[i], &si, w->log_buf);
}

/* Ends a pending connection that goes no further: log, count, close. */
static void pending_fail(struct pending *p, const char *reason, uint32_t flags)
{
    if (p->closed)
        return;
    p->closed = true;
    struct worker *w = p->w;
    log_conn(w, p->lc, &p->peer, &p->local, &p->tp, p->start_us, p->start_wall_us, reason, flags);
    timer_stop(w->loop, &p->timer);
    io_stop(w->loop, &p->io);
    transport_close(&p->tp);
    conn_link_del(&p->link);
    w->n_conns--;
    stats_add(p->lc->stats, w->id, LS_DOWNSTREAM_PRE_CX_ACTIVE, -1);
    stats_add(p->lc->stats, w->id, LS_DOWNSTREAM_CX_ACTIVE, -1);
    stats_inc(p->lc->stats, w->id, LS_DOWNSTREAM_CX_DESTROY);
    loop_defer(w->loop, &p->def, free_deferred);
}

/* Gives the connection, with its transport, to the chain's network filter. */
static void hand_off(struct pending *p)
{
    struct worker *w = p->w;
    p->closed = true;
    timer_stop(w->loop, &p->timer);
    io_stop(w->loop, &p->io);
    conn_link_del(&p->link);
    w->n_conns--;
    stats_add(p->lc->stats, w->id, LS_DOWNSTREAM_PRE_CX_ACTIVE, -1);
    struct transport tp = p->tp;
    p->tp = transport_plain(-1);
    if (!tp.server_name && p->hello.sni[0])
        tp.server_name = strdup(p->hello.sni);
    if (__builtin_expect(p->fc->n_netrl != 0, 0) && !netrl_admit(w, p->fc)) {
        transport_close(&tp); /* network local_ratelimit: no token */
        stats_add(p->lc->stats, w->id, LS_DOWNSTREAM_CX_ACTIVE, -1);
        stats_inc(p->lc->stats, w->id, LS_DOWNSTREAM_CX_DESTROY);
    } else if (p->fc->kind == NF_HTTP)
        http_conn_start(w, p->lc, p->fc, &tp, &p->peer, &p->local);
    else
        tcp_proxy_start(w, p->lc, p->fc, &tp, &p->peer, &p->local);
    loop_defer(w->loop, &p->def, free_deferred);
}

static void handshake_step(struct pending *p)
{
    bool want_write;
    enum tls_fail fail = TLS_FAIL_NONE;
    char why[256];
    int r = tls_transport_handshake(&p->tp, &want_write, &fail, why, sizeof why);
    if (r == 1) {
        tls_count(p->lc->ssl_stats, p->w->id, &p->tp, TLS_FAIL_NONE);
        hand_off(p);
        return;
    }
    if (r == 0) {
        io_want_write(p->w->loop, &p->io, want_write);
        return;
    }
    tls_count(p->lc->ssl_stats, p->w->id, &p->tp, fail);
    log_debug("TLS handshake failed on %s: %s", p->lc->addr_str, why);
    pending_fail(p, why, 0);
}

static void start_handshake(struct pending *p)
{
    p->phase = PH_HANDSHAKE;
    int rc = tls_transport_start(&p->tp, p->fc->tls, true, NULL, NULL, NULL);
    if (rc < 0) {
        /* Envoy's reason for a transport socket still waiting for its SDS secret. */
        pending_fail(p, rc == -ENOENT ? "Secret is not supplied by SDS" : "TLS_error:|out of memory:TLS_error_end", 0);
        return;
    }
    transport_attach(&p->tp, p->w->loop, &p->io);
    if (p->fc->handshake_timeout_ms)
        timer_start(p->w->loop, &p->timer, p->fc->handshake_timeout_ms);
    handshake_step(p);
}

/* The inspectors are done (or gave up): choose the chain and go on. */
static void matched(struct pending *p)
{
    timer_stop(p->w->loop, &p->timer);
    struct chain_match_input in = {
        .dst = &p->local, .src = &p->peer,
        .server_name = p->hello.sni[0] ? p->hello.sni : NULL,
        .transport_protocol = p->transport_protocol ? p->transport_protocol : "raw_buffer",
        .application_protocols = p->alpn, .n_application_protocols = p->n_alpn,
    };
    p->fc = listener_match(p->lc, &in);
    if (!p->fc) {
        if (p->hello.sni[0])
            p->tp.server_name = strdup(p->hello.sni);
        stats_inc(p->lc->stats, p->w->id, LS_NO_FILTER_CHAIN_MATCH);
        pending_fail(p, NULL, 1u << RF_NO_FILTER_CONFIG_FOUND);
        return;
    }
    if (p->fc->tls)
        start_handshake(p);
    else
        hand_off(p);
}

/* Peeks at what the client sent. Returns true when the inspectors have decided. */
static bool inspect(struct pending *p)
{
    uint8_t buf[INSPECT_PEEK_MAX];
    ssize_t n = recv(p->tp.fd, buf, sizeof buf, MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        pending_fail(p, NULL, 1u << RF_DOWNSTREAM_CONNECTION_TERMINATION);
        return false;
    }
    if (n < 0)
        return false;
    struct listener_config *lc = p->lc;
    unsigned id = p->w->id;
    if (lc->tls_inspector && !p->transport_protocol) {
        enum inspect_result r = tls_inspect(buf, (size_t)n, sizeof buf, &p->hello);
        if (r == INSPECT_NEED_MORE)
            return false;
        if (r == INSPECT_TOO_LARGE) {
            stats_inc(lc->tls_inspector_stats, id, TI_CLIENT_HELLO_TOO_LARGE);
            pending_fail(p, "tls_inspector: ClientHello too large", 0);
            return false;
        }
        if (r == INSPECT_MATCH) {
            p->transport_protocol = "tls";
            stats_inc(lc->tls_inspector_stats, id, TI_TLS_FOUND);
            stats_inc(lc->tls_inspector_stats, id, p->hello.sni[0] ? TI_SNI_FOUND : TI_SNI_NOT_FOUND);
            stats_inc(lc->tls_inspector_stats, id, p->hello.n_alpn ? TI_ALPN_FOUND : TI_ALPN_NOT_FOUND);
            for (unsigned i = 0; i < p->hello.n_alpn; i++)
                p->alpn[p->n_alpn++] = p->hello.alpn[i];
            return true;
        }
        p->transport_protocol = "raw_buffer";
        stats_inc(lc->tls_inspector_stats, id, TI_TLS_NOT_FOUND);
        memset(&p->hello, 0, sizeof p->hello);
    }
    if (lc->http_inspector && (!p->transport_protocol || strcmp(p->transport_protocol, "tls") != 0)) {
        const char *proto = NULL;
        enum inspect_result r = http_inspect(buf, (size_t)n, sizeof buf, &proto);
        if (r == INSPECT_NEED_MORE)
            return false;
        if (r == INSPECT_MATCH) {
            p->alpn[0] = proto;
            p->n_alpn = 1;
            stats_inc(lc->http_inspector_stats, id, proto[0] == 'h' && proto[1] == '2' ? HI_HTTP2_FOUND
                                                  : strcmp(proto, "http/1.0") == 0 ? HI_HTTP10_FOUND : HI_HTTP11_FOUND);
        } else {
            stats_inc(lc->http_inspector_stats, id, HI_HTTP_NOT_FOUND);
        }
    }
    if (!p->transport_protocol)
        p->transport_protocol = "raw_buffer";
    return true;
}

static void on_io(struct loop *l, struct io *io, uint32_t events)
{
    (void)l;
    struct pending *p = io->data;
    if (p->closed)
        return;
    if (p->phase == PH_INSPECT) {
        if (inspect(p))
            matched(p);
        else if (!p->closed && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            pending_fail(p, NULL, 1u << RF_DOWNSTREAM_CONNECTION_TERMINATION);
        return;
    }
    handshake_step(p);
}

static void on_timer(struct loop *l, struct timer *t)
{
    (void)l;
    struct pending *p = t->data;
    if (p->phase == PH_INSPECT) {
        stats_inc(p->lc->stats, p->w->id, LS_DOWNSTREAM_PRE_CX_TIMEOUT);
        if (p->lc->continue_on_listener_filters_timeout) {
            if (!p->transport_protocol)
                p->transport_protocol = "raw_buffer";
            matched(p);
        } else {
            pending_fail(p, NULL, 0);
        }
        return;
    }
    tls_count(p->lc->ssl_stats, p->w->id, &p->tp, TLS_FAIL_IO);
    p->tp.failed = true;
    pending_fail(p, "TLS_error:|handshake timeout:TLS_error_end", 0);
}

static void drain_pending(struct conn_link *link, bool force)
{
    (void)force;
    struct pending *p = (struct pending *)((char *)link - offsetof(struct pending, link));
    pending_fail(p, NULL, 0); /* nothing started yet: nothing to finish */
}

void pending_start(struct worker *w, struct listener_config *lc, struct filter_chain *fc, int fd,
                   const struct sockaddr_storage *peer, const struct sockaddr_storage *local)
{
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        close(fd);
        stats_add(lc->stats, w->id, LS_DOWNSTREAM_CX_ACTIVE, -1);
        stats_inc(lc->stats, w->id, LS_DOWNSTREAM_CX_DESTROY);
        return;
    }
    p->w = w;
    p->snap = snapshot_ref(w->snap);
    p->lc = lc;
    p->fc = fc;
    p->peer = *peer;
    p->local = *local;
    p->tp = transport_plain(fd);
    p->start_us = clock_now_us();
    p->start_wall_us = wall_us();
    timer_init(&p->timer, on_timer, p);
    p->link.drain = drain_pending;
    p->link.lc = lc;
    conn_link_add(&w->conns, &p->link);
    w->n_conns++;
    stats_inc(lc->stats, w->id, LS_DOWNSTREAM_PRE_CX_ACTIVE);
    if (io_start(w->loop, &p->io, fd, EPOLLIN, on_io, p) < 0) {
        pending_fail(p, NULL, 0);
        return;
    }
    if (fc) {
        start_handshake(p);
        return;
    }
    p->phase = PH_INSPECT;
    if (lc->listener_filters_timeout_ms)
        timer_start(w->loop, &p->timer, lc->listener_filters_timeout_ms);
    if (inspect(p))
        matched(p);
}

void pending_reject_no_chain(struct worker *w, struct listener_config *lc, int fd, const struct sockaddr_storage *peer,
                             const struct sockaddr_storage *local, const char *server_name)
{
    stats_inc(lc->stats, w->id, LS_NO_FILTER_CHAIN_MATCH);
    struct transport tp = transport_plain(fd);
    tp.server_name = (char *)server_name;
    uint64_t now = clock_now_us();
    log_conn(w, lc, peer, local, &tp, now, wall_us(), NULL, 1u << RF_NO_FILTER_CONFIG_FOUND);
    stats_add(lc->stats, w->id, LS_DOWNSTREAM_CX_ACTIVE, -1);
    stats_inc(lc->stats, w->id, LS_DOWNSTREAM_CX_DESTROY);
    close(fd);
}
