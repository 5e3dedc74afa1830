/* pilot/translate_listener: LDS. virtualOutbound (15001), virtualInbound (15006), one
 * "0.0.0.0_PORT" listener per outbound HTTP port, "VIP_PORT" per outbound TCP port, and the
 * listeners of Gateway servers for routers. */
#include "pilot/translate_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Istio__Networking__V1alpha3__TCPRoute TCPRoute;

static json_t *address(const char *ip, uint32_t port)
{
    return json_pack("{s:{s:s,s:I}}", "socketAddress", "address", ip, "portValue", (json_int_t)port);
}

static json_t *tcp_proxy(const char *stat_prefix, const char *cluster, json_t *weighted)
{
    json_t *cfg = json_pack("{s:s}", "statPrefix", stat_prefix);
    if (weighted)
        json_object_set_new(cfg, "weightedClusters", json_pack("{s:o}", "clusters", weighted));
    else
        json_object_set_new(cfg, "cluster", json_string(cluster));
    return json_pack("{s:s,s:o}", "name", "envoy.filters.network.tcp_proxy", "typedConfig",
                     t_any("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", cfg));
}

static int port_seen(const uint32_t *ports, size_t n, uint32_t p)
{
    for (size_t i = 0; i < n; i++)
        if (ports[i] == p)
            return 1;
    return 0;
}

/* The tcp_proxy filter for a TCP service port: the first matching `tcp` rule of its
 * VirtualService (weighted `route` destinations), or straight to the service's cluster. */
static json_t *tcp_filter(struct tctx *c, const struct reg_service *s, const struct reg_port *port)
{
    char *own = t_cluster_name("outbound", port->port, NULL, s->hostname);
    if (!own)
        return NULL;
    const struct istio_object *vso[4];
    size_t nvs = t_find_vs(c, s->hostname, NULL, NULL, vso, 4);
    for (size_t v = 0; v < nvs; v++) {
        const VirtualService *vs = (const void *)vso[v]->spec;
        for (size_t i = 0; i < vs->n_tcp; i++) {
            const TCPRoute *r = vs->tcp[i];
            int ok = r->n_match == 0;
            for (size_t m = 0; m < r->n_match && !ok; m++) {
                const Istio__Networking__V1alpha3__L4MatchAttributes *a = r->match[m];
                ok = (!a->port || a->port == port->port) &&
                     (!a->source_namespace || !*a->source_namespace || !strcmp(a->source_namespace, c->p->ns));
                if (ok && a->n_source_labels) {
                    struct istio_kv *sel;
                    int n = istio_map_to_kv((ProtobufCMessage *const *)a->source_labels, a->n_source_labels, &sel);
                    ok = n >= 0 && istio_labels_match(sel, (size_t)n, c->p->labels, c->p->n_labels);
                    free(sel);
                }
            }
            if (!ok || !r->n_route)
                continue;
            json_t *weighted = NULL;
            char *single = NULL;
            for (size_t d = 0; d < r->n_route; d++) {
                const Istio__Networking__V1alpha3__Destination *dst = r->route[d]->destination;
                char *host = istio_resolve_host(dst->host, vso[v]->ns, c->m->domain_suffix);
                const struct reg_service *ds = host ? registry_find(c->m->reg, host) : NULL;
                uint32_t p = dst->port && dst->port->number ? dst->port->number
                             : ds && ds->n_ports == 1 ? ds->ports[0].port : port->port;
                char *cl = host ? t_cluster_name("outbound", p, dst->subset && *dst->subset ? dst->subset : NULL, host) : NULL;
                free(host);
                if (!cl)
                    continue;
                if (r->n_route == 1) {
                    single = cl;
                    break;
                }
                if (!weighted)
                    weighted = json_array();
                if (r->route[d]->weight > 0)
                    json_array_append_new(weighted, json_pack("{s:s,s:i}", "name", cl, "weight", r->route[d]->weight));
                free(cl);
            }
            json_t *f = single ? tcp_proxy(single, single, NULL) : tcp_proxy(own, NULL, weighted);
            free(single);
            free(own);
            return f;
        }
    }
    json_t *f = tcp_proxy(own, own, NULL);
    free(own);
    return f;
}

static int sidecar_listeners(struct tctx *c, json_t *out)
{
    const char *catchall = c->allow_any ? "PassthroughCluster" : "BlackHoleCluster";
    json_array_append_new(out, json_pack("{s:s,s:o,s:[{s:[o],s:s}],s:b,s:s}", "name", "virtualOutbound",
                                         "address", address("0.0.0.0", 15001), "filterChains", "filters",
                                         tcp_proxy(catchall, catchall, NULL), "name",
                                         "virtualOutbound-catchall-tcp", "useOriginalDst", 1,
                                         "trafficDirection", "OUTBOUND"));
    /* inbound */
    struct inbound_port in[64];
    int nin = t_inbound_ports(c, in, 64);
    json_t *chains = json_array();
    for (int i = 0; i < nin; i++) {
        char cl[64], chain[64], stat[64];
        snprintf(cl, sizeof cl, "inbound|%u||", in[i].port);
        snprintf(chain, sizeof chain, "0.0.0.0_%u", in[i].port);
        snprintf(stat, sizeof stat, "inbound_0.0.0.0_%u", in[i].port);
        json_t *filter;
        if (reg_protocol_is_http(in[i].protocol)) {
            char vh[64], op[300];
            snprintf(vh, sizeof vh, "inbound|http|%u", in[i].port);
            snprintf(op, sizeof op, "%s:%u/*", in[i].svc->hostname, in[i].sport->port);
            json_t *rc = json_pack("{s:s,s:[{s:s,s:[s],s:[{s:s,s:{s:s},s:{s:s,s:s,s:{s:s,s:s}},s:{s:s}}]}],s:b}",
                                   "name", cl, "virtualHosts", "name", vh, "domains", "*", "routes",
                                   "name", "default", "match", "prefix", "/", "route", "cluster", cl,
                                   "timeout", "0s", "maxStreamDuration", "maxStreamDuration", "0s",
                                   "grpcTimeoutHeaderMax", "0s", "decorator", "operation", op,
                                   "validateClusters", 0);
            filter = t_hcm(stat, NULL, rc, 0);
        } else {
            filter = tcp_proxy(cl, cl, NULL);
        }
        json_array_append_new(chains, json_pack("{s:{s:i},s:[o],s:s}", "filterChainMatch",
                                                "destinationPort", in[i].port, "filters", filter,
                                                "name", chain));
    }
    json_array_append_new(chains, json_pack("{s:{s:i},s:[o],s:s}", "filterChainMatch", "destinationPort",
                                            15006, "filters",
                                            tcp_proxy("BlackHoleCluster", "BlackHoleCluster", NULL), "name",
                                            "virtualInbound-blackhole"));
    json_array_append_new(chains, json_pack("{s:[o],s:s}", "filters",
                                            tcp_proxy("InboundPassthroughCluster", "InboundPassthroughCluster", NULL),
                                            "name", "virtualInbound-catchall-tcp"));
    json_array_append_new(out, json_pack("{s:s,s:o,s:[{s:s,s:o}],s:o,s:s}", "name", "virtualInbound",
                                         "address", address("0.0.0.0", 15006), "listenerFilters", "name",
                                         "envoy.filters.listener.original_dst", "typedConfig",
                                         t_any("envoy.extensions.filters.listener.original_dst.v3.OriginalDst", NULL),
                                         "filterChains", chains, "trafficDirection", "INBOUND"));
    /* outbound: HTTP ports share 0.0.0.0_PORT; TCP ports get VIP_PORT */
    uint32_t http_ports[1024];
    size_t nhttp = 0;
    for (size_t i = 0; i < c->n_visible; i++) {
        const struct reg_service *s = c->visible[i];
        for (size_t p = 0; p < s->n_ports; p++) {
            const struct reg_port *rp = &s->ports[p];
            if (rp->protocol == REG_PROTO_UDP)
                continue;
            if (reg_protocol_is_http(rp->protocol)) {
                if (port_seen(http_ports, nhttp, rp->port) || nhttp == sizeof http_ports / sizeof http_ports[0])
                    continue;
                http_ports[nhttp++] = rp->port;
                char name[32], stat[48], rds[16];
                snprintf(name, sizeof name, "0.0.0.0_%u", rp->port);
                snprintf(stat, sizeof stat, "outbound_0.0.0.0_%u", rp->port);
                snprintf(rds, sizeof rds, "%u", rp->port);
                json_array_append_new(out, json_pack("{s:s,s:o,s:[{s:[o]}],s:b,s:s}", "name", name,
                                                     "address", address("0.0.0.0", rp->port), "filterChains",
                                                     "filters", t_hcm(stat, rds, NULL, 1), "bindToPort", 0,
                                                     "trafficDirection", "OUTBOUND"));
                continue;
            }
            if (!*s->vip) {
                t_warn(c, "service %s has no address: TCP port %u gets no outbound listener",
                       s->hostname, rp->port);
                continue;
            }
            char name[96];
            snprintf(name, sizeof name, "%s_%u", s->vip, rp->port);
            json_t *f = tcp_filter(c, s, rp);
            if (!f)
                return -1;
            json_array_append_new(out, json_pack("{s:s,s:o,s:[{s:[o]}],s:b,s:s}", "name", name, "address",
                                                 address(s->vip, rp->port), "filterChains", "filters", f,
                                                 "bindToPort", 0, "trafficDirection", "OUTBOUND"));
        }
    }
    return 0;
}

static int router_listeners(struct tctx *c, json_t *out)
{
    size_t first, n = pilot_model_kind(c->m, ISTIO_GATEWAY, &first);
    uint32_t seen[256];
    size_t nseen = 0;
    for (size_t g = first; g < first + n; g++) {
        const struct istio_object *go = c->m->objs[g];
        const Istio__Networking__V1alpha3__Gateway *gw = (const void *)go->spec;
        struct istio_kv *sel;
        int ns = istio_map_to_kv((ProtobufCMessage *const *)gw->selector, gw->n_selector, &sel);
        int ok = ns >= 0 && istio_labels_match(sel, (size_t)ns, c->p->labels, c->p->n_labels);
        free(sel);
        if (!ok)
            continue;
        for (size_t si = 0; si < gw->n_servers; si++) {
            const Istio__Networking__V1alpha3__Server *srv = gw->servers[si];
            enum reg_protocol pr = reg_protocol_from(srv->port->protocol, NULL);
            if (!reg_protocol_is_http(pr)) {
                t_warn(c, "%s:%d: Gateway %s/%s: %s servers are not translated yet", go->file, go->line,
                       go->ns, go->name, srv->port->protocol);
                continue;
            }
            if (port_seen(seen, nseen, srv->port->number) || nseen == 256)
                continue;
            seen[nseen++] = srv->port->number;
            char name[32], stat[48], rds[32];
            snprintf(name, sizeof name, "0.0.0.0_%u", srv->port->number);
            snprintf(stat, sizeof stat, "outbound_0.0.0.0_%u", srv->port->number);
            snprintf(rds, sizeof rds, "http.%u", srv->port->number);
            json_array_append_new(out, json_pack("{s:s,s:o,s:[{s:[o]}],s:s}", "name", name, "address",
                                                 address(srv->bind && *srv->bind ? srv->bind : "0.0.0.0",
                                                         srv->port->number),
                                                 "filterChains", "filters", t_hcm(stat, rds, NULL, 1),
                                                 "trafficDirection", "OUTBOUND"));
        }
    }
    return 0;
}

int t_gen_listeners(struct tctx *c, json_t *out)
{
    return c->p->type == PILOT_PROXY_ROUTER ? router_listeners(c, out) : sidecar_listeners(c, out);
}
