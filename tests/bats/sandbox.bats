#!/usr/bin/env bats
# Sandboxes that stay up, end to end on real VMs: box create boots one and
# leaves its monitor (vm-launch --detach); box exec runs commands in its
# container through the monitor's socket; box stop, rm, ls, logs; the
# monitor's socket is the creating user's only.
load helpers

setup() {
	vm_suite_setup
	MC=$TOP/tests/helpers/monitor-client.py
}

teardown() {
	sandboxes_teardown
}

# sandbox_dir NAME: its run directory
sandbox_dir() { echo "$BOXKIT_HOME/run/$(run-record find --home "$BOXKIT_HOME" --name "$1")"; }
# monitor_pid NAME: the monitor (the run's owner that is a vm-launch)
monitor_pid() {
	local d p
	d=$(sandbox_dir "$1")
	for p in $(jq -r '.owners[].pid' "$d/run.json"); do
		tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'vm-launch .*--detach' && { echo "$p"; return 0; }
	done
	return 1
}
state_of() { box ls --json | jq -r --arg n "$1" 'select(.name==$n) | .state'; }

@test "create, twenty execs that share state, ls, logs, stop and rm leave nothing" {
	run -0 --separate-stderr timeout 120 box create --name s1 -v data:/data -v /scratch
	assert_eq "$output" s1
	assert_eq "$(state_of s1)" running
	d=$(sandbox_dir s1)
	[ -S "$d/monitor.sock" ]
	assert_eq "$(stat -c %a "$d/monitor.sock")" 600
	assert_eq "$(stat -c %a "$d")" 700
	run -0 timeout 60 box exec s1 -- sh -c 'echo 0 >/tmp/count; echo kept >/data/f; echo tmp >/scratch/f'
	for k in $(seq 20); do
		run -0 --separate-stderr timeout 60 box exec s1 sh -c 'n=$(cat /tmp/count); echo $((n + 1)) | tee /tmp/count'
		assert_eq "$output" "$k"
	done
	run -0 box exec s1 cat /data/f /scratch/f
	assert_eq "$output" "kept
tmp"
	run -0 box ls
	assert_contains "$output" "s1"
	assert_contains "$output" "running"
	run -0 box logs s1
	[ -n "$output" ]
	assert_eq "$output" "$(cat "$d/console.log")"
	anon=$(jq -r '.anonymous[0]' "$d/run.json")
	[ -d "$BOXKIT_HOME/volumes/anonymous/$anon" ]
	run -0 timeout 60 box stop s1
	assert_eq "$(state_of s1)" stopped
	# stopped: no process, mount, jail or anonymous volume is left; the
	# record and the logs stay until rm
	sleep 0.2
	assert_eq "$(own_procs)" "" "processes of the sandbox"
	assert_eq "$(ls -A "$BOXKIT_HOME/jail/"* 2>/dev/null)" "" "jails"
	[ ! -e "$BOXKIT_HOME/volumes/anonymous/$anon" ]
	[ ! -e "$d/monitor.sock" ]
	run -0 box logs s1
	assert_contains "$output" "reboot"
	run -125 --separate-stderr box exec s1 true
	assert_contains "$stderr" "not running"
	run -0 box rm s1
	[ ! -e "$d" ]
	assert_eq "$(box ls --json)" ""
	assert_eq "$(cat "$N/data/f")" kept
	! grep " $BOXKIT_HOME/jail" /proc/self/mountinfo || false
}

@test "exec: stdin, exit codes, 126, 127, signals, environment and directory, as box run does" {
	run -0 timeout 120 box create --name s2 -e FROM_CREATE=yes -w /tmp
	run -7 --separate-stderr bash -c 'printf "a\nb\n" | box exec -i s2 sh -c "cat; exit 7"'
	assert_eq "$output" "a
b"
	# without -i the command's stdin is empty
	run -0 bash -c 'echo lost | box exec s2 sh -c "cat; echo end"'
	assert_eq "$output" end
	run -3 --separate-stderr box exec s2 sh -c 'echo out; echo err >&2; exit 3'
	assert_eq "$output" out
	assert_eq "$stderr" err
	run -127 --separate-stderr box exec s2 nosuchcommand
	assert_contains "$stderr" "nosuchcommand: command not found"
	run -126 --separate-stderr box exec s2 /etc/passwd
	assert_contains "$stderr" "cannot execute"
	run -0 box exec s2 sh -c 'echo $FROM_CREATE $(pwd)'
	assert_eq "$output" "yes /tmp"
	printf 'FROM_FILE=1\n# a comment\nFROM_CREATE=over\n' >"$BATS_TEST_TMPDIR/env"
	run -0 box exec -e X=1 --env-file "$BATS_TEST_TMPDIR/env" -w / s2 sh -c 'echo $X $FROM_FILE $FROM_CREATE $(pwd)'
	assert_eq "$output" "1 1 over /"
	run -126 --separate-stderr box exec -w /nonexistent s2 true
	assert_contains "$stderr" "/nonexistent"
	# signals reach the command; its status is the answer
	box exec s2 sleep 60 &
	p=$!
	sleep 1.5
	kill -INT "$p"
	rc=0
	wait "$p" || rc=$?
	assert_eq "$rc" 130
	box exec s2 sh -c 'trap "echo got TERM; exit 5" TERM; sleep 60 & wait' >"$BATS_TEST_TMPDIR/o" &
	p=$!
	sleep 1.5
	kill -TERM "$p"
	rc=0
	wait "$p" || rc=$?
	assert_eq "$rc" 5
	assert_eq "$(cat "$BATS_TEST_TMPDIR/o")" "got TERM"
	# a background writer holding the pipes does not keep an exec forever:
	# its group is killed at the drain's limit (10 s after the exit)
	SECONDS=0
	run -0 timeout 60 box exec s2 sh -c '(while :; do echo x; sleep 0.05; done) & echo started'
	assert_contains "$output" started
	[ "$SECONDS" -le 20 ]
	run -0 box exec s2 sh -c 'ps -o pid,args | grep -c "[s]leep 0.05" || true'
	assert_eq "$output" 0
	# a client that goes away takes its process with it
	box exec s2 sh -c 'echo $$ >/tmp/pid; sleep 60' &
	p=$!
	sleep 1.5
	kill -9 "$p"
	wait "$p" || true
	sleep 1
	run -1 box exec s2 sh -c 'kill -0 $(cat /tmp/pid)'
}

@test "two concurrent execs each have their own streams; a client that stops reading stalls only its own" {
	run -0 timeout 120 box create --name s3
	# one exec blocks on stdin while another runs and ends
	mkfifo "$BATS_TEST_TMPDIR/in"
	box exec -i s3 sh -c 'read x; echo "A:$x"' <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/a" &
	pa=$!
	exec 7>"$BATS_TEST_TMPDIR/in"
	run -0 timeout 20 box exec s3 echo B
	assert_eq "$output" B
	echo hello >&7
	exec 7>&-
	wait "$pa"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/a")" "A:hello"
	# a flood to a reader that never reads: the others still run, and the
	# monitor holds no more than the window for it
	mkfifo "$BATS_TEST_TMPDIR/out"
	sleep 120 <"$BATS_TEST_TMPDIR/out" &
	holder=$!
	box exec s3 sh -c 'while :; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done' >"$BATS_TEST_TMPDIR/out" &
	pf=$!
	sleep 3
	for k in 1 2 3; do
		run -0 timeout 20 box exec s3 echo "still $k"
		assert_eq "$output" "still $k"
	done
	mon=$(monitor_pid s3)
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$mon/status")
	echo "monitor RSS with a stalled flood: $rss kB" >&3
	[ "$rss" -lt 16384 ]
	kill "$pf" "$holder"
	wait "$pf" 2>/dev/null || true
}

@test "a SIGKILLed monitor is collected by box gc: QEMU, the jail and the socket go, the sandbox shows stopped" {
	run -0 timeout 120 box create --name s4 -v /scratch
	d=$(sandbox_dir s4)
	anon=$(jq -r '.anonymous[0]' "$d/run.json")
	mon=$(monitor_pid s4)
	qemu=$(jq -r '[.processes[] | select(.what=="qemu") | .pid][0]' "$d/run.json")
	kill -0 "$qemu"
	kill -9 "$mon"
	sleep 0.5
	run -0 box gc
	assert_eq "$(state_of s4)" stopped
	assert_eq "$(jq -r .stopped.how "$d/run.json")" gc
	sleep 0.2
	assert_eq "$(own_procs)" ""
	[ ! -e "$BOXKIT_HOME/volumes/anonymous/$anon" ]
	assert_eq "$(ls -A "$BOXKIT_HOME/jail/"* 2>/dev/null)" "" "jails"
	run -125 --separate-stderr box exec s4 true
	assert_contains "$stderr" "not running"
	run -0 box rm s4
	[ ! -e "$d" ]
	# and without a gc first: rm -f on a sandbox whose monitor was killed
	run -0 timeout 120 box create --name s4b
	kill -9 "$(monitor_pid s4b)"
	sleep 0.5
	run -0 box rm -f s4b
	assert_eq "$(box ls --json)" ""
	assert_eq "$(own_procs)" ""
}

@test "another user cannot reach a sandbox's monitor: the file modes refuse it, and so does SO_PEERCRED" {
	run -0 timeout 120 box create --name s5
	d=$(sandbox_dir s5)
	# a client that opens the run directory as root, then becomes nobody
	# and asks for a command
	run -0 "$MC" as-user 65534 "$d"
	assert_contains "$output" "connect: Permission denied"
	# the modes loosened (a mistake, or an attacker with a file descriptor):
	# the monitor's own check still refuses
	chmod 0711 "$d"
	chmod 0666 "$d/monitor.sock"
	run -0 "$MC" as-user 65534 "$d"
	assert_contains "$output" "permission denied"
	[[ $output != *PWNED* ]]
	run -0 box exec s5 echo still
	assert_eq "$output" still
}

@test "a client of the monitor cannot hurt the sandbox or other clients: a window spent byte by byte, a NUL, idle connections" {
	run -0 timeout 120 box create --name s8
	d=$(sandbox_dir s8)
	# 64 KiB of 1-byte stdin frames to cat, never reading: the guest's window
	# grants and cat's output pile up for that client only; the VM lives
	"$MC" window-flood "$d" >"$BATS_TEST_TMPDIR/flood" &
	pf=$!
	sleep 5
	run -0 timeout 20 box exec s8 echo alive
	assert_eq "$output" alive
	wait "$pf"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/flood")" "window 65536"
	assert_eq "$(state_of s8)" running
	# a NUL inside the exec request's JSON is refused (json-c would read past it)
	run -0 "$MC" nul "$d"
	assert_contains "$output" "NUL byte"
	run -0 "$MC" nul-escape "$d"
	assert_contains "$output" "no NUL"
	# sixteen connections that ask nothing fill the slots, for 5 s only
	"$MC" idle "$d" 16 7 >"$BATS_TEST_TMPDIR/idle" &
	pi=$!
	sleep 1
	run -125 --separate-stderr box exec s8 true
	assert_contains "$stderr" "too many clients"
	sleep 5
	run -0 timeout 20 box exec s8 echo served
	assert_eq "$output" served
	wait "$pi"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/idle")" "holding 16
closed by the monitor: 16 told why: 16"
	assert_eq "$(state_of s8)" running
}

@test "Docker's flags: -u, --hostname, --read-only, -m, --cpus, run -d with box logs, --rm; unknown options refused by name" {
	run -0 timeout 120 box create --name s6 -u 1000:1000 --hostname hh --read-only -m 512m --cpus 2
	run -0 box exec s6 sh -c 'id -u; id -g; hostname; nproc; touch /x 2>/dev/null && echo writable || echo read-only'
	assert_eq "$output" "1000
1000
hh
2
read-only"
	mem=$(box exec s6 awk '/MemTotal/ {print $2}' /proc/meminfo)
	[ "$mem" -gt 400000 ] && [ "$mem" -le 524288 ] || false
	run -125 --separate-stderr box exec -u 0 s6 id
	assert_contains "$stderr" "-u is not supported"
	run -125 --separate-stderr box run --gpus all -- true
	assert_contains "$stderr" "unknown option '--gpus'"
	run -125 --separate-stderr box create --cpus 1.5
	assert_contains "$stderr" "whole CPUs"
	run -125 --separate-stderr box create --memory 12q
	assert_contains "$stderr" "--memory '12q'"
	run -125 --separate-stderr box run --privileged=yes -- true
	assert_contains "$stderr" "takes no value"
	run -125 --separate-stderr box run --name x -- true
	assert_contains "$stderr" "--name is for sandboxes"
	run -125 --separate-stderr box create --name s6
	assert_contains "$stderr" "already in use"
	# an environment name is checked before it is expanded
	run -125 --separate-stderr box run -e 'x[$(touch '"$BATS_TEST_TMPDIR"'/pwned)]' -- true
	assert_contains "$stderr" "environment entry"
	printf 'ok=1\nx[$(touch %s/pwned)]\n' "$BATS_TEST_TMPDIR" >"$BATS_TEST_TMPDIR/bad.env"
	run -125 --separate-stderr box exec --env-file "$BATS_TEST_TMPDIR/bad.env" s6 true
	assert_contains "$stderr" "environment entry"
	[ ! -e "$BATS_TEST_TMPDIR/pwned" ]
	run -0 box exec -eGLUED=yes s6 sh -c 'echo $GLUED'
	assert_eq "$output" yes
	# a newline in a value stays in that value: it makes no second entry
	run -0 box exec -e "$(printf 'ML=a\nINJ=b')" s6 sh -c 'echo "$ML"; echo "${INJ:-unset}"'
	assert_eq "$output" "a
INJ=b
unset"
	run -0 box --version
	assert_contains "$output" "box (boxkit) $(cat "$TOP/VERSION")"
	# run -d: the first command's output goes to the console log
	run -0 --separate-stderr timeout 120 box run -d --rm --name s7 -e W=world -- sh -c 'echo hello $W'
	assert_eq "$output" s7
	for _ in $(seq 50); do box logs s7 | grep -q "hello world" && break; sleep 0.2; done
	run -0 box logs s7
	assert_contains "$output" "hello world"
	run -0 box exec s7 echo up
	assert_eq "$output" up
	run -0 timeout 60 box stop s7
	# --rm: the record went with it
	run -1 box logs s7
	run -2 box logs -f s6
	assert_contains "$output" "not supported"
}
