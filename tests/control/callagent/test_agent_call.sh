#!/usr/bin/env bash
# vipr-agent call end to end on loopback: sipp callees over TCP play the routes' far ends.
#   1. fork: two routes, one answers (200, ACK, BYE), the other rings and is CANCELled (487, ACK);
#   2. fallback: a route answering 503 (down now), one 403 (forget), one refusing the connection (down
#      now): the call goes to the PSTN (exit 3), the 403 route is gone from the file, the others are down;
#   3. renewal (clock injected with --now): in the last tenth of the route's life the first call goes to
#      the PSTN (reason=renewal), the next over SIP; the new route learned before the old one expires
#      carries the calls after that expiry: no gap.
# Every process is started here, killed by PID on exit, and bounded by sipp's -timeout.
# usage: test_agent_call.sh VIPR_AGENT
set -euo pipefail
AGENT=$1
HERE=$(cd "$(dirname "$0")" && pwd)
UAS_OK="$HERE/../border/uas.xml"
for t in sipp python3; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed (scripts/setup.sh)"; exit 77; }
done
work=$(mktemp -d)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    echo "--- routes"; cat "$work/routes" 2>/dev/null || true
    echo "--- agent"; cat "$work/agent.out" "$work/agent.err" 2>/dev/null || true
    for f in "$work"/*.err; do echo "--- $f"; tail -5 "$f"; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $* [$SECONDS s]"; }
cd "$work"
# Listening ports below the ephemeral range (tests/support/free_ports.py says why).
free_ports() { python3 "$HERE/../../support/free_ports.py" "$1"; }
sed "s/@STATUS@/503/g" "$HERE/uas_status.xml.in" >uas_503.xml
sed "s/@STATUS@/403/g" "$HERE/uas_status.xml.in" >uas_403.xml

NUM=+14085551234
# uas NAME SCENARIO: one sipp callee for one call on a free port; sets PORT_<NAME> and PID_<NAME>
uas() {
  local name=$1 scen=$2 port mp
  read -r port mp <<<"$(free_ports 2)"
  sipp -sf "$scen" -t t1 -i 127.0.0.1 -p "$port" -mp "$mp" -m 1 -nostdin -timeout 20s -timeout_error \
    -trace_msg -message_file "$work/$name.msgs" >/dev/null 2>"$work/$name.err" &
  local p=$!
  pids+=($p)
  printf -v "PORT_$name" '%s' "$port"
  printf -v "PID_$name" '%s' "$p"
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  fail "sipp $name did not listen"
}
# A probe connection counts as nothing to sipp (it closes without a message) but wait for a clean socket.
uri() { echo "sip:$NUM@127.0.0.1:$1;transport=tcp"; }
call() { # expected-exit args...
  local want=$1; shift
  local rc=0
  "$AGENT" call --routes "$work/routes" --timeout 10 "$@" "$NUM" >"$work/agent.out" 2>"$work/agent.err" || rc=$?
  [ "$rc" = "$want" ] || fail "vipr-agent call $* exited $rc, want $want: $(cat "$work/agent.out")"
}
uas_done() { # name: sipp ran its one call to the end (it saw every message it waits for)
  local p; p=$(eval echo "\$PID_$1")
  wait "$p" || fail "sipp $1 did not complete its scenario (exit $?)"
}

NOW=$(date +%s)
LIFE=$((30 * 86400))

# ---- 1. fork to two routes, one answered --------------------------------------------------------------
uas ans "$UAS_OK"
uas ring "$HERE/uas_ring.xml"
echo "route number=$NUM learned=$NOW expires=$((NOW + LIFE)) ticket64=dGlja2V0 uri=$(uri "$PORT_ans") uri=$(uri "$PORT_ring")" >routes
call 0
grep -q "^outcome=answered number=$NUM uri=$(uri "$PORT_ans") " agent.out || fail "fork: not answered by the answering route"
uas_done ans
uas_done ring
grep -q '^X-ViPR-Ticket: dGlja2V0' ans.msgs || fail "fork: no ticket header on the INVITE"
grep -q '^X-ViPR-Ticket: dGlja2V0' ring.msgs || fail "fork: no ticket header on the other fork's INVITE"
cid_a=$(awk '/^Call-ID:/ {print $2; exit}' ans.msgs); cid_r=$(awk '/^Call-ID:/ {print $2; exit}' ring.msgs)
[ "$cid_a" = "$cid_r" ] || fail "fork: the two INVITEs are not one request (Call-ID $cid_a vs $cid_r)"
grep -q '^CANCEL ' ring.msgs || fail "fork: the ringing fork was not CANCELled"
[ "$(grep -c '^route ' routes)" = 2 ] && ! grep -q ' down_until=[0-9]' routes || fail "fork: routes changed"
ok "forked to 2 routes (one Call-ID, tickets on both): one answered (ACK, BYE), the other CANCELled (487 ACKed)"

# ---- 2. fallback on route-down and forget responses --------------------------------------------------
uas down "$PWD/uas_503.xml"
uas gone "$PWD/uas_403.xml"
read -r DEAD <<<"$(free_ports 1)"   # nothing listens there: connection refused
echo "route number=$NUM learned=$NOW expires=$((NOW + LIFE)) ticket64=dGlja2V0 uri=$(uri "$PORT_down") uri=$(uri "$PORT_gone") uri=$(uri "$DEAD")" >routes
call 3
grep -q "^outcome=pstn number=$NUM " agent.out || fail "fallback: not sent to the PSTN"
grep -q "status=503 class=route-down" agent.out || fail "fallback: 503 not route-down"
grep -q "status=403 class=forget" agent.out || fail "fallback: 403 not forget"
grep -q "127.0.0.1:$DEAD;transport=tcp status=0 class=route-down" agent.out || fail "fallback: refused connection not route-down"
uas_done down
uas_done gone
grep -q "$(uri "$PORT_gone")" routes && fail "fallback: the 403 route was not forgotten"
grep -q "$(uri "$PORT_down") .*down_until=" routes || fail "fallback: the 503 route not marked down"
grep -q "$(uri "$DEAD") .*down_until=" routes || fail "fallback: the unreachable route not marked down"
call 3
grep -q "^outcome=pstn number=$NUM reason=no-route" agent.out || fail "fallback: a down route was tried again at once"
call 3 --now $((NOW + 400))   # over 5 minutes later the down routes are tried again (and fail again)
grep -q "^fork " agent.out || fail "fallback: down routes not retried after 5 minutes"
ok "503, 403 and a refused connection: PSTN; 403 route forgotten, the others down for 5 min, then retried"

# ---- 3. renewal before expiry without a gap -------------------------------------------------------------
L=$((NOW - 27 * 86400 - 60))            # learned 27 days and a minute ago: in the last tenth of 30 days
uas r1 "$UAS_OK"
echo "route number=$NUM learned=$L expires=$((L + LIFE)) ticket64=b2xk uri=$(uri "$PORT_r1")" >routes
call 3 --now "$NOW"
grep -q "^outcome=pstn number=$NUM reason=renewal" agent.out || fail "renewal: first call in the window not over the PSTN"
grep -q "renewal_sent=$NOW" routes || fail "renewal: not remembered"
call 0 --now $((NOW + 60))
grep -q "^outcome=answered" agent.out || fail "renewal: the next call did not use the route"
uas_done r1
# the renewal call's validation brings a new route for the same URI (a later expiry) before the old one ends
V=$((NOW + 3600))
uas r2 "$UAS_OK"
sed -i "s|^route .*|route number=$NUM learned=$V expires=$((V + LIFE)) ticket64=bmV3 uri=$(uri "$PORT_r2")|" routes
call 0 --now $((L + LIFE + 60))   # a minute after the old route's expiry
grep -q "^outcome=answered" agent.out || fail "renewal: a gap after the old route expired"
uas_done r2
grep -q '^X-ViPR-Ticket: bmV3' r2.msgs || fail "renewal: the new route's ticket was not used"
ok "renewal: one PSTN call in the last tenth, SIP before and after, new route carries calls past the old expiry"
echo PASS
