/* weftd: Weft's istiod. Reads Istio's YAML from a directory and either validates it
 * (--validate), prints what a proxy would receive (--dump), or serves it: one event loop runs
 * the directory's inotify watch, the ADS gRPC server (15010), the debug/metrics HTTP server
 * (15014) and the debounced push timer. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/pbmap.h"
#include "net/grpc_server.h"
#include "pilot/ads.h"
#include "pilot/debug.h"
#include "pilot/store.h"
#include "pilot/translate.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: weftd --config-dir DIR [--domain SUFFIX]\n"
            "             [--grpc-addr HOST:PORT] [--debug-addr HOST:PORT] [--debounce 100ms]\n"
            "             [--validate | --dump PROXY_ID [--type lds|rds|cds|eds] [--label K=V]...]\n"
            "  --validate   print every configuration error (FILE:LINE: field.path: problem);\n"
            "               exit 1 when there is any; then warnings about references between\n"
            "               objects (undefined subsets, unknown hosts), which do not change the exit code\n"
            "  --dump ID    print the resources the proxy with node id ID\n"
            "               (sidecar~IP~POD.NS~NS.svc.cluster.local) would receive, as JSON\n"
            "               DiscoveryResponses (all four types in ADS order without --type)\n"
            "  --label K=V  the proxy's labels (default: those of the WorkloadEntry at its IP)\n"
            "without --validate or --dump, weftd serves DIR: ADS over gRPC on --grpc-addr\n"
            "(default 0.0.0.0:15010), debug pages and /metrics on --debug-addr (default\n"
            "0.0.0.0:15014); config changes are pushed --debounce after the last change\n");
}

/* What istioctl analyze would point out and validation cannot: references between objects
 * (a subset no DestinationRule defines, a host not in the registry). */
static void print_warnings(const struct pilot_model *m)
{
    struct istio_errors warn = {0};
    pilot_check_references(m, &warn);
    for (size_t i = 0; i < warn.n; i++)
        printf("warning: %s\n", warn.msgs[i]);
    istio_errors_free(&warn);
}

static int do_dump(struct pilot_model *m, const char *id, int type, char **labels, int nlabels)
{
    struct pilot_proxy p = {0};
    char err[256];
    int rc = 1;
    if (pilot_proxy_parse(id, &p, err, sizeof err) < 0) {
        fprintf(stderr, "weftd: --dump: %s\n", err);
        pilot_proxy_free(&p);
        return 2;
    }
    for (int i = 0; i < nlabels; i++) {
        char *eq = strchr(labels[i], '=');
        if (!eq) {
            fprintf(stderr, "weftd: --label %s: expected KEY=VALUE\n", labels[i]);
            pilot_proxy_free(&p);
            return 2;
        }
        *eq = '\0';
        pilot_proxy_set_label(&p, labels[i], eq + 1);
        *eq = '=';
    }
    pilot_proxy_complete(&p, m);
    struct istio_errors warn = {0};
    char *text = pilot_dump_json(m, &p, type, &warn);
    for (size_t i = 0; i < warn.n; i++)
        fprintf(stderr, "weftd: %s%s\n", text ? "warning: " : "", warn.msgs[i]);
    if (text) {
        printf("%s\n", text);
        free(text);
        rc = 0;
    }
    istio_errors_free(&warn);
    pilot_proxy_free(&p);
    return rc;
}

struct serve {
    struct loop *loop;
    struct io sig;
    int sfd;
    struct ads_server *ads;
    struct grpc_server *grpc;
    struct pilot_debug *debug;
    bool stopping;
};

static void log_model(struct pilot_model *m)
{
    log_info("weftd: config version %llu: %zu objects, %zu services, %zu errors",
             (unsigned long long)m->version, m->n_objs, m->reg->n, m->errors.n);
    for (size_t i = 0; i < m->errors.n; i++)
        log_warn("weftd: %s", m->errors.msgs[i]);
}

static void on_model(struct pilot_store *s, struct pilot_model *m, void *arg)
{
    struct serve *w = arg;
    (void)s;
    log_model(m);
    ads_server_set_model(w->ads, m);
}

static void on_grpc_down(struct grpc_server *g, void *arg)
{
    struct serve *w = arg;
    (void)g;
    loop_stop(w->loop);
}

static void on_signal(struct loop *l, struct io *io, uint32_t events)
{
    struct serve *w = io->data;
    struct signalfd_siginfo si;
    (void)events;
    (void)l;
    while (read(w->sfd, &si, sizeof si) == sizeof si) {
        if (w->stopping)
            continue;
        w->stopping = true;
        log_info("weftd: shutting down");
        ads_server_finish_all(w->ads);
        grpc_server_shutdown(w->grpc, 2000, on_grpc_down, w);
    }
}

/* "HOST:PORT", "[V6]:PORT" or ":PORT" into host (0.0.0.0 when empty) and port. */
static int parse_hostport(const char *v, char *host, size_t cap, uint16_t *port)
{
    const char *colon = strrchr(v, ':');
    if (!colon)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || end == colon + 1)
        return -1;
    size_t hl = (size_t)(colon - v);
    if (hl >= 2 && v[0] == '[' && v[hl - 1] == ']')
        v++, hl -= 2;
    if (hl >= cap)
        return -1;
    if (!hl)
        snprintf(host, cap, "0.0.0.0");
    else
        snprintf(host, cap, "%.*s", (int)hl, v);
    *port = (uint16_t)p;
    return 0;
}

/* "100ms", "1s", "250" (ms) into milliseconds. */
static int parse_ms(const char *v, uint64_t *ms)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || d < 0)
        return -1;
    if (!*end || !strcmp(end, "ms"))
        *ms = (uint64_t)d;
    else if (!strcmp(end, "s"))
        *ms = (uint64_t)(d * 1000);
    else
        return -1;
    return 0;
}

static int do_serve(struct pilot_store *store, const char *grpc_addr, const char *debug_addr,
                    uint64_t debounce_ms)
{
    struct serve w = {0};
    char ghost[256], dhost[256];
    uint16_t gport, dport;
    if (parse_hostport(grpc_addr, ghost, sizeof ghost, &gport) < 0 ||
        parse_hostport(debug_addr, dhost, sizeof dhost, &dport) < 0) {
        fprintf(stderr, "weftd: bad address (expected HOST:PORT)\n");
        pilot_store_free(store);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    w.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    w.loop = loop_new(NULL, NULL);
    if (w.sfd < 0 || !w.loop) {
        fprintf(stderr, "weftd: cannot start the event loop\n");
        return 1;
    }
    struct pilot_model *m = pilot_store_snapshot(store);
    struct ads_config acfg = {.debounce_ms = debounce_ms ? debounce_ms : 100};
    w.ads = ads_server_new(w.loop, m, &acfg);
    pilot_model_unref(m);
    struct grpc_server_config gcfg = {.max_streams = 16, .idle_timeout_ms = UINT32_MAX,
                                      .max_connections = 20000,
                                      .max_message = 64u * 1024 * 1024,
                                      .send_queue_bytes = 4u * 1024 * 1024};
    w.grpc = grpc_server_new(w.loop, &gcfg);
    int rc = w.ads && w.grpc ? ads_server_register(w.ads, w.grpc) : -ENOMEM;
    int gbound = rc < 0 ? rc : grpc_server_listen(w.grpc, ghost, gport);
    if (gbound < 0) {
        fprintf(stderr, "weftd: xDS gRPC on %s: %s\n", grpc_addr, strerror(-gbound));
        return 1;
    }
    int dbound = 0, derr = 0;
    w.debug = pilot_debug_new(w.loop, dhost, dport, w.ads, &dbound, &derr);
    if (!w.debug) {
        fprintf(stderr, "weftd: debug HTTP on %s: %s\n", debug_addr, strerror(-derr));
        return 1;
    }
    rc = pilot_store_watch(store, w.loop, on_model, &w);
    if (rc < 0) {
        fprintf(stderr, "weftd: inotify: %s\n", strerror(-rc));
        return 1;
    }
    io_start(w.loop, &w.sig, w.sfd, EPOLLIN, on_signal, &w);
    log_model(ads_server_model(w.ads));   /* after the watch is set: tests wait for this line */
    log_info("weftd: xDS (ADS gRPC) on %s:%d, debug and metrics on http://%s:%d, debounce %llums",
             ghost, gbound, dhost, dbound, (unsigned long long)acfg.debounce_ms);
    loop_run(w.loop);
    io_stop(w.loop, &w.sig);
    close(w.sfd);
    pilot_debug_free(w.debug);
    grpc_server_free(w.grpc);
    ads_server_free(w.ads);
    pilot_store_free(store);
    loop_free(w.loop);
    log_info("weftd: stopped");
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *dump = NULL, *suffix = "cluster.local";
    const char *grpc_addr = "0.0.0.0:15010", *debug_addr = "0.0.0.0:15014";
    uint64_t debounce_ms = 100;
    int validate = 0, type = -1, nlabels = 0;
    char **labels = calloc((size_t)argc + 1, sizeof *labels);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--config-dir") && v) {
            dir = v, i++;
        } else if ((!strcmp(a, "--domain-suffix") || !strcmp(a, "--domain")) && v) {
            suffix = v, i++;
        } else if (!strcmp(a, "--grpc-addr") && v) {
            grpc_addr = v, i++;
        } else if (!strcmp(a, "--debug-addr") && v) {
            debug_addr = v, i++;
        } else if (!strcmp(a, "--debounce") && v) {
            if (parse_ms(v, &debounce_ms) < 0) {
                fprintf(stderr, "weftd: --debounce %s: expected a duration (100ms, 1s)\n", v);
                free(labels);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--dump") && v) {
            dump = v, i++;
        } else if (!strcmp(a, "--label") && v) {
            labels[nlabels++] = argv[++i];
        } else if (!strcmp(a, "--type") && v) {
            for (int t = 0; t < PILOT_TYPE_COUNT; t++)
                if (!strcmp(v, pilot_type_name((enum pilot_type)t)))
                    type = t;
            if (type < 0) {
                fprintf(stderr, "weftd: --type %s: expected lds, rds, cds or eds\n", v);
                free(labels);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--validate")) {
            validate = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            free(labels);
            return 0;
        } else {
            fprintf(stderr, "weftd: unknown or incomplete argument %s\n", a);
            usage(stderr);
            free(labels);
            return 2;
        }
    }
    if (!dir) {
        usage(stderr);
        free(labels);
        return 2;
    }
    struct pilot_store *store = pilot_store_new(dir, suffix);
    if (!store) {
        fprintf(stderr, "weftd: out of memory\n");
        free(labels);
        return 1;
    }
    int rc = 0;
    if (validate || dump) {
        struct pilot_model *m = pilot_store_snapshot(store);
        if (validate) {
            for (size_t i = 0; i < m->errors.n; i++)
                printf("%s\n", m->errors.msgs[i]);
            print_warnings(m);
            if (!m->errors.n)
                printf("%s: %zu objects, no errors\n", dir, m->n_objs);
            rc = m->errors.n ? 1 : 0;
        } else {
            rc = do_dump(m, dump, type, labels, nlabels);
        }
        pilot_model_unref(m);
        pilot_store_free(store);
    } else {
        rc = do_serve(store, grpc_addr, debug_addr, debounce_ms);
    }
    free(labels);
    return rc;
}
