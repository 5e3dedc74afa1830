/* See xfcc.h. */
#include "net/xfcc.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* A growing string; on allocation failure it stays failed and xfcc_element returns NULL. */
struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void sb_put(struct sbuf *s, const char *p, size_t n)
{
    if (s->oom)
        return;
    if (s->n + n + 1 > s->cap) {
        size_t cap = (s->n + n + 1) * 2;
        char *q = realloc(s->p, cap);
        if (!q) {
            s->oom = true;
            return;
        }
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = '\0';
}

static void sb_str(struct sbuf *s, const char *p) { sb_put(s, p, strlen(p)); }

/* Starts a new key=value pair: ';' between pairs. */
static void sb_key(struct sbuf *s, const char *key)
{
    if (s->n)
        sb_put(s, ";", 1);
    sb_str(s, key);
}

/* PEM of cert, percent-encoded: everything but letters, digits and '-' becomes %XX (for PEM this
 * is exactly Envoy's set: newline, space, '+', '/', '='). */
static void sb_pem(struct sbuf *s, X509 *cert)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_X509(b, cert) != 1) {
        BIO_free(b);
        return;
    }
    char *p;
    long n = BIO_get_mem_data(b, &p);
    static const char hex[] = "0123456789ABCDEF";
    for (long i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
            sb_put(s, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_put(s, e, 3);
        }
    }
    BIO_free(b);
}

/* One key=<SAN> pair per SAN of the given type (GEN_URI, GEN_DNS); returns how many. */
static int sb_sans(struct sbuf *s, X509 *cert, int type, const char *key)
{
    GENERAL_NAMES *names = cert ? X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL) : NULL;
    int count = 0;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type != type)
            continue;
        sb_key(s, key);
        sb_put(s, (const char *)ASN1_STRING_get0_data(g->d.ia5), (size_t)ASN1_STRING_length(g->d.ia5));
        count++;
    }
    GENERAL_NAMES_free(names);
    return count;
}

static void sb_subject(struct sbuf *s, X509 *cert)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return;
    X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    sb_put(s, p, (size_t)n);
    BIO_free(b);
}

char *xfcc_element(const struct transport *t, unsigned details)
{
    X509 *peer = t->ssl ? SSL_get0_peer_certificate(t->ssl) : NULL;
    if (!peer)
        return NULL;
    struct sbuf s = {0};
    sb_sans(&s, SSL_get_certificate(t->ssl), GEN_URI, "By=");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdn = 0;
    if (X509_digest(peer, EVP_sha256(), md, &mdn) == 1) {
        static const char hex[] = "0123456789abcdef";
        sb_key(&s, "Hash=");
        for (unsigned i = 0; i < mdn; i++) {
            char h[2] = {hex[md[i] >> 4], hex[md[i] & 15]};
            sb_put(&s, h, 2);
        }
    }
    if (details & XFCC_CERT) {
        sb_key(&s, "Cert=\"");
        sb_pem(&s, peer);
        sb_put(&s, "\"", 1);
    }
    if (details & XFCC_CHAIN) {
        /* A server's SSL_get_peer_cert_chain leaves the leaf out; Envoy's Chain starts with it. */
        sb_key(&s, "Chain=\"");
        sb_pem(&s, peer);
        STACK_OF(X509) *chain = SSL_get_peer_cert_chain(t->ssl);
        for (int i = 0; chain && i < sk_X509_num(chain); i++) {
            X509 *c = sk_X509_value(chain, i);
            if (X509_cmp(c, peer) != 0)
                sb_pem(&s, c);
        }
        sb_put(&s, "\"", 1);
    }
    if (details & XFCC_SUBJECT) {
        sb_key(&s, "Subject=\""); /* present even when the subject is empty, as Envoy */
        sb_subject(&s, peer);
        sb_put(&s, "\"", 1);
    }
    if ((details & XFCC_URI) && sb_sans(&s, peer, GEN_URI, "URI=") == 0)
        sb_key(&s, "URI="); /* Envoy keeps the key when there is no URI SAN */
    if (details & XFCC_DNS)
        sb_sans(&s, peer, GEN_DNS, "DNS=");
    if (s.oom || !s.p) {
        free(s.p);
        return NULL;
    }
    return s.p;
}
