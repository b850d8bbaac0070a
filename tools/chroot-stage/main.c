/* SPDX-License-Identifier: MIT */
/* chroot-stage: a jailer-style chroot for one VM (<base>/<vmm name>/<id>/root)
 * holding only what its VMM needs, and a teardown that never touches anything
 * outside it. */
#include "common.h"
#include "testhook.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define MAX_ITEMS 32

static struct {
	const char *cmd, *id, *vmm, *base, *home, *kernel, *initrd;
	const char *drives[MAX_ITEMS];
	int ndrives;
	const char *devices[MAX_ITEMS];
	int ndevices;
	const char *ro_binds[MAX_ITEMS];
	int nbinds;
	long uid, gid;
	int fail_at;  /* BOXKIT_FAIL_AT: inject a failure at step N (tests) */
	int stall_at; /* BOXKIT_STALL_AT: stop at step N for a minute (tests: kill -9 mid-create) */
} arg = { .uid = -1, .gid = -1 };

static const struct {
	const char *name;
	unsigned major, minor;
} known_devices[] = {
	{ "kvm", 10, 232 },  { "net/tun", 10, 200 }, { "vhost-vsock", 10, 241 },
	{ "urandom", 1, 9 }, { "null", 1, 3 },	     { "zero", 1, 5 },
};

static void usage(FILE *f)
{
	fputs("Usage: chroot-stage create --id ID --vmm PATH --uid UID --gid GID [--base DIR]\n"
	      "                           [--kernel FILE] [--initrd FILE] [--drive FILE|BLOCKDEV]...\n"
	      "                           [--device NAME]... [--ro-bind SRC[:DST]]...\n"
	      "       chroot-stage destroy --id ID [--base DIR]\n"
	      "       chroot-stage list [--base DIR]\n"
	      "\n"
	      "Stage a per-VM chroot <base>/<vmm name>/<id>/root as Firecracker's jailer\n"
	      "does, and tear it down without touching anything outside it.\n"
	      "Devices: kvm, net/tun, vhost-vsock, urandom, null, zero.\n"
	      "Default base: <boxkit home>/jail.\n"
	      "\n"
	      "Exit status: 0 ok, 1 refused (bad id, symlink source, unknown device, a\n"
	      "mount left that destroy will not cross), 2 usage, 3 system failure.\n"
	      "Manual: tools/chroot-stage/chroot-stage.1.md\n",
	      f);
}

static bool id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n < 1 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '-')
			return false;
	return true;
}

static int parse_argv(int argc, char **argv)
{
	enum { O_ID = 256, O_VMM, O_UID, O_GID, O_BASE, O_KERNEL, O_INITRD, O_DRIVE, O_DEVICE, O_ROBIND, O_HOME };
	static const struct option opts[] = {
		{ "id", required_argument, NULL, O_ID },
		{ "vmm", required_argument, NULL, O_VMM },
		{ "uid", required_argument, NULL, O_UID },
		{ "gid", required_argument, NULL, O_GID },
		{ "base", required_argument, NULL, O_BASE },
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "initrd", required_argument, NULL, O_INITRD },
		{ "drive", required_argument, NULL, O_DRIVE },
		{ "device", required_argument, NULL, O_DEVICE },
		{ "ro-bind", required_argument, NULL, O_ROBIND },
		{ "home", required_argument, NULL, O_HOME },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	char *end;
	if (argc < 2) {
		log_error("no command given (create, destroy, list)");
		return -1;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		exit(0);
	}
	arg.cmd = argv[1];
	if (strcmp(arg.cmd, "create") && strcmp(arg.cmd, "destroy") && strcmp(arg.cmd, "list")) {
		log_error("unknown command '%s' (create, destroy, list)", arg.cmd);
		return -1;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
		switch (c) {
		case O_ID: arg.id = optarg; break;
		case O_VMM: arg.vmm = optarg; break;
		case O_UID:
		case O_GID: {
			long v = strtol(optarg, &end, 10);
			if (*end || end == optarg || v < 0 || v > 0x7fffffff) {
				log_error("--%s '%s' must be a number", c == O_UID ? "uid" : "gid", optarg);
				return -1;
			}
			if (c == O_UID)
				arg.uid = v;
			else
				arg.gid = v;
			break;
		}
		case O_BASE: arg.base = optarg; break;
		case O_KERNEL: arg.kernel = optarg; break;
		case O_INITRD: arg.initrd = optarg; break;
		case O_DRIVE:
		case O_DEVICE:
		case O_ROBIND: {
			const char **list = c == O_DRIVE ? arg.drives : c == O_DEVICE ? arg.devices : arg.ro_binds;
			int *n = c == O_DRIVE ? &arg.ndrives : c == O_DEVICE ? &arg.ndevices : &arg.nbinds;
			if (*n == MAX_ITEMS) {
				log_error("too many --%s options", c == O_DRIVE	   ? "drive"
								   : c == O_DEVICE ? "device"
										   : "ro-bind");
				return -1;
			}
			list[(*n)++] = optarg;
			break;
		}
		case O_HOME: arg.home = optarg; break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc) {
		log_error("unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if (strcmp(arg.cmd, "list") && !arg.id) {
		log_error("--id is required");
		return -1;
	}
	if (!strcmp(arg.cmd, "create") && (!arg.vmm || arg.uid < 0 || arg.gid < 0)) {
		log_error("create needs --vmm, --uid and --gid");
		return -1;
	}
	/* test builds only */
	const char *f = test_getenv("BOXKIT_FAIL_AT");
	arg.fail_at = f ? atoi(f) : 0;
	f = test_getenv("BOXKIT_STALL_AT");
	arg.stall_at = f ? atoi(f) : 0;
	return 0;
}

/* Keep only what staging and cleanup need in the bounding set. */
static int drop_bounding(void)
{
	static const int keep[] = { CAP_CHOWN,	CAP_DAC_OVERRIDE, CAP_FOWNER,	 CAP_KILL,	CAP_MKNOD,
				    CAP_SETGID, CAP_SETUID,	  CAP_SYS_ADMIN, CAP_SYS_CHROOT };
	if (geteuid() != 0)
		return 0;
	for (int c = 0; c <= CAP_LAST_CAP; c++) {
		bool k = false;
		for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
			k |= keep[i] == c;
		if (!k && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			return -errno;
	}
	return 0;
}

/* ---- destroy: the jail's mounts detached, then the tree removed without
 * following a symlink at any level (the <vmm name> component included) or
 * crossing a mount, in bounded memory (lib/common/jail.c) ----------------------- */

static int cmd_destroy(const char *base)
{
	char err[1024] = "";
	int r = 0;
	if (!id_valid(arg.id)) {
		log_error("invalid id '%s': 1 to 64 characters of [A-Za-z0-9-]", arg.id);
		return EXIT_REFUSED;
	}
	cleanup_close int bfd = open(base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (bfd < 0)
		return errno == ENOENT ? 0 : log_sys(errno, "cannot open '%s'", base);
	/* <base>/<vmm name>/<id>: the vmm name is not known at destroy; look at each */
	DIR *d = fdopendir(dup(bfd));
	if (!d)
		return log_sys(errno, "cannot list '%s'", base);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		struct stat st;
		if (fstatat(bfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
			if (S_ISLNK(st.st_mode))
				log_warn("'%s/%s' is a symlink; not following it", base, e->d_name);
			continue;
		}
		int rr = jail_destroy(bfd, base, e->d_name, arg.id, err, sizeof(err));
		if (rr < 0) {
			log_error("%s", err);
			r = r ? r : (rr == -EBUSY || rr == -ELOOP ? EXIT_REFUSED : EXIT_SYSTEM);
		}
	}
	closedir(d);
	if (r == 0)
		log_debug("destroyed the jail of '%s'", arg.id);
	return r;
}

/* ---- create ---------------------------------------------------------------------- */

struct stage {
	char dir[PATH_MAX], root[PATH_MAX + 8];
	int step;
};

static int inject(struct stage *s, const char *what)
{
	s->step++;
	if (arg.fail_at && s->step == arg.fail_at) {
		log_error("injected failure at step %d (%s)", s->step, what);
		return -1;
	}
	log_debug("step %d: %s", s->step, what);
	if (arg.stall_at && s->step == arg.stall_at) {
		fprintf(stderr, "chroot-stage: stalled at step %d\n", s->step);
		sleep(60);
	}
	return 0;
}

static int check_source_file(const char *what, const char *path, bool allow_blk)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		log_error("%s '%s': %s", what, path, strerror(errno));
		return EXIT_REFUSED;
	}
	if (S_ISLNK(st.st_mode)) {
		log_error("%s '%s' is a symlink; give the real file", what, path);
		return EXIT_REFUSED;
	}
	if (!S_ISREG(st.st_mode) && !(allow_blk && S_ISBLK(st.st_mode))) {
		log_error("%s '%s' is not a regular file%s", what, path, allow_blk ? " or block device" : "");
		return EXIT_REFUSED;
	}
	return 0;
}

static int copy_file(const char *src, int dfd, const char *name, mode_t mode)
{
	cleanup_close int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	cleanup_close int out = -1;
	char buf[1 << 16];
	ssize_t n;
	if (in < 0)
		return -errno;
	out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (out < 0)
		return -errno;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			return -EIO;
	if (n < 0)
		return -errno;
	return fchmod(out, mode) < 0 ? -errno : 0;
}

/* hard link, or copy when the source is on another filesystem */
static int link_or_copy(const char *src, int rootfd, const char *name)
{
	if (linkat(AT_FDCWD, src, rootfd, name, 0) == 0)
		return 0;
	if (errno != EXDEV)
		return -errno;
	struct stat st;
	if (stat(src, &st) < 0)
		return -errno;
	return copy_file(src, rootfd, name, st.st_mode & 07777);
}

static int mkdir_in(int rootfd, const char *rel, mode_t mode)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s", rel);
	for (char *s = p;; s++) {
		if (*s == '/' || !*s) {
			char c = *s;
			*s = 0;
			if (p[0] && mkdirat(rootfd, p, mode) < 0 && errno != EEXIST)
				return -errno;
			if (!c)
				break;
			*s = c;
		}
	}
	return 0;
}

static void add_bind(struct json_object *binds, const char *src, const char *dst)
{
	struct json_object *b = json_object_new_object();
	json_object_object_add(b, "source", json_object_new_string(src));
	json_object_object_add(b, "target", json_object_new_string(dst));
	json_object_array_add(binds, b);
}

static int do_create(struct stage *s, const char *base, struct json_object *out)
{
	int r;
	const char *vname = strrchr(arg.vmm, '/') ? strrchr(arg.vmm, '/') + 1 : arg.vmm;
	cleanup_free char *failed = NULL;
	cleanup_close int rootfd = -1;
	struct json_object *drives = json_object_new_array(), *devs = json_object_new_array();
	struct json_object *binds = json_object_new_array();

	json_object_object_add(out, "drives", drives);
	json_object_object_add(out, "devices", devs);
	json_object_object_add(out, "binds", binds);
	if (inject(s, "directories") < 0)
		return EXIT_SYSTEM;
	if ((r = mkdir_p_0700(base, &failed)) < 0)
		return log_sys(r, "cannot create '%s'", failed);
	char vdir[PATH_MAX];
	snprintf(vdir, sizeof(vdir), "%s/%s", base, vname);
	if (mkdir(vdir, 0700) < 0 && errno != EEXIST)
		return log_sys(errno, "cannot create '%s'", vdir);
	if (mkdir(s->dir, 0700) < 0) {
		if (errno == EEXIST) {
			log_error("a chroot for id '%s' exists already at '%s' (destroy it first)", arg.id, s->dir);
			s->dir[0] = 0; /* not ours: never roll it back */
			return EXIT_REFUSED;
		}
		return log_sys(errno, "cannot create '%s'", s->dir);
	}
	if (mkdir(s->root, 0700) < 0 || chown(s->root, (uid_t)arg.uid, (gid_t)arg.gid) < 0)
		return log_sys(errno, "cannot create '%s'", s->root);
	/* hard links first: link(2) does not cross mounts, and after the self-bind
	 * the root is one */
	rootfd = open(s->root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0)
		return log_sys(errno, "cannot open '%s'", s->root);
	if (inject(s, "kernel and initrd") < 0)
		return EXIT_SYSTEM;
	const char *files[2] = { arg.kernel, arg.initrd }, *names[2] = { "kernel", "initrd" };
	for (int i = 0; i < 2; i++) {
		if (!files[i])
			continue;
		if ((r = link_or_copy(files[i], rootfd, names[i])) < 0)
			return log_sys(r, "cannot stage %s '%s'", names[i], files[i]);
		char p[32];
		snprintf(p, sizeof(p), "/%s", names[i]);
		json_object_object_add(out, names[i], json_object_new_string(p));
	}
	if (inject(s, "drives") < 0)
		return EXIT_SYSTEM;
	for (int i = 0; i < arg.ndrives; i++) {
		char name[32];
		struct stat st;
		snprintf(name, sizeof(name), "drive%d", i);
		if (stat(arg.drives[i], &st) < 0)
			return log_sys(errno, "cannot stat '%s'", arg.drives[i]);
		if (S_ISBLK(st.st_mode)) {
			if (mknodat(rootfd, name, S_IFBLK | 0600, st.st_rdev) < 0 ||
			    fchownat(rootfd, name, (uid_t)arg.uid, (gid_t)arg.gid, AT_SYMLINK_NOFOLLOW) < 0)
				return log_sys(errno, "cannot make block device '%s'", name);
		} else if ((r = link_or_copy(arg.drives[i], rootfd, name)) < 0)
			return log_sys(r, "cannot stage drive '%s'", arg.drives[i]);
		char p[40];
		snprintf(p, sizeof(p), "/%s", name);
		json_object_array_add(drives, json_object_new_string(p));
	}
	if (inject(s, "device nodes") < 0)
		return EXIT_SYSTEM;
	if ((r = mkdir_in(rootfd, "dev", 0755)) < 0)
		return log_sys(r, "cannot create '%s/dev'", s->root);
	for (int i = 0; i < arg.ndevices; i++) {
		for (size_t k = 0; k < ARRAY_SIZE(known_devices); k++) {
			if (strcmp(known_devices[k].name, arg.devices[i]))
				continue;
			char rel[64];
			snprintf(rel, sizeof(rel), "dev/%s", known_devices[k].name);
			if (strchr(known_devices[k].name, '/') && (r = mkdir_in(rootfd, "dev/net", 0755)) < 0)
				return log_sys(r, "cannot create dev/net");
			if (mknodat(rootfd, rel, S_IFCHR | 0600,
				    makedev(known_devices[k].major, known_devices[k].minor)) < 0 ||
			    fchownat(rootfd, rel, (uid_t)arg.uid, (gid_t)arg.gid, AT_SYMLINK_NOFOLLOW) < 0)
				return log_sys(errno, "cannot make device '/%s'", rel);
			char p[70];
			snprintf(p, sizeof(p), "/%s", rel);
			json_object_array_add(devs, json_object_new_string(p));
		}
	}
	if (inject(s, "vmm copy") < 0)
		return EXIT_SYSTEM;
	if ((r = copy_file(arg.vmm, rootfd, vname, 0755)) < 0)
		return log_sys(r, "cannot copy the VMM '%s'", arg.vmm);
	{
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "/%s", vname);
		json_object_object_add(out, "vmm", json_object_new_string(p));
	}
	if (inject(s, "library bind points") < 0)
		return EXIT_SYSTEM;
	/* the host's library directories: their mount points here and their
	 * list in the output. vm-launch binds them read-only, nosuid, nodev in
	 * the VMM's own mount namespace, so the host's namespace never holds a
	 * mount of the jail. Merged-usr symlinks (/lib -> usr/lib) are recreated
	 * as symlinks. */
	static const char *const libdirs[] = { "/usr/lib", "/usr/lib64", "/lib", "/lib64" };
	for (size_t i = 0; i < ARRAY_SIZE(libdirs); i++) {
		struct stat st;
		char dst[PATH_MAX + 16], target[PATH_MAX];
		if (lstat(libdirs[i], &st) < 0)
			continue;
		snprintf(dst, sizeof(dst), "%s%s", s->root, libdirs[i]);
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(libdirs[i], target, sizeof(target) - 1);
			if (n < 0)
				return log_sys(errno, "readlink '%s'", libdirs[i]);
			target[n] = 0;
			if (symlinkat(target, rootfd, libdirs[i] + 1) < 0 && errno != EEXIST)
				return log_sys(errno, "cannot link '%s'", dst);
			continue;
		}
		if ((r = mkdir_in(rootfd, libdirs[i] + 1, 0755)) < 0)
			return log_sys(r, "cannot create '%s'", dst);
		add_bind(binds, libdirs[i], libdirs[i]);
	}
	for (int i = 0; i < arg.nbinds; i++) {
		char src[PATH_MAX], dst[PATH_MAX], full[PATH_MAX * 2 + 16];
		const char *colon = strchr(arg.ro_binds[i], ':');
		snprintf(src, sizeof(src), "%.*s",
			 colon ? (int)(colon - arg.ro_binds[i]) : (int)strlen(arg.ro_binds[i]), arg.ro_binds[i]);
		snprintf(dst, sizeof(dst), "%s", colon ? colon + 1 : src);
		snprintf(full, sizeof(full), "%s%s", s->root, dst);
		if ((r = mkdir_in(rootfd, dst + 1, 0755)) < 0)
			return log_sys(r, "cannot create '%s'", full);
		add_bind(binds, src, dst);
	}
	if (inject(s, "socket directory") < 0)
		return EXIT_SYSTEM;
	/* root's and 0755: the VMM connects to the sockets in it but cannot swap
	 * their names (vm-launch creates them) */
	if (mkdirat(rootfd, "run", 0755) < 0)
		return log_sys(errno, "cannot create '%s/run'", s->root);
	json_object_object_add(out, "socket_dir", json_object_new_string("/run"));
	return 0;
}

static int cmd_create(const char *base)
{
	struct stage s = { 0 };
	int r;
	/* validate everything before creating anything */
	if (!id_valid(arg.id)) {
		log_error("invalid id '%s': 1 to 64 characters of [A-Za-z0-9-]", arg.id);
		return EXIT_REFUSED;
	}
	if (arg.uid == 0 || arg.gid == 0) {
		log_error("refusing uid or gid 0: the VMM must run unprivileged");
		return EXIT_REFUSED;
	}
	if ((r = check_source_file("vmm", arg.vmm, false)) ||
	    (arg.kernel && (r = check_source_file("kernel", arg.kernel, false))) ||
	    (arg.initrd && (r = check_source_file("initrd", arg.initrd, false))))
		return r;
	if (access(arg.vmm, X_OK) < 0) {
		log_error("vmm '%s' is not executable", arg.vmm);
		return EXIT_REFUSED;
	}
	for (int i = 0; i < arg.ndrives; i++)
		if ((r = check_source_file("drive", arg.drives[i], true)))
			return r;
	for (int i = 0; i < arg.ndevices; i++) {
		bool ok = false;
		for (size_t k = 0; k < ARRAY_SIZE(known_devices); k++)
			ok |= !strcmp(known_devices[k].name, arg.devices[i]);
		if (!ok) {
			log_error("unknown device '%s' (kvm, net/tun, vhost-vsock, urandom, null, zero)",
				  arg.devices[i]);
			return EXIT_REFUSED;
		}
	}
	for (int i = 0; i < arg.nbinds; i++) {
		const char *b = arg.ro_binds[i], *colon = strchr(b, ':');
		char src[PATH_MAX];
		snprintf(src, sizeof(src), "%.*s", colon ? (int)(colon - b) : (int)strlen(b), b);
		const char *dst = colon ? colon + 1 : src;
		struct stat st;
		if (src[0] != '/' || dst[0] != '/' || !path_is_clean_relative(dst + 1) || stat(src, &st) < 0) {
			log_error("--ro-bind '%s': SRC must exist and SRC, DST be absolute clean paths", b);
			return EXIT_REFUSED;
		}
	}
	const char *vname = strrchr(arg.vmm, '/') ? strrchr(arg.vmm, '/') + 1 : arg.vmm;
	snprintf(s.dir, sizeof(s.dir), "%s/%s/%s", base, vname, arg.id);
	snprintf(s.root, sizeof(s.root), "%s/root", s.dir);
	if (strlen(s.root) > PATH_MAX - 200) {
		log_error("base path too long");
		return EXIT_REFUSED;
	}
	if ((r = drop_bounding()) < 0)
		return log_sys(r, "cannot drop capabilities from the bounding set");

	cleanup_json struct json_object *out = json_object_new_object();
	json_object_object_add(out, "id", json_object_new_string(arg.id));
	json_object_object_add(out, "root", json_object_new_string(s.root));
	json_object_object_add(out, "uid", json_object_new_int64(arg.uid));
	json_object_object_add(out, "gid", json_object_new_int64(arg.gid));
	r = do_create(&s, base, out);
	if (r) {
		/* roll back every step of this run: the mounts, then the tree */
		char err[1024];
		cleanup_close int bfd = s.dir[0] ? open(base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
		if (s.dir[0] && (bfd < 0 || jail_destroy(bfd, base, vname, arg.id, err, sizeof(err)) < 0))
			log_error("could not roll back '%s'", s.dir);
		return r;
	}
	return jsonl_write(stdout, out) < 0 ? log_sys(errno, "cannot write output") : 0;
}

/* ---- list ------------------------------------------------------------------------- */

static bool vmm_running(const char *root)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	bool found = false;
	while (d && !found && (e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char p[300], t[PATH_MAX];
		snprintf(p, sizeof(p), "/proc/%s/root", e->d_name);
		ssize_t n = readlink(p, t, sizeof(t) - 1);
		if (n > 0) {
			t[n] = 0;
			found = !strcmp(t, root);
		}
	}
	if (d)
		closedir(d);
	return found;
}

static int cmd_list(const char *base)
{
	DIR *d = opendir(base);
	struct dirent *v;
	if (!d)
		return errno == ENOENT ? 0 : log_sys(errno, "cannot open '%s'", base);
	while ((v = readdir(d))) {
		if (v->d_name[0] == '.')
			continue;
		char vdir[PATH_MAX];
		snprintf(vdir, sizeof(vdir), "%s/%s", base, v->d_name);
		DIR *d2 = opendir(vdir);
		struct dirent *e;
		while (d2 && (e = readdir(d2))) {
			if (e->d_name[0] == '.' || !id_valid(e->d_name))
				continue;
			char root[PATH_MAX * 2];
			snprintf(root, sizeof(root), "%s/%s/root", vdir, e->d_name);
			cleanup_json struct json_object *o = json_object_new_object();
			json_object_object_add(o, "id", json_object_new_string(e->d_name));
			json_object_object_add(o, "vmm", json_object_new_string(v->d_name));
			json_object_object_add(o, "root", json_object_new_string(root));
			json_object_object_add(o, "running", json_object_new_boolean(vmm_running(root)));
			jsonl_write(stdout, o);
		}
		if (d2)
			closedir(d2);
	}
	closedir(d);
	return 0;
}

static int tool_main(int argc, char **argv)
{
	cleanup_free char *home = NULL, *base = NULL;
	int r;
	log_init(argv[0]);
	if (parse_argv(argc, argv) < 0)
		return EXIT_USAGE;
	if (arg.base)
		base = strdup(arg.base);
	else if (boxkit_home(arg.home, &home) == 0 && asprintf(&base, "%s/jail", home) < 0)
		base = NULL;
	if (!base) {
		log_error("cannot find the boxkit home: set --base, --home, BOXKIT_HOME or HOME");
		return EXIT_USAGE;
	}
	/* canonical once, at entry: the mount table and /proc show canonical
	 * paths, and the jail's paths are compared with them */
	{
		char canon[PATH_MAX], parent[PATH_MAX];
		cleanup_free char *b = steal_ptr(base);
		if (realpath(b, canon))
			base = strdup(canon);
		else if (errno != ENOENT)
			return log_sys(errno, "cannot resolve '%s'", b);
		else {
			/* not made yet (create makes it after validating): its parent canonical */
			char *slash = strrchr(b, '/');
			snprintf(parent, sizeof(parent), "%.*s", slash ? (int)(slash - b) : 1,
				 slash && slash != b ? b : "/");
			if (slash && realpath(parent, canon) &&
			    asprintf(&base, "%s/%s", strcmp(canon, "/") ? canon : "", slash + 1) < 0)
				base = NULL;
			else if (!base)
				base = strdup(b);
		}
		if (!base)
			return log_sys(ENOMEM, "out of memory");
	}
	if (!strcmp(arg.cmd, "create"))
		r = cmd_create(base);
	else if (!strcmp(arg.cmd, "destroy"))
		r = cmd_destroy(base);
	else
		r = cmd_list(base);
	if (close_stdout() < 0 && r == 0)
		r = EXIT_SYSTEM;
	return r;
}

int main(int argc, char **argv)
{
	return tool_exit(tool_main(argc, argv));
}
