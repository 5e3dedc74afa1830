#!/usr/bin/python3
"""HTTP/1.1 through weft-proxy (RFC 9112): keep-alive, pipelining, chunked both ways,
100-continue, HEAD, 204/304, WebSocket-style Upgrade tunnelling, hop-by-hop headers, and
request smuggling attempts rejected with 400 and a closed connection."""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa

be = backend("be")
admin, port, small = free_port(), free_port(), free_port()


def listeners(port, small):
    """"main": the edge proxy (use_remote_address, websockets); "small": tight header limits."""
    return (http_listener("main", port, extra="use_remote_address: true\nupgrade_configs: [{upgrade_type: websocket}]") +
            http_listener("small", small, stat_prefix="small",
                          extra="max_request_headers_kb: 2\ncommon_http_protocol_options: {max_headers_count: 10}"))


proxy = Proxy(bootstrap(admin, listeners(port, small), static_cluster("be", [be])), admin)


def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def body_json(resp):
    try:
        return json.loads(resp.split(b"\r\n\r\n", 1)[1])
    except (IndexError, ValueError):
        return {}


# keep-alive: two requests on one connection, each answered
s = socket.create_connection(("127.0.0.1", port), timeout=5)
got = []
for i in range(2):
    s.sendall(b"GET /ka%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(body) < n:
        body += s.recv(65536)
    got.append(json.loads(body)["path"])
s.close()
check("keep-alive: two requests on one connection", got == ["/ka0", "/ka1"], got)

# pipelining: three requests in one write, three responses in order
r = raw(port, b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)) +
        b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
paths = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["path"]
         for part in r.split(b"HTTP/1.1 200")[1:]]
check("pipelining: responses in order", paths == ["/p0", "/p1", "/p2", "/last"], paths)

# chunked request body, re-read by the backend
r = raw(port, b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
check("chunked request body forwarded", body_json(r).get("body") == "hello world", r[:300])

# chunked response passes through
st, h, body = curl("http://127.0.0.1:%d/chunked-resp" % port, "-H", "x-chunked: 1")
# curl -i prints the trailer after the body: decode the JSON object at the start only.
check("chunked response forwarded", st == 200 and json.JSONDecoder().raw_decode(body)[0]["path"] == "/chunked-resp"
      and "x-trailer: yes" in body, (st, body[:100]))

# An HTTP/1.0 client gets a chunked upstream response de-chunked, framed by closing.
r = raw(port, b"GET /old HTTP/1.0\r\nHost: x\r\nx-chunked: 1\r\n\r\n")
head, _, body = r.partition(b"\r\n\r\n")
check("HTTP/1.0 client: chunked response de-chunked", status_of(r) == 200 and b"transfer-encoding" not in head.lower()
      and json.loads(body).get("path") == "/old" and b"connection: close" in head.lower(), r[:400])

# Content-Length body
st, h, body = curl("http://127.0.0.1:%d/post" % port, "-d", "a=1&b=2")
check("content-length body forwarded", json.loads(body).get("body") == "a=1&b=2", body[:200])

# 100-continue answered by the proxy, body then forwarded
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
first = s.recv(65536)
check("100 Continue sent before the body", first.startswith(b"HTTP/1.1 100 Continue"), first[:60])
s.sendall(b"ping")
rest = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    rest += c
s.close()
resp = (first + rest).split(b"\r\n\r\n", 1)[1]
check("body after 100-continue forwarded, Expect not", body_json(resp).get("body") == "ping" and
      "expect" not in body_json(resp).get("headers", {}), resp[:300])

# HEAD, 204, 304
r = raw(port, b"HEAD /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
check("HEAD: headers with content-length, no body", status_of(r) == 200 and r.endswith(b"\r\n\r\n")
      and b"content-length" in r.lower(), r)
r = raw(port, b"GET /nc HTTP/1.1\r\nHost: x\r\nx-status: 204\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
check("204 has no body and the connection stays usable", status_of(r) == 204 and b'"/after"' in r, r[:400])
r = raw(port, b"GET /nm HTTP/1.1\r\nHost: x\r\nx-status: 304\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
check("304 has no body and the connection stays usable", status_of(r) == 304 and b'"/after"' in r, r[:400])

# hop-by-hop headers are not forwarded; x-forwarded-for appended (use_remote_address)
r = raw(port, b"GET /hop HTTP/1.1\r\nHost: x\r\nConnection: close, x-private\r\nKeep-Alive: timeout=5\r\n"
        b"X-Private: secret\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n")
hdrs = body_json(r).get("headers", {})
check("hop-by-hop headers removed", not any(k in hdrs for k in ("keep-alive", "x-private", "te", "proxy-connection")), hdrs)
check("x-forwarded-for appended with the peer", hdrs.get("x-forwarded-for") == "1.2.3.4,127.0.0.1", hdrs.get("x-forwarded-for"))

# Upgrade: WebSocket-style tunnel
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n"
          b"Sec-WebSocket-Version: 13\r\n\r\n")
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(65536)
s.sendall(b"tunnel bytes")
echo = b""
deadline = time.time() + 5
while len(echo) < 12 and time.time() < deadline:
    echo += s.recv(65536)
s.close()
check("upgrade answered with 101", head.startswith(b"HTTP/1.1 101"), head[:100])
check("bytes tunnelled both ways after 101", echo == b"TUNNEL BYTES", echo)

# Request smuggling attempts: 400 and the connection closes
def rejected(name, req, want=400):
    r = raw(port, req + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    ok = status_of(r) == want and b"/smuggled" not in r and b"connection: close" in r.lower()
    check("smuggling rejected: " + name, ok, r[:300])

rejected("content-length with transfer-encoding",
         b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
rejected("two different content-lengths", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd")
rejected("invalid content-length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4x\r\n\r\nabcd")
rejected("negative content-length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
rejected("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
rejected("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n")
rejected("bare LF line ending", b"GET / HTTP/1.1\nHost: x\n\n")
rejected("bare CR in a header value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n")
rejected("space before colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n")
rejected("invalid token in header name", b"GET / HTTP/1.1\r\nHost: x\r\nX(A): a\r\n\r\n")
rejected("absolute-form host mismatch", b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n")
rejected("missing Host in HTTP/1.1", b"GET / HTTP/1.1\r\nX: y\r\n\r\n")
rejected("chunked not last transfer coding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")

# Limits: 431 for a too-large head and too many headers
r = raw(small, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n")
check("head over max_request_headers_kb gives 431", status_of(r) == 431, r[:100])
r = raw(small, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(20)) + b"\r\n")
check("more than max_headers_count gives 431", status_of(r) == 431, r[:100])
r = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 62000 + b"\r\n\r\n")
check("head over the 60 KiB default gives 431", status_of(r) == 431, r[:100])

# Large bodies stream through in both directions (flow control, no unbounded buffering).
big = b"z" * (5 * 1024 * 1024)
r = raw(port, b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(big) + big,
        timeout=20)
check("5 MiB request body forwarded", body_json(r).get("body_len") == len(big), r[:200])
r = raw(port, b"GET /bigresp HTTP/1.1\r\nHost: x\r\nx-body-size: %d\r\nConnection: close\r\n\r\n" % (8 << 20),
        timeout=20)
check("8 MiB response body forwarded", status_of(r) == 200 and len(r.split(b"\r\n\r\n", 1)[1]) == 8 << 20,
      len(r))

# An upstream that frames its response by closing the connection (no length, no chunking).
import threading
closer = socket.socket()
closer.bind(("127.0.0.1", 0))
closer.listen(8)
def serve_close():
    for _ in range(2):
        c, _ = closer.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil-close body")
        c.close()
threading.Thread(target=serve_close, daemon=True).start()
admin2, port2 = free_port(), free_port()
proxy2 = Proxy(bootstrap(admin2, listeners(port2, free_port()),
                         static_cluster("be", [closer.getsockname()[1]])), admin2)
r = raw(port2, b"GET /uc HTTP/1.1\r\nHost: x\r\n\r\n")
check("response framed by close is forwarded and the connection closed", status_of(r) == 200 and
      r.endswith(b"until-close body") and b"connection: close" in r.lower(), r)
proxy2.stop()

stats = proxy.stats()
check("protocol errors counted", stats.get("http.ingress.downstream_cx_protocol_error", 0) >= 13,
      stats.get("http.ingress.downstream_cx_protocol_error"))
check("upgrades counted", stats.get("http.ingress.downstream_cx_upgrades_total", 0) == 1)
check("proxy exits 0 on SIGTERM", proxy.stop() == 0, proxy.output()[-2000:])
finish()
