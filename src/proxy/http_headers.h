/* Header helpers shared by every codec and the router: hop-by-hop (connection-specific)
 * headers, Connection tokens, and the route's header mutations applied to a head being built.
 * Everything works on name/value slices (struct h1_header) and never allocates. */
#ifndef WEFT_PROXY_HTTP_HEADERS_H
#define WEFT_PROXY_HTTP_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "net/http1.h"

struct header_mutation;
struct stream_info;

/* True for the connection-specific headers a proxy never forwards (RFC 9110 7.6.1, and the
 * ones RFC 9113 8.2.2 forbids in HTTP/2). */
static inline bool http_is_hop_by_hop(struct h1_str n)
{
    return h1_str_eq_ci(n, "connection") || h1_str_eq_ci(n, "keep-alive") ||
           h1_str_eq_ci(n, "proxy-connection") || h1_str_eq_ci(n, "upgrade") ||
           h1_str_eq_ci(n, "te") || h1_str_eq_ci(n, "trailer");
}

/* True when `name` is listed in one of the Connection headers of h[0..n). */
bool http_in_connection_tokens(const struct h1_header *h, size_t n, struct h1_str name);
/* True when h[0..n) has a header called name (case-insensitive). */
bool http_has_header(const struct h1_header *h, size_t n, struct h1_str name);
/* True when a received header must not be passed on: a level removes it, or overwrites it. */
bool http_mutation_drops(const struct header_mutation *const *lv, size_t nlv, struct h1_str name);
/* Appends "name: value\r\n" for every header the levels add, given the headers as received
 * (h[0..nh)). Values with %COMMAND% operators are rendered from si (sent as configured when si
 * is NULL); an empty value is left out unless keep_empty_value. Returns 0, or -1 when b is full. */
int http_mutation_add(struct buf *b, const struct header_mutation *const *lv, size_t nlv,
                      const struct h1_header *h, size_t nh, const struct stream_info *si);
/* Appends "name: value\r\n" to b; returns 0 or -1 when it does not fit. */
int http_put_header(struct buf *b, const char *name, const char *value, size_t vlen);
/* The IP address (without port) of ss as text ("unknown" for other families). */
void http_peer_ip(const struct sockaddr_storage *ss, char *out, size_t cap);

#endif
