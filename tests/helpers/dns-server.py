#!/usr/bin/env python3
"""dns-server.py ADDR PORT: a tiny DNS server for the tests, on an address
the test owns. Every A query for a name ending in .test is answered with
192.0.2.123 (TEST-NET-1, never routed), its other types with no record;
any other name gets NXDOMAIN. It
prints "ready" once it listens and logs each name it was asked to stderr."""
import socket
import struct
import sys

ANSWER = bytes([192, 0, 2, 123])


def reply(q):
    if len(q) < 12:
        return None
    tid, flags, qd = struct.unpack(">HHH", q[:6])
    if qd != 1:
        return None
    i, labels = 12, []
    while i < len(q) and q[i]:
        n = q[i]
        labels.append(q[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    question = q[12:i + 5]
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0] if i + 3 <= len(q) else 0
    name = ".".join(labels).lower()
    print(name, file=sys.stderr, flush=True)
    ok = name.endswith(".test") and qtype == 1
    # a .test name has an A record and nothing else (NODATA); others do not exist
    rcode = 0 if name.endswith(".test") else 3
    hdr = struct.pack(">HHHHHH", tid, 0x8180 | rcode, 1, 1 if ok else 0, 0, 0)
    ans = b""
    if ok:
        ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + ANSWER
    return hdr + question + ans


def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], int(sys.argv[2])))
    print("ready", flush=True)
    while True:
        q, peer = s.recvfrom(512)
        r = reply(q)
        if r:
            s.sendto(r, peer)


if __name__ == "__main__":
    main()
