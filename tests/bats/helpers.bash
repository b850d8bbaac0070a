# Shared helpers for boxkit's bats suites.
# BIN_DIR is overridable so the same suite runs against the sanitizer build.
: "${BIN_DIR:=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)/bin}"
TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
: "${TEST_HELPERS:=$TOP/build/obj/tests}"
export PATH="$BIN_DIR:$PATH"
# box runs the tools of the build under test
export BOXKIT_BIN=$BIN_DIR
bats_require_minimum_version 1.5.0

# need_root: these tests mount loop images, mknod, setcap: fail loudly
# rather than pass silently; skip with the reason printed when not root.
need_root() {
	[ "$(id -u)" = 0 ] || skip "needs root (loop mounts, capabilities)"
}

# assert_eq GOT WANT [WHAT]
assert_eq() {
	if [ "$1" != "$2" ]; then
		echo "${3:-value}: got '$1', want '$2'" >&2
		return 1
	fi
}

# assert_contains HAYSTACK NEEDLE
assert_contains() {
	case $1 in
	*"$2"*) return 0 ;;
	esac
	echo "'$1' does not contain '$2'" >&2
	return 1
}

# make_loop_fs TYPE SIZE_MB DIR [MKFS_OPTS...]: a real filesystem image
# loop-mounted at DIR; unmounted by loop_cleanup.
make_loop_fs() {
	local type=$1 size=$2 dir=$3
	shift 3
	local img=$BATS_TEST_TMPDIR/fs-$type-$RANDOM.img
	truncate -s "${size}M" "$img"
	case $type in
	ext4) mkfs.ext4 -q -F "$@" "$img" ;;
	xfs) mkfs.xfs -q -f "$@" "$img" ;;
	btrfs) mkfs.btrfs -q -f "$@" "$img" >/dev/null ;;
	esac
	mkdir -p "$dir"
	mount -o loop "$img" "$dir"
	echo "$dir" >>"$BATS_TEST_TMPDIR/.mounts"
}

make_tmpfs() {
	mkdir -p "$2"
	mount -t tmpfs -o size="$1"M tmpfs "$2"
	echo "$2" >>"$BATS_TEST_TMPDIR/.mounts"
}

loop_cleanup() {
	[ -f "$BATS_TEST_TMPDIR/.mounts" ] || return 0
	tac "$BATS_TEST_TMPDIR/.mounts" | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
	rm -f "$BATS_TEST_TMPDIR/.mounts"
}

fs_free() { df -B1 --output=avail "$1" | tail -1 | tr -d ' '; }

# json KEY LINE: one key of a JSON line
jget() { jq -r "$1" <<<"$2"; }

# run_ids: the runs of this test's home
run_ids() { ls "$BOXKIT_HOME/run" 2>/dev/null | grep -E '^[0-9a-z]{26}$'; }
# run_pid WHAT: the pid of a process (qemu, virtiofsd) recorded by this
# test's one run; waits up to 30 s for it to appear. Never looks at the
# machine's process list.
run_pid() {
	local id pid
	for _ in $(seq 300); do
		for id in $(run_ids); do
			pid=$(run-record show --home "$BOXKIT_HOME" --id "$id" 2>/dev/null | jq -r --arg w "$1" '[.processes[] | select(.what==$w) | .pid][0] // empty')
			[ -n "$pid" ] && { echo "$pid"; return 0; }
		done
		sleep 0.1
	done
	return 1
}
# wait_for FILE [TENTHS]: wait until FILE exists (default 60 s)
wait_for() {
	local n=${2:-600}
	while [ ! -e "$1" ] && [ "$n" -gt 0 ]; do sleep 0.1; n=$((n - 1)); done
	[ -e "$1" ]
}

# own_procs: live processes (not zombies) that a run of this test's home
# started (QEMU, virtiofsd carry BOXKIT_RUN_DIR=<home>/run/<id>), plus its
# launchers; never anything else on the machine
own_procs() {
	local home p st
	home=$(cd -P "$BOXKIT_HOME" 2>/dev/null && pwd) || return 0
	for p in /proc/[0-9]*; do
		st=$(cut -d' ' -f3 "$p/stat" 2>/dev/null) || continue
		[ "$st" = Z ] && continue
		if tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -q "^BOXKIT_RUN_DIR=$home/run/" ||
			tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "^[^ ]*vm-launch --home $home "; then
			echo "${p#/proc/}"
		fi
	done
}

# home_clean: nothing of this home's runs is left: no process, no mount
# under the home, no run or chroot directory
home_clean() {
	sleep 0.2
	assert_eq "$(own_procs)" "" "processes of this home's runs"
	! grep -q " $BOXKIT_HOME" /proc/self/mountinfo || false
	assert_eq "$(ls -A "$BOXKIT_HOME/run" 2>/dev/null)" "" "run dirs"
	assert_eq "$(ls -A "$BOXKIT_HOME/jail" 2>/dev/null)" "" "chroots"
}

# home_teardown: collect a test home's leftovers; never leave a jail's bind
# mounts for bats to rm -rf through
home_teardown() {
	[ -n "${BOXKIT_HOME:-}" ] && [ -d "$BOXKIT_HOME" ] || return 0
	box gc >/dev/null 2>&1 || true
	grep -o " $BATS_TEST_TMPDIR[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

# vm_suite_setup: what the suites that boot VMs with volumes need: root, the
# kernel, the images, the provisioned virtiofsd, a home of the test's own
# with its volume store (2G, sparse); N is its named volume root
vm_suite_setup() {
	need_root
	[ -f "$TOP/build/kernels/lean/vmlinux" ] || skip "lean kernel not built: run 'make kernel-lean'"
	[ -f "$TOP/build/images/system.ext4" ] || skip "guest images not built: run 'make image'"
	[ -x "$TOP/build/virtiofsd/virtiofsd" ] || skip "no provisioned virtiofsd: run 'make deps'"
	export BOXKIT_HOME=$BATS_TEST_TMPDIR/home BOXKIT_STORE_SIZE=2G
	box setup
	N=$BOXKIT_HOME/volumes/named
}

# sandboxes_teardown: remove every sandbox of this test's home (stopping the
# running ones), collect leftovers, unmount the store and what is left of the
# test's mounts
sandboxes_teardown() {
	[ -n "${BOXKIT_HOME:-}" ] && [ -d "$BOXKIT_HOME" ] || return 0
	local n
	for n in $(box ls --json 2>/dev/null | jq -r .name); do timeout 30 box rm -f "$n" >/dev/null 2>&1; done
	box gc >/dev/null 2>&1 || true
	box setup --unmount >/dev/null 2>&1 || true
	grep -o " $BATS_TEST_TMPDIR[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

# stage_jail ID [VMM]: a jail for vm-launch --chroot in $BATS_TEST_TMPDIR/j.json
stage_jail() {
	chroot-stage create --home "$BOXKIT_HOME" --id "$1" --vmm "${2:-$(command -v qemu-system-x86_64)}" \
		--uid "$(id -u boxkit-vm)" --gid "$(id -g boxkit-vm)" --kernel "$TOP/build/kernels/lean/vmlinux" \
		--drive "$(readlink -f "$TOP/build/images/system.ext4")" \
		--drive "$(readlink -f "$TOP/build/images/rootfs.ext4")" >"$BATS_TEST_TMPDIR/j.json"
}
