/* pbmap, output side: protobuf-c message -> proto3 JSON (jansson tree, or text). */
#include "common/pbmap.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

#define PJ_MEMBER(m, off) ((const void *)((const char *)(m) + (off)))

static json_t *pj_msg(const ProtobufCMessage *m, int depth);

/* ---- small formatters ---- */

char *pbmap_base64(const unsigned char *data, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0);
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = i + 1 < len ? abc[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

/* Fractional digits as proto3 JSON writes them: none, 3, 6 or 9, whichever is exact. */
static void pj_frac(uint32_t nanos, char *out, size_t n)
{
    if (nanos == 0)
        out[0] = '\0';
    else if (nanos % 1000000 == 0)
        snprintf(out, n, ".%03" PRIu32, nanos / 1000000);
    else if (nanos % 1000 == 0)
        snprintf(out, n, ".%06" PRIu32, nanos / 1000);
    else
        snprintf(out, n, ".%09" PRIu32, nanos);
}

void pbmap_format_duration(int64_t seconds, int32_t nanos, char *out, size_t outlen)
{
    int neg = seconds < 0 || nanos < 0;
    uint64_t s = seconds < 0 ? 0 - (uint64_t)seconds : (uint64_t)seconds;
    uint32_t ns = nanos < 0 ? 0 - (uint32_t)nanos : (uint32_t)nanos;
    char frac[16];
    pj_frac(ns % 1000000000u, frac, sizeof frac);
    snprintf(out, outlen, "%s%" PRIu64 "%ss", neg ? "-" : "", s + ns / 1000000000u, frac);
}

/* Proleptic Gregorian date of a day count since 1970-01-01 (inverse of days_from_civil). */
static void pj_civil(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static json_t *pj_timestamp(const Google__Protobuf__Timestamp *ts)
{
    int64_t days = ts->seconds / 86400, rem = ts->seconds % 86400, y;
    int mo, d;
    if (rem < 0)
        rem += 86400, days--;
    pj_civil(days, &y, &mo, &d);
    char frac[16], buf[64];
    pj_frac(ts->nanos > 0 && ts->nanos < 1000000000 ? (uint32_t)ts->nanos : 0, frac, sizeof frac);
    snprintf(buf, sizeof buf, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d%sZ", y, mo, d,
             (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), frac);
    return json_string(buf);
}

/* Length of the valid UTF-8 sequence at s, or 0 (overlong, surrogate, beyond U+10FFFF). */
static size_t pj_utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (!len || len > n || s[0] > 0xf4)
        return 0;
    uint32_t cp = s[0] & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string of s; bytes that are not UTF-8 (protobuf-c does not check) become U+FFFD. */
static json_t *pj_string(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && pj_utf8_len((const unsigned char *)s + i, len - i))
        i += pj_utf8_len((const unsigned char *)s + i, len - i);
    if (i == len)
        return json_stringn_nocheck(s, len);
    char *buf = malloc(len * 3 + 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    for (i = 0; i < len;) {
        size_t l = pj_utf8_len((const unsigned char *)s + i, len - i);
        if (l) {
            memcpy(buf + o, s + i, l);
            o += l, i += l;
        } else {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3, i++;
        }
    }
    json_t *j = json_stringn_nocheck(buf, o);
    free(buf);
    return j;
}

static json_t *pj_double(double d)
{
    if (isnan(d))
        return json_string("NaN");
    if (isinf(d))
        return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(d);
}

/* A float is written as the double of its shortest decimal form, so 0.1f reads "0.1". */
static json_t *pj_float(float f)
{
    if (!isfinite(f))
        return pj_double(f);
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f) /* how pbmap reads it back */
            break;
    }
    return json_real(strtod(buf, NULL));
}

/* ---- fields ---- */

/* One value of fd's type stored at p. */
static json_t *pj_value(const ProtobufCFieldDescriptor *fd, const void *p, int depth)
{
    char buf[32];
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "%" PRId64, *(const int64_t *)p);
        return json_string(buf);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "%" PRIu64, *(const uint64_t *)p);
        return json_string(buf);
    case PROTOBUF_C_TYPE_FLOAT:
        return pj_float(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return pj_double(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(fd->descriptor, v);
        return ev ? json_string(ev->name) : json_integer(v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return pj_string(s ? s : "", s ? strlen(s) : 0);
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = p;
        char *b64 = pbmap_base64(bd->data, bd->data ? bd->len : 0);
        json_t *j = b64 ? json_string(b64) : NULL;
        free(b64);
        return j;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        if (sub)
            return pj_msg(sub, depth + 1);
        return pbmap_wkt_of(fd->descriptor) == PBMAP_WKT_VALUE ? json_null() : json_object();
    }
    }
    return NULL;
}

/* Proto3 presence: oneof members when selected, lists when non-empty, messages when set,
 * optional scalars by has_, plain scalars when not at their zero value. */
static int pj_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd)
{
    const void *p = PJ_MEMBER(m, fd->offset);
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)PJ_MEMBER(m, fd->quantifier_offset) == fd->id;
    if (fd->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)PJ_MEMBER(m, fd->quantifier_offset) > 0;
    if (fd->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(ProtobufCMessage *const *)p != NULL;
    if (fd->label == PROTOBUF_C_LABEL_OPTIONAL && fd->type != PROTOBUF_C_TYPE_STRING)
        return *(const protobuf_c_boolean *)PJ_MEMBER(m, fd->quantifier_offset);
    if (fd->label == PROTOBUF_C_LABEL_REQUIRED)
        return 1;
    switch (fd->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s && (s[0] || fd->label == PROTOBUF_C_LABEL_OPTIONAL);
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len > 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)p != 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p != 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)p != 0;
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p != 0;
    default:
        return *(const uint32_t *)p != 0;
    }
}

/* A map entry's key as JSON object key text (malloc'd). */
static char *pj_map_key(const ProtobufCMessage *e, const ProtobufCFieldDescriptor *kfd)
{
    const void *p = PJ_MEMBER(e, kfd->offset);
    if (kfd->type == PROTOBUF_C_TYPE_STRING) {
        json_t *j = pj_value(kfd, p, 0); /* through pj_string: valid UTF-8 */
        char *s = j ? strdup(json_string_value(j)) : NULL;
        json_decref(j);
        return s;
    }
    json_t *j = pj_value(kfd, p, 0);
    char *s = NULL;
    if (json_is_string(j))
        s = strdup(json_string_value(j));
    else if (json_is_integer(j) && (s = malloc(24)))
        snprintf(s, 24, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
    else if (json_is_boolean(j))
        s = strdup(json_is_true(j) ? "true" : "false");
    json_decref(j);
    return s;
}

static json_t *pj_field(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd, int depth)
{
    if (fd->label != PROTOBUF_C_LABEL_REPEATED)
        return pj_value(fd, PJ_MEMBER(m, fd->offset), depth);
    size_t n = *(const size_t *)PJ_MEMBER(m, fd->quantifier_offset);
    const char *arr = *(char *const *)PJ_MEMBER(m, fd->offset);
    if (pbmap_is_map_field(fd)) {
        const ProtobufCMessageDescriptor *ed = fd->descriptor;
        json_t *obj = json_object();
        for (size_t i = 0; obj && i < n; i++) {
            const ProtobufCMessage *e = ((ProtobufCMessage *const *)arr)[i];
            char *key = pj_map_key(e, &ed->fields[0]);
            json_t *v = key ? pj_value(&ed->fields[1], PJ_MEMBER(e, ed->fields[1].offset), depth)
                            : NULL;
            if (!v || json_object_set_new_nocheck(obj, key, v) < 0) {
                json_decref(obj);
                obj = NULL;
            }
            free(key);
        }
        return obj;
    }
    size_t esz;
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
        esz = 8;
        break;
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE:
        esz = sizeof(void *);
        break;
    case PROTOBUF_C_TYPE_BYTES:
        esz = sizeof(ProtobufCBinaryData);
        break;
    default:
        esz = 4;
        break;
    }
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_t *v = pj_value(fd, arr + i * esz, depth);
        if (!v || json_array_append_new(a, v) < 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

/* ---- messages ---- */

static json_t *pj_fields(const ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    json_t *obj = json_object();
    for (unsigned i = 0; obj && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        if (!pj_present(m, fd))
            continue;
        char name[256];
        json_t *v = pj_field(m, fd, depth);
        if (pbmap_json_name(fd->name, name, sizeof name) < 0)
            snprintf(name, sizeof name, "%s", fd->name);
        if (!v || json_object_set_new_nocheck(obj, name, v) < 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    return obj;
}

static json_t *pj_value_msg(const Google__Protobuf__Value *v, int depth)
{
    switch (v->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
        return pj_double(v->number_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
        return pj_string(v->string_value ? v->string_value : "",
                         v->string_value ? strlen(v->string_value) : 0);
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
        return json_boolean(v->bool_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
        return v->struct_value ? pj_msg(&v->struct_value->base, depth + 1) : json_object();
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
        return v->list_value ? pj_msg(&v->list_value->base, depth + 1) : json_array();
    default:
        return json_null();
    }
}

/* {"@type": url, fields...}; {"@type": url, "value": json} for well-known inner types; and
 * {"@type": url, "value": base64} when the type is unknown or the bytes do not decode. */
static json_t *pj_any(const Google__Protobuf__Any *a, int depth)
{
    const char *url = a->type_url ? a->type_url : "";
    json_t *obj = json_object();
    if (!obj || (!url[0] && a->value.len == 0))
        return obj;
    if (json_object_set_new_nocheck(obj, "@type", pj_string(url, strlen(url))) < 0)
        goto fail;
    const ProtobufCMessageDescriptor *d = pbmap_find_type(url);
    ProtobufCMessage *inner = d ? protobuf_c_message_unpack(d, NULL, a->value.len, a->value.data)
                                : NULL;
    if (!inner) {
        char *b64 = pbmap_base64(a->value.data, a->value.data ? a->value.len : 0);
        int rc = b64 ? json_object_set_new_nocheck(obj, "value", json_string(b64)) : -1;
        free(b64);
        if (rc < 0)
            goto fail;
        return obj;
    }
    json_t *j = pj_msg(inner, depth + 1);
    protobuf_c_message_free_unpacked(inner, NULL);
    if (!j)
        goto fail;
    if (pbmap_wkt_of(d) != PBMAP_WKT_NONE) {
        if (json_object_set_new_nocheck(obj, "value", j) < 0)
            goto fail;
    } else {
        int rc = json_object_update(obj, j);
        json_decref(j);
        if (rc < 0)
            goto fail;
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

static json_t *pj_msg(const ProtobufCMessage *m, int depth)
{
    if (depth >= PBMAP_MAX_JSON_DEPTH)
        return NULL;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    char buf[48];
    switch (pbmap_wkt_of(d)) {
    case PBMAP_WKT_DURATION: {
        const Google__Protobuf__Duration *du = (const Google__Protobuf__Duration *)m;
        pbmap_format_duration(du->seconds, du->nanos, buf, sizeof buf);
        return json_string(buf);
    }
    case PBMAP_WKT_TIMESTAMP:
        return pj_timestamp((const Google__Protobuf__Timestamp *)m);
    case PBMAP_WKT_WRAPPER:
        return pj_value(&d->fields[0], PJ_MEMBER(m, d->fields[0].offset), depth);
    case PBMAP_WKT_STRUCT:
    case PBMAP_WKT_LIST_VALUE:
        return pj_field(m, &d->fields[0], depth);
    case PBMAP_WKT_VALUE:
        return pj_value_msg((const Google__Protobuf__Value *)m, depth);
    case PBMAP_WKT_ANY:
        return pj_any((const Google__Protobuf__Any *)m, depth);
    default:
        return pj_fields(m, depth);
    }
}

json_t *pbmap_to_json(const ProtobufCMessage *m)
{
    return m ? pj_msg(m, 0) : NULL;
}

/* ---- text: our own writer, for shortest round-trip doubles and YAML-safe escapes ---- */

struct pj_out {
    char *buf;
    size_t len, cap;
    int oom;
};

static void po_put(struct pj_out *o, const char *s, size_t n)
{
    if (o->oom)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *p = realloc(o->buf, cap);
        if (!p) {
            o->oom = 1;
            return;
        }
        o->buf = p;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void po_str(struct pj_out *o, const char *s)
{
    po_put(o, s, strlen(s));
}

static void po_newline(struct pj_out *o, int indent, int level)
{
    if (!indent)
        return;
    po_put(o, "\n", 1);
    for (int i = 0; i < indent * level; i++)
        po_put(o, " ", 1);
}

/* Escapes what JSON requires plus what YAML refuses to read raw (DEL, C1 controls, U+FEFF,
 * U+FFFE/F) or reads as a line break (U+0085, U+2028, U+2029), so our output always parses
 * back through yamltree. */
static void po_string(struct pj_out *o, const char *s, size_t n)
{
    po_put(o, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\', esc[1] = (char)ch;
            po_put(o, esc, 2);
            i++;
        } else if (ch == '\n' || ch == '\t' || ch == '\r') {
            po_str(o, ch == '\n' ? "\\n" : ch == '\t' ? "\\t" : "\\r");
            i++;
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            po_put(o, esc, 6);
            i++;
        } else if (ch < 0x80) {
            po_put(o, s + i, 1);
            i++;
        } else {
            size_t l = pj_utf8_len((const unsigned char *)s + i, n - i);
            uint32_t cp = 0xfffd;
            if (l == 2)
                cp = (uint32_t)(ch & 0x1f) << 6 | (s[i + 1] & 0x3f);
            else if (l == 3)
                cp = (uint32_t)(ch & 0x0f) << 12 | (uint32_t)(s[i + 1] & 0x3f) << 6 |
                     (s[i + 2] & 0x3f);
            if (l == 0 || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
                cp == 0xfeff || cp == 0xfffe || cp == 0xffff) {
                snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
                po_put(o, esc, 6);
                i += l ? l : 1;
            } else {
                po_put(o, s + i, l);
                i += l;
            }
        }
    }
    po_put(o, "\"", 1);
}

/* The fewest significant digits that read back as the same double, written without an
 * exponent when the exponent is small (1500, not 1.5e+03; 0.0001, not 1e-04). */
static void po_real(struct pj_out *o, double d)
{
    char buf[64];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    const char *e = strchr(buf, 'e');
    if (e) {
        int exp = atoi(e + 1);
        if (exp >= -7 && exp < 21)
            snprintf(buf, sizeof buf, "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, d);
    }
    po_str(o, buf);
}

static void po_json(struct pj_out *o, const json_t *j, int indent, int level)
{
    char buf[32];
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *v;
        size_t i = 0;
        if (json_object_size(j) == 0) {
            po_str(o, "{}");
            break;
        }
        po_put(o, "{", 1);
        json_object_foreach((json_t *)j, key, v) {
            if (i++)
                po_put(o, ",", 1);
            po_newline(o, indent, level + 1);
            po_string(o, key, strlen(key));
            po_str(o, indent ? ": " : ":");
            po_json(o, v, indent, level + 1);
        }
        po_newline(o, indent, level);
        po_put(o, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        if (json_array_size(j) == 0) {
            po_str(o, "[]");
            break;
        }
        po_put(o, "[", 1);
        json_array_foreach(j, i, v) {
            if (i)
                po_put(o, ",", 1);
            po_newline(o, indent, level + 1);
            po_json(o, v, indent, level + 1);
        }
        po_newline(o, indent, level);
        po_put(o, "]", 1);
        break;
    }
    case JSON_STRING:
        po_string(o, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        po_str(o, buf);
        break;
    case JSON_REAL:
        po_real(o, json_real_value(j));
        break;
    case JSON_TRUE:
        po_str(o, "true");
        break;
    case JSON_FALSE:
        po_str(o, "false");
        break;
    case JSON_NULL:
        po_str(o, "null");
        break;
    }
}

char *pbmap_json_dumps(const json_t *j, int indent)
{
    if (!j)
        return NULL;
    struct pj_out o = {0};
    po_json(&o, j, indent < 0 ? 0 : indent, 0);
    if (o.oom) {
        free(o.buf);
        return NULL;
    }
    return o.buf;
}

char *pbmap_to_json_string(const ProtobufCMessage *m, int indent)
{
    json_t *j = pbmap_to_json(m);
    char *s = pbmap_json_dumps(j, indent);
    json_decref(j);
    return s;
}
