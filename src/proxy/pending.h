/* A downstream connection before its network filter runs: listener filters (tls_inspector,
 * http_inspector) peek at its first bytes, the filter chain is chosen with what they found,
 * and a chain with a TLS transport socket runs the handshake here, without blocking the
 * worker. Then the connection (with its transport) goes to the HTTP connection manager or
 * tcp_proxy. Failures are counted (listener.<addr>.ssl.*), written to the listener's access
 * logs with %DOWNSTREAM_TRANSPORT_FAILURE_REASON%, and closed. */
#ifndef WEFT_PROXY_PENDING_H
#define WEFT_PROXY_PENDING_H

#include <sys/socket.h>

struct worker;
struct listener_config;
struct filter_chain;

/* Takes ownership of fd. fc == NULL: run the listener filters and match a chain first;
 * otherwise fc (which has TLS) is the chain and the handshake starts at once. */
void pending_start(struct worker *w, struct listener_config *lc, struct filter_chain *fc, int fd,
                   const struct sockaddr_storage *peer, const struct sockaddr_storage *local);
/* No filter chain matched: counts no_filter_chain_match, logs and closes fd. */
void pending_reject_no_chain(struct worker *w, struct listener_config *lc, int fd, const struct sockaddr_storage *peer,
                             const struct sockaddr_storage *local, const char *server_name);

#endif
