#!/usr/bin/env python3
"""Live-capture interop for the overlay links.

Captures loopback traffic with dumpcap while link_exchange runs three nodes
(A -> B -> C and back) over real TLS links with a key log, then decodes the
capture with tshark (TLS decrypted through the key log, RELOAD framing and
RELOAD dissectors) and fails unless:
  * every message link_exchange sent on a link appears, decoded as RELOAD,
    with its transaction id and message code;
  * tshark reports no expert item of severity warning or error.

usage: link_tshark.py LINK_EXCHANGE WORKDIR
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

KIND_UAT = 'uat:reload_kindids:"4026532096","VIPR-REGISTRATION","DICTIONARY"'
AGG = "\x1f"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    prog, work = sys.argv[1], sys.argv[2]
    for tool in ("tshark", "dumpcap"):
        if shutil.which(tool) is None:
            print("%s not installed (scripts/setup.sh installs it): skipping" % tool)
            sys.exit(77)
    os.makedirs(work, exist_ok=True)
    pcap = os.path.join(work, "links.pcapng")
    keylog = os.path.join(work, "keylog.txt")
    manifest = os.path.join(work, "manifest.json")
    for f in (pcap, keylog, manifest):
        if os.path.exists(f):
            os.unlink(f)
    pb, pc = free_port(), free_port()
    while pc == pb:
        pc = free_port()

    cap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", "tcp port %d or tcp port %d" % (pb, pc),
                            "-w", pcap], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # dumpcap says "File: ..." on stderr once it captures; give up after 10 s.
        deadline = time.monotonic() + 10
        while not os.path.exists(pcap) and time.monotonic() < deadline:
            if cap.poll() is not None:
                err = cap.stderr.read()
                if "permission" in err.lower() or "privilege" in err.lower():
                    print("dumpcap cannot capture here (%s): skipping" % err.strip())
                    sys.exit(77)
                sys.exit("dumpcap exited: %s" % err)
            time.sleep(0.05)
        time.sleep(0.5)
        res = subprocess.run([prog, str(pb), str(pc), keylog, manifest], capture_output=True, text=True,
                             timeout=60)
        sys.stderr.write(res.stderr)
        time.sleep(0.5)
    finally:
        if cap.poll() is None:
            cap.send_signal(signal.SIGTERM)
            try:
                cap.wait(timeout=10)
            except subprocess.TimeoutExpired:
                cap.kill()
                cap.wait()
    if res.returncode != 0:
        sys.exit("link_exchange failed (%d)" % res.returncode)
    with open(manifest) as f:
        mf = json.load(f)

    # RELOAD framing inside TLS: bound by a small Lua script (Wireshark has no such registration).
    lua = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reload_tls.lua")
    os.environ["VIPR_RELOAD_TLS_PORTS"] = " ".join(str(p) for p in mf["ports"])
    base = ["tshark", "-X", "lua_script:" + lua, "-r", pcap, "-o", KIND_UAT, "-o", "tls.keylog_file:" + keylog]
    for p in mf["ports"]:
        base += ["-d", "tcp.port==%d,tls" % p]
    out = subprocess.run(base + ["-Y", "reload", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=" + AGG,
                                 "-E", "separator=\t", "-e", "reload.forwarding.trans_id",
                                 "-e", "reload.message.code"], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        sys.exit("tshark failed: %s" % out.stderr)
    seen = []
    for line in out.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) < 2 or not cols[0]:
            continue
        for tx, code in zip(cols[0].split(AGG), cols[1].split(AGG)):
            seen.append((int(tx, 16), int(code, 0)))
    failures = []
    want = [(int(m["txid"], 16), m["code"]) for m in mf["messages"]]
    remaining = list(seen)
    for w in want:
        if w in remaining:
            remaining.remove(w)
        else:
            failures.append("not decoded: txid %016x code 0x%04x" % w)
    if remaining:
        failures.append("decoded but not sent: %r" % remaining)

    # TCP's own sequence analysis is left out: on a busy loopback the kernel retransmits (D-SACK, spurious
    # retransmission warnings), which says nothing about our bytes; RELOAD and TLS expert items stay checked.
    exp = subprocess.run(base + ["-o", "tcp.analyze_sequence_numbers:FALSE", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=" + AGG,
                                 "-e", "frame.number", "-e", "_ws.expert.severity", "-e", "_ws.expert.message"],
                         capture_output=True, text=True, timeout=120)
    for line in exp.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) < 3 or not cols[1]:
            continue
        for sev, msg in zip(cols[1].split(AGG), cols[2].split(AGG)):
            if int(sev, 0) >= 0x00600000:  # warning or error
                failures.append("frame %s: expert %s: %s" % (cols[0], sev, msg))
    codes = sorted({c for _, c in want})
    print("link tshark: %d messages sent on links, %d decoded from the live capture, codes %s"
          % (len(want), len(seen), ", ".join("0x%02x" % c for c in codes)))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures[:50]))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
