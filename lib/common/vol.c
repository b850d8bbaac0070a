/* SPDX-License-Identifier: MIT */
#include "vol.h"
#include "common.h"
#include "guest-abi.h"

#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

bool vol_tag_valid(const char *t, size_t n)
{
	return guest_tag_valid(t, n);
}

bool vol_ulid_valid(const char *s, size_t n)
{
	if (n != 26 || strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789ABCDEFGHJKMNPQRSTVWXYZ", s[i]) || !s[i])
			return false;
	return true;
}

const char *vol_kind_root(enum vol_kind k)
{
	return k == VOL_NAMED ? VOL_ROOT_NAMED : VOL_ROOT_ANONYMOUS;
}

struct json_object *vol_entry_json(const struct vol_entry *e)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "spec", json_object_new_string(e->spec));
	json_object_object_add(o, "kind", json_object_new_string(e->kind == VOL_NAMED ? "named" : "anonymous"));
	json_object_object_add(o, "name", json_object_new_string(e->name));
	json_object_object_add(o, "source", json_object_new_string(e->source));
	json_object_object_add(o, "target", json_object_new_string(e->target));
	json_object_object_add(o, "readonly", json_object_new_boolean(e->readonly));
	json_object_object_add(o, "type", json_object_new_string(e->is_file ? "file" : "directory"));
	if (e->subpath[0])
		json_object_object_add(o, "subpath", json_object_new_string(e->subpath));
	json_object_object_add(o, "tag", json_object_new_string(e->tag));
	return o;
}

/* A string member: 1 on success (copied), 0 when absent, -EINVAL when it is
 * not a string, holds a NUL, or does not fit. */
static int get_str(struct json_object *o, const char *key, char *out, size_t outlen, char *err, size_t errlen)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return err_invalid(err, errlen, "'%s' must be a string", key);
	const char *s = json_object_get_string(v);
	size_t n = (size_t)json_object_get_string_len(v);
	if (strlen(s) != n)
		return err_invalid(err, errlen, "'%s' holds a NUL character", key);
	/* json-c decodes escapes to UTF-8 (a lone surrogate to U+FFFD); check anyway */
	if (!utf8_valid(s, n))
		return err_invalid(err, errlen, "'%s' is not valid UTF-8", key);
	if (n >= outlen)
		return err_invalid(err, errlen, "'%s' is longer than %zu bytes", key, outlen - 1);
	memcpy(out, s, n + 1);
	return 1;
}

int vol_entry_from_json(struct json_object *o, struct vol_entry *e, char *err, size_t errlen)
{
	char kind[16] = "", type[16] = "", target[VOLSPEC_MAX_LEN] = "", why[512];
	struct json_object *ro;
	int r;

	memset(e, 0, sizeof(*e));
	if (!json_object_is_type(o, json_type_object))
		return err_invalid(err, errlen, "not a JSON object");
	if ((r = get_str(o, "kind", kind, sizeof(kind), err, errlen)) <= 0 ||
	    (r = get_str(o, "type", type, sizeof(type), err, errlen)) <= 0 ||
	    (r = get_str(o, "name", e->name, sizeof(e->name), err, errlen)) <= 0 ||
	    (r = get_str(o, "target", target, sizeof(target), err, errlen)) <= 0 ||
	    (r = get_str(o, "tag", e->tag, sizeof(e->tag), err, errlen)) <= 0)
		return r < 0 ? r
			     : err_invalid(err, errlen, "an entry needs string keys kind, name, target, type and tag");
	if ((r = get_str(o, "source", e->source, sizeof(e->source), err, errlen)) < 0 ||
	    (r = get_str(o, "subpath", e->subpath, sizeof(e->subpath), err, errlen)) < 0 ||
	    (r = get_str(o, "spec", e->spec, sizeof(e->spec), err, errlen)) < 0)
		return r;
	if (json_object_object_get_ex(o, "readonly", &ro)) {
		if (!json_object_is_type(ro, json_type_boolean))
			return err_invalid(err, errlen, "readonly must be true or false");
		e->readonly = json_object_get_boolean(ro);
	}
	if (!strcmp(kind, "named"))
		e->kind = VOL_NAMED;
	else if (!strcmp(kind, "anonymous"))
		e->kind = VOL_ANONYMOUS;
	else
		return err_invalid(err, errlen, "kind must be 'named' or 'anonymous', not '%s'", kind);
	if (!strcmp(type, "file"))
		e->is_file = true;
	else if (strcmp(type, "directory"))
		return err_invalid(err, errlen, "type must be 'directory' or 'file', not '%s'", type);
	if (!vol_tag_valid(e->tag, strlen(e->tag)))
		return err_invalid(err, errlen, "tag '%s' must be 1 to %d characters of [A-Za-z0-9_-]", e->tag,
				   VOL_TAG_MAX);
	if (e->kind == VOL_NAMED && !volume_name_valid(e->name))
		return err_invalid(err, errlen, "invalid volume name '%s'", e->name);
	if (e->kind == VOL_ANONYMOUS && !vol_ulid_valid(e->name, strlen(e->name)))
		return err_invalid(err, errlen, "an anonymous volume's name must be a ULID, not '%s'", e->name);
	if (e->subpath[0] && e->kind != VOL_NAMED)
		return err_invalid(err, errlen, "subpath needs a named volume");
	if (e->subpath[0] && volspec_subpath_check(e->subpath, why, sizeof(why)) < 0)
		return err_invalid(err, errlen, "%s", why);
	if (e->is_file && !e->subpath[0])
		return err_invalid(err, errlen, "a file entry needs a subpath naming the file");
	if (volspec_guest_path(target, e->target, sizeof(e->target), why, sizeof(why)) < 0)
		return err_invalid(err, errlen, "target: %s", why);
	return 0;
}

int vol_read(FILE *in, struct vol_entry **out, size_t *n, char *err, size_t errlen)
{
	cleanup_free char *line = malloc(VOL_LINE_MAX + 1);
	cleanup_free struct vol_entry *v = NULL;
	size_t count = 0;
	int lineno = 0;
	ssize_t len;
	char why[600];

	if (!line)
		return -ENOMEM;
	while ((len = read_line_limited(in, line, VOL_LINE_MAX + 1)) != 0) {
		lineno++;
		if (len == -E2BIG)
			return err_invalid(err, errlen, "line %d: longer than %d bytes", lineno, VOL_LINE_MAX);
		if (len < 0)
			return (int)len;
		size_t l = strlen(line);
		if (!l)
			continue;
		if (count == VOL_ENTRIES_MAX)
			return err_invalid(err, errlen, "more than %d entries", VOL_ENTRIES_MAX);
		if (!utf8_valid(line, l))
			return err_invalid(err, errlen, "line %d: not valid UTF-8", lineno);
		struct json_tokener *tok = json_tokener_new_ex(VOL_JSON_DEPTH);
		if (!tok)
			return -ENOMEM;
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
		cleanup_json struct json_object *o = json_tokener_parse_ex(tok, line, (int)l);
		enum json_tokener_error jerr = json_tokener_get_error(tok);
		size_t used = json_tokener_get_parse_end(tok);
		json_tokener_free(tok);
		if (!o || jerr != json_tokener_success || used != l || !json_object_is_type(o, json_type_object))
			return err_invalid(err, errlen, "line %d: not one JSON object: %s", lineno,
					   jerr != json_tokener_success ? json_tokener_error_desc(jerr)
									: "trailing data or not an object");
		struct vol_entry *nv = realloc(v, (count + 1) * sizeof(*v));
		if (!nv)
			return -ENOMEM;
		v = nv;
		if (vol_entry_from_json(o, &v[count], why, sizeof(why)) < 0)
			return err_invalid(err, errlen, "line %d: %s", lineno, why);
		for (size_t j = 0; j < count; j++)
			if (!strcmp(v[j].target, v[count].target) || !strcmp(v[j].tag, v[count].tag))
				return err_invalid(err, errlen, "entries %zu and %zu share a target or a tag", j + 1,
						   count + 1);
		count++;
	}
	*out = steal_ptr(v);
	*n = count;
	return 0;
}

int vol_source_path(const char *home, const struct vol_entry *e, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s/" VOL_STORE_DIR "/%s/%s%s%s", home, vol_kind_root(e->kind), e->name,
			 e->subpath[0] ? "/" : "", e->subpath);
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

int vol_open_root(int volfd, enum vol_kind kind, const char *name)
{
	struct stat st;
	cleanup_close int rootfd = open_beneath_noxdev(volfd, vol_kind_root(kind), O_PATH | O_DIRECTORY, 0);
	if (rootfd < 0)
		return rootfd;
	if (!name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	int fd = openat(rootfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		close(fd);
		return S_ISLNK(st.st_mode) ? -ELOOP : -ENOTDIR;
	}
	return fd;
}

bool vol_sized(int homefd, const struct vol_entry *e)
{
	char img[VOLNAME_MAX + 16];
	struct stat st;
	if (e->kind != VOL_NAMED)
		return false;
	snprintf(img, sizeof(img), "%s.img", e->name);
	cleanup_close int imgs = openat(homefd, VOL_IMAGES_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return imgs >= 0 && fstatat(imgs, img, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

int vol_gate(const char *home, int homefd, int volfd, struct vol_entry *e, int *pinned, char *err, size_t errlen)
{
	char want[PATH_MAX];
	cleanup_close int fd = -1;
	struct stat st;

	if (vol_source_path(home, e, want, sizeof(want)) < 0)
		return err_invalid(err, errlen, "volume source path is too long");
	if (e->source[0] && strcmp(e->source, want))
		return err_invalid(
			err, errlen,
			"volume source '%s' is not the managed %s volume '%s'%s%s (that is '%s'); managed roots: "
			"'%s/" VOL_STORE_DIR "/" VOL_ROOT_ANONYMOUS "' and '%s/" VOL_STORE_DIR "/" VOL_ROOT_NAMED "'",
			e->source, e->kind == VOL_NAMED ? "named" : "anonymous", e->name,
			e->subpath[0] ? " subpath " : "", e->subpath, want, home, home);
	cleanup_close int volroot = vol_open_root(volfd, e->kind, e->name);
	if (volroot < 0)
		fd = volroot;
	else if (vol_sized(homefd, e) && !fd_is_mount_root(volroot))
		return err_invalid(err, errlen,
				   "volume '%s' has a size limit but its filesystem is not mounted; run 'box setup'",
				   e->name);
	else if (e->subpath[0])
		fd = open_beneath_noxdev(volroot, e->subpath, O_PATH | O_NOFOLLOW, 0);
	else
		fd = steal_fd(&volroot);
	if (fd == -ENOENT || fd == -ENOTDIR)
		return err_invalid(err, errlen, "volume source '%s' does not exist", want);
	if (fd == -ELOOP || fd == -EXDEV)
		return err_invalid(
			err, errlen,
			"volume source '%s' goes through a symlink or a mount; it could resolve outside the volume",
			want);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (e->is_file ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))
		return err_invalid(err, errlen, "volume source '%s' is not a %s as its type says", want,
				   e->is_file ? "regular file" : "directory");
	snprintf(e->source, sizeof(e->source), "%s", want);
	*pinned = steal_fd(&fd);
	return 0;
}
