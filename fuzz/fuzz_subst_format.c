/* libFuzzer target for Envoy substitution format strings (src/proxy/subst_format.c): the input
 * is a format; it is compiled and, when accepted, rendered both ways (access log and header
 * value) into a small buffer from a stream_info with every field set, so truncation runs too. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/subst_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *fmt = malloc(size + 1);
    if (!fmt)
        return 0;
    memcpy(fmt, data, size);
    fmt[size] = '\0';
    char err[160];
    struct subst_format *f = subst_format_new(fmt, err, sizeof err);
    if (f) {
        struct h1_header hs[] = {{{"user-agent", 10}, {"curl/8", 6}}, {{"x-a", 3}, {"1", 1}}};
        struct h1_request rq = {.method = {"GET", 3}, .path = {"/p", 2}, .host = {"h", 1},
                                .headers = hs, .nheaders = 2};
        struct h1_response rs = {.status = 200, .headers = hs, .nheaders = 2};
        struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(1234)};
        struct sockaddr_in6 local = {.sin6_family = AF_INET6, .sin6_port = htons(80)};
        inet_pton(AF_INET, "10.1.2.3", &peer.sin_addr);
        struct stream_info si = {.start_wall_us = 1700000000123456u, .start_us = 1, .end_us = 5000,
                                 .request_end_us = 100, .upstream_start_us = 200, .upstream_headers_us = 3000,
                                 .status = 200, .flags = 3, .protocol = "HTTP/1.1", .rq = &rq, .rs = &rs,
                                 .request_id = "id", .upstream_host = "10.0.0.1:80", .upstream_cluster = "c",
                                 .route_name = "r", .downstream_remote = (struct sockaddr *)&peer,
                                 .downstream_local = (struct sockaddr *)&local, .grpc_status = 14};
        char out[64];
        subst_format_render(f, &si, true, out, sizeof out);
        subst_format_render(f, &si, false, out, sizeof out);
        struct stream_info empty = {.grpc_status = -1};
        subst_format_render(f, &empty, true, out, sizeof out);
        subst_format_free(f);
    }
    free(fmt);
    return 0;
}
