/* SPDX-License-Identifier: MIT */
/* --network user: the guest's network through passt, a user-mode stack
 * outside the guest that turns the guest's frames into ordinary sockets of
 * the host (measured against QEMU's slirp; tools/vm-launch/vm-launch.1.md
 * says why passt).
 *
 * QEMU and passt share one stream socket, made here (socketpair): passt
 * gets it as --fd, QEMU as -netdev stream with addr.type=fd, so no socket
 * file exists anywhere. passt runs
 *   - as its own unprivileged user (boxkit-net: not the VM's, so a
 *     compromised QEMU cannot signal or trace it), with no capability but
 *     CAP_NET_BIND_SERVICE when a published host port is below 1024 (as an
 *     ambient one), no_new_privs;
 *   - in new mount, PID, IPC and UTS namespaces (not a network namespace:
 *     its sockets are the host's), a new session, with a fixed environment,
 *     descriptors 0-3 only, RLIMIT_CORE 0, the parent-death signal;
 *   - in a cgroup of the run's own that carries the egress policy
 *     (egress.c), entered before exec;
 *   - with its own sandbox on top (it detaches into a user namespace,
 *     pivots into an empty tmpfs and loads its own seccomp filter);
 *   - with --no-map-gw (the gateway is not the host), --no-icmp (ping
 *     sockets are not covered by the cgroup hooks), IPv4 only, no DHCP, NDP
 *     or RA (the guest init configures the interface from the plan).
 * It is recorded in the run (a process and a cgroup), so vm-launch's own
 * cleanup and box gc stop and remove it with the run. */
#include "common.h"
#include "guest-abi.h"
#include "launch.h"
#include "netspec.h"
#include "runrec.h"
#include "spawn.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define NET_MTU 65520
#define NET_NOFILE 4096 /* connections at once; bounds what the guest can make it hold */
#define NET_USER "boxkit-net"

/* the host's resolvers (IPv4, not this host's own) as the guest's default */
static void host_resolvers(struct vm *vm)
{
	cleanup_fclose FILE *f = fopen("/etc/resolv.conf", "re");
	char line[512], err[256];
	while (f && arg.ndns < NET_DNS_MAX && fgets(line, sizeof(line), f)) {
		char a[64];
		uint32_t ip;
		if (sscanf(line, "nameserver %63s", a) == 1 && netspec_dns(a, &ip, err, sizeof(err)) == 0 &&
		    (ip >> 24) != 127)
			arg.dns[arg.ndns++] = ip;
	}
	(void)vm;
}

/* true when path's real location, every directory above it, and the files
 * of <its directory>/lib and its .avx2 twin are root's and writable by no
 * one else (else why says which is not) */
static bool owned_by_root(const char *p, bool dir, char *why, size_t whylen)
{
	struct stat st;
	if (lstat(p, &st) < 0)
		return errno == ENOENT && !dir; /* an optional file that is not there */
	if (st.st_uid != 0 || ((st.st_mode & 022) && !S_ISLNK(st.st_mode))) {
		snprintf(why, whylen, "'%s' is not root's alone", p);
		return false;
	}
	return true;
}

static bool trusted_tree(const char *path, char *why, size_t whylen)
{
	char real[PATH_MAX], p[PATH_MAX + 16];
	if (!realpath(path, real)) {
		snprintf(why, whylen, "cannot resolve it: %s", strerror(errno));
		return false;
	}
	snprintf(p, sizeof(p), "%s", real);
	for (char *s = strrchr(p, '/'); s; s = strrchr(p, '/')) {
		*s = 0;
		if (!owned_by_root(p[0] ? p : "/", true, why, whylen))
			return false;
		if (!p[0])
			break;
	}
	snprintf(p, sizeof(p), "%s.avx2", real);
	if (!owned_by_root(p, false, why, whylen))
		return false;
	snprintf(p, sizeof(p), "%s", real);
	*strrchr(p, '/') = 0;
	strcat(p, "/lib");
	cleanup_close int d = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d < 0)
		return true; /* the system's own libraries (a system passt) */
	if (!owned_by_root(p, true, why, whylen))
		return false;
	DIR *ds = fdopendir(dup(d));
	struct dirent *e;
	bool ok = ds != NULL;
	while (ok && (e = readdir(ds))) {
		char f[PATH_MAX + 300];
		if (e->d_name[0] == '.')
			continue;
		snprintf(f, sizeof(f), "%s/%s", p, e->d_name);
		ok = owned_by_root(f, false, why, whylen);
	}
	if (ds)
		closedir(ds);
	return ok;
}

int net_prepare(struct vm *vm)
{
	struct net *n = &vm->net;
	char path[4096];
	int r;
	n->cgroup = n->qemu_end = n->log.fd = n->egress.nl = n->ns_fd = -1;
	n->passt = -1;
	for (int h = 0; h < EGRESS_HOOKS; h++)
		n->egress.prog[h] = -1;
	if (arg.netns)
		return netns_prepare(vm);
	if (!arg.net_user)
		return 0;
	if (geteuid() != 0) {
		log_error("--network user needs root: its egress policy is a cgroup BPF program on the network "
			  "helper; no VM was started");
		return EXIT_LAUNCH;
	}
	const char *who = arg.net_user_name ? arg.net_user_name : NET_USER;
	struct passwd *pw = getpwnam(who);
	if (!pw)
		return log_error("no user '%s' for the network helper: run 'make deps'", who), EXIT_LAUNCH;
	n->uid = pw->pw_uid;
	n->gid = pw->pw_gid;
	if (n->uid == 0 || n->gid == 0 || (vm->jailed && n->uid == vm->uid)) {
		log_error("the network helper's user '%s' must be neither root nor the VM's", who);
		return EXIT_LAUNCH;
	}
	/* the passt binary: given, or make deps's (Debian 13's: Debian 12's loses
	 * a FIN after a half-close); root's, written by no one else */
	if (arg.passt)
		snprintf(path, sizeof(path), "%s", arg.passt);
	else if (artifact_path("BOXKIT_PASST_DIR", "passt", "passt", path, sizeof(path)) < 0)
		return log_error("no passt provisioned: run 'make deps'"), EXIT_LAUNCH;
	n->passt_bin = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (n->passt_bin < 0 || fstat(n->passt_bin, &st) < 0)
		return log_sys(errno, "cannot open the network helper '%s'", path), EXIT_LAUNCH;
	if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022)) {
		log_error("'%s' is not a regular file of root's that only root can write", path);
		return EXIT_LAUNCH;
	}
	/* what the loader reads by name at the exec (the interpreter and the
	 * libraries make deps put beside it, its .avx2 twin): root's, in
	 * directories only root can write, up to / */
	char why[PATH_MAX + 64];
	if (!trusted_tree(path, why, sizeof(why))) {
		log_error("the network helper '%s' is not safe to run as root's helper: %s", path, why);
		return EXIT_LAUNCH;
	}
	/* the host's resolvers, unless an allow-list is given: they would not
	 * be on it (name them with --dns, which allows them on port 53) */
	if (!arg.ndns && !arg.nallow)
		host_resolvers(vm);
	/* with an allow-list, a resolver named with --dns is reachable on port 53 */
	if (arg.nallow)
		for (int i = 0; i < arg.ndns && arg.nallow < NET_ALLOW_MAX; i++)
			arg.allow[arg.nallow++] = (struct net_allow){ arg.dns[i], ~0u, 53 };
	/* the cgroup: recorded first, then made */
	snprintf(n->cgroup_name, sizeof(n->cgroup_name), "%s.net", vm->run_id);
	if ((r = run_add(vm->homefd, vm->run_id, RUN_CGROUPS, n->cgroup_name)) < 0)
		return log_sys(r, "cannot record the network helper's cgroup"), EXIT_LAUNCH;
	n->cgroup = cgroup_create(n->cgroup_name);
	if (n->cgroup < 0) {
		log_sys(n->cgroup, "cannot make the cgroup '" CGROUP_BOXKIT "/%s' under the cgroup2 mount",
			n->cgroup_name);
		return EXIT_LAUNCH;
	}
	n->on = true;
	return 0;
}

struct passt_ctx {
	struct vm *vm;
	int procs; /* the cgroup's cgroup.procs, open for writing */
	bool low_port;
};

#define FAIL(e, ...)                                                                                                   \
	({                                                                                                             \
		snprintf(err, errlen, __VA_ARGS__);                                                                    \
		return -(e);                                                                                           \
	})

static int passt_forked(void *p, pid_t pid)
{
	const struct passt_ctx *c = p;
	return run_add_process(c->vm->homefd, c->vm->run_id, RUN_PROCESSES, "passt", pid);
}

static int passt_setup(void *p, char *err, size_t errlen)
{
	const struct passt_ctx *c = p;
	const struct net *n = &c->vm->net;
	int r;
	/* into the policy's cgroup before anything of passt's runs */
	if (write(c->procs, "0", 1) != 1)
		FAIL(errno, "enter the network helper's cgroup");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		FAIL(errno, "make mounts private");
	struct rlimit nofile, core = { 0, 0 };
	if (getrlimit(RLIMIT_NOFILE, &nofile) < 0)
		FAIL(errno, "getrlimit");
	if (nofile.rlim_max > NET_NOFILE)
		nofile.rlim_max = NET_NOFILE;
	nofile.rlim_cur = nofile.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &nofile) < 0 || setrlimit(RLIMIT_CORE, &core) < 0)
		FAIL(errno, "setrlimit");
	if (c->low_port)
		r = drop_to_user_ambient(n->uid, n->gid, CAP_NET_BIND_SERVICE);
	else
		r = drop_to_user(n->uid, n->gid, -1);
	if (r < 0)
		FAIL(-r, "drop to the network helper's uid");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		FAIL(errno, "no_new_privs");
	return 0;
}

/* Last before exec, on top of passt's own filter (which allows socket,
 * connect, bind and sendto with any arguments): socket() only for what
 * passt uses, an allow-list written as its complement (the rest of passt's
 * calls are its own filter's business): AF_INET and AF_INET6 (whose hooks
 * refuse everything) of type SOCK_STREAM or SOCK_DGRAM with protocol 0, TCP
 * or UDP, and AF_NETLINK with NETLINK_ROUTE, raw or datagram (passt reads
 * routes at start).
 * So a compromised passt reaches no UNIX socket (abstract ones included: the
 * cgroup hooks do not see them), no ping, SCTP, DCCP, MPTCP or UDP-Lite
 * socket, no sock_diag. The arguments are ints: a register with any upper
 * bit set is refused, so the upper half cannot smuggle another value past. */
static int passt_final(void *p, char *err, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	const uint32_t nofam = SCMP_ACT_ERRNO(EAFNOSUPPORT), noproto = SCMP_ACT_ERRNO(EPROTONOSUPPORT);
	int r = ctx ? 0 : -ENOMEM;
	(void)p;
	/* the arguments are ints: a value with any of the upper 32 bits set is
	 * refused outright, so the comparisons below see what the kernel sees
	 */
	for (unsigned a = 0; a < 3 && r == 0; a++) {
		struct scmp_arg_cmp hi = { a, SCMP_CMP_GT, 0xffffffffULL, 0 };
		r = seccomp_rule_add_array(ctx, nofam, SCMP_SYS(socket), 1, &hi);
	}
	/* families: every number up to 255 but the three, and anything above */
	for (int f = 0; f < 256 && r == 0; f++)
		if (f != AF_INET && f != AF_INET6 && f != AF_NETLINK)
			r = seccomp_rule_add(ctx, nofam, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)f));
	if (r == 0)
		r = seccomp_rule_add(ctx, nofam, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_GT, 255));
	/* types (the low 4 bits; the rest are SOCK_NONBLOCK and SOCK_CLOEXEC) */
	for (uint32_t t = 0; t < 16 && r == 0; t++)
		if (t != SOCK_STREAM && t != SOCK_DGRAM && t != SOCK_RAW)
			r = seccomp_rule_add(ctx, noproto, SCMP_SYS(socket), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, t));
	/* SOCK_RAW stays for netlink: a raw IP socket needs CAP_NET_RAW, which
	 * passt does not have (a rule on both arguments, "raw and not netlink",
	 * made libseccomp 2.5.4 refuse AF_INET stream sockets too) */
	/* protocols: 0, TCP and UDP (NETLINK_ROUTE is 0) */
	for (uint32_t pr = 1; pr <= IPPROTO_UDP && r == 0; pr++)
		if (pr != IPPROTO_TCP && pr != IPPROTO_UDP)
			r = seccomp_rule_add(ctx, noproto, SCMP_SYS(socket), 1, SCMP_A2(SCMP_CMP_EQ, pr));
	if (r == 0)
		r = seccomp_rule_add(ctx, noproto, SCMP_SYS(socket), 1, SCMP_A2(SCMP_CMP_GT, IPPROTO_UDP));
	/* netlink: NETLINK_ROUTE only (0, which the rules above leave), so
	 * NETLINK_USERSOCK (2)... are caught there too */
	if (r == 0)
		r = seccomp_load(ctx);
	if (ctx)
		seccomp_release(ctx);
	if (r < 0)
		FAIL(-r, "the network helper's seccomp filter");
	return 0;
}

/* one --tcp-ports/--udp-ports ADDR/HOSTPORT:GUESTPORT per published port
 * (passt takes one address per option), or "none" */
static int port_args(char **argv, int n, char (*buf)[40])
{
	bool tcp = false, udp = false;
	for (int i = 0; i < arg.npublish; i++) {
		const struct net_publish *pb = &arg.publish[i];
		char a[16];
		netspec_ntoa(pb->addr, a);
		snprintf(buf[i], sizeof(buf[i]), "%s/%u:%u", a, pb->host_port, pb->guest_port);
		argv[n++] = pb->proto == IPPROTO_TCP ? "--tcp-ports" : "--udp-ports";
		argv[n++] = buf[i];
		tcp |= pb->proto == IPPROTO_TCP;
		udp |= pb->proto == IPPROTO_UDP;
	}
	if (!tcp) {
		argv[n++] = "--tcp-ports";
		argv[n++] = "none";
	}
	if (!udp) {
		argv[n++] = "--udp-ports";
		argv[n++] = "none";
	}
	return n;
}

int net_start(struct vm *vm)
{
	struct net *n = &vm->net;
	char msg[1024], addr[16], gw[16], prefix[8], mtu[16], ports[NET_PUBLISH_MAX][40];
	int sv[2], logp[2], nul[2], r;
	if (arg.netns)
		return netns_start(vm);
	if (!n->on)
		return 0;
	/* the policy first: passt never runs without it */
	n->egress.allow = arg.allow;
	n->egress.nallow = arg.nallow;
	n->egress.publish = arg.publish;
	n->egress.npublish = arg.npublish;
	if ((r = egress_attach(&n->egress, n->cgroup, msg, sizeof(msg))) < 0)
		return log_error("%s; no VM was started", msg), EXIT_LAUNCH;
	cleanup_close int procs = openat(n->cgroup, "cgroup.procs", O_WRONLY | O_CLOEXEC);
	if (procs < 0)
		return log_sys(errno, "cannot open the network helper's cgroup.procs"), EXIT_LAUNCH;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return log_sys(errno, "socketpair"), EXIT_LAUNCH;
	n->qemu_end = sv[0];
	cleanup_close int passt_end = sv[1];
	if (pipe2(logp, O_CLOEXEC) < 0)
		return log_sys(errno, "pipe"), EXIT_LAUNCH;
	n->log.fd = logp[0];
	fcntl(n->log.fd, F_SETFL, O_NONBLOCK);
	cleanup_close int logw = logp[1];
	if (pipe2(nul, O_CLOEXEC) < 0)
		return log_sys(errno, "pipe"), EXIT_LAUNCH;
	close(nul[1]);
	cleanup_close int in = nul[0];

	bool low = false;
	for (int i = 0; i < arg.npublish; i++)
		low |= arg.publish[i].host_port < 1024;
	netspec_ntoa(NET_GUEST_ADDR, addr);
	netspec_ntoa(NET_GATEWAY, gw);
	snprintf(prefix, sizeof(prefix), "%d", NET_PREFIX);
	snprintf(mtu, sizeof(mtu), "%d", NET_MTU);
	char *argv[32 + 2 * NET_PUBLISH_MAX] = { "passt",	"--foreground", "--quiet",   "--fd",	  "3",
						 "--ipv4-only", "--no-map-gw",	"--no-icmp", "--no-dhcp", "--no-ndp",
						 "--no-dhcpv6", "--no-ra",	"--address", addr,	  "--netmask",
						 prefix,	"--gateway",	gw,	     "--mtu",	  mtu,
						 "--dns",	"none" };
	int na = port_args(argv, 22, ports);
	argv[na] = NULL;
	char runenv[4300];
	snprintf(runenv, sizeof(runenv), "BOXKIT_RUN_DIR=%s", vm->run_dir);
	char *envp[] = { "PATH=/", "LC_ALL=C", runenv, NULL };
	struct passt_ctx ctx = { .vm = vm, .procs = procs, .low_port = low };
	struct spawn_fd fds[] = { { in, 0 }, { logw, 1 }, { logw, 2 }, { passt_end, 3 } };
	struct spawn sp = { .path = NULL,
			    .exec_fd = n->passt_bin,
			    .argv = argv,
			    .envp = envp,
			    .fds = fds,
			    .nfds = ARRAY_SIZE(fds),
			    .ns_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS,
			    .pdeathsig = SIGKILL,
			    .new_session = true,
			    .setup = passt_setup,
			    .final = passt_final,
			    .forked = passt_forked,
			    .ctx = &ctx };
	if (spawn_run(&sp, &n->passt, msg, sizeof(msg)) < 0) {
		n->passt = -1;
		return log_error("cannot start the network helper (passt): %s", msg), EXIT_LAUNCH;
	}
	log_debug("passt pid %d: guest %s/%d via %s, %d port(s) published, %d allow rule(s), %d host address(es) "
		  "denied",
		  n->passt, addr, NET_PREFIX, gw, arg.npublish, arg.nallow, n->egress.nlocal);
	return 0;
}

bool net_reap(struct vm *vm, pid_t pid, int status, bool complain)
{
	struct net *n = &vm->net;
	if (!n->on || pid != n->passt)
		return false;
	n->passt = -1;
	logtail_drain(&n->log);
	sanitize_text(n->log.text, n->log.len);
	if (complain)
		log_error("the network helper (passt) exited (status %d) while the VM ran: %s", status,
			  n->log.len ? n->log.text : "(no log)");
	return true;
}

void net_stop(struct vm *vm)
{
	struct net *n = &vm->net;
	if (n->passt > 0)
		spawn_kill(n->passt);
	n->passt = -1;
	egress_close(&n->egress);
	if (n->log.fd >= 0)
		close(n->log.fd);
	if (n->qemu_end >= 0)
		close(n->qemu_end);
	if (n->cgroup >= 0)
		close(n->cgroup);
	if (n->passt_bin >= 0)
		close(n->passt_bin);
	n->log.fd = n->qemu_end = n->cgroup = n->passt_bin = -1;
	/* the cgroup itself goes with the run (run_cleanup: RUN_CGROUPS) */
	netns_stop(vm);
}

struct json_object *net_plan(const struct vm *vm)
{
	char a[16];
	if (!vm->net.on)
		return NULL;
	if (arg.netns)
		return netns_plan(vm);
	struct json_object *o = json_object_new_object(), *dns = json_object_new_array();
	netspec_ntoa(NET_GUEST_ADDR, a);
	json_object_object_add(o, PLAN_NET_ADDRESS, json_object_new_string(a));
	json_object_object_add(o, PLAN_NET_PREFIX, json_object_new_int(NET_PREFIX));
	netspec_ntoa(NET_GATEWAY, a);
	json_object_object_add(o, PLAN_NET_GATEWAY, json_object_new_string(a));
	json_object_object_add(o, PLAN_NET_MTU, json_object_new_int(NET_MTU));
	for (int i = 0; i < arg.ndns; i++) {
		netspec_ntoa(arg.dns[i], a);
		json_object_array_add(dns, json_object_new_string(a));
	}
	json_object_object_add(o, PLAN_NET_DNS, dns);
	return o;
}
