/* LD_PRELOAD shim for tests: counts calls to malloc, calloc and realloc in the whole process.
 * On SIGUSR2 it writes the count (decimal) to the file named by $WEFT_MALLOC_COUNT_FILE.
 * Used to prove that the request path does not allocate in steady state. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

static atomic_ulong calls;
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);

/* dlsym itself may call calloc before real_calloc is known: serve it from a static block. */
static char boot[4096];
static size_t boot_used;

static void *boot_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (boot_used + n > sizeof boot)
        return NULL;
    void *p = boot + boot_used;
    boot_used += n;
    return p;
}

void *malloc(size_t n)
{
    if (!real_malloc)
        real_malloc = dlsym(RTLD_NEXT, "malloc");
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    return real_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    if (!real_calloc) {
        static int resolving;
        if (resolving)
            return boot_alloc(a * b);
        resolving = 1;
        real_calloc = dlsym(RTLD_NEXT, "calloc");
        resolving = 0;
    }
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    return real_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    if (!real_realloc)
        real_realloc = dlsym(RTLD_NEXT, "realloc");
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    return real_realloc(p, n);
}

void free(void *p)
{
    static void (*real_free)(void *);
    if ((char *)p >= boot && (char *)p < boot + sizeof boot)
        return;
    if (!real_free)
        real_free = dlsym(RTLD_NEXT, "free");
    real_free(p);
}

static void on_usr2(int sig)
{
    (void)sig;
    const char *path = getenv("WEFT_MALLOC_COUNT_FILE");
    if (!path)
        return;
    char buf[32];
    int n = 0;
    unsigned long v = atomic_load(&calls);
    char tmp[32];
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n++] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, buf, (size_t)n);
        (void)w;
        close(fd);
    }
}

__attribute__((constructor)) static void init(void)
{
    signal(SIGUSR2, on_usr2);
}
