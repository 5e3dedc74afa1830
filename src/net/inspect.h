/* Listener inspectors: what a connection is, from its first bytes, without consuming them
 * (the caller peeks with MSG_PEEK). Pure functions over a byte range, fuzzed.
 *
 * tls_inspect: Envoy's envoy.filters.listener.tls_inspector. Reads a TLS ClientHello (which may
 * span several handshake records) for the SNI host name and the ALPN list.
 * http_inspect: Envoy's envoy.filters.listener.http_inspector. Tells HTTP/1.x and the HTTP/2
 * prior-knowledge preface ("h2c") from the request line. */
#ifndef WEFT_NET_INSPECT_H
#define WEFT_NET_INSPECT_H

#include <stddef.h>
#include <stdint.h>

#define INSPECT_PEEK_MAX 16384     /* bytes peeked at most: a larger ClientHello is refused */
#define INSPECT_MAX_ALPN 8         /* ALPN names kept from a ClientHello */
#define INSPECT_ALPN_LEN 32        /* longer names are skipped */

enum inspect_result {
    INSPECT_NEED_MORE = 0,         /* not decided yet: peek again when more bytes arrive */
    INSPECT_MATCH = 1,             /* it is TLS (tls_inspect) / HTTP (http_inspect) */
    INSPECT_NO = 2,                /* it is not */
    INSPECT_TOO_LARGE = 3,         /* TLS, but the ClientHello does not fit in `max` bytes */
};

struct tls_hello {
    char sni[256];                 /* host name, lower-cased, "" when absent */
    char alpn[INSPECT_MAX_ALPN][INSPECT_ALPN_LEN + 1];
    unsigned n_alpn;
};

/* Parses the first n bytes of a connection; max is the most the caller will ever peek. */
enum inspect_result tls_inspect(const uint8_t *p, size_t n, size_t max, struct tls_hello *out);
/* On INSPECT_MATCH sets *proto to "http/1.1", "http/1.0" or "h2c" (static strings). */
enum inspect_result http_inspect(const uint8_t *p, size_t n, size_t max, const char **proto);

#endif
