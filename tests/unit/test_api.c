/* api/: the Envoy v3 subset compiles, the type registry resolves names and type URLs, field
 * numbers match Envoy's (a wrong number silently breaks xDS with a real control plane), oneofs
 * stayed oneofs, and messages survive a pack/unpack round trip with the expected wire bytes. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "common/api_registry.h"

#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/extensions/filters/http/router/v3/router.pb-c.h"
#include "google/protobuf/any.pb-c.h"

static const ProtobufCMessageDescriptor *find(const char *name)
{
    return api_registry_find(name, strlen(name));
}

/* Field number of `field` in message `msg` (full name), or -1 when either is unknown. */
static int field_number(const char *msg, const char *field)
{
    const ProtobufCMessageDescriptor *d = find(msg);
    if (!d)
        return -1;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, field);
    return f ? (int)f->id : -1;
}

/* 1 when `field` of `msg` is a member of a oneof, 0 when not, -1 when unknown. */
static int field_in_oneof(const char *msg, const char *field)
{
    const ProtobufCMessageDescriptor *d = find(msg);
    if (!d)
        return -1;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, field);
    if (!f)
        return -1;
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? 1 : 0;
}

static void test_registry_shape(void)
{
    CHECK(api_registry_count > 100);
    CHECK(api_registry[api_registry_count] == NULL);
    for (size_t i = 0; i < api_registry_count; i++) {
        CHECK(api_registry[i] != NULL);
        CHECK(api_registry[i]->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
    }
    /* Full names are unique, so a lookup can never pick the wrong type. */
    int dups = 0;
    for (size_t i = 0; i < api_registry_count; i++)
        for (size_t j = i + 1; j < api_registry_count; j++)
            dups += strcmp(api_registry[i]->name, api_registry[j]->name) == 0;
    CHECK_EQ_INT(dups, 0);
}

static void test_registry_lookup(void)
{
    const ProtobufCMessageDescriptor *d = find("envoy.config.bootstrap.v3.Bootstrap");
    CHECK(d != NULL);
    CHECK(d == &envoy__config__bootstrap__v3__bootstrap__descriptor);

    const char *hcm =
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    d = find(hcm);
    CHECK(d != NULL);
    if (d)
        CHECK_EQ_STR(d->name, hcm);

    /* Type URLs resolve too, with or without the usual prefix. */
    d = find(API_TYPE_URL_PREFIX "envoy.extensions.filters.http.router.v3.Router");
    CHECK(d == &envoy__extensions__filters__http__router__v3__router__descriptor);
    d = find("example.com/x/envoy.config.cluster.v3.Cluster");
    CHECK(d == &envoy__config__cluster__v3__cluster__descriptor);

    /* Nested messages and well-known types are present. */
    CHECK(find("envoy.config.cluster.v3.Cluster.RingHashLbConfig") != NULL);
    CHECK(find("envoy.config.route.v3.RouteAction.HashPolicy.Header") != NULL);
    CHECK(find("google.protobuf.Duration") != NULL);
    CHECK(find("google.protobuf.Struct") != NULL);
    CHECK(find("google.rpc.Status") != NULL);
    CHECK(find("envoy.service.discovery.v3.DiscoveryRequest") != NULL);
    CHECK(find("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext") != NULL);
    CHECK(find("envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit") != NULL);
    CHECK(find("envoy.extensions.filters.http.fault.v3.HTTPFault") != NULL);
    CHECK(find("envoy.extensions.upstreams.http.v3.HttpProtocolOptions") != NULL);

    /* Prefixes, truncations and unknown names do not match. */
    CHECK(find("envoy.config.cluster.v3.Cluste") == NULL);
    CHECK(find("envoy.config.cluster.v3.ClusterX") == NULL);
    CHECK(find("no.such.Type") == NULL);
    CHECK(find(API_TYPE_URL_PREFIX) == NULL);
    CHECK(find("") == NULL);
    CHECK(api_registry_find(NULL, 3) == NULL);
    /* Length-bounded: the name need not be NUL-terminated. */
    CHECK(api_registry_find("google.protobuf.AnyXYZ", 19) == &google__protobuf__any__descriptor);
}

static void test_field_numbers(void)
{
    /* Spot checks against envoyproxy/data-plane-api. */
    CHECK_EQ_INT(field_number("envoy.config.bootstrap.v3.Bootstrap", "admin"), 12);
    CHECK_EQ_INT(field_number("envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit", "stat_prefix"), 1);
    CHECK_EQ_INT(field_number("envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit", "token_bucket"), 2);
    CHECK_EQ_INT(field_number("envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit", "runtime_enabled"), 3);
    CHECK_EQ_INT(field_number("envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit", "share_key"), 4);
    CHECK_EQ_INT(field_number("envoy.config.bootstrap.v3.Bootstrap", "static_resources"), 2);
    CHECK_EQ_INT(field_number("envoy.config.bootstrap.v3.Bootstrap", "layered_runtime"), 17);
    CHECK_EQ_INT(field_number("envoy.config.cluster.v3.Cluster", "lb_policy"), 6);
    CHECK_EQ_INT(field_number("envoy.config.cluster.v3.Cluster", "load_assignment"), 33);
    CHECK_EQ_INT(field_number("envoy.config.cluster.v3.Cluster", "round_robin_lb_config"), 56);
    CHECK_EQ_INT(field_number("envoy.config.cluster.v3.Cluster",
                              "typed_extension_protocol_options"), 36);
    CHECK_EQ_INT(field_number("envoy.config.listener.v3.Listener", "filter_chains"), 3);
    CHECK_EQ_INT(field_number("envoy.config.listener.v3.Listener", "default_filter_chain"), 25);
    CHECK_EQ_INT(field_number("envoy.config.listener.v3.FilterChainMatch",
                              "direct_source_prefix_ranges"), 13);
    CHECK_EQ_INT(field_number("envoy.config.route.v3.RouteAction", "timeout"), 8);
    CHECK_EQ_INT(field_number("envoy.config.route.v3.RouteAction", "regex_rewrite"), 32);
    CHECK_EQ_INT(field_number("envoy.config.route.v3.RouteMatch", "path_separated_prefix"), 14);
    CHECK_EQ_INT(field_number("envoy.config.route.v3.HeaderMatcher", "string_match"), 13);
    CHECK_EQ_INT(field_number("envoy.config.route.v3.RetryPolicy", "per_try_idle_timeout"), 13);
    CHECK_EQ_INT(field_number("envoy.config.accesslog.v3.OrFilter", "filters"), 2);
    CHECK_EQ_INT(field_number("envoy.config.core.v3.HeaderValueOption", "keep_empty_value"), 4);
    CHECK_EQ_INT(field_number(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "common_http_protocol_options"), 35);
    CHECK_EQ_INT(field_number("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                              "weighted_clusters"), 10);
    CHECK_EQ_INT(field_number("envoy.service.discovery.v3.DiscoveryRequest", "error_detail"), 6);
    CHECK_EQ_INT(field_number("envoy.config.cluster.v3.Cluster", "no_such_field"), -1);
}

static void test_oneofs(void)
{
    CHECK_EQ_INT(field_in_oneof("envoy.config.route.v3.Route", "route"), 1);
    CHECK_EQ_INT(field_in_oneof("envoy.config.route.v3.Route", "direct_response"), 1);
    CHECK_EQ_INT(field_in_oneof("envoy.config.route.v3.Route", "match"), 0);
    CHECK_EQ_INT(field_in_oneof("envoy.config.route.v3.RouteMatch", "prefix"), 1);
    CHECK_EQ_INT(field_in_oneof("envoy.config.route.v3.RouteMatch", "path_separated_prefix"), 1);
    CHECK_EQ_INT(field_in_oneof("envoy.type.matcher.v3.StringMatcher", "exact"), 1);
    CHECK_EQ_INT(field_in_oneof("envoy.type.matcher.v3.StringMatcher", "ignore_case"), 0);
    CHECK_EQ_INT(field_in_oneof("envoy.config.cluster.v3.Cluster", "type"), 1);
    CHECK_EQ_INT(field_in_oneof("envoy.config.cluster.v3.Cluster", "ring_hash_lb_config"), 1);
    CHECK_EQ_INT(field_in_oneof("envoy.config.listener.v3.Filter", "typed_config"), 1);
    CHECK_EQ_INT(field_in_oneof("envoy.config.accesslog.v3.AccessLog", "typed_config"), 1);
}

/* Cluster{name:"a", lb_policy:RING_HASH} must encode as field 1 (LEN) then field 6 (VARINT). */
static void test_wire_bytes(void)
{
    Envoy__Config__Cluster__V3__Cluster c = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__INIT;
    c.name = "a";
    c.lb_policy = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__RING_HASH;
    uint8_t buf[16];
    size_t n = protobuf_c_message_get_packed_size(&c.base);
    CHECK_EQ_INT(n, 5);
    if (n > sizeof buf)
        return;
    CHECK_EQ_INT(protobuf_c_message_pack(&c.base, buf), 5);
    static const uint8_t want[] = { 0x0a, 0x01, 'a', 0x30, 0x02 };
    CHECK(memcmp(buf, want, sizeof want) == 0);
}

/* A bootstrap with a cluster and an Any-wrapped Router survives pack/unpack intact. */
static void test_round_trip(void)
{
    Envoy__Extensions__Filters__Http__Router__V3__Router router =
        ENVOY__EXTENSIONS__FILTERS__HTTP__ROUTER__V3__ROUTER__INIT;
    router.suppress_envoy_headers = 1;
    uint8_t router_buf[32];
    size_t router_len = protobuf_c_message_pack(&router.base, router_buf);
    CHECK_EQ_INT(router_len, 2);

    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = API_TYPE_URL_PREFIX "envoy.extensions.filters.http.router.v3.Router";
    any.value.data = router_buf;
    any.value.len = router_len;

    Google__Protobuf__Duration timeout = GOOGLE__PROTOBUF__DURATION__INIT;
    timeout.seconds = 2;
    timeout.nanos = 500000000;

    Envoy__Config__Cluster__V3__Cluster cluster = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__INIT;
    cluster.name = "backend";
    cluster.cluster_discovery_type_case =
        ENVOY__CONFIG__CLUSTER__V3__CLUSTER__CLUSTER_DISCOVERY_TYPE_TYPE;
    cluster.type = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STRICT_DNS;
    cluster.lb_policy = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__MAGLEV;
    cluster.connect_timeout = &timeout;

    Envoy__Config__Cluster__V3__Cluster *clusters[] = { &cluster };
    Envoy__Config__Bootstrap__V3__Bootstrap__StaticResources sr =
        ENVOY__CONFIG__BOOTSTRAP__V3__BOOTSTRAP__STATIC_RESOURCES__INIT;
    sr.n_clusters = 1;
    sr.clusters = clusters;

    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    node.id = "sidecar~10.0.0.1~a.b~b.svc.cluster.local";
    node.cluster = "a.b";

    Envoy__Config__Bootstrap__V3__Bootstrap b = ENVOY__CONFIG__BOOTSTRAP__V3__BOOTSTRAP__INIT;
    b.node = &node;
    b.static_resources = &sr;

    size_t len = protobuf_c_message_get_packed_size(&b.base);
    uint8_t *buf = malloc(len ? len : 1);
    CHECK(buf != NULL);
    if (!buf)
        return;
    CHECK_EQ_INT(protobuf_c_message_pack(&b.base, buf), len);

    Envoy__Config__Bootstrap__V3__Bootstrap *out =
        envoy__config__bootstrap__v3__bootstrap__unpack(NULL, len, buf);
    CHECK(out != NULL);
    if (out) {
        CHECK(out->node != NULL);
        if (out->node)
            CHECK_EQ_STR(out->node->cluster, "a.b");
        CHECK(out->static_resources != NULL);
        if (out->static_resources && out->static_resources->n_clusters == 1) {
            Envoy__Config__Cluster__V3__Cluster *c = out->static_resources->clusters[0];
            CHECK_EQ_STR(c->name, "backend");
            CHECK_EQ_INT(c->cluster_discovery_type_case,
                         ENVOY__CONFIG__CLUSTER__V3__CLUSTER__CLUSTER_DISCOVERY_TYPE_TYPE);
            CHECK_EQ_INT(c->type, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STRICT_DNS);
            CHECK_EQ_INT(c->lb_policy, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__MAGLEV);
            CHECK(c->connect_timeout != NULL);
            if (c->connect_timeout) {
                CHECK_EQ_INT(c->connect_timeout->seconds, 2);
                CHECK_EQ_INT(c->connect_timeout->nanos, 500000000);
            }
        } else {
            CHECK(!"one static cluster expected");
        }
        envoy__config__bootstrap__v3__bootstrap__free_unpacked(out, NULL);
    }
    free(buf);

    /* The Any resolves through the registry and unpacks as the type it names. */
    const ProtobufCMessageDescriptor *d = find(any.type_url);
    CHECK(d == &envoy__extensions__filters__http__router__v3__router__descriptor);
    if (d) {
        ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, any.value.len, any.value.data);
        CHECK(m != NULL);
        if (m) {
            Envoy__Extensions__Filters__Http__Router__V3__Router *r = (void *)m;
            CHECK_EQ_INT(r->suppress_envoy_headers, 1);
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
}

/* Truncated input is rejected rather than read past its end. */
static void test_truncated_rejected(void)
{
    static const uint8_t bad[] = { 0x0a, 0x05, 'a' }; /* name claims 5 bytes, has 1 */
    Envoy__Config__Cluster__V3__Cluster *c =
        envoy__config__cluster__v3__cluster__unpack(NULL, sizeof bad, bad);
    CHECK(c == NULL);
    if (c)
        envoy__config__cluster__v3__cluster__free_unpacked(c, NULL);
}

TEST_MAIN(TEST(test_registry_shape), TEST(test_registry_lookup), TEST(test_field_numbers),
          TEST(test_oneofs), TEST(test_wire_bytes), TEST(test_round_trip),
          TEST(test_truncated_rejected))
