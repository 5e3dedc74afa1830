#!/usr/bin/python3
"""HTTP/2 from clients (h2c with prior knowledge) through weft-proxy to HTTP/1.1 backends, with
real clients: curl --http2-prior-knowledge, nghttp, h2load. HTTP/1.1 and h2c share a listener
(codec_type AUTO); HTTP1 and HTTP2 codec types pin one."""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa

be = backend("be")
admin, port, port_h1, port_h2 = free_port(), free_port(), free_port(), free_port()
log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
access = ('access_log: [{name: envoy.access_loggers.file, typed_config: {"@type": '
          'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: %s, '
          'log_format: {text_format_source: {inline_string: "%%PROTOCOL%% %%REQ(:METHOD)%% %%REQ(:PATH)%% '
          '%%RESPONSE_CODE%% %%RESPONSE_FLAGS%% %%BYTES_RECEIVED%% %%BYTES_SENT%%\\n"}}}}]' % log)
routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: ['
          '{match: {prefix: "/missing"}, direct_response: {status: 404, body: {inline_string: "nothing here"}}},'
          '{match: {prefix: "/dead"}, route: {cluster: dead}},'
          '{match: {prefix: "/"}, route: {cluster: be}}]}]')
listeners = "\n".join([
    http_listener("auto", port, extra=access, route_config=routes),
    http_listener("h1only", port_h1, stat_prefix="h1only", extra="codec_type: HTTP1"),
    http_listener("h2only", port_h2, stat_prefix="h2only", extra="codec_type: HTTP2\nhttp2_protocol_options: {max_concurrent_streams: 7, initial_stream_window_size: 65535}"),
])
clusters = static_cluster("be", [be]) + static_cluster("dead", [free_port()])
proxy = Proxy(bootstrap(admin, listeners, clusters), admin)
url = "http://127.0.0.1:%d" % port
H2 = "--http2-prior-knowledge"


def curl_v(url_, *args):
    r = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", *args, url_], capture_output=True, timeout=20)
    return r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


out, _ = curl_v(url + "/a?b=c", H2, "-H", "cookie: x=1", "-H", "cookie: y=2", "-H", "te: trailers")
check("h2c GET answered over HTTP/2", out.startswith("HTTP/2 200"), out[:200])
body = json.loads(out.split("\r\n\r\n", 1)[1])
check("path and query reach the HTTP/1.1 backend", body["path"] == "/a?b=c", body)
check(":authority becomes Host", body["headers"].get("host") == "127.0.0.1:%d" % port, body["headers"])
check("HTTP/2 cookie crumbs are joined with '; '", body["headers"].get("cookie") == "x=1; y=2", body["headers"])
check("te is not forwarded to HTTP/1.1", "te" not in body["headers"], body["headers"])
check("x-request-id added", len(body["headers"].get("x-request-id", "")) == 36)

out, _ = curl_v(url + "/post", H2, "--data-binary", "@-" if False else "x" * 100000)
body = json.loads(out.split("\r\n\r\n", 1)[1])
check("100 KB request body (more than one window) arrives whole", body["body_len"] == 100000, body.get("body_len"))
check("body with a length goes upstream with content-length", body["headers"].get("content-length") == "100000")

# A body without content-length (streamed) goes upstream chunked.
p = subprocess.run(["curl", "-sS", "--max-time", "10", H2, "-T", "-", url + "/up"], input=b"y" * 5000,
                   capture_output=True, timeout=20)
body = json.loads(p.stdout)
check("a request body of unknown length goes upstream chunked",
      body["body_len"] == 5000 and body["headers"].get("transfer-encoding") == "chunked", body.get("headers"))

out, _ = curl_v(url + "/big", H2, "-H", "x-body-size: 1000000")
check("1 MB response body through the client's flow-control window", len(out.split("\r\n\r\n", 1)[1]) == 1000000)
out, _ = curl_v(url + "/chunked", H2, "-H", "x-chunked: 1")
check("a chunked HTTP/1.1 response is de-chunked into DATA", out.startswith("HTTP/2 200") and '"path": "/chunked"' in out, out[:300])
check("no transfer-encoding in an HTTP/2 response", "transfer-encoding" not in out.lower().split("\r\n\r\n")[0])
out, _ = curl_v(url + "/head", H2, "-I")
check("HEAD: headers, no body", out.startswith("HTTP/2 200") and out.split("\r\n\r\n", 1)[1] == "", out)
out, _ = curl_v(url + "/nc", H2, "-H", "x-status: 204")
check("204 has no body", out.startswith("HTTP/2 204"), out[:100])
out, _ = curl_v(url + "/missing", H2)
check("direct response over HTTP/2", out.startswith("HTTP/2 404") and out.endswith("nothing here"), out)
out, _ = curl_v(url + "/dead", H2)
check("503 UF local reply over HTTP/2", out.startswith("HTTP/2 503") and "connection failure" in out, out)
out, _ = curl_v(url + "/expect", H2, "-H", "expect: 100-continue", "--data-binary", "z" * 2000)
check("Expect: 100-continue over HTTP/2", "HTTP/2 200" in out and '"body_len": 2000' in out, out[:200])

# Trailers both ways between HTTP/2 and chunked HTTP/1.1.
r = subprocess.run(["nghttp", "-nv", "-H", "x-chunked: 1", url + "/trailers"], capture_output=True, timeout=20)
out = r.stdout.decode()
check("chunked HTTP/1.1 response trailers become HTTP/2 trailing HEADERS",
      re.search(r"recv \(stream_id=\d+\) x-trailer: yes", out) is not None and out.count("END_STREAM") >= 1, out[-900:])
import h2.config
import h2.connection
import h2.events
sock = socket.create_connection(("127.0.0.1", port), timeout=5)
hc = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
hc.initiate_connection()
hc.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/rqtrailers"), (":authority", "t"),
                    ("te", "trailers")])
hc.send_data(1, b"body bytes")
hc.send_headers(1, [("x-checksum", "abc123")], end_stream=True)
sock.sendall(hc.data_to_send())
got, done = b"", False
while not done:
    data = sock.recv(65536)
    if not data:
        break
    for ev in hc.receive_data(data):
        if isinstance(ev, h2.events.DataReceived):
            got += ev.data
            hc.acknowledge_received_data(ev.flow_controlled_length, 1)
        if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
            done = True
    sock.sendall(hc.data_to_send())
sock.close()
j = json.loads(got)
check("HTTP/2 request trailers go upstream as chunked trailers",
      j.get("trailers") == {"x-checksum": "abc123"} and j["body"] == "body bytes", j)

# HTTP/1.1 on the same (AUTO) listener.
st, hd, body = curl(url + "/h1")
check("HTTP/1.1 on the AUTO listener", st == 200 and '"path": "/h1"' in body)

# Many concurrent streams on one connection.
r = subprocess.run(["nghttp", "-n", "-s", "-m", "50", url + "/m"], capture_output=True, timeout=30)
check("nghttp: 50 concurrent streams on one connection", r.returncode == 0 and r.stdout.decode().count("/m") >= 50,
      r.stdout.decode()[-300:] + r.stderr.decode()[-300:])
r = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "20", url + "/load"], capture_output=True, timeout=60)
m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", r.stdout.decode())
check("h2load: 2000 requests, 4 connections x 20 streams, all succeed",
      m and m.group(4) == "2000" and m.group(5) == "0", r.stdout.decode()[-600:])

# codec_type HTTP1: the preface is not HTTP/1.1.
out, err = curl_v("http://127.0.0.1:%d/x" % port_h1, H2)
check("codec_type HTTP1 does not speak HTTP/2", not out.startswith("HTTP/2"), out[:100] + err)
st, _, _ = curl("http://127.0.0.1:%d/x" % port_h1)
check("codec_type HTTP1 speaks HTTP/1.1", st == 200)
out, _ = curl_v("http://127.0.0.1:%d/x" % port_h2, H2)
check("codec_type HTTP2 speaks HTTP/2", out.startswith("HTTP/2 200"), out[:100])
r = subprocess.run(["nghttp", "-nv", "http://127.0.0.1:%d/x" % port_h2], capture_output=True, timeout=20)
check("http2_protocol_options.max_concurrent_streams is advertised",
      "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7" in r.stdout.decode(), r.stdout.decode()[:600])

stats = proxy.stats()
check("downstream_cx_http2_total counts HTTP/2 connections", stats["http.ingress.downstream_cx_http2_total"] >= 10,
      stats["http.ingress.downstream_cx_http2_total"])
check("downstream_rq_http2_total counts HTTP/2 requests", stats["http.ingress.downstream_rq_http2_total"] >= 2050)
check("downstream_cx_http1_total counts the HTTP/1.1 connection only",
      stats["http.ingress.downstream_cx_http1_total"] == 1, stats["http.ingress.downstream_cx_http1_total"])
check("no HTTP/2 connection left active", stats["http.ingress.downstream_cx_http2_active"] == 0
      and stats["http2.streams_active"] == 0, (stats["http.ingress.downstream_cx_http2_active"], stats["http2.streams_active"]))
check("downstream_rq_active back to 0", stats["http.ingress.downstream_rq_active"] == 0, stats["http.ingress.downstream_rq_active"])
with open(log) as f:
    lines = f.read().splitlines()
check("access log: HTTP/2 protocol, method, path", any(l.startswith("HTTP/2 GET /a?b=c 200 -") for l in lines), lines[:3])
check("access log: request body bytes", any(l.startswith("HTTP/2 POST /post 200 - 100000 ") for l in lines))
check("access log: UF for the dead cluster", any(l.startswith("HTTP/2 GET /dead 503 UF") for l in lines))
check("proxy exits 0", proxy.stop() == 0)
os.unlink(log)
finish()
