/* SPDX-License-Identifier: MIT */
/* Volumes in the VM. Every entry goes through the gate in lib/common/vol.c
 * (in process): its source is opened once, beneath the volume store, without
 * following a symlink, checked with fstat, and from then on used only
 * through that descriptor:
 *   - ownership: fchownat(fd, "", ..., AT_EMPTY_PATH);
 *   - what virtiofsd serves: a bind mount cloned from the descriptor
 *     (open_tree OPEN_TREE_CLONE), attached at /shared in the daemon's own
 *     mount namespace; for a file mount, the file is bound at
 *     /shared/<name> in a directory of the sandbox's own, so nothing beside
 *     it is reachable and no link or copy of it is ever made.
 * A guest that renames or symlinks inside a volume another run shares can
 * therefore not redirect any of these to a host path.
 *
 * virtiofsd runs in a sandbox of its own: new mount, PID, network, IPC and
 * UTS namespaces whose root is a fresh tmpfs holding only a copy of the
 * daemon (with its file capability) and exactly the libraries it needs,
 * /shared, and a /proc of its own PID namespace (hidepid=invisible; not
 * subset=pid: virtiofsd reads /proc/sys/fs/nr_open). It keeps CAP_DAC_READ_SEARCH, which mandatory file handles
 * need, and with which open_by_handle_at opens any inode of a filesystem it
 * holds a descriptor on: so no descriptor or mount of the host's filesystem
 * is reachable from it (its stdio are pipes, its binary is the tmpfs copy,
 * no other process is visible in its /proc), and the volumes live on a
 * filesystem of their own (box setup). Its environment is fixed, every
 * descriptor but 0-3 is closed, RLIMIT_NOFILE and RLIMIT_CORE are set. */
#include "common.h"
#include "elfdeps.h"
#include "launch.h"
#include "runrec.h"
#include "spawn.h"
#include "testhook.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define VFSD_NOFILE 65536
#define VFSD_ROOT_SIZE "size=64m"

int shares_prepare(struct vm *vm)
{
	cleanup_fclose FILE *in = fopen(arg.volumes, "re");
	char err[1024];
	struct vol_entry *ents = NULL;
	size_t n = 0;
	int r;

	if (!in)
		return log_error("cannot open --volumes '%s': %s", arg.volumes, strerror(errno)), EXIT_LAUNCH;
	if ((r = vol_read(in, &ents, &n, err, sizeof(err))) < 0) {
		if (r == -EINVAL)
			log_error("--volumes '%s': %s; no VM was started", arg.volumes, err);
		else
			log_sys(r, "cannot read --volumes '%s'", arg.volumes);
		return EXIT_LAUNCH;
	}
	vm->vols = calloc(n ? n : 1, sizeof(*vm->vols));
	if (!vm->vols) {
		free(ents);
		return log_sys(ENOMEM, "out of memory"), EXIT_LAUNCH;
	}
	for (size_t i = 0; i < n; i++) {
		vm->vols[i].e = ents[i];
		vm->vols[i].pinned = vm->vols[i].share_fd = vm->vols[i].tree = vm->vols[i].log.fd = -1;
		vm->vols[i].vfsd = -1;
	}
	vm->nvols = (int)n;
	free(ents);
	if (n == 0)
		return 0;
	if (!vm->jailed) {
		log_error("volumes need the jail (run as root): virtiofsd's sandbox and the volume store need it; no "
			  "VM was "
			  "started");
		return EXIT_LAUNCH;
	}
	if (n > 64)
		return log_error("at most 64 volumes"), EXIT_LAUNCH;
	/* the store: a filesystem of its own, so that virtiofsd's file handles reach nothing else */
	vm->volfd = openat(vm->homefd, VOL_STORE_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (vm->volfd < 0)
		return log_error("no volume store at '%s/" VOL_STORE_DIR "': %s; run 'box setup'", vm->home,
				 strerror(errno)),
		       EXIT_LAUNCH;
	if (!fd_is_fs_mount(vm->volfd)) {
		log_error("'%s/" VOL_STORE_DIR
			  "' is not a filesystem of its own: run 'box setup' (volumes must live on a "
			  "filesystem that holds nothing else); no VM was started",
			  vm->home);
		return EXIT_LAUNCH;
	}
	for (int i = 0; i < vm->nvols; i++) {
		struct volume *v = &vm->vols[i];
		if ((r = vol_gate(vm->home, vm->homefd, vm->volfd, &v->e, &v->pinned, err, sizeof(err))) < 0) {
			if (r == -EINVAL)
				log_error("volume %s ('%s'): %s; no VM was started", v->e.tag, v->e.target, err);
			else
				log_sys(r, "cannot open volume %s", v->e.tag);
			return EXIT_LAUNCH;
		}
		const char *base = strrchr(v->e.subpath, '/');
		snprintf(v->file_name, sizeof(v->file_name), "%.255s", base ? base + 1 : v->e.subpath);
		log_debug("volume %s pinned: '%s'", v->e.tag, v->e.source);
	}
	return 0;
}

/* Ownership, through the pinned descriptors only. */
static int shares_stage(struct vm *vm)
{
	for (int i = 0; i < vm->nvols; i++) {
		struct volume *v = &vm->vols[i];
		struct stat st;
		/* virtiofsd runs as the VM's uid: a writable volume must be its own, so
		 * that what the workload creates belongs to it on the host */
		if (!v->e.readonly) {
			if (fstat(v->pinned, &st) < 0)
				return log_sys(errno, "cannot stat volume %s", v->e.tag), EXIT_LAUNCH;
			/* root gives away only what is root's or already the VM's: never
			 * another user's file, nor a file with other names (a guest can
			 * hard-link, or rename onto the subpath, what it should not own) */
			if (st.st_uid != 0 && st.st_uid != vm->uid) {
				log_error("volume %s ('%s') belongs to uid %u, neither root's nor the VM's; refusing "
					  "to give it to "
					  "the VM; no VM was started",
					  v->e.tag, v->e.source, (unsigned)st.st_uid);
				return EXIT_LAUNCH;
			}
			if (v->e.is_file && st.st_nlink != 1) {
				log_error("volume %s ('%s') is a file with %lu names; a writable file mount needs "
					  "exactly one; "
					  "no VM was started",
					  v->e.tag, v->e.source, (unsigned long)st.st_nlink);
				return EXIT_LAUNCH;
			}
			if ((st.st_uid != vm->uid || st.st_gid != vm->gid) &&
			    fchownat(v->pinned, "", vm->uid, vm->gid, AT_EMPTY_PATH) < 0)
				return log_sys(errno, "cannot give volume %s to the VM's uid", v->e.tag), EXIT_LAUNCH;
		}
		/* what virtiofsd serves: the pinned directory, or (a file mount) the
		 * pinned file, bound into a directory of its own in the sandbox */
		v->share_fd = fcntl(v->pinned, F_DUPFD_CLOEXEC, 3);
		if (v->share_fd < 0)
			return log_sys(errno, "dup"), EXIT_LAUNCH;
	}
	return 0;
}

/* ---- virtiofsd's sandbox ------------------------------------------------------------- */

struct vfsd_ctx {
	struct vm *vm;
	int tree;	  /* the share, a detached bind mount */
	const char *file; /* a file mount: its name in /shared */
	bool readonly;
	int bin; /* the daemon to copy (read) */
	const struct elfdeps *deps;
	const char *attach; /* an existing root-owned directory to mount the new root on */
	uid_t uid;
	gid_t gid;
};

#define FAIL(e, ...)                                                                                                   \
	({                                                                                                             \
		snprintf(err, errlen, __VA_ARGS__);                                                                    \
		return -(e);                                                                                           \
	})

static int mkdir_parents(int rootfd, const char *rel)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s", rel);
	for (char *s = p; (s = strchr(s, '/')); s++) {
		*s = 0;
		if (mkdirat(rootfd, p, 0755) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	return 0;
}

static int copy_into(int rootfd, const char *rel, int src, mode_t mode)
{
	struct stat st;
	int r;
	if ((r = mkdir_parents(rootfd, rel)) < 0)
		return r;
	cleanup_close int out = openat(rootfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (out < 0 || fstat(src, &st) < 0)
		return -errno;
	off_t off = 0;
	while (off < st.st_size) {
		ssize_t n = sendfile(out, src, &off, (size_t)(st.st_size - off));
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
	}
	return 0;
}

/* Landlock: whatever descriptor the daemon comes by (a compromised QEMU can
 * send it one over the vhost-user socket), it can open nothing but what is
 * beneath its own root (read, execute: its binary, libraries, /proc) and
 * /shared (what the volume allows). open_by_handle_at opens a path like any
 * other open, so a handle of a host file decodes but its open is refused.
 * Applied while still root (no no_new_privs: it would void the file
 * capability); it holds across the uid drop and exec. */
/* Debian 12's headers stop at landlock ABI 2: the later fields, from the
 * kernel's uapi (stable ABI) */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#define LL_ACCESS_NET_BIND_TCP (1ULL << 0)
#define LL_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LL_SCOPE_SIGNAL (1ULL << 1)
struct ll_ruleset_attr {
	uint64_t handled_access_fs, handled_access_net, scoped;
};

static int landlock_sandbox(bool readonly, char *err, size_t errlen)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 1)
		FAIL(abi < 0 ? errno : ENOSYS,
		     "landlock is not available in this kernel (boxkit needs it for virtiofsd)");
	uint64_t read_x = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
	uint64_t all = read_x | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
		       LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
		       LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
		       LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
	if (abi >= 2)
		all |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		all |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		all |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	struct ll_ruleset_attr ra = { .handled_access_fs = all };
	size_t size = offsetof(struct ll_ruleset_attr, handled_access_net);
	if (abi >= 4) {
		ra.handled_access_net = LL_ACCESS_NET_BIND_TCP | LL_ACCESS_NET_CONNECT_TCP;
		size = offsetof(struct ll_ruleset_attr, scoped);
	}
	if (abi >= 6) {
		ra.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL;
		size = sizeof(ra);
	}
	cleanup_close int rs = (int)syscall(SYS_landlock_create_ruleset, &ra, size, 0);
	if (rs < 0)
		FAIL(errno, "landlock_create_ruleset");
	static const char *const dirs[] = { "/", "/shared" };
	for (int i = 0; i < 2; i++) {
		cleanup_close int d = open(dirs[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
		struct landlock_path_beneath_attr pb = { .allowed_access = i == 0 || readonly ? read_x : all,
							 .parent_fd = d };
		if (d < 0 || syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
			FAIL(errno, "landlock rule for '%s'", dirs[i]);
	}
	if (syscall(SYS_landlock_restrict_self, rs, 0) < 0)
		FAIL(errno, "landlock_restrict_self");
	return 0;
}

/* in the parent, before the child may run: the record first */
static int vfsd_forked(void *p, pid_t pid)
{
	const struct vfsd_ctx *c = p;
	return run_add_process(c->vm->homefd, c->vm->run_id, RUN_PROCESSES, "virtiofsd", pid);
}

static int vfsd_setup(void *p, char *err, size_t errlen)
{
	const struct vfsd_ctx *c = p;
	char path[PATH_MAX + 16];
	int r;

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		FAIL(errno, "make mounts private");
	if (mount("tmpfs", c->attach, "tmpfs", MS_NODEV | MS_NOSUID, "mode=0755," VFSD_ROOT_SIZE) < 0)
		FAIL(errno, "mount the sandbox's tmpfs");
	cleanup_close int root = open(c->attach, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		FAIL(errno, "open the sandbox root");
	for (int i = 0; i < c->deps->n; i++) {
		cleanup_close int src = open(c->deps->path[i], O_RDONLY | O_CLOEXEC);
		if (src < 0 || (r = copy_into(root, c->deps->path[i] + 1, src, 0755)) < 0) {
			snprintf(err, errlen, "copy '%s' into the sandbox", c->deps->path[i]);
			return src < 0 ? -errno : r;
		}
	}
	if ((r = copy_into(root, "virtiofsd", c->bin, 0755)) < 0)
		FAIL(-r, "copy virtiofsd into the sandbox");
	if (!c->file) {
		if (mkdirat(root, "shared", 0755) < 0 ||
		    sys_move_mount(c->tree, "", root, "shared", MOVE_MOUNT_F_EMPTY_PATH) < 0)
			FAIL(errno, "attach the share at /shared");
	} else {
		/* a file mount: /shared holds one name, the pinned file bound there */
		char at[300];
		snprintf(at, sizeof(at), "shared/%s", c->file);
		int mp = -1;
		if (mkdirat(root, "shared", 0755) < 0 ||
		    (mp = openat(root, at, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)) < 0)
			FAIL(errno, "create the file mount's point");
		close(mp);
		if (sys_move_mount(c->tree, "", root, at, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			FAIL(errno, "bind the file at /shared/%s", c->file);
	}
	snprintf(path, sizeof(path), "%s/proc", c->attach);
	if (mkdirat(root, "proc", 0555) < 0 ||
	    mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible") < 0)
		FAIL(errno, "mount /proc in the sandbox");
	if (chdir(c->attach) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
	    chdir("/") < 0)
		FAIL(errno, "pivot_root into the sandbox");
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NODEV | MS_NOSUID, NULL) < 0)
		FAIL(errno, "make the sandbox root read-only");
	if ((r = landlock_sandbox(c->readonly, err, errlen)) < 0)
		return r;
	/* at most VFSD_NOFILE (never above the hard limit: raising it needs
	 * CAP_SYS_RESOURCE, which some hosts' bounding sets lack) */
	struct rlimit nofile, core = { 0, 0 };
	if (getrlimit(RLIMIT_NOFILE, &nofile) < 0)
		FAIL(errno, "getrlimit");
	if (nofile.rlim_max > VFSD_NOFILE)
		nofile.rlim_max = VFSD_NOFILE;
	nofile.rlim_cur = nofile.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &nofile) < 0 || setrlimit(RLIMIT_CORE, &core) < 0)
		FAIL(errno, "setrlimit");
	/* the VM's uid with exactly one capability, CAP_DAC_READ_SEARCH, which
	 * mandatory file handles need: kept across the uid drop and raised as
	 * an ambient capability, so it survives exec without a file
	 * capability. So exec gains nothing (the parent-death signal holds, no
	 * secure-exec), and no_new_privs can be set. */
	if ((r = drop_to_user_ambient(c->uid, c->gid, CAP_DAC_READ_SEARCH)) < 0)
		FAIL(-r, "drop to the VM's uid with CAP_DAC_READ_SEARCH alone");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		FAIL(errno, "no_new_privs");
	return 0;
}

/* The vfsd-cap-install copy (a verified copy of a virtiofsd with mandatory
 * file handles): its descriptor and the libraries it needs. Its file
 * capability is not used: the sandbox hands the daemon its one capability
 * as an ambient one. */
static int vfsd_binary(struct vm *vm)
{
	char path[PATH_MAX], missing[NAME_MAX + 1], dir[PATH_MAX], tool[PATH_MAX + 32];
	char *argv[] = { "vfsd-cap-install", "--home", vm->home, NULL };
	int r = self_dir(dir, sizeof(dir));
	if (r < 0)
		return log_sys(r, "cannot find this program's directory"), EXIT_LAUNCH;
	snprintf(tool, sizeof(tool), "%s/vfsd-cap-install", dir);
	r = run_capture(tool, argv, false, path, sizeof(path));
	char *nl = strchr(path, '\n');
	if (nl)
		*nl = 0;
	if (r != 0 || !path[0])
		return log_error(
			       "vfsd-cap-install failed (exit %d): no virtiofsd with file handles to serve the volumes",
			       r),
		       EXIT_LAUNCH;
	/* never blocks (a FIFO planted there is refused), checked on the descriptor */
	struct stat st;
	vm->vfsd_bin = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (vm->vfsd_bin < 0 || fstat(vm->vfsd_bin, &st) < 0)
		return log_sys(errno, "cannot open '%s'", path), EXIT_LAUNCH;
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022))
		return log_error("'%s' is not a regular file of ours that only we can write; run vfsd-cap-install",
				 path),
		       EXIT_LAUNCH;
	vm->vfsd_deps = malloc(sizeof(*vm->vfsd_deps));
	if (!vm->vfsd_deps)
		return log_sys(ENOMEM, "out of memory"), EXIT_LAUNCH;
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = 0;
	if ((r = elf_deps(vm->vfsd_bin, dir, vm->vfsd_deps, missing, sizeof(missing))) < 0)
		return log_sys(r, "cannot list the libraries of '%s'%s%s", path, missing[0] ? ": missing " : "",
			       missing),
		       EXIT_LAUNCH;
	return 0;
}

static int start_one(struct vm *vm, struct volume *v, int idx)
{
	char fdarg[16] = "--fd=3", msg[1024], harg[64];
	/* test builds only: BOXKIT_TEST_VFSD_HANDLES=never shows what mandatory handles save */
	const char *handles = test_getenv("BOXKIT_TEST_VFSD_HANDLES");
	snprintf(harg, sizeof(harg), "--inode-file-handles=%s",
		 handles && !strcmp(handles, "never") ? "never" : "mandatory");
	int logp[2], nul[2], r;

	snprintf(v->sock_name, sizeof(v->sock_name), "vfs%d.sock", idx);
	if ((r = run_add(vm->homefd, vm->run_id, RUN_SOCKETS, v->sock_name)) < 0)
		return log_sys(r, "cannot record the socket"), EXIT_LAUNCH;
	unlinkat(vm->sockdir, v->sock_name, 0);
	cleanup_close int lfd = unix_listen_beneath(vm->sockdir, v->sock_name, 1);
	if (lfd < 0)
		return log_sys(lfd, "cannot listen on the socket for share %s", v->e.tag), EXIT_LAUNCH;
	/* QEMU (the VM's uid) connects; the socket directory is root's, so no one
	 * can swap the name between these calls */
	if (fchmodat(vm->sockdir, v->sock_name, 0666, 0) < 0)
		return log_sys(errno, "cannot chmod the socket of share %s", v->e.tag), EXIT_LAUNCH;
	snprintf(v->sock_in_vmm, sizeof(v->sock_in_vmm), "/run/%s", v->sock_name);

	/* the share as a detached bind mount made from the pinned descriptor */
	v->tree = sys_open_tree(v->share_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
	if (v->tree < 0)
		return log_sys(errno, "cannot clone volume %s", v->e.tag), EXIT_LAUNCH;
	struct mount_attr ma = { .attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |
					     (v->e.readonly ? MOUNT_ATTR_RDONLY : 0) };
	if (sys_mount_setattr(v->tree, "", AT_EMPTY_PATH, &ma) < 0)
		return log_sys(errno, "cannot set the attributes of volume %s", v->e.tag), EXIT_LAUNCH;

	if (pipe2(logp, O_CLOEXEC) < 0)
		return log_sys(errno, "pipe"), EXIT_LAUNCH;
	if (pipe2(nul, O_CLOEXEC) < 0) {
		close(logp[0]);
		close(logp[1]);
		return log_sys(errno, "pipe"), EXIT_LAUNCH;
	}
	close(nul[1]); /* stdin: at EOF */
	char *argv[] = { "virtiofsd",
			 fdarg,
			 "--shared-dir=/shared",
			 "--cache=auto",
			 harg,
			 "--sandbox=none",
			 "--log-level=error",
			 "--rlimit-nofile=0",
			 v->e.readonly ? "--readonly" : NULL,
			 NULL };
	char runenv[4300];
	snprintf(runenv, sizeof(runenv), "BOXKIT_RUN_DIR=%s", vm->run_dir);
	char *envp[] = { "PATH=/", "LC_ALL=C", runenv, NULL };
	struct vfsd_ctx ctx = { .vm = vm,
				.tree = v->tree,
				.file = v->e.is_file ? v->file_name : NULL,
				.readonly = v->e.readonly,
				.bin = vm->vfsd_bin,
				.deps = vm->vfsd_deps,
				.attach = vm->run_dir,
				.uid = vm->uid,
				.gid = vm->gid };
	struct spawn_fd fds[] = { { nul[0], 0 }, { logp[1], 1 }, { logp[1], 2 }, { lfd, 3 } };
	struct spawn sp = { .path = "/virtiofsd",
			    .exec_fd = -1,
			    .argv = argv,
			    .envp = envp,
			    .fds = fds,
			    .nfds = ARRAY_SIZE(fds),
			    .ns_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS,
			    .pdeathsig = SIGKILL,
			    .new_session = true,
			    .setup = vfsd_setup,
			    .forked = vfsd_forked,
			    .ctx = &ctx };
	r = spawn_run(&sp, &v->vfsd, msg, sizeof(msg));
	close(nul[0]);
	close(logp[1]);
	close(v->tree);
	v->tree = -1;
	if (r < 0) {
		close(logp[0]);
		log_error("cannot start virtiofsd for share %s: %s", v->e.tag, msg);
		return EXIT_LAUNCH;
	}
	v->log.fd = logp[0];
	fcntl(v->log.fd, F_SETFL, O_NONBLOCK);
	log_debug("virtiofsd pid %d serves '%s' as tag %s%s", v->vfsd, v->e.source, v->e.tag,
		  v->e.readonly ? " (read-only)" : "");
	return 0;
}

int shares_start(struct vm *vm)
{
	int r;
	if (vm->nvols == 0)
		return 0;
	test_pause("volumes-pinned");
	if ((r = shares_stage(vm)))
		return r;
	char buf[PATH_MAX + 8];
	snprintf(buf, sizeof(buf), "%s/run", vm->root);
	vm->sockdir = open(buf, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (vm->sockdir < 0)
		return log_sys(errno, "cannot open '%s'", buf), EXIT_LAUNCH;
	if ((r = vfsd_binary(vm)))
		return r;
	for (int i = 0; i < vm->nvols; i++)
		if ((r = start_one(vm, &vm->vols[i], i)))
			return r;
	return 0;
}

void logtail_drain(struct logtail *t)
{
	char buf[4096];
	ssize_t n = -1;
	/* bounded per wake: a daemon that never stops writing must not pin the loop */
	for (int reads = 0; reads < 16 && t->fd >= 0 && (n = read(t->fd, buf, sizeof(buf))) != 0; reads++) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN) {
				close(t->fd);
				t->fd = -1;
			}
			return;
		}
		/* keep the last bytes only: a guest can make the daemon log without end */
		size_t k = (size_t)n, cap = sizeof(t->text) - 1;
		if (k >= cap) {
			memcpy(t->text, buf + k - cap, cap);
			t->len = cap;
		} else {
			if (t->len + k > cap) {
				size_t drop = t->len + k - cap;
				memmove(t->text, t->text + drop, t->len - drop);
				t->len -= drop;
			}
			memcpy(t->text + t->len, buf, k);
			t->len += k;
		}
		t->text[t->len] = 0;
	}
	if (t->fd >= 0 && n == 0) {
		close(t->fd);
		t->fd = -1;
	}
}

int shares_reap(struct vm *vm, pid_t pid, int status, bool complain)
{
	for (int i = 0; i < vm->nvols; i++)
		if (vm->vols[i].vfsd == pid) {
			struct volume *v = &vm->vols[i];
			v->vfsd = -1;
			logtail_drain(&v->log);
			sanitize_text(v->log.text, v->log.len);
			if (complain && vm->qemu > 0)
				log_error("virtiofsd for share %s ('%s') exited (status %d) while the VM ran: %s",
					  v->e.tag, v->e.source, status, v->log.len ? v->log.text : "(no log)");
			return i;
		}
	return -1;
}

void shares_stop(struct vm *vm)
{
	for (int i = 0; i < vm->nvols; i++) {
		struct volume *v = &vm->vols[i];
		if (v->vfsd > 0)
			spawn_kill(v->vfsd);
		v->vfsd = -1;
		if (v->log.fd >= 0)
			close(v->log.fd);
		if (v->pinned >= 0)
			close(v->pinned);
		if (v->share_fd >= 0)
			close(v->share_fd);
		if (v->tree >= 0)
			close(v->tree);
		v->log.fd = v->pinned = v->share_fd = v->tree = -1;
	}
	if (vm->sockdir >= 0)
		close(vm->sockdir);
	vm->sockdir = -1;
}
