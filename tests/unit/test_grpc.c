/* Tests for net/grpc: the message prefix, the deframer at every split point, its limits,
 * grpc-timeout parse/format, status names and parsing, grpc-message percent-encoding and the
 * HTTP → gRPC status mapping. */
#include <stdint.h>
#include <stdlib.h>

#include "net/grpc.h"
#include "test.h"

/* Builds prefix+body for each of n messages into out; returns total bytes. */
static size_t frame(uint8_t *out, const char *const *msgs, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(msgs[i]);
        grpc_prefix_write(out + o, false, (uint32_t)len);
        memcpy(out + o + GRPC_PREFIX_LEN, msgs[i], len);
        o += GRPC_PREFIX_LEN + len;
    }
    return o;
}

static void test_prefix(void)
{
    uint8_t p[5];
    grpc_prefix_write(p, false, 0x01020304);
    CHECK(p[0] == 0 && p[1] == 1 && p[2] == 2 && p[3] == 3 && p[4] == 4);
    grpc_prefix_write(p, true, 5);
    CHECK(p[0] == 1 && p[4] == 5);
}

/* Feeds in pieces of `step`; collects messages joined by '|'. Returns the last rc. */
static int feed_all(struct grpc_deframer *d, const uint8_t *in, size_t len, size_t step,
                    char *out, size_t *nmsg)
{
    size_t off = 0, o = 0;
    int rc = GRPC_DF_NEED_MORE;
    *nmsg = 0;
    out[0] = 0;
    while (off < len) {
        size_t piece = len - off < step ? len - off : step;
        size_t poff = 0;
        while (poff < piece) {
            size_t used;
            struct grpc_msg m;
            rc = grpc_deframer_feed(d, in + off + poff, piece - poff, &used, &m);
            poff += used;
            if (rc == GRPC_DF_ERROR)
                return rc;
            if (rc == GRPC_DF_MESSAGE) {
                memcpy(out + o, m.data, m.len);
                o += m.len;
                out[o++] = '|';
                out[o] = 0;
                (*nmsg)++;
            }
        }
        off += piece;
    }
    return rc;
}

static void test_deframe_splits(void)
{
    static const char *const msgs[] = {"hello", "", "a", "world of grpc"};
    uint8_t wire[128];
    size_t len = frame(wire, msgs, 4);
    for (size_t step = 1; step <= len; step++) {
        struct grpc_deframer d;
        grpc_deframer_init(&d, 0, false);
        char out[128];
        size_t n;
        int rc = feed_all(&d, wire, len, step, out, &n);
        CHECK(rc != GRPC_DF_ERROR);
        CHECK_EQ_INT(n, 4);
        CHECK_EQ_STR(out, "hello||a|world of grpc|");
        CHECK(grpc_deframer_idle(&d));
        grpc_deframer_free(&d);
    }
}

static void test_deframe_zero_copy(void)
{
    static const char *const msgs[] = {"abc"};
    uint8_t wire[16];
    size_t len = frame(wire, msgs, 1);
    struct grpc_deframer d;
    grpc_deframer_init(&d, 0, false);
    size_t used;
    struct grpc_msg m;
    CHECK_EQ_INT(grpc_deframer_feed(&d, wire, len, &used, &m), GRPC_DF_MESSAGE);
    CHECK_EQ_INT(used, len);
    CHECK(m.data == wire + 5 && m.len == 3 && !m.compressed);
    CHECK(d.buf == NULL);   /* nothing buffered */
    grpc_deframer_free(&d);
}

static void test_deframe_limits(void)
{
    struct grpc_deframer d;
    uint8_t p[5];
    size_t used;
    struct grpc_msg m;

    /* exactly at the limit: accepted */
    grpc_deframer_init(&d, 10, false);
    grpc_prefix_write(p, false, 10);
    CHECK_EQ_INT(grpc_deframer_feed(&d, p, 5, &used, &m), GRPC_DF_NEED_MORE);
    CHECK(!grpc_deframer_idle(&d));
    CHECK_EQ_INT(grpc_deframer_feed(&d, (const uint8_t *)"0123456789", 10, &used, &m), GRPC_DF_MESSAGE);
    CHECK_EQ_INT(m.len, 10);
    grpc_deframer_free(&d);

    /* one over: rejected from the prefix, nothing buffered */
    grpc_deframer_init(&d, 10, false);
    grpc_prefix_write(p, false, 11);
    CHECK_EQ_INT(grpc_deframer_feed(&d, p, 5, &used, &m), GRPC_DF_ERROR);
    CHECK_EQ_INT(d.error_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK_EQ_INT(d.error_len, 11);
    CHECK(d.buf == NULL);
    CHECK_EQ_INT(grpc_deframer_feed(&d, p, 5, &used, &m), GRPC_DF_ERROR);   /* stays failed */
    grpc_deframer_free(&d);

    /* default limit is 4 MiB; a 4 GiB length is refused */
    grpc_deframer_init(&d, 0, false);
    CHECK_EQ_INT(d.max_message, 4u << 20);
    grpc_prefix_write(p, false, 0xffffffffu);
    CHECK_EQ_INT(grpc_deframer_feed(&d, p, 5, &used, &m), GRPC_DF_ERROR);
    grpc_deframer_free(&d);

    /* compressed without negotiated encoding: INTERNAL */
    grpc_deframer_init(&d, 0, false);
    grpc_prefix_write(p, true, 1);
    CHECK_EQ_INT(grpc_deframer_feed(&d, p, 5, &used, &m), GRPC_DF_ERROR);
    CHECK_EQ_INT(d.error_status, GRPC_STATUS_INTERNAL);
    grpc_deframer_free(&d);

    /* compressed with encoding: passed up flagged */
    grpc_deframer_init(&d, 0, true);
    uint8_t w[6];
    grpc_prefix_write(w, true, 1);
    w[5] = 'z';
    CHECK_EQ_INT(grpc_deframer_feed(&d, w, 6, &used, &m), GRPC_DF_MESSAGE);
    CHECK(m.compressed && m.len == 1 && m.data[0] == 'z');
    grpc_deframer_free(&d);

    /* flag byte 2: INTERNAL */
    grpc_deframer_init(&d, 0, true);
    p[0] = 2;
    CHECK_EQ_INT(grpc_deframer_feed(&d, p, 5, &used, &m), GRPC_DF_ERROR);
    CHECK_EQ_INT(d.error_status, GRPC_STATUS_INTERNAL);
    grpc_deframer_free(&d);
}

static void test_deframe_large_split(void)
{
    size_t n = 1 << 20;
    uint8_t *wire = malloc(n + 5);
    grpc_prefix_write(wire, false, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        wire[5 + i] = (uint8_t)(i * 7);
    struct grpc_deframer d;
    grpc_deframer_init(&d, 0, false);
    size_t off = 0, msgs = 0;
    while (off < n + 5) {
        size_t piece = (n + 5 - off) < 16384 ? n + 5 - off : 16384, used;
        struct grpc_msg m;
        int rc = grpc_deframer_feed(&d, wire + off, piece, &used, &m);
        CHECK(rc != GRPC_DF_ERROR);
        if (rc == GRPC_DF_MESSAGE) {
            msgs++;
            CHECK(m.len == n && memcmp(m.data, wire + 5, n) == 0);
        }
        off += used;
    }
    CHECK_EQ_INT(msgs, 1);
    grpc_deframer_free(&d);
    free(wire);
}

static void test_timeout_parse(void)
{
    uint64_t ns;
    CHECK(grpc_timeout_parse("1S", 2, &ns) == 0 && ns == 1000000000ull);
    CHECK(grpc_timeout_parse("100m", 4, &ns) == 0 && ns == 100000000ull);
    CHECK(grpc_timeout_parse("5u", 2, &ns) == 0 && ns == 5000);
    CHECK(grpc_timeout_parse("7n", 2, &ns) == 0 && ns == 7);
    CHECK(grpc_timeout_parse("2M", 2, &ns) == 0 && ns == 120000000000ull);
    CHECK(grpc_timeout_parse("3H", 2, &ns) == 0 && ns == 3ull * 3600 * 1000000000ull);
    CHECK(grpc_timeout_parse("0S", 2, &ns) == 0 && ns == 0);
    CHECK(grpc_timeout_parse("99999999n", 9, &ns) == 0 && ns == 99999999ull);
    CHECK(grpc_timeout_parse("99999999H", 9, &ns) == 0 && ns == UINT64_MAX);   /* saturates */
    CHECK(grpc_timeout_parse("123456789S", 10, &ns) < 0);   /* 9 digits */
    CHECK(grpc_timeout_parse("S", 1, &ns) < 0);
    CHECK(grpc_timeout_parse("", 0, &ns) < 0);
    CHECK(grpc_timeout_parse("10", 2, &ns) < 0);
    CHECK(grpc_timeout_parse("10s", 3, &ns) < 0);   /* lowercase s is not a unit */
    CHECK(grpc_timeout_parse("1 S", 3, &ns) < 0);
    CHECK(grpc_timeout_parse("-1S", 3, &ns) < 0);
    CHECK(grpc_timeout_parse("1SS", 3, &ns) < 0);
}

static void test_timeout_format(void)
{
    char b[GRPC_TIMEOUT_MAX];
    CHECK(grpc_timeout_format(0, b) == 2 && strcmp(b, "0n") == 0);
    grpc_timeout_format(1000000000ull, b);
    CHECK_EQ_STR(b, "1000000u");
    grpc_timeout_format(99999999ull, b);
    CHECK_EQ_STR(b, "99999999n");
    grpc_timeout_format(100000001ull, b);   /* rounds up to 100001u */
    CHECK_EQ_STR(b, "100001u");
    grpc_timeout_format(UINT64_MAX, b);
    CHECK(strlen(b) <= 9);
    /* round trip never shortens */
    static const uint64_t vals[] = {1, 999, 123456789, 5000000000ull, 86400000000000ull,
                                    3600ull * 1000000000ull * 1000};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        size_t n = grpc_timeout_format(vals[i], b);
        uint64_t back;
        CHECK(grpc_timeout_parse(b, n, &back) == 0);
        CHECK(back >= vals[i]);
        CHECK(n <= 9);
    }
}

static void test_status(void)
{
    CHECK_EQ_STR(grpc_status_name(0), "OK");
    CHECK_EQ_STR(grpc_status_name(4), "DEADLINE_EXCEEDED");
    CHECK_EQ_STR(grpc_status_name(12), "UNIMPLEMENTED");
    CHECK_EQ_STR(grpc_status_name(16), "UNAUTHENTICATED");
    CHECK(grpc_status_name(17) == NULL && grpc_status_name(-1) == NULL);
    CHECK_EQ_INT(grpc_status_parse("0", 1), 0);
    CHECK_EQ_INT(grpc_status_parse("14", 2), 14);
    CHECK_EQ_INT(grpc_status_parse("", 0), -1);
    CHECK_EQ_INT(grpc_status_parse("1a", 2), -1);
    CHECK_EQ_INT(grpc_status_parse("1000", 4), -1);
    CHECK_EQ_INT(grpc_status_parse("-1", 2), -1);
}

static void test_http_mapping(void)
{
    CHECK_EQ_INT(grpc_status_from_http(400), GRPC_STATUS_INTERNAL);
    CHECK_EQ_INT(grpc_status_from_http(401), GRPC_STATUS_UNAUTHENTICATED);
    CHECK_EQ_INT(grpc_status_from_http(403), GRPC_STATUS_PERMISSION_DENIED);
    CHECK_EQ_INT(grpc_status_from_http(404), GRPC_STATUS_UNIMPLEMENTED);
    CHECK_EQ_INT(grpc_status_from_http(429), GRPC_STATUS_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_from_http(502), GRPC_STATUS_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_from_http(503), GRPC_STATUS_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_from_http(504), GRPC_STATUS_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_from_http(500), GRPC_STATUS_UNKNOWN);
    CHECK_EQ_INT(grpc_status_from_http(200), GRPC_STATUS_UNKNOWN);
}

static void test_content_type(void)
{
#define CT(s) grpc_content_type_ok(s, strlen(s))
    CHECK(CT("application/grpc"));
    CHECK(CT("application/grpc+proto"));
    CHECK(CT("application/grpc+json"));
    CHECK(CT("application/grpc;charset=utf-8"));
    CHECK(!CT("application/grpcx"));
    CHECK(!CT("application/grp"));
    CHECK(!CT("application/json"));
    CHECK(!CT("Application/grpc"));
    CHECK(!CT(""));
    CHECK(!CT("application/grpc-web"));
#undef CT
}

static void test_message_encoding(void)
{
    char out[64];
    const char *in = "a b%c\n\xc3\xa9~";
    size_t n = grpc_message_encode(in, strlen(in), out, sizeof out);
    out[n] = 0;
    CHECK_EQ_STR(out, "a b%25c%0A%C3%A9~");
    CHECK_EQ_INT(grpc_message_encode(in, strlen(in), NULL, 0), n);
    /* truncated output still reports the full length and writes only cap bytes */
    memset(out, 'X', sizeof out);
    CHECK_EQ_INT(grpc_message_encode(in, strlen(in), out, 4), n);
    CHECK(memcmp(out, "a b%X", 5) == 0);

    char dec[64];
    const char *enc = "a b%25c%0A%C3%A9~";
    size_t d = grpc_message_decode(enc, strlen(enc), dec);
    CHECK(d == strlen(in) && memcmp(dec, in, d) == 0);
    /* lowercase hex, and invalid sequences pass through */
    d = grpc_message_decode("%c3%a9%zz%4", 11, dec);
    CHECK(d == 7 && memcmp(dec, "\xc3\xa9%zz%4", 7) == 0);
    d = grpc_message_decode("%", 1, dec);
    CHECK(d == 1 && dec[0] == '%');
    /* in place */
    char buf[] = "x%41y";
    d = grpc_message_decode(buf, 5, buf);
    CHECK(d == 3 && memcmp(buf, "xAy", 3) == 0);
    /* every byte round-trips */
    char all[256], e[768], back[768];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    size_t en = grpc_message_encode(all, 256, e, sizeof e);
    for (size_t i = 0; i < en; i++)
        CHECK(e[i] >= 0x20 && e[i] <= 0x7e);
    CHECK(grpc_message_decode(e, en, back) == 256 && memcmp(back, all, 256) == 0);
}

TEST_MAIN(TEST(test_prefix), TEST(test_deframe_splits), TEST(test_deframe_zero_copy),
          TEST(test_deframe_limits), TEST(test_deframe_large_split), TEST(test_timeout_parse),
          TEST(test_timeout_format), TEST(test_status), TEST(test_http_mapping),
          TEST(test_message_encoding), TEST(test_content_type))
