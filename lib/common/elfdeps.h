/* SPDX-License-Identifier: MIT */
#ifndef BOXKIT_ELFDEPS_H
#define BOXKIT_ELFDEPS_H
#include <limits.h>
#include <stddef.h>

#define ELFDEPS_MAX 64

struct elfdeps {
	int n;
	char path[ELFDEPS_MAX][PATH_MAX]; /* absolute: the interpreter first, then the libraries */
};

/* The interpreter and shared libraries (recursively) the x86_64 ELF open at
 * fd needs, as absolute paths. origin is the directory $ORIGIN stands for
 * (the program's own). A static program gives none. 0, -ENOEXEC for a file
 * that is not such an ELF, -ENOENT when a library cannot be found (its name
 * in missing), or -errno. */
int elf_deps(int fd, const char *origin, struct elfdeps *d, char *missing, size_t mlen);
#endif
