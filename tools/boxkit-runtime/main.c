/* SPDX-License-Identifier: MIT */
/* boxkit-runtime: boxkit as an OCI runtime, spoken to the way containerd's
 * runc shim, Podman's conmon and Docker speak to runc (create, start,
 * state, kill, delete, exec, ps, features). Each container is a boxkit
 * sandbox: `box create` boots the microVM (jailed QEMU, the container's
 * init waiting), and the container's process is a `box-ctl exec` client on
 * the host, the process whose pid the engine gets: a child of the caller
 * (reparented to its subreaper), in linux.cgroupsPath and in the container's
 * network namespace, carrying the container's stdio and exiting with its
 * status; it waits on <state>/exec.fifo until `start`, as runc's init does.
 *
 * The state of a container lives in <root>/<id>/ (root's, 0700):
 * state.json (this file's record: the client's pid and start time, the
 * sandbox, the execs), exec.fifo (until start). The bundle is the engine's:
 * its rootfs becomes the guest's root drive (read once, by mkimage), its
 * /etc/hosts, /etc/hostname and /etc/resolv.conf go in as files, and any
 * other host path is refused (boxkit-runtime.1.md says which). */
#include "common.h"
#include "guest-abi.h"
#include "monitor-abi.h"
#include "runrec.h"
#include "spawn.h"
#include "testhook.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#define OCI_VERSION "1.0.2"
#define DEFAULT_ROOT "/run/boxkit-runtime"
#define DEFAULT_HOME "/var/lib/boxkit"
#define DEFAULT_CACHE "/var/cache/boxkit"
#define STATE_FILE "state.json"
#define ARGV_MAX 256  /* box create's arguments */
#define ARGS_SOFT 200 /* more than this many is refused (groups, capabilities) */
#define FIFO_FILE "exec.fifo"
#define CONFIG_MAX (4u << 20)  /* the bundle's config.json */
#define PROCESS_MAX (1u << 20) /* an exec's process.json */
#define ETC_MAX (64u << 10)    /* an engine file: /etc/hosts ... */
#define EXECS_MAX 256	       /* exec clients remembered */
#define BOX_TIMEOUT_S 600      /* box create: an image to build, a VM to boot */
#define HOOK_TIMEOUT_S 120     /* a hook without its own timeout */
#define START_TIMEOUT_MS 10000 /* start: the client takes the go */
#define LOCK_WAIT_MS 30000     /* another command on the same container */
#define STATE_MAX (16u << 20)  /* state.json: the config's annotations and hooks */
#define TOOL_GRACE_S 5	       /* a tool past its time: TERM, then KILL after this */
#define NETNS_FILE "netns"     /* the container's network namespace, bind-mounted */

struct state;
static int state_note_tool(struct state *st, pid_t pid);

static struct {
	const char *root, *log, *log_format, *home;
	bool systemd_cgroup;
	FILE *logf;
	bool json;
	char self[PATH_MAX];   /* this binary's directory: box, box-ctl beside it */
	int saved[3];	       /* the caller's stdio, for the container's process */
	bool quiet;	       /* a tool's errors are expected: debug lines only */
	struct state *spawned; /* box create: its pid goes into this state first */
	char last_err[512];    /* the last error line of the last tool */
} g = { .root = DEFAULT_ROOT, .saved = { -1, -1, -1 } };

/* ---- logging: stderr, or the engine's --log file (JSON lines with --log-format json) ---- */

static void json_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
}

static void sink(enum log_level lvl, const char *msg)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	if (!g.logf)
		return;
	char ts[64];
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (g.json) {
		fputs("{\"level\":\"", g.logf);
		fputs(names[lvl], g.logf);
		fputs("\",\"msg\":\"", g.logf);
		json_escape(g.logf, msg);
		fprintf(g.logf, "\",\"time\":\"%s\"}\n", ts);
	} else
		fprintf(g.logf, "%s %s: %s\n", ts, names[lvl], msg);
	fflush(g.logf);
}

/* ---- small helpers ---------------------------------------------------------------- */

static bool id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 1024 || !strcmp(id, ".") || !strcmp(id, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && !strchr("_+.-", id[i]))
			return false;
	return true;
}

static struct json_object *parse_json(const char *text, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(64);
	if (!tok)
		return NULL;
	struct json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	bool whole = json_tokener_get_error(tok) == json_tokener_success;
	json_tokener_free(tok);
	if (!whole || !o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static struct json_object *jget(struct json_object *o, const char *k)
{
	struct json_object *v = NULL;
	return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}
static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v = jget(o, k);
	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* the environment of the tools we run: PATH, HOME and boxkit's own */
static char **tool_env(void)
{
	extern char **environ;
	size_t n = 0, k = 0;
	while (environ[n])
		n++;
	char **e = calloc(n + 8, sizeof(char *));
	if (!e)
		return NULL;
	bool path = false, home = false;
	for (size_t i = 0; i < n; i++)
		if (!strncmp(environ[i], "BOXKIT_", 7) || !strncmp(environ[i], "PATH=", 5) ||
		    !strncmp(environ[i], "HOME=", 5)) {
			path |= !strncmp(environ[i], "PATH=", 5);
			home |= !strncmp(environ[i], "HOME=", 5);
			if (strncmp(environ[i], "BOXKIT_HOME=", 12) && strncmp(environ[i], "BOXKIT_BIN=", 11) &&
			    strncmp(environ[i], "BOXKIT_OP_ID=", 13))
				e[k++] = environ[i];
		}
	if (!path)
		e[k++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	if (!home)
		e[k++] = "HOME=/root";
	if (!getenv("BOXKIT_CACHE"))
		e[k++] = "BOXKIT_CACHE=" DEFAULT_CACHE;
	static char h[PATH_MAX + 16], b[PATH_MAX + 16];
	snprintf(h, sizeof(h), "BOXKIT_HOME=%s", g.home);
	snprintf(b, sizeof(b), "BOXKIT_BIN=%s", g.self);
	e[k++] = h;
	e[k++] = b;
	return e;
}

/* Run a tool (box, a hook): stdin from in_fd (or /dev/null), stdout into
 * out (when given), stderr line by line into our log; killed with its
 * process group after timeout_s. Its exit status (128+N for signal N), or
 * -errno. */
static int run_tool(const char *path, char *const argv[], char *const envp[], int in_fd, char *out, size_t outlen,
		    int timeout_s)
{
	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(pe, O_CLOEXEC) < 0) {
		close(po[0]);
		close(po[1]);
		return -errno;
	}
	cleanup_close int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	struct spawn_fd fds[] = { { in_fd >= 0 ? in_fd : nul, 0 }, { po[1], 1 }, { pe[1], 2 } };
	struct spawn s = { .path = path,
			   .exec_fd = -1,
			   .argv = argv,
			   .envp = envp,
			   .fds = fds,
			   .nfds = ARRAY_SIZE(fds),
			   .new_session = true };
	char msg[512];
	pid_t pid;
	int r = spawn_run(&s, &pid, msg, sizeof(msg));
	close(po[1]);
	close(pe[1]);
	if (r < 0) {
		close(po[0]);
		close(pe[0]);
		log_error("cannot run '%s': %s", path, msg);
		return r;
	}
	size_t have = 0, elen = 0;
	char line[2048];
	g.last_err[0] = 0;
	if (g.spawned && state_note_tool(g.spawned, pid) < 0) {
		kill(-pid, SIGKILL);
		g.spawned = NULL;
	}
	bool termed = false;
	bool open_o = true, open_e = true;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (open_o || open_e) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left =
			timeout_s * 1000L - ((now.tv_sec - t0.tv_sec) * 1000L + (now.tv_nsec - t0.tv_nsec) / 1000000L);
		if (left <= 0 && !termed) {
			/* TERM first: box and mkimage clean up what they made */
			log_error("'%s' did not finish within %d s: stopped", path, timeout_s);
			kill(-pid, SIGTERM);
			termed = true;
			timeout_s += TOOL_GRACE_S;
			continue;
		}
		if (left <= 0) {
			kill(-pid, SIGKILL);
			break;
		}
		struct pollfd pf[2] = { { open_o ? po[0] : -1, POLLIN, 0 }, { open_e ? pe[0] : -1, POLLIN, 0 } };
		if (poll(pf, 2, (int)left) < 0 && errno != EINTR)
			break;
		if (pf[0].revents) {
			char drop[4096];
			char *dst = out && have + 1 < outlen ? out + have : drop;
			size_t room = out && have + 1 < outlen ? outlen - 1 - have : sizeof(drop);
			ssize_t n = read(po[0], dst, room);
			if (n <= 0)
				open_o = false;
			else if (dst != drop)
				have += (size_t)n;
		}
		if (pf[1].revents) {
			ssize_t n = read(pe[0], line + elen, sizeof(line) - 1 - elen);
			if (n <= 0)
				open_e = false;
			else
				elen += (size_t)n;
			char *nl;
			line[elen] = 0;
			while ((nl = memchr(line, '\n', elen)) || (elen == sizeof(line) - 1) || (!open_e && elen)) {
				size_t k = nl ? (size_t)(nl - line) : elen;
				line[k] = 0;
				enum log_level lvl = strstr(line, "error:")	? LOG_ERROR
						     : strstr(line, "warning:") ? LOG_WARN
										: LOG_DEBUG;
				if (lvl == LOG_ERROR) {
					const char *m = strstr(line, "error:") + 6;
					snprintf(g.last_err, sizeof(g.last_err), "%s", m + strspn(m, " "));
				}
				log_msg(g.quiet ? LOG_DEBUG : lvl, "%s", line);
				size_t used = nl ? k + 1 : k;
				memmove(line, line + used, elen - used);
				elen -= used;
				line[elen] = 0;
			}
		}
	}
	close(po[0]);
	close(pe[0]);
	if (out && outlen)
		out[have < outlen ? have : outlen - 1] = 0;
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int box(char *const argv[], char *out, size_t outlen, int timeout_s)
{
	char path[PATH_MAX + 8];
	snprintf(path, sizeof(path), "%s/box", g.self);
	cleanup_free char **env = tool_env();
	if (!env)
		return -ENOMEM;
	return run_tool(path, argv, env, -1, out, outlen, timeout_s);
}

/* ---- the state directory ------------------------------------------------------------ */

struct state {
	char id[1100];
	char dir[PATH_MAX + 1100]; /* <root>/<id> */
	int dirfd;		   /* that directory, locked (flock) while we work on it */
	struct json_object *o;
};

static int open_root(bool create)
{
	if (create) {
		char *failed = NULL;
		int r = mkdir_p_0700(g.root, &failed);
		if (r < 0) {
			log_sys(r, "cannot make the state root '%s'", failed ? failed : g.root);
			free(failed);
			return r;
		}
	}
	int fd = open(g.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT && !create ? -ENOENT : log_sys(errno, "cannot open the state root '%s'", g.root);
	return fd;
}

/* the state directory's lock, waited for at most LOCK_WAIT_MS: a create or
 * delete in progress holds it; nothing waits on it for ever */
static int lock_dir(int fd, const char *id)
{
	for (int waited = 0;; waited += 50) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return log_sys(errno, "cannot lock the state of '%s'", id);
		if (waited >= LOCK_WAIT_MS)
			return log_error("container '%s' is busy (a create, delete or exec in progress)", id), -EBUSY;
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* state.json, whole (it carries the config's annotations and hooks) */
static struct json_object *state_read(int dirfd)
{
	cleanup_close int fd = openat(dirfd, STATE_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size <= 0 || (size_t)sb.st_size > STATE_MAX)
		return NULL;
	cleanup_free char *buf = malloc((size_t)sb.st_size);
	size_t have = 0;
	while (buf && have < (size_t)sb.st_size) {
		ssize_t n = read(fd, buf + have, (size_t)sb.st_size - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NULL;
		have += (size_t)n;
	}
	return buf ? parse_json(buf, have) : NULL;
}

/* locked: for the commands that change the container (not state, ps) */
static int state_open_ex(const char *id, struct state *st, bool quiet, bool locked)
{
	st->dirfd = -1;
	st->o = NULL;
	if (!id_valid(id))
		return log_error("'%s' is not a container id (1 to 1024 of [A-Za-z0-9_+.-])", id), -EINVAL;
	snprintf(st->id, sizeof(st->id), "%s", id);
	snprintf(st->dir, sizeof(st->dir), "%s/%s", g.root, id);
	cleanup_close int root = open_root(false);
	if (root < 0) {
		if (!quiet)
			log_error("container '%s' does not exist", id);
		return -ENOENT;
	}
	st->dirfd = openat(root, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (st->dirfd < 0) {
		if (!quiet)
			log_error("container '%s' does not exist", id);
		return -ENOENT;
	}
	int r;
	if (locked && (r = lock_dir(st->dirfd, id)) < 0)
		return r;
	if (!(st->o = state_read(st->dirfd))) {
		if (!quiet)
			log_error("container '%s' has no state (a create that did not finish)", id);
		return -ENOENT;
	}
	return 0;
}

static int state_open(const char *id, struct state *st, bool quiet)
{
	return state_open_ex(id, st, quiet, true);
}

static void state_close(struct state *st)
{
	if (st->dirfd >= 0)
		close(st->dirfd);
	json_object_put(st->o);
	st->dirfd = -1;
	st->o = NULL;
}

static int state_save(struct state *st)
{
	const char *t = json_object_to_json_string_ext(st->o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	int r = write_file_atomic(st->dirfd, STATE_FILE, t, strlen(t), 0600);
	return r < 0 ? log_sys(r, "cannot write the state of '%s'", st->id) : 0;
}

static pid_t state_pid(struct state *st, bool *alive)
{
	struct json_object *v = jget(st->o, "pid"), *s = jget(st->o, "start");
	pid_t pid = v ? (pid_t)json_object_get_int(v) : 0;
	*alive = pid > 0 && s && proc_is(pid, (unsigned long long)json_object_get_int64(s));
	return pid;
}

/* box create's process group, recorded before it runs on: delete stops it */
static int state_note_tool(struct state *st, pid_t pid)
{
	json_object_object_add(st->o, "box_pid", json_object_new_int(pid));
	json_object_object_add(st->o, "box_start", json_object_new_int64((int64_t)proc_start_time(pid)));
	return state_save(st);
}

/* a box create still running for this container (a create that was
 * killed): TERM its group (box then removes what it made) and wait */
static void stop_box_create(struct state *st)
{
	struct json_object *v = jget(st->o, "box_pid"), *s = jget(st->o, "box_start");
	pid_t pid = v ? (pid_t)json_object_get_int(v) : 0;
	if (pid <= 0 || !s || !proc_is(pid, (unsigned long long)json_object_get_int64(s)))
		return;
	log_info("stopping the box create (pid %d) of '%s'", (int)pid, st->id);
	kill(-pid, SIGTERM);
	for (int i = 0; i < 20 * (TOOL_GRACE_S + 10) && proc_is(pid, (unsigned long long)json_object_get_int64(s));
	     i++) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	kill(-pid, SIGKILL);
}

/* <state>/netns: a bind mount of the client's network namespace */
static int pin_netns(int dirfd, const char *statedir, pid_t client)
{
	char src[64], dst[PATH_MAX + 1200];
	struct stat a, b;
	snprintf(src, sizeof(src), "/proc/%d/ns/net", (int)client);
	snprintf(dst, sizeof(dst), "%s/" NETNS_FILE, statedir);
	/* never the namespace this runtime (the engine) runs in, nor the host's */
	if (stat(src, &a) < 0)
		return log_sys(errno, "the container's network namespace");
	if ((stat("/proc/self/ns/net", &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) ||
	    (stat("/proc/1/ns/net", &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev))
		return log_error("the config's network namespace is the host's: a VM cannot take it over"), -EINVAL;
	int fd = openat(dirfd, NETNS_FILE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return log_sys(errno, "cannot make '%s'", dst);
	close(fd);
	if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
		return log_sys(errno, "cannot pin the network namespace at '%s'", dst);
	return 0;
}

static void unpin_netns(const char *statedir)
{
	char dst[PATH_MAX + 1200];
	snprintf(dst, sizeof(dst), "%s/" NETNS_FILE, statedir);
	if (umount2(dst, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
		log_warn("cannot unmount '%s': %s", dst, strerror(errno));
}

static const char *state_status(struct state *st)
{
	bool alive;
	state_pid(st, &alive);
	if (!alive)
		return "stopped";
	struct stat sb;
	return fstatat(st->dirfd, FIFO_FILE, &sb, AT_SYMLINK_NOFOLLOW) == 0 ? "created" : "running";
}

/* the runtime-spec's state, for `state` and for the hooks */
static char *state_json(struct state *st, const char *status)
{
	bool alive;
	pid_t pid = state_pid(st, &alive);
	cleanup_json struct json_object *o = json_object_new_object();
	json_object_object_add(o, "ociVersion", json_object_new_string(OCI_VERSION));
	json_object_object_add(o, "id", json_object_new_string(st->id));
	json_object_object_add(o, "status", json_object_new_string(status ? status : state_status(st)));
	json_object_object_add(o, "pid", json_object_new_int(alive || status ? pid : 0));
	json_object_object_add(o, "bundle", json_object_new_string(jstr(st->o, "bundle") ? jstr(st->o, "bundle") : ""));
	struct json_object *a = jget(st->o, "annotations");
	json_object_object_add(o, "annotations", a ? json_object_get(a) : json_object_new_object());
	const char *created = jstr(st->o, "created");
	if (created)
		json_object_object_add(o, "created", json_object_new_string(created));
	return strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* ---- cgroups: linux.cgroupsPath, cgroupfs or systemd's slice:prefix:name ---- */

static void append(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t n, const char *fmt, ...)
{
	size_t o = strnlen(buf, n);
	va_list ap;
	va_start(ap, fmt);
	if (o < n)
		vsnprintf(buf + o, n - o, fmt, ap);
	va_end(ap);
}

static int cgroup_dir(const char *path, char *out, size_t outlen)
{
	char root[PATH_MAX], rel[PATH_MAX] = "";
	int r = cgroup2_root(root, sizeof(root));
	if (r < 0)
		return log_error("no cgroup2 hierarchy for linux.cgroupsPath '%s'", path), r;
	if (g.systemd_cgroup) {
		/* slice:prefix:name -> <slice's path>/<prefix>-<name>.scope */
		char buf[PATH_MAX];
		snprintf(buf, sizeof(buf), "%s", path);
		char *c1 = strchr(buf, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c1 || !c2 || strchr(c2 + 1, ':'))
			return log_error("linux.cgroupsPath '%s' is not slice:prefix:name (--systemd-cgroup)", path),
			       -EINVAL;
		*c1 = *c2 = 0;
		const char *slice = *buf ? buf : "system.slice";
		size_t n = strlen(slice);
		if (n < 7 || strcmp(slice + n - 6, ".slice"))
			return log_error("linux.cgroupsPath '%s': '%s' is not a slice", path, slice), -EINVAL;
		/* a-b.slice lives in a.slice/a-b.slice; -.slice is the root */
		if (strcmp(slice, "-.slice")) {
			for (const char *d = strchr(slice, '-'); d; d = strchr(d + 1, '-'))
				append(rel, sizeof(rel), "/%.*s.slice", (int)(d - slice), slice);
			append(rel, sizeof(rel), "/%s", slice);
		}
		if (*(c1 + 1))
			append(rel, sizeof(rel), "/%s-%s.scope", c1 + 1, c2 + 1);
		else
			append(rel, sizeof(rel), "/%s", c2 + 1);
	} else if (path[0] == '/')
		snprintf(rel, sizeof(rel), "%s", path);
	else {
		/* relative: beneath our own cgroup */
		char self[PATH_MAX / 2] = "/";
		cleanup_fclose FILE *f = fopen("/proc/self/cgroup", "re");
		char line[PATH_MAX / 2];
		while (f && fgets(line, sizeof(line), f))
			if (!strncmp(line, "0::", 3)) {
				line[strcspn(line, "\n")] = 0;
				snprintf(self, sizeof(self), "%s", line + 3);
			}
		snprintf(rel, sizeof(rel), "%s/%s", strcmp(self, "/") ? self : "", path);
	}
	/* no way out of the hierarchy */
	for (const char *p = rel; (p = strstr(p, "..")); p += 2)
		if ((p == rel || p[-1] == '/') && (p[2] == '/' || !p[2]))
			return log_error("linux.cgroupsPath '%s' climbs out ('..')", path), -EINVAL;
	if (snprintf(out, outlen, "%s%s", root, rel) >= (int)outlen)
		return log_error("linux.cgroupsPath '%s' is too long", path), -ENAMETOOLONG;
	return 0;
}

/* put pid in dir (made when missing); *made says whether the leaf is ours */
static int cgroup_join(const char *dir, pid_t pid, bool *made)
{
	char p[PATH_MAX + 32];
	*made = false;
	struct stat sb;
	if (stat(dir, &sb) < 0) {
		char *failed = NULL;
		int r = mkdir_p_0700(dir, &failed);
		free(failed);
		if (r < 0)
			return log_sys(r, "cannot make the cgroup '%s'", dir);
		chmod(dir, 0755);
		*made = true;
	}
	snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
	cleanup_close int fd = open(p, O_WRONLY | O_CLOEXEC);
	char num[32];
	int n = snprintf(num, sizeof(num), "%d", (int)pid);
	if (fd < 0 || write(fd, num, (size_t)n) != n)
		return log_sys(errno, "cannot move the container's process into the cgroup '%s'", dir);
	return 0;
}

/* ---- hooks (runtime-spec config.md#posix-platform-hooks) ------------------------------ */

/* the config's "hooks" object: those of kind, each with the state on stdin */
static int run_hooks(struct json_object *hooks, const char *kind, const char *state, bool fatal)
{
	struct json_object *list = jget(hooks, kind);
	if (!list)
		return 0;
	if (!json_object_is_type(list, json_type_array))
		return log_error("hooks.%s is not a list", kind), -EINVAL;
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct json_object *h = json_object_array_get_idx(list, i), *v;
		const char *path = jstr(h, "path");
		if (!path || path[0] != '/')
			return log_error("hooks.%s[%zu] has no absolute path", kind, i), -EINVAL;
		size_t na = (v = jget(h, "args")) && json_object_is_type(v, json_type_array)
				    ? json_object_array_length(v)
				    : 0;
		size_t ne = (v = jget(h, "env")) && json_object_is_type(v, json_type_array)
				    ? json_object_array_length(v)
				    : 0;
		if (na > 4096 || ne > 4096)
			return log_error("hooks.%s[%zu]: too many args or env", kind, i), -E2BIG;
		cleanup_free char **argv = calloc(na + 2, sizeof(char *));
		cleanup_free char **envp = calloc(ne + 1, sizeof(char *));
		if (!argv || !envp)
			return -ENOMEM;
		argv[0] = (char *)path;
		for (size_t k = 0; k < na; k++) {
			const char *s = json_object_get_string(json_object_array_get_idx(jget(h, "args"), k));
			argv[k] = (char *)(s ? s : "");
		}
		for (size_t k = 0; k < ne; k++) {
			const char *s = json_object_get_string(json_object_array_get_idx(jget(h, "env"), k));
			envp[k] = (char *)(s ? s : "");
		}
		int timeout = (v = jget(h, "timeout")) && json_object_get_int(v) > 0 ? json_object_get_int(v)
										     : HOOK_TIMEOUT_S;
		/* the state on stdin: a memfd, read from its start */
		cleanup_close int mfd = memfd_create("state", MFD_CLOEXEC);
		if (mfd < 0 || write(mfd, state, strlen(state)) != (ssize_t)strlen(state) ||
		    lseek(mfd, 0, SEEK_SET) < 0)
			return log_sys(errno, "cannot hand the state to hooks.%s", kind);
		log_debug("hook %s: %s", kind, path);
		int r = run_tool(path, argv, envp, mfd, NULL, 0, timeout);
		if (r != 0) {
			log_msg(fatal ? LOG_ERROR : LOG_WARN, "hooks.%s[%zu] '%s' failed (status %d)", kind, i, path,
				r);
			if (fatal)
				return -ECANCELED;
		}
	}
	return 0;
}

/* ---- terminals: a pty whose master goes to the engine's console socket ---- */

static int send_master(const char *sock_path, int master)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(sock_path) >= sizeof(a.sun_path))
		return log_error("--console-socket '%s' is too long a path", sock_path), -ENAMETOOLONG;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	cleanup_close int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		return log_sys(errno, "cannot connect to --console-socket '%s'", sock_path);
	/* runc sends the master's name with it */
	static const char name[] = "/dev/ptmx";
	int r = send_with_fd(s, name, sizeof(name) - 1, master);
	return r < 0 ? log_sys(r, "cannot send the terminal to --console-socket '%s'", sock_path) : 0;
}

static int open_pty(int *master, char *slave, size_t slen, struct json_object *process)
{
	*master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0 || unlockpt(*master) < 0 || ptsname_r(*master, slave, slen) != 0)
		return log_sys(errno, "cannot make a terminal");
	struct json_object *cs = jget(process, "consoleSize");
	if (cs) {
		struct winsize ws = { 0 };
		ws.ws_row = (unsigned short)json_object_get_int(jget(cs, "height"));
		ws.ws_col = (unsigned short)json_object_get_int(jget(cs, "width"));
		ioctl(*master, TIOCSWINSZ, &ws);
	}
	return 0;
}

/* ---- the client: the container's (or an exec's) process on the host ---- */

struct client {
	const char *run;   /* the sandbox's run id ("" for a pod's sandbox: none) */
	int process_fd;	   /* a memfd holding the OCI process object */
	const char *slave; /* a terminal, or NULL: the saved stdio */
	int netns_fd;	   /* setns into this (-1: none) */
	bool new_netns;	   /* unshare a network namespace of its own */
	int go_fd;	   /* read end: 'g' to go on, EOF to exit (-1: go at once) */
	int ns_fd;	   /* write end: a byte once in its network namespace (-1: none) */
	int fifo_dir;	   /* wait on <dir>/exec.fifo for start (-1: none) */
};

/* In the client (a fork of ours, or ourselves for exec without --detach):
 * never returns. */
static void client_main(const struct client *c)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < 32; s++)
		signal(s, SIG_DFL);
	setsid();
	test_pause("client-netns"); /* a fork that is slow to get here */
	if (c->new_netns && unshare(CLONE_NEWNET) < 0)
		_exit(EXIT_LAUNCH);
	if (c->netns_fd >= 0 && setns(c->netns_fd, CLONE_NEWNET) < 0)
		_exit(EXIT_LAUNCH);
	/* create pins the namespace and runs the engine's hooks in it: only
	 * once it is this one */
	if (c->ns_fd >= 0 && (write(c->ns_fd, "n", 1) != 1 || close(c->ns_fd) < 0))
		_exit(EXIT_LAUNCH);
	if (c->slave) {
		/* the caller's stdio are not the container's: let go of them now (a
		 * shim reading our stdout to its end must not wait for start) */
		for (int i = 0; i < 3; i++)
			if (g.saved[i] >= 0)
				close(g.saved[i]);
		int s = open(c->slave, O_RDWR);
		if (s < 0 || ioctl(s, TIOCSCTTY, 0) < 0 || dup2(s, 0) < 0 || dup2(s, 1) < 0 || dup2(s, 2) < 0)
			_exit(EXIT_LAUNCH);
		if (s > 2)
			close(s);
	} else {
		for (int i = 0; i < 3; i++)
			if (g.saved[i] >= 0 && dup2(g.saved[i], i) < 0)
				_exit(EXIT_LAUNCH);
	}
	if (dup2(c->process_fd, 3) < 0)
		_exit(EXIT_LAUNCH);
	static char run[64];
	const char *run_id = c->run;
	if (c->go_fd >= 0) {
		/* 'g' and the sandbox's run id, once create is done; EOF: it failed */
		size_t have = 0;
		ssize_t n;
		while (have < sizeof(run) - 1 && (n = read(c->go_fd, run + have, sizeof(run) - 1 - have)) != 0) {
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				_exit(EXIT_LAUNCH);
			have += (size_t)n;
		}
		run[have] = 0;
		if (run[0] != 'g' || (run[1] && !run_id_valid(run + 1)))
			_exit(EXIT_LAUNCH);
		run_id = run + 1;
	}
	if (c->fifo_dir >= 0) {
		/* blocks until start opens it for reading */
		int f = openat(c->fifo_dir, FIFO_FILE, O_WRONLY | O_CLOEXEC);
		if (f < 0 || write(f, "0", 1) != 1)
			_exit(EXIT_LAUNCH);
		close(f);
	}
	if (!*run_id) {
		/* a pod's sandbox: hold the namespaces until a signal ends us */
		close_range(3, ~0U, 0);
		for (;;)
			pause();
	}
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/box-ctl", g.self);
	char *argv[] = {
		path, "exec", "--home", (char *)g.home, "--run", (char *)run_id, "--process", "/dev/fd/3", NULL
	};
	char **env = tool_env();
	if (chdir("/") < 0 || !env)
		_exit(EXIT_LAUNCH);
	close_range(4, ~0U, 0);
	execve(path, argv, env);
	_exit(EXIT_LAUNCH);
}

static int memfd_of(struct json_object *o)
{
	const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	/* what box-ctl takes (its --process): refused here, not at start */
	if (!t || strlen(t) > BOXCTL_PROCESS_MAX)
		return log_error("the process object is larger than %u bytes", BOXCTL_PROCESS_MAX), -E2BIG;
	int fd = memfd_create("process", MFD_CLOEXEC);
	if (fd < 0 || write(fd, t, strlen(t)) != (ssize_t)strlen(t)) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return -e;
	}
	return fd;
}

static int write_pid_file(const char *path, pid_t pid)
{
	char num[32], dir[PATH_MAX];
	int n = snprintf(num, sizeof(num), "%d", (int)pid);
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	const char *name = slash ? slash + 1 : dir;
	if (slash == dir)
		snprintf(dir, sizeof(dir), "/");
	else if (slash)
		*slash = 0;
	cleanup_close int dfd = open(slash ? dir : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	int r = dfd < 0 ? -errno : write_file_atomic(dfd, name, num, (size_t)n, 0644);
	return r < 0 ? log_sys(r, "cannot write the pid file '%s'", path) : 0;
}

/* ---- the config: what a VM can honour, the rest refused by name ---- */

struct plan {
	char rootfs[PATH_MAX];
	struct json_object *process;
	bool terminal;
	bool new_netns;
	const char *netns_path;
	const char *cgroups_path;
	const char *etc[3][2]; /* name, source */
	int netc;
	long memory_mib, cpus;
	bool privileged, seccomp, readonly;
	const char *hostname;
	bool pod_sandbox; /* a CRI pod's sandbox (pause) container: no VM */
};

static const char *const std_mounts[] = { "/proc", "/dev",	     "/dev/pts", "/dev/shm", "/dev/mqueue",
					  "/sys",  "/sys/fs/cgroup", "/run",	 NULL };

static bool is_bind(struct json_object *m)
{
	const char *type = jstr(m, "type");
	struct json_object *opts = jget(m, "options");
	if (type && !strcmp(type, "bind"))
		return true;
	for (size_t i = 0; opts && json_object_is_type(opts, json_type_array) && i < json_object_array_length(opts);
	     i++) {
		const char *o = json_object_get_string(json_object_array_get_idx(opts, i));
		if (o && (!strcmp(o, "bind") || !strcmp(o, "rbind")))
			return true;
	}
	return false;
}

static int plan_config(struct json_object *cfg, const char *bundle, struct plan *p)
{
	struct json_object *v, *linux_ = jget(cfg, "linux");
	const char *root = jstr(jget(cfg, "root"), "path");
	if (!root || !*root)
		return log_error("the config has no root.path"), -EINVAL;
	if (snprintf(p->rootfs, sizeof(p->rootfs), "%s%s%s", root[0] == '/' ? "" : bundle, root[0] == '/' ? "" : "/",
		     root) >= (int)sizeof(p->rootfs))
		return log_error("root.path '%s' is too long", root), -EINVAL;
	p->readonly = (v = jget(jget(cfg, "root"), "readonly")) && json_object_get_boolean(v);
	p->process = jget(cfg, "process");
	struct json_object *args = jget(p->process, "args");
	if (!p->process || !args || !json_object_is_type(args, json_type_array) || !json_object_array_length(args))
		return log_error("the config has no process.args"), -EINVAL;
	p->terminal = (v = jget(p->process, "terminal")) && json_object_get_boolean(v);
	/* a Kubernetes pod's sandbox container (containerd's and CRI-O's mark)
	 * only holds the pod's namespaces: its image is never run, and no VM is
	 * made for it; the pod's containers are the VMs */
	const char *ct = jstr(jget(cfg, "annotations"), "io.kubernetes.cri.container-type");
	if (!ct)
		ct = jstr(jget(cfg, "annotations"), "io.kubernetes.cri-o.ContainerType");
	p->pod_sandbox = ct && !strcmp(ct, "sandbox");
	p->hostname = jstr(cfg, "hostname");
	if (p->hostname && !*p->hostname)
		p->hostname = NULL;

	/* capabilities: the bounding set is the container's; every one with no
	 * seccomp filter is --privileged */
	struct json_object *bnd = jget(jget(p->process, "capabilities"), "bounding");
	size_t ncaps = bnd && json_object_is_type(bnd, json_type_array) ? json_object_array_length(bnd) : 0;
	bool sys_admin = false;
	for (size_t i = 0; i < ncaps; i++) {
		const char *c = json_object_get_string(json_object_array_get_idx(bnd, i));
		sys_admin |= c && !strcasecmp(c, "CAP_SYS_ADMIN");
	}
	p->seccomp = jget(linux_, "seccomp") != NULL;
	p->privileged = sys_admin && ncaps >= 38 && !p->seccomp;

	/* namespaces: the network one is given to the guest; a user namespace
	 * or another container's PID namespace cannot be */
	bool net_ns = false;
	struct json_object *nss = jget(linux_, "namespaces");
	for (size_t i = 0; nss && json_object_is_type(nss, json_type_array) && i < json_object_array_length(nss); i++) {
		struct json_object *ns = json_object_array_get_idx(nss, i);
		const char *type = jstr(ns, "type"), *path = jstr(ns, "path");
		if (!type)
			continue;
		if (!strcmp(type, "user"))
			return log_error(
				       "linux.namespaces: a user namespace (userns-remap, rootless) is not supported: "
				       "the VM is the boundary"),
			       -EINVAL;
		if (!strcmp(type, "pid") && path && *path)
			return log_error("linux.namespaces: joining another PID namespace ('%s') is not possible from "
					 "a VM",
					 path),
			       -EINVAL;
		if (!strcmp(type, "network")) {
			net_ns = true;
			if (path && *path)
				p->netns_path = path;
			else
				p->new_netns = true;
		}
	}
	if (!net_ns)
		return log_error("the config shares the host's network namespace (--network host): a VM cannot have "
				 "it; use the engine's bridge, or none"),
		       -EINVAL;
	if (jget(linux_, "uidMappings") || jget(linux_, "gidMappings"))
		return log_error("linux.uidMappings: user namespaces are not supported"), -EINVAL;
	struct json_object *devs = jget(linux_, "devices");
	if (devs && json_object_is_type(devs, json_type_array) && json_object_array_length(devs))
		return log_error("linux.devices: host devices (--device) cannot be given to a VM ('%s')",
				 jstr(json_object_array_get_idx(devs, 0), "path") ?: "?"),
		       -EINVAL;
	p->cgroups_path = jstr(linux_, "cgroupsPath");
	if (p->cgroups_path && !*p->cgroups_path)
		p->cgroups_path = NULL;

	/* resources: the VM's size */
	struct json_object *res = jget(linux_, "resources");
	int64_t mem = (v = jget(jget(res, "memory"), "limit")) ? json_object_get_int64(v) : 0;
	p->memory_mib = mem > 0 ? (long)(mem >> 20) : 0;
	if (p->memory_mib && p->memory_mib < 128) {
		log_info("memory limit %ld MiB: the VM gets 128 MiB (the least a guest boots with)", p->memory_mib);
		p->memory_mib = 128;
	}
	if (p->memory_mib > 65536)
		p->memory_mib = 65536;
	int64_t quota = (v = jget(jget(res, "cpu"), "quota")) ? json_object_get_int64(v) : 0;
	int64_t period = (v = jget(jget(res, "cpu"), "period")) ? json_object_get_int64(v) : 0;
	p->cpus = quota > 0 && period > 0 ? (long)((quota + period - 1) / period) : 0;
	if (p->cpus > 64)
		p->cpus = 64;

	/* hooks that run inside the container cannot */
	static const char *const inside[] = { "createContainer", "startContainer" };
	for (size_t i = 0; i < ARRAY_SIZE(inside); i++)
		if ((v = jget(jget(cfg, "hooks"), inside[i])) && json_object_is_type(v, json_type_array) &&
		    json_object_array_length(v))
			return log_error("hooks.%s run inside the container's namespaces on the host: not possible "
					 "with a VM",
					 inside[i]),
			       -EINVAL;

	/* mounts: the standard ones the guest has anyway, the engine's files,
	 * nothing else of the host */
	struct json_object *ms = jget(cfg, "mounts");
	for (size_t i = 0; ms && json_object_is_type(ms, json_type_array) && i < json_object_array_length(ms); i++) {
		struct json_object *m = json_object_array_get_idx(ms, i);
		const char *dst = jstr(m, "destination"), *src = jstr(m, "source"), *type = jstr(m, "type");
		if (!dst)
			return log_error("mounts[%zu] has no destination", i), -EINVAL;
		bool std = false;
		for (size_t k = 0; std_mounts[k] && !std; k++)
			std = !strcmp(dst, std_mounts[k]);
		if (std && (!is_bind(m) || !strcmp(dst, "/dev/shm")))
			continue; /* the guest's own (a /dev/shm bind becomes the guest's tmpfs) */
		const char *base = strrchr(dst, '/') + 1;
		if (is_bind(m) && !strncmp(dst, "/etc/", 5) && !strchr(dst + 5, '/') && src &&
		    (!strcmp(base, "hosts") || !strcmp(base, "hostname") || !strcmp(base, "resolv.conf"))) {
			if (p->netc < 3) {
				p->etc[p->netc][0] = base;
				p->etc[p->netc++][1] = src;
			}
			continue;
		}
		if (is_bind(m) && (!strcmp(dst, "/run/.containerenv") || !strcmp(dst, "/dev/termination-log"))) {
			log_debug("mount %s: an engine's marker file, not given to the VM", dst);
			continue;
		}
		if (is_bind(m))
			return log_error("mount '%s' at '%s': a sandbox shares no host path (boxkit-runtime(1); data "
					 "goes "
					 "in with box volume import)",
					 src ? src : "?", dst),
			       -EINVAL;
		return log_error("mount of type '%s' at '%s' is not supported", type ? type : "?", dst), -EINVAL;
	}
	return 0;
}

/* an engine file, copied into the state directory (regular, small) */
static int copy_etc(int dirfd, const char *name, const char *src)
{
	cleanup_free char *text = NULL;
	size_t len = 0;
	int r = read_small_file(src, ETC_MAX, &text, &len);
	if (r < 0)
		return log_sys(r, "cannot read the engine's /etc/%s ('%s')", name, src);
	char dst[64];
	snprintf(dst, sizeof(dst), "etc-%s", name);
	r = write_file_atomic(dirfd, dst, text, len, 0600);
	return r < 0 ? log_sys(r, "cannot keep /etc/%s", name) : 0;
}

/* ---- create ------------------------------------------------------------------------ */

/* remove <root>/<id>, only when it is still the directory locked (dirfd):
 * another command may have removed ours and a new create made one of the
 * same name meanwhile */
static bool state_is_current(const char *id, int dirfd)
{
	cleanup_close int root = open_root(false);
	struct stat a, b;
	return root >= 0 && fstat(dirfd, &a) == 0 && fstatat(root, id, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void remove_state(const char *id, int dirfd)
{
	cleanup_close int root = open_root(false);
	if (root < 0 || !state_is_current(id, dirfd)) {
		log_debug("the state of '%s' is gone already", id);
		return;
	}
	if (rm_tree_at(root, id) < 0 && errno != ENOENT)
		log_warn("cannot remove the state of '%s' under '%s'", id, g.root);
}

/* the sandbox's name: oci- and random hex (box names are at most 64) */
static int new_name(char *out, size_t outlen)
{
	char hex[25];
	int r = random_hex(hex, 12);
	if (r < 0)
		return r;
	snprintf(out, outlen, "oci-%s", hex);
	return 0;
}

/* box rm -f NAME: the VM stopped, its record removed */
static int sandbox_remove(const char *name)
{
	char *argv[] = { "box", "rm", "-f", (char *)name, NULL };
	int r = box(argv, NULL, 0, 120);
	if (r && !g.quiet)
		log_error("box rm -f %s: %s", name, g.last_err[0] ? g.last_err : "failed");
	return r == 0 ? 0 : -EIO;
}

/* the sandbox NAME removed, or never made (a create that did not get
 * that far): 0; it exists and could not be removed: -EIO */
/* run-record find --name NAME: the sandbox's run id in run (0), 1 when
 * there is none, else another status or -errno */
static int find_run(const char *name, char *run, size_t len)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/run-record", g.self);
	char *argv[] = { path, "find", "--home", (char *)g.home, "--name", (char *)name, NULL };
	cleanup_free char **env = tool_env();
	int r = env ? run_tool(path, argv, env, -1, run, len, 30) : -ENOMEM;
	run[strcspn(run, "\n")] = 0;
	return r;
}

static int sandbox_gone_or_removed(const char *name)
{
	char out[64] = "";
	bool was = g.quiet;
	g.quiet = true;
	int r = find_run(name, out, sizeof(out));
	g.quiet = was;
	if (r == 1 || (r == 0 && !out[0]))
		return 0; /* no such sandbox */
	return sandbox_remove(name);
}

static int cgroup_remove_dir(struct json_object *o)
{
	struct json_object *v = jget(o, "cgroup_made");
	const char *dir = jstr(o, "cgroup");
	if (dir && v && json_object_get_boolean(v) && rmdir(dir) < 0 && errno != ENOENT)
		log_debug("cannot remove the cgroup '%s': %s", dir, strerror(errno));
	return 0;
}

static int cmd_create(const char *id, const char *bundle, const char *pid_file, const char *console)
{
	char cfgpath[PATH_MAX];
	cleanup_free char *text = NULL;
	size_t len = 0;
	int r;
	if (!id_valid(id))
		return log_error("'%s' is not a container id (1 to 1024 of [A-Za-z0-9_+.-])", id), EXIT_USAGE;
	if (snprintf(cfgpath, sizeof(cfgpath), "%s/config.json", bundle) >= (int)sizeof(cfgpath))
		return log_error("--bundle '%s' is too long", bundle), EXIT_USAGE;
	if ((r = read_small_file(cfgpath, CONFIG_MAX, &text, &len)) < 0)
		return log_sys(r, "cannot read the bundle's config '%s'", cfgpath), EXIT_REFUSED;
	cleanup_json struct json_object *cfg = parse_json(text, len);
	if (!cfg)
		return log_error("'%s' is not a JSON object", cfgpath), EXIT_REFUSED;
	struct plan p = { 0 };
	if (plan_config(cfg, bundle, &p) < 0)
		return EXIT_REFUSED;
	if (p.terminal && !console)
		return log_error("process.terminal needs --console-socket"), EXIT_USAGE;
	if (!p.terminal && console)
		return log_error("--console-socket without process.terminal"), EXIT_USAGE;
	char bundle_abs[PATH_MAX];
	if (!realpath(bundle, bundle_abs))
		return log_sys(errno, "--bundle '%s'", bundle), EXIT_REFUSED;

	/* the state directory: ours alone; an existing one is another container */
	cleanup_close int root = open_root(true);
	if (root < 0)
		return EXIT_SYSTEM;
	if (mkdirat(root, id, 0700) < 0)
		return errno == EEXIST ? (log_error("container '%s' exists already", id), EXIT_REFUSED)
				       : (log_sys(errno, "cannot make the state of '%s'", id), EXIT_SYSTEM);
	struct state st = { .dirfd = openat(root, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC),
			    .o = json_object_new_object() };
	snprintf(st.id, sizeof(st.id), "%s", id);
	snprintf(st.dir, sizeof(st.dir), "%s/%s", g.root, id);
	pid_t client = -1;
	int go[2] = { -1, -1 }, nsr[2] = { -1, -1 }, master = -1, netns = -1, pfd = -1, fifo_dir = -1, rc = EXIT_SYSTEM;
	char slave[128], name[64] = "", run[64] = "";
	const char *statedir = st.dir;
	if (st.dirfd < 0 || flock(st.dirfd, LOCK_EX) < 0) {
		log_sys(errno, "cannot open the state of '%s'", id);
		goto fail;
	}
	if (mkfifoat(st.dirfd, FIFO_FILE, 0600) < 0) {
		log_sys(errno, "cannot make the start FIFO");
		goto fail;
	}
	for (int i = 0; i < p.netc; i++)
		if (copy_etc(st.dirfd, p.etc[i][0], p.etc[i][1]) < 0) {
			rc = EXIT_REFUSED;
			goto fail;
		}
	if ((pfd = memfd_of(p.process)) < 0) {
		if (pfd != -E2BIG)
			log_sys(pfd, "memfd");
		rc = EXIT_REFUSED;
		goto fail;
	}
	if (p.netns_path && (netns = open(p.netns_path, O_RDONLY | O_CLOEXEC)) < 0) {
		log_sys(errno, "cannot open the network namespace '%s'", p.netns_path);
		rc = EXIT_REFUSED;
		goto fail;
	}
	if (p.terminal && open_pty(&master, slave, sizeof(slave), p.process) < 0)
		goto fail;
	if (pipe2(go, O_CLOEXEC) < 0 || pipe2(nsr, O_CLOEXEC) < 0) {
		log_sys(errno, "pipe");
		goto fail;
	}

	/* the container's process: waits for create's end, then for start; its
	 * own descriptor of the state directory (the locked one is create's) */
	fifo_dir = openat(st.dirfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fifo_dir < 0) {
		log_sys(errno, "cannot open the state of '%s'", id);
		goto fail;
	}
	struct client c = { .process_fd = pfd,
			    .slave = p.terminal ? slave : NULL,
			    .netns_fd = netns,
			    .new_netns = p.new_netns,
			    .go_fd = go[0],
			    .ns_fd = nsr[1],
			    .fifo_dir = fifo_dir };
	client = fork();
	if (client < 0) {
		log_sys(errno, "fork");
		goto fail;
	}
	if (client == 0) {
		close(go[1]);
		close(nsr[0]);
		close(st.dirfd); /* the lock stays create's alone */
		client_main(&c);
	}
	close(go[0]);
	go[0] = -1;
	close(nsr[1]);
	nsr[1] = -1;
	{
		/* the client is in its network namespace (a byte), or has failed (EOF) */
		char b;
		ssize_t n;
		while ((n = read(nsr[0], &b, 1)) < 0 && errno == EINTR) {
		}
		close(nsr[0]);
		nsr[0] = -1;
		if (n != 1) {
			log_error("the container's process could not enter its network namespace");
			goto fail;
		}
	}
	close(fifo_dir);
	fifo_dir = -1;
	unsigned long long start = proc_start_time(client);
	json_object_object_add(st.o, "pid", json_object_new_int(client));
	json_object_object_add(st.o, "start", json_object_new_int64((int64_t)start));
	json_object_object_add(st.o, "bundle", json_object_new_string(bundle_abs));
	{
		char ts[64];
		struct timespec now;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		json_object_object_add(st.o, "created", json_object_new_string(ts));
	}
	struct json_object *ann = jget(cfg, "annotations");
	if (ann)
		json_object_object_add(st.o, "annotations", json_object_get(ann));
	if (jget(cfg, "hooks"))
		json_object_object_add(st.o, "hooks", json_object_get(jget(cfg, "hooks")));
	json_object_object_add(st.o, "execs", json_object_new_array());
	if (p.cgroups_path) {
		char cg[PATH_MAX];
		bool made;
		if (cgroup_dir(p.cgroups_path, cg, sizeof(cg)) < 0 || cgroup_join(cg, client, &made) < 0) {
			rc = EXIT_REFUSED;
			goto fail;
		}
		json_object_object_add(st.o, "cgroup", json_object_new_string(cg));
		json_object_object_add(st.o, "cgroup_made", json_object_new_boolean(made));
	}
	if (state_save(&st) < 0)
		goto fail;

	/* the engine's hooks: its network goes into the client's namespace */
	{
		cleanup_free char *sj = state_json(&st, "creating");
		struct json_object *hooks = jget(cfg, "hooks");
		if (!sj || run_hooks(hooks, "createRuntime", sj, true) < 0 ||
		    run_hooks(hooks, "prestart", sj, true) < 0) {
			rc = EXIT_REFUSED;
			goto fail;
		}
	}

	if (p.pod_sandbox) {
		json_object_object_add(st.o, "pod_sandbox", json_object_new_boolean(true));
		goto ready;
	}
	/* the client's network namespace, pinned by a bind mount in the state
	 * directory: what box is given names that namespace for good, whatever
	 * becomes of the client's pid meanwhile */
	if (pin_netns(st.dirfd, statedir, client) < 0) {
		rc = EXIT_REFUSED;
		goto fail;
	}
	/* the sandbox: its name recorded before box runs, so a create killed
	 * meanwhile leaves a name that delete removes */
	if (new_name(name, sizeof(name)) < 0) {
		log_error("no randomness for a name");
		goto fail;
	}
	json_object_object_add(st.o, "sandbox", json_object_new_string(name));
	if (state_save(&st) < 0)
		goto fail;
	g.spawned = &st;
	{
		char *argv[ARGV_MAX];
		char nsarg[PATH_MAX + 1200], user[64], mem[32], cpus[32], etc[3][PATH_MAX + 1200];
		char groups[GUEST_EXEC_GROUPS_MAX][16];
		int n = 0;
		argv[n++] = "box";
		argv[n++] = "create";
		argv[n++] = "--name";
		argv[n++] = name;
		argv[n++] = "--rootfs";
		argv[n++] = p.rootfs;
		snprintf(nsarg, sizeof(nsarg), "netns:%s/" NETNS_FILE, statedir);
		argv[n++] = "--network";
		argv[n++] = nsarg;
		struct json_object *u = jget(p.process, "user"), *v;
		snprintf(user, sizeof(user), "%lld:%lld", (long long)json_object_get_int64(jget(u, "uid")),
			 (long long)json_object_get_int64(jget(u, "gid")));
		argv[n++] = "--user";
		argv[n++] = user;
		if ((v = jget(u, "additionalGids")) && json_object_is_type(v, json_type_array))
			for (size_t i = 0;
			     i < json_object_array_length(v) && i < GUEST_EXEC_GROUPS_MAX && n < ARGS_SOFT; i++) {
				snprintf(groups[i], sizeof(groups[i]), "%lld",
					 (long long)json_object_get_int64(json_object_array_get_idx(v, i)));
				argv[n++] = "--group-add";
				argv[n++] = groups[i];
			}
		if (p.privileged)
			argv[n++] = "--privileged";
		else {
			argv[n++] = "--cap-drop";
			argv[n++] = "ALL";
			struct json_object *b = jget(jget(p.process, "capabilities"), "bounding");
			for (size_t i = 0; b && json_object_is_type(b, json_type_array) &&
					   i < json_object_array_length(b) && n < ARGS_SOFT;
			     i++) {
				argv[n++] = "--cap-add";
				argv[n++] = (char *)json_object_get_string(json_object_array_get_idx(b, i));
			}
			if (!p.seccomp) {
				argv[n++] = "--security-opt";
				argv[n++] = "seccomp=unconfined";
			}
		}
		if (p.hostname) {
			argv[n++] = "--hostname";
			argv[n++] = (char *)p.hostname;
		}
		if (p.readonly)
			argv[n++] = "--read-only";
		if (p.memory_mib) {
			snprintf(mem, sizeof(mem), "%ldm", p.memory_mib);
			argv[n++] = "--memory";
			argv[n++] = mem;
		}
		if (p.cpus) {
			snprintf(cpus, sizeof(cpus), "%ld", p.cpus);
			argv[n++] = "--cpus";
			argv[n++] = cpus;
		}
		for (int i = 0; i < p.netc; i++) {
			snprintf(etc[i], sizeof(etc[i]), "%s=%s/etc-%s", p.etc[i][0], statedir, p.etc[i][0]);
			argv[n++] = "--etc-file";
			argv[n++] = etc[i];
		}
		if (log_get_level() >= LOG_DEBUG)
			argv[n++] = "--verbose";
		argv[n] = NULL;
		if (n >= ARGS_SOFT) {
			log_error("the config has too many capabilities or groups");
			rc = EXIT_REFUSED;
			goto fail;
		}
		char out[256];
		r = box(argv, out, sizeof(out), BOX_TIMEOUT_S);
		g.spawned = NULL;
		if (r != 0) {
			log_error("the sandbox could not be created: %s",
				  g.last_err[0] ? g.last_err : "box create failed");
			rc = EXIT_REFUSED;
			goto fail;
		}
	}
	if (find_run(name, run, sizeof(run)) != 0 || !run_id_valid(run)) {
		log_error("cannot find the sandbox '%s' that box created", name);
		goto fail;
	}
	json_object_object_add(st.o, "run", json_object_new_string(run));
ready:
	if (state_save(&st) < 0)
		goto fail;
	if (master >= 0) {
		if (send_master(console, master) < 0)
			goto fail;
		close(master);
		master = -1;
	}
	if (pid_file && write_pid_file(pid_file, client) < 0)
		goto fail;
	char gomsg[80];
	int gn = snprintf(gomsg, sizeof(gomsg), "g%s", run);
	if (write(go[1], gomsg, (size_t)gn) != gn) {
		log_sys(errno, "the container's process is gone");
		goto fail;
	}
	close(go[1]);
	close(pfd);
	if (netns >= 0)
		close(netns);
	state_close(&st);
	return 0;
fail:
	if (client > 0) {
		kill(client, SIGKILL);
		while (waitpid(client, NULL, 0) < 0 && errno == EINTR) {
		}
	}
	if (name[0]) {
		/* box create may have got far, or not at all: quietly */
		char keep[sizeof(g.last_err)];
		snprintf(keep, sizeof(keep), "%s", g.last_err);
		g.quiet = true;
		sandbox_remove(name);
		g.quiet = false;
		snprintf(g.last_err, sizeof(g.last_err), "%s", keep);
	}
	cgroup_remove_dir(st.o);
	unpin_netns(statedir);
	if (master >= 0)
		close(master);
	if (netns >= 0)
		close(netns);
	if (pfd >= 0)
		close(pfd);
	if (fifo_dir >= 0)
		close(fifo_dir);
	if (go[0] >= 0)
		close(go[0]);
	if (go[1] >= 0)
		close(go[1]);
	for (int i = 0; i < 2; i++)
		if (nsr[i] >= 0)
			close(nsr[i]);
	/* removed while still locked: nobody else's directory of that name */
	if (st.dirfd >= 0)
		remove_state(id, st.dirfd);
	state_close(&st);
	return rc;
}

/* ---- start, state, kill, delete, ps ---------------------------------------------------- */

static int cmd_start(const char *id)
{
	struct state st;
	if (state_open(id, &st, false) < 0)
		return EXIT_REFUSED;
	int rc = EXIT_REFUSED;
	cleanup_free char *sj = NULL;
	const char *status = state_status(&st);
	if (strcmp(status, "created")) {
		log_error("container '%s' is %s, not created", id, status);
		goto out;
	}
	int f = openat(st.dirfd, FIFO_FILE, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
	if (f < 0) {
		log_sys(errno, "cannot open the start FIFO of '%s'", id);
		goto out;
	}
	/* the client writes one byte once it has the FIFO open */
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char b;
	for (;;) {
		ssize_t n = read(f, &b, 1);
		if (n == 1)
			break;
		bool alive;
		state_pid(&st, &alive);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!alive || now.tv_sec - t0.tv_sec > START_TIMEOUT_MS / 1000) {
			close(f);
			log_error("the container's process %s", alive ? "did not take the start" : "is gone");
			goto out;
		}
		struct pollfd pf = { f, POLLIN, 0 };
		poll(&pf, 1, 50);
	}
	close(f);
	unlinkat(st.dirfd, FIFO_FILE, 0);
	rc = 0;
	sj = state_json(&st, "running");
	if (sj)
		run_hooks(jget(st.o, "hooks"), "poststart", sj, false);
out:
	state_close(&st);
	return rc;
}

static int cmd_state(const char *id)
{
	struct state st;
	if (state_open_ex(id, &st, false, false) < 0)
		return EXIT_REFUSED;
	cleanup_free char *sj = state_json(&st, NULL);
	state_close(&st);
	if (!sj)
		return EXIT_SYSTEM;
	printf("%s\n", sj);
	return close_stdout() < 0 ? EXIT_SYSTEM : 0;
}

static int parse_signal(const char *s)
{
	static const struct {
		const char *name;
		int sig;
	} names[] = { { "HUP", SIGHUP },       { "INT", SIGINT },   { "QUIT", SIGQUIT },     { "ILL", SIGILL },
		      { "TRAP", SIGTRAP },     { "ABRT", SIGABRT }, { "IOT", SIGIOT },	     { "BUS", SIGBUS },
		      { "FPE", SIGFPE },       { "KILL", SIGKILL }, { "USR1", SIGUSR1 },     { "SEGV", SIGSEGV },
		      { "USR2", SIGUSR2 },     { "PIPE", SIGPIPE }, { "ALRM", SIGALRM },     { "TERM", SIGTERM },
		      { "STKFLT", SIGSTKFLT }, { "CHLD", SIGCHLD }, { "CONT", SIGCONT },     { "STOP", SIGSTOP },
		      { "TSTP", SIGTSTP },     { "TTIN", SIGTTIN }, { "TTOU", SIGTTOU },     { "URG", SIGURG },
		      { "XCPU", SIGXCPU },     { "XFSZ", SIGXFSZ }, { "VTALRM", SIGVTALRM }, { "PROF", SIGPROF },
		      { "WINCH", SIGWINCH },   { "IO", SIGIO },	    { "PWR", SIGPWR },	     { "SYS", SIGSYS } };
	char *end;
	long n = strtol(s, &end, 10);
	if (*s && !*end)
		return n >= 1 && n <= 64 ? (int)n : -1;
	if (!strncasecmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcasecmp(s, names[i].name))
			return names[i].sig;
	return -1;
}

/* signal the process pid that started at start, never another that took
 * its number: through a pidfd opened before the check */
static int signal_proc(pid_t pid, unsigned long long start, int sig)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return -errno;
	int r = proc_is(pid, start) ? (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) : -1;
	int e = r < 0 ? (proc_is(pid, start) ? errno : ESRCH) : 0;
	close(fd);
	return -e;
}

/* the exec clients still alive (and the list pruned to them) */
static size_t live_execs(struct state *st, pid_t *pids, unsigned long long *starts, size_t max)
{
	struct json_object *list = jget(st->o, "execs"), *keep = json_object_new_array();
	size_t n = 0;
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		struct json_object *e = json_object_array_get_idx(list, i);
		pid_t pid = (pid_t)json_object_get_int(jget(e, "pid"));
		if (proc_is(pid, (unsigned long long)json_object_get_int64(jget(e, "start")))) {
			json_object_array_add(keep, json_object_get(e));
			if (n < max) {
				starts[n] = (unsigned long long)json_object_get_int64(jget(e, "start"));
				pids[n++] = pid;
			}
		}
	}
	json_object_object_add(st->o, "execs", keep);
	return n;
}

static int cmd_kill(const char *id, const char *sigs, bool all)
{
	int sig = parse_signal(sigs);
	if (sig < 0)
		return log_error("'%s' is not a signal", sigs), EXIT_USAGE;
	struct state st;
	if (state_open(id, &st, false) < 0)
		return EXIT_REFUSED;
	bool alive;
	pid_t pid = state_pid(&st, &alive), execs[EXECS_MAX];
	unsigned long long starts[EXECS_MAX];
	size_t n = all ? live_execs(&st, execs, starts, EXECS_MAX) : 0;
	int rc = 0, r;
	/* runc's kill --all of a stopped container has nothing to do: not an
	 * error (containerd's CRI sends it after every exit) */
	if (!alive && !n && !all) {
		log_error("container '%s' is not running", id);
		rc = EXIT_REFUSED;
	}
	/* the clients pass every signal they can catch on to their process in
	 * the guest; SIGKILL ends the client, and the monitor then kills its
	 * process */
	if (alive && (r = signal_proc(pid, (unsigned long long)json_object_get_int64(jget(st.o, "start")), sig)) < 0 &&
	    r != -ESRCH)
		rc = (log_sys(r, "kill %d", (int)pid), EXIT_SYSTEM);
	for (size_t i = 0; i < n; i++)
		signal_proc(execs[i], starts[i], sig);
	state_close(&st);
	return rc;
}

static int cmd_delete(const char *id, bool force)
{
	struct state st;
	int sr = state_open(id, &st, true);
	if (sr == -EBUSY || sr == -EINVAL) {
		state_close(&st);
		return EXIT_REFUSED;
	}
	if (sr < 0) {
		if (st.dirfd >= 0 && !st.o && state_is_current(id, st.dirfd)) {
			/* a create killed before it wrote anything (it writes its
			 * state before it makes a sandbox or pins a namespace) */
			unpin_netns(st.dir);
			remove_state(id, st.dirfd);
			state_close(&st);
			return 0;
		}
		state_close(&st);
		if (force)
			return 0;
		log_error("container '%s' does not exist", id);
		return EXIT_REFUSED;
	}
	const char *status = state_status(&st);
	if (!strcmp(status, "running") && !force) {
		log_error("container '%s' is running: kill it first, or delete --force", id);
		state_close(&st);
		return EXIT_REFUSED;
	}
	bool alive;
	pid_t pid = state_pid(&st, &alive), execs[EXECS_MAX];
	unsigned long long starts[EXECS_MAX];
	size_t n = live_execs(&st, execs, starts, EXECS_MAX);
	if (alive)
		signal_proc(pid, (unsigned long long)json_object_get_int64(jget(st.o, "start")), SIGKILL);
	for (size_t i = 0; i < n; i++)
		signal_proc(execs[i], starts[i], SIGKILL);
	int rc = 0;
	/* a create killed while box ran: box goes first, then its sandbox */
	stop_box_create(&st);
	const char *name = jstr(st.o, "sandbox");
	if (name && sandbox_gone_or_removed(name) < 0) {
		log_error("the sandbox '%s' of '%s' could not be removed ('box rm -f %s' retries)", name, id, name);
		rc = EXIT_SYSTEM;
	}
	unpin_netns(st.dir);
	cleanup_free char *sj = state_json(&st, "stopped");
	if (sj)
		run_hooks(jget(st.o, "hooks"), "poststop", sj, false);
	cgroup_remove_dir(st.o);
	if (rc == 0)
		remove_state(id, st.dirfd); /* still locked */
	state_close(&st);
	return rc;
}

static int cmd_ps(const char *id, const char *format)
{
	if (strcmp(format, "json") && strcmp(format, "table"))
		return log_error("--format '%s': use json or table", format), EXIT_USAGE;
	struct state st;
	if (state_open_ex(id, &st, false, false) < 0)
		return EXIT_REFUSED;
	bool alive;
	pid_t pid = state_pid(&st, &alive), execs[EXECS_MAX];
	unsigned long long starts[EXECS_MAX];
	size_t n = live_execs(&st, execs, starts, EXECS_MAX);
	state_close(&st);
	if (!strcmp(format, "json")) {
		printf("[");
		bool first = true;
		if (alive) {
			printf("%d", (int)pid);
			first = false;
		}
		for (size_t i = 0; i < n; i++, first = false)
			printf("%s%d", first ? "" : ",", (int)execs[i]);
		printf("]\n");
	} else {
		printf("PID\n");
		if (alive)
			printf("%d\n", (int)pid);
		for (size_t i = 0; i < n; i++)
			printf("%d\n", (int)execs[i]);
	}
	return close_stdout() < 0 ? EXIT_SYSTEM : 0;
}

/* ---- exec ------------------------------------------------------------------------------ */

static int cmd_exec(const char *id, const char *process, bool detach, const char *pid_file, const char *console,
		    bool tty_flag)
{
	cleanup_free char *text = NULL;
	size_t len = 0;
	int r = read_small_file(process, PROCESS_MAX, &text, &len);
	if (r < 0)
		return log_sys(r, "cannot read --process '%s'", process), EXIT_REFUSED;
	cleanup_json struct json_object *proc = parse_json(text, len);
	struct json_object *v;
	if (!proc || !(v = jget(proc, "args")) || !json_object_is_type(v, json_type_array) ||
	    !json_object_array_length(v))
		return log_error("--process '%s' is not a process with args", process), EXIT_REFUSED;
	bool terminal = tty_flag || ((v = jget(proc, "terminal")) && json_object_get_boolean(v));
	if (terminal && !console)
		return log_error("a terminal needs --console-socket"), EXIT_USAGE;
	if (terminal)
		json_object_object_add(proc, "terminal", json_object_new_boolean(true));
	struct state st;
	if (state_open(id, &st, false) < 0)
		return EXIT_REFUSED;
	int rc = EXIT_REFUSED, master = -1;
	const char *status = state_status(&st);
	const char *run = jstr(st.o, "run");
	char slave[128], runbuf[64];
	if (jget(st.o, "pod_sandbox")) {
		log_error("container '%s' is a pod's sandbox: it has no VM to exec in", id);
		goto out;
	}
	if (strcmp(status, "running") || !run) {
		log_error("container '%s' is %s: exec needs a running one", id, status);
		goto out;
	}
	snprintf(runbuf, sizeof(runbuf), "%s", run);
	int pfd = memfd_of(proc);
	if (pfd < 0) {
		rc = pfd == -E2BIG ? EXIT_REFUSED : (log_sys(pfd, "memfd"), EXIT_SYSTEM);
		goto out;
	}
	if (terminal && open_pty(&master, slave, sizeof(slave), proc) < 0) {
		close(pfd);
		rc = EXIT_SYSTEM;
		goto out;
	}
	struct client c = { .run = runbuf,
			    .process_fd = pfd,
			    .slave = terminal ? slave : NULL,
			    .netns_fd = -1,
			    .go_fd = -1,
			    .ns_fd = -1,
			    .fifo_dir = -1 };
	if (!detach) {
		/* this process becomes the client */
		if (pid_file && write_pid_file(pid_file, getpid()) < 0)
			goto out;
		if (master >= 0 && send_master(console, master) < 0)
			goto out;
		state_close(&st);
		client_main(&c);
	}
	pid_t pid = fork();
	if (pid < 0) {
		rc = (log_sys(errno, "fork"), EXIT_SYSTEM);
		close(pfd);
		goto out;
	}
	if (pid == 0) {
		close(st.dirfd); /* the lock stays the exec command's */
		client_main(&c);
	}
	close(pfd);
	const char *cg = jstr(st.o, "cgroup");
	bool made;
	if (cg && cgroup_join(cg, pid, &made) < 0)
		log_warn("the exec is not in the container's cgroup");
	struct json_object *e = json_object_new_object();
	json_object_object_add(e, "pid", json_object_new_int(pid));
	json_object_object_add(e, "start", json_object_new_int64((int64_t)proc_start_time(pid)));
	pid_t tmp[1];
	unsigned long long tmps[1];
	live_execs(&st, tmp, tmps, 0);
	json_object_array_add(jget(st.o, "execs"), e);
	if (json_object_array_length(jget(st.o, "execs")) > EXECS_MAX)
		json_object_array_del_idx(jget(st.o, "execs"), 0, 1);
	state_save(&st);
	if (master >= 0 && send_master(console, master) < 0) {
		kill(pid, SIGKILL);
		goto out;
	}
	if (pid_file && write_pid_file(pid_file, pid) < 0) {
		kill(pid, SIGKILL);
		goto out;
	}
	rc = 0;
out:
	if (master >= 0)
		close(master);
	state_close(&st);
	return rc;
}

/* ---- features, version ------------------------------------------------------------------ */

static int cmd_features(void)
{
	puts("{\n"
	     "  \"ociVersionMin\": \"1.0.0\",\n"
	     "  \"ociVersionMax\": \"" OCI_VERSION "\",\n"
	     "  \"hooks\": [\"prestart\", \"createRuntime\", \"poststart\", \"poststop\"],\n"
	     "  \"mountOptions\": [],\n"
	     "  \"linux\": {\n"
	     "    \"namespaces\": [\"network\", \"pid\", \"ipc\", \"uts\", \"mount\", \"cgroup\"],\n"
	     "    \"capabilities\": [],\n"
	     "    \"cgroup\": {\"v1\": false, \"v2\": true, \"systemd\": true, \"systemdUser\": false},\n"
	     "    \"seccomp\": {\"enabled\": true},\n"
	     "    \"apparmor\": {\"enabled\": false},\n"
	     "    \"selinux\": {\"enabled\": false}\n"
	     "  },\n"
	     "  \"annotations\": {\"org.boxkit.runtime\": \"microvm\"}\n"
	     "}");
	return close_stdout() < 0 ? EXIT_SYSTEM : 0;
}

static int cmd_version(void)
{
	char ver[64] = "unknown", path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/../VERSION", g.self);
	cleanup_fclose FILE *f = fopen(path, "re");
	if (f && fgets(ver, sizeof(ver), f))
		ver[strcspn(ver, "\n")] = 0;
	printf("boxkit-runtime version %s\nspec: %s\n", ver, OCI_VERSION);
	return close_stdout() < 0 ? EXIT_SYSTEM : 0;
}

/* ---- the command line ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fputs("Usage: boxkit-runtime [GLOBAL OPTIONS] COMMAND [OPTIONS] ID\n"
	      "\n"
	      "boxkit as an OCI runtime (runc's command line): each container runs in a\n"
	      "jailed microVM (a boxkit sandbox).\n"
	      "\n"
	      "Commands:\n"
	      "  create --bundle DIR [--pid-file F] [--console-socket S] [--no-pivot]\n"
	      "         [--no-new-keyring] ID   boot the sandbox; the process waits for start\n"
	      "  start ID                        run the container's process\n"
	      "  state ID                        the runtime-spec state (JSON)\n"
	      "  kill [--all] ID [SIGNAL]        a signal (name or number; default TERM)\n"
	      "  delete [--force] ID             stop the sandbox, remove everything\n"
	      "  exec --process F [--detach] [--pid-file F] [--console-socket S] [--tty] ID\n"
	      "  ps [--format json|table] ID     the container's host processes\n"
	      "  features                        what this runtime supports (JSON)\n"
	      "  --version, --help\n"
	      "\n"
	      "Global options: --root DIR (state; default " DEFAULT_ROOT "), --log FILE,\n"
	      "--log-format text|json, --systemd-cgroup, --debug, --home DIR (the boxkit\n"
	      "home; default $BOXKIT_HOME or " DEFAULT_HOME ").\n"
	      "Anything else (checkpoint, pause, update, run, ...) is refused by name.\n"
	      "\n"
	      "Exit status: 0 ok, 1 refused (bad config, no such container, wrong state),\n"
	      "2 usage, 3 system failure; exec without --detach: the process's.\n"
	      "Manual: tools/boxkit-runtime/boxkit-runtime.1.md\n",
	      f);
}

static int need_id(int argc, char **argv, int want)
{
	if (argc - optind != want) {
		log_error("%s needs %s", argv[0], want == 1 ? "the container id" : "the container id and a signal");
		return -1;
	}
	return 0;
}

/* --preserve-fds N: only 0 (nothing to pass) means anything to a VM */
static bool preserve_fds_refused(const char *n)
{
	if (!strcmp(n, "0"))
		return false;
	log_error("--preserve-fds %s: descriptors cannot be passed into a VM", n);
	return true;
}

/* a command whose one option is the flag --name (-c): 1 given, 0 not, -1 bad */
static int one_flag(int argc, char **argv, const char *name, int c)
{
	const struct option o[] = { { name, no_argument, NULL, c }, { 0 } };
	const char shortopt[] = { '+', (char)c, 0 };
	int k, on = 0;
	while ((k = getopt_long(argc, argv, shortopt, o, NULL)) != -1) {
		if (k != c)
			return -1;
		on = 1;
	}
	return on;
}

static int dispatch(int argc, char **argv)
{
	const char *cmd = argv[0];
	int c;
	optind = 1;
	if (!strcmp(cmd, "create")) {
		const char *bundle = ".", *pid_file = NULL, *console = NULL;
		enum { B = 256, P, C, NP, NK, D, PF };
		static const struct option o[] = {
			{ "bundle", required_argument, NULL, B },	  { "pid-file", required_argument, NULL, P },
			{ "console-socket", required_argument, NULL, C }, { "no-pivot", no_argument, NULL, NP },
			{ "no-new-keyring", no_argument, NULL, NK },	  { "detach", no_argument, NULL, D },
			{ "preserve-fds", required_argument, NULL, PF },  { 0 }
		};
		while ((c = getopt_long(argc, argv, "+b:", o, NULL)) != -1)
			switch (c) {
			case 'b':
			case B: bundle = optarg; break;
			case P: pid_file = optarg; break;
			case C: console = optarg; break;
			case NP:
			case NK:
			case D: break; /* a VM has no pivot_root, keyring or foreground to leave */
			case PF:
				if (preserve_fds_refused(optarg))
					return EXIT_USAGE;
				break;
			default: return EXIT_USAGE;
			}
		if (need_id(argc, argv, 1) < 0)
			return EXIT_USAGE;
		return cmd_create(argv[optind], bundle, pid_file, console);
	}
	if (!strcmp(cmd, "start") || !strcmp(cmd, "state")) {
		if (getopt_long(argc, argv, "+", (const struct option[]){ { 0 } }, NULL) != -1 ||
		    need_id(argc, argv, 1) < 0)
			return EXIT_USAGE;
		return !strcmp(cmd, "start") ? cmd_start(argv[optind]) : cmd_state(argv[optind]);
	}
	if (!strcmp(cmd, "kill")) {
		int all = one_flag(argc, argv, "all", 'a');
		if (all < 0)
			return EXIT_USAGE;
		if (argc - optind == 1)
			return cmd_kill(argv[optind], "TERM", all);
		if (need_id(argc, argv, 2) < 0)
			return EXIT_USAGE;
		return cmd_kill(argv[optind], argv[optind + 1], all);
	}
	if (!strcmp(cmd, "delete")) {
		int force = one_flag(argc, argv, "force", 'f');
		if (force < 0)
			return EXIT_USAGE;
		if (need_id(argc, argv, 1) < 0)
			return EXIT_USAGE;
		return cmd_delete(argv[optind], force);
	}
	if (!strcmp(cmd, "exec")) {
		const char *process = NULL, *pid_file = NULL, *console = NULL;
		bool detach = false, tty = false;
		enum { PR = 256, P, C, D, T, PF };
		static const struct option o[] = { { "process", required_argument, NULL, PR },
						   { "pid-file", required_argument, NULL, P },
						   { "console-socket", required_argument, NULL, C },
						   { "detach", no_argument, NULL, D },
						   { "tty", no_argument, NULL, T },
						   { "preserve-fds", required_argument, NULL, PF },
						   { 0 } };
		while ((c = getopt_long(argc, argv, "+p:dt", o, NULL)) != -1)
			switch (c) {
			case 'p':
			case PR: process = optarg; break;
			case P: pid_file = optarg; break;
			case C: console = optarg; break;
			case 'd':
			case D: detach = true; break;
			case 't':
			case T: tty = true; break;
			case PF:
				if (preserve_fds_refused(optarg))
					return EXIT_USAGE;
				break;
			default: return EXIT_USAGE;
			}
		if (!process)
			return log_error("exec needs --process FILE (a command line is not supported)"), EXIT_USAGE;
		if (need_id(argc, argv, 1) < 0)
			return EXIT_USAGE;
		return cmd_exec(argv[optind], process, detach, pid_file, console, tty);
	}
	if (!strcmp(cmd, "ps")) {
		const char *format = "table";
		static const struct option o[] = { { "format", required_argument, NULL, 'f' }, { 0 } };
		while ((c = getopt_long(argc, argv, "+f:", o, NULL)) != -1)
			if (c == 'f')
				format = optarg;
			else
				return EXIT_USAGE;
		if (argc - optind > 1 && !strcmp(argv[optind + 1], "--"))
			return log_error("ps: ps(1) options are not supported"), EXIT_USAGE;
		if (need_id(argc, argv, 1) < 0)
			return EXIT_USAGE;
		return cmd_ps(argv[optind], format);
	}
	if (!strcmp(cmd, "features"))
		return argc == 1 ? cmd_features() : (log_error("features takes no arguments"), EXIT_USAGE);
	if (!strcmp(cmd, "version"))
		return cmd_version();
	log_error("'%s' is not supported by boxkit-runtime (create, start, state, kill, delete, exec, ps, "
		  "features)",
		  cmd);
	return EXIT_USAGE;
}

static int tool_main(int argc, char **argv)
{
	log_init("boxkit-runtime");
	enum { ROOT = 256, LOG, FMT, SYSD, DBG, HOME, ROOTLESS, CRIU };
	static const struct option o[] = { { "root", required_argument, NULL, ROOT },
					   { "log", required_argument, NULL, LOG },
					   { "log-format", required_argument, NULL, FMT },
					   { "systemd-cgroup", no_argument, NULL, SYSD },
					   { "debug", no_argument, NULL, DBG },
					   { "home", required_argument, NULL, HOME },
					   { "rootless", required_argument, NULL, ROOTLESS },
					   { "version", no_argument, NULL, 'V' },
					   { "help", no_argument, NULL, 'h' },
					   { 0 } };
	int c;
	bool version = false;
	while ((c = getopt_long(argc, argv, "+hv", o, NULL)) != -1)
		switch (c) {
		case ROOT:
			if (optarg[0] != '/')
				return log_error("--root '%s' must be an absolute path", optarg), EXIT_USAGE;
			g.root = optarg;
			break;
		case LOG: g.log = optarg; break;
		case FMT:
			if (strcmp(optarg, "json") && strcmp(optarg, "text"))
				return log_error("--log-format '%s': use text or json", optarg), EXIT_USAGE;
			g.log_format = optarg;
			break;
		case SYSD: g.systemd_cgroup = true; break;
		case DBG: log_set_level(LOG_DEBUG); break;
		case HOME: g.home = optarg; break;
		case ROOTLESS:
			if (strcmp(optarg, "false"))
				return log_error("--rootless %s: rootless mode is not supported", optarg), EXIT_USAGE;
			break;
		case 'V':
		case 'v': version = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	if (self_dir(g.self, sizeof(g.self)) < 0)
		return log_error("cannot find this program's directory"), EXIT_SYSTEM;
	if (version)
		return cmd_version();
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!g.home)
		g.home = getenv("BOXKIT_HOME") && *getenv("BOXKIT_HOME") ? getenv("BOXKIT_HOME") : DEFAULT_HOME;
	if (g.home[0] != '/')
		return log_error("--home '%s' must be an absolute path", g.home), EXIT_USAGE;
	if (g.log) {
		g.logf = fopen(g.log, "ae");
		if (!g.logf)
			return log_sys(errno, "cannot open --log '%s'", g.log), EXIT_SYSTEM;
		g.json = g.log_format && !strcmp(g.log_format, "json");
		log_set_sink(sink);
	}
	/* our stdio belongs to the container's process (create) or to the
	 * exec: kept aside for it; our own lines go to the log when there is one */
	for (int i = 0; i < 3; i++)
		g.saved[i] = fcntl(i, F_DUPFD_CLOEXEC, 10);
	if (g.logf && strcmp(argv[optind], "state") && strcmp(argv[optind], "ps") && strcmp(argv[optind], "features")) {
		int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (nul >= 0) {
			dup2(nul, STDERR_FILENO);
			close(nul);
		}
	}
	signal(SIGPIPE, SIG_IGN);
	return dispatch(argc - optind, argv + optind);
}

int main(int argc, char **argv)
{
	int r = tool_main(argc, argv);
	if (g.logf)
		fclose(g.logf);
	return r;
}
