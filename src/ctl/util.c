/* ctl/util: running helper programs (ip, iptables), files and paths. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl.h"

int ctl_run(char *const argv[], char *err, size_t errlen)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]), close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0), dup2(nul, 1);
        dup2(pfd[1], 2);
        execvp(argv[0], argv);
        dprintf(2, "%s: %s", argv[0], strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    size_t got = 0;
    char tmp[512];
    ssize_t k;
    while ((k = read(pfd[0], tmp, sizeof tmp)) > 0 || (k < 0 && errno == EINTR)) {
        for (ssize_t i = 0; err && i < k && got + 1 < errlen; i++)
            err[got++] = tmp[i] == '\n' ? ' ' : tmp[i];
    }
    if (err && errlen)
        err[got] = 0;
    close(pfd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *ctl_bindir(void)
{
    static char dir[PATH_MAX];
    if (!dir[0]) {
        ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
        if (n <= 0)
            return ".";
        dir[n] = 0;
        char *s = strrchr(dir, '/');
        if (s)
            *s = 0;
    }
    return dir;
}

static char *exec_at(const char *dir, size_t dlen, const char *prog)
{
    char *p = ctl_sprintf("%.*s/%s", (int)dlen, dir, prog);
    if (access(p, X_OK) == 0) {
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            char *r = realpath(p, NULL);
            free(p);
            return r;
        }
    }
    free(p);
    return NULL;
}

char *ctl_which(const char *prog)
{
    if (!*prog)
        return NULL;
    if (strchr(prog, '/')) {
        struct stat st;
        if (access(prog, X_OK) == 0 && stat(prog, &st) == 0 && S_ISREG(st.st_mode))
            return realpath(prog, NULL);
        return NULL;
    }
    char *r = exec_at(ctl_bindir(), strlen(ctl_bindir()), prog);
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    while (!r && *path) {
        const char *c = strchr(path, ':');
        size_t n = c ? (size_t)(c - path) : strlen(path);
        if (n)
            r = exec_at(path, n, prog);
        path += n + (c ? 1 : 0);
    }
    return r;
}

char *ctl_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t k;
    while ((k = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (cap - n < 2)
            b = realloc(b, cap *= 2);
    }
    fclose(f);
    b[n] = 0;
    if (len)
        *len = n;
    return b;
}

int ctl_write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    size_t n = strlen(text);
    ssize_t w = write(fd, text, n);
    close(fd);
    return w == (ssize_t)n ? 0 : -1;
}

int ctl_write_atomic(const char *path, const char *text)
{
    char *tmp = ctl_sprintf("%s.tmp~", path);
    int rc = ctl_write_file(tmp, text);
    if (rc == 0)
        rc = rename(tmp, path);
    free(tmp);
    return rc;
}

int ctl_mkdirs(const char *path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    return mkdir(p, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

void ctl_rmtree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char *p = ctl_sprintf("%s/%s", path, e->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                ctl_rmtree(p);
            else
                unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(path);
}

char *ctl_sprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

double ctl_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void ctl_sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) < 0 && errno == EINTR) {
    }
}
