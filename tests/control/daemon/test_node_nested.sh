#!/usr/bin/env bash
# Stores nested in a commit (issue 16): node_req runs the overlay's only node (the bootstrap peer, so every
# Resource-ID is its own and every Store it issues is served by itself), issues 300 Stores at once and, from
# the callback of each answer (on the shard thread, inside the commit that answers it), one more.  Beyond
# max_pending (256) the first 300 make a Store commit the batch from inside its own handling, and the nested
# Stores arrive while a commit runs.  Every one of the 600 must be answered with a StoreAns by its own commit,
# within milliseconds, and each entry must be stored at its own Resource-ID (fetched and verified).  Before the
# fix 257 failed: the nested ones were refused busy (the committing batch still counted as full) and never
# stored, and the Store that made the commit had its request bytes cleared by a nested one (s->cur_raw), was
# written and answered only by the requester's timer (3 s here, err=timed out).
# Usage: test_node_nested.sh path/to/vipr-enroll path/to/node_req
set -u
FP=$(cd "$(dirname "$0")/../../support" && pwd)/free_ports.py
E=$(realpath "$1"); NR=$(realpath "$2")
T=$(mktemp -d /tmp/viprd-nested.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && { kill -9 "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
  [ "${FAILS:-1}" != 0 ] && [ -f "$T/n.log" ] && grep -v 'level=debug' "$T/n.log" | tail -30
  rm -rf "$T"
}
trap cleanup EXIT
FAILS=0
cd "$T" || exit 2
P=$(python3 "$FP" 1)
"$E" --dir ca --set overlay.name=nested.test --set overlay.bootstrap="127.0.0.1:$P" init > init.out || { cat init.out; exit 2; }
mkdir n
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout n/node.key -subj /CN=n \
  -out n.csr 2>/dev/null || exit 2
ID=$("$E" --dir ca issue --csr n.csr --user n@test.example --nodeids 1 --out n/node.pem |
  sed -n 's/.*node_ids=\([0-9a-f]*\).*/\1/p')
[ -n "$ID" ] || exit 2
cat > n.conf <<CONF
[node]
data_dir = n
listen = 127.0.0.1:$P
shards = 1
[overlay]
name = nested.test
config_file = ca/config.xml
reliability_timer = 20s
[link]
ca_file = ca/ca.pem
CONF
timeout 90 "$NR" n.conf "chain:$ID,300" > out.txt 2> n.log & PID=$!
wait "$PID"; rc=$?; PID=
cat out.txt
line=$(grep '^req=chain ' out.txt)
slow=$(sed -n 's/.* slowest_ms=\([0-9]*\).*/\1/p' <<<"$line")
if [ $rc = 0 ] && grep -q 'answered=600 of=600 ok=600 .* fetched=600 of=600' <<<"$line"; then
  echo "ok   600 Stores (300 nested in commits) answered with a StoreAns, each entry at its own Resource-ID"
else
  echo "FAIL not every Store answered and stored (exit $rc): $line"; FAILS=$((FAILS + 1))
fi
# a commit answers within milliseconds; a timer would answer after seconds
if [ -n "$slow" ] && [ "$slow" -lt 2000 ]; then
  echo "ok   the slowest answer came after ${slow} ms (its commit, not a timer)"
else
  echo "FAIL the slowest answer came after ${slow:-?} ms"; FAILS=$((FAILS + 1))
fi
echo "$FAILS failed"
[ "$FAILS" = 0 ]
