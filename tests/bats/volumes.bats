#!/usr/bin/env bats
# Volumes in the VM, end to end (TCG): virtiofs shares of managed volumes,
# file-level mounts, and a bounded descriptor count with mandatory file handles.
load helpers

setup() {
	vm_suite_setup
}

teardown() {
	[ -d "${BOXKIT_HOME:-/nonexistent}" ] || return 0
	box gc >/dev/null 2>&1 || true
	grep -o " $BATS_TEST_TMPDIR[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

assert_clean() {
	sleep 0.2
	assert_eq "$(own_procs)" "" "processes of this home's runs"
	# the volume store is the one mount under the home
	assert_eq "$(grep -c " $BOXKIT_HOME" /proc/self/mountinfo)" 1 "mounts under the home"
	assert_eq "$(ls -A "$BOXKIT_HOME/run" 2>/dev/null)" "" "run dirs"
	assert_eq "$(ls -A "$BOXKIT_HOME/jail" 2>/dev/null)" "" "chroots"
	assert_eq "$(ls -A "$BOXKIT_HOME/volumes/anonymous" 2>/dev/null)" "" "anonymous volumes"
}

boxrun() { timeout 300 box run "$@"; }

@test "a named volume written in one run is read back in the next" {
	run -0 --separate-stderr boxrun -v keep:/data -- sh -c 'echo persisted >/data/note'
	run -0 --separate-stderr boxrun -v keep:/other -- cat /other/note
	assert_eq "$output" persisted
	assert_eq "$(cat "$N/keep/note")" persisted
	assert_clean
}

@test "an anonymous volume is gone after its run" {
	run -0 --separate-stderr boxrun -v /scratch -- sh -c 'echo x >/scratch/f && ls /scratch'
	assert_eq "$output" f
	assert_eq "$(ls -A "$BOXKIT_HOME/volumes/anonymous")" ""
	assert_clean
}

@test "a read-only volume refuses writes (EROFS) and the host is unchanged" {
	mkdir -p "$N/ro" && echo original >"$N/ro/f"
	before=$(stat -c '%i %Y %a' "$N/ro/f")
	run -1 --separate-stderr boxrun -v ro:/data:ro -- sh -c 'echo changed >/data/f'
	assert_contains "$stderr" "Read-only file system"
	run -1 --separate-stderr boxrun -v ro:/data:ro -- touch /data/new
	assert_contains "$stderr" "Read-only file system"
	assert_eq "$(cat "$N/ro/f")" original
	assert_eq "$(stat -c '%i %Y %a' "$N/ro/f")" "$before"
	[ ! -e "$N/ro/new" ]
}

@test "a hand-written volume naming /etc, or with a NUL in its tag, is refused by vm-launch before any VM starts" {
	oci-spec --init -- true >"$BATS_TEST_TMPDIR/c.json"
	mkdir -p "$N/xx"
	echo '{"spec":"x","kind":"named","name":"xx","source":"/etc","target":"/data","readonly":false,"type":"directory","tag":"vol_1"}' >"$BATS_TEST_TMPDIR/v.jsonl"
	stage_jail gate1
	run -125 --separate-stderr vm-launch --home "$BOXKIT_HOME" --accel tcg --chroot "$BATS_TEST_TMPDIR/j.json" --config "$BATS_TEST_TMPDIR/c.json" --volumes "$BATS_TEST_TMPDIR/v.jsonl"
	assert_contains "$stderr" "volume source '/etc' is not the managed named volume 'xx'"
	assert_contains "$stderr" "no VM was started"
	printf '{"kind":"named","name":"xx","target":"/data","type":"directory","tag":"vol_1\\u0000/../../etc"}\n' >"$BATS_TEST_TMPDIR/nul.jsonl"
	run -125 --separate-stderr vm-launch --home "$BOXKIT_HOME" --accel tcg --chroot "$BATS_TEST_TMPDIR/j.json" --config "$BATS_TEST_TMPDIR/c.json" --volumes "$BATS_TEST_TMPDIR/nul.jsonl"
	assert_contains "$stderr" "'tag' holds a NUL character"
	assert_contains "$stderr" "no VM was started"
	chroot-stage destroy --home "$BOXKIT_HOME" --id gate1
	assert_eq "$(own_procs)" ""
	assert_eq "$(ls -A "$BOXKIT_HOME/run")" ""
}

@test "volumes are refused on a home whose volume store is not a filesystem of its own" {
	umount "$BOXKIT_HOME/volumes"
	mkdir -p "$N/xx"
	oci-spec --init -- true >"$BATS_TEST_TMPDIR/c.json"
	volspec-parse --home "$BOXKIT_HOME" xx:/d >"$BATS_TEST_TMPDIR/v.jsonl"
	stage_jail gate2
	run -125 --separate-stderr vm-launch --home "$BOXKIT_HOME" --accel tcg --chroot "$BATS_TEST_TMPDIR/j.json" --config "$BATS_TEST_TMPDIR/c.json" --volumes "$BATS_TEST_TMPDIR/v.jsonl"
	assert_contains "$stderr" "is not a filesystem of its own: run 'box setup'"
	chroot-stage destroy --home "$BOXKIT_HOME" --id gate2
	# box refuses to hide what is there under a new mount
	run -125 --separate-stderr timeout 60 box run -v xx:/d -- true
	assert_contains "$stderr" "holds files but is not the volume store"
}

@test "O_CREAT|O_EXCL works in the guest and new files belong to the VM's uid on the host" {
	run -0 --separate-stderr boxrun -v own:/data -- sh -c 'set -C; echo a >/data/x && { echo b >/data/x && echo CLOBBERED || echo EXCL-OK; }; mkdir /data/d; echo y >/data/d/z'
	assert_contains "$output" EXCL-OK
	! grep -q CLOBBERED <<<"$output" || false
	u=$(id -u boxkit-vm)
	assert_eq "$(stat -c %u "$N/own/x") $(stat -c %u "$N/own/d") $(stat -c %u "$N/own/d/z")" "$u $u $u" "owners"
	[ "$u" != 0 ]
}

file_vol() { # NAME FILE CONTENT MODE
	mkdir -p "$N/$1"
	printf '%s' "$3" >"$N/$1/$2"
	chmod "$4" "$N/$1/$2"
}

@test "file mount: only the file is reachable; no staging share left in the guest; .. stays in the guest" {
	file_vol fv app.conf secret-config 0644
	echo beside >"$N/fv/beside-marker"
	run -0 --separate-stderr boxrun -v 'type=volume,src=fv,dst=/etc/app.conf,volume-subpath=app.conf' -- sh -c '
		cat /etc/app.conf; echo
		grep -c virtiofs /proc/mounts
		grep -c stage /proc/mounts
		find / -xdev -name beside-marker 2>/dev/null | wc -l
		find / -name beside-marker 2>/dev/null | wc -l
		ls /etc/.. | grep -c "^etc$"'
	assert_eq "$(sed -n 1p <<<"$output")" secret-config
	assert_eq "$(sed -n 2p <<<"$output")" 1 "virtiofs mounts (the file itself)"
	assert_eq "$(sed -n 3p <<<"$output")" 0 "staging mounts"
	assert_eq "$(sed -n 4p <<<"$output")" 0 "beside-marker on /"
	assert_eq "$(sed -n 5p <<<"$output")" 0 "beside-marker anywhere"
	assert_eq "$(sed -n 6p <<<"$output")" 1 "/etc/.. is the guest's root"
	assert_clean
}

@test "file mount: virtiofsd's share holds only the file, bound there (no link, no copy), and is gone after the run" {
	file_vol fs app.conf data 0644
	echo beside >"$N/fs/beside-marker"
	timeout 300 box run -v 'type=volume,src=fs,dst=/app.conf,volume-subpath=app.conf' -- sleep 6 &
	bp=$!
	run_pid qemu >/dev/null
	v=$(run_pid virtiofsd)
	# what the daemon sees: /shared in its own namespace, one name
	assert_eq "$(ls -A "/proc/$v/root/shared")" app.conf "the share's content"
	assert_eq "$(stat -c %i "/proc/$v/root/shared/app.conf")" "$(stat -c %i "$N/fs/app.conf")" "the file itself"
	assert_eq "$(stat -c %h "$N/fs/app.conf")" 1 "no other name made for it"
	# the daemon's root: a tmpfs of its own, read-only, holding the daemon and its libraries
	grep -q " / ro,nosuid,nodev" "/proc/$v/mountinfo"
	[ -x "/proc/$v/root/virtiofsd" ]
	wait "$bp"
	[ ! -e "$stage" ]
	assert_clean
}

@test "file mount read-only: write and chmod refused, host content and mode unchanged" {
	file_vol fr f.txt hostdata 0640
	before=$(stat -c '%a %Y' "$N/fr/f.txt")
	run --separate-stderr boxrun -v 'type=volume,src=fr,dst=/f.txt,volume-subpath=f.txt,readonly' -- sh -c '
		echo evil >/f.txt && echo WROTE; chmod 777 /f.txt && echo CHMODDED; mount -o remount,rw /f.txt && echo REMOUNTED; cat /f.txt'
	! grep -q "WROTE\|CHMODDED\|REMOUNTED" <<<"$output" || false
	assert_contains "$output" hostdata
	assert_contains "$stderr" "Read-only file system"
	assert_eq "$(cat "$N/fr/f.txt")" hostdata
	assert_eq "$(stat -c '%a %Y' "$N/fr/f.txt")" "$before"
}

@test "two file mounts into one guest directory; a second run does not see the first's staging" {
	file_vol f2 a.txt AAA 0644
	file_vol f2b b.txt BBB 0644
	run -0 --separate-stderr boxrun -v 'src=f2,dst=/cfg/a.txt,volume-subpath=a.txt' -v 'src=f2b,dst=/cfg/b.txt,volume-subpath=b.txt' -- sh -c 'cat /cfg/a.txt /cfg/b.txt'
	assert_eq "$output" AAABBB
	assert_clean
	# a new run with only b: nothing of the first run's staging (a.txt) is there
	run -0 --separate-stderr boxrun -v 'src=f2b,dst=/cfg/b.txt,volume-subpath=b.txt' -- sh -c 'ls /cfg; find / -name a.txt 2>/dev/null | wc -l'
	assert_eq "$output" "b.txt
0"
	assert_clean
}

# fd_peak_during CMD...: the largest descriptor count of this run's virtiofsd, sampled as root
fd_peak_during() {
	local peak=0 n p
	"$@" >"$BATS_TEST_TMPDIR/walk.out" &
	local bp=$!
	p=$(run_pid virtiofsd)
	while kill -0 "$bp" 2>/dev/null; do
		n=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
		[ "$n" -gt "$peak" ] && peak=$n
		sleep 0.3
	done
	wait "$bp"
	echo "$peak"
}

@test "descriptors: walking 10000 files twice keeps virtiofsd under 100 fds with mandatory handles; never grows past 10000" {
	mkdir -p "$N/many"
	(cd "$N/many" && for d in $(seq 0 99); do mkdir "d$d"; (cd "d$d" && touch $(seq -f "f%g" 0 99)); done)
	walk='for k in 1 2; do find /data -type f | wc -l; done; ls -lR /data >/dev/null; sleep 2'
	peak=$(fd_peak_during timeout 600 box run -v many:/data -- sh -c "$walk")
	echo "mandatory: peak $peak descriptors" >&3
	assert_eq "$(head -2 "$BATS_TEST_TMPDIR/walk.out" | tr '\n' ' ')" "10000 10000 " "files seen by the guest"
	[ "$peak" -gt 0 ]
	[ "$peak" -lt 100 ]
	peak_never=$(BOXKIT_TEST_VFSD_HANDLES=never fd_peak_during timeout 600 box run -v many:/data -- sh -c "$walk")
	echo "never: peak $peak_never descriptors" >&3
	[ "$peak_never" -gt 10000 ]
	assert_clean
}

@test "a volume with a size limit: a write past it fails with ENOSPC in the guest, other volumes are unaffected" {
	run -0 --separate-stderr box volume create --size 8M small
	mountpoint -q "$N/small"
	[ -f "$BOXKIT_HOME/volume-images/small.img" ]
	run -1 --separate-stderr box volume create --size 8M small
	assert_contains "$stderr" "volume 'small' exists"
	run -1 --separate-stderr box volume create --size lots other
	assert_contains "$stderr" "--size 'lots'"
	run -1 --separate-stderr boxrun -v small:/d -- dd if=/dev/zero of=/d/big bs=1M count=32
	assert_contains "$stderr" "No space left on device"
	[ "$(stat -c %s "$N/small/big")" -le $((8 * 1024 * 1024)) ]
	run -0 --separate-stderr boxrun -v big:/d -- sh -c 'dd if=/dev/zero of=/d/f bs=1M count=16 2>/dev/null && wc -c </d/f'
	assert_eq "$output" 16777216
	# the store survives a reboot's loss of the loop mounts: box setup mounts the volume again
	umount "$N/small"
	run -0 box setup
	mountpoint -q "$N/small"
	# vm-launch's gate refuses a volume with a size limit whose filesystem is not mounted
	umount "$N/small"
	oci-spec --init -- true >"$BATS_TEST_TMPDIR/c.json"
	volspec-parse --home "$BOXKIT_HOME" small:/d >"$BATS_TEST_TMPDIR/v.jsonl"
	stage_jail gate3
	run -125 --separate-stderr vm-launch --home "$BOXKIT_HOME" --accel tcg --chroot "$BATS_TEST_TMPDIR/j.json" --config "$BATS_TEST_TMPDIR/c.json" --volumes "$BATS_TEST_TMPDIR/v.jsonl"
	assert_contains "$stderr" "volume 'small' has a size limit but its filesystem is not mounted"
	chroot-stage destroy --home "$BOXKIT_HOME" --id gate3
	box setup
	run -0 box volume rm small
	! mountpoint -q "$N/small" 2>/dev/null || false
	[ ! -e "$N/small" ] && [ ! -e "$BOXKIT_HOME/volume-images/small.img" ] || false
	assert_clean
}
