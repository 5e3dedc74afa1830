#!/usr/bin/python3
"""Active health checks (Cluster.health_checks) with the real weft-proxy and weft-echo
backends that fail on command (--fail-file): HTTP checks (path, request_headers_to_add,
expected_statuses), TCP checks (hex send/receive payloads), thresholds, a host failing its
checks leaving load balancing and coming back, network failures, no_traffic_interval, the
health_check.* stats and /clusters health flags."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from resilience import *  # noqa

ADMIN, PORT = 22100, 22110
H1, H2, DEAD = 22101, 22102, 22109
sw = FailSwitch()
echo(H1, "h1", "--fail-file", sw.path, "--fail-status", "503")
echo(H2, "h2")

HC = ("    health_checks:\n    - {timeout: 1s, interval: 0.2s, unhealthy_threshold: 2, healthy_threshold: 2, "
      "no_traffic_interval: %s, %s}")
http_hc = ('http_health_check: {path: /healthz, request_headers_to_add: [{header: {key: x-hc, value: weft}}], '
           'expected_statuses: [{start: 200, end: 300}]}')
probe = "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode().hex()
tcp_hc = 'tcp_health_check: {send: {text: "%s"}, receive: [{text: "%s"}, {text: "%s"}]}' % (
    probe, b"HTTP/1.1 ".hex(), b"200".hex())
routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: ['
          '{match: {prefix: "/tcp"}, route: {cluster: tcp}},'
          '{match: {prefix: "/dead"}, route: {cluster: dead}},'
          '{match: {prefix: "/"}, route: {cluster: hc}}]}]')
cluster_yaml = (static_cluster("hc", [H1, H2], extra=HC % ("0.2s", http_hc)) +
                static_cluster("tcp", [H1, H2], extra=HC % ("0.2s", tcp_hc)) +
                static_cluster("dead", [H2, DEAD], extra=HC % ("0.2s", http_hc)) +
                static_cluster("idle", [H2], extra=HC % ("60s", http_hc)))
proxy = Proxy(bootstrap(ADMIN, http_listener("in", PORT, route_config=routes), cluster_yaml), ADMIN)
K1, K2, KD = "127.0.0.1:%d" % H1, "127.0.0.1:%d" % H2, "127.0.0.1:%d" % DEAD


def flags(cluster, host):
    return clusters(proxy).get((cluster, host), {}).get("health_flags")


def all_healthy(cluster, hosts):
    return all(flags(cluster, h) == "healthy" for h in hosts)


check("hosts pass their first check and turn healthy", poll(lambda: all_healthy("hc", [K1, K2])), clusters(proxy))
check("TCP check: hosts healthy", poll(lambda: all_healthy("tcp", [K1, K2])), clusters(proxy))
s = proxy.stats()
check("health_check stats", s.get("cluster.hc.health_check.healthy") == 2 and
      s.get("cluster.hc.health_check.attempt", 0) >= 2 and s.get("cluster.hc.health_check.success", 0) >= 2,
      {k: v for k, v in s.items() if ".health_check." in k})
res = load(PORT, 30, "/", threads=6)
check("both hosts serve", set(served_by(res)) == {"h1", "h2"}, served_by(res))

# --- h1 fails its checks: after unhealthy_threshold failures it leaves load balancing ---
sw.on()
check("h1 is marked failed_active_hc", poll(lambda: flags("hc", K1) == "/failed_active_hc" and
                                            proxy.stats().get("cluster.hc.membership_healthy") == 1), clusters(proxy))
check("TCP check (receive payload not found) marks h1 too", poll(lambda: flags("tcp", K1) == "/failed_active_hc"),
      clusters(proxy))
s = proxy.stats()
check("failures counted, healthy gauge 1", s.get("cluster.hc.health_check.failure", 0) >= 2 and
      s.get("cluster.hc.health_check.healthy") == 1 and s.get("cluster.hc.membership_healthy") == 1, s)
res = load(PORT, 40, "/", threads=8)
by = served_by(res)
check("only h2 serves while h1 fails its checks", by == {"h2": 40}, by)
res = load(PORT, 20, "/tcp", threads=4)
check("TCP-checked cluster: only h2", served_by(res) == {"h2": 20}, served_by(res))

# --- h1 recovers: healthy_threshold passing checks bring it back ---
sw.off()
check("h1 comes back", poll(lambda: all_healthy("hc", [K1, K2]) and all_healthy("tcp", [K1, K2])), clusters(proxy))
res = load(PORT, 30, "/", threads=6)
check("both serve again", set(served_by(res)) == {"h1", "h2"}, served_by(res))

# --- a host nobody listens on: network failures ---
check("a dead host is failed_active_hc, the live one healthy",
      poll(lambda: flags("dead", KD) == "/failed_active_hc" and flags("dead", K2) == "healthy"), clusters(proxy))
check("network_failure counted", proxy.stats().get("cluster.dead.health_check.network_failure", 0) >= 1)
res = load(PORT, 20, "/dead", threads=4)
check("traffic avoids the dead host", served_by(res) == {"h2": 20}, served_by(res))

# --- no_traffic_interval: a cluster that never carried a request is checked at that pace ---
a0 = proxy.stats().get("cluster.idle.health_check.attempt")
time.sleep(1.5)
a1 = proxy.stats().get("cluster.idle.health_check.attempt")
check("no traffic: only the first check within no_traffic_interval (60 s)", a0 == 1 and a1 == 1, (a0, a1))
hc_attempts = proxy.stats().get("cluster.hc.health_check.attempt", 0)
check("a cluster with traffic is checked every interval (0.2 s)", hc_attempts >= 8, hc_attempts)

# Rejected configs.
for extra, what in ((HC % ("1s", "") , "health_checker"),
                    ("    health_checks: [{interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, "
                     "http_health_check: {path: /}}]", "timeout"),
                    (HC % ("1s", 'tcp_health_check: {send: {text: "zz"}}'), "hex")):
    code, out = run_proxy_expect_fail(bootstrap(ADMIN, http_listener("in", PORT), static_cluster("x", [H2], extra=extra)))
    check("rejected: " + what, code != 0 and what in out, out)

st = poll(lambda: proxy.stats().get("cluster.hc.upstream_rq_active") == 0, 10)
check("no requests left active", bool(st))
rc = proxy.stop()
check("weft-proxy exits cleanly (ASan: no leak or error)", rc == 0, proxy.output()[-3000:])
finish()
