/* Compiles an envoy.config.route.v3.RouteConfiguration into the immutable struct route_table
 * that route.c reads per request. Runs on the main thread. Everything the table points to lives
 * in one arena (freed in one go) except the PCRE2 codes, which are listed in the table.
 * Validation follows Envoy's (and its proto constraints) where Weft depends on them; every error
 * names the field path relative to the route config. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/config/route/v3/route_components.pb-c.h"
#include "proxy/hfilter.h"
#include "proxy/retry.h"
#include "proxy/subst_format.h"
#include "proxy/route.h"
#include "proxy/route_build_internal.h"

#define ARENA_CHUNK (64 * 1024)

/* Envoy's deprecated fields (legacy header matchers, HeaderValueOption.append,
 * WeightedCluster.total_weight) are still honoured, so reading them is intended. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

struct build {
    struct arena_chunk *arena;
    pcre2_code **codes;
    size_t ncodes, capcodes;
    struct subst_format **formats;  /* header value formats, freed with the table like codes */
    size_t nformats, capformats;
    route_cluster_lookup lookup;
    void *lookup_ctx;
    bool validate;
    uint32_t max_body;
    char *err;
    size_t errlen;
    char path[ROUTE_ERR_PATH_MAX];
    size_t plen;
    const struct hf_chain *chain;   /* the HCM's HTTP filters (per-route configs resolve to them) */
    const char *hcm_prefix;
};

typedef Envoy__Config__Route__V3__RouteConfiguration RouteConfiguration;
typedef Envoy__Config__Route__V3__VirtualHost VirtualHost;
typedef Envoy__Config__Route__V3__Route Route;
typedef Envoy__Config__Route__V3__RouteMatch RouteMatch;
typedef Envoy__Config__Route__V3__RouteAction RouteAction;
typedef Envoy__Config__Route__V3__RedirectAction RedirectAction;
typedef Envoy__Config__Route__V3__DirectResponseAction DirectResponseAction;
typedef Envoy__Config__Route__V3__WeightedCluster WeightedCluster;
typedef Envoy__Config__Route__V3__WeightedCluster__ClusterWeight ClusterWeight;
typedef Envoy__Config__Route__V3__HeaderMatcher HeaderMatcher;
typedef Envoy__Config__Route__V3__QueryParameterMatcher QueryParameterMatcher;
typedef Envoy__Config__Route__V3__CookieMatcher CookieMatcher;
typedef Envoy__Config__Route__V3__RouteAction__HashPolicy HashPolicy;
typedef Envoy__Config__Route__V3__RetryPolicy RetryPolicy;
typedef Envoy__Config__Core__V3__HeaderValueOption HeaderValueOption;
typedef Envoy__Config__Core__V3__DataSource DataSource;
typedef Envoy__Type__Matcher__V3__StringMatcher StringMatcher;
typedef Envoy__Type__Matcher__V3__RegexMatcher RegexMatcher;
typedef Envoy__Type__Matcher__V3__RegexMatchAndSubstitute RegexMatchAndSubstitute;

/* --- memory --- */

/* Zeroed, 16-byte aligned memory that lives until the table is freed. */
static void *balloc(struct build *b, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct arena_chunk *c = b->arena;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = calloc(1, sizeof *c + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->next = b->arena;
        b->arena = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(struct arena_chunk *c)
{
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
}

/* Frees what a failed build made. */
static void build_discard(struct build *b)
{
    for (size_t i = 0; i < b->ncodes; i++)
        pcre2_code_free(b->codes[i]);
    free(b->codes);
    for (size_t i = 0; i < b->nformats; i++)
        subst_format_free(b->formats[i]);
    free(b->formats);
    arena_free(b->arena);
}

/* --- errors --- */

/* Appends to the field path; returns the mark path_pop goes back to. */
static size_t path_vpush(struct build *b, const char *fmt, va_list ap)
{
    size_t mark = b->plen;
    if (b->plen < sizeof b->path) {
        int n = vsnprintf(b->path + b->plen, sizeof b->path - b->plen, fmt, ap);
        if (n > 0)
            b->plen += (size_t)n < sizeof b->path - b->plen ? (size_t)n : sizeof b->path - 1 - b->plen;
    }
    return mark;
}

static size_t path_push(struct build *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t mark = path_vpush(b, fmt, ap);
    va_end(ap);
    return mark;
}

static void path_pop(struct build *b, size_t mark)
{
    b->plen = mark;
    b->path[mark] = '\0';
}

/* Writes "<path><field>: <message>" (without a leading '.') into the caller's err. */
static int vfail(struct build *b, const char *field, const char *fmt, va_list ap)
{
    if (!b->err || b->errlen == 0)
        return -1;
    char full[ROUTE_ERR_PATH_MAX + 128];
    snprintf(full, sizeof full, "%.*s%s", (int)b->plen, b->path, field);
    const char *f = full[0] == '.' ? full + 1 : full;
    int n = snprintf(b->err, b->errlen, "%s: ", f);
    if (n >= 0 && (size_t)n < b->errlen)
        vsnprintf(b->err + n, b->errlen - (size_t)n, fmt, ap);
    return -1;
}

static int fail(struct build *b, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(b, field, fmt, ap);
    va_end(ap);
    return -1;
}

static int oom(struct build *b)
{
    return fail(b, "", "out of memory");
}

/* --- strings --- */

static bool set(const char *s)
{
    return s && s[0];
}

static int dup_n(struct build *b, const char *s, size_t n, bool lower, struct h1_str *out)
{
    char *p = balloc(b, n + 1);
    if (!p)
        return oom(b);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(lower && s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    p[n] = '\0';
    out->p = p;
    out->n = n;
    return 0;
}

static const char *dup(struct build *b, const char *s)
{
    struct h1_str o = {0}; /* set on success; GCC -O3 cannot see that oom() is negative */
    return dup_n(b, s ? s : "", s ? strlen(s) : 0, false, &o) < 0 ? NULL : o.p;
}

/* HTTP field-value bytes (Envoy's HTTP_HEADER_VALUE rule): no NUL, CR or LF. */
static int check_value(struct build *b, const char *field, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || s[i] == '\r' || s[i] == '\n')
            return fail(b, field, "invalid character 0x%02x in value", (unsigned char)s[i]);
    return 0;
}

/* A header name: an RFC 9110 token, or a ':'-prefixed pseudo header. */
static int check_name(struct build *b, const char *field, const char *s)
{
    if (!set(s))
        return fail(b, field, "header name must not be empty");
    for (const char *p = s[0] == ':' ? s + 1 : s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c)))
            return fail(b, field, "invalid character 0x%02x in header name '%s'", c, s);
    }
    return 0;
}

/* --- regexes --- */

static int keep_code(struct build *b, pcre2_code *c)
{
    if (b->ncodes == b->capcodes) {
        size_t cap = b->capcodes ? b->capcodes * 2 : 16;
        pcre2_code **n = realloc(b->codes, cap * sizeof *n);
        if (!n) {
            pcre2_code_free(c);
            return oom(b);
        }
        b->codes = n;
        b->capcodes = cap;
    }
    b->codes[b->ncodes++] = c;
    return 0;
}

static int keep_format(struct build *b, struct subst_format *f)
{
    if (b->nformats == b->capformats) {
        size_t cap = b->capformats ? b->capformats * 2 : 8;
        struct subst_format **n = realloc(b->formats, cap * sizeof *n);
        if (!n) {
            subst_format_free(f);
            return oom(b);
        }
        b->formats = n;
        b->capformats = cap;
    }
    b->formats[b->nformats++] = f;
    return 0;
}

/* Compiles an Envoy (RE2-syntax) regex with PCRE2. full: anchored at both ends (Envoy's
 * safe_regex matchers are full matches); otherwise for searching (rewrites). An ASCII pattern
 * runs in byte mode (so '.' also matches stray non-UTF-8 bytes, as RE2 does); a pattern with
 * non-ASCII bytes runs in UTF mode, where invalid subject bytes simply never match. */
static int compile_regex(struct build *b, const char *field, const RegexMatcher *rm, bool full,
                         pcre2_code **out, uint32_t *groups)
{
    if (!rm)
        return fail(b, field, "missing");
    char f[96];
    snprintf(f, sizeof f, "%s.regex", field);
    const char *pat = rm->regex ? rm->regex : "";
    if (!pat[0])
        return fail(b, f, "must not be empty");
    uint32_t opts = full ? PCRE2_ANCHORED | PCRE2_ENDANCHORED : 0;
    for (const char *p = pat; *p; p++)
        if ((unsigned char)*p >= 0x80) {
            opts |= PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
            break;
        }
    int ec;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &ec, &off, NULL);
    if (!c) {
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(ec, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", ec);
        return fail(b, f, "%s at offset %zu", (const char *)msg, (size_t)off);
    }
    uint32_t cc = 0;
    pcre2_pattern_info(c, PCRE2_INFO_CAPTURECOUNT, &cc);
    if (cc >= ROUTE_REGEX_GROUPS) {
        pcre2_code_free(c);
        return fail(b, f, "%u capture groups; at most %d are supported", cc, ROUTE_REGEX_GROUPS - 1);
    }
    pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);   /* failure leaves the interpreter: still correct */
    if (keep_code(b, c) < 0)
        return -1;
    *out = c;
    if (groups)
        *groups = cc;
    return 0;
}

/* Turns an RE2 rewrite string (\0..\9 groups, \\ a backslash, everything else literal) into
 * PCRE2 replacement syntax (${n}, '$' doubled). Refers only to groups that exist. */
static int translate_sub(struct build *b, const char *field, const char *sub, uint32_t groups, const char **out)
{
    size_t n = sub ? strlen(sub) : 0;
    char *o = balloc(b, 3 * n + 1), *w = o;
    if (!o)
        return oom(b);
    for (size_t i = 0; i < n; i++) {
        char c = sub[i];
        if (c == '\\') {
            char d = i + 1 < n ? sub[i + 1] : '\0';
            if (d >= '0' && d <= '9') {
                if ((uint32_t)(d - '0') > groups)
                    return fail(b, field, "\\%c refers to a group the pattern does not have (%u)", d, groups);
                w += sprintf(w, "${%c}", d);
                i++;
            } else if (d == '\\') {
                *w++ = '\\';
                i++;
            } else {
                return fail(b, field, "invalid rewrite pattern: '\\' must be followed by a digit or '\\'");
            }
        } else if (c == '$') {
            *w++ = '$';
            *w++ = '$';
        } else {
            *w++ = c;
        }
    }
    *w = '\0';
    *out = o;
    return 0;
}

static int compile_subst(struct build *b, const char *field, const RegexMatchAndSubstitute *rs,
                         struct pcre2_real_code_8 **re, const char **sub)
{
    char f[96];
    uint32_t groups = 0;
    pcre2_code *c = NULL;
    snprintf(f, sizeof f, "%s.pattern", field);
    if (compile_regex(b, f, rs->pattern, false, &c, &groups) < 0)
        return -1;
    snprintf(f, sizeof f, "%s.substitution", field);
    if (translate_sub(b, f, rs->substitution, groups, sub) < 0)
        return -1;
    *re = c;
    return 0;
}

/* --- matchers --- */

static int compile_sm(struct build *b, const char *field, const StringMatcher *m, struct route_string_match *o)
{
    char f[96];
    if (!m)
        return fail(b, field, "missing");
    o->ignore_case = m->ignore_case;
    const char *s = NULL, *name = "";
    switch (m->match_pattern_case) {
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_EXACT:
        o->kind = RSM_EXACT;
        s = m->exact;
        break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_PREFIX:
        o->kind = RSM_PREFIX;
        s = m->prefix;
        name = "prefix";
        break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_SUFFIX:
        o->kind = RSM_SUFFIX;
        s = m->suffix;
        name = "suffix";
        break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_CONTAINS:
        o->kind = RSM_CONTAINS;
        s = m->contains;
        name = "contains";
        break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_SAFE_REGEX: {
        pcre2_code *c;
        o->kind = RSM_REGEX;
        o->ignore_case = false;
        snprintf(f, sizeof f, "%s.safe_regex", field);
        if (compile_regex(b, f, m->safe_regex, true, &c, NULL) < 0)
            return -1;
        o->re = c;
        return 0;
    }
    default:
        return fail(b, field, "one of exact, prefix, suffix, contains, safe_regex is required");
    }
    if (o->kind != RSM_EXACT && !set(s)) {
        snprintf(f, sizeof f, "%s.%s", field, name);
        return fail(b, f, "must not be empty");
    }
    return dup_n(b, s ? s : "", s ? strlen(s) : 0, false, &o->s);
}

static int legacy_sm(struct build *b, uint8_t kind, const char *s, const char *field, struct route_string_match *o)
{
    if (kind != RSM_EXACT && !set(s))
        return fail(b, field, "must not be empty");
    o->kind = kind;
    return dup_n(b, s ? s : "", s ? strlen(s) : 0, false, &o->s);
}

static int compile_header_match(struct build *b, const HeaderMatcher *m, struct route_header_match *o)
{
    if (check_name(b, ".name", m->name) < 0 || dup_n(b, m->name, strlen(m->name), true, &o->name) < 0)
        return -1;
    o->invert = m->invert_match;
    o->missing_as_empty = m->treat_missing_header_as_empty;
    o->kind = RHM_STRING;
    switch (m->header_match_specifier_case) {
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER__NOT_SET:
        o->kind = RHM_PRESENT;   /* no specifier: the header must be present (Envoy) */
        o->present = true;
        return 0;
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_PRESENT_MATCH:
        o->kind = RHM_PRESENT;
        o->present = m->present_match;
        return 0;
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_RANGE_MATCH:
        o->kind = RHM_RANGE;
        if (!m->range_match)
            return fail(b, ".range_match", "missing");
        o->start = m->range_match->start;
        o->end = m->range_match->end;
        if (o->start >= o->end)
            return fail(b, ".range_match", "start (%lld) must be less than end (%lld)",
                        (long long)o->start, (long long)o->end);
        return 0;
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_EXACT_MATCH:
        return legacy_sm(b, RSM_EXACT, m->exact_match, ".exact_match", &o->sm);
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_PREFIX_MATCH:
        return legacy_sm(b, RSM_PREFIX, m->prefix_match, ".prefix_match", &o->sm);
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_SUFFIX_MATCH:
        return legacy_sm(b, RSM_SUFFIX, m->suffix_match, ".suffix_match", &o->sm);
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_CONTAINS_MATCH:
        return legacy_sm(b, RSM_CONTAINS, m->contains_match, ".contains_match", &o->sm);
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_SAFE_REGEX_MATCH: {
        pcre2_code *c;
        o->sm.kind = RSM_REGEX;
        if (compile_regex(b, ".safe_regex_match", m->safe_regex_match, true, &c, NULL) < 0)
            return -1;
        o->sm.re = c;
        return 0;
    }
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_STRING_MATCH:
        return compile_sm(b, ".string_match", m->string_match, &o->sm);
    default:
        return fail(b, "", "unknown header match specifier %d", (int)m->header_match_specifier_case);
    }
}

/* --- header mutations --- */

/* Envoy refuses to add or remove pseudo headers and Host through these lists. */
static int check_modifiable(struct build *b, const char *field, const char *name)
{
    if (check_name(b, field, name) < 0)
        return -1;
    if (name[0] == ':' || strcasecmp(name, "host") == 0)
        return fail(b, field, ":-prefixed or host headers may not be modified ('%s')", name);
    return 0;
}

/* A header value is an Envoy substitution format string. Values whose only '%' are "%%" become
 * plain strings; others are compiled (an unknown or malformed command is a config error, as in
 * Envoy) and rendered per request. */
static int header_value(struct build *b, const char *v, size_t n, struct route_header_add *o)
{
    bool plain = true;
    for (size_t i = 0; i < n; i++)
        if (v[i] == '%') {
            if (i + 1 < n && v[i + 1] == '%')
                i++;
            else
                plain = false;
        }
    if (!plain) {
        if (dup_n(b, v, n, false, &o->value) < 0)
            return -1;
        char ferr[160];
        struct subst_format *f = subst_format_new(o->value.p, ferr, sizeof ferr);
        if (!f)
            return fail(b, "", "%s", ferr);
        o->format = f;
        return keep_format(b, f);
    }
    char *p = balloc(b, n + 1);
    if (!p)
        return oom(b);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        p[k++] = v[i];
        if (v[i] == '%')
            i++;
    }
    p[k] = '\0';
    o->value.p = p;
    o->value.n = k;
    return 0;
}

static int compile_add(struct build *b, const HeaderValueOption *h, struct route_header_add *o)
{
    if (!h->header)
        return fail(b, ".header", "missing");
    if (check_modifiable(b, ".header.key", h->header->key) < 0)
        return -1;
    if (dup_n(b, h->header->key, strlen(h->header->key), true, &o->name) < 0)
        return -1;
    const char *v = h->header->value ? h->header->value : "";
    size_t vn = strlen(v);
    if (h->header->raw_value.len) {
        if (vn)
            return fail(b, ".header", "only one of value or raw_value may be set");
        v = (const char *)h->header->raw_value.data;
        vn = h->header->raw_value.len;
    }
    if (check_value(b, ".header.value", v, vn) < 0 || header_value(b, v, vn, o) < 0)
        return -1;
    if (h->append) {
        if (h->append_action != ENVOY__CONFIG__CORE__V3__HEADER_VALUE_OPTION__HEADER_APPEND_ACTION__APPEND_IF_EXISTS_OR_ADD)
            return fail(b, "", "both append and append_action are set, which is not allowed");
        o->action = h->append->value ? ROUTE_APPEND_IF_EXISTS_OR_ADD : ROUTE_OVERWRITE_IF_EXISTS_OR_ADD;
    } else {
        if ((unsigned)h->append_action > ROUTE_OVERWRITE_IF_EXISTS)
            return fail(b, ".append_action", "unknown value %d", (int)h->append_action);
        o->action = (enum route_append_action)h->append_action;
    }
    o->keep_empty_value = h->keep_empty_value;
    return 0;
}

/* One level's request (or response) headers_to_add / headers_to_remove. */
static int compile_mutation(struct build *b, const char *add_name, size_t nadd, HeaderValueOption *const *add,
                            const char *rm_name, size_t nrm, char *const *rm, struct header_mutation *o)
{
    if (nadd) {
        struct route_header_add *a = balloc(b, nadd * sizeof *a);
        if (!a)
            return oom(b);
        for (size_t i = 0; i < nadd; i++) {
            size_t mark = path_push(b, ".%s[%zu]", add_name, i);
            if (compile_add(b, add[i], &a[i]) < 0)
                return -1;
            path_pop(b, mark);
        }
        o->add = a;
        o->nadd = nadd;
    }
    if (nrm) {
        struct h1_str *r = balloc(b, nrm * sizeof *r);
        if (!r)
            return oom(b);
        for (size_t i = 0; i < nrm; i++) {
            size_t mark = path_push(b, ".%s[%zu]", rm_name, i);
            if (check_modifiable(b, "", rm[i]) < 0 || dup_n(b, rm[i], strlen(rm[i]), true, &r[i]) < 0)
                return -1;
            path_pop(b, mark);
        }
        o->remove = r;
        o->nremove = nrm;
    }
    return 0;
}

#define MUTATIONS(b, m, dir, out)                                                                        \
    compile_mutation(b, #dir "_headers_to_add", (m)->n_##dir##_headers_to_add, (m)->dir##_headers_to_add, \
                     #dir "_headers_to_remove", (m)->n_##dir##_headers_to_remove,                         \
                     (m)->dir##_headers_to_remove, out)

/* --- small conversions --- */

static int duration_ms(struct build *b, const char *field, const Google__Protobuf__Duration *d, uint64_t *ms)
{
    if (d->seconds < 0 || d->nanos < 0 || d->seconds > 315576000000LL)
        return fail(b, field, "must be a non-negative duration");
    *ms = (uint64_t)d->seconds * 1000 + (uint64_t)d->nanos / 1000000;
    return 0;
}

static int resolve_cluster(struct build *b, const char *field, const char *name, int *idx)
{
    *idx = -1;
    if (!set(name))
        return fail(b, field, "must not be empty");
    if (!b->lookup)
        return 0;
    *idx = b->lookup(b->lookup_ctx, name);
    if (*idx < 0 && b->validate)
        return fail(b, field, "unknown cluster '%s'", name);
    return 0;
}

/* DataSource for a direct response body, read now (files and environment variables are not
 * re-read later), bounded by max_direct_response_body_size_bytes. */
static int read_body(struct build *b, const DataSource *ds, struct h1_str *out)
{
    const char *src = NULL;
    size_t n = 0;
    switch (ds->specifier_case) {
    case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_STRING:
        src = ds->inline_string;
        n = strlen(src);
        break;
    case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_BYTES:
        src = (const char *)ds->inline_bytes.data;
        n = ds->inline_bytes.len;
        break;
    case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_ENVIRONMENT_VARIABLE:
        src = getenv(ds->environment_variable);
        if (!src)
            return fail(b, ".body.environment_variable", "environment variable '%s' is not set",
                        ds->environment_variable);
        n = strlen(src);
        break;
    case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_FILENAME: {
        FILE *f = fopen(ds->filename, "rb");
        if (!f)
            return fail(b, ".body.filename", "cannot open '%s': %s", ds->filename, strerror(errno));
        char *buf = balloc(b, (size_t)b->max_body + 2);
        if (!buf) {
            fclose(f);
            return oom(b);
        }
        n = fread(buf, 1, (size_t)b->max_body + 1, f);
        bool bad = ferror(f);
        fclose(f);
        if (bad)
            return fail(b, ".body.filename", "cannot read '%s'", ds->filename);
        if (n > b->max_body)
            return fail(b, ".body.filename", "file '%s' is larger than the maximum body size %u",
                        ds->filename, b->max_body);
        buf[n] = '\0';
        out->p = buf;
        out->n = n;
        return 0;
    }
    default:
        return 0;
    }
    if (n > b->max_body)
        return fail(b, ".body", "response body size is %zu bytes; maximum is %u", n, b->max_body);
    return dup_n(b, src ? src : "", n, false, out);
}

static uint32_t fraction_den(int d)
{
    switch (d) {
    case ENVOY__TYPE__V3__FRACTIONAL_PERCENT__DENOMINATOR_TYPE__HUNDRED:
        return 100;
    case ENVOY__TYPE__V3__FRACTIONAL_PERCENT__DENOMINATOR_TYPE__TEN_THOUSAND:
        return 10000;
    case ENVOY__TYPE__V3__FRACTIONAL_PERCENT__DENOMINATOR_TYPE__MILLION:
        return 1000000;
    }
    return 0;
}

/* --- routes --- */

/* typed_per_filter_config of a ClusterWeight: no filter reads it yet, so an entry is a config
 * error rather than a policy silently ignored (routes and virtual hosts: hfilter_build.c). */
#define REFUSE_FILTER_CONFIG(b, obj)                                                              \
    ((obj)->n_typed_per_filter_config                                                             \
         ? fail((b), ".typed_per_filter_config", "per-route config for '%s' is not supported yet", \
                (obj)->typed_per_filter_config[0]->key ? (obj)->typed_per_filter_config[0]->key : "") \
         : 0)

static int compile_match(struct build *b, const RouteMatch *m, struct route_entry *e)
{
    size_t mark = path_push(b, ".match");
    e->case_sensitive = m->case_sensitive ? m->case_sensitive->value : true;
    switch (m->path_specifier_case) {
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PREFIX:
        e->path_kind = RPATH_PREFIX;
        if (dup_n(b, m->prefix, strlen(m->prefix), false, &e->path) < 0)
            return -1;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PATH:
        e->path_kind = RPATH_EXACT;
        if (dup_n(b, m->path, strlen(m->path), false, &e->path) < 0)
            return -1;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PATH_SEPARATED_PREFIX: {
        const char *p = m->path_separated_prefix;
        size_t n = strlen(p);
        if (n < 2 || strpbrk(p, "?#") || p[n - 1] == '/')
            return fail(b, ".path_separated_prefix",
                        "'%s' must not contain '?' or '#' nor end with '/'", p);
        e->path_kind = RPATH_SEP_PREFIX;
        if (dup_n(b, p, n, false, &e->path) < 0)
            return -1;
        break;
    }
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_SAFE_REGEX: {
        pcre2_code *c;
        e->path_kind = RPATH_REGEX;
        if (compile_regex(b, ".safe_regex", m->safe_regex, true, &c, NULL) < 0)
            return -1;
        e->path_re = c;
        break;
    }
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_CONNECT_MATCHER:
        e->path_kind = RPATH_CONNECT;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PATH_MATCH_POLICY:
        return fail(b, ".path_match_policy", "not supported by weft");
    default:
        return fail(b, "", "one of prefix, path, safe_regex, connect_matcher, path_separated_prefix is required");
    }
    if (m->runtime_fraction) {
        const Envoy__Type__V3__FractionalPercent *fp = m->runtime_fraction->default_value;
        if (!fp)
            return fail(b, ".runtime_fraction.default_value", "missing");
        e->has_fraction = true;
        e->frac_num = fp->numerator;
        e->frac_den = fraction_den(fp->denominator);
        if (!e->frac_den)
            return fail(b, ".runtime_fraction.default_value.denominator", "unknown value %d", (int)fp->denominator);
    }
    e->grpc = m->grpc != NULL;
    if (m->tls_context && (m->tls_context->presented || m->tls_context->validated))
        return fail(b, ".tls_context", "not supported by weft");
    if (m->n_headers) {
        struct route_header_match *h = balloc(b, m->n_headers * sizeof *h);
        if (!h)
            return oom(b);
        for (size_t i = 0; i < m->n_headers; i++) {
            size_t mk = path_push(b, ".headers[%zu]", i);
            if (compile_header_match(b, m->headers[i], &h[i]) < 0)
                return -1;
            path_pop(b, mk);
        }
        e->headers = h;
        e->nheaders = m->n_headers;
    }
    if (m->n_query_parameters) {
        struct route_query_match *q = balloc(b, m->n_query_parameters * sizeof *q);
        if (!q)
            return oom(b);
        for (size_t i = 0; i < m->n_query_parameters; i++) {
            const QueryParameterMatcher *qm = m->query_parameters[i];
            size_t mk = path_push(b, ".query_parameters[%zu]", i);
            if (!set(qm->name) || strlen(qm->name) > 1024)
                return fail(b, ".name", "must be 1 to 1024 bytes");
            if (dup_n(b, qm->name, strlen(qm->name), false, &q[i].name) < 0)
                return -1;
            if (qm->query_parameter_match_specifier_case ==
                ENVOY__CONFIG__ROUTE__V3__QUERY_PARAMETER_MATCHER__QUERY_PARAMETER_MATCH_SPECIFIER_STRING_MATCH) {
                if (compile_sm(b, ".string_match", qm->string_match, &q[i].sm) < 0)
                    return -1;
            } else {
                q[i].present_only = true;   /* present_match, or no specifier: presence (Envoy) */
            }
            path_pop(b, mk);
        }
        e->queries = q;
        e->nqueries = m->n_query_parameters;
    }
    if (m->n_cookies) {
        struct route_cookie_match *c = balloc(b, m->n_cookies * sizeof *c);
        if (!c)
            return oom(b);
        for (size_t i = 0; i < m->n_cookies; i++) {
            const CookieMatcher *cm = m->cookies[i];
            size_t mk = path_push(b, ".cookies[%zu]", i);
            if (!set(cm->name))
                return fail(b, ".name", "must not be empty");
            if (dup_n(b, cm->name, strlen(cm->name), false, &c[i].name) < 0 ||
                compile_sm(b, ".string_match", cm->string_match, &c[i].sm) < 0)
                return -1;
            c[i].invert = cm->invert_match;
            path_pop(b, mk);
        }
        e->cookies = c;
        e->ncookies = m->n_cookies;
    }
    path_pop(b, mark);
    return 0;
}

static int compile_weighted(struct build *b, const WeightedCluster *wc, struct route_entry *e)
{
    size_t mark = path_push(b, ".weighted_clusters");
    if (!wc)
        return fail(b, "", "missing");
    if (wc->n_clusters == 0)
        return fail(b, ".clusters", "at least one cluster is required");
    struct route_weight *w = balloc(b, wc->n_clusters * sizeof *w);
    if (!w)
        return oom(b);
    uint64_t total = 0;
    for (size_t i = 0; i < wc->n_clusters; i++) {
        const ClusterWeight *cw = wc->clusters[i];
        size_t mk = path_push(b, ".clusters[%zu]", i);
        if (REFUSE_FILTER_CONFIG(b, cw) < 0)
            return -1;
        if (set(cw->cluster_header))
            return fail(b, ".cluster_header", "not supported by weft");
        if (resolve_cluster(b, ".name", cw->name, &w[i].cluster) < 0 || !(w[i].name = dup(b, cw->name)))
            return -1;
        w[i].weight = cw->weight ? cw->weight->value : 0;
        total += w[i].weight;
        if (cw->host_rewrite_specifier_case ==
                ENVOY__CONFIG__ROUTE__V3__WEIGHTED_CLUSTER__CLUSTER_WEIGHT__HOST_REWRITE_SPECIFIER_HOST_REWRITE_LITERAL &&
            set(cw->host_rewrite_literal)) {
            if (check_value(b, ".host_rewrite_literal", cw->host_rewrite_literal, strlen(cw->host_rewrite_literal)) < 0 ||
                !(w[i].host_rewrite = dup(b, cw->host_rewrite_literal)))
                return -1;
        }
        if (MUTATIONS(b, cw, request, &w[i].req) < 0 || MUTATIONS(b, cw, response, &w[i].resp) < 0)
            return -1;
        path_pop(b, mk);
    }
    if (total == 0)
        return fail(b, ".clusters", "the sum of the weights must be greater than 0");
    if (total > UINT32_MAX)
        return fail(b, ".clusters", "the sum of the weights exceeds %u", UINT32_MAX);
    if (wc->total_weight && wc->total_weight->value && wc->total_weight->value != total)
        return fail(b, ".total_weight", "is %u but the weights add up to %llu", wc->total_weight->value,
                    (unsigned long long)total);
    e->weights = w;
    e->nweights = wc->n_clusters;
    e->total_weight = total;
    path_pop(b, mark);
    return 0;
}

static int compile_hash(struct build *b, const RouteAction *ra, struct route_entry *e)
{
    if (!ra->n_hash_policy)
        return 0;
    struct route_hash_policy *h = balloc(b, ra->n_hash_policy * sizeof *h);
    if (!h)
        return oom(b);
    for (size_t i = 0; i < ra->n_hash_policy; i++) {
        const HashPolicy *hp = ra->hash_policy[i];
        size_t mark = path_push(b, ".hash_policy[%zu]", i);
        h[i].terminal = hp->terminal;
        h[i].kind = RHASH_NONE;
        if (hp->policy_specifier_case != ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER__NOT_SET &&
            !hp->header)   /* the oneof's message pointer (all members share it) */
            return fail(b, "", "policy is missing its message");
        switch (hp->policy_specifier_case) {
        case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_HEADER:
            if (check_name(b, ".header.header_name", hp->header->header_name) < 0)
                return -1;
            if (hp->header->regex_rewrite)
                return fail(b, ".header.regex_rewrite", "not supported by weft");
            h[i].kind = RHASH_HEADER;
            if (dup_n(b, hp->header->header_name, strlen(hp->header->header_name), true, &h[i].name) < 0)
                return -1;
            break;
        case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_COOKIE:
            if (!set(hp->cookie->name))
                return fail(b, ".cookie.name", "must not be empty");
            h[i].kind = RHASH_COOKIE;
            if (dup_n(b, hp->cookie->name, strlen(hp->cookie->name), false, &h[i].name) < 0)
                return -1;
            break;
        case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_CONNECTION_PROPERTIES:
            if (hp->connection_properties->source_ip)
                h[i].kind = RHASH_SOURCE_IP;
            break;
        case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_QUERY_PARAMETER:
            if (!set(hp->query_parameter->name))
                return fail(b, ".query_parameter.name", "must not be empty");
            h[i].kind = RHASH_QUERY;
            if (dup_n(b, hp->query_parameter->name, strlen(hp->query_parameter->name), false, &h[i].name) < 0)
                return -1;
            break;
        case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_FILTER_STATE:
            break;   /* no filter state objects are hashable in weft: never produces a hash */
        default:
            return fail(b, "", "one of header, cookie, connection_properties, query_parameter, filter_state is required");
        }
        path_pop(b, mark);
    }
    e->hash = h;
    e->nhash = ra->n_hash_policy;
    return 0;
}

/* request_mirror_policies: the clusters to shadow to and their fractions (mirror.c sends). */
static int compile_mirrors(struct build *b, const RouteAction *ra, struct route_entry *e)
{
    struct route_mirror *m = balloc(b, ra->n_request_mirror_policies * sizeof *m);
    if (!m)
        return oom(b);
    for (size_t i = 0; i < ra->n_request_mirror_policies; i++) {
        const Envoy__Config__Route__V3__RouteAction__RequestMirrorPolicy *p = ra->request_mirror_policies[i];
        size_t mk = path_push(b, ".request_mirror_policies[%zu]", i);
        if (resolve_cluster(b, ".cluster", p->cluster, &m[i].cluster) < 0)
            return -1;
        m[i].num = m[i].den = 100;
        if (p->runtime_fraction && p->runtime_fraction->default_value) {
            const Envoy__Type__V3__FractionalPercent *fp = p->runtime_fraction->default_value;
            if (!(m[i].den = fraction_den(fp->denominator)))
                return fail(b, ".runtime_fraction.default_value.denominator", "unknown value %d", (int)fp->denominator);
            m[i].num = fp->numerator;
        }
        path_pop(b, mk);
    }
    e->mirrors = m;
    e->nmirrors = ra->n_request_mirror_policies;
    return 0;
}

/* --- retry policies --- */

static int compile_header_list(struct build *b, const char *field, size_t n, HeaderMatcher *const *hm,
                               const struct route_header_match **out, size_t *nout)
{
    if (!n)
        return 0;
    struct route_header_match *o = balloc(b, n * sizeof *o);
    if (!o)
        return oom(b);
    for (size_t i = 0; i < n; i++) {
        size_t mark = path_push(b, "%s[%zu]", field, i);
        if (!hm[i])
            return fail(b, "", "missing");
        if (compile_header_match(b, hm[i], &o[i]) < 0)
            return -1;
        path_pop(b, mark);
    }
    *out = o;
    *nout = n;
    return 0;
}

/* RetryPolicy → struct retry_policy, validated as Envoy does (retry_on names, back-off
 * intervals, host predicates). */
static int compile_retry(struct build *b, const char *field, const RetryPolicy *rp, const struct retry_policy **out)
{
    size_t mark = path_push(b, "%s", field);
    struct retry_policy *p = balloc(b, sizeof *p);
    if (!p)
        return oom(b);
    const char *bad = NULL;
    size_t badlen = 0;
    const char *on = rp->retry_on ? rp->retry_on : "";
    if (retry_on_parse(on, strlen(on), true, true, true, &p->on, &bad, &badlen) < 0)
        return fail(b, ".retry_on", "unknown retry condition '%.*s'", (int)badlen, bad);
    p->num_retries = rp->num_retries ? rp->num_retries->value : 1;
    if (rp->per_try_timeout && duration_ms(b, ".per_try_timeout", rp->per_try_timeout, &p->per_try_timeout_ms) < 0)
        return -1;
    p->base_ms = RETRY_BASE_INTERVAL_MS;
    if (rp->retry_back_off) {
        const Envoy__Config__Route__V3__RetryPolicy__RetryBackOff *bo = rp->retry_back_off;
        if (!bo->base_interval)
            return fail(b, ".retry_back_off.base_interval", "missing");
        if (duration_ms(b, ".retry_back_off.base_interval", bo->base_interval, &p->base_ms) < 0)
            return -1;
        if (p->base_ms == 0)
            return fail(b, ".retry_back_off.base_interval", "must be at least 1ms");
    }
    p->max_ms = 10 * p->base_ms;
    if (rp->retry_back_off && rp->retry_back_off->max_interval) {
        if (duration_ms(b, ".retry_back_off.max_interval", rp->retry_back_off->max_interval, &p->max_ms) < 0)
            return -1;
        if (p->max_ms == 0)
            return fail(b, ".retry_back_off.max_interval", "must be at least 1ms");
        if (p->max_ms < p->base_ms)
            return fail(b, ".retry_back_off.max_interval", "must be greater than or equal to the base_interval");
    }
    for (size_t i = 0; i < rp->n_retry_host_predicate; i++) {
        const char *name = rp->retry_host_predicate[i] ? rp->retry_host_predicate[i]->name : "";
        if (strcmp(name, "envoy.retry_host_predicates.previous_hosts") != 0)
            return fail(b, "", "retry_host_predicate[%zu].name: '%s' is not supported by weft", i, name);
        p->previous_hosts = true;
    }
    if (rp->host_selection_retry_max_attempts < 0)
        return fail(b, ".host_selection_retry_max_attempts", "must not be negative");
    p->host_selection_attempts = rp->host_selection_retry_max_attempts == 0 ? 1
                                 : rp->host_selection_retry_max_attempts > 100 ? 100
                                 : (uint32_t)rp->host_selection_retry_max_attempts;
    if (rp->n_retriable_status_codes) {
        uint32_t *c = balloc(b, rp->n_retriable_status_codes * sizeof *c);
        if (!c)
            return oom(b);
        memcpy(c, rp->retriable_status_codes, rp->n_retriable_status_codes * sizeof *c);
        p->status_codes = c;
        p->nstatus = rp->n_retriable_status_codes;
    }
    if (compile_header_list(b, ".retriable_headers", rp->n_retriable_headers, rp->retriable_headers, &p->headers,
                            &p->nheaders) < 0 ||
        compile_header_list(b, ".retriable_request_headers", rp->n_retriable_request_headers,
                            rp->retriable_request_headers, &p->request_headers, &p->nrequest_headers) < 0)
        return -1;
    *out = p;
    path_pop(b, mark);
    return 0;
}

static int compile_route_action(struct build *b, const RouteAction *ra, struct route_entry *e)
{
    size_t mark = path_push(b, ".route");
    if (ra->cors)
        return fail(b, ".cors", "CORS policies are not supported yet");
    if (ra->n_request_mirror_policies && compile_mirrors(b, ra, e) < 0)
        return -1;
    switch (ra->cluster_specifier_case) {
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_CLUSTER:
        e->kind = ROUTE_CLUSTER;
        if (resolve_cluster(b, ".cluster", ra->cluster, &e->cluster) < 0 || !(e->cluster_name = dup(b, ra->cluster)))
            return -1;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_WEIGHTED_CLUSTERS:
        e->kind = ROUTE_WEIGHTED;
        e->cluster = -1;
        if (compile_weighted(b, ra->weighted_clusters, e) < 0)
            return -1;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_CLUSTER_HEADER:
        return fail(b, ".cluster_header", "not supported by weft");
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_CLUSTER_SPECIFIER_PLUGIN:
        return fail(b, ".cluster_specifier_plugin", "not supported by weft");
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_INLINE_CLUSTER_SPECIFIER_PLUGIN:
        return fail(b, ".inline_cluster_specifier_plugin", "not supported by weft");
    default:
        return fail(b, "", "one of cluster, cluster_header, weighted_clusters is required");
    }
    e->not_found_status =
        ra->cluster_not_found_response_code == ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_NOT_FOUND_RESPONSE_CODE__NOT_FOUND
            ? 404 : 503;
    int rewrites = set(ra->prefix_rewrite) + (ra->regex_rewrite != NULL) + (ra->path_rewrite_policy != NULL);
    if (rewrites > 1)
        return fail(b, "", "specify only one of prefix_rewrite, regex_rewrite or path_rewrite_policy");
    if (ra->path_rewrite_policy)
        return fail(b, ".path_rewrite_policy", "not supported by weft");
    if (set(ra->path_rewrite))
        return fail(b, ".path_rewrite", "not supported by weft");
    if (set(ra->prefix_rewrite)) {
        if (check_value(b, ".prefix_rewrite", ra->prefix_rewrite, strlen(ra->prefix_rewrite)) < 0 ||
            dup_n(b, ra->prefix_rewrite, strlen(ra->prefix_rewrite), false, &e->prefix_rewrite) < 0)
            return -1;
    }
    if (ra->regex_rewrite && compile_subst(b, ".regex_rewrite", ra->regex_rewrite, &e->rewrite_re, &e->rewrite_sub) < 0)
        return -1;
    switch (ra->host_rewrite_specifier_case) {
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HOST_REWRITE_SPECIFIER_HOST_REWRITE_LITERAL:
        if (set(ra->host_rewrite_literal)) {
            e->host_kind = RHOST_LITERAL;
            if (check_value(b, ".host_rewrite_literal", ra->host_rewrite_literal, strlen(ra->host_rewrite_literal)) < 0 ||
                !(e->host_literal = dup(b, ra->host_rewrite_literal)))
                return -1;
        }
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HOST_REWRITE_SPECIFIER_AUTO_HOST_REWRITE:
        if (ra->auto_host_rewrite && ra->auto_host_rewrite->value)
            e->host_kind = RHOST_AUTO;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HOST_REWRITE_SPECIFIER_HOST_REWRITE_HEADER:
        if (set(ra->host_rewrite_header)) {
            e->host_kind = RHOST_HEADER;
            if (check_name(b, ".host_rewrite_header", ra->host_rewrite_header) < 0 ||
                dup_n(b, ra->host_rewrite_header, strlen(ra->host_rewrite_header), true, &e->host_header) < 0)
                return -1;
        }
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HOST_REWRITE_SPECIFIER_HOST_REWRITE_PATH_REGEX:
        e->host_kind = RHOST_REGEX;
        if (compile_subst(b, ".host_rewrite_path_regex", ra->host_rewrite_path_regex, &e->host_re, &e->host_sub) < 0)
            return -1;
        break;
    default:
        break;
    }
    if (ra->timeout && duration_ms(b, ".timeout", ra->timeout, &e->timeout_ms) < 0)
        return -1;
    e->priority = ra->priority == 1 ? 1 : 0;
    /* grpc-timeout is honoured only when the route says so: max_stream_duration's
     * grpc_timeout_header_max, or the deprecated max_grpc_timeout (0 = no cap). */
    if (ra->max_stream_duration && ra->max_stream_duration->grpc_timeout_header_max) {
        if (duration_ms(b, ".max_stream_duration.grpc_timeout_header_max", ra->max_stream_duration->grpc_timeout_header_max,
                        &e->grpc_timeout_max_ms) < 0)
            return -1;
        e->grpc_timeout_set = true;
    } else if (ra->max_grpc_timeout) {
        if (duration_ms(b, ".max_grpc_timeout", ra->max_grpc_timeout, &e->grpc_timeout_max_ms) < 0)
            return -1;
        e->grpc_timeout_set = true;
    }
    if (ra->idle_timeout) {
        uint64_t ms = 0;
        if (duration_ms(b, ".idle_timeout", ra->idle_timeout, &ms) < 0)
            return -1;
        e->idle_timeout_ms = (int64_t)ms;
    }
    if (compile_hash(b, ra, e) < 0)
        return -1;
    if (ra->retry_policy_typed_config)
        return fail(b, ".retry_policy_typed_config", "not supported by weft");
    if (ra->retry_policy && compile_retry(b, ".retry_policy", ra->retry_policy, &e->retry) < 0)
        return -1;
    path_pop(b, mark);
    return 0;
}

static int redirect_status(int code)
{
    switch (code) {
    case ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__REDIRECT_RESPONSE_CODE__MOVED_PERMANENTLY:
        return 301;
    case ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__REDIRECT_RESPONSE_CODE__FOUND:
        return 302;
    case ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__REDIRECT_RESPONSE_CODE__SEE_OTHER:
        return 303;
    case ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__REDIRECT_RESPONSE_CODE__TEMPORARY_REDIRECT:
        return 307;
    case ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__REDIRECT_RESPONSE_CODE__PERMANENT_REDIRECT:
        return 308;
    }
    return 0;
}

static int redirect_str(struct build *b, const char *field, const char *s, const char **out)
{
    if (!set(s))
        return 0;
    if (check_value(b, field, s, strlen(s)) < 0)
        return -1;
    return (*out = dup(b, s)) ? 0 : -1;
}

static int compile_redirect(struct build *b, const RedirectAction *ra, struct route_entry *e)
{
    size_t mark = path_push(b, ".redirect");
    struct route_redirect_cfg *r = balloc(b, sizeof *r);
    if (!r)
        return oom(b);
    e->kind = ROUTE_REDIRECT;
    e->cluster = -1;
    r->status = redirect_status(ra->response_code);
    if (!r->status)
        return fail(b, ".response_code", "unknown value %d", (int)ra->response_code);
    if (ra->scheme_rewrite_specifier_case == ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__SCHEME_REWRITE_SPECIFIER_HTTPS_REDIRECT)
        r->https = ra->https_redirect;
    else if (ra->scheme_rewrite_specifier_case == ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__SCHEME_REWRITE_SPECIFIER_SCHEME_REDIRECT &&
             redirect_str(b, ".scheme_redirect", ra->scheme_redirect, &r->scheme) < 0)
        return -1;
    if (redirect_str(b, ".host_redirect", ra->host_redirect, &r->host) < 0)
        return -1;
    if (ra->port_redirect > 65535)
        return fail(b, ".port_redirect", "%u is not a port", ra->port_redirect);
    if (ra->port_redirect)
        snprintf(r->port, sizeof r->port, ":%u", ra->port_redirect);
    switch (ra->path_rewrite_specifier_case) {
    case ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__PATH_REWRITE_SPECIFIER_PATH_REDIRECT:
        if (redirect_str(b, ".path_redirect", ra->path_redirect, &r->path) < 0)
            return -1;
        r->path_has_query = r->path && strchr(r->path, '?');
        break;
    case ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__PATH_REWRITE_SPECIFIER_PREFIX_REWRITE:
        if (set(ra->prefix_rewrite) &&
            (check_value(b, ".prefix_rewrite", ra->prefix_rewrite, strlen(ra->prefix_rewrite)) < 0 ||
             dup_n(b, ra->prefix_rewrite, strlen(ra->prefix_rewrite), false, &r->prefix_rewrite) < 0))
            return -1;
        break;
    case ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__PATH_REWRITE_SPECIFIER_REGEX_REWRITE:
        if (compile_subst(b, ".regex_rewrite", ra->regex_rewrite, &r->re, &r->sub) < 0)
            return -1;
        break;
    default:
        break;
    }
    r->strip_query = ra->strip_query;
    e->redirect = r;
    path_pop(b, mark);
    return 0;
}

static int compile_direct(struct build *b, const DirectResponseAction *d, struct route_entry *e)
{
    size_t mark = path_push(b, ".direct_response");
    e->kind = ROUTE_DIRECT;
    e->cluster = -1;
    if (d->status < 100 || d->status > 599)
        return fail(b, ".status", "must be in [100, 599], got %u", d->status);
    e->direct_status = (int)d->status;
    if (d->body && read_body(b, d->body, &e->direct_body) < 0)
        return -1;
    path_pop(b, mark);
    return 0;
}

static int compile_route(struct build *b, const Route *r, const struct route_vhost *vh, struct route_entry *e)
{
    e->vhost = vh;
    e->retry = vh->retry; /* the virtual host's policy unless the route has its own */
    e->buffer_limit = r->per_request_buffer_limit_bytes ? r->per_request_buffer_limit_bytes->value : vh->buffer_limit;
    e->timeout_ms = ROUTE_TIMEOUT_DEFAULT_MS;
    e->idle_timeout_ms = -1;
    e->cluster = -1;
    if (!(e->name = dup(b, r->name)))
        return -1;
    if (hf_compile_per_route(b, (void *const *)r->typed_per_filter_config, r->n_typed_per_filter_config, &e->hf_own) < 0)
        return -1;
    if (r->action_case != ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION__NOT_SET && !r->route)
        return fail(b, "", "action is missing its message");   /* union: route/redirect/... alias */
    if (!r->match)
        return fail(b, ".match", "missing");
    if (compile_match(b, r->match, e) < 0)
        return -1;
    switch (r->action_case) {
    case ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_ROUTE:
        if (compile_route_action(b, r->route, e) < 0)
            return -1;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_REDIRECT:
        if (compile_redirect(b, r->redirect, e) < 0)
            return -1;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_DIRECT_RESPONSE:
        if (compile_direct(b, r->direct_response, e) < 0)
            return -1;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_FILTER_ACTION:
        return fail(b, ".filter_action", "not supported by weft");
    case ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_NON_FORWARDING_ACTION:
        return fail(b, ".non_forwarding_action", "not supported by weft");
    default:
        return fail(b, "", "one of route, redirect, direct_response is required");
    }
    if (MUTATIONS(b, r, request, &e->req) < 0 || MUTATIONS(b, r, response, &e->resp) < 0)
        return -1;
    return 0;
}

/* --- virtual hosts and domains --- */

static int compile_vhost(struct build *b, const VirtualHost *v, const struct route_table *t, struct route_vhost *vh)
{
    vh->table = t;
    if (!set(v->name))
        return fail(b, ".name", "must not be empty");
    if (!(vh->name = dup(b, v->name)))
        return -1;
    if (v->n_domains == 0)
        return fail(b, ".domains", "at least one domain is required");
    if (v->cors)
        return fail(b, ".cors", "CORS policies are not supported yet");
    if (hf_compile_per_route(b, (void *const *)v->typed_per_filter_config, v->n_typed_per_filter_config, &vh->hf_own) < 0)
        return -1;
    switch (v->require_tls) {
    case ENVOY__CONFIG__ROUTE__V3__VIRTUAL_HOST__TLS_REQUIREMENT_TYPE__NONE:
        vh->require_tls = ROUTE_TLS_NONE;
        break;
    case ENVOY__CONFIG__ROUTE__V3__VIRTUAL_HOST__TLS_REQUIREMENT_TYPE__EXTERNAL_ONLY:
        vh->require_tls = ROUTE_TLS_EXTERNAL_ONLY;
        break;
    case ENVOY__CONFIG__ROUTE__V3__VIRTUAL_HOST__TLS_REQUIREMENT_TYPE__ALL:
        vh->require_tls = ROUTE_TLS_ALL;
        break;
    default:
        return fail(b, ".require_tls", "unknown value %d", (int)v->require_tls);
    }
    /* The built-in require_tls route: 301 to https://<authority><path>. */
    struct route_redirect_cfg *ssl = balloc(b, sizeof *ssl);
    if (!ssl)
        return oom(b);
    ssl->ssl_only = true;
    ssl->status = 301;
    vh->ssl_redirect.kind = ROUTE_REDIRECT;
    vh->ssl_redirect.vhost = vh;
    vh->ssl_redirect.cluster = -1;
    vh->ssl_redirect.name = "";
    vh->ssl_redirect.redirect = ssl;
    vh->ssl_redirect.timeout_ms = ROUTE_TIMEOUT_DEFAULT_MS;
    vh->ssl_redirect.idle_timeout_ms = -1;
    vh->attempt_count_request = v->include_request_attempt_count;
    vh->attempt_count_response = v->include_attempt_count_in_response;
    vh->buffer_limit = v->per_request_buffer_limit_bytes ? v->per_request_buffer_limit_bytes->value : 0;
    if (v->retry_policy_typed_config)
        return fail(b, ".retry_policy_typed_config", "not supported by weft");
    if (v->retry_policy && compile_retry(b, ".retry_policy", v->retry_policy, &vh->retry) < 0)
        return -1;
    if (MUTATIONS(b, v, request, &vh->req) < 0 || MUTATIONS(b, v, response, &vh->resp) < 0)
        return -1;
    if (v->n_routes) {
        struct route_entry *r = balloc(b, v->n_routes * sizeof *r);
        if (!r)
            return oom(b);
        for (size_t i = 0; i < v->n_routes; i++) {
            size_t mark = path_push(b, ".routes[%zu]", i);
            if (compile_route(b, v->routes[i], vh, &r[i]) < 0)
                return -1;
            path_pop(b, mark);
        }
        vh->routes = r;
        vh->nroutes = v->n_routes;
    }
    return 0;
}

static int cmp_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Sorted distinct lengths (longest first) of the wildcard domains of one kind. */
static int wildcard_lens(struct build *b, const struct route_domain *d, size_t n, uint8_t kind,
                         const uint32_t **out, size_t *nout)
{
    uint32_t *l = balloc(b, (n ? n : 1) * sizeof *l);
    size_t k = 0;
    if (!l)
        return oom(b);
    for (size_t i = 0; i < n; i++)
        if (d[i].kind == kind)
            l[k++] = (uint32_t)d[i].n;
    qsort(l, k, sizeof *l, cmp_desc);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || l[u - 1] != l[i])
            l[u++] = l[i];
    *out = l;
    *nout = u;
    return 0;
}

/* Fills the open-addressing domain table; a domain already present in any virtual host is an
 * error (Envoy: domains must be unique across the route config). */
static int index_domains(struct build *b, const RouteConfiguration *rc, struct route_table *t, struct route_vhost *vhs)
{
    size_t total = 0;
    for (size_t i = 0; i < rc->n_virtual_hosts; i++)
        total += rc->virtual_hosts[i]->n_domains;
    struct route_domain *d = balloc(b, (total ? total : 1) * sizeof *d);
    if (!d)
        return oom(b);
    size_t nslots = 8;
    while (nslots < 2 * total)
        nslots *= 2;
    const struct route_domain **slots = balloc(b, nslots * sizeof *slots);
    if (!slots)
        return oom(b);
    size_t nd = 0;
    const char *default_owner = NULL;
    for (size_t i = 0; i < rc->n_virtual_hosts; i++) {
        const VirtualHost *v = rc->virtual_hosts[i];
        for (size_t j = 0; j < v->n_domains; j++) {
            const char *dom = v->domains[j];
            size_t n = strlen(dom);
            size_t mark = path_push(b, ".virtual_hosts[%zu].domains[%zu]", i, j);
            if (n == 0)
                return fail(b, "", "must not be empty");
            if (check_value(b, "", dom, n) < 0)
                return -1;
            if (strcmp(dom, "*") == 0) {
                if (t->default_vhost)
                    return fail(b, "", "only a single wildcard domain '*' is permitted (also in virtual host '%s')",
                                default_owner);
                t->default_vhost = &vhs[i];
                default_owner = vhs[i].name;
                path_pop(b, mark);
                continue;
            }
            struct route_domain *x = &d[nd];
            struct h1_str s;
            x->kind = dom[0] == '*' ? RDOM_SUFFIX : dom[n - 1] == '*' ? RDOM_PREFIX : RDOM_EXACT;
            if (x->kind == RDOM_SUFFIX)
                dom++;
            if (x->kind != RDOM_EXACT)
                n--;
            if (dup_n(b, dom, n, true, &s) < 0)
                return -1;
            x->s = s.p;
            x->n = s.n;
            x->vhost = &vhs[i];
            x->hash = route_domain_hash(x->kind, x->s, x->n);
            size_t mask = nslots - 1, k = x->hash & mask;
            for (; slots[k]; k = (k + 1) & mask) {
                const struct route_domain *y = slots[k];
                if (y->kind == x->kind && y->n == x->n && memcmp(y->s, x->s, x->n) == 0)
                    return fail(b, "", "duplicate domain '%s' (also in virtual host '%s')", v->domains[j],
                                y->vhost->name);
            }
            slots[k] = x;
            nd++;
            path_pop(b, mark);
        }
    }
    if (nd) {
        t->slots = slots;
        t->nslots = nslots;
    }
    if (wildcard_lens(b, d, nd, RDOM_SUFFIX, &t->suffix_lens, &t->nsuffix_lens) < 0 ||
        wildcard_lens(b, d, nd, RDOM_PREFIX, &t->prefix_lens, &t->nprefix_lens) < 0)
        return -1;
    return 0;
}

static int compile_table(struct build *b, const RouteConfiguration *rc, struct route_table *t)
{
    if (rc->vhds)
        return fail(b, "vhds", "not supported by weft");
    if (rc->n_cluster_specifier_plugins)
        return fail(b, "cluster_specifier_plugins", "not supported by weft");
    if (!(t->name = dup(b, rc->name)))
        return -1;
    t->ignore_port = rc->ignore_port_in_host_matching;
    t->most_specific_wins = rc->most_specific_header_mutations_wins;
    if (set(rc->alternate_header_for_host_matching))
        return fail(b, "alternate_header_for_host_matching", "not supported by weft");
    t->ignore_path_params = rc->ignore_path_parameters_in_path_matching;
    if (MUTATIONS(b, rc, request, &t->req) < 0 || MUTATIONS(b, rc, response, &t->resp) < 0)
        return -1;
    if (rc->n_internal_only_headers) {
        struct h1_str *h = balloc(b, rc->n_internal_only_headers * sizeof *h);
        if (!h)
            return oom(b);
        for (size_t i = 0; i < rc->n_internal_only_headers; i++) {
            size_t mark = path_push(b, "internal_only_headers[%zu]", i);
            const char *s = rc->internal_only_headers[i];
            if (check_name(b, "", s) < 0 || dup_n(b, s, strlen(s), true, &h[i]) < 0)
                return -1;
            path_pop(b, mark);
        }
        t->internal_only = h;
        t->ninternal_only = rc->n_internal_only_headers;
    }
    struct route_vhost *vhs = NULL;
    if (rc->n_virtual_hosts && !(vhs = balloc(b, rc->n_virtual_hosts * sizeof *vhs)))
        return oom(b);
    for (size_t i = 0; i < rc->n_virtual_hosts; i++) {
        size_t mark = path_push(b, "virtual_hosts[%zu]", i);
        if (compile_vhost(b, rc->virtual_hosts[i], t, &vhs[i]) < 0)
            return -1;
        path_pop(b, mark);
    }
    t->vhosts = vhs;
    t->nvhosts = rc->n_virtual_hosts;
    if (index_domains(b, rc, t, vhs) < 0)
        return -1;
    /* HTTP filters: the table's own per-filter configs, then each route's resolved view. */
    size_t mark = path_push(b, "typed_per_filter_config");
    if (hf_compile_per_route(b, (void *const *)rc->typed_per_filter_config, rc->n_typed_per_filter_config, &t->hf_own) < 0)
        return -1;
    path_pop(b, mark);
    for (size_t i = 0; i < t->nvhosts; i++)
        for (size_t j = 0; j < vhs[i].nroutes; j++)
            if (hf_resolve_route(b, b->chain, (struct route_entry *)&vhs[i].routes[j]) < 0)
                return -1;
    return 0;
}

struct route_table *route_table_build(const struct Envoy__Config__Route__V3__RouteConfiguration *rc,
                                      route_cluster_lookup lookup, void *lookup_ctx, char *err, size_t errlen)
{
    return route_table_build_hcm(rc, lookup, lookup_ctx, NULL, NULL, 0, err, errlen);
}

struct route_table *route_table_build_hcm(const struct Envoy__Config__Route__V3__RouteConfiguration *rc,
                                          route_cluster_lookup lookup, void *lookup_ctx, const char *hcm_stat_prefix,
                                          const struct hf_spec *filters, size_t nfilters, char *err, size_t errlen)
{
    struct build b = { .lookup = lookup, .lookup_ctx = lookup_ctx, .err = err, .errlen = errlen,
                       .hcm_prefix = hcm_stat_prefix ? hcm_stat_prefix : "" };
    if (err && errlen)
        err[0] = '\0';
    if (!rc) {
        fail(&b, "", "missing route configuration");
        return NULL;
    }
    b.validate = !(rc->validate_clusters && !rc->validate_clusters->value);
    b.max_body = rc->max_direct_response_body_size_bytes ? rc->max_direct_response_body_size_bytes->value
                                                         : ROUTE_DIRECT_BODY_DEFAULT;
    struct route_table *t = balloc(&b, sizeof *t);
    if (t && nfilters && hf_compile_chain(&b, filters, nfilters, &t->chain) < 0) {
        build_discard(&b);
        return NULL;
    }
    if (t)
        b.chain = t->chain;
    if (!t || compile_table(&b, rc, t) < 0) {
        if (!t)
            oom(&b);
        build_discard(&b);
        return NULL;
    }
    t->codes = (struct pcre2_real_code_8 **)b.codes;
    t->ncodes = b.ncodes;
    t->formats = b.formats;
    t->nformats = b.nformats;
    t->arena = b.arena;
    return t;
}

void route_table_free(struct route_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ncodes; i++)
        pcre2_code_free((pcre2_code *)t->codes[i]);
    free(t->codes);
    for (size_t i = 0; i < t->nformats; i++)
        subst_format_free(t->formats[i]);
    free(t->formats);
    arena_free(t->arena);   /* t itself lives in the arena */
}

/* --- for per-route HTTP filter configs (route_build_internal.h) --- */

void *rb_alloc(struct build *b, size_t n)
{
    void *p = balloc(b, n);
    if (!p)
        oom(b);
    return p;
}

const char *rb_dup(struct build *b, const char *s) { return dup(b, s); }

int rb_fail(struct build *b, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(b, field, fmt, ap);
    va_end(ap);
    return -1;
}

size_t rb_path_push(struct build *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t mark = path_vpush(b, fmt, ap);
    va_end(ap);
    return mark;
}

void rb_path_pop(struct build *b, size_t mark) { path_pop(b, mark); }
int rb_header_match(struct build *b, const HeaderMatcher *m, struct route_header_match *o)
{
    return compile_header_match(b, m, o);
}
int rb_header_add(struct build *b, const HeaderValueOption *h, struct route_header_add *o)
{
    return compile_add(b, h, o);
}
uint32_t rb_fraction_den(int d) { return fraction_den(d); }
const char *rb_hcm_stat_prefix(const struct build *b) { return b->hcm_prefix; }
const struct hf_chain *rb_chain(const struct build *b) { return b->chain; }
