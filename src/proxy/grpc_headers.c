#include "proxy/grpc_headers.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct h1_str *find(const struct h1_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (h1_str_eq_ci(h[i].name, name))
            return &h[i].value;
    return NULL;
}

bool grpc_is_request(const struct h1_header *h, size_t n)
{
    const struct h1_str *ct = find(h, n, "content-type");
    if (!ct || ct->n < 16 || strncasecmp(ct->p, "application/grpc", 16) != 0)
        return false;
    return ct->n == 16 || ct->p[16] == '+' || ct->p[16] == ';';
}

bool grpc_timeout_parse(const struct h1_header *h, size_t n, uint64_t *ms)
{
    const struct h1_str *v = find(h, n, "grpc-timeout");
    if (!v || v->n < 2 || v->n > 9)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i + 1 < v->n; i++) {
        if (v->p[i] < '0' || v->p[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(v->p[i] - '0');
    }
    uint64_t r;
    switch (v->p[v->n - 1]) {
    case 'H': r = x * 3600000u; break;
    case 'M': r = x * 60000u; break;
    case 'S': r = x * 1000u; break;
    case 'm': r = x; break;
    case 'u': r = (x + 999u) / 1000u; break;
    case 'n': r = (x + 999999u) / 1000000u; break;
    default: return false;
    }
    *ms = r;
    return true;
}

int grpc_status_from_http(int s)
{
    switch (s) {
    case 400: return 13; /* INTERNAL */
    case 401: return 16; /* UNAUTHENTICATED */
    case 403: return 7;  /* PERMISSION_DENIED */
    case 404: return 12; /* UNIMPLEMENTED */
    case 429: case 502: case 503: case 504: return 14; /* UNAVAILABLE */
    default: return 2;   /* UNKNOWN */
    }
}

int grpc_status_find(const struct h1_header *h, size_t n)
{
    const struct h1_str *v = find(h, n, "grpc-status");
    if (!v || v->n == 0 || v->n > 2)
        return -1;
    int x = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (v->p[i] < '0' || v->p[i] > '9')
            return -1;
        x = x * 10 + (v->p[i] - '0');
    }
    return x;
}

void grpc_percent_encode(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c <= 0x7e && c != '%') {
            out[o++] = (char)c;
        } else {
            snprintf(out + o, 4, "%%%02X", c);
            o += 3;
        }
    }
    out[o] = '\0';
}
