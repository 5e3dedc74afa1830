#!/usr/bin/env bash
# weftd's control-plane figures (the lead runs this at full scale; defaults are the full scale):
#   (a) VirtualService change -> new route serving traffic, seen by a proxyless gRPC client
#       (python3-grpcio's xDS client), p50/p99 over CHANGES changes;
#   (b) push convergence for CLIENTS simulated ADS clients (one process, grpc.aio) and
#       SERVICES services, ROUNDS config changes, and weftd's RSS at that scale.
# Small check: CHANGES=5 CLIENTS=20 SERVICES=50 ROUNDS=2 bench/xds.sh
# Prints key=value lines and appends nothing by itself; copy the figures into bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WEFT_BIN:-build/bin}
CHANGES=${CHANGES:-50}
CLIENTS=${CLIENTS:-1000}
SERVICES=${SERVICES:-5000}
ROUNDS=${ROUNDS:-5}
[ -x "$BIN/weftd" ] || make >/dev/null
work=$(mktemp -d /tmp/weft-xds-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "# (a) VirtualService change to traffic, proxyless gRPC, $CHANGES changes, debounce 100ms"
timeout 900 /usr/bin/python3 bench/xds_route_latency.py "$BIN/weftd" "$work/a" "$CHANGES" 100ms
echo "# (b) push convergence: $CLIENTS ADS clients (CDS+LDS, SotW), $SERVICES services, $ROUNDS rounds"
timeout 3000 /usr/bin/python3 bench/xds_load.py "$BIN/weftd" "$work/b" "$CLIENTS" "$SERVICES" "$ROUNDS"
