/* gRPC as the proxy's router sees it: the gRPC facts of a request or response head (is it
 * gRPC, its grpc-timeout, its grpc-status). The rules themselves (content-type, the timeout
 * grammar, status codes, the HTTP → gRPC mapping, grpc-message encoding) live in net/grpc.h,
 * shared with weftd's gRPC server; this file only finds the headers. The proxy never frames
 * messages: it passes them through untouched. */
#ifndef WEFT_PROXY_GRPC_HEADERS_H
#define WEFT_PROXY_GRPC_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/grpc.h"
#include "net/http1.h"

/* True when h[0..n) has a gRPC content-type (application/grpc, +format or ;params). */
bool grpc_hdr_is_request(const struct h1_header *h, size_t n);
/* The grpc-timeout of h[0..n) in milliseconds, rounded up (any positive timeout is at least
 * 1 ms). Returns false when absent or malformed. */
bool grpc_hdr_timeout_ms(const struct h1_header *h, size_t n, uint64_t *ms);
/* The grpc-status of h[0..n) (0..999), or -1 when absent or malformed. */
int grpc_hdr_status(const struct h1_header *h, size_t n);

#endif
