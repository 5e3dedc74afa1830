/* Shadow requests (see mirror.h). Shadows come from a per-thread free list (each worker is
 * one thread), so a steady stream of mirrored requests allocates nothing. */
#include "proxy/mirror.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "common/loop.h"
#include "proxy/config.h"
#include "proxy/lb.h"
#include "proxy/route.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

struct shadow {
    struct shadow *next;           /* free list */
    struct shadow *all;            /* every shadow of this thread */
    bool busy;
    struct worker *w;
    struct wcluster *wc;
    uint32_t host;
    struct uconn *u;
    struct buf *out;               /* the whole shadow request */
    struct timer timer;
};

static _Thread_local struct shadow *free_list, *all_list;
static _Thread_local unsigned inflight;

static void done(struct shadow *sh)
{
    struct worker *w = sh->w;
    timer_stop(w->loop, &sh->timer);
    if (sh->u)
        upstream_release(sh->u, false);
    sh->u = NULL;
    sh->wc->pools[sh->host].active_rq--;
    sh->wc->active_rq[sh->host]--;
    wcluster_put(sh->wc);
    buf_put(&w->bufs, sh->out);
    sh->out = NULL;
    sh->busy = false;
    sh->next = free_list;
    free_list = sh;
    inflight--;
}

/* Writes what is left of the request, then reads and drops the answer until the upstream
 * closes (the shadow asked for connection: close). */
static void pump(struct shadow *sh)
{
    struct uconn *u = sh->u;
    if (sh->out && buf_len(sh->out) && u->writable) {
        struct iovec iov = {buf_rpos(sh->out), buf_len(sh->out)};
        ssize_t wr = upstream_sendv(u, &iov, 1);
        if (wr < 0 && errno != EAGAIN && errno != EINTR) {
            done(sh);
            return;
        }
        if (wr > 0)
            sh->out->head += (size_t)wr;
        if (buf_len(sh->out)) {
            u->writable = false;
            io_want_write(sh->w->loop, &u->io, true);
        }
    }
    long r = upstream_read(u);
    if (u->in)
        u->in->head = u->in->tail = 0; /* the shadow's answer is dropped */
    if (r < 0 || u->peer_closed)
        done(sh);
}

static void on_event(struct uconn *u, enum uconn_event ev, void *owner)
{
    (void)u;
    struct shadow *sh = owner;
    if (ev == UE_CONNECT_FAILED || ev == UE_CONNECT_TIMEOUT) {
        sh->u = NULL; /* the connection is gone already */
        done(sh);
        return;
    }
    pump(sh);
}

static void on_timeout(struct loop *l, struct timer *t)
{
    (void)l;
    done(t->data);
}

/* The main head with the host suffixed "-shadow" (before the port) and connection: close. */
static int shadow_head(struct buf *o, const struct buf *uhead)
{
    const char *p = uhead->data + uhead->head, *end = uhead->data + uhead->tail;
    size_t n = (size_t)(end - p);
    if (n < 4 || memcmp(end - 4, "\r\n\r\n", 4) != 0)
        return -1;
    const char *h = memmem(p, n, "\r\nhost: ", 8);
    if (!h)
        return -1;
    h += 8;
    const char *eol = memmem(h, (size_t)(end - h), "\r\n", 2);
    const char *port = eol;
    for (const char *q = eol; q > h; q--) {
        if (q[-1] == ']')
            break;
        if (q[-1] == ':') {
            port = q - 1;
            break;
        }
    }
    return buf_append(o, p, (size_t)(port - p)) || buf_append(o, "-shadow", 7) ||
           buf_append(o, port, (size_t)(end - 2 - port)) || buf_append(o, "connection: close\r\n\r\n", 21);
}

static void shadow_one(struct worker *w, struct snapshot *snap, int cluster, const struct buf *uhead,
                       const char *body, size_t body_len, uint64_t timeout_ms)
{
    struct wcluster *wc = worker_cluster_in(w, snap, cluster);
    if (!wc || wc->c->type == CLUSTER_ORIGINAL_DST || !wc->hs->n || inflight >= MIRROR_MAX_INFLIGHT)
        return;
    int host = lb_pick(wc->hs->lb, wc->lb, false, 0, wc->active_rq, NULL);
    if (host < 0)
        return;
    struct buf *out = buf_get(&w->bufs);
    if (!out)
        return;
    if (shadow_head(out, uhead) < 0 || (body_len && buf_append(out, body, body_len))) {
        buf_put(&w->bufs, out); /* does not fit in one buffer: not mirrored */
        return;
    }
    struct shadow *sh = free_list;
    if (sh)
        free_list = sh->next;
    else if ((sh = calloc(1, sizeof *sh))) {
        sh->all = all_list;
        all_list = sh;
    } else {
        buf_put(&w->bufs, out);
        return;
    }
    inflight++;
    wcluster_hold(wc);
    struct shadow *keep = sh->all;
    *sh = (struct shadow){.w = w, .wc = wc, .host = (uint32_t)host, .out = out, .all = keep, .busy = true};
    wc->pools[host].active_rq++;
    wc->active_rq[host]++;
    stats_inc(wc->c->stats, w->id, CS_UPSTREAM_RQ_TOTAL);
    timer_init(&sh->timer, on_timeout, sh);
    timer_start(w->loop, &sh->timer, timeout_ms ? timeout_ms : MIRROR_DEFAULT_TIMEOUT_MS);
    if (upstream_acquire(w, wc, (uint32_t)host, on_event, sh, &sh->u) < 0) {
        sh->u = NULL;
        done(sh);
        return;
    }
    if (sh->u->state == UC_OPEN)
        pump(sh);
}

void mirror_request(struct worker *w, struct snapshot *snap, const struct route_entry *e, const struct buf *uhead,
                    const char *body, size_t body_len, uint64_t timeout_ms)
{
    for (size_t i = 0; i < e->nmirrors; i++) {
        const struct route_mirror *m = &e->mirrors[i];
        if (m->cluster < 0 || !m->num || (m->num < m->den && worker_random(w) % m->den >= m->num))
            continue;
        shadow_one(w, snap, m->cluster, uhead, body, body_len, timeout_ms);
    }
}

void mirror_worker_exit(void)
{
    for (struct shadow *sh = all_list; sh; sh = sh->all)
        if (sh->busy)
            done(sh);
    while (all_list) {
        struct shadow *next = all_list->all;
        free(all_list);
        all_list = next;
    }
    free_list = NULL;
}
