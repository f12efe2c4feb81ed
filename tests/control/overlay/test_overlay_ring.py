#!/usr/bin/env python3
"""N real viprd processes in one overlay (scripts/vipr-overlay on loopback), checked from outside:

1. ring: every node's first successor and first predecessor (viprctl ring) are the true ones, computed from
   the Node-IDs of all N certificates; every /health answers 200 and /metrics counts links and messages.
2. lookups: rl_peer (a RELOAD peer with its own certificate of the overlay) routes Pings through random nodes
   to random Node-IDs; every answer comes from the target and its signature verifies.
3. kill -9 of K nodes at once: the time until every survivor's successor and predecessor are the true ones
   among the survivors and the lookups succeed again is measured and printed (recovery_s=...), and must stay
   under RECOVERY_BOUND_S; the survivors count the failures (viprd_peer_failures_total).
4. /health: the bootstrap node is cut off (every other node killed): it answers 503 within [metrics]
   isolated_after plus one sample (isolated: no linked neighbour), and the alarm no_links comes on once
   isolated_after has passed, not before; the killed nodes restarted from their data directories rejoin with their
   Node-IDs and the bootstrap node answers 200 again.

Every process is stopped in the finally block (vipr-overlay down, then the restarted ones by PID).

usage: test_overlay_ring.py VIPR_OVERLAY VIPRD VIPR_ENROLL VIPRCTL RL_PEER [--nodes N] [--kill K]
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from checks import check, failures, wait_for  # noqa: E402
from free_ports import free_base  # noqa: E402  (ports below the ephemeral range; the file says why)

# Chord maintenance every 2 s (update and ping) makes a failure visible within a few seconds; the bound below
# is what a ring of this size must repair within on a loaded 2-core machine: a few rounds of both timers plus
# the reliability timer (15 s) of the requests that went to a dead peer.
OVERLAY_SET = ["chord_update_interval=2s", "chord_ping_interval=2s"]
ISOLATED_AFTER_S = 3
RECOVERY_BOUND_S = 60
SAMPLE_S = 1  # viprd samples its shards for /health once a second

def http(addr, path):
    try:
        with urllib.request.urlopen("http://%s%s" % (addr, path), timeout=5) as f:
            return f.status, f.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


class Overlay:
    def __init__(self, a, d):
        self.a, self.d = a, d
        self.extra = []  # (pid) of nodes this test restarted itself

    def ctl(self, node, *args):
        r = subprocess.run([self.a.viprctl, "-s", node["socket"], "-t", "3000"] + list(args) + ["--json"],
                           capture_output=True, text=True, timeout=30)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def ring(self, node):
        j = self.ctl(node, "ring")
        return j["vnodes"][0] if j else None

    def ids(self, nodes):
        return {n["name"]: n["node_id"] for n in nodes}

    def ring_true(self, nodes, why):
        """Every node's first successor and predecessor are the next and previous ids among \\p nodes."""
        ids = sorted(n["node_id"] for n in nodes)
        nxt = {x: ids[(i + 1) % len(ids)] for i, x in enumerate(ids)}
        prv = {x: ids[i - 1] for i, x in enumerate(ids)}
        wrong = []
        for n in nodes:
            v = self.ring(n)
            if not v or v["successors"][:1] != [nxt[n["node_id"]]] or v["predecessors"][:1] != [prv[n["node_id"]]]:
                wrong.append((n["name"], v and v["predecessors"][:1], v and v["successors"][:1]))
        why[:] = wrong
        return not wrong

    def ping(self, via, target):
        r = subprocess.run([self.a.rl_peer, self.ca, self.peer_cert, self.peer_key, self.overlay, via["listen"],
                            "ping", target["node_id"]], capture_output=True, text=True, timeout=30)
        return ("responder=%s verified=yes" % target["node_id"]) in r.stdout

    def lookups(self, nodes, n, rng):
        bad = []
        for _ in range(n):
            via, target = rng.choice(nodes), rng.choice(nodes)
            if not self.ping(via, target):
                bad.append("%s->%s" % (via["name"], target["name"]))
        return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("launcher")
    ap.add_argument("viprd")
    ap.add_argument("enroll")
    ap.add_argument("viprctl")
    ap.add_argument("rl_peer")
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--kill", type=int, default=5)
    ap.add_argument("--lookups", type=int, default=40)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    a = ap.parse_args()
    rng = random.Random(a.seed)
    print("seed=%d nodes=%d kill=%d" % (a.seed, a.nodes, a.kill), flush=True)
    base_dir = tempfile.mkdtemp(prefix="vipr-ring-test-")
    d = os.path.join(base_dir, "ov")
    o = Overlay(a, d)
    o.overlay = "ring.vipr.test"
    try:
        t0 = time.monotonic()
        cmd = [sys.executable, a.launcher, "up", "--nodes", str(a.nodes), "--dir", d, "--viprd", a.viprd,
               "--enroll", a.enroll, "--viprctl", a.viprctl, "--base-port", str(free_base(a.nodes)),
               "--overlay", o.overlay, "--join-timeout", "120", "--isolated-after", "%ds" % ISOLATED_AFTER_S]
        for kv in OVERLAY_SET:
            cmd += ["--overlay-set", kv]
        up = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if not check(up.returncode == 0, "up %d nodes: %s" % (a.nodes, up.stderr.strip()[-300:])):
            for path in re.findall(r"see (\S+)\)", up.stderr):
                with open(path, errors="replace") as f:
                    print("---- %s\n%s" % (path, "".join(f.readlines()[-30:])))
            return 1
        print("join_all_s=%.1f" % (time.monotonic() - t0), flush=True)
        st = json.load(open(os.path.join(d, "overlay.json")))
        nodes = st["nodes"]
        for n in nodes:
            s = o.ctl(n, "status")
            n["node_id"], n["metrics"] = s["node_ids"][0], s["metrics"]
        check(len(set(n["node_id"] for n in nodes)) == a.nodes, "%d distinct Node-IDs" % a.nodes)

        # the peer rl_peer speaks as: a certificate of the overlay's CA
        ov = os.path.join(d, "overlay")
        o.ca = os.path.join(ov, "ca.pem")
        o.peer_key, o.peer_cert = os.path.join(base_dir, "peer.key"), os.path.join(base_dir, "peer.pem")
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", o.peer_key, "-out", o.peer_key + ".csr", "-subj", "/CN=peer"],
                       check=True, capture_output=True, timeout=60)
        subprocess.run([a.enroll, "--dir", ov, "issue", "--csr", o.peer_key + ".csr", "--user",
                        "peer@" + o.overlay, "--nodeids", "1", "--out", o.peer_cert], check=True,
                       capture_output=True, timeout=60)

        # ---- 1. the ring --------------------------------------------------------------------------------
        why = []
        t0 = time.monotonic()
        ok = wait_for(RECOVERY_BOUND_S, lambda: o.ring_true(nodes, why), step=0.5)
        check(ok, "every node's successor and predecessor are the true ones: wrong %r" % why)
        print("ring_true_after_up_s=%.1f" % (time.monotonic() - t0), flush=True)
        unhealthy = []
        ok = wait_for(2 * SAMPLE_S + 1, lambda: not [unhealthy.clear()] or all(
            http(n["metrics"], "/health")[0] == 200 or unhealthy.append(n["name"]) for n in nodes))
        check(ok, "/health 200 on every node of the ring: not %r" % unhealthy)
        code, body = http(nodes[1]["metrics"], "/metrics")
        m = dict(re.findall(r"^(viprd_[a-z_]+(?:\{[^}]*\})?) (\d+)$", body, re.M))
        check(code == 200 and int(m.get("viprd_links", 0)) >= 2 and int(m.get("viprd_healthy", 0)) == 1 and
              int(m.get("viprd_messages_received_total", 0)) > 0 and
              int(m.get('viprd_messages_originated_total{method="join"}', -1)) >= 0,
              "/metrics of node1: links, healthy, messages: %r" % {k: v for k, v in m.items() if "dropped" not in k})

        # ---- 2. lookups ---------------------------------------------------------------------------------
        bad = o.lookups(nodes, a.lookups, rng)
        check(not bad, "%d Pings through random nodes to random Node-IDs, answered and signed by the target: "
              "failed %r" % (a.lookups, bad))

        # ---- 3. kill -9 of K at once --------------------------------------------------------------------
        procs = {p["name"]: p for p in st["procs"]}
        victims = rng.sample(nodes[1:], a.kill)  # node0 stays: part 4 needs the bootstrap node
        failures_before = sum(int(dict(re.findall(r"^(viprd_peer_failures_total) (\d+)$",
                                                  http(n["metrics"], "/metrics")[1], re.M)).get(
            "viprd_peer_failures_total", 0)) for n in nodes if n not in victims)
        t0 = time.monotonic()
        for v in victims:
            os.kill(procs[v["name"]]["pid"], signal.SIGKILL)
        survivors = [n for n in nodes if n not in victims]
        print("killed %s" % " ".join(v["name"] for v in victims), flush=True)

        def recovered():
            if not o.ring_true(survivors, why):
                return False
            bad[:] = o.lookups(survivors, 8, rng)
            return not bad
        ok = wait_for(RECOVERY_BOUND_S, recovered, step=0.5)
        rec = time.monotonic() - t0
        print("recovery_s=%.1f (kill -9 of %d of %d: true successors/predecessors and 8 lookups)" %
              (rec, a.kill, a.nodes), flush=True)
        check(ok, "after kill -9 of %d: ring true among the survivors and lookups answered within %d s "
              "(wrong %r, failed lookups %r)" % (a.kill, RECOVERY_BOUND_S, why, bad))
        bad = o.lookups(survivors, a.lookups, rng)
        check(not bad, "%d lookups among the survivors: failed %r" % (a.lookups, bad))
        failures_after = sum(int(dict(re.findall(r"^(viprd_peer_failures_total) (\d+)$",
                                                 http(n["metrics"], "/metrics")[1], re.M)).get(
            "viprd_peer_failures_total", 0)) for n in survivors)
        check(failures_after > failures_before, "the survivors counted the failures (viprd_peer_failures_total "
              "%d -> %d)" % (failures_before, failures_after))

        # ---- 4. /health of a node cut off, and after ----------------------------------------------------
        boot = nodes[0]
        check(http(boot["metrics"], "/health")[0] == 200, "node0 healthy before it is cut off")
        rest = [n for n in survivors if n is not boot]
        t0 = time.monotonic()
        for n in rest:
            os.kill(procs[n["name"]]["pid"], signal.SIGKILL)
        res = []
        ok = wait_for(ISOLATED_AFTER_S + 2 * SAMPLE_S, lambda: res.append(http(boot["metrics"], "/health")) or
                      res[-1][0] == 503)
        print("unhealthy_after_s=%.1f answer=%r" % (time.monotonic() - t0, res[-1] if res else None), flush=True)
        check(ok, "node0 cut off (every other node killed): /health 503 within isolated_after %d s + %d s" %
              (ISOLATED_AFTER_S, 2 * SAMPLE_S))
        code, body = http(boot["metrics"], "/metrics")
        check("viprd_healthy 0" in body, "viprd_healthy 0 while cut off")
        # the "no link for isolated_after" condition comes on its own clock, counted from the last sample that
        # saw a link (up to SAMPLE_S before the cut): not before isolated_after - SAMPLE_S, and within one
        # sample after isolated_after
        def alarm_names():
            return {x["alarm"] for x in (o.ctl(boot, "alarms") or {}).get("alarms", [])}
        early = alarm_names()
        elapsed = time.monotonic() - t0
        if elapsed < ISOLATED_AFTER_S - SAMPLE_S - 0.5:
            check("no_links" not in early, "no_links not raised %.1f s after the cut (isolated_after %d s): %r" %
                  (elapsed, ISOLATED_AFTER_S, early))
        ok = wait_for(ISOLATED_AFTER_S + 2 * SAMPLE_S, lambda: "no_links" in alarm_names())
        print("no_links_after_s=%.1f" % (time.monotonic() - t0), flush=True)
        check(ok and time.monotonic() - t0 >= ISOLATED_AFTER_S - SAMPLE_S - 0.2,
              "no_links raised once isolated_after (%d s) has passed without a link" % ISOLATED_AFTER_S)
        # restart every killed node from its data directory (same certificate, same Node-ID)
        for n in rest + victims:
            p = procs[n["name"]]
            with open(n["log"], "ab") as lf:
                c = subprocess.Popen(p["cmd"], stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            o.extra.append(c)
        t0 = time.monotonic()
        ok = wait_for(RECOVERY_BOUND_S, lambda: all((o.ctl(n, "status") or {}).get("state") == "joined"
                                                    for n in nodes), step=0.5)
        check(ok, "the %d restarted nodes rejoin" % len(rest + victims))
        check(all((o.ctl(n, "status") or {}).get("node_ids", [None])[0] == n["node_id"] for n in nodes),
              "each restarted node kept its Node-ID")
        ok = wait_for(RECOVERY_BOUND_S, lambda: http(boot["metrics"], "/health")[0] == 200)
        print("healthy_again_s=%.1f" % (time.monotonic() - t0), flush=True)
        check(ok, "node0 healthy again once its neighbours are back")
        ok = wait_for(RECOVERY_BOUND_S, lambda: o.ring_true(nodes, why), step=0.5)
        check(ok, "the whole ring is true again after the restarts: wrong %r" % why)
    finally:
        subprocess.run([sys.executable, a.launcher, "down", "--dir", d], capture_output=True, timeout=120)
        for c in o.extra:
            if c.poll() is None:
                c.kill()
            c.wait(timeout=30)
        shutil.rmtree(base_dir, ignore_errors=True)
    if failures:
        print("fails=%d" % len(failures))
        return 1
    print("overlay ring: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
