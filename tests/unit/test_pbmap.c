#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "common/pbmap.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "test.h"

#define BOOTSTRAP_D (&envoy__config__bootstrap__v3__bootstrap__descriptor)
typedef Envoy__Config__Bootstrap__V3__Bootstrap Bootstrap;
typedef Envoy__Config__Cluster__V3__Cluster Cluster;
typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager Hcm;

/* Envoy's front-proxy example, with the habits real configs have: anchors held under an
 * !ignore key, a merge, camelCase names, JSON-style flow maps, Struct metadata. */
static const char front_proxy[] =
    "!ignore defaults: &cluster_defaults\n"
    "  type: STRICT_DNS\n"
    "  connect_timeout: 0.25s\n"
    "node:\n"
    "  id: front-proxy\n"
    "  cluster: front\n"
    "  metadata: {region: eu-west, replicas: 3, canary: true, ratio: 0.5, tags: [a, b], none: ~}\n"
    "admin:\n"
    "  address:\n"
    "    socket_address: {address: 0.0.0.0, port_value: 8001}\n"
    "static_resources:\n"
    "  listeners:\n"
    "  - name: listener_0\n"
    "    address:\n"
    "      socket_address: {address: 0.0.0.0, port_value: 8080}\n"
    "    filter_chains:\n"
    "    - filters:\n"
    "      - name: envoy.filters.network.http_connection_manager\n"
    "        typed_config:\n"
    "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n"
    "          codec_type: AUTO\n"
    "          stat_prefix: ingress_http\n"
    "          stream_idle_timeout: 300s\n"
    "          use_remote_address: true\n"
    "          access_log:\n"
    "          - name: envoy.access_loggers.file\n"
    "            typed_config:\n"
    "              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n"
    "              path: /dev/stdout\n"
    "          route_config:\n"
    "            name: local_route\n"
    "            virtual_hosts:\n"
    "            - name: backend\n"
    "              domains: [\"*\"]\n"
    "              routes:\n"
    "              - match: {prefix: \"/service/1\"}\n"
    "                route: {cluster: service1, timeout: 1.5s}\n"
    "              - match: {path: \"/healthz\"}\n"
    "                direct_response: {status: 200, body: {inline_string: ok}}\n"
    "              - match: {prefix: \"/\"}\n"
    "                route:\n"
    "                  cluster: service2\n"
    "                  retry_policy: {retry_on: 5xx, num_retries: 3, per_try_timeout: 0.000000001s}\n"
    "          http_filters:\n"
    "          - name: envoy.filters.http.router\n"
    "            typed_config:\n"
    "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n"
    "  clusters:\n"
    "  - name: service1\n"
    "    <<: *cluster_defaults\n"
    "    lb_policy: ROUND_ROBIN\n"
    "    load_assignment:\n"
    "      cluster_name: service1\n"
    "      endpoints:\n"
    "      - lb_endpoints:\n"
    "        - endpoint:\n"
    "            address:\n"
    "              socket_address: {address: service1, port_value: 8000}\n"
    "  - name: service2\n"
    "    <<: *cluster_defaults\n"
    "    lbPolicy: LEAST_REQUEST\n"
    "    connect_timeout: 1s\n"
    "    perConnectionBufferLimitBytes: 32768\n"
    "    loadAssignment:\n"
    "      clusterName: service2\n"
    "      endpoints:\n"
    "      - lbEndpoints:\n"
    "        - endpoint: {address: {socketAddress: {address: service2, portValue: 8000}}}\n"
    "          load_balancing_weight: 7\n";

static struct pbmap_error err;

static ProtobufCMessage *load(const ProtobufCMessageDescriptor *d, const char *text)
{
    err.msg[0] = '\0';
    ProtobufCMessage *m = pbmap_from_yaml(d, text, strlen(text), "b.yaml", &err);
    if (!m)
        fprintf(stderr, "  (error: %s)\n", err.msg);
    return m;
}

/* Expects text to fail with exactly `want`. */
static void expect_error(const ProtobufCMessageDescriptor *d, const char *text, const char *want)
{
    err.msg[0] = '\0';
    ProtobufCMessage *m = pbmap_from_yaml(d, text, strlen(text), "b.yaml", &err);
    CHECK(m == NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    CHECK_EQ_STR(err.msg, want);
}

static int same_bytes(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t na = protobuf_c_message_get_packed_size(a), nb = protobuf_c_message_get_packed_size(b);
    if (na != nb)
        return 0;
    uint8_t *pa = malloc(na + 1), *pb = malloc(nb + 1);
    protobuf_c_message_pack(a, pa);
    protobuf_c_message_pack(b, pb);
    int same = memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* YAML -> message -> JSON text -> message: the two messages pack to the same bytes. */
static void check_round_trip(const ProtobufCMessage *m, int indent)
{
    char *json = pbmap_to_json_string(m, indent);
    CHECK(json != NULL);
    if (!json)
        return;
    ProtobufCMessage *back = pbmap_from_yaml(m->descriptor, json, strlen(json), "dump.json", &err);
    CHECK(back != NULL);
    if (!back)
        fprintf(stderr, "  (round trip: %s)\n%s\n", err.msg, json);
    else
        CHECK(same_bytes(m, back));
    protobuf_c_message_free_unpacked(back, NULL);
    free(json);
}

static void front_proxy_bootstrap(void)
{
    Bootstrap *b = (Bootstrap *)load(BOOTSTRAP_D, front_proxy);
    CHECK(b != NULL);
    if (!b)
        return;
    CHECK_EQ_STR(b->node->id, "front-proxy");
    CHECK_EQ_INT(b->node->metadata->n_fields, 6);
    CHECK_EQ_INT(b->admin->address->socket_address->port_value, 8001);
    CHECK_EQ_INT(b->static_resources->n_listeners, 1);
    CHECK_EQ_INT(b->static_resources->n_clusters, 2);

    Cluster *c1 = b->static_resources->clusters[0], *c2 = b->static_resources->clusters[1];
    CHECK_EQ_STR(c1->name, "service1");
    CHECK_EQ_INT(c1->cluster_discovery_type_case, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__CLUSTER_DISCOVERY_TYPE_TYPE);
    CHECK_EQ_INT(c1->type, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STRICT_DNS);
    CHECK_EQ_INT(c1->connect_timeout->seconds, 0);
    CHECK_EQ_INT(c1->connect_timeout->nanos, 250000000);
    CHECK_EQ_INT(c2->lb_policy, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__LEAST_REQUEST);
    CHECK_EQ_INT(c2->connect_timeout->seconds, 1); /* own key beats the merged one */
    CHECK_EQ_INT(c2->per_connection_buffer_limit_bytes->value, 32768);
    CHECK_EQ_STR(c2->load_assignment->cluster_name, "service2");
    CHECK_EQ_INT(c2->load_assignment->endpoints[0]->lb_endpoints[0]->load_balancing_weight->value, 7);
    CHECK_EQ_INT(c2->load_assignment->endpoints[0]->lb_endpoints[0]->endpoint->address
                     ->socket_address->port_value, 8000);

    /* the HCM is packed in an Any: unpack it and look inside */
    Envoy__Config__Listener__V3__Listener *l = b->static_resources->listeners[0];
    Envoy__Config__Listener__V3__Filter *f = l->filter_chains[0]->filters[0];
    CHECK_EQ_STR(f->typed_config->type_url,
                 "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
    Hcm *h = (Hcm *)pbmap_unpack_any(&f->typed_config->base,
        &envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__descriptor,
        &err);
    CHECK(h != NULL);
    if (h) {
        CHECK_EQ_STR(h->stat_prefix, "ingress_http");
        CHECK_EQ_INT(h->stream_idle_timeout->seconds, 300);
        CHECK(h->use_remote_address && h->use_remote_address->value);
        CHECK_EQ_INT(h->n_http_filters, 1);
        Envoy__Config__Route__V3__RouteConfiguration *rc = h->route_config;
        CHECK(rc && rc->n_virtual_hosts == 1 && rc->virtual_hosts[0]->n_routes == 3);
        Envoy__Config__Route__V3__Route *r0 = rc->virtual_hosts[0]->routes[0];
        CHECK_EQ_STR(r0->match->prefix, "/service/1");
        CHECK_EQ_STR(r0->route->cluster, "service1");
        CHECK_EQ_INT(r0->route->timeout->nanos, 500000000);
        Envoy__Config__Route__V3__Route *r1 = rc->virtual_hosts[0]->routes[1];
        CHECK_EQ_INT(r1->action_case, ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_DIRECT_RESPONSE);
        CHECK_EQ_INT(r1->direct_response->status, 200);
        CHECK_EQ_INT(rc->virtual_hosts[0]->routes[2]->route->retry_policy->per_try_timeout->nanos, 1);
        protobuf_c_message_free_unpacked(&h->base, NULL);
    }
    /* a wrong expected type is refused */
    CHECK(pbmap_unpack_any(&f->typed_config->base, BOOTSTRAP_D, &err) == NULL);
    CHECK(strstr(err.msg, "expected type envoy.config.bootstrap.v3.Bootstrap, got") != NULL);

    char *json = pbmap_to_json_string(&b->base, 0);
    CHECK(json != NULL);
    if (json) {
        CHECK(strstr(json, "\"connectTimeout\":\"0.250s\"") != NULL);
        CHECK(strstr(json, "\"lbPolicy\":\"LEAST_REQUEST\"") != NULL);
        CHECK(strstr(json, "\"type\":\"STRICT_DNS\"") != NULL);
        CHECK(strstr(json, "\"typedConfig\":{\"@type\":\"type.googleapis.com/envoy.extensions."
                           "filters.network.http_connection_manager.v3.HttpConnectionManager\","
                           "\"statPrefix\":\"ingress_http\"") != NULL);
        CHECK(strstr(json, "\"useRemoteAddress\":true") != NULL);
        CHECK(strstr(json, "\"perTryTimeout\":\"0.000000001s\"") != NULL);
        CHECK(strstr(json, "\"metadata\":{\"region\":\"eu-west\",\"replicas\":3,\"canary\":true,"
                           "\"ratio\":0.5,\"tags\":[\"a\",\"b\"],\"none\":null}") != NULL);
        CHECK(strstr(json, "\"portValue\":8001") != NULL);
        CHECK(strstr(json, "lb_policy") == NULL);
        free(json);
    }
    check_round_trip(&b->base, 0);
    check_round_trip(&b->base, 2);
    protobuf_c_message_free_unpacked(&b->base, NULL);
}

static void sample_bootstrap_file(void)
{
    FILE *f = fopen("samples/demo/bootstrap.yaml", "rb");
    if (!f)
        return; /* the sample is optional */
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ProtobufCMessage *m = pbmap_from_yaml(BOOTSTRAP_D, buf, n, "bootstrap.yaml", &err);
    CHECK(m != NULL);
    if (!m) {
        fprintf(stderr, "  (%s)\n", err.msg);
        return;
    }
    check_round_trip(m, 2);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void error_messages(void)
{
    expect_error(BOOTSTRAP_D,
                 "admin:\n"
                 "  address:\n"
                 "    socket_address:\n"
                 "      address: 127.0.0.1\n"
                 "      port_value: 9901\n"
                 "static_resources:\n"
                 "  listeners: []\n"
                 "  clusters:\n"
                 "  - name: a\n"
                 "    connect_timeout: 1s\n"
                 "    type: STATIC\n"
                 "    load_assignment:\n"
                 "      cluster_name: a\n"
                 "    lb_polcy: ROUND_ROBIN\n",
                 "b.yaml:14: static_resources.clusters[0].lb_polcy: unknown field");
    expect_error(BOOTSTRAP_D, "admin:\n  address: {socket_address: {port_value: abc}}\n",
                 "b.yaml:2: admin.address.socket_address.port_value: expected a number, got 'abc'");
    expect_error(BOOTSTRAP_D, "static_resources:\n  clusters:\n  - name: x\n    lb_policy: ROUND\n",
                 "b.yaml:4: static_resources.clusters[0].lb_policy: unknown enum value ROUND, "
                 "expected one of ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM, MAGLEV, "
                 "CLUSTER_PROVIDED, LOAD_BALANCING_POLICY_CONFIG");
    expect_error(BOOTSTRAP_D, "static_resources:\n  clusters: {name: x}\n",
                 "b.yaml:2: static_resources.clusters: expected a list, got a map");
    expect_error(BOOTSTRAP_D, "static_resources:\n  clusters: x\n",
                 "b.yaml:2: static_resources.clusters: expected a list, got 'x'");
    expect_error(BOOTSTRAP_D, "static_resources:\n  clusters: [x]\n",
                 "b.yaml:2: static_resources.clusters[0]: expected a map, got 'x'");
    expect_error(BOOTSTRAP_D, "static_resources:\n  clusters: [~]\n",
                 "b.yaml:2: static_resources.clusters[0]: list items may not be null");
    expect_error(BOOTSTRAP_D, "static_resources:\n  clusters:\n  - connect_timeout: 1m\n",
                 "b.yaml:3: static_resources.clusters[0].connect_timeout: expected a duration in "
                 "seconds with an 's' suffix, such as \"1.5s\", got '1m'");
    expect_error(BOOTSTRAP_D, "static_resources:\n  clusters:\n  - connect_timeout: 5\n",
                 "b.yaml:3: static_resources.clusters[0].connect_timeout: expected a duration in "
                 "seconds with an 's' suffix, such as \"1.5s\", got '5'");
    expect_error(BOOTSTRAP_D, "static_resources:\n  clusters:\n  - {name: a, name_x: 1}\n",
                 "b.yaml:3: static_resources.clusters[0].name_x: unknown field");
    expect_error(BOOTSTRAP_D, "static_resources:\n  clusters:\n  - name: a\n    type: STATIC\n"
                 "    cluster_type: {name: x}\n",
                 "b.yaml:5: static_resources.clusters[0].cluster_type: only one of type, "
                 "cluster_type may be set");
    expect_error(BOOTSTRAP_D, "static_resources:\n  clusters:\n  - lb_policy: RANDOM\n"
                 "    lbPolicy: RANDOM\n",
                 "b.yaml:4: static_resources.clusters[0].lbPolicy: field 'lb_policy' is given twice");
    expect_error(BOOTSTRAP_D, "enable_dispatcher_stats: yes\n",
                 "b.yaml:1: enable_dispatcher_stats: expected true or false, got 'yes'");
    expect_error(BOOTSTRAP_D, "static_resources:\n  clusters:\n  - max_requests_per_connection: -1\n",
                 "b.yaml:3: static_resources.clusters[0].max_requests_per_connection: value '-1' "
                 "out of range for uint32");
    expect_error(BOOTSTRAP_D, "admin: {address: {socket_address: {port_value: 4294967296}}}\n",
                 "b.yaml:1: admin.address.socket_address.port_value: value '4294967296' out of "
                 "range for uint32");
    expect_error(BOOTSTRAP_D, "admin: {address: {socket_address: {port_value: 1.5}}}\n",
                 "b.yaml:1: admin.address.socket_address.port_value: expected an integer, got '1.5'");
    expect_error(BOOTSTRAP_D, "admin: [1]\n", "b.yaml:1: admin: expected a map, got a list");
    expect_error(BOOTSTRAP_D, "- 1\n", "b.yaml:1: expected a map, got a list");
    expect_error(BOOTSTRAP_D, "admin: {a: 1\n",
                 "b.yaml:2:1: did not find expected ',' or '}' (while parsing a flow mapping "
                 "started at line 1)");
    /* Any: unknown type, missing @type, and the path going on inside */
    expect_error(BOOTSTRAP_D,
                 "static_resources:\n  listeners:\n  - filter_chains:\n    - filters:\n"
                 "      - name: x\n        typed_config: {\"@type\": type.googleapis.com/foo.Bar}\n",
                 "b.yaml:6: static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
                 ".@type: unknown type 'type.googleapis.com/foo.Bar'");
    expect_error(BOOTSTRAP_D,
                 "static_resources:\n  listeners:\n  - filter_chains:\n    - filters:\n"
                 "      - typed_config: {stat_prefix: x}\n",
                 "b.yaml:5: static_resources.listeners[0].filter_chains[0].filters[0].typed_config: "
                 "missing \"@type\"");
    expect_error(BOOTSTRAP_D,
                 "static_resources:\n  listeners:\n  - filter_chains:\n    - filters:\n"
                 "      - typed_config:\n"
                 "          \"@type\": type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager\n"
                 "          route_config:\n            virtual_hosts:\n            - routes:\n"
                 "              - match: {prefix: /, path: /x}\n",
                 "b.yaml:10: static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
                 ".route_config.virtual_hosts[0].routes[0].match.path: only one of prefix, path may "
                 "be set");
    /* JSON input has lines too */
    expect_error(BOOTSTRAP_D, "{\n \"admin\": {\n  \"address\": {\n   \"socketAddress\": "
                 "{\"portValue\": \"x\"}}}}\n",
                 "b.yaml:4: admin.address.socketAddress.portValue: expected a number, got 'x'");
    /* a map field wants a map; a map value may not be null */
    expect_error(BOOTSTRAP_D, "node: {metadata: [1]}\n", "b.yaml:1: node.metadata: expected a map, got a list");
    expect_error(&envoy__config__route__v3__virtual_host__descriptor,
                 "typed_per_filter_config: {a: ~}\n",
                 "b.yaml:1: typed_per_filter_config[a]: map values may not be null");
}

static void nulls_and_names(void)
{
    Bootstrap *b = (Bootstrap *)load(BOOTSTRAP_D, "admin: ~\nnode: {id: ~, cluster: c}\n"
                                                  "static_resources: {clusters: []}\n"
                                                  "headerPrefix: x-\n");
    CHECK(b != NULL);
    if (!b)
        return;
    CHECK(b->admin == NULL);
    CHECK_EQ_STR(b->node->id, "");
    CHECK_EQ_STR(b->node->cluster, "c");
    CHECK(b->static_resources && b->static_resources->n_clusters == 0);
    CHECK_EQ_STR(b->header_prefix, "x-");
    protobuf_c_message_free_unpacked(&b->base, NULL);

    /* empty input: empty message */
    ProtobufCMessage *m = load(BOOTSTRAP_D, "");
    CHECK(m != NULL);
    CHECK(m && protobuf_c_message_get_packed_size(m) == 0);
    protobuf_c_message_free_unpacked(m, NULL);

    char name[64];
    CHECK_EQ_INT(pbmap_json_name("per_try_timeout", name, sizeof name), 0);
    CHECK_EQ_STR(name, "perTryTimeout");
    CHECK_EQ_INT(pbmap_json_name("ipv4_compat", name, sizeof name), 0);
    CHECK_EQ_STR(name, "ipv4Compat");
    CHECK_EQ_INT(pbmap_json_name("a_long_name", name, 4), -1);
}

static void durations(void)
{
    static const struct { const char *in; long long s; int ns; const char *out; } ok[] = {
        {"1.5s", 1, 500000000, "1.500s"}, {"0.25s", 0, 250000000, "0.250s"},
        {"1s", 1, 0, "1s"},              {"-2s", -2, 0, "-2s"},
        {"-0.5s", 0, -500000000, "-0.500s"}, {"0.000001s", 0, 1000, "0.000001s"},
        {"3.123456789s", 3, 123456789, "3.123456789s"}, {"315576000000s", 315576000000LL, 0, "315576000000s"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char yaml[64];
        snprintf(yaml, sizeof yaml, "\"%s\"", ok[i].in);
        Google__Protobuf__Duration *d = (void *)load(&google__protobuf__duration__descriptor, yaml);
        CHECK(d != NULL);
        if (!d)
            continue;
        CHECK_EQ_INT(d->seconds, ok[i].s);
        CHECK_EQ_INT(d->nanos, ok[i].ns);
        char *j = pbmap_to_json_string(&d->base, 0);
        char want[64];
        snprintf(want, sizeof want, "\"%s\"", ok[i].out);
        CHECK_EQ_STR(j, want);
        free(j);
        protobuf_c_message_free_unpacked(&d->base, NULL);
    }
    static const char *bad[] = {"1m", "5", "s", "1.s", "1.0000000001s", "1e3s", "315576000001s",
                                "--1s", "1,5s", "' 1s'", "{}", "1.5S"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ProtobufCMessage *m = pbmap_from_yaml(&google__protobuf__duration__descriptor, bad[i],
                                              strlen(bad[i]), "d.yaml", &err);
        CHECK(m == NULL);
        if (m)
            fprintf(stderr, "  accepted bad duration %s\n", bad[i]);
        protobuf_c_message_free_unpacked(m, NULL);
        CHECK(strstr(err.msg, "expected a duration") != NULL);
    }
}

static void timestamps(void)
{
    Google__Protobuf__Timestamp *t =
        (void *)load(&google__protobuf__timestamp__descriptor, "1972-01-01T10:00:20.021Z");
    CHECK(t && t->seconds == 63108020 && t->nanos == 21000000);
    char *j = t ? pbmap_to_json_string(&t->base, 0) : NULL;
    CHECK_EQ_STR(j, "\"1972-01-01T10:00:20.021Z\"");
    free(j);
    protobuf_c_message_free_unpacked(&t->base, NULL);

    t = (void *)load(&google__protobuf__timestamp__descriptor, "'2024-02-29T23:30:00+05:30'");
    CHECK(t && t->seconds == 1709229600 && t->nanos == 0);
    j = t ? pbmap_to_json_string(&t->base, 0) : NULL;
    CHECK_EQ_STR(j, "\"2024-02-29T18:00:00Z\"");
    free(j);
    protobuf_c_message_free_unpacked(&t->base, NULL);

    t = (void *)load(&google__protobuf__timestamp__descriptor, "0001-01-01T00:00:00Z");
    CHECK(t && t->seconds == -62135596800LL);
    j = t ? pbmap_to_json_string(&t->base, 0) : NULL;
    CHECK_EQ_STR(j, "\"0001-01-01T00:00:00Z\"");
    free(j);
    protobuf_c_message_free_unpacked(&t->base, NULL);

    static const char *bad[] = {"2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01 00:00:00Z",
                                "2024-01-01T00:00:00", "2024-01-01T24:00:00Z", "0000-01-01T00:00:00Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ProtobufCMessage *m = pbmap_from_yaml(&google__protobuf__timestamp__descriptor, bad[i],
                                              strlen(bad[i]), "t.yaml", &err);
        CHECK(m == NULL);
        protobuf_c_message_free_unpacked(m, NULL);
        CHECK(strstr(err.msg, "expected an RFC 3339 time") != NULL);
    }
}

static void wrappers_and_scalars(void)
{
    struct { const ProtobufCMessageDescriptor *d; const char *in, *out; } ok[] = {
        {&google__protobuf__int64_value__descriptor, "-9223372036854775808", "\"-9223372036854775808\""},
        {&google__protobuf__int64_value__descriptor, "'42'", "\"42\""},
        {&google__protobuf__int64_value__descriptor, "1e3", "\"1000\""},
        {&google__protobuf__uint64_value__descriptor, "18446744073709551615", "\"18446744073709551615\""},
        {&google__protobuf__int32_value__descriptor, "-2147483648", "-2147483648"},
        {&google__protobuf__uint32_value__descriptor, "0", "0"},
        {&google__protobuf__bool_value__descriptor, "false", "false"},
        {&google__protobuf__double_value__descriptor, "0.1", "0.1"},
        {&google__protobuf__double_value__descriptor, "NaN", "\"NaN\""},
        {&google__protobuf__double_value__descriptor, "-.inf", "\"-Infinity\""},
        {&google__protobuf__double_value__descriptor, "1e300", "1e+300"},
        {&google__protobuf__float_value__descriptor, "0.1", "0.1"},
        {&google__protobuf__float_value__descriptor, "Infinity", "\"Infinity\""},
        {&google__protobuf__string_value__descriptor, "\"\\u00e9\\n\\\"x\\u0001\\x7f\"",
         "\"\xc3\xa9\\n\\\"x\\u0001\\u007f\""},
        {&google__protobuf__string_value__descriptor, "123", "\"123\""},
        {&google__protobuf__bytes_value__descriptor, "aGVsbG8=", "\"aGVsbG8=\""},
        {&google__protobuf__bytes_value__descriptor, "aGVsbG8", "\"aGVsbG8=\""},
        {&google__protobuf__bytes_value__descriptor, "-_8", "\"+/8=\""},
        {&google__protobuf__empty__descriptor, "{}", "{}"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ProtobufCMessage *m = load(ok[i].d, ok[i].in);
        CHECK(m != NULL);
        if (!m)
            continue;
        char *j = pbmap_to_json_string(m, 0);
        CHECK_EQ_STR(j, ok[i].out);
        if (j && strcmp(j, "\"NaN\"") != 0)
            check_round_trip(m, 0);
        free(j);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    struct { const ProtobufCMessageDescriptor *d; const char *in, *want; } bad[] = {
        {&google__protobuf__int32_value__descriptor, "2147483648", "out of range for int32"},
        {&google__protobuf__int64_value__descriptor, "9223372036854775808", "out of range for int64"},
        {&google__protobuf__uint64_value__descriptor, "-1", "out of range for uint64"},
        {&google__protobuf__int32_value__descriptor, "0x10", "expected a number, got '0x10'"},
        {&google__protobuf__int32_value__descriptor, "'' ", "expected a number, got ''"},
        {&google__protobuf__float_value__descriptor, "1e39", "out of range for float"},
        {&google__protobuf__double_value__descriptor, "1e999", "out of range for double"},
        {&google__protobuf__bool_value__descriptor, "True", "expected true or false"},
        {&google__protobuf__bytes_value__descriptor, "a", "expected base64 bytes"},
        {&google__protobuf__bytes_value__descriptor, "a$==", "expected base64 bytes"},
        {&google__protobuf__string_value__descriptor, "[a]", "expected a string, got a list"},
        {&google__protobuf__empty__descriptor, "{a: 1}", "a: unknown field"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ProtobufCMessage *m = pbmap_from_yaml(bad[i].d, bad[i].in, strlen(bad[i].in), "w.yaml", &err);
        CHECK(m == NULL);
        protobuf_c_message_free_unpacked(m, NULL);
        CHECK(strstr(err.msg, bad[i].want) != NULL);
        if (!strstr(err.msg, bad[i].want))
            fprintf(stderr, "  got: %s\n", err.msg);
    }
}

static void structs(void)
{
    const char *y = "a: 1\nb: 'two'\nc: [true, false, null, 1.5e3, {d: [[]]}]\ne: {}\n"
                    "f: \"1\"\ng: -0.0\nh: yes\n";
    Google__Protobuf__Struct *s = (void *)load(&google__protobuf__struct__descriptor, y);
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_EQ_INT(s->n_fields, 7);
    CHECK_EQ_STR(s->fields[0]->key, "a");
    CHECK_EQ_INT(s->fields[0]->value->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE);
    CHECK_EQ_INT(s->fields[5]->value->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE);
    CHECK_EQ_INT(s->fields[4]->value->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE);
    char *j = pbmap_to_json_string(&s->base, 0);
    CHECK_EQ_STR(j, "{\"a\":1,\"b\":\"two\",\"c\":[true,false,null,1500,{\"d\":[[]]}],\"e\":{},"
                    "\"f\":\"1\",\"g\":-0,\"h\":\"yes\"}");
    free(j);
    j = pbmap_to_json_string(&s->base, 2);
    CHECK(j && strncmp(j, "{\n  \"a\": 1,\n  \"b\": \"two\",\n  \"c\": [\n    true,", 40) == 0);
    free(j);
    check_round_trip(&s->base, 0);
    check_round_trip(&s->base, 3);
    json_t *js = pbmap_to_json(&s->base);
    CHECK(js && json_is_object(json_object_get(json_array_get(json_object_get(js, "c"), 4), "")) == 0);
    CHECK(js && json_real_value(json_object_get(js, "a")) == 1.0);
    json_t *wrap = json_pack("{s:O,s:f}", "s", js, "x", 0.1);
    j = pbmap_json_dumps(wrap, 0);
    CHECK(j && strncmp(j, "{\"s\":{\"a\":1,", 12) == 0 && strstr(j, ",\"x\":0.1}") != NULL);
    free(j);
    json_decref(wrap);
    json_decref(js);
    protobuf_c_message_free_unpacked(&s->base, NULL);

    /* a Value at the top, and a list */
    ProtobufCMessage *v = load(&google__protobuf__value__descriptor, "~");
    j = v ? pbmap_to_json_string(v, 0) : NULL;
    CHECK_EQ_STR(j, "null");
    free(j);
    protobuf_c_message_free_unpacked(v, NULL);
    v = load(&google__protobuf__list_value__descriptor, "[1, x]");
    j = v ? pbmap_to_json_string(v, 0) : NULL;
    CHECK_EQ_STR(j, "[1,\"x\"]");
    free(j);
    protobuf_c_message_free_unpacked(v, NULL);
    expect_error(&google__protobuf__list_value__descriptor, "{a: 1}", "b.yaml:1: expected a list, got a map");
}

static void any_of_wkt(void)
{
    const char *y = "{\"@type\": \"type.googleapis.com/google.protobuf.Duration\", \"value\": \"1.212s\"}";
    ProtobufCMessage *a = load(&google__protobuf__any__descriptor, y);
    CHECK(a != NULL);
    if (!a)
        return;
    Google__Protobuf__Duration *d = (void *)pbmap_unpack_any(a, &google__protobuf__duration__descriptor, &err);
    CHECK(d && d->seconds == 1 && d->nanos == 212000000);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    char *j = pbmap_to_json_string(a, 0);
    CHECK_EQ_STR(j, "{\"@type\":\"type.googleapis.com/google.protobuf.Duration\",\"value\":\"1.212s\"}");
    free(j);
    check_round_trip(a, 0);
    protobuf_c_message_free_unpacked(a, NULL);

    /* Any in Any, Struct in Any */
    y = "'@type': type.googleapis.com/google.protobuf.Any\n"
        "value: {'@type': google.protobuf.Struct, value: {k: [v]}}\n";
    a = load(&google__protobuf__any__descriptor, y);
    CHECK(a != NULL);
    j = a ? pbmap_to_json_string(a, 0) : NULL;
    CHECK_EQ_STR(j, "{\"@type\":\"type.googleapis.com/google.protobuf.Any\",\"value\":{\"@type\":"
                    "\"type.googleapis.com/google.protobuf.Struct\",\"value\":{\"k\":[\"v\"]}}}");
    free(j);
    if (a)
        check_round_trip(a, 0);
    protobuf_c_message_free_unpacked(a, NULL);

    expect_error(&google__protobuf__any__descriptor,
                 "{'@type': google.protobuf.Duration, seconds: 1}",
                 "b.yaml:1: seconds: unknown field (a google.protobuf.Duration in an Any goes "
                 "under \"value\")");
    expect_error(&google__protobuf__any__descriptor,
                 "{'@type': google.protobuf.Duration, value: 1}",
                 "b.yaml:1: value: expected a duration in seconds with an 's' suffix, such as "
                 "\"1.5s\", got '1'");

    /* an Any holding bytes of an unknown type is dumped, not dropped */
    Google__Protobuf__Any raw = GOOGLE__PROTOBUF__ANY__INIT;
    raw.type_url = "type.googleapis.com/x.Unknown";
    raw.value.data = (uint8_t *)"\x08\x01";
    raw.value.len = 2;
    j = pbmap_to_json_string(&raw.base, 0);
    CHECK_EQ_STR(j, "{\"@type\":\"type.googleapis.com/x.Unknown\",\"value\":\"CAE=\"}");
    free(j);
    CHECK(pbmap_unpack_any(&raw.base, NULL, &err) == NULL);
    CHECK_EQ_STR(err.msg, "unknown type 'type.googleapis.com/x.Unknown'");

    CHECK(pbmap_find_type("type.googleapis.com/envoy.config.cluster.v3.Cluster") ==
          &envoy__config__cluster__v3__cluster__descriptor);
    CHECK(pbmap_find_type("envoy.config.cluster.v3.Cluster") ==
          &envoy__config__cluster__v3__cluster__descriptor);
    CHECK(pbmap_find_type("envoy.config.cluster.v3.Cluste") == NULL);
}

static void output_of_unpacked_bytes(void)
{
    /* invalid UTF-8 from the wire becomes U+FFFD; enum numbers without a name stay numbers */
    Envoy__Config__Cluster__V3__Cluster c = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__INIT;
    c.name = "bad\xff";
    c.lb_policy = 42;
    char *j = pbmap_to_json_string(&c.base, 0);
    CHECK_EQ_STR(j, "{\"name\":\"bad\xef\xbf\xbd\",\"lbPolicy\":42}");
    free(j);
}

static void helpers_and_escapes(void)
{
    /* protobuf-c strings cannot hold NUL */
    expect_error(BOOTSTRAP_D, "node: {id: \"a\\0b\"}\n",
                 "b.yaml:1: node.id: strings may not contain NUL characters");
    /* characters YAML reads as line breaks are escaped in the dump, so it reads back */
    ProtobufCMessage *m = load(&google__protobuf__struct__descriptor,
                               "\"k\\L\\N\\e\": \"v\\P\\_\"\n");
    CHECK(m != NULL);
    char *j = m ? pbmap_to_json_string(m, 0) : NULL;
    CHECK_EQ_STR(j, "{\"k\\u2028\\u0085\\u001b\":\"v\\u2029\xc2\xa0\"}");
    free(j);
    if (m)
        check_round_trip(m, 0);
    protobuf_c_message_free_unpacked(m, NULL);

    char *b = pbmap_base64((const unsigned char *)"ab", 2);
    CHECK_EQ_STR(b, "YWI=");
    free(b);
    char d[32];
    pbmap_format_duration(-1, -5000000, d, sizeof d);
    CHECK_EQ_STR(d, "-1.005s");
    pbmap_format_duration(0, 1500, d, sizeof d);
    CHECK_EQ_STR(d, "0.000001500s");

    Google__Protobuf__Duration du = GOOGLE__PROTOBUF__DURATION__INIT;
    du.seconds = 3;
    Google__Protobuf__Any *any = malloc(sizeof *any);
    google__protobuf__any__init(any);
    CHECK_EQ_INT(pbmap_pack_any(&du.base, &any->base), 0);
    CHECK_EQ_STR(any->type_url, "type.googleapis.com/google.protobuf.Duration");
    j = pbmap_to_json_string(&any->base, 0);
    CHECK_EQ_STR(j, "{\"@type\":\"type.googleapis.com/google.protobuf.Duration\",\"value\":\"3s\"}");
    free(j);
    protobuf_c_message_free_unpacked(&any->base, NULL);
}

/* 10k clusters: linear all the way (parse, build, dump, parse again). */
static void ten_thousand_clusters(void)
{
    size_t cap = 10000 * 400, o = 0;
    char *s = malloc(cap);
    o += (size_t)snprintf(s + o, cap - o, "static_resources:\n  clusters:\n");
    for (int i = 0; i < 10000; i++)
        o += (size_t)snprintf(s + o, cap - o,
                              "  - name: c%d\n    type: STRICT_DNS\n    connect_timeout: 0.%ds\n"
                              "    load_assignment:\n      cluster_name: c%d\n      endpoints:\n"
                              "      - lb_endpoints:\n        - endpoint: {address: {socket_address: "
                              "{address: h%d.example, port_value: %d}}}\n",
                              i, i % 10, i, i, 1000 + i % 50000);
    clock_t t0 = clock();
    Bootstrap *b = (Bootstrap *)pbmap_from_yaml(BOOTSTRAP_D, s, o, "big.yaml", &err);
    CHECK(b && b->static_resources->n_clusters == 10000);
    if (b) {
        CHECK_EQ_STR(b->static_resources->clusters[9999]->name, "c9999");
        check_round_trip(&b->base, 1);
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("  10k clusters: parse + dump + reparse in %.2fs\n", secs);
    CHECK(secs < 30);
    protobuf_c_message_free_unpacked(&b->base, NULL);
    free(s);
}

/* PBMAP_F_GO_DURATION (Istio's YAML): Go durations inside any message; without the flag the
 * same text is refused, so Envoy configs keep proto3's form. */
static void go_durations_flag(void)
{
    static const char y[] = "name: c\nconnect_timeout: 1m30s\n";
    struct ytree *t = ytree_parse(y, strlen(y), "c", NULL, 0);
    struct pbmap_error err;
    Cluster *c = (Cluster *)pbmap_from_tree_flags(&envoy__config__cluster__v3__cluster__descriptor, t,
                                                  "c.yaml", &err, PBMAP_F_GO_DURATION);
    CHECK(c && c->connect_timeout && c->connect_timeout->seconds == 90);
    if (c)
        protobuf_c_message_free_unpacked(&c->base, NULL);
    c = (Cluster *)pbmap_from_tree_flags(&envoy__config__cluster__v3__cluster__descriptor, t, "c.yaml", &err, 0);
    CHECK(c == NULL);
    CHECK_EQ_STR(err.msg, "c.yaml:2: connect_timeout: expected a duration in seconds with an 's' suffix, such as \"1.5s\", got '1m30s'");
    ytree_free(t);
}

TEST_MAIN(TEST(go_durations_flag), TEST(front_proxy_bootstrap), TEST(sample_bootstrap_file), TEST(error_messages),
          TEST(nulls_and_names), TEST(durations), TEST(timestamps), TEST(wrappers_and_scalars),
          TEST(structs), TEST(any_of_wkt), TEST(output_of_unpacked_bytes), TEST(helpers_and_escapes),
          TEST(ten_thousand_clusters))
