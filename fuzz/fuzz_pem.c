/* libFuzzer target for certificate, key and CA loading (src/net/tls.c) from bytes, through the
 * same code the configuration uses: the input is a certificate chain, a NUL, a private key, a
 * NUL, a CA bundle. Each part goes through tls_pem_check, and the whole through a
 * DownstreamTlsContext with inline_bytes DataSources (tls_provider_new builds an SSL_CTX). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envoy/extensions/transport_sockets/tls/v3/tls.pb-c.h"
#include "net/tls.h"

typedef Envoy__Config__Core__V3__DataSource DataSource;

static void inline_bytes(DataSource *ds, const uint8_t *p, size_t n)
{
    envoy__config__core__v3__data_source__init(ds);
    ds->specifier_case = ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_BYTES;
    ds->inline_bytes.data = (uint8_t *)p;
    ds->inline_bytes.len = n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *parts[3] = {data, NULL, NULL};
    size_t lens[3] = {size, 0, 0};
    int np = 1;
    for (size_t i = 0; i < size && np < 3; i++) {
        if (data[i] == 0) {
            lens[np - 1] = (size_t)(data + i - parts[np - 1]);
            parts[np] = data + i + 1;
            lens[np] = size - i - 1;
            np++;
        }
    }
    for (int i = 0; i < np; i++)
        tls_pem_check(parts[i], lens[i], i);
    if (np < 2)
        return 0;
    DataSource chain, key, ca;
    inline_bytes(&chain, parts[0], lens[0]);
    inline_bytes(&key, parts[1], lens[1]);
    Envoy__Extensions__TransportSockets__Tls__V3__TlsCertificate cert;
    envoy__extensions__transport_sockets__tls__v3__tls_certificate__init(&cert);
    cert.certificate_chain = &chain;
    cert.private_key = &key;
    Envoy__Extensions__TransportSockets__Tls__V3__TlsCertificate *certs[1] = {&cert};
    Envoy__Extensions__TransportSockets__Tls__V3__CertificateValidationContext vc;
    envoy__extensions__transport_sockets__tls__v3__certificate_validation_context__init(&vc);
    Envoy__Extensions__TransportSockets__Tls__V3__CommonTlsContext common;
    envoy__extensions__transport_sockets__tls__v3__common_tls_context__init(&common);
    common.n_tls_certificates = 1;
    common.tls_certificates = certs;
    if (np == 3) {
        inline_bytes(&ca, parts[2], lens[2]);
        vc.trusted_ca = &ca;
        common.validation_context_type_case =
            ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__COMMON_TLS_CONTEXT__VALIDATION_CONTEXT_TYPE_VALIDATION_CONTEXT;
        common.validation_context = &vc;
    }
    Envoy__Extensions__TransportSockets__Tls__V3__DownstreamTlsContext d;
    envoy__extensions__transport_sockets__tls__v3__downstream_tls_context__init(&d);
    d.common_tls_context = &common;
    char err[512];
    struct tls_provider *p = tls_provider_new(&d.base, true, NULL, NULL, err, sizeof err);
    tls_provider_free(p);
    tls_poll(0, true);
    return 0;
}
