#!/usr/bin/python3
"""envoy.filters.network.local_ratelimit before tcp_proxy and before the HTTP connection
manager: connections beyond the token bucket (shared by both workers) are closed at once and
counted in local_ratelimit.<stat_prefix>.rate_limited; the bucket refills."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa


a = backend("a", free_port())
admin, tport, hport = free_port(), free_port(), free_port()
NRL = "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit"
listeners = """  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.local_ratelimit
        typed_config: {"@type": %s, stat_prefix: tcp_rl, token_bucket: {max_tokens: 3, tokens_per_fill: 3, fill_interval: 1s}}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: a
""" % (tport, NRL)
http = http_listener("http", hport, cluster="a")
http = http.replace("    - filters:\n", "    - filters:\n      - name: envoy.filters.network.local_ratelimit\n"
                    "        typed_config: {\"@type\": %s, stat_prefix: http_rl, token_bucket: {max_tokens: 2, "
                    "tokens_per_fill: 2, fill_interval: 60s}}\n" % NRL, 1)
proxy = Proxy(bootstrap(admin, listeners + http, static_cluster("a", [a])), admin)


def tcp_get(port):
    """One HTTP/1.1 request on a fresh connection; the status code, or 0 when closed without one."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
        s.close()
        return int(out.split()[1]) if out.startswith(b"HTTP/1.1") else 0
    except OSError:
        return 0


codes = [tcp_get(tport) for _ in range(6)]
check("tcp_proxy: 3 connections pass, 3 are closed: %s" % codes, codes.count(200) == 3 and codes.count(0) == 3, codes)
check("local_ratelimit.tcp_rl.rate_limited == 3", proxy.stats().get("local_ratelimit.tcp_rl.rate_limited") == 3,
      proxy.stats().get("local_ratelimit.tcp_rl.rate_limited"))
time.sleep(1.2)
check("bucket refilled after fill_interval", tcp_get(tport) == 200)

codes = [tcp_get(hport) for _ in range(4)]
check("HTTP connection manager: 2 connections pass, 2 are closed: %s" % codes,
      codes.count(200) == 2 and codes.count(0) == 2, codes)
check("local_ratelimit.http_rl.rate_limited == 2", proxy.stats().get("local_ratelimit.http_rl.rate_limited") == 2)

bad = listeners.replace("fill_interval: 1s", "fill_interval: 0.01s")
rc, out = run_proxy_expect_fail(bootstrap(free_port(), bad, static_cluster("a", [a])))
check("fill_interval below 50ms is refused", rc != 0 and "fill_interval" in out, (rc, out[-300:]))
check("proxy still running", proxy.p.poll() is None, proxy.output()[-1000:])
check("proxy exits cleanly", proxy.stop() == 0, proxy.output()[-3000:])
finish()
