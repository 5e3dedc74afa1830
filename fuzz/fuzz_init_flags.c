/* libFuzzer target for weft-init's command line: the input is split at NUL bytes into argv.
 * Any argv must be parsed or refused with a message (never a crash), and an accepted
 * configuration must build its IPv4 and IPv6 rules and a cleanup plan within the limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "init/init.h"

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
    argv[argc++] = "weft-init";
    for (char *p = buf; p <= buf + size && argc < 129; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    struct init_config *c = malloc(sizeof *c);
    char err[INIT_ERR_MAX] = "";
    int rc = c ? init_parse_args(argc, argv, c, err) : -1;
    if (c && rc == 0 && !c->help) { /* --help returns before validation */
        struct init_text v4, v6, plan;
        c->enable_ipv6 = true;
        if (init_rules_build(c, &v4, &v6, err) == 0) {
            /* Feeding our own rules back as if iptables-save printed them. */
            if (init_cleanup_build(c, INIT_V4, v4.s ? v4.s : "", &plan, err) == 0)
                init_text_free(&plan);
            init_text_free(&v4);
            init_text_free(&v6);
        }
    }
    if (c && rc < 0 && err[0] == 0)
        abort(); /* a refusal must say why */
    free(c);
    free(buf);
    return 0;
}
