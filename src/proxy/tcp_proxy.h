/* envoy.filters.network.tcp_proxy: a byte pipe between the downstream connection and one
 * upstream host of a cluster (or of weighted clusters). */
#ifndef WEFT_PROXY_TCP_PROXY_H
#define WEFT_PROXY_TCP_PROXY_H

#include <sys/socket.h>

struct worker;
struct listener_config;
struct filter_chain;
struct transport;

/* Takes ownership of the accepted connection's transport (plaintext, or TLS after its
 * handshake): *tp is copied into the session and must not be used by the caller again. */
void tcp_proxy_start(struct worker *w, struct listener_config *lc, struct filter_chain *fc, struct transport *tp,
                     const struct sockaddr_storage *peer, const struct sockaddr_storage *local);

#endif
