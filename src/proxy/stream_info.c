#include "proxy/stream_info.h"

#include <string.h>

static const char *const flag_names[RF_COUNT] = {
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE",
    "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF",
};

int response_flags_format(uint32_t flags, char *out, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < RF_COUNT; i++) {
        if (!(flags & (1u << i)))
            continue;
        size_t len = strlen(flag_names[i]);
        if (n + len + 2 > cap)
            break;
        if (n)
            out[n++] = ',';
        memcpy(out + n, flag_names[i], len);
        n += len;
    }
    if (n == 0 && cap >= 2)
        out[n++] = '-';
    if (n < cap)
        out[n] = '\0';
    return (int)n;
}

int response_flag_parse(const char *name, size_t len)
{
    for (int i = 0; i < RF_COUNT; i++)
        if (strlen(flag_names[i]) == len && memcmp(flag_names[i], name, len) == 0)
            return i;
    return -1;
}
