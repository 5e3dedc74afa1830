/* HTTP/1.1 message heads and chunked bodies (RFC 9110, RFC 9112): a strict, zero-allocation
 * parser for weft-proxy's hot path, used for downstream requests and upstream responses.
 *
 * Heads are parsed from a caller buffer that may hold only part of the head: the parser then
 * returns H1_INCOMPLETE and is called again later with the same buffer start and more bytes
 * (each call rescans from the start in O(len)). Nothing is allocated: every h1_str points into
 * the caller's buffer (or at a static string where documented), so the buffer must outlive
 * the parsed struct. The result for any prefix of a buffer is either H1_INCOMPLETE or exactly
 * the result for the whole buffer.
 *
 * Strictness (all smuggling-relevant ambiguity is an error): only CRLF line ends, no obs-fold,
 * no whitespace before ':', Content-Length with Transfer-Encoding is rejected, duplicate
 * Content-Length values must be identical, the only transfer-coding accepted is a lone
 * "chunked", HTTP/1.1 requests need exactly one Host, which must match an absolute-form
 * target's authority. Every rejection sets ->error to a short static reason for logs. */
#ifndef WEFT_NET_HTTP1_H
#define WEFT_NET_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <stdint.h>

#define H1_DEFAULT_MAX_HEADERS_BYTES (60 * 1024)   /* Envoy's max_request_headers_kb default 60 */
#define H1_DEFAULT_MAX_HEADERS_COUNT 100            /* Envoy's max_headers_count default 100 */
/* Longest chunk-size line (hex size plus chunk extensions, without CRLF) the decoder accepts. */
#define H1_CHUNK_LINE_MAX 4096

enum h1_status {
    H1_OK = 0,
    H1_INCOMPLETE = -1,       /* need more bytes */
    H1_BAD = -2,              /* 400 Bad Request */
    H1_TOO_LARGE = -3,        /* 431: head longer than max_head_bytes or too many headers */
    H1_BAD_VERSION = -4,      /* 505: well-formed HTTP version other than 1.0 and 1.1 */
    H1_NOT_IMPLEMENTED = -5,  /* 501: transfer-coding other than "chunked" */
};

struct h1_str { const char *p; size_t n; };
struct h1_header { struct h1_str name, value; };   /* value trimmed of OWS */

/* Bounds for one head. A field left 0 takes the default above. max_head_bytes counts every
 * byte of the head including leading empty lines and the final CRLF; values above INT_MAX are
 * clamped to INT_MAX. max_headers is also the capacity of the caller's headers array. */
struct h1_limits { size_t max_head_bytes; size_t max_headers; };

struct h1_request {
    struct h1_str method, target;    /* target as sent (origin-form, absolute-form, authority-form, '*') */
    int minor;                       /* 0 or 1 (HTTP/1.0 or 1.1) */
    struct h1_header *headers; size_t nheaders;      /* caller-provided array, capacity = limits.max_headers */
    struct h1_str host;              /* Host header value, or authority from absolute-form / CONNECT
                                      * target; {NULL, 0} for an HTTP/1.0 request without either */
    int64_t content_length;          /* -1 if absent */
    unsigned chunked:1, keep_alive:1 /* after HTTP/1.0/1.1 defaults and Connection: close/keep-alive */,
             upgrade:1 /* Connection: upgrade + Upgrade: present */, expect_continue:1,
             absolute_form:1, connect:1;
    struct h1_str upgrade_proto;     /* Upgrade header value */
    struct h1_str path;              /* path+query part of target (for absolute-form: after authority;
                                      * a static "/" when that is empty); {NULL, 0} for CONNECT */
    const char *error;               /* on H1_BAD/TOO_LARGE/...: a short static reason for logs */
};

struct h1_response {
    int status;                      /* 100..599 */
    int minor;                       /* 0 or 1 */
    struct h1_str reason;            /* may be empty ("HTTP/1.1 200\r\n" is accepted) */
    struct h1_header *headers; size_t nheaders;      /* caller-provided, capacity = limits.max_headers */
    int64_t content_length;          /* -1 if absent */
    unsigned chunked:1, keep_alive:1, upgrade:1;
    struct h1_str upgrade_proto;     /* Upgrade header value */
    const char *error;
};

enum h1_body_kind { H1_BODY_NONE, H1_BODY_LENGTH, H1_BODY_CHUNKED, H1_BODY_UNTIL_CLOSE };

/* Parses a request head from buf[0..len). The caller owns buf and req; req->headers must point
 * at an array of at least lim->max_headers entries (it is kept, every other field is reset).
 * lim may be NULL for the defaults. Leading CRLFs before the request line are skipped.
 * Returns the head length (> 0, including skipped CRLFs and the final empty line; body or a
 * pipelined request follows), H1_INCOMPLETE, or another enum h1_status with req->error set. */
int h1_parse_request(const char *buf, size_t len, const struct h1_limits *lim, struct h1_request *req);

/* Parses a response head from buf[0..len); ownership, limits and returns as h1_parse_request().
 * Body framing for 1xx/204/304/HEAD/CONNECT is left to h1_response_body_kind(). */
int h1_parse_response(const char *buf, size_t len, const struct h1_limits *lim, struct h1_response *resp);

/* How the body of a parsed request is framed (RFC 9112 6.3): CHUNKED, LENGTH (content_length
 * > 0) or NONE. CONNECT requests have no body (the connection becomes a tunnel). */
enum h1_body_kind h1_request_body_kind(const struct h1_request *r);

/* How the body of a parsed response is framed: NONE for 1xx, 204, 304, a HEAD request, a 2xx
 * to CONNECT and Content-Length: 0; else CHUNKED, LENGTH, or UNTIL_CLOSE (no framing). */
enum h1_body_kind h1_response_body_kind(const struct h1_response *r, bool request_was_head,
                                        bool request_was_connect);

/* The HTTP status a server should answer a parse error with (400, 431, 505, 501), or 0 for
 * H1_OK/H1_INCOMPLETE. */
int h1_status_http_code(int h1_status);

/* Incremental chunked-body decoder. The state is a small struct embedded in the stream; it
 * holds no pointers into input. Chunk extensions are validated and skipped, and so are
 * trailer fields (bounded by max_trailer_bytes). */
struct h1_chunked {
    int state;
    uint64_t remaining;              /* data bytes left in the current chunk */
    size_t line_bytes;               /* bytes of the current chunk-size line, <= H1_CHUNK_LINE_MAX */
    size_t trailer_bytes;            /* bytes of the trailer section so far */
    size_t max_trailer_bytes;
    const char *error;               /* on H1_CHUNK_BAD: a short static reason */
};
enum h1_chunk_result { H1_CHUNK_DATA = 1, H1_CHUNK_NEED_MORE = 0, H1_CHUNK_DONE = 2, H1_CHUNK_BAD = -2 };

/* Where the decoder is: in chunk framing (size lines, CRLFs), in chunk data, in the trailer
 * section (trailer lines and the final CRLF), or done/failed. Lets a caller that translates
 * to another protocol (HTTP/2) keep the trailer bytes: feed one byte at a time outside data
 * and collect what is consumed in H1_PHASE_TRAILERS. */
enum h1_chunk_phase { H1_PHASE_FRAMING, H1_PHASE_DATA, H1_PHASE_TRAILERS, H1_PHASE_DONE };
enum h1_chunk_phase h1_chunked_phase(const struct h1_chunked *c);

/* Resets c for a new body; max_trailer_bytes 0 means H1_DEFAULT_MAX_HEADERS_BYTES. */
void h1_chunked_init(struct h1_chunked *c, size_t max_trailer_bytes);

/* Feeds in[0..len) (owned by the caller) to the decoder; *consumed = bytes of input used.
 * Returns H1_CHUNK_DATA with *data, *data_len = payload bytes (a subrange of the consumed
 * input, at most one span per call); H1_CHUNK_NEED_MORE when all input was used without
 * yielding data; H1_CHUNK_DONE after the last chunk, trailers and final CRLF (bytes after
 * them are not consumed: they belong to the next message); H1_CHUNK_BAD with c->error set
 * (sticky). Call again with the unconsumed rest until NEED_MORE, DONE or BAD. */
int h1_chunked_feed(struct h1_chunked *c, const char *in, size_t len, size_t *consumed,
                    const char **data, size_t *data_len);

/* True if s equals the NUL-terminated lit, ignoring ASCII case. Inline so that the length
 * of a literal is known at compile time (it is called for every header on the hot path). */
static inline bool h1_str_eq_ci(struct h1_str s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.n != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s.p[i], b = (unsigned char)lit[i];
        if ((a >= 'A' && a <= 'Z' ? a + 32 : a) != (b >= 'A' && b <= 'Z' ? b + 32 : b))
            return false;
    }
    return true;
}
/* The first header named name (ASCII case-insensitive) among h[0..n), or NULL. */
const struct h1_header *h1_find_header(const struct h1_header *h, size_t n, const char *name);
/* True if the comma-separated list (Connection, Upgrade...) holds token, ignoring case. */
bool h1_list_has_token(struct h1_str list, const char *token);

#endif
