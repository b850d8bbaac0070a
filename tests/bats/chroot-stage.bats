#!/usr/bin/env bats
# chroot-stage: the jailer-style chroot and a teardown that cannot hurt the host.
load helpers

setup() {
	need_root
	B=$BATS_TEST_TMPDIR/base
	U=$(id -u boxkit-vm 2>/dev/null || echo 65534)
	G=$(id -g boxkit-vm 2>/dev/null || echo 65534)
	Q=$(command -v qemu-system-x86_64)
	K=$BATS_TEST_TMPDIR/vmlinux
	head -c 100000 /dev/urandom >"$K"
	D=$BATS_TEST_TMPDIR/drive.img
	truncate -s 1M "$D"
}
teardown() {
	for id in $(chroot-stage list --base "$B" 2>/dev/null | jq -r .id); do chroot-stage destroy --base "$B" --id "$id"; done
	loop_cleanup
	[ -z "${LOOPDEV:-}" ] || losetup -d "$LOOPDEV" 2>/dev/null || true
}

# nothing of the base is mounted and (optionally) nothing is left in it
assert_no_mounts() { ! grep -q " $B" /proc/self/mountinfo || { grep " $B" /proc/self/mountinfo >&2; false; }; }

create() { chroot-stage create --base "$B" --id "${ID-vm1}" --vmm "$Q" --uid "$U" --gid "$G" "$@"; }

@test "layout, ownership, modes and hard links" {
	run -0 --separate-stderr create --kernel "$K" --initrd "$D" --drive "$D" --device kvm --device urandom --device null --device net/tun --ro-bind /usr/share/qemu
	R=$B/qemu-system-x86_64/vm1/root
	assert_eq "$(jget .root "$output")" "$R"
	assert_eq "$(jget .vmm "$output")" /qemu-system-x86_64
	assert_eq "$(jget .kernel "$output")" /kernel
	assert_eq "$(jq -c .drives <<<"$output")" '["/drive0"]'
	assert_eq "$(jget .socket_dir "$output")" /run
	assert_eq "$(stat -c '%f %u:%g' "$R")" "41c0 $U:$G"                 # dir 0700 owned by the VM's uid
	assert_eq "$(stat -c '%f %u' "$B/qemu-system-x86_64/vm1")" "41c0 0"  # 0700 root
	assert_eq "$(stat -c '%f %u:%g' "$R/run")" "41ed 0:0"
	assert_eq "$(stat -c %i "$R/kernel")" "$(stat -c %i "$K")" "kernel inode"
	assert_eq "$(stat -c %i "$R/drive0")" "$(stat -c %i "$D")" "drive inode"
	assert_eq "$(stat -c '%f %u:%g' "$R/qemu-system-x86_64")" "81ed 0:0" # 0755 copy
	[ "$(stat -c %i "$R/qemu-system-x86_64")" != "$(stat -c %i "$Q")" ]
	for d in "kvm 10 232" "urandom 1 9" "null 1 3" "net/tun 10 200"; do
		set -- $d
		# char device (0x2000) mode 0600, owner uid:gid, major:minor in hex
		assert_eq "$(stat -c '%f %u:%g %t:%T' "$R/dev/$1")" "2180 $U:$G $(printf '%x:%x' "$2" "$3")" "/dev/$1"
	done
	# the binds are listed for the VMM's own mount namespace; the host's holds none
	jq -e '.binds | index({"source":"/usr/lib","target":"/usr/lib"})' <<<"$output" >/dev/null
	jq -e '.binds | index({"source":"/usr/share/qemu","target":"/usr/share/qemu"})' <<<"$output" >/dev/null
	[ -d "$R/usr/lib" ] && [ -d "$R/usr/share/qemu" ] || false
	assert_no_mounts
}

@test "the staged QEMU starts inside the chroot as the unprivileged uid, with the listed binds in a namespace of its own" {
	create --ro-bind /usr/share/qemu >"$BATS_TEST_TMPDIR/j.json"
	R=$B/qemu-system-x86_64/vm1/root
	binds=$(jq -r '.binds[] | "mount --bind -o ro \(.source) '"$R"'\(.target)"' "$BATS_TEST_TMPDIR/j.json")
	run -0 unshare --mount --propagation private sh -c "$binds
		chroot --userspec=$U:$G $R /qemu-system-x86_64 --version"
	assert_contains "$output" "QEMU emulator version"
	assert_no_mounts
}

@test "a source on another filesystem is copied (EXDEV)" {
	make_tmpfs 16 "$BATS_TEST_TMPDIR/t"
	cp "$K" "$BATS_TEST_TMPDIR/t/k"
	create --kernel "$BATS_TEST_TMPDIR/t/k" >/dev/null
	R=$B/qemu-system-x86_64/vm1/root
	cmp "$R/kernel" "$BATS_TEST_TMPDIR/t/k"
	[ "$(stat -c %i "$R/kernel")" != "$(stat -c %i "$BATS_TEST_TMPDIR/t/k")" ]
}

@test "a block-device drive is recreated with mknod, same major:minor, owned by the uid" {
	LOOPDEV=$(losetup -f --show "$D")
	create --drive "$LOOPDEV" >/dev/null
	R=$B/qemu-system-x86_64/vm1/root
	assert_eq "$(stat -c '%F %t:%T %u %a' "$R/drive0")" "block special file $(stat -c '%t:%T' "$LOOPDEV") $U 600"
}

@test "bad ids, symlinks, unknown devices and root uids are refused, nothing created" {
	for id in ../x "" "$(printf 'a%.0s' $(seq 65))" a/b 'a b'; do
		ID=$id run -1 --separate-stderr create
		assert_contains "$stderr" "invalid id"
	done
	ln -s "$K" "$BATS_TEST_TMPDIR/klink"
	run -1 --separate-stderr create --kernel "$BATS_TEST_TMPDIR/klink"
	assert_contains "$stderr" "is a symlink"
	run -1 --separate-stderr create --device fb0
	assert_contains "$stderr" "unknown device 'fb0'"
	run -1 --separate-stderr chroot-stage create --base "$B" --id x --vmm "$Q" --uid 0 --gid 0
	run -2 --separate-stderr chroot-stage create --base "$B" --id x
	[ ! -e "$B" ]
}

@test "destroy leaves no mount and no directory; twice is fine" {
	create --kernel "$K" --ro-bind /usr/share/qemu >/dev/null
	run -0 chroot-stage list --base "$B"
	assert_eq "$(jget .running "$output")" false
	run -0 chroot-stage destroy --base "$B" --id vm1
	assert_no_mounts
	assert_eq "$(ls -A "$B")" ""
	run -0 chroot-stage destroy --base "$B" --id vm1
	[ -f "$K" ]
}

@test "a failure injected at each step of create leaves nothing behind" {
	for step in 1 2 3 4 5 6 7; do
		BOXKIT_FAIL_AT=$step run -3 --separate-stderr create --kernel "$K" --drive "$D" --device null --ro-bind /usr/share/qemu
		assert_contains "$stderr" "injected failure at step $step"
		assert_no_mounts
		[ ! -e "$B/qemu-system-x86_64/vm1" ]
	done
	[ -f "$K" ] && [ -f "$D" ] || false
}

@test "destroy after kill -9 of a create half way through cleans up" {
	BOXKIT_STALL_AT=6 create --kernel "$K" --ro-bind /usr/share/qemu >/dev/null 2>"$BATS_TEST_TMPDIR/err" &
	pid=$!
	for _ in $(seq 50); do grep -q stalled "$BATS_TEST_TMPDIR/err" && break; sleep 0.1; done
	[ -x "$B/qemu-system-x86_64/vm1/root/qemu-system-x86_64" ] # it got as far as the VMM copy
	kill -9 "$pid"
	wait "$pid" || true
	run -0 chroot-stage destroy --base "$B" --id vm1
	assert_no_mounts
	assert_eq "$(ls -A "$B")" ""
}

@test "planted symlinks, a swapped directory and a foreign bind mount never reach the host" {
	create --kernel "$K" --ro-bind /usr/share/qemu >/dev/null
	R=$B/qemu-system-x86_64/vm1/root
	V=$BATS_TEST_TMPDIR/victim
	mkdir -p "$V/sub" && echo keep >"$V/file" && echo keep >"$V/sub/deep"
	# what the VM's uid can do inside its root: a symlink to a host dir, a
	# directory swapped for a symlink
	ln -s "$V" "$R/run/escape"
	ln -s /etc "$R/etc-link"
	rmdir "$R/run" 2>/dev/null || { rm -f "$R/run/escape"; rmdir "$R/run"; }
	ln -s "$V" "$R/run"
	# a bind mount of a host directory inside the root
	mkdir -p "$R/foreign"
	mount --bind "$V" "$R/foreign"
	run -0 chroot-stage destroy --base "$B" --id vm1
	assert_no_mounts
	assert_eq "$(cat "$V/file") $(cat "$V/sub/deep")" "keep keep"
	[ -f /etc/passwd ]
	assert_eq "$(ls -A "$B")" ""
}

@test "destroy refuses to cross a mount it cannot remove" {
	create >/dev/null
	R=$B/qemu-system-x86_64/vm1/root
	V=$BATS_TEST_TMPDIR/victim
	mkdir -p "$V" && echo keep >"$V/file"
	# a mount beside the root, inside the jail dir, that destroy did not make
	mkdir "$B/qemu-system-x86_64/vm1/other"
	mount --bind "$V" "$B/qemu-system-x86_64/vm1/other"
	echo "$B/qemu-system-x86_64/vm1/other" >>"$BATS_TEST_TMPDIR/.mounts"
	run -1 --separate-stderr chroot-stage destroy --base "$B" --id vm1
	assert_contains "$stderr" "a mount point is in it; leaving it"
	assert_eq "$(cat "$V/file")" keep
}

@test "destroy removes a tree 3000 directories deep that the VM's uid built (bounded memory, no crash)" {
	create >/dev/null
	R=$B/qemu-system-x86_64/vm1/root
	# built with relative mkdirs, as the VM's uid would: the path is far longer than PATH_MAX
	python3 -c 'import os,sys
os.chdir(sys.argv[1])
for k in range(3000):
    os.mkdir("d"); os.chdir("d")
open("f", "w").write("leaf")' "$R"
	# 256 MiB of address space is plenty for a bounded destroy (the sanitizers
	# reserve terabytes of shadow: no limit under them)
	lim="ulimit -v 262144;"
	[ -z "${ASAN_OPTIONS:-}" ] || lim=
	run -0 --separate-stderr bash -c "$lim chroot-stage destroy --base '$B' --id vm1"
	assert_eq "$(ls -A "$B")" ""
}

@test "destroy never follows a symlink at the <vmm name> component" {
	V=$BATS_TEST_TMPDIR/victim
	mkdir -p "$V/vm1/root" "$B" && echo keep >"$V/vm1/root/file"
	ln -s "$V" "$B/qemu-system-x86_64"
	run -0 --separate-stderr chroot-stage destroy --base "$B" --id vm1
	assert_contains "$stderr" "is a symlink; not following it"
	assert_eq "$(cat "$V/vm1/root/file")" keep
}

@test "sockets in a chroot under a 150-character base path bind and connect" {
	long=$BATS_TEST_TMPDIR/$(printf 'b%.0s' $(seq 150))
	[ "${#long}" -gt 150 ]
	chroot-stage create --base "$long" --id vm1 --vmm "$Q" --uid "$U" --gid "$G" >"$BATS_TEST_TMPDIR/j.json"
	dir=$(jq -r .root "$BATS_TEST_TMPDIR/j.json")/run
	# the plain path does not fit in sun_path
	run ! python3 -c "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$dir/vmm.sock"
	assert_contains "$output" "too long"
	# lib/common's helper binds and connects through /proc/self/fd/N/NAME
	run -0 "$TEST_HELPERS/sockpath" "$dir" vmm.sock
	assert_eq "$output" "$dir/vmm.sock"
	[ -S "$dir/vmm.sock" ]
	run -0 chroot-stage destroy --base "$long" --id vm1
	assert_eq "$(ls -A "$long")" ""
}
