#include "common/hex.h"
#include "net/grpc.h"

#include <stdlib.h>
#include <string.h>

static const char *const status_names[GRPC_STATUS_MAX + 1] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *grpc_status_name(int code)
{
    return code >= 0 && code <= GRPC_STATUS_MAX ? status_names[code] : NULL;
}

int grpc_status_parse(const char *s, size_t n)
{
    if (n == 0 || n > 3)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

enum grpc_status grpc_status_from_http(int http_status)
{
    switch (http_status) {
    case 400: return GRPC_STATUS_INTERNAL;
    case 401: return GRPC_STATUS_UNAUTHENTICATED;
    case 403: return GRPC_STATUS_PERMISSION_DENIED;
    case 404: return GRPC_STATUS_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504: return GRPC_STATUS_UNAVAILABLE;
    default: return GRPC_STATUS_UNKNOWN;
    }
}

bool grpc_content_type_ok(const char *v, size_t n)
{
    static const char ct[] = "application/grpc";
    size_t l = sizeof ct - 1;
    return n >= l && memcmp(v, ct, l) == 0 && (n == l || v[l] == '+' || v[l] == ';');
}

void grpc_prefix_write(uint8_t out[GRPC_PREFIX_LEN], bool compressed, uint32_t len)
{
    out[0] = compressed ? 1 : 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

/* --- deframer --- */

void grpc_deframer_init(struct grpc_deframer *d, uint32_t max_message, bool compression_allowed)
{
    memset(d, 0, sizeof *d);
    d->max_message = max_message ? max_message : GRPC_DEFAULT_MAX_MESSAGE;
    d->compression_allowed = compression_allowed;
}

void grpc_deframer_free(struct grpc_deframer *d)
{
    free(d->buf);
    d->buf = NULL;
    d->buf_cap = 0;
}

static int df_fail(struct grpc_deframer *d, enum grpc_status st, const char *why)
{
    d->error_status = st;
    d->error = why;
    return GRPC_DF_ERROR;
}

/* Checks a complete prefix; makes room for a body that will arrive in pieces later. */
static int df_prefix_done(struct grpc_deframer *d)
{
    uint8_t flag = d->prefix[0];
    d->msg_len = (uint32_t)d->prefix[1] << 24 | (uint32_t)d->prefix[2] << 16 |
                 (uint32_t)d->prefix[3] << 8 | d->prefix[4];
    if (flag > 1)
        return df_fail(d, GRPC_STATUS_INTERNAL, "invalid compressed flag");
    if (flag == 1 && !d->compression_allowed)
        return df_fail(d, GRPC_STATUS_INTERNAL, "compressed message without grpc-encoding");
    if (d->msg_len > d->max_message) {
        d->error_len = d->msg_len;
        return df_fail(d, GRPC_STATUS_RESOURCE_EXHAUSTED, "message larger than max");
    }
    d->compressed = flag == 1;
    d->in_message = true;
    d->msg_have = 0;
    d->prefix_have = 0;
    return 0;
}

int grpc_deframer_feed(struct grpc_deframer *d, const uint8_t *in, size_t len, size_t *used,
                       struct grpc_msg *msg)
{
    size_t off = 0;
    *used = 0;
    if (d->error)
        return GRPC_DF_ERROR;
    if (!d->in_message) {
        while (d->prefix_have < GRPC_PREFIX_LEN && off < len)
            d->prefix[d->prefix_have++] = in[off++];
        if (d->prefix_have < GRPC_PREFIX_LEN) {
            *used = off;
            return GRPC_DF_NEED_MORE;
        }
        if (df_prefix_done(d) < 0) {
            *used = off;
            return GRPC_DF_ERROR;
        }
    }
    size_t want = d->msg_len - d->msg_have;
    size_t avail = len - off;
    if (d->msg_have == 0 && avail >= want) {
        /* the whole body is in this piece: hand it out in place */
        msg->data = in + off;
        msg->len = want;
        msg->compressed = d->compressed;
        d->in_message = false;
        *used = off + want;
        return GRPC_DF_MESSAGE;
    }
    if (d->buf_cap < d->msg_len) {
        uint8_t *nb = realloc(d->buf, d->msg_len);
        if (!nb) {
            *used = off;
            return df_fail(d, GRPC_STATUS_INTERNAL, "out of memory");
        }
        d->buf = nb;
        d->buf_cap = d->msg_len;
    }
    size_t take = avail < want ? avail : want;
    if (take)
        memcpy(d->buf + d->msg_have, in + off, take);
    d->msg_have += (uint32_t)take;
    *used = off + take;
    if (d->msg_have < d->msg_len)
        return GRPC_DF_NEED_MORE;
    msg->data = d->buf;
    msg->len = d->msg_len;
    msg->compressed = d->compressed;
    d->in_message = false;
    return GRPC_DF_MESSAGE;
}

/* --- grpc-timeout --- */

static const struct { char unit; uint64_t ns; } timeout_units[] = {
    {'n', 1}, {'u', 1000}, {'m', 1000000}, {'S', 1000000000ull},
    {'M', 60ull * 1000000000ull}, {'H', 3600ull * 1000000000ull},
};
#define N_UNITS (sizeof timeout_units / sizeof timeout_units[0])

int grpc_timeout_parse(const char *s, size_t n, uint64_t *ns)
{
    if (n < 2 || n > 9)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    for (size_t u = 0; u < N_UNITS; u++) {
        if (s[n - 1] != timeout_units[u].unit)
            continue;
        uint64_t mul = timeout_units[u].ns;
        *ns = v > UINT64_MAX / mul ? UINT64_MAX : v * mul;
        return 0;
    }
    return -1;
}

size_t grpc_timeout_format(uint64_t ns, char out[GRPC_TIMEOUT_MAX])
{
    size_t u = 0;
    uint64_t v = ns;
    /* smallest unit whose rounded-up count fits in 8 digits */
    while (u + 1 < N_UNITS) {
        uint64_t div = timeout_units[u].ns;
        v = ns / div + (ns % div != 0);
        if (v <= 99999999u)
            break;
        u++;
    }
    if (u + 1 == N_UNITS) {
        uint64_t div = timeout_units[u].ns;
        v = ns / div + (ns % div != 0);
        if (v > 99999999u)
            v = 99999999u;
    }
    char digits[20];
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    size_t len = 0;
    while (nd)
        out[len++] = digits[--nd];
    out[len++] = timeout_units[u].unit;
    out[len] = '\0';
    return len;
}

/* --- grpc-message --- */

static bool msg_plain(unsigned char c)
{
    return c >= 0x20 && c <= 0x7e && c != '%';
}

size_t grpc_message_encode(const char *in, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (msg_plain(c)) {
            if (o < cap)
                out[o] = (char)c;
            o++;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            for (int k = 0; k < 3; k++, o++)
                if (o < cap)
                    out[o] = e[k];
        }
    }
    return o;
}

size_t grpc_message_decode(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (in[i] == '%' && i + 2 < n &&
            (hi = hex_digit(in[i + 1])) >= 0 && (lo = hex_digit(in[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}
