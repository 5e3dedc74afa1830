/* envoy.filters.network.tcp_proxy: a byte pipe between the downstream connection and one
 * upstream host of a cluster (or of weighted clusters). */
#ifndef WEFT_PROXY_TCP_PROXY_H
#define WEFT_PROXY_TCP_PROXY_H

#include <sys/socket.h>

struct worker;
struct listener_config;
struct filter_chain;

/* Takes ownership of fd. */
void tcp_proxy_start(struct worker *w, struct listener_config *lc, struct filter_chain *fc, int fd,
                     const struct sockaddr_storage *peer, const struct sockaddr_storage *local);

#endif
