/* SPDX-License-Identifier: MIT */
/* Warm starts: a saved VM, restored instead of booted.
 *
 * A run that may start warm (--warm: QEMU jailed; no directory or file
 * volume, since QEMU 7.2 cannot save a VM with a vhost-user-fs device; no
 * network) looks up <home>/warm/<key>/, where the key is a SHA-256 of
 * everything that shapes the saved VM: QEMU's whole command line (machine,
 * memory, CPUs, accelerator, kernel command line, devices), the identity of
 * the QEMU binary, the kernel and both drives, the protocol versions, and
 * the run's OCI config as the saved VM holds it (config_make_serving: no
 * command, environment or working directory of any run).
 *
 * Found: QEMU starts with -incoming on a pipe that a thread of ours fills
 * from the state file, hashing as it goes; the last bytes are held back
 * until the whole file's SHA-256 matches the one recorded when it was
 * saved, so a damaged state never runs (QEMU sees a cut stream and fails,
 * the run boots cold, warns, and saves a new state). QEMU never holds a
 * descriptor of the state file.
 *
 * Not found: the run boots cold with the serving config in keep mode; once
 * the container init is up (READY), QEMU is stopped and its migration
 * stream written, through a pipe we read, into a new directory that is
 * renamed into place whole (a second builder of the same key loses the
 * rename and drops its copy); then the VM continues as this run's.
 *
 * Either way the copy then gets RESUME (the clock, fresh entropy and a CRNG
 * reseed: lib/common/guest-abi.h) and the run's command as an exec on
 * stream 0. */
#include "warm.h"
#include "common.h"
#include "firstcmd.h"
#include "guest-abi.h"
#include "launch.h"
#include "testhook.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#define WARM_FORMAT 1
#define WARM_DIR "warm"
#define WARM_STATE "state"
#define WARM_META "meta.json"
#define WARM_TAIL (64u << 10)	 /* held back until the digest matched */
#define WARM_SLACK (64ull << 20) /* a state may be this much over the guest's memory */
#define QMP_LINE_MAX (64u << 10) /* one QMP reply or event */
#define SAVE_DEADLINE_MS 120000	 /* a save that takes longer is given up */
#define PIPE_SIZE (1 << 20)
#define WARM_KEEP 16	 /* saved VMs kept; the least recently used go first */
#define WARM_STALE_S 600 /* a save's or a removal's leftover older than this goes */

static int hex_digest(const unsigned char *d, unsigned n, char *out)
{
	for (unsigned i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
	return 0;
}

/* ---- the key -------------------------------------------------------------------------- */

static void key_file(EVP_MD_CTX *c, const char *what, const char *path)
{
	struct stat st = { 0 };
	char line[512];
	/* identity and contents' date: the store's files are never rewritten in
	 * place, and a rebuilt kernel or image is a new file (ctime is left out:
	 * chroot-stage's hard links change it on every run) */
	if (!path || fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		snprintf(line, sizeof(line), "%s none\n", what);
	else
		snprintf(line, sizeof(line), "%s %llu %llu %lld %lld.%09ld\n", what, (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
			 st.st_mtim.tv_nsec);
	EVP_DigestUpdate(c, line, strlen(line));
}

int warm_key(struct vm *vm, char *const *argv, int argc)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned char d[32];
	unsigned n = 0;
	char head[128], qbin[PATH_MAX] = "";
	if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(c);
		return -ENOMEM;
	}
	snprintf(head, sizeof(head), "boxkit-warm %d proto %d plan %d\n", WARM_FORMAT, GUEST_PROTO_VERSION,
		 GUEST_PLAN_VERSION);
	EVP_DigestUpdate(c, head, strlen(head));
	for (int i = 0; i < argc; i++)
		EVP_DigestUpdate(c, argv[i], strlen(argv[i]) + 1);
	if (path_lookup(arg.qemu, qbin, sizeof(qbin)) < 0)
		qbin[0] = 0;
	key_file(c, "qemu", qbin[0] ? qbin : NULL);
	if (vm->jailed) {
		/* what QEMU opens: the jail's hard links (the store's inodes), not
		 * the names, which may point elsewhere by now */
		char p[3][8300];
		snprintf(p[0], sizeof(p[0]), "%s%s", vm->root, vm->kernel_in);
		snprintf(p[1], sizeof(p[1]), "%s%s", vm->root, vm->drives_in[0]);
		snprintf(p[2], sizeof(p[2]), "%s%s", vm->root, vm->drives_in[1]);
		key_file(c, "kernel", p[0]);
		key_file(c, "system", p[1]);
		key_file(c, "rootfs", p[2]);
	} else {
		key_file(c, "kernel", vm->kernel);
		key_file(c, "system", vm->system);
		key_file(c, "rootfs", vm->rootfs);
	}
	if (!strcmp(vm->accel, "kvm")) {
		/* -cpu host: the CPU a copy was saved on, and the host kernel */
		struct utsname u;
		cleanup_free char *ci = NULL;
		size_t cl = 0;
		if (uname(&u) == 0)
			EVP_DigestUpdate(c, u.release, strlen(u.release) + 1);
		if (read_small_file("/proc/cpuinfo", 4 << 20, &ci, &cl) == 0) {
			char *end = strstr(ci, "\n\n"); /* the first CPU's lines */
			EVP_DigestUpdate(c, ci, end ? (size_t)(end - ci) : cl);
		}
	}
	const char *cfg = json_object_to_json_string_ext(vm->warm.serving,
							 JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	EVP_DigestUpdate(c, "config ", 7);
	EVP_DigestUpdate(c, cfg, strlen(cfg));
	int ok = EVP_DigestFinal_ex(c, d, &n);
	EVP_MD_CTX_free(c);
	if (!ok || n != 32)
		return -EINVAL;
	hex_digest(d, 32, vm->warm.key);
	return 0;
}

/* ---- may this run start warm? ------------------------------------------------------------ */

int warm_prepare(struct vm *vm, const char *config, size_t len)
{
	const char *why = NULL;
	if (!vm->jailed)
		/* QEMU as the caller's own uid could rewrite what later runs restore */
		why = "QEMU is not jailed (not root): a saved VM would be writable by it";
	else if (vm->nvols)
		why = "it has volumes (QEMU cannot save a VM with a virtiofs device)";
	else if (arg.net_user || arg.netns || vm->net.on)
		/* asked for, whatever comes of it: the namespace's interface is
		 * only looked at later (netns_start), and its address is the plan's */
		why = "it has a network";
	if (why) {
		log_debug("cold start: %s", why);
		return 0;
	}
	struct json_tokener *tok = json_tokener_new_ex(64);
	struct json_object *cfg = tok ? json_tokener_parse_ex(tok, config, (int)len) : NULL;
	if (tok)
		json_tokener_free(tok);
	struct json_object *spec = cfg ? first_command_spec(cfg, arg.tty, 24, 80) : NULL, *proc, *args;
	size_t n = spec ? strlen(json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN)) : 0;
	json_object_put(spec);
	/* a sandbox may have no first command: the config serves */
	bool serving = cfg && !spec && arg.detach && json_object_object_get_ex(cfg, "process", &proc) &&
		       json_object_object_get_ex(proc, "args", &args) && json_object_array_length(args) == 2 &&
		       !strcmp(json_object_get_string(json_object_array_get_idx(args, 1)), CONTAINER_INIT_SERVE);
	if ((!spec && !serving) || n + 64 > FRAME_DATA_MAX) {
		json_object_put(cfg);
		log_debug("cold start: %s", spec ? "the command and its environment are over 64 KiB"
						 : "the config's process is not oci-spec --init's");
		return 0;
	}
	config_make_serving(cfg);
	vm->warm.serving = cfg;
	vm->warm.mode = WARM_WANTED;
	return 0;
}

/* ---- restore ------------------------------------------------------------------------------ */

static int open_warm_dir(struct vm *vm, bool create)
{
	if (create && mkdirat(vm->homefd, WARM_DIR, 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(vm->homefd, WARM_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* The state of the key, checked against its record: size and digest are
 * the meta's, the file must be a regular file of that size, root's. */
static int lookup(struct vm *vm)
{
	struct warm *w = &vm->warm;
	cleanup_close int wd = open_warm_dir(vm, false);
	if (wd < 0)
		return wd;
	cleanup_close int kd = openat(wd, w->key, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat kst;
	if (kd < 0 || fstat(kd, &kst) < 0)
		return -errno;
	/* what a damaged one is: the directory, dropped by warm_discard */
	w->dev = kst.st_dev;
	w->ino = kst.st_ino;
	cleanup_close int mfd = openat(kd, WARM_META, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	char text[1024];
	ssize_t n = mfd >= 0 ? read(mfd, text, sizeof(text) - 1) : -1;
	if (n <= 0)
		return -EBADMSG;
	text[n] = 0;
	cleanup_json struct json_object *m = json_tokener_parse(text);
	struct json_object *v;
	const char *dg = m && json_object_object_get_ex(m, "sha256", &v) ? json_object_get_string(v) : NULL;
	if (!dg || strlen(dg) != 64 || !json_object_object_get_ex(m, "size", &v))
		return -EBADMSG;
	w->size = (off_t)json_object_get_int64(v);
	for (int i = 0; i < 32; i++) {
		unsigned x;
		if (sscanf(dg + 2 * i, "%2x", &x) != 1)
			return -EBADMSG;
		w->digest[i] = (unsigned char)x;
	}
	int fd = openat(kd, WARM_STATE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_size != w->size ||
	    w->size < (off_t)WARM_TAIL) {
		if (fd >= 0)
			close(fd);
		return -EBADMSG;
	}
	w->state_fd = fd;
	/* used now: the last to go when saved VMs are too many */
	utimensat(wd, w->key, NULL, AT_SYMLINK_NOFOLLOW);
	return 0;
}

static int write_all_fd(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		p = (const char *)p + k;
		n -= (size_t)k;
	}
	return 0;
}

/* The state into QEMU's pipe, read with pread (a file cut short under us
 * is a short read, never a SIGBUS), hashed on the way; the last WARM_TAIL
 * bytes go only once the whole file's digest matched its record. */
static void *feeder(void *p)
{
	struct warm *w = p;
	size_t size = (size_t)w->size, body = size - WARM_TAIL, off = 0;
	unsigned char d[32], *buf = malloc(1u << 20), *tail = malloc(WARM_TAIL);
	unsigned n = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	w->feed_result = -ENOMEM;
	if (!c || !buf || !tail || !EVP_DigestInit_ex(c, EVP_sha256(), NULL))
		goto out;
	posix_fadvise(w->state_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	while (off < size) {
		size_t want = off < body ? (body - off < (1u << 20) ? body - off : (1u << 20)) : size - off;
		unsigned char *into = off < body ? buf : tail;
		ssize_t k = pread(w->state_fd, into, want, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0 || (off >= body && (size_t)k != want)) {
			w->feed_result = -EBADMSG; /* shorter than its record */
			goto out;
		}
		EVP_DigestUpdate(c, into, (size_t)k);
		if (off < body && write_all_fd(w->feed_fd, into, (size_t)k) < 0) {
			w->feed_result = -EPIPE; /* QEMU is gone */
			goto out;
		}
		off += (size_t)k;
	}
	/* the whole file is hashed before its last bytes go: QEMU never has a
	 * complete stream of a state that does not match its record */
	if (!EVP_DigestFinal_ex(c, d, &n) || n != 32 || memcmp(d, w->digest, 32)) {
		w->feed_result = -EBADMSG;
		goto out;
	}
	w->feed_result = write_all_fd(w->feed_fd, tail, WARM_TAIL) < 0 ? -EPIPE : 0;
out:
	EVP_MD_CTX_free(c);
	free(buf);
	free(tail);
	close(w->feed_fd);
	w->feed_fd = -1;
	return NULL;
}

int warm_choose(struct vm *vm, char *const *argv, int argc)
{
	struct warm *w = &vm->warm;
	int r = warm_key(vm, argv, argc);
	if (r < 0)
		return r;
	r = lookup(vm);
	if (r == 0) {
		w->mode = WARM_RESTORE;
		int p[2];
		if (pipe2(p, O_CLOEXEC) < 0)
			return -errno;
		fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE);
		w->qemu_in = p[0];
		w->feed_fd = p[1];
		log_debug("warm start: restoring %s/%s/%s (%lld bytes)", vm->home, WARM_DIR, w->key,
			  (long long)w->size);
		return 0;
	}
	if (r != -ENOENT) {
		log_warn("the saved VM %s/%s/%s is damaged: booting cold, and saving it again", vm->home, WARM_DIR,
			 w->key);
		warm_discard(vm);
	} else
		log_debug("warm start: no saved VM for this key yet: booting cold, and saving it (%s)", w->key);
	w->mode = WARM_BUILD;
	int q[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, q) < 0)
		return -errno;
	w->qmp = q[0];
	w->qmp_qemu = q[1];
	return 0;
}

int warm_feed_start(struct vm *vm)
{
	struct warm *w = &vm->warm;
	if (pthread_create(&w->feeder, NULL, feeder, w) != 0) {
		close(w->feed_fd);
		w->feed_fd = -1;
		return -EAGAIN;
	}
	w->feeding = true;
	return 0;
}

int warm_feed_result(struct vm *vm)
{
	struct warm *w = &vm->warm;
	if (w->feeding) {
		pthread_join(w->feeder, NULL);
		w->feeding = false;
	}
	return w->feed_result;
}

static void drop(struct vm *vm, int wd, const char *name);

/* Drop the key's state, if it is still the one we opened (a new one made
 * meanwhile stays). */
void warm_discard(struct vm *vm)
{
	struct warm *w = &vm->warm;
	cleanup_close int wd = open_warm_dir(vm, false);
	if (wd < 0)
		return;
	struct stat st;
	if (fstatat(wd, w->key, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != w->dev || st.st_ino != w->ino)
		return;
	drop(vm, wd, w->key);
}

void warm_close(struct vm *vm)
{
	struct warm *w = &vm->warm;
	warm_feed_result(vm);
	int *fds[] = { &w->state_fd, &w->qemu_in, &w->feed_fd, &w->qmp, &w->qmp_qemu };
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
}

/* ---- save ----------------------------------------------------------------------------------- */

struct qmp {
	int fd;
	char buf[QMP_LINE_MAX];
	size_t len;
};

static long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* What stops a save: a signal (INT, TERM, HUP: *sig) or the run's timeout
 * (-ETIME), checked whenever we wait. */
struct stops {
	int sfd, tfd, *sig;
	long deadline;
	bool child; /* a SIGCHLD was taken off the signalfd: the relay must see it */
};

static int check_stops(struct stops *s, const struct pollfd *pf)
{
	if (pf[0].revents) {
		struct signalfd_siginfo si;
		while (read(s->sfd, &si, sizeof(si)) == sizeof(si))
			if (si.ssi_signo != SIGCHLD && si.ssi_signo != SIGWINCH) {
				*s->sig = (int)si.ssi_signo;
				return -EINTR;
			} else if (si.ssi_signo == SIGCHLD)
				s->child = true; /* QEMU may be gone: the relay reaps it */
	}
	if (pf[1].revents)
		return -ETIME;
	if (now_ms() > s->deadline)
		return -ETIMEDOUT;
	return 0;
}

/* Wait (in 100 ms steps) until fd is readable (1) or not yet (0); a stop
 * (check_stops) or a failed poll is < 0. fd -1 is never readable. */
static int wait_readable(struct stops *s, int fd)
{
	struct pollfd pf[3] = { { s->sfd, POLLIN, 0 }, { s->tfd, POLLIN, 0 }, { fd, POLLIN, 0 } };
	if (poll(pf, 3, 100) < 0 && errno != EINTR)
		return -errno;
	int r = check_stops(s, pf);
	return r < 0 ? r : pf[2].revents != 0;
}

/* One line from QEMU's monitor (events are skipped by the caller). */
static int qmp_line(struct qmp *q, struct stops *s, struct json_object **out)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		if (nl) {
			*nl = 0;
			*out = json_tokener_parse(q->buf);
			size_t used = (size_t)(nl - q->buf) + 1;
			memmove(q->buf, q->buf + used, q->len - used);
			q->len -= used;
			return *out ? 0 : -EBADMSG;
		}
		if (q->len == sizeof(q->buf))
			return -E2BIG;
		int r = wait_readable(s, q->fd);
		if (r < 0)
			return r;
		if (!r)
			continue;
		ssize_t n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (n == 0)
			return -EPIPE;
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
		if (n > 0)
			q->len += (size_t)n;
	}
}

/* A command and its answer: 0, or -EIO with QEMU's error in err. */
static int qmp_cmd(struct qmp *q, struct stops *s, const char *cmd, int fd, char *err, size_t errlen,
		   struct json_object **ret)
{
	int r = send_with_fd(q->fd, cmd, strlen(cmd), fd);
	if (r < 0)
		return r;
	for (;;) {
		struct json_object *o = NULL, *v;
		if ((r = qmp_line(q, s, &o)) < 0)
			return r;
		if (json_object_object_get_ex(o, "event", &v)) {
			json_object_put(o);
			continue;
		}
		if (json_object_object_get_ex(o, "error", &v)) {
			struct json_object *d;
			snprintf(err, errlen, "%s",
				 json_object_object_get_ex(v, "desc", &d) ? json_object_get_string(d) : "an error");
			json_object_put(o);
			return -EIO;
		}
		if (ret && json_object_object_get_ex(o, "return", &v))
			*ret = json_object_get(v);
		json_object_put(o);
		return 0;
	}
}

/* The migration stream from pipe rfd into fd, hashed, at most max bytes. */
static int take_stream(int rfd, int fd, size_t max, struct stops *s, EVP_MD_CTX *c, size_t *total)
{
	static unsigned char buf[1 << 20];
	/* test builds: a save that never ends (QEMU blocked on a full pipe),
	 * to show that a signal still stops it at once */
	bool stall = test_getenv("BOXKIT_TEST_SAVE_STALL") != NULL;
	*total = 0;
	for (;;) {
		int r = wait_readable(s, stall ? -1 : rfd);
		if (r < 0)
			return r;
		if (!r)
			continue;
		ssize_t n = read(rfd, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		if (*total + (size_t)n > max)
			return -EFBIG;
		EVP_DigestUpdate(c, buf, (size_t)n);
		if ((r = write_all_fd(fd, buf, (size_t)n)) < 0)
			return r;
		*total += (size_t)n;
	}
}

static int save_into(struct vm *vm, struct qmp *q, struct stops *s, int wd, const char *tmp, char *err, size_t errlen)
{
	struct warm *w = &vm->warm;
	int r;
	struct json_object *o = NULL;
	/* the greeting, then the capabilities handshake */
	if ((r = qmp_line(q, s, &o)) < 0)
		return snprintf(err, errlen, "no greeting from QEMU's monitor"), r;
	json_object_put(o);
	/* the VM is not stopped first: the stream records the state the VM
	 * was in, and a copy of a running one runs as soon as it is loaded (the
	 * guest waits for the host, so the pass over its memory is one) */
	if ((r = qmp_cmd(q, s, "{\"execute\":\"qmp_capabilities\"}", -1, err, errlen, NULL)) < 0 ||
	    (r = qmp_cmd(q, s,
			 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":1099511627776}}", -1,
			 err, errlen, NULL)) < 0)
		return r;
	cleanup_close int kd = openat(wd, tmp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	cleanup_close int sfd =
		kd < 0 ? -1 : openat(kd, WARM_STATE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (sfd < 0)
		return snprintf(err, errlen, "cannot create the state file"), -errno;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	fcntl(p[0], F_SETPIPE_SZ, PIPE_SIZE);
	cleanup_close int rfd = p[0];
	r = qmp_cmd(q, s, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"warm\"}}", p[1], err, errlen, NULL);
	close(p[1]); /* QEMU's now: our copy goes, so its close is the stream's end */
	if (r < 0)
		return r;
	if ((r = qmp_cmd(q, s, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"fd:warm\"}}", -1, err, errlen,
			 NULL)) < 0)
		return r;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(c);
		return -ENOMEM;
	}
	size_t total = 0, max = (size_t)arg.memory * (1u << 20) + WARM_SLACK;
	r = take_stream(rfd, sfd, max, s, c, &total);
	unsigned char d[32];
	unsigned dn = 0;
	if (r == 0 && (!EVP_DigestFinal_ex(c, d, &dn) || dn != 32))
		r = -EINVAL;
	EVP_MD_CTX_free(c);
	if (r < 0)
		return snprintf(err, errlen, "the migration stream: %s", strerror(-r)), r;
	/* the stream ended: the migration must say it completed */
	for (int tries = 0;; tries++) {
		struct json_object *ret = NULL, *st;
		if ((r = qmp_cmd(q, s, "{\"execute\":\"query-migrate\"}", -1, err, errlen, &ret)) < 0)
			return r;
		const char *status = json_object_object_get_ex(ret, "status", &st) ? json_object_get_string(st) : "";
		bool done = !strcmp(status, "completed"), failed = !strcmp(status, "failed");
		json_object_put(ret);
		if (done)
			break;
		if (failed || tries > 200)
			return snprintf(err, errlen, "the migration did not complete (%s)", status), -EIO;
		usleep(5000);
	}
	if (total < WARM_TAIL)
		return snprintf(err, errlen, "the migration stream is too short"), -EIO;
	if (fsync(sfd) < 0)
		return -errno;
	char hex[65], meta[512];
	hex_digest(d, 32, hex);
	int mn = snprintf(
		meta, sizeof(meta),
		"{\"format\":%d,\"size\":%zu,\"sha256\":\"%s\",\"memory_mib\":%ld,\"cpus\":%ld,\"created\":%lld}\n",
		WARM_FORMAT, total, hex, arg.memory, arg.cpus, (long long)time(NULL));
	if ((r = write_file_atomic(kd, WARM_META, meta, (size_t)mn, 0600)) < 0)
		return r;
	w->saved_size = total;
	return 0;
}

/* At most WARM_KEEP saved VMs (the least recently used go), and nothing
 * left of a save or a removal that a killed vm-launch left behind. */
struct used {
	char name[65];
	time_t at;
};
static int newest_first(const void *a, const void *b)
{
	const struct used *x = a, *y = b;
	return (x->at < y->at) - (x->at > y->at);
}

static void drop(struct vm *vm, int wd, const char *name)
{
	char old[64], hex[17];
	if (random_hex(hex, 8) < 0)
		return;
	snprintf(old, sizeof(old), ".old-%s", hex);
	if (renameat(wd, name, wd, old) == 0 && rm_tree_at(wd, old) < 0)
		log_warn("cannot remove '%s/%s/%s'", vm->home, WARM_DIR, old);
}

static void tidy(struct vm *vm, int wd)
{
	static struct used keys[1024];
	size_t n = 0;
	int fd = openat(wd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	time_t now = time(NULL);
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d))) {
		struct stat st;
		if (fstatat(wd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (!strncmp(e->d_name, ".new-", 5) || !strncmp(e->d_name, ".old-", 5)) {
			if (now - st.st_mtime > WARM_STALE_S && rm_tree_at(wd, e->d_name) < 0)
				log_warn("cannot remove '%s/%s/%s'", vm->home, WARM_DIR, e->d_name);
		} else if (strlen(e->d_name) == 64 && n < ARRAY_SIZE(keys)) {
			memcpy(keys[n].name, e->d_name, sizeof(keys[n].name)); /* 64 characters and the NUL */
			keys[n++].at = st.st_mtime;
		}
	}
	closedir(d);
	qsort(keys, n, sizeof(keys[0]), newest_first);
	for (size_t i = WARM_KEEP; i < n; i++)
		drop(vm, wd, keys[i].name);
}

int warm_save(struct vm *vm, int sfd, int tfd, int *sig, bool resume)
{
	struct warm *w = &vm->warm;
	struct qmp *q = calloc(1, sizeof(*q));
	struct stops s = { sfd, tfd, sig, now_ms() + SAVE_DEADLINE_MS, false };
	char err[512] = "", tmp[64], hex[17];
	double t0 = vm_elapsed(vm);
	if (!q)
		return -ENOMEM;
	q->fd = w->qmp;
	cleanup_close int wd = open_warm_dir(vm, true);
	int r = wd < 0 ? wd : random_hex(hex, 8);
	if (r >= 0) {
		snprintf(tmp, sizeof(tmp), ".new-%s", hex);
		r = mkdirat(wd, tmp, 0700) < 0 ? -errno : 0;
	}
	if (r >= 0) {
		r = save_into(vm, q, &s, wd, tmp, err, sizeof(err));
		if (r == 0 && renameat(wd, tmp, wd, w->key) < 0) {
			if (errno != EEXIST && errno != ENOTEMPTY)
				r = -errno;
			/* another run of the same key saved first: its copy is as good */
			if (rm_tree_at(wd, tmp) < 0)
				log_warn("cannot remove '%s/%s/%s'", vm->home, WARM_DIR, tmp);
		} else if (r < 0 && rm_tree_at(wd, tmp) < 0)
			log_warn("cannot remove '%s/%s/%s'", vm->home, WARM_DIR, tmp);
		if (r == 0) {
			int dfd = openat(wd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (dfd >= 0) {
				fsync(dfd);
				close(dfd);
			}
			tidy(vm, wd);
		}
	}
	if (r == 0)
		log_debug("warm start: saved %zu bytes in %.3f s as %s/%s/%s", w->saved_size, vm_elapsed(vm) - t0,
			  vm->home, WARM_DIR, w->key);
	else if (r != -EINTR && r != -ETIME)
		log_warn("cannot save the VM for warm starts: %s%s%s", err, err[0] ? ": " : "", strerror(-r));
	/* the VM goes on as this run's (a failed migration leaves it stopped) */
	if (resume && r != -EINTR && r != -ETIME) {
		char e2[256];
		s.deadline = now_ms() + 10000;
		int k = qmp_cmd(q, &s, "{\"execute\":\"cont\"}", -1, e2, sizeof(e2), NULL);
		if (k < 0) {
			log_error("cannot continue the VM after saving it: %s", k == -EIO ? e2 : strerror(-k));
			r = k;
		} else
			r = 0;
	}
	free(q);
	/* the SIGCHLDs taken here go back to the relay's signalfd */
	if (s.child)
		kill(getpid(), SIGCHLD);
	/* QEMU's monitor is not needed again: nothing of it stays open */
	close(w->qmp);
	w->qmp = -1;
	return r;
}
