/* pilot/translate_cluster: CDS (outbound|PORT|SUBSET|HOST, inbound|PORT||, Passthrough,
 * BlackHole) and EDS (ClusterLoadAssignments filtered by subset labels). */
#include "pilot/translate_internal.h"

#include "weft/k8s/v1/core.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_CONNECT_TIMEOUT "10s" /* Istio's default connectTimeout */

typedef Istio__Networking__V1alpha3__Subset Subset;
typedef Istio__Networking__V1alpha3__LoadBalancerSettings LoadBalancerSettings;
typedef Istio__Networking__V1alpha3__ConnectionPoolSettings ConnectionPoolSettings;
typedef Istio__Networking__V1alpha3__OutlierDetection OutlierDetection;

/* The policy that applies to port: the port-level settings override the top-level ones
 * field by field (Istio's MergeTrafficPolicy, one level). */
struct policy {
    const LoadBalancerSettings *lb;
    const ConnectionPoolSettings *pool;
    const OutlierDetection *od;
    const Istio__Networking__V1alpha3__ClientTLSSettings *tls;
};

static void apply_policy(struct policy *p, const TrafficPolicy *tp, uint32_t port)
{
    if (!tp)
        return;
    if (tp->load_balancer)
        p->lb = tp->load_balancer;
    if (tp->connection_pool)
        p->pool = tp->connection_pool;
    if (tp->outlier_detection)
        p->od = tp->outlier_detection;
    if (tp->tls)
        p->tls = tp->tls;
    for (size_t i = 0; i < tp->n_port_level_settings; i++) {
        const Istio__Networking__V1alpha3__TrafficPolicy__PortTrafficPolicy *pl = tp->port_level_settings[i];
        if (!pl->port || pl->port->number != port)
            continue;
        if (pl->load_balancer)
            p->lb = pl->load_balancer;
        if (pl->connection_pool)
            p->pool = pl->connection_pool;
        if (pl->outlier_detection)
            p->od = pl->outlier_detection;
        if (pl->tls)
            p->tls = pl->tls;
    }
}

static json_t *circuit_breakers(const ConnectionPoolSettings *pool)
{
    json_int_t maxc = 4294967295LL, maxp = 4294967295LL, maxr = 4294967295LL, maxre = 4294967295LL;
    if (pool && pool->tcp && pool->tcp->max_connections > 0)
        maxc = pool->tcp->max_connections;
    if (pool && pool->http) {
        if (pool->http->http1_max_pending_requests > 0)
            maxp = pool->http->http1_max_pending_requests;
        if (pool->http->http2_max_requests > 0)
            maxr = pool->http->http2_max_requests;
        if (pool->http->max_retries > 0)
            maxre = pool->http->max_retries;
    }
    return json_pack("{s:[{s:I,s:I,s:I,s:I,s:b}]}", "thresholds", "maxConnections", maxc,
                     "maxPendingRequests", maxp, "maxRequests", maxr, "maxRetries", maxre,
                     "trackRemaining", 1);
}

static void set_lb(json_t *cl, const LoadBalancerSettings *lb)
{
    if (!lb) {
        json_object_set_new(cl, "lbPolicy", json_string("LEAST_REQUEST")); /* Istio's default */
        return;
    }
    if (lb->lb_policy_case == ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__LB_POLICY_SIMPLE) {
        switch (lb->simple) {
        case ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__SIMPLE_LB__ROUND_ROBIN:
            json_object_set_new(cl, "lbPolicy", json_string("ROUND_ROBIN"));
            break;
        case ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__SIMPLE_LB__RANDOM:
            json_object_set_new(cl, "lbPolicy", json_string("RANDOM"));
            break;
        case ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__SIMPLE_LB__PASSTHROUGH:
            json_object_set_new(cl, "type", json_string("ORIGINAL_DST"));
            json_object_set_new(cl, "lbPolicy", json_string("CLUSTER_PROVIDED"));
            json_object_del(cl, "edsClusterConfig");
            break;
        default: /* UNSPECIFIED, LEAST_CONN, LEAST_REQUEST */
            json_object_set_new(cl, "lbPolicy", json_string("LEAST_REQUEST"));
        }
        return;
    }
    const Istio__Networking__V1alpha3__LoadBalancerSettings__ConsistentHashLB *ch = lb->consistent_hash;
    if (ch->hash_algorithm_case == ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_ALGORITHM_MAGLEV) {
        json_object_set_new(cl, "lbPolicy", json_string("MAGLEV"));
        if (ch->maglev->table_size)
            json_object_set_new(cl, "maglevLbConfig",
                                json_pack("{s:I}", "tableSize", (json_int_t)ch->maglev->table_size));
    } else {
        uint64_t ring = ch->hash_algorithm_case == ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_ALGORITHM_RING_HASH
                            ? ch->ring_hash->minimum_ring_size : ch->minimum_ring_size;
        json_object_set_new(cl, "lbPolicy", json_string("RING_HASH"));
        json_object_set_new(cl, "ringHashLbConfig",
                            json_pack("{s:I}", "minimumRingSize", (json_int_t)(ring ? ring : 1024)));
    }
}

static void set_outlier(json_t *cl, const OutlierDetection *od)
{
    if (!od)
        return;
    /* Istio's applyOutlierDetection: a threshold that is set is enforced (100%) unless it
     * is 0; an unset one keeps Envoy's defaults; success-rate ejection is always off. */
    json_t *o = json_object();
    if (od->consecutive_5xx_errors) {
        uint32_t v = od->consecutive_5xx_errors->value;
        json_object_set_new(o, "consecutive5xx", json_integer(v));
        json_object_set_new(o, "enforcingConsecutive5xx", json_integer(v ? 100 : 0));
    } else if (od->consecutive_errors > 0) {
        json_object_set_new(o, "consecutive5xx", json_integer(od->consecutive_errors));
        json_object_set_new(o, "enforcingConsecutive5xx", json_integer(100));
    }
    if (od->consecutive_gateway_errors) {
        uint32_t v = od->consecutive_gateway_errors->value;
        json_object_set_new(o, "consecutiveGatewayFailure", json_integer(v));
        json_object_set_new(o, "enforcingConsecutiveGatewayFailure", json_integer(v ? 100 : 0));
    }
    if (od->split_external_local_origin_errors) {
        json_object_set_new(o, "splitExternalLocalOriginErrors", json_true());
        if (od->consecutive_local_origin_failures) {
            uint32_t v = od->consecutive_local_origin_failures->value;
            json_object_set_new(o, "consecutiveLocalOriginFailure", json_integer(v));
            json_object_set_new(o, "enforcingConsecutiveLocalOriginFailure", json_integer(v ? 100 : 0));
        }
    }
    if (od->interval)
        json_object_set_new(o, "interval", t_duration(od->interval->seconds, od->interval->nanos));
    if (od->base_ejection_time)
        json_object_set_new(o, "baseEjectionTime",
                            t_duration(od->base_ejection_time->seconds, od->base_ejection_time->nanos));
    if (od->max_ejection_percent)
        json_object_set_new(o, "maxEjectionPercent", json_integer(od->max_ejection_percent));
    json_object_set_new(o, "enforcingSuccessRate", json_integer(0));
    json_object_set_new(cl, "outlierDetection", o);
    if (od->min_health_percent)
        json_object_set_new(cl, "commonLbConfig",
                            json_pack("{s:{s:f}}", "healthyPanicThreshold", "value",
                                      (double)od->min_health_percent));
}

static void set_protocol_options(json_t *cl, const struct reg_port *port, const ConnectionPoolSettings *pool)
{
    json_t *opts = json_object();
    if (pool && pool->http && (pool->http->max_requests_per_connection > 0 || pool->http->idle_timeout)) {
        json_t *common = json_object();
        if (pool->http->idle_timeout)
            json_object_set_new(common, "idleTimeout",
                                t_duration(pool->http->idle_timeout->seconds, pool->http->idle_timeout->nanos));
        if (pool->http->max_requests_per_connection > 0)
            json_object_set_new(common, "maxRequestsPerConnection",
                                json_integer(pool->http->max_requests_per_connection));
        json_object_set_new(opts, "commonHttpProtocolOptions", common);
    }
    if (!json_object_size(opts) && port->protocol != REG_PROTO_HTTP2 && port->protocol != REG_PROTO_GRPC &&
        port->protocol != REG_PROTO_GRPC_WEB) {
        json_decref(opts);
        return;
    }
    /* Envoy requires the upstream protocol whenever HttpProtocolOptions is present: HTTP/2 for
     * http2/grpc ports, HTTP/1.1 for http ports, the downstream's for anything else. */
    if (port->protocol == REG_PROTO_HTTP2 || port->protocol == REG_PROTO_GRPC ||
        port->protocol == REG_PROTO_GRPC_WEB)
        json_object_set_new(opts, "explicitHttpConfig", json_pack("{s:{}}", "http2ProtocolOptions"));
    else if (reg_protocol_is_http(port->protocol))
        json_object_set_new(opts, "explicitHttpConfig", json_pack("{s:{}}", "httpProtocolOptions"));
    else
        json_object_set_new(opts, "useDownstreamProtocolConfig", json_object());
    json_object_set_new(cl, "typedExtensionProtocolOptions",
                        json_pack("{s:o}", "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                                  t_any("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", opts)));
}

static json_t *file_source(const char *path)
{
    return json_pack("{s:s}", "filename", path);
}

/* DestinationRule tls -> an UpstreamTlsContext transport socket, as Istio builds it: files
 * for SIMPLE/MUTUAL (SDS "kubernetes://NAME" with credentialName), SDS "default"/"ROOTCA"
 * from weftd plus the service accounts' SPIFFE names for ISTIO_MUTUAL. */
static json_t *upstream_tls(struct tctx *c, const Istio__Networking__V1alpha3__ClientTLSSettings *t,
                            const struct reg_service *s, size_t pi, const char *subset)
{
    if (t->mode == ISTIO__NETWORKING__V1ALPHA3__CLIENT_TLSSETTINGS__TLSMODE__DISABLE)
        return NULL;
    json_t *common = json_object(), *ctx = json_object();
    int skip_verify = t->insecure_skip_verify && t->insecure_skip_verify->value;
    json_t *vc = json_object();
    json_t *sans = json_array();
    for (size_t i = 0; i < t->n_subject_alt_names; i++)
        json_array_append_new(sans, json_pack("{s:s,s:{s:s}}", "sanType",
                                              !strncmp(t->subject_alt_names[i], "spiffe://", 9) ? "URI" : "DNS",
                                              "matcher", "exact", t->subject_alt_names[i]));
    if (t->mode == ISTIO__NETWORKING__V1ALPHA3__CLIENT_TLSSETTINGS__TLSMODE__ISTIO_MUTUAL) {
        json_object_set_new(common, "tlsCertificateSdsSecretConfigs",
                            json_pack("[{s:s,s:o}]", "name", "default", "sdsConfig", t_ads_source()));
        if (!json_array_size(sans)) {
            for (size_t e = 0; e < s->n_eps[pi]; e++) {
                const char *sa = s->eps[pi][e].service_account;
                char id[512];
                snprintf(id, sizeof id, "spiffe://%s/ns/%s/sa/%s", c->m->domain_suffix, s->ns, *sa ? sa : "default");
                int dup = 0;
                for (size_t k = 0; k < json_array_size(sans); k++)
                    dup |= !strcmp(json_string_value(json_object_get(json_object_get(json_array_get(sans, k), "matcher"), "exact")), id);
                if (!dup)
                    json_array_append_new(sans, json_pack("{s:s,s:{s:s}}", "sanType", "URI", "matcher", "exact", id));
            }
        }
        if (json_array_size(sans))
            json_object_set_new(vc, "matchTypedSubjectAltNames", sans);
        else
            json_decref(sans);
        json_object_set_new(common, "combinedValidationContext",
                            json_pack("{s:o,s:{s:s,s:o}}", "defaultValidationContext", vc,
                                      "validationContextSdsSecretConfig", "name", "ROOTCA", "sdsConfig",
                                      t_ads_source()));
        json_object_set_new(common, "alpnProtocols", json_pack("[s,s]", "istio-peer-exchange", "istio"));
        char sni[512];
        snprintf(sni, sizeof sni, "outbound_.%u_.%s_.%s", s->ports[pi].port, subset ? subset : "", s->hostname);
        json_object_set_new(ctx, "sni", json_string(sni));
    } else {
        int cred = t->credential_name && *t->credential_name;
        char name[300];
        if (t->mode == ISTIO__NETWORKING__V1ALPHA3__CLIENT_TLSSETTINGS__TLSMODE__MUTUAL) {
            if (cred) {
                snprintf(name, sizeof name, "kubernetes://%s", t->credential_name);
                json_object_set_new(common, "tlsCertificateSdsSecretConfigs",
                                    json_pack("[{s:s,s:o}]", "name", name, "sdsConfig", t_ads_source()));
            } else {
                json_object_set_new(common, "tlsCertificates",
                                    json_pack("[{s:o,s:o}]", "certificateChain", file_source(t->client_certificate),
                                              "privateKey", file_source(t->private_key)));
            }
        }
        if (!skip_verify) {
            if (cred) {
                snprintf(name, sizeof name, "kubernetes://%s-cacert", t->credential_name);
                if (json_array_size(sans))
                    json_object_set_new(vc, "matchTypedSubjectAltNames", json_incref(sans));
                json_object_set_new(common, "combinedValidationContext",
                                    json_pack("{s:O,s:{s:s,s:o}}", "defaultValidationContext", vc,
                                              "validationContextSdsSecretConfig", "name", name, "sdsConfig",
                                              t_ads_source()));
            } else if (t->ca_certificates && *t->ca_certificates) {
                json_object_set_new(vc, "trustedCa", file_source(t->ca_certificates));
                if (json_array_size(sans))
                    json_object_set_new(vc, "matchTypedSubjectAltNames", json_incref(sans));
                json_object_set_new(common, "validationContext", json_incref(vc));
            }
        }
        json_decref(vc);
        json_decref(sans);
        if (t->sni && *t->sni)
            json_object_set_new(ctx, "sni", json_string(t->sni));
    }
    json_object_set_new(ctx, "commonTlsContext", common);
    return json_pack("{s:s,s:o}", "name", "envoy.transport_sockets.tls", "typedConfig",
                     t_any("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", ctx));
}

static json_t *socket_address(const char *addr, uint32_t port)
{
    return json_pack("{s:{s:s,s:I}}", "socketAddress", "address", addr, "portValue", (json_int_t)port);
}

/* Endpoints of s on port index pi whose labels match the subset (NULL: all), grouped by
 * locality as Istio does. */
static json_t *locality_endpoints(const struct reg_service *s, size_t pi, const Subset *subset)
{
    struct istio_kv *sel = NULL;
    int nsel = 0;
    if (subset && subset->n_labels)
        nsel = istio_map_to_kv((ProtobufCMessage *const *)subset->labels, subset->n_labels, &sel);
    json_t *groups = json_array();
    for (size_t e = 0; e < s->n_eps[pi]; e++) {
        const struct reg_endpoint *ep = &s->eps[pi][e];
        if (nsel > 0 && !istio_labels_match(sel, (size_t)nsel, ep->labels, ep->n_labels))
            continue;
        json_t *group = NULL;
        for (size_t g = 0; g < json_array_size(groups); g++) {
            json_t *cand = json_array_get(groups, g);
            if (!strcmp(json_string_value(json_object_get(cand, "_loc")), ep->locality))
                group = cand;
        }
        if (!group) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", ep->locality);
            char *zone = strchr(buf, '/'), *sub = NULL;
            if (zone) {
                *zone++ = '\0';
                if ((sub = strchr(zone, '/')))
                    *sub++ = '\0';
            }
            json_t *loc = json_object();
            if (*buf)
                json_object_set_new(loc, "region", json_string(buf));
            if (zone && *zone)
                json_object_set_new(loc, "zone", json_string(zone));
            if (sub && *sub)
                json_object_set_new(loc, "subZone", json_string(sub));
            group = json_pack("{s:s,s:o,s:[],s:I}", "_loc", ep->locality, "locality", loc,
                              "lbEndpoints", "loadBalancingWeight", (json_int_t)0);
            json_array_append_new(groups, group);
        }
        uint32_t w = ep->weight ? ep->weight : 1;
        json_array_append_new(json_object_get(group, "lbEndpoints"),
                              json_pack("{s:{s:o},s:s,s:I}", "endpoint", "address",
                                        socket_address(ep->address, ep->port), "healthStatus",
                                        "HEALTHY", "loadBalancingWeight", (json_int_t)w));
        json_object_set_new(group, "loadBalancingWeight",
                            json_integer(json_integer_value(json_object_get(group, "loadBalancingWeight")) + w));
    }
    for (size_t g = 0; g < json_array_size(groups); g++)
        json_object_del(json_array_get(groups, g), "_loc");
    free(sel);
    return groups;
}

static json_t *outbound_cluster(struct tctx *c, const struct reg_service *s, size_t pi,
                                const Subset *subset, const struct istio_object *dro)
{
    const struct reg_port *port = &s->ports[pi];
    char *name = t_cluster_name("outbound", port->port, subset ? subset->name : NULL, s->hostname);
    if (!name)
        return NULL;
    json_t *cl = json_pack("{s:s}", "name", name);
    switch (s->resolution) {
    case REG_RES_STATIC:
        json_object_set_new(cl, "type", json_string("EDS"));
        json_object_set_new(cl, "edsClusterConfig",
                            json_pack("{s:o,s:s}", "edsConfig", t_ads_source(), "serviceName", name));
        break;
    case REG_RES_DNS:
    case REG_RES_DNS_RR:
        json_object_set_new(cl, "type", json_string(s->resolution == REG_RES_DNS ? "STRICT_DNS" : "LOGICAL_DNS"));
        json_object_set_new(cl, "dnsLookupFamily", json_string("V4_ONLY"));
        json_object_set_new(cl, "loadAssignment",
                            json_pack("{s:s,s:o}", "clusterName", name, "endpoints",
                                      locality_endpoints(s, pi, subset)));
        break;
    case REG_RES_NONE:
        json_object_set_new(cl, "type", json_string("ORIGINAL_DST"));
        break;
    }
    json_object_set_new(cl, "connectTimeout", json_string(T_CONNECT_TIMEOUT));
    struct policy pol = {0};
    const DestinationRule *dr = dro ? (const void *)dro->spec : NULL;
    if (dr) {
        apply_policy(&pol, dr->traffic_policy, port->port);
        if (subset)
            apply_policy(&pol, subset->traffic_policy, port->port);
    }
    if (s->resolution == REG_RES_NONE)
        json_object_set_new(cl, "lbPolicy", json_string("CLUSTER_PROVIDED"));
    else
        set_lb(cl, pol.lb);
    if (pol.pool && pol.pool->tcp && pol.pool->tcp->connect_timeout)
        json_object_set_new(cl, "connectTimeout", t_duration(pol.pool->tcp->connect_timeout->seconds,
                                                             pol.pool->tcp->connect_timeout->nanos));
    json_object_set_new(cl, "circuitBreakers", circuit_breakers(pol.pool));
    set_outlier(cl, pol.od);
    if (pol.tls) {
        json_t *ts = upstream_tls(c, pol.tls, s, pi, subset ? subset->name : NULL);
        if (ts)
            json_object_set_new(cl, "transportSocket", ts);
    }
    if (reg_protocol_is_http(port->protocol))
        set_protocol_options(cl, port, pol.pool);
    json_t *svc = json_pack("{s:s,s:s,s:s}", "host", s->hostname, "name", s->name, "namespace", s->ns);
    json_t *md = json_pack("{s:[o]}", "services", svc);
    if (subset)
        json_object_set_new(md, "subset", json_string(subset->name));
    if (dro) {
        char cfg[512];
        t_config_path(dro, cfg, sizeof cfg);
        json_object_set_new(md, "config", json_string(cfg));
    }
    json_object_set_new(md, "default_original_port", json_integer(port->port));
    json_object_set_new(cl, "metadata", json_pack("{s:{s:o}}", "filterMetadata", "istio", md));
    free(name);
    return cl;
}

/* The ports the proxy itself serves (inbound): endpoint ports of services that have an
 * endpoint at the proxy's IP. */
static size_t inbound_ports(struct tctx *c, struct inbound_port *out, size_t max)
{
    size_t n = 0;
    if (c->p->type != PILOT_PROXY_SIDECAR)
        return 0;
    const struct registry *r = c->m->reg;
    for (size_t i = 0; i < r->n; i++) {
        const struct reg_service *s = &r->svcs[i];
        if (s->from_service_entry && s->mesh_external)
            continue;
        for (size_t p = 0; p < s->n_ports; p++)
            for (size_t e = 0; e < s->n_eps[p]; e++) {
                const struct reg_endpoint *ep = &s->eps[p][e];
                if (strcmp(ep->address, c->p->ip))
                    continue;
                int dup = 0;
                for (size_t k = 0; k < n; k++)
                    dup |= out[k].port == ep->port;
                if (!dup && n < max)
                    out[n++] = (struct inbound_port){ep->port, s->ports[p].protocol, s, &s->ports[p]};
            }
    }
    /* A proxy that no WorkloadEntry describes (a pod, or a VM known by its node metadata):
     * the Kubernetes Services of its namespace whose selector picks its labels, on their
     * numeric target ports (a named one needs the workload's port list). */
    for (size_t i = 0; c->p->n_labels && i < r->n; i++) {
        const struct reg_service *s = &r->svcs[i];
        if (!s->obj || s->obj->kind != ISTIO_K8S_SERVICE || strcmp(s->ns, c->p->ns))
            continue;
        const Weft__K8s__V1__ServiceSpec *spec = (const void *)s->obj->spec;
        if (!spec->n_selector)
            continue;
        struct istio_kv *sel;
        int ns = istio_map_to_kv((ProtobufCMessage *const *)spec->selector, spec->n_selector, &sel);
        int match = ns > 0 && istio_labels_match(sel, (size_t)ns, c->p->labels, c->p->n_labels);
        free(sel);
        if (!match)
            continue;
        for (size_t p = 0; p < s->n_ports; p++) {
            if (s->ports[p].target_name)
                continue;
            uint32_t port = s->ports[p].target_port ? s->ports[p].target_port : s->ports[p].port;
            int dup = 0;
            for (size_t k = 0; k < n; k++)
                dup |= out[k].port == port;
            if (!dup && n < max)
                out[n++] = (struct inbound_port){port, s->ports[p].protocol, s, &s->ports[p]};
        }
    }
    return n;
}

int t_inbound_ports(struct tctx *c, struct inbound_port *out, size_t max)
{
    return (int)inbound_ports(c, out, max);
}

int t_gen_clusters(struct tctx *c, json_t *out)
{
    json_t *cb = circuit_breakers(NULL);
    json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:s,s:O}", "name", "PassthroughCluster", "type",
                                         "ORIGINAL_DST", "connectTimeout", T_CONNECT_TIMEOUT,
                                         "lbPolicy", "CLUSTER_PROVIDED", "circuitBreakers", cb));
    json_array_append_new(out, json_pack("{s:s,s:s,s:s}", "name", "BlackHoleCluster", "type", "STATIC",
                                         "connectTimeout", T_CONNECT_TIMEOUT));
    if (c->p->type == PILOT_PROXY_SIDECAR)
        json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:s,s:O,s:{s:{s:s,s:i}}}", "name",
                                             "InboundPassthroughCluster", "type", "ORIGINAL_DST",
                                             "connectTimeout", T_CONNECT_TIMEOUT, "lbPolicy",
                                             "CLUSTER_PROVIDED", "circuitBreakers", cb,
                                             "upstreamBindConfig", "sourceAddress", "address",
                                             "127.0.0.6", "portValue", 0));
    for (size_t i = 0; i < c->n_visible; i++) {
        const struct reg_service *s = c->visible[i];
        const struct istio_object *dro = t_find_dr(c, s->hostname, s->ns);
        const DestinationRule *dr = dro ? (const void *)dro->spec : NULL;
        for (size_t p = 0; p < s->n_ports; p++) {
            if (s->ports[p].protocol == REG_PROTO_UDP || !t_port_visible(c, s, s->ports[p].port))
                continue;
            json_t *cl = outbound_cluster(c, s, p, NULL, dro);
            if (!cl)
                goto oom;
            json_array_append_new(out, cl);
            for (size_t k = 0; dr && k < dr->n_subsets; k++) {
                if (!(cl = outbound_cluster(c, s, p, dr->subsets[k], dro)))
                    goto oom;
                json_array_append_new(out, cl);
            }
        }
    }
    struct inbound_port in[64];
    size_t nin = inbound_ports(c, in, 64);
    for (size_t i = 0; i < nin; i++) {
        char *name = t_cluster_name("inbound", in[i].port, NULL, "");
        if (!name)
            goto oom;
        json_t *md = json_pack("{s:{s:{s:[{s:s,s:s,s:s}]}}}", "filterMetadata", "istio", "services",
                               "host", in[i].svc->hostname, "name", in[i].svc->name, "namespace",
                               in[i].svc->ns);
        json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:s,s:O,s:{s:{s:s,s:i}},s:o}", "name", name,
                                             "type", "ORIGINAL_DST", "connectTimeout", T_CONNECT_TIMEOUT,
                                             "lbPolicy", "CLUSTER_PROVIDED", "circuitBreakers", cb,
                                             "upstreamBindConfig", "sourceAddress", "address",
                                             "127.0.0.6", "portValue", 0, "metadata", md));
        free(name);
    }
    json_decref(cb);
    return 0;
oom:
    json_decref(cb);
    return -1;
}

int t_gen_endpoints(struct tctx *c, json_t *out)
{
    for (size_t i = 0; i < c->n_visible; i++) {
        const struct reg_service *s = c->visible[i];
        if (s->resolution != REG_RES_STATIC)
            continue;
        const struct istio_object *dro = t_find_dr(c, s->hostname, s->ns);
        const DestinationRule *dr = dro ? (const void *)dro->spec : NULL;
        for (size_t p = 0; p < s->n_ports; p++) {
            if (s->ports[p].protocol == REG_PROTO_UDP || !t_port_visible(c, s, s->ports[p].port))
                continue;
            for (size_t k = 0; k <= (dr ? dr->n_subsets : 0); k++) {
                const Subset *sub = k ? dr->subsets[k - 1] : NULL;
                char *name = t_cluster_name("outbound", s->ports[p].port, sub ? sub->name : NULL, s->hostname);
                if (!name)
                    return -1;
                json_array_append_new(out, json_pack("{s:s,s:o}", "clusterName", name, "endpoints",
                                                     locality_endpoints(s, p, sub)));
                free(name);
            }
        }
    }
    return 0;
}
