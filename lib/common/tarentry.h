/* SPDX-License-Identifier: MIT */
/* Judging the members of a tar archive that is to be unpacked into a volume
 * (volume-tar import). Pure: no disk, no logging. The archive is hostile; it
 * decides every name, type and link target. These functions decide what may
 * be created; the tool then creates it beneath held directory descriptors,
 * never through a symlink (the second, independent defence). */
#ifndef BOXKIT_TARENTRY_H
#define BOXKIT_TARENTRY_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* at most this many components in a member's name (and levels walked by an
 * export) */
#define TARENTRY_DEPTH_MAX 128

/* A member's name, cleaned: empty and "." components dropped (a leading
 * "./", "//", a trailing "/"). Refused: an absolute name, a ".." component,
 * a name of PATH_MAX bytes or more, a component longer than NAME_MAX, more
 * than TARENTRY_DEPTH_MAX components. On success out (outlen >= PATH_MAX is
 * always enough) holds the clean relative name, "" for the archive's root
 * ("." or "./"), and *depth its number of components (0 for the root).
 * 0, or -EINVAL with the reason in err (which does not repeat the name). */
int tarentry_name(const char *name, char *out, size_t outlen, unsigned *depth, char *err, size_t errlen);

/* A symlink's target, for a link whose clean name is `name`, unpacked
 * `base_depth` directories below the volume's root. No link out of the
 * volume: refused are an empty target, an absolute one, one of PATH_MAX
 * bytes or more, a ".." after any other component ("a/../b" depends on what
 * "a" is when it is followed: it could be a symlink itself), and more
 * leading ".." than there are directories between the link and the root.
 * With every link so judged, any chain of them resolves inside the volume.
 * 0, or -EINVAL with the reason in err. */
int tarentry_symlink(const char *name, unsigned base_depth, const char *target, char *err, size_t errlen);

/* The kinds of member that may be unpacked. */
enum tarentry_kind {
	TARENTRY_DIR,
	TARENTRY_FILE,
	TARENTRY_SYMLINK,
	TARENTRY_HARDLINK,
};

/* A member's type (the S_IFMT bits of its mode) and whether it is a hard
 * link: the kind to unpack, or -EINVAL for a device node, FIFO, socket or
 * unknown type, with err naming it. */
int tarentry_kind(mode_t type, bool hardlink, char *err, size_t errlen);

/* Permission bits kept from a member's mode: the low 12 bits less setuid and
 * setgid (a file the guest wrote never becomes set-id on the host). */
static inline mode_t tarentry_perm(mode_t mode)
{
	return mode & 07777 & ~(mode_t)06000;
}

/* A name for a message: at most max bytes of s with control characters
 * replaced by '?', an ellipsis when cut. Writes into out (outlen > 4). */
void tarentry_quote(const char *s, char *out, size_t outlen);

#endif
