#!/usr/bin/env bash
# vipr-ticket end to end: genkey, issue, verify (exit codes and one-line
# reasons), replays for another number/domain, expiry, tampering, rotation
# with a grace epoch, retired key, bad key file.
set -euo pipefail
VT=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect() { # expected-exit expected-stdout-regex -- command...
  local want=$1 re=$2; shift 3
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = "$want" ] || fail "$* -> exit $rc (want $want): $out"
  grep -Eq "$re" <<<"$out" || fail "$* -> '$out' does not match '$re'"
  echo "ok: exit $rc: $out"
}
T=1795256243
"$VT" genkey --epoch 3 >"$work/keys"
grep -Eq '^current 3 [0-9a-f]{64}$' "$work/keys" || fail "genkey: $(cat "$work/keys")"
tk=$("$VT" issue --key "$work/keys" --number '+1 (408) 555-1234' --domain Carrier-B.example --now $T --lifetime 3600)
[ -n "$tk" ] || fail "issue printed nothing"
K=(--key "$work/keys")
expect 0 '^ok number=\+14085551234 domain=carrier-b.example epoch=3 ' -- "$VT" verify "${K[@]}" --number 0014085551234 --domain carrier-b.example --now $((T + 10)) "$tk"
expect 1 '^refused reason=wrong-number$' -- "$VT" verify "${K[@]}" --number +14085551235 --domain carrier-b.example --now $T "$tk"
expect 1 '^refused reason=wrong-domain$' -- "$VT" verify "${K[@]}" --number +14085551234 --domain evil.example --now $T "$tk"
expect 1 '^refused reason=expired$' -- "$VT" verify "${K[@]}" --number +14085551234 --domain carrier-b.example --now $((T + 3600 + 61)) "$tk"
bad="${tk:0:20}$( [ "${tk:20:1}" = A ] && echo B || echo A )${tk:21}"
expect 1 '^refused reason=(bad-mac|malformed)$' -- "$VT" verify "${K[@]}" --number +14085551234 --domain carrier-b.example --now $T "$bad"
pend=$("$VT" issue "${K[@]}" --number +14085551234 --domain carrier-b.example --now $T --pending)
expect 1 '^refused reason=no-routes$' -- "$VT" verify "${K[@]}" --number +14085551234 --domain carrier-b.example --now $T "$pend"
expect 0 '^version=1 epoch=3 flags=0x00 .* number=\+14085551234 domain=carrier-b.example \(MAC not checked\)$' -- "$VT" show "$pend"
# Rotation: epoch 4 current, epoch 3 accepted for 100 s.
expect 0 '^rotated epoch=4 previous=3 grace_until=' -- "$VT" rotate "${K[@]}" --now $T --grace 100
expect 0 '^ok .* epoch=3 ' -- "$VT" verify "${K[@]}" --number +14085551234 --domain carrier-b.example --now $((T + 100)) "$tk"
expect 1 '^refused reason=retired-key$' -- "$VT" verify "${K[@]}" --number +14085551234 --domain carrier-b.example --now $((T + 101)) "$tk"
tk4=$("$VT" issue "${K[@]}" --number +14085551234 --domain carrier-b.example --now $T)
expect 0 '^ok .* epoch=4 ' -- "$VT" verify "${K[@]}" --number +14085551234 --domain carrier-b.example --now $T "$tk4"
# A second rotation forgets epoch 3.
"$VT" rotate "${K[@]}" --now $T >/dev/null
expect 1 '^refused reason=unknown-epoch$' -- "$VT" verify "${K[@]}" --number +14085551234 --domain carrier-b.example --now $T "$tk"
# Usage and key errors exit 2.
printf 'current 1 0011\n' >"$work/short"
expect 2 'invalid configuration' -- "$VT" verify --key "$work/short" --number +14085551234 --domain x.example "$tk"
expect 2 'usage' -- "$VT" verify "${K[@]}" --number +14085551234 "$tk"
expect 2 'usage' -- "$VT" frobnicate
# 32-bit ticket times: an expiry that would wrap is refused, not issued in the past.
expect 2 'range' -- "$VT" issue "${K[@]}" --number +14085551234 --domain x.example --now $T --lifetime 4294967296
# Rotation writes a fresh 0600 file: a planted "<key>.tmp" symlink is not followed.
echo precious >"$work/other"
ln -s "$work/other" "$work/keys.tmp"
(umask 022; "$VT" rotate "${K[@]}" --now $T >/dev/null) || fail "rotate with a stale .tmp"
[ "$(cat "$work/other")" = precious ] || fail "rotate wrote the key through a planted symlink"
[ -f "$work/keys" ] && [ ! -L "$work/keys" ] || fail "key file is not a regular file"
[ "$(stat -c %a "$work/keys")" = 600 ] || fail "key file mode $(stat -c %a "$work/keys")"
echo "ok: rotate ignores a planted .tmp symlink and writes mode 600"
echo "all vipr-ticket checks passed"
