#!/usr/bin/python3
"""The HTTP/1.1 fast path and the codec-neutral router share one forwarding module
(src/proxy/forward.c): the cases where they used to differ answer the same over HTTP/1.1
(curl) and HTTP/2 (curl --http2-prior-knowledge), as Envoy does: a 201/3xx direct_response
carries location, grpc-timeout is capped by max_stream_duration.grpc_timeout_header_max (and
is what x-envoy-expected-rq-timeout-ms says), gRPC requests get trailers-only local replies."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from tlsutil import Pki, downstream_tls

be = backend("be")
admin, port = free_port(), free_port()
routes = """virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: {prefix: "/created"}
    direct_response: {status: 201, body: {inline_string: "made"}}
  - match: {prefix: "/found"}
    direct_response: {status: 302}
  - match: {prefix: "/plain"}
    direct_response: {status: 200, body: {inline_string: "plain"}}
  - match: {prefix: "/capped"}
    route: {cluster: be, timeout: 60s, max_stream_duration: {grpc_timeout_header_max: 0.3s}}
  - match: {prefix: "/uncapped"}
    route: {cluster: be, timeout: 60s, max_stream_duration: {grpc_timeout_header_max: 0s}}
  - match: {prefix: "/be"}
    route: {cluster: be, timeout: 7s}
"""
pki = Pki()
crt, key = pki.leaf("localhost", ["DNS:localhost"])
tport = free_port()
tls_routes = routes.replace('- match: {prefix: "/created"}',
                            '- match: {prefix: "/moved"}\n    redirect: {path_redirect: "/new"}\n  - match: {prefix: "/created"}')
listeners = (http_listener("main", port, route_config=routes) +
             http_listener("tls", tport, stat_prefix="tls", route_config=tls_routes) +
             downstream_tls(crt, key, alpn=["h2", "http/1.1"]))
proxy = Proxy(bootstrap(admin, listeners, static_cluster("be", [be])), admin)
base = "http://127.0.0.1:%d" % port
GRPC = ("-H", "content-type: application/grpc", "-H", "te: trailers", "--data-binary", "")

for name, opts in (("HTTP/1.1", ("--http1.1",)), ("HTTP/2", ("--http2-prior-knowledge",))):
    st, h, body = curl(base + "/created/x?y=1", *opts)
    check("%s: direct_response 201 carries location (the request URL)" % name,
          st == 201 and h.get("location") == "http://127.0.0.1:%d/created/x?y=1" % port and body == "made",
          (st, h, body))
    st, h, body = curl(base + "/found", *opts)
    check("%s: direct_response 302 carries location" % name,
          st == 302 and h.get("location") == "http://127.0.0.1:%d/found" % port, (st, h))
    st, h, body = curl(base + "/plain", *opts)
    check("%s: direct_response 200 has no location" % name, st == 200 and "location" not in h and body == "plain",
          (st, h, body))

    # The timeout the upstream is told about is the effective one.
    st, h, body = curl(base + "/be", *opts)
    check("%s: x-envoy-expected-rq-timeout-ms is the route timeout" % name,
          st == 200 and json.loads(body)["headers"].get("x-envoy-expected-rq-timeout-ms") == "7000", (st, body))
    st, h, body = curl(base + "/capped", *opts, *GRPC, "-H", "grpc-timeout: 5S")
    check("%s: grpc-timeout 5S capped to 300 ms (expected-rq-timeout header)" % name,
          st == 200 and json.loads(body)["headers"].get("x-envoy-expected-rq-timeout-ms") == "300", (st, body))
    st, h, body = curl(base + "/uncapped", *opts, *GRPC, "-H", "grpc-timeout: 2S")
    check("%s: grpc-timeout 2S taken as is without a cap" % name,
          st == 200 and json.loads(body)["headers"].get("x-envoy-expected-rq-timeout-ms") == "2000", (st, body))
    st, h, body = curl(base + "/be", *opts, *GRPC, "-H", "grpc-timeout: 2S")
    check("%s: grpc-timeout ignored where the route does not allow it" % name,
          st == 200 and json.loads(body)["headers"].get("x-envoy-expected-rq-timeout-ms") == "7000", (st, body))
    t0 = time.time()
    st, h, body = curl(base + "/capped", *opts, *GRPC, "-H", "grpc-timeout: 5S", "-H", "x-delay-ms: 1500")
    took = time.time() - t0
    check("%s: the capped timeout fires: trailers-only 200, grpc-status 14" % name,
          st == 200 and h.get("grpc-status") == "14" and h.get("content-type") == "application/grpc" and
          body == "" and took < 1.3, (st, h, body, took))

    # gRPC local replies are trailers-only on both codecs.
    st, h, body = curl(base + "/nowhere", *opts, *GRPC)
    check("%s: gRPC request with no route: trailers-only 200, grpc-status 12" % name,
          st == 200 and h.get("grpc-status") == "12" and body == "", (st, h, body))
    st, h, body = curl(base + "/nowhere", *opts)
    check("%s: plain request with no route: 404" % name, st == 404, (st, h))

# Over TLS the request's scheme is https on both codecs (redirects and direct_response location).
tbase = "https://localhost:%d" % tport
TLS = ("--cacert", pki.ca, "--resolve", "localhost:%d:127.0.0.1" % tport)
for name, opts in (("HTTP/1.1", ("--http1.1",)), ("HTTP/2", ("--http2",))):
    st, h, body = curl(tbase + "/moved", *opts, *TLS)
    check("%s over TLS: redirect keeps the https scheme" % name,
          st == 301 and h.get("location") == "https://localhost:%d/new" % tport, (st, h))
    st, h, body = curl(tbase + "/found", *opts, *TLS)
    check("%s over TLS: direct_response 302 location is https" % name,
          st == 302 and h.get("location") == "https://localhost:%d/found" % tport, (st, h))

time.sleep(1.5)  # the slow upstream calls end
stats = proxy.stats()
check("no request left active", stats["http.ingress.downstream_rq_active"] == 0,
      stats["http.ingress.downstream_rq_active"])
proxy.stop()
finish()
