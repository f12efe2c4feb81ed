#!/usr/bin/env python3
"""overlay_ab: two running overlays (scripts/vipr-overlay up ... --dir DIR, e.g. one with the viprd of main
and one with a change) measured in alternating rounds, so the load of a shared machine hits both alike.

Each round, on each overlay in turn (the order flips every round): COUNT stores and COUNT fetches with 16
requests in flight (rate, and node CPU per operation: utime + stime of the overlay's viprd processes from
/proc), then LAT stores and LAT fetches one at a time (latency).  One line per overlay:

  DIR store R ops/s, C ms CPU/op, p50 P ms, p99 Q ms | fetch ...

The requests are overlay_bench.py's (its Admin client, run() and cpu_s()); fresh numbers each round.

usage: overlay_ab.py DIR_A DIR_B [--rounds N] [--count COUNT] [--lat LAT]
"""
import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overlay_bench as ob  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--lat", type=int, default=150)
    a = ap.parse_args()
    rng = random.Random(21)
    side = {}
    for d in a.dirs:
        st = json.load(open(os.path.join(d, "overlay.json")))
        side[d] = dict(socks=[n["socket"] for n in st["nodes"]],
                       pids=[p["pid"] for p in st["procs"] if p["name"].startswith("node")],
                       n={"store": 0, "fetch": 0}, secs={"store": 0.0, "fetch": 0.0}, cpu={"store": 0.0, "fetch": 0.0},
                       lat={"store": [], "fetch": []})
    for r in range(a.rounds):
        nums = ["+1444%07d" % i for i in rng.sample(range(10 ** 7), a.count)]
        lnums = ["+1333%07d" % i for i in rng.sample(range(10 ** 7), a.lat)]
        for d in (a.dirs if r % 2 == 0 else a.dirs[::-1]):
            s = side[d]
            for cmd in ("store", "fetch"):
                c0 = ob.cpu_s(s["pids"])
                secs, _ = ob.run(s["socks"], ob.Admin, cmd, nums, 16)
                s["cpu"][cmd] += ob.cpu_s(s["pids"]) - c0
                s["secs"][cmd] += secs
                s["n"][cmd] += len(nums)
            for cmd in ("store", "fetch"):
                _, lat = ob.run(s["socks"], ob.Admin, cmd, lnums, 1)
                s["lat"][cmd] += lat
    for d in a.dirs:
        s = side[d]
        out = []
        for cmd in ("store", "fetch"):
            lat = sorted(s["lat"][cmd])
            out.append("%s %.0f ops/s, %.2f ms CPU/op, p50 %.2f ms, p99 %.2f ms" %
                       (cmd, s["n"][cmd] / s["secs"][cmd], s["cpu"][cmd] * 1000 / s["n"][cmd], ob.pct(lat, .5),
                        ob.pct(lat, .99)))
        print(d, " | ".join(out))


if __name__ == "__main__":
    main()
