/* ctl/supervisor: the process that owns a mesh. It starts the bridge, weftd (in its own
 * network namespace at SUBNET.2, serving STATE/config) and the pods, then answers apply, delete,
 * status and down on STATE/ctl.sock, one request at a time. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl/sup.h"

static volatile sig_atomic_t stop_requested;
static void on_stop(int sig) { (void)sig; stop_requested = 1; }

long mesh_config_version(struct mesh *m)
{
    static char buf[1 << 20];
    if (ctl_http_get(NULL, m->weftd_ip, 15014, "/debug/configz", buf, sizeof buf) != 200)
        return -1;
    json_t *j = json_loads(buf, 0, NULL);
    long v = j ? (long)json_integer_value(json_object_get(j, "version")) : -1;
    json_decref(j);
    return v;
}

/* Every proxy has ACKed what weftd sent, and nothing is pending. */
static int converged(struct mesh *m)
{
    static char buf[1 << 20];
    if (ctl_http_get(NULL, m->weftd_ip, 15014, "/debug/syncz", buf, sizeof buf) != 200)
        return 0;
    json_t *j = json_loads(buf, 0, NULL), *c;
    size_t i;
    int ok = j != NULL;
    json_array_foreach(j, i, c) {
        const char *k;
        json_t *t;
        json_object_foreach(json_object_get(c, "types"), k, t) {
            const char *sent = json_string_value(json_object_get(t, "sent_nonce"));
            const char *ack = json_string_value(json_object_get(t, "acked_nonce"));
            const char *nack = json_string_value(json_object_get(t, "nacked_nonce"));
            if (json_is_true(json_object_get(t, "pending")) ||
                (sent && strcmp(sent, ack ? ack : "") && strcmp(sent, nack ? nack : "")))
                ok = 0;
        }
    }
    json_decref(j);
    return ok;
}

void mesh_wait_converged(struct mesh *m, long after, double timeout_s)
{
    double end = ctl_now() + timeout_s;
    while (ctl_now() < end && mesh_config_version(m) <= after)
        ctl_sleep_ms(20);
    ctl_sleep_ms(150); /* weftd's debounce (100 ms) before the push */
    while (ctl_now() < end && !converged(m))
        ctl_sleep_ms(20);
}

static char *obj_file(struct mesh *m, const char *key)
{
    char *s = ctl_sprintf("%s/%s.yaml", m->objs_dir, key);
    for (char *p = s + strlen(m->objs_dir) + 1; *p; p++)
        if (*p == '/')
            *p = '_';
    return s;
}

static void retire(struct mesh *m, struct ctl_doc *d)
{
    if (d->dep) {
        m->keep = realloc(m->keep, (m->n_keep + 1) * sizeof *m->keep);
        m->keep[m->n_keep++] = d->dep;
        d->dep = NULL;
    }
    ctl_doc_free(d);
}

/* Takes the documents of mf (moved out of it) into the mesh, replacing same-named objects
 * (apply), or removes the objects it names (del). */
static void take_docs(struct mesh *m, struct ctl_manifest *mf, int del, FILE *out)
{
    for (size_t i = 0; i < mf->n; i++) {
        struct ctl_doc *d = &mf->docs[i];
        size_t k = 0;
        while (k < m->n_docs && strcmp(m->docs[k].key, d->key))
            k++;
        char *path = obj_file(m, d->key);
        if (del) {
            if (k < m->n_docs) {
                unlink(path);
                retire(m, &m->docs[k]);
                m->docs[k] = m->docs[--m->n_docs];
                fprintf(out, "%s deleted\n", d->key);
            } else {
                fprintf(out, "%s not found\n", d->key);
            }
            free(path);
            continue;
        }
        int same = k < m->n_docs && !strcmp(m->docs[k].text, d->text);
        if (!d->dep && !same)
            ctl_write_atomic(path, d->text);
        free(path);
        fprintf(out, "%s %s\n", d->key, k == m->n_docs ? "created" : same ? "unchanged" : "configured");
        if (k < m->n_docs) {
            retire(m, &m->docs[k]);
        } else {
            m->docs = realloc(m->docs, (m->n_docs + 1) * sizeof *m->docs);
            m->n_docs++;
        }
        m->docs[k] = *d;
        memset(d, 0, sizeof *d);
    }
}

static int load(struct mesh *m, char **files, size_t n, int del, FILE *out)
{
    struct ctl_manifest *mf = calloc(n ? n : 1, sizeof *mf);
    struct istio_errors errs = {0};
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= ctl_manifest_read(files[i], &mf[i], &errs) < 0;
    for (size_t i = 0; i < errs.n; i++)
        fprintf(out, "%s\n", errs.msgs[i]);
    istio_errors_free(&errs);
    for (size_t i = 0; i < n; i++) {
        if (!bad)
            take_docs(m, &mf[i], del, out);
        ctl_manifest_free(&mf[i]);
    }
    free(mf);
    return bad ? -1 : 0;
}

static int setup_network(struct mesh *m, FILE *out)
{
    char err[512], cidr[32];
    snprintf(cidr, sizeof cidr, "%s/%d", m->gw, m->o->prefix);
    char *br = (char *)m->o->bridge;
    if (CTL_RUN(err, sizeof err, "ip", "link", "add", br, "type", "bridge") ||
        CTL_RUN(err, sizeof err, "ip", "addr", "add", cidr, "dev", br) ||
        CTL_RUN(err, sizeof err, "ip", "link", "set", br, "up")) {
        fprintf(out, "weftctl: bridge %s: %s\n", br, err);
        return -1;
    }
    if (ctl_iptables_forward(m->o, 1)) {
        fprintf(out, "weftctl: iptables -I FORWARD failed\n");
        return -1;
    }
    char ns[40], veth[16];
    snprintf(ns, sizeof ns, "%s-weftd", m->o->name);
    snprintf(veth, sizeof veth, "%.8sv0", m->o->name);
    if (ctl_netns_add(ns, err, sizeof err) ||
        ctl_netns_wire(ns, veth, br, m->weftd_ip, m->o->prefix, m->gw, err, sizeof err)) {
        fprintf(out, "weftctl: weftd's namespace: %s\n", err);
        return -1;
    }
    char *cfg = ctl_state_path(m->o, "config"), *log = ctl_state_path(m->o, "weftd.log");
    char *argv[] = {ctl_sprintf("%s/weftd", ctl_bindir()), "--config-dir", cfg, "--grpc-addr",
                    "0.0.0.0:15010", "--debug-addr", "0.0.0.0:15014", NULL};
    m->weftd = ctl_spawn_in(ns, argv, NULL, -1, log);
    free(argv[0]), free(cfg), free(log);
    char buf[256];
    for (int i = 0; i < 600; i++) {
        if (ctl_http_get(NULL, m->weftd_ip, 15014, "/ready", buf, sizeof buf) == 200)
            return 0;
        mesh_reap(m);
        if (!m->weftd)
            break;
        ctl_sleep_ms(50);
    }
    fprintf(out, "weftctl: weftd did not start (see %s/weftd.log)\n", m->o->state_dir);
    return -1;
}

static void teardown(struct mesh *m)
{
    mesh_stop_pods(m, m->pods, m->n_pods);
    if (m->weftd > 0) {
        kill(m->weftd, SIGTERM);
        for (int i = 0; i < 100 && m->weftd; i++) {
            ctl_sleep_ms(20);
            mesh_reap(m);
        }
    }
    ctl_clean_leftovers(m->o);
}

/* What the supervisor holds, once teardown has stopped every pod. */
static void mesh_free(struct mesh *m, int lfd)
{
    for (size_t i = 0; i < m->n_docs; i++)
        ctl_doc_free(&m->docs[i]);
    for (size_t i = 0; i < m->n_keep; i++)
        ctl_deployment_free(m->keep[i]);
    free(m->docs), free(m->keep), free(m->pods), free(m->used);
    free(m->objs_dir), free(m->pods_cfg_dir);
    if (lfd >= 0)
        close(lfd);
}

static int listen_ctl(struct mesh *m)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(m->o->state_dir) > sizeof a.sun_path - 10)
        return -1;
    memcpy(a.sun_path, m->o->state_dir, strlen(m->o->state_dir));
    strcat(a.sun_path, "/ctl.sock");
    unlink(a.sun_path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 8) < 0)
        return -1;
    return s;
}

/* One request: words separated by tabs, ending with a newline. */
static int serve(struct mesh *m, int c)
{
    char req[16384];
    size_t n = 0;
    ssize_t k;
    struct timeval tv = {5, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (n + 1 < sizeof req && (k = read(c, req + n, sizeof req - 1 - n)) > 0) {
        n += (size_t)k;
        if (memchr(req, '\n', n))
            break;
    }
    req[n] = 0;
    char *nl = strchr(req, '\n');
    if (nl)
        *nl = 0;
    char *words[64];
    size_t nw = 0;
    for (char *s = strtok(req, "\t"); s && nw < 64; s = strtok(NULL, "\t"))
        words[nw++] = s;
    FILE *out = fdopen(dup(c), "w");
    int rc = 0, quit = 0;
    if (!nw) {
        rc = 2;
    } else if (!strcmp(words[0], "apply") || !strcmp(words[0], "delete")) {
        int del = !strcmp(words[0], "delete");
        if (load(m, words + 1, nw - 1, del, out) < 0)
            rc = 1;
        else
            rc = mesh_reconcile(m, out) ? 1 : 0;
    } else if (!strcmp(words[0], "status")) {
        mesh_status(m, out);
    } else if (!strcmp(words[0], "down")) {
        quit = 1;
    } else {
        fprintf(out, "unknown request %s\n", words[0]);
        rc = 2;
    }
    if (quit) {
        size_t np = m->n_pods;
        teardown(m);
        fprintf(out, "mesh down: %zu pods, weftd, bridge %s and their rules removed\n", np, m->o->bridge);
    }
    fprintf(out, "END %d\n", rc);
    fclose(out);
    close(c);
    return quit;
}

int ctl_supervise(const struct ctl_opts *o, char **files, size_t n, int report_fd)
{
    FILE *out = report_fd >= 0 ? fdopen(report_fd, "w") : stdout;
    setvbuf(out, NULL, _IOLBF, 0);
    struct mesh mesh = {.o = o}, *m = &mesh;
    double t0 = ctl_now();
    m->n_hosts = 1u << (32 - o->prefix);
    if (m->n_hosts > 65536)
        m->n_hosts = 65536;
    m->used = calloc(m->n_hosts, 1);
    ctl_ip_str(o->net, 1, m->gw);
    ctl_ip_str(o->net, 2, m->weftd_ip);
    m->objs_dir = ctl_state_path(o, "config/objects");
    m->pods_cfg_dir = ctl_state_path(o, "config/pods");
    ctl_mkdirs(m->objs_dir);
    ctl_mkdirs(m->pods_cfg_dir);
    char *pid = ctl_state_path(o, "supervisor.pid"), pids[32];
    snprintf(pids, sizeof pids, "%d\n", (int)getpid());
    ctl_write_atomic(pid, pids);
    free(pid);
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int lfd = -1;
    if (load(m, files, n, 0, out) < 0 || setup_network(m, out) < 0 || (lfd = listen_ctl(m)) < 0) {
        teardown(m);
        fprintf(out, "END 1\n");
        if (report_fd >= 0)
            fclose(out);
        mesh_free(m, lfd);
        return 1;
    }
    int failed = mesh_reconcile(m, out);
    mesh_status(m, out);
    fprintf(out, "mesh up: %zu pods in %.1f s%s. Try: weftctl mesh status | exec POD -- curl ... | down\n",
            m->n_pods, ctl_now() - t0, failed ? ", some failed" : "");
    fprintf(out, "END %d\n", failed ? 1 : 0);
    if (report_fd >= 0)
        fclose(out);
    for (;;) {
        mesh_reap(m);
        if (stop_requested) {
            teardown(m);
            break;
        }
        struct pollfd p = {lfd, POLLIN, 0};
        if (poll(&p, 1, 200) == 1) {
            int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0 && serve(m, c))
                break;
        }
    }
    mesh_free(m, lfd);
    return 0;
}
