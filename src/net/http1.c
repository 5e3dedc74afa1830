/* HTTP/1.1 head parser and chunked decoder: see http1.h for the contract.
 *
 * The head parser is one left-to-right pass over buf[0..min(len, max_head_bytes)). Every
 * decision depends only on bytes already scanned, and running out of bytes only ever yields
 * "need more" (H1_INCOMPLETE, or H1_TOO_LARGE once the window is full); that is what makes the
 * result for any prefix either INCOMPLETE or the result for the whole buffer. Characters are
 * classified with one 256-byte table; long runs (request-target, field values) are first
 * skipped eight bytes at a time with word-wide range checks. */
#include "net/http1.h"

#include <limits.h>
#include <string.h>

/* --- character classes --- */

enum {
    C_TOKEN = 1 << 0,   /* tchar (RFC 9110 5.6.2) */
    C_VALUE = 1 << 1,   /* field-value byte: HTAB, SP, VCHAR, obs-text */
    C_TARGET = 1 << 2,  /* request-target byte: VCHAR except '#' (no fragment in a request) */
    C_HOST = 1 << 3,    /* uri-host / port byte (RFC 3986 authority without userinfo) */
    C_HEX = 1 << 4,
    C_SCHEME = 1 << 5,  /* ALPHA / DIGIT / '+' / '-' / '.' */
};

#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_TCHAR(c) (IS_ALPHA(c) || IS_DIGIT(c) || (c) == '!' || (c) == '#' || (c) == '$' || \
    (c) == '%' || (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || \
    (c) == '.' || (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define IS_VCHAR(c) ((c) >= 0x21 && (c) <= 0x7e)
#define IS_HOSTC(c) (IS_ALPHA(c) || IS_DIGIT(c) || (c) == '-' || (c) == '.' || (c) == '_' || \
    (c) == '~' || (c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || \
    (c) == ')' || (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=' || \
    (c) == '%' || (c) == ':' || (c) == '[' || (c) == ']')
#define IS_HEXC(c) (IS_DIGIT(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define CLASS(c) ((IS_TCHAR(c) ? C_TOKEN : 0) | \
    ((IS_VCHAR(c) || (c) == ' ' || (c) == '\t' || (c) >= 0x80) ? C_VALUE : 0) | \
    ((IS_VCHAR(c) && (c) != '#') ? C_TARGET : 0) | (IS_HOSTC(c) ? C_HOST : 0) | \
    (IS_HEXC(c) ? C_HEX : 0) | \
    ((IS_ALPHA(c) || IS_DIGIT(c) || (c) == '+' || (c) == '-' || (c) == '.') ? C_SCHEME : 0))
#define R4(b) CLASS(b), CLASS((b) + 1), CLASS((b) + 2), CLASS((b) + 3)
#define R16(b) R4(b), R4((b) + 4), R4((b) + 8), R4((b) + 12)
#define R64(b) R16(b), R16((b) + 16), R16((b) + 32), R16((b) + 48)

static const unsigned char cls[256] = { R64(0), R64(64), R64(128), R64(192) };

static inline bool is(unsigned char c, int mask) { return (cls[c] & mask) != 0; }
static inline unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }
static inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

/* Word-at-a-time byte range tests: each is non-zero if some byte of x is < n (n <= 128),
 * > n (n <= 127), or zero. They may flag extra bytes above a real hit but never miss one,
 * which is all the fast paths need (a flagged word is rescanned byte by byte). */
#define W_ONES 0x0101010101010101ull
#define W_HIGH 0x8080808080808080ull
#define W_LESS(x, n) (((x) - W_ONES * (n)) & ~(x) & W_HIGH)
#define W_MORE(x, n) ((((x) + W_ONES * (127 - (n))) | (x)) & W_HIGH)
#define W_HAS(x, c) W_LESS((x) ^ (W_ONES * (c)), 1)

static inline uint64_t load8(const char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

/* Skips request-target bytes from pos; returns the position of the first other byte or end. */
static size_t scan_target(const char *b, size_t pos, size_t end)
{
    while (end - pos >= 8) {
        uint64_t x = load8(b + pos);
        if (W_LESS(x, 0x21) | W_MORE(x, 0x7e) | W_HAS(x, '#'))
            break;
        pos += 8;
    }
    while (pos < end && is((unsigned char)b[pos], C_TARGET))
        pos++;
    return pos;
}

/* Skips field-value bytes from pos (CTLs other than HTAB, and DEL, end the run). */
static size_t scan_value(const char *b, size_t pos, size_t end)
{
    while (end - pos >= 8) {
        uint64_t x = load8(b + pos);
        if (W_LESS(x, 0x20) | W_HAS(x, 0x7f))
            break;
        pos += 8;
    }
    while (pos < end && is((unsigned char)b[pos], C_VALUE))
        pos++;
    return pos;
}

/* --- small public helpers --- */

const struct h1_header *h1_find_header(const struct h1_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (h1_str_eq_ci(h[i].name, name))
            return &h[i];
    return NULL;
}

bool h1_list_has_token(struct h1_str list, const char *token)
{
    size_t i = 0;
    while (i < list.n) {
        while (i < list.n && (is_ows(list.p[i]) || list.p[i] == ','))
            i++;
        size_t start = i;
        while (i < list.n && list.p[i] != ',')
            i++;
        size_t end = i;
        while (end > start && is_ows(list.p[end - 1]))
            end--;
        if (end > start && h1_str_eq_ci((struct h1_str){ list.p + start, end - start }, token))
            return true;
    }
    return false;
}

int h1_status_http_code(int st)
{
    switch (st) {
    case H1_BAD: return 400;
    case H1_TOO_LARGE: return 431;
    case H1_BAD_VERSION: return 505;
    case H1_NOT_IMPLEMENTED: return 501;
    default: return 0;
    }
}

/* --- head parsing, shared by requests and responses --- */

/* One parse call's cursor and the framing facts gathered from the fields. */
struct head {
    const char *buf;
    size_t end;                /* window end: min(len, max_head_bytes) */
    bool truncated;            /* len went beyond the window */
    bool is_request;
    size_t pos;
    struct h1_header *hdrs;
    size_t cap, n;
    int minor;
    const char *error;
    int64_t cl;                /* -1 when no Content-Length */
    bool te_seen, te_chunked, te_not_last, te_other;
    bool conn_close, conn_keep_alive, conn_upgrade;
    bool host_seen, upgrade_seen, expect_continue;
    struct h1_str host, upgrade;
};

static int fail(struct head *h, int status, const char *why)
{
    h->error = why;
    return status;
}

/* Out of bytes: wait for more, unless the window is already as large as a head may be. */
static int need_more(struct head *h)
{
    return h->truncated ? fail(h, H1_TOO_LARGE, "head too large") : H1_INCOMPLETE;
}

/* Expects CRLF at h->pos; a CR or LF on its own is never a line end here. */
static int expect_crlf(struct head *h, const char *what)
{
    if (h->pos >= h->end)
        return need_more(h);
    char c = h->buf[h->pos];
    if (c == '\n')
        return fail(h, H1_BAD, "bare LF");
    if (c != '\r')
        return fail(h, H1_BAD, what);
    if (h->pos + 1 >= h->end)
        return need_more(h);
    if (h->buf[h->pos + 1] != '\n')
        return fail(h, H1_BAD, "bare CR");
    h->pos += 2;
    return 0;
}

/* Parses "HTTP/" DIGIT ["." DIGIT]. Only 1.0 and 1.1 are accepted; any other well-formed
 * version is H1_BAD_VERSION so the caller can answer 505. */
static int parse_version(struct head *h)
{
    static const char pfx[] = "HTTP/";
    for (size_t i = 0; i < 5; i++) {
        if (h->pos >= h->end)
            return need_more(h);
        if (h->buf[h->pos] != pfx[i])
            return fail(h, H1_BAD, "malformed HTTP version");
        h->pos++;
    }
    if (h->pos >= h->end)
        return need_more(h);
    if (!IS_DIGIT(h->buf[h->pos]))
        return fail(h, H1_BAD, "malformed HTTP version");
    int major = h->buf[h->pos++] - '0', minor = -1;
    if (h->pos >= h->end)
        return need_more(h);
    if (h->buf[h->pos] == '.') {
        if (++h->pos >= h->end)
            return need_more(h);
        if (!IS_DIGIT(h->buf[h->pos]))
            return fail(h, H1_BAD, "malformed HTTP version");
        minor = h->buf[h->pos++] - '0';
    }
    if (major != 1 || (minor != 0 && minor != 1))
        return fail(h, H1_BAD_VERSION, "unsupported HTTP version");
    h->minor = minor;
    return 0;
}

static bool span_eq_ci(struct h1_str a, struct h1_str b)
{
    if (a.n != b.n)
        return false;
    for (size_t i = 0; i < a.n; i++)
        if (lower((unsigned char)a.p[i]) != lower((unsigned char)b.p[i]))
            return false;
    return true;
}

/* Exact (case-sensitive) match, as for methods. */
static bool span_is(struct h1_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

static bool name_is(struct h1_str name, const char *lit, size_t litlen)
{
    return name.n == litlen && h1_str_eq_ci(name, lit);
}

/* Content-Length: 1*DIGIT, or a list of identical values ("5, 5"), across all such fields. */
static int on_content_length(struct head *h, struct h1_str v)
{
    size_t i = 0;
    for (;;) {
        if (i >= v.n || !IS_DIGIT(v.p[i]))
            return fail(h, H1_BAD, "invalid Content-Length");
        int64_t val = 0;
        while (i < v.n && IS_DIGIT(v.p[i])) {
            int d = v.p[i++] - '0';
            if (val > (INT64_MAX - d) / 10)
                return fail(h, H1_BAD, "Content-Length too large");
            val = val * 10 + d;
        }
        if (h->cl >= 0 && h->cl != val)
            return fail(h, H1_BAD, "conflicting Content-Length");
        h->cl = val;
        while (i < v.n && is_ows(v.p[i]))
            i++;
        if (i == v.n)
            return 0;
        if (v.p[i++] != ',')
            return fail(h, H1_BAD, "invalid Content-Length");
        while (i < v.n && is_ows(v.p[i]))
            i++;
    }
}

/* Transfer-Encoding: a list of codings, possibly over several fields. Only the facts are
 * recorded here; which of them is fatal is decided once the head is complete. */
static int on_transfer_encoding(struct head *h, struct h1_str v)
{
    bool any = false;
    size_t i = 0;
    h->te_seen = true;
    while (i < v.n) {
        if (v.p[i] == ',' || is_ows(v.p[i])) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < v.n && is((unsigned char)v.p[i], C_TOKEN))
            i++;
        if (i == start)
            return fail(h, H1_BAD, "invalid Transfer-Encoding");
        struct h1_str coding = { v.p + start, i - start };
        while (i < v.n && is_ows(v.p[i]))
            i++;
        bool params = i < v.n && v.p[i] == ';';
        if (params) {
            while (i < v.n && v.p[i] != ',')
                i++;
        } else if (i < v.n && v.p[i] != ',') {
            return fail(h, H1_BAD, "invalid Transfer-Encoding");
        }
        any = true;
        if (h->te_chunked)
            h->te_not_last = true;
        if (h1_str_eq_ci(coding, "chunked")) {
            if (params)
                return fail(h, H1_BAD, "parameters on chunked");
            h->te_chunked = true;
        } else {
            h->te_other = true;
        }
    }
    return any ? 0 : fail(h, H1_BAD, "empty Transfer-Encoding");
}

static void on_connection(struct head *h, struct h1_str v)
{
    h->conn_close |= h1_list_has_token(v, "close");
    h->conn_keep_alive |= h1_list_has_token(v, "keep-alive");
    h->conn_upgrade |= h1_list_has_token(v, "upgrade");
}

static bool all_host_chars(struct h1_str s)
{
    for (size_t i = 0; i < s.n; i++)
        if (!is((unsigned char)s.p[i], C_HOST))
            return false;
    return true;
}

/* Looks at the fields that decide framing, routing and connection reuse; other fields are
 * only stored. Dispatches on length first so most fields cost one switch. */
static int on_header(struct head *h, const struct h1_header *f)
{
    switch (f->name.n) {
    case 4:
        if (h->is_request && name_is(f->name, "host", 4)) {
            if (h->host_seen)
                return fail(h, H1_BAD, "multiple Host");
            if (!all_host_chars(f->value))
                return fail(h, H1_BAD, "invalid Host");
            h->host_seen = true;
            h->host = f->value;
        }
        return 0;
    case 6:
        if (h->is_request && name_is(f->name, "expect", 6) && h1_str_eq_ci(f->value, "100-continue"))
            h->expect_continue = true;
        return 0;
    case 7:
        if (name_is(f->name, "upgrade", 7)) {
            if (h->upgrade_seen)
                return fail(h, H1_BAD, "multiple Upgrade");
            h->upgrade_seen = true;
            h->upgrade = f->value;
        }
        return 0;
    case 10:
        if (name_is(f->name, "connection", 10))
            on_connection(h, f->value);
        return 0;
    case 14:
        return name_is(f->name, "content-length", 14) ? on_content_length(h, f->value) : 0;
    case 17:
        return name_is(f->name, "transfer-encoding", 17) ? on_transfer_encoding(h, f->value) : 0;
    default:
        return 0;
    }
}

/* Parses header lines up to and including the empty line that ends the head. */
static int parse_fields(struct head *h)
{
    const char *b = h->buf;
    for (;;) {
        if (h->pos >= h->end)
            return need_more(h);
        char c = b[h->pos];
        if (c == '\r' || c == '\n')
            return expect_crlf(h, "bare CR");
        if (is_ows(c))
            return fail(h, H1_BAD, "obs-fold or leading whitespace in field");
        if (h->n == h->cap)
            return fail(h, H1_TOO_LARGE, "too many headers");

        size_t ns = h->pos;
        while (h->pos < h->end && is((unsigned char)b[h->pos], C_TOKEN))
            h->pos++;
        if (h->pos >= h->end)
            return need_more(h);
        if (b[h->pos] != ':') {
            if (h->pos > ns && is_ows(b[h->pos]))
                return fail(h, H1_BAD, "whitespace before colon");
            return fail(h, H1_BAD, "invalid header name");
        }
        if (h->pos == ns)
            return fail(h, H1_BAD, "empty header name");
        struct h1_header *f = &h->hdrs[h->n];
        f->name = (struct h1_str){ b + ns, h->pos - ns };
        h->pos++;

        while (h->pos < h->end && is_ows(b[h->pos]))
            h->pos++;
        size_t vs = h->pos;
        h->pos = scan_value(b, h->pos, h->end);
        size_t ve = h->pos;
        int rc = expect_crlf(h, "invalid header value");
        if (rc < 0)
            return rc;
        while (ve > vs && is_ows(b[ve - 1]))
            ve--;
        f->value = (struct h1_str){ b + vs, ve - vs };
        h->n++;
        if ((rc = on_header(h, f)) < 0)
            return rc;
    }
}

/* Framing rules common to both directions (RFC 9112 6.1-6.3), applied to the whole head. */
static int check_framing(struct head *h)
{
    if (!h->te_seen)
        return 0;
    if (h->minor == 0)
        return fail(h, H1_BAD, "Transfer-Encoding in HTTP/1.0");
    if (h->cl >= 0)
        return fail(h, H1_BAD, "Content-Length with Transfer-Encoding");
    if (h->te_not_last)
        return fail(h, H1_BAD, "chunked is not the final coding");
    if (h->te_other)
        return fail(h, H1_NOT_IMPLEMENTED, "unsupported transfer-coding");
    return 0;
}

static void head_init(struct head *h, const char *buf, size_t len, const struct h1_limits *lim,
                      struct h1_header *hdrs, bool is_request)
{
    size_t max = lim && lim->max_head_bytes ? lim->max_head_bytes : H1_DEFAULT_MAX_HEADERS_BYTES;
    if (max > INT_MAX)
        max = INT_MAX;
    memset(h, 0, sizeof *h);
    h->buf = buf;
    h->end = len < max ? len : max;
    h->truncated = len > max;
    h->is_request = is_request;
    h->hdrs = hdrs;
    h->cap = lim && lim->max_headers ? lim->max_headers : H1_DEFAULT_MAX_HEADERS_COUNT;
    if (!hdrs)
        h->cap = 0;
    h->cl = -1;
}

/* --- requests --- */

/* authority-form (CONNECT): uri-host ":" port, port all digits. */
static bool valid_authority_form(struct h1_str t)
{
    if (!all_host_chars(t))
        return false;
    size_t colon = t.n;
    while (colon > 0 && IS_DIGIT(t.p[colon - 1]))
        colon--;
    return colon >= 2 && colon < t.n && t.p[colon - 1] == ':';
}

/* Classifies the request-target and fills path (and the authority of absolute-form in *auth). */
static int parse_target(struct head *h, struct h1_request *r, struct h1_str *auth)
{
    struct h1_str t = r->target;
    if (span_is(r->method, "CONNECT")) {
        r->connect = 1;
        if (!valid_authority_form(t))
            return fail(h, H1_BAD, "CONNECT needs host:port");
        *auth = t;
        return 0;
    }
    if (t.p[0] == '/') {
        r->path = t;
        return 0;
    }
    if (t.n == 1 && t.p[0] == '*') {
        if (!span_is(r->method, "OPTIONS"))
            return fail(h, H1_BAD, "asterisk-form without OPTIONS");
        r->path = t;
        return 0;
    }
    /* absolute-form: scheme "://" authority path-abempty [ "?" query ] */
    size_t i = 0;
    if (!IS_ALPHA(t.p[0]))
        return fail(h, H1_BAD, "invalid request-target");
    while (i < t.n && is((unsigned char)t.p[i], C_SCHEME))
        i++;
    struct h1_str scheme = { t.p, i };
    if (t.n - i < 3 || memcmp(t.p + i, "://", 3) != 0)
        return fail(h, H1_BAD, "invalid request-target");
    if (!h1_str_eq_ci(scheme, "http") && !h1_str_eq_ci(scheme, "https"))
        return fail(h, H1_BAD, "unsupported scheme in request-target");
    i += 3;
    size_t as = i;
    while (i < t.n && t.p[i] != '/' && t.p[i] != '?') {
        if (t.p[i] == '@')
            return fail(h, H1_BAD, "userinfo in request-target");
        if (!is((unsigned char)t.p[i], C_HOST))
            return fail(h, H1_BAD, "invalid authority in request-target");
        i++;
    }
    if (i == as)
        return fail(h, H1_BAD, "empty authority in request-target");
    *auth = (struct h1_str){ t.p + as, i - as };
    r->absolute_form = 1;
    r->path = i < t.n ? (struct h1_str){ t.p + i, t.n - i } : (struct h1_str){ "/", 1 };
    return 0;
}

static int parse_request_line(struct head *h, struct h1_request *r, struct h1_str *auth)
{
    const char *b = h->buf;
    /* RFC 9112 2.2: ignore empty lines (CRLF only) before the request-line. */
    while (h->pos + 1 < h->end && b[h->pos] == '\r' && b[h->pos + 1] == '\n')
        h->pos += 2;

    size_t ms = h->pos;
    while (h->pos < h->end && is((unsigned char)b[h->pos], C_TOKEN))
        h->pos++;
    if (h->pos >= h->end)
        return need_more(h);
    if (h->pos == ms) {
        if (b[h->pos] == '\r' || b[h->pos] == '\n') {
            int rc = expect_crlf(h, "bare CR");   /* a full CRLF here was skipped above */
            return rc < 0 ? rc : fail(h, H1_BAD, "bare CR");
        }
        return fail(h, H1_BAD, "invalid method");
    }
    if (b[h->pos] != ' ')
        return fail(h, H1_BAD, "invalid method");
    r->method = (struct h1_str){ b + ms, h->pos - ms };
    h->pos++;

    size_t ts = h->pos;
    h->pos = scan_target(b, h->pos, h->end);
    if (h->pos >= h->end)
        return need_more(h);
    if (h->pos == ts || b[h->pos] != ' ')
        return fail(h, H1_BAD, "invalid request-target");
    r->target = (struct h1_str){ b + ts, h->pos - ts };
    h->pos++;

    int rc = parse_version(h);
    if (rc < 0)
        return rc;
    r->minor = h->minor;
    if ((rc = expect_crlf(h, "malformed HTTP version")) < 0)
        return rc;
    return parse_target(h, r, auth);
}

/* Checks that need the whole request head, then fills the derived fields. */
static int finish_request(struct head *h, struct h1_request *r, struct h1_str auth)
{
    if (h->minor == 1 && !h->host_seen)
        return fail(h, H1_BAD, "missing Host");
    /* RFC 9112 3.2.2 lets the target's authority replace Host; a mismatch is how requests
     * get routed one way and served another, so it is refused. */
    if (r->absolute_form && h->host_seen && !span_eq_ci(h->host, auth))
        return fail(h, H1_BAD, "Host does not match request-target");
    int rc = check_framing(h);
    if (rc < 0)
        return rc;
    r->host = auth.p ? auth : h->host;
    r->content_length = h->cl;
    r->chunked = h->te_chunked;
    r->keep_alive = h->minor == 1 ? !h->conn_close : h->conn_keep_alive && !h->conn_close;
    r->upgrade = h->conn_upgrade && h->upgrade_seen;
    r->upgrade_proto = h->upgrade;
    r->expect_continue = h->expect_continue;
    return 0;
}

int h1_parse_request(const char *buf, size_t len, const struct h1_limits *lim, struct h1_request *req)
{
    struct h1_header *hdrs = req->headers;
    struct head h;
    struct h1_str auth = { NULL, 0 };
    head_init(&h, buf, len, lim, hdrs, true);
    memset(req, 0, sizeof *req);
    req->headers = hdrs;
    req->content_length = -1;

    int rc = parse_request_line(&h, req, &auth);
    if (rc == 0)
        rc = parse_fields(&h);
    req->nheaders = h.n;
    if (rc == 0)
        rc = finish_request(&h, req, auth);
    if (rc < 0) {
        req->error = h.error;
        return rc;
    }
    return (int)h.pos;
}

enum h1_body_kind h1_request_body_kind(const struct h1_request *r)
{
    if (r->connect)
        return H1_BODY_NONE;
    if (r->chunked)
        return H1_BODY_CHUNKED;
    return r->content_length > 0 ? H1_BODY_LENGTH : H1_BODY_NONE;
}

/* --- responses --- */

/* status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ] CRLF; "HTTP/1.1 200" with no SP
 * after the code is accepted too, as many servers send it. */
static int parse_status_line(struct head *h, struct h1_response *r)
{
    const char *b = h->buf;
    int rc = parse_version(h);
    if (rc < 0)
        return rc;
    r->minor = h->minor;
    if (h->pos >= h->end)
        return need_more(h);
    if (b[h->pos++] != ' ')
        return fail(h, H1_BAD, "malformed status line");
    int status = 0;
    for (int i = 0; i < 3; i++) {
        if (h->pos >= h->end)
            return need_more(h);
        if (!IS_DIGIT(b[h->pos]))
            return fail(h, H1_BAD, "invalid status code");
        status = status * 10 + (b[h->pos++] - '0');
    }
    if (status < 100 || status > 599)
        return fail(h, H1_BAD, "invalid status code");
    r->status = status;
    if (h->pos >= h->end)
        return need_more(h);
    size_t rs = h->pos;
    if (b[h->pos] == ' ') {
        rs = ++h->pos;
        h->pos = scan_value(b, h->pos, h->end);
    }
    r->reason = (struct h1_str){ b + rs, h->pos - rs };
    return expect_crlf(h, "malformed status line");
}

int h1_parse_response(const char *buf, size_t len, const struct h1_limits *lim, struct h1_response *resp)
{
    struct h1_header *hdrs = resp->headers;
    struct head h;
    head_init(&h, buf, len, lim, hdrs, false);
    memset(resp, 0, sizeof *resp);
    resp->headers = hdrs;
    resp->content_length = -1;

    int rc = parse_status_line(&h, resp);
    if (rc == 0)
        rc = parse_fields(&h);
    resp->nheaders = h.n;
    if (rc == 0)
        rc = check_framing(&h);
    if (rc < 0) {
        resp->error = h.error;
        return rc;
    }
    resp->content_length = h.cl;
    resp->chunked = h.te_chunked;
    resp->keep_alive = h.minor == 1 ? !h.conn_close : h.conn_keep_alive && !h.conn_close;
    resp->upgrade = h.conn_upgrade && h.upgrade_seen;
    resp->upgrade_proto = h.upgrade;
    return (int)h.pos;
}

enum h1_body_kind h1_response_body_kind(const struct h1_response *r, bool request_was_head,
                                        bool request_was_connect)
{
    if (request_was_head || r->status < 200 || r->status == 204 || r->status == 304)
        return H1_BODY_NONE;
    if (request_was_connect && r->status < 300)
        return H1_BODY_NONE;   /* the connection is a tunnel from here on */
    if (r->chunked)
        return H1_BODY_CHUNKED;
    if (r->content_length >= 0)
        return r->content_length > 0 ? H1_BODY_LENGTH : H1_BODY_NONE;
    return H1_BODY_UNTIL_CLOSE;
}

/* --- chunked bodies (RFC 9112 7.1) --- */

enum {
    CK_SIZE_START,     /* first hex digit of chunk-size */
    CK_SIZE,           /* more hex digits, ';', BWS or CR */
    CK_SEMI_WS,        /* BWS that must be followed by ';' */
    CK_NAME_WS,        /* BWS after ';', before chunk-ext-name */
    CK_NAME,           /* chunk-ext-name */
    CK_AFTER_NAME_WS,  /* BWS after the name: '=' or ';' */
    CK_VAL_WS,         /* BWS after '=' */
    CK_VAL,            /* token chunk-ext-val */
    CK_QVAL,           /* quoted-string chunk-ext-val */
    CK_QESC,           /* after a backslash in the quoted-string */
    CK_AFTER_QVAL,     /* after the closing quote */
    CK_SIZE_LF,        /* CR of the chunk-size line seen */
    CK_DATA,           /* remaining payload bytes */
    CK_DATA_CR,        /* CRLF after chunk-data */
    CK_DATA_LF,
    CK_TRAILER_START,  /* start of a trailer line, or of the final CRLF */
    CK_TRAILER_NAME,
    CK_TRAILER_VALUE,
    CK_TRAILER_LF,
    CK_FINAL_LF,
    CK_DONE,
    CK_ERROR,
};

void h1_chunked_init(struct h1_chunked *c, size_t max_trailer_bytes)
{
    memset(c, 0, sizeof *c);
    c->state = CK_SIZE_START;
    c->max_trailer_bytes = max_trailer_bytes ? max_trailer_bytes : H1_DEFAULT_MAX_HEADERS_BYTES;
}

enum h1_chunk_phase h1_chunked_phase(const struct h1_chunked *c)
{
    if (c->state == CK_DATA)
        return H1_PHASE_DATA;
    if (c->state >= CK_TRAILER_START && c->state <= CK_FINAL_LF)
        return H1_PHASE_TRAILERS;
    if (c->state == CK_DONE || c->state == CK_ERROR)
        return H1_PHASE_DONE;
    return H1_PHASE_FRAMING;
}

static int hexval(unsigned char ch)
{
    return IS_DIGIT(ch) ? ch - '0' : lower(ch) - 'a' + 10;
}

/* After a chunk-size or an extension: another extension, BWS before one, or the line end. */
static const char *ext_boundary(struct h1_chunked *c, unsigned char ch, const char *why)
{
    if (ch == ';')
        c->state = CK_NAME_WS;
    else if (ch == ' ' || ch == '\t')
        c->state = CK_SEMI_WS;
    else if (ch == '\r')
        c->state = CK_SIZE_LF;
    else
        return why;
    return NULL;
}

/* Steps the control-byte state machine by one byte; returns 0 or an error reason. */
static const char *chunk_step(struct h1_chunked *c, unsigned char ch)
{
    int s = c->state;
    if (s <= CK_AFTER_QVAL && ch != '\r' && ++c->line_bytes > H1_CHUNK_LINE_MAX)
        return "chunk-size line too long";
    if (s >= CK_TRAILER_START && s <= CK_FINAL_LF && ++c->trailer_bytes > c->max_trailer_bytes)
        return "trailer section too large";
    switch (s) {
    case CK_SIZE_START:
        if (!is(ch, C_HEX))
            return "invalid chunk size";
        c->remaining = (uint64_t)hexval(ch);
        c->state = CK_SIZE;
        return NULL;
    case CK_SIZE:
        if (is(ch, C_HEX)) {
            if (c->remaining > (uint64_t)(INT64_MAX >> 4))
                return "chunk size too large";
            c->remaining = c->remaining << 4 | (uint64_t)hexval(ch);
            return NULL;
        }
        return ext_boundary(c, ch, "invalid chunk size");
    case CK_VAL:
        return is(ch, C_TOKEN) ? NULL : ext_boundary(c, ch, "invalid chunk extension");
    case CK_AFTER_QVAL:
        return ext_boundary(c, ch, "invalid chunk extension");
    case CK_SEMI_WS:
        if (ch == ';')
            c->state = CK_NAME_WS;
        else if (ch != ' ' && ch != '\t')
            return "invalid chunk extension";
        return NULL;
    case CK_NAME_WS:
        if (is(ch, C_TOKEN))
            c->state = CK_NAME;
        else if (ch != ' ' && ch != '\t')
            return "invalid chunk extension";
        return NULL;
    case CK_NAME:
        if (is(ch, C_TOKEN))
            return NULL;
        if (ch == ';')
            c->state = CK_NAME_WS;
        else if (ch == '=')
            c->state = CK_VAL_WS;
        else if (ch == ' ' || ch == '\t')
            c->state = CK_AFTER_NAME_WS;
        else if (ch == '\r')
            c->state = CK_SIZE_LF;
        else
            return "invalid chunk extension";
        return NULL;
    case CK_AFTER_NAME_WS:
        if (ch == ';')
            c->state = CK_NAME_WS;
        else if (ch == '=')
            c->state = CK_VAL_WS;
        else if (ch != ' ' && ch != '\t')
            return "invalid chunk extension";
        return NULL;
    case CK_VAL_WS:
        if (ch == '"')
            c->state = CK_QVAL;
        else if (is(ch, C_TOKEN))
            c->state = CK_VAL;
        else if (ch != ' ' && ch != '\t')
            return "invalid chunk extension";
        return NULL;
    case CK_QVAL:
        if (ch == '"')
            c->state = CK_AFTER_QVAL;
        else if (ch == '\\')
            c->state = CK_QESC;
        else if (!is(ch, C_VALUE))
            return "invalid chunk extension";
        return NULL;
    case CK_QESC:
        if (!is(ch, C_VALUE))
            return "invalid chunk extension";
        c->state = CK_QVAL;
        return NULL;
    case CK_SIZE_LF:
        if (ch != '\n')
            return "bare CR in chunk-size line";
        c->line_bytes = 0;
        c->state = c->remaining ? CK_DATA : CK_TRAILER_START;
        return NULL;
    case CK_DATA_CR:
        if (ch != '\r')
            return "missing CRLF after chunk data";
        c->state = CK_DATA_LF;
        return NULL;
    case CK_DATA_LF:
        if (ch != '\n')
            return "missing CRLF after chunk data";
        c->state = CK_SIZE_START;
        return NULL;
    case CK_TRAILER_START:
        if (ch == '\r')
            c->state = CK_FINAL_LF;
        else if (is(ch, C_TOKEN))
            c->state = CK_TRAILER_NAME;
        else
            return "invalid trailer field";
        return NULL;
    case CK_TRAILER_NAME:
        if (ch == ':')
            c->state = CK_TRAILER_VALUE;
        else if (!is(ch, C_TOKEN))
            return "invalid trailer field";
        return NULL;
    case CK_TRAILER_VALUE:
        if (ch == '\r')
            c->state = CK_TRAILER_LF;
        else if (ch == '\n')
            return "bare LF in trailer";
        else if (!is(ch, C_VALUE))
            return "invalid trailer field";
        return NULL;
    case CK_TRAILER_LF:
        if (ch != '\n')
            return "bare CR in trailer";
        c->state = CK_TRAILER_START;
        return NULL;
    case CK_FINAL_LF:
        if (ch != '\n')
            return "bare CR after trailers";
        c->state = CK_DONE;
        return NULL;
    default:
        return "chunked decoder misuse";
    }
}

int h1_chunked_feed(struct h1_chunked *c, const char *in, size_t len, size_t *consumed,
                    const char **data, size_t *data_len)
{
    size_t i = 0;
    *data = NULL;
    *data_len = 0;
    while (i < len && c->state != CK_DONE && c->state != CK_ERROR) {
        if (c->state == CK_DATA) {
            size_t n = len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            *data = in + i;
            *data_len = n;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = CK_DATA_CR;
            *consumed = i + n;
            return H1_CHUNK_DATA;
        }
        const char *why = chunk_step(c, (unsigned char)in[i]);
        if (why) {
            c->error = why;
            c->state = CK_ERROR;
            break;
        }
        i++;
    }
    *consumed = i;
    if (c->state == CK_ERROR)
        return H1_CHUNK_BAD;
    return c->state == CK_DONE ? H1_CHUNK_DONE : H1_CHUNK_NEED_MORE;
}
