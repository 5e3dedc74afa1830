#!/usr/bin/python3
"""weftd's ADS server driven by a raw ADS client (python3-grpcio generic streams, protobuf
modules generated from api/): SotW subscribe/ACK/NACK (a NACKed version is not re-pushed and
shows in /debug/syncz and pilot_total_xds_rejects), Delta subscribe/unsubscribe, a file change
pushed within the debounce window to the affected proxy only and only the changed type, an
invalid file keeps the last good config and shows its error in /debug/configz, SIGTERM exits 0."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import check, finish, free_port, wait_port  # noqa: E402
import xds  # noqa: E402

BIN = os.path.join(os.environ.get("WEFT_BIN", "build/bin"), "weftd")
SAMPLE = os.path.join(xds.SRC, "samples/bookinfo-istio")
PRODUCTPAGE = "sidecar~10.1.0.10~productpage-v1-abc.default~default.svc.cluster.local"
ROUTER = "router~10.1.0.100~ingress.istio-system~istio-system.svc.cluster.local"
DEBOUNCE_MS = 100

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: %s}}]
"""

work = tempfile.mkdtemp(prefix="weftd-ads-")
proc = None


def get(path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (dport, path), timeout=5) as r:
        return r.read().decode()


def write(name, text):
    tmp = os.path.join(work, "." + name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(work, name))


def sotw_subscribe(s, t, names=(), **kw):
    s.send(type_url=t, resource_names=list(names), **kw)
    r = s.recv()
    if r is not None:
        s.send(type_url=t, resource_names=list(names), version_info=r.version_info,
               response_nonce=r.nonce)
    return r


def drain(s, timeout):
    out = []
    while True:
        r = s.recv(timeout)
        if r is None:
            return out
        out.append(r)
        timeout = 0.3


try:
    for f in os.listdir(SAMPLE):
        shutil.copy(os.path.join(SAMPLE, f), work)
    write("vs.yaml", VS % "v1")
    gport, dport = free_port(), free_port()
    log = open(os.path.join(work, "weftd.log.txt"), "w+")
    proc = subprocess.Popen([BIN, "--config-dir", work, "--grpc-addr", "127.0.0.1:%d" % gport,
                             "--debug-addr", "127.0.0.1:%d" % dport,
                             "--debounce", "%dms" % DEBOUNCE_MS], stdout=log, stderr=subprocess.STDOUT)
    wait_port(gport)
    wait_port(dport)

    # --- SotW: the sidecar subscribes to everything in warming order, ACKing each response
    a = xds.Stream(gport)
    a.send(node=xds.node(PRODUCTPAGE, labels={"app": "productpage", "version": "v1"},
                         namespace="default"), type_url=xds.CDS)
    r = a.recv()
    check("SotW CDS answered", r is not None and r.type_url == xds.CDS and r.nonce and len(r.resources) > 5)
    clusters = [xds.unpack(x) for x in r.resources]
    a.send(type_url=xds.CDS, version_info=r.version_info, response_nonce=r.nonce)
    eds_names = sorted(c.name for c in clusters if c.name.startswith("outbound|9080|"))
    r = sotw_subscribe(a, xds.EDS, eds_names)
    check("SotW EDS answers exactly the names asked",
          r is not None and sorted(xds.unpack(x).cluster_name for x in r.resources) == eds_names,
          str(r and [xds.unpack(x).cluster_name for x in r.resources]))
    r = sotw_subscribe(a, xds.LDS)
    check("SotW LDS answered", r is not None and any(xds.unpack(x).name == "virtualOutbound" for x in r.resources))
    r = sotw_subscribe(a, xds.RDS, ["9080"])
    check("SotW RDS answered", r is not None and [xds.unpack(x).name for x in r.resources] == ["9080"])
    rds_v1 = r
    check("an ACK gets no response", a.recv(0.5) is None)

    # --- a router that the reviews VirtualService does not concern
    b = xds.Stream(gport)
    b.send(node=xds.node(ROUTER, labels={"istio": "ingressgateway"}), type_url=xds.LDS)
    rb = b.recv()
    check("router LDS", rb is not None and [xds.unpack(x).name for x in rb.resources] == ["0.0.0.0_8080"])
    b.send(type_url=xds.LDS, version_info=rb.version_info, response_nonce=rb.nonce)
    rb = sotw_subscribe(b, xds.RDS, ["http.8080"])
    check("router RDS", rb is not None and len(rb.resources) == 1)

    # --- a file change reaches the affected proxy, only the changed type, within the window
    t0 = time.time()
    write("vs.yaml", VS % "v2")
    got = drain(a, 5.0)
    dt = time.time() - t0
    check("VS change pushes RDS to the sidecar", [x.type_url for x in got] == [xds.RDS],
          str([x.type_url for x in got]))
    check("pushed within the debounce window (+ inotify and slack)", dt < DEBOUNCE_MS / 1000.0 + 1.0, "%.3fs" % dt)
    if got:
        rc = xds.unpack(got[0].resources[0])
        check("the new route goes to v2", "outbound|9080|v2|reviews.default.svc.cluster.local" in str(rc))
        check("new version string", got[0].version_info != rds_v1.version_info)
        rds_v2 = got[0]
    check("the router gets nothing", drain(b, 0.5) == [])

    # --- NACK: the sidecar rejects v2; it is not pushed again
    a.send(type_url=xds.RDS, resource_names=["9080"], version_info=rds_v1.version_info,
           response_nonce=rds_v2.nonce, error="route 9080: test rejection")
    check("a NACKed version is not re-pushed", drain(a, 1.5) == [])
    sz = json.loads(get("/debug/syncz"))
    me = [p for p in sz if p["proxy"] == PRODUCTPAGE]
    st = me[0]["types"][xds.RDS] if me else {}
    check("syncz shows the NACK", st.get("nacks") == 1 and st.get("nacked_nonce") == rds_v2.nonce
          and "test rejection" in st.get("nack_error", ""), str(st))
    check("syncz shows the ACKed CDS", me and me[0]["types"][xds.CDS]["acked_version"] != "", str(me))
    check("syncz lists both proxies", sorted(p["proxy"] for p in sz) == sorted([PRODUCTPAGE, ROUTER]))
    m = get("/metrics")
    check("pilot_total_xds_rejects counts it", "pilot_total_xds_rejects 1\n" in m)
    check("pilot_xds counts the streams", "pilot_xds 2\n" in m)
    check("pilot_xds_pushes by type", 'pilot_xds_pushes{type="rds"} 3\n' in m, m)
    check("convergence histogram", "pilot_proxy_convergence_time_count 1\n" in m)

    # --- an invalid file keeps the last good config, the error shows in configz
    write("vs.yaml", VS % "V_BAD")
    time.sleep(DEBOUNCE_MS / 1000.0 + 0.5)
    cz = json.loads(get("/debug/configz"))
    check("configz shows the error with file and field",
          any("vs.yaml" in e and "spec.http[0].route[0].destination.subset" in e for e in cz["errors"]),
          str(cz["errors"]))
    vs = [o for o in cz["objects"] if o["kind"] == "VirtualService" and o["metadata"]["name"] == "reviews"]
    check("configz keeps the last good object", vs and "v2" in json.dumps(vs[0]["spec"]), str(vs))
    check("nothing pushed for an invalid change", drain(a, 0.3) == [])
    check("config error count in metrics", "weftd_config_errors 0\n" not in get("/metrics"))

    # --- config_dump for a connected proxy
    cd = json.loads(get("/debug/config_dump?proxyID=" + PRODUCTPAGE))
    check("config_dump has the four types", [x["typeUrl"] for x in cd] == [xds.CDS, xds.EDS, xds.LDS, xds.RDS])

    # --- the debug server's strict HTTP/1.1 handling
    import socket

    def raw_http(data):
        so = socket.create_connection(("127.0.0.1", dport), timeout=5)
        so.sendall(data)
        out = b""
        while True:
            chunk = so.recv(65536)
            if not chunk:
                break
            out += chunk
        so.close()
        return out.split(b"\r\n", 1)[0]
    check("unknown debug path is 404", raw_http(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n") == b"HTTP/1.1 404 Not Found")
    check("POST is 405", raw_http(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
          == b"HTTP/1.1 405 Method Not Allowed")
    check("a malformed request is 400", raw_http(b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n") == b"HTTP/1.1 400 Bad Request")
    check("config_dump without proxyID is 400",
          raw_http(b"GET /debug/config_dump HTTP/1.1\r\nHost: x\r\n\r\n") == b"HTTP/1.1 400 Bad Request")

    # --- Delta: subscribe, unsubscribe
    d = xds.Stream(gport, delta=True)
    d.send(node=xds.node(PRODUCTPAGE), type_url=xds.CDS)
    r = d.recv()
    check("Delta CDS wildcard", r is not None and len(r.resources) == len(clusters)
          and all(x.version for x in r.resources), str(r and len(r.resources)))
    versions = {x.name: x.version for x in r.resources}
    d.send(type_url=xds.CDS, response_nonce=r.nonce)
    d.send(type_url=xds.EDS, resource_names_subscribe=[eds_names[0]])
    r = d.recv()
    check("Delta EDS subscribe one", r is not None and [x.name for x in r.resources] == [eds_names[0]])
    d.send(type_url=xds.EDS, response_nonce=r.nonce)
    d.send(type_url=xds.EDS, resource_names_subscribe=[eds_names[1]])
    r = d.recv()
    check("Delta EDS subscribe another: only it is sent",
          r is not None and [x.name for x in r.resources] == [eds_names[1]])
    d.send(type_url=xds.EDS, response_nonce=r.nonce)
    d.send(type_url=xds.EDS, resource_names_unsubscribe=[eds_names[0]])
    check("Delta unsubscribe gets no response", d.recv(0.5) is None)
    # a reconnecting Delta client with current versions gets nothing it already has
    d2 = xds.Stream(gport, delta=True)
    d2.send(node=xds.node(PRODUCTPAGE), type_url=xds.CDS, initial_resource_versions=versions)
    r = d2.recv()
    check("initial_resource_versions: nothing resent", r is not None and len(r.resources) == 0,
          str(r and len(r.resources)))
    # a DestinationRule change: Delta gets only the changed clusters
    dr = open(os.path.join(work, "destination-rules.yaml")).read()
    write("destination-rules.yaml", dr.replace("maxConnections: 100", "maxConnections: 77"))
    got = drain(d, 3.0)
    names = [x.name for g in got for x in g.resources if g.type_url == xds.CDS]
    check("Delta pushes only the changed cluster(s)",
          names and all("reviews" in n for n in names) and len(names) < len(clusters), str(names))
    sotw = drain(a, 1.0)
    check("SotW gets the new CDS, not the NACKed RDS again", [x.type_url for x in sotw] == [xds.CDS],
          str([x.type_url for x in sotw]))

    for s in (a, b, d, d2):
        s.close()
    time.sleep(0.3)
    check("disconnects counted", "pilot_xds 0\n" in get("/metrics"))
    e = xds.Stream(gport)
    e.send(node=xds.node("not-a-node-id"), type_url=xds.CDS)
    check("a bad node id ends the stream", e.recv() is None and e.error is not None
          and e.error.code().name == "INVALID_ARGUMENT", str(e.error))
    e.close()

    f = xds.Stream(gport)
    f.send(node=xds.node(PRODUCTPAGE), type_url=xds.CDS)
    f.recv()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    check("SIGTERM exits 0", proc.returncode == 0, str(proc.returncode))
    f.recv(2)
    check("open streams end UNAVAILABLE", f.error is not None and f.error.code().name == "UNAVAILABLE",
          str(f.error))
    f.close()
finally:
    if proc and proc.poll() is None:
        proc.kill()
    if os.environ.get("KEEP"):
        print("work dir", work)
    else:
        shutil.rmtree(work, True)

finish()
