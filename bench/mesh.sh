#!/usr/bin/env bash
# The mesh's overhead measured the way Istio publishes its own (istio.io "Performance and
# Scalability"): a client pod calls a server pod through both sidecars (client -> client's
# sidecar -> server's sidecar -> server), HTTP/1.1 keep-alive, 1 KiB request and response bodies,
# 16 connections, at a fixed 1,000 requests/s; the same call between two pods without sidecars is
# the baseline. Reports the latency the sidecars add (p50/p90/p99), CPU per sidecar per 1,000
# requests/s, RSS per sidecar, and the time `weftctl mesh up` takes to bring bookinfo (weftd +
# 7 pods with sidecars) to ready. Replaces (or appends) the "## Mesh" section of bench/RESULTS.md.
# As root (weftctl mesh). Env: DURATION (s per run, default 30), RATE (requests/s, 1000), CONNS (16).
#
# The load: Debian has no wrk2; h2load's --rps paces each connection, but one h2load starts all
# its connections on the same tick, so they would fire in bursts of 16. So each connection is its
# own `h2load -c 1 --rps RATE/CONNS`, started a millisecond apart (spread over the period), and
# the latencies are every request's time from h2load's --log-file.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WEFT_BIN:-build/bin}
DURATION=${DURATION:-30}
RATE=${RATE:-1000}
CONNS=${CONNS:-16}
if [ "$(id -u)" -ne 0 ]; then echo "bench/mesh.sh needs root (weftctl mesh)"; exit 1; fi
work=$(mktemp -d /tmp/weft-bench-mesh.XXXXXX)
chmod 755 "$work"   # the sidecars run as UID 1337 and read their bootstrap from the state dir
args=(--name wmbench --state-dir "$work/state" --subnet 10.242.0.0/16)
mesh() { local verb=$1; shift; "$BIN/weftctl" mesh "$verb" "${args[@]}" "$@"; }
cleanup() { mesh down >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
head -c 1024 /dev/zero | tr '\0' 'w' >"$work/1k"
now() { date +%s.%N; }

# 1. mesh up -> every pod ready, on bookinfo.
t0=$(now)
mesh up -f samples/bookinfo/bookinfo.yaml samples/bookinfo/destination-rules.yaml \
  samples/bookinfo/virtual-service-all-v1.yaml >"$work/up.log"
up_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}')
mesh down >/dev/null

# 2. The load, with and without sidecars.
mesh up -f bench/mesh/mesh.yaml >"$work/up-bench.log"
netns_of() { awk -v d="$1" '$3 == d {print $5}' "$work/state/pods.txt"; }
proxy_pid() { for p in $(ip netns pids "$(netns_of "$1")"); do if [ "$(cat "/proc/$p/comm")" = weft-proxy ]; then echo "$p"; fi; done; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# load DEPLOYMENT URL NAME: CONNS paced h2load clients from DEPLOYMENT's pod; logs in $work/NAME.*
load() {
  local per; per=$(awk -v r="$RATE" -v c="$CONNS" 'BEGIN {print r / c}')
  mesh exec "deploy/$1" -- bash -c "for i in \$(seq $CONNS); do
      h2load --h1 -c 1 -t 1 --rps=$per -D $DURATION --warm-up-time=2 -d $work/1k -H 'x-echo-body-size: 1024' \
        --log-file=$work/$3.\$i $2 >$work/$3.out.\$i 2>&1 &
      sleep 0.001
    done; wait"
}
# pct FILES...: "p50 p90 p99 count failed" in microseconds over every request of the logs.
pct() {
  cat "$@" | awk '{print $3, $2}' | sort -n | awk '
    { t[NR] = $1; if ($2 != 200) bad++ }
    END { printf "%d %d %d %d %d\n", t[int(NR * .50)], t[int(NR * .90)], t[int(NR * .99)], NR, bad }'
}
load_avg=$(cut -d' ' -f1 /proc/loadavg)
load plain-client http://plain-server:8080/ plain
cp=$(proxy_pid client); sp=$(proxy_pid server)
hz=$(getconf CLK_TCK)
c0=$(cpu_ticks "$cp"); s0=$(cpu_ticks "$sp"); w0=$(now)
load client http://server:8080/ mesh
c1=$(cpu_ticks "$cp"); s1=$(cpu_ticks "$sp"); w1=$(now)
crss=$(awk '/VmRSS/ {print $2}' "/proc/$cp/status"); srss=$(awk '/VmRSS/ {print $2}' "/proc/$sp/status")
read -r pp50 pp90 pp99 pn pbad <<<"$(pct "$work"/plain.[0-9]*)"
read -r mp50 mp90 mp99 mn mbad <<<"$(pct "$work"/mesh.[0-9]*)"
# vCPU per 1,000 requests/s: CPU seconds / wall seconds of the run (warm-up included, at the same
# pace), scaled by the rate the run reached (a paced client that falls behind does not catch up).
reached() { awk -v n="$1" -v d="$DURATION" 'BEGIN {printf "%.0f", n / d}'; }
vcpu() { awk -v t="$(($2 - $1))" -v hz="$hz" -v w="$(awk -v a="$w0" -v b="$w1" 'BEGIN {print b - a}')" -v r="$(reached "$mn")" \
  'BEGIN {if (r + 0 == 0) print "-"; else printf "%.3f", t / hz / w * 1000 / r}'; }
ms() { awk -v u="$1" 'BEGIN {printf "%.2f ms", u / 1000}'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN {printf "+%.2f ms", (a - b) / 1000}'; }

section="$work/section.md"
{
  echo "## Mesh (bench/mesh.sh)"
  echo
  echo "Measured by \`bench/mesh.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), the machine shared with"
  echo "other work (noisy). As Istio measures its sidecar: client pod -> client's sidecar -> server's"
  echo "sidecar -> server pod (weft-echo), HTTP/1.1 keep-alive, 1 KiB request and response bodies, $CONNS"
  echo "connections at a fixed $RATE requests/s in total (one paced h2load per connection, started 1 ms"
  echo "apart), ${DURATION} s after 2 s of warm-up; baseline: the same call between two pods without"
  echo "sidecars. One worker per sidecar (--concurrency 1). Latency is per request, from h2load's log."
  echo
  echo "Load average when it started: $load_avg. A run that reached less than 95% of $RATE requests/s was"
  echo "starved (each paced connection waits for its answer): its latencies say more about the machine."
  echo
  echo "| | p50 | p90 | p99 | requests/s reached | failed |"
  echo "|---|---|---|---|---|---|"
  echo "| without sidecars | $(ms "$pp50") | $(ms "$pp90") | $(ms "$pp99") | $(reached "$pn") | $pbad |"
  echo "| through both sidecars | $(ms "$mp50") | $(ms "$mp90") | $(ms "$mp99") | $(reached "$mn") | $mbad |"
  echo "| **added by the mesh** | $(add "$mp50" "$pp50") | $(add "$mp90" "$pp90") | $(add "$mp99" "$pp99") | | |"
  echo
  echo "| sidecar | vCPU per 1,000 requests/s | RSS under load |"
  echo "|---|---|---|"
  echo "| client's (outbound) | $(vcpu "$c0" "$c1") | $((crss / 1024)) MiB ($crss KiB) |"
  echo "| server's (inbound) | $(vcpu "$s0" "$s1") | $((srss / 1024)) MiB ($srss KiB) |"
  echo
  echo "\`weftctl mesh up\` of samples/bookinfo (weftd + 7 pods with sidecars) to every pod ready and"
  echo "every sidecar synced: ${up_s} s."
} >"$section"
# Replace an earlier Mesh section (up to the next "## "), else append; keep the rest.
touch bench/RESULTS.md
awk -v f="$section" '
  /^## Mesh \(bench\/mesh\.sh\)$/ { while ((getline l < f) > 0) print l; print ""; skip = 1; done = 1; next }
  /^## / { skip = 0 }
  !skip { print }
  END { if (!done) { print ""; while ((getline l < f) > 0) print l } }' bench/RESULTS.md >bench/RESULTS.md.new
mv bench/RESULTS.md.new bench/RESULTS.md
cat "$section"
