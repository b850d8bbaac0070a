/* SPDX-License-Identifier: MIT */
/* vm-launch: boot a QEMU microvm with a boxkit guest, hand the guest init its
 * plan over a virtio-serial port, relay the workload's stdin, stdout, stderr
 * and exit status, and leave nothing behind. QEMU runs jailed: in the chroot
 * chroot-stage made, as its unprivileged uid, with no capabilities,
 * no_new_privs, a seccomp filter, PR_SET_PDEATHSIG and a descriptor limit. */
#include "common.h"
#include "guest-abi.h"
#include "launch.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
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
	      "  -t, --tty           give the command a terminal (stdin must be one; it goes raw\n"
	      "                      and is restored at exit; the window size follows)\n"
	      "  -d, --detach        a sandbox: boot, return once the container is up, and\n"
	      "                      leave a monitor serving <run dir>/monitor.sock (box-ctl)\n"
	      "                      until it is stopped; the config's command, if any, runs\n"
	      "                      first with its output in the console log\n"
	      "  --rm                with --detach: remove the sandbox's record and logs too\n"
	      "                      when it stops (else they stay until run-record rm)\n"
	      "  --network MODE      none (default: no network device) or user: passt, a\n"
	      "                      user-mode stack outside the guest, jailed, with the\n"
	      "                      egress policy (never this host's own addresses); or\n"
	      "                      netns:PATH (for OCI runtimes): the guest takes over the\n"
	      "                      interface of the network namespace PATH (/run/netns/NAME,\n"
	      "                      /proc/PID/ns/net) through a tap and tc redirects; the\n"
	      "                      engine that made it owns the network policy\n"
	      "  --publish SPEC      [IP:]HOSTPORT:GUESTPORT[/tcp|udp]: a guest port on the\n"
	      "                      host, bound to 127.0.0.1 unless IP is given (repeatable)\n"
	      "  --dns IP            the guest's resolver (repeatable, at most 3; default: the\n"
	      "                      host's, if not this host's own)\n"
	      "  --allow-net CIDR[:PORT]  with any, the guest reaches only these (repeatable)\n"
	      "  --passt PATH        the passt binary (default: make deps's build/passt/passt)\n"
	      "  --net-user NAME     the network helper's user (default boxkit-net)\n"
	      "  --warm              start from a saved VM of this run's key (kernel, images,\n"
	      "                      memory, CPUs, the config but its command, environment and\n"
	      "                      working directory) in <home>/warm, restored and reseeded;\n"
	      "                      when there is none, boot, save one, and go on; a run\n"
	      "                      with volumes or a network, or with QEMU not jailed,\n"
	      "                      starts cold (-v says why); --detach too restores\n"
	      "  --warm-save         only save the VM of this run's key (run nothing); 0 when\n"
	      "                      saved\n"
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
	enum {
		O_CONFIG = 256,
		O_KERNEL,
		O_SYSTEM,
		O_ROOTFS,
		O_VOLUMES,
		O_MEMORY,
		O_CPUS,
		O_TIMEOUT,
		O_ACCEL,
		O_CHROOT,
		O_RUN,
		O_QEMU,
		O_HOME,
		O_PROBE,
		O_VFSD_HANDLES,
		O_RM,
		O_NETWORK,
		O_PUBLISH,
		O_DNS,
		O_ALLOW,
		O_PASST,
		O_NET_USER,
		O_WARM,
		O_WARM_SAVE
	};
	static const struct option opts[] = {
		{ "config", required_argument, NULL, O_CONFIG },
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "system", required_argument, NULL, O_SYSTEM },
		{ "rootfs", required_argument, NULL, O_ROOTFS },
		{ "volumes", required_argument, NULL, O_VOLUMES },
		{ "memory", required_argument, NULL, O_MEMORY },
		{ "cpus", required_argument, NULL, O_CPUS },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "accel", required_argument, NULL, O_ACCEL },
		{ "chroot", required_argument, NULL, O_CHROOT },
		{ "run", required_argument, NULL, O_RUN },
		{ "qemu", required_argument, NULL, O_QEMU },
		{ "home", required_argument, NULL, O_HOME },
		{ "probe-accel", no_argument, NULL, O_PROBE },
		{ "tty", no_argument, NULL, 't' },
		{ "detach", no_argument, NULL, 'd' },
		{ "rm", no_argument, NULL, O_RM },
		{ "network", required_argument, NULL, O_NETWORK },
		{ "publish", required_argument, NULL, O_PUBLISH },
		{ "dns", required_argument, NULL, O_DNS },
		{ "allow-net", required_argument, NULL, O_ALLOW },
		{ "passt", required_argument, NULL, O_PASST },
		{ "net-user", required_argument, NULL, O_NET_USER },
		{ "warm", no_argument, NULL, O_WARM },
		{ "warm-save", no_argument, NULL, O_WARM_SAVE },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	char *end, msg[512];
	while ((c = getopt_long(argc, argv, "hvtd", opts, NULL)) != -1) {
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
			if (*end || end == optarg || !(arg.timeout >= 0.001) || arg.timeout > 86400 * 7) {
				log_error("--timeout '%s' must be a number of seconds from 0.001 to 604800", optarg);
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
		case 't': arg.tty = true; break;
		case 'd': arg.detach = true; break;
		case O_RM: arg.rm = true; break;
		case O_NETWORK:
			arg.net_user = false;
			arg.netns = NULL;
			if (!strncmp(optarg, "netns:", 6)) {
				if (optarg[6] != '/') {
					log_error("--network '%s': netns:PATH needs the absolute path of a network "
						  "namespace (/run/netns/NAME, /proc/PID/ns/net)",
						  optarg);
					return -1;
				}
				arg.netns = optarg + 6;
			} else if (strcmp(optarg, "none") && strcmp(optarg, "user")) {
				log_error("--network '%s': use none or user (or netns:PATH, a network namespace)",
					  optarg);
				return -1;
			} else
				arg.net_user = !strcmp(optarg, "user");
			break;
		case O_PUBLISH:
			if (arg.npublish == NET_PUBLISH_MAX)
				return log_error("at most %d --publish", NET_PUBLISH_MAX), -1;
			if (netspec_publish(optarg, &arg.publish[arg.npublish++], msg, sizeof(msg)) < 0)
				return log_error("%s", msg), -1;
			/* passt answers each UDP client through a socket it connect()s to
			 * the client, which the egress policy must refuse for this host's
			 * own addresses (and for what --allow-net leaves out): refused by
			 * name rather than published and silently dropped */
			if (arg.publish[arg.npublish - 1].proto == IPPROTO_UDP)
				return log_error(
					       "--publish '%s': UDP ports cannot be published yet (passt answers each "
					       "UDP client through a connection the egress policy refuses); TCP can",
					       optarg),
				       -1;
			break;
		case O_DNS:
			if (arg.ndns == NET_DNS_MAX)
				return log_error("at most %d --dns (what resolv.conf honours)", NET_DNS_MAX), -1;
			if (netspec_dns(optarg, &arg.dns[arg.ndns++], msg, sizeof(msg)) < 0)
				return log_error("%s", msg), -1;
			arg.dns_given = true;
			break;
		case O_ALLOW:
			if (arg.nallow == NET_ALLOW_MAX - NET_DNS_MAX)
				return log_error("at most %d --allow-net", NET_ALLOW_MAX - NET_DNS_MAX), -1;
			if (netspec_allow(optarg, &arg.allow[arg.nallow++], msg, sizeof(msg)) < 0)
				return log_error("%s", msg), -1;
			break;
		case O_PASST: arg.passt = optarg; break;
		case O_NET_USER: arg.net_user_name = optarg; break;
		case O_WARM: arg.warm = true; break;
		case O_WARM_SAVE: arg.warm = arg.warm_save = true; break;
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
	if (arg.netns && (arg.npublish || arg.ndns || arg.nallow)) {
		log_error("--publish, --dns and --allow-net are for --network user: with --network netns the engine "
			  "that made the namespace owns the network (its ports, resolvers and firewall)");
		return -1;
	}
	if (!arg.net_user && (arg.npublish || arg.ndns || arg.nallow)) {
		log_error("--publish, --dns and --allow-net need --network user");
		return -1;
	}
	if (arg.rm && !arg.detach) {
		log_error("--rm is for --detach (a run is always removed when it ends)");
		return -1;
	}
	if (arg.tty && arg.detach) {
		log_error("--tty and --detach do not go together (box-ctl exec --tty gives a terminal to a sandbox)");
		return -1;
	}
	if (arg.warm_save && (arg.detach || arg.tty)) {
		log_error("--warm-save runs nothing: --detach and --tty have no meaning with it");
		return -1;
	}
	if (arg.tty && !isatty(STDIN_FILENO)) {
		log_error("--tty needs a terminal on stdin (run it from one, or leave out -t)");
		return -1;
	}
	return 0;
}

/* --detach: the caller waits until the sandbox is ready (0) or has failed
 * (the monitor's status, its errors on our stderr); a signal meanwhile goes
 * on to the monitor, which stops the VM and cleans up. The monitor is a
 * session of its own, with /dev/null for stdin and stdout (a caller reading
 * our stdout gets its EOF), and its stderr in monitor.log once ready. */
static int detach(struct vm *vm)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return log_sys(errno, "pipe"), EXIT_LAUNCH;
	pid_t pid = fork();
	if (pid < 0)
		return log_sys(errno, "fork"), EXIT_LAUNCH;
	if (pid == 0) {
		close(p[0]);
		vm->ready_fd = p[1];
		setsid();
		/* nothing of the caller's but stdio stays open for the sandbox's life */
		if (p[1] > 3)
			close_range(3, (unsigned)p[1] - 1, 0);
		close_range((unsigned)p[1] + 1, ~0U, 0);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(null, STDOUT_FILENO) < 0)
			_exit(EXIT_LAUNCH);
		close(null);
		return -1; /* go on: the monitor */
	}
	close(p[1]);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	char c = 0;
	for (;;) {
		struct pollfd pf[2] = { { p[0], POLLIN, 0 }, { sfd, POLLIN, 0 } };
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si))
				kill(pid, (int)si.ssi_signo);
		}
		if (pf[0].revents) {
			if (read(p[0], &c, 1) != 1)
				c = 0;
			break;
		}
	}
	close(p[0]);
	if (c == '1')
		return 0;
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
	}
	return WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : EXIT_LAUNCH;
}

/* The one place a run's outcome becomes vm-launch's exit status. */
static int exit_status(const struct vm *vm, const struct outcome *oc)
{
	if (oc->output_errno) {
		log_error("cannot write the workload's output: %s", strerror(oc->output_errno));
		return EXIT_LAUNCH;
	}
	if (oc->status >= 0)
		return oc->status; /* the workload's own, also after a signal it handled */
	if (oc->sig)
		return 128 + oc->sig;
	if (oc->timed_out)
		return EXIT_LAUNCH;
	if (oc->fail[0]) {
		log_error("guest init failed: %s", oc->fail);
		print_console_tail(vm->run_dir);
		return EXIT_LAUNCH;
	}
	if (oc->failed)
		return EXIT_LAUNCH;
	if (WIFSIGNALED(vm->qemu_status) && WTERMSIG(vm->qemu_status) == SIGSYS) {
		log_error("QEMU was killed by its seccomp filter: it made a system call that is not on its allow-list "
			  "(tools/vm-launch/vm.c; tools/dev/qemu-syscalls measures the list, and a test build can log "
			  "instead of kill)");
		return EXIT_LAUNCH;
	}
	log_error("the VM stopped without reporting an exit status (kernel panic or init failure)");
	print_console_tail(vm->run_dir);
	return EXIT_LAUNCH;
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
			return log_error("no run '%s' under '%s/" RUN_ROOT "' (make one with run-record new)",
					 vm->run_id, vm->home),
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

/* A saved VM that could not be restored (QEMU refused the stream, the
 * digest did not match, the copy never said RESUMED): nothing of the run
 * reached it, so the run boots cold, and saves the VM again. */
static int warm_fallback(struct vm *vm, const char *config, size_t config_len, struct outcome *oc)
{
	vm_kill(vm); /* first: the feeder may be blocked on QEMU's pipe */
	int fr = warm_feed_result(vm);
	log_warn("the saved VM %s/warm/%s could not be restored (%s): booting cold, and saving it again", vm->home,
		 vm->warm.key,
		 fr == -EBADMSG ? "its digest does not match its record"
		 : fr < 0	? "QEMU did not take all of it"
				: "QEMU refused it or the copy did not come alive; its console log is console.log.1");
	vm_kill(vm);
	if (vm->qemu > 0)
		waitpid(vm->qemu, NULL, 0);
	vm->qemu = -1;
	if (vm->ctl >= 0)
		close(vm->ctl);
	vm->ctl = -1;
	warm_discard(vm);
	warm_close(vm);
	vm->warm.mode = WARM_BUILD;
	int q[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, q) < 0)
		return log_sys(errno, "socketpair"), EXIT_LAUNCH;
	vm->warm.qmp = q[0];
	vm->warm.qmp_qemu = q[1];
	*oc = (struct outcome){ .status = -1 };
	if (vm_start(vm))
		return EXIT_LAUNCH;
	return relay_run(vm, config, config_len, oc) < 0 ? EXIT_LAUNCH : 0;
}

static int launcher_main(int argc, char **argv)
{
	cleanup_free char *home = NULL, *config = NULL;
	struct vm vm = {
		.ctl = -1,
		.ready_fd = -1,
		.qemu = -1,
		.sockdir = -1,
		.volfd = -1,
		.homefd = -1,
		.vfsd_bin = -1,
		.console_fd = -1,
		.console_pipe = -1,
		.net = { .cgroup = -1, .qemu_end = -1, .passt = -1, .passt_bin = -1, .log.fd = -1, .egress.nl = -1 },
		.warm = { .state_fd = -1, .qemu_in = -1, .feed_fd = -1, .qmp = -1, .qmp_qemu = -1 }
	};
	struct outcome oc = { .status = -1 };
	size_t config_len = 0;
	sigset_t mask;
	int r;

	vm.net.ns_fd = -1; /* --network netns: the namespace, once open */
	log_init(argv[0]);
	/* a closed stdio descriptor would be taken by one of ours (the control
	 * socket, the console log) and the workload's output would go there */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", fd ? O_WRONLY : O_RDONLY) != fd)
			return EXIT_LAUNCH;
	if (parse_argv(argc, argv) < 0)
		return EXIT_LAUNCH;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	/* before any thread: the monitor is the forked child */
	if (arg.detach && !arg.probe_only && (r = detach(&vm)) >= 0)
		return r;
	/* our own lines must never block on a caller that stops reading stderr */
	log_async();
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
	sigaddset(&mask, SIGWINCH);
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
	if (r == 0 && arg.warm && (r = warm_prepare(&vm, config, config_len)) < 0)
		r = log_sys(r, "warm start");
	if (r == 0 && arg.warm_save && vm.warm.mode != WARM_WANTED) {
		log_error("--warm-save: this run cannot start warm (-v says why)");
		r = EXIT_LAUNCH;
	}
	vm.warm.only_save = arg.warm_save;
	if (r == 0)
		r = shares_start(&vm);
	if (r == 0)
		r = net_start(&vm);
	if (r == 0)
		r = vm_start(&vm);
	if (r == 0 && arg.tty && (r = term_raw(STDIN_FILENO)) < 0)
		r = log_sys(r, "cannot put the terminal in raw mode");
	if (r == 0 && arg.detach) {
		r = relay_run(&vm, config, config_len, &oc) < 0 ? EXIT_LAUNCH : 0;
		if (r == 0 && oc.resume_failed && vm.warm.mode == WARM_RESTORE)
			r = warm_fallback(&vm, config, config_len, &oc);
		if (r == 0 && oc.failed)
			r = EXIT_LAUNCH;
		if (oc.fail[0]) {
			log_error("guest init failed: %s", oc.fail);
			print_console_tail(vm.run_dir);
		}
	} else if (r == 0) {
		r = relay_run(&vm, config, config_len, &oc) < 0 ? EXIT_LAUNCH : 0;
		if (r == 0 && oc.resume_failed && vm.warm.mode == WARM_RESTORE)
			r = warm_fallback(&vm, config, config_len, &oc);
		if (r == 0)
			r = arg.warm_save ? (oc.saved ? 0 : EXIT_LAUNCH) : exit_status(&vm, &oc);
	} else
		r = EXIT_LAUNCH; /* every failure before the relay is a launcher failure */
	term_restore();
	vm_kill(&vm); /* before the feeder is joined: it may wait on QEMU's pipe */
	warm_close(&vm);
	json_object_put(vm.warm.serving);
	vm_cleanup(&vm);
	if (arg.detach && arg.rm && vm.run_id[0]) {
		char err[1024] = "";
		if (run_cleanup(vm.homefd, vm.run_id, err, sizeof(err)) < 0)
			log_warn("%s (box gc retries)", err);
	} else if (arg.detach && vm.run_id[0]) {
		/* the sandbox's record stays (box ls, box logs) until box rm */
		int k = run_stop(vm.homefd, vm.run_id,
				 oc.failed	 ? "failed"
				 : oc.timed_out	 ? "timeout"
				 : oc.stop_asked ? "stopped"
						 : "vm-exited",
				 -1);
		if (k < 0)
			log_sys(k, "cannot mark the sandbox stopped");
		log_info("the sandbox stopped");
	}
	if (vm.ready_fd >= 0)
		close(vm.ready_fd); /* never ready: the parent reports our status */
	/* the stop is done (everything removed, the record marked): now say so */
	for (int i = 0; i < vm.nstoppers; i++) {
		static const unsigned char exit0[FRAME_HDR + 4] = { FR_EXIT, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0 };
		if (send(vm.stoppers[i], exit0, sizeof(exit0), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			log_debug("a stopper is gone");
		close(vm.stoppers[i]);
	}
	close(vm.homefd);
	if (close_stdout() < 0 && r == 0)
		r = EXIT_LAUNCH;
	return r;
}

/* every failure of vm-launch's own is 125, never a value a workload could
 * also return (a system failure's 3 included) */
int main(int argc, char **argv)
{
	int r = launcher_main(argc, argv);
	log_flush(1000);
	return r < 0 ? EXIT_LAUNCH : r;
}
