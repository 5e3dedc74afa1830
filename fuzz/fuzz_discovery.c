/* Fuzz target: arbitrary bytes as a sequence of (Delta)DiscoveryRequests into the ADS request
 * handler (src/pilot/ads.c), over a small built-in mesh. Input: byte 0 picks SotW or Delta
 * (bit 0) and whether the transport starts full (bit 1); then records of [len_hi, len_lo,
 * flags, bytes...]: flags bit 0 makes the transport refuse sends, bit 1 calls on_writable
 * after the message, bit 2 runs a push of everything. Never crash, never leak. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/loop.h"
#include "pilot/ads.h"

#define FUZZ_MAX_INPUT (64 * 1024)

static const char mesh[] =
    "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\n"
    "spec:\n  clusterIP: 10.96.0.12\n  ports: [{name: http, port: 9080}]\n  selector: {app: reviews}\n"
    "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: r1, labels: {app: reviews, version: v1}}\n"
    "spec: {address: 10.1.0.1}\n"
    "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: pp, labels: {app: productpage}}\n"
    "spec: {address: 10.1.0.10}\n"
    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\n"
    "spec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}]\n"
    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
    "spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v1}}]\n";

static int full;

static int fuzz_send(void *ctx, const uint8_t *msg, size_t len)
{
    (void)ctx;
    (void)msg;
    (void)len;
    return full ? -ENOBUFS : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct loop *l;
    static struct pilot_model *m;
    if (size < 1 || size > FUZZ_MAX_INPUT)
        return 0;
    if (!l) {
        struct istio_object_list ol = {0};
        struct istio_errors e = {0};
        log_current_level = LOG_OFF;
        l = loop_new(NULL, NULL);
        istio_parse(mesh, sizeof mesh - 1, "mesh.yaml", NULL, &ol, &e);
        m = pilot_model_new(ol.items, ol.n, &e, NULL, 1);
        istio_object_list_free(&ol);
        istio_errors_free(&e);
        if (!l || !m)
            abort();
    }
    struct ads_server *s = ads_server_new(l, m, NULL);
    if (!s)
        return 0;
    full = (data[0] & 2) != 0;
    struct ads_conn *c = ads_conn_new(s, data[0] & 1, fuzz_send, NULL);
    size_t off = 1;
    while (c && off + 3 <= size) {
        size_t len = (size_t)data[off] << 8 | data[off + 1];
        uint8_t flags = data[off + 2];
        off += 3;
        if (len > size - off)
            len = size - off;
        full = flags & 1;
        const char *why;
        if (ads_conn_on_message(c, data + off, len, &why) < 0 && !why[0])
            abort();   /* an error always says why */
        off += len;
        if (flags & 2) {
            full = 0;
            ads_conn_on_writable(c);
        }
        if (flags & 4)
            ads_server_push_all(s);
    }
    ads_conn_free(c);
    ads_server_free(s);
    return 0;
}
