/* The downstream HTTP/2 codec: an nghttp2 server session over one connection of the HTTP
 * connection manager (http_conn.c), with a bounded pool of codec-neutral streams
 * (hstream.h) handed to the router. */
#ifndef WEFT_PROXY_CODEC_H2_H
#define WEFT_PROXY_CODEC_H2_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct h2c;
struct buf;
struct worker;
struct hcm_config;

/* The connection's byte transport, as the connection manager gives it (http_conn.c: its one
 * read/write pair, which a TLS transport replaces; fuzz_h2.c: memory). */
struct h2c_io {
    /* Reads what is available; returns the input buffer (NULL when none). The codec consumes
     * all of it, then calls input_done. */
    struct buf *(*input)(void *ctx);
    void (*input_done)(void *ctx);
    /* The output buffer to append to (NULL when out of buffers). */
    struct buf *(*output)(void *ctx);
    /* Writes what it can; returns bytes written, or -1 when the connection failed. */
    long (*flush)(void *ctx);
    bool (*output_pending)(void *ctx);
    bool (*peer_closed)(void *ctx);
    /* Closes the connection (the codec is torn down with h2c_shutdown, freed later). */
    void (*close)(void *ctx);
};

/* Creates the session for a connection (io and ctx are not owned; the connection owns the
 * returned object and frees it with h2c_free after h2c_shutdown). The SETTINGS frame is
 * queued. Returns NULL when out of memory. */
struct transport;
/* tp: the connection's transport (TLS facts for x-forwarded-proto and access logs), or NULL. */
struct h2c *h2c_new(const struct h2c_io *io, void *ctx, struct worker *w, struct hcm_config *hcm,
                    const struct sockaddr_storage *peer, const struct sockaddr_storage *local,
                    const struct transport *tp);
/* Does all the work that can be done now: reads what there is, runs streams, writes frames.
 * Returns 1 when the connection has closed itself (io->close), else 0. */
int h2c_run(struct h2c *c);
/* True while any stream is open; *idle_since_ms = when the last one closed. */
bool h2c_busy(const struct h2c *c, uint64_t *idle_since_ms);
/* Graceful drain: GOAWAY now, close when the streams in flight are done. */
void h2c_drain(struct h2c *c);
/* Ends every stream (as reset by the downstream) and stops timers; memory stays valid. */
void h2c_shutdown(struct h2c *c);
/* The connection moved onto a new snapshot (an RDS update; same Listener resource): new
 * streams take hcm; streams in flight keep theirs and hold old (their snapshot) until they
 * end. */
struct snapshot;
void h2c_rebind(struct h2c *c, struct hcm_config *hcm, struct snapshot *old);
/* Frees c (after h2c_shutdown, outside any callback of c). */
void h2c_free(struct h2c *c);

#endif
