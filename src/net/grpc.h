/* gRPC over HTTP/2 wire pieces (gRPC's PROTOCOL-HTTP2 document): the 5-byte message prefix and
 * a streaming deframer, grpc-timeout, grpc-status codes, grpc-message percent-encoding, and the
 * HTTP → gRPC status mapping (gRPC's http-grpc-status-mapping document).
 *
 * Nothing here does I/O or keeps global state. The deframer owns one growable buffer (at most
 * max_message bytes) for a message that arrives in pieces; everything else works in the
 * caller's buffers. */
#ifndef WEFT_NET_GRPC_H
#define WEFT_NET_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Compressed-Flag (1 byte) + Message-Length (4 bytes, big-endian). */
#define GRPC_PREFIX_LEN 5
/* gRPC's default for the largest message a receiver accepts (4 MiB). */
#define GRPC_DEFAULT_MAX_MESSAGE (4u * 1024u * 1024u)
/* Longest grpc-timeout value: 8 digits and a unit, plus a NUL from grpc_timeout_format. */
#define GRPC_TIMEOUT_MAX 10

/* Status codes (grpc/include/grpc/impl/codegen/status.h numbering). */
enum grpc_status {
    GRPC_STATUS_OK = 0,
    GRPC_STATUS_CANCELLED = 1,
    GRPC_STATUS_UNKNOWN = 2,
    GRPC_STATUS_INVALID_ARGUMENT = 3,
    GRPC_STATUS_DEADLINE_EXCEEDED = 4,
    GRPC_STATUS_NOT_FOUND = 5,
    GRPC_STATUS_ALREADY_EXISTS = 6,
    GRPC_STATUS_PERMISSION_DENIED = 7,
    GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
    GRPC_STATUS_FAILED_PRECONDITION = 9,
    GRPC_STATUS_ABORTED = 10,
    GRPC_STATUS_OUT_OF_RANGE = 11,
    GRPC_STATUS_UNIMPLEMENTED = 12,
    GRPC_STATUS_INTERNAL = 13,
    GRPC_STATUS_UNAVAILABLE = 14,
    GRPC_STATUS_DATA_LOSS = 15,
    GRPC_STATUS_UNAUTHENTICATED = 16,
};
#define GRPC_STATUS_MAX 16

/* "OK", "CANCELLED", ... "UNAUTHENTICATED"; NULL for a code outside 0..16. Static strings. */
const char *grpc_status_name(int code);
/* Parses a grpc-status header value (decimal, 1-3 digits, no sign or spaces). Returns the code
 * (any value 0..999; codes above 16 are legal on the wire and mean UNKNOWN to callers that
 * switch on them) or -1 when malformed. */
int grpc_status_parse(const char *s, size_t n);
/* The status a client uses for a response without grpc-status, from its HTTP status:
 * 400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED,
 * 429/502/503/504 UNAVAILABLE, anything else UNKNOWN. */
enum grpc_status grpc_status_from_http(int http_status);

/* True when a content-type header value names gRPC: "application/grpc" alone or followed by
 * "+" (a message format, e.g. "+proto") or ";" (parameters), case-sensitive as gRPC sends it.
 * Requests and responses both need it (PROTOCOL-HTTP2: otherwise HTTP 415 / not a gRPC reply). */
bool grpc_content_type_ok(const char *v, size_t n);

/* Writes the 5-byte prefix of a message of len bytes. */
void grpc_prefix_write(uint8_t out[GRPC_PREFIX_LEN], bool compressed, uint32_t len);

/* --- streaming deframer --- */

enum grpc_deframe_rc {
    GRPC_DF_NEED_MORE = 0,   /* every byte given was consumed; no whole message yet */
    GRPC_DF_MESSAGE = 1,     /* a whole message is in *msg (see below) */
    GRPC_DF_ERROR = -1,      /* d->error / d->error_status say why; the deframer stays failed */
};

struct grpc_msg {
    const uint8_t *data;     /* len bytes; see grpc_deframer_feed for how long they live */
    size_t len;
    bool compressed;
};

struct grpc_deframer {
    uint32_t max_message;            /* largest message length accepted */
    bool compression_allowed;        /* a grpc-encoding other than identity was negotiated */
    /* state: private */
    uint8_t prefix[GRPC_PREFIX_LEN];
    uint8_t prefix_have;
    bool in_message;                 /* prefix complete, collecting the body */
    bool compressed;
    uint32_t msg_len, msg_have;
    uint8_t *buf;                    /* owned; grows to the largest split message seen */
    size_t buf_cap;
    /* on GRPC_DF_ERROR */
    enum grpc_status error_status;   /* RESOURCE_EXHAUSTED (too large) or INTERNAL (compressed) */
    const char *error;               /* short static reason */
    uint32_t error_len;              /* the offending message length, for too-large reports */
};

/* Prepares d; max_message 0 means GRPC_DEFAULT_MAX_MESSAGE. Allocates nothing. */
void grpc_deframer_init(struct grpc_deframer *d, uint32_t max_message, bool compression_allowed);
/* Frees the deframer's buffer. d may be reused after grpc_deframer_init. */
void grpc_deframer_free(struct grpc_deframer *d);
/* Feeds bytes in any split. Consumes at most one message per call: *used is how many bytes of
 * in were taken (always all of them on GRPC_DF_NEED_MORE). Call again with in + *used until
 * everything is used. On GRPC_DF_MESSAGE, msg->data points either into `in` (a message that
 * arrived in one piece: no copy) or into the deframer's buffer; either way it is valid only until
 * the next call to feed/free and only while `in` is. Errors: a length above max_message
 * (RESOURCE_EXHAUSTED, found from the prefix alone, before any body is buffered), or the
 * compressed flag set when compression is not allowed or the flag byte is neither 0 nor 1
 * (INTERNAL). Returns GRPC_DF_* ; -1 also when out of memory (INTERNAL). */
int grpc_deframer_feed(struct grpc_deframer *d, const uint8_t *in, size_t len, size_t *used,
                       struct grpc_msg *msg);
/* True when no partial message is pending (a stream may end cleanly here). */
static inline bool grpc_deframer_idle(const struct grpc_deframer *d)
{
    return d->prefix_have == 0 && !d->in_message;
}

/* --- grpc-timeout: TimeoutValue (1-8 ASCII digits) TimeoutUnit (H M S m u n) --- */

/* Parses a grpc-timeout value into nanoseconds (saturating at UINT64_MAX for 99999999H).
 * Returns 0, or -1 when malformed (empty, more than 8 digits, no unit, unknown unit, junk). */
int grpc_timeout_parse(const char *s, size_t n, uint64_t *ns);
/* Formats ns as the most precise grpc-timeout that fits in 8 digits, rounding up (a deadline
 * is never made shorter). Writes a NUL-terminated string into out; returns its length (2..9).
 * 0 ns is written as "0n". */
size_t grpc_timeout_format(uint64_t ns, char out[GRPC_TIMEOUT_MAX]);

/* --- grpc-message: percent-encoding of UTF-8 text --- */

/* Percent-encodes n bytes: bytes 0x20-0x7E except '%' stay, every other byte becomes %XX
 * (uppercase hex). Writes at most cap bytes (no NUL) into out (which may be NULL when cap is 0)
 * and returns the full encoded length, like snprintf: the output is complete when the return
 * value is <= cap. At most 3 * n. */
size_t grpc_message_encode(const char *in, size_t n, char *out, size_t cap);
/* Decodes %XX sequences (either case); a '%' not followed by two hex digits is kept as it is,
 * as the spec asks of receivers. out needs room for n bytes (decoding never grows); in and out
 * may be the same buffer. Returns the decoded length. */
size_t grpc_message_decode(const char *in, size_t n, char *out);

#endif
