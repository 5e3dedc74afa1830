/* libFuzzer target for weft-echo's command line (src/echo/flags.c): the input is split at NUL
 * bytes into argv. Any argv must be parsed or refused with a one-line message, never a crash;
 * an accepted configuration must hold only values inside the documented bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "echo/echo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[130];
    int argc = 0;
    argv[argc++] = "weft-echo";
    for (char *p = buf; p <= buf + size && argc < 129; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    struct echo_config *c = malloc(sizeof *c);
    char err[ECHO_ERR_MAX] = "";
    if (c) {
        int rc = echo_parse_args(argc, argv, c, err);
        if (rc == 0 && !c->help) {
            if (c->nports > ECHO_MAX_PORTS || c->ncalls > ECHO_MAX_CALLS || c->fail_rate < 0 ||
                c->fail_rate > 1 || c->fail_status < 200 || c->fail_status > 599 ||
                c->delay_ms > 60000 || (c->nports == 0 && c->grpc_port == 0))
                abort();
            for (int i = 0; i < c->ncalls; i++)
                if (c->calls[i].port == 0 || !c->calls[i].host[0] || c->calls[i].path[0] != '/')
                    abort();
        } else if (rc < 0 && (!err[0] || strchr(err, '\n'))) {
            abort();
        }
    }
    free(c);
    free(buf);
    return 0;
}
