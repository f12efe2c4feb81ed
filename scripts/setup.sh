#!/usr/bin/env bash
# Install every Debian 12 package viprd needs to build, test and benchmark.
# Idempotent and quiet: does nothing when everything is already installed.
# Usage: scripts/setup.sh        (as root, or with sudo available)
set -euo pipefail

PKGS=(
  # build
  build-essential meson ninja-build pkg-config python3
  libssl-dev librocksdb-dev liburcu-dev libcmocka-dev
  # enrollment and the configuration document (control/node, vipr-enroll): XML, HTTPS client and server
  libxml2-dev libcurl4-openssl-dev libmicrohttpd-dev libgnutls28-dev curl openssl
  # the admin protocol (control/admin): JSON
  libjansson-dev
  # fuzzing (libFuzzer ships with clang's runtime)
  clang libclang-rt-14-dev
  # test oracles and tools: Wireshark's RELOAD/STUN dissectors, a real TLS-SRP peer,
  # network namespaces, pcap writing
  tshark gnutls-bin iproute2 xxd
  # benchmark baselines: RocksDB db_bench, OpenDHT dhtnode
  rocksdb-tools dhtnode
  # border element: SIP parser, metrics over HTTP; sipp (Debian's has no TLS: tests bridge it with socat),
  # curl for /metrics in tests; Kamailio with TLS as the benchmark baseline
  libosip2-dev libmicrohttpd-dev sip-tester socat curl kamailio kamailio-tls-modules
)
if [ "${VIPRD_WITH_DPDK:-0}" = 1 ]; then
  PKGS+=(libdpdk-dev)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; the answer does not matter here.
echo 'wireshark-common wireshark-common/install-setuid boolean false' | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done" >&2
