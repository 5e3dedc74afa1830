/* ctl/pods: a pod's life. Start (namespace, veth, /etc/hosts, weft-init, weft-proxy as UID
 * 1337, then the app once the proxy is ready, then the WorkloadEntry once the app listens) and
 * stop (WorkloadEntry removed, app stopped, then the proxy drains, then the namespace goes). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl/sup.h"
#include "pilot/registry.h"

static const char *doc_label(struct mesh *m, const char *kind_ns_name, const char *label)
{
    for (size_t i = 0; i < m->n_docs; i++)
        if (!strcmp(m->docs[i].key, kind_ns_name) && m->docs[i].objs.n)
            return istio_label(m->docs[i].objs.items[0], label);
    return NULL;
}

/* Istio's injection policy: the namespace label istio-injection (or istio.io/rev), the pod
 * label sidecar.istio.io/inject, and the (deprecated) annotation of the same name. */
static int wants_sidecar(struct mesh *m, const struct ctl_deployment *d)
{
    char key[200];
    snprintf(key, sizeof key, "Namespace/default/%s", d->ns);
    const char *nsl = doc_label(m, key, "istio-injection");
    int ns_on = (nsl && !strcmp(nsl, "enabled")) || doc_label(m, key, "istio.io/rev");
    const char *pl = ctl_kv_get(d->labels, d->n_labels, "sidecar.istio.io/inject");
    const char *an = ctl_kv_get(d->annotations, d->n_annotations, "sidecar.istio.io/inject");
    if (nsl && !strcmp(nsl, "disabled"))
        return 0;
    if (pl)
        return !strcmp(pl, "true");
    if (an && strcmp(an, "true") && strcmp(an, "y") && strcmp(an, "yes"))
        return 0;
    return ns_on;
}

static void quote(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++)
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 32)
            fprintf(f, "\\x%02x", *s);
        else
            fputc(*s, f);
    fputc('"', f);
}

static void labels_flow(FILE *f, const struct ctl_deployment *d)
{
    fputc('{', f);
    for (size_t i = 0; i < d->n_labels; i++) {
        fputs(i ? ", " : "", f);
        quote(f, d->labels[i].k);
        fputs(": ", f);
        quote(f, d->labels[i].v);
    }
    fputc('}', f);
}

static int write_bootstrap(struct mesh *m, struct pod *p)
{
    char *path = ctl_sprintf("%s/bootstrap.yaml", p->dir);
    FILE *f = fopen(path, "w");
    free(path);
    if (!f)
        return -1;
    const char *app = ctl_kv_get(p->dep->labels, p->dep->n_labels, "app");
    fprintf(f, "node:\n  id: sidecar~%s~%s.%s~%s.svc.%s\n  cluster: %s.%s\n", p->ip, p->name, p->ns,
            p->ns, m->o->domain, app ? app : p->dep->name, p->ns);
    fprintf(f, "  metadata:\n    NAMESPACE: ");
    quote(f, p->ns);
    fprintf(f, "\n    NAME: ");
    quote(f, p->name);
    fprintf(f, "\n    SERVICE_ACCOUNT: ");
    quote(f, p->dep->service_account);
    fprintf(f, "\n    INSTANCE_IPS: \"%s\"\n    WORKLOAD_NAME: ", p->ip);
    quote(f, p->dep->name);
    fprintf(f, "\n    ISTIO_VERSION: \"1.22.0\"\n    LABELS: ");
    labels_flow(f, p->dep);
    fprintf(f, "\ndynamic_resources:\n  ads_config:\n    api_type: GRPC\n    transport_api_version: V3\n"
               "    grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]\n"
               "  cds_config: {ads: {}, resource_api_version: V3}\n"
               "  lds_config: {ads: {}, resource_api_version: V3}\n"
               "static_resources:\n  clusters:\n  - name: xds-grpc\n    type: STATIC\n"
               "    connect_timeout: 1s\n    typed_extension_protocol_options:\n"
               "      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n"
               "        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n"
               "        explicit_http_config: {http2_protocol_options: {}}\n"
               "    load_assignment:\n      cluster_name: xds-grpc\n"
               "      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: 15010}}}}]}]\n"
               "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: 15000}}\n",
            m->weftd_ip);
    return fclose(f);
}

static int write_workload_entry(struct pod *p)
{
    char *tmp = ctl_sprintf("%s.tmp~", p->we_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(tmp);
        return -1;
    }
    fprintf(f, "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: ");
    quote(f, p->name);
    fprintf(f, "\n  namespace: ");
    quote(f, p->ns);
    fprintf(f, "\nspec:\n  address: %s\n  labels: ", p->ip);
    labels_flow(f, p->dep);
    fprintf(f, "\n  serviceAccount: ");
    quote(f, p->dep->service_account);
    int any = 0;
    for (size_t c = 0; c < p->dep->n_containers; c++)
        for (size_t i = 0; i < p->dep->containers[c].n_ports; i++)
            if (p->dep->containers[c].port_names[i]) {
                fprintf(f, "%s", any++ ? ", " : "\n  ports: {");
                quote(f, p->dep->containers[c].port_names[i]);
                fprintf(f, ": %u", p->dep->containers[c].ports[i]);
            }
    fprintf(f, "%s\n", any ? "}" : "");
    int rc = fclose(f);
    if (rc == 0)
        rc = rename(tmp, p->we_path);
    free(tmp);
    return rc;
}

void mesh_write_hosts(struct mesh *m)
{
    struct mesh_registry mr;
    mesh_registry_build(m, 0, &mr);
    const struct registry *r = mr.r;
    for (size_t i = 0; i < m->n_pods; i++) {
        struct pod *p = m->pods[i];
        char *path = ctl_sprintf("/etc/netns/%s/hosts", p->netns);
        char *dir = ctl_sprintf("/etc/netns/%s", p->netns);
        ctl_mkdirs(dir);
        free(dir);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        fprintf(f, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n%s\t%s\n", p->ip, p->name);
        for (size_t s = 0; r && s < r->n; s++) {
            const struct reg_service *sv = &r->svcs[s];
            if (!sv->vip[0])
                continue;
            fprintf(f, "%s\t%s", sv->vip, sv->hostname);
            if (!sv->from_service_entry) {
                fprintf(f, " %s.%s.svc %s.%s", sv->name, sv->ns, sv->name, sv->ns);
                if (!strcmp(sv->ns, p->ns))
                    fprintf(f, " %s", sv->name);
            }
            fputc('\n', f);
        }
        fclose(f);
        ctl_write_file(path, buf);
        free(buf);
        free(path);
    }
    mesh_registry_free(&mr);
}

static struct pod *pod_new(struct mesh *m, const struct ctl_deployment *d)
{
    uint32_t h = 10;
    while (h < m->n_hosts && m->used[h])
        h++;
    if (h >= m->n_hosts)
        return NULL;
    m->used[h] = 1;
    struct pod *p = calloc(1, sizeof *p);
    p->host = h;
    p->dep = d;
    m->seq++;
    snprintf(p->name, sizeof p->name, "%.80s-%05x-%u", d->name, d->hash & 0xfffff, m->seq);
    snprintf(p->ns, sizeof p->ns, "%s", d->ns);
    snprintf(p->netns, sizeof p->netns, "%s-%s", m->o->name, p->name);
    snprintf(p->veth, sizeof p->veth, "%.8sv%u", m->o->name, m->seq % 100000);
    ctl_ip_str(m->o->net, h, p->ip);
    p->injected = wants_sidecar(m, d);
    p->proxy_exit = -1;
    for (size_t i = 0; i < CTL_MAX_CONTAINERS; i++)
        p->app_exit[i] = -1;
    p->dir = ctl_sprintf("%s/pods/%s", m->o->state_dir, p->name);
    p->we_path = ctl_sprintf("%s/%s.yaml", m->pods_cfg_dir, p->name);
    m->pods = realloc(m->pods, (m->n_pods + 1) * sizeof *m->pods);
    m->pods[m->n_pods++] = p;
    return p;
}

void mesh_reap(struct mesh *m)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (pid == m->weftd)
            m->weftd = 0;
        for (size_t i = 0; i < m->n_pods; i++) {
            struct pod *p = m->pods[i];
            if (p->proxy == pid)
                p->proxy = 0, p->proxy_exit = code;
            for (size_t c = 0; c < CTL_MAX_CONTAINERS; c++)
                if (p->app[c] == pid)
                    p->app[c] = 0, p->app_exit[c] = code;
        }
    }
}

static void fail(struct pod *p, FILE *out, const char *what)
{
    p->failed = 1;
    fprintf(out, "pod %s: %s (weftctl mesh logs %s%s)\n", p->name, what, p->name,
            strstr(what, "sidecar") ? " --proxy" : "");
}

/* Plumbing, hosts, and for injected pods weft-init and the proxy. */
static void start_sidecar(struct mesh *m, struct pod *p, FILE *out)
{
    char err[512];
    ctl_mkdirs(p->dir);
    char *hdir = ctl_sprintf("/etc/netns/%s", p->netns);
    ctl_mkdirs(hdir);
    free(hdir);
    if (ctl_netns_add(p->netns, err, sizeof err) < 0 ||
        ctl_netns_wire(p->netns, p->veth, m->o->bridge, p->ip, m->o->prefix, m->gw, err, sizeof err) < 0) {
        fprintf(out, "pod %s: network: %s\n", p->name, err);
        p->failed = 1;
        return;
    }
    if (!p->injected)
        return;
    if (write_bootstrap(m, p) < 0) {
        fail(p, out, "cannot write the sidecar's bootstrap");
        return;
    }
    const struct ctl_deployment *d = p->dep;
    static const char *const flags[][2] = {
        {"traffic.sidecar.istio.io/includeInboundPorts", "-b"},
        {"traffic.sidecar.istio.io/excludeInboundPorts", "-d"},
        {"traffic.sidecar.istio.io/includeOutboundIPRanges", "-i"},
        {"traffic.sidecar.istio.io/excludeOutboundIPRanges", "-x"},
        {"traffic.sidecar.istio.io/includeOutboundPorts", "-q"},
        {"traffic.sidecar.istio.io/excludeOutboundPorts", "-o"},
        {"traffic.sidecar.istio.io/kubevirtInterfaces", "-k"},
        {"traffic.sidecar.istio.io/excludeInterfaces", "-c"},
        {"sidecar.istio.io/interceptionMode", "-m"},
    };
    char *argv[2 + 2 * (sizeof flags / sizeof *flags) + 1];
    size_t n = 0;
    argv[n++] = ctl_sprintf("%s/weft-init", ctl_bindir());
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        const char *v = ctl_kv_get(d->annotations, d->n_annotations, flags[i][0]);
        if (v) {
            argv[n++] = (char *)flags[i][1];
            argv[n++] = (char *)v;
        }
    }
    argv[n] = NULL;
    char *log = ctl_sprintf("%s/init.log", p->dir);
    pid_t pid = ctl_spawn_in(p->netns, argv, NULL, -1, log);
    int st = -1;
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    free(argv[0]);
    if (pid < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
        char *t = ctl_read_file(log, NULL);
        fprintf(out, "pod %s: weft-init failed: %s", p->name, t ? t : "\n");
        free(t);
        free(log);
        p->failed = 1;
        return;
    }
    free(log);
    char *boot = ctl_sprintf("%s/bootstrap.yaml", p->dir), *plog = ctl_sprintf("%s/proxy.log", p->dir);
    char *pargv[] = {ctl_sprintf("%s/weft-proxy", ctl_bindir()), "-c", boot, "--concurrency", "1",
                     "--drain-time-s", "2", NULL};
    p->proxy = ctl_spawn_in(p->netns, pargv, NULL, 1337, plog);
    free(pargv[0]), free(boot), free(plog);
}

static void start_apps(struct mesh *m, struct pod *p, FILE *out)
{
    (void)m;
    char *log = ctl_sprintf("%s/app.log", p->dir);
    for (size_t c = 0; c < p->dep->n_containers; c++) {
        const struct ctl_container *k = &p->dep->containers[c];
        char **env = calloc(k->n_env + 6, sizeof *env);
        size_t n = 0;
        env[n++] = ctl_sprintf("HOSTNAME=%s", p->name);
        env[n++] = ctl_sprintf("POD_NAME=%s", p->name);
        env[n++] = ctl_sprintf("POD_NAMESPACE=%s", p->ns);
        env[n++] = ctl_sprintf("INSTANCE_IP=%s", p->ip);
        env[n++] = ctl_sprintf("SERVICE_ACCOUNT=%s", p->dep->service_account);
        for (size_t i = 0; i < k->n_env; i++)
            env[n++] = ctl_sprintf("%s=%s", k->env[i].k, k->env[i].v);
        p->app[c] = ctl_spawn_in(p->netns, k->argv, env, k->run_as_user, log);
        for (size_t i = 0; i < n; i++)
            free(env[i]);
        free(env);
        if (p->app[c] < 0)
            fail(p, out, "cannot start the app");
    }
    free(log);
}

static int apps_listening(struct pod *p)
{
    for (size_t c = 0; c < p->dep->n_containers; c++) {
        if (p->app_exit[c] >= 0)
            return -1;
        const struct ctl_container *k = &p->dep->containers[c];
        for (size_t i = 0; i < k->n_ports; i++) {
            int s = ctl_netns_connect(p->netns, "127.0.0.1", (int)k->ports[i], 200);
            if (s < 0)
                s = ctl_netns_connect(p->netns, p->ip, (int)k->ports[i], 200);
            if (s < 0)
                return 0;
            close(s);
        }
    }
    return 1;
}

static void wait_all(struct mesh *m, struct pod **ps, size_t n, int phase, FILE *out)
{
    double end = ctl_now() + 60;
    for (;;) {
        mesh_reap(m);
        size_t waiting = 0;
        for (size_t i = 0; i < n; i++) {
            struct pod *p = ps[i];
            if (p->failed || p->ready)
                continue;
            if (phase == 0) {
                if (!p->injected || p->ready)
                    continue;
                if (p->proxy_exit >= 0) {
                    fail(p, out, "the sidecar exited");
                    continue;
                }
                char buf[256];
                if (ctl_http_get(p->netns, "127.0.0.1", 15000, "/ready", buf, sizeof buf) == 200)
                    continue;
            } else {
                int r = apps_listening(p);
                if (r < 0) {
                    fail(p, out, "the app exited");
                    continue;
                }
                if (r > 0) {
                    p->ready = 1;
                    continue;
                }
            }
            if (ctl_now() > end) {
                fail(p, out, phase == 0 ? "the sidecar did not become ready in 60 s"
                                        : "the app did not listen on its ports in 60 s");
                continue;
            }
            waiting++;
        }
        if (!waiting)
            return;
        ctl_sleep_ms(50);
    }
}

static const struct ctl_deployment *desired(struct mesh *m, const char *ns, const char *name)
{
    for (size_t i = 0; i < m->n_docs; i++) {
        const struct ctl_deployment *d = m->docs[i].dep;
        if (d && !strcmp(d->ns, ns) && !strcmp(d->name, name))
            return d;
    }
    return NULL;
}

int mesh_reconcile(struct mesh *m, FILE *out)
{
    mesh_write_hosts(m);
    struct pod **fresh = NULL;
    size_t nf = 0;
    for (size_t i = 0; i < m->n_docs; i++) {
        const struct ctl_deployment *d = m->docs[i].dep;
        if (!d)
            continue;
        int have = 0;
        for (size_t k = 0; k < m->n_pods; k++)
            if (!strcmp(m->pods[k]->ns, d->ns) && !strcmp(m->pods[k]->dep->name, d->name) &&
                m->pods[k]->dep->hash == d->hash)
                have++;
        for (; have < d->replicas; have++) {
            struct pod *p = pod_new(m, d);
            if (!p) {
                fprintf(out, "deployment %s: no address left in the subnet\n", d->name);
                break;
            }
            fresh = realloc(fresh, (nf + 1) * sizeof *fresh);
            fresh[nf++] = p;
        }
    }
    mesh_write_hosts(m);
    for (size_t i = 0; i < nf; i++)
        start_sidecar(m, fresh[i], out);
    wait_all(m, fresh, nf, 0, out);
    for (size_t i = 0; i < nf; i++)
        if (!fresh[i]->failed)
            start_apps(m, fresh[i], out);
    wait_all(m, fresh, nf, 1, out);
    long v = mesh_config_version(m);
    int failed = 0, wrote = 0;
    for (size_t i = 0; i < nf; i++) {
        if (fresh[i]->ready && write_workload_entry(fresh[i]) == 0)
            wrote++;
        failed += fresh[i]->failed;
    }
    if (wrote)
        mesh_wait_converged(m, v, 10);
    free(fresh);
    /* Pods no longer wanted: another template, a Deployment gone, or more than its replicas. */
    struct pod **old = NULL;
    size_t no = 0;
    for (size_t k = m->n_pods; k-- > 0;) {
        struct pod *p = m->pods[k];
        const struct ctl_deployment *d = desired(m, p->ns, p->dep->name);
        int keep = 0;
        if (d && d->hash == p->dep->hash) {
            int newer = 0;
            for (size_t j = 0; j < k; j++)
                if (m->pods[j]->dep->hash == d->hash && !strcmp(m->pods[j]->ns, d->ns) &&
                    !strcmp(m->pods[j]->dep->name, d->name))
                    newer++;
            keep = newer < d->replicas;
        }
        if (!keep) {
            old = realloc(old, (no + 1) * sizeof *old);
            old[no++] = p;
        }
    }
    mesh_stop_pods(m, old, no);
    free(old);
    mesh_write_vips(m);
    mesh_write_pod_list(m);
    return failed;
}

static void signal_all(struct pod **ps, size_t n, int proxy, int sig)
{
    for (size_t i = 0; i < n; i++) {
        if (proxy && ps[i]->proxy > 0)
            kill(-ps[i]->proxy, sig);
        for (size_t c = 0; !proxy && c < CTL_MAX_CONTAINERS; c++)
            if (ps[i]->app[c] > 0)
                kill(-ps[i]->app[c], sig);
    }
}

static int any_alive(struct pod **ps, size_t n, int proxy)
{
    for (size_t i = 0; i < n; i++) {
        if (proxy && ps[i]->proxy > 0)
            return 1;
        for (size_t c = 0; !proxy && c < CTL_MAX_CONTAINERS; c++)
            if (ps[i]->app[c] > 0)
                return 1;
    }
    return 0;
}

void mesh_stop_pods(struct mesh *m, struct pod **list, size_t n)
{
    if (!n)
        return;
    /* A copy: list may be m->pods itself, which the loop below shrinks. */
    struct pod **ps = malloc(n * sizeof *ps);
    memcpy(ps, list, n * sizeof *ps);
    long v = mesh_config_version(m);
    int removed = 0;
    for (size_t i = 0; i < n; i++)
        removed += unlink(ps[i]->we_path) == 0;
    if (removed)
        mesh_wait_converged(m, v, 5);
    for (int proxy = 0; proxy < 2; proxy++) {
        signal_all(ps, n, proxy, SIGTERM);
        double end = ctl_now() + (proxy ? 5 : 10);
        while (any_alive(ps, n, proxy) && ctl_now() < end) {
            ctl_sleep_ms(20);
            mesh_reap(m);
        }
        signal_all(ps, n, proxy, SIGKILL);
    }
    for (size_t i = 0; i < n; i++) {
        struct pod *p = ps[i];
        ctl_netns_del(p->netns);
        m->used[p->host] = 0;
        for (size_t k = 0; k < m->n_pods; k++)
            if (m->pods[k] == p) {
                memmove(&m->pods[k], &m->pods[k + 1], (m->n_pods - k - 1) * sizeof *m->pods);
                m->n_pods--;
                break;
            }
        ctl_rmtree(p->dir);
        free(p->dir), free(p->we_path), free(p);
    }
    free(ps);
    for (int i = 0; i < 20; i++) {
        ctl_sleep_ms(10);
        mesh_reap(m);
    }
}

void mesh_write_pod_list(struct mesh *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    for (size_t i = 0; i < m->n_pods; i++) {
        struct pod *p = m->pods[i];
        fprintf(f, "%s\t%s\t%s\t%s\t%s\t%d\n", p->name, p->ns, p->dep->name, p->ip, p->netns, p->injected);
    }
    fclose(f);
    char *path = ctl_state_path(m->o, "pods.txt");
    ctl_write_atomic(path, buf);
    free(path), free(buf);
}
