/* SPDX-License-Identifier: MIT */
/* The monitor's socket: how a client (box-ctl) talks to a sandbox's monitor
 * (vm-launch --detach). Header-only, written once.
 *
 * The socket is <home>/run/<id>/MONITOR_SOCK, a SOCK_STREAM unix socket
 * (0600 in the root-owned 0700 run directory); the monitor also checks each
 * peer with SO_PEERCRED: only the uid that created the sandbox (or root)
 * gets an answer. A connection carries the guest ABI's frames
 * (guest-abi.h), always with stream 0 (the monitor maps the connection to
 * its process in the guest):
 *
 *   client -> monitor  EXEC {"args":[...],"env":["K=V",...],"cwd":"/dir",
 *                      "tty":bool,"rows":N,"cols":N,"user":{...}} first:
 *                      start a process ("user" as for the guest's EXEC).
 *                      "env" adds to (and overrides) the sandbox's own
 *                      environment; "cwd" defaults to the sandbox's.
 *                      Then STDIN (within the window), STDIN_EOF, SIGNAL,
 *                      WINSIZE, as for the guest.
 *   client -> monitor  SHUTDOWN (4 bytes: grace in ms) first: stop the
 *                      sandbox; the monitor answers EXIT 0 once the VM is
 *                      gone.
 *   monitor -> client  WINDOW (the guest's stdin grants), STDOUT, STDERR,
 *                      EXIT (the status), FAIL (a message: refused, or the
 *                      process could not start). The connection ends after
 *                      EXIT or FAIL.
 * A client that goes away before its process ended gets its process
 * killed. */
#ifndef BOXKIT_MONITOR_ABI_H
#define BOXKIT_MONITOR_ABI_H
#include "guest-abi.h"
#define MONITOR_SOCK "monitor.sock"
#define MONITOR_LOG "monitor.log"
#define MONITOR_CONN_MAX 16	    /* clients at once */
#define MONITOR_STOP_GRACE_MS 10000 /* box stop's default */
/* box-ctl exec --process FILE: the OCI process object, at most this long
 * (an OCI runtime refuses a larger one at create, not at start) */
#define BOXCTL_PROCESS_MAX (4u * GUEST_EXEC_MAX)
#endif
