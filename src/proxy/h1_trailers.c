#include "proxy/h1_trailers.h"

#include <string.h>

static const char *const dropped[] = {"connection", "keep-alive",     "proxy-connection", "transfer-encoding",
                                      "upgrade",    "te",             "content-length",   "host"};

static int is_dropped(const char *p, size_t n)
{
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
        if (strlen(dropped[i]) == n && memcmp(dropped[i], p, n) == 0)
            return 1;
    return 0;
}

size_t h1_trailers_parse(char *text, size_t n, struct h1_header *out, size_t cap)
{
    size_t k = 0;
    char *p = text, *e = text + n;
    while (p < e && k < cap) {
        char *nl = memchr(p, '\n', (size_t)(e - p));
        if (!nl)
            break;
        char *line_end = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
        char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon && colon > p) {
            for (char *c = p; c < colon; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c - 'A' + 'a');
            const char *v = colon + 1, *ve = line_end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (!is_dropped(p, (size_t)(colon - p)))
                out[k++] = (struct h1_header){{p, (size_t)(colon - p)}, {v, (size_t)(ve - v)}};
        }
        p = nl + 1;
    }
    return k;
}
