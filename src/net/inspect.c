#include "net/inspect.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#define REC_HDR 5
#define HS_CLIENT_HELLO 1

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be24(const uint8_t *p) { return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]; }

static void parse_sni(const uint8_t *p, size_t n, struct tls_hello *out)
{
    if (n < 2)
        return;
    size_t list = be16(p);
    p += 2;
    if (list > n - 2)
        return;
    while (list >= 3) {
        uint8_t type = p[0];
        size_t len = be16(p + 1);
        if (len > list - 3)
            return;
        if (type == 0 && len > 0 && len < sizeof out->sni && !out->sni[0]) {
            for (size_t i = 0; i < len; i++) {
                if (p[3 + i] == 0)
                    return; /* a NUL in a host name: ignore the name */
                out->sni[i] = (char)tolower(p[3 + i]);
            }
            out->sni[len] = '\0';
        }
        p += 3 + len;
        list -= 3 + len;
    }
}

static void parse_alpn(const uint8_t *p, size_t n, struct tls_hello *out)
{
    if (n < 2)
        return;
    size_t list = be16(p);
    p += 2;
    if (list > n - 2)
        return;
    while (list >= 1) {
        size_t len = p[0];
        if (len == 0 || len > list - 1)
            return;
        /* A name with a NUL byte is not a protocol anyone speaks; kept, it would read as a
         * shorter name ("h2\0x" as "h2"). Skip it. */
        if (len <= INSPECT_ALPN_LEN && out->n_alpn < INSPECT_MAX_ALPN && !memchr(p + 1, 0, len)) {
            memcpy(out->alpn[out->n_alpn], p + 1, len);
            out->alpn[out->n_alpn][len] = '\0';
            out->n_alpn++;
        }
        p += 1 + len;
        list -= 1 + len;
    }
}

/* The ClientHello body (after the 4-byte handshake header). Malformed parts are skipped: the
 * connection is still TLS and OpenSSL will reject it properly if it is terminated here. */
static void parse_hello(const uint8_t *p, size_t n, struct tls_hello *out)
{
    size_t off = 2 + 32; /* legacy_version, random */
    if (off + 1 > n)
        return;
    off += 1 + p[off]; /* session id */
    if (off + 2 > n)
        return;
    off += 2 + be16(p + off); /* cipher suites */
    if (off + 1 > n)
        return;
    off += 1 + p[off]; /* compression methods */
    if (off + 2 > n)
        return;
    size_t ext_len = be16(p + off);
    off += 2;
    if (ext_len > n - off)
        ext_len = n - off;
    const uint8_t *e = p + off;
    while (ext_len >= 4) {
        uint32_t type = be16(e), len = be16(e + 2);
        if (len > ext_len - 4)
            return;
        if (type == 0)
            parse_sni(e + 4, len, out);
        else if (type == 16)
            parse_alpn(e + 4, len, out);
        e += 4 + len;
        ext_len -= 4 + len;
    }
}

enum inspect_result tls_inspect(const uint8_t *p, size_t n, size_t max, struct tls_hello *out)
{
    memset(out, 0, sizeof *out);
    if (max > INSPECT_PEEK_MAX)
        max = INSPECT_PEEK_MAX;
    if (n == 0)
        return INSPECT_NEED_MORE;
    if (p[0] != 0x16)
        return INSPECT_NO;
    if (n >= 2 && p[1] != 3)
        return INSPECT_NO;
    if (n >= 3 && p[2] > 4)
        return INSPECT_NO;
    /* Reassemble the handshake message from consecutive handshake records. */
    uint8_t hs[INSPECT_PEEK_MAX];
    size_t hs_len = 0, off = 0;
    for (;;) {
        if (n - off < REC_HDR)
            return off + REC_HDR > max ? INSPECT_TOO_LARGE : INSPECT_NEED_MORE;
        const uint8_t *r = p + off;
        if (r[0] != 0x16 || r[1] != 3)
            return off == 0 ? INSPECT_NO : INSPECT_MATCH; /* TLS, just not one we can read */
        size_t len = be16(r + 3);
        if (len == 0 || len > 16384 + 2048)
            return off == 0 ? INSPECT_NO : INSPECT_MATCH;
        if (off + REC_HDR + len > max)
            return INSPECT_TOO_LARGE;
        if (n - off - REC_HDR < len)
            return INSPECT_NEED_MORE;
        if (hs_len + len > sizeof hs)
            return INSPECT_TOO_LARGE;
        memcpy(hs + hs_len, r + REC_HDR, len);
        hs_len += len;
        off += REC_HDR + len;
        if (hs_len >= 4) {
            if (hs[0] != HS_CLIENT_HELLO)
                return INSPECT_NO; /* a client speaks first with a ClientHello or it is not TLS */
            size_t body = be24(hs + 1);
            if (4 + body > sizeof hs || 4 + body + REC_HDR > max)
                return INSPECT_TOO_LARGE;
            if (hs_len >= 4 + body) {
                parse_hello(hs + 4, body, out);
                return INSPECT_MATCH;
            }
        }
    }
}

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static bool tchar(uint8_t c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

enum inspect_result http_inspect(const uint8_t *p, size_t n, size_t max, const char **proto)
{
    size_t pl = sizeof h2_preface - 1;
    size_t cmp = n < pl ? n : pl;
    if (memcmp(p, h2_preface, cmp) == 0) {
        if (n < pl)
            return INSPECT_NEED_MORE;
        *proto = "h2c";
        return INSPECT_MATCH;
    }
    /* method SP request-target SP HTTP/1.x CRLF */
    size_t i = 0;
    while (i < n && tchar(p[i]))
        i++;
    if (i == n)
        return n >= max || n > 64 ? INSPECT_NO : INSPECT_NEED_MORE;
    if (i == 0 || p[i] != ' ')
        return INSPECT_NO;
    for (size_t j = i + 1; j < n; j++) {
        if (p[j] == '\n' || p[j] == '\r') {
            if (j < i + 1 + 1 + 9)
                return INSPECT_NO;
            const uint8_t *v = p + j - 9;
            if (memcmp(v, " HTTP/1.1", 9) == 0) {
                *proto = "http/1.1";
                return INSPECT_MATCH;
            }
            if (memcmp(v, " HTTP/1.0", 9) == 0) {
                *proto = "http/1.0";
                return INSPECT_MATCH;
            }
            return INSPECT_NO;
        }
        if (p[j] < 0x21 && p[j] != ' ')
            return INSPECT_NO;
    }
    return n >= max ? INSPECT_NO : INSPECT_NEED_MORE;
}
