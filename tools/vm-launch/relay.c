/* SPDX-License-Identifier: MIT */
/* The relay: one event loop over descriptors boxkit owns, all non-blocking,
 * with a bounded buffer per direction, writing only when the peer is ready.
 *
 * The caller's stdin, stdout and stderr are never touched by the loop: one
 * small thread per descriptor does plain blocking reads or writes on it and
 * talks to the loop through a pipe of ours. So the caller's open file
 * descriptions keep their flags (setting O_NONBLOCK on a shared stdin breaks
 * the caller's next `read`), whatever kind of file they are (a tty, a pipe, a
 * socket, a regular file: splice needs a pipe, and a reopened
 * /proc/self/fd/0 has its own offset), and a caller that stops reading our
 * output only stalls that thread, never the loop: timeouts and signals still
 * take effect. Backpressure is end to end: a full pipe stops the loop
 * reading the guest's frames, which stops the guest; stdin goes to the guest
 * only within the window the guest init grants.
 *
 * What the loop does next is read from a state table (transitions[] below):
 * an event in a state runs an action and moves to the next state. */
#include "common.h"
#include "guest-abi.h"
#include "launch.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>

#define OUT_CAP (FRAME_HDR + FRAME_MAX + 4 * (FRAME_HDR + FRAME_DATA_MAX))
#define IN_CAP (FRAME_HDR + FRAME_DATA_MAX)
#define CONSOLE_CAP (512 * 1024) /* console.log, then rotated to console.log.1 */
#define HELLO_DEADLINE_MS 60000	 /* the guest init must say hello within this */
#define SIGNAL_GRACE_MS 700	 /* a signal forwarded to the workload: then the VM goes */
#define EXIT_GRACE_MS 5000	 /* the workload's status is in: QEMU should exit by then */

/* ---- the caller's descriptors, each served by a thread ------------------------------------ */

struct pump {
	int caller;   /* 0, 1 or 2: the caller's descriptor */
	int loop_end; /* the loop's end of the pipe (non-blocking) */
	int thread_end;
	int done[2]; /* the thread closes done[1] when it ends */
	pthread_t th;
	bool running;
	volatile bool write_failed; /* the caller's stdout or stderr went away */
	volatile int write_errno;
};

/* the caller's descriptor may be non-blocking already (its flags are never
 * ours to change): then wait for it */
static void wait_caller(int fd, short ev)
{
	struct pollfd pf = { fd, ev, 0 };
	poll(&pf, 1, -1);
}

static void write_all_blocking(struct pump *p, const char *b, size_t n)
{
	while (n > 0 && !p->write_failed) {
		ssize_t w = write(p->caller, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			wait_caller(p->caller, POLLOUT);
			continue;
		}
		if (w <= 0) {
			p->write_errno = w < 0 ? errno : EIO;
			p->write_failed = true; /* go on draining the pipe, so the loop never stalls */
			return;
		}
		b += w;
		n -= (size_t)w;
	}
}

static void *pump_out(void *opaque)
{
	struct pump *p = opaque;
	char buf[65536];
	for (;;) {
		ssize_t n = read(p->thread_end, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		write_all_blocking(p, buf, (size_t)n);
	}
	close(p->done[1]);
	return NULL;
}

static void *pump_in(void *opaque)
{
	struct pump *p = opaque;
	char buf[65536];
	for (;;) {
		ssize_t n = read(p->caller, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			wait_caller(p->caller, POLLIN);
			continue;
		}
		if (n <= 0)
			break;
		const char *b = buf;
		while (n > 0) {
			ssize_t w = write(p->thread_end, b, (size_t)n);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				goto out; /* the loop is gone */
			b += w;
			n -= w;
		}
	}
out:
	close(p->thread_end); /* EOF for the loop */
	p->thread_end = -1;
	close(p->done[1]);
	return NULL;
}

static int pump_start(struct pump *p, int caller, bool in)
{
	int pp[2];
	p->caller = caller;
	p->loop_end = p->thread_end = p->done[0] = p->done[1] = -1;
	if (pipe2(pp, O_CLOEXEC) < 0 || pipe2(p->done, O_CLOEXEC) < 0)
		return -errno;
	p->loop_end = in ? pp[0] : pp[1];
	p->thread_end = in ? pp[1] : pp[0];
	fcntl(p->loop_end, F_SETFL, O_NONBLOCK);
	/* a thread with blocked signals (inherited): they all go to the signalfd */
	int r = pthread_create(&p->th, NULL, in ? pump_in : pump_out, p);
	if (r != 0)
		return -r;
	p->running = true;
	return 0;
}

/* ---- the loop's state ------------------------------------------------------------------ */

enum rstate { ST_BOOTING, ST_RUNNING, ST_SIGNALLED, ST_EXITED, ST_STOPPING, ST_DONE, ST__N };
static const char *const state_name[] = { "booting", "running", "signalled", "exited", "stopping", "done" };

enum revent {
	EV_HELLO,      /* the guest init is up */
	EV_EXIT,       /* the workload's status came */
	EV_FAIL,       /* the guest init failed (it reboots next) */
	EV_BAD_FRAME,  /* a frame we cannot accept */
	EV_SIGNAL,     /* SIGINT, SIGTERM or SIGHUP */
	EV_TIMEOUT,    /* --timeout */
	EV_DEADLINE,   /* the state's own deadline (hello, signal grace, exit grace) */
	EV_SHARE_DIED, /* a virtiofsd ended while the VM ran */
	EV_QEMU_EXIT,  /* QEMU is gone (reaped) */
	EV__N
};
static const char *const event_name[] = { "hello",   "exit",	 "fail",       "bad frame", "signal",
					  "timeout", "deadline", "share died", "qemu exit" };

struct relay {
	struct vm *vm;
	const char *config;
	size_t config_len;
	enum rstate state;
	struct fbuf in, out, pend[2];
	uint32_t window;
	bool stdin_open;
	int status; /* the workload's, or -1 */
	int sig;    /* the first signal that came */
	bool timed_out, bad, no_hello, share_failed, plan_failed;
	bool stopped; /* it went through ST_STOPPING: killed, not finished */
	char fail[1024];
	int sfd, tfd, dfd; /* signalfd, --timeout timer, state deadline timer */
	struct pump pin, pout[2];
	int console, log_fd, run_fd;
	size_t console_written;
};

static void arm_deadline(struct relay *r, int ms)
{
	struct itimerspec its = { .it_value = { ms / 1000, (long)(ms % 1000) * 1000000L } };
	timerfd_settime(r->dfd, 0, &its, NULL);
}

/* ---- actions ---------------------------------------------------------------------------- */

static void act_none(struct relay *r)
{
	(void)r;
}

static void act_kill(struct relay *r)
{
	vm_kill(r->vm);
}

static void act_send_plan(struct relay *r)
{
	struct vm *vm = r->vm;
	cleanup_json struct json_object *plan = json_object_new_object();
	struct json_object *vols = json_object_new_array();
	struct json_tokener *tok = json_tokener_new_ex(64);
	struct json_object *cfg = tok ? json_tokener_parse_ex(tok, r->config, (int)r->config_len) : NULL;
	if (tok)
		json_tokener_free(tok);
	json_object_object_add(plan, "version", json_object_new_int(GUEST_PLAN_VERSION));
	json_object_object_add(plan, "config", cfg);
	for (int i = 0; i < vm->nvols; i++) {
		struct json_object *v = json_object_new_object();
		json_object_object_add(v, "tag", json_object_new_string(vm->vols[i].e.tag));
		json_object_object_add(v, "type", json_object_new_string(vm->vols[i].e.is_file ? "file" : "directory"));
		json_object_object_add(v, "readonly", json_object_new_boolean(vm->vols[i].e.readonly));
		if (vm->vols[i].e.is_file)
			json_object_object_add(v, "file", json_object_new_string(vm->vols[i].file_name));
		json_object_array_add(vols, v);
	}
	json_object_object_add(plan, "volumes", vols);
	const char *t = json_object_to_json_string_ext(plan, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t n = t ? strlen(t) : 0;
	if (!cfg || !t || n > FRAME_MAX || frame_put(&r->out, FR_PLAN, 0, t, (uint32_t)n) < 0) {
		log_error("cannot send the plan to the guest (%zu bytes)", n);
		r->plan_failed = true;
		vm_kill(vm);
		return;
	}
	log_debug("guest init is up (%.3f s): plan sent", vm_elapsed(vm));
	r->stdin_open = true;
}

static void act_forward_signal(struct relay *r)
{
	unsigned char p[4];
	le32_put(p, (uint32_t)r->sig);
	log_debug("caught signal %d: passing it to the workload", r->sig);
	if (frame_put(&r->out, FR_SIGNAL, 0, p, 4) < 0)
		vm_kill(r->vm);
	arm_deadline(r, SIGNAL_GRACE_MS);
}

static void act_exit_grace(struct relay *r)
{
	log_debug("workload exited with %d (%.3f s)", r->status, vm_elapsed(r->vm));
	arm_deadline(r, EXIT_GRACE_MS);
}

static void act_timeout(struct relay *r)
{
	log_error("timed out after %g seconds: stopping the VM", arg.timeout);
	vm_kill(r->vm);
}

static void act_no_hello(struct relay *r)
{
	r->no_hello = true;
	log_error("the guest init did not say hello within %d s: stopping the VM", HELLO_DEADLINE_MS / 1000);
	vm_kill(r->vm);
}

static void act_bad_frame(struct relay *r)
{
	r->bad = true;
	log_error("bad frame from the guest: stopping the VM");
	vm_kill(r->vm);
}

/* The state table: in state `from`, event `ev` runs `act` and leads to `to`.
 * An event with no row in the current state changes nothing. */
static const struct transition {
	enum rstate from;
	enum revent ev;
	void (*act)(struct relay *);
	enum rstate to;
} transitions[] = {
	{ ST_BOOTING, EV_HELLO, act_send_plan, ST_RUNNING },
	{ ST_BOOTING, EV_DEADLINE, act_no_hello, ST_STOPPING },
	{ ST_BOOTING, EV_SIGNAL, act_kill, ST_STOPPING },
	{ ST_BOOTING, EV_TIMEOUT, act_timeout, ST_STOPPING },
	{ ST_BOOTING, EV_FAIL, act_none, ST_BOOTING },
	{ ST_BOOTING, EV_BAD_FRAME, act_bad_frame, ST_STOPPING },
	{ ST_BOOTING, EV_SHARE_DIED, act_kill, ST_STOPPING },
	{ ST_BOOTING, EV_QEMU_EXIT, act_none, ST_DONE },

	{ ST_RUNNING, EV_EXIT, act_exit_grace, ST_EXITED },
	{ ST_RUNNING, EV_SIGNAL, act_forward_signal, ST_SIGNALLED },
	{ ST_RUNNING, EV_TIMEOUT, act_timeout, ST_STOPPING },
	{ ST_RUNNING, EV_FAIL, act_none, ST_RUNNING },
	{ ST_RUNNING, EV_BAD_FRAME, act_bad_frame, ST_STOPPING },
	{ ST_RUNNING, EV_SHARE_DIED, act_kill, ST_STOPPING },
	{ ST_RUNNING, EV_QEMU_EXIT, act_none, ST_DONE },

	{ ST_SIGNALLED, EV_EXIT, act_exit_grace, ST_EXITED },
	{ ST_SIGNALLED, EV_SIGNAL, act_kill, ST_STOPPING }, /* a second signal: now */
	{ ST_SIGNALLED, EV_DEADLINE, act_kill, ST_STOPPING },
	{ ST_SIGNALLED, EV_TIMEOUT, act_timeout, ST_STOPPING },
	{ ST_SIGNALLED, EV_BAD_FRAME, act_bad_frame, ST_STOPPING },
	{ ST_SIGNALLED, EV_SHARE_DIED, act_kill, ST_STOPPING },
	{ ST_SIGNALLED, EV_QEMU_EXIT, act_none, ST_DONE },

	{ ST_EXITED, EV_DEADLINE, act_kill, ST_STOPPING },
	{ ST_EXITED, EV_SIGNAL, act_kill, ST_STOPPING },
	{ ST_EXITED, EV_TIMEOUT, act_kill, ST_STOPPING },
	{ ST_EXITED, EV_BAD_FRAME, act_kill, ST_STOPPING },
	{ ST_EXITED, EV_QEMU_EXIT, act_none, ST_DONE },

	{ ST_STOPPING, EV_SIGNAL, act_kill, ST_STOPPING },
	{ ST_STOPPING, EV_QEMU_EXIT, act_none, ST_DONE },
};

static void fire(struct relay *r, enum revent ev)
{
	for (size_t i = 0; i < ARRAY_SIZE(transitions); i++) {
		const struct transition *t = &transitions[i];
		if (t->from != r->state || t->ev != ev)
			continue;
		log_debug("relay: %s + %s -> %s", state_name[r->state], event_name[ev], state_name[t->to]);
		r->state = t->to;
		if (t->to == ST_STOPPING)
			r->stopped = true;
		t->act(r);
		return;
	}
}

/* ---- I/O ------------------------------------------------------------------------------- */

static void console_write(struct relay *r, const char *b, size_t n)
{
	if (r->log_fd < 0)
		return;
	if (r->console_written + n > CONSOLE_CAP) {
		/* rotate: at most two files of CONSOLE_CAP, the newest bytes kept;
		 * console.log is never missing (a new one is swapped in atomically) */
		int nfd = openat(r->run_fd, "console.log.new",
				 O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (nfd < 0)
			return;
		if (renameat2(r->run_fd, "console.log.new", r->run_fd, "console.log", RENAME_EXCHANGE) < 0 ||
		    renameat(r->run_fd, "console.log.new", r->run_fd, "console.log.1") < 0) {
			close(nfd);
			return;
		}
		close(r->log_fd);
		r->log_fd = nfd;
		r->console_written = 0;
	}
	if (write(r->log_fd, b, n) > 0)
		r->console_written += n;
}

static void drain_console(struct relay *r)
{
	char buf[16384];
	for (int k = 0; k < 16 && r->console >= 0; k++) {
		ssize_t n = read(r->console, buf, sizeof(buf));
		if (n > 0) {
			console_write(r, buf, (size_t)n);
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			close(r->console);
			r->console = -1;
		}
		return;
	}
}

/* Take the complete frames off the input buffer, as far as their targets
 * have room. */
static void take_frames(struct relay *r)
{
	struct frame f;
	int k;
	while ((k = frame_peek(&r->in, FRAME_DATA_MAX, &f)) == 1) {
		switch (f.type) {
		case FR_HELLO: {
			int proto = -1;
			char tmp[257];
			memcpy(tmp, f.payload, f.len < 256 ? f.len : 256);
			tmp[f.len < 256 ? f.len : 256] = 0;
			cleanup_json struct json_object *h = json_tokener_parse(tmp);
			struct json_object *v;
			if (h && json_object_object_get_ex(h, "proto", &v))
				proto = json_object_get_int(v);
			if (proto != GUEST_PROTO_VERSION) {
				snprintf(r->fail, sizeof(r->fail),
					 "the guest init speaks protocol %d, this vm-launch speaks %d (rebuild the "
					 "images: make "
					 "image)",
					 proto, GUEST_PROTO_VERSION);
				fire(r, EV_BAD_FRAME);
			} else
				fire(r, EV_HELLO);
			break;
		}
		case FR_WINDOW:
			if (f.len == 4 && le32_get(f.payload) <= STDIN_WINDOW &&
			    r->window + le32_get(f.payload) <= STDIN_WINDOW)
				r->window += le32_get(f.payload);
			else
				fire(r, EV_BAD_FRAME);
			break;
		case FR_STDOUT:
		case FR_STDERR: {
			struct fbuf *p = &r->pend[f.type == FR_STDOUT ? 0 : 1];
			if (fbuf_room(p) < f.len)
				return; /* its pipe is full: wait, and stop reading the guest */
			memcpy(p->data + p->len, f.payload, f.len);
			p->len += f.len;
			break;
		}
		case FR_EXIT:
			if (f.len != 4) {
				fire(r, EV_BAD_FRAME);
				break;
			}
			r->status = (int)(le32_get(f.payload) & 0xff);
			fire(r, EV_EXIT);
			break;
		case FR_FAIL:
			snprintf(r->fail, sizeof(r->fail), "%.*s", (int)(f.len < 1000 ? f.len : 1000),
				 (const char *)f.payload);
			sanitize_text(r->fail, sizeof(r->fail));
			fire(r, EV_FAIL);
			break;
		default: log_debug("unknown frame '%c' from the guest", f.type); fire(r, EV_BAD_FRAME);
		}
		fbuf_consume(&r->in, FRAME_HDR + f.len);
		if (r->stopped)
			return; /* the VM was stopped: what it says next does not count */
	}
	if (k < 0)
		fire(r, EV_BAD_FRAME);
}

static void read_ctl(struct relay *r)
{
	struct vm *vm = r->vm;
	ssize_t n = read(vm->ctl, r->in.data + r->in.len, fbuf_room(&r->in));
	if (n > 0) {
		r->in.len += (size_t)n;
		take_frames(r);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		close(vm->ctl);
		vm->ctl = -1;
	}
}

static void write_ctl(struct relay *r)
{
	ssize_t n = write(r->vm->ctl, r->out.data, r->out.len);
	if (n > 0)
		fbuf_consume(&r->out, (size_t)n);
	else if (n < 0 && errno != EAGAIN && errno != EINTR) {
		close(r->vm->ctl);
		r->vm->ctl = -1;
		r->out.len = 0;
	}
}

static void flush_pend(struct relay *r, int k)
{
	struct fbuf *p = &r->pend[k];
	if (!p->len || r->pout[k].loop_end < 0)
		return;
	ssize_t n = write(r->pout[k].loop_end, p->data, p->len);
	if (n > 0)
		fbuf_consume(p, (size_t)n);
	else if (n < 0 && errno != EAGAIN && errno != EINTR)
		p->len = 0;
}

static void read_stdin(struct relay *r)
{
	char buf[FRAME_DATA_MAX];
	size_t want = r->window < sizeof(buf) ? r->window : sizeof(buf);
	if (fbuf_room(&r->out) < FRAME_HDR + want)
		want = fbuf_room(&r->out) > FRAME_HDR ? fbuf_room(&r->out) - FRAME_HDR : 0;
	if (!want)
		return;
	ssize_t n = read(r->pin.loop_end, buf, want);
	if (n > 0) {
		frame_put(&r->out, FR_STDIN, 0, buf, (uint32_t)n);
		r->window -= (uint32_t)n;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		if (frame_put(&r->out, FR_STDIN_EOF, 0, NULL, 0) == 0) {
			r->stdin_open = false;
			close(r->pin.loop_end);
			r->pin.loop_end = -1;
		}
	}
}

static void on_signals(struct relay *r)
{
	struct signalfd_siginfo si;
	while (read(r->sfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo != SIGCHLD) {
			if (!r->sig)
				r->sig = (int)si.ssi_signo;
			fire(r, EV_SIGNAL);
			continue;
		}
		int st;
		pid_t w;
		while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
			if (w == r->vm->qemu) {
				log_debug("QEMU exited after %.3f s", vm_elapsed(r->vm));
				r->vm->qemu = -1;
				r->vm->qemu_status = st;
				fire(r, EV_QEMU_EXIT);
			} else if (shares_reap(r->vm, w, st, r->status < 0 && r->state != ST_STOPPING) >= 0 &&
				   r->status < 0 && r->vm->qemu > 0 && r->state != ST_STOPPING) {
				/* a daemon that dies before the workload is done fails the
				 * run loudly (after it, the guest's reboot ends them) */
				r->share_failed = true;
				fire(r, EV_SHARE_DIED);
			}
		}
	}
}

/* ---- the loop ---------------------------------------------------------------------------- */

enum { P_SIG, P_TIMEOUT, P_DEADLINE, P_CTL, P_STDIN, P_OUT0, P_OUT1, P_CONSOLE, P_VFSD };

static int loop(struct relay *r)
{
	struct vm *vm = r->vm;
	while (r->state != ST_DONE) {
		struct pollfd pf[P_VFSD + 64];
		short ctl_ev = 0;
		if (vm->ctl >= 0) {
			if (fbuf_room(&r->in) > 0)
				ctl_ev |= POLLIN;
			if (r->out.len)
				ctl_ev |= POLLOUT;
		}
		bool want_stdin = r->stdin_open && r->pin.loop_end >= 0 && r->window > 0 &&
				  fbuf_room(&r->out) > FRAME_HDR + 1024 && r->state == ST_RUNNING;
		pf[P_SIG] = (struct pollfd){ r->sfd, POLLIN, 0 };
		pf[P_TIMEOUT] = (struct pollfd){ r->tfd, POLLIN, 0 };
		pf[P_DEADLINE] = (struct pollfd){ r->dfd, POLLIN, 0 };
		pf[P_CTL] = (struct pollfd){ vm->ctl, ctl_ev, 0 };
		pf[P_STDIN] = (struct pollfd){ want_stdin ? r->pin.loop_end : -1, POLLIN, 0 };
		pf[P_OUT0] = (struct pollfd){ r->pend[0].len ? r->pout[0].loop_end : -1, POLLOUT, 0 };
		pf[P_OUT1] = (struct pollfd){ r->pend[1].len ? r->pout[1].loop_end : -1, POLLOUT, 0 };
		pf[P_CONSOLE] = (struct pollfd){ r->console, POLLIN, 0 };
		int nv = vm->nvols < 64 ? vm->nvols : 64;
		for (int i = 0; i < nv; i++)
			pf[P_VFSD + i] = (struct pollfd){ vm->vols[i].log, POLLIN, 0 };
		if (poll(pf, (nfds_t)(P_VFSD + nv), -1) < 0) {
			if (errno == EINTR)
				continue;
			return log_sys(errno, "poll");
		}
		uint64_t x;
		if (pf[P_SIG].revents)
			on_signals(r);
		if (pf[P_TIMEOUT].revents && read(r->tfd, &x, sizeof(x)) == sizeof(x)) {
			r->timed_out = true;
			fire(r, EV_TIMEOUT);
		}
		if (pf[P_DEADLINE].revents && read(r->dfd, &x, sizeof(x)) == sizeof(x))
			fire(r, EV_DEADLINE);
		if (pf[P_CONSOLE].revents)
			drain_console(r);
		for (int i = 0; i < nv; i++)
			if (pf[P_VFSD + i].revents)
				shares_drain_log(&vm->vols[i]);
		if (pf[P_OUT0].revents)
			flush_pend(r, 0);
		if (pf[P_OUT1].revents)
			flush_pend(r, 1);
		if (vm->ctl >= 0 && (pf[P_CTL].revents & POLLOUT))
			write_ctl(r);
		if (vm->ctl >= 0 && (pf[P_CTL].revents & (POLLIN | POLLHUP | POLLERR)))
			read_ctl(r);
		else if (r->in.len)
			take_frames(r); /* frames held back by a full pipe */
		if (pf[P_STDIN].revents)
			read_stdin(r);
	}
	return 0;
}

/* Wait until fd is ready for events; false when a signal (not SIGCHLD) or
 * the timeout came first (noted in r), or poll failed. */
static bool wait_ready(struct relay *r, int fd, short events)
{
	for (;;) {
		struct pollfd pf[3] = { { r->sfd, POLLIN, 0 }, { r->tfd, POLLIN, 0 }, { fd, events, 0 } };
		if (poll(pf, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		struct signalfd_siginfo si;
		if (pf[0].revents && read(r->sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGCHLD) {
			r->sig = r->sig ? r->sig : (int)si.ssi_signo;
			return false;
		}
		if (pf[1].revents) {
			r->timed_out = true;
			return false;
		}
		if (pf[2].revents)
			return true;
	}
}

/* After QEMU: what it wrote before it went is still in the socket. Take
 * every frame of it (the status may be among them) and hand the output to
 * the caller, as long as the caller reads it; a signal or the timeout still
 * ends this at once. */
static void drain_output(struct relay *r)
{
	for (;;) {
		take_frames(r);
		int k = r->pend[0].len ? 0 : r->pend[1].len ? 1 : -1;
		if (k >= 0) {
			if (!wait_ready(r, r->pout[k].loop_end, POLLOUT))
				return;
			flush_pend(r, k);
			continue;
		}
		if (r->vm->ctl < 0 || !fbuf_room(&r->in))
			break;
		if (!wait_ready(r, r->vm->ctl, POLLIN))
			return;
		read_ctl(r); /* closes the socket at its end */
	}
	for (int k = 0; k < 2; k++) {
		/* EOF for the thread; wait for it to hand everything over */
		close(r->pout[k].loop_end);
		r->pout[k].loop_end = -1;
		if (!wait_ready(r, r->pout[k].done[0], POLLIN))
			return;
	}
}

void print_console_tail(const char *run_dir)
{
	char buf[4096], path[4300];
	size_t have = 0;
	/* the newest bytes: console.log, and before it the rotated console.log.1 */
	for (int k = 0; k < 2 && have < sizeof(buf) - 1; k++) {
		snprintf(path, sizeof(path), "%s/%s", run_dir, k ? "console.log.1" : "console.log");
		cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		off_t size = lseek(fd, 0, SEEK_END);
		size_t want = sizeof(buf) - 1 - have;
		off_t from = size > (off_t)want ? size - (off_t)want : 0;
		memmove(buf + (size_t)(size - from), buf, have);
		ssize_t n = pread(fd, buf, (size_t)(size - from), from);
		if (n < 0)
			n = 0;
		have += (size_t)n;
	}
	buf[have] = 0;
	sanitize_text(buf, have);
	char head[4400];
	snprintf(head, sizeof(head), "%s: console log tail (%s/console.log):", log_prog(), run_dir);
	log_text(head);
	log_text(have ? buf : "(empty: the kernel printed nothing)");
}

int relay_run(struct vm *vm, const char *config, size_t config_len, struct outcome *oc)
{
	struct relay r = { .vm = vm,
			   .config = config,
			   .config_len = config_len,
			   .state = ST_BOOTING,
			   .status = -1,
			   .sfd = -1,
			   .tfd = -1,
			   .dfd = -1,
			   .console = vm->console_pipe,
			   .log_fd = vm->console_fd,
			   .run_fd = -1 };
	sigset_t mask;
	int rc = 0;

	vm->console_pipe = vm->console_fd = -1; /* the relay owns them now */
	for (int k = 0; k < 2; k++)
		r.pout[k].loop_end = r.pout[k].done[0] = r.pout[k].done[1] = -1;
	r.pin.loop_end = -1;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	r.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	r.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	r.dfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	r.run_fd = open(vm->run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (r.sfd < 0 || r.tfd < 0 || r.dfd < 0 || r.run_fd < 0) {
		rc = log_sys(errno, "cannot set up the relay");
		goto out;
	}
	if (fbuf_init(&r.in, IN_CAP) < 0 || fbuf_init(&r.out, OUT_CAP) < 0 ||
	    fbuf_init(&r.pend[0], FRAME_DATA_MAX) < 0 || fbuf_init(&r.pend[1], FRAME_DATA_MAX) < 0) {
		rc = log_sys(ENOMEM, "out of memory");
		goto out;
	}
	if (arg.timeout > 0) {
		struct itimerspec its = { .it_value = { (time_t)arg.timeout,
							(long)((arg.timeout - (double)(time_t)arg.timeout) * 1e9) } };
		timerfd_settime(r.tfd, 0, &its, NULL);
	}
	arm_deadline(&r, HELLO_DEADLINE_MS);
	fcntl(vm->ctl, F_SETFL, O_NONBLOCK); /* our own socket */
	if (pump_start(&r.pout[0], STDOUT_FILENO, false) < 0 || pump_start(&r.pout[1], STDERR_FILENO, false) < 0 ||
	    pump_start(&r.pin, STDIN_FILENO, true) < 0) {
		rc = log_sys(errno, "cannot start the stdio threads");
		goto out;
	}
	rc = loop(&r);
	drain_console(&r);
	if (!r.stopped)
		drain_output(&r);
out:
	oc->status = r.status;
	oc->sig = r.sig;
	oc->timed_out = r.timed_out;
	oc->failed = r.bad || r.no_hello || r.share_failed || r.plan_failed || rc != 0;
	snprintf(oc->fail, sizeof(oc->fail), "%s", r.fail);
	/* a reader that went away (EPIPE: `box run ... | head`) is no failure */
	for (int k = 0; k < 2; k++)
		if (r.pout[k].write_failed && r.pout[k].write_errno != EPIPE && !oc->output_errno)
			oc->output_errno = r.pout[k].write_errno;
	/* threads blocked on the caller's descriptors are left; exit ends them */
	if (r.console >= 0)
		close(r.console);
	if (r.log_fd >= 0)
		close(r.log_fd);
	if (r.run_fd >= 0)
		close(r.run_fd);
	if (r.sfd >= 0)
		close(r.sfd);
	if (r.tfd >= 0)
		close(r.tfd);
	if (r.dfd >= 0)
		close(r.dfd);
	fbuf_free(&r.in);
	fbuf_free(&r.out);
	fbuf_free(&r.pend[0]);
	fbuf_free(&r.pend[1]);
	return rc;
}
