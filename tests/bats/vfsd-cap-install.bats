#!/usr/bin/env bats
# vfsd-cap-install: a private virtiofsd copy with exactly cap_dac_read_search=ep.
load helpers

teardown() {
	[ -f "$BATS_TEST_TMPDIR/.nobody-dir" ] && rm -rf "$(cat "$BATS_TEST_TMPDIR/.nobody-dir")"
	return 0
}

setup() {
	need_root
	SRC=$TOP/build/virtiofsd/virtiofsd
	[ -x "$SRC" ] || skip "no provisioned virtiofsd: run 'make deps'"
	H=$BATS_TEST_TMPDIR/home
	unset BOXKIT_VIRTIOFSD
}

@test "first install: stdout is exactly the path; the copy runs; getcap and --status agree" {
	w=$(vfsd-cap-install --home "$H" 2>"$BATS_TEST_TMPDIR/err")
	assert_eq "$w" "$H/bin/virtiofsd"
	assert_eq "$(vfsd-cap-install --home "$H" | wc -l)" 1 "stdout lines"
	run -0 "$w" --version
	assert_contains "$output" "virtiofsd 1."
	assert_eq "$(getcap "$w")" "$w cap_dac_read_search=ep"
	run -0 --separate-stderr vfsd-cap-install --home "$H" --status
	assert_eq "$(jget .state "$output")" ok
	assert_eq "$(jget .capabilities "$output")" cap_dac_read_search=ep
	assert_eq "$(jget .source_file_handles "$output")" true
	assert_eq "$(jget .wrapper "$output")" "$w"
	assert_eq "$(stat -c %a "$H/bin")" 700
}

# serve AS-USER COPY DIR: run the copy as that user with mandatory handles; prints its log
serve() {
	local sock=$T/sock/s-$RANDOM.sock
	run timeout 3 setpriv --reuid=nobody --regid=nogroup --clear-groups "$1" --socket-path="$sock" \
		--shared-dir="$2" --cache=auto --inode-file-handles=mandatory --sandbox=none
}

@test "the capability is what lets an unprivileged daemon use mandatory file handles" {
	# install as nobody, granted only CAP_SETFCAP, so the copy is nobody's;
	# in a directory nobody can reach (bats' own are 0700)
	T=$(mktemp -d /tmp/boxkit-vfsd-XXXXXX)
	chmod 0755 "$T"
	echo "$T" >"$BATS_TEST_TMPDIR/.nobody-dir"
	H=$T/home
	mkdir -p "$H" "$T/share" "$T/sock"
	chown nobody "$H" "$T/sock"
	w=$(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=+setfcap --ambient-caps=+setfcap \
		"$BIN_DIR/vfsd-cap-install" --home "$H" --source "$SRC")
	assert_eq "$(getcap "$w")" "$w cap_dac_read_search=ep"
	# with the capability: past the file-handle check, waiting on its socket (killed by timeout)
	serve "$w" "$T/share"
	echo "$output" >&2
	assert_eq "$status" 124 "with the capability the daemon keeps waiting"
	! grep -q "Refusing to use" <<<"$output" || false
	# an identical copy without the capability refuses
	cp "$w" "$T/sock/plain"
	chown nobody "$T/sock/plain"
	assert_eq "$(getcap "$T/sock/plain")" ""
	cmp "$w" "$T/sock/plain"
	serve "$T/sock/plain" "$T/share"
	[ "$status" -ne 124 ]
	assert_contains "$output" "Refusing to use (mandatory) file handles"
}

@test "drift: a changed source replaces the copy; no change keeps inode and mtime" {
	w=$(vfsd-cap-install --home "$H")
	id1=$(stat -c '%i %Y' "$w")
	sleep 1.1
	vfsd-cap-install --home "$H" >/dev/null
	assert_eq "$(stat -c '%i %Y' "$w")" "$id1" "unchanged copy"
	# a different binary at the same path: the copy follows it
	cp "$SRC" "$BATS_TEST_TMPDIR/src"
	printf 'x' >>"$BATS_TEST_TMPDIR/src" # different content, still runs
	run -0 --separate-stderr vfsd-cap-install --home "$H" --source "$BATS_TEST_TMPDIR/src" --status
	assert_eq "$(jget .state "$output")" stale
	vfsd-cap-install --home "$H" --source "$BATS_TEST_TMPDIR/src" >/dev/null
	[ "$(stat -c %i "$w")" != "${id1%% *}" ]
	cmp "$w" "$BATS_TEST_TMPDIR/src"
	assert_eq "$(getcap "$w")" "$w cap_dac_read_search=ep"
}

@test "tampering and a lost capability are seen and repaired" {
	w=$(vfsd-cap-install --home "$H")
	setcap -r "$w"
	assert_eq "$(vfsd-cap-install --home "$H" --status | jq -r .state)" no-capability
	vfsd-cap-install --home "$H" >/dev/null
	assert_eq "$(getcap "$w")" "$w cap_dac_read_search=ep"
	printf 'evil' >>"$w"
	assert_eq "$(vfsd-cap-install --home "$H" --status | jq -r .state)" tampered
	vfsd-cap-install --home "$H" >/dev/null
	cmp "$w" "$SRC"
}

@test "hygiene: a planted symlink is replaced, its target untouched; a symlinked bin dir is refused" {
	mkdir -p "$H/bin"
	chmod 0700 "$H/bin"
	echo precious >"$BATS_TEST_TMPDIR/mine"
	ln -s "$BATS_TEST_TMPDIR/mine" "$H/bin/virtiofsd"
	w=$(vfsd-cap-install --home "$H")
	[ ! -L "$w" ] && [ -f "$w" ] || false
	assert_eq "$(cat "$BATS_TEST_TMPDIR/mine")" precious
	assert_eq "$(getcap "$BATS_TEST_TMPDIR/mine")" ""
	H2=$BATS_TEST_TMPDIR/home2
	mkdir -p "$H2" "$BATS_TEST_TMPDIR/elsewhere"
	ln -s "$BATS_TEST_TMPDIR/elsewhere" "$H2/bin"
	run -1 --separate-stderr vfsd-cap-install --home "$H2"
	assert_eq "$output" ""
	assert_contains "$stderr" "is a symlink or not a directory"
	assert_eq "$(ls -A "$BATS_TEST_TMPDIR/elsewhere")" ""
	mkdir -p "$BATS_TEST_TMPDIR/home3/bin"
	chown nobody "$BATS_TEST_TMPDIR/home3/bin"
	run -1 --separate-stderr vfsd-cap-install --home "$BATS_TEST_TMPDIR/home3"
	assert_contains "$stderr" "not by you"
}

@test "no CAP_SETFCAP: the sudo hint, exit 3, no copy, no temp file" {
	run -3 --separate-stderr setpriv --inh-caps=-setfcap --bounding-set=-setfcap "$BIN_DIR/vfsd-cap-install" --home "$H"
	assert_eq "$output" ""
	assert_contains "$stderr" "needs CAP_SETFCAP; run once: sudo vfsd-cap-install --home $H"
	assert_eq "$(ls -A "$H/bin")" ""
}

@test "bad sources: missing, not executable, no file-handle support" {
	run -1 --separate-stderr vfsd-cap-install --home "$H" --source /nonexistent
	assert_contains "$stderr" "not found"
	echo x >"$BATS_TEST_TMPDIR/noexec"
	run -1 --separate-stderr vfsd-cap-install --home "$H" --source "$BATS_TEST_TMPDIR/noexec"
	assert_contains "$stderr" "not an executable file"
	printf '#!/bin/sh\necho "legacy virtiofsd 0.1"\n' >"$BATS_TEST_TMPDIR/old"
	chmod +x "$BATS_TEST_TMPDIR/old"
	BOXKIT_VIRTIOFSD=$BATS_TEST_TMPDIR/old run -1 --separate-stderr vfsd-cap-install --home "$H"
	assert_contains "$stderr" "has no --inode-file-handles: without mandatory file handles it pins one descriptor per cached inode"
	assert_eq "$output" ""
	[ ! -e "$H/bin/virtiofsd" ]
}

# plant KIND PATH: something that is not a regular file at PATH
plant() {
	case $1 in
	fifo) mkfifo "$2" ;;
	socket) python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$2" ;;
	chardev) mknod "$2" c 1 3 ;; # /dev/null's numbers: opening it has no effect
	symlink) ln -s "$BATS_TEST_TMPDIR/mine" "$2" ;;
	esac
}

@test "planted at the copy path: a FIFO, socket, device or symlink is tampered at once, and replaced" {
	echo precious >"$BATS_TEST_TMPDIR/mine"
	for kind in fifo socket chardev symlink; do
		w=$(vfsd-cap-install --home "$H")
		rm "$w"
		plant "$kind" "$w"
		# an open(O_RDONLY) of a FIFO waits for a writer: timeout turns a hang into a failure
		run -0 --separate-stderr timeout 10 vfsd-cap-install --home "$H" --status
		assert_eq "$(jget .state "$output")" tampered "$kind: state"
		assert_eq "$(jget .capabilities "$output")" "" "$kind: capabilities"
		run -0 --separate-stderr timeout 10 vfsd-cap-install --home "$H"
		assert_eq "$output" "$w" "$kind: stdout"
		assert_eq "$stderr" "" "$kind: stderr"
		[ -f "$w" ] && [ ! -L "$w" ] || false
		cmp "$w" "$SRC"
		assert_eq "$(getcap "$w")" "$w cap_dac_read_search=ep" "$kind: capability"
		assert_eq "$(vfsd-cap-install --home "$H" --status | jq -r .state)" ok "$kind: state after"
	done
	assert_eq "$(cat "$BATS_TEST_TMPDIR/mine")" precious
	assert_eq "$(ls -A "$H/bin")" "$(printf 'virtiofsd\nvirtiofsd.marker')" "no temp file left"
}

@test "planted at the marker path: a FIFO, socket, device or symlink makes the copy stale at once, and is replaced" {
	echo precious >"$BATS_TEST_TMPDIR/mine"
	for kind in fifo socket chardev symlink; do
		w=$(vfsd-cap-install --home "$H")
		rm "$w.marker"
		plant "$kind" "$w.marker"
		run -0 --separate-stderr timeout 10 vfsd-cap-install --home "$H" --status
		assert_eq "$(jget .state "$output")" stale "$kind: state"
		run -0 --separate-stderr timeout 10 vfsd-cap-install --home "$H"
		assert_eq "$output" "$w" "$kind: stdout"
		[ -f "$w.marker" ] && [ ! -L "$w.marker" ] || false
		assert_eq "$(jq -r .source "$w.marker")" "$(readlink -f "$SRC")" "$kind: marker"
		assert_eq "$(vfsd-cap-install --home "$H" --status | jq -r .state)" ok "$kind: state after"
	done
	assert_eq "$(cat "$BATS_TEST_TMPDIR/mine")" precious
}

@test "a directory at the copy or the marker path: reported, refused with exit 1, never removed" {
	mkdir -p "$H/bin/virtiofsd/keep"
	chmod 0700 "$H/bin"
	run -0 --separate-stderr timeout 10 vfsd-cap-install --home "$H" --status
	assert_eq "$(jget .state "$output")" tampered
	run -1 --separate-stderr timeout 10 vfsd-cap-install --home "$H"
	assert_eq "$output" ""
	assert_contains "$stderr" "vfsd-cap-install: error: '$H/bin/virtiofsd' is a directory; refusing to replace it"
	[ -d "$H/bin/virtiofsd/keep" ]
	assert_eq "$(ls -A "$H/bin")" virtiofsd "nothing written"
	rm -r "$H/bin/virtiofsd"
	w=$(vfsd-cap-install --home "$H")
	rm "$w.marker"
	mkdir "$w.marker"
	run -0 --separate-stderr timeout 10 vfsd-cap-install --home "$H" --status
	assert_eq "$(jget .state "$output")" stale
	run -1 --separate-stderr timeout 10 vfsd-cap-install --home "$H"
	assert_contains "$stderr" "'$H/bin/virtiofsd.marker' is a directory; refusing to replace it"
	[ -d "$w.marker" ]
}

@test "a FIFO as the source is refused at once with exit 1" {
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	run -1 --separate-stderr timeout 10 vfsd-cap-install --home "$H" --source "$BATS_TEST_TMPDIR/fifo"
	assert_eq "$output" ""
	assert_contains "$stderr" "vfsd-cap-install: error: virtiofsd source '$BATS_TEST_TMPDIR/fifo' is not an executable file"
	BOXKIT_VIRTIOFSD=$BATS_TEST_TMPDIR/fifo run -1 --separate-stderr timeout 10 vfsd-cap-install --home "$H" --status
	assert_contains "$stderr" "is not an executable file"
	[ ! -e "$H/bin/virtiofsd" ]
}

@test "race: a source swapped for a FIFO after its path is resolved is refused at once, never waited on" {
	# the test build stops right after resolving the source (BOXKIT_TEST_PAUSE)
	grep -q BOXKIT_TEST_PAUSE "$BIN_DIR/vfsd-cap-install" ||
		skip "needs the test build's pause points (make test, or BIN_DIR=build/test/bin)"
	P=$BATS_TEST_TMPDIR/pause
	mkdir -p "$P"
	cp "$SRC" "$BATS_TEST_TMPDIR/src"
	BOXKIT_TEST_PAUSE=vfsd-source-resolved BOXKIT_TEST_PAUSE_DIR=$P timeout 20 vfsd-cap-install --home "$H" \
		--source "$BATS_TEST_TMPDIR/src" >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	bp=$!
	wait_for "$P/vfsd-source-resolved.reached" 200 || { cat "$BATS_TEST_TMPDIR/err" >&2; false; }
	rm "$BATS_TEST_TMPDIR/src"
	mkfifo "$BATS_TEST_TMPDIR/src"
	touch "$P/vfsd-source-resolved.go"
	rc=0
	wait "$bp" || rc=$?
	assert_eq "$rc" 1 "exit status (124: it waited on the FIFO)"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/out")" ""
	assert_contains "$(cat "$BATS_TEST_TMPDIR/err")" "is not an executable file"
	[ ! -e "$H/bin/virtiofsd" ]
}
