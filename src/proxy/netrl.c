/* Network local rate limit (see netrl.h). */
#include "proxy/netrl.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/pbmap.h"
#include "common/stats.h"
#include "envoy/extensions/filters/network/local_ratelimit/v3/local_rate_limit.pb-c.h"
#include "proxy/config.h"
#include "proxy/worker.h"

typedef Envoy__Extensions__Filters__Network__LocalRatelimit__V3__LocalRateLimit NetLocalRateLimit;

static const struct stat_def netrl_defs[] = {{"rate_limited", STAT_COUNTER}};
static const struct stat_schema netrl_schema = {"local_ratelimit", netrl_defs, 1, NULL};

struct netrl_config *netrl_build(const struct Google__Protobuf__Any *any, char *err, size_t errlen)
{
    struct pbmap_error pe;
    NetLocalRateLimit *l = (NetLocalRateLimit *)pbmap_unpack_any(
        &any->base, &envoy__extensions__filters__network__local_ratelimit__v3__local_rate_limit__descriptor, &pe);
    if (!l) {
        snprintf(err, errlen, "typed_config: %s", pe.msg);
        return NULL;
    }
    struct netrl_config *c = NULL;
    const Envoy__Type__V3__TokenBucket *tb = l->token_bucket;
    uint64_t interval = tb && tb->fill_interval ? (uint64_t)tb->fill_interval->seconds * 1000u +
                                                      (uint64_t)tb->fill_interval->nanos / 1000000u
                                                : 0;
    if (!l->stat_prefix || !*l->stat_prefix)
        snprintf(err, errlen, "typed_config.stat_prefix: is required");
    else if (!tb || tb->max_tokens == 0)
        snprintf(err, errlen, "typed_config.token_bucket.max_tokens: must be greater than 0");
    else if (tb->tokens_per_fill && tb->tokens_per_fill->value == 0)
        snprintf(err, errlen, "typed_config.token_bucket.tokens_per_fill: must be greater than 0");
    else if (interval < 50)
        snprintf(err, errlen, "typed_config.token_bucket.fill_interval: must be at least 50ms");
    else if (l->share_key && *l->share_key)
        snprintf(err, errlen, "typed_config.share_key: not supported by weft");
    else if ((c = calloc(1, sizeof *c))) {
        char prefix[600];
        snprintf(prefix, sizeof prefix, "local_ratelimit.%s.", l->stat_prefix);
        c->stats = stats_block(prefix, &netrl_schema);
        c->enabled = !l->runtime_enabled || !l->runtime_enabled->default_value ||
                     l->runtime_enabled->default_value->value;
        c->bucket.max_tokens = tb->max_tokens;
        c->bucket.per_fill = tb->tokens_per_fill ? tb->tokens_per_fill->value : 1;
        c->bucket.interval_ms = interval;
        atomic_init(&c->bucket.tokens, (int64_t)tb->max_tokens);
        atomic_init(&c->bucket.next_fill_ms, 0);
    } else {
        snprintf(err, errlen, "out of memory");
    }
    protobuf_c_message_free_unpacked(&l->base, NULL);
    return c;
}

void netrl_free(struct netrl_config *c) { free(c); }

bool netrl_admit(struct worker *w, const struct filter_chain *fc)
{
    for (size_t i = 0; i < fc->n_netrl; i++) {
        struct netrl_config *c = fc->netrl[i];
        if (c->enabled && !hf_bucket_take(&c->bucket)) {
            stats_inc(c->stats, w->id, 0);
            return false;
        }
    }
    return true;
}
