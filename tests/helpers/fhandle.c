/* SPDX-License-Identifier: MIT */
/* fhandle PATH: print PATH's file handle as "TYPE HEX" (name_to_handle_at),
 * for tests that hand a handle to a confined process. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	struct file_handle *h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
	int mnt;
	if (argc != 2) {
		fprintf(stderr, "usage: fhandle PATH\n");
		return 2;
	}
	if (!h)
		return 1;
	h->handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(AT_FDCWD, argv[1], h, &mnt, 0) < 0) {
		perror("name_to_handle_at");
		return 1;
	}
	const unsigned char *b = (const unsigned char *)h + sizeof(*h);
	printf("%d ", h->handle_type);
	for (unsigned i = 0; i < h->handle_bytes; i++)
		printf("%02x", b[i]);
	printf("\n");
	return 0;
}
