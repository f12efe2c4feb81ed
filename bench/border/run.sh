#!/usr/bin/env bash
# bench/border/run.sh - certificates for bench_border (a CA, the border, a carrier-b.example client), then
# the benchmark with every baseline.  usage: bench/border/run.sh [BUILD_DIR] [bench_border args...]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build}
shift || true
dir=$(mktemp -d)
trap '[ -n "${BENCH_KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"' EXIT
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
  -subj /CN=bench-ca 2>/dev/null
mk() { # name cn
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$2" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out "$1.pem" -extfile "$1.ext" 2>/dev/null
}
mk border border.example
mk client carrier-b.example
kam=()
if command -v kamailio >/dev/null; then
  kam=(--kamailio "$(command -v kamailio)" --kamailio-cfg "$src/bench/border/kamailio.cfg.in"
       --kamailio-tls "$src/bench/border/kamailio-tls.cfg.in")
fi
"$build/bench/bench_border" --border "$build/control/tools/vipr-border" --certs "$dir" "${kam[@]}" "$@"
