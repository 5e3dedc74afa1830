/* libFuzzer target for the downstream HTTP/2 codec: the input is what a client sends after the
 * connection preface (frames, valid or not), fed in pieces to a real h2c session (nghttp2 and
 * codec_h2.c's callbacks, the stream pool, the router's local replies and the response data
 * provider) through a memory transport. Routes answer directly (no upstream sockets), so
 * every request is parsed, routed and answered. Nothing may crash, leak or read out of
 * bounds; the output is parsed by nothing but must be bounded by the output buffer. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/loop.h"
#include "common/pbmap.h"
#include "common/stats.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "proxy/codec_h2.h"
#include "proxy/config.h"
#include "proxy/route.h"
#include "proxy/worker.h"

static const char routes_yaml[] =
    "virtual_hosts:\n"
    "- name: all\n"
    "  domains: ['*']\n"
    "  routes:\n"
    "  - match: {prefix: /r}\n"
    "    redirect: {path_redirect: /elsewhere}\n"
    "  - match: {prefix: /}\n"
    "    direct_response: {status: 200, body: {inline_string: hello from the fuzzer}}\n";

static int no_cluster(void *ctx, const char *name)
{
    (void)ctx;
    (void)name;
    return -1;
}

struct mem {
    const uint8_t *data;
    size_t len, at;
    struct buf *in, *out;
    struct worker *w;
    bool closed;
};

static struct buf *m_input(void *ctx)
{
    struct mem *m = ctx;
    if (m->at >= m->len)
        return NULL;
    if (!m->in)
        m->in = buf_get(&m->w->bufs);
    /* Pieces of varying size, so frames straddle reads. */
    size_t n = m->len - m->at;
    size_t cap = 1 + (m->data[m->at] % 64) * 97;
    if (n > cap)
        n = cap;
    m->in->head = m->in->tail = 0;
    buf_append(m->in, m->data + m->at, n);
    m->at += n;
    return m->in;
}
static void m_input_done(void *ctx)
{
    struct mem *m = ctx;
    buf_put(&m->w->bufs, m->in);
    m->in = NULL;
}
static struct buf *m_output(void *ctx)
{
    struct mem *m = ctx;
    if (!m->out)
        m->out = buf_get(&m->w->bufs);
    return m->out;
}
static long m_flush(void *ctx)
{
    struct mem *m = ctx;
    if (!m->out)
        return 0;
    long n = (long)buf_len(m->out);
    buf_put(&m->w->bufs, m->out); /* the client reads everything */
    m->out = NULL;
    return n;
}
static bool m_pending(void *ctx) { return ((struct mem *)ctx)->out && buf_len(((struct mem *)ctx)->out); }
static bool m_peer_closed(void *ctx)
{
    struct mem *m = ctx;
    return m->at >= m->len && m->closed;
}
static void m_close(void *ctx) { ((struct mem *)ctx)->closed = true; }

static const struct h2c_io io = {m_input, m_input_done, m_output, m_flush, m_pending, m_peer_closed, m_close};

static struct worker W;
static struct hcm_config H;

static void setup(void)
{
    stats_init(1);
    W.loop = loop_new(NULL, NULL);
    buf_pool_init(&W.bufs, 64);
    W.scratch = route_scratch_new();
    W.rng[0] = 0x9e3779b97f4a7c15u;
    W.rng[1] = 0xbf58476d1ce4e5b9u;
    W.log_buf = malloc(16384);
    struct pbmap_error pe;
    ProtobufCMessage *rc = pbmap_from_yaml(&envoy__config__route__v3__route_configuration__descriptor, routes_yaml,
                                           sizeof routes_yaml - 1, "fuzz.yaml", &pe);
    char err[256];
    H.routes = route_table_build((const Envoy__Config__Route__V3__RouteConfiguration *)rc, no_cluster, NULL, err,
                                 sizeof err);
    protobuf_c_message_free_unpacked(rc, NULL);
    if (!H.routes)
        abort();
    H.stats = stats_block("http.fuzz.", &http_stat_schema);
    H.h2_stats = stats_block("http2.", &http2_stat_schema);
    H.max_request_headers_bytes = 60 * 1024;
    H.max_headers_count = 100;
    H.stream_idle_timeout_ms = 300000;
    H.idle_timeout_ms = 3600000;
    H.server_name = "envoy";
    H.generate_request_id = true;
    h2_options_defaults(&H.h2);
    H.h2.max_concurrent_streams = 16;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    uint8_t *all = malloc(size + 24);
    memcpy(all, preface, 24);
    memcpy(all + 24, data, size);
    struct sockaddr_storage peer = {.ss_family = AF_INET}, local = {.ss_family = AF_INET};
    struct mem m = {.data = all, .len = size + 24, .w = &W};
    struct h2c *c = h2c_new(&io, &m, &W, &H, &peer, &local, NULL);
    if (c) {
        for (int i = 0; i < 100000 && !m.closed && m.at < m.len; i++)
            h2c_run(c);
        if (!m.closed)
            h2c_run(c);
        h2c_shutdown(c);
        h2c_free(c);
    }
    buf_put(&W.bufs, m.in);
    buf_put(&W.bufs, m.out);
    free(all);
    return 0;
}
