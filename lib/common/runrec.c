/* SPDX-License-Identifier: MIT */
#include "runrec.h"
#include "common.h"
#include "spawn.h"
#include "vol.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

static const char *const list_key[] = {
	[RUN_OWNERS] = "owners",       [RUN_PROCESSES] = "processes", [RUN_JAILS] = "jails",
	[RUN_ANONYMOUS] = "anonymous", [RUN_SOCKETS] = "sockets",     [RUN_CGROUPS] = "cgroups",
};

int run_id_new(char out[RUN_ID_LEN + 1])
{
	int r = ulid_new(out);
	if (r < 0)
		return r;
	for (int i = 0; out[i]; i++)
		if (out[i] >= 'A' && out[i] <= 'Z')
			out[i] = (char)(out[i] - 'A' + 'a');
	return 0;
}

bool run_id_valid(const char *id)
{
	if (!id || strlen(id) != RUN_ID_LEN)
		return false;
	for (const char *c = id; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z')))
			return false;
	return true;
}

bool run_name_valid(const char *n)
{
	size_t len = n ? strlen(n) : 0;
	if (len == 0 || len > 128 || !strcmp(n, ".") || !strcmp(n, ".."))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') ||
		      n[i] == '_' || n[i] == '-' || n[i] == '.'))
			return false;
	return true;
}

/* <home>/run, made when missing (0700) */
static int open_run_root(int homefd, bool create)
{
	if (create && mkdirat(homefd, RUN_ROOT, 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(homefd, RUN_ROOT, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int write_record(int dirfd, struct json_object *o)
{
	const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!t)
		return -ENOMEM;
	return write_file_atomic(dirfd, RUN_RECORD, t, strlen(t), 0600);
}

static struct json_object *new_proc(const char *what, pid_t pid)
{
	struct json_object *p = json_object_new_object();
	if (!p)
		return NULL;
	if (what)
		json_object_object_add(p, "what", json_object_new_string(what));
	json_object_object_add(p, "pid", json_object_new_int64(pid));
	json_object_object_add(p, "start", json_object_new_uint64(proc_start_time(pid)));
	return p;
}

static int find_at(int root, int homefd, const char *name, char id[RUN_ID_LEN + 1]);

int run_create(int homefd, const char *id, pid_t owner)
{
	return run_create_named(homefd, id, owner, NULL);
}

int run_create_named(int homefd, const char *id, pid_t owner, const char *name)
{
	char tmp[64];
	int r;
	if (!run_id_valid(id) || (name && !run_name_valid(name)))
		return -EINVAL;
	cleanup_close int root = open_run_root(homefd, true);
	if (root < 0)
		return root;
	/* a name is unique: checked and taken under the lock of the run root */
	if (name) {
		while (flock(root, LOCK_EX) < 0)
			if (errno != EINTR)
				return -errno;
		char other[RUN_ID_LEN + 1];
		if ((r = find_at(root, homefd, name, other)) != -ENOENT)
			return r == 0 ? -EEXIST : r;
	}
	snprintf(tmp, sizeof(tmp), ".new-%s", id);
	if (mkdirat(root, tmp, 0700) < 0)
		return -errno;
	cleanup_close int dfd = openat(root, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	cleanup_json struct json_object *o = json_object_new_object();
	if (dfd < 0 || !o) {
		r = dfd < 0 ? -errno : -ENOMEM;
		unlinkat(root, tmp, AT_REMOVEDIR);
		return r;
	}
	json_object_object_add(o, "version", json_object_new_int(RUN_RECORD_VERSION));
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "created", json_object_new_int64((int64_t)time(NULL)));
	if (name)
		json_object_object_add(o, "name", json_object_new_string(name));
	for (size_t i = 0; i < ARRAY_SIZE(list_key); i++)
		json_object_object_add(o, list_key[i], json_object_new_array());
	if (owner > 0) {
		struct json_object *owners;
		json_object_object_get_ex(o, list_key[RUN_OWNERS], &owners);
		json_object_array_add(owners, new_proc(NULL, owner));
	}
	/* root's, whoever's umask: fchown/fchmod on the descriptor */
	if (fchmod(dfd, 0700) < 0)
		r = -errno;
	else if ((r = write_record(dfd, o)) == 0 && renameat(root, tmp, root, id) < 0)
		r = -errno;
	if (r < 0) {
		rm_tree_at(root, tmp);
		return r;
	}
	return 0;
}

static int open_run_dir(int homefd, const char *id)
{
	if (!run_id_valid(id))
		return -EINVAL;
	cleanup_close int root = open_run_root(homefd, false);
	if (root < 0)
		return root;
	int fd = openat(root, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static struct json_object *load_at(int dfd, int *r)
{
	cleanup_close int fd = openat(dfd, RUN_RECORD, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		*r = -errno;
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > RUN_RECORD_MAX) {
		*r = -EINVAL;
		return NULL;
	}
	cleanup_free char *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		*r = -ENOMEM;
		return NULL;
	}
	ssize_t n = read(fd, buf, (size_t)st.st_size);
	if (n < 0) {
		*r = -errno;
		return NULL;
	}
	struct json_tokener *tok = json_tokener_new_ex(6);
	if (!tok) {
		*r = -ENOMEM;
		return NULL;
	}
	struct json_object *o = json_tokener_parse_ex(tok, buf, (int)n);
	bool ok = o && json_tokener_get_error(tok) == json_tokener_success && json_object_is_type(o, json_type_object);
	json_tokener_free(tok);
	struct json_object *v;
	if (!ok || !json_object_object_get_ex(o, "version", &v) || json_object_get_int(v) != RUN_RECORD_VERSION) {
		json_object_put(o);
		*r = -EINVAL;
		return NULL;
	}
	*r = 0;
	return o;
}

struct json_object *run_load(int homefd, const char *id, int *r)
{
	cleanup_close int dfd = open_run_dir(homefd, id);
	if (dfd < 0) {
		*r = dfd;
		return NULL;
	}
	return load_at(dfd, r);
}

/* a listing of the directory fd names (fd itself stays open), or NULL and errno */
static DIR *dir_stream(int fd)
{
	int copy = dup(fd);
	DIR *d = copy < 0 ? NULL : fdopendir(copy);
	if (!d && copy >= 0) {
		int e = errno;
		close(copy);
		errno = e;
	}
	return d;
}

static int find_at(int root, int homefd, const char *name, char id[RUN_ID_LEN + 1])
{
	DIR *d = dir_stream(root);
	if (!d)
		return -errno;
	struct dirent *e;
	int found = -ENOENT;
	while (found == -ENOENT && (e = readdir(d))) {
		if (!run_id_valid(e->d_name))
			continue;
		int r;
		cleanup_json struct json_object *o = run_load(homefd, e->d_name, &r);
		struct json_object *v;
		if (o && json_object_object_get_ex(o, "name", &v) && !strcmp(json_object_get_string(v), name)) {
			memcpy(id, e->d_name, RUN_ID_LEN); /* run_id_valid: exactly that long */
			id[RUN_ID_LEN] = 0;
			found = 0;
		}
	}
	closedir(d);
	return found;
}

int run_find(int homefd, const char *name, char id[RUN_ID_LEN + 1])
{
	if (!run_name_valid(name))
		return -EINVAL;
	cleanup_close int root = open_run_root(homefd, false);
	if (root < 0)
		return root;
	return find_at(root, homefd, name, id);
}

int run_stop(int homefd, const char *id, const char *how, int status)
{
	cleanup_close int dfd = open_run_dir(homefd, id);
	int r;
	if (dfd < 0)
		return dfd;
	while (flock(dfd, LOCK_EX) < 0)
		if (errno != EINTR)
			return -errno;
	cleanup_json struct json_object *o = load_at(dfd, &r);
	if (!o)
		return r;
	struct json_object *st = json_object_new_object();
	json_object_object_add(st, "at", json_object_new_int64((int64_t)time(NULL)));
	json_object_object_add(st, "how", json_object_new_string(how));
	if (status >= 0)
		json_object_object_add(st, "status", json_object_new_int(status));
	json_object_object_add(o, "stopped", st);
	return write_record(dfd, o);
}

/* read-modify-write the record under an exclusive lock on its directory */
static int update(int homefd, const char *id, enum run_list list, struct json_object *item)
{
	cleanup_json struct json_object *it = item;
	cleanup_close int dfd = open_run_dir(homefd, id);
	int r;
	if (!item)
		return -ENOMEM;
	if (dfd < 0)
		return dfd;
	while (flock(dfd, LOCK_EX) < 0)
		if (errno != EINTR)
			return -errno;
	cleanup_json struct json_object *o = load_at(dfd, &r);
	struct json_object *arr;
	if (!o)
		return r;
	if (!json_object_object_get_ex(o, list_key[list], &arr) || !json_object_is_type(arr, json_type_array))
		return -EINVAL;
	if (json_object_array_length(arr) >= RUN_LIST_MAX)
		return -E2BIG;
	json_object_array_add(arr, json_object_get(it));
	return write_record(dfd, o);
}

int run_add(int homefd, const char *id, enum run_list list, const char *value)
{
	if (list == RUN_OWNERS || list == RUN_PROCESSES || !run_name_valid(value))
		return -EINVAL;
	return update(homefd, id, list, json_object_new_string(value));
}

int run_add_process(int homefd, const char *id, enum run_list list, const char *what, pid_t pid)
{
	if ((list != RUN_OWNERS && list != RUN_PROCESSES) || pid <= 0)
		return -EINVAL;
	return update(homefd, id, list, new_proc(what, pid));
}

static bool proc_entry(struct json_object *p, pid_t *pid, unsigned long long *start)
{
	struct json_object *a, *b;
	if (!json_object_object_get_ex(p, "pid", &a) || !json_object_object_get_ex(p, "start", &b))
		return false;
	*pid = (pid_t)json_object_get_int64(a);
	*start = (unsigned long long)json_object_get_uint64(b);
	return *pid > 0;
}

static bool owned(struct json_object *o)
{
	struct json_object *arr;
	if (!json_object_object_get_ex(o, list_key[RUN_OWNERS], &arr))
		return false;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		pid_t pid;
		unsigned long long start;
		if (proc_entry(json_object_array_get_idx(arr, i), &pid, &start) && proc_is(pid, start))
			return true;
	}
	return false;
}

bool run_owned(int homefd, const char *id)
{
	int r;
	cleanup_json struct json_object *o = run_load(homefd, id, &r);
	return o && owned(o);
}

static void note(int *first, int r, char *err, size_t errlen, const char *what, const char *name)
{
	if (r >= 0 || *first < 0)
		return;
	*first = r;
	snprintf(err, errlen, "cannot remove %s '%s': %s", what, name, strerror(-r));
}

/* SIGKILL each recorded process that is still the one recorded (through a
 * pidfd: the pid cannot be reused between the check and the kill), and
 * wait (at most about two seconds) until they are gone. Returns whether
 * all are. */
static bool kill_processes(struct json_object *arr)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	for (size_t i = 0; i < n; i++) {
		pid_t pid;
		unsigned long long start;
		if (!proc_entry(json_object_array_get_idx(arr, i), &pid, &start))
			continue;
		int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (pfd < 0)
			continue; /* gone */
		if (proc_is(pid, start))
			syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
		close(pfd);
	}
	for (int round = 0; round < 200; round++) {
		bool left = false;
		for (size_t i = 0; i < n; i++) {
			pid_t pid;
			unsigned long long start;
			if (!proc_entry(json_object_array_get_idx(arr, i), &pid, &start))
				continue;
			waitpid(pid, NULL, WNOHANG); /* ours: reap it */
			left |= proc_is(pid, start);
		}
		if (!left)
			return true;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return false;
}

/* remove name beneath homefd/<a>[/<b>] */
static int rm_beneath(int homefd, const char *a, const char *b, const char *name)
{
	if (!run_name_valid(name))
		return -EINVAL;
	cleanup_close int fa = openat(homefd, a, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fa < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!b)
		return rm_tree_at(fa, name);
	cleanup_close int fb = openat(fa, b, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fb < 0)
		return errno == ENOENT ? 0 : -errno;
	int r = rm_tree_at(fb, name);
	return r;
}

int run_cleanup(int homefd, const char *id, char *err, size_t errlen)
{
	return run_cleanup_ex(homefd, id, false, err, errlen);
}

int run_cleanup_ex(int homefd, const char *id, bool keep_dir, char *err, size_t errlen)
{
	int first = 0, r;
	struct json_object *arr;

	if (!run_id_valid(id))
		return -EINVAL;
	cleanup_json struct json_object *o = run_load(homefd, id, &r);
	if (!o && r == -ENOENT) {
		/* no record: nothing was created (or it is all gone but the directory) */
		cleanup_close int root = open_run_root(homefd, false);
		r = root < 0 ? (root == -ENOENT ? 0 : root) : rm_tree_at(root, id);
		note(&first, r, err, errlen, "run directory", id);
		return first;
	}
	if (!o) {
		note(&first, r, err, errlen, "run (unreadable record)", id);
		return first;
	}
	/* nothing is deleted while a process of the run lives: it could be
	 * changing what would be removed */
	if (json_object_object_get_ex(o, list_key[RUN_PROCESSES], &arr) && !kill_processes(arr)) {
		snprintf(err, errlen, "a process of run %s survives SIGKILL; removing nothing", id);
		return -EBUSY;
	}
	if (json_object_object_get_ex(o, list_key[RUN_JAILS], &arr) && json_object_array_length(arr)) {
		char home[PATH_MAX], fdp[64], base[PATH_MAX + 8], why[1024] = "";
		snprintf(fdp, sizeof(fdp), "/proc/self/fd/%d", homefd);
		ssize_t n = readlink(fdp, home, sizeof(home) - 1);
		cleanup_close int jfd = openat(homefd, JAIL_ROOT, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (n > 0 && jfd >= 0) {
			home[n] = 0;
			snprintf(base, sizeof(base), "%s/" JAIL_ROOT, home);
			for (size_t i = 0; i < json_object_array_length(arr); i++) {
				const char *vmm = json_object_get_string(json_object_array_get_idx(arr, i));
				if (!run_name_valid(vmm))
					continue;
				r = jail_destroy(jfd, base, vmm, id, why, sizeof(why));
				if (r < 0 && first == 0) {
					first = r;
					snprintf(err, errlen, "cannot remove the jail of run %s: %s", id, why);
				}
			}
		} else if (jfd >= 0 || errno != ENOENT)
			note(&first, n <= 0 ? -EIO : -errno, err, errlen, "jail", id);
	}
	static const struct {
		enum run_list list;
		const char *root;
	} vols[] = { { RUN_ANONYMOUS, VOL_ROOT_ANONYMOUS } };
	for (size_t k = 0; k < ARRAY_SIZE(vols); k++) {
		if (!json_object_object_get_ex(o, list_key[vols[k].list], &arr))
			continue;
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			const char *name = json_object_get_string(json_object_array_get_idx(arr, i));
			r = rm_beneath(homefd, VOL_STORE_DIR, vols[k].root, name);
			note(&first, r, err, errlen, "anonymous volume", name ? name : "?");
		}
	}
	if (json_object_object_get_ex(o, list_key[RUN_CGROUPS], &arr))
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			const char *name = json_object_get_string(json_object_array_get_idx(arr, i));
			note(&first, cgroup_remove(name), err, errlen, "cgroup", name ? name : "?");
		}
	if (first == 0 && !keep_dir) {
		cleanup_close int root = open_run_root(homefd, false);
		r = root < 0 ? root : rm_tree_at(root, id);
		note(&first, r, err, errlen, "run directory", id);
	}
	return first;
}

int run_gc(int homefd, char *err, size_t errlen)
{
	cleanup_close int root = open_run_root(homefd, false);
	int removed = 0, first = 0;
	if (root < 0)
		return root == -ENOENT ? 0 : root;
	DIR *d = dir_stream(root);
	if (!d)
		return -errno;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strncmp(e->d_name, ".new-", 5) && run_id_valid(e->d_name + 5)) {
			/* a run that died while being created: nothing but its record was made */
			struct stat st;
			if (fstatat(root, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && time(NULL) - st.st_mtime > 60)
				rm_tree_at(root, e->d_name);
			continue;
		}
		if (!run_id_valid(e->d_name) || run_owned(homefd, e->d_name))
			continue;
		char why[512] = "";
		/* a sandbox (a named run) stays listed until box rm: its resources
		 * go, its record and logs stay, marked stopped */
		int lr;
		cleanup_json struct json_object *o = run_load(homefd, e->d_name, &lr);
		struct json_object *v;
		bool named = o && json_object_object_get_ex(o, "name", &v);
		if (named && json_object_object_get_ex(o, "stopped", &v))
			continue;
		int r = run_cleanup_ex(homefd, e->d_name, named, why, sizeof(why));
		if (r == 0 && named)
			r = run_stop(homefd, e->d_name, "gc", -1);
		if (r < 0 && first == 0) {
			first = r;
			snprintf(err, errlen, "%s", why);
		} else if (r == 0)
			removed++;
	}
	closedir(d);
	return first < 0 ? first : removed;
}
