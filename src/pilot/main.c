/* weftd: Weft's istiod. For now offline: reads Istio's YAML from a directory, validates it
 * (--validate), prints what a proxy would receive (--dump), or watches the directory and
 * logs every new config version (the xDS server will serve those snapshots). */
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
#include "pilot/store.h"
#include "pilot/translate.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: weftd --config-dir DIR [--domain-suffix SUFFIX]\n"
            "             [--validate | --dump PROXY_ID [--type lds|rds|cds|eds] [--label K=V]...]\n"
            "  --validate   print every configuration error (FILE:LINE: field.path: problem);\n"
            "               exit 1 when there is any; then warnings about references between\n"
            "               objects (undefined subsets, unknown hosts), which do not change the exit code\n"
            "  --dump ID    print the resources the proxy with node id ID\n"
            "               (sidecar~IP~POD.NS~NS.svc.cluster.local) would receive, as JSON\n"
            "               DiscoveryResponses (all four types in ADS order without --type)\n"
            "  --label K=V  the proxy's labels (default: those of the WorkloadEntry at its IP)\n"
            "without --validate or --dump, weftd watches DIR and logs each config version\n");
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

struct watch {
    struct loop *loop;
    struct io sig;
    int sfd;
};

static void on_model(struct pilot_store *s, struct pilot_model *m, void *arg)
{
    (void)s;
    (void)arg;
    log_info("weftd: config version %llu: %zu objects, %zu services, %zu errors",
             (unsigned long long)m->version, m->n_objs, m->reg->n, m->errors.n);
    for (size_t i = 0; i < m->errors.n; i++)
        log_warn("weftd: %s", m->errors.msgs[i]);
}

static void on_signal(struct loop *l, struct io *io, uint32_t events)
{
    struct watch *w = io->data;
    struct signalfd_siginfo si;
    (void)events;
    while (read(w->sfd, &si, sizeof si) == sizeof si)
        loop_stop(l);
}

static int do_watch(struct pilot_store *store)
{
    struct watch w = {0};
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    w.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    w.loop = loop_new(NULL, NULL);
    if (w.sfd < 0 || !w.loop) {
        fprintf(stderr, "weftd: cannot start the event loop\n");
        return 1;
    }
    int rc = pilot_store_watch(store, w.loop, on_model, NULL);
    if (rc < 0) {
        fprintf(stderr, "weftd: inotify: %s\n", strerror(-rc));
        loop_free(w.loop);
        return 1;
    }
    io_start(w.loop, &w.sig, w.sfd, EPOLLIN, on_signal, &w);
    struct pilot_model *m = pilot_store_snapshot(store);
    on_model(store, m, NULL);
    pilot_model_unref(m);
    log_info("weftd: watching for changes");
    loop_run(w.loop);
    io_stop(w.loop, &w.sig);
    close(w.sfd);
    pilot_store_free(store);
    loop_free(w.loop);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *dump = NULL, *suffix = "cluster.local";
    int validate = 0, type = -1, nlabels = 0;
    char **labels = calloc((size_t)argc + 1, sizeof *labels);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--config-dir") && v) {
            dir = v, i++;
        } else if (!strcmp(a, "--domain-suffix") && v) {
            suffix = v, i++;
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
        rc = do_watch(store);
    }
    free(labels);
    return rc;
}
