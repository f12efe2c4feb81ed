#!/usr/bin/env bash
# vipr-agent against vipr-vap-server on 127.0.0.1: every command end to end; the numbers land in
# the server's RocksDB kind store (its closing line counts our live entries there).
# Usage: test_vipr_agent.sh VIPR_AGENT VIPR_VAP_SERVER
set -euo pipefail
AGENT=$1
SERVER=$2
dir=$(mktemp -d)
srv_pid=""
sub_pid=""
cleanup() {
  exec 3>&- 2>/dev/null || true
  [ -n "$sub_pid" ] && kill "$sub_pid" 2>/dev/null || true
  [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "--- server log" >&2; cat "$dir/srv.err" >&2 || true; exit 1; }

mkfifo "$dir/routes"
printf '# provisioned agents\npbx-east  s3cret-east\n' >"$dir/agents"
"$SERVER" --db "$dir/db" --listen 127.0.0.1:0 --agents 8 --password 'pw-%s' --agents-file "$dir/agents" --routes \
  <"$dir/routes" >"$dir/srv.out" 2>"$dir/srv.err" &
srv_pid=$!
exec 3>"$dir/routes"
for _ in $(seq 50); do grep -q "port" "$dir/srv.out" 2>/dev/null && break; sleep 0.1; done
port=$(awk '/listening/{print $6}' "$dir/srv.out")
[ -n "$port" ] || fail "server did not start"
A=("$AGENT" -s "127.0.0.1:$port" -p 'pw-%s' --timeout 5000)

# register: good and bad credentials
"${A[@]}" -u agent0 register | grep -q "registered as agent0" || fail "register"
"$AGENT" -s "127.0.0.1:$port" -u pbx-east -p s3cret-east register | grep -q "registered as pbx-east" \
  || fail "register with an agent from --agents-file"
if "${A[@]}" -u agent0 -p wrong register 2>"$dir/err"; then fail "wrong password accepted"; fi
grep -q "authentication failed" "$dir/err" || fail "no 401 message"

# publish: a file with numbers, a national number (-c 1), a range, comments; plus an argument range
printf '# carrier A\n+1 (408) 555-1212\n4085551213\n+1650555[000-099]   # block\n\n' >"$dir/nums"
out=$("${A[@]}" -u agent1 -c 1 -V 7 publish -f "$dir/nums" '+1408556[0000-0999]')
echo "$out" | grep -q "published 1102 of 1102 numbers vservice=7" || fail "publish: $out"
if "${A[@]}" -u agent1 publish '+1408555[00-0999]' 2>"$dir/err"; then fail "bad range accepted"; fi
grep -q "bad range" "$dir/err" || fail "bad range message"
out=$("${A[@]}" -u agent1 -V 7 publish --withdraw '+1650555[000-049]')
echo "$out" | grep -q "withdrew 50 of 50" || fail "withdraw: $out"

# publish --refresh: the call agent's refresh timer (overview §6.1): the block again every interval, sweeps
# counted, start to start; a sweep slower than the interval is reported; SIGTERM ends a refresher cleanly.
# (Numbers published above: a refresh claims nothing new, the quota total below stays 1,102.)
t0=$(date +%s%N)
out=$("${A[@]}" -u agent1 -V 7 publish --refresh 700ms --sweeps 3 '+1408556[0000-0099]' 2>"$dir/err")
el_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$(echo "$out" | grep -c '^sweep [123]: published 100 of 100 numbers vservice=7')" = 3 ] || fail "refresh sweeps: $out"
echo "$out" | grep -q "refresh stopped after 3 sweeps, 0 failed" || fail "refresh summary: $out"
[ "$el_ms" -ge 1400 ] || fail "3 sweeps 700 ms apart ended after $el_ms ms (not paced)"
! grep -q "longer than --refresh" "$dir/err" || fail "a 100-number sweep reported slow: $(cat "$dir/err")"
out=$("${A[@]}" -u agent1 -V 7 publish --refresh 1ms --sweeps 2 '+1408556[0000-0999]' 2>"$dir/err")
grep -q "refresh sweep 1 took .* longer than --refresh 0.0 s" "$dir/err" || fail "a slow sweep not reported: $(cat "$dir/err")"
"${A[@]}" -u agent1 -V 7 publish --refresh 300ms '+1408556[0000-0099]' >"$dir/refresher" 2>&1 &
ref_pid=$!
for _ in $(seq 100); do grep -q "^sweep 2:" "$dir/refresher" && break; sleep 0.1; done
kill -TERM "$ref_pid"
rc=0; wait "$ref_pid" || rc=$?
[ "$rc" = 0 ] || fail "refresher exit $rc after SIGTERM: $(cat "$dir/refresher")"
grep -q "refresh stopped after [0-9]* sweeps, 0 failed" "$dir/refresher" || fail "refresher: $(cat "$dir/refresher")"
if "${A[@]}" -u agent1 publish --sweeps 2 '+1408556[0000-0099]' 2>"$dir/err"; then fail "--sweeps without --refresh"; fi
if "${A[@]}" -u agent1 publish --refresh 0 '+1408556[0000-0099]' 2>"$dir/err"; then fail "--refresh 0 accepted"; fi
grep -q "bad --refresh" "$dir/err" || fail "bad --refresh message"

# vservice
out=$("${A[@]}" -u agent2 -V 7 vservice --uri 'sips:pbx@a.example' --black spam.example)
echo "$out" | grep -q "vservice 7 published: 1 URIs, 1 blacklisted" || fail "vservice: $out"

# upload: header, ISO and ms times, empty caller-ID (recent calls: the call-record store keeps 48 h)
iso_start=$(date -u -d '-20 min' +%Y-%m-%dT%H:%M:%SZ)
iso_stop=$(date -u -d '-15 min' +%Y-%m-%dT%H:%M:%S.250Z)
ms_start=$(( ($(date -u +%s) - 600) * 1000 ))
cat >"$dir/calls.csv" <<CSV
direction,called,caller,start,stop
orig,+14085551212,+16505550000,$iso_start,$iso_stop
term,+14085551213,,$ms_start,$((ms_start + 60000))
CSV
out=$("${A[@]}" -u agent3 upload "$dir/calls.csv")
echo "$out" | grep -q "uploaded 2 call records" || fail "upload: $out"
printf 'orig,+14085551212,,2026-11-21T10:05:00Z,2026-11-21T10:00:00Z\n' >"$dir/bad.csv"
if "${A[@]}" -u agent3 upload "$dir/bad.csv" 2>"$dir/err"; then fail "bad record accepted"; fi

# subscribe: a route fed to the server reaches the subscriber
"${A[@]}" -u agent4 -V 9 subscribe --count 1 --duration 10 >"$dir/sub.out" 2>"$dir/sub.err" &
sub_pid=$!
for _ in $(seq 50); do grep -q subscribed "$dir/sub.err" 2>/dev/null && break; sleep 0.1; done
echo "+14085551212 9 sips:+14085551212@b.example 0a0b0c0d 3600" >&3
wait "$sub_pid" || fail "subscribe exited with an error"
sub_pid=""
grep -q "route number=+14085551212 vservice=9 expires=3600 ticket=0a0b0c0d uri=sips:+14085551212@b.example" \
  "$dir/sub.out" || fail "route not printed: $(cat "$dir/sub.out")"

# load: 5 agents, 500 uploads/s for 1 s
out=$("${A[@]}" -u agent load --agents 5 --rate 500 --duration 1 2>/dev/null)
echo "$out" | grep -q "load agents=5 sent=500 ok=500 rate_limited=0 failed=0" || fail "load: $out"

kill "$srv_pid"
wait "$srv_pid" || true
srv_pid=""
# 1,102 published, 50 of them withdrawn: the tombstones stay charged to the quota (docs §2.5)
grep -q "quota_used=1102 vcrs=502 notifies=1" "$dir/srv.out" || fail "server totals: $(tail -1 "$dir/srv.out")"
echo "vipr-agent end-to-end: ok"
