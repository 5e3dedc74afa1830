# Shared by bench/run.sh, bench/h2.sh and bench/tls.sh (sourced, not run): the work directory
# and its cleanup, the one nginx backend serving 1 KiB, and the number helpers for the tables.
# Expects BIN, DURATION, ROUNDS set by the caller; sets work, pids and the functions below.

# bench_init NAME: a fresh work directory, removed with every process started (pids) at exit.
bench_init() {
  work=$(mktemp -d "/tmp/weft-bench-$1.XXXXXX")
  # nginx's worker drops root's rights: without this it cannot read 1k and answers 404.
  chmod 755 "$work"
  pids=()
  trap cleanup EXIT
  mkdir -p "$work/nb" "$work/np"
  head -c 1024 /dev/zero | tr '\0' 'w' > "$work/1k"
}
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }

# start_backend PORT: nginx with one worker answering every request with the 1 KiB file.
start_backend() {
  cat > "$work/backend.conf" <<CONF
worker_processes 1; daemon off; pid $work/nb/pid; error_log $work/nb/err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$1; location / { root $work; try_files /1k =404; } } }
CONF
  nginx -p "$work/nb" -c "$work/backend.conf" & pids+=($!)
}

# wait_up URL [curl args...]: until curl gets a 2xx from URL (5 s at most).
wait_up() { local url=$1; shift; for _ in $(seq 100); do curl -sf "$@" -o /dev/null "$url" && return 0; sleep 0.05; done; return 1; }
# need_1k URL [curl args...]: wait_up, then insist on the 1 KiB body; otherwise the benchmark
# would time error pages (it did once: nginx answered 404 to a work dir it could not read).
need_1k() {
  local url=$1; shift
  wait_up "$url" "$@" && [ "$(curl -s "$@" -o /dev/null -w '%{http_code} %{size_download}' "$url")" = "200 1024" ] && return 0
  echo "bench: $url does not answer 200 with the 1 KiB body" >&2
  exit 1
}

# backend_cluster PORT: the weft-proxy static cluster "backend" (YAML under static_resources).
backend_cluster() {
  cat <<CONF
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $1}}}}]}]
CONF
}

# median_round NAME FILE: of FILE's lines "NAME requests/s ...", the median one by requests/s.
median_round() { awk -v p="$1" '$1 == p' "$2" | sort -k2 -n | awk -v m=$(((ROUNDS + 1) / 2)) 'NR == m'; }

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# wrk/h2load durations ("512.00us", "1.2ms", "3s") in microseconds.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1000000 }'; }
# a / b with two decimals, "-" when b is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
