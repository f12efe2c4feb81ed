#!/usr/bin/env bash
# The README's main command: the whole ViPR flow (ARCHITECTURE.md §8) on real processes, in about a minute.
#
# Installs what is missing (scripts/setup.sh), builds (meson + ninja, warnings are errors), then:
#   - an enrollment and configuration server (vipr-enroll serve, HTTPS on loopback) with a CA made on
#     the spot; every node fetches the signed overlay document and enrolls for its certificate;
#   - an overlay of --nodes viprd processes (default 8) on 127.0.0.1, three of them carriers with the
#     ViPR service: A (owns +1 408 555 0100..), B (owns +33 1 23 45 0000..) and a thief T that claims
#     A's numbers too; each carrier runs as many Node-IDs as its block needs (quota per Node-ID);
#   - their call agents as vipr-agent processes: VService, Publish of each block (signed Stores
#     through the overlay, answered once the responsible peers acknowledged them), a subscriber each;
#   - a PSTN call simulator: calls B -> A and A -> B; each side's agent uploads its call record (clock
#     offsets, sometimes no caller-ID); T, which never receives the calls, uploads guessed records;
#   - validations: each originating server fetches the number's 3 copies, AppAttaches to every
#     claimant, runs PVP; the owner validates, the thief never; Notify to the subscribed agent;
#   - the border element of the called carrier checks every ticket (vipr-ticket verify).
# Exit status 0 only if every call validated against its owner, never against the thief, every route
# reached the agent and every ticket verified.
#
#   scripts/demo.sh                         8 nodes, 100 numbers per carrier, 12 calls
#   scripts/demo.sh --nodes 12 --numbers 20000 --calls 30
#   scripts/demo.sh --dht sim [options]     the in-process mode (bench/demo/vipr-demo: simulated overlays
#                                           larger than one machine holds); --dht sim --help for its options
#
# Logs, configurations, keys, call records: ./run/demo-<UTC time>/ (or --run-dir DIR).
# Every process started here is stopped by PID at the end, also on failure or Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build="${VIPRD_BUILD_DIR:-build}"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  cat <<'EOF'
options:
  --nodes N        viprd processes (8..64, default 8; 3 are carriers)
  --numbers N      numbers per carrier (1..1000000, default 100)
  --others N       numbers B publishes and T claims (T: the first half of A's block up to N/2); default
                   --numbers. With --numbers 1000000 --others 10000 a run measures one carrier's million
                   without waiting for three (calls to B's numbers and the thief's guesses use the smaller block)
  --calls N        calls placed (2..500, default 12)
  --seed S         call simulator seed (default: from the clock)
  --run-dir DIR    where logs and state go
  --dht sim        run bench/demo/vipr-demo instead (in-process simulated overlay)
  --refresh        after the publish, carrier A publishes its whole block again (a refresh sweep: every
                   entry re-stored with a newer storage_time) and the time it took is printed
  --delay MIN-MAX  the scheduler's delay of a validation after its call, in seconds (default 1-4, as a
                   server spreads its validations; 0-0 validates each record as it arrives: the daemons'
                   validation rate, bench/flow_bench.sh)
EOF
}

mode=processes
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --dht) [ "${args[$((i + 1))]:-}" = processes ] || mode=inproc ;;
    --dht=*) [ "${args[$i]#--dht=}" = processes ] || mode=inproc ;;
  esac
done

scripts/setup.sh
if [ ! -f "$build/build.ninja" ]; then
  echo "demo: configuring $build (meson setup)" >&2
  meson setup "$build" -Dwerror=true >/dev/null
fi
echo "demo: building (ninja -C $build)" >&2
if ! ninja -C "$build" >/dev/null; then
  echo "demo: the build failed; run 'ninja -C $build' to see why" >&2
  exit 1
fi

if [ "$mode" = inproc ]; then
  exec "$build/bench/demo/vipr-demo" \
    --agent "$build/control/tools/vipr-agent" \
    --ticket "$build/pvp/tools/vipr-ticket" \
    "$@"
fi

NODES=8 NUMBERS=100 OTHERS="" CALLS=12 SEED=$(date +%s) RUN="" REFRESH=0 DELAY=1-4
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES=$2; shift 2 ;;
    --numbers) NUMBERS=$2; shift 2 ;;
    --others) OTHERS=$2; shift 2 ;;
    --calls) CALLS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --run-dir) RUN=$2; shift 2 ;;
    --refresh) REFRESH=1; shift ;;
    --delay) DELAY=$2; shift 2 ;;
    --dht) shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo: unknown option $1 (--help)" >&2; exit 2 ;;
  esac
done
num_ok() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
num_ok "$NODES" 8 64 || { echo "demo: --nodes must be 8..64" >&2; exit 2; }
num_ok "$NUMBERS" 1 1000000 || { echo "demo: --numbers must be 1..1000000" >&2; exit 2; }
OTHERS=${OTHERS:-$NUMBERS}
num_ok "$OTHERS" 1 "$NUMBERS" || { echo "demo: --others must be 1..--numbers ($NUMBERS)" >&2; exit 2; }
num_ok "$CALLS" 2 500 || { echo "demo: --calls must be 2..500" >&2; exit 2; }
num_ok "$SEED" 0 99999999999 || { echo "demo: --seed must be a number" >&2; exit 2; }
[ "$CALLS" -le "$OTHERS" ] || CALLS=$OTHERS
DELAY_MIN=${DELAY%-*} DELAY_MAX=${DELAY#*-}
{ num_ok "$DELAY_MIN" 0 60 && num_ok "$DELAY_MAX" "$DELAY_MIN" 60; } \
  || { echo "demo: --delay must be MIN-MAX seconds, 0 <= MIN <= MAX <= 60 (e.g. 1-4)" >&2; exit 2; }

V="$root/$build/control/daemon/viprd"; E="$root/$build/control/tools/vipr-enroll"
AG="$root/$build/control/tools/vipr-agent"; TK="$root/$build/pvp/tools/vipr-ticket"
RUN=${RUN:-"$root/run/demo-$(date -u +%Y%m%dT%H%M%SZ)"}
mkdir -p "$RUN"; RUN=$(cd "$RUN" && pwd); cd "$RUN"
T0=$(date +%s)
say() { printf '[%3ds] %s\n' $(( $(date +%s) - T0 )) "$*"; }
die() { say "FAILED: $*"; say "logs: $RUN"; exit 1; }

declare -A PID
EXTRA=()
cleanup() {
  local rc=$? p
  set +e
  for p in "${EXTRA[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PID[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PID[@]}" "${EXTRA[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
  done
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_for() { local end=$(( SECONDS + $1 )); shift; while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.2; done; "$@"; }
# Listening ports below the ephemeral range (tests/support/free_ports.py says why).
free_port() { python3 "$root/tests/support/free_ports.py" 1; }

# ---- enrollment and configuration server -------------------------------------------------------
OV=demo.vipr.example
BOOT=$(free_port) EPORT=$(free_port)
# The overlay's quota per Node-ID (the signed document's vipr.quota): 10,000, raised for blocks above
# 8 x 10,000 so that a carrier's 8 Node-IDs (8 shards, one vnode each) can claim the whole block.
QUOTA=10000; [ "$NUMBERS" -le 80000 ] || QUOTA=$(( (NUMBERS + 7) / 8 ))
"$E" --dir ca --set overlay.name=$OV --set overlay.bootstrap="127.0.0.1:$BOOT" \
  --set overlay.chord_update_interval=2s --set overlay.chord_ping_interval=1s \
  --set enroll.listen=127.0.0.1:$EPORT --set enroll.url=https://localhost:$EPORT/enroll \
  --set vipr.quota=$QUOTA init > ca.out 2>&1 || die "vipr-enroll init (see $RUN/ca.out)"
: > ca/credentials
for i in $(seq 1 "$NODES"); do
  head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > n$i.password
  "$E" --dir ca passwd "node$i@demo" < n$i.password >> ca/credentials 2>>ca.out || die "vipr-enroll passwd"
done
# every node enrolls from 127.0.0.1 here: lift the per-address limit (60/min, burst 10) for the demo
"$E" --dir ca --set enroll.listen=127.0.0.1:$EPORT --set enroll.rate=100000 --set enroll.burst=10000 serve > enroll.log 2>&1 & EXTRA+=($!)
wait_for 10 grep -q '^listening' enroll.log || die "the enrollment server did not start (see $RUN/enroll.log)"
say "enrollment and configuration server on https://localhost:$EPORT (CA made on the spot; overlay $OV)"

# ---- the overlay: N viprd, three of them carriers ----------------------------------------------
declare -A ROLE=([2]=A [3]=B [4]=T) NODE_OF=([A]=2 [B]=3 [T]=4)
declare -A DOMAIN=([A]=carrier-a.example [B]=carrier-b.example [T]=thief.example)
declare -A VAP
# A carrier runs ceil(numbers / quota) Node-IDs (one per shard): the quota is per Node-ID (overview §7.1).
SHARDS=$(( (NUMBERS + QUOTA - 1) / QUOTA )); [ $SHARDS -le 8 ] || SHARDS=8
for i in $(seq 1 "$NODES"); do
  r=${ROLE[$i]:-}; k=$([ -n "$r" ] && echo $SHARDS || echo 1)
  mkdir -p n$i
  "$E" fetch --url "https://localhost:$EPORT/.well-known/reload-config" --overlay $OV --anchor ca/ca.pem \
    --cacert ca/ca.pem --out n$i/config.xml >> n$i.enroll 2>&1 || die "node $i could not fetch the document (see n$i.enroll)"
  # One certificate per vnode (shard): shard s > 0 reads node-s.pem / node-s.key.
  for sh in $(seq 0 $((k - 1))); do
    f=node$([ $sh = 0 ] || echo "-$sh")
    "$E" enroll --url "https://localhost:$EPORT/enroll" --cacert ca/ca.pem --overlay $OV --user "node$i@demo" \
      --password-file n$i.password --nodeids 1 --key n$i/$f.key --out n$i/$f.pem >> n$i.enroll 2>&1 \
      || die "node $i could not enroll (see n$i.enroll)"
  done
  cat > n$i.conf <<EOF
[node]
data_dir = n$i
listen = 127.0.0.1:$([ $i = 1 ] && echo $BOOT || free_port)
shards = $k
[overlay]
name = $OV
config_file = n$i/config.xml
[link]
ca_file = ca/ca.pem
EOF
  if [ -n "$r" ]; then
    VAP[$r]=$(free_port)
    "$TK" genkey > $r.keys
    cat > $r.server <<EOF
[server]
name = $r
domain = ${DOMAIN[$r]}
[vap]
port = ${VAP[$r]}
agents = agent-$r:pw-$r, watch-$r:pw-$r
tenants = watch-$r:agent-$r
[pvp]
port = 0
vcr_dir = $RUN/n$i/vcr
ticket_keys = $RUN/$r.keys
# all carriers share 127.0.0.1 here: a per-address limit would count the thief's failures against B
peer_fail_limit = 100000
[scheduler]
delay_min = ${DELAY_MIN}s
delay_max = ${DELAY_MAX}s
backoff = 2s
max_attempts = 10
EOF
    printf '[vipr]\nenabled = yes\nserver_config = %s\nquota = %s\n' "$RUN/$r.server" $QUOTA >> n$i.conf
  fi
done
start() { "$V" -c n$1.conf --log-file n$1.log 2>>n$1.log & PID[$1]=$!; }
joined() { grep -q 'mod=node event=joined' n$1.log 2>/dev/null; }
start 1
wait_for 15 joined 1 || die "the bootstrap node did not start (see $RUN/n1.log)"
for i in $(seq 2 "$NODES"); do start $i; done
all_joined() { for i in $(seq 1 "$NODES"); do joined $i || return 1; done; }
wait_for 60 all_joined || die "not every node joined (see $RUN/n*.log)"
settled() {
  local last=-1 same=0 n
  for _ in $(seq 1 60); do
    n=$(cat n*.log | grep -c 'event=peer_added\|event=joined')
    if [ "$n" = "$last" ]; then same=$((same + 1)); [ $same -ge 4 ] && return 0; else same=0; last=$n; fi
    sleep 1
  done
  return 1
}
settled || die "the ring did not settle"
say "overlay formed: $NODES viprd processes on 127.0.0.1 (TLS links, certificates from the enrollment server)"
for r in A B T; do
  say "  carrier $r (${DOMAIN[$r]}): node ${NODE_OF[$r]}, $SHARDS Node-ID(s) x quota $QUOTA, VAP on 127.0.0.1:${VAP[$r]}"
done

# ---- publish --------------------------------------------------------------------------------------
agent() { local r=$1; shift; "$AG" -s 127.0.0.1:${VAP[$r]} -u agent-$r -p pw-$r --timeout 120000 "$@"; }
watch() { local r=$1; shift; "$AG" -s 127.0.0.1:${VAP[$r]} -u watch-$r -p pw-$r "$@"; }
block() {  # block PREFIX FIRST COUNT WIDTH: ranges of at most 10,000 numbers
  local p=$1 f=$2 n=$3 w=$4 s e
  for ((s = f; s < f + n; s += 10000)); do
    e=$(( s + 10000 - 1 )); [ $e -lt $((f + n)) ] || e=$((f + n - 1))
    printf '%s[%0*d-%0*d]\n' "$p" "$w" "$s" "$w" "$e"
  done
}
block +1408 5550100 "$NUMBERS" 7 > A.numbers                  # +1 408 555 0100 ..
block +3312 3450000 "$OTHERS" 7 > B.numbers                   # +33 1 23 45 00 00 ..
block +1408 5550100 $(( (OTHERS + 1) / 2 )) 7 > T.numbers     # the thief claims (the first) half of A's block
agent A -V 1 vservice --uri sips:pbx@carrier-a.example > /dev/null || die "A's VService"
agent B -V 5 vservice --uri sips:sbc@carrier-b.example > /dev/null || die "B's VService"
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(date +%s.%N)"; }
for r in A B T; do
  t=$(date +%s.%N) done_n=0 total=$(wc -l < $r.numbers)
  : > $r.publish
  # One Publish per range of 10,000 (the agent cuts messages further): progress after each.
  while read -r range; do
    agent $r -V $([ $r = B ] && echo 5 || echo 1) publish "$range" >> $r.publish 2>&1 \
      || die "$r's publish of $range (see $RUN/$r.publish)"
    n=$(sed -n 's/^published \([0-9]*\) of.*/\1/p' $r.publish | tail -1); done_n=$((done_n + ${n:-0}))
    [ "$total" -le 1 ] || say "  carrier $r: $done_n numbers stored so far ($(elapsed $t) s)"
  done < $r.numbers
  say "carrier $r published $done_n numbers in $(elapsed $t) s (signed Stores in interleaved Resource-ID sweeps, acknowledged by the responsible peers)"
done
if [ $REFRESH = 1 ]; then
  # The call agent's refresh (overview §6.1): the same block again, every entry with a newer storage_time.
  t=$(date +%s.%N) done_n=0
  : > A.refresh
  while read -r range; do
    agent A -V 1 publish "$range" >> A.refresh 2>&1 || die "A's refresh of $range (see $RUN/A.refresh)"
    n=$(sed -n 's/^published \([0-9]*\) of.*/\1/p' A.refresh | tail -1); done_n=$((done_n + ${n:-0}))
  done < A.numbers
  say "refresh sweep: carrier A re-stored $done_n numbers in $(elapsed $t) s"
fi

# ---- subscribers, then the PSTN calls ---------------------------------------------------------------
watch A -V 1 subscribe --duration 600 > A.routes 2> A.sub.err & EXTRA+=($!)
watch B -V 5 subscribe --duration 600 > B.routes 2> B.sub.err & EXTRA+=($!)
sleep 0.5
python3 - "$CALLS" "$NUMBERS" "$SEED" "$OTHERS" <<'PY'
import random, sys, time
calls, numbers, seed, others = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
now = int(time.time() * 1000)
files = {n: open(n, "w") for n in ("A.orig.vcr", "A.term.vcr", "B.orig.vcr", "B.term.vcr", "T.term.vcr", "calls.txt")}
used = set()
for c in range(calls):
    to_a = c % 2 == 0
    while True:
        k = rng.randrange(numbers if to_a else others)
        if (to_a, k) not in used:
            used.add((to_a, k)); break
    called = "+1408%07d" % (5550100 + k) if to_a else "+3312%07d" % (3450000 + k)
    caller = ("+3312%07d" % (3450000 + rng.randrange(others))) if to_a else ("+1408%07d" % (5550100 + rng.randrange(numbers)))
    if rng.random() < 0.25:
        caller = ""                                     # no caller-ID on this call
    dur = rng.randrange(60, 900) * 1000
    stop = now - rng.randrange(1000, 20000)
    start = stop - dur
    while 90 > start // 1000 % 1800 or start // 1000 % 1800 > 1710:
        start -= 120000                                 # away from the half-hour rounding edges
    skew = rng.randrange(-2000, 2000)                   # the called side's clock
    orig, term = ("B", "A") if to_a else ("A", "B")
    files[orig + ".orig.vcr"].write("orig,%s,%s,%d,%d\n" % (called, caller, start, stop))
    files[term + ".term.vcr"].write("term,%s,%s,%d,%d\n" % (called, caller, start + skew, stop + skew + rng.randrange(0, 900)))
    if to_a and k < (others + 1) // 2:
        # The thief never saw the call: it guesses one ending on the minute, 3 minutes long, no caller-ID.
        g = stop // 60000 * 60000
        files["T.term.vcr"].write("term,%s,,%d,%d\n" % (called, g - 180000, g))
    files["calls.txt"].write("%s %s %s %s\n" % (orig, term, called, caller or "-"))
PY
say "PSTN: $CALLS calls placed (B -> A and A -> B; some without caller-ID); both sides' agents upload their records"
# The called side's switch reports at the end of the call, before the caller's server validates (a
# validation is due 1-4 s after the call and these calls ended up to 20 s ago): terminating records first.
: > A.upload; : > B.upload
for r in A B; do agent $r -V $([ $r = B ] && echo 5 || echo 1) upload $r.term.vcr >> $r.upload 2>&1 || die "$r's upload"; done
nt=$(wc -l < T.term.vcr)
if [ "$nt" -gt 0 ]; then agent T -V 1 upload T.term.vcr > T.upload 2>&1 || die "T's upload"; fi
for r in A B; do agent $r -V $([ $r = B ] && echo 5 || echo 1) upload $r.orig.vcr >> $r.upload 2>&1 || die "$r's upload"; done
say "  thief T uploads $nt guessed records for the numbers it claims"

# ---- validations, routes, tickets ----------------------------------------------------------------
declare -A NID
# A carrier's Node-IDs (one per shard) as an ERE alternation: a claimant is whichever of them signed the
# number's entry (the quota spreads a block over all of them), so every check below matches any of them
# (grep -E; the numbers' leading + is escaped there).
for r in A B T; do
  NID[$r]="($(sed -n 's/.*event=joined shard=[0-9]* node_id=\([0-9a-f]*\).*/\1/p' n${NODE_OF[$r]}.log | sort -u | paste -sd'|'))"
  [ "${NID[$r]}" != "()" ] || die "no joined Node-ID in n${NODE_OF[$r]}.log"
done
# outcome ORIG CALLED TERM: "route" (Notify received), "pending" (the owner validated, ticket pending:
# the call's entropy is below the threshold), or nothing yet.
outcome() {
  if grep -q "^route number=$2 " $1.routes; then echo route; return; fi
  if grep -Eq "event=validation srv=$1 number=\\$2 claimant=${NID[$3]} status=1 " validations.log; then echo pending; fi
}
# One pass over the carriers' logs per poll (they grow large with many numbers; a grep per call did not
# finish 200 calls' polls within the wait), then the per-call checks read the small extract.
snapshot() { grep -h 'mod=vsrv event=\(validation\|route\) ' n${NODE_OF[A]}.log n${NODE_OF[B]}.log > validations.log || true; }
all_done() { local o t c x; snapshot; while read -r o t c x; do [ -n "$(outcome $o $c $t)" ] || return 1; done < calls.txt; }
tv=$(date +%s.%N)
wait_for 90 all_done || true
snapshot
say "validations: the calls' outcomes were all in $(elapsed $tv) s after the last upload (each: 3 fetches, AppAttach, PVP, Notify; the scheduler delays each validation $DELAY_MIN-$DELAY_MAX s)"
# The servers' own clock: from their first validation outcome to their last (handshakes with the thief
# included), the validation rate the daemons sustained (with --delay 0-0 nothing but the work paces it).
python3 - validations.log "$CALLS" <<'PY' | while read -r line; do say "$line"; done
import datetime, sys
ts = [datetime.datetime.strptime(l[:23], "%Y-%m-%dT%H:%M:%S.%f") for l in open(sys.argv[1])
      if " event=validation " in l]
calls = int(sys.argv[2])
if len(ts) >= 2 and max(ts) > min(ts):
    span = (max(ts) - min(ts)).total_seconds()
    print("validation window: %d handshake outcomes (%d calls) between the servers' first and last, %.3f s: "
          "%.1f calls/s" % (len(ts), calls, span, calls / span))
PY
fails=0 verified=0 pending=0
while read -r orig term called caller; do
  case "$(outcome $orig $called $term)" in
  route)
    line=$(grep "^route number=$called " $orig.routes | head -1)
    tk=$(sed -n 's/.* ticket64=\([A-Za-z0-9_-]*\).*/\1/p' <<<"$line"); uri=$(sed -n 's/.* uri=\([^ ]*\).*/\1/p' <<<"$line")
    if "$TK" verify --key $term.keys --number "$called" --domain "${DOMAIN[$orig]}" "$tk" > /dev/null; then
      verified=$((verified + 1))
      say "  call $orig -> $called (caller $caller): validated against $term, Notify to $orig's agent: route $uri, ticket accepted by $term's border element"
    else
      say "  call $orig -> $called: ticket REFUSED by $term's border element"; fails=$((fails + 1))
    fi ;;
  pending)
    pending=$((pending + 1))
    e=$(grep -E "event=route srv=$orig number=\\$called claimant=${NID[$term]} status=pending" validations.log | head -1 | sed -n 's/.*entropy_cbits=\([0-9]*\) threshold_cbits=\([0-9]*\).*/\1 \2/p' || true)
    say "  call $orig -> $called (caller $caller): validated against $term, ticket pending: entropy ${e% *} below ${e#* } centibits (more calls will raise it)" ;;
  *)
    why=$(grep -E "event=validation srv=$orig number=\\$called claimant=${NID[$term]} " validations.log | sed -n 's/.*\(err="[^"]*"\).*/\1/p' | head -1 || true)
    say "  call $orig -> $called: NOT validated ${why:-(no validation within 90 s)}"; fails=$((fails + 1)) ;;
  esac
done < calls.txt
thief_routes=$(cat n*.log | grep -Ec "event=route srv=[AB] .*claimant=${NID[T]} status=" || true)
thief_tries=$(grep -h "event=pvp_served srv=T" n4.log | grep -c 'outcome=handshake-failed' || true)
say "thief T: $thief_tries PVP handshakes attempted against it, all failed; routes learned from T: $thief_routes"
thief_auth=$(grep -h "event=pvp_served srv=T" n4.log | grep -c 'outcome=routes\|outcome=pending' || true)
[ "$thief_routes" = 0 ] && [ "$thief_auth" = 0 ] || { say "  the thief validated $thief_auth time(s)!"; fails=$((fails + 1)); }
incidents=$(cat n*.log | grep -c 'mod=vsrv event=incident' || true)
say "summary: $CALLS calls: $verified validated with a route and a ticket the border element accepted, $pending validated with a pending ticket; the thief never validated; $incidents lookup incident(s) logged"
mem=""
for i in $(seq 1 "$NODES"); do mem="$mem n$i=$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' /proc/${PID[$i]}/status 2>/dev/null || echo '?')"; done
say "memory (resident MB per viprd):$mem"
say "logs: $RUN/n*.log (viprd, key=value), call agents: $RUN/*.routes *.publish *.upload, enrollment: $RUN/enroll.log"
[ $fails = 0 ] || die "$fails call(s) did not complete"
say "the flow worked"
