/* weft-init's generated iptables-restore text against expected files derived from Istio's
 * golden tests (tests/data/init/README.md), and the cleanup plan built from iptables-save. */
#include <stdlib.h>
#include "init/init.h"
#include "test.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* Builds c's rules and compares v4 + v6 text with tests/data/init/NAME.rules. */
static void expect_rules(const struct init_config *c, const char *name)
{
    char path[256], err[INIT_ERR_MAX];
    snprintf(path, sizeof path, "tests/data/init/%s.rules", name);
    char *want = slurp(path);
    CHECK(want != NULL);
    if (!want)
        return;
    struct init_config v = *c;
    CHECK_EQ_INT(init_config_validate(&v, err), 0);
    struct init_text v4, v6;
    CHECK_EQ_INT(init_rules_build(&v, &v4, &v6, err), 0);
    char got[1 << 16];
    snprintf(got, sizeof got, "%s%s", v4.s ? v4.s : "", v6.s ? v6.s : "");
    if (strcmp(got, want) != 0)
        fprintf(stderr, "--- %s: got\n%s--- want\n%s", name, got, want);
    CHECK_EQ_STR(got, want);
    init_text_free(&v4);
    init_text_free(&v6);
}

#define SET(field, v) snprintf(c.field, sizeof c.field, "%s", v)

static void istio_goldens(void)
{
    struct init_config c;
    init_config_istio_defaults(&c);
    expect_rules(&c, "empty");
    init_config_istio_defaults(&c), SET(inbound_ports, "*");
    expect_rules(&c, "inbound-ports-wildcard");
    init_config_istio_defaults(&c), SET(inbound_ports, "*"), SET(inbound_ports_exclude, "22,80,443");
    expect_rules(&c, "inbound-wildcard-exclude");
    init_config_istio_defaults(&c), SET(outbound_ports_exclude, "22,80,443");
    expect_rules(&c, "outbound-ports-exclude");
    init_config_istio_defaults(&c), SET(outbound_ports_exclude, "22");
    expect_rules(&c, "outbound-ports-exclude-single");
    init_config_istio_defaults(&c), SET(inbound_ports, "32000,31000");
    expect_rules(&c, "inbound-ports-include");
    init_config_istio_defaults(&c), SET(service_cidr, "10.0.0.0/8");
    expect_rules(&c, "ipnets");
    init_config_istio_defaults(&c), SET(kube_virt_interfaces, "eth1,eth2"), SET(service_cidr, "*");
    expect_rules(&c, "kube-virt-interfaces");
    init_config_istio_defaults(&c), SET(exclude_interfaces, "not-istio-nic");
    expect_rules(&c, "basic-exclude-nic");
    init_config_istio_defaults(&c), SET(owner_groups_include, "java,202");
    expect_rules(&c, "outbound-owner-groups");
    init_config_istio_defaults(&c), SET(owner_groups_exclude, "888,ftp");
    expect_rules(&c, "outbound-owner-groups-exclude");
    init_config_istio_defaults(&c), SET(inbound_ports, "32000,31000"), SET(mode, "TPROXY");
    expect_rules(&c, "inbound-ports-tproxy");
    init_config_istio_defaults(&c), SET(inbound_ports, "*"), SET(mode, "TPROXY");
    expect_rules(&c, "inbound-ports-wildcard-tproxy");
}

static void istio_goldens_ipv6(void)
{
    struct init_config c;
    init_config_istio_defaults(&c);
    c.enable_ipv6 = true;
    expect_rules(&c, "ipv6-empty-inbound-ports");
    init_config_istio_defaults(&c);
    c.enable_ipv6 = true;
    SET(inbound_ports, "4000,5000"), SET(inbound_ports_exclude, "6000,7000,");
    SET(kube_virt_interfaces, "eth0,eth1");
    SET(service_exclude_cidr, "2001:db8::/32"), SET(service_cidr, "2001:db8::/32");
    expect_rules(&c, "ipv6-ipnets");
    init_config_istio_defaults(&c);
    c.enable_ipv6 = c.redirect_dns = true;
    SET(dns_servers, "127.0.0.53,::127.0.0.53"), SET(proxy_gid, "1,2"), SET(proxy_uid, "3,4");
    expect_rules(&c, "dns-uid-gid");
}

static void dns_capture_all(void)
{
    struct init_config c;
    char err[INIT_ERR_MAX];
    struct init_text v4, v6;
    init_config_istio_defaults(&c);
    c.redirect_dns = c.capture_all_dns = true;
    CHECK_EQ_INT(init_rules_build(&c, &v4, &v6, err), 0);
    CHECK(strstr(v4.s, "-A ISTIO_OUTPUT -j ISTIO_OUTPUT_DNS\n"
                       "-A ISTIO_OUTPUT_DNS -p tcp --dport 53 -j REDIRECT --to-ports 15053\n"
                       "-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j REDIRECT --to-port 15053\n"
                       "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN\n") != NULL);
    CHECK(strstr(v4.s, "-A PREROUTING -j ISTIO_INBOUND\n-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j CT --zone 2\n"
                       "-A ISTIO_INBOUND -p udp --sport 53 -j CT --zone 1\nCOMMIT\n") != NULL);
    init_text_free(&v4);
    init_text_free(&v6);
    /* --redirect-dns with no servers and no --capture-all-dns: capture stays off, as Istio. */
    init_config_istio_defaults(&c);
    c.redirect_dns = true;
    CHECK_EQ_INT(init_rules_build(&c, &v4, &v6, err), 0);
    CHECK(strstr(v4.s, "DNS") == NULL);
    init_text_free(&v4);
    init_text_free(&v6);
    /* resolv.conf: nameservers only, unusable scoped addresses skipped. */
    FILE *f = fopen("build/test_init_resolv.conf", "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("# comment\nsearch example.com\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\n"
          "nameserver  fd00::53 \noptions ndots:5\n", f);
    fclose(f);
    char list[256];
    CHECK_EQ_INT(init_read_resolv_conf("build/test_init_resolv.conf", list, sizeof list, err), 0);
    CHECK_EQ_STR(list, "10.96.0.10,fd00::53");
    CHECK_EQ_INT(init_read_resolv_conf("build/nonexistent/resolv.conf", list, sizeof list, err), -1);
    remove("build/test_init_resolv.conf");
}

static void weft_defaults(void)
{
    struct init_config c;
    char err[INIT_ERR_MAX];
    char *none[] = { "weft-init", NULL };
    CHECK_EQ_INT(init_parse_args(1, none, &c, err), 0);
    expect_rules(&c, "default");
    /* The injector's own arguments give the same rules. */
    char *injected[] = { "weft-init", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
                         "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020",
                         "--log_output_level=default:info", NULL };
    CHECK_EQ_INT(init_parse_args(18, injected, &c, err), 0);
    CHECK_EQ_STR(err, "");
    expect_rules(&c, "default");
    /* An annotation's extra ports come after the always-excluded ones. */
    char *extra[] = { "weft-init", "--istio-local-exclude-ports=8080,15021", NULL };
    CHECK_EQ_INT(init_parse_args(2, extra, &c, err), 0);
    CHECK_EQ_STR(c.inbound_ports_exclude, "15090,15020,8080,15021");
    CHECK_EQ_STR(c.proxy_gid, "1337");
    char *uid[] = { "weft-init", "-u", "3,4", NULL };
    CHECK_EQ_INT(init_parse_args(3, uid, &c, err), 0);
    CHECK_EQ_STR(c.proxy_gid, "3,4");
}

static void multiport_chunks(void)
{
    struct init_config c;
    char err[INIT_ERR_MAX];
    init_config_istio_defaults(&c);
    SET(outbound_ports_exclude, "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16");
    struct init_text v4, v6;
    CHECK_EQ_INT(init_rules_build(&c, &v4, &v6, err), 0);
    CHECK(strstr(v4.s, "-A ISTIO_OUTPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j RETURN\n"
                       "-A ISTIO_OUTPUT -p tcp --dport 16 -j RETURN\n") != NULL);
    CHECK(v6.s == NULL);
    init_text_free(&v4);
    init_text_free(&v6);
    /* Loopback in -i: the app's own lo traffic is captured (no "! --uid-owner" RETURN). */
    init_config_istio_defaults(&c);
    SET(service_cidr, "127.1.2.3/32");
    CHECK_EQ_INT(init_rules_build(&c, &v4, &v6, err), 0);
    CHECK(strstr(v4.s, "! --uid-owner") == NULL);
    CHECK(strstr(v4.s, "-A ISTIO_OUTPUT -d 127.1.2.3/32 -j ISTIO_REDIRECT\n") != NULL);
    init_text_free(&v4);
    init_text_free(&v6);
    /* --drop-invalid goes to mangle, written before nat. */
    init_config_istio_defaults(&c);
    c.drop_invalid = true;
    CHECK_EQ_INT(init_rules_build(&c, &v4, &v6, err), 0);
    CHECK(strncmp(v4.s, "* mangle\n-N ISTIO_DROP\n-A PREROUTING -m conntrack --ctstate INVALID -j ISTIO_DROP\n"
                        "-A ISTIO_DROP -j DROP\nCOMMIT\n* nat\n", 100) == 0);
    init_text_free(&v4);
    init_text_free(&v6);
}

static void cleanup_plan(void)
{
    struct init_config c;
    char err[INIT_ERR_MAX];
    init_config_istio_defaults(&c);
    SET(exclude_interfaces, "eth9");
    const char *save =
        "# Generated by iptables-nft-save v1.8.9 (nf_tables) on Tue Dec  1 21:40:00 2026\n"
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n:ISTIO_INBOUND - [0:0]\n:ISTIO_IN_REDIRECT - [0:0]\n"
        ":ISTIO_OUTPUT - [0:0]\n:ISTIO_REDIRECT - [0:0]\n"
        "-A PREROUTING -i eth9 -j RETURN\n-A PREROUTING -p tcp -j ISTIO_INBOUND\n"
        "-A PREROUTING -i eth8 -j RETURN\n-A OUTPUT -o eth9 -j RETURN\n-A OUTPUT -j ISTIO_OUTPUT\n"
        "-A POSTROUTING -j MASQUERADE\n"
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN\n"
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT\nCOMMIT\n";
    struct init_text out;
    CHECK_EQ_INT(init_cleanup_build(&c, INIT_V4, save, &out, err), 0);
    CHECK_EQ_STR(out.s, "* nat\n"
                        "-D PREROUTING -i eth9 -j RETURN\n-D PREROUTING -p tcp -j ISTIO_INBOUND\n"
                        "-D OUTPUT -o eth9 -j RETURN\n-D OUTPUT -j ISTIO_OUTPUT\n"
                        "-F ISTIO_INBOUND\n-F ISTIO_IN_REDIRECT\n-F ISTIO_OUTPUT\n-F ISTIO_REDIRECT\n"
                        "-X ISTIO_INBOUND\n-X ISTIO_IN_REDIRECT\n-X ISTIO_OUTPUT\n-X ISTIO_REDIRECT\n"
                        "COMMIT\n");
    init_text_free(&out);
    /* Nothing installed: nothing to do (a second cleanup is a no-op). */
    CHECK_EQ_INT(init_cleanup_build(&c, INIT_V4, "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", &out, err), 0);
    CHECK_EQ_INT(out.len, 0);
    init_text_free(&out);
    CHECK_EQ_INT(init_cleanup_build(&c, INIT_V4, "", &out, err), 0);
    CHECK_EQ_INT(out.len, 0);
    init_text_free(&out);
}

TEST_MAIN(TEST(istio_goldens), TEST(istio_goldens_ipv6), TEST(dns_capture_all), TEST(weft_defaults), TEST(multiport_chunks),
          TEST(cleanup_plan))
