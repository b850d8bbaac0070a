/* SPDX-License-Identifier: MIT */
/* The volume spec grammar, Docker's two syntaxes restricted to managed
 * volumes:
 *   short: /guest[:ro|rw]   NAME:/guest[:ro|rw]
 *   long:  type=volume,src=NAME,dst=/guest[,readonly[=true|false]][,volume-subpath=REL]
 * Anything that names a host path is refused. */
#include "volspec.h"
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MANAGED_FORMS "use a managed volume instead: '/guest' (anonymous) or 'NAME:/guest' (named)"

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

bool volume_name_valid(const char *n)
{
	size_t len = strlen(n);
	if (len < 2 || len > VOLNAME_MAX || strstr(n, ".."))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = n[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (i == 0 ? !alnum : !(alnum || c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

static bool looks_like_host_path(const char *s)
{
	return s[0] == '/' || s[0] == '~' || strncmp(s, "./", 2) == 0 || strncmp(s, "../", 3) == 0 ||
	       strcmp(s, ".") == 0;
}

/* Validate and normalise a guest path into out (collapses "//" and a
 * trailing "/"). */
int volspec_guest_path(const char *g, char *out, size_t outlen, char *err, size_t errlen)
{
	size_t o = 0;
	if (g[0] != '/')
		return fail(err, errlen, "guest path '%s' must be absolute", g);
	for (const char *c = g; *c;) {
		while (*c == '/')
			c++;
		if (!*c)
			break;
		const char *e = strchrnul(c, '/');
		size_t n = (size_t)(e - c);
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return fail(err, errlen, "guest path '%s' must not contain '.' or '..' components", g);
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)c[i] < 0x20 || c[i] == 0x7f)
				return fail(err, errlen, "guest path '%s' contains a control character", g);
		if (o + 1 + n + 1 > outlen)
			return fail(err, errlen, "guest path is too long");
		out[o++] = '/';
		memcpy(out + o, c, n);
		o += n;
		c = e;
	}
	if (o == 0)
		return fail(err, errlen, "guest path '/' cannot be a volume target; name a directory below it");
	out[o] = '\0';
	return 0;
}

static int set_name(const char *n, struct volspec *v, char *err, size_t errlen)
{
	if (looks_like_host_path(n))
		return fail(err, errlen,
			    "host path '%s' cannot be mounted: host bind mounts are not supported; " MANAGED_FORMS, n);
	if (!volume_name_valid(n))
		return fail(err, errlen,
			    "invalid volume name '%s': names are 2 to %d characters of [a-zA-Z0-9][a-zA-Z0-9_.-]+ "
			    "without '..'",
			    n, VOLNAME_MAX);
	v->kind = VOL_NAMED;
	snprintf(v->name, sizeof(v->name), "%s", n);
	return 0;
}

/* the ro|rw option list of the short syntax */
static int short_options(const char *opts, struct volspec *v, char *err, size_t errlen)
{
	bool seen = false;
	char buf[64];
	if (strlen(opts) >= sizeof(buf))
		return fail(err, errlen, "unknown volume option '%s' (known: ro, rw)", opts);
	strcpy(buf, opts);
	for (char *save = NULL, *o = strtok_r(buf, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		if (strcmp(o, "ro") != 0 && strcmp(o, "rw") != 0)
			return fail(err, errlen, "unknown volume option '%s' (known: ro, rw)", o);
		if (seen)
			return fail(err, errlen, "repeated volume option '%s' (give one of ro, rw)", o);
		seen = true;
		v->readonly = strcmp(o, "ro") == 0;
	}
	if (!seen || opts[0] == ',' || opts[strlen(opts) - 1] == ',' || strstr(opts, ",,"))
		return fail(err, errlen, "empty volume option in '%s'", opts);
	return 0;
}

static int parse_short(const char *spec, struct volspec *v, char *err, size_t errlen)
{
	char buf[VOLSPEC_MAX_LEN];
	char *f[4];
	int n = 0;

	snprintf(buf, sizeof(buf), "%s", spec);
	for (char *p = buf;;) {
		if (n == 4)
			return fail(err, errlen, "too many ':' fields (at most NAME:/guest:OPTIONS)");
		f[n++] = p;
		char *c = strchr(p, ':');
		if (!c)
			break;
		*c = '\0';
		p = c + 1;
	}
	if (n > 3)
		return fail(err, errlen, "too many ':' fields (at most NAME:/guest:OPTIONS)");
	for (int i = 0; i < n; i++)
		if (!*f[i])
			return fail(err, errlen, "empty field in volume spec");

	const char *guest;
	if (n == 1) {
		guest = f[0];
	} else if (n == 2 && (strcmp(f[1], "ro") == 0 || strcmp(f[1], "rw") == 0 || strchr(f[1], ',') ||
			      (f[0][0] == '/' && f[1][0] != '/'))) {
		/* /guest:ro — but a host path before it is still a bind mount */
		if (f[0][0] != '/')
			return fail(err, errlen, "guest path '%s' must be absolute", f[0]);
		guest = f[0];
		if (short_options(f[1], v, err, errlen) < 0)
			return -1;
	} else {
		if (set_name(f[0], v, err, errlen) < 0)
			return -1;
		guest = f[1];
		if (n == 3 && short_options(f[2], v, err, errlen) < 0)
			return -1;
	}
	return volspec_guest_path(guest, v->target, sizeof(v->target), err, errlen);
}

static bool parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "true") || !strcmp(s, "1"))
		*out = true;
	else if (!strcmp(s, "false") || !strcmp(s, "0"))
		*out = false;
	else
		return false;
	return true;
}

static int parse_long(const char *spec, struct volspec *v, char *err, size_t errlen)
{
	enum { K_TYPE, K_SRC, K_DST, K_RO, K_SUB, K_N };
	static const struct {
		const char *key;
		int id;
	} keys[] = {
		{ "type", K_TYPE },   { "src", K_SRC },	   { "source", K_SRC },
		{ "dst", K_DST },     { "target", K_DST }, { "destination", K_DST },
		{ "readonly", K_RO }, { "ro", K_RO },	   { "volume-subpath", K_SUB },
	};
	const char *val[K_N] = { 0 };
	char buf[VOLSPEC_MAX_LEN];

	snprintf(buf, sizeof(buf), "%s", spec);
	for (char *p = buf; p;) {
		char *comma = strchr(p, ',');
		if (comma)
			*comma = '\0';
		if (!*p)
			return fail(err, errlen, "empty field in volume spec");
		char *eq = strchr(p, '=');
		if (eq)
			*eq = '\0';
		int id = -1;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (!strcmp(keys[i].key, p))
				id = keys[i].id;
		if (id < 0)
			return fail(err, errlen,
				    "unknown volume option '%s' (known: type, src, dst, readonly, volume-subpath)", p);
		if (val[id])
			return fail(err, errlen, "repeated volume option '%s'", p);
		if (!eq && id != K_RO)
			return fail(err, errlen, "volume option '%s' needs a value", p);
		val[id] = eq ? eq + 1 : "true";
		if (eq && !*val[id])
			return fail(err, errlen, "empty value for volume option '%s'", p);
		p = comma ? comma + 1 : NULL;
	}
	if (val[K_TYPE] && !strcmp(val[K_TYPE], "bind"))
		return fail(err, errlen,
			    "type=bind mounts a host path: host bind mounts are not supported; " MANAGED_FORMS);
	if (val[K_TYPE] && strcmp(val[K_TYPE], "volume") != 0)
		return fail(err, errlen, "unsupported mount type '%s' (only type=volume)", val[K_TYPE]);
	if (!val[K_DST])
		return fail(err, errlen, "missing dst= (the guest path)");
	if (val[K_RO] && !parse_bool(val[K_RO], &v->readonly))
		return fail(err, errlen, "readonly must be true or false, not '%s'", val[K_RO]);
	if (val[K_SRC] && set_name(val[K_SRC], v, err, errlen) < 0)
		return -1;
	if (val[K_SUB]) {
		const char *s = val[K_SUB];
		if (!val[K_SRC])
			return fail(err, errlen, "volume-subpath needs a named volume (src=NAME)");
		if (volspec_subpath_check(s, err, errlen) < 0)
			return -1;
		snprintf(v->subpath, sizeof(v->subpath), "%s", s);
	}
	return volspec_guest_path(val[K_DST], v->target, sizeof(v->target), err, errlen);
}

int volspec_subpath_check(const char *s, char *err, size_t errlen)
{
	if (s[0] == '/')
		return fail(err, errlen, "volume-subpath '%s' must be relative to the volume", s);
	if (strlen(s) >= VOLSPEC_MAX_LEN)
		return fail(err, errlen, "volume-subpath is too long");
	for (const char *c = s; *c;) {
		const char *e = strchrnul(c, '/');
		size_t n = (size_t)(e - c);
		if (n == 2 && c[0] == '.' && c[1] == '.')
			return fail(err, errlen, "volume-subpath '%s' must not contain '..'", s);
		if (n == 0 || (n == 1 && c[0] == '.'))
			return fail(err, errlen, "volume-subpath '%s' has an empty or '.' component", s);
		c = *e ? e + 1 : e;
		if (*e && !*c)
			return fail(err, errlen, "volume-subpath '%s' has an empty or '.' component", s);
	}
	if (!*s)
		return fail(err, errlen, "volume-subpath is empty");
	return 0;
}

int volspec_parse(const char *spec, struct volspec *v, char *err, size_t errlen)
{
	size_t len = strlen(spec);

	memset(v, 0, sizeof(*v));
	v->kind = VOL_ANONYMOUS;
	if (len == 0)
		return fail(err, errlen, "empty volume spec");
	if (len >= VOLSPEC_MAX_LEN)
		return fail(err, errlen, "volume spec longer than %d bytes", VOLSPEC_MAX_LEN - 1);
	/* it is echoed into JSON, which must be valid UTF-8 */
	if (!utf8_valid(spec, len))
		return fail(err, errlen, "volume spec is not valid UTF-8");
	/* long syntax: key=value pairs; a short spec never has '=' before its first ':' or ',' */
	const char *eq = strchr(spec, '=');
	if (spec[0] != '/' && eq && eq < strchrnul(spec, ':') && eq < strchrnul(spec, ','))
		return parse_long(spec, v, err, errlen);
	return parse_short(spec, v, err, errlen);
}
