/* Per-request routing: virtual host lookup, route matching, cluster picking, path and host
 * rewrites, redirects, header-mutation lists and hash policies. Everything here reads an
 * immutable route_table and the caller's request; nothing allocates (PCRE2's interpreter may
 * grow its frame vector inside the scratch's match data on a first deep match; JIT-compiled
 * patterns never do). The compiler side is route_build.c. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/route.h"

struct route_scratch {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    char join[ROUTE_JOIN_MAX];
};

struct route_scratch *route_scratch_new(void)
{
    struct route_scratch *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->md = pcre2_match_data_create(ROUTE_REGEX_GROUPS, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    if (!s->md || !s->mctx) {
        route_scratch_free(s);
        return NULL;
    }
    pcre2_set_match_limit(s->mctx, ROUTE_REGEX_MATCH_LIMIT);
    pcre2_set_heap_limit(s->mctx, ROUTE_REGEX_HEAP_KIB);
    /* No JIT support in this PCRE2 build leaves jit NULL: the interpreter runs instead. */
    s->jit = pcre2_jit_stack_create(32 * 1024, ROUTE_JIT_STACK_MAX, NULL);
    if (s->jit)
        pcre2_jit_stack_assign(s->mctx, NULL, s->jit);
    return s;
}

void route_scratch_free(struct route_scratch *s)
{
    if (!s)
        return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit);
    free(s);
}

/* --- byte-string helpers --- */

static inline unsigned char lc(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static bool bytes_eq(const char *a, const char *b, size_t n, bool icase)
{
    if (!icase)
        return n == 0 || memcmp(a, b, n) == 0;
    for (size_t i = 0; i < n; i++)
        if (lc((unsigned char)a[i]) != lc((unsigned char)b[i]))
            return false;
    return true;
}

static bool str_is(struct h1_str s, const char *lit, bool icase)
{
    size_t n = strlen(lit);
    return s.n == n && bytes_eq(s.p, lit, n, icase);
}

static bool contains(const char *h, size_t hn, const char *nd, size_t nn, bool icase)
{
    if (nn == 0)
        return true;
    for (size_t i = 0; i + nn <= hn; i++)
        if (bytes_eq(h + i, nd, nn, icase))
            return true;
    return false;
}

/* Envoy's removeQueryAndFragment: the path up to the first '?' or '#'. */
static size_t path_only_len(struct h1_str p)
{
    for (size_t i = 0; i < p.n; i++)
        if (p.p[i] == '?' || p.p[i] == '#')
            return i;
    return p.n;
}

static const char *nz(const char *p)
{
    return p ? p : "";
}

uint64_t route_domain_hash(uint8_t kind, const char *s, size_t n)
{
    /* FNV-1a over the lower-cased bytes, seeded by the kind, then a final avalanche so that
     * the low bits used for the slot index depend on every byte. */
    uint64_t h = 0xcbf29ce484222325ull ^ ((uint64_t)kind * 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < n; i++) {
        h ^= lc((unsigned char)s[i]);
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* --- regex --- */

static bool regex_full(const struct pcre2_real_code_8 *re, const char *p, size_t n, struct route_scratch *s)
{
    /* Compiled with PCRE2_ANCHORED|PCRE2_ENDANCHORED: a match is a full match. Limits hit or
     * any other error count as no match. */
    int rc = pcre2_match((const pcre2_code *)re, (PCRE2_SPTR)(p ? p : ""), n, 0, 0, s->md, s->mctx);
    return rc >= 0;
}

/* Substitutes every match of re in p[0..n) by sub (PCRE2 syntax) into out; returns the length
 * or -1 (no room, limit hit). */
static long regex_subst(const struct pcre2_real_code_8 *re, const char *sub, const char *p, size_t n,
                        struct route_scratch *s, char *out, size_t cap)
{
    if (cap == 0)
        return -1;
    PCRE2_SIZE outlen = cap;
    int rc = pcre2_substitute((const pcre2_code *)re, (PCRE2_SPTR)(p ? p : ""), n, 0,
                              PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_UNSET_EMPTY, s->md, s->mctx,
                              (PCRE2_SPTR)sub, PCRE2_ZERO_TERMINATED, (PCRE2_UCHAR *)out, &outlen);
    if (rc < 0)
        return -1;
    return (long)outlen;
}

/* --- request lookups --- */

/* The request-line fields Envoy keeps as pseudo headers. Returns false for other ':' names. */
static bool pseudo_header(const struct route_request *rq, struct h1_str name, struct h1_str *v)
{
    if (str_is(name, ":authority", true))
        *v = rq->authority;
    else if (str_is(name, ":path", true))
        *v = rq->path;
    else if (str_is(name, ":method", true))
        *v = rq->method;
    else if (str_is(name, ":scheme", true))
        *v = rq->scheme;
    else
        return false;
    return v->p != NULL;
}

/* The first value of a header (no joining). Returns whether it is present. */
static bool header_first(const struct route_request *rq, struct h1_str name, struct h1_str *v)
{
    if (name.n && name.p[0] == ':')
        return pseudo_header(rq, name, v);
    for (size_t i = 0; i < rq->nheaders; i++) {
        const struct h1_header *h = &rq->headers[i];
        if (h->name.n == name.n && bytes_eq(h->name.p, name.p, name.n, true)) {
            *v = h->value;
            return true;
        }
    }
    return false;
}

/* All values of a header, as Envoy's getAllOfHeaderAsString: one value as is, several joined
 * with ',' in s->join. Returns false when absent or when the join does not fit. */
static bool header_all(const struct route_request *rq, struct h1_str name, struct route_scratch *s,
                       struct h1_str *v)
{
    if (name.n && name.p[0] == ':')
        return pseudo_header(rq, name, v);
    size_t count = 0, len = 0;
    for (size_t i = 0; i < rq->nheaders; i++) {
        const struct h1_header *h = &rq->headers[i];
        if (h->name.n != name.n || !bytes_eq(h->name.p, name.p, name.n, true))
            continue;
        if (count == 0) {
            *v = h->value;
        } else {
            if (count == 1) {
                if (v->n > sizeof s->join)
                    return false;
                if (v->n)
                    memcpy(s->join, v->p, v->n);
                len = v->n;
            }
            if (len + 1 + h->value.n > sizeof s->join)
                return false;
            s->join[len++] = ',';
            if (h->value.n)
                memcpy(s->join + len, h->value.p, h->value.n);
            len += h->value.n;
        }
        count++;
    }
    if (count > 1) {
        v->p = s->join;
        v->n = len;
    }
    return count > 0;
}

/* The first raw value of query parameter `name` (Envoy's parseQueryString + getFirstValue:
 * split on '&', a parameter without '=' has the value ""). */
static bool query_first(struct h1_str path, struct h1_str name, struct h1_str *v)
{
    const char *q = path.p ? memchr(path.p, '?', path.n) : NULL;
    if (!q)
        return false;
    const char *end = path.p + path.n;
    const char *p = q + 1;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(seg_end - p));
        const char *key_end = eq ? eq : seg_end;
        if ((size_t)(key_end - p) == name.n && bytes_eq(p, name.p, name.n, false)) {
            v->p = eq ? eq + 1 : seg_end;
            v->n = eq ? (size_t)(seg_end - eq - 1) : 0;
            return true;
        }
        p = seg_end + 1;
    }
    return false;
}

/* The value of cookie `name` from the Cookie headers (first occurrence), surrounding double
 * quotes removed, as Envoy's parseCookieValue. */
static bool cookie_value(const struct route_request *rq, struct h1_str name, struct h1_str *v)
{
    for (size_t i = 0; i < rq->nheaders; i++) {
        const struct h1_header *h = &rq->headers[i];
        if (!str_is(h->name, "cookie", true))
            continue;
        const char *p = h->value.p, *end = p + h->value.n;
        while (p && p < end) {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *seg_end = semi ? semi : end;
            while (p < seg_end && (*p == ' ' || *p == '\t'))
                p++;
            const char *eq = memchr(p, '=', (size_t)(seg_end - p));
            if (eq && (size_t)(eq - p) == name.n && bytes_eq(p, name.p, name.n, false)) {
                const char *vs = eq + 1;
                size_t vn = (size_t)(seg_end - vs);
                if (vn >= 2 && vs[0] == '"' && vs[vn - 1] == '"') {
                    vs++;
                    vn -= 2;
                }
                v->p = vs;
                v->n = vn;
                return true;
            }
            p = seg_end + 1;
        }
    }
    return false;
}

/* --- matching --- */

static bool string_match(const struct route_string_match *m, struct h1_str v, struct route_scratch *s)
{
    switch (m->kind) {
    case RSM_EXACT:
        return v.n == m->s.n && bytes_eq(v.p, m->s.p, v.n, m->ignore_case);
    case RSM_PREFIX:
        return v.n >= m->s.n && bytes_eq(v.p, m->s.p, m->s.n, m->ignore_case);
    case RSM_SUFFIX:
        return v.n >= m->s.n && bytes_eq(v.p + v.n - m->s.n, m->s.p, m->s.n, m->ignore_case);
    case RSM_CONTAINS:
        return contains(v.p, v.n, m->s.p, m->s.n, m->ignore_case);
    case RSM_REGEX:
        return regex_full(m->re, v.p, v.n, s);
    }
    return false;
}

/* absl::SimpleAtoi for int64: optional surrounding whitespace, optional sign, digits. */
static bool parse_i64(struct h1_str v, int64_t *out)
{
    size_t i = 0, n = v.n;
    while (i < n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == '\n' || v.p[i] == '\r' ||
                     v.p[i] == '\v' || v.p[i] == '\f'))
        i++;
    while (n > i && (v.p[n - 1] == ' ' || v.p[n - 1] == '\t' || v.p[n - 1] == '\n' ||
                     v.p[n - 1] == '\r' || v.p[n - 1] == '\v' || v.p[n - 1] == '\f'))
        n--;
    bool neg = false;
    if (i < n && (v.p[i] == '+' || v.p[i] == '-'))
        neg = v.p[i++] == '-';
    if (i == n)
        return false;
    uint64_t acc = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return false;
        unsigned d = (unsigned)(v.p[i] - '0');
        if (acc > (lim - d) / 10)
            return false;
        acc = acc * 10 + d;
    }
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return true;
}

/* Envoy's HeaderData::matchesHeaders, including its rules for a missing header. */
static bool header_matches(const struct route_header_match *m, const struct route_request *rq,
                           struct route_scratch *s)
{
    struct h1_str v = { "", 0 };
    if (!header_all(rq, m->name, s, &v)) {
        if (!m->missing_as_empty) {
            if (m->invert)
                return m->kind == RHM_PRESENT && m->present;
            return m->kind == RHM_PRESENT && !m->present;
        }
        v.p = "";
        v.n = 0;
    }
    bool ok = false;
    switch (m->kind) {
    case RHM_PRESENT:
        ok = m->present;
        break;
    case RHM_STRING:
        ok = string_match(&m->sm, v, s);
        break;
    case RHM_RANGE: {
        int64_t x;
        ok = parse_i64(v, &x) && x >= m->start && x < m->end;
        break;
    }
    }
    return ok != m->invert;
}

bool route_headers_match(const struct route_header_match *m, size_t n, const struct route_request *rq,
                         struct route_scratch *s)
{
    for (size_t i = 0; i < n; i++)
        if (!header_matches(&m[i], rq, s))
            return false;
    return true;
}

bool route_header_list_match(const struct route_header_match *m, size_t n, const struct h1_header *h, size_t nh,
                             struct route_scratch *s)
{
    struct route_request rq = {.headers = h, .nheaders = nh};
    return route_headers_match(m, n, &rq, s);
}

static bool is_grpc(const struct route_request *rq)
{
    struct h1_str ct;
    static const struct h1_str name = { "content-type", 12 };
    if (!header_first(rq, name, &ct) || ct.n < 16 || memcmp(ct.p, "application/grpc", 16) != 0)
        return false;
    return ct.n == 16 || ct.p[16] == '+';
}

static bool entry_matches(const struct route_entry *e, const struct route_request *rq, uint64_t random,
                          struct route_scratch *s)
{
    struct h1_str p = rq->path;
    if (e->path_kind == RPATH_CONNECT) {
        if (!str_is(rq->method, "CONNECT", false))
            return false;
    } else {
        if (p.n == 0)   /* CONNECT has no path: only connect_matcher routes apply (Envoy) */
            return false;
        size_t pl = path_only_len(p);
        if (e->vhost->table->ignore_path_params) {
            const char *semi = memchr(p.p, ';', pl);
            if (semi)
                pl = (size_t)(semi - p.p);
        }
        bool icase = !e->case_sensitive;
        switch (e->path_kind) {
        case RPATH_PREFIX:
            if (pl < e->path.n || !bytes_eq(p.p, e->path.p, e->path.n, icase))
                return false;
            break;
        case RPATH_EXACT:
            if (pl != e->path.n || !bytes_eq(p.p, e->path.p, pl, icase))
                return false;
            break;
        case RPATH_SEP_PREFIX:
            if (pl < e->path.n || !bytes_eq(p.p, e->path.p, e->path.n, icase) ||
                (pl != e->path.n && p.p[e->path.n] != '/'))
                return false;
            break;
        case RPATH_REGEX:
            if (!regex_full(e->path_re, p.p, pl, s))
                return false;
            break;
        }
    }
    if (e->has_fraction && e->frac_num < e->frac_den && random % e->frac_den >= e->frac_num)
        return false;
    if (e->grpc && !is_grpc(rq))
        return false;
    for (size_t i = 0; i < e->nheaders; i++)
        if (!header_matches(&e->headers[i], rq, s))
            return false;
    for (size_t i = 0; i < e->nqueries; i++) {
        const struct route_query_match *q = &e->queries[i];
        struct h1_str v;
        if (!query_first(p, q->name, &v))
            return false;
        if (!q->present_only && !string_match(&q->sm, v, s))
            return false;
    }
    for (size_t i = 0; i < e->ncookies; i++) {
        const struct route_cookie_match *c = &e->cookies[i];
        struct h1_str v;
        bool ok = cookie_value(rq, c->name, &v) && string_match(&c->sm, v, s);
        if (ok == c->invert)
            return false;
    }
    return true;
}

/* --- virtual hosts --- */

static const struct route_vhost *domain_get(const struct route_table *t, uint8_t kind, const char *s, size_t n)
{
    uint64_t h = route_domain_hash(kind, s, n);
    size_t mask = t->nslots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const struct route_domain *d = t->slots[i];
        if (!d)
            return NULL;
        if (d->hash == h && d->kind == kind && d->n == n && bytes_eq(d->s, s, n, true))
            return d->vhost;
    }
}

/* Exact, then longest suffix wildcard, then longest prefix wildcard (the '*' covers at least
 * one character, so a wildcard part as long as the host never matches). */
static const struct route_vhost *domain_search(const struct route_table *t, struct h1_str host)
{
    const struct route_vhost *v;
    if (t->nslots == 0)
        return NULL;
    if ((v = domain_get(t, RDOM_EXACT, host.p, host.n)))
        return v;
    for (size_t i = 0; i < t->nsuffix_lens; i++) {
        size_t l = t->suffix_lens[i];
        if (l < host.n && (v = domain_get(t, RDOM_SUFFIX, host.p + host.n - l, l)))
            return v;
    }
    for (size_t i = 0; i < t->nprefix_lens; i++) {
        size_t l = t->prefix_lens[i];
        if (l < host.n && (v = domain_get(t, RDOM_PREFIX, host.p, l)))
            return v;
    }
    return NULL;
}

/* Envoy's getPortStart: the ':' before an all-digit port, not inside an IPv6 literal. Returns
 * host.n when there is no port. */
static size_t port_start(struct h1_str host)
{
    size_t colon = host.n;
    for (size_t i = host.n; i > 0; i--)
        if (host.p[i - 1] == ':') {
            colon = i - 1;
            break;
        }
    if (colon == host.n || colon + 1 == host.n)
        return host.n;
    for (size_t i = colon + 1; i < host.n; i++)
        if (host.p[i] < '0' || host.p[i] > '9')
            return host.n;   /* also covers "[::1]" (the ']' follows the last ':') */
    return colon;
}

const struct route_vhost *route_find_vhost(const struct route_table *t, struct h1_str host)
{
    if (t->nslots == 0)
        return t->default_vhost;   /* Envoy's fast path: only "*" (or nothing) */
    if (!host.p)
        return NULL;
    if (t->ignore_port)
        host.n = port_start(host);
    const struct route_vhost *v = domain_search(t, host);
    if (!v)
        v = t->default_vhost;
    if (!v) {
        size_t ps = port_start(host);
        if (ps < host.n)
            v = domain_search(t, (struct h1_str){ host.p, ps });
    }
    return v;
}

static bool scheme_is_https(struct h1_str scheme)
{
    return str_is(scheme, "https", true);
}

const struct route_entry *route_select(const struct route_table *t, const struct route_request *rq,
                                       uint64_t random, struct route_scratch *s)
{
    const struct route_vhost *vh = route_find_vhost(t, rq->authority);
    if (!vh)
        return NULL;
    if (vh->require_tls != ROUTE_TLS_NONE && !scheme_is_https(rq->scheme)) {
        struct h1_str v;
        static const struct h1_str internal = { "x-envoy-internal", 16 };
        if (vh->require_tls == ROUTE_TLS_ALL || !header_first(rq, internal, &v) || !str_is(v, "true", false))
            return &vh->ssl_redirect;
    }
    for (size_t i = 0; i < vh->nroutes; i++)
        if (entry_matches(&vh->routes[i], rq, random, s))
            return &vh->routes[i];
    return NULL;
}

/* --- accessors --- */

enum route_action_kind route_kind(const struct route_entry *e)
{
    return e->kind;
}

const char *route_name(const struct route_entry *e)
{
    return nz(e->name);
}

const char *route_vhost_name(const struct route_entry *e)
{
    return nz(e->vhost ? e->vhost->name : NULL);
}

int route_weight_index(const struct route_entry *e, uint64_t random)
{
    if (e->kind != ROUTE_WEIGHTED || e->nweights == 0 || e->total_weight == 0)
        return -1;
    uint64_t v = random % e->total_weight, end = 0;
    for (size_t i = 0; i < e->nweights; i++) {
        end += e->weights[i].weight;
        if (v < end)
            return (int)i;
    }
    return (int)e->nweights - 1;
}

int route_cluster(const struct route_entry *e, uint64_t random)
{
    if (e->kind == ROUTE_CLUSTER)
        return e->cluster;
    int w = route_weight_index(e, random);
    return w < 0 ? -1 : e->weights[w].cluster;
}

const char *route_cluster_name(const struct route_entry *e, uint64_t random)
{
    if (e->kind == ROUTE_CLUSTER)
        return nz(e->cluster_name);
    int w = route_weight_index(e, random);
    return w < 0 ? "" : nz(e->weights[w].name);
}

int route_cluster_not_found_status(const struct route_entry *e)
{
    return e->not_found_status ? e->not_found_status : 503;
}

int route_priority(const struct route_entry *e)
{
    return e ? e->priority : 0;
}

uint64_t route_timeout_ms(const struct route_entry *e)
{
    return e->timeout_ms;
}

bool route_grpc_timeout_max(const struct route_entry *e, uint64_t *cap_ms)
{
    *cap_ms = e->grpc_timeout_max_ms;
    return e->grpc_timeout_set;
}

int64_t route_idle_timeout_ms(const struct route_entry *e)
{
    return e->idle_timeout_ms;
}

/* --- bounded output --- */

struct wr {
    char *p;
    size_t cap, n;
    bool over;
};

static void wr_put(struct wr *w, const char *s, size_t n)
{
    if (w->over || n >= w->cap - w->n) {   /* keep one byte for the NUL */
        w->over = true;
        return;
    }
    if (n)
        memcpy(w->p + w->n, s, n);
    w->n += n;
}

static void wr_str(struct wr *w, const char *s)
{
    wr_put(w, s, strlen(s));
}

static int wr_end(struct wr *w)
{
    if (w->over || w->n > (size_t)INT32_MAX)
        return -1;
    w->p[w->n] = '\0';
    return (int)w->n;
}

/* How much of the path the route matched, i.e. what prefix_rewrite replaces. */
static size_t matched_len(const struct route_entry *e, struct h1_str p)
{
    size_t m = (e->path_kind == RPATH_PREFIX || e->path_kind == RPATH_EXACT || e->path_kind == RPATH_SEP_PREFIX)
                   ? e->path.n : path_only_len(p);
    return m <= p.n ? m : p.n;
}

/* Appends p rewritten by prefix (replacing what the route matched) or by re/sub (on the path
 * before '?', keeping the rest), or unchanged. */
static void put_rewritten(struct wr *w, const struct route_entry *e, struct h1_str p, struct h1_str prefix,
                          const struct pcre2_real_code_8 *re, const char *sub, struct route_scratch *s)
{
    if (prefix.p) {
        size_t m = matched_len(e, p);
        wr_put(w, prefix.p, prefix.n);
        wr_put(w, p.p + m, p.n - m);
    } else if (re) {
        size_t pl = path_only_len(p);
        if (w->over || w->cap - w->n < 1) {
            w->over = true;
            return;
        }
        long r = regex_subst(re, sub, p.p, pl, s, w->p + w->n, w->cap - w->n);
        if (r < 0) {
            w->over = true;
            return;
        }
        w->n += (size_t)r;
        wr_put(w, p.p + pl, p.n - pl);
    } else {
        wr_put(w, p.p, p.n);
    }
}

int route_rewrite_path(const struct route_entry *e, const struct route_request *rq, struct route_scratch *s,
                       char *out, size_t cap)
{
    if (cap == 0)
        return -1;
    struct wr w = { out, cap, 0, false };
    if (e->kind == ROUTE_CLUSTER || e->kind == ROUTE_WEIGHTED)
        put_rewritten(&w, e, rq->path, e->prefix_rewrite, e->rewrite_re, e->rewrite_sub, s);
    else
        wr_put(&w, rq->path.p, rq->path.n);
    return wr_end(&w);
}

int route_host_rewrite(const struct route_entry *e, int weight_index, const struct route_request *rq,
                       struct route_scratch *s, char *out, size_t cap, bool *auto_host)
{
    struct wr w = { out, cap, 0, false };
    *auto_host = false;
    if (cap == 0)
        return -1;
    switch (e->host_kind) {
    case RHOST_LITERAL:
        wr_str(&w, e->host_literal);
        return wr_end(&w);
    case RHOST_HEADER: {
        struct h1_str v;
        if (header_first(rq, e->host_header, &v) && v.n) {
            wr_put(&w, v.p, v.n);
            return wr_end(&w);
        }
        break;
    }
    case RHOST_REGEX: {
        long r = regex_subst(e->host_re, e->host_sub, rq->path.p, path_only_len(rq->path), s, out, cap);
        if (r < 0)
            return -1;
        if (r > 0)
            return (int)r;
        break;
    }
    case RHOST_AUTO:
        *auto_host = true;
        break;
    }
    if (weight_index >= 0 && (size_t)weight_index < e->nweights && e->weights[weight_index].host_rewrite) {
        wr_str(&w, e->weights[weight_index].host_rewrite);
        return wr_end(&w);
    }
    out[0] = '\0';
    return 0;
}

/* Envoy's processRequestHost: the request's authority, without its port when a port_redirect
 * is set or when the scheme changes and the port is the old scheme's default. */
static struct h1_str redirect_host(struct h1_str host, struct h1_str req_scheme, const char *new_scheme,
                                   const char *new_port)
{
    if (!host.p || host.n == 0)
        return (struct h1_str){ "", 0 };
    size_t end = host.n;
    if (host.p[0] == '[') {
        for (size_t i = host.n; i > 1; i--)
            if (host.p[i - 2] == ']' && host.p[i - 1] == ':') {
                end = i - 1;
                break;
            }
    } else {
        for (size_t i = host.n; i > 0; i--)
            if (host.p[i - 1] == ':') {
                end = i - 1;
                break;
            }
    }
    if (end == host.n)
        return host;
    struct h1_str port = { host.p + end, host.n - end };
    bool remove = new_port[0] != '\0';
    if (!str_is(req_scheme, new_scheme, false)) {
        remove |= str_is(req_scheme, "https", false) && str_is(port, ":443", false);
        remove |= str_is(req_scheme, "http", false) && str_is(port, ":80", false);
    }
    if (remove)
        host.n = end;
    return host;
}

int route_redirect(const struct route_entry *e, const struct route_request *rq, struct route_scratch *s,
                   char *location, size_t cap, int *status)
{
    struct h1_str scheme = rq->scheme.n ? rq->scheme : (struct h1_str){ "http", 4 };
    struct wr w = { location, cap, 0, false };
    if (cap == 0)
        return -ENOSPC;
    if (e->kind == ROUTE_DIRECT) {
        /* Envoy adds the request's own URL as Location for 201 and 3xx direct responses. */
        if (e->direct_status != 201 && (e->direct_status < 300 || e->direct_status > 399))
            return -EINVAL;
        *status = e->direct_status;
        wr_put(&w, scheme.p, scheme.n);
        wr_str(&w, "://");
        wr_put(&w, nz(rq->authority.p), rq->authority.n);
        if (rq->path.n == 0 || rq->path.p[0] != '/')
            wr_str(&w, "/");
        wr_put(&w, rq->path.p, rq->path.n);
        return wr_end(&w) < 0 ? -ENOSPC : (int)w.n;
    }
    if (e->kind != ROUTE_REDIRECT || !e->redirect)
        return -EINVAL;
    const struct route_redirect_cfg *r = e->redirect;
    *status = r->status;
    if (r->ssl_only) {
        wr_str(&w, "https://");
        wr_put(&w, nz(rq->authority.p), rq->authority.n);
        wr_put(&w, rq->path.p, rq->path.n);
        return wr_end(&w) < 0 ? -ENOSPC : (int)w.n;
    }
    const char *new_scheme = r->scheme ? r->scheme : r->https ? "https" : NULL;
    char sbuf[16];
    if (!new_scheme) {
        /* the request's scheme, NUL-terminated for the comparisons below */
        size_t n = scheme.n < sizeof sbuf - 1 ? scheme.n : sizeof sbuf - 1;
        memcpy(sbuf, scheme.p, n);
        sbuf[n] = '\0';
        new_scheme = sbuf;
    }
    wr_str(&w, new_scheme);
    wr_str(&w, "://");
    if (r->host) {
        wr_str(&w, r->host);
    } else {
        struct h1_str h = redirect_host(rq->authority, scheme, new_scheme, r->port);
        wr_put(&w, h.p, h.n);
    }
    wr_str(&w, r->port);
    size_t path_at = w.n;
    if (r->path) {
        wr_str(&w, r->path);
        if (!r->path_has_query) {
            const char *q = rq->path.p ? memchr(rq->path.p, '?', rq->path.n) : NULL;
            if (q)
                wr_put(&w, q, (size_t)(rq->path.p + rq->path.n - q));
        }
    } else {
        put_rewritten(&w, e, rq->path, r->prefix_rewrite, r->re, r->sub, s);
    }
    if (w.over)
        return -ENOSPC;
    if (w.n == path_at || location[path_at] != '/') {
        if (w.n + 1 >= w.cap)
            return -ENOSPC;
        memmove(location + path_at + 1, location + path_at, w.n - path_at);
        location[path_at] = '/';
        w.n++;
    }
    if (!r->path_has_query && r->strip_query) {
        char *q = memchr(location + path_at, '?', w.n - path_at);
        if (q)
            w.n = (size_t)(q - location);
    }
    return wr_end(&w) < 0 ? -ENOSPC : (int)w.n;
}

int route_direct_response(const struct route_entry *e, int *status, const char **body, size_t *len)
{
    if (e->kind != ROUTE_DIRECT)
        return -EINVAL;
    *status = e->direct_status;
    *body = e->direct_body.p;
    *len = e->direct_body.n;
    return 0;
}

/* --- header mutations --- */

static void level_add(const struct header_mutation *m, const struct header_mutation **levels, size_t *n)
{
    if (m && (m->nadd || m->nremove))
        levels[(*n)++] = m;
}

/* Envoy evaluates the ClusterWeight's parser first, then the route entry's parsers sorted by
 * specificity (route, vhost, config; or the reverse when most_specific_header_mutations_wins);
 * a later parser overrides an earlier one. The require_tls redirect has no mutations. */
static size_t collect_levels(const struct route_entry *e, int weight_index, bool response,
                             const struct header_mutation *levels[ROUTE_MUTATION_LEVELS])
{
    size_t n = 0;
    const struct route_vhost *vh = e->vhost;
    if (!vh || e == &vh->ssl_redirect)
        return 0;
    const struct route_table *t = vh->table;
    if (weight_index >= 0 && (size_t)weight_index < e->nweights)
        level_add(response ? &e->weights[weight_index].resp : &e->weights[weight_index].req, levels, &n);
    const struct header_mutation *rt = response ? &e->resp : &e->req;
    const struct header_mutation *vm = response ? &vh->resp : &vh->req;
    const struct header_mutation *tm = t ? (response ? &t->resp : &t->req) : NULL;
    if (t && t->most_specific_wins) {
        level_add(tm, levels, &n);
        level_add(vm, levels, &n);
        level_add(rt, levels, &n);
    } else {
        level_add(rt, levels, &n);
        level_add(vm, levels, &n);
        level_add(tm, levels, &n);
    }
    return n;
}

size_t route_request_mutations(const struct route_entry *e, int weight_index,
                               const struct header_mutation *levels[ROUTE_MUTATION_LEVELS])
{
    return collect_levels(e, weight_index, false, levels);
}

size_t route_response_mutations(const struct route_entry *e, int weight_index,
                                const struct header_mutation *levels[ROUTE_MUTATION_LEVELS])
{
    return collect_levels(e, weight_index, true, levels);
}

const struct h1_str *route_internal_only_headers(const struct route_table *t, size_t *n)
{
    *n = t->ninternal_only;
    return t->internal_only;
}

/* --- hashing --- */

static int str_cmp(struct h1_str a, struct h1_str b)
{
    size_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, n) : 0;
    if (c)
        return c;
    return a.n < b.n ? -1 : a.n > b.n;
}

/* Envoy hashes all values of the header sorted, as one XXH64 stream (seed 0), so that the value
 * order does not matter. Sorting is done by repeated minimum search to stay allocation-free;
 * header counts are bounded by the codec. */
static bool hash_header(const struct route_request *rq, struct h1_str name, uint64_t *out)
{
    struct h1_str v;
    if (name.n && name.p[0] == ':') {
        if (!pseudo_header(rq, name, &v))
            return false;
        *out = XXH64(nz(v.p), v.n, 0);
        return true;
    }
    XXH64_state_t st;
    XXH64_reset(&st, 0);
    const struct h1_str *prev = NULL;
    bool any = false;
    for (;;) {
        const struct h1_str *min = NULL;
        size_t count = 0;
        for (size_t i = 0; i < rq->nheaders; i++) {
            const struct h1_header *h = &rq->headers[i];
            if (h->name.n != name.n || !bytes_eq(h->name.p, name.p, name.n, true))
                continue;
            if (prev && str_cmp(h->value, *prev) <= 0)
                continue;
            int c = min ? str_cmp(h->value, *min) : -1;
            if (c < 0) {
                min = &h->value;
                count = 1;
            } else if (c == 0) {
                count++;
            }
        }
        if (!min)
            break;
        for (size_t k = 0; k < count; k++)
            XXH64_update(&st, nz(min->p), min->n);
        prev = min;
        any = true;
    }
    if (any)
        *out = XXH64_digest(&st);
    return any;
}

static bool hash_source_ip(const struct sockaddr *sa, uint64_t *out)
{
    char buf[INET6_ADDRSTRLEN];
    const void *a;
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET)
        a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    else
        return false;
    if (!inet_ntop(sa->sa_family, a, buf, sizeof buf))
        return false;
    *out = XXH64(buf, strlen(buf), 0);
    return true;
}

bool route_hash(const struct route_entry *e, const struct route_request *rq, uint64_t *hash)
{
    bool have = false;
    uint64_t h = 0;
    for (size_t i = 0; i < e->nhash; i++) {
        const struct route_hash_policy *hp = &e->hash[i];
        uint64_t nh = 0;
        bool got = false;
        struct h1_str v;
        switch (hp->kind) {
        case RHASH_HEADER:
            got = hash_header(rq, hp->name, &nh);
            break;
        case RHASH_COOKIE:
            if (cookie_value(rq, hp->name, &v) && v.n) {
                nh = XXH64(v.p, v.n, 0);
                got = true;
            }
            break;
        case RHASH_SOURCE_IP:
            got = hash_source_ip(rq->source, &nh);
            break;
        case RHASH_QUERY:
            if (query_first(rq->path, hp->name, &v)) {
                nh = XXH64(nz(v.p), v.n, 0);
                got = true;
            }
            break;
        }
        if (got) {
            /* rotating keeps duplicate policies from cancelling out (Envoy) */
            h = (have ? ((h << 1) | (h >> 63)) : 0) ^ nh;
            have = true;
        }
        if (hp->terminal && have)
            break;
    }
    if (have)
        *hash = h;
    return have;
}
