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


typedef Istio__Networking__V1alpha3__TLSRoute TLSRoute;

/* A tcp_proxy filter for the route destinations of an L4 rule (one cluster or weighted). */
static json_t *l4_route_filter(struct tctx *c, const struct istio_object *vso,
                               Istio__Networking__V1alpha3__RouteDestination *const *route, size_t n,
                               uint32_t port)
{
    json_t *weighted = NULL;
    char *single = NULL;
    for (size_t d = 0; d < n; d++) {
        const Istio__Networking__V1alpha3__Destination *dst = route[d]->destination;
        char *host = istio_resolve_host(dst->host, vso->ns, c->m->domain_suffix);
        const struct reg_service *ds = host ? registry_find(c->m->reg, host) : NULL;
        uint32_t p = dst->port && dst->port->number ? dst->port->number
                     : ds && ds->n_ports == 1 ? ds->ports[0].port : port;
        char *cl = host ? t_cluster_name("outbound", p, dst->subset && *dst->subset ? dst->subset : NULL, host) : NULL;
        free(host);
        if (!cl)
            continue;
        if (n == 1) {
            single = cl;
            break;
        }
        if (!weighted)
            weighted = json_array();
        if (route[d]->weight > 0)
            json_array_append_new(weighted, json_pack("{s:s,s:i}", "name", cl, "weight", route[d]->weight));
        free(cl);
    }
    json_t *f;
    if (single) {
        f = tcp_proxy(single, single, NULL);
        free(single);
    } else if (weighted) {
        char stat[64];
        snprintf(stat, sizeof stat, "outbound|%u||tls", port);
        f = tcp_proxy(stat, NULL, weighted);
    } else {
        f = tcp_proxy("BlackHoleCluster", "BlackHoleCluster", NULL);
    }
    return f;
}

static json_t *str_array(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

/* Filter chains for the `tls` rules (SNI) of the VirtualServices bound to gw (NULL: the
 * mesh) that cover host, for port. Returns an array (maybe empty). */
static json_t *tls_chains(struct tctx *c, const char *host, uint32_t port, const char *gw_ns,
                          const char *gw_name)
{
    json_t *chains = json_array();
    const struct istio_object *vso[8];
    size_t nvs;
    if (gw_name) {
        size_t first, n = pilot_model_kind(c->m, ISTIO_VIRTUAL_SERVICE, &first);
        nvs = 0;
        for (size_t i = first; i < first + n && nvs < 8; i++) {
            const VirtualService *vs = (const void *)c->m->objs[i]->spec;
            if (vs->n_tls && t_vs_bound(c->m->objs[i], vs->gateways, vs->n_gateways, gw_ns, gw_name))
                vso[nvs++] = c->m->objs[i];
        }
    } else {
        nvs = t_find_vs(c, host, NULL, NULL, vso, 8);
    }
    for (size_t v = 0; v < nvs; v++) {
        const VirtualService *vs = (const void *)vso[v]->spec;
        for (size_t i = 0; i < vs->n_tls; i++) {
            const TLSRoute *r = vs->tls[i];
            for (size_t m = 0; m < r->n_match; m++) {
                const Istio__Networking__V1alpha3__TLSMatchAttributes *a = r->match[m];
                if (a->port && a->port != port)
                    continue;
                if (a->n_gateways && !t_vs_bound(vso[v], a->gateways, a->n_gateways, gw_ns, gw_name))
                    continue;
                if (a->source_namespace && *a->source_namespace && strcmp(a->source_namespace, c->p->ns))
                    continue;
                json_t *match = json_pack("{s:o}", "serverNames", str_array(a->sni_hosts, a->n_sni_hosts));
                json_array_append_new(chains, json_pack("{s:o,s:[o]}", "filterChainMatch", match, "filters",
                                                        l4_route_filter(c, vso[v], r->route, r->n_route, port)));
            }
        }
    }
    return chains;
}

static json_t *tls_inspector(void)
{
    return json_pack("[{s:s,s:o}]", "name", "envoy.filters.listener.tls_inspector", "typedConfig",
                     t_any("envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector", NULL));
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
            if (rp->protocol == REG_PROTO_UDP || !t_port_visible(c, s, rp->port))
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
            json_t *chains = rp->protocol == REG_PROTO_TLS || rp->protocol == REG_PROTO_HTTPS
                                 ? tls_chains(c, s->hostname, rp->port, NULL, NULL) : json_array();
            int sni = json_array_size(chains) > 0;
            json_array_append_new(chains, json_pack("{s:[o]}", "filters", f)); /* the default */
            json_t *l = json_pack("{s:s,s:o,s:o,s:b,s:s}", "name", name, "address", address(s->vip, rp->port),
                                  "filterChains", chains, "bindToPort", 0, "trafficDirection", "OUTBOUND");
            if (sni)
                json_object_set_new(l, "listenerFilters", tls_inspector());
            json_array_append_new(out, l);
        }
    }
    return 0;
}

/* Istio's RDS name for a terminated HTTPS gateway server. */
void t_gateway_https_rds(const struct istio_object *gw, const Istio__Networking__V1alpha3__Server *srv,
                         char *buf, size_t n)
{
    snprintf(buf, n, "https.%u.%s.%s.%s", srv->port->number, srv->port->name ? srv->port->name : "",
             gw->name, gw->ns);
}

static json_t *downstream_tls(const Istio__Networking__V1alpha3__ServerTLSSettings *t)
{
    json_t *common = json_pack("{s:[s,s]}", "alpnProtocols", "h2", "http/1.1");
    char sds[300];
    if (t->credential_name && *t->credential_name) {
        snprintf(sds, sizeof sds, "kubernetes://%s", t->credential_name);
        json_object_set_new(common, "tlsCertificateSdsSecretConfigs",
                            json_pack("[{s:s,s:o}]", "name", sds, "sdsConfig", t_ads_source()));
        if (t->mode == ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__MUTUAL) {
            snprintf(sds, sizeof sds, "kubernetes://%s-cacert", t->credential_name);
            json_object_set_new(common, "validationContextSdsSecretConfig",
                                json_pack("{s:s,s:o}", "name", sds, "sdsConfig", t_ads_source()));
        }
    } else {
        snprintf(sds, sizeof sds, "file-cert:%s~%s", t->server_certificate ? t->server_certificate : "",
                 t->private_key ? t->private_key : "");
        json_object_set_new(common, "tlsCertificateSdsSecretConfigs",
                            json_pack("[{s:s,s:o}]", "name", sds, "sdsConfig", t_ads_source()));
        if (t->mode == ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__MUTUAL && t->ca_certificates) {
            snprintf(sds, sizeof sds, "file-root:%s", t->ca_certificates);
            json_object_set_new(common, "validationContextSdsSecretConfig",
                                json_pack("{s:s,s:o}", "name", sds, "sdsConfig", t_ads_source()));
        }
    }
    json_t *ctx = json_pack("{s:o,s:b}", "commonTlsContext", common, "requireClientCertificate",
                            t->mode == ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__MUTUAL);
    return json_pack("{s:s,s:o}", "name", "envoy.transport_sockets.tls", "typedConfig",
                     t_any("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", ctx));
}

/* Server names of a gateway server for SNI matching: its hosts without namespace, none when
 * one is "*". */
static json_t *server_names(const Istio__Networking__V1alpha3__Server *srv)
{
    json_t *a = json_array();
    for (size_t i = 0; i < srv->n_hosts; i++) {
        const char *h = strchr(srv->hosts[i], '/');
        h = h ? h + 1 : srv->hosts[i];
        if (!strcmp(h, "*")) {
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, json_string(h));
    }
    return a;
}

struct gw_port {
    uint32_t port;
    const char *bind;
    json_t *chains;
    int sni;
};

static int router_listeners(struct tctx *c, json_t *out)
{
    size_t first, n = pilot_model_kind(c->m, ISTIO_GATEWAY, &first);
    struct gw_port ports[256];
    size_t np = 0;
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
            struct gw_port *gp = NULL;
            for (size_t k = 0; k < np; k++)
                if (ports[k].port == srv->port->number)
                    gp = &ports[k];
            if (!gp) {
                if (np == sizeof ports / sizeof ports[0])
                    continue;
                gp = &ports[np++];
                *gp = (struct gw_port){srv->port->number, srv->bind && *srv->bind ? srv->bind : "0.0.0.0",
                                       json_array(), 0};
            }
            char stat[48];
            snprintf(stat, sizeof stat, "outbound_0.0.0.0_%u", srv->port->number);
            if (reg_protocol_is_http(pr)) {
                char rds[32];
                snprintf(rds, sizeof rds, "http.%u", srv->port->number);
                int dup = 0;
                for (size_t k = 0; k < json_array_size(gp->chains); k++)
                    dup |= json_object_get(json_array_get(gp->chains, k), "filterChainMatch") == NULL;
                if (!dup)
                    json_array_append_new(gp->chains, json_pack("{s:[o]}", "filters", t_hcm(stat, rds, NULL, 1)));
            } else if ((pr == REG_PROTO_HTTPS || pr == REG_PROTO_TLS) && srv->tls &&
                       srv->tls->mode != ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__PASSTHROUGH &&
                       srv->tls->mode != ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__AUTO_PASSTHROUGH &&
                       srv->tls->mode != ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__ISTIO_MUTUAL) {
                char rds[300];
                t_gateway_https_rds(go, srv, rds, sizeof rds);
                json_t *chain = json_pack("{s:[o],s:o}", "filters", t_hcm(stat, rds, NULL, 1), "transportSocket",
                                          downstream_tls(srv->tls));
                json_t *names = server_names(srv);
                if (names) {
                    json_object_set_new(chain, "filterChainMatch", json_pack("{s:o}", "serverNames", names));
                    gp->sni = 1;
                }
                json_array_append_new(gp->chains, chain);
            } else if ((pr == REG_PROTO_HTTPS || pr == REG_PROTO_TLS) && srv->tls &&
                       srv->tls->mode == ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__PASSTHROUGH) {
                json_t *chains = tls_chains(c, NULL, srv->port->number, go->ns, go->name);
                size_t i;
                json_t *ch;
                json_array_foreach(chains, i, ch)
                    json_array_append(gp->chains, ch);
                gp->sni |= json_array_size(chains) > 0;
                json_decref(chains);
            } else {
                t_warn(c, "%s:%d: Gateway %s/%s: %s servers (tls mode %d) are not translated yet", go->file,
                       go->line, go->ns, go->name, srv->port->protocol,
                       srv->tls ? (int)srv->tls->mode : -1);
            }
        }
    }
    for (size_t k = 0; k < np; k++) {
        if (!json_array_size(ports[k].chains)) {
            json_decref(ports[k].chains);
            continue;
        }
        char name[32];
        snprintf(name, sizeof name, "0.0.0.0_%u", ports[k].port);
        json_t *l = json_pack("{s:s,s:o,s:o,s:s}", "name", name, "address", address(ports[k].bind, ports[k].port),
                              "filterChains", ports[k].chains, "trafficDirection", "OUTBOUND");
        if (ports[k].sni)
            json_object_set_new(l, "listenerFilters", tls_inspector());
        json_array_append_new(out, l);
    }
    return 0;
}

int t_gen_listeners(struct tctx *c, json_t *out)
{
    return c->p->type == PILOT_PROXY_ROUTER ? router_listeners(c, out) : sidecar_listeners(c, out);
}
