#!/usr/bin/env bash
# The control plane and the data plane together, as in a pod: weftd serves the bookinfo sample
# (Istio YAML) over ADS; weft-proxy, configured only by a dynamic bootstrap naming the
# productpage pod, gets its listeners, routes, clusters and endpoints from weftd; weft-init
# installs istio-iptables' rules; an app (curl, not UID 1337) calls the reviews Service VIP and
# is transparently captured. Two network namespaces: the pod (10.1.0.10) and a "node" holding
# the other workloads (reviews v1/v2/v3 at 10.1.0.21-23) behind a veth.
# Checks: the config is ACKed (no NACK), calls reach reviews through the sidecar, the
# VirtualService 80/20 split holds, a file change (all to v2) takes effect without restarting
# anything, and the proxy's stats name Istio's clusters.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${WEFT_BIN:-build/bin}
pod=weft-mesh-pod-$$ node=weft-mesh-node-$$
pass=0; fail=0
check() { if eval "$2"; then echo "ok   $1"; pass=$((pass+1)); else echo "FAIL $1"; fail=$((fail+1)); fi; }
work=$(mktemp -d /tmp/weft-mesh.XXXXXX)
cleanup() {
  for ns in "$pod" "$node"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
  done
  sleep 0.3
  for ns in "$pod" "$node"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "/etc/netns/$pod"
  [ -n "${KEEP_WORK:-}" ] && cp -r "$work" /tmp/mesh-keep; rm -rf "$work"
}
trap cleanup EXIT
if [ "$(id -u)" -ne 0 ] || ! command -v iptables >/dev/null; then
  echo "needs root and iptables"; echo "0 passed, 1 failed"; exit 1
fi
chmod 755 "$work"

ip netns add "$pod"; ip netns add "$node"
inpod() { ip netns exec "$pod" "$@"; }
innode() { ip netns exec "$node" "$@"; }
ip link add "wm$$a" type veth peer name "wm$$b"
ip link set "wm$$a" netns "$pod"; ip link set "wm$$b" netns "$node"
inpod ip link set lo up; innode ip link set lo up
inpod ip addr add 10.1.0.10/16 dev "wm$$a"; inpod ip link set "wm$$a" up
inpod ip route add default dev "wm$$a"   # Service VIPs (10.96.0.0/16) leave through the veth
innode ip addr add 10.1.0.1/16 dev "wm$$b"
for a in 21 22 23; do innode ip addr add "10.1.0.$a/16" dev "wm$$b"; done
innode ip link set "wm$$b" up
# A resolver that never answers (as on a CI machine without DNS): bookinfo's ServiceEntry for
# httpbin.org is a DNS cluster, and resolving it must never hold a config update back.
innode ip addr add 10.1.0.53/16 dev "wm$$b"
innode iptables -A INPUT -d 10.1.0.53 -p udp --dport 53 -j DROP
innode iptables -A INPUT -d 10.1.0.53 -p tcp --dport 53 -j DROP
mkdir -p "/etc/netns/$pod" && echo "nameserver 10.1.0.53" >"/etc/netns/$pod/resolv.conf"

# The workloads: reviews v1, v2, v3 on their WorkloadEntry addresses.
for v in 1 2 3; do
  innode /usr/bin/python3 tests/e2e/lib/backend.py 9080 "reviews-v$v" "10.1.0.2$v" >/dev/null 2>&1 &
done

# weftd on the bookinfo sample plus the 80/20 task, inside the pod (127.0.0.1 is never captured).
mkdir -p "$work/config"
cp samples/bookinfo-istio/*.yaml "$work/config/"
cp samples/bookinfo-istio-tasks/virtual-service-reviews-80-20.yaml "$work/config/vs-reviews.yaml"
inpod "$BIN/weftd" --config-dir "$work/config" --grpc-addr 127.0.0.1:15010 --debug-addr 127.0.0.1:15014 \
  >"$work/weftd.log" 2>&1 &

cat >"$work/bootstrap.yaml" <<'CONF'
node:
  id: sidecar~10.1.0.10~productpage-v1-abc.default~default.svc.cluster.local
  cluster: productpage.default
  metadata: {NAMESPACE: default, SERVICE_ACCOUNT: bookinfo-productpage, LABELS: {app: productpage, version: v1}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 15010}}}}]}]
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 15000}}
CONF
chmod 644 "$work/bootstrap.yaml"
for _ in $(seq 100); do inpod curl -sf -o /dev/null http://127.0.0.1:15014/metrics && break; sleep 0.1; done
inpod "$BIN/weft-init" >"$work/init.log" 2>&1
check "weft-init installed the rules" 'inpod iptables-save -t nat | grep -q "^-A ISTIO_OUTPUT"'
inpod setpriv --reuid=1337 --regid=1337 --clear-groups "$BIN/weft-proxy" -c "$work/bootstrap.yaml" \
  --concurrency 1 >"$work/proxy.log" 2>&1 &

stat() { inpod curl -s --max-time 2 "http://127.0.0.1:15000/stats" | awk -v k="$1:" '$1 == k {print $2}'; }
for _ in $(seq 300); do [ "$(stat listener_manager.lds.update_success)" = 1 ] && [ "$(stat http.rds.update_success)" -ge 1 ] 2>/dev/null && break; sleep 0.1; done
check "sidecar ACKed CDS, LDS and RDS from weftd" '[ "$(stat cluster_manager.cds.update_success)" -ge 1 ] && [ "$(stat listener_manager.lds.update_success)" -ge 1 ] && [ "$(stat http.rds.update_success)" -ge 1 ]'
check "nothing NACKed" '[ "$(stat cluster_manager.cds.update_rejected)" = 0 ] && [ "$(stat listener_manager.lds.update_rejected)" = 0 ] && [ "$(stat http.rds.update_rejected)" = 0 ]'
check "weftd counts no rejects" '! inpod curl -s http://127.0.0.1:15014/metrics | grep -q "^pilot_total_xds_rejects [1-9]"'

# The app calls reviews by its VIP as UID 1000: captured to 15001, routed by the VirtualService.
call() { inpod setpriv --reuid=1000 --regid=1000 --clear-groups curl -s --max-time 3 -H "Host: reviews:9080" "http://10.96.0.12:9080/reviews" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])' 2>/dev/null; }
first=$(call)
check "the app reaches reviews through the sidecar (got '$first')" '[[ "$first" == reviews-v* ]]'
for _ in $(seq 200); do call; done >"$work/split.txt"
v1=$(grep -c '^reviews-v1$' "$work/split.txt"); v2=$(grep -c '^reviews-v2$' "$work/split.txt"); v3=$(grep -c '^reviews-v3$' "$work/split.txt")
echo "     200 calls: v1=$v1 v2=$v2 v3=$v3"
check "VirtualService 80/20 split between v1 and v2 (never v3)" '[ $((v1 + v2)) -eq 200 ] && [ "$v1" -ge 140 ] && [ "$v1" -le 185 ] && [ "$v3" -eq 0 ]'
check "the sidecar counted them on Istio's subset cluster" '[ "$(stat "cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_total")" -ge 140 ]'

# Change the VirtualService: all traffic to v2, picked up by weftd and pushed; nothing restarts.
cat >"$work/config/vs-reviews.yaml" <<'CONF'
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v2}}]
CONF
changed=$(date +%s%N)
ok=0
for _ in $(seq 50); do [ "$(call)" = reviews-v2 ] && ok=$((ok + 1)) || ok=0; [ "$ok" -ge 5 ] && break; sleep 0.1; done
took_ms=$((($(date +%s%N) - changed) / 1000000))
echo "     the change reached the app within ${took_ms} ms (5 calls in a row on v2)"
check "the change applied in under 3 s, though DNS never answers" '[ "$took_ms" -lt 3000 ]'
for _ in $(seq 20); do call; done >"$work/after.txt"
check "after the file change every call goes to v2" '[ "$(grep -c "^reviews-v2$" "$work/after.txt")" -eq 20 ]'
check "the update was an RDS push, ACKed" '[ "$(stat http.rds.update_success)" -ge 2 ] && [ "$(stat http.rds.update_rejected)" = 0 ]'
check "weft-proxy and weftd are still running" 'inpod pgrep -f "weft-proxy -c $work" >/dev/null && inpod pgrep -f "weftd --config-dir $work" >/dev/null'
if [ "$fail" -ne 0 ]; then
  echo "--- weftd log"; tail -20 "$work/weftd.log"; echo "--- proxy log"; tail -20 "$work/proxy.log"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
