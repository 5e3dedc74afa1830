/* Periodic DNS re-resolution for STRICT_DNS and LOGICAL_DNS clusters (c-ares, main thread). */
#ifndef WEFT_PROXY_DNS_H
#define WEFT_PROXY_DNS_H

#include "common/loop.h"
#include "proxy/config.h"

struct dns;

/* Starts resolving every DNS cluster of s on loop; NULL when there are none. A cluster that
 * prev (the snapshot s replaces, or NULL) resolved for the same names starts with prev's
 * answers and refreshes after dns_refresh_rate; the others resolve now. ready(arg), if given,
 * runs once every cluster has an answer or a failed first round (at once when none waits; from
 * the loop otherwise): Envoy starts its listeners only after that. */
struct dns *dns_start(struct loop *loop, struct snapshot *s, const struct snapshot *prev, void (*ready)(void *arg),
                      void *arg);
void dns_stop(struct dns *d);

#endif
