/* SPDX-License-Identifier: MIT */
/* fakevmm: a stand-in for QEMU in relay tests (vm-launch --qemu). It speaks
 * the guest side of the control channel on descriptor 3 and misbehaves as
 * its name says (argv[0] ends in -MODE):
 *   nohello   never says hello
 *   stopread  says hello, then never reads the channel again
 *   flood     says hello, then sends stdout frames as fast as its output
 *             window lets it (a guest keeping to the protocol)
 *   overrun   says hello, then sends stdout frames as fast as it can,
 *             beyond the window the host granted
 *   console   says hello, then writes its console (stdout) as fast as it can
 *   echo      a well-behaved guest: echoes stdin to stdout within both
 *             windows, exits 0 at EOF
 * It runs under QEMU's seccomp allow-list (vm-launch applies it to whatever
 * it starts as QEMU), so it uses only calls on it: ppoll, not poll or pause.
 *   sendfd    a compromised QEMU: connects to each vhost-user socket named
 *             on its command line (path=...) and sends descriptors of its
 *             own root and kernel (both on the host's filesystem) over it
 *   reready   a warm build's guest that says READY again once it was saved
 *             and resumed: answers the monitor (descriptor 6) as QEMU would
 *             (the greeting, returns, a 128 KiB migration stream into the
 *             descriptor getfd gave, "completed"), READY after the plan,
 *             RESUMED after RESUME, then READY once more */
#include "guest-abi.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int wait_fd(int fd, short ev, int ms);

/* one whole frame (the descriptor may be non-blocking) */
static void put(int fd, char type, const void *p, uint32_t n)
{
	static unsigned char b[FRAME_HDR + FRAME_DATA_MAX];
	b[0] = (unsigned char)type;
	le32_put(b + 1, 0);
	le32_put(b + 5, n);
	memcpy(b + FRAME_HDR, p, n);
	size_t off = 0, len = FRAME_HDR + n;
	while (off < len) {
		ssize_t w = write(fd, b + off, len - off);
		if (w > 0)
			off += (size_t)w;
		else if (w < 0 && errno == EAGAIN)
			wait_fd(fd, POLLOUT, -1);
		else
			return;
	}
}

static void sleep_forever(void)
{
	for (;;)
		ppoll(NULL, 0, NULL, NULL);
}

static int wait_fd(int fd, short ev, int ms)
{
	struct pollfd pf = { fd, ev, 0 };
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	return ppoll(&pf, 1, ms < 0 ? NULL : &ts, NULL);
}

static void hello(int fd)
{
	char h[32];
	int n = snprintf(h, sizeof(h), "{\"proto\":%d}", GUEST_PROTO_VERSION);
	put(fd, FR_HELLO, h, (uint32_t)n);
}

static void drain(int fd)
{
	char buf[65536];
	while (read(fd, buf, sizeof(buf)) > 0) {
	}
}

/* one monitor command (brace-counted: ours hold no braces in strings), and
 * a descriptor that came with it */
static int qmp_read(int fd, char *cmd, size_t cap, int *passed)
{
	size_t n = 0;
	int depth = 0;
	for (;;) {
		char c, cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { &c, 1 };
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)
		};
		if (recvmsg(fd, &mh, 0) != 1)
			return -1;
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		if (cm && cm->cmsg_type == SCM_RIGHTS)
			memcpy(passed, CMSG_DATA(cm), sizeof(int));
		if (n + 1 < cap)
			cmd[n++] = c;
		depth += c == '{' ? 1 : c == '}' ? -1 : 0;
		if (c == '}' && depth == 0) {
			cmd[n] = 0;
			return 0;
		}
	}
}

static void say(int fd, const char *s)
{
	if (write(fd, s, strlen(s)) < 0) {
	}
}

/* the next frame of type t from the host (others are dropped) */
static void await_frame(int fd, struct fbuf *in, char t)
{
	for (;;) {
		struct frame f;
		while (frame_peek(in, FRAME_MAX, &f) == 1) {
			char got = f.type;
			fbuf_consume(in, FRAME_HDR + f.len);
			if (got == t)
				return;
		}
		wait_fd(fd, POLLIN, -1);
		ssize_t n = read(fd, in->data + in->len, fbuf_room(in));
		if (n == 0)
			_exit(1);
		if (n > 0)
			in->len += (size_t)n;
	}
}

static void reready(void)
{
	struct fbuf in;
	char cmd[4096];
	int passed = -1;
	fbuf_init(&in, FRAME_HDR + FRAME_MAX);
	hello(3);
	await_frame(3, &in, FR_PLAN);
	put(3, FR_READY, "", 0);
	say(6, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n");
	while (qmp_read(6, cmd, sizeof(cmd), &passed) == 0) {
		if (strstr(cmd, "query-migrate")) {
			say(6, "{\"return\": {\"status\": \"completed\"}}\r\n");
			continue;
		}
		say(6, "{\"return\": {}}\r\n");
		if (strstr(cmd, "\"migrate\"") && passed >= 0) {
			static char stream[128 << 10];
			memset(stream, 'm', sizeof(stream));
			if (write(passed, stream, sizeof(stream)) < 0) {
			}
			close(passed);
			passed = -1;
		}
		if (strstr(cmd, "\"cont\""))
			break;
	}
	await_frame(3, &in, FR_RESUME);
	put(3, FR_RESUMED, "", 0);
	await_frame(3, &in, FR_EXEC);
	put(3, FR_READY, "", 0);
	sleep_forever();
}

int main(int argc, char **argv)
{
	const char *mode = strrchr(argv[0], '-');
	static char big[FRAME_DATA_MAX];
	mode = mode ? mode + 1 : "echo";
	if (!strcmp(mode, "nohello"))
		sleep_forever();
	if (!strcmp(mode, "reready"))
		reready();
	if (!strcmp(mode, "sendfd")) {
		for (int i = 1; i < argc; i++) {
			const char *p = strstr(argv[i], "path=");
			if (!p)
				continue;
			struct sockaddr_un sa = { .sun_family = AF_UNIX };
			snprintf(sa.sun_path, sizeof(sa.sun_path), "%.*s", (int)strcspn(p + 5, ","), p + 5);
			int s = socket(AF_UNIX, SOCK_STREAM, 0);
			if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
				continue;
			int fds[2] = { open("/", O_RDONLY | O_DIRECTORY), open("/kernel", O_RDONLY) };
			char cbuf[CMSG_SPACE(sizeof(fds))], one = 'x';
			struct iovec iov = { &one, 1 };
			struct msghdr mh = {
				.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)
			};
			struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(fds));
			memcpy(CMSG_DATA(c), fds, sizeof(fds));
			if (sendmsg(s, &mh, 0) < 0) {
			}
		}
		hello(3);
		sleep_forever();
	}
	hello(3);
	if (!strcmp(mode, "stopread"))
		sleep_forever();
	fcntl(3, F_SETFL, O_NONBLOCK);
	struct fbuf in;
	fbuf_init(&in, FRAME_HDR + FRAME_MAX);
	uint32_t out_win = OUTPUT_WINDOW;
	if (!strcmp(mode, "overrun") || !strcmp(mode, "console")) {
		memset(big, 'x', sizeof(big));
		for (;;) {
			drain(3);
			if (!strcmp(mode, "overrun")) {
				wait_fd(3, POLLOUT, 100);
				put(3, FR_STDOUT, big, sizeof(big));
			} else if (write(1, big, sizeof(big)) < 0) {
			}
		}
	}
	/* flood and echo keep to the windows: read the host's frames */
	static unsigned char pend[STDIN_WINDOW];
	size_t npend = 0;
	bool eof = false;
	unsigned char w[4];
	memset(big, 'x', sizeof(big));
	if (!strcmp(mode, "echo")) {
		le32_put(w, STDIN_WINDOW);
		put(3, FR_WINDOW, w, 4);
	}
	for (;;) {
		bool flood = !strcmp(mode, "flood");
		if (out_win && (flood || npend))
			wait_fd(3, POLLOUT, 100);
		else
			wait_fd(3, POLLIN, -1);
		ssize_t n = read(3, in.data + in.len, fbuf_room(&in));
		if (n == 0)
			return 1;
		if (n > 0)
			in.len += (size_t)n;
		struct frame f;
		while (frame_peek(&in, FRAME_MAX, &f) == 1) {
			if (f.type == FR_OUT_WINDOW && f.len == 4)
				out_win += le32_get(f.payload);
			else if (f.type == FR_STDIN && npend + f.len <= sizeof(pend)) {
				memcpy(pend + npend, f.payload, f.len);
				npend += f.len;
			} else if (f.type == FR_STDIN_EOF)
				eof = true;
			fbuf_consume(&in, FRAME_HDR + f.len);
		}
		if (flood && out_win) {
			uint32_t k = out_win < sizeof(big) ? out_win : sizeof(big);
			put(3, FR_STDOUT, big, k);
			out_win -= k;
			continue;
		}
		if (npend && out_win) {
			uint32_t k = out_win < npend ? out_win : (uint32_t)npend;
			put(3, FR_STDOUT, pend, k);
			out_win -= k;
			memmove(pend, pend + k, npend - k);
			npend -= k;
			le32_put(w, k);
			put(3, FR_WINDOW, w, 4);
		}
		if (eof && !npend && !flood) {
			unsigned char z[4] = { 0 };
			put(3, FR_EXIT, z, 4);
			return 0;
		}
	}
}
