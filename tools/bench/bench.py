#!/usr/bin/env python3
"""boxkit benchmarks. Medians of several runs, ratios against a baseline
measured in the same run.

  bench.py boot     QEMU start -> guest init for lean, net and Debian's generic
                    kernel (5 runs each), microvm, TCG
  bench.py run      cold `box run --cold -- true` (10 runs) against the floor: bare
                    QEMU, same kernel and kernel command line, a one-line init
                    that powers off (and the floor with the command line before
                    its trimming, interleaved); where the time goes; QEMU's and
                    boxkit's memory
  bench.py exec     `box exec NAME -- true` in a sandbox (median of 20) against
                    cold `box run -- true` (10) in the same run, `box create`,
                    and the monitor's RSS (targets: exec <= 0.25 s and <= 1/10
                    of a cold run)
  bench.py net      --network user (passt): iperf3 throughput host->guest and
                    guest->host through a published port, against iperf3 over the
                    host's loopback in the same run; request latency to a guest
                    httpd against the same httpd on the host's loopback; the start-up
                    time --network user adds over none; and the choice of stack:
                    passt against QEMU's slirp, each on a bare QEMU with the same
                    guest (an initrd with iperf3)
  bench.py image    first and second `box run --image` of a Debian image (the
                    import, then cached) against the busybox image and plain
                    `box run -- true` in the same run (3 rounds, fresh homes)
  bench.py voldata  data in and out of a named volume: `tar -c | box volume import`
                    and `box volume export | tar -x` of a 100 MiB tree (1000
                    files of various sizes in 60 directories), and volume-tar
                    alone, against `tar -c | tar -x` between two host
                    directories in the same run (medians of 5; everything on
                    xfs loop images of the same kind; root)
  bench.py runtime  boxkit as Docker's runtime: `docker run --rm --runtime boxkit
                    IMAGE true` against `--runtime runc` and against `box run --
                    true` in the same run (medians of 5; a dockerd of the
                    bench's own in a network and mount namespace of its own, an
                    image imported from a busybox tree): the engine's own
                    overhead on top of boxkit
  bench.py warm     warm starts: `box run -- true` restored from a saved VM (10
                    runs) against a cold boot (`--cold`, 10), the bare-QEMU floor
                    (10) and gVisor (`runsc --platform=ptrace run` of a busybox
                    bundle doing `true`, 10), all in the same run, interleaved;
                    the saved state's size and its restore time against guest
                    memory (128, 256, 512 MiB); QEMU's RSS in N idle sandboxes
                    (N = 1, 4, 8). Targets: warm <= 0.35 s, >= 4x faster than
                    cold, <= 1.5x gVisor
  bench.py boot-options
                    the floor with each kernel command line option alone (on
                    the line before the trimming) and with vm-launch's trimmed
                    line, against the old line, interleaved (medians of 9)
  bench.py compare TOP
                    cold `box run -- true` of this tree against another built
                    tree (another commit: `git worktree add`, make, make image),
                    runs interleaved (10 each), medians and their ratio
"""
import json, os, re, shutil, statistics, subprocess, sys, tempfile, time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(TOP, "bin")
CACHE = os.environ.get("BOXKIT_CACHE", os.path.expanduser("~/.cache/boxkit"))
QEMU = shutil.which("qemu-system-x86_64")
MARK = b"BOXKIT-BENCH-INIT"


def initrd(workdir, script):
    d = os.path.join(workdir, "initrd")
    os.makedirs(os.path.join(d, "bin"), exist_ok=True)
    for sub in ("proc", "sys", "dev"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(d, "bin/busybox"))
    if not os.path.exists(os.path.join(d, "bin/sh")):
        os.symlink("busybox", os.path.join(d, "bin/sh"))
    with open(os.path.join(d, "init"), "w") as f:
        f.write("#!/bin/sh\n" + script)
    os.chmod(os.path.join(d, "init"), 0o755)
    out = os.path.join(workdir, "initrd.gz")
    subprocess.run(f"cd {d} && find . | cpio -o -H newc 2>/dev/null | gzip -1 > {out}", shell=True, check=True)
    return out


# the kernel command line before issue 17, and vm-launch's trimmed one for TCG
# (tools/vm-launch/vm.c: KERNEL_CMDLINE, KERNEL_CMDLINE_TCG; its root= and
# init= do not apply to an initrd)
APPEND_OLD = "console=ttyS0 quiet panic=-1 reboot=t"
APPEND_TRIMMED = APPEND_OLD + " tsc=reliable no_timer_check pty.legacy_count=0 noapictimer"


def qemu_boot(kernel, rd, until_exit=False, timeout=60, append=APPEND_OLD):
    """Seconds from QEMU start to the marker on the serial line (or to exit)."""
    cmd = [QEMU, "-M", "microvm,acpi=off,rtc=on", "-accel", "tcg", "-m", "256", "-nodefaults",
           "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
           "-kernel", kernel, "-initrd", rd, "-append", append]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    buf = b""
    t_mark = None
    while True:
        chunk = p.stdout.read1(4096) if hasattr(p.stdout, "read1") else p.stdout.read(1)
        if not chunk:
            break
        buf += chunk
        if t_mark is None and MARK in buf:
            t_mark = time.monotonic() - t0
            if not until_exit:
                break
        if time.monotonic() - t0 > timeout:
            break
    p.kill()
    p.wait()
    t_exit = time.monotonic() - t0
    return t_exit if until_exit else t_mark


def debian_kernel(workdir):
    """Debian's generic kernel, from the linux-image package (downloaded once)."""
    dest = os.path.join(CACHE, "bench", "vmlinuz-debian")
    if os.path.exists(dest):
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    pkg = subprocess.run("apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}'",
                         shell=True, capture_output=True, text=True).stdout.strip()
    subprocess.run(["apt-get", "download", pkg], cwd=workdir, check=True, capture_output=True)
    deb = [f for f in os.listdir(workdir) if f.endswith(".deb")][0]
    subprocess.run(["dpkg-deb", "-x", deb, "x"], cwd=workdir, check=True)
    boot = os.path.join(workdir, "x", "boot")
    vml = [f for f in os.listdir(boot) if f.startswith("vmlinuz")][0]
    shutil.copy(os.path.join(boot, vml), dest)
    return dest


def med(xs):
    return statistics.median(xs)


def bench_boot(n=5):
    work = tempfile.mkdtemp()
    rd = initrd(work, "echo BOXKIT-BENCH-INIT\n/bin/busybox reboot -f\n")
    kernels = {}
    for v in ("lean", "net"):
        k = os.path.join(TOP, "build", "kernels", v, "bzImage")
        if os.path.exists(k):
            kernels[v] = k
            kernels[v + "-pvh"] = os.path.join(TOP, "build", "kernels", v, "vmlinux")
        else:
            print(f"bench: {v} kernel not built (make kernel-{v}); skipped", file=sys.stderr)
    try:
        kernels["debian"] = debian_kernel(work)
    except Exception as e:  # no package archive: say so, keep going
        print(f"bench: Debian's kernel unavailable ({e}); skipped", file=sys.stderr)
    res = {}
    for name, k in kernels.items():
        times = [qemu_boot(k, rd) for _ in range(n)]
        res[name] = {"median_s": round(med(times), 3), "runs": [round(t, 3) for t in times],
                     "bzimage_bytes": os.path.getsize(k)}
    base = res.get("debian", {}).get("median_s")
    for name, r in res.items():
        if base:
            r["ratio_vs_debian"] = round(r["median_s"] / base, 3)
        print(f"boot-to-init {name:9s} median {r['median_s']:.3f} s  runs {r['runs']}  "
              f"size {r['bzimage_bytes']}" + (f"  x{r['ratio_vs_debian']} of debian" if base else ""))
    print(json.dumps({"bench": "boot", "results": res}))
    shutil.rmtree(work)


def sample_rss(pattern, stop):
    """Peak RSS (kB) of processes whose cmdline matches pattern, until stop()."""
    peak = {}
    while not stop():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
                if not re.search(pattern, cmd):
                    continue
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        kb = int(line.split()[1])
                        key = cmd.split()[0].split("/")[-1]
                        peak[key] = max(peak.get(key, 0), kb)
            except OSError:
                pass
        time.sleep(0.05)
    return peak


def bench_run(n=10):
    import threading
    work = tempfile.mkdtemp()
    kernel = os.path.join(TOP, "build", "kernels", "lean", "vmlinux")  # what box run boots
    rd = initrd(work, "echo BOXKIT-BENCH-INIT\n/bin/busybox reboot -f\n")
    # the floor with the old kernel command line and with vm-launch's trimmed one, interleaved
    floor_old, floor = [], []
    for _ in range(n):
        floor_old.append(qemu_boot(kernel, rd, until_exit=True))
        floor.append(qemu_boot(kernel, rd, until_exit=True, append=APPEND_TRIMMED))
    env = dict(os.environ, BOXKIT_HOME=os.path.join(work, "home"))
    box, phases, rss = [], [], {}
    for i in range(n):
        done = []
        peaks = {}
        t = threading.Thread(target=lambda: peaks.update(sample_rss(r"qemu-system|vm-launch|/box ", lambda: done)), daemon=True)
        t.start()
        t0 = time.monotonic()
        p = subprocess.run([os.path.join(BIN, "box"), "run", "--cold", "--verbose", "--", "true"], env=env,
                           capture_output=True, text=True)
        box.append(time.monotonic() - t0)
        done.append(1)
        t.join()
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            sys.exit(1)
        for k, v in peaks.items():
            rss[k] = max(rss.get(k, 0), v)
        # vm-launch's own timestamps: QEMU started, init up, workload done, QEMU gone
        m = {k: float(v) for k, v in re.findall(r"(started as pid \d+[^(]*|init is up|exited with \d+|QEMU exited after) \(?([\d.]+) s", p.stderr)}
        phases.append(m)
    def pm(pat):
        vals = [next((v for k, v in ph.items() if pat in k), None) for ph in phases]
        vals = [v for v in vals if v is not None]
        return round(med(vals), 3) if vals else None
    res = {"floor_median_s": round(med(floor), 3), "floor_old_cmdline_median_s": round(med(floor_old), 3),
           "box_run_true_median_s": round(med(box), 3)}
    res["ratio"] = round(res["box_run_true_median_s"] / res["floor_median_s"], 3)
    res["vm_launch_phases_median_s"] = {"qemu_started": pm("started"), "guest_init_up": pm("init is up"),
                                         "workload_done": pm("exited with"), "qemu_gone": pm("QEMU exited")}
    res["peak_rss_kb"] = rss
    print(f"floor (bare QEMU, lean kernel, init that powers off): median {res['floor_median_s']:.3f} s with "
          f"vm-launch's trimmed kernel command line, {res['floor_old_cmdline_median_s']:.3f} s with the old one")
    print(f"box run --cold -- true: median {res['box_run_true_median_s']:.3f} s  ratio x{res['ratio']} of the "
          f"trimmed floor (target x1.15)")
    print(f"vm-launch phases (median, from vm-launch start): {res['vm_launch_phases_median_s']}")
    print(f"peak RSS kB: {rss}")
    print(json.dumps({"bench": "run", "results": res}))
    shutil.rmtree(work, ignore_errors=True)


def sample_vfsd(stop, out):
    """Peak RSS (kB) and descriptor count of virtiofsd processes."""
    while not stop():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if open(f"/proc/{pid}/comm").read().strip() != "virtiofsd":
                    continue
                fds = len(os.listdir(f"/proc/{pid}/fd"))
                rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
                out["fds"] = max(out.get("fds", 0), fds)
                out["rss_kb"] = max(out.get("rss_kb", 0), rss)
            except (OSError, StopIteration):
                pass
        time.sleep(0.1)


def bench_volumes(n=5):
    import threading
    work = tempfile.mkdtemp()
    env = dict(os.environ, BOXKIT_HOME=os.path.join(work, "home"))
    box = os.path.join(BIN, "box")

    def timed(args):
        t0 = time.monotonic()
        p = subprocess.run([box, "run"] + args, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            sys.exit(1)
        return time.monotonic() - t0, p.stdout

    plain = [timed(["--", "true"])[0] for _ in range(n)]
    share = [timed(["-v", "benchvol:/data", "--", "true"])[0] for _ in range(n)]
    ms = "$(awk '{print int($1*1000)}' /proc/uptime)"  # busybox date has no %N
    script = (f"mkdir -p /data/s; t={ms}; dd if=/dev/zero of=/data/big bs=1M count=256 conv=fsync 2>/dev/null; echo write_share_ms=$(({ms}-t)); "
              f"sync; echo 3 >/proc/sys/vm/drop_caches; t={ms}; dd if=/data/big of=/dev/null bs=1M 2>/dev/null; echo read_share_ms=$(({ms}-t)); "
              f"t={ms}; dd if=/dev/zero of=/tmp/big bs=1M count=256 2>/dev/null; echo write_tmpfs_ms=$(({ms}-t)); "
              f"t={ms}; dd if=/tmp/big of=/dev/null bs=1M 2>/dev/null; echo read_tmpfs_ms=$(({ms}-t)); "
              f"cd /data/s; t={ms}; seq 10000 | xargs touch; echo create_10000_ms=$(({ms}-t)); "
              f"echo 3 >/proc/sys/vm/drop_caches; t={ms}; find /data/s -type f | xargs stat >/dev/null; echo stat_10000_ms=$(({ms}-t)); "
              f"rm -rf /data/s /data/big")
    done, vf = [], {}
    t = threading.Thread(target=sample_vfsd, args=(lambda: done, vf), daemon=True)
    t.start()
    _, out = timed(["--privileged", "-v", "benchvol:/data", "--", "sh", "-c", script])
    done.append(1)
    t.join()
    io = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out)}
    res = {"box_run_true_median_s": round(med(plain), 3), "box_run_share_true_median_s": round(med(share), 3),
           "share_cost_s": round(med(share) - med(plain), 3), "ratio": round(med(share) / med(plain), 3),
           "io_ms": io, "virtiofsd_peak": vf}
    mb = 256.0
    for k in ("write_share", "read_share", "write_tmpfs", "read_tmpfs"):
        if io.get(k + "_ms"):
            res.setdefault("MiB_per_s", {})[k] = round(mb / (io[k + "_ms"] / 1000.0), 1)
    print(f"box run -- true {res['box_run_true_median_s']} s; with one share {res['box_run_share_true_median_s']} s "
          f"(+{res['share_cost_s']} s, x{res['ratio']})")
    print(f"256 MiB sequential (MiB/s): {res.get('MiB_per_s')}")
    print(f"10000 small files: create {io.get('create_10000_ms')} ms, stat {io.get('stat_10000_ms')} ms")
    print(f"virtiofsd peak: {vf}")
    print(json.dumps({"bench": "volumes", "results": res}))
    shutil.rmtree(work, ignore_errors=True)


def bench_exec(n=20, n_cold=10):
    work = tempfile.mkdtemp()
    env = dict(os.environ, BOXKIT_HOME=os.path.join(work, "home"))
    box = os.path.join(BIN, "box")

    def timed(args):
        t0 = time.monotonic()
        p = subprocess.run([box] + args, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            sys.exit(1)
        return time.monotonic() - t0

    cold = [timed(["run", "--cold", "--", "true"]) for _ in range(n_cold)]
    create = []
    for i in range(3):
        create.append(timed(["create", "--name", f"bench{i}"]))
    execs = [timed(["exec", "bench0", "--", "true"]) for _ in range(n)]
    rec = json.loads(subprocess.run([os.path.join(BIN, "run-record"), "show", "--home", env["BOXKIT_HOME"], "--id",
                                     subprocess.run([os.path.join(BIN, "run-record"), "find", "--home", env["BOXKIT_HOME"],
                                                     "--name", "bench0"], capture_output=True, text=True).stdout.strip()],
                                    capture_output=True, text=True).stdout)
    mon_rss, qemu_rss = None, None
    for o in rec["owners"]:
        try:
            with open(f"/proc/{o['pid']}/cmdline", "rb") as f:
                if b"--detach" not in f.read():
                    continue
            with open(f"/proc/{o['pid']}/status") as f:
                mon_rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        except OSError:
            pass
    for pr in rec["processes"]:
        if pr.get("what") == "qemu":
            try:
                with open(f"/proc/{pr['pid']}/status") as f:
                    qemu_rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
            except OSError:
                pass
    for i in range(3):
        timed(["rm", "-f", f"bench{i}"])
    res = {"box_run_true_median_s": round(med(cold), 3), "box_create_median_s": round(med(create), 3),
           "box_exec_true_median_s": round(med(execs), 3), "box_exec_true_max_s": round(max(execs), 3),
           "ratio_exec_to_cold": round(med(execs) / med(cold), 3), "monitor_rss_kb": mon_rss, "qemu_rss_kb": qemu_rss,
           "target_exec_s": 0.25, "target_ratio": 0.1}
    res["targets_met"] = res["box_exec_true_median_s"] <= 0.25 and res["ratio_exec_to_cold"] <= 0.1
    print(f"box run -- true (cold): median {res['box_run_true_median_s']:.3f} s; box create: median {res['box_create_median_s']:.3f} s")
    print(f"box exec NAME -- true: median {res['box_exec_true_median_s']:.3f} s (max {res['box_exec_true_max_s']:.3f}), "
          f"x{res['ratio_exec_to_cold']} of a cold run; monitor RSS {mon_rss} kB, QEMU RSS {qemu_rss} kB")
    print(json.dumps({"bench": "exec", "results": res}))
    shutil.rmtree(work, ignore_errors=True)


def iperf_tree(workdir):
    """busybox + iperf3 (and its libraries) as a rootfs tree"""
    t = os.path.join(workdir, "tree")
    for sub in ("bin", "proc", "sys", "dev", "tmp", "etc", "www", "run"):
        os.makedirs(os.path.join(t, sub), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(t, "bin/busybox"))
    for a in ("sh", "httpd", "ip", "sleep", "cat", "echo", "mkdir"):
        os.symlink("busybox", os.path.join(t, "bin", a))
    ip3 = shutil.which("iperf3")
    libs = [ip3] + re.findall(r"(/\S+) \(0x", subprocess.run(["ldd", ip3], capture_output=True, text=True).stdout)
    for f in libs:
        dst = os.path.join(t, f.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(os.path.realpath(f), dst)
    with open(os.path.join(t, "www/index.html"), "w") as f:
        f.write("x" * 100)
    with open(os.path.join(t, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/:/bin/sh\n")
    return t


def iperf(port, reverse, secs=4):
    """bits/s received, from the host's iperf3 client to 127.0.0.1:port"""
    cmd = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(secs), "-J"] + (["-R"] if reverse else [])
    for _ in range(5):
        p = subprocess.run(cmd, capture_output=True, text=True)
        try:
            return json.loads(p.stdout)["end"]["sum_received"]["bits_per_second"]
        except (ValueError, KeyError):
            time.sleep(1)  # the server is still busy with the last test
    raise RuntimeError("iperf3: " + p.stdout[-300:] + p.stderr[-300:])


def wait_port(port, timeout=60):
    import socket
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                if c.recv(16):
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def http_latency(port, n=50):
    import socket
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            while c.recv(65536):
                pass
        out.append(time.monotonic() - t0)
    return med(out)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_compare(workdir, tree, kernel, runs=3):
    """passt against slirp on a bare QEMU, the same guest: iperf3 -s behind a forwarded port"""
    rd = os.path.join(workdir, "rd")
    shutil.copytree(tree, rd, symlinks=True)
    with open(os.path.join(rd, "init"), "w") as f:
        f.write("#!/bin/sh\nm() { /bin/busybox mount \"$@\"; }\nm -t proc p /proc; m -t sysfs s /sys; "
                "m -t devtmpfs d /dev\nm -t tmpfs t /tmp\nip link set lo up\n"
                "ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 mtu 65520 up 2>/dev/null || ip link set eth0 up\n"
                "ip route add default via 10.0.2.2\nhttpd -p 8080 -h /www\nexec iperf3 -s\n")
    os.chmod(os.path.join(rd, "init"), 0o755)
    img = os.path.join(workdir, "rd.gz")
    subprocess.run(f"cd {rd} && find . | cpio -o -H newc 2>/dev/null | gzip -1 > {img}", shell=True, check=True)
    res = {}
    for stack in ("passt", "slirp"):
        ip, hp = free_port(), free_port()
        base = [QEMU, "-M", "microvm,acpi=off,rtc=on", "-accel", "tcg", "-m", "256", "-nodefaults", "-no-user-config",
                "-display", "none", "-no-reboot", "-serial", "file:" + os.path.join(workdir, stack + ".console"),
                "-kernel", kernel, "-initrd", img,
                "-append", "console=ttyS0 quiet panic=-1 reboot=t"]
        procs, fds = [], ()
        if stack == "slirp":
            net = ["-netdev", f"user,id=n0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:{ip}-:5201,"
                   f"hostfwd=tcp:127.0.0.1:{hp}-:8080", "-device", "virtio-net-device,netdev=n0"]
        else:
            import socket
            a, b = socket.socketpair()
            procs.append(subprocess.Popen([os.path.join(TOP, "build", "passt", "passt"), "-f", "-q", "--fd", str(b.fileno()), "-4", "--no-map-gw",
                                           "--address", "10.0.2.15", "--netmask", "24", "--gateway", "10.0.2.2",
                                           "--mtu", "65520", "-t", f"127.0.0.1/{ip}:5201", "-t", f"127.0.0.1/{hp}:8080",
                                           "-u", "none"], pass_fds=[b.fileno()], user="boxkit-net",
                                          stderr=subprocess.DEVNULL))
            b.close()
            fds = (a.fileno(),)
            net = ["-netdev", f"stream,id=n0,server=off,addr.type=fd,addr.str={a.fileno()}",
                   "-device", "virtio-net-device,netdev=n0"]
        q = subprocess.Popen(base + net, pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        procs.append(q)
        if stack == "passt":
            a.close()
        try:
            if not wait_port(hp, 90):
                raise RuntimeError(f"{stack}: the guest did not answer")
            res[stack] = {"host_to_guest_gbit": round(med([iperf(ip, False) for _ in range(runs)]) / 1e9, 3),
                          "guest_to_host_gbit": round(med([iperf(ip, True) for _ in range(runs)]) / 1e9, 3),
                          "http_latency_ms": round(http_latency(hp) * 1000, 2)}
        finally:
            for p in procs:
                p.kill()
                p.wait()
    return res


def bench_net(n=7, runs=3):
    work = tempfile.mkdtemp()
    env = dict(os.environ, BOXKIT_HOME=os.path.join(work, "home"))
    box = os.path.join(BIN, "box")

    def boxrun(args, check=True):
        t0 = time.monotonic()
        p = subprocess.run([box] + args, env=env, capture_output=True, text=True)
        if check and p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            sys.exit(1)
        return time.monotonic() - t0

    none, user = [], []
    for _ in range(n):
        none.append(boxrun(["run", "--cold", "--", "true"]))
        user.append(boxrun(["run", "--network", "user", "--", "true"]))
    tree = iperf_tree(work)
    lp, lh, gp, gh = free_port(), free_port(), free_port(), free_port()
    base = [subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(lp)], stdout=subprocess.DEVNULL),
            subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{lh}", "-h", os.path.join(tree, "www")])]
    try:
        boxrun(["run", "-d", "--name", "netbench", "--network", "user", "--rootfs", tree, "-p", f"{gp}:5201",
                "-p", f"{gh}:8080", "--", "sh", "-c", "httpd -p 8080 -h /www; exec iperf3 -s"])
        if not wait_port(gh, 90) or not wait_port(lh, 10):
            raise RuntimeError("the servers did not answer")
        res = {"start_none_median_s": round(med(none), 3), "start_user_median_s": round(med(user), 3)}
        res["start_added_s"] = round(res["start_user_median_s"] - res["start_none_median_s"], 3)
        res["loopback_gbit"] = round(med([iperf(lp, False) for _ in range(runs)]) / 1e9, 3)
        res["host_to_guest_gbit"] = round(med([iperf(gp, False) for _ in range(runs)]) / 1e9, 3)
        res["guest_to_host_gbit"] = round(med([iperf(gp, True) for _ in range(runs)]) / 1e9, 3)
        res["ratio_host_to_guest_vs_loopback"] = round(res["host_to_guest_gbit"] / res["loopback_gbit"], 4)
        res["ratio_guest_to_host_vs_loopback"] = round(res["guest_to_host_gbit"] / res["loopback_gbit"], 4)
        res["http_latency_loopback_ms"] = round(http_latency(lh) * 1000, 2)
        res["http_latency_guest_ms"] = round(http_latency(gh) * 1000, 2)
    finally:
        boxrun(["rm", "-f", "netbench"], check=False)
        for p in base:
            p.kill()
            p.wait()
    kernel = os.path.join(TOP, "build", "kernels", "lean", "vmlinux")
    res["stacks"] = stack_compare(work, tree, kernel, runs)
    print(f"start-up: box run -- true {res['start_none_median_s']:.3f} s, with --network user "
          f"{res['start_user_median_s']:.3f} s (+{res['start_added_s']:.3f} s)")
    print(f"iperf3 (medians of {runs}): loopback {res['loopback_gbit']} Gbit/s; through passt host->guest "
          f"{res['host_to_guest_gbit']} Gbit/s (x{res['ratio_host_to_guest_vs_loopback']}), guest->host "
          f"{res['guest_to_host_gbit']} Gbit/s (x{res['ratio_guest_to_host_vs_loopback']})")
    print(f"HTTP request (connect, GET 100 B, close; median of 50): loopback {res['http_latency_loopback_ms']} ms, "
          f"guest {res['http_latency_guest_ms']} ms")
    for k, v in res["stacks"].items():
        print(f"bare QEMU + {k}: host->guest {v['host_to_guest_gbit']} Gbit/s, guest->host {v['guest_to_host_gbit']} "
              f"Gbit/s, HTTP {v['http_latency_ms']} ms")
    print(json.dumps({"bench": "net", "results": res}))
    shutil.rmtree(work, ignore_errors=True)


def bench_image(n=3):
    """First and second `box run --image` of a Debian image (import: skopeo,
    umoci, mkfs.ext4; then cached) against the busybox image and plain
    `box run` in the same run, each from a docker-archive (what docker save
    writes), a fresh home per round."""
    work = tempfile.mkdtemp()
    helpers = os.path.join(TOP, "tests", "helpers")
    deb = subprocess.run([os.path.join(TOP, "tools", "image", "debian-rootfs"), "bookworm", "python3-minimal"],
                         check=True, capture_output=True, text=True).stdout.strip()
    layout = os.path.join(work, "oci")
    subprocess.run([os.path.join(helpers, "mk-oci"), "busybox", layout, "bb"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([os.path.join(helpers, "mk-oci"), "tree", deb, layout, "deb", "--config.cmd", "/bin/true"],
                   check=True, stdout=subprocess.DEVNULL)
    archives = {}
    for tag in ("bb", "deb"):
        archives[tag] = os.path.join(work, f"{tag}.tar")
        subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:{tag}", f"docker-archive:{archives[tag]}:bench/{tag}:1"],
                       check=True)
    tree_mib = int(subprocess.run(["du", "-sm", "--apparent-size", deb], capture_output=True, text=True).stdout.split()[0])

    def timed(env, args):
        t0 = time.monotonic()
        p = subprocess.run([os.path.join(BIN, "box"), "run", "--cold"] + args + ["--", "true"], env=env, capture_output=True,
                           text=True)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            sys.exit(1)
        return time.monotonic() - t0

    t = {k: [] for k in ("plain", "bb_first", "bb_second", "deb_first", "deb_second")}
    for i in range(n):
        env = dict(os.environ, BOXKIT_HOME=os.path.join(work, f"home{i}"))
        t["plain"].append(timed(env, []))
        for tag in ("bb", "deb"):
            ref = f"docker-archive:{archives[tag]}"
            t[f"{tag}_first"].append(timed(env, ["--image", ref]))
            t[f"{tag}_second"].append(timed(env, ["--image", ref]))
        shutil.rmtree(env["BOXKIT_HOME"], ignore_errors=True)
    res = {k: round(med(v), 3) for k, v in t.items()}
    res["debian_tree_mib"] = tree_mib
    res["deb_first_over_second"] = round(res["deb_first"] / res["deb_second"], 2)
    res["deb_second_over_bb_second"] = round(res["deb_second"] / res["bb_second"], 3)
    res["bb_second_over_plain"] = round(res["bb_second"] / res["plain"], 3)
    print(f"box run -- true (busybox, no image): median {res['plain']:.3f} s")
    print(f"busybox image: first run {res['bb_first']:.3f} s (import), second {res['bb_second']:.3f} s "
          f"(x{res['bb_second_over_plain']} of no image)")
    print(f"Debian image ({tree_mib} MiB tree): first run {res['deb_first']:.3f} s (import), second "
          f"{res['deb_second']:.3f} s (first/second x{res['deb_first_over_second']}; second against busybox's "
          f"x{res['deb_second_over_bb_second']})")
    print(json.dumps({"bench": "image", "runs": n, "results": res}))
    shutil.rmtree(work, ignore_errors=True)


def voldata_tree(root, total=100 * 1024 * 1024, files=1000, seed=42):
    """files of various sizes (many small, some medium, a few large) in nested
    directories, total bytes in all; incompressible"""
    import random
    rnd = random.Random(seed)
    dirs = [""]
    for d in range(60):
        parent = rnd.choice(dirs) if d >= 10 else ""
        dirs.append(os.path.join(parent, f"dir{d:02d}"))
        os.makedirs(os.path.join(root, dirs[-1]), exist_ok=True)
    sizes = [rnd.randint(1, 32) * 1024 for _ in range(900)] + [rnd.randint(256, 1024) * 1024 for _ in range(90)] + \
        [3 * 1024 * 1024] * (files - 990)
    scale = total / sum(sizes)
    sizes = [max(1, int(x * scale)) for x in sizes]
    sizes[-1] += total - sum(sizes)
    for k, size in enumerate(sizes):
        with open(os.path.join(root, rnd.choice(dirs), f"file{k:04d}.bin"), "wb") as f:
            f.write(os.urandom(size))
    return sum(sizes)


def bench_voldata(n=5):
    if os.geteuid() != 0:
        print("bench voldata: needs root (the volume store is a loop mount); skipped", file=sys.stderr)
        return
    work = tempfile.mkdtemp()
    home = os.path.join(work, "home")
    env = dict(os.environ, BOXKIT_HOME=home, BOXKIT_STORE_SIZE="4G")
    box, vt = os.path.join(BIN, "box"), os.path.join(BIN, "volume-tar")
    uid, gid = (subprocess.run(["id", o, "boxkit-vm"], capture_output=True, text=True).stdout.strip() for o in ("-u", "-g"))
    # the host side on the same stack as the store: an xfs image, loop-mounted
    host = os.path.join(work, "host")
    os.makedirs(host)
    subprocess.run(["truncate", "-s", "4G", os.path.join(work, "host.img")], check=True)
    subprocess.run(["mkfs.xfs", "-q", "-f", os.path.join(work, "host.img")], check=True)
    subprocess.run(["mount", "-o", "loop", os.path.join(work, "host.img"), host], check=True)

    def sh(cmd, timed=True):
        subprocess.run(["sync"])
        t0 = time.monotonic()
        p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{cmd}: exit {p.returncode}: {p.stderr[-500:]}")
        return time.monotonic() - t0

    try:
        src = os.path.join(host, "src")
        total = voldata_tree(src)
        sh(f"{box} setup")
        t = {k: [] for k in ("baseline", "box_import", "volume_tar_import", "box_export", "volume_tar_export_null")}
        for i in range(n):
            for d in ("dst", "out"):
                shutil.rmtree(os.path.join(host, d), ignore_errors=True)
                os.makedirs(os.path.join(host, d))
            t["baseline"].append(sh(f"tar -C {src} -cf - . | tar -C {host}/dst -xf -"))
            sh(f"{box} volume rm bench 2>/dev/null; true")
            t["box_import"].append(sh(f"tar -C {src} -cf - . | {box} volume import bench"))
            t["box_export"].append(sh(f"{box} volume export bench | tar -C {host}/out -xf -"))
            t["volume_tar_export_null"].append(sh(f"{vt} export --home {home} bench >/dev/null"))
            if i == 0:
                sh(f"diff -r {src} {host}/out")  # the round trip is exact
            sh(f"{box} volume rm bench; {box} volume create bench")
            t["volume_tar_import"].append(
                sh(f"tar -C {src} -cf - . | {vt} import --home {home} --uid {uid} --gid {gid} bench"))
        res = {"tree": {"bytes": total, "files": 1000, "directories": 60}, "runs": n}
        for k, v in t.items():
            res[k + "_median_s"] = round(med(v), 3)
        b = res["baseline_median_s"]
        for k in ("box_import", "volume_tar_import", "box_export"):
            res[k + "_ratio"] = round(res[k + "_median_s"] / b, 3)
        res["volume_tar_import_MiB_per_s"] = round(total / 1048576 / res["volume_tar_import_median_s"], 1)
        res["volume_tar_export_MiB_per_s"] = round(total / 1048576 / res["volume_tar_export_null_median_s"], 1)
        print(f"tree: {total / 1048576:.0f} MiB, 1000 files, 60 directories; medians of {n}")
        print(f"tar -c | tar -x (host to host):    {b:.3f} s")
        print(f"tar -c | box volume import:        {res['box_import_median_s']:.3f} s  x{res['box_import_ratio']}")
        print(f"tar -c | volume-tar import:        {res['volume_tar_import_median_s']:.3f} s  x{res['volume_tar_import_ratio']}"
              f"  ({res['volume_tar_import_MiB_per_s']} MiB/s)")
        print(f"box volume export | tar -x:        {res['box_export_median_s']:.3f} s  x{res['box_export_ratio']}")
        print(f"volume-tar export > /dev/null:     {res['volume_tar_export_null_median_s']:.3f} s"
              f"  ({res['volume_tar_export_MiB_per_s']} MiB/s)")
        print(json.dumps({"bench": "voldata", "results": res}))
    finally:
        subprocess.run([box, "setup", "--unmount"], env=env, capture_output=True)
        subprocess.run(["umount", host], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def bench_runtime(n=5):
    work = tempfile.mkdtemp(prefix="bxbench-rt.", dir="/tmp")
    ns = "bxbenchrt%d" % os.getpid()
    home = os.path.join(work, "home")
    os.makedirs(home)
    tree = os.path.join(work, "tree")
    os.makedirs(os.path.join(tree, "bin"))
    os.makedirs(os.path.join(tree, "etc"))
    shutil.copy("/bin/busybox", os.path.join(tree, "bin", "busybox"))
    for a in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split():
        if not os.path.exists(os.path.join(tree, "bin", a)):
            os.symlink("busybox", os.path.join(tree, "bin", a))
    subprocess.run(["tar", "-C", tree, "-cf", os.path.join(work, "bb.tar"), "."], check=True)
    os.makedirs(os.path.join(work, "etc-docker"))
    os.makedirs("/etc/docker", exist_ok=True)
    sock = "unix://" + os.path.join(work, "docker.sock")
    env = dict(os.environ, BOXKIT_HOME=home, BOXKIT_CACHE=os.path.join(work, "cache"), DOCKER_HOST=sock)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    script = ('mount -t cgroup2 none /sys/fs/cgroup && mount --bind "$0/etc-docker" /etc/docker && '
              'exec dockerd --data-root "$0/root" --exec-root "$0/exec" -H "unix://$0/docker.sock" '
              '--pidfile "$0/docker.pid" --add-runtime "boxkit=$1" --log-level error')
    log = open(os.path.join(work, "dockerd.log"), "w")
    d = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "-m", "--propagation", "private", "sh", "-c", script,
                          work, os.path.join(BIN, "boxkit-runtime")], env=env, stdout=log, stderr=log)
    docker = shutil.which("docker", path="/usr/bin") or "docker"
    try:
        for _ in range(300):
            if subprocess.run([docker, "info"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run([docker, "import", os.path.join(work, "bb.tar"), "bxbench"], env=env, check=True,
                       capture_output=True)

        def one(cmd):
            t0 = time.monotonic()
            p = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stdout, p.stderr, file=sys.stderr)
                sys.exit(1)
            return time.monotonic() - t0
        # a first run of each fills the caches (the image's drive); then interleaved
        one([docker, "run", "--rm", "--runtime", "boxkit", "bxbench", "true"])
        one([docker, "run", "--rm", "--runtime", "runc", "bxbench", "true"])
        rt, rc, bx = [], [], []
        for _ in range(n):
            rt.append(one([docker, "run", "--rm", "--runtime", "boxkit", "bxbench", "true"]))
            rc.append(one([docker, "run", "--rm", "--runtime", "runc", "bxbench", "true"]))
            bx.append(one([os.path.join(BIN, "box"), "run", "--cold", "--", "true"]))
    finally:
        d.terminate()
        try:
            d.wait(30)
        except subprocess.TimeoutExpired:
            d.kill()
        subprocess.run(["ip", "netns", "del", ns])
        subprocess.run(f"grep -o ' {work}/[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l",
                       shell=True)
    res = {"docker_boxkit_true_median_s": round(med(rt), 3), "docker_runc_true_median_s": round(med(rc), 3),
           "box_run_true_median_s": round(med(bx), 3)}
    res["engine_overhead_s"] = round(res["docker_boxkit_true_median_s"] - res["box_run_true_median_s"], 3)
    res["ratio_over_box_run"] = round(res["docker_boxkit_true_median_s"] / res["box_run_true_median_s"], 3)
    res["ratio_over_runc"] = round(res["docker_boxkit_true_median_s"] / res["docker_runc_true_median_s"], 3)
    print(f"docker run --rm --runtime boxkit IMAGE true: median {res['docker_boxkit_true_median_s']:.3f} s")
    print(f"docker run --rm --runtime runc IMAGE true:   median {res['docker_runc_true_median_s']:.3f} s "
          f"(boxkit x{res['ratio_over_runc']})")
    print(f"box run -- true:                              median {res['box_run_true_median_s']:.3f} s "
          f"(the engine adds {res['engine_overhead_s']:.3f} s, x{res['ratio_over_box_run']})")
    print(json.dumps({"bench": "runtime", "results": res}))
    shutil.rmtree(work, ignore_errors=True)


def runsc_bundle(work):
    """A busybox bundle for gVisor doing `true`."""
    b = os.path.join(work, "runsc-bundle")
    os.makedirs(os.path.join(b, "rootfs", "bin"))
    shutil.copy("/bin/busybox", os.path.join(b, "rootfs", "bin", "busybox"))
    for a in ("true", "sh"):
        os.symlink("busybox", os.path.join(b, "rootfs", "bin", a))
    subprocess.run(["runsc", "spec", "--", "/bin/true"], cwd=b, check=True)
    return b


def bench_warm(n=10):
    work = tempfile.mkdtemp(prefix="bxbench-warm.", dir="/tmp")
    kernel = os.path.join(TOP, "build", "kernels", "lean", "vmlinux")
    rd = initrd(work, "echo BOXKIT-BENCH-INIT\n/bin/busybox reboot -f\n")
    box = os.path.join(BIN, "box")
    env = dict(os.environ, BOXKIT_HOME=os.path.join(work, "home"))
    bundle = runsc_bundle(work)

    def timed(cmd, **kw):
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, **kw)
        dt = time.monotonic() - t0
        if p.returncode != 0:
            print(" ".join(cmd), p.stderr, file=sys.stderr)
            sys.exit(1)
        return dt, p

    timed([box, "run", "--", "true"], env=env)  # the first run saves the VM
    wdir = os.path.join(env["BOXKIT_HOME"], "warm")
    state = os.path.join(wdir, os.listdir(wdir)[0], "state")
    ino = os.stat(state).st_ino
    floor, cold, warm, gvisor, alive = [], [], [], [], []
    for i in range(n):
        floor.append(qemu_boot(kernel, rd, until_exit=True, append=APPEND_TRIMMED))
        cold.append(timed([box, "run", "--cold", "--", "true"], env=env)[0])
        # timed as a user runs it (no --verbose); the copy's timeline from a verbose one
        warm.append(timed([box, "run", "--", "true"], env=env)[0])
        dt, p = timed([box, "run", "--verbose", "--", "true"], env=env)
        if "warm start: restoring" not in p.stderr:
            print(p.stderr, file=sys.stderr)
            sys.exit("the warm run did not restore")
        m = re.search(r"the copy is alive \(([\d.]+) s\)", p.stderr)
        if m:
            alive.append(float(m.group(1)))
        gvisor.append(timed(["runsc", "--root", os.path.join(work, "runsc"), "--platform=ptrace", "--network=none",
                             "run", "--bundle", bundle, "bench%d" % i])[0])
    if os.stat(state).st_ino != ino or len(os.listdir(wdir)) != 1:
        sys.exit("the saved VM was made again: a warm run did not restore")
    res = {"floor_s": round(med(floor), 3), "cold_s": round(med(cold), 3), "warm_s": round(med(warm), 3),
           "gvisor_s": round(med(gvisor), 3), "warm_copy_alive_s": round(med(alive), 3) if alive else None}
    res["cold_over_warm"] = round(res["cold_s"] / res["warm_s"], 2)
    res["warm_over_gvisor"] = round(res["warm_s"] / res["gvisor_s"], 2)
    res["cold_over_floor"] = round(res["cold_s"] / res["floor_s"], 2)
    print(f"box run -- true, medians of {n}, interleaved: warm {res['warm_s']:.3f} s, cold {res['cold_s']:.3f} s "
          f"(x{res['cold_over_warm']} of warm), gVisor {res['gvisor_s']:.3f} s (warm is x{res['warm_over_gvisor']} of "
          f"it), bare-QEMU floor {res['floor_s']:.3f} s (cold is x{res['cold_over_floor']} of it); a restored copy "
          f"is alive {res['warm_copy_alive_s']} s after vm-launch starts")
    print(f"targets: warm <= 0.35 s: {res['warm_s'] <= 0.35}; >= 4x faster than cold: {res['cold_over_warm'] >= 4}; "
          f"<= 1.5x gVisor: {res['warm_over_gvisor'] <= 1.5}")

    # the saved state's size and the restore against memory
    mem = {}
    for m_mib in (128, 256, 512):
        timed([box, "run", "-m", str(m_mib), "--", "true"], env=env)
        sizes = [json.load(open(os.path.join(d, "meta.json"))) for d in
                 (os.path.join(env["BOXKIT_HOME"], "warm", k) for k in os.listdir(os.path.join(env["BOXKIT_HOME"], "warm")))]
        size = next(x["size"] for x in sizes if x["memory_mib"] == m_mib)
        t, a = [], []
        for _ in range(5):
            dt, p = timed([box, "run", "--verbose", "-m", str(m_mib), "--", "true"], env=env)
            t.append(dt)
            mm = re.search(r"the copy is alive \(([\d.]+) s\)", p.stderr)
            if mm:
                a.append(float(mm.group(1)))
        mem[m_mib] = {"state_mib": round(size / 1048576, 1), "warm_run_s": round(med(t), 3),
                      "copy_alive_s": round(med(a), 3) if a else None}
        print(f"memory {m_mib} MiB: saved state {mem[m_mib]['state_mib']} MiB, warm run {mem[m_mib]['warm_run_s']:.3f} s, "
              f"copy alive at {mem[m_mib]['copy_alive_s']} s")
    res["by_memory"] = mem

    # QEMU's memory in N idle sandboxes
    rss = {}
    for count in (1, 4, 8):
        names = []
        for j in range(count):
            nm = "bxidle%d" % j
            timed([box, "create", "--name", nm], env=env)
            names.append(nm)
        time.sleep(1)
        vals = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                envb = open(f"/proc/{pid}/environ", "rb").read()
                if b"BOXKIT_RUN_DIR=" + env["BOXKIT_HOME"].encode() not in envb:
                    continue
                if open(f"/proc/{pid}/comm").read().strip() != "qemu-system-x86":
                    continue
                vals.append(next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")))
            except (OSError, StopIteration):
                pass
        for nm in names:
            subprocess.run([box, "rm", "-f", nm], env=env, capture_output=True)
        rss[count] = {"qemu_rss_mib_each_median": round(med(vals) / 1024, 1) if vals else None, "qemus": len(vals)}
        print(f"{count} idle sandboxes: QEMU RSS {rss[count]['qemu_rss_mib_each_median']} MiB each ({len(vals)} QEMUs)")
    res["idle_sandboxes"] = rss
    print(json.dumps({"bench": "warm", "results": res}))
    subprocess.run([box, "gc"], env=env, capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


def bench_boot_options(n=9):
    """Each kernel command line option alone on top of the old line, and the
    trimmed line, against the old line: the floor, interleaved."""
    work = tempfile.mkdtemp()
    kernel = os.path.join(TOP, "build", "kernels", "lean", "vmlinux")
    rd = initrd(work, "echo BOXKIT-BENCH-INIT\n/bin/busybox reboot -f\n")
    variants = {"old": APPEND_OLD, "trimmed": APPEND_TRIMMED}
    for opt in ("noapictimer", "pty.legacy_count=0", "no_timer_check", "tsc=reliable", "8250.nr_uarts=1",
                "rcupdate.rcu_expedited=1", "random.trust_cpu=on"):
        variants[opt] = APPEND_OLD + " " + opt
    times = {k: [] for k in variants}
    for _ in range(n):
        for k, a in variants.items():
            times[k].append(qemu_boot(kernel, rd, until_exit=True, append=a))
    base = med(times["old"])
    res = {k: {"median_s": round(med(v), 3), "diff_s": round(med(v) - base, 3)} for k, v in times.items()}
    for k, v in res.items():
        print(f"{k:28s} {v['median_s']:.3f} s  ({v['diff_s']:+.3f} s against the old line)")
    print(json.dumps({"bench": "boot-options", "results": res}))
    shutil.rmtree(work, ignore_errors=True)


def bench_compare(other, n=10):
    work = tempfile.mkdtemp()
    trees = {"this": TOP, "other": os.path.abspath(other)}
    times = {k: [] for k in trees}
    for i in range(n):
        for k, top in trees.items():
            env = dict(os.environ, BOXKIT_HOME=os.path.join(work, "home-" + k), BOXKIT_BIN=os.path.join(top, "bin"))
            t0 = time.monotonic()
            # cold in both (a tree from before warm starts knows no --cold)
            cold = ["--cold"] if "--cold)" in open(os.path.join(top, "tools", "box", "box")).read() else []
            p = subprocess.run([os.path.join(top, "bin", "box"), "run"] + cold + ["--", "true"], env=env,
                               capture_output=True, text=True)
            times[k].append(time.monotonic() - t0)
            if p.returncode != 0:
                print(k, p.stderr, file=sys.stderr)
                sys.exit(1)
    res = {k: round(med(v), 3) for k, v in times.items()}
    res["ratio_this_over_other"] = round(res["this"] / res["other"], 3)
    print(f"box run -- true, median of {n}: this tree {res['this']:.3f} s, {trees['other']} {res['other']:.3f} s, "
          f"ratio x{res['ratio_this_over_other']}")
    print(json.dumps({"bench": "compare", "other": trees["other"], "results": res}))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "run"
    if what == "compare":
        bench_compare(sys.argv[2])
    else:
        {"boot": bench_boot, "run": bench_run, "volumes": bench_volumes, "exec": bench_exec,
         "net": bench_net, "image": bench_image, "voldata": bench_voldata, "runtime": bench_runtime,
         "warm": bench_warm, "boot-options": bench_boot_options}[what]()
