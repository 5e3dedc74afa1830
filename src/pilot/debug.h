/* pilot/debug: weftd's debug and monitoring HTTP/1.1 server (istiod's 15014): /debug/configz,
 * /debug/syncz, /debug/config_dump?proxyID=ID, /metrics (Prometheus text), /ready.
 * One request per connection (answered, then closed); requests are parsed with the strict
 * parser of net/http1.h; answers are built in memory. Loop thread only. */
#ifndef WEFT_PILOT_DEBUG_H
#define WEFT_PILOT_DEBUG_H

#include <stdint.h>

#include "common/loop.h"
#include "pilot/ads.h"

#define PILOT_DEBUG_MAX_REQUEST 16384   /* bytes of one request head */
#define PILOT_DEBUG_MAX_CONNS 64        /* open debug connections; more are closed at accept */

struct pilot_debug;

/* Listens on addr:port (port 0 picks one) on loop l, answering from ads (borrowed; must
 * outlive the server). *bound gets the port. Returns NULL with *err (-errno) set. */
struct pilot_debug *pilot_debug_new(struct loop *l, const char *addr, uint16_t port,
                                    struct ads_server *ads, int *bound, int *err);
/* Closes the listener and every connection and frees the server. */
void pilot_debug_free(struct pilot_debug *d);

/* The answer to GET path?query: a malloc'd body, *status and *ctype (static) set; NULL when
 * out of memory. Exposed for tests. */
char *pilot_debug_answer(struct ads_server *ads, const char *path, const char *query, int *status,
                         const char **ctype);

#endif
