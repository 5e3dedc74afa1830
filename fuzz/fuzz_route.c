/* libFuzzer target for routing: the input is a RouteConfiguration in YAML, a NUL byte, then an
 * HTTP/1.1 request head. A config that maps and compiles is used to route the request through
 * every accessor the proxy calls; nothing may crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbmap.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "net/http1.h"
#include "proxy/route.h"

static int lookup(void *ctx, const char *name)
{
    (void)ctx;
    /* Three clusters exist: a, b and c. */
    if (name[0] >= 'a' && name[0] <= 'c' && name[1] == '\0')
        return name[0] - 'a';
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul)
        return 0;
    size_t ylen = (size_t)(nul - data);
    struct pbmap_error pe;
    ProtobufCMessage *m = pbmap_from_yaml(&envoy__config__route__v3__route_configuration__descriptor,
                                          (const char *)data, ylen, "fuzz.yaml", &pe);
    if (!m)
        return 0;
    char err[512];
    struct route_table *t = route_table_build((const Envoy__Config__Route__V3__RouteConfiguration *)m, lookup,
                                              NULL, err, sizeof err);
    protobuf_c_message_free_unpacked(m, NULL);
    if (!t)
        return 0;
    static struct route_scratch *scratch;
    if (!scratch)
        scratch = route_scratch_new();
    struct h1_header hdrs[64];
    struct h1_request rq = {.headers = hdrs};
    struct h1_limits lim = {8192, 64};
    const char *head = (const char *)nul + 1;
    size_t hlen = size - ylen - 1;
    if (h1_parse_request(head, hlen, &lim, &rq) > 0) {
        struct route_request rr = {.method = rq.method, .path = rq.path, .authority = rq.host,
                                   .scheme = {"http", 4}, .headers = rq.headers, .nheaders = rq.nheaders};
        for (uint64_t rnd = 0; rnd < 3; rnd++) {
            const struct route_entry *e = route_select(t, &rr, rnd * 0x9E3779B97F4A7C15ull, scratch);
            if (!e)
                continue;
            char out[4096];
            bool auto_host;
            int status;
            const char *body;
            size_t blen;
            uint64_t hash;
            const struct header_mutation *lv[ROUTE_MUTATION_LEVELS];
            int wi = route_weight_index(e, rnd);
            (void)route_cluster(e, rnd);
            (void)route_timeout_ms(e);
            (void)route_rewrite_path(e, &rr, scratch, out, sizeof out);
            (void)route_host_rewrite(e, wi, &rr, scratch, out, sizeof out, &auto_host);
            (void)route_redirect(e, &rr, scratch, out, sizeof out, &status);
            (void)route_direct_response(e, &status, &body, &blen);
            (void)route_hash(e, &rr, &hash);
            (void)route_request_mutations(e, wi, lv);
            (void)route_response_mutations(e, wi, lv);
        }
    }
    route_table_free(t);
    return 0;
}
