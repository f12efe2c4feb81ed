#!/usr/bin/env python3
"""scripts/vipr-overlay end to end with the real viprd: directory layout, certificates issued by the overlay
CA, every node joined and answering on its admin socket through viprctl (its own listen address), /health 200
on every node, process supervision by PID, `status`, a refused second `up`, clean `down`; a node that fails at
start (its port taken, a bad option) makes `up` undo everything, and so do a join timeout and a SIGTERM; with
--netns (root only) the namespaces, veth pairs and bridge exist, nodes run in their namespace, join one ring
across the bridge, and `down` (or a failed `up`) removes them.  The finally block stops every process
recorded and deletes only the namespaces this test's directories name, even when a check failed.

usage: test_vipr_overlay.py VIPR_OVERLAY VIPRD VIPR_ENROLL VIPRCTL
"""
import urllib.request
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from free_ports import free_base  # noqa: E402  (ports below the ephemeral range; the file says why)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def procs_mentioning(text):
    """PIDs whose command line contains text (what a launcher left running)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
            with open("/proc/%s/stat" % pid) as f:
                st = f.read()
        except OSError:
            continue
        if text.encode() in cmd and st[st.rindex(")") + 2] != "Z":
            out.append(int(pid))
    return out


def netns_list():
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def tag_of(d):
    return "vo" + hashlib.sha256(os.path.realpath(d).encode()).hexdigest()[:6]


class Runner:
    def __init__(self, launcher, viprd, enroll, viprctl):
        self.launcher, self.viprd, self.enroll, self.viprctl = launcher, viprd, enroll, viprctl
        self.dirs = []

    def ov(self, args, env=None, timeout=120):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([sys.executable, self.launcher] + args, capture_output=True, text=True,
                              timeout=timeout, env=e)

    def up(self, d, n, extra=(), env=None):
        self.dirs.append(d)
        return self.ov(["up", "--nodes", str(n), "--dir", d, "--viprd", self.viprd, "--enroll", self.enroll,
                        "--viprctl", self.viprctl, "--join-timeout", "30"] + list(extra), env)

    def cleanup(self):
        """Whatever happened: down, then kill what is left by PID, then delete this test's namespaces."""
        for d in self.dirs:
            try:
                self.ov(["down", "--dir", d], timeout=60)
            except Exception as e:  # keep cleaning the others
                print("cleanup: down %s: %s" % (d, e))
            for pid in procs_mentioning(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if os.geteuid() == 0:
                for ns in netns_list():
                    if ns.startswith(tag_of(d) + "-"):
                        subprocess.run(["ip", "netns", "del", ns], timeout=30)


def test_loopback(r, base_dir):
    d = os.path.join(base_dir, "lo")
    base = free_base(4)
    res = r.up(d, 4, ["--base-port", str(base)])
    if not check(res.returncode == 0, "up: exit %d %s" % (res.returncode, res.stderr)):
        return
    st = json.load(open(os.path.join(d, "overlay.json")))
    for k in range(4):
        nd = os.path.join(d, "nodes", "node%d" % k)
        sock = os.path.join(nd, "admin.sock")
        check(("node%d admin=%s listen=127.0.0.1:%d" % (k, sock, base + k)) in res.stdout, "up line node%d" % k)
        for f in ("viprd.conf", "node.pem", "node.key", "viprd.log"):
            check(os.path.isfile(os.path.join(nd, f)), "node%d/%s" % (k, f))
        check(os.path.isdir(os.path.join(nd, "data")), "node%d/data" % k)
        check(stat.S_IMODE(os.stat(os.path.join(nd, "node.key")).st_mode) == 0o600, "node%d key mode" % k)
        m = os.stat(sock).st_mode
        check(stat.S_ISSOCK(m) and stat.S_IMODE(m) == 0o600, "node%d admin socket 0600" % k)
        v = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(d, "overlay", "ca.pem"),
                            os.path.join(nd, "node.pem")], capture_output=True, timeout=30)
        check(v.returncode == 0, "node%d certificate from the overlay CA" % k)
        a = subprocess.run([r.viprctl, "-s", sock, "status", "--json"], capture_output=True, timeout=30)
        check(a.returncode == 0, "viprctl status node%d" % k)
        if a.returncode == 0:
            j = json.loads(a.stdout)
            check(j["state"] == "joined" and j["listen"] == "127.0.0.1:%d" % (base + k), "node%d status %r" % (k, j))
            check(j["pid"] == next(p["pid"] for p in st["procs"] if p["name"] == "node%d" % k),
                  "node%d's socket is served by the process the launcher started" % k)
            check(("metrics=%s" % j["metrics"]) in res.stdout, "up prints node%d's metrics address" % k)
            # the daemon samples its shards once a second: 200 within 3 s of joining
            check(wait_for(3, lambda: health(j["metrics"]) == 200), "node%d /health 200 in a 4-node ring" % k)
    check(os.path.isfile(os.path.join(d, "overlay", "config.xml")), "config.xml")
    pids = [p["pid"] for p in st["procs"]]
    check(len(pids) == 5, "enroll + 4 nodes recorded: %r" % pids)
    for pid in pids:
        check(os.path.exists("/proc/%d" % pid), "pid %d alive" % pid)

    s = r.ov(["status", "--dir", d])
    check(s.returncode == 0 and s.stdout.count("running=yes state=joined") == 4, "status: %r" % s.stdout)
    again = r.up(d, 2, ["--base-port", str(base)])
    check(again.returncode == 1 and "holds an overlay already" in again.stderr, "second up refused")
    for pid in pids:
        check(os.path.exists("/proc/%d" % pid), "pid %d survives a refused second up" % pid)

    # a node killed behind the launcher's back shows in status
    victim = next(p for p in st["procs"] if p["name"] == "node2")["pid"]
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.3)
    s = r.ov(["status", "--dir", d, "--json"])
    j = json.loads(s.stdout)
    check(s.returncode == 1 and [n["running"] for n in j["nodes"]] == [True, True, False, True],
          "status after kill: %r" % s.stdout)

    dn = r.ov(["down", "--dir", d])
    check(dn.returncode == 0, "down: %s" % dn.stderr)
    check(procs_mentioning(d) == [], "nothing left running after down: %r" % procs_mentioning(d))
    check(not os.path.exists(os.path.join(d, "overlay.json")), "state removed")
    check(not any(os.path.exists(os.path.join(d, "nodes", "node%d" % k, "admin.sock")) for k in range(4)),
          "sockets removed")


def wait_for(seconds, pred):
    deadline = time.monotonic() + seconds
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def health(addr):
    try:
        with urllib.request.urlopen("http://%s/health" % addr, timeout=5) as f:
            return f.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def test_failed_up_undoes_everything(r, base_dir):
    d = os.path.join(base_dir, "fail")
    base = free_base(3)
    taken = socket.socket()  # node2's port is taken: its viprd cannot listen and exits
    taken.bind(("127.0.0.1", base + 2))
    taken.listen(1)
    try:
        res = r.up(d, 3, ["--base-port", str(base)])
    finally:
        taken.close()
    check(res.returncode == 1 and "node2 exited during start-up" in res.stderr,
          "failed up: exit %d %r" % (res.returncode, res.stderr))
    check(procs_mentioning(d) == [], "failed up left processes: %r" % procs_mentioning(d))
    check(not os.path.exists(os.path.join(d, "overlay.json")), "failed up left its state")
    check(not os.path.exists(os.path.join(d, "nodes", "node0", "admin.sock")), "failed up left a socket")


def test_join_timeout_and_sigterm_undo(r, base_dir):
    # nodes that never say "joined" in time (the document names a bootstrap peer nobody serves): up gives up,
    # names them, and undoes everything
    d = os.path.join(base_dir, "slow")
    base = free_base(3)
    nobody = "127.0.0.1:%d" % (base + 2)
    r.dirs.append(d)
    res = r.ov(["up", "--nodes", "2", "--dir", d, "--viprd", r.viprd, "--enroll", r.enroll, "--viprctl", r.viprctl,
                "--join-timeout", "2", "--base-port", str(base), "--overlay-set", "bootstrap=" + nobody])
    check(res.returncode == 1 and "not joined within 2s" in res.stderr and "node0 (state=starting)" in res.stderr,
          "join timeout: %d %r" % (res.returncode, res.stderr))
    check(procs_mentioning(d) == [], "join timeout left processes")
    # a launcher stopped by SIGTERM while waiting undoes what it started
    d = os.path.join(base_dir, "term")
    r.dirs.append(d)
    p = subprocess.Popen([sys.executable, r.launcher, "up", "--nodes", "2", "--dir", d, "--viprd", r.viprd,
                          "--enroll", r.enroll, "--viprctl", r.viprctl, "--join-timeout", "60", "--base-port",
                          str(base), "--overlay-set", "bootstrap=" + nobody], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        started = False
        while time.monotonic() < deadline and not started:
            try:
                st = json.load(open(os.path.join(d, "overlay.json")))
                started = any(x["name"] == "node0" for x in st["procs"])
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        check(started, "the bootstrap node started before the SIGTERM")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        check(p.returncode == 1 and b"stopped by signal" in err, "sigterm up: %r %r" % (p.returncode, err))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    check(procs_mentioning(d) == [], "SIGTERM during up left processes: %r" % procs_mentioning(d))
    check(not os.path.exists(os.path.join(d, "overlay.json")), "SIGTERM during up left its state")


def test_netns(r, base_dir):
    d = os.path.join(base_dir, "ns")
    tag = tag_of(d)
    res = r.up(d, 4, ["--netns", "2", "--base-port", "26084"])
    if not check(res.returncode == 0, "netns up: exit %d %s" % (res.returncode, res.stderr)):
        return
    names = netns_list()
    for ns in (tag + "-hub", tag + "-0", tag + "-1"):
        check(ns in names, "namespace %s exists" % ns)
    br = subprocess.run(["ip", "-n", tag + "-hub", "-j", "link", "show", "type", "bridge"], capture_output=True,
                        text=True, timeout=30)
    check("vobr0" in br.stdout, "bridge in the hub namespace")
    st = json.load(open(os.path.join(d, "overlay.json")))
    for node in st["nodes"]:
        pid = next(p["pid"] for p in st["procs"] if p["name"] == node["name"])
        ns_ino = os.stat("/run/netns/%s" % node["netns"]).st_ino
        check(os.stat("/proc/%d/ns/net" % pid).st_ino == ns_ino, "%s runs in %s" % (node["name"], node["netns"]))
    check(os.stat("/proc/self/ns/net").st_ino != os.stat("/run/netns/%s-0" % tag).st_ino, "not our namespace")
    # node0 (namespace 0) reaches node1's listener (namespace 1, 10.77.0.11:26084) across veth + bridge
    probe = ("import socket; s=socket.create_connection(('10.77.0.11', 26084), timeout=5); print('connected')")
    c = subprocess.run(["ip", "netns", "exec", tag + "-0", sys.executable, "-c", probe], capture_output=True,
                       text=True, timeout=30)
    check(c.stdout.strip() == "connected", "cross-namespace TCP: %r %r" % (c.stdout, c.stderr))
    # one ring across the namespaces: every node's successor is the next Node-ID in the ring
    rings = {}
    for node in st["nodes"]:
        a = subprocess.run([r.viprctl, "-s", node["socket"], "ring", "--json"], capture_output=True, timeout=30)
        if check(a.returncode == 0, "ring %s" % node["name"]):
            v = json.loads(a.stdout)["vnodes"][0]
            rings[v["node_id"]] = v["successors"][:1]
    ids = sorted(rings)
    check(len(ids) == 4 and all(rings[x] == [ids[(i + 1) % 4]] for i, x in enumerate(ids)),
          "one ring over 2 namespaces: %r" % rings)
    # the host cannot reach it: nothing was added to our namespace
    h = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=30)
    check("10.77.0." not in h.stdout, "no overlay address in the host namespace")
    dn = r.ov(["down", "--dir", d])
    check(dn.returncode == 0, "netns down: %s" % dn.stderr)
    left = [ns for ns in netns_list() if ns.startswith(tag + "-")]
    check(left == [], "namespaces left after down: %r" % left)
    check(procs_mentioning(d) == [], "processes left after netns down")

    # a failed up with namespaces removes them too
    d2 = os.path.join(base_dir, "nsfail")
    res = r.up(d2, 2, ["--netns", "2", "--base-port", "26084", "--node-set", "node.log_level=loud"])
    check(res.returncode == 1 and "node0 exited during start-up" in res.stderr,
          "failed netns up: exit %d %r" % (res.returncode, res.stderr))
    left = [ns for ns in netns_list() if ns.startswith(tag_of(d2) + "-")]
    check(left == [], "failed netns up left namespaces: %r" % left)
    check(procs_mentioning(d2) == [], "failed netns up left processes")


def main():
    r = Runner(*sys.argv[1:5])
    base_dir = tempfile.mkdtemp(prefix="vipr-overlay-test-")
    os.chmod(base_dir, 0o755)
    try:
        test_loopback(r, base_dir)
        test_failed_up_undoes_everything(r, base_dir)
        test_join_timeout_and_sigterm_undo(r, base_dir)
        if os.geteuid() == 0:
            test_netns(r, base_dir)
        else:
            print("note: not root: the --netns cases did not run")
    finally:
        r.cleanup()
        shutil.rmtree(base_dir, ignore_errors=True)
    if failures:
        for f in failures:
            print("FAIL:", f)
        return 1
    print("vipr-overlay: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
