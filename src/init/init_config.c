/* weft-init's command line: istio-iptables' flag names (short and long), its defaults as the
 * Istio injector writes them, and strict validation of every value. Parsing never exits and
 * keeps no global state, so the fuzzer can drive it. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "init/init.h"
#include "init/init_internal.h"

enum flag_kind { FLAG_STR, FLAG_BOOL, FLAG_IGNORED_STR };

struct flag {
    const char *name;
    char short_name;
    enum flag_kind kind;
    size_t off;  /* into struct init_config */
    size_t size; /* of the char array, for FLAG_STR */
};

#define STR(n, s, field) { n, s, FLAG_STR, offsetof(struct init_config, field), \
                           sizeof(((struct init_config *)0)->field) }
#define BOOL(n, s, field) { n, s, FLAG_BOOL, offsetof(struct init_config, field), 0 }

/* Flags that change behaviour weft-init does not implement: accepted only when false.
 * Indexed by the negated pseudo-offset of the flag (-3 .. -5). */
enum { UNSUP_TRACE = 3, UNSUP_SKIP, UNSUP_CNI, UNSUP_N };

static const struct flag flags[] = {
    STR("envoy-port", 'p', proxy_port),
    STR("inbound-capture-port", 'z', inbound_capture_port),
    STR("inbound-tunnel-port", 'e', inbound_tunnel_port),
    STR("proxy-uid", 'u', proxy_uid),
    STR("proxy-gid", 'g', proxy_gid),
    STR("istio-inbound-interception-mode", 'm', mode),
    STR("istio-inbound-ports", 'b', inbound_ports),
    STR("istio-local-exclude-ports", 'd', inbound_ports_exclude),
    STR("istio-exclude-interfaces", 'c', exclude_interfaces),
    STR("istio-service-cidr", 'i', service_cidr),
    STR("istio-service-exclude-cidr", 'x', service_exclude_cidr),
    STR("istio-outbound-ports", 'q', outbound_ports_include),
    STR("istio-local-outbound-ports-exclude", 'o', outbound_ports_exclude),
    STR("kube-virt-interfaces", 'k', kube_virt_interfaces),
    STR("istio-inbound-tproxy-mark", 't', tproxy_mark),
    STR("istio-inbound-tproxy-route-table", 'r', tproxy_route_table),
    STR("network-namespace", 0, network_namespace),
    BOOL("dry-run", 'n', dry_run),
    BOOL("cleanup", 0, cleanup),
    BOOL("cleanup-only", 0, cleanup),
    BOOL("clean", 0, cleanup),
    BOOL("drop-invalid", 0, drop_invalid),
    BOOL("dual-stack", 0, dual_stack),
    BOOL("help", 'h', help),
    /* Accepted for compatibility; weft-init always writes iptables-restore format. */
    { "restore-format", 'f', FLAG_BOOL, (size_t)-1, 0 },
    BOOL("redirect-dns", 0, redirect_dns),
    BOOL("capture-all-dns", 0, capture_all_dns),
    { "iptables-trace-logging", 0, FLAG_BOOL, (size_t)-3, 0 },
    { "skip-rule-apply", 0, FLAG_BOOL, (size_t)-4, 0 },
    { "cni-mode", 0, FLAG_BOOL, (size_t)-5, 0 },
    { "reconcile", 0, FLAG_BOOL, (size_t)-1, 0 },
    { "log_output_level", 0, FLAG_IGNORED_STR, 0, 0 },
    { "log_as_json", 0, FLAG_BOOL, (size_t)-1, 0 },
};

static void set_str(char *dst, size_t cap, const char *v)
{
    snprintf(dst, cap, "%s", v);
}

void init_config_istio_defaults(struct init_config *c)
{
    memset(c, 0, sizeof *c);
    set_str(c->proxy_port, sizeof c->proxy_port, "15001");
    set_str(c->inbound_capture_port, sizeof c->inbound_capture_port, "15006");
    set_str(c->inbound_tunnel_port, sizeof c->inbound_tunnel_port, "15008");
    set_str(c->proxy_uid, sizeof c->proxy_uid, "1337");
    set_str(c->proxy_gid, sizeof c->proxy_gid, "1337");
    set_str(c->mode, sizeof c->mode, "REDIRECT");
    set_str(c->tproxy_mark, sizeof c->tproxy_mark, "1337");
    set_str(c->tproxy_route_table, sizeof c->tproxy_route_table, "133");
    set_str(c->host_ipv4_loopback_cidr, sizeof c->host_ipv4_loopback_cidr, "127.0.0.1/32");
    set_str(c->owner_groups_include, sizeof c->owner_groups_include, "*");
}

static const struct flag *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

static const struct flag *find_short(char s)
{
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (flags[i].short_name && flags[i].short_name == s)
            return &flags[i];
    return NULL;
}

/* cobra's boolean spellings. Returns 0/1, or -1 for anything else. */
static int parse_bool(const char *v)
{
    static const char *const yes[] = { "1", "t", "T", "true", "TRUE", "True" };
    static const char *const no[] = { "0", "f", "F", "false", "FALSE", "False" };
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(v, yes[i]) == 0) return 1;
        if (strcmp(v, no[i]) == 0) return 0;
    }
    return -1;
}

static int set_flag(const struct flag *f, const char *shown, const char *value,
                    struct init_config *c, bool unsup[UNSUP_N], char err[INIT_ERR_MAX])
{
    if (f->kind == FLAG_IGNORED_STR)
        return 0;
    if (f->kind == FLAG_STR) {
        if (strlen(value) >= f->size) {
            snprintf(err, INIT_ERR_MAX, "%s: value too long (at most %zu bytes)", shown, f->size - 1);
            return -1;
        }
        memcpy((char *)c + f->off, value, strlen(value) + 1);
        return 0;
    }
    int b = value ? parse_bool(value) : 1;
    if (b < 0) {
        snprintf(err, INIT_ERR_MAX, "%s: invalid boolean \"%.64s\"", shown, value);
        return -1;
    }
    if (f->off == (size_t)-1)
        return 0;
    if (f->off >= (size_t)-UNSUP_CNI)
        unsup[(size_t)0 - f->off] = b;
    else
        *(bool *)((char *)c + f->off) = b;
    return 0;
}

/* Adds the ports Istio's injector always excludes from inbound capture (Prometheus 15090,
 * health 15021, agent status 15020) in front of the user's -d list, as its template writes
 * "15090,15021,<status port>,<annotation>". */
static int add_always_excluded(struct init_config *c, char err[INIT_ERR_MAX])
{
    static const char *const always[] = { "15090", "15021", "15020" };
    char out[INIT_VALUE_MAX];
    size_t n = 0;
    out[0] = 0;
    for (size_t i = 0; i < 3; i++) {
        if (init_list_contains(c->inbound_ports_exclude, always[i]))
            continue;
        n += (size_t)snprintf(out + n, sizeof out - n, "%s%s", n ? "," : "", always[i]);
    }
    struct init_item it;
    const char *p = c->inbound_ports_exclude;
    while (init_list_next(&p, &it)) {
        if (n + it.len + 2 >= sizeof out) {
            snprintf(err, INIT_ERR_MAX, "-d: value too long");
            return -1;
        }
        n += (size_t)snprintf(out + n, sizeof out - n, "%s%.*s", n ? "," : "", (int)it.len, it.s);
    }
    memcpy(c->inbound_ports_exclude, out, n + 1);
    return 0;
}

int init_parse_args(int argc, char *const argv[], struct init_config *c, char err[INIT_ERR_MAX])
{
    init_config_istio_defaults(c);
    set_str(c->inbound_ports, sizeof c->inbound_ports, "*");
    set_str(c->service_cidr, sizeof c->service_cidr, "*");
    c->proxy_gid[0] = 0;
    c->mode[0] = 0;
    bool unsup[UNSUP_N] = { false };
    /* As istio-iptables: DNS capture defaults to the agent's ISTIO_META_DNS_CAPTURE. */
    const char *dns_env = getenv("ISTIO_META_DNS_CAPTURE");
    c->redirect_dns = dns_env && parse_bool(dns_env) == 1;
    err[0] = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const struct flag *f;
        const char *value = NULL;
        char shown[80];
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            f = find_long(name, len);
            snprintf(shown, sizeof shown, "--%.*s", (int)(len > 60 ? 60 : len), name);
            if (!f) {
                snprintf(err, INIT_ERR_MAX, "unknown flag: %s", shown);
                return -1;
            }
            if (eq)
                value = eq + 1;
        } else if (a[0] == '-' && a[1] && a[1] != '-') {
            f = find_short(a[1]);
            snprintf(shown, sizeof shown, "-%c", a[1]);
            if (!f) {
                snprintf(err, INIT_ERR_MAX, "unknown shorthand flag: '%c' in %.60s", a[1], a);
                return -1;
            }
            if (a[2])
                value = a[2] == '=' ? a + 3 : a + 2;
        } else {
            snprintf(err, INIT_ERR_MAX, "unexpected argument \"%.60s\"", a);
            return -1;
        }
        if ((f->kind == FLAG_STR || f->kind == FLAG_IGNORED_STR) && !value) {
            if (i + 1 >= argc) {
                snprintf(err, INIT_ERR_MAX, "flag needs an argument: %s", shown);
                return -1;
            }
            value = argv[++i];
        }
        if (set_flag(f, shown, value, c, unsup, err) < 0)
            return -1;
    }
    if (c->help)
        return 0;
    if (unsup[UNSUP_TRACE] || unsup[UNSUP_SKIP] || unsup[UNSUP_CNI]) {
        snprintf(err, INIT_ERR_MAX, "%s is not supported by weft-init",
                 unsup[UNSUP_TRACE] ? "--iptables-trace-logging"
                 : unsup[UNSUP_SKIP] ? "--skip-rule-apply" : "--cni-mode");
        return -1;
    }
    if (!c->proxy_uid[0])
        set_str(c->proxy_uid, sizeof c->proxy_uid, "1337");
    if (!c->proxy_gid[0])
        memcpy(c->proxy_gid, c->proxy_uid, strlen(c->proxy_uid) + 1);
    if (!c->mode[0])
        set_str(c->mode, sizeof c->mode, "REDIRECT");
    if (add_always_excluded(c, err) < 0)
        return -1;
    /* Istio reads the nameservers only when it needs them (not with --capture-all-dns). */
    if (c->redirect_dns && !c->capture_all_dns &&
        init_read_resolv_conf("/etc/resolv.conf", c->dns_servers, sizeof c->dns_servers, err) < 0)
        return -1;
    /* Istio's env-only settings: which groups' outbound traffic is captured. */
    const char *groups = getenv("ISTIO_OUTBOUND_OWNER_GROUPS");
    const char *groups_ex = getenv("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE");
    if ((groups && strlen(groups) >= sizeof c->owner_groups_include) ||
        (groups_ex && strlen(groups_ex) >= sizeof c->owner_groups_exclude)) {
        snprintf(err, INIT_ERR_MAX, "ISTIO_OUTBOUND_OWNER_GROUPS(_EXCLUDE): value too long");
        return -1;
    }
    if (groups)
        set_str(c->owner_groups_include, sizeof c->owner_groups_include, groups);
    if (groups_ex)
        set_str(c->owner_groups_exclude, sizeof c->owner_groups_exclude, groups_ex);
    const char *env = getenv("HOST_IPV4_LOOPBACK_CIDR");
    if (env && *env) {
        if (strlen(env) >= sizeof c->host_ipv4_loopback_cidr) {
            snprintf(err, INIT_ERR_MAX, "HOST_IPV4_LOOPBACK_CIDR: value too long");
            return -1;
        }
        set_str(c->host_ipv4_loopback_cidr, sizeof c->host_ipv4_loopback_cidr, env);
    }
    return init_config_validate(c, err);
}

int init_read_resolv_conf(const char *path, char *list, size_t cap, char err[INIT_ERR_MAX])
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, INIT_ERR_MAX, "--redirect-dns: cannot read %s", path);
        return -1;
    }
    char line[512];
    size_t n = 0, count = 0;
    list[0] = 0;
    while (fgets(line, sizeof line, f) && count < INIT_LIST_MAX) {
        char word[16], addr[128];
        if (sscanf(line, "%15s %127s", word, addr) != 2 || strcmp(word, "nameserver") != 0)
            continue;
        unsigned char bin[16];
        if (inet_pton(AF_INET, addr, bin) != 1 && inet_pton(AF_INET6, addr, bin) != 1)
            continue; /* e.g. a scoped fe80::1%eth0: not usable in a rule */
        size_t len = strlen(addr);
        if (n + len + 2 > cap)
            break;
        n += (size_t)snprintf(list + n, cap - n, "%s%s", n ? "," : "", addr);
        count++;
    }
    fclose(f);
    return 0;
}

/* ---- list items ---- */

bool init_list_next(const char **p, struct init_item *it)
{
    while (**p) {
        const char *s = *p, *e = strchr(s, ',');
        if (!e)
            e = s + strlen(s);
        *p = *e ? e + 1 : e;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if (t > s) {
            it->s = s;
            it->len = (size_t)(t - s);
            return true;
        }
    }
    return false;
}

bool init_list_contains(const char *list, const char *item)
{
    struct init_item it;
    size_t n = strlen(item);
    while (init_list_next(&list, &it))
        if (it.len == n && memcmp(it.s, item, n) == 0)
            return true;
    return false;
}

size_t init_list_count(const char *list)
{
    struct init_item it;
    size_t n = 0;
    while (init_list_next(&list, &it))
        n++;
    return n;
}

/* ---- value checks ---- */

static bool port_ok(const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* A port or an iptables range "first:last". */
static bool port_item_ok(const char *s, size_t len)
{
    const char *colon = memchr(s, ':', len);
    if (!colon)
        return port_ok(s, len);
    return port_ok(s, (size_t)(colon - s)) && port_ok(colon + 1, len - (size_t)(colon - s) - 1);
}

static bool name_ok(const char *s, size_t len, size_t max, const char *extra)
{
    if (len == 0 || len > max || s[0] == '-' || s[0] == '!')
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '_' || ch == '.' || ch == '-' || (extra && ch && strchr(extra, ch));
        if (!ok)
            return false;
    }
    return true;
}

int init_cidr_parse(const char *s, size_t len, struct init_cidr *out)
{
    char buf[80];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *slash = strchr(buf, '/');
    if (!slash || !slash[1] || strlen(slash + 1) > 3)
        return -1;
    *slash = 0;
    unsigned bits = 0;
    for (const char *b = slash + 1; *b; b++) {
        if (*b < '0' || *b > '9')
            return -1;
        bits = bits * 10 + (unsigned)(*b - '0');
    }
    if (slash[1] == '0' && slash[2])
        return -1; /* netip.ParsePrefix refuses leading zeros */
    unsigned char addr[16];
    if (inet_pton(AF_INET, buf, addr) == 1) {
        if (bits > 32)
            return -1;
        out->family = INIT_V4;
        out->loopback = addr[0] == 127;
        inet_ntop(AF_INET, addr, out->text, sizeof out->text);
    } else if (inet_pton(AF_INET6, buf, addr) == 1) {
        if (bits > 128 || strchr(buf, '%'))
            return -1;
        static const unsigned char one[16] = { [15] = 1 };
        out->family = INIT_V6;
        out->loopback = memcmp(addr, one, 16) == 0;
        inet_ntop(AF_INET6, addr, out->text, sizeof out->text);
    } else {
        return -1;
    }
    size_t n = strlen(out->text);
    snprintf(out->text + n, sizeof out->text - n, "/%u", bits);
    return 0;
}

enum list_type { L_PORTS, L_PORTS_OR_STAR, L_CIDRS, L_CIDRS_OR_STAR, L_IDS, L_IFACES };

static int check_list(const char *flag, const char *v, enum list_type t, char err[INIT_ERR_MAX])
{
    if ((t == L_PORTS_OR_STAR || t == L_CIDRS_OR_STAR) && strcmp(v, "*") == 0)
        return 0;
    if (init_list_count(v) > INIT_LIST_MAX) {
        snprintf(err, INIT_ERR_MAX, "%s: more than %d entries", flag, INIT_LIST_MAX);
        return -1;
    }
    struct init_item it;
    const char *p = v;
    while (init_list_next(&p, &it)) {
        bool ok;
        struct init_cidr cidr;
        const char *what;
        switch (t) {
        case L_PORTS: case L_PORTS_OR_STAR:
            ok = port_item_ok(it.s, it.len), what = "port"; break;
        case L_CIDRS: case L_CIDRS_OR_STAR:
            ok = init_cidr_parse(it.s, it.len, &cidr) == 0, what = "CIDR"; break;
        case L_IDS:
            ok = name_ok(it.s, it.len, 32, NULL), what = "user or group id"; break;
        default:
            ok = name_ok(it.s, it.len, 15, "+:@"), what = "interface name"; break;
        }
        if (!ok) {
            if (it.len == 1 && it.s[0] == '*')
                snprintf(err, INIT_ERR_MAX, "%s: '*' must be the whole value", flag);
            else
                snprintf(err, INIT_ERR_MAX, "%s: invalid %s \"%.*s\"", flag, what,
                         (int)(it.len > 64 ? 64 : it.len), it.s);
            return -1;
        }
    }
    return 0;
}

int init_config_validate(const struct init_config *c, char err[INIT_ERR_MAX])
{
    const struct { const char *flag; const char *v; } ports[] = {
        { "-p/--envoy-port", c->proxy_port },
        { "-z/--inbound-capture-port", c->inbound_capture_port },
        { "-e/--inbound-tunnel-port", c->inbound_tunnel_port },
    };
    for (size_t i = 0; i < 3; i++)
        if (!port_ok(ports[i].v, strlen(ports[i].v))) {
            snprintf(err, INIT_ERR_MAX, "%s: invalid port \"%.32s\"", ports[i].flag, ports[i].v);
            return -1;
        }
    if (strcmp(c->mode, "REDIRECT") != 0 && strcmp(c->mode, "TPROXY") != 0) {
        snprintf(err, INIT_ERR_MAX, "-m: invalid interception mode \"%.32s\" (REDIRECT or TPROXY)",
                 c->mode);
        return -1;
    }
    if (!init_list_count(c->proxy_uid) || !init_list_count(c->proxy_gid)) {
        snprintf(err, INIT_ERR_MAX, "-u/-g: the proxy uid and gid must not be empty");
        return -1;
    }
    if (check_list("-u/--proxy-uid", c->proxy_uid, L_IDS, err) < 0 ||
        check_list("-g/--proxy-gid", c->proxy_gid, L_IDS, err) < 0 ||
        check_list("-b/--istio-inbound-ports", c->inbound_ports, L_PORTS_OR_STAR, err) < 0 ||
        check_list("-d/--istio-local-exclude-ports", c->inbound_ports_exclude, L_PORTS, err) < 0 ||
        check_list("-q/--istio-outbound-ports", c->outbound_ports_include, L_PORTS, err) < 0 ||
        check_list("-o/--istio-local-outbound-ports-exclude", c->outbound_ports_exclude, L_PORTS, err) < 0 ||
        check_list("-i/--istio-service-cidr", c->service_cidr, L_CIDRS_OR_STAR, err) < 0 ||
        check_list("-k/--kube-virt-interfaces", c->kube_virt_interfaces, L_IFACES, err) < 0 ||
        check_list("-c/--istio-exclude-interfaces", c->exclude_interfaces, L_IFACES, err) < 0)
        return -1;
    if (strstr(c->network_namespace, "..") ||
        (c->network_namespace[0] && c->network_namespace[0] != '/' && strchr(c->network_namespace, '/'))) {
        snprintf(err, INIT_ERR_MAX, "--network-namespace: \"%.64s\" is neither a name nor an absolute path",
                 c->network_namespace);
        return -1;
    }
    bool all_groups = strcmp(c->owner_groups_include, "*") == 0;
    if (!all_groups && init_list_count(c->owner_groups_exclude) > 0) {
        snprintf(err, INIT_ERR_MAX, "ISTIO_OUTBOUND_OWNER_GROUPS and ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE "
                 "cannot both be set");
        return -1;
    }
    if ((!all_groups && check_list("ISTIO_OUTBOUND_OWNER_GROUPS", c->owner_groups_include, L_IDS, err) < 0) ||
        check_list("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", c->owner_groups_exclude, L_IDS, err) < 0)
        return -1;
    if (init_list_count(c->dns_servers) > INIT_LIST_MAX) {
        snprintf(err, INIT_ERR_MAX, "DNS servers: more than %d", INIT_LIST_MAX);
        return -1;
    }
    struct init_item dns;
    for (const char *p = c->dns_servers; init_list_next(&p, &dns);) {
        char a[64];
        unsigned char bin[16];
        snprintf(a, sizeof a, "%.*s", (int)(dns.len < 63 ? dns.len : 63), dns.s);
        if (dns.len > 63 || (inet_pton(AF_INET, a, bin) != 1 && inet_pton(AF_INET6, a, bin) != 1)) {
            snprintf(err, INIT_ERR_MAX, "DNS server: invalid address \"%.64s\"", a);
            return -1;
        }
    }
    if (strcmp(c->service_exclude_cidr, "*") == 0) {
        snprintf(err, INIT_ERR_MAX, "-x/--istio-service-exclude-cidr: '*' is not allowed");
        return -1;
    }
    if (check_list("-x/--istio-service-exclude-cidr", c->service_exclude_cidr, L_CIDRS, err) < 0)
        return -1;
    /* Istio parses both with Atoi. The table gets "local default dev lo": never main/local. */
    char *end;
    unsigned long mark = strtoul(c->tproxy_mark, &end, 10);
    if (!c->tproxy_mark[0] || *end || c->tproxy_mark[0] == '-' || c->tproxy_mark[0] == '+' ||
        strlen(c->tproxy_mark) > 10 || mark == 0 || mark > 0xffffffffUL) {
        snprintf(err, INIT_ERR_MAX, "-t/--istio-inbound-tproxy-mark: invalid mark \"%.16s\" "
                 "(1-4294967295)", c->tproxy_mark);
        return -1;
    }
    unsigned long table = strtoul(c->tproxy_route_table, &end, 10);
    if (!c->tproxy_route_table[0] || *end || c->tproxy_route_table[0] == '-' ||
        c->tproxy_route_table[0] == '+' || strlen(c->tproxy_route_table) > 10 || table == 0 ||
        (table >= 253 && table <= 255) || table > 0xffffffffUL) {
        snprintf(err, INIT_ERR_MAX, "-r/--istio-inbound-tproxy-route-table: invalid table \"%.16s\" "
                 "(not 0 or the kernel's 253-255)", c->tproxy_route_table);
        return -1;
    }
    struct init_cidr lo;
    if (init_cidr_parse(c->host_ipv4_loopback_cidr, strlen(c->host_ipv4_loopback_cidr), &lo) < 0 ||
        lo.family != INIT_V4 || !lo.loopback) {
        snprintf(err, INIT_ERR_MAX, "HOST_IPV4_LOOPBACK_CIDR: \"%.32s\" is not an IPv4 loopback CIDR",
                 c->host_ipv4_loopback_cidr);
        return -1;
    }
    return 0;
}
