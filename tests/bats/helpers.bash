# Shared helpers for boxkit's bats suites.
# BIN_DIR is overridable so the same suite runs against the sanitizer build.
: "${BIN_DIR:=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)/bin}"
TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
: "${TEST_HELPERS:=$TOP/build/obj/tests}"
export PATH="$BIN_DIR:$PATH"
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
