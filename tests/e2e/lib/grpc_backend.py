#!/usr/bin/python3
"""A gRPC test server on python3-grpcio with generic handlers on raw bytes (no generated code).
Service test.Echo: Unary (echoes the request + "!"), ServerStream (5 replies), ClientStream
(joins the requests), Bidi (upper-cases each message), Fail (NOT_FOUND "nope"), Slow (sleeps 2 s).
Usage: grpc_backend.py PORT  (prints "ready" when listening)
With WEFT_TLS_CERT and WEFT_TLS_KEY in the environment it serves TLS (grpc.ssl_server_credentials;
WEFT_TLS_CA: require and verify client certificates)."""
import os
import sys
import time
from concurrent import futures

import grpc


def fail(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "nope")


def slow(req, ctx):
    time.sleep(2)
    return b"late"


handlers = grpc.method_handlers_generic_handler("test.Echo", {
    "Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req + b"!"),
    "ServerStream": grpc.unary_stream_rpc_method_handler(lambda req, ctx: (req + bytes([48 + i]) for i in range(5))),
    "ClientStream": grpc.stream_unary_rpc_method_handler(lambda it, ctx: b"+".join(it)),
    "Bidi": grpc.stream_stream_rpc_method_handler(lambda it, ctx: (m.upper() for m in it)),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((handlers,))
if os.environ.get("WEFT_TLS_CERT"):
    def _read(path):
        with open(path, "rb") as f:
            return f.read()
    ca = os.environ.get("WEFT_TLS_CA")
    creds = grpc.ssl_server_credentials([(_read(os.environ["WEFT_TLS_KEY"]), _read(os.environ["WEFT_TLS_CERT"]))],
                                        root_certificates=_read(ca) if ca else None, require_client_auth=bool(ca))
    server.add_secure_port("127.0.0.1:%s" % sys.argv[1], creds)
else:
    server.add_insecure_port("127.0.0.1:%s" % sys.argv[1])
server.start()
print("ready", flush=True)
server.wait_for_termination()
