/* SPDX-License-Identifier: MIT */
/* boxkit's own cgroups, for a run's helper processes (the network helper):
 * <cgroup2 mount>/boxkit/<name>, root's (0755: only root can move a process
 * in or out). The cgroup2 mount is the first one in this mount namespace's
 * table: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a
 * hybrid one. */
#include "common.h"
#include "runrec.h"

#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int cgroup2_root(char *out, size_t outlen)
{
	cleanup_fclose FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - ");
		if (!sep || strncmp(sep + 3, "cgroup2 ", 8))
			continue;
		/* id parent major:minor root mountpoint: the whole hierarchy only (a
		 * delegated subtree's owner could move processes within it) */
		char *save = NULL, *t = strtok_r(line, " ", &save);
		for (int k = 0; t && k < 3; k++)
			t = strtok_r(NULL, " ", &save);
		if (!t || strcmp(t, "/"))
			continue;
		t = strtok_r(NULL, " ", &save);
		if (!t || strchr(t, '\\') || strlen(t) >= outlen)
			continue; /* an escaped name: not one to trust */
		snprintf(out, outlen, "%s", t);
		return 0;
	}
	return -ENOENT;
}

/* O_PATH of <cgroup2>/boxkit, made when create */
static int boxkit_dir(bool create)
{
	char root[PATH_MAX];
	int r = cgroup2_root(root, sizeof(root));
	if (r < 0)
		return r;
	cleanup_close int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rfd < 0)
		return -errno;
	if (create && mkdirat(rfd, CGROUP_BOXKIT, 0755) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(rfd, CGROUP_BOXKIT, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int cgroup_create(const char *name)
{
	if (!run_name_valid(name))
		return -EINVAL;
	cleanup_close int d = boxkit_dir(true);
	if (d < 0)
		return d;
	if (mkdirat(d, name, 0755) < 0)
		return -errno;
	int fd = openat(d, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int cgroup_remove(const char *name)
{
	if (!run_name_valid(name))
		return -EINVAL;
	cleanup_close int d = boxkit_dir(false);
	if (d < 0)
		return d == -ENOENT ? 0 : d;
	for (int round = 0; round < 100; round++) {
		if (unlinkat(d, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -errno;
		/* something still in it (the record's processes are killed first;
		 * this is for what they may have left) */
		cleanup_close int cg = openat(d, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		cleanup_close int k = cg < 0 ? -1 : openat(cg, "cgroup.kill", O_WRONLY | O_CLOEXEC);
		if (k >= 0 && write(k, "1", 1) < 0) {
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return -EBUSY;
}
