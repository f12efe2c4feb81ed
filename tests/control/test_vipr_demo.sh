#!/usr/bin/env bash
# The README's main command as a test: small vipr-demo runs must end with the
# flow working (exit 0, "result: OK") and leave their logs in the run directory:
# on the overlay simulator (with the rogue vnode outvoted), then on the plain
# in-process table.
#   test_vipr_demo.sh VIPR_DEMO VIPR_AGENT VIPR_TICKET
set -euo pipefail
demo=$1 agent=$2 ticket=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

run() { # name, extra args...
  local name=$1 status=0
  shift
  "$demo" --calls 6 --numbers 20 --delay-max 2 --seed 42 --timeout 60 \
    --run-dir "$dir/$name" --agent "$agent" --ticket "$ticket" "$@" >"$dir/$name.out" 2>&1 || status=$?
  cat "$dir/$name.out"
  [ "$status" -eq 0 ] || fail "$name: vipr-demo exited $status"
  out="$dir/$name.out"
  grep -q 'overlay formed: [0-9]* nodes' "$out" || fail "$name: no 'overlay formed' line"
  grep -q 'result: OK' "$out" || fail "$name: no 'result: OK'"
  grep -q 'FAILED: all [0-9]* TLS-SRP handshakes failed' "$out" || fail "$name: the thief was never tried"
  grep -q "received Notify" "$out" || fail "$name: no Notify reached a subscribed agent"
  grep -q "accepted; presented by spammer.example: refused (wrong-domain)" "$out" || fail "$name: no ticket verified"
  ! grep -q "against thief.example *OK" "$out" || fail "$name: the thief validated"
  [ -s "$dir/$name/viprd.log" ] || fail "$name: no server log"
  grep -q 'event=pvp_served' "$dir/$name/viprd.log" || fail "$name: server log has no PVP events"
  grep -q '^published 20 of 20 numbers' "$dir/$name/agents.log" || fail "$name: agents log lacks the publish"
}

run sim --nodes 12 --fast
grep -q 'overlay formed: 15 nodes' "$dir/sim.out" || fail "sim: expected 15 overlay nodes"
grep -q 'overlay INCIDENT: the 3 copies disagree' "$dir/sim.out" || fail "sim: the rogue vnode went unnoticed"
grep -q 'event=incident' "$dir/sim/viprd.log" || fail "sim: incident not logged"
run memory --dht memory
echo "vipr-demo flow OK (overlay simulator and in-process table)"
