#!/usr/bin/python3
"""weft-proxy's HTTP fault injection (envoy.filters.http.fault) and local rate limit
(envoy.filters.http.local_ratelimit) filters, configured as in Envoy v3 (HCM-level config and
per-route typed_per_filter_config), against real backends, over HTTP/1.1 and HTTP/2: delays
(DI), aborts (FI, HTTP and gRPC), header-controlled faults, header / cluster matching,
max_active_faults, token buckets (RL, 429, x-envoy-ratelimited), stats and access log flags."""
import concurrent.futures
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa


a = backend("a", free_port())
admin, port = free_port(), free_port()
logf = tempfile.NamedTemporaryFile(prefix="weft-fault-log-", delete=False)
logf.close()

FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"


def fault(body):
    return '{envoy.filters.http.fault: {"@type": %s, %s}}' % (FAULT, body)


routes = [
    ("/delay", fault('delay: {fixed_delay: 0.3s, percentage: {numerator: 100}}')),
    ("/abort50", fault('abort: {http_status: 503, percentage: {numerator: 5000, denominator: TEN_THOUSAND}}')),
    ("/abort", fault('abort: {http_status: 418, percentage: {numerator: 1000000, denominator: MILLION}}')),
    ("/both", fault('delay: {fixed_delay: 0.2s, percentage: {numerator: 100}}, '
                    'abort: {http_status: 500, percentage: {numerator: 100}}')),
    ("/grpc", fault('abort: {grpc_status: 14, percentage: {numerator: 100}}')),
    ("/match", fault('abort: {http_status: 403, percentage: {numerator: 100}}, '
                     'headers: [{name: x-fault, string_match: {exact: "yes"}}]')),
    ("/othercluster", fault('abort: {http_status: 403, percentage: {numerator: 100}}, upstream_cluster: nope')),
    ("/nodes", fault('abort: {http_status: 402, percentage: {numerator: 100}}, downstream_nodes: [node-a]')),
    ("/slowmax", fault('delay: {fixed_delay: 1s, percentage: {numerator: 100}}, max_active_faults: 2')),
    ("/rl", '{envoy.filters.http.local_ratelimit: {"@type": %s, stat_prefix: route_rl, '
            'token_bucket: {max_tokens: 5, tokens_per_fill: 5, fill_interval: 60s}, '
            'filter_enabled: {default_value: {numerator: 100}}, filter_enforced: {default_value: {numerator: 100}}, '
            'response_headers_to_add: [{header: {key: x-local-rate-limit, value: "true"}}]}}' % LRL),
    ("/shadowrl", '{envoy.filters.http.local_ratelimit: {"@type": %s, stat_prefix: shadow_rl, '
                  'token_bucket: {max_tokens: 2, tokens_per_fill: 1, fill_interval: 60s}, '
                  'filter_enabled: {default_value: {numerator: 100}}}}' % LRL),
    ("/refill", '{envoy.filters.http.local_ratelimit: {"@type": %s, stat_prefix: refill_rl, '
                'token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 0.2s}, '
                'filter_enabled: {default_value: {numerator: 100}}, filter_enforced: {default_value: {numerator: 100}}}}'
                % LRL),
]
rlines = ""
for prefix, cfg in routes:
    rlines += "              - match: {prefix: \"%s\"}\n                route: {cluster: a}\n" \
              "                typed_per_filter_config: %s\n" % (prefix, cfg)
rlines += "              - match: {prefix: \"/\"}\n                route: {cluster: a}\n"

listeners = """  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format: {text_format_source: {inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_FLAGS%%\\n"}}
          http_filters:
          - name: envoy.filters.http.fault
            typed_config:
              "@type": %s
              abort: {header_abort: {}, percentage: {numerator: 100}}
              delay: {header_delay: {}, percentage: {numerator: 100}}
          - name: envoy.filters.http.local_ratelimit
            typed_config: {"@type": %s, stat_prefix: hcm_rl}
          - %s
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
%s""" % (port, logf.name, FAULT, LRL, ROUTER, rlines)

proxy = Proxy(bootstrap(admin, listeners, static_cluster("a", [a])), admin)
base = "http://127.0.0.1:%d" % port
H2 = "--http2-prior-knowledge"


def timed(path, *args):
    t = time.time()
    st, h, body = curl(base + path, *args)
    return st, h, body, time.time() - t


def wait_stat(name, want, timeout=10):
    deadline = time.time() + timeout
    v = None
    while time.time() < deadline:
        v = proxy.stats().get(name)
        if v == want:
            return v
        time.sleep(0.05)
    return v


# --- no filter acting: the plain route ---
st, h, body, dt = timed("/plain")
check("route without faults reaches the backend", st == 200, (st, body))

# --- fixed delay ---
for proto in ([], [H2]):
    st, h, body, dt = timed("/delay", *proto)
    check("fixed delay 0.3s %s" % ("h2" if proto else "h1"), st == 200 and dt >= 0.29, (st, dt))

# A delay is a timer, not a blocked worker: 16 concurrent delayed requests on 2 workers end
# together (blocking would take 16 x 0.3 s / 2 workers = 2.4 s at least).
t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    res = list(ex.map(lambda i: curl(base + "/delay")[0], range(16)))
total = time.time() - t0
check("16 concurrent delays overlap (the worker is not blocked)", all(r == 200 for r in res) and total < 2.0,
      (res, total))

# --- aborts ---
st, h, body = curl(base + "/abort")
check("abort http_status 418 (MILLION denominator)", st == 418 and body == "fault filter abort", (st, body))
st, h, body = curl(base + "/abort", H2)
check("abort over HTTP/2", st == 418, (st, body))

N = 400
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    codes = list(ex.map(lambda i: curl(base + "/abort50")[0], range(N)))
n503 = codes.count(503)
# 50% of 400: sd = 10; accept ±5 sd.
check("abort 50%% (TEN_THOUSAND) within tolerance: %d/%d" % (n503, N), 150 <= n503 <= 250 and
      codes.count(200) == N - n503, (n503, set(codes)))

st, h, body, dt = timed("/both")
check("delay then abort", st == 500 and dt >= 0.19, (st, dt))

st, h, body = curl(base + "/grpc", "-H", "content-type: application/grpc", H2)
check("grpc_status abort is a trailers-only 200 with grpc-status 14", st == 200 and h.get("grpc-status") == "14",
      (st, h))
st, h, body = curl(base + "/grpc")
check("grpc_status abort to a plain HTTP/1.1 client", st == 200 and h.get("grpc-status") == "14", (st, h))

check("headers match: no header, no fault", curl(base + "/match")[0] == 200)
check("headers match: matching header aborts", curl(base + "/match", "-H", "x-fault: yes")[0] == 403)
check("upstream_cluster of another cluster: no fault", curl(base + "/othercluster")[0] == 200)
check("downstream_nodes: other node, no fault",
      curl(base + "/nodes", "-H", "x-envoy-downstream-service-node: node-b")[0] == 200)
check("downstream_nodes: listed node aborts",
      curl(base + "/nodes", "-H", "x-envoy-downstream-service-node: node-a")[0] == 402)

# --- header-controlled faults (the HCM-level config) ---
check("x-envoy-fault-abort-request", curl(base + "/", "-H", "x-envoy-fault-abort-request: 429")[0] == 429)
st, h, body = curl(base + "/", "-H", "x-envoy-fault-abort-grpc-request: 5", "-H", "content-type: application/grpc", H2)
check("x-envoy-fault-abort-grpc-request", st == 200 and h.get("grpc-status") == "5", (st, h))
check("x-envoy-fault-abort-request-percentage 0 disables it",
      curl(base + "/", "-H", "x-envoy-fault-abort-request: 429", "-H",
           "x-envoy-fault-abort-request-percentage: 0")[0] == 200)
st, h, body, dt = timed("/", "-H", "x-envoy-fault-delay-request: 250")
check("x-envoy-fault-delay-request 250 ms", st == 200 and dt >= 0.24, (st, dt))
check("invalid abort header value ignored", curl(base + "/", "-H", "x-envoy-fault-abort-request: 99")[0] == 200)

# --- max_active_faults ---
before = proxy.stats().get("http.ingress.fault.faults_overflow", 0)
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    futs = [ex.submit(timed, "/slowmax") for _ in range(4)]
    out = [f.result() for f in futs]
slow = sum(1 for o in out if o[3] >= 0.95)
check("max_active_faults 2: at most 2 of 4 concurrent requests delayed", 1 <= slow <= 2 and all(o[0] == 200 for o in out),
      [(o[0], round(o[3], 2)) for o in out])
check("faults_overflow counted", proxy.stats().get("http.ingress.fault.faults_overflow", 0) - before == 4 - slow,
      proxy.stats().get("http.ingress.fault.faults_overflow"))
check("active_faults back to 0", wait_stat("http.ingress.fault.active_faults", 0) == 0)

s = proxy.stats()
check("fault.delays_injected counted", s.get("http.ingress.fault.delays_injected", 0) >= 2 + 16 + 1 + 1 + slow, s.get(
    "http.ingress.fault.delays_injected"))
check("fault.aborts_injected counted", s.get("http.ingress.fault.aborts_injected", 0) >= 2 + n503 + 1 + 2 + 4,
      s.get("http.ingress.fault.aborts_injected"))

# --- local rate limit ---
with concurrent.futures.ThreadPoolExecutor(10) as ex:
    rl = list(ex.map(lambda i: curl(base + "/rl"), range(20)))
ok = [r for r in rl if r[0] == 200]
limited = [r for r in rl if r[0] == 429]
check("token bucket of 5 lets 5 of 20 through (shared by both workers)", len(ok) == 5 and len(limited) == 15,
      [r[0] for r in rl])
check("429 carries x-envoy-ratelimited and response_headers_to_add",
      limited and all(r[1].get("x-envoy-ratelimited") == "true" and r[1].get("x-local-rate-limit") == "true"
                      for r in limited), limited[:1])
check("429 body local_rate_limited", limited and limited[0][2] == "local_rate_limited", limited[:1])
st, h, body = curl(base + "/rl", H2)
check("rate limited over HTTP/2 too", st == 429 and h.get("x-envoy-ratelimited") == "true", (st, h))
st, h, body = curl(base + "/rl", H2, "-H", "content-type: application/grpc")
check("gRPC request rate limited: grpc-status 14 (UNAVAILABLE)", st == 200 and h.get("grpc-status") == "14", (st, h))
s = proxy.stats()
check("route_rl.http_local_rate_limit stats", s.get("route_rl.http_local_rate_limit.enabled") == 22 and
      s.get("route_rl.http_local_rate_limit.ok") == 5 and s.get("route_rl.http_local_rate_limit.rate_limited") == 17
      and s.get("route_rl.http_local_rate_limit.enforced") == 17,
      {k: v for k, v in s.items() if "route_rl" in k})

codes = [curl(base + "/shadowrl")[0] for _ in range(5)]
s = proxy.stats()
check("filter_enforced unset (0%): counted as rate_limited, not enforced", codes == [200] * 5 and
      s.get("shadow_rl.http_local_rate_limit.rate_limited") == 3 and
      s.get("shadow_rl.http_local_rate_limit.enforced") == 0, (codes, {k: v for k, v in s.items() if "shadow" in k}))
check("HCM-level local_ratelimit without a bucket does nothing",
      s.get("hcm_rl.http_local_rate_limit.enabled", 0) == 0)

c1 = curl(base + "/refill")[0]
c2 = curl(base + "/refill")[0]
time.sleep(0.45)
c3 = curl(base + "/refill")[0]
check("bucket refills after fill_interval", (c1, c2, c3) == (200, 429, 200), (c1, c2, c3))

# --- response flags in the access log ---
deadline = time.time() + 5
lines = []
while time.time() < deadline:
    lines = open(logf.name).read().splitlines()
    if any(l.startswith("/refill") for l in lines) and len(lines) > 450:
        break
    time.sleep(0.1)
check("access log: DI on delayed requests", any(l == "/delay 200 DI" for l in lines), lines[:5])
check("access log: FI on aborts", any(l == "/abort 418 FI" for l in lines), [l for l in lines if "/abort " in l][:3])
check("access log: DI,FI on delay then abort", any(l == "/both 500 DI,FI" for l in lines),
      [l for l in lines if "/both" in l][:3])
check("access log: RL on rate limited", any(l == "/rl 429 RL" for l in lines), [l for l in lines if "/rl " in l][:3])
check("access log: plain route has no flags", any(l == "/plain 200 -" for l in lines),
      [l for l in lines if "/plain" in l][:3])

# --- config errors name the field ---
bad = listeners.replace("abort: {header_abort: {}, percentage: {numerator: 100}}", "abort: {http_status: 700}")
rc, out = run_proxy_expect_fail(bootstrap(free_port(), bad, static_cluster("a", [a])))
check("abort http_status out of range is refused", rc != 0 and "http_status" in out, out[-300:])
bad = listeners.replace("fill_interval: 0.2s", "fill_interval: 0.01s")
rc, out = run_proxy_expect_fail(bootstrap(free_port(), bad, static_cluster("a", [a])))
check("fill_interval below 50ms is refused", rc != 0 and "fill_interval" in out, out[-300:])

check("proxy still running", proxy.p.poll() is None, proxy.output()[-2000:])
check("proxy exits cleanly", proxy.stop() == 0, proxy.output()[-3000:])
os.unlink(logf.name)
finish()
