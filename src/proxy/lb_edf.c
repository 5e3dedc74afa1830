/* Earliest-deadline-first schedule over a binary min-heap (see lb_internal.h). */
#include "proxy/lb_internal.h"

/* Deadlines only grow; once "now" passes this, every deadline is shifted back by "now" so
 * doubles keep enough precision for 1/weight steps of large weights. */
#define LB_EDF_REBASE 65536.0
/* A weight this small already means "almost never"; it also keeps 1/w finite. */
#define LB_EDF_MIN_WEIGHT 1e-12

static inline bool edf_before(const struct lb_edf_entry *a, const struct lb_edf_entry *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void edf_sift_down(struct lb_edf *e, uint32_t i)
{
    struct lb_edf_entry *h = e->heap;
    struct lb_edf_entry x = h[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= e->n)
            break;
        if (c + 1 < e->n && edf_before(&h[c + 1], &h[c]))
            c++;
        if (!edf_before(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

void lb_edf_init(struct lb_edf *e, struct lb_edf_entry *mem, const uint32_t *hosts, uint32_t n,
                 const uint32_t *weight, struct lb_rng *rng)
{
    e->heap = mem;
    e->n = n;
    e->now = 0.0;
    e->seq = 0;
    for (uint32_t i = 0; i < n; i++) {
        mem[i].host = hosts[i];
        mem[i].deadline = lb_rng_unit(rng) / (double)weight[hosts[i]];
        mem[i].seq = e->seq++;
    }
    for (uint32_t i = n / 2; i-- > 0;)
        edf_sift_down(e, i);
}

void lb_edf_requeue(struct lb_edf *e, double w)
{
    if (!(w >= LB_EDF_MIN_WEIGHT))
        w = LB_EDF_MIN_WEIGHT;
    struct lb_edf_entry *top = &e->heap[0];
    e->now = top->deadline;
    top->deadline = e->now + 1.0 / w;
    top->seq = e->seq++;
    edf_sift_down(e, 0);
    if (e->now > LB_EDF_REBASE) {
        /* Rounding may turn close deadlines into ties, which seq then orders: heapify again. */
        for (uint32_t i = 0; i < e->n; i++)
            e->heap[i].deadline -= e->now;
        e->now = 0.0;
        for (uint32_t i = e->n / 2; i-- > 0;)
            edf_sift_down(e, i);
    }
}
