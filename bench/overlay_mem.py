#!/usr/bin/env python3
"""overlay_mem: resident memory per stored record of a local overlay's viprd processes.

Starts `scripts/vipr-overlay up --nodes N` on loopback, reads every node's VmRSS (/proc) and stored record
count (`viprctl status --json`, storage.records: replicas included), stores COUNT fresh ViPR registrations
through the nodes' admin sockets (CONC clients, spread over the nodes), waits 2 s, reads both again and stops
the overlay.  Prints, per node and in the mean, the RSS growth and the records added, and
`bytes/record = sum of RSS growth / sum of records added` (the growth of every node over the records every
node took, so where a record landed does not matter), scaled to MB per million records.

What the figure is: the marginal cost of a record while it sits in RocksDB's memtable (write_buffer 64 MB,
up to 3 of them) and the block cache (256 MB); after a memtable flush a record costs its SST index and bloom
filter share in memory instead.  The node's quota (proportional to its ring share, storage.quota_limit)
bounds COUNT on a small overlay: 12,000 stores on 4 nodes fill about 2/3 of it.

With --quota Q the overlay's ViPR quota per Node-ID (the signed document's vipr.quota) is raised so a node
can hold far more than its share of the default 10,000: `--nodes 3 --count 1000000 --quota 2000000` puts
every record on every node (the responsible node and its 2 replicas are the 3 nodes), so each node ends
holding a million records; --checkpoints K prints RSS and records K times on the way (RocksDB flushes its
memtables to SST files as they fill, so the growth is not linear: the curve shows where it bends).

usage: overlay_mem.py [--nodes N] [--count COUNT] [--conc CONC] [--quota Q] [--checkpoints K]
       (run from the source tree, after a build in build/)
"""
import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import shutil
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERLAY = os.path.join(ROOT, "scripts", "vipr-overlay")
VIPRCTL = os.path.join(ROOT, "build", "control", "tools", "viprctl")


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS for pid %d" % pid)


def records(sock):
    out = subprocess.run([VIPRCTL, "-s", sock, "status", "--json"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return json.loads(out)["storage"]["records"]


def store_all(socks, nums, conc):
    """stores of the numbers nums, conc clients; returns the error answers (bounded: each waits <= 60 s)."""
    nums = iter(nums)
    lock = threading.Lock()
    errs = []

    def worker(k):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(socks[k % len(socks)])

        def rd(n):
            b = b""
            while len(b) < n:
                c = s.recv(n - len(b))
                if not c:
                    raise ConnectionError("admin socket closed")
                b += c
            return b
        try:
            while True:
                with lock:
                    num = next(nums, None)
                if num is None:
                    return
                body = json.dumps({"v": 1, "cmd": "store", "args": {"number": num}}).encode()
                s.sendall(struct.pack(">I", len(body)) + body)
                r = json.loads(rd(struct.unpack(">I", rd(4))[0]))
                if not r.get("ok"):
                    errs.append("%s: %s" % (num, r.get("error")))
        finally:
            s.close()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--count", type=int, default=12000)
    ap.add_argument("--conc", type=int, default=8)
    ap.add_argument("--quota", type=int, default=0, help="vipr.quota of the overlay (0: the default 10,000)")
    ap.add_argument("--checkpoints", type=int, default=1, metavar="K", help="report RSS K times while storing")
    a = ap.parse_args()
    if a.count < 1 or a.checkpoints < 1 or a.count > 9 * 10 ** 7:
        sys.exit("overlay_mem: --count must be 1..90000000 and --checkpoints at least 1")
    rng = random.Random(1)
    nums = ["+1%010d" % i for i in rng.sample(range(10 ** 10), a.count)]
    extra = ["--overlay-set", "vipr.quota=%d" % a.quota] if a.quota else []
    tmp = tempfile.mkdtemp(prefix="overlay-mem-")
    d = os.path.join(tmp, "ov")
    try:
        up = subprocess.run([sys.executable, OVERLAY, "up", "--nodes", str(a.nodes), "--dir", d] + extra,
                            capture_output=True, text=True, timeout=600)
        if up.returncode != 0:
            sys.exit("vipr-overlay up: %s" % up.stderr)
        st = json.load(open(os.path.join(d, "overlay.json")))
        socks = [n["socket"] for n in st["nodes"]]
        pids = [p["pid"] for p in st["procs"] if p["name"].startswith("node")]
        time.sleep(2)
        r0 = [rss_bytes(p) for p in pids]
        e0 = [records(s) for s in socks]
        t0 = time.perf_counter()
        errs = []
        for k in range(a.checkpoints):
            part = nums[k * a.count // a.checkpoints:(k + 1) * a.count // a.checkpoints]
            errs += store_all(socks, part, a.conc)
            if k + 1 < a.checkpoints:
                rk, ek = [rss_bytes(p) for p in pids], [records(s) for s in socks]
                print("# checkpoint %d/%d at %.0f s: mean rss %.1f MB, mean records %.0f, %.0f bytes/record so far"
                      % (k + 1, a.checkpoints, time.perf_counter() - t0, sum(rk) / len(rk) / 1e6,
                         sum(ek) / len(ek), (sum(rk) - sum(r0)) / max(1, sum(ek) - sum(e0))), flush=True)
        secs = time.perf_counter() - t0
        time.sleep(2)
        r1 = [rss_bytes(p) for p in pids]
        e1 = [records(s) for s in socks]
    finally:
        subprocess.run([sys.executable, OVERLAY, "down", "--dir", d], capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)
    print("# %d stores in %.1f s, %d errors%s" % (a.count, secs, len(errs), (", first: " + errs[0]) if errs else ""))
    for i in range(len(pids)):
        print("# node%d rss %.1f -> %.1f MB, records %d -> %d" % (i, r0[i] / 1e6, r1[i] / 1e6, e0[i], e1[i]))
    dr, de = sum(r1) - sum(r0), sum(e1) - sum(e0)
    if de <= 0:
        sys.exit("no records added")
    n = len(pids)
    print("overlay%d_rss_per_record %.0f bytes (%.2f MB growth per node for %.0f records per node)" %
          (n, dr / de, dr / n / 1e6, de / n))
    if de / n >= 900000:
        print("overlay%d_rss_at_a_million_records %.0f MB/node (measured: %.0f records per node, idle %.1f MB)" %
              (n, sum(r1) / n / 1e6, de / n, sum(r0) / n / 1e6))
    else:
        print("overlay%d_rss_per_million_records %.0f MB/node (linear scaling of the line above)" % (n, dr / de))


if __name__ == "__main__":
    main()
