#!/usr/bin/env bats
# oci-spec: capabilities, the privileged shape and seccomp, proven with runc on
# this host (crun 1.8 refuses this host's hybrid cgroups; it runs them in the VM).
load helpers

SCHEMA=/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema

setup() {
	B=$BATS_TEST_TMPDIR/bundle
	mkdir -p "$B/rootfs/bin" "$B/rootfs/proc" "$B/rootfs/sys" "$B/rootfs/dev" "$B/rootfs/tmp"
	cp /bin/busybox "$B/rootfs/bin/"
	for a in sh cat grep mount echo unshare true head wc; do ln -s busybox "$B/rootfs/bin/$a"; done
}

validate() { # FILE: against the OCI runtime-spec JSON schema
	python3 - "$1" <<EOP
import json, sys, warnings
warnings.simplefilter("ignore")
import jsonschema
s = "$SCHEMA/"
schema = json.load(open(s + "config-schema.json"))
resolver = jsonschema.RefResolver("file://" + s, schema)
jsonschema.validate(json.load(open(sys.argv[1])), schema, resolver=resolver)
EOP
}

# in_runc OCI-SPEC-OPTIONS... -- CMD: run CMD under runc with that config
in_runc() {
	local id=bk-$RANDOM$RANDOM
	oci-spec --bundle "$B" "$@"
	validate "$B/config.json"
	run --separate-stderr timeout 60 runc run --bundle "$B" "$id"
	runc delete -f "$id" 2>/dev/null || true
}

capeff() { grep CapEff <<<"$output" | awk '{print $2}'; }

@test "default config validates against the OCI schema and gives Docker's 14 capabilities" {
	in_runc -- grep CapEff /proc/self/status
	assert_eq "$status" 0
	assert_eq "$(capeff)" 00000000a80425fb CapEff
	assert_eq "$(jq -r '.process.capabilities.bounding|length' "$B/config.json")" 14
	assert_eq "$(jq -c '.process.capabilities.inheritable, .process.capabilities.ambient' "$B/config.json" | tr -d '\n')" '[][]'
}

@test "--cap-drop NET_RAW clears bit 13" {
	in_runc --cap-drop net_raw -- grep CapEff /proc/self/status
	assert_eq "$(capeff)" 00000000a80405fb
}

@test "--cap-drop ALL --cap-add SYS_ADMIN is exactly bit 21" {
	in_runc --cap-drop ALL --cap-add cap_sys_admin -- grep CapEff /proc/self/status
	assert_eq "$(capeff)" 0000000000200000
}

@test "--cap-add ALL lists all 41 names, each once, no CAP_CAP_ (the upstream bug)" {
	oci-spec --cap-add ALL -- true >"$BATS_TEST_TMPDIR/c.json"
	validate "$BATS_TEST_TMPDIR/c.json"
	for set in bounding effective permitted; do
		assert_eq "$(jq -r ".process.capabilities.$set|length" "$BATS_TEST_TMPDIR/c.json")" 41 "$set"
		assert_eq "$(jq -r ".process.capabilities.$set|unique|length" "$BATS_TEST_TMPDIR/c.json")" 41 "$set unique"
	done
	! grep -q CAP_CAP_ "$BATS_TEST_TMPDIR/c.json" || false
	jq -e '.process.capabilities.effective | index("CAP_SYS_ADMIN") and index("CAP_NET_ADMIN") and index("CAP_CHECKPOINT_RESTORE")' "$BATS_TEST_TMPDIR/c.json"
	# every name is one libcap knows (capsh parses them all)
	names=$(jq -r '.process.capabilities.bounding|join(",")' "$BATS_TEST_TMPDIR/c.json" | tr A-Z a-z)
	run -0 capsh --drop="$names" -- -c true
}

@test "--cap-add ALL --cap-drop SYS_RESOURCE applies under runc: 000001fffeffffff" {
	# this host's bounding set lacks CAP_SYS_RESOURCE, so plain ALL cannot apply here
	in_runc --cap-add ALL --cap-drop SYS_RESOURCE -- grep CapEff /proc/self/status
	assert_eq "$status" 0
	assert_eq "$(capeff)" 000001fffeffffff
}

@test "Docker's rules: an add beats a drop of the same name; ALL in the drops keeps only the adds" {
	oci-spec --cap-drop KILL --cap-add KILL -- true | jq -e '.process.capabilities.effective | index("CAP_KILL")'
	assert_eq "$(oci-spec --cap-drop all --cap-add net_admin -- true | jq -c .process.capabilities.effective)" '["CAP_NET_ADMIN"]'
}

# caps OCI-SPEC-OPTIONS...: the capability list of the config, sorted; fails
# unless bounding, effective and permitted hold the same list
caps() {
	oci-spec "$@" -- true | jq -c '.process.capabilities | [.bounding, .effective, .permitted] | map(sort) |
		if .[0] == .[1] and .[1] == .[2] then .[0] else error("bounding, effective and permitted differ") end'
}

@test "Docker's TweakCapabilities, case by case: a named drop beside ALL in the adds always applies" {
	ALLC=$(caps --cap-add ALL)
	DEF=$(caps)
	assert_eq "$(jq length <<<"$ALLC")" 41 "ALL"
	assert_eq "$DEF" '["CAP_AUDIT_WRITE","CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER","CAP_FSETID","CAP_KILL","CAP_MKNOD","CAP_NET_BIND_SERVICE","CAP_NET_RAW","CAP_SETFCAP","CAP_SETGID","CAP_SETPCAP","CAP_SETUID","CAP_SYS_CHROOT"]'
	no_raw=$(jq -c '. - ["CAP_NET_RAW"]' <<<"$ALLC")
	# ALL in the adds: every capability but the named drops; ALL in the drops
	# beside it selects nothing and removes nothing
	assert_eq "$(caps --cap-add ALL --cap-drop ALL --cap-drop NET_RAW)" "$no_raw" "add ALL, drop ALL, drop NET_RAW"
	assert_eq "$(caps --cap-add ALL --cap-drop ALL --cap-drop NET_RAW | jq length)" 40
	assert_eq "$(caps --cap-drop net_raw --cap-drop ALL --cap-add all)" "$no_raw" "the order of the options does not matter"
	assert_eq "$(caps --cap-add ALL --cap-drop NET_RAW)" "$no_raw" "add ALL, drop NET_RAW"
	assert_eq "$(caps --cap-add ALL --cap-drop ALL --cap-drop CAP_NET_RAW --cap-drop sys_admin)" \
		"$(jq -c '. - ["CAP_NET_RAW","CAP_SYS_ADMIN"]' <<<"$ALLC")" "add ALL, drop ALL, drop two"
	assert_eq "$(caps --cap-add ALL --cap-add NET_RAW --cap-drop NET_RAW)" "$no_raw" "with ALL in the adds a named add does not beat the drop"
	assert_eq "$(caps --cap-add ALL --cap-drop ALL)" "$ALLC" "add ALL, drop ALL"
	# ALL in the drops (no ALL in the adds): the named adds, nothing else
	assert_eq "$(caps --cap-drop ALL)" '[]' "drop ALL"
	assert_eq "$(caps --cap-drop ALL --cap-add NET_ADMIN --cap-add kill)" '["CAP_KILL","CAP_NET_ADMIN"]' "drop ALL, add two"
	assert_eq "$(caps --cap-drop ALL --cap-drop KILL --cap-add KILL)" '["CAP_KILL"]' "drop ALL, drop X, add X"
	# otherwise: the default set less the named drops, plus the named adds
	assert_eq "$(caps --cap-add KILL --cap-drop KILL)" "$DEF" "add X, drop X: the add wins"
	assert_eq "$(caps --cap-drop NET_RAW --cap-drop CHOWN)" "$(jq -c '. - ["CAP_NET_RAW","CAP_CHOWN"]' <<<"$DEF")" "drop two"
	assert_eq "$(caps --cap-drop NET_RAW --cap-add SYS_ADMIN)" "$(jq -c '. - ["CAP_NET_RAW"] + ["CAP_SYS_ADMIN"] | sort' <<<"$DEF")" "drop X, add Y"
	assert_eq "$(caps --cap-drop SYS_ADMIN)" "$DEF" "dropping what the default set lacks"
	# --privileged: every capability, whatever else is given
	assert_eq "$(caps --privileged --cap-drop NET_RAW)" "$ALLC" "privileged, drop NET_RAW"
	# and the kernel agrees: this host's bounding set lacks CAP_SYS_RESOURCE (24)
	in_runc --cap-add ALL --cap-drop ALL --cap-drop SYS_RESOURCE -- grep CapEff /proc/self/status
	assert_eq "$status" 0
	assert_eq "$(capeff)" 000001fffeffffff
}

@test "with SYS_ADMIN mount -t tmpfs succeeds; without it fails" {
	in_runc --cap-add SYS_ADMIN -- mount -t tmpfs t /tmp
	assert_eq "$status" 0
	in_runc -- mount -t tmpfs t /tmp
	[ "$status" -ne 0 ]
	assert_contains "$stderr$output" "permission denied"
}

@test "privileged shape: writable /proc/sys and cgroups, nothing masked" {
	in_runc --cap-add ALL --cap-drop SYS_RESOURCE -- sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward && echo FWD-OK; head -c 100 /proc/timer_list | wc -c'
	assert_eq "$status" 0
	assert_contains "$output" FWD-OK
	[ "$(tail -1 <<<"$output")" -gt 0 ]
	assert_eq "$(jq -c '.linux.maskedPaths, .linux.readonlyPaths' "$B/config.json" | tr -d '\n')" '[][]'
	assert_eq "$(jq -c '.mounts[]|select(.destination=="/sys/fs/cgroup").options' "$B/config.json")" '["nosuid","noexec","nodev","relatime"]'
}

@test "default shape: /proc/sys read-only, /proc/timer_list masked, cgroups read-only" {
	in_runc -- sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward; head -c 100 /proc/timer_list | wc -c'
	assert_contains "$stderr$output" "Read-only file system"
	assert_eq "$(tail -1 <<<"$output")" 0 "bytes of the masked /proc/timer_list"
	jq -e '.linux.maskedPaths | index("/proc/kcore") and index("/sys/firmware") and index("/sys/devices/virtual/powercap")' "$B/config.json"
	assert_eq "$(jq -r '.linux.maskedPaths|length' "$B/config.json")" 12
	assert_eq "$(jq -c '.linux.readonlyPaths' "$B/config.json")" '["/proc/bus","/proc/fs","/proc/irq","/proc/sys","/proc/sysrq-trigger"]'
	assert_eq "$(jq -c '.mounts[]|select(.destination=="/sys/fs/cgroup").options' "$B/config.json")" '["nosuid","noexec","nodev","relatime","ro"]'
}

@test "--privileged: every capability, no seccomp, the privileged shape" {
	oci-spec --privileged -- true >"$BATS_TEST_TMPDIR/p.json"
	validate "$BATS_TEST_TMPDIR/p.json"
	assert_eq "$(jq -r '.process.capabilities.effective|length' "$BATS_TEST_TMPDIR/p.json")" 41
	assert_eq "$(jq -r '.linux.seccomp' "$BATS_TEST_TMPDIR/p.json")" null
	assert_eq "$(jq -c '.linux.maskedPaths' "$BATS_TEST_TMPDIR/p.json")" '[]'
}

@test "seccomp default denies unshare with EPERM; unconfined allows it" {
	in_runc -- unshare -U true
	[ "$status" -ne 0 ]
	assert_contains "$stderr$output" "Operation not permitted"
	in_runc --seccomp unconfined -- unshare -U true
	assert_eq "$status" 0
}

@test "seccomp: every syscall name in the profile resolves; SYS_ADMIN relaxes mount" {
	oci-spec -- true >"$BATS_TEST_TMPDIR/d.json"
	for n in $(jq -r '.linux.seccomp.syscalls[].names[]' "$BATS_TEST_TMPDIR/d.json"); do
		r64=$(scmp_sys_resolver -a x86_64 "$n") r32=$(scmp_sys_resolver -a x86 "$n")
		[ "$r64" -ge 0 ] 2>/dev/null || [ "$r32" -ge 0 ] 2>/dev/null || { echo "unknown syscall $n" >&2; false; }
	done
	jq -e '.linux.seccomp.syscalls[0].names | index("mount") and index("kexec_load") and index("keyctl")' "$BATS_TEST_TMPDIR/d.json"
	oci-spec --cap-add SYS_ADMIN -- true | jq -e '(.linux.seccomp.syscalls[0].names | index("mount")) == null'
}

@test "--mounts-from turns volspec-parse lines into bind mounts" {
	H=$BATS_TEST_TMPDIR/home
	mkdir -p "$H/volumes/named/vv"
	echo x >"$H/volumes/named/vv/f"
	volspec-parse --home "$H" myvol:/data:ro /scratch src=vv,dst=/etc/app.conf,volume-subpath=f >"$BATS_TEST_TMPDIR/v.jsonl"
	oci-spec --mounts-from "$BATS_TEST_TMPDIR/v.jsonl" -- true >"$BATS_TEST_TMPDIR/m.json"
	validate "$BATS_TEST_TMPDIR/m.json"
	t1=$(sed -n 1p "$BATS_TEST_TMPDIR/v.jsonl" | jq -r .tag) t3=$(sed -n 3p "$BATS_TEST_TMPDIR/v.jsonl" | jq -r .tag)
	assert_eq "$(jq -c '.mounts[]|select(.destination=="/data")' "$BATS_TEST_TMPDIR/m.json")" \
		"{\"destination\":\"/data\",\"type\":\"bind\",\"source\":\"/run/boxkit/volumes/$t1\",\"options\":[\"rbind\",\"rprivate\",\"nosuid\",\"nodev\",\"ro\"]}"
	assert_eq "$(jq -c '.mounts[]|select(.destination=="/scratch").options' "$BATS_TEST_TMPDIR/m.json")" '["rbind","rprivate","nosuid","nodev"]'
	assert_eq "$(jq -r '.mounts[]|select(.destination=="/etc/app.conf").source' "$BATS_TEST_TMPDIR/m.json")" "/run/boxkit/files/$t3"
	# stdin works too
	assert_eq "$(oci-spec --mounts-from - -- true <"$BATS_TEST_TMPDIR/v.jsonl" | jq '.mounts|length')" 10
}

@test "options reach the config" {
	oci-spec --rootfs /r --readonly-rootfs --cwd /w --env A=1 --env B= --user 1000:100 --hostname hb --terminal -- ls -l >"$BATS_TEST_TMPDIR/o.json"
	validate "$BATS_TEST_TMPDIR/o.json"
	assert_eq "$(jq -c '[.root, .process.cwd, .process.user, .hostname, .process.terminal, .process.args]' "$BATS_TEST_TMPDIR/o.json")" \
		'[{"path":"/r","readonly":true},"/w",{"uid":1000,"gid":100},"hb",true,["ls","-l"]]'
	jq -e '.process.env | index("A=1") and index("B=") and index("TERM=xterm")' "$BATS_TEST_TMPDIR/o.json"
}

@test "bad input: unknown option, capability, --env, --user, JSON line" {
	run -2 --separate-stderr oci-spec --bogus -- true
	run -1 --separate-stderr oci-spec --cap-add SYS_FOO -- true
	assert_eq "$output" ""
	assert_contains "$stderr" "oci-spec: error: unknown capability 'SYS_FOO' (examples: SYS_ADMIN, NET_ADMIN"
	run -1 --separate-stderr oci-spec --cap-add CAP_CAP_SYS_ADMIN -- true
	run -2 --separate-stderr oci-spec --env =x -- true
	assert_contains "$stderr" "--env '=x' must be KEY=VALUE"
	run -2 --separate-stderr oci-spec --env novalue -- true
	run -1 --separate-stderr oci-spec --user root -- true
	assert_contains "$stderr" "names need the image's accounts"
	run -2 --separate-stderr oci-spec
	assert_contains "$stderr" "no command given"
	volspec-parse --home "$BATS_TEST_TMPDIR/h" --dry-run vv:/a >"$BATS_TEST_TMPDIR/bad.jsonl"
	printf '{"tag":\n' >>"$BATS_TEST_TMPDIR/bad.jsonl"
	run -1 --separate-stderr oci-spec --mounts-from "$BATS_TEST_TMPDIR/bad.jsonl" -- true
	assert_eq "$output" ""
	assert_contains "$stderr" "bad.jsonl: line 2: not one JSON object"
	jq -c '.target="/a/../etc"' <"$BATS_TEST_TMPDIR/bad.jsonl" 2>/dev/null | head -1 >"$BATS_TEST_TMPDIR/bad2.jsonl"
	run -1 --separate-stderr oci-spec --mounts-from "$BATS_TEST_TMPDIR/bad2.jsonl" -- true
	assert_contains "$stderr" "line 1: target: guest path '/a/../etc' must not contain '.' or '..' components"
}

@test "--output is atomic: an unwritable target leaves the old file untouched" {
	d=$BATS_TEST_TMPDIR/out
	mkdir -p "$d"
	oci-spec --output "$d/config.json" -- echo one
	before=$(sha256sum <"$d/config.json")
	run -1 --separate-stderr oci-spec --output "$d/config.json" --cap-add NOPE -- echo two
	assert_eq "$(sha256sum <"$d/config.json")" "$before"
	chmod 0555 "$d"
	# root ignores directory permissions: use an immutable-like failure instead
	run -3 --separate-stderr oci-spec --output "$d/missing-dir/config.json" -- echo two
	assert_contains "$stderr" "cannot open directory"
	mount -t tmpfs -o ro,size=1M tmpfs "$d" 2>/dev/null && {
		run -3 --separate-stderr oci-spec --output "$d/config.json" -- echo two
		assert_contains "$stderr" "Read-only file system"
		umount "$d"
	}
	assert_eq "$(sha256sum <"$d/config.json")" "$before"
	assert_eq "$(ls -A "$d")" config.json
	jq -e '.process.args == ["echo","one"]' "$d/config.json"
}

@test "--image-config: Entrypoint, Cmd, Env, WorkingDir and User as Docker applies them; names from --passwd/--group" {
	C=$BATS_TEST_TMPDIR/c
	mkdir -p "$C"
	printf '%s' '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Env":["PATH=/opt/bin:/bin","FOO=bar"],"WorkingDir":"/srv","User":"app","ExposedPorts":{"80/tcp":{}}}}' >"$C/config.json"
	printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1235:app:/home/app:/bin/sh\n' >"$C/passwd"
	printf 'root:x:0:\napp:x:1235:\nextra:x:777:other,app\n' >"$C/group"
	local img=(--image-config "$C/config.json" --passwd "$C/passwd" --group "$C/group")
	run -0 --separate-stderr oci-spec "${img[@]}"
	assert_eq "$(jq -c '.process | [.args, .env, .cwd, .user]' <<<"$output")" \
		'[["/bin/sh","-c","echo hi"],["PATH=/opt/bin:/bin","FOO=bar","HOME=/home/app"],"/srv",{"uid":1234,"gid":1235,"additionalGids":[777]}]'
	# a command replaces Cmd; --env wins; --cwd and --user win
	run -0 --separate-stderr oci-spec "${img[@]}" --env FOO=mine --cwd / --user root:extra -- ls
	assert_eq "$(jq -c '.process | [.args, .env, .cwd, .user]' <<<"$output")" \
		'[["/bin/sh","-c","ls"],["PATH=/opt/bin:/bin","FOO=mine","HOME=/root"],"/",{"uid":0,"gid":777}]'
	# --entrypoint replaces Entrypoint and drops Cmd; '' leaves the command alone
	run -0 --separate-stderr oci-spec "${img[@]}" --entrypoint /bin/echo
	assert_eq "$(jq -c .process.args <<<"$output")" '["/bin/echo"]'
	run -0 --separate-stderr oci-spec "${img[@]}" --entrypoint '' -- id -u
	assert_eq "$(jq -c .process.args <<<"$output")" '["id","-u"]'
	run -1 --separate-stderr oci-spec "${img[@]}" --entrypoint ''
	assert_contains "$stderr" "no command given"
	# a number not in the image: group 0 (Docker's rule); with --init --serve, no command
	run -0 --separate-stderr oci-spec "${img[@]}" --user 4242 --init --serve
	assert_eq "$(jq -c '.process | [.args, .user]' <<<"$output")" '[["/.boxkit-init","--serve"],{"uid":4242,"gid":0}]'
	run -1 --separate-stderr oci-spec "${img[@]}" --user ghost -- true
	assert_contains "$stderr" "no user 'ghost' in the image's /etc/passwd"
	run -1 --separate-stderr oci-spec "${img[@]}" --user app:ghosts -- true
	assert_contains "$stderr" "no group 'ghosts' in the image's /etc/group"
	# the result is a valid runtime config
	oci-spec "${img[@]}" --output "$BATS_TEST_TMPDIR/config.json"
	validate "$BATS_TEST_TMPDIR/config.json"
}

@test "--image-config: a config for another machine, malformed or oversized, or a FIFO in its place, is refused" {
	C=$BATS_TEST_TMPDIR/c
	mkdir -p "$C"
	printf '%s' '{"architecture":"arm64","config":{}}' >"$C/arm.json"
	run -1 --separate-stderr oci-spec --image-config "$C/arm.json" -- true
	assert_contains "$stderr" "architecture 'arm64', not amd64"
	printf '%s' '{"config":{"Env":["=x"]}}' >"$C/env.json"
	run -1 --separate-stderr oci-spec --image-config "$C/env.json" -- true
	assert_contains "$stderr" "is not KEY=VALUE"
	printf '%s' '{"config":{"WorkingDir":"rel"}}' >"$C/wd.json"
	run -1 --separate-stderr oci-spec --image-config "$C/wd.json" -- true
	assert_contains "$stderr" "not an absolute path"
	python3 -c 'print("[" * 100 + "]" * 100)' >"$C/deep.json"
	run -1 --separate-stderr oci-spec --image-config "$C/deep.json" -- true
	assert_contains "$stderr" "not valid JSON"
	head -c $((5 << 20)) /dev/zero | tr '\0' ' ' >"$C/big.json"
	run -1 --separate-stderr oci-spec --image-config "$C/big.json" -- true
	assert_contains "$stderr" "larger than"
	mkfifo "$C/fifo"
	run -1 --separate-stderr timeout 10 oci-spec --image-config "$C/fifo" -- true
	assert_contains "$stderr" "not a regular file"
}
