/* SPDX-License-Identifier: MIT */
#include "common.h"

#include <sys/random.h>
#include <time.h>

int random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;
	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int random_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[64];
	int r;

	if (nbytes > sizeof(b))
		return -EINVAL;
	r = random_bytes(b, nbytes);
	if (r < 0)
		return r;
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * nbytes] = '\0';
	return 0;
}

int ulid_new(char out[27])
{
	static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	unsigned char rnd[10];
	struct timespec ts;
	uint64_t ms;
	int r;

	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return -errno;
	ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	r = random_bytes(rnd, sizeof(rnd));
	if (r < 0)
		return r;
	/* 48 bits of time -> 10 characters (the first holds 3 bits) */
	for (int i = 9; i >= 0; i--) {
		out[i] = b32[ms & 31];
		ms >>= 5;
	}
	/* 80 random bits -> 16 characters */
	for (int i = 0; i < 16; i++) {
		int bit = i * 5, byte = bit / 8, off = bit % 8;
		unsigned v = (unsigned)rnd[byte] << 8 | (byte + 1 < 10 ? rnd[byte + 1] : 0);
		out[10 + i] = b32[(v >> (11 - off)) & 31];
	}
	out[26] = '\0';
	return 0;
}
