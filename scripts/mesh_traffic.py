#!/usr/bin/python3
"""Traffic for the bookinfo mesh, run inside a pod (weftctl mesh exec deploy/client -- ...).

GETs http://productpage:9080/productpage in a loop over one keep-alive connection (a new one
after an error), taking turns between the users given with --user ("" sends no end-user
header), at most --rate requests per second, for --seconds, until --stop-file exists (the
request in flight is finished first, so the sidecars' stats are settled), or until SIGTERM. One line per
request on stdout: unix time, user ("-" for none), HTTP status (0: no answer), and the version
of reviews that productpage's call reached ("-" when it has none)."""
import argparse
import http.client
import json
import os
import signal
import sys
import time


def reviews_version(body):
    try:
        calls = json.loads(body).get("calls", [])
        return [c["body"]["version"] for c in calls if c["url"].startswith("http://reviews")][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="productpage")
    ap.add_argument("--port", type=int, default=9080)
    ap.add_argument("--path", default="/productpage")
    ap.add_argument("--user", action="append", default=None)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--stop-file")
    a = ap.parse_args()
    users = a.user or [""]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    conn, n = None, 0
    start = time.monotonic()
    while time.monotonic() - start < a.seconds and not (a.stop_file and os.path.exists(a.stop_file)):
        user = users[n % len(users)]
        n += 1
        status, version = 0, "-"
        try:
            if conn is None:
                conn = http.client.HTTPConnection(a.host, a.port, timeout=5)
            conn.request("GET", a.path, headers={"end-user": user} if user else {})
            r = conn.getresponse()
            body = r.read()
            status, version = r.status, reviews_version(body)
        except (OSError, http.client.HTTPException):
            if conn:
                conn.close()
            conn = None
        print("%.3f %s %d %s" % (time.time(), user or "-", status, version), flush=True)
        wait = start + n / a.rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)


if __name__ == "__main__":
    main()
