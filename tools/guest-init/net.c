/* SPDX-License-Identifier: MIT */
#include "gnet.h"
#include "guest-abi.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FAIL(...)                                                                                                      \
	({                                                                                                             \
		int e_ = errno;                                                                                        \
		snprintf(err, errlen, __VA_ARGS__);                                                                    \
		return -e_;                                                                                            \
	})

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

static int jint(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_int) ? json_object_get_int(v)
											      : -1;
}

static void sin_set(struct sockaddr *sa, in_addr_t a)
{
	struct sockaddr_in *s = (struct sockaddr_in *)(void *)sa;
	memset(s, 0, sizeof(*s));
	s->sin_family = AF_INET;
	s->sin_addr.s_addr = a;
}

static int if_up(int s, const char *name, char *err, size_t errlen)
{
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		FAIL("no interface %s", name);
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		FAIL("bring %s up", name);
	return 0;
}

int gnet_up(struct json_object *net, char *err, size_t errlen)
{
	struct in_addr addr = { 0 }, gw = { 0 };
	int r, s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		FAIL("socket");
	if ((r = if_up(s, "lo", err, errlen)) < 0 || !net) {
		close(s);
		return r;
	}
	const char *a = jstr(net, PLAN_NET_ADDRESS), *g = jstr(net, PLAN_NET_GATEWAY);
	int prefix = jint(net, PLAN_NET_PREFIX), mtu = jint(net, PLAN_NET_MTU);
	/* the gateway is optional (no default route without one), but when it
	 * is there it is an address */
	bool has_gw = json_object_object_get_ex(net, PLAN_NET_GATEWAY, NULL);
	if (!a || inet_pton(AF_INET, a, &addr) != 1 || (has_gw && (!g || inet_pton(AF_INET, g, &gw) != 1)) ||
	    prefix < 1 || prefix > 32 || mtu < 576 || mtu > 65535) {
		close(s);
		errno = EINVAL;
		FAIL("the plan's network is not an address, a prefix (1 to 32), an optional gateway and an MTU");
	}
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), GUEST_NET_IF);
	sin_set(&ifr.ifr_addr, addr.s_addr);
	if (ioctl(s, SIOCSIFADDR, &ifr) < 0) {
		close(s);
		FAIL("set the address of " GUEST_NET_IF " (is there a network device?)");
	}
	in_addr_t mask = htonl(~0u << (32 - prefix));
	sin_set(&ifr.ifr_netmask, mask);
	if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0) {
		close(s);
		FAIL("set the netmask of " GUEST_NET_IF);
	}
	/* a /31 or /32 has no broadcast address (the kernel keeps the
	 * classful one SIOCSIFADDR gave) */
	sin_set(&ifr.ifr_broadaddr, INADDR_ANY);
	if (prefix >= 31 && ioctl(s, SIOCSIFBRDADDR, &ifr) < 0) {
		close(s);
		FAIL("clear the broadcast address of " GUEST_NET_IF);
	}
	ifr.ifr_mtu = mtu;
	if (ioctl(s, SIOCSIFMTU, &ifr) < 0) {
		close(s);
		FAIL("set the MTU of " GUEST_NET_IF);
	}
	if ((r = if_up(s, GUEST_NET_IF, err, errlen)) < 0 || !has_gw) {
		close(s);
		return r;
	}
	struct rtentry rt = { 0 };
	if ((gw.s_addr & mask) != (addr.s_addr & mask)) {
		/* a gateway outside the subnet (a /32 address, as some CNI
		 * plugins give): reachable on the link, a route of its own */
		sin_set(&rt.rt_dst, gw.s_addr);
		sin_set(&rt.rt_genmask, INADDR_BROADCAST);
		rt.rt_flags = RTF_UP | RTF_HOST;
		rt.rt_dev = (char *)GUEST_NET_IF;
		if (ioctl(s, SIOCADDRT, &rt) < 0) {
			close(s);
			FAIL("add the route to the gateway %s", g);
		}
		memset(&rt, 0, sizeof(rt));
	}
	sin_set(&rt.rt_dst, INADDR_ANY);
	sin_set(&rt.rt_genmask, INADDR_ANY);
	sin_set(&rt.rt_gateway, gw.s_addr);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	rt.rt_dev = (char *)GUEST_NET_IF;
	if (ioctl(s, SIOCADDRT, &rt) < 0) {
		close(s);
		FAIL("add the default route via %s", g);
	}
	close(s);
	return 0;
}

/* Replace etc/<name> in the container's rootfs with a new regular file:
 * /etc is resolved inside the rootfs (a symlink there stays in it); what
 * the image has at the name (a symlink, a FIFO, a device) is removed, never
 * opened or followed. */
static int put(int etcfd, const char *name, const char *text, char *err, size_t errlen)
{
	if (unlinkat(etcfd, name, 0) < 0 && errno != ENOENT)
		FAIL("remove /etc/%s in the container", name);
	int fd = openat(etcfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0)
		FAIL("create /etc/%s in the container", name);
	size_t n = strlen(text);
	ssize_t w = write(fd, text, n);
	int e = errno;
	close(fd);
	if (w != (ssize_t)n) {
		errno = w < 0 ? e : EIO;
		FAIL("write /etc/%s in the container", name);
	}
	return 0;
}

int gnet_files(int rootfd, struct json_object *net, const char *hostname, char *err, size_t errlen)
{
	char hosts[512], resolv[256] = "";
	const char *a = net ? jstr(net, PLAN_NET_ADDRESS) : NULL;
	struct json_object *files;
	int r;
	/* an engine's network (vm-launch --network netns): its files, not ours */
	if (net && json_object_object_get_ex(net, PLAN_NET_FILES, &files)) {
		if (!json_object_is_type(files, json_type_boolean)) {
			errno = EINVAL;
			FAIL("the plan's network \"" PLAN_NET_FILES "\" is not a boolean");
		}
		if (!json_object_get_boolean(files))
			return 0;
	}
	if (!hostname || !*hostname)
		hostname = "boxkit";
	/* an image without /etc gets one */
	if (mkdirat(rootfd, "etc", 0755) < 0 && errno != EEXIST)
		FAIL("create /etc in the container");
	struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
				.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV };
	int etc = (int)syscall(SYS_openat2, rootfd, "etc", &how, sizeof(how));
	if (etc < 0)
		FAIL("open /etc in the container");
	snprintf(hosts, sizeof(hosts), "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n",
		 a ? a : "127.0.1.1", hostname);
	char line[300];
	snprintf(line, sizeof(line), "%s\n", hostname);
	if ((r = put(etc, "hostname", line, err, errlen)) < 0 || (r = put(etc, "hosts", hosts, err, errlen)) < 0 ||
	    !net) {
		close(etc);
		return r;
	}
	struct json_object *dns;
	size_t o = 0;
	if (json_object_object_get_ex(net, PLAN_NET_DNS, &dns) && json_object_is_type(dns, json_type_array))
		for (size_t i = 0; i < json_object_array_length(dns) && i < 3; i++) {
			struct in_addr x;
			const char *d = json_object_get_string(json_object_array_get_idx(dns, i));
			if (d && inet_pton(AF_INET, d, &x) == 1 && o < sizeof(resolv))
				o += (size_t)snprintf(resolv + o, sizeof(resolv) - o, "nameserver %s\n", d);
		}
	r = put(etc, "resolv.conf", resolv, err, errlen);
	close(etc);
	return r;
}

int gnet_etc_files(int rootfd, struct json_object *annotations, char *err, size_t errlen)
{
	if (!annotations || !json_object_is_type(annotations, json_type_object))
		return 0;
	struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
				.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV };
	int etc = -1, r = 0;
	json_object_object_foreach(annotations, key, val)
	{
		size_t plen = strlen(CONFIG_ETC_PREFIX);
		if (r < 0 || strncmp(key, CONFIG_ETC_PREFIX, plen))
			continue;
		const char *name = key + plen;
		if (!config_etc_name_valid(name, strlen(name)) || !json_object_is_type(val, json_type_string) ||
		    (size_t)json_object_get_string_len(val) > CONFIG_ETC_MAX ||
		    (size_t)json_object_get_string_len(val) != strlen(json_object_get_string(val))) {
			errno = EINVAL;
			snprintf(err, errlen, "the config's annotation '%s' is not an /etc file boxkit writes", key);
			r = -EINVAL;
			continue;
		}
		if (etc < 0 && (etc = (int)syscall(SYS_openat2, rootfd, "etc", &how, sizeof(how))) < 0) {
			snprintf(err, errlen, "open /etc in the container");
			r = -errno;
			continue;
		}
		r = put(etc, name, json_object_get_string(val), err, errlen);
	}
	if (etc >= 0)
		close(etc);
	return r;
}
