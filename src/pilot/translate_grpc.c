/* pilot/translate_grpc: resources for proxyless gRPC clients (node metadata GENERATOR: grpc),
 * shaped as Istio's grpcgen shapes them and as gRPC's xDS client accepts them (gRFCs A27
 * xDS resolver/LB, A28 routing, A31 timeouts, A33 faults, A44 retries):
 *   - LDS: one Listener per requested "HOST:PORT" name (FQDN or a short form the service's
 *     virtual host answers: "reviews:9080", "reviews.default:9080"), holding only an
 *     api_listener: an HttpConnectionManager with RDS over ADS (route config of the same
 *     name) and the fault and router filters.
 *   - RDS: a RouteConfiguration of that name with the service's virtual host as the sidecar
 *     translation builds it (VirtualService matches, weights, retries, faults); a route
 *     timeout becomes max_stream_duration, the only timeout gRPC reads (2 s longer for gRPC
 *     C-core, which starts it 1-2 s early).
 *   - CDS: "outbound|PORT|SUBSET|HOST" clusters of type EDS over ADS, ROUND_ROBIN.
 *   - EDS: the sidecar's ClusterLoadAssignments (localities carry a weight, which gRPC needs).
 * Everything derives from the sidecar translation of the same proxy, so both agree. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbmap.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "pilot/translate.h"

#define TP "type.googleapis.com/"

static int cmp_pair(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool wanted(char *const *names, size_t n, int wildcard, const char *name)
{
    if (wildcard)
        return true;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], name))
            return true;
    return false;
}

static int add(struct pilot_resources *out, size_t *cap, const char *name, ProtobufCMessage *m)
{
    if (out->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        ProtobufCMessage **mm = realloc(out->msgs, nc * sizeof *mm);
        if (mm)
            out->msgs = mm;
        char **nn = realloc(out->names, nc * sizeof *nn);
        if (nn)
            out->names = nn;
        if (!mm || !nn)
            return -1;
        *cap = nc;
    }
    char *dup = strdup(name);
    if (!dup)
        return -1;
    out->msgs[out->n] = m;
    out->names[out->n++] = dup;
    return 0;
}

static ProtobufCMessage *from_json(const ProtobufCMessageDescriptor *d, json_t *j, const char *name,
                                   struct istio_errors *warn)
{
    char *text = json_dumps(j, JSON_COMPACT);
    struct pbmap_error err;
    ProtobufCMessage *m = text ? pbmap_from_yaml(d, text, strlen(text), name, &err) : NULL;
    if (!m && warn)
        istio_errors_add(warn, "internal: grpc resource %s: %s", name, text ? err.msg : "out of memory");
    free(text);
    return m;
}

/* Sorts out by name (the ADS server relies on sorted resources). */
static void sort_out(struct pilot_resources *out)
{
    for (size_t i = 1; i < out->n; i++)
        for (size_t k = i; k > 0 && strcmp(out->names[k - 1], out->names[k]) > 0; k--) {
            char *tn = out->names[k];
            out->names[k] = out->names[k - 1];
            out->names[k - 1] = tn;
            ProtobufCMessage *tm = out->msgs[k];
            out->msgs[k] = out->msgs[k - 1];
            out->msgs[k - 1] = tm;
        }
}

/* The sidecar's virtual host that answers name ("HOST:PORT"), or NULL. */
static const Envoy__Config__Route__V3__VirtualHost *find_vhost(const struct pilot_resources *rds,
                                                                const char *name)
{
    const char *colon = strrchr(name, ':');
    if (!colon || colon == name)
        return NULL;
    for (size_t i = 0; i < rds->n; i++) {
        if (strcmp(rds->names[i], colon + 1))
            continue;           /* the sidecar's route configs are named by port */
        const Envoy__Config__Route__V3__RouteConfiguration *rc = (const void *)rds->msgs[i];
        for (size_t v = 0; v < rc->n_virtual_hosts; v++)
            for (size_t d = 0; d < rc->virtual_hosts[v]->n_domains; d++)
                if (!strcmp(rc->virtual_hosts[v]->domains[d], name))
                    return rc->virtual_hosts[v];
    }
    return NULL;
}

static json_t *ads_source(void)
{
    return json_pack("{s:{},s:s}", "ads", "resourceApiVersion", "V3");
}

static json_t *listener_json(const char *name)
{
    json_t *hcm = json_pack("{s:s,s:s,s:{s:o,s:s},s:[{s:s,s:{s:s}},{s:s,s:{s:s}}]}",
                            "@type", TP "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "statPrefix", name, "rds", "configSource", ads_source(), "routeConfigName", name,
                            "httpFilters",
                            "name", "envoy.filters.http.fault", "typedConfig", "@type",
                            TP "envoy.extensions.filters.http.fault.v3.HTTPFault",
                            "name", "envoy.filters.http.router", "typedConfig", "@type",
                            TP "envoy.extensions.filters.http.router.v3.Router");
    return json_pack("{s:s,s:{s:o}}", "name", name, "apiListener", "apiListener", hcm);
}

unsigned pilot_grpc_timeout_pad_ms(const char *user_agent_name)
{
    return user_agent_name && !strncmp(user_agent_name, "gRPC C-core", 11) ? PILOT_GRPC_CORE_TIMEOUT_PAD_MS
                                                                           : 0;
}

/* A JSON Duration ("1s", "0.250s") plus pad_ms as a JSON Duration, or NULL when it is not one
 * or is zero (no timeout). */
static json_t *padded_duration(const char *text, unsigned pad_ms)
{
    char *end;
    errno = 0;
    long long sec = strtoll(text, &end, 10);
    long long nanos = 0;
    if (errno || end == text || sec < 0)
        return NULL;
    if (*end == '.') {
        long long scale = 100000000;
        for (end++; *end >= '0' && *end <= '9'; end++, scale /= 10)
            nanos += scale ? (*end - '0') * scale : 0;
    }
    if (strcmp(end, "s") || (sec == 0 && nanos == 0))
        return NULL;
    nanos += (long long)(pad_ms % 1000) * 1000000;
    sec += pad_ms / 1000 + nanos / 1000000000;
    nanos %= 1000000000;
    char buf[48];
    snprintf(buf, sizeof buf, "%lld.%09llds", sec, nanos);
    return json_string(buf);
}

/* A route timeout as gRPC reads it (A31): max_stream_duration, no grpc_timeout_header_max
 * (which, set to 0, would mean "no limit" and win). pad_ms is added for clients that start the
 * timeout early (pilot_grpc_timeout_pad_ms). */
static void grpc_timeouts(json_t *vh, unsigned pad_ms)
{
    size_t i, k;
    json_t *r, *h;
    json_array_foreach(json_object_get(vh, "routes"), i, r) {
        /* header matchers in the oneof members gRPC's xDS client reads (it predates
         * string_match): exact_match, prefix_match, suffix_match, contains_match,
         * safe_regex_match */
        json_array_foreach(json_object_get(json_object_get(r, "match"), "headers"), k, h) {
            json_t *sm = json_object_get(h, "stringMatch");
            if (!sm || json_is_true(json_object_get(sm, "ignoreCase")))
                continue;
            static const char *const map[][2] = {{"exact", "exactMatch"}, {"prefix", "prefixMatch"},
                                                 {"suffix", "suffixMatch"}, {"contains", "containsMatch"},
                                                 {"safeRegex", "safeRegexMatch"}};
            for (size_t m = 0; m < sizeof map / sizeof map[0]; m++) {
                json_t *v = json_object_get(sm, map[m][0]);
                if (v) {
                    json_object_set(h, map[m][1], v);
                    json_object_del(h, "stringMatch");
                    break;
                }
            }
        }
        json_t *act = json_object_get(r, "route");
        if (!act)
            continue;
        json_t *to = json_object_get(act, "timeout");
        json_object_del(act, "maxStreamDuration");
        json_t *msd = json_is_string(to) ? padded_duration(json_string_value(to), pad_ms) : NULL;
        if (msd)
            json_object_set_new(act, "maxStreamDuration", json_pack("{s:o}", "maxStreamDuration", msd));
    }
}

static json_t *route_json(const char *name, const Envoy__Config__Route__V3__VirtualHost *vh,
                          unsigned pad_ms)
{
    json_t *v = pbmap_to_json(&vh->base);
    if (!v)
        return NULL;
    grpc_timeouts(v, pad_ms);
    json_object_set_new(v, "name", json_string(name));
    return json_pack("{s:s,s:[o]}", "name", name, "virtualHosts", v);
}

static json_t *cluster_json(const char *name)
{
    return json_pack("{s:s,s:s,s:{s:o,s:s},s:s}", "name", name, "type", "EDS", "edsClusterConfig",
                     "edsConfig", ads_source(), "serviceName", name, "lbPolicy", "ROUND_ROBIN");
}

int pilot_translate_grpc(const struct pilot_model *m, const struct pilot_proxy *p, enum pilot_type t,
                         char *const *names, size_t n_names, int wildcard, unsigned timeout_pad_ms,
                         struct pilot_resources *out, struct istio_errors *warnings)
{
    memset(out, 0, sizeof *out);
    size_t cap = 0;
    int rc = 0;
    struct pilot_resources side = {0};
    /* LDS and RDS derive from the sidecar's routes; CDS and EDS from its clusters/endpoints */
    enum pilot_type from = t == PILOT_LDS || t == PILOT_RDS ? PILOT_RDS : t;
    if (pilot_translate(m, p, from, &side, warnings) < 0)
        return -1;
    if (t == PILOT_EDS) {
        for (size_t i = 0; i < side.n; i++) {
            if (!wanted(names, n_names, wildcard, side.names[i]))
                continue;
            if (add(out, &cap, side.names[i], side.msgs[i]) < 0) {
                rc = -1;
                break;
            }
            side.msgs[i] = NULL;   /* moved */
        }
    } else if (t == PILOT_CDS) {
        for (size_t i = 0; rc == 0 && i < side.n; i++) {
            if (strncmp(side.names[i], "outbound|", 9) || !wanted(names, n_names, wildcard, side.names[i]))
                continue;
            json_t *j = cluster_json(side.names[i]);
            ProtobufCMessage *msg = j ? from_json(side.msgs[i]->descriptor, j, side.names[i], warnings) : NULL;
            json_decref(j);
            if (!msg || add(out, &cap, side.names[i], msg) < 0) {
                if (msg)
                    protobuf_c_message_free_unpacked(msg, NULL);
                rc = -1;
            }
        }
    } else {
        /* the names asked for; with a wildcard, every service's FQDN:PORT (vhost names) */
        char **want = NULL;
        size_t nw = 0;
        if (wildcard) {
            size_t total = 0;
            for (size_t i = 0; i < side.n; i++)
                total += ((const Envoy__Config__Route__V3__RouteConfiguration *)side.msgs[i])->n_virtual_hosts;
            want = calloc(total + 1, sizeof *want);
            for (size_t i = 0; want && i < side.n; i++) {
                const Envoy__Config__Route__V3__RouteConfiguration *r = (const void *)side.msgs[i];
                for (size_t v = 0; v < r->n_virtual_hosts; v++)
                    if (strchr(r->virtual_hosts[v]->name, ':') && strcmp(r->virtual_hosts[v]->name, "allow_any"))
                        want[nw++] = r->virtual_hosts[v]->name;
            }
            qsort(want, nw, sizeof *want, cmp_pair);
        } else {
            want = calloc(n_names + 1, sizeof *want);
            for (size_t i = 0; want && i < n_names; i++)
                want[nw++] = names[i];
        }
        if (!want)
            rc = -1;
        for (size_t i = 0; rc == 0 && i < nw; i++) {
            if (i && !strcmp(want[i], want[i - 1]))
                continue;
            const Envoy__Config__Route__V3__VirtualHost *vh = find_vhost(&side, want[i]);
            if (!vh)
                continue;   /* not a service this proxy sees: the client gets "does not exist" */
            json_t *j = t == PILOT_LDS ? listener_json(want[i]) : route_json(want[i], vh, timeout_pad_ms);
            const ProtobufCMessageDescriptor *d = t == PILOT_LDS ? pbmap_find_type(pilot_type_url(PILOT_LDS))
                                                                 : side.msgs[0]->descriptor;
            ProtobufCMessage *msg = j && d ? from_json(d, j, want[i], warnings) : NULL;
            json_decref(j);
            if (!msg || add(out, &cap, want[i], msg) < 0) {
                if (msg)
                    protobuf_c_message_free_unpacked(msg, NULL);
                rc = -1;
            }
        }
        free(want);
    }
    pilot_resources_free(&side);
    if (rc < 0) {
        pilot_resources_free(out);
        memset(out, 0, sizeof *out);
        return -1;
    }
    sort_out(out);
    return 0;
}
