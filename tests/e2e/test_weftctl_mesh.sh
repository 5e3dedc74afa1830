#!/usr/bin/env bash
# `weftctl mesh` end to end on samples/bookinfo: up brings weftd and seven pods (network
# namespaces on a bridge, weft-init + weft-proxy sidecars) up; a call from the client pod to
# productpage crosses the client's sidecar (outbound capture), productpage's sidecar (inbound
# capture on 15006, then 127.0.0.6 to the app), and productpage's own calls to details and
# reviews cross the sidecars again. `mesh apply` of a VirtualService takes effect without a
# restart; `mesh down` leaves no namespace, link or iptables rule behind.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${WEFT_BIN:-build/bin}
pass=0; fail=0
check() { if eval "$2"; then echo "ok   $1"; pass=$((pass+1)); else echo "FAIL $1"; fail=$((fail+1)); fi; }
if [ "$(id -u)" -ne 0 ] || ! command -v iptables >/dev/null; then
  echo "needs root and iptables"; echo "0 passed, 1 failed"; exit 1
fi
work=$(mktemp -d /tmp/weft-wmt.XXXXXX)
chmod 755 "$work"   # the sidecars run as UID 1337 and read their bootstrap from the state dir
name=wmt$(($$ % 100000))   # --name: at most 8 characters
# The mesh options go right after the verb (for exec, everything after -- is the command).
ctl() { local verb=$1; shift; timeout 60 "$BIN/weftctl" mesh "$verb" --name "$name" --state-dir "$work/state" --subnet 10.245.0.0/16 "$@"; }
cleanup() {
  ctl down >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
snapshot() { { ip netns list; ip -o link show; iptables-save | grep -v '^#'; } | grep "$name" | sed 's/[0-9]\+: //' | sort; }
before=$(snapshot)

ctl up -f samples/bookinfo/bookinfo.yaml samples/bookinfo/destination-rules.yaml \
  samples/bookinfo/virtual-service-all-v1.yaml >"$work/up.log" 2>&1
rc=$?
check "mesh up returns 0 once every pod is ready" '[ "$rc" -eq 0 ]'
ctl status >"$work/status.txt" 2>&1
check "mesh status: 7 pods 2/2 ready, sidecars SYNCED" '[ "$(grep -c " 2/2 .*SYNCED" "$work/status.txt")" -eq 7 ]'

call() { ctl exec deploy/client -- curl -s -m 5 "$@" http://productpage:9080/productpage; }
reviews_version() { /usr/bin/python3 -c '
import json, sys
try:
    j = json.load(sys.stdin)
    print([c["body"]["version"] for c in j["calls"] if c["url"].startswith("http://reviews")][0])
except Exception:
    print("error")'; }
out=$(call)
check "client -> productpage -> details and reviews, all 200" \
  '/usr/bin/python3 -c "import json,sys; j=json.loads(sys.argv[1]); assert j[\"service\"]==\"productpage\" and [c[\"status\"] for c in j[\"calls\"]]==[200,200]" "$out"'
for _ in $(seq 20); do call | reviews_version; done >"$work/v1.txt"
check "VirtualService all-v1: 20 of 20 calls reach reviews v1" '[ "$(grep -c "^v1$" "$work/v1.txt")" -eq 20 ]'

stat() { ctl exec "$1" -- curl -s "127.0.0.1:15000/stats" | awk -v k="$2" -F': ' '$1 == k {print $2}'; }
pp=$(awk '/^productpage-v1/ {print $1}' "$work/status.txt")
cl=$(awk '/^client/ {print $1}' "$work/status.txt")
check "the client's sidecar captured the outbound calls (outbound|9080||productpage)" \
  '[ "$(stat "$cl" "cluster.outbound|9080||productpage.default.svc.cluster.local.upstream_rq_total")" -ge 21 ]'
check "productpage's sidecar captured them inbound (inbound|9080||)" \
  '[ "$(stat "$pp" "cluster.inbound|9080||.upstream_rq_total")" -ge 21 ]'
check "productpage's sidecar routed its own calls to the v1 subset" \
  '[ "$(stat "$pp" "cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_total")" -ge 21 ]'

ctl apply -f samples/bookinfo/virtual-service-reviews-jason-v2.yaml >"$work/apply.log" 2>&1
rc=$?
check "mesh apply of a VirtualService returns 0" '[ "$rc" -eq 0 ]'
ok=0
for _ in $(seq 50); do [ "$(call -H 'end-user: jason' | reviews_version)" = v2 ] && ok=$((ok + 1)) || ok=0; [ "$ok" -ge 3 ] && break; sleep 0.1; done
for _ in $(seq 10); do call -H 'end-user: jason' | reviews_version; done >"$work/jason.txt"
for _ in $(seq 10); do call | reviews_version; done >"$work/other.txt"
check "after apply, end-user: jason reaches reviews v2 (10 of 10)" '[ "$(grep -c "^v2$" "$work/jason.txt")" -eq 10 ]'
check "after apply, other users stay on v1 (10 of 10)" '[ "$(grep -c "^v1$" "$work/other.txt")" -eq 10 ]'

ctl down >"$work/down.log" 2>&1
rc=$?
after=$(snapshot)
check "mesh down returns 0" '[ "$rc" -eq 0 ]'
check "mesh down leaves no namespace, link or iptables rule of the mesh" '[ "$before" = "$after" ] && [ -z "$after" ]'
check "a second mesh down is harmless" 'ctl down >/dev/null 2>&1'
if [ "$fail" -ne 0 ]; then
  echo "--- up"; tail -20 "$work/up.log"; echo "--- status"; cat "$work/status.txt"
  echo "--- after down"; echo "$after"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
