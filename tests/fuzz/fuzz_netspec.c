/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the network option parsers (lib/common/netspec.c):
 * any input must be accepted or refused with a message, never crash; what
 * is accepted must hold: ports 1-65535, a net with no bits outside its
 * mask, a contiguous mask, a unicast resolver. */
#include "netspec.h"

#include <assert.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), err[512];
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	struct net_publish p;
	struct net_allow a;
	uint32_t d;
	err[0] = 0;
	if (netspec_publish(s, &p, err, sizeof(err)) == 0) {
		assert(p.host_port && p.guest_port);
		assert(p.proto == IPPROTO_TCP || p.proto == IPPROTO_UDP);
	} else
		assert(err[0]);
	err[0] = 0;
	if (netspec_allow(s, &a, err, sizeof(err)) == 0) {
		assert((a.net & ~a.mask) == 0);
		assert((~a.mask & (~a.mask + 1)) == 0); /* contiguous from the top */
	} else
		assert(err[0]);
	err[0] = 0;
	if (netspec_dns(s, &d, err, sizeof(err)) == 0)
		assert(d != 0 && (d >> 28) < 14);
	else
		assert(err[0]);
	free(s);
	return 0;
}
