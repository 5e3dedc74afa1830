/* The parts of the route builder (route_build.c) that per-route HTTP filter configs
 * (hfilter_build.c) compile with: the table's arena, its error path and its header matcher
 * and header-add compilers, so that a filter's config lives and dies with its route table. */
#ifndef WEFT_PROXY_ROUTE_BUILD_INTERNAL_H
#define WEFT_PROXY_ROUTE_BUILD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "envoy/config/core/v3/base.pb-c.h"
#include "envoy/config/route/v3/route_components.pb-c.h"
#include "proxy/route.h"

struct build;

void *rb_alloc(struct build *b, size_t n);                 /* zeroed, lives with the table */
const char *rb_dup(struct build *b, const char *s);        /* NULL only on out of memory */
int rb_fail(struct build *b, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));                 /* always -1 */
size_t rb_path_push(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rb_path_pop(struct build *b, size_t mark);
int rb_header_match(struct build *b, const Envoy__Config__Route__V3__HeaderMatcher *m, struct route_header_match *o);
int rb_header_add(struct build *b, const Envoy__Config__Core__V3__HeaderValueOption *h, struct route_header_add *o);
uint32_t rb_fraction_den(int denominator_type);            /* 0 for an unknown value */
/* The HCM stat prefix the table is built for ("" when built without one). */
const char *rb_hcm_stat_prefix(const struct build *b);
/* The HCM's compiled HTTP filter chain (NULL when built without filters). */
struct hf_chain;
const struct hf_chain *rb_chain(const struct build *b);

#endif
