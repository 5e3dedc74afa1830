#include "proxy/http_headers.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "proxy/route.h"
#include "proxy/subst_format.h"

bool http_in_connection_tokens(const struct h1_header *hs, size_t nh, struct h1_str name)
{
    for (size_t i = 0; i < nh; i++) {
        const struct h1_header *h = &hs[i];
        if (!h1_str_eq_ci(h->name, "connection"))
            continue;
        const char *p = h->value.p, *end = p + h->value.n;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *tok = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if ((size_t)(p - tok) == name.n && strncasecmp(tok, name.p, name.n) == 0)
                return true;
        }
    }
    return false;
}

bool http_has_header(const struct h1_header *h, size_t n, struct h1_str name)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].name.n == name.n && strncasecmp(h[i].name.p, name.p, name.n) == 0)
            return true;
    return false;
}

bool http_mutation_drops(const struct header_mutation *const *lv, size_t nlv, struct h1_str name)
{
    for (size_t l = 0; l < nlv; l++) {
        for (size_t i = 0; i < lv[l]->nremove; i++)
            if (lv[l]->remove[i].n == name.n && strncasecmp(lv[l]->remove[i].p, name.p, name.n) == 0)
                return true;
        for (size_t i = 0; i < lv[l]->nadd; i++) {
            const struct route_header_add *a = &lv[l]->add[i];
            if ((a->action == ROUTE_OVERWRITE_IF_EXISTS_OR_ADD || a->action == ROUTE_OVERWRITE_IF_EXISTS) &&
                a->name.n == name.n && strncasecmp(a->name.p, name.p, name.n) == 0)
                return true;
        }
    }
    return false;
}

int http_mutation_add(struct buf *b, const struct header_mutation *const *lv, size_t nlv,
                      const struct h1_header *h, size_t nh, const struct stream_info *si)
{
    for (size_t l = 0; l < nlv; l++) {
        for (size_t i = 0; i < lv[l]->nadd; i++) {
            const struct route_header_add *a = &lv[l]->add[i];
            bool present = http_has_header(h, nh, a->name);
            if ((a->action == ROUTE_ADD_IF_ABSENT && present) || (a->action == ROUTE_OVERWRITE_IF_EXISTS && !present))
                continue;
            size_t mark = b->tail;
            if (buf_append(b, a->name.p, a->name.n) || buf_append(b, ": ", 2))
                return -1;
            size_t vlen = a->value.n;
            if (a->format && si) {
                /* Rendered in place; a value that is not known is left out (no "-"). */
                if (buf_room(b) < 3)
                    return -1;
                vlen = subst_format_render(a->format, si, false, buf_wpos(b), buf_room(b) - 2);
                if (vlen == buf_room(b) - 3)
                    return -1; /* it may have been cut short: the head is too large */
                b->tail += vlen;
            } else if (buf_append(b, a->value.p, a->value.n)) {
                return -1;
            }
            if (vlen == 0 && !a->keep_empty_value) {
                b->tail = mark;
                continue;
            }
            if (buf_append(b, "\r\n", 2))
                return -1;
        }
    }
    return 0;
}

int http_put_header(struct buf *b, const char *name, const char *value, size_t vlen)
{
    if (buf_append(b, name, strlen(name)) || buf_append(b, ": ", 2) || buf_append(b, value, vlen) ||
        buf_append(b, "\r\n", 2))
        return -1;
    return 0;
}

void http_peer_ip(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)cap);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)cap);
    else
        snprintf(out, cap, "unknown");
}
