#!/usr/bin/env python3
"""A hand-made client of a sandbox's monitor socket (lib/common/monitor-abi.h),
for tests that attack it. Connects to RUNDIR/monitor.sock relative to the
directory (so a long path or a dropped uid still reaches it).

  monitor-client.py as-user UID RUNDIR     drop to UID (and its gid), ask for
                                           `echo PWNED`; print what comes back
  monitor-client.py window-flood RUNDIR    exec cat, take the first stdin window,
                                           spend it in 1-byte frames and never
                                           read again; hold the connection 8 s
  monitor-client.py nul RUNDIR             an exec request with a NUL byte in a
                                           string, 60000 bytes after it
  monitor-client.py nul-escape RUNDIR      the same with a \\u0000 escape in args
  monitor-client.py idle RUNDIR N SECONDS  hold N connections that ask nothing
"""
import os, socket, struct, sys, time


def frame(t, payload=b""):
    return t.encode() + struct.pack("<II", 0, len(payload)) + payload


def connect(rundir):
    d = os.open(rundir, os.O_RDONLY | os.O_DIRECTORY)
    os.fchdir(d)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("monitor.sock")
    return s


def read_all(s, limit=20):
    s.settimeout(limit)
    got = b""
    while True:
        try:
            b = s.recv(65536)
        except OSError:
            break
        if not b:
            break
        got += b
    return got


def main():
    mode = sys.argv[1]
    if mode == "as-user":
        uid, rundir = int(sys.argv[2]), sys.argv[3]
        d = os.open(rundir, os.O_RDONLY | os.O_DIRECTORY)
        os.fchdir(d)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect("monitor.sock")
        except OSError as e:
            print("connect:", e.strerror)
            return
        try:
            s.sendall(frame("C", b'{"args":["sh","-c","echo PWNED"]}') + frame("E"))
        except OSError:
            pass  # refused and closed already: its answer is still there to read
        print(read_all(s).decode(errors="replace"))
    elif mode == "window-flood":
        s = connect(sys.argv[2])
        s.sendall(frame("C", b'{"args":["cat"]}'))
        hdr = b""
        while len(hdr) < 13:
            hdr += s.recv(13 - len(hdr))
        assert hdr[0:1] == b"W", hdr
        window = struct.unpack("<I", hdr[9:13])[0]
        print("window", window, flush=True)
        s.sendall(b"".join(frame("I", b"x") for _ in range(window)))
        time.sleep(8)
        s.close()
    elif mode == "nul":
        s = connect(sys.argv[2])
        s.sendall(frame("C", b'{"args":["echo"],"a":"\0' + b"x" * 60000 + b'"}'))
        print(read_all(s).decode(errors="replace"))
    elif mode == "nul-escape":
        s = connect(sys.argv[2])
        s.sendall(frame("C", b'{"args":["echo\\u0000 --evil"]}'))
        print(read_all(s).decode(errors="replace"))
    elif mode == "idle":
        socks = [connect(sys.argv[2]) for _ in range(int(sys.argv[3]))]
        print("holding", len(socks), flush=True)
        time.sleep(float(sys.argv[4]))
        closed = told = 0
        for s in socks:
            got = read_all(s, 0.5)  # up to EOF: what the monitor said, if anything
            try:
                s.settimeout(0.1)
                closed += s.recv(1) == b""
            except OSError:
                pass
            told += b"nothing asked" in got
        print("closed by the monitor:", closed, "told why:", told)
    else:
        sys.exit("unknown mode " + mode)


main()
