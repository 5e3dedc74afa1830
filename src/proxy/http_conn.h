/* A downstream HTTP/1.1 connection handled by the HTTP connection manager
 * (envoy.filters.network.http_connection_manager) and its router. */
#ifndef WEFT_PROXY_HTTP_CONN_H
#define WEFT_PROXY_HTTP_CONN_H

#include <stdbool.h>
#include <sys/socket.h>

struct worker;
struct listener_config;
struct filter_chain;

/* Takes ownership of the accepted socket fd. */
void http_conn_start(struct worker *w, struct listener_config *lc, struct filter_chain *fc, int fd,
                     const struct sockaddr_storage *peer, const struct sockaddr_storage *local);

/* --- for the other codecs (codec_h2.c): the connection's one read/write pair --- */
struct hconn;
struct buf;
/* Reads what the socket has (until EAGAIN, EOF or a full buffer) and returns the input
 * buffer (NULL when out of buffers). The codec consumes all of it, then calls
 * hconn_input_done(), which gives the buffer back. */
struct buf *hconn_input(struct hconn *d);
void hconn_input_done(struct hconn *d);
/* The output buffer (taken from the pool when needed; NULL when out of buffers): append
 * bytes, then hconn_flush(). */
struct buf *hconn_output(struct hconn *d);
/* Writes as much output as the socket takes. Returns bytes written, or -1 when the
 * connection failed. */
long hconn_flush(struct hconn *d);
bool hconn_output_pending(const struct hconn *d);
bool hconn_peer_closed(const struct hconn *d);
/* Closes the connection (the codec's state is torn down with it, memory freed later). */
void hconn_close_from_codec(struct hconn *d);

#endif
