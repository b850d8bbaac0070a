#!/usr/bin/env bats
# Attacks on the host through volumes, each performed for real. A guest
# controls every name in the volumes it shares: between the launcher's check
# of a path and its use, another run's guest can rename a directory and put a
# symlink to a host path in its place. The races are made to happen at the
# exact point: the test build of vm-launch stops right after its gate has
# pinned every source (BOXKIT_TEST_PAUSE=volumes-pinned), the test swaps the
# component, then lets it go on.
load helpers

setup() {
	vm_suite_setup
	P=$BATS_TEST_TMPDIR/pause
	mkdir -p "$P"
	U=$(id -u boxkit-vm)
}

teardown() {
	[ -d "${BOXKIT_HOME:-/nonexistent}" ] || return 0
	box gc >/dev/null 2>&1 || true
	grep -o " $BATS_TEST_TMPDIR[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

# paused_run ARGS...: box run in the background, stopped right after the gate
paused_run() {
	BOXKIT_TEST_PAUSE=volumes-pinned BOXKIT_TEST_PAUSE_DIR=$P timeout 300 box run "$@" \
		>"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	bp=$!
	wait_for "$P/volumes-pinned.reached" || { cat "$BATS_TEST_TMPDIR/err" >&2; false; }
}
resume() {
	touch "$P/volumes-pinned.go"
	rc=0
	wait "$bp" || rc=$?
	out=$(cat "$BATS_TEST_TMPDIR/out")
	echo "run: exit $rc; out: $out; err: $(cat "$BATS_TEST_TMPDIR/err")" >&3
}

# a host directory outside every volume, with a file only root may read
make_victim() {
	V=$BATS_TEST_TMPDIR/victim
	mkdir -p "$V"
	echo host-secret >"$V/secret"
	chmod 0600 "$V/secret"
	chmod 0700 "$V"
	victim_before=$(stat -c '%u:%g %a %h' "$V" "$V/secret")
}

# swap_sub_run SPEC CMD: a run of the subpath `sub` (marker: original),
# stopped after the gate; sub is then swapped for a symlink to the victim
swap_sub_run() {
	make_victim
	mkdir -p "$N/shared/sub" && echo original >"$N/shared/sub/marker"
	paused_run -v "$1" -- sh -c "$2"
	mv "$N/shared/sub" "$N/shared/sub.orig"
	ln -s "$V" "$N/shared/sub"
	resume
	assert_eq "$rc" 0 "exit status"
	! grep -q host-secret <<<"$out" || false
	assert_eq "$(stat -c '%u:%g %a %h' "$V" "$V/secret")" "$victim_before" "the host directory"
}

@test "race, ownership: the subpath is swapped for a symlink to a host directory after the gate; that directory is not given to the VM's uid" {
	swap_sub_run 'src=shared,dst=/d,volume-subpath=sub' 'cat /d/marker; cat /d/secret || true'
	# what was pinned was given to the VM's uid, and served
	assert_eq "$(stat -c %u "$N/shared/sub.orig")" "$U" "the pinned directory's owner"
	assert_eq "$(head -1 <<<"$out")" original
}

@test "race, file mount: the file's directory is swapped for a symlink into another volume after the gate; that volume's file is never linked or served" {
	mkdir -p "$N/shared/conf" "$N/other"
	echo original >"$N/shared/conf/app.conf"
	echo other-volume-secret >"$N/other/app.conf"
	chmod 0600 "$N/other/app.conf"
	paused_run -v 'src=shared,dst=/etc/app.conf,volume-subpath=conf/app.conf,readonly' -- cat /etc/app.conf
	mv "$N/shared/conf" "$N/shared/conf.orig"
	ln -s ../other "$N/shared/conf"
	resume
	assert_eq "$rc" 0 "exit status"
	assert_eq "$out" original
	assert_eq "$(stat -c '%h %u %a' "$N/other/app.conf")" "1 0 600" "the other volume's file: links, owner, mode"
}

@test "race, virtiofsd's shared directory: the subpath is swapped for a symlink to a host directory after the gate; virtiofsd serves the pinned directory, never the host one" {
	swap_sub_run 'src=shared,dst=/d,volume-subpath=sub,readonly' 'ls /d; cat /d/secret 2>&1 || true'
	assert_eq "$(head -1 <<<"$out")" marker "what the guest sees in the share"
}

@test "race driven by a real guest: another run's guest swaps the subpath for a symlink to a host directory at the exact point" {
	make_victim
	mkdir -p "$N/shared/sub" && echo original >"$N/shared/sub/marker"
	# the attacker: a guest with the whole volume, waiting for its cue
	timeout 300 box run -v shared:/vol -- sh -c "
		while [ ! -e /vol/go ]; do sleep 0.1; done
		mv /vol/sub /vol/sub.orig && ln -s '$V' /vol/sub && echo swapped >/vol/done" \
		>"$BATS_TEST_TMPDIR/attacker.out" 2>&1 &
	ap=$!
	# the victim run stops after its gate; then the guest attacks
	paused_run -v 'src=shared,dst=/d,volume-subpath=sub' -- sh -c 'ls /d; cat /d/secret 2>&1 || true'
	touch "$N/shared/go"
	wait_for "$N/shared/done" || { cat "$BATS_TEST_TMPDIR/attacker.out" >&2; false; }
	[ -L "$N/shared/sub" ]
	assert_eq "$(readlink "$N/shared/sub")" "$V"
	resume
	wait "$ap"
	assert_eq "$rc" 0 "exit status"
	assert_eq "$(head -1 <<<"$out")" marker
	! grep -q host-secret <<<"$out" || false
	assert_eq "$(stat -c '%u:%g %a %h' "$V" "$V/secret")" "$victim_before" "the host directory"
}

@test "the VM's uid, even with virtiofsd's CAP_DAC_READ_SEARCH, cannot alter any record of a run" {
	mkdir -p "$N/data"
	timeout 300 box run -v data:/d -v /scratch -- sleep 6 >/dev/null 2>&1 &
	bp=$!
	q=$(run_pid qemu)
	id=$(run_ids)
	R=$BOXKIT_HOME/run/$id
	[ -f "$R/run.json" ] && [ -f "$R/console.log" ] && [ -f "$R/config.json" ] || false
	as_vm() { setpriv --reuid "$U" --regid "$(id -g boxkit-vm)" --clear-groups --inh-caps +dac_read_search \
		--ambient-caps +dac_read_search "$@"; }
	# the capability is really there: it reads a root-only record
	as_vm cat "$R/run.json" >/dev/null
	for f in "$R"/*; do
		! as_vm sh -c "echo x >>'$f'" 2>/dev/null || { echo "wrote $f" >&2; false; }
		! as_vm mv "$f" "$f.moved" 2>/dev/null || { echo "moved $f" >&2; false; }
	done
	! as_vm touch "$R/new" 2>/dev/null || false
	! as_vm touch "$BOXKIT_HOME/run/new" 2>/dev/null || false
	# the jail's socket directory: the VMM connects, but cannot swap names
	J=$BOXKIT_HOME/jail/qemu-system-x86_64/$id/root
	! as_vm touch "$J/run/new" 2>/dev/null || false
	! as_vm mv "$J/run/vfs0.sock" "$J/run/x" 2>/dev/null || false
	# owned by root, writable by nobody else
	assert_eq "$(find "$BOXKIT_HOME/run" "$J/run" ! -user 0 -o -perm /022 ! -type s | wc -l)" 0 "files not root's or group/other-writable"
	wait "$bp"
}

@test "box gc after a SIGKILL of box and vm-launch removes the run's anonymous volume, jail and record" {
	timeout 300 box run -v /scratch -- sleep 60 >/dev/null 2>&1 &
	bp=$!
	q=$(run_pid qemu)
	id=$(run_ids)
	[ -n "$(ls -A "$BOXKIT_HOME/volumes/anonymous")" ]
	# the owners of the run, killed hard (their pids are in the record)
	for pid in $(run-record show --home "$BOXKIT_HOME" --id "$id" | jq -r '.owners[].pid'); do kill -9 "$pid"; done
	wait "$bp" || true
	run -0 box gc
	assert_eq "$(ls -A "$BOXKIT_HOME/volumes/anonymous")" "" "anonymous volumes"
	assert_eq "$(ls -A "$BOXKIT_HOME/run")" "" "run records"
	assert_eq "$(ls -A "$BOXKIT_HOME/jail")" "" "jails"
	[ ! -e "/proc/$q" ] || [ "$(cut -d' ' -f3 "/proc/$q/stat")" = Z ]
}

@test "a home under a symlinked parent: runs work, and no mount is left but the volume store" {
	mkdir -p "$BATS_TEST_TMPDIR/real"
	ln -s real "$BATS_TEST_TMPDIR/link"
	export BOXKIT_HOME=$BATS_TEST_TMPDIR/link/h//
	run -0 --separate-stderr timeout 300 box run -v v1:/d -v /s -- sh -c 'echo hi >/d/f; cat /d/f'
	assert_eq "$output" hi
	real=$BATS_TEST_TMPDIR/real/h
	assert_eq "$(grep -c " $real" /proc/self/mountinfo)" 1 "mounts under the home"
	grep -q " $real/volumes " /proc/self/mountinfo
	# a launcher killed hard: gc and later runs still work
	timeout 300 box run -v /s -- sleep 60 >/dev/null 2>&1 &
	bp=$!
	run_pid qemu >/dev/null
	for id in $(ls "$real/run"); do
		for pid in $(run-record show --home "$real" --id "$id" | jq -r '.owners[].pid'); do kill -9 "$pid"; done
	done
	wait "$bp" || true
	run -0 box gc
	run -0 --separate-stderr timeout 300 box run -- echo again
	assert_eq "$output" again
	assert_eq "$(ls -A "$real/run") $(ls -A "$real/jail") $(ls -A "$real/volumes/anonymous")" "  " "leftovers"
	run -0 box setup --unmount
	! grep -q " $real" /proc/self/mountinfo || false
	! grep -q " $BATS_TEST_TMPDIR/link" /proc/self/mountinfo || false
}

@test "file handles: a process with virtiofsd's sandbox, uid and capability opens a handle inside the volume and none of a host file; a volume with a size limit reaches no other volume" {
	mkdir -p "$N/probe" "$N/other"
	echo other-volume >"$N/other/secret"
	echo inside-data >"$N/probe/inside"
	echo host-secret >"$BATS_TEST_TMPDIR/outside"
	chmod 0600 "$BATS_TEST_TMPDIR/outside"
	{
		echo "inside $("$TEST_HELPERS/fhandle" "$N/probe/inside")"
		echo "outside $("$TEST_HELPERS/fhandle" "$BATS_TEST_TMPDIR/outside")"
		echo "hostroot $("$TEST_HELPERS/fhandle" /etc/passwd)"
	} >"$N/probe/handles"
	# the probe stands in for virtiofsd: installed with the capability by
	# vfsd-cap-install, started by vm-launch exactly as virtiofsd is
	BOXKIT_VIRTIOFSD=$TEST_HELPERS/vfsd-probe run -125 --separate-stderr timeout 300 box run -v probe:/p -- true
	r=$N/probe/result
	cat "$r" >&3
	grep -q "^inside shared ok inside-data$" "$r"
	assert_eq "$(grep -c '^outside ' "$r")" "$(grep -c '^inside ' "$r")" "outside attempts"
	! grep -q '^outside .* ok' "$r" || false
	! grep -q '^hostroot .* ok' "$r" || false
	assert_eq "$(grep '^outside ' "$r" | grep -vc ' ESTALE$')" 0 "outside: every attempt ESTALE"
	# volumes on the shared store share its filesystem (documented); a
	# volume with a size limit is a filesystem of its own: its daemon
	# reaches no other volume, and no other daemon reaches it
	box volume create --size 8M iso
	echo iso-data >"$N/iso/inside"
	{
		echo "inside $("$TEST_HELPERS/fhandle" "$N/iso/inside")"
		echo "othervol $("$TEST_HELPERS/fhandle" "$N/other/secret")"
		echo "outside $("$TEST_HELPERS/fhandle" "$BATS_TEST_TMPDIR/outside")"
	} >"$N/iso/handles"
	chown "$U" "$N/iso"
	BOXKIT_VIRTIOFSD=$TEST_HELPERS/vfsd-probe run -125 --separate-stderr timeout 300 box run -v iso:/p -- true
	r=$N/iso/result
	cat "$r" >&3
	grep -q "^inside shared ok iso-data$" "$r"
	! grep -q '^othervol .* ok' "$r" || false
	! grep -q '^outside .* ok' "$r" || false
}

@test "a compromised QEMU sends virtiofsd descriptors on the host's filesystem over the vhost-user socket: no host file opens by handle through them" {
	mkdir -p "$N/probe" "$BATS_TEST_TMPDIR/vmm"
	echo inside-data >"$N/probe/inside"
	echo host-secret >"$BATS_TEST_TMPDIR/outside"
	chmod 0600 "$BATS_TEST_TMPDIR/outside"
	{
		echo "inside $("$TEST_HELPERS/fhandle" "$N/probe/inside")"
		echo "outside $("$TEST_HELPERS/fhandle" "$BATS_TEST_TMPDIR/outside")"
		echo "hostroot $("$TEST_HELPERS/fhandle" /etc/passwd)"
	} >"$N/probe/handles"
	# the VMM in the jail is a stand-in that plays a compromised QEMU
	cp "$TEST_HELPERS/fakevmm" "$BATS_TEST_TMPDIR/vmm/fakevmm-sendfd"
	volspec-parse --home "$BOXKIT_HOME" probe:/p >"$BATS_TEST_TMPDIR/v.jsonl"
	oci-spec --init -- true >"$BATS_TEST_TMPDIR/c.json"
	stage_jail sendfd "$BATS_TEST_TMPDIR/vmm/fakevmm-sendfd"
	BOXKIT_VIRTIOFSD=$TEST_HELPERS/vfsd-probe run -125 --separate-stderr timeout 120 vm-launch --home "$BOXKIT_HOME" \
		--accel tcg --chroot "$BATS_TEST_TMPDIR/j.json" --config "$BATS_TEST_TMPDIR/c.json" --volumes "$BATS_TEST_TMPDIR/v.jsonl"
	chroot-stage destroy --home "$BOXKIT_HOME" --id sendfd
	r=$N/probe/result
	cat "$r" >&3
	# the descriptors did arrive, and the capability is real
	grep -q "^outside received0 " "$r"
	grep -q "^outside received1 " "$r"
	grep -q "^inside shared ok inside-data$" "$r"
	! grep -q '^outside .* ok' "$r" || false
	! grep -q '^hostroot .* ok' "$r" || false
}

@test "the launcher is never wedged by its log thread: a child cloned before that thread first ran still changes its uid" {
	# one CPU, SCHED_FIFO: the log writer thread cannot run before the
	# clone unless log_async waits for it (glibc marks a thread that has not
	# started; a raw-cloned child's setresuid then waits for it forever)
	command -v chrt >/dev/null && command -v taskset >/dev/null || skip "needs chrt and taskset (util-linux)"
	run -0 timeout 30 taskset -c 0 chrt -f 10 "$TEST_HELPERS/clone-setxid"
}
