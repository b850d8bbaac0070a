#!/usr/bin/env bats
# Terminals, driven through a real one: a tmux server of the test's own
# (its own socket), send-keys and capture-pane. box run -it and box exec -it
# give the command a pty in the guest; the host terminal goes raw and comes
# back exactly as it was; the window size follows; ^C reaches the guest.
load helpers

setup() {
	vm_suite_setup
	command -v tmux >/dev/null || skip "no tmux: run 'make deps'"
	T=(tmux -S "$BATS_TEST_TMPDIR/tmux.sock")
	"${T[@]}" -f /dev/null new-session -d -s t -x 100 -y 30 \
		"env -i HOME=$HOME PATH=$BIN_DIR:/usr/bin:/bin BOXKIT_HOME=$BOXKIT_HOME BOXKIT_BIN=$BIN_DIR TERM=xterm PS1='host\$ ' bash --norc --noprofile"
	sleep 0.3
}

teardown() {
	"${T[@]}" kill-server 2>/dev/null || true
	sandboxes_teardown
}

keys() { "${T[@]}" send-keys -t t "$@"; }
screen() { "${T[@]}" capture-pane -t t -p; }
# wait_screen TEXT [TENTHS]: until the pane shows TEXT
wait_screen() {
	local n=${2:-300}
	while [ "$n" -gt 0 ]; do
		screen | grep -qF -- "$1" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	echo "the screen never showed '$1':" >&2
	screen >&2
	return 1
}

# the shared script: a prompt, an interactive command, a resize, ^C on a
# sleep with the shell surviving, the exit status, the host's stty unchanged
drive() {
	keys "stty -g >$BATS_TEST_TMPDIR/before; $1; echo \"rc=\$?\"; stty -g >$BATS_TEST_TMPDIR/after" Enter
	wait_screen "/ #"
	keys "tty; stty size" Enter
	wait_screen "30 100"
	wait_screen "/dev/pts/"
	keys "read -p 'name? ' n; echo \"hello \$n\"" Enter
	wait_screen "name?"
	keys "boxkit" Enter
	wait_screen "hello boxkit"
	"${T[@]}" resize-window -t t -x 90 -y 20
	sleep 0.5
	keys "stty size" Enter
	wait_screen "20 90"
	keys "sleep 60" Enter
	sleep 1
	keys C-c
	keys "echo \"after ^C: \$?\"" Enter
	wait_screen "after ^C: 130"
	keys "exit 4" Enter
	wait_screen "rc=4"
	wait_for "$BATS_TEST_TMPDIR/after" 50
	assert_eq "$(cat "$BATS_TEST_TMPDIR/after")" "$(cat "$BATS_TEST_TMPDIR/before")" "host terminal settings"
}

@test "box run -it: a shell on a pty in the guest, resize, ^C, exit status, the host terminal restored" {
	drive "box run --cold -it -- sh"
}

@test "box run -it in a copy of a saved VM (the first run saves it, the second restores it): the same" {
	drive "box run -it -- sh"
	assert_eq "$(ls "$BOXKIT_HOME/warm" | wc -l)" 1 "saved VMs"
	rm -f "$BATS_TEST_TMPDIR/after"
	"${T[@]}" resize-window -t t -x 100 -y 30
	keys "clear" Enter
	drive "box run -it -- sh"
}

@test "box exec -it: the same in a sandbox, twice, and the sandbox lives on" {
	run -0 timeout 120 box create --name tt
	drive "box exec -it tt sh"
	rm -f "$BATS_TEST_TMPDIR/after"
	"${T[@]}" resize-window -t t -x 100 -y 30
	keys "clear" Enter
	drive "box exec -it tt sh"
	run -0 box exec tt echo alive
	assert_eq "$output" alive
}

@test "-t without a terminal is refused with a clear message; -i without -t relays stdin" {
	run -0 timeout 120 box create --name tn
	run -125 --separate-stderr box exec -t tn true </dev/null
	assert_contains "$stderr" "-t needs a terminal on stdin"
	run -125 --separate-stderr box run -t -- true </dev/null
	assert_contains "$stderr" "-t needs a terminal on stdin"
	run -0 bash -c 'echo piped | box exec -i tn cat'
	assert_eq "$output" piped
}
