/* Small HTTP helpers shared by the proxy and the admin server. */
#ifndef WEFT_PROXY_HTTP_UTIL_H
#define WEFT_PROXY_HTTP_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The standard reason phrase for a status code ("Unknown" for codes without one). */
const char *http_reason(int status);
/* The current time as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), cached per second per
 * thread. out must hold 30 bytes. */
void http_date_now(char *out, size_t cap);
/* Writes v in decimal into out (at least 21 bytes); returns the length. No NUL is added. */
size_t u64_to_dec(uint64_t v, char *out);

/* Formats a random UUID version 4 from 128 random bits into out (37 bytes with the NUL). */
void uuid4_format(uint64_t hi, uint64_t lo, char *out);

#endif
