#!/usr/bin/python3
"""HTTP/2 protocol conformance and abuse resistance of the downstream codec, with raw frames
(python3-hyperframe, python3-hpack): an h2spec-like set (preface, SETTINGS, stream states, bad
frames → the right GOAWAY / RST_STREAM codes) and the known attacks: rapid reset
(CVE-2023-44487), CONTINUATION flood, HPACK bomb, SETTINGS and PING floods, empty-frame
floods, zero-window stalls, oversized headers. The proxy's memory must stay bounded."""
import os
import signal
import socket
import struct
import sys
import time

import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, ENHANCE_YOUR_CALM = 1, 3, 6, 11

be = backend("be")
admin, port, port2, port3, port4 = free_port(), free_port(), free_port(), free_port(), free_port()
listeners = "\n".join([
    http_listener("h2", port, extra="codec_type: HTTP2\nstream_idle_timeout: 1s\nmax_request_headers_kb: 8"),
    http_listener("auto", port2, stat_prefix="auto"),
    http_listener("lenient", port3, stat_prefix="lenient",
                  extra="http2_protocol_options: {override_stream_error_on_invalid_http_message: true}"),
    http_listener("tight", port4, stat_prefix="tight",
                  extra="http2_protocol_options: {max_outbound_frames: 20}"),
])
proxy = Proxy(bootstrap(admin, listeners, static_cluster("be", [be])), admin)


def proxy_rss_kb():
    return rss_kb(proxy.p.pid)


class Conn:
    def __init__(self, settings=None, p=port):
        self.s = socket.create_connection(("127.0.0.1", p), timeout=3)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.s.sendall(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def send(self, *frames):
        try:
            self.s.sendall(b"".join(f.serialize() if not isinstance(f, bytes) else f for f in frames))
            return True
        except OSError:
            return False

    def headers(self, sid, hdrs, end_stream=True, end_headers=True):
        flags = (["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else [])
        return HeadersFrame(sid, self.enc.encode(hdrs), flags=flags)

    def frames(self, until, timeout=3.0):
        """Reads frames until until(frame) is true, the peer closes (returns None), or timeout."""
        end = time.time() + timeout
        got = []
        while time.time() < end:
            while len(self.buf) >= 9:
                f, n = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) < 9 + n:
                    break
                f.parse_body(memoryview(self.buf[9:9 + n]))
                self.buf = self.buf[9 + n:]
                if isinstance(f, SettingsFrame) and "ACK" not in f.flags:
                    self.send(SettingsFrame(0, flags=["ACK"]))
                got.append(f)
                if until(f):
                    return got, f
            try:
                self.s.settimeout(max(0.05, end - time.time()))
                d = self.s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                return got, None
            if not d:
                return got, None
            self.buf += d
        return got, False

    def goaway(self, timeout=3.0):
        got, f = self.frames(lambda f: isinstance(f, GoAwayFrame), timeout)
        return f.error_code if f else None

    def rst(self, sid, timeout=3.0):
        got, f = self.frames(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == sid, timeout)
        return f.error_code if f else None

    def closed(self, timeout=3.0):
        got, f = self.frames(lambda f: False, timeout)
        return f is None

    def close(self):
        self.s.close()


REQ = [(":method", "GET"), (":scheme", "http"), (":path", "/x"), (":authority", "t")]


def response(c, sid, timeout=3.0):
    got, f = c.frames(lambda f: f.stream_id == sid and "END_STREAM" in f.flags
                      or isinstance(f, (RstStreamFrame, GoAwayFrame)) and f.stream_id in (0, sid), timeout)
    for fr in got:
        if isinstance(fr, HeadersFrame) and fr.stream_id == sid:
            return dict(c.dec.decode(fr.data)).get(":status")
    return None


# --- conformance ---
c = Conn()
c.send(c.headers(1, REQ))
check("a valid request on a raw connection", response(c, 1) == "200")
c.send(PingFrame(0, opaque_data=b"12345678"))
got, f = c.frames(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
check("PING is answered with the same payload", f and f.opaque_data == b"12345678")
c.close()

c = socket.create_connection(("127.0.0.1", port), timeout=3)
c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
eof = False
try:
    while True:
        d = c.recv(65536)
        if not d:
            eof = True
            break
except OSError:
    pass
check("codec_type HTTP2: a bad preface closes the connection", eof)

c = Conn()
c.send(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")  # DATA, stream 0
check("DATA on stream 0: GOAWAY PROTOCOL_ERROR", c.goaway() == PROTOCOL_ERROR)
c = Conn()
c.send(c.headers(2, REQ))
check("HEADERS on an even (server) stream id: GOAWAY PROTOCOL_ERROR", c.goaway() == PROTOCOL_ERROR)
c = Conn()
c.send(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + struct.pack(">HI", 4, 0x80000000))
check("SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1: GOAWAY FLOW_CONTROL_ERROR", c.goaway() == FLOW_CONTROL_ERROR)
c = Conn()
c.send(b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5)
check("SETTINGS with a length not a multiple of 6: GOAWAY FRAME_SIZE_ERROR", c.goaway() == FRAME_SIZE_ERROR)
c = Conn()
c.send(c.headers(1, REQ, end_stream=False), DataFrame(1, b"y" * 20000))
check("a frame above SETTINGS_MAX_FRAME_SIZE: GOAWAY FRAME_SIZE_ERROR", c.goaway() == FRAME_SIZE_ERROR)
c = Conn()
c.send(c.headers(1, [h for h in REQ if h[0] != ":path"]))
check("an invalid message (no :path), by default: GOAWAY PROTOCOL_ERROR (Envoy's default)",
      c.goaway() == PROTOCOL_ERROR)
c.close()
# With override_stream_error_on_invalid_http_message, only the stream is reset.
c = Conn(p=port3)
c.send(c.headers(1, [h for h in REQ if h[0] != ":path"]))
check("a request without :path: RST_STREAM PROTOCOL_ERROR", c.rst(1) == PROTOCOL_ERROR)
c.send(c.headers(3, REQ + [("connection", "keep-alive")]))
check("a connection-specific header: RST_STREAM PROTOCOL_ERROR", c.rst(3) == PROTOCOL_ERROR)
c.send(c.headers(5, REQ + [("te", "gzip")]))
check("te other than trailers: RST_STREAM PROTOCOL_ERROR", c.rst(5) == PROTOCOL_ERROR)
c.send(c.headers(7, REQ + [("X-Upper", "1")]))
check("an upper-case header name: RST_STREAM PROTOCOL_ERROR", c.rst(7) == PROTOCOL_ERROR)
c.send(c.headers(9, [(":method", "POST")] + REQ[1:] + [("content-length", "10")], end_stream=False),
       DataFrame(9, b"abc", flags=["END_STREAM"]))
check("content-length that DATA does not match: RST_STREAM PROTOCOL_ERROR", c.rst(9) == PROTOCOL_ERROR)
c.send(c.headers(13, REQ))
check("the connection still serves after stream errors", response(c, 13) == "200")
c.send(c.headers(13, REQ))
check("HEADERS on a closed stream: GOAWAY STREAM_CLOSED", c.goaway() == 5)
c.close()
c = Conn()
c.send(c.headers(1, REQ, end_stream=False), WindowUpdateFrame(1, window_increment=0))
got, f = c.frames(lambda f: isinstance(f, (RstStreamFrame, GoAwayFrame)))
check("WINDOW_UPDATE of 0: PROTOCOL_ERROR (nghttp2 makes it a connection error)",
      f and f.error_code == PROTOCOL_ERROR, f)
c.close()

# --- oversized headers and the HPACK bomb (max_request_headers_kb: 8) ---
before = proxy.stats()["http2.header_overflow"]
c = Conn()
c.send(c.headers(1, REQ + [("x-big", "v" * 9000)]))
check("a header list over max_request_headers_kb: stream reset", c.rst(1) is not None)
# One 4000-byte value enters the HPACK table once; 60 one-byte references expand it to 240 KB.
enc = c.enc
block = enc.encode(REQ + [("x-bomb", "b" * 4000)])
ref = enc.encode([("x-bomb", "b" * 4000)])
check("(the bomb's references are tiny)", len(ref) <= 2, len(ref))
c.send(HeadersFrame(3, block + ref * 60, flags=["END_STREAM", "END_HEADERS"]))
check("HPACK bomb: the expanded list is refused (stream reset)", c.rst(3) is not None)
c.send(HeadersFrame(5, enc.encode(REQ), flags=["END_STREAM", "END_HEADERS"]))
check("...and the connection keeps working", response(c, 5) == "200")
check("http2.header_overflow counts them", proxy.stats()["http2.header_overflow"] >= before + 2)
c.close()

# --- floods ---
rss0 = proxy_rss_kb()
c = Conn()
frames = [c.headers(1, REQ, end_stream=False, end_headers=False)]
frames += [ContinuationFrame(1, b"\x40\x01a\x01b") for _ in range(10000)]  # never END_HEADERS
c.send(*frames)
check("CONTINUATION flood: GOAWAY and close", c.goaway(5) is not None or c.closed())
c = Conn()
c.send(c.headers(1, REQ, end_stream=False), *[DataFrame(1, b"") for _ in range(100)])
check("empty DATA frame flood: GOAWAY ENHANCE_YOUR_CALM", c.goaway() == ENHANCE_YOUR_CALM)
check("...counted as http2.inbound_empty_frames_flood", proxy.stats()["http2.inbound_empty_frames_flood"] >= 1)

c = Conn()
c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
sent = c.send(*[SettingsFrame(0, settings={4: 65535}) for _ in range(20000)])
check("SETTINGS flood (acks never read): the connection is dropped", c.goaway(5) is not None or c.closed() or not sent)
c = Conn()
c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
sent = c.send(*[PingFrame(0, opaque_data=b"%08d" % i) for i in range(50000)])
check("PING flood (acks never read): the connection is dropped", c.goaway(5) is not None or c.closed() or not sent)
time.sleep(0.3)
check("...counted as http2.outbound_control_flood", proxy.stats()["http2.outbound_control_flood"] >= 1,
      proxy.stats()["http2.outbound_control_flood"])

# Outbound flood: many responses queue up for a client that never reads (max_outbound_frames 20).
c = Conn(settings={4: 1 << 20}, p=port4)
c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
c.send(WindowUpdateFrame(0, window_increment=1 << 30),
       *[c.headers(1 + 2 * k, REQ + [("x-body-size", "1000000")]) for k in range(100)])
time.sleep(2)
check("outbound frame flood: the connection is dropped (http2.outbound_flood)",
      proxy.stats()["http2.outbound_flood"] >= 1, proxy.stats()["http2.outbound_flood"])
c.close()
c = Conn(p=port4)
c.send(c.headers(1, REQ))
check("...while a client that reads is served on the same listener", response(c, 1) == "200")
c.close()

# Rapid reset (CVE-2023-44487): open streams and cancel them at once.
c = Conn()
ok = True
for i in range(300):
    sid = 1 + 2 * i
    ok = c.send(c.headers(sid, REQ), RstStreamFrame(sid, error_code=8)) and ok
code = c.goaway(5)
check("rapid reset: GOAWAY ENHANCE_YOUR_CALM", code == ENHANCE_YOUR_CALM or (code is None and c.closed()), code)
check("...counted in http2.rx_reset", proxy.stats()["http2.rx_reset"] >= 100)

# Zero-window stall: a client that never opens its window cannot hold a stream forever.
c = Conn(settings={4: 0})
c.send(c.headers(1, REQ + [("x-body-size", "1000000")]))
t0 = time.time()
code = c.rst(1, timeout=6)
check("zero-window stall: the stream is reset after stream_idle_timeout (1 s)",
      code is not None and 0.8 < time.time() - t0 < 4, (code, time.time() - t0))
check("...counted as downstream_rq_idle_timeout", proxy.stats()["http.ingress.downstream_rq_idle_timeout"] >= 1)
c.close()

# Many connections, each with many open streams: memory stays bounded.
conns = []
for i in range(20):
    c = Conn(settings={4: 0})
    c.send(*[c.headers(1 + 2 * k, REQ + [("x-body-size", "200000")]) for k in range(100)])
    conns.append(c)
time.sleep(1.5)
rss1 = proxy_rss_kb()
for c in conns:
    c.close()
time.sleep(0.5)
# ASan's redzones and quarantine roughly triple the footprint of the same buffers.
limit_mb = 768 if "asan" in os.path.abspath(BIN) else 256
check("20 connections x 100 stalled streams: RSS grows < %d MB (%d -> %d KB)" % (limit_mb, rss0, rss1),
      rss1 - rss0 < limit_mb * 1024)
stats = proxy.stats()
check("streams refused past max_concurrent_streams are counted, not queued",
      stats["http2.streams_active"] <= 20 * 100)
time.sleep(1.5)
stats = proxy.stats()
check("everything is released afterwards", stats["http2.streams_active"] == 0 and
      stats["http.ingress.downstream_cx_http2_active"] == 0, (stats["http2.streams_active"], stats["http.ingress.downstream_cx_http2_active"]))

# The other listener still answers.
st, _, _ = curl("http://127.0.0.1:%d/after" % port2, "--http2-prior-knowledge")
check("the proxy still serves after the attacks", st == 200)
# Graceful drain on SIGTERM: GOAWAY(NO_ERROR) at once, the stream in flight still completes.
# First let the backend finish the stalled streams' 200 KB answers: while it is still busy, the
# 600 ms answer below can come after the 1 s stream_idle_timeout on a loaded machine (408).
deadline = time.time() + 10
while time.time() < deadline:
    t0 = time.time()
    curl("http://127.0.0.1:%d/probe" % port2, "--http2-prior-knowledge")
    if time.time() - t0 < 0.1:
        break
    time.sleep(0.2)
c = Conn()
c.send(c.headers(1, REQ + [("x-delay-ms", "600")]))
time.sleep(0.2)
proxy.p.send_signal(signal.SIGTERM)
got, f = c.frames(lambda f: isinstance(f, GoAwayFrame), 3)
check("SIGTERM: GOAWAY NO_ERROR while a stream is in flight", f and f.error_code == 0 and f.last_stream_id == 1, f)
status = response(c, 1, 5)
check("...and that stream still gets its response", status == "200", status)
check("...then the connection closes", c.closed(5))
check("proxy exits 0 after the drain", proxy.p.wait(15) == 0, proxy.output()[-1500:])
proxy.stop()
finish()
