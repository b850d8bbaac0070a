/* SPDX-License-Identifier: MIT */
#ifndef BOXKIT_LAUNCH_H
#define BOXKIT_LAUNCH_H
#include "monitor-abi.h"
#include "netspec.h"
#include "runrec.h"
#include "vol.h"
#include "warm.h"

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

struct elfdeps;

struct launch_args {
	const char *config, *kernel, *system, *rootfs, *volumes, *accel, *chroot_json, *run_id, *qemu, *home;
	long memory, cpus;
	double timeout;
	bool probe_only;
	bool tty;    /* the first command gets a pty; the caller's terminal goes raw */
	bool rm;     /* --detach --rm: the sandbox's record goes too when it stops */
	bool detach; /* keep mode: a sandbox; the monitor goes on in the background */
	/* --network user: passt, jailed, with the egress policy */
	bool net_user;
	const char *passt, *net_user_name;
	struct net_publish publish[NET_PUBLISH_MAX];
	int npublish;
	struct net_allow allow[NET_ALLOW_MAX];
	int nallow;
	uint32_t dns[NET_DNS_MAX];
	int ndns;
	bool dns_given; /* --dns (else the host's resolvers) */
	/* --network netns:PATH: the interface of that network namespace */
	const char *netns;
	bool warm;	/* --warm: restore a saved VM of this run's key, or save one */
	bool warm_save; /* --warm-save: only save it */
};
extern struct launch_args arg;

/* a helper's stderr: the last bytes, for the error that names its death */
struct logtail {
	int fd; /* read end of its stderr, non-blocking; -1 when closed */
	size_t len;
	char text[2048];
};
void logtail_drain(struct logtail *t);

struct volume {
	struct vol_entry e;
	int pinned;	      /* O_PATH: the source, opened once by the gate */
	int share_fd;	      /* O_PATH: what virtiofsd serves (the source) */
	int tree;	      /* the share as a detached bind mount, until virtiofsd has it */
	char file_name[256];  /* a file mount: the file's name in the share */
	char sock_name[32];   /* in the jail's /run */
	char sock_in_vmm[64]; /* the path QEMU connects to */
	pid_t vfsd;
	struct logtail log; /* virtiofsd's stderr */
};

/* the guest's side of --network user: a private subnet of its own */
#define NET_GUEST_ADDR 0x0a00020fu /* 10.0.2.15 */
#define NET_GATEWAY 0x0a000202u	   /* 10.0.2.2: passt, never the host */
#define NET_PREFIX 24
#define NET_MASK (~0u << (32 - NET_PREFIX))

/* egress.c: the policy on the network helper's cgroup */
#define EGRESS_HOOKS 6
#define EGRESS_LOCAL_MAX 4096
struct egress {
	int cgroup; /* the cgroup's directory */
	int prog[EGRESS_HOOKS];
	int nl; /* netlink: the host's addresses changed */
	const struct net_allow *allow;
	int nallow, nlocal;
	const struct net_publish *publish;
	int npublish;
};
int egress_attach(struct egress *e, int cgroup, char *err, size_t errlen);
int egress_refresh(struct egress *e, char *err, size_t errlen);
void egress_close(struct egress *e);

/* --network netns: the interface the guest takes over, as it was found */
struct netns_if {
	char name[16]; /* IFNAMSIZ */
	int index;
	uint32_t addr, gateway; /* host order; gateway 0: none */
	int prefix, mtu;
	unsigned char mac[6];
	bool up;
};

/* net.c: --network user; netns.c: --network netns */
struct net {
	bool on; /* the guest has a network device */
	uid_t uid;
	gid_t gid;
	char cgroup_name[64];
	int cgroup;
	int qemu_end; /* QEMU's end of the stream socket to passt, or the tap (netns) */
	int passt_bin;
	pid_t passt;
	struct logtail log;
	struct egress egress;
	/* --network netns */
	int ns_fd;	 /* the namespace, open from the start to the stop */
	bool ns_claimed; /* nsif's ingress qdisc is ours: removed at the stop */
	struct netns_if nsif;
};

struct vm {
	/* the home (canonical) and this run */
	char home[4096];
	int homefd;
	char run_id[RUN_ID_LEN + 1];
	bool own_run;	    /* created here (not given with --run) */
	char run_dir[4200]; /* <home>/run/<id>: root's, 0700 */
	/* resolved inputs, as the host sees them */
	char kernel[4096], system[4096], rootfs[4096];
	const char *accel; /* "kvm" or "tcg" */
	/* the jail (from chroot-stage), or none */
	bool jailed;
	char root[4096];
	char vmm_in[4096], kernel_in[4096], drives_in[2][4096];
	uid_t uid;
	gid_t gid;
	struct {
		char source[4096], target[4096];
	} * binds; /* read-only binds into the jail, in QEMU's own mount namespace */
	int nbinds;
	/* run state */
	char console[4300];
	int console_fd;	  /* console.log, until the relay takes it */
	int console_pipe; /* QEMU's stdout and stderr, read by the relay */
	int ctl;
	pid_t qemu;
	int qemu_status;
	bool plan_sent;
	struct timespec t0;
	struct volume *vols;
	int nvols;
	int ready_fd;			/* --detach: the parent waits on this until the sandbox is ready */
	int stoppers[MONITOR_CONN_MAX]; /* clients that asked for the stop: answered at the very end */
	int nstoppers;
	int volfd;   /* O_PATH: <home>/volumes, the store */
	int sockdir; /* O_PATH: the jail's /run, holding the vhost-user sockets */
	int vfsd_bin;
	struct elfdeps *vfsd_deps;
	struct net net;
	struct warm warm;
};

/* shares.c: one sandboxed virtiofsd per volume */
int shares_prepare(struct vm *vm);
int shares_start(struct vm *vm);
/* a virtiofsd that exited: returns its volume index or -1 */
int shares_reap(struct vm *vm, pid_t pid, int status, bool complain);
void shares_stop(struct vm *vm);

/* net.c: passt for --network user, in a cgroup of the run's own */
int net_prepare(struct vm *vm);
int net_start(struct vm *vm);
/* passt exited: true when pid was it */
bool net_reap(struct vm *vm, pid_t pid, int status, bool complain);
void net_stop(struct vm *vm);
/* the plan's "net" object (NULL when the guest has no network) */
struct json_object *net_plan(const struct vm *vm);

/* netns.c: --network netns:PATH, the interface of a network namespace an
 * engine made, taken over through a tap and tc redirects (net.c calls
 * these). prepare: open PATH and check it is a network namespace; start:
 * in a child in it, claim the interface, make the tap, the redirects
 * (vm->net.qemu_end is the tap; no interface with IPv4: no device); stop:
 * release the claim. */
int netns_prepare(struct vm *vm);
int netns_start(struct vm *vm);
void netns_stop(struct vm *vm);
struct json_object *netns_plan(const struct vm *vm);
/* the interface's MAC, "xx:xx:xx:xx:xx:xx" (at least 18 bytes) */
void netns_mac(const struct vm *vm, char *out, size_t outlen);

int vm_prepare(struct vm *vm, char **config, size_t *config_len);
int vm_start(struct vm *vm);
void vm_kill(struct vm *vm);
void vm_cleanup(struct vm *vm);
double vm_elapsed(const struct vm *vm);

/* relay.c: what came of the run */
struct outcome {
	int status; /* the workload's exit status, or -1 */
	int sig;    /* SIGINT, SIGTERM or SIGHUP came, or 0 */
	bool timed_out;
	bool stop_asked;    /* keep mode: the sandbox was stopped (box stop, a signal) */
	bool failed;	    /* a launcher failure (bad frame, no hello, a share died) */
	int output_errno;   /* writing the workload's output failed (not EPIPE) */
	char fail[1024];    /* the guest init's failure message */
	bool resume_failed; /* a warm copy never came alive (nothing of the run reached it) */
	bool saved;	    /* --warm-save: the VM was saved */
};
int relay_run(struct vm *vm, const char *config, size_t config_len, struct outcome *oc);
/* the caller's terminal (--tty): raw until term_restore, also on every exit path */
int term_raw(int fd);
void term_restore(void);
void print_console_tail(const char *run_dir);

/* accel.c */
int accel_choose(const char *home, const char *qemu, const char *kernel, const char *want, const char **out,
		 const char **why);
int probe_print(const char *home);
/* Where make put kernels and images: $BOXKIT_KERNEL_DIR / $BOXKIT_IMAGE_DIR,
 * else beside this binary's tree (bin/../build/...). */
int artifact_path(const char *envvar, const char *sub, const char *name, char *out, size_t outlen);
#endif
