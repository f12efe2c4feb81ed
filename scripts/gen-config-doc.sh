#!/usr/bin/env bash
# Rewrite the README's configuration tables from the programs' schema tables (common/conf.h), between
#   <!-- BEGIN config:NAME -->  and  <!-- END config:NAME -->
# Usage: scripts/gen-config-doc.sh [--check] [BUILD_DIR] [README]
#   --check: change nothing; exit 1 (printing the difference) when the README and the schema differ.
set -euo pipefail
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
readme=${2:-$root/README.md}
# NAME -> the program that prints that table with --help-config=markdown.
declare -A gen=(
  [vipr_server]="$build/bench/demo/vipr-demo"
  [viprd]="$build/control/daemon/viprd"
)
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp".*' EXIT
cp "$readme" "$tmp"
for name in "${!gen[@]}"; do
  prog=${gen[$name]}
  [ -x "$prog" ] || { echo "gen-config-doc: $prog not built" >&2; exit 2; }
  "$prog" --help-config=markdown >"$tmp.table"
  grep -q "^<!-- BEGIN config:$name -->\$" "$tmp" || { echo "gen-config-doc: no BEGIN config:$name marker in $readme" >&2; exit 2; }
  grep -q "^<!-- END config:$name -->\$" "$tmp" || { echo "gen-config-doc: no END config:$name marker in $readme" >&2; exit 2; }
  awk -v name="$name" -v table="$tmp.table" '
    $0 == "<!-- BEGIN config:" name " -->" { print; while ((getline l < table) > 0) print l; skip = 1; next }
    $0 == "<!-- END config:" name " -->" { skip = 0 }
    !skip { print }
  ' "$tmp" >"$tmp.new"
  mv "$tmp.new" "$tmp"
done
if [ "$check" = 1 ]; then
  if ! diff -u "$readme" "$tmp"; then
    echo "gen-config-doc: $readme differs from the schema: run scripts/gen-config-doc.sh" >&2
    exit 1
  fi
  exit 0
fi
cmp -s "$tmp" "$readme" || cp "$tmp" "$readme"
