#!/usr/bin/env bash
# The README's main command as a test: a small vipr-demo run must end with the
# flow working (exit 0, "result: OK") and leave its logs in the run directory.
#   test_vipr_demo.sh VIPR_DEMO VIPR_AGENT VIPR_TICKET
set -euo pipefail
demo=$1 agent=$2 ticket=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out="$dir/out.txt"
status=0
"$demo" --calls 6 --numbers 20 --nodes 12 --fast --delay-max 2 --seed 42 --timeout 60 \
  --run-dir "$dir/run" --agent "$agent" --ticket "$ticket" >"$out" 2>&1 || status=$?
cat "$out"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$status" -eq 0 ] || fail "vipr-demo exited $status"
grep -q 'overlay formed: [0-9]* nodes' "$out" || fail "no 'overlay formed' line"
grep -q 'result: OK' "$out" || fail "no 'result: OK'"
grep -q 'FAILED: all [0-9]* TLS-SRP handshakes failed' "$out" || fail "the thief was never tried"
grep -q "received Notify" "$out" || fail "no Notify reached a subscribed agent"
grep -q "accepted; presented by spammer.example: refused (wrong-domain)" "$out" || fail "no ticket verified"
! grep -q "against thief.example *OK" "$out" || fail "the thief validated"
[ -s "$dir/run/viprd.log" ] || fail "no server log"
grep -q 'event=pvp_served' "$dir/run/viprd.log" || fail "server log has no PVP events"
grep -q '^published 20 of 20 numbers' "$dir/run/agents.log" || fail "agents log lacks the publish"
echo "vipr-demo flow OK"
