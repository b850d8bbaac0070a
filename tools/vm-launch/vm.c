/* SPDX-License-Identifier: MIT */
#include "common.h"
#include "frame.h"
#include "launch.h"

#include <fcntl.h>
#include <limits.h>
#include <seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include <linux/sched.h>

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
	for (int up = 0; up < 3; up++) {
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

static int read_file(const char *path, size_t max, char **out, size_t *len)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((size_t)st.st_size > max)
		return -EFBIG;
	char *b = malloc((size_t)st.st_size + 1);
	if (!b)
		return -ENOMEM;
	ssize_t n = read(fd, b, (size_t)st.st_size);
	if (n < 0) {
		free(b);
		return -errno;
	}
	b[n] = 0;
	*out = b;
	*len = (size_t)n;
	return 0;
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
	int r = read_file(arg.chroot_json, 65536, &text, &len);
	if (r < 0)
		return log_error("cannot read --chroot '%s': %s", arg.chroot_json, strerror(-r)), EXIT_LAUNCH;
	cleanup_json struct json_object *o = json_tokener_parse(text);
	struct json_object *v, *drives;
	if (!o || json_str_into(o, "root", vm->root, sizeof(vm->root)) || json_str_into(o, "vmm", vm->vmm_in, sizeof(vm->vmm_in)) ||
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
	vm->jailed = true;
	return 0;
}

static int resolve_file(const char *what, const char *given, const char *envvar, const char *sub, const char *dflt,
			const char *hint, char *out, size_t outlen)
{
	struct stat st;
	if (given)
		snprintf(out, outlen, "%s", given);
	else if (artifact_path(envvar, sub, dflt, out, outlen) < 0) {
		log_error("no %s found: %s", what, hint);
		return EXIT_LAUNCH;
	}
	if (stat(out, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_error("%s '%s' not found: %s", what, out, hint);
		return EXIT_LAUNCH;
	}
	return 0;
}

int vm_prepare(struct vm *vm, const char *home, char **config, size_t *config_len)
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
		if ((r = resolve_file("kernel", NULL, "BOXKIT_KERNEL_DIR", "kernels", name, hint, vm->kernel, sizeof(vm->kernel))))
			return r;
	} else if ((r = resolve_file("kernel", arg.kernel, NULL, NULL, NULL, "give a bzImage path, lean or net", vm->kernel,
				     sizeof(vm->kernel))))
		return r;
	if ((r = resolve_file("system image", arg.system, "BOXKIT_IMAGE_DIR", "images", "system.ext4",
			      "build it with 'make image'", vm->system, sizeof(vm->system))))
		return r;
	if ((r = resolve_file("rootfs image", arg.rootfs, "BOXKIT_IMAGE_DIR", "images", "rootfs.ext4",
			      "build it with 'make image'", vm->rootfs, sizeof(vm->rootfs))))
		return r;
	r = read_file(arg.config, 1 << 20, config, config_len);
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
	}
	if (arg.chroot_json && (r = load_chroot(vm)))
		return r;
	if (arg.volumes && (r = shares_prepare(vm, home)))
		return r;
	const char *why = NULL;
	if ((r = accel_choose(home, arg.qemu, vm->kernel, arg.accel, &vm->accel, &why)))
		return r;
	log_debug("accelerator: %s (%s)", vm->accel, why);
	/* the run directory: the console log lives here */
	if (arg.run_dir) {
		snprintf(vm->run_dir, sizeof(vm->run_dir), "%s", arg.run_dir);
	} else {
		char id[27], *failed = NULL;
		ulid_new(id);
		snprintf(vm->run_dir, sizeof(vm->run_dir), "%s/run/vm-%s", home, id);
		char parent[4200];
		snprintf(parent, sizeof(parent), "%s/run", home);
		if ((r = mkdir_p_0700(parent, &failed)) < 0 || mkdir(vm->run_dir, 0700) < 0) {
			r = log_sys(r < 0 ? r : errno, "cannot create the run directory '%s'", failed ? failed : vm->run_dir);
			free(failed);
			return EXIT_LAUNCH;
		}
		vm->own_run_dir = true;
	}
	snprintf(vm->console, sizeof(vm->console), "%s/console.log", vm->run_dir);
	return 0;
}

/* ---- the jail, in the child, before exec ---------------------------------------------- */

static void child_fail(int errfd, const char *what)
{
	char msg[512];
	int n = snprintf(msg, sizeof(msg), "%s: %s", what, strerror(errno));
	if (write(errfd, msg, (size_t)n) < 0) {
	}
	_exit(127);
}

/* What QEMU's -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,
 * resourcecontrol=deny denies, applied before exec (so execve itself stays
 * allowed; QEMU's own -sandbox then denies it after start-up). */
static int load_filter(void)
{
	static const char *const deny[] = {
		/* obsolete */
		"readdir", "_sysctl", "bdflush", "create_module", "get_kernel_syms", "query_module", "sgetmask",
		"ssetmask", "sysfs", "uselib", "ustat", "vserver", "afs_syscall", "getpmsg", "putpmsg", "security",
		"tuxcall",
		/* elevateprivileges */
		"setuid", "setgid", "setpgid", "setsid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid",
		"setfsgid", "setgroups",
		/* spawn (execve stays: it starts QEMU) */
		"fork", "vfork", "execveat",
		/* resourcecontrol */
		"getpriority", "setpriority", "sched_setparam", "sched_setscheduler", "sched_setattr",
		"sched_setaffinity",
		/* and what no VMM needs */
		"mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "kexec_load", "kexec_file_load",
		"init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "ptrace",
		"process_vm_readv", "process_vm_writev", "bpf", "keyctl", "add_key", "request_key", "acct",
		"open_by_handle_at",
	};
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int r = 0;
	if (!ctx)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(deny) && r == 0; i++) {
		int nr = seccomp_syscall_resolve_name(deny[i]);
		if (nr < 0)
			continue;
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
	}
	/* a new process (clone without CLONE_THREAD) is spawn too; threads are fine */
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	return r;
}

static void add(char **argv, int *n, const char *s)
{
	argv[(*n)++] = (char *)s;
}

int vm_start(struct vm *vm)
{
	int sv[2], errp[2];
	char mem[32], smp[32], fdopt[64], drive0[4300], drive1[4300], machine[128], accel[64];
	char *argv[64 + 4 * 64];
	char memobj[128], shareargs[64][2][4400];
	int n = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return log_sys(errno, "socketpair"), EXIT_LAUNCH;
	if (pipe2(errp, O_CLOEXEC) < 0)
		return log_sys(errno, "pipe"), EXIT_LAUNCH;
	int con = open(vm->console, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (con < 0)
		return log_sys(errno, "cannot create '%s'", vm->console), EXIT_LAUNCH;
	if (vm->jailed && fchown(con, vm->uid, vm->gid) < 0)
		return log_sys(errno, "cannot chown '%s'", vm->console), EXIT_LAUNCH;

	const int qfd = 3; /* QEMU's end of the control socket */
	snprintf(mem, sizeof(mem), "%ld", arg.memory);
	snprintf(smp, sizeof(smp), "%ld", arg.cpus);
	snprintf(fdopt, sizeof(fdopt), "socket,id=ctl,fd=%d", qfd);
	snprintf(machine, sizeof(machine), "microvm,acpi=off,rtc=on%s", vm->nvols ? ",memory-backend=mem" : "");
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
	add(argv, &n, "console=ttyS0 quiet panic=-1 reboot=t root=/dev/vda ro rootfstype=ext4 init=/sbin/boxkit-init");
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
		snprintf(shareargs[i][0], sizeof(shareargs[i][0]), "socket,id=vfs%d,path=%s", i, vm->vols[i].sock_in_vmm);
		snprintf(shareargs[i][1], sizeof(shareargs[i][1]), "vhost-user-fs-device,chardev=vfs%d,tag=%s", i,
			 vm->vols[i].tag);
		add(argv, &n, "-chardev");
		add(argv, &n, shareargs[i][0]);
		add(argv, &n, "-device");
		add(argv, &n, shareargs[i][1]);
	}
	argv[n] = NULL;
	if (log_get_level() >= LOG_DEBUG) {
		char line[8192];
		size_t o = 0;
		for (int i = 0; i < n && o < sizeof(line) - 1; i++)
			o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%s", i ? " " : "", argv[i]);
		log_debug("qemu: %s", line);
	}

	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return log_sys(errno, "fork"), EXIT_LAUNCH;
	if (pid == 0) {
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (nul < 0 || dup2(nul, 0) < 0 || dup2(con, 1) < 0 || dup2(con, 2) < 0 || dup2(sv[1], qfd) < 0)
			child_fail(errp[1], "cannot set up descriptors");
		if (vm->jailed) {
			if (chroot(vm->root) < 0)
				child_fail(errp[1], "chroot");
			if (chdir("/") < 0)
				child_fail(errp[1], "chdir");
			if (drop_to_user(vm->uid, vm->gid, -1) < 0)
				child_fail(errp[1], "cannot drop to the VM's uid");
		}
		/* after the uid change: a credential change clears the death signal */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);
		struct rlimit rl = { 256, 256 };
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			child_fail(errp[1], "setrlimit");
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			child_fail(errp[1], "no_new_privs");
		/* an empty capability set (after setresuid to non-root it is empty already) */
		struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
		struct __user_cap_data_struct d[2] = { { 0 } };
		if (syscall(SYS_capset, &h, d) < 0)
			child_fail(errp[1], "capset");
		if (load_filter() < 0)
			child_fail(errp[1], "seccomp");
		/* the control socket's QEMU end must survive exec */
		fcntl(qfd, F_SETFD, 0);
		execvp(argv[0], argv);
		child_fail(errp[1], argv[0]);
	}
	close(sv[1]);
	close(con);
	close(errp[1]);
	vm->qemu = pid;
	vm->ctl = sv[0];
	/* an exec that fails reports through errp; a successful exec closes it */
	char msg[512];
	ssize_t m = read(errp[0], msg, sizeof(msg) - 1);
	close(errp[0]);
	if (m > 0) {
		msg[m] = 0;
		log_error("cannot start QEMU: %s", msg);
		return EXIT_LAUNCH;
	}
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
	if (vm->qemu > 0) {
		kill(vm->qemu, SIGKILL);
		waitpid(vm->qemu, NULL, 0);
		vm->qemu = -1;
	}
	shares_stop(vm);
	if (vm->ctl >= 0)
		close(vm->ctl);
	vm->ctl = -1;
	if (vm->own_run_dir) {
		unlink(vm->console);
		rmdir(vm->run_dir);
	}
	free(vm->vols);
}
