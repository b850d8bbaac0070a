/* SPDX-License-Identifier: MIT */
/* Removing a jail (<base>/<vmm>/<id>): the VMM's uid could write anything
 * inside its root, so the removal trusts nothing in it: every mount found at
 * or below the jail's root (binds someone made there) is detached first (deepest first, without following a
 * symlink at the last component), then the tree is removed by rm_tree_at
 * (no symlink followed at any level, no mount crossed, bounded memory and
 * descriptors whatever the depth). The <vmm> component is opened with
 * O_NOFOLLOW: a symlink there is refused, never followed. */
#include "common.h"

#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
		    p[3] <= '7') {
			*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else
			*o++ = *p;
	}
	*o = 0;
}

static bool under(const char *path, const char *root)
{
	size_t n = strlen(root);
	return !strncmp(path, root, n) && (path[n] == '\0' || path[n] == '/');
}

/* The deepest mount point at or below root, from this namespace's table. */
static int deepest_below(const char *root, char *out, size_t outlen)
{
	cleanup_fclose FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	size_t best = 0;
	if (!f)
		return -errno;
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		/* id parent major:minor root mountpoint ... */
		char *save = NULL, *t = strtok_r(line, " ", &save);
		for (int k = 0; t && k < 4; k++)
			t = strtok_r(NULL, " ", &save);
		if (!t)
			continue;
		unescape(t);
		size_t n = strlen(t);
		if (under(t, root) && n >= best && n < outlen) {
			best = n;
			memcpy(out, t, n + 1);
		}
	}
	return out[0] ? 1 : 0;
}

/* Detach every mount at or below root (rootfd is root), deepest first, one
 * at a time. Each is reached by descriptor: opened beneath the jail's root
 * without following a symlink (the VM's uid could have made one), checked
 * to be a mount root, and detached through /proc/self/fd. 0, or -EBUSY
 * when some remain. */
static int unmount_below(int rootfd, const char *root)
{
	char m[PATH_MAX], fdp[64];
	for (int i = 0; i < 1000; i++) {
		int r = deepest_below(root, m, sizeof(m));
		if (r <= 0)
			return r;
		const char *rel = m + strlen(root);
		while (*rel == '/')
			rel++;
		cleanup_close int fd =
			*rel ? open_beneath(rootfd, rel, O_PATH | O_NOFOLLOW, 0) : fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0 || !fd_is_mount_root(fd))
			return -EBUSY; /* moved behind a symlink, or not what the table says */
		snprintf(fdp, sizeof(fdp), "/proc/self/fd/%d", fd);
		if (umount2(fdp, MNT_DETACH) < 0)
			return -EBUSY;
	}
	return -EBUSY;
}

int jail_destroy(int basefd, const char *base, const char *vmm, const char *id, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	int r;

	cleanup_close int vfd = openat(basefd, vmm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (vfd < 0) {
		if (errno == ENOENT)
			return 0;
		r = -errno;
		snprintf(err, errlen, "'%s/%s' is %s", base, vmm,
			 errno == ELOOP || errno == ENOTDIR ? "a symlink or not a directory; refusing it"
							    : strerror(errno));
		return r == -ENOTDIR ? -ELOOP : r;
	}
	struct stat st;
	if (fstatat(vfd, id, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if ((size_t)snprintf(dir, sizeof(dir), "%s/%s/%s/root", base, vmm, id) >= sizeof(dir))
		return -ENAMETOOLONG;
	char rel[PATH_MAX];
	snprintf(rel, sizeof(rel), "%s/root", id);
	cleanup_close int rootfd = openat(vfd, rel, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd >= 0 && (r = unmount_below(rootfd, dir)) < 0) {
		snprintf(err, errlen, "mounts remain below '%s'; not removing it", dir);
		return r;
	}
	*strrchr(dir, '/') = 0;
	if ((r = rm_tree_at(vfd, id)) < 0) {
		snprintf(err, errlen, "cannot remove '%s': %s", dir,
			 r == -EBUSY ? "a mount point is in it; leaving it (and what is in it)" : strerror(-r));
		return r;
	}
	/* the per-VMM directory goes when it is empty */
	unlinkat(basefd, vmm, AT_REMOVEDIR);
	return 0;
}
