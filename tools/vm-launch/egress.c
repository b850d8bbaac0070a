/* SPDX-License-Identifier: MIT */
/* The egress policy of --network user, enforced by the host's kernel on the
 * network helper, outside the guest: a privileged guest that flushes every
 * rule it can see changes nothing here.
 *
 * passt opens every host socket the guest's traffic needs, and it runs in a
 * cgroup of the run's own (cgroup.c) that it cannot leave (the cgroup is
 * root's). Four cgroup BPF programs are attached there
 * (BPF_PROG_TYPE_CGROUP_SOCK_ADDR): connect4 and sendmsg4 check every TCP
 * connection and UDP datagram the helper makes toward an IPv4 address, and
 * refuse it (EPERM: the guest sees a reset, or a lost datagram) when
 *   - it goes to this host: 0.0.0.0/8, 127.0.0.0/8, any address of the
 *     host's interfaces (a snapshot, refreshed whenever an address appears:
 *     egress_refresh on an RTM_NEWADDR), or link-local 169.254.0.0/16 (cloud
 *     metadata services live there);
 *   - it is multicast, reserved or broadcast (224.0.0.0/3), or in the
 *     guest's own subnet (10.0.2.0/24: its "gateway" is passt itself, and
 *     passt would send traffic for it out through the host's routes);
 *   - --allow-net was given and no entry covers it (address and port).
 * connect6, sendmsg6 and bind6 refuse everything: the guest's network is
 * IPv4. bind4 allows the published ports, and port 0 and the ephemeral
 * range without SO_REUSEADDR, only: passt binds each UDP flow's socket to
 * the guest's source port, which would let the guest choose which of this
 * host's ports passt takes or shares.
 * Accepted connections (published ports) are not connections the helper
 * makes, so -p works whatever the policy.
 *
 * The programs are generated here, a handful of instructions per rule (no
 * compiler, no maps), and attached with BPF_F_ALLOW_MULTI so that a refresh
 * replaces each in place (BPF_F_REPLACE): there is never a moment without
 * one. They stay attached while the cgroup exists, so a helper that
 * outlives vm-launch (killed with SIGKILL) is still held to them. */
#include "common.h"
#include "launch.h"
#include "netspec.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/bpf.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#define MAX_INSNS 16384
#define STR_(x) #x
#define STR(x) STR_(x)

static const struct {
	uint32_t net, mask;
} always_denied[] = {
	{ 0x00000000, 0xff000000 },	      /* 0.0.0.0/8: "this host" */
	{ 0x7f000000, 0xff000000 },	      /* 127.0.0.0/8 */
	{ 0xa9fe0000, 0xffff0000 },	      /* 169.254.0.0/16 */
	{ 0xe0000000, 0xe0000000 },	      /* 224.0.0.0/3 */
	{ NET_GATEWAY & NET_MASK, NET_MASK }, /* the guest's own subnet: its gateway is passt, nothing real */
};

struct prog {
	struct bpf_insn in[MAX_INSNS];
	int n;
};

static void emit(struct prog *p, struct bpf_insn i)
{
	if (p->n < MAX_INSNS)
		p->in[p->n] = i;
	p->n++;
}
#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })

/* r6 = ctx; w2 = the address, w3 = the port, both in host order (user_ip4
 * and user_port hold them in network order) */
static void load_dest(struct prog *p)
{
	emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0));
	emit(p, INSN(BPF_LDX | BPF_W | BPF_MEM, 2, 6, offsetof(struct bpf_sock_addr, user_ip4), 0));
	emit(p, INSN(BPF_ALU | BPF_END | BPF_TO_BE, 2, 0, 0, 32));
	emit(p, INSN(BPF_LDX | BPF_W | BPF_MEM, 3, 6, offsetof(struct bpf_sock_addr, user_port), 0));
	emit(p, INSN(BPF_ALU | BPF_END | BPF_TO_BE, 3, 0, 0, 16));
}

/* w4 = w2 & mask (the destination under the rule's mask) */
static void match(struct prog *p, uint32_t mask)
{
	emit(p, INSN(BPF_ALU | BPF_MOV | BPF_X, 4, 2, 0, 0));
	emit(p, INSN(BPF_ALU | BPF_AND | BPF_K, 4, 0, 0, (int32_t)mask));
}

/* connect4 / sendmsg4: 1 lets the call go on, 0 refuses it (EPERM) */
static int build_v4(struct prog *p, const uint32_t *local, int nlocal, const struct net_allow *allow, int nallow)
{
	int deny_jumps[MAX_INSNS], nd = 0, allow_jumps[NET_ALLOW_MAX + 1], na = 0;
	p->n = 0;
	load_dest(p);
	for (size_t i = 0; i < ARRAY_SIZE(always_denied); i++) {
		match(p, always_denied[i].mask);
		deny_jumps[nd++] = p->n;
		emit(p, INSN(BPF_JMP32 | BPF_JEQ | BPF_K, 4, 0, 0, (int32_t)always_denied[i].net));
	}
	for (int i = 0; i < nlocal && nd < MAX_INSNS; i++) {
		deny_jumps[nd++] = p->n;
		emit(p, INSN(BPF_JMP32 | BPF_JEQ | BPF_K, 2, 0, 0, (int32_t)local[i]));
	}
	if (nallow) {
		for (int i = 0; i < nallow; i++) {
			match(p, allow[i].mask);
			int skip = allow[i].port ? 2 : 1;
			emit(p, INSN(BPF_JMP32 | BPF_JNE | BPF_K, 4, 0, (int16_t)skip, (int32_t)allow[i].net));
			if (allow[i].port)
				emit(p, INSN(BPF_JMP32 | BPF_JNE | BPF_K, 3, 0, 1, allow[i].port));
			allow_jumps[na++] = p->n;
			emit(p, INSN(BPF_JMP | BPF_JA, 0, 0, 0, 0));
		}
		/* nothing allowed it */
		deny_jumps[nd++] = p->n;
		emit(p, INSN(BPF_JMP | BPF_JA, 0, 0, 0, 0));
	}
	/* allow */
	int allow_at = p->n;
	emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1));
	emit(p, INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
	int deny_at = p->n;
	emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0));
	emit(p, INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
	if (p->n > MAX_INSNS)
		return -E2BIG;
	for (int i = 0; i < nd; i++)
		p->in[deny_jumps[i]].off = (int16_t)(deny_at - deny_jumps[i] - 1);
	for (int i = 0; i < na; i++)
		p->in[allow_jumps[i]].off = (int16_t)(allow_at - allow_jumps[i] - 1);
	return 0;
}

/* bind4: a published port (its address, or any) as asked; port 0 or a
 * port of the ephemeral range (32768 up: the kernel's own to hand out)
 * without SO_REUSEADDR; any other bind is refused. passt binds each UDP
 * flow's socket to the guest's own source port, on every address, with
 * SO_REUSEADDR: without this the guest would pick which of this host's
 * ports passt takes (a service's own, or 5353, 1900, 5355 and their
 * multicast), or share one with a service that also set SO_REUSEADDR. */
#define EPHEMERAL_MIN 32768
static void build_bind(struct prog *p, const struct net_publish *pub, int npub)
{
	int keep[NET_PUBLISH_MAX] = { 0 }, nk = 0, plain[2] = { 0 }, np = 0;
	p->n = 0;
	load_dest(p);
	plain[np++] = p->n;
	emit(p, INSN(BPF_JMP32 | BPF_JEQ | BPF_K, 3, 0, 0, 0));
	plain[np++] = p->n;
	emit(p, INSN(BPF_JMP32 | BPF_JGE | BPF_K, 3, 0, 0, EPHEMERAL_MIN));
	for (int i = 0; i < npub; i++) {
		/* if (port == host_port && (addr == any || addr == pub addr)) keep */
		emit(p, INSN(BPF_JMP32 | BPF_JNE | BPF_K, 3, 0, pub[i].addr ? 2 : 1, pub[i].host_port));
		if (pub[i].addr)
			emit(p, INSN(BPF_JMP32 | BPF_JNE | BPF_K, 2, 0, 1, (int32_t)pub[i].addr));
		keep[nk++] = p->n;
		emit(p, INSN(BPF_JMP | BPF_JA, 0, 0, 0, 0));
	}
	/* refused */
	emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0));
	emit(p, INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
	/* port 0 or ephemeral: setsockopt(SOL_SOCKET, SO_REUSEADDR, 0) first */
	int plain_at = p->n;
	emit(p, INSN(BPF_ST | BPF_W | BPF_MEM, 10, 0, -4, 0));
	emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0));
	emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, 2, 0, 0, SOL_SOCKET));
	emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, SO_REUSEADDR));
	emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_X, 4, 10, 0, 0));
	emit(p, INSN(BPF_ALU64 | BPF_ADD | BPF_K, 4, 0, 0, -4));
	emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, 5, 0, 0, 4));
	emit(p, INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_setsockopt));
	/* allowed */
	int at = p->n;
	emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1));
	emit(p, INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
	for (int i = 0; i < nk; i++)
		p->in[keep[i]].off = (int16_t)(at - keep[i] - 1);
	for (int i = 0; i < np; i++)
		p->in[plain[i]].off = (int16_t)(plain_at - plain[i] - 1);
}

static void build_deny(struct prog *p)
{
	p->n = 0;
	emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0));
	emit(p, INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
}

static int bpf(int cmd, union bpf_attr *a)
{
	return (int)syscall(SYS_bpf, cmd, a, sizeof(*a));
}

static int load(const struct prog *p, enum bpf_attach_type type, char *err, size_t errlen)
{
	static char vlog[8192];
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_CGROUP_SOCK_ADDR;
	a.expected_attach_type = type;
	a.insns = (uint64_t)(uintptr_t)p->in;
	a.insn_cnt = (uint32_t)p->n;
	a.license = (uint64_t)(uintptr_t) "Dual MIT/GPL";
	a.log_buf = (uint64_t)(uintptr_t)vlog;
	a.log_size = sizeof(vlog);
	a.log_level = 1;
	vlog[0] = 0;
	int fd = bpf(BPF_PROG_LOAD, &a);
	if (fd < 0) {
		int e = errno;
		char *last = strrchr(vlog, '\n');
		while (last && last > vlog && last[-1] != '\n' && last[1] == 0) {
			*last = 0;
			last = strrchr(vlog, '\n');
		}
		snprintf(err, errlen, "the kernel refused the egress program: %s%s%.200s", strerror(e),
			 vlog[0] ? ": " : "", last ? last + 1 : vlog);
		return -e;
	}
	return fd;
}

static const enum bpf_attach_type hooks[EGRESS_HOOKS] = { BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_UDP4_SENDMSG,
							  BPF_CGROUP_INET4_BIND,    BPF_CGROUP_INET6_CONNECT,
							  BPF_CGROUP_UDP6_SENDMSG,  BPF_CGROUP_INET6_BIND };

/* the IPv4 addresses of the host's interfaces, host order; -E2BIG beyond
 * max (fail closed: an address left out would be reachable) */
static int host_addrs(uint32_t *out, int max)
{
	struct ifaddrs *ifa = NULL;
	int n = 0;
	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (struct ifaddrs *i = ifa; i; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
			if (n == max) {
				freeifaddrs(ifa);
				return -E2BIG;
			}
			out[n++] = ntohl(((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr.s_addr);
		}
	freeifaddrs(ifa);
	return n;
}

static int attach_all(struct egress *e, char *err, size_t errlen)
{
	static struct prog p;
	static uint32_t local[EGRESS_LOCAL_MAX];
	int nlocal = host_addrs(local, EGRESS_LOCAL_MAX), r;
	if (nlocal < 0) {
		snprintf(err, errlen, "cannot list the host's addresses: %s",
			 nlocal == -E2BIG ? "more than " STR(EGRESS_LOCAL_MAX) " (refusing to leave any out)"
					  : strerror(-nlocal));
		return nlocal;
	}
	for (int h = 0; h < EGRESS_HOOKS; h++) {
		if (hooks[h] == BPF_CGROUP_INET4_CONNECT || hooks[h] == BPF_CGROUP_UDP4_SENDMSG) {
			if ((r = build_v4(&p, local, nlocal, e->allow, e->nallow)) < 0) {
				snprintf(err, errlen, "the egress policy is too large (%d rules)", e->nallow);
				return r;
			}
		} else if (hooks[h] == BPF_CGROUP_INET4_BIND)
			build_bind(&p, e->publish, e->npublish);
		else
			build_deny(&p);
		int fd = load(&p, hooks[h], err, errlen);
		if (fd < 0)
			return fd;
		union bpf_attr a;
		memset(&a, 0, sizeof(a));
		a.target_fd = (uint32_t)e->cgroup;
		a.attach_bpf_fd = (uint32_t)fd;
		a.attach_type = hooks[h];
		a.attach_flags = BPF_F_ALLOW_MULTI;
		if (e->prog[h] >= 0) {
			a.attach_flags |= BPF_F_REPLACE;
			a.replace_bpf_fd = (uint32_t)e->prog[h];
		}
		if (bpf(BPF_PROG_ATTACH, &a) < 0) {
			r = -errno;
			close(fd);
			snprintf(err, errlen, "cannot attach the egress program to the network helper's cgroup: %s",
				 strerror(-r));
			return r;
		}
		if (e->prog[h] >= 0)
			close(e->prog[h]);
		e->prog[h] = fd;
	}
	e->nlocal = nlocal;
	return 0;
}

int egress_attach(struct egress *e, int cgroup, char *err, size_t errlen)
{
	e->cgroup = cgroup;
	for (int h = 0; h < EGRESS_HOOKS; h++)
		e->prog[h] = -1;
	/* first the subscription, then the snapshot: an address that comes
	 * between the two is seen by a refresh */
	e->nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_IPV4_IFADDR };
	if (e->nl < 0 || bind(e->nl, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;
		snprintf(err, errlen, "cannot watch the host's addresses (netlink): %s", strerror(errno));
		return r;
	}
	return attach_all(e, err, errlen);
}

int egress_refresh(struct egress *e, char *err, size_t errlen)
{
	char buf[8192];
	bool added = false;
	ssize_t n;
	while ((n = recv(e->nl, buf, sizeof(buf), 0)) > 0)
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n))
			added |= h->nlmsg_type == RTM_NEWADDR;
	/* ENOBUFS: events were lost; take a new snapshot to be sure */
	if (n < 0 && errno == ENOBUFS)
		added = true;
	return added ? attach_all(e, err, errlen) : 0;
}

void egress_close(struct egress *e)
{
	for (int h = 0; h < EGRESS_HOOKS; h++)
		if (e->prog[h] >= 0)
			close(e->prog[h]); /* the attachments stay with the cgroup */
	if (e->nl >= 0)
		close(e->nl);
	e->nl = -1;
}
