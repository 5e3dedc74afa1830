/* A worker: one thread, one event loop, its own listening sockets (SO_REUSEPORT), its own
 * upstream connection pools, load-balancer state and stats slot. Connections never move
 * between workers, so nothing here is locked. */
#ifndef WEFT_PROXY_WORKER_H
#define WEFT_PROXY_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "common/loop.h"
#include "proxy/config.h"

struct uconn;
struct uh2c;
struct h2_mem;
struct lb_state;
struct route_scratch;

/* One upstream host's pool on this worker. */
struct upool {
    struct uconn *idle;            /* idle keep-alive connections, most recent first */
    uint32_t nidle;
    uint32_t active_rq;            /* in-flight requests (LEAST_REQUEST input) */
    uint32_t nconn;                /* connections of this pool, connecting ones included */
    struct ssl_session_st *tls_session;  /* last TLS session from this host, offered for resumption */
    char tls_error[192];           /* last TLS handshake failure with this host (access logs) */
    struct uh2c *h2;               /* HTTP/2 connections to this host (upstream_h2.c) */
    bool auto_h1;                  /* auto_config: this host's last ALPN answer was not "h2" */
};

/* ORIGINAL_DST clusters have no hosts: their keep-alive pools are keyed by the destination
 * address instead, up to WCLUSTER_ODST_POOLS addresses per worker (an address beyond that is
 * not pooled until a slot without connections can be taken over). */
#define WCLUSTER_ODST_POOLS 64
struct odst_pool {
    struct sockaddr_storage addr;
    struct upool pool;             /* idle, nidle and nconn are used */
};

/* This worker's view of one cluster for one host set: pools and load-balancer state. When
 * the cluster's hosts change (DNS), a new one becomes current and the old one is retired: it
 * lives on, without idle connections, until the last stream or connection using it lets go. */
struct wcluster {
    struct cluster *c;
    struct worker *w;
    struct host_set *hs;           /* the host set the pools below are for (one reference) */
    struct lb_state *lb;
    struct upool *pools;           /* one per host in hs */
    uint32_t *active_rq;           /* one per host: in-flight requests, for lb_pick */
    uint32_t users;                /* streams, sessions and upstream connections holding it */
    char odst_tls_error[192];      /* TLS failure of an unpooled (ORIGINAL_DST) connection */
    struct odst_pool *odst;        /* ORIGINAL_DST: WCLUSTER_ODST_POOLS slots, made on first use */
    uint32_t n_odst;
    bool retired;
};

struct wlistener {
    struct io io;
    struct worker *w;
    struct listener_config *cfg;   /* from w->snap */
};

/* Intrusive list of live downstream connections (for drain and shutdown). */
struct conn_link {
    struct conn_link *prev, *next;
    const struct listener_config *lc;  /* the listener it came from (its snapshot's), or NULL */
    /* Graceful: close when idle, or after the current exchange. force: close now. */
    void (*drain)(struct conn_link *l, bool force);
};

/* A snapshot the worker no longer runs but some connection still does: its listeners (closed,
 * kept until no event can name them) and its cluster states, mapped onto the current ones. */
struct old_snap {
    struct old_snap *next;
    struct snapshot *snap;         /* one reference */
    struct wlistener *listeners;
    int *map;                      /* cluster index here -> index in the current snapshot, or -1 */
    struct wcluster **clusters;    /* for clusters the current snapshot does not have */
};

struct worker {
    unsigned id;                   /* also this worker's stats slot */
    pthread_t thread;
    struct loop *loop;
    struct snapshot *snap;
    struct wlistener *listeners;
    size_t n_listeners;
    struct wcluster **clusters;    /* current state, one per snap->clusters */
    struct buf_pool bufs;
    struct route_scratch *scratch;
    struct conn_link conns;        /* downstream connections, list head */
    size_t n_conns;
    uint64_t rng[2];               /* xorshift128+ state */
    atomic_bool draining;          /* set by the main thread; the loop sees it via wake */
    atomic_bool stop_now;          /* drain time is over: close what is left and exit */
    atomic_bool done;              /* the loop has exited */
    bool started;
    bool drain_started;
    struct timer drain_tick;
    char *log_buf;                 /* per-worker access log line buffer */
    struct h2_mem *h2mem;          /* nghttp2's allocator for this worker's sessions (h2_mem.c) */
    _Atomic(struct snapshot *) next_snap;  /* set by worker_update, taken by the worker's loop */
    struct old_snap *old;          /* older snapshots still in use by connections */
    struct timer reap_tick;
};

/* Creates a worker bound to snapshot s (takes a reference). Listening sockets are opened here
 * so that bind errors are reported before threads start. Returns NULL with err set on failure. */
struct worker *worker_new(unsigned id, struct snapshot *s, char *err, size_t errlen);
int worker_start(struct worker *w);
/* Thread-safe: stop accepting, let connections finish, then exit the loop. */
void worker_drain(struct worker *w);
/* Thread-safe: close every connection now and exit the loop. */
void worker_stop(struct worker *w);
void worker_join_and_free(struct worker *w);

/* Thread-safe: makes s (one reference, taken over) the worker's snapshot for new connections.
 * Listening sockets of listeners that keep their name and address are kept; added ones are
 * opened, removed ones closed. Connections of removed or changed listeners are drained
 * (close after the current exchange); the others finish on their snapshot. */
void worker_update(struct worker *w, struct snapshot *s);

/* Between two requests of a downstream connection accepted on an older snapshot: when the worker's
 * snapshot still has the connection's listener unchanged (same name, address and Listener
 * resource), moves the connection onto it (*snap, *lc, *hcm and link->lc replaced, the snapshot
 * references swapped) so new requests see new routes (RDS), as Envoy's HCM does. Returns true
 * when it moved. Main-loop code never calls it; the worker's own connections do. */
bool worker_rebind(struct worker *w, struct snapshot **snap, struct listener_config **lc, struct hcm_config **hcm,
                   struct conn_link *link);

uint64_t worker_random(struct worker *w);
/* This worker's current state for cluster index i, refreshed if the cluster's hosts changed.
 * Callers that keep it past the current event take a hold and put it back when done. */
struct wcluster *worker_cluster(struct worker *w, int i);
/* As worker_cluster, for cluster index i of snapshot snap (a connection's, maybe older than
 * the worker's): the current state of the cluster with the same name, or that snapshot's own. */
struct wcluster *worker_cluster_in(struct worker *w, const struct snapshot *snap, int i);
static inline void wcluster_hold(struct wcluster *wc) { wc->users++; }
void wcluster_put(struct wcluster *wc);

void conn_link_add(struct conn_link *head, struct conn_link *l);
void conn_link_del(struct conn_link *l);

#endif
