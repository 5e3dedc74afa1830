/* DNS for STRICT_DNS and LOGICAL_DNS clusters: c-ares on the main thread's loop, re-resolving
 * every dns_refresh_rate. A changed answer becomes a new host set (with its own load-balancing
 * table) that workers pick up on their next request; unchanged answers change nothing.
 * Snapshots are built without any lookup: a cluster whose names the previous snapshot already
 * resolved takes those answers over, any other resolves at once. */
#include "proxy/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "common/log.h"
#include "proxy/listener.h"

#define DNS_MAX_FDS 16

struct dns_cluster {
    struct dns *dns;
    struct cluster *c;
    struct timer refresh;
    size_t pending;                /* queries of this round still out */
    struct host *hosts;            /* answers gathered this round */
    size_t n, cap;
    bool failed;
    bool initial;                  /* its first round is what dns_start's ready waits for */
};

struct dns {
    struct loop *loop;
    ares_channel channel;
    struct io ios[DNS_MAX_FDS];
    struct timer ares_timer;
    struct timer ready_timer;
    struct dns_cluster *clusters;
    size_t n;
    size_t initial_left;           /* first rounds still out */
    void (*ready)(void *arg);
    void *ready_arg;
};

struct query {
    struct dns_cluster *dc;
    const struct dns_target *t;
};

static void schedule_ares_timer(struct dns *d)
{
    struct timeval tv, *tvp = ares_timeout(d->channel, NULL, &tv);
    if (tvp)
        timer_start(d->loop, &d->ares_timer, (uint64_t)tvp->tv_sec * 1000u + (uint64_t)tvp->tv_usec / 1000u + 1);
    else
        timer_stop(d->loop, &d->ares_timer);
}

static void on_ares_io(struct loop *l, struct io *io, uint32_t events)
{
    (void)l;
    struct dns *d = io->data;
    ares_socket_t r = (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? io->fd : ARES_SOCKET_BAD;
    ares_socket_t w = (events & EPOLLOUT) ? io->fd : ARES_SOCKET_BAD;
    ares_process_fd(d->channel, r, w);
    schedule_ares_timer(d);
}

static void on_ares_timer(struct loop *l, struct timer *t)
{
    (void)l;
    struct dns *d = t->data;
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    schedule_ares_timer(d);
}

/* c-ares tells us which sockets to watch. */
static void on_sock_state(void *arg, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = arg;
    struct io *slot = NULL, *free_slot = NULL;
    for (int i = 0; i < DNS_MAX_FDS; i++) {
        if (d->ios[i].cb && d->ios[i].fd == fd)
            slot = &d->ios[i];
        else if (!d->ios[i].cb && !free_slot)
            free_slot = &d->ios[i];
    }
    uint32_t ev = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);
    if (!ev) {
        if (slot)
            io_stop(d->loop, slot);
        return;
    }
    if (slot)
        io_modify(d->loop, slot, ev);
    else if (free_slot)
        io_start(d->loop, free_slot, fd, ev, on_ares_io, d);
    else
        log_warn("dns: more than %d resolver sockets", DNS_MAX_FDS);
}

static int cmp_host(const void *a, const void *b)
{
    return strcmp(((const struct host *)a)->addr_str, ((const struct host *)b)->addr_str);
}

static bool same_hosts(const struct host_set *hs, struct host *h, size_t n)
{
    if (hs->n != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(hs->hosts[i].addr_str, h[i].addr_str) != 0 || hs->hosts[i].weight != h[i].weight ||
            hs->hosts[i].priority != h[i].priority)
            return false;
    return true;
}

static void round_done(struct dns_cluster *dc)
{
    struct cluster *c = dc->c;
    struct dns *d = dc->dns;
    if (!dc->failed || dc->n > 0) {
        qsort(dc->hosts, dc->n, sizeof *dc->hosts, cmp_host);
        struct host_set *cur = atomic_load(&c->hosts);
        if (!same_hosts(cur, dc->hosts, dc->n)) {
            char err[256];
            struct host_set *hs = host_set_new(dc->hosts, dc->n, c->lbc, err, sizeof err);
            if (hs) {
                log_info("dns: cluster %s now has %zu hosts", c->name, dc->n);
                cluster_set_hosts(c, hs, loop_now_ms(d->loop));
                dc->hosts = NULL;
                dc->n = dc->cap = 0;
            } else {
                log_warn("dns: cluster %s: %s", c->name, err);
            }
        }
    }
    for (size_t i = 0; i < dc->n; i++)
        free(dc->hosts[i].hostname);
    free(dc->hosts);
    dc->hosts = NULL;
    dc->n = dc->cap = 0;
    timer_start(d->loop, &dc->refresh, c->dns_refresh_ms);
    if (dc->initial) {
        dc->initial = false;
        if (--d->initial_left == 0 && d->ready)
            d->ready(d->ready_arg);
    }
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct query *q = arg;
    struct dns_cluster *dc = q->dc;
    if (status != ARES_SUCCESS) {
        if (status != ARES_EDESTRUCTION)
            log_warn("dns: cluster %s: cannot resolve %s: %s", dc->c->name, q->t->name, ares_strerror(status));
        dc->failed = true;
    }
    for (struct ares_addrinfo_node *n = res ? res->nodes : NULL; n; n = n->ai_next) {
        if (dc->n == dc->cap) {
            dc->cap = dc->cap ? 2 * dc->cap : 4;
            struct host *nh = realloc(dc->hosts, dc->cap * sizeof *nh);
            if (!nh)
                break;
            dc->hosts = nh;
        }
        struct host *h = &dc->hosts[dc->n++];
        memset(h, 0, sizeof *h);
        memcpy(&h->addr, n->ai_addr, n->ai_addrlen);
        h->addrlen = n->ai_addrlen;
        sockaddr_format(&h->addr, h->addr_str, sizeof h->addr_str);
        h->hostname = strdup(q->t->name);
        h->weight = q->t->weight;
        h->priority = q->t->priority;
        h->healthy = true;
        if (dc->c->type == CLUSTER_LOGICAL_DNS)
            break; /* LOGICAL_DNS uses the first address only */
    }
    if (res)
        ares_freeaddrinfo(res);
    free(q);
    if (--dc->pending == 0 && status != ARES_EDESTRUCTION)
        round_done(dc);
}

static void on_refresh(struct loop *l, struct timer *t)
{
    (void)l;
    struct dns_cluster *dc = t->data;
    struct cluster *c = dc->c;
    dc->failed = false;
    dc->pending = c->n_dns;
    for (size_t i = 0; i < c->n_dns; i++) {
        struct query *q = malloc(sizeof *q);
        if (!q) {
            dc->pending--;
            continue;
        }
        q->dc = dc;
        q->t = &c->dns[i];
        char port[8];
        snprintf(port, sizeof port, "%u", c->dns[i].port);
        struct ares_addrinfo_hints hints = {.ai_family = c->dns_family, .ai_socktype = SOCK_STREAM};
        ares_getaddrinfo(dc->dns->channel, c->dns[i].name, port, &hints, on_addrinfo, q);
    }
    schedule_ares_timer(dc->dns);
}

static bool same_targets(const struct cluster *a, const struct cluster *b)
{
    if (a->type != b->type || a->n_dns != b->n_dns || a->dns_family != b->dns_family)
        return false;
    for (size_t i = 0; i < a->n_dns; i++)
        if (strcmp(a->dns[i].name, b->dns[i].name) != 0 || a->dns[i].port != b->dns[i].port ||
            a->dns[i].weight != b->dns[i].weight || a->dns[i].priority != b->dns[i].priority)
            return false;
    return true;
}

/* Gives c the answers prev's cluster of the same name got for the same names, in a host set
 * built with c's own load-balancing config. False when there is nothing to take over. */
static bool carry_over(struct loop *loop, struct cluster *c, const struct snapshot *prev)
{
    int i = prev ? snapshot_cluster_index(prev, c->name) : -1;
    if (i < 0 || !same_targets(c, prev->clusters[i]))
        return false;
    struct host_set *old = atomic_load(&prev->clusters[i]->hosts);
    if (!old || old->n == 0)
        return false;
    struct host *hosts = calloc(old->n, sizeof *hosts);
    if (!hosts)
        return false;
    for (size_t j = 0; j < old->n; j++) {
        hosts[j] = old->hosts[j];
        hosts[j].hostname = old->hosts[j].hostname ? strdup(old->hosts[j].hostname) : NULL;
    }
    char err[256];
    struct host_set *hs = host_set_new(hosts, old->n, c->lbc, err, sizeof err);
    if (!hs) {
        for (size_t j = 0; j < old->n; j++)
            free(hosts[j].hostname);
        free(hosts);
        return false;
    }
    cluster_set_hosts(c, hs, loop_now_ms(loop));
    return true;
}

static void call_ready(struct loop *l, struct timer *t)
{
    (void)l;
    struct dns *d = t->data;
    if (d->ready)
        d->ready(d->ready_arg);
}

struct dns *dns_start(struct loop *loop, struct snapshot *s, const struct snapshot *prev, void (*ready)(void *arg),
                      void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_clusters; i++)
        n += s->clusters[i]->n_dns > 0;
    if (n == 0) {
        if (ready)
            ready(arg);
        return NULL;
    }
    struct dns *d = calloc(1, sizeof *d);
    d->loop = loop;
    d->ready = ready;
    d->ready_arg = arg;
    d->clusters = calloc(n, sizeof *d->clusters);
    struct ares_options opts = {.sock_state_cb = on_sock_state, .sock_state_cb_data = d};
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS ||
        ares_init_options(&d->channel, &opts, ARES_OPT_SOCK_STATE_CB) != ARES_SUCCESS) {
        log_error("dns: c-ares could not start; DNS clusters resolve nothing");
        free(d->clusters);
        free(d);
        if (ready)
            ready(arg);
        return NULL;
    }
    timer_init(&d->ares_timer, on_ares_timer, d);
    timer_init(&d->ready_timer, call_ready, d);
    for (size_t i = 0; i < s->n_clusters; i++) {
        if (!s->clusters[i]->n_dns)
            continue;
        struct dns_cluster *dc = &d->clusters[d->n++];
        dc->dns = d;
        dc->c = s->clusters[i];
        timer_init(&dc->refresh, on_refresh, dc);
        bool have = carry_over(loop, dc->c, prev);
        dc->initial = !have;
        d->initial_left += !have;
        timer_start(loop, &dc->refresh, have ? dc->c->dns_refresh_ms : 0);
    }
    if (d->initial_left == 0)
        timer_start(loop, &d->ready_timer, 0); /* not from inside dns_start: the caller has no d yet */
    return d;
}

void dns_stop(struct dns *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        timer_stop(d->loop, &d->clusters[i].refresh);
    timer_stop(d->loop, &d->ares_timer);
    timer_stop(d->loop, &d->ready_timer);
    d->ready = NULL; /* pending queries end with ARES_EDESTRUCTION below, never as a ready round */
    ares_destroy(d->channel); /* calls pending callbacks with ARES_EDESTRUCTION */
    for (int i = 0; i < DNS_MAX_FDS; i++)
        io_stop(d->loop, &d->ios[i]);
    for (size_t i = 0; i < d->n; i++) {
        for (size_t j = 0; j < d->clusters[i].n; j++)
            free(d->clusters[i].hosts[j].hostname);
        free(d->clusters[i].hosts);
    }
    free(d->clusters);
    free(d);
    ares_library_cleanup();
}
