/* SPDX-License-Identifier: MIT */
/* The container's init in serve mode: PID 1 of the container, started once
 * by crun. It starts each process the guest init asks for (CI_EXEC) as its
 * own child, so every command of a sandbox runs with the namespaces, user,
 * capabilities and seccomp filter of the container, reaps everything
 * (orphans too: it is the container's PID 1), and reports exit statuses. */
#include "cinit.h"
#include "guest-abi.h"

#include <json-c/json.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

extern char **environ;

int ci_send(int sock, uint32_t type, uint32_t id, int32_t val, const void *payload, size_t len, const int *fds,
	    int nfds)
{
	struct ci_msg m = { type, id, val };
	struct iovec iov[2] = { { &m, sizeof(m) }, { (void *)payload, len } };
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	if (nfds > 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n >= 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			struct pollfd pf = { sock, POLLOUT, 0 };
			poll(&pf, 1, 1000);
			continue;
		}
		return -errno;
	}
}

long ci_recv(int sock, struct ci_msg *m, void *payload, size_t cap, int *fds, int *nfds)
{
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov[2] = { { m, sizeof(*m) }, { payload, cap } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	*nfds = 0;
	for (int i = 0; i < 3; i++)
		fds[i] = -1;
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + (size_t)i * sizeof(int), sizeof(int));
				if (*nfds < 3)
					fds[(*nfds)++] = fd;
				else
					close(fd);
			}
		}
	if (n == 0)
		return -EPIPE;
	if ((size_t)n < sizeof(*m) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		for (int i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
		return -EPROTO;
	}
	return (long)((size_t)n - sizeof(*m));
}

/* ---- one process ------------------------------------------------------------------------- */

struct proc {
	uint32_t id;
	pid_t pid;  /* while it runs */
	pid_t pgid; /* its session's group: kept after it exits, for a SIGKILL
		     * to what it left behind, until the id is used again */
};
static struct proc procs[GUEST_STREAMS_MAX];

static char **str_array(struct json_object *a, bool need_one)
{
	if (!a || !json_object_is_type(a, json_type_array))
		return need_one ? NULL : calloc(1, sizeof(char *));
	size_t n = json_object_array_length(a);
	if ((need_one && n == 0) || n > 4096)
		return NULL;
	char **v = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; v && i < n; i++) {
		struct json_object *s = json_object_array_get_idx(a, i);
		if (!json_object_is_type(s, json_type_string)) {
			free(v);
			return NULL;
		}
		v[i] = (char *)json_object_get_string(s);
	}
	return v;
}

/* An exec's "user" (checked by the monitor): its groups, gid and uid, set
 * only where they differ from ours, so a container's own user needs no
 * capability; another needs CAP_SETUID/CAP_SETGID in the container. */
static int become(struct json_object *u)
{
	struct json_object *v;
	gid_t groups[GUEST_EXEC_GROUPS_MAX], cur[GUEST_EXEC_GROUPS_MAX + 1];
	size_t n = 0;
	uid_t uid = json_object_object_get_ex(u, "uid", &v) ? (uid_t)json_object_get_int64(v) : getuid();
	gid_t gid = json_object_object_get_ex(u, "gid", &v) ? (gid_t)json_object_get_int64(v) : getgid();
	if (json_object_object_get_ex(u, "additionalGids", &v) && json_object_is_type(v, json_type_array))
		for (size_t i = 0; i < json_object_array_length(v) && n < GUEST_EXEC_GROUPS_MAX; i++)
			groups[n++] = (gid_t)json_object_get_int64(json_object_array_get_idx(v, i));
	int ncur = getgroups(GUEST_EXEC_GROUPS_MAX + 1, cur);
	bool same = ncur == (int)n;
	for (size_t i = 0; same && i < n; i++) {
		bool found = false;
		for (int j = 0; j < ncur && !found; j++)
			found = cur[j] == groups[i];
		same = found;
	}
	if (!same && setgroups(n, groups) < 0) {
		fprintf(stderr, "box: error: cannot take the supplementary groups: %s\n", strerror(errno));
		return -1;
	}
	if (gid != getgid() && setresgid(gid, gid, gid) < 0) {
		fprintf(stderr, "box: error: cannot run as group %u: %s\n", (unsigned)gid, strerror(errno));
		return -1;
	}
	if (uid != getuid() && setresuid(uid, uid, uid) < 0) {
		fprintf(stderr, "box: error: cannot run as user %u: %s (the container's user cannot switch)\n",
			(unsigned)uid, strerror(errno));
		return -1;
	}
	return 0;
}

/* In the child: never returns. */
static void child(struct json_object *spec, bool tty, const char *slave, const int *fds)
{
	struct json_object *v;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	if (tty) {
		int s = open(slave, O_RDWR);
		if (s < 0 || ioctl(s, TIOCSCTTY, 0) < 0)
			_exit(125);
		dup2(s, 0);
		dup2(s, 1);
		dup2(s, 2);
		if (s > 2)
			close(s);
	} else {
		/* the descriptors may sit at 0-2 already: move them out first */
		int hi[3];
		for (int i = 0; i < 3; i++)
			hi[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
		for (int i = 0; i < 3; i++)
			if (hi[i] < 0 || dup2(hi[i], i) < 0)
				_exit(125);
	}
	char **args = json_object_object_get_ex(spec, "args", &v) ? str_array(v, true) : NULL;
	char **env = json_object_object_get_ex(spec, "env", &v) ? str_array(v, false) : calloc(1, sizeof(char *));
	const char *cwd = json_object_object_get_ex(spec, "cwd", &v) && json_object_is_type(v, json_type_string)
				  ? json_object_get_string(v)
				  : "/";
	if (!args || !env) {
		fprintf(stderr, "box: error: a bad exec request\n");
		_exit(125);
	}
	if (json_object_object_get_ex(spec, "user", &v) && become(v) < 0)
		_exit(126);
	if (chdir(cwd) < 0) {
		fprintf(stderr, "box: error: cannot change to the working directory '%s': %s\n", cwd, strerror(errno));
		_exit(126);
	}
	environ = env; /* execvp looks the command up in the new PATH */
	execvp(args[0], args);
	int e = errno;
	if (e == ENOENT) {
		fprintf(stderr, "box: %s: command not found\n", args[0]);
		_exit(127);
	}
	fprintf(stderr, "box: %s: cannot execute: %s\n", args[0], strerror(e));
	_exit(126);
}

static int start(int sock, uint32_t id, bool tty, const char *json, size_t len, const int *fds, int nfds)
{
	struct json_tokener *tok = json_tokener_new_ex(16);
	struct json_object *spec = tok ? json_tokener_parse_ex(tok, json, (int)len) : NULL, *v;
	int master = -1, r = 0;
	char slave[128];
	if (tok)
		json_tokener_free(tok);
	if (!spec || !json_object_is_type(spec, json_type_object) || (!tty && nfds != 3))
		r = -EINVAL;
	/* the id's own old slot first, then a free one, then any ended one */
	struct proc *slot = NULL;
	for (size_t i = 0; !r && !slot && i < GUEST_STREAMS_MAX; i++)
		if (procs[i].pid <= 0 && procs[i].pgid > 0 && procs[i].id == id)
			slot = &procs[i];
	for (size_t i = 0; !r && !slot && i < GUEST_STREAMS_MAX; i++)
		if (procs[i].pid <= 0 && procs[i].pgid <= 0)
			slot = &procs[i];
	for (size_t i = 0; !r && !slot && i < GUEST_STREAMS_MAX; i++)
		if (procs[i].pid <= 0)
			slot = &procs[i];
	if (!r && !slot)
		r = -EAGAIN;
	if (!r && tty) {
		struct winsize ws = { 24, 80, 0, 0 };
		if (json_object_object_get_ex(spec, "rows", &v) && json_object_get_int(v) > 0)
			ws.ws_row = (unsigned short)json_object_get_int(v);
		if (json_object_object_get_ex(spec, "cols", &v) && json_object_get_int(v) > 0)
			ws.ws_col = (unsigned short)json_object_get_int(v);
		master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (master < 0 || unlockpt(master) < 0 || ptsname_r(master, slave, sizeof(slave)) != 0)
			r = -errno ? -errno : -EIO;
		else
			ioctl(master, TIOCSWINSZ, &ws);
	}
	pid_t pid = r ? -1 : fork();
	if (!r && pid < 0)
		r = -errno;
	if (pid == 0)
		child(spec, tty, slave, fds);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	if (!r) {
		slot->id = id;
		slot->pid = pid;
		slot->pgid = pid; /* setsid in the child */
	}
	json_object_put(spec);
	ci_send(sock, CI_STARTED, id, r, NULL, 0, master >= 0 && !r ? &master : NULL, master >= 0 && !r ? 1 : 0);
	if (master >= 0)
		close(master);
	return r;
}

static void signal_one(uint32_t id, int sig)
{
	for (size_t i = 0; i < GUEST_STREAMS_MAX; i++) {
		if (procs[i].id != id || procs[i].pgid <= 0)
			continue;
		if (procs[i].pid > 0)
			kill(procs[i].pid, sig);
		if (sig == SIGKILL)
			kill(-procs[i].pgid, SIGKILL); /* its session's group: the pipes' other holders */
	}
}

int cinit_serve(void)
{
	sigset_t mask;
	int sock = CI_FD;
	static char payload[CI_MSG_MAX];

	if (fcntl(sock, F_SETFD, FD_CLOEXEC) < 0) {
		fprintf(stderr, "boxkit-init: error: no control socket on fd %d\n", CI_FD);
		return 125;
	}
	/* the exec'd JSON is the host's, relayed by the guest init: no random
	 * seed needed (getrandom may block this early) */
	json_global_set_string_hash(JSON_C_STR_HASH_PERLLIKE);
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0 || ci_send(sock, CI_READY, 0, 0, NULL, 0, NULL, 0) < 0) {
		fprintf(stderr, "boxkit-init: error: cannot start serving: %s\n", strerror(errno));
		return 125;
	}
	for (;;) {
		struct pollfd pf[2] = { { sfd, POLLIN, 0 }, { sock, POLLIN, 0 } };
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			return 125;
		if (pf[0].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				if (si.ssi_signo != SIGCHLD)
					kill(-1, (int)si.ssi_signo); /* stopping the container: everyone */
			int st;
			pid_t w;
			while ((w = waitpid(-1, &st, WNOHANG)) > 0)
				for (size_t i = 0; i < GUEST_STREAMS_MAX; i++)
					if (procs[i].pid == w) {
						procs[i].pid = 0;
						ci_send(sock, CI_EXITED, procs[i].id,
							WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), NULL, 0,
							NULL, 0);
					}
		}
		if (!pf[1].revents)
			continue;
		struct ci_msg m = { 0, 0, 0 };
		int fds[3], nfds;
		long n = ci_recv(sock, &m, payload, sizeof(payload), fds, &nfds);
		if (n == -EAGAIN || n == -EPROTO)
			continue;
		if (n < 0) {
			/* the guest init is gone: so is the sandbox */
			kill(-1, SIGKILL);
			return 125;
		}
		switch (m.type) {
		case CI_EXEC: start(sock, m.id, m.val != 0, payload, (size_t)n, fds, nfds); break;
		case CI_SIGNAL:
			if (m.val > 0 && m.val < 65)
				signal_one(m.id, m.val);
			break;
		case CI_SIGNAL_ALL:
			if (m.val > 0 && m.val < 65)
				kill(-1, m.val);
			break;
		default:
			for (int i = 0; i < nfds; i++)
				close(fds[i]);
		}
	}
}
