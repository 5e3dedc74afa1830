/* The trailer section of a chunked HTTP/1.1 body as header slices, for the codecs that turn
 * it into HTTP/2 trailers (RFC 9112 §7.1.2 → RFC 9113 §8.1): the HTTP/1.1 downstream bridging
 * to an HTTP/2 upstream (request trailers) and the router reading an HTTP/1.1 upstream
 * (response trailers). */
#ifndef WEFT_PROXY_H1_TRAILERS_H
#define WEFT_PROXY_H1_TRAILERS_H

#include <stddef.h>

#include "net/http1.h"

/* Splits text[0..n) (trailer lines "name: value" CRLF-terminated, as the chunked decoder
 * validated them; the final empty line may be included) into out[0..cap). Names are
 * lowercased in place (HTTP/2 field names are lowercase); connection-specific fields and
 * the framing fields (connection, keep-alive, proxy-connection, transfer-encoding, upgrade,
 * te, content-length, host), which HTTP/2 forbids or which must not appear in a trailer
 * section, are left out. Returns the number of slices. */
size_t h1_trailers_parse(char *text, size_t n, struct h1_header *out, size_t cap);

#endif
