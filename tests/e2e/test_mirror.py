#!/usr/bin/python3
"""Request mirroring (RouteAction.request_mirror_policies) through weft-proxy: the mirror
cluster receives a copy (head and body) with "-shadow" on the host (before the port), the
client sees only the main answer, runtime_fraction is honoured within statistical tolerance,
and a dead or slow mirror neither fails nor slows the main path."""
import concurrent.futures
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa


class Recorder:
    """An HTTP/1.1 server that records each request (head and body) and answers after delay."""

    def __init__(self, delay=0.0):
        self.port = free_port()
        self.got = []
        self.lock = threading.Lock()
        self.delay = delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(256)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            c, _ = self.sock.accept()
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        data = b""
        c.settimeout(10)
        try:
            while b"\r\n\r\n" not in data:
                d = c.recv(65536)
                if not d:
                    return
                data += d
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
            n = int(hdrs.get("content-length", "0"))
            while len(body) < n:
                body += c.recv(65536)
            with self.lock:
                self.got.append((lines[0], hdrs, body))
            time.sleep(self.delay)
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nshadow")
        except OSError:
            pass
        finally:
            c.close()

    def count(self):
        with self.lock:
            return len(self.got)


a = backend("a", free_port())
m, slow = Recorder(), Recorder(delay=3.0)
admin, port = free_port(), free_port()
routes = """virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: {prefix: "/half"}
    route:
      cluster: a
      request_mirror_policies:
      - cluster: m
        runtime_fraction: {default_value: {numerator: 5000, denominator: TEN_THOUSAND}}
  - match: {prefix: "/dead"}
    route: {cluster: a, request_mirror_policies: [{cluster: dead}]}
  - match: {prefix: "/slow"}
    route: {cluster: a, request_mirror_policies: [{cluster: slow}]}
  - match: {prefix: "/m"}
    route: {cluster: a, request_mirror_policies: [{cluster: m, trace_sampled: false}]}
  - match: {prefix: "/"}
    route: {cluster: a}
"""
clusters = (static_cluster("a", [a]) + static_cluster("m", [m.port]) + static_cluster("slow", [slow.port]) +
            static_cluster("dead", [free_port()]))
proxy = Proxy(bootstrap(admin, http_listener("main", port, route_config=routes), clusters), admin)
base = "http://127.0.0.1:%d" % port


def wait(cond, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline and not cond():
        time.sleep(0.05)
    return cond()


st, h, body = curl(base + "/m/x?q=1", "-H", "Host: svc.example:8080", "-d", "hello mirror")
j = json.loads(body) if st == 200 else {}
check("client gets the main answer", st == 200 and j.get("name") == "a", (st, body))
check("main request keeps its host", j.get("headers", {}).get("host") == "svc.example:8080", j.get("headers"))
check("mirror received one shadow", wait(lambda: m.count() == 1), m.got)
line, hdrs, sbody = m.got[0] if m.got else ("", {}, b"")
check("shadow: same request line", line == "POST /m/x?q=1 HTTP/1.1", line)
check("shadow: -shadow before the port", hdrs.get("host") == "svc.example-shadow:8080", hdrs)
check("shadow: the body", sbody == b"hello mirror", sbody)
check("shadow: forwarding headers as the main request", "x-request-id" in hdrs and "x-forwarded-proto" in hdrs, hdrs)

curl(base + "/m", "-H", "Host: plain")
check("shadow host without a port", wait(lambda: m.count() == 2) and m.got[1][1].get("host") == "plain-shadow",
      m.got[1:] if len(m.got) > 1 else m.got)

before = m.count()
N = 300
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    codes = list(ex.map(lambda i: curl(base + "/half")[0], range(N)))
wait(lambda: False, 1.0)
got = m.count() - before
check("runtime_fraction 50%%: %d of %d mirrored (tolerance ±5 sd)" % (got, N),
      codes.count(200) == N and 150 - 44 <= got <= 150 + 44, (got, set(codes)))

t0 = time.time()
codes = [curl(base + "/dead")[0] for _ in range(20)]
check("dead mirror cluster: main path unaffected", codes == [200] * 20 and time.time() - t0 < 10, codes)

t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(10) as ex:
    res = list(ex.map(lambda i: (lambda t: (curl(base + "/slow")[0], time.time() - t))(time.time()), range(10)))
check("slow mirror (3 s): main answers do not wait for it", all(r[0] == 200 and r[1] < 2.0 for r in res),
      [(r[0], round(r[1], 2)) for r in res])
check("slow mirror got the shadows", wait(lambda: slow.count() == 10), slow.count())

import tempfile
bigf = tempfile.NamedTemporaryFile(prefix="weft-mirror-big-", delete=False)
bigf.write(b"x" * (200 * 1024))
bigf.close()
st, h, body = curl(base + "/m", "-H", "Host: big", "--data-binary", "@" + bigf.name)
os.unlink(bigf.name)
check("body over the shadow cap: main request still fine, not mirrored", st == 200 and
      not any(g[1].get("host") == "big-shadow" for g in m.got), st)

s = proxy.stats()
check("mirror cluster counts its shadows", s.get("cluster.m.upstream_rq_total", 0) == m.count(),
      (s.get("cluster.m.upstream_rq_total"), m.count()))
check("proxy still running", proxy.p.poll() is None, proxy.output()[-1000:])
check("proxy exits cleanly", proxy.stop() == 0, proxy.output()[-3000:])
finish()
