/* SPDX-License-Identifier: MIT */
/* Choosing the accelerator. /dev/kvm may open and still be useless: on a
 * nested PVM hypervisor stock kernels hang under KVM. So auto boots the
 * kernel once under KVM with no root (it must panic, quickly, with
 * "VFS: Unable to mount root") and uses KVM only when that happens within a
 * deadline. The answer is cached in <home>/accel-probe.json, keyed by the
 * host kernel, the QEMU binary and the guest kernel. */
#include "common.h"
#include "launch.h"
#include "spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>

#define PROBE_DEADLINE_MS 6000

static int probe_key(const char *qemu, const char *kernel, char *out, size_t outlen)
{
	struct utsname u;
	struct stat sk, sq;
	char qpath[4096] = "";
	uname(&u);
	if (stat(kernel, &sk) < 0)
		return -errno;
	if (qemu[0] == '/')
		snprintf(qpath, sizeof(qpath), "%s", qemu);
	else if (path_lookup(qemu, qpath, sizeof(qpath)) < 0)
		qpath[0] = 0;
	if (!qpath[0] || stat(qpath, &sq) < 0)
		return -ENOENT;
	snprintf(out, outlen, "%s|%s|%lu:%ld|%s|%lu:%ld", u.release, qpath, (unsigned long)sq.st_ino, (long)sq.st_mtime,
		 kernel, (unsigned long)sk.st_ino, (long)sk.st_mtime);
	return 0;
}

/* Boot the kernel under KVM; true when it reaches its root mount in time. */
static bool kvm_boots(const char *qemu, const char *kernel, double *secs)
{
	int p[2];
	struct timespec t0, t1;
	bool ok = false;
	char buf[8192];
	size_t have = 0;

	char qpath[4096];
	if (path_lookup(qemu, qpath, sizeof(qpath)) < 0 || pipe2(p, O_CLOEXEC) < 0)
		return false;
	int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char *argv[] = { (char *)qemu,
			 "-M",
			 "microvm,acpi=off",
			 "-accel",
			 "kvm",
			 "-cpu",
			 "host",
			 "-m",
			 "128",
			 "-nodefaults",
			 "-no-user-config",
			 "-display",
			 "none",
			 "-no-reboot",
			 "-serial",
			 "stdio",
			 "-kernel",
			 (char *)kernel,
			 "-append",
			 "console=ttyS0 panic=-1 reboot=t",
			 NULL };
	char *envp[] = { "PATH=/usr/bin:/bin", "LC_ALL=C", NULL };
	struct spawn_fd fds[] = { { nul, 0 }, { p[1], 1 }, { p[1], 2 } };
	struct spawn s = { .path = qpath,
			   .exec_fd = -1,
			   .argv = argv,
			   .envp = envp,
			   .fds = fds,
			   .nfds = ARRAY_SIZE(fds),
			   .pdeathsig = SIGKILL,
			   .new_session = true };
	char msg[512];
	pid_t pid;
	int sr = nul < 0 ? -EBADF : spawn_run(&s, &pid, msg, sizeof(msg));
	if (nul >= 0)
		close(nul);
	close(p[1]);
	if (sr < 0) {
		close(p[0]);
		return false;
	}
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= PROBE_DEADLINE_MS)
			break;
		struct pollfd pf = { p[0], POLLIN, 0 };
		if (poll(&pf, 1, (int)(PROBE_DEADLINE_MS - ms)) <= 0)
			continue;
		ssize_t n = read(p[0], buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = 0;
		if (strstr(buf, "Unable to mount root") || strstr(buf, "Kernel panic") ||
		    strstr(buf, "Run /sbin/init")) {
			ok = true;
			break;
		}
		if (have > sizeof(buf) / 2) {
			memmove(buf, buf + have - 1024, 1024);
			have = 1024;
		}
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(p[0]);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	return ok;
}

int accel_choose(const char *home, const char *qemu, const char *kernel, const char *want, const char **out,
		 const char **why)
{
	if (!strcmp(want, "tcg")) {
		*out = "tcg";
		*why = "asked for";
		return 0;
	}
	int kfd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kfd < 0) {
		if (!strcmp(want, "kvm")) {
			log_error("--accel kvm: cannot open /dev/kvm: %s", strerror(errno));
			return EXIT_LAUNCH;
		}
		*out = "tcg";
		*why = "/dev/kvm cannot be opened";
		return 0;
	}
	close(kfd);
	if (!strcmp(want, "kvm")) {
		*out = "kvm";
		*why = "asked for";
		return 0;
	}
	char key[8192], cache[4200];
	if (probe_key(qemu, kernel, key, sizeof(key)) < 0) {
		*out = "tcg";
		*why = "cannot identify QEMU for the KVM probe";
		return 0;
	}
	snprintf(cache, sizeof(cache), "%s/accel-probe.json", home);
	{
		cleanup_json struct json_object *o = json_object_from_file(cache);
		struct json_object *k, *a;
		if (o && json_object_object_get_ex(o, "key", &k) && json_object_object_get_ex(o, "accel", &a) &&
		    !strcmp(json_object_get_string(k), key)) {
			*out = !strcmp(json_object_get_string(a), "kvm") ? "kvm" : "tcg";
			*why = *out[0] == 'k' ? "a cached probe booted a guest under KVM"
					      : "a cached probe: guests hang under KVM here";
			return 0;
		}
	}
	double secs = 0;
	bool ok = kvm_boots(qemu, kernel, &secs);
	*out = ok ? "kvm" : "tcg";
	*why = ok ? "a probe booted a guest under KVM"
		  : "a probe: /dev/kvm opens but a guest did not boot under KVM in time";
	log_debug("KVM probe: %s in %.2f s", ok ? "booted" : "no boot", secs);
	cleanup_free char *failed = NULL;
	if (mkdir_p_0700(home, &failed) == 0) {
		cleanup_json struct json_object *o = json_object_new_object();
		json_object_object_add(o, "key", json_object_new_string(key));
		json_object_object_add(o, "accel", json_object_new_string(*out));
		json_object_object_add(o, "probe_seconds", json_object_new_double(secs));
		const char *s =
			json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
		cleanup_close int dfd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0)
			write_file_atomic(dfd, "accel-probe.json", s, strlen(s), 0600);
	}
	return 0;
}

int probe_print(const char *home)
{
	char kernel[4096];
	const char *accel, *why;
	const char *k = arg.kernel && strcmp(arg.kernel, "lean") && strcmp(arg.kernel, "net") ? arg.kernel : NULL;
	if (k)
		snprintf(kernel, sizeof(kernel), "%s", k);
	else {
		char name[64];
		snprintf(name, sizeof(name), "%s/vmlinux", arg.kernel ? arg.kernel : "lean");
		if (artifact_path("BOXKIT_KERNEL_DIR", "kernels", name, kernel, sizeof(kernel)) < 0 ||
		    access(kernel, R_OK) < 0) {
			log_error("no kernel to probe with: run 'make kernel-lean'");
			return EXIT_LAUNCH;
		}
	}
	int r = accel_choose(home, arg.qemu, kernel, arg.accel, &accel, &why);
	if (r)
		return r;
	cleanup_json struct json_object *o = json_object_new_object();
	json_object_object_add(o, "accel", json_object_new_string(accel));
	json_object_object_add(o, "why", json_object_new_string(why));
	return jsonl_write(stdout, o) < 0 ? EXIT_LAUNCH : 0;
}
