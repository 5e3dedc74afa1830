/* The xDS client's subscription state machine with fake responses: Envoy's order (CDS -> EDS ->
 * LDS -> RDS), warming, version/nonce in ACKs, NACKs with error_detail keeping the last good
 * config, resync on a new stream, initial_fetch_timeout; the same over Delta xDS
 * (subscribe/unsubscribe, removed_resources, initial_resource_versions, NACKs naming the
 * RouteConfiguration or ClusterLoadAssignment). Requests are captured through
 * xds_hooks.send; snapshots through xds_hooks.publish. */
#include <stdlib.h>
#include <string.h>

#include "common/pbmap.h"
#include "common/stats.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "net/tls.h"
#include "proxy/xds_client.h"
#include "test.h"

typedef Envoy__Service__Discovery__V3__DiscoveryRequest Req;

#define MAX_REQ 64
static Req *reqs[MAX_REQ];
static size_t nreq;
static struct snapshot *published;
static int npublished;

static void on_send(void *arg, const uint8_t *b, size_t n)
{
    (void)arg;
    if (nreq < MAX_REQ)
        reqs[nreq++] = (Req *)protobuf_c_message_unpack(&envoy__service__discovery__v3__discovery_request__descriptor,
                                                        NULL, n, b);
}

static void on_publish(void *arg, struct snapshot *s)
{
    (void)arg;
    if (published)
        snapshot_unref(published);
    published = s;
    npublished++;
}

static struct snapshot *on_current(void *arg)
{
    (void)arg;
    return published;
}

static void reset(void)
{
    for (size_t i = 0; i < nreq; i++)
        protobuf_c_message_free_unpacked(&reqs[i]->base, NULL);
    nreq = 0;
    if (published)
        snapshot_unref(published);
    published = NULL;
    npublished = 0;
}

static const char *BOOT =
    "node: {id: sidecar~1.2.3.4~a.ns~ns.svc.cluster.local, cluster: a.ns, metadata: {ISTIO_VERSION: '1.22'}}\n"
    "dynamic_resources:\n"
    "  ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]}\n"
    "  cds_config: {ads: {}, resource_api_version: V3}\n"
    "  lds_config: {ads: {}, resource_api_version: V3}\n"
    "static_resources:\n"
    "  clusters:\n"
    "  - name: xds-grpc\n"
    "    type: STATIC\n"
    "    load_assignment: {cluster_name: xds-grpc, endpoints: [{lb_endpoints: [{endpoint: {address: "
    "{socket_address: {address: 127.0.0.1, port_value: 15010}}}}]}]}\n";

static const char *CLUSTER_YAML =
    "name: be\ntype: EDS\nconnect_timeout: 1s\neds_cluster_config: {service_name: be-svc, eds_config: {ads: {}}}\n";
static const char *CLA_YAML =
    "cluster_name: be-svc\nendpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.2, "
    "port_value: 8080}}}}]}]\n";
static const char *LISTENER_YAML =
    "name: l1\naddress: {socket_address: {address: 127.0.0.1, port_value: 18080}}\n"
    "filter_chains:\n- filters:\n  - name: envoy.filters.network.http_connection_manager\n    typed_config:\n"
    "      '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n"
    "      stat_prefix: l1\n      rds: {route_config_name: r1, config_source: {ads: {}}}\n"
    "      http_filters: [{name: envoy.filters.http.router, typed_config: {'@type': "
    "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]\n";
static const char *ROUTE_YAML =
    "name: r1\nvirtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: be}}]}]\n";
static const char *SDS_CLUSTER_YAML =
    "name: mtls\ntype: STATIC\nconnect_timeout: 1s\n"
    "load_assignment: {cluster_name: mtls, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: "
    "{address: 127.0.0.3, port_value: 8443}}}}]}]}\n"
    "transport_socket:\n  name: envoy.transport_sockets.tls\n  typed_config:\n"
    "    '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n"
    "    common_tls_context:\n"
    "      tls_certificate_sds_secret_configs: [{name: default, sds_config: {ads: {}, resource_api_version: V3}}]\n"
    "      combined_validation_context:\n        default_validation_context: {}\n"
    "        validation_context_sds_secret_config: {name: ROOTCA, sds_config: {ads: {}, resource_api_version: V3}}\n";
static const char *BAD_ROUTE_YAML =
    "name: r1\nvirtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: nope}}]}]\n";

/* A serialized DiscoveryResponse carrying one resource given in YAML (or none when yaml is NULL). */
static uint8_t *response(enum xds_type t, const char *yaml, const char *version, const char *nonce, size_t *len)
{
    Envoy__Service__Discovery__V3__DiscoveryResponse r = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT, *anys[1] = {&any};
    ProtobufCMessage *m = NULL;
    if (yaml) {
        struct pbmap_error pe;
        m = pbmap_from_yaml(pbmap_find_type(xds_type_url(t)), yaml, strlen(yaml), "test.yaml", &pe);
        if (!m) {
            fprintf(stderr, "%s\n", pe.msg);
            abort();
        }
        pbmap_pack_any(m, &any.base);
        r.resources = anys;
        r.n_resources = 1;
    }
    r.version_info = (char *)version;
    r.nonce = (char *)nonce;
    r.type_url = (char *)xds_type_url(t);
    *len = protobuf_c_message_get_packed_size(&r.base);
    uint8_t *b = malloc(*len + 1);
    protobuf_c_message_pack(&r.base, b);
    if (m) {
        protobuf_c_message_free_unpacked(m, NULL);
        free(any.type_url);
        free(any.value.data);
    }
    return b;
}

static int feed(struct xds_client *x, enum xds_type t, const char *yaml, const char *version, const char *nonce)
{
    size_t n;
    uint8_t *b = response(t, yaml, version, nonce, &n);
    int r = xds_client_handle_response(x, b, n);
    free(b);
    return r;
}

static struct loop *loop;
static ProtobufCMessage *boot;

static struct xds_client *client(void)
{
    reset();
    struct xds_hooks h = {.publish = on_publish, .current = on_current, .send = on_send};
    char err[256];
    struct xds_client *x = xds_client_new(loop, boot, &h, NULL, NULL, err, sizeof err);
    CHECK(x != NULL);
    xds_client_start(x);
    return x;
}

static const Req *last(void) { return nreq ? reqs[nreq - 1] : NULL; }

static void test_order_and_warming(void)
{
    struct xds_client *x = client();
    CHECK_EQ_INT(nreq, 1);
    CHECK_EQ_STR(reqs[0]->type_url, xds_type_url(XDS_CDS));
    CHECK(reqs[0]->node && strcmp(reqs[0]->node->id, "sidecar~1.2.3.4~a.ns~ns.svc.cluster.local") == 0);
    CHECK_EQ_INT(reqs[0]->n_resource_names, 0);
    CHECK_EQ_STR(reqs[0]->version_info, "");

    CHECK_EQ_INT(feed(x, XDS_CDS, CLUSTER_YAML, "c1", "n1"), 1);
    /* EDS for the service_name, then the CDS ACK; nothing published while EDS warms; no LDS yet. */
    CHECK_EQ_INT(nreq, 3);
    CHECK_EQ_STR(reqs[1]->type_url, xds_type_url(XDS_EDS));
    CHECK(reqs[1]->n_resource_names == 1 && strcmp(reqs[1]->resource_names[0], "be-svc") == 0);
    CHECK(reqs[1]->node != NULL);
    CHECK_EQ_STR(reqs[2]->type_url, xds_type_url(XDS_CDS));
    CHECK_EQ_STR(reqs[2]->version_info, "c1");
    CHECK_EQ_STR(reqs[2]->response_nonce, "n1");
    CHECK(reqs[2]->node == NULL && reqs[2]->error_detail == NULL);
    CHECK_EQ_INT(npublished, 0);

    CHECK_EQ_INT(feed(x, XDS_EDS, CLA_YAML, "e1", "n2"), 1);
    CHECK_EQ_INT(npublished, 1);
    CHECK(published && snapshot_cluster_index(published, "be") >= 0);
    int ci = snapshot_cluster_index(published, "be");
    struct host_set *hs = cluster_hosts_acquire(published->clusters[ci]);
    CHECK_EQ_INT(hs->n, 1);
    CHECK_EQ_STR(hs->hosts[0].addr_str, "127.0.0.2:8080");
    host_set_release(hs);
    /* EDS ACK, then LDS (wildcard) once the clusters are warm. */
    CHECK_EQ_STR(last()->type_url, xds_type_url(XDS_LDS));
    CHECK_EQ_STR(reqs[nreq - 2]->version_info, "e1");

    CHECK_EQ_INT(feed(x, XDS_LDS, LISTENER_YAML, "l1", "n3"), 1);
    CHECK_EQ_STR(reqs[nreq - 2]->type_url, xds_type_url(XDS_RDS));
    CHECK(reqs[nreq - 2]->n_resource_names == 1 && strcmp(reqs[nreq - 2]->resource_names[0], "r1") == 0);
    CHECK_EQ_STR(last()->version_info, "l1");
    CHECK_EQ_INT(npublished, 1); /* the listener waits for its routes */

    CHECK_EQ_INT(feed(x, XDS_RDS, ROUTE_YAML, "r1", "n4"), 1);
    CHECK_EQ_INT(npublished, 2);
    CHECK(published && published->n_listeners == 1 && strcmp(published->listeners[0]->name, "l1") == 0);
    CHECK_EQ_STR(last()->version_info, "r1");
    CHECK_EQ_STR(last()->response_nonce, "n4");
    xds_client_free(x);
}

static void sync_all(struct xds_client *x)
{
    feed(x, XDS_CDS, CLUSTER_YAML, "c1", "n1");
    feed(x, XDS_EDS, CLA_YAML, "e1", "n2");
    feed(x, XDS_LDS, LISTENER_YAML, "l1", "n3");
    feed(x, XDS_RDS, ROUTE_YAML, "r1", "n4");
}

static void test_nack_keeps_last_good(void)
{
    struct xds_client *x = client();
    sync_all(x);
    int before = npublished;
    CHECK_EQ_INT(feed(x, XDS_RDS, BAD_ROUTE_YAML, "r2", "n5"), 0);
    const Req *q = last();
    CHECK_EQ_STR(q->type_url, xds_type_url(XDS_RDS));
    CHECK_EQ_STR(q->version_info, "r1");       /* the last accepted version */
    CHECK_EQ_STR(q->response_nonce, "n5");     /* the rejected response's nonce */
    CHECK(q->error_detail && q->error_detail->code == 3 && strstr(q->error_detail->message, "nope"));
    CHECK_EQ_INT(npublished, before);
    CHECK_EQ_STR(xds_client_version(x, XDS_RDS), "r1");
    /* A resource of the wrong type in a CDS response: NACK too. */
    size_t n;
    uint8_t *b = response(XDS_RDS, ROUTE_YAML, "c2", "n6", &n);
    Envoy__Service__Discovery__V3__DiscoveryResponse *r = envoy__service__discovery__v3__discovery_response__unpack(NULL, n, b);
    char *orig_url = r->type_url;
    r->type_url = (char *)xds_type_url(XDS_CDS);
    size_t n2 = protobuf_c_message_get_packed_size(&r->base);
    uint8_t *b2 = malloc(n2);
    protobuf_c_message_pack(&r->base, b2);
    r->type_url = orig_url;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    CHECK_EQ_INT(xds_client_handle_response(x, b2, n2), 0);
    CHECK(last()->error_detail && strstr(last()->error_detail->message, "type_url"));
    CHECK_EQ_STR(last()->version_info, "c1");
    free(b);
    free(b2);
    /* Not a DiscoveryResponse at all: ignored, nothing sent. */
    size_t k = nreq;
    CHECK_EQ_INT(xds_client_handle_response(x, (const uint8_t *)"\xff\xff\xff", 3), -1);
    CHECK_EQ_INT(nreq, k);
    xds_client_free(x);
}

static void test_resync(void)
{
    struct xds_client *x = client();
    sync_all(x);
    size_t k = nreq;
    xds_client_resync(x);
    CHECK_EQ_INT(nreq, k + 4);
    const char *types[] = {xds_type_url(XDS_CDS), xds_type_url(XDS_EDS), xds_type_url(XDS_LDS), xds_type_url(XDS_RDS)};
    const char *versions[] = {"c1", "e1", "l1", "r1"};
    for (int i = 0; i < 4 && k + (size_t)i < nreq; i++) {
        CHECK_EQ_STR(reqs[k + i]->type_url, types[i]);
        CHECK_EQ_STR(reqs[k + i]->version_info, versions[i]);
        CHECK_EQ_STR(reqs[k + i]->response_nonce, "");
        CHECK(reqs[k + i]->node != NULL);
    }
    xds_client_free(x);
}

static void test_initial_fetch_timeout(void)
{
    struct xds_client *x = client();
    feed(x, XDS_CDS, CLUSTER_YAML, "c1", "n1");
    CHECK_EQ_INT(npublished, 0);
    xds_client_expire_warming(x);
    CHECK_EQ_INT(npublished, 1);
    int ci = published ? snapshot_cluster_index(published, "be") : -1;
    CHECK(ci >= 0);
    if (ci >= 0) {
        struct host_set *hs = cluster_hosts_acquire(published->clusters[ci]);
        CHECK_EQ_INT(hs->n, 0); /* no ClusterLoadAssignment came: no hosts */
        host_set_release(hs);
    }
    CHECK_EQ_STR(last()->type_url, xds_type_url(XDS_LDS));
    /* A listener whose routes never come is left out after the timeout. */
    feed(x, XDS_LDS, LISTENER_YAML, "l1", "n2");
    xds_client_expire_warming(x);
    CHECK(published && published->n_listeners == 0);
    xds_client_free(x);
}

/* A cluster whose TLS context names SDS secrets is accepted and warms: the secrets are asked for
 * by name, LDS waits; after initial_fetch_timeout it goes live with a TLS context that has no
 * SSL_CTX (connections fail) rather than being NACKed. */
static void test_sds_warming(void)
{
    struct xds_client *x = client();
    CHECK_EQ_INT(feed(x, XDS_CDS, SDS_CLUSTER_YAML, "c1", "n1"), 1);
    const Req *sds = NULL;
    for (size_t i = 0; i < nreq; i++)
        if (strcmp(reqs[i]->type_url, xds_type_url(XDS_SDS)) == 0)
            sds = reqs[i];
    CHECK(sds && sds->n_resource_names == 2 && strcmp(sds->resource_names[0], "default") == 0 &&
          strcmp(sds->resource_names[1], "ROOTCA") == 0);
    CHECK_EQ_INT(npublished, 0);
    CHECK(strcmp(last()->type_url, xds_type_url(XDS_LDS)) != 0);
    CHECK_EQ_INT(feed(x, XDS_SDS, NULL, "", "n2"), 1); /* an answer without them: still warming */
    CHECK_EQ_INT(npublished, 0);
    xds_client_expire_warming(x);
    CHECK_EQ_INT(npublished, 1);
    int ci = published ? snapshot_cluster_index(published, "mtls") : -1;
    CHECK(ci >= 0 && published->clusters[ci]->tls && tls_provider_ctx(published->clusters[ci]->tls) == NULL);
    CHECK_EQ_STR(last()->type_url, xds_type_url(XDS_LDS));
    xds_client_free(x);
}

static void test_bad_bootstraps(void)
{
    const char *bad[] = {"api_type: GRPC", "api_type: REST", "cluster_name: xds-grpc}", "cluster_name: nope}",
                         "transport_api_version: V3", "transport_api_version: V2"};
    for (int i = 0; i < 6; i += 2) {
        char y[2048];
        const char *p = strstr(BOOT, bad[i]);
        snprintf(y, sizeof y, "%.*s%s%s", (int)(p - BOOT), BOOT, bad[i + 1], p + strlen(bad[i]));
        struct pbmap_error pe;
        ProtobufCMessage *b = pbmap_from_yaml(&envoy__config__bootstrap__v3__bootstrap__descriptor, y, strlen(y), "b.yaml", &pe);
        CHECK(b != NULL);
        if (!b)
            continue;
        struct xds_hooks h = {.publish = on_publish, .current = on_current, .send = on_send};
        char err[256];
        struct xds_client *x = xds_client_new(loop, b, &h, NULL, NULL, err, sizeof err);
        CHECK(x == NULL && err[0] && strstr(err, "dynamic_resources.ads_config"));
        xds_client_free(x);
        protobuf_c_message_free_unpacked(b, NULL);
    }
}

static void setup(void)
{
    stats_init(1);
    loop = loop_new(NULL, NULL);
    struct pbmap_error pe;
    boot = pbmap_from_yaml(&envoy__config__bootstrap__v3__bootstrap__descriptor, BOOT, strlen(BOOT), "b.yaml", &pe);
    if (!boot) {
        fprintf(stderr, "%s\n", pe.msg);
        abort();
    }
}

static void teardown(void)
{
    reset();
    protobuf_c_message_free_unpacked(boot, NULL);
    loop_free(loop);
    host_sets_reap(0, true);
    stats_shutdown();
}

/* --- Delta --- */

typedef Envoy__Service__Discovery__V3__DeltaDiscoveryRequest DReq;
static DReq *dreqs[MAX_REQ];
static size_t ndreq;

static void on_send_delta(void *arg, const uint8_t *b, size_t n)
{
    (void)arg;
    if (ndreq < MAX_REQ)
        dreqs[ndreq++] = envoy__service__discovery__v3__delta_discovery_request__unpack(NULL, n, b);
}

static void dreset(void)
{
    for (size_t i = 0; i < ndreq; i++)
        envoy__service__discovery__v3__delta_discovery_request__free_unpacked(dreqs[i], NULL);
    ndreq = 0;
}

static const DReq *dlast(size_t back) { return ndreq > back ? dreqs[ndreq - 1 - back] : NULL; }

/* Feeds a DeltaDiscoveryResponse carrying the resource in yaml (none when NULL) as `name` at
 * `version`, and removing `removed` (when not NULL). */
static int dfeed(struct xds_client *x, enum xds_type t, const char *yaml, const char *name, const char *version,
                 const char *nonce, const char *removed)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse r = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_RESPONSE__INIT;
    Envoy__Service__Discovery__V3__Resource res = ENVOY__SERVICE__DISCOVERY__V3__RESOURCE__INIT, *rs[1] = {&res};
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    ProtobufCMessage *m = NULL;
    if (yaml) {
        struct pbmap_error pe;
        m = pbmap_from_yaml(pbmap_find_type(xds_type_url(t)), yaml, strlen(yaml), "test.yaml", &pe);
        CHECK(m != NULL);
        pbmap_pack_any(m, &any.base);
        res.name = (char *)name;
        res.version = (char *)version;
        res.resource = &any;
        r.resources = rs;
        r.n_resources = 1;
    }
    char *rm[1] = {(char *)removed};
    if (removed) {
        r.removed_resources = rm;
        r.n_removed_resources = 1;
    }
    r.system_version_info = (char *)"sys";
    r.nonce = (char *)nonce;
    r.type_url = (char *)xds_type_url(t);
    size_t n = protobuf_c_message_get_packed_size(&r.base);
    uint8_t *b = malloc(n + 1);
    protobuf_c_message_pack(&r.base, b);
    int rc = xds_client_handle_response(x, b, n);
    free(b);
    if (m) {
        protobuf_c_message_free_unpacked(m, NULL);
        free(any.type_url);
        free(any.value.data);
    }
    return rc;
}

static bool only_name(char **v, size_t n, const char *name) { return n == 1 && strcmp(v[0], name) == 0; }

static const char *CLUSTER2_YAML =
    "name: be2\ntype: EDS\nconnect_timeout: 1s\neds_cluster_config: {service_name: be2-svc, eds_config: {ads: {}}}\n";
static const char *CLA2_YAML =
    "cluster_name: be2-svc\nendpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.3, "
    "port_value: 8080}}}}]}]\n";
static const char *BAD_CLA_YAML =
    "cluster_name: be-svc\nendpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 300.1.1.1, "
    "port_value: 8080}}}}]}]\n";

static void test_delta(void)
{
    reset();
    dreset();
    char y[2048];
    const char *p = strstr(BOOT, "api_type: GRPC");
    snprintf(y, sizeof y, "%.*sapi_type: DELTA_GRPC%s", (int)(p - BOOT), BOOT, p + strlen("api_type: GRPC"));
    struct pbmap_error pe;
    ProtobufCMessage *b = pbmap_from_yaml(&envoy__config__bootstrap__v3__bootstrap__descriptor, y, strlen(y), "b.yaml", &pe);
    struct xds_hooks h = {.publish = on_publish, .current = on_current, .send = on_send_delta};
    char err[256];
    struct xds_client *x = xds_client_new(loop, b, &h, NULL, NULL, err, sizeof err);
    CHECK(x != NULL);
    xds_client_start(x);
    /* CDS wildcard: no names, the node, no nonce */
    CHECK(ndreq == 1 && strcmp(dreqs[0]->type_url, xds_type_url(XDS_CDS)) == 0 && dreqs[0]->node &&
          dreqs[0]->n_resource_names_subscribe == 0 && dreqs[0]->n_initial_resource_versions == 0);
    CHECK_EQ_INT(dfeed(x, XDS_CDS, CLUSTER_YAML, "be", "vc1", "n1", NULL), 1);
    CHECK(only_name(dlast(1)->resource_names_subscribe, dlast(1)->n_resource_names_subscribe, "be-svc"));
    CHECK(dlast(0)->response_nonce && strcmp(dlast(0)->response_nonce, "n1") == 0 && !dlast(0)->error_detail);
    CHECK_EQ_INT(dfeed(x, XDS_EDS, CLA_YAML, "be-svc", "ve1", "n2", NULL), 1);
    CHECK_EQ_INT(npublished, 1);
    CHECK_EQ_STR(dlast(0)->type_url, xds_type_url(XDS_LDS));
    CHECK_EQ_INT(dfeed(x, XDS_LDS, LISTENER_YAML, "l1", "vl1", "n3", NULL), 1);
    CHECK(only_name(dlast(1)->resource_names_subscribe, dlast(1)->n_resource_names_subscribe, "r1"));
    /* a bad RouteConfiguration: NACKed, named as the RDS resource */
    CHECK_EQ_INT(dfeed(x, XDS_RDS, BAD_ROUTE_YAML, "r1", "vr0", "n4", NULL), 0);
    CHECK(dlast(0)->error_detail && dlast(0)->error_detail->code == 3 && strcmp(dlast(0)->response_nonce, "n4") == 0);
    CHECK_EQ_STR(dlast(0)->error_detail->message,
                 "RouteConfiguration 'r1': virtual_hosts[0].routes[0].route.cluster: unknown cluster 'nope'");
    CHECK_EQ_INT(dfeed(x, XDS_RDS, ROUTE_YAML, "r1", "vr1", "n5", NULL), 1);
    CHECK(published && published->n_listeners == 1);
    CHECK_EQ_STR(xds_client_version(x, XDS_RDS), "sys");
    /* a bad ClusterLoadAssignment: named as the EDS resource */
    CHECK_EQ_INT(dfeed(x, XDS_EDS, BAD_CLA_YAML, "be-svc", "ve0", "n6", NULL), 0);
    CHECK(dlast(0)->error_detail && strncmp(dlast(0)->error_detail->message,
                                            "ClusterLoadAssignment 'be-svc': endpoints[0].lb_endpoints[0]", 59) == 0);
    /* a cluster added: only its EDS name is subscribed; removed: unsubscribed, its CLA dropped */
    CHECK_EQ_INT(dfeed(x, XDS_CDS, CLUSTER2_YAML, "be2", "vc2", "n7", NULL), 1);
    CHECK(only_name(dlast(1)->resource_names_subscribe, dlast(1)->n_resource_names_subscribe, "be2-svc") &&
          dlast(1)->n_resource_names_unsubscribe == 0);
    CHECK_EQ_INT(xds_client_resources(x, XDS_CDS)->n, 2);
    CHECK_EQ_INT(dfeed(x, XDS_EDS, CLA2_YAML, "be2-svc", "ve2", "n8", NULL), 1);
    CHECK(published && snapshot_cluster_index(published, "be2") >= 0);
    CHECK_EQ_INT(dfeed(x, XDS_CDS, NULL, NULL, NULL, "n9", "be2"), 1);
    CHECK(only_name(dlast(1)->resource_names_unsubscribe, dlast(1)->n_resource_names_unsubscribe, "be2-svc") &&
          dlast(1)->n_resource_names_subscribe == 0);
    CHECK(xds_client_resources(x, XDS_CDS)->n == 1 && xds_client_resources(x, XDS_EDS)->n == 1);
    CHECK(published && snapshot_cluster_index(published, "be2") < 0 && snapshot_cluster_index(published, "be") >= 0);
    /* a new stream: every type with the names and the versions held */
    size_t before = ndreq;
    xds_client_resync(x);
    CHECK_EQ_INT(ndreq - before, 4);
    for (size_t i = before; i < ndreq; i++) {
        const DReq *q = dreqs[i];
        CHECK(q->node != NULL && q->n_initial_resource_versions == 1 && !q->response_nonce[0]);
        const char *want = strcmp(q->type_url, xds_type_url(XDS_CDS)) == 0   ? "vc1"
                           : strcmp(q->type_url, xds_type_url(XDS_EDS)) == 0 ? "ve1"
                           : strcmp(q->type_url, xds_type_url(XDS_LDS)) == 0 ? "vl1"
                                                                             : "vr1";
        CHECK_EQ_STR(q->initial_resource_versions[0]->value, want);
        bool named = strcmp(q->type_url, xds_type_url(XDS_EDS)) == 0 || strcmp(q->type_url, xds_type_url(XDS_RDS)) == 0;
        CHECK_EQ_INT(q->n_resource_names_subscribe, named ? 1 : 0);
    }
    xds_client_free(x);
    protobuf_c_message_free_unpacked(b, NULL);
    dreset();
}

TEST_MAIN(TEST(setup), TEST(test_order_and_warming), TEST(test_nack_keeps_last_good), TEST(test_resync),
          TEST(test_initial_fetch_timeout), TEST(test_sds_warming), TEST(test_bad_bootstraps), TEST(test_delta),
          TEST(teardown))
