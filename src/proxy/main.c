/* weft-proxy: Weft's sidecar and gateway proxy. Reads an Envoy v3 bootstrap, runs one worker
 * thread per core and the admin server on the main thread. Flags follow Envoy's. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/yamltree.h"
#include "common/pbmap.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"
#include "net/tls.h"
#include "proxy/admin.h"
#include "proxy/config.h"
#include "proxy/dns.h"
#include "proxy/host_health.h"
#include "proxy/version.h"
#include "proxy/worker.h"
#include "proxy/xds_client.h"

#define MAX_CONFIG_BYTES (64u * 1024 * 1024)

struct opts {
    const char *config_path;
    const char *config_yaml;
    unsigned concurrency;
    unsigned drain_time_s;
    bool validate_only;
    const char *service_node, *service_cluster;
};

struct proxy {
    struct opts o;
    struct loop *loop;
    struct snapshot *snap;
    struct worker **workers;
    unsigned nworkers;
    struct admin *admin;
    struct io sig_io;
    struct timer drain_timer;
    struct timer housekeeping;
    struct dns *dns;
    struct health *health;     /* health checks, outlier detection (host_health.h) */
    struct xds_client *xds;
    uint64_t drain_deadline_ms;
    const char *state;
    bool quitting;
    bool started;                  /* workers running (after the startup DNS round) */
    struct timer init_timer;       /* xDS initial fetch timeout */
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: weft-proxy -c BOOTSTRAP.yaml [options]\n"
            "  -c, --config-path FILE   Envoy v3 bootstrap (YAML or JSON)\n"
            "      --config-yaml YAML   bootstrap given inline (merged over --config-path)\n"
            "      --concurrency N      worker threads (default: number of cores)\n"
            "  -l, --log-level LEVEL    trace, debug, info, warning, error, critical, off\n"
            "      --drain-time-s S     on SIGTERM, wait at most S seconds for requests to finish (default 600)\n"
            "      --mode serve|validate  validate: check the config and exit\n"
            "      --service-node ID    node id (overrides node.id)\n"
            "      --service-cluster C  node cluster (overrides node.cluster)\n"
            "      --version            print the version\n");
}

/* Returns 0, 1 (exit 0: help/version printed) or -1 (bad flag, message printed). */
static int parse_args(int argc, char **argv, struct opts *o)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o->concurrency = cores > 0 ? (unsigned)cores : 1;
    o->drain_time_s = 600;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        char *eq = NULL;
        char name[64];
        if (strncmp(a, "--", 2) == 0 && (eq = strchr(a, '='))) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            a = name;
            v = eq + 1;
        }
#define VALUE() (v ? v : (i + 1 < argc ? argv[++i] : NULL))
        if (!strcmp(a, "-c") || !strcmp(a, "--config-path")) {
            o->config_path = VALUE();
        } else if (!strcmp(a, "--config-yaml")) {
            o->config_yaml = VALUE();
        } else if (!strcmp(a, "--concurrency")) {
            const char *s = VALUE();
            char *end;
            long n = s ? strtol(s, &end, 10) : -1;
            if (!s || *end || n < 1 || n > 256) {
                fprintf(stderr, "weft-proxy: --concurrency needs a number from 1 to 256\n");
                return -1;
            }
            o->concurrency = (unsigned)n;
        } else if (!strcmp(a, "-l") || !strcmp(a, "--log-level")) {
            const char *s = VALUE();
            int lv = s ? log_level_parse(s) : -1;
            if (lv < 0) {
                fprintf(stderr, "weft-proxy: --log-level needs one of trace, debug, info, warning, error, critical, off\n");
                return -1;
            }
            log_current_level = lv;
        } else if (!strcmp(a, "--drain-time-s")) {
            const char *s = VALUE();
            char *end;
            long n = s ? strtol(s, &end, 10) : -1;
            if (!s || *end || n < 0 || n > 86400) {
                fprintf(stderr, "weft-proxy: --drain-time-s needs a number of seconds\n");
                return -1;
            }
            o->drain_time_s = (unsigned)n;
        } else if (!strcmp(a, "--mode")) {
            const char *s = VALUE();
            if (s && !strcmp(s, "validate"))
                o->validate_only = true;
            else if (!s || strcmp(s, "serve") != 0) {
                fprintf(stderr, "weft-proxy: --mode needs serve or validate\n");
                return -1;
            }
        } else if (!strcmp(a, "--service-node")) {
            o->service_node = VALUE();
        } else if (!strcmp(a, "--service-cluster")) {
            o->service_cluster = VALUE();
        } else if (!strcmp(a, "--base-id") || !strcmp(a, "--parent-shutdown-time-s") ||
                   !strcmp(a, "--log-format") || !strcmp(a, "--component-log-level") ||
                   !strcmp(a, "--service-zone") || !strcmp(a, "--local-address-ip-version")) {
            (void)VALUE(); /* Envoy flags accepted for compatibility; they change nothing here */
        } else if (!strcmp(a, "--disable-hot-restart") || !strcmp(a, "--allow-unknown-static-fields")) {
        } else if (!strcmp(a, "--version")) {
            printf("weft-proxy version: %s\n", WEFT_VERSION);
            return 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        } else {
            fprintf(stderr, "weft-proxy: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return -1;
        }
        if ((!strcmp(a, "-c") || !strcmp(a, "--config-path")) && !o->config_path) {
            fprintf(stderr, "weft-proxy: %s needs a file name\n", a);
            return -1;
        }
#undef VALUE
    }
    if (!o->config_path && !o->config_yaml) {
        fprintf(stderr, "weft-proxy: a bootstrap is required: -c FILE\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > MAX_CONFIG_BYTES) {
        snprintf(err, errlen, "%s: not a regular file of at most %u bytes", path, MAX_CONFIG_BYTES);
        fclose(f);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf || n != (size_t)st.st_size) {
        free(buf);
        snprintf(err, errlen, "%s: read failed", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The bootstrap line a snapshot error ("field.path: problem") points at: the error is found
 * after parsing, so the text is read again to find where that field was written. */
static int error_line(const char *text, size_t len, const char *err)
{
    const char *sep = strstr(err, ": ");
    if (!sep)
        return 0;
    char path[512];
    snprintf(path, sizeof path, "%.*s", (int)(sep - err), err);
    char perr[256];
    struct ytree *t = ytree_parse(text, len, NULL, perr, sizeof perr);
    int line = t ? ytree_path_line(t, path) : 0;
    ytree_free(t);
    return line;
}

/* Loads and checks the bootstrap; prints one line and returns NULL on any problem. The decoded
 * bootstrap is handed back in *bootstrap (the caller frees it) for the xDS client. */
static struct snapshot *load(const struct opts *o, ProtobufCMessage **bootstrap)
{
    char err[1024];
    struct pbmap_error pe;
    const char *name = o->config_path ? o->config_path : "--config-yaml";
    char *text = NULL;
    size_t len = 0;
    if (o->config_path) {
        text = read_file(o->config_path, &len, err, sizeof err);
        if (!text) {
            fprintf(stderr, "weft-proxy: cannot read bootstrap %s\n", err);
            return NULL;
        }
    } else {
        text = strdup(o->config_yaml);
        len = strlen(text);
    }
    ProtobufCMessage *m = pbmap_from_yaml(&envoy__config__bootstrap__v3__bootstrap__descriptor, text, len, name, &pe);
    if (!m) {
        free(text);
        fprintf(stderr, "weft-proxy: %s\n", pe.msg);
        return NULL;
    }
    struct snapshot *s = snapshot_build(m, err, sizeof err);
    *bootstrap = m;
    if (!s) {
        fprintf(stderr, "weft-proxy: %s:%d: %s\n", name, error_line(text, len, err), err);
        free(text);
        return NULL;
    }
    free(text);
    if (o->service_node) {
        free(s->node_id);
        s->node_id = strdup(o->service_node);
    }
    if (o->service_cluster) {
        free(s->node_cluster);
        s->node_cluster = strdup(o->service_cluster);
    }
    return s;
}

/* --- admin hooks --- */

static struct snapshot *hook_snapshot(void *arg) { return snapshot_ref(((struct proxy *)arg)->snap); }

/* --- xDS hooks --- */

static struct snapshot *xds_current(void *arg) { return ((struct proxy *)arg)->snap; }

/* A new snapshot from the xDS client: the main thread's, then each worker's (they switch on their
 * own loop), and DNS follows the new clusters. */
static void xds_publish(void *arg, struct snapshot *s)
{
    struct proxy *p = arg;
    struct snapshot *old = p->snap;
    s->version = old->version + 1;
    p->snap = s;
    dns_stop(p->dns);
    p->dns = dns_start(p->loop, s, old, NULL, NULL); /* DNS clusters first take old's answers */
    for (unsigned i = 0; i < p->nworkers; i++)
        worker_update(p->workers[i], snapshot_ref(s));
    health_stop(p->health);
    p->health = health_start(p->loop, s, old);
    snapshot_unref(old);
    if (strcmp(p->state, "INITIALIZING") == 0)
        p->state = "LIVE";
    log_info("config version %llu: %zu listeners, %zu clusters", (unsigned long long)s->version, s->n_listeners,
             s->n_clusters);
}

/* Envoy is LIVE once the first xDS config is in, or when the initial fetch timed out. */
static void on_init_timeout(struct loop *l, struct timer *t)
{
    (void)l;
    struct proxy *p = t->data;
    if (strcmp(p->state, "INITIALIZING") == 0)
        p->state = "LIVE";
}
static const char *hook_state(void *arg) { return ((struct proxy *)arg)->state; }

static void stop_workers_and_exit_loop(struct proxy *p)
{
    for (unsigned i = 0; i < p->nworkers; i++)
        worker_stop(p->workers[i]);
    loop_stop(p->loop);
}

static void hook_quit(void *arg)
{
    struct proxy *p = arg;
    log_info("quitquitquit: shutting down");
    p->quitting = true;
    stop_workers_and_exit_loop(p);
}

/* Once a second: free host sets that DNS replaced, once no worker can still reach them. */
static void on_housekeeping(struct loop *l, struct timer *t)
{
    host_sets_reap(loop_now_ms(l), false);
    tls_poll(loop_now_ms(l), false); /* certificate files changed? new SSL_CTXs for new connections */
    timer_start(l, t, 1000);
}

/* --- drain on SIGTERM --- */

static void on_drain_timer(struct loop *l, struct timer *t)
{
    struct proxy *p = t->data;
    bool all_done = true;
    for (unsigned i = 0; i < p->nworkers; i++)
        if (!atomic_load(&p->workers[i]->done))
            all_done = false;
    if (all_done || loop_now_ms(l) >= p->drain_deadline_ms) {
        if (!all_done)
            log_warn("drain time over: closing remaining connections");
        stop_workers_and_exit_loop(p);
        return;
    }
    timer_start(l, t, 20);
}

static void on_signal(struct loop *l, struct io *io, uint32_t events)
{
    (void)events;
    struct proxy *p = io->data;
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            if (!p->started || strcmp(p->state, "DRAINING") == 0) {
                stop_workers_and_exit_loop(p); /* a second signal: do not wait */
                return;
            }
            log_info("caught %s: draining for at most %us", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT",
                     p->o.drain_time_s);
            p->state = "DRAINING";
            for (unsigned i = 0; i < p->nworkers; i++)
                worker_drain(p->workers[i]);
            p->drain_deadline_ms = loop_now_ms(l) + (uint64_t)p->o.drain_time_s * 1000u;
            timer_start(l, &p->drain_timer, 20);
        }
    }
}

/* Envoy opens its listeners once the static clusters are initialised, which for DNS clusters
 * means their first resolution finished (answered or failed): dns_start calls this then. */
static void start_serving(void *arg)
{
    struct proxy *p = arg;
    p->started = true;
    for (unsigned i = 0; i < p->nworkers; i++)
        worker_start(p->workers[i]);
    p->state = "LIVE";
    if (p->xds) {
        p->state = "INITIALIZING";
        xds_client_set_loop(p->xds, p->loop);
        xds_client_start(p->xds);
        timer_start(p->loop, &p->init_timer, XDS_DEFAULT_INITIAL_FETCH_MS);
    }
    log_info("weft-proxy %s: %zu listeners, %zu clusters, %u workers", WEFT_VERSION, p->snap->n_listeners,
             p->snap->n_clusters, p->nworkers);
}

int main(int argc, char **argv)
{
    struct proxy p = {.state = "PRE_INITIALIZING"};
    int r = parse_args(argc, argv, &p.o);
    if (r != 0)
        return r > 0 ? 0 : 1;
    stats_init(p.o.concurrency);
    ProtobufCMessage *bootstrap = NULL;
    p.snap = load(&p.o, &bootstrap);
    if (!p.snap) {
        if (bootstrap)
            protobuf_c_message_free_unpacked(bootstrap, NULL);
        return 1;
    }
    {
        char xerr[512];
        struct xds_hooks xh = {.arg = &p, .publish = xds_publish, .current = xds_current};
        p.xds = xds_client_new(NULL, bootstrap, &xh, p.o.service_node, p.o.service_cluster, xerr, sizeof xerr);
        protobuf_c_message_free_unpacked(bootstrap, NULL);
        if (!p.xds && xerr[0]) {
            fprintf(stderr, "weft-proxy: %s: %s\n", p.o.config_path ? p.o.config_path : "--config-yaml", xerr);
            snapshot_unref(p.snap);
            stats_shutdown();
            return 1;
        }
    }
    if (p.o.validate_only) {
        xds_client_free(p.xds);
        printf("configuration '%s' OK\n", p.o.config_path ? p.o.config_path : "--config-yaml");
        snapshot_unref(p.snap);
        stats_shutdown();
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, NULL); /* workers inherit the mask; only signalfd sees them */
    p.loop = loop_new(NULL, NULL);
    timer_init(&p.drain_timer, on_drain_timer, &p);
    io_start(p.loop, &p.sig_io, signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC), EPOLLIN, on_signal, &p);

    int status = 0;
    char err[512];
    p.workers = calloc(p.o.concurrency, sizeof *p.workers);
    for (unsigned i = 0; i < p.o.concurrency; i++) {
        p.workers[i] = worker_new(i, p.snap, err, sizeof err);
        if (!p.workers[i]) {
            fprintf(stderr, "weft-proxy: %s\n", err);
            status = 1;
            goto out;
        }
        p.nworkers = i + 1;
    }
    if (p.snap->admin.enabled) {
        struct admin_hooks hooks = {.arg = &p, .snapshot = hook_snapshot, .state = hook_state, .quit = hook_quit,
                                    .concurrency = p.o.concurrency, .drain_time_s = p.o.drain_time_s,
                                    .config_path = p.o.config_path, .start_time = time(NULL)};
        p.admin = admin_start(p.loop, &p.snap->admin, &hooks, err, sizeof err);
        if (!p.admin) {
            fprintf(stderr, "weft-proxy: %s\n", err);
            status = 1;
            goto out;
        }
    }
    p.health = health_start(p.loop, p.snap, NULL);
    timer_init(&p.housekeeping, on_housekeeping, &p);
    timer_start(p.loop, &p.housekeeping, 1000);
    timer_init(&p.init_timer, on_init_timeout, &p);
    p.state = "INITIALIZING";
    p.dns = dns_start(p.loop, p.snap, NULL, start_serving, &p);
    loop_run(p.loop);
    log_info("exiting");
out:
    for (unsigned i = 0; i < p.nworkers; i++) {
        worker_stop(p.workers[i]);
        worker_join_and_free(p.workers[i]);
    }
    free(p.workers);
    xds_client_free(p.xds);
    dns_stop(p.dns);
    health_stop(p.health);
    host_sets_reap(0, true);
    tls_poll(0, true);
    admin_stop(p.admin);
    close(p.sig_io.fd);
    loop_free(p.loop);
    snapshot_unref(p.snap);
    stats_shutdown();
    return status;
}
