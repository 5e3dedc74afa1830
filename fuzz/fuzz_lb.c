/* libFuzzer target for the load balancer: arbitrary configs and host lists must build or be
 * refused cleanly, and every pick must stay in range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "proxy/lb.h"

static uint64_t take(const uint8_t **p, size_t *n, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes && *n; i++, (*p)++, (*n)--)
        v = v << 8 | **p;
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t n = size;
    struct lb_config c;
    lb_config_defaults(&c, (enum lb_policy)(take(&p, &n, 1) % 6));
    uint8_t flags = (uint8_t)take(&p, &n, 1);
    if (flags & 1) c.ring_min_size = take(&p, &n, 2);
    /* Rings are capped at 64 Ki entries (2-byte sizes): the default 8 Mi-entry ring that skewed
     * weights produce takes over 10 s to sort under ASan, which is a slow input, not a bug. */
    c.ring_max_size = 65536;
    if (flags & 2) c.ring_max_size = take(&p, &n, 2);
    if (flags & 4) c.maglev_table_size = take(&p, &n, 2);
    if (flags & 8) c.choice_count = (uint32_t)take(&p, &n, 1);
    if (flags & 16) c.active_request_bias = (double)take(&p, &n, 1) / 16.0;
    if (flags & 32) c.healthy_panic_threshold_pct = (uint32_t)take(&p, &n, 1);
    if (flags & 64) c.overprovisioning_factor = (double)take(&p, &n, 1) / 50.0;
    if (flags & 128) c.ring_hash_fn = (int)take(&p, &n, 1) % 3;
    size_t nh = take(&p, &n, 1) % 64;
    struct lb_host_info h[64];
    char keys[64][16];
    for (size_t i = 0; i < nh; i++) {
        uint64_t v = take(&p, &n, 4);
        size_t kl = (v >> 24) % 16;
        for (size_t k = 0; k < kl; k++)
            keys[i][k] = (char)('0' + (v >> k) % 10);
        h[i] = (struct lb_host_info){ .key = keys[i], .key_len = kl,
            .weight = (uint32_t)(v & 0xff) * (uint32_t)((v >> 8) & 0xf) * 1000u,
            .priority = (uint32_t)((v >> 12) % 5), .healthy = (v >> 15) & 1 };
    }
    char err[128];
    struct lb_table *t = lb_table_build(&c, nh ? h : NULL, nh, err, sizeof err);
    if (!t)
        return 0;
    struct lb_state *s = lb_state_new(t, size);
    uint32_t active[64] = {0};
    uint8_t ex[64] = {0};
    while (n) {
        uint64_t v = take(&p, &n, 8);
        if (nh) ex[v % nh] ^= 1;
        int r = lb_pick(t, s, v & 1, v, (v & 2) ? active : NULL, (v & 4) ? ex : NULL);
        if (r >= (int)nh || r < -1)
            abort();
        if (r >= 0)
            active[r] += (uint32_t)(v >> 60);
    }
    for (size_t l = 0; l < lb_table_levels(t); l++) {
        struct lb_level_info li;
        if (lb_table_level(t, l, &li) != 0)
            abort();
    }
    lb_state_free(s);
    lb_table_free(t);
    return 0;
}
