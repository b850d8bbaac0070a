/* SPDX-License-Identifier: MIT */
/* The network options (vm-launch --publish, --allow-net, --dns; box passes
 * them on unchanged), parsed once. IPv4 only: the guest's network is IPv4
 * (passt runs with --ipv4-only); an IPv6 address is refused by name. */
#ifndef BOXKIT_NETSPEC_H
#define BOXKIT_NETSPEC_H
#include <stddef.h>
#include <stdint.h>

#define NET_PUBLISH_MAX 64
#define NET_ALLOW_MAX 256
#define NET_DNS_MAX 3 /* what a resolv.conf honours */

/* -p [IP:]HOSTPORT:GUESTPORT[/tcp|udp]; IP defaults to 127.0.0.1 (only
 * this machine can connect), 0.0.0.0 for every address */
struct net_publish {
	uint32_t addr; /* host order */
	uint16_t host_port, guest_port;
	int proto; /* IPPROTO_TCP or IPPROTO_UDP */
};
/* --allow-net CIDR[:PORT]: ADDR[/LEN], a port (1-65535) or 0 for all */
struct net_allow {
	uint32_t net, mask; /* host order; net has no bits outside mask */
	uint16_t port;
};

/* 0, or -EINVAL with a message naming the input in err */
int netspec_publish(const char *s, struct net_publish *out, char *err, size_t errlen);
int netspec_allow(const char *s, struct net_allow *out, char *err, size_t errlen);
/* a resolver's address for the guest (--dns): a unicast IPv4 address */
int netspec_dns(const char *s, uint32_t *out, char *err, size_t errlen);
/* "a.b.c.d" of a host-order address, into out (at least 16 bytes) */
void netspec_ntoa(uint32_t addr, char *out);
#endif
