/* Access logs: Envoy's substitution format strings (%START_TIME%, %REQ(X?Y):N%, %RESPONSE_FLAGS%…)
 * compiled once into a list of tokens, rendered per request into a per-worker line buffer and
 * written with one write(2) (O_APPEND makes lines from several workers interleave whole). */
#ifndef WEFT_PROXY_ACCESS_LOG_H
#define WEFT_PROXY_ACCESS_LOG_H

#include <stddef.h>

#include "proxy/stream_info.h"

/* Envoy's default format for HTTP (and, with the HTTP-only parts empty, for TCP). */
#define ACCESS_LOG_DEFAULT_FORMAT                                                                   \
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "              \
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "                    \
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "       \
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n"

#define ACCESS_LOG_LINE_MAX 8192   /* longer lines are truncated (and end in a newline) */

struct access_log;

/* Compiles format (NULL = the default) for output to path ("/dev/stdout" for the stdout logger).
 * On error returns NULL and writes the problem into err (e.g. "unknown command %FOO%"). */
struct access_log *access_log_new(const char *path, const char *format, char *err, size_t errlen);
void access_log_free(struct access_log *log);
/* Renders and writes one line. line_buf must hold ACCESS_LOG_LINE_MAX bytes (per worker). */
void access_log_write(const struct access_log *log, const struct stream_info *si, char *line_buf);
/* Renders into out (for tests); returns the length. */
size_t access_log_format(const struct access_log *log, const struct stream_info *si, char *out, size_t cap);

#endif
