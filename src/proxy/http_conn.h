/* A downstream HTTP/1.1 connection handled by the HTTP connection manager
 * (envoy.filters.network.http_connection_manager) and its router. */
#ifndef WEFT_PROXY_HTTP_CONN_H
#define WEFT_PROXY_HTTP_CONN_H

#include <sys/socket.h>

struct worker;
struct listener_config;
struct filter_chain;
struct transport;

/* Takes ownership of the accepted connection's transport (plaintext, or TLS after its
 * handshake): *tp is copied into the connection and must not be used by the caller again. */
void http_conn_start(struct worker *w, struct listener_config *lc, struct filter_chain *fc, struct transport *tp,
                     const struct sockaddr_storage *peer, const struct sockaddr_storage *local);

#endif
