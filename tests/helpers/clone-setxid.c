/* SPDX-License-Identifier: MIT */
/* clone-setxid: the launcher's pattern in miniature. Start the asynchronous
 * log writer (lib/common/log.c), clone a child at once with the raw clone
 * syscall as spawn.c does, and have the child change its uid as a jail
 * does. Run on one CPU under SCHED_FIFO (taskset, chrt), the new thread
 * cannot run before the clone unless log_async waits for it: without that
 * wait the child's setresuid waits forever for a thread that never starts.
 * Exit 0 when the child finished within 5 s, 1 when it hung. */
#include "common.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
	log_init("clone-setxid");
	if (log_async() < 0)
		return 3;
	pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD | CLONE_NEWPID, NULL, NULL, NULL, NULL);
	if (pid < 0)
		return 3;
	if (pid == 0) {
		if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			_exit(2);
		_exit(0);
	}
	for (int i = 0; i < 500; i++) {
		int st;
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 3;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fprintf(stderr, "clone-setxid: the child's setresuid hung\n");
	return 1;
}
