/* The connection's own x-forwarded-client-cert element, as Envoy's HttpConnectionManager writes
 * it for APPEND_FORWARD and SANITIZE_SET: By=<each local URI SAN>;Hash=<sha256 hex of the peer
 * certificate>, then the fields set_current_client_cert_details asks for, in Envoy's order
 * Cert="<url-encoded PEM>";Chain="<url-encoded PEM chain, leaf first>";Subject="<RFC 2253>";
 * URI=<each peer URI SAN, or empty>;DNS=<each peer DNS SAN>. Built once per TLS connection (it
 * never changes while the connection lives), so requests only copy it. */
#ifndef WEFT_NET_XFCC_H
#define WEFT_NET_XFCC_H

#include "net/transport.h"

/* HttpConnectionManager.ForwardClientCertDetails (same numbers). */
enum xfcc_mode { XFCC_SANITIZE, XFCC_FORWARD_ONLY, XFCC_APPEND_FORWARD, XFCC_SANITIZE_SET, XFCC_ALWAYS_FORWARD_ONLY };

/* SetCurrentClientCertDetails, one bit each. */
enum { XFCC_CERT = 1, XFCC_CHAIN = 2, XFCC_SUBJECT = 4, XFCC_URI = 8, XFCC_DNS = 16 };

/* The element for t's peer (details: XFCC_* bits), malloc'd, or NULL when t is not TLS, the peer
 * sent no certificate, or memory ran out. */
char *xfcc_element(const struct transport *t, unsigned details);

#endif
