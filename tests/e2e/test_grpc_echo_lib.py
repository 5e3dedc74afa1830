#!/usr/bin/python3
"""Checks tests/e2e/lib/grpc_echo.py (the python3-grpcio echo server and client other e2e tests
reuse): every call kind, metadata echo, failures and delays chosen by metadata, the command
line, and that its client and weft-grpc-testsrv agree on the shared weft.test.Echo methods."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import weft  # noqa: E402
from weft import check, finish  # noqa: E402
import grpc  # noqa: E402
import grpc_echo  # noqa: E402


def err(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e
    return None


def exercise(cl, label, python_server):
    check(label + ": unary", cl.unary(b"abc") == b"abc")
    msgs = list(cl.server_stream(b"4,6"))
    check(label + ": server stream COUNT,SIZE", msgs == [b"0:xxxx", b"1:xxxx", b"2:xxxx", b"3:xxxx"],
          msgs)
    check(label + ": client stream", cl.client_stream([b"a", b"bb", b"ccc"]) == b"abbccc")
    check(label + ": bidi", list(cl.bidi([b"1", b"2", b"3"])) == [b"1", b"2", b"3"])
    e = err(lambda: cl.channel.unary_unary("/weft.test.Echo/Nope")(b"", timeout=5))
    check(label + ": unknown method UNIMPLEMENTED", e and e.code() == grpc.StatusCode.UNIMPLEMENTED)
    if not python_server:
        return
    r, call = cl.unary(b"x", metadata=[("x-color", "red"), ("other", "no")], with_call=True)
    head = dict((m.key, m.value) for m in call.initial_metadata())
    trail = dict((m.key, m.value) for m in call.trailing_metadata())
    check(label + ": x- metadata echoed, others not, x-served-by",
          head.get("x-color") == "red" and "other" not in head and head.get("x-served-by") == "alpha",
          head)
    check(label + ": trailers x-method, x-peer, x-request-count",
          trail.get("x-method") == "/weft.test.Echo/Unary" and trail.get("x-peer", "").startswith("ipv4:127.0.0.1")
          and trail.get("x-request-count") == "1", trail)
    _, call = cl.client_stream([b"a"] * 5, with_call=True)
    check(label + ": client stream request count",
          dict((m.key, m.value) for m in call.trailing_metadata()).get("x-request-count") == "5")
    for kind, fn in (("unary", lambda md: cl.unary(b"x", md)),
                     ("server stream", lambda md: list(cl.server_stream(b"2,2", md))),
                     ("client stream", lambda md: cl.client_stream([b"x"], md)),
                     ("bidi", lambda md: list(cl.bidi([b"x"], md)))):
        e = err(lambda: fn([("x-fail-status", "UNAVAILABLE"), ("x-fail-message", "go away")]))
        check(label + ": %s fails with the status from metadata" % kind,
              e and e.code() == grpc.StatusCode.UNAVAILABLE and e.details() == "go away",
              e and (e.code(), e.details()))
    e = err(lambda: cl.unary(b"x", [("x-fail-status", "7")]))
    check(label + ": numeric x-fail-status", e and e.code() == grpc.StatusCode.PERMISSION_DENIED)
    t0 = time.time()
    cl.unary(b"x", [("x-delay-ms", "300")])
    check(label + ": x-delay-ms delays", time.time() - t0 >= 0.29)
    e = err(lambda: cl.unary(b"x", [("x-delay-ms", "2000")], timeout=0.3))
    check(label + ": delay past the deadline: DEADLINE_EXCEEDED",
          e and e.code() == grpc.StatusCode.DEADLINE_EXCEEDED)
    msgs = list(cl.server_stream(b"hi", [("x-count", "5")]))
    check(label + ": server stream x-count repeats", msgs == [b"hi"] * 5, msgs)


def main():
    srv = grpc_echo.EchoServer(name="alpha")
    cl = grpc_echo.EchoClient("127.0.0.1:%d" % srv.port)
    exercise(cl, "grpc_echo", True)
    lib = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib", "grpc_echo.py")
    r = subprocess.run([lib, "call", "127.0.0.1:%d" % srv.port, "Unary", "hey", "-m", "x-k=v"],
                       capture_output=True, text=True, timeout=20)
    check("command line call", "message: b'hey'" in r.stdout and "status: OK" in r.stdout and
          "header: x-k: v" in r.stdout, r.stdout + r.stderr)
    r = subprocess.run([lib, "call", "127.0.0.1:%d" % srv.port, "Bidi", "x", "-m", "x-fail-status=NOT_FOUND"],
                       capture_output=True, text=True, timeout=20)
    check("command line failure", "status: NOT_FOUND" in r.stdout, r.stdout + r.stderr)
    cl.close()
    srv.stop()

    p = subprocess.Popen([lib, "serve", "--name", "cli"], stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline().split()[-1])
    cl = grpc_echo.EchoClient("127.0.0.1:%d" % port)
    _, call = cl.unary(b"x", with_call=True)
    check("command line server", dict((m.key, m.value) for m in call.initial_metadata()).get(
        "x-served-by") == "cli")
    cl.close()
    p.terminate()
    p.wait(10)

    # the same client against the C server built on src/net/grpc_server
    ts = subprocess.Popen([os.path.join(weft.BIN, "weft-grpc-testsrv")], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    try:
        port = int(ts.stdout.readline().split()[-1])
        cl = grpc_echo.EchoClient("127.0.0.1:%d" % port)
        exercise(cl, "weft-grpc-testsrv", False)
        cl.close()
        ts.terminate()
        check("weft-grpc-testsrv exits 0", ts.wait(10) == 0)
        e = ts.stderr.read().decode(errors="replace")
        check("weft-grpc-testsrv: no sanitizer report", "Sanitizer" not in e and "runtime error" not in e, e)
    finally:
        if ts.poll() is None:
            ts.kill()
    finish()


if __name__ == "__main__":
    main()
