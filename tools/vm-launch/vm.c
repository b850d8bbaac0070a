/* SPDX-License-Identifier: MIT */
#include "common.h"
#include "guest-abi.h"
#include "launch.h"
#include "runrec.h"
#include "spawn.h"
#include "testhook.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

double vm_elapsed(const struct vm *vm)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - vm->t0.tv_sec) + (double)(now.tv_nsec - vm->t0.tv_nsec) / 1e9;
}

int artifact_path(const char *envvar, const char *sub, const char *name, char *out, size_t outlen)
{
	const char *e = getenv(envvar);
	char exe[PATH_MAX];
	if (e && *e) {
		snprintf(out, outlen, "%s/%s", e, name);
		return 0;
	}
	/* <top>/bin/vm-launch or <top>/build/asan/bin/vm-launch */
	int r = self_dir(exe, sizeof(exe));
	if (r < 0)
		return r;
	for (int up = 0; up < 4; up++) {
		char cand[PATH_MAX + 64];
		snprintf(cand, sizeof(cand), "%s/build/%s", exe, sub);
		struct stat st;
		if (stat(cand, &st) == 0 && S_ISDIR(st.st_mode)) {
			snprintf(out, outlen, "%s/%s", cand, name);
			return 0;
		}
		char *s = strrchr(exe, '/');
		if (!s)
			break;
		*s = 0;
	}
	return -ENOENT;
}

static int json_str_into(struct json_object *o, const char *key, char *out, size_t outlen)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return -ENOENT;
	snprintf(out, outlen, "%s", json_object_get_string(v));
	return 0;
}

static int load_chroot(struct vm *vm)
{
	cleanup_free char *text = NULL;
	size_t len;
	int r = read_small_file(arg.chroot_json, 65536, &text, &len);
	if (r < 0)
		return log_error("cannot read --chroot '%s': %s", arg.chroot_json, strerror(-r)), EXIT_LAUNCH;
	cleanup_json struct json_object *o = json_tokener_parse(text);
	struct json_object *v, *drives;
	if (!o || json_str_into(o, "root", vm->root, sizeof(vm->root)) ||
	    json_str_into(o, "vmm", vm->vmm_in, sizeof(vm->vmm_in)) ||
	    json_str_into(o, "kernel", vm->kernel_in, sizeof(vm->kernel_in)) ||
	    !json_object_object_get_ex(o, "drives", &drives) || json_object_array_length(drives) != 2) {
		log_error("--chroot '%s': needs root, vmm, kernel and two drives (system, rootfs) from chroot-stage",
			  arg.chroot_json);
		return EXIT_LAUNCH;
	}
	for (int i = 0; i < 2; i++)
		snprintf(vm->drives_in[i], sizeof(vm->drives_in[i]), "%s",
			 json_object_get_string(json_object_array_get_idx(drives, (size_t)i)));
	if (!json_object_object_get_ex(o, "uid", &v) || !json_object_is_type(v, json_type_int))
		return log_error("--chroot: no uid"), EXIT_LAUNCH;
	vm->uid = (uid_t)json_object_get_int64(v);
	if (!json_object_object_get_ex(o, "gid", &v) || !json_object_is_type(v, json_type_int))
		return log_error("--chroot: no gid"), EXIT_LAUNCH;
	vm->gid = (gid_t)json_object_get_int64(v);
	if (vm->uid == 0 || vm->gid == 0) {
		log_error("--chroot: refusing to run the VMM as uid or gid 0");
		return EXIT_LAUNCH;
	}
	/* read-only binds, made in the VMM's own mount namespace */
	struct json_object *binds;
	if (json_object_object_get_ex(o, "binds", &binds)) {
		size_t nb = json_object_is_type(binds, json_type_array) ? json_object_array_length(binds) : 0;
		if (!json_object_is_type(binds, json_type_array) || nb > 32)
			return log_error("--chroot: binds must be a list of at most 32"), EXIT_LAUNCH;
		vm->binds = calloc(nb ? nb : 1, sizeof(*vm->binds));
		if (!vm->binds)
			return log_sys(ENOMEM, "out of memory"), EXIT_LAUNCH;
		for (size_t i = 0; i < nb; i++) {
			struct json_object *b = json_object_array_get_idx(binds, i);
			char *src = vm->binds[i].source, *dst = vm->binds[i].target;
			if (json_str_into(b, "source", src, sizeof(vm->binds[i].source)) ||
			    json_str_into(b, "target", dst, sizeof(vm->binds[i].target)) || src[0] != '/' ||
			    dst[0] != '/' || !path_is_clean_relative(dst + 1))
				return log_error("--chroot: bind %zu needs an absolute source and a clean absolute "
						 "target",
						 i + 1),
				       EXIT_LAUNCH;
		}
		vm->nbinds = (int)nb;
	}
	vm->jailed = true;
	return 0;
}

static int resolve_file(const char *what, const char *given, const char *envvar, const char *sub, const char *dflt,
			const char *hint, char *out, size_t outlen)
{
	struct stat st;
	if (given)
		snprintf(out, outlen, "%s", given);
	else if (!envvar || artifact_path(envvar, sub, dflt, out, outlen) < 0) {
		log_error("no %s found: %s", what, hint);
		return EXIT_LAUNCH;
	}
	if (stat(out, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_error("%s '%s' not found: %s", what, out, hint);
		return EXIT_LAUNCH;
	}
	return 0;
}

int vm_prepare(struct vm *vm, char **config, size_t *config_len)
{
	int r;
	clock_gettime(CLOCK_MONOTONIC, &vm->t0);
	/* the kernel: a variant name or a path */
	if (!arg.kernel || !strcmp(arg.kernel, "lean") || !strcmp(arg.kernel, "net")) {
		const char *v = arg.kernel ? arg.kernel : "lean";
		char name[64], hint[128];
		/* the uncompressed vmlinux boots through PVH: no decompressor, about
		 * half the time to init of the bzImage under TCG (make bench-boot) */
		snprintf(name, sizeof(name), "%s/vmlinux", v);
		snprintf(hint, sizeof(hint), "build it with 'make kernel-%s'", v);
		if ((r = resolve_file("kernel", NULL, "BOXKIT_KERNEL_DIR", "kernels", name, hint, vm->kernel,
				      sizeof(vm->kernel))))
			return r;
	} else if ((r = resolve_file("kernel", arg.kernel, NULL, NULL, NULL, "give a bzImage path, lean or net",
				     vm->kernel, sizeof(vm->kernel))))
		return r;
	if ((r = resolve_file("system image", arg.system, "BOXKIT_IMAGE_DIR", "images", "system.ext4",
			      "build it with 'make image'", vm->system, sizeof(vm->system))))
		return r;
	if ((r = resolve_file("rootfs image", arg.rootfs, "BOXKIT_IMAGE_DIR", "images", "rootfs.ext4",
			      "build it with 'make image'", vm->rootfs, sizeof(vm->rootfs))))
		return r;
	r = read_small_file(arg.config, 1 << 20, config, config_len);
	if (r < 0) {
		log_error("cannot read --config '%s': %s", arg.config, strerror(-r));
		return EXIT_LAUNCH;
	}
	{
		cleanup_json struct json_object *o = json_tokener_parse(*config);
		if (!o || !json_object_is_type(o, json_type_object)) {
			log_error("--config '%s' is not a JSON object", arg.config);
			return EXIT_LAUNCH;
		}
		struct json_object *lx, *nss;
		if ((arg.net_user || arg.netns) && json_object_object_get_ex(o, "linux", &lx) &&
		    json_object_object_get_ex(lx, "namespaces", &nss) && json_object_is_type(nss, json_type_array))
			for (size_t i = 0; i < json_object_array_length(nss); i++) {
				struct json_object *t;
				if (json_object_object_get_ex(json_object_array_get_idx(nss, i), "type", &t) &&
				    !strcmp(json_object_get_string(t), "network")) {
					log_error(
						"--config '%s' gives the container a network namespace of its own, "
						"which the VM's network is not in: make it with oci-spec --network vm",
						arg.config);
					return EXIT_LAUNCH;
				}
			}
	}
	if (arg.chroot_json && (r = load_chroot(vm)))
		return r;
	if (arg.volumes && (r = shares_prepare(vm)))
		return r;
	if ((r = net_prepare(vm)))
		return r;
	const char *why = NULL;
	if ((r = accel_choose(vm->home, arg.qemu, vm->kernel, arg.accel, &vm->accel, &why)))
		return r;
	log_debug("accelerator: %s (%s)", vm->accel, why);
	snprintf(vm->console, sizeof(vm->console), "%s/console.log", vm->run_dir);
	return 0;
}

/* ---- the jail, in the child, before exec ---------------------------------------------- */

#define FAIL(e, ...)                                                                                                   \
	({                                                                                                             \
		snprintf(err, errlen, __VA_ARGS__);                                                                    \
		return -(e);                                                                                           \
	})

/* In QEMU's new mount (and PID, IPC, UTS, network) namespace, as root: the
 * chroot becomes a mount of its own, the library directories are bound in
 * read-only, nosuid, nodev (only in this namespace: the host's never holds a
 * mount of the jail), then pivot_root into it and the old root detached (so
 * nothing outside the jail is reachable, unlike a plain chroot), then the
 * uid drop and the descriptor limit. */
static int qemu_setup(void *p, char *err, size_t errlen)
{
	struct vm *vm = p;
	struct rlimit rl = { 1024, 1024 }, core = { 0, 0 };
	int r;
	if (vm->jailed) {
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			FAIL(errno, "make mounts private");
		if (mount(vm->root, vm->root, NULL, MS_BIND, NULL) < 0)
			FAIL(errno, "bind the jail onto itself");
		cleanup_close int rootfd = open(vm->root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (rootfd < 0)
			FAIL(errno, "open the jail");
		for (int i = 0; i < vm->nbinds; i++) {
			cleanup_close int tree = sys_open_tree(AT_FDCWD, vm->binds[i].source,
							       OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
			struct mount_attr ma = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV };
			if (tree < 0 ||
			    syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &ma, sizeof(ma)) < 0)
				FAIL(errno, "bind '%s' read-only", vm->binds[i].source);
			cleanup_close int at = open_beneath(rootfd, vm->binds[i].target + 1, O_PATH | O_DIRECTORY, 0);
			if (at < 0)
				FAIL(-at, "open the bind point '%s' in the jail", vm->binds[i].target);
			if (sys_move_mount(tree, "", at, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
				FAIL(errno, "bind '%s' at '%s'", vm->binds[i].source, vm->binds[i].target);
		}
		if (chdir(vm->root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
		    chdir("/") < 0)
			FAIL(errno, "pivot_root into the jail");
		if ((r = drop_to_user(vm->uid, vm->gid, -1)) < 0)
			FAIL(-r, "drop to the VM's uid");
	}
	/* no core dump (it would be the size of the guest's memory) */
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || setrlimit(RLIMIT_CORE, &core) < 0)
		FAIL(errno, "setrlimit");
	return 0;
}

static int load_filter(bool warm);

/* in the parent, before QEMU may run: the record first */
static int qemu_forked(void *p, pid_t pid)
{
	struct vm *vm = p;
	return run_add_process(vm->homefd, vm->run_id, RUN_PROCESSES, "qemu", pid);
}

/* last, just before exec: no_new_privs, an empty capability set, seccomp */
static int qemu_final(void *p, char *err, size_t errlen)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = { { 0 } };
	int r;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		FAIL(errno, "no_new_privs");
	if (syscall(SYS_capset, &h, d) < 0)
		FAIL(errno, "capset");
	if ((r = load_filter(((struct vm *)p)->warm.mode == WARM_RESTORE ||
			     ((struct vm *)p)->warm.mode == WARM_BUILD)) < 0)
		FAIL(-r, "seccomp");
	return 0;
}

/* QEMU's seccomp filter: an allow-list, everything else kills the process.
 *
 * How the list was made (tools/dev/qemu-syscalls does it again): the real
 * workloads were run with QEMU under `strace -ff --pidns-translation` — a
 * plain run, a run with two CPUs, stdin and stdout traffic and four volumes
 * (a directory, a file mount, a read-only one, an anonymous one written and
 * read through), a run ended by --timeout — and every system call made by
 * QEMU and its threads from its execve on was listed: 59 calls under TCG,
 * measured with io_uring_setup answering ENOSYS (it is refused here: a large
 * kernel surface; QEMU then falls back to epoll and ppoll). clone only makes
 * threads, clone3 answers ENOSYS
 * (glibc falls back to clone), socket only for AF_UNIX. Added by reading,
 * for paths the measured runs do not reach: thread exit, signal return and
 * thread kicks (rt_sigreturn, tgkill, sigaltstack, restart_syscall; KVM
 * vCPUs are kicked with signals), membarrier (QEMU's RCU), sched_yield,
 * nanosleep, and epoll_ctl and epoll_pwait (QEMU's event loop switches to
 * its epoll, created above, when it watches many descriptors). QEMU's own -sandbox adds its deny-list (no execve after
 * start-up) on top. */
static const char *const qemu_syscalls[] = {
	/* measured */
	"access",
	"arch_prctl",
	"brk",
	"clock_nanosleep",
	"close",
	"connect",
	"epoll_create1",
	"eventfd2",
	"execve",
	"exit_group",
	"fcntl",
	"fstatfs",
	"ftruncate",
	"futex",
	"get_mempolicy",
	"getpeername",
	"getrandom",
	"getsockname",
	"getsockopt",
	"gettid",
	"ioctl",
	"lseek",
	"madvise",
	"memfd_create",
	"mmap",
	"mprotect",
	"mremap",
	"munmap",
	"newfstatat",
	"openat",
	"ppoll",
	"pread64",
	"preadv",
	"read",
	"readlink",
	"readv",
	"recvmsg",
	"rseq",
	"rt_sigaction",
	"rt_sigprocmask",
	"sched_getaffinity",
	"seccomp",
	"sendmsg",
	"set_mempolicy",
	"set_robust_list",
	"set_tid_address",
	"setsockopt",
	"signalfd4",
	"socketpair",
	"statfs",
	"sysinfo",
	"write",
	"writev",
	/* by reading: paths the measured runs do not reach */
	"exit",
	"rt_sigreturn",
	"tgkill",
	"sigaltstack",
	"restart_syscall",
	"membarrier",
	"sched_yield",
	"nanosleep",
	"epoll_ctl",
	"epoll_pwait",
	"epoll_wait",
};
/* only in a warm save (QEMU's monitor and its migration to a descriptor it
 * was handed: glib's poll, and a directory walk) or restore (-incoming on a
 * pipe: a read-ahead hint), measured */
static const char *const qemu_syscalls_warm[] = { "poll", "getdents64", "fchdir", "fadvise64" };

/* A test build can log instead of kill (BOXKIT_TEST_SECCOMP_LOG=1), to
 * find a missing call. */
static int load_filter(bool warm)
{
	uint32_t deflt = test_getenv("BOXKIT_TEST_SECCOMP_LOG") ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS;
	scmp_filter_ctx ctx = seccomp_init(deflt);
	int r = 0;
	if (!ctx)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(qemu_syscalls) && r == 0; i++) {
		int nr = seccomp_syscall_resolve_name(qemu_syscalls[i]);
		if (nr < 0)
			continue;
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	}
	for (size_t i = 0; warm && i < ARRAY_SIZE(qemu_syscalls_warm) && r == 0; i++) {
		int nr = seccomp_syscall_resolve_name(qemu_syscalls_warm[i]);
		if (nr >= 0)
			r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	}
	/* threads only: a new process would be a spawn */
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(io_uring_setup), 0);
	/* prctl: only what QEMU was seen to use (and naming its threads); a
	 * PR_SET_PDEATHSIG or PR_SET_DUMPABLE from a compromised QEMU kills it */
	static const int prctl_ok[] = { PR_MCE_KILL, PR_SET_NO_NEW_PRIVS, PR_SET_TIMERSLACK, PR_SET_NAME, PR_GET_NAME };
	for (size_t i = 0; i < ARRAY_SIZE(prctl_ok) && r == 0; i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
				     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)prctl_ok[i]));
	/* its own limits only */
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1, SCMP_A0(SCMP_CMP_EQ, 0));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
				     SCMP_A0(SCMP_CMP_NE, AF_UNIX));
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	return r;
}

#define KERNEL_CMDLINE                                                                                                 \
	"console=ttyS0 quiet panic=-1 reboot=t root=/dev/vda ro rootfstype=ext4 init=/sbin/boxkit-init tsc=reliable "  \
	"no_timer_check pty.legacy_count=0"
#define KERNEL_CMDLINE_TCG "noapictimer"

static void add(char **argv, int *n, const char *s)
{
	argv[(*n)++] = (char *)s;
}

int vm_start(struct vm *vm)
{
	int sv[2];
	char mem[32], smp[32], fdopt[64], drive0[4300], drive1[4300], machine[128], accel[64];
	char *argv[64 + 4 * 64];
	char memobj[128], shareargs[64][2][4400];
	int n = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return log_sys(errno, "socketpair"), EXIT_LAUNCH;
	/* root's, in the root-owned run directory: QEMU writes it through the
	 * descriptor it is handed, never by name */
	if (vm->warm.mode == WARM_BUILD) {
		/* a second start (a restore failed): its console is kept beside */
		char old[4400];
		snprintf(old, sizeof(old), "%s.1", vm->console);
		rename(vm->console, old);
	}
	vm->console_fd = open(vm->console, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (vm->console_fd < 0)
		return log_sys(errno, "cannot create '%s'", vm->console), EXIT_LAUNCH;
	/* QEMU writes the console into a pipe; the relay copies it into the log
	 * with a size limit (a guest can write to its console without end) */
	int cp[2];
	if (pipe2(cp, O_CLOEXEC) < 0)
		return log_sys(errno, "pipe"), EXIT_LAUNCH;
	vm->console_pipe = cp[0];
	fcntl(cp[0], F_SETFL, O_NONBLOCK);
	int con = cp[1];

	const int qfd = 3; /* QEMU's end of the control socket */
	snprintf(mem, sizeof(mem), "%ld", arg.memory);
	snprintf(smp, sizeof(smp), "%ld", arg.cpus);
	snprintf(fdopt, sizeof(fdopt), "socket,id=ctl,fd=%d", qfd);
	/* suppress-vmdesc: a saved VM's stream ends with its last device's state
	 * (QEMU ignores a description cut short after it, and would start a copy
	 * whose held-back tail never came: warm.c) */
	snprintf(machine, sizeof(machine), "microvm,acpi=off,rtc=on,suppress-vmdesc=on%s",
		 vm->nvols ? ",memory-backend=mem" : "");
	snprintf(memobj, sizeof(memobj), "memory-backend-memfd,id=mem,size=%ldM,share=on", arg.memory);
	if (vm->nvols > 64)
		return log_error("at most 64 volumes"), EXIT_LAUNCH;
	snprintf(accel, sizeof(accel), "%s", vm->accel);
	const char *kernel = vm->jailed ? vm->kernel_in : vm->kernel;
	snprintf(drive0, sizeof(drive0), "id=sys,file=%s,format=raw,if=none,readonly=on",
		 vm->jailed ? vm->drives_in[0] : vm->system);
	snprintf(drive1, sizeof(drive1), "id=root,file=%s,format=raw,if=none,readonly=on",
		 vm->jailed ? vm->drives_in[1] : vm->rootfs);

	add(argv, &n, vm->jailed ? vm->vmm_in : arg.qemu);
	add(argv, &n, "-M");
	add(argv, &n, machine);
	add(argv, &n, "-accel");
	add(argv, &n, accel);
	if (!strcmp(vm->accel, "kvm")) {
		add(argv, &n, "-cpu");
		add(argv, &n, "host");
	}
	add(argv, &n, "-m");
	add(argv, &n, mem);
	add(argv, &n, "-smp");
	add(argv, &n, smp);
	if (vm->jailed) {
		/* the copy sits at the chroot's top, where QEMU's relocatable data
		 * path would miss the firmware: name it */
		add(argv, &n, "-L");
		add(argv, &n, "/usr/share/qemu");
	}
	add(argv, &n, "-nodefaults");
	add(argv, &n, "-no-user-config");
	add(argv, &n, "-display");
	add(argv, &n, "none");
	add(argv, &n, "-no-reboot");
	add(argv, &n, "-sandbox");
	add(argv, &n, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	add(argv, &n, "-chardev");
	add(argv, &n, "stdio,id=con,signal=off");
	add(argv, &n, "-serial");
	add(argv, &n, "chardev:con");
	add(argv, &n, "-kernel");
	add(argv, &n, kernel);
	add(argv, &n, "-append");
	/* Measured under TCG here (bench.py boot-options does it again: the
	 * floor, each option alone, interleaved medians):
	 * noapictimer skips the local APIC timer's calibration and its check
	 * (-0.25 s of a 1.1 s floor; TCG has no TSC-deadline timer, and under
	 * KVM that timer skips the calibration anyway, so only for TCG);
	 * pty.legacy_count=0 no legacy ptys to make (-0.05 s); no_timer_check
	 * (-0.03 s); tsc=reliable keeps the TSC as the clock (the clocksource
	 * watchdog marks it unstable under TCG load, and the guest falls back to
	 * 4 ms jiffies). lpj=, 8250.nr_uarts=1, rcu_expedited, trust_cpu,
	 * cryptomgr.notests, pci=off measured nothing; init_on_free=1 costs
	 * 0.6 s; QEMU's tb-size, -cpu models, x-option-roms=off gave nothing,
	 * -smp 2 +0.15 s, rtc=off +2 s. */
	add(argv, &n, !strcmp(vm->accel, "tcg") ? KERNEL_CMDLINE " " KERNEL_CMDLINE_TCG : KERNEL_CMDLINE);
	add(argv, &n, "-drive");
	add(argv, &n, drive0);
	add(argv, &n, "-device");
	add(argv, &n, "virtio-blk-device,drive=sys");
	add(argv, &n, "-drive");
	add(argv, &n, drive1);
	add(argv, &n, "-device");
	add(argv, &n, "virtio-blk-device,drive=root");
	add(argv, &n, "-device");
	add(argv, &n, "virtio-serial-device");
	add(argv, &n, "-chardev");
	add(argv, &n, fdopt);
	add(argv, &n, "-device");
	add(argv, &n, "virtserialport,chardev=ctl,name=" FRAME_PORT_NAME);
	if (vm->nvols) {
		/* vhost-user needs guest memory QEMU can share with the daemons */
		add(argv, &n, "-object");
		add(argv, &n, memobj);
	}
	for (int i = 0; i < vm->nvols; i++) {
		snprintf(shareargs[i][0], sizeof(shareargs[i][0]), "socket,id=vfs%d,path=%s", i,
			 vm->vols[i].sock_in_vmm);
		snprintf(shareargs[i][1], sizeof(shareargs[i][1]), "vhost-user-fs-device,chardev=vfs%d,tag=%s", i,
			 vm->vols[i].e.tag);
		add(argv, &n, "-chardev");
		add(argv, &n, shareargs[i][0]);
		add(argv, &n, "-device");
		add(argv, &n, shareargs[i][1]);
	}
	const int nfd = 4; /* QEMU's end of the stream socket to passt, or the tap (netns) */
	char netdev[128], netdevice[128], mac[18] = "52:54:00:b0:c5:01";
	if (vm->net.on) {
		if (arg.netns) {
			/* the tap in the engine's namespace; the guest wears its interface's MAC */
			snprintf(netdev, sizeof(netdev), "tap,id=net0,fd=%d", nfd);
			netns_mac(vm, mac, sizeof(mac));
		} else
			snprintf(netdev, sizeof(netdev), "stream,id=net0,server=off,addr.type=fd,addr.str=%d", nfd);
		snprintf(netdevice, sizeof(netdevice), "virtio-net-device,netdev=net0,mac=%s", mac);
		add(argv, &n, "-netdev");
		add(argv, &n, netdev);
		add(argv, &n, "-device");
		add(argv, &n, netdevice);
	}
	argv[n] = NULL;
	/* a warm start: the command line so far is part of the saved VM's key */
	const int ifd = 5, mfd = 6; /* QEMU's end of the state's pipe, of its monitor */
	char incoming[32], qmpdev[64];
	if (vm->warm.mode == WARM_WANTED) {
		int k = warm_choose(vm, argv, n);
		if (k < 0) {
			log_sys(k, "warm start: cannot look up the saved VM: booting cold");
			warm_close(vm);
			vm->warm.mode = WARM_OFF;
		}
	}
	if (vm->warm.mode == WARM_RESTORE) {
		snprintf(incoming, sizeof(incoming), "fd:%d", ifd);
		add(argv, &n, "-incoming");
		add(argv, &n, incoming);
	} else if (vm->warm.mode == WARM_BUILD) {
		snprintf(qmpdev, sizeof(qmpdev), "socket,id=qmp,fd=%d", mfd);
		add(argv, &n, "-chardev");
		add(argv, &n, qmpdev);
		add(argv, &n, "-mon");
		add(argv, &n, "chardev=qmp,mode=control");
	}
	argv[n] = NULL;
	if (log_get_level() >= LOG_DEBUG) {
		char line[8192];
		size_t o = 0;
		for (int i = 0; i < n && o < sizeof(line) - 1; i++)
			o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%s", i ? " " : "", argv[i]);
		log_debug("qemu: %s", line);
	}

	/* the QEMU binary: in the jail, or (unjailed) through PATH */
	char qpath[PATH_MAX] = "";
	if (!vm->jailed && !strchr(arg.qemu, '/')) {
		if (path_lookup(arg.qemu, qpath, sizeof(qpath)) < 0)
			return log_error("'%s' not found in PATH", arg.qemu), EXIT_LAUNCH;
	} else
		snprintf(qpath, sizeof(qpath), "%s", vm->jailed ? vm->vmm_in : arg.qemu);
	int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nul < 0)
		return log_sys(errno, "cannot open /dev/null"), EXIT_LAUNCH;
	/* a fixed environment, never the caller's; BOXKIT_RUN_DIR names the run
	 * the process belongs to (for box gc and tests) */
	char runenv[4300];
	snprintf(runenv, sizeof(runenv), "BOXKIT_RUN_DIR=%s", vm->run_dir);
	char *envp[] = { "PATH=/", "LC_ALL=C", runenv, NULL };
	struct spawn_fd fds[6] = { { nul, 0 }, { con, 1 }, { con, 2 }, { sv[1], qfd } };
	int nfds = 4;
	if (vm->net.on)
		fds[nfds++] = (struct spawn_fd){ vm->net.qemu_end, nfd };
	if (vm->warm.mode == WARM_RESTORE)
		fds[nfds++] = (struct spawn_fd){ vm->warm.qemu_in, ifd };
	else if (vm->warm.mode == WARM_BUILD)
		fds[nfds++] = (struct spawn_fd){ vm->warm.qmp_qemu, mfd };
	struct spawn sp = {
		.path = qpath,
		.exec_fd = -1,
		.argv = argv,
		.envp = envp,
		.fds = fds,
		.nfds = (size_t)nfds,
		.ns_flags = vm->jailed ? CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET : 0,
		.pdeathsig = SIGKILL,
		.new_session = true,
		.setup = qemu_setup,
		.final = qemu_final,
		.forked = qemu_forked,
		.ctx = vm
	};
	char msg[1024];
	pid_t pid;
	int sr = spawn_run(&sp, &pid, msg, sizeof(msg));
	close(nul);
	close(sv[1]);
	close(con);
	if (vm->net.qemu_end >= 0)
		close(vm->net.qemu_end); /* QEMU's now (a tap: QEMU is its last holder) */
	vm->net.qemu_end = -1;
	/* QEMU's ends are QEMU's now */
	if (vm->warm.qemu_in >= 0)
		close(vm->warm.qemu_in);
	if (vm->warm.qmp_qemu >= 0)
		close(vm->warm.qmp_qemu);
	vm->warm.qemu_in = vm->warm.qmp_qemu = -1;
	if (sr == 0 && vm->warm.mode == WARM_RESTORE && warm_feed_start(vm) < 0) {
		snprintf(msg, sizeof(msg), "no thread to feed it the saved VM");
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		sr = -1;
	}
	if (sr < 0) {
		close(sv[0]);
		log_error("cannot start QEMU: %s", msg);
		return EXIT_LAUNCH;
	}
	vm->qemu = pid;
	vm->ctl = sv[0];
	log_debug("QEMU started as pid %d%s (%.3f s)", pid, vm->jailed ? " in the chroot" : "", vm_elapsed(vm));
	return 0;
}

void vm_kill(struct vm *vm)
{
	if (vm->qemu > 0)
		kill(vm->qemu, SIGKILL);
}

void vm_cleanup(struct vm *vm)
{
	char err[1024] = "";
	if (vm->qemu > 0) {
		kill(vm->qemu, SIGKILL);
		waitpid(vm->qemu, NULL, 0);
		vm->qemu = -1;
	}
	shares_stop(vm);
	net_stop(vm);
	if (vm->ctl >= 0)
		close(vm->ctl);
	vm->ctl = -1;
	if (vm->console_fd >= 0)
		close(vm->console_fd);
	if (vm->console_pipe >= 0)
		close(vm->console_pipe);
	vm->console_fd = vm->console_pipe = -1;
	if (vm->volfd >= 0)
		close(vm->volfd);
	vm->volfd = -1;
	if (vm->vfsd_bin >= 0)
		close(vm->vfsd_bin);
	vm->vfsd_bin = -1;
	free(vm->vfsd_deps);
	vm->vfsd_deps = NULL;
	/* everything the run record lists: the same code as box gc */
	if (vm->run_id[0] && vm->homefd >= 0) {
		int r = run_cleanup_ex(vm->homefd, vm->run_id, arg.detach, err, sizeof(err));
		if (r < 0)
			log_warn("%s (box gc retries)", err);
	}
	free(vm->vols);
	vm->vols = NULL;
	free(vm->binds);
	vm->binds = NULL;
}
