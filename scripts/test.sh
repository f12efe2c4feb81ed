#!/usr/bin/env bash
# The whole test suite, from a fresh clone: install, build (warnings are errors),
# run every unit/integration/interop test, then a clang build with ASan+UBSan
# that re-runs the unit tests and smoke-runs every libFuzzer target.
# Ends with one line: "N passed, N failed[, N skipped]" from meson's own results.
#
#   scripts/test.sh                 everything
#   FUZZ_SECONDS=60 scripts/test.sh longer fuzz runs (default 30 s per target)
#   VIPRD_NO_SANITIZE=1 scripts/test.sh   skip the clang/sanitizer build
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
logs=()

if [ ! -f build/build.ninja ]; then
  meson setup build -Dwerror=true >/dev/null
fi
ninja -C build >/dev/null
meson test -C build --print-errorlogs --num-processes 2 --no-suite fuzz || true
logs+=(build/meson-logs/testlog.json)

if [ "${VIPRD_NO_SANITIZE:-0}" != 1 ]; then
  if [ ! -f build-asan/build.ninja ]; then
    CC=clang meson setup build-asan -Dwerror=true -Dfuzz=enabled \
      -Db_sanitize=address,undefined -Db_lundef=false \
      -Dfuzz_seconds="$FUZZ_SECONDS" >/dev/null
  else
    meson configure build-asan -Dfuzz_seconds="$FUZZ_SECONDS"
  fi
  ninja -C build-asan >/dev/null
  # UBSan reports must fail the test, not just print.
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  meson test -C build-asan --print-errorlogs --num-processes 2 --suite unit --suite fuzz || true
  logs+=(build-asan/meson-logs/testlog.json)
fi

python3 scripts/test-summary.py "${logs[@]}"
