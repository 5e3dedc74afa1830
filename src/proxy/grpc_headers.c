#include "proxy/grpc_headers.h"

static const struct h1_str *find(const struct h1_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (h1_str_eq_ci(h[i].name, name))
            return &h[i].value;
    return NULL;
}

bool grpc_hdr_is_request(const struct h1_header *h, size_t n)
{
    const struct h1_str *ct = find(h, n, "content-type");
    return ct && grpc_content_type_ok(ct->p, ct->n);
}

bool grpc_hdr_timeout_ms(const struct h1_header *h, size_t n, uint64_t *ms)
{
    const struct h1_str *v = find(h, n, "grpc-timeout");
    uint64_t ns;
    if (!v || grpc_timeout_parse(v->p, v->n, &ns) < 0)
        return false;
    *ms = ns / 1000000u + (ns % 1000000u != 0);
    return true;
}

int grpc_hdr_status(const struct h1_header *h, size_t n)
{
    const struct h1_str *v = find(h, n, "grpc-status");
    return v ? grpc_status_parse(v->p, v->n) : -1;
}
