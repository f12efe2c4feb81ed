#!/usr/bin/env python3
"""overlay_bench: Store and Fetch through a local overlay of N real viprd processes against OpenDHT (dhtnode)
at the same N, measured in the same run on loopback.

ours:     scripts/vipr-overlay up --nodes N; each operation is one admin request (docs/protocol.md §10) to a
          random node: `store NUMBER` (a ViPR registration signed by that node, routed over TLS links, every
          hop's message signed, written to the responsible node's WAL) and `fetch NUMBER` (the responsible
          node and its 2 replicas, every entry verified: the 3 asked at once, docs/protocol.md §2.7).
baseline: N `dhtnode -s` processes (OpenDHT, UDP, unsigned values), each with its HTTP proxy
          (--proxyserver); each operation is one HTTP request to a random node's proxy: POST /KEY (put) and
          GET /KEY (get), KEY = SHA-1 of the same number, value = the same 23 bytes as our registration.

Figures (one line each, `name value unit (baseline value unit, ratio x)`, ratios above 1 better for us):
  store_rate / fetch_rate   operations per second with CONC clients in flight (COUNT operations each)
  store_p50 / p99, fetch_p50 / p99   latency with one operation at a time (LAT operations each)
  cpu_per_store / cpu_per_fetch      server CPU (utime+stime of every node process, /proc) per operation
  idle_rss / loaded_rss              mean resident memory per node before the run and after it
The load generator is this Python process: its own CPU is not in the servers' figure (measured from the
node processes only) and is the same kind of work on both sides (one request, one answer, over a local
socket); it is printed for reference.

usage: overlay_bench.py [--nodes N] [--count COUNT] [--conc CONC] [--lat LAT]   (run from the source tree,
       after a build in build/)
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_base(n):
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, lo - n)
        ok = True
        for p in range(base, base + n):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                t = socket.socket(socket.AF_INET, kind)
                try:
                    t.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                t.close()
            if not ok:
                break
        if ok:
            return base
    raise RuntimeError("no free port range")


def rss_mb(pids):
    """Mean resident set of the processes, MB (VmRSS)."""
    t = []
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                t += [int(l.split()[1]) for l in f if l.startswith("VmRSS:")]
        except OSError:
            pass
    return sum(t) / len(t) / 1024 if t else float("nan")


def cpu_s(pids):
    t = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fl = f.read().rsplit(")", 1)[1].split()
            t += int(fl[11]) + int(fl[12])
        except OSError:
            pass
    return t / TICK


class Admin:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(60)
        self.s.connect(path)

    def call(self, cmd, num):
        body = json.dumps({"v": 1, "cmd": cmd, "args": {"number": num}}).encode()
        self.s.sendall(struct.pack(">I", len(body)) + body)
        n = struct.unpack(">I", self._read(4))[0]
        r = json.loads(self._read(n))
        if not r.get("ok"):
            raise RuntimeError("%s %s: %s" % (cmd, num, r.get("error")))
        return r

    def _read(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise ConnectionError("closed")
            b += c
        return b


class Proxy:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, cmd, num):
        key = hashlib.sha1(num.encode()).hexdigest()
        if cmd == "store":
            body = json.dumps({"data": base64.b64encode(VALUE).decode()})
            self.c.request("POST", "/" + key, body, {"Content-Type": "application/json"})
        else:
            self.c.request("GET", "/" + key)
        r = self.c.getresponse()
        data = r.read()
        if r.status != 200 or (cmd == "fetch" and b'"data"' not in data):
            raise RuntimeError("%s %s: HTTP %d %r" % (cmd, num, r.status, data[:100]))
        return data


VALUE = bytes(23)  # the size of our registration's value (docs/protocol.md §2)


def run(targets, make, cmd, numbers, conc):
    """conc threads, each with its own connection per target; returns (seconds, latencies)."""
    lat = []
    lock = threading.Lock()
    it = iter(numbers)
    errs = []

    def worker(seed):
        rng = random.Random(seed)
        conns = {}
        mine = []
        while True:
            with lock:
                num = next(it, None)
            if num is None:
                break
            t = rng.choice(targets)
            if t not in conns:
                conns[t] = make(t)
            t0 = time.perf_counter()
            try:
                conns[t].call(cmd, num)
            except Exception as e:  # counted and reported, never silently
                errs.append(str(e))
                continue
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    secs = time.perf_counter() - t0
    if errs:
        print("# %s: %d errors, first: %s" % (cmd, len(errs), errs[0]), flush=True)
    return secs, sorted(lat)


def pct(xs, p):
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")


def measure(name, targets, make, pids, a, rng):
    out = {"idle_rss_mb": rss_mb(pids)}
    for cmd in ("store", "fetch"):
        nums = ["+1555%07d" % i for i in rng.sample(range(10 ** 7), a.count)]
        if cmd == "fetch":
            nums = out["stored"]
        c0 = cpu_s(pids)
        secs, _ = run(targets, make, cmd, nums, a.conc)
        out[cmd + "_rate"] = len(nums) / secs
        out[cmd + "_cpu_ms"] = (cpu_s(pids) - c0) * 1000 / len(nums)
        if cmd == "store":
            out["stored"] = nums
        print("# %s %s: %d in %.1f s" % (name, cmd, len(nums), secs), flush=True)
    lat_nums = ["+1666%07d" % i for i in rng.sample(range(10 ** 7), a.lat)]
    _, ls = run(targets, make, "store", lat_nums, 1)
    _, lf = run(targets, make, "fetch", lat_nums, 1)
    out.update(store_p50=pct(ls, .5), store_p99=pct(ls, .99), fetch_p50=pct(lf, .5), fetch_p99=pct(lf, .99),
               loaded_rss_mb=rss_mb(pids))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--conc", type=int, default=16)
    ap.add_argument("--lat", type=int, default=300)
    a = ap.parse_args()
    if not shutil.which("dhtnode"):
        sys.exit("dhtnode not installed (scripts/setup.sh installs it)")
    rng = random.Random(1)
    tmp = tempfile.mkdtemp(prefix="overlay-bench-")
    d = os.path.join(tmp, "ov")
    dht = []
    try:
        # ---- ours -------------------------------------------------------------------------------------
        up = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "vipr-overlay"), "up", "--nodes",
                             str(a.nodes), "--dir", d, "--base-port", str(free_base(a.nodes))],
                            capture_output=True, text=True, timeout=600)
        if up.returncode != 0:
            sys.exit("vipr-overlay up: %s" % up.stderr)
        st = json.load(open(os.path.join(d, "overlay.json")))
        pids = [p["pid"] for p in st["procs"] if p["name"].startswith("node")]
        time.sleep(2)
        ours = measure("viprd", [n["socket"] for n in st["nodes"]], Admin, pids, a, rng)
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "vipr-overlay"), "down", "--dir", d],
                       capture_output=True, timeout=120)
        # ---- OpenDHT ----------------------------------------------------------------------------------
        base = free_base(2 * a.nodes)
        for k in range(a.nodes):
            cmd = ["dhtnode", "-s", "-n", "77", "-p", str(base + k), "--proxyserver", str(base + a.nodes + k)]
            if k:
                cmd += ["-b", "127.0.0.1:%d" % base]
            dht.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
            time.sleep(0.1)
        time.sleep(5)  # the routing tables fill (OpenDHT has no "joined" to wait for)
        base_r = measure("dhtnode", [base + a.nodes + k for k in range(a.nodes)], Proxy, [p.pid for p in dht], a,
                         rng)
    finally:
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "vipr-overlay"), "down", "--dir", d],
                       capture_output=True, timeout=120)
        for p in dht:
            p.send_signal(signal.SIGTERM)
        for p in dht:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    n = a.nodes
    for k, unit, rate in (("store_rate", "ops/s", True), ("fetch_rate", "ops/s", True),
                          ("store_p50", "ms", False), ("store_p99", "ms", False), ("fetch_p50", "ms", False),
                          ("fetch_p99", "ms", False), ("store_cpu_ms", "ms CPU/op", False),
                          ("fetch_cpu_ms", "ms CPU/op", False), ("idle_rss_mb", "MB/node", False),
                          ("loaded_rss_mb", "MB/node", False)):
        o, b = ours[k], base_r[k]
        ratio = (o / b) if rate else (b / o)
        print("overlay%d_%s %.2f %s (dhtnode %.2f %s, ratio %.2fx)" % (n, k, o, unit, b, unit, ratio))


if __name__ == "__main__":
    main()
