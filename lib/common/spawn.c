/* SPDX-License-Identifier: MIT */
#include "spawn.h"
#include "common.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* In the child: report "what: why" through the error pipe and leave. */
static void child_fail(int errfd, int err, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));
static void child_fail(int errfd, int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	if (err)
		n += snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(err));
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	if (write(errfd, msg, (size_t)n) < 0) {
	}
	_exit(127);
}

static void child(const struct spawn *s, int errfd, int gofd)
{
	char msg[900] = "";
	sigset_t none;
	int r;

	/* wait until the parent has recorded us; EOF means it died first */
	if (gofd >= 0) {
		char c;
		ssize_t n;
		do
			n = read(gofd, &c, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			_exit(127);
		close(gofd);
	}

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	/* a terminal's ^C or hangup goes to the caller's process group: the
	 * caller decides what reaches the child, never the terminal */
	if (s->new_session && setsid() < 0)
		child_fail(errfd, errno, "setsid");
	if (s->setup && (r = s->setup(s->ctx, msg, sizeof(msg))) < 0)
		child_fail(errfd, -r, "%s", msg[0] ? msg : "setup");

	/* the descriptor map: everything to free high numbers first, so that no
	 * target overwrites a source, then into place */
	int maxto = 2;
	for (size_t i = 0; i < s->nfds; i++)
		if (s->fds[i].to > maxto)
			maxto = s->fds[i].to;
	int base = maxto + 1 + (int)s->nfds + 8, tmp[64];
	if (s->nfds > ARRAY_SIZE(tmp))
		child_fail(errfd, E2BIG, "descriptor map");
	int e2 = fcntl(errfd, F_DUPFD_CLOEXEC, base + 64);
	if (e2 < 0)
		child_fail(errfd, errno, "dup");
	errfd = e2;
	for (size_t i = 0; i < s->nfds; i++)
		if ((tmp[i] = fcntl(s->fds[i].fd, F_DUPFD_CLOEXEC, base)) < 0)
			child_fail(errfd, errno, "dup descriptor %d", s->fds[i].fd);
	for (int fd = 0; fd <= maxto; fd++) {
		bool mapped = false;
		for (size_t i = 0; i < s->nfds; i++)
			mapped |= s->fds[i].to == fd;
		if (!mapped)
			close(fd);
	}
	for (size_t i = 0; i < s->nfds; i++)
		if (dup2(tmp[i], s->fds[i].to) < 0) /* dup2 clears FD_CLOEXEC on the copy */
			child_fail(errfd, errno, "dup2 to %d", s->fds[i].to);
	/* everything above the map closes at exec (the error pipe included) */
	if (syscall(SYS_close_range, (unsigned)maxto + 1, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		child_fail(errfd, errno, "close_range");

	if (s->pdeathsig) {
		if (prctl(PR_SET_PDEATHSIG, s->pdeathsig) < 0)
			child_fail(errfd, errno, "PR_SET_PDEATHSIG");
		/* the parent may have died before: then nobody reads the error pipe */
		struct pollfd pf = { errfd, 0, 0 };
		if (poll(&pf, 1, 0) > 0 && (pf.revents & POLLERR))
			_exit(127);
	}
	if (s->final && (r = s->final(s->ctx, msg, sizeof(msg))) < 0)
		child_fail(errfd, -r, "%s", msg[0] ? msg : "final setup");
	char *const empty[] = { NULL };
	char *const *envp = s->envp ? s->envp : empty;
	if (s->exec_fd >= 0) {
		fexecve(s->exec_fd, s->argv, envp);
		child_fail(errfd, errno, "exec %s", s->argv[0]);
	}
	execve(s->path, s->argv, envp);
	child_fail(errfd, errno, "exec %s", s->path);
}

int spawn_run(const struct spawn *s, pid_t *pid_out, char *err, size_t errlen)
{
	int p[2], go[2] = { -1, -1 };
	pid_t pid;

	if (err && errlen)
		err[0] = 0;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	if (s->forked && pipe2(go, O_CLOEXEC) < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return -e;
	}
	if (s->ns_flags)
		pid = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD | s->ns_flags, NULL, NULL, NULL, NULL);
	else
		pid = fork();
	if (pid < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		if (go[0] >= 0) {
			close(go[0]);
			close(go[1]);
		}
		snprintf(err, errlen, "%s: %s", s->ns_flags ? "clone" : "fork", strerror(e));
		return -e;
	}
	if (pid == 0) {
		close(p[0]);
		if (go[1] >= 0)
			close(go[1]);
		child(s, p[1], go[0]);
		_exit(127);
	}
	close(p[1]);
	if (go[0] >= 0) {
		close(go[0]);
		int fr = s->forked(s->ctx, pid);
		if (fr < 0) {
			close(go[1]);
			close(p[0]);
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
			}
			snprintf(err, errlen, "cannot record the new process: %s", strerror(-fr));
			return fr;
		}
		if (write(go[1], "g", 1) != 1) {
		}
		close(go[1]);
	}
	char msg[1024];
	ssize_t n;
	do
		n = read(p[0], msg, sizeof(msg) - 1);
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n > 0) {
		msg[n] = 0;
		snprintf(err, errlen, "%s", msg);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
		}
		return -ECHILD;
	}
	*pid_out = pid;
	return 0;
}

int spawn_kill(pid_t pid)
{
	int st;
	if (pid <= 0)
		return -EINVAL;
	kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return st;
}

static unsigned long long proc_stat(pid_t pid, char *state)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* the command name is in parentheses and may hold anything: skip to the last ')' */
	char *c = strrchr(buf, ')');
	if (!c || c[1] != ' ')
		return 0;
	if (state)
		*state = c[2];
	/* fields after it start at 3 (state); the start time is field 22 */
	int field = 2;
	char *save = NULL;
	for (char *t = strtok_r(c + 1, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (++field == 22)
			return strtoull(t, NULL, 10);
	}
	return 0;
}

unsigned long long proc_start_time(pid_t pid)
{
	return proc_stat(pid, NULL);
}

bool proc_is(pid_t pid, unsigned long long start)
{
	char state = 0;
	return pid > 0 && start && proc_stat(pid, &state) == start && state != 'Z' && state != 'X';
}
