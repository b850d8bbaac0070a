/* SPDX-License-Identifier: MIT */
/* A container image's configuration, the one contract between the image
 * store (tools/box/box-image, which keeps each image's config blob, its
 * /etc/passwd and /etc/group) and oci-spec (--image-config, --passwd,
 * --group), which turns it into the OCI runtime config as Docker does:
 * Entrypoint and Cmd, Env, WorkingDir, User (names resolved in the image's
 * own files), ExposedPorts.
 *
 * Everything here comes from the image, which is untrusted input: parsed
 * with hard limits, validated, never touching the disk. */
#ifndef BOXKIT_IMGCFG_H
#define BOXKIT_IMGCFG_H
#include <stdbool.h>
#include <stddef.h>

#define IMGCFG_MAX_BYTES (4u << 20)    /* the config blob (its history can be long) */
#define IMGCFG_MAX_DEPTH 16	       /* JSON nesting */
#define IMGCFG_MAX_LIST 1024	       /* entries of Entrypoint, Cmd, Env, ExposedPorts */
#define IMGCFG_MAX_STR 65536	       /* one string */
#define IMGCFG_ACCOUNTS_MAX (1u << 20) /* /etc/passwd, /etc/group */
#define IMGCFG_GROUPS_MAX 64	       /* supplementary groups */

/* The keys box-image writes next to an image (its directory in the store). */
#define IMAGE_FILE_CONFIG "config.json"
#define IMAGE_FILE_PASSWD "passwd"
#define IMAGE_FILE_GROUP "group"
#define IMAGE_FILE_ROOTFS "rootfs.ext4"

struct imgcfg {
	char **entrypoint; /* NULL-terminated; NULL when the image has none */
	size_t nentrypoint;
	char **cmd;
	size_t ncmd;
	char **env; /* K=V, K non-empty */
	size_t nenv;
	char **ports; /* "80/tcp" */
	size_t nports;
	char *workdir; /* absolute, or NULL */
	char *user;    /* as written, or NULL */
};

/* Parse an OCI (or Docker) image config blob. The architecture must be
 * amd64 and the os linux when they are given. 0, -EINVAL (err says what),
 * or -ENOMEM. c is always safe to imgcfg_free afterwards. */
int imgcfg_parse(const char *buf, size_t len, struct imgcfg *c, char *err, size_t errlen);
void imgcfg_free(struct imgcfg *c);

struct user_ids {
	unsigned uid, gid;
	unsigned extra[IMGCFG_GROUPS_MAX]; /* supplementary groups */
	size_t nextra;
	char home[256]; /* "" when unknown */
};

/* Resolve a user spec USER[:GROUP] (each a name or a number) against an
 * image's /etc/passwd and /etc/group contents (either may be NULL: no such
 * file), as Docker and runc do: a name must exist; a number need not (its
 * group is then 0); the group defaults to the user's; the supplementary
 * groups are those naming the user as a member. 0, or -EINVAL (err says
 * why). */
int userspec_resolve(const char *spec, const char *passwd, size_t plen, const char *group, size_t glen,
		     struct user_ids *out, char *err, size_t errlen);
#endif
