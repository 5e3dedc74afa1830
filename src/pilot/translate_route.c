/* pilot/translate_route: RDS. Route configuration "PORT" per outbound HTTP port (one virtual
 * host per service, all its names), VirtualService http rules -> Envoy routes, and the
 * gateway route configurations "http.PORT". */
#include "pilot/translate_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Istio__Networking__V1alpha3__HTTPRoute HTTPRoute;
typedef Istio__Networking__V1alpha3__HTTPMatchRequest HTTPMatchRequest;
typedef Istio__Networking__V1alpha3__StringMatch StringMatch;
typedef Istio__Networking__V1alpha3__Headers Headers;

#define T_MAX_VS 16

json_t *t_default_retry(void)
{
    return json_pack("{s:s,s:i,s:[{s:s,s:o}],s:s,s:[i]}", "retryOn",
                     "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                     "numRetries", 2, "retryHostPredicate", "name",
                     "envoy.retry_host_predicates.previous_hosts", "typedConfig",
                     t_any("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate", NULL),
                     "hostSelectionRetryMaxAttempts", "5", "retriableStatusCodes", 503);
}

static json_t *max_stream_duration(void)
{
    return json_pack("{s:s,s:s}", "maxStreamDuration", "0s", "grpcTimeoutHeaderMax", "0s");
}

json_t *t_hcm(const char *stat_prefix, const char *rds, json_t *inline_rc, int outbound)
{
    json_t *h = json_pack("{s:s}", "statPrefix", stat_prefix);
    if (inline_rc)
        json_object_set_new(h, "routeConfig", inline_rc);
    else
        json_object_set_new(h, "rds", json_pack("{s:o,s:s}", "configSource", t_ads_source(),
                                                "routeConfigName", rds));
    /* Istio's order on outbound and gateway listeners: cors, fault, router; inbound: router */
    json_t *filters = json_array();
    if (outbound) {
        json_array_append_new(filters, json_pack("{s:s,s:o}", "name", "envoy.filters.http.cors", "typedConfig",
                                                 t_any("envoy.extensions.filters.http.cors.v3.Cors", NULL)));
        json_array_append_new(filters, json_pack("{s:s,s:o}", "name", "envoy.filters.http.fault", "typedConfig",
                                                 t_any("envoy.extensions.filters.http.fault.v3.HTTPFault", NULL)));
    }
    json_array_append_new(filters, json_pack("{s:s,s:o}", "name", "envoy.filters.http.router", "typedConfig",
                                             t_any("envoy.extensions.filters.http.router.v3.Router", NULL)));
    json_object_set_new(h, "httpFilters", filters);
    json_object_set_new(h, "useRemoteAddress", json_false());
    return json_pack("{s:s,s:o}", "name", "envoy.filters.network.http_connection_manager",
                     "typedConfig",
                     t_any("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", h));
}

/* Istio StringMatch -> Envoy StringMatcher. */
static json_t *string_matcher(const StringMatch *m)
{
    switch (m->match_type_case) {
    case ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_EXACT:
        return json_pack("{s:s}", "exact", m->exact);
    case ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_PREFIX:
        return json_pack("{s:s}", "prefix", m->prefix);
    case ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_REGEX:
        return json_pack("{s:{s:s}}", "safeRegex", "regex", m->regex);
    default:
        return NULL;
    }
}

static json_t *header_matcher(const char *name, const StringMatch *m, int invert)
{
    json_t *h = json_pack("{s:s}", "name", name);
    json_t *sm = m ? string_matcher(m) : NULL;
    if (sm)
        json_object_set_new(h, "stringMatch", sm);
    else
        json_object_set_new(h, "presentMatch", json_true());
    if (invert)
        json_object_set_new(h, "invertMatch", json_true());
    return h;
}

static json_t *route_match(const HTTPMatchRequest *m)
{
    json_t *rm = json_object();
    if (m && m->uri) {
        switch (m->uri->match_type_case) {
        case ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_EXACT:
            json_object_set_new(rm, "path", json_string(m->uri->exact));
            break;
        case ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_REGEX:
            json_object_set_new(rm, "safeRegex", json_pack("{s:s}", "regex", m->uri->regex));
            break;
        default:
            json_object_set_new(rm, "prefix", json_string(m->uri->prefix));
        }
        if (m->ignore_uri_case)
            json_object_set_new(rm, "caseSensitive", json_false());
    } else {
        json_object_set_new(rm, "prefix", json_string("/"));
    }
    if (!m)
        return rm;
    json_t *hdrs = json_array();
    const StringMatch *pseudo[] = {m->method, m->authority, m->scheme};
    const char *pnames[] = {":method", ":authority", ":scheme"};
    for (int i = 0; i < 3; i++)
        if (pseudo[i])
            json_array_append_new(hdrs, header_matcher(pnames[i], pseudo[i], 0));
    for (size_t i = 0; i < m->n_headers; i++) {
        const char *k = m->headers[i]->key;
        if (!strcmp(k, "uri") || !strcmp(k, "scheme") || !strcmp(k, "method") || !strcmp(k, "authority"))
            continue; /* ignored, as Istio documents */
        const StringMatch *v = m->headers[i]->value;
        json_array_append_new(hdrs, header_matcher(k, v && v->match_type_case ? v : NULL, 0));
    }
    for (size_t i = 0; i < m->n_without_headers; i++) {
        const StringMatch *v = m->without_headers[i]->value;
        json_array_append_new(hdrs, header_matcher(m->without_headers[i]->key,
                                                   v && v->match_type_case ? v : NULL, 1));
    }
    if (json_array_size(hdrs))
        json_object_set_new(rm, "headers", hdrs);
    else
        json_decref(hdrs);
    if (m->n_query_params) {
        json_t *qp = json_array();
        for (size_t i = 0; i < m->n_query_params; i++) {
            const StringMatch *v = m->query_params[i]->value;
            json_t *q = json_pack("{s:s}", "name", m->query_params[i]->key);
            if (v && v->match_type_case == ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_EXACT && !*v->exact)
                json_object_set_new(q, "presentMatch", json_true());
            else if (v && v->match_type_case)
                json_object_set_new(q, "stringMatch", string_matcher(v));
            else
                json_object_set_new(q, "presentMatch", json_true());
            json_array_append_new(qp, q);
        }
        json_object_set_new(rm, "queryParameters", qp);
    }
    return rm;
}

static void header_ops(json_t *obj, const char *add_key, const char *remove_key,
                       const Istio__Networking__V1alpha3__Headers__HeaderOperations *h)
{
    if (!h)
        return;
    json_t *add = json_object_get(obj, add_key);
    if (!add && (h->n_set || h->n_add)) {
        add = json_array();
        json_object_set_new(obj, add_key, add);
    }
    for (size_t i = 0; i < h->n_set; i++)
        json_array_append_new(add, json_pack("{s:{s:s,s:s},s:s}", "header", "key", h->set[i]->key,
                                             "value", h->set[i]->value, "appendAction",
                                             "OVERWRITE_IF_EXISTS_OR_ADD"));
    for (size_t i = 0; i < h->n_add; i++)
        json_array_append_new(add, json_pack("{s:{s:s,s:s},s:s}", "header", "key", h->add[i]->key,
                                             "value", h->add[i]->value, "appendAction",
                                             "APPEND_IF_EXISTS_OR_ADD"));
    if (h->n_remove) {
        json_t *rm = json_array();
        for (size_t i = 0; i < h->n_remove; i++)
            json_array_append_new(rm, json_string(h->remove[i]));
        json_object_set_new(obj, remove_key, rm);
    }
}

static void headers(json_t *obj, const Headers *h)
{
    if (!h)
        return;
    header_ops(obj, "requestHeadersToAdd", "requestHeadersToRemove", h->request);
    header_ops(obj, "responseHeadersToAdd", "responseHeadersToRemove", h->response);
}

/* The cluster a destination names, as the listener port `port` sees it. */
static char *dest_cluster(struct tctx *c, const struct istio_object *vs,
                          const Istio__Networking__V1alpha3__Destination *d, uint32_t port)
{
    char *host = istio_resolve_host(d->host, vs->ns, c->m->domain_suffix);
    if (!host)
        return NULL;
    const struct reg_service *s = registry_find(c->m->reg, host);
    uint32_t p = d->port && d->port->number ? d->port->number : 0;
    if (!p && s && s->n_ports == 1)
        p = s->ports[0].port;
    if (!p)
        p = port;
    if (!s)
        t_warn(c, "%s:%d: VirtualService %s/%s: destination host %s is not in the registry",
               vs->file, vs->line, vs->ns, vs->name, host);
    if (s && d->subset && *d->subset) {
        /* istioctl analyze's "referenced subset not found": the route would get 503 NC */
        const struct istio_object *dro = t_find_dr(c, s->hostname, s->ns);
        const DestinationRule *dr = dro ? (const void *)dro->spec : NULL;
        int found = 0;
        for (size_t i = 0; dr && i < dr->n_subsets; i++)
            found |= !strcmp(dr->subsets[i]->name, d->subset);
        if (!found)
            t_warn(c, "%s:%d: VirtualService %s/%s: subset %s of %s is not defined by any DestinationRule",
                   vs->file, vs->line, vs->ns, vs->name, d->subset, host);
    }
    char *name = t_cluster_name("outbound", p, d->subset && *d->subset ? d->subset : NULL, host);
    free(host);
    return name;
}

static int match_applies(struct tctx *c, const struct istio_object *vs, const HTTPMatchRequest *m,
                         uint32_t port, const char *gw_ns, const char *gw_name)
{
    if (m->port && m->port != port)
        return 0;
    if (m->n_gateways && !t_vs_bound(vs, m->gateways, m->n_gateways, gw_ns, gw_name))
        return 0;
    if (m->n_source_labels) {
        if (gw_name)
            return 0;
        struct istio_kv *sel;
        int n = istio_map_to_kv((ProtobufCMessage *const *)m->source_labels, m->n_source_labels, &sel);
        int ok = n >= 0 && istio_labels_match(sel, (size_t)n, c->p->labels, c->p->n_labels);
        free(sel);
        if (!ok)
            return 0;
    }
    if (m->source_namespace && *m->source_namespace && strcmp(m->source_namespace, c->p->ns))
        return 0;
    return 1;
}

static void hash_policy(json_t *action, const struct istio_object *dro, const char *subset)
{
    if (!dro)
        return;
    const DestinationRule *dr = (const void *)dro->spec;
    const Istio__Networking__V1alpha3__LoadBalancerSettings *lb =
        dr->traffic_policy ? dr->traffic_policy->load_balancer : NULL;
    for (size_t i = 0; subset && i < dr->n_subsets; i++)
        if (!strcmp(dr->subsets[i]->name, subset) && dr->subsets[i]->traffic_policy &&
            dr->subsets[i]->traffic_policy->load_balancer)
            lb = dr->subsets[i]->traffic_policy->load_balancer;
    if (!lb || lb->lb_policy_case != ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__LB_POLICY_CONSISTENT_HASH)
        return;
    const Istio__Networking__V1alpha3__LoadBalancerSettings__ConsistentHashLB *ch = lb->consistent_hash;
    json_t *hp = NULL;
    switch (ch->hash_key_case) {
    case ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_KEY_HTTP_HEADER_NAME:
        hp = json_pack("{s:{s:s}}", "header", "headerName", ch->http_header_name);
        break;
    case ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_KEY_HTTP_COOKIE: {
        json_t *ck = json_pack("{s:s}", "name", ch->http_cookie->name);
        if (ch->http_cookie->path && *ch->http_cookie->path)
            json_object_set_new(ck, "path", json_string(ch->http_cookie->path));
        if (ch->http_cookie->ttl)
            json_object_set_new(ck, "ttl", t_duration(ch->http_cookie->ttl->seconds, ch->http_cookie->ttl->nanos));
        hp = json_pack("{s:o}", "cookie", ck);
        break;
    }
    case ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_KEY_USE_SOURCE_IP:
        hp = json_pack("{s:{s:b}}", "connectionProperties", "sourceIp", 1);
        break;
    case ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_KEY_HTTP_QUERY_PARAMETER_NAME:
        hp = json_pack("{s:{s:s}}", "queryParameter", "name", ch->http_query_parameter_name);
        break;
    default:
        return;
    }
    json_object_set_new(action, "hashPolicy", json_pack("[o]", hp));
}

static json_t *retry_policy(const Istio__Networking__V1alpha3__HTTPRetry *r)
{
    if (!r)
        return t_default_retry();
    if (r->attempts == 0)
        return NULL;
    json_t *p = json_object();
    char on[512] = "";
    json_t *codes = json_array();
    if (r->retry_on && *r->retry_on) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", r->retry_on);
        for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ')
                t++;
            if (*t >= '0' && *t <= '9') {
                json_array_append_new(codes, json_integer(strtol(t, NULL, 10)));
                continue;
            }
            size_t l = strlen(on);
            snprintf(on + l, sizeof on - l, "%s%s", l ? "," : "", t);
        }
        if (json_array_size(codes) && !strstr(on, "retriable-status-codes")) {
            size_t l = strlen(on);
            snprintf(on + l, sizeof on - l, "%sretriable-status-codes", l ? "," : "");
        }
    } else {
        snprintf(on, sizeof on, "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes");
        json_array_append_new(codes, json_integer(503));
    }
    json_object_set_new(p, "retryOn", json_string(on));
    json_object_set_new(p, "numRetries", json_integer(r->attempts));
    if (r->per_try_timeout)
        json_object_set_new(p, "perTryTimeout", t_duration(r->per_try_timeout->seconds, r->per_try_timeout->nanos));
    json_object_set_new(p, "retryHostPredicate",
                        json_pack("[{s:s,s:o}]", "name", "envoy.retry_host_predicates.previous_hosts",
                                  "typedConfig",
                                  t_any("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate", NULL)));
    json_object_set_new(p, "hostSelectionRetryMaxAttempts", json_string("5"));
    if (json_array_size(codes))
        json_object_set_new(p, "retriableStatusCodes", codes);
    else
        json_decref(codes);
    return p;
}

static json_t *fault(const Istio__Networking__V1alpha3__HTTPFaultInjection *f)
{
    json_t *cfg = json_object();
    if (f->delay && f->delay->fixed_delay) {
        double pct = f->delay->percentage ? f->delay->percentage->value
                     : f->delay->percent ? f->delay->percent : 100.0;
        json_object_set_new(cfg, "delay",
                            json_pack("{s:o,s:o}", "fixedDelay",
                                      t_duration(f->delay->fixed_delay->seconds, f->delay->fixed_delay->nanos),
                                      "percentage", t_percent_fraction(pct)));
    }
    if (f->abort) {
        double pct = f->abort->percentage ? f->abort->percentage->value : 100.0;
        json_t *a = json_pack("{s:o}", "percentage", t_percent_fraction(pct));
        if (f->abort->error_type_case == ISTIO__NETWORKING__V1ALPHA3__HTTPFAULT_INJECTION__ABORT__ERROR_TYPE_HTTP_STATUS)
            json_object_set_new(a, "httpStatus", json_integer(f->abort->http_status));
        else if (f->abort->error_type_case == ISTIO__NETWORKING__V1ALPHA3__HTTPFAULT_INJECTION__ABORT__ERROR_TYPE_GRPC_STATUS)
            json_object_set_new(a, "grpcStatus", json_integer(strtol(f->abort->grpc_status, NULL, 10)));
        json_object_set_new(cfg, "abort", a);
    }
    return t_any("envoy.extensions.filters.http.fault.v3.HTTPFault", cfg);
}

static char *join(char *const *v, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(s, ",");
        strcat(s, v[i]);
    }
    return s;
}

/* Istio's translateCORSPolicy: a CorsPolicy of the cors filter, per route. */
static json_t *cors(const Istio__Networking__V1alpha3__CorsPolicy *cp)
{
    json_t *p = json_object();
    json_t *origins = json_array();
    for (size_t i = 0; i < cp->n_allow_origins; i++) {
        json_t *m = string_matcher(cp->allow_origins[i]);
        if (m)
            json_array_append_new(origins, m);
    }
    for (size_t i = 0; i < cp->n_allow_origin; i++) /* deprecated: exact origins */
        json_array_append_new(origins, json_pack("{s:s}", "exact", cp->allow_origin[i]));
    if (json_array_size(origins))
        json_object_set_new(p, "allowOriginStringMatch", origins);
    else
        json_decref(origins);
    struct { const char *name; char *const *v; size_t n; } lists[] = {
        {"allowMethods", cp->allow_methods, cp->n_allow_methods},
        {"allowHeaders", cp->allow_headers, cp->n_allow_headers},
        {"exposeHeaders", cp->expose_headers, cp->n_expose_headers},
    };
    for (int i = 0; i < 3; i++)
        if (lists[i].n) {
            char *j = join(lists[i].v, lists[i].n);
            if (j)
                json_object_set_new(p, lists[i].name, json_string(j));
            free(j);
        }
    if (cp->max_age) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)cp->max_age->seconds);
        json_object_set_new(p, "maxAge", json_string(buf));
    }
    if (cp->allow_credentials)
        json_object_set_new(p, "allowCredentials", json_boolean(cp->allow_credentials->value));
    json_object_set_new(p, "filterEnabled",
                        json_pack("{s:{s:i,s:s}}", "defaultValue", "numerator", 100, "denominator", "HUNDRED"));
    return t_any("envoy.extensions.filters.http.cors.v3.CorsPolicy", p);
}

static int redirect_code(uint32_t c)
{
    switch (c) {
    case 302: return 1;
    case 303: return 2;
    case 307: return 3;
    case 308: return 4;
    default: return 0;
    }
}

/* One Envoy route for rule r (of VirtualService vs) and match m (NULL: none). */
static json_t *http_route(struct tctx *c, const struct istio_object *vs, const HTTPRoute *r,
                          const HTTPMatchRequest *m, const struct reg_service *s, uint32_t port)
{
    json_t *route = json_object();
    char name[256] = "";
    if (r->name && *r->name && m && m->name && *m->name)
        snprintf(name, sizeof name, "%s.%s", r->name, m->name);
    else if (r->name && *r->name)
        snprintf(name, sizeof name, "%s", r->name);
    else if (m && m->name && *m->name)
        snprintf(name, sizeof name, "%s", m->name);
    if (*name)
        json_object_set_new(route, "name", json_string(name));
    json_object_set_new(route, "match", route_match(m));
    if (r->redirect) {
        const Istio__Networking__V1alpha3__HTTPRedirect *rd = r->redirect;
        json_t *a = json_object();
        if (rd->uri && *rd->uri)
            json_object_set_new(a, "pathRedirect", json_string(rd->uri));
        if (rd->authority && *rd->authority)
            json_object_set_new(a, "hostRedirect", json_string(rd->authority));
        if (rd->scheme && *rd->scheme)
            json_object_set_new(a, "schemeRedirect", json_string(rd->scheme));
        if (rd->redirect_port_case == ISTIO__NETWORKING__V1ALPHA3__HTTPREDIRECT__REDIRECT_PORT_PORT)
            json_object_set_new(a, "portRedirect", json_integer(rd->port));
        static const char *const codes[] = {"MOVED_PERMANENTLY", "FOUND", "SEE_OTHER",
                                            "TEMPORARY_REDIRECT", "PERMANENT_REDIRECT"};
        json_object_set_new(a, "responseCode", json_string(codes[redirect_code(rd->redirect_code)]));
        json_object_set_new(route, "redirect", a);
    } else if (r->direct_response) {
        json_t *a = json_pack("{s:i}", "status", r->direct_response->status);
        const Istio__Networking__V1alpha3__HTTPBody *b = r->direct_response->body;
        if (b && b->specifier_case == ISTIO__NETWORKING__V1ALPHA3__HTTPBODY__SPECIFIER_STRING)
            json_object_set_new(a, "body", json_pack("{s:s}", "inlineString", b->string));
        else if (b && b->specifier_case == ISTIO__NETWORKING__V1ALPHA3__HTTPBODY__SPECIFIER_BYTES) {
            json_t *s2 = json_stringn((const char *)b->bytes.data, b->bytes.len);
            if (s2)
                json_object_set_new(a, "body", json_pack("{s:o}", "inlineString", s2));
        }
        json_object_set_new(route, "directResponse", a);
    } else {
        json_t *a = json_object();
        const char *subset0 = NULL;
        if (r->n_route == 1) {
            char *cl = dest_cluster(c, vs, r->route[0]->destination, port);
            if (!cl) {
                json_decref(route);
                json_decref(a);
                return NULL;
            }
            json_object_set_new(a, "cluster", json_string(cl));
            free(cl);
            subset0 = r->route[0]->destination->subset;
            headers(route, r->route[0]->headers);
        } else {
            json_t *cls = json_array();
            for (size_t i = 0; i < r->n_route; i++) {
                if (r->route[i]->weight == 0)
                    continue; /* Istio drops zero-weight destinations */
                char *cl = dest_cluster(c, vs, r->route[i]->destination, port);
                if (!cl)
                    continue;
                json_t *w = json_pack("{s:s,s:i}", "name", cl, "weight", r->route[i]->weight);
                headers(w, r->route[i]->headers);
                json_array_append_new(cls, w);
                free(cl);
            }
            if (json_array_size(cls) == 1) {
                json_object_set(a, "cluster", json_object_get(json_array_get(cls, 0), "name"));
                json_decref(cls);
            } else {
                json_object_set_new(a, "weightedClusters", json_pack("{s:o}", "clusters", cls));
            }
        }
        if (r->rewrite) {
            if (r->rewrite->uri && *r->rewrite->uri) {
                if (m && m->uri && m->uri->match_type_case == ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_EXACT)
                    json_object_set_new(a, "regexRewrite",
                                        json_pack("{s:{s:s},s:s}", "pattern", "regex", ".*", "substitution",
                                                  r->rewrite->uri));
                else
                    json_object_set_new(a, "prefixRewrite", json_string(r->rewrite->uri));
            }
            if (r->rewrite->uri_regex_rewrite)
                json_object_set_new(a, "regexRewrite",
                                    json_pack("{s:{s:s},s:s}", "pattern", "regex",
                                              r->rewrite->uri_regex_rewrite->match, "substitution",
                                              r->rewrite->uri_regex_rewrite->rewrite ? r->rewrite->uri_regex_rewrite->rewrite : ""));
            if (r->rewrite->authority && *r->rewrite->authority)
                json_object_set_new(a, "hostRewriteLiteral", json_string(r->rewrite->authority));
        }
        json_object_set_new(a, "timeout", r->timeout ? t_duration(r->timeout->seconds, r->timeout->nanos)
                                                     : json_string("0s"));
        json_t *rp = retry_policy(r->retries);
        if (rp)
            json_object_set_new(a, "retryPolicy", rp);
        json_t *mirrors = json_array();
        if (r->mirror) {
            char *cl = dest_cluster(c, vs, r->mirror, port);
            double pct = r->mirror_percentage ? r->mirror_percentage->value
                         : r->mirror_percent ? r->mirror_percent->value : 100.0;
            if (cl)
                json_array_append_new(mirrors, json_pack("{s:s,s:{s:o}}", "cluster", cl, "runtimeFraction",
                                                         "defaultValue", t_percent_fraction(pct)));
            free(cl);
        }
        for (size_t i = 0; i < r->n_mirrors; i++) {
            char *cl = dest_cluster(c, vs, r->mirrors[i]->destination, port);
            double pct = r->mirrors[i]->percentage ? r->mirrors[i]->percentage->value : 100.0;
            if (cl)
                json_array_append_new(mirrors, json_pack("{s:s,s:{s:o}}", "cluster", cl, "runtimeFraction",
                                                         "defaultValue", t_percent_fraction(pct)));
            free(cl);
        }
        if (json_array_size(mirrors))
            json_object_set_new(a, "requestMirrorPolicies", mirrors);
        else
            json_decref(mirrors);
        if (r->n_route >= 1) {
            char *host = istio_resolve_host(r->route[0]->destination->host, vs->ns, c->m->domain_suffix);
            const struct reg_service *ds = host ? registry_find(c->m->reg, host) : NULL;
            if (ds)
                hash_policy(a, t_find_dr(c, ds->hostname, ds->ns), subset0);
            free(host);
        }
        json_object_set_new(a, "maxStreamDuration", max_stream_duration());
        json_object_set_new(route, "route", a);
    }
    json_object_set_new(route, "metadata", t_metadata_config(vs));
    char op[300];
    snprintf(op, sizeof op, "%s:%u/*", s ? s->hostname : "unknown", port);
    if (r->n_route >= 1 && r->route[0]->destination && r->route[0]->destination->host) {
        /* Istio names the operation after the (first) destination */
        const Istio__Networking__V1alpha3__Destination *d = r->route[0]->destination;
        char *host = istio_resolve_host(d->host, vs->ns, c->m->domain_suffix);
        const struct reg_service *ds = host ? registry_find(c->m->reg, host) : NULL;
        uint32_t dp = d->port && d->port->number ? d->port->number
                      : ds && ds->n_ports == 1 ? ds->ports[0].port : port;
        if (host)
            snprintf(op, sizeof op, "%s:%u/*", host, dp);
        free(host);
    }
    json_object_set_new(route, "decorator", json_pack("{s:s}", "operation", op));
    if (r->fault || r->cors_policy) {
        json_t *pf = json_object();
        if (r->cors_policy)
            json_object_set_new(pf, "envoy.filters.http.cors", cors(r->cors_policy));
        if (r->fault)
            json_object_set_new(pf, "envoy.filters.http.fault", fault(r->fault));
        json_object_set_new(route, "typedPerFilterConfig", pf);
    }
    headers(route, r->headers);
    return route;
}

static void merge_match(HTTPMatchRequest *out, const HTTPMatchRequest *root, const HTTPMatchRequest *d)
{
    *out = *d;
    if (!out->uri)
        out->uri = root->uri;
    if (!out->method)
        out->method = root->method;
    if (!out->authority)
        out->authority = root->authority;
    if (!out->scheme)
        out->scheme = root->scheme;
    if (!out->n_headers) {
        out->n_headers = root->n_headers;
        out->headers = root->headers;
    }
    if (!out->port)
        out->port = root->port;
}

static int append_rule(struct tctx *c, const struct istio_object *vs, const HTTPRoute *r,
                       const HTTPMatchRequest *root_match, const struct reg_service *s,
                       uint32_t port, const char *gw_ns, const char *gw_name, json_t *routes)
{
    if (r->n_match == 0) {
        if (root_match && !match_applies(c, vs, root_match, port, gw_ns, gw_name))
            return 0;
        json_t *rt = http_route(c, vs, r, root_match, s, port);
        return rt ? json_array_append_new(routes, rt) : -1;
    }
    for (size_t i = 0; i < r->n_match; i++) {
        HTTPMatchRequest merged;
        const HTTPMatchRequest *m = r->match[i];
        if (root_match) {
            merge_match(&merged, root_match, m);
            m = &merged;
        }
        if (!match_applies(c, vs, m, port, gw_ns, gw_name))
            continue;
        json_t *rt = http_route(c, vs, r, m, s, port);
        if (!rt || json_array_append_new(routes, rt) < 0)
            return -1;
    }
    return 0;
}

int t_service_routes(struct tctx *c, const struct reg_service *s, const struct reg_port *port,
                     const struct istio_object *vso, const char *gw_ns, const char *gw_name,
                     json_t *routes)
{
    uint32_t pn = port ? port->port : 0;
    if (!vso) {
        char *cl = t_cluster_name("outbound", pn, NULL, s->hostname);
        char op[300];
        if (!cl)
            return -1;
        snprintf(op, sizeof op, "%s:%u/*", s->hostname, pn);
        json_array_append_new(routes,
                              json_pack("{s:s,s:{s:s},s:{s:s,s:s,s:o,s:o},s:{s:s}}", "name", "default",
                                        "match", "prefix", "/", "route", "cluster", cl, "timeout", "0s",
                                        "retryPolicy", t_default_retry(), "maxStreamDuration",
                                        max_stream_duration(), "decorator", "operation", op));
        free(cl);
        return 0;
    }
    const VirtualService *vs = (const void *)vso->spec;
    for (size_t i = 0; i < vs->n_http; i++) {
        const HTTPRoute *r = vs->http[i];
        if (r->delegate) {
            const char *dns = r->delegate->namespace_ && *r->delegate->namespace_ ? r->delegate->namespace_ : vso->ns;
            const struct istio_object *d = pilot_model_find(c->m, ISTIO_VIRTUAL_SERVICE, dns, r->delegate->name);
            if (!d) {
                t_warn(c, "%s:%d: VirtualService %s/%s: delegate %s/%s not found", vso->file, vso->line,
                       vso->ns, vso->name, dns, r->delegate->name);
                continue;
            }
            const VirtualService *dvs = (const void *)d->spec;
            size_t nroot = r->n_match ? r->n_match : 1;
            for (size_t k = 0; k < nroot; k++)
                for (size_t j = 0; j < dvs->n_http; j++)
                    if (!dvs->http[j]->delegate &&
                        append_rule(c, d, dvs->http[j], r->n_match ? r->match[k] : NULL, s, pn, gw_ns,
                                    gw_name, routes) < 0)
                        return -1;
            continue;
        }
        if (append_rule(c, vso, r, NULL, s, pn, gw_ns, gw_name, routes) < 0)
            return -1;
    }
    return 0;
}

static void add_domain(json_t *d, const char *name, uint32_t port)
{
    char buf[600];
    json_array_append_new(d, json_string(name));
    snprintf(buf, sizeof buf, "%.500s:%u", name, port);
    json_array_append_new(d, json_string(buf));
}

/* Istio's names for a service as a proxy sees it (its generateAltVirtualHosts): the
 * hostname, then the part not shared with the proxy's DNS domain (NS.svc.SUFFIX), then that
 * part followed by each shorter prefix of the shared domain; then the VIP. Each with and
 * without ":port". reviews.default.svc.cluster.local from namespace default gives reviews,
 * reviews.default.svc.cluster, reviews.default.svc, reviews.default. */
static json_t *vhost_domains(struct tctx *c, const struct reg_service *s, uint32_t port)
{
    json_t *d = json_array();
    char proxy_domain[300];
    snprintf(proxy_domain, sizeof proxy_domain, "%s.svc.%s", c->p->ns, c->m->domain_suffix);
    add_domain(d, s->hostname, port);
    /* the longest common suffix of whole labels */
    const char *h = s->hostname, *pd = proxy_domain;
    size_t hl = strlen(h), pl = strlen(pd), k = 0;
    size_t shared = 0; /* bytes of the shared suffix (without its leading dot) */
    while (k < hl && k < pl && h[hl - 1 - k] == pd[pl - 1 - k]) {
        k++;
        if ((k == pl || pd[pl - 1 - k] == '.') && k < hl && h[hl - 1 - k] == '.')
            shared = k;
    }
    if (shared) {
        size_t uniq_len = hl - shared - 1;
        char uniq[256], variant[512];
        snprintf(uniq, sizeof uniq, "%.*s", (int)uniq_len, h);
        add_domain(d, uniq, port);
        const char *sh = h + hl - shared; /* e.g. "default.svc.cluster.local" */
        for (size_t i = shared - 1; i > 0; i--)
            if (sh[i] == '.') {
                snprintf(variant, sizeof variant, "%s.%.*s", uniq, (int)i, sh);
                add_domain(d, variant, port);
            }
    }
    if (*s->vip && !strchr(s->vip, '/'))
        add_domain(d, s->vip, port);
    return d;
}

static int sidecar_route_config(struct tctx *c, uint32_t port, json_t *out)
{
    char name[16];
    snprintf(name, sizeof name, "%u", port);
    json_t *vhosts = json_array();
    for (size_t i = 0; i < c->n_visible; i++) {
        const struct reg_service *s = c->visible[i];
        for (size_t p = 0; p < s->n_ports; p++) {
            if (s->ports[p].port != port || !reg_protocol_is_http(s->ports[p].protocol) ||
                !t_port_visible(c, s, port))
                continue;
            const struct istio_object *vs[T_MAX_VS];
            size_t nvs = t_find_vs(c, s->hostname, NULL, NULL, vs, T_MAX_VS);
            if (nvs > 1)
                t_warn(c, "%s:%d: VirtualService %s/%s also covers %s, which %s/%s routes; ignored for it",
                       vs[1]->file, vs[1]->line, vs[1]->ns, vs[1]->name, s->hostname, vs[0]->ns, vs[0]->name);
            json_t *routes = json_array();
            if (t_service_routes(c, s, &s->ports[p], nvs ? vs[0] : NULL, NULL, NULL, routes) < 0) {
                json_decref(routes);
                json_decref(vhosts);
                return -1;
            }
            char vname[300];
            snprintf(vname, sizeof vname, "%s:%u", s->hostname, port);
            json_array_append_new(vhosts, json_pack("{s:s,s:o,s:o,s:b}", "name", vname, "domains",
                                                    vhost_domains(c, s, port), "routes", routes,
                                                    "includeRequestAttemptCount", 1));
            break;
        }
    }
    if (c->allow_any)
        json_array_append_new(vhosts,
                              json_pack("{s:s,s:[s],s:[{s:s,s:{s:s},s:{s:s,s:s,s:o}}],s:b}", "name",
                                        "allow_any", "domains", "*", "routes", "name", "allow_any",
                                        "match", "prefix", "/", "route", "cluster", "PassthroughCluster",
                                        "timeout", "0s", "maxStreamDuration", max_stream_duration(),
                                        "includeRequestAttemptCount", 1));
    else
        json_array_append_new(vhosts,
                              json_pack("{s:s,s:[s],s:[{s:s,s:{s:s},s:{s:i}}],s:b}", "name", "block_all",
                                        "domains", "*", "routes", "name", "block_all", "match", "prefix",
                                        "/", "directResponse", "status", 502,
                                        "includeRequestAttemptCount", 1));
    json_array_append_new(out, json_pack("{s:s,s:o,s:b}", "name", name, "virtualHosts", vhosts,
                                         "validateClusters", 0));
    return 0;
}

static json_t *find_named(json_t *arr, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
        if (!strcmp(json_string_value(json_object_get(v, "name")), name))
            return v;
    return NULL;
}

/* The route configurations of the Gateway servers that select this router: "http.PORT" for
 * HTTP servers (all servers of one port share it, as Istio merges them) and
 * "https.PORT.NAME.GW.NS" for terminated HTTPS ones. Each VirtualService bound to the
 * gateway adds its routes to the virtual host of each of its hosts that a server covers;
 * several VirtualServices for one host share the virtual host (their routes in order). */
static int gateway_route_configs(struct tctx *c, json_t *out)
{
    size_t first, n = pilot_model_kind(c->m, ISTIO_GATEWAY, &first);
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
            char name[300];
            if (reg_protocol_is_http(pr)) {
                snprintf(name, sizeof name, "http.%u", srv->port->number);
            } else if ((pr == REG_PROTO_HTTPS || pr == REG_PROTO_TLS) && srv->tls &&
                       (srv->tls->mode == ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__SIMPLE ||
                        srv->tls->mode == ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__MUTUAL ||
                        srv->tls->mode == ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__OPTIONAL_MUTUAL)) {
                t_gateway_https_rds(go, srv, name, sizeof name);
                pr = REG_PROTO_HTTP;
            } else {
                continue;
            }
            json_t *rc = find_named(out, name);
            if (!rc) {
                rc = json_pack("{s:s,s:[],s:b}", "name", name, "virtualHosts", "validateClusters", 0);
                json_array_append_new(out, rc);
            }
            json_t *vhosts = json_object_get(rc, "virtualHosts");
            int redirect = srv->tls && srv->tls->https_redirect && reg_protocol_is_http(reg_protocol_from(srv->port->protocol, NULL));
            size_t vf, vn = pilot_model_kind(c->m, ISTIO_VIRTUAL_SERVICE, &vf);
            for (size_t v = vf; v < vf + vn; v++) {
                const struct istio_object *vso = c->m->objs[v];
                const VirtualService *vs = (const void *)vso->spec;
                if (!vs->n_http || !t_vs_bound(vso, vs->gateways, vs->n_gateways, go->ns, go->name))
                    continue;
                for (size_t h = 0; h < vs->n_hosts; h++) {
                    int covered = 0;
                    for (size_t sh = 0; sh < srv->n_hosts; sh++) {
                        const char *hh = strchr(srv->hosts[sh], '/');
                        hh = hh ? hh + 1 : srv->hosts[sh];
                        covered |= t_host_match(hh, vs->hosts[h]) || t_host_match(vs->hosts[h], hh);
                    }
                    if (!covered)
                        continue;
                    char vname[300], d2[300];
                    snprintf(vname, sizeof vname, "%s:%u", vs->hosts[h], srv->port->number);
                    json_t *vh = find_named(vhosts, vname);
                    if (!vh) {
                        snprintf(d2, sizeof d2, "%s:*", vs->hosts[h]);
                        json_t *domains = !strcmp(vs->hosts[h], "*") ? json_pack("[s]", "*")
                                                                     : json_pack("[s,s]", vs->hosts[h], d2);
                        vh = json_pack("{s:s,s:o,s:[],s:b}", "name", vname, "domains", domains, "routes",
                                       "includeRequestAttemptCount", 1);
                        if (redirect)
                            json_object_set_new(vh, "requireTls", json_string("ALL"));
                        json_array_append_new(vhosts, vh);
                    } else if (json_object_get(vh, "_vs_") &&
                               !strcmp(json_string_value(json_object_get(vh, "_vs_")), vso->name) &&
                               !strcmp(json_string_value(json_object_get(vh, "_ns_")), vso->ns)) {
                        continue; /* the same VirtualService through another server of the port */
                    }
                    json_object_set_new(vh, "_vs_", json_string(vso->name));
                    json_object_set_new(vh, "_ns_", json_string(vso->ns));
                    struct reg_service fake = {.hostname = vs->hosts[h], .name = vs->hosts[h], .ns = vso->ns};
                    struct reg_port fp = {.port = srv->port->number, .protocol = pr};
                    if (t_service_routes(c, &fake, &fp, vso, go->ns, go->name, json_object_get(vh, "routes")) < 0)
                        return -1;
                }
            }
        }
    }
    /* drop the bookkeeping keys; a configuration without virtual hosts answers 404 */
    size_t i, k;
    json_t *rc, *vh;
    json_array_foreach(out, i, rc) {
        json_t *vhosts = json_object_get(rc, "virtualHosts");
        json_array_foreach(vhosts, k, vh) {
            json_object_del(vh, "_vs_");
            json_object_del(vh, "_ns_");
        }
        if (!json_array_size(vhosts)) {
            const char *nm = json_string_value(json_object_get(rc, "name"));
            const char *dot = strchr(nm, '.');
            char vname[64];
            snprintf(vname, sizeof vname, "blackhole:%.*s", (int)strcspn(dot ? dot + 1 : "", "."), dot ? dot + 1 : "");
            json_array_append_new(vhosts, json_pack("{s:s,s:[s],s:[{s:s,s:{s:s},s:{s:i}}]}", "name", vname,
                                                    "domains", "*", "routes", "name", "default", "match",
                                                    "prefix", "/", "directResponse", "status", 404));
        }
    }
    return 0;
}

int t_gen_routes(struct tctx *c, json_t *out)
{
    if (c->p->type == PILOT_PROXY_ROUTER)
        return gateway_route_configs(c, out);
    uint32_t ports[1024];
    size_t np = 0;
    for (size_t i = 0; i < c->n_visible; i++)
        for (size_t p = 0; p < c->visible[i]->n_ports; p++) {
            const struct reg_port *rp = &c->visible[i]->ports[p];
            if (!reg_protocol_is_http(rp->protocol) || !t_port_visible(c, c->visible[i], rp->port))
                continue;
            int dup = 0;
            for (size_t k = 0; k < np; k++)
                dup |= ports[k] == rp->port;
            if (!dup && np < sizeof ports / sizeof ports[0])
                ports[np++] = rp->port;
        }
    for (size_t k = 0; k < np; k++)
        if (sidecar_route_config(c, ports[k], out) < 0)
            return -1;
    return 0;
}

int t_check_vs(struct tctx *c, const struct istio_object *vso)
{
    const VirtualService *vs = (const void *)vso->spec;
    for (size_t i = 0; i < vs->n_http; i++) {
        const HTTPRoute *r = vs->http[i];
        for (size_t k = 0; k < r->n_route + (r->mirror != NULL) + r->n_mirrors; k++) {
            const Istio__Networking__V1alpha3__Destination *d =
                k < r->n_route ? r->route[k]->destination
                : k == r->n_route && r->mirror ? r->mirror
                : r->mirrors[k - r->n_route - (r->mirror != NULL)]->destination;
            char *cl = dest_cluster(c, vso, d, 0);
            if (!cl)
                return -1;
            free(cl);
        }
    }
    for (size_t i = 0; i < vs->n_tcp + vs->n_tls; i++) {
        Istio__Networking__V1alpha3__RouteDestination *const *route =
            i < vs->n_tcp ? vs->tcp[i]->route : vs->tls[i - vs->n_tcp]->route;
        size_t nr = i < vs->n_tcp ? vs->tcp[i]->n_route : vs->tls[i - vs->n_tcp]->n_route;
        for (size_t k = 0; k < nr; k++) {
            char *cl = dest_cluster(c, vso, route[k]->destination, 0);
            if (!cl)
                return -1;
            free(cl);
        }
    }
    return 0;
}
