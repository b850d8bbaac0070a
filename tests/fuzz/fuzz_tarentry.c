/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the judge of tar members (lib/common/tarentry.c):
 * input is <base depth byte><name>\0<link target>. Whatever it is, nothing
 * crashes; an accepted name is clean (no "", ".", ".." component, not
 * absolute, within the bounds) and cleaning it again changes nothing; an
 * accepted symlink target, resolved lexically from where the link is,
 * never leaves the volume's root; a refusal always says why. */
#include "tarentry.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_clean(const char *s, unsigned depth)
{
	unsigned n = 0;
	if (strlen(s) >= PATH_MAX)
		abort();
	if (!*s) {
		if (depth != 0)
			abort();
		return;
	}
	for (const char *c = s;;) {
		const char *e = strchrnul(c, '/');
		size_t cl = (size_t)(e - c);
		if (cl == 0 || cl > NAME_MAX || (cl == 1 && c[0] == '.') || (cl == 2 && c[0] == '.' && c[1] == '.'))
			abort();
		n++;
		if (!*e)
			break;
		c = e + 1;
	}
	if (n != depth || n > TARENTRY_DEPTH_MAX)
		abort();
}

/* the reference: resolve target from the link's directory, component by
 * component, as the kernel would if every component were a real directory */
static int stays_inside(const char *name, unsigned base, const char *target)
{
	long d = base;
	for (const char *c = name; *c; c++)
		d += *c == '/';
	if (target[0] == '/')
		return 0;
	for (const char *c = target; *c;) {
		const char *e = strchrnul(c, '/');
		size_t cl = (size_t)(e - c);
		if (cl == 2 && c[0] == '.' && c[1] == '.') {
			if (--d < 0)
				return 0;
		} else if (cl > 0 && !(cl == 1 && c[0] == '.'))
			d++;
		c = *e ? e + 1 : e;
	}
	return 1;
}

/* no ".." after a name: a chain of such links cannot climb through a link */
static int dotdot_only_leading(const char *target)
{
	int named = 0;
	for (const char *c = target; *c;) {
		const char *e = strchrnul(c, '/');
		size_t cl = (size_t)(e - c);
		if (cl == 2 && c[0] == '.' && c[1] == '.') {
			if (named)
				return 0;
		} else if (cl > 0 && !(cl == 1 && c[0] == '.'))
			named = 1;
		c = *e ? e + 1 : e;
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned base = data[0] & 7;
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	s[size] = '\0';
	const char *name = s, *target = s + strlen(s) + 1;
	if (target > s + size - 1)
		target = s + size - 1; /* no separator: an empty target */
	char clean[PATH_MAX], again[PATH_MAX], err[256] = "", q[64];
	unsigned depth = 0, depth2 = 0;

	tarentry_quote(name, q, sizeof(q));
	if (strlen(q) >= sizeof(q))
		abort();
	for (const char *c = q; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			abort();

	if (tarentry_name(name, clean, sizeof(clean), &depth, err, sizeof(err)) == 0) {
		if (name[0] == '/')
			abort();
		check_clean(clean, depth);
		if (tarentry_name(clean, again, sizeof(again), &depth2, err, sizeof(err)) != 0 ||
		    strcmp(clean, again) || depth != depth2)
			abort();
		err[0] = '\0';
		if (clean[0] && tarentry_symlink(clean, base, target, err, sizeof(err)) == 0) {
			if (!target[0] || !stays_inside(clean, base, target) || !dotdot_only_leading(target) ||
			    strlen(target) >= PATH_MAX)
				abort();
		} else if (clean[0] && !err[0])
			abort();
		/* and the converse: a target the reference finds safe and tidy is taken */
		if (clean[0] && target[0] && strlen(target) < PATH_MAX && stays_inside(clean, base, target) &&
		    dotdot_only_leading(target) && tarentry_symlink(clean, base, target, err, sizeof(err)) != 0)
			abort();
	} else if (!err[0]) {
		abort();
	}
	free(s);
	return 0;
}
