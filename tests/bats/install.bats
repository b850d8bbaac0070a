#!/usr/bin/env bats
# make install into a temporary prefix: the installed box works from any
# directory (a real sandboxed command, a sandbox with exec), man box works,
# the completion is there; make uninstall leaves nothing.
load helpers

setup() {
	need_root
	[ -f "$TOP/build/kernels/lean/vmlinux" ] || skip "lean kernel not built: run 'make kernel-lean'"
	[ -f "$TOP/build/images/system.ext4" ] || skip "guest images not built: run 'make image'"
	[ -x "$TOP/build/virtiofsd/virtiofsd" ] || skip "no provisioned virtiofsd: run 'make deps'"
	command -v go-md2man >/dev/null || skip "no go-md2man: run 'make deps'"
	P=$BATS_TEST_TMPDIR/prefix
	export BOXKIT_HOME=$BATS_TEST_TMPDIR/home
}

teardown() {
	[ -n "${P:-}" ] && [ -x "$P/bin/box" ] || return 0
	local n
	for n in $("$P/bin/box" ls --json 2>/dev/null | jq -r .name); do timeout 30 "$P/bin/box" rm -f "$n" >/dev/null 2>&1; done
	"$P/bin/box" gc >/dev/null 2>&1 || true
	grep -o " $BATS_TEST_TMPDIR[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

@test "make install PREFIX=...: box runs from /, with its man pages and completion; make uninstall removes it all" {
	run -0 make -C "$TOP" --no-print-directory install PREFIX="$P"
	[ -L "$P/bin/box" ] && [ -L "$P/bin/vm-launch" ] && [ -L "$P/bin/box-ctl" ] || false
	[ -f "$P/lib/boxkit/build/kernels/lean/vmlinux" ]
	[ -f "$P/lib/boxkit/build/images/system.ext4" ] && [ -f "$P/lib/boxkit/build/images/rootfs.ext4" ] || false
	[ -x "$P/lib/boxkit/build/virtiofsd/virtiofsd" ]
	[ -f "$P/share/bash-completion/completions/box" ]
	bash -c "source '$P/share/bash-completion/completions/box'; complete -p box" | grep -q _box
	run -0 bash -c "MANPATH='$P/share/man' man -P cat box 2>/dev/null"
	assert_contains "$output" "box exec"
	run -0 bash -c "MANPATH='$P/share/man' man -P cat box-ctl 2>/dev/null"
	assert_contains "$output" "SO_PEERCRED"
	# from /, with nothing of the source tree in the environment or PATH
	run -0 --separate-stderr bash -c "cd / && env -i HOME=\$HOME PATH=/usr/sbin:/usr/bin:/sbin:/bin BOXKIT_HOME='$BOXKIT_HOME' \
		timeout 120 '$P/bin/box' run -- sh -c 'echo installed; exit 0'"
	assert_eq "$output" installed
	run -0 bash -c "cd / && env -i HOME=\$HOME PATH=/usr/sbin:/usr/bin:/sbin:/bin BOXKIT_HOME='$BOXKIT_HOME' \
		timeout 120 '$P/bin/box' create --name inst >/dev/null &&
		'$P/bin/box' exec inst echo exec-ok && '$P/bin/box' rm -f inst"
	assert_eq "$output" exec-ok
	run -0 "$P/bin/box" --version
	assert_eq "$output" "box (boxkit) $(cat "$TOP/VERSION")"
	run -0 make -C "$TOP" --no-print-directory uninstall PREFIX="$P"
	assert_eq "$(find "$P" -type f -o -type l)" "" "files left after uninstall"
}
