/* SPDX-License-Identifier: MIT */
/* vfsd-cap-install: keep a private copy of virtiofsd carrying exactly
 * cap_dac_read_search=ep, so the daemon runs unprivileged with
 * --inode-file-handles=mandatory. stdout holds one line: the copy's path. */
#include "common.h"
#include "testhook.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define COPY_NAME "virtiofsd"
#define MARKER_NAME "virtiofsd.marker"
#define WANT_CAPS "cap_dac_read_search=ep"

static struct {
	const char *source, *home;
	bool status;
} arg;

static void usage(FILE *f)
{
	fputs("Usage: vfsd-cap-install [--source PATH] [--home DIR]\n"
	      "       vfsd-cap-install --status [--source PATH] [--home DIR]\n"
	      "\n"
	      "Install or refresh <home>/bin/virtiofsd, a copy of virtiofsd with exactly\n"
	      "cap_dac_read_search=ep, and print its path (the only line on stdout).\n"
	      "Source: --source, $BOXKIT_VIRTIOFSD, the copy 'make deps' provisions, or\n"
	      "/usr/libexec/virtiofsd, /usr/lib/qemu/virtiofsd, /usr/bin/virtiofsd.\n"
	      "--status prints one JSON line and changes nothing.\n"
	      "\n"
	      "Exit status: 0 ok, 1 refused (source unusable, unsafe destination),\n"
	      "2 usage, 3 system failure (no CAP_SETFCAP: run the printed sudo command).\n"
	      "Manual: tools/vfsd-cap-install/vfsd-cap-install.1.md\n",
	      f);
}

static int parse_argv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "source", required_argument, NULL, 's' }, { "home", required_argument, NULL, 'H' },
		{ "status", no_argument, NULL, 'S' },	    { "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },	    { 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
		switch (c) {
		case 's': arg.source = optarg; break;
		case 'H': arg.home = optarg; break;
		case 'S': arg.status = true; break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc) {
		log_error("unexpected argument '%s'", argv[optind]);
		return -1;
	}
	return 0;
}

/* sha256 of an open file, as hex */
static int digest_fd(int fd, char out[65])
{
	unsigned char buf[1 << 16], md[32];
	unsigned int mdlen = 0;
	ssize_t n;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(ctx);
		return -ENOMEM;
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		EVP_MD_CTX_free(ctx);
		return -errno;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(ctx, buf, (size_t)n);
	int r = n < 0 ? -errno : 0;
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
	return r;
}

/* Run SRC with one argument, capture stdout+stderr (first 64 KiB). */
static int run_one(const char *src, const char *a1, char *out, size_t outlen)
{
	char *argv[] = { (char *)src, (char *)a1, NULL };
	return run_capture(src, argv, true, out, outlen);
}

/* What was found at a path opened by open_regular_at */
enum found { FOUND_NOTHING, FOUND_REGULAR, FOUND_DIRECTORY, FOUND_OTHER };

/* Open dirfd/name to read it, never blocking and never following a symlink.
 * O_NONBLOCK makes the open of a FIFO (or a device) return at once instead of
 * waiting for a writer; fstat on the descriptor then says what it is. Returns
 * the descriptor of a regular file (O_NONBLOCK cleared again), else -errno
 * with *found naming what is there: nothing (-ENOENT), a directory, something
 * else that is not a regular file (a symlink, FIFO, socket or device), or a
 * regular file that could not be opened (EACCES, EIO). */
static int open_regular_at(int dirfd, const char *name, enum found *found)
{
	struct stat st;
	cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		/* ELOOP: a symlink; ENXIO: a socket; name what is there if anything */
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			*found = FOUND_NOTHING;
		else
			*found = S_ISREG(st.st_mode)   ? FOUND_REGULAR
				 : S_ISDIR(st.st_mode) ? FOUND_DIRECTORY
						       : FOUND_OTHER;
		return -e;
	}
	if (fstat(fd, &st) < 0) {
		*found = FOUND_OTHER;
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		*found = S_ISDIR(st.st_mode) ? FOUND_DIRECTORY : FOUND_OTHER;
		return -EINVAL;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		*found = FOUND_REGULAR;
		return -errno;
	}
	*found = FOUND_REGULAR;
	return steal_fd(&fd);
}

struct source {
	char path[PATH_MAX];
	char version[128];
	bool handles;
	char digest[65];
};

/* Find the source and open it (*fd): the digest and the copy are read from
 * that one descriptor, so what is checked is what is copied. */
static int find_source(struct source *s, int *fd)
{
	const char *cands[8];
	int n = 0;
	char prov[PATH_MAX + 64] = "";
	if (arg.source)
		cands[n++] = arg.source;
	else {
		const char *e = getenv("BOXKIT_VIRTIOFSD");
		if (e && *e)
			cands[n++] = e;
		else {
			/* the copy make deps provisions: <top>/build/virtiofsd/virtiofsd */
			char exe[PATH_MAX];
			if (self_dir(exe, sizeof(exe)) == 0) {
				for (int up = 0; up < 3; up++) {
					char *sl = strrchr(exe, '/');
					if (!sl)
						break;
					*sl = 0;
					snprintf(prov, sizeof(prov), "%s/build/virtiofsd/virtiofsd", exe);
					if (access(prov, X_OK) == 0)
						break;
					prov[0] = 0;
				}
			}
			if (prov[0])
				cands[n++] = prov;
			cands[n++] = "/usr/libexec/virtiofsd";
			cands[n++] = "/usr/lib/qemu/virtiofsd";
			cands[n++] = "/usr/bin/virtiofsd";
		}
	}
	for (int i = 0; i < n; i++) {
		bool last = i == n - 1, explicit_ = arg.source || getenv("BOXKIT_VIRTIOFSD");
		enum found found = FOUND_NOTHING;
		int r = -ENOENT;
		if (realpath(cands[i], s->path)) {
			/* test builds: a test swaps the source here, between naming and opening it */
			test_pause("vfsd-source-resolved");
			/* never blocks: a FIFO (even one planted after realpath) is refused at once */
			r = open_regular_at(AT_FDCWD, s->path, &found);
		}
		if (r < 0 && found == FOUND_NOTHING) {
			if (explicit_ || last) {
				log_error("virtiofsd source '%s' not found%s", cands[i],
					  explicit_ ? "" : "; run 'make deps' (it provisions Debian 13's virtiofsd)");
				return EXIT_REFUSED;
			}
			continue;
		}
		if (r < 0 && found == FOUND_REGULAR)
			return log_sys(-r, "cannot open '%s'", s->path);
		if (r < 0 || access(s->path, X_OK) < 0) {
			if (r >= 0)
				close(r);
			log_error("virtiofsd source '%s' is not an executable file", cands[i]);
			return EXIT_REFUSED;
		}
		*fd = r;
		char buf[65536];
		run_one(s->path, "--version", buf, sizeof(buf));
		char *nl = strchr(buf, '\n');
		if (nl)
			*nl = 0;
		snprintf(s->version, sizeof(s->version), "%.120s", buf);
		run_one(s->path, "--help", buf, sizeof(buf));
		s->handles = strstr(buf, "--inode-file-handles") != NULL;
		if ((r = digest_fd(*fd, s->digest)) < 0)
			return log_sys(-r, "cannot read '%s'", s->path);
		return 0;
	}
	log_error("no virtiofsd found; run 'make deps'");
	return EXIT_REFUSED;
}

/* the capabilities on a file, as libcap's text ("" when none) */
static void caps_of_fd(int fd, char *out, size_t outlen)
{
	cap_t c = cap_get_fd(fd);
	out[0] = 0;
	if (!c)
		return;
	char *t = cap_to_text(c, NULL);
	if (t)
		snprintf(out, outlen, "%s", t);
	cap_free(t);
	cap_free(c);
}

struct state {
	const char *state;
	char caps[256];
	/* a directory at the copy's or the marker's path: an install cannot
	 * rename over it, and boxkit never removes what it did not create */
	const char *dir_in_the_way;
};

/* What is installed now, judged against the source and the marker. Both are
 * opened without blocking: whatever is planted there (a FIFO, a socket, a
 * device, a symlink, a directory) is judged at once, never waited on. */
static void inspect(int bindir, const struct source *s, struct state *st)
{
	enum found found = FOUND_NOTHING, mfound = FOUND_NOTHING;
	cleanup_close int fd = bindir < 0 ? -1 : open_regular_at(bindir, COPY_NAME, &found);
	cleanup_close int mfd = bindir < 0 ? -1 : open_regular_at(bindir, MARKER_NAME, &mfound);
	char marker[8192] = "", digest[65];
	st->caps[0] = 0;
	st->dir_in_the_way = found == FOUND_DIRECTORY ? COPY_NAME : mfound == FOUND_DIRECTORY ? MARKER_NAME : NULL;
	if (found == FOUND_NOTHING) {
		st->state = "not-installed";
		return;
	}
	/* not a regular file (a symlink, FIFO, socket, device, directory) */
	if (fd < 0) {
		st->state = "tampered";
		return;
	}
	caps_of_fd(fd, st->caps, sizeof(st->caps));
	/* a marker that is missing or not a regular file: the copy cannot be vouched for */
	ssize_t n = mfd >= 0 ? read(mfd, marker, sizeof(marker) - 1) : -1;
	if (n <= 0) {
		st->state = "stale";
		return;
	}
	marker[n] = 0;
	cleanup_json struct json_object *m = json_tokener_parse(marker);
	struct json_object *ms = NULL, *md = NULL, *mc = NULL;
	if (!m || !json_object_object_get_ex(m, "source", &ms) || !json_object_object_get_ex(m, "source_sha256", &md) ||
	    !json_object_object_get_ex(m, "copy_sha256", &mc)) {
		st->state = "stale";
		return;
	}
	if (digest_fd(fd, digest) < 0 || strcmp(digest, json_object_get_string(mc)) != 0) {
		st->state = "tampered";
		return;
	}
	if (strcmp(json_object_get_string(ms), s->path) || strcmp(json_object_get_string(md), s->digest)) {
		st->state = "stale";
		return;
	}
	if (strcmp(st->caps, WANT_CAPS) != 0) {
		st->state = "no-capability";
		return;
	}
	st->state = "ok";
}

/* <home>/bin: 0700, ours, not a symlink. Returns an O_PATH fd or -1 (logged). */
static int open_bindir(const char *home, bool create, char *path, size_t pathlen, int *err)
{
	cleanup_free char *failed = NULL;
	struct stat st;
	snprintf(path, pathlen, "%s/bin", home);
	*err = 0;
	if (lstat(path, &st) < 0) {
		if (errno != ENOENT || !create) {
			*err = errno == ENOENT ? 0 : log_sys(errno, "cannot stat '%s'", path);
			return -1;
		}
		int r = mkdir_p_0700(path, &failed);
		if (r < 0) {
			*err = log_sys(r, "cannot create '%s'", failed ? failed : path);
			return -1;
		}
		if (lstat(path, &st) < 0) {
			*err = log_sys(errno, "cannot stat '%s'", path);
			return -1;
		}
	}
	if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
		log_error("'%s' is a symlink or not a directory; refusing to install through it", path);
		*err = EXIT_REFUSED;
		return -1;
	}
	if (st.st_uid != geteuid()) {
		log_error("'%s' is owned by uid %u, not by you (uid %u); refusing it", path, (unsigned)st.st_uid,
			  (unsigned)geteuid());
		*err = EXIT_REFUSED;
		return -1;
	}
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		*err = log_sys(errno, "cannot open '%s'", path);
		return -1;
	}
	if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0) {
		close(fd);
		*err = log_sys(errno, "cannot chmod '%s'", path);
		return -1;
	}
	return fd;
}

/* Copy from in, the source's descriptor find_source opened and checked. */
static int install(int bindir, const char *bindir_path, const struct source *s, int in)
{
	char tmp[64], hex[17], digest[65];
	cleanup_close int out = -1;
	int r;
	if (lseek(in, 0, SEEK_SET) < 0)
		return log_sys(errno, "cannot read '%s'", s->path);
	random_hex(hex, 8);
	snprintf(tmp, sizeof(tmp), ".virtiofsd.tmp-%s", hex);
	out = openat(bindir, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700);
	if (out < 0)
		return log_sys(errno, "cannot create a temporary file in '%s'", bindir_path);
	char buf[1 << 16];
	ssize_t n;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			r = log_sys(errno, "cannot write the copy");
			goto fail;
		}
	if (n < 0 || fsync(out) < 0 || fchmod(out, 0755) < 0) {
		r = log_sys(errno, "cannot write the copy");
		goto fail;
	}
	cap_t c = cap_from_text(WANT_CAPS);
	if (!c || cap_set_fd(out, c) < 0) {
		int e = errno;
		cap_free(c);
		if (e == EPERM) {
			log_error("setting %s on the copy needs CAP_SETFCAP; run once: sudo %s%s%s", WANT_CAPS,
				  "vfsd-cap-install", arg.home ? " --home " : "", arg.home ? arg.home : "");
			r = EXIT_SYSTEM;
		} else
			r = log_sys(e, "cannot set %s on the copy", WANT_CAPS);
		goto fail;
	}
	cap_free(c);
	if ((r = digest_fd(out, digest)) < 0) {
		r = log_sys(r, "cannot read the copy back");
		goto fail;
	}
	if (renameat(bindir, tmp, bindir, COPY_NAME) < 0) {
		r = log_sys(errno, "cannot install '%s/%s'", bindir_path, COPY_NAME);
		goto fail;
	}
	{
		cleanup_json struct json_object *m = json_object_new_object();
		json_object_object_add(m, "source", json_object_new_string(s->path));
		json_object_object_add(m, "source_sha256", json_object_new_string(s->digest));
		json_object_object_add(m, "copy_sha256", json_object_new_string(digest));
		json_object_object_add(m, "version", json_object_new_string(s->version));
		const char *t =
			json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
		if ((r = write_file_atomic(bindir, MARKER_NAME, t, strlen(t), 0600)) < 0)
			return log_sys(r, "cannot write '%s/%s'", bindir_path, MARKER_NAME);
	}
	return 0;
fail:
	unlinkat(bindir, tmp, 0);
	return r;
}

static int tool_main(int argc, char **argv)
{
	cleanup_free char *home = NULL;
	cleanup_close int src_fd = -1;
	struct source s = { 0 };
	struct state st;
	char bindir_path[PATH_MAX + 8];
	int r, err;

	log_init(argv[0]);
	if (parse_argv(argc, argv) < 0)
		return EXIT_USAGE;
	/* canonical once, at entry (a missing home stays as given for --status) */
	r = boxkit_home_canon(arg.home, !arg.status, &home);
	if (r == -ENOENT && arg.status)
		r = boxkit_home(arg.home, &home);
	if (r < 0) {
		log_error("cannot find the data home: set --home, XDG_DATA_HOME or HOME (%s)", strerror(-r));
		return EXIT_USAGE;
	}
	if ((r = find_source(&s, &src_fd)))
		return r;
	if (arg.status) {
		cleanup_close int bd = open_bindir(home, false, bindir_path, sizeof(bindir_path), &err);
		if (bd < 0 && err)
			return err;
		inspect(bd, &s, &st);
		cleanup_json struct json_object *o = json_object_new_object();
		char wrapper[PATH_MAX + 32];
		snprintf(wrapper, sizeof(wrapper), "%s/%s", bindir_path, COPY_NAME);
		json_object_object_add(o, "wrapper", json_object_new_string(wrapper));
		json_object_object_add(o, "state", json_object_new_string(st.state));
		json_object_object_add(o, "source", json_object_new_string(s.path));
		json_object_object_add(o, "source_version", json_object_new_string(s.version));
		json_object_object_add(o, "source_file_handles", json_object_new_boolean(s.handles));
		json_object_object_add(o, "capabilities", json_object_new_string(st.caps));
		r = jsonl_write(stdout, o) < 0 ? EXIT_SYSTEM : 0;
		return close_stdout() < 0 ? EXIT_SYSTEM : r;
	}
	if (!s.handles) {
		log_error("virtiofsd '%s' (%s) has no --inode-file-handles: without mandatory file handles it pins one "
			  "descriptor per cached inode and a guest walking a big tree exhausts the host's descriptors; "
			  "use virtiofsd >= 1.x ('make deps' provides one)",
			  s.path, s.version[0] ? s.version : "unknown version");
		return EXIT_REFUSED;
	}
	cleanup_close int bd = open_bindir(home, true, bindir_path, sizeof(bindir_path), &err);
	if (bd < 0)
		return err ? err : EXIT_SYSTEM;
	inspect(bd, &s, &st);
	if (st.dir_in_the_way) {
		log_error("'%s/%s' is a directory; refusing to replace it (remove it, then run again)", bindir_path,
			  st.dir_in_the_way);
		return EXIT_REFUSED;
	}
	if (strcmp(st.state, "ok") != 0) {
		log_debug("copy is %s: installing from '%s'", st.state, s.path);
		if ((r = install(bd, bindir_path, &s, src_fd)))
			return r;
	} else
		log_debug("copy is up to date");
	printf("%s/%s\n", bindir_path, COPY_NAME);
	return close_stdout() < 0 ? EXIT_SYSTEM : 0;
}

int main(int argc, char **argv)
{
	return tool_exit(tool_main(argc, argv));
}
