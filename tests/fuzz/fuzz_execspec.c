/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the monitor's exec request reader
 * (lib/common/execspec.c): any bytes must be turned into a spec or refused
 * with a message, never crash; an accepted spec must be a JSON object of at
 * most GUEST_EXEC_MAX bytes with a non-empty list of string args, every env
 * entry NAME=VALUE (the sandbox's own first, a request's name winning), and
 * an absolute cwd. */
#include "common.h"
#include "execspec.h"
#include "guest-abi.h"

#include <stdint.h>
#include <string.h>

static struct json_object *cfg;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!cfg)
		cfg = json_tokener_parse(
			"{\"process\":{\"env\":[\"PATH=/bin\",\"HOME=/root\",\"A=1\"],\"cwd\":\"/work\"}}");
	char *out = NULL, err[256] = "";
	int r = exec_spec_build(cfg, (const char *)data, size, &out, err, sizeof(err));
	if (r < 0) {
		if (out || !err[0])
			__builtin_trap();
		return 0;
	}
	if (!out || strlen(out) > GUEST_EXEC_MAX)
		__builtin_trap();
	struct json_object *o = json_tokener_parse(out), *v;
	if (!o || !json_object_is_type(o, json_type_object))
		__builtin_trap();
	if (!json_object_object_get_ex(o, "args", &v) || !json_object_array_length(v))
		__builtin_trap();
	for (size_t i = 0; i < json_object_array_length(v); i++)
		if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_string))
			__builtin_trap();
	if (!json_object_object_get_ex(o, "env", &v))
		__builtin_trap();
	for (size_t i = 0; i < json_object_array_length(v); i++) {
		const char *e = json_object_get_string(json_object_array_get_idx(v, i));
		if (!e || !strchr(e, '=') || e[0] == '=')
			__builtin_trap();
	}
	/* each of the sandbox's names: once, unless the request gave its own */
	struct json_object *renv = NULL;
	char *copy = strndup((const char *)data, size);
	struct json_object *ro = copy ? json_tokener_parse(copy) : NULL;
	free(copy);
	if (ro)
		json_object_object_get_ex(ro, "env", &renv);
	static const char *const names[] = { "PATH=", "HOME=", "A=" };
	for (size_t k = 0; k < 3; k++) {
		size_t in_req = 0, in_out = 0, n = strlen(names[k]);
		for (size_t i = 0; renv && i < json_object_array_length(renv); i++)
			in_req += !strncmp(json_object_get_string(json_object_array_get_idx(renv, i)), names[k], n);
		for (size_t i = 0; i < json_object_array_length(v); i++)
			in_out += !strncmp(json_object_get_string(json_object_array_get_idx(v, i)), names[k], n);
		if (in_out != (in_req ? in_req : 1))
			__builtin_trap();
	}
	json_object_put(ro);
	if (!json_object_object_get_ex(o, "cwd", &v) || json_object_get_string(v)[0] != '/')
		__builtin_trap();
	json_object_put(o);
	free(out);
	return 0;
}
