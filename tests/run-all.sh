#!/usr/bin/env bash
# Builds and runs every test three ways: plain, ASan+UBSan, and bounded libFuzzer runs.
# Ends with one summary line: "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
pass=0; fail=0
run() { # name build-dir cmake-args...
  local name=$1 dir=$2; shift 2
  echo "=== $name ($dir)"
  if ! cmake -S . -B "$dir" "$@" >/dev/null || ! cmake --build "$dir" -j "$jobs" >/dev/null; then
    cmake --build "$dir" -j 1 2>&1 | tail -40
    echo "$name: build failed"; fail=$((fail + 1)); return
  fi
  local out; out=$(mktemp)
  (cd "$dir" && ctest --output-on-failure -j "$jobs" ${CTEST_ARGS:-}) | tee "$out"
  local line; line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$out" | tail -1)
  rm -f "$out"
  if [ -z "$line" ]; then echo "$name: no ctest summary"; fail=$((fail + 1)); return; fi
  local total failed
  total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
  failed=$(sed -E 's/.*tests passed, ([0-9]+) tests failed.*/\1/' <<<"$line")
  pass=$((pass + total - failed)); fail=$((fail + failed))
}
run plain build -DCMAKE_BUILD_TYPE=RelWithDebInfo
run asan build/asan -DCMAKE_BUILD_TYPE=Debug -DWEFT_SANITIZE=ON
run fuzz build/fuzz -DCMAKE_BUILD_TYPE=Debug -DWEFT_FUZZ=ON -DCMAKE_C_COMPILER=clang \
  -DWEFT_FUZZ_SECONDS="${WEFT_FUZZ_SECONDS:-30}"
echo
echo "tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
