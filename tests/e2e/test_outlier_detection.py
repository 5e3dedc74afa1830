#!/usr/bin/python3
"""Outlier detection (Cluster.outlier_detection) with the real weft-proxy and weft-echo
backends that turn bad on command (--fail-file), under concurrent load: consecutive 5xx
ejection, traffic going to the healthy hosts only, the host's return after base_ejection_time
(and twice that after a second ejection), consecutive gateway failure detected but not enforced
(Envoy's default), local-origin ejection with split_external_local_origin_errors, success-rate
and failure-percentage ejection, panic mode (common_lb_config.healthy_panic_threshold), the
outlier_detection.* stats and /clusters health flags."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from resilience import *  # noqa

ADMIN, PORT = 22050, 22060
A, B, C, D, DEAD = 22051, 22052, 22053, 22054, 22059
sw_b, sw_d = FailSwitch(), FailSwitch()
echo(A, "a")
echo(B, "b", "--fail-file", sw_b.path, "--fail-status", "503")
echo(C, "c")
echo(D, "d", "--fail-file", sw_d.path, "--fail-status", "500")

routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: ['
          + ",".join('{match: {prefix: "/%s"}, route: {cluster: %s}}' % (c, c) for c in ("pan", "lo", "sr", "fp"))
          + ',{match: {prefix: "/"}, route: {cluster: od}}]}]')
OD = "    outlier_detection: {%s}"
cluster_yaml = (
    static_cluster("od", [A, B, C], extra=OD % "consecutive_5xx: 3, consecutive_gateway_failure: 3, interval: 0.2s, "
                   "base_ejection_time: 1s, max_ejection_percent: 50") +
    static_cluster("pan", [D, A], extra=OD % "consecutive_5xx: 3, interval: 0.2s, base_ejection_time: 30s" +
                   "\n    common_lb_config: {healthy_panic_threshold: {value: 60}}") +
    static_cluster("lo", [A, DEAD], extra=OD % "split_external_local_origin_errors: true, "
                   "consecutive_local_origin_failure: 2, interval: 0.2s, base_ejection_time: 30s") +
    static_cluster("sr", [A, C, D], extra=OD % "consecutive_5xx: 100000, interval: 0.5s, base_ejection_time: 30s, "
                   "success_rate_minimum_hosts: 3, success_rate_request_volume: 10, success_rate_stdev_factor: 1000, "
                   "max_ejection_percent: 100") +
    static_cluster("fp", [A, D], extra=OD % "consecutive_5xx: 100000, interval: 0.5s, base_ejection_time: 30s, "
                   "failure_percentage_threshold: 50, failure_percentage_minimum_hosts: 2, "
                   "failure_percentage_request_volume: 10, enforcing_failure_percentage: 100, "
                   "enforcing_success_rate: 0"))
proxy = Proxy(bootstrap(ADMIN, http_listener("in", PORT, route_config=routes), cluster_yaml), ADMIN)
HB, HD, HDEAD = "127.0.0.1:%d" % B, "127.0.0.1:%d" % D, "127.0.0.1:%d" % DEAD


def flags(cluster, host):
    return clusters_of(cluster, host).get("health_flags")


def clusters_of(cluster, host):
    return clusters(proxy).get((cluster, host), {})


res = load(PORT, 30, "/", threads=6)
check("all hosts serve while healthy", set(served_by(res)) == {"a", "b", "c"}, served_by(res))

# --- consecutive 5xx: b turns bad, is ejected, traffic goes to a and c ---
sw_b.on()
load(PORT, 30, "/", threads=6)
t_eject = poll(lambda: flags("od", HB) == "/failed_outlier_check" and time.time())
check("b is ejected after consecutive 5xx: /clusters says failed_outlier_check", bool(t_eject), clusters(proxy))
s = proxy.stats()
check("ejection stats", s.get("cluster.od.outlier_detection.ejections_active") == 1 and
      s.get("cluster.od.outlier_detection.ejections_enforced_consecutive_5xx", 0) >= 1 and
      s.get("cluster.od.outlier_detection.ejections_detected_consecutive_5xx", 0) >= 1 and
      s.get("cluster.od.outlier_detection.ejections_enforced_total", 0) >= 1,
      {k: v for k, v in s.items() if "cluster.od.outlier" in k})
check("consecutive gateway failure is detected but not enforced (enforcing default 0)",
      s.get("cluster.od.outlier_detection.ejections_detected_consecutive_gateway_failure", 0) >= 1 and
      s.get("cluster.od.outlier_detection.ejections_enforced_consecutive_gateway_failure") == 0)
check("membership_healthy follows the ejection", s.get("cluster.od.membership_healthy") == 2)
res = load(PORT, 60, "/", threads=8)
by = served_by(res)
check("while b is ejected only a and c serve, all 200", set(by) == {"a", "c"} and sum(by.values()) == 60, by)

# --- b becomes good again and returns after base_ejection_time (1 s) ---
sw_b.off()
t_back = poll(lambda: flags("od", HB) == "healthy" and time.time(), timeout=15)
check("b returns after base_ejection_time", bool(t_back) and t_back - t_eject >= 0.9,
      (t_back and t_back - t_eject, clusters_of("od", HB)))
res = load(PORT, 30, "/", threads=6)
check("b serves again", "b" in served_by(res), served_by(res))
check("ejections_active back to 0", proxy.stats().get("cluster.od.outlier_detection.ejections_active") == 0)

# --- a second ejection lasts base_ejection_time × 2 ---
sw_b.on()
load(PORT, 30, "/", threads=6)
t2 = poll(lambda: flags("od", HB) == "/failed_outlier_check" and time.time())
sw_b.off()
t2_back = poll(lambda: flags("od", HB) == "healthy" and time.time(), timeout=15)
check("second ejection lasts about 2 s (base × number of ejections)",
      bool(t2) and bool(t2_back) and t2_back - t2 >= 1.8, (t2, t2_back))

# --- panic: with d ejected, 1 of 2 hosts healthy is under the 60 % threshold: both serve ---
sw_d.on()
load(PORT, 20, "/pan", threads=4)
check("d is ejected in cluster pan", poll(lambda: flags("pan", HD) == "/failed_outlier_check"), clusters(proxy))
p0 = proxy.stats().get("cluster.pan.upstream_rq_lb_healthy_panic", 0)
res = load(PORT, 40, "/pan", threads=8)
by = served_by(res)
p1 = proxy.stats().get("cluster.pan.upstream_rq_lb_healthy_panic", 0)
check("panic mode: the ejected host still gets traffic", by.get("status:500", 0) > 0 and by.get("a", 0) > 0, by)
check("upstream_rq_lb_healthy_panic counts the panic picks", p1 - p0 == 40, (p0, p1))

# --- success rate: d answers 500 to everything (rate 0 % against 100 % for a and c) ---
load(PORT, 90, "/sr", threads=6)
check("success-rate ejection of d", poll(lambda: flags("sr", HD) == "/failed_outlier_check", timeout=10),
      clusters(proxy))
s = proxy.stats()
check("success rate stats", s.get("cluster.sr.outlier_detection.ejections_enforced_success_rate", 0) >= 1 and
      s.get("cluster.sr.outlier_detection.ejections_detected_success_rate", 0) >= 1, s)
check("/clusters shows a host's success_rate", clusters_of("sr", "127.0.0.1:%d" % A).get("success_rate") == "100.0",
      clusters_of("sr", "127.0.0.1:%d" % A))

# --- failure percentage ---
load(PORT, 60, "/fp", threads=6)
check("failure-percentage ejection of d", poll(lambda: flags("fp", HD) == "/failed_outlier_check", timeout=10),
      clusters(proxy))
s = proxy.stats()
check("failure percentage stats", s.get("cluster.fp.outlier_detection.ejections_enforced_failure_percentage", 0) >= 1)
sw_d.off()

# --- local origin (split): connection failures to a dead port eject it ---
res = load(PORT, 20, "/lo", threads=2)
check("dead host is ejected on local-origin failures", poll(lambda: flags("lo", HDEAD) == "/failed_outlier_check"),
      clusters(proxy))
s = proxy.stats()
check("local origin stats", s.get("cluster.lo.outlier_detection.ejections_enforced_consecutive_local_origin_failure",
                                  0) >= 1 and s.get("cluster.lo.outlier_detection.ejections_detected_consecutive_5xx") == 0,
      {k: v for k, v in s.items() if "cluster.lo.outlier" in k})
res = load(PORT, 30, "/lo", threads=6)
check("after that every request goes to the live host", served_by(res) == {"a": 30}, served_by(res))

# --- no leaks ---
st = poll(lambda: all(proxy.stats().get("cluster.%s.upstream_rq_active" % c) == 0 for c in
                      ("od", "pan", "lo", "sr", "fp")), 10)
check("no requests left active", bool(st))
check("proxy still running", proxy.p.poll() is None)
rc = proxy.stop()
check("weft-proxy exits cleanly (ASan: no leak or error)", rc == 0, proxy.output()[-3000:])
finish()
