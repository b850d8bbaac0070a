/* SPDX-License-Identifier: MIT */
/* --network netns:PATH: the guest takes over the network of a namespace a
 * container engine made (Docker, Podman: a veth with an IPv4 address and a
 * default route), the way Kata Containers' "tcfilter" mode does, for an OCI
 * runtime. In that namespace a tap device, bxtap0, is made, and tc filters
 * redirect every frame both ways between the interface and the tap:
 *
 *     IF ingress     --u32 match all, mirred egress redirect-->  bxtap0
 *     bxtap0 ingress --u32 match all, mirred egress redirect-->  IF
 *
 * so the namespace's own stack never sees a frame of IF's again and the
 * guest, whose eth0 has IF's MAC, address, prefix, MTU and default route,
 * answers in its place. QEMU gets the tap's descriptor (-netdev tap,fd=4),
 * never the namespace: it keeps its empty network namespace and its seccomp
 * filter. The engine owns the policy (the namespace's firewall, its routes
 * beyond the veth); the guest can send any frame the veth carries.
 *
 * vm-launch is multi-threaded (its log thread): it never enters the
 * namespace itself. A forked child does (setns), reads the facts, makes the
 * tap and the filters with rtnetlink and ioctls (no tc binary, no shell),
 * and hands the facts and the tap's descriptor back over a socket pair
 * (SCM_RIGHTS); it runs no code that could take a lock another thread held
 * at the fork (no malloc, no FILE stream, no strerror: the parent words the
 * errors). It is bounded: netlink answers within NL_TIMEOUT_S, the whole
 * child within NETNS_TIMEOUT_MS, else it is killed. The claim on IF is its
 * ingress qdisc, added with NLM_F_EXCL: a second sandbox on the same
 * namespace gets EEXIST, "already taken". At stop another child enters the
 * namespace again (through the descriptor opened once at the start) and
 * removes that qdisc, with IF's filter; the tap goes with QEMU, its last
 * holder. */
#include "common.h"
#include "guest-abi.h"
#include "launch.h"
#include "netspec.h"
#include "testhook.h"

/* before the kernel's headers: they then leave its definitions alone */
#include <net/if.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_arp.h>
#include <linux/if_tun.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>

#define NETNS_TAP "bxtap0"
#define NETNS_TIMEOUT_MS 10000	   /* the whole setup child */
#define NETNS_STOP_TIMEOUT_MS 5000 /* the child that removes the claim */
#define NL_TIMEOUT_S 3		   /* one netlink answer */
#define NS_LINKS_MAX 64		   /* interfaces in the namespace */
#define NS_NAMES_MAX 8		   /* interfaces named in an error */

/* ---- the child's side: rtnetlink ----------------------------------------------------------- */

static unsigned char nl_rx[65536];

static int nl_open(void)
{
	struct timeval tv = { NL_TIMEOUT_S, 0 };
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* a request under construction: a header, a family struct, attributes */
struct nlreq {
	union {
		struct nlmsghdr h;
		unsigned char b[1024];
	};
	bool overflow;
};

static void nl_init(struct nlreq *r, uint16_t type, uint16_t flags, const void *body, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->h.nlmsg_type = type;
	r->h.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
	r->h.nlmsg_len = (uint32_t)NLMSG_LENGTH(len);
	memcpy(NLMSG_DATA(&r->h), body, len);
}

static struct rtattr *nl_attr(struct nlreq *r, unsigned short type, const void *data, size_t len)
{
	size_t at = NLMSG_ALIGN(r->h.nlmsg_len);
	if (at + RTA_SPACE(len) > sizeof(r->b)) {
		r->overflow = true;
		return (struct rtattr *)r->b; /* harmless: the request is never sent */
	}
	struct rtattr *a = (struct rtattr *)(r->b + at);
	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(a), data, len);
	r->h.nlmsg_len = (uint32_t)(at + RTA_SPACE(len));
	return a;
}

static void nl_nest_end(struct nlreq *r, struct rtattr *nest)
{
	if (!r->overflow)
		nest->rta_len = (unsigned short)(r->b + r->h.nlmsg_len - (unsigned char *)nest);
}

/* Send r; with cb, a dump: cb for each answer until NLMSG_DONE; without,
 * an ACK'd request. 0, or -errno (the kernel's, or -ETIMEDOUT). */
static int nl_talk(int fd, struct nlreq *r, int (*cb)(const struct nlmsghdr *, void *), void *ctx)
{
	static uint32_t seq;
	if (r->overflow)
		return -ENOBUFS;
	r->h.nlmsg_seq = ++seq;
	if (!cb)
		r->h.nlmsg_flags |= NLM_F_ACK;
	if (send(fd, &r->h, r->h.nlmsg_len, 0) < 0)
		return -errno;
	for (;;) {
		ssize_t n = recv(fd, nl_rx, sizeof(nl_rx), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		size_t left = (size_t)n;
		for (const struct nlmsghdr *h = (const struct nlmsghdr *)nl_rx; NLMSG_OK(h, left);
		     h = NLMSG_NEXT(h, left)) {
			if (h->nlmsg_seq != r->h.nlmsg_seq)
				continue;
			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
					return -EPROTO;
				if (e->error || !cb)
					return e->error;
				continue;
			}
			if (cb) {
				int k = cb(h, ctx);
				if (k < 0)
					return k;
			}
		}
	}
}

/* the attributes of a message after its family struct of len bytes, by type */
static void nl_parse(const struct nlmsghdr *h, size_t len, const struct rtattr **tb, int max)
{
	memset(tb, 0, sizeof(*tb) * (size_t)(max + 1));
	if (h->nlmsg_len < NLMSG_LENGTH(len))
		return;
	int left = (int)(h->nlmsg_len - NLMSG_LENGTH(len));
	for (const struct rtattr *a = (const struct rtattr *)((const char *)NLMSG_DATA(h) + NLMSG_ALIGN(len));
	     RTA_OK(a, left); a = RTA_NEXT(a, left))
		if (a->rta_type <= max && !tb[a->rta_type])
			tb[a->rta_type] = a;
}

/* ---- the child's side: what the namespace holds ------------------------------------------ */

struct nslink {
	int index;
	unsigned flags, type;
	char name[IFNAMSIZ];
	int mtu;
	unsigned char mac[6];
	bool has_mac;
	int naddr; /* IPv4 addresses */
	uint32_t addr;
	int prefix;
};

struct nsscan {
	struct nslink link[NS_LINKS_MAX];
	int nlinks;
	bool too_many;
	int chosen;	  /* its index in link[] */
	uint32_t gateway; /* host order, 0: none */
};

static struct nslink *link_by_index(struct nsscan *s, int index)
{
	for (int i = 0; i < s->nlinks; i++)
		if (s->link[i].index == index)
			return &s->link[i];
	return NULL;
}

static int on_link(const struct nlmsghdr *h, void *ctx)
{
	struct nsscan *s = ctx;
	const struct ifinfomsg *ifi = NLMSG_DATA(h);
	const struct rtattr *tb[IFLA_MAX + 1];
	if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifi)))
		return 0;
	if (s->nlinks == NS_LINKS_MAX) {
		s->too_many = true;
		return 0;
	}
	nl_parse(h, sizeof(*ifi), tb, IFLA_MAX);
	struct nslink *l = &s->link[s->nlinks++];
	memset(l, 0, sizeof(*l));
	l->index = ifi->ifi_index;
	l->flags = ifi->ifi_flags;
	l->type = ifi->ifi_type;
	if (tb[IFLA_IFNAME]) {
		size_t n = RTA_PAYLOAD(tb[IFLA_IFNAME]);
		memcpy(l->name, RTA_DATA(tb[IFLA_IFNAME]), n < IFNAMSIZ - 1 ? n : IFNAMSIZ - 1);
	}
	if (tb[IFLA_MTU] && RTA_PAYLOAD(tb[IFLA_MTU]) >= sizeof(uint32_t))
		l->mtu = (int)*(const uint32_t *)RTA_DATA(tb[IFLA_MTU]);
	if (tb[IFLA_ADDRESS] && RTA_PAYLOAD(tb[IFLA_ADDRESS]) == 6) {
		memcpy(l->mac, RTA_DATA(tb[IFLA_ADDRESS]), 6);
		l->has_mac = true;
	}
	return 0;
}

static int on_addr(const struct nlmsghdr *h, void *ctx)
{
	struct nsscan *s = ctx;
	const struct ifaddrmsg *ifa = NLMSG_DATA(h);
	const struct rtattr *tb[IFA_MAX + 1];
	if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifa)) || ifa->ifa_family != AF_INET)
		return 0;
	nl_parse(h, sizeof(*ifa), tb, IFA_MAX);
	const struct rtattr *a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	struct nslink *l = link_by_index(s, (int)ifa->ifa_index);
	if (!l || !a || RTA_PAYLOAD(a) != 4 || (l->flags & IFF_LOOPBACK))
		return 0;
	if (l->naddr++ == 0) {
		uint32_t v;
		memcpy(&v, RTA_DATA(a), 4);
		l->addr = ntohl(v);
		l->prefix = ifa->ifa_prefixlen;
	}
	return 0;
}

static int on_route(const struct nlmsghdr *h, void *ctx)
{
	struct nsscan *s = ctx;
	const struct rtmsg *rt = NLMSG_DATA(h);
	const struct rtattr *tb[RTA_MAX + 1];
	if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(*rt)) || rt->rtm_family != AF_INET ||
	    rt->rtm_dst_len != 0 || rt->rtm_type != RTN_UNICAST || s->gateway)
		return 0;
	nl_parse(h, sizeof(*rt), tb, RTA_MAX);
	uint32_t table = rt->rtm_table;
	if (tb[RTA_TABLE] && RTA_PAYLOAD(tb[RTA_TABLE]) >= 4)
		table = *(const uint32_t *)RTA_DATA(tb[RTA_TABLE]);
	if (table != RT_TABLE_MAIN || !tb[RTA_GATEWAY] || RTA_PAYLOAD(tb[RTA_GATEWAY]) != 4 || !tb[RTA_OIF] ||
	    RTA_PAYLOAD(tb[RTA_OIF]) < 4 || *(const int *)RTA_DATA(tb[RTA_OIF]) != s->link[s->chosen].index)
		return 0;
	uint32_t v;
	memcpy(&v, RTA_DATA(tb[RTA_GATEWAY]), 4);
	s->gateway = ntohl(v);
	return 0;
}

static int dump(int nl, uint16_t type, const void *body, size_t len, int (*cb)(const struct nlmsghdr *, void *),
		void *ctx)
{
	struct nlreq r;
	nl_init(&r, type, NLM_F_DUMP, body, len);
	return nl_talk(nl, &r, cb, ctx);
}

/* ---- the child's side: the claim, the tap, the redirects ---------------------------------- */

static int qdisc_ingress(int nl, int index, bool add)
{
	struct tcmsg t = { .tcm_family = AF_UNSPEC,
			   .tcm_ifindex = index,
			   .tcm_handle = TC_H_MAKE(TC_H_INGRESS, 0),
			   .tcm_parent = TC_H_INGRESS };
	struct nlreq r;
	nl_init(&r, add ? RTM_NEWQDISC : RTM_DELQDISC, add ? NLM_F_CREATE | NLM_F_EXCL : 0, &t, sizeof(t));
	nl_attr(&r, TCA_KIND, "ingress", sizeof("ingress"));
	return nl_talk(nl, &r, NULL, NULL);
}

/* on from's ingress: u32 match u32 0 0 (every frame, any protocol),
 * action mirred egress redirect dev to */
static int redirect(int nl, int from, int to)
{
	struct tcmsg t = { .tcm_family = AF_UNSPEC,
			   .tcm_ifindex = from,
			   .tcm_parent = TC_H_MAKE(TC_H_INGRESS, 0),
			   .tcm_info = TC_H_MAKE(0, htons(ETH_P_ALL)) };
	struct {
		struct tc_u32_sel sel;
		struct tc_u32_key key;
	} sel = { .sel = { .flags = TC_U32_TERMINAL, .nkeys = 1 } };
	struct tc_mirred m = { .action = TC_ACT_STOLEN, .eaction = TCA_EGRESS_REDIR, .ifindex = (uint32_t)to };
	struct nlreq r;
	nl_init(&r, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, &t, sizeof(t));
	nl_attr(&r, TCA_KIND, "u32", sizeof("u32"));
	struct rtattr *opts = nl_attr(&r, TCA_OPTIONS, NULL, 0);
	nl_attr(&r, TCA_U32_SEL, &sel, sizeof(sel));
	struct rtattr *acts = nl_attr(&r, TCA_U32_ACT, NULL, 0);
	struct rtattr *first = nl_attr(&r, 1, NULL, 0);
	nl_attr(&r, TCA_ACT_KIND, "mirred", sizeof("mirred"));
	struct rtattr *aopts = nl_attr(&r, TCA_ACT_OPTIONS, NULL, 0);
	nl_attr(&r, TCA_MIRRED_PARMS, &m, sizeof(m));
	nl_nest_end(&r, aopts);
	nl_nest_end(&r, first);
	nl_nest_end(&r, acts);
	nl_nest_end(&r, opts);
	return nl_talk(nl, &r, NULL, NULL);
}

/* what the child says: the claim is made (so a parent that has to kill it
 * removes it), then one of done (with the tap), no interface, or failed */
enum { NSM_CLAIMED = 'A', NSM_OK = 'K', NSM_NONE = 'N', NSM_FAIL = 'E' };
struct nsmsg {
	char kind;
	int err;    /* NSM_FAIL: an errno, or 0 (then text is the whole story) */
	bool whole; /* NSM_FAIL: text is the whole message, PATH named in it */
	struct netns_if nsif;
	char text[512]; /* NSM_FAIL: the step; NSM_NONE: the interfaces */
};

static int ns_send(int out, const struct nsmsg *m, int fd)
{
	return send_with_fd(out, m, sizeof(*m), fd);
}

/* the child's failure: what was made goes (the claim; the tap goes when
 * the child exits), then the step and errno go to the parent */
struct nschild {
	int out, nl;
	int claimed; /* IF's index when its ingress qdisc is ours, else 0 */
	struct nsmsg m;
};

static int child_fail(struct nschild *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int child_fail(struct nschild *c, int err, const char *fmt, ...)
{
	va_list ap;
	if (c->claimed && c->nl >= 0)
		qdisc_ingress(c->nl, c->claimed, false);
	c->m.kind = NSM_FAIL;
	c->m.err = err < 0 ? -err : err;
	va_start(ap, fmt);
	vsnprintf(c->m.text, sizeof(c->m.text), fmt, ap);
	va_end(ap);
	ns_send(c->out, &c->m, -1);
	return EXIT_LAUNCH;
}

/* a test build can fail the setup at a named step, or stall it there */
static bool fail_at(const char *step)
{
	const char *f = test_getenv("BOXKIT_TEST_NETNS_FAIL_AT"), *s = test_getenv("BOXKIT_TEST_NETNS_STALL_AT");
	if (s && !strcmp(s, step))
		for (;;)
			pause();
	return f && !strcmp(f, step);
}

static int setup_child(int nsfd, int out, const char *path)
{
	static struct nsscan s;
	struct nschild c = { .out = out, .nl = -1 };
	int r;
	if (setns(nsfd, CLONE_NEWNET) < 0)
		return child_fail(&c, errno, "enter the network namespace");
	if ((c.nl = nl_open()) < 0)
		return child_fail(&c, c.nl, "open a netlink socket in it");
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
	struct ifaddrmsg ifa = { .ifa_family = AF_INET };
	struct rtmsg rtm = { .rtm_family = AF_INET };
	if ((r = dump(c.nl, RTM_GETLINK, &ifi, sizeof(ifi), on_link, &s)) < 0)
		return child_fail(&c, r, "list its interfaces");
	if (s.too_many)
		return child_fail(&c, 0, "it has more than %d interfaces", NS_LINKS_MAX);
	if ((r = dump(c.nl, RTM_GETADDR, &ifa, sizeof(ifa), on_addr, &s)) < 0)
		return child_fail(&c, r, "list its addresses");
	/* exactly one interface but lo with IPv4 */
	int found = 0;
	char names[NS_NAMES_MAX * (IFNAMSIZ + 2)] = "";
	size_t o = 0;
	for (int i = 0; i < s.nlinks; i++) {
		if (!s.link[i].naddr)
			continue;
		if (found++ < NS_NAMES_MAX && o < sizeof(names))
			o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", o ? ", " : "", s.link[i].name);
		s.chosen = i;
	}
	if (found == 0) {
		c.m.kind = NSM_NONE;
		o = 0;
		for (int i = 0; i < s.nlinks && o < sizeof(c.m.text); i++)
			o += (size_t)snprintf(c.m.text + o, sizeof(c.m.text) - o, "%s%s", o ? ", " : "",
					      s.link[i].name);
		return ns_send(out, &c.m, -1) < 0 ? EXIT_LAUNCH : 0;
	}
	if (found > 1)
		return child_fail(&c, 0, "%d interfaces have an IPv4 address (%s%s): the guest takes over exactly one",
				  found, names, found > NS_NAMES_MAX ? ", ..." : "");
	const struct nslink *l = &s.link[s.chosen];
	struct netns_if *f = &c.m.nsif;
	snprintf(f->name, sizeof(f->name), "%s", l->name);
	if (l->naddr > 1)
		return child_fail(&c, 0, "its interface %s has %d IPv4 addresses: the guest takes over exactly one",
				  l->name, l->naddr);
	if (l->type != ARPHRD_ETHER || !l->has_mac)
		return child_fail(&c, 0,
				  "its interface %s is not an Ethernet interface (type %u): frames cannot be "
				  "passed to the guest",
				  l->name, l->type);
	if (l->mtu < 576 || l->mtu > 65535)
		return child_fail(&c, 0, "its interface %s has an MTU of %d (576 to 65535 are used)", l->name, l->mtu);
	if (l->prefix < 1 || l->prefix > 32)
		return child_fail(&c, 0, "its interface %s has a /%d address (1 to 32 are used)", l->name, l->prefix);
	f->index = l->index;
	f->addr = l->addr;
	f->prefix = l->prefix;
	f->mtu = l->mtu;
	memcpy(f->mac, l->mac, 6);
	f->up = (l->flags & IFF_UP) != 0;
	if ((r = dump(c.nl, RTM_GETROUTE, &rtm, sizeof(rtm), on_route, &s)) < 0)
		return child_fail(&c, r, "read its routes");
	f->gateway = s.gateway;

	/* the claim: IF's ingress qdisc, exclusive */
	r = fail_at("claim") ? -EIO : qdisc_ingress(c.nl, l->index, true);
	if (r == -EEXIST) {
		c.m.whole = true;
		return child_fail(&c, 0,
				  "the interface %s of %s is already taken (it has an ingress qdisc: another "
				  "sandbox's, or the engine's own)",
				  l->name, path);
	}
	if (r < 0)
		return child_fail(&c, r, "add an ingress qdisc to %s", l->name);
	c.claimed = l->index;
	c.m.kind = NSM_CLAIMED;
	if ((r = ns_send(out, &c.m, -1)) < 0)
		return child_fail(&c, r, "report to vm-launch");

	/* the tap: non-persistent, gone with its last descriptor (QEMU's) */
	cleanup_close int tap = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (tap < 0)
		return child_fail(&c, errno, "open /dev/net/tun");
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), NETNS_TAP);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	int e = fail_at("tap") ? EIO : ioctl(tap, TUNSETIFF, &ifr) < 0 ? errno : 0;
	if (e)
		return child_fail(&c, e, "create the tap device " NETNS_TAP "%s",
				  e == EBUSY || e == EINVAL ? " (a device of that name is there already)" : "");
	cleanup_close int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sk < 0)
		return child_fail(&c, errno, "open a socket in the namespace");
	ifr.ifr_mtu = l->mtu;
	if (ioctl(sk, SIOCSIFMTU, &ifr) < 0)
		return child_fail(&c, errno, "set the MTU of " NETNS_TAP " to %d", l->mtu);
	if (ioctl(sk, SIOCGIFFLAGS, &ifr) < 0)
		return child_fail(&c, errno, "read the flags of " NETNS_TAP);
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(sk, SIOCSIFFLAGS, &ifr) < 0)
		return child_fail(&c, errno, "bring " NETNS_TAP " up");
	if (ioctl(sk, SIOCGIFINDEX, &ifr) < 0)
		return child_fail(&c, errno, "read the index of " NETNS_TAP);
	int tapi = ifr.ifr_ifindex;

	/* both ways */
	if ((r = fail_at("filter") ? -EIO : redirect(c.nl, l->index, tapi)) < 0)
		return child_fail(&c, r, "redirect %s's frames to " NETNS_TAP, l->name);
	if ((r = qdisc_ingress(c.nl, tapi, true)) < 0)
		return child_fail(&c, r, "add an ingress qdisc to " NETNS_TAP);
	if ((r = redirect(c.nl, tapi, l->index)) < 0)
		return child_fail(&c, r, "redirect " NETNS_TAP "'s frames to %s", l->name);
	c.m.kind = NSM_OK;
	if ((r = ns_send(out, &c.m, tap)) < 0)
		return child_fail(&c, r, "hand the tap to vm-launch");
	return 0;
}

static int stop_child(int nsfd, int index)
{
	if (setns(nsfd, CLONE_NEWNET) < 0)
		return 1;
	cleanup_close int nl = nl_open();
	if (nl < 0)
		return 1;
	int r = qdisc_ingress(nl, index, false);
	return r == 0 ? 0 : r == -ENODEV || r == -ENOENT || r == -EINVAL ? 2 : 1;
}

/* ---- vm-launch's side ---------------------------------------------------------------------- */

static long ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* A child in the namespace: with index 0 it sets the network up and talks
 * on *out (the parent's end of its socket); else it removes the claim on the
 * interface of that index. */
static pid_t fork_child(struct net *n, int *out, int index)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid_t parent = getpid(), pid = fork();
	if (pid < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		return -e;
	}
	if (pid == 0) {
		close(sv[0]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(EXIT_LAUNCH);
		_exit(index ? stop_child(n->ns_fd, index) : setup_child(n->ns_fd, sv[1], arg.netns));
	}
	close(sv[1]);
	*out = sv[0];
	return pid;
}

/* wait for pid at most until t0 + ms, then kill it; its wait status, or -1
 * when it had to be killed */
static int reap(pid_t pid, const struct timespec *t0, long ms)
{
	int st;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			return st;
		if (w < 0 && errno != EINTR)
			return -1;
		if (ms_since(t0) >= ms)
			break;
		struct timespec tick = { 0, 10 * 1000000 };
		nanosleep(&tick, NULL);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
	}
	return -1;
}

int netns_prepare(struct vm *vm)
{
	struct net *n = &vm->net;
	struct statfs sfs;
	if (geteuid() != 0) {
		log_error("--network netns needs root: it enters the namespace and makes a tap device in it; no VM was "
			  "started");
		return EXIT_LAUNCH;
	}
	n->ns_fd = open(arg.netns, O_RDONLY | O_CLOEXEC);
	if (n->ns_fd < 0)
		return log_sys(errno, "--network netns: cannot open '%s'", arg.netns), EXIT_LAUNCH;
	if (fstatfs(n->ns_fd, &sfs) < 0)
		return log_sys(errno, "--network netns: cannot fstatfs '%s'", arg.netns), EXIT_LAUNCH;
	if (sfs.f_type != NSFS_MAGIC) {
		log_error("--network netns: '%s' is not a namespace file (give /run/netns/NAME or /proc/PID/ns/net)",
			  arg.netns);
		return EXIT_LAUNCH;
	}
	int type = ioctl(n->ns_fd, NS_GET_NSTYPE);
	if (type >= 0 && type != CLONE_NEWNET) {
		log_error("--network netns: '%s' is a namespace, but not a network namespace", arg.netns);
		return EXIT_LAUNCH;
	}
	/* never the network this launcher runs in (the host's, as far as it
	 * knows), nor PID 1's: a VM takes over only a namespace made for it */
	struct stat a, b;
	static const char *const own[] = { "/proc/self/ns/net", "/proc/1/ns/net" };
	for (size_t i = 0; i < ARRAY_SIZE(own); i++)
		if (fstat(n->ns_fd, &a) == 0 && stat(own[i], &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			log_error(
				"--network netns: '%s' is this host's own network namespace (%s): a VM takes over only "
				"a namespace made for it",
				arg.netns, own[i]);
			return EXIT_LAUNCH;
		}
	return 0;
}

int netns_start(struct vm *vm)
{
	struct net *n = &vm->net;
	struct timespec t0;
	int out = -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork_child(n, &out, 0);
	if (pid < 0)
		return log_sys((int)-pid, "--network netns: cannot fork"), EXIT_LAUNCH;
	cleanup_close int sk = out;
	struct nsmsg m = { 0 };
	int tap = -1;
	bool done = false, timed_out = false;
	while (!done) {
		long left = NETNS_TIMEOUT_MS - ms_since(&t0);
		struct pollfd pf = { sk, POLLIN, 0 };
		if (left <= 0) {
			timed_out = true;
			break;
		}
		int p = poll(&pf, 1, (int)left);
		if (p < 0 && errno == EINTR)
			continue;
		if (p <= 0)
			continue;
		union {
			struct cmsghdr c;
			char b[CMSG_SPACE(sizeof(int))];
		} u;
		struct iovec iov = { &m, sizeof(m) };
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b)
		};
		ssize_t got = recvmsg(sk, &mh, MSG_CMSG_CLOEXEC);
		if (got < 0 && errno == EINTR)
			continue;
		for (struct cmsghdr *c = got > 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
			    c->cmsg_len == CMSG_LEN(sizeof(int))) {
				if (tap >= 0)
					close(tap);
				memcpy(&tap, CMSG_DATA(c), sizeof(int));
			}
		if (got != (ssize_t)sizeof(m) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
			m.kind = 0; /* EOF or garbage: the child died */
			break;
		}
		/* names in the namespace are the engine's: shown, never obeyed */
		m.text[sizeof(m.text) - 1] = 0;
		m.nsif.name[sizeof(m.nsif.name) - 1] = 0;
		sanitize_text(m.text, strlen(m.text));
		sanitize_text(m.nsif.name, strlen(m.nsif.name));
		if (m.kind == NSM_CLAIMED) {
			n->nsif = m.nsif;
			n->ns_claimed = true;
			continue;
		}
		done = true;
	}
	int st = reap(pid, &t0, timed_out ? 0 : NETNS_TIMEOUT_MS);
	if (timed_out || (m.kind != NSM_OK && m.kind != NSM_FAIL && m.kind != NSM_NONE) ||
	    (m.kind == NSM_OK && tap < 0)) {
		char how[64] = "killed";
		if (st >= 0 && WIFSIGNALED(st))
			snprintf(how, sizeof(how), "signal %d", WTERMSIG(st));
		else if (st >= 0)
			snprintf(how, sizeof(how), "exit status %d", WEXITSTATUS(st));
		if (tap >= 0)
			close(tap);
		if (timed_out)
			log_error("--network netns:'%s': setting up its network took more than %d s; no VM was started",
				  arg.netns, NETNS_TIMEOUT_MS / 1000);
		else
			log_error("--network netns:'%s': the helper that sets up its network died (%s); no VM was "
				  "started",
				  arg.netns, how);
		return EXIT_LAUNCH; /* net_stop removes a claim it made */
	}
	if (m.kind == NSM_FAIL) {
		if (tap >= 0)
			close(tap);
		n->ns_claimed = false; /* the child removed it */
		if (m.whole)
			log_error("%s; no VM was started", m.text);
		else if (m.err)
			log_error("--network netns:'%s': %s: %s; no VM was started", arg.netns, m.text,
				  strerror(m.err));
		else
			log_error("--network netns:'%s': %s; no VM was started", arg.netns, m.text);
		return EXIT_LAUNCH;
	}
	if (m.kind == NSM_NONE) {
		if (tap >= 0)
			close(tap);
		log_debug(
			"--network netns:'%s': no interface but lo has an IPv4 address (it has %s): the guest gets no "
			"network device",
			arg.netns, m.text[0] ? m.text : "no interfaces");
		return 0;
	}
	n->nsif = m.nsif;
	n->ns_claimed = true;
	n->qemu_end = tap;
	n->on = true;
	char a[16], g[16];
	netspec_ntoa(n->nsif.addr, a);
	netspec_ntoa(n->nsif.gateway, g);
	log_debug(
		"--network netns:'%s': the guest takes over %s (%02x:%02x:%02x:%02x:%02x:%02x, %s/%d, %s%s, MTU %d%s) "
		"through " NETNS_TAP " (%.0f ms)",
		arg.netns, n->nsif.name, n->nsif.mac[0], n->nsif.mac[1], n->nsif.mac[2], n->nsif.mac[3], n->nsif.mac[4],
		n->nsif.mac[5], a, n->nsif.prefix, n->nsif.gateway ? "gateway " : "no gateway",
		n->nsif.gateway ? g : "", n->nsif.mtu, n->nsif.up ? "" : "; it is down", (double)ms_since(&t0));
	return 0;
}

void netns_stop(struct vm *vm)
{
	struct net *n = &vm->net;
	if (n->ns_claimed && n->ns_fd >= 0) {
		struct timespec t0;
		int out = -1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		pid_t pid = fork_child(n, &out, n->nsif.index);
		if (pid < 0)
			log_debug("--network netns: cannot fork to release %s: %s", n->nsif.name, strerror((int)-pid));
		else {
			close(out);
			int st = reap(pid, &t0, NETNS_STOP_TIMEOUT_MS);
			log_debug("--network netns: %s released (%s)", n->nsif.name,
				  st < 0				  ? "timed out"
				  : WIFEXITED(st) && !WEXITSTATUS(st)	  ? "its ingress qdisc removed"
				  : WIFEXITED(st) && WEXITSTATUS(st) == 2 ? "the device or the namespace is gone"
									  : "could not remove its ingress qdisc");
		}
	}
	n->ns_claimed = false;
	if (n->ns_fd >= 0)
		close(n->ns_fd);
	n->ns_fd = -1;
}

struct json_object *netns_plan(const struct vm *vm)
{
	const struct netns_if *f = &vm->net.nsif;
	char a[16];
	struct json_object *o = json_object_new_object();
	netspec_ntoa(f->addr, a);
	json_object_object_add(o, PLAN_NET_ADDRESS, json_object_new_string(a));
	json_object_object_add(o, PLAN_NET_PREFIX, json_object_new_int(f->prefix));
	if (f->gateway) {
		netspec_ntoa(f->gateway, a);
		json_object_object_add(o, PLAN_NET_GATEWAY, json_object_new_string(a));
	}
	json_object_object_add(o, PLAN_NET_MTU, json_object_new_int(f->mtu));
	/* the engine provides /etc/hosts, /etc/hostname, /etc/resolv.conf */
	json_object_object_add(o, PLAN_NET_FILES, json_object_new_boolean(false));
	return o;
}

void netns_mac(const struct vm *vm, char *out, size_t outlen)
{
	const unsigned char *m = vm->net.nsif.mac;
	snprintf(out, outlen, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}
