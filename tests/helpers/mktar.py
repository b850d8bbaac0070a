#!/usr/bin/env python3
"""mktar.py OUT SPEC...: a tar archive (pax) with exactly the members given,
for tests that attack an unpacker. OUT '-' is stdout. SPEC:
  f:NAME[:CONTENT]   a regular file (mode 0644)
  d:NAME             a directory (0755)
  l:NAME:TARGET      a symlink
  h:NAME:TARGET      a hard link
  c:NAME / b:NAME    a character / block device (1,3)
  p:NAME             a FIFO
  F:NAME:SIZE        a regular file of SIZE zero bytes
NAME and TARGET take \\n for a newline and \\xHH for a byte."""
import io, sys, tarfile


def unescape(s):
    return s.encode("utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")


def main():
    out = sys.argv[1]
    f = sys.stdout.buffer if out == "-" else open(out, "wb")
    with tarfile.open(fileobj=f, mode="w|" if out == "-" else "w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape") as t:
        for spec in sys.argv[2:]:
            kind, rest = spec.split(":", 1)
            parts = rest.split(":", 1)
            name = unescape(parts[0])
            arg = unescape(parts[1]) if len(parts) > 1 else None
            ti = tarfile.TarInfo(name)
            ti.mtime = 1000000000
            data = None
            if kind == "f":
                data = (arg if arg is not None else "data of " + name + "\n").encode("utf-8", "surrogateescape")
                ti.size, ti.mode = len(data), 0o644
            elif kind == "F":
                data = bytes(int(arg))
                ti.size, ti.mode = len(data), 0o644
            elif kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
            elif kind in "cb":
                ti.type = tarfile.CHRTYPE if kind == "c" else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = 1, 3
            elif kind == "p":
                ti.type = tarfile.FIFOTYPE
            else:
                sys.exit("mktar: unknown kind " + kind)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)


main()
