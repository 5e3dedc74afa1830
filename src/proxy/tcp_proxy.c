#include "proxy/tcp_proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/sock.h"
#include "net/transport.h"
#include "proxy/access_log.h"
#include "proxy/config.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/stream_info.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

struct tsess {
    struct io io;
    struct transport tp;           /* the downstream socket, plaintext or TLS */
    struct worker *w;
    struct snapshot *snap;
    struct listener_config *lc;
    struct tcp_proxy_config *cfg;
    struct sockaddr_storage peer, local;
    struct conn_link link;
    struct wcluster *wc;
    uint32_t host;
    bool host_counted;
    struct uconn *u;
    struct buf *in;                /* downstream → upstream */
    bool readable, writable, peer_closed, closed;
    bool up_shut, down_shut;       /* write side shut after the other side's EOF */
    uint32_t attempts;
    struct timer idle;
    struct stream_info si;
    char orig_dst[ADDR_STR_MAX];
    struct deferred def;
};

static void tsess_run(struct tsess *t);
static void connect_upstream(struct tsess *t);

static void free_deferred(struct deferred *d)
{
    struct tsess *t = (struct tsess *)((char *)d - offsetof(struct tsess, def));
    snapshot_unref(t->snap);
    free(t);
}

static void tsess_close(struct tsess *t)
{
    if (t->closed)
        return;
    t->closed = true;
    struct worker *w = t->w;
    t->si.end_us = clock_now_us();
    for (size_t i = 0; i < t->cfg->n_access_logs; i++)
        access_log_write(t->cfg->access_logs[i], &t->si, w->log_buf);
    if (t->u)
        upstream_release(t->u, false);
    if (t->host_counted) {
        t->wc->pools[t->host].active_rq--;
        t->wc->active_rq[t->host]--;
    }
    if (t->wc)
        wcluster_put(t->wc);
    timer_stop(w->loop, &t->idle);
    io_stop(w->loop, &t->io);
    transport_close(&t->tp);
    buf_put(&w->bufs, t->in);
    conn_link_del(&t->link);
    w->n_conns--;
    stats_add(t->lc->stats, w->id, LS_DOWNSTREAM_CX_ACTIVE, -1);
    stats_inc(t->lc->stats, w->id, LS_DOWNSTREAM_CX_DESTROY);
    loop_defer(w->loop, &t->def, free_deferred);
}

static void on_upstream(struct uconn *u, enum uconn_event ev, void *owner)
{
    struct tsess *t = owner;
    (void)u;
    if (ev == UE_CONNECT_FAILED || ev == UE_CONNECT_TIMEOUT) {
        t->u = NULL;
        t->si.upstream_transport_failure_reason = u->tls_error;
        if (t->attempts < t->cfg->max_connect_attempts) {
            connect_upstream(t);
            return;
        }
        t->si.flags |= 1u << RF_UPSTREAM_CONNECTION_FAILURE;
        tsess_close(t);
        return;
    }
    tsess_run(t);
}

static int pick_cluster(struct tsess *t)
{
    const struct tcp_proxy_config *c = t->cfg;
    if (c->cluster >= 0 || c->n_weighted == 0)
        return c->cluster;
    uint64_t r = worker_random(t->w) % (c->total_weight ? c->total_weight : 1);
    for (size_t i = 0; i < c->n_weighted; i++) {
        if (r < c->weights[i])
            return c->weighted_clusters[i];
        r -= c->weights[i];
    }
    return c->weighted_clusters[c->n_weighted - 1];
}

static void connect_upstream(struct tsess *t)
{
    t->attempts++;
    if (t->wc->c->type == CLUSTER_ORIGINAL_DST) {
        sockaddr_format(&t->local, t->orig_dst, sizeof t->orig_dst);
        t->si.upstream_host = t->orig_dst;
        if (upstream_connect_addr(t->w, t->wc, &t->local, on_upstream, t, &t->u) < 0) {
            t->u = NULL;
            t->si.flags |= 1u << RF_UPSTREAM_CONNECTION_FAILURE;
            tsess_close(t);
        }
        return;
    }
    if (t->host_counted) {
        t->wc->pools[t->host].active_rq--;
        t->wc->active_rq[t->host]--;
        t->host_counted = false;
    }
    int host = t->wc->hs->n ? lb_pick(t->wc->hs->lb, t->wc->lb, false, 0, t->wc->active_rq, NULL) : -1;
    if (host < 0) {
        t->si.flags |= 1u << RF_NO_HEALTHY_UPSTREAM;
        stats_inc(t->wc->c->stats, t->w->id, CS_UPSTREAM_CX_NONE_HEALTHY);
        tsess_close(t);
        return;
    }
    t->host = (uint32_t)host;
    t->wc->pools[host].active_rq++;
    t->wc->active_rq[host]++;
    t->host_counted = true;
    t->si.upstream_host = t->wc->hs->hosts[host].addr_str;
    int r = upstream_acquire(t->w, t->wc, t->host, on_upstream, t, &t->u);
    if (r < 0 || !t->u) {
        t->u = NULL;
        /* -EBUSY: the cluster's max_connections circuit breaker (UO, as Envoy's tcp_proxy);
         * -ENOSPC: max_connection_pools (UH). */
        t->si.flags |= 1u << (r == -EBUSY    ? RF_UPSTREAM_OVERFLOW
                              : r == -ENOSPC ? RF_NO_HEALTHY_UPSTREAM
                                             : RF_UPSTREAM_CONNECTION_FAILURE);
        tsess_close(t);
    }
}

/* Reads what fits into b from tp. Returns bytes read; sets *eof. */
static size_t read_into(struct transport *tp, struct buf *b, bool *readable, bool *eof)
{
    size_t total = 0;
    if (buf_len(b) == 0)
        b->head = b->tail = 0;
    while (*readable && buf_room(b) > 0) {
        ssize_t n = transport_recv(tp, buf_wpos(b), buf_room(b));
        if (n > 0) {
            b->tail += (size_t)n;
            total += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            *eof = true;
            *readable = false;
        } else if (errno == EAGAIN) {
            *readable = false;
        }
    }
    return total;
}

/* Writes b's bytes to tp (registered as io); when it blocks, asks for EPOLLOUT. Returns bytes
 * written, -1 on error. */
static long write_from(struct loop *l, struct io *io, struct transport *tp, struct buf *b, bool *writable)
{
    long total = 0;
    while (*writable && buf_len(b) > 0) {
        ssize_t n = transport_send(tp, buf_rpos(b), buf_len(b));
        if (n > 0) {
            b->head += (size_t)n;
            total += n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            *writable = false;
            io_want_write(l, io, true);
        } else {
            return -1;
        }
    }
    return total;
}

static void tsess_run(struct tsess *t)
{
    if (t->closed)
        return;
    struct worker *w = t->w;
    if (!t->in && !(t->in = buf_get(&w->bufs))) {
        tsess_close(t);
        return;
    }
    bool moved = true;
    while (moved && !t->closed) {
        moved = false;
        bool down_eof = false;
        if (read_into(&t->tp, t->in, &t->readable, &down_eof))
            moved = true;
        if (down_eof)
            t->peer_closed = true;
        struct uconn *u = t->u;
        if (!u || u->state != UC_OPEN)
            break;
        long n = write_from(w->loop, &u->io, &u->tp, t->in, &u->writable);
        if (n < 0) {
            t->si.flags |= 1u << RF_UPSTREAM_CONNECTION_TERMINATION;
            tsess_close(t);
            return;
        }
        if (n > 0) {
            t->si.bytes_received += (uint64_t)n;
            stats_add(t->cfg->stats, w->id, TS_DOWNSTREAM_CX_RX_BYTES_TOTAL, n);
            stats_add(u->wc->c->stats, w->id, CS_UPSTREAM_CX_TX_BYTES_TOTAL, n);
            moved = true;
        }
        if (upstream_read(u) > 0)
            moved = true;
        if (u->in) {
            n = write_from(w->loop, &t->io, &t->tp, u->in, &t->writable);
            if (n < 0) {
                t->si.flags |= 1u << RF_DOWNSTREAM_CONNECTION_TERMINATION;
                tsess_close(t);
                return;
            }
            if (n > 0) {
                t->si.bytes_sent += (uint64_t)n;
                stats_add(t->cfg->stats, w->id, TS_DOWNSTREAM_CX_TX_BYTES_TOTAL, n);
                moved = true;
            }
            if (buf_len(u->in) == 0)
                u->in->head = u->in->tail = 0;
        }
        /* Half-close: pass each side's EOF on once its bytes are through. */
        if (t->peer_closed && buf_len(t->in) == 0 && !t->up_shut) {
            upstream_shutdown(u);
            t->up_shut = true;
        }
        if (u->peer_closed && (!u->in || buf_len(u->in) == 0) && !t->down_shut) {
            transport_shutdown(&t->tp);
            t->down_shut = true;
        }
        if (t->up_shut && t->down_shut) {
            tsess_close(t);
            return;
        }
    }
    if (!t->closed && t->cfg->idle_timeout_ms)
        timer_start(w->loop, &t->idle, t->cfg->idle_timeout_ms);
}

static void on_io(struct loop *l, struct io *io, uint32_t events)
{
    struct tsess *t = io->data;
    events = transport_events(&t->tp, events);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        t->readable = true;
    if (events & EPOLLOUT) {
        t->writable = true;
        io_want_write(l, io, false);
    }
    tsess_run(t);
}

static void on_idle(struct loop *l, struct timer *tm)
{
    (void)l;
    struct tsess *t = tm->data;
    stats_inc(t->cfg->stats, t->w->id, TS_IDLE_TIMEOUT);
    tsess_close(t);
}

/* TCP sessions run to their natural end while draining; the drain time bounds them. */
static void drain_sess(struct conn_link *link, bool force)
{
    struct tsess *t = (struct tsess *)((char *)link - offsetof(struct tsess, link));
    if (force)
        tsess_close(t);
}

void tcp_proxy_start(struct worker *w, struct listener_config *lc, struct filter_chain *fc, struct transport *tp,
                     const struct sockaddr_storage *peer, const struct sockaddr_storage *local)
{
    struct tsess *t = calloc(1, sizeof *t);
    if (!t) {
        transport_close(tp);
        return;
    }
    t->tp = *tp;
    t->w = w;
    t->snap = snapshot_ref(w->snap);
    t->lc = lc;
    t->cfg = fc->tcp;
    t->peer = *peer;
    t->local = *local;
    t->readable = t->writable = true;
    t->si.start_us = clock_now_us();
    t->si.grpc_status = -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->si.start_wall_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    t->si.downstream_remote = (const struct sockaddr *)&t->peer;
    t->si.downstream_local = (const struct sockaddr *)&t->local;
    t->si.downstream_tp = &t->tp;
    timer_init(&t->idle, on_idle, t);
    t->link.drain = drain_sess;
    t->link.lc = lc;
    conn_link_add(&w->conns, &t->link);
    w->n_conns++;
    stats_inc(t->cfg->stats, w->id, TS_DOWNSTREAM_CX_TOTAL);
    if (io_start(w->loop, &t->io, t->tp.fd, EPOLLIN, on_io, t) < 0) {
        tsess_close(t);
        return;
    }
    transport_attach(&t->tp, w->loop, &t->io);
    int ci = pick_cluster(t);
    if (ci < 0) {
        stats_inc(t->cfg->stats, w->id, TS_DOWNSTREAM_CX_NO_ROUTE);
        t->si.flags |= 1u << RF_NO_CLUSTER_FOUND;
        tsess_close(t);
        return;
    }
    t->wc = worker_cluster_in(w, t->snap, ci);
    wcluster_hold(t->wc);
    t->si.upstream_cluster = t->wc->c->name;
    connect_upstream(t);
}
