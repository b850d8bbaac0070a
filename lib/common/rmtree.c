/* SPDX-License-Identifier: MIT */
/* Remove a directory tree that someone else may have built (a VMM's chroot,
 * a guest's volume): never follow a symlink, never leave the filesystem,
 * never enter a mount, and use a bounded number of descriptors and bytes of
 * memory whatever the depth. The depth is flattened instead of recursed:
 * the top directory is emptied one child at a time; a child directory is
 * emptied of files and its own subdirectories are renamed up into the top
 * (renameat2 RENAME_NOREPLACE, same filesystem), then removed. Every name is
 * resolved relative to a descriptor held open, with O_NOFOLLOW. */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_mount_root_at(int dirfd, const char *name)
{
	struct statx sx;
	if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &sx) < 0)
		return false;
	return (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

/* Not root: a directory of ours without rwx for us (an archive's 0555 or
 * 0000) cannot be read, emptied or moved to another parent: give us rwx on
 * it first. Root needs none of this and changes nothing. */
static void own_dir_usable(int dirfd, const char *name, const struct stat *st)
{
	if (geteuid() == 0 || st->st_uid != geteuid() || (st->st_mode & 0700) == 0700)
		return;
	if (fchmodat(dirfd, name, (st->st_mode & 07777) | 0700, AT_SYMLINK_NOFOLLOW) < 0) {
		/* best effort: the removal then reports what it cannot do */
	}
}

/* Empty dir (an open directory inside top) of everything but directories;
 * move its directories up into top. *busy is set when a mount or another
 * device is met (left alone). Returns how many names it removed or moved,
 * or -errno. */
static int flatten_into(int top, int dir, dev_t dev, unsigned long *counter, bool *busy)
{
	int fd = dup(dir);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *e;
	int r = 0, done = 0;
	while ((e = readdir(d))) {
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!S_ISDIR(st.st_mode)) {
			if (unlinkat(dir, e->d_name, 0) == 0)
				done++;
			else if (errno != ENOENT)
				r = r ? r : -errno;
			continue;
		}
		if (st.st_dev != dev || is_mount_root_at(dir, e->d_name)) {
			*busy = true;
			continue;
		}
		own_dir_usable(dir, e->d_name, &st);
		for (int tries = 0; tries < 1000; tries++) {
			char name[64];
			snprintf(name, sizeof(name), ".rm-%lu", (*counter)++);
			if (renameat2(dir, e->d_name, top, name, RENAME_NOREPLACE) == 0) {
				done++;
				break;
			}
			if (errno != EEXIST) {
				if (errno != ENOENT)
					r = r ? r : -errno;
				break;
			}
		}
	}
	closedir(d);
	return r < 0 ? r : done;
}

int rm_tree_at(int parent, const char *name)
{
	cleanup_close int top = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (top < 0 && errno == EACCES && fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
		own_dir_usable(parent, name, &st);
		top = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	unsigned long counter = 0;
	bool busy = false;
	int r = 0;

	if (top < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == ENOTDIR || errno == ELOOP) /* a file or a symlink: remove the name only */
			return unlinkat(parent, name, 0) < 0 && errno != ENOENT ? -errno : 0;
		return -errno;
	}
	if (fstat(top, &st) < 0)
		return -errno;
	if (fd_is_mount_root(top))
		return -EBUSY;
	if (geteuid() != 0 && st.st_uid == geteuid() && (st.st_mode & 0700) != 0700 &&
	    fchmod(top, (st.st_mode & 07777) | 0700) < 0)
		return -errno;
	/* bounded: a tree only shrinks or moves up; a writer racing us (there
	 * should be none: the run's processes are dead) cannot keep us forever */
	for (long pass = 0;; pass++) {
		bool progress = false, empty = true;
		if (pass > 100000)
			return -EBUSY;
		int fd = dup(top);
		if (fd < 0)
			return -errno;
		DIR *d = fdopendir(fd);
		if (!d) {
			close(fd);
			return -errno;
		}
		/* the duplicate shares the offset with top: start each pass at the top */
		rewinddir(d);
		struct dirent *e;
		busy = false;
		while ((e = readdir(d))) {
			struct stat cst;
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			empty = false;
			if (fstatat(top, e->d_name, &cst, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			if (!S_ISDIR(cst.st_mode)) {
				if (unlinkat(top, e->d_name, 0) == 0)
					progress = true;
				else if (errno != ENOENT)
					r = r ? r : -errno;
				continue;
			}
			own_dir_usable(top, e->d_name, &cst);
			int sub = openat(top, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				continue;
			/* checked on what was opened: another device or a mount root is left */
			struct stat sst;
			if (fstat(sub, &sst) < 0 || sst.st_dev != st.st_dev || fd_is_mount_root(sub)) {
				close(sub);
				busy = true;
				continue;
			}
			int fr = flatten_into(top, sub, st.st_dev, &counter, &busy);
			close(sub);
			if (fr < 0)
				r = r ? r : fr;
			else if (fr > 0)
				progress = true; /* its children went: the next pass takes what moved up */
			if (unlinkat(top, e->d_name, AT_REMOVEDIR) == 0)
				progress = true;
			else if (errno != ENOTEMPTY && errno != EEXIST && errno != ENOENT)
				r = r ? r : -errno;
		}
		closedir(d);
		if (empty)
			break;
		if (!progress)
			return busy ? -EBUSY : (r ? r : -ENOTEMPTY);
	}
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}
