#include "proxy/h2_mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CLASSES 12                /* 32 B .. 64 KiB */
#define MIN_SHIFT 5
#define CACHE_BYTES (1u << 20)    /* at most this much cached per size class */
#define HDR 16                    /* keeps the user pointer 16-byte aligned */
#define BIG 0xff                  /* larger than every class: plain malloc/free */

struct block { struct block *next; };

struct h2_mem {
    nghttp2_mem mem;              /* first: nghttp2 gets &m->mem */
    struct block *free[CLASSES];
    uint32_t nfree[CLASSES];
};

static int class_of(size_t n)
{
    size_t c = (size_t)1 << MIN_SHIFT;
    for (int i = 0; i < CLASSES; i++, c <<= 1)
        if (n <= c)
            return i;
    return -1;
}

static size_t class_size(int i) { return (size_t)1 << (MIN_SHIFT + i); }

static void *m_malloc(size_t n, void *ud)
{
    struct h2_mem *m = ud;
    int c = class_of(n ? n : 1);
    unsigned char *p;
    if (c < 0) {
        p = malloc(HDR + n);
        if (!p)
            return NULL;
        p[0] = BIG;
        return p + HDR;
    }
    if (m->free[c]) {
        struct block *b = m->free[c];
        m->free[c] = b->next;
        m->nfree[c]--;
        return b;
    }
    p = malloc(HDR + class_size(c));
    if (!p)
        return NULL;
    p[0] = (unsigned char)c;
    return p + HDR;
}

static void m_free(void *ptr, void *ud)
{
    struct h2_mem *m = ud;
    if (!ptr)
        return;
    unsigned char *p = (unsigned char *)ptr - HDR;
    int c = p[0];
    if (c == BIG || m->nfree[c] >= CACHE_BYTES / class_size(c)) {
        free(p);
        return;
    }
    struct block *b = ptr;
    b->next = m->free[c];
    m->free[c] = b;
    m->nfree[c]++;
}

static void *m_calloc(size_t nmemb, size_t size, void *ud)
{
    if (size && nmemb > SIZE_MAX / size)
        return NULL;
    void *p = m_malloc(nmemb * size, ud);
    if (p)
        memset(p, 0, nmemb * size);
    return p;
}

static void *m_realloc(void *ptr, size_t n, void *ud)
{
    if (!ptr)
        return m_malloc(n, ud);
    if (n == 0) {
        m_free(ptr, ud);
        return NULL;
    }
    unsigned char *p = (unsigned char *)ptr - HDR;
    int c = p[0];
    if (c != BIG && n <= class_size(c))
        return ptr;
    if (c == BIG) {
        unsigned char *q = realloc(p, HDR + n);
        return q ? q + HDR : NULL;
    }
    void *q = m_malloc(n, ud);
    if (!q)
        return NULL;
    memcpy(q, ptr, class_size(c));
    m_free(ptr, ud);
    return q;
}

nghttp2_mem *h2_mem_get(struct h2_mem **slot)
{
    if (!*slot) {
        struct h2_mem *m = calloc(1, sizeof *m);
        if (!m)
            return NULL;
        m->mem = (nghttp2_mem){m, m_malloc, m_free, m_calloc, m_realloc};
        *slot = m;
    }
    return &(*slot)->mem;
}

void h2_mem_free(struct h2_mem *m)
{
    if (!m)
        return;
    for (int c = 0; c < CLASSES; c++)
        for (struct block *b = m->free[c], *next; b; b = next) {
            next = b->next;
            free((unsigned char *)b - HDR);
        }
    free(m);
}
