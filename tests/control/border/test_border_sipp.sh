#!/usr/bin/env bash
# vipr-border end to end with sipp over mutual TLS, on loopback only.
#
# Debian's sipp (sip-tester) is built without OpenSSL (`sipp -t l1` says "To use a TLS
# transport you must compile SIPp with OpenSSL"), so each calling carrier's sipp speaks TCP
# to a local socat that holds that carrier's client certificate and speaks TLS to the
# border: the border sees a real mutual-TLS peer per carrier.  The call agent behind the
# border is a sipp UAS on TCP.  Certificates (a test CA, the border, carrier-a.example,
# carrier-b.example, other.example, and a carrier-b.example from a CA the border does not
# trust) are made here with openssl.
#
# ViPR client certificates (docs/protocol.md §6.1) are issued by `vipr-ticket cert` (the PVP
# server's issuing code) under a ViPR issuer CA the border knows as `cert_issuer`.
#
# usage: test_border_sipp.sh VIPR_BORDER VIPR_TICKET
set -euo pipefail
VB=$1
VT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
for t in sipp socat openssl curl python3; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed (scripts/setup.sh)"; exit 77; }
done
work=$(mktemp -d)
pids=()   # every process we start; socat ones are process-group leaders (setsid) because they fork
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do
    kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true
  done
  echo "cleanup at $SECONDS s"
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "cleaned at $SECONDS s"
  if [ $rc -ne 0 ]; then
    echo "--- border log (last 40 lines)"; tail -n 40 "$work/border.log" 2>/dev/null || true
  fi
  if [ $rc -ne 0 ] && [ -n "${BORDER_TEST_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$work"

# Listening ports below the ephemeral range (tests/support/free_ports.py says why).
free_ports() { python3 "$HERE/../../support/free_ports.py" "$1"; }
read -r BPORT PLAIN CAPORT MPORT PA PB PO PR MP1 AGENT EPORT UAS2 MP2 <<<"$(free_ports 13)"
read -r PCG PCN PCI PCE PCX <<<"$(free_ports 5)"

# ---- certificates -------------------------------------------------------------------------------------
mkca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.pem" \
           -days 2 -subj "/CN=$1" 2>/dev/null; }
mkcert() { # name ca
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$1" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 2 -out "$1.pem" \
    -extfile "$1.ext" 2>/dev/null
}
mkca test-ca
mkca rogue-ca
for n in border.example carrier-a.example carrier-b.example other.example; do mkcert "$n" test-ca; done
mkdir rogue && (cd rogue && cp ../rogue-ca.* . && mkcert carrier-b.example rogue-ca)

# ViPR client certificates for carrier-b.example, each in its own directory (the bridges take dir + name):
# good (NUM, an hour), other-number, issuer (the profile, but signed by the TLS CA, not the ViPR issuer),
# expired (an hour ago), expiring (4 s from now: expires on an open connection).
mkca vipr-issuer
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout cc.key -out cc.csr \
  -subj /CN=carrier-b.example 2>/dev/null
ccert() { # dir issuer number [vipr-ticket cert args]
  local d=$1 iss=$2 num=$3; shift 3
  mkdir -p "$d"; cp cc.key "$d/carrier-b.example.key"
  "$VT" cert --issuer-cert "$iss.pem" --issuer-key "$iss.key" --csr cc.csr --number "$num" \
    --domain carrier-b.example "$@" >"$d/carrier-b.example.pem" || fail "vipr-ticket cert $d"
}
CNOW=$(date +%s)
ccert cc-good vipr-issuer +14085551234 --lifetime 3600
ccert cc-othernum vipr-issuer +14085550000 --lifetime 3600
ccert cc-issuer test-ca +14085551234 --lifetime 3600
ccert cc-expired vipr-issuer +14085551234 --lifetime 600 --now $((CNOW - 3600))
openssl x509 -in cc-good/carrier-b.example.pem -noout -text >cc-good.txt
grep -q 'DNS:carrier-b.example, URI:tel:+14085551234' cc-good.txt || fail "issued certificate: subjectAltName"
grep -q 'TLS Web Client Authentication' cc-good.txt || fail "issued certificate: extendedKeyUsage"
grep -q 'CA:FALSE' cc-good.txt || fail "issued certificate: basicConstraints"
openssl verify -CAfile vipr-issuer.pem -purpose sslclient cc-good/carrier-b.example.pem >/dev/null \
  || fail "issued certificate does not verify under the ViPR issuer for TLS clients"
if openssl verify -CAfile vipr-issuer.pem -purpose sslserver cc-good/carrier-b.example.pem >/dev/null 2>&1; then
  fail "issued certificate is usable as a TLS server certificate"
fi
out=$("$VT" cert --issuer-cert vipr-issuer.pem --issuer-key vipr-issuer.key --csr cc.csr --number +14085551234 \
  --domain carrier-c.example) && fail "certificate issued for another domain than the request's"
[ "$out" = "refused reason=domain" ] || fail "another domain: '$out'"

# ---- tickets -----------------------------------------------------------------------------------------
"$VT" genkey --epoch 3 >keys
"$VT" genkey --epoch 9 >keys-other
NUM=+14085551234
NOW=$(date +%s)
tk() { "$VT" issue --key keys --number "$NUM" --domain carrier-b.example --lifetime 3600 "$@"; }
T_GOOD=$(tk)
T_A=$("$VT" issue --key keys --number "$NUM" --domain carrier-a.example --lifetime 3600)
T_WRONGNUM=$("$VT" issue --key keys --number +14085550000 --domain carrier-b.example --lifetime 3600)
T_EXPIRED=$(tk --now $((NOW - 7200)))
T_FUTURE=$(tk --now $((NOW + 600)))
T_PENDING=$(tk --pending)
T_EPOCH=$("$VT" issue --key keys-other --number "$NUM" --domain carrier-b.example --lifetime 3600)
# One MAC character changed (the last 43 characters are the MAC): structure intact, MAC wrong.
i=$(( ${#T_GOOD} - 10 ))
c=${T_GOOD:$i:1}; [ "$c" = A ] && r=B || r=A
T_TAMPERED="${T_GOOD:0:$i}$r${T_GOOD:$((i + 1))}"

# ---- the call agent (sipp UAS on TCP) and the border --------------------------------------------------
sipp -sf "$HERE/uas.xml" -t t1 -i 127.0.0.1 -p "$CAPORT" -mp "$MP1" -nostdin -trace_msg \
  -message_file "$work/uas_msgs.log" >/dev/null 2>"$work/uas.err" &
pids+=($!)
cat >border.conf <<CONF
[border]
listen = 127.0.0.1:$BPORT
plain_listen = 127.0.0.1:$PLAIN
cert = $work/border.example.pem
key = $work/border.example.key
ca = $work/test-ca.pem
handshake_timeout = 2s
message_timeout = 1s
max_conns_per_peer = 6
[call_agent]
address = 127.0.0.1:$CAPORT
listen = 127.0.0.1:$AGENT
[tickets]
key_file = $work/keys
cert_issuer = $work/vipr-issuer.pem
[metrics]
listen = 127.0.0.1:$MPORT
CONF
"$VB" -c border.conf >"$work/border.log" 2>&1 &
pids+=($!)
up=0
for _ in $(seq 1 50); do
  if curl -sf "http://127.0.0.1:$MPORT/health" >/dev/null 2>&1; then up=1; break; fi
  sleep 0.1
done
[ $up = 1 ] || fail "border not healthy within 5 s"

# One socat per calling identity: sipp (TCP) -> socat -> TLS with that identity's certificate -> border.
bridge() { # port certdir name
  setsid socat "TCP-LISTEN:$1,bind=127.0.0.1,reuseaddr,fork" \
    "OPENSSL:127.0.0.1:$BPORT,cert=$2/$3.pem,key=$2/$3.key,cafile=$work/test-ca.pem,verify=1,commonname=border.example" \
    2>>"$work/socat.log" &
  pids+=($!)
}
bridge "$PA" "$work" carrier-a.example
bridge "$PB" "$work" carrier-b.example
bridge "$PO" "$work" other.example
bridge "$PR" "$work/rogue" carrier-b.example
bridge "$PCG" "$work/cc-good" carrier-b.example
bridge "$PCN" "$work/cc-othernum" carrier-b.example
bridge "$PCI" "$work/cc-issuer" carrier-b.example
bridge "$PCE" "$work/cc-expired" carrier-b.example
for p in $PA $PB $PO $PR $PCG $PCN $PCI $PCE; do
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done

uac() { # port scenario calls rate -- extra sipp args (bounded: -timeout and -recv_timeout)
  local port=$1 scen=$2 m=$3 rate=$4; shift 5
  local mp; mp=$(free_ports 1)
  local rc=0
  sipp "127.0.0.1:$port" -sf "$scen" -t t1 -i 127.0.0.1 -mp "$mp" -m "$m" -r "$rate" -nostdin \
    -timeout 30s -timeout_error -recv_timeout 5000 -key called "${CALLED:-$NUM}" -key from_domain "${FROM:-test.invalid}" \
    -key proto "${PROTO:-RTP/SAVP}" -key crypto "${CRYPTO:-$SDES}" -key ruri_host "${RURI:-127.0.0.1:$BPORT}" "$@" >/dev/null 2>>"$work/sipp.err" &
  local p=$!
  pids+=($p)
  wait "$p" || rc=$?
  return $rc
}
SDES="a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
refused_scen() { sed "s/@STATUS@/$1/" "$HERE/uac_refused.xml.in" >"$work/refused_$1.xml"; echo "$work/refused_$1.xml"; }
S403=$(refused_scen 403)
S488=$(refused_scen 488)
metric() { curl -sf "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
uas_invites() { grep -c '^INVITE sip:' "$work/uas_msgs.log" 2>/dev/null || true; }
ok() { echo "ok: $* [$SECONDS s]"; }

# ---- admitted ----------------------------------------------------------------------------------------
uac "$PB" "$HERE/uac_call.xml" 5 10 -- -key ticket "$T_GOOD" || fail "admitted calls: sipp failed"
ok "5 ticketed SRTP calls from carrier-b.example admitted, 200 relayed, dialog completed"
[ "$(uas_invites)" = 5 ] || fail "call agent saw $(uas_invites) INVITEs, want 5"
if grep -qi 'ViPR-Ticket' "$work/uas_msgs.log"; then fail "the ticket header reached the call agent"; fi
grep -q '^Record-Route: <sip:127.0.0.1:'"$BPORT"';transport=tcp;lr>' "$work/uas_msgs.log" || fail "no inside Record-Route"
grep -q '^Via: SIP/2.0/TCP 127.0.0.1:'"$BPORT"';branch=z9hG4bKvb' "$work/uas_msgs.log" || fail "no border Via"
ok "ticket header removed inside; Via and Record-Route added"
[ "$(metric vipr_border_admitted_total)" = 5 ] || fail "admitted_total=$(metric vipr_border_admitted_total)"

# ---- refused INVITEs: each must not reach the call agent ---------------------------------------------
refuse_case() { # name port status reason-metric -- sipp args
  local name=$1 port=$2 st=$3 reason=$4; shift 5
  local before; before=$(uas_invites)
  local m0; m0=$(metric "vipr_border_refused_total{reason=\"$reason\"}")
  local scen=$S403; [ "$st" = 488 ] && scen=$S488
  uac "$port" "$scen" 1 10 -- "$@" || fail "$name: sipp did not get $st"
  local m1; m1=$(metric "vipr_border_refused_total{reason=\"$reason\"}")
  [ "$m1" = $((m0 + 1)) ] || fail "$name: refused{reason=$reason} went $m0 -> $m1"
  [ "$(uas_invites)" = "$before" ] || fail "$name: the INVITE reached the call agent"
  grep -q "event=refused reason=$reason " "$work/border.log" || fail "$name: no log line reason=$reason"
  ok "$name: $st, reason=$reason, call agent untouched"
}
refuse_case "no ticket" "$PB" 403 no-ticket -- -key ticket_header "X-Nothing: 1"
refuse_case "tampered ticket" "$PB" 403 ticket-bad-mac -- -key ticket_header "X-ViPR-Ticket: $T_TAMPERED"
refuse_case "wrong number" "$PB" 403 ticket-wrong-number -- -key ticket_header "X-ViPR-Ticket: $T_WRONGNUM"
refuse_case "wrong domain (other.example's certificate)" "$PO" 403 ticket-wrong-domain -- -key ticket_header "X-ViPR-Ticket: $T_GOOD"
refuse_case "wrong domain (carrier-a.example's certificate)" "$PA" 403 ticket-wrong-domain -- -key ticket_header "X-ViPR-Ticket: $T_GOOD"
refuse_case "expired" "$PB" 403 ticket-expired -- -key ticket_header "X-ViPR-Ticket: $T_EXPIRED"
refuse_case "not yet valid" "$PB" 403 ticket-not-yet-valid -- -key ticket_header "X-ViPR-Ticket: $T_FUTURE"
refuse_case "unknown epoch" "$PB" 403 ticket-unknown-epoch -- -key ticket_header "X-ViPR-Ticket: $T_EPOCH"
refuse_case "pending ticket" "$PB" 403 ticket-no-routes -- -key ticket_header "X-ViPR-Ticket: $T_PENDING"
refuse_case "two tickets" "$PB" 403 ticket-malformed -- -key ticket_header "X-ViPR-Ticket: $T_GOOD
X-Cisco-ViPR-Ticket: $T_GOOD"
PROTO=RTP/AVP CRYPTO=a=sendrecv refuse_case "no SRTP (RTP/AVP)" "$PB" 488 no-srtp -- -key ticket_header "X-ViPR-Ticket: $T_GOOD"
CRYPTO=a=sendrecv refuse_case "SAVP without keys" "$PB" 488 no-srtp -- -key ticket_header "X-ViPR-Ticket: $T_GOOD"

# carrier-a's own ticket from carrier-a's certificate is admitted: the domain check is the TLS peer's.
uac "$PA" "$HERE/uac_call.xml" 1 10 -- -key ticket "$T_A" || fail "carrier-a's call with its own ticket"
ok "carrier-a.example admitted with its own ticket"

# A certificate from a CA the border does not trust: no TLS, no SIP.
before=$(uas_invites)
if uac "$PR" "$HERE/uac_call.xml" 1 10 -- -key ticket "$T_GOOD" -recv_timeout 2000; then
  fail "a certificate from an untrusted CA got a call through"
fi
[ "$(uas_invites)" = "$before" ] || fail "untrusted CA: INVITE reached the call agent"
ok "certificate from an untrusted CA: handshake refused"

# ---- ViPR client certificates instead of tickets (§6.1, §7.1) ------------------------------------------
a0=$(metric vipr_border_admitted_total); before=$(uas_invites)
FROM=carrier-b.example uac "$PCG" "$HERE/uac_cert_call.xml" 2 10 -- || fail "calls with a ViPR client certificate"
[ "$(uas_invites)" = $((before + 2)) ] || fail "certificate calls: the call agent saw $(( $(uas_invites) - before )) INVITEs"
[ "$(metric vipr_border_admitted_total)" = $((a0 + 2)) ] || fail "certificate calls not counted as admitted"
ok "2 calls without a ticket header admitted on carrier-b.example's ViPR client certificate for $NUM"
FROM=sip.carrier-b.example uac "$PCG" "$HERE/uac_cert_call.xml" 1 10 -- || fail "From a host under the certificate's domain"
ok "From host under the certificate's domain admitted"
FROM=carrier-b.example refuse_case "certificate for another number" "$PCN" 403 cert-wrong-number -- -key ticket_header "X-Nothing: 1"
CALLED=+14085550000 FROM=carrier-b.example refuse_case "certificate for $NUM, calling +14085550000" "$PCG" 403 cert-wrong-number -- -key ticket_header "X-Nothing: 1"
FROM=carrier-c.example refuse_case "certificate of carrier-b.example, From carrier-c.example" "$PCG" 403 cert-wrong-domain -- -key ticket_header "X-Nothing: 1"
FROM=xcarrier-b.example refuse_case "From a look-alike domain" "$PCG" 403 cert-wrong-domain -- -key ticket_header "X-Nothing: 1"
FROM=carrier-b.example refuse_case "the profile signed by another issuer (the TLS CA)" "$PCI" 403 no-ticket -- -key ticket_header "X-Nothing: 1"
before=$(uas_invites); t0=$(metric vipr_border_tls_refused_total)
if FROM=carrier-b.example uac "$PCE" "$HERE/uac_cert_call.xml" 1 10 -- -recv_timeout 2000; then
  fail "an expired ViPR client certificate got a call through"
fi
[ "$(uas_invites)" = "$before" ] || fail "expired certificate: INVITE reached the call agent"
[ "$(metric vipr_border_tls_refused_total)" -gt "$t0" ] || fail "expired certificate: handshake not refused"
ok "expired ViPR client certificate: handshake refused"
# A certificate that expires while its connection stays open: the first call passes, the INVITE after is refused.
# 8 s of lifetime for the bridge and the first call (4 s were not enough once, on a CI run with other tests
# beside it), and the late INVITE 10 s after the first call: past the end whenever the first call passed.
ccert cc-expiring vipr-issuer +14085551234 --lifetime 8
bridge "$PCX" "$work/cc-expiring" carrier-b.example
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PCX") 2>/dev/null && break; sleep 0.1; done
m0=$(metric 'vipr_border_refused_total{reason="cert-expired"}'); before=$(uas_invites)
FROM=carrier-b.example uac "$PCX" "$HERE/uac_cert_expiry.xml" 1 10 -- || fail "expiring certificate scenario"
[ "$(metric 'vipr_border_refused_total{reason="cert-expired"}')" = $((m0 + 1)) ] || fail "cert-expired not counted"
[ "$(uas_invites)" = $((before + 1)) ] || fail "expiring certificate: the late INVITE reached the call agent"
ok "certificate expired on an open connection: first call admitted, the INVITE 10 s later refused (cert-expired)"

# ---- in-dialog rules ---------------------------------------------------------------------------------
before=$(uas_invites)
uac "$PB" "$HERE/uac_reinvite.xml" 1 10 -- -key ticket "$T_GOOD" || fail "downgrading re-INVITE: sipp failed"
[ "$(uas_invites)" = $((before + 1)) ] || fail "the downgrading re-INVITE reached the call agent"
[ "$(metric 'vipr_border_refused_total{reason="downgrade"}')" = 1 ] || fail "downgrade metric"
ok "downgrading re-INVITE: 488, not forwarded, call ended normally (X-Cisco-ViPR-Ticket spelling admitted)"
m0=$(metric 'vipr_border_refused_total{reason="no-dialog"}')
uac "$PB" "$HERE/uac_stray_bye.xml" 1 10 -- || fail "stray BYE not refused with 403"
[ "$(metric 'vipr_border_refused_total{reason="no-dialog"}')" = $((m0 + 1)) ] || fail "no-dialog metric"
if grep -q '^BYE sip:.*never-admitted' "$work/uas_msgs.log"; then fail "stray BYE reached the call agent"; fi
ok "BYE for a dialog never admitted: 403, not forwarded"

# ---- raw peers ----------------------------------------------------------------------------------------
PEER=(python3 "$HERE/border_peer.py")
IDB=(--cert "$work/carrier-b.example.pem" --key "$work/carrier-b.example.key" --ca "$work/test-ca.pem")
out=$("${PEER[@]}" plain-tcp 127.0.0.1 "$BPORT" --seconds 2) || fail "plain TCP on the TLS port: $out"
ok "plain SIP over TCP on the TLS port: no SIP answer ($out)"
out=$("${PEER[@]}" udp 127.0.0.1 "$BPORT" --seconds 1) || fail "UDP: $out"
ok "plain SIP over UDP: nothing ($out)"
out=$("${PEER[@]}" plain-tcp 127.0.0.1 "$PLAIN" --seconds 2 --expect-status 403) || fail "diagnostic listener: $out"
ok "diagnostic plain-TCP listener: 403 and close ($out)"
m0=$(metric 'vipr_border_closed_total{cause="malformed"}')
out=$("${PEER[@]}" garbage 127.0.0.1 "$BPORT" "${IDB[@]}" --seconds 3) || fail "garbage: $out"
[ "$(metric 'vipr_border_closed_total{cause="malformed"}')" -gt "$m0" ] || fail "garbage: not counted as malformed"
ok "garbage after the handshake: connection closed ($out)"
out=$("${PEER[@]}" huge 127.0.0.1 "$BPORT" "${IDB[@]}" --seconds 3) || fail "huge header: $out"
[ "$(metric 'vipr_border_closed_total{cause="too-big"}')" -ge 1 ] || fail "huge header: not counted"
ok "a 70 kB header: connection closed ($out)"
out=$("${PEER[@]}" slow 127.0.0.1 "$BPORT" "${IDB[@]}" --seconds 4) || fail "slow sender: $out"
[ "$(metric 'vipr_border_closed_total{cause="timeout"}')" -ge 1 ] || fail "slow sender: not counted"
ok "slow sender: dropped at the 1 s message deadline ($out)"

# ---- one carrier cannot take every connection -------------------------------------------------------
out=$("${PEER[@]}" conns 127.0.0.1 "$BPORT" "${IDB[@]}" --count 9 --expect-status 6) || fail "per-peer connections: $out"
[ "$(metric 'vipr_border_closed_total{cause="peer-conns"}')" -ge 3 ] || fail "per-peer limit not counted"
ok "carrier-b.example: 6 connections served, the next 3 closed ($out)"

# ---- a flood from carrier-a does not stop carrier-b's calls -----------------------------------------
# 150,000 unticketed INVITEs (~50 MB) streamed by socat as fast as TLS carries them: far more than the
# border clears in the calls' 5 s receive timeout, so a loop that served one connection until it ran dry
# would starve carrier-b.  The calls must complete while the flood is still being served (its 403s are
# counted: fewer than all of them when the calls are done).
"${PEER[@]}" flood-file 127.0.0.1 0 --count 150000 >"$work/flood.sip"
setsid socat -t 60 "OPEN:$work/flood.sip!!OPEN:/dev/null,wronly" \
  "OPENSSL:127.0.0.1:$BPORT,cert=$work/carrier-a.example.pem,key=$work/carrier-a.example.key,cafile=$work/test-ca.pem,verify=1,commonname=border.example" \
  2>>"$work/socat.log" &
fp=$!
pids+=($fp)
for _ in $(seq 1 50); do
  [ "$(metric 'vipr_border_refused_total{reason="no-ticket"}')" -gt 1000 ] && break
  sleep 0.1
done
[ "$(metric 'vipr_border_refused_total{reason="no-ticket"}')" -gt 1000 ] || fail "the flood did not start"
uac "$PB" "$HERE/uac_call.xml" 5 10 -- -key ticket "$T_GOOD" || fail "calls during a flood failed"
flooded=$(metric 'vipr_border_refused_total{reason="no-ticket"}')
[ "$flooded" -lt 149000 ] || fail "the flood was over before the calls were ($flooded refused): this proves nothing"
kill -- "-$fp" 2>/dev/null || true
ok "5 calls from carrier-b.example admitted while carrier-a.example's flood was being served ($flooded refused so far)"

# ---- key rotation without a restart ------------------------------------------------------------------
"$VT" rotate --key keys --grace 3600 >/dev/null
epoch=$(awk '$1 == "current" { print $2 }' keys)
T_NEW=$("$VT" issue --key keys --number "$NUM" --domain carrier-b.example --lifetime 3600)
loaded=0
for _ in $(seq 1 30); do
  if grep -q "event=ticket_keys_loaded .*epoch=$epoch previous=3" "$work/border.log"; then loaded=1; break; fi
  sleep 0.1
done
[ $loaded = 1 ] || fail "rotated key file not picked up within 3 s"
uac "$PB" "$HERE/uac_call.xml" 1 10 -- -key ticket "$T_NEW" || fail "ticket under the new epoch refused"
uac "$PB" "$HERE/uac_call.xml" 1 10 -- -key ticket "$T_GOOD" || fail "ticket under the previous epoch (in grace) refused"
ok "rotation: new epoch $epoch admitted, epoch 3 still admitted in its grace"
# ---- egress: the call agent calls carrier-a.example; only TLS, only SRTP -----------------------------
# carrier-a's side: a TLS server (socat, carrier-a.example's certificate, requiring a client certificate
# from the test CA) in front of a second sipp UAS.
sipp -sf "$HERE/uas.xml" -t t1 -i 127.0.0.1 -p "$UAS2" -mp "$MP2" -nostdin -trace_msg \
  -message_file "$work/uas2_msgs.log" >/dev/null 2>"$work/uas2.err" &
pids+=($!)
setsid socat "OPENSSL-LISTEN:$EPORT,bind=127.0.0.1,reuseaddr,fork,cert=$work/carrier-a.example.pem,key=$work/carrier-a.example.key,cafile=$work/test-ca.pem,verify=1" \
  "TCP:127.0.0.1:$UAS2" 2>>"$work/socat.log" &
pids+=($!)
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$UAS2") 2>/dev/null && break; sleep 0.1; done
RURI="127.0.0.1:$EPORT" uac "$AGENT" "$HERE/uac_call.xml" 2 10 -- -key ticket "$T_A" || fail "egress calls failed"
n2=$(grep -c '^INVITE sip:' "$work/uas2_msgs.log" || true)
[ "$n2" = 2 ] || fail "carrier-a's call agent saw $n2 INVITEs, want 2"
grep -q '^Record-Route: <sip:127.0.0.1:'"$BPORT"';transport=tls;lr>' "$work/uas2_msgs.log" || fail "egress: no outside Record-Route"
grep -q 'event=egress_connect dest=127.0.0.1:'"$EPORT" "$work/border.log" || fail "egress: no TLS connection logged"
ok "egress: 2 calls from the call agent left over TLS (verified against the CA) to carrier-a.example, dialogs completed"
PROTO=RTP/AVP CRYPTO=a=sendrecv RURI="127.0.0.1:$EPORT" uac "$AGENT" "$S488" 1 10 -- -key ticket_header "X-Nothing: 1" \
  || fail "egress without SRTP: not refused with 488"
[ "$(grep -c '^INVITE sip:' "$work/uas2_msgs.log" || true)" = 2 ] || fail "egress without SRTP reached carrier-a"
ok "egress with plain RTP: 488 to the call agent, nothing sent out"
echo "PASS"
