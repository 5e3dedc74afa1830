#!/usr/bin/python3
"""weftd + weft-proxy on incremental xDS (ads_config api_type DELTA_GRPC), as an ingress gateway
in front of real backends: traffic flows; a VirtualService change reaches the proxy as an RDS
update only; a removed Service's cluster goes (removed_resources) and its EDS name is
unsubscribed; a Service added back is subscribed again; zero non-2xx under load while routes
and Services change; weftd killed: the proxy keeps serving, and once weftd is back it resumes
with initial_resource_versions (resources it holds are not sent again) and picks up what changed
meanwhile; the same config over state of the world gives the same snapshot."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import weft  # noqa: E402
from weft import check, finish, free_port, wait_port  # noqa: E402
from resilience import get, poll  # noqa: E402

WEFTD = os.path.join(weft.BIN, "weftd")
NODE = "router~127.0.0.1~gw-1.default~default.svc.cluster.local"
ALPHA = "outbound|80||alpha.default.svc.cluster.local"
BETA = "outbound|80||beta.default.svc.cluster.local"
GAMMA = "outbound|80||gamma.default.svc.cluster.local"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

SERVICE = """apiVersion: v1
kind: Service
metadata: {name: %(name)s, namespace: default}
spec:
  clusterIP: %(ip)s
  ports: [{name: http, port: 80, targetPort: %(port)d}]
  selector: {app: %(name)s}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: %(name)s-1, namespace: default}
spec: {address: 127.0.0.1, labels: {app: %(name)s}}
"""
GATEWAY = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: %d, name: http, protocol: HTTP}, hosts: ["*"]}]
"""
VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - headers: {response: {set: {x-route: "%(tag)s"}}}
    route: [{destination: {host: %(host)s, port: {number: 80}}}]
"""
NODE_YAML = """id: %s
cluster: gw.default
metadata: {NAMESPACE: default, LABELS: {istio: ingressgateway}}""" % NODE

work = tempfile.mkdtemp(prefix="weftd-delta-")
weftd = None
weftd_log = os.path.join(work, "weftd.log.txt")


def write(name, text):
    tmp = os.path.join(work, "config", "." + name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(work, "config", name))


def service(name, ip, port):
    write(name + ".yaml", SERVICE % {"name": name, "ip": ip, "port": port})


def start_weftd():
    p = subprocess.Popen([WEFTD, "--config-dir", os.path.join(work, "config"), "--grpc-addr",
                          "127.0.0.1:%d" % gport, "--debug-addr", "127.0.0.1:%d" % dport, "--debounce", "50ms"],
                         stdout=open(weftd_log, "a"), stderr=subprocess.STDOUT)
    wait_port(gport)
    wait_port(dport)
    return p


def debug(path):
    return get(dport, path, timeout=5)[1]


def served_by(tag=None):
    st, _, h = get(gw, timeout=5)
    return st == 200 and h.get("x-backend") if tag is None else st == 200 and h.get("x-route") == tag


def dump(proxy):
    """/config_dump's clusters, listeners, routes and endpoints as received."""
    _, body = proxy.admin("/config_dump")
    by = {c.get("@type", "").rsplit(".", 1)[-1]: c for c in json.loads(body)["configs"]}
    return {"clusters": {c["cluster"]["name"]: c for c in by["ClustersConfigDump"].get("dynamic_active_clusters", [])},
            "listeners": {x["name"]: x for x in by["ListenersConfigDump"].get("dynamic_listeners", [])},
            "routes": {r["route_config"]["name"]: r for r in by["RoutesConfigDump"].get("dynamic_route_configs", [])},
            "endpoints": {e["endpoint_config"].get("cluster_name", e["endpoint_config"].get("clusterName")): e
                          for e in by["EndpointsConfigDump"].get("dynamic_endpoint_configs", [])}}


def bodies(d):
    """A dump without the per-resource version_info and last_updated (they differ by protocol)."""
    return {"clusters": {k: v["cluster"] for k, v in d["clusters"].items()},
            "listeners": {k: v["active_state"]["listener"] for k, v in d["listeners"].items()},
            "routes": {k: v["route_config"] for k, v in d["routes"].items()},
            "endpoints": {k: v["endpoint_config"] for k, v in d["endpoints"].items()}}


def stat(proxy, name):
    return proxy.stats().get(name, 0)


def my_syncz():
    for p in json.loads(debug("/debug/syncz")):
        if p["proxy"] == NODE:
            return p
    return None


try:
    be_a, be_b, be_c = weft.backend("alpha"), weft.backend("beta"), weft.backend("gamma")
    gw, gport, dport, admin = (free_port() for _ in range(4))
    os.mkdir(os.path.join(work, "config"))
    service("alpha", "10.96.1.1", be_a)
    service("beta", "10.96.1.2", be_b)
    write("gateway.yaml", GATEWAY % gw)
    write("vs.yaml", VS % {"tag": "a1", "host": "alpha"})
    weftd = start_weftd()
    proxy = weft.Proxy(weft.ads_bootstrap(admin, gport, NODE_YAML, "DELTA_GRPC"), admin)

    # --- initial sync over DeltaAggregatedResources; traffic flows
    check("traffic flows to alpha", poll(lambda: served_by() == "alpha", 15), proxy.output()[-2000:])
    sz = my_syncz()
    check("weftd serves the proxy over delta, all four types ACKed, nothing NACKed",
          sz is not None and sz["delta"] and len(sz["types"]) == 4
          and all(t["acks"] >= 1 and t["nacks"] == 0 for t in sz["types"].values()), json.dumps(sz)[:1500])
    check("CDS and LDS are wildcard, EDS and RDS by name",
          sz is not None and [sz["types"][u]["wildcard"] for u in sorted(sz["types"])]
          == [True, False, True, False], json.dumps(sz and sorted(sz["types"]))[:300])
    check("control_plane.connected_state 1, no update rejected",
          stat(proxy, "control_plane.connected_state") == 1
          and all(stat(proxy, p + "update_rejected") == 0 for p in
                  ("cluster_manager.cds.", "cluster_manager.eds.", "listener_manager.lds.", "http.rds.")))
    d = dump(proxy)
    check("config_dump: per-resource versions", sorted(d["clusters"]) == sorted(
        ["BlackHoleCluster", "PassthroughCluster", ALPHA, BETA]) and all(
        c["version_info"] for c in d["clusters"].values()) and sorted(d["endpoints"]) == [ALPHA, BETA],
        json.dumps(sorted(d["clusters"])))

    # --- a VirtualService change: an RDS update only
    cds0, lds0, rds0 = (stat(proxy, s) for s in ("cluster_manager.cds.update_attempt",
                                                   "listener_manager.lds.update_attempt", "http.rds.update_success"))
    write("vs.yaml", VS % {"tag": "b1", "host": "beta"})
    check("VS change: traffic moves to beta", poll(lambda: served_by("b1") and served_by() == "beta", 10))
    check("VS change came as an RDS update only", stat(proxy, "http.rds.update_success") == rds0 + 1
          and stat(proxy, "cluster_manager.cds.update_attempt") == cds0
          and stat(proxy, "listener_manager.lds.update_attempt") == lds0)

    # --- a removed Service: its cluster goes by removed_resources, its EDS name is unsubscribed
    write("vs.yaml", VS % {"tag": "a2", "host": "alpha"})
    poll(lambda: served_by("a2"), 10)
    eds_before = my_syncz()["types"][EDS]
    os.unlink(os.path.join(work, "config", "beta.yaml"))
    check("removed Service: its cluster is gone from the proxy",
          poll(lambda: BETA not in dump(proxy)["clusters"], 10) and BETA not in proxy.admin("/clusters")[1],
          json.dumps(sorted(dump(proxy)["clusters"])))
    check("... and its ClusterLoadAssignment too (EDS unsubscribed)",
          poll(lambda: sorted(dump(proxy)["endpoints"]) == [ALPHA], 5), json.dumps(sorted(dump(proxy)["endpoints"])))
    poll(lambda: my_syncz()["types"][EDS]["names"] == 1, 5)
    eds_after = my_syncz()["types"][EDS]
    check("weftd saw the unsubscribe: one EDS name subscribed, one resource held",
          eds_before["names"] == 2 and eds_after["names"] == 1 and eds_after["resources"] == 1,
          "%s -> %s" % (eds_before, eds_after))
    check("traffic still flows after the removal", served_by("a2"))
    service("beta", "10.96.1.2", be_b)
    write("vs.yaml", VS % {"tag": "b2", "host": "beta"})
    check("a Service added back: subscribed again, its routes go live with its endpoints",
          poll(lambda: served_by("b2") and served_by() == "beta", 10) and BETA in dump(proxy)["endpoints"])

    # --- zero non-2xx under load while routes and Services change
    stop = threading.Event()
    counts = {"ok": 0, "bad": 0}
    bad = []

    def load():
        while not stop.is_set():
            st, body, _ = get(gw, timeout=10)
            counts["ok" if 200 <= st < 300 else "bad"] += 1
            if not 200 <= st < 300:
                bad.append((st, body[:200]))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for th in threads:
        th.start()
    for i in range(12):
        write("vs.yaml", VS % {"tag": "l%d" % i, "host": "alpha" if i % 2 else "beta"})
        if i % 4 == 1:
            service("gamma", "10.96.1.3", be_c)
        elif i % 4 == 3:
            os.unlink(os.path.join(work, "config", "gamma.yaml"))
        time.sleep(0.25)
    check("the last route under load is applied", poll(lambda: served_by("l11"), 10))
    stop.set()
    for th in threads:
        th.join(15)
    check("zero non-2xx under load during 12 route and 6 Service changes",
          counts["bad"] == 0 and counts["ok"] > 40, "%s %s" % (counts, bad[:5]))
    check("gamma came and went", GAMMA not in dump(proxy)["clusters"])
    check("nothing was rejected", stat(proxy, "http.rds.update_rejected") == 0
          and stat(proxy, "cluster_manager.cds.update_rejected") == 0)

    # --- weftd goes away: the proxy serves on; weftd back: resume with initial_resource_versions
    held = dump(proxy)
    weftd.send_signal(signal.SIGTERM)
    check("weftd exits 0 on SIGTERM", weftd.wait(10) == 0, open(weftd_log).read()[-2000:])
    check("weftd down: connected_state 0",
          poll(lambda: stat(proxy, "control_plane.connected_state") == 0, 10))
    check("weftd down: traffic continues on the last config",
          all(served_by("l11") for _ in range(20)))
    write("vs.yaml", VS % {"tag": "r1", "host": "beta"})   # changed while weftd is down
    time.sleep(1.1)                                       # last_updated has 1 s resolution
    logpos = os.path.getsize(weftd_log)
    weftd = start_weftd()
    check("weftd back: the proxy reconnects and picks up the change made meanwhile",
          poll(lambda: served_by("r1") and served_by() == "beta", 20), proxy.output()[-1500:])
    check("connected_state 1 again", poll(lambda: stat(proxy, "control_plane.connected_state") == 1, 5))
    with open(weftd_log) as f:
        f.seek(logpos)
        newlog = f.read()
    check("weftd: the proxy resumed each type with the resources it holds (initial_resource_versions)",
          all("resumes %s with %d resources held" % (t, n) in newlog for t, n in
              (("cds", len(held["clusters"])), ("eds", len(held["endpoints"])), ("lds", len(held["listeners"])),
               ("rds", len(held["routes"])))), newlog[-1500:])
    now = dump(proxy)
    check("resources held were not sent again (same last_updated); the changed route was",
          all(now["clusters"][k]["last_updated"] == v["last_updated"] for k, v in held["clusters"].items())
          and all(now["listeners"][k]["active_state"]["last_updated"] == v["active_state"]["last_updated"]
                  for k, v in held["listeners"].items())
          and all(now["routes"][k]["last_updated"] != v["last_updated"] for k, v in held["routes"].items()),
          json.dumps({k: (v["last_updated"], now["clusters"][k]["last_updated"]) for k, v in held["clusters"].items()}))
    sz = my_syncz()
    check("the new weftd sees every type ACKed", sz is not None and all(t["acks"] >= 1 for t in sz["types"].values()),
          json.dumps(sz)[:800])

    # --- the same config over state of the world: the same snapshot
    delta_dump = bodies(dump(proxy))
    check("delta proxy exits 0", proxy.stop() == 0, proxy.output()[-2000:])
    sotw = weft.Proxy(weft.ads_bootstrap(admin, gport, NODE_YAML, "GRPC"), admin)
    check("SotW proxy serves the same", poll(lambda: served_by("r1"), 15))
    check("SotW and Delta snapshots are identical (clusters, listeners, routes, endpoints)",
          poll(lambda: bodies(dump(sotw)) == delta_dump, 5),
          json.dumps(bodies(dump(sotw)))[:600] + " vs " + json.dumps(delta_dump)[:600])
    check("SotW proxy exits 0", sotw.stop() == 0, sotw.output()[-2000:])
    weftd.send_signal(signal.SIGTERM)
    check("restarted weftd exits 0", weftd.wait(10) == 0, open(weftd_log).read()[-2000:])
finally:
    if weftd and weftd.poll() is None:
        weftd.send_signal(signal.SIGTERM)
        try:
            weftd.wait(10)
        except subprocess.TimeoutExpired:
            weftd.kill()
    if os.environ.get("KEEP"):
        print("work dir", work)
    else:
        shutil.rmtree(work, True)

finish()
