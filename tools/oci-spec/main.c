/* SPDX-License-Identifier: MIT */
/* oci-spec: write an OCI runtime-spec config.json with Docker's capability
 * semantics (--cap-add/--cap-drop/ALL/--privileged), the privileged shape, a
 * default seccomp profile, and bind mounts for volspec-parse's volumes. */
#include "common.h"
#include "guest-abi.h"
#include "imgcfg.h"
#include "vol.h"

#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <seccomp.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/stat.h>

#define NCAPS 41 /* CAP_CHOWN (0) .. CAP_CHECKPOINT_RESTORE (40) */
#define MAX_LIST 256

static const char *const default_caps[] = { "CHOWN",   "DAC_OVERRIDE", "FSETID",	   "FOWNER",
					    "MKNOD",   "NET_RAW",      "SETGID",	   "SETUID",
					    "SETFCAP", "SETPCAP",      "NET_BIND_SERVICE", "SYS_CHROOT",
					    "KILL",    "AUDIT_WRITE" };

static struct {
	const char *caps_add[MAX_LIST];
	int nadd;
	const char *caps_drop[MAX_LIST];
	int ndrop;
	bool privileged;
	const char *rootfs;
	bool readonly_rootfs;
	bool vm_network; /* --network vm: the VM's network, no namespace of its own */
	const char *cwd;
	const char *env[MAX_LIST];
	int nenv;
	const char *user; /* as given: resolved in build() */
	const char *image_config, *passwd, *group;
	const char *entrypoint; /* --entrypoint: replaces the image's (and its Cmd) */
	bool serve;		/* --serve: no command, even from the image */
	const char *hostname;
	bool terminal;
	const char *mounts_from;
	bool seccomp;
	const char *output;
	const char *bundle;
	bool init;
	unsigned group_add[IMGCFG_GROUPS_MAX]; /* --group-add: supplementary groups */
	size_t ngroup_add;
	const char *etc_name[CONFIG_ETC_FILES], *etc_path[CONFIG_ETC_FILES]; /* --etc-file */
	int netc;
	char **argv;
	int argc;
} arg = { .rootfs = "rootfs", .hostname = "boxkit", .seccomp = true };

static void usage(FILE *f)
{
	fputs("Usage: oci-spec [OPTIONS] -- CMD [ARG...]\n"
	      "\n"
	      "Write an OCI runtime-spec config.json (stdout, or atomically to a file).\n"
	      "\n"
	      "Options:\n"
	      "  --cap-add CAP       add a capability (repeatable; ALL = all 41)\n"
	      "  --cap-drop CAP      drop a capability (repeatable; Docker's rules: see the manual)\n"
	      "  --privileged        every capability, no seccomp, writable cgroups and /proc/sys\n"
	      "  --rootfs PATH       root.path (default rootfs)\n"
	      "  --readonly-rootfs   root.readonly\n"
	      "  --cwd DIR           working directory (default /)\n"
	      "  --env K=V           environment (repeatable)\n"
	      "  --user USER[:GROUP] user and group: numbers, or names with --passwd/--group\n"
	      "                      (default 0:0, or the image's User)\n"
	      "  --image-config FILE an OCI image config blob: its Entrypoint and Cmd, Env\n"
	      "                      (--env wins), WorkingDir, User, as Docker applies them\n"
	      "  --passwd FILE       the image's /etc/passwd, to resolve user names (and HOME)\n"
	      "  --group FILE        the image's /etc/group, for group names and supplementary\n"
	      "                      groups\n"
	      "  --entrypoint CMD    replace the image's Entrypoint (and its Cmd); '' for none\n"
	      "  --serve             with --init: a sandbox's init that only serves execs, even\n"
	      "                      when the image has a command\n"
	      "  --hostname NAME     hostname (default boxkit)\n"
	      "  --group-add GID     a supplementary group, numeric (repeatable)\n"
	      "  --etc-file NAME=FILE the container's /etc/NAME (hosts, hostname, resolv.conf)\n"
	      "                      is FILE's content, written by the guest init (an OCI\n"
	      "                      runtime gives the engine's files this way)\n"
	      "  --network MODE      none (default: a network namespace of its own, empty) or\n"
	      "                      vm: the VM's own network (vm-launch --network user)\n"
	      "  --terminal          allocate a terminal\n"
	      "  --init              run CMD under boxkit's init (signals, 126/127 exit codes);\n"
	      "                      without CMD, a sandbox's init that only serves execs\n"
	      "  --mounts-from FILE  volspec-parse JSON lines ('-' for stdin) as bind mounts\n"
	      "  --seccomp PROFILE   default or unconfined\n"
	      "  --output FILE       write FILE atomically instead of stdout\n"
	      "  --bundle DIR        write DIR/config.json atomically\n"
	      "  -h, --help          this text\n"
	      "\n"
	      "Capability names are case-insensitive, with or without CAP_.\n"
	      "Exit status: 0 ok, 1 refused (unknown capability, bad mounts), 2 usage, 3 system.\n"
	      "Manual: tools/oci-spec/oci-spec.1.md\n",
	      f);
}

/* UID[:GID] in numbers (GID defaults to UID) into *ids */
static int parse_numeric_user(const char *s, struct user_ids *ids)
{
	char *end;
	unsigned long u, g;
	errno = 0;
	u = strtoul(s, &end, 10);
	if (errno || end == s || !isdigit((unsigned char)s[0]) || u > UINT32_MAX - 1)
		return -1;
	g = u;
	if (*end == ':') {
		const char *gs = end + 1;
		g = strtoul(gs, &end, 10);
		if (errno || end == gs || !isdigit((unsigned char)gs[0]) || g > UINT32_MAX - 1)
			return -1;
	}
	if (*end)
		return -1;
	ids->uid = (unsigned)u;
	ids->gid = (unsigned)g;
	return 0;
}

static bool hostname_valid(const char *h)
{
	size_t n = strlen(h);
	if (n == 0 || n > 63 || h[0] == '-' || h[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)h[i]) && h[i] != '-')
			return false;
	return true;
}

static int parse_argv(int argc, char **argv)
{
	enum {
		O_ADD = 256,
		O_DROP,
		O_PRIV,
		O_ROOTFS,
		O_RO,
		O_CWD,
		O_ENV,
		O_USER,
		O_HOST,
		O_NETWORK,
		O_TERM,
		O_MOUNTS,
		O_SECCOMP,
		O_OUT,
		O_BUNDLE,
		O_INIT,
		O_IMGCFG,
		O_PASSWD,
		O_GROUP,
		O_ENTRY,
		O_SERVE,
		O_GROUP_ADD,
		O_ETC
	};
	static const struct option opts[] = {
		{ "cap-add", required_argument, NULL, O_ADD },
		{ "cap-drop", required_argument, NULL, O_DROP },
		{ "privileged", no_argument, NULL, O_PRIV },
		{ "rootfs", required_argument, NULL, O_ROOTFS },
		{ "readonly-rootfs", no_argument, NULL, O_RO },
		{ "cwd", required_argument, NULL, O_CWD },
		{ "env", required_argument, NULL, O_ENV },
		{ "user", required_argument, NULL, O_USER },
		{ "hostname", required_argument, NULL, O_HOST },
		{ "network", required_argument, NULL, O_NETWORK },
		{ "terminal", no_argument, NULL, O_TERM },
		{ "mounts-from", required_argument, NULL, O_MOUNTS },
		{ "seccomp", required_argument, NULL, O_SECCOMP },
		{ "output", required_argument, NULL, O_OUT },
		{ "bundle", required_argument, NULL, O_BUNDLE },
		{ "init", no_argument, NULL, O_INIT },
		{ "image-config", required_argument, NULL, O_IMGCFG },
		{ "passwd", required_argument, NULL, O_PASSWD },
		{ "group", required_argument, NULL, O_GROUP },
		{ "entrypoint", required_argument, NULL, O_ENTRY },
		{ "serve", no_argument, NULL, O_SERVE },
		{ "group-add", required_argument, NULL, O_GROUP_ADD },
		{ "etc-file", required_argument, NULL, O_ETC },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case O_ADD:
		case O_DROP:
			if ((c == O_ADD ? arg.nadd : arg.ndrop) == MAX_LIST) {
				log_error("too many capability options");
				return -1;
			}
			if (c == O_ADD)
				arg.caps_add[arg.nadd++] = optarg;
			else
				arg.caps_drop[arg.ndrop++] = optarg;
			break;
		case O_PRIV: arg.privileged = true; break;
		case O_ROOTFS:
			if (!*optarg) {
				log_error("--rootfs needs a path");
				return -1;
			}
			arg.rootfs = optarg;
			break;
		case O_RO: arg.readonly_rootfs = true; break;
		case O_CWD:
			if (optarg[0] != '/') {
				log_error("--cwd '%s' must be an absolute path", optarg);
				return -1;
			}
			arg.cwd = optarg;
			break;
		case O_ENV: {
			const char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg || strchr(optarg, '\n')) {
				log_error("--env '%s' must be KEY=VALUE with a non-empty KEY", optarg);
				return -1;
			}
			if (arg.nenv == MAX_LIST - 2) {
				log_error("too many --env options");
				return -1;
			}
			arg.env[arg.nenv++] = optarg;
			break;
		}
		case O_USER:
			if (!*optarg || strlen(optarg) > 512 || strchr(optarg, '\n')) {
				log_error("--user '%s' must be USER[:GROUP]", optarg);
				return -1;
			}
			arg.user = optarg;
			break;
		case O_IMGCFG: arg.image_config = optarg; break;
		case O_PASSWD: arg.passwd = optarg; break;
		case O_GROUP: arg.group = optarg; break;
		case O_ENTRY:
			if (strlen(optarg) > 4096) {
				log_error("--entrypoint is longer than 4096 bytes");
				return -1;
			}
			arg.entrypoint = optarg;
			break;
		case O_SERVE: arg.serve = true; break;
		case O_GROUP_ADD: {
			char *end;
			errno = 0;
			unsigned long g = strtoul(optarg, &end, 10);
			if (!*optarg || *end || errno || g > 4294967294ul || optarg[0] == '-') {
				log_error("--group-add '%s' must be a numeric group id", optarg);
				return -1;
			}
			if (arg.ngroup_add == IMGCFG_GROUPS_MAX) {
				log_error("at most %d --group-add", IMGCFG_GROUPS_MAX);
				return -1;
			}
			arg.group_add[arg.ngroup_add++] = (unsigned)g;
			break;
		}
		case O_ETC: {
			const char *eq = strchr(optarg, '=');
			size_t n = eq ? (size_t)(eq - optarg) : 0;
			if (!eq || !config_etc_name_valid(optarg, n) || !eq[1]) {
				log_error("--etc-file '%s' must be NAME=FILE, NAME one of hosts, hostname, resolv.conf",
					  optarg);
				return -1;
			}
			for (int i = 0; i < arg.netc; i++)
				if ((size_t)(arg.etc_path[i] - 1 - arg.etc_name[i]) == n &&
				    !strncmp(arg.etc_name[i], optarg, n)) {
					log_error("--etc-file '%.*s' given twice", (int)n, optarg);
					return -1;
				}
			if (arg.netc == CONFIG_ETC_FILES)
				return log_error("too many --etc-file"), -1;
			arg.etc_name[arg.netc] = optarg; /* NAME=FILE: split when read */
			arg.etc_path[arg.netc++] = eq + 1;
			break;
		}
		case O_NETWORK:
			if (strcmp(optarg, "none") && strcmp(optarg, "vm")) {
				log_error("--network '%s': use none or vm", optarg);
				return -1;
			}
			arg.vm_network = !strcmp(optarg, "vm");
			break;
		case O_HOST:
			if (!hostname_valid(optarg)) {
				log_error("--hostname '%s' must be 1 to 63 letters, digits or '-'", optarg);
				return -1;
			}
			arg.hostname = optarg;
			break;
		case O_TERM: arg.terminal = true; break;
		case O_MOUNTS: arg.mounts_from = optarg; break;
		case O_SECCOMP:
			if (!strcmp(optarg, "default"))
				arg.seccomp = true;
			else if (!strcmp(optarg, "unconfined"))
				arg.seccomp = false;
			else {
				log_error("--seccomp '%s': use default or unconfined", optarg);
				return -1;
			}
			break;
		case O_OUT: arg.output = optarg; break;
		case O_BUNDLE: arg.bundle = optarg; break;
		case O_INIT: arg.init = true; break;
		case 'h': usage(stdout); exit(EXIT_OK);
		default: usage(stderr); return -1;
		}
	}
	if (arg.output && arg.bundle) {
		log_error("--output and --bundle cannot be used together");
		return -1;
	}
	if (arg.serve && (!arg.init || optind < argc)) {
		log_error("--serve needs --init and no command");
		return -1;
	}
	/* the command may come from the image (checked once it is read) */
	if (optind == argc && !arg.init && !arg.image_config) {
		log_error("no command given: oci-spec [OPTIONS] -- CMD [ARG...]");
		return -1;
	}
	if (argc - optind > IMGCFG_MAX_LIST) {
		log_error("more than %u arguments", IMGCFG_MAX_LIST);
		return -1;
	}
	arg.argv = argv + optind;
	arg.argc = argc - optind;
	return 0;
}

/* ---- capabilities ---------------------------------------------------------------- */

/* The OCI name (CAP_SYS_ADMIN) of capability i, from libcap. */
static int cap_oci_name(int i, char out[64])
{
	char *n = cap_to_name((cap_value_t)i);
	if (!n)
		return -ENOMEM;
	/* libcap spells known capabilities "cap_x" and unknown ones as a number */
	if (strncmp(n, "cap_", 4) != 0) {
		cap_free(n);
		return -EINVAL;
	}
	size_t k = 0;
	for (const char *c = n; *c && k < 63; c++)
		out[k++] = (char)toupper((unsigned char)*c);
	out[k] = '\0';
	cap_free(n);
	return 0;
}

/* Parse a user's capability name: case-insensitive, CAP_ optional, ALL. Sets
 * bits in mask. Returns 0, or -1 for an unknown name. */
static int cap_parse(const char *name, uint64_t *mask)
{
	char buf[64];
	const char *s = name;
	cap_value_t v;
	size_t k = 0;

	if (!strcasecmp(s, "ALL")) {
		*mask = (1ull << NCAPS) - 1;
		return 0;
	}
	if (!strncasecmp(s, "CAP_", 4))
		s += 4;
	if (!*s || strlen(s) > 40)
		return -1;
	/* libcap names are "cap_" + lower case; exactly one prefix */
	memcpy(buf, "cap_", 4);
	k = 4;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && *s != '_')
			return -1;
		buf[k++] = (char)tolower((unsigned char)*s);
	}
	buf[k] = '\0';
	if (cap_from_name(buf, &v) < 0 || v < 0 || v >= NCAPS)
		return -1;
	*mask = 1ull << v;
	return 0;
}

/* Docker's TweakCapabilities (moby, daemon/pkg/oci/caps/utils.go), case by
 * case, first match wins:
 *   --privileged                   every capability
 *   no --cap-add and no --cap-drop the default set
 *   ALL among the adds             every capability but the named drops
 *   ALL among the drops            the named adds, nothing else
 *   otherwise                      the default set less the named drops,
 *                                  plus the named adds
 * ALL is never a capability of its own: in the drops it only selects the
 * fourth case, so a named drop beside --cap-add ALL always applies (also with
 * --cap-drop ALL given too), and an add of the same name as a drop wins in the
 * last two cases. Every name is checked first, --privileged or not, as Docker
 * checks them when the container is created. */
static int final_caps(uint64_t *out)
{
	const uint64_t all = (1ull << NCAPS) - 1;
	uint64_t base = 0, add = 0, drop = 0, m;
	bool add_all = false, drop_all = false;

	for (size_t i = 0; i < ARRAY_SIZE(default_caps); i++) {
		if (cap_parse(default_caps[i], &m) < 0)
			return -EINVAL;
		base |= m;
	}
	for (int pass = 0; pass < 2; pass++) {
		int n = pass == 0 ? arg.ndrop : arg.nadd;
		const char **list = pass == 0 ? arg.caps_drop : arg.caps_add;
		for (int i = 0; i < n; i++) {
			if (cap_parse(list[i], &m) < 0) {
				log_error(
					"unknown capability '%s' (examples: SYS_ADMIN, NET_ADMIN, CAP_SYS_PTRACE, ALL)",
					list[i]);
				return -1;
			}
			bool is_all = !strcasecmp(list[i], "ALL");
			/* ALL only selects a case; the masks hold the named capabilities */
			if (pass == 0) {
				drop_all |= is_all;
				drop |= is_all ? 0 : m;
			} else {
				add_all |= is_all;
				add |= is_all ? 0 : m;
			}
		}
	}
	if (arg.privileged)
		*out = all;
	else if (arg.nadd == 0 && arg.ndrop == 0)
		*out = base;
	else if (add_all)
		*out = all & ~drop;
	else if (drop_all)
		*out = add;
	else
		*out = (base & ~drop) | add;
	return 0;
}

static struct json_object *caps_array(uint64_t set)
{
	struct json_object *a = json_object_new_array();
	char name[64];
	for (int i = 0; i < NCAPS && a; i++) {
		if (!(set & (1ull << i)))
			continue;
		if (cap_oci_name(i, name) < 0) {
			json_object_put(a);
			return NULL;
		}
		json_object_array_add(a, json_object_new_string(name));
	}
	return a;
}

/* ---- seccomp --------------------------------------------------------------------------- */

struct deny {
	const char *name;
	int unless_cap; /* -1: denied always */
};
#define ALWAYS (-1)
/* What Docker's default profile keeps from a container without extra
 * capabilities, relaxed per capability as Docker relaxes it. */
static const struct deny deny_list[] = {
	{ "kexec_load", CAP_SYS_BOOT },
	{ "kexec_file_load", CAP_SYS_BOOT },
	{ "reboot", CAP_SYS_BOOT },
	{ "init_module", CAP_SYS_MODULE },
	{ "finit_module", CAP_SYS_MODULE },
	{ "delete_module", CAP_SYS_MODULE },
	{ "create_module", ALWAYS },
	{ "get_kernel_syms", ALWAYS },
	{ "query_module", ALWAYS },
	{ "swapon", CAP_SYS_ADMIN },
	{ "swapoff", CAP_SYS_ADMIN },
	{ "acct", CAP_SYS_PACCT },
	{ "add_key", ALWAYS },
	{ "keyctl", ALWAYS },
	{ "request_key", ALWAYS },
	{ "bpf", CAP_SYS_ADMIN },
	{ "perf_event_open", CAP_SYS_ADMIN },
	{ "lookup_dcookie", CAP_SYS_ADMIN },
	{ "ptrace", CAP_SYS_PTRACE },
	{ "process_vm_readv", CAP_SYS_PTRACE },
	{ "process_vm_writev", CAP_SYS_PTRACE },
	{ "kcmp", CAP_SYS_PTRACE },
	{ "mount", CAP_SYS_ADMIN },
	{ "umount", CAP_SYS_ADMIN },
	{ "umount2", CAP_SYS_ADMIN },
	{ "pivot_root", CAP_SYS_ADMIN },
	{ "unshare", CAP_SYS_ADMIN },
	{ "setns", CAP_SYS_ADMIN },
	{ "fsopen", CAP_SYS_ADMIN },
	{ "fsconfig", CAP_SYS_ADMIN },
	{ "fsmount", CAP_SYS_ADMIN },
	{ "fspick", CAP_SYS_ADMIN },
	{ "move_mount", CAP_SYS_ADMIN },
	{ "open_tree", CAP_SYS_ADMIN },
	{ "mount_setattr", CAP_SYS_ADMIN },
	{ "quotactl", CAP_SYS_ADMIN },
	{ "quotactl_fd", CAP_SYS_ADMIN },
	{ "name_to_handle_at", CAP_SYS_ADMIN },
	{ "sethostname", CAP_SYS_ADMIN },
	{ "setdomainname", CAP_SYS_ADMIN },
	{ "open_by_handle_at", CAP_DAC_READ_SEARCH },
	{ "settimeofday", CAP_SYS_TIME },
	{ "clock_settime", CAP_SYS_TIME },
	{ "clock_adjtime", CAP_SYS_TIME },
	{ "adjtimex", CAP_SYS_TIME },
	{ "stime", CAP_SYS_TIME },
	{ "iopl", CAP_SYS_RAWIO },
	{ "ioperm", CAP_SYS_RAWIO },
	{ "syslog", CAP_SYSLOG },
	{ "vhangup", CAP_SYS_TTY_CONFIG },
	{ "nfsservctl", ALWAYS },
	{ "get_mempolicy", CAP_SYS_NICE },
	{ "set_mempolicy", CAP_SYS_NICE },
	{ "mbind", CAP_SYS_NICE },
	{ "move_pages", CAP_SYS_NICE },
	{ "userfaultfd", ALWAYS },
	{ "uselib", ALWAYS },
	{ "ustat", ALWAYS },
	{ "sysfs", ALWAYS },
	{ "_sysctl", ALWAYS },
	{ "vm86", ALWAYS },
	{ "vm86old", ALWAYS },
	{ "fanotify_init", CAP_SYS_ADMIN },
	{ "io_pgetevents", ALWAYS },
	{ "pciconfig_read", CAP_SYS_ADMIN },
	{ "pciconfig_write", CAP_SYS_ADMIN },
	{ "pciconfig_iobase", CAP_SYS_ADMIN },
};

static const uint32_t seccomp_arches[] = { SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32 };

/* true when libseccomp maps the name to a real syscall number (not a
 * negative pseudo-syscall) on at least one target architecture */
static bool syscall_known(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(seccomp_arches); i++)
		if (seccomp_syscall_resolve_name_arch(seccomp_arches[i], name) >= 0)
			return true;
	return false;
}

static struct json_object *seccomp_profile(uint64_t caps)
{
	struct json_object *p = json_object_new_object(), *arches = json_object_new_array(),
			   *names = json_object_new_array(), *syscalls = json_object_new_array(),
			   *rule = json_object_new_object();
	json_object_object_add(p, "defaultAction", json_object_new_string("SCMP_ACT_ALLOW"));
	json_object_array_add(arches, json_object_new_string("SCMP_ARCH_X86_64"));
	json_object_array_add(arches, json_object_new_string("SCMP_ARCH_X86"));
	json_object_array_add(arches, json_object_new_string("SCMP_ARCH_X32"));
	json_object_object_add(p, "architectures", arches);
	for (size_t i = 0; i < ARRAY_SIZE(deny_list); i++) {
		const struct deny *d = &deny_list[i];
		if (d->unless_cap != ALWAYS && (caps & (1ull << d->unless_cap)))
			continue;
		if (!syscall_known(d->name))
			continue; /* never emit a name the runtime's libseccomp cannot resolve */
		json_object_array_add(names, json_object_new_string(d->name));
	}
	json_object_object_add(rule, "names", names);
	json_object_object_add(rule, "action", json_object_new_string("SCMP_ACT_ERRNO"));
	json_object_object_add(rule, "errnoRet", json_object_new_int(EPERM));
	json_object_array_add(syscalls, rule);
	/* clone3 cannot be filtered by its flags: ENOSYS makes libc fall back to clone */
	if (!(caps & (1ull << CAP_SYS_ADMIN)) && syscall_known("clone3")) {
		struct json_object *r3 = json_object_new_object(), *n3 = json_object_new_array();
		json_object_array_add(n3, json_object_new_string("clone3"));
		json_object_object_add(r3, "names", n3);
		json_object_object_add(r3, "action", json_object_new_string("SCMP_ACT_ERRNO"));
		json_object_object_add(r3, "errnoRet", json_object_new_int(ENOSYS));
		json_object_array_add(syscalls, r3);
	}
	json_object_object_add(p, "syscalls", syscalls);
	return p;
}

/* ---- mounts ------------------------------------------------------------------------------ */

static struct json_object *strs(const char *const *v)
{
	struct json_object *a = json_object_new_array();
	for (; *v; v++)
		json_object_array_add(a, json_object_new_string(*v));
	return a;
}

static void add_mount(struct json_object *mounts, const char *dst, const char *type, const char *src,
		      const char *const *opts)
{
	struct json_object *m = json_object_new_object();
	json_object_object_add(m, "destination", json_object_new_string(dst));
	json_object_object_add(m, "type", json_object_new_string(type));
	json_object_object_add(m, "source", json_object_new_string(src));
	json_object_object_add(m, "options", strs(opts));
	json_object_array_add(mounts, m);
}

static int volume_mounts(struct json_object *mounts)
{
	cleanup_fclose FILE *owned = NULL;
	cleanup_free struct vol_entry *v = NULL;
	FILE *in = stdin;
	size_t n = 0;
	char err[1024];
	int r;

	if (strcmp(arg.mounts_from, "-") != 0) {
		owned = fopen(arg.mounts_from, "re");
		if (!owned)
			return log_sys(errno, "cannot open '%s'", arg.mounts_from);
		in = owned;
	}
	if ((r = vol_read(in, &v, &n, err, sizeof(err))) < 0) {
		if (r != -EINVAL)
			return log_sys(r, "cannot read '%s'", arg.mounts_from);
		log_error("%s: %s", arg.mounts_from, err);
		return EXIT_REFUSED;
	}
	for (size_t i = 0; i < n; i++) {
		char src[128];
		snprintf(src, sizeof(src), "%s/%s", v[i].is_file ? GUEST_FILE_DIR : GUEST_VOLUME_DIR, v[i].tag);
		static const char *const rw[] = { "rbind", "rprivate", "nosuid", "nodev", NULL };
		static const char *const rdonly[] = { "rbind", "rprivate", "nosuid", "nodev", "ro", NULL };
		add_mount(mounts, v[i].target, "bind", src, v[i].readonly ? rdonly : rw);
	}
	return 0;
}

/* ---- the config ---------------------------------------------------------------------------- */

static struct json_object *device_rule(bool allow, const char *type, long major, long minor, const char *access)
{
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "allow", json_object_new_boolean(allow));
	if (type)
		json_object_object_add(d, "type", json_object_new_string(type));
	if (major >= 0)
		json_object_object_add(d, "major", json_object_new_int64(major));
	if (minor >= 0)
		json_object_object_add(d, "minor", json_object_new_int64(minor));
	json_object_object_add(d, "access", json_object_new_string(access));
	return d;
}

/* ---- the process: the command line, the image, the accounts ---------------------- */

struct proc_plan {
	struct imgcfg img;
	char *passwd, *group;
	size_t plen, glen;
	const char *args[2 * IMGCFG_MAX_LIST + 2];
	size_t nargs;
	const char *env[IMGCFG_MAX_LIST + MAX_LIST + 4];
	size_t nenv;
	const char *cwd;
	struct user_ids ids;
	char home_env[300];
};

static void proc_plan_free(struct proc_plan *p)
{
	imgcfg_free(&p->img);
	free(p->passwd);
	free(p->group);
}

static int read_input(const char *what, const char *path, size_t max, char **out, size_t *len)
{
	int r = read_small_file(path, max, out, len);
	if (r == -EFBIG) {
		log_error("%s '%s' is larger than %zu bytes", what, path, max);
		return EXIT_REFUSED;
	}
	if (r == -EINVAL) {
		log_error("%s '%s' is not a regular file", what, path);
		return EXIT_REFUSED;
	}
	if (r < 0)
		return log_sys(r, "cannot read %s '%s'", what, path);
	return 0;
}

static bool env_has(const char *const *v, size_t n, const char *entry)
{
	size_t k = strcspn(entry, "=");
	for (size_t i = 0; i < n; i++)
		if (!strncmp(v[i], entry, k) && v[i][k] == '=')
			return true;
	return false;
}

static int plan_process(struct proc_plan *p)
{
	char err[256];
	int r;
	if (arg.image_config) {
		cleanup_free char *buf = NULL;
		size_t len;
		if ((r = read_input("--image-config", arg.image_config, IMGCFG_MAX_BYTES, &buf, &len)))
			return r;
		r = imgcfg_parse(buf, len, &p->img, err, sizeof(err));
		if (r == -ENOMEM)
			return log_sys(r, "out of memory");
		if (r < 0) {
			log_error("image config '%s': %s", arg.image_config, err);
			return EXIT_REFUSED;
		}
	}
	if (arg.passwd && (r = read_input("--passwd", arg.passwd, IMGCFG_ACCOUNTS_MAX, &p->passwd, &p->plen)))
		return r;
	if (arg.group && (r = read_input("--group", arg.group, IMGCFG_ACCOUNTS_MAX, &p->group, &p->glen)))
		return r;

	/* the user: --user, else the image's */
	const char *spec = arg.user ? arg.user : p->img.user;
	if (spec && (arg.passwd || arg.group)) {
		if (userspec_resolve(spec, p->passwd, p->plen, p->group, p->glen, &p->ids, err, sizeof(err)) < 0) {
			log_error("%s: %s", arg.user ? "--user" : "the image's User", err);
			return EXIT_REFUSED;
		}
	} else if (spec) {
		if (parse_numeric_user(spec, &p->ids) < 0) {
			log_error("user '%s': names need the image's accounts (--passwd, --group); else UID[:GID] "
				  "numbers",
				  spec);
			return EXIT_REFUSED;
		}
	}

	/* --group-add: on top of the user's own groups, each once */
	for (size_t i = 0; i < arg.ngroup_add; i++) {
		bool have = false;
		for (size_t j = 0; j < p->ids.nextra && !have; j++)
			have = p->ids.extra[j] == arg.group_add[i];
		if (have)
			continue;
		if (p->ids.nextra == IMGCFG_GROUPS_MAX) {
			log_error("more than %d supplementary groups", IMGCFG_GROUPS_MAX);
			return EXIT_REFUSED;
		}
		p->ids.extra[p->ids.nextra++] = arg.group_add[i];
	}

	/* the command: Docker's rules. --entrypoint replaces the image's
	 * Entrypoint and drops its Cmd; a command given here replaces Cmd. */
	if (!arg.serve) {
		if (arg.entrypoint && *arg.entrypoint)
			p->args[p->nargs++] = arg.entrypoint;
		for (size_t i = 0; !arg.entrypoint && i < p->img.nentrypoint; i++)
			p->args[p->nargs++] = p->img.entrypoint[i];
		for (int i = 0; i < arg.argc; i++)
			p->args[p->nargs++] = arg.argv[i];
		for (size_t i = 0; !arg.argc && !arg.entrypoint && i < p->img.ncmd; i++)
			p->args[p->nargs++] = p->img.cmd[i];
		if (!p->nargs && arg.image_config) {
			log_error(arg.entrypoint ? "no command given (--entrypoint '' leaves none)"
						 : "no command given, and the image has neither Entrypoint nor Cmd");
			return EXIT_REFUSED;
		}
		if (!p->nargs && !arg.init) {
			log_error("no command given (--entrypoint '' leaves none)");
			return EXIT_REFUSED;
		}
	}

	/* the environment: PATH unless one is given, the image's (an --env of
	 * the same name wins), ours, HOME from the accounts unless given */
	bool have_path = env_has((const char *const *)p->img.env, p->img.nenv, "PATH=") ||
			 env_has(arg.env, (size_t)arg.nenv, "PATH=");
	if (!have_path)
		p->env[p->nenv++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	if (arg.terminal)
		p->env[p->nenv++] = "TERM=xterm";
	for (size_t i = 0; i < p->img.nenv; i++)
		if (!env_has(arg.env, (size_t)arg.nenv, p->img.env[i]))
			p->env[p->nenv++] = p->img.env[i];
	for (int i = 0; i < arg.nenv; i++)
		p->env[p->nenv++] = arg.env[i];
	if (p->ids.home[0] && !env_has(p->env, p->nenv, "HOME=")) {
		snprintf(p->home_env, sizeof(p->home_env), "HOME=%s", p->ids.home);
		p->env[p->nenv++] = p->home_env;
	}
	p->cwd = arg.cwd ? arg.cwd : p->img.workdir ? p->img.workdir : "/";
	return 0;
}

static int build(struct json_object **out)
{
	uint64_t caps;
	if (final_caps(&caps) < 0)
		return EXIT_REFUSED;
	__attribute__((cleanup(proc_plan_free))) struct proc_plan plan = { 0 };
	int pr = plan_process(&plan);
	if (pr)
		return pr;
	bool privileged_shape = arg.privileged || (caps & (1ull << CAP_SYS_ADMIN));

	struct json_object *c = json_object_new_object();
	struct json_object *proc = json_object_new_object(), *user = json_object_new_object();
	struct json_object *args = json_object_new_array(), *env = json_object_new_array();
	struct json_object *capsobj = json_object_new_object(), *rl = json_object_new_array();
	struct json_object *root = json_object_new_object(), *mounts = json_object_new_array();
	struct json_object *linux_ = json_object_new_object(), *ns = json_object_new_array();
	struct json_object *res = json_object_new_object(), *devs = json_object_new_array();

	json_object_object_add(c, "ociVersion", json_object_new_string("1.0.2"));
	json_object_object_add(proc, "terminal", json_object_new_boolean(arg.terminal));
	json_object_object_add(user, "uid", json_object_new_int64(plan.ids.uid));
	json_object_object_add(user, "gid", json_object_new_int64(plan.ids.gid));
	if (plan.ids.nextra) {
		struct json_object *extra = json_object_new_array();
		for (size_t i = 0; i < plan.ids.nextra; i++)
			json_object_array_add(extra, json_object_new_int64(plan.ids.extra[i]));
		json_object_object_add(user, "additionalGids", extra);
	}
	json_object_object_add(proc, "user", user);
	if (arg.init) {
		json_object_array_add(args, json_object_new_string(CONTAINER_INIT));
		json_object_array_add(
			args, json_object_new_string(plan.nargs ? CONTAINER_INIT_WORKLOAD : CONTAINER_INIT_SERVE));
	}
	for (size_t i = 0; i < plan.nargs; i++)
		json_object_array_add(args, json_object_new_string(plan.args[i]));
	json_object_object_add(proc, "args", args);
	for (size_t i = 0; i < plan.nenv; i++)
		json_object_array_add(env, json_object_new_string(plan.env[i]));
	json_object_object_add(proc, "env", env);
	json_object_object_add(proc, "cwd", json_object_new_string(plan.cwd));
	const char *sets[] = { "bounding", "effective", "permitted" };
	for (size_t i = 0; i < ARRAY_SIZE(sets); i++) {
		struct json_object *a = caps_array(caps);
		if (!a) {
			json_object_put(c);
			log_error("libcap does not name every capability up to CAP_CHECKPOINT_RESTORE");
			return EXIT_SYSTEM;
		}
		json_object_object_add(capsobj, sets[i], a);
	}
	json_object_object_add(capsobj, "inheritable", json_object_new_array());
	json_object_object_add(capsobj, "ambient", json_object_new_array());
	json_object_object_add(proc, "capabilities", capsobj);
	struct json_object *nofile = json_object_new_object();
	json_object_object_add(nofile, "type", json_object_new_string("RLIMIT_NOFILE"));
	json_object_object_add(nofile, "hard", json_object_new_int64(1024));
	json_object_object_add(nofile, "soft", json_object_new_int64(1024));
	json_object_array_add(rl, nofile);
	json_object_object_add(proc, "rlimits", rl);
	json_object_object_add(proc, "noNewPrivileges", json_object_new_boolean(false));
	json_object_object_add(c, "process", proc);

	json_object_object_add(root, "path", json_object_new_string(arg.rootfs));
	json_object_object_add(root, "readonly", json_object_new_boolean(arg.readonly_rootfs));
	json_object_object_add(c, "root", root);
	json_object_object_add(c, "hostname", json_object_new_string(arg.hostname));

	add_mount(mounts, "/proc", "proc", "proc", (const char *const[]){ "nosuid", "noexec", "nodev", NULL });
	add_mount(mounts, "/dev", "tmpfs", "tmpfs",
		  (const char *const[]){ "nosuid", "strictatime", "mode=755", "size=65536k", NULL });
	add_mount(mounts, "/dev/pts", "devpts", "devpts",
		  (const char *const[]){ "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5",
					 NULL });
	add_mount(mounts, "/dev/shm", "tmpfs", "shm",
		  (const char *const[]){ "nosuid", "noexec", "nodev", "mode=1777", "size=65536k", NULL });
	add_mount(mounts, "/dev/mqueue", "mqueue", "mqueue",
		  (const char *const[]){ "nosuid", "noexec", "nodev", NULL });
	if (arg.privileged)
		add_mount(mounts, "/sys", "sysfs", "sysfs", (const char *const[]){ "nosuid", "noexec", "nodev", NULL });
	else
		add_mount(mounts, "/sys", "sysfs", "sysfs",
			  (const char *const[]){ "nosuid", "noexec", "nodev", "ro", NULL });
	if (privileged_shape)
		add_mount(mounts, "/sys/fs/cgroup", "cgroup2", "cgroup",
			  (const char *const[]){ "nosuid", "noexec", "nodev", "relatime", NULL });
	else
		add_mount(mounts, "/sys/fs/cgroup", "cgroup2", "cgroup",
			  (const char *const[]){ "nosuid", "noexec", "nodev", "relatime", "ro", NULL });
	if (arg.init)
		add_mount(mounts, CONTAINER_INIT, "bind", GUEST_INIT,
			  (const char *const[]){ "bind", "ro", "nodev", NULL });
	if (arg.mounts_from) {
		int r = volume_mounts(mounts);
		if (r) {
			json_object_put(c);
			json_object_put(mounts);
			json_object_put(linux_);
			json_object_put(ns);
			json_object_put(res);
			json_object_put(devs);
			return r;
		}
	}
	json_object_object_add(c, "mounts", mounts);

	static const char *const nss[] = { "pid", "network", "ipc", "uts", "mount", "cgroup" };
	for (size_t i = 0; i < ARRAY_SIZE(nss); i++) {
		if (arg.vm_network && !strcmp(nss[i], "network"))
			continue;
		struct json_object *n = json_object_new_object();
		json_object_object_add(n, "type", json_object_new_string(nss[i]));
		json_object_array_add(ns, n);
	}
	json_object_object_add(linux_, "namespaces", ns);
	if (arg.privileged) {
		json_object_array_add(devs, device_rule(true, NULL, -1, -1, "rwm"));
	} else {
		/* Docker's default device rules */
		json_object_array_add(devs, device_rule(false, NULL, -1, -1, "rwm"));
		json_object_array_add(devs, device_rule(true, "c", -1, -1, "m"));
		json_object_array_add(devs, device_rule(true, "b", -1, -1, "m"));
		static const long cdev[][2] = { { 1, 3 }, { 1, 5 }, { 1, 7 }, { 1, 8 },	   { 1, 9 },
						{ 5, 0 }, { 5, 1 }, { 5, 2 }, { 10, 200 }, { 136, -1 } };
		for (size_t i = 0; i < ARRAY_SIZE(cdev); i++)
			json_object_array_add(devs, device_rule(true, "c", cdev[i][0], cdev[i][1], "rwm"));
	}
	json_object_object_add(res, "devices", devs);
	json_object_object_add(linux_, "resources", res);
	if (privileged_shape) {
		json_object_object_add(linux_, "maskedPaths", json_object_new_array());
		json_object_object_add(linux_, "readonlyPaths", json_object_new_array());
	} else {
		json_object_object_add(
			linux_, "maskedPaths",
			strs((const char *const[]){ "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore",
						    "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
						    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
						    "/sys/firmware", "/sys/devices/virtual/powercap", NULL }));
		json_object_object_add(linux_, "readonlyPaths",
				       strs((const char *const[]){ "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
								   "/proc/sysrq-trigger", NULL }));
	}
	if (arg.seccomp && !arg.privileged)
		json_object_object_add(linux_, "seccomp", seccomp_profile(caps));
	json_object_object_add(c, "linux", linux_);
	/* --etc-file: the files the guest init writes into the container's /etc */
	if (arg.netc) {
		struct json_object *ann = json_object_new_object();
		for (int i = 0; i < arg.netc; i++) {
			cleanup_free char *text = NULL;
			size_t len = 0;
			char key[64];
			int r = read_input("--etc-file", arg.etc_path[i], CONFIG_ETC_MAX, &text, &len);
			if (!r && memchr(text, 0, len)) {
				log_error("--etc-file '%s' holds a NUL byte", arg.etc_path[i]);
				r = EXIT_REFUSED;
			}
			if (r) {
				json_object_put(ann);
				json_object_put(c);
				return r;
			}
			snprintf(key, sizeof(key), CONFIG_ETC_PREFIX "%.*s",
				 (int)(arg.etc_path[i] - 1 - arg.etc_name[i]), arg.etc_name[i]);
			json_object_object_add(ann, key, json_object_new_string_len(text, (int)len));
		}
		json_object_object_add(c, "annotations", ann);
	}
	*out = c;
	return 0;
}

static int emit(struct json_object *c)
{
	const char *s = json_object_to_json_string_ext(c, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
								  JSON_C_TO_STRING_NOSLASHESCAPE);
	cleanup_free char *dir = NULL;
	cleanup_close int dfd = -1;
	const char *name;
	int r;

	if (!arg.output && !arg.bundle) {
		if (puts(s) == EOF)
			return log_sys(errno, "cannot write stdout");
		return 0;
	}
	if (arg.bundle) {
		dir = strdup(arg.bundle);
		name = "config.json";
	} else {
		const char *slash = strrchr(arg.output, '/');
		dir = slash ? strndup(arg.output, (size_t)(slash - arg.output) + (slash == arg.output)) : strdup(".");
		name = slash ? slash + 1 : arg.output;
		if (!*name) {
			log_error("--output '%s' names a directory", arg.output);
			return EXIT_USAGE;
		}
	}
	if (!dir)
		return log_sys(ENOMEM, "out of memory");
	dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return log_sys(errno, "cannot open directory '%s'", dir);
	size_t len = strlen(s);
	cleanup_free char *buf = malloc(len + 1);
	if (!buf)
		return log_sys(ENOMEM, "out of memory");
	memcpy(buf, s, len);
	buf[len] = '\n';
	r = write_file_atomic(dfd, name, buf, len + 1, 0644);
	if (r < 0)
		return log_sys(r, "cannot write '%s/%s'", dir, name);
	return 0;
}

static int tool_main(int argc, char **argv)
{
	int r;
	log_init(argv[0]);
	if (parse_argv(argc, argv) < 0)
		return EXIT_USAGE;
	cleanup_json struct json_object *c = NULL;
	r = build(&c);
	if (r == 0)
		r = emit(c);
	if (close_stdout() < 0 && r == 0)
		r = log_sys(errno ? errno : EIO, "cannot write stdout");
	return r;
}

int main(int argc, char **argv)
{
	return tool_exit(tool_main(argc, argv));
}
