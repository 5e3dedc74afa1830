#!/usr/bin/python3
"""weft-proxy as a dynamic sidecar: Envoy's dynamic_resources over ADS (SotW, V3) against the
ADS fixture in lib/ads_server.py. Initial sync CDS -> EDS -> LDS -> RDS, route and endpoint
changes, a NACK with error_detail that keeps the old config, static stability across a server
restart with resync, zero non-2xx under load during updates, listener removal."""
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import weft  # noqa: E402
from weft import check, finish  # noqa: E402
import ads_server  # noqa: E402
from ads_server import CDS, EDS, LDS, RDS  # noqa: E402

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
T0 = time.time()


def cluster(name, service):
    return {"name": name, "type": "EDS", "connect_timeout": "1s",
            "eds_cluster_config": {"service_name": service,
                                   "eds_config": {"ads": {}, "resource_api_version": "V3"}}}


def cla(service, ports):
    return {"cluster_name": service, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}} for p in ports]}]}


def listener(name, port, route_name):
    return {"name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": HCM, "stat_prefix": name,
                "rds": {"route_config_name": route_name, "config_source": {"ads": {}, "resource_api_version": "V3"}},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}]}]}


def routes(name, cluster_name, tag):
    return {"name": name, "response_headers_to_add": [{"header": {"key": "x-route", "value": tag}}],
            "virtual_hosts": [{"name": "all", "domains": ["*"],
                               "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}]}]}


def get(port, path="/", headers=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def wait_for(fn, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except OSError:
            pass
        time.sleep(0.02)
    return None


be_a, be_b = weft.backend("a"), weft.backend("b")
ads_port, admin, lport, lport2, lport3 = (weft.free_port() for _ in range(5))
ads = ads_server.AdsServer(ads_port).start()
ads.set(CDS, [cluster("be", "be-svc")], "c1")
ads.set(EDS, [cla("be-svc", [be_a])], "e1")
ads.set(LDS, [listener("l1", lport, "r1")], "l1")
ads.set(RDS, [routes("r1", "be", "v1")], "r1")

BOOT = ads_server.bootstrap(admin, ads_port, """node:
  id: sidecar~127.0.0.1~test-1.default~default.svc.cluster.local
  cluster: test.default
  metadata: {ISTIO_VERSION: "1.22.0", NAMESPACE: default}""")

proxy = weft.Proxy(BOOT, admin)

# --- initial sync ---
r = wait_for(lambda: get(lport)[0] == 200 and get(lport))
check("initial sync: traffic flows through LDS/RDS/CDS/EDS config", r and r[0] == 200 and r[1].get("x-backend") == "a"
      and r[1].get("x-route") == "v1", str(r and r[:2]) + proxy.output()[-2000:])
with ads.lock:
    reqs = list(ads.requests)
first = {}
for n, rq in reqs:
    first.setdefault(rq.type_url, (reqs.index((n, rq)), rq))
check("the first request is CDS, wildcard, with the node", reqs and reqs[0][1].type_url == CDS
      and reqs[0][1].node.id.startswith("sidecar~") and reqs[0][1].node.cluster == "test.default"
      and reqs[0][1].node.metadata.fields["ISTIO_VERSION"].string_value == "1.22.0"
      and not reqs[0][1].resource_names, str(reqs[:1]))
check("order CDS -> EDS -> LDS -> RDS", all(t in first for t in (CDS, EDS, LDS, RDS))
      and first[CDS][0] < first[EDS][0] < first[LDS][0] < first[RDS][0], str([(i, t) for t, (i, _) in first.items()]))
check("EDS asks for the service_name, RDS for the route_config_name",
      EDS in first and list(first[EDS][1].resource_names) == ["be-svc"] and RDS in first
      and list(first[RDS][1].resource_names) == ["r1"])
check("every type is ACKed with its version and nonce", all(
    ads.wait_request(lambda n, rq, t=t, v=v: rq.type_url == t and rq.version_info == v and rq.response_nonce
                     and not rq.HasField("error_detail"), 3) for t, v in ((CDS, "c1"), (EDS, "e1"), (LDS, "l1"), (RDS, "r1"))))
check("the node goes only in the first request of each type", all(
    not rq.HasField("node") for _, rq in reqs if rq.response_nonce))

# --- route change ---
t = time.time()
ads.set(RDS, [routes("r1", "be", "v2")], "r2")
r = wait_for(lambda: get(lport)[1].get("x-route") == "v2", 1.0)
check("route change applied within a second", r, "%.3fs" % (time.time() - t))

# --- a keep-alive connection gets the new routes on its next request (Envoy's RDS semantics) ---
ka = http.client.HTTPConnection("127.0.0.1", lport, timeout=5)
ka.request("GET", "/")
r1 = ka.getresponse()
r1.read()
ads.set(RDS, [routes("r1", "be", "v2b")], "r2b")
time.sleep(0.3)
ka.request("GET", "/")
r2 = ka.getresponse()
r2.read()
check("a keep-alive connection sees a route change on its next request, and stays open",
      r1.getheader("x-route") == "v2" and r2.getheader("x-route") == "v2b" and r2.status == 200
      and (r2.getheader("connection") or "").lower() != "close", "%s %s" % (r1.getheader("x-route"), r2.getheaders()))
ka.close()
ads.set(RDS, [routes("r1", "be", "v2")], "r2")
wait_for(lambda: get(lport)[1].get("x-route") == "v2", 1.0)

# --- endpoint change ---
ads.set(EDS, [cla("be-svc", [be_b])], "e2")
r = wait_for(lambda: get(lport)[1].get("x-backend") == "b", 1.0)
check("endpoint change applied within a second", r)

# --- NACK ---
bad = ads_server.from_dict(RDS, routes("r1", "no-such-cluster", "bad"))
from google.protobuf import any_pb2  # noqa: E402
a = any_pb2.Any()
a.Pack(bad)
nonce = ads.push_raw(RDS, [a], "r3-bad")
nack = ads.wait_request(lambda n, rq: rq.type_url == RDS and rq.response_nonce == nonce, 3)
check("a bad RouteConfiguration is NACKed with error_detail", nack is not None and nack.HasField("error_detail")
      and nack.error_detail.code == 3 and "no-such-cluster" in nack.error_detail.message
      and nack.version_info == "r2", str(nack))
# a bad Cluster: the NACK names the resource (type and name) and the field inside it
badc = ads_server.from_dict(CDS, dict(cluster("outbound|9080||reviews.default.svc.cluster.local", "be-svc"),
                                      lb_policy="ROUND_ROBIN"))
badc.lb_policy = 7
ca, cb = any_pb2.Any(), any_pb2.Any()
ca.Pack(ads_server.from_dict(CDS, cluster("be", "be-svc")))
cb.Pack(badc)
nonce = ads.push_raw(CDS, [ca, cb], "c-bad")
nack = ads.wait_request(lambda n, rq: rq.type_url == CDS and rq.response_nonce == nonce, 3)
want = "Cluster 'outbound|9080||reviews.default.svc.cluster.local': lb_policy: unsupported policy 7"
check("a bad Cluster's NACK names it: " + want, nack is not None and nack.error_detail.message == want
      and nack.version_info == "c1", str(nack))
st, h, _ = get(lport)
check("the old config still serves after the NACK", st == 200 and h.get("x-route") == "v2", str(h))
stats = proxy.stats()
check("stats: cds/lds update_success, rds update_rejected, control_plane.connected_state",
      stats.get("cluster_manager.cds.update_success", 0) >= 1 and stats.get("listener_manager.lds.update_success", 0) >= 1
      and stats.get("http.rds.update_rejected", 0) >= 1 and stats.get("control_plane.connected_state") == 1,
      str({k: v for k, v in stats.items() if "cds" in k or "lds" in k or "rds" in k or "control" in k}))

# --- config_dump ---
_, body = proxy.admin("/config_dump")
dump = json.loads(body)
by_type = {c.get("@type", "").rsplit(".", 1)[-1]: c for c in dump["configs"]}
cd, ld, rd, ed = (by_type.get(k, {}) for k in ("ClustersConfigDump", "ListenersConfigDump", "RoutesConfigDump",
                                                 "EndpointsConfigDump"))
check("config_dump: dynamic_active_clusters", [c["cluster"]["name"] for c in cd.get("dynamic_active_clusters", [])] == ["be"]
      and cd["dynamic_active_clusters"][0]["version_info"] == "c1" and "last_updated" in cd["dynamic_active_clusters"][0]
      and [c["cluster"]["name"] for c in cd.get("static_clusters", [])] == ["xds-grpc"], json.dumps(cd)[:800])
check("config_dump: dynamic_listeners (active_state, version_info)",
      [(x["name"], x["active_state"]["version_info"]) for x in ld.get("dynamic_listeners", [])] == [("l1", "l1")],
      json.dumps(ld)[:800])
check("config_dump: dynamic_route_configs and endpoints",
      [(x["route_config"]["name"], x["version_info"]) for x in rd.get("dynamic_route_configs", [])] == [("r1", "r2")]
      and [x["endpoint_config"].get("cluster_name", x["endpoint_config"].get("clusterName")) for x in ed.get("dynamic_endpoint_configs", [])] == ["be-svc"], json.dumps(ed)[:600])

boot_dump = by_type.get("BootstrapConfigDump", {}).get("bootstrap", {})
check("config_dump: the bootstrap keeps dynamic_resources and only its own static clusters",
      any(k in (boot_dump.get("dynamic_resources") or boot_dump.get("dynamicResources") or {})
          for k in ("ads_config", "adsConfig"))
      and [c["name"] for c in (boot_dump.get("static_resources") or boot_dump.get("staticResources") or {})
           .get("clusters", [])] == ["xds-grpc"]
      and not (boot_dump.get("static_resources") or boot_dump.get("staticResources") or {}).get("listeners"),
      json.dumps(boot_dump)[:600])

# --- static stability: the server goes away, comes back, the proxy resyncs ---
ads.stop()
time.sleep(0.3)
ok = all(get(lport)[0] == 200 for _ in range(20))
check("server killed: traffic continues on the last config", ok)
check("server killed: control_plane.connected_state 0",
      wait_for(lambda: proxy.stats().get("control_plane.connected_state") == 0, 3))
nreq = len(ads.requests)
ads.start()
resync = ads.wait_request(lambda n, rq: n == len(ads.streams) and n > 1 and rq.type_url == CDS, 10)
check("server back: a new stream re-sends CDS with the version it has", resync is not None
      and resync.version_info == "c1" and resync.response_nonce == "" and resync.HasField("node"), str(resync))
check("resync re-subscribes EDS/LDS/RDS with names and versions", all(ads.wait_request(
    lambda n, rq, t=t, v=v: n > 1 and rq.type_url == t and rq.version_info == v and not rq.response_nonce, 5)
    for t, v in ((EDS, "e2"), (LDS, "l1"), (RDS, "r2"))))
check("server back: connected_state 1, traffic still flows",
      wait_for(lambda: proxy.stats().get("control_plane.connected_state") == 1, 5) and get(lport)[0] == 200)

# --- warming: a new EDS cluster is warm before the routes that use it go live ---
be_c = weft.backend("c")
ads.set(CDS, [cluster("be", "be-svc"), cluster("be2", "be2-svc")], "c2")
ads.wait_request(lambda n, rq: rq.type_url == EDS and "be2-svc" in rq.resource_names, 3)
ads.set(RDS, [routes("r1", "be2", "warm")], "rw")
ads.wait_request(lambda n, rq: rq.type_url == RDS and rq.version_info == "rw", 3)
time.sleep(0.3)
st, h, _ = get(lport)
check("routes to a cluster still warming wait (the old route serves, no 503)", st == 200 and h.get("x-route") != "warm",
      "%s %s" % (st, h))
ads.set(EDS, [cla("be-svc", [be_b]), cla("be2-svc", [be_c])], "e3")
r = wait_for(lambda: get(lport)[1].get("x-backend") == "c", 1.0)
check("once its ClusterLoadAssignment arrives, the new cluster and its routes go live together", r
      and get(lport)[1].get("x-route") == "warm")

# --- zero non-2xx under load while routes and endpoints change ---
stop = threading.Event()
counts = {"ok": 0, "bad": 0, "err": 0}
errors = []


def load():
    while not stop.is_set():
        try:
            st, _, _ = get(lport, timeout=5)
            counts["ok" if 200 <= st < 300 else "bad"] += 1
            if not 200 <= st < 300:
                errors.append(st)
        except Exception as e:  # noqa: BLE001
            counts["err"] += 1
            errors.append(repr(e))


threads = [threading.Thread(target=load) for _ in range(4)]
for th in threads:
    th.start()
for i in range(20):
    ads.set(RDS, [routes("r1", "be", "load%d" % i)], "rl%d" % i)
    if i % 4 == 0:
        ads.set(EDS, [cla("be-svc", [be_a] if i % 8 == 0 else [be_a, be_b])], "el%d" % i)
    if i == 10:  # a listener added next to l1: l1 keeps its socket and its connections
        ads.set(LDS, [listener("l1", lport, "r1"), listener("l3", lport3, "r1")], "l3")
    time.sleep(0.1)
time.sleep(0.3)
stop.set()
for th in threads:
    th.join(10)
r = wait_for(lambda: get(lport)[1].get("x-route") == "load19", 2)
check("zero non-2xx and zero errors under load during 20 route, 5 endpoint and 1 listener updates",
      counts["bad"] == 0 and counts["err"] == 0 and counts["ok"] > 50 and r, "%s %s" % (counts, errors[:5]))
check("the listener added under load serves", wait_for(lambda: get(lport3)[0] == 200, 2))

# --- a DNS cluster: resolved after the snapshot is built (never blocking it), and its answers
# carried across later updates, so no request between an update and the next lookup fails ---
dns = {"name": "dns", "type": "STRICT_DNS", "connect_timeout": "1s", "dns_lookup_family": "V4_ONLY",
       "dns_refresh_rate": "60s", "load_assignment": {"cluster_name": "dns", "endpoints": [{"lb_endpoints": [
           {"endpoint": {"address": {"socket_address": {"address": "localhost", "port_value": be_c}}}}]}]}}
ads.set(CDS, [cluster("be", "be-svc"), cluster("be2", "be2-svc"), dns], "cd1")
ads.set(RDS, [routes("r1", "dns", "dns0")], "rd0")
r = wait_for(lambda: get(lport)[1].get("x-route") == "dns0", 2)
check("a STRICT_DNS cluster from CDS resolves and serves", r and get(lport)[1].get("x-backend") == "c")
counts.update(ok=0, bad=0, err=0)
del errors[:]
stop.clear()
threads = [threading.Thread(target=load) for _ in range(4)]
for th in threads:
    th.start()
for i in range(10):
    ads.set(RDS, [routes("r1", "dns", "dns%d" % (i + 1))], "rd%d" % (i + 1))
    if i % 3 == 0:  # a changed Cluster: a new cluster object, the same names to resolve
        dns["connect_timeout"] = "%ds" % (2 + i)
        ads.set(CDS, [cluster("be", "be-svc"), cluster("be2", "be2-svc"), dns], "cd%d" % (i + 2))
    time.sleep(0.1)
time.sleep(0.3)
stop.set()
for th in threads:
    th.join(10)
check("zero non-2xx on the DNS cluster during 10 route and 4 cluster updates (answers carried over)",
      counts["bad"] == 0 and counts["err"] == 0 and counts["ok"] > 20, "%s %s" % (counts, errors[:5]))
ads.set(RDS, [routes("r1", "be", "back")], "rback")
wait_for(lambda: get(lport)[1].get("x-route") == "back", 2)

# --- listener removal: new one opens, the old port stops accepting, its in-flight request finishes ---
inflight = {}


def slow():
    try:
        inflight["r"] = get(lport, headers={"x-delay-ms": "700"}, timeout=5)
    except Exception as e:  # noqa: BLE001
        inflight["r"] = repr(e)


th = threading.Thread(target=slow)
th.start()
time.sleep(0.2)
ads.set(RDS, [routes("r1", "be", "v9"), routes("r2", "be", "l2")], "r9")
ads.set(LDS, [listener("l2", lport2, "r2")], "l2")
r = wait_for(lambda: get(lport2)[0] == 200 and get(lport2), 2)
check("an added listener opens its socket and serves", r and r[1].get("x-route") == "l2")


def refused():
    try:
        get(lport, timeout=1)
        return False
    except OSError:
        return True


check("a removed listener stops accepting", wait_for(refused, 2))
th.join(5)
res = inflight.get("r")
check("the removed listener's in-flight request finishes (drain)", isinstance(res, tuple) and res[0] == 200,
      str(res))

# --- --mode validate on a dynamic bootstrap ---
import subprocess  # noqa: E402
import tempfile  # noqa: E402
with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    f.write(BOOT)
v = subprocess.run([os.path.join(weft.BIN, "weft-proxy"), "--mode", "validate", "-c", f.name], capture_output=True,
                   text=True, timeout=20)
os.unlink(f.name)
check("--mode validate accepts the dynamic bootstrap", v.returncode == 0 and "OK" in v.stdout, v.stdout + v.stderr)

# --- a bad bootstrap ---
rc, out = weft.run_proxy_expect_fail(BOOT.replace("cluster_name: xds-grpc}", "cluster_name: nope}"))
check("ads_config naming an unknown cluster is refused", rc == 1 and "envoy_grpc.cluster_name" in out, out)
rc, out = weft.run_proxy_expect_fail(BOOT.replace("api_type: GRPC", "api_type: REST"))
check("an unsupported api_type is refused", rc == 1 and "api_type" in out, out)

check("proxy exits cleanly", proxy.stop() == 0, proxy.output()[-2000:])
ads.stop()
check("bounded in time", time.time() - T0 < 60)
finish()
