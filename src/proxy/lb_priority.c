/* Priority levels: how much of the traffic each level gets, and which levels are in panic.
 * Follows Envoy's documented rules ("Priority levels", "Panic threshold"):
 *  - a level's health is its healthy share × overprovisioning factor, capped at 100%;
 *  - loads are handed out from the highest priority down, each level taking its health
 *    (scaled up when the sum of all health is under 100%), the rest spilling to the next;
 *  - a level is in panic when its healthy share is under the threshold, unless the levels
 *    together are fully available; a level in panic picks among all its hosts;
 *  - when every level is in panic, load goes by host count, health ignored;
 *  - with the threshold at 0 and nothing healthy, level 0 gets everything (and picks nothing).
 * Integer arithmetic throughout, as in Envoy, so the percentages match exactly. */
#include "proxy/lb_internal.h"

static uint32_t min_u32(uint64_t a, uint64_t b)
{
    return (uint32_t)(a < b ? a : b);
}

/* Loads when every level is in panic: by host count, remainder to the first non-empty. */
static void loads_total_panic(struct lb_level *lv, size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lv[i].nhosts;
    if (total == 0) {
        lv[0].load = 100;
        return;
    }
    uint32_t left = 100;
    size_t first = n;
    for (size_t i = 0; i < n; i++) {
        if (first == n && lv[i].nhosts)
            first = i;
        lv[i].load = (uint32_t)(100 * (uint64_t)lv[i].nhosts / total);
        left -= lv[i].load;
    }
    lv[first].load += left;
}

void lb_priority_compute(struct lb_level *lv, size_t n, uint32_t op_pct, uint32_t panic_pct)
{
    if (n == 0)
        return;
    if (panic_pct > 100)
        panic_pct = 100;

    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        lv[i].health = lv[i].nhosts
            ? min_u32(100, (uint64_t)op_pct * lv[i].nhealthy / lv[i].nhosts) : 0;
        lv[i].load = 0;
        lv[i].panic = false;
        sum += lv[i].health;
    }
    uint32_t avail = min_u32(100, sum);   /* "normalized total availability" */

    if (avail > 0) {
        uint32_t left = 100;
        size_t first = n;
        for (size_t i = 0; i < n; i++) {
            if (first == n && lv[i].health > 0)
                first = i;
            lv[i].load = min_u32(left, (uint64_t)lv[i].health * 100 / avail);
            left -= lv[i].load;
        }
        if (left)
            lv[first].load += left;
    }

    if (panic_pct == 0 && avail == 0) {
        lv[0].load = 100;
        return;
    }
    bool all_panic = true;
    for (size_t i = 0; i < n; i++) {
        double healthy_pct = lv[i].nhosts ? 100.0 * lv[i].nhealthy / lv[i].nhosts : 0.0;
        lv[i].panic = avail == 100 ? false : healthy_pct < (double)panic_pct;
        all_panic = all_panic && lv[i].panic;
    }
    if (all_panic)
        loads_total_panic(lv, n);
}
