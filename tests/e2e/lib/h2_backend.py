#!/usr/bin/python3
"""A small h2c (HTTP/2 with prior knowledge) test backend on python3-h2.

Answers every request with a JSON echo: {"name", "method", "path", "authority", "headers",
"body_len", "trailers", "conn"} ("conn" counts requests seen on this connection so far).
Request headers steer it:
  x-status: N        answer with status N
  x-body-size: N     send N bytes of 'x' as the body instead of the echo
  x-trailer: 1       end the response with trailers (x-trailer-echo: yes)
  x-reset: 1         reset the stream (RST_STREAM INTERNAL_ERROR) instead of answering
  x-delay-ms: N      wait N ms before answering
Usage: h2_backend.py PORT NAME [MAX_CONCURRENT_STREAMS]  (prints "ready" when listening)
With WEFT_TLS_CERT and WEFT_TLS_KEY in the environment it serves HTTP/2 over TLS with ALPN "h2"
(WEFT_TLS_CA: require and verify client certificates); the echo gains
"tls": {"sni", "alpn", "peer_uri_san"}.
"""
import json
import os
import select
import socket
import ssl
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

PORT, NAME = int(sys.argv[1]), sys.argv[2]
MAX_STREAMS = int(sys.argv[3]) if len(sys.argv) > 3 else 100
conns = [0]


def tls_context():
    cert, key = os.environ.get("WEFT_TLS_CERT"), os.environ.get("WEFT_TLS_KEY")
    if not cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if os.environ.get("WEFT_TLS_CA"):
        ctx.load_verify_locations(os.environ["WEFT_TLS_CA"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])

    def on_sni(sock, name, _ctx):
        sock.weft_sni = name
    ctx.sni_callback = on_sni
    return ctx


TLS = tls_context()


def tls_info(sock):
    if not isinstance(sock, ssl.SSLSocket):
        return None
    peer = sock.getpeercert() or {}
    uris = [v for k, v in peer.get("subjectAltName", ()) if k == "URI"]
    return {"sni": getattr(sock, "weft_sni", None), "alpn": sock.selected_alpn_protocol(),
            "peer_uri_san": uris[0] if uris else None}


def serve(sock):
    if TLS:
        try:
            sock.settimeout(10)
            sock = TLS.wrap_socket(sock, server_side=True)
            sock.settimeout(None)
        except (OSError, ssl.SSLError):
            sock.close()
            return
    conns[0] += 1
    conn_no = conns[0]
    cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    c = h2.connection.H2Connection(config=cfg)
    c.local_settings = h2.settings.Settings(client=False, initial_values={
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS})
    c.initiate_connection()
    sock.sendall(c.data_to_send())
    streams = {}
    lock = threading.Lock()
    seen = [0]
    pending = {}  # stream id -> bytes still to send

    def flush():
        data = c.data_to_send()
        if data:
            sock.sendall(data)

    def pump_pending():
        for sid in list(pending):
            data = pending[sid]
            while data:
                try:
                    win = min(c.local_flow_control_window(sid), c.max_outbound_frame_size)
                except Exception:
                    pending.pop(sid, None)
                    data = None
                    break
                if win <= 0:
                    break
                c.send_data(sid, data[:win])
                data = data[win:]
            if data is None:
                continue
            if data:
                pending[sid] = data
            else:
                pending.pop(sid)
                t = streams[sid].get("trailer")
                if t:
                    c.send_headers(sid, [("x-trailer-echo", "yes"), ("grpc-status", "0")], end_stream=True)
                else:
                    c.end_stream(sid)
        flush()

    def respond(sid):
        st = streams[sid]
        h = st["headers"]
        seen[0] += 1
        if h.get("x-delay-ms"):
            time.sleep(int(h["x-delay-ms"]) / 1000.0)
        with lock:
            if h.get("x-reset"):
                c.reset_stream(sid, 2)
                flush()
                return
            if h.get("x-body-size"):
                body = b"x" * int(h["x-body-size"])
            else:
                body = json.dumps({"name": NAME, "method": h.get(":method"), "path": h.get(":path"),
                                   "authority": h.get(":authority"),
                                   "headers": {k: v for k, v in st["list"] if not k.startswith(":")},
                                   "body_len": len(st["body"]), "trailers": st.get("rq_trailers", {}),
                                   "conn": seen[0], "conn_no": conn_no, "tls": tls_info(sock)}).encode()
            st["trailer"] = bool(h.get("x-trailer"))
            c.send_headers(sid, [(":status", h.get("x-status", "200")), ("content-type", "application/json"),
                                 ("x-backend", NAME)], end_stream=False)
            pending[sid] = body
            pump_pending()

    try:
        while True:
            if TLS:
                # One SSL object must not read and write at once: reads take the lock too, and
                # wait for bytes outside it.
                if not sock.pending():
                    select.select([sock], [], [], 0.05)
                with lock:
                    if not sock.pending() and not select.select([sock], [], [], 0)[0]:
                        continue
                    data = sock.recv(65536)
            else:
                data = sock.recv(65536)
            if not data:
                break
            with lock:
                events = c.receive_data(data)
            for ev in events:
                if isinstance(ev, h2.events.RequestReceived):
                    streams[ev.stream_id] = {"headers": dict(ev.headers), "list": ev.headers, "body": b""}
                elif isinstance(ev, h2.events.DataReceived):
                    streams[ev.stream_id]["body"] += ev.data
                    with lock:
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.TrailersReceived):
                    streams[ev.stream_id]["rq_trailers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded):
                    if ev.stream_id in streams:
                        threading.Thread(target=respond, args=(ev.stream_id,), daemon=True).start()
                elif isinstance(ev, h2.events.WindowUpdated):
                    with lock:
                        pump_pending()
                elif isinstance(ev, h2.events.StreamReset):
                    pending.pop(ev.stream_id, None)
            with lock:
                flush()
    except Exception:
        pass
    finally:
        sock.close()


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", PORT))
srv.listen(128)
print("ready", flush=True)
while True:
    s, _ = srv.accept()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
