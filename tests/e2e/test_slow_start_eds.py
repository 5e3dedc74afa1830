#!/usr/bin/python3
"""slow_start_config for a host newly added by EDS: weft-proxy on ADS (lib/ads_server.py) with
an EDS cluster whose round_robin_lb_config has a 4 s slow_start_window. Once the first host is
past its own window, a second endpoint is pushed: it gets a small share of the requests first
(weight × max(0.1, max(t, 1 s) / 4 s)) and half of them after the window; the first host
keeps its full weight across the EDS update."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
import weft  # noqa: E402
from weft import check, finish  # noqa: E402
from resilience import echo, load, served_by, poll  # noqa: E402
import ads_server  # noqa: E402
from ads_server import CDS, EDS, LDS, RDS  # noqa: E402

WINDOW = 4.0
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def cla(ports):
    return {"cluster_name": "be-svc", "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}} for p in ports]}]}


A, B = weft.free_port(), weft.free_port()
echo(A, "a")
echo(B, "b")
ads_port, admin, lport = (weft.free_port() for _ in range(3))
ads = ads_server.AdsServer(ads_port).start()
ads.set(CDS, [{"name": "be", "type": "EDS", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
               "round_robin_lb_config": {"slow_start_config": {"slow_start_window": "%gs" % WINDOW}},
               "eds_cluster_config": {"service_name": "be-svc",
                                      "eds_config": {"ads": {}, "resource_api_version": "V3"}}}], "c1")
ads.set(EDS, [cla([A])], "e1")
ads.set(LDS, [{"name": "l1", "address": {"socket_address": {"address": "127.0.0.1", "port_value": lport}},
               "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                               "typed_config": {
                   "@type": HCM, "stat_prefix": "l1",
                   "rds": {"route_config_name": "r1", "config_source": {"ads": {}, "resource_api_version": "V3"}},
                   "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}]}]}],
        "l1")
ads.set(RDS, [{"name": "r1", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
    {"match": {"prefix": "/"}, "route": {"cluster": "be"}}]}]}], "r1")

BOOT = ads_server.bootstrap(admin, ads_port, "id: slow-start-test\ncluster: test")
proxy = weft.Proxy(BOOT, admin)


def share_b(n=120):
    by = served_by(load(lport, n, "/", threads=4))
    return by.get("b", 0) / float(n), by


try:
    check("traffic flows to the first endpoint",
          poll(lambda: served_by(load(lport, 4, "/", threads=1)) == {"a": 4}, timeout=10))
    time.sleep(WINDOW + 0.3)  # a joined just now: past its own window first
    ads.set(EDS, [cla([A, B])], "e2")
    t0 = time.time()
    check("the EDS update adds b", poll(lambda: "b" in served_by(load(lport, 4, "/", threads=1)), timeout=10))
    early, t_early = share_b(), time.time() - t0
    print("early (%.1f s after the update): %s" % (t_early, early))
    check("b, new from EDS, gets a small share first (factor 1/4 at 1 s: 20 %)", early[0] < 0.32, early)
    check("the early measurement was inside the window", t_early < WINDOW - 1.5, t_early)
    time.sleep(max(0.0, WINDOW + 0.5 - (time.time() - t0)))
    late = share_b()
    print("after the window: %s" % (late,))
    check("after the window b has its full share", 0.38 <= late[0] <= 0.62, late)
finally:
    proxy.stop()
    ads.stop()
finish()
