/* weft-init internals shared by its source files and tests: comma-list iteration and CIDRs. */
#ifndef WEFT_INIT_INTERNAL_H
#define WEFT_INIT_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>

/* One entry of a comma-separated list, trimmed, pointing into the list's text. */
struct init_item {
    const char *s;
    size_t len;
};

/* Steps *p to the next non-empty entry (Istio's split: empty entries are skipped).
 * Returns false at the end. */
bool init_list_next(const char **p, struct init_item *it);
bool init_list_contains(const char *list, const char *item);
size_t init_list_count(const char *list);

/* A parsed CIDR, printed as Go's netip.Prefix prints it (address as given, canonical form). */
struct init_cidr {
    int family; /* INIT_V4 or INIT_V6 */
    bool loopback;
    char text[64];
};
/* Parses "addr/bits". Returns 0 or -1. */
int init_cidr_parse(const char *s, size_t len, struct init_cidr *out);

#endif
