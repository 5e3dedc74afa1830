#!/usr/bin/python3
"""The request path allocates nothing in steady state: weft-proxy runs under an LD_PRELOAD shim
that counts malloc/calloc/realloc; after a warm-up, thousands of keep-alive requests on the same
connections must not add allocations. (Skipped under ASan, which owns malloc.)"""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa

if "asan" in os.path.abspath(BIN):
    print("skipped: the sanitizer build replaces malloc")
    print("0 passed, 0 failed")
    sys.exit(0)

be = backend("be")
admin, port = free_port(), free_port()
shim = tempfile.NamedTemporaryFile(suffix=".so", delete=False).name
subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", shim, os.path.join(HERE, "malloc_count.c"), "-ldl"],
               check=True)
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


def request(s, path):
    """One GET on the kept-alive socket s, read to the end of its body."""
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n" % path)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(body) < length:
        body += s.recv(65536)


conn = socket.create_connection(("127.0.0.1", port), timeout=5)
for i in range(200):
    request(conn, b"/warm%d" % i)
before = mallocs()
for i in range(2000):
    request(conn, b"/steady%d" % i)
after = mallocs()
check("2000 keep-alive requests after warm-up allocate nothing: %d allocations" % (after - before),
      after - before <= 2, after - before)
check("proxy exits 0", proxy.stop() == 0)
os.unlink(shim)
os.unlink(count_file)
finish()
