#!/usr/bin/env bash
# flow_bench: the whole ViPR flow between real viprd processes (scripts/demo.sh) against the local baselines,
# measured in the same run (issue 16).
#
#   publish_rate   numbers per second one carrier (A) publishes into an overlay of NODES viprd processes:
#                  signed Stores (interleaved Resource-ID sweeps) over TLS links, every hop signed, each acknowledged by
#                  the responsible peer after its signature, access control and quota checks;
#                  baseline: build/bench/bench_storage --sig p256 storing the same number of ViPR
#                  registrations directly into one local store (st_store, batches of 256, no network, no
#                  signature checks).
#   refresh_sweep  seconds carrier A takes to re-store its whole block (the call agent's refresh: the same
#                  numbers again, each with a newer storage_time).
#   validation_rate  calls validated per second end to end (per call: 3 fetches, AppAttach, PVP over the
#                  attached connection, Notify to the subscribed agent), over the validating servers' own
#                  window: from their first validation outcome to their last (the demo's "validation window"
#                  line, log times); the demo runs with --delay 0-0 here (each record validated as it
#                  arrives), so the work paces it, not the scheduler's spread (1-4 s in a plain demo run,
#                  which bounded the figure to CALLS / 3 s before); baseline: build/bench/pvp-bench (PVP
#                  validations per second per core of the server thread alone, -n 200, --no-gnutls).
#                  Use --calls 500 for a throughput figure.
#   node_rss       resident memory of every viprd after the run (MB), from scripts/demo.sh's summary.
# Ratios (`name value unit (baseline value unit, ratio x)`) are above 1 when better for us.
#
# usage: bench/flow_bench.sh [--nodes N] [--numbers N] [--others N] [--calls N] [--run-dir DIR]
#   defaults: --nodes 16 --numbers 100000 --calls 200; run from the source tree after a build in build/.
#   --others N: B publishes N numbers and T claims N/2 of A's (default: --numbers); the figures are A's, so
#   `--numbers 1000000 --others 10000` measures one carrier's million without publishing three blocks.
#   --delay MIN-MAX: the demo's scheduler delay (default 0-0 here; the demo's own default is 1-4).
# The overlay settings are scripts/demo.sh's (quota, Node-IDs per carrier, store_rate and store_inflight at
# viprd's defaults); the demo prints them and this program repeats them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build="${VIPRD_BUILD_DIR:-build}"
NODES=16 NUMBERS=100000 OTHERS="" CALLS=200 RUN="" DELAY=0-0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES=$2; shift 2 ;;
    --numbers) NUMBERS=$2; shift 2 ;;
    --others) OTHERS=$2; shift 2 ;;
    --calls) CALLS=$2; shift 2 ;;
    --run-dir) RUN=$2; shift 2 ;;
    --delay) DELAY=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "flow_bench: unknown option $1 (--help)" >&2; exit 2 ;;
  esac
done
RUN=${RUN:-"$root/run/flow-bench-$(date -u +%Y%m%dT%H%M%SZ)"}
mkdir -p "$RUN/store"
out="$RUN/demo.out"

OTHERS=${OTHERS:-$NUMBERS}
echo "# flow_bench nodes=$NODES numbers=$NUMBERS others=$OTHERS calls=$CALLS run=$RUN"
scripts/demo.sh --nodes "$NODES" --numbers "$NUMBERS" --others "$OTHERS" --calls "$CALLS" --delay "$DELAY" --refresh --run-dir "$RUN/demo" > "$out" 2>&1 \
  || { tail -20 "$out" >&2; echo "flow_bench: the demo failed (see $out)" >&2; exit 1; }
grep -E 'carrier A \(|carrier A published|refresh sweep|validations:|validation window|summary:|memory' "$out" | sed 's/^/# /'

# The baselines, after the overlay is gone (the same machine, the same build).
"$build/bench/bench_storage" --n "$NUMBERS" --no-baseline --sig p256 --dir "$RUN/store" > "$RUN/storage.out" 2>&1 \
  || { cat "$RUN/storage.out" >&2; exit 1; }
rm -rf "$RUN/store"
"$build/bench/pvp-bench" -n 200 --no-gnutls > "$RUN/pvp.out" 2>&1 || { cat "$RUN/pvp.out" >&2; exit 1; }

python3 - "$out" "$RUN/storage.out" "$RUN/pvp.out" "$CALLS" <<'PY'
import re, sys
demo, storage, pvp = (open(p).read() for p in sys.argv[1:4])
calls = int(sys.argv[4])
def grab(pat, text, what):
    m = re.search(pat, text, re.M)
    if not m:
        sys.exit("flow_bench: no %s in the output" % what)
    return m
pub = grab(r"carrier A published (\d+) numbers in ([\d.]+) s", demo, "publish line")
n, secs = int(pub.group(1)), float(pub.group(2))
st = float(grab(r"^storage_load_rate ([\d.]+)", storage, "storage_load_rate").group(1))
rate = n / secs
print("publish_rate %.1f numbers/s (bench_storage st_store %.1f stores/s, ratio %.4f x)" % (rate, st, rate / st))
ref = grab(r"refresh sweep: carrier A re-stored (\d+) numbers in ([\d.]+) s", demo, "refresh line")
print("refresh_sweep %.1f s for %s numbers (%.1f numbers/s)" % (float(ref.group(2)), ref.group(1),
                                                               int(ref.group(1)) / float(ref.group(2))))
win = grab(r"validation window: (\d+) handshake outcomes \((\d+) calls\) between the servers' first and last, "
           r"([\d.]+) s", demo, "validation window line")
pm = grab(r"^pvp_validations_vs_openssl ([\d.]+) validations/s", pvp, "pvp-bench figure")
vr = calls / float(win.group(3))
print("validation_rate %.1f validations/s end to end, %d calls, %s handshakes in %s s (pvp-bench %.1f validations/s "
      "per core, ratio %.4f x)" % (vr, calls, win.group(1), win.group(3), float(pm.group(1)), vr / float(pm.group(1))))
mem = grab(r"memory \(resident MB per viprd\):(.*)$", demo, "memory line").group(1).split()
vals = [float(x.split("=")[1]) for x in mem if not x.endswith("?")]
print("node_rss mean %.1f MB, max %.1f MB over %d nodes:%s" % (sum(vals) / len(vals), max(vals), len(vals),
                                                              " " + " ".join(mem)))
PY
