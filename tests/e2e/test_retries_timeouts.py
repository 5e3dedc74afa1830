#!/usr/bin/python3
"""Route retry policies (retry.c, router.c) against weft-echo answering with a status: a 5xx
is retried num_retries times over HTTP/1.1 and HTTP/2 downstream, the stats count the retries
and the exhaustion (upstream_rq_retry_limit_exceeded), x-envoy-attempt-count goes upstream, a
route without a policy is not retried, and no request stays active."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa

echo_port = free_port()
echo = subprocess.Popen([os.path.join(BIN, "weft-echo"), "--port", str(echo_port)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(0.5)
admin, port = free_port(), free_port()
routes = """virtual_hosts:
- name: all
  domains: ["*"]
  include_request_attempt_count: true
  routes:
  - match: {prefix: "/plain"}
    route: {cluster: be}
  - match: {prefix: "/"}
    route: {cluster: be, retry_policy: {retry_on: "5xx", num_retries: 2}}
"""
proxy = Proxy(bootstrap(admin, http_listener("main", port, route_config=routes), static_cluster("be", [echo_port])),
              admin)
base = "http://127.0.0.1:%d" % port
try:
    for name, opt in (("HTTP/1.1", "--http1.1"), ("HTTP/2", "--http2-prior-knowledge")):
        before = proxy.stats().get("cluster.be.upstream_rq_retry", 0)
        st, h, body = curl(base + "/x?status=503", opt)
        after = proxy.stats().get("cluster.be.upstream_rq_retry", 0)
        check("%s: a 503 is retried num_retries (2) times, then answered" % name, st == 503 and after - before == 2,
              (st, before, after))
        st, h, body = curl(base + "/x", opt)
        check("%s: x-envoy-attempt-count goes upstream" % name, st == 200 and json.loads(body)["headers"].get("x-envoy-attempt-count") == "1",
              (st, body[:300]))
    before = proxy.stats().get("cluster.be.upstream_rq_retry", 0)
    st, h, body = curl(base + "/plain?status=503", "--http1.1")
    check("a route without a retry policy is not retried",
          st == 503 and proxy.stats().get("cluster.be.upstream_rq_retry", 0) == before, st)
    stats = proxy.stats()
    check("exhausted retries are counted", stats.get("cluster.be.upstream_rq_retry_limit_exceeded", 0) == 2, stats.get(
        "cluster.be.upstream_rq_retry_limit_exceeded"))
    check("no request left active", stats["http.ingress.downstream_rq_active"] == 0,
          stats["http.ingress.downstream_rq_active"])
    # A retry_on value Envoy does not know is a config error naming the field.
    import tempfile
    bad = bootstrap(free_port(), http_listener("bad", free_port(), route_config=routes.replace('"5xx"', '"5xx,bogus"')),
                    static_cluster("be", [echo_port]))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(bad)
    r = subprocess.run([os.path.join(BIN, "weft-proxy"), "--mode", "validate", "-c", f.name],
                       capture_output=True, text=True, timeout=20)
    os.unlink(f.name)
    out = r.stdout + r.stderr
    check("bad retry_on is rejected with its field path",
          r.returncode != 0 and "retry_policy.retry_on" in out and "bogus" in out, out)
finally:
    proxy.stop()
    echo.kill()
    echo.wait()
finish()
