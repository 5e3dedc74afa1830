/* libFuzzer target for net/http1: request and response heads and the chunked decoder on
 * arbitrary bytes, with differential checks:
 *   - a prefix of the input parses to H1_INCOMPLETE or to exactly the whole input's result
 *     (same length, same fields, same error reason);
 *   - chunked decoding gives the same payload, result and consumed count whether the input
 *     comes in one piece or in pieces of any size.
 * The first input byte picks small limits so the 431 paths are reached too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/http1.h"

#define MAX_HDRS 32

static struct h1_header hdrs_a[MAX_HDRS], hdrs_b[MAX_HDRS];

static void check(int ok)
{
    if (!ok)
        abort();
}

static int str_same(struct h1_str a, struct h1_str b)
{
    return a.p == b.p && a.n == b.n;
}

static int in_buf(struct h1_str s, const char *buf, size_t len)
{
    if (s.n == 0)
        return 1;
    return s.p >= buf && s.p + s.n <= buf + len;
}

static int same_request(const struct h1_request *a, const struct h1_request *b)
{
    if (!str_same(a->method, b->method) || !str_same(a->target, b->target) || a->minor != b->minor ||
        a->nheaders != b->nheaders || !str_same(a->host, b->host) ||
        a->content_length != b->content_length || a->chunked != b->chunked ||
        a->keep_alive != b->keep_alive || a->upgrade != b->upgrade ||
        a->expect_continue != b->expect_continue || a->absolute_form != b->absolute_form ||
        a->connect != b->connect || !str_same(a->path, b->path) ||
        !str_same(a->upgrade_proto, b->upgrade_proto))
        return 0;
    for (size_t i = 0; i < a->nheaders; i++)
        if (!str_same(a->headers[i].name, b->headers[i].name) ||
            !str_same(a->headers[i].value, b->headers[i].value))
            return 0;
    return 1;
}

static void check_request(const char *buf, size_t len, const struct h1_request *r, int rc)
{
    if (rc < 0) {
        check(rc == H1_INCOMPLETE ? r->error == NULL : r->error != NULL);
        return;
    }
    check(rc > 0 && (size_t)rc <= len && r->error == NULL);
    check(r->nheaders <= MAX_HDRS && (r->minor == 0 || r->minor == 1));
    check(in_buf(r->method, buf, len) && r->method.n > 0 && in_buf(r->target, buf, len));
    check(in_buf(r->host, buf, len));
    check(r->path.n == 1 || r->connect || in_buf(r->path, buf, len));
    check(!(r->chunked && r->content_length >= 0));
    for (size_t i = 0; i < r->nheaders; i++) {
        check(in_buf(r->headers[i].name, buf, len) && r->headers[i].name.n > 0);
        check(in_buf(r->headers[i].value, buf, len));
        check(r->headers[i].value.p + r->headers[i].value.n <= buf + rc);
    }
}

static size_t prefix_step(size_t len)
{
    return len <= 512 ? 1 : len / 256;
}

static void fuzz_request(const char *buf, size_t len, const struct h1_limits *lim)
{
    struct h1_request whole, part;
    whole.headers = hdrs_a;
    int rc = h1_parse_request(buf, len, lim, &whole);
    check_request(buf, len, &whole, rc);
    if (rc > 0)
        (void)h1_request_body_kind(&whole);

    for (size_t i = 0; i < len; i += prefix_step(len)) {
        part.headers = hdrs_b;
        int prc = h1_parse_request(buf, i, lim, &part);
        check_request(buf, i, &part, prc);
        if (prc == H1_INCOMPLETE)
            continue;
        check(prc == rc);
        if (prc > 0)
            check(same_request(&whole, &part));
        else
            check(strcmp(part.error, whole.error) == 0);
    }
}

static void fuzz_response(const char *buf, size_t len, const struct h1_limits *lim)
{
    struct h1_response whole, part;
    whole.headers = hdrs_a;
    int rc = h1_parse_response(buf, len, lim, &whole);
    if (rc > 0) {
        check((size_t)rc <= len && whole.status >= 100 && whole.status <= 599);
        check(!(whole.chunked && whole.content_length >= 0));
        enum h1_body_kind k = h1_response_body_kind(&whole, false, false);
        check(k != H1_BODY_CHUNKED || whole.chunked);
    }
    for (size_t i = 0; i < len; i += prefix_step(len) * 4) {
        part.headers = hdrs_b;
        int prc = h1_parse_response(buf, i, lim, &part);
        if (prc == H1_INCOMPLETE)
            continue;
        check(prc == rc);
        if (prc > 0)
            check(part.status == whole.status && part.nheaders == whole.nheaders &&
                  part.content_length == whole.content_length && str_same(part.reason, whole.reason));
        else
            check(strcmp(part.error, whole.error) == 0);
    }
}

/* Decodes in[0..len) in pieces of `step` bytes into out; returns the final result. */
static int dechunk(const char *in, size_t len, size_t step, size_t max_trailer, char *out,
                   size_t *out_len, size_t *used)
{
    struct h1_chunked c;
    h1_chunked_init(&c, max_trailer);
    size_t off = 0, olen = 0;
    int rc = H1_CHUNK_NEED_MORE;
    while (off < len) {
        size_t avail = len - off < step ? len - off : step;
        size_t n, dn;
        const char *d;
        rc = h1_chunked_feed(&c, in + off, avail, &n, &d, &dn);
        check(n <= avail);
        if (rc == H1_CHUNK_DATA) {
            check(dn > 0 && d >= in + off && d + dn <= in + off + n);
            memcpy(out + olen, d, dn);
            olen += dn;
        } else if (rc == H1_CHUNK_NEED_MORE) {
            check(n == avail);
        } else {
            check(dn == 0);
            check(rc == H1_CHUNK_DONE || (rc == H1_CHUNK_BAD && c.error));
            off += n;
            break;
        }
        off += n;
    }
    if (rc == H1_CHUNK_DATA)
        rc = H1_CHUNK_NEED_MORE;
    *out_len = olen;
    *used = off;
    return rc;
}

static void fuzz_chunked(const char *in, size_t len, size_t max_trailer)
{
    char *a = malloc(len + 1), *b = malloc(len + 1);
    check(a && b);
    size_t alen, blen, aused, bused;
    int rc = dechunk(in, len, len ? len : 1, max_trailer, a, &alen, &aused);
    static const size_t steps[] = { 1, 2, 5, 64 };
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        int rc2 = dechunk(in, len, steps[k], max_trailer, b, &blen, &bused);
        check(rc2 == rc && blen == alen && bused == aused && memcmp(a, b, alen) == 0);
    }
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    size_t len = size - 1;
    /* an exact-size copy, so reads past the end are caught by ASan */
    char *buf = malloc(len ? len : 1);
    check(buf != NULL);
    memcpy(buf, data + 1, len);

    struct h1_limits lim = { 0, MAX_HDRS };
    if (mode & 1)
        lim = (struct h1_limits){ 48u + (mode >> 2), 1u + ((mode >> 1) & 7) };

    fuzz_request(buf, len, &lim);
    fuzz_response(buf, len, &lim);

    /* chunked body: after a parsed request head if there is one, else the whole input */
    struct h1_request r;
    r.headers = hdrs_a;
    int rc = h1_parse_request(buf, len, &lim, &r);
    size_t off = rc > 0 ? (size_t)rc : 0;
    fuzz_chunked(buf + off, len - off, (mode & 2) ? 16 : 0);

    free(buf);
    return 0;
}
