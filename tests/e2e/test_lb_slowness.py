#!/usr/bin/python3
"""LEAST_REQUEST reacts to slowness: with one slow host (weft-echo --delay-ms) and one fast, a
concurrent load through weft-proxy goes mostly to the fast host (P2C on active requests), and
with weights that differ, active_request_bias divides them by (active+1)^bias."""
import collections
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
import weft


def echo(name, delay_ms):
    port = free_port()
    p = subprocess.Popen([os.path.join(BIN, "weft-echo"), "--port", str(port), "--name", name, "--bind", "127.0.0.1",
                          "--delay-ms", str(delay_ms)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    weft._procs.append(p)
    wait_port(port)
    return port


fast, slow = echo("fast", 0), echo("slow", 300)
admin, port, port2 = free_port(), free_port(), free_port()
weights = """    load_assignment:
      cluster_name: w
      endpoints:
      - lb_endpoints:
        - {endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}, load_balancing_weight: 1}
        - {endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}, load_balancing_weight: 2}
""" % (fast, slow)
weighted = """  - name: w
    connect_timeout: 1s
    type: STATIC
    lb_policy: LEAST_REQUEST
    least_request_lb_config: {active_request_bias: {default_value: 2.0, runtime_key: lr.bias}}
""" + weights
listeners = http_listener("lr", port, cluster="lr") + http_listener("wl", port2, stat_prefix="wl", cluster="w")
proxy = Proxy(bootstrap(admin, listeners, static_cluster("lr", [fast, slow], lb="LEAST_REQUEST") + weighted), admin)


def load(p, n=200, conc=12):
    def one(_):
        st, h, body = curl("http://127.0.0.1:%d/" % p, timeout=20)
        try:
            return json.loads(body).get("service")
        except ValueError:
            return "error %d" % st
    with concurrent.futures.ThreadPoolExecutor(conc) as ex:
        return collections.Counter(ex.map(one, range(n)))


c = load(port)
check("least request (P2C): the fast host takes most of a concurrent load: %s" % dict(c),
      c["fast"] + c["slow"] == 200 and c["fast"] >= 1.4 * c["slow"], dict(c))
c = load(port2)
# P2C samples with replacement, so the slow host keeps about a quarter at least (both draws on
# it); round robin would give it half. With weights the slow host has twice the weight (round
# robin by weight: 2/3); with bias 2 its weight falls as its requests pile up.
check("least request with weights and active_request_bias 2: the fast host takes most: %s" % dict(c),
      c["fast"] + c["slow"] == 200 and c["fast"] > c["slow"], dict(c))
check("proxy still running", proxy.p.poll() is None, proxy.output()[-1000:])
check("proxy exits cleanly", proxy.stop() == 0, proxy.output()[-3000:])
finish()
