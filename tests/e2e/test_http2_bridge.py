#!/usr/bin/python3
"""HTTP/1.1 clients bridged to HTTP/2 upstreams (http_conn.c bridge_* → router.c):
trailers of a chunked HTTP/1.1 request go upstream as an HTTP/2 trailing HEADERS frame
(RFC 9112 §7.1.2, RFC 9113 §8.1), h2 request trailers reach an h2 upstream too, and a request
is routed once: a 50/50 weighted split between an HTTP/2 and an HTTP/1.1 cluster stays 50/50
(two random draws made it 25/75), and the cluster in the access log and stats is the one whose
backend answered."""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa


def h2_backend(name):
    port = free_port()
    p = subprocess.Popen([os.path.join(HERE, "h2_backend.py"), str(port), name],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    import weft
    weft._procs.append(p)
    p.stdout.readline()
    wait_port(port)
    return port


ba, bb = h2_backend("h2a"), h2_backend("h2b")
bc = backend("h1c")
admin, port = free_port(), free_port()
log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
H2OPT = """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}"""
routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: ['
          '{match: {prefix: "/mixed"}, route: {weighted_clusters: {clusters: [{name: ca, weight: 50}, {name: cc, weight: 50}]}}},'
          '{match: {prefix: "/both"}, route: {weighted_clusters: {clusters: [{name: ca, weight: 50}, {name: cb, weight: 50}]}}},'
          '{match: {prefix: "/"}, route: {cluster: ca}}]}]')
access = ('access_log: [{name: envoy.access_loggers.file, typed_config: {"@type": '
          'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: %s, '
          'log_format: {text_format_source: {inline_string: "%%REQ(:PATH)%% %%UPSTREAM_CLUSTER%% '
          '%%RESP(X-BACKEND)%%\\n"}}}}]' % log)
clusters = static_cluster("ca", [ba], extra=H2OPT) + static_cluster("cb", [bb], extra=H2OPT) + static_cluster("cc", [bc])
proxy = Proxy(bootstrap(admin, http_listener("main", port, extra=access, route_config=routes), clusters), admin)


def raw_exchange(data):
    """Sends data on a new connection and returns the whole answer (the proxy closes after it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    out = b""
    while b"\r\n\r\n" not in out or not out.rstrip().endswith(b"}"):
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    return out.decode(errors="replace")


# 1. Chunked HTTP/1.1 request with a trailer section → HTTP/2 upstream.
out = raw_exchange(b"POST /trail HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n"
                   b"Connection: close\r\n\r\n"
                   b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc123\r\nX-Other:  two words \r\n\r\n")
head, _, body = out.partition("\r\n\r\n")
body = body[body.index("{"):] if "{" in body else body
try:
    j = json.loads(body[:body.rindex("}") + 1])
except ValueError:
    j = {}
check("HTTP/1.1 chunked request with trailers -> h2: answered", head.startswith("HTTP/1.1 200"), head)
check("...the body arrives de-chunked", j.get("body_len") == 11, j)
check("...the trailer fields arrive as HTTP/2 trailers (lowercase names, trimmed values)",
      j.get("trailers") == {"x-checksum": "abc123", "x-other": "two words"}, j)

# Connection-specific fields in the trailer section are not forwarded (RFC 9113 §8.2.2).
out = raw_exchange(b"POST /trail2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                   b"3\r\nabc\r\n0\r\nConnection: close\r\nTE: trailers\r\nX-Kept: 1\r\n\r\n")
check("...connection-specific trailer fields are dropped, the rest forwarded",
      '"trailers": {"x-kept": "1"}' in out, out[-300:])

# Without a trailer section nothing changes (no empty HEADERS frame).
out = raw_exchange(b"POST /notrail HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                   b"3\r\nabc\r\n0\r\n\r\n")
check("chunked request without trailers -> h2: no trailers", '"trailers": {}' in out and '"body_len": 3' in out,
      out[-300:])

# Trailers split across reads (one byte at a time).
s = socket.create_connection(("127.0.0.1", port), timeout=10)
msg = (b"POST /slow HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
       b"2\r\nok\r\n0\r\nx-slow: yes\r\n\r\n")
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(msg[:-20])
for i in range(len(msg) - 20, len(msg)):
    s.sendall(msg[i:i + 1])
out = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    out += d
s.close()
check("...trailers arriving a byte at a time", b'"trailers": {"x-slow": "yes"}' in out, out[-300:])

# 1b. HTTP/2 request trailers → HTTP/2 upstream (trailing HEADERS forwarded as such).
import h2.config
import h2.connection
import h2.events
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
hc = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
hc.initiate_connection()
hc.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/h2trail"), (":authority", "t"),
                    ("te", "trailers")])
hc.send_data(1, b"body")
hc.send_headers(1, [("x-checksum", "h2h2")], end_stream=True)
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
try:
    j = json.loads(got)
except ValueError:
    j = {}
check("HTTP/2 request trailers -> h2 upstream", j.get("trailers") == {"x-checksum": "h2h2"}, got[:300])

# 2. One routing decision per request. 50/50 between an HTTP/2 and an HTTP/1.1 cluster.
N = 400


def split(path_prefix):
    seen = {}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(N):
        c.request("GET", "%s/%d" % (path_prefix, i))
        r = c.getresponse()
        r.read()
        b = r.getheader("x-backend")
        seen[b] = seen.get(b, 0) + 1
    c.close()
    return seen


mixed = split("/mixed")
share = mixed.get("h2a", 0) / N
check("50/50 split h2/h1 cluster from HTTP/1.1 clients: about half go to the h2 cluster (was 1/4)",
      0.38 <= share <= 0.62 and mixed.get("h2a", 0) + mixed.get("h1c", 0) == N, mixed)
both = split("/both")
check("50/50 split over two h2 clusters: both used", both.get("h2a", 0) > N / 4 and both.get("h2b", 0) > N / 4, both)

names = {"ca": "h2a", "cb": "h2b", "cc": "h1c"}
deadline = time.time() + 10
while time.time() < deadline:
    with open(log) as f:
        lines = [ln.split() for ln in f.read().splitlines()]
    split_lines = [ln for ln in lines if ln[0].startswith(("/mixed/", "/both/"))]
    if len(split_lines) >= 2 * N:
        break
    time.sleep(0.1)
bad = [ln for ln in split_lines if len(ln) != 3 or names.get(ln[1]) != ln[2]]
check("access log: %UPSTREAM_CLUSTER% is the cluster whose backend answered, every request",
      len(split_lines) == 2 * N and not bad, (len(split_lines), bad[:5]))
stats = proxy.stats()
check("stats: cluster upstream_rq_total matches the answers per backend",
      stats["cluster.cc.upstream_rq_total"] == mixed.get("h1c", 0) and
      stats["cluster.cb.upstream_rq_total"] == both.get("h2b", 0), (mixed, both,
                                                                     stats["cluster.cc.upstream_rq_total"],
                                                                     stats["cluster.cb.upstream_rq_total"]))
check("no stream left active", stats["http.ingress.downstream_rq_active"] == 0)
rc = proxy.stop()
check("proxy exits 0", rc == 0, proxy.output()[-3000:])
os.unlink(log)
finish()
