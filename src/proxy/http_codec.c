#include "proxy/http_codec.h"

#include <string.h>

enum http_codec http_codec_select(int codec_type, const char *alpn, const char *bytes, size_t len)
{
    if (alpn && *alpn) {
        /* With TLS, ALPN decides (Envoy's AUTO does the same). */
        if (strcmp(alpn, "h2") == 0)
            return codec_type == 1 ? HTTP_CODEC_H1 : HTTP_CODEC_H2;
        return codec_type == 2 ? HTTP_CODEC_H2 : HTTP_CODEC_H1;
    }
    if (codec_type == 1)
        return HTTP_CODEC_H1;
    if (codec_type == 2)
        return HTTP_CODEC_H2;
    size_t n = len < HTTP2_PREFACE_LEN ? len : HTTP2_PREFACE_LEN;
    if (memcmp(bytes, HTTP2_PREFACE, n) != 0)
        return HTTP_CODEC_H1;
    return n == HTTP2_PREFACE_LEN ? HTTP_CODEC_H2 : HTTP_CODEC_NEED_MORE;
}
