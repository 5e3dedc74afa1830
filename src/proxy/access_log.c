#include "proxy/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/subst_format.h"

struct access_log {
    int fd;
    bool own_fd;
    struct subst_format *fmt;
};

struct access_log *access_log_new(const char *path, const char *format, char *err, size_t errlen)
{
    struct access_log *log = calloc(1, sizeof *log);
    if (!log) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    log->fd = -1;
    log->fmt = subst_format_new(format ? format : ACCESS_LOG_DEFAULT_FORMAT, err, errlen);
    if (!log->fmt)
        goto fail;
    if (strcmp(path, "/dev/stdout") == 0) {
        log->fd = STDOUT_FILENO;
    } else if (strcmp(path, "/dev/stderr") == 0) {
        log->fd = STDERR_FILENO;
    } else {
        log->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log->fd < 0) {
            snprintf(err, errlen, "cannot open access log %s: %s", path, strerror(errno));
            goto fail;
        }
        log->own_fd = true;
    }
    return log;
fail:
    access_log_free(log);
    return NULL;
}

void access_log_free(struct access_log *log)
{
    if (!log)
        return;
    subst_format_free(log->fmt);
    if (log->own_fd)
        close(log->fd);
    free(log);
}

size_t access_log_format(const struct access_log *log, const struct stream_info *si, char *buf, size_t cap)
{
    size_t n = subst_format_render(log->fmt, si, true, buf, cap);
    /* A truncated line still ends in a newline when the format asked for one. */
    if (cap && n == cap - 1 && n && subst_format_ends_in_newline(log->fmt))
        buf[n - 1] = '\n';
    return n;
}

void access_log_write(const struct access_log *log, const struct stream_info *si, char *line_buf)
{
    size_t n = access_log_format(log, si, line_buf, ACCESS_LOG_LINE_MAX);
    ssize_t r = write(log->fd, line_buf, n);
    (void)r; /* a full disk must not stop traffic */
}
