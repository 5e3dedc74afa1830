/* ctl/state: a mesh's options, its state dir, and removing what a dead mesh left behind.
 *
 * Everything a mesh creates is named from its --name (default "wm"): network namespaces
 * NAME-POD and NAME-weftd, host veths NAMEvN, the bridge (--bridge, default NAME-br0), and the
 * root namespace's iptables rule carries the comment "weft-mesh NAME". So leftovers of a crash
 * are found by name alone, without trusting any file. */
#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/ctl.h"

void ctl_opts_default(struct ctl_opts *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->state_dir, sizeof o->state_dir, "/run/weft/mesh");
    snprintf(o->name, sizeof o->name, "wm");
    o->net = 0x0af40000u; /* 10.244.0.0 */
    o->prefix = 16;
    o->domain = "cluster.local";
}

static int parse_subnet(struct ctl_opts *o, const char *s)
{
    char ip[32];
    int pfx;
    struct in_addr a;
    if (sscanf(s, "%31[0-9.]/%d", ip, &pfx) != 2 || pfx < 8 || pfx > 24 || inet_pton(AF_INET, ip, &a) != 1)
        return -1;
    o->net = ntohl(a.s_addr) & ~((1u << (32 - pfx)) - 1);
    o->prefix = pfx;
    return 0;
}

int ctl_opts_parse(struct ctl_opts *o, int *argc, char **argv)
{
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        const char *a = argv[i], *v = i + 1 < *argc ? argv[i + 1] : NULL;
        int used = 1;
        if (!strcmp(a, "--state-dir") && v && strlen(v) < sizeof o->state_dir)
            snprintf(o->state_dir, sizeof o->state_dir, "%s", v);
        else if (!strcmp(a, "--name") && v) {
            if (strlen(v) > 8 || !strstr(v, "wm") || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(v)) {
                fprintf(stderr, "weftctl: --name: 1-8 lower-case letters and digits containing \"wm\"\n");
                return -1;
            }
            snprintf(o->name, sizeof o->name, "%s", v);
        } else if (!strcmp(a, "--bridge") && v && strlen(v) < sizeof o->bridge)
            snprintf(o->bridge, sizeof o->bridge, "%s", v);
        else if (!strcmp(a, "--subnet") && v) {
            if (parse_subnet(o, v) < 0) {
                fprintf(stderr, "weftctl: --subnet: expected A.B.C.D/N with N from 8 to 24\n");
                return -1;
            }
        } else if (!strcmp(a, "--foreground"))
            used = 0, o->foreground = 1;
        else if (!strcmp(a, "--state-dir") || !strcmp(a, "--name") || !strcmp(a, "--bridge") ||
                 !strcmp(a, "--subnet")) {
            fprintf(stderr, "weftctl: %s needs a value\n", a);
            return -1;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        i += used;
    }
    *argc = out;
    argv[out] = NULL;
    if (!o->bridge[0])
        snprintf(o->bridge, sizeof o->bridge, "%.8s-br0", o->name);
    return 0;
}

void ctl_ip_str(uint32_t net, uint32_t host, char out[16])
{
    uint32_t a = net + host;
    snprintf(out, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

char *ctl_state_path(const struct ctl_opts *o, const char *rel)
{
    return ctl_sprintf("%s/%s", o->state_dir, rel);
}

pid_t ctl_supervisor_pid(const struct ctl_opts *o)
{
    char *p = ctl_state_path(o, "supervisor.pid");
    char *t = ctl_read_file(p, NULL);
    free(p);
    pid_t pid = t ? (pid_t)atoi(t) : 0;
    free(t);
    if (pid <= 0 || kill(pid, 0) < 0)
        return 0;
    char c[64], *cmd;
    snprintf(c, sizeof c, "/proc/%d/cmdline", (int)pid);
    cmd = ctl_read_file(c, NULL);
    int ours = cmd && strstr(cmd, "weftctl");
    free(cmd);
    return ours ? pid : 0;
}

int ctl_iptables_forward(const struct ctl_opts *o, int add)
{
    char comment[40];
    snprintf(comment, sizeof comment, "weft-mesh %s", o->name);
    char *br = (char *)o->bridge;
    if (add)
        return CTL_RUN(NULL, 0, "iptables", "-w", "-I", "FORWARD", "-i", br, "-o", br, "-m", "comment",
                       "--comment", comment, "-j", "ACCEPT");
    int n = 0;
    while (n < 16 && CTL_RUN(NULL, 0, "iptables", "-w", "-D", "FORWARD", "-i", br, "-o", br, "-m", "comment",
                             "--comment", comment, "-j", "ACCEPT") == 0)
        n++;
    return n;
}

int ctl_clean_leftovers(const struct ctl_opts *o)
{
    int n = 0;
    pid_t sup = ctl_supervisor_pid(o);
    if (sup > 0 && sup != getpid()) {
        kill(sup, SIGKILL);
        n++;
    }
    char prefix[24];
    snprintf(prefix, sizeof prefix, "%s-", o->name);
    DIR *d = opendir("/run/netns");
    struct dirent *e;
    char **names = NULL;
    size_t nn = 0;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            names = realloc(names, (nn + 1) * sizeof *names);
            names[nn++] = strdup(e->d_name);
        }
    if (d)
        closedir(d);
    for (size_t i = 0; i < nn; i++) {
        ctl_netns_del(names[i]);
        free(names[i]);
        n++;
    }
    free(names);
    /* /etc/netns entries whose namespace is already gone. */
    if ((d = opendir("/etc/netns"))) {
        while ((e = readdir(d)))
            if (!strncmp(e->d_name, prefix, strlen(prefix))) {
                char *p = ctl_sprintf("/etc/netns/%s", e->d_name);
                ctl_rmtree(p);
                free(p);
                n++;
            }
        closedir(d);
    }
    /* Host ends of the pods' veth pairs: the kernel tears a deleted namespace down later, and
     * until then its pair still holds the name the next up wants. Deleting one end ends both. */
    if ((d = opendir("/sys/class/net"))) {
        size_t nl = strlen(o->name);
        while ((e = readdir(d))) {
            const char *v = e->d_name + nl; /* host ends are NAME "v" DIGITS (pods.c, supervisor.c) */
            if (strncmp(e->d_name, o->name, nl) || v[0] != 'v' || !v[1] || strspn(v + 1, "0123456789") != strlen(v + 1))
                continue;
            if (CTL_RUN(NULL, 0, "ip", "link", "del", e->d_name) == 0)
                n++;
        }
        closedir(d);
    }
    if (CTL_RUN(NULL, 0, "ip", "link", "del", (char *)o->bridge) == 0)
        n++;
    n += ctl_iptables_forward(o, 0);
    if (access(o->state_dir, F_OK) == 0) {
        ctl_rmtree(o->state_dir);
        n++;
    }
    return n;
}

int ctl_subnet_check(const struct ctl_opts *o)
{
    struct ifaddrs *all, *a;
    if (getifaddrs(&all) < 0)
        return 0;
    int rc = 0;
    for (a = all; a && !rc; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || !a->ifa_netmask)
            continue;
        uint32_t ip = ntohl(((struct sockaddr_in *)a->ifa_addr)->sin_addr.s_addr);
        uint32_t mask = ntohl(((struct sockaddr_in *)a->ifa_netmask)->sin_addr.s_addr);
        uint32_t ours = ~((1u << (32 - o->prefix)) - 1), both = mask & ours; /* the shorter one */
        if ((ip & both) != (o->net & both))
            continue;
        char net[16], mine[16], theirs[16];
        ctl_ip_str(o->net, 0, net);
        ctl_ip_str(o->net, 1, mine);
        ctl_ip_str(ip, 0, theirs);
        fprintf(stderr, "weftctl: --subnet %s/%d (bridge address %s) is already in use: %s/%d is on %s "
                        "(a mesh of another --name? weftctl mesh down --name NAME; or choose another --subnet)\n",
                net, o->prefix, mine, theirs, __builtin_popcount(mask), a->ifa_name);
        rc = -1;
    }
    freeifaddrs(all);
    return rc;
}
