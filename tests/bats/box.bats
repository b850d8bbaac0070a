#!/usr/bin/env bats
# End to end: box run boots a real microVM (TCG here), runs the command under
# crun, relays stdio and the exit status, and leaves nothing behind.
load helpers

setup_file() {
	[ -f "$TOP/build/kernels/lean/bzImage" ] || return 0
	[ -f "$TOP/build/images/system.ext4" ] || return 0
}

teardown() {
	home_teardown
}

setup() {
	need_root
	[ -f "$TOP/build/kernels/lean/bzImage" ] || skip "lean kernel not built: run 'make kernel-lean'"
	[ -f "$TOP/build/images/system.ext4" ] || skip "guest images not built: run 'make image'"
	export BOXKIT_HOME=$BATS_TEST_TMPDIR/home
}

# nothing of a run is left: no QEMU of ours, no mount under the home, no run
# or chroot directory
assert_clean() {
	home_clean
}

@test "box run -- echo hello prints exactly hello" {
	run -0 --separate-stderr timeout 120 box run -- echo hello
	assert_eq "$output" hello
	assert_eq "$stderr" ""
	assert_clean
}

@test "exit status, stderr on stderr, stdin forwarded" {
	run -7 --separate-stderr timeout 120 box run -- sh -c 'echo out; echo err >&2; exit 7'
	assert_eq "$output" out
	assert_eq "$stderr" err
	run -0 --separate-stderr timeout 120 bash -c "echo hi | box run -- cat"
	assert_eq "$output" hi
	run -0 --separate-stderr timeout 120 bash -c "seq 1 20000 | box run -- wc -l"
	assert_eq "$output" 20000
}

@test "signals and commands that cannot run: 143, 127, 126" {
	run -143 --separate-stderr timeout 120 box run -- sh -c 'kill -TERM $$'
	run -127 --separate-stderr timeout 120 box run -- no-such-command
	assert_contains "$stderr" "no-such-command: command not found"
	run -126 --separate-stderr timeout 120 box run -- /etc/passwd
	assert_clean
}

@test "capabilities reach the workload: default, ALL" {
	run -0 --separate-stderr timeout 120 box run -- grep CapEff /proc/self/status
	assert_contains "$output" 00000000a80425fb
	run -0 --separate-stderr timeout 120 box run --cap-add ALL -- grep CapEff /proc/self/status
	assert_contains "$output" 000001ffffffffff
}

@test "--privileged can write ip_forward, the default cannot" {
	run -0 --separate-stderr timeout 120 box run --privileged -- sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward && cat /proc/sys/net/ipv4/ip_forward'
	assert_eq "$output" 1
	run -1 --separate-stderr timeout 120 box run -- sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
	assert_contains "$stderr" "Read-only file system"
}

@test "the rootfs image is never changed: writes go to a tmpfs overlay" {
	run -0 --separate-stderr timeout 120 box run -- sh -c 'echo x >/etc/marker && cat /etc/marker'
	assert_eq "$output" x
	run -1 --separate-stderr timeout 120 box run -- cat /etc/marker
}

@test "while a run is in progress QEMU is jailed: non-root, CapEff 0, Seccomp 2, NoNewPrivs 1, pivot_root into the jail in namespaces of its own" {
	timeout 120 box run -- sleep 8 &
	bp=$!
	q=$(run_pid qemu)
	[ -n "$q" ]
	st=$(cat "/proc/$q/status")
	uid=$(awk '/^Uid:/ {print $2}' <<<"$st")
	assert_eq "$uid" "$(id -u boxkit-vm)" uid
	assert_eq "$(awk '/^CapEff:/ {print $2}' <<<"$st")" 0000000000000000 CapEff
	assert_eq "$(awk '/^CapBnd:/ {print $2}' <<<"$st")" 0000000000000000 CapBnd
	assert_eq "$(awk '/^Seccomp:/ {print $2}' <<<"$st")" 2 Seccomp
	assert_eq "$(awk '/^NoNewPrivs:/ {print $2}' <<<"$st")" 1 NoNewPrivs
	# pivot_root: its root is the jail, and nothing of the host is above it
	assert_eq "$(readlink "/proc/$q/root")" / "root"
	for ns in mnt pid net ipc uts; do
		[ "$(readlink "/proc/$q/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ] || { echo "shares the $ns namespace" >&2; false; }
	done
	ls "/proc/$q/root/" >"$BATS_TEST_TMPDIR/root.ls"
	grep -qx qemu-system-x86_64 "$BATS_TEST_TMPDIR/root.ls"
	grep -qx kernel "$BATS_TEST_TMPDIR/root.ls"
	! grep -qx etc "$BATS_TEST_TMPDIR/root.ls" || false
	! grep -qx home "$BATS_TEST_TMPDIR/root.ls" || false
	# the libraries are read-only binds in its own namespace only
	grep -q " /usr/lib ro,nosuid,nodev" "/proc/$q/mountinfo"
	! grep -q " $BOXKIT_HOME" /proc/self/mountinfo || false
	# a fixed environment, not the caller's
	assert_eq "$(tr '\0' '\n' <"/proc/$q/environ" | cut -d= -f1 | sort | tr '\n' ' ')" "BOXKIT_RUN_DIR LC_ALL PATH " "environment"
	# descriptors: the console (1, 2), /dev/null (0), the control socket (3)
	assert_eq "$(ls "/proc/$q/fd" | sort -n | head -4 | tr '\n' ' ')" "0 1 2 3 " "first descriptors"
	assert_eq "$(cat /proc/$q/limits | awk '/Max open files/ {print $4}')" 1024 "fd limit"
	wait "$bp"
	assert_clean
}

@test "SIGINT to box run mid-run leaves nothing behind" {
	# a background job of a script ignores SIGINT: give box the default back
	env --default-signal=INT box run -- sleep 60 &
	bp=$!
	run_pid qemu >/dev/null
	sleep 1
	kill -INT "$bp"
	rc=0
	wait "$bp" || rc=$?
	assert_eq "$rc" 130
	assert_clean
}

@test "a signal reaches the workload (it handles it and its status is the answer), also while it never reads the stdin that keeps coming" {
	# the workload traps TERM and exits 5; stdin never ends and is never read
	yes | env --default-signal=INT box run -- sh -c 'trap "echo got-term; exit 5" TERM; echo ready; while :; do sleep 0.1; done' >"$BATS_TEST_TMPDIR/out" 2>&1 &
	bp=$!
	for _ in $(seq 300); do grep -q ready "$BATS_TEST_TMPDIR/out" && break; sleep 0.1; done
	sleep 1
	SECONDS=0
	kill -TERM "$bp"
	rc=0
	wait "$bp" || rc=$?
	assert_eq "$rc" 5 "the workload's own status"
	grep -q got-term "$BATS_TEST_TMPDIR/out"
	[ "$SECONDS" -le 3 ]
	assert_clean
}

@test "--timeout 2 on sleep 60 ends with 125 and nothing left" {
	SECONDS=0
	run -125 --separate-stderr timeout 120 box run --timeout 2 -- sleep 60
	assert_contains "$stderr" "timed out after 2 seconds"
	[ "$SECONDS" -lt 30 ]
	assert_clean
}

@test "a kernel that cannot boot gives 125, the console tail, and nothing left" {
	k=$BATS_TEST_TMPDIR/kernels
	mkdir -p "$k/lean"
	# a truncated kernel: QEMU refuses it (random bytes were not deterministic:
	# now and then QEMU ran them and spun)
	head -c 2000000 "$TOP/build/kernels/lean/vmlinux" >"$k/lean/vmlinux"
	BOXKIT_KERNEL_DIR=$k run -125 --separate-stderr timeout 120 box run -- true
	assert_contains "$stderr" "console log tail"
	assert_contains "$stderr" "Error while loading elf kernel"
	assert_clean
}

@test "a kernel panic (no init on the system image) gives 125 with the panic in the console tail" {
	imgs=$BATS_TEST_TMPDIR/images
	mkdir -p "$imgs" "$BATS_TEST_TMPDIR/empty"
	mkfs.ext4 -q -d "$BATS_TEST_TMPDIR/empty" "$imgs/system.ext4" 8M
	ln -s "$(readlink -f "$TOP/build/images/rootfs.ext4")" "$imgs/rootfs.ext4"
	BOXKIT_IMAGE_DIR=$imgs run -125 --separate-stderr timeout 120 box run -- true
	assert_contains "$stderr" "kernel panic or init failure"
	assert_contains "$stderr" "Kernel panic"
	assert_clean
}

@test "a launcher killed with SIGKILL: the next box gc removes the leftovers" {
	timeout 120 box run -- sleep 60 &
	bp=$!
	q=$(run_pid qemu)
	# kill the front end, then the launcher, hard (the run's owners, from its record)
	id=$(run_ids)
	for pid in $(run-record show --home "$BOXKIT_HOME" --id "$id" | jq -r '.owners[].pid'); do kill -9 "$pid"; done
	wait "$bp" || true
	[ -n "$(ls -A "$BOXKIT_HOME/jail")" ]
	run -0 box gc
	assert_clean
}

@test "twenty runs in a row leave nothing behind" {
	for k in $(seq 20); do
		run -0 --separate-stderr timeout 120 box run -- echo "run $k"
		assert_eq "$output" "run $k"
	done
	assert_clean
}

@test "vm-launch refuses bad input with 125 before starting anything" {
	run -125 --separate-stderr vm-launch --home "$BOXKIT_HOME" --config /nonexistent
	assert_contains "$stderr" "cannot read --config '/nonexistent'"
	echo '[1,2' >"$BATS_TEST_TMPDIR/bad.json"
	run -125 --separate-stderr vm-launch --home "$BOXKIT_HOME" --config "$BATS_TEST_TMPDIR/bad.json"
	assert_contains "$stderr" "is not a JSON object"
	run -125 --separate-stderr vm-launch --kernel nope --config "$BATS_TEST_TMPDIR/bad.json"
	assert_contains "$stderr" "kernel 'nope' not found"
	run -125 --separate-stderr vm-launch --accel xen --config x
	run -0 vm-launch --probe-accel --accel tcg
	assert_eq "$(jget .accel "$output")" tcg
}

@test "box doctor reports each prerequisite and exits 0 when box run can work" {
	run -0 box doctor
	assert_contains "$output" "OK       qemu"
	assert_contains "$output" "OK       kernel lean"
	assert_contains "$output" "accelerator"
	assert_contains "$output" "OK       image"
}

