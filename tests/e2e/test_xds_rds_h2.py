#!/usr/bin/python3
"""An RDS update reaches HTTP/2 connections that are already open, as in Envoy: new streams on
an existing h2c connection use the new route table, while a stream in flight during the update
finishes with the route it started on (its snapshot is held until it ends). The same over TLS:
HTTP/1.1 keep-alive and HTTP/2 (ALPN h2) connections see the new routes on their next request."""
import http.client
import os
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import weft  # noqa: E402
from weft import check, finish  # noqa: E402
import ads_server  # noqa: E402
import tlsutil  # noqa: E402
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: E402,F401 (the Any in LDS)
from ads_server import CDS, EDS, LDS, RDS  # noqa: E402

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
ADS = {"ads": {}, "resource_api_version": "V3"}

be = weft.backend("a")
ads_port, admin, lport, tport = (weft.free_port() for _ in range(4))
pki = tlsutil.Pki()
srv_crt, srv_key = pki.leaf("localhost", ["DNS:localhost"])
TLS = {"name": "envoy.transport_sockets.tls", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    "common_tls_context": {"tls_certificates": [{"certificate_chain": {"filename": srv_crt},
                                                 "private_key": {"filename": srv_key}}],
                           "alpn_protocols": ["h2", "http/1.1"]}}}
CTX = ssl.create_default_context(cafile=pki.ca)


def routes(tag):
    return {"name": "r1", "response_headers_to_add": [{"header": {"key": "x-route", "value": tag}}],
            "virtual_hosts": [{"name": "all", "domains": ["*"],
                               "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "be"}}]}]}


ads = ads_server.AdsServer(ads_port).start()
ads.set(CDS, [{"name": "be", "type": "EDS", "connect_timeout": "1s",
               "eds_cluster_config": {"service_name": "be", "eds_config": ADS}}], "c1")
ads.set(EDS, [{"cluster_name": "be", "endpoints": [{"lb_endpoints": [
    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": be}}}}]}]}], "e1")


def lds(name, port, tls=None):
    chain = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM, "stat_prefix": name, "rds": {"route_config_name": "r1", "config_source": ADS},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}]}
    if tls:
        chain["transport_socket"] = tls
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [chain]}


ads.set(LDS, [lds("l1", lport), lds("l2", tport, TLS)], "l1")
ads.set(RDS, [routes("v1")], "r1")
proxy = weft.Proxy("""admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
node: {id: sidecar~127.0.0.1~t.default~default.svc.cluster.local, cluster: t.default}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    http2_protocol_options: {}
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]
""" % (admin, ads_port), admin)


class H2:
    """One h2c connection; streams are sent and their response headers collected."""

    def __init__(self, tls=False):
        self.sock = socket.create_connection(("127.0.0.1", tport if tls else lport), timeout=10)
        if tls:
            ctx = ssl.create_default_context(cafile=pki.ca)
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.c.initiate_connection()
        self.sock.sendall(self.c.data_to_send())
        self.heads, self.ended, self.closed = {}, set(), False

    def get(self, path, headers=()):
        sid = self.c.get_next_available_stream_id()
        self.c.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":path", path),
                                  (":authority", "t")] + list(headers), end_stream=True)
        self.sock.sendall(self.c.data_to_send())
        return sid

    def wait(self, sid, timeout=10):
        deadline = time.time() + timeout
        while sid not in self.ended and time.time() < deadline and not self.closed:
            self.sock.settimeout(max(0.05, deadline - time.time()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                self.closed = True
                break
            for ev in self.c.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    self.heads[ev.stream_id] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    self.ended.add(ev.stream_id)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.closed = True
            self.sock.sendall(self.c.data_to_send())
        return self.heads.get(sid, {})


def route_of_new_connection():
    try:
        c = H2()
        h = c.wait(c.get("/probe"), 2)
        c.sock.close()
        return h.get("x-route")
    except OSError:
        return None


deadline = time.time() + 20
while time.time() < deadline and route_of_new_connection() != "v1":
    time.sleep(0.1)
conn = H2()
h1 = conn.wait(conn.get("/first"))
check("h2 stream before the update: route v1", h1.get("x-route") == "v1" and h1.get(":status") == "200", h1)
slow = conn.get("/slow", [("x-delay-ms", "1500")])  # in flight across the update
# The update must come after the proxy routed /slow (a loaded machine may read it later).
deadline = time.time() + 5
while time.time() < deadline and proxy.stats().get("cluster.be.upstream_rq_active", 0) < 1:
    time.sleep(0.02)
ads.set(RDS, [routes("v2")], "r2")
deadline = time.time() + 10
while time.time() < deadline and route_of_new_connection() != "v2":
    time.sleep(0.05)
check("new connections see route v2", route_of_new_connection() == "v2")
h2new = conn.wait(conn.get("/second"))
check("a new stream on the same h2 connection uses the new route (v2)", h2new.get("x-route") == "v2", h2new)
hslow = conn.wait(slow)
check("the stream in flight during the update finishes, with the route it started on (v1)",
      hslow.get(":status") == "200" and hslow.get("x-route") == "v1", hslow)
check("the connection stayed open (no GOAWAY for a route-only change)", not conn.closed)
ads.set(RDS, [routes("v3")], "r3")
deadline = time.time() + 10
while time.time() < deadline and route_of_new_connection() != "v3":
    time.sleep(0.05)
h3 = conn.wait(conn.get("/third"))
check("...and a second update too (v3)", h3.get("x-route") == "v3", h3)

# TLS: an HTTP/1.1 keep-alive connection and an HTTP/2 connection, both open across an update.
ka = http.client.HTTPSConnection("localhost", tport, timeout=10, context=CTX)
ka.request("GET", "/tls1")
r = ka.getresponse()
r.read()
tconn = H2(tls=True)
th = tconn.wait(tconn.get("/tls-h2-1"))
check("TLS: HTTP/1.1 and h2 answered with the current route (v3)", r.getheader("x-route") == "v3" and
      th.get("x-route") == "v3" and tconn.sock.selected_alpn_protocol() == "h2", (r.getheaders(), th))
ads.set(RDS, [routes("v4")], "r4")
deadline = time.time() + 10
while time.time() < deadline and route_of_new_connection() != "v4":
    time.sleep(0.05)
ka.request("GET", "/tls2")
r = ka.getresponse()
r.read()
check("TLS HTTP/1.1 keep-alive connection: the next request uses the new route (v4)",
      r.getheader("x-route") == "v4" and r.status == 200, r.getheaders())
th = tconn.wait(tconn.get("/tls-h2-2"))
check("TLS h2 connection: a new stream uses the new route (v4)", th.get("x-route") == "v4", th)
ka.close()
tconn.sock.close()
conn.sock.close()
time.sleep(1.5)
st = proxy.stats()
check("no stream left active", st.get("http2.streams_active", 0) == 0 and st.get("http.l1.downstream_rq_active", 0) == 0,
      {k: v for k, v in st.items() if k.endswith("active")})
rc = proxy.stop()
check("proxy exits 0", rc == 0, proxy.output()[-3000:])
ads.stop()
finish()
