/* SPDX-License-Identifier: MIT */
/* Between the guest init (PID 1 of the VM) and the container's init (PID 1
 * of the container, the same binary run by crun as CONTAINER_INIT
 * CONTAINER_INIT_SERVE): a SOCK_SEQPACKET socket, fd 3 in the container
 * (crun --preserve-fds 1). One message per packet: struct ci_msg, then a
 * payload; descriptors travel with SCM_RIGHTS.
 *
 *   cinit -> init  CI_READY                   the container is up
 *   init -> cinit  CI_EXEC id, val=tty        payload: the EXEC frame's JSON;
 *                                             without a tty, 3 descriptors
 *                                             (stdin, stdout, stderr) come along
 *   cinit -> init  CI_STARTED id, val=0|-errno with a tty, the pty's master
 *   cinit -> init  CI_EXITED id, val=status   0-255, 128+N for signal N
 *   init -> cinit  CI_SIGNAL id, val=sig      to that process (SIGKILL: its
 *                                             whole process group too)
 *   init -> cinit  CI_SIGNAL_ALL val=sig      every process of the container
 *
 * The processes a CI_EXEC starts are children of the container's init: the
 * same namespaces, user, capabilities, seccomp filter and no_new_privs as
 * the container's first process, without a runtime start per command. */
#ifndef BOXKIT_CINIT_H
#define BOXKIT_CINIT_H
#include <stddef.h>
#include <stdint.h>

#define CI_FD 3
enum ci_type { CI_READY = 1, CI_EXEC, CI_STARTED, CI_EXITED, CI_SIGNAL, CI_SIGNAL_ALL };
struct ci_msg {
	uint32_t type;
	uint32_t id;
	int32_t val;
};
#define CI_MSG_MAX (sizeof(struct ci_msg) + (1u << 16))

/* the container init in serve mode; returns its exit status */
int cinit_serve(void);
/* send a message with its payload and up to 3 descriptors: 0 or -errno */
int ci_send(int sock, uint32_t type, uint32_t id, int32_t val, const void *payload, size_t len, const int *fds,
	    int nfds);
/* receive one: the payload length (>= 0) or -errno (-EPIPE at the end);
 * fds[] gets up to 3 descriptors (-1 for none), *nfds how many */
long ci_recv(int sock, struct ci_msg *m, void *payload, size_t cap, int *fds, int *nfds);
#endif
