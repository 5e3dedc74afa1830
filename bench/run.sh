#!/usr/bin/env bash
# Benchmarks weft-proxy against HAProxy and nginx in one run, on this machine, through the same
# nginx backend serving a 1 KiB response: HTTP/1.1 keep-alive, 16 connections, one proxy worker
# each, wrk with one thread. Writes bench/RESULTS.md (ratios to HAProxy).
# Each proxy is measured ROUNDS times, interleaved, and the median round (by requests/s) is
# reported: on a 2-core machine shared by wrk, the backend and the proxy, single runs are noisy.
# Then runs bench/h2.sh, bench/tls.sh and bench/retry_fault.sh, which append their sections.
# Env: DURATION (s, default 10), CONNS (default 16), ROUNDS (default 3), also passed to those;
# H1_ONLY=1 stops after the HTTP/1.1 table; XDS=0 leaves out bench/xds.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WEFT_BIN:-build/bin}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
ROUNDS=${ROUNDS:-3}
. bench/lib.sh
bench_init h1

BACKEND=18080 WEFT=18081 HAPROXY=18082 NGINX=18083 ADMIN=18090

# nginx as the shared backend (2 workers so it is never the bottleneck of one proxy worker).
start_backend $BACKEND

cat > "$work/weft.yaml" <<CONF
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN}}}
static_resources:
  listeners:
  - name: bench
    address: {socket_address: {address: 127.0.0.1, port_value: $WEFT}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: backend}}]}]
$(backend_cluster $BACKEND)
CONF
"$BIN/weft-proxy" -c "$work/weft.yaml" --concurrency 1 -l warning & pids+=($!); weft_pid=$!

cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend f
  bind 127.0.0.1:$HAPROXY
  default_backend b
backend b
  server s1 127.0.0.1:$BACKEND
CONF
haproxy -f "$work/haproxy.cfg" -db & pids+=($!); haproxy_pid=$!

cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; master_process off; pid $work/np/pid; error_log $work/np/err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream b { server 127.0.0.1:$BACKEND; keepalive 64; }
  server { listen 127.0.0.1:$NGINX; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
nginx -p "$work/np" -c "$work/nginx.conf" & pids+=($!); nginx_pid=$!

for port in $BACKEND $WEFT $HAPROXY $NGINX; do need_1k "http://127.0.0.1:$port/"; done
idle_weft=$(rss $weft_pid); idle_haproxy=$(rss $haproxy_pid); idle_nginx=$(rss $nginx_pid)

declare -A RPS P50 P99 RSS CPU
rounds=$(mktemp)
# CPU time (user+system, in clock ticks) a process has used: a steadier measure than req/s.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # name port pid
  local before; before=$(cpu_ticks "$3")
  local out; out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$2/")
  local after; after=$(cpu_ticks "$3")
  local rps p50 p99 reqs cpu
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  echo "$1 $rps $p50 $p99 $(rss "$3") $cpu" >> "$rounds"
  echo "$1: $rps req/s, p50 $p50, p99 $p99, $cpu CPU us/request"
}
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  run haproxy $HAPROXY $haproxy_pid
  run weft $WEFT $weft_pid
  run nginx $NGINX $nginx_pid
done
for p in weft haproxy nginx; do
  # The median round by requests/s; its latencies and RSS go with it.
  read -r _ RPS[$p] P50[$p] P99[$p] RSS[$p] CPU[$p] < <(median_round "$p" "$rounds")
done
rm -f "$rounds"

{
  echo "# Benchmarks"
  echo
  echo "Measured by \`make bench\` (bench/run.sh) on $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r)."
  echo "HTTP/1.1 keep-alive through each proxy to one nginx backend serving 1 KiB; wrk -t1 -c$CONNS -d${DURATION}s,"
  echo "$ROUNDS interleaved rounds per proxy, the median round (by requests/s) reported;"
  echo "one worker per proxy (weft-proxy --concurrency 1, haproxy nbthread 1, nginx worker_processes 1)."
  echo "Ratios are to HAProxy in the same run (requests/s: higher is better; latency and RSS: lower is better)."
  echo
  echo "CPU us/request is the proxy's own user+system time during the run divided by the requests."
  echo
  echo "| proxy | requests/s | ratio | p50 | p99 | p99 ratio | CPU us/request | CPU ratio | idle RSS KiB | loaded RSS KiB |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for p in weft haproxy nginx; do
    idle_var="idle_$p"
    echo "| $p | ${RPS[$p]} | $(ratio "${RPS[$p]}" "${RPS[haproxy]}") | ${P50[$p]} | ${P99[$p]} | $(ratio "$(to_us "${P99[$p]}")" "$(to_us "${P99[haproxy]}")") | ${CPU[$p]} | $(ratio "${CPU[$p]}" "${CPU[haproxy]}") | ${!idle_var} | ${RSS[$p]} |"
  done
  # The other sections (HTTP/2, TLS, weftd) are kept: their own scripts replace them.
  if [ -f bench/RESULTS.md ] && grep -q '^## ' bench/RESULTS.md; then
    echo
    awk '/^## /{p=1} p' bench/RESULTS.md
  fi
} > bench/RESULTS.md.new
mv bench/RESULTS.md.new bench/RESULTS.md

# HTTP/2 (h2load) and TLS (handshakes, resumed mTLS) through the same three proxies, with this
# run's processes stopped first: each script appends its own section to RESULTS.md.
cleanup
trap - EXIT
if [ -n "${H1_ONLY:-}" ]; then cat bench/RESULTS.md; exit 0; fi
export DURATION ROUNDS CONNS
bench/h2.sh
bench/tls.sh
bench/retry_fault.sh
# weftd at scale (1,000 ADS clients, 5,000 services by default: about 3 minutes; XDS=0 skips).
if [ "${XDS:-1}" != 0 ]; then bench/xds.sh; fi
# The mesh's own overhead (pods, sidecars, weftd): needs root for its network namespaces.
if [ "$(id -u)" -eq 0 ]; then bench/mesh.sh; else echo "bench/mesh.sh skipped: it needs root"; fi
cat bench/RESULTS.md
