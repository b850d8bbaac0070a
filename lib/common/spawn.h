/* SPDX-License-Identifier: MIT */
/* The one way boxkit starts a program: an explicit descriptor map (every
 * other descriptor is closed at exec), an explicit environment (never the
 * caller's), optional new namespaces, a setup hook in the child (mounts,
 * pivot_root, the uid drop) and a final hook just before exec (seccomp), a
 * parent-death signal, and an error pipe that carries any failure before
 * exec back to the caller as a message. */
#ifndef BOXKIT_SPAWN_H
#define BOXKIT_SPAWN_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct spawn_fd {
	int fd; /* in the parent */
	int to; /* its number in the child */
};

struct spawn {
	const char *path; /* execve(path) ... */
	int exec_fd;	  /* ... or, when >= 0, fexecve(exec_fd) (set -1 otherwise) */
	char *const *argv;
	char *const *envp;	    /* explicit; NULL means an empty environment */
	const struct spawn_fd *fds; /* must map 0, 1 and 2; every other descriptor is closed */
	size_t nfds;
	unsigned long ns_flags; /* CLONE_NEW* for the child (0: a plain fork) */
	int pdeathsig;		/* sent to the child when the caller dies; 0 for none */
	bool new_session;	/* setsid(): out of the caller's process group and terminal */
	/* In the child, first (the caller's descriptors are still there): mounts,
	 * pivot_root, the uid drop. Opens only O_CLOEXEC descriptors. 0 or
	 * -errno with a message in err. */
	int (*setup)(void *ctx, char *err, size_t errlen);
	/* In the child, last, after the descriptor map: seccomp. */
	int (*final)(void *ctx, char *err, size_t errlen);
	/* In the parent, right after the fork and before the child does
	 * anything: record the pid (the child waits for this to return; if the
	 * caller dies first, the child exits). 0 or -errno (the child is
	 * killed). */
	int (*forked)(void *ctx, pid_t pid);
	void *ctx;
};

/* Start s. 0 and *pid once the child has exec'd; -errno when it could not
 * (err holds "what: why", the child is reaped). */
int spawn_run(const struct spawn *s, pid_t *pid, char *err, size_t errlen);
/* SIGKILL pid and reap it. Its wait status, or -errno. */
int spawn_kill(pid_t pid);
/* The start time of pid (field 22 of /proc/pid/stat, clock ticks since
 * boot): with the pid it names one process for good. 0 when gone. */
unsigned long long proc_start_time(pid_t pid);
/* true when pid is running (not a zombie) and started at start */
bool proc_is(pid_t pid, unsigned long long start);
#endif
