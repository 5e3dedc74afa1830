/* weft-echo's command line. Every refusal is one line naming the flag and the value. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo/echo.h"

static int fail(char *err, const char *flag, const char *what, const char *val)
{
    snprintf(err, ECHO_ERR_MAX, "%s: %s%s%.64s%s", flag, what, val ? " (got \"" : "",
             val ? val : "", val ? "\")" : "");
    for (char *p = err; *p; p++)   /* one line, whatever argv held */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return -1;
}

/* Strict unsigned decimal in [lo, hi]: no sign, no spaces, no trailing junk. */
static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    if (!*s || strlen(s) > 10)
        return -1;
    unsigned long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int copy_name(char *dst, const char *src, const char *flag, char *err)
{
    size_t n = strlen(src);
    if (n == 0 || n >= ECHO_NAME_MAX)
        return fail(err, flag, "must be 1 to 127 bytes", NULL);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)src[i] < 0x20 || src[i] == 0x7f || src[i] == '"' || src[i] == '\\')
            return fail(err, flag, "has a control character, quote or backslash", NULL);
    memcpy(dst, src, n + 1);
    return 0;
}

int echo_parse_url(const char *url, struct echo_call_url *u, char *err)
{
    size_t n = strlen(url);
    if (n >= ECHO_URL_MAX)
        return fail(err, "--call", "URL too long", NULL);
    memset(u, 0, sizeof *u);
    memcpy(u->url, url, n + 1);
    if (strncmp(url, "http://", 7) != 0)
        return fail(err, "--call", "URL must start with http://", url);
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    const char *end = slash ? slash : url + n;
    const char *colon = NULL;
    if (*h == '[') {   /* [v6]:port */
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb || rb == h + 1)
            return fail(err, "--call", "bad bracketed host", url);
        if (rb + 1 < end && rb[1] != ':')
            return fail(err, "--call", "junk after ]", url);
        memcpy(u->host, h + 1, (size_t)(rb - h - 1));
        colon = rb + 1 < end ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        const char *he = colon ? colon : end;
        if (he == h || (size_t)(he - h) >= ECHO_NAME_MAX)
            return fail(err, "--call", "missing or too long host", url);
        memcpy(u->host, h, (size_t)(he - h));
    }
    for (const char *p = u->host; *p; p++)
        if (!(*p == '.' || *p == '-' || *p == '_' || *p == ':' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return fail(err, "--call", "bad character in host", url);
    u->port = 80;
    if (colon) {
        char pbuf[8];
        size_t pl = (size_t)(end - colon - 1);
        unsigned long v;
        if (pl == 0 || pl >= sizeof pbuf)
            return fail(err, "--call", "bad port", url);
        memcpy(pbuf, colon + 1, pl);
        pbuf[pl] = 0;
        if (parse_uint(pbuf, 1, 65535, &v) < 0)
            return fail(err, "--call", "bad port", url);
        u->port = (uint16_t)v;
    }
    const char *path = slash ? slash : "/";
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return fail(err, "--call", "bad character in path", url);
    snprintf(u->path, sizeof u->path, "%s", path);
    return 0;
}

int echo_parse_args(int argc, char **argv, struct echo_config *c, char *err)
{
    memset(c, 0, sizeof *c);
    strcpy(c->name, "echo");
    strcpy(c->version, "v1");
    strcpy(c->bind, "0.0.0.0");
    c->fail_status = 503;
    const char *host = getenv("HOSTNAME");
    if (host && copy_name(c->pod, host, "HOSTNAME", err) < 0)
        c->pod[0] = 0;
    err[0] = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            c->help = true;
            return 0;
        }
        if (!strcmp(f, "--call-optional")) {
            c->call_optional = true;
            continue;
        }
        static const char *const with_value[] = {"--port", "--grpc-port", "--name", "--version",
            "--pod", "--bind", "--call", "--fail-rate", "--fail-status", "--delay-ms",
            "--fail-file", NULL};
        int k = 0;
        while (with_value[k] && strcmp(with_value[k], f))
            k++;
        if (!with_value[k])
            return fail(err, f[0] ? f : "\"\"", "unknown flag (see --help)", NULL);
        if (i + 1 >= argc)
            return fail(err, f, "needs a value", NULL);
        const char *v = argv[++i];
        unsigned long u;
        switch (k) {
        case 0:
            if (c->nports == ECHO_MAX_PORTS)
                return fail(err, f, "given too many times (at most 8)", NULL);
            if (parse_uint(v, 1, 65535, &u) < 0)
                return fail(err, f, "must be a port 1..65535", v);
            for (int j = 0; j < c->nports; j++)
                if (c->ports[j] == u)
                    return fail(err, f, "given twice", v);
            c->ports[c->nports++] = (uint16_t)u;
            break;
        case 1:
            if (parse_uint(v, 1, 65535, &u) < 0)
                return fail(err, f, "must be a port 1..65535", v);
            c->grpc_port = (uint16_t)u;
            break;
        case 2: if (copy_name(c->name, v, f, err) < 0) return -1; break;
        case 3: if (copy_name(c->version, v, f, err) < 0) return -1; break;
        case 4: if (copy_name(c->pod, v, f, err) < 0) return -1; break;
        case 5: if (copy_name(c->bind, v, f, err) < 0) return -1; break;
        case 6:
            if (c->ncalls == ECHO_MAX_CALLS)
                return fail(err, f, "given too many times (at most 8)", NULL);
            if (echo_parse_url(v, &c->calls[c->ncalls], err) < 0)
                return -1;
            c->ncalls++;
            break;
        case 7: {
            char *end;
            errno = 0;
            double d = strtod(v, &end);
            if (!*v || *end || errno || !(d >= 0.0 && d <= 1.0))
                return fail(err, f, "must be a number 0..1", v);
            c->fail_rate = d;
            break;
        }
        case 8:
            if (parse_uint(v, 200, 599, &u) < 0)
                return fail(err, f, "must be an HTTP status 200..599", v);
            c->fail_status = (int)u;
            break;
        case 9:
            if (parse_uint(v, 0, 60000, &u) < 0)
                return fail(err, f, "must be 0..60000 milliseconds", v);
            c->delay_ms = (uint32_t)u;
            break;
        case 10:
            if (!*v || strlen(v) >= sizeof c->fail_file)
                return fail(err, f, "must be a path of 1..1023 bytes", v);
            strcpy(c->fail_file, v);
            break;
        }
    }
    if (c->nports == 0 && c->grpc_port == 0)
        return fail(err, "--port", "at least one --port or --grpc-port is needed", NULL);
    for (int j = 0; j < c->nports; j++)
        if (c->ports[j] == c->grpc_port)
            return fail(err, "--grpc-port", "same as a --port", NULL);
    return 0;
}
