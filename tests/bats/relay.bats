#!/usr/bin/env bats
# vm-launch's relay against a stand-in VMM (tests/helpers/fakevmm.c) that
# misbehaves: never says hello, stops reading the channel, floods the output
# or the console. Whatever the peer does, --timeout, SIGINT, SIGTERM and
# SIGHUP take effect within a second, memory stays bounded, and the caller's
# descriptors keep their flags.
load helpers

setup() {
	need_root
	export BOXKIT_HOME=$BATS_TEST_TMPDIR/home
	F=$BATS_TEST_TMPDIR/fake
	mkdir -p "$F"
	for m in nohello stopread flood overrun console echo; do ln -sf "$TEST_HELPERS/fakevmm" "$F/vmm-$m"; done
	oci-spec -- true >"$BATS_TEST_TMPDIR/c.json"
	: >"$BATS_TEST_TMPDIR/img"
	L=$BATS_TEST_TMPDIR/launch
	cat >"$L" <<EOS
#!/bin/bash
# launch MODE [ARGS...]: vm-launch with the fake VMM (no jail)
m=\$1
shift
exec "$BIN_DIR/vm-launch" --home "$BOXKIT_HOME" --accel tcg --qemu "$F/vmm-\$m" --kernel "$BATS_TEST_TMPDIR/img" \\
	--system "$BATS_TEST_TMPDIR/img" --rootfs "$BATS_TEST_TMPDIR/img" --config "$BATS_TEST_TMPDIR/c.json" "\$@"
EOS
	chmod +x "$L"
}

teardown() {
	[ -n "${vp:-}" ] && kill -9 "$vp" 2>/dev/null
	run-record gc --home "$BOXKIT_HOME" 2>/dev/null || true
}

launch() { "$L" "$@"; }

# stops_within MS SIGNAL: send SIGNAL to $vp; it must be gone within MS
stops_within() {
	local t0 t1
	t0=$(date +%s%N)
	kill "-$2" "$vp"
	rc=0
	wait "$vp" || rc=$?
	t1=$(date +%s%N)
	vp=
	echo "stopped by $2 in $(((t1 - t0) / 1000000)) ms, exit $rc" >&3
	[ $(((t1 - t0) / 1000000)) -lt "$1" ]
}

vm_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

@test "a VMM that never says hello: --timeout ends it (125), and so does each signal within a second" {
	SECONDS=0
	run -125 --separate-stderr timeout 10 "$L" nohello --timeout 1
	assert_contains "$stderr" "timed out after 1 seconds"
	[ "$SECONDS" -le 3 ]
	for sig in INT TERM HUP; do
		"$L" nohello </dev/null >/dev/null 2>&1 &
		vp=$!
		sleep 0.5
		stops_within 1000 "$sig"
		case $sig in INT) assert_eq "$rc" 130 ;; TERM) assert_eq "$rc" 143 ;; HUP) assert_eq "$rc" 129 ;; esac
	done
}

@test "a VMM that stops reading the channel while stdin keeps coming: --timeout and SIGTERM still work" {
	SECONDS=0
	run -125 --separate-stderr timeout 10 "$L" stopread --timeout 2 </dev/zero
	assert_contains "$stderr" "timed out after 2 seconds"
	[ "$SECONDS" -le 4 ]
	"$L" stopread </dev/zero >/dev/null 2>&1 &
	vp=$!
	sleep 1.5
	stops_within 1000 TERM
	assert_eq "$rc" 143
}

@test "a flood of output while the caller does not read it: memory stays bounded, SIGTERM works" {
	mkfifo "$BATS_TEST_TMPDIR/out"
	# a reader that holds the pipe open and never reads
	sleep 60 <"$BATS_TEST_TMPDIR/out" &
	holder=$!
	"$L" flood </dev/null >"$BATS_TEST_TMPDIR/out" 2>/dev/null &
	vp=$!
	sleep 1
	r1=$(vm_rss_kb "$vp")
	sleep 2
	r2=$(vm_rss_kb "$vp")
	echo "vm-launch RSS: $r1 kB, then $r2 kB" >&3
	[ "$r2" -lt 32768 ]
	[ "$r2" -lt $((r1 + 4096)) ]
	stops_within 1000 TERM
	assert_eq "$rc" 143
	kill "$holder"
}

@test "a guest that sends output beyond the window the host granted is stopped: 125, memory bounded" {
	mkfifo "$BATS_TEST_TMPDIR/out"
	# a reader that holds the pipe open and never reads: without the window
	# check, everything the guest sends would pile up in vm-launch
	sleep 60 <"$BATS_TEST_TMPDIR/out" &
	holder=$!
	run -125 --separate-stderr timeout 10 "$L" overrun </dev/null >"$BATS_TEST_TMPDIR/out"
	kill "$holder"
	assert_contains "$stderr" "bad frame from the guest"
	assert_eq "$(own_procs)" ""
}

@test "a guest writing its console without end: the log is capped (two files of 512 KiB), memory bounded" {
	"$L" console </dev/null >/dev/null 2>&1 &
	vp=$!
	# once rotated a few times: the kept bytes stay within two files
	for _ in $(seq 100); do [ -n "$(ls "$BOXKIT_HOME"/run/*/console.log.1 2>/dev/null)" ] && break; sleep 0.1; done
	sleep 1
	d=$(ls -d "$BOXKIT_HOME"/run/*/ | head -1)
	size=$(($(stat -c %s "$d/console.log") + $(stat -c %s "$d/console.log.1")))
	echo "console: $size bytes kept, vm-launch RSS $(vm_rss_kb "$vp") kB" >&3
	[ "$size" -le $((1024 * 1024)) ]
	# it did rotate: the previous file is (nearly) full
	[ "$(stat -c %s "$d/console.log.1")" -ge $((400 * 1024)) ]
	[ "$(vm_rss_kb "$vp")" -lt 32768 ]
	stops_within 1000 TERM
}

@test "the caller's stdin is never left non-blocking, and a read after the run works" {
	run -0 bash -c 'seq 3 | { "$1" echo >/dev/null 2>&1 || exit 9; grep "^flags:" /proc/self/fdinfo/0; }' _ "$L"
	flags=$(awk '{print $2}' <<<"$output")
	echo "stdin flags after the run: $flags" >&3
	# O_NONBLOCK is 04000
	assert_eq "$((0$flags & 04000))" 0 "O_NONBLOCK on the caller's stdin"
	# a script that reads after a run that did not read its stdin gets its line
	run -0 bash -c 'printf "a\nb\n" | { "$1" echo </dev/null >/dev/null 2>&1; read -r x; echo "read: $x"; }' _ "$L"
	assert_eq "$output" "read: a"
}

@test "a well-behaved peer: stdin is echoed whole through the window, exit 0, nothing left" {
	head -c 3000000 /dev/urandom >"$BATS_TEST_TMPDIR/in"
	launch echo <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/got" 2>"$BATS_TEST_TMPDIR/err"
	cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/got"
	assert_eq "$(ls -A "$BOXKIT_HOME/run")" "" "run dirs"
	assert_eq "$(own_procs)" ""
}
