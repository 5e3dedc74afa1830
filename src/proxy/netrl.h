/* The network local rate limit filter (envoy.filters.network.local_ratelimit): each new
 * connection of the filter chain takes a token from the filter's bucket (shared by every
 * worker, lock-free: hfilter.h's hf_bucket); without one the connection is closed at once and
 * counted in "local_ratelimit.<stat_prefix>.rate_limited", as Envoy does. */
#ifndef WEFT_PROXY_NETRL_H
#define WEFT_PROXY_NETRL_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/hfilter.h"

struct worker;
struct filter_chain;
struct Google__Protobuf__Any;

struct netrl_config {
    struct stat_block *stats;
    bool enabled;                  /* runtime_enabled.default_value (default true) */
    struct hf_bucket bucket;
};

/* Builds one filter from its typed_config; NULL with err set on a config error. */
struct netrl_config *netrl_build(const struct Google__Protobuf__Any *any, char *err, size_t errlen);
void netrl_free(struct netrl_config *c);
/* True when the new connection may go on to fc's terminal filter. */
bool netrl_admit(struct worker *w, const struct filter_chain *fc);

#endif
