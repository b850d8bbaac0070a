#!/usr/bin/env bats
# Warm starts: box run restores a saved VM of its key instead of booting. A
# copy gives what a cold boot gives, has randomness of its own, never comes
# from a state of another key, and a damaged state is never run.
load helpers

teardown() {
	home_teardown
}

setup() {
	need_root
	[ -f "$TOP/build/kernels/lean/vmlinux" ] || skip "lean kernel not built: run 'make kernel-lean'"
	[ -f "$TOP/build/images/system.ext4" ] || skip "guest images not built: run 'make image'"
	export BOXKIT_HOME=$BATS_TEST_TMPDIR/home
}

# the saved VMs of this home
keys() { ls -A "$BOXKIT_HOME/warm" 2>/dev/null; }
# stderr without box's and vm-launch's own lines (--verbose)
workload_err() { grep -v -e '^box: accelerator: ' -e '^vm-launch: \[' <<<"$1" || true; }

assert_clean() {
	home_clean
	# only whole saved VMs: no directory of a save in progress or of one removed
	local k
	for k in $(keys); do
		[[ $k =~ ^[0-9a-f]{64}$ ]] || { echo "a leftover in warm/: $k" >&2; return 1; }
		[ -s "$BOXKIT_HOME/warm/$k/state" ] && [ -s "$BOXKIT_HOME/warm/$k/meta.json" ] || return 1
	done
}

# compare STATUS OPTIONS... -- CMD...: the same run cold and warm (a
# restored copy, checked by its --verbose line) gives the same stdout and
# stderr, and both exit with STATUS
compare() {
	local want=$1 c_out c_err
	shift
	run "-$want" --separate-stderr timeout 120 box run --cold "$@"
	c_out=$output c_err=$stderr
	run "-$want" --separate-stderr timeout 120 box run --verbose "$@"
	w_out=$output w_err=$stderr
	assert_contains "$w_err" "warm start: restoring"
	assert_eq "$w_out" "$c_out" "stdout of '$*'"
	assert_eq "$(workload_err "$w_err")" "$c_err" "stderr of '$*'"
}

@test "the first run saves the VM, later runs restore it, and each gives what a cold boot gives" {
	run -0 --separate-stderr timeout 120 box run --verbose -- echo first
	assert_eq "$output" first
	assert_contains "$stderr" "no saved VM for this key yet"
	assert_contains "$stderr" "warm start: saved"
	assert_eq "$(keys | wc -l)" 1 "saved VMs"
	local cmd='echo out; echo err >&2; id; grep Cap /proc/self/status; pwd; env | sort; hostname; ls /; exit 7'
	compare 7 -e FOO=bar -w /tmp -- sh -c "$cmd"
	assert_contains "$w_out" "FOO=bar"
	compare 127 -- no-such-command
	compare 143 -- sh -c 'kill -TERM $$'
	# stdin, all of it
	run -0 --separate-stderr timeout 120 bash -c "seq 1 20000 | box run -- wc -l"
	assert_eq "$output" 20000
	# another user and capabilities: another key (saved by its first run), the same results
	run -0 timeout 120 box run -u 1000:1000 --cap-add NET_ADMIN -- true
	compare 0 -u 1000:1000 --cap-add NET_ADMIN -- sh -c 'id; grep Cap /proc/self/status'
	assert_contains "$w_out" "uid=1000"
	# the guest's clock is the host's, not the saved one's
	sleep 2
	run -0 timeout 120 box run -- date +%s
	[ $((output - $(date +%s))) -le 2 ] && [ $(($(date +%s) - output)) -le 2 ] || { echo "guest clock $output" >&2; false; }
	assert_clean
}

@test "a changed key never reuses a saved VM; command, environment and directory do not change it" {
	run -0 timeout 120 box run -- true
	assert_eq "$(keys | wc -l)" 1
	local k
	for k in "-m 320" "--cap-add SYS_ADMIN" "--hostname other" "--read-only" "-u 1000"; do
		# shellcheck disable=SC2086
		run -0 --separate-stderr timeout 120 box run --verbose $k -- true
		assert_contains "$stderr" "no saved VM for this key yet"
		# shellcheck disable=SC2086
		run -0 --separate-stderr timeout 120 box run --verbose $k -- true
		assert_contains "$stderr" "warm start: restoring"
	done
	assert_eq "$(keys | wc -l)" 6 "saved VMs"
	run -0 --separate-stderr timeout 120 box run --verbose -e A=1 -w /etc -- sh -c 'echo $A; pwd'
	assert_contains "$stderr" "warm start: restoring"
	assert_eq "$output" "$(printf '1\n/etc')"
	assert_eq "$(keys | wc -l)" 6 "saved VMs"
	# the saved VM holds no run's environment: the container's init has none
	run -0 timeout 120 box run -e SECRET=first -- true
	run -0 --separate-stderr timeout 120 box run --verbose -- sh -c 'tr "\0" "\n" </proc/1/environ; echo end'
	assert_contains "$stderr" "warm start: restoring"
	assert_contains "$output" end
	! grep -q SECRET <<<"$output" || false
	assert_clean
}

@test "two copies of one saved VM have randomness of their own, and it never blocks" {
	run -0 timeout 120 box run -- true
	local cmd='cat /proc/sys/kernel/random/boot_id; head -c 16 /dev/urandom | od -An -tx1; timeout 5 head -c 16 /dev/random | od -An -tx1; cat /proc/sys/kernel/random/uuid'
	run -0 --separate-stderr timeout 120 box run --verbose -- sh -c "$cmd"
	assert_contains "$stderr" "warm start: restoring"
	local a=$output
	run -0 --separate-stderr timeout 120 box run --verbose -- sh -c "$cmd"
	assert_contains "$stderr" "warm start: restoring"
	local b=$output
	assert_eq "$(wc -l <<<"$a")" 4
	local i
	for i in 1 2 3 4; do
		[ "$(sed -n "${i}p" <<<"$a")" != "$(sed -n "${i}p" <<<"$b")" ] || { echo "line $i is the same in both copies: $a" >&2; false; }
	done
	assert_clean
}

@test "two warm runs from one saved VM at once" {
	run -0 timeout 120 box run -- true
	local k
	k=$(keys)
	local d=$BATS_TEST_TMPDIR
	timeout 120 box run -- sh -c 'sleep 1; echo one' >"$d/one" 2>&1 &
	local p1=$!
	timeout 120 box run -- sh -c 'sleep 1; echo two; exit 3' >"$d/two" 2>&1 &
	local p2=$!
	local r1=0 r2=0
	wait "$p1" || r1=$?
	wait "$p2" || r2=$?
	assert_eq "$r1/$r2" 0/3 "statuses"
	assert_eq "$(cat "$d/one")" one
	assert_eq "$(cat "$d/two")" two
	assert_eq "$(keys)" "$k" "the saved VM"
	# two first runs of a new key at once: both run, one saved VM stays
	(timeout 120 box run -m 300 -- echo a >"$BATS_TEST_TMPDIR/a" 2>&1) &
	(timeout 120 box run -m 300 -- echo b >"$BATS_TEST_TMPDIR/b" 2>&1) &
	wait
	assert_eq "$(cat "$BATS_TEST_TMPDIR/a")" a
	assert_eq "$(cat "$BATS_TEST_TMPDIR/b")" b
	assert_eq "$(keys | wc -l)" 2
	assert_clean
}

# damage STATE OLD NEW: replace every OLD in the saved VM's memory by NEW
# (the same length): what a copy would then hold is NEW
damage() {
	python3 - "$1" "$2" "$3" <<'EOF'
import sys
p, old, new = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
d = open(p, 'rb').read()
n = d.count(old)
assert n > 0, "marker not in the state"
open(p, 'r+b').write(d.replace(old, new))
print(n)
EOF
}

@test "a damaged saved VM is never run: the run boots cold, warns, and saves it again" {
	# the hostname is in the saved VM's memory (the kernel's, the config's)
	run -0 timeout 120 box run --hostname warmcheck-a1b2c3 -- true
	local k st
	k=$(keys)
	st=$BOXKIT_HOME/warm/$k/state
	run -0 damage "$st" warmcheck-a1b2c3 warmcheck-XXXXXX
	run -0 --separate-stderr timeout 120 box run --hostname warmcheck-a1b2c3 -- hostname
	assert_eq "$output" warmcheck-a1b2c3
	assert_contains "$stderr" "could not be restored (its digest does not match its record): booting cold"
	# saved again, whole: the next run restores it, quietly
	run -0 --separate-stderr timeout 120 box run --verbose --hostname warmcheck-a1b2c3 -- hostname
	assert_eq "$output" warmcheck-a1b2c3
	assert_contains "$stderr" "warm start: restoring"
	! grep -q warning <<<"$stderr" || false
	# cut short: the same
	truncate -s 1000000 "$st"
	run -0 --separate-stderr timeout 120 box run --hostname warmcheck-a1b2c3 -- hostname
	assert_eq "$output" warmcheck-a1b2c3
	assert_contains "$stderr" "is damaged: booting cold, and saving it again"
	# its record gone
	rm "$BOXKIT_HOME/warm/$k/meta.json"
	run -0 --separate-stderr timeout 120 box run --hostname warmcheck-a1b2c3 -- hostname
	assert_eq "$output" warmcheck-a1b2c3
	assert_contains "$stderr" "is damaged"
	run -0 --separate-stderr timeout 120 box run --verbose --hostname warmcheck-a1b2c3 -- hostname
	assert_contains "$stderr" "warm start: restoring"
	assert_clean
}

@test "runs with volumes or a network start cold and say why; --cold never restores" {
	run -0 timeout 120 box run -- true
	run -0 --separate-stderr timeout 120 box run --verbose -v /scratch -- sh -c 'echo x >/scratch/f; cat /scratch/f'
	assert_eq "$output" x
	assert_contains "$stderr" "cold start: it has volumes"
	# a network namespace's interface (an OCI runtime's): its address is the plan's, never a saved one's
	local ns=bxwarm$$
	ip netns add "$ns"
	ip -n "$ns" link add ea type veth peer name eb
	ip -n "$ns" addr add 10.79.1.2/28 dev ea
	ip -n "$ns" link set ea up
	run --separate-stderr timeout 300 box run --verbose --network "netns:/run/netns/$ns" -- ip -4 -o addr show eth0
	local rc=$status out=$output err=$stderr
	ip -n "$ns" addr flush dev ea
	ip -n "$ns" addr add 10.79.2.2/28 dev ea
	run --separate-stderr timeout 300 box run --network "netns:/run/netns/$ns" -- ip -4 -o addr show eth0
	local rc2=$status out2=$output
	ip netns del "$ns"
	assert_eq "$rc/$rc2" 0/0 "statuses"
	assert_contains "$err" "cold start: it has a network"
	assert_contains "$out" "10.79.1.2/28"
	assert_contains "$out2" "10.79.2.2/28"
	run -0 --separate-stderr timeout 120 box run --verbose --cold -- true
	! grep -q "warm start" <<<"$stderr" || false
	assert_eq "$(keys | wc -l)" 1
	box setup --unmount
	assert_clean
}

@test "box warm saves ahead of time; box warm ls and prune" {
	run -0 --separate-stderr timeout 120 box warm -m 288
	assert_eq "$(keys | wc -l)" 1
	run -0 box warm ls
	assert_contains "$output" "288MiB"
	run -0 --separate-stderr timeout 120 box run --verbose -m 288 -- echo ok
	assert_eq "$output" ok
	assert_contains "$stderr" "warm start: restoring"
	run -125 --separate-stderr box warm -- echo no
	assert_contains "$stderr" "no command"
	run -125 --separate-stderr box warm -v /x
	assert_contains "$stderr" "cannot start warm"
	run -0 box warm prune
	assert_eq "$(keys)" ""
	box setup --unmount
	assert_clean
}

@test "box create and box run -d restore a saved VM too: sandboxes of their own" {
	run -0 timeout 120 box run -- true
	run -0 --separate-stderr timeout 120 box create --verbose --name wa
	assert_contains "$stderr" "warm start: restoring"
	run -0 timeout 120 box create --name wb
	run -0 timeout 120 box run -d --name wc -- sh -c 'echo first-output; sleep 600'
	run -0 timeout 60 box exec wa -- sh -c 'echo $(hostname) >/tmp/mine; cat /proc/sys/kernel/random/boot_id'
	local a=$output
	run -0 timeout 60 box exec wb -- sh -c 'cat /tmp/mine 2>/dev/null; cat /proc/sys/kernel/random/boot_id'
	[ "$output" != "$a" ] || { echo "two sandboxes share $a" >&2; false; }
	# what one sandbox wrote, the other never sees
	! grep -q boxkit <<<"$output" || false
	run -0 timeout 60 box exec wa -- cat /tmp/mine
	assert_eq "$output" boxkit
	for _ in $(seq 50); do box logs wc | grep -q first-output && break; sleep 0.2; done
	run -0 box logs wc
	assert_contains "$output" first-output
	run -0 timeout 60 box stop wa wb wc
	run -0 timeout 60 box rm wa wb wc
	assert_eq "$(box ls --json)" ""
	assert_clean
}

@test "a run stopped while its VM is being saved stops within a second and leaves no half-saved state" {
	# test builds only: the save never ends (QEMU blocked on a full pipe)
	BOXKIT_TEST_SAVE_STALL=1 timeout 120 box run -- echo never >"$BATS_TEST_TMPDIR/out" 2>&1 &
	local pid=$!
	for _ in $(seq 600); do
		ls -A "$BOXKIT_HOME/warm" 2>/dev/null | grep -q '^\.new-' && break
		sleep 0.1
	done
	ls -A "$BOXKIT_HOME/warm" | grep -q '^\.new-'
	sleep 0.5
	local t0=$EPOCHREALTIME rc=0
	kill -TERM "$pid"
	wait "$pid" || rc=$?
	local ms=$(((${EPOCHREALTIME/./} - ${t0/./}) / 1000))
	assert_eq "$rc" 143 "status"
	[ "$ms" -lt 1000 ] || { echo "stopped after $ms ms" >&2; false; }
	! grep -q never "$BATS_TEST_TMPDIR/out" || false
	assert_eq "$(keys)" "" "saved VMs"
	assert_clean
}

@test "a guest that says READY again after its VM was saved is stopped at once, not saved twice" {
	# the VMM in the jail is a stand-in: QEMU's monitor and migration as QEMU
	# answers them, and a guest that sends READY once more after RESUMED
	mkdir -p "$BATS_TEST_TMPDIR/vmm"
	cp "$TEST_HELPERS/fakevmm" "$BATS_TEST_TMPDIR/vmm/fakevmm-reready"
	oci-spec --init -- true >"$BATS_TEST_TMPDIR/c.json"
	stage_jail reready "$BATS_TEST_TMPDIR/vmm/fakevmm-reready"
	local t0=$SECONDS
	run -125 --separate-stderr timeout 100 vm-launch --home "$BOXKIT_HOME" --accel tcg --warm --verbose \
		--chroot "$BATS_TEST_TMPDIR/j.json" --config "$BATS_TEST_TMPDIR/c.json"
	chroot-stage destroy --home "$BOXKIT_HOME" --id reready
	assert_contains "$stderr" "warm start: saved"
	assert_contains "$stderr" "bad frame from the guest"
	assert_eq "$(grep -c 'warm start: saved' <<<"$stderr")" 1 "saves"
	[ $((SECONDS - t0)) -lt 20 ] || { echo "took $((SECONDS - t0)) s" >&2; false; }
	assert_clean
}
