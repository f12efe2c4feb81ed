# tests/support/flow_checks.sh - the flow tests' checks of B's learned routes (sourced after checks.sh; needs
# $TK, vipr-ticket, and A.keys / T.keys in the working directory).
#   calls K...             one PSTN call to +1408555(0100 + K) each: orig.csv (B's side) and term.csv (A's)
#   has_routes FILE K...   a route arrived in FILE for each call K (number +1408555 0100+K)
#   tickets_ok FILE [MIN]  every route's ticket in FILE verifies under A's keys for B's domain and none under
#                          T's, each route names A's URI, and there are at least MIN routes (default 1)
has_routes() {
  local f=$1 k; shift
  for k in "$@"; do
    grep -q "^route number=+1408555$(printf %04d $((100 + k))) " "$f" 2>/dev/null || return 1
  done
}

tickets_ok() {
  local n=0 num tk line
  while read -r line; do
    num=$(sed -n 's/.* number=\([^ ]*\).*/\1/p' <<<"$line"); tk=$(sed -n 's/.* ticket64=\([A-Za-z0-9_-]*\).*/\1/p' <<<"$line")
    grep -q 'uri=sips:pbx@carrier-a.example' <<<"$line" || { echo "  not A's URI: $line"; return 1; }
    "$TK" verify --key A.keys --number "$num" --domain carrier-b.example "$tk" > /dev/null || { echo "  A refused $num"; return 1; }
    if "$TK" verify --key T.keys --number "$num" --domain carrier-b.example "$tk" > /dev/null 2>&1; then
      echo "  T's keys accepted $num"; return 1
    fi
    n=$((n + 1))
  done < <(grep '^route ' "$1")
  [ $n -ge "${2:-1}" ]
}

# calls K...: one call to +1408555(0100 + K) each; one CSV per side; stop 2 s ago, 3 min long, away
# from the hour's rounding edges.
calls() {
  python3 - "$@" <<'PY'
import sys, time
now = int(time.time() * 1000)
o = open("orig.csv", "w"); t = open("term.csv", "w")
for k in map(int, sys.argv[1:]):
    stop = now - 2000
    start = stop - 183000
    off = start // 1000 % 1800
    if off < 90 or off > 1800 - 90:
        start -= 240000
    called = "+1408555%04d" % (100 + k)
    caller = "+3312345%04d" % k
    o.write("orig,%s,%s,%d,%d\n" % (called, caller, start, stop))
    t.write("term,%s,%s,%d,%d\n" % (called, caller, start + 700, stop + 900))  # A's clock is 0.7 s ahead
PY
}
