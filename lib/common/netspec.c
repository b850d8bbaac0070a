/* SPDX-License-Identifier: MIT */
#include "netspec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define BAD(...)                                                                                                       \
	({                                                                                                             \
		snprintf(err, errlen, __VA_ARGS__);                                                                    \
		return -EINVAL;                                                                                        \
	})

/* a decimal from 1 to max, digits only, no leading zero */
static bool number(const char *s, size_t n, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;
	if (n == 0 || n > 10 || s[0] == '0')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

static bool ipv4(const char *s, size_t n, uint32_t *out)
{
	char b[INET_ADDRSTRLEN];
	struct in_addr a;
	if (n == 0 || n >= sizeof(b))
		return false;
	memcpy(b, s, n);
	b[n] = 0;
	if (inet_pton(AF_INET, b, &a) != 1)
		return false;
	*out = ntohl(a.s_addr);
	return true;
}

void netspec_ntoa(uint32_t addr, char *out)
{
	snprintf(out, 16, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255);
}

static bool looks_v6(const char *s)
{
	const char *c = strchr(s, ':');
	return strchr(s, '[') || (c && strchr(c + 1, ':') && strchr(strchr(c + 1, ':') + 1, ':'));
}

int netspec_publish(const char *s, struct net_publish *out, char *err, size_t errlen)
{
	unsigned long hp, gp;
	const char *slash = strchr(s, '/'), *end = slash ? slash : s + strlen(s);
	memset(out, 0, sizeof(*out));
	out->proto = IPPROTO_TCP;
	out->addr = INADDR_LOOPBACK;
	if (looks_v6(s))
		BAD("-p '%s': IPv6 addresses are not supported (the guest's network is IPv4)", s);
	if (slash) {
		if (!strcmp(slash + 1, "udp"))
			out->proto = IPPROTO_UDP;
		else if (strcmp(slash + 1, "tcp"))
			BAD("-p '%s': the protocol must be tcp or udp", s);
	}
	/* [IP:]HOSTPORT:GUESTPORT */
	const char *c2 = NULL, *c1 = memchr(s, ':', (size_t)(end - s));
	if (c1)
		c2 = memchr(c1 + 1, ':', (size_t)(end - c1 - 1));
	if (!c1)
		BAD("-p '%s': give HOSTPORT:GUESTPORT (a host port chosen for you is not supported)", s);
	const char *hs = s, *gs;
	if (c2) {
		if (!ipv4(s, (size_t)(c1 - s), &out->addr))
			BAD("-p '%s': '%.*s' is not an IPv4 address", s, (int)(c1 - s), s);
		hs = c1 + 1;
		gs = c2 + 1;
		c1 = c2;
	} else
		gs = c1 + 1;
	if (memchr(gs, ':', (size_t)(end - gs)))
		BAD("-p '%s': too many ':'", s);
	if (memchr(hs, '-', (size_t)(c1 - hs)) || memchr(gs, '-', (size_t)(end - gs)))
		BAD("-p '%s': port ranges are not supported (give one -p per port)", s);
	if (!number(hs, (size_t)(c1 - hs), 65535, &hp))
		BAD("-p '%s': the host port '%.*s' must be 1 to 65535", s, (int)(c1 - hs), hs);
	if (!number(gs, (size_t)(end - gs), 65535, &gp))
		BAD("-p '%s': the guest port '%.*s' must be 1 to 65535", s, (int)(end - gs), gs);
	if (out->addr != INADDR_ANY && ((out->addr >> 28) == 14 || (out->addr >> 28) == 15))
		BAD("-p '%s': a multicast or reserved address cannot be bound", s);
	out->host_port = (uint16_t)hp;
	out->guest_port = (uint16_t)gp;
	return 0;
}

int netspec_allow(const char *s, struct net_allow *out, char *err, size_t errlen)
{
	unsigned long len = 32, port = 0;
	const char *colon = strchr(s, ':'), *end = colon ? colon : s + strlen(s);
	const char *slash = memchr(s, '/', (size_t)(end - s));
	memset(out, 0, sizeof(*out));
	if (looks_v6(s) || (colon && strchr(colon + 1, ':')))
		BAD("--allow-net '%s': IPv6 is not supported (the guest's network is IPv4)", s);
	if (!ipv4(s, (size_t)((slash ? slash : end) - s), &out->net))
		BAD("--allow-net '%s': '%.*s' is not an IPv4 address", s, (int)((slash ? slash : end) - s), s);
	if (slash && !(end - slash == 2 && slash[1] == '0') && !number(slash + 1, (size_t)(end - slash - 1), 32, &len))
		BAD("--allow-net '%s': the prefix length must be 0 to 32", s);
	if (slash && end - slash == 2 && slash[1] == '0')
		len = 0;
	if (colon && !number(colon + 1, strlen(colon + 1), 65535, &port))
		BAD("--allow-net '%s': the port must be 1 to 65535", s);
	out->mask = len ? ~0u << (32 - len) : 0;
	if (out->net & ~out->mask) {
		char a[16];
		netspec_ntoa(out->net & out->mask, a);
		BAD("--allow-net '%s': the address has bits outside the /%lu prefix (did you mean %s/%lu?)", s, len, a,
		    len);
	}
	out->port = (uint16_t)port;
	return 0;
}

int netspec_dns(const char *s, uint32_t *out, char *err, size_t errlen)
{
	if (looks_v6(s) || strchr(s, ':'))
		BAD("--dns '%s': IPv6 is not supported (the guest's network is IPv4)", s);
	if (!ipv4(s, strlen(s), out))
		BAD("--dns '%s' is not an IPv4 address", s);
	if (*out == 0 || (*out >> 28) >= 14 || *out == 0xffffffffu)
		BAD("--dns '%s' is not a unicast address", s);
	return 0;
}
