/* SPDX-License-Identifier: MIT */
/* boxkit-init: PID 1 inside the VM. Mounts the basics, takes its plan
 * (config.json, volumes) from the host over the boxkit.ctl virtio-serial
 * port, puts the workload's rootfs (read-only drive + tmpfs overlay) under
 * a bundle, and runs crun once, with this same binary as the container's
 * init in serve mode (cinit.c). Every command (the config's first one, then
 * each exec) is a stream: the container init starts it, this relays its
 * stdio (pipes, or a pty made in the container) and reports its exit
 * status. In run mode the VM reboots (reboot=t + QEMU -no-reboot: QEMU
 * exits) once the first command is done; in keep mode when the host says
 * SHUTDOWN. Never hangs: every failure is a message on the console and an
 * FR_FAIL frame, then the VM leaves. */
#include "cinit.h"
#include "firstcmd.h"
#include "gnet.h"
#include "guest-abi.h"

#include <json-c/json.h>

#include <dirent.h>
#include <fcntl.h>
#include <linux/random.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#define RUN GUEST_RUN_DIR
#define BUNDLE GUEST_BUNDLE
#define CRUN "/usr/bin/crun"
#define ROOTFS_DEV "/dev/vdb"

static int ctl = -1;
static char *plan_config;
static struct fbuf tx; /* frames for the host, not yet written */

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
	if (ctl >= 0) {
		/* frames already queued go first: a half-written one would garble the FAIL */
		fcntl(ctl, F_SETFL, 0);
		if (tx.len)
			write_all(ctl, tx.data, tx.len);
		tx.len = 0;
		send_frame(FR_FAIL, 0, msg, (uint32_t)strlen(msg));
	}
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

/* ---- the plan ------------------------------------------------------------------------------ */

static bool keep;	 /* keep mode: up until SHUTDOWN */
static char *first_spec; /* the config's command, as an EXEC spec; NULL: none */
static bool plan_tty;
static int plan_rows, plan_cols;
static struct json_object *plan_net; /* the plan's "net", or NULL: no network */
static char *plan_hostname;
static struct json_object *plan_annotations; /* the config's: /etc files (CONFIG_ETC_PREFIX) */

static int jint(struct json_object *o, const char *key, int dflt)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_int) ? json_object_get_int(v)
											      : dflt;
}
static bool jbool(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

/* The config's process must be boxkit's container init (oci-spec --init):
 * it becomes the serving init, and the command after --workload becomes
 * stream 0, with the config's environment and working directory. */
static void take_process(struct json_object *cfg)
{
	struct json_object *proc, *args;
	if (!json_object_object_get_ex(cfg, "process", &proc) || !json_object_object_get_ex(proc, "args", &args) ||
	    !json_object_is_type(args, json_type_array) || json_object_array_length(args) < 2)
		die("the config has no process");
	const char *a0 = json_object_get_string(json_object_array_get_idx(args, 0));
	const char *a1 = json_object_get_string(json_object_array_get_idx(args, 1));
	if (!a0 || !a1 || strcmp(a0, CONTAINER_INIT))
		die("the config's process is not boxkit's container init (make it with oci-spec --init)");
	if (!strcmp(a1, CONTAINER_INIT_WORKLOAD)) {
		struct json_object *spec = first_command_spec(cfg, plan_tty, plan_rows, plan_cols);
		if (!spec)
			die("the config's process has no command");
		first_spec = strdup(json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN));
		json_object_put(spec);
	} else if (strcmp(a1, CONTAINER_INIT_SERVE))
		die("the container init's mode '%s' is unknown", a1);
	if (!first_spec && !keep)
		die("a run without a command");
	struct json_object *serve = json_object_new_array();
	json_object_array_add(serve, json_object_new_string(CONTAINER_INIT));
	json_object_array_add(serve, json_object_new_string(CONTAINER_INIT_SERVE));
	json_object_object_add(proc, "args", serve);
	json_object_object_add(proc, "terminal", json_object_new_boolean(0)); /* ptys are made per process */
}

static void add_entropy(const unsigned char *b, size_t n);

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
		    "image', or use the matching vm-launch)",
		    GUEST_PLAN_VERSION, v ? json_object_to_json_string(v) : "none");
	if (!json_object_object_get_ex(plan, "config", &cfg) || !json_object_is_type(cfg, json_type_object))
		die("the plan has no config");
	keep = jbool(plan, "keep");
	const char *seed = jstr(plan, PLAN_SEED);
	if (seed && strlen(seed) == 2 * PLAN_SEED_BYTES) {
		unsigned char b[PLAN_SEED_BYTES];
		for (int i = 0; i < PLAN_SEED_BYTES; i++) {
			unsigned x;
			if (sscanf(seed + 2 * i, "%2x", &x) != 1)
				die("the plan's seed is not hex");
			b[i] = (unsigned char)x;
		}
		add_entropy(b, sizeof(b));
		explicit_bzero(b, sizeof(b));
	}
	plan_tty = jbool(plan, "tty");
	plan_rows = jint(plan, "rows", 24);
	plan_cols = jint(plan, "cols", 80);
	if (json_object_object_get_ex(plan, "volumes", &vols)) {
		if (!json_object_is_type(vols, json_type_array))
			die("the plan's volumes are not a list");
		for (size_t i = 0; i < json_object_array_length(vols); i++)
			mount_volume(json_object_array_get_idx(vols, i));
	}
	if (json_object_object_get_ex(plan, PLAN_NET, &v) && json_object_is_type(v, json_type_object))
		plan_net = json_object_get(v);
	if (json_object_object_get_ex(cfg, "hostname", &v) && json_object_is_type(v, json_type_string))
		plan_hostname = strdup(json_object_get_string(v));
	if (json_object_object_get_ex(cfg, "annotations", &v) && json_object_is_type(v, json_type_object))
		plan_annotations = json_object_get(v);
	take_process(cfg);
	const char *t = json_object_to_json_string_ext(cfg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	plan_config = strdup(t ? t : "");
	json_object_put(plan);
}

/* The container's PID 1 in workload mode (a config made with oci-spec --init
 * and run by a runtime directly, not by the guest init): the workload is its
 * child, so signals reach it with their default actions (a PID 1 ignores
 * them), its status is reported as the shell would (128+N for signal N), and
 * a command that cannot run gives 126 or 127. */
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
		fprintf(stderr, "boxkit-init: error: " CONTAINER_INIT_WORKLOAD " needs a command\n");
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

/* ---- the relay: one event loop over every stream ---------------------------------------- */

#define OUT_CAP (4 * (FRAME_HDR + FRAME_DATA_MAX) + CTRL_RESERVE)
#define CTRL_RESERVE (16 * 1024) /* room kept for WINDOW, EXIT, FAIL frames */
#define IN_CAP (FRAME_HDR + FRAME_DATA_MAX)
#define DRAIN_MS 2000	    /* after a process: a grandchild holding its pipes must not keep it */
#define DRAIN_HARD_MS 10000 /* ... even one that keeps writing: then its group is killed */

enum gs_state { GS_FREE, GS_STARTING, GS_RUNNING, GS_DRAINING };

struct gstream {
	enum gs_state state;
	bool tty;
	int in;	    /* its stdin (write end), or the pty master */
	int out[2]; /* its stdout, stderr (read ends); with a pty out[0] is the master */
	bool in_eof;
	struct fbuf pend_in; /* stdin taken from the host, not yet written: the window */
	uint32_t credit;     /* stdin written or dropped, not yet granted back */
	uint32_t out_win;    /* output the host lets us send */
	int status;
	struct winsize ws;
	bool ws_pending;
	struct timespec deadline;
	struct timespec hard; /* the drain's limit, however much output still comes */
};

static struct gstream streams[GUEST_STREAMS_MAX];
static int ci = -1;	/* the container init's socket */
static pid_t crun = -1; /* crun run: lives as long as the container */
static bool ready;	/* the container init is up */
static bool shutting;	/* SHUTDOWN came */
static bool killed_all; /* the grace is over: SIGKILL sent */
static bool finish;	/* leave once tx is written */
static struct timespec shutdown_at;

static long ms_until(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (t->tv_sec - now.tv_sec) * 1000 + (t->tv_nsec - now.tv_nsec) / 1000000;
}
static void in_ms(struct timespec *t, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, t);
	t->tv_sec += ms / 1000;
	t->tv_nsec += (ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

static void ctrl_frame(char type, uint32_t s, const void *p, uint32_t n)
{
	if (frame_put(&tx, type, s, p, n) < 0)
		die("the frame queue to the host is full");
}

static void stream_close_fds(struct gstream *g)
{
	if (g->in >= 0 && g->in != g->out[0])
		close(g->in);
	for (int k = 0; k < 2; k++)
		if (g->out[k] >= 0)
			close(g->out[k]);
	g->in = g->out[0] = g->out[1] = -1;
}

static void stream_free(uint32_t s)
{
	struct gstream *g = &streams[s];
	stream_close_fds(g);
	fbuf_free(&g->pend_in);
	memset(g, 0, sizeof(*g));
	g->in = g->out[0] = g->out[1] = -1;
	g->state = GS_FREE;
	if (s == 0 && !keep)
		finish = true; /* run mode: the first command was the run */
}

static void stream_fail(uint32_t s, const char *msg)
{
	fprintf(stderr, "boxkit-init: error: stream %u: %s\n", s, msg);
	ctrl_frame(FR_FAIL, s, msg, (uint32_t)strlen(msg));
	stream_free(s);
}

/* EXEC: pipes (or a pty from the container init) and the request to start */
static void stream_start(uint32_t s, const char *json, size_t len)
{
	struct gstream *g = &streams[s];
	struct json_tokener *tok = json_tokener_new_ex(16);
	struct json_object *spec = tok ? json_tokener_parse_ex(tok, json, (int)len) : NULL;
	if (tok)
		json_tokener_free(tok);
	memset(g, 0, sizeof(*g));
	g->in = g->out[0] = g->out[1] = -1;
	g->state = GS_STARTING;
	if (!spec || !json_object_is_type(spec, json_type_object)) {
		json_object_put(spec);
		stream_fail(s, "the exec request is not a JSON object");
		return;
	}
	g->tty = jbool(spec, "tty");
	g->ws.ws_row = (unsigned short)jint(spec, "rows", 24);
	g->ws.ws_col = (unsigned short)jint(spec, "cols", 80);
	json_object_put(spec);
	if (fbuf_init(&g->pend_in, STDIN_WINDOW) < 0) {
		stream_fail(s, "out of memory");
		return;
	}
	int fds[3] = { -1, -1, -1 }, p[3][2];
	if (!g->tty) {
		if (pipe2(p[0], O_CLOEXEC) < 0)
			goto fail;
		if (pipe2(p[1], O_CLOEXEC) < 0) {
			close(p[0][0]), close(p[0][1]);
			goto fail;
		}
		if (pipe2(p[2], O_CLOEXEC) < 0) {
			close(p[0][0]), close(p[0][1]), close(p[1][0]), close(p[1][1]);
			goto fail;
		}
		g->in = p[0][1];
		g->out[0] = p[1][0];
		g->out[1] = p[2][0];
		fds[0] = p[0][0];
		fds[1] = p[1][1];
		fds[2] = p[2][1];
		for (int k = 0; k < 3; k++)
			fcntl(k ? g->out[k - 1] : g->in, F_SETFL, O_NONBLOCK);
	}
	int r = ci_send(ci, CI_EXEC, s, g->tty, json, len, g->tty ? NULL : fds, g->tty ? 0 : 3);
	for (int k = 0; k < 3; k++)
		if (fds[k] >= 0)
			close(fds[k]);
	if (r < 0)
		die("cannot reach the container's init: %s", strerror(-r));
	g->credit = STDIN_WINDOW; /* the first window, granted in the loop */
	g->out_win = OUTPUT_WINDOW;
	return;
fail:
	stream_fail(s, strerror(errno));
}

/* A copy of a saved VM comes to life: the host's clock, and the host's
 * bytes in the pool with the CRNG reseeded at once, before any process of
 * the copy runs (a saved VM's random state is every copy's otherwise: the
 * same keys, UUIDs, ASLR offsets). Then it is a run: stream 0's end is the
 * VM's. */
static bool resumed, stream0_used;

/* bytes from the host into the pool, credited (the CRNG is ready once 256
 * bits are), and the CRNG reseeded from it at once */
static void add_entropy(const unsigned char *b, size_t n)
{
	struct {
		int entropy_count;
		int buf_size;
		unsigned char buf[RESUME_ENTROPY_MAX];
	} e;
	if (n > sizeof(e.buf))
		n = sizeof(e.buf);
	e.buf_size = (int)n;
	e.entropy_count = e.buf_size * 8;
	memcpy(e.buf, b, n);
	int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, RNDADDENTROPY, &e) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
		die("reseed the guest's random generator: %s", strerror(errno));
	close(fd);
	explicit_bzero(&e, sizeof(e));
}

static void resume(const unsigned char *p, uint32_t len)
{
	uint64_t sec = (uint64_t)le32_get(p) | (uint64_t)le32_get(p + 4) << 32;
	struct timespec now = { (time_t)sec, (long)(le32_get(p + 8) % 1000000000u) };
	if (clock_settime(CLOCK_REALTIME, &now) < 0)
		die("set the clock: %s", strerror(errno));
	add_entropy(p + RESUME_HDR, len - RESUME_HDR);
	resumed = true;
	keep = (le32_get(p + 12) & RESUME_KEEP) != 0;
	ctrl_frame(FR_RESUMED, 0, NULL, 0);
}

static void host_frames(struct fbuf *rx)
{
	struct frame f;
	int k;
	size_t off = 0;
	for (;;) {
		struct fbuf view = { rx->data + off, rx->len - off, rx->cap - off };
		if ((k = frame_peek(&view, FRAME_DATA_MAX, &f)) != 1)
			break;
		off += FRAME_HDR + f.len;
		if (f.stream >= GUEST_STREAMS_MAX)
			die("the host named stream %u (at most %u)", f.stream, GUEST_STREAMS_MAX - 1);
		struct gstream *g = &streams[f.stream];
		switch (f.type) {
		case FR_EXEC:
			/* stream 0 is the config's command; in a resumed copy, the
			 * host's one run (once) */
			if (g->state != GS_FREE || (f.stream == 0 && (!resumed || stream0_used)))
				die("the host started stream %u twice", f.stream);
			if (f.stream == 0)
				stream0_used = true;
			if (!ready || shutting) {
				ctrl_frame(FR_FAIL, f.stream, "the sandbox is not running", 26);
				break;
			}
			stream_start(f.stream, (const char *)f.payload, f.len);
			break;
		case FR_STDIN:
			if (g->state == GS_FREE)
				break; /* the process is gone: the host's frames crossed its EXIT */
			/* never beyond the window we granted: the buffer is the window */
			if (fbuf_room(&g->pend_in) < f.len)
				die("the host sent stdin beyond its window on stream %u", f.stream);
			if (!g->in_eof && (g->state == GS_STARTING || g->in >= 0)) {
				memcpy(g->pend_in.data + g->pend_in.len, f.payload, f.len);
				g->pend_in.len += f.len;
			} else
				g->credit += f.len; /* nobody reads it: give the window back */
			break;
		case FR_STDIN_EOF: g->in_eof = true; break;
		case FR_SIGNAL:
			if (f.len == 4 && g->state != GS_FREE && le32_get(f.payload) > 0 && le32_get(f.payload) < 65)
				ci_send(ci, CI_SIGNAL, f.stream, (int32_t)le32_get(f.payload), NULL, 0, NULL, 0);
			break;
		case FR_WINSIZE:
			if (f.len == 4 && g->tty) {
				g->ws.ws_row = (unsigned short)(f.payload[0] | f.payload[1] << 8);
				g->ws.ws_col = (unsigned short)(f.payload[2] | f.payload[3] << 8);
				g->ws_pending = true;
			}
			break;
		case FR_OUT_WINDOW:
			if (f.len != 4)
				die("a bad output window frame");
			if (g->state != GS_FREE) {
				uint32_t n = le32_get(f.payload);
				if (n > OUTPUT_WINDOW || g->out_win + n > OUTPUT_WINDOW)
					die("the host granted more output than the window on stream %u", f.stream);
				g->out_win += n;
			}
			break;
		case FR_RESUME:
			if (f.len < RESUME_HDR + RESUME_ENTROPY_MIN || f.len > RESUME_HDR + RESUME_ENTROPY_MAX ||
			    resumed || first_spec)
				die("a bad resume frame");
			resume(f.payload, f.len);
			break;
		case FR_SHUTDOWN:
			if (f.len == 4 && !shutting) {
				uint32_t grace = le32_get(f.payload);
				shutting = true;
				in_ms(&shutdown_at, grace > 600000 ? 600000 : grace);
				ci_send(ci, CI_SIGNAL_ALL, 0, SIGTERM, NULL, 0, NULL, 0);
			}
			break;
		default: die("unknown frame '%c' from the host", f.type);
		}
	}
	if (k < 0)
		die("a frame from the host is too large");
	fbuf_consume(rx, off);
}

static void from_cinit(void)
{
	static char payload[CI_MSG_MAX];
	struct ci_msg m = { 0, 0, 0 };
	int fds[3], nfds;
	long n = ci_recv(ci, &m, payload, sizeof(payload), fds, &nfds);
	if (n == -EAGAIN)
		return;
	if (n < 0)
		die("the container's init is gone (%s)", strerror((int)-n));
	if (m.type == CI_READY) {
		ready = true;
		ctrl_frame(FR_READY, 0, NULL, 0);
		if (first_spec)
			stream_start(0, first_spec, strlen(first_spec));
		return;
	}
	struct gstream *g = m.id < GUEST_STREAMS_MAX ? &streams[m.id] : NULL;
	if (m.type == CI_STARTED && g && g->state == GS_STARTING) {
		if (m.val < 0) {
			for (int i = 0; i < nfds; i++)
				close(fds[i]);
			stream_fail(m.id, m.val == -EAGAIN ? "too many processes" : "the process could not start");
			return;
		}
		g->state = GS_RUNNING;
		if (g->tty) {
			if (nfds != 1)
				die("no pty came for stream %u", m.id);
			g->in = g->out[0] = fds[0];
			fcntl(g->in, F_SETFL, O_NONBLOCK);
			g->ws_pending = true;
			return;
		}
	} else if (m.type == CI_EXITED && g && g->state == GS_RUNNING) {
		g->status = m.val & 0xff;
		g->state = GS_DRAINING;
		in_ms(&g->deadline, DRAIN_MS);
		in_ms(&g->hard, DRAIN_HARD_MS);
	}
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
}

static void stream_io(struct gstream *g, uint32_t s, const struct pollfd *pf)
{
	for (int k = 0; k < 2; k++) {
		if (g->out[k] < 0 || !(pf[k].revents))
			continue;
		size_t want = g->out_win < FRAME_DATA_MAX ? g->out_win : FRAME_DATA_MAX;
		if (!want || fbuf_room(&tx) < FRAME_HDR + FRAME_DATA_MAX + CTRL_RESERVE)
			continue;
		unsigned char buf[FRAME_DATA_MAX];
		ssize_t n = read(g->out[k], buf, want);
		if (n > 0) {
			frame_put(&tx, k == 0 ? FR_STDOUT : FR_STDERR, s, buf, (uint32_t)n);
			g->out_win -= (uint32_t)n;
			if (g->state == GS_DRAINING)
				in_ms(&g->deadline, DRAIN_MS); /* output still coming: give it time */
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			/* EOF, or EIO: a pty whose other side is all closed */
			if (g->tty) {
				close(g->out[0]);
				g->in = g->out[0] = -1;
			} else {
				close(g->out[k]);
				g->out[k] = -1;
			}
		}
	}
	if (g->in >= 0 && g->pend_in.len && (pf[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
		ssize_t n = write(g->in, g->pend_in.data, g->pend_in.len);
		if (n > 0) {
			fbuf_consume(&g->pend_in, (size_t)n);
			g->credit += (uint32_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			/* the process closed its stdin: drop what it will never read */
			g->credit += (uint32_t)g->pend_in.len;
			g->pend_in.len = 0;
			if (!g->tty) {
				close(g->in);
				g->in = -1;
			}
		}
	}
}

/* what each stream needs next, without waiting: window grants, EOF, a
 * window size, the end */
static void stream_tend(uint32_t s)
{
	struct gstream *g = &streams[s];
	if (g->state == GS_FREE)
		return;
	if (g->credit && (g->credit >= STDIN_WINDOW / 4 || !g->pend_in.len)) {
		unsigned char c[4];
		le32_put(c, g->credit);
		ctrl_frame(FR_WINDOW, s, c, 4);
		g->credit = 0;
	}
	if (g->state == GS_STARTING)
		return;
	if (g->in >= 0 && g->in_eof && !g->pend_in.len) {
		if (g->tty) {
			/* a terminal has no EOF of its own: ^D, as a person would type it */
			static const char eot = 4;
			if (write(g->in, &eot, 1) == 1)
				g->in_eof = false, g->pend_in.len = 0;
		} else {
			close(g->in);
			g->in = -1;
		}
	}
	if (g->ws_pending && g->tty && g->out[0] >= 0) {
		ioctl(g->out[0], TIOCSWINSZ, &g->ws);
		g->ws_pending = false;
	}
	if (g->state != GS_DRAINING)
		return;
	bool drained = g->out[0] < 0 && g->out[1] < 0;
	if (!drained && g->out_win == 0)
		in_ms(&g->deadline, DRAIN_MS); /* a slow host is no reason to drop output */
	if (!drained && ms_until(&g->hard) <= 0)
		g->deadline = g->hard;
	if (drained || ms_until(&g->deadline) <= 0) {
		/* what still holds its pipes (a background writer) goes with it */
		if (!drained)
			ci_send(ci, CI_SIGNAL, s, SIGKILL, NULL, 0, NULL, 0);
		unsigned char code[4];
		le32_put(code, (uint32_t)g->status);
		ctrl_frame(FR_EXIT, s, code, 4);
		stream_free(s);
	}
}

static void on_sigchld(int sfd)
{
	struct signalfd_siginfo si;
	while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
	}
	int st;
	pid_t w;
	while ((w = waitpid(-1, &st, WNOHANG)) > 0)
		if (w == crun) {
			crun = -1;
			if (!shutting)
				die("the container ended (crun: %s %d)", WIFEXITED(st) ? "exit status" : "signal",
				    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			finish = true;
		}
}

static void relay_loop(int sfd)
{
	static struct fbuf rx;
	if (fbuf_init(&rx, IN_CAP) < 0)
		die("out of memory");
	fcntl(ctl, F_SETFL, O_NONBLOCK);
	fcntl(ci, F_SETFL, O_NONBLOCK);
	while (!finish) {
		for (uint32_t s = 0; s < GUEST_STREAMS_MAX; s++)
			stream_tend(s);
		if (finish)
			break;
		bool live = false;
		for (uint32_t s = 0; s < GUEST_STREAMS_MAX; s++)
			live |= streams[s].state != GS_FREE;
		long timeout = -1;
		if (shutting) {
			long ms = ms_until(&shutdown_at);
			if (!live || (killed_all && ms <= 0)) {
				finish = true;
				break;
			}
			if (ms <= 0 && !killed_all) {
				ci_send(ci, CI_SIGNAL_ALL, 0, SIGKILL, NULL, 0, NULL, 0);
				killed_all = true;
				in_ms(&shutdown_at, 1000);
				ms = 1000;
			}
			timeout = ms;
		}
		struct pollfd pf[3 + 3 * GUEST_STREAMS_MAX];
		pf[0] = (struct pollfd){ sfd, POLLIN, 0 };
		pf[1] = (struct pollfd){ ctl, (short)((fbuf_room(&rx) ? POLLIN : 0) | (tx.len ? POLLOUT : 0)), 0 };
		pf[2] = (struct pollfd){ ci, POLLIN, 0 };
		bool room = fbuf_room(&tx) >= FRAME_HDR + FRAME_DATA_MAX + CTRL_RESERVE;
		for (uint32_t s = 0; s < GUEST_STREAMS_MAX; s++) {
			struct gstream *g = &streams[s];
			struct pollfd *p = &pf[3 + 3 * s];
			bool take = g->state != GS_FREE && room && g->out_win > 0;
			p[0] = (struct pollfd){ take ? g->out[0] : -1, POLLIN, 0 };
			p[1] = (struct pollfd){ take ? g->out[1] : -1, POLLIN, 0 };
			p[2] = (struct pollfd){ g->pend_in.len && !g->tty ? g->in : -1, POLLOUT, 0 };
			if (g->tty && g->pend_in.len && g->in >= 0 && !take) {
				/* one descriptor for both ways: wait for whichever is possible */
				p[0] = (struct pollfd){ g->in, POLLOUT, 0 };
			} else if (g->tty && g->pend_in.len && g->in >= 0)
				p[0].events |= POLLOUT;
			if (g->state == GS_DRAINING) {
				long ms = ms_until(&g->deadline);
				if (timeout < 0 || ms < timeout)
					timeout = ms < 0 ? 0 : ms;
			}
		}
		if (poll(pf, 3 + 3 * GUEST_STREAMS_MAX, (int)timeout) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (pf[0].revents)
			on_sigchld(sfd);
		if (pf[1].revents & POLLOUT) {
			ssize_t n = write(ctl, tx.data, tx.len);
			if (n > 0)
				fbuf_consume(&tx, (size_t)n);
		}
		if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(ctl, rx.data + rx.len, fbuf_room(&rx));
			if (n > 0) {
				rx.len += (size_t)n;
				host_frames(&rx);
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				/* the host is gone: nobody is left to serve */
				leave();
			}
		}
		if (pf[2].revents)
			from_cinit();
		for (uint32_t s = 0; s < GUEST_STREAMS_MAX; s++) {
			struct gstream *g = &streams[s];
			if (g->state == GS_RUNNING || g->state == GS_DRAINING) {
				struct pollfd *p = &pf[3 + 3 * s];
				struct pollfd q[3] = { p[0], p[1], p[2] };
				if (g->tty)
					q[2].revents = p[0].revents; /* POLLOUT on the master */
				if (g->tty && !(p[0].events & POLLIN))
					q[0].revents = 0;
				stream_io(g, s, q);
			}
		}
	}
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], CONTAINER_INIT_WORKLOAD))
		return container_init(argc, argv);
	if (argc > 1 && !strcmp(argv[1], CONTAINER_INIT_SERVE))
		return cinit_serve();
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
	if (fbuf_init(&tx, OUT_CAP) < 0)
		die("out of memory");
	for (uint32_t s = 0; s < GUEST_STREAMS_MAX; s++)
		streams[s].in = streams[s].out[0] = streams[s].out[1] = -1;
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
	if (rx.len)
		die("the host sent frames before the guest was ready");
	fbuf_free(&rx);

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
	{
		/* the network (the container shares the VM's), and the files
		 * that name it in the container */
		char why[256];
		int rootfd = open(BUNDLE "/rootfs", O_PATH | O_DIRECTORY | O_CLOEXEC), e;
		if ((e = gnet_up(plan_net, why, sizeof(why))) < 0)
			die("network: %s: %s", why, strerror(-e));
		if (rootfd < 0 || (e = gnet_files(rootfd, plan_net, plan_hostname, why, sizeof(why))) < 0)
			die("network: %s: %s", rootfd < 0 ? "open the rootfs" : why, strerror(rootfd < 0 ? errno : -e));
		if ((e = gnet_etc_files(rootfd, plan_annotations, why, sizeof(why))) < 0)
			die("%s: %s", why, strerror(-e));
		close(rootfd);
		json_object_put(plan_annotations);
		json_object_put(plan_net);
		free(plan_hostname);
	}

	/* children are reaped on SIGCHLD, through a signalfd */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		die("socketpair: %s", strerror(errno));
	crun = fork();
	if (crun < 0)
		die("fork: %s", strerror(errno));
	if (crun == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* the container init's end at fd 3, kept by crun --preserve-fds 1 */
		if (dup2(sp[1], CI_FD) < 0)
			_exit(125);
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (null >= 0)
			dup2(null, 0);
		execl(CRUN, "crun", "--root", "/run/crun", "--cgroup-manager=cgroupfs", "run", "--preserve-fds", "1",
		      "--bundle", BUNDLE, "boxkit", (char *)NULL);
		fprintf(stderr, "boxkit-init: error: exec " CRUN ": %s\n", strerror(errno));
		_exit(125);
	}
	close(sp[1]);
	ci = sp[0];
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		die("signalfd: %s", strerror(errno));
	relay_loop(sfd);

	/* blocking now: a write to the port returns once the host has taken the
	 * data, so nothing is lost in flight when the VM reboots next */
	fcntl(ctl, F_SETFL, 0);
	if (write_all(ctl, tx.data, tx.len) < 0)
		fprintf(stderr, "boxkit-init: error: cannot send the last frames: %s\n", strerror(errno));
	fsync(ctl);
	leave();
}
