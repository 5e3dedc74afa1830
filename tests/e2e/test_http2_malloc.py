#!/usr/bin/python3
"""What HTTP/2 allocates per request in steady state (h2 client -> HTTP/1.1 backend, one
kept-alive connection): weft-proxy's own stream objects come from the per-connection pool and
buffers from the worker's free list, so what is counted here is nghttp2's own per-stream state
(stream object, frame queue items, HPACK). The test pins it to a small constant per request so
a regression (an allocation of ours per request, or one that grows) shows up.
(Skipped under ASan, which owns malloc.)"""
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
admin, port = free_port(), free_port()
shim = tempfile.NamedTemporaryFile(suffix=".so", delete=False).name
subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", shim, os.path.join(HERE, "malloc_count.c"), "-ldl"], check=True)
count_file = tempfile.NamedTemporaryFile(delete=False).name
os.environ["LD_PRELOAD"] = shim
os.environ["WEFT_MALLOC_COUNT_FILE"] = count_file
proxy = Proxy(bootstrap(admin, http_listener("main", port), static_cluster("be", [be])), admin)
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


def request():
    """One GET on the kept-alive connection, read until its END_STREAM."""
    global buf
    i = sid[0]
    sid[0] += 2
    s.sendall(HeadersFrame(i, enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/m%d" % i),
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
before = mallocs()
N = 2000
for _ in range(N):
    request()
after = mallocs()
per = (after - before) / N
print("allocations per HTTP/2 request in steady state: %.2f" % per)
check("HTTP/2 steady state: a small constant number of allocations per request (nghttp2's own): %.2f" % per,
      per <= 8, per)
s.close()
check("proxy exits 0", proxy.stop() == 0)
finish()
