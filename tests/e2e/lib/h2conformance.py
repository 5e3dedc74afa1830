#!/usr/bin/python3
"""h2conformance.py HOST PORT [--grpc PATH] [--only PREFIX] [-v]

An h2spec-like set of HTTP/2 protocol cases (RFC 9113, HPACK RFC 7541) written with Debian's
python3-hyperframe and python3-hpack: raw frames over a cleartext socket (prior knowledge), each
case on a fresh connection. Prints one line per case and ends with "N passed, N failed".

What counts as the required reaction:
  connection error CODE  a GOAWAY with CODE, or the server closing the connection (as h2spec)
  stream error CODE      a RST_STREAM with CODE on that stream, or a connection error CODE
Requests are "GET /" by default; with --grpc PATH they are gRPC calls (POST PATH,
content-type application/grpc, te: trailers, one 5-byte-prefixed message), so the cases can run
against a gRPC server whose other paths answer without a body.
Nothing here is about gRPC semantics; see tests/e2e/test_grpc_server.py for those.

Validated against nghttpd (Debian's nghttp2-server, `nghttpd --no-tls -d DIR -a 127.0.0.1 PORT`)
and weft-grpc-testsrv (--grpc /weft.test.Echo/Unary): both pass everything except 5.1.1/2 —
libnghttp2 deliberately ignores a HEADERS frame on a lower stream id it no longer tracks
instead of the connection error RFC 9113 5.1.1 requires (use --exclude 5.1.1/2 for servers
built on it)."""
import argparse
import socket
import struct
import sys
import time

import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, ExtensionFrame, Frame, GoAwayFrame,
                              HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 4, 5, 6, 7
CANCEL, COMPRESSION_ERROR = 8, 9
T_DATA, T_HEADERS, T_PRIORITY, T_RST, T_SETTINGS, T_PUSH, T_PING, T_GOAWAY, T_WINDOW, T_CONT = range(10)
F_END_STREAM, F_ACK, F_END_HEADERS, F_PADDED, F_PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
WAIT = 2.0


def raw_frame(ftype, flags, sid, payload=b""):
    """Frame bytes exactly as given: lengths and fields are not checked."""
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


class Closed(Exception):
    pass


class Conn:
    def __init__(self, host, port, opts):
        self.opts = opts
        self.s = socket.create_connection((host, port), timeout=WAIT)
        self.authority = "%s:%d" % (host, port)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.frames = []          # everything received, in order
        self.closed = False
        self.server_settings = {}
        self.next_sid = 1

    # --- sending ---
    def send(self, data):
        if isinstance(data, Frame):
            data = data.serialize()
        try:
            self.s.sendall(data)
        except OSError:
            self.closed = True

    def block(self, headers):
        return self.enc.encode(headers)

    def sid(self):
        sid = self.next_sid
        self.next_sid += 2
        return sid

    def req_headers(self, extra=(), body=False):
        if self.opts.grpc:
            h = [(":method", "POST"), (":scheme", "http"), (":path", self.opts.grpc),
                 (":authority", self.authority), ("content-type", "application/grpc"),
                 ("te", "trailers")]
        else:
            h = [(":method", "POST" if body else "GET"), (":scheme", "http"), (":path", "/"),
                 (":authority", self.authority)]
        return h + list(extra)

    def body(self):
        return b"\x00\x00\x00\x00\x04ping" if self.opts.grpc else b"ping"

    def headers(self, sid, headers, end_stream=True, end_headers=True):
        f = HeadersFrame(sid)
        f.data = self.block(headers)
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        self.send(f)

    def request(self, sid=None, end_stream=True):
        """A complete request; with --grpc its body goes in a DATA frame. Returns the stream id."""
        sid = sid or self.sid()
        if self.opts.grpc:
            self.headers(sid, self.req_headers(body=True), end_stream=False)
            if end_stream:
                self.data(sid, self.body(), end_stream=True)
        else:
            self.headers(sid, self.req_headers(), end_stream=end_stream)
        return sid

    def open_stream(self):
        """A request whose stream stays open on our side (no END_STREAM)."""
        sid = self.sid()
        self.headers(sid, self.req_headers(body=True), end_stream=False)
        return sid

    def data(self, sid, payload, end_stream=False):
        f = DataFrame(sid)
        f.data = payload
        if end_stream:
            f.flags.add("END_STREAM")
        self.send(f)

    def ping(self, payload=b"h2conf\x00\x01", ack=False):
        f = PingFrame(0)
        f.opaque_data = payload
        if ack:
            f.flags.add("ACK")
        self.send(f)

    # --- receiving ---
    def _read(self, deadline):
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            left = deadline - time.time()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                raise Closed()
            self.buf += chunk
        n = int.from_bytes(self.buf[:3], "big")
        f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
        try:
            f.parse_body(memoryview(self.buf[9:9 + length]))
        except Exception:   # a frame we cannot parse: keep it as raw bytes
            f = ExtensionFrame(self.buf[3], f.stream_id, self.buf[4], self.buf[9:9 + n])
        self.buf = self.buf[9 + n:]
        if isinstance(f, (HeadersFrame, ContinuationFrame)):
            self._hblock = getattr(self, "_hblock", b"") + f.data
            if "END_HEADERS" in f.flags:
                try:
                    f.decoded = self.dec.decode(self._hblock)
                except Exception:
                    f.decoded = None
                self._hblock = b""
        if isinstance(f, SettingsFrame) and "ACK" not in f.flags:
            self.server_settings.update(f.settings)
            self.send(raw_frame(T_SETTINGS, F_ACK, 0))
        self.frames.append(f)
        return f

    def wait(self, pred, timeout=WAIT):
        """Reads frames until pred(frame) is true; returns that frame, or None on timeout.
        Raises Closed when the server closes the connection first."""
        for f in self.frames:
            if pred(f):
                return f
        deadline = time.time() + timeout
        while True:
            f = self._read(deadline)
            if f is None:
                return None
            if pred(f):
                return f

    def handshake(self, settings=()):
        self.send(PREFACE)
        sf = SettingsFrame(0)
        for k, v in settings:
            sf.settings[k] = v
        self.send(sf)
        first = self.wait(lambda f: True)
        self.first = first
        self.wait(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
        return first

    def close(self):
        self.s.close()

    # --- verdicts ---
    def goaway(self):
        for f in self.frames:
            if isinstance(f, GoAwayFrame):
                return f
        return None

    def conn_error(self, codes, timeout=WAIT):
        codes = codes if isinstance(codes, (list, tuple)) else [codes]
        try:
            g = self.wait(lambda f: isinstance(f, GoAwayFrame), timeout)
        except Closed:
            g = self.goaway()
            if g is None:
                return True, "connection closed"
        if g is None:
            return False, "no GOAWAY and the connection stayed open (%s)" % self.summary()
        if g.error_code in codes:
            # after a connection error the server must close
            try:
                while self._read(time.time() + timeout) is not None:
                    pass
                return False, "GOAWAY %d but the connection stayed open" % g.error_code
            except Closed:
                return True, "GOAWAY %d" % g.error_code
        return False, "GOAWAY with code %d, want %s" % (g.error_code, codes)

    def stream_error(self, sid, codes, timeout=WAIT):
        codes = codes if isinstance(codes, (list, tuple)) else [codes]
        try:
            f = self.wait(lambda f: (isinstance(f, RstStreamFrame) and f.stream_id == sid) or
                          isinstance(f, GoAwayFrame), timeout)
        except Closed:
            g = self.goaway()
            if g is None:
                return True, "connection closed"
            f = g
        if f is None:
            return False, "no RST_STREAM or GOAWAY (%s)" % self.summary()
        if isinstance(f, RstStreamFrame):
            return (f.error_code in codes), "RST_STREAM %d" % f.error_code
        return (f.error_code in codes), "GOAWAY %d" % f.error_code

    def response(self, sid, timeout=WAIT):
        """Waits for response HEADERS on sid; returns the decoded headers or None."""
        try:
            f = self.wait(lambda f: isinstance(f, (HeadersFrame, ContinuationFrame)) and
                          f.stream_id == sid and hasattr(f, "decoded"), timeout)
        except Closed:
            return None
        return dict(f.decoded) if f is not None and f.decoded else None

    def alive(self):
        """The connection still works: a PING is answered."""
        payload = b"alive\x00\x00\x07"
        self.ping(payload)
        try:
            f = self.wait(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags and
                          f.opaque_data == payload)
        except Closed:
            return False
        return f is not None

    def summary(self):
        return "got " + (", ".join(type(f).__name__.replace("Frame", "") for f in self.frames[-6:]) or
                         "nothing")


CASES = []


def case(cid, desc):
    def deco(fn):
        CASES.append((cid, desc, fn))
        return fn
    return deco


# --- 3.4 / 3.5 preface ---
@case("3.4/1", "server sends SETTINGS as its first frame")
def _(c):
    f = c.handshake()
    return isinstance(f, SettingsFrame) and "ACK" not in f.flags, type(f).__name__


@case("3.4/2", "server acknowledges our SETTINGS")
def _(c):
    c.handshake()
    return any(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in c.frames), c.summary()


@case("3.4/3", "invalid connection preface: connection error PROTOCOL_ERROR")
def _(c):
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + SettingsFrame(0).serialize())
    return c.conn_error(PROTOCOL_ERROR)


@case("3.4/4", "a request after the handshake gets a response")
def _(c):
    c.handshake()
    sid = c.request()
    h = c.response(sid)
    return h is not None and ":status" in h, h


# --- 4.1 frame format ---
@case("4.1/1", "unknown frame type is ignored")
def _(c):
    c.handshake()
    c.send(raw_frame(0x20, 0, 0, b"junk"))
    c.send(raw_frame(0xfe, 0xff, 1, b"\x00" * 7))
    return c.alive(), c.summary()


@case("4.1/2", "undefined flags are ignored (PING with flags 0xfe)")
def _(c):
    c.handshake()
    c.send(raw_frame(T_PING, 0xfe, 0, b"flagflag"))
    f = c.wait(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
    return f is not None and f.opaque_data == b"flagflag", c.summary()


@case("4.1/3", "the reserved bit of the stream id is ignored (PING on 0x80000000)")
def _(c):
    c.handshake()
    c.send(raw_frame(T_PING, 0, 0x80000000, b"reserved"))
    f = c.wait(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
    return f is not None and f.opaque_data == b"reserved", c.summary()


# --- 4.2 frame size ---
@case("4.2/1", "DATA larger than SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR")
def _(c):
    c.handshake()
    sid = c.open_stream()
    c.send(raw_frame(T_DATA, 0, sid, b"x" * 16385))
    return c.stream_error(sid, FRAME_SIZE_ERROR)


@case("4.2/2", "HEADERS larger than SETTINGS_MAX_FRAME_SIZE: connection error FRAME_SIZE_ERROR")
def _(c):
    c.handshake()
    sid = c.sid()
    block = c.block(c.req_headers())
    pad = c.enc.encode([("x-pad", "y" * 8000), ("x-pad2", "z" * 9000)], huffman=False)
    c.send(raw_frame(T_HEADERS, F_END_HEADERS | F_END_STREAM, sid, block + pad))
    return c.conn_error(FRAME_SIZE_ERROR)


@case("4.2/3", "SETTINGS with a length not a multiple of 6: FRAME_SIZE_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00"))
    return c.conn_error(FRAME_SIZE_ERROR)


# --- 4.3 header compression ---
@case("4.3/1", "undecodable header block: connection error COMPRESSION_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_HEADERS, F_END_HEADERS | F_END_STREAM, 1, b"\xff\xff\xff\xff\xff\xff\xff\x7f"))
    return c.conn_error(COMPRESSION_ERROR)


@case("4.3/2", "header index beyond both tables: COMPRESSION_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_HEADERS, F_END_HEADERS | F_END_STREAM, 1, c.block(c.req_headers()) + b"\xfe"))
    return c.conn_error(COMPRESSION_ERROR)


@case("4.3/3", "dynamic table size update above SETTINGS_HEADER_TABLE_SIZE: COMPRESSION_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_HEADERS, F_END_HEADERS | F_END_STREAM, 1, b"\x3f\xe1\x7f" + c.block(c.req_headers())))
    return c.conn_error(COMPRESSION_ERROR)


@case("4.3/4", "dynamic table size update after a header field: COMPRESSION_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_HEADERS, F_END_HEADERS | F_END_STREAM, 1, c.block(c.req_headers()) + b"\x20"))
    return c.conn_error(COMPRESSION_ERROR)


@case("4.3/5", "Huffman string with the EOS symbol: COMPRESSION_ERROR")
def _(c):
    c.handshake()
    # literal without indexing, new name "x" (Huffman), value: EOS code (30 ones) + padding
    bad = b"\x00\x01x\x84\xff\xff\xff\xff"
    c.send(raw_frame(T_HEADERS, F_END_HEADERS | F_END_STREAM, 1, c.block(c.req_headers()) + bad))
    return c.conn_error(COMPRESSION_ERROR)


@case("4.3/6", "header block split over HEADERS + CONTINUATION is decoded as one")
def _(c):
    c.handshake()
    sid = c.sid()
    block = c.block(c.req_headers())
    c.send(raw_frame(T_HEADERS, 0 if c.opts.grpc else F_END_STREAM, sid, block[:3]))
    c.send(raw_frame(T_CONT, 0, sid, block[3:6]))
    c.send(raw_frame(T_CONT, F_END_HEADERS, sid, block[6:]))
    if c.opts.grpc:
        c.data(sid, c.body(), end_stream=True)
    h = c.response(sid)
    return h is not None and ":status" in h, h or c.summary()


# --- 5.1 stream states ---
@case("5.1/1", "idle: DATA on an idle stream: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_DATA, 0, 1, b"x"))
    return c.conn_error([PROTOCOL_ERROR, STREAM_CLOSED])


@case("5.1/2", "idle: RST_STREAM on an idle stream: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_RST, 0, 1, b"\x00\x00\x00\x08"))
    return c.conn_error(PROTOCOL_ERROR)


@case("5.1/3", "idle: WINDOW_UPDATE on an idle stream: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_WINDOW, 0, 1, b"\x00\x00\x00\x01"))
    return c.conn_error(PROTOCOL_ERROR)


@case("5.1/4", "idle: CONTINUATION on an idle stream: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_CONT, F_END_HEADERS, 1, c.block(c.req_headers())))
    return c.conn_error(PROTOCOL_ERROR)


@case("5.1/5", "half-closed (remote): DATA after END_STREAM: STREAM_CLOSED")
def _(c):
    c.handshake()
    sid = c.sid()
    c.headers(sid, c.req_headers(body=True), end_stream=True)
    c.data(sid, b"late")
    return c.stream_error(sid, STREAM_CLOSED)


@case("5.1/6", "half-closed (remote): HEADERS after END_STREAM: STREAM_CLOSED")
def _(c):
    c.handshake()
    sid = c.sid()
    c.headers(sid, c.req_headers(body=True), end_stream=True)
    c.headers(sid, [("x-trailer", "late")], end_stream=True)
    return c.stream_error(sid, STREAM_CLOSED)


@case("5.1/7", "closed: DATA after we reset the stream: STREAM_CLOSED")
def _(c):
    c.handshake()
    sid = c.open_stream()
    c.send(raw_frame(T_RST, 0, sid, b"\x00\x00\x00\x08"))
    c.data(sid, b"after reset")
    return c.stream_error(sid, STREAM_CLOSED)


@case("5.1/8", "closed: a stream can be used again only through a new id (the server survives RST)")
def _(c):
    c.handshake()
    sid = c.open_stream()
    c.send(raw_frame(T_RST, 0, sid, b"\x00\x00\x00\x08"))
    sid2 = c.request()
    h = c.response(sid2)
    return h is not None, h or c.summary()


@case("5.1.1/1", "even-numbered stream id from a client: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.headers(2, c.req_headers())
    return c.conn_error(PROTOCOL_ERROR)


@case("5.1.1/2", "stream id lower than a previous one: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.request(sid=5)
    c.response(5)
    c.headers(3, c.req_headers())
    return c.conn_error([PROTOCOL_ERROR, STREAM_CLOSED])


# --- 5.3 / 5.4 ---
@case("5.3.1/1", "a stream depending on itself (HEADERS priority): PROTOCOL_ERROR")
def _(c):
    c.handshake()
    sid = c.sid()
    prio = struct.pack(">IB", sid, 16)
    c.send(raw_frame(T_HEADERS, F_END_HEADERS | F_END_STREAM | F_PRIORITY, sid,
                     prio + c.block(c.req_headers())))
    return c.stream_error(sid, PROTOCOL_ERROR)


@case("5.3.1/2", "a stream depending on itself (PRIORITY frame): PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_PRIORITY, 0, 7, struct.pack(">IB", 7, 16)))
    return c.stream_error(7, PROTOCOL_ERROR)


@case("5.4.1/1", "after a connection error the GOAWAY names the last processed stream")
def _(c):
    c.handshake()
    sid = c.request()
    c.response(sid)
    c.send(raw_frame(T_PING, 0, 1, b"12345678"))   # PING on a stream: connection error
    ok, why = c.conn_error(PROTOCOL_ERROR)
    g = c.goaway()
    return ok and (g is None or g.last_stream_id == sid), "%s last=%s" % (why, g and g.last_stream_id)


# --- 6.1 DATA ---
@case("6.1/1", "DATA on stream 0: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_DATA, 0, 0, b"x"))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.1/2", "DATA whose pad length is not less than the payload: PROTOCOL_ERROR")
def _(c):
    c.handshake()
    sid = c.open_stream()
    c.send(raw_frame(T_DATA, F_PADDED, sid, b"\x05abcd"))
    return c.stream_error(sid, PROTOCOL_ERROR)


@case("6.1/3", "padded DATA is accepted (padding stripped)")
def _(c):
    c.handshake()
    sid = c.sid()
    c.headers(sid, c.req_headers(body=True), end_stream=False)
    c.send(raw_frame(T_DATA, F_PADDED | F_END_STREAM, sid, bytes([4]) + c.body() + b"\x00" * 4))
    h = c.response(sid)
    return h is not None, h or c.summary()


# --- 6.2 HEADERS ---
@case("6.2/1", "HEADERS on stream 0: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_HEADERS, F_END_HEADERS | F_END_STREAM, 0, c.block(c.req_headers())))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.2/2", "HEADERS with a pad length beyond the payload: PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_HEADERS, F_END_HEADERS | F_END_STREAM | F_PADDED, 1,
                     b"\xff" + c.block(c.req_headers())))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.2/3", "HEADERS without END_HEADERS followed by a PING: PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_HEADERS, F_END_STREAM, 1, c.block(c.req_headers())))
    c.ping()
    return c.conn_error(PROTOCOL_ERROR)


@case("6.2/4", "HEADERS without END_HEADERS followed by DATA: PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_HEADERS, 0, 1, c.block(c.req_headers())))
    c.send(raw_frame(T_DATA, 0, 1, b"x"))
    return c.conn_error(PROTOCOL_ERROR)


# --- 6.3 PRIORITY ---
@case("6.3/1", "PRIORITY on stream 0: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_PRIORITY, 0, 0, struct.pack(">IB", 1, 16)))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.3/2", "PRIORITY with length 4: FRAME_SIZE_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_PRIORITY, 0, 1, b"\x00\x00\x00\x03"))
    return c.stream_error(1, FRAME_SIZE_ERROR)


@case("6.3/3", "PRIORITY on an idle stream is allowed")
def _(c):
    c.handshake()
    c.send(raw_frame(T_PRIORITY, 0, 9, struct.pack(">IB", 0, 16)))
    return c.alive(), c.summary()


# --- 6.4 RST_STREAM ---
@case("6.4/1", "RST_STREAM on stream 0: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_RST, 0, 0, b"\x00\x00\x00\x08"))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.4/2", "RST_STREAM with length 3: connection error FRAME_SIZE_ERROR")
def _(c):
    c.handshake()
    sid = c.open_stream()
    c.send(raw_frame(T_RST, 0, sid, b"\x00\x00\x08"))
    return c.conn_error(FRAME_SIZE_ERROR)


# --- 6.5 SETTINGS ---
@case("6.5/1", "SETTINGS ACK with a payload: connection error FRAME_SIZE_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_SETTINGS, F_ACK, 0, b"\x00\x03\x00\x00\x00\x64"))
    return c.conn_error(FRAME_SIZE_ERROR)


@case("6.5/2", "SETTINGS on a stream: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_SETTINGS, 0, 1, b"\x00\x03\x00\x00\x00\x64"))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.5.2/1", "SETTINGS_ENABLE_PUSH = 2: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_SETTINGS, 0, 0, b"\x00\x02\x00\x00\x00\x02"))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.5.2/2", "SETTINGS_INITIAL_WINDOW_SIZE = 2^31: connection error FLOW_CONTROL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_SETTINGS, 0, 0, b"\x00\x04\x80\x00\x00\x00"))
    return c.conn_error(FLOW_CONTROL_ERROR)


@case("6.5.2/3", "SETTINGS_MAX_FRAME_SIZE = 16383: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_SETTINGS, 0, 0, b"\x00\x05\x00\x00\x3f\xff"))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.5.2/4", "SETTINGS_MAX_FRAME_SIZE = 2^24: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_SETTINGS, 0, 0, b"\x00\x05\x01\x00\x00\x00"))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.5.2/5", "an unknown setting is ignored and acknowledged")
def _(c):
    c.handshake()
    n = sum(1 for f in c.frames if isinstance(f, SettingsFrame) and "ACK" in f.flags)
    c.send(raw_frame(T_SETTINGS, 0, 0, b"\x7f\x7f\x00\x00\x00\x01"))
    c.wait(lambda f: False, 0.5)
    m = sum(1 for f in c.frames if isinstance(f, SettingsFrame) and "ACK" in f.flags)
    return m == n + 1 and c.alive(), c.summary()


@case("6.5.3/1", "SETTINGS_INITIAL_WINDOW_SIZE = 1 is respected: DATA frames of at most 1 byte")
def _(c):
    c.handshake(settings=[(SettingsFrame.INITIAL_WINDOW_SIZE, 1)])
    sid = c.request()
    try:
        f = c.wait(lambda f: (isinstance(f, DataFrame) and f.stream_id == sid and len(f.data) > 0)
                   or (f.stream_id == sid and "END_STREAM" in getattr(f, "flags", ())), 3)
    except Closed:
        return False, "closed"
    if f is None:
        return False, "no DATA"
    if not isinstance(f, DataFrame) or not f.data:
        return "skip", "the response had no body"
    ok = len(f.data) == 1
    c.wait(lambda f: False, 0.3)
    more = [x for x in c.frames if isinstance(x, DataFrame) and x.stream_id == sid and x.data]
    ok = ok and len(more) == 1
    c.send(raw_frame(T_WINDOW, 0, sid, struct.pack(">I", 1)))
    g = c.wait(lambda x: isinstance(x, DataFrame) and x.stream_id == sid and x is not more[0] and x.data, 2)
    return ok and g is not None and len(g.data) <= 1, "frames %s" % [len(x.data) for x in more]


# --- 6.7 PING ---
@case("6.7/1", "PING is answered with an ACK carrying the same data")
def _(c):
    c.handshake()
    c.ping(b"\x01\x02\x03\x04\x05\x06\x07\x08")
    f = c.wait(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
    return f is not None and f.opaque_data == b"\x01\x02\x03\x04\x05\x06\x07\x08", c.summary()


@case("6.7/2", "a PING ACK is not answered")
def _(c):
    c.handshake()
    c.ping(b"ackackac", ack=True)
    c.ping(b"realping")
    f = c.wait(lambda f: isinstance(f, PingFrame))
    return f is not None and f.opaque_data == b"realping", f and f.opaque_data


@case("6.7/3", "PING on a stream: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_PING, 0, 1, b"12345678"))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.7/4", "PING with length 6: connection error FRAME_SIZE_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_PING, 0, 0, b"123456"))
    return c.conn_error(FRAME_SIZE_ERROR)


# --- 6.8 GOAWAY ---
@case("6.8/1", "GOAWAY on a stream: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_GOAWAY, 0, 1, b"\x00\x00\x00\x00\x00\x00\x00\x00"))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.8/2", "after our GOAWAY the server still finishes the open stream")
def _(c):
    c.handshake()
    sid = c.sid()
    c.headers(sid, c.req_headers(body=True), end_stream=False)
    c.send(raw_frame(T_GOAWAY, 0, 0, struct.pack(">II", 0, NO_ERROR)))
    c.data(sid, c.body(), end_stream=True)
    h = c.response(sid)
    return h is not None, h or c.summary()


# --- 6.9 WINDOW_UPDATE and flow control ---
@case("6.9/1", "WINDOW_UPDATE of 0 on the connection: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_WINDOW, 0, 0, b"\x00\x00\x00\x00"))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.9/2", "WINDOW_UPDATE of 0 on a stream: stream error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    sid = c.open_stream()
    c.send(raw_frame(T_WINDOW, 0, sid, b"\x00\x00\x00\x00"))
    return c.stream_error(sid, PROTOCOL_ERROR)


@case("6.9/3", "WINDOW_UPDATE with length 3: connection error FRAME_SIZE_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_WINDOW, 0, 0, b"\x00\x00\x01"))
    return c.conn_error(FRAME_SIZE_ERROR)


@case("6.9.1/1", "connection window above 2^31-1: connection error FLOW_CONTROL_ERROR")
def _(c):
    c.handshake()
    c.send(raw_frame(T_WINDOW, 0, 0, struct.pack(">I", 0x7fffffff)))
    c.send(raw_frame(T_WINDOW, 0, 0, struct.pack(">I", 0x7fffffff)))
    return c.conn_error(FLOW_CONTROL_ERROR)


@case("6.9.1/2", "stream window above 2^31-1: stream error FLOW_CONTROL_ERROR")
def _(c):
    c.handshake()
    sid = c.open_stream()
    c.send(raw_frame(T_WINDOW, 0, sid, struct.pack(">I", 0x7fffffff)))
    c.send(raw_frame(T_WINDOW, 0, sid, struct.pack(">I", 0x7fffffff)))
    return c.stream_error(sid, FLOW_CONTROL_ERROR)


@case("6.9.2/1", "SETTINGS_INITIAL_WINDOW_SIZE pushing an open stream above 2^31-1: FLOW_CONTROL_ERROR")
def _(c):
    c.handshake()
    sid = c.open_stream()
    c.send(raw_frame(T_WINDOW, 0, sid, struct.pack(">I", 0x7fffffff - 65535)))
    c.send(raw_frame(T_SETTINGS, 0, 0, struct.pack(">HI", 4, 0x7fffffff)))
    return c.stream_error(sid, FLOW_CONTROL_ERROR)


# --- 6.10 CONTINUATION ---
@case("6.10/1", "CONTINUATION after END_HEADERS: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    sid = c.open_stream()
    c.send(raw_frame(T_CONT, F_END_HEADERS, sid, c.block([("x-more", "1")])))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.10/2", "CONTINUATION on another stream: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    block = c.block(c.req_headers())
    c.send(raw_frame(T_HEADERS, F_END_STREAM, 1, block[:4]))
    c.send(raw_frame(T_CONT, F_END_HEADERS, 3, block[4:]))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.10/3", "CONTINUATION on stream 0: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    block = c.block(c.req_headers())
    c.send(raw_frame(T_HEADERS, F_END_STREAM, 1, block[:4]))
    c.send(raw_frame(T_CONT, F_END_HEADERS, 0, block[4:]))
    return c.conn_error(PROTOCOL_ERROR)


@case("6.10/4", "CONTINUATION after DATA: connection error PROTOCOL_ERROR")
def _(c):
    c.handshake()
    sid = c.open_stream()
    c.data(sid, b"x")
    c.send(raw_frame(T_CONT, F_END_HEADERS, sid, c.block([("x-more", "1")])))
    return c.conn_error(PROTOCOL_ERROR)


# --- 8.1 / 8.2 / 8.3 HTTP message checks: malformed requests are stream errors PROTOCOL_ERROR ---
def malformed(cid, desc, make, data=None):
    @case(cid, desc + ": PROTOCOL_ERROR")
    def _(c):
        c.handshake()
        sid = c.sid()
        hdrs = make(c)
        c.headers(sid, hdrs, end_stream=data is None)
        if data is not None:
            c.data(sid, data, end_stream=True)
        return c.stream_error(sid, PROTOCOL_ERROR)


def without(name):
    return lambda c: [h for h in c.req_headers() if h[0] != name]


malformed("8.2/1", "uppercase header name", lambda c: c.req_headers([("X-Upper", "1")]))
malformed("8.2/2", "header name with a space", lambda c: c.req_headers([("x bad", "1")]))
malformed("8.2/3", "header value with a newline", lambda c: c.req_headers([("x-nl", "a\nb")]))
malformed("8.2.2/1", "connection-specific header (connection: keep-alive)",
          lambda c: c.req_headers([("connection", "keep-alive")]))
malformed("8.2.2/2", "te other than trailers", lambda c: c.req_headers([("te", "gzip")]))
malformed("8.3/1", "pseudo-header after a regular header",
          lambda c: c.req_headers()[:3] + [("x-a", "1")] + c.req_headers()[3:])
malformed("8.3/2", "unknown pseudo-header", lambda c: c.req_headers([(":foo", "bar")]))
malformed("8.3/3", "response pseudo-header in a request", lambda c: c.req_headers([(":status", "200")]))
malformed("8.3/4", "duplicate :path", lambda c: c.req_headers() + [(":path", "/again")])
malformed("8.3.1/1", "missing :method", without(":method"))
malformed("8.3.1/2", "missing :scheme", without(":scheme"))
malformed("8.3.1/3", "missing :path", without(":path"))
malformed("8.3.1/4", "empty :path",
          lambda c: [(k, "" if k == ":path" else v) for k, v in c.req_headers()])
malformed("8.1.1/1", "content-length not matching the DATA",
          lambda c: c.req_headers([("content-length", "1")], body=True), data=b"abc")


@case("8.1/1", "trailers with a pseudo-header: PROTOCOL_ERROR")
def _(c):
    c.handshake()
    sid = c.sid()
    c.headers(sid, c.req_headers(body=True), end_stream=False)
    c.data(sid, c.body())
    c.headers(sid, [(":path", "/x")], end_stream=True)
    return c.stream_error(sid, PROTOCOL_ERROR)


@case("8.1/2", "a second HEADERS without END_STREAM: PROTOCOL_ERROR")
def _(c):
    c.handshake()
    sid = c.sid()
    c.headers(sid, c.req_headers(body=True), end_stream=False)
    c.data(sid, c.body())
    c.headers(sid, [("x-trailer", "1")], end_stream=False)
    return c.stream_error(sid, PROTOCOL_ERROR)


def main():
    ap = argparse.ArgumentParser(description="h2spec-like HTTP/2 conformance cases")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--grpc", metavar="PATH", help="send gRPC requests to PATH")
    ap.add_argument("--only", metavar="PREFIX", action="append", help="run cases whose id starts so")
    ap.add_argument("--exclude", metavar="PREFIX", action="append", default=[])
    ap.add_argument("-v", "--verbose", action="store_true")
    opts = ap.parse_args()
    passed = failed = skipped = 0
    for cid, desc, fn in CASES:
        if opts.only and not any(cid.startswith(p) for p in opts.only):
            continue
        if any(cid.startswith(p) for p in opts.exclude):
            continue
        try:
            c = Conn(opts.host, opts.port, opts)
        except OSError as e:
            print("FAIL %-8s %s: cannot connect: %s" % (cid, desc, e))
            failed += 1
            continue
        try:
            ok, detail = fn(c)
        except Closed:
            ok, detail = False, "connection closed unexpectedly (%s)" % c.summary()
        except Exception as e:   # a broken case is a failure, not a crash of the run
            ok, detail = False, "%s: %s" % (type(e).__name__, e)
        finally:
            c.close()
        if ok == "skip":
            skipped += 1
            print("skip %-8s %s: %s" % (cid, desc, detail))
        elif ok:
            passed += 1
            print("ok   %-8s %s%s" % (cid, desc, (" (%s)" % detail) if opts.verbose and detail else ""))
        else:
            failed += 1
            print("FAIL %-8s %s: %s" % (cid, desc, detail))
    if skipped:
        print("%d skipped" % skipped)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
