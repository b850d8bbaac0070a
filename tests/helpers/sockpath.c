/* SPDX-License-Identifier: MIT */
/* sockpath DIR NAME: listen on DIR/NAME with lib/common's helper, connect to
 * it the same way, pass a byte through, print the socket's real path. Exit 0
 * on success. A test helper for the >108-byte socket path case. */
#include "common.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	cleanup_close int dfd = open(argv[1], O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return perror(argv[1]), 3;
	cleanup_close int l = unix_listen_beneath(dfd, argv[2], 1);
	if (l < 0)
		return fprintf(stderr, "listen: %s\n", strerror(-l)), 3;
	cleanup_close int c = unix_connect_beneath(dfd, argv[2]);
	if (c < 0)
		return fprintf(stderr, "connect: %s\n", strerror(-c)), 3;
	cleanup_close int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	char b = 'x', got = 0;
	if (a < 0 || write(c, &b, 1) != 1 || read(a, &got, 1) != 1 || got != 'x')
		return fprintf(stderr, "transfer failed\n"), 3;
	printf("%s/%s\n", argv[1], argv[2]);
	return 0;
}
