#!/usr/bin/env bash
# HTTP/2 benchmark: h2load through weft-proxy, HAProxy and nginx in the same run, h2c with prior
# knowledge downstream, HTTP/1.1 to one nginx backend serving 1 KiB, 100 streams in flight over
# 10 connections (h2load -c 10 -m 10), one worker per proxy. Appends (or replaces) the
# "HTTP/2 (h2c)" section of bench/RESULTS.md with requests/s and latency as ratios to HAProxy.
# Env: DURATION (s, default 10), ROUNDS (default 3; the median round by requests/s is kept).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WEFT_BIN:-build/bin}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
. bench/lib.sh
bench_init h2

BACKEND=28080 WEFT=28081 HAPROXY=28082 NGINX=28083 ADMIN=28090
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
          codec_type: AUTO
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
  bind 127.0.0.1:$HAPROXY proto h2
  default_backend b
backend b
  server s1 127.0.0.1:$BACKEND
CONF
haproxy -f "$work/haproxy.cfg" -db & pids+=($!); haproxy_pid=$!

cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; master_process off; pid $work/np/pid; error_log $work/np/err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; http2_max_requests 1000000;
  upstream b { server 127.0.0.1:$BACKEND; keepalive 64; }
  server { listen 127.0.0.1:$NGINX http2; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
nginx -p "$work/np" -c "$work/nginx.conf" & pids+=($!); nginx_pid=$!

need_1k "http://127.0.0.1:$BACKEND/"
for port in $WEFT $HAPROXY $NGINX; do need_1k "http://127.0.0.1:$port/" --http2-prior-knowledge; done

rounds=$(mktemp)
run() { # name port
  local out; out=$(h2load -D "$DURATION" -c 10 -m 10 "http://127.0.0.1:$2/" 2>&1)
  local rps mean max ok
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
  max=$(awk '/^time for request:/ {print $5}' <<<"$out")
  ok=$(awk '/^requests:/ {print $8}' <<<"$out")
  echo "$1 ${rps:-0} ${mean:-0us} ${max:-0us} ${ok:-0}" >> "$rounds"
  echo "$1: ${rps:-0} req/s, mean ${mean:-?}, max ${max:-?}, ${ok:-0} succeeded"
}
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  run haproxy $HAPROXY
  run weft $WEFT
  run nginx $NGINX
done
declare -A RPS MEAN MAX
for p in weft haproxy nginx; do
  read -r _ RPS[$p] MEAN[$p] MAX[$p] _ < <(median_round "$p" "$rounds")
done
rm -f "$rounds"
section="$work/section.md"
{
  echo "## HTTP/2 (h2c)"
  echo
  echo "Measured by bench/h2.sh on $(date -u +%Y-%m-%d), $(nproc) cores: h2c with prior knowledge to each proxy,"
  echo "HTTP/1.1 to one nginx backend serving 1 KiB; h2load -c 10 -m 10 (100 streams in flight) -D ${DURATION}s,"
  echo "$ROUNDS interleaved rounds, the median round by requests/s; one worker per proxy."
  echo "Ratios are to HAProxy in the same run (requests/s: higher is better; latency: lower is better)."
  echo
  echo "| proxy | requests/s | ratio | mean latency | mean ratio | max latency |"
  echo "|---|---|---|---|---|---|"
  for p in weft haproxy nginx; do
    echo "| $p | ${RPS[$p]} | $(ratio "${RPS[$p]}" "${RPS[haproxy]}") | ${MEAN[$p]} | $(ratio "$(to_us "${MEAN[$p]}")" "$(to_us "${MEAN[haproxy]}")") | ${MAX[$p]} |"
  done
} > "$section"
# Replace an earlier HTTP/2 section (it runs to the end of the file), keep the rest.
touch bench/RESULTS.md
awk '/^## HTTP\/2 \(h2c\)/ {exit} {print}' bench/RESULTS.md > "$work/results"
{ cat "$work/results"; [ -s "$work/results" ] && echo; cat "$section"; } > bench/RESULTS.md.new
mv bench/RESULTS.md.new bench/RESULTS.md
cat "$section"
