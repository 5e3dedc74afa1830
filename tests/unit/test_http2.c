/* HTTP/2 helpers: codec selection (codec_type, ALPN, the preface), gRPC header parts, the
 * chunked decoder's phases (for trailers), the nghttp2 allocator's reuse, and the field
 * numbers of the HTTP/2 options in api/ (they must be Envoy's). */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "common/api_registry.h"
#include "net/http1.h"
#include "proxy/grpc_headers.h"
#include "proxy/h2_mem.h"
#include "proxy/http_codec.h"

static void test_codec_select(void)
{
    const char *pre = HTTP2_PREFACE;
    CHECK_EQ_INT(http_codec_select(0, NULL, pre, 24), HTTP_CODEC_H2);
    CHECK_EQ_INT(http_codec_select(0, NULL, pre, 10), HTTP_CODEC_NEED_MORE);
    CHECK_EQ_INT(http_codec_select(0, NULL, pre, 0), HTTP_CODEC_NEED_MORE);
    CHECK_EQ_INT(http_codec_select(0, NULL, "GET / HTTP/1.1\r\n", 16), HTTP_CODEC_H1);
    CHECK_EQ_INT(http_codec_select(0, NULL, "PRI * HTTP/1.1\r\n", 16), HTTP_CODEC_H1);
    CHECK_EQ_INT(http_codec_select(1, NULL, pre, 24), HTTP_CODEC_H1);
    CHECK_EQ_INT(http_codec_select(2, NULL, "GET", 3), HTTP_CODEC_H2);
    CHECK_EQ_INT(http_codec_select(0, "h2", "", 0), HTTP_CODEC_H2);
    CHECK_EQ_INT(http_codec_select(0, "http/1.1", pre, 24), HTTP_CODEC_H1);
}

static void test_grpc(void)
{
    struct h1_header h[] = {
        {{"content-type", 12}, {"application/grpc+proto", 22}},
        {{"grpc-timeout", 12}, {"250m", 4}},
        {{"grpc-status", 11}, {"14", 2}},
    };
    CHECK(grpc_hdr_is_request(h, 3));
    struct h1_header web[] = {{{"content-type", 12}, {"application/grpc-web", 20}}};
    CHECK(!grpc_hdr_is_request(web, 1));
    uint64_t ms = 0;
    CHECK(grpc_hdr_timeout_ms(h, 3, &ms));
    CHECK_EQ_INT(ms, 250);
    struct h1_header t[] = {{{"grpc-timeout", 12}, {"2S", 2}}, {{"x", 1}, {"y", 1}}};
    CHECK(grpc_hdr_timeout_ms(t, 1, &ms) && ms == 2000);
    t[0].value = (struct h1_str){"1500u", 5};
    CHECK(grpc_hdr_timeout_ms(t, 1, &ms) && ms == 2);
    t[0].value = (struct h1_str){"123456789S", 10}; /* more than 8 digits */
    CHECK(!grpc_hdr_timeout_ms(t, 1, &ms));
    t[0].value = (struct h1_str){"5x", 2};
    CHECK(!grpc_hdr_timeout_ms(t, 1, &ms));
    CHECK_EQ_INT(grpc_hdr_status(h, 3), 14);
    CHECK_EQ_INT(grpc_hdr_status(t, 2), -1);
    CHECK_EQ_INT(grpc_status_from_http(503), 14);
    CHECK_EQ_INT(grpc_status_from_http(504), 14);
    CHECK_EQ_INT(grpc_status_from_http(404), 12);
    CHECK_EQ_INT(grpc_status_from_http(401), 16);
    CHECK_EQ_INT(grpc_status_from_http(500), 2);
    char out[64];
    size_t on = grpc_message_encode("a b%c\n", 6, out, sizeof out - 1);
    out[on] = '\0';
    CHECK_EQ_STR(out, "a b%25c%0A");
}

static void test_chunked_phases(void)
{
    struct h1_chunked c;
    h1_chunked_init(&c, 0);
    const char *in = "3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n";
    size_t n = strlen(in), at = 0, trailer = 0;
    int r = 0;
    while (at < n) {
        enum h1_chunk_phase ph = h1_chunked_phase(&c);
        size_t used = 0, dlen = 0;
        const char *d;
        r = h1_chunked_feed(&c, in + at, ph == H1_PHASE_DATA ? n - at : 1, &used, &d, &dlen);
        if (ph == H1_PHASE_TRAILERS)
            trailer += used;
        at += used;
        if (r == H1_CHUNK_DONE || r == H1_CHUNK_BAD)
            break;
    }
    CHECK_EQ_INT(r, H1_CHUNK_DONE);
    CHECK_EQ_INT(trailer, 10); /* "x-t: 1\r\n\r\n" */
    CHECK_EQ_INT(h1_chunked_phase(&c), H1_PHASE_DONE);
}

static void test_h2_mem(void)
{
    struct h2_mem *slot = NULL;
    nghttp2_mem *m = h2_mem_get(&slot);
    CHECK(m != NULL && h2_mem_get(&slot) == m);
    void *a = m->malloc(100, m->mem_user_data);
    CHECK(a != NULL && ((uintptr_t)a & 15) == 0);
    m->free(a, m->mem_user_data);
    void *b = m->malloc(120, m->mem_user_data); /* same class: the block comes back */
    CHECK(a == b);
    void *c = m->realloc(b, 128, m->mem_user_data); /* still fits its class */
    CHECK(c == b);
    memset(c, 7, 128);
    void *d = m->realloc(c, 5000, m->mem_user_data);
    CHECK(d != NULL && ((unsigned char *)d)[127] == 7);
    void *z = m->calloc(10, 10, m->mem_user_data);
    CHECK(z != NULL && ((unsigned char *)z)[99] == 0);
    void *big = m->malloc(200000, m->mem_user_data);
    CHECK(big != NULL);
    big = m->realloc(big, 300000, m->mem_user_data);
    CHECK(big != NULL);
    m->free(big, m->mem_user_data);
    m->free(d, m->mem_user_data);
    m->free(z, m->mem_user_data);
    m->free(NULL, m->mem_user_data);
    h2_mem_free(slot);
}

static int field_number(const char *msg, const char *field)
{
    const ProtobufCMessageDescriptor *d = api_registry_find(msg, strlen(msg));
    if (!d)
        return -1;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, field);
    return f ? (int)f->id : -1;
}

static void test_field_numbers(void)
{
    const char *h2 = "envoy.config.core.v3.Http2ProtocolOptions";
    CHECK_EQ_INT(field_number(h2, "hpack_table_size"), 1);
    CHECK_EQ_INT(field_number(h2, "max_concurrent_streams"), 2);
    CHECK_EQ_INT(field_number(h2, "initial_stream_window_size"), 3);
    CHECK_EQ_INT(field_number(h2, "initial_connection_window_size"), 4);
    CHECK_EQ_INT(field_number(h2, "allow_connect"), 5);
    CHECK_EQ_INT(field_number(h2, "max_outbound_frames"), 7);
    CHECK_EQ_INT(field_number(h2, "max_outbound_control_frames"), 8);
    CHECK_EQ_INT(field_number(h2, "max_consecutive_inbound_frames_with_empty_payload"), 9);
    CHECK_EQ_INT(field_number(h2, "max_inbound_priority_frames_per_stream"), 10);
    CHECK_EQ_INT(field_number(h2, "max_inbound_window_update_frames_per_data_frame_sent"), 11);
    CHECK_EQ_INT(field_number(h2, "override_stream_error_on_invalid_http_message"), 14);
    const char *hcm = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    CHECK_EQ_INT(field_number(hcm, "codec_type"), 1);
    CHECK_EQ_INT(field_number(hcm, "http2_protocol_options"), 9);
    const char *hpo = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    CHECK_EQ_INT(field_number(hpo, "common_http_protocol_options"), 1);
    CHECK_EQ_INT(field_number(hpo, "explicit_http_config"), 3);
    CHECK_EQ_INT(field_number(hpo, "use_downstream_protocol_config"), 4);
    CHECK_EQ_INT(field_number(hpo, "auto_config"), 5);
    CHECK_EQ_INT(field_number("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig",
                              "http2_protocol_options"), 2);
    CHECK_EQ_INT(field_number("envoy.config.cluster.v3.Cluster", "typed_extension_protocol_options"), 36);
    CHECK_EQ_INT(field_number("envoy.config.cluster.v3.Cluster", "http2_protocol_options"), 14);
    CHECK_EQ_INT(field_number("envoy.config.route.v3.RouteAction", "max_grpc_timeout"), 23);
    CHECK_EQ_INT(field_number("envoy.config.route.v3.RouteAction", "max_stream_duration"), 36);
    CHECK_EQ_INT(field_number("envoy.config.route.v3.RouteAction.MaxStreamDuration", "grpc_timeout_header_max"), 2);
    CHECK_EQ_INT(field_number("envoy.config.core.v3.HttpProtocolOptions", "max_requests_per_connection"), 6);
}

TEST_MAIN(TEST(test_codec_select), TEST(test_grpc), TEST(test_chunked_phases), TEST(test_h2_mem),
          TEST(test_field_numbers))
