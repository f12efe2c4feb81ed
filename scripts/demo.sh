#!/usr/bin/env bash
# The README's main command: the whole ViPR flow on one machine, in about 10 s.
#
# Installs what is missing (scripts/setup.sh), builds (meson + ninja, warnings
# are errors), then runs build/bench/demo/vipr-demo: an overlay, carriers A and B and a
# thief T each running a ViPR server on loopback, their call agents as real
# vipr-agent processes, a PSTN call simulator, validations over PVP, routes and
# tickets, and A's/B's border element checking the tickets with vipr-ticket.
# Exit status 0 only if the flow worked (owners validated, the thief never,
# every ticket verified).
#
#   scripts/demo.sh                    default run (12 calls, 100 numbers per carrier)
#   scripts/demo.sh --calls 30 --seed 7 --delay-max 10
#   scripts/demo.sh --help             every option
#
# Logs, configurations, ticket keys and call records: ./run/demo-<UTC time>/
# (or --run-dir DIR).  Set VIPRD_BUILD_DIR to use another build directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build="${VIPRD_BUILD_DIR:-build}"

scripts/setup.sh
if [ ! -f "$build/build.ninja" ]; then
  echo "demo: configuring $build (meson setup)" >&2
  meson setup "$build" -Dwerror=true >/dev/null
fi
echo "demo: building (ninja -C $build)" >&2
if ! ninja -C "$build" >/dev/null; then
  echo "demo: the build failed; run 'ninja -C $build' to see why" >&2
  exit 1
fi

exec "$build/bench/demo/vipr-demo" \
  --agent "$build/control/tools/vipr-agent" \
  --ticket "$build/pvp/tools/vipr-ticket" \
  "$@"
