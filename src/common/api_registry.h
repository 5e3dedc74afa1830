/* The api type registry: every protobuf-c message descriptor generated from api/ (Envoy v3
 * subset, google.rpc.Status) and the well-known google.protobuf types. The table itself is
 * generated at build time by scripts/gen_registry.sh into <build>/gen/api_registry.c and
 * linked in weft_api; it is immutable and safe to read from any thread.
 *
 * Lookups scan linearly (a few hundred entries): use them at config-load / xDS-apply time,
 * never per request. */
#ifndef WEFT_API_REGISTRY_H
#define WEFT_API_REGISTRY_H

#include <stddef.h>
#include <string.h>
#include <protobuf-c/protobuf-c.h>

/* NULL-terminated; api_registry_count excludes the terminator. */
extern const ProtobufCMessageDescriptor *const api_registry[];
extern const size_t api_registry_count;

/* The prefix Envoy and Istio put in front of a full message name in Any.type_url. */
#define API_TYPE_URL_PREFIX "type.googleapis.com/"

/* Finds a message descriptor by name. `name` (len bytes, need not be NUL-terminated; borrowed)
 * is either a full name such as "envoy.config.cluster.v3.Cluster" or a type URL: anything up
 * to and including the last '/' is ignored, so "type.googleapis.com/envoy.config...." works.
 * Returns the descriptor (static storage, never freed) or NULL when unknown. */
static inline const ProtobufCMessageDescriptor *api_registry_find(const char *name, size_t len)
{
    if (!name)
        return NULL;
    for (size_t i = len; i > 0; i--) {
        if (name[i - 1] == '/') {
            name += i;
            len -= i;
            break;
        }
    }
    if (len == 0)
        return NULL;
    for (size_t i = 0; i < api_registry_count; i++) {
        const char *full = api_registry[i]->name;
        if (strncmp(full, name, len) == 0 && full[len] == '\0')
            return api_registry[i];
    }
    return NULL;
}

#endif
