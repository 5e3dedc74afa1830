/* Istio config model: every kind parses, the envelope, Go durations, and validation
 * errors with their exact text, line and field path. */
#include <stdlib.h>

#include "common/pbmap.h"
#include "google/protobuf/duration.pb-c.h"
#include "istio/config.h"
#include "istio/networking/v1alpha3/destination_rule.pb-c.h"
#include "istio/networking/v1alpha3/virtual_service.pb-c.h"
#include "istio/networking/v1alpha3/workload_entry.pb-c.h"
#include "istio/security/v1beta1/peer_authentication.pb-c.h"
#include "weft/k8s/v1/core.pb-c.h"
#include "test.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Parses text; returns the number of errors; the first error line in first (if any). */
static int parse(const char *text, struct istio_object_list *l, struct istio_errors *e)
{
    return istio_parse(text, strlen(text), "t.yaml", "cluster.local", l, e);
}

/* Parses one document and checks its only error is exactly want. */
static void expect_error(const char *text, const char *want)
{
    struct istio_object_list l = {0};
    struct istio_errors e = {0};
    parse(text, &l, &e);
    CHECK_EQ_INT(e.n >= 1, 1);
    if (e.n >= 1)
        CHECK_EQ_STR(e.msgs[0], want);
    if (e.n > 1)
        for (size_t i = 1; i < e.n; i++)
            fprintf(stderr, "  extra error: %s\n", e.msgs[i]);
    CHECK_EQ_INT(e.n, 1);
    istio_object_list_free(&l);
    istio_errors_free(&e);
}

static void test_every_kind(void)
{
    size_t len;
    char *text = slurp("tests/data/istio/all-kinds/all-kinds.yaml", &len);
    CHECK(text != NULL);
    if (!text)
        return;
    struct istio_object_list l = {0};
    struct istio_errors e = {0};
    int rc = istio_parse(text, len, "all-kinds.yaml", "cluster.local", &l, &e);
    CHECK_EQ_INT(rc, 1); /* the unknown kind only */
    CHECK_EQ_INT(e.n, 1);
    if (e.n)
        CHECK_EQ_STR(e.msgs[0], "all-kinds.yaml:171: kind: unknown kind Widget (apiVersion example.com/v1), skipped");
    static const enum istio_kind want[] = {
        ISTIO_K8S_NAMESPACE, ISTIO_K8S_SERVICE, ISTIO_WORKLOAD_ENTRY, ISTIO_VIRTUAL_SERVICE,
        ISTIO_DESTINATION_RULE, ISTIO_GATEWAY, ISTIO_SERVICE_ENTRY, ISTIO_SIDECAR,
        ISTIO_PEER_AUTHENTICATION, ISTIO_AUTHORIZATION_POLICY, ISTIO_REQUEST_AUTHENTICATION};
    CHECK_EQ_INT(l.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < l.n && i < sizeof want / sizeof want[0]; i++) {
        CHECK_EQ_INT(l.items[i]->kind, want[i]);
        CHECK_EQ_INT(l.items[i]->invalid, 0);
        CHECK(l.items[i]->spec != NULL);
        CHECK_EQ_STR(l.items[i]->ns, "shop");
    }
    if (l.n == sizeof want / sizeof want[0]) {
        const struct istio_object *svc = l.items[1];
        const Weft__K8s__V1__ServiceSpec *ss = (const void *)svc->spec;
        CHECK_EQ_INT(ss->n_ports, 2);
        CHECK_EQ_STR(ss->ports[0]->target_port, "web");
        CHECK_EQ_STR(ss->ports[1]->target_port, "9001"); /* int-or-string */
        CHECK_EQ_STR(ss->ports[1]->app_protocol, "grpc");
        const struct istio_object *we = l.items[2];
        CHECK_EQ_STR(istio_kind_name(we->kind), "WorkloadEntry");
        CHECK_EQ_INT(we->n_annotations, 1);
        const Istio__Networking__V1alpha3__WorkloadEntry *w = (const void *)we->spec;
        CHECK_EQ_INT(w->weight, 3);
        CHECK_EQ_STR(w->locality, "eu-west/a/1");
        const Istio__Networking__V1alpha3__VirtualService *vs = (const void *)l.items[3]->spec;
        CHECK_EQ_INT(vs->n_http, 3);
        CHECK_EQ_INT(vs->http[0]->timeout->seconds, 90); /* 1m30s */
        CHECK_EQ_INT(vs->http[0]->retries->per_try_timeout->nanos, 250000000);
        CHECK(vs->http[0]->match[0]->ignore_uri_case);
        CHECK_EQ_INT(vs->http[1]->redirect->redirect_code, 302);
        CHECK_EQ_STR(vs->http[2]->direct_response->body->string, "down");
        const Istio__Networking__V1alpha3__DestinationRule *dr = (const void *)l.items[4]->spec;
        CHECK_EQ_INT(dr->traffic_policy->load_balancer->consistent_hash->maglev->table_size, 65537);
        const Istio__Security__V1beta1__PeerAuthentication *pa = (const void *)l.items[8]->spec;
        CHECK_EQ_INT(pa->n_port_level_mtls, 1);
        CHECK_EQ_INT(pa->port_level_mtls[0]->key, 8080);
    }
    istio_object_list_free(&l);
    istio_errors_free(&e);
    free(text);
}

static void test_envelope(void)
{
    struct istio_object_list l = {0};
    struct istio_errors e = {0};
    CHECK_EQ_INT(parse("apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\n"
                       "metadata: {name: r, labels: {app: x}, uid: abc, creationTimestamp: now}\n"
                       "spec: {host: reviews}\n---\n---\n"
                       "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n",
                       &l, &e),
                 0);
    CHECK_EQ_INT(l.n, 2);
    if (l.n == 2) {
        CHECK_EQ_STR(l.items[0]->ns, "default");
        CHECK_EQ_STR(istio_label(l.items[0], "app"), "x");
        CHECK_EQ_INT(l.items[0]->line, 1);
        CHECK_EQ_STR(l.items[1]->ns, "prod");
        CHECK_EQ_INT(l.items[1]->line, 7);
    }
    istio_object_list_free(&l);
    istio_errors_free(&e);
    expect_error("apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: a}\n",
                 "t.yaml:1: apiVersion: networking.istio.io/v2 is not a version of VirtualService");
    expect_error("kind: VirtualService\nmetadata: {name: a}\n", "t.yaml:1: apiVersion: required (a string)");
    expect_error("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {namespace: a}\n",
                 "t.yaml:3: metadata.name: required");
    expect_error("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a, color: red}\n"
                 "spec: {servers: []}\n",
                 "t.yaml:3: metadata.color: unknown field");
    expect_error("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: A_b}\n"
                 "spec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n",
                 "t.yaml:3: metadata.name: \"A_b\" is not a valid name (lowercase letters, digits, '-' and '.')");
    expect_error("a: [1\n", "t.yaml:2:1: did not find expected ',' or ']' (while parsing a flow sequence started at line 1)");
}

static void test_mapper_errors(void)
{
    /* the mapper's errors keep their file:line and gain the "spec." prefix */
    expect_error("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\n"
                 "spec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n      wieght: 5\n",
                 "t.yaml:9: spec.http[0].route[0].wieght: unknown field");
    expect_error("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\n"
                 "spec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n      weight: heavy\n",
                 "t.yaml:9: spec.http[0].route[0].weight: expected a number, got 'heavy'");
    expect_error("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\n"
                 "spec:\n  hosts: [a]\n  http:\n  - timeout: 5\n    route: [{destination: {host: a}}]\n",
                 "t.yaml:7: spec.http[0].timeout: expected a duration such as \"1.5s\", \"100ms\", \"1h30m\", got '5'");
    expect_error("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\n"
                 "spec: {mtls: {mode: SOMETIMES}}\n",
                 "t.yaml:4: spec.mtls.mode: unknown enum value SOMETIMES, expected one of UNSET, DISABLE, PERMISSIVE, STRICT");
    expect_error("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec: [1]\n",
                 "t.yaml:4: spec: expected a map, got a list");
}

static void test_go_durations(void)
{
    static const struct { const char *text; int64_t s; int32_t ns; int ok; } cases[] = {
        {"1h30m", 5400, 0, 1}, {"100ms", 0, 100000000, 1}, {"2.5s", 2, 500000000, 1},
        {"1m0.5s", 60, 500000000, 1}, {"0", 0, 0, 1}, {"1500us", 0, 1500000, 1},
        {"5ns", 0, 5, 1}, {"-1s", -1, 0, 1}, {"1", 0, 0, 0}, {"1x", 0, 0, 0}, {"s", 0, 0, 0},
        {"1.s", 1, 0, 1} /* as Go's ParseDuration */, {".5s", 0, 500000000, 1}, {"", 0, 0, 0},
        {"1h-1m", 0, 0, 0}, {"99999999999999h", 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char y[64];
        snprintf(y, sizeof y, "\"%s\"", cases[i].text);
        struct ytree *t = ytree_parse(y, strlen(y), "d", NULL, 0);
        struct pbmap_error err;
        Google__Protobuf__Duration *d = (void *)pbmap_from_tree_flags(
            &google__protobuf__duration__descriptor, t, "d", &err, PBMAP_F_GO_DURATION);
        if (cases[i].ok && *cases[i].text) {
            CHECK(d != NULL);
            if (d) {
                CHECK_EQ_INT(d->seconds, cases[i].s);
                CHECK_EQ_INT(d->nanos, cases[i].ns);
            }
        } else if (*cases[i].text) {
            if (d)
                fprintf(stderr, "accepted %s\n", cases[i].text);
            CHECK(d == NULL);
        }
        if (d)
            protobuf_c_message_free_unpacked(&d->base, NULL);
        ytree_free(t);
    }
    /* without the flag the mapper keeps proto3's form */
    struct pbmap_error err;
    CHECK(pbmap_from_yaml(&google__protobuf__duration__descriptor, "1m", 2, "d", &err) == NULL);
}

static const char vs_head[] = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n";

static void expect_vs(const char *spec, const char *want)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "%s%s", vs_head, spec);
    expect_error(buf, want);
}

static void test_virtual_service_rules(void)
{
    expect_vs("  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a, subset: v1}\n      weight: 80\n"
              "    - destination: {host: a, subset: v2}\n      weight: 30\n",
              "t.yaml:7: spec.http[0].route: total destination weight 110 != 100");
    expect_vs("  hosts: [a]\n  http:\n  - route:\n    - destination: {subset: v1}\n",
              "t.yaml:8: spec.http[0].route[0].destination.host: destination host is required");
    expect_vs("  hosts: [a]\n  http:\n  - match:\n    - uri: {regex: \"a(b\"}\n    route: [{destination: {host: a}}]\n",
              "t.yaml:8: spec.http[0].match[0].uri.regex: \"a(b\" is not a valid regex: missing closing parenthesis at offset 3");
    expect_vs("  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    retries: {attempts: 3, perTryTimeout: 0.5ms}\n",
              "t.yaml:8: spec.http[0].retries.perTryTimeout: duration must be greater than 1ms");
    expect_vs("  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    timeout: 1.0005s\n",
              "t.yaml:8: spec.http[0].timeout: only durations to ms precision are supported");
    expect_vs("  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    redirect: {uri: /x}\n",
              "t.yaml:7: spec.http[0]: only one of route, redirect, directResponse or delegate may be set");
    expect_vs("  hosts: [a]\n  http:\n  - name: empty\n",
              "t.yaml:7: spec.http[0]: HTTP route, redirect, directResponse or delegate is required");
    expect_vs("  hosts: [\"a..b\"]\n  http:\n  - route: [{destination: {host: a}}]\n",
              "t.yaml:5: spec.hosts[0]: invalid host \"a..b\": empty label in domain name");
    expect_vs("  hosts: [\"*\"]\n  http:\n  - route: [{destination: {host: a}}]\n",
              "t.yaml:5: spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway");
    expect_vs("  hosts: [a]\n  http:\n  - route: [{destination: {host: a, port: {number: 0}}}]\n",
              "t.yaml:7: spec.http[0].route[0].destination.port.number: port number 0 must be in the range 1..65535");
    expect_vs("  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    fault: {delay: {percentage: {value: 101}, fixedDelay: 1s}}\n",
              "t.yaml:8: spec.http[0].fault.delay.percentage: percentage 101 is out of range [0, 100]");
    expect_vs("  hosts: [a]\n  tcp:\n  - route:\n    - destination: {host: db}\n      weight: 50\n"
              "    - destination: {host: db2}\n      weight: 40\n",
              "t.yaml:7: spec.tcp[0].route: total destination weight 90 != 100");
    expect_vs("  hosts: [a]\n  tls:\n  - match: [{port: 443}]\n    route: [{destination: {host: a}}]\n",
              "t.yaml:7: spec.tls[0].match[0].sniHosts: TLS match must have at least one SNI host");
    expect_vs("  gateways: [mesh]\n  http:\n  - route: [{destination: {host: a}}]\n",
              "t.yaml:5: spec.gateways: a delegate VirtualService (no hosts) must not set gateways");
}

static void test_other_rules(void)
{
    expect_error("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\n"
                 "spec:\n  host: a\n  subsets:\n  - name: v1\n  - name: v1\n",
                 "t.yaml:8: spec.subsets[1].name: duplicate subset name \"v1\"");
    expect_error("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\n"
                 "spec:\n  host: a\n  trafficPolicy: {}\n",
                 "t.yaml:6: spec.trafficPolicy: traffic policy must have at least one field");
    expect_error("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\n"
                 "spec:\n  host: a\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {maglev: {tableSize: 1000}, useSourceIp: true}\n",
                 "t.yaml:8: spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: table size 1000 must be a prime number");
    expect_error("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\n"
                 "spec:\n  hosts: [x.example]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"
                 "  resolution: STATIC\n  endpoints: [{address: not-an-ip}]\n",
                 "t.yaml:8: spec.endpoints[0].address: endpoint address \"not-an-ip\" is not a valid IP address");
    expect_error("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: a}\n"
                 "spec: {ports: {http: 8080}}\n",
                 "t.yaml:4: spec.address: address is required");
    expect_error("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: a}\n"
                 "spec:\n  egress:\n  - hosts: [\"reviews\"]\n",
                 "t.yaml:6: spec.egress[0].hosts[0]: host \"reviews\" must be of the form namespace/dnsName");
    expect_error("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\n"
                 "spec:\n  portLevelMtls: {8080: {mode: DISABLE}}\n",
                 "t.yaml:5: spec.portLevelMtls: portLevelMtls requires a workload selector");
    expect_error("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"
                 "spec:\n  action: CUSTOM\n",
                 "t.yaml:4: spec.provider: a provider must be set for the CUSTOM action");
    expect_error("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: a}\n"
                 "spec:\n  jwtRules: [{jwksUri: \"https://x\"}]\n",
                 "t.yaml:5: spec.jwtRules[0].issuer: issuer must be set");
    expect_error("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
                 "spec:\n  ports: [{port: 80, protocol: QUIC}]\n",
                 "t.yaml:5: spec.ports[0].protocol: unsupported value \"QUIC\": supported values: SCTP, TCP, UDP");
    expect_error("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a}\n"
                 "spec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n",
                 "t.yaml:7: spec.servers[0].hosts: server config must contain at least one host");
}

/* An invalid object is rejected; the others of the file are kept, and the rejected one
 * still says who it is (the store keeps its last good version). */
static void test_invalid_kept_apart(void)
{
    size_t len;
    char *text = slurp("tests/data/istio/invalid/broken.yaml", &len);
    CHECK(text != NULL);
    if (!text)
        return;
    struct istio_object_list l = {0};
    struct istio_errors e = {0};
    istio_parse(text, len, "broken.yaml", NULL, &l, &e);
    size_t valid = 0, invalid = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (l.items[i]->invalid) {
            invalid++;
            CHECK(l.items[i]->spec == NULL);
        } else {
            valid++;
            CHECK_EQ_STR(l.items[i]->name, "ok");
        }
    }
    CHECK_EQ_INT(valid, 1);
    CHECK_EQ_INT(invalid, 7);
    CHECK_EQ_INT(e.n, 23);
    if (e.n > 1) {
        CHECK_EQ_STR(e.msgs[0], "broken.yaml:17: spec.http[0].route[1].weight: weight -10 < 0");
        CHECK_EQ_STR(e.msgs[1], "broken.yaml:9: spec.http[0].route: total destination weight 60 != 100");
    }
    istio_object_list_free(&l);
    istio_errors_free(&e);
    free(text);
}

static void test_helpers(void)
{
    /* the generated type registry knows the Istio messages too */
    CHECK(pbmap_find_type("type.googleapis.com/istio.networking.v1alpha3.VirtualService") ==
          &istio__networking__v1alpha3__virtual_service__descriptor);
    CHECK(pbmap_find_type("istio.security.v1beta1.PeerAuthentication") != NULL);
    CHECK(pbmap_find_type("weft.k8s.v1.ServiceSpec") == &weft__k8s__v1__service_spec__descriptor);
    char *h = istio_resolve_host("reviews", "prod", "cluster.local");
    CHECK_EQ_STR(h, "reviews.prod.svc.cluster.local");
    free(h);
    h = istio_resolve_host("reviews.prod", "x", "cluster.local");
    CHECK_EQ_STR(h, "reviews.prod");
    free(h);
    struct istio_kv sel[] = {{"app", "a"}}, labels[] = {{"app", "a"}, {"version", "v1"}};
    CHECK(istio_labels_match(sel, 1, labels, 2));
    CHECK(istio_labels_match(NULL, 0, labels, 2));
    CHECK(!istio_labels_match(labels, 2, sel, 1));
}

TEST_MAIN(TEST(test_every_kind), TEST(test_envelope), TEST(test_mapper_errors),
          TEST(test_go_durations), TEST(test_virtual_service_rules), TEST(test_other_rules),
          TEST(test_invalid_kept_apart), TEST(test_helpers))
