/* SPDX-License-Identifier: MIT */
/* reserve: keep a preallocated file, <home>/.reserve, so that a full host
 * still has bytes to give back for recovery. */
#include "common.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#define RESERVE_NAME ".reserve"
#define DEFAULT_SIZE (64ull << 20)
#define ZERO_CHUNK (1u << 20)

static struct {
	const char *home;
	const char *cmd;
	uint64_t size;
} arg = { .size = DEFAULT_SIZE };

static void usage(FILE *f)
{
	fputs("Usage: reserve [--home DIR] ensure [--size BYTES]\n"
	      "       reserve [--home DIR] release\n"
	      "       reserve [--home DIR] status [--size BYTES]\n"
	      "\n"
	      "Keep a preallocated file <home>/.reserve (default 64 MiB) so that a full\n"
	      "host has bytes to give back: 'reserve release' frees them for recovery,\n"
	      "'reserve ensure' lays them back down once free space is at least twice\n"
	      "the size again (before that it defers, exit 0).\n"
	      "\n"
	      "Sizes take a K, M or G suffix (powers of 1024).\n"
	      "Every command prints one JSON line on stdout.\n"
	      "\n"
	      "Exit status: 0 ok (also when deferred; status whatever it finds), 1 refused\n"
	      "(ensure: the reserve path is not a regular file of ours; release: it is not\n"
	      "a regular file), 2 usage error, 3 system failure (no space, I/O).\n"
	      "Manual: tools/reserve/reserve.1.md\n",
	      f);
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned shift = 0;
	if (errno || end == s || s[0] == '-')
		return -EINVAL;
	if (*end == 'K' || *end == 'k')
		shift = 10, end++;
	else if (*end == 'M' || *end == 'm')
		shift = 20, end++;
	else if (*end == 'G' || *end == 'g')
		shift = 30, end++;
	if (*end && strcmp(end, "iB") != 0 && strcmp(end, "B") != 0)
		return -EINVAL;
	if (v == 0 || v > (UINT64_MAX >> 2) >> shift)
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_argv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "home", required_argument, NULL, 'H' },
		{ "size", required_argument, NULL, 's' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
		switch (c) {
		case 'H': arg.home = optarg; break;
		case 's':
			if (parse_size(optarg, &arg.size) < 0) {
				log_error("invalid size '%s' (a positive number of bytes, K, M or G)", optarg);
				return -1;
			}
			break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h': usage(stdout); exit(EXIT_OK);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc - 1) {
		log_error(optind == argc ? "no command given (ensure, release, status)" : "too many arguments");
		return -1;
	}
	arg.cmd = argv[optind];
	if (strcmp(arg.cmd, "ensure") && strcmp(arg.cmd, "release") && strcmp(arg.cmd, "status")) {
		log_error("unknown command '%s' (ensure, release, status)", arg.cmd);
		return -1;
	}
	return 0;
}

static uint64_t free_bytes(int fd)
{
	struct statvfs sv;
	if (fstatvfs(fd, &sv) < 0)
		return 0;
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

static int print_state(const char *path, const struct stat *st, uint64_t free_b, const char *state,
		       const char *extra_key, uint64_t extra)
{
	cleanup_json struct json_object *o = json_object_new_object();
	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "path", json_object_new_string(path));
	json_object_object_add(o, "size", json_object_new_int64(st ? (int64_t)st->st_size : 0));
	json_object_object_add(o, "allocated", json_object_new_int64(st ? (int64_t)st->st_blocks * 512 : 0));
	json_object_object_add(o, "target_size", json_object_new_int64((int64_t)arg.size));
	json_object_object_add(o, "free", json_object_new_int64((int64_t)free_b));
	json_object_object_add(o, "state", json_object_new_string(state));
	if (extra_key)
		json_object_object_add(o, extra_key, json_object_new_int64((int64_t)extra));
	return jsonl_write(stdout, o);
}

static bool is_full(const struct stat *st)
{
	return (uint64_t)st->st_size >= arg.size && (uint64_t)st->st_blocks * 512 >= arg.size;
}

/* What is at the reserve path, for messages */
static const char *kind_of(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFDIR: return "a directory";
	case S_IFLNK: return "a symlink";
	case S_IFIFO: return "a FIFO";
	case S_IFSOCK: return "a socket";
	case S_IFCHR: return "a character device";
	case S_IFBLK: return "a block device";
	default: return "not a regular file";
	}
}

/* Write zeros over [from, size) and fsync: for filesystems without fallocate. */
static int zero_fill(int fd, uint64_t from)
{
	cleanup_free char *buf = calloc(1, ZERO_CHUNK);
	if (!buf)
		return -ENOMEM;
	for (uint64_t off = from; off < arg.size;) {
		size_t n = arg.size - off < ZERO_CHUNK ? (size_t)(arg.size - off) : ZERO_CHUNK;
		ssize_t w = pwrite(fd, buf, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (uint64_t)w;
	}
	return fsync(fd) < 0 ? -errno : 0;
}

static int cmd_ensure(const char *home, const char *path)
{
	cleanup_free char *failed = NULL;
	cleanup_close int dfd = -1, fd = -1;
	struct stat st;
	bool created = false;
	int r;

	if ((r = mkdir_p_0700(home, &failed)) < 0)
		return log_sys(r, "cannot create '%s'", failed ? failed : home);
	dfd = open(home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return log_sys(errno, "cannot open '%s'", home);
	/* serialise concurrent ensure runs: exactly one file of the right size */
	if (flock(dfd, LOCK_EX) < 0)
		return log_sys(errno, "cannot lock '%s'", home);

	/* Pin what is at the path without opening it: an O_PATH descriptor
	 * never opens a FIFO (which could block), a socket or a device (whose
	 * open can have effects of its own), and with O_NOFOLLOW it is the
	 * symlink itself. Only a regular file of ours is then reopened. */
	cleanup_close int pfd = openat(dfd, RESERVE_NAME, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0 && errno != ENOENT)
		return log_sys(errno, "cannot open '%s'", path);
	if (pfd < 0) {
		memset(&st, 0, sizeof(st));
	} else {
		if (fstat(pfd, &st) < 0)
			return log_sys(errno, "cannot stat '%s'", path);
		if (S_ISLNK(st.st_mode)) {
			log_error("'%s' is a symlink; refusing to follow it (remove it and run 'reserve ensure')",
				  path);
			return EXIT_REFUSED;
		}
		if (!S_ISREG(st.st_mode)) {
			log_error("'%s' is %s, not a regular file; refusing to touch it (remove it and run 'reserve "
				  "ensure')",
				  path, kind_of(st.st_mode));
			return EXIT_REFUSED;
		}
		if (st.st_uid != geteuid()) {
			log_error("'%s' is owned by uid %u, not by uid %u; refusing to touch it", path,
				  (unsigned)st.st_uid, (unsigned)geteuid());
			return EXIT_REFUSED;
		}
		/* the pinned inode itself, read-write */
		char self[64];
		snprintf(self, sizeof(self), "/proc/self/fd/%d", pfd);
		fd = open(self, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (fd < 0)
			return log_sys(errno, "cannot open '%s'", path);
		if (is_full(&st)) {
			log_debug("reserve at '%s' is complete (%" PRIu64 " bytes)", path, arg.size);
			return print_state(path, &st, free_bytes(dfd), "ok", NULL, 0) < 0
				       ? log_sys(errno, "cannot write output")
				       : 0;
		}
	}
	uint64_t free_b = free_bytes(dfd);
	if (free_b < 2 * arg.size) {
		log_warn("deferring the reserve: %" PRIu64 " bytes free is below twice the reserve (%" PRIu64
			 "); free some space, then run 'reserve ensure' again",
			 free_b, 2 * arg.size);
		return print_state(path, fd >= 0 ? &st : NULL, free_b, "deferred", NULL, 0) < 0
			       ? log_sys(errno, "cannot write output")
			       : 0;
	}
	if (fd < 0) {
		fd = openat(dfd, RESERVE_NAME, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return log_sys(errno, "cannot create '%s'", path);
		created = true;
	}
	off_t old_size = st.st_size;
	if (fchmod(fd, 0600) < 0) {
		r = log_sys(errno, "cannot chmod '%s'", path);
		goto fail;
	}
	r = fallocate(fd, 0, 0, (off_t)arg.size) < 0 ? -errno : 0;
	if (r == -EOPNOTSUPP || r == -ENOSYS) {
		log_debug("fallocate not supported on '%s'; writing zeros", path);
		r = zero_fill(fd, 0);
	} else if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r < 0) {
		r = log_sys(r, "cannot allocate %" PRIu64 " bytes for '%s'", arg.size, path);
		goto fail;
	}
	if (fstat(fd, &st) < 0)
		return log_sys(errno, "cannot stat '%s'", path);
	return print_state(path, &st, free_bytes(dfd), created ? "created" : "topped-up", NULL, 0) < 0
		       ? log_sys(errno, "cannot write output")
		       : 0;
fail:
	if (created)
		unlinkat(dfd, RESERVE_NAME, 0);
	else if (ftruncate(fd, old_size) < 0)
		log_warn("cannot shrink '%s' back to %lld bytes", path, (long long)old_size);
	return r;
}

static int cmd_release(const char *home, const char *path)
{
	cleanup_close int dfd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	uint64_t freed = 0;

	if (dfd < 0 && errno == ENOENT)
		return print_state(path, NULL, 0, "missing", "freed", 0) < 0 ? log_sys(errno, "cannot write output")
									     : 0;
	if (dfd < 0)
		return log_sys(errno, "cannot open '%s'", home);
	if (fstatat(dfd, RESERVE_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			return log_sys(errno, "cannot stat '%s'", path);
	} else {
		/* only a regular file is a reserve: anything else (a directory, a
		 * symlink, a FIFO, a socket, a device) is left where it is */
		if (!S_ISREG(st.st_mode)) {
			log_error(
				"'%s' is %s, not boxkit's reserve; refusing to remove it (remove it yourself, then run "
				"'reserve ensure')",
				path, kind_of(st.st_mode));
			return EXIT_REFUSED;
		}
		/* unlink is metadata-only: it works on a 100%% full filesystem */
		if (unlinkat(dfd, RESERVE_NAME, 0) < 0 && errno != ENOENT)
			return log_sys(errno, "cannot remove '%s'", path);
		freed = (uint64_t)st.st_blocks * 512;
	}
	log_info("released %" PRIu64 " bytes; run 'reserve ensure' once space is recovered", freed);
	return print_state(path, NULL, free_bytes(dfd), "missing", "freed", freed) < 0
		       ? log_sys(errno, "cannot write output")
		       : 0;
}

static int cmd_status(const char *home, const char *path)
{
	cleanup_close int dfd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	const char *state;

	if (dfd < 0 && errno != ENOENT)
		return log_sys(errno, "cannot open '%s'", home);
	if (dfd < 0 || fstatat(dfd, RESERVE_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (dfd >= 0 && errno != ENOENT)
			return log_sys(errno, "cannot stat '%s'", path);
		return print_state(path, NULL, dfd >= 0 ? free_bytes(dfd) : 0, "missing", NULL, 0) < 0
			       ? log_sys(errno, "cannot write output")
			       : 0;
	}
	/* status only looks (fstatat, never an open): it reports anything that
	 * is not a regular file as not-regular, with no size of its own */
	bool reg = S_ISREG(st.st_mode);
	if (!reg)
		state = "not-regular";
	else
		state = is_full(&st) ? "ok" : "short";
	return print_state(path, reg ? &st : NULL, free_bytes(dfd), state, NULL, 0) < 0
		       ? log_sys(errno, "cannot write output")
		       : 0;
}

static int tool_main(int argc, char **argv)
{
	cleanup_free char *home = NULL, *path = NULL;
	int r;

	log_init(argv[0]);
	if (parse_argv(argc, argv) < 0)
		return EXIT_USAGE;
	/* canonical once, at entry (a missing home stays as given for status) */
	r = boxkit_home_canon(arg.home, !strcmp(arg.cmd, "ensure"), &home);
	if (r == -ENOENT && strcmp(arg.cmd, "ensure"))
		r = boxkit_home(arg.home, &home);
	if (r < 0) {
		log_error("cannot find the boxkit home: set --home, BOXKIT_HOME or HOME (%s)", strerror(-r));
		return EXIT_USAGE;
	}
	if (asprintf(&path, "%s/%s", home, RESERVE_NAME) < 0)
		return log_sys(ENOMEM, "out of memory");
	if (!strcmp(arg.cmd, "ensure"))
		r = cmd_ensure(home, path);
	else if (!strcmp(arg.cmd, "release"))
		r = cmd_release(home, path);
	else
		r = cmd_status(home, path);
	if (close_stdout() < 0 && r == 0)
		r = log_sys(errno ? errno : EIO, "cannot write stdout");
	return r;
}

int main(int argc, char **argv)
{
	return tool_exit(tool_main(argc, argv));
}
