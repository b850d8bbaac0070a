/* SPDX-License-Identifier: MIT */
#ifndef BOXKIT_VOLSPEC_H
#define BOXKIT_VOLSPEC_H
#include <stdbool.h>
#include <stddef.h>

#define VOLSPEC_MAX_LEN 4096
#define VOLNAME_MAX 64

enum vol_kind { VOL_ANONYMOUS, VOL_NAMED };

struct volspec {
	enum vol_kind kind;
	char name[VOLNAME_MAX + 1]; /* empty for anonymous */
	char target[VOLSPEC_MAX_LEN];
	bool readonly;
	char subpath[VOLSPEC_MAX_LEN]; /* empty when not given */
};

/* Parse one -v / --mount spec. Returns 0, or -1 with a one-line reason in
 * err (no program name, no trailing full stop). Pure: touches no disk. */
int volspec_parse(const char *spec, struct volspec *out, char *err, size_t errlen);
bool volume_name_valid(const char *name);
/* Validate a guest path and normalise it into out (no "//", no trailing "/";
 * "." and ".." and control characters refused). 0 or -1 with a reason. */
int volspec_guest_path(const char *g, char *out, size_t outlen, char *err, size_t errlen);
/* A volume-subpath: relative, no empty, "." or ".." component. 0 or -1. */
int volspec_subpath_check(const char *s, char *err, size_t errlen);
#endif
