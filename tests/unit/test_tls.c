/* TLS module and transport: contexts built from Envoy's DownstreamTlsContext/UpstreamTlsContext
 * (through the YAML mapper, as the bootstrap does), config errors with field paths, a real
 * handshake and record I/O over a socketpair (ALPN, SNI, SAN matching, gathered writes),
 * and the ClientHello / HTTP inspectors on bytes OpenSSL itself produced. */
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/pbmap.h"
#include "common/stats.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb-c.h"
#include "net/inspect.h"
#include "net/tls.h"
#include "net/transport.h"
#include "proxy/access_log.h"
#include "proxy/config.h"
#include "proxy/listener.h"
#include "test.h"

/* A self-signed EC certificate with one SAN, as PEM strings (caller frees). */
static void make_cert(const char *san, char **cert_pem, char **key_pem)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, k, EVP_sha256());
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *p;
    long len = BIO_get_mem_data(b, &p);
    *cert_pem = strndup(p, (size_t)len);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    len = BIO_get_mem_data(b, &p);
    *key_pem = strndup(p, (size_t)len);
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(k);
}

/* YAML flow text for a PEM string: double-quoted with \n escapes. */
static void yq(char *out, size_t cap, const char *pem)
{
    size_t o = 0;
    out[o++] = '"';
    for (const char *p = pem; *p && o + 4 < cap; p++) {
        if (*p == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *p;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
}

static struct tls_provider *provider(const char *yaml, bool server, char *err, size_t errlen)
{
    struct pbmap_error pe;
    const ProtobufCMessageDescriptor *d = server ? &envoy__extensions__transport_sockets__tls__v3__downstream_tls_context__descriptor
                                                 : &envoy__extensions__transport_sockets__tls__v3__upstream_tls_context__descriptor;
    ProtobufCMessage *m = pbmap_from_yaml(d, yaml, strlen(yaml), "test.yaml", &pe);
    if (!m) {
        snprintf(err, errlen, "yaml: %.400s", pe.msg);
        return NULL;
    }
    struct tls_provider *p = tls_provider_new(m, server, NULL, NULL, err, errlen);
    protobuf_c_message_free_unpacked(m, NULL);
    return p;
}

static char *srv_cert, *srv_key, *cli_cert, *cli_key;
static char y_srv_cert[4096], y_srv_key[4096], y_cli_cert[4096], y_cli_key[4096];

static void setup(void)
{
    if (srv_cert)
        return;
    signal(SIGPIPE, SIG_IGN); /* as weft-proxy: OpenSSL writes with write(2) */
    make_cert("DNS:server.test", &srv_cert, &srv_key);
    make_cert("URI:spiffe://cluster.local/ns/default/sa/reviews", &cli_cert, &cli_key);
    yq(y_srv_cert, sizeof y_srv_cert, srv_cert);
    yq(y_srv_key, sizeof y_srv_key, srv_key);
    yq(y_cli_cert, sizeof y_cli_cert, cli_cert);
    yq(y_cli_key, sizeof y_cli_key, cli_key);
}

static void config_errors(void)
{
    setup();
    char err[512], y[16384];
    CHECK(provider("common_tls_context: {}", true, err, sizeof err) == NULL);
    CHECK(strstr(err, "a server needs tls_certificates") != NULL);
    snprintf(y, sizeof y, "common_tls_context: {tls_certificates: [{certificate_chain: {inline_string: \"junk\"}, "
                          "private_key: {inline_string: %s}}]}", y_srv_key);
    CHECK(provider(y, true, err, sizeof err) == NULL);
    CHECK(strstr(err, "no PEM certificate") != NULL);
    snprintf(y, sizeof y, "common_tls_context: {tls_certificates: [{certificate_chain: {inline_string: %s}, "
                          "private_key: {inline_string: %s}}]}", y_srv_cert, y_cli_key);
    CHECK(provider(y, true, err, sizeof err) == NULL);
    CHECK(strstr(err, "does not match") != NULL);
    snprintf(y, sizeof y, "require_client_certificate: true\ncommon_tls_context: {tls_certificates: [{certificate_chain: "
                          "{inline_string: %s}, private_key: {inline_string: %s}}]}", y_srv_cert, y_srv_key);
    CHECK(provider(y, true, err, sizeof err) == NULL);
    CHECK(strstr(err, "require_client_certificate needs") != NULL);
    snprintf(y, sizeof y, "common_tls_context: {tls_certificates: [{certificate_chain: {filename: /nonexistent/x.pem}, "
                          "private_key: {inline_string: %s}}]}", y_srv_key);
    CHECK(provider(y, true, err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent/x.pem") != NULL);
    CHECK(provider("common_tls_context: {tls_params: {tls_minimum_protocol_version: TLSv1_2}, "
                   "tls_certificate_sds_secret_configs: [{name: missing}]}", true, err, sizeof err) == NULL);
    CHECK(strstr(err, "common_tls_context.tls_certificate_sds_secret_configs[0]: secret 'missing'") != NULL);
    CHECK(provider("common_tls_context: {validation_context: {match_typed_subject_alt_names: "
                   "[{san_type: URI, matcher: {safe_regex: {regex: \"(\"}}}]}}", false, err, sizeof err) == NULL);
    CHECK(strstr(err, "match_typed_subject_alt_names[0]: safe_regex") != NULL);
    CHECK(provider("common_tls_context: {tls_params: {cipher_suites: [NOPE-CIPHER]}}", false, err, sizeof err) == NULL);
    CHECK(strstr(err, "cipher_suites") != NULL);
    struct tls_provider *ok = provider("sni: example.com\ncommon_tls_context: {alpn_protocols: [h2, http/1.1], tls_params: "
                                       "{cipher_suites: [\"[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]\"], "
                                       "ecdh_curves: [X25519, P-256]}}", false, err, sizeof err);
    CHECK(ok != NULL);
    if (ok)
        CHECK_EQ_STR(tls_provider_sni(ok), "example.com");
    tls_provider_free(ok);
}

/* Drives both handshakes over a socketpair until they finish or one fails. */
static int handshake_pair(struct transport *s, struct transport *c, enum tls_fail *sf, enum tls_fail *cf)
{
    int sdone = 0, cdone = 0;
    char why[256];
    bool ww;
    for (int i = 0; i < 100 && (sdone == 0 || cdone == 0); i++) {
        if (!cdone)
            cdone = tls_transport_handshake(c, &ww, cf, why, sizeof why);
        if (!sdone)
            sdone = tls_transport_handshake(s, &ww, sf, why, sizeof why);
        if (sdone < 0 || cdone < 0)
            return -1;
    }
    return sdone == 1 && cdone == 1 ? 0 : -1;
}

static void socketpair_nb(int fds[2])
{
    socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
}

static void handshake_and_io(void)
{
    setup();
    char err[512], y[20000];
    snprintf(y, sizeof y,
             "common_tls_context:\n  alpn_protocols: [h2, http/1.1]\n  tls_certificates: [{certificate_chain: {inline_string: %s}, "
             "private_key: {inline_string: %s}}]\n  validation_context:\n    trusted_ca: {inline_string: %s}\n"
             "    match_typed_subject_alt_names: [{san_type: URI, matcher: {suffix: /sa/reviews}}]\n",
             y_srv_cert, y_srv_key, y_cli_cert);
    struct tls_provider *sp = provider(y, true, err, sizeof err);
    CHECK(sp != NULL);
    snprintf(y, sizeof y,
             "sni: server.test\ncommon_tls_context:\n  tls_params: {tls_maximum_protocol_version: TLSv1_3}\n"
             "  alpn_protocols: [http/1.1, h2]\n  tls_certificates: [{certificate_chain: "
             "{inline_string: %s}, private_key: {inline_string: %s}}]\n  validation_context:\n    trusted_ca: {inline_string: %s}\n"
             "    match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: server.test}}]\n",
             y_cli_cert, y_cli_key, y_srv_cert);
    struct tls_provider *cp = provider(y, false, err, sizeof err);
    CHECK(cp != NULL);
    if (!sp || !cp) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    int fds[2];
    socketpair_nb(fds);
    struct transport s = transport_plain(fds[0]), c = transport_plain(fds[1]);
    SSL_SESSION *slot = NULL;
    CHECK(tls_transport_start(&s, sp, true, NULL, NULL, NULL) == 0);
    CHECK(tls_transport_start(&c, cp, false, tls_provider_sni(cp), NULL, &slot) == 0);
    enum tls_fail sf = TLS_FAIL_NONE, cf = TLS_FAIL_NONE;
    CHECK(handshake_pair(&s, &c, &sf, &cf) == 0);
    size_t alen = 0;
    const char *alpn = transport_alpn(&s, &alen);
    CHECK(alpn && alen == 2 && memcmp(alpn, "h2", 2) == 0); /* the server's preference */
    CHECK_EQ_STR(transport_tls_version(&s), "TLSv1.3");
    CHECK_EQ_STR(s.server_name, "server.test");
    CHECK_EQ_STR(s.peer_uri_san, "spiffe://cluster.local/ns/default/sa/reviews");
    char sans[256];
    CHECK(transport_peer_sans(&c, TRANSPORT_SAN_DNS, sans, sizeof sans) == 1);
    CHECK_EQ_STR(sans, "server.test");
    /* The access log operators read the connection's transport. */
    char aerr[128], line[512];
    struct access_log *al = access_log_new("/dev/null", "%REQUESTED_SERVER_NAME% %DOWNSTREAM_PEER_URI_SAN% "
                                           "%DOWNSTREAM_TLS_VERSION% %DOWNSTREAM_TRANSPORT_FAILURE_REASON% "
                                           "%UPSTREAM_TRANSPORT_FAILURE_REASON%", aerr, sizeof aerr);
    CHECK(al != NULL);
    struct stream_info si = {.downstream_tp = &s, .upstream_transport_failure_reason = "TLS_error:|x:TLS_error_end"};
    if (al) {
        access_log_format(al, &si, line, sizeof line);
        CHECK_EQ_STR(line, "server.test spiffe://cluster.local/ns/default/sa/reviews TLSv1.3 - TLS_error:|x:TLS_error_end");
        struct stream_info none = {0};
        access_log_format(al, &none, line, sizeof line);
        CHECK_EQ_STR(line, "- - - - -");
        access_log_free(al);
    }
    /* Gathered write: three buffers arrive in order. */
    struct iovec iov[3] = {{"head ", 5}, {"body ", 5}, {"tail", 4}};
    CHECK(transport_sendv(&c, iov, 3) == 14);
    char buf[64];
    ssize_t n = transport_recv(&s, buf, sizeof buf);
    CHECK(n == 14 && memcmp(buf, "head body tail", 14) == 0);
    CHECK(transport_recv(&s, buf, sizeof buf) == -1 && errno == EAGAIN);
    /* A large write is split into records and read back whole. */
    static char big[200000], back[200000];
    memset(big, 'x', sizeof big);
    size_t sent = 0, got = 0;
    for (int i = 0; i < 10000 && got < sizeof big; i++) {
        if (sent < sizeof big) {
            struct iovec one = {big + sent, sizeof big - sent};
            ssize_t w = transport_sendv(&s, &one, 1);
            if (w > 0)
                sent += (size_t)w;
        }
        ssize_t r = transport_recv(&c, back + got, sizeof back - got);
        if (r > 0)
            got += (size_t)r;
    }
    CHECK(got == sizeof big && memcmp(big, back, sizeof big) == 0);
    /* close_notify: the peer sees EOF (TLS 1.3 tickets arrive on the way and fill the slot). */
    transport_shutdown(&s);
    ssize_t r;
    do
        r = transport_recv(&c, buf, sizeof buf);
    while (r > 0);
    CHECK(r == 0);
    CHECK(slot != NULL);
    transport_close(&s);
    transport_close(&c);

    /* Resumption with the saved session. */
    socketpair_nb(fds);
    s = transport_plain(fds[0]);
    c = transport_plain(fds[1]);
    tls_transport_start(&s, sp, true, NULL, NULL, NULL);
    tls_transport_start(&c, cp, false, "server.test", slot, &slot);
    CHECK(handshake_pair(&s, &c, &sf, &cf) == 0);
    CHECK(transport_session_reused(&c));
    transport_close(&s);
    transport_close(&c);
    tls_session_free(slot);

    /* Envoy's client default is TLS 1.2 at most; its sessions resume too, again and again. */
    struct tls_provider *c12 = provider("common_tls_context: {}", false, err, sizeof err);
    slot = NULL;
    int reused12 = 0;
    for (int i = 0; i < 3 && c12; i++) {
        socketpair_nb(fds);
        s = transport_plain(fds[0]);
        c = transport_plain(fds[1]);
        tls_transport_start(&s, sp, true, NULL, NULL, NULL);
        tls_transport_start(&c, c12, false, NULL, slot, &slot);
        CHECK(handshake_pair(&s, &c, &sf, &cf) == 0);
        CHECK_EQ_STR(transport_tls_version(&c), "TLSv1.2");
        reused12 += transport_session_reused(&c);
        transport_close(&s);
        transport_close(&c);
    }
    CHECK_EQ_INT(reused12, 2);
    tls_session_free(slot);
    tls_provider_free(c12);

    /* A client whose SNI-verified name does not match the server's SAN fails with TLS_FAIL_SAN. */
    snprintf(y, sizeof y, "common_tls_context:\n  validation_context:\n    trusted_ca: {inline_string: %s}\n"
                          "    match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: other.test}}]\n", y_srv_cert);
    struct tls_provider *bad = provider(y, false, err, sizeof err);
    CHECK(bad != NULL);
    socketpair_nb(fds);
    s = transport_plain(fds[0]);
    c = transport_plain(fds[1]);
    tls_transport_start(&s, sp, true, NULL, NULL, NULL);
    tls_transport_start(&c, bad, false, NULL, NULL, NULL);
    sf = cf = TLS_FAIL_NONE;
    CHECK(handshake_pair(&s, &c, &sf, &cf) < 0);
    CHECK_EQ_INT(cf, TLS_FAIL_SAN);
    transport_close(&s);
    transport_close(&c);
    tls_provider_free(bad);
    tls_provider_free(sp);
    tls_provider_free(cp);
    tls_poll(0, true);
}

/* A real ClientHello, as OpenSSL writes it. Returns its length. */
static size_t client_hello(const char *sni, const unsigned char *alpn, unsigned alpn_len, uint8_t *out, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    if (sni)
        SSL_set_tlsext_host_name(ssl, sni);
    if (alpn)
        SSL_set_alpn_protos(ssl, alpn, alpn_len);
    SSL_connect(ssl);
    int n = BIO_read(wb, out, (int)cap);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return n > 0 ? (size_t)n : 0;
}

/* Two servers with the same session_ticket_keys resume each other's sessions (as two
 * processes of one deployment do); a server with other keys falls back to a full handshake. */
static void ticket_keys(void)
{
    setup();
    unsigned char key[80];
    for (int i = 0; i < 80; i++)
        key[i] = (unsigned char)(i * 7 + 1);
    char *b64 = pbmap_base64(key, sizeof key);
    char err[512], y[20000];
    snprintf(y, sizeof y, "session_ticket_keys: {keys: [{inline_bytes: \"%s\"}]}\ncommon_tls_context: {tls_certificates: "
             "[{certificate_chain: {inline_string: %s}, private_key: {inline_string: %s}}]}", b64, y_srv_cert, y_srv_key);
    struct tls_provider *a = provider(y, true, err, sizeof err), *b = provider(y, true, err, sizeof err);
    CHECK(a && b);
    snprintf(y, sizeof y, "common_tls_context: {tls_certificates: [{certificate_chain: {inline_string: %s}, "
             "private_key: {inline_string: %s}}]}", y_srv_cert, y_srv_key);
    struct tls_provider *other = provider(y, true, err, sizeof err);
    struct tls_provider *cl = provider("common_tls_context: {}", false, err, sizeof err);
    CHECK(other && cl);
    CHECK(provider("session_ticket_keys: {keys: [{inline_string: short}]}\ncommon_tls_context: {}", true, err, sizeof err) == NULL);
    CHECK(strstr(err, "session_ticket_keys.keys[0]: a session ticket key is exactly 80 bytes") != NULL);
    free(b64);
    if (!a || !b || !other || !cl)
        return;
    SSL_SESSION *slot = NULL;
    struct tls_provider *servers[3] = {a, b, other};
    bool reused[3] = {false, false, false};
    for (int i = 0; i < 3; i++) {
        int fds[2];
        socketpair_nb(fds);
        struct transport s = transport_plain(fds[0]), c = transport_plain(fds[1]);
        tls_transport_start(&s, servers[i], true, NULL, NULL, NULL);
        tls_transport_start(&c, cl, false, NULL, i ? slot : NULL, &slot);
        enum tls_fail sf, cf;
        CHECK(handshake_pair(&s, &c, &sf, &cf) == 0);
        /* TLS 1.3 tickets come after the handshake: let the client read them. */
        char buf[16];
        transport_send(&s, "x", 1);
        transport_recv(&c, buf, sizeof buf);
        reused[i] = transport_session_reused(&c);
        transport_close(&s);
        transport_close(&c);
    }
    CHECK(!reused[0]);
    CHECK(reused[1]);   /* a's ticket, accepted by b */
    CHECK(!reused[2]);  /* other keys: full handshake */
    tls_session_free(slot);
    tls_provider_free(a);
    tls_provider_free(b);
    tls_provider_free(other);
    tls_provider_free(cl);
}

/* One client handshake against server provider sp; returns the client's failure (NONE = ok). */
static enum tls_fail try_client(struct tls_provider *sp, const char *client_yaml, const char *sni)
{
    char err[512];
    struct tls_provider *cp = provider(client_yaml, false, err, sizeof err);
    if (!cp) {
        fprintf(stderr, "client config: %s\n", err);
        return TLS_FAIL_IO;
    }
    int fds[2];
    socketpair_nb(fds);
    struct transport s = transport_plain(fds[0]), c = transport_plain(fds[1]);
    tls_transport_start(&s, sp, true, NULL, NULL, NULL);
    tls_transport_start(&c, cp, false, sni, NULL, NULL);
    enum tls_fail sf = TLS_FAIL_NONE, cf = TLS_FAIL_NONE;
    int r = handshake_pair(&s, &c, &sf, &cf);
    transport_close(&s);
    transport_close(&c);
    tls_provider_free(cp);
    if (r == 0)
        return TLS_FAIL_NONE;
    return cf != TLS_FAIL_NONE ? cf : sf != TLS_FAIL_NONE ? sf : TLS_FAIL_IO;
}

/* verify_certificate_hash / verify_certificate_spki, auto_sni_san_validation, require_sni. */
static void pins_and_sni(void)
{
    setup();
    char err[512], y[20000];
    snprintf(y, sizeof y, "common_tls_context: {tls_certificates: [{certificate_chain: {inline_string: %s}, "
             "private_key: {inline_string: %s}}]}", y_srv_cert, y_srv_key);
    struct tls_provider *sp = provider(y, true, err, sizeof err);
    snprintf(y, sizeof y, "require_sni: true\ncommon_tls_context: {tls_certificates: [{certificate_chain: {inline_string: %s}, "
             "private_key: {inline_string: %s}}]}", y_srv_cert, y_srv_key);
    struct tls_provider *sni_only = provider(y, true, err, sizeof err);
    CHECK(sp && sni_only);
    if (!sp || !sni_only)
        return;
    BIO *b = BIO_new_mem_buf(srv_cert, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    unsigned char md[32], spki[32];
    unsigned n = 0;
    X509_digest(x, EVP_sha256(), md, &n);
    X509_pubkey_digest(x, EVP_sha256(), spki, &n);
    X509_free(x);
    char hex[100] = "", *spki64 = pbmap_base64(spki, 32);
    for (int i = 0; i < 32; i++)
        snprintf(hex + strlen(hex), sizeof hex - strlen(hex), i ? ":%02X" : "%02X", md[i]);
    /* Pinned by certificate hash, with no CA: the pin is the trust. */
    snprintf(y, sizeof y, "common_tls_context: {validation_context: {verify_certificate_hash: [\"%s\"]}}", hex);
    CHECK_EQ_INT(try_client(sp, y, NULL), TLS_FAIL_NONE);
    snprintf(y, sizeof y, "common_tls_context: {validation_context: {verify_certificate_spki: [\"%s\"]}}", spki64);
    CHECK_EQ_INT(try_client(sp, y, NULL), TLS_FAIL_NONE);
    hex[0] = hex[0] == 'A' ? 'B' : 'A';
    snprintf(y, sizeof y, "common_tls_context: {validation_context: {verify_certificate_hash: [\"%s\"]}}", hex);
    CHECK_EQ_INT(try_client(sp, y, NULL), TLS_FAIL_PIN);
    CHECK(provider("common_tls_context: {validation_context: {verify_certificate_hash: [\"abc\"]}}", false, err, sizeof err) == NULL);
    CHECK(strstr(err, "verify_certificate_hash[0]") != NULL);
    free(spki64);
    /* auto_sni_san_validation: the SNI sent must be a DNS SAN of the server; it replaces the matchers. */
    snprintf(y, sizeof y, "auto_sni_san_validation: true\ncommon_tls_context: {validation_context: {trusted_ca: "
             "{inline_string: %s}, match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: nope.test}}]}}", y_srv_cert);
    CHECK_EQ_INT(try_client(sp, y, "server.test"), TLS_FAIL_NONE);
    CHECK_EQ_INT(try_client(sp, y, "other.test"), TLS_FAIL_SAN);
    /* require_sni. */
    CHECK_EQ_INT(try_client(sni_only, "common_tls_context: {}", "server.test"), TLS_FAIL_NONE);
    CHECK(try_client(sni_only, "common_tls_context: {}", NULL) != TLS_FAIL_NONE);
    tls_provider_free(sp);
    tls_provider_free(sni_only);
}

/* A CRL from the client certificate's issuer (it is self-signed) revoking it: the server refuses it. */
static void crl_revocation(void)
{
    setup();
    BIO *b = BIO_new_mem_buf(cli_cert, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    b = BIO_new_mem_buf(cli_key, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    char *crl_pem[2];
    for (int revoke = 0; revoke < 2; revoke++) {
        X509_CRL *crl = X509_CRL_new();
        X509_CRL_set_version(crl, 1);
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(x));
        ASN1_TIME *t = ASN1_TIME_adj(NULL, time(NULL), 0, -60);
        X509_CRL_set1_lastUpdate(crl, t);
        ASN1_TIME_adj(t, time(NULL), 1, 0);
        X509_CRL_set1_nextUpdate(crl, t);
        ASN1_TIME_free(t);
        if (revoke) {
            X509_REVOKED *r = X509_REVOKED_new();
            X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(x));
            ASN1_TIME *rt = ASN1_TIME_adj(NULL, time(NULL), 0, -30);
            X509_REVOKED_set_revocationDate(r, rt);
            ASN1_TIME_free(rt);
            X509_CRL_add0_revoked(crl, r);
        }
        X509_CRL_sort(crl);
        X509_CRL_sign(crl, k, EVP_sha256());
        BIO *o = BIO_new(BIO_s_mem());
        PEM_write_bio_X509_CRL(o, crl);
        char *p;
        long len = BIO_get_mem_data(o, &p);
        crl_pem[revoke] = strndup(p, (size_t)len);
        BIO_free(o);
        X509_CRL_free(crl);
    }
    X509_free(x);
    EVP_PKEY_free(k);
    char err[512], y[30000], ycrl[4096];
    char cli[20000];
    snprintf(cli, sizeof cli, "common_tls_context: {tls_certificates: [{certificate_chain: {inline_string: %s}, "
             "private_key: {inline_string: %s}}]}", y_cli_cert, y_cli_key);
    bool refused[2];
    for (int revoke = 0; revoke < 2; revoke++) {
        yq(ycrl, sizeof ycrl, crl_pem[revoke]);
        snprintf(y, sizeof y, "require_client_certificate: true\ncommon_tls_context: {tls_certificates: [{certificate_chain: "
                 "{inline_string: %s}, private_key: {inline_string: %s}}], validation_context: {trusted_ca: {inline_string: %s}, "
                 "crl: {inline_string: %s}}}", y_srv_cert, y_srv_key, y_cli_cert, ycrl);
        struct tls_provider *sp = provider(y, true, err, sizeof err);
        CHECK(sp != NULL);
        if (!sp) {
            fprintf(stderr, "%s\n", err);
            continue;
        }
        refused[revoke] = try_client(sp, cli, NULL) != TLS_FAIL_NONE;
        tls_provider_free(sp);
        free(crl_pem[revoke]);
    }
    CHECK(!refused[0]);
    CHECK(refused[1]);
}

/* Several certificates in one context: chosen by SNI (exact SAN, then wildcard), else the first. */
static void sni_certificate_selection(void)
{
    setup();
    char *c2, *k2, *c3, *k3;
    make_cert("DNS:other.test", &c2, &k2);
    make_cert("DNS:*.wild.test", &c3, &k3);
    static char yc2[4096], yk2[4096], yc3[4096], yk3[4096], y[40000];
    yq(yc2, sizeof yc2, c2);
    yq(yk2, sizeof yk2, k2);
    yq(yc3, sizeof yc3, c3);
    yq(yk3, sizeof yk3, k3);
    snprintf(y, sizeof y, "common_tls_context: {tls_certificates: [{certificate_chain: {inline_string: %s}, private_key: "
             "{inline_string: %s}}, {certificate_chain: {inline_string: %s}, private_key: {inline_string: %s}}, "
             "{certificate_chain: {inline_string: %s}, private_key: {inline_string: %s}}]}",
             y_srv_cert, y_srv_key, yc2, yk2, yc3, yk3);
    char err[512];
    struct tls_provider *sp = provider(y, true, err, sizeof err);
    struct tls_provider *cp = provider("common_tls_context: {}", false, err, sizeof err);
    CHECK(sp && cp);
    const char *snis[] = {"other.test", "server.test", NULL, "a.wild.test", "unknown.test"};
    const char *want[] = {"other.test", "server.test", "server.test", "*.wild.test", "server.test"};
    for (int i = 0; sp && cp && i < 5; i++) {
        int fds[2];
        socketpair_nb(fds);
        struct transport s = transport_plain(fds[0]), c = transport_plain(fds[1]);
        tls_transport_start(&s, sp, true, NULL, NULL, NULL);
        tls_transport_start(&c, cp, false, snis[i], NULL, NULL);
        enum tls_fail sf, cf;
        CHECK(handshake_pair(&s, &c, &sf, &cf) == 0);
        char sans[256];
        transport_peer_sans(&c, TRANSPORT_SAN_DNS, sans, sizeof sans);
        CHECK_EQ_STR(sans, want[i]);
        transport_close(&s);
        transport_close(&c);
    }
    tls_provider_free(sp);
    tls_provider_free(cp);
    free(c2), free(k2), free(c3), free(k3);
}

static ProtobufCMessage *secret_msg(const char *yaml)
{
    struct pbmap_error pe;
    ProtobufCMessage *m = pbmap_from_yaml(&envoy__extensions__transport_sockets__tls__v3__secret__descriptor, yaml,
                                          strlen(yaml), "secret.yaml", &pe);
    if (!m)
        fprintf(stderr, "secret yaml: %s\n", pe.msg);
    return m;
}

static ProtobufCMessage *secrets[2];
static const ProtobufCMessage *find_by_name(void *arg, const char *name, bool sds, bool *pending)
{
    (void)arg, (void)sds, (void)pending;
    for (int i = 0; i < 2; i++) {
        const Envoy__Extensions__TransportSockets__Tls__V3__Secret *s = (const void *)secrets[i];
        if (s && strcmp(s->name, name) == 0)
            return secrets[i];
    }
    return NULL;
}

/* SDS-shaped secrets: a provider made from named secrets takes a new version of one. */
static void secret_updates(void)
{
    setup();
    static char y[20000];
    snprintf(y, sizeof y, "name: srv\ntls_certificate: {certificate_chain: {inline_string: %s}, private_key: {inline_string: %s}}",
             y_srv_cert, y_srv_key);
    secrets[0] = secret_msg(y);
    snprintf(y, sizeof y, "name: ca\nvalidation_context: {trusted_ca: {inline_string: %s}}", y_cli_cert);
    secrets[1] = secret_msg(y);
    const char *dyaml = "require_client_certificate: true\ncommon_tls_context: {tls_certificate_sds_secret_configs: [{name: srv}], "
                        "validation_context_sds_secret_config: {name: ca}}";
    struct pbmap_error pe;
    ProtobufCMessage *dm = pbmap_from_yaml(&envoy__extensions__transport_sockets__tls__v3__downstream_tls_context__descriptor,
                                           dyaml, strlen(dyaml), "d.yaml", &pe);
    char err[512];
    struct tls_provider *sp = dm ? tls_provider_new(dm, true, find_by_name, NULL, err, sizeof err) : NULL;
    CHECK(sp != NULL);
    char cli[20000];
    snprintf(cli, sizeof cli, "common_tls_context: {tls_certificates: [{certificate_chain: {inline_string: %s}, "
             "private_key: {inline_string: %s}}]}", y_cli_cert, y_cli_key);
    if (sp) {
        CHECK_EQ_INT(try_client(sp, cli, NULL), TLS_FAIL_NONE);
        char *c2, *k2;
        make_cert("DNS:rotated.test", &c2, &k2);
        static char yc2[4096], yk2[4096];
        yq(yc2, sizeof yc2, c2);
        yq(yk2, sizeof yk2, k2);
        snprintf(y, sizeof y, "name: srv\ntls_certificate: {certificate_chain: {inline_string: %s}, private_key: {inline_string: %s}}",
                 yc2, yk2);
        ProtobufCMessage *u = secret_msg(y);
        CHECK_EQ_INT(tls_secret_update(u, 0, err, sizeof err), 1);
        CHECK_EQ_INT(tls_provider_generation(sp), 1);
        protobuf_c_message_free_unpacked(u, NULL);
        /* A new connection gets the rotated certificate. */
        struct tls_provider *cp = provider(cli, false, err, sizeof err);
        int fds[2];
        socketpair_nb(fds);
        struct transport s = transport_plain(fds[0]), c = transport_plain(fds[1]);
        tls_transport_start(&s, sp, true, NULL, NULL, NULL);
        tls_transport_start(&c, cp, false, NULL, NULL, NULL);
        enum tls_fail sf, cf;
        CHECK(handshake_pair(&s, &c, &sf, &cf) == 0);
        char sans[128];
        transport_peer_sans(&c, TRANSPORT_SAN_DNS, sans, sizeof sans);
        CHECK_EQ_STR(sans, "rotated.test");
        transport_close(&s);
        transport_close(&c);
        tls_provider_free(cp);
        /* A broken version is refused and the last good one stays. */
        snprintf(y, sizeof y, "name: srv\ntls_certificate: {certificate_chain: {inline_string: %s}, private_key: {inline_string: %s}}",
                 yc2, y_srv_key);
        u = secret_msg(y);
        CHECK_EQ_INT(tls_secret_update(u, 0, err, sizeof err), -1);
        CHECK(strstr(err, "secret 'srv': private_key does not match") != NULL);
        CHECK_EQ_INT(tls_provider_generation(sp), 1);
        CHECK_EQ_INT(try_client(sp, cli, NULL), TLS_FAIL_NONE);
        protobuf_c_message_free_unpacked(u, NULL);
        /* A new trust anchor: the old client certificate is no longer trusted. */
        snprintf(y, sizeof y, "name: ca\nvalidation_context: {trusted_ca: {inline_string: %s}}", yc2);
        u = secret_msg(y);
        CHECK_EQ_INT(tls_secret_update(u, 0, err, sizeof err), 1);
        CHECK(try_client(sp, cli, NULL) != TLS_FAIL_NONE);
        protobuf_c_message_free_unpacked(u, NULL);
        /* A name nobody uses updates nothing. */
        u = secret_msg("name: unused\nvalidation_context: {}");
        CHECK_EQ_INT(tls_secret_update(u, 0, err, sizeof err), 0);
        protobuf_c_message_free_unpacked(u, NULL);
        free(c2), free(k2);
    }
    tls_provider_free(sp);
    if (dm)
        protobuf_c_message_free_unpacked(dm, NULL);
    for (int i = 0; i < 2; i++)
        if (secrets[i])
            protobuf_c_message_free_unpacked(secrets[i], NULL);
    tls_poll(0, true);
}

static void tls_inspector(void)
{
    uint8_t hello[4096];
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    size_t n = client_hello("Svc.Example.COM", alpn, sizeof alpn - 1, hello, sizeof hello);
    CHECK(n > 100);
    struct tls_hello h;
    CHECK_EQ_INT(tls_inspect(hello, n, INSPECT_PEEK_MAX, &h), INSPECT_MATCH);
    CHECK_EQ_STR(h.sni, "svc.example.com");
    CHECK_EQ_INT(h.n_alpn, 2);
    CHECK_EQ_STR(h.alpn[0], "h2");
    CHECK_EQ_STR(h.alpn[1], "http/1.1");
    /* Every prefix is "need more" (the peek waits), never a wrong answer. */
    bool all_more = true;
    for (size_t i = 1; i < n; i++)
        all_more &= tls_inspect(hello, i, INSPECT_PEEK_MAX, &h) == INSPECT_NEED_MORE;
    CHECK(all_more);
    /* The same hello split over two records. */
    uint8_t split[4200];
    size_t body = n - 5, first = 40;
    memcpy(split, hello, 5);
    split[3] = (uint8_t)(first >> 8);
    split[4] = (uint8_t)first;
    memcpy(split + 5, hello + 5, first);
    memcpy(split + 5 + first, hello, 5);
    split[5 + first + 3] = (uint8_t)((body - first) >> 8);
    split[5 + first + 4] = (uint8_t)(body - first);
    memcpy(split + 10 + first, hello + 5 + first, body - first);
    CHECK_EQ_INT(tls_inspect(split, n + 5, INSPECT_PEEK_MAX, &h), INSPECT_MATCH);
    CHECK_EQ_STR(h.sni, "svc.example.com");
    /* Without SNI or ALPN. */
    n = client_hello(NULL, NULL, 0, hello, sizeof hello);
    CHECK_EQ_INT(tls_inspect(hello, n, INSPECT_PEEK_MAX, &h), INSPECT_MATCH);
    CHECK_EQ_STR(h.sni, "");
    CHECK_EQ_INT(h.n_alpn, 0);
    /* Not TLS, and too large. */
    CHECK_EQ_INT(tls_inspect((const uint8_t *)"GET / HTTP/1.1\r\n", 16, INSPECT_PEEK_MAX, &h), INSPECT_NO);
    CHECK_EQ_INT(tls_inspect((const uint8_t *)"\x16\x03\x01\x40\x00\x01\xff\xff\xff", 9, 1024, &h), INSPECT_TOO_LARGE);
}

static void http_inspector(void)
{
    const char *p = NULL;
    CHECK_EQ_INT(http_inspect((const uint8_t *)"GET /x HTTP/1.1\r\n", 17, 4096, &p), INSPECT_MATCH);
    CHECK_EQ_STR(p, "http/1.1");
    CHECK_EQ_INT(http_inspect((const uint8_t *)"POST /x HTTP/1.0\r\n", 18, 4096, &p), INSPECT_MATCH);
    CHECK_EQ_STR(p, "http/1.0");
    CHECK_EQ_INT(http_inspect((const uint8_t *)"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24, 4096, &p), INSPECT_MATCH);
    CHECK_EQ_STR(p, "h2c");
    CHECK_EQ_INT(http_inspect((const uint8_t *)"PRI * HT", 8, 4096, &p), INSPECT_NEED_MORE);
    CHECK_EQ_INT(http_inspect((const uint8_t *)"GET /long/pa", 12, 4096, &p), INSPECT_NEED_MORE);
    CHECK_EQ_INT(http_inspect((const uint8_t *)"\x16\x03\x01", 3, 4096, &p), INSPECT_NO);
    CHECK_EQ_INT(http_inspect((const uint8_t *)"SSH-2.0-OpenSSH\r\n", 17, 4096, &p), INSPECT_NO);
}

static struct sockaddr_storage lo(int port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    in->sin_addr.s_addr = htonl(0x7f000001);
    return ss;
}

static void server_name_matching(void)
{
    char *exact[] = {"api.example.com"}, *wild[] = {"*.example.com"}, *wild2[] = {"*.b.example.com"};
    char *h2[] = {"h2"};
    struct filter_chain e = {.name = "exact", .match = {.server_names = exact, .n_server_names = 1}};
    struct filter_chain w = {.name = "wild", .match = {.server_names = wild, .n_server_names = 1}};
    struct filter_chain w2 = {.name = "wild2", .match = {.server_names = wild2, .n_server_names = 1}};
    struct filter_chain any = {.name = "any"};
    struct filter_chain alpn = {.name = "h2", .match = {.server_names = exact, .n_server_names = 1,
                                                        .application_protocols = h2, .n_application_protocols = 1}};
    struct filter_chain *chains[] = {&any, &w, &e, &w2, &alpn};
    struct listener_config lc = {.chains = chains, .n_chains = 5};
    struct sockaddr_storage d = lo(443), s = lo(5555);
    struct chain_match_input in = {.dst = &d, .src = &s, .transport_protocol = "tls"};
    in.server_name = "api.example.com";
    CHECK_EQ_STR(listener_match(&lc, &in)->name, "exact");
    const char *offer[] = {"http/1.1", "h2"};
    in.application_protocols = offer;
    in.n_application_protocols = 2;
    CHECK_EQ_STR(listener_match(&lc, &in)->name, "h2");
    in.n_application_protocols = 0;
    in.server_name = "x.b.example.com";
    CHECK_EQ_STR(listener_match(&lc, &in)->name, "wild2");
    in.server_name = "web.example.com";
    CHECK_EQ_STR(listener_match(&lc, &in)->name, "wild");
    in.server_name = "example.com"; /* "*.example.com" needs a label before the suffix */
    CHECK_EQ_STR(listener_match(&lc, &in)->name, "any");
    in.server_name = NULL;
    CHECK_EQ_STR(listener_match(&lc, &in)->name, "any");
}

static void pem_checks(void)
{
    setup();
    CHECK_EQ_INT(tls_pem_check(srv_cert, strlen(srv_cert), 0), 1);
    CHECK_EQ_INT(tls_pem_check(srv_key, strlen(srv_key), 1), 1);
    char two[8192];
    snprintf(two, sizeof two, "%s%s", srv_cert, cli_cert);
    CHECK_EQ_INT(tls_pem_check(two, strlen(two), 2), 2);
    CHECK_EQ_INT(tls_pem_check("garbage", 7, 0), -1);
    CHECK_EQ_INT(tls_pem_check(srv_cert, strlen(srv_cert), 1), -1);
}

static void stat_names(void)
{
    CHECK_EQ_STR(ssl_stat_schema.defs[SSL_ST_FAIL_VERIFY_SAN].name, "fail_verify_san");
    CHECK_EQ_STR(ssl_stat_schema.defs[SSL_ST_TLS13].name, "versions.TLSv1.3");
    CHECK_EQ_STR(ssl_stat_schema.defs[SSL_ST_NO_CERTIFICATE].name, "no_certificate");
}

static void cleanup(void)
{
    free(srv_cert);
    free(srv_key);
    free(cli_cert);
    free(cli_key);
}

TEST_MAIN(TEST(config_errors), TEST(handshake_and_io), TEST(ticket_keys), TEST(pins_and_sni), TEST(crl_revocation), TEST(sni_certificate_selection), TEST(secret_updates), TEST(tls_inspector), TEST(http_inspector),
          TEST(server_name_matching), TEST(pem_checks), TEST(stat_names), TEST(cleanup))
