/* SPDX-License-Identifier: MIT */
#include "common.h"
#include "testhook.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

int boxkit_home(const char *explicit_home, char **out)
{
	const char *e;
	char *r = NULL;

	if (explicit_home && *explicit_home)
		r = strdup(explicit_home);
	else if ((e = getenv("BOXKIT_HOME")) && *e)
		r = strdup(e);
	else if ((e = getenv("XDG_DATA_HOME")) && *e) {
		if (asprintf(&r, "%s/boxkit", e) < 0)
			r = NULL;
	} else if ((e = getenv("HOME")) && *e) {
		if (asprintf(&r, "%s/.local/share/boxkit", e) < 0)
			r = NULL;
	} else
		return -ENOENT;
	if (!r)
		return -ENOMEM;
	/* strip trailing slashes, keep "/" */
	for (size_t n = strlen(r); n > 1 && r[n - 1] == '/'; n--)
		r[n - 1] = '\0';
	*out = r;
	return 0;
}

int boxkit_home_canon(const char *explicit_home, bool create, char **out)
{
	cleanup_free char *h = NULL, *abs = NULL, *failed = NULL;
	char canon[PATH_MAX];
	int r = boxkit_home(explicit_home, &h);
	if (r < 0)
		return r;
	if (h[0] != '/') {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		if (asprintf(&abs, "%s/%s", cwd, h) < 0)
			return -ENOMEM;
	} else if (!(abs = strdup(h)))
		return -ENOMEM;
	if (create && (r = mkdir_p_0700(abs, &failed)) < 0)
		return r;
	if (!realpath(abs, canon))
		return -errno;
	if (!(*out = strdup(canon)))
		return -ENOMEM;
	return 0;
}

int mkdir_p_0700(const char *path, char **failed)
{
	cleanup_free char *p = strdup(path);
	struct stat st;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1;; s++) {
		bool last = (*s == '\0');
		if (*s != '/' && !last)
			continue;
		*s = '\0';
		if (mkdir(p, 0700) < 0) {
			int err = errno;
			if (err != EEXIST || lstat(p, &st) < 0 || !S_ISDIR(st.st_mode)) {
				/* a symlink to a directory is fine for parents, never for the leaf */
				if (err == EEXIST && !last && stat(p, &st) == 0 && S_ISDIR(st.st_mode))
					goto next;
				if (failed)
					*failed = strdup(p);
				return err == EEXIST ? -ENOTDIR : -err;
			}
		}
	next:
		if (last)
			break;
		*s = '/';
	}
	return 0;
}

bool path_is_clean_relative(const char *s)
{
	if (!s || !*s || *s == '/')
		return false;
	for (const char *c = s; *c;) {
		const char *e = strchrnul(c, '/');
		size_t n = (size_t)(e - c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c = *e ? e + 1 : e;
		if (*e && !*c)
			return false; /* trailing slash */
	}
	return true;
}

/* the mount an fd is on (a bind mount of the same filesystem has the same
 * st_dev, so compare mount ids) */
static uint64_t mnt_id(int fd)
{
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &sx) < 0 || !(sx.stx_mask & STATX_MNT_ID))
		return 0;
	return sx.stx_mnt_id;
}

static int open_beneath_fallback(int dirfd, const char *rel, int flags, mode_t mode, bool no_xdev)
{
	cleanup_free char *p = strdup(rel);
	cleanup_close int cur = -1;
	char *save = NULL, *comp, *next;
	struct stat st;
	dev_t dev;

	if (!p)
		return -ENOMEM;
	if (!path_is_clean_relative(rel))
		return -EXDEV;
	cur = openat(dirfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0 || fstat(cur, &st) < 0)
		return -errno;
	dev = st.st_dev;
	uint64_t mnt = no_xdev ? mnt_id(cur) : 0;
	comp = strtok_r(p, "/", &save);
	while (comp) {
		next = strtok_r(NULL, "/", &save);
		int fd;
		if (next)
			fd = openat(cur, comp, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
		else
			fd = openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0)
			return errno == ENOTDIR && next ? -ELOOP : -errno;
		if (fstat(fd, &st) < 0 || (!next && S_ISLNK(st.st_mode)) ||
		    (no_xdev && (st.st_dev != dev || mnt_id(fd) != mnt))) {
			/* O_PATH|O_NOFOLLOW opens the symlink itself: refuse it */
			int e = S_ISLNK(st.st_mode) ? ELOOP : EXDEV;
			close(fd);
			return -e;
		}
		close(cur);
		cur = fd;
		comp = next;
	}
	return steal_fd(&cur);
}

static int open_beneath_impl(int dirfd, const char *rel, int flags, mode_t mode, bool no_xdev)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve =
			RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | (no_xdev ? RESOLVE_NO_XDEV : 0),
	};
	long fd;

	/* test builds: BOXKIT_NO_OPENAT2 forces the fallback walk */
	if (!test_getenv("BOXKIT_NO_OPENAT2")) {
		fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
		if (fd >= 0) {
			if ((flags & O_PATH) && (flags & O_NOFOLLOW)) {
				struct stat st;
				if (fstat((int)fd, &st) == 0 && S_ISLNK(st.st_mode)) {
					close((int)fd);
					return -ELOOP;
				}
			}
			return (int)fd;
		}
		if (errno != ENOSYS && errno != EPERM)
			return -errno;
	}
	return open_beneath_fallback(dirfd, rel, flags, mode, no_xdev);
}

int open_beneath(int dirfd, const char *rel, int flags, mode_t mode)
{
	return open_beneath_impl(dirfd, rel, flags, mode, false);
}

int open_beneath_noxdev(int dirfd, const char *rel, int flags, mode_t mode)
{
	return open_beneath_impl(dirfd, rel, flags, mode, true);
}

bool fd_is_fs_mount(int fd)
{
	char line[8192], want[32];
	uint64_t id = mnt_id(fd);
	if (!id || !fd_is_mount_root(fd))
		return false;
	snprintf(want, sizeof(want), "%llu ", (unsigned long long)id);
	cleanup_fclose FILE *f = fopen("/proc/self/mountinfo", "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, want, strlen(want)))
			continue;
		/* id parent major:minor root ...: the root of the filesystem, not a bind of part of it */
		char *save = NULL, *t = strtok_r(line, " ", &save);
		for (int k = 0; t && k < 3; k++)
			t = strtok_r(NULL, " ", &save);
		return t && !strcmp(t, "/");
	}
	return false;
}

bool fd_is_mount_root(int fd)
{
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx) < 0)
		return false;
	return (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

int write_file_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
	char tmp[NAME_MAX + 1];
	char hex[17];
	cleanup_close int fd = -1;
	const char *p = data;
	int r;

	r = random_hex(hex, 8);
	if (r < 0)
		return r;
	if ((size_t)snprintf(tmp, sizeof(tmp), ".%s.tmp-%s", name, hex) >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto fail;
		}
		p += w;
		len -= (size_t)w;
	}
	if (fsync(fd) < 0 || fchmod(fd, mode) < 0) {
		r = -errno;
		goto fail;
	}
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		r = -errno;
		goto fail;
	}
	return 0;
fail:
	unlinkat(dirfd, tmp, 0);
	return r;
}

int sys_open_tree(int dfd, const char *path, unsigned flags)
{
	return (int)syscall(SYS_open_tree, dfd, path, flags);
}

int sys_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags)
{
	return (int)syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags);
}

int sys_mount_setattr(int dfd, const char *path, unsigned flags, struct mount_attr *a)
{
	return (int)syscall(SYS_mount_setattr, dfd, path, flags, a, sizeof(*a));
}

int read_small_file(const char *path, size_t max, char **out, size_t *len)
{
	/* O_NONBLOCK: a FIFO put where a file is expected must not block the
	 * open; fstat then refuses it */
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
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
	size_t n = 0;
	while (n < (size_t)st.st_size) {
		ssize_t k = read(fd, b + n, (size_t)st.st_size - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			free(b);
			return -errno;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	b[n] = 0;
	*out = b;
	*len = n;
	return 0;
}
