/* weftctl: `weftctl mesh <verb>`. The client side of every verb: up starts the supervisor
 * (src/ctl/supervisor.c) and relays its progress; the others talk to it or read the state dir. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl/ctl.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: weftctl mesh up -f FILE... [--foreground]\n"
            "       weftctl mesh apply -f FILE... | delete -f FILE...\n"
            "       weftctl mesh status | exec POD -- CMD... | logs POD [--proxy] | down\n"
            "options: --state-dir DIR (/run/weft/mesh)  --name NAME (wm)  --bridge NAME (NAME-br0)\n"
            "         --subnet CIDR (10.244.0.0/16)\n");
}

int ctl_preflight(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "weftctl: mesh needs root (network namespaces and iptables): run it with sudo\n");
        return -1;
    }
    char *ipt = ctl_which("iptables"), *ip = ctl_which("ip"), *ipr = ctl_which("iptables-restore");
    int ok = ipt && ip && ipr;
    if (!ok)
        fprintf(stderr, "weftctl: %s is missing: install %s (apt-get install %s)\n",
                !ip ? "ip" : "iptables", !ip ? "iproute2" : "iptables", !ip ? "iproute2" : "iptables");
    free(ipt), free(ip), free(ipr);
    return ok ? 0 : -1;
}

int ctl_request(const struct ctl_opts *o, const char *const *words, size_t n)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(o->state_dir) > sizeof a.sun_path - 10)
        return -1;
    memcpy(a.sun_path, o->state_dir, strlen(o->state_dir));
    strcat(a.sun_path, "/ctl.sock");
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || !ctl_supervisor_pid(o) || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        if (s >= 0)
            close(s);
        return -1;
    }
    char *req = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&req, &len);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%s", i ? "\t" : "", words[i]);
    fputc('\n', f);
    fclose(f);
    ssize_t w = write(s, req, len);
    free(req);
    if (w < 0) {
        close(s);
        return -1;
    }
    FILE *in = fdopen(s, "r");
    char line[4096];
    int rc = 1;
    while (fgets(line, sizeof line, in)) {
        if (!strncmp(line, "END ", 4)) {
            rc = atoi(line + 4);
            break;
        }
        fputs(line, stdout);
    }
    fclose(in);
    fflush(stdout);
    return rc;
}

/* -f FILE... (also -f=FILE, --filename) into files. */
static size_t files_of(int argc, char **argv, char **files)
{
    size_t n = 0;
    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "-f") || !strcmp(argv[i], "--filename")) && i + 1 < argc) {
            while (i + 1 < argc && argv[i + 1][0] != '-')
                files[n++] = argv[++i];
        } else {
            fprintf(stderr, "weftctl: unexpected argument %s\n", argv[i]);
            return (size_t)-1;
        }
    }
    return n;
}

/* Frees a file list whose first n entries were made absolute (each its own allocation). */
static void free_files(char **files, size_t n)
{
    for (size_t i = 0; files && i < n; i++)
        free(files[i]);
    free(files);
}

int ctl_cmd_up(int argc, char **argv)
{
    struct ctl_opts o;
    ctl_opts_default(&o);
    if (ctl_opts_parse(&o, &argc, argv) < 0)
        return 2;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    size_t n = files ? files_of(argc, argv, files) : 0;
    if (n == (size_t)-1 || n == 0) {
        fprintf(stderr, "weftctl: mesh up needs -f FILE...\n");
        free(files);
        return 2;
    }
    int rc = 1;
    size_t owned = 0; /* files[0..owned) are allocated (made absolute) */
    if (ctl_preflight() < 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (access(files[i], R_OK) < 0) {
            fprintf(stderr, "weftctl: %s: %s\n", files[i], strerror(errno));
            goto out;
        }
    if (ctl_supervisor_pid(&o)) {
        fprintf(stderr, "weftctl: a mesh is already up (state in %s): weftctl mesh apply, or down first\n",
                o.state_dir);
        goto out;
    }
    int left = ctl_clean_leftovers(&o);
    if (left)
        printf("removed %d leftovers of an earlier mesh\n", left);
    if (ctl_subnet_check(&o) < 0)
        goto out;
    if (ctl_mkdirs(o.state_dir) < 0) {
        fprintf(stderr, "weftctl: cannot create %s: %s\n", o.state_dir, strerror(errno));
        goto out;
    }
    for (; owned < n; owned++) {
        char *abs = realpath(files[owned], NULL);
        files[owned] = abs ? abs : strdup(files[owned]);
    }
    fflush(stdout);
    if (o.foreground) {
        rc = ctl_supervise(&o, files, n, -1);
        goto out;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        goto out;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        setsid();
        char *log = ctl_state_path(&o, "supervisor.log");
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        dup2(nul, 0), dup2(fd, 1), dup2(fd, 2);
        free(log);
        _exit(ctl_supervise(&o, files, n, p[1]));
    }
    close(p[1]);
    FILE *in = fdopen(p[0], "r");
    char line[4096];
    while (in && fgets(line, sizeof line, in)) {
        if (!strncmp(line, "END ", 4)) {
            rc = atoi(line + 4);
            break;
        }
        fputs(line, stdout);
        fflush(stdout);
    }
    if (in)
        fclose(in);
out:
    free_files(files, owned);
    return rc;
}

/* Reads the state dir's options back (name, bridge, subnet were chosen at up). */
static int client_opts(struct ctl_opts *o, int *argc, char **argv)
{
    ctl_opts_default(o);
    return ctl_opts_parse(o, argc, argv);
}

int ctl_cmd_down(int argc, char **argv)
{
    struct ctl_opts o;
    if (client_opts(&o, &argc, argv) < 0)
        return 2;
    if (ctl_preflight() < 0)
        return 1;
    pid_t pid = ctl_supervisor_pid(&o);
    const char *w[] = {"down"};
    if (pid && ctl_request(&o, w, 1) >= 0) {
        for (int i = 0; i < 300 && kill(pid, 0) == 0; i++)
            ctl_sleep_ms(100);
    }
    int left = ctl_clean_leftovers(&o);
    if (!pid)
        printf(left ? "no mesh was running; removed %d leftovers\n" : "no mesh is running\n", left);
    return 0;
}

int ctl_cmd_apply(int argc, char **argv, int del)
{
    struct ctl_opts o;
    if (client_opts(&o, &argc, argv) < 0)
        return 2;
    char **files = calloc((size_t)argc + 2, sizeof *files);
    size_t n = files ? files_of(argc, argv, files + 1) : 0;
    if (n == (size_t)-1 || n == 0) {
        fprintf(stderr, "weftctl: mesh %s needs -f FILE...\n", del ? "delete" : "apply");
        free(files);
        return 2;
    }
    files[0] = del ? "delete" : "apply";
    int rc = 1;
    size_t owned = 1; /* files[1..owned) were made absolute */
    for (; owned <= n; owned++) {
        char *abs = realpath(files[owned], NULL);
        if (!abs) {
            fprintf(stderr, "weftctl: %s: %s\n", files[owned], strerror(errno));
            goto out;
        }
        files[owned] = abs;
    }
    rc = ctl_request(&o, (const char *const *)files, n + 1);
    if (rc < 0)
        fprintf(stderr, "weftctl: no mesh is running (weftctl mesh up -f FILE...)\n");
    rc = rc < 0 ? 1 : rc;
out:
    for (size_t i = 1; i < owned; i++)
        free(files[i]);
    free(files);
    return rc;
}

int ctl_cmd_status(int argc, char **argv)
{
    struct ctl_opts o;
    if (client_opts(&o, &argc, argv) < 0)
        return 2;
    const char *w[] = {"status"};
    int rc = ctl_request(&o, w, 1);
    if (rc < 0)
        fprintf(stderr, "weftctl: no mesh is running\n");
    return rc < 0 ? 1 : rc;
}

/* Finds POD (a name, pod/NAME, or deploy/NAME: the Deployment's first pod) in pods.txt. */
static int find_pod(const struct ctl_opts *o, const char *want, char *name, char *netns)
{
    char *path = ctl_state_path(o, "pods.txt"), *t = ctl_read_file(path, NULL);
    free(path);
    int deploy = !strncmp(want, "deploy/", 7) || !strncmp(want, "deployment/", 11);
    if (!strncmp(want, "pod/", 4))
        want += 4;
    if (deploy)
        want = strchr(want, '/') + 1;
    int found = 0;
    for (char *l = t ? strtok(t, "\n") : NULL; l && !found; l = strtok(NULL, "\n")) {
        char n[128], ns[64], d[128], ip[16], nns[160];
        if (sscanf(l, "%127[^\t]\t%63[^\t]\t%127[^\t]\t%15[^\t]\t%159[^\t]", n, ns, d, ip, nns) == 5 &&
            !strcmp(deploy ? d : n, want)) {
            strcpy(name, n), strcpy(netns, nns);
            found = 1;
        }
    }
    free(t);
    if (!found)
        fprintf(stderr, "weftctl: no pod %s (weftctl mesh status lists them)\n", want);
    return found ? 0 : -1;
}

int ctl_cmd_exec(int argc, char **argv)
{
    struct ctl_opts o;
    int dash = -1;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            dash = i;
            break;
        }
    if (dash < 0 || dash + 1 >= argc) {
        fprintf(stderr, "usage: weftctl mesh exec POD -- CMD...\n");
        return 2;
    }
    int nopt = dash;
    if (client_opts(&o, &nopt, argv) < 0 || nopt != 1) {
        fprintf(stderr, "usage: weftctl mesh exec POD -- CMD...\n");
        return 2;
    }
    char name[128], netns[160];
    if (find_pod(&o, argv[0], name, netns) < 0)
        return 1;
    if (ctl_netns_enter(netns) < 0) {
        fprintf(stderr, "weftctl: cannot enter pod %s: %s\n", name, strerror(errno));
        return 1;
    }
    setenv("HOSTNAME", name, 1);
    execvp(argv[dash + 1], argv + dash + 1);
    fprintf(stderr, "weftctl: %s: %s\n", argv[dash + 1], strerror(errno));
    return 127;
}

int ctl_cmd_logs(int argc, char **argv)
{
    struct ctl_opts o;
    if (client_opts(&o, &argc, argv) < 0)
        return 2;
    int proxy = 0, n = 0;
    const char *pod = NULL;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--proxy") || !strcmp(argv[i], "-c=istio-proxy"))
            proxy = 1;
        else
            pod = argv[i], n++;
    if (n != 1) {
        fprintf(stderr, "usage: weftctl mesh logs POD [--proxy]\n");
        return 2;
    }
    char name[128], netns[160];
    if (find_pod(&o, pod, name, netns) < 0)
        return 1;
    char *path = ctl_sprintf("%s/pods/%s/%s", o.state_dir, name, proxy ? "proxy.log" : "app.log");
    char *t = ctl_read_file(path, NULL);
    if (!t) {
        fprintf(stderr, "weftctl: no %s log for %s\n", proxy ? "proxy" : "app", name);
        return 1;
    }
    fputs(t, stdout);
    free(t), free(path);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 3 || strcmp(argv[1], "mesh")) {
        usage();
        return 2;
    }
    const char *v = argv[2];
    argc -= 3, argv += 3;
    if (!strcmp(v, "up"))
        return ctl_cmd_up(argc, argv);
    if (!strcmp(v, "down"))
        return ctl_cmd_down(argc, argv);
    if (!strcmp(v, "apply") || !strcmp(v, "delete"))
        return ctl_cmd_apply(argc, argv, !strcmp(v, "delete"));
    if (!strcmp(v, "status"))
        return ctl_cmd_status(argc, argv);
    if (!strcmp(v, "exec"))
        return ctl_cmd_exec(argc, argv);
    if (!strcmp(v, "logs"))
        return ctl_cmd_logs(argc, argv);
    usage();
    return 2;
}
