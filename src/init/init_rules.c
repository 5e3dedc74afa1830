/* The rule generator: istio-iptables' rules, in its order, as iptables-restore text.
 * Rules are collected per address family (a rule may go to both), then written table by table
 * (filter, mangle, nat, raw — sorted, as Istio writes them): the "-N" lines for every non
 * built-in chain in order of first use, then the rules, then COMMIT. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "init/init.h"
#include "init/init_internal.h"

enum table { T_FILTER, T_MANGLE, T_NAT, T_RAW, T_COUNT };
static const char *const table_names[T_COUNT] = { "filter", "mangle", "nat", "raw" };

#define RULES_MAX 200000

struct rule {
    unsigned char fam;   /* INIT_V4 | INIT_V6 */
    unsigned char table;
    int insert_pos;      /* 0: append (-A), else -I CHAIN pos */
    char chain[32];
    char *params;
};

struct builder {
    struct rule *r;
    size_t n, cap;
    int fams;            /* families being built */
    bool failed;
};

void init_text_free(struct init_text *t)
{
    free(t->s);
    *t = (struct init_text){ 0 };
}

static void text_add(struct init_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(struct init_text *t, const char *fmt, ...)
{
    if (t->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || t->len + (size_t)n + 1 > INIT_TEXT_MAX) {
        t->overflow = true;
        return;
    }
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *s = realloc(t->s, cap);
        if (!s) {
            t->overflow = true;
            return;
        }
        t->s = s, t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static void add_rule(struct builder *b, int fam, enum table table, const char *chain, int pos,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void add_rule(struct builder *b, int fam, enum table table, const char *chain, int pos,
                     const char *fmt, ...)
{
    fam &= b->fams;
    if (!fam || b->failed)
        return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct rule *r = cap <= RULES_MAX ? realloc(b->r, cap * sizeof *r) : NULL;
        if (!r) {
            b->failed = true;
            return;
        }
        b->r = r, b->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    char *params = NULL;
    int n = vasprintf(&params, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    struct rule *r = &b->r[b->n++];
    r->fam = (unsigned char)fam;
    r->table = (unsigned char)table;
    r->insert_pos = pos;
    snprintf(r->chain, sizeof r->chain, "%s", chain);
    r->params = params;
}

static void builder_free(struct builder *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->r[i].params);
    free(b->r);
    *b = (struct builder){ 0 };
}

static bool builtin_chain(const char *c)
{
    return !strcmp(c, "INPUT") || !strcmp(c, "OUTPUT") || !strcmp(c, "FORWARD") ||
           !strcmp(c, "PREROUTING") || !strcmp(c, "POSTROUTING");
}

/* Istio's appendMultiportRules: one "--dport" rule for a single port, otherwise
 * "-m multiport --dports" rules of at most 15 ports (the multiport limit). */
static void multiport(struct builder *b, enum table table, const char *chain, const char *proto,
                      const char *list, const char *target)
{
    size_t total = init_list_count(list);
    if (total == 0)
        return;
    struct init_item it;
    const char *p = list;
    if (total == 1) {
        init_list_next(&p, &it);
        add_rule(b, INIT_V4 | INIT_V6, table, chain, 0, "-p %s --dport %.*s -j %s", proto,
                 (int)it.len, it.s, target);
        return;
    }
    char chunk[INIT_VALUE_MAX + 2]; /* a subset of the list's text: it always fits */
    size_t in_chunk = 0, len = 0;
    for (size_t i = 0; init_list_next(&p, &it); i++) {
        len += (size_t)snprintf(chunk + len, sizeof chunk - len, "%s%.*s", in_chunk ? "," : "",
                                (int)it.len, it.s);
        in_chunk++;
        if (in_chunk == 15 || i + 1 == total) {
            if (in_chunk == 1)
                add_rule(b, INIT_V4 | INIT_V6, table, chain, 0, "-p %s --dport %s -j %s", proto,
                         chunk, target);
            else
                add_rule(b, INIT_V4 | INIT_V6, table, chain, 0,
                         "-p %s -m multiport --dports %s -j %s", proto, chunk, target);
            in_chunk = len = 0;
        }
    }
}

/* A rule with the family's loopback address in it (Istio's AppendVersionedRule): fmt has one
 * %s for "127.0.0.1/32" (or HOST_IPV4_LOOPBACK_CIDR) / "::1/128". */
#define VERSIONED_IN(b, table, v4, v6, chain, fmt, ...) do { \
        add_rule(b, INIT_V4, table, chain, 0, fmt, v4, ##__VA_ARGS__); \
        add_rule(b, INIT_V6, table, chain, 0, fmt, v6, ##__VA_ARGS__); } while (0)
#define VERSIONED(b, v4, v6, chain, fmt, ...) VERSIONED_IN(b, T_NAT, v4, v6, chain, fmt, ##__VA_ARGS__)

/* In TPROXY mode, Envoy marks its outbound connections to the pod's own address with this so
 * they are not captured inbound again (Istio's OutboundMark). */
#define OUTBOUND_MARK "1338"

struct ranges {
    bool wildcard, has_loopback;
    struct init_cidr *cidrs;
    size_t n;
};

static int ranges_parse(const char *list, struct ranges *r)
{
    *r = (struct ranges){ 0 };
    if (strcmp(list, "*") == 0) {
        r->wildcard = true;
        return 0;
    }
    size_t n = init_list_count(list);
    if (n == 0)
        return 0;
    r->cidrs = calloc(n, sizeof *r->cidrs);
    if (!r->cidrs)
        return -1;
    struct init_item it;
    while (init_list_next(&list, &it)) {
        if (init_cidr_parse(it.s, it.len, &r->cidrs[r->n]) < 0)
            continue; /* validated earlier; Istio skips unparsable entries */
        r->has_loopback |= r->cidrs[r->n].loopback;
        r->n++;
    }
    return 0;
}

/* Istio's handleOutboundIncludeRules for one family. */
static void outbound_include(struct builder *b, const struct init_config *c,
                             const struct ranges *inc, int fam)
{
    struct init_item it;
    const char *p;
    if (inc->wildcard) {
        add_rule(b, fam, T_NAT, "ISTIO_OUTPUT", 0, "-j ISTIO_REDIRECT");
        for (p = c->kube_virt_interfaces; init_list_next(&p, &it);)
            add_rule(b, fam, T_NAT, "PREROUTING", 1, "-i %.*s -j ISTIO_REDIRECT", (int)it.len, it.s);
        return;
    }
    for (size_t i = 0; i < inc->n; i++) {
        if (inc->cidrs[i].family != fam)
            continue;
        for (p = c->kube_virt_interfaces; init_list_next(&p, &it);)
            add_rule(b, fam, T_NAT, "PREROUTING", 1, "-i %.*s -d %s -j ISTIO_REDIRECT",
                     (int)it.len, it.s, inc->cidrs[i].text);
        add_rule(b, fam, T_NAT, "ISTIO_OUTPUT", 0, "-d %s -j ISTIO_REDIRECT", inc->cidrs[i].text);
    }
}

/* Istio's SetupDNSRedir: port-53 traffic (TCP and UDP) of the app goes to the agent's DNS
 * proxy on 15053, and UDP DNS is split into two conntrack zones (agent <-> upstream resolvers:
 * zone 1, app <-> agent: zone 2) so the two legs' entries never collide. */
static void dns_rules(struct builder *b, const struct init_config *c, const char *const ids[2],
                      const char *const kinds[2])
{
    struct init_item it;
    const char *p;
    bool all = c->capture_all_dns;
    bool v4 = false, v6 = false;
    for (p = c->dns_servers; init_list_next(&p, &it);)
        memchr(it.s, ':', it.len) ? (v6 = true) : (v4 = true);
    add_rule(b, INIT_V4 | INIT_V6, T_RAW, "OUTPUT", 0, "-j ISTIO_OUTPUT_DNS");
    if (all || v4)
        add_rule(b, INIT_V4, T_NAT, "ISTIO_OUTPUT", 0, "-j ISTIO_OUTPUT_DNS");
    if (all || v6)
        add_rule(b, INIT_V6, T_NAT, "ISTIO_OUTPUT", 0, "-j ISTIO_OUTPUT_DNS");
    static const char *const protos[2] = { "tcp", "udp" };
    static const char *const to[2] = { "--to-ports", "--to-port" }; /* sic, as Istio writes them */
    for (int k = 0; k < 2; k++) {
        if (all) {
            add_rule(b, INIT_V4 | INIT_V6, T_NAT, "ISTIO_OUTPUT_DNS", 0,
                     "-p %s --dport 53 -j REDIRECT %s 15053", protos[k], to[k]);
            continue;
        }
        for (int fam = INIT_V4; fam <= INIT_V6; fam++)
            for (p = c->dns_servers; init_list_next(&p, &it);)
                if ((memchr(it.s, ':', it.len) != NULL) == (fam == INIT_V6))
                    add_rule(b, fam, T_NAT, "ISTIO_OUTPUT_DNS", 0,
                             "-p %s --dport 53 -d %.*s/%d -j REDIRECT %s 15053", protos[k],
                             (int)it.len, it.s, fam == INIT_V4 ? 32 : 128, to[k]);
    }
    for (int k = 0; k < 2; k++)
        for (p = ids[k]; init_list_next(&p, &it);) {
            add_rule(b, INIT_V4 | INIT_V6, T_RAW, "ISTIO_OUTPUT_DNS", 0,
                     "-p udp --dport 53 -m owner --%s-owner %.*s -j CT --zone 1", kinds[k], (int)it.len, it.s);
            add_rule(b, INIT_V4 | INIT_V6, T_RAW, "ISTIO_OUTPUT_DNS", 0,
                     "-p udp --sport 15053 -m owner --%s-owner %.*s -j CT --zone 2", kinds[k], (int)it.len, it.s);
        }
    if (all) {
        add_rule(b, INIT_V4 | INIT_V6, T_RAW, "PREROUTING", 0, "-j ISTIO_INBOUND");
        add_rule(b, INIT_V4 | INIT_V6, T_RAW, "ISTIO_OUTPUT_DNS", 0, "-p udp --dport 53 -j CT --zone 2");
        add_rule(b, INIT_V4 | INIT_V6, T_RAW, "ISTIO_INBOUND", 0, "-p udp --sport 53 -j CT --zone 1");
        return;
    }
    for (int fam = INIT_V4; fam <= INIT_V6; fam++) {
        if (!(fam == INIT_V4 ? v4 : v6))
            continue;
        add_rule(b, fam, T_RAW, "PREROUTING", 0, "-j ISTIO_INBOUND");
        for (p = c->dns_servers; init_list_next(&p, &it);) {
            if ((memchr(it.s, ':', it.len) != NULL) != (fam == INIT_V6))
                continue;
            int bits = fam == INIT_V4 ? 32 : 128;
            add_rule(b, fam, T_RAW, "ISTIO_OUTPUT_DNS", 0, "-p udp --dport 53 -d %.*s/%d -j CT --zone 2",
                     (int)it.len, it.s, bits);
            add_rule(b, fam, T_RAW, "ISTIO_INBOUND", 0, "-p udp --sport 53 -s %.*s/%d -j CT --zone 1",
                     (int)it.len, it.s, bits);
        }
    }
}

/* Collects every rule of c, in istio-iptables' order (capture/run.go Run). */
static int collect(struct builder *b, const struct init_config *c, char err[INIT_ERR_MAX])
{
    struct ranges exc, inc;
    struct init_item it;
    const char *p;
    if (ranges_parse(c->service_exclude_cidr, &exc) < 0 || ranges_parse(c->service_cidr, &inc) < 0) {
        snprintf(err, INIT_ERR_MAX, "out of memory");
        return -1;
    }
    const char *lo4 = c->host_ipv4_loopback_cidr, *lo6 = "::1/128";

    for (p = c->exclude_interfaces; init_list_next(&p, &it);) {
        add_rule(b, INIT_V4 | INIT_V6, T_NAT, "PREROUTING", 0, "-i %.*s -j RETURN", (int)it.len, it.s);
        add_rule(b, INIT_V4 | INIT_V6, T_NAT, "OUTPUT", 0, "-o %.*s -j RETURN", (int)it.len, it.s);
    }
    bool tproxy = strcmp(c->mode, "TPROXY") == 0;
    for (p = c->exclude_interfaces; tproxy && init_list_next(&p, &it);) {
        add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "PREROUTING", 0, "-i %.*s -j RETURN", (int)it.len, it.s);
        add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "OUTPUT", 0, "-o %.*s -j RETURN", (int)it.len, it.s);
    }
    for (p = c->kube_virt_interfaces; init_list_next(&p, &it);)
        add_rule(b, INIT_V4 | INIT_V6, T_NAT, "PREROUTING", 1, "-i %.*s -j RETURN", (int)it.len, it.s);
    if (c->drop_invalid) {
        add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "PREROUTING", 0,
                 "-m conntrack --ctstate INVALID -j ISTIO_DROP");
        add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "ISTIO_DROP", 0, "-j DROP");
    }
    add_rule(b, INIT_V4 | INIT_V6, T_NAT, "ISTIO_INBOUND", 0, "-p tcp --dport %s -j RETURN",
             c->inbound_tunnel_port);
    add_rule(b, INIT_V4 | INIT_V6, T_NAT, "ISTIO_REDIRECT", 0, "-p tcp -j REDIRECT --to-ports %s",
             c->proxy_port);
    add_rule(b, INIT_V4 | INIT_V6, T_NAT, "ISTIO_IN_REDIRECT", 0, "-p tcp -j REDIRECT --to-ports %s",
             c->inbound_capture_port);

    /* Inbound: everything but the excluded ports, or only the listed ports. REDIRECT sends
     * them to ISTIO_IN_REDIRECT (nat); TPROXY marks them in mangle and hands new connections
     * to the transparent listener, established ones to ISTIO_DIVERT. */
    if (init_list_count(c->inbound_ports) > 0) {
        enum table t = tproxy ? T_MANGLE : T_NAT;
        if (tproxy) {
            add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "ISTIO_DIVERT", 0, "-j MARK --set-mark %s", c->tproxy_mark);
            add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "ISTIO_DIVERT", 0, "-j ACCEPT");
            VERSIONED_IN(b, T_MANGLE, lo4, lo6, "ISTIO_TPROXY",
                         "! -d %s -p tcp -j TPROXY --tproxy-mark %s/0xffffffff --on-port %s",
                         c->tproxy_mark, c->inbound_capture_port);
        }
        add_rule(b, INIT_V4 | INIT_V6, t, "PREROUTING", 0, "-p tcp -j ISTIO_INBOUND");
        if (strcmp(c->inbound_ports, "*") == 0) {
            multiport(b, t, "ISTIO_INBOUND", "tcp", c->inbound_ports_exclude, "RETURN");
            if (tproxy) {
                add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "ISTIO_INBOUND", 0,
                         "-p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT");
                add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "ISTIO_INBOUND", 0, "-p tcp -j ISTIO_TPROXY");
            } else {
                add_rule(b, INIT_V4 | INIT_V6, T_NAT, "ISTIO_INBOUND", 0, "-p tcp -j ISTIO_IN_REDIRECT");
            }
        } else {
            for (p = c->inbound_ports; init_list_next(&p, &it);) {
                if (tproxy) {
                    add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "ISTIO_INBOUND", 0,
                             "-p tcp --dport %.*s -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT",
                             (int)it.len, it.s);
                    add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "ISTIO_INBOUND", 0,
                             "-p tcp --dport %.*s -j ISTIO_TPROXY", (int)it.len, it.s);
                } else {
                    add_rule(b, INIT_V4 | INIT_V6, T_NAT, "ISTIO_INBOUND", 0,
                             "-p tcp --dport %.*s -j ISTIO_IN_REDIRECT", (int)it.len, it.s);
                }
            }
        }
    }

    add_rule(b, INIT_V4 | INIT_V6, T_NAT, "OUTPUT", 0, "-j ISTIO_OUTPUT");
    multiport(b, T_NAT, "ISTIO_OUTPUT", "tcp", c->outbound_ports_exclude, "RETURN");
    multiport(b, T_NAT, "ISTIO_OUTPUT", "udp", c->outbound_ports_exclude, "RETURN");
    /* 127.0.0.6 / ::6 is the source of Envoy's inbound passthrough connections. */
    VERSIONED(b, "127.0.0.6/32", "::6/128", "ISTIO_OUTPUT", "-o lo -s %s -j RETURN");

    bool loopback_included = inc.has_loopback;
    /* DNS capture needs somewhere to send it: all of port 53, or the resolv.conf servers. */
    bool dns = c->redirect_dns && (c->capture_all_dns || init_list_count(c->dns_servers) > 0);
    static const char *const kinds[2] = { "uid", "gid" };
    const char *const ids[2] = { c->proxy_uid, c->proxy_gid };
    for (int k = 0; k < 2; k++) {
        for (p = ids[k]; init_list_next(&p, &it);) {
            /* The app calling itself through a VIP: Envoy's outbound leg goes back inbound
             * (with DNS capture, the uid rule leaves the agent's port 53 alone, as Istio). */
            if (dns && k == 0)
                VERSIONED(b, lo4, lo6, "ISTIO_OUTPUT",
                          "-o lo ! -d %s -p tcp -m multiport ! --dports 53,%s -m owner --uid-owner %.*s "
                          "-j ISTIO_IN_REDIRECT", c->inbound_tunnel_port, (int)it.len, it.s);
            else
                VERSIONED(b, lo4, lo6, "ISTIO_OUTPUT",
                          "-o lo ! -d %s -p tcp ! --dport %s -m owner --%s-owner %.*s -j ISTIO_IN_REDIRECT",
                          c->inbound_tunnel_port, kinds[k], (int)it.len, it.s);
            /* The app calling itself by its own address over lo is not captured (but TCP DNS to
             * a resolver on lo is, with DNS capture). */
            if (!loopback_included)
                add_rule(b, INIT_V4 | INIT_V6, T_NAT, "ISTIO_OUTPUT", 0,
                         "-o lo%s -m owner ! --%s-owner %.*s -j RETURN",
                         dns ? " -p tcp ! --dport 53" : "", kinds[k], (int)it.len, it.s);
            /* The proxy's own traffic is never captured. */
            add_rule(b, INIT_V4 | INIT_V6, T_NAT, "ISTIO_OUTPUT", 0,
                     "-m owner --%s-owner %.*s -j RETURN", kinds[k], (int)it.len, it.s);
        }
    }
    /* Capture by owner group: "*" minus the excluded groups, or only the listed groups. */
    if (strcmp(c->owner_groups_include, "*") == 0) {
        for (p = c->owner_groups_exclude; init_list_next(&p, &it);)
            add_rule(b, INIT_V4 | INIT_V6, T_NAT, "ISTIO_OUTPUT", 0, "-m owner --gid-owner %.*s -j RETURN",
                     (int)it.len, it.s);
    } else {
        char none_of[INIT_VALUE_MAX * 2] = "";
        size_t n = 0;
        for (p = c->owner_groups_include; init_list_next(&p, &it) && n + it.len + 24 < sizeof none_of;)
            n += (size_t)snprintf(none_of + n, sizeof none_of - n, "-m owner ! --gid-owner %.*s ",
                                  (int)it.len, it.s);
        add_rule(b, INIT_V4 | INIT_V6, T_NAT, "ISTIO_OUTPUT", 0, "%s-j RETURN", none_of);
    }
    if (dns)
        dns_rules(b, c, ids, kinds);
    VERSIONED(b, lo4, lo6, "ISTIO_OUTPUT", "-d %s -j RETURN");
    for (size_t i = 0; i < exc.n; i++)
        add_rule(b, exc.cidrs[i].family, T_NAT, "ISTIO_OUTPUT", 0, "-d %s -j RETURN", exc.cidrs[i].text);
    for (p = c->outbound_ports_include; init_list_next(&p, &it);)
        add_rule(b, INIT_V4 | INIT_V6, T_NAT, "ISTIO_OUTPUT", 0, "-p tcp --dport %.*s -j ISTIO_REDIRECT",
                 (int)it.len, it.s);
    outbound_include(b, c, &inc, INIT_V4);
    outbound_include(b, c, &inc, INIT_V6);
    if (tproxy) {
        /* Keep the mark Envoy's original_src sets as the connection's mark, and restore it on
         * the workload's replies so policy routing sends them back to Envoy. */
        add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "PREROUTING", 0,
                 "-p tcp -m mark --mark %s -j CONNMARK --save-mark", c->tproxy_mark);
        add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "OUTPUT", 0,
                 "-p tcp -o lo -m mark --mark %s -j RETURN", c->tproxy_mark);
        for (int k = 0; k < 2; k++)
            for (p = ids[k]; init_list_next(&p, &it);)
                VERSIONED_IN(b, T_MANGLE, lo4, lo6, "OUTPUT",
                             "! -d %s -p tcp -o lo -m owner --%s-owner %.*s -j MARK --set-mark " OUTBOUND_MARK,
                             kinds[k], (int)it.len, it.s);
        add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "OUTPUT", 0,
                 "-p tcp -m connmark --mark %s -j CONNMARK --restore-mark", c->tproxy_mark);
        add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "ISTIO_INBOUND", 1,
                 "-p tcp -m mark --mark %s -j RETURN", c->tproxy_mark);
        add_rule(b, INIT_V4, T_MANGLE, "ISTIO_INBOUND", 2, "-p tcp -s 127.0.0.6/32 -i lo -j RETURN");
        add_rule(b, INIT_V6, T_MANGLE, "ISTIO_INBOUND", 2, "-p tcp -s ::6/128 -i lo -j RETURN");
        add_rule(b, INIT_V4 | INIT_V6, T_MANGLE, "ISTIO_INBOUND", 3,
                 "-p tcp -i lo -m mark ! --mark " OUTBOUND_MARK " -j RETURN");
    }
    free(exc.cidrs);
    free(inc.cidrs);
    if (b->failed) {
        snprintf(err, INIT_ERR_MAX, "too many rules (at most %d)", RULES_MAX);
        return -1;
    }
    return 0;
}

static bool chain_listed(char (*seen)[32], size_t n, const char *chain)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(seen[i], chain))
            return true;
    return false;
}

/* Writes one family's restore text (Istio's buildRestore). */
static void write_restore(const struct builder *b, int fam, struct init_text *t)
{
    for (int tb = 0; tb < T_COUNT; tb++) {
        size_t count = 0;
        for (size_t i = 0; i < b->n; i++)
            count += (b->r[i].fam & fam) && b->r[i].table == tb;
        if (!count)
            continue;
        char (*seen)[32] = calloc(count * 2, sizeof *seen);
        size_t nseen = 0;
        if (!seen) {
            t->overflow = true;
            return;
        }
        text_add(t, "* %s\n", table_names[tb]);
        for (size_t i = 0; i < b->n; i++) {
            const struct rule *r = &b->r[i];
            if (!(r->fam & fam) || r->table != tb || builtin_chain(r->chain) ||
                chain_listed(seen, nseen, r->chain))
                continue;
            snprintf(seen[nseen++], 32, "%s", r->chain);
            text_add(t, "-N %s\n", r->chain);
        }
        /* Chains only jumped to, as Istio creates them too. */
        for (size_t i = 0; i < b->n; i++) {
            const struct rule *r = &b->r[i];
            const char *j = strstr(r->params, "-j ISTIO_");
            if (!(r->fam & fam) || r->table != tb || !j || strchr(j + 3, ' '))
                continue;
            if (!chain_listed(seen, nseen, j + 3) && nseen < count * 2) {
                snprintf(seen[nseen++], 32, "%s", j + 3);
                text_add(t, "-N %s\n", j + 3);
            }
        }
        for (size_t i = 0; i < b->n; i++) {
            const struct rule *r = &b->r[i];
            if (!(r->fam & fam) || r->table != tb)
                continue;
            if (r->insert_pos)
                text_add(t, "-I %s %d %s\n", r->chain, r->insert_pos, r->params);
            else
                text_add(t, "-A %s %s\n", r->chain, r->params);
        }
        text_add(t, "COMMIT\n");
        free(seen);
    }
}

int init_rules_build(const struct init_config *c, struct init_text *v4, struct init_text *v6,
                     char err[INIT_ERR_MAX])
{
    struct builder b = { .fams = INIT_V4 | (c->enable_ipv6 ? INIT_V6 : 0) };
    *v4 = (struct init_text){ 0 };
    *v6 = (struct init_text){ 0 };
    int rc = collect(&b, c, err);
    if (rc == 0) {
        write_restore(&b, INIT_V4, v4);
        if (c->enable_ipv6)
            write_restore(&b, INIT_V6, v6);
        if (v4->overflow || v6->overflow) {
            snprintf(err, INIT_ERR_MAX, "generated rules exceed %u bytes", INIT_TEXT_MAX);
            rc = -1;
        }
    }
    builder_free(&b);
    if (rc < 0) {
        init_text_free(v4);
        init_text_free(v6);
    }
    return rc;
}

/* ---- cleanup ---- */

/* True if the save line "-A CHAIN ..." (CHAIN built-in) jumps or goes to an ISTIO_* chain. */
static bool jumps_to_istio(const char *line, size_t len)
{
    for (size_t i = 0; i + 10 <= len; i++)
        if (!memcmp(line + i, " -j ISTIO_", 10) || !memcmp(line + i, " -g ISTIO_", 10))
            return true;
    return false;
}

struct table_plan {
    struct init_text del, flush, drop;
};

int init_cleanup_build(const struct init_config *c, int family, const char *save,
                       struct init_text *out, char err[INIT_ERR_MAX])
{
    *out = (struct init_text){ 0 };
    struct builder b = { .fams = family };
    if (c && collect(&b, c, err) < 0) {
        builder_free(&b);
        return -1;
    }
    struct table_plan plan[T_COUNT];
    memset(plan, 0, sizeof plan);
    int table = -1;
    for (const char *line = save; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len && line[0] == '*') {
            table = -1;
            for (int t = 0; t < T_COUNT; t++)
                if (len - 1 == strlen(table_names[t]) && !memcmp(line + 1, table_names[t], len - 1))
                    table = t;
        } else if (table >= 0 && len > 7 && !memcmp(line, ":ISTIO_", 7)) {
            const char *sp = memchr(line, ' ', len);
            int n = (int)((sp ? sp : line + len) - line - 1);
            text_add(&plan[table].flush, "-F %.*s\n", n, line + 1);
            text_add(&plan[table].drop, "-X %.*s\n", n, line + 1);
        } else if (table >= 0 && len > 3 && !memcmp(line, "-A ", 3)) {
            const char *chain = line + 3, *sp = memchr(chain, ' ', len - 3);
            char name[32];
            size_t cl = sp ? (size_t)(sp - chain) : len - 3;
            snprintf(name, sizeof name, "%.*s", (int)(cl < 31 ? cl : 31), chain);
            bool ours = builtin_chain(name) && jumps_to_istio(line, len);
            for (size_t i = 0; !ours && builtin_chain(name) && i < b.n; i++) {
                const struct rule *r = &b.r[i];
                size_t pl = strlen(r->params);
                ours = r->table == table && !strcmp(r->chain, name) && sp &&
                       len - (size_t)(sp + 1 - line) == pl && !memcmp(sp + 1, r->params, pl);
            }
            if (ours)
                text_add(&plan[table].del, "-D %.*s\n", (int)(len - 3), line + 3);
        }
        line += len + (nl ? 1 : 0);
    }
    builder_free(&b);
    for (int t = 0; t < T_COUNT; t++) {
        struct table_plan *p = &plan[t];
        if (p->del.len || p->flush.len)
            text_add(out, "* %s\n%s%s%sCOMMIT\n", table_names[t], p->del.s ? p->del.s : "",
                     p->flush.s ? p->flush.s : "", p->drop.s ? p->drop.s : "");
        bool of = p->del.overflow || p->flush.overflow || p->drop.overflow;
        init_text_free(&p->del);
        init_text_free(&p->flush);
        init_text_free(&p->drop);
        out->overflow |= of;
    }
    if (out->overflow) {
        init_text_free(out);
        snprintf(err, INIT_ERR_MAX, "cleanup rules exceed %u bytes", INIT_TEXT_MAX);
        return -1;
    }
    return 0;
}

int init_builtin_rules(const struct init_config *c, int family, struct init_text *out,
                       char err[INIT_ERR_MAX])
{
    *out = (struct init_text){ 0 };
    struct builder b = { .fams = family };
    if (collect(&b, c, err) < 0) {
        builder_free(&b);
        return -1;
    }
    for (size_t i = 0; i < b.n; i++) {
        const struct rule *r = &b.r[i];
        if (builtin_chain(r->chain) && !strstr(r->params, "-j ISTIO_"))
            text_add(out, "%s %s %s\n", table_names[r->table], r->chain, r->params);
    }
    builder_free(&b);
    if (out->overflow) {
        init_text_free(out);
        snprintf(err, INIT_ERR_MAX, "cleanup rules exceed %u bytes", INIT_TEXT_MAX);
        return -1;
    }
    return 0;
}
