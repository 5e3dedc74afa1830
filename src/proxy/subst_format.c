#include "proxy/subst_format.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "net/transport.h"

enum tok_kind {
    T_TEXT, T_START_TIME, T_REQ, T_RESP, T_PROTOCOL, T_RESPONSE_CODE, T_RESPONSE_FLAGS,
    T_BYTES_RECEIVED, T_BYTES_SENT, T_DURATION, T_RESPONSE_DURATION, T_UPSTREAM_HOST,
    T_UPSTREAM_CLUSTER, T_DOWNSTREAM_REMOTE_ADDRESS, T_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT,
    T_DOWNSTREAM_LOCAL_ADDRESS, T_DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT, T_ROUTE_NAME,
    T_RESPONSE_CODE_DETAILS, T_HOSTNAME, T_REQUEST_DURATION, T_UPSTREAM_SERVICE_TIME,
    T_DOWNSTREAM_TRANSPORT_FAILURE_REASON, T_UPSTREAM_TRANSPORT_FAILURE_REASON, T_REQUESTED_SERVER_NAME,
    T_DOWNSTREAM_PEER_URI_SAN, T_DOWNSTREAM_TLS_VERSION, T_GRPC_STATUS, T_GRPC_STATUS_NUMBER,
    T_DOWNSTREAM_LOCAL_PORT, T_UPSTREAM_REMOTE_ADDRESS,
};

struct token {
    enum tok_kind kind;
    char *text;           /* T_TEXT: literal; T_REQ/T_RESP: header name (lower case) */
    size_t len;
    char *alt;            /* T_REQ: the name after '?' */
    size_t alt_len;
    size_t max_len;       /* ":N" truncation, 0 = none */
};

struct subst_format {
    struct token *toks;
    size_t n;
};

static const struct { const char *name; enum tok_kind kind; } commands[] = {
    {"START_TIME", T_START_TIME}, {"PROTOCOL", T_PROTOCOL}, {"RESPONSE_CODE", T_RESPONSE_CODE},
    {"RESPONSE_FLAGS", T_RESPONSE_FLAGS}, {"BYTES_RECEIVED", T_BYTES_RECEIVED},
    {"BYTES_SENT", T_BYTES_SENT}, {"DURATION", T_DURATION}, {"RESPONSE_DURATION", T_RESPONSE_DURATION},
    {"REQUEST_DURATION", T_REQUEST_DURATION}, {"UPSTREAM_HOST", T_UPSTREAM_HOST},
    {"UPSTREAM_CLUSTER", T_UPSTREAM_CLUSTER}, {"DOWNSTREAM_REMOTE_ADDRESS", T_DOWNSTREAM_REMOTE_ADDRESS},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", T_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT},
    {"DOWNSTREAM_LOCAL_ADDRESS", T_DOWNSTREAM_LOCAL_ADDRESS},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", T_DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT},
    {"ROUTE_NAME", T_ROUTE_NAME}, {"RESPONSE_CODE_DETAILS", T_RESPONSE_CODE_DETAILS},
    {"HOSTNAME", T_HOSTNAME}, {"UPSTREAM_SERVICE_TIME", T_UPSTREAM_SERVICE_TIME},
    {"DOWNSTREAM_TRANSPORT_FAILURE_REASON", T_DOWNSTREAM_TRANSPORT_FAILURE_REASON},
    {"UPSTREAM_TRANSPORT_FAILURE_REASON", T_UPSTREAM_TRANSPORT_FAILURE_REASON},
    {"REQUESTED_SERVER_NAME", T_REQUESTED_SERVER_NAME}, {"DOWNSTREAM_PEER_URI_SAN", T_DOWNSTREAM_PEER_URI_SAN},
    {"DOWNSTREAM_TLS_VERSION", T_DOWNSTREAM_TLS_VERSION},
    {"GRPC_STATUS", T_GRPC_STATUS}, {"GRPC_STATUS_NUMBER", T_GRPC_STATUS_NUMBER},
    {"DOWNSTREAM_LOCAL_PORT", T_DOWNSTREAM_LOCAL_PORT}, {"UPSTREAM_REMOTE_ADDRESS", T_UPSTREAM_REMOTE_ADDRESS},
};

/* gRPC status names as Envoy prints them: CAMEL_STRING (the default) and SNAKE_STRING. */
static const char *const grpc_camel[17] = {
    "Ok", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
    "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
    "Internal", "Unavailable", "DataLoss", "Unauthenticated"};
static const char *const grpc_snake[17] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};

static char *lower_dup(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++)
        s[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
    s[n] = '\0';
    return s;
}

static int add_token(struct subst_format *log, struct token t)
{
    struct token *nt = realloc(log->toks, (log->n + 1) * sizeof *nt);
    if (!nt)
        return -1;
    log->toks = nt;
    log->toks[log->n++] = t;
    return 0;
}

/* Parses "%CMD%", "%CMD(ARG)%", "%CMD(ARG):N%" starting after the opening '%'. Returns the
 * bytes consumed including the closing '%', or -1 with err set. */
static int parse_command(struct subst_format *log, const char *s, char *err, size_t errlen)
{
    /* The command ends at the first '%' after its argument: START_TIME's argument holds '%'s. */
    const char *end = strchr(s, '%');
    const char *paren = end ? memchr(s, '(', (size_t)(end - s)) : strchr(s, '(');
    if (paren) {
        const char *close = strchr(paren, ')');
        end = close ? strchr(close, '%') : NULL;
    }
    if (!end) {
        snprintf(err, errlen, "unterminated command near '%%%.20s'", s);
        return -1;
    }
    size_t len = (size_t)(end - s);
    size_t name_len = paren ? (size_t)(paren - s) : len;
    struct token t = {0};
    const char *arg = NULL, *arg_end = NULL;
    if (paren) {
        arg = paren + 1;
        arg_end = memchr(arg, ')', (size_t)(end - arg));
        if (!arg_end) {
            snprintf(err, errlen, "missing ')' in %%%.*s%%", (int)len, s);
            return -1;
        }
        const char *after = arg_end + 1;
        if (after < end) {
            if (*after != ':') {
                snprintf(err, errlen, "unexpected text after ')' in %%%.*s%%", (int)len, s);
                return -1;
            }
            char *num_end;
            unsigned long v = strtoul(after + 1, &num_end, 10);
            if (num_end != end || v == 0) {
                snprintf(err, errlen, "bad length in %%%.*s%%", (int)len, s);
                return -1;
            }
            t.max_len = v;
        }
    }
    if (name_len == 3 && memcmp(s, "REQ", 3) == 0 && arg) {
        t.kind = T_REQ;
    } else if (name_len == 4 && memcmp(s, "RESP", 4) == 0 && arg) {
        t.kind = T_RESP;
    } else {
        bool found = false;
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
            if (strlen(commands[i].name) == name_len && memcmp(commands[i].name, s, name_len) == 0) {
                t.kind = commands[i].kind;
                found = true;
                break;
            }
        }
        if (!found || (arg && t.kind != T_START_TIME && t.kind != T_GRPC_STATUS)) {
            snprintf(err, errlen, "unknown command %%%.*s%%", (int)len, s);
            return -1;
        }
        if (arg && t.kind == T_GRPC_STATUS) { /* GRPC_STATUS(CAMEL_STRING|SNAKE_STRING|NUMBER) */
            size_t al = (size_t)(arg_end - arg);
            if (al == 6 && memcmp(arg, "NUMBER", 6) == 0)
                t.kind = T_GRPC_STATUS_NUMBER;
            else if (al == 12 && memcmp(arg, "SNAKE_STRING", 12) == 0)
                t.alt_len = 1;
            else if (!(al == 12 && memcmp(arg, "CAMEL_STRING", 12) == 0)) {
                snprintf(err, errlen, "GRPC_STATUS takes CAMEL_STRING, SNAKE_STRING or NUMBER");
                return -1;
            }
        } else if (t.kind == T_HOSTNAME) { /* once here, not a system call per rendering */
            char h[256];
            if (gethostname(h, sizeof h) == 0) {
                h[sizeof h - 1] = '\0';
                t.text = strdup(h);
                t.len = strlen(h);
            }
        } else if (arg) { /* START_TIME(format): a strftime format */
            t.len = (size_t)(arg_end - arg);
            t.text = strndup(arg, t.len);
        }
    }
    if (t.kind == T_REQ || t.kind == T_RESP) {
        const char *q = memchr(arg, '?', (size_t)(arg_end - arg));
        const char *name_end = q ? q : arg_end;
        t.text = lower_dup(arg, (size_t)(name_end - arg));
        t.len = (size_t)(name_end - arg);
        if (q) {
            t.alt = lower_dup(q + 1, (size_t)(arg_end - q - 1));
            t.alt_len = (size_t)(arg_end - q - 1);
        }
    }
    if (add_token(log, t) < 0) {
        free(t.text);
        free(t.alt);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return (int)len + 1;
}

struct subst_format *subst_format_new(const char *format, char *err, size_t errlen)
{
    struct subst_format *log = calloc(1, sizeof *log);
    if (!log) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    const char *s = format;
    while (*s) {
        const char *pct = strchr(s, '%');
        size_t lit = pct ? (size_t)(pct - s) : strlen(s);
        if (lit) {
            struct token t = {.kind = T_TEXT, .text = strndup(s, lit), .len = lit};
            if (!t.text || add_token(log, t) < 0) {
                free(t.text);
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            s += lit;
        }
        if (!pct)
            break;
        if (pct[1] == '%') { /* "%%" is a literal percent */
            struct token t = {.kind = T_TEXT, .text = strdup("%"), .len = 1};
            if (!t.text || add_token(log, t) < 0) {
                free(t.text);
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            s = pct + 2;
            continue;
        }
        int used = parse_command(log, pct + 1, err, errlen);
        if (used < 0)
            goto fail;
        s = pct + 1 + used;
    }
    return log;
fail:
    subst_format_free(log);
    return NULL;
}

void subst_format_free(struct subst_format *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++) {
        free(f->toks[i].text);
        free(f->toks[i].alt);
    }
    free(f->toks);
    free(f);
}

bool subst_format_ends_in_newline(const struct subst_format *f)
{
    const struct token *t = f->n ? &f->toks[f->n - 1] : NULL;
    return t && t->kind == T_TEXT && t->text[t->len - 1] == '\n';
}

struct out {
    char *p;
    size_t n, cap;
    bool dash;   /* a missing value prints "-" (access logs) or nothing (header values) */
};

static void put(struct out *o, const char *s, size_t n)
{
    if (n > o->cap - o->n)
        n = o->cap - o->n;
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void put_dash(struct out *o)
{
    if (o->dash)
        put(o, "-", 1);
}

static void put_u64(struct out *o, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    put(o, tmp, (size_t)n);
}

static void put_addr(struct out *o, const struct sockaddr *sa, bool with_port)
{
    if (!sa) {
        put_dash(o);
        return;
    }
    char ip[INET6_ADDRSTRLEN + 8];
    uint16_t port;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        ip[0] = '[';
        inet_ntop(AF_INET6, &in6->sin6_addr, ip + 1, sizeof ip - 2);
        strcat(ip, "]");
        port = ntohs(in6->sin6_port);
    } else {
        put_dash(o);
        return;
    }
    if (!with_port && sa->sa_family == AF_INET6) { /* Envoy prints v6 without brackets then */
        put(o, ip + 1, strlen(ip) - 2);
        return;
    }
    put(o, ip, strlen(ip));
    if (with_port) {
        put(o, ":", 1);
        put_u64(o, port);
    }
}

static void put_port(struct out *o, const struct sockaddr *sa)
{
    if (sa && sa->sa_family == AF_INET)
        put_u64(o, ntohs(((const struct sockaddr_in *)sa)->sin_port));
    else if (sa && sa->sa_family == AF_INET6)
        put_u64(o, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    else
        put_dash(o);
}

/* Finds a header's value; several headers of one name are joined with "," as Envoy does. */
static bool find_header(const struct h1_header *h, size_t n, const char *name, size_t name_len,
                        struct out *o, size_t max_len)
{
    bool found = false;
    size_t start = o->n;
    for (size_t i = 0; i < n; i++) {
        if (h[i].name.n != name_len || strncasecmp(h[i].name.p, name, name_len) != 0)
            continue;
        if (found)
            put(o, ",", 1);
        put(o, h[i].value.p, h[i].value.n);
        found = true;
    }
    if (found && max_len && o->n - start > max_len)
        o->n = start + max_len;
    return found;
}

/* Request pseudo-headers and the headers the proxy itself sets on the forwarded request. */
static bool req_value(const struct stream_info *si, const char *name, size_t len, struct out *o, size_t max)
{
    const struct h1_request *rq = si->rq;
    struct h1_str v = {0};
    if (len == 7 && memcmp(name, ":method", 7) == 0 && rq)
        v = rq->method;
    else if (len == 5 && memcmp(name, ":path", 5) == 0 && rq)
        v = rq->path;
    else if (len == 10 && memcmp(name, ":authority", 10) == 0 && rq)
        v = rq->host;
    else if (len == 12 && memcmp(name, "x-request-id", 12) == 0 && si->request_id)
        v = (struct h1_str){si->request_id, strlen(si->request_id)};
    else if (len == 15 && memcmp(name, "x-forwarded-for", 15) == 0 && si->forwarded_for)
        v = (struct h1_str){si->forwarded_for, strlen(si->forwarded_for)};
    else if (rq)
        return find_header(rq->headers, rq->nheaders, name, len, o, max);
    if (!v.p || v.n == 0)
        return false;
    put(o, v.p, max && v.n > max ? max : v.n);
    return true;
}

/* START_TIME(format): strftime, plus Envoy's fractional seconds %f / %1f..%9f (digits after the
 * second; %f is 9) and %s (seconds since the epoch, also strftime's on glibc). */
static void put_start_time(struct out *o, const struct stream_info *si, const char *fmt)
{
    time_t secs = (time_t)(si->start_wall_us / 1000000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[256], spec[256];
    size_t n;
    if (!fmt) {
        n = strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(tmp + n, sizeof tmp - n, ".%03uZ", (unsigned)(si->start_wall_us / 1000u % 1000u));
        put(o, tmp, n);
        return;
    }
    /* Expand the fractional-second specifiers first; strftime does the rest. */
    size_t k = 0;
    for (const char *f = fmt; *f && k + 12 < sizeof spec; f++) {
        int digits = 0;
        if (f[0] == '%' && f[1] == 'f')
            digits = 9;
        else if (f[0] == '%' && f[1] >= '1' && f[1] <= '9' && f[2] == 'f')
            digits = f[1] - '0';
        if (f[0] == '%' && f[1] == '%') {
            spec[k++] = *f++;
            spec[k++] = *f;
        } else if (digits) {
            char frac[16];
            snprintf(frac, sizeof frac, "%09u", (unsigned)(si->start_wall_us % 1000000u) * 1000u);
            memcpy(spec + k, frac, (size_t)digits);
            k += (size_t)digits;
            f += digits == 9 && f[1] == 'f' ? 1 : 2;
        } else {
            spec[k++] = *f;
        }
    }
    spec[k] = '\0';
    n = strftime(tmp, sizeof tmp, spec, &tm);
    put(o, tmp, n);
}

static void put_ms(struct out *o, uint64_t from, uint64_t to)
{
    if (!from || !to || to < from)
        put_dash(o);
    else
        put_u64(o, (to - from) / 1000u);
}

static void put_opt(struct out *o, const char *s)
{
    if (s && *s)
        put(o, s, strlen(s));
    else
        put_dash(o);
}

size_t subst_format_render(const struct subst_format *log, const struct stream_info *si, bool dash, char *buf,
                           size_t cap)
{
    struct out o = {buf, 0, cap ? cap - 1 : 0, dash};
    for (size_t i = 0; i < log->n; i++) {
        const struct token *t = &log->toks[i];
        switch (t->kind) {
        case T_TEXT: put(&o, t->text, t->len); break;
        case T_START_TIME: put_start_time(&o, si, t->text); break;
        case T_REQ:
            if (!req_value(si, t->text, t->len, &o, t->max_len) &&
                !(t->alt && req_value(si, t->alt, t->alt_len, &o, t->max_len)))
                put_dash(&o);
            break;
        case T_RESP:
            if (strcmp(t->text, "x-envoy-upstream-service-time") == 0)
                put_ms(&o, si->upstream_start_us, si->upstream_headers_us);
            else if (!si->rs || !find_header(si->rs->headers, si->rs->nheaders, t->text, t->len, &o, t->max_len))
                put_dash(&o);
            break;
        case T_UPSTREAM_SERVICE_TIME: put_ms(&o, si->upstream_start_us, si->upstream_headers_us); break;
        case T_PROTOCOL:
            if (si->protocol) put(&o, si->protocol, strlen(si->protocol)); else put_dash(&o);
            break;
        case T_RESPONSE_CODE: put_u64(&o, (uint64_t)si->status); break;
        case T_RESPONSE_CODE_DETAILS:
            if (si->local_reply_details) put(&o, si->local_reply_details, strlen(si->local_reply_details));
            else if (si->rs) put(&o, "via_upstream", 12);
            else put_dash(&o);
            break;
        case T_RESPONSE_FLAGS: {
            char f[128];
            int n = response_flags_format(si->flags, f, sizeof f);
            put(&o, f, (size_t)n);
            break;
        }
        case T_BYTES_RECEIVED: put_u64(&o, si->bytes_received); break;
        case T_BYTES_SENT: put_u64(&o, si->bytes_sent); break;
        case T_DURATION: put_ms(&o, si->start_us, si->end_us ? si->end_us : si->start_us); break;
        case T_REQUEST_DURATION: put_ms(&o, si->start_us, si->request_end_us); break;
        case T_RESPONSE_DURATION: put_ms(&o, si->start_us, si->upstream_headers_us); break;
        case T_UPSTREAM_HOST:
            if (si->upstream_host) put(&o, si->upstream_host, strlen(si->upstream_host)); else put_dash(&o);
            break;
        case T_UPSTREAM_CLUSTER:
            if (si->upstream_cluster) put(&o, si->upstream_cluster, strlen(si->upstream_cluster)); else put_dash(&o);
            break;
        case T_ROUTE_NAME:
            if (si->route_name && *si->route_name) put(&o, si->route_name, strlen(si->route_name)); else put_dash(&o);
            break;
        case T_DOWNSTREAM_REMOTE_ADDRESS: put_addr(&o, si->downstream_remote, true); break;
        case T_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT: put_addr(&o, si->downstream_remote, false); break;
        case T_DOWNSTREAM_LOCAL_ADDRESS: put_addr(&o, si->downstream_local, true); break;
        case T_DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT: put_addr(&o, si->downstream_local, false); break;
        case T_DOWNSTREAM_LOCAL_PORT: put_port(&o, si->downstream_local); break;
        case T_UPSTREAM_REMOTE_ADDRESS: /* the host's address: the same text as %UPSTREAM_HOST% */
            if (si->upstream_host) put(&o, si->upstream_host, strlen(si->upstream_host)); else put_dash(&o);
            break;
        case T_DOWNSTREAM_TRANSPORT_FAILURE_REASON: put_opt(&o, si->downstream_transport_failure_reason); break;
        case T_UPSTREAM_TRANSPORT_FAILURE_REASON: put_opt(&o, si->upstream_transport_failure_reason); break;
        case T_REQUESTED_SERVER_NAME: put_opt(&o, si->downstream_tp ? si->downstream_tp->server_name : NULL); break;
        case T_DOWNSTREAM_PEER_URI_SAN: put_opt(&o, si->downstream_tp ? si->downstream_tp->peer_uri_san : NULL); break;
        case T_DOWNSTREAM_TLS_VERSION: put_opt(&o, si->downstream_tp ? transport_tls_version(si->downstream_tp) : NULL); break;
        case T_GRPC_STATUS:
            if (si->grpc_status >= 0 && si->grpc_status <= 16) {
                const char *nm = (t->alt_len ? grpc_snake : grpc_camel)[si->grpc_status];
                put(&o, nm, strlen(nm));
            } else if (si->grpc_status > 16) {
                put_u64(&o, (uint64_t)si->grpc_status);
            } else {
                put_dash(&o);
            }
            break;
        case T_GRPC_STATUS_NUMBER:
            if (si->grpc_status >= 0) put_u64(&o, (uint64_t)si->grpc_status); else put_dash(&o);
            break;
        case T_HOSTNAME:
            if (t->text) put(&o, t->text, t->len); else put_dash(&o);
            break;
        }
    }
    buf[o.n] = '\0';
    return o.n;
}
