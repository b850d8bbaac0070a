/* SPDX-License-Identifier: MIT */
/* vm-launch: boot a QEMU microvm with a boxkit guest, hand the guest init its
 * plan over a virtio-serial port, relay the workload's stdin, stdout, stderr
 * and exit status, and leave nothing behind. QEMU runs jailed: in the chroot
 * chroot-stage made, as its unprivileged uid, with no capabilities,
 * no_new_privs, a seccomp filter, PR_SET_PDEATHSIG and a descriptor limit. */
#include "common.h"
#include "frame.h"
#include "launch.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>

struct launch_args arg = { .memory = 256, .cpus = 1, .accel = "auto", .qemu = "qemu-system-x86_64" };

static void usage(FILE *f)
{
	fputs("Usage: vm-launch --config FILE [OPTIONS]\n"
	      "\n"
	      "Boot a microVM, run the OCI config's process in it with crun, relay its\n"
	      "stdin, stdout, stderr and exit status.\n"
	      "\n"
	      "Options:\n"
	      "  --config FILE       the OCI config.json (from oci-spec)\n"
	      "  --kernel K          lean (default), net, or a bzImage path\n"
	      "  --system IMG        guest system image (default: make image's)\n"
	      "  --rootfs IMG        workload rootfs image (default: make image's)\n"
	      "  --volumes FILE      volspec-parse JSON lines (re-checked with --check)\n"
	      "  --memory MIB        guest memory (default 256)\n"
	      "  --cpus N            guest CPUs (default 1)\n"
	      "  --timeout SECONDS   stop the VM after this long (exit 125)\n"
	      "  --accel A           auto (default), kvm or tcg\n"
	      "  --chroot FILE       chroot-stage's JSON: run QEMU jailed in that chroot\n"
	      "  --run ID            the run (from run-record new) this launch belongs to; default: a new one\n"
	      "  --qemu PATH         the QEMU binary (default qemu-system-x86_64)\n"
	      "  --home DIR          boxkit home\n"
	      "  --probe-accel       print what --accel auto picks (JSON) and exit\n"
	      "  -v, --verbose       say what is chosen and done\n"
	      "  -h, --help          this text\n"
	      "\n"
	      "Exit status: the workload's; 128+N when it died of signal N; 125 when boxkit\n"
	      "failed (bad input, VM failure, timeout); 126 the command cannot run; 127 not found.\n"
	      "Manual: tools/vm-launch/vm-launch.1.md\n",
	      f);
}

static int parse_argv(int argc, char **argv)
{
	enum { O_CONFIG = 256, O_KERNEL, O_SYSTEM, O_ROOTFS, O_VOLUMES, O_MEMORY, O_CPUS, O_TIMEOUT, O_ACCEL, O_CHROOT,
	       O_RUN, O_QEMU, O_HOME, O_PROBE, O_VFSD_HANDLES };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, O_CONFIG }, { "kernel", required_argument, NULL, O_KERNEL },
		{ "system", required_argument, NULL, O_SYSTEM }, { "rootfs", required_argument, NULL, O_ROOTFS },
		{ "volumes", required_argument, NULL, O_VOLUMES }, { "memory", required_argument, NULL, O_MEMORY },
		{ "cpus", required_argument, NULL, O_CPUS },	 { "timeout", required_argument, NULL, O_TIMEOUT },
		{ "accel", required_argument, NULL, O_ACCEL },	 { "chroot", required_argument, NULL, O_CHROOT },
		{ "run", required_argument, NULL, O_RUN }, { "qemu", required_argument, NULL, O_QEMU },
		{ "home", required_argument, NULL, O_HOME },	 { "probe-accel", no_argument, NULL, O_PROBE },
		{ "verbose", no_argument, NULL, 'v' },		 { "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	char *end;
	while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
		switch (c) {
		case O_CONFIG: arg.config = optarg; break;
		case O_KERNEL: arg.kernel = optarg; break;
		case O_SYSTEM: arg.system = optarg; break;
		case O_ROOTFS: arg.rootfs = optarg; break;
		case O_VOLUMES: arg.volumes = optarg; break;
		case O_MEMORY:
			arg.memory = strtol(optarg, &end, 10);
			if (*end || arg.memory < 64 || arg.memory > 65536) {
				log_error("--memory '%s' must be 64 to 65536 (MiB)", optarg);
				return -1;
			}
			break;
		case O_CPUS:
			arg.cpus = strtol(optarg, &end, 10);
			if (*end || arg.cpus < 1 || arg.cpus > 64) {
				log_error("--cpus '%s' must be 1 to 64", optarg);
				return -1;
			}
			break;
		case O_TIMEOUT:
			arg.timeout = strtod(optarg, &end);
			if (*end || end == optarg || arg.timeout <= 0 || arg.timeout > 86400 * 7) {
				log_error("--timeout '%s' must be a positive number of seconds", optarg);
				return -1;
			}
			break;
		case O_ACCEL:
			if (strcmp(optarg, "auto") && strcmp(optarg, "kvm") && strcmp(optarg, "tcg")) {
				log_error("--accel '%s': use auto, kvm or tcg", optarg);
				return -1;
			}
			arg.accel = optarg;
			break;
		case O_CHROOT: arg.chroot_json = optarg; break;
		case O_RUN:
			if (!run_id_valid(optarg)) {
				log_error("--run '%s' is not a run id (26 characters of [0-9a-z])", optarg);
				return -1;
			}
			arg.run_id = optarg;
			break;
		case O_QEMU: arg.qemu = optarg; break;
		case O_HOME: arg.home = optarg; break;
		case O_PROBE: arg.probe_only = true; break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h': usage(stdout); exit(EXIT_OK);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc) {
		log_error("unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if (!arg.config && !arg.probe_only) {
		log_error("--config is required (make one with oci-spec)");
		return -1;
	}
	return 0;
}

/* ---- the relay ----------------------------------------------------------------------- */

static void print_console_tail(const char *path)
{
	char buf[4096];
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: console log tail (%s): cannot open it\n", log_prog(), path);
		return;
	}
	off_t size = lseek(fd, 0, SEEK_END);
	off_t from = size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	if (n < 0)
		n = 0;
	buf[n] = 0;
	fprintf(stderr, "%s: console log tail (%s):\n%s\n", log_prog(), path, n ? buf : "(empty: the kernel printed nothing)");
}

static int send_plan(int ctl, const char *config, size_t config_len, const struct volume *vols, int nvols)
{
	int r = frame_send(ctl, FR_CONFIG, config, (uint32_t)config_len);
	for (int i = 0; r == 0 && i < nvols; i++) {
		char line[512];
		int n = snprintf(line, sizeof(line), "%s\t%s\t%d\t%s", vols[i].e.tag, vols[i].e.is_file ? "file" : "directory",
				 vols[i].e.readonly ? 1 : 0, vols[i].file_name);
		r = frame_send(ctl, FR_VOLUME, line, (uint32_t)n);
	}
	return r ? r : frame_send(ctl, FR_GO, NULL, 0);
}

static int relay(struct vm *vm, const char *config, size_t config_len)
{
	struct frame_buf in = { 0 };
	int status = -1;
	bool stdin_open = true, qemu_gone = false, timed_out = false, share_failed = false;
	char fail[1024] = "";
	int caught = 0;
	sigset_t mask;
	cleanup_close int sfd = -1, tfd = -1;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		return log_sys(errno, "signalfd");
	if (arg.timeout > 0) {
		struct itimerspec its = { .it_value = { (time_t)arg.timeout, (long)((arg.timeout - (time_t)arg.timeout) * 1e9) } };
		tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
		if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) < 0)
			return log_sys(errno, "timerfd");
	}
	fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);

	while (!qemu_gone) {
		struct pollfd pf[4 + 64] = { { sfd, POLLIN, 0 },
					     { vm->ctl, vm->ctl >= 0 ? POLLIN : 0, 0 },
					     { stdin_open && vm->plan_sent ? STDIN_FILENO : -1, POLLIN, 0 },
					     { tfd, POLLIN, 0 } };
		for (int i = 0; i < vm->nvols && i < 64; i++)
			pf[4 + i] = (struct pollfd){ vm->vols[i].log, POLLIN, 0 };
		if (poll(pf, (nfds_t)(4 + (vm->nvols < 64 ? vm->nvols : 64)), -1) < 0) {
			if (errno == EINTR)
				continue;
			return log_sys(errno, "poll");
		}
		for (int i = 0; i < vm->nvols && i < 64; i++)
			if (pf[4 + i].revents)
				shares_drain_log(&vm->vols[i]);
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGCHLD) {
					int st;
					pid_t w;
					while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
						if (w == vm->qemu) {
							qemu_gone = true;
							vm->qemu = -1;
							vm->qemu_status = st;
						} else if (shares_reap(vm, w, st, status < 0) >= 0 && status < 0 && vm->qemu > 0 &&
							   !share_failed) {
							/* a daemon that refuses or dies before the workload is done fails
							 * the run loudly (after it, the guest's reboot ends them) */
							share_failed = true;
							vm_kill(vm);
						}
					}
				} else if (!caught) {
					caught = (int)si.ssi_signo;
					log_debug("caught signal %d: stopping the VM", caught);
					vm_kill(vm);
				}
			}
		}
		if (tfd >= 0 && (pf[3].revents & POLLIN) && !timed_out) {
			timed_out = true;
			log_error("timed out after %g seconds: stopping the VM", arg.timeout);
			vm_kill(vm);
		}
		if (vm->ctl >= 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = frame_fill(&in, vm->ctl);
			if (n == 0 || (n < 0 && n != -EAGAIN)) {
				close(vm->ctl);
				vm->ctl = -1;
			}
			char type;
			unsigned char *p;
			uint32_t len;
			int r;
			while ((r = frame_take(&in, &type, &p, &len)) == 1) {
				switch (type) {
				case FR_HELLO:
					log_debug("guest init is up (%.3f s): sending the plan", vm_elapsed(vm));
					if (send_plan(vm->ctl, config, config_len, vm->vols, vm->nvols) < 0)
						log_warn("cannot send the plan to the guest");
					vm->plan_sent = true;
					break;
				case FR_STDOUT:
				case FR_STDERR:
					if (frame_write_all(type == FR_STDOUT ? STDOUT_FILENO : STDERR_FILENO, p, len) < 0 &&
					    type == FR_STDOUT)
						log_debug("stdout closed");
					break;
				case FR_EXIT:
					if (len == 4) {
						uint32_t code;
						memcpy(&code, p, 4);
						status = (int)(code & 0xff);
						log_debug("workload exited with %d (%.3f s)", status, vm_elapsed(vm));
					}
					break;
				case FR_FAIL:
					snprintf(fail, sizeof(fail), "%.*s", (int)len, (char *)p);
					break;
				default: log_debug("ignoring frame '%c'", type);
				}
				free(p);
			}
			if (r < 0) {
				log_error("bad frame from the guest: stopping the VM");
				vm_kill(vm);
			}
		}
		if (pf[2].revents & (POLLIN | POLLHUP | POLLERR)) {
			char buf[65536];
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n > 0) {
				if (vm->ctl >= 0)
					frame_send(vm->ctl, FR_STDIN, buf, (uint32_t)n);
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				stdin_open = false;
				if (vm->ctl >= 0)
					frame_send(vm->ctl, FR_STDIN_EOF, NULL, 0);
			}
		}
	}
	free(in.data);
	log_debug("QEMU exited after %.3f s", vm_elapsed(vm));
	if (caught)
		return 128 + caught;
	if (fail[0]) {
		log_error("guest init failed: %s", fail);
		print_console_tail(vm->console);
		return EXIT_LAUNCH;
	}
	if (timed_out || share_failed)
		return EXIT_LAUNCH;
	if (status < 0) {
		log_error("the VM stopped without reporting an exit status (kernel panic or init failure)");
		print_console_tail(vm->console);
		return EXIT_LAUNCH;
	}
	return status;
}

/* The run: the one given with --run (box made it), or a new one. Its
 * directory is root's; this process becomes one of its owners. */
static int open_run(struct vm *vm)
{
	int r;
	if (arg.run_id) {
		snprintf(vm->run_id, sizeof(vm->run_id), "%s", arg.run_id);
		r = run_add_process(vm->homefd, vm->run_id, RUN_OWNERS, NULL, getpid());
		if (r == -ENOENT)
			return log_error("no run '%s' under '%s/" RUN_ROOT "' (make one with run-record new)", vm->run_id,
					 vm->home),
			       EXIT_LAUNCH;
	} else {
		if ((r = run_id_new(vm->run_id)) == 0 && (r = run_create(vm->homefd, vm->run_id, getpid())) == 0)
			vm->own_run = true;
	}
	if (r < 0) {
		log_sys(r, "cannot set up the run '%s'", vm->run_id);
		vm->run_id[0] = 0;
		return EXIT_LAUNCH;
	}
	snprintf(vm->run_dir, sizeof(vm->run_dir), "%s/" RUN_ROOT "/%s", vm->home, vm->run_id);
	/* the one id: every log line of this run carries it */
	if (!getenv("BOXKIT_OP_ID")) {
		setenv("BOXKIT_OP_ID", vm->run_id, 1);
		log_init("vm-launch");
	}
	return 0;
}

int main(int argc, char **argv)
{
	cleanup_free char *home = NULL, *config = NULL;
	struct vm vm = { .ctl = -1, .qemu = -1, .sockdir = -1, .volfd = -1, .homefd = -1, .vfsd_bin = -1 };
	size_t config_len = 0;
	sigset_t mask;
	int r;

	log_init(argv[0]);
	if (parse_argv(argc, argv) < 0)
		return EXIT_LAUNCH;
	if ((r = boxkit_home_canon(arg.home, true, &home)) < 0) {
		log_sys(r, "cannot use the boxkit home (set --home, BOXKIT_HOME or HOME)");
		return EXIT_LAUNCH;
	}
	/* signals are handled through a signalfd in the relay. An ignored signal
	 * never reaches a signalfd, and a shell starts background jobs with
	 * SIGINT ignored: take the default dispositions back first. */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (arg.probe_only)
		return probe_print(home);
	snprintf(vm.home, sizeof(vm.home), "%s", home);
	vm.homefd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (vm.homefd < 0)
		return log_sys(errno, "cannot open the home '%s'", home), EXIT_LAUNCH;
	r = open_run(&vm);
	if (r == 0)
		r = vm_prepare(&vm, &config, &config_len);
	if (r == 0)
		r = shares_start(&vm);
	if (r == 0)
		r = vm_start(&vm);
	if (r == 0)
		r = relay(&vm, config, config_len);
	vm_cleanup(&vm);
	close(vm.homefd);
	if (close_stdout() < 0 && r == 0)
		r = EXIT_LAUNCH;
	return r;
}
