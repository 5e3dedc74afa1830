#!/usr/bin/env bash
# use_original_dst with an iptables REDIRECT rule inside a network namespace of our own:
# a client inside the namespace calls 10.99.0.2:80 and 10.99.0.3:7000; iptables redirects both
# to weft-proxy's 15001 listener; SO_ORIGINAL_DST hands the first to the bind_to_port:false
# listener for 0.0.0.0:80 (HTTP, as Istio's virtual listeners) and the second to a tcp_proxy
# filter chain matched on destination_port 7000. Anything else falls to a passthrough chain whose
# ORIGINAL_DST cluster connects to the address the client asked for (Istio's PassthroughCluster);
# the proxy runs as UID 1337 and, as with istio-iptables, its own traffic is not redirected.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${WEFT_BIN:-build/bin}
ns=weft-od-$$
pass=0; fail=0
check() { if eval "$2"; then echo "ok   $1"; pass=$((pass+1)); else echo "FAIL $1"; fail=$((fail+1)); fi; }
cleanup() {
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
  sleep 0.2
  ip netns del "$ns" 2>/dev/null
  rm -f "$cfg" "$log"
}
cfg=$(mktemp /tmp/weft-od.XXXXXX.yaml); log=$(mktemp)
trap cleanup EXIT
if [ "$(id -u)" -ne 0 ] || ! command -v iptables >/dev/null; then
  echo "needs root and iptables"; echo "0 passed, 1 failed"; exit 1
fi
ip netns add "$ns"
nsx() { ip netns exec "$ns" "$@"; }
nsx ip link set lo up
nsx ip addr add 10.99.0.2/32 dev lo
nsx ip addr add 10.99.0.3/32 dev lo
nsx ip addr add 10.99.0.4/32 dev lo
nsx iptables -t nat -A OUTPUT -p tcp -d 10.99.0.0/24 -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15001
# A host that never answers: its SYNs are dropped inside the namespace (connect_timeout test).
nsx ip addr add 10.99.1.1/32 dev lo
nsx iptables -A OUTPUT -p tcp -d 10.99.1.1 -j DROP

cat > "$cfg" <<'YAML'
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 15000}}}
static_resources:
  listeners:
  - name: virtualOutbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15001}}
    use_original_dst: true
    filter_chains:
    - filter_chain_match: {destination_port: 7000}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp7000
          cluster: backend
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: passthrough
          cluster: PassthroughCluster
  - name: 0.0.0.0_80
    address: {socket_address: {address: 0.0.0.0, port_value: 80}}
    bind_to_port: false
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: outbound_0.0.0.0_80
          http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [
              {match: {prefix: "/silent"}, route: {cluster: silent}},
              {match: {prefix: "/"}, route: {cluster: backend}}]}]
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18500}}}}]}]
  - name: silent
    connect_timeout: 0.25s
    type: STATIC
    load_assignment:
      cluster_name: silent
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.99.1.1, port_value: 80}}}}]}]
  - name: PassthroughCluster
    connect_timeout: 1s
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
YAML

nsx /usr/bin/python3 tests/e2e/lib/backend.py 18500 backend >/dev/null 2>&1 &
nsx /usr/bin/python3 tests/e2e/lib/backend.py 7001 external 10.99.0.4 >/dev/null 2>&1 &
chmod 644 "$cfg"
for _ in $(seq 100); do nsx curl -s -o /dev/null http://127.0.0.1:18500/ && break; sleep 0.05; done
for _ in $(seq 100); do nsx ss -ltn | grep -q '10.99.0.4:7001' && break; sleep 0.05; done
nsx setpriv --reuid=1337 --regid=1337 --clear-groups "$BIN/weft-proxy" -c "$cfg" --concurrency 1 >"$log" 2>&1 &
for _ in $(seq 100); do nsx curl -sf -o /dev/null http://127.0.0.1:15000/ready && break; sleep 0.05; done

out=$(nsx curl -s --max-time 5 http://10.99.0.2/hello)
check "HTTP to 10.99.0.2:80 reaches the backend through the port-80 listener" 'grep -qF "\"path\": \"/hello\"" <<<"$out"'
check "the backend saw Host 10.99.0.2" 'grep -qF "\"host\": \"10.99.0.2\"" <<<"$out"'
out=$(printf 'GET /tcp HTTP/1.0\r\n\r\n' | nsx timeout 5 /usr/bin/python3 -c '
import socket,sys
s=socket.create_connection(("10.99.0.3",7000)); s.sendall(sys.stdin.buffer.read()); d=b""
while True:
    c=s.recv(65536)
    if not c: break
    d+=c
print(d.decode(errors="replace"))')
check "TCP to 10.99.0.3:7000 goes through the destination_port 7000 chain" 'grep -qF "\"path\": \"/tcp\"" <<<"$out"'
start=$(date +%s%N)
out=$(nsx curl -s --max-time 5 -w ' %{http_code}' http://10.99.0.2/silent)
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "connect_timeout 0.25s to a silent host: 503 UF after ~250 ms ($ms ms)" 'grep -q "connection timeout 503$" <<<"$out" && [ "$ms" -ge 200 ] && [ "$ms" -lt 2000 ]'
out=$(nsx curl -s --max-time 5 http://10.99.0.4:7001/passthrough)
check "unknown destination passes through to the original destination" 'grep -qF "\"name\": \"external\"" <<<"$out"'
stats=$(nsx curl -s http://127.0.0.1:15000/stats)
check "http stats under the port-80 listener's prefix" 'grep -q "^http.outbound_0.0.0.0_80.downstream_rq_total: 2" <<<"$stats"'
check "tcp stats under the 7000 chain's prefix" 'grep -q "^tcp.tcp7000.downstream_cx_total: 1" <<<"$stats"'
check "connect timeout counted" 'grep -q "^cluster.silent.upstream_cx_connect_timeout: 1" <<<"$stats"'
check "passthrough counted on the ORIGINAL_DST cluster" 'grep -q "^cluster.PassthroughCluster.upstream_cx_total: 1" <<<"$stats"'
[ "$fail" -eq 0 ] || cat "$log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
