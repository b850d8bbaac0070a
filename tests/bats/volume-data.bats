#!/usr/bin/env bats
# Data in and out of named volumes: volume-tar import/export/stat and box's
# volume import/export/inspect and cp. The archive and the volume are both
# hostile: every attack below is performed for real and must be refused with
# nothing written anywhere, in the volume or out of it. Races are made to
# happen at the exact point with the test build's pause points
# (BOXKIT_TEST_PAUSE=volume-tar-...).
load helpers

setup() {
	need_root
	export BOXKIT_HOME=$BATS_TEST_TMPDIR/home BOXKIT_STORE_SIZE=2G
	box setup
	N=$BOXKIT_HOME/volumes/named
	# the "outside": a host place no import may ever reach
	OUT=$BATS_TEST_TMPDIR/outside
	MKTAR=$TOP/tests/helpers/mktar.py
	P=$BATS_TEST_TMPDIR/pause
	mkdir -p "$P"
	U=$(id -u boxkit-vm)
	G=$(id -g boxkit-vm)
}

teardown() {
	if [ -f "$BATS_TEST_TMPDIR/nonroot-dir" ]; then rm -rf "$(cat "$BATS_TEST_TMPDIR/nonroot-dir")"; fi
	sandboxes_teardown
}

# listing DIR: every entry below DIR, one line each: name (newline shown as
# ?), type, mode, size and link count (files), mtime with nanoseconds, link
# target; sorted
listing() {
	(cd "$1" && find . -mindepth 1 -printf '%P\0%y %m %s %n %T@ %l\0' | tr '\n\0' '?\n' | paste -d'|' - - |
		awk -F'|' '{ split($2, a, " "); if (a[1] == "d") { a[3] = "-"; a[4] = "-" } print $1 "|" a[1], a[2], a[3], a[4], a[5], a[6] }' |
		LC_ALL=C sort)
}
# snap NAME: the volume as it is (names, types, modes, owners, sizes, inodes)
snap() { (cd "$N/$1" && find . -printf '%p|%y|%m|%U:%G|%s|%i|%n|%l\n' | LC_ALL=C sort | md5sum); }
no_staging() { assert_eq "$(find "$N" -name '.boxkit-import-*' | wc -l)" 0 "staging directories left"; }

# a volume with one file in it
vol_with_keep() {
	mkdir -p "$N/$1"
	echo kept >"$N/$1/keep"
	chown -R "$U:$G" "$N/$1"
}

# refused_import NAME SPEC...: an archive of these members is refused with
# exit 1, a message naming the offending entry, and nothing changed
refused_import() {
	local name=$1
	shift
	"$MKTAR" "$BATS_TEST_TMPDIR/a.tar" "$@"
	before=$(snap "$name")
	run -1 --separate-stderr volume-tar import --home "$BOXKIT_HOME" --uid "$U" --gid "$G" "$name" <"$BATS_TEST_TMPDIR/a.tar"
	assert_eq "$output" ""
	assert_contains "$stderr" "volume-tar: error: "
	assert_contains "$stderr" "nothing was imported"
	assert_eq "$(snap "$name")" "$before" "the volume"
	no_staging
	[ ! -e "$OUT" ] || { echo "something was written to $OUT" >&2; false; }
}

# ---- round trips ---------------------------------------------------------------------

make_tree() { # DIR: odd names, empty dirs, hard links, symlinks, modes, mtimes
	local s=$1
	mkdir -p "$s/a/b/c" "$s/empty" "$s/private"
	echo one >"$s/sp ace"
	echo two >"$s/new"$'\n'"line"
	echo three >"$s/ünïcödé ✓"
	echo four >"$s/-dash"
	echo five >"$s/"$'\xff\xfe'"bytes"
	head -c 300000 /dev/urandom >"$s/a/b/c/big"
	echo linked >"$s/a/one"
	ln "$s/a/one" "$s/a/b/two"
	ln -s b/c "$s/a/lnk"
	ln -s ../../sp\ ace "$s/a/b/up"
	ln -s nowhere "$s/dangling"
	chmod 0640 "$s/sp ace"
	chmod 0751 "$s/a/b"
	chmod 0700 "$s/private"
	chmod 0555 "$s/a/b/c/big"
	find "$s" -mindepth 1 -exec touch -h -d @1000000000.123456789 {} +
	touch -h -d @1234567890.5 "$s/a/lnk" "$s/a/b"
}

@test "round trip: odd names, empty dirs, hard links, symlinks, modes and mtimes survive import and export" {
	S=$BATS_TEST_TMPDIR/src
	make_tree "$S"
	run -0 --separate-stderr bash -c "tar --format=pax -C '$S' -cf - . | box volume import data"
	assert_eq "$stderr" ""
	assert_eq "$(listing "$N/data")" "$(listing "$S")" "the volume against the source"
	cmp "$S/a/b/c/big" "$N/data/a/b/c/big"
	assert_eq "$(stat -c %i "$N/data/a/one")" "$(stat -c %i "$N/data/a/b/two")" "hard link"
	# ownership mapped to the VM's user, whatever the archive said
	assert_eq "$(find "$N/data" -mindepth 1 ! -user "$U" | wc -l)" 0 "entries not the VM user's"
	assert_eq "$(find "$N/data" -mindepth 1 ! -group "$G" | wc -l)" 0 "entries not the VM group's"
	no_staging

	box volume export data >"$BATS_TEST_TMPDIR/out.tar"
	# owners 0:0 by number, a hard link kept as one, no entry for the root
	assert_eq "$(tar --numeric-owner -tvf "$BATS_TEST_TMPDIR/out.tar" | awk '{print $2}' | sort -u)" "0/0"
	tar -tvf "$BATS_TEST_TMPDIR/out.tar" | grep -E "^h.* link to a/(one|b/two)$"
	assert_eq "$(tar -tf "$BATS_TEST_TMPDIR/out.tar" | grep -cx '\./\|\.')" 0 "entries for the root"
	D=$BATS_TEST_TMPDIR/dst
	mkdir "$D"
	tar -C "$D" -xpf "$BATS_TEST_TMPDIR/out.tar"
	assert_eq "$(listing "$D")" "$(listing "$S")" "the export against the source"
	diff -r --no-dereference "$S" "$D"
}

@test "a compressed stream is imported too (gzip, zstd); an empty one imports nothing" {
	mkdir -p "$BATS_TEST_TMPDIR/s" && echo gz >"$BATS_TEST_TMPDIR/s/g"
	tar -C "$BATS_TEST_TMPDIR/s" -czf - g | box volume import data
	assert_eq "$(cat "$N/data/g")" gz
	echo zs >"$BATS_TEST_TMPDIR/s/z"
	tar -C "$BATS_TEST_TMPDIR/s" --zstd -cf - z | box volume import data
	assert_eq "$(cat "$N/data/z")" zs
	before=$(snap data)
	run -0 --separate-stderr box volume import data </dev/null
	assert_eq "$(snap data)" "$before"
}

@test "a sparse member (GNU tar -S) is unpacked with its holes, byte for byte" {
	mkdir -p "$BATS_TEST_TMPDIR/s"
	f=$BATS_TEST_TMPDIR/s/sparse
	echo start >"$f"
	truncate -s 20M "$f"
	echo middle | dd of="$f" bs=1 seek=$((8 * 1024 * 1024)) conv=notrunc status=none
	truncate -s 40M "$f"
	tar -C "$BATS_TEST_TMPDIR/s" -S -cf - sparse | box volume import data
	cmp "$f" "$N/data/sparse"
	[ "$(stat -c %b "$N/data/sparse")" -lt 1024 ] || { echo "holes filled: $(stat -c %b "$N/data/sparse") blocks" >&2; false; }
}

@test "setuid and setgid bits are dropped on import and on export; other bits kept" {
	mkdir -p "$BATS_TEST_TMPDIR/s/sg"
	echo x >"$BATS_TEST_TMPDIR/s/suid"
	chmod 4755 "$BATS_TEST_TMPDIR/s/suid"
	chmod 3775 "$BATS_TEST_TMPDIR/s/sg"
	tar -C "$BATS_TEST_TMPDIR/s" -cf - . | box volume import data
	assert_eq "$(stat -c %a "$N/data/suid") $(stat -c %a "$N/data/sg")" "755 1775"
	# a guest's set-id file never comes out set-id (the archive says owner 0)
	echo y >"$N/data/guest-suid"
	chmod 6755 "$N/data/guest-suid"
	run -0 --separate-stderr bash -c "box volume export data | tar -tvf - guest-suid"
	assert_contains "$output" "-rwxr-xr-x"
}

# ---- attacks on import: each refused, nothing written anywhere ------------------------

@test "import: a name with '..' is refused, nothing written in the volume or beside it" {
	vol_with_keep data
	refused_import data "f:ok" "f:../x"
	assert_contains "$stderr" "entry '../x': a '..' component"
	[ ! -e "$N/x" ]
	# '..' that stays beneath (a/../b) is refused as well: only clean names
	refused_import data "d:a" "f:a/../b"
	assert_contains "$stderr" "entry 'a/../b': a '..' component"
	[ ! -e "$N/data/b" ]
	[ ! -e "$N/data/a" ]
}

@test "import: an absolute name is refused (it names a place outside under BATS_TEST_TMPDIR)" {
	vol_with_keep data
	refused_import data "f:ok" "f:$OUT"
	assert_contains "$stderr" "entry '$OUT': an absolute name"
	refused_import data "f:ok" "d:$OUT/" "f:$OUT/x"
}

@test "import: a symlink out of the volume is refused (absolute, or '..' past the root)" {
	vol_with_keep data
	refused_import data "f:ok" "l:l:$OUT"
	assert_contains "$stderr" "entry 'l': its target is absolute"
	refused_import data "f:ok" "l:l:.."
	assert_contains "$stderr" "entry 'l': its target leads out of the volume"
	refused_import data "d:d" "l:d/l:../../keep"
	refused_import data "l:l:d/../../x"
	assert_contains "$stderr" "'..' after a name"
	# links inside the volume are fine
	"$MKTAR" - "d:d" "l:d/up:../keep" "l:d/self:." | volume-tar import --home "$BOXKIT_HOME" data
	assert_eq "$(readlink "$N/data/d/up")" ../keep
}

@test "import: the symlink-then-file trick is refused (l -> outside or .., then l/x)" {
	vol_with_keep data
	mkdir -p "$BATS_TEST_TMPDIR/target"
	refused_import data "f:ok" "l:l:$BATS_TEST_TMPDIR/target" "f:l/x"
	[ ! -e "$BATS_TEST_TMPDIR/target/x" ]
	refused_import data "f:ok" "l:l:.." "f:l/x"
	[ ! -e "$N/x" ]
}

@test "import: nothing is created beneath a symlink, even one that points inside (RESOLVE_NO_SYMLINKS)" {
	vol_with_keep data
	refused_import data "f:ok" "d:sub" "l:l:sub" "f:l/x"
	assert_contains "$stderr" "entry 'l/x': it lies beneath a symlink"
	refused_import data "d:sub" "l:l:sub" "d:l/deeper" "f:l/deeper/x"
	# nor beneath a file
	refused_import data "f:f" "f:f/x"
	# the same through the component-by-component walk used where openat2 is missing
	if grep -q BOXKIT_NO_OPENAT2 "$BIN_DIR/volume-tar"; then
		export BOXKIT_NO_OPENAT2=1
		refused_import data "f:ok" "d:sub" "l:l:sub" "f:l/x"
		refused_import data "d:sub" "l:l:sub" "d:l/deeper" "f:l/deeper/x"
		"$MKTAR" - "d:sub" "f:sub/x" "l:l:sub" | volume-tar import --home "$BOXKIT_HOME" data
		[ -f "$N/data/sub/x" ]
	fi
}

@test "import: a hard link to anything but a file this archive unpacked is refused" {
	vol_with_keep data
	mkdir -p "$BATS_TEST_TMPDIR/h" && echo secret >"$BATS_TEST_TMPDIR/h/secret"
	refused_import data "f:ok" "h:hl:$BATS_TEST_TMPDIR/h/secret"
	assert_contains "$stderr" "a hard link whose target is an absolute name"
	refused_import data "f:ok" "h:hl:../../../../h/secret"
	# a file of the volume, not of this archive
	refused_import data "f:ok" "h:hl:keep"
	assert_contains "$stderr" "a hard link to 'keep', which is not a file this archive unpacked"
	# a directory of the archive
	refused_import data "d:d" "h:hl:d"
	assert_eq "$(stat -c %h "$BATS_TEST_TMPDIR/h/secret")" 1 "links of the outside file"
	# a file of the archive: fine
	"$MKTAR" - "f:f:same" "h:g:f" | volume-tar import --home "$BOXKIT_HOME" data
	assert_eq "$(stat -c %i "$N/data/f")" "$(stat -c %i "$N/data/g")"
}

@test "import: device nodes and FIFOs are refused" {
	vol_with_keep data
	refused_import data "f:ok" "c:dev"
	assert_contains "$stderr" "entry 'dev': a character device"
	refused_import data "f:ok" "b:blk"
	assert_contains "$stderr" "entry 'blk': a block device"
	refused_import data "f:ok" "p:fifo"
	assert_contains "$stderr" "entry 'fifo': a FIFO"
}

@test "import: names and depths past the bounds are refused" {
	vol_with_keep data
	long=$(printf 'n%.0s' $(seq 256))
	refused_import data "f:ok" "f:$long"
	assert_contains "$stderr" "a component longer than 255 bytes"
	deep=$(printf 'a/%.0s' $(seq 129))x
	refused_import data "f:$deep"
	assert_contains "$stderr" "more than 128 levels deep"
	huge=$(printf 'abcdefghij/%.0s' $(seq 400))x
	refused_import data "f:$huge"
	assert_contains "$stderr" "4096 bytes or longer"
}

@test "import: a bad entry after many good ones leaves nothing (staging, then rollback)" {
	vol_with_keep data
	specs=()
	for n in $(seq 40); do specs+=("f:f$n" "d:d$n" "f:d$n/x"); done
	refused_import data "${specs[@]}" "p:late-fifo"
	assert_contains "$stderr" "entry 'late-fifo': a FIFO"
	# a stream cut short
	"$MKTAR" "$BATS_TEST_TMPDIR/full.tar" "F:big:200000" "f:after"
	head -c 100000 "$BATS_TEST_TMPDIR/full.tar" >"$BATS_TEST_TMPDIR/cut.tar"
	before=$(snap data)
	run -1 --separate-stderr volume-tar import --home "$BOXKIT_HOME" data <"$BATS_TEST_TMPDIR/cut.tar"
	assert_contains "$stderr" "not a valid tar archive"
	assert_eq "$(snap data)" "$before"
	no_staging
	run -1 --separate-stderr volume-tar import --home "$BOXKIT_HOME" data < <(head -c 5000 /dev/urandom)
	assert_eq "$(snap data)" "$before"
}

@test "import: a name that already exists in the volume is refused and what was moved is moved back" {
	vol_with_keep data
	ino=$(stat -c %i "$N/data/keep")
	# committed in name order: a-new goes in first, then keep collides
	refused_import data "f:a-new" "d:b-dir" "f:b-dir/x" "f:keep:replaced"
	assert_contains "$stderr" "'keep' already exists in the volume"
	[ ! -e "$N/data/a-new" ]
	[ ! -e "$N/data/b-dir" ]
	assert_eq "$(cat "$N/data/keep") $(stat -c %i "$N/data/keep")" "kept $ino"
}

@test "race: a name the guest creates while the import commits is never replaced; the import is moved back" {
	grep -q BOXKIT_TEST_PAUSE "$BIN_DIR/volume-tar" || skip "needs the test build's pause points (BIN_DIR=build/test/bin)"
	vol_with_keep data
	"$MKTAR" "$BATS_TEST_TMPDIR/a.tar" "f:a" "f:b:from-archive" "f:c"
	BOXKIT_TEST_PAUSE=volume-tar-commit BOXKIT_TEST_PAUSE_DIR=$P timeout 60 volume-tar import --home "$BOXKIT_HOME" \
		data <"$BATS_TEST_TMPDIR/a.tar" >"$BATS_TEST_TMPDIR/o" 2>"$BATS_TEST_TMPDIR/e" &
	bp=$!
	wait_for "$P/volume-tar-commit.reached" 300 || { cat "$BATS_TEST_TMPDIR/e" >&2; false; }
	# the guest, in its volume, at the last moment
	echo guest >"$N/data/b"
	touch "$P/volume-tar-commit.go"
	rc=0
	wait "$bp" || rc=$?
	assert_eq "$rc" 1 "exit status"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/e")" "'b' already exists in the volume"
	assert_eq "$(cat "$N/data/b")" guest "the guest's file"
	[ ! -e "$N/data/a" ]
	[ ! -e "$N/data/c" ]
	no_staging
}

@test "race: --into swapped for a symlink to the outside after it was opened: the import stays in the volume" {
	grep -q BOXKIT_TEST_PAUSE "$BIN_DIR/volume-tar" || skip "needs the test build's pause points (BIN_DIR=build/test/bin)"
	mkdir -p "$N/data/sub" "$OUT"
	"$MKTAR" "$BATS_TEST_TMPDIR/a.tar" "f:x" "d:y" "f:y/z"
	BOXKIT_TEST_PAUSE=volume-tar-import-target BOXKIT_TEST_PAUSE_DIR=$P timeout 60 volume-tar import \
		--home "$BOXKIT_HOME" --into sub data <"$BATS_TEST_TMPDIR/a.tar" 2>"$BATS_TEST_TMPDIR/e" &
	bp=$!
	wait_for "$P/volume-tar-import-target.reached" 300 || { cat "$BATS_TEST_TMPDIR/e" >&2; false; }
	mv "$N/data/sub" "$N/data/sub.moved"
	ln -s "$OUT" "$N/data/sub"
	touch "$P/volume-tar-import-target.go"
	wait "$bp"
	assert_eq "$(ls -A "$OUT")" "" "the outside"
	assert_eq "$(cat "$N/data/sub.moved/x")" "data of x"
	[ -f "$N/data/sub.moved/y/z" ]
	# and given as a symlink from the start, --into is refused
	run -1 --separate-stderr volume-tar import --home "$BOXKIT_HOME" --into sub data <"$BATS_TEST_TMPDIR/a.tar"
	assert_contains "$stderr" "not a directory of volume 'data'"
	assert_eq "$(ls -A "$OUT")" ""
}

@test "import: no space in a volume with a size limit: exit 3 with the hint, nothing left" {
	box volume create --size 2M small
	before=$(snap small)
	"$MKTAR" "$BATS_TEST_TMPDIR/big.tar" "f:first" "F:big:6000000"
	run -3 --separate-stderr volume-tar import --home "$BOXKIT_HOME" small <"$BATS_TEST_TMPDIR/big.tar"
	assert_contains "$stderr" "No space left on device"
	assert_contains "$stderr" "hint: no space left"
	assert_eq "$(snap small)" "$before"
	no_staging
}

@test "import: SIGTERM in the middle of the stream leaves nothing (exit 3)" {
	vol_with_keep data
	"$MKTAR" "$BATS_TEST_TMPDIR/a.tar" "d:dir" "F:dir/big:3000000" "f:after"
	before=$(snap data)
	mkfifo "$BATS_TEST_TMPDIR/in"
	volume-tar import --home "$BOXKIT_HOME" data <"$BATS_TEST_TMPDIR/in" 2>"$BATS_TEST_TMPDIR/e" &
	bp=$!
	exec 5>"$BATS_TEST_TMPDIR/in"
	head -c 1000000 "$BATS_TEST_TMPDIR/a.tar" >&5
	# the staging directory holds the file half written, and the writer waits
	for _ in $(seq 100); do
		[ -n "$(find "$N/data" -path '*/.boxkit-import-*/dir/big' 2>/dev/null)" ] && break
		sleep 0.1
	done
	[ -n "$(find "$N/data" -path '*/.boxkit-import-*/dir/big')" ]
	kill -TERM "$bp"
	rc=0
	wait "$bp" || rc=$?
	exec 5>&-
	assert_eq "$rc" 3 "exit status"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/e")" "interrupted; nothing was imported"
	assert_eq "$(snap data)" "$before"
	no_staging
}

@test "import: the producer (-- CMD) must succeed, or nothing is imported" {
	vol_with_keep data
	mkdir -p "$BATS_TEST_TMPDIR/s" && echo a >"$BATS_TEST_TMPDIR/s/a"
	before=$(snap data)
	# a valid archive, but its maker failed (as tar does when it cannot read a file)
	run -1 --separate-stderr volume-tar import --home "$BOXKIT_HOME" data -- sh -c "tar -C '$BATS_TEST_TMPDIR/s' -cf - a; exit 2"
	assert_contains "$stderr" "'sh' failed (exit 2); nothing was imported"
	assert_eq "$(snap data)" "$before"
	no_staging
	run -0 --separate-stderr volume-tar import --home "$BOXKIT_HOME" data -- tar -C "$BATS_TEST_TMPDIR/s" -cf - a
	assert_eq "$(cat "$N/data/a")" a
}

# ---- export of a hostile volume -----------------------------------------------------------

@test "export: a FIFO, a socket and a device in the volume are skipped without blocking; a symlink out stays a symlink" {
	mkdir -p "$N/data/d" "$OUT"
	echo host-secret-content >"$OUT/secret"
	echo fine >"$N/data/d/file"
	mkfifo "$N/data/fifo"
	mknod "$N/data/dev" c 1 3
	python3 -c "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$N/data/sock"
	ln -s "$OUT/secret" "$N/data/out-link"
	ln -s ../../../../../../../../outside/secret "$N/data/d/up-link"
	run -0 --separate-stderr timeout 20 volume-tar export --home "$BOXKIT_HOME" data
	assert_contains "$stderr" "'fifo' is a FIFO; skipped"
	assert_contains "$stderr" "'sock' is a socket; skipped"
	assert_contains "$stderr" "'dev' is a device node; skipped"
	timeout 20 volume-tar export --home "$BOXKIT_HOME" data 2>/dev/null >"$BATS_TEST_TMPDIR/x.tar"
	assert_eq "$(tar -tf "$BATS_TEST_TMPDIR/x.tar" | LC_ALL=C sort | tr '\n' ' ')" "d/ d/file d/up-link out-link "
	tar -tvf "$BATS_TEST_TMPDIR/x.tar" | grep -q "^l.* out-link -> $OUT/secret$"
	assert_eq "$(grep -c host-secret-content "$BATS_TEST_TMPDIR/x.tar")" 0 "the outside file's content in the archive"
	# --path through the symlink is refused; naming the symlink gives the symlink
	run -1 --separate-stderr volume-tar export --home "$BOXKIT_HOME" --path out-link/x data
	run -0 --separate-stderr bash -c "volume-tar export --home '$BOXKIT_HOME' --path out-link data | tar -tvf -"
	assert_contains "$output" "out-link -> $OUT/secret"
}

@test "race: a file swapped for a FIFO between the look and the open is skipped, never waited on" {
	grep -q BOXKIT_TEST_PAUSE "$BIN_DIR/volume-tar" || skip "needs the test build's pause points (BIN_DIR=build/test/bin)"
	mkdir -p "$N/data/d"
	echo original >"$N/data/f"
	BOXKIT_TEST_PAUSE=volume-tar-export-open BOXKIT_TEST_PAUSE_DIR=$P timeout 20 volume-tar export --home "$BOXKIT_HOME" \
		data >"$BATS_TEST_TMPDIR/x.tar" 2>"$BATS_TEST_TMPDIR/e" &
	bp=$!
	wait_for "$P/volume-tar-export-open.reached" 300 || { cat "$BATS_TEST_TMPDIR/e" >&2; false; }
	rm "$N/data/f"
	mkfifo "$N/data/f"
	touch "$P/volume-tar-export-open.go"
	rc=0
	wait "$bp" || rc=$?
	assert_eq "$rc" 0 "exit status (124: it waited on the FIFO)"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/e")" "'f' changed while it was being read"
	assert_eq "$(tar -tf "$BATS_TEST_TMPDIR/x.tar")" "d/"
}

# paused_export POINT: export volume data, stopped at POINT
paused_export() {
	BOXKIT_TEST_PAUSE=$1 BOXKIT_TEST_PAUSE_DIR=$P timeout 20 volume-tar export --home "$BOXKIT_HOME" \
		data >"$BATS_TEST_TMPDIR/x.tar" 2>"$BATS_TEST_TMPDIR/e" &
	bp=$!
	wait_for "$P/$1.reached" 300 || { cat "$BATS_TEST_TMPDIR/e" >&2; false; }
}

@test "race: a file that shrinks or grows while it is read still gives a valid archive of its size" {
	grep -q BOXKIT_TEST_PAUSE "$BIN_DIR/volume-tar" || skip "needs the test build's pause points (BIN_DIR=build/test/bin)"
	mkdir -p "$N/data/zdir"
	head -c 1048576 /dev/zero | tr '\0' A >"$N/data/f"
	ln -s f "$N/data/link"
	paused_export volume-tar-export-read
	truncate -s 100 "$N/data/f"
	touch "$P/volume-tar-export-read.go"
	wait "$bp"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/e")" "'f' shrank while it was being read; padded with zeros"
	tar -tvf "$BATS_TEST_TMPDIR/x.tar" | grep -q " 1048576 .* f$"
	assert_eq "$(tar -tf "$BATS_TEST_TMPDIR/x.tar" | LC_ALL=C sort | tr '\n' ' ')" "f link zdir/ "
	mkdir "$BATS_TEST_TMPDIR/d1" && tar -C "$BATS_TEST_TMPDIR/d1" -xf "$BATS_TEST_TMPDIR/x.tar"
	assert_eq "$(head -c 100 "$BATS_TEST_TMPDIR/d1/f" | tr -d A | wc -c) $(tail -c +101 "$BATS_TEST_TMPDIR/d1/f" | tr -d '\0' | wc -c)" "0 0"

	rm -f "$P"/*
	head -c 1048576 /dev/zero | tr '\0' A >"$N/data/f"
	paused_export volume-tar-export-read
	head -c 500000 /dev/zero | tr '\0' B >>"$N/data/f"
	touch "$P/volume-tar-export-read.go"
	wait "$bp"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/e")" "'f' grew while it was being read; the archive holds its first 1048576 bytes"
	mkdir "$BATS_TEST_TMPDIR/d2" && tar -C "$BATS_TEST_TMPDIR/d2" -xf "$BATS_TEST_TMPDIR/x.tar"
	assert_eq "$(stat -c %s "$BATS_TEST_TMPDIR/d2/f")" 1048576
	assert_eq "$(tr -d A <"$BATS_TEST_TMPDIR/d2/f" | wc -c)" 0
	[ -L "$BATS_TEST_TMPDIR/d2/link" ]
	[ -d "$BATS_TEST_TMPDIR/d2/zdir" ]
}

@test "export: --path names the top entry after its last component; a tree past the depth bound is exit 1" {
	mkdir -p "$N/data/a/b/c"
	echo x >"$N/data/a/b/c/x"
	run -0 --separate-stderr bash -c "volume-tar export --home '$BOXKIT_HOME' --path a/b data | tar -tf -"
	assert_eq "$(LC_ALL=C sort <<<"$output" | tr '\n' ' ')" "b/ b/c/ b/c/x "
	run -1 --separate-stderr volume-tar export --home "$BOXKIT_HOME" --path a/../a data
	run -1 --separate-stderr volume-tar export --home "$BOXKIT_HOME" --path nothing data
	assert_contains "$stderr" "no such path in volume 'data'"
	(cd "$N/data" && mkdir -p "$(printf 'd/%.0s' $(seq 130))")
	run -1 --separate-stderr bash -c "set -o pipefail; volume-tar export --home '$BOXKIT_HOME' data | tar -tf - | wc -l"
	assert_contains "$stderr" "is more than 128 levels deep; what is in it is skipped"
	# the archive is whole: every level up to the bound is in it
	assert_eq "$output" $((4 + 128))
}

# ---- usage -------------------------------------------------------------------------------

@test "usage: --help lists the exit codes; bad options are exit 2; a terminal is never the archive" {
	run -0 volume-tar --help
	assert_contains "$output" "Exit status: 0 ok, 1 refused"
	assert_contains "$output" "3 system failure"
	run -2 --separate-stderr volume-tar
	run -2 --separate-stderr volume-tar copy data
	run -2 --separate-stderr volume-tar import --home "$BOXKIT_HOME" --uid 1 data
	assert_contains "$stderr" "--uid and --gid go together"
	run -2 --separate-stderr volume-tar export --home "$BOXKIT_HOME" --into x data
	run -2 --separate-stderr volume-tar import --home "$BOXKIT_HOME" data extra
	mkdir -p "$N/data"
	run -2 --separate-stderr script -qec "volume-tar export --home '$BOXKIT_HOME' data" /dev/null
	assert_contains "$output" "refusing to write an archive to a terminal"
	run -2 --separate-stderr script -qec "volume-tar import --home '$BOXKIT_HOME' data" /dev/null
	assert_contains "$output" "refusing to read an archive from a terminal"
	run -1 --separate-stderr volume-tar import --home "$BOXKIT_HOME" nosuch </dev/null
	assert_contains "$stderr" "no volume 'nosuch'"
	run -1 --separate-stderr volume-tar import --home "$BOXKIT_HOME" ../x </dev/null
	run -1 --separate-stderr volume-tar import --home "$BOXKIT_HOME" --into ../x data </dev/null
	run -1 --separate-stderr volume-tar import --home "$BOXKIT_HOME" --as a/b data </dev/null
}

# ---- box: volume import, export, inspect, cp ------------------------------------------

@test "box volume import makes a missing volume, and removes it again when the import is refused" {
	"$MKTAR" - "f:x" | box volume import fresh
	assert_eq "$(box volume ls)" fresh
	"$MKTAR" "$BATS_TEST_TMPDIR/bad.tar" "f:x" "p:fifo"
	run -1 --separate-stderr box volume import other <"$BATS_TEST_TMPDIR/bad.tar"
	assert_eq "$(box volume ls)" fresh
	run -1 --separate-stderr box volume import fresh <"$BATS_TEST_TMPDIR/bad.tar"
	assert_eq "$(box volume ls)" fresh "a volume that was there stays"
	run -1 --separate-stderr box volume export nosuch
	assert_contains "$stderr" "no volume 'nosuch'"
	run -1 --separate-stderr box volume import ../etc </dev/null
}

@test "box volume inspect: one JSON object with the size limit and what the volume uses" {
	"$MKTAR" - "F:a:100000" "d:d" "h:d/b:a" "l:l:a" | box volume import data
	run -0 --separate-stderr box volume inspect data
	assert_eq "$(jq -r .name <<<"$output") $(jq -r .mountpoint <<<"$output") $(jq .size_limit <<<"$output")" "data $N/data null"
	assert_eq "$(jq -c '[.files, .directories, .symlinks, .others, .apparent_bytes >= 100000, .used_bytes >= 100000]' <<<"$output")" \
		'[1,1,1,0,true,true]'
	assert_eq "$(wc -l <<<"$output")" 1
	box volume create --size 3M sized
	run -0 --separate-stderr box volume inspect sized
	assert_eq "$(jq .size_limit <<<"$output")" $((3 * 1024 * 1024))
	run -1 --separate-stderr box volume inspect nosuch
}

@test "box cp into a volume: an existing directory takes the copy inside; otherwise it is made as DEST; never over a file" {
	S=$BATS_TEST_TMPDIR/s
	mkdir -p "$S/dir/sub" "$N/data/existing"
	echo f >"$S/dir/sub/f"
	echo file >"$S/file"
	box cp "$S/dir" data:existing
	assert_eq "$(cat "$N/data/existing/dir/sub/f")" f
	box cp "$S/dir" data:/made
	assert_eq "$(cat "$N/data/made/sub/f")" f
	box cp "$S/dir/." data:existing
	assert_eq "$(cat "$N/data/existing/sub/f")" f
	box cp "$S/dir/." data:made2
	assert_eq "$(cat "$N/data/made2/sub/f")" f
	box cp "$S/file" data:
	box cp "$S/file" data:renamed
	assert_eq "$(cat "$N/data/file") $(cat "$N/data/renamed")" "file file"
	assert_eq "$(stat -c %U "$N/data/made/sub/f")" boxkit-vm
	before=$(snap data)
	run -1 --separate-stderr box cp "$S/file" data:renamed
	assert_contains "$stderr" "'data:renamed' exists and is not a directory"
	run -1 --separate-stderr box cp "$S/dir" data:existing
	assert_contains "$stderr" "'dir' already exists in the volume"
	run -1 --separate-stderr box cp "$S/file" data:nodir/x
	run -1 --separate-stderr box cp "$S/file" data:new/
	run -1 --separate-stderr box cp "$S/file" data:../x
	run -1 --separate-stderr box cp "$S/nothing" data:x
	assert_eq "$(snap data)" "$before"
	run -2 --separate-stderr box cp "$S/file" "$S/other"
	run -2 --separate-stderr box cp data:a data:b
	# a tar stream on stdin
	"$MKTAR" - "f:streamed" | box cp - data:existing
	[ -f "$N/data/existing/streamed" ]
}

@test "box cp out of a volume: inside an existing directory, or made as DEST; owned by the caller; never over a file" {
	mkdir -p "$N/data/dir/sub" "$BATS_TEST_TMPDIR/host"
	echo f >"$N/data/dir/sub/f"
	chmod 0751 "$N/data/dir/sub"
	chown -R "$U:$G" "$N/data/dir"
	H=$BATS_TEST_TMPDIR/host
	box cp data:dir "$H"
	assert_eq "$(cat "$H/dir/sub/f") $(stat -c '%U %a' "$H/dir/sub")" "f root 751"
	box cp data:/dir/sub "$H/made"
	assert_eq "$(cat "$H/made/f")" f
	box cp data:dir/. "$H/content"
	assert_eq "$(cat "$H/content/sub/f")" f
	mkdir "$H/into" && box cp data:dir/. "$H/into"
	assert_eq "$(cat "$H/into/sub/f")" f
	box cp data: "$H/whole"
	assert_eq "$(cat "$H/whole/dir/sub/f")" f
	run -1 --separate-stderr box cp data:dir/sub/f "$H/made/f"
	assert_contains "$stderr" "exists and is not a directory"
	run -1 --separate-stderr box cp data:nothing "$H/n"
	[ ! -e "$H/n" ]
	run -1 --separate-stderr box cp data:dir "$H/no/such/dir"
	assert_eq "$(ls -A "$H" | grep -c '^\.box-cp')" 0 "temporary directories left"
	run -0 --separate-stderr bash -c "box cp data:dir/sub - | tar -tf -"
	assert_eq "$(LC_ALL=C sort <<<"$output" | tr '\n' ' ')" "sub/ sub/f "
}

@test "box cp out into an existing directory never replaces or re-modes what is there (a guest naming .ssh)" {
	# what a guest leaves in its volume: .ssh 0777 with its own key
	mkdir -p "$N/data/.ssh"
	echo "ssh-ed25519 AAAA attacker" >"$N/data/.ssh/authorized_keys"
	echo "new" >"$N/data/newfile"
	chmod 0777 "$N/data/.ssh"
	chown -R "$U:$G" "$N/data/.ssh" "$N/data/newfile"
	H=$BATS_TEST_TMPDIR/home-dir
	mkdir -p "$H/.ssh"
	chmod 0700 "$H/.ssh"
	echo "the user's key" >"$H/.ssh/authorized_keys"
	run -1 --separate-stderr box cp data:/. "$H"
	assert_contains "$stderr" "exists (box cp never replaces)"
	assert_eq "$(cat "$H/.ssh/authorized_keys") $(stat -c %a "$H/.ssh")" "the user's key 700"
	# all or nothing: the entry that did not clash is not there either
	[ ! -e "$H/newfile" ]
	assert_eq "$(ls -A "$H" | tr '\n' ' ')" ".ssh " "the directory"
	# and without a clash, the guest's modes arrive under the umask
	rm -rf "$H/.ssh"
	box cp data:/. "$H"
	assert_eq "$(stat -c %a "$H/.ssh")" 755 "a 0777 directory from the guest"
}

@test "export is bounded: a guest's huge sparse file is skipped (exit 1), not written out as zeros" {
	mkdir -p "$N/data"
	echo small >"$N/data/ok"
	truncate -s 2T "$N/data/huge"
	run -1 --separate-stderr timeout 60 bash -c "set -o pipefail; box volume export data | tar -tf -"
	assert_eq "$output" "ok"
	assert_contains "$stderr" "'huge' is sparse"
}

@test "not root: an archive with read-only directories fails to import and leaves nothing" {
	local d
	d=$(mktemp -d /tmp/bx-nonroot.XXXXXX)
	echo "$d" >"$BATS_TEST_TMPDIR/nonroot-dir"
	chown nobody:nogroup "$d"
	local as=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
	"${as[@]}" mkdir -p -m 0700 "$d/home/volumes/named/vv"
	"${as[@]}" touch "$d/home/volumes/named/vv/kept"
	# x/ 0555 holding a file, y/ 0000 holding a directory: this user can
	# neither move them into the volume nor, without care, remove them
	python3 - "$d/ro.tar" <<'EOP'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, mode, data=None, typ=tarfile.REGTYPE):
        i = tarfile.TarInfo(name); i.mode = mode; i.type = typ
        i.size = len(data) if data else 0
        t.addfile(i, io.BytesIO(data) if data else None)
    add("x", 0o555, typ=tarfile.DIRTYPE)
    add("x/f", 0o644, b"f\n")
    add("y", 0o000, typ=tarfile.DIRTYPE)
    add("y/z", 0o555, typ=tarfile.DIRTYPE)
EOP
	run --separate-stderr "${as[@]}" "$BIN_DIR/volume-tar" import --home "$d/home" vv <"$d/ro.tar"
	[ "$status" -ne 0 ] || { echo "imported: $output" >&2; false; }
	assert_eq "$(ls -A "$d/home/volumes/named/vv")" kept "the volume"
	rm -rf "$d"
}

# ---- with a VM -----------------------------------------------------------------------------

@test "VM: a file imported with box volume import is read in the guest; what the guest writes comes out with export" {
	[ -f "$TOP/build/kernels/lean/vmlinux" ] || skip "lean kernel not built: run 'make kernel-lean'"
	[ -f "$TOP/build/images/system.ext4" ] || skip "guest images not built: run 'make image'"
	[ -x "$TOP/build/virtiofsd/virtiofsd" ] || skip "no provisioned virtiofsd: run 'make deps'"
	"$MKTAR" - "d:in" "f:in/hello:imported from the host" | box volume import vmdata
	run -0 --separate-stderr timeout 300 box run -v vmdata:/data -- sh -c 'cat /data/in/hello; echo; echo from-guest >/data/in/reply; mkdir /data/made; ln -s ../in/reply /data/made/l'
	assert_eq "$(sed -n 1p <<<"$output")" "imported from the host"
	box volume export vmdata >"$BATS_TEST_TMPDIR/v.tar"
	mkdir "$BATS_TEST_TMPDIR/v" && tar -C "$BATS_TEST_TMPDIR/v" -xf "$BATS_TEST_TMPDIR/v.tar"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/v/in/reply")" from-guest
	assert_eq "$(readlink "$BATS_TEST_TMPDIR/v/made/l")" ../in/reply
	box cp vmdata:in/reply "$BATS_TEST_TMPDIR/reply"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/reply")" from-guest
}
