/* weft-init: installs (or with --cleanup removes) the iptables rules istio-iptables installs
 * for a sidecar. Bad flags: one line on stderr, exit 2. Failures to apply: exit 1. */
#include <stdio.h>
#include "init/init.h"

static void usage(void)
{
    puts("usage: weft-init [flags]   (istio-iptables' flags)\n"
         "  -p, --envoy-port PORT                          outbound capture port (15001)\n"
         "  -z, --inbound-capture-port PORT                inbound capture port (15006)\n"
         "  -e, --inbound-tunnel-port PORT                 HBONE tunnel port, never captured (15008)\n"
         "  -u, --proxy-uid UIDS / -g, --proxy-gid GIDS    the proxy's traffic is not captured (1337)\n"
         "  -m, --istio-inbound-interception-mode MODE     REDIRECT or TPROXY (REDIRECT)\n"
         "  -t, --istio-inbound-tproxy-mark MARK           TPROXY mark (1337)\n"
         "  -r, --istio-inbound-tproxy-route-table TABLE   TPROXY routing table (133)\n"
         "  -b, --istio-inbound-ports PORTS|*              inbound ports to capture ('*')\n"
         "  -d, --istio-local-exclude-ports PORTS          inbound ports not captured with -b '*'\n"
         "                                                 (15090,15021,15020 are always added)\n"
         "  -i, --istio-service-cidr CIDRS|*               outbound destinations to capture ('*')\n"
         "  -x, --istio-service-exclude-cidr CIDRS         outbound destinations not captured\n"
         "  -q, --istio-outbound-ports PORTS               outbound ports always captured\n"
         "  -o, --istio-local-outbound-ports-exclude PORTS outbound ports never captured\n"
         "  -k, --kube-virt-interfaces IFACES              inbound on these is treated as outbound\n"
         "  -c, --istio-exclude-interfaces IFACES          traffic on these is never captured\n"
         "      --redirect-dns / --capture-all-dns         DNS to resolv.conf's servers / all port 53 -> 15053\n"
         "      --drop-invalid                             drop conntrack-INVALID packets (mangle)\n"
         "      --dual-stack                               IPv6 rules too when an IPv6 address exists\n"
         "      --network-namespace NAME|PATH              work in this network namespace\n"
         "  -n, --dry-run                                  print the iptables-restore input, change nothing\n"
         "      --cleanup                                  remove the ISTIO_* chains and jumps (idempotent)");
}

int main(int argc, char **argv)
{
    struct init_config c;
    char err[INIT_ERR_MAX];
    if (init_parse_args(argc, argv, &c, err) < 0) {
        fprintf(stderr, "weft-init: %s\n", err);
        return 2;
    }
    if (c.help) {
        usage();
        return 0;
    }
    return init_run(&c);
}
