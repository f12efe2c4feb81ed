#!/usr/bin/env python3
"""tshark decodes a live capture of a 4-node overlay (real viprd processes, scripts/vipr-overlay --keylog).

dumpcap captures loopback traffic to the 4 nodes' ports from before the first node starts; the overlay forms
(Attach, Join, Update, Ping ...), registrations are stored and fetched through the admin socket (Store, Fetch,
replicas); every node's /metrics is read once the overlay is quiet, then the capture stops.  tshark decrypts
the TLS links with the nodes' key logs and dissects RELOAD framing (tests/dataplane/reload_tls.lua) and the
RELOAD messages.  It fails unless:

  * tshark decodes as many RELOAD messages as the nodes say they sent (sum of viprd_messages_sent_total),
    among them Store, Fetch, Join, Update and Attach requests and answers;
  * tshark reports no expert item of severity warning or error (TCP's own sequence analysis left out: a busy
    loopback retransmits, which says nothing about our bytes).

Skips (77) without tshark/dumpcap or capture rights.  Every process is stopped in the finally block.

usage: test_overlay_tshark.py VIPR_OVERLAY VIPRD VIPR_ENROLL VIPRCTL LUA_SCRIPT WORKDIR
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from free_ports import free_base  # noqa: E402  (ports below the ephemeral range; the file says why)

KIND_UAT = 'uat:reload_kindids:"4026532096","VIPR-REGISTRATION","DICTIONARY"'
AGG = "\x1f"
NODES = 4
# RELOAD message codes (RFC 6940 §14.8): requests odd, answers even.
WANT_CODES = {"store": (0x07, 0x08), "fetch": (0x09, 0x0a), "join": (0x0f, 0x10), "update": (0x13, 0x14),
              "attach": (0x03, 0x04)}


def sent_total(addr):
    with urllib.request.urlopen("http://%s/metrics" % addr, timeout=5) as f:
        m = re.search(r"^viprd_messages_sent_total (\d+)$", f.read().decode(), re.M)
    return int(m.group(1))


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    launcher, viprd, enroll, viprctl, lua, work = sys.argv[1:7]
    for tool in ("tshark", "dumpcap"):
        if shutil.which(tool) is None:
            print("%s not installed (scripts/setup.sh installs it): skipping" % tool)
            return 77
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    d = os.path.join(work, "ov")
    pcap = os.path.join(work, "overlay.pcapng")
    base = free_base(NODES)
    ports = list(range(base, base + NODES))
    failures = []
    cap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", " or ".join("tcp port %d" % p for p in ports),
                            "-w", pcap], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(pcap) and time.monotonic() < deadline:
            if cap.poll() is not None:
                err = cap.stderr.read()
                if "permission" in err.lower() or "privilege" in err.lower():
                    print("dumpcap cannot capture here (%s): skipping" % err.strip())
                    return 77
                sys.exit("dumpcap exited: %s" % err)
            time.sleep(0.05)
        time.sleep(0.5)
        # default Chord intervals (600 s, 3600 s): once the stores are done the overlay is quiet, so the
        # counters read below are every message the capture holds
        up = subprocess.run([sys.executable, launcher, "up", "--nodes", str(NODES), "--dir", d, "--viprd", viprd,
                             "--enroll", enroll, "--viprctl", viprctl, "--base-port", str(base), "--keylog",
                             "--join-timeout", "60"], capture_output=True, text=True, timeout=300)
        if up.returncode != 0:
            sys.exit("up failed: %s" % up.stderr)
        nodes = json.load(open(os.path.join(d, "overlay.json")))["nodes"]
        time.sleep(1)
        for i in range(8):
            num = "+1555000%04d" % i
            for verb, node in (("store", nodes[i % NODES]), ("fetch", nodes[(i + 1) % NODES])):
                r = subprocess.run([viprctl, "-s", node["socket"], verb, num], capture_output=True, text=True,
                                   timeout=30)
                if r.returncode != 0:
                    failures.append("%s %s via %s: %s" % (verb, num, node["name"], r.stderr.strip()))
        time.sleep(1.5)  # replicas and answers in flight land; nothing else is scheduled for minutes
        metrics = [json.loads(subprocess.run([viprctl, "-s", n["socket"], "status", "--json"], capture_output=True,
                                             text=True, timeout=30).stdout)["metrics"] for n in nodes]
        sent = sum(sent_total(m) for m in metrics)
        time.sleep(0.5)
    finally:
        if cap.poll() is None:
            cap.send_signal(signal.SIGTERM)
            try:
                cap.wait(timeout=10)
            except subprocess.TimeoutExpired:
                cap.kill()
                cap.wait()
        subprocess.run([sys.executable, launcher, "down", "--dir", d], capture_output=True, timeout=120)

    keylog = os.path.join(work, "keylog.txt")
    with open(keylog, "w") as out:
        for k in range(NODES):
            p = os.path.join(d, "nodes", "node%d" % k, "keylog.txt")
            if os.path.exists(p):
                out.write(open(p).read())
    os.environ["VIPR_RELOAD_TLS_PORTS"] = " ".join(str(p) for p in ports)
    tsh = ["tshark", "-X", "lua_script:" + lua, "-r", pcap, "-o", KIND_UAT, "-o", "tls.keylog_file:" + keylog]
    for p in ports:
        tsh += ["-d", "tcp.port==%d,tls" % p]
    out = subprocess.run(tsh + ["-Y", "reload", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=" + AGG,
                                "-e", "reload.message.code"], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        sys.exit("tshark failed: %s" % out.stderr)
    codes = []
    for line in out.stdout.splitlines():
        codes += [int(c, 0) for c in line.split(AGG) if c]
    print("overlay tshark: nodes sent %d RELOAD messages, tshark decoded %d from the capture" % (sent, len(codes)))
    if len(codes) != sent:
        failures.append("decoded %d RELOAD messages, the nodes sent %d" % (len(codes), sent))
    for name, (req, ans) in WANT_CODES.items():
        if req not in codes or ans not in codes:
            failures.append("no %s request and answer decoded" % name)
    exp = subprocess.run(tsh + ["-o", "tcp.analyze_sequence_numbers:FALSE", "-T", "fields", "-E", "occurrence=a",
                                "-E", "aggregator=" + AGG, "-e", "frame.number", "-e", "_ws.expert.severity",
                                "-e", "_ws.expert.message", "-e", "_ws.expert.group"],
                         capture_output=True, text=True, timeout=300)
    for line in exp.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) < 3 or not cols[1]:
            continue
        groups = cols[3].split(AGG) if len(cols) > 3 else []
        for i, (sev, msg) in enumerate(zip(cols[1].split(AGG), cols[2].split(AGG))):
            if i < len(groups) and groups[i] and int(groups[i], 0) == 0x02000000:
                continue  # PI_SEQUENCE: TCP's analysis of the loopback, not our bytes
            if int(sev, 0) >= 0x00600000:
                failures.append("frame %s: expert %s: %s" % (cols[0], sev, msg))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures[:50]))
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
