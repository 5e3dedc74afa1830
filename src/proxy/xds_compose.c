/* Snapshots from static resources plus xDS resources (see xds_client.h). The composed
 * Bootstrap is shallow where it can be: static resources are borrowed, dynamic ones are copied
 * only when they must change (EDS clusters, HCMs with rds). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/pbmap.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb-c.h"
#include "proxy/xds_client.h"

typedef Envoy__Config__Bootstrap__V3__Bootstrap Bootstrap;
typedef Envoy__Config__Bootstrap__V3__Bootstrap__StaticResources StaticResources;
typedef Envoy__Config__Cluster__V3__Cluster Cluster;
typedef Envoy__Config__Listener__V3__Listener Listener;
typedef Envoy__Config__Listener__V3__FilterChain FilterChain;
typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager Hcm;
#define HCM_TYPE "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
#define RDS_CASE ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_RDS
#define RC_CASE ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_ROUTE_CONFIG
#define VC_SDS_CASE \
    ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__COMMON_TLS_CONTEXT__VALIDATION_CONTEXT_TYPE_VALIDATION_CONTEXT_SDS_SECRET_CONFIG
#define VC_COMBINED_CASE \
    ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__COMMON_TLS_CONTEXT__VALIDATION_CONTEXT_TYPE_COMBINED_VALIDATION_CONTEXT
#define TLS_SDS_REFS_MAX 8         /* certificates (at most 4 are used) plus one validation context */

/* A deep copy through the wire format: simple, and only done at config time. */
static ProtobufCMessage *pb_dup(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return NULL;
    protobuf_c_message_pack(m, b);
    ProtobufCMessage *r = protobuf_c_message_unpack(m->descriptor, NULL, n, b);
    free(b);
    return r;
}

static const struct xds_resource *find(const struct xds_set *s, const char *name)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (strcmp(s->r[i].name, name) == 0)
            return &s->r[i];
    return NULL;
}

static bool is_hcm(const Envoy__Config__Listener__V3__Filter *f)
{
    if (f->config_type_case != ENVOY__CONFIG__LISTENER__V3__FILTER__CONFIG_TYPE_TYPED_CONFIG || !f->typed_config ||
        !f->typed_config->type_url)
        return false;
    const char *slash = strrchr(f->typed_config->type_url, '/');
    return strcmp(slash ? slash + 1 : f->typed_config->type_url, HCM_TYPE) == 0;
}

/* Calls fn on every HCM of listener l (unpacked copy; fn may change it and ask for a repack by
 * returning 1; 0 leaves it; -1 stops with -1). */
static int each_hcm(Listener *l, int (*fn)(Hcm *h, void *arg), void *arg)
{
    size_t nch = l->n_filter_chains + (l->default_filter_chain ? 1 : 0);
    for (size_t i = 0; i < nch; i++) {
        FilterChain *fc = i < l->n_filter_chains ? l->filter_chains[i] : l->default_filter_chain;
        for (size_t j = 0; j < fc->n_filters; j++) {
            Envoy__Config__Listener__V3__Filter *f = fc->filters[j];
            if (!is_hcm(f))
                continue;
            Hcm *h = (Hcm *)pbmap_unpack_any(&f->typed_config->base, NULL, NULL);
            if (!h)
                continue; /* snapshot_build reports it */
            int r = fn(h, arg);
            if (r == 1) {
                Google__Protobuf__Any *any = f->typed_config;
                Google__Protobuf__Any fresh = GOOGLE__PROTOBUF__ANY__INIT;
                if (pbmap_pack_any(&h->base, &fresh.base) < 0)
                    r = -1;
                else {
                    if (any->type_url != protobuf_c_empty_string)
                        free(any->type_url);
                    free(any->value.data);
                    any->type_url = fresh.type_url;
                    any->value = fresh.value;
                }
            }
            protobuf_c_message_free_unpacked(&h->base, NULL);
            if (r < 0)
                return -1;
        }
    }
    return 0;
}

struct names {
    const char **v;
    size_t n;
};

static void names_add(struct names *ns, const char *s)
{
    for (size_t i = 0; i < ns->n; i++)
        if (strcmp(ns->v[i], s) == 0)
            return;
    const char **nv = realloc(ns->v, (ns->n + 1) * sizeof *nv);
    if (!nv)
        return;
    ns->v = nv;
    ns->v[ns->n++] = s;
}

/* The name an EDS cluster's ClusterLoadAssignment has (eds_cluster_config.service_name or
 * the cluster's name), or NULL for other clusters. */
static const char *eds_name(const Cluster *c)
{
    if (c->cluster_discovery_type_case != ENVOY__CONFIG__CLUSTER__V3__CLUSTER__CLUSTER_DISCOVERY_TYPE_TYPE ||
        c->type != ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__EDS)
        return NULL;
    return c->eds_cluster_config && c->eds_cluster_config->service_name && c->eds_cluster_config->service_name[0]
               ? c->eds_cluster_config->service_name
               : c->name;
}

size_t xds_eds_names(const struct xds_set *cds, const char ***out)
{
    struct names ns = {0};
    for (size_t i = 0; cds && i < cds->n; i++) {
        const char *sn = eds_name((const Cluster *)cds->r[i].msg);
        if (sn)
            names_add(&ns, sn);
    }
    *out = ns.v;
    return ns.n;
}

/* Names collected from unpacked copies that die after each visit are strdup'ed. */
struct name_collect {
    struct names ns;
    char **pool;
    size_t npool;
};

static void collect_add(struct name_collect *nc, const char *name)
{
    for (size_t i = 0; i < nc->ns.n; i++)
        if (strcmp(nc->ns.v[i], name) == 0)
            return;
    char **np = realloc(nc->pool, (nc->npool + 1) * sizeof *np);
    if (!np)
        return;
    nc->pool = np;
    nc->pool[nc->npool] = strdup(name);
    if (!nc->pool[nc->npool])
        return;
    names_add(&nc->ns, nc->pool[nc->npool++]);
}

/* The collected names as a malloc'd array of malloc'd strings (the caller frees both). */
static size_t collect_done(struct name_collect *nc, const char ***out)
{
    free(nc->pool); /* the strings themselves are in nc->ns.v */
    *out = nc->ns.v;
    return nc->ns.n;
}

static int collect_rds(Hcm *h, void *arg)
{
    if (h->route_specifier_case == RDS_CASE && h->rds && h->rds->route_config_name)
        collect_add(arg, h->rds->route_config_name);
    return 0;
}

/* Route names are returned as malloc'd strings in a malloc'd array: the caller frees each
 * string and the array (unlike xds_eds_names, whose strings are borrowed). */
size_t xds_rds_names(const struct xds_set *lds, const char ***out)
{
    struct name_collect nc = {0};
    for (size_t i = 0; lds && i < lds->n; i++)
        each_hcm((Listener *)lds->r[i].msg, collect_rds, &nc);
    return collect_done(&nc, out);
}

uint64_t xds_fetch_ms(const ProtobufCMessage *m)
{
    const Envoy__Config__Core__V3__ConfigSource *cs = (const void *)m;
    if (!cs || !cs->initial_fetch_timeout)
        return XDS_DEFAULT_INITIAL_FETCH_MS;
    return (uint64_t)cs->initial_fetch_timeout->seconds * 1000u + (uint64_t)cs->initial_fetch_timeout->nanos / 1000000u;
}

/* What the SDS subscription collects: the names, and the initial_fetch_timeout to warm with. */
struct sds_collect {
    struct name_collect nc;
    uint64_t fetch_ms;
    bool any, forever;
};

/* The SDS names (references with sds_config) of one transport socket's TLS context. */
static void collect_sds(struct sds_collect *sc, const Envoy__Config__Core__V3__TransportSocket *ts, bool server)
{
    if (!ts || ts->config_type_case != ENVOY__CONFIG__CORE__V3__TRANSPORT_SOCKET__CONFIG_TYPE_TYPED_CONFIG ||
        !ts->typed_config)
        return;
    const ProtobufCMessageDescriptor *d = server ? &envoy__extensions__transport_sockets__tls__v3__downstream_tls_context__descriptor
                                                 : &envoy__extensions__transport_sockets__tls__v3__upstream_tls_context__descriptor;
    if (pbmap_find_type(ts->typed_config->type_url) != d)
        return; /* raw_buffer, or an error snapshot_build reports */
    ProtobufCMessage *m = pbmap_unpack_any(&ts->typed_config->base, d, NULL);
    if (!m)
        return;
    const Envoy__Extensions__TransportSockets__Tls__V3__CommonTlsContext *c =
        server ? ((Envoy__Extensions__TransportSockets__Tls__V3__DownstreamTlsContext *)m)->common_tls_context
               : ((Envoy__Extensions__TransportSockets__Tls__V3__UpstreamTlsContext *)m)->common_tls_context;
    const Envoy__Extensions__TransportSockets__Tls__V3__SdsSecretConfig *refs[TLS_SDS_REFS_MAX];
    size_t n = 0;
    for (size_t i = 0; c && i < c->n_tls_certificate_sds_secret_configs && n + 1 < TLS_SDS_REFS_MAX; i++)
        refs[n++] = c->tls_certificate_sds_secret_configs[i];
    if (c && c->validation_context_type_case == VC_SDS_CASE)
        refs[n++] = c->validation_context_sds_secret_config;
    if (c && c->validation_context_type_case == VC_COMBINED_CASE && c->combined_validation_context)
        refs[n++] = c->combined_validation_context->validation_context_sds_secret_config;
    for (size_t i = 0; i < n; i++) {
        if (!refs[i] || !refs[i]->sds_config || !refs[i]->name || !refs[i]->name[0])
            continue;
        collect_add(&sc->nc, refs[i]->name);
        uint64_t ms = xds_fetch_ms(&refs[i]->sds_config->base);
        sc->forever |= ms == 0;
        if (!sc->any || ms > sc->fetch_ms)
            sc->fetch_ms = ms;
        sc->any = true;
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

size_t xds_sds_names(const struct xds_set *cds, const struct xds_set *lds, const char ***out, uint64_t *fetch_ms)
{
    struct sds_collect sc = {0};
    for (size_t i = 0; cds && i < cds->n; i++)
        collect_sds(&sc, ((const Cluster *)cds->r[i].msg)->transport_socket, false);
    for (size_t i = 0; lds && i < lds->n; i++) {
        const Listener *l = (const Listener *)lds->r[i].msg;
        for (size_t j = 0; j < l->n_filter_chains; j++)
            collect_sds(&sc, l->filter_chains[j]->transport_socket, true);
        if (l->default_filter_chain)
            collect_sds(&sc, l->default_filter_chain->transport_socket, true);
    }
    if (sc.any)
        *fetch_ms = sc.forever ? 0 : sc.fetch_ms;
    return collect_done(&sc.nc, out);
}

struct rds_resolve {
    const struct xds_set *rds;
    bool missing;
    const char *missing_name;
};

static int resolve_rds(Hcm *h, void *arg)
{
    struct rds_resolve *rr = arg;
    if (h->route_specifier_case != RDS_CASE || !h->rds)
        return 0;
    const struct xds_resource *r = find(rr->rds, h->rds->route_config_name ? h->rds->route_config_name : "");
    if (!r) {
        rr->missing = true;
        return 0;
    }
    ProtobufCMessage *rc = pb_dup(r->msg);
    if (!rc)
        return -1;
    protobuf_c_message_free_unpacked(&h->rds->base, NULL);
    h->route_specifier_case = RC_CASE;
    h->route_config = (Envoy__Config__Route__V3__RouteConfiguration *)rc;
    return 1;
}

/* The route_config_name of the HCM that is filter F of filter chain C (C == SIZE_MAX: the
 * default filter chain) of listener l when that HCM takes its routes by RDS, else NULL.
 * Returns a malloc'd copy (the HCM is unpacked only for this). */
static char *rds_name_at(const Listener *l, size_t c, size_t f)
{
    const FilterChain *fc = c == SIZE_MAX ? l->default_filter_chain : c < l->n_filter_chains ? l->filter_chains[c] : NULL;
    if (!fc || f >= fc->n_filters || !is_hcm(fc->filters[f]))
        return NULL;
    Hcm *h = (Hcm *)pbmap_unpack_any(&fc->filters[f]->typed_config->base, NULL, NULL);
    char *name = NULL;
    if (h && h->route_specifier_case == RDS_CASE && h->rds && h->rds->route_config_name)
        name = strdup(h->rds->route_config_name);
    if (h)
        protobuf_c_message_free_unpacked(&h->base, NULL);
    return name;
}

/* "Listener 'l': filter_chains[C].filters[F]...route_config.field: problem" about routes that
 * came by RDS becomes "RouteConfiguration 'name': field: problem", as Envoy names them. */
static void name_route_error(char *err, size_t errlen, const Listener *l, const char *tail)
{
    size_t c = SIZE_MAX, f;
    int used = 0;
    if (sscanf(tail, "filter_chains[%zu].filters[%zu]%n", &c, &f, &used) != 2 &&
        sscanf(tail, "default_filter_chain.filters[%zu]%n", &f, &used) != 1)
        return;
    const char *rc = strstr(tail + used, "route_config");
    if (!rc || (rc[12] != '.' && rc[12] != ':'))
        return;
    char *name = rds_name_at(l, c, f);
    if (!name)
        return;
    char rest[1024];
    snprintf(rest, sizeof rest, "%s", rc[12] == '.' ? rc + 13 : rc + 14);
    snprintf(err, errlen, "RouteConfiguration '%s': %s", name, rest);
    free(name);
}

/* Rewrites "static_resources.clusters[N].field: problem" errors about dynamic resources
 * (N >= nstatic) into "Cluster 'name': field: problem", so a NACK names the resource the
 * server sent (its type and name) and the field path inside it, as Envoy users expect. Parts
 * that came by EDS or RDS are named as those resources: "ClusterLoadAssignment 'name': ..."
 * for an EDS cluster's load_assignment, "RouteConfiguration 'name': ..." for an HCM's routes.
 * msgs are the resources as received (Cluster or Listener), parallel to names. */
static void name_error(char *err, size_t errlen, const char *what, const char *type, size_t nstatic,
                       char **names, const ProtobufCMessage *const *msgs)
{
    char key[64];
    snprintf(key, sizeof key, "static_resources.%ss[", what);
    size_t kl = strlen(key);
    if (strncmp(err, key, kl) != 0)
        return;
    char *end;
    unsigned long idx = strtoul(err + kl, &end, 10);
    if (*end != ']' || idx < nstatic)
        return;
    char tail[1024];
    const char *t = end + 1;
    if (*t == '.')
        t++;        /* a field inside the resource */
    else if (*t == ':' && t[1] == ' ')
        t += 2;     /* the resource itself */
    snprintf(tail, sizeof tail, "%s", t);
    const ProtobufCMessage *m = msgs[idx - nstatic];
    const char *sn = strcmp(what, "cluster") == 0 ? eds_name((const Cluster *)m) : NULL;
    if (sn && strncmp(tail, "load_assignment", 15) == 0 && (tail[15] == '.' || tail[15] == ':')) {
        snprintf(err, errlen, "ClusterLoadAssignment '%s': %s", sn, tail[15] == '.' ? tail + 16 : tail + 17);
        return;
    }
    snprintf(err, errlen, "%s '%s': %s", type, names[idx - nstatic], tail);
    if (strcmp(what, "listener") == 0)
        name_route_error(err, errlen, (const Listener *)m, tail);
}

/* {"version_info", "last_updated"} of one resource, the fields every dynamic_* entry has. */
static json_t *dyn_meta(const struct xds_resource *r)
{
    json_t *e = json_object();
    json_object_set_new(e, "version_info", json_string(r->version ? r->version : ""));
    char ts[32];
    struct tm tm;
    gmtime_r(&r->last_updated, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(e, "last_updated", json_string(ts));
    return e;
}

/* Moves the dynamic entries out of the static_* arrays of the dump s built and adds Envoy's
 * dynamic_* sections, in place of s->config_json. */
static void render_dump(struct snapshot *s, size_t nsc, size_t nsl, const struct xds_set sets[XDS_NTYPES],
                        const struct xds_resource **lres, size_t nl)
{
    json_error_t je;
    json_t *root = json_loads(s->config_json, 0, &je);
    if (!root)
        return;
    json_t *configs = json_object_get(root, "configs");
    json_t *bs = json_object_get(json_object_get(json_array_get(configs, 0), "bootstrap"), "staticResources");
    json_t *bl = json_object_get(bs, "listeners"), *bc = json_object_get(bs, "clusters");
    while (bl && json_array_size(bl) > nsl)
        json_array_remove(bl, nsl);
    while (bc && json_array_size(bc) > nsc)
        json_array_remove(bc, nsc);
    json_t *cd = json_array_get(configs, 1), *ld = json_array_get(configs, 2);
    json_t *sc = json_object_get(cd, "static_clusters"), *sl = json_object_get(ld, "static_listeners");
    json_t *dc = json_array(), *dl = json_array();
    for (size_t i = nsc; sc && json_array_size(sc) > nsc; i++) {
        json_t *e = json_object();
        const struct xds_resource *r = &sets[XDS_CDS].r[i - nsc];
        json_t *d = dyn_meta(r);
        json_object_set(e, "version_info", json_object_get(d, "version_info"));
        json_t *cj = pbmap_to_json(r->msg); /* as received: eds_cluster_config, no endpoints */
        json_object_set_new(cj, "@type", json_string("type.googleapis.com/envoy.config.cluster.v3.Cluster"));
        json_object_set_new(e, "cluster", cj);
        json_object_set(e, "last_updated", json_object_get(d, "last_updated"));
        json_decref(d);
        json_array_append_new(dc, e);
        json_array_remove(sc, nsc);
    }
    for (size_t i = 0; sl && json_array_size(sl) > nsl && i < nl; i++) {
        json_t *e = json_object(), *as = json_object();
        const struct xds_resource *r = lres[i];
        json_t *d = dyn_meta(r);
        json_object_set_new(e, "name", json_string(r->name));
        json_object_set(as, "version_info", json_object_get(d, "version_info"));
        /* As Envoy shows it: the listener as received (rds, not the resolved routes). */
        json_t *lj = pbmap_to_json(r->msg);
        json_object_set_new(lj, "@type", json_string("type.googleapis.com/envoy.config.listener.v3.Listener"));
        json_object_set_new(as, "listener", lj);
        json_object_set(as, "last_updated", json_object_get(d, "last_updated"));
        json_decref(d);
        json_object_set_new(e, "active_state", as);
        json_array_append_new(dl, e);
        json_array_remove(sl, nsl);
    }
    json_object_set_new(cd, "version_info", json_string(sets[XDS_CDS].n ? sets[XDS_CDS].r[0].version : ""));
    json_object_set_new(cd, "dynamic_active_clusters", dc);
    json_object_set_new(ld, "version_info", json_string(sets[XDS_LDS].n ? sets[XDS_LDS].r[0].version : ""));
    json_object_set_new(ld, "dynamic_listeners", dl);
    json_t *rd = json_object(), *dr = json_array();
    json_object_set_new(rd, "@type", json_string("type.googleapis.com/envoy.admin.v3.RoutesConfigDump"));
    for (size_t i = 0; i < sets[XDS_RDS].n; i++) {
        const struct xds_resource *r = &sets[XDS_RDS].r[i];
        json_t *d = dyn_meta(r), *e = json_object();
        json_object_set(e, "version_info", json_object_get(d, "version_info"));
        json_t *rj = pbmap_to_json(r->msg);
        json_object_set_new(rj, "@type", json_string("type.googleapis.com/envoy.config.route.v3.RouteConfiguration"));
        json_object_set_new(e, "route_config", rj);
        json_object_set(e, "last_updated", json_object_get(d, "last_updated"));
        json_decref(d);
        json_array_append_new(dr, e);
    }
    json_object_set_new(rd, "dynamic_route_configs", dr);
    json_array_append_new(configs, rd);
    json_t *ed = json_object(), *de = json_array();
    json_object_set_new(ed, "@type", json_string("type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"));
    for (size_t i = 0; i < sets[XDS_EDS].n; i++) {
        const struct xds_resource *r = &sets[XDS_EDS].r[i];
        json_t *d = dyn_meta(r), *e = json_object();
        json_object_set(e, "version_info", json_object_get(d, "version_info"));
        json_t *ej = pbmap_to_json(r->msg);
        json_object_set_new(ej, "@type",
                            json_string("type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"));
        json_object_set_new(e, "endpoint_config", ej);
        json_object_set(e, "last_updated", json_object_get(d, "last_updated"));
        json_decref(d);
        json_array_append_new(de, e);
    }
    json_object_set_new(ed, "dynamic_endpoint_configs", de);
    json_array_append_new(configs, ed);
    /* The secrets from SDS, private keys redacted (what `istioctl proxy-config secret` reads). */
    json_t *sd = json_object(), *ds = json_array();
    json_object_set_new(sd, "@type", json_string("type.googleapis.com/envoy.admin.v3.SecretsConfigDump"));
    for (size_t i = 0; i < sets[XDS_SDS].n; i++) {
        const struct xds_resource *r = &sets[XDS_SDS].r[i];
        json_t *d = dyn_meta(r), *e = json_object();
        json_object_set_new(e, "name", json_string(r->name));
        json_object_set(e, "version_info", json_object_get(d, "version_info"));
        json_object_set(e, "last_updated", json_object_get(d, "last_updated"));
        json_t *sj = pbmap_to_json(r->msg);
        json_object_set_new(sj, "@type", json_string("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"));
        json_object_set_new(e, "secret", sj);
        json_decref(d);
        json_array_append_new(ds, e);
    }
    json_object_set_new(sd, "dynamic_active_secrets", ds);
    config_dump_redact(sd);
    json_array_append_new(configs, sd);
    char *text = pbmap_json_dumps(root, 1);
    json_decref(root);
    if (text) {
        free(s->config_json);
        s->config_json = text;
    }
}

static uint64_t hash_msg(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return 0;
    protobuf_c_message_pack(m, b);
    uint64_t h = XXH3_64bits(b, n);
    free(b);
    return h;
}

struct snapshot *xds_snapshot_build(const ProtobufCMessage *bm, const struct xds_set sets[XDS_NTYPES], char *err,
                                    size_t errlen)
{
    const Bootstrap *b = (const Bootstrap *)bm;
    Bootstrap cb = *b;
    StaticResources sr = ENVOY__CONFIG__BOOTSTRAP__V3__BOOTSTRAP__STATIC_RESOURCES__INIT;
    if (b->static_resources)
        sr = *b->static_resources;
    cb.static_resources = &sr;
    /* dynamic_resources stay: snapshot_build ignores them and the bootstrap dump shows them. */
    size_t nsc = sr.n_clusters, nsl = sr.n_listeners;
    const struct xds_set *cds = &sets[XDS_CDS], *lds = &sets[XDS_LDS];
    Cluster **cl = calloc(nsc + cds->n + 1, sizeof *cl);
    Listener **ll = calloc(nsl + lds->n + 1, sizeof *ll);
    char **cnames = calloc(cds->n + 1, sizeof *cnames), **lnames = calloc(lds->n + 1, sizeof *lnames);
    const struct xds_resource **lres = calloc(lds->n + 1, sizeof *lres);
    const ProtobufCMessage **cmsgs = calloc(cds->n + 1, sizeof *cmsgs), **lmsgs = calloc(lds->n + 1, sizeof *lmsgs);
    ProtobufCMessage **owned = calloc(cds->n + lds->n + 1, sizeof *owned);
    const ProtobufCMessage **secrets = calloc(sets[XDS_SDS].n + 1, sizeof *secrets);
    size_t nowned = 0, nl = 0;
    struct snapshot *s = NULL;
    if (!cl || !ll || !cnames || !lnames || !lres || !owned || !cmsgs || !lmsgs || !secrets) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (nsc)
        memcpy(cl, sr.clusters, nsc * sizeof *cl);
    if (nsl)
        memcpy(ll, sr.listeners, nsl * sizeof *ll);
    for (size_t i = 0; i < cds->n; i++) {
        Cluster *c = (Cluster *)cds->r[i].msg;
        cnames[i] = cds->r[i].name;
        const char *sn = eds_name(c);
        cmsgs[i] = &c->base;
        if (sn) {
            Cluster *copy = (Cluster *)pb_dup(&c->base);
            if (!copy) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            owned[nowned++] = &copy->base;
            if (copy->load_assignment)
                protobuf_c_message_free_unpacked(&copy->load_assignment->base, NULL);
            copy->load_assignment = NULL;
            const struct xds_resource *cla = find(&sets[XDS_EDS], sn);
            if (cla)
                copy->load_assignment = (Envoy__Config__Endpoint__V3__ClusterLoadAssignment *)pb_dup(cla->msg);
            c = copy;
        }
        cl[nsc + i] = c;
    }
    for (size_t i = 0; i < lds->n; i++) {
        Listener *copy = (Listener *)pb_dup(lds->r[i].msg);
        if (!copy) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        owned[nowned++] = &copy->base;
        struct rds_resolve rr = {.rds = &sets[XDS_RDS]};
        if (each_hcm(copy, resolve_rds, &rr) < 0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        if (rr.missing)
            continue; /* not ready: its route configuration has not come (Envoy's listener warming) */
        lnames[nl] = lds->r[i].name;
        lmsgs[nl] = lds->r[i].msg;
        lres[nl] = &lds->r[i];
        ll[nsl + nl++] = copy;
    }
    sr.clusters = cl;
    sr.n_clusters = nsc + cds->n;
    sr.listeners = ll;
    sr.n_listeners = nsl + nl;
    for (size_t i = 0; i < sets[XDS_SDS].n; i++)
        secrets[i] = sets[XDS_SDS].r[i].msg;
    s = snapshot_build_sds(&cb.base, secrets, sets[XDS_SDS].n, true, err, errlen);
    if (!s) {
        name_error(err, errlen, "cluster", "Cluster", nsc, cnames, cmsgs);
        name_error(err, errlen, "listener", "Listener", nsl, lnames, lmsgs);
        goto out;
    }
    for (size_t i = 0; i < s->n_listeners && i < sr.n_listeners; i++) {
        struct listener_config *lc = s->listeners[i];
        /* The listener as received: a route change (RDS) alone does not drain its connections. */
        lc->config_hash = hash_msg(i < nsl ? &ll[i]->base : lres[i - nsl]->msg);
    }
    render_dump(s, nsc, nsl, sets, lres, nl);
out:
    for (size_t i = 0; owned && i < nowned; i++)
        protobuf_c_message_free_unpacked(owned[i], NULL);
    free(owned);
    free(secrets);
    free(cl);
    free(ll);
    free(cnames);
    free(lnames);
    free(lres);
    free(cmsgs);
    free(lmsgs);
    return s;
}
