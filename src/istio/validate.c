/* istio/validate: Istio's validation rules (after istio/istio pkg/config/validation) on
 * parsed specs. Each rule appends "FILE:LINE: spec.path: problem"; the line is found by
 * walking the document along the path, so the rules themselves only build paths. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "istio/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/duration.pb-c.h"
#include "istio/networking/v1alpha3/destination_rule.pb-c.h"
#include "istio/networking/v1alpha3/gateway.pb-c.h"
#include "istio/networking/v1alpha3/service_entry.pb-c.h"
#include "istio/networking/v1alpha3/sidecar.pb-c.h"
#include "istio/networking/v1alpha3/virtual_service.pb-c.h"
#include "istio/networking/v1alpha3/workload_entry.pb-c.h"
#include "istio/security/v1beta1/authorization_policy.pb-c.h"
#include "istio/security/v1beta1/peer_authentication.pb-c.h"
#include "istio/security/v1beta1/request_authentication.pb-c.h"
#include "weft/k8s/v1/core.pb-c.h"

typedef Istio__Networking__V1alpha3__StringMatch StringMatch;
typedef Istio__Networking__V1alpha3__Destination Destination;

struct vctx {
    const struct ytree *doc;
    const char *file;
    const char *ns;
    const char *suffix;
    struct istio_errors *errs;
    int count;
    size_t plen;
    char path[320];
};

/* ---- path and line ---- */

static size_t vpush(struct vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t vpush(struct vctx *v, const char *fmt, ...)
{
    size_t old = v->plen;
    if (old + 1 < sizeof v->path) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(v->path + old, sizeof v->path - old, fmt, ap);
        va_end(ap);
        v->plen = strlen(v->path);
    }
    return old;
}

static void vpop(struct vctx *v, size_t old)
{
    v->plen = old;
    v->path[old] = '\0';
}

/* key as written (camelCase or snake_case) equals the camelCase segment? */
static int key_eq(const char *key, const char *seg, size_t n)
{
    size_t i = 0;
    for (const char *k = key; *k; k++) {
        if (*k == '_') {
            if (!k[1] || i >= n || toupper((unsigned char)k[1]) != seg[i])
                return 0;
            k++;
            i++;
            continue;
        }
        if (i >= n || *k != seg[i])
            return 0;
        i++;
    }
    return i == n;
}

/* Line of the deepest node the current path reaches in the document. */
static int vline(const struct vctx *v)
{
    const struct ytree *t = v->doc;
    int line = t ? t->line : 0;
    const char *p = v->path;
    while (t && *p) {
        if (*p == '.') {
            p++;
            continue;
        }
        if (*p == '[') {
            const char *e = strchr(p, ']');
            if (!e)
                break;
            const struct ytree *next = NULL;
            if (t->kind == YT_SEQ) {
                size_t idx = strtoul(p + 1, NULL, 10);
                if (idx < t->n)
                    next = t->items[idx];
            } else if (t->kind == YT_MAP) {
                for (size_t i = 0; i + 1 < t->n; i += 2)
                    if (t->items[i]->len == (size_t)(e - p - 1) &&
                        !memcmp(t->items[i]->str, p + 1, (size_t)(e - p - 1))) {
                        next = t->items[i + 1];
                        line = t->items[i]->line;
                    }
            }
            if (next && t->kind == YT_SEQ)
                line = next->line;
            p = e + 1;
            t = next;
        } else {
            size_t n = strcspn(p, ".[");
            const struct ytree *next = NULL;
            if (t->kind == YT_MAP)
                for (size_t i = 0; i + 1 < t->n; i += 2)
                    if (key_eq(t->items[i]->str, p, n)) {
                        next = t->items[i + 1];
                        line = t->items[i]->line; /* a field: the line of its key */
                    }
            p += n;
            t = next;
        }
    }
    return line;
}

static void verr(struct vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void verr(struct vctx *v, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    v->count++;
    if (v->count > ISTIO_MAX_ERRORS_PER_OBJECT)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    istio_errors_add(v->errs, "%s:%d: %s: %s", v->file, vline(v), v->path, msg);
}

/* verr at a child path. */
#define VERR_AT(v, sub, ...) do { size_t o_ = vpush((v), "%s", (sub)); verr((v), __VA_ARGS__); \
    vpop((v), o_); } while (0)

/* ---- generic rules ---- */

static int is_dns1123_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i && i + 1 < n)))
            return 0;
    }
    return 1;
}

static int is_dns1123_subdomain(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    char buf[256];
    memcpy(buf, s, n + 1);
    for (char *tok = strtok(buf, "."); tok; tok = strtok(NULL, "."))
        if (!is_dns1123_label(tok))
            return 0;
    return s[0] != '.' && s[n - 1] != '.' && !strstr(s, "..");
}

static int is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static int is_cidr(const char *s)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    if (!slash)
        return is_ip(s);
    size_t n = (size_t)(slash - s);
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    long bits = strtol(slash + 1, &end, 10);
    if (*end || end == slash + 1)
        return 0;
    unsigned char b[16];
    if (inet_pton(AF_INET, buf, b) == 1)
        return bits >= 0 && bits <= 32;
    if (inet_pton(AF_INET6, buf, b) == 1)
        return bits >= 0 && bits <= 128;
    return 0;
}

/* Istio's ValidateWildcardDomain: "*", "*.x.y" or a DNS name (labels may have upper case
 * and start with digits; at most 255 bytes, labels at most 63). */
static const char *wildcard_domain_problem(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return "empty domain name not allowed";
    if (n > 255)
        return "domain name too long (max 255)";
    if (!strcmp(s, "*"))
        return NULL;
    if (s[0] == '*') {
        if (s[1] != '.')
            return "wildcard must be the whole first label (\"*.\")";
        s += 2;
    }
    if (!*s)
        return "domain name incomplete after wildcard";
    size_t len = strlen(s);
    if (s[len - 1] == '.')
        len--; /* a trailing dot is a FQDN */
    size_t lab = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? s[i] : '.';
        if (c == '.') {
            if (lab == 0)
                return "empty label in domain name";
            if (s[i - 1] == '-')
                return "label ends with '-'";
            lab = 0;
            continue;
        }
        if (c == '*')
            return "wildcard is only allowed as the first label";
        if (!(isalnum((unsigned char)c) || c == '-'))
            return "label has a character other than letters, digits and '-'";
        if (lab == 0 && c == '-')
            return "label starts with '-'";
        if (++lab > 63)
            return "label too long (max 63)";
    }
    return NULL;
}

static void check_host(struct vctx *v, const char *host, int allow_wildcard)
{
    const char *p = wildcard_domain_problem(host);
    if (p)
        verr(v, "invalid host \"%.200s\": %s", host, p);
    else if (!allow_wildcard && host[0] == '*')
        verr(v, "wildcard host \"%.200s\" is not allowed here", host);
}

static void check_port(struct vctx *v, uint64_t port)
{
    if (port < 1 || port > 65535)
        verr(v, "port number %llu must be in the range 1..65535", (unsigned long long)port);
}

/* Istio's ValidateDuration: at least 1ms, millisecond precision. */
static void check_duration(struct vctx *v, const Google__Protobuf__Duration *d)
{
    if (!d)
        return;
    if (d->seconds < 0 || d->nanos < 0 || (d->seconds == 0 && d->nanos < 1000000))
        verr(v, "duration must be greater than 1ms");
    else if (d->nanos % 1000000)
        verr(v, "only durations to ms precision are supported");
}

static int label_key_ok(const char *k)
{
    const char *slash = strchr(k, '/');
    const char *name = k;
    if (slash) {
        char pre[254];
        size_t n = (size_t)(slash - k);
        if (n == 0 || n > 253)
            return 0;
        memcpy(pre, k, n);
        pre[n] = '\0';
        if (!is_dns1123_subdomain(pre))
            return 0;
        name = slash + 1;
    }
    size_t n = strlen(name);
    if (n == 0 || n > 63 || !isalnum((unsigned char)name[0]) || !isalnum((unsigned char)name[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)name[i]) || name[i] == '-' || name[i] == '_' || name[i] == '.'))
            return 0;
    return 1;
}

static int label_value_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return 1;
    if (n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.'))
            return 0;
    return 1;
}

struct str_entry {
    ProtobufCMessage base;
    char *key;
    char *value;
};

/* A map<string,string> of labels at the current path + sub. */
static void check_labels(struct vctx *v, const char *sub, void *const *entries, size_t n)
{
    size_t o = vpush(v, "%s", sub);
    for (size_t i = 0; i < n; i++) {
        const struct str_entry *e = entries[i];
        size_t o2 = vpush(v, "[%.100s]", e->key);
        if (!label_key_ok(e->key))
            verr(v, "invalid label key \"%.100s\"", e->key);
        else if (!label_value_ok(e->value))
            verr(v, "invalid label value \"%.100s\"", e->value);
        vpop(v, o2);
    }
    vpop(v, o);
}

static void check_regex(struct vctx *v, const char *re)
{
    int ec;
    PCRE2_SIZE off;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec, &off, NULL);
    if (!code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        verr(v, "\"%.150s\" is not a valid regex: %s at offset %zu", re, (const char *)msg,
             (size_t)off);
        return;
    }
    pcre2_code_free(code);
}

static void check_string_match(struct vctx *v, const StringMatch *m)
{
    if (!m)
        return;
    switch (m->match_type_case) {
    case ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_REGEX:
        {
            size_t o = vpush(v, ".regex");
            check_regex(v, m->regex);
            vpop(v, o);
        }
        break;
    case ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_PREFIX:
    case ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_EXACT:
        break;
    default:
        verr(v, "one of exact, prefix or regex is required");
    }
}

static int header_name_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
    return 1;
}

static void check_header_ops(struct vctx *v, const char *sub,
                             const Istio__Networking__V1alpha3__Headers__HeaderOperations *h)
{
    if (!h)
        return;
    size_t o = vpush(v, "%s", sub);
    for (size_t i = 0; i < h->n_set; i++)
        if (!header_name_ok(h->set[i]->key)) {
            size_t o2 = vpush(v, ".set[%.100s]", h->set[i]->key);
            verr(v, "invalid header name \"%.100s\"", h->set[i]->key);
            vpop(v, o2);
        }
    for (size_t i = 0; i < h->n_add; i++)
        if (!header_name_ok(h->add[i]->key)) {
            size_t o2 = vpush(v, ".add[%.100s]", h->add[i]->key);
            verr(v, "invalid header name \"%.100s\"", h->add[i]->key);
            vpop(v, o2);
        }
    for (size_t i = 0; i < h->n_remove; i++)
        if (!header_name_ok(h->remove[i])) {
            size_t o2 = vpush(v, ".remove[%zu]", i);
            verr(v, "invalid header name \"%.100s\"", h->remove[i]);
            vpop(v, o2);
        }
    vpop(v, o);
}

static void check_headers(struct vctx *v, const Istio__Networking__V1alpha3__Headers *h)
{
    if (!h)
        return;
    size_t o = vpush(v, ".headers");
    check_header_ops(v, ".request", h->request);
    check_header_ops(v, ".response", h->response);
    vpop(v, o);
}

static void check_percent(struct vctx *v, const char *sub,
                          const Istio__Networking__V1alpha3__Percent *p)
{
    if (p && (p->value < 0 || p->value > 100 || p->value != p->value))
        VERR_AT(v, sub, "percentage %g is out of range [0, 100]", p->value);
}

static void check_destination(struct vctx *v, const Destination *d)
{
    size_t o = vpush(v, ".destination");
    if (!d) {
        verr(v, "destination is required");
        vpop(v, o);
        return;
    }
    if (!d->host || !*d->host)
        VERR_AT(v, ".host", "destination host is required");
    if (d->host && *d->host) {
        size_t o2 = vpush(v, ".host");
        check_host(v, d->host, 0);
        vpop(v, o2);
    }
    if (d->subset && *d->subset && !is_dns1123_label(d->subset))
        VERR_AT(v, ".subset", "subset name \"%.100s\" is not a valid DNS-1123 label", d->subset);
    if (d->port) {
        size_t o2 = vpush(v, ".port.number");
        check_port(v, d->port->number);
        vpop(v, o2);
    }
    vpop(v, o);
}

/* Weights: none negative; with more than one destination they add up to 100. */
static void check_weights(struct vctx *v, const int32_t *w, size_t n)
{
    long long total = 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i] < 0) {
            size_t o = vpush(v, "[%zu].weight", i);
            verr(v, "weight %d < 0", w[i]);
            vpop(v, o);
        }
        total += w[i];
    }
    if (n > 1 && total != 100)
        verr(v, "total destination weight %lld != 100", total);
}

/* ---- VirtualService ---- */

static int valid_retry_on(const char *p)
{
    static const char *const names[] = {
        "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
        "envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes",
        "retriable-headers", "http3-post-connect-failure", "cancelled", "deadline-exceeded",
        "internal", "resource-exhausted", "unavailable", NULL};
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], p))
            return 1;
    char *end;
    long code = strtol(p, &end, 10);
    return !*end && end != p && code >= 100 && code <= 599;
}

static void check_retry(struct vctx *v, const Istio__Networking__V1alpha3__HTTPRetry *r)
{
    if (!r)
        return;
    size_t o = vpush(v, ".retries");
    if (r->attempts < 0)
        VERR_AT(v, ".attempts", "attempts cannot be negative");
    if (r->per_try_timeout) {
        size_t o2 = vpush(v, ".perTryTimeout");
        check_duration(v, r->per_try_timeout);
        vpop(v, o2);
    }
    if (r->retry_on && *r->retry_on) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", r->retry_on);
        for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ')
                t++;
            char *e = t + strlen(t);
            while (e > t && e[-1] == ' ')
                *--e = '\0';
            if (!valid_retry_on(t))
                VERR_AT(v, ".retryOn", "%.100s is not a valid retryOn policy", t);
        }
    }
    vpop(v, o);
}

static void check_fault(struct vctx *v, const Istio__Networking__V1alpha3__HTTPFaultInjection *f)
{
    if (!f)
        return;
    size_t o = vpush(v, ".fault");
    if (!f->delay && !f->abort)
        verr(v, "fault injection must have at least one of delay or abort");
    if (f->delay) {
        size_t o2 = vpush(v, ".delay");
        if (f->delay->percent < 0 || f->delay->percent > 100)
            VERR_AT(v, ".percent", "percent %d is out of range [0, 100]", f->delay->percent);
        check_percent(v, ".percentage", f->delay->percentage);
        if (f->delay->http_delay_type_case ==
            ISTIO__NETWORKING__V1ALPHA3__HTTPFAULT_INJECTION__DELAY__HTTP_DELAY_TYPE_FIXED_DELAY) {
            size_t o3 = vpush(v, ".fixedDelay");
            check_duration(v, f->delay->fixed_delay);
            vpop(v, o3);
        } else if (f->delay->http_delay_type_case ==
                   ISTIO__NETWORKING__V1ALPHA3__HTTPFAULT_INJECTION__DELAY__HTTP_DELAY_TYPE_EXPONENTIAL_DELAY) {
            verr(v, "exponentialDelay is not supported");
        } else {
            verr(v, "fixedDelay is required");
        }
        vpop(v, o2);
    }
    if (f->abort) {
        size_t o2 = vpush(v, ".abort");
        check_percent(v, ".percentage", f->abort->percentage);
        switch (f->abort->error_type_case) {
        case ISTIO__NETWORKING__V1ALPHA3__HTTPFAULT_INJECTION__ABORT__ERROR_TYPE_HTTP_STATUS:
            if (f->abort->http_status < 200 || f->abort->http_status > 599)
                VERR_AT(v, ".httpStatus", "invalid abort http status %d", f->abort->http_status);
            break;
        case ISTIO__NETWORKING__V1ALPHA3__HTTPFAULT_INJECTION__ABORT__ERROR_TYPE_GRPC_STATUS:
            break;
        case ISTIO__NETWORKING__V1ALPHA3__HTTPFAULT_INJECTION__ABORT__ERROR_TYPE_HTTP2_ERROR:
            verr(v, "http2Error is not supported");
            break;
        default:
            verr(v, "httpStatus is required");
        }
        vpop(v, o2);
    }
    vpop(v, o);
}

static void check_http_match(struct vctx *v, const Istio__Networking__V1alpha3__HTTPMatchRequest *m,
                             int delegate)
{
    static const char *const names[] = {".uri", ".scheme", ".method", ".authority"};
    const StringMatch *sm[] = {m->uri, m->scheme, m->method, m->authority};
    for (int i = 0; i < 4; i++) {
        if (!sm[i])
            continue;
        size_t o = vpush(v, "%s", names[i]);
        check_string_match(v, sm[i]);
        if (delegate && sm[i]->match_type_case == ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_REGEX)
            verr(v, "regex match is not allowed in a delegate VirtualService");
        vpop(v, o);
    }
    struct { const char *name; size_t n; Istio__Networking__V1alpha3__HTTPMatchRequest__HeadersEntry **e; } maps[] = {
        {".headers", m->n_headers, m->headers},
        {".withoutHeaders", m->n_without_headers, (void *)m->without_headers},
        {".queryParams", m->n_query_params, (void *)m->query_params},
    };
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < maps[k].n; i++) {
            const char *key = maps[k].e[i]->key;
            size_t o = vpush(v, "%s[%.100s]", maps[k].name, key);
            if (k < 2 && strcmp(key, "") && !header_name_ok(key))
                verr(v, "invalid header name \"%.100s\"", key);
            else if (k < 2) {
                for (const char *c = key; *c; c++)
                    if (*c >= 'A' && *c <= 'Z') {
                        verr(v, "header match %.100s must be lowercase", key);
                        break;
                    }
            }
            /* An empty StringMatch in headers means "present": allowed. */
            if (maps[k].e[i]->value && maps[k].e[i]->value->match_type_case ==
                                           ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_REGEX) {
                size_t o2 = vpush(v, ".regex");
                check_regex(v, maps[k].e[i]->value->regex);
                vpop(v, o2);
            }
            vpop(v, o);
        }
    if (m->port) {
        size_t o = vpush(v, ".port");
        check_port(v, m->port);
        vpop(v, o);
    }
    check_labels(v, ".sourceLabels", (void *const *)m->source_labels, m->n_source_labels);
    if (m->source_namespace && *m->source_namespace && !is_dns1123_label(m->source_namespace))
        VERR_AT(v, ".sourceNamespace", "invalid namespace \"%.100s\"", m->source_namespace);
}

static void check_http_route(struct vctx *v, const Istio__Networking__V1alpha3__HTTPRoute *r,
                             int delegate)
{
    int actions = (r->n_route > 0) + (r->redirect != NULL) + (r->direct_response != NULL) +
                  (r->delegate != NULL);
    if (actions == 0)
        verr(v, "HTTP route, redirect, directResponse or delegate is required");
    else if (actions > 1)
        verr(v, "only one of route, redirect, directResponse or delegate may be set");
    if (r->rewrite && (r->redirect || r->direct_response))
        verr(v, "rewrite cannot be used with redirect or directResponse");
    if (r->delegate && delegate)
        VERR_AT(v, ".delegate", "a delegate VirtualService cannot delegate again");
    if (r->delegate && (!r->delegate->name || !*r->delegate->name))
        VERR_AT(v, ".delegate.name", "delegate name is required");
    for (size_t i = 0; i < r->n_match; i++) {
        size_t o = vpush(v, ".match[%zu]", i);
        check_http_match(v, r->match[i], delegate);
        vpop(v, o);
    }
    if (r->n_route) {
        int32_t w[r->n_route];
        size_t o = vpush(v, ".route");
        for (size_t i = 0; i < r->n_route; i++) {
            size_t o2 = vpush(v, "[%zu]", i);
            check_destination(v, r->route[i]->destination);
            check_headers(v, r->route[i]->headers);
            vpop(v, o2);
            w[i] = r->route[i]->weight;
        }
        check_weights(v, w, r->n_route);
        vpop(v, o);
    }
    if (r->redirect) {
        size_t o = vpush(v, ".redirect");
        unsigned c = r->redirect->redirect_code;
        if (c && (c < 300 || c > 399))
            VERR_AT(v, ".redirectCode", "%u is not a valid redirect code, must be 3xx", c);
        if ((!r->redirect->uri || !*r->redirect->uri) &&
            (!r->redirect->authority || !*r->redirect->authority) &&
            r->redirect->redirect_port_case == ISTIO__NETWORKING__V1ALPHA3__HTTPREDIRECT__REDIRECT_PORT__NOT_SET &&
            (!r->redirect->scheme || !*r->redirect->scheme))
            verr(v, "redirect must specify uri, authority, port or scheme");
        if (r->redirect->scheme && *r->redirect->scheme && strcmp(r->redirect->scheme, "http") &&
            strcmp(r->redirect->scheme, "https"))
            VERR_AT(v, ".scheme", "scheme must be http or https");
        if (r->redirect->redirect_port_case == ISTIO__NETWORKING__V1ALPHA3__HTTPREDIRECT__REDIRECT_PORT_PORT) {
            size_t o2 = vpush(v, ".port");
            check_port(v, r->redirect->port);
            vpop(v, o2);
        }
        vpop(v, o);
    }
    if (r->direct_response) {
        unsigned s = r->direct_response->status;
        if (s < 200 || s > 599)
            VERR_AT(v, ".directResponse.status", "%u is not a valid HTTP status", s);
    }
    if (r->rewrite) {
        size_t o = vpush(v, ".rewrite");
        if (r->rewrite->uri && *r->rewrite->uri && r->rewrite->uri_regex_rewrite)
            verr(v, "only one of uri and uriRegexRewrite may be set");
        if (r->rewrite->uri_regex_rewrite) {
            size_t o2 = vpush(v, ".uriRegexRewrite.match");
            if (!r->rewrite->uri_regex_rewrite->match || !*r->rewrite->uri_regex_rewrite->match)
                verr(v, "match is required");
            else
                check_regex(v, r->rewrite->uri_regex_rewrite->match);
            vpop(v, o2);
        }
        vpop(v, o);
    }
    if (r->timeout) {
        size_t o = vpush(v, ".timeout");
        check_duration(v, r->timeout);
        vpop(v, o);
    }
    check_retry(v, r->retries);
    check_fault(v, r->fault);
    if (r->mirror && r->n_mirrors)
        verr(v, "only one of mirror and mirrors may be set");
    if (r->mirror) {
        size_t o = vpush(v, ".mirror");
        Destination *d = r->mirror;
        if (!d->host || !*d->host)
            VERR_AT(v, ".host", "destination host is required");
        else {
            size_t o2 = vpush(v, ".host");
            check_host(v, d->host, 0);
            vpop(v, o2);
        }
        vpop(v, o);
    }
    for (size_t i = 0; i < r->n_mirrors; i++) {
        size_t o = vpush(v, ".mirrors[%zu]", i);
        check_destination(v, r->mirrors[i]->destination);
        check_percent(v, ".percentage", r->mirrors[i]->percentage);
        vpop(v, o);
    }
    if (r->mirror_percent && r->mirror_percent->value > 100)
        VERR_AT(v, ".mirrorPercent", "mirror percent %u must be in [0, 100]", r->mirror_percent->value);
    check_percent(v, ".mirrorPercentage", r->mirror_percentage);
    if (r->cors_policy) {
        size_t o = vpush(v, ".corsPolicy");
        for (size_t i = 0; i < r->cors_policy->n_allow_origins; i++) {
            size_t o2 = vpush(v, ".allowOrigins[%zu]", i);
            check_string_match(v, r->cors_policy->allow_origins[i]);
            vpop(v, o2);
        }
        for (size_t i = 0; i < r->cors_policy->n_allow_methods; i++) {
            static const char *const m[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT",
                                            "OPTIONS", "TRACE", "PATCH", "*", NULL};
            int ok = 0;
            for (int k = 0; m[k]; k++)
                ok |= !strcmp(m[k], r->cors_policy->allow_methods[i]);
            if (!ok) {
                size_t o2 = vpush(v, ".allowMethods[%zu]", i);
                verr(v, "%.60s is not a valid HTTP method", r->cors_policy->allow_methods[i]);
                vpop(v, o2);
            }
        }
        if (r->cors_policy->max_age) {
            size_t o2 = vpush(v, ".maxAge");
            if (r->cors_policy->max_age->nanos % 1000000000)
                verr(v, "max_age duration is accurate only to seconds precision");
            vpop(v, o2);
        }
        vpop(v, o);
    }
    check_headers(v, r->headers);
}

static void check_export_to(struct vctx *v, char *const *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i], ".") && strcmp(e[i], "*") && strcmp(e[i], "~") && !is_dns1123_label(e[i])) {
            size_t o = vpush(v, ".exportTo[%zu]", i);
            verr(v, "invalid namespace \"%.100s\"", e[i]);
            vpop(v, o);
        }
}

static void check_gateway_names(struct vctx *v, const char *sub, char *const *g, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *s = g[i];
        const char *slash = strchr(s, '/');
        int ok = !strcmp(s, "mesh");
        if (!ok && slash) {
            char ns[254];
            size_t l = (size_t)(slash - s);
            ok = l > 0 && l < sizeof ns;
            if (ok) {
                memcpy(ns, s, l);
                ns[l] = '\0';
                ok = is_dns1123_label(ns) && is_dns1123_subdomain(slash + 1);
            }
        } else if (!ok) {
            ok = is_dns1123_subdomain(s);
        }
        if (!ok) {
            size_t o = vpush(v, "%s[%zu]", sub, i);
            verr(v, "invalid gateway name \"%.100s\"", s);
            vpop(v, o);
        }
    }
}

static void validate_vs(struct vctx *v, const Istio__Networking__V1alpha3__VirtualService *vs)
{
    int delegate = vs->n_hosts == 0;
    if (delegate) {
        if (vs->n_gateways)
            VERR_AT(v, ".gateways", "a delegate VirtualService (no hosts) must not set gateways");
        if (vs->n_tcp || vs->n_tls)
            verr(v, "a delegate VirtualService (no hosts) must not have tcp or tls routes");
        if (!vs->n_http)
            VERR_AT(v, ".hosts", "virtual service must have at least one host");
    }
    int mesh = vs->n_gateways == 0;
    for (size_t i = 0; i < vs->n_gateways; i++)
        mesh |= !strcmp(vs->gateways[i], "mesh");
    for (size_t i = 0; i < vs->n_hosts; i++) {
        size_t o = vpush(v, ".hosts[%zu]", i);
        if (is_ip(vs->hosts[i])) {
            if (mesh)
                verr(v, "IP address \"%.100s\" is not allowed as a host of a VirtualService bound to the mesh", vs->hosts[i]);
        } else {
            check_host(v, vs->hosts[i], 1);
            if (!strcmp(vs->hosts[i], "*") && mesh)
                verr(v, "wildcard host * is not allowed for virtual services bound to the mesh gateway");
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(vs->hosts[i], vs->hosts[j]))
                verr(v, "duplicate host \"%.100s\"", vs->hosts[i]);
        vpop(v, o);
    }
    check_gateway_names(v, ".gateways", vs->gateways, vs->n_gateways);
    if (!vs->n_http && !vs->n_tcp && !vs->n_tls && vs->n_hosts)
        verr(v, "http, tcp or tls must be provided in virtual service");
    for (size_t i = 0; i < vs->n_http; i++) {
        size_t o = vpush(v, ".http[%zu]", i);
        check_http_route(v, vs->http[i], delegate);
        for (size_t k = 0; k < vs->http[i]->n_match; k++) {
            size_t o2 = vpush(v, ".match[%zu]", k);
            check_gateway_names(v, ".gateways", vs->http[i]->match[k]->gateways,
                                vs->http[i]->match[k]->n_gateways);
            vpop(v, o2);
        }
        vpop(v, o);
    }
    for (size_t i = 0; i < vs->n_tcp; i++) {
        const Istio__Networking__V1alpha3__TCPRoute *t = vs->tcp[i];
        size_t o = vpush(v, ".tcp[%zu]", i);
        for (size_t k = 0; k < t->n_match; k++) {
            size_t o2 = vpush(v, ".match[%zu]", k);
            for (size_t j = 0; j < t->match[k]->n_destination_subnets; j++)
                if (!is_cidr(t->match[k]->destination_subnets[j])) {
                    size_t o3 = vpush(v, ".destinationSubnets[%zu]", j);
                    verr(v, "\"%.100s\" is not a valid IP or CIDR", t->match[k]->destination_subnets[j]);
                    vpop(v, o3);
                }
            if (t->match[k]->port) {
                size_t o3 = vpush(v, ".port");
                check_port(v, t->match[k]->port);
                vpop(v, o3);
            }
            check_labels(v, ".sourceLabels", (void *const *)t->match[k]->source_labels,
                         t->match[k]->n_source_labels);
            vpop(v, o2);
        }
        if (!t->n_route)
            VERR_AT(v, ".route", "TCP route is required");
        int32_t w[t->n_route + 1];
        size_t o2 = vpush(v, ".route");
        for (size_t k = 0; k < t->n_route; k++) {
            size_t o3 = vpush(v, "[%zu]", k);
            check_destination(v, t->route[k]->destination);
            vpop(v, o3);
            w[k] = t->route[k]->weight;
        }
        check_weights(v, w, t->n_route);
        vpop(v, o2);
        vpop(v, o);
    }
    for (size_t i = 0; i < vs->n_tls; i++) {
        const Istio__Networking__V1alpha3__TLSRoute *t = vs->tls[i];
        size_t o = vpush(v, ".tls[%zu]", i);
        if (!t->n_match)
            VERR_AT(v, ".match", "TLS route must have at least one match condition");
        for (size_t k = 0; k < t->n_match; k++) {
            size_t o2 = vpush(v, ".match[%zu]", k);
            if (!t->match[k]->n_sni_hosts)
                VERR_AT(v, ".sniHosts", "TLS match must have at least one SNI host");
            for (size_t j = 0; j < t->match[k]->n_sni_hosts; j++) {
                size_t o3 = vpush(v, ".sniHosts[%zu]", j);
                check_host(v, t->match[k]->sni_hosts[j], 1);
                vpop(v, o3);
            }
            if (t->match[k]->port) {
                size_t o3 = vpush(v, ".port");
                check_port(v, t->match[k]->port);
                vpop(v, o3);
            }
            vpop(v, o2);
        }
        if (!t->n_route)
            VERR_AT(v, ".route", "TLS route is required");
        int32_t w[t->n_route + 1];
        size_t o2 = vpush(v, ".route");
        for (size_t k = 0; k < t->n_route; k++) {
            size_t o3 = vpush(v, "[%zu]", k);
            check_destination(v, t->route[k]->destination);
            vpop(v, o3);
            w[k] = t->route[k]->weight;
        }
        check_weights(v, w, t->n_route);
        vpop(v, o2);
        vpop(v, o);
    }
    check_export_to(v, vs->export_to, vs->n_export_to);
}

/* ---- DestinationRule ---- */

static void check_traffic_policy(struct vctx *v, const Istio__Networking__V1alpha3__TrafficPolicy *p,
                                 int subset);

static void check_lb(struct vctx *v, const Istio__Networking__V1alpha3__LoadBalancerSettings *lb)
{
    if (!lb)
        return;
    size_t o = vpush(v, ".loadBalancer");
    if (lb->lb_policy_case == ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__LB_POLICY_CONSISTENT_HASH) {
        const Istio__Networking__V1alpha3__LoadBalancerSettings__ConsistentHashLB *ch = lb->consistent_hash;
        size_t o2 = vpush(v, ".consistentHash");
        if (ch->hash_key_case == ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_KEY__NOT_SET)
            verr(v, "a hash key (httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName) is required");
        if (ch->hash_key_case == ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_KEY_HTTP_COOKIE &&
            (!ch->http_cookie->name || !*ch->http_cookie->name))
            VERR_AT(v, ".httpCookie.name", "name is required for a cookie hash key");
        if (ch->hash_key_case == ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_KEY_HTTP_HEADER_NAME &&
            !header_name_ok(ch->http_header_name))
            VERR_AT(v, ".httpHeaderName", "invalid header name \"%.100s\"", ch->http_header_name);
        if (ch->minimum_ring_size && ch->hash_algorithm_case != ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_ALGORITHM__NOT_SET)
            VERR_AT(v, ".minimumRingSize", "minimumRingSize cannot be set together with ringHash or maglev");
        if (ch->hash_algorithm_case == ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_ALGORITHM_MAGLEV &&
            ch->maglev->table_size) {
            uint64_t t = ch->maglev->table_size;
            int prime = t >= 2;
            for (uint64_t d = 2; prime && d * d <= t; d++)
                prime = t % d != 0;
            if (!prime)
                VERR_AT(v, ".maglev.tableSize", "table size %llu must be a prime number", (unsigned long long)t);
        }
        vpop(v, o2);
    }
    if (lb->warmup_duration_secs) {
        size_t o2 = vpush(v, ".warmupDurationSecs");
        check_duration(v, lb->warmup_duration_secs);
        vpop(v, o2);
    }
    vpop(v, o);
}

static void check_pool(struct vctx *v, const Istio__Networking__V1alpha3__ConnectionPoolSettings *cp)
{
    if (!cp)
        return;
    size_t o = vpush(v, ".connectionPool");
    if (!cp->tcp && !cp->http)
        verr(v, "connection pool must have at least one field");
    if (cp->http) {
        const Istio__Networking__V1alpha3__ConnectionPoolSettings__HTTPSettings *h = cp->http;
        size_t o2 = vpush(v, ".http");
        if (h->http1_max_pending_requests < 0)
            VERR_AT(v, ".http1MaxPendingRequests", "http1 max pending requests must be non-negative");
        if (h->http2_max_requests < 0)
            VERR_AT(v, ".http2MaxRequests", "http2 max requests must be non-negative");
        if (h->max_requests_per_connection < 0)
            VERR_AT(v, ".maxRequestsPerConnection", "max requests per connection must be non-negative");
        if (h->max_retries < 0)
            VERR_AT(v, ".maxRetries", "max retries must be non-negative");
        if (h->max_concurrent_streams < 0)
            VERR_AT(v, ".maxConcurrentStreams", "max concurrent streams must be non-negative");
        if (h->idle_timeout) {
            size_t o3 = vpush(v, ".idleTimeout");
            check_duration(v, h->idle_timeout);
            vpop(v, o3);
        }
        vpop(v, o2);
    }
    if (cp->tcp) {
        const Istio__Networking__V1alpha3__ConnectionPoolSettings__TCPSettings *t = cp->tcp;
        size_t o2 = vpush(v, ".tcp");
        if (t->max_connections < 0)
            VERR_AT(v, ".maxConnections", "max connections must be non-negative");
        struct { const char *n; Google__Protobuf__Duration *d; } ds[] = {
            {".connectTimeout", t->connect_timeout},
            {".maxConnectionDuration", t->max_connection_duration},
            {".idleTimeout", t->idle_timeout},
        };
        for (int i = 0; i < 3; i++)
            if (ds[i].d) {
                size_t o3 = vpush(v, "%s", ds[i].n);
                check_duration(v, ds[i].d);
                vpop(v, o3);
            }
        vpop(v, o2);
    }
    vpop(v, o);
}

static void check_outlier(struct vctx *v, const Istio__Networking__V1alpha3__OutlierDetection *od)
{
    if (!od)
        return;
    size_t o = vpush(v, ".outlierDetection");
    if (od->consecutive_errors < 0)
        VERR_AT(v, ".consecutiveErrors", "outlier detection consecutive errors cannot be negative");
    if (od->interval) {
        size_t o2 = vpush(v, ".interval");
        check_duration(v, od->interval);
        vpop(v, o2);
    }
    if (od->base_ejection_time) {
        size_t o2 = vpush(v, ".baseEjectionTime");
        check_duration(v, od->base_ejection_time);
        vpop(v, o2);
    }
    if (od->max_ejection_percent < 0 || od->max_ejection_percent > 100)
        VERR_AT(v, ".maxEjectionPercent", "max ejection percent must be in range [0, 100]");
    if (od->min_health_percent < 0 || od->min_health_percent > 100)
        VERR_AT(v, ".minHealthPercent", "min health percent must be in range [0, 100]");
    vpop(v, o);
}

static void check_client_tls(struct vctx *v, const Istio__Networking__V1alpha3__ClientTLSSettings *t)
{
    if (!t)
        return;
    size_t o = vpush(v, ".tls");
    int has_cred = t->credential_name && *t->credential_name;
    if (t->mode == ISTIO__NETWORKING__V1ALPHA3__CLIENT_TLSSETTINGS__TLSMODE__MUTUAL && !has_cred) {
        if (!t->client_certificate || !*t->client_certificate)
            VERR_AT(v, ".clientCertificate", "client certificate required for mutual tls");
        if (!t->private_key || !*t->private_key)
            VERR_AT(v, ".privateKey", "private key required for mutual tls");
    }
    if ((t->mode == ISTIO__NETWORKING__V1ALPHA3__CLIENT_TLSSETTINGS__TLSMODE__DISABLE ||
         t->mode == ISTIO__NETWORKING__V1ALPHA3__CLIENT_TLSSETTINGS__TLSMODE__ISTIO_MUTUAL) &&
        (has_cred || (t->client_certificate && *t->client_certificate) ||
         (t->private_key && *t->private_key) || (t->ca_certificates && *t->ca_certificates)))
        verr(v, "cannot specify client certificates or CA certificate with mode %s",
             t->mode == ISTIO__NETWORKING__V1ALPHA3__CLIENT_TLSSETTINGS__TLSMODE__DISABLE ? "DISABLE" : "ISTIO_MUTUAL");
    vpop(v, o);
}

static void check_traffic_policy(struct vctx *v, const Istio__Networking__V1alpha3__TrafficPolicy *p,
                                 int subset)
{
    if (!p)
        return;
    size_t o = vpush(v, ".trafficPolicy");
    if (!p->load_balancer && !p->connection_pool && !p->outlier_detection && !p->tls &&
        !p->n_port_level_settings)
        verr(v, "traffic policy must have at least one field");
    check_lb(v, p->load_balancer);
    check_pool(v, p->connection_pool);
    check_outlier(v, p->outlier_detection);
    check_client_tls(v, p->tls);
    for (size_t i = 0; i < p->n_port_level_settings; i++) {
        const Istio__Networking__V1alpha3__TrafficPolicy__PortTrafficPolicy *pl = p->port_level_settings[i];
        size_t o2 = vpush(v, ".portLevelSettings[%zu]", i);
        if (!pl->port)
            VERR_AT(v, ".port", "port must be specified");
        else {
            size_t o3 = vpush(v, ".port.number");
            check_port(v, pl->port->number);
            vpop(v, o3);
            for (size_t j = 0; j < i; j++)
                if (p->port_level_settings[j]->port &&
                    p->port_level_settings[j]->port->number == pl->port->number)
                    VERR_AT(v, ".port.number", "duplicate port %u in portLevelSettings", pl->port->number);
        }
        if (!pl->load_balancer && !pl->connection_pool && !pl->outlier_detection && !pl->tls)
            verr(v, "port traffic policy must have at least one field");
        check_lb(v, pl->load_balancer);
        check_pool(v, pl->connection_pool);
        check_outlier(v, pl->outlier_detection);
        check_client_tls(v, pl->tls);
        vpop(v, o2);
    }
    (void)subset;
    vpop(v, o);
}

static void validate_dr(struct vctx *v, const Istio__Networking__V1alpha3__DestinationRule *dr)
{
    if (!dr->host || !*dr->host)
        VERR_AT(v, ".host", "host is required");
    else {
        size_t o = vpush(v, ".host");
        check_host(v, dr->host, 1);
        vpop(v, o);
    }
    check_traffic_policy(v, dr->traffic_policy, 0);
    for (size_t i = 0; i < dr->n_subsets; i++) {
        const Istio__Networking__V1alpha3__Subset *s = dr->subsets[i];
        size_t o = vpush(v, ".subsets[%zu]", i);
        if (!s->name || !*s->name)
            VERR_AT(v, ".name", "subset name is required");
        else if (!is_dns1123_label(s->name))
            VERR_AT(v, ".name", "subset name \"%.100s\" is not a valid DNS-1123 label", s->name);
        else
            for (size_t j = 0; j < i; j++)
                if (dr->subsets[j]->name && !strcmp(dr->subsets[j]->name, s->name))
                    VERR_AT(v, ".name", "duplicate subset name \"%.100s\"", s->name);
        check_labels(v, ".labels", (void *const *)s->labels, s->n_labels);
        check_traffic_policy(v, s->traffic_policy, 1);
        vpop(v, o);
    }
    if (dr->workload_selector)
        check_labels(v, ".workloadSelector.matchLabels", (void *const *)dr->workload_selector->match_labels,
                     dr->workload_selector->n_match_labels);
    check_export_to(v, dr->export_to, dr->n_export_to);
}

/* ---- Gateway ---- */

static const char *const protocols[] = {"HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO",
                                        "TCP", "TLS", "REDIS", "MYSQL", "UDP", NULL};

static int protocol_ok(const char *p)
{
    for (int i = 0; protocols[i]; i++)
        if (!strcasecmp(protocols[i], p))
            return 1;
    return 0;
}

static void check_ns_host(struct vctx *v, const char *h, int sidecar)
{
    const char *slash = strchr(h, '/');
    const char *dns = h;
    if (slash) {
        char ns[254];
        size_t l = (size_t)(slash - h);
        if (l == 0 || l >= sizeof ns) {
            verr(v, "invalid namespace in host \"%.100s\"", h);
            return;
        }
        memcpy(ns, h, l);
        ns[l] = '\0';
        if (strcmp(ns, "*") && strcmp(ns, ".") && !(sidecar && !strcmp(ns, "~")) && !is_dns1123_label(ns)) {
            verr(v, "invalid namespace \"%.100s\" in host \"%.100s\"", ns, h);
            return;
        }
        dns = slash + 1;
    } else if (sidecar) {
        verr(v, "host \"%.100s\" must be of the form namespace/dnsName", h);
        return;
    }
    check_host(v, dns, 1);
}

static void validate_gw(struct vctx *v, const Istio__Networking__V1alpha3__Gateway *g)
{
    if (!g->n_servers)
        VERR_AT(v, ".servers", "gateway must have at least one server");
    for (size_t i = 0; i < g->n_servers; i++) {
        const Istio__Networking__V1alpha3__Server *s = g->servers[i];
        size_t o = vpush(v, ".servers[%zu]", i);
        if (!s->n_hosts)
            VERR_AT(v, ".hosts", "server config must contain at least one host");
        for (size_t j = 0; j < s->n_hosts; j++) {
            size_t o2 = vpush(v, ".hosts[%zu]", j);
            check_ns_host(v, s->hosts[j], 0);
            vpop(v, o2);
        }
        if (!s->port) {
            VERR_AT(v, ".port", "port is required");
        } else {
            size_t o2 = vpush(v, ".port");
            size_t o3 = vpush(v, ".number");
            check_port(v, s->port->number);
            vpop(v, o3);
            if (!s->port->protocol || !*s->port->protocol)
                VERR_AT(v, ".protocol", "protocol is required");
            else if (!protocol_ok(s->port->protocol))
                VERR_AT(v, ".protocol", "unrecognized protocol \"%.60s\"", s->port->protocol);
            if (s->port->name && *s->port->name)
                for (size_t j = 0; j < i; j++)
                    if (g->servers[j]->port && g->servers[j]->port->name &&
                        !strcmp(g->servers[j]->port->name, s->port->name))
                        VERR_AT(v, ".name", "port names in servers must be unique: duplicate name %.60s", s->port->name);
            vpop(v, o2);
            int tls_proto = !strcasecmp(s->port->protocol ? s->port->protocol : "", "HTTPS") ||
                            !strcasecmp(s->port->protocol ? s->port->protocol : "", "TLS");
            if (tls_proto && !s->tls)
                verr(v, "server must have TLS settings for HTTPS/TLS protocols");
            if (s->tls && !tls_proto && !s->tls->https_redirect)
                VERR_AT(v, ".tls", "server cannot have TLS settings for plain text HTTP ports");
        }
        if (s->tls) {
            const Istio__Networking__V1alpha3__ServerTLSSettings *t = s->tls;
            size_t o2 = vpush(v, ".tls");
            int cred = t->credential_name && *t->credential_name;
            if ((t->mode == ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__SIMPLE ||
                 t->mode == ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__MUTUAL) && !cred) {
                if (!t->server_certificate || !*t->server_certificate)
                    VERR_AT(v, ".serverCertificate", "SIMPLE/MUTUAL TLS requires a server certificate or credentialName");
                if (!t->private_key || !*t->private_key)
                    VERR_AT(v, ".privateKey", "SIMPLE/MUTUAL TLS requires a private key or credentialName");
                if (t->mode == ISTIO__NETWORKING__V1ALPHA3__SERVER_TLSSETTINGS__TLSMODE__MUTUAL &&
                    (!t->ca_certificates || !*t->ca_certificates))
                    VERR_AT(v, ".caCertificates", "MUTUAL TLS requires client CA certificates");
            }
            vpop(v, o2);
        }
        vpop(v, o);
    }
    check_labels(v, ".selector", (void *const *)g->selector, g->n_selector);
}

/* ---- ServiceEntry / WorkloadEntry ---- */

static void check_workload_entry(struct vctx *v, const Istio__Networking__V1alpha3__WorkloadEntry *w,
                                 int need_address, int unix_ok)
{
    if (!w->address || !*w->address) {
        if (need_address)
            VERR_AT(v, ".address", "address is required");
    } else if (!strncmp(w->address, "unix://", 7)) {
        if (!unix_ok)
            VERR_AT(v, ".address", "unix socket address is not allowed here");
    } else if (!is_ip(w->address) && wildcard_domain_problem(w->address)) {
        VERR_AT(v, ".address", "address \"%.100s\" is neither an IP address nor a host name", w->address);
    }
    for (size_t i = 0; i < w->n_ports; i++) {
        size_t o = vpush(v, ".ports[%.60s]", w->ports[i]->key);
        check_port(v, w->ports[i]->value);
        vpop(v, o);
    }
    check_labels(v, ".labels", (void *const *)w->labels, w->n_labels);
    if (w->service_account && *w->service_account && !is_dns1123_subdomain(w->service_account))
        VERR_AT(v, ".serviceAccount", "invalid service account \"%.100s\"", w->service_account);
}

static void validate_se(struct vctx *v, const Istio__Networking__V1alpha3__ServiceEntry *se)
{
    if (!se->n_hosts)
        VERR_AT(v, ".hosts", "service entry must have at least one host");
    for (size_t i = 0; i < se->n_hosts; i++) {
        size_t o = vpush(v, ".hosts[%zu]", i);
        if (!strcmp(se->hosts[i], "*"))
            verr(v, "invalid host *");
        else
            check_host(v, se->hosts[i], 1);
        vpop(v, o);
    }
    for (size_t i = 0; i < se->n_addresses; i++)
        if (!is_cidr(se->addresses[i])) {
            size_t o = vpush(v, ".addresses[%zu]", i);
            verr(v, "invalid address \"%.100s\"", se->addresses[i]);
            vpop(v, o);
        }
    if (!se->n_ports && se->resolution != ISTIO__NETWORKING__V1ALPHA3__SERVICE_ENTRY__RESOLUTION__NONE)
        VERR_AT(v, ".ports", "service entry must have at least one port");
    for (size_t i = 0; i < se->n_ports; i++) {
        const Istio__Networking__V1alpha3__ServicePort *p = se->ports[i];
        size_t o = vpush(v, ".ports[%zu]", i);
        size_t o2 = vpush(v, ".number");
        check_port(v, p->number);
        vpop(v, o2);
        if (p->target_port) {
            o2 = vpush(v, ".targetPort");
            check_port(v, p->target_port);
            vpop(v, o2);
        }
        if (!p->name || !*p->name)
            VERR_AT(v, ".name", "port name is required");
        if (!p->protocol || !*p->protocol)
            VERR_AT(v, ".protocol", "protocol is required");
        else if (!protocol_ok(p->protocol))
            VERR_AT(v, ".protocol", "unrecognized protocol \"%.60s\"", p->protocol);
        for (size_t j = 0; j < i; j++) {
            if (se->ports[j]->number == p->number)
                VERR_AT(v, ".number", "port number %u is not unique", p->number);
            if (p->name && se->ports[j]->name && *p->name && !strcmp(se->ports[j]->name, p->name))
                VERR_AT(v, ".name", "port name %.60s is not unique", p->name);
        }
        vpop(v, o);
    }
    if (se->workload_selector && se->n_endpoints)
        verr(v, "only one of workloadSelector or endpoints is allowed in a service entry");
    if (se->workload_selector)
        check_labels(v, ".workloadSelector.labels", (void *const *)se->workload_selector->labels,
                     se->workload_selector->n_labels);
    switch (se->resolution) {
    case ISTIO__NETWORKING__V1ALPHA3__SERVICE_ENTRY__RESOLUTION__NONE:
        if (se->n_endpoints)
            VERR_AT(v, ".endpoints", "no endpoints should be provided for resolution type NONE");
        break;
    case ISTIO__NETWORKING__V1ALPHA3__SERVICE_ENTRY__RESOLUTION__STATIC:
        if (!se->n_endpoints && !se->workload_selector)
            VERR_AT(v, ".endpoints", "endpoints must be provided for resolution type STATIC");
        for (size_t i = 0; i < se->n_endpoints; i++)
            if (se->endpoints[i]->address && !is_ip(se->endpoints[i]->address) &&
                strncmp(se->endpoints[i]->address, "unix://", 7)) {
                size_t o = vpush(v, ".endpoints[%zu].address", i);
                verr(v, "endpoint address \"%.100s\" is not a valid IP address", se->endpoints[i]->address);
                vpop(v, o);
            }
        break;
    default: /* DNS, DNS_ROUND_ROBIN */
        if (!se->n_endpoints)
            for (size_t i = 0; i < se->n_hosts; i++)
                if (se->hosts[i][0] == '*') {
                    size_t o = vpush(v, ".hosts[%zu]", i);
                    verr(v, "hosts cannot be wildcards with resolution DNS and no endpoints");
                    vpop(v, o);
                }
        if (se->resolution == ISTIO__NETWORKING__V1ALPHA3__SERVICE_ENTRY__RESOLUTION__DNS_ROUND_ROBIN &&
            se->n_endpoints > 1)
            VERR_AT(v, ".endpoints", "there must only be 0 or 1 endpoint for resolution DNS_ROUND_ROBIN");
        break;
    }
    for (size_t i = 0; i < se->n_endpoints; i++) {
        const Istio__Networking__V1alpha3__WorkloadEntry *w = se->endpoints[i];
        size_t o = vpush(v, ".endpoints[%zu]", i);
        check_workload_entry(v, w, 1, 1);
        for (size_t k = 0; k < w->n_ports; k++) {
            int found = 0;
            for (size_t j = 0; j < se->n_ports; j++)
                found |= se->ports[j]->name && !strcmp(se->ports[j]->name, w->ports[k]->key);
            if (!found) {
                size_t o2 = vpush(v, ".ports[%.60s]", w->ports[k]->key);
                verr(v, "endpoint port %.60s is not defined by the service entry", w->ports[k]->key);
                vpop(v, o2);
            }
        }
        vpop(v, o);
    }
    check_export_to(v, se->export_to, se->n_export_to);
}

/* ---- Sidecar ---- */

static void check_sidecar_port(struct vctx *v, const Istio__Networking__V1alpha3__SidecarPort *p, int required)
{
    if (!p) {
        if (required)
            VERR_AT(v, ".port", "port is required");
        return;
    }
    size_t o = vpush(v, ".port");
    size_t o2 = vpush(v, ".number");
    check_port(v, p->number);
    vpop(v, o2);
    if (p->protocol && *p->protocol && !protocol_ok(p->protocol))
        VERR_AT(v, ".protocol", "unrecognized protocol \"%.60s\"", p->protocol);
    vpop(v, o);
}

static void validate_sidecar(struct vctx *v, const Istio__Networking__V1alpha3__Sidecar *s)
{
    if (s->workload_selector) {
        if (!s->workload_selector->n_labels)
            VERR_AT(v, ".workloadSelector.labels", "sidecar: workloadSelector must have at least one label");
        check_labels(v, ".workloadSelector.labels", (void *const *)s->workload_selector->labels,
                     s->workload_selector->n_labels);
    }
    for (size_t i = 0; i < s->n_ingress; i++) {
        size_t o = vpush(v, ".ingress[%zu]", i);
        check_sidecar_port(v, s->ingress[i]->port, 1);
        if (s->ingress[i]->bind && *s->ingress[i]->bind && !is_ip(s->ingress[i]->bind))
            VERR_AT(v, ".bind", "bind must be an IP address");
        vpop(v, o);
    }
    for (size_t i = 0; i < s->n_egress; i++) {
        const Istio__Networking__V1alpha3__IstioEgressListener *e = s->egress[i];
        size_t o = vpush(v, ".egress[%zu]", i);
        check_sidecar_port(v, e->port, 0);
        if (!e->n_hosts)
            VERR_AT(v, ".hosts", "egress listener must have at least one host");
        for (size_t j = 0; j < e->n_hosts; j++) {
            size_t o2 = vpush(v, ".hosts[%zu]", j);
            check_ns_host(v, e->hosts[j], 1);
            vpop(v, o2);
        }
        if (!e->port && i + 1 < s->n_egress)
            verr(v, "an egress listener without a port must be the last one");
        vpop(v, o);
    }
}

/* ---- security ---- */

static void check_selector(struct vctx *v, const Istio__Type__V1beta1__WorkloadSelector *s)
{
    if (s)
        check_labels(v, ".selector.matchLabels", (void *const *)s->match_labels, s->n_match_labels);
}

static void validate_pa(struct vctx *v, const Istio__Security__V1beta1__PeerAuthentication *pa)
{
    check_selector(v, pa->selector);
    if (pa->n_port_level_mtls && (!pa->selector || !pa->selector->n_match_labels))
        VERR_AT(v, ".portLevelMtls", "portLevelMtls requires a workload selector");
    for (size_t i = 0; i < pa->n_port_level_mtls; i++) {
        size_t o = vpush(v, ".portLevelMtls[%u]", pa->port_level_mtls[i]->key);
        check_port(v, pa->port_level_mtls[i]->key);
        vpop(v, o);
    }
}

static void check_strings_nonempty(struct vctx *v, const char *sub, char *const *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!*s[i]) {
            size_t o = vpush(v, "%s[%zu]", sub, i);
            verr(v, "empty value is not allowed");
            vpop(v, o);
        }
}

static void validate_ap(struct vctx *v, const Istio__Security__V1beta1__AuthorizationPolicy *ap)
{
    check_selector(v, ap->selector);
    if (ap->selector && (ap->target_ref || ap->n_target_refs))
        verr(v, "only one of targetRef(s) or selector may be set");
    int custom = ap->action == ISTIO__SECURITY__V1BETA1__AUTHORIZATION_POLICY__ACTION__CUSTOM;
    if (custom && ap->action_detail_case != ISTIO__SECURITY__V1BETA1__AUTHORIZATION_POLICY__ACTION_DETAIL_PROVIDER)
        VERR_AT(v, ".provider", "a provider must be set for the CUSTOM action");
    if (!custom && ap->action_detail_case == ISTIO__SECURITY__V1BETA1__AUTHORIZATION_POLICY__ACTION_DETAIL_PROVIDER)
        VERR_AT(v, ".provider", "provider may only be set for the CUSTOM action");
    if (custom && ap->provider && (!ap->provider->name || !*ap->provider->name))
        VERR_AT(v, ".provider.name", "provider name is required");
    for (size_t i = 0; i < ap->n_rules; i++) {
        const Istio__Security__V1beta1__Rule *r = ap->rules[i];
        size_t o = vpush(v, ".rules[%zu]", i);
        for (size_t j = 0; j < r->n_from; j++) {
            size_t o2 = vpush(v, ".from[%zu]", j);
            const Istio__Security__V1beta1__Source *s = r->from[j]->source;
            if (!s) {
                VERR_AT(v, ".source", "source is required");
            } else {
                size_t o3 = vpush(v, ".source");
                if (!s->n_principals && !s->n_not_principals && !s->n_request_principals &&
                    !s->n_not_request_principals && !s->n_namespaces && !s->n_not_namespaces &&
                    !s->n_ip_blocks && !s->n_not_ip_blocks && !s->n_remote_ip_blocks &&
                    !s->n_not_remote_ip_blocks)
                    verr(v, "source must not be empty");
                struct { const char *n; char **s; size_t c; } cidrs[] = {
                    {".ipBlocks", s->ip_blocks, s->n_ip_blocks},
                    {".notIpBlocks", s->not_ip_blocks, s->n_not_ip_blocks},
                    {".remoteIpBlocks", s->remote_ip_blocks, s->n_remote_ip_blocks},
                    {".notRemoteIpBlocks", s->not_remote_ip_blocks, s->n_not_remote_ip_blocks},
                };
                for (int k = 0; k < 4; k++)
                    for (size_t m = 0; m < cidrs[k].c; m++)
                        if (!is_cidr(cidrs[k].s[m])) {
                            size_t o4 = vpush(v, "%s[%zu]", cidrs[k].n, m);
                            verr(v, "invalid IP address or CIDR \"%.100s\"", cidrs[k].s[m]);
                            vpop(v, o4);
                        }
                check_strings_nonempty(v, ".principals", s->principals, s->n_principals);
                check_strings_nonempty(v, ".namespaces", s->namespaces, s->n_namespaces);
                vpop(v, o3);
            }
            vpop(v, o2);
        }
        for (size_t j = 0; j < r->n_to; j++) {
            size_t o2 = vpush(v, ".to[%zu]", j);
            const Istio__Security__V1beta1__Operation *op = r->to[j]->operation;
            if (!op) {
                VERR_AT(v, ".operation", "operation is required");
            } else {
                size_t o3 = vpush(v, ".operation");
                if (!op->n_hosts && !op->n_not_hosts && !op->n_ports && !op->n_not_ports &&
                    !op->n_methods && !op->n_not_methods && !op->n_paths && !op->n_not_paths)
                    verr(v, "operation must not be empty");
                struct { const char *n; char **s; size_t c; } ports[] = {
                    {".ports", op->ports, op->n_ports}, {".notPorts", op->not_ports, op->n_not_ports}};
                for (int k = 0; k < 2; k++)
                    for (size_t m = 0; m < ports[k].c; m++) {
                        char *end;
                        long p = strtol(ports[k].s[m], &end, 10);
                        if (*end || end == ports[k].s[m] || p < 1 || p > 65535) {
                            size_t o4 = vpush(v, "%s[%zu]", ports[k].n, m);
                            verr(v, "invalid port \"%.60s\"", ports[k].s[m]);
                            vpop(v, o4);
                        }
                    }
                check_strings_nonempty(v, ".paths", op->paths, op->n_paths);
                check_strings_nonempty(v, ".methods", op->methods, op->n_methods);
                vpop(v, o3);
            }
            vpop(v, o2);
        }
        for (size_t j = 0; j < r->n_when; j++) {
            const Istio__Security__V1beta1__Condition *c = r->when[j];
            size_t o2 = vpush(v, ".when[%zu]", j);
            if (!c->key || !*c->key)
                VERR_AT(v, ".key", "key is required");
            if (!c->n_values && !c->n_not_values)
                verr(v, "at least one of values or notValues must be set for key %.100s",
                     c->key ? c->key : "");
            vpop(v, o2);
        }
        vpop(v, o);
    }
}

static void validate_ra(struct vctx *v, const Istio__Security__V1beta1__RequestAuthentication *ra)
{
    check_selector(v, ra->selector);
    for (size_t i = 0; i < ra->n_jwt_rules; i++) {
        const Istio__Security__V1beta1__JWTRule *r = ra->jwt_rules[i];
        size_t o = vpush(v, ".jwtRules[%zu]", i);
        if (!r->issuer || !*r->issuer)
            VERR_AT(v, ".issuer", "issuer must be set");
        else
            for (size_t j = 0; j < i; j++)
                if (ra->jwt_rules[j]->issuer && !strcmp(ra->jwt_rules[j]->issuer, r->issuer))
                    VERR_AT(v, ".issuer", "duplicate issuer %.100s", r->issuer);
        if (r->jwks_uri && *r->jwks_uri && strncmp(r->jwks_uri, "http://", 7) &&
            strncmp(r->jwks_uri, "https://", 8))
            VERR_AT(v, ".jwksUri", "jwksUri must be an http or https URL");
        if (r->jwks_uri && *r->jwks_uri && r->jwks && *r->jwks)
            verr(v, "only one of jwks and jwksUri may be set");
        for (size_t j = 0; j < r->n_from_headers; j++)
            if (!r->from_headers[j]->name || !header_name_ok(r->from_headers[j]->name)) {
                size_t o2 = vpush(v, ".fromHeaders[%zu].name", j);
                verr(v, "invalid header name");
                vpop(v, o2);
            }
        if (r->timeout) {
            size_t o2 = vpush(v, ".timeout");
            check_duration(v, r->timeout);
            vpop(v, o2);
        }
        vpop(v, o);
    }
}

/* ---- Kubernetes ---- */

static int iana_svc_name_ok(const char *s)
{
    size_t n = strlen(s);
    int letter = 0;
    if (n == 0 || n > 15 || s[0] == '-' || s[n - 1] == '-' || strstr(s, "--"))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
        letter |= s[i] >= 'a' && s[i] <= 'z';
    }
    return letter;
}

static void validate_k8s_service(struct vctx *v, const Weft__K8s__V1__ServiceSpec *s)
{
    if (s->type && *s->type && strcmp(s->type, "ClusterIP") && strcmp(s->type, "NodePort") &&
        strcmp(s->type, "LoadBalancer") && strcmp(s->type, "ExternalName"))
        VERR_AT(v, ".type", "unsupported value \"%.60s\": supported values: ClusterIP, ExternalName, LoadBalancer, NodePort", s->type);
    if (s->clusterip && *s->clusterip && strcmp(s->clusterip, "None") && !is_ip(s->clusterip))
        VERR_AT(v, ".clusterIP", "must be a valid IP address, \"None\" or empty");
    if (!s->n_ports && !(s->type && !strcmp(s->type, "ExternalName")))
        VERR_AT(v, ".ports", "required value");
    if (s->type && !strcmp(s->type, "ExternalName") && (!s->external_name || !is_dns1123_subdomain(s->external_name)))
        VERR_AT(v, ".externalName", "an ExternalName Service needs a valid DNS name");
    for (size_t i = 0; i < s->n_ports; i++) {
        const Weft__K8s__V1__ServicePort *p = s->ports[i];
        size_t o = vpush(v, ".ports[%zu]", i);
        if ((!p->name || !*p->name) && s->n_ports > 1)
            VERR_AT(v, ".name", "required value (more than one port)");
        else if (p->name && *p->name && !is_dns1123_label(p->name))
            VERR_AT(v, ".name", "\"%.60s\" is not a valid DNS-1123 label", p->name);
        for (size_t j = 0; j < i; j++) {
            if (p->name && *p->name && s->ports[j]->name && !strcmp(p->name, s->ports[j]->name))
                VERR_AT(v, ".name", "duplicate port name \"%.60s\"", p->name);
            if (p->port == s->ports[j]->port &&
                !strcmp(p->protocol ? p->protocol : "", s->ports[j]->protocol ? s->ports[j]->protocol : ""))
                VERR_AT(v, ".port", "duplicate port %u", p->port);
        }
        size_t o2 = vpush(v, ".port");
        check_port(v, p->port);
        vpop(v, o2);
        if (p->protocol && *p->protocol && strcmp(p->protocol, "TCP") && strcmp(p->protocol, "UDP") &&
            strcmp(p->protocol, "SCTP"))
            VERR_AT(v, ".protocol", "unsupported value \"%.60s\": supported values: SCTP, TCP, UDP", p->protocol);
        if (p->target_port && *p->target_port) {
            char *end;
            long tp = strtol(p->target_port, &end, 10);
            if (isdigit((unsigned char)p->target_port[0])) {
                if (*end || tp < 1 || tp > 65535)
                    VERR_AT(v, ".targetPort", "port number %.60s must be in the range 1..65535", p->target_port);
            } else if (!iana_svc_name_ok(p->target_port)) {
                VERR_AT(v, ".targetPort", "\"%.60s\" is neither a port number nor a valid port name", p->target_port);
            }
        }
        vpop(v, o);
    }
    check_labels(v, ".selector", (void *const *)s->selector, s->n_selector);
}

/* ---- entry point ---- */

int istio_validate(const struct istio_object *o, const struct ytree *doc, const char *file,
                   const char *domain_suffix, struct istio_errors *errs)
{
    struct vctx v = {.doc = doc, .file = file, .ns = o->ns, .suffix = domain_suffix, .errs = errs};
    /* metadata first */
    if (o->name) {
        int ok = o->kind == ISTIO_K8S_NAMESPACE || o->kind == ISTIO_K8S_SERVICE
                     ? is_dns1123_label(o->name) : is_dns1123_subdomain(o->name);
        if (!ok) {
            size_t p = vpush(&v, "metadata.name");
            verr(&v, "\"%.100s\" is not a valid name (lowercase letters, digits, '-' and '.')", o->name);
            vpop(&v, p);
        }
    }
    if (!is_dns1123_label(o->ns)) {
        size_t p = vpush(&v, "metadata.namespace");
        verr(&v, "\"%.100s\" is not a valid namespace name", o->ns);
        vpop(&v, p);
    }
    for (size_t i = 0; i < o->n_labels; i++) {
        size_t p = vpush(&v, "metadata.labels[%.100s]", o->labels[i].key);
        if (!label_key_ok(o->labels[i].key))
            verr(&v, "invalid label key \"%.100s\"", o->labels[i].key);
        else if (!label_value_ok(o->labels[i].value))
            verr(&v, "invalid label value \"%.100s\"", o->labels[i].value);
        vpop(&v, p);
    }
    vpush(&v, "spec");
    const void *s = o->spec;
    switch (o->kind) {
    case ISTIO_VIRTUAL_SERVICE: validate_vs(&v, s); break;
    case ISTIO_DESTINATION_RULE: validate_dr(&v, s); break;
    case ISTIO_GATEWAY: validate_gw(&v, s); break;
    case ISTIO_SERVICE_ENTRY: validate_se(&v, s); break;
    case ISTIO_WORKLOAD_ENTRY: check_workload_entry(&v, s, 1, 0); break;
    case ISTIO_SIDECAR: validate_sidecar(&v, s); break;
    case ISTIO_PEER_AUTHENTICATION: validate_pa(&v, s); break;
    case ISTIO_AUTHORIZATION_POLICY: validate_ap(&v, s); break;
    case ISTIO_REQUEST_AUTHENTICATION: validate_ra(&v, s); break;
    case ISTIO_K8S_SERVICE: validate_k8s_service(&v, s); break;
    case ISTIO_K8S_NAMESPACE:
    case ISTIO_KIND_COUNT: break;
    }
    if (v.count > ISTIO_MAX_ERRORS_PER_OBJECT)
        istio_errors_add(errs, "%s:%d: %d more errors in %s %s/%s not shown", file, o->line,
                         v.count - ISTIO_MAX_ERRORS_PER_OBJECT, istio_kind_name(o->kind), o->ns,
                         o->name ? o->name : "?");
    return v.count;
}
