#!/usr/bin/python3
"""End-to-end tests of weft-echo (src/echo): HTTP/1.1 and h2c on one port (curl, nghttp,
h2load), gRPC generic calls with python3-grpcio (raw JSON bytes), a three-level call graph with
trace headers forwarded, every misbehaviour, --fail-rate, SIGTERM and bad flags."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import weft  # noqa: E402
from weft import check, curl, finish  # noqa: E402

import grpc  # noqa: E402
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402

ECHO = os.path.join(weft.BIN, "weft-echo")
_procs = []


def start(*args, name="echo", version="v1"):
    port = weft.free_port()
    p = subprocess.Popen([ECHO, "--bind", "127.0.0.1", "--port", str(port), "--name", name,
                          "--version", version, "--pod", name + "-pod", *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _procs.append(p)
    weft.wait_port(port)
    return p, port


def jget(port, path="/", *args):
    st, h, body = curl("http://127.0.0.1:%d%s" % (port, path), *args)
    try:
        return st, h, json.loads(body)
    except ValueError:
        return st, h, body


def h2_events(port, headers, timeout=3.0):
    """One raw HTTP/2 request with python3-h2; returns (event class names, closed by server)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn.send_headers(1, [(":method", "GET"), (":path", "/x"), (":scheme", "http"),
                          (":authority", "t")] + headers, end_stream=True)
    s.sendall(conn.data_to_send())
    names, closed = [], False
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            data = s.recv(65536)
            if not data:
                closed = True
                break
            for ev in conn.receive_data(data):
                names.append(type(ev).__name__)
                if isinstance(ev, h2.events.StreamReset):
                    names.append("code=%d" % ev.error_code)
            s.sendall(conn.data_to_send())
            if "StreamReset" in names or ("StreamEnded" in names and not headers):
                break
    except (socket.timeout, OSError):
        pass
    s.close()
    return names, closed


def main():
    p, port = start(name="alpha", version="v7")
    base = "http://127.0.0.1:%d" % port

    # --- HTTP/1.1 ---
    st, h, j = jget(port, "/some/path?q=1", "-H", "X-Mixed-Case: Yes", "-d", "0123456789")
    check("h1 status 200", st == 200, st)
    check("h1 json fields", isinstance(j, dict) and j.get("service") == "alpha" and
          j.get("version") == "v7" and j.get("pod") == "alpha-pod" and j.get("ip") == "127.0.0.1"
          and j.get("method") == "POST" and j.get("path") == "/some/path?q=1" and
          j.get("protocol") == "HTTP/1.1" and j.get("body_bytes") == 10, j)
    check("h1 headers lower-case", isinstance(j, dict) and j["headers"].get("x-mixed-case") == "Yes"
          and "X-Mixed-Case" not in j["headers"], j)
    st, h, body = curl(base + "/", "-I")
    check("HEAD has no body", st == 200 and body == "" and int(h.get("content-length", 0)) > 0, (st, h))
    # keep-alive: two requests on one connection
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    deadline = time.time() + 3
    while data.count(b"HTTP/1.1 200") < 2 and time.time() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    check("keep-alive pipelined", data.count(b"HTTP/1.1 200") == 2 and b'"/b"' in data, data[:200])
    r = subprocess.run(["curl", "-sS", "-H", "Transfer-Encoding: chunked", "--data-binary",
                        "@-", base + "/up"], input=b"z" * 70000, capture_output=True, timeout=10)
    j = json.loads(r.stdout or b"{}")
    check("chunked body counted", j.get("body_bytes") == 70000, j.get("body_bytes"))
    st, _, _ = curl(base + "/healthz")
    check("/healthz 200", st == 200, st)

    # --- HTTP/2 prior knowledge, same port ---
    st, h, j = jget(port, "/h2?x=1", "--http2-prior-knowledge", "-H", "X-Up: A", "-d", "abc")
    check("h2 json fields", st == 200 and isinstance(j, dict) and j.get("protocol") == "HTTP/2"
          and j.get("method") == "POST" and j.get("path") == "/h2?x=1" and
          j["headers"].get("x-up") == "A" and j.get("body_bytes") == 3, (st, j))
    st, _, j = jget(port, "/up", "--http2")
    check("Upgrade: h2c ignored, answered in HTTP/1.1", st == 200 and j.get("protocol") == "HTTP/1.1", (st, j))
    if shutil.which("nghttp"):
        r = subprocess.run(["nghttp", "-n", "-s", "-m", "5", base + "/n"], capture_output=True, timeout=20)
        check("nghttp 5 requests", r.returncode == 0, r.stderr[-300:])
    if shutil.which("h2load"):
        r = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "5", base + "/l"],
                           capture_output=True, timeout=30)
        out = r.stdout.decode()
        check("h2load 200 succeeded", "200 succeeded" in out and "0 failed" in out, out[-400:])

    # --- misbehaviour ---
    for args, label in ((["-H", "x-echo-delay-ms: 400"], "h1 header"), ([], "h1 query"),
                        (["--http2-prior-knowledge", "-H", "x-echo-delay-ms: 400"], "h2 header")):
        path = "/d?delay=400" if label == "h1 query" else "/d"
        t0 = time.time()
        st, _, _ = curl(base + path, *args)
        dt = time.time() - t0
        check("delay %s ~400ms" % label, st == 200 and 0.38 <= dt < 2.0, (st, dt))
    st, _, j = jget(port, "/s", "-H", "x-echo-status: 418")
    check("status by header", st == 418 and j.get("status") == 418, st)
    st, _, _ = jget(port, "/s?status=503", "--http2-prior-knowledge")
    check("status by query (h2)", st == 503, st)
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "-H", "x-echo-reset: 1", base + "/r"],
                       capture_output=True, timeout=10)
    check("reset h1: curl error", r.returncode != 0 and r.stdout == b"", (r.returncode, r.stdout))
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "--http2-prior-knowledge", "-H",
                        "x-echo-reset: 1", base + "/r"], capture_output=True, timeout=10)
    check("reset h2: curl error (RST_STREAM)", r.returncode != 0 and r.stdout == b"", (r.returncode, r.stderr))
    names, _ = h2_events(port, [("x-echo-reset", "1")])
    check("reset h2: RST_STREAM INTERNAL_ERROR", "StreamReset" in names and "code=2" in names, names)
    names, closed = h2_events(port, [("x-echo-close", "1")])
    check("close h2: answer, GOAWAY, close", "StreamEnded" in names and "ConnectionTerminated" in names
          and closed, (names, closed))
    for extra in ([], ["--http2-prior-knowledge"]):
        r = subprocess.run(["curl", "-sS", "--max-time", "10", *extra, "-H", "x-echo-body-size: 300000",
                            "-H", "x-echo-close: 1", base + "/bigclose"], capture_output=True, timeout=15)
        check("close after a 300 KB answer %s" % (extra or "h1"), r.returncode == 0 and
              len(r.stdout) == 300000, (r.returncode, len(r.stdout)))
    for extra in ([], ["--http2-prior-knowledge"]):
        r = subprocess.run(["curl", "-sS", "--max-time", "10", *extra, "-H", "x-echo-body-size: 1000000",
                            base + "/big"], capture_output=True, timeout=15)
        check("body size %s" % (extra or "h1"), r.returncode == 0 and len(r.stdout) == 1000000,
              len(r.stdout))
    out = weft.raw(port, b"GET /c HTTP/1.1\r\nHost: x\r\nx-echo-close: 1\r\n\r\n", timeout=3)
    check("close after answer", out.startswith(b"HTTP/1.1 200") and b"connection: close" in out.lower()
          and out.endswith(b"}\n"), out[:120])
    out = weft.raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", timeout=3)
    check("bad request 400", out.startswith(b"HTTP/1.1 400"), out[:60])

    # --- call graph a -> b -> c ---
    pc, portc = start(name="ratings", version="v1")
    pb, portb = start("--call", "http://127.0.0.1:%d/ratings/0" % portc, name="reviews", version="v2")
    pa, porta = start("--call", "http://localhost:%d/reviews/0" % portb, name="productpage")
    trace = {"x-request-id": "req-42", "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
             "x-b3-spanid": "e457b5a2e4d86bd1", "x-b3-parentspanid": "05e3ac9a4f6e3b90",
             "x-b3-sampled": "1", "traceparent": "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01",
             "end-user": "jason"}
    hargs = []
    for k, v in trace.items():
        hargs += ["-H", "%s: %s" % (k, v)]
    st, _, j = jget(porta, "/productpage", *hargs, "-H", "x-not-forwarded: 1")
    ok = st == 200 and isinstance(j, dict)
    try:
        b = j["calls"][0]
        c = b["body"]["calls"][0]
        ok = ok and b["status"] == 200 and b["body"]["service"] == "reviews" and \
            c["status"] == 200 and c["body"]["service"] == "ratings"
        ch = c["body"]["headers"]
        fwd = all(ch.get(k) == v for k, v in trace.items())
        check("three-level graph", ok, j)
        check("trace headers + end-user forwarded end to end", fwd, ch)
        check("other headers not forwarded", "x-not-forwarded" not in ch, ch)
    except (KeyError, IndexError, TypeError):
        check("three-level graph", False, j)
    st, _, j = jget(porta, "/productpage", "--http2-prior-knowledge", *hargs)
    check("graph from h2", st == 200 and j["calls"][0]["body"]["calls"][0]["body"]["headers"].get(
        "end-user") == "jason", j)
    pc.send_signal(signal.SIGTERM)
    pc.wait(10)
    st, _, j = jget(porta, "/productpage")
    check("failed call deep in graph -> 502", st == 502 and j["calls"][0]["status"] == 502 and
          "error" in j["calls"][0]["body"]["calls"][0], (st, j))
    dead = weft.free_port()
    po, porto = start("--call", "http://127.0.0.1:%d/x" % dead, "--call-optional", name="opt")
    st, _, j = jget(porto, "/")
    check("--call-optional: 200 with the error", st == 200 and "error" in j["calls"][0], (st, j))

    # --- --fail-rate ---
    pf, portf = start("--fail-rate", "0.2", "--fail-status", "503", name="flaky")
    codes = []
    s = None
    for _ in range(200):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "http://127.0.0.1:%d/" % portf], capture_output=True, timeout=10)
        codes.append(r.stdout.decode())
    n503 = codes.count("503")
    check("--fail-rate 0.2 over 200 (%d x 503)" % n503, 15 <= n503 <= 70 and
          codes.count("200") + n503 == 200, codes[:10])
    pd, portd = start("--delay-ms", "300", name="slow")
    t0 = time.time()
    st, _, _ = curl("http://127.0.0.1:%d/" % portd)
    check("--delay-ms", st == 200 and time.time() - t0 >= 0.28, st)

    # --- gRPC ---
    gport = weft.free_port()
    pg, _ = start("--grpc-port", str(gport), name="grpcsvc")
    weft.wait_port(gport)
    ch = grpc.insecure_channel("127.0.0.1:%d" % gport)
    unary = ch.unary_unary("/weft.echo.Echo/Echo")
    resp, call = unary.with_call(b"hi there", metadata=(("x-trace", "t1"),), timeout=5)
    j = json.loads(resp)
    check("grpc unary JSON", j.get("service") == "grpcsvc" and j.get("protocol") == "gRPC" and
          j.get("path") == "/weft.echo.Echo/Echo" and j["headers"].get("x-trace") == "t1" and
          j.get("body_bytes") == 8, j)
    stream = ch.unary_stream("/weft.echo.Echo/EchoStream")
    msgs = list(stream(b"", metadata=(("x-echo-stream-count", "4"),), timeout=5))
    check("grpc server streaming 4 messages", len(msgs) == 4 and
          json.loads(msgs[0]).get("path") == "/weft.echo.Echo/EchoStream", len(msgs))
    try:
        unary(b"", metadata=(("x-echo-grpc-status", "14"),), timeout=5)
        check("grpc status by metadata", False, "no error")
    except grpc.RpcError as e:
        check("grpc status by metadata", e.code() == grpc.StatusCode.UNAVAILABLE, e.code())
    t0 = time.time()
    resp = unary(b"", metadata=(("x-echo-delay-ms", "300"),), timeout=5)
    check("grpc delay by metadata", time.time() - t0 >= 0.28 and json.loads(resp).get("service") == "grpcsvc")
    try:
        unary(b"", metadata=(("x-echo-delay-ms", "2000"),), timeout=0.3)
        check("grpc deadline shorter than the delay", False, "no error")
    except grpc.RpcError as e:
        check("grpc deadline shorter than the delay", e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.code())
    ch.close()

    # --- SIGTERM finishes in-flight, exits 0 ---
    ps, ports = start(name="term")
    slow = subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                             "-H", "x-echo-delay-ms: 700", "http://127.0.0.1:%d/" % ports],
                            stdout=subprocess.PIPE)
    slow2 = subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                              "--http2-prior-knowledge", "-H", "x-echo-delay-ms: 700",
                              "http://127.0.0.1:%d/" % ports], stdout=subprocess.PIPE)
    time.sleep(0.3)
    ps.send_signal(signal.SIGTERM)
    code = slow.communicate(timeout=10)[0].decode()
    code2 = slow2.communicate(timeout=10)[0].decode()
    check("SIGTERM: in-flight h2 answered", code2 == "200", code2)
    rc = ps.wait(10)
    check("SIGTERM: in-flight answered", code == "200", code)
    check("SIGTERM: exit 0", rc == 0, (rc, ps.stderr.read()[-300:]))
    for proc in (p, pa, pb, pg, pf, pd, po):
        proc.send_signal(signal.SIGTERM)
        check("SIGTERM exit 0 (%d)" % proc.pid, proc.wait(10) == 0, proc.returncode)

    # --- two --port listeners, each serving both protocols ---
    p2 = weft.free_port()
    pm, portm = start("--port", str(p2), name="multi")
    weft.wait_port(p2)
    st1, _, j1 = jget(portm, "/one")
    st2, _, j2 = jget(p2, "/two", "--http2-prior-knowledge")
    check("two ports", st1 == 200 and st2 == 200 and j1.get("service") == "multi" and
          j2.get("protocol") == "HTTP/2", (st1, st2))
    pm.send_signal(signal.SIGTERM)
    check("two ports: SIGTERM exit 0", pm.wait(10) == 0, pm.returncode)

    # --- bad flags, port in use ---
    for argv in (["--port", "x"], ["--port", "0"], ["--bogus"], ["--fail-rate", "2", "--port", "1"],
                 ["--call", "ftp://x/", "--port", "1"], ["--port"], []):
        r = subprocess.run([ECHO, *argv], capture_output=True, timeout=5)
        err = r.stderr.decode()
        check("bad flags %s exit 2" % argv, r.returncode == 2 and err.startswith("weft-echo: ")
              and err.count("\n") == 1, (r.returncode, err))
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    r = subprocess.run([ECHO, "--bind", "127.0.0.1", "--port", str(busy.getsockname()[1])],
                       capture_output=True, timeout=5)
    busy.close()
    check("port in use: exit 1", r.returncode == 1 and b"in use" in r.stderr, (r.returncode, r.stderr))


try:
    main()
finally:
    for pr in _procs:
        if pr.poll() is None:
            pr.kill()
            pr.wait()
finish()
