/* SPDX-License-Identifier: MIT */
#include "common.h"
#include "spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int path_lookup(const char *name, char *out, size_t outlen)
{
	if (strchr(name, '/')) {
		if ((size_t)snprintf(out, outlen, "%s", name) >= outlen)
			return -ENAMETOOLONG;
		return access(out, X_OK) == 0 ? 0 : -errno;
	}
	const char *path = getenv("PATH");
	for (const char *c = path && *path ? path : "/usr/bin:/bin"; *c;) {
		const char *e = strchrnul(c, ':');
		if ((size_t)snprintf(out, outlen, "%.*s/%s", (int)(e - c), c, name) < outlen && access(out, X_OK) == 0)
			return 0;
		c = *e ? e + 1 : e;
	}
	return -ENOENT;
}

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

/* the environment a helper program gets: a fixed PATH and boxkit's own
 * settings, never the rest of the caller's */
static const char *const env_keep[] = { "BOXKIT_LOG", "BOXKIT_OP_ID", "BOXKIT_VIRTIOFSD", "BOXKIT_CACHE",
					"BOXKIT_HOME" };

int run_capture(const char *path, char *const argv[], bool merge_stderr, char *out, size_t outlen)
{
	char *envp[ARRAY_SIZE(env_keep) + 2] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin" };
	char msg[512];
	size_t ne = 1;
	int p[2];
	pid_t pid;

	if (outlen == 0)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(env_keep); i++) {
		const char *v = getenv(env_keep[i]);
		if (v) /* environ's own "KEY=value" string */
			envp[ne++] = (char *)v - strlen(env_keep[i]) - 1;
	}
	envp[ne] = NULL;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	cleanup_close int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nul < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return -e;
	}
	struct spawn_fd fds[] = { { nul, 0 }, { p[1], 1 }, { merge_stderr ? p[1] : STDERR_FILENO, 2 } };
	struct spawn s = {
		.path = path, .exec_fd = -1, .argv = argv, .envp = envp, .fds = fds, .nfds = ARRAY_SIZE(fds)
	};
	int r = spawn_run(&s, &pid, msg, sizeof(msg));
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		return 127; /* could not be executed */
	}
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

int drop_to_user_ambient(uid_t uid, gid_t gid, int cap)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	uint32_t bit = 1u << (cap % 32);
	struct __user_cap_data_struct d[2] = { { 0 } };
	int r;
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return -errno;
	if ((r = drop_to_user(uid, gid, cap)) < 0)
		return r;
	d[cap / 32].effective = d[cap / 32].permitted = d[cap / 32].inheritable = bit;
	if (syscall(SYS_capset, &h, d) < 0)
		return -errno;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
		return -errno;
	return 0;
}
