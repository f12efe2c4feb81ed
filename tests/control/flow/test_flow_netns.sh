#!/usr/bin/env bash
# The whole ViPR flow across 4 network namespaces (issue 16): `scripts/vipr-overlay up --nodes 8 --netns 4`
# starts the enrollment server in a hub namespace and 8 viprd processes spread over 4 namespaces joined by
# veth pairs to a bridge (node K in namespace K mod 4).  Nodes 1, 2 and 3 are the carriers A, B and thief T,
# each in a namespace of its own (--node-conf: their [vipr] section; each PVP listener binds its namespace's
# address, so every AppAttach and PVP connection crosses the bridge); the 5 others only route and store.
# One round: A publishes a block of 20 numbers, T claims the same block, B publishes its VService; the call
# agents (vipr-agent, run in their carrier's namespace) upload 4 calls' records, terminating at A and
# originating at B; B's server fetches each number's 3 copies, AppAttaches to A and T across namespaces and
# runs PVP; B's subscribed agent receives a Notify per number whose ticket A's border element (vipr-ticket
# verify with A's keys) accepts for B's domain and T's keys refuse.  T fails every handshake and never
# validates; T, guessing as a validator (originating records for A's numbers it never called), fails at A's
# PVP server and learns no route.
# Needs root (ip netns): exits 77 (skipped) when a namespace cannot be added.  Every process started here is
# killed by PID on any exit (the agents here, the daemons by `vipr-overlay down`, which stops them by PID),
# and every namespace the launcher created is deleted, by name, if `down` left it.
# Usage: test_flow_netns.sh VIPR_OVERLAY VIPRD VIPR_ENROLL VIPRCTL VIPR_AGENT VIPR_TICKET
set -u
LAUNCH=$(realpath "$1"); V=$(realpath "$2"); E=$(realpath "$3"); CTL=$(realpath "$4"); AG=$(realpath "$5")
TK=$(realpath "$6")
if [ "$(id -u)" != 0 ]; then echo "not root: network namespaces need it; skipping"; exit 77; fi
probe=vfprobe$$
if ! ip netns add "$probe" 2>/dev/null; then echo "ip netns add is not allowed here; skipping"; exit 77; fi
ip netns del "$probe"
T=$(mktemp -d /tmp/viprd-flowns.XXXXXX)
chmod 755 "$T"
OVD=$T/ov
EXTRA=()
cleanup() {
  for p in "${EXTRA[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  timeout 120 python3 "$LAUNCH" down --dir "$OVD" > /dev/null 2>&1
  if [ -f "$OVD/overlay.json" ]; then   # down left something: the namespaces, by name
    for ns in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["netns"]["created"]))' \
                "$OVD/overlay.json" 2>/dev/null); do
      ip netns del "$ns" 2>/dev/null
    done
  fi
  if [ "${FAILS:-1}" != 0 ]; then
    for f in "$OVD"/nodes/node*/viprd.log "$T"/*.sub; do
      [ -f "$f" ] && { echo "---- $f"; grep -v 'level=debug' "$f" | tail -25; }
    done
  fi
  [ -n "${KEEP_FLOW_DIR:-}" ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/../../support/checks.sh"   # FAILS, ok, bad, check, wait_for
. "$(dirname "$0")/../../support/flow_checks.sh" # has_routes, tickets_ok
cd "$T" || exit 2
t_start=$SECONDS

# Carriers: node 1 = A, 2 = B, 3 = T (namespaces 1, 2, 3).  Their VAP listeners stay on their namespace's
# loopback (the agents run there); their PVP listeners bind the namespace's address, 10.77.0.(10 + K mod 4)
# for node K (the launcher's addressing; the `composed` check below sees the address each one took).
declare -A NODE=([A]=1 [B]=2 [T]=3)
declare -A DOMAIN=([A]=carrier-a.example [B]=carrier-b.example [T]=thief.example)
VAP=15349
CONF_ARGS=()
for r in A B T; do
  "$TK" genkey > $r.keys || exit 2
  cat > $r.server <<EOF
[server]
name = $r
domain = ${DOMAIN[$r]}
[vap]
port = $VAP
agents = agent-$r:pw-$r
[pvp]
bind = 10.77.0.$((10 + ${NODE[$r]} % 4))
port = 0
vcr_dir = $OVD/nodes/node${NODE[$r]}/vcr
ticket_keys = $T/$r.keys
min_entropy_cbits = 100
orig_min_entropy_cbits = 100
[scheduler]
delay_min = 0
delay_max = 1s
backoff = 2s
max_attempts = 10
fetch_timeout = 10s
attach_timeout = 5s
EOF
  printf '[vipr]\nenabled = yes\nserver_config = %s\nstore_rate = 500\nalarm_refused = 3\n' "$T/$r.server" > $r.frag
  CONF_ARGS+=(--node-conf "${NODE[$r]}=$T/$r.frag")
done
timeout 300 python3 "$LAUNCH" up --nodes 8 --netns 4 --dir "$OVD" --viprd "$V" --enroll "$E" --viprctl "$CTL" \
  --overlay vipr-ns.test --join-timeout 90 --overlay-set chord_update_interval=2s \
  --overlay-set chord_ping_interval=1s --node-set link.handshake_timeout=1s "${CONF_ARGS[@]}" \
  > up.out 2> up.err
up_rc=$?
if ! check "vipr-overlay up: 8 viprd over 4 namespaces (carriers A, B, T in namespaces 1, 2, 3)" test $up_rc = 0; then
  cat up.err; echo "$FAILS failed"; exit 1
fi
NS() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"][int(sys.argv[2])]["netns"])' \
  "$OVD/overlay.json" "$1"; }
declare -A NSOF LOG SOCK
for r in A B T; do
  NSOF[$r]=$(NS ${NODE[$r]}); LOG[$r]=$OVD/nodes/node${NODE[$r]}/viprd.log; SOCK[$r]=$OVD/nodes/node${NODE[$r]}/admin.sock
done
nsall=$(python3 -c 'import json,sys; print(len({n["netns"] for n in json.load(open(sys.argv[1]))["nodes"]}))' "$OVD/overlay.json")
check "the 8 nodes run in 4 namespaces, A, B and T each in its own" \
  bash -c "[ $nsall = 4 ] && [ ${NSOF[A]} != ${NSOF[B]} ] && [ ${NSOF[B]} != ${NSOF[T]} ] && [ ${NSOF[A]} != ${NSOF[T]} ]"
for r in A B T; do
  check "$r's ViPR service is composed, its PVP listener on its namespace's address" \
    grep -q "mod=vipr event=composed srv=$r .*pvp=10\.77\.0\.$((10 + ${NODE[$r]})):" "${LOG[$r]}"
done
declare -A ID
for r in A B T; do ID[$r]=$(sed -n 's/.*mod=node event=joined shard=0 node_id=\([0-9a-f]*\).*/\1/p' "${LOG[$r]}" | head -1); done

# The ring has settled when no node learned a new peer for 4 s (bounded: 40 s).
settled() {
  local last=-1 same=0 n
  for _ in $(seq 1 40); do
    n=$(cat "$OVD"/nodes/node*/viprd.log | grep -c 'event=peer_added\|event=joined')
    if [ "$n" = "$last" ]; then same=$((same + 1)); [ $same -ge 4 ] && return 0; else same=0; last=$n; fi
    sleep 1
  done
  return 1
}
check "the ring settles (no new peer for 4 s)" settled

# agent R ARGS...: R's call agent, in R's namespace, to R's VAP listener on that namespace's loopback.
agent() { local r=$1; shift; ip netns exec "${NSOF[$r]}" "$AG" -s 127.0.0.1:$VAP -u agent-$r -p pw-$r --timeout 60000 "$@"; }
BLOCK='+1408555[0100-0119]'
check "A publishes its VService (its SIP URI)" agent A -V 1 vservice --uri sips:pbx@carrier-a.example
check "A publishes 20 numbers through the overlay across namespaces (answered once every Store was acknowledged)" \
  agent A -V 1 publish "$BLOCK"
check "T claims the same 20 numbers" agent T -V 1 publish "$BLOCK"
check "B publishes its VService" agent B -V 5 vservice --uri sip:sbc@carrier-b.example

# B's agent listens for routes (background, bounded by --duration; ip netns exec execs it: the PID is its own).
ip netns exec "${NSOF[B]}" "$AG" -s 127.0.0.1:$VAP -u agent-B -p pw-B --timeout 60000 -V 5 subscribe --count 4 \
  --duration 60 > r1.sub 2> r1.sub.err &
EXTRA+=($!)
sleep 1
calls 0 1 2 3
check "A's agent uploads the 4 terminating records" agent A -V 1 upload term.csv
check "B's agent uploads the 4 originating records" agent B -V 5 upload orig.csv
check "B's agent is notified of a route for each of the 4 numbers (3-copy fetch, AppAttach and PVP across namespaces, Notify)" \
  wait_for 60 has_routes r1.sub 0 1 2 3
check "every ticket verifies at A's border element for B, and never under T's keys" tickets_ok r1.sub 4
check "B's lookups found both claimants (A and T) in the 3 copies" \
  grep -q "event=validation srv=B .*claimant=${ID[T]} err=" "${LOG[B]}"
check "T never validates: no route from T's Node-ID at B" \
  bash -c "! grep -q 'event=route srv=B .*claimant=${ID[T]} status=routes' '${LOG[B]}'"
check "T's PVP server authenticated nobody" bash -c "! grep -q 'event=pvp_served srv=T .*outcome=routes' '${LOG[T]}'"

# The thief guesses as a validator: originating records for 3 of A's numbers it never called.
python3 - > tguess.csv <<'PY'
import time
g = int(time.time()) // 60 * 60000 - 60000
for k in (10, 11, 12):
    print("orig,+1408555%04d,,%d,%d" % (100 + k, g - 180000, g))
PY
check "T uploads 3 guessed originating records for A's numbers" agent T -V 1 upload tguess.csv
alarm_on() { "$CTL" -s "${SOCK[$1]}" alarms --json | grep -q "\"alarm\": \"$2\""; }
check "A: refused_credentials (T's guessed handshakes failed at A's PVP server, across namespaces)" \
  wait_for 30 alarm_on A refused_credentials
check "T never validates A's numbers: no route at T" bash -c "! grep -q 'event=route srv=T .*status=routes' '${LOG[T]}'"

echo "flow_netns_s=$((SECONDS - t_start))"
echo "$FAILS failed"
[ "$FAILS" = 0 ]
