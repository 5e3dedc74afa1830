/* libFuzzer target for the xDS client's response handler: the input is a sequence of
 * DiscoveryResponses, each prefixed by a 4-byte big-endian length, fed to one fresh client (CDS,
 * EDS, LDS, RDS all subscribed first) as if they came on the ADS stream; then the same bytes, as
 * DeltaDiscoveryResponses, to a fresh Delta (DELTA_GRPC) client. Whatever the bytes,
 * nothing may crash, leak or read out of bounds; ACK/NACK requests go to a sink. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbmap.h"
#include "common/stats.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"
#include "proxy/xds_client.h"

static const char BOOT[] =
    "node: {id: fuzz, cluster: fuzz}\n"
    "dynamic_resources:\n"
    "  ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]}\n"
    "  cds_config: {ads: {}, resource_api_version: V3}\n"
    "  lds_config: {ads: {}, resource_api_version: V3}\n"
    "static_resources:\n"
    "  clusters:\n"
    "  - name: xds-grpc\n"
    "    type: STATIC\n"
    "    load_assignment: {cluster_name: xds-grpc, endpoints: [{lb_endpoints: [{endpoint: {address: "
    "{socket_address: {address: 127.0.0.1, port_value: 15010}}}}]}]}\n";

static struct snapshot *current;
static void sink(void *arg, const uint8_t *b, size_t n) { (void)arg, (void)b, (void)n; }
static void publish(void *arg, struct snapshot *s)
{
    (void)arg;
    if (current)
        snapshot_unref(current);
    current = s;
}
static struct snapshot *cur(void *arg) { (void)arg; return current; }

static void run(struct loop *loop, const ProtobufCMessage *boot, const uint8_t *data, size_t size)
{
    struct xds_hooks h = {.publish = publish, .current = cur, .send = sink};
    char err[256];
    struct xds_client *x = xds_client_new(loop, boot, &h, NULL, NULL, err, sizeof err);
    if (!x)
        abort();
    xds_client_start(x);
    for (int i = 0; i < 8 && size >= 4; i++) {
        size_t n = (size_t)data[0] << 24 | (size_t)data[1] << 16 | (size_t)data[2] << 8 | data[3];
        data += 4;
        size -= 4;
        if (n > size)
            n = size;
        xds_client_handle_response(x, data, n);
        data += n;
        size -= n;
    }
    xds_client_expire_warming(x);
    xds_client_free(x);
    if (current)
        snapshot_unref(current);
    current = NULL;
    host_sets_reap(0, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct loop *loop;
    static ProtobufCMessage *boot[2];
    if (!loop) {
        stats_init(1);
        loop = loop_new(NULL, NULL);
        char delta[sizeof BOOT + 16];
        const char *p = strstr(BOOT, "api_type: GRPC");
        snprintf(delta, sizeof delta, "%.*sapi_type: DELTA_GRPC%s", (int)(p - BOOT), BOOT, p + strlen("api_type: GRPC"));
        struct pbmap_error pe;
        boot[0] = pbmap_from_yaml(&envoy__config__bootstrap__v3__bootstrap__descriptor, BOOT, sizeof BOOT - 1, "fuzz.yaml", &pe);
        boot[1] = pbmap_from_yaml(&envoy__config__bootstrap__v3__bootstrap__descriptor, delta, strlen(delta), "fuzz.yaml", &pe);
        if (!boot[0] || !boot[1])
            abort();
    }
    run(loop, boot[0], data, size);
    run(loop, boot[1], data, size);
    return 0;
}
