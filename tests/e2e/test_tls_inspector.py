#!/usr/bin/python3
"""Listener filters and filter chain matching: Istio's PERMISSIVE mode (mTLS and plaintext on
one port, told apart by tls_inspector), TLS passthrough by SNI to tcp_proxy (exact names, then
the longest wildcard, then the chain without server_names), http_inspector's application
protocols (http/1.1, http/1.0, h2c), and a connection no chain matches."""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from tlsutil import *  # noqa

pki = Pki()
srv_crt, srv_key = pki.leaf("localhost", ["DNS:localhost"])
cli_crt, cli_key = pki.leaf("reviews", ["URI:" + SPIFFE + "reviews"])
a = tls_backend("a", *pki.leaf("a", ["DNS:a.example.com"]))
b = tls_backend("b", *pki.leaf("b", ["DNS:*.example.com"]))
c = tls_backend("c", *pki.leaf("c", ["DNS:*.b.example.com"]))
d = tls_backend("d", *pki.leaf("d", ["DNS:localhost"]))
plain = backend("plain")
h2 = backend("h2target")

admin, pport, sport, hport, nport, tport, cport = (free_port() for _ in range(7))
llog = pki.path("listener.log")
mtls = downstream_tls(srv_crt, srv_key, ca=pki.ca, require_client=True,
                      sans=[("URI", "{prefix: '%s'}" % SPIFFE)])
listeners = (
    listener("permissive", pport, [
        hcm_chain("mtls", "plain", match="{transport_protocol: tls}", tls=mtls),
        hcm_chain("plaintext", "plain", match="{transport_protocol: raw_buffer}"),
    ], listener_filters=[TLS_INSPECTOR]) +
    listener("sni", sport, [
        tcp_chain("to_a", "a", match='{server_names: ["a.example.com"]}'),
        tcp_chain("to_b", "b", match='{server_names: ["*.example.com"]}'),
        tcp_chain("to_c", "c", match='{server_names: ["*.b.example.com", "other.test"]}'),
        tcp_chain("to_d", "d"),
    ], listener_filters=[TLS_INSPECTOR]) +
    listener("alpn", hport, [
        tcp_chain("h2c", "h2target", match='{application_protocols: ["h2c"]}'),
        hcm_chain("h11", "plain", match='{application_protocols: ["http/1.1"]}'),
        hcm_chain("h10", "plain", match='{application_protocols: ["http/1.0"]}'),
    ], listener_filters=[HTTP_INSPECTOR]) +
    listener("nomatch", nport, [tcp_chain("only", "a", match='{server_names: ["only.example.com"]}')],
             listener_filters=[TLS_INSPECTOR],
             access_log=file_log(llog, "CONN %RESPONSE_FLAGS% sni=%REQUESTED_SERVER_NAME%")) +
    # A client that says nothing: closed after listener_filters_timeout ...
    listener("timeout", tport, [hcm_chain("t_plain", "plain")], listener_filters=[TLS_INSPECTOR, HTTP_INSPECTOR],
             extra="    listener_filters_timeout: 0.3s\n") +
    # ... or, with continue_on_listener_filters_timeout, matched as plaintext (server-first protocols).
    listener("cont", cport, [tcp_chain("server_first", "plain")], listener_filters=[TLS_INSPECTOR],
             extra="    listener_filters_timeout: 0.3s\n    continue_on_listener_filters_timeout: true\n"))
clusters = "".join(static_cluster(n, [p]) for n, p in
                   (("a", a), ("b", b), ("c", c), ("d", d), ("plain", plain), ("h2target", h2)))
proxy = Proxy(bootstrap(admin, listeners, clusters), admin)

# PERMISSIVE: plaintext and mTLS on the same port.
st, _, body = curl("http://127.0.0.1:%d/plain" % pport)
check("PERMISSIVE: plaintext request", st == 200, (st, body[:200]))
st, _, body = curl("https://localhost:%d/tls" % pport, "--cacert", pki.ca, "--cert", cli_crt, "--key", cli_key,
                   "--resolve", "localhost:%d:127.0.0.1" % pport)
check("PERMISSIVE: mTLS request", st == 200, (st, body[:200]))
echo = json.loads(body) if st == 200 else {}
check("PERMISSIVE: mTLS request marked https", echo.get("headers", {}).get("x-forwarded-proto") == "https")
st, _, _ = curl("https://localhost:%d/tls" % pport, "--cacert", pki.ca, "--resolve", "localhost:%d:127.0.0.1" % pport)
check("PERMISSIVE: TLS without a client certificate is refused", st == 0)
s = proxy.stats()
check("each request went to its chain", s.get("http.mtls.downstream_rq_total") == 1 and
      s.get("http.plaintext.downstream_rq_total") == 1, {k: v for k, v in s.items() if k.startswith("http.")})
check("tls_inspector stats", s.get("tls_inspector.tls_found", 0) >= 2 and s.get("tls_inspector.tls_not_found", 0) >= 1 and
      s.get("tls_inspector.sni_found", 0) >= 2, {k: v for k, v in s.items() if k.startswith("tls_inspector")})

# A client that sends its request in pieces (the inspector waits, without consuming).
sock = socket.create_connection(("127.0.0.1", pport), timeout=5)
sock.sendall(b"GE")
time.sleep(0.2)
sock.sendall(b"T /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
data = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
sock.close()
check("PERMISSIVE: a request in pieces", data.startswith(b"HTTP/1.1 200") and b'"/slow"' in data, data[:200])


# Passthrough by SNI: the backend terminates TLS, the proxy only reads the ClientHello.
def via_sni(name):
    st, _, body = curl("https://%s:%d/" % (name, sport), "--cacert", pki.ca, "--resolve", "%s:%d:127.0.0.1" % (name, sport))
    e = json.loads(body) if st == 200 else {}
    return e.get("name"), (e.get("tls") or {}).get("sni")


got = via_sni("a.example.com")
check("exact server name wins", got == ("a", "a.example.com"), got)
check("wildcard server name", via_sni("z.example.com") == ("b", "z.example.com"))
check("longest wildcard wins", via_sni("x.b.example.com") == ("c", "x.b.example.com"))
check("no matching name: the chain without server_names", via_sni("localhost") == ("d", "localhost"))
st, _, body = curl("https://127.0.0.1:%d/" % sport, "--cacert", pki.ca, "-k")
check("no SNI at all: the chain without server_names", st == 200 and '"name": "d"' in body, body[:200])
check("passthrough: tcp stats by chain", proxy.stats().get("tcp.to_a.downstream_cx_total") == 1)

# http_inspector: the application protocol from the first bytes.
r = raw(hport, b"GET /one HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
check("http_inspector: HTTP/1.1 chain", r.startswith(b"HTTP/1.1 200"), r[:100])
r = raw(hport, b"GET /zero HTTP/1.0\r\nhost: x\r\n\r\n")
check("http_inspector: HTTP/1.0 chain", r.startswith(b"HTTP/1.") and b" 200 " in r[:20], r[:100])
r = raw(hport, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", timeout=1)
s = proxy.stats()
check("http_inspector: h2c preface to its chain", s.get("tcp.h2c.downstream_cx_total") == 1 and
      s.get("http.h11.downstream_rq_total") == 1 and s.get("http.h10.downstream_rq_total") == 1,
      {k: v for k, v in s.items() if k.startswith(("tcp.", "http.h1"))})
check("http_inspector stats", s.get("http_inspector.http11_found") == 1 and s.get("http_inspector.http10_found") == 1 and
      s.get("http_inspector.http2_found") == 1, {k: v for k, v in s.items() if k.startswith("http_inspector")})

# A ClientHello that arrives in two pieces: the inspector waits for the rest, consumes nothing,
# and the handshake then runs on the whole of it.
import ssl  # noqa: E402
cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
cctx.load_verify_locations(pki.ca)
cctx.load_cert_chain(cli_crt, cli_key)
inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = cctx.wrap_bio(inb, outb, server_hostname="localhost")
try:
    obj.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outb.read()
sock = socket.create_connection(("127.0.0.1", pport), timeout=5)
sock.sendall(hello[:20])
time.sleep(0.3)
sock.sendall(hello[20:])
reply = sock.recv(65536)
check("a ClientHello in pieces gets a ServerHello", reply[:1] == b"\x16", reply[:10])
inb.write(reply)
for _ in range(20):
    try:
        obj.do_handshake()
        break
    except ssl.SSLWantReadError:
        data = outb.read()
        if data:
            sock.sendall(data)
        inb.write(sock.recv(65536))
data = outb.read()
if data:
    sock.sendall(data)
obj.write(b"GET /pieces HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
sock.sendall(outb.read())
resp = b""
deadline = time.time() + 5
while time.time() < deadline and b'"/pieces"' not in resp:
    chunk = sock.recv(65536)
    if not chunk:
        break
    inb.write(chunk)
    # One read returns at most one TLS record: take every record this chunk completed (the
    # head and the body may be separate records, and the server may close right after).
    while True:
        try:
            data = obj.read(65536)
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
        if not data:
            break
        resp += data
sock.close()
check("... and the request over it is answered", resp.startswith(b"HTTP/1.1 200") and b'"/pieces"' in resp, resp[:200])

# Listener filter timeout.
before = proxy.stats().get("listener.127.0.0.1_%d.downstream_pre_cx_timeout" % tport, 0)
t0 = time.time()
sock = socket.create_connection(("127.0.0.1", tport), timeout=5)
closed = sock.recv(10) == b""
sock.close()
check("silent client closed after listener_filters_timeout", closed and 0.2 < time.time() - t0 < 3, time.time() - t0)
check("downstream_pre_cx_timeout counted",
      proxy.stats().get("listener.127.0.0.1_%d.downstream_pre_cx_timeout" % tport, 0) == before + 1)
sock = socket.create_connection(("127.0.0.1", cport), timeout=5)
time.sleep(0.5)
sock.sendall(b"GET /late HTTP/1.0\r\n\r\n")
data = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
sock.close()
check("continue_on_listener_filters_timeout: matched as plaintext", b'"/late"' in data, data[:200])

# No chain matches this SNI: closed, counted and logged with the name.
rc, out = s_client(nport, "-servername", "nope.example.com")
check("unmatched SNI: no handshake", "BEGIN CERTIFICATE" not in out)
time.sleep(0.2)
check("no_filter_chain_match counted", proxy.stats().get("listener.127.0.0.1_%d.no_filter_chain_match" % nport) == 1)
text = open(llog).read() if os.path.exists(llog) else ""
check("listener access log: NFCF with the requested server name", "CONN NFCF sni=nope.example.com" in text, text)

check("proxy exits cleanly", proxy.stop() == 0, proxy.output()[-2000:])
finish()
