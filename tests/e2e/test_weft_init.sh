#!/usr/bin/env bash
# weft-init in a network namespace of our own ("the pod") with a veth to a second namespace
# ("the peer"): the rules iptables-save shows after a default run, then real traffic — an app's
# outbound connection to a 10.x address lands on the stand-in proxy's 15001 with its original
# destination, the proxy's own (UID 1337) connection goes out untouched, loopback is not
# captured, inbound connections from the peer land on 15006 except on the excluded ports —
# then --cleanup leaves iptables-save exactly as before (twice), and --dry-run changes nothing.
# The same for DNS capture (--redirect-dns), TPROXY, IPv6 (--dual-stack) and the legacy backend.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${WEFT_BIN:-build/bin}
ns=weft-init-$$
peer=weft-init-peer-$$
pass=0; fail=0
check() { if eval "$2"; then echo "ok   $1"; pass=$((pass+1)); else echo "FAIL $1"; fail=$((fail+1)); fi; }
tmp=$(mktemp -d /tmp/weft-init.XXXXXX)
chmod 755 "$tmp"
cleanup() {
  for n in "$ns" "$peer"; do ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null; done
  sleep 0.2
  ip netns del "$ns" 2>/dev/null
  ip netns del "$peer" 2>/dev/null
  rm -rf "$tmp" "/etc/netns/$ns"
  rmdir /etc/netns 2>/dev/null
}
trap cleanup EXIT
if [ "$(id -u)" -ne 0 ] || ! command -v iptables >/dev/null; then
  echo "needs root and iptables"; echo "0 passed, 1 failed"; exit 1
fi
nsx() { ip netns exec "$ns" "$@"; }
peerx() { ip netns exec "$peer" "$@"; }
# has TEXT CMD...: CMD's output contains TEXT (no "| grep -q": with pipefail, grep's early exit
# can fail the pipeline with SIGPIPE).
has() { local t=$1; shift; local o; o=$("$@"); [[ "$o" == *"$t"* ]]; }
# iptables-save without its timestamp comments and with counters zeroed, to compare states.
state() { nsx iptables-save "$@" 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/'; }

ip netns add "$ns"
ip netns add "$peer"
ip link add wi0-$$ netns "$ns" type veth peer name wi1-$$ netns "$peer"
nsx ip link set lo up
nsx ip addr add 10.77.0.2/24 dev wi0-$$
nsx ip link set wi0-$$ up
nsx ip route add default via 10.77.0.1
peerx ip link set lo up
peerx ip addr add 10.77.0.1/24 dev wi1-$$
peerx ip addr add 10.77.1.5/32 dev wi1-$$
peerx ip link set wi1-$$ up
nsx ip -6 addr add fd00:77::2/64 dev wi0-$$ nodad
nsx ip -6 route add default via fd00:77::1
peerx ip -6 addr add fd00:77::1/64 dev wi1-$$ nodad
peerx ip -6 addr add fd00:77:1::5/128 dev wi1-$$ nodad
peerx ip addr add 10.77.1.53/32 dev wi1-$$
# The pod's resolv.conf (ip netns exec mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf).
mkdir -p "/etc/netns/$ns" && echo "nameserver 10.77.1.53" > "/etc/netns/$ns/resolv.conf"

# A TCP server that answers each connection with one line: its name, the local port it was
# accepted on, and the connection's original destination (SO_ORIGINAL_DST), then closes.
cat > "$tmp/srv.py" <<'PY'
import selectors, socket, struct, sys
name, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
sel = selectors.DefaultSelector()
for p in ports:
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if name == "proxy":  # IP_TRANSPARENT / IPV6_TRANSPARENT, as Envoy's TPROXY listener
            s.setsockopt(*((socket.SOL_IP, 19) if fam == socket.AF_INET else (socket.IPPROTO_IPV6, 75)), 1)
        s.bind((host, p)); s.listen(16); sel.register(s, selectors.EVENT_READ, p)
while True:
    for key, _ in sel.select():
        c, peer = key.fileobj.accept()
        try:
            if c.family == socket.AF_INET:
                raw = c.getsockopt(socket.SOL_IP, 80, 16)
                orig = "%s:%d" % (socket.inet_ntoa(raw[4:8]), struct.unpack("!H", raw[2:4])[0])
            else:
                raw = c.getsockopt(socket.IPPROTO_IPV6, 80, 28)
                orig = "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, raw[8:24]),
                                    struct.unpack("!H", raw[2:4])[0])
        except OSError:
            orig = "none"
        local = c.getsockname()
        c.sendall(("%s port=%d orig=%s from=%s local=%s:%d\n" % (name, key.data, orig, peer[0],
                                                                local[0], local[1])).encode())
        c.close()
PY
# A UDP responder: answers each datagram with its name.
cat > "$tmp/udp.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[2])))
while True:
    _, peer = s.recvfrom(512); s.sendto(sys.argv[1].encode(), peer)
PY
# query HOST [UID]: one UDP datagram to HOST:53, the answer (empty if none within 1 s).
query() {
  nsx setpriv --reuid="${2:-0}" --regid="${2:-0}" --clear-groups timeout 5 /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
s.sendto(b"q", (sys.argv[1], 53))
try: print(s.recv(512).decode())
except OSError: pass' "$1" 2>/dev/null
}
# connect HOST PORT [UID]: one line from whoever answers (empty if nobody does).
connect() {
  local run=(nsx); [ "${4:-}" = peer ] && run=(peerx)
  "${run[@]}" setpriv --reuid="${3:-0}" --regid="${3:-0}" --clear-groups \
    timeout 5 /usr/bin/python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(s.makefile().readline().strip())' "$1" "$2" 2>/dev/null
}

# The stand-in proxy (UID 1337, as Istio's) on 15001/15006; the app's own servers on 9000
# (loopback) and 15021 (an excluded inbound port); a server in the peer at 10.77.1.5:80.
ip netns exec "$ns" setpriv --reuid=1337 --regid=1337 --clear-groups --inh-caps=+net_admin \
  --ambient-caps=+net_admin /usr/bin/python3 "$tmp/srv.py" proxy 15001 15006 15053 &
ip netns exec "$ns" setpriv --reuid=1337 --regid=1337 --clear-groups /usr/bin/python3 "$tmp/udp.py" agent 15053 &
ip netns exec "$peer" /usr/bin/python3 "$tmp/udp.py" peer-dns 53 &
ip netns exec "$ns" /usr/bin/python3 "$tmp/srv.py" app 9000 15021 8080 &
ip netns exec "$peer" /usr/bin/python3 "$tmp/srv.py" peer 80 &
for _ in $(seq 100); do
  [ "$(nsx ss -Hltn | grep -cE ':(15001|15006|15053|9000|15021|8080) ')" -ge 12 ] &&
    has ':15053 ' nsx ss -Hlun && has ':53 ' peerx ss -Hlun && has ':80 ' peerx ss -Hltn && break
  sleep 0.05
done

pristine=$(state)
dry=$(nsx "$BIN/weft-init" --dry-run 2>/dev/null)
check "--dry-run prints the default rules (tests/data/init/default.rules)" '[ "$dry" = "$(cat tests/data/init/default.rules)" ]'
check "--dry-run changes nothing" '[ "$(state)" = "$pristine" ]'
out=$(connect 10.77.1.5 80)
check "before weft-init the app reaches the peer directly ($out)" '[[ "$out" == "peer port=80 "* ]]'

# A rule of the user's own: it must survive weft-init and its cleanup.
nsx iptables -t nat -A POSTROUTING -p udp --dport 9999 -j RETURN
before=$(state)
nsx "$BIN/weft-init" >"$tmp/log" 2>&1; rc=$?
check "weft-init with the default flags exits 0" '[ $rc -eq 0 ]'
check "iptables-save -t nat shows exactly the expected rules (tests/data/init/e2e-default.save)" \
  '[ "$(state -t nat)" = "$(cat tests/data/init/e2e-default.save)" ]'
[ "$fail" -eq 0 ] || { cat "$tmp/log"; state -t nat; }

out=$(connect 10.77.1.5 80)
check "an app's outbound connection to 10.77.1.5:80 lands on 15001 ($out)" \
  '[[ "$out" == "proxy port=15001 orig=10.77.1.5:80 "* ]]'
out=$(connect 10.77.9.9 443)
check "any 10.x destination is captured, the proxy sees it as the original ($out)" \
  '[[ "$out" == "proxy port=15001 orig=10.77.9.9:443 "* ]]'
out=$(connect 10.77.1.5 80 1337)
check "a connection from UID 1337 is not redirected: it reaches the peer ($out)" '[[ "$out" == "peer port=80 "* ]]'
out=$(connect 127.0.0.1 9000)
check "loopback destinations are not captured ($out)" '[[ "$out" == "app port=9000 "* ]]'
out=$(connect 10.77.0.2 8080 0 peer)
check "inbound from the peer to the pod IP lands on 15006 ($out)" \
  '[[ "$out" == "proxy port=15006 orig=10.77.0.2:8080 from=10.77.0.1 "* ]]'
out=$(connect 10.77.0.2 15021 0 peer)
check "inbound to the excluded port 15021 bypasses the proxy ($out)" '[[ "$out" == "app port=15021 "* ]]'
out=$(connect 10.77.0.2 8080)
check "the app calling its own pod IP over lo is not captured ($out)" '[[ "$out" == "app port=8080 "* ]]'
out=$(connect 10.77.0.2 8080 1337)
check "the proxy calling the pod IP goes inbound to 15006 (app -> VIP -> itself) ($out)" \
  '[[ "$out" == "proxy port=15006 orig=10.77.0.2:8080 "* ]]'
out=$(connect 10.77.0.2 15008 1337)
check "... except the tunnel port 15008 ($out)" '[[ "$out" == "" ]]'

nsx "$BIN/weft-init" >"$tmp/log" 2>&1; rc=$?
check "a second run replaces the rules instead of adding a copy" \
  '[ $rc -eq 0 ] && [ "$(state -t nat)" = "$(cat tests/data/init/e2e-default.save)" ]'
nsx "$BIN/weft-init" -b 8080 -o 443 >"$tmp/log" 2>&1; rc=$?
check "weft-init -b 8080 -o 443 over the default rules exits 0" '[ $rc -eq 0 ]'
out=$(connect 10.77.9.9 443)
check "-o 443: an excluded outbound port bypasses the proxy (nobody answers at 10.77.9.9)" '[ -z "$out" ]'
out=$(connect 10.77.9.9 444)
check "-o 443: other ports are still captured ($out)" '[[ "$out" == "proxy port=15001 orig=10.77.9.9:444 "* ]]'
out=$(connect 10.77.0.2 15021 0 peer)
check "-b 8080: other inbound ports are not captured ($out)" '[[ "$out" == "app port=15021 "* ]]'

nsx "$BIN/weft-init" --cleanup -b 8080 -o 443 >"$tmp/log" 2>&1; rc=$?
check "--cleanup exits 0" '[ $rc -eq 0 ]'
check "--cleanup leaves iptables-save exactly as before" '[ "$(state)" = "$before" ]'
[ "$(state)" = "$before" ] || diff <(echo "$before") <(state)
nsx "$BIN/weft-init" --cleanup >"$tmp/log" 2>&1; rc=$?
check "a second --cleanup exits 0 and changes nothing" '[ $rc -eq 0 ] && [ "$(state)" = "$before" ]'
out=$(connect 10.77.1.5 80)
check "after cleanup the app reaches the peer directly again ($out)" '[[ "$out" == "peer port=80 "* ]]'
nsx "$BIN/weft-init" -p notaport >"$tmp/log" 2>&1; rc=$?
check "a bad flag exits 2 with one line ($(head -1 "$tmp/log"))" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/log")" -eq 1 ]'
check "and changes nothing" '[ "$(state)" = "$before" ]'

# weft-proxy as the sidecar (UID 1337) behind weft-init's rules: the app's connection to the
# peer goes through its 15001-style listener (-p 15101 here) and out by ORIGINAL_DST.
if [ -x "$BIN/weft-proxy" ]; then
  cat > "$tmp/proxy.yaml" <<'YAML'
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 15000}}}
static_resources:
  listeners:
  - name: virtualOutbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15101}}
    use_original_dst: true
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: PassthroughCluster
          cluster: PassthroughCluster
  clusters:
  - name: PassthroughCluster
    connect_timeout: 1s
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
YAML
  chmod 644 "$tmp/proxy.yaml"
  ip netns exec "$ns" setpriv --reuid=1337 --regid=1337 --clear-groups \
    "$BIN/weft-proxy" -c "$tmp/proxy.yaml" --concurrency 1 >"$tmp/proxy.log" 2>&1 &
  for _ in $(seq 100); do has ':15101 ' nsx ss -Hltn && break; sleep 0.05; done
  nsx "$BIN/weft-init" -p 15101 >"$tmp/log" 2>&1; rc=$?
  out=$(connect 10.77.1.5 80)
  check "weft-init -p 15101 + weft-proxy: the app reaches the peer through the sidecar ($out)" \
    '[ $rc -eq 0 ] && [[ "$out" == "peer port=80 orig=none from=10.77.0.2 "* ]]'
  stats=$(nsx curl -s --max-time 5 http://127.0.0.1:15000/stats)
  check "the sidecar counted it on PassthroughCluster" \
    'grep -q "^cluster.PassthroughCluster.upstream_cx_total: 1" <<<"$stats"'
  nsx "$BIN/weft-init" --cleanup >"$tmp/log" 2>&1; rc=$?
  check "sidecar: --cleanup leaves iptables-save as before" '[ $rc -eq 0 ] && [ "$(state)" = "$before" ]'
fi

# --network-namespace: weft-init run from outside the pod's namespace.
host_istio=$(iptables-save 2>/dev/null | grep -c ISTIO_)
"$BIN/weft-init" --network-namespace "$ns" >"$tmp/log" 2>&1; rc=$?
check "--network-namespace NAME applies the rules inside that namespace only" \
  '[ $rc -eq 0 ] && [ "$(state -t nat)" = "$(cat tests/data/init/e2e-default.save)" ] &&
   [ "$(iptables-save 2>/dev/null | grep -c ISTIO_)" = "$host_istio" ]'
"$BIN/weft-init" --network-namespace "/var/run/netns/$ns" --cleanup >"$tmp/log" 2>&1; rc=$?
check "--network-namespace PATH --cleanup removes them" '[ $rc -eq 0 ] && [ "$(state)" = "$before" ]'
"$BIN/weft-init" --network-namespace weft-init-none-$$ >"$tmp/log" 2>&1; rc=$?
check "an unknown namespace fails with exit 1 ($(head -1 "$tmp/log"))" '[ $rc -eq 1 ]'

# DNS capture (--redirect-dns): the app's DNS to its resolv.conf server goes to the agent's
# 15053 (UDP and TCP), the agent's own queries go out, UDP DNS is split in conntrack zones.
nsx iptables -t raw -A PREROUTING -p udp --dport 9999 -j RETURN  # (nf_tables: see above)
before=$(state)
out=$(query 10.77.1.53)
check "before: the app's DNS query reaches the resolver in the peer ($out)" '[ "$out" = peer-dns ]'
nsx "$BIN/weft-init" --redirect-dns >"$tmp/log" 2>&1; rc=$?
check "weft-init --redirect-dns (nameserver 10.77.1.53 from resolv.conf) exits 0" \
  '[ $rc -eq 0 ] && has "-A ISTIO_OUTPUT_DNS -d 10.77.1.53/32 -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053" state -t nat'
check "the conntrack zones are in raw" \
  'has "-A ISTIO_INBOUND -s 10.77.1.53/32 -p udp -m udp --sport 53 -j CT --zone 1" state -t raw'
out=$(query 10.77.1.53)
check "the app's UDP DNS query is answered by the agent on 15053 ($out)" '[ "$out" = agent ]'
out=$(query 10.77.1.53 1337)
check "the agent's (UID 1337) own query reaches the resolver ($out)" '[ "$out" = peer-dns ]'
out=$(query 10.77.1.99)
check "DNS to a server not in resolv.conf is not captured (nobody answers)" '[ -z "$out" ]'
out=$(connect 10.77.1.53 53)
check "the app's TCP DNS goes to the agent's 15053 ($out)" '[[ "$out" == "proxy port=15053 orig=10.77.1.53:53 "* ]]'
nsx "$BIN/weft-init" --cleanup >"$tmp/log" 2>&1; rc=$?
check "DNS: --cleanup leaves iptables-save as before" '[ $rc -eq 0 ] && [ "$(state)" = "$before" ]'
[ "$(state)" = "$before" ] || diff <(echo "$before") <(state)

# ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: a group whose outbound traffic is not captured.
nsx env ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE=4242 "$BIN/weft-init" >"$tmp/log" 2>&1; rc=$?
out=$(connect 10.77.1.5 80 4242)
check "ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE=4242: group 4242 goes out directly ($out)" \
  '[ $rc -eq 0 ] && [[ "$out" == "peer port=80 "* ]]'
out=$(connect 10.77.1.5 80 4243)
check "... other groups are still captured ($out)" '[[ "$out" == "proxy port=15001 orig=10.77.1.5:80 "* ]]'
nsx "$BIN/weft-init" --cleanup >"$tmp/log" 2>&1; rc=$?
check "owner groups: --cleanup leaves iptables-save as before" '[ $rc -eq 0 ] && [ "$(state)" = "$before" ]'

# IPv6: with --dual-stack and an IPv6 address, ip6tables gets the same rules (Istio's
# ENABLE_INBOUND_IPV6), and ::6 is added to lo for Envoy's inbound passthrough source.
state6() { nsx ip6tables-save "$@" 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/'; }
# (A rule of the user's own again: with nf_tables an emptied nat table stays, see docs/limits.md.)
nsx ip6tables -t nat -A POSTROUTING -p udp --dport 9999 -j RETURN
before6=$(state6)
nsx "$BIN/weft-init" --dual-stack >"$tmp/log" 2>&1; rc=$?
check "weft-init --dual-stack applies IPv4 and IPv6 rules" \
  '[ $rc -eq 0 ] && grep -q "IPv6 rules applied" "$tmp/log" && [ "$(state -t nat)" = "$(cat tests/data/init/e2e-default.save)" ]'
check "ip6tables-save -t nat shows exactly the expected rules (tests/data/init/e2e-default6.save)" \
  '[ "$(state6 -t nat)" = "$(cat tests/data/init/e2e-default6.save)" ]'
check "::6/128 is on lo" 'has "inet6 ::6/128" nsx ip -6 addr show dev lo'
out=$(connect fd00:77:1::5 80)
check "IPv6: the app's outbound connection lands on 15001 ($out)" \
  '[[ "$out" == "proxy port=15001 orig=[fd00:77:1::5]:80 "* ]]'
out=$(connect fd00:77:1::5 80 1337)
check "IPv6: UID 1337 is not redirected ($out)" '[[ "$out" == "peer port=80 "* ]]'
out=$(connect fd00:77::2 8080 0 peer)
check "IPv6: inbound from the peer lands on 15006 ($out)" \
  '[[ "$out" == "proxy port=15006 orig=[fd00:77::2]:8080 "* ]]'
nsx "$BIN/weft-init" --cleanup >"$tmp/log" 2>&1; rc=$?
check "IPv6: --cleanup leaves iptables-save and ip6tables-save as before" \
  '[ $rc -eq 0 ] && [ "$(state)" = "$before" ] && [ "$(state6)" = "$before6" ]'

# TPROXY: inbound marked in mangle and handed to the transparent listener on 15006 with its
# source and destination kept; policy routing (fwmark 1337 -> table 133) set up and removed.
rules_before=$(nsx ip rule; nsx ip route show table 133)
nsx iptables -t mangle -A POSTROUTING -p udp --dport 9999 -j RETURN  # (nf_tables: see above)
before=$(state)
nsx "$BIN/weft-init" -m TPROXY >"$tmp/log" 2>&1; rc=$?
check "weft-init -m TPROXY exits 0" '[ $rc -eq 0 ]'
check "TPROXY: fwmark 1337 looks up table 133, which is local on lo" \
  'has "fwmark 0x539 lookup 133" nsx ip rule && has "local default dev lo" nsx ip route show table 133'
check "TPROXY: mangle ISTIO_INBOUND / ISTIO_DIVERT / ISTIO_TPROXY are installed" \
  'has "-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --on-port 15006" state -t mangle'
out=$(connect 10.77.0.2 8080 0 peer)
check "TPROXY: inbound from the peer lands on 15006, destination and source kept ($out)" \
  '[[ "$out" == "proxy port=15006 "*" from=10.77.0.1 local=10.77.0.2:8080" ]]'
out=$(connect 10.77.0.2 15021 0 peer)
check "TPROXY: the excluded port 15021 bypasses the proxy ($out)" '[[ "$out" == "app port=15021 "* ]]'
out=$(connect 10.77.1.5 80)
check "TPROXY: outbound is still redirected to 15001 ($out)" '[[ "$out" == "proxy port=15001 orig=10.77.1.5:80 "* ]]'
nsx "$BIN/weft-init" -m TPROXY --cleanup >"$tmp/log" 2>&1; rc=$?
check "TPROXY: --cleanup leaves iptables-save, ip rule and table 133 as before" \
  '[ $rc -eq 0 ] && [ "$(state)" = "$before" ] && [ "$(nsx ip rule; nsx ip route show table 133)" = "$rules_before" ]'
[ "$(state)" = "$before" ] || diff <(echo "$before") <(state)

# The legacy backend: chosen, as istio-iptables does, when iptables-legacy has rules here.
if command -v iptables-legacy >/dev/null; then
  lstate() { nsx iptables-legacy-save "$@" 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/'; }
  nsx iptables -t nat -D POSTROUTING -p udp --dport 9999 -j RETURN
  nsx iptables-legacy -t nat -A POSTROUTING -p udp --dport 9999 -j RETURN
  lbefore=$(lstate); nftbefore=$(state)
  nsx "$BIN/weft-init" >"$tmp/log" 2>&1; rc=$?
  check "with legacy rules present weft-init uses iptables-legacy ($(tail -1 "$tmp/log"))" \
    '[ $rc -eq 0 ] && grep -q "iptables-legacy-restore" "$tmp/log" && [ "$(state)" = "$nftbefore" ]'
  check "iptables-legacy-save -t nat shows exactly the expected rules" \
    '[ "$(lstate -t nat)" = "$(cat tests/data/init/e2e-default.save)" ]'
  out=$(connect 10.77.1.5 80)
  check "legacy: the app's outbound connection lands on 15001 ($out)" '[[ "$out" == "proxy port=15001 orig=10.77.1.5:80 "* ]]'
  nsx "$BIN/weft-init" --cleanup >"$tmp/log" 2>&1; rc=$?
  check "legacy: --cleanup leaves iptables-legacy-save exactly as before" '[ $rc -eq 0 ] && [ "$(lstate)" = "$lbefore" ]'
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
