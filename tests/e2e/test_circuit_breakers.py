#!/usr/bin/python3
"""Circuit breakers (Cluster.circuit_breakers.thresholds) with the real weft-proxy and
weft-echo under concurrent load: max_requests per routing priority (DEFAULT and HIGH, picked
by RouteAction.priority), max_connections; a tripped breaker is a fast 503 with response flag
UO; the overflow counters, *_open and remaining_* gauges (track_remaining); afterwards every
count is back (no leaked requests or connections)."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from resilience import *  # noqa

ADMIN, PORT, BE_SLOW, BE_CX = 22000, 22001, 22002, 22003
echo(BE_SLOW, "slow", "--delay-ms", "400")
echo(BE_CX, "cx", "--delay-ms", "400")

log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
access = ('access_log: [{name: envoy.access_loggers.file, typed_config: {"@type": '
          'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: %s, '
          'log_format: {text_format_source: {inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%% '
          '%%RESPONSE_FLAGS%% %%RESPONSE_CODE_DETAILS%%\\n"}}}}]' % log)
routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: ['
          '{match: {prefix: "/high"}, route: {cluster: rq, priority: HIGH}},'
          '{match: {prefix: "/cx"}, route: {cluster: cx}},'
          '{match: {prefix: "/"}, route: {cluster: rq}}]}]')
rq = static_cluster("rq", [BE_SLOW], extra="""    circuit_breakers:
      thresholds:
      - {priority: DEFAULT, max_requests: 3, track_remaining: true}
      - {priority: HIGH, max_requests: 40, track_remaining: true}""")
cx = static_cluster("cx", [BE_CX], extra="""    circuit_breakers:
      thresholds:
      - {max_connections: 3, max_requests: 100, track_remaining: true}""")
proxy = Proxy(bootstrap(ADMIN, http_listener("in", PORT, extra=access, route_config=routes), rq + cx), ADMIN)

s = proxy.stats()
check("defaults without circuit_breakers: remaining gauges only with track_remaining",
      s.get("cluster.rq.circuit_breakers.default.remaining_rq") == 3 and
      s.get("cluster.rq.circuit_breakers.high.remaining_rq") == 40 and
      s.get("cluster.rq.circuit_breakers.default.rq_open") == 0 and
      s.get("cluster.rq.upstream_rq_pending_overflow") == 0,
      {k: v for k, v in s.items() if "circuit" in k or "overflow" in k})

# --- max_requests at DEFAULT: 3 at a time get through, the rest get a fast 503 UO ---
seen_open = []


def watch():
    while not done:
        st = proxy.stats()
        seen_open.append((st.get("cluster.rq.circuit_breakers.default.rq_open"),
                          st.get("cluster.rq.circuit_breakers.default.remaining_rq")))
        time.sleep(0.05)


import threading  # noqa: E402
done = False
w = threading.Thread(target=watch)
w.start()
t0 = time.time()
res = load(PORT, 24, "/")
done = True
w.join()
codes = [r[0] for r in res]
n200, n503 = codes.count(200), codes.count(503)
check("max_requests: some pass, the rest are 503", n200 >= 3 and n503 >= 1 and n200 + n503 == 24, codes)
uo = [r for r in res if r[0] == 503]
check("overflow answer is Envoy's", all("reset reason: overflow" in r[1] for r in uo), uo[:1])
s = proxy.stats()
check("upstream_rq_pending_overflow counts every refused request",
      s.get("cluster.rq.upstream_rq_pending_overflow") == n503, (s.get("cluster.rq.upstream_rq_pending_overflow"), n503))
check("rq_open was 1 and remaining_rq 0 while tripped", (1, 0) in seen_open, seen_open[:20])
time.sleep(0.3)
lines = open(log).read().splitlines()
check("access log: 503 UO with upstream_reset_before_response_started{overflow}",
      sum(1 for l in lines if " 503 UO upstream_reset_before_response_started{overflow}" in l) == n503,
      lines[:5])

# --- HIGH priority has its own thresholds: 20 at once all pass ---
res = load(PORT, 20, "/high")
check("priority HIGH: 20 concurrent requests under max_requests 40 all pass",
      [r[0] for r in res].count(200) == 20, [r[0] for r in res])
s = proxy.stats()
check("HIGH overflow did not count", s.get("cluster.rq.upstream_rq_pending_overflow") == n503)

# --- max_connections: at most 3 connections (a worker's first one is always allowed) ---
res = load(PORT, 16, "/cx")
codes = [r[0] for r in res]
s = proxy.stats()
check("max_connections: overflow is 503 UO and counted as upstream_cx_overflow",
      codes.count(503) >= 1 and s.get("cluster.cx.upstream_cx_overflow", 0) >= codes.count(503) and
      codes.count(200) >= 3, (codes, s.get("cluster.cx.upstream_cx_overflow")))
check("max_connections: never more than max + one per worker connections",
      s.get("cluster.cx.upstream_cx_total", 99) <= 3 + 2 + codes.count(200), s.get("cluster.cx.upstream_cx_total"))

# --- afterwards: every count is back ---
def settled():
    st = proxy.stats()
    ok = (st.get("cluster.rq.circuit_breakers.default.remaining_rq") == 3 and
          st.get("cluster.rq.circuit_breakers.high.remaining_rq") == 40 and
          st.get("cluster.rq.circuit_breakers.default.rq_open") == 0 and
          st.get("cluster.cx.circuit_breakers.default.remaining_rq") == 100 and
          st.get("cluster.rq.upstream_rq_active") == 0 and st.get("cluster.cx.upstream_rq_active") == 0 and
          st.get("cluster.cx.circuit_breakers.default.remaining_cx") ==
          max(0, 3 - st.get("cluster.cx.upstream_cx_active", 0)) and
          st.get("cluster.rq.circuit_breakers.default.remaining_cx") ==
          1024 - st.get("cluster.rq.upstream_cx_active", 0))
    return ok and st


st = poll(settled, 10)
check("no leaked requests or connections: gauges back to their maximum", bool(st),
      {k: v for k, v in proxy.stats().items() if "circuit" in k or "_active" in k})
cl = clusters(proxy)
check("/clusters: per-host rq_active 0 after the load",
      cl.get(("rq", "127.0.0.1:%d" % BE_SLOW), {}).get("rq_active") == "0", cl)
check("fast path: a refused request took no upstream time", time.time() - t0 < 30)

# Bad configs are refused as Envoy refuses them.
code, out = run_proxy_expect_fail(bootstrap(ADMIN, http_listener("in", PORT), static_cluster(
    "be", [BE_SLOW], extra="    circuit_breakers: {thresholds: [{priority: 7}]}")))
check("unknown priority is rejected", code != 0 and "priority" in out, out)

rc = proxy.stop()
check("weft-proxy exits cleanly (ASan: no leak or error)", rc == 0, proxy.output()[-3000:])
os.unlink(log)
finish()
