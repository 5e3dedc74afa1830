# Shared by the `weftctl mesh` tests (sourced, not run): pass/fail counting, the root check, and
# a snapshot of what a mesh leaves on the machine.
pass=0; fail=0
# check NAME EXPR: evaluates EXPR, prints ok/FAIL NAME and counts it.
check() { if eval "$2"; then echo "ok   $1"; pass=$((pass+1)); else echo "FAIL $1"; fail=$((fail+1)); fi; }
# finish: the summary line and the exit status.
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
if [ "$(id -u)" -ne 0 ] || ! command -v iptables >/dev/null; then
  echo "needs root and iptables"; echo "0 passed, 1 failed"; exit 1
fi
# mesh_snapshot NAME: every namespace (and its /etc/netns dir), link and iptables line of the root
# namespace naming NAME.
mesh_snapshot() { { ip netns list; ls /etc/netns 2>/dev/null; ip -o link show; iptables-save | grep -v '^#'; } | grep "$1" | sed 's/[0-9]\+: //' | sort; }
