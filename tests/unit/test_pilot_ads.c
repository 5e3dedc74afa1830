/* The ADS request handler: debounce, version/nonce/ACK/NACK bookkeeping, targeted pushes,
 * Delta subscriptions, and backpressure (coalesced pending pushes), over a fake transport. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/loop.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "pilot/ads.h"
#include "pilot/store.h"
#include "test.h"

#define SIDECAR "sidecar~10.1.0.10~productpage-v1-abc.default~default.svc.cluster.local"

/* A transport that keeps what it is given, or refuses while full. */
struct fake {
    bool full;
    int n;
    uint8_t *last;
    size_t last_len;
};

static int fake_send(void *ctx, const uint8_t *msg, size_t len)
{
    struct fake *f = ctx;
    if (f->full)
        return -ENOBUFS;
    free(f->last);
    f->last = malloc(len ? len : 1);
    memcpy(f->last, msg, len);
    f->last_len = len;
    f->n++;
    return 0;
}

static Envoy__Service__Discovery__V3__DiscoveryResponse *last_resp(struct fake *f)
{
    return envoy__service__discovery__v3__discovery_response__unpack(NULL, f->last_len, f->last);
}

static Envoy__Service__Discovery__V3__DeltaDiscoveryResponse *last_delta(struct fake *f)
{
    return envoy__service__discovery__v3__delta_discovery_response__unpack(NULL, f->last_len, f->last);
}

static int send_req(struct ads_conn *c, bool with_node, enum pilot_type t, const char *version,
                    const char *nonce, char **names, size_t n, const char *error)
{
    Envoy__Service__Discovery__V3__DiscoveryRequest r = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_REQUEST__INIT;
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    node.id = SIDECAR;
    if (with_node)
        r.node = &node;
    r.type_url = (char *)pilot_type_url(t);
    r.version_info = (char *)(version ? version : "");
    r.response_nonce = (char *)(nonce ? nonce : "");
    r.resource_names = names;
    r.n_resource_names = n;
    if (error) {
        st.code = 3;
        st.message = (char *)error;
        r.error_detail = &st;
    }
    uint8_t buf[4096];
    size_t len = protobuf_c_message_pack(&r.base, buf);
    const char *why;
    return ads_conn_on_message(c, buf, len, &why);
}

static int send_delta(struct ads_conn *c, bool with_node, enum pilot_type t, const char *nonce,
                      char **sub, size_t nsub, char **unsub, size_t nunsub)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest r =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    node.id = SIDECAR;
    if (with_node)
        r.node = &node;
    r.type_url = (char *)pilot_type_url(t);
    r.response_nonce = (char *)(nonce ? nonce : "");
    r.resource_names_subscribe = sub;
    r.n_resource_names_subscribe = nsub;
    r.resource_names_unsubscribe = unsub;
    r.n_resource_names_unsubscribe = nunsub;
    uint8_t buf[4096];
    size_t len = protobuf_c_message_pack(&r.base, buf);
    const char *why;
    return ads_conn_on_message(c, buf, len, &why);
}

static void test_debounce(void)
{
    struct ads_debounce d = {.quiet_ms = 100, .max_ms = 1000};
    CHECK(ads_debounce_deadline(&d) == UINT64_MAX);
    CHECK(!ads_debounce_due(&d, 5000));
    ads_debounce_event(&d, 0);
    ads_debounce_event(&d, 50);
    ads_debounce_event(&d, 120);
    CHECK_EQ_INT(ads_debounce_deadline(&d), 220);       /* quiet period after the last change */
    CHECK(!ads_debounce_due(&d, 219));
    CHECK(ads_debounce_due(&d, 220));
    ads_debounce_reset(&d);
    CHECK(!ads_debounce_due(&d, 10000));
    /* a steady stream of changes is still pushed after max_ms */
    for (uint64_t t = 2000; t < 4000; t += 50)
        ads_debounce_event(&d, t);
    CHECK_EQ_INT(ads_debounce_deadline(&d), 3000);
}

static char dir[64];

static void put(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static const char vs_v1[] = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
                            "spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v1}}]\n";
static const char vs_v2[] = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
                            "spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v2}}]\n";

static struct pilot_store *make_store(void)
{
    snprintf(dir, sizeof dir, "/tmp/weft-ads-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "cp samples/bookinfo-istio/*.yaml %s/", dir);
    CHECK(system(cmd) == 0);
    put("vs.yaml", vs_v1);
    return pilot_store_new(dir, "cluster.local");
}

static void drop_store(struct pilot_store *s)
{
    pilot_store_free(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void change_model(struct ads_server *a, struct pilot_store *st, const char *vs)
{
    put("vs.yaml", vs);
    CHECK_EQ_INT(pilot_store_rescan(st), 1);
    struct pilot_model *m = pilot_store_snapshot(st);
    ads_server_set_model(a, m);
    pilot_model_unref(m);
}

static void test_sotw_ack_nack(void)
{
    struct loop *l = loop_new(NULL, NULL);
    struct pilot_store *st = make_store();
    struct pilot_model *m = pilot_store_snapshot(st);
    struct ads_server *a = ads_server_new(l, m, NULL);
    pilot_model_unref(m);
    struct fake f = {0};
    struct ads_conn *c = ads_conn_new(a, false, fake_send, &f);
    struct ads_type_state ts;

    /* first request without a node is refused */
    CHECK_EQ_INT(send_req(c, false, PILOT_CDS, NULL, NULL, NULL, 0, NULL), -EINVAL);
    CHECK_EQ_INT(send_req(c, true, PILOT_CDS, NULL, NULL, NULL, 0, NULL), 0);
    CHECK_EQ_INT(f.n, 1);
    Envoy__Service__Discovery__V3__DiscoveryResponse *r = last_resp(&f);
    CHECK(r && r->n_resources > 5 && !strcmp(r->type_url, pilot_type_url(PILOT_CDS)));
    char v1[32], n1[32];
    snprintf(v1, sizeof v1, "%s", r->version_info);
    snprintf(n1, sizeof n1, "%s", r->nonce);
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    /* ACK: no response, recorded */
    CHECK_EQ_INT(send_req(c, false, PILOT_CDS, v1, n1, NULL, 0, NULL), 0);
    CHECK_EQ_INT(f.n, 1);
    ads_conn_type_state(c, PILOT_CDS, &ts);
    CHECK_EQ_STR(ts.acked_nonce, n1);
    CHECK_EQ_STR(ts.acked_version, v1);
    CHECK(ts.wildcard);
    /* a stale nonce is ignored */
    CHECK_EQ_INT(send_req(c, false, PILOT_CDS, v1, "stale", NULL, 0, "bad"), 0);
    struct ads_stats ss;
    ads_server_get_stats(a, &ss);
    CHECK_EQ_INT(ss.stale_requests, 1);
    CHECK_EQ_INT(ss.rejects[PILOT_CDS], 0);

    /* RDS for one name, then a NACK of it */
    char *rname[] = {"9080"};
    CHECK_EQ_INT(send_req(c, false, PILOT_RDS, NULL, NULL, rname, 1, NULL), 0);
    CHECK_EQ_INT(f.n, 2);
    ads_conn_type_state(c, PILOT_RDS, &ts);
    CHECK_EQ_INT(ts.n_resources, 1);
    char n2[32];
    snprintf(n2, sizeof n2, "%s", ts.sent_nonce);
    CHECK_EQ_INT(send_req(c, false, PILOT_RDS, "", n2, rname, 1, "rejected by test"), 0);
    ads_conn_type_state(c, PILOT_RDS, &ts);
    CHECK_EQ_INT(ts.nacks, 1);
    CHECK_EQ_STR(ts.nacked_nonce, n2);
    CHECK_EQ_STR(ts.nack_error, "rejected by test");
    ads_server_get_stats(a, &ss);
    CHECK_EQ_INT(ss.rejects[PILOT_RDS], 1);
    /* a push with nothing changed sends nothing; the NACKed version is not resent */
    ads_server_push_all(a);
    CHECK_EQ_INT(f.n, 2);
    /* the same subscription again (ACK-like, nonce matches) sends nothing either */
    CHECK_EQ_INT(send_req(c, false, PILOT_RDS, v1, n2, rname, 1, NULL), 0);
    CHECK_EQ_INT(f.n, 2);

    /* a VirtualService change: RDS only */
    change_model(a, st, vs_v2);
    CHECK(ads_debounce_deadline(&(struct ads_debounce){0}) == UINT64_MAX);
    ads_server_push_all(a);
    CHECK_EQ_INT(f.n, 3);
    r = last_resp(&f);
    CHECK(r && !strcmp(r->type_url, pilot_type_url(PILOT_RDS)) && strcmp(r->version_info, v1));
    if (r)
        envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    ads_server_get_stats(a, &ss);
    CHECK_EQ_INT(ss.conv_count, 1);

    /* backpressure: pushes while full coalesce into one pending type */
    f.full = true;
    change_model(a, st, vs_v1);
    ads_server_push_all(a);
    change_model(a, st, vs_v2);
    ads_server_push_all(a);
    change_model(a, st, vs_v1);
    ads_server_push_all(a);
    ads_conn_type_state(c, PILOT_RDS, &ts);
    CHECK(ts.pending);
    ads_server_get_stats(a, &ss);
    CHECK_EQ_INT(ss.pending_pushes, 1);
    f.full = false;
    ads_conn_on_writable(c);
    CHECK_EQ_INT(f.n, 4);    /* one message, the latest */
    r = last_resp(&f);
    CHECK(r && r->n_resources == 1);
    if (r)
        envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    ads_server_get_stats(a, &ss);
    CHECK_EQ_INT(ss.pending_pushes, 0);

    char *js = ads_server_syncz_json(a);
    CHECK(js && strstr(js, SIDECAR) && strstr(js, "rejected by test"));
    free(js);
    char *mt = ads_server_metrics(a);
    CHECK(mt && strstr(mt, "pilot_total_xds_rejects 1\n") && strstr(mt, "pilot_xds 1\n"));
    free(mt);

    /* undecodable bytes */
    const char *why;
    CHECK_EQ_INT(ads_conn_on_message(c, (const uint8_t *)"\xff\xff\xff", 3, &why), -EINVAL);
    ads_conn_free(c);
    free(f.last);
    ads_server_free(a);
    drop_store(st);
    loop_free(l);
}

static void test_delta(void)
{
    struct loop *l = loop_new(NULL, NULL);
    struct pilot_store *st = make_store();
    struct pilot_model *m = pilot_store_snapshot(st);
    struct ads_server *a = ads_server_new(l, m, NULL);
    pilot_model_unref(m);
    struct fake f = {0};
    struct ads_conn *c = ads_conn_new(a, true, fake_send, &f);
    struct ads_type_state ts;

    CHECK_EQ_INT(send_delta(c, true, PILOT_CDS, NULL, NULL, 0, NULL, 0), 0);
    CHECK_EQ_INT(f.n, 1);
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse *r = last_delta(&f);
    size_t ncl = r ? r->n_resources : 0;
    CHECK(ncl > 5 && r->resources[0]->version[0]);
    char nonce[32];
    snprintf(nonce, sizeof nonce, "%s", r ? r->nonce : "");
    if (r)
        envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
    CHECK_EQ_INT(send_delta(c, false, PILOT_CDS, nonce, NULL, 0, NULL, 0), 0);
    CHECK_EQ_INT(f.n, 1);
    ads_conn_type_state(c, PILOT_CDS, &ts);
    CHECK_EQ_INT(ts.acks, 1);
    CHECK_EQ_INT(ts.n_resources, ncl);

    char *sub[] = {"outbound|9080|v1|reviews.default.svc.cluster.local",
                   "outbound|9080|v2|reviews.default.svc.cluster.local"};
    CHECK_EQ_INT(send_delta(c, false, PILOT_EDS, NULL, sub, 1, NULL, 0), 0);
    CHECK_EQ_INT(f.n, 2);
    r = last_delta(&f);
    CHECK(r && r->n_resources == 1 && !strcmp(r->resources[0]->name, sub[0]));
    if (r)
        envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
    CHECK_EQ_INT(send_delta(c, false, PILOT_EDS, NULL, sub, 2, NULL, 0), 0);
    CHECK_EQ_INT(f.n, 3);
    r = last_delta(&f);
    CHECK(r && r->n_resources == 1 && !strcmp(r->resources[0]->name, sub[1]));
    if (r)
        envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
    CHECK_EQ_INT(send_delta(c, false, PILOT_EDS, NULL, NULL, 0, sub, 1), 0);
    CHECK_EQ_INT(f.n, 3);
    ads_conn_type_state(c, PILOT_EDS, &ts);
    CHECK_EQ_INT(ts.n_names, 1);
    CHECK_EQ_INT(ts.n_resources, 1);
    /* nothing changed: no push */
    ads_server_push_all(a);
    CHECK_EQ_INT(f.n, 3);

    ads_conn_free(c);
    free(f.last);
    ads_server_free(a);
    drop_store(st);
    loop_free(l);
}

/* The generation cache shares results between proxies that differ only in an IP that is no
 * endpoint's address. That holds only while the translator reads the proxy IP for nothing
 * else: check it on the bookinfo sample, for every type. */
static void test_ip_independence(void)
{
    struct pilot_store *st = make_store();
    struct pilot_model *m = pilot_store_snapshot(st);
    const char *ids[2] = {"sidecar~10.9.9.1~a.default~default.svc.cluster.local",
                          "sidecar~10.9.9.2~b.default~default.svc.cluster.local"};
    for (int t = 0; t < PILOT_TYPE_COUNT; t++) {
        uint8_t *out[2] = {0};
        size_t len[2] = {0};
        for (int k = 0; k < 2; k++) {
            struct pilot_proxy p = {0};
            char err[128];
            CHECK(pilot_proxy_parse(ids[k], &p, err, sizeof err) == 0);
            pilot_proxy_set_label(&p, "app", "productpage");
            struct pilot_resources r;
            CHECK(pilot_translate(m, &p, (enum pilot_type)t, &r, NULL) == 0);
            for (size_t i = 0; i < r.n; i++) {
                size_t l = protobuf_c_message_get_packed_size(r.msgs[i]);
                out[k] = realloc(out[k], len[k] + l + 1);
                protobuf_c_message_pack(r.msgs[i], out[k] + len[k]);
                len[k] += l;
            }
            pilot_resources_free(&r);
            pilot_proxy_free(&p);
        }
        CHECK(len[0] == len[1] && (!len[0] || !memcmp(out[0], out[1], len[0])));
        free(out[0]);
        free(out[1]);
    }
    pilot_model_unref(m);
    drop_store(st);
}

/* Many streams with the same inputs: translated once per model version. */
static void test_cache(void)
{
    struct loop *l = loop_new(NULL, NULL);
    struct pilot_store *st = make_store();
    struct pilot_model *m = pilot_store_snapshot(st);
    struct ads_server *a = ads_server_new(l, m, NULL);
    pilot_model_unref(m);
    struct fake f[3] = {0};
    struct ads_conn *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = ads_conn_new(a, false, fake_send, &f[i]);
        CHECK_EQ_INT(send_req(c[i], true, PILOT_CDS, NULL, NULL, NULL, 0, NULL), 0);
        CHECK_EQ_INT(f[i].n, 1);
    }
    struct ads_stats ss;
    ads_server_get_stats(a, &ss);
    CHECK_EQ_INT(ss.cache_misses, 1);
    CHECK_EQ_INT(ss.cache_hits, 2);
    CHECK(f[0].last_len == f[2].last_len);
    change_model(a, st, vs_v2);      /* routes change, clusters do not */
    ads_server_push_all(a);
    ads_server_get_stats(a, &ss);
    CHECK_EQ_INT(ss.cache_misses, 2);
    CHECK_EQ_INT(f[1].n, 1);
    for (int i = 0; i < 3; i++) {
        ads_conn_free(c[i]);
        free(f[i].last);
    }
    ads_server_free(a);
    drop_store(st);
    loop_free(l);
}

TEST_MAIN(TEST(test_debounce), TEST(test_sotw_ack_nack), TEST(test_delta), TEST(test_ip_independence),
          TEST(test_cache))
