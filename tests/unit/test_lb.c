/* Load balancer: policies, priorities, panic, exclusion, and Envoy's exact ring hash and Maglev
 * results (expected values are the ones Envoy's own tests state for the same inputs). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/lb.h"
#include "test.h"

#define MAXH 128

struct hostset {
    struct lb_host_info h[MAXH];
    char keys[MAXH][32];
    size_t n;
};

/* Adds a host "ip:port" with weight, priority and health. */
static size_t add(struct hostset *hs, const char *key, uint32_t w, uint32_t prio, bool healthy)
{
    size_t i = hs->n++;
    snprintf(hs->keys[i], sizeof hs->keys[i], "%s", key);
    hs->h[i] = (struct lb_host_info){ .key = hs->keys[i], .key_len = strlen(hs->keys[i]),
                                      .weight = w, .priority = prio, .healthy = healthy };
    return i;
}

static void add_n(struct hostset *hs, size_t n, uint32_t w, uint32_t prio, bool healthy)
{
    for (size_t i = 0; i < n; i++) {
        char k[32];
        snprintf(k, sizeof k, "10.%u.0.%zu:8080", prio, hs->n);
        add(hs, k, w, prio, healthy);
    }
}

static struct lb_table *build_cfg(const struct lb_config *c, const struct hostset *hs)
{
    char err[256];
    struct lb_table *t = lb_table_build(c, hs->h, hs->n, err, sizeof err);
    if (!t)
        fprintf(stderr, "lb_table_build: %s\n", err);
    return t;
}

static struct lb_table *build(enum lb_policy p, const struct hostset *hs)
{
    struct lb_config c;
    lb_config_defaults(&c, p);
    return build_cfg(&c, hs);
}

static bool within(double got, double want, double tol)
{
    bool ok = got >= want - tol && got <= want + tol;
    if (!ok)
        fprintf(stderr, "  got %.4f, want %.4f ± %.4f\n", got, want, tol);
    return ok;
}

static uint64_t key_hash(unsigned i)
{
    char k[32];
    int n = snprintf(k, sizeof k, "user-%u", i);
    return lb_hash_key(k, (size_t)n);
}

static void test_policy_parse(void)
{
    CHECK_EQ_INT(lb_policy_parse("ROUND_ROBIN"), LB_ROUND_ROBIN);
    CHECK_EQ_INT(lb_policy_parse("LEAST_REQUEST"), LB_LEAST_REQUEST);
    CHECK_EQ_INT(lb_policy_parse("RANDOM"), LB_RANDOM);
    CHECK_EQ_INT(lb_policy_parse("RING_HASH"), LB_RING_HASH);
    CHECK_EQ_INT(lb_policy_parse("MAGLEV"), LB_MAGLEV);
    CHECK_EQ_INT(lb_policy_parse("CLUSTER_PROVIDED"), -EINVAL);
    CHECK_EQ_INT(lb_policy_parse("round_robin"), -EINVAL);
    CHECK_EQ_INT(lb_policy_parse(NULL), -EINVAL);
    /* XXH64 of nothing, seed 0: the algorithm's published value. */
    CHECK(lb_hash_key("", 0) == 0xef46db3751d8e999ULL);
}

/* Returns the error text of a failed build, or "" when it succeeded (and frees the table). */
static const char *build_err(const struct lb_config *c, const struct hostset *hs)
{
    static char err[256];
    struct lb_table *t = lb_table_build(c, hs->h, hs->n, err, sizeof err);
    if (t) {
        lb_table_free(t);
        return "";
    }
    return err;
}

static void test_config_errors(void)
{
    struct hostset hs = {0};
    add_n(&hs, 3, 1, 0, true);
    struct lb_config c;

    lb_config_defaults(&c, LB_MAGLEV);
    c.maglev_table_size = 8;
    CHECK(strstr(build_err(&c, &hs), "prime") != NULL);
    c.maglev_table_size = 6000011;
    CHECK(strstr(build_err(&c, &hs), "over") != NULL);
    c.maglev_table_size = 0;   /* default */
    CHECK_EQ_STR(build_err(&c, &hs), "");

    lb_config_defaults(&c, LB_RING_HASH);
    c.ring_min_size = 20;
    c.ring_max_size = 10;
    CHECK_EQ_STR(build_err(&c, &hs), "ring hash: minimum_ring_size (20) > maximum_ring_size (10)");
    lb_config_defaults(&c, LB_RING_HASH);
    c.ring_max_size = 9000000;
    CHECK(strstr(build_err(&c, &hs), "maximum_ring_size") != NULL);
    lb_config_defaults(&c, LB_RING_HASH);
    c.ring_hash_fn = LB_HASH_MURMUR_HASH_2;
    CHECK(strstr(build_err(&c, &hs), "XX_HASH") != NULL);

    lb_config_defaults(&c, LB_LEAST_REQUEST);
    c.choice_count = 1;
    CHECK(strstr(build_err(&c, &hs), "choice_count") != NULL);
    lb_config_defaults(&c, LB_LEAST_REQUEST);
    c.active_request_bias = -1.0;
    CHECK(strstr(build_err(&c, &hs), "active_request_bias") != NULL);

    lb_config_defaults(&c, LB_ROUND_ROBIN);
    c.overprovisioning_factor = -2.0;
    CHECK(strstr(build_err(&c, &hs), "overprovisioning") != NULL);
    c.policy = (enum lb_policy)42;
    c.overprovisioning_factor = 1.4;
    CHECK(strstr(build_err(&c, &hs), "lb_policy") != NULL);

    /* Hashing needs an address per host. */
    lb_config_defaults(&c, LB_RING_HASH);
    hs.h[1].key_len = 0;
    CHECK(strstr(build_err(&c, &hs), "host 1") != NULL);
    static char longkey[LB_KEY_MAX + 1];
    memset(longkey, 'a', sizeof longkey);
    hs.h[1].key = longkey;
    hs.h[1].key_len = sizeof longkey;
    CHECK(strstr(build_err(&c, &hs), "host 1") != NULL);
    hs.h[1].key_len = LB_KEY_MAX;
    CHECK_EQ_STR(build_err(&c, &hs), "");
    hs.h[1].key_len = 0;
    c.policy = LB_ROUND_ROBIN;   /* other policies ignore keys */
    CHECK_EQ_STR(build_err(&c, &hs), "");

    /* Weight sums per priority must fit in 32 bits, as in Envoy. */
    struct hostset big = {0};
    add_n(&big, 2, 3000000000u, 0, true);
    lb_config_defaults(&c, LB_ROUND_ROBIN);
    CHECK(strstr(build_err(&c, &big), "sum of weights") != NULL);

    struct hostset many = {0};
    for (uint32_t p = 0; p <= LB_MAX_PRIORITIES; p++)
        add_n(&many, 1, 1, p * 7, true);
    CHECK(strstr(build_err(&c, &many), "priorities") != NULL);

    CHECK(lb_table_build(NULL, hs.h, hs.n, NULL, 0) == NULL);
}

static void test_no_hosts(void)
{
    for (int p = LB_ROUND_ROBIN; p <= LB_MAGLEV; p++) {
        struct lb_config c;
        lb_config_defaults(&c, (enum lb_policy)p);
        struct lb_table *t = lb_table_build(&c, NULL, 0, NULL, 0);
        CHECK(t != NULL);
        struct lb_state *s = lb_state_new(t, 1);
        CHECK(s != NULL);
        CHECK_EQ_INT(lb_pick(t, s, true, 42, NULL, NULL), -1);
        CHECK_EQ_INT(lb_pick(t, s, false, 0, NULL, NULL), -1);
        CHECK_EQ_INT(lb_table_levels(t), 0);
        lb_state_free(s);
        lb_table_free(t);
    }
    lb_table_free(NULL);
    lb_state_free(NULL);
    CHECK(lb_state_new(NULL, 1) == NULL);
}

static void test_round_robin_equal(void)
{
    struct hostset hs = {0};
    add_n(&hs, 4, 1, 0, true);
    struct lb_table *t = build(LB_ROUND_ROBIN, &hs);
    struct lb_state *s = lb_state_new(t, 7);
    int prev = lb_pick(t, s, false, 0, NULL, NULL);
    unsigned counts[4] = {0};
    for (int i = 0; i < 400; i++) {
        int h = lb_pick(t, s, false, 0, NULL, NULL);
        CHECK_EQ_INT(h, (prev + 1) % 4);   /* plain rotation */
        counts[h]++;
        prev = h;
    }
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(counts[i], 100);
    lb_state_free(s);

    /* Workers start at different places. */
    unsigned firsts[4] = {0};
    for (uint64_t seed = 1; seed <= 40; seed++) {
        s = lb_state_new(t, seed);
        firsts[lb_pick(t, s, false, 0, NULL, NULL)]++;
        lb_state_free(s);
    }
    for (int i = 0; i < 4; i++)
        CHECK(firsts[i] > 0);
    lb_table_free(t);
}

static void test_round_robin_weighted(void)
{
    struct hostset hs = {0};
    add(&hs, "10.0.0.1:80", 1, 0, true);
    add(&hs, "10.0.0.2:80", 3, 0, true);
    add(&hs, "10.0.0.3:80", 5, 0, false);   /* unhealthy: never picked (2/3 healthy, no panic) */
    struct lb_table *t = build(LB_ROUND_ROBIN, &hs);
    struct lb_state *s = lb_state_new(t, 99);
    unsigned counts[3] = {0};
    const int N = 100000;
    for (int i = 0; i < N; i++)
        counts[lb_pick(t, s, false, 0, NULL, NULL)]++;
    CHECK(within((double)counts[1] / N, 0.75, 0.02));
    CHECK(within((double)counts[0] / N, 0.25, 0.02));
    CHECK_EQ_INT(counts[2], 0);

    /* Smooth: the 1-weight host never waits more than a few picks between turns. */
    int since = 0, worst = 0;
    for (int i = 0; i < 1000; i++) {
        since = lb_pick(t, s, false, 0, NULL, NULL) == 0 ? 0 : since + 1;
        worst = since > worst ? since : worst;
    }
    CHECK(worst <= 4);
    lb_state_free(s);
    lb_table_free(t);
}

static void test_least_request(void)
{
    struct hostset hs = {0};
    add_n(&hs, 4, 1, 0, true);
    struct lb_table *t = build(LB_LEAST_REQUEST, &hs);
    struct lb_state *s = lb_state_new(t, 5);
    uint32_t active[4] = {100, 0, 0, 0};
    unsigned counts[4] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++)
        counts[lb_pick(t, s, false, 0, active, NULL)]++;
    /* Host 0 only wins when both choices land on it: 1/16. */
    CHECK(within((double)counts[0] / N, 1.0 / 16, 0.02));
    memset(active, 0, sizeof active);
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < N; i++)
        counts[lb_pick(t, s, false, 0, active, NULL)]++;
    for (int i = 0; i < 4; i++)
        CHECK(within((double)counts[i] / N, 0.25, 0.025));
    lb_state_free(s);
    lb_table_free(t);
}

static void test_least_request_weighted(void)
{
    struct hostset hs = {0};
    add(&hs, "10.0.0.1:80", 2, 0, true);
    add(&hs, "10.0.0.2:80", 2, 0, true);
    add(&hs, "10.0.0.3:80", 2, 0, true);
    add(&hs, "10.0.0.4:80", 3, 0, true);
    struct lb_table *t = build(LB_LEAST_REQUEST, &hs);
    struct lb_state *s = lb_state_new(t, 11);
    uint32_t active[4] = {10, 0, 0, 0};   /* host 0 is busy */
    unsigned counts[4] = {0};
    const int N = 30000;
    for (int i = 0; i < N; i++)
        counts[lb_pick(t, s, false, 0, active, NULL)]++;
    /* Effective weights 2/11, 2, 2, 3. */
    double total = 2.0 / 11 + 7;
    CHECK(within((double)counts[0] / N, (2.0 / 11) / total, 0.01));
    CHECK(within((double)counts[3] / N, 3 / total, 0.02));
    CHECK(counts[0] * 5 < counts[1]);

    /* A simulation: each pick adds a request that lasts a while; a slow host (0) keeps its
     * requests 10 times longer and should end up with far fewer picks per weight. */
    lb_state_free(s);
    s = lb_state_new(t, 12);
    memset(active, 0, sizeof active);
    memset(counts, 0, sizeof counts);
    enum { Q = 64 };
    struct { int host, left; } q[Q] = {{0, 0}};
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < Q; k++)
            if (q[k].left > 0 && --q[k].left == 0)
                active[q[k].host]--;
        int h = lb_pick(t, s, false, 0, active, NULL);
        counts[h]++;
        active[h]++;
        int slot = i % Q;
        if (q[slot].left > 0)
            active[q[slot].host]--;
        q[slot].host = h;
        q[slot].left = h == 0 ? 60 : 6;
    }
    CHECK(counts[0] < counts[1] / 2);

    /* Bias 0: plain weights, active requests ignored. */
    struct lb_config c;
    lb_config_defaults(&c, LB_LEAST_REQUEST);
    c.active_request_bias = 0.0;
    struct lb_table *t0 = build_cfg(&c, &hs);
    struct lb_state *s0 = lb_state_new(t0, 13);
    uint32_t busy[4] = {1000, 0, 0, 0};
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < 9000; i++)
        counts[lb_pick(t0, s0, false, 0, busy, NULL)]++;
    CHECK(within(counts[0] / 9000.0, 2.0 / 9, 0.01));
    lb_state_free(s0);
    lb_table_free(t0);
    lb_state_free(s);
    lb_table_free(t);
}

static void test_random(void)
{
    struct hostset hs = {0};
    add_n(&hs, 4, 1, 0, true);
    hs.h[2].healthy = false;
    hs.h[3].weight = 50;   /* RANDOM ignores weights, as in Envoy */
    struct lb_table *t = build(LB_RANDOM, &hs);
    struct lb_state *s = lb_state_new(t, 3);
    unsigned counts[4] = {0};
    const int N = 30000;
    for (int i = 0; i < N; i++)
        counts[lb_pick(t, s, false, 0, NULL, NULL)]++;
    CHECK_EQ_INT(counts[2], 0);
    for (int i = 0; i < 4; i++)
        if (i != 2)
            CHECK(within((double)counts[i] / N, 1.0 / 3, 0.02));
    lb_state_free(s);
    lb_table_free(t);
}

/* The six hosts of Envoy's ring hash and Maglev tests. */
static void envoy_hosts(struct hostset *hs, bool reversed)
{
    for (int i = 0; i < 6; i++) {
        char k[32];
        snprintf(k, sizeof k, "127.0.0.1:%d", reversed ? 95 - i : 90 + i);
        add(hs, k, 1, 0, true);
    }
}

static void test_ring_hash_envoy(void)
{
    struct hostset hs = {0};
    envoy_hosts(&hs, false);
    struct lb_config c;
    lb_config_defaults(&c, LB_RING_HASH);
    c.ring_min_size = 12;
    struct lb_table *t = build_cfg(&c, &hs);
    struct lb_state *s = lb_state_new(t, 1);
    struct lb_level_info li;
    CHECK_EQ_INT(lb_table_level(t, 0, &li), 0);
    CHECK_EQ_INT(li.entries, 12);
    CHECK_EQ_INT(li.min_entries_per_host, 2);
    CHECK_EQ_INT(li.max_entries_per_host, 2);
    CHECK_EQ_INT(lb_pick(t, s, true, 0, NULL, NULL), 4);
    CHECK_EQ_INT(lb_pick(t, s, true, UINT64_MAX, NULL, NULL), 4);
    CHECK_EQ_INT(lb_pick(t, s, true, 3551244743356806947ULL, NULL, NULL), 5);
    CHECK_EQ_INT(lb_pick(t, s, true, 3551244743356806948ULL, NULL, NULL), 3);
    CHECK_EQ_INT(lb_pick(t, s, true, 16117243373044804880ULL, NULL, NULL), 0);
    /* Retry reselection: the next ring entry (the ring after :94 at 0 is :92 then :90). */
    uint8_t ex[6] = {0};
    ex[4] = 1;
    CHECK_EQ_INT(lb_pick(t, s, true, 0, NULL, ex), 2);
    ex[2] = 1;
    CHECK_EQ_INT(lb_pick(t, s, true, 0, NULL, ex), 0);
    lb_state_free(s);
    lb_table_free(t);

    /* All unhealthy: panic, same ring over all hosts. */
    for (int i = 0; i < 6; i++)
        hs.h[i].healthy = false;
    t = build_cfg(&c, &hs);
    s = lb_state_new(t, 1);
    CHECK_EQ_INT(lb_table_level(t, 0, &li), 0);
    CHECK(li.panic);
    CHECK_EQ_INT(lb_pick(t, s, true, 0, NULL, NULL), 4);
    lb_state_free(s);
    lb_table_free(t);
}

/* Envoy's BasicFailover: P0 with 1 of 2 healthy gets 70%, P1 30%; the hash picks the level. */
static void test_ring_hash_failover(void)
{
    struct lb_config c;
    lb_config_defaults(&c, LB_RING_HASH);
    c.ring_min_size = 12;
    struct hostset hs = {0};
    add(&hs, "127.0.0.1:80", 1, 0, false);
    add(&hs, "127.0.0.1:82", 1, 1, true);
    struct lb_table *t = build_cfg(&c, &hs);
    struct lb_state *s = lb_state_new(t, 1);
    struct lb_level_info li;
    CHECK_EQ_INT(lb_table_level(t, 1, &li), 0);
    CHECK_EQ_INT(li.entries, 12);
    CHECK_EQ_INT(li.load_pct, 100);
    CHECK_EQ_INT(lb_pick(t, s, false, 0, NULL, NULL), 1);
    lb_state_free(s);
    lb_table_free(t);

    struct hostset hs2 = {0};
    add(&hs2, "127.0.0.1:80", 1, 0, true);
    add(&hs2, "127.0.0.1:81", 1, 0, false);
    add(&hs2, "127.0.0.1:82", 1, 1, true);
    t = build_cfg(&c, &hs2);
    s = lb_state_new(t, 1);
    CHECK_EQ_INT(lb_table_level(t, 0, &li), 0);
    CHECK_EQ_INT(li.load_pct, 70);
    CHECK_EQ_INT(lb_pick(t, s, true, 69, NULL, NULL), 0);
    CHECK_EQ_INT(lb_pick(t, s, true, 71, NULL, NULL), 2);
    lb_state_free(s);
    lb_table_free(t);
}

/* Counts keys per host, and returns the picks in out[] for later comparison. */
static void hash_picks(const struct lb_table *t, struct lb_state *s, unsigned nkeys, int *out,
                       unsigned *counts)
{
    for (unsigned i = 0; i < nkeys; i++) {
        out[i] = lb_pick(t, s, true, key_hash(i), NULL, NULL);
        if (counts && out[i] >= 0)
            counts[out[i]]++;
    }
}

/* Shared checks for the consistent hashes: stable picks, even spread over 4 hosts, and the
 * share of keys that move when a fifth host comes (moved_lo..moved_hi), at least
 * min_to_new of them to the new host. ring_before/after: RING_HASH minimum ring sizes. */
static void consistent_hash_checks(enum lb_policy p, uint64_t ring_before, uint64_t ring_after,
                                   double moved_lo, double moved_hi, double min_to_new)
{
    enum { K = 100000 };
    static int before[K], after[K];
    struct hostset hs = {0};
    add_n(&hs, 4, 1, 0, true);
    struct lb_config c;
    lb_config_defaults(&c, p);
    c.ring_min_size = ring_before;
    struct lb_table *t = build_cfg(&c, &hs);
    struct lb_state *s1 = lb_state_new(t, 1), *s2 = lb_state_new(t, 2);
    unsigned counts[5] = {0};
    hash_picks(t, s1, K, before, counts);
    for (int i = 0; i < 4; i++)
        CHECK(within((double)counts[i] / K, 0.25, 0.025));
    int same = 1;
    for (unsigned i = 0; i < 1000; i++)   /* another worker, same answer */
        same &= lb_pick(t, s2, true, key_hash(i), NULL, NULL) == before[i];
    CHECK(same);
    lb_state_free(s1);
    lb_state_free(s2);
    lb_table_free(t);

    add_n(&hs, 1, 1, 0, true);
    c.ring_min_size = ring_after;
    t = build_cfg(&c, &hs);
    s1 = lb_state_new(t, 3);
    hash_picks(t, s1, K, after, NULL);
    unsigned moved = 0, to_new = 0;
    for (unsigned i = 0; i < K; i++) {
        if (after[i] != before[i]) {
            moved++;
            to_new += after[i] == 4;
        }
    }
    CHECK(within((double)moved / K, (moved_lo + moved_hi) / 2, (moved_hi - moved_lo) / 2));
    CHECK((double)to_new >= min_to_new * moved);
    lb_state_free(s1);
    lb_table_free(t);
}

static void test_ring_hash_consistency(void)
{
    /* With the same entries per host (250), a ring only ever moves keys to the new host. */
    consistent_hash_checks(LB_RING_HASH, 1000, 1250, 0.15, 0.25, 1.0);
    /* Envoy keeps the ring near minimum_ring_size (1024), so old hosts drop from 256 to 205
     * entries and some keys also move between old hosts: still well under a third. */
    consistent_hash_checks(LB_RING_HASH, 1024, 1024, 0.15, 0.33, 0.6);

    /* Weighted: entries per host follow the weights (Envoy: lightest host gets
     * ceil(min_ring_size × its share) entries). */
    struct hostset hs = {0};
    add(&hs, "10.1.0.1:80", 1, 0, true);
    add(&hs, "10.1.0.2:80", 2, 0, true);
    struct lb_table *t = build(LB_RING_HASH, &hs);
    struct lb_state *s = lb_state_new(t, 1);
    struct lb_level_info li;
    lb_table_level(t, 0, &li);
    CHECK_EQ_INT(li.min_entries_per_host, 342);
    CHECK_EQ_INT(li.max_entries_per_host, 684);
    CHECK_EQ_INT(li.entries, 1026);
    unsigned counts[2] = {0};
    for (unsigned i = 0; i < 100000; i++)
        counts[lb_pick(t, s, true, key_hash(i), NULL, NULL)]++;
    CHECK(within(counts[0] / 100000.0, 1.0 / 3, 0.05));

    /* Unhealthy hosts are left out of the ring (1 of 2 down is not panic). */
    lb_state_free(s);
    lb_table_free(t);
    hs.h[1].healthy = false;
    t = build(LB_RING_HASH, &hs);
    s = lb_state_new(t, 1);
    unsigned picked1 = 0;
    for (unsigned i = 0; i < 1000; i++)
        picked1 += lb_pick(t, s, true, key_hash(i), NULL, NULL) == 1;
    CHECK_EQ_INT(picked1, 0);
    lb_state_free(s);
    lb_table_free(t);
}

static void test_maglev_envoy(void)
{
    static const int basic[7] = {2, 4, 0, 1, 5, 0, 3};
    for (int rev = 0; rev < 2; rev++) {   /* host order must not matter */
        struct hostset hs = {0};
        envoy_hosts(&hs, rev);
        struct lb_config c;
        lb_config_defaults(&c, LB_MAGLEV);
        c.maglev_table_size = 7;
        struct lb_table *t = build_cfg(&c, &hs);
        struct lb_state *s = lb_state_new(t, 1);
        struct lb_level_info li;
        lb_table_level(t, 0, &li);
        CHECK_EQ_INT(li.entries, 7);
        CHECK_EQ_INT(li.min_entries_per_host, 1);
        CHECK_EQ_INT(li.max_entries_per_host, 2);
        for (uint64_t i = 0; i < 21; i++) {
            int want = basic[i % 7];
            CHECK_EQ_INT(lb_pick(t, s, true, i, NULL, NULL), rev ? 5 - want : want);
        }
        if (!rev) {
            /* Envoy's BasicWithRetryHostPredicate: hash 10 → :91; avoiding it → :90. */
            uint8_t ex[6] = {0};
            CHECK_EQ_INT(lb_pick(t, s, true, 10, NULL, ex), 1);
            ex[1] = 1;
            CHECK_EQ_INT(lb_pick(t, s, true, 10, NULL, ex), 0);
        }
        lb_state_free(s);
        lb_table_free(t);
    }

    /* Envoy's Weighted: :90 weight 1, :91 weight 2, table 17. */
    static const int weighted[17] = {1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1};
    struct hostset hs = {0};
    add(&hs, "127.0.0.1:90", 1, 0, true);
    add(&hs, "127.0.0.1:91", 2, 0, true);
    struct lb_config c;
    lb_config_defaults(&c, LB_MAGLEV);
    c.maglev_table_size = 17;
    struct lb_table *t = build_cfg(&c, &hs);
    struct lb_state *s = lb_state_new(t, 1);
    struct lb_level_info li;
    lb_table_level(t, 0, &li);
    CHECK_EQ_INT(li.min_entries_per_host, 6);
    CHECK_EQ_INT(li.max_entries_per_host, 11);
    for (uint64_t i = 0; i < 51; i++)
        CHECK_EQ_INT(lb_pick(t, s, true, i, NULL, NULL), weighted[i % 17]);
    lb_state_free(s);
    lb_table_free(t);
}

static void test_maglev_consistency(void)
{
    consistent_hash_checks(LB_MAGLEV, 0, 0, 0.15, 0.25, 0.9);
}

/* Envoy's docs example: P0 with 1 of 4 healthy → 35% (25% × 1.4), P1 takes the rest. */
static void test_priority_spillover(void)
{
    struct hostset hs = {0};
    add_n(&hs, 4, 1, 0, false);
    hs.h[0].healthy = true;
    add_n(&hs, 4, 1, 1, true);
    for (int p = LB_ROUND_ROBIN; p <= LB_MAGLEV; p++) {
        struct lb_table *t = build((enum lb_policy)p, &hs);
        struct lb_state *s = lb_state_new(t, 21);
        struct lb_level_info l0, l1;
        CHECK_EQ_INT(lb_table_levels(t), 2);
        lb_table_level(t, 0, &l0);
        lb_table_level(t, 1, &l1);
        CHECK_EQ_INT(l0.health_pct, 35);
        CHECK_EQ_INT(l0.load_pct, 35);
        CHECK_EQ_INT(l1.load_pct, 65);
        CHECK(!l0.panic && !l1.panic);
        CHECK_EQ_INT(l0.pick_hosts, 1);
        unsigned counts[8] = {0};
        const int N = 100000;
        for (int i = 0; i < N; i++) {
            int h = p >= LB_RING_HASH ? lb_pick(t, s, true, key_hash((unsigned)i), NULL, NULL)
                                      : lb_pick(t, s, false, 0, NULL, NULL);
            counts[h]++;
        }
        CHECK(within((double)counts[0] / N, 0.35, 0.02));
        CHECK_EQ_INT(counts[1] + counts[2] + counts[3], 0);
        lb_state_free(s);
        lb_table_free(t);
    }
}

static void test_panic(void)
{
    struct lb_level_info li;
    /* One level, 1 of 4 healthy (25% < 50%): panic, all hosts used. */
    struct hostset hs = {0};
    add_n(&hs, 4, 1, 0, false);
    hs.h[3].healthy = true;
    struct lb_table *t = build(LB_ROUND_ROBIN, &hs);
    struct lb_state *s = lb_state_new(t, 1);
    lb_table_level(t, 0, &li);
    CHECK(li.panic);
    CHECK_EQ_INT(li.pick_hosts, 4);
    unsigned counts[4] = {0};
    for (int i = 0; i < 400; i++)
        counts[lb_pick(t, s, false, 0, NULL, NULL)]++;
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(counts[i], 100);
    lb_state_free(s);
    lb_table_free(t);

    /* 2 of 4 healthy is exactly the threshold: no panic. */
    hs.h[2].healthy = true;
    t = build(LB_RANDOM, &hs);
    s = lb_state_new(t, 1);
    lb_table_level(t, 0, &li);
    CHECK(!li.panic);
    int bad = 0;
    for (int i = 0; i < 1000; i++)
        bad += lb_pick(t, s, false, 0, NULL, NULL) < 2 ? 1 : 0;
    CHECK_EQ_INT(bad, 0);
    lb_state_free(s);
    lb_table_free(t);

    /* Total panic over two levels: load by host count (4 and 2 hosts: 67/33). */
    struct hostset tp = {0};
    add_n(&tp, 4, 1, 0, false);
    add_n(&tp, 2, 1, 3, false);
    t = build(LB_ROUND_ROBIN, &tp);
    lb_table_level(t, 0, &li);
    CHECK(li.panic);
    CHECK_EQ_INT(li.load_pct, 67);
    lb_table_level(t, 1, &li);
    CHECK_EQ_INT(li.priority, 3);
    CHECK_EQ_INT(li.load_pct, 33);
    lb_table_free(t);

    /* Partial panic: total availability under 100%, only the level under the threshold panics.
     * P0 2/10 healthy → 28, P1 5/10 → 70; sum 98: loads 28→29 (rounding), 71. */
    struct hostset pp = {0};
    add_n(&pp, 10, 1, 0, false);
    pp.h[0].healthy = pp.h[1].healthy = true;
    add_n(&pp, 10, 1, 1, false);
    for (int i = 10; i < 15; i++)
        pp.h[i].healthy = true;
    t = build(LB_ROUND_ROBIN, &pp);
    s = lb_state_new(t, 1);
    lb_table_level(t, 0, &li);
    CHECK(li.panic);
    CHECK_EQ_INT(li.load_pct, 29);
    CHECK_EQ_INT(li.pick_hosts, 10);
    lb_table_level(t, 1, &li);
    CHECK(!li.panic);
    CHECK_EQ_INT(li.load_pct, 71);
    CHECK_EQ_INT(li.pick_hosts, 5);
    unsigned p1_unhealthy = 0;
    for (int i = 0; i < 5000; i++) {
        int h = lb_pick(t, s, false, 0, NULL, NULL);
        p1_unhealthy += h >= 15;
    }
    CHECK_EQ_INT(p1_unhealthy, 0);
    lb_state_free(s);
    lb_table_free(t);

    /* Panic disabled (threshold 0) and nothing healthy: no host. */
    struct lb_config c;
    lb_config_defaults(&c, LB_ROUND_ROBIN);
    c.healthy_panic_threshold_pct = 0;
    for (int i = 0; i < 4; i++)
        hs.h[i].healthy = false;
    t = build_cfg(&c, &hs);
    s = lb_state_new(t, 1);
    CHECK_EQ_INT(lb_pick(t, s, false, 0, NULL, NULL), -1);
    lb_table_level(t, 0, &li);
    CHECK_EQ_INT(li.load_pct, 100);
    CHECK(!li.panic);
    lb_state_free(s);
    lb_table_free(t);
}

static void test_exclude(void)
{
    struct hostset hs = {0};
    add_n(&hs, 4, 1, 0, true);
    uint8_t ex[4] = {1, 0, 0, 0};
    uint8_t all[4] = {1, 1, 1, 1};
    for (int p = LB_ROUND_ROBIN; p <= LB_MAGLEV; p++) {
        struct lb_table *t = build((enum lb_policy)p, &hs);
        struct lb_state *s = lb_state_new(t, 8);
        unsigned hit = 0, none = 0;
        for (unsigned i = 0; i < 2000; i++) {
            int h = lb_pick(t, s, true, key_hash(i), NULL, ex);
            hit += h == 0;
            int a = lb_pick(t, s, true, key_hash(i), NULL, all);
            none += a < 0 || a > 3;
        }
        /* Rotation and EDF always step off; random draws fail 6 times in a row at (1/4)^6;
         * the ring can have :0 on 6 entries in a row, rarely. */
        CHECK(hit <= 4);
        CHECK_EQ_INT(none, 0);
        lb_state_free(s);
        lb_table_free(t);
    }
}

/* Random host lists: every pick is a valid index, healthy unless its level is in panic, and
 * -1 only when nothing can be picked. */
static void test_invariants(void)
{
    uint64_t x = 12345;
    for (int round = 0; round < 300; round++) {
        struct hostset hs = {0};
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t n = (x >> 33) % 30;
        for (size_t i = 0; i < n; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            char k[32];
            snprintf(k, sizeof k, "192.168.%u.%zu:443", (unsigned)(x >> 60), i);
            add(&hs, k, 1 + (uint32_t)((x >> 40) % 4), (uint32_t)((x >> 50) % 3),
                ((x >> 20) % 3) != 0);
        }
        struct lb_config c;
        lb_config_defaults(&c, (enum lb_policy)(round % 5));
        c.healthy_panic_threshold_pct = (uint32_t)(x >> 58) * 10;
        c.ring_min_size = 64;
        c.maglev_table_size = 251;
        struct lb_table *t = build_cfg(&c, &hs);
        CHECK(t != NULL);
        if (!t)
            continue;
        struct lb_state *s = lb_state_new(t, (uint64_t)round);
        size_t pickable = 0;
        for (size_t l = 0; l < lb_table_levels(t); l++) {
            struct lb_level_info li;
            lb_table_level(t, l, &li);
            pickable += li.pick_hosts;
        }
        uint32_t active[MAXH] = {0};
        uint8_t ex[MAXH] = {0};
        for (int i = 0; i < 200; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            if (n)
                ex[(x >> 33) % n] ^= 1;
            int h = lb_pick(t, s, (x >> 20) & 1, x, active, (x >> 21) & 1 ? ex : NULL);
            if (pickable == 0) {
                CHECK_EQ_INT(h, -1);
                continue;
            }
            CHECK(h >= 0 && (size_t)h < n);
            if (h < 0 || (size_t)h >= n)
                break;
            active[h]++;
            if (!hs.h[h].healthy) {
                size_t l = 0;
                struct lb_level_info li;
                while (lb_table_level(t, l, &li) == 0 && li.priority != hs.h[h].priority)
                    l++;
                CHECK(li.panic);
            }
        }
        lb_state_free(s);
        lb_table_free(t);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Not a check: prints picks per second for each policy over 100 hosts. */
/* slow_start_config: Envoy's weight factor max(min, (max(t, 1 s) / window)^(1 / aggression)),
 * 1 for a host outside its window or never in one. */
static void test_slow_start_factor(void)
{
    struct hostset hs = {0};
    add_n(&hs, 2, 1, 0, true);
    hs.h[1].since_ms = 1000000;
    struct lb_config c;
    lb_config_defaults(&c, LB_ROUND_ROBIN);
    c.slow_start_window_ms = 10000;
    c.slow_start_min_weight = 0.05;
    struct lb_table *t = build_cfg(&c, &hs);
    CHECK(t != NULL);
    CHECK(within(lb_slow_start_factor(t, 0, 1000500), 1.0, 1e-9));
    CHECK(within(lb_slow_start_factor(t, 1, 1000500), 0.1, 1e-9));  /* under 1 s reads as 1 s */
    CHECK(within(lb_slow_start_factor(t, 1, 1004000), 0.4, 1e-9));
    CHECK(within(lb_slow_start_factor(t, 1, 1010000), 1.0, 1e-9));
    lb_table_free(t);
    c.slow_start_aggression = 2.0;
    c.slow_start_min_weight = 0.5;
    t = build_cfg(&c, &hs);
    CHECK(within(lb_slow_start_factor(t, 1, 1004000), 0.6325, 1e-3)); /* sqrt(0.4) */
    CHECK(within(lb_slow_start_factor(t, 1, 1001000), 0.5, 1e-9));    /* sqrt(0.1) < min 0.5 */
    lb_table_free(t);
    c.slow_start_aggression = 0;
    char err[128];
    CHECK(lb_table_build(&c, hs.h, hs.n, err, sizeof err) == NULL && strstr(err, "aggression"));
}

static void test_bench(void)
{
    static const char *names[] = {"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"};
    struct hostset eq = {0}, wt = {0};
    add_n(&eq, 100, 1, 0, true);
    for (int i = 0; i < 100; i++) {
        char k[32];
        snprintf(k, sizeof k, "10.9.0.%d:80", i);
        add(&wt, k, 1 + (uint32_t)(i % 5), 0, true);
    }
    uint32_t active[100];
    for (int i = 0; i < 100; i++)
        active[i] = (uint32_t)(i % 7);
    for (int w = 0; w < 2; w++) {
        for (int p = LB_ROUND_ROBIN; p <= LB_MAGLEV; p++) {
            double t0 = now_s();
            struct lb_table *t = build((enum lb_policy)p, w ? &wt : &eq);
            double built = now_s() - t0;
            struct lb_state *s = lb_state_new(t, 77);
            const int N = 2000000;
            long sink = 0;
            t0 = now_s();
            for (int i = 0; i < N; i++)
                sink += lb_pick(t, s, true, (uint64_t)i * 0x9e3779b97f4a7c15ULL, active, NULL);
            double dt = now_s() - t0;
            printf("bench %-13s %-8s 100 hosts: %6.1f M picks/s (build %.2f ms)%s\n", names[p],
                   w ? "weighted" : "equal", N / dt / 1e6, built * 1e3, sink < 0 ? "!" : "");
            lb_state_free(s);
            lb_table_free(t);
        }
    }
}

TEST_MAIN(TEST(test_policy_parse), TEST(test_config_errors), TEST(test_no_hosts),
          TEST(test_round_robin_equal), TEST(test_round_robin_weighted),
          TEST(test_least_request), TEST(test_least_request_weighted), TEST(test_random),
          TEST(test_ring_hash_envoy), TEST(test_ring_hash_failover),
          TEST(test_ring_hash_consistency), TEST(test_maglev_envoy),
          TEST(test_maglev_consistency), TEST(test_priority_spillover), TEST(test_panic),
          TEST(test_exclude), TEST(test_invariants), TEST(test_slow_start_factor), TEST(test_bench))
