/* SPDX-License-Identifier: MIT */
/* udp-send SRCPORT ADDR PORT TEXT: one UDP datagram from SRCPORT (a port the
 * sender chooses) to ADDR:PORT.
 * udp-send --echo PORT: answer every datagram that comes to PORT with
 * "echo: " and the datagram, for ever.
 * Static: it runs in the guest, on a rootfs with no C library. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int echo(int port)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("udp-send --echo");
		return 1;
	}
	for (;;) {
		char buf[512] = "echo: ";
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s, buf + 6, sizeof(buf) - 6, 0, (struct sockaddr *)&from, &fl);
		if (n >= 0)
			sendto(s, buf, (size_t)n + 6, 0, (struct sockaddr *)&from, fl);
	}
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--echo"))
		return echo(atoi(argv[2]));
	if (argc != 5) {
		fprintf(stderr, "usage: udp-send SRCPORT ADDR PORT TEXT | udp-send --echo PORT\n");
		return 2;
	}
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3])) };
	if (s < 0 || inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1 ||
	    bind(s, (struct sockaddr *)&src, sizeof(src)) < 0 ||
	    sendto(s, argv[4], strlen(argv[4]), 0, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
		perror("udp-send");
		return 1;
	}
	close(s);
	return 0;
}
