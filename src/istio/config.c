/* istio/config: the object envelope, kinds, reference counting and error lists. */
#include "istio/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbmap.h"
#include "istio/networking/v1alpha3/destination_rule.pb-c.h"
#include "istio/networking/v1alpha3/gateway.pb-c.h"
#include "istio/networking/v1alpha3/service_entry.pb-c.h"
#include "istio/networking/v1alpha3/sidecar.pb-c.h"
#include "istio/networking/v1alpha3/virtual_service.pb-c.h"
#include "istio/networking/v1alpha3/workload_entry.pb-c.h"
#include "istio/security/v1beta1/authorization_policy.pb-c.h"
#include "istio/security/v1beta1/peer_authentication.pb-c.h"
#include "istio/security/v1beta1/request_authentication.pb-c.h"
#include "weft/k8s/v1/core.pb-c.h"

static const char *const net_versions[] = {"v1", "v1beta1", "v1alpha3", NULL};
static const char *const sec_versions[] = {"v1", "v1beta1", NULL};
static const char *const core_versions[] = {"v1", NULL};

static const struct {
    const char *name;
    const char *group;
    const char *const *versions;
    const ProtobufCMessageDescriptor *desc;
} kinds[ISTIO_KIND_COUNT] = {
    [ISTIO_VIRTUAL_SERVICE] = {"VirtualService", "networking.istio.io", net_versions,
                               &istio__networking__v1alpha3__virtual_service__descriptor},
    [ISTIO_DESTINATION_RULE] = {"DestinationRule", "networking.istio.io", net_versions,
                                &istio__networking__v1alpha3__destination_rule__descriptor},
    [ISTIO_GATEWAY] = {"Gateway", "networking.istio.io", net_versions,
                       &istio__networking__v1alpha3__gateway__descriptor},
    [ISTIO_SERVICE_ENTRY] = {"ServiceEntry", "networking.istio.io", net_versions,
                             &istio__networking__v1alpha3__service_entry__descriptor},
    [ISTIO_WORKLOAD_ENTRY] = {"WorkloadEntry", "networking.istio.io", net_versions,
                              &istio__networking__v1alpha3__workload_entry__descriptor},
    [ISTIO_SIDECAR] = {"Sidecar", "networking.istio.io", net_versions,
                       &istio__networking__v1alpha3__sidecar__descriptor},
    [ISTIO_PEER_AUTHENTICATION] = {"PeerAuthentication", "security.istio.io", sec_versions,
                                   &istio__security__v1beta1__peer_authentication__descriptor},
    [ISTIO_AUTHORIZATION_POLICY] = {"AuthorizationPolicy", "security.istio.io", sec_versions,
                                    &istio__security__v1beta1__authorization_policy__descriptor},
    [ISTIO_REQUEST_AUTHENTICATION] = {"RequestAuthentication", "security.istio.io", sec_versions,
                                      &istio__security__v1beta1__request_authentication__descriptor},
    [ISTIO_K8S_NAMESPACE] = {"Namespace", "", core_versions, &weft__k8s__v1__namespace_spec__descriptor},
    [ISTIO_K8S_SERVICE] = {"Service", "", core_versions, &weft__k8s__v1__service_spec__descriptor},
};

const char *istio_kind_name(enum istio_kind k) { return k < ISTIO_KIND_COUNT ? kinds[k].name : "?"; }
const char *istio_kind_group(enum istio_kind k) { return k < ISTIO_KIND_COUNT ? kinds[k].group : "?"; }
const ProtobufCMessageDescriptor *istio_kind_descriptor(enum istio_kind k)
{
    return k < ISTIO_KIND_COUNT ? kinds[k].desc : NULL;
}

/* ---- errors ---- */

int istio_errors_add(struct istio_errors *e, const char *fmt, ...)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        char **m = realloc(e->msgs, cap * sizeof *m);
        if (!m)
            return -1;
        e->msgs = m;
        e->cap = cap;
    }
    char *s = malloc(ISTIO_ERROR_MAX);
    if (!s)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, ISTIO_ERROR_MAX, fmt, ap);
    va_end(ap);
    e->msgs[e->n++] = s;
    return 0;
}

int istio_errors_append(struct istio_errors *dst, const struct istio_errors *src)
{
    for (size_t i = 0; i < src->n; i++)
        if (istio_errors_add(dst, "%s", src->msgs[i]) < 0)
            return -1;
    return 0;
}

void istio_errors_free(struct istio_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->msgs[i]);
    free(e->msgs);
    memset(e, 0, sizeof *e);
}

/* ---- objects ---- */

struct istio_object *istio_object_ref(struct istio_object *o)
{
    if (o)
        __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED);
    return o;
}

static void kv_free(struct istio_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

void istio_object_unref(struct istio_object *o)
{
    if (!o || __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free(o->api_version);
    free(o->name);
    free(o->ns);
    kv_free(o->labels, o->n_labels);
    kv_free(o->annotations, o->n_annotations);
    free(o->file);
    if (o->spec)
        protobuf_c_message_free_unpacked(o->spec, NULL);
    free(o);
}

int istio_object_list_push(struct istio_object_list *l, struct istio_object *o)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct istio_object **m = realloc(l->items, cap * sizeof *m);
        if (!m)
            return -1;
        l->items = m;
        l->cap = cap;
    }
    l->items[l->n++] = o;
    return 0;
}

void istio_object_list_free(struct istio_object_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        istio_object_unref(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

const char *istio_label(const struct istio_object *o, const char *key)
{
    for (size_t i = 0; i < o->n_labels; i++)
        if (!strcmp(o->labels[i].key, key))
            return o->labels[i].value;
    return NULL;
}

int istio_labels_match(const struct istio_kv *sel, size_t n, const struct istio_kv *labels,
                       size_t m)
{
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < m && strcmp(sel[i].key, labels[j].key))
            j++;
        if (j == m || strcmp(sel[i].value, labels[j].value))
            return 0;
    }
    return 1;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const struct istio_kv *)a)->key, ((const struct istio_kv *)b)->key);
}

/* Map entries generated by protobuf-c: base, then char *key, char *value. */
struct str_entry {
    ProtobufCMessage base;
    char *key;
    char *value;
};

int istio_map_to_kv(ProtobufCMessage *const *entries, size_t n, struct istio_kv **out)
{
    *out = NULL;
    if (!n)
        return 0;
    struct istio_kv *kv = malloc(n * sizeof *kv);
    if (!kv)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const struct str_entry *e = (const struct str_entry *)entries[i];
        kv[i].key = e->key;
        kv[i].value = e->value;
    }
    qsort(kv, n, sizeof *kv, kv_cmp);
    *out = kv;
    return (int)n;
}

char *istio_resolve_host(const char *host, const char *ns, const char *domain_suffix)
{
    char *s;
    if (strchr(host, '.') || !strcmp(host, "*")) {
        s = strdup(host);
    } else {
        size_t n = strlen(host) + strlen(ns) + strlen(domain_suffix) + 8;
        if ((s = malloc(n)))
            snprintf(s, n, "%s.%s.svc.%s", host, ns, domain_suffix);
    }
    return s;
}

/* ---- the envelope ---- */

static char *scalar_dup(const struct ytree *t)
{
    return t && t->kind == YT_SCALAR ? strdup(t->str) : NULL;
}

/* metadata.labels / annotations: a map of strings. */
static int read_string_map(const struct ytree *m, const char *file, const char *what,
                           struct istio_kv **out, size_t *n, struct istio_errors *errs)
{
    *out = NULL;
    *n = 0;
    if (!m || m->kind == YT_NULL)
        return 0;
    if (m->kind != YT_MAP) {
        istio_errors_add(errs, "%s:%d: metadata.%s: expected a map, got %s", file, m->line, what,
                         ytree_kind_name(m->kind));
        return -1;
    }
    size_t np = m->n / 2;
    if (!np)
        return 0;
    struct istio_kv *kv = calloc(np, sizeof *kv);
    if (!kv)
        return -1;
    for (size_t i = 0; i < np; i++) {
        const struct ytree *k = m->items[2 * i], *v = m->items[2 * i + 1];
        if (v->kind != YT_SCALAR && v->kind != YT_NULL) {
            istio_errors_add(errs, "%s:%d: metadata.%s[%.100s]: expected a string, got %s", file,
                             v->line, what, k->str, ytree_kind_name(v->kind));
            *out = kv;
            *n = i;
            return -1;
        }
        kv[i].key = strdup(k->str);
        kv[i].value = strdup(v->kind == YT_SCALAR ? v->str : "");
        *n = i + 1;
        if (!kv[i].key || !kv[i].value) {
            *out = kv;
            return -1;
        }
    }
    qsort(kv, np, sizeof *kv, kv_cmp);
    *out = kv;
    return 0;
}

/* Metadata fields Kubernetes sets that mean nothing here: accepted and ignored. */
static int ignored_metadata(const char *k)
{
    static const char *const names[] = {"resourceVersion", "generation", "uid",
                                        "creationTimestamp", "managedFields", "selfLink",
                                        "ownerReferences", "finalizers", "deletionTimestamp",
                                        "deletionGracePeriodSeconds", "generateName", NULL};
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], k))
            return 1;
    return 0;
}

/* Kubernetes workload kinds weftd does not serve (weftctl mesh runs them): a directory of
 * kubectl-style manifests may hold them next to Services and Istio config, so they are skipped
 * without an error, as istiod never sees them as config. */
static int ignored_k8s_kind(const char *api_version, const char *kind)
{
    static const char *const core[] = {"ServiceAccount", "Pod", "ConfigMap", NULL};
    static const char *const apps[] = {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", NULL};
    const char *const *names = !strcmp(api_version, "v1") ? core
                               : !strcmp(api_version, "apps/v1") ? apps : NULL;
    for (int i = 0; names && names[i]; i++)
        if (!strcmp(names[i], kind))
            return 1;
    return 0;
}

static int find_kind(const char *api_version, const char *kind, enum istio_kind *out,
                     int *version_ok)
{
    const char *slash = strrchr(api_version, '/');
    size_t glen = slash ? (size_t)(slash - api_version) : 0;
    const char *ver = slash ? slash + 1 : api_version;
    for (int k = 0; k < ISTIO_KIND_COUNT; k++) {
        if (strcmp(kinds[k].name, kind) || strlen(kinds[k].group) != glen ||
            strncmp(kinds[k].group, api_version, glen))
            continue;
        *out = (enum istio_kind)k;
        *version_ok = 0;
        for (int v = 0; kinds[k].versions[v]; v++)
            if (!strcmp(kinds[k].versions[v], ver))
                *version_ok = 1;
        return 0;
    }
    return -1;
}

/* One document -> one object (or an error). Returns errors added, -1 out of memory. */
static int parse_doc(const struct ytree *doc, const char *file, const char *domain_suffix,
                     struct istio_object_list *out, struct istio_errors *errs)
{
    size_t before = errs->n;
    if (doc->kind == YT_NULL)
        return 0; /* an empty document ("---" at the end) */
    if (doc->kind != YT_MAP) {
        istio_errors_add(errs, "%s:%d: expected an object (a map), got %s", file, doc->line,
                         ytree_kind_name(doc->kind));
        return 1;
    }
    const struct ytree *av = ytree_get(doc, "apiVersion"), *kd = ytree_get(doc, "kind");
    const struct ytree *md = ytree_get(doc, "metadata"), *sp = ytree_get(doc, "spec");
    if (!av || av->kind != YT_SCALAR || !kd || kd->kind != YT_SCALAR) {
        istio_errors_add(errs, "%s:%d: %s: required (a string)", file, doc->line,
                         !av || av->kind != YT_SCALAR ? "apiVersion" : "kind");
        return 1;
    }
    enum istio_kind kind;
    int version_ok;
    if (find_kind(av->str, kd->str, &kind, &version_ok) < 0) {
        if (ignored_k8s_kind(av->str, kd->str))
            return 0;
        istio_errors_add(errs, "%s:%d: kind: unknown kind %.100s (apiVersion %.100s), skipped",
                         file, kd->line, kd->str, av->str);
        return 1;
    }
    if (!version_ok) {
        istio_errors_add(errs, "%s:%d: apiVersion: %.100s is not a version of %s", file,
                         av->line, av->str, kinds[kind].name);
        return 1;
    }
    for (size_t i = 0; i + 1 < doc->n; i += 2) {
        const char *k = doc->items[i]->str;
        if (strcmp(k, "apiVersion") && strcmp(k, "kind") && strcmp(k, "metadata") &&
            strcmp(k, "spec") && strcmp(k, "status"))
            istio_errors_add(errs, "%s:%d: %.100s: unknown field", file, doc->items[i]->line, k);
    }
    struct istio_object *o = calloc(1, sizeof *o);
    if (!o)
        return -1;
    o->refs = 1;
    o->kind = kind;
    o->line = doc->items[0]->line;
    o->api_version = strdup(av->str);
    o->file = strdup(file);
    if (!o->api_version || !o->file)
        goto oom;
    if (!md || md->kind != YT_MAP) {
        istio_errors_add(errs, "%s:%d: metadata: required (a map with a name)", file,
                         md ? md->line : doc->line);
    } else {
        for (size_t i = 0; i + 1 < md->n; i += 2) {
            const struct ytree *k = md->items[i], *v = md->items[i + 1];
            if (!strcmp(k->str, "name") || !strcmp(k->str, "namespace")) {
                if (v->kind != YT_SCALAR) {
                    istio_errors_add(errs, "%s:%d: metadata.%s: expected a string, got %s", file,
                                     v->line, k->str, ytree_kind_name(v->kind));
                    continue;
                }
                char **dst = k->str[4] == '\0' ? &o->name : &o->ns;
                if (!(*dst = scalar_dup(v)))
                    goto oom;
            } else if (!strcmp(k->str, "labels")) {
                read_string_map(v, file, "labels", &o->labels, &o->n_labels, errs);
            } else if (!strcmp(k->str, "annotations")) {
                read_string_map(v, file, "annotations", &o->annotations, &o->n_annotations, errs);
            } else if (!ignored_metadata(k->str)) {
                istio_errors_add(errs, "%s:%d: metadata.%.100s: unknown field", file, k->line,
                                 k->str);
            }
        }
        if (!o->name)
            istio_errors_add(errs, "%s:%d: metadata.name: required", file, md->line);
    }
    if (!o->ns && !(o->ns = strdup(kind == ISTIO_K8S_NAMESPACE && o->name ? o->name : "default")))
        goto oom;
    if (kind == ISTIO_K8S_NAMESPACE && o->name && strcmp(o->ns, o->name)) {
        free(o->ns);
        if (!(o->ns = strdup(o->name)))
            goto oom;
    }
    if (errs->n == before) {
        struct pbmap_error perr;
        char prefix[32];
        snprintf(prefix, sizeof prefix, "spec");
        /* The mapper names paths from the spec down; prefix them with "spec." by mapping
         * a one-key wrapper would lose the line: rewrite the message instead. */
        if (!sp || sp->kind == YT_NULL) {
            if ((o->spec = malloc(kinds[kind].desc->sizeof_message)))
                protobuf_c_message_init(kinds[kind].desc, o->spec);
        } else {
            o->spec = pbmap_from_tree_flags(kinds[kind].desc, sp, file, &perr, PBMAP_F_GO_DURATION);
        }
        if (!o->spec) {
            /* perr: "FILE:LINE: path: problem" or "FILE:LINE: problem" */
            const char *p = perr.msg;
            size_t fl = strlen(file);
            if (!strncmp(p, file, fl) && p[fl] == ':') {
                const char *q = strchr(p + fl + 1, ':');
                const char *rest = q ? q + 2 : NULL, *colon = rest ? strstr(rest, ": ") : NULL;
                if (q && q[1] == ' ' && colon && !memchr(rest, ' ', (size_t)(colon - rest))) {
                    istio_errors_add(errs, "%.*s: %s.%s", (int)(q - p), p, prefix, rest);
                } else if (q && q[1] == ' ') {
                    istio_errors_add(errs, "%.*s: %s: %s", (int)(q - p), p, prefix, rest);
                } else {
                    istio_errors_add(errs, "%s", p);
                }
            } else {
                istio_errors_add(errs, "%s", p);
            }
        } else {
            istio_validate(o, doc, file, domain_suffix, errs);
        }
    }
    if (errs->n != before) {
        if (o->spec) {
            protobuf_c_message_free_unpacked(o->spec, NULL);
            o->spec = NULL;
        }
        o->invalid = 1;
        if (!o->name) {
            istio_object_unref(o);
            return (int)(errs->n - before);
        }
    }
    if (istio_object_list_push(out, o) < 0)
        goto oom;
    return (int)(errs->n - before);
oom:
    istio_object_unref(o);
    return -1;
}

int istio_parse(const char *text, size_t len, const char *file, const char *domain_suffix,
                struct istio_object_list *out, struct istio_errors *errs)
{
    struct ytree **docs = NULL;
    char err[512];
    int n = ytree_parse_all(text, len, file, &docs, err, sizeof err);
    if (n < 0) {
        out->syntax_error = 1;
        return istio_errors_add(errs, "%s", err) < 0 ? -1 : 1;
    }
    int total = 0;
    for (int i = 0; i < n; i++) {
        int rc = parse_doc(docs[i], file, domain_suffix ? domain_suffix : "cluster.local", out,
                           errs);
        if (rc < 0) {
            ytree_free_all(docs, n);
            return -1;
        }
        total += rc;
    }
    ytree_free_all(docs, n);
    return total;
}
