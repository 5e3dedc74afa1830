#!/usr/bin/python3
"""Upstream TLS: plaintext clients through weft-proxy to TLS backends, for HTTP and tcp_proxy:
SNI, ALPN, the server's CA and SAN verified, a client certificate for mTLS, session reuse per
host, and failures with cluster.<name>.ssl.* stats and %UPSTREAM_TRANSPORT_FAILURE_REASON%."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from tlsutil import *  # noqa

pki = Pki()
other = Pki("Other CA")
be_crt, be_key = pki.leaf("backend", ["DNS:backend.mesh.local", "URI:" + SPIFFE + "backend"])
px_crt, px_key = pki.leaf("proxy", ["URI:" + SPIFFE + "proxy"])
fake_crt, fake_key = other.leaf("impostor", ["DNS:backend.mesh.local", "URI:" + SPIFFE + "backend"])

mtls_be = tls_backend("mtls-be", be_crt, be_key, ca=pki.ca, alpn="http/1.1")
fake_be = tls_backend("fake-be", fake_crt, fake_key)

admin, hport, tport, badport, sanport, dport = (free_port() for _ in range(6))
log = pki.path("access.log")
fmt = "UP %RESPONSE_CODE% %RESPONSE_FLAGS% reason=%UPSTREAM_TRANSPORT_FAILURE_REASON%"
# As Istio configures it: TLS 1.3 (Envoy's client default is at most TLS 1.2).
good = upstream_tls(ca=pki.ca, cert=px_crt, key=px_key, sni="backend.mesh.local", alpn=["http/1.1"],
                    sans=[("URI", "{exact: %s}" % (SPIFFE + "backend"))],
                    tls_params="{tls_minimum_protocol_version: TLSv1_2, tls_maximum_protocol_version: TLSv1_3}")
listeners = (listener("h", hport, [hcm_chain("h", "mtls", access_log=file_log(log, fmt))]) +
             listener("t", tport, [tcp_chain("t", "mtls")]) +
             listener("bad", badport, [hcm_chain("bad", "fake", access_log=file_log(log, fmt))]) +
             listener("san", sanport, [hcm_chain("san", "wrongsan", access_log=file_log(log, fmt))]) +
             listener("d", dport, [hcm_chain("d", "defaults")]))
clusters = (static_cluster("mtls", [mtls_be], extra=good + "    max_requests_per_connection: 1") +
            static_cluster("fake", [fake_be], extra=upstream_tls(ca=pki.ca, cert=px_crt, key=px_key)) +
            static_cluster("defaults", [mtls_be], extra=upstream_tls(ca=pki.ca, cert=px_crt, key=px_key) +
                           "    max_requests_per_connection: 1") +
            static_cluster("wrongsan", [mtls_be], extra=upstream_tls(
                ca=pki.ca, cert=px_crt, key=px_key, sans=[("DNS", "{exact: other.mesh.local}")])))
proxy = Proxy(bootstrap(admin, listeners, clusters), admin)

st, h, body = curl("http://127.0.0.1:%d/up" % hport)
echo = json.loads(body) if st == 200 else {}
tls = echo.get("tls") or {}
check("HTTP over mTLS to the backend", st == 200 and echo.get("name") == "mtls-be", (st, body[:300]))
check("backend saw the proxy's SPIFFE certificate", tls.get("peer_uri_san") == SPIFFE + "proxy", tls)
check("SNI sent", tls.get("sni") == "backend.mesh.local", tls)
check("ALPN http/1.1 negotiated upstream", tls.get("alpn") == "http/1.1", tls)
check("TLS 1.3 upstream", tls.get("version") == "TLSv1.3", tls)

# Session reuse: each request gets a new connection (max_requests_per_connection: 1).
for i in range(4):
    st, _, _ = curl("http://127.0.0.1:%d/again%d" % (hport, i))
s = proxy.stats()
check("four more requests", st == 200)
check("cluster.mtls.ssl.handshake counted", s.get("cluster.mtls.ssl.handshake", 0) >= 5, s)
check("upstream sessions resumed", s.get("cluster.mtls.ssl.session_reused", 0) >= 3,
      {k: v for k, v in s.items() if k.startswith("cluster.mtls.ssl")})

# Envoy's client defaults: TLS 1.2 at most. (TLS 1.2 resumption is tested in tests/unit/test_tls.c:
# this Python backend drops a session from its cache when it closes without close_notify.)
for i in range(3):
    st, _, body = curl("http://127.0.0.1:%d/defaults" % dport)
echo = json.loads(body) if st == 200 else {}
check("default upstream TLS version is TLS 1.2, as Envoy's", (echo.get("tls") or {}).get("version") == "TLSv1.2", body[:300])
check("TLS 1.2 counted", proxy.stats().get("cluster.defaults.ssl.versions.TLSv1.2", 0) == 3)

# tcp_proxy to the same TLS cluster.
r = raw(tport, b"GET /tcp HTTP/1.0\r\nhost: x\r\n\r\n")
check("tcp_proxy over mTLS upstream", b'"path": "/tcp"' in r and b'"peer_uri_san": "' + (SPIFFE + "proxy").encode() in r, r[-300:])

# A server whose certificate comes from another CA.
st, _, body = curl("http://127.0.0.1:%d/bad" % badport)
check("untrusted upstream: 503", st == 503, (st, body[:200]))
deadline = time.time() + 3
while time.time() < deadline and proxy.stats().get("cluster.fake.ssl.fail_verify_error", 0) == 0:
    time.sleep(0.05)
s = proxy.stats()
check("cluster.fake.ssl.fail_verify_error", s.get("cluster.fake.ssl.fail_verify_error", 0) == 1 and
      s.get("cluster.fake.ssl.connection_error", 0) == 1, {k: v for k, v in s.items() if k.startswith("cluster.fake")})

# The right CA but not the SAN we want.
st, _, _ = curl("http://127.0.0.1:%d/san" % sanport)
check("wrong upstream SAN: 503", st == 503)
deadline = time.time() + 3
while time.time() < deadline and proxy.stats().get("cluster.wrongsan.ssl.fail_verify_san", 0) == 0:
    time.sleep(0.05)
check("cluster.wrongsan.ssl.fail_verify_san", proxy.stats().get("cluster.wrongsan.ssl.fail_verify_san", 0) == 1)
deadline = time.time() + 3
text = ""
while time.time() < deadline and "SAN matcher" not in text:
    text = open(log).read() if os.path.exists(log) else ""
    time.sleep(0.05)
check("access log: %UPSTREAM_TRANSPORT_FAILURE_REASON%", "UP 503 UF reason=TLS_error:|" in text and
      "certificate verify failed" in text and "SAN matcher" in text, text)

check("proxy exits cleanly", proxy.stop() == 0, proxy.output()[-2000:])
finish()
