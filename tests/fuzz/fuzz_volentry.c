/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the volume entry reader (lib/common/vol.c): any
 * bytes must be read or refused with a message, never crash; an accepted
 * entry must hold a valid tag, a clean absolute target, no NUL and valid
 * UTF-8 in every string, and survive a round trip through its JSON. */
#include "common.h"
#include "vol.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static void check(const struct vol_entry *e)
{
	if (!vol_tag_valid(e->tag, strlen(e->tag)))
		__builtin_trap();
	if (e->target[0] != '/' || strstr(e->target, "//") || strstr(e->target, "/../") || strstr(e->target, "/./"))
		__builtin_trap();
	if (e->subpath[0] && (e->subpath[0] == '/' || e->kind != VOL_NAMED))
		__builtin_trap();
	if (!utf8_valid(e->target, strlen(e->target)) || !utf8_valid(e->spec, strlen(e->spec)))
		__builtin_trap();
	struct json_object *o = vol_entry_json(e);
	struct vol_entry back;
	char err[256];
	if (!o || vol_entry_from_json(o, &back, err, sizeof(err)) < 0)
		__builtin_trap();
	if (strcmp(back.target, e->target) || strcmp(back.tag, e->tag) || strcmp(back.name, e->name) ||
	    back.kind != e->kind || back.is_file != e->is_file || back.readonly != e->readonly)
		__builtin_trap();
	json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fmemopen((void *)data, size, "r");
	struct vol_entry *v = NULL;
	size_t n = 0;
	char err[1024];
	if (!f)
		return 0;
	if (vol_read(f, &v, &n, err, sizeof(err)) == 0)
		for (size_t i = 0; i < n; i++)
			check(&v[i]);
	else if (!err[0])
		__builtin_trap();
	free(v);
	fclose(f);
	return 0;
}
