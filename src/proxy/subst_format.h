/* Envoy's substitution format strings (%START_TIME%, %REQ(X?Y):N%, %RESPONSE_FLAGS%...): the
 * language of access log formats and of custom header values (request_headers_to_add...).
 * A string is compiled once (at config load) into a list of tokens and rendered per request
 * into caller storage, without allocating. */
#ifndef WEFT_PROXY_SUBST_FORMAT_H
#define WEFT_PROXY_SUBST_FORMAT_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/stream_info.h"

struct subst_format;

/* Compiles format ("%%" is a literal '%'). On error returns NULL and writes the problem into
 * err (e.g. "unknown command %FOO%"). */
struct subst_format *subst_format_new(const char *format, char *err, size_t errlen);
void subst_format_free(struct subst_format *f);
/* Renders into out[0..cap) (NUL-terminated, truncated to fit); returns the length. dash: a value
 * that is not known prints "-" as in access logs; otherwise nothing, as in header values. */
size_t subst_format_render(const struct subst_format *f, const struct stream_info *si, bool dash, char *out,
                           size_t cap);
/* True when the format's last token is literal text ending in a newline. */
bool subst_format_ends_in_newline(const struct subst_format *f);

#endif
