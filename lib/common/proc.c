/* SPDX-License-Identifier: MIT */
#include "common.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <linux/capability.h>

int self_dir(char *out, size_t outlen)
{
	char exe[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (k < 0)
		return -errno;
	exe[k] = 0;
	char *slash = strrchr(exe, '/');
	if (!slash)
		return -EINVAL;
	*slash = 0;
	if ((size_t)snprintf(out, outlen, "%s", exe) >= outlen)
		return -ENAMETOOLONG;
	return 0;
}

int run_capture(const char *path, char *const argv[], bool merge_stderr, char *out, size_t outlen)
{
	int p[2];
	if (outlen == 0)
		return -EINVAL;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return -e;
	}
	if (pid == 0) {
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (nul < 0 || dup2(nul, 0) < 0 || dup2(p[1], 1) < 0 || (merge_stderr && dup2(p[1], 2) < 0))
			_exit(127);
		execv(path, argv);
		_exit(127);
	}
	close(p[1]);
	size_t have = 0;
	char drop[4096];
	ssize_t n;
	for (;;) {
		if (have < outlen - 1)
			n = read(p[0], out + have, outlen - 1 - have);
		else
			n = read(p[0], drop, sizeof(drop)); /* keep the child from blocking */
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (have < outlen - 1)
			have += (size_t)n;
	}
	out[have] = 0;
	close(p[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int drop_to_user(uid_t uid, gid_t gid, int keep_cap)
{
	for (int c = 0; c <= CAP_LAST_CAP; c++)
		if (c != keep_cap && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			return -errno;
	if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return -errno;
	return 0;
}
