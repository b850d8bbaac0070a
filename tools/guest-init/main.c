/* SPDX-License-Identifier: MIT */
/* boxkit-init: PID 1 inside the VM. Mounts the basics, takes its plan
 * (config.json, volumes) from the host over the boxkit.ctl virtio-serial
 * port, puts the workload's rootfs (read-only drive + tmpfs overlay) under
 * a bundle, runs crun, relays stdio, reports the exit status and reboots
 * (reboot=t + QEMU -no-reboot: QEMU exits). Never hangs: every failure is a
 * message on the console and an FR_FAIL frame, then the VM leaves. */
#include "frame.h"
#include "guest-abi.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define RUN GUEST_RUN_DIR
#define BUNDLE GUEST_BUNDLE
#define CRUN "/usr/bin/crun"
#define ROOTFS_DEV "/dev/vdb"

static int ctl = -1;

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
		frame_send(ctl, FR_FAIL, msg, (uint32_t)strlen(msg));
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
	if (fd < 0 || frame_write_all(fd, data, len) < 0)
		die("write %s: %s", path, strerror(errno));
	close(fd);
}

/* A virtiofs share: directories at RUN/volumes/TAG; a single file's staging
 * share is mounted at a private point, the file bound at RUN/files/TAG, then
 * the share is detached and the point removed, so nothing else of it is
 * reachable in the guest. */
static void mount_volume(char *spec)
{
	char *tag = strtok(spec, "\t"), *type = strtok(NULL, "\t"), *ro = strtok(NULL, "\t"),
	     *name = strtok(NULL, "\t");
	char dst[256], stage[256], file[512];
	unsigned long flags = MS_NOSUID | MS_NODEV;

	if (!tag || !type || !ro)
		die("bad volume line");
	if (!strcmp(ro, "1"))
		flags |= MS_RDONLY;
	if (!strcmp(type, "directory")) {
		snprintf(dst, sizeof(dst), GUEST_VOLUME_DIR "/%s", tag);
		mkdir_p(dst);
		if (mount(tag, dst, "virtiofs", flags, NULL) < 0)
			die("mount virtiofs %s: %s", tag, strerror(errno));
		return;
	}
	if (!name || strchr(name, '/') || !strcmp(name, "..") || !strcmp(name, "."))
		die("bad file volume name");
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
	if ((flags & MS_RDONLY) && mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
		die("remount %s read-only: %s", dst, strerror(errno));
	if (umount2(stage, MNT_DETACH) < 0)
		die("detach %s: %s", stage, strerror(errno));
	rmdir(stage);
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

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--workload"))
		return container_init(argc, argv);
	struct frame_buf in = { 0 };
	unsigned char *config = NULL;
	uint32_t config_len = 0;
	int outp[2], errp[2], inp[2];
	pid_t child;

	if (getpid() != 1) {
		fprintf(stderr, "boxkit-init: error: must run as PID 1 inside a boxkit VM\n");
		return 1;
	}
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
	if (frame_send(ctl, FR_HELLO, NULL, 0) < 0)
		die("write to the control port: %s", strerror(errno));

	/* the plan */
	for (bool go = false; !go;) {
		char type;
		unsigned char *p;
		uint32_t len;
		int r;
		while ((r = frame_take(&in, &type, &p, &len)) == 1) {
			if (type == FR_CONFIG) {
				free(config);
				config = p;
				config_len = len;
				continue;
			}
			if (type == FR_VOLUME)
				mount_volume((char *)p);
			else if (type == FR_GO)
				go = true;
			free(p);
			if (go)
				break;
		}
		if (r < 0)
			die("bad frame from the host");
		if (go)
			break;
		ssize_t n = frame_fill(&in, ctl);
		if (n == 0 || (n < 0 && n != -EAGAIN))
			die("control port closed before the plan was complete");
	}
	if (!config)
		die("the plan has no config.json");

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
	write_file(BUNDLE "/config.json", config, config_len);
	free(config);

	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(inp, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		die("fork: %s", strerror(errno));
	if (child == 0) {
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

	int fds_out = outp[0], fds_err = errp[0], fds_in = inp[1];
	int status = -1;
	char buf[65536];
	while (fds_out >= 0 || fds_err >= 0 || status < 0) {
		struct pollfd pf[3] = { { fds_out, POLLIN, 0 }, { fds_err, POLLIN, 0 }, { ctl, POLLIN, 0 } };
		if (poll(pf, 3, status < 0 ? 200 : 50) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		for (int i = 0; i < 2; i++) {
			int *fd = i == 0 ? &fds_out : &fds_err;
			if (*fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(*fd, buf, sizeof(buf));
			if (n > 0)
				frame_send(ctl, i == 0 ? FR_STDOUT : FR_STDERR, buf, (uint32_t)n);
			else if (n == 0 || errno != EINTR) {
				close(*fd);
				*fd = -1;
			}
		}
		ssize_t n = 1;
		if (pf[2].revents & POLLIN)
			n = frame_fill(&in, ctl);
		{
			/* frames may already be buffered from the plan phase */
			char type;
			unsigned char *p;
			uint32_t len;
			while (n != 0 && frame_take(&in, &type, &p, &len) == 1) {
				if (type == FR_STDIN && fds_in >= 0) {
					if (frame_write_all(fds_in, p, len) < 0) {
						close(fds_in);
						fds_in = -1;
					}
				} else if (type == FR_STDIN_EOF && fds_in >= 0) {
					close(fds_in);
					fds_in = -1;
				} else if (type == FR_SIGNAL && len == 4) {
					int sig;
					memcpy(&sig, p, 4);
					kill(child, sig);
				}
				free(p);
			}
		}
		/* reap everything; note crun's own status */
		int st;
		pid_t w;
		while ((w = waitpid(-1, &st, WNOHANG)) > 0)
			if (w == child)
				status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		/* once crun is gone, a grandchild holding the pipes must not keep us */
		if (status >= 0 && !(pf[0].revents & POLLIN) && !(pf[1].revents & POLLIN))
			break;
	}
	uint32_t code = (uint32_t)status;
	frame_send(ctl, FR_EXIT, &code, 4);
	fsync(ctl);
	leave();
}
