#!/usr/bin/env bash
# What a retry policy and a fault filter cost when nothing goes wrong: requests/s and p99
# through weft-proxy for a plain route vs the same route with a retry policy (retry_on
# 5xx,reset,connect-failure, num_retries 3, previous_hosts) behind an HCM whose fault filter
# is configured but never fires (0 % delay, 0 % abort). Same run, interleaved rounds (as
# bench/run.sh), wrk -t1 -c16 (CONNS), HTTP/1.1 to one nginx backend serving 1 KiB, one proxy
# worker. Appends (or replaces) the "Retry policy + fault filter" section of bench/RESULTS.md.
# Env: DURATION (s, default 10), CONNS (default 16), ROUNDS (default 3; the median round by
# requests/s is kept), BASE_PORT (default 38080: backend, +1 plain, +2 retry+fault, +10 admin).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WEFT_BIN:-build/bin}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
ROUNDS=${ROUNDS:-3}
BASE_PORT=${BASE_PORT:-38080}
. bench/lib.sh
bench_init retry

BACKEND=$BASE_PORT PLAIN=$((BASE_PORT + 1)) RF=$((BASE_PORT + 2)) ADMIN=$((BASE_PORT + 10))
start_backend $BACKEND

ROUTER='{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}'
FAULT='{name: envoy.filters.http.fault, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, delay: {fixed_delay: 1s, percentage: {numerator: 0}}, abort: {http_status: 503, percentage: {numerator: 0}}}}'
RETRY='retry_policy: {retry_on: "5xx,reset,connect-failure", num_retries: 3, retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}], host_selection_retry_max_attempts: 3}'
listener() { # name port filters route-extra
  cat <<CONF
  - name: $1
    address: {socket_address: {address: 127.0.0.1, port_value: $2}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          http_filters: [$3]
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: backend$4}}]}]
CONF
}
{
  echo "admin: {address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN}}}"
  echo "static_resources:"
  echo "  listeners:"
  listener plain $PLAIN "$ROUTER" ""
  listener retry_fault $RF "$FAULT, $ROUTER" ", $RETRY"
  backend_cluster $BACKEND
} > "$work/weft.yaml"
"$BIN/weft-proxy" -c "$work/weft.yaml" --concurrency 1 -l warning & pids+=($!)

for port in $BACKEND $PLAIN $RF; do need_1k "http://127.0.0.1:$port/"; done

rounds=$(mktemp)
run() { # name port
  local out; out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$2/")
  local rps p99 bad
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  echo "$1 ${rps:-0} ${p99:-0us}" >> "$rounds"
  echo "$1: ${rps:-0} req/s, p99 ${p99:-?}${bad:+, $bad non-2xx}"
}
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  run plain $PLAIN
  run retry_fault $RF
done
declare -A RPS P99
for p in plain retry_fault; do
  read -r _ RPS[$p] P99[$p] < <(median_round "$p" "$rounds")
done
rm -f "$rounds"

section="$work/section.md"
{
  echo "## Retry policy + fault filter (not triggered)"
  echo
  echo "Measured by bench/retry_fault.sh on $(date -u +%Y-%m-%d), $(nproc) cores: weft-proxy (one worker), HTTP/1.1"
  echo "to one nginx backend serving 1 KiB, wrk -t1 -c$CONNS -d${DURATION}s, $ROUNDS interleaved rounds, the median round"
  echo "by requests/s. \`retry + fault\`: the route has retry_on 5xx,reset,connect-failure, num_retries 3,"
  echo "previous_hosts, and its HCM runs a fault filter with 0 % delay and 0 % abort before the router."
  echo "Ratios are to the plain route in the same run."
  echo
  echo "| route | requests/s | ratio | p99 | p99 ratio |"
  echo "|---|---|---|---|---|"
  for p in plain retry_fault; do
    name=$p; [ "$p" = retry_fault ] && name="retry + fault"
    echo "| $name | ${RPS[$p]} | $(ratio "${RPS[$p]}" "${RPS[plain]}") | ${P99[$p]} | $(ratio "$(to_us "${P99[$p]}")" "$(to_us "${P99[plain]}")") |"
  done
} > "$section"
# Replace an earlier section of ours (up to the next "## "), keep the rest, append ours.
touch bench/RESULTS.md
awk '/^## Retry policy \+ fault filter/ {skip = 1; next} /^## / {skip = 0} !skip' bench/RESULTS.md |
  awk '{l[NR] = $0} END {n = NR; while (n > 0 && l[n] == "") n--; for (i = 1; i <= n; i++) print l[i]}' > "$work/results"
{ cat "$work/results"; [ -s "$work/results" ] && echo; cat "$section"; } > bench/RESULTS.md.new
mv bench/RESULTS.md.new bench/RESULTS.md
cat "$section"
