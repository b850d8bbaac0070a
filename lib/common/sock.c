/* SPDX-License-Identifier: MIT */
#include "common.h"

#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

static int addr_beneath(int dirfd, const char *name, struct sockaddr_un *sa)
{
	if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if ((size_t)snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", dirfd, name) >=
	    sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

int unix_listen_beneath(int dirfd, const char *name, int backlog)
{
	struct sockaddr_un sa;
	int r = addr_beneath(dirfd, name, &sa);
	if (r < 0)
		return r;
	cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0)
		return -errno;
	return steal_fd(&fd);
}

int unix_connect_beneath(int dirfd, const char *name)
{
	struct sockaddr_un sa;
	int r = addr_beneath(dirfd, name, &sa);
	if (r < 0)
		return r;
	cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return steal_fd(&fd);
}

int send_with_fd(int sock, const void *data, size_t len, int fd)
{
	union {
		struct cmsghdr c;
		char b[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = { (void *)data, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.b;
		mh.msg_controllen = sizeof(u.b);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t w = sendmsg(sock, &mh, MSG_NOSIGNAL);
	return w == (ssize_t)len ? 0 : w < 0 ? -errno : -EIO;
}
