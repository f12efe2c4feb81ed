#!/usr/bin/env python3
"""Registrations through a real overlay: N viprd processes (scripts/vipr-overlay on loopback); COUNT ViPR
registrations stored through random nodes (admin `store`: the node signs an entry claiming the number for its
own Node-ID and routes the Store), then fetched through other random nodes (admin `fetch`: the responsible node
and its 2 replicas, every entry's signature verified again by the fetching node).  For every number:

- the store was answered by the node responsible for the number (the true successor of its Resource-ID,
  computed here from all Node-IDs) and the first copy of the fetch came from that same node;
- that copy holds exactly one registration, the one stored: claimant and contact = the storing node's
  Node-ID, VService 1, PVP methods 3; no entry of any copy was rejected (signature, signer, claimant);
- the 3-copy vote (registrations held by at least 2 copies) and the numbers all 3 copies hold exactly (the
  responsible node and its 2 true successors, each its own answer) are counted and printed; with --require-replicas
  every number must be on all 3 copies.

With --churn (overlay_churn, and the heavy suite), three rounds follow, each checked by fetching every
number again through a random live node: 3 nodes killed one at a time with the repair interval between
them; 4 graceful leaves (admin `leave`); 5 nodes killed at once.  A number is lost when no copy answers its
registration while one of the nodes that held it (from the previous fetch) is still alive; every round must
lose none.  After the first two rounds every number must also be back on 3 copies (the live responsible
node and its 2 live successors).

The admin protocol is spoken directly (docs/protocol.md §10: 4-byte big-endian length + one JSON object), one
connection per worker thread and node.  Every process is stopped in the finally block (vipr-overlay down).

usage: test_overlay_store.py VIPR_OVERLAY VIPRD VIPR_ENROLL VIPRCTL [--nodes N] [--count COUNT]
"""
import argparse
import bisect
import signal
import hashlib
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import re
import threading
import time
import urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from checks import check, failures  # noqa: E402
from free_ports import free_base  # noqa: E402  (ports below the ephemeral range; the file says why)

OVERLAY_SET = ["chord_update_interval=2s", "chord_ping_interval=2s"]
WORKERS = 8
REPLICA_SETTLE_S = 3.0  # a copy still missing at the fetch must be there this much later
class Admin:
    """One admin connection (docs/protocol.md §10.1): request and answer frames, one at a time."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)

    def call(self, cmd, arg_name=None, arg=None):
        req = {"v": 1, "cmd": cmd}
        if arg_name:
            req["args"] = {arg_name: arg}
        body = json.dumps(req).encode()
        self.s.sendall(struct.pack(">I", len(body)) + body)
        n = struct.unpack(">I", self.read(4))[0]
        return json.loads(self.read(n))

    def read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("admin socket closed")
            buf += chunk
        return buf

    def close(self):
        self.s.close()


def rid_of(number):
    """The Resource-ID of a number (docs/protocol.md §2): SHA-1("+digits") cut to 128 bits."""
    return hashlib.sha1(number.encode()).hexdigest()[:32]


def responsible(ids_sorted, rid):
    """The successor of rid on the ring: the first Node-ID >= rid, wrapping."""
    i = bisect.bisect_left(ids_sorted, rid)
    return ids_sorted[i % len(ids_sorted)]


def run_parallel(jobs, fn, nodes):
    """Run fn(conn_of, job) for every job over WORKERS threads; returns (results, seconds)."""
    out = [None] * len(jobs)
    nxt = [0]
    lock = threading.Lock()

    def worker():
        conns = {}
        try:
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(jobs):
                    return
                def conn_of(node):
                    if node["name"] not in conns:
                        conns[node["name"]] = Admin(node["socket"])
                    return conns[node["name"]]
                try:
                    out[i] = fn(conn_of, jobs[i])
                except (OSError, ValueError) as e:
                    out[i] = {"ok": False, "error": {"message": "client: %s" % e}}
        finally:
            for c in conns.values():
                c.close()
    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=3600)
    return out, time.monotonic() - t0


def holders_of(fetch_answer):
    """Node-IDs of the copies that held a registration in one fetch answer."""
    if not (fetch_answer and fetch_answer.get("ok")):
        return set()
    return {c["responder"] for c in fetch_answer["data"]["copies"] if c.get("answered") and c.get("registrations")}


def churn(a, d, nodes, numbers, via_store, last, rng):
    procs = {p["name"]: p for p in json.load(open(os.path.join(d, "overlay.json")))["procs"]}
    alive = list(nodes)
    holders = {num: holders_of(r) for num, r in zip(numbers, last)}

    def on_all3(num, r):
        """The 3 copies are the live responsible node and its 2 live successors, each holding the registration."""
        if not (r and r.get("ok")):
            return False
        me = via_store[num]["node_id"]
        want = [{"claimant": me, "vservice_id": 1, "contact": me, "pvp_methods": 3}]
        ids = sorted(n["node_id"] for n in alive)
        i = ids.index(responsible(ids, rid_of(num)))
        cs = r["data"]["copies"]
        return [c.get("responder") for c in cs] == [ids[(i + k) % len(ids)] for k in range(3)] and \
            all(c.get("answered") and c.get("registrations") == want for c in cs)

    def refetch(what, three=False):
        def fetch(conn_of, num):
            return conn_of(rng.choice(alive)).call("fetch", "number", num)
        res, secs = run_parallel(numbers, fetch, alive)
        if three:
            # the ring repaired, every registration is back on 3 copies (the owner's range copied to its new
            # replicas); one still short is fetched again REPLICA_SETTLE_S later
            short = [num for num, r in zip(numbers, res) if not on_all3(num, r)]
            first = len(short)
            if short:
                time.sleep(REPLICA_SETTLE_S)
                again, _ = run_parallel(short, fetch, alive)
                short = [num for num, r in zip(short, again) if not on_all3(num, r)]
            print("churn %s: %d not on 3 copies at the fetch, %d still not %.0f s later" %
                  (what, first, len(short), REPLICA_SETTLE_S), flush=True)
            check(not short, "%s: every registration back on 3 copies (live responsible node and its 2 "
                  "successors): %d not, first %r" % (what, len(short), short[:3]))
        live = {n["node_id"] for n in alive}
        lost, failed, empty = [], 0, 0
        for num, r in zip(numbers, res):
            h = holders_of(r)
            if not h and holders[num] & live:
                lost.append(num)
                if r and r.get("ok"):
                    empty += 1  # every copy answered without it
                else:
                    failed += 1  # the fetch itself failed (no copy reached)
                    if failed <= 3:
                        print("  fetch failed %s: %r" % (num, r), flush=True)
            holders[num] = h or holders[num]
        print("churn %s: fetched %d in %.1f s, lost %d (a holder survived, no copy answered: %d fetches failed, "
              "%d answered without it)" % (what, len(numbers), secs, len(lost), failed, empty), flush=True)
        check(not lost, "%s loses no registration while one of its copies survived: %d lost, first %r" %
              (what, len(lost), lost[:3]))

    def kill(n):
        os.kill(procs[n["name"]]["pid"], signal.SIGKILL)
        alive.remove(n)

    for _ in range(3):
        kill(rng.choice(alive[1:]))
        time.sleep(6)  # three rounds of the 2 s update interval: the ring repairs and re-replicates
    refetch("3 kills one at a time", three=True)
    for _ in range(4):
        n = rng.choice(alive[1:])
        c = Admin(n["socket"])
        c.call("leave")
        c.close()
        alive.remove(n)
        deadline = time.monotonic() + 30
        while os.path.exists("/proc/%d" % procs[n["name"]]["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)
    refetch("4 graceful leaves", three=True)
    for n in rng.sample(alive[1:], min(5, len(alive) - 2)):
        kill(n)
    time.sleep(6)
    refetch("5 killed at once")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("launcher")
    ap.add_argument("viprd")
    ap.add_argument("enroll")
    ap.add_argument("viprctl")
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--require-replicas", action="store_true")
    ap.add_argument("--churn", action="store_true")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    print("seed=%d nodes=%d count=%d" % (a.seed, a.nodes, a.count), flush=True)
    base_dir = tempfile.mkdtemp(prefix="vipr-store-test-")
    d = os.path.join(base_dir, "ov")
    try:
        cmd = [sys.executable, a.launcher, "up", "--nodes", str(a.nodes), "--dir", d, "--viprd", a.viprd,
               "--enroll", a.enroll, "--viprctl", a.viprctl, "--base-port", str(free_base(a.nodes)),
               "--join-timeout", "120"]
        for kv in OVERLAY_SET:
            cmd += ["--overlay-set", kv]
        up = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if not check(up.returncode == 0, "up %d nodes: %s" % (a.nodes, up.stderr.strip()[-300:])):
            return 1
        nodes = json.load(open(os.path.join(d, "overlay.json")))["nodes"]
        for n in nodes:
            c = Admin(n["socket"])
            n["node_id"] = c.call("status")["data"]["node_ids"][0]
            c.close()
        ids = sorted(n["node_id"] for n in nodes)
        by_id = {n["node_id"]: n for n in nodes}

        # the ring must be true before the responsible nodes can be checked
        def ring_true():
            for n in nodes:
                c = Admin(n["socket"])
                v = c.call("ring")["data"]["vnodes"][0]
                c.close()
                i = ids.index(n["node_id"])
                if v["successors"][:1] != [ids[(i + 1) % len(ids)]]:
                    return False
            return True
        deadline = time.monotonic() + 60
        while not ring_true() and time.monotonic() < deadline:
            time.sleep(0.5)
        check(ring_true(), "the ring is true before the stores")

        numbers = ["+1555%07d" % i for i in rng.sample(range(10 ** 7), a.count)]
        via_store = {num: rng.choice(nodes) for num in numbers}

        def store(conn_of, num):
            return conn_of(via_store[num]).call("store", "number", num)
        res, secs = run_parallel(numbers, store, nodes)
        bad = [(num, r) for num, r in zip(numbers, res) if not (r and r.get("ok"))]
        print("stores=%d seconds=%.1f rate=%.0f/s (admin socket -> node_request -> signed Store -> WAL)" %
              (a.count, secs, a.count / secs), flush=True)
        check(not bad, "%d stores through random nodes answered: %d failed, first %r" % (a.count, len(bad), bad[:3]))
        wrong = [num for num, r in zip(numbers, res) if r and r.get("ok") and
                 r["data"]["responder"] != responsible(ids, rid_of(num))]
        check(not wrong, "every store answered by the true responsible node: %d not, first %r" %
              (len(wrong), wrong[:3]))
        check(all(r["data"]["resource_id"] == rid_of(num) for num, r in zip(numbers, res) if r and r.get("ok")),
              "the daemon's Resource-ID of a number is SHA-1(\"+digits\")[0..15]")
        # each node timed exactly the stores sent through it
        served, timed_ok = 0, True
        for n in nodes:
            c = Admin(n["socket"])
            n["metrics"] = c.call("status")["data"]["metrics"]
            c.close()
            with urllib.request.urlopen("http://%s/metrics" % n["metrics"], timeout=10) as f:
                body = f.read().decode()
            m = re.search(r'^viprd_stores_served_total\{result="ok"\} (\d+)$', body, re.M)
            served += int(m.group(1)) if m else 0
            m = re.search(r'^viprd_request_duration_seconds_count\{method="store"\} (\d+)$', body, re.M)
            mine = sum(1 for num in numbers if via_store[num] is n)
            if not m or int(m.group(1)) != mine:
                timed_ok = False
        # printed, not checked: the storage service's own count (nk_stats.stores), which today misses some
        # of the Stores it answered (README "Known gaps")
        print("stores_served_ok_sum=%d of %d" % (served, a.count), flush=True)
        check(timed_ok, "/metrics: each node's store latency histogram counts the stores sent through it")

        via_fetch = {num: rng.choice([n for n in nodes if n is not via_store[num]]) for num in numbers}

        def fetch(conn_of, num):
            return conn_of(via_fetch[num]).call("fetch", "number", num)
        def on_all3(num, r):
            """The 3 copies are the true responsible node and its 2 true successors, each holding exactly the
            registration stored."""
            if not (r and r.get("ok")):
                return False
            me = via_store[num]["node_id"]
            want = [{"claimant": me, "vservice_id": 1, "contact": me, "pvp_methods": 3}]
            i = ids.index(responsible(ids, rid_of(num)))
            true3 = [ids[(i + k) % len(ids)] for k in range(3)]
            cs = r["data"]["copies"]
            return [c.get("responder") for c in cs] == true3 and \
                all(c.get("answered") and c.get("registrations") == want for c in cs)

        res, secs = run_parallel(numbers, fetch, nodes)
        print("fetches=%d seconds=%.1f rate=%.0f/s (3 copies each, every entry verified)" %
              (a.count, secs, a.count / secs), flush=True)
        missing, badval, rejected, badresp, majority, all3, short3 = [], [], 0, [], 0, 0, []
        for num, r in zip(numbers, res):
            if not (r and r.get("ok")):
                missing.append((num, r))
                continue
            cs = r["data"]["copies"]
            rejected += sum(c.get("rejected", 0) for c in cs)
            c0 = cs[0]
            me = via_store[num]["node_id"]
            if not c0["answered"] or c0["responder"] != responsible(ids, rid_of(num)):
                badresp.append(num)
            want = [{"claimant": me, "vservice_id": 1, "contact": me, "pvp_methods": 3}]
            if c0.get("registrations") != want:
                badval.append((num, c0.get("registrations")))
            if r["data"]["registrations"] == want:
                majority += 1
            if on_all3(num, r):
                all3 += 1
            else:
                short3.append(num)
        check(not missing, "%d fetches through other random nodes answered: %d failed, first %r" %
              (a.count, len(missing), missing[:3]))
        check(not badresp, "the first copy comes from the true responsible node: %d not" % len(badresp))
        check(not badval, "the responsible node's copy holds exactly the registration stored (claimant, contact, "
              "VService, methods): %d wrong, first %r" % (len(badval), badval[:3]))
        check(rejected == 0, "no entry of any copy failed verification (signature, signer, claimant): %d" % rejected)
        # The 3 copies are asked at once, copy 1 and 2 at the successors the fetching node guesses from its
        # table and links; an answer from a wrong guess is dropped and that copy asked again of the true
        # successor of the copy before (docs/protocol.md §2.7).  With 16 nodes a node knows 13-15 of the others,
        # so some guesses are wrong: the checks of the copies' holders above then show that none was kept.
        ok_res = [r for r in res if r and r.get("ok")]
        par = sum(1 for r in ok_res if r["data"].get("parallel"))
        missed = sum(r["data"].get("guess_missed", 0) for r in ok_res)
        hops = [c["hops"] for r in ok_res for c in r["data"]["copies"] if c.get("answered")]
        print("parallel=%d/%d guess_missed=%d mean_hops_per_copy=%.2f" %
              (par, len(ok_res), missed, sum(hops) / max(1, len(hops))), flush=True)
        if a.nodes <= 16:
            check(par * 2 > len(ok_res), "most fetches ask their 3 copies at once: %d of %d" % (par, len(ok_res)))
            check(missed > 0, "some replica guesses were wrong (what the copies' holders above were checked "
                  "against): %d" % missed)
        else:
            # a node that knows less than about half of the ring does not guess (node_guess_successors)
            check(par * 2 < len(ok_res), "on %d nodes most fetches ask one copy after the other: %d of %d at once"
                  % (a.nodes, par, len(ok_res)))
        # A request's first hop is the linked peer the fetching node guesses responsible (node.c
        # guess_first_hop): with 13-15 of 15 peers known it is right most of the time, and 1 hop it takes.
        # Chord's closest preceding entry alone took 1.9 hops per copy on the same overlay.
        # (On 64 nodes, where a node knows a third of the others, it was 2.5: checked on 16 only.)
        if a.nodes <= 16:
            check(sum(hops) < 1.5 * len(hops), "a copy's answer crossed fewer than 1.5 links on average (the first "
                  "hop goes to the guessed holder): %.2f" % (sum(hops) / max(1, len(hops))))
        print("majority=%d/%d (numbers whose registration at least 2 of the 3 copies hold)" % (majority, a.count),
              flush=True)
        print("all3=%d/%d (numbers whose 3 copies each hold exactly the registration stored)" % (all3, a.count),
              flush=True)
        if short3:
            # replica Stores are paced behind the originals: a copy may still be on its way when the fetch
            # that follows the last store arrives; it must be there REPLICA_SETTLE_S later
            time.sleep(REPLICA_SETTLE_S)
            again, _ = run_parallel(short3, fetch, nodes)
            late = len(short3)
            short3 = [num for num, r in zip(short3, again) if not on_all3(num, r)]
            print("all3 %.0f s later: %d of the %d short ones complete" %
                  (REPLICA_SETTLE_S, late - len(short3), late), flush=True)
        if a.require_replicas:
            check(majority == a.count, "the 3-copy vote finds every registration: %d/%d" % (majority, a.count))
            check(not short3, "every registration is on all 3 copies (responsible node and its 2 successors) "
                  "within %.0f s of the fetch: %d not, first %r" % (REPLICA_SETTLE_S, len(short3), short3[:3]))
        if a.churn:
            churn(a, d, nodes, numbers, via_store, res, rng)
    finally:
        subprocess.run([sys.executable, a.launcher, "down", "--dir", d], capture_output=True, timeout=120)
        shutil.rmtree(base_dir, ignore_errors=True)
    if failures:
        print("fails=%d" % len(failures))
        return 1
    print("overlay store: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
