#!/usr/bin/env bash
# Client certificates instead of tickets, end to end on loopback (docs/protocol.md §6.1, §8.6, §11.1):
#   carrier B's ViPR server ([pvp] client_cert_key) validates a call to A's number against A's ViPR server
#   ([pvp] cert_issuer), asks for a client certificate over the PVP connection and hands it to B's subscribed
#   vipr-agent with the route (VAP CLIENT-CERT); the agent writes it beside B's key; `vipr-agent call` presents
#   it over TLS to A's vipr-border, which admits the INVITE without any ticket header; the same certificate
#   used to call another of A's numbers is refused (403 cert-wrong-number) and that route is forgotten.
# Real processes: vsrv_pair (both ViPR servers over the in-process DHT), vipr-agent, vipr-border, sipp (A's
# callee).  Every process started here is killed by PID on exit; every wait is bounded.
# usage: test_cert_route.sh VSRV_PAIR VIPR_AGENT VIPR_BORDER VIPR_TICKET
set -euo pipefail
PAIR=$1 AGENT=$2 VB=$3 VT=$4
HERE=$(cd "$(dirname "$0")" && pwd)
for t in sipp openssl curl python3; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed (scripts/setup.sh)"; exit 77; }
done
work=$(mktemp -d)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    for f in pair.err sub.out sub.err routes call1.out call1.err call2.out call2.err; do
      echo "--- $f"; tail -n 30 "$work/$f" 2>/dev/null || true
    done
    echo "--- border log"; tail -n 30 "$work/border.log" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $* [$SECONDS s]"; }
cd "$work"
# Listening ports below the ephemeral range (tests/support/free_ports.py says why).
free_ports() { python3 "$HERE/../../support/free_ports.py" "$1"; }
read -r BPORT CAPORT MP1 AGENTP MPORT <<<"$(free_ports 5)"

# ---- keys and certificates ------------------------------------------------------------------------------
mkca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.pem" \
           -days 2 -subj "/CN=$1" 2>/dev/null; }
mkca test-ca        # the TLS CA of the border's own certificate
mkca vipr-issuer    # A's ViPR server issues client certificates with this; A's border holds only the .pem
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout border.key -out border.csr \
  -subj /CN=border.example 2>/dev/null
printf 'subjectAltName=DNS:border.example\n' >border.ext
openssl x509 -req -in border.csr -CA test-ca.pem -CAkey test-ca.key -CAcreateserial -days 2 -out border.pem \
  -extfile border.ext 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out b-client.key 2>/dev/null # B's [pvp] client_cert_key
"$VT" genkey --epoch 1 >a-tickets

NUM=+14085551234 OTHER=+14085551299
cat >a.conf <<CONF
[server]
name = A
domain = carrier-a.example
[vap]
port = 0
agents = a1:pw-a
[pvp]
vcr_dir = $work/a-vcr
min_entropy_cbits = 100
ticket_keys = $work/a-tickets
cert_issuer = $work/vipr-issuer.pem
cert_issuer_key = $work/vipr-issuer.key
cert_lifetime = 1h
[scheduler]
delay_min = 0
delay_max = 1
CONF
cat >b.conf <<CONF
[server]
name = B
domain = carrier-b.example
[vap]
port = 0
agents = b1:pw-b
[pvp]
vcr_dir = $work/b-vcr
min_entropy_cbits = 100
orig_min_entropy_cbits = 100
client_cert_key = $work/b-client.key
[scheduler]
delay_min = 0
delay_max = 1
fetch_timeout = 5s
attach_timeout = 2s
CONF
"$PAIR" a.conf b.conf >pair.out 2>pair.err &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^ready' pair.out 2>/dev/null && break; sleep 0.1; done
grep -q '^ready' pair.out || fail "ViPR servers did not start"
VAPA=$(awk '$2 == "A" { sub("vap=", "", $3); print $3 }' pair.out)
VAPB=$(awk '$2 == "B" { sub("vap=", "", $3); print $3 }' pair.out)
ok "ViPR servers A (issuer) and B (client_cert_key) up: vap $VAPA, $VAPB"

# ---- A publishes its numbers behind its border; B's agent subscribes --------------------------------------
AA=("$AGENT" -s "127.0.0.1:$VAPA" -u a1 -p pw-a --timeout 5000 -V 7)
AB=("$AGENT" -s "127.0.0.1:$VAPB" -u b1 -p pw-b --timeout 5000 -V 5)
"${AA[@]}" vservice --uri "sip:$NUM@127.0.0.1:$BPORT;transport=tls" >/dev/null || fail "A: vservice"
"${AA[@]}" publish "$NUM" "$OTHER" | grep -q "published 2 of 2" || fail "A: publish"
mkdir certs
"${AB[@]}" subscribe --count 1 --duration 40 --cert-dir "$work/certs" --cert-key "$work/b-client.key" \
  >sub.out 2>sub.err &
SUB=$!
pids+=($SUB)
for _ in $(seq 1 50); do grep -q subscribed sub.err 2>/dev/null && break; sleep 0.1; done

# ---- one PSTN call B -> A: both upload its record; B validates ------------------------------------------
stop=$(( ($(date +%s) - 5) * 1000 ))
start=$(( stop - 183000 ))
off=$(( start / 1000 % 1800 ))
if [ $off -lt 90 ] || [ $off -gt 1710 ]; then start=$(( start - 240000 )); fi
printf 'term,%s,+33123450007,%s,%s\n' "$NUM" "$start" "$stop" >term.csv
printf 'orig,%s,+33123450007,%s,%s\n' "$NUM" "$start" "$stop" >orig.csv
"${AA[@]}" upload term.csv | grep -q "uploaded 1" || fail "A: upload"
"${AB[@]}" upload orig.csv | grep -q "uploaded 1" || fail "B: upload"
wait "$SUB" || fail "B's agent received no route"
grep -q "^route number=$NUM .* cert=$work/certs/" sub.out || fail "the route came without a client certificate"
CERT=$(sed -n 's/.* cert=\([^ ]*\).*/\1/p' sub.out)
openssl x509 -in "$CERT" -noout -ext subjectAltName >san.txt
grep -q "DNS:carrier-b.example, URI:tel:$NUM" san.txt || fail "certificate names: $(cat san.txt)"
openssl verify -CAfile vipr-issuer.pem -purpose sslclient "$CERT" >/dev/null || fail "not issued by A's issuer"
[ "$(openssl pkey -in b-client.key -pubout)" = "$(openssl x509 -in "$CERT" -noout -pubkey)" ] \
  || fail "the certificate is not for B's key"
grep -q 'event=client_cert ' pair.err || fail "B's server did not log the certificate it kept"
ok "validation issued a certificate for $NUM and carrier-b.example to B's key; the agent received it"
cp sub.out routes

# ---- A's border (knows only the issuer's certificate) and its callee -------------------------------------
sipp -sf "$HERE/../border/uas.xml" -t t1 -i 127.0.0.1 -p "$CAPORT" -mp "$MP1" -nostdin -trace_msg \
  -message_file "$work/uas_msgs.log" >/dev/null 2>"$work/uas.err" &
pids+=($!)
cat >border.conf <<CONF
[border]
listen = 127.0.0.1:$BPORT
cert = $work/border.pem
key = $work/border.key
ca = $work/test-ca.pem
handshake_timeout = 2s
message_timeout = 1s
[call_agent]
address = 127.0.0.1:$CAPORT
listen = 127.0.0.1:$AGENTP
[tickets]
key_file = $work/a-tickets
cert_issuer = $work/vipr-issuer.pem
[metrics]
listen = 127.0.0.1:$MPORT
CONF
"$VB" -c border.conf >border.log 2>&1 &
pids+=($!)
up=0
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$MPORT/health" >/dev/null 2>&1 && { up=1; break; }; sleep 0.1; done
[ $up = 1 ] || fail "border not healthy within 5 s"
metric() { curl -sf "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }

CALL=("$AGENT" call --routes "$work/routes" --ca "$work/test-ca.pem" --tls-name border.example
      --from sip:pbx@carrier-b.example --timeout 10 --hold 200)
rc=0; "${CALL[@]}" "$NUM" >call1.out 2>call1.err || rc=$?
[ $rc = 0 ] || fail "call over the certificate route: exit $rc"
grep -q "outcome=answered number=$NUM" call1.out || fail "call not answered"
[ "$(grep -c '^INVITE ' uas_msgs.log)" = 1 ] || fail "A's callee did not get exactly one INVITE"
! grep -qi '^X-ViPR-Ticket' uas_msgs.log || fail "a ticket header reached A's callee"
[ "$(metric vipr_border_admitted_total)" = 1 ] || fail "the border did not count the admission"
ok "call with the client certificate admitted by vipr-border without a ticket"

# The same certificate for another of A's numbers: refused at the border, the route forgotten (§11.2).
until=$(sed -n 's/.* until=\([0-9]*\).*/\1/p' sub.out)
echo "route number=$OTHER uri=sip:$OTHER@127.0.0.1:$BPORT;transport=tls learned=$(date +%s) until=$until cert=$CERT" \
  >>routes
rc=0; "${CALL[@]}" "$OTHER" >call2.out 2>call2.err || rc=$?
[ $rc = 3 ] || fail "call to $OTHER with $NUM's certificate: exit $rc, want 3 (PSTN)"
grep -q "status=403 class=forget" call2.out || fail "no 403 forget: $(cat call2.out)"
grep -q 'reason=cert-wrong-number' border.log || fail "the border did not refuse with cert-wrong-number"
[ "$(grep -c '^INVITE ' uas_msgs.log)" = 1 ] || fail "the refused INVITE reached A's callee"
! grep -q "number=$OTHER" routes || fail "the refused route was not forgotten"
grep -q "number=$NUM" routes || fail "the good route was lost"
ok "the same certificate calling $OTHER: 403 cert-wrong-number, route forgotten, callee untouched"
