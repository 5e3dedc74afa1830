/* libFuzzer target for weftctl's two parsers. A first byte 'f' makes the rest command-line
 * flags (split at NUL bytes, as fuzz_init_flags does); anything else is a Kubernetes-style
 * manifest (Namespace, ServiceAccount, Service, Deployment and Istio YAML) read through a
 * memfd. Bad input must be refused with a message naming the file and line, never a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctl/ctl.h"

static void flags(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[66];
    int argc = 0;
    for (char *p = buf; p <= buf + size && argc < 64; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    struct ctl_opts o;
    ctl_opts_default(&o);
    ctl_opts_parse(&o, &argc, argv);
    free(buf);
}

static void manifest(const uint8_t *data, size_t size)
{
    int fd = memfd_create("manifest", MFD_CLOEXEC);
    if (fd < 0)
        return;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        struct ctl_manifest m;
        struct istio_errors errs = {0};
        if (ctl_manifest_read(path, &m, &errs) == 0)
            ctl_manifest_free(&m);
        else if (errs.n == 0)
            abort(); /* a refusal must say why */
        istio_errors_free(&errs);
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    if (size && data[0] == 'f')
        flags(data + 1, size - 1);
    else
        manifest(data, size);
    return 0;
}
