#!/usr/bin/python3
"""HTTP/2 over TLS: the HTTP connection manager picks its codec from the protocol ALPN
negotiated (h2 or http/1.1) on a TLS listener, with and without client certificates, and gRPC
runs over it (python3-grpcio with TLS credentials, h2 to an h2c upstream)."""
import os
import subprocess
import sys

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from tlsutil import *  # noqa
import weft

pki = Pki()
srv_crt, srv_key = pki.leaf("localhost", ["DNS:localhost"])
cli_crt, cli_key = pki.leaf("reviews", ["URI:" + SPIFFE + "reviews"])

be = backend("be")
gport = free_port()
gp = subprocess.Popen([os.path.join(HERE, "grpc_backend.py"), str(gport)], stdout=subprocess.PIPE,
                      stderr=subprocess.DEVNULL)
weft._procs.append(gp)
gp.stdout.readline()
wait_port(gport)

admin, port, mport, gtls = (free_port() for _ in range(4))
h2opts = """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}"""
alpn = ["h2", "http/1.1"]
listeners = (
    listener("tls", port, [hcm_chain("tlsh2", "be", tls=downstream_tls(srv_crt, srv_key, alpn=alpn))]) +
    listener("mtls", mport, [hcm_chain("mtlsh2", "be", tls=downstream_tls(
        srv_crt, srv_key, alpn=alpn, ca=pki.ca, require_client=True,
        sans=[("URI", "{exact: %s}" % (SPIFFE + "reviews"))]))]) +
    listener("grpc", gtls, [hcm_chain("grpctls", "grpc", tls=downstream_tls(srv_crt, srv_key, alpn=["h2"]))]))
clusters = static_cluster("be", [be]) + static_cluster("grpc", [gport], extra=h2opts)
proxy = Proxy(bootstrap(admin, listeners, clusters), admin)


def curl_version(url, *args):
    """(HTTP version curl used, status, body) for one request through the proxy."""
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", pki.ca, "-w", "\n%{http_version} %{http_code}",
                        *args, url], capture_output=True, timeout=15)
    out = r.stdout.decode(errors="replace")
    body, _, tail = out.rpartition("\n")
    parts = tail.split()
    return (parts[0] if parts else "", parts[1] if len(parts) > 1 else "", body + r.stderr.decode(errors="replace"))


ver, code, body = curl_version("https://localhost:%d/h2" % port, "--http2")
check("ALPN h2: curl speaks HTTP/2 over TLS and reaches the backend", ver == "2" and code == "200" and '"/h2"' in body,
      (ver, code, body[:200]))
ver, code, body = curl_version("https://localhost:%d/h1" % port, "--http1.1")
check("ALPN http/1.1 on the same listener: HTTP/1.1", ver == "1.1" and code == "200" and '"/h1"' in body,
      (ver, code, body[:200]))
r = subprocess.run(["nghttp", "-n", "-s", "https://localhost:%d/nghttp" % port], capture_output=True, timeout=15,
                   env=dict(os.environ, SSL_CERT_FILE=pki.ca))
check("nghttp (h2 by ALPN) gets its response", r.returncode == 0, r.stdout.decode() + r.stderr.decode())
ver, code, body = curl_version("https://localhost:%d/m" % mport, "--http2", "--cert", cli_crt, "--key", cli_key)
check("mTLS with a SPIFFE SAN, then HTTP/2 by ALPN", ver == "2" and code == "200", (ver, code, body[:200]))
ver, code, body = curl_version("https://localhost:%d/m" % mport, "--http2")
check("mTLS listener without a client certificate: no response", code in ("", "000"), (ver, code))

creds = grpc.ssl_channel_credentials(root_certificates=open(pki.ca, "rb").read())
ch = grpc.secure_channel("localhost:%d" % gtls, creds)
r = ch.unary_unary("/test.Echo/Unary")(b"tls", timeout=10)
check("gRPC over TLS (ALPN h2) to an h2c upstream", r == b"tls!", r)
r = list(ch.stream_stream("/test.Echo/Bidi")(iter([b"a", b"bb"]), timeout=10))
check("bidirectional gRPC streaming over TLS", r == [b"A", b"BB"], r)
ch.close()

stats = proxy.stats()
check("HTTP/2 connections counted by codec", stats.get("http.tlsh2.downstream_cx_http2_total", 0) >= 2
      and stats.get("http.tlsh2.downstream_cx_http1_total", 0) >= 1,
      {k: v for k, v in stats.items() if k.startswith("http.tlsh2.downstream_cx_http")})
check("gRPC listener: HTTP/2 requests", stats.get("http.grpctls.downstream_rq_http2_total", 0) >= 2,
      stats.get("http.grpctls.downstream_rq_http2_total"))
check("ssl handshakes counted", stats.get("listener.127.0.0.1_%d.ssl.handshake" % port, 0) >= 3,
      stats.get("listener.127.0.0.1_%d.ssl.handshake" % port))
check("proxy exits cleanly", proxy.stop() == 0)
finish()
