#!/usr/bin/env bats
# reserve, on real filesystems: loop-mounted ext4, xfs and btrfs images and tmpfs.
load helpers

MiB=1048576

setup() {
	need_root
	M=$BATS_TEST_TMPDIR/mnt
}
teardown() { loop_cleanup; }

mkfs_for() { # TYPE -> mounted at $M
	case $1 in
	tmpfs) make_tmpfs 300 "$M" ;;
	ext4) make_loop_fs ext4 300 "$M" -m 0 ;;
	xfs) make_loop_fs xfs 300 "$M" ;;
	btrfs) make_loop_fs btrfs 300 "$M" ;;
	esac
}

# fill DIR: write until the filesystem refuses a single byte
fill_fs() {
	dd if=/dev/zero of="$1/fill" bs=1M 2>/dev/null || true
	dd if=/dev/zero of="$1/fill2" bs=4k 2>/dev/null || true
	dd if=/dev/zero of="$1/fill3" bs=512 2>/dev/null || true
	sync
}

lifecycle() {
	mkfs_for "$1"
	H=$M/home
	before=$(fs_free "$M")
	run -0 --separate-stderr reserve --home "$H" ensure
	assert_eq "$(jget .state "$output")" created
	sync
	after=$(fs_free "$M")
	echo "free before $before after $after" >&2
	[ $((before - after)) -ge $((64 * MiB - 4 * MiB)) ]
	assert_eq "$(stat -c '%a %s %F' "$H/.reserve")" "600 $((64 * MiB)) regular file"
	# a second ensure changes nothing: same inode, same mtime
	id1=$(stat -c '%i %Y %s %b' "$H/.reserve")
	sleep 1.1
	run -0 --separate-stderr reserve --home "$H" ensure
	assert_eq "$(jget .state "$output")" ok
	assert_eq "$(stat -c '%i %Y %s %b' "$H/.reserve")" "$id1" "inode/mtime/size/blocks"
	# rm, then ensure recreates it
	rm "$H/.reserve"
	run -0 --separate-stderr reserve --home "$H" ensure
	assert_eq "$(jget .state "$output")" created
	assert_eq "$(stat -c %s "$H/.reserve")" $((64 * MiB))
	# a 32 MiB file is topped up
	truncate -s 0 "$H/.reserve"
	fallocate -l $((32 * MiB)) "$H/.reserve"
	run -0 --separate-stderr reserve --home "$H" status
	assert_eq "$(jget .state "$output")" short
	run -0 --separate-stderr reserve --home "$H" ensure
	assert_eq "$(jget .state "$output")" topped-up
	[ "$(stat -c %s "$H/.reserve")" -eq $((64 * MiB)) ]
	[ $(($(stat -c %b "$H/.reserve") * 512)) -ge $((64 * MiB)) ]
}

@test "ext4: ensure takes the space, is idempotent, recreates and tops up" { lifecycle ext4; }
@test "xfs: ensure takes the space, is idempotent, recreates and tops up" { lifecycle xfs; }
@test "btrfs: ensure takes the space, is idempotent, recreates and tops up" { lifecycle btrfs; }
@test "tmpfs: ensure takes the space, is idempotent, recreates and tops up" { lifecycle tmpfs; }

@test "hysteresis: free below twice the size defers, exactly twice allocates" {
	mkfs_for ext4
	H=$M/home
	mkdir -p "$H"
	free=$(fs_free "$M")
	# free is a multiple of the block size: the closest integer size with
	# free < 2*size is free/2 + 1
	run -0 --separate-stderr reserve --home "$H" ensure --size $((free / 2 + 1))
	assert_eq "$(jget .state "$output")" deferred
	assert_contains "$stderr" "reserve: warning: deferring the reserve"
	[ ! -e "$H/.reserve" ]
	assert_eq "$(fs_free "$M")" "$free" "free after deferring"
	run -0 --separate-stderr reserve --home "$H" ensure --size $((free / 2))
	assert_eq "$(jget .state "$output")" created
	assert_eq "$(stat -c %s "$H/.reserve")" $((free / 2))
}

@test "hysteresis: a full-size reserve with 0 bytes free is left alone" {
	mkfs_for ext4
	H=$M/home
	reserve --home "$H" ensure >/dev/null
	id1=$(stat -c '%i %Y %b' "$H/.reserve")
	fill_fs "$M"
	assert_eq "$(fs_free "$M")" 0 "free"
	run -0 --separate-stderr reserve --home "$H" ensure
	assert_eq "$(jget .state "$output")" ok
	assert_eq "$(stat -c '%i %Y %b' "$H/.reserve")" "$id1"
}

@test "ext4 without extents (no fallocate) takes the zero-write path" {
	mkfs_for ext4
	umount "$M"
	img=$(ls "$BATS_TEST_TMPDIR"/fs-ext4-*.img)
	mkfs.ext4 -q -F -O ^extents,^64bit -m 0 "$img"
	mount -o loop "$img" "$M"
	H=$M/home
	mkdir -p "$H"
	# prove this filesystem refuses fallocate
	run ! fallocate -l 1M "$M/probe"
	assert_contains "$output" "Operation not supported"
	run -0 --separate-stderr reserve -v --home "$H" ensure
	assert_contains "$stderr" "fallocate not supported"
	assert_eq "$(jget .state "$output")" created
	[ $(($(stat -c %b "$H/.reserve") * 512)) -ge $((64 * MiB)) ]
}

@test "recovery: a full filesystem refuses a byte; release frees it; the write succeeds" {
	mkfs_for ext4
	H=$M/home
	reserve --home "$H" ensure >/dev/null
	fill_fs "$M"
	run ! bash -c "printf x >'$M/one-byte'"
	assert_contains "$output" "No space left on device"
	run -0 --separate-stderr reserve --home "$H" release
	[ "$(jget .freed "$output")" -ge $((64 * MiB)) ]
	[ ! -e "$H/.reserve" ]
	printf x >"$M/one-byte"
	assert_eq "$(cat "$M/one-byte")" x
	# release again: nothing to free, still exit 0
	run -0 --separate-stderr reserve --home "$H" release
	assert_eq "$(jget .freed "$output")" 0
	# and ensure now defers instead of taking the lifeboat straight back
	run -0 --separate-stderr reserve --home "$H" ensure
	assert_eq "$(jget .state "$output")" deferred
}

@test "ENOSPC from a boxkit tool prints the reserve release hint" {
	mkfs_for ext4
	H=$M/home
	mkdir -p "$H/volumes/named"
	fill_fs "$M"
	run -3 --separate-stderr volspec-parse --home "$H" newvol:/d
	assert_contains "$stderr" "No space left on device"
	assert_contains "$stderr" "hint: no space left on the host; 'reserve release'"
}

@test "concurrent ensure runs end with exactly one file of the right size" {
	mkfs_for ext4
	H=$M/home
	for i in $(seq 6); do reserve --home "$H" ensure >"$BATS_TEST_TMPDIR/o$i" 2>&1 & done
	wait
	assert_eq "$(ls -A "$H")" .reserve
	assert_eq "$(stat -c %s "$H/.reserve")" $((64 * MiB))
	assert_eq "$(cat "$BATS_TEST_TMPDIR"/o* | jq -r .state | sort | uniq -c | tr -s ' \n' ' ')" " 1 created 5 ok "
}

@test "a symlink at the reserve path is refused, never followed" {
	H=$BATS_TEST_TMPDIR/home
	mkdir -p "$H"
	echo precious >"$BATS_TEST_TMPDIR/target"
	ln -s "$BATS_TEST_TMPDIR/target" "$H/.reserve"
	run -1 --separate-stderr reserve --home "$H" ensure
	assert_contains "$stderr" "is a symlink; refusing to follow it"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/target")" precious
	assert_eq "$(stat -c %s "$BATS_TEST_TMPDIR/target")" 9
}

# plant KIND PATH: something that is not a regular file at PATH
plant() {
	case $1 in
	directory) mkdir "$2" ;;
	symlink) ln -s "$BATS_TEST_TMPDIR/target" "$2" ;;
	FIFO) mkfifo "$2" ;;
	socket) python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$2" ;;
	"character device") mknod "$2" c 1 3 ;; # /dev/null's numbers
	"block device") mknod "$2" b 240 0 ;;   # a local/experimental major: no driver behind it
	esac
}
NOT_REGULAR=(directory symlink FIFO socket "character device" "block device")

@test "not a regular file at the reserve path: ensure refuses each kind with exit 1 at once, changing nothing" {
	H=$BATS_TEST_TMPDIR/home
	mkdir -p "$H"
	echo precious >"$BATS_TEST_TMPDIR/target"
	for kind in "${NOT_REGULAR[@]}"; do
		plant "$kind" "$H/.reserve"
		before=$(stat -c '%F %i %s %Y' "$H/.reserve")
		# a FIFO must never be waited on: timeout turns a hang into a failure
		run -1 --separate-stderr timeout 10 reserve --home "$H" ensure --size 1M
		assert_eq "$output" "" "$kind: stdout"
		if [ "$kind" = symlink ]; then
			assert_contains "$stderr" "reserve: error: '$H/.reserve' is a symlink; refusing to follow it"
		else
			assert_contains "$stderr" "reserve: error: '$H/.reserve' is a $kind, not a regular file; refusing to touch it"
		fi
		assert_eq "$(stat -c '%F %i %s %Y' "$H/.reserve")" "$before" "$kind: left as it was"
		assert_eq "$(ls -A "$H")" .reserve "$kind: nothing else created"
		rm -r "$H/.reserve"
	done
	assert_eq "$(cat "$BATS_TEST_TMPDIR/target")" precious
	# a regular file of another uid is not ours either
	echo theirs >"$H/.reserve"
	chown nobody "$H/.reserve"
	run -1 --separate-stderr timeout 10 reserve --home "$H" ensure --size 1M
	assert_contains "$stderr" "is owned by uid $(id -u nobody), not by uid $(id -u); refusing to touch it"
	assert_eq "$(cat "$H/.reserve")" theirs
}

@test "not a regular file at the reserve path: release refuses each kind with exit 1 and leaves it" {
	H=$BATS_TEST_TMPDIR/home
	mkdir -p "$H"
	echo precious >"$BATS_TEST_TMPDIR/target"
	for kind in "${NOT_REGULAR[@]}"; do
		plant "$kind" "$H/.reserve"
		before=$(stat -c '%F %i' "$H/.reserve")
		run -1 --separate-stderr timeout 10 reserve --home "$H" release
		assert_eq "$output" "" "$kind: stdout"
		assert_contains "$stderr" "reserve: error: '$H/.reserve' is a $kind, not boxkit's reserve; refusing to remove it"
		assert_eq "$(stat -c '%F %i' "$H/.reserve")" "$before" "$kind: left where it is"
		rm -r "$H/.reserve"
	done
	assert_eq "$(cat "$BATS_TEST_TMPDIR/target")" precious
	# a regular file is released whoever owns it: the reserve can always be given back
	head -c 4096 /dev/zero >"$H/.reserve"
	chown nobody "$H/.reserve"
	run -0 --separate-stderr timeout 10 reserve --home "$H" release
	assert_eq "$(jget .state "$output")" missing
	[ ! -e "$H/.reserve" ]
}

@test "not a regular file at the reserve path: status reports each kind as not-regular, exit 0" {
	H=$BATS_TEST_TMPDIR/home
	mkdir -p "$H"
	echo precious >"$BATS_TEST_TMPDIR/target"
	for kind in "${NOT_REGULAR[@]}"; do
		plant "$kind" "$H/.reserve"
		run -0 --separate-stderr timeout 10 reserve --home "$H" status --size 1M
		assert_eq "$stderr" "" "$kind: stderr"
		assert_eq "$(jq -c '[.state, .size, .allocated, .path]' <<<"$output")" "[\"not-regular\",0,0,\"$H/.reserve\"]" "$kind"
		[ -e "$H/.reserve" ] || [ -L "$H/.reserve" ]
		rm -r "$H/.reserve"
	done
}

@test "status reports path, sizes, free bytes and state" {
	H=$BATS_TEST_TMPDIR/home
	run -0 --separate-stderr reserve --home "$H" status
	assert_eq "$(jq -c 'keys' <<<"$output")" '["allocated","free","path","size","state","target_size"]'
	assert_eq "$(jget .state "$output")" missing
	reserve --home "$H" ensure --size 1M >/dev/null
	run -0 --separate-stderr reserve --home "$H" status --size 1M
	assert_eq "$(jget .state "$output")" ok
	assert_eq "$(jget .path "$output")" "$H/.reserve"
	assert_eq "$(jget .size "$output")" $MiB
}

@test "usage errors exit 2" {
	run -2 --separate-stderr reserve
	assert_contains "$stderr" "no command given"
	run -2 --separate-stderr reserve frobnicate
	assert_contains "$stderr" "unknown command 'frobnicate'"
	run -2 --separate-stderr reserve ensure --size -5
	assert_contains "$stderr" "invalid size '-5'"
	run -0 reserve --help
	assert_contains "$output" "tools/reserve/reserve.1.md"
}
