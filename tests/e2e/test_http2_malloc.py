#!/usr/bin/python3
"""HTTP/2 does not allocate per request in steady state either: h2 client -> HTTP/1.1 backend
and h2 client -> h2c backend, each over one kept-alive connection. Streams come from the
per-connection pool, buffers from the worker's free list, and nghttp2's own per-stream memory
from the worker's size-class allocator (src/proxy/h2_mem.c). The same LD_PRELOAD counter as
test_no_malloc.py. (Skipped under ASan, which owns malloc.)"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import hpack
from hyperframe.frame import Frame, HeadersFrame, SettingsFrame, WindowUpdateFrame

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa

if "asan" in os.path.abspath(BIN):
    print("skipped: the sanitizer build replaces malloc")
    print("0 passed, 0 failed")
    sys.exit(0)

be = backend("be")
h2be = free_port()
import weft
bp = subprocess.Popen([os.path.join(HERE, "h2_backend.py"), str(h2be), "h2be"], stdout=subprocess.PIPE,
                      stderr=subprocess.DEVNULL)
weft._procs.append(bp)
bp.stdout.readline()
wait_port(h2be)
admin, port = free_port(), free_port()
h2opts = """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}"""
routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/h2"}, route: {cluster: h2be}},'
          '{match: {prefix: "/"}, route: {cluster: be}}]}]')
shim = tempfile.NamedTemporaryFile(suffix=".so", delete=False).name
subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", shim, os.path.join(HERE, "malloc_count.c"), "-ldl"], check=True)
count_file = tempfile.NamedTemporaryFile(delete=False).name
os.environ["LD_PRELOAD"] = shim
os.environ["WEFT_MALLOC_COUNT_FILE"] = count_file
proxy = Proxy(bootstrap(admin, http_listener("main", port, route_config=routes),
                        static_cluster("be", [be]) + static_cluster("h2be", [h2be], extra=h2opts)), admin,
              args=["--concurrency", "1"])
del os.environ["LD_PRELOAD"]


def mallocs():
    proxy.p.send_signal(signal.SIGUSR2)
    time.sleep(0.2)
    with open(count_file) as f:
        return int(f.read().strip() or 0)


s = socket.create_connection(("127.0.0.1", port), timeout=5)
enc = hpack.Encoder()
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0, settings={4: 1 << 20}).serialize() +
          WindowUpdateFrame(0, window_increment=1 << 30).serialize())
buf = b""
sid = [1]


def request(prefix="/m"):
    """One GET on the kept-alive connection, read until its END_STREAM."""
    global buf
    i = sid[0]
    sid[0] += 2
    s.sendall(HeadersFrame(i, enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "%s%d" % (prefix, i)),
                                          (":authority", "x")]), flags=["END_STREAM", "END_HEADERS"]).serialize())
    while True:
        while len(buf) >= 9:
            f, n = Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + n:
                break
            f.parse_body(memoryview(buf[9:9 + n]))
            buf = buf[9 + n:]
            if isinstance(f, SettingsFrame) and n:
                s.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
            if f.stream_id == i and "END_STREAM" in f.flags:
                return
            if f.stream_id == i and f.type == 3:
                raise RuntimeError("stream reset")
        buf += s.recv(65536)


for _ in range(200):
    request()
idle0 = mallocs()
time.sleep(3)
idle = mallocs() - idle0
print("allocations in 3 s without traffic: %d" % idle)
before = mallocs()
N = 2000
for _ in range(N):
    request()
after = mallocs()
# Not one per request: a few stray allocations per thousand requests are still seen on the
# HTTP/2 path and not yet attributed (docs/design.md); one per request would be >= 2000.
check("h2 -> HTTP/1.1: 2000 requests after warm-up: %d allocations (none per request)" % (after - before),
      after - before <= 40, after - before)
for _ in range(600):
    request("/h2/")
before = mallocs()
for _ in range(1000):
    request("/h2/")
after = mallocs()
mid = after
check("h2 -> h2: 1000 requests after warm-up: %d allocations (none per request)" % (after - before),
      after - before <= 20, after - before)
s.close()
st = proxy.stats()
print({k: v for k, v in st.items() if k.endswith("upstream_cx_total") or k.endswith("destroy_remote") or k.endswith("destroy_local")})
check("proxy exits 0", proxy.stop() == 0)
finish()
