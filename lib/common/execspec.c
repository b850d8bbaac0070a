/* SPDX-License-Identifier: MIT */
#include "execspec.h"
#include "common.h"
#include "guest-abi.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool env_name_ok(const char *e, size_t n)
{
	if (n == 0 || !((e[0] >= 'A' && e[0] <= 'Z') || (e[0] >= 'a' && e[0] <= 'z') || e[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((e[i] >= 'A' && e[i] <= 'Z') || (e[i] >= 'a' && e[i] <= 'z') || (e[i] >= '0' && e[i] <= '9') ||
		      e[i] == '_'))
			return false;
	return true;
}

static bool str_list(struct json_object *a, bool env)
{
	if (!json_object_is_type(a, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		struct json_object *v = json_object_array_get_idx(a, i);
		if (!json_object_is_type(v, json_type_string))
			return false;
		const char *s = json_object_get_string(v), *eq = strchr(s, '=');
		if ((size_t)json_object_get_string_len(v) != strlen(s))
			return false; /* a \u0000 inside: C would see less than JSON says */
		if (env && (!eq || !env_name_ok(s, (size_t)(eq - s))))
			return false;
	}
	return true;
}

static bool id_ok(struct json_object *v)
{
	return v && json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0 &&
	       json_object_get_int64(v) <= 4294967294LL;
}

/* {"uid":N,"gid":N,"additionalGids":[N...]}: the user an exec runs as */
static bool user_ok(struct json_object *u)
{
	struct json_object *v;
	if (!json_object_is_type(u, json_type_object) || !json_object_object_get_ex(u, "uid", &v) || !id_ok(v) ||
	    !json_object_object_get_ex(u, "gid", &v) || !id_ok(v))
		return false;
	if (!json_object_object_get_ex(u, "additionalGids", &v))
		return true;
	if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > GUEST_EXEC_GROUPS_MAX)
		return false;
	for (size_t i = 0; i < json_object_array_length(v); i++)
		if (!id_ok(json_object_array_get_idx(v, i)))
			return false;
	return true;
}

static int fail(char *err, size_t errlen, int r, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return r;
}

int exec_spec_build(struct json_object *cfg, const char *req, size_t len, char **out, char *err, size_t errlen)
{
	struct json_object *v, *proc = NULL, *base = NULL, *add = NULL;
	*out = NULL;
	if (len > GUEST_EXEC_MAX)
		return fail(err, errlen, -E2BIG, "the exec request is too large");
	/* json-c takes a NUL inside a string as a character */
	if (memchr(req, 0, len))
		return fail(err, errlen, -EINVAL, "the exec request holds a NUL byte");
	struct json_tokener *tok = json_tokener_new_ex(16);
	if (!tok)
		return fail(err, errlen, -ENOMEM, "out of memory");
	cleanup_json struct json_object *spec = json_tokener_parse_ex(tok, req, (int)len);
	bool whole = json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == len;
	json_tokener_free(tok);
	if (!spec || !whole || !json_object_is_type(spec, json_type_object))
		return fail(err, errlen, -EINVAL, "the exec request is not one JSON object");
	if (!json_object_object_get_ex(spec, "args", &v) || !str_list(v, false) || !json_object_array_length(v))
		return fail(err, errlen, -EINVAL, "the exec request has no command (args: a list of strings, no NUL)");
	if (json_object_object_get_ex(spec, "env", &add) && !str_list(add, true))
		return fail(err, errlen, -EINVAL, "an environment entry is not NAME=VALUE");
	if (json_object_object_get_ex(spec, "cwd", &v) &&
	    (!json_object_is_type(v, json_type_string) || json_object_get_string(v)[0] != '/' ||
	     (size_t)json_object_get_string_len(v) != strlen(json_object_get_string(v))))
		return fail(err, errlen, -EINVAL, "the working directory is not an absolute path");
	if (json_object_object_get_ex(spec, "tty", &v) && !json_object_is_type(v, json_type_boolean))
		return fail(err, errlen, -EINVAL, "tty is not a boolean");
	static const char *const dims[] = { "rows", "cols" };
	for (size_t i = 0; i < 2; i++)
		if (json_object_object_get_ex(spec, dims[i], &v) &&
		    (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
		     json_object_get_int64(v) > 65535))
			return fail(err, errlen, -EINVAL, "rows and cols are 0 to 65535");

	if (json_object_object_get_ex(spec, "user", &v) && !user_ok(v))
		return fail(err, errlen, -EINVAL,
			    "user is not {\"uid\":N,\"gid\":N,\"additionalGids\":[N,...]} with ids 0 to 4294967294 "
			    "and not too many groups)");

	/* environment: the config's, then the request's (the same name wins) */
	if (cfg)
		json_object_object_get_ex(cfg, "process", &proc);
	if (proc)
		json_object_object_get_ex(proc, "env", &base);
	struct json_object *env = json_object_new_array();
	size_t nb = base && json_object_is_type(base, json_type_array) ? json_object_array_length(base) : 0;
	size_t na = add ? json_object_array_length(add) : 0;
	for (size_t i = 0; i < nb; i++) {
		struct json_object *ev = json_object_array_get_idx(base, i);
		const char *e = json_object_is_type(ev, json_type_string) ? json_object_get_string(ev) : NULL;
		const char *eq = e ? strchr(e, '=') : NULL;
		bool over = false;
		for (size_t j = 0; eq && j < na && !over; j++)
			over = !strncmp(json_object_get_string(json_object_array_get_idx(add, j)), e,
					(size_t)(eq - e) + 1);
		if (eq && !over)
			json_object_array_add(env, json_object_new_string(e));
	}
	for (size_t j = 0; j < na; j++)
		json_object_array_add(env, json_object_get(json_object_array_get_idx(add, j)));
	json_object_object_add(spec, "env", env);
	if (!json_object_object_get_ex(spec, "cwd", &v) && proc && json_object_object_get_ex(proc, "cwd", &v) &&
	    json_object_is_type(v, json_type_string))
		json_object_object_add(spec, "cwd", json_object_get(v));
	const char *t = json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!t)
		return fail(err, errlen, -ENOMEM, "out of memory");
	if (strlen(t) > GUEST_EXEC_MAX)
		return fail(err, errlen, -E2BIG, "the exec request is too large with the sandbox's environment");
	*out = strdup(t);
	return *out ? 0 : fail(err, errlen, -ENOMEM, "out of memory");
}
