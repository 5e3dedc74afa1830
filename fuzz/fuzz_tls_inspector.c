/* libFuzzer target for the listener inspectors (src/net/inspect.c): arbitrary first bytes of a
 * connection, as tls_inspector and http_inspector see them through MSG_PEEK. Every prefix is
 * tried too, since the peek sees the stream grow. Nothing may crash or read out of bounds, and
 * what is extracted must be well-formed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/inspect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INSPECT_PEEK_MAX)
        size = INSPECT_PEEK_MAX;
    /* Copy so that ASan sees reads past the peeked bytes. */
    uint8_t *p = malloc(size ? size : 1);
    memcpy(p, data, size);
    struct tls_hello h;
    size_t step = size > 512 ? size / 64 : 1;
    for (size_t n = 0; n <= size; n += step) {
        enum inspect_result r = tls_inspect(p, n, INSPECT_PEEK_MAX, &h);
        if (r == INSPECT_MATCH) {
            if (strlen(h.sni) >= sizeof h.sni || h.n_alpn > INSPECT_MAX_ALPN)
                abort();
            for (unsigned i = 0; i < h.n_alpn; i++)
                if (strlen(h.alpn[i]) == 0 || strlen(h.alpn[i]) > INSPECT_ALPN_LEN)
                    abort();
        }
        const char *proto = NULL;
        if (n && http_inspect(p, n, INSPECT_PEEK_MAX, &proto) == INSPECT_MATCH && !proto)
            abort();
    }
    tls_inspect(p, size, 64, &h); /* a small peek limit */
    free(p);
    return 0;
}
