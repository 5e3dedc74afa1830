/* Periodic DNS re-resolution for STRICT_DNS and LOGICAL_DNS clusters (c-ares, main thread). */
#ifndef WEFT_PROXY_DNS_H
#define WEFT_PROXY_DNS_H

#include "common/loop.h"
#include "proxy/config.h"

struct dns;

/* Starts refreshing every DNS cluster of s on loop; NULL when there are none. */
struct dns *dns_start(struct loop *loop, struct snapshot *s);
void dns_stop(struct dns *d);

#endif
