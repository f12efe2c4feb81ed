#!/usr/bin/env python3
"""tshark interop for the RELOAD codec.

Runs interop_gen (messages built, signed and framed by dataplane/reload.h),
then Wireshark's RELOAD dissector over the pcap, and fails unless:
  * every frame dissects as the intended RELOAD message, with every field the
    manifest lists (header, signature, body) at the expected value;
  * `tshark -q -z expert` reports no item of severity warning or error, except
    the one documented dissector bug (PROTOCOL-FACTS §12): a FetchReq/StatReq
    whose dictionary specifier has a non-empty key list gets a false
    "Computed length > max_field length" error.  That item is tolerated only on
    the frames that carry such a request, and nowhere else.

usage: tshark_interop.py INTEROP_GEN WORKDIR
"""
import json
import os
import re
import shutil
import subprocess
import sys

KIND_UAT = 'uat:reload_kindids:"4026532096","VIPR-REGISTRATION","DICTIONARY"'
KNOWN_QUIRK = "Computed length > max_field length"
QUIRK_FRAMES = {"fetch_req_one_key"}  # messages that carry the quirk's trigger
AGG = "\x1f"


def tshark(pcap, port, *args):
    cmd = ["tshark", "-r", pcap, "-d", "tcp.port==%d,reload-framing" % port, "-o", KIND_UAT] + list(args)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        sys.exit("tshark failed (%d): %s\n%s" % (res.returncode, " ".join(cmd), res.stderr))
    return res.stdout


def norm(v):
    v = v.strip().lower()
    if re.fullmatch(r"[0-9a-f:]+", v) and ":" in v:
        v = v.replace(":", "")
    return v


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    gen, work = sys.argv[1], sys.argv[2]
    if shutil.which("tshark") is None:
        print("tshark not installed (scripts/setup.sh installs it): skipping")
        sys.exit(77)
    os.makedirs(work, exist_ok=True)
    pcap = os.path.join(work, "reload.pcap")
    manifest = os.path.join(work, "manifest.json")
    port = 16084
    subprocess.run([gen, pcap, manifest, str(port)], check=True, timeout=120)
    with open(manifest) as f:
        mf = json.load(f)
    frames = mf["frames"]

    fields = sorted({c[0] for fr in frames for c in fr["checks"]})
    out = tshark(pcap, port, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=" + AGG,
                 "-E", "separator=\t", "-e", "frame.number", *sum([["-e", f] for f in fields], []))
    rows = {}
    for line in out.splitlines():
        cols = line.split("\t")
        rows[int(cols[0])] = {f: cols[i + 1] for i, f in enumerate(fields)}

    failures = []
    if len(rows) != len(frames):
        failures.append("tshark saw %d frames, manifest has %d" % (len(rows), len(frames)))
    checked = 0
    for fr in frames:
        row = rows.get(fr["frame"])
        if row is None:
            failures.append("frame %d (%s): missing" % (fr["frame"], fr["message"]))
            continue
        for field, op, want in fr["checks"]:
            got = [norm(x) for x in row[field].split(AGG) if x != ""]
            w = norm(want)
            ok = (len(got) > 0 and all(g == w for g in got)) if op == "eq" else (w in got)
            checked += 1
            if not ok:
                failures.append("frame %d (%s): %s %s %r, tshark has %r"
                                % (fr["frame"], fr["message"], field, op, want, got))

    # Expert items, per frame, to attribute each one.
    out = tshark(pcap, port, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=" + AGG,
                 "-e", "frame.number", "-e", "_ws.expert.severity", "-e", "_ws.expert.message")
    by_name = {fr["frame"]: fr["message"] for fr in frames}
    quirk_seen = set()
    for line in out.splitlines():
        cols = line.split("\t")
        if len(cols) < 3 or not cols[1]:
            continue
        num = int(cols[0])
        for sev, msg in zip(cols[1].split(AGG), cols[2].split(AGG)):
            # severities: 0x00200000 chat, 0x00400000 note, 0x00600000 warn, 0x00800000 error
            level = int(sev, 0)
            if level < 0x00600000:
                continue
            if msg == KNOWN_QUIRK and by_name.get(num) in QUIRK_FRAMES:
                quirk_seen.add(num)
                continue
            failures.append("frame %d (%s): expert item %s: %s" % (num, by_name.get(num), sev, msg))

    # And the summary the way an operator reads it.
    summary = tshark(pcap, port, "-q", "-z", "expert")
    bad = []
    section = None
    for line in summary.splitlines():
        m = re.match(r"^(Errors|Warnings|Warns|Notes|Chats|Comments) \(\d+\)", line)
        if m:
            section = m.group(1)
            continue
        if section in ("Errors", "Warnings", "Warns") and re.match(r"^\s+\d+\s+\S+\s+\S+\s+", line):
            if KNOWN_QUIRK not in line:
                bad.append(line.strip())
    failures += ["-z expert: %s" % b for b in bad]

    print("tshark interop: %d frames, %d field checks, known-quirk frames %s"
          % (len(frames), checked, sorted(quirk_seen)))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
