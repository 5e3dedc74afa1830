/* The config store: loading a tree, last good objects, removal, versions, inotify. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/loop.h"
#include "istio/networking/v1alpha3/destination_rule.pb-c.h"
#include "pilot/store.h"
#include "test.h"

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

static const char dr_ok[] =
    "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\n"
    "spec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}]\n"
    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\n"
    "spec: {host: ratings}\n";
/* reviews becomes invalid (bad subset name); ratings changes host */
static const char dr_bad[] =
    "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\n"
    "spec:\n  host: reviews\n  subsets: [{name: V_1}]\n"
    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\n"
    "spec: {host: ratings.other}\n";

static const char *dr_host(const struct pilot_model *m, const char *name)
{
    const struct istio_object *o = pilot_model_find(m, ISTIO_DESTINATION_RULE, "default", name);
    return o ? ((const Istio__Networking__V1alpha3__DestinationRule *)o->spec)->host : NULL;
}

static void test_load_and_last_good(void)
{
    snprintf(dir, sizeof dir, "/tmp/weft-store-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    char sub[128];
    snprintf(sub, sizeof sub, "%s/nested", dir);
    mkdir(sub, 0700);
    put("a.yaml", dr_ok);
    put("nested/svc.yml", "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\n"
                          "spec: {ports: [{name: http, port: 9080}]}\n");
    put("notes.txt", "not config");
    struct pilot_store *s = pilot_store_new(dir, NULL);
    CHECK(s != NULL);
    if (!s)
        return;
    struct pilot_model *m = pilot_store_snapshot(s);
    CHECK_EQ_INT(m->n_objs, 3);
    CHECK_EQ_INT(m->errors.n, 0);
    CHECK_EQ_INT(m->reg->n, 1);
    uint64_t v1 = m->version;
    pilot_model_unref(m);

    CHECK_EQ_INT(pilot_store_rescan(s), 0); /* nothing changed: no new snapshot */

    put("a.yaml", dr_bad);
    CHECK_EQ_INT(pilot_store_rescan(s), 1);
    m = pilot_store_snapshot(s);
    CHECK(m->version > v1);
    CHECK_EQ_INT(m->n_objs, 3);
    CHECK_EQ_STR(dr_host(m, "reviews"), "reviews"); /* the last good version */
    CHECK_EQ_STR(dr_host(m, "ratings"), "ratings.other");
    CHECK_EQ_INT(m->errors.n, 2);
    if (m->errors.n == 2) {
        char want[256];
        snprintf(want, sizeof want, "%s/a.yaml:6: spec.subsets[0].name: subset name \"V_1\" is not a valid DNS-1123 label", dir);
        CHECK_EQ_STR(m->errors.msgs[0], want);
        snprintf(want, sizeof want, "%s/a.yaml: keeping the last good version of DestinationRule default/reviews", dir);
        CHECK_EQ_STR(m->errors.msgs[1], want);
    }
    pilot_model_unref(m);

    put("a.yaml", "spec: [unclosed\n");
    CHECK_EQ_INT(pilot_store_rescan(s), 1);
    m = pilot_store_snapshot(s);
    CHECK_EQ_INT(m->n_objs, 3); /* not YAML at all: every object stays */
    CHECK_EQ_INT(m->errors.n, 3);
    pilot_model_unref(m);

    put("a.yaml", dr_ok);
    CHECK_EQ_INT(pilot_store_rescan(s), 1);
    m = pilot_store_snapshot(s);
    CHECK_EQ_INT(m->errors.n, 0);
    pilot_model_unref(m);

    char path[256];
    snprintf(path, sizeof path, "%s/nested/svc.yml", dir);
    unlink(path);
    CHECK_EQ_INT(pilot_store_rescan(s), 1);
    m = pilot_store_snapshot(s);
    CHECK_EQ_INT(m->n_objs, 2);
    CHECK_EQ_INT(m->reg->n, 0);
    pilot_model_unref(m);
    pilot_store_free(s);
}

struct watch_state {
    int calls;
    uint64_t version;
    size_t n_objs;
};

static void on_change(struct pilot_store *s, struct pilot_model *m, void *arg)
{
    struct watch_state *w = arg;
    (void)s;
    w->calls++;
    w->version = m->version;
    w->n_objs = m->n_objs;
}

static struct loop *g_loop;
static struct watch_state g_ws;
static int g_step;

static void on_tick(struct loop *l, struct timer *t)
{
    /* step 0: write a new file in a new sub-directory; then wait for the callback */
    if (g_step == 0) {
        char sub[128];
        snprintf(sub, sizeof sub, "%s/later", dir);
        mkdir(sub, 0700);
        g_step = 1;
    } else if (g_step == 1) {
        put("later/gw.yaml", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
                              "spec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}\n");
        g_step = 2;
    } else if ((g_step >= 2 && g_ws.n_objs == 3) || g_step > 200) { /* 10 s at most */
        loop_stop(l);
        return;
    } else {
        g_step++;
    }
    timer_start(l, t, 50);
}

static void test_inotify(void)
{
    struct pilot_store *s = pilot_store_new(dir, NULL);
    CHECK(s != NULL);
    if (!s)
        return;
    g_loop = loop_new(NULL, NULL);
    CHECK_EQ_INT(pilot_store_watch(s, g_loop, on_change, &g_ws), 0);
    struct timer t;
    timer_init(&t, on_tick, NULL);
    timer_start(g_loop, &t, 10);
    loop_run(g_loop);
    CHECK(g_ws.calls >= 1);
    CHECK_EQ_INT(g_ws.n_objs, 3); /* the two DestinationRules and the new Gateway */
    struct pilot_model *m = pilot_store_snapshot(s);
    CHECK_EQ_INT(m->version, g_ws.version);
    CHECK(pilot_model_find(m, ISTIO_GATEWAY, "default", "g") != NULL);
    pilot_model_unref(m);
    timer_stop(g_loop, &t);
    pilot_store_free(s);
    loop_free(g_loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

static void test_missing_dir(void)
{
    struct pilot_store *s = pilot_store_new("/nonexistent/weft", NULL);
    CHECK(s != NULL);
    struct pilot_model *m = s ? pilot_store_snapshot(s) : NULL;
    CHECK(m && m->errors.n == 1 && m->n_objs == 0);
    if (m && m->errors.n)
        CHECK_EQ_STR(m->errors.msgs[0], "/nonexistent/weft: cannot read directory: No such file or directory");
    pilot_model_unref(m);
    pilot_store_free(s);
}

TEST_MAIN(TEST(test_load_and_last_good), TEST(test_inotify), TEST(test_missing_dir))
