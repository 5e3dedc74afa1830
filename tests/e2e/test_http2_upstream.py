#!/usr/bin/python3
"""HTTP/2 to upstreams: clusters that speak h2c (typed_extension_protocol_options
envoy.extensions.upstreams.http.v3.HttpProtocolOptions, or the deprecated
http2_protocol_options), with an h2c backend on python3-h2 (tests/e2e/lib/h2_backend.py).
h2 → h2 and HTTP/1.1 → h2, trailers both ways, stream multiplexing bounded by the server's
SETTINGS_MAX_CONCURRENT_STREAMS, max_requests_per_connection, resets mapped to UR."""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa


def h2_backend(name, max_streams=100):
    port = free_port()
    p = subprocess.Popen([os.path.join(HERE, "h2_backend.py"), str(port), name, str(max_streams)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    import weft
    weft._procs.append(p)
    p.stdout.readline()
    wait_port(port)
    return port


b1 = h2_backend("h2be")
b2 = h2_backend("narrow", max_streams=5)
h1 = backend("h1be")
admin, port = free_port(), free_port()
log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name


def hpo(body):
    return """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        %s""" % body


routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: ['
          '{match: {prefix: "/narrow"}, route: {cluster: narrow}},'
          '{match: {prefix: "/few"}, route: {cluster: few}},'
          '{match: {prefix: "/old"}, route: {cluster: old}},'
          '{match: {prefix: "/auto"}, route: {cluster: auto}},'
          '{match: {prefix: "/same"}, route: {cluster: same}},'
          '{match: {prefix: "/"}, route: {cluster: h2}}]}]')
access = ('access_log: [{name: envoy.access_loggers.file, typed_config: {"@type": '
          'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: %s, '
          'log_format: {text_format_source: {inline_string: "%%PROTOCOL%% %%REQ(:PATH)%% %%RESPONSE_CODE%% '
          '%%RESPONSE_FLAGS%%\\n"}}}}]' % log)
clusters = (static_cluster("h2", [b1], extra=hpo("explicit_http_config: {http2_protocol_options: {}}")) +
            static_cluster("narrow", [b2], extra=hpo("explicit_http_config: {http2_protocol_options: {}}")) +
            static_cluster("few", [b1], extra=hpo("common_http_protocol_options: {max_requests_per_connection: 3}\n"
                                                  "        explicit_http_config: {http2_protocol_options: {}}")) +
            static_cluster("old", [b1], extra="    http2_protocol_options: {}") +
            static_cluster("auto", [h1], extra=hpo("auto_config: {}")) +
            static_cluster("same", [h1], extra=hpo("use_downstream_protocol_config: {}")))
proxy = Proxy(bootstrap(admin, http_listener("main", port, extra=access, route_config=routes), clusters), admin)
url = "http://127.0.0.1:%d" % port
H2 = "--http2-prior-knowledge"


def get(path, *args):
    r = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", *args, url + path], capture_output=True, timeout=20)
    out = r.stdout.decode(errors="replace")
    head, _, body = out.partition("\r\n\r\n")
    return head, body


head, body = get("/a?q=1", H2, "-H", "te: trailers")
check("h2 -> h2: answered", head.startswith("HTTP/2 200") and "x-backend: h2be" in head, head)
j = json.loads(body)
check("h2 -> h2: :authority and :path carried", j["authority"] == "127.0.0.1:%d" % port and j["path"] == "/a?q=1", j)
check("h2 -> h2: te: trailers is kept", j["headers"].get("te") == "trailers", j["headers"])
big = tempfile.NamedTemporaryFile(delete=False)
big.write(b"p" * 200000)
big.close()
head, body = get("/post", H2, "--data-binary", "@" + big.name)
os.unlink(big.name)
check("h2 -> h2: 200 KB request body", json.loads(body)["body_len"] == 200000, body[:200])
head, body = get("/big", H2, "-H", "x-body-size: 2000000")
check("h2 -> h2: 2 MB response through both windows", len(body) == 2000000, len(body))

r = subprocess.run(["nghttp", "-n", "-v", "-H", "x-trailer: 1", url + "/t"], capture_output=True, timeout=20)
out = r.stdout.decode()
check("h2 -> h2: response trailers reach the client", "x-trailer-echo: yes" in out and "grpc-status: 0" in out, out[-800:])

head, body = get("/h1", "-H", "x-trailer: 1", "--raw")
check("HTTP/1.1 -> h2: answered", head.startswith("HTTP/1.1 200") and "x-backend: h2be" in head, head)
check("HTTP/1.1 -> h2: a response without length goes chunked", "transfer-encoding: chunked" in head.lower(), head)
check("HTTP/1.1 -> h2: HTTP/2 trailers become chunked trailers",
      re.search(r"\r\n0\r\nx-trailer-echo: yes\r\ngrpc-status: 0\r\n\r\n$", body) is not None, body[-120:])
r = subprocess.run(["curl", "-sS", "--max-time", "10", "-T", "-", url + "/h1up"], input=b"c" * 70000,
                   capture_output=True, timeout=20)
j = json.loads(r.stdout)
check("HTTP/1.1 chunked request body -> h2 DATA", j["body_len"] == 70000 and "transfer-encoding" not in j["headers"], j)
st, _, body = curl(url + "/h1ka")
st2, _, body2 = curl(url + "/h1ka2")
check("HTTP/1.1 -> h2 keeps working on new connections", st == 200 and st2 == 200)

head, body = get("/reset", H2, "-H", "x-reset: 1")
check("upstream RST_STREAM before the response: 503", head.startswith("HTTP/2 503") and "remote reset" in body, head + body)

r = subprocess.run(["h2load", "-n", "200", "-c", "1", "-m", "20", url + "/narrow"], capture_output=True, timeout=60)
m = re.search(r"(\d+) succeeded, (\d+) failed", r.stdout.decode())
check("20 concurrent streams to a server allowing 5: all succeed", m and m.group(1) == "200", r.stdout.decode()[-500:])
stats = proxy.stats()
check("...over more than one upstream connection (SETTINGS_MAX_CONCURRENT_STREAMS respected)",
      stats["cluster.narrow.upstream_cx_http2_total"] >= 2, stats["cluster.narrow.upstream_cx_http2_total"])
check("...and far fewer connections than requests", stats["cluster.narrow.upstream_cx_http2_total"] <= 20)

# One client connection, so one worker's pool (pools are per worker), requests one at a time.
subprocess.run(["h2load", "-n", "9", "-c", "1", "-m", "1", url + "/few"], capture_output=True, timeout=20)
stats = proxy.stats()
check("max_requests_per_connection 3: 9 requests take 3 connections",
      stats["cluster.few.upstream_cx_http2_total"] == 3, stats["cluster.few.upstream_cx_http2_total"])
for i in range(5):
    get("/reuse%d" % i, H2)
stats = proxy.stats()
check("h2 upstream connections are reused", stats["cluster.h2.upstream_cx_http2_total"] <= 4,
      stats["cluster.h2.upstream_cx_http2_total"])

head, body = get("/old", H2)
check("deprecated cluster http2_protocol_options speaks HTTP/2", "x-backend: h2be" in head, head)
head, body = get("/auto", H2)
check("auto_config without TLS speaks HTTP/1.1", "x-backend: h1be" in head, head)
check("...counted as an HTTP/1.1 upstream connection", proxy.stats()["cluster.auto.upstream_cx_http1_total"] >= 1)
st, hd, body = curl(url + "/same")
check("use_downstream_protocol_config: HTTP/1.1 client -> HTTP/1.1", st == 200 and hd.get("x-backend") == "h1be")
head, body = get("/same", H2)
check("use_downstream_protocol_config: h2 client -> h2 (to an HTTP/1.1-only server: fails cleanly)",
      head.startswith("HTTP/2 503"), head)
stats = proxy.stats()
check("upstream_rq_rx_reset counted", stats["cluster.h2.upstream_rq_rx_reset"] >= 1)
check("no stream left active", stats["http2.streams_active"] == 0 and stats["http.ingress.downstream_rq_active"] == 0)
with open(log) as f:
    lines = f.read().splitlines()
check("access log: UR for the reset stream", "HTTP/2 /reset 503 UR" in lines, lines[-5:])
check("access log: HTTP/1.1 -> h2", "HTTP/1.1 /h1 200 -" in lines)
rc = proxy.stop()
check("proxy exits 0", rc == 0, proxy.output()[-3000:])
os.unlink(log)
finish()
