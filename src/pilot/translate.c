/* pilot/translate: proxy identity, scoping (Sidecar, exportTo), lookups, and the JSON ->
 * protobuf step every generator shares. */
#include "pilot/translate_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbmap.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/config/core/v3/base.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "istio/networking/v1alpha3/workload_entry.pb-c.h"

/* ---- proxy identity ---- */

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const struct istio_kv *)a)->key, ((const struct istio_kv *)b)->key);
}

int pilot_proxy_set_label(struct pilot_proxy *p, const char *key, const char *value)
{
    for (size_t i = 0; i < p->n_labels; i++)
        if (!strcmp(p->labels[i].key, key)) {
            char *v = strdup(value);
            if (!v)
                return -1;
            free(p->labels[i].value);
            p->labels[i].value = v;
            return 0;
        }
    struct istio_kv *a = realloc(p->labels, (p->n_labels + 1) * sizeof *a);
    if (!a)
        return -1;
    p->labels = a;
    a[p->n_labels].key = strdup(key);
    a[p->n_labels].value = strdup(value);
    if (!a[p->n_labels].key || !a[p->n_labels].value) {
        free(a[p->n_labels].key);
        free(a[p->n_labels].value);
        return -1;
    }
    p->n_labels++;
    qsort(p->labels, p->n_labels, sizeof *p->labels, kv_cmp);
    return 0;
}

int pilot_proxy_parse(const char *node_id, struct pilot_proxy *p, char *err, size_t errlen)
{
    char buf[512];
    if (strlen(node_id) >= sizeof buf) {
        snprintf(err, errlen, "node id longer than %zu bytes", sizeof buf - 1);
        return -1;
    }
    memcpy(buf, node_id, strlen(node_id) + 1);
    char *parts[4];
    int n = 0;
    char *s = buf;
    while (n < 4) {
        parts[n++] = s;
        char *t = strchr(s, '~');
        if (!t)
            break;
        *t = '\0';
        s = t + 1;
    }
    if (n != 4) {
        snprintf(err, errlen, "node id \"%.200s\" is not TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.DOMAIN", node_id);
        return -1;
    }
    if (!strcmp(parts[0], "sidecar"))
        p->type = PILOT_PROXY_SIDECAR;
    else if (!strcmp(parts[0], "router"))
        p->type = PILOT_PROXY_ROUTER;
    else {
        snprintf(err, errlen, "node id type \"%.60s\" is neither sidecar nor router", parts[0]);
        return -1;
    }
    char *dot = strchr(parts[2], '.');
    char *ns = dot ? dot + 1 : NULL;
    if (dot)
        *dot = '\0';
    if (!ns || !*ns) {
        char *d2 = strchr(parts[3], '.');
        if (d2)
            *d2 = '\0';
        ns = parts[3];
    }
    p->id = strdup(node_id);
    p->ip = strdup(parts[1]);
    p->pod = strdup(parts[2]);
    p->ns = strdup(*ns ? ns : "default");
    p->service_account = strdup("");
    if (!p->id || !p->ip || !p->pod || !p->ns || !p->service_account) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static const Google__Protobuf__Value *struct_get(const Google__Protobuf__Struct *st, const char *key)
{
    for (size_t i = 0; st && i < st->n_fields; i++)
        if (!strcmp(st->fields[i]->key, key))
            return st->fields[i]->value;
    return NULL;
}

static const char *value_string(const Google__Protobuf__Value *v)
{
    return v && v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE ? v->string_value : NULL;
}

static int replace_str(char **dst, const char *v)
{
    char *s = strdup(v);
    if (!s)
        return -1;
    free(*dst);
    *dst = s;
    return 0;
}

int pilot_proxy_from_node(const struct Envoy__Config__Core__V3__Node *node, struct pilot_proxy *p,
                          char *err, size_t errlen)
{
    if (!node || !node->id || !*node->id) {
        snprintf(err, errlen, "node id is required");
        return -1;
    }
    if (pilot_proxy_parse(node->id, p, err, errlen) < 0)
        return -1;
    const Google__Protobuf__Struct *md = node->metadata;
    const Google__Protobuf__Value *labels = struct_get(md, "LABELS");
    if (labels && labels->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE) {
        const Google__Protobuf__Struct *ls = labels->struct_value;
        for (size_t i = 0; i < ls->n_fields; i++) {
            const char *v = value_string(ls->fields[i]->value);
            if (v && pilot_proxy_set_label(p, ls->fields[i]->key, v) < 0)
                goto oom;
        }
    }
    const char *ns = value_string(struct_get(md, "NAMESPACE"));
    if (ns && *ns && replace_str(&p->ns, ns) < 0)
        goto oom;
    const char *sa = value_string(struct_get(md, "SERVICE_ACCOUNT"));
    if (sa && *sa && replace_str(&p->service_account, sa) < 0)
        goto oom;
    const Google__Protobuf__Value *ips = struct_get(md, "INSTANCE_IPS");
    const char *ip = value_string(ips);
    if (ip && *ip) {
        char first[64];
        snprintf(first, sizeof first, "%.*s", (int)strcspn(ip, ","), ip);
        if (replace_str(&p->ip, first) < 0)
            goto oom;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

void pilot_proxy_complete(struct pilot_proxy *p, const struct pilot_model *m)
{
    if (p->n_labels)
        return;
    size_t first, n = pilot_model_kind(m, ISTIO_WORKLOAD_ENTRY, &first);
    for (size_t i = first; i < first + n; i++) {
        const struct istio_object *o = m->objs[i];
        const Istio__Networking__V1alpha3__WorkloadEntry *we = (const void *)o->spec;
        if (!we->address || strcmp(we->address, p->ip))
            continue;
        for (size_t k = 0; k < we->n_labels; k++)
            pilot_proxy_set_label(p, we->labels[k]->key, we->labels[k]->value);
        if (!we->n_labels)
            for (size_t k = 0; k < o->n_labels; k++)
                pilot_proxy_set_label(p, o->labels[k].key, o->labels[k].value);
        char *ns = strdup(o->ns);
        if (ns) {
            free(p->ns);
            p->ns = ns;
        }
        if (we->service_account && *we->service_account && !*p->service_account) {
            char *sa = strdup(we->service_account);
            if (sa) {
                free(p->service_account);
                p->service_account = sa;
            }
        }
        return;
    }
}

void pilot_proxy_free(struct pilot_proxy *p)
{
    for (size_t i = 0; i < p->n_labels; i++) {
        free(p->labels[i].key);
        free(p->labels[i].value);
    }
    free(p->labels);
    free(p->id);
    free(p->ip);
    free(p->pod);
    free(p->ns);
    free(p->service_account);
    memset(p, 0, sizeof *p);
}

/* ---- small helpers ---- */

void t_warn(struct tctx *c, const char *fmt, ...)
{
    if (!c->warn)
        return;
    char msg[ISTIO_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < c->warn->n; i++)
        if (!strcmp(c->warn->msgs[i], msg))
            return; /* once per translation */
    istio_errors_add(c->warn, "%s", msg);
}

char *t_cluster_name(const char *dir, uint32_t port, const char *subset, const char *host)
{
    size_t n = strlen(dir) + strlen(subset ? subset : "") + strlen(host) + 16;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s|%u|%s|%s", dir, port, subset ? subset : "", host);
    return s;
}

int t_host_match(const char *pattern, const char *host)
{
    if (!strcmp(pattern, "*"))
        return 1;
    if (pattern[0] == '*' && pattern[1] == '.') {
        size_t pl = strlen(pattern) - 1, hl = strlen(host); /* ".x.y" */
        return hl > pl && !strcmp(host + hl - pl, pattern + 1);
    }
    return !strcmp(pattern, host);
}

json_t *t_ads_source(void)
{
    return json_pack("{s:{},s:s,s:s}", "ads", "initialFetchTimeout", "0s", "resourceApiVersion", "V3");
}

json_t *t_any(const char *type, json_t *fields)
{
    json_t *o = fields ? fields : json_object();
    char url[256];
    snprintf(url, sizeof url, T_TYPE_PREFIX "%s", type);
    /* "@type" first: build a new object so it leads */
    json_t *r = json_object();
    json_object_set_new(r, "@type", json_string(url));
    json_object_update(r, o);
    json_decref(o);
    return r;
}

json_t *t_duration(int64_t s, int32_t ns)
{
    char buf[40];
    pbmap_format_duration(s, ns, buf, sizeof buf);
    return json_string(buf);
}

json_t *t_percent_fraction(double value)
{
    double v = value * 10000.0;
    if (v < 0)
        v = 0;
    if (v > 1000000)
        v = 1000000;
    return json_pack("{s:I,s:s}", "numerator", (json_int_t)(v + 0.5), "denominator", "MILLION");
}

void t_config_path(const struct istio_object *o, char *buf, size_t n)
{
    static const char *const plural[ISTIO_KIND_COUNT] = {
        [ISTIO_VIRTUAL_SERVICE] = "virtual-service", [ISTIO_DESTINATION_RULE] = "destination-rule",
        [ISTIO_GATEWAY] = "gateway", [ISTIO_SERVICE_ENTRY] = "service-entry",
        [ISTIO_SIDECAR] = "sidecar",
    };
    snprintf(buf, n, "/apis/%s/v1alpha3/namespaces/%s/%s/%s", istio_kind_group(o->kind), o->ns,
             plural[o->kind] ? plural[o->kind] : "object", o->name);
}

json_t *t_metadata_config(const struct istio_object *o)
{
    char buf[512];
    t_config_path(o, buf, sizeof buf);
    return json_pack("{s:{s:{s:s}}}", "filterMetadata", "istio", "config", buf);
}

/* ---- scoping ---- */

static int selector_matches(const struct tctx *c, ProtobufCMessage *const *entries, size_t n)
{
    struct istio_kv *sel;
    int k = istio_map_to_kv(entries, n, &sel);
    if (k < 0)
        return 0;
    int ok = istio_labels_match(sel, (size_t)k, c->p->labels, c->p->n_labels);
    free(sel);
    return ok;
}

/* Istio's precedence: a Sidecar of the proxy's namespace with a matching workloadSelector,
 * then the namespace's Sidecar without selector, then the root namespace's (istio-system). */
static const struct istio_object *find_sidecar(struct tctx *c)
{
    size_t first, n = pilot_model_kind(c->m, ISTIO_SIDECAR, &first);
    const struct istio_object *ns_default = NULL, *root = NULL;
    for (size_t i = first; i < first + n; i++) {
        const struct istio_object *o = c->m->objs[i];
        const Istio__Networking__V1alpha3__Sidecar *sc = (const void *)o->spec;
        if (!strcmp(o->ns, c->p->ns)) {
            if (sc->workload_selector && sc->workload_selector->n_labels) {
                if (selector_matches(c, (ProtobufCMessage *const *)sc->workload_selector->labels,
                                     sc->workload_selector->n_labels))
                    return o;
            } else if (!ns_default) {
                ns_default = o;
            }
        } else if (!strcmp(o->ns, "istio-system") && !sc->workload_selector && !root) {
            root = o;
        }
    }
    return ns_default ? ns_default : root;
}

static int egress_host_match(const char *spec, const char *proxy_ns, const struct reg_service *s)
{
    const char *slash = strchr(spec, '/');
    if (!slash)
        return 0;
    size_t nl = (size_t)(slash - spec);
    const char *host = slash + 1;
    if (nl == 1 && spec[0] == '~')
        return 0;
    if (!(nl == 1 && spec[0] == '*')) {
        const char *want = nl == 1 && spec[0] == '.' ? proxy_ns : NULL;
        if (want ? strcmp(s->ns, want) : (strlen(s->ns) != nl || strncmp(s->ns, spec, nl)))
            return 0;
    }
    return t_host_match(host, s->hostname);
}

static int exported_to(const struct reg_service *s, const char *ns)
{
    if (!s->n_export_to)
        return 1;
    for (size_t i = 0; i < s->n_export_to; i++)
        if (!strcmp(s->export_to[i], "*") || (!strcmp(s->export_to[i], ".") && !strcmp(s->ns, ns)) ||
            !strcmp(s->export_to[i], ns))
            return 1;
    return 0;
}

int t_port_visible(const struct tctx *c, const struct reg_service *s, uint32_t port)
{
    const Istio__Networking__V1alpha3__Sidecar *sc = c->sidecar ? (const void *)c->sidecar->spec : NULL;
    if (!sc || !sc->n_egress)
        return 1;
    for (size_t e = 0; e < sc->n_egress; e++) {
        const Istio__Networking__V1alpha3__IstioEgressListener *l = sc->egress[e];
        if (l->port && l->port->number && l->port->number != port)
            continue;
        for (size_t h = 0; h < l->n_hosts; h++)
            if (egress_host_match(l->hosts[h], c->p->ns, s))
                return 1;
    }
    return 0;
}

static int compute_scope(struct tctx *c)
{
    const struct registry *r = c->m->reg;
    c->sidecar = c->p->type == PILOT_PROXY_SIDECAR ? find_sidecar(c) : NULL;
    c->allow_any = 1;
    const Istio__Networking__V1alpha3__Sidecar *sc = c->sidecar ? (const void *)c->sidecar->spec : NULL;
    if (sc && sc->outbound_traffic_policy &&
        sc->outbound_traffic_policy->mode == ISTIO__NETWORKING__V1ALPHA3__OUTBOUND_TRAFFIC_POLICY__MODE__REGISTRY_ONLY)
        c->allow_any = 0;
    c->visible = calloc(r->n ? r->n : 1, sizeof *c->visible);
    if (!c->visible)
        return -1;
    for (size_t i = 0; i < r->n; i++) {
        const struct reg_service *s = &r->svcs[i];
        if (!exported_to(s, c->p->ns))
            continue;
        int ok = !s->n_ports && !(sc && sc->n_egress);
        for (size_t p = 0; p < s->n_ports && !ok; p++)
            ok = t_port_visible(c, s, s->ports[p].port);
        if (!ok)
            continue;
        /* one service per hostname: the first namespace wins (registry order) */
        if (c->n_visible && !strcmp(c->visible[c->n_visible - 1]->hostname, s->hostname))
            continue;
        c->visible[c->n_visible++] = s;
    }
    return 0;
}

/* ---- lookups ---- */

const struct istio_object *t_find_dr(struct tctx *c, const char *host, const char *svc_ns)
{
    size_t first, n = pilot_model_kind(c->m, ISTIO_DESTINATION_RULE, &first);
    const struct istio_object *best[3] = {NULL, NULL, NULL};
    for (size_t i = first; i < first + n; i++) {
        const struct istio_object *o = c->m->objs[i];
        const DestinationRule *dr = (const void *)o->spec;
        if (!c->m->n_hosts[i] || !t_host_match(c->m->hosts[i][0], host))
            continue;
        int exported = !dr->n_export_to;
        for (size_t e = 0; e < dr->n_export_to; e++)
            exported |= !strcmp(dr->export_to[e], "*") ||
                        (!strcmp(dr->export_to[e], ".") && !strcmp(o->ns, c->p->ns)) ||
                        !strcmp(dr->export_to[e], c->p->ns);
        if (!exported)
            continue;
        if (dr->workload_selector && dr->workload_selector->n_match_labels &&
            (strcmp(o->ns, c->p->ns) ||
             !selector_matches(c, (ProtobufCMessage *const *)dr->workload_selector->match_labels,
                               dr->workload_selector->n_match_labels)))
            continue;
        int rank = !strcmp(o->ns, c->p->ns) ? 0 : !strcmp(o->ns, svc_ns) ? 1 : 2;
        if (!best[rank])
            best[rank] = o;
    }
    return best[0] ? best[0] : best[1] ? best[1] : best[2];
}

int t_vs_bound(const struct istio_object *vs, char *const *gws, size_t n_gws, const char *gw_ns,
               const char *gw_name)
{
    (void)vs;
    if (!n_gws)
        return gw_name == NULL;
    for (size_t i = 0; i < n_gws; i++) {
        const char *g = gws[i];
        if (!gw_name) {
            if (!strcmp(g, "mesh"))
                return 1;
            continue;
        }
        const char *slash = strchr(g, '/');
        if (slash) {
            if (strlen(gw_ns) == (size_t)(slash - g) && !strncmp(g, gw_ns, (size_t)(slash - g)) &&
                !strcmp(slash + 1, gw_name))
                return 1;
        } else if (!strcmp(g, gw_name) && !strcmp(vs->ns, gw_ns)) {
            return 1;
        }
    }
    return 0;
}

size_t t_find_vs(struct tctx *c, const char *host, const char *gw_ns, const char *gw_name,
                 const struct istio_object **out, size_t max)
{
    size_t first, n = pilot_model_kind(c->m, ISTIO_VIRTUAL_SERVICE, &first), k = 0;
    for (size_t i = first; i < first + n && k < max; i++) {
        const struct istio_object *o = c->m->objs[i];
        const VirtualService *vs = (const void *)o->spec;
        if (!vs->n_hosts || !t_vs_bound(o, vs->gateways, vs->n_gateways, gw_ns, gw_name))
            continue;
        int exported = !vs->n_export_to;
        for (size_t e = 0; e < vs->n_export_to; e++)
            exported |= !strcmp(vs->export_to[e], "*") ||
                        (!strcmp(vs->export_to[e], ".") && !strcmp(o->ns, c->p->ns)) ||
                        !strcmp(vs->export_to[e], c->p->ns);
        if (!exported)
            continue;
        for (size_t h = 0; h < c->m->n_hosts[i]; h++)
            if (t_host_match(c->m->hosts[i][h], host)) {
                out[k++] = o;
                break;
            }
    }
    return k;
}

/* ---- entry point ---- */

static const ProtobufCMessageDescriptor *type_desc(enum pilot_type t)
{
    switch (t) {
    case PILOT_CDS: return &envoy__config__cluster__v3__cluster__descriptor;
    case PILOT_EDS: return &envoy__config__endpoint__v3__cluster_load_assignment__descriptor;
    case PILOT_LDS: return &envoy__config__listener__v3__listener__descriptor;
    default: return &envoy__config__route__v3__route_configuration__descriptor;
    }
}

const char *pilot_type_url(enum pilot_type t)
{
    switch (t) {
    case PILOT_CDS: return T_TYPE_PREFIX "envoy.config.cluster.v3.Cluster";
    case PILOT_EDS: return T_TYPE_PREFIX "envoy.config.endpoint.v3.ClusterLoadAssignment";
    case PILOT_LDS: return T_TYPE_PREFIX "envoy.config.listener.v3.Listener";
    default: return T_TYPE_PREFIX "envoy.config.route.v3.RouteConfiguration";
    }
}

const char *pilot_type_name(enum pilot_type t)
{
    static const char *const names[] = {"cds", "eds", "lds", "rds"};
    return t < PILOT_TYPE_COUNT ? names[t] : "?";
}

void pilot_resources_free(struct pilot_resources *r)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->msgs[i])
            protobuf_c_message_free_unpacked(r->msgs[i], NULL);
        free(r->names[i]);
    }
    free(r->msgs);
    free(r->names);
    memset(r, 0, sizeof *r);
}

static struct ytree *yt_node(enum ytree_kind kind, const char *str, size_t len, int quoted)
{
    struct ytree *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->kind = kind;
    t->line = 1;
    t->col = 1;
    t->quoted = quoted ? 1 : 0;
    if (str) {
        if (!(t->str = malloc(len + 1))) {
            free(t);
            return NULL;
        }
        memcpy(t->str, str, len);
        t->str[len] = '\0';
        t->len = len;
    }
    return t;
}

/* The generated JSON straight into the tree the mapper reads (what parsing its text would
 * give, without printing and parsing it): strings are quoted scalars, numbers and booleans
 * plain ones. NULL when out of memory or nested deeper than the YAML limit. */
static struct ytree *json_to_ytree(const json_t *j, int depth)
{
    char buf[64];
    if (depth > YTREE_MAX_DEPTH)
        return NULL;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        struct ytree *t = yt_node(YT_MAP, NULL, 0, 0);
        size_t n = json_object_size(j);
        if (!t || (n && !(t->items = calloc(2 * n, sizeof *t->items)))) {
            ytree_free(t);
            return NULL;
        }
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v) {
            struct ytree *k = yt_node(YT_SCALAR, key, strlen(key), 1);
            struct ytree *x = k ? json_to_ytree(v, depth + 1) : NULL;
            if (!x) {
                ytree_free(k);
                ytree_free(t);
                return NULL;
            }
            t->items[t->n++] = k;
            t->items[t->n++] = x;
        }
        return t;
    }
    case JSON_ARRAY: {
        struct ytree *t = yt_node(YT_SEQ, NULL, 0, 0);
        size_t n = json_array_size(j);
        if (!t || (n && !(t->items = calloc(n, sizeof *t->items)))) {
            ytree_free(t);
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            struct ytree *x = json_to_ytree(json_array_get(j, i), depth + 1);
            if (!x) {
                ytree_free(t);
                return NULL;
            }
            t->items[t->n++] = x;
        }
        return t;
    }
    case JSON_STRING:
        return yt_node(YT_SCALAR, json_string_value(j), json_string_length(j), 1);
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        return yt_node(YT_SCALAR, buf, strlen(buf), 0);
    case JSON_REAL:
        snprintf(buf, sizeof buf, "%.17g", json_real_value(j));
        return yt_node(YT_SCALAR, buf, strlen(buf), 0);
    case JSON_TRUE:
        return yt_node(YT_SCALAR, "true", 4, 0);
    case JSON_FALSE:
        return yt_node(YT_SCALAR, "false", 5, 0);
    default:
        return yt_node(YT_NULL, "", 0, 0);
    }
}

static const char *res_name(json_t *o, enum pilot_type t)
{
    return json_string_value(json_object_get(o, t == PILOT_EDS ? "clusterName" : "name"));
}

static int res_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int pilot_translate(const struct pilot_model *m, const struct pilot_proxy *p, enum pilot_type t,
                    struct pilot_resources *out, struct istio_errors *warnings)
{
    struct tctx c = {.m = m, .p = p, .warn = warnings};
    memset(out, 0, sizeof *out);
    if (compute_scope(&c) < 0)
        return -1;
    json_t *arr = json_array();
    int rc = arr ? 0 : -1;
    if (rc == 0) {
        switch (t) {
        case PILOT_CDS: rc = t_gen_clusters(&c, arr); break;
        case PILOT_EDS: rc = t_gen_endpoints(&c, arr); break;
        case PILOT_LDS: rc = t_gen_listeners(&c, arr); break;
        default: rc = t_gen_routes(&c, arr); break;
        }
    }
    size_t n = rc == 0 ? json_array_size(arr) : 0;
    /* sort by name: a stable order for ADS and for golden files */
    struct pair { char *name; json_t *j; } *pairs = calloc(n ? n : 1, sizeof *pairs);
    if (!pairs)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *o = json_array_get(arr, i);
        const char *nm = res_name(o, t);
        pairs[i].name = strdup(nm ? nm : "");
        pairs[i].j = o;
        if (!pairs[i].name)
            rc = -1;
    }
    if (rc == 0 && n)
        qsort(pairs, n, sizeof *pairs, res_cmp);
    if (rc == 0) {
        out->msgs = calloc(n ? n : 1, sizeof *out->msgs);
        out->names = calloc(n ? n : 1, sizeof *out->names);
        if (!out->msgs || !out->names)
            rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (out->n && !strcmp(pairs[i].name, out->names[out->n - 1]))
            continue; /* the same resource generated twice (shared ports) */
        struct ytree *tree = json_to_ytree(pairs[i].j, 0);
        struct pbmap_error err;
        ProtobufCMessage *msg = tree ? pbmap_from_tree(type_desc(t), tree, pairs[i].name, &err) : NULL;
        int have_tree = tree != NULL;
        ytree_free(tree);
        if (!msg) {
            if (warnings)
                istio_errors_add(warnings, "internal: generated %s resource does not map: %s",
                                 pilot_type_name(t), have_tree ? err.msg : "out of memory");
            rc = -1;
            break;
        }
        out->msgs[out->n] = msg;
        out->names[out->n++] = pairs[i].name;
        pairs[i].name = NULL;
    }
    for (size_t i = 0; pairs && i < n; i++)
        free(pairs[i].name);
    free(pairs);
    json_decref(arr);
    free(c.visible);
    if (rc < 0)
        pilot_resources_free(out);
    return rc;
}

static json_t *response_json(const struct pilot_model *m, enum pilot_type t,
                             const struct pilot_resources *r)
{
    Envoy__Service__Discovery__V3__DiscoveryResponse resp = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
    char version[32];
    snprintf(version, sizeof version, "%llu", (unsigned long long)m->version);
    resp.version_info = version;
    resp.type_url = (char *)pilot_type_url(t);
    Google__Protobuf__Any *anys = calloc(r->n ? r->n : 1, sizeof *anys);
    Google__Protobuf__Any **ptrs = calloc(r->n ? r->n : 1, sizeof *ptrs);
    json_t *j = NULL;
    if (!anys || !ptrs)
        goto out;
    for (size_t i = 0; i < r->n; i++) {
        google__protobuf__any__init(&anys[i]);
        if (pbmap_pack_any(r->msgs[i], &anys[i].base) < 0)
            goto out;
        ptrs[i] = &anys[i];
        resp.n_resources = i + 1;
    }
    resp.resources = ptrs;
    j = pbmap_to_json(&resp.base);
out:
    for (size_t i = 0; i < resp.n_resources; i++) {
        free(anys[i].type_url);
        free(anys[i].value.data);
    }
    free(anys);
    free(ptrs);
    return j;
}

char *pilot_dump_json(const struct pilot_model *m, const struct pilot_proxy *p, int type,
                      struct istio_errors *warnings)
{
    json_t *all = json_array();
    char *text = NULL;
    if (!all)
        return NULL;
    for (int t = 0; t < PILOT_TYPE_COUNT; t++) {
        if (type >= 0 && t != type)
            continue;
        struct pilot_resources r;
        if (pilot_translate(m, p, (enum pilot_type)t, &r, warnings) < 0)
            goto out;
        json_t *j = response_json(m, (enum pilot_type)t, &r);
        pilot_resources_free(&r);
        if (!j)
            goto out;
        json_array_append_new(all, j);
    }
    text = pbmap_json_dumps(type >= 0 ? json_array_get(all, 0) : all, 2);
out:
    json_decref(all);
    return text;
}

int pilot_check_references(const struct pilot_model *m, struct istio_errors *warnings)
{
    size_t first, n = pilot_model_kind(m, ISTIO_VIRTUAL_SERVICE, &first);
    for (size_t i = first; i < first + n; i++) {
        const struct istio_object *o = m->objs[i];
        /* as a proxy of the VirtualService's own namespace sees it */
        struct pilot_proxy p = {.type = PILOT_PROXY_SIDECAR, .id = "", .ip = "", .pod = "",
                                .ns = o->ns, .service_account = ""};
        struct tctx c = {.m = m, .p = &p, .warn = warnings};
        if (t_check_vs(&c, o) < 0)
            return -1;
    }
    return 0;
}
