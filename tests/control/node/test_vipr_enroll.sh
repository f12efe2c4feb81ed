#!/usr/bin/env bash
# vipr-enroll end to end on loopback (127.0.0.1, ephemeral ports): init, the HTTPS enrollment and
# configuration server, enrollment with good and bad credentials, a malformed CSR, a CSR whose signature
# does not verify, too many Node-IDs, renewal keeping the Node-IDs, revoke (the node refuses the revoked
# certificate, the CA refuses its renewal), a document from the wrong anchor, the rate limit.
# Issued certificates are checked with the openssl command, not with our code. Every server started here
# is killed by PID on exit, pass or fail.
# Usage: test_vipr_enroll.sh path/to/vipr-enroll
set -u
E=$(realpath "$1")
T=$(mktemp -d /tmp/vipr-enroll-test.XXXXXX)
# start_server runs in a command substitution (a subshell), so the PIDs go to a file, not a variable.
cleanup() {
  local p
  for p in $(cat "$T/pids" 2>/dev/null); do kill "$p" 2>/dev/null; done
  for p in $(cat "$T/pids" 2>/dev/null); do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/../../support/checks.sh"   # FAILS, ok, bad, check, wait_for

cd "$T" || exit 2
OV=vipr.test

# start_server DIR LOGNAME [--set ...]: prints the port; the PID goes to $T/pids.
start_server() {
  local dir=$1 name=$2; shift 2
  "$E" --dir "$dir" --set enroll.listen=127.0.0.1:0 "$@" serve > "$name.out" 2> "$name.log" &
  echo $! >> "$T/pids"
  for _ in $(seq 1 100); do
    grep -q ' port=' "$name.out" 2>/dev/null && break
    sleep 0.05
  done
  sed -n 's/.* port=\([0-9]*\).*/\1/p' "$name.out"
}

# ---- init ----
"$E" --dir ca --set overlay.name=$OV --set overlay.bootstrap="127.0.0.1:6084, [::1]:6085" init > init.out || { cat init.out; exit 1; }
check "init writes the CA, signer, server key and a signed document" \
  test -s ca/ca.pem -a -s ca/ca.key -a -s ca/signer.pem -a -s ca/server.pem -a -s ca/config.xml
check "CA and keys are private" test "$(stat -c %a ca/ca.key)" = 600
check "the CA certificate is a CA (openssl)" bash -c "openssl x509 -in ca/ca.pem -noout -ext basicConstraints | grep -q 'CA:TRUE'"
check "init refuses to replace an existing CA" bash -c "! '$E' --dir ca --set overlay.name=$OV init 2>/dev/null"
echo 'alice-password-1' | "$E" passwd alice@a.example > ca/credentials
echo 'bob-password-22' | "$E" passwd bob@b.example >> ca/credentials
echo 'alice-password-1' > pw.alice
echo 'wrong-password-9' > pw.wrong

# A burst the checks below stay within however fast they run; the limit itself is tested on srv2.
PORT=$(start_server ca srv --set enroll.burst=1000)
[ -n "$PORT" ] || { echo "server did not start"; cat srv.log; exit 1; }
URL=https://127.0.0.1:$PORT
CURL=(curl -sS --max-time 10 --cacert ca/ca.pem)

# ---- the configuration document ----
check "fetch: the document is accepted with the provisioned root" \
  bash -c "'$E' fetch --url $URL/.well-known/reload-config --overlay $OV --anchor ca/ca.pem --out doc1.xml | grep -q 'accepted overlay=$OV sequence=1'"
FP=$(openssl x509 -in ca/ca.pem -noout -fingerprint -sha256 | sed 's/.*=//; s/://g')
check "fetch: ... and with the root's SHA-256 fingerprint" \
  bash -c "'$E' fetch --url $URL/.well-known/reload-config --overlay $OV --anchor-fp $FP --cacert ca/ca.pem | grep -q accepted"
"$E" --dir evil --set overlay.name=$OV init > /dev/null
check "fetch: a document signed under another root is refused (it cannot vouch for itself)" \
  bash -c "'$E' fetch --url evil/config.xml --overlay $OV --anchor ca/ca.pem | grep -q 'refused reason=.*anchor'"
ctype=$("${CURL[@]}" -o /dev/null -w '%{content_type}' $URL/.well-known/reload-config)
check "the document is served as application/p2p-overlay+xml" test "$ctype" = application/p2p-overlay+xml

# ---- enrollment ----
enroll() { "$E" enroll --url $URL/enroll --cacert ca/ca.pem --overlay $OV "$@"; }
check "enroll with good credentials (2 Node-IDs)" \
  enroll --user alice@a.example --password-file pw.alice --nodeids 2 --key a.key --out a.pem
check "openssl verifies the certificate against the CA" bash -c "openssl verify -CAfile ca/ca.pem a.pem | grep -q OK"
SAN=$(openssl x509 -in a.pem -noout -ext subjectAltName)
check "2 reload:// SAN URIs with 32 hex digits and the trailing /" \
  test "$(grep -oE "URI:reload://[0-9a-f]{32}@$OV/" <<<"$SAN" | wc -l)" = 2
check "the user is the rfc822Name" grep -q 'email:alice@a.example' <<<"$SAN"
check "CA:FALSE, digitalSignature, serverAuth+clientAuth (openssl)" bash -c \
  "openssl x509 -in a.pem -noout -ext basicConstraints,keyUsage,extendedKeyUsage | tr -d '\n' | grep -q 'CA:FALSE.*Digital Signature.*Server Authentication, TLS Web Client Authentication'"

out=$(enroll --user alice@a.example --password-file pw.wrong --nodeids 1 --key x.key --out x.pem 2>&1); rc=$?
check "bad password: refused with 403 (exit 1)" test $rc = 1 -a -n "$(grep '403' <<<"$out")"
out=$(enroll --user nobody@a.example --password-file pw.alice --nodeids 1 --key x.key --out x.pem 2>&1); rc=$?
check "unknown user: refused with 403" test $rc = 1 -a -n "$(grep 'bad username or password' <<<"$out")"
out=$(enroll --user alice@a.example --password-file pw.alice --nodeids 9 --key x.key --out x.pem 2>&1); rc=$?
check "too many Node-IDs (9 > max_node_ids 8): 400" test $rc = 1 -a -n "$(grep '400.*nodeids' <<<"$out")"
check "nothing was written for refused requests" test ! -e x.pem

post() { "${CURL[@]}" -o resp.txt -w '%{http_code}' "$@" $URL/enroll; }
code=$(post --data-urlencode username=alice@a.example --data-urlencode password=alice-password-1 -d nodeids=1 --data-urlencode csr=bm90IGEgcmVxdWVzdA==)
check "malformed CSR: 400 with a reason" test "$code" = 400 -a -n "$(grep -i malformed resp.txt)"
openssl ecparam -name prime256v1 -genkey -noout -out k.pem 2>/dev/null
openssl req -new -key k.pem -subj /CN=x -outform DER -out good.der
python3 -c "import sys;d=bytearray(open('good.der','rb').read());d[-1]^=1;open('bad.der','wb').write(d)"
code=$(post --data-urlencode username=alice@a.example --data-urlencode password=alice-password-1 -d nodeids=1 --data-urlencode "csr=$(base64 -w0 bad.der)")
check "CSR whose signature does not verify: 400 (no proof of possession)" test "$code" = 400 -a -n "$(grep 'does not verify' resp.txt)"
code=$(post --data-urlencode username=alice@a.example --data-urlencode password=alice-password-1 -d nodeids=1 --data-urlencode "csr=$(base64 -w0 good.der)")
check "the same CSR unaltered (openssl-made, form-urlencoded): 200 application/pkix-cert" test "$code" = 200
check "  ... a DER certificate for that key" bash -c "openssl x509 -inform DER -in resp.txt -noout -pubkey | cmp -s - <(openssl pkey -in k.pem -pubout)"
code=$(post -F username=alice@a.example -F password=alice-password-1 -F nodeids=1 -F "csr=$(openssl req -in good.der -inform DER)")
check "multipart/form-data with a PEM CSR is accepted too" test "$code" = 200
code=$("${CURL[@]}" -o resp.txt -w '%{http_code}' $URL/enroll)
check "GET /enroll: 405" test "$code" = 405
code=$("${CURL[@]}" -o resp.txt -w '%{http_code}' $URL/nothing)
check "unknown path: 404" test "$code" = 404

# ---- renewal ----
check "renewal with the current certificate" \
  enroll --renew --cert a.pem --old-key a.key --key a2.key --out a2.pem
ids() { openssl x509 -in "$1" -noout -ext subjectAltName | grep -oE 'reload://[0-9a-f]{32}' | sort; }
check "renewal keeps the Node-IDs (place in the ring)" test "$(ids a.pem)" = "$(ids a2.pem)" -a -n "$(ids a.pem)"
check "renewal changed the key" bash -c "! cmp -s a.key a2.key"
"$E" --dir evil --set overlay.name=$OV issue --csr good.der --user mallory@m.example --nodeids 1 --out evil.pem > /dev/null
out=$(enroll --renew --cert evil.pem --old-key k.pem --key x.key --out x.pem 2>&1); rc=$?
check "renewal with a certificate of another CA: 403" test $rc = 1 -a -n "$(grep '403' <<<"$out")"

# ---- revoke ----
ID=$(ids a2.pem | head -1 | sed 's|reload://||')
check "revoke puts the Node-ID on the bad-node list" bash -c "'$E' --dir ca revoke $ID | grep -q 'sequence=2 bad_nodes=1'"
check "a node holding sequence 1 accepts sequence 2" \
  bash -c "'$E' fetch --url $URL/.well-known/reload-config --overlay $OV --anchor ca/ca.pem --current doc1.xml --out doc2.xml | grep -q 'sequence=2'"
check "a node refuses the revoked certificate" \
  bash -c "'$E' check-peer --doc doc2.xml --anchor ca/ca.pem --overlay $OV a2.pem | grep -q 'refused reason=.*bad-node'"
enroll --user bob@b.example --password-file <(echo bob-password-22) --nodeids 1 --key b.key --out b.pem > /dev/null
check "... and admits another node's" \
  bash -c "'$E' check-peer --doc doc2.xml --anchor ca/ca.pem --overlay $OV b.pem | grep -q admitted"
check "replaying sequence 1 to that node is refused" \
  bash -c "'$E' fetch --url doc1.xml --overlay $OV --anchor ca/ca.pem --current doc2.xml | grep -q 'refused reason=.*not higher'"
out=$(enroll --renew --cert a2.pem --old-key a2.key --key x.key --out x.pem 2>&1); rc=$?
check "the CA refuses to renew a revoked Node-ID: 403" test $rc = 1 -a -n "$(grep 'revoked' <<<"$out")"

# ---- rate limit ----
PORT2=$(start_server ca srv2 --set enroll.burst=2 --set enroll.rate=1)
codes=""
for _ in 1 2 3; do
  codes+=$("${CURL[@]}" -o /dev/null -w '%{http_code} ' --data-urlencode username=x@y.example -d password=p -d nodeids=1 -d csr=x https://127.0.0.1:$PORT2/enroll)
done
check "rate limit: burst 2 then 429 (got: $codes)" test "$codes" = "403 403 429 "
check "every request is logged with its outcome" bash -c "grep -q 'event=issued' srv.log && grep -q 'event=refused.*status=403' srv.log && grep -q 'status=429' srv2.log"

echo "vipr_enroll_e2e: $FAILS failed"
[ $FAILS = 0 ]
