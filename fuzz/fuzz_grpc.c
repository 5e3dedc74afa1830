/* libFuzzer target for net/grpc: the streaming deframer and the header parsers on arbitrary
 * bytes, with differential checks:
 *   - the deframer yields the same messages, the same error and the same consumed count
 *     whether the input comes in one piece or in pieces of several sizes;
 *   - every message it yields is within max_message and inside the input or its own buffer;
 *   - grpc-timeout values that parse format back to a value that parses to at least as long;
 *   - grpc-message encoding gives only 0x20-0x7E bytes and decodes back to the input;
 *   - grpc-status parses to -1 or 0..999.
 * The first input byte picks the max message size and whether compression is allowed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/grpc.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

struct result {
    int rc;
    size_t used, nmsg, total;
    uint64_t hash;
    const char *error;
};

static void deframe(const uint8_t *in, size_t len, size_t step, uint32_t max, bool comp,
                    struct result *r)
{
    struct grpc_deframer d;
    grpc_deframer_init(&d, max, comp);
    memset(r, 0, sizeof *r);
    r->hash = 1469598103934665603ull;
    size_t off = 0;
    int rc = GRPC_DF_NEED_MORE;
    while (off < len && rc != GRPC_DF_ERROR) {
        size_t piece = len - off < step ? len - off : step;
        size_t poff = 0;
        while (poff < piece) {
            size_t used;
            struct grpc_msg m;
            rc = grpc_deframer_feed(&d, in + off + poff, piece - poff, &used, &m);
            check(used <= piece - poff);
            poff += used;
            if (rc == GRPC_DF_ERROR) {
                check(d.error != NULL);
                check(d.error_status == GRPC_STATUS_RESOURCE_EXHAUSTED ||
                      d.error_status == GRPC_STATUS_INTERNAL);
                break;
            }
            if (rc == GRPC_DF_MESSAGE) {
                check(m.len <= d.max_message);
                check(!m.compressed || comp);
                int in_input = m.data >= in && m.data + m.len <= in + off + poff;
                int in_buf = m.len == 0 || (d.buf && m.data >= d.buf && m.data + m.len <= d.buf + d.buf_cap);
                check(in_input || in_buf);
                r->nmsg++;
                r->total += m.len;
                for (size_t i = 0; i < m.len; i++)
                    r->hash = (r->hash ^ m.data[i]) * 1099511628211ull;
                r->hash = (r->hash ^ (m.compressed ? 0x100 : 0x200)) * 1099511628211ull;
            } else {
                check(poff == piece);   /* NEED_MORE consumes everything */
            }
        }
        off += poff;
    }
    r->rc = rc == GRPC_DF_ERROR ? rc : 0;
    r->used = off;
    r->error = d.error;
    if (rc != GRPC_DF_ERROR)
        check(off == len);
    grpc_deframer_free(&d);
}

static void fuzz_deframer(const uint8_t *in, size_t len, uint8_t mode)
{
    uint32_t max = (mode & 0x0f) ? (uint32_t)(mode & 0x0f) * 7u : 0;
    bool comp = (mode & 0x10) != 0;
    struct result whole, part;
    deframe(in, len, len ? len : 1, max, comp, &whole);
    static const size_t steps[] = {1, 2, 3, 7, 64};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        deframe(in, len, steps[k], max, comp, &part);
        check(part.rc == whole.rc && part.nmsg == whole.nmsg && part.total == whole.total &&
              part.hash == whole.hash);
        check((part.error == NULL) == (whole.error == NULL));
        if (part.error)
            check(strcmp(part.error, whole.error) == 0);
    }
}

static void fuzz_headers(const char *s, size_t n)
{
    uint64_t ns;
    if (grpc_timeout_parse(s, n, &ns) == 0) {
        char b[GRPC_TIMEOUT_MAX];
        size_t fl = grpc_timeout_format(ns, b);
        check(fl >= 2 && fl <= 9 && b[fl] == 0);
        uint64_t back;
        check(grpc_timeout_parse(b, fl, &back) == 0);
        check(back >= ns);
    }
    if (grpc_content_type_ok(s, n))
        check(n >= 16 && memcmp(s, "application/grpc", 16) == 0);
    int st = grpc_status_parse(s, n);
    check(st >= -1 && st <= 999);
    (void)grpc_status_name(st);

    size_t en = grpc_message_encode(s, n, NULL, 0);
    check(en >= n && en <= 3 * n);
    char *e = malloc(en ? en : 1), *d = malloc(en ? en : 1);
    check(e && d);
    check(grpc_message_encode(s, n, e, en) == en);
    for (size_t i = 0; i < en; i++)
        check(e[i] >= 0x20 && e[i] <= 0x7e);
    check(grpc_message_decode(e, en, d) == n && memcmp(d, s, n) == 0);
    /* decoding arbitrary input never grows it */
    char *d2 = malloc(n ? n : 1);
    check(d2 != NULL);
    check(grpc_message_decode(s, n, d2) <= n);
    free(d2);
    free(e);
    free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    size_t len = size - 1;
    uint8_t *buf = malloc(len ? len : 1);   /* exact size, so overreads are caught */
    check(buf != NULL);
    memcpy(buf, data + 1, len);
    fuzz_deframer(buf, len, mode);
    if (len <= 4096)
        fuzz_headers((const char *)buf, len);
    free(buf);
    return 0;
}
