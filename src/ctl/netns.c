/* ctl/netns: a pod's plumbing. Named network namespaces (`ip netns`, so /run/netns/NAME and
 * /etc/netns/NAME/hosts work as with `ip netns exec`), a veth pair onto the mesh bridge, and
 * entering a namespace to connect or to run a process there. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <grp.h>
#include <unistd.h>

#include "ctl/ctl.h"

int ctl_netns_add(const char *ns, char *err, size_t errlen)
{
    return CTL_RUN(err, errlen, "ip", "netns", "add", (char *)ns) == 0 ? 0 : -1;
}

void ctl_netns_del(const char *ns)
{
    ctl_netns_kill_all(ns);
    CTL_RUN(NULL, 0, "ip", "netns", "del", (char *)ns);
    char *d = ctl_sprintf("/etc/netns/%s", ns);
    ctl_rmtree(d);
    free(d);
}

int ctl_netns_wire(const char *ns, const char *host_if, const char *bridge, const char *ip,
                   int prefix, const char *gw, char *err, size_t errlen)
{
    char cidr[32];
    snprintf(cidr, sizeof cidr, "%s/%d", ip, prefix);
    char *n = (char *)ns, *h = (char *)host_if;
    if (CTL_RUN(err, errlen, "ip", "link", "add", h, "type", "veth", "peer", "name", "eth0", "netns", n) ||
        CTL_RUN(err, errlen, "ip", "link", "set", h, "master", (char *)bridge, "up") ||
        CTL_RUN(err, errlen, "ip", "-n", n, "link", "set", "lo", "up") ||
        CTL_RUN(err, errlen, "ip", "-n", n, "addr", "add", cidr, "dev", "eth0") ||
        CTL_RUN(err, errlen, "ip", "-n", n, "link", "set", "eth0", "up") ||
        CTL_RUN(err, errlen, "ip", "-n", n, "route", "add", "default", "via", (char *)gw))
        return -1;
    return 0;
}

int ctl_netns_kill_all(const char *ns)
{
    char *p = ctl_sprintf("/run/netns/%s", ns);
    struct stat want;
    int rc = stat(p, &want);
    free(p);
    if (rc < 0)
        return 0;
    int killed = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char q[300];
        snprintf(q, sizeof q, "/proc/%s/ns/net", e->d_name);
        struct stat st;
        if (stat(q, &st) == 0 && st.st_ino == want.st_ino && st.st_dev == want.st_dev) {
            kill(atoi(e->d_name), SIGKILL);
            killed++;
        }
    }
    if (d)
        closedir(d);
    return killed;
}

/* Switches this thread's network namespace to ns and returns the previous one's fd. */
static int switch_to(const char *ns)
{
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    char *p = ctl_sprintf("/run/netns/%s", ns);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    free(p);
    if (self < 0 || fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
        if (self >= 0)
            close(self);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return self;
}

int ctl_netns_connect(const char *ns, const char *ip, int port, int timeout_ms)
{
    int back = -1;
    if (ns && (back = switch_to(ns)) < 0)
        return -1;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (back >= 0) {
        if (setns(back, CLONE_NEWNET) < 0)
            abort(); /* cannot go home: nothing else would be right */
        close(back);
    }
    if (s < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(s);
        return -1;
    }
    struct pollfd p = {s, POLLOUT, 0};
    int err = 0;
    socklen_t el = sizeof err;
    if (poll(&p, 1, timeout_ms) != 1 || getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
        close(s);
        return -1;
    }
    int fl = fcntl(s, F_GETFL);
    fcntl(s, F_SETFL, fl & ~O_NONBLOCK);
    return s;
}

int ctl_http_get(const char *ns, const char *ip, int port, const char *path, char *buf, size_t cap)
{
    int s = ctl_netns_connect(ns, ip, port, 1000);
    if (s < 0)
        return -1;
    struct timeval tv = {2, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, ip);
    if (write(s, req, (size_t)n) != n) {
        close(s);
        return -1;
    }
    size_t got = 0;
    ssize_t k;
    while (got + 1 < cap && (k = read(s, buf + got, cap - 1 - got)) > 0)
        got += (size_t)k;
    close(s);
    buf[got] = 0;
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    char *body = strstr(buf, "\r\n\r\n");
    if (body)
        memmove(buf, body + 4, strlen(body + 4) + 1);
    return status;
}

int ctl_netns_enter(const char *ns)
{
    int back = switch_to(ns);
    if (back < 0)
        return -1;
    close(back);
    if (unshare(CLONE_NEWNS) < 0 || mount("", "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return -1;
    char *hosts = ctl_sprintf("/etc/netns/%s/hosts", ns);
    if (access(hosts, R_OK) == 0 && mount(hosts, "/etc/hosts", NULL, MS_BIND, NULL) < 0) {
        free(hosts);
        return -1;
    }
    free(hosts);
    return 0;
}

pid_t ctl_spawn_in(const char *ns, char *const argv[], char *const env[], long uid, const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    setsid();
    signal(SIGPIPE, SIG_DFL);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nul = open("/dev/null", O_RDONLY);
    if (fd < 0 || nul < 0 || ctl_netns_enter(ns) < 0) {
        dprintf(fd >= 0 ? fd : 2, "weftctl: cannot enter %s: %s\n", ns, strerror(errno));
        _exit(126);
    }
    dup2(nul, 0), dup2(fd, 1), dup2(fd, 2);
    for (size_t i = 0; env && env[i]; i++)
        putenv(env[i]);
    if (uid >= 0 && (setgroups(0, NULL) < 0 || setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 ||
                     setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)) {
        dprintf(2, "weftctl: cannot become uid %ld: %s\n", uid, strerror(errno));
        _exit(126);
    }
    execv(argv[0], argv);
    dprintf(2, "weftctl: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}
