#!/usr/bin/python3
"""Bad bootstraps are refused with exit code 1 and one clear line (file, field path, problem);
the admin endpoints answer as Envoy's do; --mode validate checks a config and exits."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa

admin, port, be = free_port(), free_port(), backend("be")
def listener(cluster):
    return http_listener("main", port, cluster=cluster)


good = bootstrap(admin, listener("be"), static_cluster("be", [be]))

cases = [
    ("unknown field", bootstrap(admin, listener("be"), static_cluster("be", [be]).replace("lb_policy", "lb_polcy")),
     ["static_resources.clusters[0].lb_polcy", "unknown field", "CONFIG:"]),
    ("bad enum", bootstrap(admin, listener("be"), static_cluster("be", [be], lb="FASTEST")),
     ["lb_policy", "FASTEST"]),
    ("bad duration", bootstrap(admin, listener("be"), static_cluster("be", [be]).replace("1s", "1 minute")),
     ["connect_timeout"]),
    ("unknown cluster in a route", bootstrap(admin, listener("missing"), static_cluster("be", [be])),
     ["route", "missing"]),
    ("bad regex", bootstrap(admin, listener("be").replace('prefix: "/"', 'safe_regex: {regex: "(["}'),
                            static_cluster("be", [be])), ["safe_regex", "regex"]),
    ("unknown @type", bootstrap(admin, listener("be").replace("HttpConnectionManager\n", "Nope\n", 1),
                                static_cluster("be", [be])), ["Nope"]),
    ("YAML syntax error", "admin: {address: [\n", ["CONFIG:"]),
    ("bad IP address", good.replace("address: 127.0.0.1, port_value: %d" % port, "address: 300.1.1.1, port_value: %d" % port),
     ["static_resources.listeners[0].address", "300.1.1.1"]),
]
for name, cfg, needles in cases:
    code, out = run_proxy_expect_fail(cfg)
    lines = [l for l in out.strip().splitlines() if l]
    ok = code == 1 and len(lines) == 1 and all(n in out for n in needles) and "Segmentation" not in out
    # Every error names the file and a line, also those found after parsing (file:LINE: path).
    ok = ok and re.search(r"CONFIG:[1-9][0-9]*:", out) is not None
    check("config error: " + name, ok, (code, out))

# A problem found after parsing points at the line where the field was written.
cfg = bootstrap(admin, listener("be"), static_cluster("be", [be])).replace(
    'route: {cluster: be}', 'route: {cluster: be}, request_headers_to_add: [{header: {key: x, value: "%NOPE%"}}]', 1)
code, out = run_proxy_expect_fail(cfg)
want = 1 + next(i for i, l in enumerate(cfg.splitlines()) if "%NOPE%" in l)
check("config error: unknown command in a header value, with its line",
      code == 1 and ("CONFIG:%d: " % want) in out and "request_headers_to_add[0]: unknown command %NOPE%" in out,
      (code, out, want))

import tempfile
with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    f.write(good)
r = subprocess.run([os.path.join(BIN, "weft-proxy"), "--mode", "validate", "-c", f.name],
                   capture_output=True, text=True, timeout=20)
check("--mode validate accepts a good config", r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr)
os.unlink(f.name)
r = subprocess.run([os.path.join(BIN, "weft-proxy"), "--bogus"], capture_output=True, text=True, timeout=20)
check("unknown flag refused", r.returncode == 1 and "unknown option '--bogus'" in r.stderr, r.stderr)

proxy = Proxy(good, admin)
for _ in range(3):
    curl("http://127.0.0.1:%d/" % port)
st, body = proxy.admin("/ready")
check("/ready is LIVE", st == 200 and body.strip() == "LIVE", (st, body))
st, body = proxy.admin("/stats")
check("/stats text", st == 200 and "http.ingress.downstream_rq_total: 3" in body and "cluster.be.upstream_rq_200: 3" in body, body[:500])
st, body = proxy.admin("/stats?filter=upstream_rq_2")
check("/stats?filter", st == 200 and "cluster.be.upstream_rq_2xx" in body and "downstream_rq_total" not in body, body[:300])
st, body = proxy.admin("/stats?format=json")
check("/stats?format=json", st == 200 and any(s["name"] == "cluster.be.upstream_rq_total" and s["value"] == 3
                                              for s in json.loads(body)["stats"]))
st, body = proxy.admin("/stats/prometheus")
check("/stats/prometheus", st == 200 and 'envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="be"} 3' in body.replace(
    'envoy_cluster_name="be",envoy_response_code="200"', 'envoy_response_code="200",envoy_cluster_name="be"'), body[:800])
st, body = proxy.admin("/config_dump")
cd = json.loads(body) if st == 200 else {}
types = [c.get("@type", "") for c in cd.get("configs", [])]
check("/config_dump has bootstrap, clusters, listeners", st == 200 and any("BootstrapConfigDump" in t for t in types)
      and any("ClustersConfigDump" in t for t in types) and any("ListenersConfigDump" in t for t in types), types)
check("/config_dump uses proto3 JSON names", '"connectTimeout": "1s"' in body and '"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"' in body,
      body[:1500])
st, body = proxy.admin("/clusters")
check("/clusters lists hosts with health", st == 200 and "be::127.0.0.1:%d::health_flags::healthy" % be in body, body)
st, body = proxy.admin("/listeners")
check("/listeners", st == 200 and "main::127.0.0.1:%d" % port in body, body)
st, body = proxy.admin("/server_info")
check("/server_info", st == 200 and json.loads(body).get("state") == "LIVE", body[:300])
st, body = proxy.admin("/logging?level=debug", method="POST")
check("POST /logging?level=debug", st == 200 and "debug" in body, body)
st, body = proxy.admin("/logging?level=nope", method="POST")
check("POST /logging with a bad level is refused", st == 404, (st, body))
st, body = proxy.admin("/quitquitquit")
check("GET /quitquitquit is refused", st == 405, st)
st, body = proxy.admin("/quitquitquit", method="POST")
check("POST /quitquitquit", st == 200, st)
try:
    proxy.p.wait(10)
except Exception:
    pass
check("the proxy exited after quitquitquit", proxy.p.poll() == 0, (proxy.p.poll(), proxy.output()[-1500:]))
finish()
