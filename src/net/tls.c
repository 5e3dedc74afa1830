/* TLS contexts from Envoy's v3 TLS API, and the TLS side of the transport (see tls.h,
 * transport.h). OpenSSL 3 does the protocol; this file maps configuration onto SSL_CTX
 * settings, verifies peer SANs with Envoy's matchers, and keeps the non-blocking handshake and
 * record I/O in the shape the edge-triggered worker loop expects. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#include "common/hex.h"
#include "net/tls.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <openssl/err.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pcre2.h>
#include <pthread.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/stats.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb-c.h"

typedef Envoy__Extensions__TransportSockets__Tls__V3__DownstreamTlsContext DownCtx;
typedef Envoy__Extensions__TransportSockets__Tls__V3__UpstreamTlsContext UpCtx;
typedef Envoy__Extensions__TransportSockets__Tls__V3__CommonTlsContext CommonCtx;
typedef Envoy__Extensions__TransportSockets__Tls__V3__TlsCertificate TlsCert;
typedef Envoy__Extensions__TransportSockets__Tls__V3__CertificateValidationContext ValCtx;
typedef Envoy__Extensions__TransportSockets__Tls__V3__Secret Secret;
typedef Envoy__Extensions__TransportSockets__Tls__V3__SdsSecretConfig SdsRef;
typedef Envoy__Config__Core__V3__DataSource DataSource;
typedef Envoy__Type__Matcher__V3__StringMatcher StringMatcher;

#define TLS_MAX_CERTS 4
#define TLS_MAX_FILE (1u << 20)    /* a PEM file larger than 1 MiB is refused */
#define TLS_GRACE_MS 10000
#define TLS_MAX_ALPN 255
#define ENVOY_DEFAULT_CIPHERS                                                                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:"    \
    "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"

static const struct stat_def ssl_stat_defs[SSL_ST_COUNT] = {
    [SSL_ST_HANDSHAKE] = {"handshake", STAT_COUNTER},
    [SSL_ST_CONNECTION_ERROR] = {"connection_error", STAT_COUNTER},
    [SSL_ST_NO_CERTIFICATE] = {"no_certificate", STAT_COUNTER},
    [SSL_ST_FAIL_VERIFY_NO_CERT] = {"fail_verify_no_cert", STAT_COUNTER},
    [SSL_ST_FAIL_VERIFY_ERROR] = {"fail_verify_error", STAT_COUNTER},
    [SSL_ST_FAIL_VERIFY_SAN] = {"fail_verify_san", STAT_COUNTER},
    [SSL_ST_SESSION_REUSED] = {"session_reused", STAT_COUNTER},
    [SSL_ST_TLS12] = {"versions.TLSv1.2", STAT_COUNTER},
    [SSL_ST_TLS13] = {"versions.TLSv1.3", STAT_COUNTER},
    [SSL_ST_FAIL_VERIFY_CERT_HASH] = {"fail_verify_cert_hash", STAT_COUNTER},
};
const struct stat_schema ssl_stat_schema = {"ssl", ssl_stat_defs, SSL_ST_COUNT, NULL};

/* --- configuration --- */

/* One DataSource: a file (re-read on every build, watched) or bytes given inline. */
struct tls_src {
    char *filename;
    unsigned char *data;
    size_t len;
    bool set;
    struct stat st;                /* of the file when last built */
};

struct san_match {
    int san_type;                  /* SubjectAltNameMatcher.SanType: DNS 2, URI 3 */
    int kind;                      /* StringMatcher case */
    char *value;
    bool icase;
    pcre2_code *re;
};

struct tls_cfg {
    bool server;
    struct tls_src chain[TLS_MAX_CERTS], key[TLS_MAX_CERTS], password[TLS_MAX_CERTS];
    size_t n_certs;
    char *cert_secret[TLS_MAX_CERTS];  /* the Secret certificate i came from, or NULL (inline/file) */
    char *ca_secret;               /* the Secret the trust anchors came from, or NULL */
    struct tls_src ca;
    struct tls_src crl;            /* PEM CRLs for the chain (all of it, or the leaf only) */
    bool crl_leaf_only;
    struct san_match *sans;
    size_t n_sans;
    int min_ver, max_ver;          /* OpenSSL version constants, 0 = default */
    char *ciphers, *curves, *sigalgs;
    unsigned char alpn[TLS_MAX_ALPN + 1];
    size_t alpn_len;               /* wire format: length-prefixed names */
    bool require_client_cert, allow_expired, accept_untrusted;
    bool require_sni;
    bool auto_host_sni, auto_sni_san_validation;
    /* Pins (SHA-256): verify_certificate_hash (of the DER certificate) and
     * verify_certificate_spki (of the DER SubjectPublicKeyInfo). Either list matching accepts. */
    unsigned char (*cert_hashes)[32], (*spki_hashes)[32];
    size_t n_cert_hashes, n_spki_hashes;
    char *sni;
    bool no_tickets, no_cache;
    uint64_t session_timeout_s;
    /* Session ticket keys, Envoy's 80-byte format: name (16), HMAC secret (32), AES key (32). The
     * first encrypts new tickets. Without configured keys one random key is made per provider,
     * so tickets survive a certificate reload (a new SSL_CTX would otherwise get new keys). */
    unsigned char (*ticket_keys)[80];
    size_t n_ticket_keys;
    uint32_t max_depth;
    bool pending;                  /* an SDS secret has not arrived: no SSL_CTX is built */
};

struct tls_provider {
    struct tls_cfg cfg;
    _Atomic(SSL_CTX *) cur;
    atomic_uint_fast64_t generation;
    struct tls_provider *next;     /* registry of live providers, for tls_poll */
};

struct retired_ctx {
    SSL_CTX *ctx;
    uint64_t at_ms;
    struct retired_ctx *next;
};

/* Providers are created and polled on the main thread but the last snapshot reference (and so
 * tls_provider_free) may drop anywhere: the registry has a lock. It is never on the request path. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tls_provider *providers;
static struct retired_ctx *retired;
static uint64_t last_poll_ms;

static int ex_fail_idx = -1, ex_slot_idx = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static void sni_set_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp);
static int ex_sni_idx;
static void ex_init(void)
{
    ex_sni_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_set_free);
    ex_fail_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ex_slot_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

struct perr {
    char *err;
    size_t errlen;
    char path[256];
};

static int perr_fail(struct perr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr_fail(struct perr *e, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(e->err, e->errlen, "%s%s%s", e->path, *e->path ? ": " : "", msg);
    return -1;
}

static size_t ppush(struct perr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t ppush(struct perr *e, const char *fmt, ...)
{
    size_t old = strlen(e->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->path + old, sizeof e->path - old, fmt, ap);
    va_end(ap);
    return old;
}
static void ppop(struct perr *e, size_t old) { e->path[old] = '\0'; }

/* The last OpenSSL error as text ("lib: reason"), cleared from the queue. */
static const char *ossl_err(char *buf, size_t cap)
{
    unsigned long code = ERR_peek_last_error();
    if (!code) {
        snprintf(buf, cap, "unknown error");
    } else {
        const char *lib = ERR_lib_error_string(code), *reason = ERR_reason_error_string(code);
        snprintf(buf, cap, "%s: %s", lib ? lib : "OpenSSL", reason ? reason : "error");
    }
    ERR_clear_error();
    return buf;
}

static int src_from(struct perr *e, const DataSource *ds, struct tls_src *out)
{
    if (!ds)
        return 0;
    switch (ds->specifier_case) {
    case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_FILENAME:
        if (!ds->filename || !*ds->filename)
            return perr_fail(e, "filename is empty");
        out->filename = strdup(ds->filename);
        break;
    case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_BYTES:
        out->len = ds->inline_bytes.len;
        out->data = malloc(out->len + 1);
        if (out->len)
            memcpy(out->data, ds->inline_bytes.data, out->len);
        break;
    case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_STRING:
    case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_ENVIRONMENT_VARIABLE: {
        const char *v = ds->specifier_case == ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_STRING
                            ? ds->inline_string : getenv(ds->environment_variable ? ds->environment_variable : "");
        if (!v)
            return perr_fail(e, "environment_variable '%s' is not set", ds->environment_variable);
        out->len = strlen(v);
        out->data = (unsigned char *)strdup(v);
        break;
    }
    default:
        return 0;
    }
    out->set = true;
    return 0;
}

static void src_free(struct tls_src *s)
{
    free(s->filename);
    free(s->data);
    memset(s, 0, sizeof *s);
}

/* The bytes of a source: inline ones as they are, a file read now (the caller frees *owned).
 * Records the file's stat for change detection. */
static int src_read(struct tls_src *s, const unsigned char **data, size_t *len, unsigned char **owned,
                    char *why, size_t cap)
{
    *owned = NULL;
    if (!s->filename) {
        *data = s->data;
        *len = s->len;
        return 0;
    }
    FILE *f = fopen(s->filename, "rb");
    if (!f) {
        snprintf(why, cap, "%s: %s", s->filename, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || st.st_size > (off_t)TLS_MAX_FILE) {
        snprintf(why, cap, "%s: larger than %u bytes", s->filename, TLS_MAX_FILE);
        fclose(f);
        return -1;
    }
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    stat(s->filename, &s->st);
    *data = *owned = buf;
    *len = n;
    return 0;
}

static bool src_changed(const struct tls_src *s)
{
    if (!s->filename)
        return false;
    struct stat st;
    if (stat(s->filename, &st) < 0)
        return false; /* gone for now (a rename in progress): keep what we have */
    return st.st_ino != s->st.st_ino || st.st_size != s->st.st_size ||
           st.st_mtim.tv_sec != s->st.st_mtim.tv_sec || st.st_mtim.tv_nsec != s->st.st_mtim.tv_nsec;
}

static int tls_version(struct perr *e, int v, const char *field, int *out)
{
    switch (v) {
    case 0: *out = 0; return 0;
    case 1: *out = TLS1_VERSION; return 0;
    case 2: *out = TLS1_1_VERSION; return 0;
    case 3: *out = TLS1_2_VERSION; return 0;
    case 4: *out = TLS1_3_VERSION; return 0;
    default: return perr_fail(e, "%s: unknown TLS version %d", field, v);
    }
}

static char *join(char **items, size_t n, bool strip_brackets)
{
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(items[i]) + 1;
    char *s = calloc(1, total), *p = s;
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ':';
        for (const char *q = items[i]; *q; q++) {
            /* BoringSSL's equal-preference groups "[A|B]" become plain "A:B" for OpenSSL. */
            if (strip_brackets && (*q == '[' || *q == ']'))
                continue;
            *p++ = strip_brackets && *q == '|' ? ':' : *q;
        }
    }
    *p = '\0';
    return s;
}

static int san_matchers(struct perr *e, const ValCtx *v, struct tls_cfg *cfg)
{
    size_t n = v->n_match_typed_subject_alt_names + v->n_match_subject_alt_names;
    if (!n)
        return 0;
    struct san_match *m = realloc(cfg->sans, (cfg->n_sans + n) * sizeof *m);
    if (!m)
        return perr_fail(e, "out of memory");
    cfg->sans = m;
    for (size_t i = 0; i < n; i++) {
        bool typed = i < v->n_match_typed_subject_alt_names;
        const StringMatcher *sm;
        int type;
        size_t old;
        if (typed) {
            old = ppush(e, ".match_typed_subject_alt_names[%zu]", i);
            type = v->match_typed_subject_alt_names[i]->san_type;
            sm = v->match_typed_subject_alt_names[i]->matcher;
            if (type != 2 && type != 3)
                return perr_fail(e, "san_type: only DNS and URI are supported");
        } else {
            old = ppush(e, ".match_subject_alt_names[%zu]", i - v->n_match_typed_subject_alt_names);
            type = 0; /* any type (the deprecated untyped list) */
            sm = v->match_subject_alt_names[i - v->n_match_typed_subject_alt_names];
        }
        if (!sm)
            return perr_fail(e, "matcher is required");
        struct san_match *s = &cfg->sans[cfg->n_sans];
        memset(s, 0, sizeof *s);
        s->san_type = type;
        s->kind = sm->match_pattern_case;
        s->icase = sm->ignore_case;
        switch (sm->match_pattern_case) {
        case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_EXACT: s->value = strdup(sm->exact); break;
        case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_PREFIX: s->value = strdup(sm->prefix); break;
        case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_SUFFIX: s->value = strdup(sm->suffix); break;
        case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_CONTAINS: s->value = strdup(sm->contains); break;
        case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_SAFE_REGEX: {
            const char *re = sm->safe_regex && sm->safe_regex->regex ? sm->safe_regex->regex : "";
            int ec;
            PCRE2_SIZE off;
            s->re = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF,
                                  &ec, &off, NULL);
            if (!s->re)
                return perr_fail(e, "safe_regex: bad regex at offset %zu", (size_t)off);
            break;
        }
        default:
            return perr_fail(e, "matcher: exact, prefix, suffix, contains or safe_regex is required");
        }
        cfg->n_sans++;
        ppop(e, old);
    }
    return 0;
}

/* verify_certificate_hash: hex, colons allowed; verify_certificate_spki: base64. 32 bytes each. */
static int pins_from(struct perr *e, const ValCtx *v, struct tls_cfg *cfg)
{
    if (v->n_verify_certificate_hash) {
        cfg->cert_hashes = calloc(v->n_verify_certificate_hash, 32);
        for (size_t i = 0; i < v->n_verify_certificate_hash; i++) {
            const char *h = v->verify_certificate_hash[i];
            size_t n = 0;
            int hi = -1;
            for (; *h; h++) {
                if (*h == ':')
                    continue;
                int x = hex_digit(*h);
                if (x < 0 || n == 32)
                    break;
                if (hi < 0) {
                    hi = x;
                } else {
                    cfg->cert_hashes[i][n++] = (unsigned char)(hi << 4 | x);
                    hi = -1;
                }
            }
            if (*h || n != 32 || hi >= 0) {
                ppush(e, ".verify_certificate_hash[%zu]", i);
                return perr_fail(e, "a SHA-256 in hex (64 digits, colons allowed) is expected");
            }
            cfg->n_cert_hashes = i + 1;
        }
    }
    if (v->n_verify_certificate_spki) {
        cfg->spki_hashes = calloc(v->n_verify_certificate_spki, 32);
        for (size_t i = 0; i < v->n_verify_certificate_spki; i++) {
            unsigned char out[64];
            const char *b = v->verify_certificate_spki[i];
            int n = (int)strlen(b) == 44 ? EVP_DecodeBlock(out, (const unsigned char *)b, 44) : -1;
            if (n != 33 || b[43] != '=') {
                ppush(e, ".verify_certificate_spki[%zu]", i);
                return perr_fail(e, "a base64 SHA-256 (44 characters) is expected");
            }
            memcpy(cfg->spki_hashes[i], out, 32);
            cfg->n_spki_hashes = i + 1;
        }
    }
    return 0;
}

static bool pins_ok(const struct tls_cfg *cfg, X509 *cert)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (cfg->n_cert_hashes && X509_digest(cert, EVP_sha256(), md, &n) && n == 32)
        for (size_t i = 0; i < cfg->n_cert_hashes; i++)
            if (memcmp(md, cfg->cert_hashes[i], 32) == 0)
                return true;
    if (cfg->n_spki_hashes && X509_pubkey_digest(cert, EVP_sha256(), md, &n) && n == 32)
        for (size_t i = 0; i < cfg->n_spki_hashes; i++)
            if (memcmp(md, cfg->spki_hashes[i], 32) == 0)
                return true;
    return false;
}

static int validation_from(struct perr *e, const ValCtx *v, struct tls_cfg *cfg, bool with_ca)
{
    if (!v)
        return 0;
    if (with_ca && v->trusted_ca) {
        size_t old = ppush(e, ".trusted_ca");
        src_free(&cfg->ca);
        if (src_from(e, v->trusted_ca, &cfg->ca) < 0)
            return -1;
        ppop(e, old);
    }
    if (pins_from(e, v, cfg) < 0)
        return -1;
    if (v->crl) {
        size_t old = ppush(e, ".crl");
        src_free(&cfg->crl);
        if (src_from(e, v->crl, &cfg->crl) < 0)
            return -1;
        ppop(e, old);
        cfg->crl_leaf_only = v->only_verify_leaf_cert_crl;
    }
    if (v->custom_validator_config)
        return perr_fail(e, "custom_validator_config is not supported");
    cfg->allow_expired = cfg->allow_expired || v->allow_expired_certificate;
    cfg->accept_untrusted = v->trust_chain_verification == 1;
    if (v->max_verify_depth)
        cfg->max_depth = v->max_verify_depth->value;
    return san_matchers(e, v, cfg);
}

/* The secret ref names. NULL with an error set, or NULL with cfg->pending set when it is an SDS
 * secret that has not arrived yet (the caller then goes on without it). */
static const Secret *find_secret(struct perr *e, tls_secret_fn find, void *arg, const SdsRef *ref, int want_case,
                                 struct tls_cfg *cfg)
{
    if (!ref || !ref->name || !*ref->name) {
        perr_fail(e, "name is required");
        return NULL;
    }
    const Envoy__Config__Core__V3__ConfigSource *cs = ref->sds_config;
    if (cs && cs->config_source_specifier_case != ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_ADS) {
        ppush(e, ".sds_config");
        perr_fail(e, "only ads: {} is supported (secrets over the ADS stream)");
        return NULL;
    }
    if (cs && cs->resource_api_version != ENVOY__CONFIG__CORE__V3__API_VERSION__V3 &&
        cs->resource_api_version != ENVOY__CONFIG__CORE__V3__API_VERSION__AUTO) {
        ppush(e, ".sds_config.resource_api_version");
        perr_fail(e, "only V3 is supported");
        return NULL;
    }
    bool pending = false;
    const Secret *s = find ? (const Secret *)find(arg, ref->name, cs != NULL, &pending) : NULL;
    if (!s) {
        if (cs && pending) {
            cfg->pending = true;
            return NULL;
        }
        perr_fail(e, cs ? "secret '%s': SDS secrets are used only by listeners and clusters from xDS; define it in static_resources.secrets"
                        : "secret '%s' is not defined in static_resources.secrets", ref->name);
        return NULL;
    }
    if ((int)s->type_case != want_case) {
        perr_fail(e, "secret '%s' is not a %s", ref->name, want_case == 2 ? "tls_certificate" : "validation_context");
        return NULL;
    }
    return s;
}

/* Reads session ticket keys now (they are not watched for changes). */
static int ticket_keys_from(struct perr *e, const Envoy__Extensions__TransportSockets__Tls__V3__TlsSessionTicketKeys *k,
                            struct tls_cfg *cfg)
{
    size_t old = ppush(e, "session_ticket_keys");
    if (!k || k->n_keys == 0)
        return perr_fail(e, "keys: at least one key is required");
    cfg->ticket_keys = calloc(k->n_keys, 80);
    if (!cfg->ticket_keys)
        return perr_fail(e, "out of memory");
    for (size_t i = 0; i < k->n_keys; i++) {
        size_t o2 = ppush(e, ".keys[%zu]", i);
        struct tls_src src = {0};
        const unsigned char *d;
        size_t n;
        unsigned char *owned;
        char why[300];
        if (src_from(e, k->keys[i], &src) < 0)
            return -1;
        int r = src_read(&src, &d, &n, &owned, why, sizeof why);
        if (r == 0 && n == 80)
            memcpy(cfg->ticket_keys[i], d, 80);
        if (owned)
            OPENSSL_cleanse(owned, n);
        free(owned);
        src_free(&src);
        if (r < 0)
            return perr_fail(e, "%s", why);
        if (n != 80)
            return perr_fail(e, "a session ticket key is exactly 80 bytes, not %zu", n);
        cfg->n_ticket_keys = i + 1;
        ppop(e, o2);
    }
    ppop(e, old);
    return 0;
}

static int cert_from(struct perr *e, const TlsCert *tc, struct tls_cfg *cfg)
{
    if (cfg->n_certs == TLS_MAX_CERTS)
        return perr_fail(e, "at most %d certificates", TLS_MAX_CERTS);
    if (!tc->certificate_chain || !tc->private_key)
        return perr_fail(e, "certificate_chain and private_key are required");
    if (tc->private_key_provider || tc->pkcs12)
        return perr_fail(e, "private_key_provider and pkcs12 are not supported");
    size_t i = cfg->n_certs++;
    size_t old = ppush(e, ".certificate_chain");
    if (src_from(e, tc->certificate_chain, &cfg->chain[i]) < 0)
        return -1;
    ppop(e, old);
    old = ppush(e, ".private_key");
    if (src_from(e, tc->private_key, &cfg->key[i]) < 0)
        return -1;
    ppop(e, old);
    old = ppush(e, ".password");
    if (src_from(e, tc->password, &cfg->password[i]) < 0)
        return -1;
    ppop(e, old);
    return 0;
}

static int common_from(struct perr *e, const CommonCtx *c, struct tls_cfg *cfg, tls_secret_fn find, void *arg)
{
    if (!c)
        return 0;
    if (c->tls_params) {
        size_t old = ppush(e, ".tls_params");
        const Envoy__Extensions__TransportSockets__Tls__V3__TlsParameters *tp = c->tls_params;
        if (tls_version(e, tp->tls_minimum_protocol_version, "tls_minimum_protocol_version", &cfg->min_ver) < 0 ||
            tls_version(e, tp->tls_maximum_protocol_version, "tls_maximum_protocol_version", &cfg->max_ver) < 0)
            return -1;
        if (tp->n_cipher_suites)
            cfg->ciphers = join(tp->cipher_suites, tp->n_cipher_suites, true);
        if (tp->n_ecdh_curves)
            cfg->curves = join(tp->ecdh_curves, tp->n_ecdh_curves, false);
        if (tp->n_signature_algorithms)
            cfg->sigalgs = join(tp->signature_algorithms, tp->n_signature_algorithms, false);
        ppop(e, old);
    }
    for (size_t i = 0; i < c->n_tls_certificates; i++) {
        size_t old = ppush(e, ".tls_certificates[%zu]", i);
        if (cert_from(e, c->tls_certificates[i], cfg) < 0)
            return -1;
        ppop(e, old);
    }
    for (size_t i = 0; i < c->n_tls_certificate_sds_secret_configs; i++) {
        size_t old = ppush(e, ".tls_certificate_sds_secret_configs[%zu]", i);
        const Secret *s = find_secret(e, find, arg, c->tls_certificate_sds_secret_configs[i], 2, cfg);
        if (!s && cfg->pending) {
            ppop(e, old);
            continue;
        }
        if (!s || cert_from(e, s->tls_certificate, cfg) < 0)
            return -1;
        cfg->cert_secret[cfg->n_certs - 1] = strdup(s->name);
        ppop(e, old);
    }
    for (size_t i = 0; i < c->n_alpn_protocols; i++) {
        size_t n = strlen(c->alpn_protocols[i]);
        if (n == 0 || n > 255 || cfg->alpn_len + 1 + n > TLS_MAX_ALPN) {
            ppush(e, ".alpn_protocols[%zu]", i);
            return perr_fail(e, "each protocol is 1-255 bytes, %d bytes in all", TLS_MAX_ALPN);
        }
        cfg->alpn[cfg->alpn_len++] = (unsigned char)n;
        memcpy(cfg->alpn + cfg->alpn_len, c->alpn_protocols[i], n);
        cfg->alpn_len += n;
    }
    if (c->key_log)
        return perr_fail(e, "key_log is not supported");
    switch (c->validation_context_type_case) {
    case ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__COMMON_TLS_CONTEXT__VALIDATION_CONTEXT_TYPE_VALIDATION_CONTEXT: {
        size_t old = ppush(e, ".validation_context");
        if (validation_from(e, c->validation_context, cfg, true) < 0)
            return -1;
        ppop(e, old);
        break;
    }
    case ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__COMMON_TLS_CONTEXT__VALIDATION_CONTEXT_TYPE_VALIDATION_CONTEXT_SDS_SECRET_CONFIG: {
        size_t old = ppush(e, ".validation_context_sds_secret_config");
        const Secret *s = find_secret(e, find, arg, c->validation_context_sds_secret_config, 4, cfg);
        if (!s && cfg->pending) {
            ppop(e, old);
            break;
        }
        if (!s || validation_from(e, s->validation_context, cfg, true) < 0)
            return -1;
        cfg->ca_secret = strdup(s->name);
        ppop(e, old);
        break;
    }
    case ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__COMMON_TLS_CONTEXT__VALIDATION_CONTEXT_TYPE_COMBINED_VALIDATION_CONTEXT: {
        /* Envoy merges the two: the secret's trust anchors, the default context's matchers. */
        const Envoy__Extensions__TransportSockets__Tls__V3__CommonTlsContext__CombinedCertificateValidationContext *cv =
            c->combined_validation_context;
        size_t old = ppush(e, ".combined_validation_context");
        if (cv->validation_context_sds_secret_config) {
            size_t o2 = ppush(e, ".validation_context_sds_secret_config");
            const Secret *s = find_secret(e, find, arg, cv->validation_context_sds_secret_config, 4, cfg);
            if (s && validation_from(e, s->validation_context, cfg, true) < 0)
                return -1;
            if (!s && !cfg->pending)
                return -1;
            if (s)
                cfg->ca_secret = strdup(s->name);
            ppop(e, o2);
        }
        size_t o3 = ppush(e, ".default_validation_context");
        if (validation_from(e, cv->default_validation_context, cfg, !cfg->ca.set) < 0)
            return -1;
        ppop(e, o3);
        ppop(e, old);
        break;
    }
    default:
        break;
    }
    return 0;
}

static void cfg_free(struct tls_cfg *cfg)
{
    for (size_t i = 0; i < TLS_MAX_CERTS; i++) {
        free(cfg->cert_secret[i]);
        src_free(&cfg->chain[i]);
        src_free(&cfg->key[i]);
        src_free(&cfg->password[i]);
    }
    free(cfg->ca_secret);
    src_free(&cfg->ca);
    src_free(&cfg->crl);
    for (size_t i = 0; i < cfg->n_sans; i++) {
        free(cfg->sans[i].value);
        pcre2_code_free(cfg->sans[i].re);
    }
    free(cfg->sans);
    free(cfg->ciphers);
    free(cfg->curves);
    free(cfg->sigalgs);
    free(cfg->sni);
    free(cfg->cert_hashes);
    free(cfg->spki_hashes);
    if (cfg->ticket_keys)
        OPENSSL_cleanse(cfg->ticket_keys, cfg->n_ticket_keys * 80);
    free(cfg->ticket_keys);
}

/* --- SAN matching --- */

static bool str_match(const struct san_match *m, const char *s, size_t n)
{
    if (m->re) {
        pcre2_match_data *md = pcre2_match_data_create(1, NULL);
        int r = md ? pcre2_match(m->re, (PCRE2_SPTR)s, n, 0, 0, md, NULL) : -1;
        pcre2_match_data_free(md);
        return r >= 0;
    }
    size_t vn = strlen(m->value);
    int (*cmp)(const char *, const char *, size_t) = m->icase ? strncasecmp : strncmp;
    switch (m->kind) {
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_EXACT: return n == vn && cmp(s, m->value, n) == 0;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_PREFIX: return n >= vn && cmp(s, m->value, vn) == 0;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_SUFFIX: return n >= vn && cmp(s + n - vn, m->value, vn) == 0;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_CONTAINS:
        for (size_t i = 0; i + vn <= n; i++)
            if (cmp(s + i, m->value, vn) == 0)
                return true;
        return false;
    default: return false;
    }
}

/* A DNS SAN "*.example.com" in the certificate covers one label, as Envoy's dnsNameMatch. */
static bool dns_match(const struct san_match *m, const char *san, size_t n)
{
    if (str_match(m, san, n))
        return true;
    if (m->kind != ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_EXACT || n < 3 || san[0] != '*' || san[1] != '.')
        return false;
    const char *dot = strchr(m->value, '.');
    return dot && dot != m->value && strlen(dot) == n - 1 && strncasecmp(dot, san + 1, n - 1) == 0;
}

/* True when some SAN of the certificate satisfies some matcher (Envoy: any of them). */
static bool sans_ok(const struct tls_cfg *cfg, X509 *cert)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    bool ok = false;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && !ok; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        int type = g->type == GEN_DNS ? 2 : g->type == GEN_URI ? 3 : g->type == GEN_EMAIL ? 1 : 0;
        if (!type)
            continue;
        const ASN1_IA5STRING *s = g->d.ia5;
        const char *p = (const char *)ASN1_STRING_get0_data(s);
        size_t n = (size_t)ASN1_STRING_length(s);
        if (memchr(p, '\0', n))
            continue; /* embedded NUL: never a match */
        for (size_t j = 0; j < cfg->n_sans && !ok; j++) {
            const struct san_match *m = &cfg->sans[j];
            if (m->san_type && m->san_type != type)
                continue;
            ok = type == 2 ? dns_match(m, p, n) : str_match(m, p, n);
        }
    }
    GENERAL_NAMES_free(names);
    return ok;
}

static void set_fail(SSL *ssl, enum tls_fail f)
{
    SSL_set_ex_data(ssl, ex_fail_idx, (void *)(intptr_t)f);
}

static enum tls_fail get_fail(const SSL *ssl)
{
    return (enum tls_fail)(intptr_t)SSL_get_ex_data(ssl, ex_fail_idx);
}

/* OpenSSL's chain verdict for each certificate, then ours for the leaf: SAN matchers, and the
 * validation context's allow_expired_certificate / ACCEPT_UNTRUSTED. */
static int verify_cb(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct tls_provider *p = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    const struct tls_cfg *cfg = &p->cfg;
    bool pinned_only = !cfg->ca.set && (cfg->n_cert_hashes || cfg->n_spki_hashes);
    if (!ok) {
        int err = X509_STORE_CTX_get_error(store);
        if (err == X509_V_ERR_HOSTNAME_MISMATCH) {
            set_fail(ssl, TLS_FAIL_SAN); /* auto_sni_san_validation */
            return 0;
        }
        if (cfg->accept_untrusted || pinned_only ||
            (cfg->allow_expired && (err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID))) {
            X509_STORE_CTX_set_error(store, X509_V_OK);
            ok = 1;
        } else {
            set_fail(ssl, TLS_FAIL_VERIFY);
            return 0;
        }
    }
    if (X509_STORE_CTX_get_error_depth(store) == 0 && (cfg->n_cert_hashes || cfg->n_spki_hashes) &&
        !pins_ok(cfg, X509_STORE_CTX_get_current_cert(store))) {
        set_fail(ssl, TLS_FAIL_PIN);
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    /* auto_sni_san_validation replaces the SAN matchers with OpenSSL's host name check. */
    bool by_sni = cfg->auto_sni_san_validation && SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (X509_STORE_CTX_get_error_depth(store) == 0 && cfg->n_sans && !by_sni) {
        if (!sans_ok(cfg, X509_STORE_CTX_get_current_cert(store))) {
            set_fail(ssl, TLS_FAIL_SAN);
            X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
            return 0;
        }
    }
    return ok;
}

/* With several certificates, one SSL_CTX per certificate, kept on the main SSL_CTX (freed with it). */
struct sni_set {
    SSL_CTX *ctx[TLS_MAX_CERTS];
    size_t n;
};

static void sni_set_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    struct sni_set *set = ptr;
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++)
        SSL_CTX_free(set->ctx[i]);
    free(set);
}

/* 2: a DNS SAN of the certificate equals name; 1: a "*.suffix" SAN covers it; 0: neither. */
static int cert_name_match(X509 *cert, const char *name)
{
    GENERAL_NAMES *names = cert ? X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL) : NULL;
    int best = 0;
    const char *dot = strchr(name, '.');
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && best < 2; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type != GEN_DNS)
            continue;
        const char *p = (const char *)ASN1_STRING_get0_data(g->d.ia5);
        size_t n = (size_t)ASN1_STRING_length(g->d.ia5);
        if (n == strlen(name) && strncasecmp(p, name, n) == 0)
            best = 2;
        else if (n > 2 && p[0] == '*' && p[1] == '.' && dot && dot != name && strlen(dot) == n - 1 &&
                 strncasecmp(dot, p + 1, n - 1) == 0)
            best = 1;
    }
    GENERAL_NAMES_free(names);
    return best;
}

/* The ClientHello's server name: require_sni, and with several certificates Envoy's choice, the
 * first certificate whose DNS SAN equals the name, else the first whose wildcard covers it, else
 * the default (the first certificate of each key type). */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
    const struct tls_provider *p = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!sni) {
        if (!p->cfg.require_sni)
            return SSL_TLSEXT_ERR_OK;
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        set_fail(ssl, TLS_FAIL_PROTOCOL);
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    const struct sni_set *set = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_sni_idx);
    SSL_CTX *wild = NULL;
    for (size_t i = 0; set && i < set->n; i++) {
        int m = cert_name_match(SSL_CTX_get0_certificate(set->ctx[i]), sni);
        if (m == 2) {
            SSL_set_SSL_CTX(ssl, set->ctx[i]);
            return SSL_TLSEXT_ERR_OK;
        }
        if (m == 1 && !wild)
            wild = set->ctx[i];
    }
    if (wild)
        SSL_set_SSL_CTX(ssl, wild);
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *build_ctx_certs(struct tls_provider *p, int only, char *why, size_t cap);

static SSL_CTX *build_ctx(struct tls_provider *p, char *why, size_t cap)
{
    SSL_CTX *main = build_ctx_certs(p, -1, why, cap);
    if (!main || !p->cfg.server || p->cfg.n_certs < 2)
        return main;
    struct sni_set *set = calloc(1, sizeof *set);
    if (!set) {
        SSL_CTX_free(main);
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < p->cfg.n_certs; i++) {
        if (!(set->ctx[i] = build_ctx_certs(p, (int)i, why, cap))) {
            sni_set_free(NULL, set, NULL, 0, 0, NULL);
            SSL_CTX_free(main);
            return NULL;
        }
        set->n = i + 1;
    }
    SSL_CTX_set_ex_data(main, ex_sni_idx, set);
    return main;
}

/* Server ALPN: the first of our protocols the client offers; none in common means no ALPN
 * (Envoy carries on without one rather than failing the handshake). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    (void)ssl;
    const struct tls_provider *p = arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, p->cfg.alpn, (unsigned)p->cfg.alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Stateless resumption with the provider's keys (see tls_cfg.ticket_keys). Returns 1 to use
 * the ticket, 2 to use it and issue a fresh one under the current key, 0 for a full handshake. */
static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx,
                     int enc)
{
    const struct tls_provider *p = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    const struct tls_cfg *cfg = &p->cfg;
    OSSL_PARAM params[2] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                            OSSL_PARAM_construct_end()};
    size_t k = 0;
    if (enc) {
        if (RAND_bytes(iv, 16) != 1)
            return -1;
        memcpy(name, cfg->ticket_keys[0], 16);
    } else {
        while (k < cfg->n_ticket_keys && memcmp(name, cfg->ticket_keys[k], 16) != 0)
            k++;
        if (k == cfg->n_ticket_keys)
            return 0;
    }
    const unsigned char *key = cfg->ticket_keys[k];
    if (!EVP_MAC_init(hctx, key + 16, 32, params))
        return -1;
    if (enc)
        return EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key + 48, iv) == 1 ? 1 : -1;
    if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key + 48, iv) != 1)
        return -1;
    return k == 0 ? 1 : 2;
}

/* Client sessions go to the worker-local slot of the host (upstream session reuse). */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
    SSL_SESSION **slot = SSL_get_ex_data(ssl, ex_slot_idx);
    if (!slot)
        return 0;
    if (*slot)
        SSL_SESSION_free(*slot);
    *slot = sess;
    return 1;
}

/* --- PEM loading from bytes --- */

static int pw_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    const struct tls_src *pw = u;
    if (!pw || !pw->data)
        return 0;
    size_t n = pw->len < (size_t)size ? pw->len : (size_t)size;
    memcpy(buf, pw->data, n);
    return (int)n;
}

/* Reads every certificate in a PEM bundle; NULL when there is none. */
static STACK_OF(X509) *read_certs(const unsigned char *data, size_t len)
{
    BIO *b = BIO_new_mem_buf(data, (int)len);
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x;
    while (b && sk && sk_X509_num(sk) < 1000 && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
        sk_X509_push(sk, x);
    ERR_clear_error();
    BIO_free(b);
    if (sk && sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        return NULL;
    }
    return sk;
}

static EVP_PKEY *read_key(const unsigned char *data, size_t len, const struct tls_src *pw)
{
    BIO *b = BIO_new_mem_buf(data, (int)len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, pw_cb, (void *)pw) : NULL;
    BIO_free(b);
    return k;
}

int tls_pem_check(const void *data, size_t len, int kind)
{
    if (len > TLS_MAX_FILE)
        return -1;
    int n = -1;
    if (kind == 1) {
        EVP_PKEY *k = read_key(data, len, NULL);
        n = k ? 1 : -1;
        EVP_PKEY_free(k);
    } else {
        STACK_OF(X509) *sk = read_certs(data, len);
        if (sk) {
            n = sk_X509_num(sk);
            if (kind == 2) {
                X509_STORE *st = X509_STORE_new();
                for (int i = 0; st && i < n; i++)
                    X509_STORE_add_cert(st, sk_X509_value(sk, i));
                X509_STORE_free(st);
            } else {
                /* What a server does with a chain: the SANs of the leaf. */
                GENERAL_NAMES *g = X509_get_ext_d2i(sk_X509_value(sk, 0), NID_subject_alt_name, NULL, NULL);
                GENERAL_NAMES_free(g);
            }
            sk_X509_pop_free(sk, X509_free);
        }
    }
    ERR_clear_error();
    return n;
}

/* --- building an SSL_CTX --- */

/* Adds the configured CRLs to the store and turns CRL checking on (Envoy: every certificate of
 * the chain needs a CRL, unless only_verify_leaf_cert_crl). */
static int load_crls(struct tls_cfg *cfg, X509_STORE *st, char *why, size_t cap)
{
    const unsigned char *d;
    size_t n;
    unsigned char *owned;
    if (src_read(&cfg->crl, &d, &n, &owned, why, cap) < 0)
        return -1;
    BIO *b = BIO_new_mem_buf(d, (int)n);
    int count = 0;
    X509_CRL *crl;
    while (b && count < 1000 && (crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL))) {
        X509_STORE_add_crl(st, crl);
        X509_CRL_free(crl);
        count++;
    }
    ERR_clear_error();
    BIO_free(b);
    free(owned);
    if (!count) {
        snprintf(why, cap, "crl %s: no PEM CRL", cfg->crl.filename ? cfg->crl.filename : "(inline)");
        return -1;
    }
    X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | (cfg->crl_leaf_only ? 0 : X509_V_FLAG_CRL_CHECK_ALL));
    return 0;
}

/* Builds one SSL_CTX with all of the provider's settings and its certificates: all of them
 * (only < 0; loaded last to first so that the first of each key type is the one OpenSSL keeps),
 * or only certificate `only` (the per-certificate contexts of SNI selection). */
static SSL_CTX *build_ctx_certs(struct tls_provider *p, int only, char *why, size_t cap)
{
    struct tls_cfg *cfg = &p->cfg;
    char eb[200];
    SSL_CTX *ctx = SSL_CTX_new(cfg->server ? TLS_server_method() : TLS_client_method());
    if (!ctx) {
        snprintf(why, cap, "SSL_CTX_new: %s", ossl_err(eb, sizeof eb));
        return NULL;
    }
    SSL_CTX_set_app_data(ctx, p);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION |
                                 (cfg->server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Envoy's defaults: TLS 1.2 at least; at most 1.3 for servers and 1.2 for clients; its
     * cipher list for TLS <= 1.2 and its curves. */
    SSL_CTX_set_min_proto_version(ctx, cfg->min_ver ? cfg->min_ver : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, cfg->max_ver ? cfg->max_ver : cfg->server ? TLS1_3_VERSION : TLS1_2_VERSION);
    if (!cfg->ciphers)
        SSL_CTX_set_cipher_list(ctx, ENVOY_DEFAULT_CIPHERS);
    if (!cfg->curves)
        SSL_CTX_set1_groups_list(ctx, "X25519:P-256");
    if (cfg->ciphers && !SSL_CTX_set_cipher_list(ctx, cfg->ciphers)) {
        snprintf(why, cap, "tls_params.cipher_suites: no usable cipher in '%s'", cfg->ciphers);
        goto fail;
    }
    if (cfg->curves && !SSL_CTX_set1_groups_list(ctx, cfg->curves)) {
        snprintf(why, cap, "tls_params.ecdh_curves: unknown curve in '%s'", cfg->curves);
        goto fail;
    }
    if (cfg->sigalgs && !SSL_CTX_set1_sigalgs_list(ctx, cfg->sigalgs)) {
        snprintf(why, cap, "tls_params.signature_algorithms: unknown algorithm in '%s'", cfg->sigalgs);
        goto fail;
    }
    for (size_t k = 0; k < cfg->n_certs; k++) {
        size_t i = cfg->n_certs - 1 - k;
        if (only >= 0 && i != (size_t)only)
            continue;
        const unsigned char *d;
        size_t n;
        unsigned char *owned;
        if (src_read(&cfg->chain[i], &d, &n, &owned, why, cap) < 0)
            goto fail;
        STACK_OF(X509) *sk = read_certs(d, n);
        free(owned);
        if (!sk) {
            snprintf(why, cap, "certificate_chain %s: no PEM certificate", cfg->chain[i].filename ? cfg->chain[i].filename : "(inline)");
            goto fail;
        }
        int ok = SSL_CTX_use_certificate(ctx, sk_X509_value(sk, 0));
        for (int j = 1; ok && j < sk_X509_num(sk); j++)
            ok = SSL_CTX_add1_chain_cert(ctx, sk_X509_value(sk, j));
        sk_X509_pop_free(sk, X509_free);
        if (!ok) {
            snprintf(why, cap, "certificate_chain: %s", ossl_err(eb, sizeof eb));
            goto fail;
        }
        const unsigned char *pw = NULL;
        size_t pwn = 0;
        unsigned char *pw_owned = NULL;
        struct tls_src pws = {0};
        if (cfg->password[i].set) {
            if (src_read(&cfg->password[i], &pw, &pwn, &pw_owned, why, cap) < 0)
                goto fail;
            pws.data = (unsigned char *)pw;
            pws.len = pwn;
        }
        if (src_read(&cfg->key[i], &d, &n, &owned, why, cap) < 0) {
            free(pw_owned);
            goto fail;
        }
        EVP_PKEY *k = read_key(d, n, cfg->password[i].set ? &pws : NULL);
        if (owned)
            OPENSSL_cleanse(owned, n);
        free(owned);
        free(pw_owned);
        if (!k) {
            snprintf(why, cap, "private_key %s: no usable PEM private key", cfg->key[i].filename ? cfg->key[i].filename : "(inline)");
            ERR_clear_error();
            goto fail;
        }
        ok = SSL_CTX_use_PrivateKey(ctx, k) && SSL_CTX_check_private_key(ctx);
        EVP_PKEY_free(k);
        if (!ok) {
            snprintf(why, cap, "private_key does not match certificate_chain (%s)", ossl_err(eb, sizeof eb));
            goto fail;
        }
    }
    if (cfg->server && cfg->n_certs == 0) {
        snprintf(why, cap, "common_tls_context: a server needs tls_certificates or tls_certificate_sds_secret_configs");
        goto fail;
    }
    int mode = SSL_VERIFY_NONE;
    if (cfg->ca.set) {
        const unsigned char *d;
        size_t n;
        unsigned char *owned;
        if (src_read(&cfg->ca, &d, &n, &owned, why, cap) < 0)
            goto fail;
        STACK_OF(X509) *sk = read_certs(d, n);
        free(owned);
        if (!sk) {
            snprintf(why, cap, "trusted_ca %s: no PEM certificate", cfg->ca.filename ? cfg->ca.filename : "(inline)");
            goto fail;
        }
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        for (int j = 0; j < sk_X509_num(sk); j++)
            X509_STORE_add_cert(st, sk_X509_value(sk, j));
        sk_X509_pop_free(sk, X509_free);
        mode = SSL_VERIFY_PEER;
        if (cfg->crl.set && load_crls(cfg, st, why, cap) < 0)
            goto fail;
    }
    if (cfg->server && cfg->require_client_cert) {
        if (!cfg->ca.set) {
            snprintf(why, cap, "require_client_certificate needs a validation_context with trusted_ca");
            goto fail;
        }
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
    if (!cfg->ca.set && cfg->n_sans) {
        snprintf(why, cap, "match_typed_subject_alt_names needs trusted_ca");
        goto fail;
    }
    if (!cfg->ca.set && (cfg->n_cert_hashes || cfg->n_spki_hashes))
        mode = SSL_VERIFY_PEER; /* pinning without a CA: the pins are the trust */
    if (cfg->server && (cfg->require_sni || cfg->n_certs > 1)) {
        SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
        SSL_CTX_set_tlsext_servername_arg(ctx, p);
    }
    SSL_CTX_set_verify(ctx, mode, mode == SSL_VERIFY_NONE ? NULL : verify_cb);
    if (cfg->max_depth)
        SSL_CTX_set_verify_depth(ctx, (int)cfg->max_depth);
    if (cfg->server) {
        static const unsigned char sid[] = "weft";
        SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
        if (cfg->alpn_len)
            SSL_CTX_set_alpn_select_cb(ctx, alpn_select, p);
        SSL_CTX_set_session_cache_mode(ctx, cfg->no_cache ? SSL_SESS_CACHE_OFF : SSL_SESS_CACHE_SERVER);
        if (cfg->no_tickets)
            SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        else if (cfg->n_ticket_keys)
            SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
        SSL_CTX_set_timeout(ctx, (long)(cfg->session_timeout_s ? cfg->session_timeout_s : 7200));
    } else {
        if (cfg->alpn_len)
            SSL_CTX_set_alpn_protos(ctx, cfg->alpn, (unsigned)cfg->alpn_len);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, new_session);
    }
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls_provider *tls_provider_new(const struct ProtobufCMessage *msg, bool server, tls_secret_fn find,
                                      void *find_arg, char *err, size_t errlen)
{
    pthread_once(&ex_once, ex_init);
    struct perr e = {.err = err, .errlen = errlen};
    struct tls_provider *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct tls_cfg *cfg = &p->cfg;
    cfg->server = server;
    const CommonCtx *common;
    if (server) {
        const DownCtx *d = (const DownCtx *)msg;
        common = d->common_tls_context;
        cfg->require_client_cert = d->require_client_certificate && d->require_client_certificate->value;
        cfg->require_sni = d->require_sni && d->require_sni->value;
        if (d->session_ticket_keys_type_case ==
            ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__DOWNSTREAM_TLS_CONTEXT__SESSION_TICKET_KEYS_TYPE_DISABLE_STATELESS_SESSION_RESUMPTION) {
            cfg->no_tickets = d->disable_stateless_session_resumption;
        } else if (d->session_ticket_keys_type_case ==
                   ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__DOWNSTREAM_TLS_CONTEXT__SESSION_TICKET_KEYS_TYPE_SESSION_TICKET_KEYS) {
            if (ticket_keys_from(&e, d->session_ticket_keys, cfg) < 0)
                goto fail;
        } else if (d->session_ticket_keys_type_case != 0) {
            perr_fail(&e, "session_ticket_keys_sds_secret_config: not supported yet; use session_ticket_keys");
            goto fail;
        }
        if (!cfg->no_tickets && !cfg->n_ticket_keys) {
            cfg->ticket_keys = malloc(80);
            cfg->n_ticket_keys = 1;
            if (!cfg->ticket_keys || RAND_bytes(cfg->ticket_keys[0], 80) != 1) {
                perr_fail(&e, "cannot make a session ticket key");
                goto fail;
            }
        }
        cfg->no_cache = d->disable_stateful_session_resumption;
        if (d->session_timeout)
            cfg->session_timeout_s = (uint64_t)d->session_timeout->seconds;
    } else {
        const UpCtx *u = (const UpCtx *)msg;
        common = u->common_tls_context;
        if (u->sni && *u->sni)
            cfg->sni = strdup(u->sni);
        cfg->no_cache = u->max_session_keys && u->max_session_keys->value == 0; /* 0: no resumption */
        cfg->auto_host_sni = u->auto_host_sni;
        cfg->auto_sni_san_validation = u->auto_sni_san_validation;
    }
    size_t old = ppush(&e, "common_tls_context");
    if (common_from(&e, common, cfg, find, find_arg) < 0)
        goto fail;
    ppop(&e, old);
    char why[384];
    SSL_CTX *ctx = NULL;
    if (!cfg->pending && !(ctx = build_ctx(p, why, sizeof why))) {
        perr_fail(&e, "%s", why);
        goto fail;
    }
    atomic_init(&p->cur, ctx);
    pthread_mutex_lock(&reg_lock);
    p->next = providers;
    providers = p;
    pthread_mutex_unlock(&reg_lock);
    return p;
fail:
    cfg_free(cfg);
    free(p);
    return NULL;
}

static void retire(SSL_CTX *ctx, uint64_t now_ms)
{
    struct retired_ctx *r = malloc(sizeof *r);
    if (!r) {
        SSL_CTX_free(ctx); /* each SSL holds its own reference: only a late SSL_new could race */
        return;
    }
    *r = (struct retired_ctx){ctx, now_ms, retired};
    retired = r;
}

void tls_provider_free(struct tls_provider *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&reg_lock);
    for (struct tls_provider **pp = &providers; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    /* Connections still using it hold the snapshot, hence the provider: nothing is in use now. */
    SSL_CTX_free(atomic_load(&p->cur));
    pthread_mutex_unlock(&reg_lock);
    cfg_free(&p->cfg);
    free(p);
}

SSL_CTX *tls_provider_ctx(struct tls_provider *p)
{
    return atomic_load_explicit(&p->cur, memory_order_acquire);
}

const char *tls_provider_sni(const struct tls_provider *p) { return p->cfg.sni; }

int tls_transport_alpn_fallback(struct transport *t, const struct tls_provider *p, const char *wire, size_t len)
{
    if (!t->ssl || p->cfg.alpn_len || !len)
        return 0;
    if (SSL_set_alpn_protos(t->ssl, (const unsigned char *)wire, (unsigned)len) != 0) {
        ERR_clear_error();
        return -ENOMEM;
    }
    return 0;
}

void tls_provider_restrict_alpn(struct tls_provider *p, const char *const *supported, size_t n)
{
    struct tls_cfg *c = &p->cfg;
    unsigned char kept[TLS_MAX_ALPN + 1];
    size_t len = 0;
    for (size_t i = 0; i < c->alpn_len; i += 1 + c->alpn[i]) {
        size_t l = c->alpn[i];
        for (size_t j = 0; j < n; j++) {
            if (strlen(supported[j]) == l && memcmp(c->alpn + i + 1, supported[j], l) == 0) {
                memcpy(kept + len, c->alpn + i, 1 + l);
                len += 1 + l;
                break;
            }
        }
    }
    memcpy(c->alpn, kept, len);
    c->alpn_len = len; /* alpn_select reads the list at each handshake; an empty one selects nothing */
}

bool tls_provider_auto_host_sni(const struct tls_provider *p) { return p->cfg.auto_host_sni; }

uint64_t tls_provider_generation(const struct tls_provider *p) { return atomic_load(&p->generation); }

static bool provider_changed(struct tls_provider *p)
{
    struct tls_cfg *c = &p->cfg;
    for (size_t i = 0; i < c->n_certs; i++)
        if (src_changed(&c->chain[i]) || src_changed(&c->key[i]) || src_changed(&c->password[i]))
            return true;
    return src_changed(&c->ca) || src_changed(&c->crl);
}

static void publish(struct tls_provider *p, SSL_CTX *ctx, uint64_t now_ms);

void tls_poll(uint64_t now_ms, bool force)
{
    pthread_mutex_lock(&reg_lock);
    if (force || now_ms - last_poll_ms >= 1000) {
        last_poll_ms = now_ms;
        for (struct tls_provider *p = providers; p && !force; p = p->next) {
            if (p->cfg.pending || !provider_changed(p))
                continue;
            char why[384];
            SSL_CTX *ctx = build_ctx(p, why, sizeof why);
            if (!ctx) {
                /* src_read recorded the new stat: the broken file is reported once, and the
                 * next change to it is picked up again. */
                log_warn("TLS certificate reload failed, keeping the previous certificates: %s", why);
                continue;
            }
            publish(p, ctx, now_ms);
            log_info("TLS certificates reloaded (%s)", p->cfg.n_certs && p->cfg.chain[0].filename
                                                          ? p->cfg.chain[0].filename : "trusted_ca");
        }
    }
    for (struct retired_ctx **pp = &retired; *pp;) {
        struct retired_ctx *r = *pp;
        if (force || now_ms - r->at_ms >= TLS_GRACE_MS) {
            *pp = r->next;
            SSL_CTX_free(r->ctx);
            free(r);
        } else {
            pp = &r->next;
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

/* Swaps in the new SSL_CTX of a provider whose sources changed (reg_lock held). */
static void publish(struct tls_provider *p, SSL_CTX *ctx, uint64_t now_ms)
{
    SSL_CTX *old = atomic_exchange_explicit(&p->cur, ctx, memory_order_acq_rel);
    atomic_fetch_add(&p->generation, 1);
    retire(old, now_ms);
}

int tls_secret_update(const struct ProtobufCMessage *secret, uint64_t now_ms, char *err, size_t errlen)
{
    const Secret *sec = (const Secret *)secret;
    struct perr e = {.err = err, .errlen = errlen};
    err[0] = '\0';
    if (!sec->name || !*sec->name) {
        snprintf(err, errlen, "name is required");
        return -1;
    }
    bool is_cert = sec->type_case == ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__SECRET__TYPE_TLS_CERTIFICATE;
    bool is_ca = sec->type_case == ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__SECRET__TYPE_VALIDATION_CONTEXT;
    if (!is_cert && !is_ca) {
        snprintf(err, errlen, "secret '%s': only tls_certificate and validation_context secrets are used", sec->name);
        return -1;
    }
    int updated = 0, failed = 0;
    pthread_mutex_lock(&reg_lock);
    for (struct tls_provider *p = providers; p; p = p->next) {
        struct tls_cfg *c = &p->cfg;
        if (c->pending)
            continue; /* rebuilt with its secrets by the next snapshot */
        /* New sources first; the old ones come back if the new context does not build. */
        struct tls_src saved[3 * TLS_MAX_CERTS + 2];
        bool hit = false;
        int bad = 0;
        for (size_t i = 0; i < c->n_certs && is_cert; i++) {
            if (!c->cert_secret[i] || strcmp(c->cert_secret[i], sec->name) != 0)
                continue;
            const TlsCert *tc = sec->tls_certificate;
            saved[3 * i] = c->chain[i], saved[3 * i + 1] = c->key[i], saved[3 * i + 2] = c->password[i];
            memset(&c->chain[i], 0, sizeof c->chain[i]);
            memset(&c->key[i], 0, sizeof c->key[i]);
            memset(&c->password[i], 0, sizeof c->password[i]);
            if (!tc || !tc->certificate_chain || !tc->private_key || src_from(&e, tc->certificate_chain, &c->chain[i]) < 0 ||
                src_from(&e, tc->private_key, &c->key[i]) < 0 || src_from(&e, tc->password, &c->password[i]) < 0)
                bad = 1;
            hit = true;
        }
        if (is_ca && c->ca_secret && strcmp(c->ca_secret, sec->name) == 0) {
            const ValCtx *v = sec->validation_context;
            saved[3 * TLS_MAX_CERTS] = c->ca, saved[3 * TLS_MAX_CERTS + 1] = c->crl;
            memset(&c->ca, 0, sizeof c->ca);
            memset(&c->crl, 0, sizeof c->crl);
            if (!v || !v->trusted_ca || src_from(&e, v->trusted_ca, &c->ca) < 0 || src_from(&e, v->crl, &c->crl) < 0)
                bad = 1;
            hit = true;
        }
        if (!hit)
            continue;
        char why[384] = "certificate_chain, private_key (or trusted_ca) are required";
        SSL_CTX *ctx = bad ? NULL : build_ctx(p, why, sizeof why);
        for (size_t i = 0; i < c->n_certs && is_cert; i++) {
            if (!c->cert_secret[i] || strcmp(c->cert_secret[i], sec->name) != 0)
                continue;
            if (ctx) {
                src_free(&saved[3 * i]), src_free(&saved[3 * i + 1]), src_free(&saved[3 * i + 2]);
            } else {
                src_free(&c->chain[i]), src_free(&c->key[i]), src_free(&c->password[i]);
                c->chain[i] = saved[3 * i], c->key[i] = saved[3 * i + 1], c->password[i] = saved[3 * i + 2];
            }
        }
        if (is_ca && c->ca_secret && strcmp(c->ca_secret, sec->name) == 0) {
            if (ctx) {
                src_free(&saved[3 * TLS_MAX_CERTS]), src_free(&saved[3 * TLS_MAX_CERTS + 1]);
            } else {
                src_free(&c->ca), src_free(&c->crl);
                c->ca = saved[3 * TLS_MAX_CERTS], c->crl = saved[3 * TLS_MAX_CERTS + 1];
            }
        }
        if (!ctx) {
            if (!failed)
                snprintf(err, errlen, "secret '%s': %s", sec->name, why);
            failed++;
            continue;
        }
        publish(p, ctx, now_ms);
        updated++;
    }
    pthread_mutex_unlock(&reg_lock);
    return failed ? -1 : updated;
}

/* --- connections --- */

int tls_transport_start(struct transport *t, struct tls_provider *p, bool server, const char *sni,
                        SSL_SESSION *session, SSL_SESSION **session_slot)
{
    pthread_once(&ex_once, ex_init);
    SSL_CTX *ctx = tls_provider_ctx(p);
    if (!ctx)
        return -ENOENT; /* an SDS secret it needs has not arrived */
    SSL *ssl = SSL_new(ctx);
    if (!ssl || !SSL_set_fd(ssl, t->fd)) {
        SSL_free(ssl);
        ERR_clear_error();
        return -ENOMEM;
    }
    SSL_set_app_data(ssl, t);
    if (server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        if (sni && *sni) {
            SSL_set_tlsext_host_name(ssl, sni);
            if (p->cfg.auto_sni_san_validation)
                SSL_set1_host(ssl, sni);
        }
        if (!p->cfg.no_cache) {
            if (session)
                SSL_set_session(ssl, session);
            SSL_set_ex_data(ssl, ex_slot_idx, session_slot);
        }
    }
    t->ssl = ssl;
    t->failed = false;
    return 0;
}

static void describe_failure(SSL *ssl, int sslerr, enum tls_fail *fail, char *why, size_t cap)
{
    unsigned long code = ERR_peek_last_error();
    int reason = ERR_GET_REASON(code);
    enum tls_fail f = get_fail(ssl);
    if (f == TLS_FAIL_NONE) {
        if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
            f = TLS_FAIL_NO_CERT;
        else if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
            f = TLS_FAIL_VERIFY;
        else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN || !code)
            f = TLS_FAIL_IO;
        else
            f = TLS_FAIL_PROTOCOL;
    }
    *fail = f;
    const char *lib = code ? ERR_lib_error_string(code) : NULL;
    const char *rs = code ? ERR_reason_error_string(code) : NULL;
    const char *detail = "";
    if (f == TLS_FAIL_SAN)
        detail = ":verify cert failed: SAN matcher";
    else if (f == TLS_FAIL_PIN)
        detail = ":verify cert failed: cert hash and spki";
    else if (f == TLS_FAIL_VERIFY)
        detail = X509_verify_cert_error_string(SSL_get_verify_result(ssl));
    if (f == TLS_FAIL_IO && !code)
        snprintf(why, cap, "TLS_error:|connection closed during the handshake:TLS_error_end");
    else
        snprintf(why, cap, "TLS_error:|%lu:%s:%s%s%s:TLS_error_end", code & 0xffffffUL, lib ? lib : "SSL routines",
                 rs ? rs : "handshake failure", f == TLS_FAIL_VERIFY ? ":" : "", detail);
    ERR_clear_error();
}

int tls_transport_handshake(struct transport *t, bool *want_write, enum tls_fail *fail, char *why, size_t cap)
{
    *want_write = false;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        /* Kept for the connection's access logs (%REQUESTED_SERVER_NAME%, %DOWNSTREAM_PEER_URI_SAN%). */
        const char *sni = SSL_is_server(t->ssl) ? SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
        if (sni && !t->server_name)
            t->server_name = strdup(sni);
        char san[512];
        if (!t->peer_uri_san && transport_peer_sans(t, TRANSPORT_SAN_URI, san, sizeof san) > 0)
            t->peer_uri_san = strdup(san);
        t->peer_cert = SSL_get0_peer_certificate(t->ssl) != NULL;
        return 1;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_WANT_WRITE) {
        *want_write = true;
        return 0;
    }
    t->failed = true;
    describe_failure(t->ssl, e, fail, why, cap);
    return -1;
}

void tls_session_free(SSL_SESSION *s)
{
    SSL_SESSION_free(s);
}

void tls_count(struct stat_block *b, unsigned slot, const struct transport *t, enum tls_fail fail)
{
    if (!b)
        return;
    if (fail != TLS_FAIL_NONE) {
        stats_inc(b, slot, SSL_ST_CONNECTION_ERROR);
        if (fail == TLS_FAIL_NO_CERT)
            stats_inc(b, slot, SSL_ST_FAIL_VERIFY_NO_CERT);
        else if (fail == TLS_FAIL_VERIFY)
            stats_inc(b, slot, SSL_ST_FAIL_VERIFY_ERROR);
        else if (fail == TLS_FAIL_SAN)
            stats_inc(b, slot, SSL_ST_FAIL_VERIFY_SAN);
        else if (fail == TLS_FAIL_PIN)
            stats_inc(b, slot, SSL_ST_FAIL_VERIFY_CERT_HASH);
        return;
    }
    stats_inc(b, slot, SSL_ST_HANDSHAKE);
    if (SSL_session_reused(t->ssl))
        stats_inc(b, slot, SSL_ST_SESSION_REUSED);
    int v = SSL_version(t->ssl);
    if (v == TLS1_2_VERSION)
        stats_inc(b, slot, SSL_ST_TLS12);
    else if (v == TLS1_3_VERSION)
        stats_inc(b, slot, SSL_ST_TLS13);
    if (SSL_is_server(t->ssl)) {
        X509 *peer = SSL_get0_peer_certificate(t->ssl);
        if (!peer)
            stats_inc(b, slot, SSL_ST_NO_CERTIFICATE);
    }
}
