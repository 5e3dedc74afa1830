#!/usr/bin/env bash
# TLS benchmarks: weft-proxy against HAProxy and nginx in one run, on this machine, each
# terminating TLS in front of the same plaintext nginx backend (1 KiB response), one worker each.
#   1. TLS 1.3 full handshakes per second: openssl s_time -new (a new session every time,
#      handshake only), ECDSA P-256 server certificate.
#   2. mTLS request latency with resumed sessions: openssl s_time -reuse -www / with a client
#      certificate: every request is a new connection resuming the TLS session, one GET, close;
#      the latency is 1 / (connections per second) of that sequential client.
# Appends a "## TLS" section (ratios to HAProxy) to bench/RESULTS.md, replacing an earlier one,
# so that bench/run.sh (which rewrites RESULTS.md) can call it afterwards.
# Env: DURATION (s per measurement, default 10), ROUNDS (default 3; the median is reported).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WEFT_BIN:-build/bin}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
. bench/lib.sh
bench_init tls

BACKEND=18180 ADMIN=18190
WEFT=18181 HAPROXY=18182 NGINX=18183        # TLS
WEFT_M=18184 HAPROXY_M=18185 NGINX_M=18186  # mTLS

# A CA, a server certificate and a client certificate with a SPIFFE identity.
ossl() { openssl "$@" >/dev/null 2>&1; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/ca.key" -out "$work/ca.crt" \
  -days 2 -subj "/CN=bench CA"
leaf() { # name san
  ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/$1.key" -out "$work/$1.csr" -subj "/CN=$1"
  printf 'subjectAltName=%s\n' "$2" > "$work/$1.ext"
  ossl x509 -req -in "$work/$1.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -out "$work/$1.crt" \
    -days 2 -extfile "$work/$1.ext"
}
leaf server DNS:localhost
leaf client URI:spiffe://cluster.local/ns/default/sa/bench
cat "$work/server.crt" "$work/server.key" > "$work/server.pem"   # HAProxy wants both in one file

start_backend $BACKEND

tls_chain() { # require_client
  cat <<CONF
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: $1
          common_tls_context:
            tls_certificates: [{certificate_chain: {filename: $work/server.crt}, private_key: {filename: $work/server.key}}]
CONF
  if [ "$1" = true ]; then
    cat <<CONF
            validation_context:
              trusted_ca: {filename: $work/ca.crt}
              match_typed_subject_alt_names: [{san_type: URI, matcher: {prefix: "spiffe://cluster.local/"}}]
CONF
  fi
}
weft_listener() { # name port require_client
  cat <<CONF
  - name: $1
    address: {socket_address: {address: 127.0.0.1, port_value: $2}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: backend}}]}]
$(tls_chain "$3")
CONF
}
{
  echo "admin: {address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN}}}"
  echo "static_resources:"
  echo "  listeners:"
  weft_listener tls $WEFT false
  weft_listener mtls $WEFT_M true
  backend_cluster $BACKEND
} > "$work/weft.yaml"
"$BIN/weft-proxy" -c "$work/weft.yaml" --concurrency 1 -l warning & pids+=($!); weft_pid=$!

cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend f
  bind 127.0.0.1:$HAPROXY ssl crt $work/server.pem
  default_backend b
frontend fm
  bind 127.0.0.1:$HAPROXY_M ssl crt $work/server.pem ca-file $work/ca.crt verify required
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
  ssl_certificate $work/server.crt; ssl_certificate_key $work/server.key;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_tickets on;
  server { listen 127.0.0.1:$NGINX ssl;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:$NGINX_M ssl; ssl_client_certificate $work/ca.crt; ssl_verify_client on;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
nginx -p "$work/np" -c "$work/nginx.conf" & pids+=($!); nginx_pid=$!

for port in $WEFT $HAPROXY $NGINX; do need_1k "https://127.0.0.1:$port/" -k; done
for port in $WEFT_M $HAPROXY_M $NGINX_M; do
  need_1k "https://127.0.0.1:$port/" -k --cert "$work/client.crt" --key "$work/client.key"
done

rounds=$(mktemp)
# s_time prints "N connections in T real seconds": connections per real second.
per_sec() { awk '/connections in .* real seconds/ {printf "%.1f", $1 / $4}' | tail -1; }
run() { # name tls-port mtls-port
  local hs rq
  hs=$(openssl s_time -connect "127.0.0.1:$2" -new -tls1_3 -time "$DURATION" 2>/dev/null | per_sec)
  rq=$(openssl s_time -connect "127.0.0.1:$3" -reuse -tls1_3 -www / -cert "$work/client.crt" -key "$work/client.key" \
         -CAfile "$work/ca.crt" -time "$DURATION" 2>/dev/null | per_sec)
  echo "$1 ${hs:-0} ${rq:-0}" >> "$rounds"
  echo "$1: ${hs:-0} full TLS 1.3 handshakes/s, ${rq:-0} resumed mTLS requests/s"
}
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  run haproxy $HAPROXY $HAPROXY_M
  run weft $WEFT $WEFT_M
  run nginx $NGINX $NGINX_M
done
declare -A HS RQ
for p in weft haproxy nginx; do
  HS[$p]=$(awk -v p="$p" '$1 == p {print $2}' "$rounds" | sort -n | awk -v m=$(((ROUNDS + 1) / 2)) 'NR == m')
  RQ[$p]=$(awk -v p="$p" '$1 == p {print $3}' "$rounds" | sort -n | awk -v m=$(((ROUNDS + 1) / 2)) 'NR == m')
done
rm -f "$rounds"
lat() { awk -v r="$1" 'BEGIN { if (r + 0 == 0) print "-"; else printf "%.0f", 1e6 / r }'; }

touch bench/RESULTS.md
awk '/^## TLS$/ {skip = 1} /^## / && !/^## TLS$/ {skip = 0} !skip' bench/RESULTS.md > bench/RESULTS.md.new
{
  echo
  echo "## TLS"
  echo
  echo "Measured by bench/tls.sh on $(date -u +%Y-%m-%d), $(nproc) cores: each proxy terminates TLS (ECDSA P-256)"
  echo "in front of the same nginx backend (1 KiB), one worker each; openssl s_time for ${DURATION}s per measurement,"
  echo "$ROUNDS interleaved rounds, the median reported. Handshakes: TLS 1.3, a new session per connection, no"
  echo "request. mTLS requests: a client certificate, the session resumed on every new connection, one GET"
  echo "(HTTP/1.0) per connection; latency = 1 / rate of that sequential client. Ratios are to HAProxy."
  echo
  echo "| proxy | full handshakes/s | ratio | resumed mTLS requests/s | latency us | latency ratio |"
  echo "|---|---|---|---|---|---|"
  for p in weft haproxy nginx; do
    echo "| $p | ${HS[$p]} | $(ratio "${HS[$p]}" "${HS[haproxy]}") | ${RQ[$p]} | $(lat "${RQ[$p]}") |" \
         "$(ratio "${RQ[haproxy]}" "${RQ[$p]}") |"
  done
} >> bench/RESULTS.md.new
mv bench/RESULTS.md.new bench/RESULTS.md
sed -n '/^## TLS$/,$p' bench/RESULTS.md
