/* SPDX-License-Identifier: MIT */
/* The run record: one per run, <home>/run/<id>/run.json, root's own (0600 in
 * a 0700 directory; nothing in it is writable by the VM's uid or by
 * virtiofsd). It is written when the run starts, before anything else is
 * created, and every step that creates something adds it here first. The
 * normal cleanup and `box gc` are the same code (run_cleanup) reading it;
 * they delete only beneath the known roots, by descriptor.
 *
 *   {"version":1,"id","created",
 *    "owners":[{"pid","start"}],          processes that own the run (box, vm-launch)
 *    "processes":[{"what","pid","start"}], what the run started (QEMU, virtiofsd)
 *    "jails":["<vmm name>"],              <home>/jail/<vmm name>/<id>
 *    "anonymous":["<ULID>"],              <home>/volumes/anonymous/<ULID>
 *    "sockets":["<name>"],                in the jail's /run (gone with it)
 *    "cgroups":["<name>"],                <cgroup2 mount>/boxkit/<name> (cgroup.c)
 *    "name":"<name>",                     a sandbox (box create): unique
 *    "stopped":{"at","how","status"}}     a sandbox that has stopped
 *
 * A sandbox's record and logs outlive its resources: when it stops (or gc
 * finds its monitor dead) everything else goes and the record says
 * "stopped"; box rm removes the rest.
 *
 * The one id names the run directory, the jail, and is BOXKIT_OP_ID. */
#ifndef BOXKIT_RUNREC_H
#define BOXKIT_RUNREC_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define RUN_ROOT "run"
#define RUN_RECORD "run.json"
#define RUN_RECORD_VERSION 1
#define RUN_RECORD_MAX (1 << 20)
#define RUN_LIST_MAX 1024
#define RUN_ID_LEN 26
#define JAIL_ROOT "jail"

enum run_list { RUN_OWNERS, RUN_PROCESSES, RUN_JAILS, RUN_ANONYMOUS, RUN_SOCKETS, RUN_CGROUPS };

/* a new id: a lower-case ULID (26 characters, time-ordered) */
int run_id_new(char out[RUN_ID_LEN + 1]);
/* 26 characters of [0-9a-z] */
bool run_id_valid(const char *id);
/* true when name is a valid list entry: one path component of [A-Za-z0-9_.-] */
bool run_name_valid(const char *name);

/* Create <home>/run/<id> (0700) with its record naming owner. The directory
 * appears complete or not at all. 0 or -errno. */
int run_create(int homefd, const char *id, pid_t owner);
/* The same, for a sandbox with a unique name (run_name_valid): -EEXIST when
 * another run has it. */
int run_create_named(int homefd, const char *id, pid_t owner, const char *name);
/* The run of a sandbox by name: 0 and id, -ENOENT, or -errno. */
int run_find(int homefd, const char *name, char id[RUN_ID_LEN + 1]);
/* Mark a sandbox stopped: how ("exited", "stopped", "gc"...), its status or -1. */
int run_stop(int homefd, const char *id, const char *how, int status);
/* Add value to a list (RUN_JAILS, RUN_ANONYMOUS, RUN_SOCKETS, RUN_CGROUPS),
 * under a lock, atomically. 0, -EINVAL for a bad value, -ENOENT for no such
 * run, or -errno. */
int run_add(int homefd, const char *id, enum run_list list, const char *value);
/* Add a process (RUN_OWNERS or RUN_PROCESSES), with its start time. */
int run_add_process(int homefd, const char *id, enum run_list list, const char *what, pid_t pid);
/* true when some owner of the run is still running */
bool run_owned(int homefd, const char *id);

/* Remove everything the record lists, then the run directory: kill the
 * processes (checked by start time), remove the jails and anonymous volumes beneath their roots by descriptor. Carries on past
 * failures; 0, or the first -errno with what failed in err. */
int run_cleanup(int homefd, const char *id, char *err, size_t errlen);
/* run_cleanup that keeps the run directory (a stopped sandbox's record and logs) */
int run_cleanup_ex(int homefd, const char *id, bool keep_dir, char *err, size_t errlen);
/* run_cleanup for every run no owner holds any more. Returns how many were
 * removed, or the first -errno (err says which). */
int run_gc(int homefd, char *err, size_t errlen);

/* The record as JSON (caller puts it), or NULL with *r = -errno. */
struct json_object *run_load(int homefd, const char *id, int *r);
#endif
