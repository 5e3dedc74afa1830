/* See xfcc.h. */
#include "net/xfcc.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* The element is assembled in an OpenSSL memory BIO (a growing buffer); "pairs" counts the
 * key=value pairs written so far, for the ';' between them. */
struct out {
    BIO *b;
    int pairs;
};

static void put(struct out *o, const char *p, size_t n) { BIO_write(o->b, p, (int)n); }

/* Starts a new key=value pair: ';' between pairs. */
static void key(struct out *o, const char *k)
{
    if (o->pairs++)
        put(o, ";", 1);
    put(o, k, strlen(k));
}

/* PEM of cert, percent-encoded: everything but letters, digits and '-' becomes %XX (for PEM this
 * is exactly Envoy's set: newline, space, '+', '/', '='). */
static void put_pem(struct out *o, X509 *cert)
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
            put(o, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            put(o, e, 3);
        }
    }
    BIO_free(b);
}

/* One key=<SAN> pair per SAN of the given type (GEN_URI, GEN_DNS); returns how many. */
static int put_sans(struct out *o, X509 *cert, int type, const char *k)
{
    GENERAL_NAMES *names = cert ? X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL) : NULL;
    int count = 0;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type != type)
            continue;
        key(o, k);
        put(o, (const char *)ASN1_STRING_get0_data(g->d.ia5), (size_t)ASN1_STRING_length(g->d.ia5));
        count++;
    }
    GENERAL_NAMES_free(names);
    return count;
}

char *xfcc_element(const struct transport *t, unsigned details)
{
    X509 *peer = t->ssl ? SSL_get0_peer_certificate(t->ssl) : NULL;
    struct out o = {.b = peer ? BIO_new(BIO_s_mem()) : NULL};
    if (!o.b)
        return NULL;
    put_sans(&o, SSL_get_certificate(t->ssl), GEN_URI, "By=");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdn = 0;
    if (X509_digest(peer, EVP_sha256(), md, &mdn) == 1) {
        static const char hex[] = "0123456789abcdef";
        key(&o, "Hash=");
        for (unsigned i = 0; i < mdn; i++) {
            char h[2] = {hex[md[i] >> 4], hex[md[i] & 15]};
            put(&o, h, 2);
        }
    }
    if (details & XFCC_CERT) {
        key(&o, "Cert=\"");
        put_pem(&o, peer);
        put(&o, "\"", 1);
    }
    if (details & XFCC_CHAIN) {
        /* A server's SSL_get_peer_cert_chain leaves the leaf out; Envoy's Chain starts with it. */
        key(&o, "Chain=\"");
        put_pem(&o, peer);
        STACK_OF(X509) *chain = SSL_get_peer_cert_chain(t->ssl);
        for (int i = 0; chain && i < sk_X509_num(chain); i++) {
            X509 *c = sk_X509_value(chain, i);
            if (X509_cmp(c, peer) != 0)
                put_pem(&o, c);
        }
        put(&o, "\"", 1);
    }
    if (details & XFCC_SUBJECT) {
        key(&o, "Subject=\""); /* present even when the subject is empty, as Envoy */
        X509_NAME_print_ex(o.b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
        put(&o, "\"", 1);
    }
    if ((details & XFCC_URI) && put_sans(&o, peer, GEN_URI, "URI=") == 0)
        key(&o, "URI="); /* Envoy keeps the key when there is no URI SAN */
    if (details & XFCC_DNS)
        put_sans(&o, peer, GEN_DNS, "DNS=");
    char *p;
    long n = BIO_get_mem_data(o.b, &p);
    char *r = n > 0 ? strndup(p, (size_t)n) : NULL;
    BIO_free(o.b);
    return r;
}
