/* Which HTTP codec a downstream connection speaks. One function decides, from the HCM's
 * codec_type, the ALPN protocol a TLS handshake negotiated (if any) and the first bytes the
 * client sent, so that TLS (ALPN "h2") and plaintext (the HTTP/2 connection preface,
 * RFC 9113 3.4) go through the same door. */
#ifndef WEFT_PROXY_HTTP_CODEC_H
#define WEFT_PROXY_HTTP_CODEC_H

#include <stddef.h>

enum http_codec { HTTP_CODEC_NEED_MORE = 0, HTTP_CODEC_H1 = 1, HTTP_CODEC_H2 = 2 };

/* The client connection preface of HTTP/2. */
#define HTTP2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define HTTP2_PREFACE_LEN 24

/* codec_type: HttpConnectionManager.CodecType (AUTO 0, HTTP1 1, HTTP2 2). alpn: the
 * negotiated protocol or NULL (plaintext, or no ALPN). bytes[0..len): what the client sent so
 * far. Returns HTTP_CODEC_H2 for ALPN "h2", for codec_type HTTP2, or for AUTO when the bytes
 * start with the preface; HTTP_CODEC_H1 otherwise; HTTP_CODEC_NEED_MORE when AUTO has seen a
 * strict prefix of the preface and must wait for more bytes. */
enum http_codec http_codec_select(int codec_type, const char *alpn, const char *bytes, size_t len);

#endif
