/* Applying and removing the rules: picks the iptables variant in use (legacy or nf_tables) the
 * way istio-iptables does, runs <variant>-save / <variant>-restore --noflush with the text from
 * init_rules_build / init_cleanup_build, and detects IPv6 from the pod's addresses. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "init/init.h"

struct variant {
    char cmd[48], save[64], restore[64];
};

/* True if name is an executable in $PATH or in the sbin directories (root's usual PATH). */
static bool have_bin(const char *name)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char full[4200];
        snprintf(full, sizeof full, "%s/%s", d, name);
        if (access(full, X_OK) == 0)
            return true;
    }
    return false;
}

/* Runs argv (searched in PATH) with input on its stdin (if not NULL) and its stdout captured
 * into out (if not NULL, at most INIT_TEXT_MAX bytes); stderr is ours. Returns the exit
 * status, or -1 if it could not run. */
static int run_cmd_x(char *const argv[], const char *input, struct init_text *out, bool quiet)
{
    int in[2] = { -1, -1 }, o[2] = { -1, -1 };
    if ((input && pipe(in) < 0) || (out && pipe(o) < 0))
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (input) {
            dup2(in[0], 0);
            close(in[0]), close(in[1]);
        }
        if (out) {
            dup2(o[1], 1);
            close(o[0]), close(o[1]);
        }
        if (quiet) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0)
                dup2(null, 2);
        }
        char path[4096];
        snprintf(path, sizeof path, "%s:/usr/sbin:/sbin:/usr/bin:/bin",
                 getenv("PATH") ? getenv("PATH") : "");
        setenv("PATH", path, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    if (input) {
        close(in[0]);
        size_t len = strlen(input), off = 0;
        while (off < len) {
            ssize_t w = write(in[1], input + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        close(in[1]);
    }
    if (out) {
        close(o[1]);
        *out = (struct init_text){ 0 };
        char buf[8192];
        for (;;) {
            ssize_t r = read(o[0], buf, sizeof buf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            if (out->len + (size_t)r + 1 > INIT_TEXT_MAX) {
                out->overflow = true;
                continue;
            }
            if (out->len + (size_t)r + 1 > out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 65536;
                while (cap < out->len + (size_t)r + 1)
                    cap *= 2;
                char *s = realloc(out->s, cap);
                if (!s) {
                    out->overflow = true;
                    continue;
                }
                out->s = s, out->cap = cap;
            }
            memcpy(out->s + out->len, buf, (size_t)r);
            out->len += (size_t)r;
            out->s[out->len] = 0;
        }
        close(o[0]);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int run_cmd(char *const argv[], const char *input, struct init_text *out)
{
    return run_cmd_x(argv, input, out, false);
}

/* TPROXY's policy routing (Istio's configureTProxyRoutes): packets marked in ISTIO_DIVERT are
 * looked up in the table, whose one route delivers everything locally on lo. remove: undo it
 * (quietly: it may not be there). */
static int tproxy_routes(const struct init_config *c, int fam, bool remove)
{
    char *f = fam == INIT_V4 ? "-4" : "-6";
    char *all = fam == INIT_V4 ? "0.0.0.0/0" : "::/0";
    char *del[] = { "ip", f, "rule", "del", "fwmark", (char *)c->tproxy_mark, "lookup",
                    (char *)c->tproxy_route_table, NULL };
    for (int i = 0; i < 16 && run_cmd_x(del, NULL, NULL, true) == 0; i++)
        ;
    if (remove) {
        char *flush[] = { "ip", f, "route", "flush", "table", (char *)c->tproxy_route_table, NULL };
        run_cmd_x(flush, NULL, NULL, true);
        return 0;
    }
    char *add[] = { "ip", f, "rule", "add", "fwmark", (char *)c->tproxy_mark, "lookup",
                    (char *)c->tproxy_route_table, NULL };
    char *route[] = { "ip", f, "route", "replace", "local", all, "dev", "lo", "table",
                      (char *)c->tproxy_route_table, NULL };
    if (run_cmd(add, NULL, NULL) != 0 || run_cmd(route, NULL, NULL) != 0) {
        fprintf(stderr, "weft-init: could not set up TPROXY routing (ip %s rule/route, table %s)\n",
                f, c->tproxy_route_table);
        return -1;
    }
    return 0;
}

static bool has_rules(const char *save)
{
    return save && (strncmp(save, "-A ", 3) == 0 || strstr(save, "\n-A "));
}

/* istio-iptables' choice: iptables-legacy if it has rules in this network namespace, else
 * iptables-nft, else plain iptables (whatever backend it is). */
static int pick_variant(int fam, struct variant *v)
{
    const char *base = fam == INIT_V4 ? "iptables" : "ip6tables";
    char legacy[40], nft[40];
    snprintf(legacy, sizeof legacy, "%s-legacy", base);
    snprintf(nft, sizeof nft, "%s-nft", base);
    const char *use = NULL;
    char save[48];
    snprintf(save, sizeof save, "%s-save", legacy);
    if (have_bin(legacy) && have_bin(save)) {
        struct init_text out;
        char *argv[] = { save, NULL };
        if (run_cmd(argv, NULL, &out) == 0 && has_rules(out.s))
            use = legacy;
        init_text_free(&out);
    }
    if (!use && have_bin(nft))
        use = nft;
    if (!use && have_bin(base))
        use = base;
    if (!use)
        return -1;
    /* iptables-nft's tools are iptables-nft-save / -restore; plain: iptables-save / -restore. */
    snprintf(v->cmd, sizeof v->cmd, "%s", use);
    snprintf(v->save, sizeof v->save, "%s-save", use);
    snprintf(v->restore, sizeof v->restore, "%s-restore", use);
    return 0;
}

static int restore(const struct variant *v, const char *text)
{
    char *argv[] = { (char *)v->restore, "--noflush", NULL };
    return run_cmd(argv, text, NULL);
}

static int save_all(const struct variant *v, struct init_text *out)
{
    char *argv[] = { (char *)v->save, NULL };
    int rc = run_cmd(argv, NULL, out);
    if (rc != 0 || out->overflow) {
        init_text_free(out);
        return -1;
    }
    if (!out->s) {
        out->s = strdup("");
        if (!out->s)
            return -1;
    }
    return 0;
}

/* Removes what is installed for one family. Returns 0 (also when nothing was installed). */
static int cleanup_family(const struct init_config *c, int fam, const struct variant *v, bool dry)
{
    struct init_text save, plan;
    char err[INIT_ERR_MAX];
    if (save_all(v, &save) < 0) {
        fprintf(stderr, "weft-init: %s failed\n", v->save);
        return -1;
    }
    int rc = init_cleanup_build(c, fam, save.s, &plan, err);
    init_text_free(&save);
    if (rc < 0) {
        fprintf(stderr, "weft-init: %s\n", err);
        return -1;
    }
    if (plan.len && dry) {
        printf("# %s --noflush\n%s", v->restore, plan.s);
    } else if (plan.len) {
        rc = restore(v, plan.s);
        if (rc != 0)
            fprintf(stderr, "weft-init: %s --noflush (cleanup) failed with status %d\n", v->restore, rc);
        else
            fprintf(stderr, "weft-init: removed the ISTIO_* chains and their jumps (%s)\n", v->restore);
    }
    init_text_free(&plan);
    /* Built-in-chain rules without an ISTIO_* target: delete each by its own words (the
     * iptables tool matches them whatever form iptables-save prints them in). */
    struct init_text rules;
    if (!dry && rc == 0 && init_builtin_rules(c, fam, &rules, err) == 0) {
        for (char *line = rules.s; line && *line;) {
            char *nl = strchr(line, '\n');
            *nl = 0;
            char *argv[64] = { (char *)v->cmd, "-w", "5", "-t" };
            int argc = 4;
            for (char *sv = NULL, *w = strtok_r(line, " ", &sv); w && argc < 62; w = strtok_r(NULL, " ", &sv)) {
                argv[argc++] = w;
                if (argc == 5)
                    argv[argc++] = "-D";
            }
            argv[argc] = NULL;
            for (int i = 0; i < 16 && run_cmd_x(argv, NULL, NULL, true) == 0; i++)
                ;
            line = nl + 1;
        }
        init_text_free(&rules);
    }
    return rc == 0 ? 0 : -1;
}

/* Istio's getLocalIP: the first address that is not loopback or link-local decides (IPv6 if
 * it is an IPv6 address); with --dual-stack, any such IPv6 address enables IPv6. */
static bool detect_ipv6(bool dual_stack)
{
    struct ifaddrs *ifa = NULL;
    bool found = false, v6 = false;
    if (getifaddrs(&ifa) < 0)
        return false;
    for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        bool is6;
        if (i->ifa_addr->sa_family == AF_INET) {
            const unsigned char *a = (const unsigned char *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr;
            if (a[0] == 127 || (a[0] == 169 && a[1] == 254) || (a[0] == 224 && a[1] == 0 && a[2] == 0))
                continue;
            is6 = false;
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            const struct in6_addr *a = &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
            if (IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_LINKLOCAL(a) || IN6_IS_ADDR_MC_LINKLOCAL(a))
                continue;
            is6 = true;
        } else {
            continue;
        }
        found = true;
        if (!dual_stack || is6) {
            v6 = is6;
            break;
        }
    }
    freeifaddrs(ifa);
    if (!found)
        fprintf(stderr, "weft-init: warning: no non-loopback address found; IPv4 rules only\n");
    return v6;
}

static int apply_family(const struct init_config *c, int fam, const char *text)
{
    struct variant v;
    const char *what = fam == INIT_V4 ? "IPv4" : "IPv6";
    if (pick_variant(fam, &v) < 0) {
        fprintf(stderr, "weft-init: no %s binary found\n", fam == INIT_V4 ? "iptables" : "ip6tables");
        return -1;
    }
    struct init_text save;
    if (save_all(&v, &save) < 0) {
        fprintf(stderr, "weft-init: %s failed\n", v.save);
        return -1;
    }
    bool residue = strstr(save.s, ":ISTIO_") != NULL;
    init_text_free(&save);
    if (residue) {
        /* Istio's reconcile: replace what an earlier run left rather than add a second copy. */
        fprintf(stderr, "weft-init: existing ISTIO_* chains found (%s); removing them first\n", what);
        if (cleanup_family(c, fam, &v, false) < 0)
            return -1;
    }
    int rc = restore(&v, text);
    if (rc != 0) {
        fprintf(stderr, "weft-init: %s --noflush failed with status %d (%s rules not applied)\n",
                v.restore, rc, what);
        return -1;
    }
    fprintf(stderr, "weft-init: %s rules applied with %s --noflush\n", what, v.restore);
    return 0;
}

/* --network-namespace (istio-iptables' flag, as the CNI plugin uses it): enter the namespace
 * before anything else, so detection and every iptables/ip command run inside it. */
static int enter_netns(const char *ns)
{
    char path[300];
    if (ns[0] == '/')
        snprintf(path, sizeof path, "%s", ns);
    else
        snprintf(path, sizeof path, "/var/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
        fprintf(stderr, "weft-init: cannot enter network namespace %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int init_run(struct init_config *c)
{
    char err[INIT_ERR_MAX];
    signal(SIGPIPE, SIG_IGN);
    if (c->network_namespace[0] && enter_netns(c->network_namespace) < 0)
        return 1;
    if (c->cleanup) {
        int rc = 0;
        for (int fam = INIT_V4; fam <= INIT_V6; fam++) {
            struct variant v;
            if (pick_variant(fam, &v) < 0) {
                if (fam == INIT_V4) {
                    fprintf(stderr, "weft-init: no iptables binary found\n");
                    rc = 1;
                }
                continue;
            }
            if (cleanup_family(c, fam, &v, c->dry_run) < 0)
                rc = 1;
            if (!c->dry_run && strcmp(c->mode, "TPROXY") == 0)
                tproxy_routes(c, fam, true);
        }
        return rc;
    }
    c->enable_ipv6 = detect_ipv6(c->dual_stack);
    struct init_text v4, v6;
    if (init_rules_build(c, &v4, &v6, err) < 0) {
        fprintf(stderr, "weft-init: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (c->dry_run) {
        fputs(v4.s ? v4.s : "", stdout);
        if (c->enable_ipv6)
            printf("# ip6tables-restore --noflush\n%s", v6.s ? v6.s : "");
        fflush(stdout);
    } else {
        bool tproxy = strcmp(c->mode, "TPROXY") == 0 && c->inbound_ports[0];
        if (apply_family(c, INIT_V4, v4.s) < 0 || (tproxy && tproxy_routes(c, INIT_V4, false) < 0))
            rc = 1;
        if (rc == 0 && c->enable_ipv6) {
            /* ::6 is the source Envoy binds for inbound passthrough (IPv4 uses 127.0.0.6). */
            char *argv[] = { "ip", "-6", "addr", "replace", "::6/128", "dev", "lo", NULL };
            if (run_cmd(argv, NULL, NULL) != 0)
                fprintf(stderr, "weft-init: warning: could not add ::6/128 to lo\n");
            if (apply_family(c, INIT_V6, v6.s) < 0 || (tproxy && tproxy_routes(c, INIT_V6, false) < 0))
                rc = 1;
        }
    }
    init_text_free(&v4);
    init_text_free(&v6);
    return rc;
}
