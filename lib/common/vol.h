/* SPDX-License-Identifier: MIT */
/* The volume entry: the one contract between volspec-parse (which writes
 * it), oci-spec and vm-launch (which read it), and the gate (which decides
 * whether a host path may be served to a guest, and pins it).
 *
 * One JSON object per line:
 *   {"spec","kind":"anonymous|named","name","source","target","readonly",
 *    "type":"directory|file","subpath"?,"tag"}
 * Readers ignore keys they do not know. The layout on disk:
 *   <home>/volumes/                 the volume store (a filesystem of its own when root)
 *   <home>/volumes/named/<name>     a named volume
 *   <home>/volumes/anonymous/<ULID> an anonymous volume (lives as long as its run)
 *   <home>/volume-images/<name>.img  a named volume with a size limit: a
 *                                   filesystem image of its own, mounted at
 *                                   named/<name> */
#ifndef BOXKIT_VOL_H
#define BOXKIT_VOL_H
#include "volspec.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>

#define VOL_ENTRIES_MAX 256
#define VOL_LINE_MAX 16384
#define VOL_JSON_DEPTH 4
#define VOL_TAG_MAX 36 /* GUEST_TAG_MAX */
#define VOL_STORE_DIR "volumes"
#define VOL_ROOT_NAMED "named"
#define VOL_ROOT_ANONYMOUS "anonymous"
/* <home>/volume-images/<name>.img: a named volume with a size limit, a
 * filesystem of its own mounted at named/<name>. Off the store, so that no
 * virtiofsd (whose file handles reach the store's filesystem) can reach an
 * image's raw bytes. */
#define VOL_IMAGES_DIR "volume-images"

struct json_object;

struct vol_entry {
	enum vol_kind kind;
	bool is_file;
	bool readonly;
	char name[VOLNAME_MAX + 1]; /* named: the name; anonymous: its ULID */
	char tag[VOL_TAG_MAX + 1];
	char target[VOLSPEC_MAX_LEN];  /* normalised guest path */
	char subpath[VOLSPEC_MAX_LEN]; /* "" when none (named only) */
	char source[PATH_MAX];	       /* the host path, as the gate derives it */
	char spec[VOLSPEC_MAX_LEN];    /* as the user wrote it, for messages; may be "" */
};

/* true for 1 to VOL_TAG_MAX characters of [A-Za-z0-9_-] */
bool vol_tag_valid(const char *tag, size_t len);
/* true for 26 characters of Crockford base32 (an anonymous volume's name) */
bool vol_ulid_valid(const char *s, size_t len);
const char *vol_kind_root(enum vol_kind k);

/* One JSON object for an entry (NULL when out of memory). */
struct json_object *vol_entry_json(const struct vol_entry *e);
/* Fill e from a parsed object, validating every field's syntax (types,
 * lengths, no embedded NUL, the name, tag, subpath and target grammars).
 * Touches no disk. 0, or -EINVAL with the reason in err. */
int vol_entry_from_json(struct json_object *o, struct vol_entry *e, char *err, size_t errlen);
/* Read JSON lines with hard limits (VOL_LINE_MAX a line, depth
 * VOL_JSON_DEPTH, VOL_ENTRIES_MAX entries, valid UTF-8); targets and tags
 * must be unique. *out is calloc'd (caller frees). 0, -EINVAL (refused: err
 * names the line), or -errno. */
int vol_read(FILE *in, struct vol_entry **out, size_t *n, char *err, size_t errlen);

/* "<home>/volumes/<root>/<name>[/<subpath>]": where an entry's source must be. */
int vol_source_path(const char *home, const struct vol_entry *e, char *out, size_t outlen);

/* The gate. e's source must be exactly the path its kind, name and subpath
 * give under home (canonical). The source is opened once, beneath the store
 * (volfd: <home>/volumes), without following a symlink or magic link at any
 * component and without leaving the store's filesystem (or, for a volume
 * with a size limit, its own, which must be mounted), and checked with
 * fstat: a directory, or a regular file for a file entry. On success *pinned
 * is that O_PATH descriptor: from here on the source is used only through it
 * (fchownat/linkat with AT_EMPTY_PATH, open_tree), never by name, so a guest
 * that renames or symlinks inside a shared volume cannot redirect the use.
 * 0, -EINVAL (refused; err says why), or -errno. */
/* The root of a volume, O_PATH: its kind's root opened beneath volfd
 * without leaving the store's filesystem, then the volume's directory
 * without following a symlink; that last component may be a mount (a volume
 * with a size limit). -ELOOP for a symlink, -ENOTDIR, -ENOENT, or -errno. */
int vol_open_root(int volfd, enum vol_kind kind, const char *name);
/* true when the named volume has a size limit (an image in volume-images/) */
bool vol_sized(int homefd, const struct vol_entry *e);
int vol_gate(const char *home, int homefd, int volfd, struct vol_entry *e, int *pinned, char *err, size_t errlen);
#endif
