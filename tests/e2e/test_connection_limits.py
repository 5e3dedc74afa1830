#!/usr/bin/python3
"""Connection lifetime limits, as Envoy applies them, with the real weft-proxy and weft-echo:
  - downstream (HCM common_http_protocol_options): max_requests_per_connection (the last
    HTTP/1.1 response says Connection: close and the connection closes; HTTP/2 gets GOAWAY
    after the last stream) and max_connection_duration (drain: an idle HTTP/1.1 connection
    closes, an in-flight response carries Connection: close, HTTP/2 gets GOAWAY);
  - upstream (HttpProtocolOptions common_http_protocol_options): max_connection_duration
    (a connection is not reused past it and an idle one closes; HTTP/1.1 and HTTP/2) and
    max_requests_per_connection; with the stats downstream_cx_max_requests_reached,
    downstream_cx_max_duration_reached, upstream_cx_max_duration_reached,
    upstream_cx_max_requests;
  - circuit breaker max_connection_pools: a pool in use (one with a connection) beyond it is
    refused with 503 "no healthy upstream" and upstream_cx_pool_overflow."""
import os
import socket
import sys
import time

import re
import subprocess

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from resilience import *  # noqa

E, E2 = free_port(), free_port()
echo(E, "e")
echo(E2, "e2")
admin, p_rq, p_dur, p_up = free_port(), free_port(), free_port(), free_port()
HPO = """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: {%s}
        explicit_http_config: {%s}"""
routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: ['
          '{match: {prefix: "/up1"}, route: {cluster: up1}}, {match: {prefix: "/up2"}, route: {cluster: up2}},'
          '{match: {prefix: "/uprq"}, route: {cluster: uprq}}, {match: {prefix: "/pools"}, route: {cluster: pools}}, {match: {prefix: "/"}, route: {cluster: be}}]}]')
listeners = (http_listener("rq", p_rq, stat_prefix="rq", route_config=routes,
                           extra="common_http_protocol_options: {max_requests_per_connection: 3}") +
             http_listener("dur", p_dur, stat_prefix="dur", route_config=routes,
                           extra="common_http_protocol_options: {max_connection_duration: 1s}\ndrain_timeout: 1s") +
             http_listener("up", p_up, stat_prefix="up", route_config=routes))
clusters_yaml = (static_cluster("be", [E]) +
                 static_cluster("up1", [E], extra=HPO % ("max_connection_duration: 1s", "http_protocol_options: {}")) +
                 static_cluster("up2", [E], extra=HPO % ("max_connection_duration: 1s", "http2_protocol_options: {}")) +
                 static_cluster("pools", [E, E2], extra="    circuit_breakers: {thresholds: [{max_connection_pools: 1}]}") +
                 static_cluster("uprq", [E], extra=HPO % ("max_requests_per_connection: 2", "http_protocol_options: {}")))
proxy = Proxy(bootstrap(admin, listeners, clusters_yaml), admin)


def h1_exchange(sock, path="/x"):
    """One HTTP/1.1 request on sock; returns its head and body, lower-case."""
    sock.sendall(("GET %s HTTP/1.1\r\nhost: t\r\n\r\n" % path).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    n = int([ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
    while len(body) < n:
        body += sock.recv(65536)
    return (head + b"\r\n\r\n" + body).decode(errors="replace").lower()


def closed_by_peer(sock, timeout=5.0):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except OSError:
        return False


def nghttp(*paths, port):
    """nghttp -nv over one HTTP/2 connection; returns its output."""
    r = subprocess.run(["nghttp", "-nv", *["http://127.0.0.1:%d%s" % (port, p) for p in paths]],
                       capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def stat(name):
    return proxy.stats().get(name, 0)


try:
    # --- downstream max_requests_per_connection: 3 ---
    s = socket.create_connection(("127.0.0.1", p_rq), timeout=5)
    heads = [h1_exchange(s) for _ in range(3)]
    check("HTTP/1.1: the first two responses keep the connection",
          all("connection: close" not in h for h in heads[:2]), heads)
    check("HTTP/1.1: the third (max_requests_per_connection 3) says Connection: close and the connection closes",
          "connection: close" in heads[2] and closed_by_peer(s), heads[2])
    s.close()
    check("downstream_cx_max_requests_reached counted", stat("http.rq.downstream_cx_max_requests_reached") == 1,
          stat("http.rq.downstream_cx_max_requests_reached"))
    out = nghttp("/a", "/b", "/c", port=p_rq)
    sent = re.findall(r"send HEADERS frame <[^>]*stream_id=(\d+)>", out)
    last = re.findall(r"recv GOAWAY frame[^\n]*\n\s*\(last_stream_id=(\d+)", out)
    check("HTTP/2: GOAWAY naming the third stream as the last, and all three are served",
          len(sent) == 3 and last == [sent[2]] and out.count(":status: 200") == 3, out[-1500:])
    # --- downstream max_connection_duration: 1 s ---
    d0 = stat("http.dur.downstream_cx_max_duration_reached")
    s = socket.create_connection(("127.0.0.1", p_dur), timeout=5)
    head = h1_exchange(s)
    t0 = time.time()
    check("HTTP/1.1: a fresh connection is kept", "connection: close" not in head, head)
    check("HTTP/1.1: an idle connection closes at max_connection_duration", closed_by_peer(s, 5) and
          time.time() - t0 < 3, time.time() - t0)
    s.close()
    s = socket.create_connection(("127.0.0.1", p_dur), timeout=5)
    head = h1_exchange(s, "/x?delay=1500")
    check("HTTP/1.1: a response in flight at max_connection_duration carries Connection: close, then the close",
          "connection: close" in head and closed_by_peer(s), head)
    s.close()
    t0 = time.time()
    out = nghttp("/x?delay=1500", port=p_dur)
    check("HTTP/2: GOAWAY at max_connection_duration, the stream in flight is served, then the close",
          "recv GOAWAY frame" in out and ":status: 200" in out and time.time() - t0 < 4, out[-1500:])
    check("downstream_cx_max_duration_reached counted",
          poll(lambda: stat("http.dur.downstream_cx_max_duration_reached") - d0 == 3),
          stat("http.dur.downstream_cx_max_duration_reached") - d0)

    # --- upstream max_connection_duration: 1 s (HTTP/1.1 and HTTP/2) ---
    # One downstream connection, so that every request goes through one worker's pool.
    down = socket.create_connection(("127.0.0.1", p_up), timeout=10)
    for c in ("up1", "up2"):
        pref = "cluster.%s." % c
        heads = [h1_exchange(down, "/%s" % c) for _ in range(2)]
        check("%s: two requests within the duration share one upstream connection" % c,
              all(h.startswith("http/1.1 200") for h in heads) and stat(pref + "upstream_cx_total") == 1,
              (heads, stat(pref + "upstream_cx_total")))
        check("%s: the idle connection closes at max_connection_duration" % c,
              poll(lambda: stat(pref + "upstream_cx_active") == 0, timeout=5) and
              stat(pref + "upstream_cx_max_duration_reached") == 1,
              (stat(pref + "upstream_cx_active"), stat(pref + "upstream_cx_max_duration_reached")))
        head = h1_exchange(down, "/%s" % c)
        check("%s: the next request opens a new connection" % c,
              head.startswith("http/1.1 200") and stat(pref + "upstream_cx_total") == 2)
    # A connection busy when its duration passes is not reused afterwards.
    t0 = stat("cluster.up1.upstream_cx_total")
    h1 = h1_exchange(down, "/up1?delay=1200")
    h2 = h1_exchange(down, "/up1")
    check("up1: a connection past its duration after a slow response is closed, not reused",
          h1.startswith("http/1.1 200") and h2.startswith("http/1.1 200") and
          stat("cluster.up1.upstream_cx_total") - t0 == 2, stat("cluster.up1.upstream_cx_total") - t0)

    # --- upstream max_requests_per_connection: 2 ---
    heads = [h1_exchange(down, "/uprq") for _ in range(4)]
    check("upstream max_requests_per_connection 2: 4 requests use 2 connections",
          all(h.startswith("http/1.1 200") for h in heads) and stat("cluster.uprq.upstream_cx_total") == 2 and
          stat("cluster.uprq.upstream_cx_max_requests") == 2,
          (stat("cluster.uprq.upstream_cx_total"), stat("cluster.uprq.upstream_cx_max_requests")))

    # --- circuit breaker max_connection_pools: 1 (round robin over two hosts, one worker) ---
    heads = [h1_exchange(down, "/pools") for _ in range(4)]
    codes = [h.split()[1] for h in heads]
    check("max_connection_pools 1: the first host's pool serves, the second pool is refused (503)",
          sorted(codes) == ["200", "200", "503", "503"] and stat("cluster.pools.upstream_cx_pool_overflow") == 2,
          (codes, stat("cluster.pools.upstream_cx_pool_overflow")))
    check("the refusal is Envoy's no healthy upstream", all("no healthy upstream" in h for h in heads if h.split()[1] == "503")
          and stat("cluster.pools.circuit_breakers.default.cx_pool_open") == 1,
          stat("cluster.pools.circuit_breakers.default.cx_pool_open"))
    down.close()
    check("no request left active", poll(lambda: stat("http.rq.downstream_rq_active") == 0 and
                                         stat("http.dur.downstream_rq_active") == 0))
finally:
    proxy.stop()
finish()
