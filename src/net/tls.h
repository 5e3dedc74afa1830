/* TLS with OpenSSL 3, configured from Envoy's v3 TLS API
 * (envoy.extensions.transport_sockets.tls.v3: DownstreamTlsContext, UpstreamTlsContext,
 * CommonTlsContext, Secret).
 *
 * A tls_provider is one configured context (a filter chain's or a cluster's). It owns the
 * parsed configuration and the current SSL_CTX, published with an atomic pointer: the main
 * thread rebuilds it when a certificate, key or CA file changes (tls_poll) and swaps it in; new
 * connections use the new one, existing connections keep the SSL_CTX they started with (each
 * SSL holds a reference). A replaced SSL_CTX is freed after a grace period, long after any
 * worker that loaded the old pointer has called SSL_new on it. A rebuild that fails is logged
 * and the last good context keeps serving. */
#ifndef WEFT_NET_TLS_H
#define WEFT_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/transport.h"

struct ProtobufCMessage;
struct tls_provider;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_session_st SSL_SESSION;

/* Finds a secret (an envoy...tls.v3.Secret message) by name, or NULL. sds: the reference has an
 * sds_config (a secret delivered over ADS), else it names one of static_resources.secrets. When
 * it returns NULL with *pending set, the secret is awaited from SDS: the provider is built
 * without it and has no SSL_CTX (its connections fail) until a new one is built with it. */
typedef const struct ProtobufCMessage *(*tls_secret_fn)(void *arg, const char *name, bool sds, bool *pending);

/* Builds a provider from a DownstreamTlsContext (server = true) or an UpstreamTlsContext
 * message. Secrets named by *_sds_secret_config(s) are looked up with find. Files are read
 * now. On error returns NULL and writes "field.path: problem" (relative to the message) into
 * err. The message is not kept. Main thread. */
struct tls_provider *tls_provider_new(const struct ProtobufCMessage *ctx_msg, bool server, tls_secret_fn find,
                                      void *find_arg, char *err, size_t errlen);
/* Frees the provider; its current SSL_CTX is released after the grace period. */
void tls_provider_free(struct tls_provider *p);
/* The current SSL_CTX (no reference taken; valid for the grace period, so call SSL_new at once),
 * or NULL while an SDS secret it needs has not arrived. */
SSL_CTX *tls_provider_ctx(struct tls_provider *p);
/* UpstreamTlsContext.sni, or NULL. */
const char *tls_provider_sni(const struct tls_provider *p);
/* Keeps only the ALPN protocols the chain's codec speaks (in the configured order), so that a
 * server never selects one its network filter cannot handle. Config time only. */
void tls_provider_restrict_alpn(struct tls_provider *p, const char *const *supported, size_t n);
/* UpstreamTlsContext.auto_host_sni: send the host's hostname as SNI when it has one. */
bool tls_provider_auto_host_sni(const struct tls_provider *p);
/* How many times the context was rebuilt after a file change (tests, logs). */
uint64_t tls_provider_generation(const struct tls_provider *p);

/* Main thread: a new version of a secret (an envoy...tls.v3.Secret with tls_certificate or
 * validation_context), as SDS will deliver it. Every provider whose certificates or trust anchors
 * came from the secret of that name gets a new SSL_CTX built from it (matchers and other
 * settings stay); one that does not build keeps its last good context. Returns the number of
 * providers updated, or -1 with err set when any failed. */
int tls_secret_update(const struct ProtobufCMessage *secret, uint64_t now_ms, char *err, size_t errlen);

/* Main thread, about once a second: checks every provider's files and rebuilds the ones that
 * changed; frees SSL_CTXs retired longer than the grace period (all with force). */
void tls_poll(uint64_t now_ms, bool force);

/* Why a handshake failed, for stats (Envoy's ssl.* names) and access logs. */
enum tls_fail {
    TLS_FAIL_NONE,
    TLS_FAIL_PROTOCOL,      /* ssl.connection_error only */
    TLS_FAIL_NO_CERT,       /* ssl.fail_verify_no_cert: a required client certificate is missing */
    TLS_FAIL_VERIFY,        /* ssl.fail_verify_error: chain, CA, expiry */
    TLS_FAIL_SAN,           /* ssl.fail_verify_san */
    TLS_FAIL_PIN,           /* ssl.fail_verify_cert_hash: verify_certificate_hash / _spki */
    TLS_FAIL_IO,            /* the peer went away mid-handshake */
};

/* Starts TLS on t (plaintext, fd set) with provider p: a server or client SSL. For a client,
 * sni (may be NULL) is sent, and *session (may be NULL) is offered for resumption; new
 * sessions the server issues are stored into *session_slot (worker-local, may be NULL).
 * Returns 0, -ENOMEM, or -ENOENT while the provider waits for an SDS secret. */
int tls_transport_start(struct transport *t, struct tls_provider *p, bool server, const char *sni,
                        SSL_SESSION *session, SSL_SESSION **session_slot);
/* A client's ALPN offer when the provider's CommonTlsContext.alpn_protocols is empty (Envoy
 * derives it from the upstream protocol): wire is the length-prefixed list ("\x02h2"). Call
 * after tls_transport_start, before the handshake. Returns 0 or -ENOMEM. */
int tls_transport_alpn_fallback(struct transport *t, const struct tls_provider *p, const char *wire, size_t len);
/* Advances the handshake. Returns 1 when done, 0 when blocked (*want_write: wait for EPOLLOUT
 * too), -1 when it failed: *fail says why and why[] has a readable reason (Envoy style,
 * "TLS_error:|...:TLS_error_end"). */
int tls_transport_handshake(struct transport *t, bool *want_write, enum tls_fail *fail, char *why, size_t cap);
/* Stops offering the session stored in *slot from now on (frees it). */
void tls_session_free(SSL_SESSION *s);

/* Loads PEM certificates/keys from bytes (the fuzz target's entry and the loader's core):
 * kind 0 = certificate chain, 1 = private key, 2 = CA bundle. Returns the number of objects
 * read, or -1. Nothing is kept. */
int tls_pem_check(const void *data, size_t len, int kind);

/* Envoy's stat fields under "<listener or cluster>.ssl.". */
enum ssl_stat {
    SSL_ST_HANDSHAKE, SSL_ST_CONNECTION_ERROR, SSL_ST_NO_CERTIFICATE, SSL_ST_FAIL_VERIFY_NO_CERT,
    SSL_ST_FAIL_VERIFY_ERROR, SSL_ST_FAIL_VERIFY_SAN, SSL_ST_SESSION_REUSED, SSL_ST_TLS12,
    SSL_ST_TLS13, SSL_ST_FAIL_VERIFY_CERT_HASH, SSL_ST_COUNT
};
struct stat_schema;
extern const struct stat_schema ssl_stat_schema;
struct stat_block;
/* Counts a finished handshake (ok) or a failure in block b for worker slot. */
void tls_count(struct stat_block *b, unsigned slot, const struct transport *t, enum tls_fail fail);

#endif
