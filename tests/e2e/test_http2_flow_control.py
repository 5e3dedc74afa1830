#!/usr/bin/python3
"""HTTP/2 flow control (Http2ProtocolOptions initial_stream_window_size /
initial_connection_window_size, downstream and upstream): the windows the proxy advertises are
the configured ones; large bodies stream both ways for h2->h2, h2->h1 and h1->h2; a slow reader
on either side holds the sender back while the proxy's RSS stays bounded; a stream whose
reader opens no window does not stall the other streams on the same connection; out-of-range
windows are config errors naming the field."""
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
import weft
from flow_backend import pattern_slice, pattern_md5  # noqa

import h2.config
import h2.connection
import h2.events
import h2.settings

MiB = 1 << 20
DS_STREAM, DS_CONN = 1 * MiB, 4 * MiB          # the listener's windows
US_STREAM, US_CONN = 2 * MiB, 8 * MiB          # the h2 cluster's windows

h1_port, h2_port = free_port(), free_port()
bp = subprocess.Popen([os.path.join(HERE, "flow_backend.py"), str(h1_port), str(h2_port)],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
weft._procs.append(bp)
bp.stdout.readline()
wait_port(h1_port)
wait_port(h2_port)

admin, port, dport = free_port(), free_port(), free_port()
routes = ('virtual_hosts: [{name: all, domains: ["*"], routes: ['
          '{match: {prefix: "/h2/"}, route: {cluster: h2be, timeout: 120s}},'
          '{match: {prefix: "/h1/"}, route: {cluster: h1be, timeout: 120s}},'
          '{match: {prefix: "/ud/"}, route: {cluster: h2ud}}]}]')
H2OPT = """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {initial_stream_window_size: %d, initial_connection_window_size: %d}}""" % (
    US_STREAM, US_CONN)
listeners = (http_listener("main", port, route_config=routes,
                           extra="stream_idle_timeout: 60s\nhttp2_protocol_options: {initial_stream_window_size: %d, "
                                 "initial_connection_window_size: %d, max_concurrent_streams: 50}" % (DS_STREAM, DS_CONN)) +
             http_listener("dflt", dport, route_config=routes))
UD_STREAM, UD_CONN = 3 * MiB, 6 * MiB          # use_downstream_protocol_config's windows
UDOPT = """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        use_downstream_protocol_config: {http2_protocol_options: {initial_stream_window_size: %d, initial_connection_window_size: %d}}""" % (
    UD_STREAM, UD_CONN)
clusters = (static_cluster("h2be", [h2_port], extra=H2OPT) + static_cluster("h1be", [h1_port]) +
            static_cluster("h2ud", [h2_port], extra=UDOPT))
proxy = Proxy(bootstrap(admin, listeners, clusters), admin)


def rss_kb():
    return weft.rss_kb(proxy.p.pid)


class RssWatch:
    """Samples the proxy's VmRSS in a thread; .peak is the highest seen."""

    def __init__(self, base):
        self.base, self.peak = base, rss_kb()
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, rss_kb())
            time.sleep(0.02)

    def done(self):
        self.stop = True
        self.t.join()
        return (self.peak - self.base) // 1024


class H2Client:
    """A python3-h2 client on one connection to the proxy."""

    def __init__(self, p=port, window=4 * MiB, conn_window=0):
        self.s = socket.create_connection(("127.0.0.1", p), timeout=60)
        self.c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.c.initiate_connection()
        self.c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        if conn_window:
            self.c.increment_flow_control_window(conn_window)
        self.flush()
        self.settings, self.conn_updates = {}, []
        self.st = {}

    def flush(self):
        d = self.c.data_to_send()
        if d:
            self.s.sendall(d)

    def open(self, path, size=None):
        sid = self.c.get_next_available_stream_id()
        hdrs = [(":method", "POST" if size is not None else "GET"), (":scheme", "http"),
                (":authority", "flow"), (":path", path)]
        if size is not None:
            hdrs.append(("content-length", str(size)))
        self.c.send_headers(sid, hdrs, end_stream=size is None)
        self.flush()
        self.st[sid] = {"status": None, "body": bytearray(), "len": 0, "md5": None, "ended": False, "reset": None,
                        "ack": True, "keep": True}
        return sid

    def pump(self, timeout=10.0):
        """Reads one batch of frames; acknowledges DATA on streams with ack set."""
        self.s.settimeout(timeout)
        data = self.s.recv(1 << 17)
        if not data:
            raise EOFError("proxy closed the connection")
        for ev in self.c.receive_data(data):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                for k, v in ev.changed_settings.items():
                    self.settings[k] = v.new_value
            elif isinstance(ev, h2.events.WindowUpdated) and ev.stream_id == 0:
                self.conn_updates.append(ev.delta)
            elif isinstance(ev, h2.events.ResponseReceived):
                self.st[ev.stream_id]["status"] = dict(ev.headers).get(":status")
            elif isinstance(ev, h2.events.DataReceived):
                st = self.st[ev.stream_id]
                st["len"] += len(ev.data)
                if st["keep"]:
                    st["body"] += ev.data
                if st["md5"] is not None:
                    st["md5"].update(ev.data)
                if st["ack"]:
                    self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.st[ev.stream_id]["ended"] = True
            elif isinstance(ev, h2.events.StreamReset):
                self.st[ev.stream_id]["reset"] = ev.error_code
        self.flush()

    def upload(self, sid, size, progress=None):
        """Sends size pattern bytes on sid as the windows allow; progress(sent) after each frame."""
        off = 0
        while off < size:
            n = min(self.c.local_flow_control_window(sid), self.c.max_outbound_frame_size, size - off)
            if n <= 0:
                self.pump()
                continue
            self.c.send_data(sid, pattern_slice(off, n), end_stream=off + n == size)
            off += n
            self.flush()
            if progress:
                progress(off)

    def wait(self, sid, timeout=120.0):
        deadline = time.time() + timeout
        st = self.st[sid]
        while not st["ended"] and st["reset"] is None and time.time() < deadline:
            self.pump()
        return st

    def close(self):
        self.s.close()


def md5_stream(sid, c):
    import hashlib
    c.st[sid]["md5"] = hashlib.md5()
    c.st[sid]["keep"] = False


# 1. What the proxy advertises downstream: the configured windows, as SETTINGS and a connection
# WINDOW_UPDATE; the defaults are Envoy's (256 MiB).
for name, p, win, conn, maxs in (("configured", port, DS_STREAM, DS_CONN, 50),
                                 ("default", dport, 268435456, 268435456, None)):
    c = H2Client(p)
    deadline = time.time() + 5
    while (h2.settings.SettingCodes.INITIAL_WINDOW_SIZE not in c.settings or not c.conn_updates) and time.time() < deadline:
        c.pump(5)
    check("%s: SETTINGS_INITIAL_WINDOW_SIZE is %d" % (name, win),
          c.settings.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE) == win, c.settings)
    check("%s: the connection WINDOW_UPDATE opens the connection window to %d" % (name, conn),
          c.conn_updates[:1] == [conn - 65535], c.conn_updates)
    if maxs:
        check("%s: SETTINGS_MAX_CONCURRENT_STREAMS is %d" % (name, maxs),
              c.settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS) == maxs, c.settings)
    c.close()

# ... and upstream: the cluster's windows reach the HTTP/2 backend (explicit_http_config, and
# use_downstream_protocol_config for an HTTP/2 client).
import json
for how, path, win, conn in (("explicit_http_config", "/h2/info", US_STREAM, US_CONN),
                             ("use_downstream_protocol_config", "/ud/info", UD_STREAM, UD_CONN)):
    c = H2Client()
    sid = c.open(path)
    st = c.wait(sid)
    info = json.loads(bytes(st["body"]) or b"{}")
    check("upstream (%s): SETTINGS_INITIAL_WINDOW_SIZE is the cluster's %d" % (how, win),
          info.get("initial_window_size") == win, info)
    check("upstream (%s): the connection WINDOW_UPDATE opens it to the cluster's %d" % (how, conn),
          info.get("conn_window_update") == conn - 65535, info)
    c.close()


def h2_upload(path, size, progress=None):
    c = H2Client()
    sid = c.open(path, size)
    c.upload(sid, size, progress)
    st = c.wait(sid)
    c.close()
    try:
        return st["status"], json.loads(bytes(st["body"]))
    except ValueError:
        return st["status"], {}


def h2_download(path, size, pause=0.0):
    """GET size bytes; with pause, reads nothing from the socket for that long first."""
    c = H2Client()
    sid = c.open("%s?size=%d" % (path, size))
    md5_stream(sid, c)
    time.sleep(pause)
    st = c.wait(sid)
    c.close()
    return st["status"], st["len"], st["md5"].hexdigest()


def h1_request(method, path, size=0, progress=None, pause=0.0):
    """One HTTP/1.1 exchange on a raw socket: uploads size pattern bytes (Content-Length) or, for
    GET, reads the body (after pause seconds of not reading). Returns (status, length, md5, body)."""
    import hashlib
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = "%s %s HTTP/1.1\r\nHost: flow\r\n" % (method, path)
    if method == "POST":
        head += "Content-Length: %d\r\n" % size
    s.sendall((head + "\r\n").encode())
    for off in range(0, size, 1 << 16):
        s.sendall(pattern_slice(off, min(1 << 16, size - off)))
        if progress:
            progress(off + min(1 << 16, size - off))
    time.sleep(pause)
    f = s.makefile("rb")
    status = int(f.readline().split()[1])
    length = 0
    while True:
        line = f.readline().decode().strip()
        if not line:
            break
        k, _, v = line.partition(":")
        if k.lower() == "content-length":
            length = int(v)
    m, body, got = hashlib.md5(), bytearray(), 0
    while got < length:
        d = f.read1(min(1 << 16, length - got))
        if not d:
            break
        got += len(d)
        m.update(d)
        if len(body) < 4096:
            body += d
    s.close()
    return status, got, m.hexdigest(), bytes(body)


# 2. Slow readers hold the sender back; the proxy's memory stays bounded. The reader reads
# nothing for PAUSE seconds: what the sender got out in that time is bounded by the windows,
# the proxy's buffers and the kernel's socket buffers, far below the 50 MiB it wants to send.
# The proxy's RSS is compared with what it had before the first of these transfers (the
# worker buffer pools keep what they used, so later transfers start from a warm pool).
HUGE, PAUSE = 50 * MiB, 3.0
RSS_LIMIT_MB, SENT_LIMIT = 32, 25 * MiB
RSS0 = rss_kb()
want = pattern_md5(HUGE)


class Progress:
    def __init__(self):
        self.t0, self.at_pause_end, self.limit = time.time(), None, PAUSE * 0.8

    def __call__(self, sent):
        if time.time() - self.t0 < self.limit:
            self.at_pause_end = sent


def rx_bytes(cluster):
    return proxy.stats().get("cluster.%s.upstream_cx_rx_bytes_total" % cluster, 0)


for pair, path, client in (("h2->h2", "/h2", "h2"), ("h2->h1", "/h1", "h2"), ("h1->h2", "/h2", "h1")):
    w, pr = RssWatch(RSS0), Progress()
    if client == "h2":
        status, j = h2_upload("%s/up?pause_ms=%d" % (path, PAUSE * 1000), HUGE, pr)
        ok = status == "200" and j == {"len": HUGE, "md5": want}
    else:
        status, _, _, body = h1_request("POST", "%s/up?pause_ms=%d" % (path, PAUSE * 1000), HUGE, pr)
        j = json.loads(body or b"{}")
        ok = status == 200 and j == {"len": HUGE, "md5": want}
    grew = w.done()
    check("%s: 50 MiB upload to a backend that reads slowly arrives whole" % pair, ok, (status, j))
    check("%s: ...the client was held back while the backend did not read (%s of 50 MiB sent)" % (pair, pr.at_pause_end),
          pr.at_pause_end is not None and pr.at_pause_end < SENT_LIMIT, pr.at_pause_end)
    check("%s: ...the proxy's RSS stayed < %d MiB above its start (%d MiB)" % (pair, RSS_LIMIT_MB, grew),
          grew < RSS_LIMIT_MB, grew)

for pair, path, client, cluster in (("h2->h2", "/h2", "h2", "h2be"), ("h2->h1", "/h1", "h2", "h1be"),
                                    ("h1->h2", "/h2", "h1", "h2be")):
    w = RssWatch(RSS0)
    rx0 = rx_bytes(cluster)
    mid = {}
    threading.Timer(PAUSE * 0.8, lambda: mid.setdefault("rx", rx_bytes(cluster) - rx0)).start()
    if client == "h2":
        status, n, md5 = h2_download(path + "/down", HUGE, pause=PAUSE)
        ok = status == "200" and n == HUGE and md5 == want
    else:
        status, n, md5, _ = h1_request("GET", "%s/down?size=%d" % (path, HUGE), pause=PAUSE)
        ok = status == 200 and n == HUGE and md5 == want
    grew = w.done()
    check("%s: 50 MiB download to a client that reads slowly arrives whole" % pair, ok, (status, n))
    check("%s: ...the backend was held back while the client did not read (%s of 50 MiB from it)" % (pair, mid.get("rx")),
          mid.get("rx") is not None and mid["rx"] < SENT_LIMIT, mid)
    check("%s: ...the proxy's RSS stayed < %d MiB above its start (%d MiB)" % (pair, RSS_LIMIT_MB, grew),
          grew < RSS_LIMIT_MB, grew)


# 3. Large bodies stream both ways for every protocol pair.
BIG = 20 * MiB
want = pattern_md5(BIG)
for pair, path in (("h2->h2", "/h2"), ("h2->h1", "/h1")):
    status, j = h2_upload(path + "/up", BIG)
    check("%s: a 20 MiB upload arrives whole" % pair, status == "200" and j == {"len": BIG, "md5": want}, (status, j))
    status, n, md5 = h2_download(path + "/down", BIG)
    check("%s: a 20 MiB download arrives whole" % pair, status == "200" and n == BIG and md5 == want, (status, n))
status, n, md5, body = h1_request("POST", "/h2/up", BIG)
j = json.loads(body or b"{}")
check("h1->h2: a 20 MiB upload arrives whole", status == 200 and j == {"len": BIG, "md5": want}, (status, j))
status, n, md5, _ = h1_request("GET", "/h2/down?size=%d" % BIG)
check("h1->h2: a 20 MiB download arrives whole", status == 200 and n == BIG and md5 == want, (status, n))


# 4. A stream whose reader opens no window does not stall its neighbours on the same
# connection (downstream and the shared upstream HTTP/2 connection).
for pair, path in (("h2->h2", "/h2"), ("h2->h1", "/h1")):
    c = H2Client(window=65535, conn_window=1 << 30)
    a = c.open("%s/down?size=%d" % (path, 8 * MiB))
    c.st[a]["ack"] = c.st[a]["keep"] = False      # never reopens a's window
    b = c.open("%s/down?size=%d" % (path, 4 * MiB))
    md5_stream(b, c)
    st = c.wait(b, timeout=60)
    check("%s: a stream with a shut window does not stall another on the connection" % pair,
          st["ended"] and st["len"] == 4 * MiB and st["md5"].hexdigest() == pattern_md5(4 * MiB), (st["len"], st["reset"]))
    check("%s: ...the stalled stream got no more than its window" % pair, c.st[a]["len"] <= 65535, c.st[a]["len"])
    c.c.reset_stream(a)
    c.flush()
    c.close()
check("the proxy is still up", proxy.p.poll() is None)

# 5. Out-of-range windows are config errors that name the field.
for where, extra_l, extra_c, field in (
        ("listener", "http2_protocol_options: {initial_stream_window_size: 65534}", "",
         "http2_protocol_options.initial_stream_window_size"),
        ("listener", "http2_protocol_options: {initial_connection_window_size: 2147483648}", "",
         "http2_protocol_options.initial_connection_window_size"),
        ("cluster", "", H2OPT.replace("initial_stream_window_size: %d" % US_STREAM, "initial_stream_window_size: 1000"),
         "initial_stream_window_size")):
    cfg = bootstrap(free_port(), http_listener("bad", free_port(), route_config=routes, extra=extra_l),
                    static_cluster("h2be", [h2_port], extra=extra_c or H2OPT) + static_cluster("h1be", [h1_port]) +
                    static_cluster("h2ud", [h2_port], extra=UDOPT))
    code, out = run_proxy_expect_fail(cfg)
    check("config error (%s): %s out of range names the field" % (where, field),
          code == 1 and field in out and "between 65535 and 2147483647" in out and "CONFIG" in out, (code, out))

rc = proxy.stop()
check("proxy exits 0 (no leak under ASan)", rc == 0, proxy.output()[-3000:])
finish()
