#!/usr/bin/env bash
# viprd between real processes on 127.0.0.1: a CA made with vipr-enroll, 4 nodes enrolled with it
# (`issue`, 2 Node-IDs each), one started as the overlay's bootstrap peer, three joining (Attach, Join,
# Update between processes).  rl_peer, a RELOAD peer with its own enrolled certificate, then sends
# Ping, Probe and RouteQuery through each node and checks the signed answers; attacks one node (junk
# messages, a bad signature, a forged Leave, a flood, an oversize frame, garbage before TLS, half-open
# connections) and checks every refusal is logged while the node keeps answering the others; SIGTERM
# makes a node leave (Leave seen by its neighbours, exit 0); kill -9 and a restart keep the Node-ID.
# Every process started here is killed by PID on exit, pass or fail.
# The storage service between processes: a ViPR entry stored through one node is fetched through every
# other (each entry verified by the fetcher), its replicas answer from node 3's two successors, node_req
# (a ring member driving node_request) exercises every method, a joining node receives its range, a
# leaving one hands its data off, a non-neighbour's replica Store and a bad entry signature are refused,
# kill -9 loses no acknowledged Store and the restarted node comes back with its data.
# Usage: test_viprd_ring.sh path/to/viprd path/to/vipr-enroll path/to/rl_peer path/to/node_req
set -u
FP=$(cd "$(dirname "$0")/../../support" && pwd)/free_ports.py
V=$(realpath "$1"); E=$(realpath "$2"); P=$(realpath "$3"); NR=$(realpath "$4")
T=$(mktemp -d /tmp/viprd-ring.XXXXXX)
declare -A PID
EXTRA=()
cleanup() {
  for p in "${PID[@]}" "${EXTRA[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ "${FAILS:-1}" != 0 ]; then for f in "$T"/n*.log; do echo "---- $f"; tail -40 "$f"; done; fi
  rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/../../support/checks.sh"   # FAILS, ok, bad, check, wait_for
cd "$T" || exit 2
OV=vipr.test
# Listening ports below the ephemeral range (tests/support/free_ports.py says why).
free_port() { python3 "$FP" 1; }
# node 1 runs 2 shards on BOOT and BOOT + 1: both must be free
BOOT=$(python3 "$FP" 2 --consecutive | cut -d' ' -f1)

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
# node 5: node_req's node (joins and leaves while the test runs)
ID[5]=$(enroll n5 1)
sed -e "s/^data_dir = n1/data_dir = n5/" -e "s/^listen = .*/listen = 127.0.0.1:0/" -e "s/^shards = .*/shards = 1/" n1.conf > n5.conf
nreq() { timeout 90 "$NR" n5.conf "$@" 2>> n5.log; }
# after ID: the Resource-ID routed to ID's successor (ID + 1 mod 2^128; node_after in node.h)
after() { python3 -c "import sys;print('%032x'%((int(sys.argv[1],16)+1)%(1<<128)))" "$1"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2" | head -1; }
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
check "Probe through node 1 answered by node 3 (responsible_set, num_resources, uptime)" \
  bash -c "grep -q 'answer code=0x2 responder=${ID[3]} verified=yes' <<<'$out' && grep -q 'probe1=' <<<'$out' && grep -q 'probe3=' <<<'$out'"
# The resource id just above node 2's id belongs to node 2's successor; ask through node 4.
out=$(peer 4 route_query ${ID[2]}); echo "  $out"
check "RouteQuery through node 4 is answered with a next peer" grep -q 'answer code=0x16 .*verified=yes.*next_peer=' <<<"$out"
out=$(peer 2 ping ${ID[1]})
check "a relayed answer carries the relays in its via list (hops >= 1 or direct)" grep -q 'hops=' <<<"$out"
# A request whose answer is lost (rl_peer's link goes before it comes back), retransmitted with the same
# transaction id: node 3 already answered it, so its replay window alone would drop the retransmission.
out=$(peer 2 retx ${ID[3]}); echo "  $out"
check "a retransmitted Ping whose first answer was lost is answered again by node 3 (answer cache, RFC 6940 §6.2)" \
  grep -q "answer code=0x18 responder=${ID[3]} verified=yes" <<<"$out"
check "... logged answer_resent by node 3" grep -q 'event=answer_resent .*code=0x17' n3.log
out=$(peer 3 store ${ID[1]}); echo "  $out"
check "an empty Store is answered (StoreAns, no kinds) by the responsible node, signed" \
  grep -q "answer code=0x8 responder=${ID[1]} verified=yes .*kinds=0" <<<"$out"

# ---- the storage service between processes ---------------------------------------------------
R=${ID[3]}   # node 3's own id: node 3 is responsible for it
out=$(peer 1 vstore $R); echo "  $out"
check "a ViPR Store through node 1 is answered by node 3 (after its WAL write), signed" \
  grep -q "answer code=0x8 responder=$R verified=yes .*kinds=1" <<<"$out"
out=$(peer 1 probe $R)
check "... and node 3's Probe now counts it (num_resources >= 1, from its store)" \
  bash -c "grep -q 'answer code=0x2 responder=$R verified=yes' <<<'$out' && grep -Eq 'probe2=[1-9]' <<<'$out'"
for i in 1 2 3 4; do
  out=$(peer $i fetch $R)
  check "... fetched through node $i from node 3, the entry's signature verified by the fetcher" \
    grep -q "answer code=0xa responder=$R verified=yes .*fetch_verify=success entries=1 rejected=0" <<<"$out"
done
# Replicas: a Fetch addressed to after(P) reaches P's successor, which answers from its copy.
S1=; S2=
has_replicas() {
  out=$(nreq fetch:$R@$(after $R)); S1=$(field responder "$out")
  grep -q 'code=0xa .*verify=success entries=1 rejected=0' <<<"$out" && [ -n "$S1" ] && [ "$S1" != "$R" ] || return 1
  out=$(nreq fetch:$R@$(after $S1)); S2=$(field responder "$out")
  grep -q 'code=0xa .*verify=success entries=1 rejected=0' <<<"$out" && [ -n "$S2" ] && [ "$S2" != "$R" ] && [ "$S2" != "$S1" ]
}
check "the entry has replicas at node 3's two successors (each answers from its copy, verified)" has_replicas
echo "  replicas at $S1 $S2"
# Every method through node_request, from node 5 (a ring member) to the other processes.
R2=${ID[2]}
out=$(nreq ping:${ID[1]} probe:${ID[3]} appattach:${ID[4]} store:$R2 fetch:$R2 stat:$R2 find:$R2 ping:${ID[5]} \
      badstore:$R2 replica:$R2 fetch:$R2 appconnect:${ID[5]} fetchcert:${ID[3]}); rc=$?; echo "$out" | sed 's/^/  /'
check "node_request refuses: before node_start (VP_ESTATE), a method it does not originate (Join: VP_EINVAL), a shard that does not exist (VP_EINVAL)" \
  grep -q 'api before_start=VP_ESTATE join_method=VP_EINVAL no_shard=VP_EINVAL' <<<"$out"
check "node_request: Ping answered by node 1, signed" grep -q "req=ping err=success code=0x18 responder=${ID[1]} signed=yes" <<<"$out"
check "node_request: Probe answered by node 3" grep -q "req=probe err=success code=0x2 responder=${ID[3]} signed=yes .*probe_infos=2" <<<"$out"
check "node_request: AppAttach answered by node 4 (no application there: Not_Found)" \
  grep -q "req=appattach err=success code=0xffff responder=${ID[4]} .*error=3" <<<"$out"
check "node_request: Store answered by node 2" grep -q "req=store err=success code=0x8 responder=$R2 signed=yes .*kinds=1" <<<"$out"
check "node_request: Fetch from node 2, the entry verified" \
  grep -q "req=fetch err=success code=0xa responder=$R2 signed=yes .*verify=success entries=1 rejected=0" <<<"$out"
check "node_request: Stat from node 2 (one entry's metadata)" grep -q "req=stat err=success code=0x1a responder=$R2 .*metas=1" <<<"$out"
check "node_request: Find from node 2" grep -q "req=find err=success code=0xe responder=$R2 .*closest_len=16" <<<"$out"
check "node_request: AppAttach for an application the node serves: its candidate, connected to" \
  bash -c "grep -q 'req=appconnect err=success code=0x1e responder=${ID[5]} .*application=5061 connect=success' <<<'$out' && grep -q 'req=appconnect connected=yes' <<<'$out'"
check "node 3 published its own certificate at join (CERTIFICATE_BY_NODE, fetched and verified NODE-MATCH)" \
  grep -q "req=fetchcert err=success code=0xa .*verify=success entries=1 rejected=0" <<<"$out"
check "... logged cert_published by node 3" grep -q 'event=cert_published shard=0 responder=' n3.log
check "node_request: a Ping to its own vnode is served locally" grep -q "req=ping err=success code=0x18 responder=${ID[5]} signed=yes" <<<"$out"
check "a Store whose entry signature is broken: refused (Forbidden) by node 2" \
  grep -q "req=badstore err=success code=0xffff responder=$R2 .*error=2" <<<"$out"
check "... logged by node 2 with the reason" grep -q 'event=stored_data_refused .*reason=bad_signature' n2.log
check "a replica Store from a ring member that is not R's predecessor: refused" \
  grep -q "req=replica err=success code=0xffff responder=$R2 .*error=2 info=\"not-a-replica-sender\"" <<<"$out"
check "node_req exits 0 (every request answered)" test $rc = 0
# A Node-ID nobody has, inside node 1's range: the request goes there, nobody answers; the originator
# retransmits end to end (at 0, 1/8, 3/8, 7/8 of the 3 s reliability timer) and fails at the timer.
GHOST=$(python3 -c "import sys;print('%032x'%((int(sys.argv[1],16)-1)%(1<<128)))" ${ID[1]})
out=$(nreq ping:$GHOST); echo "  $out"
check "node_request to a Node-ID nobody has: 4 transmissions, then timeout" grep -q "req=ping err=timed out attempts=4" <<<"$out"
R3=$(after ${ID[4]})   # a resource the non-neighbour peer tries to plant as a replica
out=$(peer 2 replica $R3); echo "  $out"
check "neighbour-only: a replica Store from a peer outside the ring is refused (not-a-replica-sender)" \
  grep -q 'answer code=0xffff .*verified=yes .*error=2 info="not-a-replica-sender"' <<<"$out"
out=$(peer 3 fetch $R3)
check "... and nothing was stored (Fetch: 0 entries)" grep -q 'answer code=0xa .*fetch_verify=success entries=0' <<<"$out"
check "... logged replica_refused" bash -c "grep -q 'event=replica_refused replica_number=1 reason=not-a-replica-sender' n*.log"
# Join: 150 entries stored in node 5's range (its id and the 149 ids below) before it joins are handed to
# node 5 when it joins: more than the receiving link's flood burst (100), so the handoff must be paced.
R5=${ID[5]}
out=$(peer 2 vstoren 150 $R5); echo "  $out"
check "150 Stores in node 5's range before node 5 exists (answered by its future successor)" grep -q 'stored=150 of=150' <<<"$out"
mark5=$(wc -l < n5.log)
# Then node 5 takes 400 Stores at once in its range (below those 150): their replicas leave at once for its
# two successors, twice flood_burst + the flood_rate of the test's links; each successor must hold all 400
# (the link from a ring neighbour has neighbour_flood_rate).  Node 5 then leaves (node_leave with 3 s) with
# 550 entries, more than its paced handoff (flood_rate / 2 = 100 a second) sends in 3 s.
RB=$(python3 -c "import sys;print('%032x'%((int(sys.argv[1],16)-150)%(1<<128)))" $R5)
read -r S1 S2 <<<"$(python3 -c "
import sys
me = int(sys.argv[1], 16); ids = sorted({int(x, 16) for x in sys.argv[2:]}, key=lambda x: (x - me) % (1 << 128))
print('%032x %032x' % (ids[0], ids[1]))" $R5 ${ID[1]} $ID1B ${ID[2]} ${ID[3]} ${ID[4]})"
out=$(nreq fetchuntil:$R5 countn:$R5,150 storen:$RB,400 countn:$RB,400@$(after $R5) countn:$RB,400@$(after $S1))
echo "$out" | sed 's/^/  /'
check "join: node 5 receives its range (it answers the Fetch of its own id itself, entry verified)" \
  grep -q "req=fetchuntil err=success code=0xa responder=$R5 .*verify=success entries=1 rejected=0" <<<"$out"
check "... all 150 entries of its range, each verified (handoff paced under the flood limit)" \
  bash -c "grep 'req=countn' <<<'$out' | head -1 | grep -q 'found=150 of=150'"
check "400 Stores at once into node 5, each acknowledged and called back once, while another thread asks for the status: every status called back too (one ring producer at a time, issue 16)" \
  grep -Eq 'req=storen stored=400 of=400 called_back=400 of=400 statuses=([1-9][0-9]*) of=\1$' <<<"$out"
check "... all 400 replicas at node 5's first successor $S1 (a burst 4x flood_burst over one link)" \
  bash -c "grep 'req=countn' <<<'$out' | sed -n 2p | grep -q 'found=400 of=400'"
check "... and all 400 at its second successor $S2" \
  bash -c "grep 'req=countn' <<<'$out' | sed -n 3p | grep -q 'found=400 of=400'"
sent=$(tail -n +$mark5 n5.log | sed -n 's/.*event=store_action .*op=handoff .*entries=\([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}')
check "leave: node 5 handed all its data off when it left, past node_leave's 3 s (logged: $sent entries sent, at least 550)" \
  test "$sent" -ge 550
out=$(peer 1 fetch $R5)
check "... and the entry is still fetched through node 1 after node 5 left" \
  grep -q 'answer code=0xa .*verified=yes .*fetch_verify=success entries=1' <<<"$out"

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
check "... the excess dropped and logged reason=flood (not a ring neighbour: flood_rate)" \
  logged 'event=msg_refused.*reason=flood rate=200 neighbour=no'
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

# ---- ConfigUpdate and the document in force ---------------------------------------------------
# A peer enrolled as BAD is revoked by a sequence-2 document (vipr-enroll revoke); another CA's signer makes
# a sequence-2 document of the same overlay (a forger); the sequence-1 document is kept for a replay.
BAD_ID=$(enroll bad 1)
badpeer() { "$P" ca/ca.pem bad/node.pem bad/node.key $OV "127.0.0.1:${PORT[$1]}" "${@:2}" 2>&1; }
check "before its revocation a peer enrolled as $BAD_ID is served by node 2" \
  grep -q "responder=${ID[2]} verified=yes" <<<"$(badpeer 2 ping ${ID[2]})"
cp ca/config.xml doc1.xml
"$E" --dir ca2 --set overlay.name=$OV --set overlay.bootstrap="127.0.0.1:$BOOT" init > ca2.out 2>&1 &&
  "$E" --dir ca2 revoke ${ID[3]} > ca2-revoke.out 2>&1 || bad "a second CA (the forger) made its document"
"$E" --dir ca revoke $BAD_ID > revoke.out 2>&1 || bad "vipr-enroll revoke"
check "vipr-enroll revoke: sequence 2 with 1 bad node" grep -q 'sequence=2 bad_nodes=1' revoke.out
# Node 3's config_file becomes the sequence-1 copy: after a restart only what it saved can keep sequence 2.
cp doc1.xml n3doc.xml
sed -i 's|^config_file = .*|config_file = n3doc.xml|' n3.conf
out=$(nreq cfgupd:${ID[2]},ca2/config.xml cfgupd:${ID[2]},ca/config.xml cfgupd:${ID[2]},doc1.xml \
      cfgupd:${ID[1]},ca/config.xml cfgupd:${ID[3]},ca/config.xml); echo "$out" | sed 's/^/  /'
cu() { grep 'req=cfgupd' <<<"$out" | sed -n "$1p"; }
check "ConfigUpdate with another CA's signer's document (sequence 2): Error_Forbidden from node 2" \
  grep -q "code=0xffff responder=${ID[2]} .*error=2 " <<<"$(cu 1)"
check "... logged config_refused with the reason" grep -q 'event=config_refused .*via=config_update sequence=2 current=1 error=2' n2.log
check "ConfigUpdate with the configuration signer's sequence-2 document: ConfigUpdateAns from node 2" \
  grep -q "code=0x22 responder=${ID[2]} signed=yes" <<<"$(cu 2)"
check "... applied at once (config_updated sequence=2 previous=1 bad_nodes=1)" \
  grep -q 'event=config_updated via=config_update sequence=2 previous=1 bad_nodes=1' n2.log
check "... its bad-node list: node 2 now refuses the revoked peer" wait_for 5 bash -c \
  "! '$P' ca/ca.pem bad/node.pem bad/node.key $OV 127.0.0.1:${PORT[2]} ping ${ID[2]} 2>&1 | grep -q verified=yes"
check "the sequence-1 document replayed by ConfigUpdate: Error_Config_Too_Old (15)" \
  grep -q "code=0xffff responder=${ID[2]} .*error=15 " <<<"$(cu 3)"
check "node 1 takes the sequence-2 document by ConfigUpdate too" grep -q "code=0x22 responder=${ID[1]}" <<<"$(cu 4)"
# A restart keeps the document in force: node 3 saved sequence 2 (data_dir/overlay-config.xml) and, restarted
# with its sequence-1 config_file, still refuses the revoked peer (it served it again before, until the
# update was pushed again).
check "node 3 takes sequence 2 by ConfigUpdate" grep -q "code=0x22 responder=${ID[3]}" <<<"$(cu 5)"
check "... and saves it (config_saved sequence=2)" grep -q 'event=config_saved sequence=2 path=n3/overlay-config.xml' n3.log
kill -TERM ${PID[3]}; wait ${PID[3]} 2>/dev/null; start 3
check "node 3 restarts with sequence 2 in force (config_restored sequence=2 file_sequence=1)" \
  wait_for 20 grep -q 'event=config_restored sequence=2 file_sequence=1' n3.log
check "... rejoins" wait_for 20 bash -c "[ \$(grep -c 'mod=node event=joined' n3.log) -ge 2 ]"
check "... and refuses the revoked peer after the restart" bash -c \
  "! '$P' ca/ca.pem bad/node.pem bad/node.key $OV 127.0.0.1:${PORT[3]} ping ${ID[3]} 2>&1 | grep -q verified=yes"
# SIGHUP offers the file to the same trust state: the replayed sequence-1 file is refused, a higher one taken.
cp doc1.xml n1doc.xml
sed -i 's|^config_file = .*|config_file = n1doc.xml|' n1.conf
kill -HUP ${PID[1]}
check "SIGHUP with the replayed sequence-1 document: refused (reload_refused sequence=1 current=2)" \
  wait_for 5 grep -q 'event=reload_refused what=config_file sequence=1 current=2' n1.log
check "... node 1 still refuses the revoked peer" bash -c \
  "! '$P' ca/ca.pem bad/node.pem bad/node.key $OV 127.0.0.1:${PORT[1]} ping ${ID[1]} 2>&1 | grep -q verified=yes"
"$E" --dir ca revoke $GHOST > revoke3.out 2>&1 || bad "vipr-enroll revoke (sequence 3)"
cp ca/config.xml n1doc.xml
kill -HUP ${PID[1]}
check "SIGHUP with a sequence-3 document: taken (config_updated via=sighup sequence=3 bad_nodes=2)" \
  wait_for 5 grep -q 'event=config_updated via=sighup sequence=3 previous=2 bad_nodes=2' n1.log

# ---- SIGHUP: reload what can change, say what cannot ----------------------------------------
sed -i 's/^\[node\]$/[node]\nlog_level = warn\nio_burst = 32/' n1.conf
kill -HUP ${PID[1]}
check "SIGHUP: the new log level applies" wait_for 5 grep -q 'event=reloaded log_level=warn' n1.log
check "SIGHUP: a change that needs a restart is logged" wait_for 5 grep -q 'event=reload_needs_restart what=node_or_link_options' n1.log
check "node 1 keeps running after SIGHUP" kill -0 ${PID[1]}

# ---- SIGTERM: leave cleanly ----------------------------------------------------------------
out=$(peer 1 vstore ${ID[4]})
check "a Store at node 4's id before it leaves (answered by node 4)" grep -q "answer code=0x8 responder=${ID[4]} verified=yes" <<<"$out"
kill -TERM ${PID[4]}; wait ${PID[4]}; rc=$?; unset 'PID[4]'
check "SIGTERM: node 4 exits 0" test $rc = 0
check "node 4 sent Leave (logged leaving)" grep -q 'event=leaving.*err=success' n4.log
check "node 4 handed its data off as it left (logged, entries sent)" grep -q 'event=store_action .*op=handoff .*entries=[1-9]' n4.log
no_route_to_4() { for i in 1 2 3; do peer $i ping ${ID[4]} | grep -q "responder=${ID[4]}" && return 1; done; return 0; }
check "the ring no longer answers for node 4" wait_for 10 no_route_to_4
fetch4() { out=$(peer 2 fetch ${ID[4]}); grep -q 'answer code=0xa .*verified=yes .*entries=1' <<<"$out" || { echo "  $out"; return 1; }; }
check "... and node 4's entry is fetched from its successor" wait_for 10 fetch4
ring3_ok() { for i in 1 2 3; do for j in 1 2 3; do
  peer $i ping ${ID[$j]} 2>/dev/null | grep -q "responder=${ID[$j]} verified=yes" || return 1; done; done; }
check "the three left still reach each other" wait_for 20 ring3_ok

# ---- kill -9 and restart with the same Node-ID ---------------------------------------------
# A resource node 3 owns that nothing was stored at before: only this last Store can put an entry there.
RK=$(python3 -c "import sys;print('%032x'%((int(sys.argv[1],16)-1)%(1<<128)))" ${ID[3]})
out=$(peer 1 fetch $RK)
check "nothing at node 3's resource RK before the last Store" grep -q "answer code=0xa responder=${ID[3]} .*entries=0" <<<"$out"
out=$(peer 1 vstore $RK)
check "a Store acknowledged by node 3 just before it is killed" grep -q "answer code=0x8 responder=${ID[3]} verified=yes" <<<"$out"
mark1=$(wc -l < n1.log); mark2=$(wc -l < n2.log)
kill -9 ${PID[3]}; wait ${PID[3]} 2>/dev/null; unset 'PID[3]'
fetched_elsewhere() { out=$(peer $1 fetch $RK); grep -q 'answer code=0xa .*verified=yes .*entries=1' <<<"$out" && ! grep -q "responder=${ID[3]}" <<<"$out"; }
check "kill -9 loses no acknowledged Store: node 3's range is answered by its successor, entry verified" \
  wait_for 20 fetched_elsewhere 1
check "... through node 2 too" wait_for 10 fetched_elsewhere 2
check "node 3's range is re-replicated by the survivors (replicate with entries logged)" wait_for 20 bash -c \
  "tail -n +$mark1 n1.log | grep -q 'event=store_action .*op=replicate .*entries=[1-9]' || tail -n +$mark2 n2.log | grep -q 'event=store_action .*op=replicate .*entries=[1-9]'"
ring2_ok() { for i in 1 2; do for j in 1 2; do
  peer $i ping ${ID[$j]} 2>/dev/null | grep -q "responder=${ID[$j]} verified=yes" || return 1; done; done; }
check "after kill -9 of node 3 the others repair and reach each other" wait_for 20 ring2_ok
: > n3.log
start 3
check "node 3 restarted from its data_dir rejoins with its Node-ID ${ID[3]}" \
  wait_for 20 bash -c "grep -q 'event=joined shard=0 node_id=${ID[3]}' n3.log"
check "... and is reached through node 1" wait_for 20 bash -c \
  "'$P' ca/ca.pem client/node.pem client/node.key $OV 127.0.0.1:${PORT[1]} ping ${ID[3]} | grep -q 'responder=${ID[3]} verified=yes'"
check "the restarted node 3 opened its store with its records (kept across kill -9)" \
  grep -q 'event=store_opened shard=0 .*records=[1-9]' n3.log
own_again() { peer 2 fetch $RK | grep -q "answer code=0xa responder=${ID[3]} verified=yes .*entries=1"; }
check "... and answers for its range again, with the entry" wait_for 20 own_again

echo "fails=$FAILS"
[ $FAILS = 0 ]
