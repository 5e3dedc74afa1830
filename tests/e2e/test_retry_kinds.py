#!/usr/bin/python3
"""Every retry_on kind of RetryPolicy against real backends (backend.py failing the first N
requests of a key, weft-echo turned bad with --fail-file, a port nobody listens on): reset,
connect-failure, retriable-4xx (409 only), retriable-status-codes (route and
x-envoy-retriable-status-codes), retriable-headers, the gRPC ones (grpc-status in a
trailers-only head; grpc-status in trailers after a body is an answer already), per_try_timeout,
retry_back_off timing, previous_hosts with host_selection_retry_max_attempts, and the circuit
breaker's max_retries (upstream_rq_retry_overflow, flag UO) vs exhausted retries (URX), as
Envoy does them."""
import itertools
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from resilience import *  # noqa

BE = backend("be")
GOOD, BAD = free_port(), free_port()
bad_switch = FailSwitch()
bad_switch.on()
echo(GOOD, "good")
echo(BAD, "bad", "--fail-file", bad_switch.path, "--fail-status", "503")
DEAD = free_port()  # nobody listens: connect failure
admin, port = free_port(), free_port()
log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
access = file_access_log(log, "%REQ(X-FAIL-KEY)% %RESPONSE_CODE% %RESPONSE_FLAGS%")
PH = "retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}]"


def route(prefix, cluster, policy):
    return '  - match: {prefix: "%s"}\n    route: {cluster: %s, retry_policy: {%s}}\n' % (prefix, cluster, policy)


routes = ("virtual_hosts:\n- name: all\n  domains: [\"*\"]\n  include_request_attempt_count: true\n  routes:\n" +
          route("/reset", "be", "retry_on: reset, num_retries: 2") +
          route("/cf-only", "be", "retry_on: connect-failure, num_retries: 2") +
          route("/cf", "deadgood", 'retry_on: connect-failure, num_retries: 1, ' + PH) +
          route("/4xx", "be", "retry_on: retriable-4xx, num_retries: 1") +
          route("/codes", "be", "retry_on: retriable-status-codes, retriable_status_codes: [418], num_retries: 1") +
          route("/hdrs", "be", 'retry_on: retriable-headers, num_retries: 1, retriable_headers: '
                '[{name: x-upstream-retry, string_match: {exact: "yes"}}]') +
          route("/grpc", "be", "retry_on: \"cancelled,deadline-exceeded,internal,resource-exhausted,unavailable\", "
                "num_retries: 1") +
          route("/pertry", "be", "retry_on: 5xx, num_retries: 1, per_try_timeout: 0.3s") +
          route("/slowbackoff", "many", "retry_on: 5xx, num_retries: 3, "
                "retry_back_off: {base_interval: 0.2s, max_interval: 0.4s}") +
          route("/fastbackoff", "many", "retry_on: 5xx, num_retries: 3") +
          route("/hostsel", "badgood", "retry_on: 5xx, num_retries: 1, host_selection_retry_max_attempts: 20, " + PH) +
          route("/nopred", "badgood", "retry_on: 5xx, num_retries: 1") +
          route("/budget", "budget", "retry_on: 5xx, num_retries: 3") +
          '  - match: {prefix: "/"}\n    route: {cluster: be}\n')
clusters_yaml = (static_cluster("be", [BE]) + static_cluster("deadgood", [DEAD, BE]) +
                 static_cluster("badgood", [BAD, GOOD], lb="RANDOM") +
                 static_cluster("many", [BE], extra="    circuit_breakers: {thresholds: [{max_retries: 100}]}") +
                 static_cluster("budget", [BE], extra="    circuit_breakers: {thresholds: [{max_retries: 1}]}"))
proxy = Proxy(bootstrap(admin, http_listener("in", port, extra=access, route_config=routes), clusters_yaml), admin)
keys = itertools.count()


def ask(path, fail_times=0, **hdrs):
    """One request with a fresh fail key; returns (status, body, headers, key)."""
    key = "k%d" % next(keys)
    h = {"x-fail-key": key, "x-fail-times": str(fail_times)}
    h.update({k.replace("_", "-"): str(v) for k, v in hdrs.items()})
    st, body, rh = get(port, path, h)
    return st, body, rh, key


def stat(name, cluster="be"):
    return proxy.stats().get("cluster.%s.%s" % (cluster, name), 0)


def retries(cluster="be"):
    return stat("upstream_rq_retry", cluster)


def flags_of(key):
    """The access log's response flags of the request with that fail key (polled: the log is
    written when the stream ends)."""
    def find():
        with open(log) as f:
            for line in f:
                p = line.split()
                if p and p[0] == key:
                    return p[2]
        return None
    return poll(find, timeout=5)


def attempts(body):
    try:
        return int(json.loads(body)["headers"].get("x-envoy-attempt-count", "0"))
    except (ValueError, KeyError):
        return 0


try:
    # --- reset ---
    r0 = retries()
    st, body, _, _ = ask("/reset", 1, x_reset=1)
    check("reset: an upstream reset is retried, the second attempt answers",
          st == 200 and attempts(body) == 2 and retries() - r0 == 1, (st, body[:200], retries() - r0))
    r0 = retries()
    st, _, _, key = ask("/reset", 9, x_reset=1)
    check("reset: exhausted after num_retries (2): 503 with UC,URX",
          st == 503 and retries() - r0 == 2 and flags_of(key) == "UC,URX", (st, retries() - r0, flags_of(key)))
    r0 = retries()
    st, _, _, key = ask("/cf-only", 1, x_reset=1)
    check("connect-failure does not cover a reset after connecting: 503 UC, no retry",
          st == 503 and retries() == r0 and flags_of(key) == "UC", (st, retries() - r0, flags_of(key)))
    st, _, _, _ = ask("/cf-only", 1, x_status=503)
    check("connect-failure does not retry a 503 answer", st == 503 and retries() == r0, st)

    # --- connect-failure: a dead host, then previous_hosts picks the live one ---
    r0 = retries("deadgood")
    res = [ask("/cf") for _ in range(12)]
    check("connect-failure: every request ends 200 (dead host retried on the live one)",
          all(x[0] == 200 for x in res), [x[0] for x in res])
    check("connect-failure: retries counted (one per request that hit the dead host first)",
          0 < retries("deadgood") - r0 <= 12, retries("deadgood") - r0)
    check("connect-failure: upstream_cx_connect_fail counted", stat("upstream_cx_connect_fail", "deadgood") >= 1,
          stat("upstream_cx_connect_fail", "deadgood"))

    # --- retriable-4xx: 409 only ---
    r0 = retries()
    st, body, _, _ = ask("/4xx", 1, x_status=409)
    check("retriable-4xx: a 409 is retried", st == 200 and attempts(body) == 2 and retries() - r0 == 1,
          (st, retries() - r0))
    for code in (400, 404, 429):
        r0 = retries()
        st, _, _, _ = ask("/4xx", 1, x_status=code)
        check("retriable-4xx: a %d is not retried" % code, st == code and retries() == r0, (st, retries() - r0))
    st, _, _, key = ask("/4xx", 5, x_status=409)
    check("retriable-4xx: exhausted: the 409 is passed on with URX", st == 409 and flags_of(key) == "URX",
          (st, flags_of(key)))

    # --- retriable-status-codes ---
    r0 = retries()
    st, body, _, _ = ask("/codes", 1, x_status=418)
    check("retriable_status_codes [418]: a 418 is retried", st == 200 and retries() - r0 == 1, (st, retries() - r0))
    r0 = retries()
    st, _, _, _ = ask("/codes", 1, x_status=503)
    check("retriable-status-codes alone does not retry a 503", st == 503 and retries() == r0, st)
    r0 = retries()
    st, _, _, _ = ask("/plain", 1, x_status=429, x_envoy_retry_on="retriable-status-codes",
                      x_envoy_retriable_status_codes="429,430")
    check("x-envoy-retriable-status-codes on a route without a policy: a 429 is retried",
          st == 200 and retries() - r0 == 1, (st, retries() - r0))

    # --- retriable-headers ---
    r0 = retries()
    st, _, _, _ = ask("/hdrs", 1, x_add_header="x-upstream-retry: yes")
    check("retriable-headers: a 200 carrying x-upstream-retry: yes is retried", st == 200 and retries() - r0 == 1,
          (st, retries() - r0))
    r0 = retries()
    st, _, rh, key = ask("/hdrs", 5, x_add_header="x-upstream-retry: no")
    check("retriable-headers: a header that does not match is the answer", st == 200 and retries() == r0 and
          rh.get("x-upstream-retry") == "no", (st, retries() - r0))
    st, _, rh, key = ask("/hdrs", 5, x_add_header="x-upstream-retry: yes")
    check("retriable-headers: exhausted: the matching answer is passed on with URX",
          st == 200 and rh.get("x-upstream-retry") == "yes" and flags_of(key) == "URX", (st, flags_of(key)))

    # --- gRPC: grpc-status in a trailers-only head ---
    G = {"content_type": "application/grpc", "te": "trailers"}
    for name, code in (("cancelled", 1), ("deadline-exceeded", 4), ("internal", 13), ("resource-exhausted", 8),
                       ("unavailable", 14)):
        r0 = retries()
        st, _, rh, _ = ask("/grpc", 1, x_grpc_status=code, **G)
        check("gRPC %s (grpc-status %d in the head) is retried" % (name, code),
              st == 200 and retries() - r0 == 1, (st, rh.get("grpc-status"), retries() - r0))
    r0 = retries()
    st, _, rh, _ = ask("/grpc", 1, x_grpc_status=5, **G)
    check("gRPC NOT_FOUND (5) is not retried", st == 200 and rh.get("grpc-status") == "5" and retries() == r0,
          (st, rh, retries() - r0))
    r0 = retries()
    st, _, rh, _ = ask("/grpc", 1, x_grpc_trailer=14, **G)
    check("grpc-status 14 in trailers after a body: the response had started, not retried",
          st == 200 and retries() == r0, (st, retries() - r0))
    r0 = retries()
    st, _, rh, _ = ask("/grpc", 1, x_grpc_status=14, content_type="application/json")
    check("grpc-status on a request that is not gRPC does not count", st == 200 and retries() == r0 and
          rh.get("grpc-status") == "14", (st, retries() - r0))
    r0 = retries()
    st, _, _, _ = ask("/plain", 1, x_grpc_status=8, x_envoy_retry_grpc_on="resource-exhausted", **G)
    check("x-envoy-retry-grpc-on on a route without a policy", st == 200 and retries() - r0 == 1,
          (st, retries() - r0))

    # --- per_try_timeout ---
    p0, r0 = stat("upstream_rq_per_try_timeout"), retries()
    t0 = time.time()
    st, body, _, _ = ask("/pertry", 1, x_delay_ms=3000)
    dt = time.time() - t0
    check("per_try_timeout (0.3 s): a slow first try is abandoned, the retry answers fast",
          st == 200 and attempts(body) == 2 and dt < 2.5 and stat("upstream_rq_per_try_timeout") - p0 == 1 and
          retries() - r0 == 1, (st, dt, stat("upstream_rq_per_try_timeout") - p0))
    p0 = stat("upstream_rq_per_try_timeout")
    st, body, _, key = ask("/pertry", 5, x_delay_ms=3000)
    check("per_try_timeout on the last try: 504 with flag UT",
          st == 504 and stat("upstream_rq_per_try_timeout") - p0 == 2 and "UT" in (flags_of(key) or "").split(","),
          (st, body, flags_of(key)))

    # --- retry_back_off: jittered exponential, capped by max_interval ---
    def timed(path, n):
        def one():
            t = time.time()
            st = ask(path, 9, x_status=503)[0]
            return st, time.time() - t
        return parallel(one, n)
    # (cluster "many": max_retries 100, so that 12 requests at once all get their retries)
    b0 = stat("upstream_rq_retry_backoff_exponential", "many")
    slow = timed("/slowbackoff", 12)
    fast = timed("/fastbackoff", 12)
    mean_slow = sum(d for _, d in slow) / len(slow)
    mean_fast = sum(d for _, d in fast) / len(fast)
    # base 0.2 s, max 0.4 s: three back-offs uniform in [0, 0.2), [0, 0.6)∧0.4, [0, 1.4)∧0.4:
    # mean about 0.71 s, never more than 1.0 s. The default (25 ms, 250 ms) means ~0.14 s.
    check("retry_back_off: base_interval 0.2 s makes the three back-offs take about 0.7 s (mean %.2f s)" % mean_slow,
          0.35 <= mean_slow <= 1.4 and all(st == 503 for st, _ in slow), slow)
    check("retry_back_off: max_interval caps each back-off (no request over 1.0 s + slack)",
          max(d for _, d in slow) < 3.0, slow)
    check("retry_back_off default 25 ms is much shorter (mean %.2f s)" % mean_fast, mean_fast < mean_slow, fast)
    check("upstream_rq_retry_backoff_exponential counts every back-off",
          stat("upstream_rq_retry_backoff_exponential", "many") - b0 == 72,
          stat("upstream_rq_retry_backoff_exponential", "many") - b0)

    # --- previous_hosts + host_selection_retry_max_attempts (RANDOM over a bad and a good host) ---
    res = [get(port, "/hostsel") for _ in range(40)]
    check("host_selection_retry_max_attempts 20: the retry never lands on the host tried already",
          all(st == 200 for st, _, _ in res), served_by(res))
    res = [get(port, "/nopred") for _ in range(40)]
    check("without the predicate some retries land on the bad host again (503 passed on)",
          any(st == 503 for st, _, _ in res), served_by(res))

    # --- circuit breaker max_retries (1) ---
    o0 = stat("upstream_rq_retry_overflow", "budget")
    out = parallel(lambda: ask("/budget", 9, x_status=503, x_delay_ms=400), 6)
    fl = [flags_of(r[3]) for r in out]
    check("max_retries 1: concurrent retries overflow: upstream_rq_retry_overflow counted",
          stat("upstream_rq_retry_overflow", "budget") - o0 >= 1, stat("upstream_rq_retry_overflow", "budget") - o0)
    check("max_retries overflow: the 503 is passed on with UO; a request that used all its retries has URX",
          all(r[0] == 503 for r in out) and "UO" in fl and all(f in ("UO", "URX") for f in fl), fl)
    check("circuit_breakers.default.rq_retry_open back to 0",
          poll(lambda: proxy.stats().get("cluster.budget.circuit_breakers.default.rq_retry_open") == 0),
          proxy.stats().get("cluster.budget.circuit_breakers.default.rq_retry_open"))
    s = proxy.stats()
    check("no request left active", s["http.ingress.downstream_rq_active"] == 0, s["http.ingress.downstream_rq_active"])
finally:
    proxy.stop()
    bad_switch.off()
    os.unlink(log)
finish()
