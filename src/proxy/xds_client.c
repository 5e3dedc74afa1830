/* The ADS client (see xds_client.h for the model). */
#include "proxy/xds_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/log.h"
#include "common/pbmap.h"
#include "common/stats.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "net/grpc_client.h"
#include "proxy/xds_internal.h"

typedef Envoy__Config__Bootstrap__V3__Bootstrap Bootstrap;
typedef Envoy__Service__Discovery__V3__DiscoveryRequest DiscoveryRequest;
typedef Envoy__Service__Discovery__V3__DiscoveryResponse DiscoveryResponse;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryResponse DeltaDiscoveryResponse;
typedef Envoy__Config__Core__V3__ConfigSource ConfigSource;

#define ADS_PATH_SOTW "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
#define ADS_PATH_DELTA "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"

/* Envoy's xDS subscription stats ("cluster_manager.cds.", "listener_manager.lds.", ...). */
enum xds_stat { XS_UPDATE_ATTEMPT, XS_UPDATE_SUCCESS, XS_UPDATE_REJECTED, XS_UPDATE_FAILURE, XS_INIT_FETCH_TIMEOUT,
                XS_COUNT };
static const struct stat_def xds_stat_defs[XS_COUNT] = {
    [XS_UPDATE_ATTEMPT] = {"update_attempt", STAT_COUNTER},
    [XS_UPDATE_SUCCESS] = {"update_success", STAT_COUNTER},
    [XS_UPDATE_REJECTED] = {"update_rejected", STAT_COUNTER},
    [XS_UPDATE_FAILURE] = {"update_failure", STAT_COUNTER},
    [XS_INIT_FETCH_TIMEOUT] = {"init_fetch_timeout", STAT_COUNTER},
};
static const struct stat_schema xds_stat_schema = {"xds", xds_stat_defs, XS_COUNT, NULL};
static const struct stat_def cp_stat_defs[] = {{"connected_state", STAT_GAUGE}};
static const struct stat_schema cp_stat_schema = {"control_plane", cp_stat_defs, 1, NULL};

static const char *const type_urls[XDS_NTYPES] = {
    [XDS_CDS] = "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    [XDS_EDS] = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    [XDS_LDS] = "type.googleapis.com/envoy.config.listener.v3.Listener",
    [XDS_RDS] = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    [XDS_SDS] = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
};
static const char *const stat_prefixes[XDS_NTYPES] = {
    [XDS_CDS] = "cluster_manager.cds.", [XDS_EDS] = "cluster_manager.eds.",
    [XDS_LDS] = "listener_manager.lds.", [XDS_RDS] = "http.rds.",
    /* SDS: per secret, "sds.<name>." (xds_count) */
};

const char *xds_type_url(enum xds_type t) { return type_urls[t]; }
const struct xds_set *xds_client_resources(const struct xds_client *x, enum xds_type t) { return &x->sub[t].set; }
const char *xds_client_version(const struct xds_client *x, enum xds_type t) { return x->sub[t].version; }
bool xds_client_connected(const struct xds_client *x) { return x->connected_state == 1; }

static unsigned main_slot(void) { return stats_slots() - 1; }

/* Counts one xDS stat field for type t. Envoy keeps SDS stats per secret ("sds.<name>."): each
 * secret asked for counts every Secret response, as each of Envoy's per-secret subscriptions does. */
static void xds_count(struct xds_client *x, enum xds_type t, size_t field)
{
    struct xds_sub *s = &x->sub[t];
    if (s->stats) {
        stats_inc(s->stats, main_slot(), field);
        return;
    }
    for (size_t i = 0; i < s->n_names; i++) {
        char prefix[320];
        snprintf(prefix, sizeof prefix, "sds.%.300s.", s->names[i]);
        stats_inc(stats_block(prefix, &xds_stat_schema), main_slot(), field);
    }
}

/* Types subscribed to by resource name (the others are wildcards). */
static bool named(enum xds_type t) { return t == XDS_EDS || t == XDS_RDS || t == XDS_SDS; }

static void set_str(char **dst, const char *src)
{
    char *n = strdup(src ? src : "");
    if (!n)
        abort(); /* configuration-time allocation */
    free(*dst);
    *dst = n;
}

static void set_free(struct xds_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->r[i].name);
        free(s->r[i].version);
        if (s->r[i].msg)
            protobuf_c_message_free_unpacked(s->r[i].msg, NULL);
    }
    free(s->r);
    s->r = NULL;
    s->n = 0;
}

static void set_connected(struct xds_client *x, int64_t v)
{
    stats_add(x->cp_stats, main_slot(), 0, v - x->connected_state);
    x->connected_state = v;
}

/* --- requests --- */

void xds_send_msg(struct xds_client *x, const ProtobufCMessage *m, enum xds_type t)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return;
    protobuf_c_message_pack(m, buf);
    if (x->hooks.send)
        x->hooks.send(x->hooks.arg, buf, n);
    else if (x->call && grpc_ccall_send(x->call, buf, n) < 0)
        log_warn("xds: request for %s not queued (send queue full)", type_urls[t]);
    free(buf);
}

/* State of the world: one DiscoveryRequest carries the whole subscription, the version held
 * and the nonce it answers, whatever it is for. */
static void send_request(struct xds_client *x, enum xds_type t, const char *error)
{
    struct xds_sub *s = &x->sub[t];
    if (!x->stream_open)
        return; /* the next stream re-sends every subscription */
    DiscoveryRequest rq = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_REQUEST__INIT;
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    rq.version_info = s->version;
    rq.type_url = (char *)type_urls[t];
    rq.response_nonce = s->nonce;
    if (named(t)) {
        rq.resource_names = s->names;
        rq.n_resource_names = s->n_names;
    }
    if (!s->node_sent) {
        rq.node = x->b->node;
        s->node_sent = true;
    }
    if (error) {
        st.code = GRPC_STATUS_INVALID_ARGUMENT;
        st.message = (char *)error;
        rq.error_detail = &st;
    }
    xds_send_msg(x, &rq.base, t);
}

/* One request of kind k, in the stream's protocol (state of the world sends the same
 * request for every kind). */
static void request(struct xds_client *x, enum xds_type t, enum xds_delta_kind k, const char *error)
{
    if (x->delta)
        xds_delta_request(x, t, k, error);
    else
        send_request(x, t, error);
}

/* Delta: resources of names no longer asked for are dropped at once (no response comes for
 * an unsubscribe; SotW drops them with the next response). */
static void drop_unwanted(struct xds_sub *s, enum xds_type t)
{
    size_t k = 0;
    for (size_t i = 0; i < s->set.n; i++) {
        struct xds_resource *r = &s->set.r[i];
        if (xds_wanted(s, t, r->name)) {
            s->set.r[k++] = *r;
            continue;
        }
        free(r->name);
        free(r->version);
        protobuf_c_message_free_unpacked(r->msg, NULL);
    }
    s->set.n = k;
}

/* Sets t's names (EDS/RDS); when they changed, asks for them and starts warming for names not
 * held yet. Takes ownership of names (an array of malloc'd strings). */
static void update_names(struct xds_client *x, enum xds_type t, char **names, size_t n)
{
    struct xds_sub *s = &x->sub[t];
    bool same = n == s->n_names && s->subscribed;
    for (size_t i = 0; same && i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < s->n_names && !found; j++)
            found = strcmp(names[i], s->names[j]) == 0;
        same = found;
    }
    if (same) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return;
    }
    bool missing = false;
    for (size_t i = 0; i < n && !missing; i++) {
        bool have = false;
        for (size_t j = 0; j < s->set.n && !have; j++)
            have = strcmp(s->set.r[j].name, names[i]) == 0;
        missing = !have;
    }
    for (size_t i = 0; i < s->n_names; i++)
        free(s->names[i]);
    free(s->names);
    s->names = names;
    s->n_names = n;
    s->subscribed = true;
    if (missing) {
        s->warming = true;
        s->warm_deadline_ms = x->fetch_timeout_ms[t] ? loop_now_ms(x->loop) + x->fetch_timeout_ms[t] : 0;
    }
    if (x->delta)
        drop_unwanted(s, t);
    request(x, t, XDS_DELTA_NAMES, NULL);
}

static void subscribe_wildcard(struct xds_client *x, enum xds_type t)
{
    struct xds_sub *s = &x->sub[t];
    if (s->subscribed)
        return;
    s->subscribed = true;
    s->warming = true;
    s->warm_deadline_ms = x->fetch_timeout_ms[t] ? loop_now_ms(x->loop) + x->fetch_timeout_ms[t] : 0;
    request(x, t, XDS_DELTA_INITIAL, NULL);
}

/* --- publishing (warming) --- */

static void maybe_publish(struct xds_client *x, struct snapshot *built);

static void on_warm_timer(struct loop *l, struct timer *t)
{
    (void)l;
    maybe_publish(t->data, NULL);
}

/* Publishes a snapshot of the accepted resources unless clusters or routes are warming.
 * Envoy's order: clusters (CDS, then their EDS) warm before LDS is asked for; a listener
 * update waits until the clusters it may use are warm. built (consumed; may be NULL) is a
 * snapshot already built from exactly the accepted resources. */
static void maybe_publish(struct xds_client *x, struct snapshot *built)
{
    uint64_t now = loop_now_ms(x->loop), next = 0;
    for (int t = 0; t < XDS_NTYPES; t++) {
        struct xds_sub *s = &x->sub[t];
        if (!s->warming)
            continue;
        if (s->warm_deadline_ms && now >= s->warm_deadline_ms) {
            log_warn("xds: %s: initial_fetch_timeout passed; going on without it", type_urls[t]);
            xds_count(x, (enum xds_type)t, XS_INIT_FETCH_TIMEOUT);
            s->warming = false;
            continue;
        }
        if (s->warm_deadline_ms && (!next || s->warm_deadline_ms < next))
            next = s->warm_deadline_ms;
    }
    bool cds_warm = !x->sub[XDS_CDS].warming && !x->sub[XDS_EDS].warming && !x->sub[XDS_SDS].warming;
    if (cds_warm && x->sub[XDS_CDS].subscribed && !x->sub[XDS_LDS].subscribed)
        subscribe_wildcard(x, XDS_LDS);
    if (next)
        timer_start(x->loop, &x->warm_timer, next - now);
    if (x->sub[XDS_CDS].warming || x->sub[XDS_EDS].warming || x->sub[XDS_RDS].warming || x->sub[XDS_SDS].warming ||
        (!x->sub[XDS_CDS].set.n && !x->sub[XDS_LDS].set.n && !x->sub[XDS_CDS].version[0])) {
        if (built)
            snapshot_unref(built);
        return;
    }
    if (built) {
        x->hooks.publish(x->hooks.arg, built);
        return;
    }
    struct xds_set sets[XDS_NTYPES];
    for (int t = 0; t < XDS_NTYPES; t++)
        sets[t] = x->sub[t].set;
    char err[1024];
    struct snapshot *s = xds_snapshot_build(&x->b->base, sets, err, sizeof err);
    if (!s) {
        log_error("xds: accepted resources do not build together: %s", err);
        return;
    }
    x->hooks.publish(x->hooks.arg, s);
}

void xds_client_expire_warming(struct xds_client *x)
{
    for (int t = 0; t < XDS_NTYPES; t++)
        if (x->sub[t].warming)
            x->sub[t].warm_deadline_ms = 1;
    maybe_publish(x, NULL);
}

/* --- responses --- */

static enum xds_type type_of(const char *url)
{
    for (int t = 0; t < XDS_NTYPES; t++)
        if (url && strcmp(url, type_urls[t]) == 0)
            return (enum xds_type)t;
    return XDS_NTYPES;
}

const char *xds_resource_name(enum xds_type t, const ProtobufCMessage *m)
{
    switch (t) {
    case XDS_CDS: return ((const Envoy__Config__Cluster__V3__Cluster *)m)->name;
    case XDS_EDS: return ((const Envoy__Config__Endpoint__V3__ClusterLoadAssignment *)m)->cluster_name;
    case XDS_LDS: return ((const Envoy__Config__Listener__V3__Listener *)m)->name;
    case XDS_RDS: return ((const Envoy__Config__Route__V3__RouteConfiguration *)m)->name;
    case XDS_SDS: return ((const Envoy__Extensions__TransportSockets__Tls__V3__Secret *)m)->name;
    default: return NULL;
    }
}

bool xds_wanted(const struct xds_sub *s, enum xds_type t, const char *name)
{
    if (t == XDS_CDS || t == XDS_LDS)
        return true;
    for (size_t i = 0; i < s->n_names; i++)
        if (strcmp(s->names[i], name) == 0)
            return true;
    return false;
}

int xds_decode_any(enum xds_type t, const Google__Protobuf__Any *any, size_t i, ProtobufCMessage **out, char *err,
                   size_t errlen)
{
    const ProtobufCMessageDescriptor *d = pbmap_find_type(type_urls[t]);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!any || !any->type_url || strcmp(any->type_url, type_urls[t]) != 0) {
        snprintf(err, errlen, "resources[%zu]: type_url '%s' in a response of type '%s'", i,
                 any && any->type_url ? any->type_url : "", type_urls[t]);
        return -1;
    }
    struct pbmap_error pe;
    *out = pbmap_unpack_any(&any->base, d, &pe);
    if (!*out) {
        snprintf(err, errlen, "resources[%zu]: does not decode as %s", i, d->name);
        return -1;
    }
    return 0;
}

int xds_set_copy_in(struct xds_set *cand, const struct xds_resource *old)
{
    struct xds_resource *res = &cand->r[cand->n++];
    size_t n = protobuf_c_message_get_packed_size(old->msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf) {
        protobuf_c_message_pack(old->msg, buf);
        res->msg = protobuf_c_message_unpack(old->msg->descriptor, NULL, n, buf);
        free(buf);
    }
    res->name = strdup(old->name);
    res->version = strdup(old->version);
    res->last_updated = old->last_updated;
    return res->msg && res->name && res->version ? 0 : -1;
}

int xds_cand_alloc(const struct xds_sub *s, size_t n, struct xds_set *cand, char *err, size_t errlen)
{
    if (n > XDS_MAX_RESOURCES) {
        snprintf(err, errlen, "%zu resources: more than %u", n, XDS_MAX_RESOURCES);
        return -1;
    }
    cand->r = calloc(n + s->set.n + 1, sizeof *cand->r);
    if (!cand->r) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Decodes the response's resources into cand (owned). For EDS, RDS and SDS, resources it does not
 * carry are kept from the current set while still asked for. Returns 0 or -1 with err. */
static int decode(struct xds_client *x, enum xds_type t, const DiscoveryResponse *r, struct xds_set *cand,
                  char *err, size_t errlen)
{
    const struct xds_sub *s = &x->sub[t];
    if (xds_cand_alloc(s, r->n_resources, cand, err, errlen) < 0)
        return -1;
    time_t now = time(NULL);
    for (size_t i = 0; i < r->n_resources; i++) {
        ProtobufCMessage *m;
        if (xds_decode_any(t, r->resources[i], i, &m, err, errlen) < 0)
            return -1;
        struct xds_resource *res = &cand->r[cand->n++];
        res->msg = m;
        const char *name = xds_resource_name(t, m);
        if (!name || !name[0]) {
            snprintf(err, errlen, "resources[%zu]: the resource has no name", i);
            return -1;
        }
        for (size_t j = 0; j + 1 < cand->n; j++) {
            if (strcmp(cand->r[j].name, name) == 0) {
                snprintf(err, errlen, "resources[%zu]: duplicate resource name '%s'", i, name);
                return -1;
            }
        }
        res->name = strdup(name);
        res->version = strdup(r->version_info ? r->version_info : "");
        res->last_updated = now;
        if (!res->name || !res->version) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (named(t)) {
        /* SotW for EDS/RDS/SDS: a resource the response does not carry is not removed. */
        for (size_t i = 0; i < s->set.n; i++) {
            const struct xds_resource *old = &s->set.r[i];
            bool replaced = false;
            for (size_t j = 0; j < r->n_resources && !replaced; j++)
                replaced = strcmp(cand->r[j].name, old->name) == 0;
            if (replaced || !xds_wanted(s, t, old->name))
                continue;
            if (xds_set_copy_in(cand, old) < 0) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        }
    }
    return 0;
}

/* After a CDS or LDS update: the EDS / RDS / SDS names it implies. */
static void follow_up(struct xds_client *x, enum xds_type t)
{
    if (t == XDS_CDS || t == XDS_LDS) {
        const char **v;
        size_t n = xds_sds_names(&x->sub[XDS_CDS].set, &x->sub[XDS_LDS].set, &v, &x->fetch_timeout_ms[XDS_SDS]);
        if (n || x->sub[XDS_SDS].subscribed)
            update_names(x, XDS_SDS, (char **)v, n);
        else
            free(v);
    }
    if (t == XDS_CDS) {
        const char **v;
        size_t n = xds_eds_names(&x->sub[XDS_CDS].set, &v);
        char **names = calloc(n + 1, sizeof *names);
        for (size_t i = 0; names && i < n; i++)
            names[i] = strdup(v[i]);
        free(v);
        if (names && (n || x->sub[XDS_EDS].subscribed))
            update_names(x, XDS_EDS, names, n);
        else
            free(names);
    } else if (t == XDS_LDS) {
        const char **v;
        size_t n = xds_rds_names(&x->sub[XDS_LDS].set, &v);
        if (n || x->sub[XDS_RDS].subscribed)
            update_names(x, XDS_RDS, (char **)v, n);
        else
            free(v);
    }
}

static bool same_msg(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t na = protobuf_c_message_get_packed_size(a), nb = protobuf_c_message_get_packed_size(b);
    if (na != nb)
        return false;
    uint8_t *ba = malloc(na ? na : 1), *bb = malloc(nb ? nb : 1);
    bool same = ba && bb;
    if (same) {
        protobuf_c_message_pack(a, ba);
        protobuf_c_message_pack(b, bb);
        same = memcmp(ba, bb, na) == 0;
    }
    free(ba);
    free(bb);
    return same;
}

/* A snapshot that does not build after an SDS response fails in the TLS context of a listener or
 * cluster: the NACK names the Secret(s) that changed first ("Secret 'default': Cluster 'x': ..."). */
static void name_secrets(const struct xds_set *cur, const struct xds_set *cand, char *err, size_t errlen)
{
    char names[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < cand->n; i++) {
        bool same = false;
        for (size_t j = 0; j < cur->n && !same; j++)
            same = strcmp(cur->r[j].name, cand->r[i].name) == 0 && same_msg(cur->r[j].msg, cand->r[i].msg);
        if (!same && used < sizeof names)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s'%s'", used ? ", " : "", cand->r[i].name);
    }
    if (!used)
        return;
    char prefix[300];
    size_t pl = (size_t)snprintf(prefix, sizeof prefix, "Secret %s: ", names);
    size_t el = strlen(err);
    if (pl >= sizeof prefix || pl + 1 > errlen)
        return;
    if (pl + el + 1 > errlen)
        el = errlen - pl - 1;
    memmove(err + pl, err, el);
    memcpy(err, prefix, pl);
    err[pl + el] = '\0';
}

/* Tries cand (owned; decoded from t's response when rc is 0) with every other current
 * resource: ACKs and takes it when the snapshot builds, else NACKs with the reason and keeps
 * the last good config. version is the response's (system_)version_info. Returns 1 (ACK) or
 * 0 (NACK). */
static int apply(struct xds_client *x, enum xds_type t, int rc, struct xds_set *cand, const char *version, char *err,
                 size_t errlen)
{
    struct xds_sub *s = &x->sub[t];
    xds_count(x, t, XS_UPDATE_ATTEMPT);
    struct snapshot *snap = NULL;
    if (rc == 0) {
        struct xds_set sets[XDS_NTYPES];
        for (int i = 0; i < XDS_NTYPES; i++)
            sets[i] = x->sub[i].set;
        sets[t] = *cand;
        snap = xds_snapshot_build(&x->b->base, sets, err, errlen);
        if (!snap)
            rc = -1;
        if (!snap && t == XDS_SDS)
            name_secrets(&s->set, cand, err, errlen);
    }
    if (rc < 0) {
        log_warn("xds: rejecting %s version '%s': %s", type_urls[t], version ? version : "", err);
        xds_count(x, t, XS_UPDATE_REJECTED);
        set_free(cand);
        request(x, t, XDS_DELTA_ACK, err);
        return 0;
    }
    set_free(&s->set);
    s->set = *cand;
    set_str(&s->version, version);
    xds_count(x, t, XS_UPDATE_SUCCESS);
    log_info("xds: %s version '%s' accepted (%zu resources)", type_urls[t], s->version, s->set.n);
    if (t == XDS_CDS || t == XDS_LDS) {
        s->warming = false;
    } else {
        bool all = true;
        for (size_t i = 0; i < s->n_names && all; i++) {
            bool have = false;
            for (size_t j = 0; j < s->set.n && !have; j++)
                have = strcmp(s->set.r[j].name, s->names[i]) == 0;
            all = have;
        }
        if (all)
            s->warming = false;
    }
    size_t held = x->sub[XDS_EDS].set.n + x->sub[XDS_RDS].set.n;
    follow_up(x, t);     /* new EDS / RDS names are asked for before the ACK, as Envoy does */
    if (held != x->sub[XDS_EDS].set.n + x->sub[XDS_RDS].set.n) {
        snapshot_unref(snap); /* Delta dropped unsubscribed resources: build again from what is held */
        snap = NULL;
    }
    request(x, t, XDS_DELTA_ACK, NULL);
    maybe_publish(x, snap);    /* the candidate is exactly the accepted resources */
    return 1;
}

int xds_client_handle_response(struct xds_client *x, const uint8_t *msg, size_t len)
{
    if (len > XDS_MAX_RESPONSE)
        return -1;
    const ProtobufCMessageDescriptor *d = x->delta ? &envoy__service__discovery__v3__delta_discovery_response__descriptor
                                                   : &envoy__service__discovery__v3__discovery_response__descriptor;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, msg);
    if (!m)
        return -1;
    const DiscoveryResponse *r = x->delta ? NULL : (const DiscoveryResponse *)m;
    const DeltaDiscoveryResponse *dr = x->delta ? (const DeltaDiscoveryResponse *)m : NULL;
    const char *url = r ? r->type_url : dr->type_url;
    enum xds_type t = type_of(url);
    if (t == XDS_NTYPES) {
        log_warn("xds: response of unsubscribed type '%s' ignored", url ? url : "");
        protobuf_c_message_free_unpacked(m, NULL);
        return -1;
    }
    set_str(&x->sub[t].nonce, r ? r->nonce : dr->nonce);
    char err[1024] = "";
    struct xds_set cand = {0};
    int rc = r ? decode(x, t, r, &cand, err, sizeof err) : xds_delta_decode(x, t, dr, &cand, err, sizeof err);
    rc = apply(x, t, rc, &cand, r ? r->version_info : dr->system_version_info, err, sizeof err);
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

/* --- the stream --- */

static void schedule_retry(struct xds_client *x)
{
    uint64_t d = XDS_BACKOFF_BASE_MS;
    for (unsigned i = 0; i < x->attempt && d < XDS_BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > XDS_BACKOFF_MAX_MS)
        d = XDS_BACKOFF_MAX_MS;
    x->rng ^= x->rng << 13, x->rng ^= x->rng >> 7, x->rng ^= x->rng << 17;
    uint64_t delay = d / 2 + x->rng % (d / 2 + 1);
    x->attempt++;
    log_info("xds: reconnecting to '%s' in %llu ms", x->cluster_name, (unsigned long long)delay);
    timer_start(x->loop, &x->retry_timer, delay);
}

static void on_call_message(struct grpc_ccall *call, void *arg, const uint8_t *msg, size_t len)
{
    (void)call;
    struct xds_client *x = arg;
    x->attempt = 0;
    if (xds_client_handle_response(x, msg, len) < 0)
        log_warn("xds: a message on the ADS stream is not a usable DiscoveryResponse");
}

static void on_call_headers(struct grpc_ccall *call, void *arg)
{
    (void)call;
    struct xds_client *x = arg;
    set_connected(x, 1);
}

static void on_call_done(struct grpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    struct xds_client *x = arg;
    if (!x->closing)
        log_warn("xds: ADS stream to '%s' ended: %s %s", x->cluster_name, grpc_status_name(status) ? grpc_status_name(status) : "?",
             message);
    x->call = NULL;
    x->stream_open = false;
    set_connected(x, 0);
    if (!x->closing)
        schedule_retry(x); /* the client object is freed from the retry timer, not here */
}

static const struct grpc_ccall_handler ads_handler = {
    .on_headers = on_call_headers, .on_message = on_call_message, .on_done = on_call_done};

/* A new stream: every subscription again, with the versions held and no nonce. */
static void send_all(struct xds_client *x)
{
    for (int t = 0; t < XDS_NTYPES; t++) {
        x->sub[t].node_sent = false;
        set_str(&x->sub[t].nonce, "");
    }
    x->sub[XDS_CDS].subscribed = true;
    if (!x->sub[XDS_CDS].version[0] && !x->sub[XDS_CDS].set.n) {
        x->sub[XDS_CDS].warming = true;
        x->sub[XDS_CDS].warm_deadline_ms =
            x->fetch_timeout_ms[XDS_CDS] ? loop_now_ms(x->loop) + x->fetch_timeout_ms[XDS_CDS] : 0;
        if (x->sub[XDS_CDS].warm_deadline_ms)
            timer_start(x->loop, &x->warm_timer, x->fetch_timeout_ms[XDS_CDS]);
    }
    for (int t = 0; t < XDS_NTYPES; t++)
        if (x->sub[t].subscribed)
            request(x, (enum xds_type)t, XDS_DELTA_INITIAL, NULL);
}

static void connect_stream(struct xds_client *x)
{
    grpc_client_free(x->gc);
    x->gc = NULL;
    struct snapshot *s = x->hooks.current(x->hooks.arg);
    int i = s ? snapshot_cluster_index(s, x->cluster_name) : -1;
    if (i < 0) {
        log_error("xds: cluster '%s' is not in the configuration", x->cluster_name);
        schedule_retry(x);
        return;
    }
    struct host_set *hs = cluster_hosts_acquire(s->clusters[i]);
    if (!hs->n) {
        host_set_release(hs);
        log_warn("xds: cluster '%s' has no hosts yet", x->cluster_name);
        schedule_retry(x);
        return;
    }
    struct grpc_client_config cfg = {.max_message = XDS_MAX_RESPONSE,
                                     .connect_timeout_ms = (uint32_t)s->clusters[i]->connect_timeout_ms};
    /* No keepalive PINGs: Envoy sends them only with the cluster's connection_keepalive, and gRPC
     * servers answer unsolicited frequent PINGs with GOAWAY too_many_pings. */
    x->gc = grpc_client_new(x->loop, (const struct sockaddr *)&hs->hosts[0].addr, hs->hosts[0].addrlen,
                            x->cluster_name, &cfg);
    host_set_release(hs);
    x->call = x->gc ? grpc_client_call(x->gc, x->delta ? ADS_PATH_DELTA : ADS_PATH_SOTW, &ads_handler, x) : NULL;
    if (!x->call) {
        schedule_retry(x);
        return;
    }
    x->stream_open = true;
    send_all(x);
}

static void on_retry(struct loop *l, struct timer *t)
{
    (void)l;
    connect_stream(t->data);
}

void xds_client_resync(struct xds_client *x)
{
    x->stream_open = true;
    send_all(x);
}

void xds_client_set_loop(struct xds_client *x, struct loop *l) { x->loop = l; }

void xds_client_start(struct xds_client *x)
{
    x->started = true;
    if (x->hooks.send)
        xds_client_resync(x);
    else
        connect_stream(x);
}

/* --- setup --- */

static int check_source(const ConfigSource *cs, const char *field, char *err, size_t errlen)
{
    if (!cs)
        return 0;
    if (cs->config_source_specifier_case != ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_ADS) {
        snprintf(err, errlen, "dynamic_resources.%s: only ads: {} is supported (ADS over ads_config)", field);
        return -1;
    }
    if (cs->resource_api_version != ENVOY__CONFIG__CORE__V3__API_VERSION__V3 &&
        cs->resource_api_version != ENVOY__CONFIG__CORE__V3__API_VERSION__AUTO) {
        snprintf(err, errlen, "dynamic_resources.%s.resource_api_version: only V3 is supported", field);
        return -1;
    }
    return 0;
}

struct xds_client *xds_client_new(struct loop *l, const ProtobufCMessage *bm, const struct xds_hooks *hooks,
                                  const char *node_id, const char *node_cluster, char *err, size_t errlen)
{
    const Bootstrap *b = (const Bootstrap *)bm;
    err[0] = '\0';
    const Envoy__Config__Bootstrap__V3__Bootstrap__DynamicResources *dr = b->dynamic_resources;
    if (!dr || (!dr->lds_config && !dr->cds_config))
        return NULL;
    const Envoy__Config__Core__V3__ApiConfigSource *ads = dr->ads_config;
    if (!ads) {
        snprintf(err, errlen, "dynamic_resources.ads_config: required (lds_config/cds_config use ads)");
        return NULL;
    }
    bool delta = ads->api_type == ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__DELTA_GRPC ||
                 ads->api_type == ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__AGGREGATED_DELTA_GRPC;
    if (!delta && ads->api_type != ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__GRPC &&
        ads->api_type != ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__AGGREGATED_GRPC) {
        snprintf(err, errlen, "dynamic_resources.ads_config.api_type: only GRPC (state of the world) and DELTA_GRPC "
                              "(incremental) are supported");
        return NULL;
    }
    if (ads->transport_api_version != ENVOY__CONFIG__CORE__V3__API_VERSION__V3) {
        snprintf(err, errlen, "dynamic_resources.ads_config.transport_api_version: must be V3");
        return NULL;
    }
    if (ads->n_grpc_services < 1 ||
        ads->grpc_services[0]->target_specifier_case !=
            ENVOY__CONFIG__CORE__V3__GRPC_SERVICE__TARGET_SPECIFIER_ENVOY_GRPC ||
        !ads->grpc_services[0]->envoy_grpc->cluster_name || !ads->grpc_services[0]->envoy_grpc->cluster_name[0]) {
        snprintf(err, errlen, "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name: required");
        return NULL;
    }
    const char *cname = ads->grpc_services[0]->envoy_grpc->cluster_name;
    bool found = false;
    for (size_t i = 0; b->static_resources && i < b->static_resources->n_clusters && !found; i++)
        found = strcmp(b->static_resources->clusters[i]->name, cname) == 0;
    if (!found) {
        snprintf(err, errlen,
                 "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name: '%s' is not a static cluster",
                 cname);
        return NULL;
    }
    if (check_source(dr->lds_config, "lds_config", err, errlen) < 0 ||
        check_source(dr->cds_config, "cds_config", err, errlen) < 0)
        return NULL;
    struct xds_client *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    x->loop = l;
    x->delta = delta;
    x->hooks = *hooks;
    size_t n = protobuf_c_message_get_packed_size(bm);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf) {
        protobuf_c_message_pack(bm, buf);
        x->b = (Bootstrap *)protobuf_c_message_unpack(bm->descriptor, NULL, n, buf);
        free(buf);
    }
    if (!x->b) {
        free(x);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!x->b->node) {
        x->b->node = malloc(sizeof *x->b->node);
        envoy__config__core__v3__node__init(x->b->node);
    }
    if (node_id) {
        if (x->b->node->id != protobuf_c_empty_string)
            free(x->b->node->id);
        x->b->node->id = strdup(node_id);
    }
    if (node_cluster) {
        if (x->b->node->cluster != protobuf_c_empty_string)
            free(x->b->node->cluster);
        x->b->node->cluster = strdup(node_cluster);
    }
    x->cluster_name = strdup(cname);
    x->fetch_timeout_ms[XDS_CDS] = x->fetch_timeout_ms[XDS_EDS] = xds_fetch_ms((const ProtobufCMessage *)dr->cds_config);
    x->fetch_timeout_ms[XDS_LDS] = x->fetch_timeout_ms[XDS_RDS] = xds_fetch_ms((const ProtobufCMessage *)dr->lds_config);
    x->fetch_timeout_ms[XDS_SDS] = XDS_DEFAULT_INITIAL_FETCH_MS; /* then the sds_configs' (follow_up) */
    for (int t = 0; t < XDS_NTYPES; t++) {
        set_str(&x->sub[t].version, "");
        set_str(&x->sub[t].nonce, "");
        x->sub[t].stats = stat_prefixes[t] ? stats_block(stat_prefixes[t], &xds_stat_schema) : NULL;
    }
    x->cp_stats = stats_block("control_plane.", &cp_stat_schema);
    timer_init(&x->retry_timer, on_retry, x);
    timer_init(&x->warm_timer, on_warm_timer, x);
    if (getrandom(&x->rng, sizeof x->rng, 0) != sizeof x->rng || !x->rng)
        x->rng = 0x9E3779B97F4A7C15ull;
    return x;
}

void xds_client_free(struct xds_client *x)
{
    if (!x)
        return;
    timer_stop(x->loop, &x->retry_timer);
    timer_stop(x->loop, &x->warm_timer);
    x->stream_open = false;
    x->closing = true;
    grpc_client_free(x->gc); /* runs on_call_done, which schedules nothing now */
    set_connected(x, 0);
    for (int t = 0; t < XDS_NTYPES; t++) {
        struct xds_sub *s = &x->sub[t];
        set_free(&s->set);
        free(s->version);
        free(s->nonce);
        for (size_t i = 0; i < s->n_names; i++)
            free(s->names[i]);
        free(s->names);
        for (size_t i = 0; i < s->n_stream_names; i++)
            free(s->stream_names[i]);
        free(s->stream_names);
    }
    protobuf_c_message_free_unpacked(&x->b->base, NULL);
    free(x->cluster_name);
    free(x);
}
