/* weft-init's command line: istio-iptables' names and forms, and a clear error for bad input. */
#include <stdlib.h>
#include "init/init.h"
#include "test.h"

static int parse(struct init_config *c, char *err, int argc, char **argv)
{
    return init_parse_args(argc, argv, c, err);
}
#define PARSE(c, err, ...) ({ char *a_[] = { "weft-init", __VA_ARGS__, NULL }; \
    parse(c, err, (int)(sizeof a_ / sizeof a_[0]) - 1, a_); })

static void forms(void)
{
    struct init_config c;
    char err[INIT_ERR_MAX];
    CHECK_EQ_INT(PARSE(&c, err, "-p15002", "--inbound-capture-port=15007", "-z", "15007",
                       "--proxy-uid", "1000", "-g=1001", "-n", "--cleanup=false"), 0);
    CHECK_EQ_STR(c.proxy_port, "15002");
    CHECK_EQ_STR(c.inbound_capture_port, "15007");
    CHECK_EQ_STR(c.proxy_uid, "1000");
    CHECK_EQ_STR(c.proxy_gid, "1001");
    CHECK(c.dry_run);
    CHECK(!c.cleanup);
    CHECK_EQ_INT(PARSE(&c, err, "-b", "", "-i", "", "-x", "10.0.0.0/8, 2001:db8::/32",
                       "--istio-local-outbound-ports-exclude", "22,1000:2000", "-k", "eth0",
                       "-c", "veth+", "-q", "443", "--dual-stack", "--drop-invalid"), 0);
    CHECK_EQ_STR(c.inbound_ports, "");
    CHECK(c.dual_stack && c.drop_invalid);
    CHECK_EQ_INT(PARSE(&c, err, "-u", ""), 0); /* as Istio: an empty uid means 1337 */
    CHECK_EQ_STR(c.proxy_uid, "1337");
    CHECK_EQ_INT(PARSE(&c, err, "--cleanup"), 0);
    CHECK(c.cleanup);
    CHECK_EQ_INT(PARSE(&c, err, "-m", "TPROXY", "-t", "1337", "-r", "133"), 0);
    CHECK_EQ_STR(c.mode, "TPROXY");
    CHECK_EQ_INT(PARSE(&c, err, "--redirect-dns", "--capture-all-dns"), 0);
    CHECK(c.redirect_dns && c.capture_all_dns);
    CHECK_EQ_INT(PARSE(&c, err, "-h"), 0);
    CHECK(c.help);
}

static void owner_groups_env(void)
{
    struct init_config c;
    char err[INIT_ERR_MAX];
    setenv("ISTIO_OUTBOUND_OWNER_GROUPS", "java,202", 1);
    CHECK_EQ_INT(PARSE(&c, err, "-n"), 0);
    CHECK_EQ_STR(c.owner_groups_include, "java,202");
    setenv("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", "888", 1);
    CHECK_EQ_INT(PARSE(&c, err, "-n"), -1);
    CHECK_EQ_STR(err, "ISTIO_OUTBOUND_OWNER_GROUPS and ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE cannot both be set");
    unsetenv("ISTIO_OUTBOUND_OWNER_GROUPS");
    CHECK_EQ_INT(PARSE(&c, err, "-n"), 0);
    CHECK_EQ_STR(c.owner_groups_include, "*");
    unsetenv("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE");
}

static void errors(void)
{
    struct init_config c;
    char err[INIT_ERR_MAX];
    struct { char *a, *b; const char *msg; } bad[] = {
        { "--nope", NULL, "unknown flag: --nope" },
        { "-Y", NULL, "unknown shorthand flag: 'Y' in -Y" },
        { "-p", NULL, "flag needs an argument: -p" },
        { "-p", "65536", "-p/--envoy-port: invalid port \"65536\"" },
        { "-z", "", "-z/--inbound-capture-port: invalid port \"\"" },
        { "-t", "0x10", "-t/--istio-inbound-tproxy-mark: invalid mark \"0x10\" (1-4294967295)" },
        { "-r", "254", "-r/--istio-inbound-tproxy-route-table: invalid table \"254\" (not 0 or the kernel's 253-255)" },
        { "-m", "NAT", "-m: invalid interception mode \"NAT\" (REDIRECT or TPROXY)" },
        { "-b", "80,*", "-b/--istio-inbound-ports: '*' must be the whole value" },
        { "-b", "80,x", "-b/--istio-inbound-ports: invalid port \"x\"" },
        { "-d", "0", "-d/--istio-local-exclude-ports: invalid port \"0\"" },
        { "-i", "10.0.0.1", "-i/--istio-service-cidr: invalid CIDR \"10.0.0.1\"" },
        { "-i", "10.0.0.0/8/9", "-i/--istio-service-cidr: invalid CIDR \"10.0.0.0/8/9\"" },
        { "-x", "*", "-x/--istio-service-exclude-cidr: '*' is not allowed" },
        { "-x", "::1/129", "-x/--istio-service-exclude-cidr: invalid CIDR \"::1/129\"" },
        { "-u", ",", "-u/-g: the proxy uid and gid must not be empty" },
        { "-u", "-1", "-u/--proxy-uid: invalid user or group id \"-1\"" },
        { "-c", "eth0 -j ACCEPT", "-c/--istio-exclude-interfaces: invalid interface name \"eth0 -j ACCEPT\"" },
        { "-k", "averyveryverylongname", "-k/--kube-virt-interfaces: invalid interface name \"averyveryverylongname\"" },
        { "--dry-run=maybe", NULL, "--dry-run: invalid boolean \"maybe\"" },
        { "--iptables-trace-logging", NULL, "--iptables-trace-logging is not supported by weft-init" },
        { "extra", NULL, "unexpected argument \"extra\"" },
        { "--network-namespace", "a/../b", "--network-namespace: \"a/../b\" is neither a name nor an absolute path" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = { "weft-init", bad[i].a, bad[i].b, NULL };
        int rc = init_parse_args(bad[i].b ? 3 : 2, argv, &c, err);
        CHECK_EQ_INT(rc, -1);
        CHECK_EQ_STR(err, bad[i].msg);
    }
}

TEST_MAIN(TEST(forms), TEST(owner_groups_env), TEST(errors))
