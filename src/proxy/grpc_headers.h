/* Header-level gRPC (gRPC's PROTOCOL-HTTP2 document) for weft-proxy's router: recognising a
 * gRPC request, grpc-timeout, grpc-status, and the HTTP → gRPC status mapping for local
 * replies. Message framing (the 5-byte length prefix) is not here: the proxy passes messages
 * through untouched. (A separate src/net/grpc.{c,h} for the control plane's own gRPC is on
 * another branch; the lead may fold these helpers into it.) */
#ifndef WEFT_PROXY_GRPC_HEADERS_H
#define WEFT_PROXY_GRPC_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http1.h"

/* True when content-type is application/grpc or application/grpc+<subtype>/;params. */
bool grpc_is_request(const struct h1_header *h, size_t n);
/* Parses grpc-timeout ("1..8 digits" + H/M/S/m/u/n) into milliseconds (rounded up; at least
 * 1 for any positive timeout). Returns false when absent or malformed. */
bool grpc_timeout_parse(const struct h1_header *h, size_t n, uint64_t *ms);
/* The gRPC status code for an HTTP status a proxy answers with (gRPC's
 * http-grpc-status-mapping: 400→13, 401→16, 403→7, 404→12, 429/502/503/504→14, else 2). */
int grpc_status_from_http(int http_status);
/* The value of grpc-status in h[0..n) (0..16), or -1 when absent or not a number. */
int grpc_status_find(const struct h1_header *h, size_t n);
/* Percent-encodes s for grpc-message into out (always NUL-terminated). */
void grpc_percent_encode(const char *s, char *out, size_t cap);

#endif
