/* pbmap: the one mapper between YAML/JSON text and protobuf-c messages, driven only by
 * descriptors. It serves the static bootstrap, /config_dump and xDS alike.
 *
 * Input follows the proto3 JSON mapping plus Envoy's YAML habits:
 *  - field names as in the .proto (snake_case) or lowerCamelCase; an unknown name, a field
 *    given twice (under either name) or two members of one oneof are errors;
 *  - null (`~`, `null`, empty) leaves a field unset; [] and {} leave lists and maps empty;
 *  - integers as plain or quoted decimal numbers (exponents allowed when integral), range
 *    checked; floats also "NaN", "Infinity", "-Infinity", .inf, .nan; bools true/false only;
 *    bytes as base64 (standard or URL-safe, padding optional); enums by name or number;
 *  - map<K,V> fields (protobuf-c: repeated "...Entry" messages, key=1, value=2) as YAML maps;
 *  - well-known types: Duration "1.5s" (the 's' is required, at most 9 fractional digits),
 *    Timestamp RFC 3339, wrappers as the bare scalar, Struct/Value/ListValue as any YAML,
 *    Empty as {}, Any as a map with "@type" and the fields of that type (for a well-known
 *    inner type, its JSON under "value"), packed into Any.value.
 * Output (pbmap_to_json*) is proto3 JSON: lowerCamel names, fields at their default omitted
 * (except set oneof members and wrappers), int64 kinds as strings, enums by name.
 *
 * Limits: messages nest at most PBMAP_MAX_DEPTH deep on input (the YAML side is bounded by
 * yamltree.h) and PBMAP_MAX_JSON_DEPTH on output; a field path in an error is cut at
 * PBMAP_PATH_MAX bytes; error text at sizeof(struct pbmap_error). Config-time code: it
 * allocates freely and is not meant for the request path. */
#ifndef WEFT_COMMON_PBMAP_H
#define WEFT_COMMON_PBMAP_H

#include <stddef.h>
#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "common/yamltree.h"

#define PBMAP_MAX_DEPTH 300        /* nested messages read from one tree */
#define PBMAP_MAX_JSON_DEPTH 1024  /* nested messages written (Struct takes 3 per level) */
#define PBMAP_PATH_MAX 320         /* bytes of "a.b[3].c" kept for messages */

/* One human-readable line: "FILE:LINE: field.path: problem" (or "FILE:LINE:COL: reason"
 * for YAML syntax errors). The path uses names as written in the input, [i] for list items
 * and [key] for map entries. */
struct pbmap_error {
    char msg[512];
};

/* Builds a message of type d from text (YAML or JSON; len bytes, borrowed; filename names it
 * in messages and may be NULL). An empty text gives an empty message. Returns the message,
 * owned by the caller (free with protobuf_c_message_free_unpacked(msg, NULL)), or NULL with
 * err filled (err may be NULL). */
ProtobufCMessage *pbmap_from_yaml(const ProtobufCMessageDescriptor *d, const char *text,
                                  size_t len, const char *filename, struct pbmap_error *err);

/* As pbmap_from_yaml, from an already parsed tree t (borrowed; a YT_NULL tree gives an empty
 * message). */
ProtobufCMessage *pbmap_from_tree(const ProtobufCMessageDescriptor *d, const struct ytree *t,
                                  const char *filename, struct pbmap_error *err);

/* Flags for pbmap_from_tree_flags. */
#define PBMAP_F_GO_DURATION 1u /* Durations in Go's form as Istio's YAML writes them: "1h30m",
                                  "100ms", "2.5s", "0" (units ns us µs ms s m h) */

/* As pbmap_from_tree, with PBMAP_F_* flags (0 behaves exactly as pbmap_from_tree). */
ProtobufCMessage *pbmap_from_tree_flags(const ProtobufCMessageDescriptor *d,
                                        const struct ytree *t, const char *filename,
                                        struct pbmap_error *err, unsigned flags);

/* Resolves "type.googleapis.com/envoy.x.v3.Y" (any prefix up to the last '/') or a bare
 * "envoy.x.v3.Y" to a descriptor of the api registry (static storage), or NULL. */
const ProtobufCMessageDescriptor *pbmap_find_type(const char *type_url);

/* Unpacks a google.protobuf.Any (borrowed). Its type must be `expected` (compared by full
 * name), or, when expected is NULL, any type the registry knows. Returns the inner message,
 * owned by the caller (protobuf_c_message_free_unpacked(msg, NULL)), or NULL with err filled
 * (err may be NULL). */
ProtobufCMessage *pbmap_unpack_any(const ProtobufCMessage *any,
                                   const ProtobufCMessageDescriptor *expected,
                                   struct pbmap_error *err);

/* Packs `inner` (borrowed) into `any`, a freshly initialised google.protobuf.Any whose
 * type_url and value it sets (malloc'd, so free_unpacked on the Any frees them).
 * Returns 0, or -1 when out of memory (any is then left unchanged). */
int pbmap_pack_any(const ProtobufCMessage *inner, ProtobufCMessage *any);

/* Converts m (borrowed) to proto3 JSON. Returns a new reference the caller owns (json_decref),
 * or NULL when out of memory or nested deeper than PBMAP_MAX_JSON_DEPTH. An Any whose type
 * is unknown or whose bytes do not decode is written as {"@type": url, "value": base64}. */
json_t *pbmap_to_json(const ProtobufCMessage *m);

/* As pbmap_to_json, as text: indent 0 gives one compact line, indent N pretty-prints with N
 * spaces per level. Doubles are written with the fewest digits that read back exactly.
 * Returns a malloc'd NUL-terminated string the caller frees, or NULL. */
char *pbmap_to_json_string(const ProtobufCMessage *m, int indent);

/* Writes any jansson value (borrowed; e.g. a /config_dump assembled from several
 * pbmap_to_json results) the way pbmap_to_json_string does: shortest round-trip doubles
 * (jansson's own json_dumps writes 0.1 as 0.10000000000000001) and escapes that keep the
 * text readable by yamltree. Object keys keep insertion order. Returns a malloc'd string
 * the caller frees, or NULL (j NULL or out of memory). */
char *pbmap_json_dumps(const json_t *j, int indent);

/* ---- shared by pbmap.c and pbmap_json.c (usable elsewhere too) ---- */

/* The well-known types with a JSON form of their own. */
enum pbmap_wkt {
    PBMAP_WKT_NONE,
    PBMAP_WKT_ANY,
    PBMAP_WKT_DURATION,
    PBMAP_WKT_TIMESTAMP,
    PBMAP_WKT_STRUCT,
    PBMAP_WKT_VALUE,
    PBMAP_WKT_LIST_VALUE,
    PBMAP_WKT_EMPTY,
    PBMAP_WKT_WRAPPER, /* DoubleValue ... BytesValue: one field "value" = 1 */
};

/* Classifies a descriptor by its full name. */
enum pbmap_wkt pbmap_wkt_of(const ProtobufCMessageDescriptor *d);

/* Returns 1 when fd is a map<K,V> field: repeated message "...Entry" with key = 1, value = 2. */
int pbmap_is_map_field(const ProtobufCFieldDescriptor *fd);

/* Writes the lowerCamelCase JSON name of a proto field name into out (outlen bytes, always
 * NUL-terminated). Returns 0, or -1 when it did not fit. */
int pbmap_json_name(const char *proto_name, char *out, size_t outlen);

/* Base64 (standard alphabet, padded) of len bytes into a malloc'd string, or NULL. */
char *pbmap_base64(const unsigned char *data, size_t len);

/* Seconds and nanos of a Duration as "1.500s" (0, 3, 6 or 9 fractional digits) into out
 * (at least 32 bytes). */
void pbmap_format_duration(int64_t seconds, int32_t nanos, char *out, size_t outlen);

#endif
