#!/usr/bin/python3
"""Proxyless gRPC against weftd: python3-grpcio's own xDS client (GRPC_XDS_BOOTSTRAP naming
weftd, node metadata GENERATOR: grpc) resolves xds:///reviews.default.svc.cluster.local:9080
and its calls follow the VirtualService: weights (within statistical tolerance), header
matches, short names, and a change to the VirtualService file takes effect without
restarting the client. Backends are echo servers on 127.0.0.2-4 registered as WorkloadEntries
selected by a Kubernetes Service."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import check, finish, free_port, wait_port  # noqa: E402

BIN = os.path.join(os.environ.get("WEFT_BIN", "build/bin"), "weftd")
NODE = "sidecar~127.0.0.1~client-abc.default~default.svc.cluster.local"
TARGET = "xds:///reviews.default.svc.cluster.local:9080"

work = tempfile.mkdtemp(prefix="weftd-proxyless-")
gport, dport, bport = free_port(), free_port(), free_port()

MESH = """apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.0.12
  ports: [{name: grpc, port: 9080, targetPort: %d}]
  selector: {app: reviews}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
""" % bport
for i, v in enumerate(("v1", "v2", "v3")):
    MESH += ("---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
             "metadata: {name: reviews-%s, labels: {app: reviews, version: %s}}\n"
             "spec: {address: 127.0.0.%d, labels: {app: reviews, version: %s}}\n" % (v, v, i + 2, v))

VS_WEIGHTS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v3}, weight: 20}
"""
VS_POLICIES = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {x-test: {exact: fault}}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{headers: {x-test: {exact: slow}}}]
    timeout: 1s
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v2}}]
"""
VS_ALL_V3 = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v3}}]
"""


def write(name, text):
    tmp = os.path.join(work, "." + name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(work, name))


write("mesh.yaml", MESH)
write("vs.yaml", VS_WEIGHTS)
bootstrap = os.path.join(work, "bootstrap.json.txt")
with open(bootstrap, "w") as f:
    json.dump({"xds_servers": [{"server_uri": "127.0.0.1:%d" % gport,
                                "channel_creds": [{"type": "insecure"}],
                                "server_features": ["xds_v3"]}],
               "node": {"id": NODE, "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default",
                                                  "LABELS": {"app": "client"}},
                        "locality": {}}}, f)
os.environ["GRPC_XDS_BOOTSTRAP"] = bootstrap
import grpc_echo  # noqa: E402  (imports grpc after the bootstrap is named)

proc = None
servers = []
try:
    for i, v in enumerate(("v1", "v2", "v3")):
        servers.append(grpc_echo.EchoServer(port=bport, name=v, address="127.0.0.%d" % (i + 2)))
    log = open(os.path.join(work, "weftd.log.txt"), "w+")
    proc = subprocess.Popen([BIN, "--config-dir", work, "--grpc-addr", "127.0.0.1:%d" % gport,
                             "--debug-addr", "127.0.0.1:%d" % dport, "--debounce", "50ms"],
                            stdout=log, stderr=subprocess.STDOUT)
    wait_port(gport)

    def served_by(client, md=()):
        _, call = client.unary(b"hi", metadata=md, timeout=10, with_call=True)
        return dict(call.initial_metadata()).get("x-served-by")

    def tally(client, n, md=()):
        out = {}
        for _ in range(n):
            s = served_by(client, md)
            out[s] = out.get(s, 0) + 1
        return out

    c = grpc_echo.EchoClient(TARGET)
    first = None
    try:
        first = served_by(c)
    except Exception as e:  # noqa: BLE001
        first = repr(e)
    check("a call through the xDS resolver reaches a backend", first in ("v1", "v3"), str(first))
    if first in ("v1", "v3"):
        N = 300
        t = tally(c, N)
        v1 = t.get("v1", 0)
        # 80/20 split: binomial sd = sqrt(300*.8*.2) ~ 6.9; allow ~5 sd
        check("weights 80/20 within tolerance", abs(v1 - 0.8 * N) < 35 and t.get("v2", 0) == 0, str(t))
        t = tally(c, 20, md=[("end-user", "jason")])
        check("header match routes to v2", t == {"v2": 20}, str(t))

        short = grpc_echo.EchoClient("xds:///reviews:9080")
        try:
            s = served_by(short)
        except Exception as e:  # noqa: BLE001
            s = repr(e)
        check("a short name resolves too", s in ("v1", "v3"), str(s))
        short.close()

        write("vs.yaml", VS_ALL_V3)
        deadline = time.time() + 10
        t0 = time.time()
        while time.time() < deadline and tally(c, 5) != {"v3": 5}:
            time.sleep(0.02)
        dt = time.time() - t0
        t = tally(c, 30)
        check("a VirtualService change takes effect without restarting the client", t == {"v3": 30},
              "%s after %.2fs" % (t, dt))

        # faults (A33) and timeouts as max_stream_duration (A31)
        write("vs.yaml", VS_POLICIES)
        deadline = time.time() + 10
        while time.time() < deadline and tally(c, 3) != {"v2": 3}:
            time.sleep(0.02)

        def code(md, timeout=5):
            try:
                c.unary(b"x", metadata=md, timeout=timeout)
                return "OK"
            except Exception as e:  # noqa: BLE001
                return e.code().name
        check("fault abort 503 ends the call UNAVAILABLE", code([("x-test", "fault")]) == "UNAVAILABLE")
        # A route timeout reaches gRPC as max_stream_duration (A31). gRPC C-core (this grpcio
        # 1.51) starts such a timeout 1-2 s early (grpc/grpc#34547), so weftd adds 2 s for a
        # client whose user_agent_name says C-core: the 1 s timeout fires after 1-2 s.
        check("a call on a route with a timeout succeeds", code([("x-test", "slow"), ("x-delay-ms", "200")]) == "OK")
        t0 = time.time()
        slow_code = code([("x-test", "slow"), ("x-delay-ms", "6000")], timeout=20)
        dt = time.time() - t0
        check("a backend slower than the route timeout ends the call DEADLINE_EXCEEDED",
              slow_code == "DEADLINE_EXCEEDED" and 0.9 <= dt < 5, "%s after %.2fs" % (slow_code, dt))
        check("the call's own deadline still applies under the route timeout",
              code([("x-test", "slow"), ("x-delay-ms", "3000")], timeout=0.3) == "DEADLINE_EXCEEDED")
        import xds  # noqa: E402

        def slow_route(user_agent):
            raw = xds.Stream(gport)
            n = xds.node("sidecar~127.0.0.9~raw.default~default.svc.cluster.local", GENERATOR="grpc")
            if user_agent:
                n.user_agent_name = user_agent
            raw.send(node=n, type_url=xds.RDS, resource_names=["reviews.default.svc.cluster.local:9080"])
            rr = raw.recv()
            raw.close()
            routes = [r for r in xds.unpack(rr.resources[0]).virtual_hosts[0].routes] if rr else []
            slow = [r for r in routes if any(h.exact_match == "slow" for h in r.match.headers)]
            return slow[0].route.max_stream_duration if slow else None
        m = slow_route(None)
        check("the timeout is sent as max_stream_duration",
              m is not None and m.max_stream_duration.seconds == 1 and m.max_stream_duration.nanos == 0
              and not m.HasField("grpc_timeout_header_max"), str(m))
        m = slow_route("gRPC C-core linux Python")
        check("to gRPC C-core it is sent 2 s longer",
              m is not None and m.max_stream_duration.seconds == 3 and m.max_stream_duration.nanos == 0, str(m))
    sz = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/debug/syncz" % dport],
                        capture_output=True, text=True, timeout=10).stdout
    me = [p for p in json.loads(sz) if p["proxy"] == NODE]
    check("the gRPC client shows in syncz", len(me) == 1, sz[:300])
    types = me[0]["types"] if me else {}
    check("no NACKs from gRPC's xDS client", len(types) == 4 and all(t["nacks"] == 0 for t in types.values()),
          str(types))
    check("gRPC's client ACKed all four types", len(types) == 4 and all(t["acks"] > 0 and t["acked_nonce"]
                                                                          for t in types.values()), str(types))
    c.close()
finally:
    for s in servers:
        s.stop(0)
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if os.environ.get("KEEP"):
        print("work dir", work)
    else:
        shutil.rmtree(work, True)

finish()
