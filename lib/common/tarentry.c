/* SPDX-License-Identifier: MIT */
#include "tarentry.h"
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int tarentry_name(const char *name, char *out, size_t outlen, unsigned *depth, char *err, size_t errlen)
{
	size_t len = strnlen(name, PATH_MAX), o = 0;
	unsigned n = 0;

	if (len >= PATH_MAX)
		return err_invalid(err, errlen, "the name is %d bytes or longer", PATH_MAX);
	if (name[0] == '/')
		return err_invalid(err, errlen, "an absolute name");
	if (outlen < len + 1)
		return err_invalid(err, errlen, "the name does not fit");
	for (const char *c = name; *c;) {
		const char *e = strchrnul(c, '/');
		size_t cl = (size_t)(e - c);
		if (cl == 2 && c[0] == '.' && c[1] == '.')
			return err_invalid(err, errlen, "a '..' component");
		if (cl > NAME_MAX)
			return err_invalid(err, errlen, "a component longer than %d bytes", NAME_MAX);
		if (cl > 0 && !(cl == 1 && c[0] == '.')) {
			if (++n > TARENTRY_DEPTH_MAX)
				return err_invalid(err, errlen, "more than %d levels deep", TARENTRY_DEPTH_MAX);
			if (o)
				out[o++] = '/';
			memcpy(out + o, c, cl);
			o += cl;
		}
		c = *e ? e + 1 : e;
	}
	out[o] = '\0';
	*depth = n;
	return 0;
}

int tarentry_symlink(const char *name, unsigned base_depth, const char *target, char *err, size_t errlen)
{
	size_t len = strnlen(target, PATH_MAX);
	unsigned dirs = base_depth, ups = 0;
	bool named = false;

	if (len >= PATH_MAX)
		return err_invalid(err, errlen, "its target is %d bytes or longer", PATH_MAX);
	if (!len)
		return err_invalid(err, errlen, "its target is empty");
	if (target[0] == '/')
		return err_invalid(err, errlen, "its target is absolute (no links out of the volume)");
	/* the directories between the link and the volume's root */
	for (const char *c = name; *c; c++)
		dirs += *c == '/';
	for (const char *c = target; *c;) {
		const char *e = strchrnul(c, '/');
		size_t cl = (size_t)(e - c);
		if (cl == 2 && c[0] == '.' && c[1] == '.') {
			if (named)
				return err_invalid(err, errlen,
						   "its target has '..' after a name (no links out of the volume)");
			if (++ups > dirs)
				return err_invalid(err, errlen, "its target leads out of the volume (no links out)");
		} else if (cl > 0 && !(cl == 1 && c[0] == '.')) {
			named = true;
		}
		c = *e ? e + 1 : e;
	}
	return 0;
}

int tarentry_kind(mode_t type, bool hardlink, char *err, size_t errlen)
{
	if (hardlink) {
		/* libarchive gives a hard link the type of what it links to, or none */
		if (type == 0 || type == S_IFREG)
			return TARENTRY_HARDLINK;
		return err_invalid(err, errlen, "a hard link to something other than a regular file");
	}
	switch (type) {
	case S_IFDIR: return TARENTRY_DIR;
	case S_IFREG: return TARENTRY_FILE;
	case S_IFLNK: return TARENTRY_SYMLINK;
	case S_IFCHR: return err_invalid(err, errlen, "a character device");
	case S_IFBLK: return err_invalid(err, errlen, "a block device");
	case S_IFIFO: return err_invalid(err, errlen, "a FIFO");
	case S_IFSOCK: return err_invalid(err, errlen, "a socket");
	default: return err_invalid(err, errlen, "an entry of unknown type");
	}
}

void tarentry_quote(const char *s, char *out, size_t outlen)
{
	size_t n = strlen(s), k = 0;
	bool cut = n > outlen - 1;
	size_t keep = cut ? outlen - 4 : n;
	for (; k < keep; k++) {
		unsigned char ch = (unsigned char)s[k];
		out[k] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	if (cut) {
		memcpy(out + k, "...", 3);
		k += 3;
	}
	out[k] = '\0';
}
