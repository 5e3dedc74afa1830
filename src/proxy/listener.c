#include "proxy/listener.h"
#include "proxy/netrl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"
#include "proxy/http_conn.h"
#include "net/transport.h"
#include "proxy/pending.h"
#include "proxy/tcp_proxy.h"
#include "proxy/worker.h"

#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

void sockaddr_format(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, ntohs(in->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, cap, "unknown");
    }
}

int listener_open(const struct sockaddr_storage *addr, socklen_t addrlen, bool reuse_port)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (addr->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)addr, addrlen) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}

bool cidr_contains(const struct cidr *c, const struct sockaddr_storage *addr)
{
    const uint8_t *net, *a;
    uint32_t bits;
    struct in6_addr mapped;
    if (c->addr.ss_family == AF_INET && addr->ss_family == AF_INET) {
        net = (const uint8_t *)&((const struct sockaddr_in *)&c->addr)->sin_addr;
        a = (const uint8_t *)&((const struct sockaddr_in *)addr)->sin_addr;
        bits = c->prefix_len > 32 ? 32 : c->prefix_len;
    } else if (c->addr.ss_family == AF_INET6 && addr->ss_family == AF_INET6) {
        net = (const uint8_t *)&((const struct sockaddr_in6 *)&c->addr)->sin6_addr;
        a = (const uint8_t *)&((const struct sockaddr_in6 *)addr)->sin6_addr;
        bits = c->prefix_len > 128 ? 128 : c->prefix_len;
    } else if (c->addr.ss_family == AF_INET6 && addr->ss_family == AF_INET) {
        memset(&mapped, 0, sizeof mapped); /* v4 address against a v4-mapped v6 range */
        mapped.s6_addr[10] = mapped.s6_addr[11] = 0xff;
        memcpy(&mapped.s6_addr[12], &((const struct sockaddr_in *)addr)->sin_addr, 4);
        net = (const uint8_t *)&((const struct sockaddr_in6 *)&c->addr)->sin6_addr;
        a = mapped.s6_addr;
        bits = c->prefix_len > 128 ? 128 : c->prefix_len;
    } else {
        return false;
    }
    uint32_t full = bits / 8, rest = bits % 8;
    if (memcmp(net, a, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (net[full] & mask) == (a[full] & mask);
}

/* Longest prefix among ranges that contain addr: -1 none contains it, -2 the list is empty. */
static int best_prefix(const struct cidr *ranges, size_t n, const struct sockaddr_storage *addr)
{
    if (n == 0)
        return -2;
    int best = -1;
    for (size_t i = 0; i < n; i++)
        if (cidr_contains(&ranges[i], addr) && (int)ranges[i].prefix_len > best)
            best = (int)ranges[i].prefix_len;
    return best;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    return false;
}

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

/* Scores one criterion for every candidate and keeps only the best-scoring ones. A score < 0
 * eliminates the chain. Returns the number kept. */
typedef int (*score_fn)(const struct filter_chain *fc, const struct chain_match_input *in);

static size_t keep_best(struct filter_chain **c, size_t n, score_fn f, const struct chain_match_input *in)
{
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        int s = f(c[i], in);
        if (s > best)
            best = s;
    }
    size_t kept = 0;
    if (best < 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (f(c[i], in) == best)
            c[kept++] = c[i];
    return kept;
}

static int score_dst_port(const struct filter_chain *fc, const struct chain_match_input *in)
{
    if (fc->match.destination_port == 0)
        return 0;
    return fc->match.destination_port == port_of(in->dst) ? 1 : -1;
}

static int score_dst_ip(const struct filter_chain *fc, const struct chain_match_input *in)
{
    int p = best_prefix(fc->match.prefix_ranges, fc->match.n_prefix_ranges, in->dst);
    return p == -2 ? 0 : (p < 0 ? -1 : p + 1);
}

/* Envoy's server name precedence: an exact name, then the longest matching "*.suffix"
 * wildcard, then chains without server_names. A connection without SNI matches only those. */
static int score_server_name(const struct filter_chain *fc, const struct chain_match_input *in)
{
    if (fc->match.n_server_names == 0)
        return 0;
    const char *sni = in->server_name;
    if (!sni || !*sni)
        return -1;
    size_t n = strlen(sni);
    int best = -1;
    for (size_t i = 0; i < fc->match.n_server_names; i++) {
        const char *s = fc->match.server_names[i];
        if (s[0] == '*') {
            size_t sl = strlen(s + 1); /* ".suffix" */
            if (n > sl && strcasecmp(sni + n - sl, s + 1) == 0 && (int)sl > best)
                best = (int)sl;
        } else if (strcasecmp(s, sni) == 0) {
            return 1 << 20;
        }
    }
    return best;
}

static int score_transport(const struct filter_chain *fc, const struct chain_match_input *in)
{
    if (!fc->match.transport_protocol || !*fc->match.transport_protocol)
        return 0;
    return in->transport_protocol && strcmp(fc->match.transport_protocol, in->transport_protocol) == 0 ? 1 : -1;
}

static int score_app_protocols(const struct filter_chain *fc, const struct chain_match_input *in)
{
    if (fc->match.n_application_protocols == 0)
        return 0;
    for (size_t i = 0; i < fc->match.n_application_protocols; i++)
        for (size_t j = 0; j < in->n_application_protocols; j++)
            if (strcmp(fc->match.application_protocols[i], in->application_protocols[j]) == 0)
                return 1;
    return -1;
}

static int score_source_type(const struct filter_chain *fc, const struct chain_match_input *in)
{
    bool local = is_loopback(in->src) || same_ip(in->src, in->dst);
    switch (fc->match.source_type) {
    case 1: return local ? 1 : -1;  /* SAME_IP_OR_LOOPBACK */
    case 2: return local ? -1 : 1;  /* EXTERNAL */
    default: return 0;
    }
}

static int score_src_ip(const struct filter_chain *fc, const struct chain_match_input *in)
{
    int p = best_prefix(fc->match.source_prefix_ranges, fc->match.n_source_prefix_ranges, in->src);
    return p == -2 ? 0 : (p < 0 ? -1 : p + 1);
}

static int score_src_port(const struct filter_chain *fc, const struct chain_match_input *in)
{
    if (fc->match.n_source_ports == 0)
        return 0;
    for (size_t i = 0; i < fc->match.n_source_ports; i++)
        if (fc->match.source_ports[i] == port_of(in->src))
            return 1;
    return -1;
}

struct filter_chain *listener_match(const struct listener_config *lc, const struct chain_match_input *in)
{
    struct filter_chain *stack_buf[64];
    struct filter_chain **c = stack_buf;
    size_t n = lc->n_chains;
    if (n > 64)
        n = 64; /* documented limit: 64 filter chains per listener are considered */
    memcpy(c, lc->chains, n * sizeof *c);
    static const score_fn steps[] = {score_dst_port, score_dst_ip, score_server_name, score_transport,
                                     score_app_protocols, score_source_type, score_src_ip, score_src_port};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0] && n > 0; i++)
        n = keep_best(c, n, steps[i], in);
    return n > 0 ? c[0] : lc->default_chain;
}

struct filter_chain *listener_match_chain(const struct listener_config *lc, const struct sockaddr_storage *dst,
                                          const struct sockaddr_storage *src, const char *transport_protocol)
{
    struct chain_match_input in = {.dst = dst, .src = src, .transport_protocol = transport_protocol};
    return listener_match(lc, &in);
}

/* For a connection redirected to this listener by iptables, Envoy hands it to the listener
 * bound to its original destination (exact address first, then the wildcard on that port). */
static struct listener_config *original_dst_listener(struct worker *w, const struct sockaddr_storage *dst)
{
    struct listener_config *wildcard = NULL;
    for (size_t i = 0; i < w->snap->n_listeners; i++) {
        struct listener_config *lc = w->snap->listeners[i];
        if (lc->addr.ss_family != dst->ss_family || port_of(&lc->addr) != port_of(dst))
            continue;
        if (same_ip(&lc->addr, dst))
            return lc;
        bool any = lc->addr.ss_family == AF_INET
                       ? ((const struct sockaddr_in *)&lc->addr)->sin_addr.s_addr == INADDR_ANY
                       : IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&lc->addr)->sin6_addr);
        if (any)
            wildcard = lc;
    }
    return wildcard;
}

static bool get_original_dst(int fd, struct sockaddr_storage *out)
{
    socklen_t len = sizeof(struct sockaddr_in);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &len) == 0)
        return true;
    len = sizeof(struct sockaddr_in6);
    return getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, out, &len) == 0;
}

void listener_accept_all(struct worker *w, struct wlistener *wl)
{
    for (;;) {
        struct sockaddr_storage peer, local;
        socklen_t plen = sizeof peer, llen = sizeof local;
        int fd = accept4(wl->io.fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                log_warn("accept on %s: %s", wl->cfg->addr_str, strerror(errno));
            return;
        }
        getsockname(fd, (struct sockaddr *)&local, &llen);
        struct listener_config *lc = wl->cfg;
        if (lc->restore_original_dst) {
            struct sockaddr_storage orig;
            if (get_original_dst(fd, &orig)) {
                local = orig;
                struct listener_config *target = lc->use_original_dst ? original_dst_listener(w, &orig) : NULL;
                if (target && target != lc)
                    lc = target;
            }
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        stats_inc(lc->stats, w->id, LS_DOWNSTREAM_CX_TOTAL);
        stats_inc(lc->stats, w->id, LS_DOWNSTREAM_CX_ACTIVE);
        if (lc->tls_inspector || lc->http_inspector) {
            pending_start(w, lc, NULL, fd, &peer, &local); /* inspect, then match and maybe handshake */
            continue;
        }
        struct filter_chain *fc = listener_match_chain(lc, &local, &peer, "raw_buffer");
        if (!fc) {
            pending_reject_no_chain(w, lc, fd, &peer, &local, NULL);
            continue;
        }
        if (fc->tls) {
            pending_start(w, lc, fc, fd, &peer, &local); /* TLS handshake first */
            continue;
        }
        if (__builtin_expect(fc->n_netrl != 0, 0) && !netrl_admit(w, fc)) {
            close(fd); /* network local_ratelimit: no token */
            stats_add(lc->stats, w->id, LS_DOWNSTREAM_CX_ACTIVE, -1);
            stats_inc(lc->stats, w->id, LS_DOWNSTREAM_CX_DESTROY);
            continue;
        }
        struct transport tp = transport_plain(fd);
        if (fc->kind == NF_HTTP)
            http_conn_start(w, lc, fc, &tp, &peer, &local);
        else
            tcp_proxy_start(w, lc, fc, &tp, &peer, &local);
    }
}
