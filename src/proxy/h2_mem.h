/* A per-worker allocator for nghttp2 (nghttp2_mem): size classes with bounded free lists, so
 * that nghttp2's per-stream allocations (stream objects, outbound frame items, HPACK buffers)
 * come from memory the worker already has once traffic is steady. One thread only: a worker's
 * sessions are created, used and deleted on that worker. */
#ifndef WEFT_PROXY_H2_MEM_H
#define WEFT_PROXY_H2_MEM_H

#include <nghttp2/nghttp2.h>

struct h2_mem;

/* Returns the worker's allocator, creating it on first use (*slot holds it). NULL when out of
 * memory (callers then use nghttp2's default allocator). */
nghttp2_mem *h2_mem_get(struct h2_mem **slot);
/* Frees the allocator and everything cached in it. Every session using it must be deleted. */
void h2_mem_free(struct h2_mem *m);

#endif
