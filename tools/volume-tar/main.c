/* SPDX-License-Identifier: MIT */
/* volume-tar: data in and out of a named volume as a tar stream.
 *
 * The volume is the guest's: it controls every name, byte, symlink and
 * rename in it at any moment, even while this runs. So every path in it is
 * resolved once, beneath a held directory descriptor, never through a
 * symlink (open_beneath: openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
 * RESOLVE_NO_MAGICLINKS), checked with fstat, and from then on used through
 * the descriptor only.
 *
 * import: the archive is hostile too. Each member is judged first
 * (lib/common/tarentry.c: names, link targets, types), then unpacked into a
 * fresh staging directory (root's, 0700) inside the target directory; the
 * directories made stay 0700 and root's until the whole archive has been
 * read. Then directories get their owner, mode and time (deepest first), and
 * each top-level entry is moved into the target with RENAME_NOREPLACE. A
 * refusal or failure at any point moves back what was moved and removes the
 * staging directory: an import is all or nothing.
 *
 * export: a walk by descriptors (openat O_PATH|O_NOFOLLOW, fstat, then the
 * descriptor: "." for a directory, readlinkat "" for a symlink; a file is
 * opened O_NOFOLLOW|O_NONBLOCK and must be the inode that was looked at),
 * written as a pax archive whose headers hold exactly the bytes that follow. */
#include "common.h"
#include "spawn.h"
#include "tarentry.h"
#include "testhook.h"
#include "vol.h"
#include "volspec.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define ENTRIES_MAX (1u << 20)		   /* members of one archive */
#define NAME_BYTES_MAX (64u * 1024 * 1024) /* the names of the directories kept for the fix-up */
#define IO_BUF (128 * 1024)
#define STAGE_PREFIX ".boxkit-import-"

enum cmd { CMD_NONE, CMD_IMPORT, CMD_EXPORT, CMD_STAT };

static struct {
	enum cmd cmd;
	const char *home;
	const char *name;
	const char *into;
	const char *as;
	const char *path;
	bool usage;
	bool set_uid, set_gid;
	uid_t uid;
	gid_t gid;
	char **producer; /* import -- CMD [ARG...]: the archive is CMD's stdout */
} arg;

static void usage(FILE *f)
{
	fputs("Usage: volume-tar import --home DIR [--uid UID --gid GID] [--into DIR] [--as NAME] VOLUME < ARCHIVE\n"
	      "       volume-tar import [OPTIONS] VOLUME -- CMD [ARG...]   (the archive is CMD's stdout)\n"
	      "       volume-tar export --home DIR [--path PATH] VOLUME > ARCHIVE\n"
	      "       volume-tar stat --home DIR [--path PATH] [--usage] VOLUME\n"
	      "\n"
	      "Move data in and out of the named volume VOLUME as a tar stream, safely\n"
	      "against a guest that changes the volume meanwhile.\n"
	      "\n"
	      "import: unpack a tar archive (ustar, pax or GNU; gzip, bzip2, xz or zstd\n"
	      "compressed too) from stdin, all or nothing. Refused, with nothing written:\n"
	      "absolute names, '..', links out of the volume, hard links to anything but a\n"
	      "file this archive unpacked, anything beneath a symlink, devices, FIFOs,\n"
	      "sockets, names that already exist. setuid and setgid bits are dropped.\n"
	      "export: write the volume (or PATH in it) as a pax archive to stdout.\n"
	      "stat: one JSON line on PATH (default the volume's root): its type and size;\n"
	      "with --usage the space the tree under it uses.\n"
	      "\n"
	      "Options:\n"
	      "  --home DIR     boxkit home (default $BOXKIT_HOME, $XDG_DATA_HOME/boxkit)\n"
	      "  --uid UID, --gid GID\n"
	      "                 import: every entry made is given to UID:GID (box passes the\n"
	      "                 VM user's); the archive's owners are ignored\n"
	      "  --into DIR     import: into this existing directory of the volume (relative)\n"
	      "  --as NAME      import: the archive's one top-level entry is created as NAME\n"
	      "  --path PATH    export, stat: this path of the volume (relative); export names\n"
	      "                 its top-level entry after PATH's last component\n"
	      "  --usage        stat: add used_bytes, apparent_bytes and counts (a walk)\n"
	      "  -- CMD [ARG...] import: run CMD and read the archive from its stdout;\n"
	      "                 nothing is imported unless CMD exits 0\n"
	      "  -v, --verbose  debug lines on stderr\n"
	      "  -h, --help     this text\n"
	      "\n"
	      "Exit status: 0 ok, 1 refused (a member, a path, a name that exists; nothing\n"
	      "imported), 2 usage error (also a terminal as the archive), 3 system failure\n"
	      "(no space, I/O; nothing imported).\n"
	      "Manual: tools/volume-tar/volume-tar.1.md\n",
	      f);
}

static int parse_id(const char *s, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v >= UINT32_MAX)
		return -1;
	*out = v;
	return 0;
}

static int parse_argv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "home", required_argument, NULL, 'H' }, { "uid", required_argument, NULL, 'u' },
		{ "gid", required_argument, NULL, 'g' },  { "into", required_argument, NULL, 'i' },
		{ "as", required_argument, NULL, 'a' },	  { "path", required_argument, NULL, 'p' },
		{ "usage", no_argument, NULL, 'U' },	  { "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },	  { 0 },
	};
	unsigned long id;
	int c;

	if (argc >= 2 && argv[1][0] != '-') {
		if (!strcmp(argv[1], "import"))
			arg.cmd = CMD_IMPORT;
		else if (!strcmp(argv[1], "export"))
			arg.cmd = CMD_EXPORT;
		else if (!strcmp(argv[1], "stat"))
			arg.cmd = CMD_STAT;
		else {
			log_error("unknown command '%s' (import, export or stat)", argv[1]);
			return -1;
		}
		argc--;
		argv++;
	}
	while ((c = getopt_long(argc, argv, "+hv", opts, NULL)) != -1) {
		switch (c) {
		case 'H': arg.home = optarg; break;
		case 'u':
		case 'g':
			if (parse_id(optarg, &id) < 0) {
				log_error("--%s '%s' is not a number", c == 'u' ? "uid" : "gid", optarg);
				return -1;
			}
			if (c == 'u')
				arg.uid = (uid_t)id, arg.set_uid = true;
			else
				arg.gid = (gid_t)id, arg.set_gid = true;
			break;
		case 'i': arg.into = optarg; break;
		case 'a': arg.as = optarg; break;
		case 'p': arg.path = optarg; break;
		case 'U': arg.usage = true; break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h': usage(stdout); exit(EXIT_OK);
		default: usage(stderr); return -1;
		}
	}
	if (arg.cmd == CMD_NONE) {
		log_error("no command given: import, export or stat (try --help)");
		return -1;
	}
	if (argc - optind < 1) {
		log_error("one volume name expected (try --help)");
		return -1;
	}
	arg.name = argv[optind];
	if (argc - optind > 1) {
		/* getopt stops at the first operand: "--" after NAME is ours */
		if (arg.cmd != CMD_IMPORT || strcmp(argv[optind + 1], "--") || argc - optind < 3) {
			log_error("one volume name expected (import takes '-- CMD [ARG...]' after it)");
			return -1;
		}
		arg.producer = argv + optind + 2;
	}
	if (arg.set_uid != arg.set_gid) {
		log_error("--uid and --gid go together");
		return -1;
	}
	if (arg.cmd != CMD_IMPORT && (arg.set_uid || arg.into || arg.as)) {
		log_error("--uid, --gid, --into and --as are for import");
		return -1;
	}
	if (arg.cmd == CMD_IMPORT && arg.path) {
		log_error("--path is for export and stat (import takes --into)");
		return -1;
	}
	if (arg.cmd != CMD_STAT && arg.usage) {
		log_error("--usage is for stat");
		return -1;
	}
	return 0;
}

/* a name from the archive or the volume, fit for a message */
#define QUOTE(var, s)                                                                                                  \
	char var[200];                                                                                                 \
	tarentry_quote((s), var, sizeof(var))

/* ---- the volume ------------------------------------------------------------------ */

/* The volume's root (O_PATH) in *rootfd: 0, EXIT_REFUSED (logged), or -errno
 * (logged). */
static int open_volume(int *rootfd)
{
	cleanup_free char *home = NULL;
	int r;

	if (!volume_name_valid(arg.name)) {
		log_error("invalid volume name '%s'", arg.name);
		return EXIT_REFUSED;
	}
	if ((r = boxkit_home_canon(arg.home, false, &home)) < 0) {
		if (r != -ENOENT)
			return log_sys(r, "cannot resolve the home");
		log_error("no volume '%s' (no home)", arg.name);
		return EXIT_REFUSED;
	}
	cleanup_close int homefd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (homefd < 0)
		return log_sys(errno, "cannot open '%s'", home);
	cleanup_close int volfd = openat(homefd, VOL_STORE_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (volfd < 0 && errno != ENOENT)
		return log_sys(errno, "cannot open '%s/" VOL_STORE_DIR "'", home);
	int fd = volfd < 0 ? -ENOENT : vol_open_root(volfd, VOL_NAMED, arg.name);
	if (fd == -ENOENT) {
		log_error("no volume '%s'", arg.name);
		return EXIT_REFUSED;
	}
	if (fd == -ELOOP || fd == -ENOTDIR || fd == -EXDEV) {
		log_error("volume '%s' is not a directory of the volume store (a symlink or a mount?)", arg.name);
		return EXIT_REFUSED;
	}
	if (fd < 0)
		return log_sys(fd, "cannot open volume '%s'", arg.name);
	struct vol_entry e = { .kind = VOL_NAMED };
	snprintf(e.name, sizeof(e.name), "%s", arg.name);
	if (vol_sized(homefd, &e) && !fd_is_mount_root(fd)) {
		close(fd);
		log_error("volume '%s' has a size limit but its filesystem is not mounted; run 'box setup'", arg.name);
		return EXIT_REFUSED;
	}
	*rootfd = fd;
	return 0;
}

/* A relative path of the volume given on the command line: clean, relative,
 * valid UTF-8 is not required (the guest names things as it likes). */
static bool rel_ok(const char *opt, const char *p)
{
	if (strlen(p) >= PATH_MAX || !path_is_clean_relative(p)) {
		QUOTE(q, p);
		log_error("%s '%s': a relative path with no '.', '..' or empty component", opt, q);
		return false;
	}
	return true;
}

/* ---- signals (import cleans up when interrupted) -------------------------------- */

static volatile sig_atomic_t interrupted;
static void on_signal(int sig)
{
	interrupted = sig;
}
static void catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal }; /* no SA_RESTART: a blocked read returns */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* ---- import ------------------------------------------------------------------------ */

struct dirrec {
	char *rel; /* beneath the staging directory */
	unsigned depth;
	ino_t ino;
	size_t seq;
	bool has_meta; /* a member of the archive (else made for a deeper member) */
	mode_t perm;
	struct timespec mtime; /* tv_nsec UTIME_OMIT when the archive has none */
};

struct moved {
	char *from; /* in the staging directory */
	const char *to;
	dev_t dev;
	ino_t ino;
};

struct imp {
	int target; /* the directory imported into */
	int stage;  /* the staging directory in it (O_RDONLY) */
	char stage_name[64];
	struct stat stage_st;
	unsigned base_depth; /* components of --into */
	struct dirrec *dirs;
	size_t ndirs, capdirs, dir_bytes, seq;
	char cache_dir[PATH_MAX]; /* the last parent looked up, and its descriptor */
	int cache_fd;
	size_t entries;
	char *buf;
	int in;	     /* the archive: stdin, or the producer's stdout */
	pid_t child; /* the producer, until it is reaped */
};

static void imp_free(struct imp *im)
{
	for (size_t k = 0; k < im->ndirs; k++)
		free(im->dirs[k].rel);
	free(im->dirs);
	free(im->buf);
	if (im->cache_fd >= 0)
		close(im->cache_fd);
	if (im->stage >= 0)
		close(im->stage);
	if (im->child > 0) /* before its pipe closes: no "Broken pipe" from it */
		spawn_kill(im->child);
	if (im->in > STDERR_FILENO)
		close(im->in);
}

static int refuse_entry(const char *raw, const char *why)
{
	QUOTE(q, raw);
	log_error("entry '%s': %s; nothing was imported", q, why);
	return EXIT_REFUSED;
}

static int add_dir(struct imp *im, const char *rel, unsigned depth, ino_t ino, bool has_meta, mode_t perm,
		   struct timespec mtime)
{
	size_t len = strlen(rel);
	if (im->dir_bytes + len + 1 > NAME_BYTES_MAX) {
		log_error("the archive's directory names take more than %u bytes; nothing was imported",
			  NAME_BYTES_MAX);
		return EXIT_REFUSED;
	}
	if (im->ndirs == im->capdirs) {
		size_t cap = im->capdirs ? im->capdirs * 2 : 256;
		struct dirrec *d = realloc(im->dirs, cap * sizeof(*d));
		if (!d)
			return log_sys(ENOMEM, "out of memory");
		im->dirs = d;
		im->capdirs = cap;
	}
	char *copy = strdup(rel);
	if (!copy)
		return log_sys(ENOMEM, "out of memory");
	im->dirs[im->ndirs++] = (struct dirrec){ .rel = copy,
						 .depth = depth,
						 .ino = ino,
						 .seq = im->seq++,
						 .has_meta = has_meta,
						 .perm = perm,
						 .mtime = mtime };
	im->dir_bytes += len + 1;
	return 0;
}

/* ENOENT on the way to a member: make the missing directories (0700, root's;
 * recorded for the fix-up), each beneath the one before, none through a
 * symlink. *out: the directory's descriptor (O_PATH). 0, EXIT_REFUSED or
 * -errno (logged). */
static int make_parents(struct imp *im, const char *raw, const char *dir, int *out)
{
	char prefix[PATH_MAX];
	cleanup_close int cur = fcntl(im->stage, F_DUPFD_CLOEXEC, 0);
	unsigned depth = 0;
	if (cur < 0)
		return log_sys(errno, "cannot duplicate a descriptor");
	for (const char *c = dir; *c;) {
		const char *e = strchrnul(c, '/');
		char comp[NAME_MAX + 1];
		size_t cl = (size_t)(e - c);
		memcpy(comp, c, cl);
		comp[cl] = '\0';
		memcpy(prefix, dir, (size_t)(e - dir));
		prefix[e - dir] = '\0';
		depth++;
		int fd = open_beneath(cur, comp, O_PATH | O_DIRECTORY, 0);
		if (fd == -ENOENT) {
			if (mkdirat(cur, comp, 0700) < 0 && errno != EEXIST)
				return log_sys(errno, "cannot create directory '%s' in the staging directory", prefix);
			fd = open_beneath(cur, comp, O_PATH | O_DIRECTORY, 0);
			struct stat st;
			if (fd >= 0 && fstat(fd, &st) == 0) {
				int r = add_dir(im, prefix, depth, st.st_ino, false, 0755,
						(struct timespec){ .tv_nsec = UTIME_OMIT });
				if (r != 0) {
					close(fd);
					return r;
				}
			}
		}
		if (fd == -ELOOP || fd == -ENOTDIR || fd == -EXDEV)
			return refuse_entry(raw, "it lies beneath a symlink or something else that is not a directory");
		if (fd < 0)
			return log_sys(fd, "cannot open directory '%s' in the staging directory", prefix);
		close(cur);
		cur = fd;
		c = *e ? e + 1 : e;
	}
	*out = steal_fd(&cur);
	return 0;
}

/* The directory a member goes in (borrowed: the cache owns it), resolved
 * beneath the staging directory without crossing a symlink. */
static int parent_of(struct imp *im, const char *raw, const char *dir, int *out)
{
	if (!dir[0]) {
		*out = im->stage;
		return 0;
	}
	if (im->cache_fd >= 0 && !strcmp(im->cache_dir, dir)) {
		*out = im->cache_fd;
		return 0;
	}
	int fd = open_beneath(im->stage, dir, O_PATH | O_DIRECTORY, 0);
	if (fd == -ENOENT) {
		int r = make_parents(im, raw, dir, &fd);
		if (r != 0)
			return r;
	} else if (fd == -ELOOP || fd == -ENOTDIR || fd == -EXDEV)
		return refuse_entry(raw, "it lies beneath a symlink or something else that is not a directory");
	else if (fd < 0)
		return log_sys(fd, "cannot open the directory of an entry in the staging directory");
	if (im->cache_fd >= 0)
		close(im->cache_fd);
	im->cache_fd = fd;
	snprintf(im->cache_dir, sizeof(im->cache_dir), "%s", dir);
	*out = fd;
	return 0;
}

static struct timespec entry_mtime(struct archive_entry *ent)
{
	if (!archive_entry_mtime_is_set(ent))
		return (struct timespec){ .tv_nsec = UTIME_OMIT };
	return (struct timespec){ .tv_sec = archive_entry_mtime(ent), .tv_nsec = archive_entry_mtime_nsec(ent) };
}

static int give(int fd, const char *what)
{
	if (arg.set_uid && fchownat(fd, "", arg.uid, arg.gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return log_sys(errno, "cannot give '%s' to %u:%u", what, (unsigned)arg.uid, (unsigned)arg.gid);
	return 0;
}

static bool archive_sys_errno(int e)
{
	return e == EIO || e == ENOMEM || e == EBADF || e == ENOSPC || e == EDQUOT || e == EINTR;
}

/* an error of libarchive while reading: a damaged archive is refused, an I/O
 * error is a system failure */
static int archive_failed(struct archive *a, const char *raw)
{
	int e = archive_errno(a);
	const char *msg = archive_error_string(a);
	if (interrupted) {
		log_error("interrupted; nothing was imported");
		return -EINTR;
	}
	if (archive_sys_errno(e))
		return log_sys(e, "cannot read the archive%s%s%s", raw ? " at '" : "", raw ? raw : "", raw ? "'" : "");
	log_error("not a valid tar archive: %s; nothing was imported", msg ? msg : "unknown error");
	return EXIT_REFUSED;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int unpack_file(struct imp *im, struct archive *a, struct archive_entry *ent, const char *raw, int pfd,
		       const char *base)
{
	cleanup_close int fd = open_beneath(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOCTTY, 0600);
	if (fd == -EEXIST)
		return refuse_entry(raw, "it appears twice in the archive");
	if (fd == -ELOOP || fd == -EXDEV)
		return refuse_entry(raw, "it would be created through a symlink");
	if (fd < 0)
		return log_sys(fd, "cannot create '%s'", base);
	const void *buf;
	size_t size;
	la_int64_t off, pos = 0;
	int r;
	while ((r = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		if (off != pos && lseek(fd, off, SEEK_SET) < 0) /* a hole of a sparse member */
			return log_sys(errno, "cannot seek in '%s'", base);
		int w = write_all(fd, buf, size);
		if (w < 0) {
			QUOTE(q, raw);
			return log_sys(w, "cannot write '%s'", q);
		}
		pos = off + (la_int64_t)size;
	}
	if (r != ARCHIVE_EOF)
		return archive_failed(a, NULL);
	if (archive_entry_size_is_set(ent) && archive_entry_size(ent) > pos &&
	    ftruncate(fd, archive_entry_size(ent)) < 0)
		return log_sys(errno, "cannot size '%s'", base);
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, entry_mtime(ent) };
	if ((r = give(fd, base)) < 0)
		return r;
	if (fchmod(fd, tarentry_perm(archive_entry_perm(ent))) < 0)
		return log_sys(errno, "cannot set the mode of '%s'", base);
	if (futimens(fd, ts) < 0)
		return log_sys(errno, "cannot set the time of '%s'", base);
	return 0;
}

static int unpack_symlink(struct imp *im, struct archive_entry *ent, const char *raw, const char *clean, int pfd,
			  const char *base)
{
	const char *target = archive_entry_symlink(ent);
	char why[256];
	if (!target)
		return refuse_entry(raw, "a symlink with no target");
	if (tarentry_symlink(clean, im->base_depth, target, why, sizeof(why)) < 0)
		return refuse_entry(raw, why);
	if (symlinkat(target, pfd, base) < 0) {
		if (errno == EEXIST)
			return refuse_entry(raw, "it appears twice in the archive");
		return log_sys(errno, "cannot create symlink '%s'", base);
	}
	cleanup_close int fd = openat(pfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return log_sys(errno, "cannot open symlink '%s'", base);
	if (!S_ISLNK(st.st_mode))
		return log_sys(EIO, "symlink '%s' changed", base);
	int r = give(fd, base);
	if (r < 0)
		return r;
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, entry_mtime(ent) };
	if (utimensat(fd, "", ts, AT_EMPTY_PATH) < 0 &&
	    (errno != EINVAL || utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0))
		return log_sys(errno, "cannot set the time of symlink '%s'", base);
	return 0;
}

static int unpack_hardlink(struct imp *im, struct archive_entry *ent, const char *raw, int pfd, const char *base)
{
	const char *to = archive_entry_hardlink(ent);
	char clean[PATH_MAX], why[256], msg[600];
	unsigned depth;
	if (tarentry_name(to, clean, sizeof(clean), &depth, why, sizeof(why)) < 0) {
		snprintf(msg, sizeof(msg), "a hard link whose target is %s", why);
		return refuse_entry(raw, msg);
	}
	if (!clean[0])
		return refuse_entry(raw, "a hard link to the archive's root");
	/* only what this import unpacked is in the staging directory */
	cleanup_close int src = open_beneath(im->stage, clean, O_PATH | O_NOFOLLOW, 0);
	struct stat st;
	if (src == -ENOENT || src == -ENOTDIR || src == -ELOOP || src == -EXDEV) {
		QUOTE(q, to);
		snprintf(msg, sizeof(msg), "a hard link to '%s', which is not a file this archive unpacked before it",
			 q);
		return refuse_entry(raw, msg);
	}
	if (src < 0 || fstat(src, &st) < 0)
		return log_sys(src < 0 ? src : errno, "cannot open the target of hard link '%s'", base);
	if (!S_ISREG(st.st_mode))
		return refuse_entry(raw, "a hard link to something other than a regular file");
	if (linkat(src, "", pfd, base, AT_EMPTY_PATH) < 0) {
		/* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH: the same inode by /proc */
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", src);
		if ((errno != ENOENT && errno != EPERM) || linkat(AT_FDCWD, proc, pfd, base, AT_SYMLINK_FOLLOW) < 0) {
			if (errno == EEXIST)
				return refuse_entry(raw, "it appears twice in the archive");
			return log_sys(errno, "cannot create hard link '%s'", base);
		}
	}
	return 0;
}

static int unpack_dir(struct imp *im, struct archive_entry *ent, const char *raw, const char *clean, unsigned depth,
		      int pfd, const char *base)
{
	if (mkdirat(pfd, base, 0700) < 0 && errno != EEXIST)
		return log_sys(errno, "cannot create directory '%s'", base);
	/* made now, or earlier for a member beneath it: it must be a directory */
	cleanup_close int fd = open_beneath(pfd, base, O_PATH | O_DIRECTORY, 0);
	struct stat st;
	if (fd == -ELOOP || fd == -ENOTDIR)
		return refuse_entry(raw, "it appears twice in the archive, as a directory and as something else");
	if (fd < 0 || fstat(fd, &st) < 0)
		return log_sys(fd < 0 ? fd : errno, "cannot open directory '%s'", base);
	return add_dir(im, clean, depth, st.st_ino, true, tarentry_perm(archive_entry_perm(ent)), entry_mtime(ent));
}

static int unpack_entry(struct imp *im, struct archive *a, struct archive_entry *ent)
{
	const char *raw = archive_entry_pathname(ent);
	char clean[PATH_MAX], why[256];
	unsigned depth;
	int pfd = -1, r;

	if (!raw)
		return refuse_entry("", "a member whose name cannot be read");
	if (tarentry_name(raw, clean, sizeof(clean), &depth, why, sizeof(why)) < 0)
		return refuse_entry(raw, why);
	int kind = tarentry_kind(archive_entry_filetype(ent), archive_entry_hardlink(ent) != NULL, why, sizeof(why));
	if (kind < 0)
		return refuse_entry(raw, why);
	if (!clean[0]) {
		/* the archive's root ("./"): the target is there already */
		if (kind != TARENTRY_DIR)
			return refuse_entry(raw, "the archive's root is not a directory");
		return 0;
	}
	if (++im->entries > ENTRIES_MAX) {
		log_error("more than %u entries in the archive; nothing was imported", ENTRIES_MAX);
		return EXIT_REFUSED;
	}
	char *slash = strrchr(clean, '/');
	const char *base = slash ? slash + 1 : clean;
	if (slash)
		*slash = '\0';
	r = parent_of(im, raw, slash ? clean : "", &pfd);
	if (slash)
		*slash = '/';
	if (r != 0)
		return r;
	log_debug("%s", clean);
	switch (kind) {
	case TARENTRY_DIR: return unpack_dir(im, ent, raw, clean, depth, pfd, base);
	case TARENTRY_FILE: return unpack_file(im, a, ent, raw, pfd, base);
	case TARENTRY_SYMLINK: return unpack_symlink(im, ent, raw, clean, pfd, base);
	default: return unpack_hardlink(im, ent, raw, pfd, base);
	}
}

static int dir_order(const void *x, const void *y)
{
	const struct dirrec *a = x, *b = y;
	if (a->depth != b->depth)
		return a->depth > b->depth ? -1 : 1; /* deepest first */
	if (a->ino != b->ino)
		return a->ino < b->ino ? -1 : 1;
	return a->seq > b->seq ? -1 : a->seq < b->seq; /* the last word on a directory first */
}

/* Owners, modes and times of the directories, deepest first: each is
 * resolved beneath the staging directory (its parents still root's and
 * 0700) and must be the inode that was made. */
static int fix_dirs(struct imp *im)
{
	if (im->ndirs > 1)
		qsort(im->dirs, im->ndirs, sizeof(*im->dirs), dir_order);
	for (size_t k = 0; k < im->ndirs; k++) {
		struct dirrec *d = &im->dirs[k];
		if (k > 0 && d->ino == im->dirs[k - 1].ino && d->depth == im->dirs[k - 1].depth)
			continue;
		cleanup_close int fd = open_beneath(im->stage, d->rel, O_RDONLY | O_DIRECTORY, 0);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0)
			return log_sys(fd < 0 ? fd : errno, "cannot open directory '%s' in the staging directory",
				       d->rel);
		if (st.st_ino != d->ino)
			return log_sys(EIO, "directory '%s' changed in the staging directory", d->rel);
		int r = give(fd, d->rel);
		if (r < 0)
			return r;
		if (fchmod(fd, d->has_meta ? d->perm : 0755) < 0)
			return log_sys(errno, "cannot set the mode of '%s'", d->rel);
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, d->mtime };
		if (d->has_meta && futimens(fd, ts) < 0)
			return log_sys(errno, "cannot set the time of '%s'", d->rel);
	}
	return 0;
}

static int name_order(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* the names in the staging directory (its top-level entries), sorted */
static int stage_names(struct imp *im, char ***out, size_t *n)
{
	int fd = openat(im->stage, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return log_sys(errno, "cannot read the staging directory");
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return log_sys(errno, "cannot read the staging directory");
	}
	char **v = NULL;
	size_t count = 0, cap = 0;
	struct dirent *e;
	int r = 0;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 64;
			char **nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				r = log_sys(ENOMEM, "out of memory");
				break;
			}
			v = nv;
		}
		if (!(v[count] = strdup(e->d_name))) {
			r = log_sys(ENOMEM, "out of memory");
			break;
		}
		count++;
	}
	closedir(d);
	if (r < 0) {
		for (size_t k = 0; k < count; k++)
			free(v[k]);
		free(v);
		return r;
	}
	if (count > 1) /* commit in a stable order */
		qsort(v, count, sizeof(*v), name_order);
	*out = v;
	*n = count;
	return 0;
}

/* Move back what the commit moved: each name in the target must still be
 * the inode that was moved there (a guest may have renamed it meanwhile:
 * what is not ours stays where it is). */
static void move_back(struct imp *im, struct moved *mv, size_t n)
{
	for (size_t k = n; k-- > 0;) {
		struct stat st;
		QUOTE(q, mv[k].to);
		if (fstatat(im->target, mv[k].to, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_ino != mv[k].ino ||
		    st.st_dev != mv[k].dev) {
			log_warn("'%s' was moved by someone else during the import; it is left where it is", q);
			continue;
		}
		if (renameat2(im->target, mv[k].to, im->stage, mv[k].from, RENAME_NOREPLACE) < 0) {
			log_warn("cannot move '%s' back out of the volume: %s", q, strerror(errno));
			continue;
		}
		/* a swap between the look and the move: give it back */
		if (fstatat(im->stage, mv[k].from, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_ino != mv[k].ino) {
			renameat2(im->stage, mv[k].from, im->target, mv[k].to, RENAME_NOREPLACE);
			log_warn("'%s' was replaced by someone else during the import; it is left where it is", q);
		}
	}
}

/* Remove the staging directory and what is in it: its entries through its
 * descriptor (rm_tree_at: no symlink followed, no mount entered), then the
 * directory itself, by name, only when that name is still it. */
static void remove_stage(struct imp *im)
{
	char **names = NULL;
	size_t n = 0;
	if (im->stage < 0)
		return;
	if (stage_names(im, &names, &n) == 0) {
		for (size_t k = 0; k < n; k++) {
			int r = rm_tree_at(im->stage, names[k]);
			if (r < 0)
				log_warn("cannot remove '%s' from the staging directory: %s", names[k], strerror(-r));
			free(names[k]);
		}
		free(names);
	}
	struct stat st;
	if (fstatat(im->target, im->stage_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_ino == im->stage_st.st_ino &&
	    st.st_dev == im->stage_st.st_dev) {
		if (unlinkat(im->target, im->stage_name, AT_REMOVEDIR) < 0)
			log_warn("cannot remove the staging directory '%s': %s", im->stage_name, strerror(errno));
	} else
		log_warn("the staging directory '%s' was moved during the import; not removing it", im->stage_name);
}

/* Move each top-level entry into the target, never over a name that is
 * there: on a refusal or failure, move back what was moved. */
static int commit(struct imp *im)
{
	char **names = NULL;
	size_t n = 0;
	int r = stage_names(im, &names, &n);
	if (r < 0)
		return r;
	struct moved *mv = calloc(n ? n : 1, sizeof(*mv));
	size_t done = 0;
	if (!mv)
		r = log_sys(ENOMEM, "out of memory");
	else if (arg.as && n != 1) {
		log_error("--as needs an archive with exactly one top-level entry; this one has %zu; nothing was "
			  "imported",
			  n);
		r = EXIT_REFUSED;
	}
	test_pause("volume-tar-commit");
	for (size_t k = 0; k < n && r == 0; k++) {
		const char *to = arg.as ? arg.as : names[k];
		struct stat st;
		if (fstatat(im->stage, names[k], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = log_sys(errno, "cannot look at '%s' in the staging directory", names[k]);
			break;
		}
		if (renameat2(im->stage, names[k], im->target, to, RENAME_NOREPLACE) < 0) {
			QUOTE(q, to);
			if (errno == EEXIST) {
				log_error("'%s' already exists in the volume; nothing was imported", q);
				r = EXIT_REFUSED;
			} else
				r = log_sys(errno, "cannot move '%s' into the volume", q);
			break;
		}
		mv[done++] = (struct moved){ .from = names[k], .to = to, .dev = st.st_dev, .ino = st.st_ino };
	}
	if (r != 0)
		move_back(im, mv, done);
	for (size_t k = 0; k < n; k++)
		free(names[k]);
	free(names);
	free(mv);
	return r;
}

/* read callback: stdin, with an interruption (SIGINT, SIGTERM, SIGHUP) an error */
static la_ssize_t read_stdin(struct archive *a, void *data, const void **buf)
{
	struct imp *im = data;
	for (;;) {
		ssize_t n = read(im->in, im->buf, IO_BUF);
		if (n >= 0) {
			*buf = im->buf;
			return n;
		}
		if (errno == EINTR && !interrupted)
			continue;
		archive_set_error(a, errno, "cannot read the archive: %s", strerror(errno));
		return -1;
	}
}

static void archive_freep(struct archive **a)
{
	if (*a)
		archive_read_free(*a);
}

static int import_stream(struct imp *im)
{
	__attribute__((cleanup(archive_freep))) struct archive *a = archive_read_new();
	struct archive_entry *ent;
	int r;

	if (!a)
		return log_sys(ENOMEM, "out of memory");
	archive_read_support_format_tar(a);
	archive_read_support_format_empty(a);
	/* built into Debian's libarchive: no external program is ever run */
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_bzip2(a);
	archive_read_support_filter_xz(a);
	archive_read_support_filter_zstd(a);
	if (archive_read_open(a, im, NULL, read_stdin, NULL) != ARCHIVE_OK)
		return archive_failed(a, NULL);
	for (;;) {
		if (interrupted) {
			log_error("interrupted; nothing was imported");
			return -EINTR;
		}
		r = archive_read_next_header(a, &ent);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r == ARCHIVE_WARN)
			log_debug("archive: %s", archive_error_string(a));
		else if (r != ARCHIVE_OK)
			return archive_failed(a, NULL);
		if ((r = unpack_entry(im, a, ent)) != 0)
			return r;
	}
}

extern char **environ;

/* Start the producer: its stdout is the archive; stdin and stderr are ours. */
static int start_producer(struct imp *im)
{
	char path[PATH_MAX], err[512];
	int p[2];
	if (path_lookup(arg.producer[0], path, sizeof(path)) < 0) {
		log_error("cannot run '%s': not found", arg.producer[0]);
		return EXIT_REFUSED;
	}
	if (pipe2(p, O_CLOEXEC) < 0)
		return log_sys(errno, "cannot make a pipe");
	struct spawn_fd fds[] = { { STDIN_FILENO, 0 }, { p[1], 1 }, { STDERR_FILENO, 2 } };
	struct spawn s = { .path = path,
			   .exec_fd = -1,
			   .argv = arg.producer,
			   .envp = environ,
			   .fds = fds,
			   .nfds = ARRAY_SIZE(fds),
			   .pdeathsig = SIGKILL };
	int r = spawn_run(&s, &im->child, err, sizeof(err));
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		im->child = 0;
		return log_sys(r, "cannot run '%s': %s", arg.producer[0], err);
	}
	im->in = p[0];
	return 0;
}

/* The archive ended: the producer must end too, with status 0, for the
 * import to be committed (a tar that could not read a file still writes a
 * valid archive, without it). */
static int finish_producer(struct imp *im)
{
	char drop[4096];
	ssize_t n;
	while ((n = read(im->in, drop, sizeof(drop))) != 0) /* what follows the archive's end */
		if (n < 0 && (errno != EINTR || interrupted))
			break;
	int status;
	pid_t w;
	while ((w = waitpid(im->child, &status, 0)) < 0 && errno == EINTR && !interrupted)
		;
	if (w < 0)
		return log_sys(errno, "cannot wait for '%s'", arg.producer[0]);
	im->child = 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		log_error("'%s' failed (exit %d); nothing was imported", arg.producer[0], WEXITSTATUS(status));
	else
		log_error("'%s' was killed by signal %d; nothing was imported", arg.producer[0],
			  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	return EXIT_REFUSED;
}

/* Memory: libarchive reads a whole GNU sparse map (about 80 bytes an
 * entry) at header time, and a map compresses to almost nothing; bound the
 * heap so that a hostile archive ends the import (rolled back) rather than
 * the host. Not under the sanitizers, whose shadow memory counts too. */
static struct rlimit data_limit_was;
static bool data_limited;
static void bound_memory(void)
{
#if !defined(__SANITIZE_ADDRESS__) && !defined(BOXKIT_FUZZ)
	struct rlimit rl;
	if (getrlimit(RLIMIT_DATA, &data_limit_was) == 0 && data_limit_was.rlim_cur > (1ull << 30)) {
		rl.rlim_cur = 1ull << 30; /* the soft limit only: raised again to clean up */
		rl.rlim_max = data_limit_was.rlim_max;
		data_limited = setrlimit(RLIMIT_DATA, &rl) == 0;
	}
#endif
}

/* libarchive ends the process with exit() when an allocation fails (the
 * bound above): the staging directory still goes, as on any failure */
static struct imp *exiting_import;
static void import_at_exit(void)
{
	if (!exiting_import)
		return;
	if (data_limited)
		setrlimit(RLIMIT_DATA, &data_limit_was);
	log_error("the import ended early; nothing was imported");
	remove_stage(exiting_import);
	exiting_import = NULL;
}

static int run_import(void)
{
	__attribute__((
		cleanup(imp_free))) struct imp im = { .target = -1, .stage = -1, .cache_fd = -1, .in = STDIN_FILENO };
	cleanup_close int root = -1, target = -1;
	int r;

	if (!arg.producer && isatty(STDIN_FILENO)) {
		log_error("refusing to read an archive from a terminal (redirect stdin)");
		return EXIT_USAGE;
	}
	if (arg.into && !rel_ok("--into", arg.into))
		return EXIT_REFUSED;
	if (arg.as && (!arg.as[0] || strchr(arg.as, '/') || !strcmp(arg.as, ".") || !strcmp(arg.as, "..") ||
		       strlen(arg.as) > NAME_MAX)) {
		QUOTE(q, arg.as);
		log_error("--as '%s': one name, without '/'", q);
		return EXIT_REFUSED;
	}
	if ((r = open_volume(&root)) != 0)
		return r;
	if (arg.into) {
		target = open_beneath_noxdev(root, arg.into, O_RDONLY | O_DIRECTORY, 0);
		if (target == -ENOENT || target == -ENOTDIR || target == -ELOOP || target == -EXDEV) {
			QUOTE(q, arg.into);
			log_error("--into '%s': not a directory of volume '%s' (missing, or through a symlink or a "
				  "mount)",
				  q, arg.name);
			return EXIT_REFUSED;
		}
		if (target < 0)
			return log_sys(target, "cannot open '%s' in volume '%s'", arg.into, arg.name);
		for (const char *c = arg.into; *c; c++)
			im.base_depth += *c == '/';
		im.base_depth++;
	} else if ((target = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return log_sys(errno, "cannot open volume '%s'", arg.name);
	im.target = target;
	test_pause("volume-tar-import-target");
	if (!(im.buf = malloc(IO_BUF)))
		return log_sys(ENOMEM, "out of memory");

	/* the staging directory: fresh, root's (ours), 0700 */
	for (int tries = 0; tries < 16; tries++) {
		char hex[17];
		if ((r = random_hex(hex, 8)) < 0)
			return log_sys(r, "cannot get random bytes");
		snprintf(im.stage_name, sizeof(im.stage_name), STAGE_PREFIX "%s", hex);
		if (mkdirat(target, im.stage_name, 0700) == 0)
			break;
		if (errno != EEXIST)
			return log_sys(errno, "cannot create a staging directory in volume '%s'", arg.name);
		im.stage_name[0] = '\0';
	}
	if (!im.stage_name[0])
		return log_sys(EEXIST, "cannot create a staging directory in volume '%s'", arg.name);
	im.stage = openat(target, im.stage_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (im.stage < 0 || fstat(im.stage, &im.stage_st) < 0 || im.stage_st.st_uid != geteuid() ||
	    (im.stage_st.st_mode & 07777) != 0700) {
		/* not the directory just made: someone swapped it; it is not ours to remove */
		r = log_sys(im.stage < 0 ? errno : EIO, "the staging directory '%s' in volume '%s' is not ours",
			    im.stage_name, arg.name);
		if (im.stage >= 0)
			close(im.stage);
		im.stage = -1;
		return r;
	}

	catch_signals();
	exiting_import = &im;
	atexit(import_at_exit);
	bound_memory();
	r = arg.producer ? start_producer(&im) : 0;
	if (r == 0)
		r = import_stream(&im);
	if (r == 0 && arg.producer)
		r = finish_producer(&im);
	if (r == 0 && !interrupted)
		r = fix_dirs(&im);
	if (r == 0 && interrupted) {
		log_error("interrupted; nothing was imported");
		r = -EINTR;
	}
	/* from here a signal waits: the commit (a few renames) finishes or rolls back */
	if (r == 0)
		r = commit(&im);
	remove_stage(&im);
	exiting_import = NULL;
	return r;
}

/* ---- walking a volume (export, stat) ------------------------------------------------ */

enum { WALK_SKIP = 0, WALK_DESCEND = 1 };

struct walker {
	char path[PATH_MAX]; /* the archive name of the item visited */
	dev_t dev;	     /* the volume's filesystem: nothing else is entered */
	bool refused;	     /* something could not be represented: exit 1 at the end */
	/* visit one item: pfd is its O_PATH descriptor, st its fstat; dirfd/name
	 * where it is. WALK_DESCEND for a directory to walk into, WALK_SKIP, or
	 * -errno (logged) to stop. */
	int (*visit)(struct walker *w, int dirfd, const char *name, int pfd, const struct stat *st);
	void *ctx;
};

struct frame {
	DIR *d;
	size_t plen;
	unsigned depth; /* of the entries in it */
};

/* Walk the directory dfd (O_RDONLY, taken over) whose entries are named
 * w->path[0..plen) + "/" + name, at depth `depth`, with an explicit stack:
 * at most TARENTRY_DEPTH_MAX directories open. */
static int walk(struct walker *w, int dfd, size_t plen, unsigned depth)
{
	struct frame st[TARENTRY_DEPTH_MAX + 1];
	int top = 0, r = 0;

	st[0] = (struct frame){ .d = fdopendir(dfd), .plen = plen, .depth = depth };
	if (!st[0].d) {
		r = -errno;
		close(dfd);
		return log_sys(r, "cannot read directory '%s'", w->path);
	}
	while (top >= 0 && r >= 0) {
		struct frame *f = &st[top];
		errno = 0;
		struct dirent *e = readdir(f->d);
		if (!e) {
			if (errno) {
				w->path[f->plen] = '\0';
				QUOTE(q, w->path);
				r = log_sys(errno, "cannot read directory '%s'", q);
			}
			closedir(f->d);
			top--;
			continue;
		}
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		size_t nl = strlen(e->d_name), np = f->plen + (f->plen ? 1 : 0) + nl;
		if (np >= PATH_MAX) {
			w->path[f->plen] = '\0';
			QUOTE(q, w->path);
			log_warn("an entry of '%s' makes a name of %d bytes or more; skipped", q, PATH_MAX);
			w->refused = true;
			continue;
		}
		if (f->plen)
			w->path[f->plen] = '/';
		memcpy(w->path + f->plen + (f->plen ? 1 : 0), e->d_name, nl + 1);
		int dirfd_ = dirfd(f->d);
		cleanup_close int pfd = openat(dirfd_, e->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		struct stat sb;
		if (pfd < 0 || fstat(pfd, &sb) < 0) {
			if (errno != ENOENT) {
				QUOTE(q, w->path);
				log_warn("cannot open '%s': %s; skipped", q, strerror(errno));
			}
			continue; /* gone meanwhile */
		}
		int v = w->visit(w, dirfd_, e->d_name, pfd, &sb);
		if (v < 0) {
			r = v;
			continue;
		}
		if (v != WALK_DESCEND)
			continue;
		QUOTE(q, w->path);
		if (f->depth + 1 > TARENTRY_DEPTH_MAX || top + 1 > TARENTRY_DEPTH_MAX) {
			log_warn("'%s' is more than %d levels deep; what is in it is skipped", q, TARENTRY_DEPTH_MAX);
			w->refused = true;
			continue;
		}
		if (sb.st_dev != w->dev || fd_is_mount_root(pfd)) {
			log_warn("'%s' is a mount; what is in it is skipped", q);
			continue;
		}
		int cfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		DIR *cd = cfd < 0 ? NULL : fdopendir(cfd);
		if (!cd) {
			log_warn("cannot read directory '%s': %s; skipped", q, strerror(errno));
			if (cfd >= 0)
				close(cfd);
			continue;
		}
		st[++top] = (struct frame){ .d = cd, .plen = np, .depth = f->depth + 1 };
	}
	while (top >= 0)
		closedir(st[top--].d);
	return r;
}

/* Walk the volume, or --path in it: the item itself is visited first (but
 * not the volume's root). */
static int walk_volume(struct walker *w, int root)
{
	struct stat rst;
	if (fstat(root, &rst) < 0)
		return log_sys(errno, "cannot stat volume '%s'", arg.name);
	w->dev = rst.st_dev;
	if (!arg.path) {
		w->path[0] = '\0';
		int dfd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			return log_sys(errno, "cannot open volume '%s'", arg.name);
		return walk(w, dfd, 0, 1);
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", arg.path);
	char *slash = strrchr(dir, '/');
	const char *base = slash ? slash + 1 : dir;
	if (slash)
		*slash = '\0';
	cleanup_close int parent =
		slash ? open_beneath_noxdev(root, dir, O_PATH | O_DIRECTORY, 0) : openat(root, ".", O_PATH | O_CLOEXEC);
	QUOTE(q, arg.path);
	if (parent == -ENOENT || parent == -ENOTDIR || parent == -ELOOP || parent == -EXDEV) {
		log_error("--path '%s': no such path in volume '%s' (or it goes through a symlink or a mount)", q,
			  arg.name);
		return EXIT_REFUSED;
	}
	if (parent < 0)
		return log_sys(parent < 0 ? parent : errno, "cannot open '%s' in volume '%s'", q, arg.name);
	cleanup_close int pfd = openat(parent, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (pfd < 0 && errno == ENOENT) {
		log_error("--path '%s': no such path in volume '%s'", q, arg.name);
		return EXIT_REFUSED;
	}
	if (pfd < 0 || fstat(pfd, &st) < 0)
		return log_sys(errno, "cannot open '%s' in volume '%s'", q, arg.name);
	if (st.st_dev != w->dev) {
		log_error("--path '%s' is a mount in volume '%s'", q, arg.name);
		return EXIT_REFUSED;
	}
	snprintf(w->path, sizeof(w->path), "%s", base);
	int v = w->visit(w, parent, base, pfd, &st);
	if (v != WALK_DESCEND)
		return v < 0 ? v : 0;
	int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return log_sys(errno, "cannot read directory '%s'", q);
	return walk(w, dfd, strlen(w->path), 2);
}

/* ---- export ------------------------------------------------------------------------- */

/* Bounds on what a volume's contents can make an export cost: the link
 * resolver keeps a copy of each entry with more names until all are seen
 * (past the cap, a file is written whole under each name); and the zeros
 * written for holes of sparse files (a guest's `truncate -s 16T f` would
 * otherwise become 16 TB on the host; past the cap such files are skipped) */
#define EXPORT_LINKS_MAX 65536
#define EXPORT_HOLES_MAX (1ull << 30)

struct exp {
	struct archive *a;
	struct archive_entry_linkresolver *links;
	char *buf;
	bool failed; /* a read failed after its header: the archive is whole, the data not */
	size_t linked;
	unsigned long long holes;
};

static int archive_write_failed(struct archive *a)
{
	int e = archive_errno(a);
	return log_sys(e > 0 ? e : EIO, "cannot write the archive: %s",
		       archive_error_string(a) ? archive_error_string(a) : "unknown error");
}

/* A name that is not UTF-8 (the guest names things as it likes) is written
 * as it is, marked hdrcharset=BINARY: libarchive says so with ARCHIVE_WARN. */
static int write_header(struct archive *a, struct archive_entry *e)
{
	int r = archive_write_header(a, e);
	if (r == ARCHIVE_WARN)
		log_debug("archive: %s", archive_error_string(a) ? archive_error_string(a) : "");
	return r == ARCHIVE_OK || r == ARCHIVE_WARN ? 0 : -1;
}

static void entry_freep(struct archive_entry **e)
{
	if (*e)
		archive_entry_free(*e);
}

/* a header with the attributes every entry gets: owner 0:0 by number, the
 * permission bits less setuid/setgid, the modification time */
static struct archive_entry *new_entry(const char *path, const struct stat *st)
{
	struct archive_entry *e = archive_entry_new();
	if (!e)
		return NULL;
	archive_entry_copy_pathname(e, path);
	archive_entry_set_perm(e, tarentry_perm(st->st_mode));
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
	return e;
}

static int export_file(struct walker *w, struct exp *x, int dirfd, const char *name, const struct stat *seen)
{
	QUOTE(q, w->path);
	test_pause("volume-tar-export-open");
	/* O_NONBLOCK: a FIFO swapped in since the look neither blocks nor is read */
	cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		log_warn("cannot open '%s': %s; skipped", q, strerror(errno));
		return WALK_SKIP;
	}
	if (!S_ISREG(st.st_mode) || st.st_ino != seen->st_ino || st.st_dev != seen->st_dev) {
		log_warn("'%s' changed while it was being read (not the file it was); skipped", q);
		return WALK_SKIP;
	}
	__attribute__((cleanup(entry_freep))) struct archive_entry *e = new_entry(w->path, &st);
	struct archive_entry *spare = NULL;
	if (!e)
		return log_sys(ENOMEM, "out of memory");
	unsigned long long alloc = (unsigned long long)st.st_blocks * 512, hole = 0;
	if ((unsigned long long)st.st_size > alloc)
		hole = (unsigned long long)st.st_size - alloc;
	if (hole > EXPORT_HOLES_MAX - x->holes) {
		log_warn("'%s' is sparse (%llu bytes of holes): skipped; an export writes at most %llu bytes of holes",
			 q, hole, (unsigned long long)EXPORT_HOLES_MAX);
		w->refused = true;
		return WALK_SKIP;
	}
	x->holes += hole;
	if (st.st_nlink > 1 && ++x->linked > EXPORT_LINKS_MAX)
		st.st_nlink = 1; /* whole again under this name: no copy kept */
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_size(e, st.st_size);
	archive_entry_set_dev(e, st.st_dev);
	archive_entry_set_ino64(e, (la_int64_t)st.st_ino);
	archive_entry_set_nlink(e, (unsigned)st.st_nlink);
	archive_entry_linkify(x->links, &e, &spare); /* a second name of an inode: a hard link, no data */
	if (write_header(x->a, e) < 0)
		return archive_write_failed(x->a);
	if (archive_entry_hardlink(e))
		return WALK_SKIP;
	test_pause("volume-tar-export-read");
	/* exactly the size in the header: a file that shrank is padded with
	 * zeros, one that grew is cut, so the archive stays valid */
	la_int64_t left = st.st_size;
	bool short_read = false;
	while (left > 0) {
		size_t want = left < IO_BUF ? (size_t)left : IO_BUF;
		ssize_t n = short_read ? 0 : read(fd, x->buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_sys(errno, "cannot read '%s' (its data in the archive is zeros from there)", q);
			x->failed = true;
			short_read = true;
			continue;
		}
		if (n == 0) {
			if (!short_read)
				log_warn("'%s' shrank while it was being read; padded with zeros to its size", q);
			short_read = true;
			memset(x->buf, 0, want);
			n = (ssize_t)want;
		}
		if (archive_write_data(x->a, x->buf, (size_t)n) < 0)
			return archive_write_failed(x->a);
		left -= n;
	}
	char one;
	if (!short_read && read(fd, &one, 1) == 1)
		log_warn("'%s' grew while it was being read; the archive holds its first %lld bytes", q,
			 (long long)st.st_size);
	return WALK_SKIP;
}

static int export_visit(struct walker *w, int dirfd, const char *name, int pfd, const struct stat *st)
{
	struct exp *x = w->ctx;
	QUOTE(q, w->path);
	if (S_ISREG(st->st_mode))
		return export_file(w, x, dirfd, name, st);
	if (!S_ISDIR(st->st_mode) && !S_ISLNK(st->st_mode)) {
		log_warn("'%s' is %s; skipped", q,
			 S_ISFIFO(st->st_mode)	 ? "a FIFO"
			 : S_ISSOCK(st->st_mode) ? "a socket"
						 : "a device node");
		return WALK_SKIP;
	}
	__attribute__((cleanup(entry_freep))) struct archive_entry *e = new_entry(w->path, st);
	if (!e)
		return log_sys(ENOMEM, "out of memory");
	if (S_ISDIR(st->st_mode))
		archive_entry_set_filetype(e, AE_IFDIR);
	else {
		char target[PATH_MAX];
		ssize_t n = readlinkat(pfd, "", target, sizeof(target));
		if (n < 0 || (size_t)n >= sizeof(target)) {
			log_warn("cannot read symlink '%s': %s; skipped", q, n < 0 ? strerror(errno) : "too long");
			return WALK_SKIP;
		}
		target[n] = '\0';
		archive_entry_set_filetype(e, AE_IFLNK);
		archive_entry_set_perm(e, 0777);
		archive_entry_copy_symlink(e, target);
	}
	if (write_header(x->a, e) < 0)
		return archive_write_failed(x->a);
	return S_ISDIR(st->st_mode) ? WALK_DESCEND : WALK_SKIP;
}

static void archive_write_freep(struct archive **a)
{
	if (*a)
		archive_write_free(*a);
}
static void linkresolver_freep(struct archive_entry_linkresolver **l)
{
	if (*l)
		archive_entry_linkresolver_free(*l);
}

static int run_export(void)
{
	cleanup_close int root = -1;
	cleanup_free char *buf = NULL;
	int r;

	if (isatty(STDOUT_FILENO)) {
		log_error("refusing to write an archive to a terminal (redirect stdout)");
		return EXIT_USAGE;
	}
	if (arg.path && !rel_ok("--path", arg.path))
		return EXIT_REFUSED;
	if ((r = open_volume(&root)) != 0)
		return r;
	__attribute__((cleanup(archive_write_freep))) struct archive *a = archive_write_new();
	__attribute__((cleanup(linkresolver_freep))) struct archive_entry_linkresolver *links =
		archive_entry_linkresolver_new();
	if (!a || !links || !(buf = malloc(IO_BUF)))
		return log_sys(ENOMEM, "out of memory");
	if (archive_write_set_format_pax(a) != ARCHIVE_OK || archive_write_open_fd(a, STDOUT_FILENO) != ARCHIVE_OK)
		return archive_write_failed(a);
	archive_entry_linkresolver_set_strategy(links, archive_format(a));
	struct exp x = { .a = a, .links = links, .buf = buf };
	struct walker w = { .visit = export_visit, .ctx = &x };
	r = walk_volume(&w, root);
	if (r == 0 && archive_write_close(a) != ARCHIVE_OK)
		r = archive_write_failed(a);
	if (r == 0 && x.failed)
		r = -EIO;
	if (r == 0 && w.refused) {
		log_error("some entries could not be exported (see the warnings)");
		r = EXIT_REFUSED;
	}
	return r;
}

/* ---- stat --------------------------------------------------------------------------- */

struct usage {
	uint64_t used, apparent, files, dirs, symlinks, others;
	ino_t *seen; /* inodes of files with more than one name, counted once */
	size_t nseen, capseen;
};

static bool seen_add(struct usage *u, ino_t ino)
{
	/* open addressing, at most half full */
	if ((u->nseen + 1) * 2 > u->capseen) {
		size_t cap = u->capseen ? u->capseen * 2 : 1024;
		ino_t *t = calloc(cap, sizeof(*t));
		if (!t)
			return false;
		for (size_t k = 0; k < u->capseen; k++)
			if (u->seen[k]) {
				size_t h = (size_t)(u->seen[k] * 0x9E3779B97F4A7C15ull) & (cap - 1);
				while (t[h])
					h = (h + 1) & (cap - 1);
				t[h] = u->seen[k];
			}
		free(u->seen);
		u->seen = t;
		u->capseen = cap;
	}
	size_t h = (size_t)(ino * 0x9E3779B97F4A7C15ull) & (u->capseen - 1);
	while (u->seen[h]) {
		if (u->seen[h] == ino)
			return false;
		h = (h + 1) & (u->capseen - 1);
	}
	u->seen[h] = ino ? ino : 1;
	u->nseen++;
	return true;
}

static int usage_visit(struct walker *w, int dirfd, const char *name, int pfd, const struct stat *st)
{
	struct usage *u = w->ctx;
	if (S_ISREG(st->st_mode) && st->st_nlink > 1 && !seen_add(u, st->st_ino))
		return WALK_SKIP; /* counted under another name (or out of memory: counted once at most) */
	u->used += (uint64_t)st->st_blocks * 512;
	u->apparent += (uint64_t)st->st_size;
	if (S_ISREG(st->st_mode))
		u->files++;
	else if (S_ISDIR(st->st_mode))
		u->dirs++;
	else if (S_ISLNK(st->st_mode))
		u->symlinks++;
	else
		u->others++;
	return S_ISDIR(st->st_mode) ? WALK_DESCEND : WALK_SKIP;
}

static const char *type_name(mode_t m)
{
	return S_ISDIR(m) ? "directory" : S_ISREG(m) ? "file" : S_ISLNK(m) ? "symlink" : "other";
}

static int run_stat(void)
{
	cleanup_close int root = -1, parent = -1, pfd = -1;
	cleanup_json struct json_object *o = json_object_new_object();
	struct stat st;
	int r;

	if (!o)
		return log_sys(ENOMEM, "out of memory");
	if (arg.path && !rel_ok("--path", arg.path))
		return EXIT_REFUSED;
	if ((r = open_volume(&root)) != 0)
		return r;
	json_object_object_add(o, "path", json_object_new_string(arg.path ? arg.path : ""));
	if (arg.path) {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", arg.path);
		char *slash = strrchr(dir, '/');
		const char *base = slash ? slash + 1 : dir;
		if (slash)
			*slash = '\0';
		parent = slash ? open_beneath_noxdev(root, dir, O_PATH | O_DIRECTORY, 0)
			       : openat(root, ".", O_PATH | O_CLOEXEC);
		if (parent == -ENOENT || parent == -ENOTDIR || parent == -ELOOP || parent == -EXDEV) {
			QUOTE(q, arg.path);
			log_error("--path '%s': its directory is not one of volume '%s' (missing, or through a symlink "
				  "or a mount)",
				  q, arg.name);
			return EXIT_REFUSED;
		}
		if (parent < 0)
			return log_sys(parent, "cannot open '%s' in volume '%s'", arg.path, arg.name);
		pfd = openat(parent, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (pfd < 0 && errno != ENOENT)
			return log_sys(errno, "cannot open '%s' in volume '%s'", arg.path, arg.name);
	} else
		pfd = openat(root, ".", O_PATH | O_CLOEXEC);
	if (pfd < 0) {
		json_object_object_add(o, "type", json_object_new_string("missing"));
	} else {
		if (fstat(pfd, &st) < 0)
			return log_sys(errno, "cannot stat '%s' in volume '%s'", arg.path ? arg.path : "", arg.name);
		json_object_object_add(o, "type", json_object_new_string(type_name(st.st_mode)));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)st.st_size));
		json_object_object_add(o, "mtime", json_object_new_int64((int64_t)st.st_mtim.tv_sec));
		struct statx sx;
		if (statx(pfd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) == 0 &&
		    (sx.stx_mask & STATX_BTIME))
			json_object_object_add(o, "created", json_object_new_int64((int64_t)sx.stx_btime.tv_sec));
	}
	if (arg.usage && pfd >= 0) {
		struct usage u = { 0 };
		struct walker w = { .visit = usage_visit, .ctx = &u };
		if (arg.path) /* the item itself counts (the volume's root does not) */
			usage_visit(&w, parent, "", pfd, &st);
		if (S_ISDIR(st.st_mode)) {
			struct stat rst;
			int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fstat(root, &rst) < 0 || dfd < 0) {
				r = log_sys(errno, "cannot read '%s' in volume '%s'", arg.path ? arg.path : "",
					    arg.name);
				if (dfd >= 0)
					close(dfd);
				free(u.seen);
				return r;
			}
			w.dev = rst.st_dev;
			snprintf(w.path, sizeof(w.path), "%s", arg.path ? arg.path : "");
			r = walk(&w, dfd, strlen(w.path), 1);
		}
		free(u.seen);
		if (r < 0)
			return r;
		json_object_object_add(o, "used_bytes", json_object_new_int64((int64_t)u.used));
		json_object_object_add(o, "apparent_bytes", json_object_new_int64((int64_t)u.apparent));
		json_object_object_add(o, "files", json_object_new_int64((int64_t)u.files));
		json_object_object_add(o, "directories", json_object_new_int64((int64_t)u.dirs));
		json_object_object_add(o, "symlinks", json_object_new_int64((int64_t)u.symlinks));
		json_object_object_add(o, "others", json_object_new_int64((int64_t)u.others));
	}
	if (jsonl_write(stdout, o) < 0)
		return log_sys(errno, "cannot write output");
	return 0;
}

static int tool_main(int argc, char **argv)
{
	int r;

	log_init(argv[0]);
	/* names are bytes; with a UTF-8 character set libarchive passes them on
	 * as they are (pax headers hold UTF-8, or raw bytes marked BINARY) */
	if (!setlocale(LC_CTYPE, "C.UTF-8"))
		setlocale(LC_CTYPE, "");
	if (parse_argv(argc, argv) < 0)
		return EXIT_USAGE;
	switch (arg.cmd) {
	case CMD_IMPORT: r = run_import(); break;
	case CMD_EXPORT: r = run_export(); break;
	default: r = run_stat(); break;
	}
	if (close_stdout() < 0 && r == 0)
		r = log_sys(errno ? errno : EIO, "cannot write stdout");
	return r;
}

int main(int argc, char **argv)
{
	return tool_exit(tool_main(argc, argv));
}
