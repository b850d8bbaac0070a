/* SPDX-License-Identifier: MIT */
/* Volumes in the VM: every volume goes through `volspec-parse --check` again
 * (a caller that wrote the JSON by hand still cannot mount a host path), then
 * gets one virtiofsd: the vfsd-cap-install copy, run as the VM's uid with
 * exactly CAP_DAC_READ_SEARCH (from the file capability),
 * --inode-file-handles=mandatory --cache=auto --sandbox=none, and its own
 * seccomp filter. A single file is served from a fresh staging directory of
 * this run holding a hard link to it, so nothing beside it is reachable. */
#include "common.h"
#include "launch.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/capability.h>

/* run TOOL (beside this binary) with args; stdout captured into out */
static int run_tool(const char *tool, char *const argv[], char *out, size_t outlen)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];
	int r = self_dir(dir, sizeof(dir));
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/%s", dir, tool);
	return run_capture(path, argv, false, out, outlen);
}

int shares_prepare(struct vm *vm, const char *home)
{
	static char out[1 << 20];
	char *argv[] = { "volspec-parse", "--home", (char *)home, "--check", (char *)arg.volumes, NULL };
	int r = run_tool("volspec-parse", argv, out, sizeof(out));
	if (r != 0) {
		log_error("the volumes in '%s' did not pass 'volspec-parse --check'; no VM was started", arg.volumes);
		return EXIT_LAUNCH;
	}
	int n = 0;
	for (char *c = out; *c; c++)
		n += *c == '\n';
	vm->vols = calloc((size_t)(n ? n : 1), sizeof(*vm->vols));
	if (!vm->vols)
		return log_sys(ENOMEM, "out of memory"), EXIT_LAUNCH;
	char *save = NULL;
	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		cleanup_json struct json_object *o = json_tokener_parse(line);
		struct json_object *v;
		struct volume *vol = &vm->vols[vm->nvols];
		if (!o)
			continue;
		if (json_object_object_get_ex(o, "tag", &v))
			snprintf(vol->tag, sizeof(vol->tag), "%s", json_object_get_string(v));
		if (json_object_object_get_ex(o, "source", &v))
			snprintf(vol->source, sizeof(vol->source), "%s", json_object_get_string(v));
		if (json_object_object_get_ex(o, "type", &v))
			vol->is_file = !strcmp(json_object_get_string(v), "file");
		if (json_object_object_get_ex(o, "readonly", &v))
			vol->readonly = json_object_get_boolean(v);
		const char *base = strrchr(vol->source, '/');
		snprintf(vol->file_name, sizeof(vol->file_name), "%.255s", base ? base + 1 : vol->source);
		vol->vfsd = -1;
		vm->nvols++;
	}
	return 0;
}

/* the copy of virtiofsd with its capability, from vfsd-cap-install */
static int wrapper_fd(const char *home, char *path, size_t pathlen)
{
	char *argv[] = { "vfsd-cap-install", "--home", (char *)home, NULL };
	int r = run_tool("vfsd-cap-install", argv, path, pathlen);
	char *nl = strchr(path, '\n');
	if (nl)
		*nl = 0;
	if (r != 0 || !path[0]) {
		log_error("vfsd-cap-install failed (exit %d): no virtiofsd with file handles to serve the volumes", r);
		return -1;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		log_sys(errno, "cannot open '%s'", path);
	return fd;
}

static int start_one(struct vm *vm, struct volume *vol, int wfd, int idx)
{
	char logp[4300], fdarg[16] = "--fd=3", dirarg[4300];
	const char *handles = getenv("BOXKIT_TEST_VFSD_HANDLES"); /* test-only: never */
	char harg[64];
	snprintf(harg, sizeof(harg), "--inode-file-handles=%s", handles && *handles ? handles : "mandatory");
	snprintf(vol->sock_name, sizeof(vol->sock_name), "vfs%d.sock", idx);
	unlinkat(vm->sockdir, vol->sock_name, 0);
	int lfd = unix_listen_beneath(vm->sockdir, vol->sock_name, 1);
	if (lfd < 0)
		return log_sys(lfd, "cannot listen on the socket for share %s", vol->tag), EXIT_LAUNCH;
	if (vm->jailed && fchownat(vm->sockdir, vol->sock_name, vm->uid, vm->gid, AT_SYMLINK_NOFOLLOW) < 0) {
		close(lfd);
		return log_sys(errno, "cannot chown the socket of share %s", vol->tag), EXIT_LAUNCH;
	}
	if (vm->jailed)
		snprintf(vol->sock_in_vmm, sizeof(vol->sock_in_vmm), "/run/%s", vol->sock_name);
	else
		snprintf(vol->sock_in_vmm, sizeof(vol->sock_in_vmm), "%s/%s", vm->run_dir, vol->sock_name);
	snprintf(dirarg, sizeof(dirarg), "--shared-dir=%s", vol->share_dir);
	snprintf(logp, sizeof(logp), "%s/virtiofsd-%s.log", vm->run_dir, vol->tag);
	int logfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (logfd < 0) {
		close(lfd);
		return log_sys(errno, "cannot create '%s'", logp), EXIT_LAUNCH;
	}
	char *argv[] = { "virtiofsd", fdarg, dirarg, "--cache=auto", harg, "--sandbox=none", "--log-level=error",
			 vol->readonly ? "--readonly" : NULL, NULL };
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return log_sys(errno, "fork"), EXIT_LAUNCH;
	if (pid == 0) {
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (nul < 0 || dup2(nul, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 || dup2(lfd, 3) < 0)
			_exit(125);
		/* no capability but the one the copy's file capability grants */
		if (vm->jailed && drop_to_user(vm->uid, vm->gid, CAP_DAC_READ_SEARCH) < 0)
			_exit(125);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(125);
		/* no no_new_privs here: it would void the file capability */
		char *envp[] = { "PATH=/usr/bin:/bin", NULL };
		fexecve(wfd, argv, envp);
		_exit(127);
	}
	close(lfd);
	close(logfd);
	vol->vfsd = pid;
	log_debug("virtiofsd pid %d serves '%s' as tag %s%s", pid, vol->share_dir, vol->tag, vol->readonly ? " (read-only)" : "");
	return 0;
}

int shares_start(struct vm *vm, const char *home)
{
	char wpath[PATH_MAX];
	int r;
	if (vm->nvols == 0)
		return 0;
	const char *sdir = vm->jailed ? NULL : vm->run_dir;
	char buf[4200];
	if (vm->jailed) {
		snprintf(buf, sizeof(buf), "%s/run", vm->root);
		sdir = buf;
	}
	vm->sockdir = open(sdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (vm->sockdir < 0)
		return log_sys(errno, "cannot open '%s'", sdir), EXIT_LAUNCH;
	/* file mounts: a fresh staging directory per mount, never reused */
	for (int i = 0; i < vm->nvols; i++) {
		struct volume *vol = &vm->vols[i];
		if (!vol->is_file) {
			snprintf(vol->share_dir, sizeof(vol->share_dir), "%s", vol->source);
			continue;
		}
		snprintf(vol->share_dir, sizeof(vol->share_dir), "%s/stage-%s", vm->run_dir, vol->tag);
		if (mkdir(vol->share_dir, 0700) < 0)
			return log_sys(errno, "cannot create '%s'", vol->share_dir), EXIT_LAUNCH;
		vol->staged = true;
		if (vm->jailed && chown(vol->share_dir, vm->uid, vm->gid) < 0)
			return log_sys(errno, "cannot chown '%s'", vol->share_dir), EXIT_LAUNCH;
		char dst[8500];
		snprintf(dst, sizeof(dst), "%s/%s", vol->share_dir, vol->file_name);
		if (link(vol->source, dst) < 0)
			return log_sys(errno, "cannot hard-link '%s' into '%s'", vol->source, vol->share_dir), EXIT_LAUNCH;
	}
	cleanup_close int wfd = wrapper_fd(home, wpath, sizeof(wpath));
	if (wfd < 0)
		return EXIT_LAUNCH;
	for (int i = 0; i < vm->nvols; i++)
		if ((r = start_one(vm, &vm->vols[i], wfd, i)))
			return r;
	return 0;
}

int shares_reap(struct vm *vm, pid_t pid, int status, bool complain)
{
	for (int i = 0; i < vm->nvols; i++)
		if (vm->vols[i].vfsd == pid) {
			vm->vols[i].vfsd = -1;
			char logp[4300];
			snprintf(logp, sizeof(logp), "%s/virtiofsd-%s.log", vm->run_dir, vm->vols[i].tag);
			if (complain && vm->qemu > 0) {
				char tail[2048] = "";
				int fd = open(logp, O_RDONLY | O_CLOEXEC);
				if (fd >= 0) {
					ssize_t n = read(fd, tail, sizeof(tail) - 1);
					tail[n > 0 ? n : 0] = 0;
					close(fd);
				}
				log_error("virtiofsd for share %s ('%s') exited (status %d) while the VM ran: %s", vm->vols[i].tag,
					  vm->vols[i].share_dir, status, tail[0] ? tail : "(no log)");
			}
			return i;
		}
	return -1;
}

void shares_stop(struct vm *vm)
{
	for (int i = 0; i < vm->nvols; i++) {
		struct volume *vol = &vm->vols[i];
		if (vol->vfsd > 0) {
			kill(vol->vfsd, SIGKILL);
			waitpid(vol->vfsd, NULL, 0);
			vol->vfsd = -1;
		}
		if (vol->sock_name[0] && vm->sockdir >= 0)
			unlinkat(vm->sockdir, vol->sock_name, 0);
		if (vol->staged) {
			char p[8500];
			snprintf(p, sizeof(p), "%s/%s", vol->share_dir, vol->file_name);
			unlink(p);
			rmdir(vol->share_dir);
			vol->staged = false;
		}
		char logp[4300];
		snprintf(logp, sizeof(logp), "%s/virtiofsd-%s.log", vm->run_dir, vol->tag);
		if (vm->own_run_dir)
			unlink(logp);
	}
	if (vm->sockdir >= 0)
		close(vm->sockdir);
	vm->sockdir = -1;
}
