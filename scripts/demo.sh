#!/usr/bin/env bash
# `make demo`: the bookinfo mesh on this machine (weftctl mesh, as root). weftd and seven pods
# with sidecars come up; the client pod sends traffic to productpage (client sidecar ->
# productpage's sidecar -> productpage -> its sidecar -> reviews' sidecar -> reviews); while it
# flows, Istio's traffic-shifting rule (reviews 80% v1, 20% v2) and then its request-routing rule
# (end-user: jason to v2, everyone else v1) are applied. Prints, per rule, which reviews version
# each user's requests reached, and the failed requests (there should be none). The mesh stays up
# to explore; with DEMO_ONCE=1 it is taken down and the exit status says whether nothing failed.
# Env: MESH_ARGS (weftctl mesh options: --name, --subnet, --state-dir), PHASE_SECONDS (traffic
# counted per rule, default 5), RATE (requests/s, default 40).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WEFT_BIN:-build/bin}
PHASE_SECONDS=${PHASE_SECONDS:-5}
RATE=${RATE:-40}
if [ "$(id -u)" -ne 0 ]; then
  echo "make demo runs a mesh of network namespaces and iptables rules: run it as root (sudo make demo)."
  echo "make demo-proxy shows weft-proxy alone, without root."
  exit 1
fi
read -r -a margs <<<"${MESH_ARGS:-}"
mesh() { local verb=$1; shift; "$BIN/weftctl" mesh "$verb" "${margs[@]}" "$@"; }
show() { echo "  $BIN/weftctl mesh $1${MESH_ARGS:+ $MESH_ARGS}${2:+ $2}"; }
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
work=$(mktemp -d /tmp/weft-demo.XXXXXX)
traffic=
up=0
cleanup() {
  if [ -n "$traffic" ]; then kill "$traffic" 2>/dev/null || true; wait "$traffic" 2>/dev/null || true; fi
  if [ "$up" = 1 ] && [ -n "${DEMO_ONCE:-}" ]; then mesh down >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

say "1. weftctl mesh up: weftd and the bookinfo pods, each with weft-init's rules and a weft-proxy sidecar"
up=1
if ! mesh up -f samples/bookinfo/bookinfo.yaml samples/bookinfo/destination-rules.yaml \
    samples/bookinfo/virtual-service-all-v1.yaml >"$work/up.log" 2>&1; then
  sed 's/^/  /' "$work/up.log"
  grep -q "already up" "$work/up.log" && up=0 && echo "  (stop it first: $BIN/weftctl mesh down${MESH_ARGS:+ $MESH_ARGS})"
  exit 1
fi
grep -v -E ' (created|unchanged|configured)$' "$work/up.log" | sed 's/^/  /'

# Traffic from the client pod: requests take turns between no end-user header and end-user: jason.
mesh exec deploy/client -- /usr/bin/python3 scripts/mesh_traffic.py --user "" --user jason \
  --rate "$RATE" --stop-file "$work/stop" >"$work/traffic.txt" 2>"$work/traffic.err" &
traffic=$!
for _ in $(seq 100); do [ -s "$work/traffic.txt" ] && break; sleep 0.1; done

# table FROM TO: per user, the reviews versions reached by the requests sent in [FROM, TO).
table() {
  awk -v a="$1" -v b="$2" '
    $1 >= a && $1 < b { u = $2 == "-" ? "(none)" : $2; n[u, $4]++; if ($3 != 200) e[u]++; seen[u] = 1 }
    END {
      printf "  %-8s %10s %10s %10s %7s\n", "end-user", "reviews v1", "reviews v2", "reviews v3", "errors"
      split("(none) jason", us, " ")
      for (i = 1; i <= 2; i++) { u = us[i]; if (!seen[u]) continue
        printf "  %-8s %10d %10d %10d %7d\n", u, n[u, "v1"], n[u, "v2"], n[u, "v3"], e[u] }
    }' "$work/traffic.txt"
}
now() { date +%s.%N; }
# phase TITLE [FILE]: applies FILE (while the traffic flows), lets a second pass for the sidecars
# to get it, then counts PHASE_SECONDS of traffic.
phase() {
  say "$1"
  if [ -n "${2:-}" ]; then
    echo "  \$ weftctl mesh apply -f $2"
    mesh apply -f "$2" | sed 's/^/  /'
    sleep 1
  fi
  local from; from=$(now)
  sleep "$PHASE_SECONDS"
  table "$from" "$(now)"
}
phase "2. Traffic from the client pod, VirtualService reviews: all to v1 (samples/bookinfo/virtual-service-all-v1.yaml)"
phase "3. Traffic shifting: 80% to reviews v1, 20% to v2" samples/bookinfo/virtual-service-reviews-80-20.yaml
phase "4. Request routing: end-user: jason to reviews v2, everyone else to v1" \
  samples/bookinfo/virtual-service-reviews-jason-v2.yaml
touch "$work/stop"   # the request in flight finishes: the sidecars' counts below are settled
wait "$traffic" 2>/dev/null || true
traffic=
total=$(wc -l <"$work/traffic.txt")
errors=$(awk '$3 != 200' "$work/traffic.txt" | wc -l)
say "5. The whole run, rule changes included: $total requests, errors: $errors"
echo "  What productpage's sidecar counted (its admin endpoint, Envoy's stat names):"
mesh exec deploy/productpage-v1 -- curl -s 127.0.0.1:15000/stats |
  grep -E '^cluster\.outbound\|9080\|v[123]\|reviews\..*\.upstream_rq_(total|200):' | sed 's/^/    /'

if [ -n "${DEMO_ONCE:-}" ]; then
  say "6. weftctl mesh down"
  mesh down | sed 's/^/  /'
  up=0
  [ "$errors" -eq 0 ]
  exit
fi
say "The mesh is still up. Explore it:"
show status
show exec "deploy/client -- curl -s -H 'end-user: jason' http://productpage:9080/productpage"
show logs "deploy/reviews-v2 --proxy   # the sidecar's log"
show exec "deploy/reviews-v2 -- curl -s 127.0.0.1:15000/stats   # the sidecar's admin: /stats /clusters /config_dump"
show apply "-f samples/bookinfo/virtual-service-ratings-jason-fault.yaml"
weftd=$(awk '$1 == "weftd" {sub(/:.*/, "", $2); print $2}' "$work/up.log")
echo "  curl -s $weftd:15014/debug/syncz   # weftd (istiod's role): what each sidecar was sent and ACKed"
echo "Stop it:"
show down
