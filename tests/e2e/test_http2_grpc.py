#!/usr/bin/python3
"""gRPC through weft-proxy, h2 -> h2, with python3-grpcio on both ends (generic handlers on raw
bytes): unary and the three streaming kinds, status and trailers preserved, grpc-timeout
capped by the route's max_stream_duration.grpc_timeout_header_max, a failed upstream answered
as gRPC (trailers-only, UNAVAILABLE), %GRPC_STATUS% in the access log."""
import os
import subprocess
import sys
import tempfile
import time

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
import weft

gport = free_port()
gp = subprocess.Popen([os.path.join(HERE, "grpc_backend.py"), str(gport)], stdout=subprocess.PIPE,
                      stderr=subprocess.DEVNULL)
weft._procs.append(gp)
gp.stdout.readline()
wait_port(gport)

admin, port = free_port(), free_port()
log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
access = ('access_log: [{name: envoy.access_loggers.file, typed_config: {"@type": '
          'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: %s, '
          'log_format: {text_format_source: {inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%% %%GRPC_STATUS%% '
          '%%GRPC_STATUS(NUMBER)%% %%RESPONSE_FLAGS%%\\n"}}}}]' % log)
routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: ['
          '{match: {prefix: "/dead."}, route: {cluster: dead}},'
          '{match: {prefix: "/capped."}, route: {cluster: grpc, prefix_rewrite: "/test.", timeout: 60s, '
          'max_stream_duration: {grpc_timeout_header_max: 0.3s}}},'
          '{match: {prefix: "/", grpc: {}}, route: {cluster: grpc, timeout: 60s}}]}]')
h2opts = """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}"""
clusters = static_cluster("grpc", [gport], extra=h2opts) + static_cluster("dead", [free_port()], extra=h2opts)
proxy = Proxy(bootstrap(admin, http_listener("main", port, extra=access, route_config=routes), clusters), admin)
ch = grpc.insecure_channel("127.0.0.1:%d" % port)

r = ch.unary_unary("/test.Echo/Unary")(b"hello", timeout=10)
check("unary through the proxy", r == b"hello!", r)
r = list(ch.unary_stream("/test.Echo/ServerStream")(b"s", timeout=10))
check("server streaming: every message, in order", r == [b"s0", b"s1", b"s2", b"s3", b"s4"], r)
r = ch.stream_unary("/test.Echo/ClientStream")(iter([b"a", b"b", b"c"]), timeout=10)
check("client streaming", r == b"a+b+c", r)
r = list(ch.stream_stream("/test.Echo/Bidi")(iter([b"x", b"yy", b"zzz"]), timeout=10))
check("bidirectional streaming", r == [b"X", b"YY", b"ZZZ"], r)
big = b"q" * 300000
r = ch.unary_unary("/test.Echo/Unary")(big, timeout=10)
check("a 300 KB message each way (flow control on both legs)", r == big + b"!", len(r))
for i in range(50):
    ch.unary_unary("/test.Echo/Unary")(b"%d" % i, timeout=10)
check("50 more calls on the same channel", True)

try:
    ch.unary_unary("/test.Echo/Fail")(b"", timeout=10)
    check("server error status reaches the client", False)
except grpc.RpcError as e:
    check("server error status and message reach the client (trailers)",
          e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "nope", (e.code(), e.details()))

try:
    ch.unary_unary("/dead.Echo/Unary")(b"", timeout=10)
    check("failed upstream answered as gRPC", False)
except grpc.RpcError as e:
    check("failed upstream: UNAVAILABLE (Envoy's 503 mapping), trailers-only",
          e.code() == grpc.StatusCode.UNAVAILABLE and "connection failure" in e.details(), (e.code(), e.details()))

t0 = time.time()
try:
    ch.unary_unary("/capped.Echo/Slow")(b"", timeout=5)
    check("grpc-timeout capped by grpc_timeout_header_max", False)
except grpc.RpcError as e:
    took = time.time() - t0
    check("grpc-timeout (5 s) capped by grpc_timeout_header_max (0.3 s): the proxy gives up first",
          e.code() == grpc.StatusCode.UNAVAILABLE and took < 1.5, (e.code(), e.details(), took))
t0 = time.time()
try:
    ch.unary_unary("/test.Echo/Slow")(b"", timeout=0.5)
except grpc.RpcError as e:
    check("the client's own deadline still applies", e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
          and time.time() - t0 < 1.5, e.code())

# curl sees the trailers-only local reply as HTTP/2 headers.
r = subprocess.run(["curl", "-sS", "-i", "--http2-prior-knowledge", "--max-time", "5", "-H", "content-type: application/grpc",
                    "-H", "te: trailers", "--data-binary", "", "http://127.0.0.1:%d/dead.Echo/Unary" % port],
                   capture_output=True, timeout=10)
out = r.stdout.decode()
check("trailers-only reply: :status 200, grpc-status 14, no body",
      out.startswith("HTTP/2 200") and "grpc-status: 14" in out and out.endswith("\r\n\r\n"), out)

time.sleep(1.8)  # let the slow calls end upstream
ch.close()
stats = proxy.stats()
check("no stream left active", stats["http2.streams_active"] == 0 and stats["http.ingress.downstream_rq_active"] == 0,
      (stats["http2.streams_active"], stats["http.ingress.downstream_rq_active"]))
rc = proxy.stop()
check("proxy exits 0", rc == 0, proxy.output()[-2000:])
with open(log) as f:
    lines = f.read().splitlines()
check("%GRPC_STATUS%: Ok for a good call", "/test.Echo/Unary 200 Ok 0 -" in lines, lines[:5])
check("%GRPC_STATUS%: NotFound from the server's trailers", "/test.Echo/Fail 200 NotFound 5 -" in lines)
check("%GRPC_STATUS%: Unavailable for the local reply", any(l.startswith("/dead.Echo/Unary 200 Unavailable 14 UF")
                                                           for l in lines), [l for l in lines if "dead" in l])
check("%GRPC_STATUS%: the capped call timed out (UT)", any(l.startswith("/capped.Echo/Slow 200 Unavailable 14 UT")
                                                          for l in lines), [l for l in lines if "capped" in l])
os.unlink(log)
finish()
