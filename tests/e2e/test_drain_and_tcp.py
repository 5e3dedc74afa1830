#!/usr/bin/python3
"""SIGTERM drains without failing in-flight requests; tcp_proxy pipes bytes both ways with
access logs; wrk-driven load shows no errors."""
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa

be = backend("be")
admin, port, tport = free_port(), free_port(), free_port()
logpath = "/tmp/weft-test-access-%d.log" % os.getpid()
listeners = http_listener("http", port, extra="""access_log:
- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: %s""" % logpath) + """  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcpin
          cluster: be
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format: {text_format_source: {inline_string: "TCP %%UPSTREAM_HOST%% %%BYTES_RECEIVED%% %%BYTES_SENT%% %%RESPONSE_FLAGS%%\\n"}}
""" % (tport, logpath)
proxy = Proxy(bootstrap(admin, listeners, static_cluster("be", [be])), admin)

# tcp_proxy: an HTTP/1.0 request through the byte pipe.
r = raw(tport, b"GET /through-tcp HTTP/1.0\r\n\r\n")
check("tcp_proxy carries bytes both ways", b'"/through-tcp"' in r, r[:200])

# wrk load: no socket errors, no non-2xx.
out = subprocess.run(["wrk", "-t1", "-c8", "-d2s", "http://127.0.0.1:%d/load" % port], capture_output=True,
                     text=True, timeout=30).stdout
check("wrk load without errors", "Socket errors" not in out and "Non-2xx" not in out and "Requests/sec" in out, out)
st = proxy.stats()
check("upstream connections are pooled and reused under load",
      0 < st.get("cluster.be.upstream_cx_total", 0) <= 12 and st.get("cluster.be.upstream_rq_total", 0) > 100,
      (st.get("cluster.be.upstream_cx_total"), st.get("cluster.be.upstream_rq_total")))

# Drain: slow requests in flight when SIGTERM arrives all complete with 200.
results = []


def slow(i):
    results.append(curl("http://127.0.0.1:%d/slow%d" % (port, i), "-H", "x-delay-ms: 800")[0])


threads = [threading.Thread(target=slow, args=(i,)) for i in range(6)]
for t in threads:
    t.start()
time.sleep(0.3)
proxy.p.send_signal(15)
time.sleep(0.1)
try:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    refused = False
except OSError:
    refused = True
for t in threads:
    t.join()
check("in-flight requests finish during drain", results == [200] * 6, results)
check("new connections refused while draining", refused)
try:
    code = proxy.p.wait(10)
except subprocess.TimeoutExpired:
    code = None
check("exit 0 after drain", code == 0, (code, proxy.output()[-1500:]))

with open(logpath) as f:
    log = f.read()
os.unlink(logpath)
check("access log in Envoy's default format",
      re.search(r'^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /slow0 HTTP/1.1" 200 - 0 \d+ \d+ \d+ "-" "curl/[^"]+" "[0-9a-f-]{36}" "127.0.0.1:%d" "127.0.0.1:%d"$'
                % (port, be), log, re.M) is not None, log[:600])
check("tcp access log with a custom format", re.search(r"^TCP 127.0.0.1:%d \d+ \d+ -$" % be, log, re.M) is not None, log[-600:])
finish()
