#!/usr/bin/python3
"""Time from a VirtualService file change to the new route serving traffic, seen by a
proxyless gRPC client (python3-grpcio's xDS client against weftd). Two echo backends (v1 on
127.0.0.2, v2 on 127.0.0.3); each change flips the VirtualService between them, and the client
calls until every call lands on the new one.

usage: xds_route_latency.py WEFTD_BIN WORKDIR CHANGES [DEBOUNCE]
prints: key=value lines (p50_ms, p99_ms, max_ms, changes)."""
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../tests/e2e/lib"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


weftd, work, changes = sys.argv[1], sys.argv[2], int(sys.argv[3])
debounce = sys.argv[4] if len(sys.argv) > 4 else "100ms"
os.makedirs(work, exist_ok=True)
gport, dport, bport = free_port(), free_port(), free_port()
NODE = "sidecar~127.0.0.1~bench-client.default~default.svc.cluster.local"
with open(os.path.join(work, "mesh.yaml"), "w") as f:
    f.write("apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n  clusterIP: 10.96.0.12\n"
            "  ports: [{name: grpc, port: 9080, targetPort: %d}]\n  selector: {app: reviews}\n---\n"
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\n"
            "spec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n"
            % bport)
    for i, v in enumerate(("v1", "v2")):
        f.write("---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: r-%s}\n"
                "spec: {address: 127.0.0.%d, labels: {app: reviews, version: %s}}\n" % (v, i + 2, v))


def set_vs(subset):
    tmp = os.path.join(work, ".vs.tmp")
    with open(tmp, "w") as f:
        f.write("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
                "spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: %s}}]\n"
                % subset)
    os.rename(tmp, os.path.join(work, "vs.yaml"))


set_vs("v1")
boot = os.path.join(work, "bootstrap.json.txt")
with open(boot, "w") as f:
    json.dump({"xds_servers": [{"server_uri": "127.0.0.1:%d" % gport, "channel_creds": [{"type": "insecure"}],
                                "server_features": ["xds_v3"]}],
               "node": {"id": NODE, "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"}}}, f)
os.environ["GRPC_XDS_BOOTSTRAP"] = boot
import grpc_echo  # noqa: E402

servers = [grpc_echo.EchoServer(port=bport, name=v, address="127.0.0.%d" % (i + 2)) for i, v in enumerate(("v1", "v2"))]
log = open(os.path.join(work, "weftd.log.txt"), "w")
proc = subprocess.Popen([weftd, "--config-dir", work, "--grpc-addr", "127.0.0.1:%d" % gport,
                         "--debug-addr", "127.0.0.1:%d" % dport, "--debounce", debounce],
                        stdout=log, stderr=subprocess.STDOUT)
try:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", gport), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    c = grpc_echo.EchoClient("xds:///reviews.default.svc.cluster.local:9080")

    def served_by():
        _, call = c.unary(b"x", timeout=10, with_call=True)
        return dict(call.initial_metadata()).get("x-served-by")

    served_by()
    lat = []
    cur = "v1"
    for i in range(changes):
        nxt = "v2" if cur == "v1" else "v1"
        t0 = time.time()
        set_vs(nxt)
        deadline = t0 + 30
        while time.time() < deadline and served_by() != nxt:
            pass
        lat.append((time.time() - t0) * 1000)
        cur = nxt
        time.sleep(0.2)
    lat.sort()
    print("changes=%d" % len(lat))
    print("p50_ms=%.1f" % lat[len(lat) // 2])
    print("p99_ms=%.1f" % lat[min(len(lat) - 1, int(0.99 * len(lat)))])
    print("max_ms=%.1f" % lat[-1])
    c.close()
finally:
    for s in servers:
        s.stop(0)
    proc.terminate()
    proc.wait(30)
