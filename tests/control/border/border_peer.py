#!/usr/bin/env python3
"""Raw peers for vipr-border tests that sipp cannot play: garbage, a huge header,
a slow sender, plain TCP/UDP, and a flood.  Loopback only; every loop is bounded
in count and time.  Prints one line 'result=<token>' and exits 0 when the border
behaved as the mode expects, 1 otherwise.

  border_peer.py MODE HOST PORT [--cert C --key K --ca CA] [--seconds S] [--count N]
  (flood-file only writes N INVITEs to stdout)
"""
import argparse
import socket
import ssl
import sys
import time

INVITE = ("INVITE sip:+14085551234@{h}:{p} SIP/2.0\r\n"
          "Via: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bK-{n}\r\n"
          "From: <sip:caller@flood.example>;tag=f{n}\r\n"
          "To: <sip:+14085551234@{h}>\r\n"
          "Call-ID: flood-{n}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
          "{extra}Content-Length: 0\r\n\r\n")


def tls(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.load_verify_locations(a.ca)
    ctx.check_hostname = False
    s = socket.create_connection((a.host, a.port), timeout=5)
    return ctx.wrap_socket(s)


def read_until_closed(s, limit_s):
    """Everything the border sends until it closes (or limit_s passes): (bytes, closed)."""
    data = b""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except (socket.timeout, TimeoutError):
            return data, False
        except (ConnectionError, ssl.SSLError, OSError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--expect-status", default="")
    ap.add_argument("--count", type=int, default=1000)
    a = ap.parse_args()
    h, p = a.host, a.port
    ok = False
    tok = "?"
    if a.mode == "flood-file":
        # The flood as a byte stream on stdout, for a C sender (socat) that outruns the border.
        out = sys.stdout.buffer
        for n in range(a.count):
            out.write(INVITE.format(h=h, p=p, n=n, extra="").encode())
        out.flush()
        return 0
    if a.mode == "conns":
        # --count connections from one identity, each asking OPTIONS: how many are served?
        served = 0
        socks = []
        for n in range(a.count):
            try:
                s = tls(a)
                s.sendall(("OPTIONS sip:border SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bK-o%d\r\n"
                           "From: <sip:x@x>;tag=o%d\r\nTo: <sip:border>\r\nCall-ID: o%d\r\nCSeq: 1 OPTIONS\r\n"
                           "Content-Length: 0\r\n\r\n" % (n, n, n)).encode())
                data, end = b"", time.monotonic() + 3
                while b"\r\n\r\n" not in data and time.monotonic() < end:
                    s.settimeout(max(0.05, end - time.monotonic()))
                    try:
                        chunk = s.recv(4096)
                    except (socket.timeout, TimeoutError):
                        break
                    except (ConnectionError, ssl.SSLError, OSError):
                        break
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"SIP/2.0 200"):
                    served += 1
                socks.append(s)
            except (ConnectionError, ssl.SSLError, OSError):
                pass
        print("result=served=%d" % served)
        return 0 if served == int(a.expect_status or -1) else 1
    if a.mode == "plain-tcp":
        # Plain SIP on a TLS port (or on the diagnostic listener with --expect-status 403).
        s = socket.create_connection((h, p), timeout=5)
        s.sendall(INVITE.format(h=h, p=p, n=1, extra="").encode())
        data, closed = read_until_closed(s, a.seconds)
        got_sip = data.startswith(b"SIP/2.0")
        if a.expect_status:
            ok = data.startswith(("SIP/2.0 " + a.expect_status).encode()) and closed
            tok = "status=" + (data.split(b" ")[1].decode() if got_sip else "none")
        else:
            ok = not got_sip
            tok = "sip-answer" if got_sip else ("closed" if closed else "silent")
    elif a.mode == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(a.seconds)
        s.sendto(INVITE.format(h=h, p=p, n=1, extra="").encode(), (h, p))
        try:
            s.recvfrom(65536)
            tok = "answered"
        except (socket.timeout, ConnectionError, OSError):
            ok, tok = True, "nothing"
    elif a.mode == "garbage":
        s = tls(a)
        s.sendall(b"\x16\x03\x01 this is not SIP at all\r\nnor: this\r\n\r\n" + bytes(range(256)) * 4)
        data, closed = read_until_closed(s, a.seconds)
        ok = closed and not data.startswith(b"SIP/2.0 200")
        tok = "closed" if closed else "open"
    elif a.mode == "huge":
        s = tls(a)
        big = "X-Padding: " + "a" * 70000 + "\r\n"
        try:
            s.sendall(INVITE.format(h=h, p=p, n=1, extra=big).encode())
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        data, closed = read_until_closed(s, a.seconds)
        ok = closed and b"SIP/2.0 200" not in data
        tok = "closed" if closed else "open"
    elif a.mode == "slow":
        # One byte every 200 ms: a message that never completes within the border's deadline.
        s = tls(a)
        msg = INVITE.format(h=h, p=p, n=1, extra="").encode()
        t0 = time.monotonic()
        closed = False
        for i in range(len(msg)):
            if time.monotonic() - t0 > a.seconds:
                break
            try:
                s.sendall(msg[i:i + 1])
            except (ConnectionError, ssl.SSLError, OSError):
                closed = True
                break
            _, closed = read_until_closed(s, 0.2)
            if closed:
                break
        ok = closed
        tok = "closed after %.1fs" % (time.monotonic() - t0) if closed else "still open"
    elif a.mode == "flood":
        # Unticketed INVITEs as fast as one connection takes them, for --seconds; counts the 403s.
        s = tls(a)
        s.setblocking(False)
        end = time.monotonic() + a.seconds
        sent = answers = 0
        buf = b""
        n = 0
        while time.monotonic() < end and n < 10_000_000:
            n += 1
            try:
                s.send(INVITE.format(h=h, p=p, n=n, extra="").encode())
                sent += 1
            except (ssl.SSLWantWriteError, BlockingIOError):
                time.sleep(0.001)
            except (ConnectionError, ssl.SSLError, OSError):
                break
            try:
                while True:
                    buf += s.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                pass
            except (ConnectionError, ssl.SSLError, OSError):
                break
            answers += buf.count(b"SIP/2.0 403")
            buf = buf[buf.rfind(b"\r\n\r\n") + 4:] if b"\r\n\r\n" in buf else buf
        ok = sent > 0
        tok = "sent=%d refused=%d" % (sent, answers)
    print("result=" + tok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
