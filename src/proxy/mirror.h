/* Request mirroring (RouteAction.request_mirror_policies), as Envoy shadows: a copy of the
 * request (head and body) goes fire-and-forget to each mirror cluster whose runtime_fraction
 * draw passes, with "-shadow" appended to the host (before a port: "a:80" → "a-shadow:80").
 * The shadow's answer is read and dropped; nothing about it reaches the client or delays the
 * main exchange.
 *
 * Bounded memory: a shadow owns one worker buffer (BUF_SIZE, 96 KiB) holding its whole
 * request, so a request whose head and body do not fit there — or whose body has not fully
 * arrived when the request is routed, or is chunked — is not mirrored; at most
 * MIRROR_MAX_INFLIGHT shadows per worker are in flight, each for at most the route timeout
 * (15 s when the route has none); beyond that shadows are dropped. Shadows are HTTP/1.1 on their
 * own connections (`connection: close`), from the HTTP/1.1 fast path only. */
#ifndef WEFT_PROXY_MIRROR_H
#define WEFT_PROXY_MIRROR_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

struct worker;
struct snapshot;
struct route_entry;

#define MIRROR_MAX_INFLIGHT 128
#define MIRROR_DEFAULT_TIMEOUT_MS 15000

/* uhead: the main upstream request head as built (HTTP/1.1 text, ending in the blank line);
 * body[0..body_len): the complete request body. */
void mirror_request(struct worker *w, struct snapshot *snap, const struct route_entry *e, const struct buf *uhead,
                    const char *body, size_t body_len, uint64_t timeout_ms);

/* The worker's loop has ended: ends the shadows still in flight and frees this thread's. */
void mirror_worker_exit(void);

#endif
