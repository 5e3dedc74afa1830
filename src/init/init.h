/* weft-init: the traffic interception rules Istio's istio-iptables (istio-init) installs for a
 * sidecar, with its flags and defaults. The rules are generated once as iptables-restore text
 * (init_rules_build) and that same text is printed by --dry-run or fed to
 * `iptables-restore --noflush` (init_run). Only rule generation allocates (rules, texts). */
#ifndef WEFT_INIT_H
#define WEFT_INIT_H
#include <stdbool.h>
#include <stddef.h>

#define INIT_VALUE_MAX 4096      /* longest flag value, bytes */
#define INIT_LIST_MAX 256        /* most entries in one comma-separated flag */
#define INIT_TEXT_MAX (1u << 20) /* largest generated iptables-restore text */
#define INIT_ERR_MAX 256

enum { INIT_V4 = 1, INIT_V6 = 2 }; /* address families, as bits */

/* One istio-iptables configuration. Every list is kept as the comma-separated text the user
 * gave (Istio's own form); init_config_validate() checks each entry. */
struct init_config {
    char proxy_port[16];           /* -p --envoy-port */
    char inbound_capture_port[16]; /* -z --inbound-capture-port */
    char inbound_tunnel_port[16];  /* -e --inbound-tunnel-port (15008, HBONE) */
    char proxy_uid[INIT_VALUE_MAX];  /* -u --proxy-uid (list) */
    char proxy_gid[INIT_VALUE_MAX];  /* -g --proxy-gid (list; default: the uid) */
    char mode[16];                   /* -m REDIRECT or TPROXY */
    char inbound_ports[INIT_VALUE_MAX];          /* -b: "*", a list, or "" (no inbound capture) */
    char inbound_ports_exclude[INIT_VALUE_MAX];  /* -d (only with -b '*') */
    char outbound_ports_include[INIT_VALUE_MAX]; /* -q --istio-outbound-ports */
    char outbound_ports_exclude[INIT_VALUE_MAX]; /* -o */
    char service_cidr[INIT_VALUE_MAX];           /* -i: "*", CIDR list, or "" (no outbound) */
    char service_exclude_cidr[INIT_VALUE_MAX];   /* -x */
    char kube_virt_interfaces[INIT_VALUE_MAX];   /* -k */
    char exclude_interfaces[INIT_VALUE_MAX];     /* -c */
    char tproxy_mark[16];        /* -t (only meaningful with TPROXY) */
    char tproxy_route_table[16]; /* -r */
    char host_ipv4_loopback_cidr[64]; /* HOST_IPV4_LOOPBACK_CIDR, default 127.0.0.1/32 */
    char owner_groups_include[INIT_VALUE_MAX]; /* $ISTIO_OUTBOUND_OWNER_GROUPS ("*") */
    char owner_groups_exclude[INIT_VALUE_MAX]; /* $ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE */
    char network_namespace[256]; /* --network-namespace: a name under /var/run/netns or a path */
    char dns_servers[INIT_VALUE_MAX]; /* with --redirect-dns: resolv.conf's nameservers (list) */
    bool redirect_dns;    /* --redirect-dns (default: $ISTIO_META_DNS_CAPTURE) */
    bool capture_all_dns; /* --capture-all-dns: every port-53 packet, not just to dns_servers */
    bool dry_run, cleanup, drop_invalid, dual_stack, help;
    bool enable_ipv6;   /* set by detection (or tests): also build and apply ip6tables rules */
};

/* Fills c with istio-iptables' own defaults (the rule generator's view: no inbound or outbound
 * capture unless -b / -i say so), as Istio's golden tests use. */
void init_config_istio_defaults(struct init_config *c);

/* Reads the "nameserver" addresses of a resolv.conf file into list (comma-separated, at most
 * INIT_LIST_MAX). Returns 0, or -1 with err if the file cannot be read. */
int init_read_resolv_conf(const char *path, char *list, size_t cap, char err[INIT_ERR_MAX]);

/* Parses weft-init's command line into c. Defaults are those of the istio-init container
 * Istio's injector writes (-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x '' -b '*'
 * -d 15090,15021,15020); 15090, 15021 and 15020 are always added to -d as the injector does.
 * argv is not kept. Returns 0, or -1 with a one-line message in err. */
int init_parse_args(int argc, char *const argv[], struct init_config *c, char err[INIT_ERR_MAX]);

/* Checks every value of c (ports, lists, CIDRs, names, mode). Returns 0 or -1 with err. */
int init_config_validate(const struct init_config *c, char err[INIT_ERR_MAX]);

/* A text buffer with a hard cap (INIT_TEXT_MAX). */
struct init_text {
    char *s;
    size_t len, cap;
    bool overflow;
};
void init_text_free(struct init_text *t);

/* Builds the iptables-restore input for IPv4 (v4) and, when c->enable_ipv6, IPv6 (v6; empty
 * otherwise), in Istio's rule order. c must have passed init_config_validate. The caller owns
 * and frees both texts. Returns 0 or -1 with err (text too large). */
int init_rules_build(const struct init_config *c, struct init_text *v4, struct init_text *v6,
                     char err[INIT_ERR_MAX]);

/* From the output of iptables-save (save, all tables) builds the iptables-restore --noflush
 * input that removes what weft-init/istio-iptables installed: every rule in a built-in chain
 * that jumps to an ISTIO_* chain, every built-in-chain rule the configuration c adds (the
 * interface RETURN rules), then flushes and deletes every ISTIO_* chain. out is empty when
 * nothing is installed. Returns 0 or -1 with err. */
int init_cleanup_build(const struct init_config *c, int family, const char *save,
                       struct init_text *out, char err[INIT_ERR_MAX]);

/* Lists the rules c adds to built-in chains that do not jump to an ISTIO_* chain (interface
 * RETURNs, TPROXY's MARK/CONNMARK rules), one per line as "TABLE CHAIN PARAMS", for a
 * cleanup that deletes them with `iptables -t TABLE -D CHAIN PARAMS` (iptables-save may print
 * them in another form). The caller frees out. Returns 0 or -1 with err. */
int init_builtin_rules(const struct init_config *c, int family, struct init_text *out,
                       char err[INIT_ERR_MAX]);

/* Runs the configuration: --dry-run prints the rules, --cleanup removes them, otherwise they
 * are applied with iptables-restore --noflush (existing ISTIO_* chains are removed first).
 * Returns a process exit code. */
int init_run(struct init_config *c);

#endif
