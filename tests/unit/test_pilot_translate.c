/* The translator against golden files: the bookinfo sample (samples/bookinfo-istio) with the
 * classic Istio tasks (samples/bookinfo-istio-tasks), for sidecars and the ingress gateway.
 *
 * Outputs are compared byte for byte with tests/data/golden/NAME.json. To regenerate them
 * after an intended change: WEFT_UPDATE_GOLDEN=1 build/tests/test_pilot_translate (from the
 * source directory), then review the diff. */
#include <dirent.h>
#include <stdlib.h>

#include "common/pbmap.h"
#include "envoy/config/core/v3/base.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "pilot/translate.h"
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
    if (len)
        *len = (size_t)n;
    return b;
}

static void add_file(const char *path, struct istio_object_list *l, struct istio_errors *e)
{
    size_t len;
    char *t = slurp(path, &len);
    CHECK(t != NULL);
    if (t)
        istio_parse(t, len, path, NULL, l, e);
    free(t);
}

/* The bookinfo sample plus the extra files (NULL-terminated). */
static struct pilot_model *model(const char *const *extra)
{
    static const char *const base[] = {"bookinfo.yaml", "destination-rules.yaml",
                                       "bookinfo-gateway.yaml", "mongodb.yaml", NULL};
    struct istio_object_list l = {0};
    struct istio_errors e = {0};
    char path[256];
    for (int i = 0; base[i]; i++) {
        snprintf(path, sizeof path, "samples/bookinfo-istio/%s", base[i]);
        add_file(path, &l, &e);
    }
    for (int i = 0; extra && extra[i]; i++)
        add_file(extra[i], &l, &e);
    for (size_t i = 0; i < e.n; i++)
        fprintf(stderr, "config error: %s\n", e.msgs[i]);
    CHECK_EQ_INT(e.n, 0);
    struct pilot_model *m = pilot_model_new(l.items, l.n, &e, NULL, 1);
    istio_object_list_free(&l);
    istio_errors_free(&e);
    CHECK(m != NULL);
    return m;
}

static const char productpage[] = "sidecar~10.1.0.10~productpage-v1-6b746f74dc-9stvs.default~default.svc.cluster.local";
static const char reviews_v2[] = "sidecar~10.1.0.22~reviews-v2-7bf8c9648f-l9xzh.default~default.svc.cluster.local";
static const char ingress[] = "router~10.1.0.100~istio-ingressgateway-5d8b6b4f9c-jg7ts.istio-system~istio-system.svc.cluster.local";

static void golden(const char *name, const char *const *extra, const char *node, int type,
                   const char *label)
{
    struct pilot_model *m = model(extra);
    if (!m)
        return;
    struct pilot_proxy p = {0};
    char err[256];
    CHECK_EQ_INT(pilot_proxy_parse(node, &p, err, sizeof err), 0);
    if (label) {
        char k[64], *eq;
        snprintf(k, sizeof k, "%s", label);
        eq = strchr(k, '=');
        *eq = '\0';
        pilot_proxy_set_label(&p, k, eq + 1);
    }
    pilot_proxy_complete(&p, m);
    struct istio_errors warn = {0};
    char *got = pilot_dump_json(m, &p, type, &warn);
    CHECK(got != NULL);
    for (size_t i = 0; i < warn.n; i++)
        fprintf(stderr, "%s: warning: %s\n", name, warn.msgs[i]);
    char path[256];
    snprintf(path, sizeof path, "tests/data/golden/%s.json", name);
    if (got && getenv("WEFT_UPDATE_GOLDEN")) {
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (f) {
            fprintf(f, "%s\n", got);
            fclose(f);
        }
    } else if (got) {
        char *want = slurp(path, NULL);
        size_t gl = strlen(got);
        int same = want && strlen(want) == gl + 1 && !memcmp(want, got, gl) && want[gl] == '\n';
        if (!same) {
            fprintf(stderr, "%s differs from %s (WEFT_UPDATE_GOLDEN=1 regenerates it)\n", name, path);
            char out[300];
            snprintf(out, sizeof out, "/tmp/weft-golden-%s.json", name);
            FILE *f = fopen(out, "w");
            if (f) {
                fprintf(f, "%s\n", got);
                fclose(f);
                fprintf(stderr, "  got: %s\n", out);
            }
        }
        CHECK(same);
        free(want);
    }
    free(got);
    istio_errors_free(&warn);
    pilot_proxy_free(&p);
    pilot_model_unref(m);
}

static void test_bookinfo_defaults(void)
{
    golden("bookinfo-productpage", NULL, productpage, -1, NULL);
    golden("bookinfo-reviews-v2", NULL, reviews_v2, -1, NULL);
    golden("bookinfo-ingress", NULL, ingress, -1, "istio=ingressgateway");
}

static void test_bookinfo_tasks(void)
{
    static const char *const all_v1[] = {"samples/bookinfo-istio-tasks/virtual-service-all-v1.yaml", NULL};
    static const char *const split[] = {"samples/bookinfo-istio-tasks/virtual-service-reviews-80-20.yaml", NULL};
    static const char *const jason[] = {"samples/bookinfo-istio-tasks/virtual-service-reviews-test-v2.yaml", NULL};
    static const char *const delay[] = {"samples/bookinfo-istio-tasks/virtual-service-ratings-test-delay.yaml", NULL};
    static const char *const egress[] = {"samples/bookinfo-istio-tasks/sidecar-registry-only.yaml", NULL};
    static const char *const features[] = {"tests/data/istio/translate/features.yaml", NULL};
    golden("task-all-v1.rds", all_v1, productpage, PILOT_RDS, NULL);
    golden("task-reviews-80-20.rds", split, productpage, PILOT_RDS, NULL);
    golden("task-reviews-jason-v2.rds", jason, productpage, PILOT_RDS, NULL);
    golden("task-ratings-fault.rds", delay, reviews_v2, PILOT_RDS, NULL);
    golden("task-sidecar-registry-only", egress, productpage, -1, NULL);
    golden("features-productpage.rds", features, productpage, PILOT_RDS, NULL);
}

static void test_tls(void)
{
    static const char *const tls[] = {"tests/data/istio/translate/tls.yaml", NULL};
    golden("tls-ingress.lds", tls, ingress, PILOT_LDS, "istio=ingressgateway");
    golden("tls-ingress.rds", tls, ingress, PILOT_RDS, "istio=ingressgateway");
    golden("tls-productpage.lds", tls, productpage, PILOT_LDS, NULL);
    golden("tls-productpage.cds", tls, productpage, PILOT_CDS, NULL);
    static const char *const merge[] = {"tests/data/istio/translate/gateway-merge.yaml", NULL};
    golden("gateway-merge.rds", merge, ingress, PILOT_RDS, "istio=ingressgateway");
}

/* Checks on the messages themselves, independent of the golden text. */
static void test_messages(void)
{
    static const char *const split[] = {"samples/bookinfo-istio-tasks/virtual-service-reviews-80-20.yaml", NULL};
    struct pilot_model *m = model(split);
    if (!m)
        return;
    struct pilot_proxy p = {0};
    char err[256];
    CHECK_EQ_INT(pilot_proxy_parse(productpage, &p, err, sizeof err), 0);
    CHECK_EQ_STR(p.ip, "10.1.0.10");
    CHECK_EQ_STR(p.pod, "productpage-v1-6b746f74dc-9stvs");
    CHECK_EQ_STR(p.ns, "default");
    pilot_proxy_complete(&p, m);
    CHECK_EQ_INT(p.n_labels, 2);
    CHECK_EQ_STR(p.service_account, "bookinfo-productpage");
    struct pilot_resources r;
    CHECK_EQ_INT(pilot_translate(m, &p, PILOT_RDS, &r, NULL), 0);
    CHECK_EQ_INT(r.n, 2); /* "80" for httpbin.org and "9080" */
    if (r.n == 2) {
        CHECK_EQ_STR(r.names[1], "9080");
        const Envoy__Config__Route__V3__RouteConfiguration *rc = (const void *)r.msgs[1];
        const Envoy__Config__Route__V3__VirtualHost *vh = NULL;
        for (size_t i = 0; i < rc->n_virtual_hosts; i++)
            if (!strcmp(rc->virtual_hosts[i]->name, "reviews.default.svc.cluster.local:9080"))
                vh = rc->virtual_hosts[i];
        CHECK(vh != NULL);
        if (vh) {
            CHECK_EQ_INT(vh->n_domains, 12);
            CHECK_EQ_STR(vh->domains[0], "reviews.default.svc.cluster.local");
            CHECK_EQ_STR(vh->domains[2], "reviews");
            CHECK_EQ_STR(vh->domains[4], "reviews.default.svc.cluster");
            CHECK_EQ_STR(vh->domains[7], "reviews.default.svc:9080");
            CHECK_EQ_STR(vh->domains[8], "reviews.default");
            CHECK_EQ_STR(vh->domains[11], "10.96.0.12:9080");
            const Envoy__Config__Route__V3__RouteAction *a = vh->routes[0]->route;
            CHECK(a && a->weighted_clusters && a->weighted_clusters->n_clusters == 2);
            if (a && a->weighted_clusters && a->weighted_clusters->n_clusters == 2) {
                CHECK_EQ_STR(a->weighted_clusters->clusters[1]->name,
                             "outbound|9080|v2|reviews.default.svc.cluster.local");
                CHECK_EQ_INT(a->weighted_clusters->clusters[1]->weight->value, 20);
            }
        }
    }
    pilot_resources_free(&r);
    /* a proxy in another namespace sees no short name: reviews.default, .svc.cluster, .svc */
    struct pilot_proxy q = {0};
    CHECK_EQ_INT(pilot_proxy_parse("sidecar~10.9.0.1~x.other~other.svc.cluster.local", &q, err, sizeof err), 0);
    CHECK_EQ_INT(pilot_translate(m, &q, PILOT_RDS, &r, NULL), 0);
    if (r.n == 2) {
        const Envoy__Config__Route__V3__RouteConfiguration *rc = (const void *)r.msgs[1];
        CHECK_EQ_INT(rc->virtual_hosts[0]->n_domains, 10);
        CHECK_EQ_STR(rc->virtual_hosts[0]->domains[2], "details.default");
        CHECK_EQ_STR(rc->virtual_hosts[0]->domains[5], "details.default.svc.cluster:9080");
        CHECK_EQ_STR(rc->virtual_hosts[0]->domains[6], "details.default.svc");
    }
    pilot_resources_free(&r);
    pilot_proxy_free(&q);
    CHECK_EQ_INT(pilot_proxy_parse("sidecar~1.2.3.4", &q, err, sizeof err), -1);
    CHECK_EQ_STR(err, "node id \"sidecar~1.2.3.4\" is not TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.DOMAIN");
    pilot_proxy_free(&q);
    CHECK_EQ_INT(pilot_proxy_parse("waypoint~1.2.3.4~a.b~b.svc.cluster.local", &q, err, sizeof err), -1);
    pilot_proxy_free(&q);
    pilot_proxy_free(&p);
    pilot_model_unref(m);
}

static void test_node_metadata(void)
{
    static const char node_yaml[] =
        "id: sidecar~10.0.0.1~ratings-v1-abc.prod~prod.svc.cluster.local\n"
        "metadata:\n  LABELS: {app: ratings, version: v1}\n  NAMESPACE: prod\n"
        "  SERVICE_ACCOUNT: bookinfo-ratings\n  INSTANCE_IPS: \"10.0.0.9,fe80::1\"\n";
    struct pbmap_error perr;
    Envoy__Config__Core__V3__Node *node = (void *)pbmap_from_yaml(
        &envoy__config__core__v3__node__descriptor, node_yaml, strlen(node_yaml), "node", &perr);
    CHECK(node != NULL);
    if (!node)
        return;
    struct pilot_proxy p = {0};
    char err[128];
    CHECK_EQ_INT(pilot_proxy_from_node(node, &p, err, sizeof err), 0);
    CHECK_EQ_STR(p.ip, "10.0.0.9");
    CHECK_EQ_STR(p.ns, "prod");
    CHECK_EQ_STR(p.service_account, "bookinfo-ratings");
    CHECK_EQ_INT(p.n_labels, 2);
    if (p.n_labels == 2) {
        CHECK_EQ_STR(p.labels[0].key, "app");
        CHECK_EQ_STR(p.labels[1].value, "v1");
    }
    /* no WorkloadEntry at 10.0.0.9: the inbound side comes from the Services selecting its
     * labels in its namespace (ratings is in default, so use that namespace) */
    struct pilot_model *m = model(NULL);
    if (m) {
        free(p.ns);
        p.ns = strdup("default");
        struct pilot_resources r;
        CHECK_EQ_INT(pilot_translate(m, &p, PILOT_CDS, &r, NULL), 0);
        int inbound = 0;
        for (size_t i = 0; i < r.n; i++)
            inbound |= !strcmp(r.names[i], "inbound|9080||");
        CHECK(inbound);
        pilot_resources_free(&r);
        pilot_model_unref(m);
    }
    pilot_proxy_free(&p);
    protobuf_c_message_free_unpacked(&node->base, NULL);
}

static void test_warnings(void)
{
    static const char vs[] =
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\n"
        "spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v9}\n"
        "      weight: 50\n    - destination: {host: nowhere}\n      weight: 50\n";
    struct istio_object_list l = {0};
    struct istio_errors e = {0};
    CHECK_EQ_INT(istio_parse(vs, strlen(vs), "vs.yaml", NULL, &l, &e), 0);
    struct pilot_model *base = model(NULL);
    if (!base)
        return;
    /* the bookinfo objects plus the VirtualService */
    struct istio_object **all = calloc(base->n_objs + l.n, sizeof *all);
    size_t n = 0;
    for (size_t i = 0; i < base->n_objs; i++)
        all[n++] = base->objs[i];
    for (size_t i = 0; i < l.n; i++)
        all[n++] = l.items[i];
    struct pilot_model *m = pilot_model_new(all, n, NULL, NULL, 2);
    free(all);
    struct pilot_proxy p = {0};
    char err[128];
    CHECK_EQ_INT(pilot_proxy_parse(productpage, &p, err, sizeof err), 0);
    struct pilot_resources r;
    struct istio_errors warn = {0};
    CHECK_EQ_INT(pilot_translate(m, &p, PILOT_RDS, &r, &warn), 0);
    CHECK_EQ_INT(warn.n, 2);
    if (warn.n == 2) {
        CHECK_EQ_STR(warn.msgs[0], "vs.yaml:1: VirtualService default/r: subset v9 of reviews.default.svc.cluster.local is not defined by any DestinationRule");
        CHECK_EQ_STR(warn.msgs[1], "vs.yaml:1: VirtualService default/r: destination host nowhere.default.svc.cluster.local is not in the registry");
    }
    pilot_resources_free(&r);
    istio_errors_free(&warn);
    /* the same problems without a proxy, as weftd --validate reports them */
    CHECK_EQ_INT(pilot_check_references(m, &warn), 0);
    CHECK_EQ_INT(warn.n, 2);
    if (warn.n == 2)
        CHECK(strstr(warn.msgs[0], "subset v9 of reviews.default.svc.cluster.local") != NULL);
    istio_errors_free(&warn);
    pilot_proxy_free(&p);
    pilot_model_unref(m);
    pilot_model_unref(base);
    /* a DestinationRule exported only to its own namespace is invisible elsewhere */
    static const char dr[] =
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: shop}\n"
        "spec: {host: reviews.default.svc.cluster.local, exportTo: [.], subsets: [{name: only-shop}]}\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec: {ports: [{name: http, port: 9080}]}\n";
    struct istio_object_list l2 = {0};
    CHECK_EQ_INT(istio_parse(dr, strlen(dr), "dr.yaml", NULL, &l2, &e), 0);
    m = pilot_model_new(l2.items, l2.n, NULL, NULL, 1);
    struct pilot_proxy in_shop = {0}, in_default = {0};
    CHECK_EQ_INT(pilot_proxy_parse("sidecar~10.5.0.1~a.shop~shop.svc.cluster.local", &in_shop, err, sizeof err), 0);
    CHECK_EQ_INT(pilot_proxy_parse("sidecar~10.5.0.2~b.default~default.svc.cluster.local", &in_default, err, sizeof err), 0);
    CHECK_EQ_INT(pilot_translate(m, &in_shop, PILOT_CDS, &r, NULL), 0);
    size_t n_shop = r.n;
    pilot_resources_free(&r);
    CHECK_EQ_INT(pilot_translate(m, &in_default, PILOT_CDS, &r, NULL), 0);
    CHECK_EQ_INT(n_shop, r.n + 1); /* the only-shop subset cluster */
    pilot_resources_free(&r);
    pilot_proxy_free(&in_shop);
    pilot_proxy_free(&in_default);
    pilot_model_unref(m);
    istio_object_list_free(&l2);
    istio_object_list_free(&l);
    istio_errors_free(&e);
}

/* An egress listener with a port scopes the service ports a proxy sees. */
static void test_sidecar_ports(void)
{
    static const char *const extra[] = {"tests/data/istio/translate/sidecar-ports.yaml", NULL};
    struct pilot_model *m = model(extra);
    if (!m)
        return;
    struct pilot_proxy p = {0};
    char err[128];
    CHECK_EQ_INT(pilot_proxy_parse(productpage, &p, err, sizeof err), 0);
    pilot_proxy_complete(&p, m);
    struct pilot_resources r;
    CHECK_EQ_INT(pilot_translate(m, &p, PILOT_LDS, &r, NULL), 0);
    CHECK_EQ_INT(r.n, 4);
    if (r.n == 4) {
        CHECK_EQ_STR(r.names[0], "0.0.0.0_9080");
        CHECK_EQ_STR(r.names[1], "10.96.0.20_27017");
    }
    pilot_resources_free(&r);
    CHECK_EQ_INT(pilot_translate(m, &p, PILOT_CDS, &r, NULL), 0);
    int httpbin = 0, mongo = 0, details = 0;
    for (size_t i = 0; i < r.n; i++) {
        httpbin |= strstr(r.names[i], "httpbin") != NULL;
        mongo |= strstr(r.names[i], "mongodb") != NULL;
        details |= strstr(r.names[i], "details") != NULL;
    }
    CHECK(!httpbin && mongo && details);
    pilot_resources_free(&r);
    pilot_proxy_free(&p);
    pilot_model_unref(m);
}

TEST_MAIN(TEST(test_node_metadata), TEST(test_sidecar_ports), TEST(test_warnings), TEST(test_bookinfo_defaults), TEST(test_bookinfo_tasks), TEST(test_tls), TEST(test_messages))
