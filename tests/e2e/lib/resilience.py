"""Helpers shared by the resilience e2e tests (circuit breakers, outlier detection, health
checks): weft-echo backends that misbehave on command, concurrent load from threads, polling
/stats and /clusters until a condition holds (the machine is shared: never a fixed sleep)."""
import http.client
import os
import subprocess
import tempfile
import threading
import time

import weft

ECHO = os.path.join(weft.BIN, "weft-echo")


def echo(port, name, *args):
    """Starts weft-echo on 127.0.0.1:port; returns the process (stopped at exit)."""
    p = subprocess.Popen([ECHO, "--bind", "127.0.0.1", "--port", str(port), "--name", name, *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    weft._procs.append(p)
    weft.wait_port(port)
    return p


class FailSwitch:
    """A weft-echo --fail-file: while on, that backend answers every request with its
    --fail-status (/healthz too)."""

    def __init__(self):
        fd, self.path = tempfile.mkstemp(prefix="weft-fail-")
        os.close(fd)
        os.unlink(self.path)

    def on(self):
        open(self.path, "w").close()

    def off(self):
        if os.path.exists(self.path):
            os.unlink(self.path)


def get(port, path="/", headers=None, timeout=20):
    """One HTTP/1.1 request on a new connection; returns (status, body text, headers) or
    (0, error, {})."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read().decode(errors="replace")
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        return r.status, body, hdrs
    except OSError as e:
        return 0, str(e), {}


def load(port, n, path="/", headers=None, threads=None):
    """n requests from `threads` threads at once (default n); returns the list of
    (status, body, headers)."""
    out = []
    lock = threading.Lock()
    threads = threads or n
    todo = [n]

    def run():
        while True:
            with lock:
                if todo[0] == 0:
                    return
                todo[0] -= 1
            r = get(port, path, headers)
            with lock:
                out.append(r)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def parallel(fn, n):
    """Calls fn() from n threads at once; returns the list of what they returned."""
    out = []
    lock = threading.Lock()

    def run():
        r = fn()
        with lock:
            out.append(r)
    ts = [threading.Thread(target=run) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def poll(fn, timeout=20.0, every=0.05):
    """Calls fn until it returns something true; returns that (or the last value on timeout)."""
    deadline = time.time() + timeout
    v = fn()
    while not v and time.time() < deadline:
        time.sleep(every)
        v = fn()
    return v


def clusters(proxy):
    """/clusters as {(cluster, host): {field: value}}."""
    _, body = proxy.admin("/clusters")
    out = {}
    for line in body.splitlines():
        parts = line.split("::")
        if len(parts) == 4:
            out.setdefault((parts[0], parts[1]), {})[parts[2]] = parts[3]
    return out


def served_by(results):
    """Counts answers per weft-echo "service" name (JSON body), plus "status:<code>" for
    others."""
    import json
    counts = {}
    for st, body, _ in results:
        key = "status:%d" % st
        if st == 200:
            try:
                key = json.loads(body).get("service", key)
            except ValueError:
                pass
        counts[key] = counts.get(key, 0) + 1
    return counts
