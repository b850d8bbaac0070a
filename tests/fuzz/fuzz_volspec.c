/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the volume spec parser: any input must parse or be
 * refused with a message, never crash, and an accepted spec must hold a
 * clean absolute target and a valid name. */
#include "volspec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* true when some '/'-separated component of p is exactly ".." */
static int has_dotdot(const char *p)
{
	for (const char *c = p; *c;) {
		const char *e = strchrnul(c, '/');
		if (e - c == 2 && c[0] == '.' && c[1] == '.')
			return 1;
		c = *e ? e + 1 : e;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	struct volspec v;
	char err[512];

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (volspec_parse(s, &v, err, sizeof(err)) == 0) {
		if (v.target[0] != '/' || has_dotdot(v.target) || strstr(v.target, "//") || !strcmp(v.target, "/"))
			abort();
		if (v.kind == VOL_NAMED && !volume_name_valid(v.name))
			abort();
		if (v.subpath[0] && (v.subpath[0] == '/' || has_dotdot(v.subpath)))
			abort();
	} else if (!err[0]) {
		abort();
	}
	free(s);
	return 0;
}
