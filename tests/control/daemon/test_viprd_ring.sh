#!/usr/bin/env bash
# viprd between real processes on 127.0.0.1: a CA made with vipr-enroll, 4 nodes enrolled with it
# (`issue`, 2 Node-IDs each), one started as the overlay's bootstrap peer, three joining (Attach, Join,
# Update between processes).  rl_peer, a RELOAD peer with its own enrolled certificate, then sends
# Ping, Probe and RouteQuery through each node and checks the signed answers; attacks one node (junk
# messages, a bad signature, a forged Leave, a flood, an oversize frame, garbage before TLS, half-open
# connections) and checks every refusal is logged while the node keeps answering the others; SIGTERM
# makes a node leave (Leave seen by its neighbours, exit 0); kill -9 and a restart keep the Node-ID.
# Every process started here is killed by PID on exit, pass or fail.
# Usage: test_viprd_ring.sh path/to/viprd path/to/vipr-enroll path/to/rl_peer
set -u
V=$(realpath "$1"); E=$(realpath "$2"); P=$(realpath "$3")
T=$(mktemp -d /tmp/viprd-ring.XXXXXX)
declare -A PID
EXTRA=()
cleanup() {
  for p in "${PID[@]}" "${EXTRA[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ "${FAILS:-1}" != 0 ]; then for f in "$T"/n*.log; do echo "---- $f"; tail -40 "$f"; done; fi
  rm -rf "$T"
}
trap cleanup EXIT
FAILS=0
ok()   { echo "ok   $*"; }
bad()  { echo "FAIL $*"; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
# wait_for SECONDS CMD...: poll (every 0.1 s) until CMD succeeds; bounded.
wait_for() { local n=$(( $1 * 10 )); shift; for _ in $(seq 1 $n); do "$@" && return 0; sleep 0.1; done; "$@"; }
cd "$T" || exit 2
OV=vipr.test
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
BOOT=$(free_port)

# ---- the overlay: CA, document, certificates -------------------------------------------------
"$E" --dir ca --set overlay.name=$OV --set overlay.bootstrap="127.0.0.1:$BOOT" \
  --set overlay.chord_update_interval=2s --set overlay.chord_ping_interval=2s init > init.out || { cat init.out; exit 2; }
enroll() {  # enroll DIR NODEIDS [NAME]: DIR/NAME.pem and .key (NAME defaults to node); prints the first Node-ID
  local name=${3:-node}
  mkdir -p "$1"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/$name.key" \
    -subj "/CN=$1" -out "$1-$name.csr" 2>/dev/null || exit 2
  "$E" --dir ca issue --csr "$1-$name.csr" --user "$1@test.example" --nodeids "$2" --out "$1/$name.pem" > "$1-$name.issued" || exit 2
  sed -n 's/.*node_ids=\([0-9a-f]*\).*/\1/p' "$1-$name.issued"
}
declare -A ID PORT
for i in 1 2 3 4; do
  ID[$i]=$(enroll n$i 2)
  PORT[$i]=$([ $i = 1 ] && echo $BOOT || free_port)
  cat > n$i.conf <<EOF
[node]
data_dir = n$i
listen = 127.0.0.1:${PORT[$i]}
shards = $([ $i = 1 ] && echo 2 || echo 1)
flood_rate = 200
flood_burst = 100
[overlay]
name = $OV
config_file = ca/config.xml
[link]
ca_file = ca/ca.pem
handshake_timeout = 1s
EOF
done
# Node 1 runs 2 shards: shard 1's vnode has its own certificate (node-1.pem) and listens on port + 1.
ID1B=$(enroll n1 1 node-1)
PEER_ID=$(enroll client 1)
peer() { "$P" ca/ca.pem client/node.pem client/node.key $OV "127.0.0.1:${PORT[$1]}" "${@:2}"; }

# ---- configuration checks --------------------------------------------------------------------
check "--check-config accepts a good file" bash -c "'$V' -c n1.conf --check-config | grep -q 'config ok'"
printf '[node]\ndata_dir = x\nshardz = 2\n' > typo.conf
out=$("$V" -c typo.conf --check-config 2>&1); rc=$?
check "--check-config names the file and line of an unknown key (exit 1)" test $rc = 1 -a -n "$(grep 'typo.conf:3:' <<<"$out")"
sed 's/^config_file = .*/&\ninitial_ttl = 5/' n1.conf > ttl.conf
out=$("$V" -c ttl.conf --check-config 2>&1); rc=$?
check "an overlay-wide key in the file is refused" test $rc = 1 -a -n "$(grep 'overlay-wide' <<<"$out")"
out=$("$V" -c n1.conf --set overlay.initial_ttl=5 --check-config 2>&1); rc=$?
check "a flag may not override an overlay-wide key" test $rc = 1 -a -n "$(grep 'overlay-wide' <<<"$out")"
check "a flag overrides the node's own key" bash -c "'$V' -c n1.conf --set node.shards=1 --check-config | grep -q 'config ok'"

# ---- the ring ----------------------------------------------------------------------------------
start() { "$V" -c n$1.conf >> n$1.log 2>&1 & PID[$1]=$!; }
joined() { grep -q 'mod=node event=joined' n$1.log; }
start 1
check "node 1 starts the overlay" wait_for 10 joined 1
for i in 2 3 4; do start $i; check "node $i joins (Attach, Update, Join between processes)" wait_for 20 joined $i; done

check "node 1's second shard joins with its own Node-ID" wait_for 20 bash -c "grep -q 'event=joined shard=1 node_id=$ID1B' n1.log"
# Every node answers a Ping sent to every vnode's id through it: the ring routes between processes.
ring_ok() {
  for i in 1 2 3 4; do for t in ${ID[1]} $ID1B ${ID[2]} ${ID[3]} ${ID[4]}; do
    peer $i ping $t > ping.out 2>&1
    grep -q "answer code=0x18 responder=$t verified=yes" ping.out || { echo "  node $i -> $t: $(cat ping.out)"; return 1; }
  done; done
}
check "Ping through every node to every vnode, answers signed by the target (20 pairs)" wait_for 30 ring_ok
out=$(peer 1 probe ${ID[3]})
check "Probe through node 1 answered by node 3 (responsible_set, num_resources absent, uptime)" \
  bash -c "grep -q 'answer code=0x2 responder=${ID[3]} verified=yes' <<<'$out' && grep -q 'probe1=' <<<'$out' && grep -q 'probe3=' <<<'$out'"
# The resource id just above node 2's id belongs to node 2's successor; ask through node 4.
out=$(peer 4 route_query ${ID[2]}); echo "  $out"
check "RouteQuery through node 4 is answered with a next peer" grep -q 'answer code=0x16 .*verified=yes.*next_peer=' <<<"$out"
out=$(peer 2 ping ${ID[1]})
check "a relayed answer carries the relays in its via list (hops >= 1 or direct)" grep -q 'hops=' <<<"$out"
out=$(peer 3 store ${ID[1]}); echo "  $out"
check "Store without the storage service: Error_Forbidden (2) from the responsible node, signed" \
  grep -q 'answer code=0xffff .*verified=yes .*error=2 info="no storage service at this node"' <<<"$out"

# ---- bad input against node 2; it keeps serving the others ---------------------------------
mark=$(wc -l < n2.log); mark3=$(wc -l < n3.log)
logged() { tail -n +$mark n2.log | grep -q "$1"; }
out=$(peer 2 junk); echo "  $out"
check "junk DATA frame: the link stays up" grep -q '^open' <<<"$out"
check "... and the message is refused with a log line" wait_for 5 logged 'event=msg_refused.*reason='
out=$(peer 2 badsig ${ID[2]}); rc=$?
check "bad signature: no answer" test $rc = 1
check "... logged reason=bad_signature" logged 'event=msg_refused.*reason=bad_signature'
out=$(peer 2 forged_leave ${ID[3]}); rc=$?
check "a Leave for node 3's id signed by the peer, relayed by node 2: no answer" test $rc = 1
check "... refused at node 3 (signer_not_originator)" wait_for 5 bash -c \
  "tail -n +$mark3 n3.log | grep -q 'event=msg_refused.*reason=signer_not_originator'"
check "... and node 3 is still in the ring (Ping through node 2)" bash -c \
  "'$P' ca/ca.pem client/node.pem client/node.key $OV 127.0.0.1:${PORT[2]} ping ${ID[3]} | grep -q 'responder=${ID[3]} verified=yes'"
out=$(peer 2 flood 2000 ${ID[2]}); echo "  $out"
ans=$(sed -n 's/.*answers=\([0-9]*\).*/\1/p' <<<"$out")
ms=$(sed -n 's/.*send_ms=\([0-9]*\).*/\1/p' <<<"$out")
# The token bucket admits burst + rate x time: 100 + 200/s over the sending time plus 0.5 s of slack.
limit=$(( 100 + 200 * (${ms:-0} + 500) / 1000 ))
check "a flood of 2000 Pings on one link: at most $limit answered (burst 100 + 200/s)" \
  test -n "$ans" -a "${ans:-99999}" -le "$limit"
check "... the excess dropped and logged reason=flood" logged 'event=msg_refused.*reason=flood'
# An oversize frame (length 2^24 - 1) through TLS with our certificate.
printf '\x80\x00\x00\x00\x01\xff\xff\xff' | timeout 5 openssl s_client -quiet -connect 127.0.0.1:${PORT[2]} \
  -cert client/node.pem -key client/node.key -CAfile ca/ca.pem > /dev/null 2>&1
check "oversize frame: link closed, logged frame_too_big" wait_for 5 logged 'reason=frame_too_big'
head -c 3000 /dev/urandom | timeout 3 bash -c "cat > /dev/tcp/127.0.0.1/${PORT[2]}" 2>/dev/null
check "garbage before TLS: logged tls_handshake" wait_for 5 logged 'reason=tls_handshake'
for k in 1 2 3 4 5; do (exec 3<>/dev/tcp/127.0.0.1/${PORT[2]}; sleep 4) 2>/dev/null & EXTRA+=($!); done
check "half-open connections: dropped at the handshake deadline, logged handshake_timeout" \
  wait_for 8 logged 'reason=handshake_timeout'
for j in 1 3 4; do
  check "node 2 routes a Ping to node $j after the attacks" bash -c "'$P' ca/ca.pem client/node.pem client/node.key $OV 127.0.0.1:${PORT[2]} ping ${ID[$j]} | grep -q 'responder=${ID[$j]} verified=yes'"
done
check "node 2 is still running" kill -0 ${PID[2]}

# ---- SIGHUP: reload what can change, say what cannot ----------------------------------------
sed -i 's/^\[node\]$/[node]\nlog_level = warn\nio_burst = 32/' n1.conf
kill -HUP ${PID[1]}
check "SIGHUP: the new log level applies" wait_for 5 grep -q 'event=reloaded log_level=warn' n1.log
check "SIGHUP: a change that needs a restart is logged" grep -q 'event=reload_needs_restart what=node_or_link_options' n1.log
check "node 1 keeps running after SIGHUP" kill -0 ${PID[1]}

# ---- SIGTERM: leave cleanly ----------------------------------------------------------------
kill -TERM ${PID[4]}; wait ${PID[4]}; rc=$?; unset 'PID[4]'
check "SIGTERM: node 4 exits 0" test $rc = 0
check "node 4 sent Leave (logged leaving)" grep -q 'event=leaving.*err=success' n4.log
no_route_to_4() { for i in 1 2 3; do peer $i ping ${ID[4]} | grep -q "responder=${ID[4]}" && return 1; done; return 0; }
check "the ring no longer answers for node 4" wait_for 10 no_route_to_4
ring3_ok() { for i in 1 2 3; do for j in 1 2 3; do
  peer $i ping ${ID[$j]} 2>/dev/null | grep -q "responder=${ID[$j]} verified=yes" || return 1; done; done; }
check "the three left still reach each other" wait_for 20 ring3_ok

# ---- kill -9 and restart with the same Node-ID ---------------------------------------------
kill -9 ${PID[3]}; wait ${PID[3]} 2>/dev/null; unset 'PID[3]'
ring2_ok() { for i in 1 2; do for j in 1 2; do
  peer $i ping ${ID[$j]} 2>/dev/null | grep -q "responder=${ID[$j]} verified=yes" || return 1; done; done; }
check "after kill -9 of node 3 the others repair and reach each other" wait_for 20 ring2_ok
: > n3.log
start 3
check "node 3 restarted from its data_dir rejoins with its Node-ID ${ID[3]}" \
  wait_for 20 bash -c "grep -q 'event=joined shard=0 node_id=${ID[3]}' n3.log"
check "... and is reached through node 1" wait_for 20 bash -c \
  "'$P' ca/ca.pem client/node.pem client/node.key $OV 127.0.0.1:${PORT[1]} ping ${ID[3]} | grep -q 'responder=${ID[3]} verified=yes'"

echo "fails=$FAILS"
[ $FAILS = 0 ]
