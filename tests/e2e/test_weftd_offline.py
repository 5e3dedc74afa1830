#!/usr/bin/python3
"""weftd offline: --validate names file:line and the field path and exits 1, --dump prints
what a proxy would receive as JSON DiscoveryResponses, and the watch mode picks up file
changes through inotify (new config versions in its log, last good objects kept)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import check, finish, free_port  # noqa

BIN = os.path.join(os.environ.get("WEFT_BIN", "build/bin"), "weftd")
SRC = os.environ.get("WEFT_SRC", ".")
SAMPLE = os.path.join(SRC, "samples/bookinfo-istio")
PRODUCTPAGE = "sidecar~10.1.0.10~productpage-v1-abc.default~default.svc.cluster.local"


def weftd(*args, timeout=30):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


# --validate on a good tree
r = weftd("--config-dir", SAMPLE, "--validate")
check("sample validates", r.returncode == 0 and "no errors" in r.stdout, r.stdout + r.stderr)

# --validate on broken files: every error, file:line, field path; exit 1
work = tempfile.mkdtemp(prefix="weftd-e2e-")
try:
    shutil.copy(os.path.join(SRC, "tests/data/istio/invalid/broken.yaml"), work)
    with open(os.path.join(work, "syntax.yaml"), "w") as f:
        f.write("apiVersion: v1\nkind: Service\nmetadata: {name: x\n")
    r = weftd("--config-dir", work, "--validate")
    lines = r.stdout.splitlines()
    b = os.path.join(work, "broken.yaml")
    check("validate exits 1", r.returncode == 1, str(r.returncode))
    check("weight error with path", f"{b}:17: spec.http[0].route[1].weight: weight -10 < 0" in lines, r.stdout)
    check("regex error", any(l.startswith(f"{b}:21: spec.http[1].match[0].uri.regex: \"([a-z\" is not a valid regex")
                             for l in lines), r.stdout)
    check("unknown field", f"{b}:66: spec.http[0].perTryTimeout: unknown field" in lines, r.stdout)
    check("syntax error names the file", any(l.startswith(os.path.join(work, "syntax.yaml") + ":") for l in lines), r.stdout)
    check("all errors listed", len(lines) == 24, str(len(lines)))
finally:
    shutil.rmtree(work)

# --validate warns about references between objects without failing
work = tempfile.mkdtemp(prefix="weftd-warn-")
try:
    for f in os.listdir(SAMPLE):
        shutil.copy(os.path.join(SAMPLE, f), work)
    with open(os.path.join(work, "vs.yaml"), "w") as f:
        f.write("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
                "spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v7}}]\n")
    r = weftd("--config-dir", work, "--validate")
    want = ("warning: %s/vs.yaml:1: VirtualService default/reviews: subset v7 of "
            "reviews.default.svc.cluster.local is not defined by any DestinationRule" % work)
    check("undefined subset is a warning", r.returncode == 0 and want in r.stdout.splitlines(), r.stdout)
finally:
    shutil.rmtree(work)

# --dump: all four types in ADS order, then one type
r = weftd("--config-dir", SAMPLE, "--dump", PRODUCTPAGE)
ok = r.returncode == 0
try:
    d = json.loads(r.stdout) if ok else []
except ValueError:
    d, ok = [], False
check("dump is JSON", ok, r.stderr[:500])
urls = [x.get("typeUrl", "").rsplit(".", 1)[-1] for x in d]
check("ADS order", urls == ["Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"], str(urls))
if len(d) == 4:
    clusters = [c["name"] for c in d[0]["resources"]]
    check("subset clusters", "outbound|9080|v2|reviews.default.svc.cluster.local" in clusters, str(clusters))
    check("inbound cluster", "inbound|9080||" in clusters, str(clusters))
    eds = {c["clusterName"]: c for c in d[1]["resources"]}
    v3 = eds.get("outbound|9080|v3|reviews.default.svc.cluster.local", {})
    addrs = [e["endpoint"]["address"]["socketAddress"]["address"] for g in v3.get("endpoints", []) for e in g["lbEndpoints"]]
    check("subset endpoints filtered by labels", addrs == ["10.1.0.23"], str(addrs))
    listeners = [l["name"] for l in d[2]["resources"]]
    check("listeners", listeners == ["0.0.0.0_80", "0.0.0.0_9080", "10.96.0.20_27017", "virtualInbound", "virtualOutbound"],
          str(listeners))
r = weftd("--config-dir", SAMPLE, "--dump", PRODUCTPAGE, "--type", "rds")
try:
    rds = json.loads(r.stdout)
except ValueError:
    rds = {}
check("one type", rds.get("typeUrl") == "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", r.stdout[:300])
with open(os.path.join(SRC, "tests/data/golden/bookinfo-productpage.json")) as f:
    golden = json.load(f)
check("dump equals the golden file", d == golden)
r = weftd("--config-dir", SAMPLE, "--dump", "sidecar~bad")
check("bad node id is refused", r.returncode == 2 and "is not TYPE~IP" in r.stderr, r.stderr)
r = weftd("--config-dir", SAMPLE, "--dump", PRODUCTPAGE, "--type", "sds")
check("bad --type is refused", r.returncode == 2, r.stderr)

# watch mode: inotify-driven reloads
work = tempfile.mkdtemp(prefix="weftd-watch-")
proc = None
try:
    for f in os.listdir(SAMPLE):
        shutil.copy(os.path.join(SAMPLE, f), work)
    log = open(os.path.join(work, "weftd.log.txt"), "w+")
    proc = subprocess.Popen([BIN, "--config-dir", work, "--grpc-addr", "127.0.0.1:%d" % free_port(),
                             "--debug-addr", "127.0.0.1:%d" % free_port()],
                            stdout=log, stderr=subprocess.STDOUT)

    def wait_log(text, timeout=10.0):
        """Waits for a log line containing text. "config version N:" matches any version from N
        on: a save seen half-written on a loaded machine may take one version more."""
        m = re.match(r"config version (\d+): (.*)", text)
        pattern = (r"config version (\d+): " + re.escape(m.group(2))) if m else re.escape(text)
        end = time.time() + timeout
        while time.time() < end:
            log.seek(0)
            for found in re.finditer(pattern, log.read()):
                if not m or int(found.group(1)) >= int(m.group(1)):
                    return True
            time.sleep(0.05)
        return False

    check("initial version", wait_log("config version 1: 20 objects"))
    with open(os.path.join(work, "vs.yaml"), "w") as f:   # saved in place, as an editor or `cat >` does
        f.write("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
                "spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v1}}]\n")
    check("new file picked up", wait_log("config version 2: 21 objects, 6 services, 0 errors"))
    with open(os.path.join(work, "vs.yaml"), "w") as f:   # saved in place, as an editor or `cat >` does
        f.write("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
                "spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: V1}}]\n")
    check("invalid change keeps the last good object", wait_log("config version 3: 21 objects, 6 services, 2 errors"))
    check("the error is logged", wait_log("vs.yaml:7: spec.http[0].route[0].destination.subset"))
    os.unlink(os.path.join(work, "vs.yaml"))
    check("removal picked up", wait_log("config version 4: 20 objects"))
    proc.terminate()
    proc.wait(timeout=10)
    check("stops on SIGTERM", proc.returncode == 0, str(proc.returncode))
finally:
    if proc and proc.poll() is None:
        proc.kill()
    shutil.rmtree(work)

finish()
