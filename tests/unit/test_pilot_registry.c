/* The registry: Services selecting WorkloadEntries, ServiceEntries, protocols, VIPs. */
#include <stdlib.h>

#include "pilot/model.h"
#include "pilot/store.h"
#include "test.h"

static struct pilot_model *load(const char *dir)
{
    struct pilot_store *s = pilot_store_new(dir, NULL);
    struct pilot_model *m = s ? pilot_store_snapshot(s) : NULL;
    pilot_store_free(s);
    return m;
}

static size_t count_eps(const struct reg_service *s, size_t port, const char *version)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_eps[port]; i++) {
        const struct reg_endpoint *e = &s->eps[port][i];
        for (size_t k = 0; k < e->n_labels; k++)
            if (!strcmp(e->labels[k].key, "version") && !strcmp(e->labels[k].value, version))
                n++;
    }
    return n;
}

static void test_bookinfo(void)
{
    struct pilot_model *m = load("samples/bookinfo-istio");
    CHECK(m != NULL);
    if (!m)
        return;
    CHECK_EQ_INT(m->errors.n, 0);
    const struct registry *r = m->reg;
    CHECK_EQ_INT(r->n, 6);
    const struct reg_service *rv = registry_find(r, "reviews.default.svc.cluster.local");
    CHECK(rv != NULL);
    if (rv) {
        CHECK_EQ_STR(rv->vip, "10.96.0.12");
        CHECK_EQ_INT(rv->vip_auto, 0);
        CHECK_EQ_INT(rv->n_ports, 1);
        CHECK_EQ_INT(rv->ports[0].protocol, REG_PROTO_HTTP);
        CHECK_EQ_STR(rv->ports[0].target_name, "http-web");
        CHECK_EQ_INT(rv->n_eps[0], 3);
        CHECK_EQ_INT(count_eps(rv, 0, "v2"), 1);
        CHECK_EQ_INT(rv->eps[0][0].port, 9080); /* the WorkloadEntry's port named http-web */
        CHECK_EQ_STR(rv->eps[0][2].locality, "us-east/zone-b");
        CHECK_EQ_INT(rv->eps[0][2].weight, 2);
        CHECK_EQ_STR(rv->eps[0][0].service_account, "bookinfo-reviews");
    }
    const struct reg_service *ra = registry_find(r, "ratings.default.svc.cluster.local");
    CHECK(ra && ra->ports[0].protocol == REG_PROTO_HTTP); /* appProtocol: http, no name */
    const struct reg_service *mg = registry_find(r, "mongodb.default.svc.cluster.local");
    CHECK(mg && mg->ports[0].protocol == REG_PROTO_MONGO && mg->n_eps[0] == 1);
    const struct reg_service *hb = registry_find(r, "httpbin.org");
    CHECK(hb != NULL);
    if (hb) {
        CHECK_EQ_INT(hb->resolution, REG_RES_DNS);
        CHECK_EQ_INT(hb->mesh_external, 1);
        CHECK_EQ_INT(hb->vip_auto, 1);
        CHECK(!strncmp(hb->vip, "240.240.", 8));
        CHECK_EQ_INT(hb->n_eps[0], 1); /* DNS without endpoints: the host itself */
        CHECK_EQ_STR(hb->eps[0][0].address, "httpbin.org");
    }
    CHECK(registry_find(r, "nope.default.svc.cluster.local") == NULL);
    /* the VIP does not depend on load order: a second build gives the same address */
    struct pilot_model *m2 = load("samples/bookinfo-istio");
    const struct reg_service *hb2 = m2 ? registry_find(m2->reg, "httpbin.org") : NULL;
    CHECK(hb && hb2 && !strcmp(hb->vip, hb2->vip));
    pilot_model_unref(m2);
    pilot_model_unref(m);
}

static void test_protocols(void)
{
    CHECK_EQ_INT(reg_protocol_from("http", NULL), REG_PROTO_HTTP);
    CHECK_EQ_INT(reg_protocol_from("http-web", NULL), REG_PROTO_HTTP);
    CHECK_EQ_INT(reg_protocol_from("HTTP2-x", NULL), REG_PROTO_HTTP2);
    CHECK_EQ_INT(reg_protocol_from("grpc-web", NULL), REG_PROTO_GRPC_WEB);
    CHECK_EQ_INT(reg_protocol_from("grpc-foo", NULL), REG_PROTO_GRPC);
    CHECK_EQ_INT(reg_protocol_from("tcp-db", NULL), REG_PROTO_TCP);
    CHECK_EQ_INT(reg_protocol_from("https", NULL), REG_PROTO_HTTPS);
    CHECK_EQ_INT(reg_protocol_from("web", NULL), REG_PROTO_UNSUPPORTED);
    CHECK_EQ_INT(reg_protocol_from("httpx", NULL), REG_PROTO_UNSUPPORTED);
    CHECK_EQ_INT(reg_protocol_from("web", "http2"), REG_PROTO_HTTP2);
    CHECK_EQ_INT(reg_protocol_from("tcp", "kubernetes.io/h2c"), REG_PROTO_HTTP2);
    CHECK(reg_protocol_is_http(REG_PROTO_GRPC));
    CHECK(!reg_protocol_is_http(REG_PROTO_TCP));
}

static void test_service_entry_static(void)
{
    static const char text[] =
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db, namespace: data}\n"
        "spec:\n  hosts: [db.internal, db2.internal]\n  location: MESH_INTERNAL\n  resolution: STATIC\n"
        "  ports: [{number: 5432, name: tcp-pg, protocol: TCP, targetPort: 15432}]\n"
        "  endpoints:\n  - {address: 10.3.0.1}\n  - {address: 10.3.0.2, ports: {tcp-pg: 6000}, labels: {role: replica}}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: vm, namespace: data}\n"
        "spec:\n  hosts: [vm.internal]\n  addresses: [192.168.7.7]\n  resolution: STATIC\n"
        "  ports: [{number: 80, name: http, protocol: HTTP}]\n  workloadSelector: {labels: {app: vm}}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm1, namespace: data}\n"
        "spec: {address: 10.4.0.1, labels: {app: vm}}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm2, namespace: other}\n"
        "spec: {address: 10.4.0.2, labels: {app: vm}}\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: data}\n"
        "spec: {type: ExternalName, externalName: api.example.net, ports: [{name: https, port: 443}]}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: rr, namespace: data}\n"
        "spec: {hosts: [rr.example.net], resolution: DNS_ROUND_ROBIN, ports: [{number: 80, name: http, protocol: HTTP}]}\n";
    struct istio_object_list l = {0};
    struct istio_errors e = {0};
    CHECK_EQ_INT(istio_parse(text, strlen(text), "se.yaml", NULL, &l, &e), 0);
    struct pilot_model *m = pilot_model_new(l.items, l.n, &e, NULL, 1);
    CHECK(m != NULL);
    if (m) {
        CHECK_EQ_INT(m->reg->n, 5);
        const struct reg_service *ext = registry_find(m->reg, "ext.data.svc.cluster.local");
        CHECK(ext && ext->resolution == REG_RES_DNS && !*ext->vip && ext->n_eps[0] == 1 &&
              !strcmp(ext->eps[0][0].address, "api.example.net") && ext->eps[0][0].port == 443);
        const struct reg_service *rr = registry_find(m->reg, "rr.example.net");
        CHECK(rr && rr->resolution == REG_RES_DNS_RR && rr->n_eps[0] == 1);
        const struct reg_service *db = registry_find(m->reg, "db2.internal");
        CHECK(db && db->n_eps[0] == 2 && db->eps[0][0].port == 15432 && db->eps[0][1].port == 6000);
        CHECK(db && db->ports[0].protocol == REG_PROTO_TCP && !db->mesh_external);
        const struct reg_service *vm = registry_find(m->reg, "vm.internal");
        CHECK(vm && !strcmp(vm->vip, "192.168.7.7") && vm->n_eps[0] == 1); /* same namespace only */
        CHECK(vm && vm->ports[0].protocol == REG_PROTO_HTTP);
        const struct reg_service *d1 = registry_find(m->reg, "db.internal");
        CHECK(d1 && db && strcmp(d1->vip, db->vip) && !strncmp(d1->vip, "240.240.", 8));
    }
    pilot_model_unref(m);
    istio_object_list_free(&l);
    istio_errors_free(&e);
}

TEST_MAIN(TEST(test_bookinfo), TEST(test_protocols), TEST(test_service_entry_static))
