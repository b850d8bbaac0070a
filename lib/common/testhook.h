/* SPDX-License-Identifier: MIT */
/* Test-only switches. They exist only in the test builds (make test, make
 * asan: -DBOXKIT_TEST_HOOKS); a default or installed build compiles every one
 * of them to nothing, so no environment variable can change what it does. */
#ifndef BOXKIT_TESTHOOK_H
#define BOXKIT_TESTHOOK_H
#include <stdbool.h>

#ifdef BOXKIT_TEST_HOOKS
/* getenv(name), in test builds only */
const char *test_getenv(const char *name);
/* When BOXKIT_TEST_PAUSE (a comma-separated list) names point: create
 * $BOXKIT_TEST_PAUSE_DIR/<point>.reached holding this pid, then wait (at most
 * 120 s) until <point>.go exists there. A test makes a race happen at the
 * exact point between two steps this way. */
void test_pause(const char *point);
#else
static inline const char *test_getenv(const char *name)
{
	(void)name;
	return (const char *)0;
}
static inline void test_pause(const char *point)
{
	(void)point;
}
#endif
#endif
