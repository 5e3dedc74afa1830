#!/usr/bin/python3
"""Runs tests/e2e/lib/h2conformance.py (h2spec-like HTTP/2 cases with raw frames: preface, frame
format and sizes, HPACK, stream states, every frame type's errors, flow control, CONTINUATION,
malformed requests) against weft-proxy's downstream HTTP/2 codec (h2c, codec_type AUTO) in
front of an HTTP/1.1 backend. Excluded, as for weftd's gRPC server: 5.1.1/2 (HEADERS on a lower
stream id than a previous one must be a connection error; nghttp2 ignores such a block when it
no longer tracks the stream, see docs/limits.md). The proxy must survive every case."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from weft import *  # noqa

be = backend("be")
admin, port = free_port(), free_port()
proxy = Proxy(bootstrap(admin, http_listener("h2", port, stat_prefix="h2", extra="codec_type: AUTO"),
                        static_cluster("be", [be])), admin)
r = subprocess.run([os.path.join(HERE, "h2conformance.py"), "127.0.0.1", str(port), "--exclude", "5.1.1/2"],
                   capture_output=True, text=True, timeout=240)
out = r.stdout.strip().splitlines()
for line in out:
    if line.startswith("FAIL"):
        print(line)
last = out[-1] if out else ""
n = int(last.split()[0]) if last.endswith("failed") else 0
check("h2conformance: every case passes (%s)" % last, r.returncode == 0 and last.endswith(" 0 failed") and n >= 70,
      r.stderr[-2000:])
st, _, body = curl("http://127.0.0.1:%d/after" % port, "--http2-prior-knowledge")
check("the proxy still serves HTTP/2 after every case", st == 200 and '"/after"' in body, (st, body[:200]))
check("proxy exits cleanly", proxy.stop() == 0, proxy.output()[-2000:])
out = proxy.output()
check("no sanitizer report", "Sanitizer" not in out and "runtime error" not in out, out[-2000:])
finish()
