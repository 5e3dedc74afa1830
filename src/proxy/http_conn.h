/* A downstream HTTP/1.1 connection handled by the HTTP connection manager
 * (envoy.filters.network.http_connection_manager) and its router. */
#ifndef WEFT_PROXY_HTTP_CONN_H
#define WEFT_PROXY_HTTP_CONN_H

#include <sys/socket.h>

struct worker;
struct listener_config;
struct filter_chain;

/* Takes ownership of the accepted socket fd. */
void http_conn_start(struct worker *w, struct listener_config *lc, struct filter_chain *fc, int fd,
                     const struct sockaddr_storage *peer, const struct sockaddr_storage *local);

#endif
