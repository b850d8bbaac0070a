/* SPDX-License-Identifier: MIT */
/* boxkit shared helpers: cleanup attributes, exit codes, logging, JSON lines,
 * safe paths, random ids. Functions here never log and never exit: they return
 * >= 0 on success or -errno, and name a failing path through an out-parameter. */
#ifndef BOXKIT_COMMON_H
#define BOXKIT_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- exit codes (never change once shipped) ---- */
enum {
	EXIT_OK = 0,
	EXIT_REFUSED = 1,   /* well-formed input that is not allowed or not valid */
	EXIT_USAGE = 2,	    /* bad option, missing argument */
	EXIT_SYSTEM = 3,    /* a syscall failed, a dependency is missing, no space */
	EXIT_LAUNCH = 125,  /* vm-launch: the launcher failed */
	EXIT_NOEXEC = 126,  /* vm-launch: the command cannot be executed */
	EXIT_NOTFOUND = 127 /* vm-launch: the command was not found */
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

/* ---- cleanup helpers ---- */
static inline void freep(void *p)
{
	free(*(void **)p);
}
static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define cleanup_free __attribute__((cleanup(freep)))
#define cleanup_close __attribute__((cleanup(closep)))
#define cleanup_fclose __attribute__((cleanup(fclosep)))

static inline void *steal_ptr_(void **p)
{
	void *r = *p;
	*p = NULL;
	return r;
}
#define steal_ptr(p) steal_ptr_((void **)&(p))
static inline int steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

/* ---- logging (used by programs, never by the library functions) ---- */
enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
void log_init(const char *prog);	/* reads BOXKIT_LOG, BOXKIT_OP_ID */
void log_set_level(enum log_level lvl); /* -v raises to debug */
enum log_level log_get_level(void);
const char *log_prog(void);
void log_msg(enum log_level lvl, const char *fmt, ...) _printf_(2, 3);
/* also hand each line's message (without the prefix) to sink: an OCI
 * runtime's --log file */
void log_set_sink(void (*sink)(enum log_level lvl, const char *msg));
/* From now on, log lines go into a bounded queue (64 KiB) that a thread of
 * their own writes to stderr: a caller that stops reading stderr never
 * blocks the logger; lines that do not fit are dropped. 0 or -errno. */
int log_async(void);
/* Wait at most ms for queued lines to be written. */
void log_flush(int ms);
/* text as it is (lines of it), through the same queue */
void log_text(const char *text);
/* Replace control characters but newline and tab (a guest's bytes shown on
 * a terminal must not drive it) in the first n bytes of s, in place. */
void sanitize_text(char *s, size_t n);
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
/* An error line for a failed syscall; adds the ENOSPC hint line when err is
 * ENOSPC. Returns -err (never 0) so callers can `return log_sys(...)`: it
 * never decides a tool's exit status; tool_exit() in main does. */
int log_sys(int err, const char *fmt, ...) _printf_(2, 3);
/* The one place a tool's result becomes its exit status: a status (>= 0)
 * stays, a negative errno (a system failure, logged where it happened) is
 * EXIT_SYSTEM. vm-launch maps every failure of its own to EXIT_LAUNCH. */
static inline int tool_exit(int r)
{
	return r < 0 ? EXIT_SYSTEM : r;
}
/* The one-line hint printed by every tool that fails with ENOSPC. */
void enospc_hint(void);
bool is_enospc(int err);

/* ---- home directory ---- */
/* Resolve the boxkit home: explicit, else $BOXKIT_HOME, else
 * $XDG_DATA_HOME/boxkit, else $HOME/.local/share/boxkit. Caller frees. */
int boxkit_home(const char *explicit_home, char **out);
/* The same, canonical: absolute, symlinks in it resolved, no "//" or trailing
 * slash (realpath). With create, a missing home is made first (0700); without
 * it a missing home is -ENOENT. Every tool canonicalises its home once, at
 * entry, and uses only that spelling (mount tables and /proc show canonical
 * paths). Caller frees. */
int boxkit_home_canon(const char *explicit_home, bool create, char **out);
/* mkdir -p with mode 0700 for each created component; never follows a
 * symlink for the last component. Returns 0 or -errno, *failed names the
 * path that failed. */
int mkdir_p_0700(const char *path, char **failed);

/* ---- safe path resolution ---- */
/* Open `rel` beneath dirfd without crossing symlinks, magic links or "..":
 * openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS), with a
 * component-by-component O_PATH|O_NOFOLLOW fallback where openat2 is missing.
 * flags are open(2) flags (O_CLOEXEC is always added). Returns fd or -errno. */
int open_beneath(int dirfd, const char *rel, int flags, mode_t mode);
/* The same, and never leaving dirfd's mount (RESOLVE_NO_XDEV). */
int open_beneath_noxdev(int dirfd, const char *rel, int flags, mode_t mode);
/* true when fd is the root of a mount (STATX_ATTR_MOUNT_ROOT) */
bool fd_is_mount_root(int fd);
/* true when fd is the root of a mount of a whole filesystem (not a bind of
 * a part of one, which would bring the rest of that filesystem along) */
bool fd_is_fs_mount(int fd);
/* valid UTF-8 of n bytes, with no NUL */
bool utf8_valid(const char *s, size_t n);
/* A refusal's reason into err (a library function's message for its
 * caller); always -EINVAL. */
int err_invalid(char *err, size_t errlen, const char *fmt, ...) _printf_(3, 4);
/* true when `s` is a relative path with no empty, "." or ".." component */
bool path_is_clean_relative(const char *s);

/* ---- the new mount API (glibc 2.36 has no wrappers for all of it) ---- */
int sys_open_tree(int dfd, const char *path, unsigned flags);
int sys_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags);
struct mount_attr;
int sys_mount_setattr(int dfd, const char *path, unsigned flags, struct mount_attr *a);

/* ---- removing trees someone else built ---- */
/* Remove parent/name and everything beneath it: never follows a symlink,
 * never leaves parent/name's filesystem, never enters a mount root (what is
 * there is left and -EBUSY returned), and holds O(1) descriptors and memory
 * whatever the depth. A missing name is 0. A file or symlink at name is
 * unlinked. 0, -EBUSY, or -errno. */
int rm_tree_at(int parent, const char *name);

/* Remove the jail <base>/<vmm>/<id> (basefd is <base>): detach every mount
 * at or below its root, then remove the tree with rm_tree_at (a mount
 * elsewhere in it is left: -EBUSY). A symlink at <vmm>
 * is refused (-ELOOP). A missing jail is 0. The per-VMM directory goes when
 * empty. 0 or -errno, with what failed in err. */
int jail_destroy(int basefd, const char *base, const char *vmm, const char *id, char *err, size_t errlen);

/* ---- random ids ---- */
int random_bytes(void *buf, size_t n);
/* lower-case hex of n random bytes into out (2n+1 bytes) */
int random_hex(char *out, size_t nbytes);
/* 26-character Crockford base32 ULID (48-bit ms time + 80 random bits) */
int ulid_new(char out[27]);

/* ---- JSON lines ---- */
struct json_object;
/* Print obj as one compact line (no slash escaping) on f. 0 or -errno. */
int jsonl_write(FILE *f, struct json_object *obj);
/* Flush and check stdout at exit (closestream). 0 or -errno. */
int close_stdout(void);
static inline void json_putp(struct json_object **o);
#define cleanup_json __attribute__((cleanup(json_putp)))
/* Read one line with a hard length limit. Returns length, 0 at EOF, -E2BIG
 * when the line is longer than max (the rest of the line is consumed). */
ssize_t read_line_limited(FILE *f, char *buf, size_t max); /* >0 for a line (buf may be empty: a blank line) */

#include <json-c/json.h>
static inline void json_putp(struct json_object **o)
{
	if (*o)
		json_object_put(*o);
}

/* ---- atomic file install ---- */
/* A regular file of at most max bytes, whole, NUL-terminated (*out is
 * malloc'd); -EINVAL when it is not a regular file, -EFBIG when larger. */
int read_small_file(const char *path, size_t max, char **out, size_t *len);
/* Write data to dirfd/name atomically: temp file in the same directory,
 * write, fsync, fchmod(mode), renameat. Unlinks the temp on failure. */
int write_file_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode);

/* ---- processes ---- */
/* The directory this program's binary is in (from /proc/self/exe). */
int self_dir(char *out, size_t outlen);
/* A program name as exec would find it: a name with a '/' as it is, else
 * the first executable DIR/name along $PATH (/usr/bin:/bin when unset).
 * 0 with the path in out, or -errno (-ENOENT when none). */
int path_lookup(const char *name, char *out, size_t outlen);
/* Run path with argv (stdin /dev/null, signals unblocked), capture its stdout
 * (and stderr too when merge_stderr) into out, NUL-terminated, at most
 * outlen-1 bytes (the rest is read and dropped). Returns the exit status,
 * 128+N for signal N, 127 when it could not be executed, or -errno. */
int run_capture(const char *path, char *const argv[], bool merge_stderr, char *out, size_t outlen);
/* In a child about to exec: empty the bounding set except keep_cap (-1 for
 * none), drop supplementary groups, then become uid:gid for good. 0 or -errno. */
int drop_to_user(uid_t uid, gid_t gid, int keep_cap);
/* drop_to_user keeping cap alone, raised as an ambient capability: it
 * survives the exec of a program without file capabilities (so the exec
 * gains nothing, and no_new_privs can be set). 0 or -errno. */
int drop_to_user_ambient(uid_t uid, gid_t gid, int cap);

/* ---- unix sockets beneath a directory, whatever its path length ---- */
/* sun_path holds 107 bytes: a chroot path plus a socket name passes that
 * easily. These bind/connect to dirfd/name through /proc/self/fd/<dirfd>/name,
 * which is short whatever dirfd's path is. name is one component. Return a
 * socket fd (SOCK_STREAM, CLOEXEC; listening for the bind) or -errno. */
int unix_listen_beneath(int dirfd, const char *name, int backlog);
int unix_connect_beneath(int dirfd, const char *name);
/* One sendmsg of len bytes of data, with fd (SCM_RIGHTS) when fd >= 0:
 * 0, or -errno (-EIO for a short send). Allocates nothing (a forked
 * child of a threaded process may call it). */
int send_with_fd(int sock, const void *data, size_t len, int fd);

/* ---- boxkit's cgroups (cgroup.c): <cgroup2 mount>/boxkit/<name> ---- */
#define CGROUP_BOXKIT "boxkit"
/* the cgroup2 mount point, or -ENOENT */
int cgroup2_root(char *out, size_t outlen);
/* make <cgroup2>/boxkit/<name> (one component, run_name_valid): its
 * directory's descriptor (O_RDONLY), or -errno (-EEXIST) */
int cgroup_create(const char *name);
/* remove it (killing what is left in it); 0 when it is gone or never was */
int cgroup_remove(const char *name);

#endif
