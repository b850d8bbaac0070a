#!/usr/bin/env bats
# --network netns:PATH, end to end on real VMs: the guest takes over the
# one interface of a network namespace the way a container engine hands it
# to an OCI runtime (a veth with an IPv4 address and a default route). The
# namespaces are this file's own (names with its pid): "ctr" holds the
# container's side of a veth, "peer" the other side with a web server, "lo"
# only a loopback. No traffic leaves them; the host's interfaces are never
# touched. After every run: no bxtap0, no ingress qdisc, no QEMU left.
load helpers

setup_file() {
	[ "$(id -u)" = 0 ] || return 0
	export CTR=bxc$$ PEER=bxp$$ LOONLY=bxl$$ VC=bxv$$ VP=bxw$$
	export SUB=10.77.$(($$ % 200 + 20))
	export ADDR=$SUB.2 GW=$SUB.1 WWW=$BATS_FILE_TMPDIR/www
	ip netns add "$CTR"
	ip netns add "$PEER"
	ip netns add "$LOONLY"
	ip link add "$VC" netns "$CTR" mtu 1400 type veth peer name "$VP" netns "$PEER" mtu 1400
	ip -n "$CTR" addr add "$ADDR/24" dev "$VC"
	ip -n "$CTR" link set "$VC" up
	ip -n "$CTR" link set lo up
	ip -n "$CTR" route add default via "$GW"
	ip -n "$PEER" addr add "$GW/24" dev "$VP"
	ip -n "$PEER" link set "$VP" up
	ip -n "$PEER" link set lo up
	ip -n "$LOONLY" link set lo up
	export MAC
	MAC=$(ip -n "$CTR" -br link show "$VC" | awk '{print $3}')
	mkdir -p "$WWW"
	echo "peer-8000" >"$WWW/index.html"
	ip netns exec "$PEER" python3 -m http.server 8000 --bind "$GW" --directory "$WWW" >/dev/null 2>&1 3>&- &
	echo $! >"$BATS_FILE_TMPDIR/pids"
	for _ in $(seq 100); do
		ip netns exec "$PEER" curl -s -m 1 "http://$GW:8000/" >/dev/null && break
		sleep 0.1
	done
}

teardown_file() {
	[ -f "$BATS_FILE_TMPDIR/pids" ] && xargs -r kill <"$BATS_FILE_TMPDIR/pids" 2>/dev/null
	local ns
	for ns in "${CTR:-}" "${PEER:-}" "${LOONLY:-}"; do
		[ -n "$ns" ] && ip netns del "$ns" 2>/dev/null
	done
	true
}

setup() {
	vm_suite_setup
	[ -n "${CTR:-}" ] && [ -e "/run/netns/$CTR" ] || { echo "setup_file made no namespaces"; return 1; }
}

teardown() {
	sandboxes_teardown
	# a failed test must not leave the interface taken for the next one
	tc -n "$CTR" qdisc del dev "$VC" ingress 2>/dev/null || true
	[ -n "${EXTRA:-}" ] && ip netns del "$EXTRA" 2>/dev/null
	true
}

# nothing of a run is left in namespace $1 (interface $2): no tap, no
# ingress qdisc; and no process of this test's runs
assert_released() {
	run ip -n "$1" link show bxtap0
	[ "$status" -ne 0 ] || { echo "bxtap0 left in $1: $output"; return 1; }
	run -0 tc -n "$1" qdisc show dev "$2" ingress
	assert_eq "$output" "" "ingress qdisc on $2"
	run -0 tc -n "$1" qdisc show
	[[ $output != *ingress* ]] || { echo "an ingress qdisc left in $1: $output"; return 1; }
	assert_eq "$(own_procs)" "" "processes left"
}

# GET: in the guest, an HTTP GET with busybox nc (its wget crashes in a
# static build) of HOST:PORT/PATH: the body's last line, or "refused"
GET='for t; do hp=${t%%/*}; b=$(printf "GET /%s HTTP/1.0\r\n\r\n" "${t#*/}" | nc -w 5 "${hp%:*}" "${hp#*:}" 2>/dev/null | tail -1); echo "${b:-refused} $t"; done'

@test "the guest takes over the veth: its address, MAC, MTU and default route; the peer's server answers" {
	run -0 --separate-stderr timeout 300 box run --network "netns:/run/netns/$CTR" --hostname nsweb -- sh -c '
		ip -4 -o addr show eth0; ip route; echo "mac $(cat /sys/class/net/eth0/address)"
		echo "mtu $(cat /sys/class/net/eth0/mtu)"; echo "uts $(hostname)"
		echo "files $(cat /etc/hostname /etc/hosts 2>/dev/null | grep -c nsweb)"
		'"$GET" sh "$GW:8000/"
	assert_contains "$output" "inet $ADDR/24"
	assert_contains "$output" "default via $GW dev eth0"
	assert_contains "$output" "mac $MAC"
	assert_contains "$output" "mtu 1400"
	assert_contains "$output" "peer-8000 $GW:8000/"
	# the engine provides /etc/hosts and /etc/hostname: the guest init writes none
	assert_contains "$output" "uts nsweb"
	assert_contains "$output" "files 0"
	assert_released "$CTR" "$VC"
	# the namespace's interface is as it was, and can be taken again
	run -0 ip -n "$CTR" -4 -o addr show dev "$VC"
	assert_contains "$output" "$ADDR/24"
	run -0 --separate-stderr timeout 300 box run --network "netns:/run/netns/$CTR" -- sh -c "$GET" sh "$GW:8000/"
	assert_eq "$output" "peer-8000 $GW:8000/"
	assert_released "$CTR" "$VC"
}

@test "inbound: a server in the guest answers the peer at the namespace's address; a second VM is refused" {
	run -0 --separate-stderr timeout 300 box run -d --name nsin --network "netns:/run/netns/$CTR" -- \
		sh -c 'mkdir -p /www && echo guest-served >/www/index.html && exec httpd -f -p 8080 -h /www'
	local got=
	for _ in $(seq 100); do
		got=$(ip netns exec "$PEER" curl -s -m 2 "http://$ADDR:8080/index.html") && [ -n "$got" ] && break
		sleep 0.3
	done
	assert_eq "$got" guest-served
	# the tap and the claim exist while the sandbox runs
	run -0 ip -n "$CTR" link show bxtap0
	run -0 tc -n "$CTR" qdisc show dev "$VC" ingress
	assert_contains "$output" "ingress"
	# a second VM on the same namespace: refused by name, nothing of it started
	run -125 --separate-stderr timeout 300 box run --network "netns:/run/netns/$CTR" -- true
	assert_contains "$stderr" "the interface $VC of /run/netns/$CTR is already taken"
	# the first still has the interface, and still answers
	run -0 tc -n "$CTR" qdisc show dev "$VC" ingress
	assert_contains "$output" "ingress"
	run -0 ip netns exec "$PEER" curl -s -m 5 "http://$ADDR:8080/index.html"
	assert_eq "$output" guest-served
	# an exec in the sandbox reaches the peer too
	run -0 --separate-stderr timeout 60 box exec nsin sh -c "$GET" sh "$GW:8000/"
	assert_eq "$output" "peer-8000 $GW:8000/"
	run -0 timeout 60 box rm -f nsin
	assert_released "$CTR" "$VC"
	run ip netns exec "$PEER" curl -s -m 2 "http://$ADDR:8080/index.html"
	[ "$status" -ne 0 ] || { echo "still answered after the stop: $output"; return 1; }
}

@test "a namespace with only lo: the run works with no network device" {
	run -0 --separate-stderr timeout 300 box run --network "netns:/run/netns/$LOONLY" -- \
		sh -c 'ls /sys/class/net | grep -v "^sit0$"'
	assert_eq "$output" "lo"
	assert_released "$LOONLY" lo
}

@test "no default route: none in the guest; a /32 with an on-link gateway; two interfaces with IPv4: refused" {
	export EXTRA=bxe$$
	ip netns add "$EXTRA"
	ip -n "$EXTRA" link add ea type veth peer name eb
	ip -n "$EXTRA" addr add 10.78.1.2/28 dev ea
	ip -n "$EXTRA" link set ea up
	run -0 --separate-stderr timeout 300 box run --network "netns:/run/netns/$EXTRA" -- sh -c 'ip -4 -o addr show eth0; ip route'
	assert_contains "$output" "inet 10.78.1.2/28"
	assert_contains "$output" "10.78.1.0/28 dev eth0"
	[[ $output != *default* ]] || { echo "a default route: $output"; return 1; }
	assert_released "$EXTRA" ea
	# a /32 whose gateway is outside it, on the link (as some CNI plugins make)
	ip -n "$EXTRA" addr flush dev ea
	ip -n "$EXTRA" addr add 10.78.3.2/32 dev ea
	ip -n "$EXTRA" route add 169.254.1.1 dev ea scope link
	ip -n "$EXTRA" route add default via 169.254.1.1 dev ea
	run -0 --separate-stderr timeout 300 box run --network "netns:/run/netns/$EXTRA" -- sh -c 'ip -4 -o addr show eth0; ip route'
	assert_contains "$output" "inet 10.78.3.2/32 scope global eth0"
	assert_contains "$output" "default via 169.254.1.1 dev eth0"
	assert_contains "$output" "169.254.1.1 dev eth0"
	assert_released "$EXTRA" ea
	ip -n "$EXTRA" addr add 10.78.2.2/24 dev eb
	run -125 --separate-stderr timeout 300 box run --network "netns:/run/netns/$EXTRA" -- true
	assert_contains "$stderr" "2 interfaces have an IPv4 address ("
	assert_contains "$stderr" "): the guest takes over exactly one"
	[[ $stderr = *"(ea, eb)"* || $stderr = *"(eb, ea)"* ]] || { echo "not both named: $stderr"; return 1; }
	assert_released "$EXTRA" ea
	assert_released "$EXTRA" eb
}

@test "--network netns: what is not a network namespace, and the options that are user-only, are refused" {
	touch "$BATS_TEST_TMPDIR/plain"
	run -125 --separate-stderr timeout 60 box run --network "netns:$BATS_TEST_TMPDIR/plain" -- true
	assert_contains "$stderr" "'$BATS_TEST_TMPDIR/plain' is not a namespace file"
	run -125 --separate-stderr timeout 60 box run --network "netns:/proc/self/ns/uts" -- true
	assert_contains "$stderr" "is a namespace, but not a network namespace"
	run -125 --separate-stderr timeout 60 box run --network "netns:$BATS_TEST_TMPDIR/none" -- true
	assert_contains "$stderr" "cannot open '$BATS_TEST_TMPDIR/none'"
	run -125 --separate-stderr box run --network "netns:run/netns/$CTR" -- true
	assert_contains "$stderr" "netns:PATH needs an absolute PATH"
	run -125 --separate-stderr box run --network "netns:/run/netns/$CTR" -p 8080:80 -- true
	assert_contains "$stderr" "--publish needs --network user"
	# vm-launch itself, without box
	run -125 --separate-stderr vm-launch --config /dev/null --network "netns:/run/netns/$CTR" --dns 10.0.0.1
	assert_contains "$stderr" "are for --network user"
	run -125 --separate-stderr vm-launch --config /dev/null --network "netns:run/netns/$CTR"
	assert_contains "$stderr" "netns:PATH needs the absolute path of a network namespace"
	assert_released "$CTR" "$VC"
	# the namespace the launcher runs in is never taken over: here the test's
	# own $CTR (run from inside it), standing for the host's
	run -125 --separate-stderr ip netns exec "$CTR" env PATH="$PATH" BOXKIT_HOME="$BOXKIT_HOME" \
		timeout 120 box run --network netns:/proc/self/ns/net -- true
	assert_contains "$stderr" "is this host's own network namespace"
	assert_released "$CTR" "$VC"
}

@test "a failure while taking the interface over, or a setup that hangs, leaves nothing behind" {
	[ -e "$BIN_DIR/.test-hooks" ] || skip "needs the test build (BOXKIT_TEST_NETNS_FAIL_AT)"
	local step
	for step in claim tap filter; do
		BOXKIT_TEST_NETNS_FAIL_AT=$step run -125 --separate-stderr timeout 300 \
			box run --network "netns:/run/netns/$CTR" -- true
		assert_contains "$stderr" "--network netns:'/run/netns/$CTR': "
		assert_contains "$stderr" "no VM was started"
		assert_released "$CTR" "$VC"
	done
	assert_contains "$stderr" "redirect $VC's frames to bxtap0: Input/output error"
	# killed after 10 s, with the claim and the tap made: both go
	BOXKIT_TEST_NETNS_STALL_AT=filter run -125 --separate-stderr timeout 300 \
		box run --network "netns:/run/netns/$CTR" -- true
	assert_contains "$stderr" "setting up its network took more than 10 s"
	assert_released "$CTR" "$VC"
	# and the interface can be taken again
	run -0 --separate-stderr timeout 300 box run --network "netns:/run/netns/$CTR" -- sh -c "$GET" sh "$GW:8000/"
	assert_eq "$output" "peer-8000 $GW:8000/"
}
