#!/usr/bin/env bash
# Installs the Debian 12 packages Weft builds and tests with, if any are missing.
set -euo pipefail
pkgs=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libssl-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler
  libyaml-dev libjansson-dev libc-ares-dev libpcre2-dev libxxhash-dev
  curl wrk haproxy nginx-light nghttp2-client python3 python3-h2 python3-hyperframe python3-hpack python3-grpcio python3-protobuf openssl
  iproute2 iptables procps
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
