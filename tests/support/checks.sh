# tests/support/checks.sh - the shell tests' checks (sourced): one line per check, a count of failures.
#   check WHAT CMD...     run CMD; print "ok   WHAT" or "FAIL WHAT" (and count it in FAILS)
#   wait_for SECONDS CMD... poll CMD every 0.1 s until it succeeds, bounded by the clock (not a count), then
#                         once more; its status is CMD's
# The Python overlay tests have the same in checks.py.
FAILS=0
ok()   { echo "ok   $*"; }
bad()  { echo "FAIL $*"; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
wait_for() { local end=$(( SECONDS + $1 )); shift; while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.1; done; "$@"; }
