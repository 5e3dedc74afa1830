#!/usr/bin/env bash
# `weftctl mesh` end to end on samples/bookinfo: up brings weftd and seven pods (network
# namespaces on a bridge, weft-init + weft-proxy sidecars) up; a call from the client pod to
# productpage crosses the client's sidecar (outbound capture), productpage's sidecar (inbound
# capture on 15006, then 127.0.0.6 to the app), and productpage's own calls to details and
# reviews cross the sidecars again. `mesh apply` of a VirtualService takes effect without a
# restart, within a second and without a failed request while a client loop runs. A pod without
# a sidecar is reachable from meshed pods and calls services by their VIP (weftctl's DNAT rules);
# excluded ports (traffic.sidecar.istio.io/exclude*Ports) bypass the sidecars (their stats show
# it). `mesh down` leaves no namespace, link or iptables rule behind, and `mesh up` on a subnet
# another interface already holds fails with one line.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${WEFT_BIN:-build/bin}
. tests/e2e/lib/mesh.sh
work=$(mktemp -d /tmp/weft-wmt.XXXXXX)
chmod 755 "$work"   # the sidecars run as UID 1337 and read their bootstrap from the state dir
name=wmt$(($$ % 100000))   # --name: at most 8 characters
# The mesh options go right after the verb (for exec, everything after -- is the command).
ctl() { local verb=$1; shift; timeout 60 "$BIN/weftctl" mesh "$verb" --name "$name" --state-dir "$work/state" --subnet 10.245.0.0/16 "$@"; }
taken=$name-tk   # an interface holding the mesh's bridge address (the last check)
cleanup() {
  ctl down >/dev/null 2>&1
  ip link del "$taken" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
snapshot() { mesh_snapshot "$name"; }
before=$(snapshot)

ctl up -f samples/bookinfo/bookinfo.yaml samples/bookinfo/destination-rules.yaml \
  samples/bookinfo/virtual-service-all-v1.yaml tests/data/mesh/extras.yaml >"$work/up.log" 2>&1
rc=$?
check "mesh up returns 0 once every pod is ready" '[ "$rc" -eq 0 ]'
ctl status >"$work/status.txt" 2>&1
check "mesh status: 8 pods 2/2 ready, sidecars SYNCED" '[ "$(grep -c " 2/2 .*SYNCED" "$work/status.txt")" -eq 8 ]'
check "mesh status: the inject: \"false\" pod runs without a sidecar (1/1)" \
  '[ "$(grep -c "^plain-.* 1/1  *no " "$work/status.txt")" -eq 1 ]'

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
# Inbound clusters are ORIGINAL_DST: their connections to the app are pooled per address, as
# Envoy's, so 21 sequential calls do not open 21 connections.
check "the inbound cluster reuses its connections to the app (upstream_cx_total < 5)" \
  '[ "$(stat "$pp" "cluster.inbound|9080||.upstream_cx_total")" -lt 5 ]'
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

# A VirtualService applied while a client loop runs: in effect within a second, nothing fails.
ctl exec deploy/client -- /usr/bin/python3 scripts/mesh_traffic.py --rate 100 --seconds 60 --stop-file "$work/stop" >"$work/loop.txt" 2>&1 &
loop=$!
lines_since() { awk -v t="$1" '$1 >= t' "$work/loop.txt" | wc -l; }
for _ in $(seq 200); do [ "$(lines_since 0)" -ge 30 ] && break; sleep 0.05; done
t0=$(date +%s.%N)
ctl apply -f tests/data/mesh/virtual-service-reviews-v3.yaml >>"$work/apply.log" 2>&1
for _ in $(seq 200); do [ "$(lines_since "$t0")" -ge 150 ] && break; sleep 0.05; done
touch "$work/stop"; wait "$loop"
# first-v3 delay, requests before and after, and what went wrong (nothing, when all is well)
read -r delay nbefore nafter bad <<<"$(awk -v t0="$t0" '
  $3 != 200 {bad++}
  first == "" && $4 == "v3" {first = $1}
  first == "" && $1 < t0 {nb++; if ($4 != "v1") bad++}
  first != "" {na++; if ($4 != "v3") bad++}
  END {printf "%.3f %d %d %d\n", first == "" ? 99 : first - t0, nb, na, bad}' "$work/loop.txt")"
echo "     apply -> first request on v3: ${delay} s ($nbefore requests before, $nafter after)"
check "mesh apply under a 100 requests/s loop: every request on v3 within 1 s" \
  '[ "$nbefore" -ge 30 ] && [ "$nafter" -ge 100 ] && awk -v d="$delay" "BEGIN {exit !(d <= 1.0)}"'
check "mesh apply under the loop: zero failed requests, v1 before, v3 only after the switch" '[ "$bad" -eq 0 ]'

# A pod without a sidecar: reachable from meshed pods, and it calls services by their VIP.
code() { ctl exec "$1" -- curl -s -m 5 -o /dev/null -w '%{http_code}' "$2"; }
check "a meshed pod reaches the sidecar-less pod by its service name" \
  '[ "$(ctl exec deploy/client -- curl -s -m 5 http://plain:9080/ | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)[\"service\"])")" = plain ]'
pp_in=$(stat "$pp" "cluster.inbound|9080||.upstream_rq_total")
out=$(ctl exec deploy/plain -- curl -s -m 5 http://productpage:9080/productpage)
check "the sidecar-less pod calls productpage by name (VIP DNAT): productpage, details and reviews 200" \
  '/usr/bin/python3 -c "import json,sys; j=json.loads(sys.argv[1]); assert j[\"service\"]==\"productpage\" and [c[\"status\"] for c in j[\"calls\"]]==[200,200]" "$out"'
check "... and productpage's sidecar served that call inbound" \
  '[ "$(stat "$pp" "cluster.inbound|9080||.upstream_rq_total")" -eq "$((pp_in + 1))" ]'

# Excluded ports: 9081 bypasses bypass's sidecar outbound and inbound; 9080 is the control.
by=$(awk '/^bypass-/ {print $1}' "$work/status.txt")
c80=$(code deploy/bypass http://plain:9080/); c81=$(code deploy/bypass http://plain:9081/)
check "excludeOutboundPorts 9081: the call is answered, bypass's sidecar never saw it (9080 it did)" \
  '[ "$c80$c81" = 200200 ] && [ "$(stat "$by" "cluster.outbound|9081||plain.default.svc.cluster.local.upstream_rq_total")" -eq 0 ] &&
   [ "$(stat "$by" "cluster.outbound|9080||plain.default.svc.cluster.local.upstream_rq_total")" -eq 1 ]'
c80=$(code deploy/client http://bypass:9080/); c81=$(code deploy/client http://bypass:9081/)
check "excludeInboundPorts 9081: the client's sidecar sent it, bypass's sidecar never saw it (9080 it did)" \
  '[ "$c80$c81" = 200200 ] && [ "$(stat "$cl" "cluster.outbound|9081||bypass.default.svc.cluster.local.upstream_rq_total")" -eq 1 ] &&
   [ "$(stat "$by" "cluster.inbound|9081||.upstream_rq_total")" -eq 0 ] && [ "$(stat "$by" "cluster.inbound|9080||.upstream_rq_total")" -eq 1 ]'

# A crash: the supervisor dies with everything it started still around. The next up cleans
# the leftovers (the pods' veth pairs too, which the kernel removes only later with their
# namespaces) and brings the mesh up again.
kill -9 "$(cat "$work/state/supervisor.pid")"
sleep 0.3
ctl up -f samples/bookinfo/bookinfo.yaml samples/bookinfo/destination-rules.yaml \
  samples/bookinfo/virtual-service-all-v1.yaml tests/data/mesh/extras.yaml >"$work/up2.log" 2>&1
rc=$?
check "mesh up after a crash cleans the leftovers and succeeds" \
  '[ "$rc" -eq 0 ] && grep -q "^removed [0-9]* leftovers" "$work/up2.log" && [ "$(ctl status | grep -c " 2/2 .*SYNCED")" -ge 7 ]'

ctl down >"$work/down.log" 2>&1
rc=$?
after=$(snapshot)
check "mesh down returns 0 and says what it removed" '[ "$rc" -eq 0 ] && grep -q "^mesh down: 9 pods" "$work/down.log"'
check "mesh down leaves no namespace, link or iptables rule of the mesh" '[ "$before" = "$after" ] && [ -z "$after" ]'
check "a second mesh down is harmless" 'ctl down >/dev/null 2>&1'

# The bridge address already on another interface (e.g. the bridge of a killed mesh of another
# --name): one clear line, nothing created.
ip link add "$taken" type bridge && ip addr add 10.245.0.1/16 dev "$taken"
ctl up -f samples/bookinfo/bookinfo.yaml >"$work/taken.log" 2>&1
rc=$?
check "mesh up on a subnet in use fails with one line naming the interface" \
  '[ "$rc" -eq 1 ] && [ "$(wc -l <"$work/taken.log")" -eq 1 ] && grep -q "already in use.* on $taken " "$work/taken.log"'
check "... and creates nothing" '[ -z "$(ip netns list | grep "$name")" ] && [ ! -e "$work/state/ctl.sock" ]'
ip link del "$taken"
if [ "$fail" -ne 0 ]; then
  echo "--- up"; tail -20 "$work/up.log"; echo "--- status"; cat "$work/status.txt"
  echo "--- after down"; echo "$after"; echo "--- taken"; cat "$work/taken.log"
fi
finish
