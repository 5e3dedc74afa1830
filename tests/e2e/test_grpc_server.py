#!/usr/bin/python3
"""End-to-end tests of src/net/grpc_server through weft-grpc-testsrv (tests/tools/grpc_testsrv.c).

Clients: Debian's python3-grpcio with generic calls and raw bytes (no generated code), and raw
HTTP/2 frames with python3-h2 for what a gRPC library never sends (wrong content-type, GET,
compressed flags, bad grpc-timeout) or never lets us observe (trailers-only responses,
RST_STREAM codes, GOAWAY, a client that stops reading the socket)."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import weft  # noqa: E402
from weft import check, finish  # noqa: E402

import grpc  # noqa: E402
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402

SVC = "/weft.test.Echo/"
MIB = 1 << 20
_servers = []


class Server:
    def __init__(self, *args):
        self.p = subprocess.Popen([os.path.join(weft.BIN, "weft-grpc-testsrv"), *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _servers.append(self.p)
        line = self.p.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise RuntimeError("testsrv did not start: " + line + self.p.stderr.read().decode())
        self.port = int(line.split()[-1])
        self.target = "127.0.0.1:%d" % self.port

    def channel(self, **opts):
        return grpc.insecure_channel(self.target, options=list(opts.items()))

    def rss_kb(self):
        return weft.rss_kb(self.p.pid)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def stats(ch):
    text = ch.unary_unary(SVC + "Stats")(b"", timeout=5).decode()
    return {k: int(v) for k, v in (kv.split("=") for kv in text.split())}


def frame(msg, compressed=False):
    return bytes([1 if compressed else 0]) + len(msg).to_bytes(4, "big") + msg


class Raw:
    """A raw HTTP/2 client connection (python3-h2)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                      header_encoding="utf-8"))
        self.c.initiate_connection()
        self.flush()
        self.events = []
        self.closed = False

    def flush(self):
        data = self.c.data_to_send()
        if data:
            self.s.sendall(data)

    def request(self, path, headers=None, body=b"", end=True, method="POST",
                content_type="application/grpc"):
        sid = self.c.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "http"), (":path", path),
                (":authority", "127.0.0.1"), ("te", "trailers")]
        if content_type:
            hdrs.append(("content-type", content_type))
        hdrs += headers or []
        self.c.send_headers(sid, hdrs, end_stream=end and not body)
        if body:
            self.c.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def pump(self, until, timeout=5.0):
        """Reads until until(events) is true or the time is up; returns the events."""
        deadline = time.time() + timeout
        while not until(self.events) and time.time() < deadline and not self.closed:
            self.s.settimeout(max(0.01, deadline - time.time()))
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            for ev in self.c.receive_data(data):
                self.events.append(ev)
                if isinstance(ev, h2.events.DataReceived):
                    self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            self.flush()
        return self.events

    def stream(self, sid, timeout=5.0):
        """Waits for the stream to end; returns (list of header lists, data bytes, reset code)."""
        def done(evs):
            return any(getattr(e, "stream_id", None) == sid and
                       isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) for e in evs)
        self.pump(done, timeout)
        heads, data, reset = [], b"", None
        for e in self.events:
            if getattr(e, "stream_id", None) != sid:
                continue
            if isinstance(e, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                heads.append(dict(e.headers))
            elif isinstance(e, h2.events.DataReceived):
                data += e.data
            elif isinstance(e, h2.events.StreamReset):
                reset = e.error_code
        return heads, data, reset

    def close(self):
        self.s.close()


def rpc_error(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e
    return None


def test_basic(srv):
    ch = srv.channel()
    r, call = ch.unary_unary(SVC + "Unary").with_call(b"hello", metadata=[("x-echo-color", "blue")],
                                                     timeout=5)
    check("unary echoes the request", r == b"hello", r)
    check("unary: request metadata comes back as response headers",
          ("x-echo-color", "blue") in [(m.key, m.value) for m in call.initial_metadata()],
          call.initial_metadata())
    check("unary: empty message", ch.unary_unary(SVC + "Unary")(b"", timeout=5) == b"")

    msgs = list(ch.unary_stream(SVC + "ServerStream")(b"100,64", timeout=10))
    check("server streaming: 100 messages in order",
          len(msgs) == 100 and all(m.startswith(b"%d:" % i) and len(m) == 64
                                   for i, m in enumerate(msgs)), len(msgs))
    check("server streaming: zero messages", list(ch.unary_stream(SVC + "ServerStream")(
        b"0,10", timeout=5)) == [])

    parts = [bytes([65 + i % 26]) * (i * 37 % 5000) for i in range(200)]
    r = ch.stream_unary(SVC + "ClientStream")(iter(parts), timeout=10)
    check("client streaming: concatenation of 200 messages", r == b"".join(parts), len(r))
    check("client streaming: no messages", ch.stream_unary(SVC + "ClientStream")(iter([]),
                                                                             timeout=5) == b"")

    out = list(ch.stream_stream(SVC + "Bidi")(iter(parts), timeout=10))
    check("bidi: every message echoed in order", out == parts, len(out))

    # bidi ping-pong: each reply arrives before the next request is sent
    q = []
    cv = threading.Condition()

    def reqs():
        for i in range(20):
            with cv:
                q.append(b"ping%d" % i)
                cv.notify()
            yield b"ping%d" % i
            with cv:
                cv.wait_for(lambda: len(q) == 0, timeout=5)
    got = []
    for m in ch.stream_stream(SVC + "Bidi")(reqs(), timeout=10):
        got.append(m)
        with cv:
            q.clear()
            cv.notify()
    check("bidi ping-pong: 20 round trips", got == [b"ping%d" % i for i in range(20)], got[-3:])

    e = rpc_error(lambda: ch.unary_unary(SVC + "Fail")("7 caf\u00e9 100% done\n".encode(), timeout=5))
    check("fail: status from the handler", e is not None and e.code() == grpc.StatusCode.PERMISSION_DENIED,
          e and e.code())
    check("fail: grpc-message percent-encoded and decoded (UTF-8, %, newline)",
          e is not None and e.details() == "caf\u00e9 100% done\n", e and repr(e.details()))
    check("fail: trailing metadata", e is not None and ("x-fail-trailer", "yes") in
          [(m.key, m.value) for m in e.trailing_metadata()], e and e.trailing_metadata())
    for code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
        e = rpc_error(lambda: ch.unary_unary(SVC + "Fail")(b"%d x" % code.value[0], timeout=5))
        check("fail: status %s" % code.name, e is not None and e.code() == code, e and e.code())

    e = rpc_error(lambda: ch.unary_unary("/weft.test.Echo/Nope")(b"", timeout=5))
    check("unknown method: UNIMPLEMENTED", e is not None and e.code() == grpc.StatusCode.UNIMPLEMENTED,
          e and e.code())
    e = rpc_error(lambda: ch.unary_unary("/other.Service/Unary")(b"", timeout=5))
    check("unknown service: UNIMPLEMENTED", e is not None and e.code() == grpc.StatusCode.UNIMPLEMENTED)
    e = rpc_error(lambda: ch.stream_unary(SVC + "Unary")(iter([b"a", b"b"]), timeout=5))
    check("unary method given two messages: INTERNAL",
          e is not None and e.code() == grpc.StatusCode.INTERNAL, e and e.code())
    ch.close()


def test_sizes(srv):
    ch = srv.channel(**{"grpc.max_receive_message_length": 8 * MIB})
    u = ch.unary_unary(SVC + "Unary")
    big = os.urandom(4 * MIB)
    check("4 MiB message (the limit) echoed", u(big, timeout=30) == big)
    near = os.urandom(4 * MIB - 5)
    check("4 MiB - 5 message echoed", u(near, timeout=30) == near)
    e = rpc_error(lambda: u(b"x" * (4 * MIB + 1), timeout=30))
    check("4 MiB + 1 message: RESOURCE_EXHAUSTED from the server",
          e is not None and e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and
          "larger than max (4194305 vs. 4194304)" in e.details(), e and (e.code(), e.details()))
    e = rpc_error(lambda: ch.stream_unary(SVC + "ClientStream")(iter([b"a" * 1000, b"b" * (5 * MIB)]),
                                                                timeout=30))
    check("client stream with a 5 MiB message: RESOURCE_EXHAUSTED",
          e is not None and e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e and e.code())
    msgs = list(ch.unary_stream(SVC + "ServerStream")(b"3,%d" % (4 * MIB), timeout=30))
    check("server stream of three 4 MiB messages", [len(m) for m in msgs] == [4 * MIB] * 3,
          [len(m) for m in msgs])
    e = rpc_error(lambda: list(ch.unary_stream(SVC + "ServerStream")(b"1,%d" % (4 * MIB + 1),
                                                                     timeout=10)))
    check("the server refuses to send above its max message (grpc_call_send -EMSGSIZE)",
          e is not None and e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and
          e.details() == "response larger than max message", e and (e.code(), e.details()))
    check("connection still usable after size errors", u(b"ok", timeout=5) == b"ok")
    st = stats(ch)
    check("too-large requests end with on_done(GRPC_END_ERROR)", st["done_error"] >= 2, st)
    check("every started call got exactly one on_done (calls = on_done reasons + unimplemented + "
          "the running Stats call)",
          st["calls"] == st["done_finished"] + st["done_cancelled"] + st["done_deadline"] +
          st["done_error"] + st["done_closed"] + st["unimplemented"] + st["live_calls"], st)
    ch.close()


def test_deadline_cancel(srv):
    ch = srv.channel()
    before = stats(ch)
    t0 = time.time()
    e = rpc_error(lambda: ch.unary_unary(SVC + "Delay")(b"3000", timeout=0.3))
    el = time.time() - t0
    check("deadline: DEADLINE_EXCEEDED after ~0.3 s",
          e is not None and e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and el < 2.0,
          e and (e.code(), el))
    check("delay within the deadline succeeds",
          ch.unary_unary(SVC + "Delay")(b"100", timeout=5) == b"100")

    # cancellation of a server stream the server would otherwise send forever
    it = ch.unary_stream(SVC + "ServerStream")(b"100000000,1000", timeout=30)
    first = next(it)
    it.cancel()
    check("cancel: the stream had started", first.startswith(b"0:"))
    # cancellation of a pending unary call
    fut = ch.unary_unary(SVC + "Delay").future(b"5000", timeout=30)
    time.sleep(0.2)
    fut.cancel()
    deadline = time.time() + 5
    while time.time() < deadline:
        st = stats(ch)
        if st["cancelled"] >= before["cancelled"] + 2 and st["live_calls"] == 1:
            break
        time.sleep(0.05)
    check("cancel: the server saw both RST_STREAMs (on_done CANCELLED) and freed the calls",
          st["cancelled"] >= before["cancelled"] + 2 and st["live_calls"] == 1, st)
    check("cancel: nothing left queued", st["queued_bytes"] == 0, st)

    # the server's own deadline: a raw client that does not cancel gets grpc-status 4
    raw = Raw(srv.port)
    sid = raw.request(SVC + "Delay", [("grpc-timeout", "200m")], frame(b"5000"))
    t0 = time.time()
    heads, data, reset = raw.stream(sid, timeout=5)
    el = time.time() - t0
    check("server deadline: trailers-only DEADLINE_EXCEEDED at ~200 ms",
          len(heads) == 1 and heads[0].get("grpc-status") == "4" and 0.15 < el < 2.0,
          (heads, el))
    sid = raw.request(SVC + "Unary", [("grpc-timeout", "1s")], frame(b"x"))
    heads, _, _ = raw.stream(sid)
    check("malformed grpc-timeout (lowercase unit): INTERNAL",
          heads and heads[-1].get("grpc-status") == "13", heads)
    sid = raw.request(SVC + "Unary", [("grpc-timeout", "123456789S")], frame(b"x"))
    heads, _, _ = raw.stream(sid)
    check("grpc-timeout with 9 digits: INTERNAL", heads and heads[-1].get("grpc-status") == "13", heads)
    sid = raw.request(SVC + "Unary", [("grpc-timeout", "99999999H")], frame(b"x"))
    heads, data, _ = raw.stream(sid)
    check("grpc-timeout 99999999H accepted", heads and heads[-1].get("grpc-status") == "0" and
          data == frame(b"x"), (heads, data))
    raw.close()
    after = stats(ch)
    check("server counted its deadline", after["deadline"] >= before["deadline"] + 1, after)
    check("the handler saw on_done(GRPC_END_DEADLINE)",
          after["done_deadline"] >= before["done_deadline"] + 1, after)
    check("the handler saw on_done(GRPC_END_CANCELLED) for the two cancelled calls",
          after["done_cancelled"] >= before["done_cancelled"] + 2, after)
    ch.close()


def test_raw_protocol(srv):
    raw = Raw(srv.port)
    sid = raw.request("/weft.test.Echo/Missing", body=frame(b""))
    heads, data, reset = raw.stream(sid)
    check("unknown method: one HEADERS frame (trailers-only) with :status 200 and grpc-status 12",
          len(heads) == 1 and heads[0].get(":status") == "200" and heads[0].get("grpc-status") == "12"
          and heads[0].get("content-type") == "application/grpc" and data == b"", (heads, data))
    sid = raw.request(SVC + "Unary", body=frame(b"hi"), content_type="application/json")
    heads, _, _ = raw.stream(sid)
    check("content-type application/json: HTTP 415", heads and heads[0].get(":status") == "415", heads)
    sid = raw.request(SVC + "Unary", body=frame(b"hi"), content_type="application/grpcx")
    heads, _, _ = raw.stream(sid)
    check("content-type application/grpcx: HTTP 415", heads and heads[0].get(":status") == "415", heads)
    sid = raw.request(SVC + "Unary", body=frame(b"hi"), content_type=None)
    heads, _, _ = raw.stream(sid)
    check("no content-type: HTTP 415", heads and heads[0].get(":status") == "415", heads)
    for ct in ("application/grpc+proto", "application/grpc; charset=utf-8"):
        sid = raw.request(SVC + "Unary", body=frame(b"hi"), content_type=ct)
        heads, data, _ = raw.stream(sid)
        check("content-type %s accepted" % ct, data == frame(b"hi") and
              heads[-1].get("grpc-status") == "0", (heads, data))
    sid = raw.request(SVC + "Unary", method="GET", end=True)
    heads, _, _ = raw.stream(sid)
    check("GET: HTTP 405", heads and heads[0].get(":status") == "405", heads)
    sid = raw.request(SVC + "Unary", body=frame(b"zz", compressed=True))
    heads, _, _ = raw.stream(sid)
    check("compressed flag without grpc-encoding: INTERNAL", heads and
          heads[-1].get("grpc-status") == "13", heads)
    sid = raw.request(SVC + "Unary", [("grpc-encoding", "gzip")], frame(b"zz", compressed=True))
    heads, _, _ = raw.stream(sid)
    check("grpc-encoding gzip: UNIMPLEMENTED with grpc-accept-encoding: identity",
          heads and heads[-1].get("grpc-status") == "12" and
          heads[-1].get("grpc-accept-encoding") == "identity", heads)
    sid = raw.request(SVC + "Unary", body=frame(b"abc")[:6])
    heads, _, _ = raw.stream(sid)
    check("stream ends inside a message: INTERNAL", heads and heads[-1].get("grpc-status") == "13", heads)
    # a message split over many DATA frames of 1 byte
    sid = raw.request(SVC + "Unary", end=False)
    for b in frame(b"split!"):
        raw.c.send_data(sid, bytes([b]))
    raw.c.end_stream(sid)
    raw.flush()
    heads, data, _ = raw.stream(sid)
    check("message split into 1-byte DATA frames", data == frame(b"split!") and
          len(heads) == 2 and heads[0].get(":status") == "200" and heads[1].get("grpc-status") == "0",
          (heads, data))
    check("response headers carry content-type application/grpc, trailers do not",
          heads[0].get("content-type") == "application/grpc" and "content-type" not in heads[1], heads)
    # early error while the client is still sending: status, then RST_STREAM(NO_ERROR)
    sid = raw.request("/weft.test.Echo/Missing", end=False)
    heads, _, reset = raw.stream(sid)
    check("early answer to an open request: trailers-only then RST_STREAM NO_ERROR",
          heads and heads[0].get("grpc-status") == "12" and reset == 0, (heads, reset))
    # metadata over the limit (16 KiB)
    sid = raw.request(SVC + "Unary", [("x-big", "v" * 20000)], frame(b"x"))
    heads, _, reset = raw.stream(sid)
    check("request metadata over 16 KiB: RESOURCE_EXHAUSTED",
          heads and heads[-1].get("grpc-status") == "8", (heads, reset))
    sid = raw.request(SVC + "Unary", [("x-m%d" % i, "v") for i in range(70)], frame(b"x"))
    heads, _, reset = raw.stream(sid)
    check("more than 64 metadata entries: RESOURCE_EXHAUSTED",
          heads and heads[-1].get("grpc-status") == "8", (heads, reset))
    sid = raw.request(SVC + "Unary", body=frame(b"still fine"))
    _, data, _ = raw.stream(sid)
    check("connection still serves after every error", data == frame(b"still fine"), data)
    raw.close()

    # max concurrent streams. Before the client acknowledged our SETTINGS (here: 101 requests
    # sent right after the preface, before reading anything) the 101st stream is refused with
    # RST_STREAM REFUSED_STREAM and the others are served.
    raw = Raw(srv.port)
    sids = [raw.request(SVC + "Delay", body=frame(b"1000")) for _ in range(101)]
    _, _, reset = raw.stream(sids[-1], timeout=5)
    check("before the SETTINGS ACK: the 101st concurrent stream gets REFUSED_STREAM", reset == 7, reset)
    heads, data, _ = raw.stream(sids[0], timeout=5)
    check("...and the first 100 streams are served", data == frame(b"1000"), heads)
    mcs = raw.c.remote_settings.max_concurrent_streams
    check("SETTINGS_MAX_CONCURRENT_STREAMS is 100", mcs == 100, mcs)
    raw.close()
    # After the ACK nghttp2 treats one stream too many as a connection error (GOAWAY
    # PROTOCOL_ERROR; RFC 9113 5.1.2 allows only a stream error there): see docs/limits.md.
    raw = Raw(srv.port)
    raw.pump(lambda evs: any(isinstance(e, h2.events.SettingsAcknowledged) for e in evs))
    raw.c.remote_settings.max_concurrent_streams = 1000   # make h2 let us exceed it
    raw.c.remote_settings.acknowledge()
    for _ in range(101):
        raw.request(SVC + "Delay", body=frame(b"1000"))
    raw.pump(lambda evs: any(isinstance(e, h2.events.ConnectionTerminated) for e in evs))
    goaway = [e for e in raw.events if isinstance(e, h2.events.ConnectionTerminated)]
    check("after the ACK: 101 streams get GOAWAY PROTOCOL_ERROR (nghttp2)",
          goaway and goaway[0].error_code == 1, goaway)
    raw.close()


def test_concurrency(srv):
    ch = srv.channel()
    u = ch.unary_unary(SVC + "Unary")
    futs = [u.future(b"m%d" % i, timeout=30) for i in range(500)]
    ok = sum(1 for i, f in enumerate(futs) if f.result() == b"m%d" % i)
    check("500 concurrent unary calls on one channel", ok == 500, ok)
    d = ch.unary_unary(SVC + "Delay")
    t0 = time.time()
    futs = [d.future(b"300", timeout=30) for _ in range(250)]
    ok = sum(1 for f in futs if f.result() == b"300")
    el = time.time() - t0
    check("250 concurrent delayed calls (limit 100 streams: client queues)", ok == 250, ok)
    check("...which took at least three rounds of 300 ms", el >= 0.85, el)
    chans = [srv.channel(**{"grpc.use_local_subchannel_pool": 1}) for _ in range(10)]
    streams = [c.unary_stream(SVC + "ServerStream")(b"200,1000", timeout=30) for c in chans]
    counts = [len(list(s)) for s in streams]
    check("10 channels streaming at once", counts == [200] * 10, counts)
    for c in chans:
        c.close()
    ch.close()


def test_slow_reader(srv):
    """A client that stops reading: the server must stop queueing (backpressure)."""
    ch = srv.channel()
    before = stats(ch)
    rss0 = srv.rss_kb()
    # raw socket: ask for a practically endless stream of 64 KiB messages and never read again
    raw = Raw(srv.port)
    raw.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    raw.request(SVC + "ServerStream", body=frame(b"1000000000,65536"))
    time.sleep(2.0)
    st = stats(ch)
    rss1 = srv.rss_kb()
    check("slow raw reader: the handler was held back (send_blocked)",
          st["send_blocked"] > before["send_blocked"], st)
    check("slow raw reader: at most one send queue (1 MiB) + one message queued",
          st["queued_bytes"] <= MIB + 65536 + 5, st)
    check("slow raw reader: server memory bounded (+%d KiB in 2 s)" % (rss1 - rss0),
          rss1 - rss0 < 48 * 1024, (rss0, rss1))
    raw.close()

    # python3-grpcio: iterate once, then stop consuming
    it = ch.unary_stream(SVC + "ServerStream")(b"1000000000,65536", timeout=60)
    next(it)
    time.sleep(2.0)
    st2 = stats(ch)
    rss2 = srv.rss_kb()
    check("slow grpcio reader: backpressure reached the handler",
          st2["send_blocked"] > st["send_blocked"], st2)
    check("slow grpcio reader: server memory bounded (+%d KiB)" % (rss2 - rss0),
          rss2 - rss0 < 64 * 1024, (rss0, rss2))
    it.cancel()
    deadline = time.time() + 5
    while time.time() < deadline:
        st3 = stats(ch)
        if st3["live_calls"] == 1 and st3["queued_bytes"] == 0:
            break
        time.sleep(0.05)
    check("after both slow readers left: calls freed, queues empty",
          st3["live_calls"] == 1 and st3["queued_bytes"] == 0, st3)
    ch.close()


def test_max_conns():
    srv = Server("--max-conns", "3")
    socks = [Raw(srv.port) for _ in range(3)]
    for r in socks:
        r.pump(lambda evs: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in evs))
    extra = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
    extra.settimeout(3)
    try:
        got = extra.recv(100)
    except (socket.timeout, OSError):
        got = None
    check("a 4th connection beyond --max-conns 3 is closed at accept", got == b"", got)
    extra.close()
    sid = socks[0].request(SVC + "Unary", body=frame(b"alive"))
    _, data, _ = socks[0].stream(sid)
    check("the first 3 connections still work", data == frame(b"alive"), data)
    for r in socks:
        r.close()
    time.sleep(0.2)
    ch = srv.channel()
    st = stats(ch)
    check("after they close, a new connection is accepted", st["refused"] == 1, st)
    ch.close()
    check("max-conns server exits 0 on SIGTERM", srv.stop() == 0)


def test_idle():
    srv = Server("--idle-ms", "300")
    # a client that connects and never sends the preface
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
    t0 = time.time()
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    el = time.time() - t0
    s.close()
    check("idle: a silent connection is closed after ~300 ms", 0.2 < el < 2.0, el)
    check("idle: ...with a GOAWAY NO_ERROR first", b"\x07\x00\x00\x00\x00\x00" in got and
          got.endswith(b"\x00\x00\x00\x00"), got)
    # a connection with a call in flight is not idle
    raw = Raw(srv.port)
    sid = raw.request(SVC + "Delay", body=frame(b"900"))
    heads, data, _ = raw.stream(sid, timeout=5)
    check("idle: a 900 ms call on a 300 ms idle timeout completes", data == frame(b"900"), heads)
    t0 = time.time()
    raw.pump(lambda evs: any(isinstance(e, h2.events.ConnectionTerminated) for e in evs), timeout=3)
    el = time.time() - t0
    check("idle: GOAWAY ~300 ms after the last call ended",
          any(isinstance(e, h2.events.ConnectionTerminated) and e.error_code == 0 for e in raw.events)
          and el < 2.0, el)
    raw.close()
    ch = srv.channel()
    u = ch.unary_unary(SVC + "Unary")
    check("idle: grpcio call", u(b"1", timeout=5) == b"1")
    time.sleep(0.8)
    check("idle: grpcio reconnects after the idle GOAWAY", u(b"2", timeout=5) == b"2")
    before = stats(ch)
    # a peer that stops reading the socket: closed after 300 ms without progress
    st = socket.create_connection(("127.0.0.1", srv.port))
    st.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2 ** 31 - 1})
    c.increment_flow_control_window(2 ** 30)
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", SVC + "ServerStream"),
                         (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")])
    c.send_data(sid, frame(b"1000000000,65536"), end_stream=True)
    st.sendall(c.data_to_send())
    deadline = time.time() + 5
    while time.time() < deadline:
        now = stats(ch)
        if now["done_closed"] > before["done_closed"]:
            break
        time.sleep(0.1)
    check("stalled reader: the connection is closed and its call ends (on_done CLOSED)",
          now["done_closed"] == before["done_closed"] + 1 and now["queued_bytes"] == 0 and
          now["live_calls"] == 1, now)
    st.close()
    ch.close()
    check("idle server exits 0", srv.stop() == 0)


def test_shutdown():
    srv = Server("--grace-ms", "3000")
    ch = srv.channel()
    check("shutdown server: up", ch.unary_unary(SVC + "Unary")(b"x", timeout=5) == b"x")
    slow = ch.unary_unary(SVC + "Delay").future(b"1000", timeout=10)
    raw = Raw(srv.port)
    raw_sid = raw.request(SVC + "Delay", body=frame(b"800"))
    time.sleep(0.2)
    t0 = time.time()
    srv.p.send_signal(signal.SIGTERM)
    raw.pump(lambda evs: any(isinstance(e, h2.events.ConnectionTerminated) for e in evs), timeout=3)
    goaway = [e for e in raw.events if isinstance(e, h2.events.ConnectionTerminated)]
    check("shutdown: GOAWAY NO_ERROR with last stream id", goaway and goaway[0].error_code == 0 and
          goaway[0].last_stream_id == raw_sid, goaway)
    # h2 stops parsing after GOAWAY: read the rest of the connection as bytes (DATA payloads
    # are not compressed, so the echoed message shows up as is) until the server closes it
    rest = b""
    raw.s.settimeout(5)
    try:
        while True:
            chunk = raw.s.recv(65536)
            if not chunk:
                break
            rest += chunk
    except OSError:
        pass
    check("shutdown: the in-flight raw call finishes after GOAWAY, then the server closes",
          frame(b"800") in rest, rest)
    check("shutdown: the in-flight grpcio call finishes OK", slow.result() == b"1000")
    e = rpc_error(lambda: grpc.insecure_channel(srv.target).unary_unary(SVC + "Unary")(b"x", timeout=2))
    check("shutdown: new calls fail UNAVAILABLE", e is not None and
          e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), e and e.code())
    rc = srv.p.wait(10)
    el = time.time() - t0
    check("shutdown: exits 0 once in-flight calls are done, before the grace time",
          rc == 0 and el < 3.0, (rc, el))
    raw.close()
    ch.close()

    # grace time over: long calls get UNAVAILABLE and the server exits anyway
    srv = Server("--grace-ms", "300")
    ch = srv.channel()
    fut = ch.unary_unary(SVC + "Delay").future(b"10000", timeout=20)
    it = ch.unary_stream(SVC + "ServerStream")(b"1000000000,100", timeout=20)
    next(it)
    time.sleep(0.2)
    t0 = time.time()
    srv.p.send_signal(signal.SIGTERM)
    e = rpc_error(fut.result)
    check("grace over: the pending call ends UNAVAILABLE",
          e is not None and e.code() == grpc.StatusCode.UNAVAILABLE, e and e.code())
    e = rpc_error(lambda: list(it))
    check("grace over: the endless stream ends (not OK)", e is not None, e)
    rc = srv.p.wait(10)
    check("grace over: exits 0 within ~grace", rc == 0 and time.time() - t0 < 3.0, (rc, time.time() - t0))
    ch.close()


def main():
    srv = Server()
    try:
        test_basic(srv)
        test_sizes(srv)
        test_deadline_cancel(srv)
        test_raw_protocol(srv)
        test_concurrency(srv)
        test_slow_reader(srv)
        check("server still alive after everything", srv.p.poll() is None)
        check("server exits 0 on SIGTERM", srv.stop() == 0, srv.p.returncode)
        test_max_conns()
        test_idle()
        test_shutdown()
        for i, p in enumerate(_servers):
            p.wait(10)
            err = p.stderr.read().decode(errors="replace")
            check("server %d: no sanitizer report" % i, "ERROR: AddressSanitizer" not in err and
                  "runtime error" not in err and "LeakSanitizer" not in err, err[-2000:])
    except Exception:
        for p in _servers:
            if p.poll() is None:
                p.kill()
            print("--- weft-grpc-testsrv stderr:\n" + p.stderr.read().decode(errors="replace")[-3000:])
        raise
    finally:
        for p in _servers:
            if p.poll() is None:
                p.kill()
                p.wait()
    finish()


if __name__ == "__main__":
    def watchdog():
        print("FAIL test took longer than 240 s")
        for p in _servers:
            p.kill()
        os._exit(1)
    t = threading.Timer(240, watchdog)
    t.daemon = True
    t.start()
    main()
