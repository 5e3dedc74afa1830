/* The downstream HTTP/2 codec: an nghttp2 server session over one connection of the HTTP
 * connection manager (http_conn.c), with a bounded pool of codec-neutral streams
 * (hstream.h) handed to the router. */
#ifndef WEFT_PROXY_CODEC_H2_H
#define WEFT_PROXY_CODEC_H2_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct h2c;
struct hconn;
struct worker;
struct hcm_config;

/* Creates the session for connection d (not owned; d owns the returned object and frees it
 * with h2c_free after h2c_shutdown). The connection preface and SETTINGS are queued. Returns
 * NULL when out of memory. */
struct h2c *h2c_new(struct hconn *d, struct worker *w, struct hcm_config *hcm, const struct sockaddr_storage *peer,
                    const struct sockaddr_storage *local);
/* Does all the work that can be done now: reads what d has, runs streams, writes frames.
 * Returns 1 when the connection has closed itself (hconn_close_from_codec), else 0. */
int h2c_run(struct h2c *c);
/* True while any stream is open; *idle_since_ms = when the last one closed. */
bool h2c_busy(const struct h2c *c, uint64_t *idle_since_ms);
/* Graceful drain: GOAWAY now, close when the streams in flight are done. */
void h2c_drain(struct h2c *c);
/* Ends every stream (as reset by the downstream) and stops timers; memory stays valid. */
void h2c_shutdown(struct h2c *c);
/* Frees c (after h2c_shutdown, outside any callback of c). */
void h2c_free(struct h2c *c);

#endif
