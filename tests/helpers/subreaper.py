#!/usr/bin/env python3
"""subreaper.py CMD [ARG...]: run CMD as a child subreaper does (containerd's
shim, conmon): orphans of CMD's descendants become our children. After CMD
exits, wait for every child we inherited and print one line per child on
stdout: "PID STATUS" (STATUS the exit code, or 128+N for signal N), CMD's own
last as "cmd STATUS". Stops waiting once the pid named in the file
$SUBREAPER_UNTIL is reaped, or after $SUBREAPER_TIMEOUT seconds (default
120), printing "timeout"."""
import ctypes
import os
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def status(st):
    return os.waitstatus_to_exitcode(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st)


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("prctl failed")
    cmd = subprocess.Popen(sys.argv[1:])
    rc = cmd.wait()
    deadline = time.time() + float(os.environ.get("SUBREAPER_TIMEOUT", "120"))
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.time() > deadline:
                print("timeout", flush=True)
                break
            time.sleep(0.05)
            continue
        print(pid, status(st), flush=True)
        until = os.environ.get("SUBREAPER_UNTIL")
        if until and os.path.exists(until) and open(until).read().strip() == str(pid):
            break
    print("cmd", rc, flush=True)


main()
