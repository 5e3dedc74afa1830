#!/usr/bin/python3
"""A gRPC echo service and client on Debian's python3-grpcio, with generic handlers and raw
bytes (no generated code), for end-to-end tests that need a real gRPC peer (the HTTP/2 proxy
tests, weftd's tests).

Service weft.test.Echo (the same paths and request formats as weft-grpc-testsrv):
  Unary          echoes the request
  ServerStream   request "COUNT,SIZE": COUNT messages of SIZE bytes ("<i>:" then 'x' padding);
                 any other request is sent back x-count times (metadata, default 3)
  ClientStream   replies with the concatenation of the request messages
  Bidi           echoes each message as it arrives

Every method obeys request metadata:
  x-delay-ms: N          wait N ms before answering (before each streamed reply too)
  x-fail-status: CODE    end with that status (a number 0-16 or a name like UNAVAILABLE)
  x-fail-message: TEXT   the status message to fail with
and answers with:
  response headers       every request metadata entry whose key starts with "x-" (except the
                         control keys above), plus x-served-by: NAME
  trailers               x-method: the full method path, x-peer: the client address as the
                         server saw it, x-request-count: how many request messages arrived

Use as a module:
  srv = EchoServer(name="a"); srv.port ...; srv.stop()
  c = EchoClient("127.0.0.1:%d" % port); c.unary(b"x", metadata=[("x-a", "1")])
or from the command line:
  grpc_echo.py serve [--port P] [--name N]          prints "listening on P"
  grpc_echo.py call TARGET METHOD [DATA] [-m key=value]... [--timeout S] [--count N]
                 prints each response message, the status and the metadata
"""
import argparse
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "weft.test.Echo"
METHODS = ("Unary", "ServerStream", "ClientStream", "Bidi")
CONTROL = ("x-delay-ms", "x-fail-status", "x-fail-message", "x-count")


def parse_code(text):
    """A status code from a number or a name; grpc.StatusCode."""
    text = text.strip()
    for c in grpc.StatusCode:
        if text.upper() == c.name or (text.isdigit() and int(text) == c.value[0]):
            return c
    return grpc.StatusCode.UNKNOWN


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, name):
        self.name = name

    def service(self, details):
        svc, _, method = details.method.lstrip("/").partition("/")
        if svc != SERVICE or method not in METHODS:
            return None   # grpcio answers UNIMPLEMENTED
        fn = getattr(self, "_" + method.lower())
        kinds = {"Unary": grpc.unary_unary_rpc_method_handler,
                 "ServerStream": grpc.unary_stream_rpc_method_handler,
                 "ClientStream": grpc.stream_unary_rpc_method_handler,
                 "Bidi": grpc.stream_stream_rpc_method_handler}
        return kinds[method](fn, request_deserializer=None, response_serializer=None)

    # --- shared behaviour ---
    def _begin(self, ctx):
        md = {}
        echo = []
        for k, v in ctx.invocation_metadata():
            md.setdefault(k, v)
            if k.startswith("x-") and k not in CONTROL:
                echo.append((k, v))
        echo.append(("x-served-by", self.name))
        ctx.send_initial_metadata(echo)
        return md

    def _delay(self, md):
        ms = md.get("x-delay-ms")
        if ms:
            time.sleep(int(ms) / 1000.0)

    def _end(self, ctx, md, method, count):
        ctx.set_trailing_metadata([("x-method", "/%s/%s" % (SERVICE, method)),
                                   ("x-peer", ctx.peer()), ("x-request-count", str(count))])
        if "x-fail-status" in md:
            ctx.abort(parse_code(md["x-fail-status"]), md.get("x-fail-message", "failed on request"))

    # --- methods ---
    def _unary(self, req, ctx):
        md = self._begin(ctx)
        self._delay(md)
        self._end(ctx, md, "Unary", 1)
        return req

    def _serverstream(self, req, ctx):
        md = self._begin(ctx)
        try:
            count, size = (int(x) for x in req.decode().split(","))
            msgs = (((b"%d:" % i) + b"x" * size)[:size] for i in range(count))
        except ValueError:
            count = int(md.get("x-count", "3"))
            msgs = (req for _ in range(count))
        if "x-fail-status" in md:
            self._delay(md)
            self._end(ctx, md, "ServerStream", 1)
        for m in msgs:
            self._delay(md)
            if not ctx.is_active():
                return
            yield m
        self._end(ctx, md, "ServerStream", 1)

    def _clientstream(self, reqs, ctx):
        md = self._begin(ctx)
        parts = list(reqs)
        self._delay(md)
        self._end(ctx, md, "ClientStream", len(parts))
        return b"".join(parts)

    def _bidi(self, reqs, ctx):
        md = self._begin(ctx)
        n = 0
        if "x-fail-status" in md:
            self._delay(md)
            self._end(ctx, md, "Bidi", 0)
        for r in reqs:
            n += 1
            self._delay(md)
            yield r
        self._end(ctx, md, "Bidi", n)


class EchoServer:
    """A running echo server on 127.0.0.1 (port 0: a free one)."""

    def __init__(self, port=0, name="echo", address="127.0.0.1", max_workers=32, options=()):
        self.name = name
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                  handlers=[_Handler(name)], options=list(options))
        self.port = self.server.add_insecure_port("%s:%d" % (address, port))
        if not self.port:
            raise RuntimeError("cannot listen on %s:%d" % (address, port))
        self.server.start()

    def stop(self, grace=None):
        self.server.stop(grace).wait(10)


class EchoClient:
    """Generic calls on one channel; every method returns what grpcio returns (raw bytes)."""

    def __init__(self, target, options=()):
        self.channel = grpc.insecure_channel(target, options=list(options))

    def _path(self, method):
        return "/%s/%s" % (SERVICE, method)

    def unary(self, data, metadata=(), timeout=10, with_call=False):
        fn = self.channel.unary_unary(self._path("Unary"))
        if with_call:
            return fn.with_call(data, metadata=list(metadata), timeout=timeout)
        return fn(data, metadata=list(metadata), timeout=timeout)

    def server_stream(self, data, metadata=(), timeout=10):
        return self.channel.unary_stream(self._path("ServerStream"))(data, metadata=list(metadata),
                                                                    timeout=timeout)

    def client_stream(self, messages, metadata=(), timeout=10, with_call=False):
        fn = self.channel.stream_unary(self._path("ClientStream"))
        if with_call:
            return fn.with_call(iter(messages), metadata=list(metadata), timeout=timeout)
        return fn(iter(messages), metadata=list(metadata), timeout=timeout)

    def bidi(self, messages, metadata=(), timeout=10):
        return self.channel.stream_stream(self._path("Bidi"))(iter(messages), metadata=list(metadata),
                                                             timeout=timeout)

    def close(self):
        self.channel.close()


def _cli():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--name", default="echo")
    c = sub.add_parser("call")
    c.add_argument("target")
    c.add_argument("method", choices=METHODS)
    c.add_argument("data", nargs="?", default="hello")
    c.add_argument("-m", "--metadata", action="append", default=[])
    c.add_argument("--timeout", type=float, default=10)
    c.add_argument("--count", type=int, default=3, help="messages to send (ClientStream, Bidi)")
    a = ap.parse_args()
    if a.cmd == "serve":
        srv = EchoServer(a.port, a.name)
        print("listening on %d" % srv.port, flush=True)
        ev = threading.Event()
        try:
            ev.wait()
        except KeyboardInterrupt:
            pass
        srv.stop(1)
        return 0
    md = [tuple(kv.split("=", 1)) for kv in a.metadata]
    cl = EchoClient(a.target)
    data = a.data.encode()
    try:
        if a.method == "Unary":
            r, call = cl.unary(data, md, a.timeout, with_call=True)
            out, head, trail = [r], call.initial_metadata(), call.trailing_metadata()
        elif a.method == "ClientStream":
            r, call = cl.client_stream([data] * a.count, md, a.timeout, with_call=True)
            out, head, trail = [r], call.initial_metadata(), call.trailing_metadata()
        else:
            it = (cl.server_stream(data, md, a.timeout) if a.method == "ServerStream" else
                  cl.bidi([data] * a.count, md, a.timeout))
            out = list(it)
            head, trail = it.initial_metadata(), it.trailing_metadata()
        for m in out:
            print("message: %r" % m)
        print("status: OK")
    except grpc.RpcError as e:
        print("status: %s %r" % (e.code().name, e.details()))
        head, trail = e.initial_metadata(), e.trailing_metadata()
    for k, v in head or ():
        print("header: %s: %s" % (k, v))
    for k, v in trail or ():
        print("trailer: %s: %s" % (k, v))
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
