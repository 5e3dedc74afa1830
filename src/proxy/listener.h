/* Listening sockets and filter chain selection (Envoy's filter_chain_match). */
#ifndef WEFT_PROXY_LISTENER_H
#define WEFT_PROXY_LISTENER_H

#include <sys/socket.h>

#include "proxy/config.h"

struct worker;
struct wlistener;

/* Opens a non-blocking listening socket on addr; with reuse_port every worker gets its own
 * socket on the same address (SO_REUSEPORT) and the kernel spreads connections. Returns the fd
 * or -errno. */
int listener_open(const struct sockaddr_storage *addr, socklen_t addrlen, bool reuse_port);
/* Accepts every pending connection on wl and hands each to its filter chain. */
void listener_accept_all(struct worker *w, struct wlistener *wl);

/* What a connection is known to be when its filter chain is chosen. */
struct chain_match_input {
    const struct sockaddr_storage *dst, *src;
    const char *server_name;               /* SNI from the TLS inspector, or NULL */
    const char *transport_protocol;        /* "tls" or "raw_buffer" */
    const char *const *application_protocols;  /* ALPN offered, or the HTTP inspector's result */
    size_t n_application_protocols;
};

/* Picks the filter chain as Envoy does, criteria in this order: destination port, destination
 * IP (longest prefix), server name (exact, then longest wildcard), transport protocol,
 * application protocols, source type, source IP (longest prefix), source port. A chain that
 * names a criterion beats one that leaves it unset; a chain whose criterion fails is out.
 * Falls back to the default chain; returns NULL when nothing matches. */
struct filter_chain *listener_match(const struct listener_config *lc, const struct chain_match_input *in);

/* Picks the filter chain for a connection to `dst` from `src` as Envoy does: by destination
 * port, then destination IP (longest prefix), transport protocol, source type, source IP
 * (longest prefix), source port; a chain that names a criterion beats one that leaves it unset.
 * Falls back to the default chain; returns NULL when nothing matches. */
struct filter_chain *listener_match_chain(const struct listener_config *lc, const struct sockaddr_storage *dst,
                                          const struct sockaddr_storage *src, const char *transport_protocol);

/* True when addr lies inside the CIDR range. */
bool cidr_contains(const struct cidr *c, const struct sockaddr_storage *addr);
/* Formats "ip:port" (IPv6 in brackets). */
void sockaddr_format(const struct sockaddr_storage *ss, char *out, size_t cap);

#endif
