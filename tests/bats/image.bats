#!/usr/bin/env bats
# Images: box run --image with skopeo's transports, the image store, the
# image's config applied as Docker applies it. Every image is made here
# (tests/helpers/mk-oci, umoci; a Debian tree from debootstrap), and the
# registry is Debian's docker-registry on loopback, started by this file.
load helpers

setup_file() {
	[ "$(id -u)" = 0 ] || return 0
	export IMG=$BATS_FILE_TMPDIR/oci
	"$TOP/tests/helpers/mk-oci" busybox "$IMG" bb >/dev/null
	skopeo copy -q "oci:$IMG:bb" "oci-archive:$BATS_FILE_TMPDIR/bb-oci.tar"
	skopeo copy -q "oci:$IMG:bb" "docker-archive:$BATS_FILE_TMPDIR/bb-docker.tar:test/bb:1"
	# a registry on loopback, plain HTTP, on a free port
	export REG_PORT
	REG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	mkdir -p "$BATS_FILE_TMPDIR/reg"
	printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
		"$BATS_FILE_TMPDIR/reg/data" "$REG_PORT" >"$BATS_FILE_TMPDIR/reg/config.yml"
	docker-registry serve "$BATS_FILE_TMPDIR/reg/config.yml" >"$BATS_FILE_TMPDIR/reg/log" 2>&1 &
	echo $! >"$BATS_FILE_TMPDIR/reg/pid"
	local n
	for n in $(seq 50); do
		skopeo copy -q --dest-tls-verify=false "oci:$IMG:bb" "docker://127.0.0.1:$REG_PORT/test/bb:1" 2>/dev/null && break
		sleep 0.2
	done
}

teardown_file() {
	[ -f "$BATS_FILE_TMPDIR/reg/pid" ] && kill "$(cat "$BATS_FILE_TMPDIR/reg/pid")" 2>/dev/null
	return 0
}

setup() {
	need_root
	[ -f "$TOP/build/kernels/lean/vmlinux" ] || skip "lean kernel not built: run 'make kernel-lean'"
	[ -f "$TOP/build/images/system.ext4" ] || skip "guest images not built: run 'make image'"
	export BOXKIT_HOME=$BATS_TEST_TMPDIR/home
}

teardown() { sandboxes_teardown; }

# no_leftovers: nothing half-imported in the store
no_leftovers() {
	run -0 find "$BOXKIT_HOME/images" -maxdepth 1 -name '.tmp-*'
	assert_eq "$output" "" "leftovers of an import"
}

@test "an OCI layout runs with the image's Entrypoint, Cmd, Env, WorkingDir and User (names resolved in the image)" {
	run -0 --separate-stderr timeout 300 box run --image "oci:$IMG:bb"
	assert_eq "$output" "hi from the image"
	run -0 --separate-stderr timeout 300 box run --image "oci:$IMG:bb" -- 'id -u; id -g; id -G; pwd; echo "$FOO $HOME"'
	assert_eq "$output" "1234
1235
1235 777
/etc
bar /home/app"
}

@test "CMD replaces the image's Cmd, -e wins over its Env, -u and -w over User and WorkingDir, --entrypoint replaces both" {
	run -0 --separate-stderr timeout 300 box run --image "oci:$IMG:bb" -e FOO=mine -e NEW=1 -u root -w /tmp -- \
		'echo "$FOO $NEW $HOME"; id -u; pwd'
	assert_eq "$output" "mine 1 /root
0
/tmp"
	run -0 --separate-stderr timeout 300 box run --image "oci:$IMG:bb" -u app:extra --entrypoint /bin/echo -- a b
	assert_eq "$output" "a b"
	run -0 --separate-stderr timeout 300 box run --image "oci:$IMG:bb" -u app:extra --entrypoint /bin/id
	assert_eq "$output" "uid=1234(app) gid=777(extra)"
	# a name the image does not have
	run -125 --separate-stderr timeout 300 box run --image "oci:$IMG:bb" -u nobody -- true
	assert_contains "$stderr" "no user 'nobody' in the image's /etc/passwd"
	# names without an image are refused by name
	run -125 --separate-stderr box run -u app -- true
	assert_contains "$stderr" "names are resolved in an image"
}

@test "a whiteout hides the lower layer's file; a setuid file keeps its bits and its owner in the guest" {
	run -0 --separate-stderr timeout 300 box run --image "oci:$IMG:bb" -u root -- \
		'cat /new.txt; test -e /gone.txt && echo gone.txt is visible; stat -c "%a %u %g" /bin/suid'
	assert_eq "$output" "from the upper layer
4750 1234 1235"
}

@test "oci-archive and docker-archive (what docker save writes) import and run; ls and inspect show names, config and ports" {
	run -0 --separate-stderr timeout 300 box image pull "oci-archive:$BATS_FILE_TMPDIR/bb-oci.tar"
	[[ $output =~ ^sha256:[0-9a-f]{64}$ ]]
	local id=$output
	# the same manifest as the layout: the same image
	run -0 --separate-stderr timeout 300 box image pull "oci:$IMG:bb"
	assert_eq "$output" "$id"
	run -0 --separate-stderr timeout 300 box run --image "docker-archive:$BATS_FILE_TMPDIR/bb-docker.tar" -- 'cat /new.txt'
	assert_eq "$output" "from the upper layer"
	run -0 --separate-stderr box image ls --json
	assert_eq "$(echo "$output" | wc -l)" 2 "images"
	run -0 --separate-stderr box image inspect "${id:7:12}"
	assert_eq "$(jq -c .names <<<"$output")" "[\"oci-archive:$BATS_FILE_TMPDIR/bb-oci.tar\",\"oci:$IMG:bb\"]"
	assert_eq "$(jq -c '[.entrypoint, .cmd, .env, .working_dir, .user, .exposed_ports, .layers]' <<<"$output")" \
		'[["/bin/sh","-c"],["echo hi from the image"],["FOO=bar"],"/etc","app",["80/tcp"],2]'
	run -0 --separate-stderr box image ls
	assert_contains "$output" "${id:7:12}"
	assert_contains "$output" "docker-archive:$BATS_FILE_TMPDIR/bb-docker.tar"
	# a name or an id prefix runs without its source
	run -0 --separate-stderr timeout 300 box run --image "${id:7:12}" -- 'echo ok'
	assert_eq "$output" "ok"
	no_leftovers
}

@test "the second run of an image costs nothing extra: no second import, the same root drive" {
	run -0 --separate-stderr timeout 300 box image pull --verbose "oci-archive:$BATS_FILE_TMPDIR/bb-oci.tar"
	assert_contains "$stderr" "pulling"
	local id=${output#sha256:}
	local ino
	ino=$(stat -c %i "$BOXKIT_HOME/images/sha256/$id/rootfs.ext4")
	run -0 --separate-stderr timeout 300 box run --verbose --image "oci-archive:$BATS_FILE_TMPDIR/bb-oci.tar" -- true
	[[ $stderr != *pulling* ]] || { echo "imported again: $stderr" >&2; false; }
	assert_eq "$(stat -c %i "$BOXKIT_HOME/images/sha256/$id/rootfs.ext4")" "$ino" "the root drive"
	# a changed source is looked at again
	touch "$BATS_FILE_TMPDIR/bb-oci.tar"
	run -0 --separate-stderr timeout 300 box image pull --verbose "oci-archive:$BATS_FILE_TMPDIR/bb-oci.tar"
	assert_eq "$output" "sha256:$id"
	assert_contains "$stderr" "(in the store)"
}

@test "docker:// from a registry on loopback; plain HTTP only with --tls-verify=false" {
	local ref=docker://127.0.0.1:$REG_PORT/test/bb:1
	run -125 --separate-stderr timeout 300 box run --image "$ref" -- true
	assert_contains "$stderr" "HTTP response to HTTPS client"
	run -0 --separate-stderr timeout 300 box run --tls-verify=false --image "$ref" -- 'cat /new.txt; id -un'
	assert_eq "$output" "from the upper layer
app"
	no_leftovers
}

@test "a corrupt archive, a truncated one and a tampered layer are refused with exit 1 and leave nothing" {
	head -c 30000 /dev/urandom >"$BATS_TEST_TMPDIR/garbage.tar"
	run -1 --separate-stderr timeout 300 box image pull "docker-archive:$BATS_TEST_TMPDIR/garbage.tar"
	assert_contains "$stderr" "cannot read image"
	head -c 300000 "$BATS_FILE_TMPDIR/bb-oci.tar" >"$BATS_TEST_TMPDIR/trunc.tar"
	run -1 --separate-stderr timeout 300 box image pull "oci-archive:$BATS_TEST_TMPDIR/trunc.tar"
	# a layer whose bytes no longer match its digest
	cp -a "$IMG" "$BATS_TEST_TMPDIR/tampered"
	local d f
	d=$(skopeo inspect --raw "oci:$BATS_TEST_TMPDIR/tampered:bb" | jq -r '.layers[0].digest')
	f=$BATS_TEST_TMPDIR/tampered/blobs/sha256/${d#sha256:}
	printf X | dd of="$f" bs=1 seek=$(($(stat -c %s "$f") / 2)) conv=notrunc 2>/dev/null
	run -1 --separate-stderr timeout 300 box image pull "oci:$BATS_TEST_TMPDIR/tampered:bb"
	assert_contains "$stderr" "Digest did not match"
	# box run says the same with its own code
	run -125 --separate-stderr timeout 300 box run --image "oci:$BATS_TEST_TMPDIR/tampered:bb" -- true
	no_leftovers
	run -0 ls -A "$BOXKIT_HOME/images/sha256" "$BOXKIT_HOME/images/refs"
	assert_eq "$(ls -A "$BOXKIT_HOME/images/sha256" "$BOXKIT_HOME/images/refs" | grep -c .)" 2 "store entries"
}

@test "an image for another architecture is refused at import" {
	cp -a "$IMG" "$BATS_TEST_TMPDIR/arm"
	umoci config --image "$BATS_TEST_TMPDIR/arm:bb" --architecture arm64
	run -1 --separate-stderr timeout 300 box image pull "oci:$BATS_TEST_TMPDIR/arm:bb"
	assert_contains "$stderr" "architecture 'arm64'"
	no_leftovers
}

@test "box image rm forgets a name, then the image; prune removes an interrupted import and keeps what a sandbox uses" {
	run -0 --separate-stderr timeout 300 box image pull "oci:$IMG:bb"
	local id=$output
	run -0 --separate-stderr timeout 300 box image pull "oci-archive:$BATS_FILE_TMPDIR/bb-oci.tar"
	run -0 --separate-stderr box image rm "oci:$IMG:bb"
	[ -d "$BOXKIT_HOME/images/sha256/${id#sha256:}" ] # still named by the archive
	run -0 --separate-stderr box image rm "oci-archive:$BATS_FILE_TMPDIR/bb-oci.tar"
	[ ! -e "$BOXKIT_HOME/images/sha256/${id#sha256:}" ]
	run -1 --separate-stderr box image inspect "$id"
	assert_contains "$stderr" "no image"
	# an interrupted import, and a sandbox's image
	mkdir -p "$BOXKIT_HOME/images/.tmp-XXXXXX/oci"
	run -0 --separate-stderr timeout 300 box create --name img1 --image "oci:$IMG:bb"
	run -0 --separate-stderr timeout 300 box exec img1 -- sh -c 'id -un; echo $FOO; pwd'
	assert_eq "$output" "app
bar
/etc"
	run -0 --separate-stderr box image prune -a
	[ ! -e "$BOXKIT_HOME/images/.tmp-XXXXXX" ]
	[ -d "$BOXKIT_HOME/images/sha256/${id#sha256:}" ] # in use
	run -0 timeout 60 box rm -f img1
	run -0 --separate-stderr box image prune -a
	assert_eq "$output" "$id"
	[ ! -e "$BOXKIT_HOME/images/sha256/${id#sha256:}" ]
}

@test "a Debian image made with debootstrap runs apt and python3" {
	local deb
	deb=$(timeout 900 "$TOP/tools/image/debian-rootfs" bookworm python3-minimal) || { echo "debian-rootfs failed" >&2; false; }
	"$TOP/tests/helpers/mk-oci" tree "$deb" "$BATS_TEST_TMPDIR/deb" bookworm --config.cmd /bin/bash >/dev/null
	run -0 --separate-stderr timeout 600 box run --image "oci:$BATS_TEST_TMPDIR/deb:bookworm" -- \
		sh -c 'apt --version | cut -d" " -f1; python3 -c "import sys; print(sys.version_info[0])"; cat /etc/debian_version | cut -d. -f1'
	assert_eq "$output" "apt
3
12"
}

@test "a full disk: the import stops with exit 3 and the reserve's hint, and leaves nothing behind" {
	# a home on a small filesystem of its own, and an image that cannot fit
	make_loop_fs ext4 200 "$BATS_TEST_TMPDIR/small"
	export BOXKIT_HOME=$BATS_TEST_TMPDIR/small/home
	mkdir -p "$BATS_TEST_TMPDIR/big/bin"
	cp /bin/busybox "$BATS_TEST_TMPDIR/big/bin/"
	head -c $((150 << 20)) /dev/urandom >"$BATS_TEST_TMPDIR/big/blob"
	"$TOP/tests/helpers/mk-oci" tree "$BATS_TEST_TMPDIR/big" "$BATS_TEST_TMPDIR/bigoci" big >/dev/null
	local before
	before=$(fs_free "$BATS_TEST_TMPDIR/small")
	run -3 --separate-stderr timeout 300 box image pull "oci:$BATS_TEST_TMPDIR/bigoci:big"
	assert_contains "$stderr" "hint: no space left on the host; 'reserve release'"
	no_leftovers
	assert_eq "$(ls -A "$BOXKIT_HOME/images/sha256")" "" "images"
	# everything the import wrote is given back (the reserve is laid down first)
	[ "$(fs_free "$BATS_TEST_TMPDIR/small")" -ge $((before - (65 << 20))) ]
	loop_cleanup
}

@test "an oci-archive whose entries write through a symlink they plant never touches the host" {
	mkdir -p "$BATS_TEST_TMPDIR/victim"
	echo ORIG >"$BATS_TEST_TMPDIR/victim/KEEP"
	chmod 0644 "$BATS_TEST_TMPDIR/victim/KEEP"
	# evil -> victim (a host directory), then evil/KEEP: skopeo's own
	# extractor writes through such a symlink; box never gives it the archive
	python3 - "$BATS_TEST_TMPDIR/evil.tar" "$BATS_TEST_TMPDIR/victim" <<'EOP'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    def add(name, data=b"", mode=0o644, **kw):
        i = tarfile.TarInfo(name); i.size = len(data); i.mode = mode
        for k, v in kw.items(): setattr(i, k, v)
        t.addfile(i, io.BytesIO(data) if data else None)
    add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    add("evil", type=tarfile.SYMTYPE, linkname=sys.argv[2])
    add("evil/KEEP", b"overwritten\n", mode=0o4755)
    add("index.json", b'{"schemaVersion":2,"manifests":[]}')
EOP
	run -1 --separate-stderr timeout 300 box image pull "oci-archive:$BATS_TEST_TMPDIR/evil.tar"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/victim/KEEP")" ORIG "the host file"
	assert_eq "$(stat -c %a "$BATS_TEST_TMPDIR/victim/KEEP")" 644 "its mode"
	assert_eq "$(ls -A "$BATS_TEST_TMPDIR/victim")" KEEP "the host directory"
	no_leftovers
}

@test "a layout with a FIFO, or with a blob that is a symlink to a host file, is refused at once" {
	cp -a "$IMG" "$BATS_TEST_TMPDIR/fifo"
	rm "$BATS_TEST_TMPDIR/fifo/index.json"
	mkfifo "$BATS_TEST_TMPDIR/fifo/index.json"
	run -1 --separate-stderr timeout 60 box image pull "oci:$BATS_TEST_TMPDIR/fifo:bb"
	assert_contains "$stderr" "'index.json' in the layout is not a regular file or directory"
	cp -a "$IMG" "$BATS_TEST_TMPDIR/sym"
	local d
	d=$(skopeo inspect --raw "oci:$IMG:bb" | jq -r .config.digest)
	echo '{"secret": "of the host"}' >"$BATS_TEST_TMPDIR/host-file"
	ln -sf "$BATS_TEST_TMPDIR/host-file" "$BATS_TEST_TMPDIR/sym/blobs/sha256/${d#sha256:}"
	run -1 --separate-stderr timeout 60 box image pull "oci:$BATS_TEST_TMPDIR/sym:bb"
	assert_contains "$stderr" "is not a regular file or directory"
	no_leftovers
}

@test "race: a layout changed between its digest and its copy still imports exactly what was hashed" {
	# M: another image, its blobs put into the layout, and an index.json
	# naming M under the same tag, ready to be renamed in
	cp -a "$IMG" "$BATS_TEST_TMPDIR/src"
	mkdir -p "$BATS_TEST_TMPDIR/m/bin"
	cp /bin/busybox "$BATS_TEST_TMPDIR/m/bin/"
	echo "the attacker's image" >"$BATS_TEST_TMPDIR/m/whoami"
	"$TOP/tests/helpers/mk-oci" tree "$BATS_TEST_TMPDIR/m" "$BATS_TEST_TMPDIR/moci" m >/dev/null
	cp -n "$BATS_TEST_TMPDIR"/moci/blobs/sha256/* "$BATS_TEST_TMPDIR/src/blobs/sha256/"
	local mm
	mm=$(jq -c '.manifests[0] | .annotations["org.opencontainers.image.ref.name"] = "bb"' "$BATS_TEST_TMPDIR/moci/index.json")
	jq -c --argjson m "$mm" '.manifests = [$m]' "$BATS_TEST_TMPDIR/src/index.json" >"$BATS_TEST_TMPDIR/index-m.json"
	P=$BATS_TEST_TMPDIR/pause
	mkdir -p "$P"
	BOXKIT_TEST_PAUSE=image-inspected BOXKIT_TEST_PAUSE_DIR=$P timeout 300 box image pull "oci:$BATS_TEST_TMPDIR/src:bb" \
		>"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	local bp=$!
	wait_for "$P/image-inspected.reached" || { cat "$BATS_TEST_TMPDIR/err" >&2; false; }
	mv "$BATS_TEST_TMPDIR/index-m.json" "$BATS_TEST_TMPDIR/src/index.json"
	touch "$P/image-inspected.go"
	wait "$bp" || { cat "$BATS_TEST_TMPDIR/err" >&2; false; }
	local id
	id=$(cat "$BATS_TEST_TMPDIR/out")
	# what was hashed is A: A's content under A's id
	assert_eq "$id" "sha256:$(skopeo inspect --raw "oci:$IMG:bb" | sha256sum | cut -c1-64)" "the id"
	local dir=$BOXKIT_HOME/images/sha256/${id#sha256:}
	run -0 debugfs -R "cat /new.txt" "$dir/rootfs.ext4"
	assert_contains "$output" "from the upper layer"
	run debugfs -R "cat /whoami" "$dir/rootfs.ext4"
	[[ $output != *"attacker"* ]] || { echo "the attacker's image was imported under A's id" >&2; false; }
	assert_eq "$(jq -r .manifest_digest "$dir/meta.json")" "$id" "the stored manifest"
}
