#!/usr/bin/env python3
"""Print 'N passed, N failed[, N skipped]' from meson testlog.json files.

The counts come from meson's own per-test results; exits 1 if any test failed
or if a log is missing (a build that never ran its tests is a failure).
"""
import json
import sys

PASS = {"OK", "EXPECTEDFAIL"}
SKIP = {"SKIP"}

passed = failed = skipped = 0
missing = False
for path in sys.argv[1:]:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                res = json.loads(line)["result"]
                if res in PASS:
                    passed += 1
                elif res in SKIP:
                    skipped += 1
                else:
                    failed += 1
                    print(f"FAILED: {json.loads(line)['name']} ({res})", file=sys.stderr)
    except FileNotFoundError:
        print(f"missing test log {path}: its tests did not run", file=sys.stderr)
        missing = True

line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed or missing else 0)
