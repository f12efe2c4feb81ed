#!/usr/bin/env python3
"""Our PVP client against gnutls-serv, the right secret, many times (issue 10, item 3).

  bench/pvp_interop_loop.py PVP_PEER [RUNS=5000] [WORKERS=4]

Each run draws a fresh random 16-byte salt (so about 1 run in 256 gets a salt
with a leading zero byte, which PVP forbids: §5.1), writes the password entry
with that salt (tests/pvp/srp_tpasswd.py: the RFC 5054 verifier as GnuTLS
computes it; GnuTLS reads the file at every handshake), and validates with our
client (pvp-peer validate, method a, one handshake).  Outcome classes (§5.9):

  ok            the TLS-SRP handshake completed (GnuTLS then cannot answer the
                ValExchange: the connection deadline ends the run)
  refused-salt  our client refused a leading-zero salt before its proof
                (expected exactly when the salt starts with 0x00)
  definite      the key exchange completed and the proof failed: a right
                secret failing.  Must be 0.
  transport     connect, reset, timeout or alert before the key exchange:
                retried (at most 3 times per run), counted
  unexpected    anything else (a refusal of a conforming salt...).  Must be 0.

Prints one line per class and exits 1 if a definite or unexpected outcome
occurred.  Loopback only; every process it starts is killed by PID.
"""
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pvp"))
import srp_tpasswd  # noqa: E402

PRIO = "NORMAL:-VERS-TLS1.3:+SRP"
CALLED, CALLER = "+14085551234", "+33123456789"
IO_TIMEOUT_MS = "400"


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    peer = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    now = int(time.time())
    start, stop = now - 600, now - 600 + 183
    user, pw = subprocess.run([peer, "creds", CALLED, CALLER, str(start), str(stop)], check=True,
                              capture_output=True, text=True).stdout.split()
    work = tempfile.mkdtemp(prefix="pvp-interop-loop-")
    conf = os.path.join(work, "tpasswd.conf")
    subprocess.run(["srptool", "--create-conf", conf], check=True, capture_output=True)
    counts = {"ok": 0, "refused-salt": 0, "definite": 0, "transport": 0, "unexpected": 0}
    done = [0]
    lock = threading.Lock()
    servers = []
    examples = []
    next_run = [0]

    def worker(k):
        try:
            run_worker(k)
        except Exception as e:  # a broken run is an outcome too, never a silent stop
            with lock:
                counts["unexpected"] += 1
                examples.append("worker %d: %r" % (k, e))

    base = 20000 + int.from_bytes(os.urandom(2), "big") % 30000

    def run_worker(k):
        port = base + k
        pfile = os.path.join(work, "tpasswd-%d" % k)
        srp_tpasswd.make(user, pw, os.urandom(16).hex(), conf, 3, pfile)
        log = open(os.path.join(work, "serv-%d.out" % k), "w")
        srv = subprocess.Popen(["gnutls-serv", "-p", str(port), "--srppasswd", pfile, "--srppasswdconf", conf,
                                "--priority", PRIO, "--echo"], stdout=log, stderr=subprocess.STDOUT)
        with lock:
            servers.append(srv)
        deadline = time.time() + 10
        while time.time() < deadline and "port %d...done" % port not in open(log.name).read():
            time.sleep(0.05)
        if "port %d...done" % port not in open(log.name).read():
            # A server that did not bind would turn every run into "transport": stop loudly instead.
            raise RuntimeError("gnutls-serv did not listen on port %d: %s" % (port, open(log.name).read()[-200:]))
        while True:
            with lock:
                if next_run[0] >= runs:
                    return
                next_run[0] += 1
            salt = os.urandom(16)
            srp_tpasswd.make(user, pw, salt.hex(), conf, 3, pfile)
            for attempt in range(4):
                out = subprocess.run([peer, "validate", str(port), CALLED, CALLER, str(start), str(stop),
                                      os.path.join(work, "ledger-%d" % k), IO_TIMEOUT_MS],
                                     capture_output=True, text=True, timeout=30).stdout
                if "handshake=ok" in out:
                    cls = "ok" if salt[0] != 0 else "unexpected"
                elif "result=VP_ETLS" in out:
                    cls = "refused-salt" if salt[0] == 0 else "unexpected"
                elif "result=VP_EAUTH" in out:
                    cls = "definite"
                else:
                    cls = "transport"
                with lock:
                    counts[cls] += 1
                    if cls in ("definite", "unexpected") and len(examples) < 5:
                        examples.append("salt=%s %s" % (salt.hex(), out.replace("\n", " ")))
                if cls != "transport":
                    break
            with lock:
                done[0] += 1

    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for srv in servers:
            srv.kill()
            srv.wait()
        subprocess.run(["rm", "-rf", work])
    wall = time.time() - t0
    for k, v in counts.items():
        print("pvp_interop_loop_%s %d runs" % (k.replace("-", "_"), v))
    print("pvp_interop_loop_total %d of %d runs completed in %.0f s (%d workers)" % (done[0], runs, wall, workers))
    for e in examples:
        print("  example: " + e)
    return 1 if counts["definite"] or counts["unexpected"] or done[0] != runs else 0


if __name__ == "__main__":
    sys.exit(main())
