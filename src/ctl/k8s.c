/* ctl/k8s: Kubernetes-style manifests as weftctl reads them. Deployments (apps/v1) are read
 * here from the YAML tree (replicas, pod template labels/annotations, serviceAccountName,
 * containers' command/args/env/ports/securityContext.runAsUser; image ignored); ServiceAccounts
 * are accepted and need nothing; everything else goes through istio_parse (Namespace, Service,
 * Istio kinds), the same parser and validation weftd uses, so a file weftctl accepts is one
 * weftd serves. Every problem is "FILE:LINE: path: problem". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/ctl.h"

const char *ctl_kv_get(const struct ctl_kv *kv, size_t n, const char *k)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(kv[i].k, k))
            return kv[i].v;
    return NULL;
}

static uint32_t fnv(uint32_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (h ^ 0xff) * 16777619u;
}

struct rd {
    const char *file;
    struct istio_errors *errs;
    int bad;
};

#define ERR(r, node, ...)                                                                   \
    do {                                                                                    \
        char m_[400];                                                                       \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                               \
        istio_errors_add((r)->errs, "%s:%d: %s", (r)->file, (node) ? (node)->line : 1, m_); \
        (r)->bad = 1;                                                                       \
    } while (0)

static const char *scalar(struct rd *r, const struct ytree *t, const char *path)
{
    if (!t || t->kind == YT_NULL)
        return NULL;
    if (t->kind != YT_SCALAR) {
        ERR(r, t, "%s: expected a string, got %s", path, ytree_kind_name(t->kind));
        return NULL;
    }
    return t->str;
}

static long number(struct rd *r, const struct ytree *t, const char *path, long dflt, long max)
{
    const char *s = scalar(r, t, path);
    if (!s)
        return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || end == s || v < 0 || v > max) {
        ERR(r, t, "%s: expected a number from 0 to %ld, got \"%.60s\"", path, max, s);
        return dflt;
    }
    return v;
}

static size_t read_kv(struct rd *r, const struct ytree *m, const char *path, struct ctl_kv **out,
                      uint32_t *h)
{
    *out = NULL;
    if (!m || m->kind == YT_NULL)
        return 0;
    if (m->kind != YT_MAP) {
        ERR(r, m, "%s: expected a map, got %s", path, ytree_kind_name(m->kind));
        return 0;
    }
    size_t n = m->n / 2;
    *out = calloc(n + 1, sizeof **out);
    for (size_t i = 0; i < n; i++) {
        const char *v = scalar(r, m->items[2 * i + 1], path);
        (*out)[i].k = strdup(m->items[2 * i]->str);
        (*out)[i].v = strdup(v ? v : "");
        *h = fnv(fnv(*h, (*out)[i].k), (*out)[i].v);
    }
    return n;
}

/* A list of strings (command, args) appended to c->argv. */
static void read_words(struct rd *r, const struct ytree *l, const char *path,
                       struct ctl_container *c, uint32_t *h)
{
    if (!l || l->kind == YT_NULL)
        return;
    if (l->kind != YT_SEQ) {
        ERR(r, l, "%s: expected a list of strings", path);
        return;
    }
    c->argv = realloc(c->argv, (c->argc + l->n + 1) * sizeof *c->argv);
    for (size_t i = 0; i < l->n; i++) {
        const char *s = scalar(r, l->items[i], path);
        c->argv[c->argc++] = strdup(s ? s : "");
        *h = fnv(*h, s);
    }
    c->argv[c->argc] = NULL;
}

static void read_container(struct rd *r, const struct ytree *t, const char *path,
                           struct ctl_container *c, uint32_t *h)
{
    char p[200];
    c->run_as_user = -1;
    if (t->kind != YT_MAP) {
        ERR(r, t, "%s: expected a map", path);
        return;
    }
    const char *name = scalar(r, ytree_get(t, "name"), path);
    c->name = strdup(name ? name : "app");
    const struct ytree *cmd = ytree_get(t, "command");
    snprintf(p, sizeof p, "%s.command", path);
    read_words(r, cmd, p, c, h);
    snprintf(p, sizeof p, "%s.args", path);
    read_words(r, ytree_get(t, "args"), p, c, h);
    if (!cmd || !c->argc) {
        ERR(r, cmd ? cmd : t, "%s.command: required (the image is ignored: name a program on this machine)",
            path);
    } else {
        char *exe = ctl_which(c->argv[0]);
        if (!exe)
            ERR(r, cmd, "%s.command: %s: no such program on this machine", path, c->argv[0]);
        else {
            free(c->argv[0]);
            c->argv[0] = exe;
        }
    }
    const struct ytree *env = ytree_get(t, "env");
    if (env && env->kind == YT_SEQ) {
        c->env = calloc(env->n + 1, sizeof *c->env);
        for (size_t i = 0; i < env->n; i++) {
            snprintf(p, sizeof p, "%s.env[%zu]", path, i);
            const char *k = scalar(r, ytree_get(env->items[i], "name"), p);
            const char *v = scalar(r, ytree_get(env->items[i], "value"), p);
            if (!k) {
                ERR(r, env->items[i], "%s.name: required", p);
                continue;
            }
            c->env[c->n_env].k = strdup(k);
            c->env[c->n_env++].v = strdup(v ? v : "");
            *h = fnv(fnv(*h, k), v);
        }
    }
    const struct ytree *ports = ytree_get(t, "ports");
    for (size_t i = 0; ports && ports->kind == YT_SEQ && i < ports->n; i++) {
        snprintf(p, sizeof p, "%s.ports[%zu].containerPort", path, i);
        if (c->n_ports == CTL_MAX_PORTS) {
            ERR(r, ports->items[i], "%s: at most %d ports", p, CTL_MAX_PORTS);
            break;
        }
        const struct ytree *cp = ytree_get(ports->items[i], "containerPort");
        long port = number(r, cp, p, 0, 65535);
        if (!cp || port == 0) {
            ERR(r, ports->items[i], "%s: required (1-65535)", p);
            continue;
        }
        static const int sidecar[] = {15000, 15001, 15004, 15006, 15008, 15020, 15021, 15053, 15090};
        for (size_t k = 0; k < sizeof sidecar / sizeof *sidecar; k++)
            if (port == sidecar[k])
                ERR(r, cp, "%s: port %ld is already in use by the sidecar (Istio reserves 15000-15090)",
                    p, port);
        const char *pn = scalar(r, ytree_get(ports->items[i], "name"), p);
        c->port_names[c->n_ports] = pn ? strdup(pn) : NULL;
        c->ports[c->n_ports++] = (uint32_t)port;
        *h = fnv(*h, pn) + (uint32_t)port;
    }
    const struct ytree *sc = ytree_get(t, "securityContext");
    if (sc && ytree_get(sc, "runAsUser")) {
        snprintf(p, sizeof p, "%s.securityContext.runAsUser", path);
        c->run_as_user = number(r, ytree_get(sc, "runAsUser"), p, -1, 0x7fffffff);
        *h += (uint32_t)c->run_as_user;
    }
}

static struct ctl_deployment *read_deployment(struct rd *r, const struct ytree *doc)
{
    struct ctl_deployment *d = calloc(1, sizeof *d);
    const struct ytree *md = ytree_get(doc, "metadata"), *spec = ytree_get(doc, "spec");
    const char *name = scalar(r, ytree_get(md, "name"), "metadata.name");
    const char *ns = scalar(r, ytree_get(md, "namespace"), "metadata.namespace");
    d->file = strdup(r->file);
    d->line = doc->line;
    d->name = strdup(name ? name : "");
    d->ns = strdup(ns ? ns : "default");
    if (!name)
        ERR(r, md ? md : doc, "metadata.name: required");
    if (!spec || spec->kind != YT_MAP) {
        ERR(r, spec ? spec : doc, "spec: required (a map)");
        return d;
    }
    d->replicas = (int)number(r, ytree_get(spec, "replicas"), "spec.replicas", 1, 64);
    const struct ytree *tpl = ytree_get(spec, "template");
    const struct ytree *tmd = ytree_get(tpl, "metadata"), *ps = ytree_get(tpl, "spec");
    uint32_t h = 2166136261u;
    d->n_labels = read_kv(r, ytree_get(tmd, "labels"), "spec.template.metadata.labels", &d->labels, &h);
    d->n_annotations = read_kv(r, ytree_get(tmd, "annotations"), "spec.template.metadata.annotations",
                               &d->annotations, &h);
    const char *sa = scalar(r, ytree_get(ps, "serviceAccountName"), "spec.template.spec.serviceAccountName");
    d->service_account = strdup(sa ? sa : "default");
    h = fnv(h, d->service_account);
    const struct ytree *cs = ytree_get(ps, "containers");
    if (!cs || cs->kind != YT_SEQ || !cs->n) {
        ERR(r, cs ? cs : (ps ? ps : (tpl ? tpl : spec)), "spec.template.spec.containers: required (a list)");
        return d;
    }
    for (size_t i = 0; i < cs->n && i < CTL_MAX_CONTAINERS; i++) {
        char p[64];
        snprintf(p, sizeof p, "spec.template.spec.containers[%zu]", i);
        read_container(r, cs->items[i], p, &d->containers[d->n_containers++], &h);
    }
    d->hash = h;
    return d;
}

void ctl_deployment_free(struct ctl_deployment *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_labels; i++)
        free(d->labels[i].k), free(d->labels[i].v);
    for (size_t i = 0; i < d->n_annotations; i++)
        free(d->annotations[i].k), free(d->annotations[i].v);
    for (size_t c = 0; c < d->n_containers; c++) {
        struct ctl_container *k = &d->containers[c];
        for (size_t i = 0; i < k->argc; i++)
            free(k->argv[i]);
        for (size_t i = 0; i < k->n_env; i++)
            free(k->env[i].k), free(k->env[i].v);
        for (size_t i = 0; i < k->n_ports; i++)
            free(k->port_names[i]);
        free(k->argv), free(k->env), free(k->name);
    }
    free(d->labels), free(d->annotations), free(d->name), free(d->ns), free(d->file);
    free(d->service_account), free(d);
}

void ctl_doc_free(struct ctl_doc *d)
{
    ctl_deployment_free(d->dep);
    istio_object_list_free(&d->objs);
    free(d->key), free(d->text);
    memset(d, 0, sizeof *d);
}

void ctl_manifest_free(struct ctl_manifest *m)
{
    for (size_t i = 0; i < m->n; i++)
        ctl_doc_free(&m->docs[i]);
    free(m->docs), free(m->path);
    memset(m, 0, sizeof *m);
}

/* A "---" (or "...") line at column 0 ends a YAML document, even inside a block scalar. */
static int is_marker(const char *l, const char *end)
{
    if (end - l < 3 || (strncmp(l, "---", 3) && strncmp(l, "...", 3)))
        return 0;
    return l + 3 == end || l[3] == ' ' || l[3] == '\t' || l[3] == '\n' || l[3] == '\r';
}

/* Reads one document: [s, e) of the file, starting at line `line`. The text is parsed with
 * line-1 newlines in front, so every line number is the file's. */
static void read_doc(struct rd *r, const char *s, const char *e, int line, struct ctl_manifest *m)
{
    size_t len = (size_t)(e - s), pad = (size_t)(line - 1);
    char *t = malloc(pad + len + 1);
    memset(t, '\n', pad);
    memcpy(t + pad, s, len);
    t[pad + len] = 0;
    char err[512];
    struct ytree *doc = ytree_parse(t, pad + len, r->file, err, sizeof err);
    if (!doc) {
        istio_errors_add(r->errs, "%s", err);
        r->bad = 1;
        free(t);
        return;
    }
    const struct ytree *kd = ytree_get(doc, "kind"), *av = ytree_get(doc, "apiVersion");
    const struct ytree *md = ytree_get(doc, "metadata");
    if (doc->kind == YT_NULL) {
        ytree_free(doc);
        free(t);
        return;
    }
    struct ctl_doc d = {0};
    d.line = doc->line;
    const char *kind = kd && kd->kind == YT_SCALAR ? kd->str : "";
    const char *api = av && av->kind == YT_SCALAR ? av->str : "";
    const struct ytree *nm = ytree_get(md, "name"), *nsn = ytree_get(md, "namespace");
    d.key = ctl_sprintf("%s/%s/%s", kind, nsn && nsn->kind == YT_SCALAR ? nsn->str : "default",
                        nm && nm->kind == YT_SCALAR ? nm->str : "");
    if (!strcmp(kind, "Deployment") && !strcmp(api, "apps/v1"))
        d.dep = read_deployment(r, doc);
    else if (!(!strcmp(kind, "ServiceAccount") && !strcmp(api, "v1")))
        istio_parse(t, pad + len, r->file, "cluster.local", &d.objs, r->errs);
    for (size_t i = 0; i < d.objs.n; i++)
        if (d.objs.items[i]->invalid)
            r->bad = 1;
    ytree_free(doc);
    d.text = malloc(len + 1);
    memcpy(d.text, s, len);
    d.text[len] = 0;
    free(t);
    m->docs = realloc(m->docs, (m->n + 1) * sizeof *m->docs);
    m->docs[m->n++] = d;
}

int ctl_manifest_read(const char *path, struct ctl_manifest *out, struct istio_errors *errs)
{
    memset(out, 0, sizeof *out);
    size_t before = errs->n, len;
    char *text = ctl_read_file(path, &len);
    if (!text) {
        istio_errors_add(errs, "%s: cannot read the file", path);
        return -1;
    }
    out->path = realpath(path, NULL);
    struct rd r = {path, errs, 0};
    const char *doc = text, *end = text + len;
    int line = 1, doc_line = 1;
    for (const char *l = text; l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        const char *le = nl ? nl : end;
        if (is_marker(l, le)) {
            read_doc(&r, doc, l, doc_line, out);
            doc = nl ? nl + 1 : end;
            doc_line = line + 1;
        }
        l = nl ? nl + 1 : end;
        line++;
    }
    if (doc < end)
        read_doc(&r, doc, end, doc_line, out);
    free(text);
    if (errs->n > before || r.bad) {
        ctl_manifest_free(out); /* nothing half-read is handed back */
        return -1;
    }
    return 0;
}
