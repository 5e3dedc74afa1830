#include "proxy/worker.h"
#include "proxy/mirror.h"
#include "proxy/h2_mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/log.h"
#include "net/tls.h"
#include "proxy/access_log.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/route.h"
#include "proxy/upstream.h"

void conn_link_add(struct conn_link *head, struct conn_link *l)
{
    l->next = head->next;
    l->prev = head;
    head->next->prev = l;
    head->next = l;
}

void conn_link_del(struct conn_link *l)
{
    if (!l->next)
        return;
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->next = l->prev = NULL;
}

uint64_t worker_random(struct worker *w)
{
    /* xorshift128+: fast and good enough for load balancing and request ids. */
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return w->rng[1] + s0;
}

static void wcluster_free(struct wcluster *wc)
{
    for (size_t i = 0; wc->pools && i < wc->hs->n; i++)
        tls_session_free(wc->pools[i].tls_session);
    lb_state_free(wc->lb);
    free(wc->odst);
    free(wc->pools);
    free(wc->active_rq);
    host_set_release(wc->hs);
    free(wc);
}

void wcluster_put(struct wcluster *wc)
{
    if (--wc->users == 0 && wc->retired)
        wcluster_free(wc);
}

/* Makes wc stop taking new work: idle connections close now, the rest when their users finish. */
static void wcluster_retire(struct wcluster *wc)
{
    if (!wc)
        return;
    wc->retired = true;
    wc->users++; /* closing idle connections puts their holds back: keep wc alive meanwhile */
    upstream_close_idle(wc, wc->hs->n);
    wcluster_put(wc);
}

static struct wcluster *wcluster_new(struct worker *w, struct cluster *c)
{
    struct wcluster *wc = calloc(1, sizeof *wc);
    if (!wc)
        abort(); /* configuration-time allocation */
    wc->c = c;
    wc->w = w;
    wc->hs = cluster_hosts_acquire(c);
    size_t n = wc->hs->n ? wc->hs->n : 1;
    wc->pools = calloc(n, sizeof *wc->pools);
    wc->active_rq = calloc(n, sizeof *wc->active_rq);
    wc->lb = wc->hs->lb ? lb_state_new(wc->hs->lb, worker_random(w)) : NULL;
    if (!wc->pools || !wc->active_rq || (wc->hs->lb && !wc->lb))
        abort();
    return wc;
}

struct wcluster *worker_cluster(struct worker *w, int i)
{
    struct wcluster *wc = w->clusters[i];
    struct cluster *c = w->snap->clusters[i];
    if (wc && wc->hs == atomic_load_explicit(&c->hosts, memory_order_acquire))
        return wc;
    wcluster_retire(wc);
    w->clusters[i] = wcluster_new(w, c);
    return w->clusters[i];
}

struct wcluster *worker_cluster_in(struct worker *w, const struct snapshot *snap, int i)
{
    if (__builtin_expect(!snap || snap == w->snap, 1))
        return worker_cluster(w, i);
    for (struct old_snap *o = w->old; o; o = o->next) {
        if (o->snap != snap)
            continue;
        if (o->map[i] >= 0)
            return worker_cluster(w, o->map[i]);
        /* Gone from the current snapshot: this snapshot's own cluster serves its connections. */
        struct wcluster *wc = o->clusters[i];
        struct cluster *c = snap->clusters[i];
        if (wc && wc->hs == atomic_load_explicit(&c->hosts, memory_order_acquire))
            return wc;
        wcluster_retire(wc);
        o->clusters[i] = wcluster_new(w, c);
        return o->clusters[i];
    }
    return worker_cluster(w, i); /* not reached: every snapshot a connection holds is listed */
}

static void on_accept(struct loop *l, struct io *io, uint32_t events)
{
    (void)l, (void)events;
    struct wlistener *wl = io->data;
    listener_accept_all(wl->w, wl);
}

static void drain_connections(struct worker *w, bool force)
{
    for (struct conn_link *c = w->conns.next, *next; c != &w->conns; c = next) {
        next = c->next;
        c->drain(c, force);
    }
}

static void on_drain_tick(struct loop *l, struct timer *t)
{
    struct worker *w = t->data;
    if (w->n_conns == 0)
        loop_stop(l);
    else
        timer_start(l, t, 20);
}

static bool same_addr(const struct listener_config *a, const struct listener_config *b)
{
    return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0 && a->bind_to_port == b->bind_to_port;
}

static void old_snap_free(struct worker *w, struct old_snap *o)
{
    for (size_t i = 0; i < o->snap->n_clusters; i++)
        wcluster_retire(o->clusters[i]);
    free(o->clusters);
    free(o->map);
    free(o->listeners);
    (void)w;
    snapshot_unref(o->snap);
    free(o);
}

/* Once a second: forget old snapshots no connection uses any more (the worker holds the last
 * reference), oldest first, and only while every older one is gone too: a stream of an older
 * snapshot may hold the state of a newer snapshot's cluster (worker_cluster_in maps it there),
 * which must outlive that stream. */
static void on_reap_tick(struct loop *l, struct timer *t)
{
    struct worker *w = t->data;
    for (;;) {
        struct old_snap **pp = &w->old;
        if (!*pp)
            break;
        while ((*pp)->next)
            pp = &(*pp)->next;
        struct old_snap *o = *pp; /* the oldest */
        if (atomic_load(&o->snap->refs) != 1)
            break;
        *pp = NULL;
        old_snap_free(w, o);
    }
    if (w->old)
        timer_start(l, t, 1000);
}

/* Runs on the worker's thread: the switch to a new snapshot (see worker_update). */
static void apply_snapshot(struct worker *w, struct snapshot *s)
{
    struct snapshot *prev = w->snap;
    struct wlistener *nl = calloc(s->n_listeners ? s->n_listeners : 1, sizeof *nl);
    struct wcluster **nc = calloc(s->n_clusters ? s->n_clusters : 1, sizeof *nc);
    struct old_snap *o = calloc(1, sizeof *o);
    if (!nl || !nc || !o)
        abort(); /* configuration-time allocation */
    o->map = malloc((prev->n_clusters ? prev->n_clusters : 1) * sizeof *o->map);
    o->clusters = calloc(prev->n_clusters ? prev->n_clusters : 1, sizeof *o->clusters);
    if (!o->map || !o->clusters)
        abort();
    for (size_t i = 0; i < s->n_listeners; i++) {
        struct listener_config *lc = s->listeners[i];
        struct wlistener *wl = &nl[i];
        wl->w = w;
        wl->cfg = lc;
        wl->io.fd = -1;
        if (!lc->bind_to_port || w->drain_started)
            continue;
        for (size_t j = 0; j < w->n_listeners; j++) {
            struct wlistener *ow = &w->listeners[j];
            if (ow->io.fd >= 0 && strcmp(ow->cfg->name, lc->name) == 0 && same_addr(ow->cfg, lc)) {
                int fd = ow->io.fd; /* the same socket: connections waiting in its backlog stay */
                io_stop(w->loop, &ow->io);
                ow->io.fd = -1;
                io_start(w->loop, &wl->io, fd, EPOLLIN, on_accept, wl);
                break;
            }
        }
        if (wl->io.fd >= 0)
            continue;
        int fd = listener_open(&lc->addr, lc->addrlen, true);
        if (fd < 0) {
            if (w->id == 0)
                log_error("listener '%s': cannot listen on %s: %s", lc->name, lc->addr_str, strerror(-fd));
            continue;
        }
        io_start(w->loop, &wl->io, fd, EPOLLIN, on_accept, wl);
    }
    /* Sockets of removed listeners (or of a listener that moved) stop accepting now. */
    for (size_t j = 0; j < w->n_listeners; j++) {
        if (w->listeners[j].io.fd >= 0) {
            io_stop(w->loop, &w->listeners[j].io);
            close(w->listeners[j].io.fd);
            w->listeners[j].io.fd = -1;
        }
    }
    /* Connections of listeners removed or changed drain; the others go on as they are. */
    for (struct conn_link *c = w->conns.next, *next; c != &w->conns; c = next) {
        next = c->next;
        if (!c->lc)
            continue;
        bool keep = false;
        for (size_t i = 0; i < s->n_listeners && !keep; i++)
            keep = strcmp(s->listeners[i]->name, c->lc->name) == 0 && s->listeners[i]->config_hash == c->lc->config_hash &&
                   same_addr(s->listeners[i], c->lc);
        if (!keep)
            c->drain(c, false);
    }
    for (size_t i = 0; i < prev->n_clusters; i++) {
        o->map[i] = snapshot_cluster_index(s, prev->clusters[i]->name);
        wcluster_retire(w->clusters[i]); /* pools of the new snapshot start fresh */
    }
    /* Older snapshots map onto the new one through the previous one. */
    for (struct old_snap *q = w->old; q; q = q->next)
        for (size_t i = 0; i < q->snap->n_clusters; i++)
            if (q->map[i] >= 0)
                q->map[i] = o->map[q->map[i]];
    o->snap = prev;
    o->listeners = w->listeners;
    o->next = w->old;
    w->old = o;
    free(w->clusters);
    w->clusters = nc;
    w->listeners = nl;
    w->n_listeners = s->n_listeners;
    w->snap = s;
    if (!timer_active(&w->reap_tick))
        timer_start(w->loop, &w->reap_tick, 1000);
}

bool worker_rebind(struct worker *w, struct snapshot **snap, struct listener_config **lc, struct hcm_config **hcm,
                   struct conn_link *link)
{
    struct snapshot *ns = w->snap;
    const struct listener_config *ol = *lc;
    for (size_t i = 0; i < ns->n_listeners; i++) {
        struct listener_config *nl = ns->listeners[i];
        if (strcmp(nl->name, ol->name) != 0)
            continue;
        if (nl->config_hash != ol->config_hash || !same_addr(nl, ol) || nl->n_chains != ol->n_chains)
            return false;
        /* The same Listener resource: the filter chain at the same place is the same chain. */
        struct hcm_config *nh = NULL;
        for (size_t j = 0; j <= ol->n_chains && !nh; j++) {
            struct filter_chain *of = j < ol->n_chains ? ol->chains[j] : ol->default_chain;
            struct filter_chain *nf = j < nl->n_chains ? nl->chains[j] : nl->default_chain;
            if (of && of->hcm == *hcm)
                nh = nf ? nf->hcm : NULL;
        }
        if (!nh)
            return false;
        struct snapshot *old = *snap;
        *snap = snapshot_ref(ns);
        *lc = nl;
        *hcm = nh;
        if (link)
            link->lc = nl;
        snapshot_unref(old);
        return true;
    }
    return false;
}

void worker_update(struct worker *w, struct snapshot *s)
{
    struct snapshot *old = atomic_exchange(&w->next_snap, s);
    if (old)
        snapshot_unref(old); /* never applied: a newer one came first */
    loop_wake(w->loop);
}

/* Runs on the worker's thread after worker_drain(), worker_stop() or worker_update(). */
static void on_wake(struct loop *l, void *arg)
{
    struct worker *w = arg;
    struct snapshot *ns = atomic_exchange(&w->next_snap, NULL);
    if (ns)
        apply_snapshot(w, ns);
    if (atomic_load(&w->draining) && !w->drain_started) {
        w->drain_started = true;
        for (size_t i = 0; i < w->n_listeners; i++) {
            if (w->listeners[i].io.fd >= 0) {
                io_stop(l, &w->listeners[i].io);
                close(w->listeners[i].io.fd);
                w->listeners[i].io.fd = -1;
            }
        }
        drain_connections(w, false);
        for (size_t i = 0; i < w->snap->n_clusters; i++)
            if (w->clusters[i])
                upstream_close_idle(w->clusters[i], w->clusters[i]->hs->n);
        timer_start(l, &w->drain_tick, 0);
    }
    if (atomic_load(&w->stop_now)) {
        drain_connections(w, true);
        loop_stop(l);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    loop_run(w->loop);
    mirror_worker_exit(); /* shadow requests still in flight (mirror.h) */
    atomic_store(&w->done, true);
    return NULL;
}

struct worker *worker_new(unsigned id, struct snapshot *s, char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->id = id;
    w->snap = snapshot_ref(s);
    w->conns.next = w->conns.prev = &w->conns;
    timer_init(&w->drain_tick, on_drain_tick, w);
    timer_init(&w->reap_tick, on_reap_tick, w);
    buf_pool_init(&w->bufs, 256);
    w->loop = loop_new(on_wake, w);
    w->scratch = route_scratch_new();
    w->log_buf = malloc(ACCESS_LOG_LINE_MAX);
    w->clusters = calloc(s->n_clusters ? s->n_clusters : 1, sizeof *w->clusters);
    w->listeners = calloc(s->n_listeners ? s->n_listeners : 1, sizeof *w->listeners);
    if (getrandom(w->rng, sizeof w->rng, 0) != sizeof w->rng)
        w->rng[0] = 0x9E3779B97F4A7C15ull ^ id, w->rng[1] = clock_now_us();
    if (!w->loop || !w->scratch || !w->log_buf || !w->clusters || !w->listeners) {
        snprintf(err, errlen, "out of memory");
        worker_join_and_free(w);
        return NULL;
    }
    for (size_t i = 0; i < s->n_listeners; i++) {
        struct listener_config *lc = s->listeners[i];
        struct wlistener *wl = &w->listeners[i];
        wl->w = w;
        wl->cfg = lc;
        wl->io.fd = -1;
        if (!lc->bind_to_port)
            continue;
        int fd = listener_open(&lc->addr, lc->addrlen, true);
        if (fd < 0) {
            snprintf(err, errlen, "listener '%s': cannot listen on %s: %s", lc->name, lc->addr_str, strerror(-fd));
            w->n_listeners = i;
            worker_join_and_free(w);
            return NULL;
        }
        io_start(w->loop, &wl->io, fd, EPOLLIN, on_accept, wl);
        w->n_listeners = i + 1;
    }
    w->n_listeners = s->n_listeners;
    return w;
}

int worker_start(struct worker *w)
{
    int r = pthread_create(&w->thread, NULL, worker_main, w);
    w->started = r == 0;
    return -r;
}

void worker_drain(struct worker *w)
{
    atomic_store(&w->draining, true);
    loop_wake(w->loop);
}

void worker_stop(struct worker *w)
{
    atomic_store(&w->stop_now, true);
    loop_wake(w->loop);
}

void worker_join_and_free(struct worker *w)
{
    if (!w)
        return;
    if (w->started)
        pthread_join(w->thread, NULL);
    for (size_t i = 0; i < w->n_listeners; i++)
        if (w->listeners[i].io.fd >= 0)
            close(w->listeners[i].io.fd);
    if (w->snap && w->clusters)
        for (size_t i = 0; i < w->snap->n_clusters; i++)
            wcluster_retire(w->clusters[i]);
    free(w->clusters);
    free(w->listeners);
    while (w->old) {
        struct old_snap *o = w->old;
        w->old = o->next;
        old_snap_free(w, o);
    }
    struct snapshot *pending = atomic_exchange(&w->next_snap, NULL);
    if (pending)
        snapshot_unref(pending);
    free(w->log_buf);
    route_scratch_free(w->scratch);
    buf_pool_drain(&w->bufs);
    loop_free(w->loop);
    h2_mem_free(w->h2mem); /* after loop_free: deferred frees delete nghttp2 sessions */
    snapshot_unref(w->snap);
    free(w);
}
