/* SPDX-License-Identifier: MIT */
/* vfsd-probe: installed in place of virtiofsd (vfsd-cap-install --source),
 * it is started exactly as virtiofsd is: the same sandbox, uid and file
 * capability (CAP_DAC_READ_SEARCH). It reads <shared>/handles ("NAME TYPE
 * HEX" lines), tries open_by_handle_at for each with every descriptor it can
 * get (its root, the share, /proc/self/exe, its own descriptors, every
 * process root it can see, and whatever a peer on its vhost-user socket,
 * descriptor 3, sends it within a few seconds), and writes what happened to
 * <shared>/result:
 * "NAME VIA ok CONTENT" or "NAME VIA ERRNO". Then it exits. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *shared = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help")) {
			puts("vfsd-probe: stands in for virtiofsd in tests\n  "
			     "--inode-file-handles=<never|prefer|mandatory>");
			return 0;
		}
		if (!strcmp(argv[i], "--version")) {
			puts("virtiofsd-probe 1.0");
			return 0;
		}
		if (!strncmp(argv[i], "--shared-dir=", 13))
			shared = argv[i] + 13;
	}
	if (!shared)
		return 2;
	char p[4096];
	snprintf(p, sizeof(p), "%s/handles", shared);
	FILE *in = fopen(p, "r");
	snprintf(p, sizeof(p), "%s/result", shared);
	FILE *out = fopen(p, "w");
	if (!in || !out)
		return 3;
	/* every descriptor this process can come by */
	struct {
		char name[64];
		int fd;
	} vias[256] = { { "", -1 } };
	int nv = 0;
	const char *paths[][2] = { { "root", "/" }, { "shared", shared }, { "exe", "/proc/self/exe" }, { "cwd", "." } };
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		int fd = open(paths[i][1], O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			snprintf(vias[nv].name, sizeof(vias[nv].name), "%s", paths[i][0]);
			vias[nv++].fd = fd;
		} else
			fprintf(out, "- %s %s\n", paths[i][0], strerror(errno));
	}
	for (int fd = 0; fd < 4; fd++) {
		snprintf(vias[nv].name, sizeof(vias[nv].name), "fd%d", fd);
		vias[nv++].fd = fd;
	}
	/* a peer (a compromised VMM) may send descriptors over the socket */
	struct pollfd pf = { 3, POLLIN, 0 };
	if (poll(&pf, 1, 8000) == 1) {
		int c = accept(3, NULL, NULL);
		char one, cbuf[CMSG_SPACE(8 * sizeof(int))];
		struct iovec iov = { &one, 1 };
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)
		};
		struct pollfd cf = { c, POLLIN, 0 };
		if (c >= 0 && poll(&cf, 1, 3000) == 1 && recvmsg(c, &mh, 0) > 0) {
			for (struct cmsghdr *m = CMSG_FIRSTHDR(&mh); m; m = CMSG_NXTHDR(&mh, m)) {
				if (m->cmsg_type != SCM_RIGHTS)
					continue;
				int n = (int)((m->cmsg_len - CMSG_LEN(0)) / sizeof(int));
				for (int k = 0; k < n && nv < 250; k++) {
					memcpy(&vias[nv].fd, CMSG_DATA(m) + k * sizeof(int), sizeof(int));
					snprintf(vias[nv].name, sizeof(vias[nv].name), "received%d", k);
					nv++;
				}
			}
		}
	} else
		fprintf(out, "- nobody connected\n");
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d)) && nv < 250) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char rp[300];
		if (strlen(e->d_name) > 20)
			continue;
		snprintf(rp, sizeof(rp), "/proc/%s/root", e->d_name);
		int fd = open(rp, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			snprintf(vias[nv].name, sizeof(vias[nv].name), "proc%.20s-root", e->d_name);
			vias[nv++].fd = fd;
		}
	}
	char line[1024];
	while (fgets(line, sizeof(line), in)) {
		char name[64], hex[600];
		int type;
		if (sscanf(line, "%63s %d %599s", name, &type, hex) != 3)
			continue;
		static struct file_handle *h;
		if (!h && !(h = malloc(sizeof(*h) + MAX_HANDLE_SZ)))
			return 4;
		unsigned char *b = (unsigned char *)h + sizeof(*h);
		size_t n = strlen(hex) / 2;
		if (n > MAX_HANDLE_SZ)
			continue;
		h->handle_bytes = (unsigned)n;
		h->handle_type = type;
		for (size_t i = 0; i < n; i++)
			sscanf(hex + 2 * i, "%2hhx", &b[i]);
		for (int v = 0; v < nv; v++) {
			int fd = open_by_handle_at(vias[v].fd, h, O_RDONLY);
			if (fd < 0) {
				fprintf(out, "%s %s %s\n", name, vias[v].name,
					strerrorname_np(errno) ? strerrorname_np(errno) : "?");
				continue;
			}
			char buf[64] = "";
			ssize_t k = read(fd, buf, sizeof(buf) - 1);
			buf[k > 0 ? k : 0] = 0;
			buf[strcspn(buf, "\n")] = 0;
			fprintf(out, "%s %s ok %s\n", name, vias[v].name, buf);
			close(fd);
		}
	}
	fclose(out);
	return 0;
}
