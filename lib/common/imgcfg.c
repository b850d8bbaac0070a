/* SPDX-License-Identifier: MIT */
#include "imgcfg.h"
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

void imgcfg_free(struct imgcfg *c)
{
	strv_free(c->entrypoint);
	strv_free(c->cmd);
	strv_free(c->env);
	strv_free(c->ports);
	free(c->workdir);
	free(c->user);
	memset(c, 0, sizeof(*c));
}

/* a string from the image: bounded, valid UTF-8, no NUL inside */
static int str_ok(struct json_object *s, const char *what, char *err, size_t errlen)
{
	if (!json_object_is_type(s, json_type_string))
		return err_invalid(err, errlen, "%s is not a string", what);
	size_t n = (size_t)json_object_get_string_len(s);
	const char *p = json_object_get_string(s);
	if (n > IMGCFG_MAX_STR)
		return err_invalid(err, errlen, "%s is longer than %u bytes", what, IMGCFG_MAX_STR);
	if (memchr(p, 0, n))
		return err_invalid(err, errlen, "%s holds a NUL byte", what);
	if (!utf8_valid(p, n))
		return err_invalid(err, errlen, "%s is not valid UTF-8", what);
	return 0;
}

/* a list of strings (null or absent: none) into a NULL-terminated vector */
static int strv_from(struct json_object *a, const char *what, char ***out, size_t *n, char *err, size_t errlen)
{
	*out = NULL;
	*n = 0;
	if (!a || json_object_is_type(a, json_type_null))
		return 0;
	if (!json_object_is_type(a, json_type_array))
		return err_invalid(err, errlen, "%s is not a list", what);
	size_t len = json_object_array_length(a);
	if (len > IMGCFG_MAX_LIST)
		return err_invalid(err, errlen, "%s has more than %u entries", what, IMGCFG_MAX_LIST);
	char **v = calloc(len + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		struct json_object *s = json_object_array_get_idx(a, i);
		int r = str_ok(s, what, err, errlen);
		if (r < 0) {
			strv_free(v);
			return r;
		}
		if (!(v[i] = strdup(json_object_get_string(s)))) {
			strv_free(v);
			return -ENOMEM;
		}
	}
	*out = v;
	*n = len;
	return 0;
}

static bool env_key_ok(const char *e)
{
	const char *eq = strchr(e, '=');
	return eq && eq != e && !memchr(e, '\n', (size_t)(eq - e));
}

/* ExposedPorts: {"80/tcp": {}, "53/udp": {}} (a bare "80" means tcp) */
static int ports_from(struct json_object *o, struct imgcfg *c, char *err, size_t errlen)
{
	if (!o || json_object_is_type(o, json_type_null))
		return 0;
	if (!json_object_is_type(o, json_type_object))
		return err_invalid(err, errlen, "ExposedPorts is not an object");
	if ((size_t)json_object_object_length(o) > IMGCFG_MAX_LIST)
		return err_invalid(err, errlen, "ExposedPorts has more than %u entries", IMGCFG_MAX_LIST);
	c->ports = calloc((size_t)json_object_object_length(o) + 1, sizeof(*c->ports));
	if (!c->ports)
		return -ENOMEM;
	json_object_object_foreach(o, key, val)
	{
		(void)val;
		char *end;
		errno = 0;
		unsigned long port = strtoul(key, &end, 10);
		if (!isdigit((unsigned char)key[0]) || errno || port == 0 || port > 65535 ||
		    (*end && strcmp(end, "/tcp") && strcmp(end, "/udp") && strcmp(end, "/sctp")))
			return err_invalid(err, errlen, "ExposedPorts: '%.64s' is not PORT[/tcp|udp|sctp]", key);
		char buf[32];
		snprintf(buf, sizeof(buf), "%lu%s", port, *end ? end : "/tcp");
		if (!(c->ports[c->nports++] = strdup(buf)))
			return -ENOMEM;
	}
	return 0;
}

static struct json_object *key_of(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;
	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* key, when the config has it, must be the string want */
static int expect(struct json_object *root, const char *key, const char *want, char *err, size_t errlen)
{
	struct json_object *v = key_of(root, key);
	int r;
	if (!v)
		return 0;
	if ((r = str_ok(v, key, err, errlen)) < 0)
		return r;
	if (strcmp(json_object_get_string(v), want))
		return err_invalid(err, errlen, "the image is for %s '%.64s', not %s", key, json_object_get_string(v),
				   want);
	return 0;
}

static int parse_config(struct json_object *root, struct imgcfg *c, char *err, size_t errlen)
{
	struct json_object *v, *cfg = NULL;
	int r;
	if (!json_object_is_type(root, json_type_object))
		return err_invalid(err, errlen, "the image config is not a JSON object");
	if ((r = expect(root, "architecture", "amd64", err, errlen)) < 0 ||
	    (r = expect(root, "os", "linux", err, errlen)) < 0)
		return r;
	/* OCI's "config"; Docker's v1 blobs carry the same under "config" too */
	if (!json_object_object_get_ex(root, "config", &cfg) || json_object_is_type(cfg, json_type_null))
		return 0;
	if (!json_object_is_type(cfg, json_type_object))
		return err_invalid(err, errlen, "config is not an object");
	v = key_of(cfg, "Entrypoint");
	if ((r = strv_from(v, "Entrypoint", &c->entrypoint, &c->nentrypoint, err, errlen)) < 0)
		return r;
	v = key_of(cfg, "Cmd");
	if ((r = strv_from(v, "Cmd", &c->cmd, &c->ncmd, err, errlen)) < 0)
		return r;
	v = key_of(cfg, "Env");
	if ((r = strv_from(v, "Env", &c->env, &c->nenv, err, errlen)) < 0)
		return r;
	for (size_t i = 0; i < c->nenv; i++)
		if (!env_key_ok(c->env[i]))
			return err_invalid(err, errlen, "Env entry '%.64s' is not KEY=VALUE", c->env[i]);
	if (json_object_object_get_ex(cfg, "WorkingDir", &v) && !json_object_is_type(v, json_type_null)) {
		if ((r = str_ok(v, "WorkingDir", err, errlen)) < 0)
			return r;
		const char *w = json_object_get_string(v);
		if (*w && w[0] != '/')
			return err_invalid(err, errlen, "WorkingDir '%.64s' is not an absolute path", w);
		if (*w && strlen(w) >= 4096)
			return err_invalid(err, errlen, "WorkingDir is longer than 4095 bytes");
		if (*w && !(c->workdir = strdup(w)))
			return -ENOMEM;
	}
	if (json_object_object_get_ex(cfg, "User", &v) && !json_object_is_type(v, json_type_null)) {
		if ((r = str_ok(v, "User", err, errlen)) < 0)
			return r;
		const char *u = json_object_get_string(v);
		if (strlen(u) > 256)
			return err_invalid(err, errlen, "User is longer than 256 bytes");
		if (*u && !(c->user = strdup(u)))
			return -ENOMEM;
	}
	v = key_of(cfg, "ExposedPorts");
	return ports_from(v, c, err, errlen);
}

int imgcfg_parse(const char *buf, size_t len, struct imgcfg *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	if (len > IMGCFG_MAX_BYTES)
		return err_invalid(err, errlen, "the image config is larger than %u bytes", IMGCFG_MAX_BYTES);
	if (len > INT32_MAX || memchr(buf, 0, len) || !utf8_valid(buf, len))
		return err_invalid(err, errlen, "the image config is not UTF-8 text");
	struct json_tokener *tok = json_tokener_new_ex(IMGCFG_MAX_DEPTH);
	if (!tok)
		return -ENOMEM;
	struct json_object *root = json_tokener_parse_ex(tok, buf, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!root || jerr != json_tokener_success) {
		json_object_put(root);
		return err_invalid(err, errlen, "the image config is not valid JSON (%s)",
				   jerr == json_tokener_success ? "incomplete" : json_tokener_error_desc(jerr));
	}
	for (size_t i = used; i < len; i++)
		if (!isspace((unsigned char)buf[i])) {
			json_object_put(root);
			return err_invalid(err, errlen, "the image config has bytes after its JSON object");
		}
	int r = parse_config(root, c, err, errlen);
	json_object_put(root);
	if (r < 0)
		imgcfg_free(c);
	return r;
}

/* ---- /etc/passwd and /etc/group ------------------------------------------------------ */

/* a decimal id, 0 to UINT32_MAX - 1 (the last is "no id") */
static bool parse_id(const char *s, size_t n, unsigned *out)
{
	if (n == 0 || n > 10)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v >= UINT32_MAX)
		return false;
	*out = (unsigned)v;
	return true;
}

/* split one line into at most max fields at ':'; the count */
static size_t fields(const char *line, size_t n, const char **f, size_t *fl, size_t max)
{
	size_t k = 0, start = 0;
	for (size_t i = 0; i <= n && k < max; i++) {
		if (i == n || line[i] == ':') {
			f[k] = line + start;
			fl[k++] = i - start;
			start = i + 1;
		}
	}
	return k;
}

static bool field_is(const char *f, size_t fl, const char *s)
{
	return strlen(s) == fl && !memcmp(f, s, fl);
}

/* Call fn for each line of buf (no NUL inside, at most IMGCFG_ACCOUNTS_MAX);
 * stops when fn returns true. */
static void each_line(const char *buf, size_t len, bool (*fn)(const char *, size_t, void *), void *ctx)
{
	if (!buf || len > IMGCFG_ACCOUNTS_MAX)
		return;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || buf[i] == '\n') {
			if (i > start && buf[start] != '#' && fn(buf + start, i - start, ctx))
				return;
			start = i + 1;
		}
	}
}

struct pw_find {
	const char *name; /* by name, or */
	unsigned uid;	  /* by uid when name is NULL */
	bool found;
	char pname[256];
	unsigned puid, pgid;
	char home[256];
};

static bool pw_line(const char *line, size_t n, void *ctx)
{
	struct pw_find *q = ctx;
	const char *f[7];
	size_t fl[7];
	unsigned uid, gid;
	if (fields(line, n, f, fl, 7) != 7 || fl[0] == 0 || fl[0] >= sizeof(q->pname) || !parse_id(f[2], fl[2], &uid) ||
	    !parse_id(f[3], fl[3], &gid))
		return false;
	if (q->name ? !field_is(f[0], fl[0], q->name) : uid != q->uid)
		return false;
	q->found = true;
	memcpy(q->pname, f[0], fl[0]);
	q->pname[fl[0]] = 0;
	q->puid = uid;
	q->pgid = gid;
	if (fl[5] < sizeof(q->home) && fl[5] > 0 && f[5][0] == '/' && !memchr(f[5], 0, fl[5])) {
		memcpy(q->home, f[5], fl[5]);
		q->home[fl[5]] = 0;
	} else
		q->home[0] = 0;
	return true;
}

struct gr_find {
	const char *name; /* the group by name (NULL: collect the user's groups) */
	bool found;
	unsigned gid;
	const char *member; /* collect: groups listing this member */
	unsigned primary;
	struct user_ids *ids;
};

static bool gr_line(const char *line, size_t n, void *ctx)
{
	struct gr_find *q = ctx;
	const char *f[4];
	size_t fl[4];
	unsigned gid;
	if (fields(line, n, f, fl, 4) != 4 || fl[0] == 0 || !parse_id(f[2], fl[2], &gid))
		return false;
	if (q->name) {
		if (!field_is(f[0], fl[0], q->name))
			return false;
		q->found = true;
		q->gid = gid;
		return true;
	}
	/* the member list: comma-separated names */
	const char *m = f[3];
	size_t rest = fl[3];
	while (rest > 0) {
		const char *comma = memchr(m, ',', rest);
		size_t ml = comma ? (size_t)(comma - m) : rest;
		if (field_is(m, ml, q->member)) {
			bool dup = gid == q->primary;
			for (size_t i = 0; i < q->ids->nextra && !dup; i++)
				dup = q->ids->extra[i] == gid;
			if (!dup && q->ids->nextra < IMGCFG_GROUPS_MAX)
				q->ids->extra[q->ids->nextra++] = gid;
			break;
		}
		if (!comma)
			break;
		rest -= ml + 1;
		m = comma + 1;
	}
	return false;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] == ':' || s[i] == '\n' || s[i] == ',' || (unsigned char)s[i] < 0x20)
			return false;
	return true;
}

int userspec_resolve(const char *spec, const char *passwd, size_t plen, const char *group, size_t glen,
		     struct user_ids *out, char *err, size_t errlen)
{
	char user[256], grp[256];
	const char *colon = strchr(spec, ':');
	size_t ul = colon ? (size_t)(colon - spec) : strlen(spec);
	memset(out, 0, sizeof(*out));
	if (ul == 0 || ul >= sizeof(user) || (colon && (!colon[1] || strlen(colon + 1) >= sizeof(grp))))
		return err_invalid(err, errlen, "user '%.64s' is not USER[:GROUP]", spec);
	memcpy(user, spec, ul);
	user[ul] = 0;
	if (colon)
		strcpy(grp, colon + 1);
	if ((passwd && memchr(passwd, 0, plen)) || (group && memchr(group, 0, glen)))
		return err_invalid(err, errlen, "the image's account files hold NUL bytes");
	if (plen > IMGCFG_ACCOUNTS_MAX || glen > IMGCFG_ACCOUNTS_MAX)
		return err_invalid(err, errlen, "the image's account files are larger than %u bytes",
				   IMGCFG_ACCOUNTS_MAX);

	struct pw_find pw = { 0 };
	unsigned id;
	if (parse_id(user, ul, &id)) {
		pw.uid = id;
		each_line(passwd, plen, pw_line, &pw);
		out->uid = id;
		out->gid = pw.found ? pw.pgid : 0;
	} else {
		if (!name_ok(user))
			return err_invalid(err, errlen, "user '%.64s' is not a valid name", user);
		pw.name = user;
		each_line(passwd, plen, pw_line, &pw);
		if (!pw.found)
			return err_invalid(err, errlen, "no user '%.64s' in the image's /etc/passwd", user);
		out->uid = pw.puid;
		out->gid = pw.pgid;
	}
	if (pw.found)
		snprintf(out->home, sizeof(out->home), "%s", pw.home);
	if (colon) {
		if (parse_id(grp, strlen(grp), &id))
			out->gid = id;
		else {
			if (!name_ok(grp))
				return err_invalid(err, errlen, "group '%.64s' is not a valid name", grp);
			struct gr_find g = { .name = grp };
			each_line(group, glen, gr_line, &g);
			if (!g.found)
				return err_invalid(err, errlen, "no group '%.64s' in the image's /etc/group", grp);
			out->gid = g.gid;
		}
	}
	if (pw.found) {
		struct gr_find g = { .member = pw.pname, .primary = out->gid, .ids = out };
		each_line(group, glen, gr_line, &g);
	}
	return 0;
}
