#!/usr/bin/python3
"""A backend for flow-control tests: HTTP/1.1 on H1_PORT and h2c (prior knowledge, python3-h2)
on H2_PORT, one thread per connection, bodies streamed (never held whole).

Paths (the same on both ports):
  /up?pause_ms=N    a slow reader: reads no body byte for N ms after the request head (HTTP/2:
                    acknowledges no DATA, so the window stays shut), then reads the whole body
                    (Content-Length on HTTP/1.1) and answers {"len": bytes, "md5": hex}
  /down?size=N      answers N bytes of PATTERN (Content-Length)
  /info             (h2 only) what the proxy advertised on this connection:
                    {"initial_window_size": SETTINGS_INITIAL_WINDOW_SIZE or null,
                     "conn_window_update": the first connection-level WINDOW_UPDATE increment}
Usage: flow_backend.py H1_PORT H2_PORT  (prints "ready" when both listen)
"""
import hashlib
import json
import select
import socket
import sys
import threading
import time
import urllib.parse

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

PATTERN = bytes(range(256)) * 256 * 16   # 1 MiB; body byte i is PATTERN[i % 65536]


def pattern_slice(offset, n):
    """n bytes of the body at offset (n <= 1 MiB - 64 KiB)."""
    o = offset % 65536
    return PATTERN[o:o + n]


def pattern_md5(size):
    m = hashlib.md5()
    for off in range(0, size, 1 << 19):
        m.update(pattern_slice(off, min(1 << 19, size - off)))
    return m.hexdigest()


def parse(path):
    u = urllib.parse.urlsplit(path)
    q = dict(urllib.parse.parse_qsl(u.query))
    return u.path, q


# --- HTTP/1.1 ---

def h1_conn(sock):
    f = sock.makefile("rb")
    try:
        while True:
            line = f.readline()
            if not line:
                return
            method, path, _ = line.decode().split(" ", 2)
            headers = {}
            while True:
                h = f.readline().decode()
                if h in ("\r\n", "\n", ""):
                    break
                k, _, v = h.partition(":")
                headers[k.strip().lower()] = v.strip()
            p, q = parse(path)
            if p.endswith("/up"):
                time.sleep(int(q.get("pause_ms", 0)) / 1000.0)
                left = int(headers.get("content-length", 0))
                m, n = hashlib.md5(), 0
                while left:
                    d = f.read1(min(left, 1 << 16))
                    if not d:
                        return
                    m.update(d)
                    n += len(d)
                    left -= len(d)
                body = json.dumps({"len": n, "md5": m.hexdigest()}).encode()
                sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            elif p.endswith("/down"):
                size = int(q.get("size", 0))
                sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
                for off in range(0, size, 1 << 16):
                    sock.sendall(pattern_slice(off, min(1 << 16, size - off)))
            else:
                sock.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    except (OSError, ValueError):
        return
    finally:
        sock.close()


# --- HTTP/2 ---

def h2_conn(sock):
    info = {"initial_window_size": None, "conn_window_update": None}
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    c.initiate_connection()
    sock.sendall(c.data_to_send())
    streams = {}
    try:
        while True:
            now = time.time()
            wait = 1.0
            for st in streams.values():
                if st["unacked"] and st["pause_until"] > now:
                    wait = min(wait, st["pause_until"] - now)
                if st.get("left") and c.local_flow_control_window(st["sid"]) > 0:
                    wait = 0
            if select.select([sock], [], [], max(wait, 0))[0]:
                data = sock.recv(1 << 16)
                if not data:
                    return
                for ev in c.receive_data(data):
                    if isinstance(ev, h2.events.RemoteSettingsChanged):
                        cs = ev.changed_settings.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE)
                        if cs and info["initial_window_size"] is None:
                            info["initial_window_size"] = cs.new_value
                    elif isinstance(ev, h2.events.WindowUpdated) and ev.stream_id == 0:
                        if info["conn_window_update"] is None:
                            info["conn_window_update"] = ev.delta
                    elif isinstance(ev, h2.events.RequestReceived):
                        h = dict(ev.headers)
                        p, q = parse(h[":path"])
                        streams[ev.stream_id] = {"sid": ev.stream_id, "path": p, "q": q, "md5": hashlib.md5(),
                                                 "len": 0, "unacked": 0, "ended": False, "answered": False,
                                                 "pause_until": time.time() + int(q.get("pause_ms", 0)) / 1000.0}
                    elif isinstance(ev, h2.events.DataReceived) and ev.stream_id in streams:
                        st = streams[ev.stream_id]
                        st["md5"].update(ev.data)
                        st["len"] += len(ev.data)
                        st["unacked"] += ev.flow_controlled_length
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in streams:
                        streams[ev.stream_id]["ended"] = True
                    elif isinstance(ev, h2.events.StreamReset):
                        streams.pop(ev.stream_id, None)
            now = time.time()
            for sid, st in list(streams.items()):
                if st["unacked"] and now >= st["pause_until"]:
                    c.acknowledge_received_data(st["unacked"], sid)
                    st["unacked"] = 0
                if st["ended"] and not st["answered"]:
                    st["answered"] = True
                    if st["path"].endswith("/down"):
                        st["left"], st["off"] = int(st["q"].get("size", 0)), 0
                        c.send_headers(sid, [(":status", "200"), ("content-length", str(st["left"]))],
                                       end_stream=st["left"] == 0)
                    else:
                        if st["path"].endswith("/up"):
                            body = {"len": st["len"], "md5": st["md5"].hexdigest()}
                        else:
                            body = info
                        data = json.dumps(body).encode()
                        c.send_headers(sid, [(":status", "200"), ("content-length", str(len(data)))])
                        c.send_data(sid, data, end_stream=True)
                        del streams[sid]
                        continue
                while st.get("left"):
                    n = min(c.local_flow_control_window(sid), c.max_outbound_frame_size, st["left"])
                    if n <= 0:
                        break
                    c.send_data(sid, pattern_slice(st["off"], n), end_stream=n == st["left"])
                    st["off"] += n
                    st["left"] -= n
                    if not st["left"]:
                        del streams[sid]
                out = c.data_to_send()
                if out:
                    sock.sendall(out)
            out = c.data_to_send()
            if out:
                sock.sendall(out)
    except (OSError, h2.exceptions.ProtocolError):
        return
    finally:
        sock.close()


def serve(port, handler):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(128)

    def loop():
        while True:
            s, _ = ls.accept()
            threading.Thread(target=handler, args=(s,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


if __name__ == "__main__":
    serve(int(sys.argv[1]), h1_conn)
    serve(int(sys.argv[2]), h2_conn)
    print("ready", flush=True)
    while True:
        time.sleep(3600)
