#include "proxy/upstream.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sock.h"
#include "net/tls.h"
#include "proxy/circuit_breaker.h"
#include "proxy/config.h"
#include "proxy/host_health.h"
#include "proxy/upstream_h2.h"
#include "proxy/worker.h"

static void uconn_stat(struct uconn *u, size_t field, int64_t delta)
{
    stats_add(u->wc->c->stats, u->w->id, field, delta);
}

/* The health record of u's host (per-host cx_active), or NULL. */
static struct host_health *uconn_hh(const struct uconn *u)
{
    return u->host < u->wc->hs->n ? u->wc->hs->hosts[u->host].hh : NULL;
}

/* The keep-alive pool u belongs to: its host's, its original destination's, or NULL. */
static struct upool *uconn_pool(const struct uconn *u)
{
    if (u->host < u->wc->hs->n)
        return &u->wc->pools[u->host];
    if (u->host >= UPSTREAM_ODST_BASE && u->host != UPSTREAM_NO_POOL && u->host - UPSTREAM_ODST_BASE < u->wc->n_odst)
        return &u->wc->odst[u->host - UPSTREAM_ODST_BASE].pool;
    return NULL;
}

/* Gives back what u holds on the circuit breaker (connections count at DEFAULT priority). */
static void uconn_cb_release(struct uconn *u)
{
    struct circuit_breakers *cb = u->wc->c->cb;
    if (u->cb_pending)
        cb_release(cb, CB_DEFAULT, CB_PENDING);
    if (u->cb_cx) {
        cb_release(cb, CB_DEFAULT, CB_CX);
        struct upool *p = uconn_pool(u);
        if (!p || --p->nconn == 0)
            cb_release(cb, CB_DEFAULT, CB_POOLS); /* the pool's last connection (unpooled: its own) */
    }
    u->cb_pending = u->cb_cx = false;
}

/* Circuit breaker for a new connection: max_connection_pools (a pool is in use while it has
 * a connection; an unpooled ORIGINAL_DST connection counts as a pool of its own), then
 * max_connections (a pool without any connection may still open one, as in Envoy) and, when
 * a request will wait for it, max_pending_requests. Returns 0, -ENOSPC when no pool may be
 * added (Envoy answers "no healthy upstream"), -EBUSY when the connection or pending request
 * overflows (UO); the overflow stat is counted. */
static int uconn_cb_admit(struct worker *w, struct wcluster *wc, uint32_t host, bool pending, struct uconn *u)
{
    struct circuit_breakers *cb = wc->c->cb;
    u->wc = wc;
    u->host = host;
    struct upool *p = uconn_pool(u);
    bool new_pool = !p || p->nconn == 0;
    if (new_pool && !cb_acquire(cb, CB_DEFAULT, CB_POOLS, w->id))
        return -ENOSPC;
    if (!cb_acquire(cb, CB_DEFAULT, CB_CX, w->id)) {
        if (!p || p->nconn > 0) {
            if (new_pool)
                cb_release(cb, CB_DEFAULT, CB_POOLS);
            return -EBUSY;
        }
        cb_force(cb, CB_DEFAULT, CB_CX);
    }
    u->cb_cx = true;
    if (p)
        p->nconn++;
    if (pending) {
        if (!cb_acquire(cb, CB_DEFAULT, CB_PENDING, w->id)) {
            uconn_cb_release(u);
            return -EBUSY;
        }
        u->cb_pending = true;
    }
    return 0;
}

static void free_deferred(struct deferred *d)
{
    struct uconn *u = (struct uconn *)((char *)d - offsetof(struct uconn, def));
    free(u);
}

/* Closes the socket and schedules the memory to be freed after the current event batch. */
static void uconn_close(struct uconn *u)
{
    if (u->state == UC_CLOSED)
        return;
    struct loop *l = u->w->loop;
    timer_stop(l, &u->timer);
    io_stop(l, &u->io);
    transport_close(&u->tp);
    buf_put(&u->w->bufs, u->in);
    u->in = NULL;
    if (u->state != UC_CONNECTING) {
        uconn_stat(u, CS_UPSTREAM_CX_ACTIVE, -1);
        uconn_stat(u, CS_UPSTREAM_CX_DESTROY, 1);
        struct host_health *hh = uconn_hh(u);
        if (hh)
            atomic_fetch_sub_explicit(&hh->cx_active, 1, memory_order_relaxed);
    }
    uconn_cb_release(u);
    u->state = UC_CLOSED;
    wcluster_put(u->wc);
    loop_defer(l, &u->def, free_deferred);
}

static void tls_step(struct uconn *u);
static void start_tls(struct uconn *u);
static void connected(struct uconn *u);

static void unlink_idle(struct uconn *u)
{
    struct upool *p = uconn_pool(u);
    for (struct uconn **pp = &p->idle; *pp; pp = &(*pp)->next_idle) {
        if (*pp == u) {
            *pp = u->next_idle;
            p->nidle--;
            break;
        }
    }
    u->next_idle = NULL;
}

static void on_timer(struct loop *l, struct timer *t)
{
    (void)l;
    struct uconn *u = t->data;
    if (u->state == UC_CONNECTING) {
        if (u->handshaking) {
            struct cluster *c = u->wc->c;
            tls_count(c->ssl_stats, u->w->id, &u->tp, TLS_FAIL_IO);
            u->tp.failed = true;
            char *dst = u->host >= u->wc->hs->n ? u->wc->odst_tls_error : u->wc->pools[u->host].tls_error;
            snprintf(dst, sizeof u->wc->odst_tls_error, "TLS_error:|handshake timeout:TLS_error_end");
            u->tls_error = dst;
        }
        uconn_stat(u, CS_UPSTREAM_CX_CONNECT_TIMEOUT, 1);
        uconn_stat(u, CS_UPSTREAM_CX_CONNECT_FAIL, 1);
        u->error = ETIMEDOUT;
        uconn_close(u);
        u->cb(u, UE_CONNECT_TIMEOUT, u->owner);
    } else if (u->state == UC_IDLE) {
        if (upstream_duration_left(u->wc->c, u->opened_ms, loop_now_ms(u->w->loop)) == 0)
            uconn_stat(u, CS_UPSTREAM_CX_MAX_DURATION_REACHED, 1);
        unlink_idle(u);
        uconn_close(u);
    }
}

uint64_t upstream_duration_left(const struct cluster *c, uint64_t opened_ms, uint64_t now_ms)
{
    if (!c->max_connection_duration_ms)
        return UINT64_MAX;
    uint64_t age = now_ms > opened_ms ? now_ms - opened_ms : 0;
    return age >= c->max_connection_duration_ms ? 0 : c->max_connection_duration_ms - age;
}

static void on_io(struct loop *l, struct io *io, uint32_t events)
{
    struct uconn *u = io->data;
    if (u->state == UC_IDLE) {
        /* An idle connection has nothing to say: data or EOF means the server is done with it.
         * A bare EPOLLOUT edge (the ACK of the last request freed send space) means nothing. */
        if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            return;
        if (transport_is_tls(&u->tp) && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
            /* TLS 1.3 servers send session tickets after the handshake: read them (they go to
             * the host's session slot) and stay idle unless real data or an EOF came. */
            char probe[1];
            ssize_t n = transport_recv(&u->tp, probe, sizeof probe);
            if (n < 0 && errno == EAGAIN)
                return;
        }
        uconn_stat(u, CS_UPSTREAM_CX_DESTROY_REMOTE, 1);
        unlink_idle(u);
        uconn_close(u);
        return;
    }
    if (u->state == UC_CONNECTING && u->handshaking) {
        tls_step(u);
        return;
    }
    if (u->state == UC_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            u->error = err ? err : ECONNREFUSED;
            uconn_stat(u, CS_UPSTREAM_CX_CONNECT_FAIL, 1);
            uconn_close(u);
            u->cb(u, UE_CONNECT_FAILED, u->owner);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        io_want_write(u->w->loop, &u->io, false); /* connected: EPOLLOUT only when a write blocks */
        if (u->wc->c->tls) {
            start_tls(u);
            return;
        }
        connected(u);
        return;
    }
    events = transport_events(&u->tp, events);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->hup = true; /* the EOF is queued behind the data: read until we see it */
    if (events & EPOLLOUT) {
        u->writable = true;
        io_want_write(l, io, false);
    }
    u->cb(u, UE_IO, u->owner);
}

static void connected(struct uconn *u)
{
    timer_stop(u->w->loop, &u->timer);
    u->state = UC_OPEN;
    u->handshaking = false;
    u->writable = true;
    if (transport_is_tls(&u->tp))
        u->readable = true; /* OpenSSL may hold bytes that came with the end of the handshake */
    uconn_stat(u, CS_UPSTREAM_CX_ACTIVE, 1);
    struct host_health *hh = uconn_hh(u);
    if (hh)
        atomic_fetch_add_explicit(&hh->cx_active, 1, memory_order_relaxed);
    if (u->cb_pending) {
        cb_release(u->wc->c->cb, CB_DEFAULT, CB_PENDING);
        u->cb_pending = false;
    }
    u->cb(u, UE_CONNECTED, u->owner);
}

/* A TLS handshake step on a connecting upstream connection (the connect timeout covers it). */
static void tls_step(struct uconn *u)
{
    bool want_write;
    enum tls_fail fail = TLS_FAIL_NONE;
    char *why = u->host >= u->wc->hs->n ? u->wc->odst_tls_error : u->wc->pools[u->host].tls_error;
    int r = tls_transport_handshake(&u->tp, &want_write, &fail, why, sizeof u->wc->odst_tls_error);
    struct cluster *c = u->wc->c;
    if (r == 1) {
        tls_count(c->ssl_stats, u->w->id, &u->tp, TLS_FAIL_NONE);
        io_want_write(u->w->loop, &u->io, false);
        connected(u);
        return;
    }
    if (r == 0) {
        io_want_write(u->w->loop, &u->io, want_write);
        return;
    }
    tls_count(c->ssl_stats, u->w->id, &u->tp, fail);
    log_debug("TLS handshake with cluster %s failed: %s", c->name, why);
    u->tls_error = why;
    u->error = ECONNREFUSED;
    uconn_stat(u, CS_UPSTREAM_CX_CONNECT_FAIL, 1);
    uconn_close(u);
    u->cb(u, UE_CONNECT_FAILED, u->owner);
}

/* TCP is up: start the cluster's TLS (SNI, ALPN and a saved session for this host). */
static void start_tls(struct uconn *u)
{
    struct cluster *c = u->wc->c;
    bool pooled = u->host < u->wc->hs->n; /* one of the cluster's hosts (not ORIGINAL_DST) */
    const char *sni = tls_provider_sni(c->tls);
    if (pooled && tls_provider_auto_host_sni(c->tls) && u->wc->hs->hosts[u->host].hostname)
        sni = u->wc->hs->hosts[u->host].hostname;
    struct upool *p = pooled ? &u->wc->pools[u->host] : NULL;
    static const char alpn_wire[][16] = {[UA_NONE] = "", [UA_H2] = "\x02h2", [UA_AUTO] = "\x02h2\x08http/1.1",
                                         [UA_H1] = "\x08http/1.1"};
    static const size_t alpn_len[] = {[UA_NONE] = 0, [UA_H2] = 3, [UA_AUTO] = 12, [UA_H1] = 9};
    if (tls_transport_start(&u->tp, c->tls, false, sni, p ? p->tls_session : NULL, p ? &p->tls_session : NULL) < 0 ||
        tls_transport_alpn_fallback(&u->tp, c->tls, alpn_wire[u->alpn], alpn_len[u->alpn]) < 0) {
        u->error = ENOMEM;
        uconn_stat(u, CS_UPSTREAM_CX_CONNECT_FAIL, 1);
        uconn_close(u);
        u->cb(u, UE_CONNECT_FAILED, u->owner);
        return;
    }
    transport_attach(&u->tp, u->w->loop, &u->io);
    u->handshaking = true;
    tls_step(u);
}

/* Starts a non-blocking connect to addr for a new connection object. */
static int connect_new(struct worker *w, struct wcluster *wc, uint32_t host, const struct sockaddr_storage *addr,
                       enum upstream_alpn alpn, size_t proto_stat, uconn_cb cb, void *owner, struct uconn **out)
{
    socklen_t len = addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const struct cluster *c = wc->c;
    if (c->bind_len && c->bind_addr.ss_family == addr->ss_family) {
        if (c->bind_freebind)
            setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof one);
        if (bind(fd, (const struct sockaddr *)&c->bind_addr, c->bind_len) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    struct uconn *u = calloc(1, sizeof *u);
    if (!u) {
        close(fd);
        return -ENOMEM;
    }
    int adm = uconn_cb_admit(w, wc, host, true, u);
    if (adm < 0) {
        close(fd);
        free(u);
        return adm;
    }
    u->w = w;
    u->wc = wc;
    u->opened_ms = loop_now_ms(w->loop);
    wcluster_hold(wc);
    u->host = host;
    u->owner = owner;
    u->cb = cb;
    u->state = UC_CONNECTING;
    u->alpn = (uint8_t)alpn;
    timer_init(&u->timer, on_timer, u);
    stats_inc(wc->c->stats, w->id, CS_UPSTREAM_CX_TOTAL);
    if (proto_stat)
        stats_inc(wc->c->stats, w->id, proto_stat);
    if (connect(fd, (const struct sockaddr *)addr, len) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        uconn_cb_release(u);
        wcluster_put(wc);
        free(u);
        stats_inc(wc->c->stats, w->id, CS_UPSTREAM_CX_CONNECT_FAIL);
        return -e;
    }
    u->tp = transport_plain(fd);
    io_start(w->loop, &u->io, fd, EPOLLIN | EPOLLOUT, on_io, u);
    transport_attach(&u->tp, w->loop, &u->io);
    timer_start(w->loop, &u->timer, wc->c->connect_timeout_ms);
    *out = u;
    return 0;
}

/* Takes the most recent idle connection of p for owner, if there is one. */
static bool take_idle(struct worker *w, struct upool *p, uconn_cb cb, void *owner, struct uconn **out)
{
    struct uconn *u = p->idle;
    if (!u)
        return false;
    p->idle = u->next_idle;
    p->nidle--;
    u->next_idle = NULL;
    timer_stop(w->loop, &u->timer);
    u->state = UC_OPEN;
    u->owner = owner;
    u->cb = cb;
    /* Plaintext: bytes or an EOF that came while idle raised an edge the idle handler acted on
     * (or will, as this connection's event later in the batch), so a read now would only say
     * EAGAIN. TLS may hold decrypted bytes behind a session ticket. */
    u->readable = transport_is_tls(&u->tp);
    u->writable = true;
    *out = u;
    return true;
}

int upstream_acquire(struct worker *w, struct wcluster *wc, uint32_t host, uconn_cb cb, void *owner,
                     struct uconn **out)
{
    return upstream_acquire_alpn(w, wc, host, UA_NONE, cb, owner, out);
}

int upstream_acquire_alpn(struct worker *w, struct wcluster *wc, uint32_t host, enum upstream_alpn alpn, uconn_cb cb,
                          void *owner, struct uconn **out)
{
    if (take_idle(w, &wc->pools[host], cb, owner, out))
        return 0;
    return connect_new(w, wc, host, &wc->hs->hosts[host].addr, alpn, CS_UPSTREAM_CX_HTTP1_TOTAL, cb, owner, out);
}

int upstream_connect_alpn(struct worker *w, struct wcluster *wc, uint32_t host, enum upstream_alpn alpn, bool h2_stat,
                          uconn_cb cb, void *owner, struct uconn **out)
{
    return connect_new(w, wc, host, &wc->hs->hosts[host].addr, alpn, h2_stat ? CS_UPSTREAM_CX_HTTP2_TOTAL : 0, cb,
                       owner, out);
}

bool upstream_alpn_is_h2(const struct uconn *u)
{
    size_t n = 0;
    const char *a = transport_alpn(&u->tp, &n);
    return a && n == 2 && memcmp(a, "h2", 2) == 0;
}

void upstream_close(struct uconn *u) { uconn_close(u); }

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

/* The slot of wc's ORIGINAL_DST pools for addr: its own, a new one, or one without any
 * connection taken over; UPSTREAM_NO_POOL when every slot is busy. */
static uint32_t odst_slot(struct wcluster *wc, const struct sockaddr_storage *addr)
{
    if (addr->ss_family != AF_INET && addr->ss_family != AF_INET6)
        return UPSTREAM_NO_POOL;
    if (!wc->odst && !(wc->odst = calloc(WCLUSTER_ODST_POOLS, sizeof *wc->odst)))
        return UPSTREAM_NO_POOL;
    uint32_t free_slot = UPSTREAM_NO_POOL;
    for (uint32_t i = 0; i < wc->n_odst; i++) {
        if (same_addr(&wc->odst[i].addr, addr))
            return UPSTREAM_ODST_BASE + i;
        if (free_slot == UPSTREAM_NO_POOL && wc->odst[i].pool.nconn == 0)
            free_slot = i;
    }
    if (free_slot == UPSTREAM_NO_POOL) {
        if (wc->n_odst == WCLUSTER_ODST_POOLS)
            return UPSTREAM_NO_POOL;
        free_slot = wc->n_odst++;
    }
    wc->odst[free_slot] = (struct odst_pool){.addr = *addr};
    return UPSTREAM_ODST_BASE + free_slot;
}

int upstream_connect_addr(struct worker *w, struct wcluster *wc, const struct sockaddr_storage *addr,
                          uconn_cb cb, void *owner, struct uconn **out)
{
    uint32_t slot = wc->retired ? UPSTREAM_NO_POOL : odst_slot(wc, addr);
    if (slot != UPSTREAM_NO_POOL && take_idle(w, &wc->odst[slot - UPSTREAM_ODST_BASE].pool, cb, owner, out))
        return 0;
    return connect_new(w, wc, slot, addr, UA_NONE, CS_UPSTREAM_CX_HTTP1_TOTAL, cb, owner, out);
}

void upstream_release(struct uconn *u, bool reusable)
{
    struct cluster *c = u->wc->c;
    u->requests++;
    if (reusable && c->max_requests_per_connection && u->requests >= c->max_requests_per_connection) {
        uconn_stat(u, CS_UPSTREAM_CX_MAX_REQUESTS, 1);
        reusable = false;
    }
    uint64_t left = upstream_duration_left(c, u->opened_ms, loop_now_ms(u->w->loop));
    if (reusable && left == 0) {
        uconn_stat(u, CS_UPSTREAM_CX_MAX_DURATION_REACHED, 1);
        reusable = false;
    }
    if (u->in && buf_len(u->in) > 0)
        reusable = false; /* the server sent more than one response: do not trust it */
    if (!reusable || u->state != UC_OPEN || u->peer_closed || u->w->drain_started || u->wc->retired ||
        !uconn_pool(u)) {
        uconn_stat(u, CS_UPSTREAM_CX_DESTROY_LOCAL, 1);
        uconn_close(u);
        return;
    }
    buf_put(&u->w->bufs, u->in);
    u->in = NULL;
    u->owner = NULL;
    u->state = UC_IDLE;
    struct upool *p = uconn_pool(u);
    u->next_idle = p->idle;
    p->idle = u;
    p->nidle++;
    timer_start(u->w->loop, &u->timer, left < c->idle_timeout_ms ? left : c->idle_timeout_ms);
}

long upstream_read(struct uconn *u)
{
    if (!u->in && !(u->in = buf_get(&u->w->bufs)))
        return -ENOMEM;
    long total = 0;
    while (u->readable && buf_room(u->in) > 0) {
        size_t room = buf_room(u->in);
        ssize_t n = transport_recv(&u->tp, buf_wpos(u->in), room);
        if (n > 0) {
            u->in->tail += (size_t)n;
            total += n;
            if ((size_t)n < room && !u->hup)
                u->readable = false; /* drained: edge-triggered epoll reports what comes next */
            continue;
        }
        if (n == 0) {
            u->peer_closed = true;
            u->readable = false;
            break;
        }
        if (errno == EAGAIN)
            u->readable = false;
        else if (errno != EINTR)
            return -errno;
    }
    if (total)
        uconn_stat(u, CS_UPSTREAM_CX_RX_BYTES_TOTAL, total);
    return total;
}

static void close_idle_of(struct upool *p)
{
    while (p->idle) {
        struct uconn *u = p->idle;
        p->idle = u->next_idle;
        p->nidle--;
        uconn_close(u);
    }
}

void upstream_close_idle(struct wcluster *wc, size_t npools)
{
    for (uint32_t i = 0; i < wc->n_odst; i++)
        close_idle_of(&wc->odst[i].pool);
    for (size_t i = 0; i < npools; i++)
        close_idle_of(&wc->pools[i]);
    uh2_close_idle(wc);
}
