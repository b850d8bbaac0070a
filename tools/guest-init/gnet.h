/* SPDX-License-Identifier: MIT */
/* The guest's network, from the plan's "net" object (lib/common/guest-abi.h):
 * no DHCP client and no tools in the image, only ioctls. */
#ifndef BOXKIT_GNET_H
#define BOXKIT_GNET_H
#include <json-c/json.h>
#include <stddef.h>

/* lo up; with net (else NULL): GUEST_NET_IF up with its address, prefix,
 * MTU and the default route (when net has a gateway). 0, or -errno with
 * what failed in err. */
int gnet_up(struct json_object *net, char *err, size_t errlen);
/* In the container's rootfs (a directory descriptor), resolved inside it:
 * /etc/hostname and /etc/hosts (always), /etc/resolv.conf (with net);
 * nothing when net says "files": false (the engine provides them). */
int gnet_files(int rootfd, struct json_object *net, const char *hostname, char *err, size_t errlen);
/* The config's CONFIG_ETC_PREFIX annotations (guest-abi.h) as files of the
 * container's /etc, over what gnet_files wrote. 0, or -errno. */
int gnet_etc_files(int rootfd, struct json_object *annotations, char *err, size_t errlen);
#endif
