#!/usr/bin/env bats
# The build: test-only switches exist only in test builds.
load helpers

@test "a default build has none of the test-only switches; the test build has them" {
	[ -n "${DEFAULT_BIN_DIR:-}" ] || skip "DEFAULT_BIN_DIR is not set (make test and make asan set it)"
	for t in vm-launch chroot-stage volspec-parse run-record reserve oci-spec vfsd-cap-install volume-tar; do
		[ -x "$DEFAULT_BIN_DIR/$t" ]
		! grep -qa -e BOXKIT_TEST_ -e BOXKIT_FAIL_AT -e BOXKIT_STALL_AT -e BOXKIT_NO_OPENAT2 "$DEFAULT_BIN_DIR/$t" ||
			{ echo "$t has a test switch" >&2; false; }
	done
	# the check can fail: the build under test has them
	grep -qa BOXKIT_FAIL_AT "$BIN_DIR/chroot-stage"
	grep -qa BOXKIT_TEST_PAUSE "$BIN_DIR/vm-launch"
}

@test "a default build ignores BOXKIT_FAIL_AT; the test build obeys it" {
	need_root
	[ -n "${DEFAULT_BIN_DIR:-}" ] || skip "DEFAULT_BIN_DIR is not set (make test and make asan set it)"
	q=$(command -v qemu-system-x86_64)
	BOXKIT_FAIL_AT=1 run -0 --separate-stderr "$DEFAULT_BIN_DIR/chroot-stage" create --base "$BATS_TEST_TMPDIR/b1" --id x \
		--vmm "$q" --uid 65534 --gid 65534
	"$DEFAULT_BIN_DIR/chroot-stage" destroy --base "$BATS_TEST_TMPDIR/b1" --id x
	BOXKIT_FAIL_AT=1 run -3 --separate-stderr chroot-stage create --base "$BATS_TEST_TMPDIR/b2" --id x \
		--vmm "$q" --uid 65534 --gid 65534
	assert_contains "$stderr" "injected failure at step 1"
}

@test "make lint passes and make format changes nothing" {
	command -v cppcheck >/dev/null && command -v clang-format >/dev/null || skip "cppcheck or clang-format missing: run 'make deps'"
	run -0 make -C "$TOP" --no-print-directory lint
	# clang-format on a copy of each file: the tree is already in the house format
	for f in $(cd "$TOP" && git ls-files '*.c' '*.h'); do
		clang-format --style=file:"$TOP/.clang-format" "$TOP/$f" | cmp -s - "$TOP/$f" || { echo "not formatted: $f" >&2; false; }
	done
}
