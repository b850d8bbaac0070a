#!/usr/bin/env bats
# The guest's network, end to end on real VMs with real passt: none by
# default; --network user reaches servers this file starts in a network
# namespace of its own (a veth pair; no traffic leaves this machine), never
# this host's own services (its loopback, its addresses, the gateway), and
# with --allow-net only what the list names, whatever a privileged guest
# does to its own firewall; -p publishes a guest port on the host's
# loopback; --dns names the guest's resolver.
load helpers

# one network namespace for the file: the "outside world"
setup_file() {
	[ "$(id -u)" = 0 ] || return 0
	export NS=bxnet$$ VETH=bxh$$ SUB=10.77.$(($$ % 200 + 20))
	export OUT=$SUB.2 HOSTSIDE=$SUB.1 WWW=$BATS_FILE_TMPDIR/www
	ip netns add "$NS"
	ip link add "$VETH" type veth peer name "bxn$$"
	ip link set "bxn$$" netns "$NS"
	ip addr add "$HOSTSIDE/24" dev "$VETH"
	ip link set "$VETH" up
	ip -n "$NS" addr add "$OUT/24" dev "bxn$$"
	ip -n "$NS" link set "bxn$$" up
	ip -n "$NS" link set lo up
	mkdir -p "$WWW"
	echo "outside-8000" >"$WWW/index.html"
	# servers of the outside world: two web servers and a resolver
	ip netns exec "$NS" python3 -m http.server 8000 --bind "$OUT" --directory "$WWW" >/dev/null 2>&1 3>&- &
	echo $! >"$BATS_FILE_TMPDIR/pids"
	ip netns exec "$NS" python3 -m http.server 9000 --bind "$OUT" --directory "$WWW" >/dev/null 2>&1 3>&- &
	echo $! >>"$BATS_FILE_TMPDIR/pids"
	ip netns exec "$NS" python3 "$BATS_TEST_DIRNAME/../helpers/dns-server.py" "$OUT" 53 \
		>"$BATS_FILE_TMPDIR/dns.out" 2>"$BATS_FILE_TMPDIR/dns.log" 3>&- &
	echo $! >>"$BATS_FILE_TMPDIR/pids"
	# this host's own services: on its loopback, and on every address
	echo "host-secret" >"$BATS_FILE_TMPDIR/secret.html"
	export HOSTPORT=$((20000 + $$ % 10000))
	python3 -m http.server "$HOSTPORT" --bind 0.0.0.0 --directory "$BATS_FILE_TMPDIR" >/dev/null 2>&1 3>&- &
	echo $! >>"$BATS_FILE_TMPDIR/pids"
	for _ in $(seq 100); do
		curl -s -m 1 "http://$OUT:8000/" >/dev/null && curl -s -m 1 "http://127.0.0.1:$HOSTPORT/" >/dev/null &&
			grep -q ready "$BATS_FILE_TMPDIR/dns.out" && break
		sleep 0.1
	done
}

teardown_file() {
	[ -f "$BATS_FILE_TMPDIR/pids" ] && xargs -r kill <"$BATS_FILE_TMPDIR/pids" 2>/dev/null
	[ -n "${VETH:-}" ] && ip link del "$VETH" 2>/dev/null
	[ -n "${NS:-}" ] && ip netns del "$NS" 2>/dev/null
	true
}

setup() {
	vm_suite_setup
}

teardown() {
	sandboxes_teardown
}

# GET: in the guest, for each HOST:PORT/PATH argument, an HTTP GET with
# busybox nc (its wget crashes in a static build): the body's last line and
# the target, or "refused" and the target
GET='for t; do hp=${t%%/*}; b=$(printf "GET /%s HTTP/1.0\r\n\r\n" "${t#*/}" | nc -w 5 "${hp%:*}" "${hp#*:}" 2>/dev/null | tail -1); echo "${b:-refused} $t"; done'

@test "the default is no network at all: no device but lo, and the options that need one are refused" {
	run -0 --separate-stderr timeout 120 box run -- sh -c 'ls /sys/class/net | grep -v "^sit0$"; cat /etc/hostname'
	assert_eq "$output" "lo
boxkit"
	run -125 --separate-stderr box run -p 8080:80 -- true
	assert_contains "$stderr" "--publish needs --network user"
	run -125 --separate-stderr box run --network host -- true
	assert_contains "$stderr" "--network 'host': use none or user"
}

@test "--network user: the outside world answers, by name too, with the hostname and resolver set" {
	run -0 --separate-stderr timeout 120 box run --network user --dns "$OUT" --hostname web1 -- \
		sh -c 'cat /etc/resolv.conf; hostname; grep web1 /etc/hosts; ip -4 -o addr show eth0; ip route;
			'"$GET"'; nslookup host.example.test' sh "$OUT:8000/"
	assert_contains "$output" "nameserver $OUT"
	assert_contains "$output" "web1"
	assert_contains "$output" "10.0.2.15/24"
	assert_contains "$output" "default via 10.0.2.2 dev eth0"
	assert_contains "$output" "outside-8000"
	assert_contains "$output" "192.0.2.123"
	grep -q '^host.example.test$' "$BATS_FILE_TMPDIR/dns.log"
	# everything of the run is gone: passt too
	assert_eq "$(own_procs)" ""
}

@test "the guest never reaches this host: not its loopback through the gateway, not its addresses" {
	# the server is up, on every address of this host
	run -0 curl -s -m 5 "http://127.0.0.1:$HOSTPORT/secret.html"
	assert_eq "$output" host-secret
	run -0 curl -s -m 5 "http://$HOSTSIDE:$HOSTPORT/secret.html"
	assert_eq "$output" host-secret
	local targets=("10.0.2.2:$HOSTPORT/secret.html" "$HOSTSIDE:$HOSTPORT/secret.html")
	local a
	for a in $(ip -4 -o addr show | awk '{print $4}' | cut -d/ -f1); do
		targets+=("$a:$HOSTPORT/secret.html")
	done
	run -0 --separate-stderr timeout 300 box run --network user -- sh -c "$GET" sh "${targets[@]}" "$OUT:8000/"
	[[ $output != *host-secret* ]] || { echo "reached this host: $output"; return 1; }
	for a in "${targets[@]}"; do assert_contains "$output" "refused $a"; done
	# and the outside world still answers in the same run
	assert_contains "$output" "outside-8000"
}

@test "-p publishes a guest server on the host's loopback, and the sandbox stops cleanly" {
	local hp=$((HOSTPORT + 1))
	run -0 --separate-stderr timeout 120 box run -d --name web --network user -p "$hp:8080" -- \
		sh -c 'mkdir -p /www && echo guest-served >/www/index.html && exec httpd -f -p 8080 -h /www'
	local got=
	for _ in $(seq 100); do
		got=$(curl -s -m 2 "http://127.0.0.1:$hp/index.html") && [ -n "$got" ] && break
		sleep 0.3
	done
	assert_eq "$got" guest-served
	# passt runs as its own user, in the run's cgroup, which goes with the sandbox
	local id cg pid
	id=$(run-record find --home "$BOXKIT_HOME" --name web)
	cg=$(awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2" && $4 == "/") { print $5; exit } break } }' /proc/self/mountinfo)
	pid=$(run_pid passt)
	grep -qx "$pid" "$cg/boxkit/$id.net/cgroup.procs"
	assert_eq "$(stat -c %U "/proc/$pid")" boxkit-net
	assert_eq "$(awk '/^CapEff/ {print $2}' "/proc/$pid/status")" 0000000000000000
	# loopback only: not on this host's other addresses
	run curl -s -m 2 "http://$HOSTSIDE:$hp/index.html"
	[ "$status" -ne 0 ]
	run -0 timeout 60 box rm -f web
	assert_eq "$(own_procs)" ""
	[ ! -e "$cg/boxkit/$id.net" ]
	run curl -s -m 2 "http://127.0.0.1:$hp/index.html"
	[ "$status" -ne 0 ]
}

@test "a published port that is taken fails the run with exit 125, naming it" {
	local hp=$((HOSTPORT + 2))
	python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); time.sleep(60)' "$hp" 3>&- &
	local holder=$!
	sleep 0.5
	run -125 --separate-stderr timeout 120 box run --network user -p "$hp:80" -- true
	kill "$holder"
	assert_contains "$stderr" "network helper"
	assert_eq "$(own_procs)" ""
}

@test "--allow-net: only the listed address and port, and DNS to the --dns server" {
	run -0 --separate-stderr timeout 300 box run --network user --allow-net "$OUT/32:8000" --dns "$OUT" -- \
		sh -c "$GET; nslookup allowed.test" sh "$OUT:8000/" "$OUT:9000/" "$HOSTSIDE:$HOSTPORT/secret.html"
	assert_contains "$output" "outside-8000 $OUT:8000/"
	assert_contains "$output" "refused $OUT:9000/"
	assert_contains "$output" "refused $HOSTSIDE:$HOSTPORT/secret.html"
	assert_contains "$output" "192.0.2.123"
	# a bad list entry is refused by name, before anything starts
	run -125 --separate-stderr box run --network user --allow-net 10.0.0.1/8 -- true
	assert_contains "$stderr" "has bits outside the /8 prefix"
	run -125 --separate-stderr box run --network user -p 0:80 -- true
	assert_contains "$stderr" "the host port '0' must be 1 to 65535"
	run -125 --separate-stderr box run --network user -p 5353:53/udp -- true
	assert_contains "$stderr" "UDP ports cannot be published yet"
}

@test "the guest cannot make the network helper hold a port of this host (UDP from a port it picks)" {
	# a receiver in the outside world, and a rootfs with a sender that picks its source port
	ip netns exec "$NS" python3 -c 'import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((sys.argv[1],9999))
while True:
    d,a=s.recvfrom(100); open(sys.argv[2],"a").write("%s %d\n" % (d.decode(),a[1]))' "$OUT" "$BATS_TEST_TMPDIR/got" 3>&- &
	local rx=$! lp
	mkdir -p "$BATS_TEST_TMPDIR/tree/bin"
	cp /bin/busybox "$TEST_HELPERS/udp-send" "$BATS_TEST_TMPDIR/tree/bin/"
	ln -s busybox "$BATS_TEST_TMPDIR/tree/bin/sh"
	# a port below the ephemeral range that nothing of this host holds now
	lp=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("0.0.0.0",0)); print(s.getsockname()[1] % 20000 + 2000)')
	run -0 --separate-stderr timeout 120 box create --name u1 --network user --rootfs "$BATS_TEST_TMPDIR/tree"
	run -0 --separate-stderr timeout 60 box exec u1 udp-send 45000 "$OUT" 9999 ephemeral
	run -0 --separate-stderr timeout 60 box exec u1 udp-send "$lp" "$OUT" 9999 chosen
	for _ in $(seq 50); do grep -q ephemeral "$BATS_TEST_TMPDIR/got" 2>/dev/null && break; sleep 0.1; done
	kill "$rx"
	# the datagram from an ephemeral port went out; the chosen port is still this host's to take
	grep -q '^ephemeral ' "$BATS_TEST_TMPDIR/got"
	run -0 python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("0.0.0.0",int(sys.argv[1]))); print("bound")' "$lp"
	assert_eq "$output" bound
	# a port of the ephemeral range that a service of this host holds with
	# SO_REUSEADDR: passt must not share it (bind4 clears the option)
	python3 -c 'import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(("0.0.0.0",0)); open(sys.argv[1],"w").write(str(s.getsockname()[1])); time.sleep(120)' "$BATS_TEST_TMPDIR/svc" 3>&- &
	local svc=$! sp free pid
	wait_for "$BATS_TEST_TMPDIR/svc" 50
	sp=$(cat "$BATS_TEST_TMPDIR/svc")
	free=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])')
	run -0 --separate-stderr timeout 60 box exec u1 udp-send "$sp" "$OUT" 9999 shared
	run -0 --separate-stderr timeout 60 box exec u1 udp-send "$free" "$OUT" 9999 free
	pid=$(run_pid passt)
	# passt took the free port (so it has handled both datagrams, in order)...
	for _ in $(seq 50); do ss -uanp "sport = :$free" | grep -q "pid=$pid," && break; sleep 0.1; done
	ss -uanp "sport = :$free" | grep -q "pid=$pid,"
	# ...and not the service's
	run ss -uanp "sport = :$sp"
	kill "$svc"
	[[ $output != *"pid=$pid,"* ]] || { echo "passt shares the service's port $sp: $output"; return 1; }
	run -0 timeout 60 box rm -f u1
}

@test "an address this host gains while a sandbox runs is refused to the guest at once" {
	run -0 --separate-stderr timeout 120 box create --name r1 --network user
	local newaddr=$SUB.9
	run -0 --separate-stderr timeout 60 box exec r1 sh -c "$GET" sh "$newaddr:$HOSTPORT/secret.html"
	assert_contains "$output" "refused" # not this host's yet: nothing there
	ip addr add "$newaddr/32" dev "$VETH"
	# this host serves it now
	run -0 curl -s -m 5 "http://$newaddr:$HOSTPORT/secret.html"
	assert_eq "$output" host-secret
	sleep 1
	run -0 --separate-stderr timeout 60 box exec r1 sh -c "$GET" sh "$newaddr:$HOSTPORT/secret.html"
	ip addr del "$newaddr/32" dev "$VETH"
	assert_eq "$output" "refused $newaddr:$HOSTPORT/secret.html"
	run -0 timeout 60 box rm -f r1
}

# debian_rootfs: a Debian tree with dockerd, iptables and nft (debootstrap,
# cached outside the clone by tools/image/debian-rootfs)
debian_rootfs() {
	[ -f "$TOP/build/kernels/net/vmlinux" ] || skip "net kernel not built: run 'make kernel-net'"
	DEB=$(timeout 900 "$TOP/tools/image/debian-rootfs" bookworm docker.io iptables nftables iproute2 busybox-static) ||
		{ echo "debian-rootfs failed"; return 1; }
}

@test "a privileged guest that flushes every rule it can see still reaches only what --allow-net lists" {
	debian_rootfs
	run -0 --separate-stderr timeout 600 box run --kernel net --privileged --rootfs "$DEB" --network user \
		--allow-net "$OUT/32:8000" -- sh -c '
		nft flush ruleset; iptables -P OUTPUT ACCEPT; iptables -F; iptables -t nat -F
		ip route replace default via 10.0.2.2 dev eth0; grep CapEff /proc/self/status; nc() { busybox nc "$@"; }
		'"$GET" sh "$OUT:8000/" "$OUT:9000/" "10.0.2.2:$HOSTPORT/secret.html"
	assert_contains "$output" "CapEff:	000001ffffffffff"
	assert_contains "$output" "outside-8000 $OUT:8000/"
	assert_contains "$output" "refused $OUT:9000/"
	assert_contains "$output" "refused 10.0.2.2:$HOSTPORT/secret.html"
}

@test "Docker in a microVM: dockerd in a --kernel net --privileged sandbox starts a container on its bridge" {
	debian_rootfs
	run -0 --separate-stderr timeout 900 box run --kernel net --privileged --rootfs "$DEB" -m 1g -- sh -c '
		set -e
		mkdir -p /var/lib/docker && mount -t tmpfs -o size=512m tmpfs /var/lib/docker
		dockerd --host unix:///run/docker.sock >/tmp/dockerd.log 2>&1 &
		for n in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
		docker info --format "driver={{.Driver}} cgroup={{.CgroupVersion}}" || { tail -20 /tmp/dockerd.log; exit 1; }
		mkdir -p /img/bin && cp /bin/busybox /img/bin/ && tar -C /img -c . | docker import - bb:1 >/dev/null
		docker run --rm bb:1 /bin/busybox sh -c "echo in-docker-in-vm; /bin/busybox ip -4 -o addr show eth0"'
	assert_contains "$output" "driver=overlay2 cgroup=2"
	assert_contains "$output" "in-docker-in-vm"
	assert_contains "$output" "172.17.0."
}
