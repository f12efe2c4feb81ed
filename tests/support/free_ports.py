#!/usr/bin/env python3
"""Print N free loopback TCP ports for a test's listeners, separated by spaces.

The ports are drawn at random below the kernel's ephemeral range: a port from
bind(("127.0.0.1", 0)) comes from that range, which is also where every
outgoing connection (a node's own links, curl, sipp) takes its local port, so
such a port could be taken by a connection between the moment it is chosen and
the moment the daemon binds it (seen in viprd_ring under a full suite).
Each port is checked by binding it; all are held until all are chosen.

Usage: free_ports.py N [--consecutive]   (--consecutive: N ports in a row)
Python tests import free_ports() and free_base() from it.
"""
import random
import socket
import sys


def free_ports(n, consecutive=False):
    """n free ports (n in a row if consecutive), each checked by binding it, all held until all are chosen."""
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    rng = random.Random()
    held, ports = [], []
    for _ in range(2000):
        if len(ports) == n:
            break
        want = range(b := rng.randrange(10000, lo - n), b + n) if consecutive else [rng.randrange(10000, lo)]
        got = []
        for p in want:
            if p in ports:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                s.close()
                break
            got.append(s)
        if len(got) == len(want):
            held += got
            ports += list(want)
        else:
            for s in got:
                s.close()
    for s in held:
        s.close()
    if len(ports) != n:
        raise RuntimeError("no %d free ports below %d" % (n, lo))
    return ports


def free_base(n):
    """The first of n free consecutive ports (a launcher's --base-port)."""
    return free_ports(n, consecutive=True)[0]


def main():
    args = sys.argv[1:]
    consecutive = "--consecutive" in args
    args = [a for a in args if a != "--consecutive"]
    if len(args) != 1 or not args[0].isdigit() or not 1 <= int(args[0]) <= 200:
        sys.exit("usage: free_ports.py N [--consecutive]   (1 <= N <= 200)")
    try:
        ports = free_ports(int(args[0]), consecutive)
    except RuntimeError as e:
        sys.exit("free_ports.py: %s" % e)
    print(" ".join(str(p) for p in ports))


if __name__ == "__main__":
    main()
