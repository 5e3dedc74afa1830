#!/usr/bin/env bash
# `make demo` end to end: scripts/demo.sh with DEMO_ONCE=1, on a mesh of its own name and
# subnet, brings bookinfo up, sends traffic from the client pod, applies the 80/20 split and then
# the end-user: jason rule while it flows, prints the reviews versions reached per rule and the
# errors, and takes the mesh down. Checks the printed counts, zero errors, and that nothing of
# the mesh is left behind.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/e2e/lib/mesh.sh
work=$(mktemp -d /tmp/weft-demo-test.XXXXXX)
chmod 755 "$work"   # the sidecars run as UID 1337 and read their bootstrap from the state dir
name=wmd$(($$ % 100000))
args="--name $name --state-dir $work/state --subnet 10.243.0.0/16"
cleanup() { "${WEFT_BIN:-build/bin}/weftctl" mesh down $args >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
before=$(mesh_snapshot "$name")

DEMO_ONCE=1 MESH_ARGS="$args" PHASE_SECONDS=${PHASE_SECONDS:-4} timeout 240 scripts/demo.sh >"$work/out.txt" 2>&1
rc=$?
sed 's/\x1b\[[0-9;]*m//g' "$work/out.txt" >"$work/demo.txt"
check "DEMO_ONCE=1 scripts/demo.sh exits 0" '[ "$rc" -eq 0 ]'
check "mesh up shows 7 pods 2/2 SYNCED" '[ "$(grep -c " 2/2 .*SYNCED" "$work/demo.txt")" -eq 7 ]'
# counts STEP USER: "v1 v2 v3 errors" from the table printed under the heading "STEP. ".
counts() { awk -v s="$1." -v u="$2" '$1 == s {on = 1; next} /^[0-9]\. / {on = 0} on && $1 == u {print $2, $3, $4, $5}' "$work/demo.txt"; }
only() { # only STEP USER VERSION: every request of USER in STEP reached VERSION (and some did)
  read -r v1 v2 v3 e <<<"$(counts "$1" "$2")"
  case $3 in v1) [ "${v1:-0}" -gt 0 ] && [ "$v2" -eq 0 ] && [ "$v3" -eq 0 ] && [ "$e" -eq 0 ];;
             v2) [ "${v2:-0}" -gt 0 ] && [ "$v1" -eq 0 ] && [ "$v3" -eq 0 ] && [ "$e" -eq 0 ];; esac
}
split() { read -r v1 v2 v3 e <<<"$(counts 3 "$1")"; [ "${v2:-0}" -gt 0 ] && [ "$v1" -gt "$v2" ] && [ "$v3" -eq 0 ] && [ "$e" -eq 0 ]; }
check "all-v1: every request reaches reviews v1" 'only 2 "(none)" v1 && only 2 jason v1'
check "80/20: v1 and v2 both reached, v1 more often, never v3" 'split "(none)" && split jason'
check "jason rule: jason always reaches v2" 'only 4 jason v2'
check "jason rule: everyone else stays on v1" 'only 4 "(none)" v1'
check "the whole run, rule changes included: errors: 0" 'grep -q "requests, errors: 0$" "$work/demo.txt"'
check "productpage's sidecar stats are shown" 'grep -q "outbound|9080|v2|reviews.default.svc.cluster.local.upstream_rq_200" "$work/demo.txt"'
check "the demo took the mesh down" 'grep -q "mesh down: 7 pods" "$work/demo.txt"'
after=$(mesh_snapshot "$name")
check "nothing of the mesh is left (namespaces, links, iptables, state dir)" \
  '[ -z "$after" ] && [ "$before" = "$after" ] && [ ! -e "$work/state" ]'
[ "$fail" -eq 0 ] || cat "$work/demo.txt"
finish
