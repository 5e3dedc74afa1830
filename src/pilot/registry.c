/* pilot/registry: services and endpoints from Service, ServiceEntry and WorkloadEntry. */
#include "pilot/registry.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "istio/networking/v1alpha3/service_entry.pb-c.h"
#include "istio/networking/v1alpha3/workload_entry.pb-c.h"
#include "weft/k8s/v1/core.pb-c.h"

typedef Istio__Networking__V1alpha3__WorkloadEntry WorkloadEntry;

static const struct { const char *name; enum reg_protocol p; } proto_names[] = {
    {"http", REG_PROTO_HTTP},   {"http2", REG_PROTO_HTTP2}, {"grpc-web", REG_PROTO_GRPC_WEB},
    {"grpc", REG_PROTO_GRPC},   {"https", REG_PROTO_HTTPS}, {"tls", REG_PROTO_TLS},
    {"tcp", REG_PROTO_TCP},     {"mongo", REG_PROTO_MONGO}, {"redis", REG_PROTO_REDIS},
    {"mysql", REG_PROTO_MYSQL}, {"udp", REG_PROTO_UDP},
};

static int proto_lookup(const char *s, size_t n, enum reg_protocol *out)
{
    for (size_t i = 0; i < sizeof proto_names / sizeof proto_names[0]; i++)
        if (strlen(proto_names[i].name) == n && !strncasecmp(proto_names[i].name, s, n)) {
            *out = proto_names[i].p;
            return 0;
        }
    return -1;
}

enum reg_protocol reg_protocol_from(const char *name, const char *app_protocol)
{
    enum reg_protocol p;
    if (app_protocol && *app_protocol) {
        if (!strcmp(app_protocol, "kubernetes.io/h2c"))
            return REG_PROTO_HTTP2;
        if (!strcmp(app_protocol, "kubernetes.io/ws") || !strcmp(app_protocol, "kubernetes.io/wss"))
            return REG_PROTO_HTTP;
        if (proto_lookup(app_protocol, strlen(app_protocol), &p) == 0)
            return p;
    }
    if (!name || !*name)
        return REG_PROTO_UNSUPPORTED;
    if (!strncasecmp(name, "grpc-web", 8) && (name[8] == '\0' || name[8] == '-'))
        return REG_PROTO_GRPC_WEB;
    size_t n = strcspn(name, "-");
    if (proto_lookup(name, n, &p) == 0)
        return p;
    return REG_PROTO_UNSUPPORTED;
}

const char *reg_protocol_name(enum reg_protocol p)
{
    for (size_t i = 0; i < sizeof proto_names / sizeof proto_names[0]; i++)
        if (proto_names[i].p == p)
            return proto_names[i].name;
    return "unsupported";
}

int reg_protocol_is_http(enum reg_protocol p)
{
    return p == REG_PROTO_HTTP || p == REG_PROTO_HTTP2 || p == REG_PROTO_GRPC ||
           p == REG_PROTO_GRPC_WEB;
}

/* ---- building ---- */

/* A WorkloadEntry with its labels as a sorted kv array (computed once per build). */
struct we_entry {
    const struct istio_object *o;
    struct istio_kv *labels;
    size_t n_labels;
    int owned;
};

struct builder {
    struct registry *r;
    size_t cap;
    struct istio_object *const *objs;
    size_t n_objs;
    struct istio_errors *warn;
    struct we_entry *wes;
    size_t n_wes;
};

static struct reg_service *new_service(struct builder *b)
{
    if (b->r->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        struct reg_service *s = realloc(b->r->svcs, cap * sizeof *s);
        if (!s)
            return NULL;
        b->r->svcs = s;
        b->cap = cap;
    }
    struct reg_service *s = &b->r->svcs[b->r->n++];
    memset(s, 0, sizeof *s);
    return s;
}

static int push_ep(struct reg_service *s, size_t port_idx, const struct reg_endpoint *ep)
{
    struct reg_endpoint *a = realloc(s->eps[port_idx], (s->n_eps[port_idx] + 1) * sizeof *a);
    if (!a)
        return -1;
    a[s->n_eps[port_idx]++] = *ep;
    s->eps[port_idx] = a;
    return 0;
}

static uint32_t we_port(const WorkloadEntry *we, const char *name)
{
    if (!name || !*name)
        return 0;
    for (size_t i = 0; i < we->n_ports; i++)
        if (!strcmp(we->ports[i]->key, name))
            return we->ports[i]->value;
    return 0;
}

/* Labels of a WorkloadEntry: its spec labels, or (when empty) its metadata labels. */
static void we_labels(const struct istio_object *o, struct istio_kv **kv, size_t *n, int *owned)
{
    const WorkloadEntry *we = (const WorkloadEntry *)o->spec;
    *owned = 0;
    if (we->n_labels) {
        int c = istio_map_to_kv((ProtobufCMessage *const *)we->labels, we->n_labels, kv);
        *n = c > 0 ? (size_t)c : 0;
        *owned = 1;
    } else {
        *kv = o->labels;
        *n = o->n_labels;
    }
}

/* Adds the WorkloadEntries of namespace ns matching sel to s. */
static int select_workloads(struct builder *b, struct reg_service *s, const char *ns,
                            const struct istio_kv *sel, size_t n_sel)
{
    for (size_t i = 0; i < b->n_wes; i++) {
        const struct istio_object *o = b->wes[i].o;
        if (strcmp(o->ns, ns) || !istio_labels_match(sel, n_sel, b->wes[i].labels, b->wes[i].n_labels))
            continue;
        const WorkloadEntry *we = (const WorkloadEntry *)o->spec;
        for (size_t p = 0; p < s->n_ports; p++) {
            const struct reg_port *rp = &s->ports[p];
            uint32_t port = we_port(we, rp->target_name);
            if (!port)
                port = we_port(we, rp->name);
            if (!port && !rp->target_name)
                port = rp->target_port ? rp->target_port : rp->port;
            if (!port) {
                if (b->warn)
                    istio_errors_add(b->warn, "%s:%d: WorkloadEntry %s/%s has no port named %s for service %s",
                                     o->file, o->line, o->ns, o->name, rp->target_name, s->hostname);
                continue;
            }
            struct reg_endpoint ep = {
                .address = we->address, .port = port,
                .service_account = we->service_account && *we->service_account ? we->service_account : "default",
                .locality = we->locality ? we->locality : "", .network = we->network ? we->network : "",
                .weight = we->weight, .workload = o,
            };
            /* metadata labels are borrowed from the object; spec labels are converted once
             * the registry is complete (fill_labels) */
            if (!we->n_labels) {
                ep.labels = o->labels;
                ep.n_labels = o->n_labels;
            }
            if (push_ep(s, p, &ep) < 0)
                return -1;
        }
    }
    return 0;
}

static int service_from_k8s(struct builder *b, const struct istio_object *o)
{
    const Weft__K8s__V1__ServiceSpec *spec = (const Weft__K8s__V1__ServiceSpec *)o->spec;
    int external = spec->type && !strcmp(spec->type, "ExternalName");
    if (external && (!spec->external_name || !*spec->external_name))
        return 0;
    struct reg_service *s = new_service(b);
    if (!s)
        return -1;
    size_t n = strlen(o->name) + strlen(o->ns) + strlen(b->r->domain_suffix) + 8;
    if (!(s->hostname = malloc(n)))
        return -1;
    snprintf(s->hostname, n, "%s.%s.svc.%s", o->name, o->ns, b->r->domain_suffix);
    s->name = o->name;
    s->ns = o->ns;
    s->obj = o;
    s->resolution = REG_RES_STATIC;
    if (spec->clusterip && !strcmp(spec->clusterip, "None"))
        s->resolution = REG_RES_STATIC; /* headless: still EDS, no VIP */
    else if (spec->clusterip && *spec->clusterip)
        snprintf(s->vip, sizeof s->vip, "%s", spec->clusterip);
    else
        s->vip_auto = 1;
    s->n_ports = spec->n_ports;
    s->ports = calloc(s->n_ports ? s->n_ports : 1, sizeof *s->ports);
    s->eps = calloc(s->n_ports ? s->n_ports : 1, sizeof *s->eps);
    s->n_eps = calloc(s->n_ports ? s->n_ports : 1, sizeof *s->n_eps);
    if (!s->ports || !s->eps || !s->n_eps)
        return -1;
    for (size_t i = 0; i < spec->n_ports; i++) {
        const Weft__K8s__V1__ServicePort *p = spec->ports[i];
        struct reg_port *rp = &s->ports[i];
        rp->name = p->name ? p->name : "";
        rp->port = p->port;
        rp->protocol = p->protocol && !strcmp(p->protocol, "UDP") ? REG_PROTO_UDP
                                                                  : reg_protocol_from(p->name, p->app_protocol);
        if (p->target_port && *p->target_port) {
            if (p->target_port[0] >= '0' && p->target_port[0] <= '9')
                rp->target_port = (uint32_t)strtoul(p->target_port, NULL, 10);
            else
                rp->target_name = p->target_port;
        }
    }
    if (external) {
        /* Istio models an ExternalName Service as a DNS service whose endpoint is the name */
        s->resolution = REG_RES_DNS;
        s->vip_auto = 0;
        for (size_t p = 0; p < s->n_ports; p++) {
            struct reg_endpoint ep = {.address = spec->external_name,
                                      .port = s->ports[p].target_port ? s->ports[p].target_port : s->ports[p].port,
                                      .service_account = "", .locality = "", .network = ""};
            if (push_ep(s, p, &ep) < 0)
                return -1;
        }
        return 0;
    }
    if (spec->n_selector) {
        struct istio_kv *sel;
        int ns = istio_map_to_kv((ProtobufCMessage *const *)spec->selector, spec->n_selector, &sel);
        if (ns < 0)
            return -1;
        int rc = select_workloads(b, s, o->ns, sel, (size_t)ns);
        free(sel);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int service_from_se(struct builder *b, const struct istio_object *o)
{
    const Istio__Networking__V1alpha3__ServiceEntry *se =
        (const Istio__Networking__V1alpha3__ServiceEntry *)o->spec;
    for (size_t h = 0; h < se->n_hosts; h++) {
        struct reg_service *s = new_service(b);
        if (!s || !(s->hostname = strdup(se->hosts[h])))
            return -1;
        s->name = o->name;
        s->ns = o->ns;
        s->obj = o;
        s->from_service_entry = 1;
        s->mesh_external = se->location == ISTIO__NETWORKING__V1ALPHA3__SERVICE_ENTRY__LOCATION__MESH_EXTERNAL;
        s->export_to = se->export_to;
        s->n_export_to = se->n_export_to;
        switch (se->resolution) {
        case ISTIO__NETWORKING__V1ALPHA3__SERVICE_ENTRY__RESOLUTION__STATIC: s->resolution = REG_RES_STATIC; break;
        case ISTIO__NETWORKING__V1ALPHA3__SERVICE_ENTRY__RESOLUTION__NONE: s->resolution = REG_RES_NONE; break;
        case ISTIO__NETWORKING__V1ALPHA3__SERVICE_ENTRY__RESOLUTION__DNS_ROUND_ROBIN: s->resolution = REG_RES_DNS_RR; break;
        default: s->resolution = REG_RES_DNS; break;
        }
        if (se->n_addresses)
            snprintf(s->vip, sizeof s->vip, "%s", se->addresses[0]);
        else if (s->hostname[0] != '*' && s->resolution != REG_RES_NONE)
            s->vip_auto = 1;
        s->n_ports = se->n_ports;
        s->ports = calloc(s->n_ports ? s->n_ports : 1, sizeof *s->ports);
        s->eps = calloc(s->n_ports ? s->n_ports : 1, sizeof *s->eps);
        s->n_eps = calloc(s->n_ports ? s->n_ports : 1, sizeof *s->n_eps);
        if (!s->ports || !s->eps || !s->n_eps)
            return -1;
        for (size_t i = 0; i < se->n_ports; i++) {
            const Istio__Networking__V1alpha3__ServicePort *p = se->ports[i];
            s->ports[i].name = p->name ? p->name : "";
            s->ports[i].port = p->number;
            s->ports[i].target_port = p->target_port;
            enum reg_protocol pr;
            s->ports[i].protocol = p->protocol && proto_lookup(p->protocol, strlen(p->protocol), &pr) == 0
                                       ? pr : reg_protocol_from(p->name, NULL);
        }
        for (size_t e = 0; e < se->n_endpoints; e++) {
            const WorkloadEntry *we = se->endpoints[e];
            for (size_t i = 0; i < s->n_ports; i++) {
                uint32_t port = we_port(we, s->ports[i].name);
                if (!port)
                    port = s->ports[i].target_port ? s->ports[i].target_port : s->ports[i].port;
                struct reg_endpoint ep = {
                    .address = we->address, .port = port,
                    .service_account = we->service_account && *we->service_account ? we->service_account : "",
                    .locality = we->locality ? we->locality : "", .network = we->network ? we->network : "",
                    .weight = we->weight,
                };
                if (push_ep(s, i, &ep) < 0)
                    return -1;
            }
        }
        if (se->workload_selector) {
            struct istio_kv *sel;
            int ns = istio_map_to_kv((ProtobufCMessage *const *)se->workload_selector->labels,
                                     se->workload_selector->n_labels, &sel);
            if (ns < 0)
                return -1;
            int rc = select_workloads(b, s, o->ns, sel, (size_t)ns);
            free(sel);
            if (rc < 0)
                return -1;
        }
        if ((s->resolution == REG_RES_DNS || s->resolution == REG_RES_DNS_RR) && se->n_endpoints == 0) {
            /* DNS without endpoints: the host itself is the endpoint */
            for (size_t i = 0; i < s->n_ports; i++) {
                struct reg_endpoint ep = {.address = s->hostname,
                                          .port = s->ports[i].target_port ? s->ports[i].target_port : s->ports[i].port,
                                          .service_account = "", .locality = "", .network = ""};
                if (push_ep(s, i, &ep) < 0)
                    return -1;
            }
        }
    }
    return 0;
}

static int svc_cmp(const void *a, const void *b)
{
    const struct reg_service *x = a, *y = b;
    int c = strcmp(x->hostname, y->hostname);
    return c ? c : strcmp(x->ns, y->ns);
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Deterministic VIPs: in hostname order, each service takes 240.240.0.0/16 + 1 + (hash of
 * its hostname mod 65534), probing forward past addresses already taken. */
static int allocate_vips(struct registry *r)
{
    unsigned char *used = calloc(REG_AUTO_VIP_COUNT, 1);
    if (!used)
        return -1;
    for (size_t i = 0; i < r->n; i++) {
        struct reg_service *s = &r->svcs[i];
        if (!s->vip_auto)
            continue;
        uint32_t slot = fnv1a(s->hostname) % REG_AUTO_VIP_COUNT;
        size_t tries = 0;
        while (used[slot] && tries++ < REG_AUTO_VIP_COUNT)
            slot = (slot + 1) % REG_AUTO_VIP_COUNT;
        if (used[slot]) {
            s->vip_auto = 0; /* range exhausted: no VIP */
            continue;
        }
        used[slot] = 1;
        struct in_addr a = {.s_addr = htonl(REG_AUTO_VIP_BASE + 1 + slot)};
        inet_ntop(AF_INET, &a, s->vip, sizeof s->vip);
    }
    free(used);
    return 0;
}

/* Endpoint labels of WorkloadEntries with spec labels: computed once per endpoint. */
static int fill_labels(struct registry *r)
{
    for (size_t i = 0; i < r->n; i++)
        for (size_t p = 0; p < r->svcs[i].n_ports; p++)
            for (size_t e = 0; e < r->svcs[i].n_eps[p]; e++) {
                struct reg_endpoint *ep = &r->svcs[i].eps[p][e];
                if (ep->labels || !ep->workload)
                    continue;
                const WorkloadEntry *we = (const WorkloadEntry *)ep->workload->spec;
                struct istio_kv *kv;
                int n = istio_map_to_kv((ProtobufCMessage *const *)we->labels, we->n_labels, &kv);
                if (n < 0)
                    return -1;
                /* kept alive in the service (freed with the registry) */
                ep->labels = kv;
                ep->n_labels = (size_t)n;
            }
    return 0;
}

struct registry *registry_build(struct istio_object *const *objs, size_t n,
                                const char *domain_suffix, struct istio_errors *warnings)
{
    struct registry *r = calloc(1, sizeof *r);
    if (!r || !(r->domain_suffix = strdup(domain_suffix ? domain_suffix : "cluster.local"))) {
        free(r);
        return NULL;
    }
    struct builder b = {.r = r, .objs = objs, .n_objs = n, .warn = warnings};
    b.wes = calloc(n ? n : 1, sizeof *b.wes);
    if (!b.wes) {
        registry_free(r);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (objs[i]->kind == ISTIO_WORKLOAD_ENTRY && !objs[i]->invalid && objs[i]->spec) {
            struct we_entry *w = &b.wes[b.n_wes++];
            w->o = objs[i];
            we_labels(objs[i], &w->labels, &w->n_labels, &w->owned);
        }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct istio_object *o = objs[i];
        if (o->invalid || !o->spec)
            continue;
        if (o->kind == ISTIO_K8S_SERVICE)
            rc = service_from_k8s(&b, o);
        else if (o->kind == ISTIO_SERVICE_ENTRY)
            rc = service_from_se(&b, o);
    }
    for (size_t i = 0; i < b.n_wes; i++)
        if (b.wes[i].owned)
            free(b.wes[i].labels);
    free(b.wes);
    if (rc < 0) {
        registry_free(r);
        return NULL;
    }
    if (r->n)
        qsort(r->svcs, r->n, sizeof *r->svcs, svc_cmp);
    if (allocate_vips(r) < 0 || fill_labels(r) < 0) {
        registry_free(r);
        return NULL;
    }
    return r;
}

void registry_free(struct registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        struct reg_service *s = &r->svcs[i];
        for (size_t p = 0; p < s->n_ports; p++) {
            for (size_t e = 0; e < s->n_eps[p]; e++) {
                struct reg_endpoint *ep = &s->eps[p][e];
                if (ep->workload && ((const WorkloadEntry *)ep->workload->spec)->n_labels)
                    free((void *)ep->labels);
            }
            free(s->eps[p]);
        }
        free(s->eps);
        free(s->n_eps);
        free(s->ports);
        free(s->hostname);
    }
    free(r->svcs);
    free(r->domain_suffix);
    free(r);
}

const struct reg_service *registry_find(const struct registry *r, const char *hostname)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->svcs[mid].hostname, hostname);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->n && !strcmp(r->svcs[lo].hostname, hostname) ? &r->svcs[lo] : NULL;
}
