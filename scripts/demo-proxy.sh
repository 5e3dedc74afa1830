#!/usr/bin/env bash
# `make demo-proxy`: weft-proxy alone (no root needed), configured with an unchanged Envoy
# bootstrap, routes between two backends (reviews v1 and v2). Prints what happened.
# `make demo` (scripts/demo.sh) is the whole mesh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WEFT_BIN:-build/bin}
log=$(mktemp /tmp/weft-demo.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT

for v in 1 2; do
  /usr/bin/python3 tests/e2e/lib/backend.py "1908$v" "reviews-v$v" >/dev/null & pids+=($!)
done
"$BIN/weft-proxy" -c samples/demo/bootstrap.yaml --concurrency 2 >"$log" 2>&1 & pids+=($!)
for port in 19081 19082; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
done
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:15000/ready && break; sleep 0.05; done

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
say "weft-proxy is running samples/demo/bootstrap.yaml (an Envoy v3 bootstrap) on :10000, admin on :15000"
say "1. 20 requests without a user: split 80/20 between reviews-v1 and reviews-v2"
for _ in $(seq 20); do curl -s http://127.0.0.1:10000/reviews | python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])'; done | sort | uniq -c
say "2. 5 requests as end-user: jason: always reviews-v2"
for _ in $(seq 5); do curl -s -H 'end-user: jason' http://127.0.0.1:10000/reviews | python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])'; done | sort | uniq -c
say "3. What the backend saw (headers added by the proxy)"
curl -s http://127.0.0.1:10000/reviews | python3 -c 'import json,sys; h=json.load(sys.stdin)["headers"]; [print("  %s: %s" % (k, h[k])) for k in sorted(h) if k.startswith("x-")]'
say "4. Stats from the admin endpoint (Envoy's names)"
curl -s http://127.0.0.1:15000/stats | grep -E '^(cluster\.reviews-v[12]\.upstream_rq_(total|200)|http\.ingress\.downstream_rq_(total|2xx))'
say "5. The access log (Envoy's default format)"
sleep 0.2
grep '^\[' "$log" | tail -3
say "Done. Try it yourself: build/bin/weft-proxy -c samples/demo/bootstrap.yaml"
