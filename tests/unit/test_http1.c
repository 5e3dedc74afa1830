/* Tests for net/http1: request/response heads, every rejection rule, incremental parsing at
 * every split point, chunked bodies fed whole and byte by byte, and a throughput print. */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "net/http1.h"
#include "test.h"

#define NHDR 16

static int parse_req(const char *s, size_t len, const struct h1_limits *lim, struct h1_request *r)
{
    static struct h1_header hdrs[H1_DEFAULT_MAX_HEADERS_COUNT];
    r->headers = hdrs;
    return h1_parse_request(s, len, lim, r);
}

static int parse_resp(const char *s, size_t len, struct h1_response *r)
{
    static struct h1_header hdrs[NHDR];
    static const struct h1_limits lim = { 0, NHDR };
    r->headers = hdrs;
    return h1_parse_response(s, len, &lim, r);
}

static int str_is(struct h1_str s, const char *lit)
{
    return s.p && s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

/* Every proper prefix must give H1_INCOMPLETE or exactly the whole buffer's result. */
static void check_prefixes(const char *s, size_t len, const struct h1_limits *lim, int whole)
{
    for (size_t i = 0; i < len; i++) {
        struct h1_request r;
        int rc = parse_req(s, i, lim, &r);
        if (whole > 0 && (size_t)whole > i)
            CHECK_EQ_INT(rc, H1_INCOMPLETE);
        else if (rc != H1_INCOMPLETE && rc != whole) {
            fprintf(stderr, "prefix %zu of \"%.*s\": %d, whole %d\n", i, (int)len, s, rc, whole);
            CHECK(0);
        }
    }
}

struct req_case {
    const char *in;
    size_t len;          /* 0: strlen(in) */
    int want;            /* 0: complete, whole input is the head; else an enum h1_status */
    const char *why;     /* expected error reason, or NULL */
};

#define GOOD(s) { s, 0, 0, NULL }
#define BAD(s, why) { s, 0, H1_BAD, why }
#define RQ(hdrs) "GET / HTTP/1.1\r\nHost: a\r\n" hdrs "\r\n"

static const struct req_case req_cases[] = {
    GOOD("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    GOOD("POST /submit?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n"),
    GOOD("HEAD /x HTTP/1.0\r\n\r\n"),
    GOOD("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    GOOD("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
    GOOD("GET http://a.com/p?q HTTP/1.1\r\nHost: A.com\r\n\r\n"),
    GOOD("GET https://a.com:8443 HTTP/1.1\r\nHost: a.com:8443\r\n\r\n"),
    GOOD("CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n"),
    GOOD("CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"),
    GOOD(RQ("Content-Length: 5, 5\r\n")),
    GOOD(RQ("Content-Length: 5\r\ncontent-length: 5\r\n")),
    GOOD(RQ("Transfer-Encoding: Chunked\r\n")),
    GOOD(RQ("X-Empty:\r\nX-Sp:   \r\n")),
    GOOD(RQ("X-Obs: caf\xc3\xa9\r\n")),
    GOOD(RQ("X-Tab:\t a \t b\t \r\n")),
    GOOD(RQ("Connection: Upgrade\r\nUpgrade: websocket\r\n")),
    GOOD("GET / HTTP/1.1\r\nHost:\r\n\r\n"),
    GOOD("M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n"),
    /* framing */
    BAD(RQ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), "Content-Length with Transfer-Encoding"),
    BAD(RQ("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"), "Content-Length with Transfer-Encoding"),
    BAD(RQ("Content-Length: 5\r\nContent-Length: 6\r\n"), "conflicting Content-Length"),
    BAD(RQ("Content-Length: 5, 6\r\n"), "conflicting Content-Length"),
    BAD(RQ("Content-Length: abc\r\n"), "invalid Content-Length"),
    BAD(RQ("Content-Length: -1\r\n"), "invalid Content-Length"),
    BAD(RQ("Content-Length: +5\r\n"), "invalid Content-Length"),
    BAD(RQ("Content-Length:\r\n"), "invalid Content-Length"),
    BAD(RQ("Content-Length: 5 5\r\n"), "invalid Content-Length"),
    BAD(RQ("Content-Length: 5,\r\n"), "invalid Content-Length"),
    BAD(RQ("Content-Length: 0x10\r\n"), "invalid Content-Length"),
    BAD(RQ("Content-Length: 9223372036854775808\r\n"), "Content-Length too large"),
    BAD(RQ("Content-Length: 99999999999999999999999\r\n"), "Content-Length too large"),
    GOOD(RQ("Content-Length: 9223372036854775807\r\n")),
    { RQ("Transfer-Encoding: identity\r\n"), 0, H1_NOT_IMPLEMENTED, "unsupported transfer-coding" },
    { RQ("Transfer-Encoding: gzip\r\n"), 0, H1_NOT_IMPLEMENTED, "unsupported transfer-coding" },
    { RQ("Transfer-Encoding: gzip, chunked\r\n"), 0, H1_NOT_IMPLEMENTED, "unsupported transfer-coding" },
    BAD(RQ("Transfer-Encoding: chunked, gzip\r\n"), "chunked is not the final coding"),
    BAD(RQ("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), "chunked is not the final coding"),
    BAD(RQ("Transfer-Encoding: chunked, chunked\r\n"), "chunked is not the final coding"),
    BAD(RQ("Transfer-Encoding:\r\n"), "empty Transfer-Encoding"),
    BAD(RQ("Transfer-Encoding: ,\r\n"), "empty Transfer-Encoding"),
    BAD(RQ("Transfer-Encoding: chunked;a=b\r\n"), "parameters on chunked"),
    BAD(RQ("Transfer-Encoding: chunked x\r\n"), "invalid Transfer-Encoding"),
    BAD(RQ("Transfer-Encoding: \"chunked\"\r\n"), "invalid Transfer-Encoding"),
    BAD("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in HTTP/1.0"),
    /* line syntax */
    BAD(RQ("X: a\r\n b\r\n"), "obs-fold or leading whitespace in field"),
    BAD(RQ("X: a\r\n\tb\r\n"), "obs-fold or leading whitespace in field"),
    BAD("GET / HTTP/1.1\r\n Host: a\r\n\r\n", "obs-fold or leading whitespace in field"),
    BAD("GET / HTTP/1.1\nHost: a\n\n", "bare LF"),
    BAD("GET / HTTP/1.1\r\nHost: a\n\r\n", "bare LF"),
    BAD("GET / HTTP/1.1\r\nHost: a\r\n\n", "bare LF"),
    BAD("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "bare LF"),
    BAD("GET / HTTP/1.1\rHost: a\r\n\r\n", "bare CR"),
    BAD("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", "bare CR"),
    BAD("GET / HTTP/1.1\r\nHost: a\r\n\rX", "bare CR"),
    BAD("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", "bare CR"),
    BAD(RQ("X-A : 1\r\n"), "whitespace before colon"),
    BAD(RQ("X-A\t: 1\r\n"), "whitespace before colon"),
    BAD(RQ(": 1\r\n"), "empty header name"),
    BAD(RQ("X(y: 1\r\n"), "invalid header name"),
    BAD(RQ("X\x01y: 1\r\n"), "invalid header name"),
    BAD(RQ("X\xc3\xa9: 1\r\n"), "invalid header name"),
    BAD(RQ("NoColon\r\n"), "invalid header name"),
    BAD(RQ("X: a\x01" "b\r\n"), "invalid header value"),
    BAD(RQ("X: a\x7f" "b\r\n"), "invalid header value"),
    BAD(RQ("X: 12345678901234567890\x1b" "b\r\n"), "invalid header value"),
    { "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35, H1_BAD, "invalid header value" },
    { "GET / HTTP/1.1\r\nHost: a\r\n\0: b\r\n\r\n", 33, H1_BAD, "invalid header name" },
    BAD("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", "invalid method"),
    BAD(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", "invalid method"),
    BAD("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", "invalid method"),
    BAD("GET /a\x01" "b HTTP/1.1\r\nHost: a\r\n\r\n", "invalid request-target"),
    BAD("GET /abcdefghijkl\x7fm HTTP/1.1\r\nHost: a\r\n\r\n", "invalid request-target"),
    BAD("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", "invalid request-target"),
    BAD("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", "malformed HTTP version"),
    BAD("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", "invalid request-target"),
    BAD("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", "invalid request-target"),
    BAD("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "invalid request-target"),
    BAD("GET /\r\nHost: a\r\n\r\n", "invalid request-target"),
    BAD("GET a.com HTTP/1.1\r\nHost: a\r\n\r\n", "invalid request-target"),
    BAD("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "unsupported scheme in request-target"),
    BAD("GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", "userinfo in request-target"),
    BAD("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", "empty authority in request-target"),
    BAD("GET http://a\"b/ HTTP/1.1\r\nHost: a\r\n\r\n", "invalid authority in request-target"),
    BAD("GET * HTTP/1.1\r\nHost: a\r\n\r\n", "asterisk-form without OPTIONS"),
    BAD("CONNECT a.com HTTP/1.1\r\nHost: a.com\r\n\r\n", "CONNECT needs host:port"),
    BAD("CONNECT / HTTP/1.1\r\nHost: a.com\r\n\r\n", "CONNECT needs host:port"),
    BAD("CONNECT :443 HTTP/1.1\r\nHost: a.com\r\n\r\n", "CONNECT needs host:port"),
    /* versions */
    { "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0, H1_BAD_VERSION, "unsupported HTTP version" },
    { "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, H1_BAD_VERSION, "unsupported HTTP version" },
    { "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, H1_BAD_VERSION, "unsupported HTTP version" },
    { "GET / HTTP/0.9\r\n\r\n", 0, H1_BAD_VERSION, "unsupported HTTP version" },
    { "GET / HTTP/2\r\n\r\n", 0, H1_BAD_VERSION, "unsupported HTTP version" },
    BAD("GET / http/1.1\r\nHost: a\r\n\r\n", "malformed HTTP version"),
    BAD("GET / HTTP/1.10\r\nHost: a\r\n\r\n", "malformed HTTP version"),
    BAD("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "malformed HTTP version"),
    BAD("GET / HTTP/1.\r\nHost: a\r\n\r\n", "malformed HTTP version"),
    BAD("GET / HTTP/x.1\r\nHost: a\r\n\r\n", "malformed HTTP version"),
    BAD("GET /\r\n\r\n", "invalid request-target"),
    /* Host */
    BAD("GET / HTTP/1.1\r\n\r\n", "missing Host"),
    BAD("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", "multiple Host"),
    BAD("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", "multiple Host"),
    BAD("GET http://a.com/ HTTP/1.1\r\nHost: b.com\r\n\r\n", "Host does not match request-target"),
    BAD("GET http://a.com/ HTTP/1.1\r\nHost: a.com:80\r\n\r\n", "Host does not match request-target"),
    BAD("GET http://a.com/ HTTP/1.1\r\nHost:\r\n\r\n", "Host does not match request-target"),
    BAD("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "invalid Host"),
    BAD("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", "invalid Host"),
    BAD(RQ("Upgrade: a\r\nUpgrade: b\r\n"), "multiple Upgrade"),
};

static void request_table(void)
{
    for (size_t i = 0; i < sizeof req_cases / sizeof req_cases[0]; i++) {
        const struct req_case *c = &req_cases[i];
        size_t len = c->len ? c->len : strlen(c->in);
        struct h1_request r;
        int rc = parse_req(c->in, len, NULL, &r);
        int want = c->want == 0 ? (int)len : c->want;
        if (rc != want)
            fprintf(stderr, "case %zu \"%s\": got %d (%s)\n", i, c->in, rc, r.error ? r.error : "-");
        CHECK_EQ_INT(rc, want);
        if (c->why && rc == want)
            CHECK_EQ_STR(r.error, c->why);
        if (rc > 0)
            CHECK(r.error == NULL);
        check_prefixes(c->in, len, NULL, rc);
    }
}

static void request_fields(void)
{
    static const char s[] = "POST /p/a?q=1 HTTP/1.1\r\nHost: Example.com\r\nX-A:  spaced value \t\r\n"
                            "Content-Length: 12\r\nExpect: 100-Continue\r\n\r\nbody...";
    struct h1_request r;
    int rc = parse_req(s, sizeof s - 1, NULL, &r);
    CHECK_EQ_INT(rc, (int)(strstr(s, "body") - s));
    CHECK(str_is(r.method, "POST"));
    CHECK(str_is(r.target, "/p/a?q=1"));
    CHECK(str_is(r.path, "/p/a?q=1"));
    CHECK(str_is(r.host, "Example.com"));
    CHECK_EQ_INT(r.minor, 1);
    CHECK_EQ_INT(r.nheaders, 4);
    CHECK(str_is(r.headers[1].name, "X-A"));
    CHECK(str_is(r.headers[1].value, "spaced value"));
    CHECK_EQ_INT(r.content_length, 12);
    CHECK(!r.chunked && r.keep_alive && r.expect_continue && !r.upgrade && !r.absolute_form && !r.connect);
    CHECK_EQ_INT(h1_request_body_kind(&r), H1_BODY_LENGTH);
    const struct h1_header *h = h1_find_header(r.headers, r.nheaders, "content-LENGTH");
    CHECK(h && str_is(h->value, "12"));
    CHECK(h1_find_header(r.headers, r.nheaders, "nope") == NULL);

    static const char a[] = "GET http://a.com:81?x HTTP/1.0\r\n\r\n";
    CHECK_EQ_INT(parse_req(a, sizeof a - 1, NULL, &r), (int)sizeof a - 1);
    CHECK(r.absolute_form);
    CHECK(str_is(r.host, "a.com:81"));
    CHECK(str_is(r.path, "?x"));
    CHECK_EQ_INT(r.content_length, -1);
    CHECK_EQ_INT(h1_request_body_kind(&r), H1_BODY_NONE);
    static const char a2[] = "GET HTTP://a.com HTTP/1.1\r\nHost: a.com\r\n\r\n";
    CHECK_EQ_INT(parse_req(a2, sizeof a2 - 1, NULL, &r), (int)sizeof a2 - 1);
    CHECK(str_is(r.path, "/"));

    static const char c[] = "CONNECT a.com:443 HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK_EQ_INT(parse_req(c, sizeof c - 1, NULL, &r), (int)sizeof c - 1);
    CHECK(r.connect && str_is(r.host, "a.com:443") && r.path.p == NULL);
    CHECK_EQ_INT(h1_request_body_kind(&r), H1_BODY_NONE);

    static const char t[] = "PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    CHECK_EQ_INT(parse_req(t, sizeof t - 1, NULL, &r), (int)sizeof t - 1);
    CHECK(r.chunked);
    CHECK_EQ_INT(h1_request_body_kind(&r), H1_BODY_CHUNKED);

    /* lowercase "connect" is another (extension) method, not CONNECT */
    static const char lc[] = "connect / HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK_EQ_INT(parse_req(lc, sizeof lc - 1, NULL, &r), (int)sizeof lc - 1);
    CHECK(!r.connect);
}

static void request_connection(void)
{
    static const struct { const char *in; int keep_alive, upgrade; } cases[] = {
        { "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1, 0 },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 0, 0 },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n", 0, 0 },
        { "GET / HTTP/1.0\r\n\r\n", 0, 0 },
        { "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 1, 0 },
        { "GET / HTTP/1.0\r\nConnection: x,keep-alive\r\nConnection: close\r\n\r\n", 0, 0 },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\n", 1, 1 },
        { "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", 1, 0 },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", 1, 0 },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgraded\r\nUpgrade: x\r\n\r\n", 1, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct h1_request r;
        size_t len = strlen(cases[i].in);
        CHECK_EQ_INT(parse_req(cases[i].in, len, NULL, &r), (int)len);
        CHECK_EQ_INT(r.keep_alive, cases[i].keep_alive);
        CHECK_EQ_INT(r.upgrade, cases[i].upgrade);
    }
    struct h1_request r;
    static const char u[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    CHECK_EQ_INT(parse_req(u, sizeof u - 1, NULL, &r), (int)sizeof u - 1);
    CHECK(str_is(r.upgrade_proto, "websocket"));
    CHECK(h1_list_has_token((struct h1_str){ " a ,, b\t,c", 10 }, "B"));
    CHECK(!h1_list_has_token((struct h1_str){ "ab, c", 5 }, "a"));
}

static void pipelined(void)
{
    static const char s[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n";
    struct h1_request r;
    int n1 = parse_req(s, sizeof s - 1, NULL, &r);
    CHECK_EQ_INT(n1, 28);
    CHECK(str_is(r.target, "/1"));
    int n2 = parse_req(s + n1, sizeof s - 1 - (size_t)n1, NULL, &r);
    CHECK_EQ_INT(n2, 28);
    CHECK(str_is(r.target, "/2") && str_is(r.host, "b"));
    /* a garbage second request does not change the first result */
    static const char g[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\x01\x02";
    CHECK_EQ_INT(parse_req(g, sizeof g - 1, NULL, &r), 28);
}

static void limits(void)
{
    struct h1_request r;
    char buf[200];
    /* exactly max_head_bytes is accepted, one more is 431 */
    struct h1_limits lim = { 64, 4 };
    int n = snprintf(buf, sizeof buf, "GET /%s HTTP/1.1\r\nHost: a\r\n\r\n",
                     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CHECK_EQ_INT(n, 64);
    CHECK_EQ_INT(parse_req(buf, (size_t)n, &lim, &r), 64);
    lim.max_head_bytes = 63;
    CHECK_EQ_INT(parse_req(buf, (size_t)n, &lim, &r), H1_TOO_LARGE);
    CHECK_EQ_STR(r.error, "head too large");
    CHECK_EQ_INT(parse_req(buf, 63, &lim, &r), H1_INCOMPLETE);
    check_prefixes(buf, (size_t)n, &lim, H1_TOO_LARGE);
    /* an endless header line is 431 as soon as the window is full */
    memset(buf, 'x', sizeof buf);
    memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
    CHECK_EQ_INT(parse_req(buf, sizeof buf, &lim, &r), H1_TOO_LARGE);
    /* header count */
    lim = (struct h1_limits){ 0, 3 };
    static const char h3[] = "GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\n\r\n";
    static const char h4[] = "GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\nD: 3\r\n\r\n";
    CHECK_EQ_INT(parse_req(h3, sizeof h3 - 1, &lim, &r), (int)sizeof h3 - 1);
    CHECK_EQ_INT(parse_req(h4, sizeof h4 - 1, &lim, &r), H1_TOO_LARGE);
    CHECK_EQ_STR(r.error, "too many headers");
    check_prefixes(h4, sizeof h4 - 1, &lim, H1_TOO_LARGE);
    /* defaults: 100 headers pass, 101 do not */
    static char big[4096];
    size_t off = (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 99; i++)
        off += (size_t)snprintf(big + off, sizeof big - off, "X%d: v\r\n", i);
    memcpy(big + off, "\r\n", 2);
    CHECK_EQ_INT(parse_req(big, off + 2, NULL, &r), (int)off + 2);
    CHECK_EQ_INT(r.nheaders, 100);
    memcpy(big + off, "Y: v\r\n\r\n", 8);
    CHECK_EQ_INT(parse_req(big, off + 8, NULL, &r), H1_TOO_LARGE);
    CHECK_EQ_INT(h1_status_http_code(H1_TOO_LARGE), 431);
    CHECK_EQ_INT(h1_status_http_code(H1_BAD), 400);
    CHECK_EQ_INT(h1_status_http_code(H1_BAD_VERSION), 505);
    CHECK_EQ_INT(h1_status_http_code(H1_NOT_IMPLEMENTED), 501);
    CHECK_EQ_INT(h1_status_http_code(H1_INCOMPLETE), 0);
}

/* Feeds a request one more byte at a time, as a socket might deliver it. */
static void incremental(void)
{
    static const char s[] = "\r\nPOST http://h.example/x?y HTTP/1.1\r\nHost: h.example\r\n"
                            "Transfer-Encoding: chunked\r\nX-Long: 0123456789abcdef0123456789\r\n\r\n";
    for (size_t i = 0; i < sizeof s - 1; i++) {
        struct h1_request r;
        CHECK_EQ_INT(parse_req(s, i, NULL, &r), H1_INCOMPLETE);
    }
    struct h1_request r;
    CHECK_EQ_INT(parse_req(s, sizeof s - 1, NULL, &r), (int)sizeof s - 1);
    CHECK(r.chunked && r.absolute_form && str_is(r.path, "/x?y"));
}

/* --- responses --- */

static void responses(void)
{
    static const struct {
        const char *in;
        int status;
        bool head, connect;
        enum h1_body_kind kind;
    } cases[] = {
        { "HTTP/1.1 100 Continue\r\n\r\n", 100, 0, 0, H1_BODY_NONE },
        { "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
          101, 0, 0, H1_BODY_NONE },
        { "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", 204, 0, 0, H1_BODY_NONE },
        { "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", 304, 0, 0, H1_BODY_NONE },
        { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, 0, 0, H1_BODY_LENGTH },
        { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, 1, 0, H1_BODY_NONE },
        { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, 0, 0, H1_BODY_NONE },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, 0, 0, H1_BODY_CHUNKED },
        { "HTTP/1.1 200 OK\r\n\r\n", 200, 0, 0, H1_BODY_UNTIL_CLOSE },
        { "HTTP/1.0 200 OK\r\n\r\n", 200, 0, 0, H1_BODY_UNTIL_CLOSE },
        { "HTTP/1.1 200 Connection established\r\n\r\n", 200, 0, 1, H1_BODY_NONE },
        { "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\n", 407, 0, 1, H1_BODY_LENGTH },
        { "HTTP/1.1 404\r\nContent-Length: 3\r\n\r\n", 404, 0, 0, H1_BODY_LENGTH },
        { "HTTP/1.1 500 \r\n\r\n", 500, 0, 0, H1_BODY_UNTIL_CLOSE },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct h1_response r;
        size_t len = strlen(cases[i].in);
        int rc = parse_resp(cases[i].in, len, &r);
        CHECK_EQ_INT(rc, (int)len);
        CHECK_EQ_INT(r.status, cases[i].status);
        CHECK_EQ_INT(h1_response_body_kind(&r, cases[i].head, cases[i].connect), cases[i].kind);
        for (size_t j = 0; j < len; j++)
            CHECK_EQ_INT(parse_resp(cases[i].in, j, &r), H1_INCOMPLETE);
    }
    struct h1_response r;
    static const char ok[] = "HTTP/1.1 200 All Good\r\nConnection: close\r\nServer: x\r\n\r\n";
    CHECK_EQ_INT(parse_resp(ok, sizeof ok - 1, &r), (int)sizeof ok - 1);
    CHECK(str_is(r.reason, "All Good") && !r.keep_alive && r.minor == 1 && r.nheaders == 2);
    static const char up[] = "HTTP/1.1 101 Switching\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    CHECK_EQ_INT(parse_resp(up, sizeof up - 1, &r), (int)sizeof up - 1);
    CHECK(r.upgrade && str_is(r.upgrade_proto, "websocket"));
    static const char ka[] = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n";
    CHECK_EQ_INT(parse_resp(ka, sizeof ka - 1, &r), (int)sizeof ka - 1);
    CHECK(r.keep_alive && r.minor == 0 && r.content_length == 1);

    static const struct { const char *in; int want; const char *why; } bad[] = {
        { "HTTP/1.1 99 X\r\n\r\n", H1_BAD, "invalid status code" },
        { "HTTP/1.1 600 X\r\n\r\n", H1_BAD, "invalid status code" },
        { "HTTP/1.1 20x X\r\n\r\n", H1_BAD, "invalid status code" },
        { "HTTP/1.1 2000 X\r\n\r\n", H1_BAD, "malformed status line" },
        { "HTTP/1.1  200 X\r\n\r\n", H1_BAD, "invalid status code" },
        { "HTTP/1.1 200 O\x01K\r\n\r\n", H1_BAD, "malformed status line" },
        { "HTTP/1.1 200 OK\n\r\n", H1_BAD, "bare LF" },
        { "HTTP/2.0 200 OK\r\n\r\n", H1_BAD_VERSION, "unsupported HTTP version" },
        { "HTTP/1.1\r\n\r\n", H1_BAD, "malformed status line" },
        { "\r\nHTTP/1.1 200 OK\r\n\r\n", H1_BAD, "malformed HTTP version" },
        { "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", H1_BAD,
          "Content-Length with Transfer-Encoding" },
        { "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", H1_BAD,
          "conflicting Content-Length" },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", H1_NOT_IMPLEMENTED,
          "unsupported transfer-coding" },
        { "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", H1_BAD, "Transfer-Encoding in HTTP/1.0" },
        { "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", H1_BAD, "obs-fold or leading whitespace in field" },
        { "HTTP/1.1 200 OK\r\nX : a\r\n\r\n", H1_BAD, "whitespace before colon" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = strlen(bad[i].in);
        int rc = parse_resp(bad[i].in, len, &r);
        if (rc != bad[i].want)
            fprintf(stderr, "response case %zu: got %d (%s)\n", i, rc, r.error ? r.error : "-");
        CHECK_EQ_INT(rc, bad[i].want);
        CHECK_EQ_STR(r.error, bad[i].why);
    }
}

/* --- chunked --- */

/* Decodes in[0..len) step bytes at a time; body gets the payload. Returns the final result
 * and sets *used to the input bytes consumed in total. */
static int dechunk(const char *in, size_t len, size_t step, size_t max_trailer, char *body,
                   size_t *body_len, size_t *used, const char **why)
{
    struct h1_chunked c;
    h1_chunked_init(&c, max_trailer);
    size_t off = 0, blen = 0;
    int rc = H1_CHUNK_NEED_MORE;
    while (off < len) {
        size_t avail = len - off < step ? len - off : step;
        size_t n;
        const char *d;
        size_t dn;
        rc = h1_chunked_feed(&c, in + off, avail, &n, &d, &dn);
        CHECK(n <= avail);
        off += n;
        if (rc == H1_CHUNK_DATA) {
            CHECK(d >= in && d + dn <= in + off);
            memcpy(body + blen, d, dn);
            blen += dn;
            continue;
        }
        if (rc != H1_CHUNK_NEED_MORE)
            break;
        CHECK_EQ_INT(n, avail);
    }
    if (rc == H1_CHUNK_DATA)
        rc = H1_CHUNK_NEED_MORE;
    *body_len = blen;
    *used = off;
    *why = c.error;
    return rc;
}

static void chunked(void)
{
    static const struct {
        const char *in;
        int want;
        const char *body;   /* expected payload, or the error reason for BAD */
    } cases[] = {
        { "5\r\nhello\r\n0\r\n\r\n", H1_CHUNK_DONE, "hello" },
        { "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", H1_CHUNK_DONE, "hello world" },
        { "A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", H1_CHUNK_DONE, "0123456789abcdefghij" },
        { "005\r\nhello\r\n000\r\n\r\n", H1_CHUNK_DONE, "hello" },
        { "5;name=value\r\nhello\r\n0;last\r\n\r\n", H1_CHUNK_DONE, "hello" },
        { "5;a=\"b c\\\"d;\"\r\nhello\r\n0\r\n\r\n", H1_CHUNK_DONE, "hello" },
        { "5 ; a = b ;c\t;d=\"\"\r\nhello\r\n0\r\n\r\n", H1_CHUNK_DONE, "hello" },
        { "5\r\nhello\r\n0\r\nX-T: 1\r\nY:\r\n\r\n", H1_CHUNK_DONE, "hello" },
        { "0\r\n\r\n", H1_CHUNK_DONE, "" },
        { "3\r\n\r\n\r\r\n0\r\n\r\n", H1_CHUNK_DONE, "\r\n\r" },
        { "5\r\nhel", H1_CHUNK_NEED_MORE, "hel" },
        { "7fffffffffffffff\r\nabc", H1_CHUNK_NEED_MORE, "abc" },
        { "G\r\n", H1_CHUNK_BAD, "invalid chunk size" },
        { "\r\n", H1_CHUNK_BAD, "invalid chunk size" },
        { "-5\r\n", H1_CHUNK_BAD, "invalid chunk size" },
        { "0x5\r\nhello\r\n", H1_CHUNK_BAD, "invalid chunk size" },
        { "5\nhello\r\n0\r\n\r\n", H1_CHUNK_BAD, "invalid chunk size" },
        { "5\r\nhelloX\r\n", H1_CHUNK_BAD, "missing CRLF after chunk data" },
        { "5\r\nhello\rX", H1_CHUNK_BAD, "missing CRLF after chunk data" },
        { "5\r\nhello\n0\r\n\r\n", H1_CHUNK_BAD, "missing CRLF after chunk data" },
        { "5\rhello", H1_CHUNK_BAD, "bare CR in chunk-size line" },
        { "8000000000000000\r\n", H1_CHUNK_BAD, "chunk size too large" },
        { "ffffffffffffffffff\r\n", H1_CHUNK_BAD, "chunk size too large" },
        { "5;a=\x01\r\n", H1_CHUNK_BAD, "invalid chunk extension" },
        { "5;=b\r\n", H1_CHUNK_BAD, "invalid chunk extension" },
        { "5 \r\nhello", H1_CHUNK_BAD, "invalid chunk extension" },
        { "5;a b\r\n", H1_CHUNK_BAD, "invalid chunk extension" },
        { "5;a=b c\r\n", H1_CHUNK_BAD, "invalid chunk extension" },
        { "5;a=\"b\x7f\"\r\n", H1_CHUNK_BAD, "invalid chunk extension" },
        { "5;a=\"b\"c\r\n", H1_CHUNK_BAD, "invalid chunk extension" },
        { "5;a\n", H1_CHUNK_BAD, "invalid chunk extension" },
        { "0\r\nX: 1\r\n y\r\n\r\n", H1_CHUNK_BAD, "invalid trailer field" },
        { "0\r\nX 1\r\n\r\n", H1_CHUNK_BAD, "invalid trailer field" },
        { "0\r\nX: \x01\r\n\r\n", H1_CHUNK_BAD, "invalid trailer field" },
        { "0\r\nX: 1\n\r\n", H1_CHUNK_BAD, "bare LF in trailer" },
        { "0\r\nX: 1\rZ\r\n", H1_CHUNK_BAD, "bare CR in trailer" },
        { "0\r\n\r\r", H1_CHUNK_BAD, "bare CR after trailers" },
        { "0\r\n\n", H1_CHUNK_BAD, "invalid trailer field" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        size_t steps[] = { len ? len : 1, 1, 2, 3, 7 };
        for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
            char body[128];
            size_t blen, used;
            const char *why;
            int rc = dechunk(cases[i].in, len, steps[k], 0, body, &blen, &used, &why);
            if (rc != cases[i].want)
                fprintf(stderr, "chunk case %zu step %zu: %d (%s)\n", i, steps[k], rc, why ? why : "-");
            CHECK_EQ_INT(rc, cases[i].want);
            if (cases[i].want == H1_CHUNK_BAD) {
                CHECK_EQ_STR(why, cases[i].body);
            } else {
                CHECK_EQ_INT(blen, strlen(cases[i].body));
                CHECK(memcmp(body, cases[i].body, blen) == 0);
                CHECK_EQ_INT(used, len);
            }
        }
    }
}

static void chunked_edges(void)
{
    /* DONE leaves the next message unconsumed and stays DONE */
    static const char s[] = "2\r\nab\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\n";
    char body[16];
    size_t blen, used;
    const char *why;
    CHECK_EQ_INT(dechunk(s, sizeof s - 1, 1000, 0, body, &blen, &used, &why), H1_CHUNK_DONE);
    CHECK_EQ_INT(used, strstr(s, "GET") - s);
    CHECK_EQ_INT(blen, 2);
    struct h1_chunked c;
    h1_chunked_init(&c, 0);
    size_t n;
    const char *d;
    size_t dn;
    CHECK_EQ_INT(h1_chunked_feed(&c, "0\r\n\r\n", 5, &n, &d, &dn), H1_CHUNK_DONE);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(h1_chunked_feed(&c, "x", 1, &n, &d, &dn), H1_CHUNK_DONE);
    CHECK_EQ_INT(n, 0);
    /* BAD is sticky */
    h1_chunked_init(&c, 0);
    CHECK_EQ_INT(h1_chunked_feed(&c, "z", 1, &n, &d, &dn), H1_CHUNK_BAD);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(h1_chunked_feed(&c, "0\r\n\r\n", 5, &n, &d, &dn), H1_CHUNK_BAD);
    /* empty input */
    h1_chunked_init(&c, 0);
    CHECK_EQ_INT(h1_chunked_feed(&c, "", 0, &n, &d, &dn), H1_CHUNK_NEED_MORE);
    CHECK_EQ_INT(n, 0);
    /* one span per call: data then the rest of the input is left for the next call */
    CHECK_EQ_INT(h1_chunked_feed(&c, "3\r\nabc\r\n", 8, &n, &d, &dn), H1_CHUNK_DATA);
    CHECK_EQ_INT(n, 6);
    CHECK(dn == 3 && memcmp(d, "abc", 3) == 0);
    /* trailer bound */
    static const char t[] = "0\r\nX-Trailer: 0123456789\r\n\r\n";
    CHECK_EQ_INT(dechunk(t, sizeof t - 1, 1, 24, body, &blen, &used, &why), H1_CHUNK_BAD);
    CHECK_EQ_STR(why, "trailer section too large");
    CHECK_EQ_INT(dechunk(t, sizeof t - 1, 1, 25, body, &blen, &used, &why), H1_CHUNK_DONE);
    /* chunk-size line bound */
    static char line[H1_CHUNK_LINE_MAX + 8];
    memset(line, '0', sizeof line);
    memcpy(line + H1_CHUNK_LINE_MAX, "\r\n\r\n", 4);
    CHECK_EQ_INT(dechunk(line, H1_CHUNK_LINE_MAX + 4, 4096, 0, body, &blen, &used, &why), H1_CHUNK_DONE);
    memset(line, '0', sizeof line);
    CHECK_EQ_INT(dechunk(line, sizeof line, 4096, 0, body, &blen, &used, &why), H1_CHUNK_BAD);
    CHECK_EQ_STR(why, "chunk-size line too long");
}

static void helpers(void)
{
    CHECK(h1_str_eq_ci((struct h1_str){ "HoSt", 4 }, "host"));
    CHECK(!h1_str_eq_ci((struct h1_str){ "Hos", 3 }, "host"));
    CHECK(!h1_str_eq_ci((struct h1_str){ "Hosu", 4 }, "host"));
    CHECK(h1_str_eq_ci((struct h1_str){ NULL, 0 }, ""));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints parse throughput for a typical browser-like request; informational only. */
static void throughput(void)
{
    static const char s[] =
        "GET /api/v1/items/12345?include=details&sort=desc HTTP/1.1\r\n"
        "Host: www.example.com\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n"
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
        "Accept-Language: en-US,en;q=0.9\r\n"
        "Accept-Encoding: gzip, deflate, br\r\n"
        "Cookie: session=abcdef0123456789abcdef0123456789; theme=dark; tracking=off\r\n"
        "Referer: https://www.example.com/items\r\n"
        "Connection: keep-alive\r\n"
        "Cache-Control: max-age=0\r\n"
        "X-Request-Id: 3f2b8c4e-6a1d-4b7e-9c0f-1a2b3c4d5e6f\r\n\r\n";
    struct h1_request r;
    long iters = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 1000; i++)
            CHECK(parse_req(s, sizeof s - 1, NULL, &r) == (int)sizeof s - 1);
        iters += 1000;
        t = now_s() - t0;
    } while (t < 0.2);
    printf("h1_parse_request: %.0f MB/s, %.2f M req/s (%zu-byte head)\n",
           (double)iters * (double)(sizeof s - 1) / t / 1e6, (double)iters / t / 1e6, sizeof s - 1);

    static char body[1 << 16];
    size_t off = 0;
    while (off + 4096 + 16 < sizeof body) {
        off += (size_t)snprintf(body + off, 16, "1000\r\n");
        memset(body + off, 'x', 4096);
        off += 4096;
        memcpy(body + off, "\r\n", 2);
        off += 2;
    }
    memcpy(body + off, "0\r\n\r\n", 5);
    off += 5;
    iters = 0;
    t0 = now_s();
    do {
        struct h1_chunked c;
        h1_chunked_init(&c, 0);
        size_t pos = 0, n, dn;
        const char *d;
        int rc;
        while ((rc = h1_chunked_feed(&c, body + pos, off - pos, &n, &d, &dn)) == H1_CHUNK_DATA)
            pos += n;
        CHECK_EQ_INT(rc, H1_CHUNK_DONE);
        iters++;
        t = now_s() - t0;
    } while (t < 0.1);
    printf("h1_chunked_feed: %.0f MB/s (4 KiB chunks)\n", (double)iters * (double)off / t / 1e6);
}

TEST_MAIN(TEST(request_table), TEST(request_fields), TEST(request_connection), TEST(pipelined),
          TEST(limits), TEST(incremental), TEST(responses), TEST(chunked), TEST(chunked_edges),
          TEST(helpers), TEST(throughput))
