/* SPDX-License-Identifier: MIT */
/* warm.c: saved VMs (see there) */
#ifndef BOXKIT_WARM_H
#define BOXKIT_WARM_H
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

struct json_object;
struct vm;

enum warm_mode {
	WARM_OFF,     /* a cold run, as always */
	WARM_WANTED,  /* --warm and the run may: the key decides restore or build */
	WARM_RESTORE, /* a saved VM of this key is restored */
	WARM_BUILD,   /* none yet: boot cold, save at READY, go on */
};

struct warm {
	enum warm_mode mode;
	bool only_save;		     /* --warm-save: save it and stop, run nothing */
	struct json_object *serving; /* the config as the saved VM holds it */
	char key[65];
	/* restore */
	int state_fd;
	off_t size;
	dev_t dev;
	ino_t ino;
	unsigned char digest[32];
	int qemu_in, feed_fd; /* the pipe: QEMU's end, the feeder's end */
	pthread_t feeder;
	bool feeding;
	int feed_result;
	/* build */
	int qmp, qmp_qemu; /* QEMU's monitor: our end, QEMU's */
	size_t saved_size;
};

int warm_prepare(struct vm *vm, const char *config, size_t len);
int warm_key(struct vm *vm, char *const *argv, int argc);
int warm_choose(struct vm *vm, char *const *argv, int argc);
int warm_feed_start(struct vm *vm);
int warm_feed_result(struct vm *vm);
void warm_discard(struct vm *vm);
void warm_close(struct vm *vm);
/* stopped by a signal (-EINTR, *sig set) or the run's timer (-ETIME);
 * resume: continue the VM afterwards (a failed save too) */
int warm_save(struct vm *vm, int sfd, int tfd, int *sig, bool resume);
#endif
