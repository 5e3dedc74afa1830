#!/usr/bin/python3
"""A small HTTP/1.1 test backend that misbehaves on request.

Answers every request with a JSON echo of what it received:
  {"name", "method", "path", "headers" (lower-case names), "body_len", "body"}
Request headers steer it:
  x-status: N          answer with status N
  x-delay-ms: N        wait N ms before answering
  x-chunked: 1         send the response body chunked
  x-body-size: N       send N bytes of 'x' as the body instead of the echo
  x-close: 1           close the connection after the response
  x-reset: 1           close the connection without answering
  x-grpc-status: N     answer trailers-only gRPC: status 200, grpc-status N in the head, no body
  x-grpc-trailer: N    answer gRPC with a body and grpc-status N in chunked trailers
  x-add-header: K: V   add response header K: V
  x-fail-key: K and x-fail-times: N
                       only the first N requests with key K misbehave as the headers above
                       ask; later ones get the plain echo (counted per backend process)
Usage: backend.py PORT NAME [BIND_ADDRESS]  (default 127.0.0.1; prints "ready" when listening)
With WEFT_TLS_CERT and WEFT_TLS_KEY in the environment it serves TLS (WEFT_TLS_CA: require and
verify client certificates; WEFT_TLS_ALPN: comma-separated ALPN protocols) and the echo gains
"tls": {"sni", "alpn", "version", "peer_uri_san"}.
"""
import json
import os
import socket
import ssl
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "backend"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        line = self.rfile.readline()
                        if line in (b"\r\n", b"\n", b""):
                            return data
                        k, _, v = line.decode("latin-1").partition(":")
                        self.trailers[k.strip().lower()] = v.strip()
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length", "0") or 0)
        return self.rfile.read(n) if n else b""

    MISBEHAVIOUR = ("x-status", "x-delay-ms", "x-reset", "x-grpc-status", "x-grpc-trailer", "x-add-header",
                    "x-close", "x-body-size", "x-chunked")

    def _handle(self):
        h = {k.lower(): v for k, v in self.headers.items()}
        if h.get("x-fail-key"):
            with self.server.lock:
                n = self.server.seen.get(h["x-fail-key"], 0)
                self.server.seen[h["x-fail-key"]] = n + 1
            if n >= int(h.get("x-fail-times", "0")):
                h = {k: v for k, v in h.items() if k not in self.MISBEHAVIOUR}
        if h.get("upgrade", "").lower() == "websocket":
            return self._websocket()
        self.trailers = {}
        body = self._body()
        if h.get("x-reset"):
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return
        if h.get("x-delay-ms"):
            time.sleep(int(h["x-delay-ms"]) / 1000.0)
        status = int(h.get("x-status", "200"))
        if "x-grpc-status" in h or "x-grpc-trailer" in h:
            return self._grpc(h)
        if "x-body-size" in h:
            out = b"x" * int(h["x-body-size"])
            ctype = "application/octet-stream"
        else:
            out = json.dumps({
                "name": self.server.name, "method": self.command, "path": self.path,
                "headers": h, "body_len": len(body), "body": body.decode("latin-1"),
                "tls": self._tls(),
                **({"trailers": self.trailers} if self.trailers else {}),
            }).encode()
            ctype = "application/json"
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("x-backend", self.server.name)
        if h.get("x-add-header"):
            self.send_header(*[x.strip() for x in h["x-add-header"].split(":", 1)])
        no_body = self.command == "HEAD" or status in (204, 304) or status < 200
        if h.get("x-chunked") and not no_body:
            self.send_header("transfer-encoding", "chunked")
        elif status not in (204, 304):
            self.send_header("content-length", str(len(out)))
        if h.get("x-close"):
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        if no_body:
            return
        if h.get("x-chunked"):
            for i in range(0, len(out), 7):
                part = out[i:i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nx-trailer: yes\r\n\r\n")
        else:
            self.wfile.write(out)

    def _grpc(self, h):
        self.send_response(200)
        self.send_header("content-type", "application/grpc")
        self.send_header("x-backend", self.server.name)
        if "x-grpc-status" in h:
            self.send_header("grpc-status", h["x-grpc-status"])
            self.send_header("content-length", "0")
            self.end_headers()
            return
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        msg = b"\x00\x00\x00\x00\x02hi"
        self.wfile.write(b"%x\r\n%s\r\n0\r\ngrpc-status: %s\r\n\r\n" % (len(msg), msg, h["x-grpc-trailer"].encode()))

    def _tls(self):
        c = self.connection
        if not isinstance(c, ssl.SSLSocket):
            return None
        peer = c.getpeercert() or {}
        uris = [v for k, v in peer.get("subjectAltName", ()) if k == "URI"]
        return {"sni": getattr(c, "weft_sni", None), "alpn": c.selected_alpn_protocol(), "version": c.version(),
                "peer_uri_san": uris[0] if uris else None}

    def _websocket(self):
        # Not a real WebSocket: after the 101, echo bytes back upper-cased until EOF.
        self.send_response(101)
        self.send_header("upgrade", "websocket")
        self.send_header("connection", "upgrade")
        self.end_headers()
        self.wfile.flush()
        while True:
            data = self.connection.recv(65536)
            if not data:
                break
            self.connection.sendall(data.upper())
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    tls = None

    def finish_request(self, request, client_address):
        # The TLS handshake runs in the connection's thread, not in the accept loop.
        if self.tls:
            try:
                request.settimeout(10)
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)


def tls_context():
    cert, key = os.environ.get("WEFT_TLS_CERT"), os.environ.get("WEFT_TLS_KEY")
    if not cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if os.environ.get("WEFT_TLS_CA"):
        ctx.load_verify_locations(os.environ["WEFT_TLS_CA"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    if os.environ.get("WEFT_TLS_ALPN"):
        ctx.set_alpn_protocols(os.environ["WEFT_TLS_ALPN"].split(","))

    def on_sni(sock, name, _ctx):
        sock.weft_sni = name
    ctx.sni_callback = on_sni
    return ctx


def main():
    port, name = int(sys.argv[1]), sys.argv[2]
    bind = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    srv = Server((bind, port), Handler)
    srv.name = name
    srv.lock, srv.seen = threading.Lock(), {}
    srv.tls = tls_context()
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
