/* SPDX-License-Identifier: MIT */
/* boxkit-init: PID 1 inside the VM. Mounts the basics, takes its plan
 * (config.json, volumes) from the host over the boxkit.ctl virtio-serial
 * port, puts the workload's rootfs (read-only drive + tmpfs overlay) under
 * a bundle, runs crun, relays stdio, reports the exit status and reboots
 * (reboot=t + QEMU -no-reboot: QEMU exits). Never hangs: every failure is a
 * message on the console and an FR_FAIL frame, then the VM leaves. */
#include "guest-abi.h"

#include <json-c/json.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define RUN GUEST_RUN_DIR
#define BUNDLE GUEST_BUNDLE
#define CRUN "/usr/bin/crun"
#define ROOTFS_DEV "/dev/vdb"

static int ctl = -1;
static char *plan_config;

/* write all of a buffer to the (blocking or not) control port */
static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pf = { fd, POLLOUT, 0 };
				poll(&pf, 1, 1000);
				continue;
			}
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* one frame, written at once (only before and after the loop) */
static int send_frame(char type, uint32_t stream, const void *data, uint32_t len)
{
	unsigned char h[FRAME_HDR];
	h[0] = (unsigned char)type;
	le32_put(h + 1, stream);
	le32_put(h + 5, len);
	int r = write_all(ctl, h, sizeof(h));
	return r < 0 || !len ? r : write_all(ctl, data, len);
}

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void leave(void) __attribute__((noreturn));
static void leave(void)
{
	sync();
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

static void die(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "boxkit-init: error: %s\n", msg);
	if (ctl >= 0)
		send_frame(FR_FAIL, 0, msg, (uint32_t)strlen(msg));
	leave();
}

static void mnt(const char *src, const char *dst, const char *type, unsigned long flags, const char *data)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
		die("mount %s on %s: %s", type ? type : src, dst, strerror(errno));
}

static void mkdir_p(const char *path)
{
	char p[512];
	snprintf(p, sizeof(p), "%s", path);
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			mkdir(p, 0755);
			*s = '/';
		}
	mkdir(p, 0755);
}

static int open_ctl_port(void)
{
	/* find the port by its name: /sys/class/virtio-ports/vportNpM/name */
	for (int tries = 0; tries < 200; tries++) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char path[300], name[64] = { 0 };
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			ssize_t n = read(fd, name, sizeof(name) - 1);
			close(fd);
			if (n > 0 && name[n - 1] == '\n')
				name[n - 1] = 0;
			if (strcmp(name, FRAME_PORT_NAME) == 0) {
				snprintf(path, sizeof(path), "/dev/%s", e->d_name);
				closedir(d);
				fd = open(path, O_RDWR | O_CLOEXEC);
				if (fd < 0)
					die("open %s: %s", path, strerror(errno));
				return fd;
			}
		}
		if (d)
			closedir(d);
		usleep(10000);
	}
	die("no virtio-serial port named %s", FRAME_PORT_NAME);
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write_all(fd, data, len) < 0)
		die("write %s: %s", path, strerror(errno));
	close(fd);
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* A virtiofs share: directories at GUEST_VOLUME_DIR/TAG; a single file's
 * staging share is mounted at a private point, the file bound at
 * GUEST_FILE_DIR/TAG, then the share is detached and the point removed, so
 * nothing else of it is reachable in the guest. */
static void mount_volume(struct json_object *v)
{
	const char *tag = jstr(v, "tag"), *type = jstr(v, "type"), *name = jstr(v, "file");
	struct json_object *rov;
	char dst[256], stage[256], file[512];
	unsigned long flags = MS_NOSUID | MS_NODEV;

	if (!tag || !type || !guest_tag_valid(tag, strlen(tag)))
		die("bad volume in the plan");
	if (json_object_object_get_ex(v, "readonly", &rov) && json_object_get_boolean(rov))
		flags |= MS_RDONLY;
	if (!strcmp(type, "directory")) {
		snprintf(dst, sizeof(dst), GUEST_VOLUME_DIR "/%s", tag);
		mkdir_p(dst);
		if (mount(tag, dst, "virtiofs", flags, NULL) < 0)
			die("mount virtiofs %s: %s", tag, strerror(errno));
		return;
	}
	if (strcmp(type, "file") || !name || !*name || strlen(name) > 255 || strchr(name, '/') || !strcmp(name, "..") ||
	    !strcmp(name, "."))
		die("bad file volume in the plan");
	snprintf(stage, sizeof(stage), RUN "/stage-%s", tag);
	mkdir_p(RUN);
	mkdir(stage, 0700);
	if (mount(tag, stage, "virtiofs", flags, NULL) < 0)
		die("mount virtiofs %s: %s", tag, strerror(errno));
	snprintf(dst, sizeof(dst), GUEST_FILE_DIR "/%s", tag);
	mkdir_p(GUEST_FILE_DIR);
	int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		die("create %s: %s", dst, strerror(errno));
	close(fd);
	snprintf(file, sizeof(file), "%s/%s", stage, name);
	if (mount(file, dst, NULL, MS_BIND, NULL) < 0)
		die("bind %s: %s", file, strerror(errno));
	if ((flags & MS_RDONLY) &&
	    mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
		die("remount %s read-only: %s", dst, strerror(errno));
	if (umount2(stage, MNT_DETACH) < 0)
		die("detach %s: %s", stage, strerror(errno));
	rmdir(stage);
}

/* The plan: one JSON frame. Its version must be ours. */
static void take_plan(const unsigned char *p, uint32_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(64);
	struct json_object *plan = tok ? json_tokener_parse_ex(tok, (const char *)p, (int)len) : NULL;
	struct json_object *v, *cfg, *vols;
	if (tok)
		json_tokener_free(tok);
	if (!plan || !json_object_is_type(plan, json_type_object))
		die("the plan is not a JSON object");
	if (!json_object_object_get_ex(plan, "version", &v) || json_object_get_int(v) != GUEST_PLAN_VERSION)
		die("this guest init reads plan version %d; the host sent version %s (rebuild the images with 'make "
		    "image', "
		    "or use the matching vm-launch)",
		    GUEST_PLAN_VERSION, v ? json_object_to_json_string(v) : "none");
	if (!json_object_object_get_ex(plan, "config", &cfg) || !json_object_is_type(cfg, json_type_object))
		die("the plan has no config");
	if (json_object_object_get_ex(plan, "volumes", &vols)) {
		if (!json_object_is_type(vols, json_type_array))
			die("the plan's volumes are not a list");
		for (size_t i = 0; i < json_object_array_length(vols); i++)
			mount_volume(json_object_array_get_idx(vols, i));
	}
	const char *t = json_object_to_json_string_ext(cfg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	plan_config = strdup(t ? t : "");
	json_object_put(plan);
}

/* The container's PID 1 (oci-spec --init binds this binary in as
 * /.boxkit/init): the workload is its child, so signals reach it with their
 * default actions (a PID 1 ignores them), its status is reported as the shell
 * would (128+N for signal N), and a command that cannot run gives 126 or 127. */
static volatile pid_t workload = -1;
static void forward(int sig)
{
	if (workload > 0)
		kill(workload, sig);
}

static int container_init(int argc, char **argv)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };
	struct sigaction sa = { .sa_handler = forward };
	if (argc < 3) {
		fprintf(stderr, "boxkit-init: error: --workload needs a command\n");
		return 125;
	}
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "boxkit-init: error: fork: %s\n", strerror(errno));
		return 125;
	}
	if (pid == 0) {
		struct sigaction dfl = { .sa_handler = SIG_DFL };
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			sigaction(sigs[i], &dfl, NULL);
		execvp(argv[2], argv + 2);
		int e = errno;
		if (e == ENOENT) {
			fprintf(stderr, "box: %s: command not found\n", argv[2]);
			_exit(127);
		}
		fprintf(stderr, "box: %s: cannot execute: %s\n", argv[2], strerror(e));
		_exit(126);
	}
	workload = pid;
	for (;;) {
		int st;
		pid_t w = waitpid(-1, &st, 0);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return 125;
		if (w == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
}

/* ---- the relay: one event loop, a state table ------------------------------------------ */

#define OUT_CAP (4 * (FRAME_HDR + FRAME_DATA_MAX))
#define IN_CAP (FRAME_HDR + FRAME_DATA_MAX)
#define DRAIN_MS 2000 /* after crun: a grandchild holding the pipes must not keep us */

enum gstate { G_RUNNING, G_DRAINING, G_DONE };
enum gevent { GE_CHILD_EXIT, GE_PIPES_EOF, GE_DEADLINE, GE_HOST_GONE };
static const char *const gstate_name[] = { "running", "draining", "done" };

struct grelay {
	enum gstate state;
	pid_t child;
	int status;
	int out[2];  /* the workload's stdout, stderr (read ends) */
	int in;	     /* its stdin (write end) */
	bool in_eof; /* STDIN_EOF came: close once pend_in is written */
	struct fbuf rx, tx, pend_in;
	uint32_t credit; /* stdin bytes written, not yet granted back */
	int sfd;
	struct timespec deadline;
};

static void gact_none(struct grelay *g)
{
	(void)g;
}
static void gact_drain(struct grelay *g)
{
	clock_gettime(CLOCK_MONOTONIC, &g->deadline);
	g->deadline.tv_sec += DRAIN_MS / 1000;
}
static void gact_kill(struct grelay *g)
{
	if (g->child > 0)
		kill(g->child, SIGKILL);
}

static const struct gtransition {
	enum gstate from;
	enum gevent ev;
	void (*act)(struct grelay *);
	enum gstate to;
} gtransitions[] = {
	{ G_RUNNING, GE_CHILD_EXIT, gact_drain, G_DRAINING }, { G_RUNNING, GE_HOST_GONE, gact_kill, G_DONE },
	{ G_DRAINING, GE_PIPES_EOF, gact_none, G_DONE },      { G_DRAINING, GE_DEADLINE, gact_none, G_DONE },
	{ G_DRAINING, GE_HOST_GONE, gact_none, G_DONE },
};

static void gfire(struct grelay *g, enum gevent ev)
{
	for (size_t i = 0; i < sizeof(gtransitions) / sizeof(gtransitions[0]); i++)
		if (gtransitions[i].from == g->state && gtransitions[i].ev == ev) {
			g->state = gtransitions[i].to;
			gtransitions[i].act(g);
			(void)gstate_name;
			return;
		}
}

static void g_frames(struct grelay *g)
{
	struct frame f;
	int k;
	while ((k = frame_peek(&g->rx, FRAME_DATA_MAX, &f)) == 1) {
		switch (f.type) {
		case FR_STDIN:
			/* never beyond the window we granted: the buffer is the window */
			if (fbuf_room(&g->pend_in) < f.len)
				die("the host sent stdin beyond its window");
			if (g->in >= 0 && !g->in_eof) {
				memcpy(g->pend_in.data + g->pend_in.len, f.payload, f.len);
				g->pend_in.len += f.len;
			} else
				g->credit += f.len; /* nobody reads it: give the window back */
			break;
		case FR_STDIN_EOF: g->in_eof = true; break;
		case FR_SIGNAL:
			if (f.len == 4 && g->child > 0 && le32_get(f.payload) > 0 && le32_get(f.payload) < 65)
				kill(g->child, (int)le32_get(f.payload));
			break;
		case FR_WINSIZE: break; /* a terminal comes with exec; nothing to size yet */
		default: die("unknown frame '%c' from the host", f.type);
		}
		fbuf_consume(&g->rx, FRAME_HDR + f.len);
	}
	if (k < 0)
		die("a frame from the host is too large");
}

static void g_loop(struct grelay *g)
{
	while (g->state != G_DONE) {
		/* give the window back in batches */
		if (g->credit && (g->credit >= STDIN_WINDOW / 4 || !g->pend_in.len)) {
			unsigned char c[4];
			le32_put(c, g->credit);
			if (frame_put(&g->tx, FR_WINDOW, 0, c, 4) == 0)
				g->credit = 0;
		}
		if (g->in >= 0 && g->in_eof && !g->pend_in.len) {
			close(g->in);
			g->in = -1;
		}
		bool room = fbuf_room(&g->tx) >= FRAME_HDR + FRAME_DATA_MAX;
		struct pollfd pf[6] = {
			{ g->sfd, POLLIN, 0 },
			{ ctl, (short)((fbuf_room(&g->rx) ? POLLIN : 0) | (g->tx.len ? POLLOUT : 0)), 0 },
			{ room ? g->out[0] : -1, POLLIN, 0 },
			{ room ? g->out[1] : -1, POLLIN, 0 },
			{ g->pend_in.len ? g->in : -1, POLLOUT, 0 },
		};
		int timeout = -1;
		/* the drain deadline counts only while the pipes are being read: a
		 * slow host (a full tx) is no reason to drop the workload's output */
		if (g->state == G_DRAINING && !room)
			gact_drain(g);
		if (g->state == G_DRAINING) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			long ms = (g->deadline.tv_sec - now.tv_sec) * 1000 +
				  (g->deadline.tv_nsec - now.tv_nsec) / 1000000;
			if (ms <= 0) {
				gfire(g, GE_DEADLINE);
				continue;
			}
			timeout = (int)ms;
		}
		if (poll(pf, 5, timeout) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (pf[0].revents) {
			struct signalfd_siginfo si;
			while (read(g->sfd, &si, sizeof(si)) == sizeof(si)) {
			}
			int st;
			pid_t w;
			while ((w = waitpid(-1, &st, WNOHANG)) > 0)
				if (w == g->child) {
					g->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
					g->child = -1;
					gfire(g, GE_CHILD_EXIT);
				}
		}
		if (pf[1].revents & POLLOUT) {
			ssize_t n = write(ctl, g->tx.data, g->tx.len);
			if (n > 0)
				fbuf_consume(&g->tx, (size_t)n);
		}
		if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(ctl, g->rx.data + g->rx.len, fbuf_room(&g->rx));
			if (n > 0) {
				g->rx.len += (size_t)n;
				g_frames(g);
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR))
				gfire(g, GE_HOST_GONE);
		}
		for (int i = 0; i < 2; i++) {
			if (!pf[2 + i].revents)
				continue;
			unsigned char buf[FRAME_DATA_MAX];
			ssize_t n = read(g->out[i], buf, sizeof(buf));
			if (n > 0) {
				frame_put(&g->tx, i == 0 ? FR_STDOUT : FR_STDERR, 0, buf, (uint32_t)n);
				if (g->state == G_DRAINING)
					gact_drain(g); /* output still coming: give it time */
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(g->out[i]);
				g->out[i] = -1;
			}
		}
		if (pf[4].revents) {
			ssize_t n = write(g->in, g->pend_in.data, g->pend_in.len);
			if (n > 0) {
				fbuf_consume(&g->pend_in, (size_t)n);
				g->credit += (uint32_t)n;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				/* the workload closed its stdin: drop what it will never read */
				g->credit += (uint32_t)g->pend_in.len;
				g->pend_in.len = 0;
				close(g->in);
				g->in = -1;
			}
		}
		if (g->state == G_DRAINING && g->out[0] < 0 && g->out[1] < 0)
			gfire(g, GE_PIPES_EOF);
	}
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--workload"))
		return container_init(argc, argv);
	int outp[2], errp[2], inp[2];
	sigset_t mask;

	if (getpid() != 1) {
		fprintf(stderr, "boxkit-init: error: must run as PID 1 inside a boxkit VM\n");
		return 1;
	}
	/* json-c's default string hash wants a random seed, and early in boot
	 * getrandom blocks until the kernel's pool is ready: a second under TCG.
	 * The plan comes from the host, so the unseeded hash is fine here. */
	json_global_set_string_hash(JSON_C_STR_HASH_PERLLIKE);
	mnt("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mnt("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mnt("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	mnt("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	mnt("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mnt("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "nsdelegate");
	/* stdio of init goes to the console (the host's console log) */
	int con = open("/dev/console", O_RDWR | O_NOCTTY);
	if (con >= 0) {
		dup2(con, 0);
		dup2(con, 1);
		dup2(con, 2);
		if (con > 2)
			close(con);
	}
	ctl = open_ctl_port();
	{
		char hello[64];
		int n = snprintf(hello, sizeof(hello), "{\"proto\":%d}", GUEST_PROTO_VERSION);
		if (send_frame(FR_HELLO, 0, hello, (uint32_t)n) < 0)
			die("write to the control port: %s", strerror(errno));
	}

	/* the plan: one frame */
	struct fbuf rx;
	if (fbuf_init(&rx, FRAME_HDR + FRAME_MAX) < 0)
		die("out of memory");
	for (;;) {
		struct frame f;
		int k = frame_peek(&rx, FRAME_MAX, &f);
		if (k < 0)
			die("the plan is larger than %u bytes", FRAME_MAX);
		if (k == 1) {
			if (f.type != FR_PLAN)
				die("the host sent '%c' before the plan", f.type);
			take_plan(f.payload, f.len);
			fbuf_consume(&rx, FRAME_HDR + f.len);
			break;
		}
		ssize_t n = read(ctl, rx.data + rx.len, fbuf_room(&rx));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("control port closed before the plan came");
		rx.len += (size_t)n;
	}

	/* the workload's rootfs: read-only drive + tmpfs overlay */
	mkdir_p(RUN "/lower");
	if (mount(ROOTFS_DEV, RUN "/lower", "ext4", MS_RDONLY | MS_NODEV, NULL) < 0)
		die("mount the rootfs drive %s: %s", ROOTFS_DEV, strerror(errno));
	mnt("tmpfs", RUN "/rw", "tmpfs", MS_NODEV, "mode=0755");
	mkdir(RUN "/rw/upper", 0755);
	mkdir(RUN "/rw/work", 0755);
	mkdir_p(BUNDLE "/rootfs");
	if (mount("overlay", BUNDLE "/rootfs", "overlay", 0,
		  "lowerdir=" RUN "/lower,upperdir=" RUN "/rw/upper,workdir=" RUN "/rw/work") < 0)
		die("mount the rootfs overlay: %s", strerror(errno));
	write_file(BUNDLE "/config.json", plan_config, strlen(plan_config));
	free(plan_config);

	/* children are reaped on SIGCHLD, through a signalfd */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(inp, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child < 0)
		die("fork: %s", strerror(errno));
	if (child == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(inp[0], 0);
		dup2(outp[1], 1);
		dup2(errp[1], 2);
		execl(CRUN, "crun", "--root", "/run/crun", "--cgroup-manager=cgroupfs", "run", "--bundle", BUNDLE,
		      "boxkit", (char *)NULL);
		fprintf(stderr, "boxkit-init: error: exec " CRUN ": %s\n", strerror(errno));
		_exit(125);
	}
	close(inp[0]);
	close(outp[1]);
	close(errp[1]);

	struct grelay g = {
		.state = G_RUNNING, .child = child, .status = -1, .out = { outp[0], errp[0] }, .in = inp[1], .rx = rx
	};
	g.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (g.sfd < 0 || fbuf_init(&g.tx, OUT_CAP) < 0 || fbuf_init(&g.pend_in, STDIN_WINDOW) < 0)
		die("cannot set up the relay: %s", strerror(errno));
	fcntl(ctl, F_SETFL, O_NONBLOCK);
	for (int i = 0; i < 2; i++)
		fcntl(g.out[i], F_SETFL, O_NONBLOCK);
	fcntl(g.in, F_SETFL, O_NONBLOCK);
	/* the first window: the host may send this much stdin */
	g.credit = STDIN_WINDOW;
	g_frames(&g); /* frames that came with the plan */
	g_loop(&g);

	/* the status, after every byte of output */
	unsigned char code[4];
	le32_put(code, (uint32_t)(g.status < 0 ? 125 : g.status));
	frame_put(&g.tx, FR_EXIT, 0, code, 4);
	/* blocking now: a write to the port returns once the host has taken the
	 * data, so nothing is lost in flight when the VM reboots next */
	fcntl(ctl, F_SETFL, 0);
	if (write_all(ctl, g.tx.data, g.tx.len) < 0)
		fprintf(stderr, "boxkit-init: error: cannot send the exit status: %s\n", strerror(errno));
	fsync(ctl);
	leave();
}
