#!/usr/bin/env bats
# volspec-parse: the spec grammar, the refusals, materialising, the --check gate.
load helpers

setup() {
	H=$BATS_TEST_TMPDIR/home
}

# refused SPEC MESSAGE: exit 1, nothing on stdout, one error line naming MESSAGE,
# and nothing created under the home.
refused() {
	run -1 --separate-stderr volspec-parse --home "$H" "$1"
	assert_eq "$output" "" stdout
	assert_eq "$(printf '%s\n' "$stderr" | wc -l)" 1 "stderr lines"
	assert_contains "$stderr" "volspec-parse: error: '$1': "
	assert_contains "$stderr" "$2"
	[ ! -e "$H/volumes" ]
}

accepted() { # SPEC KIND TARGET READONLY
	run -0 --separate-stderr volspec-parse --home "$H" "$1"
	assert_eq "$(jget .kind "$output")" "$2" kind
	assert_eq "$(jget .target "$output")" "$3" target
	assert_eq "$(jget .readonly "$output")" "$4" readonly
	assert_eq "$(jget .type "$output")" directory type
	[ -d "$(jget .source "$output")" ]
}

HOSTMSG="host bind mounts are not supported; use a managed volume instead: '/guest' (anonymous) or 'NAME:/guest' (named)"

@test "accept: /data is an anonymous read-write volume" { accepted /data anonymous /data false; }
@test "accept: /data:ro" { accepted /data:ro anonymous /data true; }
@test "accept: /data:rw" { accepted /data:rw anonymous /data false; }
@test "accept: name:/data" { accepted myvol:/data named /data false; }
@test "accept: name:/data:ro" { accepted myvol:/data:ro named /data true; }
@test "accept: name:/data:rw" { accepted my.vol_1-x:/data:rw named /data false; }
@test "accept: long form with aliases" { accepted 'type=volume,source=vv,target=/a/b,ro' named /a/b true; }
@test "accept: long form destination= and readonly=false" { accepted 'src=vv,destination=/x,readonly=false' named /x false; }
@test "accept: long form without src is anonymous" { accepted 'dst=/x,readonly' anonymous /x true; }
@test "accept: guest path is normalised" { accepted 'myvol:/data//x/' named /data/x false; }

@test "refuse: /host:/guest (host bind mount)" { refused /host:/guest "$HOSTMSG"; }
@test "refuse: /host:/guest:ro" { refused /host:/guest:ro "$HOSTMSG"; }
@test "refuse: type=bind" { refused type=bind,src=/etc,dst=/e "$HOSTMSG"; }
@test "refuse: src=/abs" { refused src=/etc,dst=/e "$HOSTMSG"; }
@test "refuse: src=~/x" { refused 'src=~/x,dst=/e' "$HOSTMSG"; }
@test "refuse: ./rel:/guest" { refused ./rel:/guest "$HOSTMSG"; }
@test "refuse: relative guest path data" { refused data "guest path 'data' must be absolute"; }
@test "refuse: relative guest path data:ro" { refused data:ro "guest path 'data' must be absolute"; }
@test "refuse: relative guest path myvol:data" { refused myvol:data "guest path 'data' must be absolute"; }
@test "refuse: root guest path /" { refused / "guest path '/' cannot be a volume target"; }
@test "refuse: guest path with .." { refused myvol:/data/../etc "must not contain '.' or '..'"; }
@test "refuse: volume name .." { refused ..:/data "invalid volume name '..'"; }
@test "refuse: volume name a/b" { refused a/b:/data "invalid volume name 'a/b'"; }
@test "refuse: volume name a..b" { refused a..b:/data "invalid volume name 'a..b'"; }
@test "refuse: volume name of 65 characters" { n=$(printf 'x%.0s' $(seq 65)); refused "$n:/data" "invalid volume name '$n'"; }
@test "accept: volume name of 64 characters" { n=$(printf 'x%.0s' $(seq 64)); accepted "$n:/data" named /data false; }
@test "refuse: volume name of one character (Docker's rule needs two)" { refused x:/data "invalid volume name 'x'"; }
@test "refuse: empty first part :/data" { refused :/data "empty field"; }
@test "refuse: empty last part /data:" { refused /data: "empty field"; }
@test "refuse: unknown short option" { refused /data:zz "unknown volume option 'zz'"; }
@test "refuse: repeated short option" { refused myvol:/data:ro,ro "repeated volume option 'ro'"; }
@test "refuse: more than three fields" { refused a:/b:ro:x "too many ':' fields"; }
@test "refuse: unknown long option" { refused dst=/d,propagation=shared "unknown volume option 'propagation'"; }
@test "refuse: repeated long option through an alias" { refused src=aa,source=bb,dst=/d "repeated volume option 'source'"; }
@test "refuse: readonly=maybe" { refused dst=/d,readonly=maybe "readonly must be true or false"; }
@test "refuse: long form without dst" { refused src=aa "missing dst="; }
@test "refuse: type=tmpfs" { refused type=tmpfs,dst=/d "unsupported mount type 'tmpfs'"; }
@test "refuse: absolute volume-subpath" { refused src=aa,dst=/d,volume-subpath=/etc "must be relative"; }
@test "refuse: volume-subpath with .." { refused src=aa,dst=/d,volume-subpath=a/../../x "must not contain '..'"; }
@test "refuse: volume-subpath without a named volume" { refused dst=/d,volume-subpath=a "needs a named volume"; }
@test "refuse: volume-subpath that does not exist" { refused src=aa,dst=/d,volume-subpath=nope "does not exist"; }
@test "refuse: an oversized spec, quoted shortened" {
	run -1 --separate-stderr volspec-parse --home "$H" "/$(head -c 5000 /dev/zero | tr '\0' a)"
	assert_eq "$(printf '%s\n' "$stderr" | wc -l)" 1 "stderr lines"
	assert_contains "$stderr" "...': volume spec longer than 4095 bytes"
	[ "${#stderr}" -lt 200 ]
}

@test "refuse: two specs with the same guest path, nothing created" {
	run -1 --separate-stderr volspec-parse --home "$H" aa:/data /data/
	assert_contains "$stderr" "guest path '/data' is already used by 'aa:/data'"
	[ ! -e "$H/volumes" ]
}

@test "partial failure: a valid spec then an invalid one creates nothing" {
	mkdir -p "$H/volumes/named"
	run -1 --separate-stderr volspec-parse --home "$H" newvol:/ok /anon /host:/guest
	assert_eq "$output" "" stdout
	[ ! -e "$H/volumes/named/newvol" ]
	assert_eq "$(ls -A "$H/volumes/named")" "" "named dir"
	[ ! -e "$H/volumes/anonymous" ] || assert_eq "$(ls -A "$H/volumes/anonymous")" "" "anon dir"
}

@test "every bad spec gets its own error line" {
	run -1 --separate-stderr volspec-parse --home "$H" /host:/a data /ok
	assert_eq "$(printf '%s\n' "$stderr" | wc -l)" 2 "stderr lines"
}

@test "JSON shape: keys, 0700 directories, tags unique, anonymous under a ULID" {
	run -0 --separate-stderr volspec-parse --home "$H" /a myvol:/b:ro
	assert_eq "$(printf '%s\n' "$output" | wc -l)" 2 lines
	l1=$(sed -n 1p <<<"$output") l2=$(sed -n 2p <<<"$output")
	assert_eq "$(jq -c 'keys' <<<"$l1")" '["kind","name","readonly","source","spec","tag","target","type"]' keys
	assert_eq "$(jget .spec "$l1")" /a
	[[ $(jget .name "$l1") =~ ^[0-9A-HJKMNP-TV-Z]{26}$ ]]
	assert_eq "$(jget .source "$l1")" "$H/volumes/anonymous/$(jget .name "$l1")"
	assert_eq "$(jget .source "$l2")" "$H/volumes/named/myvol"
	[[ $(jget .tag "$l1") =~ ^vol_[0-9a-f]{16}$ ]]
	[ "$(jget .tag "$l1")" != "$(jget .tag "$l2")" ]
	assert_eq "$(stat -c %a "$H/volumes/named/myvol")" 700 mode
	assert_eq "$(stat -c %a "$(jget .source "$l1")")" 700 mode
	# no slash escaping
	! grep -q '\\/' <<<"$output" || false
}

@test "named volumes are the same directory every time" {
	a=$(volspec-parse --home "$H" myvol:/a | jq -r .source)
	echo data >"$a/f"
	b=$(volspec-parse --home "$H" myvol:/b | jq -r .source)
	assert_eq "$b" "$a"
	assert_eq "$(cat "$b/f")" data
}

@test "concurrency: parallel runs naming the same new volume all succeed and share one directory" {
	for i in $(seq 8); do
		volspec-parse --home "$H" shared:/d >"$BATS_TEST_TMPDIR/out$i" 2>&1 &
	done
	wait
	for i in $(seq 8); do
		assert_eq "$(jq -r .source "$BATS_TEST_TMPDIR/out$i")" "$H/volumes/named/shared"
	done
	assert_eq "$(ls "$H/volumes/named")" shared
}

@test "stdin mode: one spec per line, blank lines skipped" {
	run -0 --separate-stderr volspec-parse --home "$H" - <<<$'/a\n\nmyvol:/b:ro\n'
	assert_eq "$(printf '%s\n' "$output" | jq -r .target | tr '\n' ' ')" "/a /b "
}

@test "stdin mode: an oversized line is refused" {
	run -1 --separate-stderr volspec-parse --home "$H" - < <(head -c 10000 /dev/zero | tr '\0' a)
	assert_contains "$stderr" "stdin line 1: volume spec longer than"
}

@test "volume-subpath: a directory and a regular file inside a named volume" {
	mkdir -p "$H/volumes/named/vv/sub"
	echo x >"$H/volumes/named/vv/sub/f.txt"
	run -0 --separate-stderr volspec-parse --home "$H" src=vv,dst=/d,volume-subpath=sub 'src=vv,dst=/f,volume-subpath=sub/f.txt,ro'
	l1=$(sed -n 1p <<<"$output") l2=$(sed -n 2p <<<"$output")
	assert_eq "$(jget .type "$l1")" directory
	assert_eq "$(jget .subpath "$l1")" sub
	assert_eq "$(jget .type "$l2")" file
	assert_eq "$(jget .source "$l2")" "$H/volumes/named/vv/sub/f.txt"
	[[ $(jget .tag "$l2") =~ ^fm_[0-9a-f]{16}$ ]]
}

@test "volume-subpath escaping through a symlink is refused" {
	mkdir -p "$H/volumes/named/vv" "$BATS_TEST_TMPDIR/outside"
	echo secret >"$BATS_TEST_TMPDIR/outside/s"
	ln -s "$BATS_TEST_TMPDIR/outside" "$H/volumes/named/vv/link"
	run -1 --separate-stderr volspec-parse --home "$H" src=vv,dst=/d,volume-subpath=link/s
	assert_contains "$stderr" "goes through a symlink"
	# a fifo is neither a directory nor a file
	mkfifo "$H/volumes/named/vv/fifo"
	run -1 --separate-stderr volspec-parse --home "$H" src=vv,dst=/d,volume-subpath=fifo
	assert_contains "$stderr" "neither a directory nor a regular file"
}

@test "a named volume planted as a symlink is refused" {
	mkdir -p "$H/volumes/named"
	ln -s /etc "$H/volumes/named/evil"
	run -1 --separate-stderr volspec-parse --home "$H" evil:/d
	assert_contains "$stderr" "exists but is not a directory"
}

@test "refuse: a spec that is not valid UTF-8 (exit 1, nothing created, no invalid JSON)" {
	run -1 --separate-stderr volspec-parse --home "$H" "$(printf 'myvol:/d\xff')"
	assert_eq "$output" "" stdout
	assert_contains "$stderr" "volume spec is not valid UTF-8"
	run -1 --separate-stderr volspec-parse --home "$H" "$(printf '/\xc0\xaf')"
	assert_contains "$stderr" "volume spec is not valid UTF-8"
	[ ! -e "$H/volumes" ]
	# valid multi-byte UTF-8 is fine, and stays valid JSON
	run -0 --separate-stderr volspec-parse --home "$H" "myvol:/dätä"
	assert_eq "$(jget .target "$output")" "/dätä"
}

@test "--run records each anonymous volume in the run before making it" {
	id=$(run-record --help >/dev/null; run-record new --home "$H")
	run -0 --separate-stderr volspec-parse --home "$H" --run "$id" /a /b named1:/c
	names=$(printf '%s\n' "$output" | jq -r 'select(.kind=="anonymous") | .name' | sort | tr '\n' ' ')
	assert_eq "$(run-record show --home "$H" --id "$id" | jq -r '.anonymous[]' | sort | tr '\n' ' ')" "$names" "recorded"
	run -0 run-record rm --home "$H" --id "$id"
	assert_eq "$(ls -A "$H/volumes/anonymous")" "" "anonymous volumes after rm"
	[ -d "$H/volumes/named/named1" ]
	run -2 --separate-stderr volspec-parse --home "$H" --run nope /a
	run -1 --separate-stderr volspec-parse --home "$H" --run 0000000000000000000000000a /a
	assert_contains "$stderr" "no run '0000000000000000000000000a'"
	assert_eq "$(ls -A "$H/volumes/anonymous")" "" "nothing left by the refused run"
}

@test "--dry-run prints entries and creates nothing" {
	run -0 --separate-stderr volspec-parse --home "$H" --dry-run myvol:/d /x
	assert_eq "$(printf '%s\n' "$output" | wc -l)" 2
	[ ! -e "$H" ]
}

@test "usage errors exit 2" {
	run -2 --separate-stderr volspec-parse --home "$H"
	assert_contains "$stderr" "no volume spec given"
	run -2 --separate-stderr volspec-parse --bogus /d
	run -0 volspec-parse --help
	assert_contains "$output" "Exit status"
	assert_contains "$output" "tools/volspec-parse/volspec-parse.1.md"
}

# ---- the --check gate -----------------------------------------------------------

@test "--check accepts its own output, also through another spelling of the home" {
	volspec-parse --home "$H" myvol:/d /a >"$BATS_TEST_TMPDIR/v.jsonl"
	run -0 --separate-stderr volspec-parse --home "$H" --check <"$BATS_TEST_TMPDIR/v.jsonl"
	assert_eq "$output" "$(cat "$BATS_TEST_TMPDIR/v.jsonl")"
	ln -s "$H" "$BATS_TEST_TMPDIR/alias"
	run -0 --separate-stderr volspec-parse --home "$BATS_TEST_TMPDIR/alias//" --check <"$BATS_TEST_TMPDIR/v.jsonl"
	assert_eq "$output" "$(cat "$BATS_TEST_TMPDIR/v.jsonl")"
}

# gate_refuses JQ-EDIT MESSAGE: edit a real entry by hand, --check refuses it
gate_refuses() {
	volspec-parse --home "$H" myvol:/d >"$BATS_TEST_TMPDIR/ok.jsonl"
	jq -c "$1" "$BATS_TEST_TMPDIR/ok.jsonl" >"$BATS_TEST_TMPDIR/bad.jsonl"
	run -1 --separate-stderr volspec-parse --home "$H" --check "$BATS_TEST_TMPDIR/bad.jsonl"
	assert_eq "$output" "" stdout
	assert_contains "$stderr" "$2"
}

@test "--check refuses a hand-edited host path (/etc)" {
	gate_refuses '.source="/etc"' "entry 1: volume source '/etc' is not the managed named volume 'myvol' (that is '$H/volumes/named/myvol'); managed roots: '$H/volumes/anonymous' and '$H/volumes/named'"
}
@test "--check refuses the aggregate roots" {
	gate_refuses ".source=\"$H/volumes/named\"" "is not the managed named volume 'myvol'"
	gate_refuses ".source=\"$H/volumes/anonymous\"" "is not the managed named volume 'myvol'"
	gate_refuses ".source=\"$H/volumes\"" "is not the managed named volume 'myvol'"
}
@test "--check refuses a deep path without a subpath" {
	mkdir -p "$H/volumes/named/myvol/etc"
	gate_refuses ".source=\"$H/volumes/named/myvol/etc\"" "is not the managed named volume 'myvol'"
}
@test "--check refuses a named volume that is a symlink (opened without following it)" {
	mkdir -p "$H/volumes/named"
	ln -s /etc "$H/volumes/named/escape"
	gate_refuses ".name=\"escape\" | .source=\"$H/volumes/named/escape\"" "goes through a symlink or a mount"
}
@test "--check refuses a symlinked component inside a subpath" {
	mkdir -p "$H/volumes/named/myvol/real"
	echo x >"$H/volumes/named/myvol/real/f"
	ln -s real "$H/volumes/named/myvol/link"
	gate_refuses ".subpath=\"link/f\" | .type=\"file\" | .source=\"$H/volumes/named/myvol/link/f\"" "goes through a symlink or a mount"
}
@test "--check refuses .. that climbs out" {
	gate_refuses ".source=\"$H/volumes/named/myvol/$(printf '../%.0s' $(seq 30))etc\"" "is not the managed named volume 'myvol'"
	gate_refuses '.subpath="../../../etc"' "must not contain '..'"
}
@test "--check refuses a missing path" {
	gate_refuses ".name=\"ghost\" | .source=\"$H/volumes/named/ghost\"" "volume source '$H/volumes/named/ghost' does not exist"
}
@test "--check refuses a type that does not match the disk" {
	gate_refuses '.type="file"' "a file entry needs a subpath naming the file"
	mkdir -p "$H/volumes/named/myvol/d"
	gate_refuses ".subpath=\"d\" | .type=\"file\" | .source=\"$H/volumes/named/myvol/d\"" "is not a regular file as its type says"
}
@test "--check refuses a subpath entry whose source is not beneath its volume" {
	gate_refuses ".subpath=\"x\"" "is not the managed named volume 'myvol' subpath x"
}
@test "--check refuses a bad tag, a relative target and a wrong kind" {
	gate_refuses '.tag="a,b"' "tag 'a,b' must be"
	gate_refuses '.target="rel"' "target: guest path 'rel' must be absolute"
	gate_refuses '.kind="anonymous"' "an anonymous volume's name must be a ULID, not 'myvol'"
}
@test "--check refuses a tag with an embedded NUL and strings that are not UTF-8" {
	gate_refuses '.tag="vol_1\u0000x"' "'tag' holds a NUL character"
	printf '{"kind":"named","name":"myvol","type":"directory","target":"/\xff","tag":"vol_1"}\n' >"$BATS_TEST_TMPDIR/raw.jsonl"
	run -1 --separate-stderr volspec-parse --home "$H" --check "$BATS_TEST_TMPDIR/raw.jsonl"
	assert_contains "$stderr" "line 1: not valid UTF-8"
	assert_eq "$output" ""
}
@test "--check accepts a subpath file entry and refuses it as a directory" {
	mkdir -p "$H/volumes/named/vv"
	echo x >"$H/volumes/named/vv/f"
	volspec-parse --home "$H" src=vv,dst=/f,volume-subpath=f >"$BATS_TEST_TMPDIR/f.jsonl"
	run -0 volspec-parse --home "$H" --check "$BATS_TEST_TMPDIR/f.jsonl"
	jq -c '.type="directory"' "$BATS_TEST_TMPDIR/f.jsonl" >"$BATS_TEST_TMPDIR/g.jsonl"
	run -1 --separate-stderr volspec-parse --home "$H" --check "$BATS_TEST_TMPDIR/g.jsonl"
}
@test "--check refuses malformed JSON, naming the line, and prints nothing" {
	volspec-parse --home "$H" myvol:/d >"$BATS_TEST_TMPDIR/in"
	echo '{"source": ' >>"$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr volspec-parse --home "$H" --check "$BATS_TEST_TMPDIR/in"
	assert_eq "$output" ""
	assert_contains "$stderr" "line 2: not one JSON object"
}
@test "--check refuses too deep JSON and oversized lines" {
	mkdir -p "$H"
	run -1 --separate-stderr volspec-parse --home "$H" --check <<<'{"a":{"b":{"c":{"d":{"e":1}}}}}'
	assert_contains "$stderr" "line 1: not one JSON object"
	run -1 --separate-stderr volspec-parse --home "$H" --check < <(printf '{"x":"%s"}\n' "$(head -c 20000 /dev/zero | tr '\0' a)")
	assert_contains "$stderr" "line 1: longer than"
}
