/* SPDX-License-Identifier: MIT */
/* The files a dynamically linked x86_64 ELF program needs to start: its
 * interpreter and the shared libraries it names, recursively, resolved as
 * ld.so does for the common case (DT_RPATH or DT_RUNPATH with $ORIGIN, then
 * the multiarch and lib64 directories). Used to copy a daemon and exactly
 * its libraries into a root of its own (so that nothing of the host
 * filesystem is reachable from it). Every offset read from the file is
 * bounds-checked; the file is a trusted binary, but a truncated or foreign
 * one must give an error, not a crash. */
#include "elfdeps.h"
#include "common.h"

#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define MAX_NEEDED 64

struct elfinfo {
	char interp[PATH_MAX];
	char runpath[PATH_MAX];
	char needed[MAX_NEEDED][NAME_MAX + 1];
	int nneeded;
};

static const unsigned char *at(const unsigned char *m, size_t size, uint64_t off, uint64_t len)
{
	if (off > size || len > size - off)
		return NULL;
	return m + off;
}

/* map a virtual address to a file offset through the PT_LOAD segments */
static bool vaddr_off(const Elf64_Phdr *ph, int n, uint64_t va, uint64_t *off)
{
	for (int i = 0; i < n; i++)
		if (ph[i].p_type == PT_LOAD && va >= ph[i].p_vaddr && va - ph[i].p_vaddr < ph[i].p_filesz) {
			*off = ph[i].p_offset + (va - ph[i].p_vaddr);
			return true;
		}
	return false;
}

static int read_elf(int fd, struct elfinfo *info)
{
	struct stat st;
	memset(info, 0, sizeof(*info));
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr) || st.st_size > (256 << 20))
		return -ENOEXEC;
	size_t size = (size_t)st.st_size;
	const unsigned char *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	int r = -ENOEXEC;
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)m;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_machine != EM_X86_64 || eh->e_phentsize != sizeof(Elf64_Phdr))
		goto out;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)at(m, size, eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr));
	if (!ph)
		goto out;
	const Elf64_Dyn *dyn = NULL;
	size_t ndyn = 0;
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_INTERP) {
			const char *s = (const char *)at(m, size, ph[i].p_offset, ph[i].p_filesz);
			if (!s || ph[i].p_filesz == 0 || ph[i].p_filesz >= sizeof(info->interp) ||
			    s[ph[i].p_filesz - 1])
				goto out;
			memcpy(info->interp, s, ph[i].p_filesz);
		} else if (ph[i].p_type == PT_DYNAMIC) {
			dyn = (const Elf64_Dyn *)at(m, size, ph[i].p_offset, ph[i].p_filesz);
			ndyn = ph[i].p_filesz / sizeof(Elf64_Dyn);
			if (!dyn)
				goto out;
		}
	}
	if (dyn) {
		uint64_t strtab = 0, strsz = 0, stroff;
		for (size_t i = 0; i < ndyn && dyn[i].d_tag != DT_NULL; i++) {
			if (dyn[i].d_tag == DT_STRTAB)
				strtab = dyn[i].d_un.d_ptr;
			else if (dyn[i].d_tag == DT_STRSZ)
				strsz = dyn[i].d_un.d_val;
		}
		if (!strtab || !vaddr_off(ph, eh->e_phnum, strtab, &stroff) || !at(m, size, stroff, strsz))
			goto out;
		const char *str = (const char *)m + stroff;
		for (size_t i = 0; i < ndyn && dyn[i].d_tag != DT_NULL; i++) {
			int64_t tag = dyn[i].d_tag;
			if (tag != DT_NEEDED && tag != DT_RUNPATH && tag != DT_RPATH)
				continue;
			uint64_t o = dyn[i].d_un.d_val;
			if (o >= strsz || !memchr(str + o, 0, strsz - o))
				goto out;
			const char *s = str + o;
			if (tag == DT_NEEDED) {
				if (info->nneeded == MAX_NEEDED || strlen(s) > NAME_MAX || strchr(s, '/'))
					goto out;
				snprintf(info->needed[info->nneeded++], NAME_MAX + 1, "%s", s);
			} else if (tag == DT_RUNPATH || !info->runpath[0])
				snprintf(info->runpath, sizeof(info->runpath), "%s", s);
		}
	}
	r = 0;
out:
	munmap((void *)m, size);
	return r;
}

static bool have(const struct elfdeps *d, const char *path)
{
	for (int i = 0; i < d->n; i++)
		if (!strcmp(d->path[i], path))
			return true;
	return false;
}

static int add(struct elfdeps *d, const char *path)
{
	if (have(d, path))
		return 0;
	if (d->n == ELFDEPS_MAX)
		return -E2BIG;
	snprintf(d->path[d->n++], sizeof(d->path[0]), "%s", path);
	return 1;
}

/* find lib in the runpath (":"-separated, $ORIGIN = origin) or the default dirs */
static int find_lib(const char *lib, const char *runpath, const char *origin, char *out, size_t outlen)
{
	static const char *const defaults[] = {
		"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"
	};
	char rp[PATH_MAX];
	struct stat st;
	snprintf(rp, sizeof(rp), "%s", runpath);
	for (char *save = NULL, *dir = strtok_r(rp, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		char d[PATH_MAX];
		if (!strncmp(dir, "$ORIGIN", 7))
			snprintf(d, sizeof(d), "%s%s", origin, dir + 7);
		else
			snprintf(d, sizeof(d), "%s", dir);
		if ((size_t)snprintf(out, outlen, "%s/%s", d, lib) < outlen && stat(out, &st) == 0 &&
		    S_ISREG(st.st_mode))
			return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(defaults); i++)
		if ((size_t)snprintf(out, outlen, "%s/%s", defaults[i], lib) < outlen && stat(out, &st) == 0 &&
		    S_ISREG(st.st_mode))
			return 0;
	return -ENOENT;
}

static int walk(struct elfdeps *d, int fd, const char *origin, char *missing, size_t mlen)
{
	struct elfinfo *info = malloc(sizeof(*info));
	int r;
	if (!info)
		return -ENOMEM;
	if ((r = read_elf(fd, info)) < 0) {
		free(info);
		return r;
	}
	if (info->interp[0] && (r = add(d, info->interp)) < 0) {
		free(info);
		return r;
	}
	for (int i = 0; i < info->nneeded; i++) {
		char path[PATH_MAX];
		if (find_lib(info->needed[i], info->runpath, origin, path, sizeof(path)) < 0) {
			snprintf(missing, mlen, "%s", info->needed[i]);
			free(info);
			return -ENOENT;
		}
		if ((r = add(d, path)) < 0)
			break;
		if (r == 0)
			continue;
		cleanup_close int lfd = open(path, O_RDONLY | O_CLOEXEC);
		if (lfd < 0) {
			r = -errno;
			snprintf(missing, mlen, "%s", path);
			break;
		}
		char lorigin[PATH_MAX];
		snprintf(lorigin, sizeof(lorigin), "%s", path);
		*strrchr(lorigin, '/') = 0;
		if ((r = walk(d, lfd, lorigin, missing, mlen)) < 0)
			break;
	}
	free(info);
	return r < 0 ? r : 0;
}

int elf_deps(int fd, const char *origin, struct elfdeps *d, char *missing, size_t mlen)
{
	d->n = 0;
	if (missing && mlen)
		missing[0] = 0;
	return walk(d, fd, origin, missing, mlen);
}
