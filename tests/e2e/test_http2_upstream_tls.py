#!/usr/bin/python3
"""HTTP/2 to upstreams over TLS, and auto_config (ALPN decides): an h1 client to an explicit
HTTP/2 cluster with TLS (ALPN "h2" offered by default), trailers; mTLS with a SPIFFE client
certificate and server SAN verification; auto_config picking h2 against an h2 server and
HTTP/1.1 against an HTTP/1.1-only TLS server; gRPC (python3-grpcio) through h2c to a TLS gRPC
server; a TLS failure to an h2 upstream (503 UF, the transport failure reason, ssl stats); many
concurrent requests multiplexed over one TLS connection per worker."""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from tlsutil import *  # noqa
import weft

pki = Pki()
be_crt, be_key = pki.leaf("backend", ["DNS:backend.mesh.local", "URI:" + SPIFFE + "backend"])
px_crt, px_key = pki.leaf("proxy", ["URI:" + SPIFFE + "proxy"])


def start(script, args, cert, key, ca=None):
    env = dict(os.environ, WEFT_TLS_CERT=cert, WEFT_TLS_KEY=key)
    if ca:
        env["WEFT_TLS_CA"] = ca
    port = free_port()
    p = subprocess.Popen([os.path.join(HERE, script), str(port)] + args, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    weft._procs.append(p)
    p.stdout.readline()
    wait_port(port)
    return port


h2tls = start("h2_backend.py", ["h2tls"], be_crt, be_key)
h2mtls = start("h2_backend.py", ["h2mtls"], be_crt, be_key, ca=pki.ca)
grpc_tls = start("grpc_backend.py", [], be_crt, be_key)
h1only = tls_backend("h1only", be_crt, be_key, alpn="http/1.1")
# A port that takes TCP connections (the backlog) and never speaks TLS: handshake timeout.
import socket  # noqa: E402
mute = socket.socket()
mute.bind(("127.0.0.1", 0))
mute.listen(16)
mute_port = mute.getsockname()[1]

admin, port = free_port(), free_port()
log = pki.path("access.log")


def hpo(body):
    return """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        %s
""" % body


H2 = hpo("explicit_http_config: {http2_protocol_options: {}}")
AUTO = hpo("auto_config: {}")
SAN = [("URI", "{exact: %s}" % (SPIFFE + "backend"))]
routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: ['
          '{match: {prefix: "/mtls"}, route: {cluster: mtls}},'
          '{match: {prefix: "/autoh2"}, route: {cluster: autoh2}},'
          '{match: {prefix: "/autoh1"}, route: {cluster: autoh1}},'
          '{match: {prefix: "/firsth1"}, route: {cluster: firsth1}},'
          '{match: {prefix: "/bad"}, route: {cluster: bad}},'
          '{match: {prefix: "/mute"}, route: {cluster: mute}},'
          '{match: {prefix: "/mux"}, route: {cluster: mux}},'
          '{match: {prefix: "/", grpc: {}}, route: {cluster: grpc, timeout: 30s}},'
          '{match: {prefix: "/"}, route: {cluster: h2}}]}]')
access = ('access_log: [{name: envoy.access_loggers.file, typed_config: {"@type": '
          'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: %s, '
          'log_format: {text_format_source: {inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_FLAGS%% '
          'reason=%%UPSTREAM_TRANSPORT_FAILURE_REASON%%\\n"}}}}]' % log)
clusters = (static_cluster("h2", [h2tls], extra=H2 + upstream_tls(ca=pki.ca, sni="backend.mesh.local")) +
            static_cluster("mtls", [h2mtls], extra=H2 + upstream_tls(ca=pki.ca, cert=px_crt, key=px_key,
                                                                     sni="backend.mesh.local", sans=SAN)) +
            static_cluster("autoh2", [h2tls], extra=AUTO + upstream_tls(ca=pki.ca, sni="backend.mesh.local")) +
            static_cluster("autoh1", [h1only], extra=AUTO + upstream_tls(ca=pki.ca, sni="backend.mesh.local")) +
            static_cluster("firsth1", [h1only], extra=AUTO + upstream_tls(ca=pki.ca)) +
            static_cluster("bad", [h2tls], extra=H2 + upstream_tls(
                ca=pki.ca, sans=[("URI", "{exact: %s}" % (SPIFFE + "someone-else"))])) +
            static_cluster("mute", [mute_port], extra=H2 + upstream_tls(ca=pki.ca)) +
            static_cluster("mux", [h2tls], extra=H2 + upstream_tls(ca=pki.ca)) +
            static_cluster("grpc", [grpc_tls], extra=H2 + upstream_tls(ca=pki.ca, sni="backend.mesh.local")))
proxy = Proxy(bootstrap(admin, http_listener("main", port, extra=access, route_config=routes), clusters), admin)
url = "http://127.0.0.1:%d" % port


def get(path, *args):
    r = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", *args, url + path], capture_output=True, timeout=20)
    out = r.stdout.decode(errors="replace")
    head, _, body = out.partition("\r\n\r\n")
    return head, body


def js(body):
    try:
        return json.loads(body[:body.rfind("}") + 1])  # curl -i prints response trailers after the body
    except ValueError:
        return {}


# 1. HTTP/1.1 client -> explicit HTTP/2 over TLS.
head, body = get("/a?q=1")
j = js(body)
check("h1 -> h2 over TLS: answered by the h2 backend", head.startswith("HTTP/1.1 200") and "x-backend: h2tls" in head,
      head)
check("h1 -> h2 over TLS: ALPN h2 offered by default, SNI sent",
      (j.get("tls") or {}).get("alpn") == "h2" and j["tls"].get("sni") == "backend.mesh.local", j.get("tls"))
check("h1 -> h2 over TLS: :path carried", j.get("path") == "/a?q=1", j)
head, body = get("/t", "-H", "x-trailer: 1", "-H", "te: trailers")
check("h1 -> h2 over TLS: the response with trailers arrives", head.startswith("HTTP/1.1 200"), head)
r = subprocess.run(["curl", "-sS", "--max-time", "10", "--http2-prior-knowledge", "-X", "POST",
                    "--data-binary", "@-", url + "/post"], input=b"z" * 100000, capture_output=True, timeout=20)
check("h2c -> h2 over TLS: a 100 KB request body arrives", js(r.stdout.decode()).get("body_len") == 100000,
      r.stdout[:200])

# Trailers through to an h2 client.
r = subprocess.run(["nghttp", "-v", "-H", "x-trailer: 1", url + "/tr"], capture_output=True, timeout=20)
out = r.stdout.decode(errors="replace")
check("h2 -> h2 over TLS: response trailers pass", "x-trailer-echo: yes" in out, out[-800:])

# 2. mTLS with a SPIFFE client certificate, server SAN verified.
head, body = get("/mtls")
j = js(body)
check("mTLS to the h2 upstream: answered", head.startswith("HTTP/1.1 200") and "x-backend: h2mtls" in head, head)
check("mTLS: the backend saw our SPIFFE certificate",
      (j.get("tls") or {}).get("peer_uri_san") == SPIFFE + "proxy", j.get("tls"))

# 3. auto_config: h2 against an h2 server, HTTP/1.1 against an HTTP/1.1-only one.
# First, several requests at once before anything is known: they wait on the first connection
# (offered as h2), then all move to HTTP/1.1 when the server selects it.
first = []


def first_one(i):
    try:
        with urllib.request.urlopen(url + "/firsth1/%d" % i, timeout=15) as r:
            first.append((r.status, js(r.read().decode()).get("name")))
    except Exception as e:  # noqa
        first.append(str(e))


ts = [threading.Thread(target=first_one, args=(i,)) for i in range(6)]
for t in ts:
    t.start()
for t in ts:
    t.join(20)
check("auto_config: 6 first requests at once all reach the HTTP/1.1-only server",
      first.count((200, "h1only")) == 6, first)
for i in range(3):
    head, body = get("/autoh2/%d" % i)
    j = js(body)
    check("auto_config -> h2 server (%d): HTTP/2 selected" % i,
          head.startswith("HTTP/1.1 200") and "x-backend: h2tls" in head and (j.get("tls") or {}).get("alpn") == "h2",
          head + body[:300])
for i in range(3):
    head, body = get("/autoh1/%d" % i, "-H", "x-chunked: 1" if i == 1 else "x-n: 1")
    j = js(body)
    check("auto_config -> HTTP/1.1-only server (%d): HTTP/1.1 selected" % i,
          head.startswith("HTTP/1.1 200") and j.get("name") == "h1only" and
          (j.get("tls") or {}).get("alpn") == "http/1.1", head + body[:300])
r = subprocess.run(["curl", "-sS", "--max-time", "10", "--http2-prior-knowledge", url + "/autoh1/h2client"],
                   capture_output=True, timeout=20)
check("auto_config -> HTTP/1.1-only server from an h2 client", js(r.stdout.decode()).get("name") == "h1only",
      r.stdout[:300])
st = proxy.stats()
check("auto_config stats: h2 connections to the h2 server, HTTP/1.1 ones to the other",
      st.get("cluster.autoh2.upstream_cx_http2_total", 0) >= 1 and st.get("cluster.autoh2.upstream_cx_http1_total", 0) == 0
      and st.get("cluster.autoh1.upstream_cx_http1_total", 0) >= 1 and
      st.get("cluster.autoh1.upstream_cx_http2_total", 0) == 0,
      {k: v for k, v in st.items() if ".auto" in k and "_http" in k})

# 4. gRPC: grpcio client -> h2c -> weft-proxy -> TLS gRPC server.
ch = grpc.insecure_channel("127.0.0.1:%d" % port)
try:
    r = ch.unary_unary("/test.Echo/Unary")(b"hello", timeout=10)
    check("gRPC unary to a TLS gRPC server", r == b"hello!", r)
    r = list(ch.stream_stream("/test.Echo/Bidi")(iter([b"x", b"yy"]), timeout=10))
    check("gRPC bidi streaming to a TLS gRPC server", r == [b"X", b"YY"], r)
    try:
        ch.unary_unary("/test.Echo/Fail")(b"", timeout=10)
        check("gRPC status from the TLS server", False)
    except grpc.RpcError as e:
        check("gRPC status from the TLS server", e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "nope",
              (e.code(), e.details()))
except grpc.RpcError as e:
    check("gRPC to a TLS gRPC server", False, (e.code(), e.details()))
ch.close()

# 5. A TLS failure to an h2 upstream: 503 UF, the reason in the access log, ssl stats.
head, body = get("/bad")
check("TLS failure to an h2 upstream: 503", head.startswith("HTTP/1.1 503"), head)
time.sleep(0.3)
lines = [l for l in open(log).read().splitlines() if l.startswith("/bad ")]
check("TLS failure: UF and the transport failure reason in the access log",
      lines and " UF " in lines[-1] and "TLS_error" in lines[-1], lines)
st = proxy.stats()
check("TLS failure: cluster.bad.ssl.fail_verify_san counted", st.get("cluster.bad.ssl.fail_verify_san", 0) >= 1,
      {k: v for k, v in st.items() if k.startswith("cluster.bad.")})
check("TLS success: cluster.h2.ssl.handshake counted", st.get("cluster.h2.ssl.handshake", 0) >= 1,
      {k: v for k, v in st.items() if k.startswith("cluster.h2.ssl")})

# A TLS handshake that never ends: the uconn's connect_timeout (1 s) covers it.
t0 = time.time()
head, body = get("/mute")
took = time.time() - t0
check("TLS handshake timeout to an h2 upstream: 503 after connect_timeout",
      head.startswith("HTTP/1.1 503") and 0.8 < took < 5 and "connection timeout" in body, (head, body, took))
time.sleep(0.3)
lines = [l for l in open(log).read().splitlines() if l.startswith("/mute ")]
check("handshake timeout: UF and the reason in the access log",
      lines and " UF " in lines[-1] and "handshake timeout" in lines[-1], lines)
st = proxy.stats()
check("handshake timeout: upstream_cx_connect_timeout and ssl.connection_error counted",
      st.get("cluster.mute.upstream_cx_connect_timeout", 0) == 1 and st.get("cluster.mute.ssl.connection_error", 0) == 1,
      {k: v for k, v in st.items() if k.startswith("cluster.mute.")})

# 6. Many concurrent requests over one TLS connection per worker (--concurrency 2).
results = []


def one(i):
    try:
        req = urllib.request.Request(url + "/mux/%d" % i, headers={"x-delay-ms": "300"})
        with urllib.request.urlopen(req, timeout=15) as r:
            results.append(r.status)
    except Exception as e:  # noqa
        results.append(str(e))


threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
for t in threads:
    t.start()
for t in threads:
    t.join(20)
check("40 concurrent requests over TLS h2 all answered", results.count(200) == 40, results)
st = proxy.stats()
check("multiplexed: at most one TLS connection per worker", 1 <= st.get("cluster.mux.upstream_cx_total", 0) <= 2,
      st.get("cluster.mux.upstream_cx_total"))
check("multiplexed: upstream_rq_total counts every request", st.get("cluster.mux.upstream_rq_total", 0) == 40,
      st.get("cluster.mux.upstream_rq_total"))

proxy.stop()
finish()
