/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for what an image brings (lib/common/imgcfg.c): its
 * config blob, and its /etc/passwd and /etc/group with a user spec. Any
 * input is accepted or refused with a message, never a crash; what is
 * accepted holds: KEY=VALUE environment, an absolute WorkingDir, ports
 * PORT/proto, supplementary groups within bounds. The input is split at
 * the first two NUL bytes: config, then accounts ("passwd\x01group"), then
 * the user spec. */
#include "imgcfg.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *)data, *end = d + size;
	const char *z1 = memchr(d, 0, size);
	const char *cfg = d;
	size_t cfglen = z1 ? (size_t)(z1 - d) : size;
	struct imgcfg c;
	char err[512] = "";
	if (imgcfg_parse(cfg, cfglen, &c, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < c.nenv; i++)
			assert(strchr(c.env[i], '=') && c.env[i][0] != '=');
		assert(!c.workdir || c.workdir[0] == '/');
		for (size_t i = 0; i < c.nports; i++)
			assert(strchr(c.ports[i], '/'));
		assert(!c.entrypoint || !c.entrypoint[c.nentrypoint]);
		assert(!c.cmd || !c.cmd[c.ncmd]);
	} else
		assert(err[0]);
	imgcfg_free(&c);
	if (!z1)
		return 0;
	const char *acc = z1 + 1;
	const char *z2 = memchr(acc, 0, (size_t)(end - acc));
	if (!z2)
		return 0;
	const char *sep = memchr(acc, 1, (size_t)(z2 - acc));
	size_t plen = sep ? (size_t)(sep - acc) : (size_t)(z2 - acc);
	const char *grp = sep ? sep + 1 : NULL;
	size_t glen = sep ? (size_t)(z2 - grp) : 0;
	char *spec = strndup(z2 + 1, (size_t)(end - z2 - 1));
	if (!spec)
		return 0;
	struct user_ids ids;
	err[0] = 0;
	if (userspec_resolve(spec, acc, plen, grp, glen, &ids, err, sizeof(err)) == 0)
		assert(ids.nextra <= IMGCFG_GROUPS_MAX && ids.uid != UINT32_MAX && ids.gid != UINT32_MAX);
	else
		assert(err[0]);
	free(spec);
	return 0;
}
