#!/usr/bin/python3
"""slow_start_config (round_robin_lb_config / least_request_lb_config) with the real weft-proxy
and two weft-echo backends under active health checking: b fails its checks at first, then
passes them and so (re)enters slow start. Its share of requests starts small, as Envoy's
weight × max(min_weight_percent, (max(t, 1 s) / slow_start_window)^(1 / aggression)) says,
and is the full half once the window is over; min_weight_percent raises the starting share; a
cluster without slow start gives b half at once; a bad aggression is a config error."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from resilience import *  # noqa

WINDOW = 5.0
A, B = free_port(), free_port()
sw = FailSwitch()
sw.on()
echo(A, "a")
echo(B, "b", "--fail-file", sw.path, "--fail-status", "503")
HC = ("    health_checks:\n    - {timeout: 1s, interval: 0.1s, unhealthy_threshold: 1, healthy_threshold: 1, no_traffic_interval: 0.1s, "
      "http_health_check: {path: /healthz}}")


def cluster(name, lb="ROUND_ROBIN", cfg=None):
    extra = HC
    if cfg:
        key = "round_robin_lb_config" if lb == "ROUND_ROBIN" else "least_request_lb_config"
        extra += "\n    %s: {slow_start_config: {%s}}" % (key, cfg)
    return static_cluster(name, [A, B], lb=lb, extra=extra)


W = "slow_start_window: %gs" % WINDOW
names = ("ss", "ssmin", "sslr", "plain")
routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: [' +
          ",".join('{match: {prefix: "/%s/"}, route: {cluster: %s}}' % (n, n) for n in names) + "]}]")
clusters_yaml = (cluster("ss", cfg=W) + cluster("ssmin", cfg=W + ", min_weight_percent: {value: 50}") +
                 cluster("sslr", lb="LEAST_REQUEST", cfg=W + ", aggression: {default_value: 1.0, runtime_key: x}") +
                 cluster("plain"))
admin, port = free_port(), free_port()
proxy = Proxy(bootstrap(admin, http_listener("in", port, route_config=routes), clusters_yaml), admin)
HA, HB = "127.0.0.1:%d" % A, "127.0.0.1:%d" % B


def health(name, host):
    return clusters(proxy).get((name, host), {}).get("health_flags")


def share_b(name, n=120):
    by = served_by(load(port, n, "/%s/" % name, threads=4))
    return by.get("b", 0) / float(n), by


try:
    check("a healthy, b failing its checks in every cluster",
          poll(lambda: all(health(n, HA) == "healthy" and health(n, HB) != "healthy" for n in names)),
          clusters(proxy))
    # a passed its first check just now and is in slow start itself: let its window pass.
    time.sleep(WINDOW + 0.3)
    sw.off()
    check("b passes its checks", poll(lambda: all(health(n, HB) == "healthy" for n in names)), clusters(proxy))
    t0 = time.time()
    early = {n: share_b(n) for n in names}
    t_early = time.time() - t0
    print("early (%.1f s after b became healthy): %s" % (t_early, early))
    # At t <= ~1.5 s of a 5 s window: factor 1/5..3/10, so b's share is 17-23 %.
    check("round robin: b returning to healthy gets a small share first", early["ss"][0] < 0.3, early["ss"])
    check("least request: the same ramp", early["sslr"][0] < 0.3, early["sslr"])
    check("min_weight_percent 50: b starts at half weight (a third of the requests)",
          0.22 <= early["ssmin"][0] <= 0.45, early["ssmin"])
    check("without slow start b gets half at once", 0.35 <= early["plain"][0] <= 0.65, early["plain"])
    check("the early measurement was inside the window", t_early < WINDOW - 2, t_early)
    time.sleep(max(0.0, WINDOW + 0.5 - (time.time() - t0)))
    late = {n: share_b(n) for n in names}
    print("after the window: %s" % late)
    for n in names:
        check("%s: after the window b has its full share" % n, 0.38 <= late[n][0] <= 0.62, late[n])
    bad = bootstrap(free_port(), http_listener("x", free_port(), route_config=routes),
                    clusters_yaml.replace("aggression: {default_value: 1.0", "aggression: {default_value: 0"))
    rc, out = run_proxy_expect_fail(bad)
    check("aggression 0 is a config error naming the field", rc != 0 and "slow_start_config.aggression" in out, out)
finally:
    proxy.stop()
    sw.off()
finish()
