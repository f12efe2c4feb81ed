#!/usr/bin/env python3
"""viprctl CLI tests: decode a known RELOAD message (hex and framed binary) to
JSON and check its fields; malformed input must exit non-zero with a one-line
reason; --help works.

usage: test_viprctl.py VIPRCTL SIGNED_STORE_REQ WORKDIR
"""
import json
import os
import subprocess
import sys

# PingReq from tests/dataplane/test_reload_hdr.c (RFC 6940 layout, hand-written).
PING = ("d2454c4f 12345678 0001 0a 64 c0000000 0000004d 0102030405060708 00000000"
        " 0000 0012 0000 01 10 00112233445566778899aabbccddeeff"
        " 0017 00000002 0000 00000000 0000 04 03 03 0000 0000")

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def run(viprctl, args, stdin=b""):
    return subprocess.run([viprctl] + args, input=stdin, capture_output=True, timeout=30)


def main():
    viprctl, store, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)

    # hex on stdin
    r = run(viprctl, ["decode", "--hex", "-"], PING.encode())
    check(r.returncode == 0, "hex ping: exit %d, stderr %r" % (r.returncode, r.stderr))
    j = json.loads(r.stdout)
    fh = j["forwarding_header"]
    check(fh["overlay"] == "12345678", "overlay %r" % fh["overlay"])
    check(fh["version"] == 10 and fh["ttl"] == 100, "version/ttl")
    check(fh["length"] == 77, "length")
    check(fh["transaction_id"] == "0102030405060708", "txid")
    check(fh["destination_list"] == [{"type": "node", "id": "00112233445566778899aabbccddeeff"}],
          "destination list %r" % fh["destination_list"])
    check(j["message_contents"]["message_name"] == "ping_req", "message name")
    check(j["message_contents"]["message_code"] == 23, "message code")
    sig = j["security_block"]["signature"]
    check(sig["hash_algorithm_name"] == "sha256" and sig["signature_algorithm_name"] == "ecdsa", "sig algs")
    check(sig["identity"]["type_name"] == "none", "identity")

    # a framed binary file: a signed Store of a ViPR registration
    with open(store, "rb") as f:
        msg = f.read()
    framed = os.path.join(work, "store.bin")
    with open(framed, "wb") as f:
        f.write(bytes([0x80]) + (7).to_bytes(4, "big") + len(msg).to_bytes(3, "big") + msg)
    r = run(viprctl, ["decode", framed])
    check(r.returncode == 0, "framed store: exit %d, stderr %r" % (r.returncode, r.stderr))
    j = json.loads(r.stdout)
    check(j["framing"] == {"type": "data", "sequence": 7, "length": len(msg)}, "framing %r" % j.get("framing"))
    body = j["message_contents"]["body"]
    check(j["message_contents"]["message_name"] == "store_req", "store name")
    kd = body["kind_data"][0]
    check(kd["kind"] == 4026532096 and kd["kind_hex"] == "f0000100", "kind")
    sd = kd["values"][0]
    check(sd["model"] == "dictionary" and sd["exists"] is True and sd["lifetime"] == 86400, "stored data")
    check(sd["key"] == "0c112233445566778899aabbccddee01", "dictionary key %r" % sd["key"])
    check(sd["signature"]["identity"]["type_name"] == "cert_hash", "stored data signer")
    certs = j["security_block"]["certificates"]
    check(len(certs) == 1 and certs[0]["sha256"] == j["security_block"]["signature"]["identity"]["certificate_hash"],
          "certificate hash matches the signer identity")

    # the largest input read (a full DATA frame as hex, 4 chars a byte) is accepted exactly
    limit = 4 * (8 + 65536)
    padded = PING.encode()
    padded += b" " * (limit - len(padded))
    r = run(viprctl, ["decode", "--hex", "-"], padded)
    check(r.returncode == 0 and json.loads(r.stdout)["message_contents"]["message_name"] == "ping_req",
          "input of exactly the limit: exit %d %r" % (r.returncode, r.stderr))
    r = run(viprctl, ["decode", "--hex", "-"], padded + b" ")
    check(r.returncode == 1 and b"too" in r.stderr.lower(), "input over the limit: %r" % r.stderr)

    # malformed: truncated, bad token, trailing byte, bad hex, empty
    cases = [
        ("truncated", ["decode", "--hex", "-"], PING[:-4].encode(), "truncated"),
        ("bad token", ["decode", "--hex", "-"], ("52" + PING[2:]).encode(), "token"),
        ("trailing", ["decode", "--hex", "-"], (PING + " 00").encode(), "trailing"),
        ("bad hex", ["decode", "--hex", "-"], b"d2454c4g", "hex"),
        ("empty", ["decode", "-"], b"", "empty"),
    ]
    for name, args, data, word in cases:
        r = run(viprctl, args, data)
        err = r.stderr.decode()
        check(r.returncode == 1, "%s: exit %d" % (name, r.returncode))
        check(r.stdout == b"", "%s: printed %r" % (name, r.stdout[:80]))
        check(err.count("\n") == 1 and word in err.lower(), "%s: reason %r" % (name, err))
    r = run(viprctl, ["decode", os.path.join(work, "does-not-exist")])
    check(r.returncode == 1 and r.stderr.decode().count("\n") == 1, "missing file")

    # usage
    r = run(viprctl, ["--help"])
    check(r.returncode == 0 and b"decode" in r.stdout, "--help")
    r = run(viprctl, ["frobnicate"])
    check(r.returncode == 2, "unknown command exit %d" % r.returncode)
    r = run(viprctl, ["decode"])
    check(r.returncode == 2, "decode without a file")

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
