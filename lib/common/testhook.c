/* SPDX-License-Identifier: MIT */
#include "testhook.h"

#ifdef BOXKIT_TEST_HOOKS
#include "common.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *test_getenv(const char *name)
{
	return getenv(name);
}

static bool listed(const char *list, const char *point)
{
	size_t n = strlen(point);
	for (const char *c = list; c && *c;) {
		const char *e = strchrnul(c, ',');
		if ((size_t)(e - c) == n && !strncmp(c, point, n))
			return true;
		c = *e ? e + 1 : e;
	}
	return false;
}

void test_pause(const char *point)
{
	const char *list = getenv("BOXKIT_TEST_PAUSE"), *dir = getenv("BOXKIT_TEST_PAUSE_DIR");
	char p[4096], pid[32];
	struct stat st;
	if (!list || !dir || !listed(list, point))
		return;
	snprintf(p, sizeof(p), "%s/%s.reached", dir, point);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
		if (write(fd, pid, (size_t)n) < 0) {
		}
		close(fd);
	}
	snprintf(p, sizeof(p), "%s/%s.go", dir, point);
	for (int i = 0; i < 12000 && stat(p, &st) < 0; i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}
#endif
