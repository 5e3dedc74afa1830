/* Fuzz target: arbitrary bytes as a YAML/JSON Envoy bootstrap through pbmap. Whatever parses
 * is dumped as JSON, and that JSON must parse back into the same bytes: our own output is
 * always valid input. Never crash, never leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbmap.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"

/* Big inputs only slow the fuzzer down; the limits themselves are unit-tested. */
#define FUZZ_MAX_INPUT (64 * 1024)

/* libyaml (YAML 1.1) refuses implicit keys longer than 1024 characters, JSON ones included,
 * so a dump holding such a key cannot be read back: that is a documented limit, not a bug. */
static int has_long_key(const json_t *j)
{
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        json_object_foreach((json_t *)j, key, v)
            if (strlen(key) > 1000 || has_long_key(v))
                return 1;
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            if (has_long_key(v))
                return 1;
    }
    return 0;
}

static uint8_t *packed(const ProtobufCMessage *m, size_t *n)
{
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *p = malloc(*n + 1);
    if (p)
        protobuf_c_message_pack(m, p);
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const ProtobufCMessageDescriptor *d = &envoy__config__bootstrap__v3__bootstrap__descriptor;
    struct pbmap_error err;
    if (size > FUZZ_MAX_INPUT)
        return 0;
    ProtobufCMessage *m = pbmap_from_yaml(d, (const char *)data, size, "fuzz.yaml", &err);
    if (!m) {
        if (!err.msg[0])
            abort(); /* every failure explains itself */
        return 0;
    }
    char *json = pbmap_to_json_string(m, size & 1 ? 2 : 0);
    if (!json)
        abort();
    json_t *tree = pbmap_to_json(m);
    int long_key = !tree || has_long_key(tree);
    json_decref(tree);
    ProtobufCMessage *back = pbmap_from_yaml(d, json, strlen(json), "dump.json", &err);
    if (!back && long_key) {
        free(json);
        protobuf_c_message_free_unpacked(m, NULL);
        return 0;
    }
    if (!back)
        abort(); /* our output did not read back */
    size_t na, nb;
    uint8_t *pa = packed(m, &na), *pb = packed(back, &nb);
    if (!pa || !pb || na != nb || memcmp(pa, pb, na) != 0)
        abort(); /* the round trip changed the message */
    free(pa);
    free(pb);
    free(json);
    protobuf_c_message_free_unpacked(back, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
