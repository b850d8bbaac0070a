/* SPDX-License-Identifier: MIT */
/* The host-guest control channel (one virtio-serial port, "boxkit.ctl"):
 * frames of [type:1][length:4, little endian][payload]. Header-only so the
 * static guest init can use it without the rest of lib/common. */
#ifndef BOXKIT_FRAME_H
#define BOXKIT_FRAME_H
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FRAME_MAX (1u << 20)
#define FRAME_PORT_NAME "boxkit.ctl"

enum frame_type {
	/* guest -> host */
	FR_HELLO = 'H',	 /* init is up and listening */
	FR_STDOUT = 'O', /* workload stdout bytes */
	FR_STDERR = 'R', /* workload stderr bytes */
	FR_EXIT = 'X',	 /* 4 bytes: the workload's exit status (0-255) */
	FR_FAIL = 'F',	 /* init failed: a message; the host exits 125 */
	/* host -> guest */
	FR_CONFIG = 'C', /* config.json */
	FR_VOLUME = 'V', /* "tag\ttype\treadonly\tname": a share to mount */
	FR_GO = 'G',	 /* plan complete: start the workload */
	FR_STDIN = 'I',	 /* stdin bytes */
	FR_STDIN_EOF = 'E',
	FR_SIGNAL = 'S', /* 4 bytes: a signal for the workload */
};

static inline int frame_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static inline int frame_send(int fd, char type, const void *data, uint32_t len)
{
	unsigned char h[5] = { (unsigned char)type, (unsigned char)(len & 0xff), (unsigned char)((len >> 8) & 0xff),
			       (unsigned char)((len >> 16) & 0xff), (unsigned char)(len >> 24) };
	int r = frame_write_all(fd, h, sizeof(h));
	return r < 0 ? r : frame_write_all(fd, data, len);
}

/* An incremental frame parser over a byte buffer. */
struct frame_buf {
	unsigned char *data;
	size_t len, cap;
};

/* Take one complete frame off the front of fb: returns 1 and sets type, payload
 * (pointing into a buffer the caller must free) and len; 0 when incomplete;
 * -EPROTO when a frame is too large. */
static inline int frame_take(struct frame_buf *fb, char *type, unsigned char **payload, uint32_t *len)
{
	if (fb->len < 5)
		return 0;
	uint32_t n = (uint32_t)fb->data[1] | (uint32_t)fb->data[2] << 8 | (uint32_t)fb->data[3] << 16 |
		     (uint32_t)fb->data[4] << 24;
	if (n > FRAME_MAX)
		return -EPROTO;
	if (fb->len < 5 + (size_t)n)
		return 0;
	unsigned char *p = (unsigned char *)malloc(n + 1);
	if (!p)
		return -ENOMEM;
	memcpy(p, fb->data + 5, n);
	p[n] = 0;
	*type = (char)fb->data[0];
	*payload = p;
	*len = n;
	memmove(fb->data, fb->data + 5 + n, fb->len - 5 - n);
	fb->len -= 5 + n;
	return 1;
}

/* Read what is available from fd into fb. Returns bytes read, 0 at EOF, -errno. */
static inline ssize_t frame_fill(struct frame_buf *fb, int fd)
{
	if (fb->cap - fb->len < 65536) {
		size_t ncap = fb->cap ? fb->cap * 2 : 131072;
		if (ncap > 2 * (FRAME_MAX + 5) + 65536)
			ncap = 2 * (FRAME_MAX + 5) + 65536;
		if (ncap > fb->cap) {
			unsigned char *d = (unsigned char *)realloc(fb->data, ncap);
			if (!d)
				return -ENOMEM;
			fb->data = d;
			fb->cap = ncap;
		}
	}
	ssize_t r = read(fd, fb->data + fb->len, fb->cap - fb->len);
	if (r < 0)
		return errno == EINTR || errno == EAGAIN ? -EAGAIN : -errno;
	fb->len += (size_t)r;
	return r;
}
#endif
