#!/usr/bin/python3
"""Downstream TLS: termination in front of a plaintext upstream (HTTP and tcp_proxy), mTLS with
SPIFFE SAN matching, ALPN, session resumption, and every rejection with its ssl.* stat and its
listener access log entry (%DOWNSTREAM_TRANSPORT_FAILURE_REASON%)."""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from tlsutil import *  # noqa

pki = Pki()
other = Pki("Untrusted CA")
srv_crt, srv_key = pki.leaf("localhost", ["DNS:localhost"])
cli_crt, cli_key = pki.leaf("reviews", ["URI:" + SPIFFE + "reviews"])
bad_crt, bad_key = pki.leaf("evil", ["URI:" + SPIFFE + "evil"])
exp_crt, exp_key = pki.leaf("old", ["URI:" + SPIFFE + "reviews"], days=-1)
unt_crt, unt_key = other.leaf("stranger", ["URI:" + SPIFFE + "reviews"])

be = backend("be")
admin, port, mport, tport, aport, iport, hport = (free_port() for _ in range(7))
pem = lambda path: json.dumps(open(path).read())
inline_tls = """      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates: [{certificate_chain: {inline_string: %s}, private_key: {inline_string: %s}}]
""" % (pem(srv_crt), pem(srv_key))
log = pki.path("access.log")
llog = pki.path("listener.log")
fmt = "HTTP %RESPONSE_CODE% sni=%REQUESTED_SERVER_NAME% san=%DOWNSTREAM_PEER_URI_SAN% ver=%DOWNSTREAM_TLS_VERSION%"
lfmt = "FAIL %DOWNSTREAM_REMOTE_ADDRESS% reason=%DOWNSTREAM_TRANSPORT_FAILURE_REASON% flags=%RESPONSE_FLAGS%"
listeners = (
    listener("tls", port, [hcm_chain("tls", "be", tls=downstream_tls(srv_crt, srv_key, alpn=["h2", "http/1.1"]),
                                     access_log=file_log(log, fmt))], access_log=file_log(llog, lfmt)) +
    listener("mtls", mport, [hcm_chain("mtls", "be", access_log=file_log(log, fmt), tls=downstream_tls(
        srv_crt, srv_key, ca=pki.ca, require_client=True,
        sans=[("URI", "{exact: %s}" % (SPIFFE + "reviews")), ("URI", "{safe_regex: {regex: '.*/sa/ratings'}}")]))],
        access_log=file_log(llog, lfmt)) +
    listener("tcp", tport, [tcp_chain("tcptls", "be", tls=downstream_tls(srv_crt, srv_key))]) +
    listener("alpn", aport, [tcp_chain("alpn", "be", tls=downstream_tls(srv_crt, srv_key, alpn=["h2", "http/1.1"]))]) +
    listener("inline", iport, [hcm_chain("inline", "be", tls=inline_tls)]) +
    listener("slow", hport, [hcm_chain("slow", "be", tls=downstream_tls(srv_crt, srv_key) +
                                       "      transport_socket_connect_timeout: 0.3s\n")],
             access_log=file_log(llog, lfmt)))
proxy = Proxy(bootstrap(admin, listeners, static_cluster("be", [be])), admin)
lstat = "listener.127.0.0.1_%d.ssl." % port
mstat = "listener.127.0.0.1_%d.ssl." % mport


def wait_log(path, needle, timeout=3.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                text = f.read()
            if needle in text:
                return text
        time.sleep(0.05)
    return open(path).read() if os.path.exists(path) else ""


# 1. Termination: https to the proxy, plaintext to the backend, x-forwarded-proto: https.
st, h, body = curl("https://localhost:%d/hello" % port, "--cacert", pki.ca, "--resolve", "localhost:%d:127.0.0.1" % port)
check("https request terminated and proxied", st == 200 and h.get("x-backend") == "be", (st, body[:200]))
echo = json.loads(body) if st == 200 else {}
check("backend sees x-forwarded-proto: https", echo.get("headers", {}).get("x-forwarded-proto") == "https", echo)
check("backend connection was plaintext", echo.get("tls") is None, echo.get("tls"))
text = wait_log(log, "HTTP 200")
check("access log: SNI and TLS version", "sni=localhost" in text and "ver=TLSv1.3" in text, text)
s = proxy.stats()
check("ssl.handshake and versions.TLSv1.3 counted", s.get(lstat + "handshake", 0) >= 1 and
      s.get(lstat + "versions.TLSv1.3", 0) >= 1 and s.get(lstat + "no_certificate", 0) >= 1, {k: v for k, v in s.items() if ".ssl." in k})

# alpn_protocols [h2, http/1.1] on a codec_type AUTO connection manager: ALPN picks h2 when the
# client offers it, http/1.1 when that is all it offers.
rc, out = s_client(port, "-alpn", "h2,http/1.1", "-CAfile", pki.ca)
check("HCM chain (AUTO): ALPN h2 when offered first", "ALPN protocol: h2" in out, out[-400:])
rc, out = s_client(port, "-alpn", "http/1.1", "-CAfile", pki.ca)
check("HCM chain (AUTO): ALPN http/1.1 for an HTTP/1.1-only client", "ALPN protocol: http/1.1" in out, out[-400:])
st, _, _ = curl("https://localhost:%d/h2" % port, "--http2", "--cacert", pki.ca, "--resolve", "localhost:%d:127.0.0.1" % port)
check("curl --http2 over TLS (HTTP/2 by ALPN) gets its answer", st == 200)

# Keep-alive over TLS: several requests on one connection, with a body.
st, h, body = curl("https://localhost:%d/a" % port, "--cacert", pki.ca, "--resolve", "localhost:%d:127.0.0.1" % port,
                   "--next", "--cacert", pki.ca, "--resolve", "localhost:%d:127.0.0.1" % port, "-d", "x" * 100000,
                   "https://localhost:%d/b" % port)
check("keep-alive with a 100 KB body over TLS", st == 200 and '"body_len": 100000' in body, body[-200:])

# TLS 1.2 works too and is counted.
st, _, _ = curl("https://localhost:%d/v12" % port, "--cacert", pki.ca, "--resolve", "localhost:%d:127.0.0.1" % port,
                "--tlsv1.2", "--tls-max", "1.2")
check("TLS 1.2 request", st == 200)
check("versions.TLSv1.2 counted", proxy.stats().get(lstat + "versions.TLSv1.2", 0) >= 1)

# 2. mTLS with a SPIFFE identity.
st, h, body = curl("https://localhost:%d/m" % mport, "--cacert", pki.ca, "--cert", cli_crt, "--key", cli_key,
                   "--resolve", "localhost:%d:127.0.0.1" % mport)
check("mTLS with the right SPIFFE SAN", st == 200, (st, body[:200]))
text = wait_log(log, "san=" + SPIFFE + "reviews")
check("access log: %DOWNSTREAM_PEER_URI_SAN%", "san=" + SPIFFE + "reviews" in text, text)


def rejected(name, stat, *args, needle="TLS_error"):
    before = proxy.stats().get(mstat + stat, 0)
    before_err = proxy.stats().get(mstat + "connection_error", 0)
    st, _, err = curl("https://localhost:%d/m" % mport, "--cacert", pki.ca, "--resolve",
                      "localhost:%d:127.0.0.1" % mport, *args)
    check(name + ": rejected", st == 0, (st, err[:200]))
    deadline = time.time() + 3
    while time.time() < deadline and proxy.stats().get(mstat + stat, 0) <= before:
        time.sleep(0.05)
    s = proxy.stats()
    check(name + ": ssl.%s counted" % stat, s.get(mstat + stat, 0) == before + 1 and
          s.get(mstat + "connection_error", 0) == before_err + 1, {k: v for k, v in s.items() if k.startswith(mstat)})


rejected("no client certificate", "fail_verify_no_cert")
rejected("wrong SAN", "fail_verify_san", "--cert", bad_crt, "--key", bad_key)
rejected("expired certificate", "fail_verify_error", "--cert", exp_crt, "--key", exp_key)
rejected("untrusted CA", "fail_verify_error", "--cert", unt_crt, "--key", unt_key)
text = wait_log(llog, "SAN matcher")
check("listener access log: SAN failure reason", "verify cert failed: SAN matcher" in text, text)
check("listener access log: expired reason", "certificate has expired" in text, text)
check("listener access log: missing certificate reason", "peer did not return a certificate" in text, text)

# A plaintext client on a TLS-only chain.
before = proxy.stats().get(lstat + "connection_error", 0)
try:
    r = raw(port, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", timeout=3)
except ConnectionResetError:
    r = b""
check("plaintext on a TLS chain gets no HTTP answer", b"HTTP/1.1" not in r, r[:100])
deadline = time.time() + 3
while time.time() < deadline and proxy.stats().get(lstat + "connection_error", 0) == before:
    time.sleep(0.05)
check("plaintext on a TLS chain: ssl.connection_error", proxy.stats().get(lstat + "connection_error", 0) == before + 1)
text = wait_log(llog, "http request")
check("listener access log: plaintext reason", "reason=TLS_error:|" in text and "http request" in text, text)
check("proxy still serves after rejections", curl("https://localhost:%d/" % port, "--cacert", pki.ca, "--resolve",
                                                  "localhost:%d:127.0.0.1" % port)[0] == 200)

# 3. tcp_proxy behind TLS termination.
rc, out = s_client(tport, "-servername", "localhost", "-CAfile", pki.ca, "-quiet",
                   data=b"GET /tcp HTTP/1.0\r\nhost: x\r\n\r\n")
check("tcp_proxy behind TLS termination", '"path": "/tcp"' in out, out[-300:])

# 4. ALPN: the server's first protocol the client offers.
rc, out = s_client(aport, "-alpn", "h2,http/1.1", "-CAfile", pki.ca, "-servername", "localhost")
check("ALPN h2 negotiated", "ALPN protocol: h2" in out, out[-500:])
rc, out = s_client(aport, "-alpn", "http/1.1", "-CAfile", pki.ca)
check("ALPN http/1.1 negotiated", "ALPN protocol: http/1.1" in out, out[-500:])
rc, out = s_client(aport, "-alpn", "spdy/1", "-CAfile", pki.ca)
check("no common ALPN: handshake still succeeds without one", "No ALPN negotiated" in out and "Verify return code: 0" in out, out[-500:])

# 5. Session resumption (TLS 1.3 tickets and TLS 1.2 session ids).
sess = pki.path("sess.pem")
before = proxy.stats().get(lstat + "session_reused", 0)
s_client(port, "-CAfile", pki.ca, "-sess_out", sess, data=b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
rc, out = s_client(port, "-CAfile", pki.ca, "-sess_in", sess, data=b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
check("TLS 1.3 session resumed", "Reused, TLSv1.3" in out, out[-800:])
rc, out = s_client(port, "-CAfile", pki.ca, "-tls1_2", "-reconnect")
check("TLS 1.2 session resumed (-reconnect)", out.count("Reused, TLSv1.2") >= 1, out[-800:])
check("ssl.session_reused counted", proxy.stats().get(lstat + "session_reused", 0) >= before + 2)

# A client that never finishes its handshake is closed after transport_socket_connect_timeout.
hstat = "listener.127.0.0.1_%d.ssl." % hport
t0 = time.time()
sock = socket.create_connection(("127.0.0.1", hport), timeout=5)
sock.sendall(b"\x16\x03\x01")
try:
    closed = sock.recv(10) == b""
except ConnectionResetError:
    closed = True
sock.close()
check("stalled handshake closed after its timeout", closed and 0.2 < time.time() - t0 < 3, time.time() - t0)
check("stalled handshake: ssl.connection_error", proxy.stats().get(hstat + "connection_error", 0) == 1)
check("stalled handshake: listener access log", "handshake timeout" in wait_log(llog, "handshake timeout"))

# Inline certificates; the private key never shows in /config_dump.
st, _, _ = curl("https://localhost:%d/" % iport, "--cacert", pki.ca, "--resolve", "localhost:%d:127.0.0.1" % iport)
check("inline_string certificate and key", st == 200)
_, dump = proxy.admin("/config_dump")
check("config_dump redacts inline private keys", "PRIVATE KEY" not in dump and "[redacted]" in dump and
      "BEGIN CERTIFICATE" in dump, dump[:300])

check("proxy exits cleanly", proxy.stop() == 0, proxy.output()[-2000:])
finish()
