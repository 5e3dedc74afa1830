"""Helpers for Weft's end-to-end tests: start real binaries and backends, drive them with real
clients (curl, raw sockets), read the admin endpoints. Every process started here is stopped
at exit; every test is bounded in time."""
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.environ.get("WEFT_BIN", os.path.join(os.path.dirname(__file__), "../../../build/bin"))
HERE = os.path.dirname(os.path.abspath(__file__))
_procs = []
_failures = []
_passed = 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d did not open" % port)


def _cleanup():
    for p in _procs:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_cleanup)


def backend(name, port=None):
    """Starts tests/e2e/lib/backend.py; returns its port."""
    port = port or free_port()
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "backend.py"), str(port), name],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _procs.append(p)
    p.stdout.readline()
    wait_port(port)
    return port


class Proxy:
    """A running weft-proxy with the given bootstrap YAML."""

    def __init__(self, yaml_text, admin_port, args=(), wait=True):
        fd, self.config = tempfile.mkstemp(suffix=".yaml", prefix="weft-test-")
        os.write(fd, yaml_text.encode())
        os.close(fd)
        self.admin_port = admin_port
        self.log = tempfile.TemporaryFile()
        self.p = subprocess.Popen([os.path.join(BIN, "weft-proxy"), "-c", self.config, "--concurrency", "2",
                                   *args], stdout=self.log, stderr=subprocess.STDOUT)
        _procs.append(self.p)
        if wait:
            deadline = time.time() + 10
            while time.time() < deadline:
                if self.p.poll() is not None:
                    raise RuntimeError("weft-proxy exited: " + self.output())
                try:
                    # Ready, and still ours: a port taken by someone else makes us exit 1.
                    if self.admin("/ready")[0] == 200 and self.p.poll() is None:
                        return
                except OSError:
                    pass
                time.sleep(0.02)
            raise RuntimeError("weft-proxy not ready: " + self.output())

    def admin(self, path, method="GET"):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.admin_port, path), method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stats(self):
        _, body = self.admin("/stats?format=json")
        return {s["name"]: s["value"] for s in json.loads(body)["stats"]}

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        os.unlink(self.config)
        return self.p.returncode


def run_proxy_expect_fail(yaml_text):
    """Runs weft-proxy on a config expected to be rejected; returns (exit code, output)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="weft-bad-", delete=False) as f:
        f.write(yaml_text)
        path = f.name
    try:
        r = subprocess.run([os.path.join(BIN, "weft-proxy"), "-c", path, "--concurrency", "1"],
                           capture_output=True, text=True, timeout=20)
        return r.returncode, (r.stdout + r.stderr).replace(path, "CONFIG")
    finally:
        os.unlink(path)


def curl(url, *args, timeout=10):
    """Runs curl; returns (status, headers dict lower-case, body str)."""
    r = subprocess.run(["curl", "-sS", "-i", "--max-time", str(timeout), *args, url],
                       capture_output=True, timeout=timeout + 5)
    raw = r.stdout
    if r.returncode != 0 and not raw:
        return 0, {}, r.stderr.decode(errors="replace")
    # Skip interim 1xx heads.
    while True:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        status = int(lines[0].split()[1])
        if 100 <= status < 200 and status != 101 and rest:
            raw = rest
            continue
        break
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), v.strip())
    return status, headers, rest.decode(errors="replace")


def raw(port, data, timeout=3.0, read_all=True):
    """Sends bytes and returns everything the server sends back until it closes or goes quiet."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if not read_all:
                break
    except socket.timeout:
        pass
    s.close()
    return out


def rss_kb(pid):
    """VmRSS of process pid in KiB (0 when it has none)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def check(name, cond, detail=""):
    global _passed
    if cond:
        _passed += 1
        print("ok   " + name)
    else:
        _failures.append(name)
        print("FAIL " + name + (": " + str(detail) if detail else ""))


def finish():
    print("%d passed, %d failed" % (_passed, len(_failures)))
    sys.exit(1 if _failures else 0)


def bootstrap(admin_port, listeners, clusters):
    """Wraps listener and cluster YAML fragments (already indented for static_resources) in a
    bootstrap."""
    return """admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
static_resources:
  listeners:
%s
  clusters:
%s
""" % (admin_port, listeners, clusters)


ROUTER = ('{name: envoy.filters.http.router, typed_config: '
          '{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}')


def http_listener(name, port, stat_prefix="ingress", cluster="be", extra="", route_config=None):
    """A listener with one HTTP connection manager. extra: more HCM fields, one per line, without
    indentation. route_config: YAML lines of the route config (without indentation); by default
    every request goes to `cluster`."""
    if route_config is None:
        route_config = ('virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, '
                        'route: {cluster: %s}}]}]' % cluster)
    indent = lambda text, n: "".join(" " * n + line + "\n" for line in text.strip("\n").split("\n") if line)
    return """  - name: %s
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: %s
          http_filters: [%s]
%s          route_config:
%s""" % (name, port, stat_prefix, ROUTER, indent(extra, 10) if extra else "", indent(route_config, 12))


def file_access_log(path, fmt):
    """An HCM access_log field (one line, for http_listener's extra) writing text format fmt
    (Envoy command operators, no newline needed) to path."""
    return ('access_log: [{name: envoy.access_loggers.file, typed_config: {"@type": '
            'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: %s, '
            'log_format: {text_format_source: {inline_string: "%s\\n"}}}}]' % (path, fmt))


def static_cluster(name, ports, lb="ROUND_ROBIN", extra=""):
    eps = "\n".join("        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}" % p
                    for p in ports)
    return """  - name: %s
    connect_timeout: 1s
    type: STATIC
    lb_policy: %s
%s
    load_assignment:
      cluster_name: %s
      endpoints:
      - lb_endpoints:
%s
""" % (name, lb, extra, name, eps)


def ads_bootstrap(admin_port, ads_port, node, api_type="GRPC", source_extra=""):
    """A dynamic bootstrap as Istio writes it: `node` (YAML lines, not indented), ADS (api_type
    GRPC or DELTA_GRPC) over HTTP/2 to the static cluster xds-grpc at 127.0.0.1:ads_port, CDS
    and LDS by ADS (source_extra: more ConfigSource fields, e.g. ", initial_fetch_timeout: 5s")."""
    return """admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
node:
%s
dynamic_resources:
  ads_config:
    api_type: %s
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]
  cds_config: {ads: {}, resource_api_version: V3%s}
  lds_config: {ads: {}, resource_api_version: V3%s}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]
""" % (admin_port, "".join("  " + l + "\n" for l in node.strip("\n").split("\n")).rstrip("\n"), api_type,
       source_extra, source_extra, ads_port)
