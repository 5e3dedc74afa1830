/* pbmap, input side: struct ytree -> protobuf-c message, by descriptor (see pbmap.h).
 *
 * Memory: every message is malloc'd and initialised with its descriptor, strings, bytes and
 * repeated arrays are malloc'd, and each is stored in its parent as soon as it exists, so a
 * partly built message can always be released with protobuf_c_message_free_unpacked(m, NULL):
 * that is the single cleanup path on every error. */
#include "common/pbmap.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/api_registry.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

#define PB_MEMBER(m, off) ((void *)((char *)(m) + (off)))

/* Envoy and protobuf bound Duration to +-10000 years of seconds. */
#define PB_DURATION_MAX_SECONDS 315576000000LL

struct pb_ctx {
    const char *file;
    unsigned flags; /* PBMAP_F_* */
    struct pbmap_error *err;
    int failed;
    int depth;
    size_t plen;
    char path[PBMAP_PATH_MAX];
};

/* ---- shared helpers (declared in pbmap.h) ---- */

enum pbmap_wkt pbmap_wkt_of(const ProtobufCMessageDescriptor *d)
{
    static const struct { const char *name; enum pbmap_wkt kind; } wkts[] = {
        {"Any", PBMAP_WKT_ANY},           {"Duration", PBMAP_WKT_DURATION},
        {"Timestamp", PBMAP_WKT_TIMESTAMP}, {"Struct", PBMAP_WKT_STRUCT},
        {"Value", PBMAP_WKT_VALUE},       {"ListValue", PBMAP_WKT_LIST_VALUE},
        {"Empty", PBMAP_WKT_EMPTY},       {"DoubleValue", PBMAP_WKT_WRAPPER},
        {"FloatValue", PBMAP_WKT_WRAPPER}, {"Int64Value", PBMAP_WKT_WRAPPER},
        {"UInt64Value", PBMAP_WKT_WRAPPER}, {"Int32Value", PBMAP_WKT_WRAPPER},
        {"UInt32Value", PBMAP_WKT_WRAPPER}, {"BoolValue", PBMAP_WKT_WRAPPER},
        {"StringValue", PBMAP_WKT_WRAPPER}, {"BytesValue", PBMAP_WKT_WRAPPER},
    };
    if (!d || strncmp(d->name, "google.protobuf.", 16) != 0)
        return PBMAP_WKT_NONE;
    for (size_t i = 0; i < sizeof wkts / sizeof wkts[0]; i++)
        if (!strcmp(d->name + 16, wkts[i].name))
            return wkts[i].kind;
    return PBMAP_WKT_NONE;
}

int pbmap_is_map_field(const ProtobufCFieldDescriptor *fd)
{
    if (fd->label != PROTOBUF_C_LABEL_REPEATED || fd->type != PROTOBUF_C_TYPE_MESSAGE)
        return 0;
    const ProtobufCMessageDescriptor *e = fd->descriptor;
    size_t n = strlen(e->short_name);
    return n >= 5 && !strcmp(e->short_name + n - 5, "Entry") && e->n_fields == 2 &&
           e->fields[0].id == 1 && e->fields[1].id == 2;
}

int pbmap_json_name(const char *proto_name, char *out, size_t outlen)
{
    size_t o = 0;
    int upper = 0;
    for (const char *p = proto_name; *p; p++) {
        if (*p == '_') {
            upper = 1;
            continue;
        }
        if (o + 1 >= outlen) {
            if (outlen)
                out[o] = '\0';
            return -1;
        }
        out[o++] = upper && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
        upper = 0;
    }
    if (outlen)
        out[o] = '\0';
    return 0;
}

/* Returns 1 when key is the lowerCamelCase spelling of the proto field name. */
static int pb_camel_eq(const char *proto, const char *key)
{
    int upper = 0;
    for (; *proto; proto++) {
        if (*proto == '_') {
            upper = 1;
            continue;
        }
        char want = upper && *proto >= 'a' && *proto <= 'z' ? (char)(*proto - 'a' + 'A') : *proto;
        upper = 0;
        if (*key++ != want)
            return 0;
    }
    return *key == '\0';
}

/* ---- errors and the field path ---- */

static int pb_fail(struct pb_ctx *c, const struct ytree *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int pb_fail(struct pb_ctx *c, const struct ytree *at, const char *fmt, ...)
{
    if (c->failed)
        return -1;
    c->failed = 1;
    char *msg = c->err->msg;
    size_t cap = sizeof c->err->msg;
    int n = c->plen ? snprintf(msg, cap, "%s:%d: %s: ", c->file, at ? at->line : 0, c->path)
                    : snprintf(msg, cap, "%s:%d: ", c->file, at ? at->line : 0);
    if (n >= 0 && (size_t)n < cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg + n, cap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Appends to the path and returns the length to restore with pb_path_pop. A path that no
 * longer fits is cut: messages stay bounded. */
static size_t pb_path_push(struct pb_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static size_t pb_path_push(struct pb_ctx *c, const char *fmt, ...)
{
    size_t old = c->plen;
    if (old + 1 < sizeof c->path) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->path + old, sizeof c->path - old, fmt, ap);
        va_end(ap);
        c->plen = strlen(c->path);
    }
    return old;
}

static void pb_path_pop(struct pb_ctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

static size_t pb_path_key(struct pb_ctx *c, const struct ytree *k)
{
    int n = k->len > 100 ? 100 : (int)k->len;
    return c->plen ? pb_path_push(c, ".%.*s", n, k->str) : pb_path_push(c, "%.*s", n, k->str);
}

/* What a node is, for "expected X, got Y": the scalar's text or the kind. */
static const char *pb_got(const struct ytree *v, char *buf, size_t n)
{
    if (v->kind != YT_SCALAR)
        return ytree_kind_name(v->kind);
    snprintf(buf, n, "'%.60s%s'", v->str, v->len > 60 ? "..." : "");
    return buf;
}

static int pb_expected(struct pb_ctx *c, const struct ytree *v, const char *what)
{
    char buf[80];
    return pb_fail(c, v, "expected %s, got %s", what, pb_got(v, buf, sizeof buf));
}

/* ---- scalars ---- */

/* Accepts decimal numbers as JSON and YAML write them: [+-]digits[.digits][e[+-]digits]
 * (also ".5" and "5."). Sets *is_int when there is neither fraction nor exponent. */
static int pb_numeric(const char *s, int *is_int)
{
    const char *p = s;
    int digits = 0;
    *is_int = 1;
    if (*p == '+' || *p == '-')
        p++;
    while (*p >= '0' && *p <= '9')
        p++, digits++;
    if (*p == '.') {
        *is_int = 0;
        p++;
        while (*p >= '0' && *p <= '9')
            p++, digits++;
    }
    if (!digits)
        return 0;
    if (*p == 'e' || *p == 'E') {
        *is_int = 0;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

static int pb_parse_i64(struct pb_ctx *c, const struct ytree *v, int64_t lo, int64_t hi,
                        const char *type, int64_t *out)
{
    int is_int;
    long long x;
    if (v->kind != YT_SCALAR || !pb_numeric(v->str, &is_int))
        return pb_expected(c, v, "a number");
    if (is_int) {
        char *end;
        errno = 0;
        x = strtoll(v->str, &end, 10);
        if (errno == ERANGE)
            return pb_fail(c, v, "value '%.60s' out of range for %s", v->str, type);
    } else {
        double d = strtod(v->str, NULL);
        if (d != floor(d))
            return pb_expected(c, v, "an integer");
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
            return pb_fail(c, v, "value '%.60s' out of range for %s", v->str, type);
        x = (long long)d;
    }
    if (x < lo || x > hi)
        return pb_fail(c, v, "value '%.60s' out of range for %s", v->str, type);
    *out = x;
    return 0;
}

static int pb_parse_u64(struct pb_ctx *c, const struct ytree *v, uint64_t hi, const char *type,
                        uint64_t *out)
{
    int is_int;
    unsigned long long x;
    if (v->kind != YT_SCALAR || !pb_numeric(v->str, &is_int))
        return pb_expected(c, v, "a number");
    if (v->str[0] == '-') { /* only a negative zero is a uint */
        int64_t neg;
        if (pb_parse_i64(c, v, INT64_MIN, 0, type, &neg) < 0)
            return -1;
        if (neg != 0)
            return pb_fail(c, v, "value '%.60s' out of range for %s", v->str, type);
        x = 0;
    } else if (is_int) {
        errno = 0;
        x = strtoull(v->str, NULL, 10);
        if (errno == ERANGE)
            return pb_fail(c, v, "value '%.60s' out of range for %s", v->str, type);
    } else {
        double d = strtod(v->str, NULL);
        if (d != floor(d))
            return pb_expected(c, v, "an integer");
        if (!(d >= 0 && d < 18446744073709551616.0))
            return pb_fail(c, v, "value '%.60s' out of range for %s", v->str, type);
        x = (unsigned long long)d;
    }
    if (x > hi)
        return pb_fail(c, v, "value '%.60s' out of range for %s", v->str, type);
    *out = x;
    return 0;
}

static int pb_parse_double(struct pb_ctx *c, const struct ytree *v, double *out)
{
    static const struct { const char *s; double v; } special[] = {
        {"NaN", NAN},        {".nan", NAN},         {".NaN", NAN},       {".NAN", NAN},
        {"Infinity", INFINITY}, {".inf", INFINITY}, {".Inf", INFINITY},  {".INF", INFINITY},
        {"+.inf", INFINITY}, {"-Infinity", -INFINITY}, {"-.inf", -INFINITY},
        {"-.Inf", -INFINITY}, {"-.INF", -INFINITY},
    };
    int is_int;
    if (v->kind != YT_SCALAR)
        return pb_expected(c, v, "a number");
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (!strcmp(v->str, special[i].s)) {
            *out = special[i].v;
            return 0;
        }
    if (!pb_numeric(v->str, &is_int))
        return pb_expected(c, v, "a number");
    errno = 0;
    double d = strtod(v->str, NULL);
    if (errno == ERANGE && isinf(d))
        return pb_fail(c, v, "value '%.60s' out of range for double", v->str);
    *out = d;
    return 0;
}

static int pb_b64_digit(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

/* Decodes standard or URL-safe base64, padded or not, into a malloc'd buffer (NULL for an
 * empty input). Returns 0 or -1 (bad input; -2 out of memory). */
static int pb_b64_decode(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    size_t pad = 0;
    while (n > 0 && s[n - 1] == '=' && pad < 2)
        n--, pad++;
    if (n % 4 == 1 || (pad && (n + pad) % 4 != 0))
        return -1;
    if (n == 0)
        return 0;
    unsigned char *buf = malloc(n * 3 / 4 + 1);
    if (!buf)
        return -2;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int d = pb_b64_digit(s[i]);
        if (d < 0) {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out = buf;
    *outlen = o;
    return 0;
}

/* "[-]S[.F]s": the form Envoy and proto3 JSON use; at most 9 fractional digits. */
static int pb_parse_duration(const char *s, size_t len, int64_t *sec, int32_t *nanos)
{
    size_t i = 0;
    int neg = 0, digits = 0;
    int64_t secs = 0;
    int32_t ns = 0;
    if (len < 2 || s[len - 1] != 's')
        return -1;
    len--;
    if (s[i] == '-')
        neg = 1, i++;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
        if (secs > PB_DURATION_MAX_SECONDS)
            return -1;
        secs = secs * 10 + (s[i] - '0');
    }
    if (i < len && s[i] == '.') {
        int fd = 0;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, fd++) {
            if (fd == 9)
                return -1;
            ns = ns * 10 + (s[i] - '0');
        }
        if (!fd)
            return -1;
        for (int k = fd; k < 9; k++)
            ns *= 10;
    }
    if (i != len || !digits || secs > PB_DURATION_MAX_SECONDS)
        return -1;
    *sec = neg ? -secs : secs;
    *nanos = neg ? -ns : ns;
    return 0;
}

/* Go's time.ParseDuration form, as Istio's YAML writes durations: one or more
 * "<decimal>[.<fraction>]<unit>" with units ns, us (or µs), ms, s, m, h, optionally signed
 * ("1h30m", "100ms", "2.5s"). Kept to +-PB_DURATION_MAX_SECONDS. */
static int pb_parse_go_duration(const char *s, size_t len, int64_t *sec, int32_t *nanos)
{
    static const struct { const char *u; int64_t ns; } units[] = {
        {"ns", 1}, {"us", 1000}, {"\xc2\xb5s", 1000}, {"ms", 1000000}, {"s", 1000000000LL},
        {"m", 60000000000LL}, {"h", 3600000000000LL},
    };
    size_t i = 0;
    int neg = 0;
    /* Accumulate in (seconds, nanos) to keep the full Duration range without overflow. */
    __int128 total = 0; /* nanoseconds */
    const __int128 max = (__int128)PB_DURATION_MAX_SECONDS * 1000000000;
    if (len == 0)
        return -1;
    if (s[0] == '-' || s[0] == '+')
        neg = s[0] == '-', i++;
    if (i == len)
        return -1;
    if (len - i == 1 && s[i] == '0') {
        *sec = 0;
        *nanos = 0;
        return 0;
    }
    while (i < len) {
        int64_t whole = 0;
        int digits = 0, fdigits = 0;
        int64_t frac = 0, fscale = 1;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
            if (whole > PB_DURATION_MAX_SECONDS * 1000)
                return -1;
            whole = whole * 10 + (s[i] - '0');
        }
        if (i < len && s[i] == '.') {
            for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, fdigits++)
                if (fdigits < 18)
                    frac = frac * 10 + (s[i] - '0'), fscale *= 10;
        }
        if (!digits && !fdigits)
            return -1;
        size_t best = 0;
        int64_t unit = 0;
        for (size_t k = 0; k < sizeof units / sizeof units[0]; k++) {
            size_t ul = strlen(units[k].u);
            if (ul > best && i + ul <= len && !memcmp(s + i, units[k].u, ul) &&
                !(ul == 1 && units[k].u[0] == 'm' && i + 1 < len && s[i + 1] == 's'))
                best = ul, unit = units[k].ns;
        }
        if (!best)
            return -1;
        i += best;
        total += (__int128)whole * unit + (__int128)frac * unit / fscale;
        if (total > max)
            return -1;
    }
    int64_t secs = (int64_t)(total / 1000000000);
    int32_t ns = (int32_t)(total % 1000000000);
    *sec = neg ? -secs : secs;
    *nanos = neg ? -ns : ns;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (the usual era/day-of-era method). */
static int64_t pb_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int pb_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), years 0001..9999. */
static int pb_parse_timestamp(const char *s, size_t len, int64_t *sec, int32_t *nanos)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, se, ns = 0;
    if (len < 20 || pb_digits(s, 4, &y) || s[4] != '-' || pb_digits(s + 5, 2, &mo) ||
        s[7] != '-' || pb_digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        pb_digits(s + 11, 2, &h) || s[13] != ':' || pb_digits(s + 14, 2, &mi) || s[16] != ':' ||
        pb_digits(s + 17, 2, &se))
        return -1;
    size_t i = 19;
    if (s[i] == '.') {
        int fd = 0;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, fd++) {
            if (fd == 9)
                return -1;
            ns = ns * 10 + (s[i] - '0');
        }
        if (!fd)
            return -1;
        for (int k = fd; k < 9; k++)
            ns *= 10;
    }
    int off = 0;
    if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh, om;
        if (pb_digits(s + i + 1, 2, &oh) || pb_digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = (oh * 60 + om) * 60 * (s[i] == '-' ? -1 : 1);
        i += 6;
    }
    if (i != len || y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59)
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return -1;
    *sec = pb_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
    *nanos = ns;
    return 0;
}

/* ---- building messages ---- */

static int pb_fill(struct pb_ctx *c, ProtobufCMessage *m, const struct ytree *t);

/* google.protobuf.Value alone takes a null as a value (NULL_VALUE), everywhere. */
static int pb_accepts_null(const ProtobufCFieldDescriptor *fd)
{
    return fd->type == PROTOBUF_C_TYPE_MESSAGE && pbmap_wkt_of(fd->descriptor) == PBMAP_WKT_VALUE;
}

/* Allocates a message of type d, fills it from t and stores it in *out; on error frees it. */
static int pb_build(struct pb_ctx *c, const ProtobufCMessageDescriptor *d, const struct ytree *t,
                    ProtobufCMessage **out)
{
    *out = NULL;
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (!m)
        return pb_fail(c, t, "out of memory");
    protobuf_c_message_init(d, m);
    if (pb_fill(c, m, t) < 0) {
        protobuf_c_message_free_unpacked(m, NULL);
        return -1;
    }
    *out = m;
    return 0;
}

static int pb_parse_enum(struct pb_ctx *c, const ProtobufCFieldDescriptor *fd,
                         const struct ytree *v, int *out)
{
    const ProtobufCEnumDescriptor *ed = fd->descriptor;
    const ProtobufCEnumValue *ev = NULL;
    int is_int;
    if (v->kind != YT_SCALAR)
        return pb_expected(c, v, "an enum name");
    if (pb_numeric(v->str, &is_int) && is_int) {
        int64_t n;
        if (pb_parse_i64(c, v, INT32_MIN, INT32_MAX, "enum", &n) < 0)
            return -1;
        ev = protobuf_c_enum_descriptor_get_value(ed, (int)n);
    } else {
        ev = protobuf_c_enum_descriptor_get_value_by_name(ed, v->str);
    }
    if (ev) {
        *out = ev->value;
        return 0;
    }
    char names[300];
    size_t o = 0;
    names[0] = '\0';
    for (unsigned i = 0; i < ed->n_values && o + 1 < sizeof names; i++) {
        int n = snprintf(names + o, sizeof names - o, "%s%s", i ? ", " : "", ed->values[i].name);
        if (n < 0)
            break;
        o += (size_t)n;
    }
    return pb_fail(c, v, "unknown enum value %.60s, expected one of %s", v->str, names);
}

/* Parses one value of fd's type from v into dst (the field's storage or a repeated slot).
 * On error dst is left as it was. v is never null here unless pb_accepts_null(fd). */
static int pb_parse_value(struct pb_ctx *c, const ProtobufCFieldDescriptor *fd,
                          const struct ytree *v, void *dst)
{
    int64_t i;
    uint64_t u;
    double d;

    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (pb_parse_i64(c, v, INT32_MIN, INT32_MAX, "int32", &i) < 0)
            return -1;
        *(int32_t *)dst = (int32_t)i;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (pb_parse_i64(c, v, INT64_MIN, INT64_MAX, "int64", &i) < 0)
            return -1;
        *(int64_t *)dst = i;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (pb_parse_u64(c, v, UINT32_MAX, "uint32", &u) < 0)
            return -1;
        *(uint32_t *)dst = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (pb_parse_u64(c, v, UINT64_MAX, "uint64", &u) < 0)
            return -1;
        *(uint64_t *)dst = u;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
        if (pb_parse_double(c, v, &d) < 0)
            return -1;
        if (isfinite(d) && fabs(d) > FLT_MAX)
            return pb_fail(c, v, "value '%.60s' out of range for float", v->str);
        *(float *)dst = (float)d;
        return 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (pb_parse_double(c, v, &d) < 0)
            return -1;
        *(double *)dst = d;
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (v->kind != YT_SCALAR || (strcmp(v->str, "true") && strcmp(v->str, "false")))
            return pb_expected(c, v, "true or false");
        *(protobuf_c_boolean *)dst = v->str[0] == 't';
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return pb_parse_enum(c, fd, v, (int *)dst);
    case PROTOBUF_C_TYPE_STRING: {
        if (v->kind != YT_SCALAR)
            return pb_expected(c, v, "a string");
        if (strlen(v->str) != v->len) /* protobuf-c strings end at the first NUL */
            return pb_fail(c, v, "strings may not contain NUL characters");
        char *s = malloc(v->len + 1);
        if (!s)
            return pb_fail(c, v, "out of memory");
        memcpy(s, v->str, v->len + 1);
        *(char **)dst = s;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *bd = dst;
        unsigned char *data;
        size_t len;
        if (v->kind != YT_SCALAR)
            return pb_expected(c, v, "base64 bytes");
        int rc = pb_b64_decode(v->str, v->len, &data, &len);
        if (rc == -2)
            return pb_fail(c, v, "out of memory");
        if (rc < 0)
            return pb_expected(c, v, "base64 bytes");
        bd->data = data;
        bd->len = len;
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        ProtobufCMessage *sub;
        if (pb_build(c, fd->descriptor, v, &sub) < 0)
            return -1;
        *(ProtobufCMessage **)dst = sub;
        return 0;
    }
    }
    return pb_fail(c, v, "unsupported field type");
}

static size_t pb_elem_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return sizeof(uint64_t);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return sizeof(uint32_t);
    }
}

static int pb_set_list(struct pb_ctx *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd,
                       const struct ytree *v)
{
    if (v->kind != YT_SEQ)
        return pb_expected(c, v, "a list");
    if (v->n == 0)
        return 0;
    size_t esz = pb_elem_size(fd->type);
    char *arr = calloc(v->n, esz);
    if (!arr)
        return pb_fail(c, v, "out of memory");
    size_t *np = PB_MEMBER(m, fd->quantifier_offset);
    *(void **)PB_MEMBER(m, fd->offset) = arr;
    *np = 0;
    for (size_t i = 0; i < v->n; i++) {
        const struct ytree *item = v->items[i];
        size_t old = pb_path_push(c, "[%zu]", i);
        int rc = item->kind == YT_NULL && !pb_accepts_null(fd)
                     ? pb_fail(c, item, "list items may not be null")
                     : pb_parse_value(c, fd, item, arr + i * esz);
        pb_path_pop(c, old);
        if (rc < 0)
            return -1;
        (*np)++;
    }
    return 0;
}

static int pb_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* YAML keys are unique as text, but "1" and "01" are one int key: sort and compare. */
static int pb_check_int_keys(struct pb_ctx *c, const struct ytree *v, ProtobufCMessage **entries,
                             size_t n, const ProtobufCFieldDescriptor *kfd)
{
    uint64_t *keys = malloc(n * sizeof *keys);
    if (!keys)
        return pb_fail(c, v, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const void *p = PB_MEMBER(entries[i], kfd->offset);
        size_t sz = pb_elem_size(kfd->type);
        keys[i] = sz == 8 ? *(const uint64_t *)p : *(const uint32_t *)p;
    }
    qsort(keys, n, sizeof *keys, pb_cmp_u64);
    int rc = 0;
    for (size_t i = 1; i < n && rc == 0; i++)
        if (keys[i] == keys[i - 1])
            rc = pb_fail(c, v, "duplicate map key");
    free(keys);
    return rc;
}

static int pb_set_map(struct pb_ctx *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd,
                      const struct ytree *v)
{
    const ProtobufCMessageDescriptor *ed = fd->descriptor;
    const ProtobufCFieldDescriptor *kfd = &ed->fields[0], *vfd = &ed->fields[1];
    if (v->kind != YT_MAP)
        return pb_expected(c, v, "a map");
    size_t npairs = v->n / 2;
    if (npairs == 0)
        return 0;
    ProtobufCMessage **arr = calloc(npairs, sizeof *arr);
    if (!arr)
        return pb_fail(c, v, "out of memory");
    size_t *np = PB_MEMBER(m, fd->quantifier_offset);
    *(void **)PB_MEMBER(m, fd->offset) = arr;
    *np = 0;
    for (size_t i = 0; i < npairs; i++) {
        const struct ytree *k = v->items[2 * i], *x = v->items[2 * i + 1];
        ProtobufCMessage *e = malloc(ed->sizeof_message);
        if (!e)
            return pb_fail(c, k, "out of memory");
        protobuf_c_message_init(ed, e);
        arr[(*np)++] = e;
        size_t old = pb_path_push(c, "[%.*s]", k->len > 100 ? 100 : (int)k->len, k->str);
        int rc;
        if (kfd->type == PROTOBUF_C_TYPE_STRING || k->kind == YT_SCALAR) {
            struct ytree key = *k;
            key.kind = YT_SCALAR; /* a null-looking key ("~: x") is still text here */
            rc = pb_parse_value(c, kfd, &key, PB_MEMBER(e, kfd->offset));
        } else {
            rc = pb_expected(c, k, "a map key");
        }
        if (rc == 0)
            rc = x->kind == YT_NULL && !pb_accepts_null(vfd)
                     ? pb_fail(c, x, "map values may not be null")
                     : pb_parse_value(c, vfd, x, PB_MEMBER(e, vfd->offset));
        pb_path_pop(c, old);
        if (rc < 0)
            return -1;
    }
    if (kfd->type != PROTOBUF_C_TYPE_STRING)
        return pb_check_int_keys(c, v, arr, npairs, kfd);
    return 0;
}

/* Sets one field from v (not null, unless the field takes null) and marks it present. */
static int pb_set_field(struct pb_ctx *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd,
                        const struct ytree *v)
{
    if (fd->label == PROTOBUF_C_LABEL_REPEATED)
        return pbmap_is_map_field(fd) ? pb_set_map(c, m, fd, v) : pb_set_list(c, m, fd, v);
    if (pb_parse_value(c, fd, v, PB_MEMBER(m, fd->offset)) < 0)
        return -1;
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)PB_MEMBER(m, fd->quantifier_offset) = fd->id;
    else if (fd->label == PROTOBUF_C_LABEL_OPTIONAL && fd->type != PROTOBUF_C_TYPE_STRING &&
             fd->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)PB_MEMBER(m, fd->quantifier_offset) = 1;
    return 0;
}

static const ProtobufCFieldDescriptor *pb_find_field(const ProtobufCMessageDescriptor *d,
                                                     const struct ytree *k)
{
    if (strlen(k->str) != k->len)
        return NULL;
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(d, k->str);
    if (fd)
        return fd;
    for (unsigned i = 0; i < d->n_fields; i++)
        if (pb_camel_eq(d->fields[i].name, k->str))
            return &d->fields[i];
    return NULL;
}

static int pb_is_key(const struct ytree *k, const char *s)
{
    return k->len == strlen(s) && !memcmp(k->str, s, k->len);
}

/* An ordinary message from a YAML map. skip_type: the map is an Any's, "@type" is not ours. */
static int pb_fill_fields(struct pb_ctx *c, ProtobufCMessage *m, const struct ytree *t,
                          int skip_type)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    unsigned char small[128], *seen = small;
    if (t->kind != YT_MAP)
        return pb_expected(c, t, "a map");
    if (d->n_fields > sizeof small && !(seen = calloc(d->n_fields, 1)))
        return pb_fail(c, t, "out of memory");
    memset(seen, 0, d->n_fields <= sizeof small ? sizeof small : 0);
    int rc = 0;
    for (size_t i = 0; i + 1 < t->n && rc == 0; i += 2) {
        const struct ytree *k = t->items[i], *v = t->items[i + 1];
        if (skip_type && pb_is_key(k, "@type"))
            continue;
        const ProtobufCFieldDescriptor *fd = pb_find_field(d, k);
        size_t old = pb_path_key(c, k);
        if (!fd) {
            rc = pb_fail(c, k, "unknown field");
        } else if (seen[fd - d->fields]) {
            rc = pb_fail(c, k, "field '%s' is given twice", fd->name);
        } else {
            seen[fd - d->fields] = 1;
            uint32_t cur = fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF
                               ? *(uint32_t *)PB_MEMBER(m, fd->quantifier_offset) : 0;
            if (v->kind == YT_NULL && !pb_accepts_null(fd)) {
                /* null: the field stays unset */
            } else if (cur && cur != fd->id) {
                const ProtobufCFieldDescriptor *other = protobuf_c_message_descriptor_get_field(d, cur);
                rc = pb_fail(c, k, "only one of %s, %s may be set", other ? other->name : "?",
                             fd->name);
            } else {
                rc = pb_set_field(c, m, fd, v);
            }
        }
        pb_path_pop(c, old);
    }
    if (seen != small)
        free(seen);
    return rc;
}

static int pb_fill_value(struct pb_ctx *c, Google__Protobuf__Value *val, const struct ytree *t)
{
    int is_int;
    ProtobufCMessage *sub;
    switch (t->kind) {
    case YT_NULL:
        val->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
        val->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        return 0;
    case YT_SCALAR:
        if (!t->quoted && (!strcmp(t->str, "true") || !strcmp(t->str, "false"))) {
            val->bool_value = t->str[0] == 't';
            val->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
            return 0;
        }
        if (!t->quoted && pb_numeric(t->str, &is_int)) {
            errno = 0;
            double d = strtod(t->str, NULL);
            if (!(errno == ERANGE && isinf(d))) {
                val->number_value = d;
                val->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
                return 0;
            }
        }
        if (strlen(t->str) != t->len)
            return pb_fail(c, t, "strings may not contain NUL characters");
        if (!(val->string_value = malloc(t->len + 1)))
            return pb_fail(c, t, "out of memory");
        memcpy(val->string_value, t->str, t->len + 1);
        val->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        return 0;
    case YT_MAP:
        if (pb_build(c, &google__protobuf__struct__descriptor, t, &sub) < 0)
            return -1;
        val->struct_value = (Google__Protobuf__Struct *)sub;
        val->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        return 0;
    case YT_SEQ:
        if (pb_build(c, &google__protobuf__list_value__descriptor, t, &sub) < 0)
            return -1;
        val->list_value = (Google__Protobuf__ListValue *)sub;
        val->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        return 0;
    }
    return pb_expected(c, t, "a value");
}

/* {"@type": url, fields...} or, for a well-known inner type, {"@type": url, "value": json}. */
static int pb_fill_any(struct pb_ctx *c, ProtobufCMessage *any, const struct ytree *t)
{
    const struct ytree *tk = NULL, *tv = NULL, *vk = NULL, *vv = NULL;
    if (t->kind != YT_MAP)
        return pb_expected(c, t, "a map with \"@type\"");
    if (t->n == 0)
        return 0;
    for (size_t i = 0; i + 1 < t->n; i += 2) {
        if (pb_is_key(t->items[i], "@type"))
            tk = t->items[i], tv = t->items[i + 1];
        else if (pb_is_key(t->items[i], "value"))
            vk = t->items[i], vv = t->items[i + 1];
    }
    if (!tk)
        return pb_fail(c, t, "missing \"@type\"");
    size_t old = pb_path_key(c, tk);
    const ProtobufCMessageDescriptor *d = NULL;
    int rc = 0;
    if (tv->kind != YT_SCALAR)
        rc = pb_expected(c, tv, "a type URL");
    else if (!(d = pbmap_find_type(tv->str)))
        rc = pb_fail(c, tv, "unknown type '%.200s'", tv->str);
    pb_path_pop(c, old);
    if (rc < 0)
        return -1;

    ProtobufCMessage *inner = malloc(d->sizeof_message);
    if (!inner)
        return pb_fail(c, t, "out of memory");
    protobuf_c_message_init(d, inner);
    if (pbmap_wkt_of(d) == PBMAP_WKT_NONE) {
        rc = pb_fill_fields(c, inner, t, 1);
    } else {
        for (size_t i = 0; i + 1 < t->n && rc == 0; i += 2) {
            const struct ytree *k = t->items[i];
            if (k != tk && k != vk) {
                old = pb_path_key(c, k);
                rc = pb_fail(c, k, "unknown field (a %s in an Any goes under \"value\")", d->name);
                pb_path_pop(c, old);
            }
        }
        if (rc == 0 && vv && vv->kind != YT_NULL) {
            old = pb_path_key(c, vk);
            rc = pb_fill(c, inner, vv);
            pb_path_pop(c, old);
        }
    }
    if (rc == 0 && pbmap_pack_any(inner, any) < 0)
        rc = pb_fail(c, t, "out of memory");
    protobuf_c_message_free_unpacked(inner, NULL);
    return rc;
}

static int pb_fill_special(struct pb_ctx *c, ProtobufCMessage *m, const struct ytree *t,
                           enum pbmap_wkt kind)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    switch (kind) {
    case PBMAP_WKT_DURATION: {
        Google__Protobuf__Duration *du = (Google__Protobuf__Duration *)m;
        if (c->flags & PBMAP_F_GO_DURATION) {
            if (t->kind != YT_SCALAR ||
                pb_parse_go_duration(t->str, t->len, &du->seconds, &du->nanos) < 0)
                return pb_expected(c, t, "a duration such as \"1.5s\", \"100ms\", \"1h30m\"");
            return 0;
        }
        if (t->kind != YT_SCALAR || pb_parse_duration(t->str, t->len, &du->seconds, &du->nanos) < 0)
            return pb_expected(c, t, "a duration in seconds with an 's' suffix, such as \"1.5s\"");
        return 0;
    }
    case PBMAP_WKT_TIMESTAMP: {
        Google__Protobuf__Timestamp *ts = (Google__Protobuf__Timestamp *)m;
        if (t->kind != YT_SCALAR || pb_parse_timestamp(t->str, t->len, &ts->seconds, &ts->nanos) < 0)
            return pb_expected(c, t, "an RFC 3339 time, such as \"2024-01-31T12:00:00Z\"");
        return 0;
    }
    case PBMAP_WKT_WRAPPER:
        return pb_set_field(c, m, &d->fields[0], t);
    case PBMAP_WKT_STRUCT:
        return pb_set_field(c, m, &d->fields[0], t); /* map<string, Value> fields = 1 */
    case PBMAP_WKT_LIST_VALUE:
        return pb_set_field(c, m, &d->fields[0], t); /* repeated Value values = 1 */
    case PBMAP_WKT_VALUE:
        return pb_fill_value(c, (Google__Protobuf__Value *)m, t);
    case PBMAP_WKT_ANY:
        return pb_fill_any(c, m, t);
    default:
        return pb_fill_fields(c, m, t, 0);
    }
}

/* Fills m (initialised, empty) from t. The depth bound covers Any and Struct nesting too. */
static int pb_fill(struct pb_ctx *c, ProtobufCMessage *m, const struct ytree *t)
{
    if (c->depth >= PBMAP_MAX_DEPTH)
        return pb_fail(c, t, "messages nested deeper than %d levels", PBMAP_MAX_DEPTH);
    c->depth++;
    int rc = pb_fill_special(c, m, t, pbmap_wkt_of(m->descriptor));
    c->depth--;
    return rc;
}

/* ---- public API ---- */

ProtobufCMessage *pbmap_from_tree(const ProtobufCMessageDescriptor *d, const struct ytree *t,
                                  const char *filename, struct pbmap_error *err)
{
    return pbmap_from_tree_flags(d, t, filename, err, 0);
}

ProtobufCMessage *pbmap_from_tree_flags(const ProtobufCMessageDescriptor *d,
                                        const struct ytree *t, const char *filename,
                                        struct pbmap_error *err, unsigned flags)
{
    struct pbmap_error dummy;
    struct pb_ctx *c = calloc(1, sizeof *c);
    ProtobufCMessage *m = NULL;
    if (!err)
        err = &dummy;
    err->msg[0] = '\0';
    if (!c) {
        snprintf(err->msg, sizeof err->msg, "%s: out of memory", filename ? filename : "<input>");
        return NULL;
    }
    c->file = filename ? filename : "<input>";
    c->flags = flags;
    c->err = err;
    if (!t || (t->kind == YT_NULL && pbmap_wkt_of(d) != PBMAP_WKT_VALUE)) {
        if ((m = malloc(d->sizeof_message)))
            protobuf_c_message_init(d, m);
        else
            pb_fail(c, t, "out of memory");
    } else {
        pb_build(c, d, t, &m);
    }
    free(c);
    return m;
}

ProtobufCMessage *pbmap_from_yaml(const ProtobufCMessageDescriptor *d, const char *text,
                                  size_t len, const char *filename, struct pbmap_error *err)
{
    struct pbmap_error dummy;
    if (!err)
        err = &dummy;
    struct ytree *t = ytree_parse(text, len, filename, err->msg, sizeof err->msg);
    if (!t)
        return NULL;
    ProtobufCMessage *m = pbmap_from_tree(d, t, filename, err);
    ytree_free(t);
    return m;
}

const ProtobufCMessageDescriptor *pbmap_find_type(const char *type_url)
{
    return type_url ? api_registry_find(type_url, strlen(type_url)) : NULL;
}

int pbmap_pack_any(const ProtobufCMessage *inner, ProtobufCMessage *any)
{
    Google__Protobuf__Any *a = (Google__Protobuf__Any *)any;
    const char *name = inner->descriptor->name;
    size_t n = protobuf_c_message_get_packed_size(inner);
    uint8_t *buf = NULL;
    if (n && !(buf = malloc(n)))
        return -1;
    if (n)
        protobuf_c_message_pack(inner, buf);
    size_t plen = strlen(API_TYPE_URL_PREFIX), nlen = strlen(name);
    char *url = malloc(plen + nlen + 1);
    if (!url) {
        free(buf);
        return -1;
    }
    memcpy(url, API_TYPE_URL_PREFIX, plen);
    memcpy(url + plen, name, nlen + 1);
    a->type_url = url;
    a->value.data = buf;
    a->value.len = n;
    return 0;
}

ProtobufCMessage *pbmap_unpack_any(const ProtobufCMessage *any,
                                   const ProtobufCMessageDescriptor *expected,
                                   struct pbmap_error *err)
{
    struct pbmap_error dummy;
    if (!err)
        err = &dummy;
    err->msg[0] = '\0';
    if (!any || pbmap_wkt_of(any->descriptor) != PBMAP_WKT_ANY) {
        snprintf(err->msg, sizeof err->msg, "not a google.protobuf.Any");
        return NULL;
    }
    const Google__Protobuf__Any *a = (const Google__Protobuf__Any *)any;
    const char *url = a->type_url ? a->type_url : "";
    const ProtobufCMessageDescriptor *d = pbmap_find_type(url);
    if (!d) {
        snprintf(err->msg, sizeof err->msg, "unknown type '%.300s'", url);
        return NULL;
    }
    if (expected && strcmp(expected->name, d->name) != 0) {
        snprintf(err->msg, sizeof err->msg, "expected type %.200s, got %.200s", expected->name,
                 d->name);
        return NULL;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, a->value.len, a->value.data);
    if (!m)
        snprintf(err->msg, sizeof err->msg, "cannot decode a %.300s", d->name);
    return m;
}
