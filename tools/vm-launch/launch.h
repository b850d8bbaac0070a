/* SPDX-License-Identifier: MIT */
#ifndef BOXKIT_LAUNCH_H
#define BOXKIT_LAUNCH_H
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

struct launch_args {
	const char *config, *kernel, *system, *rootfs, *volumes, *accel, *chroot_json, *run_dir, *qemu, *home;
	long memory, cpus;
	double timeout;
	bool probe_only;
};
extern struct launch_args arg;

struct volume {
	char tag[40];
	bool is_file, readonly;
	char file_name[256];
	char source[4096];
	char share_dir[4200];  /* what virtiofsd serves: the volume, or a staging dir */
	bool staged;           /* share_dir is this run's staging dir for a file */
	char sock_name[32];    /* in the socket directory */
	char sock_in_vmm[4200]; /* the path QEMU connects to */
	pid_t vfsd;
};

struct vm {
	/* resolved inputs, as the host sees them */
	char kernel[4096], system[4096], rootfs[4096];
	const char *accel; /* "kvm" or "tcg" */
	/* the jail (from chroot-stage), or none */
	bool jailed;
	char root[4096];
	char vmm_in[4096], kernel_in[4096], drives_in[2][4096];
	uid_t uid;
	gid_t gid;
	/* run state */
	char run_dir[4096];
	bool own_run_dir;
	char console[4200];
	int ctl;
	pid_t qemu;
	int qemu_status;
	bool plan_sent;
	struct timespec t0;
	struct volume *vols;
	int nvols;
	int sockdir; /* O_PATH fd of the directory holding the vhost-user sockets */
};

/* shares.c: one virtiofsd per volume */
int shares_prepare(struct vm *vm, const char *home);
int shares_start(struct vm *vm, const char *home);
/* a virtiofsd that exited: returns its volume index or -1 */
int shares_reap(struct vm *vm, pid_t pid, int status, bool complain);
void shares_stop(struct vm *vm);

int vm_prepare(struct vm *vm, const char *home, char **config, size_t *config_len);
int vm_start(struct vm *vm);
void vm_kill(struct vm *vm);
void vm_cleanup(struct vm *vm);
double vm_elapsed(const struct vm *vm);

/* accel.c */
int accel_choose(const char *home, const char *qemu, const char *kernel, const char *want, const char **out,
		 const char **why);
int probe_print(const char *home);
/* Where make put kernels and images: $BOXKIT_KERNEL_DIR / $BOXKIT_IMAGE_DIR,
 * else beside this binary's tree (bin/../build/...). */
int artifact_path(const char *envvar, const char *sub, const char *name, char *out, size_t outlen);
#endif
