#!/usr/bin/env bats
# boxkit-runtime: boxkit as an OCI runtime, called by hand as a shim would
# (a subreaper, a bundle, a pid file), and by the real engines (Docker,
# Podman, containerd) started here: each in a network namespace and a mount
# namespace of its own (its bridge, firewall and /etc/docker live and die
# there), with its own data root. Images are made here from busybox-static.
load helpers

RT_TEST_ROOT=/tmp/bxrt.$$ # short: unix socket paths

setup_file() {
	[ "$(id -u)" = 0 ] || return 0
	export R=$RT_TEST_ROOT
	mkdir -p "$R"
	# a busybox image tree (and tar for the engines)
	local t=$R/tree a
	mkdir -p "$t/bin" "$t/etc" "$t/tmp" "$t/www"
	cp /bin/busybox "$t/bin/busybox"
	for a in $(/bin/busybox --list); do [ -e "$t/bin/$a" ] || ln -s busybox "$t/bin/$a"; done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n' >"$t/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$t/etc/group"
	echo "served-from-the-vm" >"$t/www/index.html"
	tar -C "$t" -cf "$R/busybox.tar" .
}

teardown_file() {
	[ -n "${R:-}" ] || return 0
	engines_stop
	# nothing of the engines outlives the file (their pids were theirs)
	local p left=
	for p in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qE "^(dockerd|containerd|podman) .*$R/" && left="$left ${p#/proc/}"
	done
	rm -rf "$R"
	[ -z "$left" ] || { echo "# engines left:$left" >&3; return 1; }
}

setup() {
	need_root
	[ -f "$TOP/build/kernels/lean/vmlinux" ] || skip "lean kernel not built: run 'make kernel-lean'"
	[ -f "$TOP/build/images/system.ext4" ] || skip "guest images not built: run 'make image'"
	export BOXKIT_HOME=$R/home BOXKIT_CACHE=$R/cache RTROOT=$R/state
	mkdir -p "$BOXKIT_HOME"
}

# after every test: no VM, no monitor, no jail mount, no runtime state left
teardown() {
	[ -n "${BOXKIT_HOME:-}" ] || return 0
	local left
	left=$(own_procs)
	[ -z "$left" ] || echo "# processes left: $left" >&3
	[ -z "$(ls -A "$RTROOT" 2>/dev/null)" ] || echo "# state left: $(ls -A "$RTROOT")" >&3
	! grep -q " $BOXKIT_HOME/" /proc/self/mountinfo || echo "# mounts left" >&3
	local c
	for c in $(ls "$RTROOT" 2>/dev/null); do boxkit-runtime --root "$RTROOT" delete --force "$c" >/dev/null 2>&1; done
	for n in $(BOXKIT_HOME=$BOXKIT_HOME box ls --json 2>/dev/null | jq -r .name); do timeout 30 box rm -f "$n" >/dev/null 2>&1; done
	[ -z "$left" ] && [ -z "$(ls -A "$RTROOT" 2>/dev/null)" ] && ! grep -q " $BOXKIT_HOME/" /proc/self/mountinfo
}

rt() { boxkit-runtime --root "$RTROOT" "$@"; }

# bundle DIR [JQ-FILTER [JQ-ARGS...]]: a runc-shaped bundle (runc spec) on
# the busybox tree, its config.json passed through JQ-FILTER
bundle() {
	local d=$1
	mkdir -p "$d"
	(cd "$d" && runc spec)
	ln -s "$R/tree" "$d/rootfs"
	[ $# -ge 2 ] || return 0
	shift
	jq "$@" "$d/config.json" >"$d/config.json.new"
	mv "$d/config.json.new" "$d/config.json"
}

@test "boxkit-runtime: help, version, features; unsupported commands and options refused by name" {
	run boxkit-runtime --help
	[ "$status" -eq 0 ]
	assert_contains "$output" "create --bundle DIR"
	run boxkit-runtime --version
	[ "$status" -eq 0 ]
	assert_contains "$output" "boxkit-runtime version"
	assert_contains "$output" "spec: 1.0.2"
	run boxkit-runtime features
	[ "$status" -eq 0 ]
	jq -e '.ociVersionMax == "1.0.2" and (.hooks | index("prestart")) != null' <<<"$output"
	for c in pause resume update checkpoint run events; do
		run rt "$c" x
		[ "$status" -eq 2 ]
		assert_contains "$output" "'$c' is not supported"
	done
	run rt create --bundle /nonexistent --bogus x
	[ "$status" -eq 2 ]
	run rt create --bundle "$R" --preserve-fds 2 x
	[ "$status" -eq 2 ]
	assert_contains "$output" "--preserve-fds 2"
	run rt state nosuch
	[ "$status" -eq 1 ]
	assert_contains "$output" "container 'nosuch' does not exist"
	run rt delete --force nosuch
	[ "$status" -eq 0 ]
	run rt state '../x'
	[ "$status" -eq 1 ]
	assert_contains "$output" "is not a container id"
}

@test "boxkit-runtime: what a VM cannot honour is refused, naming it, and nothing is left" {
	local b=$BATS_TEST_TMPDIR/b
	bundle "$b"
	cp "$b/config.json" "$b/orig.json"
	check() { # JQ-FILTER EXPECTED-TEXT [STATUS]
		jq "$1" "$b/orig.json" >"$b/config.json"
		run rt --log "$BATS_TEST_TMPDIR/log.json" --log-format json create --bundle "$b" refused
		[ "$status" -eq "${3:-1}" ] || { echo "status $status for $1: $output"; return 1; }
		# the engine reads the last error of the JSON log
		tail -1 "$BATS_TEST_TMPDIR/log.json" | jq -e --arg t "$2" '.level == "error" and (.msg | contains($t))' ||
			{ cat "$BATS_TEST_TMPDIR/log.json"; return 1; }
		[ ! -e "$RTROOT/refused" ]
	}
	check '.mounts += [{"destination":"/data","type":"bind","source":"/srv","options":["rbind"]}]' \
		"mount '/srv' at '/data': a sandbox shares no host path"
	check '.mounts += [{"destination":"/etc/passwd","type":"bind","source":"/etc/passwd","options":["bind"]}]' \
		"mount '/etc/passwd' at '/etc/passwd'"
	check '.linux.namespaces |= map(select(.type != "network"))' "host's network namespace"
	check '.linux.namespaces += [{"type":"user"}]' "user namespace"
	check '.linux.namespaces |= map(if .type == "pid" then .path = "/proc/1/ns/pid" else . end)' \
		"joining another PID namespace"
	check '.hooks = {"createContainer":[{"path":"/bin/true"}]}' "hooks.createContainer"
	check '.linux.devices = [{"path":"/dev/fuse","type":"c","major":10,"minor":229}]' "linux.devices"
	check '.process.terminal = true' "process.terminal needs --console-socket" 2
	check '.mounts += [{"destination":"/scratch","type":"tmpfs","source":"tmpfs"}]' "type 'tmpfs' at '/scratch'"
	[ -z "$(own_procs)" ]
}

@test "boxkit-runtime by hand: create waits for start, the pid is the process (a child of the subreaper, in the cgroup), its status comes back" {
	local b=$BATS_TEST_TMPDIR/b cg=boxkit-rt-test-$$
	bundle "$b" --arg cg "/$cg" '.process.terminal = false | .process.args = ["sh", "-c", "echo started; echo to-stderr >&2; hostname; cat /etc/hostname; trap \"echo got-usr1\" USR1; echo trap-set; i=0; while [ $i -lt 100 ] && [ ! -e /tmp/stop ]; do i=$((i+1)); sleep 0.1; done; touch /tmp/stop; exit 6"] | .linux.cgroupsPath = $cg | .hostname = "rthost"'
	local o=$BATS_TEST_TMPDIR
	cat >"$o/shim.sh" <<EOF
set -x
boxkit-runtime --root "$RTROOT" create --bundle "$b" --pid-file "$o/pid" c1 >"$o/out" 2>"$o/err" </dev/null || exit 9
boxkit-runtime --root "$RTROOT" state c1 >"$o/state1"
sleep 2
cp "$o/out" "$o/out-before-start"
cat /proc/\$(cat "$o/pid")/cgroup >"$o/cgroup"
boxkit-runtime --root "$RTROOT" start c1 || exit 8
boxkit-runtime --root "$RTROOT" state c1 >"$o/state2"
for i in \$(seq 100); do grep -q trap-set "$o/out" && break; sleep 0.1; done
boxkit-runtime --root "$RTROOT" kill c1 USR1
for i in \$(seq 100); do grep -q got-usr1 "$o/out" && break; sleep 0.1; done
boxkit-runtime --root "$RTROOT" ps --format json c1 >"$o/ps"
EOF
	SUBREAPER_UNTIL=$o/pid run python3 "$BATS_TEST_DIRNAME/../helpers/subreaper.py" bash "$o/shim.sh"
	echo "$output"
	echo "--- out:"; cat "$o/out"; echo "--- err:"; cat "$o/err"
	pid=$(cat "$o/pid")
	# the pid file's process was ours to reap, with the container's status
	assert_contains "$output" "$pid 6"
	assert_contains "$output" "cmd 0"
	jq -e --argjson p "$pid" '.status == "created" and .pid == $p and .id == "c1"' "$o/state1"
	jq -e '.status == "running"' "$o/state2"
	jq -e --argjson p "$pid" '. == [$p]' "$o/ps"
	# nothing ran before start; then stdout and stderr are the ones create had
	[ ! -s "$o/out-before-start" ]
	assert_contains "$(cat "$o/out")" "started"
	assert_contains "$(cat "$o/out")" "got-usr1"
	assert_contains "$(cat "$o/err")" "to-stderr"
	[ "$(grep -c rthost "$o/out")" -eq 2 ]
	assert_eq "$(grep '^0::' "$o/cgroup")" "0::/$cg"
	run rt state c1
	jq -e '.status == "stopped" and .pid == 0' <<<"$output"
	run rt delete c1
	[ "$status" -eq 0 ]
	[ ! -e "$RTROOT/c1" ]
	[ ! -e "/sys/fs/cgroup/$cg" ]
}

@test "boxkit-runtime by hand: delete of a running container needs --force; kill KILL ends it" {
	local b=$BATS_TEST_TMPDIR/b
	bundle "$b" '.process.terminal = false | .process.args = ["sleep", "1000"]'
	rt create --bundle "$b" --pid-file "$BATS_TEST_TMPDIR/pid" c2 </dev/null >/dev/null
	rt start c2
	run rt delete c2
	[ "$status" -eq 1 ]
	assert_contains "$output" "is running"
	rt kill c2 KILL
	pid=$(cat "$BATS_TEST_TMPDIR/pid")
	for _ in $(seq 50); do [ -d "/proc/$pid" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat")" != Z ] || break; sleep 0.1; done
	run rt state c2
	jq -e '.status == "stopped"' <<<"$output"
	rt delete c2
	[ ! -e "$RTROOT/c2" ]
}

@test "race: a container process slow to enter its network namespace: create waits for it, never pins the runtime's own" {
	local b=$BATS_TEST_TMPDIR/b p=$BATS_TEST_TMPDIR/pause
	bundle "$b" '.process.terminal = false | .process.args = ["true"]'
	mkdir -p "$p"
	# test builds only: the forked process stops before it unshares its namespace
	BOXKIT_TEST_PAUSE=client-netns BOXKIT_TEST_PAUSE_DIR=$p rt create --bundle "$b" --pid-file "$BATS_TEST_TMPDIR/pid" c3 \
		</dev/null >/dev/null 2>"$BATS_TEST_TMPDIR/err" &
	local cp=$!
	wait_for "$p/client-netns.reached"
	sleep 1
	# create is still waiting: it has pinned nothing yet
	kill -0 "$cp"
	touch "$p/client-netns.go"
	local rc=0
	wait "$cp" || rc=$?
	assert_eq "$rc" 0 "create's status: $(cat "$BATS_TEST_TMPDIR/err")"
	rt kill c3 KILL || true
	for _ in $(seq 50); do rt state c3 | jq -e '.status == "stopped"' >/dev/null && break; sleep 0.1; done
	rt delete --force c3
	[ ! -e "$RTROOT/c3" ]
}

# ---- engines ------------------------------------------------------------------------------

engines_stop() {
	local f
	for f in "$R"/*.pid; do
		[ -f "$f" ] || continue
		kill "$(cat "$f")" 2>/dev/null
		for _ in $(seq 100); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$(cat "$f")" 2>/dev/null
		rm -f "$f"
	done
	for f in "$R"/*.netns; do
		[ -f "$f" ] || continue
		ip netns del "$(cat "$f")" 2>/dev/null
		rm -f "$f"
	done
	grep -o " $R/[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	true
}

# engine_ns NAME: a network namespace of the test's own for an engine (lo up)
engine_ns() {
	local ns=bx$1$$
	ip netns add "$ns" 2>/dev/null || true
	ip -n "$ns" link set lo up
	echo "$ns" >"$R/$1.netns"
	echo "$ns"
}

# dockerd_start: one dockerd for the file, in its own network and mount
# namespaces (cgroup2 mounted there again, /etc/docker a directory of ours:
# dockerd 20.10 writes key.json there), its data root and exec root in $R;
# the image bxbusybox imported
dockerd_start() {
	export DOCKER_HOST=unix://$R/docker.sock
	if [ -f "$R/docker.pid" ] && kill -0 "$(cat "$R/docker.pid")" 2>/dev/null; then
		DNS=$(cat "$R/docker.netns")
		return 0
	fi
	command -v dockerd >/dev/null || skip "no dockerd: run 'make deps'"
	DNS=$(engine_ns docker)
	mkdir -p "$R/etc-docker" /etc/docker "$R/docker"
	ip netns exec "$DNS" unshare -m --propagation private sh -c '
		mount -t cgroup2 none /sys/fs/cgroup && mount --bind "$0/etc-docker" /etc/docker &&
		exec dockerd --data-root "$0/docker/root" --exec-root "$0/docker/exec" -H "unix://$0/docker.sock" \
			--pidfile "$0/docker/pid" --add-runtime "boxkit=$1" --log-level warn' "$R" "$(command -v boxkit-runtime)" \
		>"$R/dockerd.log" 2>&1 3>&- &
	echo $! >"$R/docker.pid"
	for _ in $(seq 300); do docker info >/dev/null 2>&1 && break; sleep 0.1; done
	docker info >/dev/null || { cat "$R/dockerd.log"; return 1; }
	docker import "$R/busybox.tar" bxbusybox >/dev/null
}

@test "docker: run --runtime boxkit shows the guest's kernel and the exit status; stdin; -it under tmux" {
	dockerd_start
	run docker run --rm --runtime boxkit bxbusybox sh -c 'uname -r; cat /etc/hostname; echo to-stderr >&2; exit 3'
	echo "$output"
	[ "$status" -eq 3 ]
	local guest
	guest=$(echo "$output" | head -1)
	[ "$guest" != "$(uname -r)" ]
	# the lean kernel's own version string
	grep -aq "Linux version $guest " "$TOP/build/kernels/lean/vmlinux"
	assert_contains "$output" "to-stderr"
	run sh -c 'echo hello | docker run --rm -i --runtime boxkit bxbusybox tr a-z A-Z'
	[ "$status" -eq 0 ]
	assert_eq "$output" "HELLO"
	# a terminal: tmux's pane is docker's, docker's pty master is the runtime's
	local s=bxrt$$
	tmux -L "$s" new-session -d -x 90 -y 27 "DOCKER_HOST=$DOCKER_HOST docker run --rm -it --runtime boxkit bxbusybox sh; echo docker-exit=\$?; sleep 30"
	for _ in $(seq 300); do tmux -L "$s" capture-pane -p | grep -q '#' && break; sleep 0.1; done
	tmux -L "$s" send-keys 'stty size; tty; echo $((6*7)); exit 4' Enter
	for _ in $(seq 300); do tmux -L "$s" capture-pane -p | grep -q docker-exit && break; sleep 0.1; done
	run tmux -L "$s" capture-pane -p
	tmux -L "$s" kill-server
	echo "$output"
	assert_contains "$output" "27 90"
	assert_contains "$output" "/dev/pts/"
	assert_contains "$output" "42"
	assert_contains "$output" "docker-exit=4"
}

@test "docker: exec (its user too), top, stop and kill reach the process; -p reaches a server in the VM" {
	dockerd_start
	docker run -d --runtime boxkit --name web -p 8080:80 bxbusybox httpd -f -p 80 -h /www
	local page=
	for _ in $(seq 300); do
		page=$(ip netns exec "$DNS" wget -qO- -T 2 http://127.0.0.1:8080/ 2>/dev/null) && break
		sleep 0.2
	done
	assert_eq "$page" "served-from-the-vm"
	run docker exec web sh -c 'echo in-exec; exit 5'
	[ "$status" -eq 5 ]
	assert_eq "$output" "in-exec"
	run docker exec -u 65534:65534 web id -u
	[ "$status" -eq 0 ]
	assert_eq "$output" "65534"
	run docker top web
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -ge 2 ]
	local t0=$SECONDS
	docker stop -t 30 web
	[ $((SECONDS - t0)) -lt 20 ]
	assert_eq "$(docker inspect -f '{{.State.ExitCode}}' web)" "143"
	docker run -d --runtime boxkit --name sl bxbusybox sleep 1000
	docker kill sl
	docker wait sl >/dev/null || true
	assert_eq "$(docker inspect -f '{{.State.ExitCode}}' sl)" "137"
	docker rm web sl
}

# in_engine_ns NAME CMD...: CMD in the engine's namespaces (network, and a
# mount namespace with cgroup2 mounted again), with the boxkit environment
in_engine_ns() {
	local ns
	ns=$(cat "$R/$1.netns" 2>/dev/null) || ns=$(engine_ns "$1")
	shift
	ip netns exec "$ns" unshare -m --propagation private sh -c 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"' sh "$@"
}

@test "podman: run --runtime boxkit-runtime, the engine's network and files in the guest" {
	command -v podman >/dev/null || skip "no podman: run 'make deps'"
	# podman passes neither its environment nor --runtime-flag to the runtime
	# it calls from its cleanup (conmon's exit command): the runtime a user
	# gives it is a path; here a wrapper with this test's home and root
	mkdir -p "$R/podman"
	printf '#!/bin/sh\nexec %s --home %s --root %s "$@"\n' "$(command -v boxkit-runtime)" "$BOXKIT_HOME" \
		"$R/podman/rt" >"$R/podman/boxkit-runtime"
	chmod +x "$R/podman/boxkit-runtime"
	local p=(podman --root "$R/podman/root" --runroot "$R/podman/run" --cgroup-manager cgroupfs --events-backend file
		--runtime "$R/podman/boxkit-runtime")
	in_engine_ns podman "${p[@]}" import "$R/busybox.tar" bxbusybox >/dev/null
	run in_engine_ns podman "${p[@]}" run --rm --hostname pmhost bxbusybox sh -c 'uname -r; hostname; ip -4 addr show eth0; grep pmhost /etc/hosts; exit 3'
	echo "$output"
	[ "$status" -eq 3 ]
	[ "$(echo "$output" | head -1)" != "$(uname -r)" ]
	assert_contains "$output" "inet "
	[ "$(echo "$output" | grep -c pmhost)" -ge 2 ]
	run in_engine_ns podman "${p[@]}" run --rm -v /etc:/host-etc bxbusybox true
	[ "$status" -ne 0 ]
	assert_contains "$output" "a sandbox shares no host path"
	# podman's cleanup runs after its run returns: give it a moment
	for _ in $(seq 100); do [ -z "$(ls -A "$R/podman/rt" 2>/dev/null)" ] && break; sleep 0.1; done
	ls -la "$R/podman/rt"
	[ -z "$(ls -A "$R/podman/rt" 2>/dev/null)" ]
}

# containerd_start [CONFIG-EXTRA]: one containerd for the file in its own
# namespaces, its root, state and socket in $R
containerd_start() {
	export CTR_SOCK=$R/containerd.sock
	if [ -f "$R/containerd.pid" ] && kill -0 "$(cat "$R/containerd.pid")" 2>/dev/null; then return 0; fi
	command -v containerd >/dev/null || skip "no containerd: run 'make deps'"
	mkdir -p "$R/ctrd" "$R/cni/conf" "$R/pod-logs"
	cat >"$R/ctrd/config.toml" <<EOT
version = 2
root = "$R/ctrd/root"
state = "$R/ctrd/state"
[grpc]
  address = "$CTR_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/bxpause:latest"
  netns_mounts_under = "$R/netns"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "$R/cni/conf"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.boxkit]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.boxkit.options]
  BinaryName = "$(command -v boxkit-runtime)"
  Root = "$R/ctrd/rt"
EOT
	cat >"$R/cni/conf/10-bxpod.conflist" <<EOT
{"cniVersion": "0.4.0", "name": "bxpod", "plugins": [
  {"type": "bridge", "bridge": "bxpod0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$R/cni/ipam"}},
  {"type": "loopback"}]}
EOT
	# ip execs unshare, which execs sh, which execs containerd: $! is its pid
	local ns
	ns=$(engine_ns containerd)
	ip netns exec "$ns" unshare -m --propagation private sh -c 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"' \
		sh containerd --config "$R/ctrd/config.toml" >"$R/containerd.log" 2>&1 3>&- &
	echo $! >"$R/containerd.pid"
	for _ in $(seq 100); do ctr -a "$CTR_SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
	ctr -a "$CTR_SOCK" version >/dev/null || { cat "$R/containerd.log"; return 1; }
	# the images, made here with umoci: busybox, and a pod sandbox image
	local img
	for img in bxbusybox bxpause; do
		local cfg=()
		[ "$img" = bxpause ] && cfg=(--config.cmd sleep --config.cmd 1000000)
		"$BATS_TEST_DIRNAME/../helpers/mk-oci" tree "$R/tree" "$R/oci-$img" latest "${cfg[@]}" >/dev/null
		tar -C "$R/oci-$img" -cf "$R/oci-$img.tar" .
		for ns in default k8s.io; do
			ctr -a "$CTR_SOCK" -n "$ns" images import --base-name "docker.io/library/$img" "$R/oci-$img.tar" >/dev/null
		done
	done
}

@test "containerd: ctr run with the runc shim and --runc-binary boxkit-runtime" {
	containerd_start
	run ctr -a "$CTR_SOCK" run --rm --runtime io.containerd.runc.v2 --runc-binary "$(command -v boxkit-runtime)" \
		--runc-root "$R/ctr-rt" docker.io/library/bxbusybox:latest c1 sh -c 'uname -r; echo in-ctr; exit 4'
	echo "$output"
	[ "$status" -eq 4 ]
	assert_contains "$output" "in-ctr"
	[ "$(echo "$output" | head -1)" != "$(uname -r)" ]
	# the shim's namespace directory stays; no container's state
	[ -z "$(find "$R/ctr-rt" -mindepth 2)" ]
}

@test "kubernetes: containerd's CRI with a boxkit runtime handler runs a pod's container in a VM on the pod's network" {
	/usr/bin/python3 -c 'import grpc' 2>/dev/null || skip "no python3-grpcio: run 'make deps'"
	containerd_start
	local logs=$R/pod-logs/$BATS_TEST_NUMBER
	mkdir -p "$logs"
	run /usr/bin/python3 "$BATS_TEST_DIRNAME/../helpers/cri-run.py" "$CTR_SOCK" boxkit docker.io/library/bxbusybox:latest "$logs" \
		-- sh -c 'uname -r; ip -4 addr show eth0; exit 7'
	echo "$output"
	cat "$logs/c.log"
	[ "$status" -eq 0 ]
	assert_eq "${lines[${#lines[@]} - 1]}" "7"
	# the pod's network (the CNI bridge's subnet), inside the VM's kernel
	grep -q "inet 10.99.0." "$logs/c.log"
	! grep -q " $(uname -r)\$" "$logs/c.log" || false
	[ -z "$(find "$R/ctrd/rt" -mindepth 2 2>/dev/null)" ]
}

# ---- what an attacker tried (a review of this runtime) ---------------------------------------

@test "the rootfs cache: two images that differ only in an owner or a file capability never share a drive" {
	local t=$BATS_TEST_TMPDIR/t out=$BATS_TEST_TMPDIR/cache
	for v in a b c; do
		mkdir -p "$t/$v/etc" "$t/$v/bin"
		echo "root:x:0:0::/:/bin/sh" >"$t/$v/etc/passwd"
		cp /bin/busybox "$t/$v/bin/tool"
		touch -d @1000 "$t/$v/etc/passwd" "$t/$v/bin/tool"
	done
	chown 1000:1000 "$t/b/etc/passwd"
	setcap cap_setuid+ep "$t/c/bin/tool"
	ia=$("$TOP/tools/image/mkimage" rootfs "$out" "$t/a")
	ib=$("$TOP/tools/image/mkimage" rootfs "$out" "$t/b")
	ic=$("$TOP/tools/image/mkimage" rootfs "$out" "$t/c")
	[ "$ia" != "$ib" ] && [ "$ia" != "$ic" ] && [ "$ib" != "$ic" ]
	# each drive has its own tree's owners and capabilities
	debugfs -R "stat /etc/passwd" "$ia" 2>/dev/null | grep -q "User: *0 *Group: *0"
	debugfs -R "stat /etc/passwd" "$ib" 2>/dev/null | grep -q "User: *1000 *Group: *1000"
	! debugfs -R "ea_list /bin/tool" "$ia" 2>/dev/null | grep -q capability || false
	debugfs -R "ea_list /bin/tool" "$ic" 2>/dev/null | grep -q capability
	# the same tree again: the cached drive
	assert_eq "$("$TOP/tools/image/mkimage" rootfs "$out" "$t/a")" "$ia"
}

@test "a create killed while box runs leaves a sandbox that delete removes" {
	local b=$BATS_TEST_TMPDIR/b
	bundle "$b" '.process.terminal = false | .process.args = ["true"]'
	rt create --bundle "$b" k1 </dev/null >/dev/null 2>&1 &
	local rtpid=$!
	# the exact point: box is running (its pid recorded) and has staged the
	# VM's jail (vm-launch comes next)
	for _ in $(seq 600); do
		jq -e .box_pid "$RTROOT/k1/state.json" >/dev/null 2>&1 && ls "$BOXKIT_HOME"/run/*/chroot.json >/dev/null 2>&1 &&
			break
		sleep 0.02
	done
	ls "$BOXKIT_HOME"/run/*/chroot.json
	kill -9 "$rtpid"
	wait "$rtpid" || true
	run rt delete k1
	echo "$output"
	[ "$status" -eq 0 ]
	[ ! -e "$RTROOT/k1" ]
	for _ in $(seq 100); do [ -z "$(own_procs)" ] && break; sleep 0.1; done
	[ -z "$(own_procs)" ]
	[ -z "$(box ls --json)" ]
}

@test "a config with large annotations: state, kill and delete still work, and the sandbox goes" {
	local b=$BATS_TEST_TMPDIR/b
	big=$(head -c 70000 /dev/zero | tr '\0' x)
	bundle "$b" --arg big "$big" '.process.terminal = false | .process.args = ["sleep", "1000"] | .annotations = {"big": $big}'
	rt create --bundle "$b" big1 </dev/null >/dev/null 2>&1
	run rt state big1
	[ "$status" -eq 0 ]
	jq -e '.status == "created" and (.annotations.big | length) == 70000' <<<"$output"
	rt delete --force big1
	[ ! -e "$RTROOT/big1" ]
	[ -z "$(box ls --json)" ]
}

@test "a delete racing a failing create never removes the next container of the same id" {
	local a=$BATS_TEST_TMPDIR/a b=$BATS_TEST_TMPDIR/b
	bundle "$a" '.process.terminal = false | .hooks = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "sleep 3; exit 1"]}]}'
	bundle "$b" '.process.terminal = false | .annotations = {"io.kubernetes.cri.container-type": "sandbox"}'
	# A: a createRuntime hook that waits, then fails; B: a pod's sandbox (no VM)
	rt create --bundle "$a" x </dev/null >/dev/null 2>&1 &
	local ca=$!
	for _ in $(seq 100); do [ -e "$RTROOT/x/state.json" ] && break; sleep 0.05; done
	# a delete meanwhile must wait for A; B comes as soon as the id is free
	rt delete --force x >/dev/null 2>&1 &
	local del=$!
	for _ in $(seq 400); do rt create --bundle "$b" x </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
	! wait "$ca" || false
	wait "$del" || true
	# B is whole: its state, its process
	run rt state x
	[ "$status" -eq 0 ]
	jq -e '.status == "created"' <<<"$output"
	rt delete --force x
	[ ! -e "$RTROOT/x" ]
}

@test "configs that once overflowed or took the host's network are refused cleanly" {
	local b=$BATS_TEST_TMPDIR/b
	bundle "$b" '.process.terminal = false | .process.user.additionalGids = [range(1; 65)] | .process.capabilities.bounding = ["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER","CAP_FSETID","CAP_KILL","CAP_SETGID","CAP_SETUID","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_NET_RAW","CAP_SYS_CHROOT","CAP_MKNOD","CAP_AUDIT_WRITE","CAP_SETFCAP","CAP_NET_ADMIN","CAP_SYS_PTRACE","CAP_SYS_NICE","CAP_SYS_RESOURCE","CAP_SYS_TIME","CAP_IPC_LOCK","CAP_IPC_OWNER","CAP_LEASE","CAP_LINUX_IMMUTABLE","CAP_SYS_BOOT","CAP_SYS_MODULE","CAP_SYS_RAWIO","CAP_SYS_PACCT","CAP_SYS_TTY_CONFIG","CAP_WAKE_ALARM","CAP_BLOCK_SUSPEND","CAP_AUDIT_CONTROL","CAP_AUDIT_READ","CAP_DAC_READ_SEARCH","CAP_MAC_ADMIN","CAP_MAC_OVERRIDE","CAP_SYSLOG","CAP_NET_BROADCAST","CAP_BPF"] | del(.linux.seccomp) | .root.readonly = true | .linux.resources = {"memory": {"limit": 536870912}, "cpu": {"quota": 200000, "period": 100000}}'
	# 64 groups and every capability, no seccomp filter, every option: refused, no overflow
	run rt create --bundle "$b" many </dev/null
	echo "$output"
	[ "$status" -eq 1 ]
	assert_contains "$output" "too many capabilities or groups"
	[ ! -e "$RTROOT/many" ]
	# the host's own network namespace, by path
	bundle "$BATS_TEST_TMPDIR/h" '.process.terminal = false | .linux.namespaces |= map(if .type == "network" then .path = "/proc/self/ns/net" else . end)'
	run rt create --bundle "$BATS_TEST_TMPDIR/h" hostnet </dev/null
	echo "$output"
	[ "$status" -eq 1 ]
	assert_contains "$output" "the host's"
	[ ! -e "$RTROOT/hostnet" ]
	[ -z "$(own_procs)" ]
}
