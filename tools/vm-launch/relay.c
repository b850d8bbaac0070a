/* SPDX-License-Identifier: MIT */
/* The relay: one event loop over descriptors boxkit owns, all non-blocking,
 * with a bounded buffer per direction, writing only when the peer is ready.
 *
 * Every process in the guest is a stream (guest-abi.h). A stream's other
 * end is an endpoint: the caller's own stdin, stdout and stderr (run mode's
 * stream 0), a client of the monitor's socket (box exec, in keep mode), or
 * the console log (the first command of a detached run). Both directions
 * are windowed per stream: the guest sends a stream's output only within
 * what the host granted, and the host grants it back only once the bytes
 * left toward the endpoint, so one endpoint that stops reading stalls its
 * own process and nothing else; stdin goes to the guest only within the
 * window the guest init grants. The loop always reads the guest.
 *
 * The caller's stdin, stdout and stderr are never touched by the loop: one
 * small thread per descriptor does plain blocking reads or writes on it and
 * talks to the loop through a pipe of ours. So the caller's open file
 * descriptions keep their flags (setting O_NONBLOCK on a shared stdin breaks
 * the caller's next `read`), whatever kind of file they are, and a caller
 * that stops reading our output only stalls that thread, never the loop:
 * timeouts and signals still take effect.
 *
 * What the loop does next is read from a state table (transitions[] below):
 * an event in a state runs an action and moves to the next state. */
#include "common.h"
#include "execspec.h"
#include "firstcmd.h"
#include "guest-abi.h"
#include "launch.h"
#include "monitor-abi.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#define OUT_CAP (FRAME_HDR + FRAME_MAX + 8 * (FRAME_HDR + FRAME_DATA_MAX))
#define OUT_RESERVE (128 * 1024) /* stdin and execs never take this: signals, grants */
#define IN_CAP (FRAME_HDR + FRAME_DATA_MAX)
#define CONN_OUT_CAP (10 * OUTPUT_WINDOW + 65536) /* a window of 1-byte frames, and control frames */
#define CONN_FRAMES_PER_PASS 64			  /* frames taken from one client per loop pass */
#define CONN_GRANT_AT (32 * 1024)		  /* grant output back once the client's queue is this low */
#define CONSOLE_CAP (512 * 1024)		  /* console.log, then rotated to console.log.1 */
#define HELLO_DEADLINE_MS 60000			  /* the guest init must say hello within this */
#define READY_DEADLINE_MS 60000			  /* keep mode: the container must be up within this */
#define SIGNAL_GRACE_MS 700			  /* a signal forwarded to the workload: then the VM goes */
#define EXIT_GRACE_MS 5000			  /* the workload's status is in: QEMU should exit by then */
#define SHUTDOWN_SLACK_MS 3000			  /* after a stop's grace: then QEMU is killed */
#define RESUME_DEADLINE_MS 30000		  /* a restored copy must say RESUMED within this */

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

/* ---- the caller's terminal ------------------------------------------------------------ */

static struct termios saved_tio;
static int saved_tio_fd = -1;

int term_raw(int fd)
{
	struct termios t;
	if (tcgetattr(fd, &t) < 0)
		return -errno;
	saved_tio = t;
	cfmakeraw(&t);
	if (tcsetattr(fd, TCSAFLUSH, &t) < 0)
		return -errno;
	saved_tio_fd = fd;
	return 0;
}

void term_restore(void)
{
	if (saved_tio_fd >= 0)
		tcsetattr(saved_tio_fd, TCSAFLUSH, &saved_tio);
	saved_tio_fd = -1;
}

/* ---- streams, endpoints, clients --------------------------------------------------------- */

enum ep_kind { EP_NONE, EP_LOCAL, EP_CONN, EP_LOG };

struct conn {
	int fd;
	struct fbuf in, out;	 /* frames from the client; frames for it */
	int stream;		 /* its process, or -1 */
	bool stopper;		 /* it asked the sandbox to stop */
	bool closing;		 /* write out what is queued, then close */
	uint32_t pending_window; /* stdin window the guest granted, not yet passed on */
	bool eof_sent;		 /* its STDIN_EOF went: a second one is a protocol error */
	long idle_until;	 /* monotonic ms: a client that has not asked by then is closed */
};

struct hstream {
	bool used;
	enum ep_kind ep;
	struct conn *c;
	uint32_t window;	/* stdin bytes the guest lets us send */
	uint32_t client_window; /* of that, granted on to the client, not yet used */
	uint32_t grant;		/* output delivered, not yet granted back to the guest */
	uint32_t out_win;	/* output the guest may still send (what we granted) */
	bool exited;
	bool eof_sent; /* EP_LOG: no stdin */
};

/* ---- the loop's state ------------------------------------------------------------------ */

enum rstate { ST_BOOTING, ST_RUNNING, ST_SIGNALLED, ST_EXITED, ST_SHUTTING, ST_STOPPING, ST_RESUMING, ST_DONE, ST__N };
static const char *const state_name[] = { "booting",	   "running",  "signalled", "exited",
					  "shutting down", "stopping", "resuming",  "done" };

enum revent {
	EV_HELLO,      /* the guest init is up */
	EV_READY,      /* the container is up */
	EV_EXIT,       /* stream 0's status came (run mode) */
	EV_FAIL,       /* the guest init failed (it reboots next) */
	EV_BAD_FRAME,  /* a frame we cannot accept */
	EV_SIGNAL,     /* SIGINT, SIGTERM or SIGHUP */
	EV_STOP,       /* a client asked the sandbox to stop */
	EV_TIMEOUT,    /* --timeout */
	EV_DEADLINE,   /* the state's own deadline */
	EV_SHARE_DIED, /* a virtiofsd ended while the VM ran */
	EV_QEMU_EXIT,  /* QEMU is gone (reaped) */
	EV_RESUMED,    /* a warm copy is alive (RESUMED) */
	EV__N
};
static const char *const event_name[] = { "hello", "ready",   "exit",	  "fail",	"bad frame", "signal",
					  "stop",  "timeout", "deadline", "share died", "qemu exit", "resumed" };

struct relay {
	struct vm *vm;
	struct json_object *cfg; /* the config: an exec's default environment and directory */
	enum rstate state;
	bool keep, ready;
	struct fbuf in, out, pend[2];
	struct hstream st[GUEST_STREAMS_MAX];
	struct conn *conns[MONITOR_CONN_MAX];
	int listen_fd;
	int status; /* stream 0's, or -1 */
	int sig;    /* the first signal that came */
	bool timed_out, bad, no_hello, share_failed, plan_failed;
	bool stopped;	    /* it went through ST_STOPPING: killed, not finished */
	bool resume_failed; /* a restored copy never came alive: the run may boot cold */
	bool save_failed;   /* a warm build could not save, or go on after it */
	bool saved;	    /* --warm-save: done */
	bool warm_saved;    /* a warm build saved (or tried): READY never comes twice */
	bool pumps;	    /* the caller's stdio threads run */
	bool stop_asked;    /* keep mode: box stop or a signal */
	char fail[1024];
	int sfd, tfd, dfd; /* signalfd, --timeout timer, state deadline timer */
	struct pump pin, pout[2];
	int console, log_fd, run_fd;
	size_t console_written;
	uid_t owner; /* the uid that may use the monitor's socket */
};

static void arm_deadline(struct relay *r, int ms)
{
	struct itimerspec its = { .it_value = { ms / 1000, (long)(ms % 1000) * 1000000L } };
	timerfd_settime(r->dfd, 0, &its, NULL);
}

static long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int put(struct relay *r, char type, uint32_t s, const void *p, uint32_t n)
{
	int k = frame_put(&r->out, type, s, p, n);
	if (k < 0)
		log_debug("the frame queue to the guest is full: '%c' for stream %u dropped", type, s);
	return k;
}

static int put_u32(struct relay *r, char type, uint32_t s, uint32_t v)
{
	unsigned char p[4];
	le32_put(p, v);
	return put(r, type, s, p, 4);
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

/* out of an action: the VM goes now (what fire() does for a row to ST_STOPPING) */
static void stop_now(struct relay *r)
{
	r->state = ST_STOPPING;
	r->stopped = true;
	vm_kill(r->vm);
}

static void act_send_plan(struct relay *r)
{
	struct vm *vm = r->vm;
	cleanup_json struct json_object *plan = json_object_new_object();
	struct json_object *vols = json_object_new_array();
	json_object_object_add(plan, "version", json_object_new_int(GUEST_PLAN_VERSION));
	/* a warm build: the saved VM's config, in keep mode, no terminal */
	bool saving = vm->warm.mode == WARM_BUILD;
	json_object_object_add(plan, "config", json_object_get(saving ? vm->warm.serving : r->cfg));
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
	json_object_object_add(plan, "keep", json_object_new_boolean(r->keep || saving));
	{
		unsigned char seed[PLAN_SEED_BYTES];
		char hex[2 * PLAN_SEED_BYTES + 1];
		if (random_bytes(seed, sizeof(seed)) == 0) {
			for (size_t i = 0; i < sizeof(seed); i++)
				snprintf(hex + 2 * i, 3, "%02x", seed[i]);
			json_object_object_add(plan, PLAN_SEED, json_object_new_string(hex));
			explicit_bzero(hex, sizeof(hex));
		}
		explicit_bzero(seed, sizeof(seed));
	}
	struct json_object *net = net_plan(vm);
	if (net)
		json_object_object_add(plan, PLAN_NET, net);
	json_object_object_add(plan, "tty", json_object_new_boolean(arg.tty && !saving));
	if (arg.tty && !saving) {
		struct winsize ws = { 0 };
		if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
			json_object_object_add(plan, "rows", json_object_new_int(ws.ws_row));
			json_object_object_add(plan, "cols", json_object_new_int(ws.ws_col));
		}
	}
	const char *t = json_object_to_json_string_ext(plan, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t n = t ? strlen(t) : 0;
	if (!t || n > FRAME_MAX || frame_put(&r->out, FR_PLAN, 0, t, (uint32_t)n) < 0) {
		log_error("cannot send the plan to the guest (%zu bytes)", n);
		r->plan_failed = true;
		vm_kill(vm);
		return;
	}
	log_debug("guest init is up (%.3f s): plan sent", vm_elapsed(vm));
	/* run mode: stream 0 is the caller's; keep mode: the container must come up */
	if (r->keep || saving)
		arm_deadline(r, READY_DEADLINE_MS);
	else
		arm_deadline(r, 0);
}

static void send_resume(struct relay *r);
static void became_ready(struct relay *r);
static void act_ready(struct relay *r)
{
	r->ready = true;
	arm_deadline(r, 0);
	log_debug("the sandbox is ready (%.3f s)", vm_elapsed(r->vm));
	if (r->vm->warm.mode == WARM_BUILD) {
		if (r->warm_saved) {
			/* READY again, after the save: a guest's, never the init's */
			log_error("bad frame from the guest (a second READY): stopping the VM");
			r->bad = true;
			stop_now(r);
			return;
		}
		r->warm_saved = true;
		r->ready = false; /* the copy is, once it says RESUMED */
		/* nothing of this run has reached the guest yet: save it now */
		int k = warm_save(r->vm, r->sfd, r->tfd, &r->sig, !r->vm->warm.only_save);
		if (k == -EINTR || k == -ETIME || (k < 0 && r->vm->warm.only_save)) {
			r->timed_out = k == -ETIME;
			r->save_failed = k != -EINTR && k != -ETIME;
			if (r->timed_out)
				log_error("timed out after %g seconds: stopping the VM", arg.timeout);
			stop_now(r);
			return;
		}
		if (r->vm->warm.only_save || k < 0) {
			r->saved = k == 0;
			r->save_failed = k < 0;
			stop_now(r);
			return;
		}
		send_resume(r);
		return;
	}
	became_ready(r);
}

/* keep mode: the parent (box create) returns now */
static void became_ready(struct relay *r)
{
	r->ready = true;
	if (r->vm->ready_fd >= 0) {
		/* the parent (box create) returns now; what we log next goes to monitor.log */
		if (write(r->vm->ready_fd, "1", 1) < 0)
			log_debug("the parent is gone");
		close(r->vm->ready_fd);
		r->vm->ready_fd = -1;
		int fd = openat(r->run_fd, MONITOR_LOG, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0) {
			log_flush(1000);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
	}
}

static void act_no_ready(struct relay *r)
{
	r->no_hello = true;
	log_error("the container did not come up within %d s: stopping the VM", READY_DEADLINE_MS / 1000);
	vm_kill(r->vm);
}

static void act_forward_signal(struct relay *r)
{
	log_debug("caught signal %d: passing it to the workload", r->sig);
	put_u32(r, FR_SIGNAL, 0, (uint32_t)r->sig);
	arm_deadline(r, SIGNAL_GRACE_MS);
}

static void act_exit_grace(struct relay *r)
{
	log_debug("workload exited with %d (%.3f s)", r->status, vm_elapsed(r->vm));
	arm_deadline(r, EXIT_GRACE_MS);
	/* a warm copy holds nothing to flush (no volumes): it goes now */
	if (r->vm->warm.mode == WARM_RESTORE || r->vm->warm.mode == WARM_BUILD)
		vm_kill(r->vm);
}

/* keep mode: a stop (box stop, or a signal to the monitor): every process
 * gets SIGTERM, then SIGKILL after the grace, then the VM powers off; QEMU
 * is killed if it has not gone a little after that */
static uint32_t stop_grace_ms = MONITOR_STOP_GRACE_MS;
static void act_shutdown(struct relay *r)
{
	r->stop_asked = true;
	log_debug("stopping the sandbox (grace %u ms)", stop_grace_ms);
	put_u32(r, FR_SHUTDOWN, 0, stop_grace_ms);
	arm_deadline(r, (int)stop_grace_ms + SHUTDOWN_SLACK_MS);
}

/* a second stop while shutting down: a short grace means now */
static void act_stop_again(struct relay *r)
{
	if (stop_grace_ms <= 1)
		stop_now(r);
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

/* A warm copy (restored, or the one just saved): the clock and fresh
 * entropy first, then (on RESUMED) the run's command as stream 0. */
static void send_resume(struct relay *r)
{
	unsigned char p[RESUME_HDR + 64];
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	le32_put(p, (uint32_t)((uint64_t)now.tv_sec & 0xffffffffu));
	le32_put(p + 4, (uint32_t)((uint64_t)now.tv_sec >> 32));
	le32_put(p + 8, (uint32_t)now.tv_nsec);
	le32_put(p + 12, r->keep ? RESUME_KEEP : 0);
	if (random_bytes(p + RESUME_HDR, sizeof(p) - RESUME_HDR) < 0 || put(r, FR_RESUME, 0, p, sizeof(p)) < 0) {
		log_error("cannot send the resume frame");
		r->bad = true;
		stop_now(r);
		return;
	}
	explicit_bzero(p, sizeof(p));
	r->state = ST_RESUMING;
	arm_deadline(r, RESUME_DEADLINE_MS);
}

static int start_pumps(struct relay *r);
static void act_resumed(struct relay *r)
{
	struct vm *vm = r->vm;
	arm_deadline(r, 0);
	log_debug("warm start: the copy is alive (%.3f s)", vm_elapsed(vm));
	/* a restored copy runs nothing of ours until its whole state matched
	 * its record (QEMU may start a copy whose last bytes never came) */
	if (vm->warm.mode == WARM_RESTORE && warm_feed_result(vm) != 0) {
		r->resume_failed = true;
		stop_now(r);
		return;
	}
	/* the config's command as stream 0: the run's, on the caller's stdio; a
	 * sandbox's first one, if it has one (box run -d), into the console log */
	struct winsize ws = { 24, 80, 0, 0 };
	if (arg.tty && (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) < 0 || !ws.ws_row || !ws.ws_col))
		ws = (struct winsize){ 24, 80, 0, 0 };
	cleanup_json struct json_object *spec = first_command_spec(r->cfg, arg.tty, ws.ws_row, ws.ws_col);
	const char *t =
		spec ? json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
		     : NULL;
	bool ok = r->keep ? !t || put(r, FR_EXEC, 0, t, (uint32_t)strlen(t)) == 0
			  : t && start_pumps(r) == 0 && put(r, FR_EXEC, 0, t, (uint32_t)strlen(t)) == 0;
	if (!ok) {
		log_error("cannot start the %s in the warm copy", r->keep ? "first command" : "command");
		r->bad = true;
		stop_now(r);
		return;
	}
	if (r->keep) {
		became_ready(r);
		return;
	}
	r->st[0] = (struct hstream){ .used = true, .ep = EP_LOCAL, .out_win = OUTPUT_WINDOW };
	r->ready = true;
}

static void act_no_resume(struct relay *r)
{
	r->resume_failed = true;
	log_debug("the warm copy did not come alive within %d s", RESUME_DEADLINE_MS / 1000);
	vm_kill(r->vm);
}

/* QEMU went before the copy said RESUMED: it could not take the state */
static void act_resume_lost(struct relay *r)
{
	r->resume_failed = true;
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
	{ ST_BOOTING, EV_STOP, act_kill, ST_STOPPING },
	{ ST_BOOTING, EV_TIMEOUT, act_timeout, ST_STOPPING },
	{ ST_BOOTING, EV_FAIL, act_none, ST_BOOTING },
	{ ST_BOOTING, EV_BAD_FRAME, act_bad_frame, ST_STOPPING },
	{ ST_BOOTING, EV_SHARE_DIED, act_kill, ST_STOPPING },
	{ ST_BOOTING, EV_QEMU_EXIT, act_none, ST_DONE },

	{ ST_RUNNING, EV_READY, act_ready, ST_RUNNING },
	{ ST_RUNNING, EV_DEADLINE, act_no_ready, ST_STOPPING },
	{ ST_RUNNING, EV_EXIT, act_exit_grace, ST_EXITED },
	{ ST_RUNNING, EV_SIGNAL, act_forward_signal, ST_SIGNALLED }, /* run mode; keep mode: see fire() */
	{ ST_RUNNING, EV_STOP, act_shutdown, ST_SHUTTING },
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

	{ ST_SHUTTING, EV_DEADLINE, act_kill, ST_STOPPING },
	{ ST_SHUTTING, EV_SIGNAL, act_kill, ST_STOPPING }, /* a second signal: now */
	{ ST_SHUTTING, EV_STOP, act_stop_again, ST_SHUTTING },
	{ ST_SHUTTING, EV_TIMEOUT, act_kill, ST_STOPPING },
	{ ST_SHUTTING, EV_BAD_FRAME, act_bad_frame, ST_STOPPING },
	{ ST_SHUTTING, EV_SHARE_DIED, act_kill, ST_STOPPING },
	{ ST_SHUTTING, EV_QEMU_EXIT, act_none, ST_DONE },

	{ ST_STOPPING, EV_SIGNAL, act_kill, ST_STOPPING },
	{ ST_STOPPING, EV_QEMU_EXIT, act_none, ST_DONE },

	{ ST_RESUMING, EV_RESUMED, act_resumed, ST_RUNNING },
	{ ST_RESUMING, EV_DEADLINE, act_no_resume, ST_STOPPING },
	{ ST_RESUMING, EV_SIGNAL, act_kill, ST_STOPPING },
	{ ST_RESUMING, EV_STOP, act_kill, ST_STOPPING }, /* box stop of a sandbox being restored */
	{ ST_RESUMING, EV_TIMEOUT, act_timeout, ST_STOPPING },
	{ ST_RESUMING, EV_FAIL, act_none, ST_RESUMING },
	{ ST_RESUMING, EV_BAD_FRAME, act_bad_frame, ST_STOPPING },
	{ ST_RESUMING, EV_QEMU_EXIT, act_resume_lost, ST_DONE },
};

static void fire(struct relay *r, enum revent ev)
{
	/* keep mode: a signal to the monitor stops the sandbox, gracefully */
	if (r->keep && ev == EV_SIGNAL && r->state == ST_RUNNING)
		ev = EV_STOP;
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

/* ---- clients of the monitor ------------------------------------------------------------- */

static void conn_put(struct conn *c, char type, const void *p, uint32_t n)
{
	if (frame_put(&c->out, type, 0, p, n) < 0)
		c->closing = true; /* cannot happen within the windows: drop the client */
}

static void conn_fail(struct conn *c, const char *msg)
{
	conn_put(c, FR_FAIL, msg, (uint32_t)strlen(msg));
	c->closing = true;
}

static void conn_free(struct relay *r, int i)
{
	struct conn *c = r->conns[i];
	if (!c)
		return;
	if (c->stream >= 0) {
		struct hstream *h = &r->st[c->stream];
		h->c = NULL;
		h->ep = EP_NONE;
		/* its process outlives nobody: kill it; the stream is freed at its EXIT */
		if (!h->exited) {
			log_debug("client of stream %d left: killing its process", c->stream);
			put_u32(r, FR_SIGNAL, (uint32_t)c->stream, SIGKILL);
		} else
			h->used = false;
	}
	close(c->fd);
	fbuf_free(&c->in);
	fbuf_free(&c->out);
	free(c);
	r->conns[i] = NULL;
}

/* a client that broke the rules or cannot keep up: it goes, its process is killed */
static void conn_drop(struct relay *r, struct conn *c, const char *why)
{
	for (int i = 0; i < MONITOR_CONN_MAX; i++)
		if (r->conns[i] == c) {
			log_warn("client %d dropped: %s", i, why);
			conn_free(r, i);
		}
}

static void stream_end(struct relay *r, uint32_t s)
{
	struct hstream *h = &r->st[s];
	h->exited = true;
	if (h->ep == EP_CONN && h->c)
		h->c->closing = true;
	else if (h->ep != EP_LOCAL)
		h->used = false; /* nobody waits on it */
}

/* an exec request: the client's spec on top of the sandbox's own
 * environment and directory */
static void conn_exec(struct relay *r, struct conn *c, const struct frame *f)
{
	if (!r->ready || r->state != ST_RUNNING) {
		conn_fail(c, "the sandbox is not running");
		return;
	}
	char err[256];
	cleanup_free char *t = NULL;
	if (exec_spec_build(r->cfg, (const char *)f->payload, f->len, &t, err, sizeof(err)) < 0) {
		conn_fail(c, err);
		return;
	}
	size_t n = strlen(t);
	int s = -1;
	for (int i = 1; i < GUEST_STREAMS_MAX && s < 0; i++)
		if (!r->st[i].used)
			s = i;
	if (s < 0)
		conn_fail(c, "too many processes in this sandbox");
	else if (put(r, FR_EXEC, (uint32_t)s, t, (uint32_t)n) < 0)
		conn_fail(c, "the sandbox is busy; try again");
	else {
		r->st[s] = (struct hstream){ .used = true, .ep = EP_CONN, .c = c, .out_win = OUTPUT_WINDOW };
		c->stream = s;
		log_debug("exec on stream %d: %s", s, t);
	}
}

static bool conn_frames(struct relay *r, struct conn *c)
{
	struct frame f;
	int k;
	size_t off = 0;
	bool ok = true;
	/* at most CONN_FRAMES_PER_PASS a pass, clients served in turn: one that
	 * floods control frames (they have no window) gets its share, no more */
	for (int taken = 0; taken < CONN_FRAMES_PER_PASS; taken++) {
		struct fbuf view = { c->in.data + off, c->in.len - off, c->in.cap - off };
		if ((k = frame_peek(&view, GUEST_EXEC_MAX, &f)) != 1)
			break;
		/* a client's frames wait while the queue to the guest is low on
		 * room: the reserve is for the monitor's own (grants, kills); an
		 * exec's spec may grow to GUEST_EXEC_MAX with the sandbox's env */
		uint32_t need = f.type == FR_EXEC ? GUEST_EXEC_MAX : f.len;
		if (f.type != FR_SHUTDOWN && fbuf_room(&r->out) < FRAME_HDR + need + OUT_RESERVE)
			break;
		off += FRAME_HDR + f.len;
		if (c->closing)
			continue;
		if (c->stream < 0 && !c->stopper) {
			if (f.type == FR_EXEC)
				conn_exec(r, c, &f);
			else if (f.type == FR_SHUTDOWN && f.len == 4) {
				c->stopper = true;
				uint32_t g = le32_get(f.payload);
				stop_grace_ms = g > 600000 ? 600000 : g;
				fire(r, EV_STOP);
			} else
				ok = false;
			continue;
		}
		if (c->stopper) {
			ok = false;
			continue;
		}
		struct hstream *h = &r->st[c->stream];
		uint32_t s = (uint32_t)c->stream;
		switch (f.type) {
		case FR_STDIN:
			if (f.len > h->client_window) {
				ok = false; /* beyond the window it was given */
				break;
			}
			h->client_window -= f.len;
			h->window -= f.len;
			put(r, FR_STDIN, s, f.payload, f.len);
			break;
		case FR_STDIN_EOF:
			if (c->eof_sent)
				ok = false;
			else
				put(r, FR_STDIN_EOF, s, NULL, 0);
			c->eof_sent = true;
			break;
		case FR_SIGNAL:
			if (f.len == 4 && le32_get(f.payload) > 0 && le32_get(f.payload) < 65)
				put(r, FR_SIGNAL, s, f.payload, 4);
			break;
		case FR_WINSIZE:
			if (f.len == 4)
				put(r, FR_WINSIZE, s, f.payload, 4);
			break;
		default: ok = false;
		}
	}
	if (k < 0)
		ok = false;
	fbuf_consume(&c->in, off);
	return ok;
}

static void conn_accept(struct relay *r)
{
	int fd = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	struct ucred cr = { 0, (uid_t)-1, (gid_t)-1 };
	socklen_t len = sizeof(cr);
	int slot = -1;
	for (int i = 0; i < MONITOR_CONN_MAX && slot < 0; i++)
		if (!r->conns[i])
			slot = i;
	const char *refuse = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || (cr.uid != r->owner && cr.uid != 0))
		refuse = "permission denied: this sandbox belongs to another user";
	else if (slot < 0)
		refuse = "too many clients of this sandbox";
	if (refuse) {
		log_warn("refused a client (pid %d, uid %d): %s", (int)cr.pid, (int)cr.uid, refuse);
		unsigned char h[FRAME_HDR];
		h[0] = FR_FAIL;
		le32_put(h + 1, 0);
		le32_put(h + 5, (uint32_t)strlen(refuse));
		struct iovec iov[2] = { { h, sizeof(h) }, { (void *)refuse, strlen(refuse) } };
		if (writev(fd, iov, 2) < 0)
			log_debug("the refused client is gone");
		close(fd);
		return;
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (!c || fbuf_init(&c->in, FRAME_HDR + GUEST_EXEC_MAX) < 0 || fbuf_init(&c->out, CONN_OUT_CAP) < 0) {
		if (c) {
			fbuf_free(&c->in);
			free(c);
		}
		close(fd);
		return;
	}
	c->fd = fd;
	c->stream = -1;
	c->idle_until = now_ms() + 5000;
	r->conns[slot] = c;
	log_debug("client %d connected (pid %d, uid %d)", slot, (int)cr.pid, (int)cr.uid);
}

static void conn_io(struct relay *r, int i, short revents)
{
	struct conn *c = r->conns[i];
	if (c->pending_window && fbuf_room(&c->out) >= FRAME_HDR + 4) {
		/* the guest's stdin grants, merged: one frame however many came */
		unsigned char p[4];
		le32_put(p, c->pending_window);
		conn_put(c, FR_WINDOW, p, 4);
		if (c->stream >= 0)
			r->st[c->stream].client_window += c->pending_window;
		c->pending_window = 0;
	}
	if (revents & POLLOUT) {
		ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0)
			fbuf_consume(&c->out, (size_t)n);
		else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			conn_free(r, i);
			return;
		}
	}
	if (revents & (POLLIN | POLLHUP | POLLERR)) {
		if (!fbuf_room(&c->in)) {
			if (revents & (POLLHUP | POLLERR)) {
				conn_free(r, i); /* gone, and what it sent cannot be taken yet */
				return;
			}
		} else {
			ssize_t n = read(c->fd, c->in.data + c->in.len, fbuf_room(&c->in));
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				conn_free(r, i);
				return;
			}
			if (n > 0)
				c->in.len += (size_t)n;
		}
	}
	if (c->in.len && !conn_frames(r, c)) {
		log_warn("client %d broke the protocol: dropped", i);
		conn_free(r, i);
		return;
	}
	if (c->closing && !c->out.len && !c->stopper)
		conn_free(r, i);
}

/* Output that left toward its reader goes back to the guest as window:
 * in batches, and only as far as the queue to the guest takes it (what
 * does not fit stays pending). */
static void flush_grants(struct relay *r)
{
	for (uint32_t s = 0; s < GUEST_STREAMS_MAX; s++) {
		struct hstream *h = &r->st[s];
		if (!h->used || h->exited || !h->grant)
			continue;
		bool go = true;
		if (h->ep == EP_LOCAL)
			go = h->grant >= 16384 || (!r->pend[0].len && !r->pend[1].len);
		else if (h->ep == EP_CONN)
			go = h->c->out.len <= CONN_GRANT_AT && (h->grant >= 16384 || !h->c->out.len);
		if (go && put_u32(r, FR_OUT_WINDOW, s, h->grant) == 0) {
			h->out_win += h->grant;
			h->grant = 0;
		}
	}
}

/* ---- frames from the guest --------------------------------------------------------------- */

/* Output of stream s to its endpoint, within the window (checked by the
 * caller). What an endpoint cannot take is the endpoint's problem, never
 * the guest's: a client that does not keep up is dropped. */
static void deliver(struct relay *r, uint32_t s, int k, const unsigned char *p, uint32_t n)
{
	struct hstream *h = &r->st[s];
	if (h->ep == EP_LOCAL) {
		/* it fits: each holds a whole window, the guest has one for the two */
		struct fbuf *b = &r->pend[k];
		memcpy(b->data + b->len, p, n);
		b->len += n;
		return;
	}
	if (h->ep == EP_CONN && fbuf_room(&h->c->out) < FRAME_HDR + n + 64)
		conn_drop(r, h->c, "its output queue is full");
	if (h->ep == EP_CONN) {
		conn_put(h->c, k ? FR_STDERR : FR_STDOUT, p, n);
		h->grant += n; /* given back as the client takes it (flush_grants) */
		return;
	}
	if (h->ep == EP_LOG)
		console_write(r, (const char *)p, n);
	h->grant += n; /* nobody to wait for */
}

/* Take the complete frames off the input buffer. Every target has room for
 * what the windows allow, so the guest is always read. */
static void take_frames(struct relay *r)
{
	struct frame f;
	int k;
	size_t off = 0;
	for (;;) {
		struct fbuf view = { r->in.data + off, r->in.len - off, r->in.cap - off };
		if ((k = frame_peek(&view, FRAME_DATA_MAX, &f)) != 1)
			break;
		off += FRAME_HDR + f.len;
		struct hstream *h = f.stream < GUEST_STREAMS_MAX ? &r->st[f.stream] : NULL;
		bool stream_frame = f.type == FR_WINDOW || f.type == FR_STDOUT || f.type == FR_STDERR ||
				    f.type == FR_EXIT || (f.type == FR_FAIL && f.stream != 0);
		if (stream_frame && (!h || !h->used || h->exited)) {
			log_debug("frame '%c' for stream %u, which is not running", f.type, f.stream);
			fire(r, EV_BAD_FRAME);
			break;
		}
		switch (f.type) {
		case FR_HELLO: {
			int proto = -1;
			char tmp[257];
			memcpy(tmp, f.payload, f.len < 256 ? f.len : 256);
			tmp[f.len < 256 ? f.len : 256] = 0;
			cleanup_json struct json_object *hj = json_tokener_parse(tmp);
			struct json_object *v;
			if (hj && json_object_object_get_ex(hj, "proto", &v))
				proto = json_object_get_int(v);
			if (proto != GUEST_PROTO_VERSION) {
				snprintf(r->fail, sizeof(r->fail),
					 "the guest init speaks protocol %d, this vm-launch speaks %d (rebuild the "
					 "images: make image)",
					 proto, GUEST_PROTO_VERSION);
				fire(r, EV_BAD_FRAME);
			} else
				fire(r, EV_HELLO);
			break;
		}
		case FR_RESUMED:
			if (r->state != ST_RESUMING || f.len) {
				fire(r, EV_BAD_FRAME);
				break;
			}
			fire(r, EV_RESUMED);
			break;
		case FR_READY:
			if (r->ready) {
				fire(r, EV_BAD_FRAME);
				break;
			}
			fire(r, EV_READY);
			break;
		case FR_WINDOW: {
			uint32_t n = f.len == 4 ? le32_get(f.payload) : 0;
			if (f.len != 4 || n > STDIN_WINDOW || h->window + n > STDIN_WINDOW) {
				fire(r, EV_BAD_FRAME);
				break;
			}
			h->window += n;
			if (h->ep == EP_CONN)
				h->c->pending_window += n; /* passed on merged (conn_io) */
			else if (h->ep == EP_LOG && !h->eof_sent) {
				put(r, FR_STDIN_EOF, f.stream, NULL, 0);
				h->eof_sent = true;
			}
			break;
		}
		case FR_STDOUT:
		case FR_STDERR:
			if (f.len > h->out_win) {
				log_debug("stream %u sent %u bytes beyond its output window (%u)", f.stream, f.len,
					  h->out_win);
				fire(r, EV_BAD_FRAME);
				break;
			}
			h->out_win -= f.len;
			deliver(r, f.stream, f.type == FR_STDERR, f.payload, f.len);
			break;
		case FR_EXIT:
			if (f.len != 4) {
				fire(r, EV_BAD_FRAME);
				break;
			}
			if (h->ep == EP_CONN)
				conn_put(h->c, FR_EXIT, f.payload, 4);
			if (h->ep == EP_LOG)
				log_info("the first command exited with status %u", le32_get(f.payload) & 0xff);
			if (f.stream == 0 && !r->keep) {
				r->status = (int)(le32_get(f.payload) & 0xff);
				stream_end(r, 0);
				fire(r, EV_EXIT);
			} else
				stream_end(r, f.stream);
			break;
		case FR_FAIL: {
			char msg[1024];
			snprintf(msg, sizeof(msg), "%.*s", (int)(f.len < 1000 ? f.len : 1000), (const char *)f.payload);
			sanitize_text(msg, sizeof(msg));
			if (f.stream != 0) {
				log_debug("stream %u could not start: %s", f.stream, msg);
				if (h->ep == EP_CONN)
					conn_fail(h->c, msg);
				stream_end(r, f.stream);
				break;
			}
			snprintf(r->fail, sizeof(r->fail), "%s", msg);
			fire(r, EV_FAIL);
			break;
		}
		default: log_debug("unknown frame '%c' from the guest", f.type); fire(r, EV_BAD_FRAME);
		}
		if (r->stopped)
			break; /* the VM was stopped: what it says next does not count */
	}
	if (k < 0)
		fire(r, EV_BAD_FRAME);
	fbuf_consume(&r->in, r->stopped ? r->in.len : off);
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

/* the local endpoint's output went to its thread: grant it back */
static void flush_pend(struct relay *r, int k)
{
	struct fbuf *p = &r->pend[k];
	if (!p->len || r->pout[k].loop_end < 0)
		return;
	ssize_t n = write(r->pout[k].loop_end, p->data, p->len);
	if (n > 0) {
		fbuf_consume(p, (size_t)n);
		r->st[0].grant += (uint32_t)n;
	} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
		r->st[0].grant += (uint32_t)p->len;
		p->len = 0;
	}
}

static void read_stdin(struct relay *r)
{
	char buf[FRAME_DATA_MAX];
	struct hstream *h = &r->st[0];
	size_t want = h->window < sizeof(buf) ? h->window : sizeof(buf);
	if (fbuf_room(&r->out) < FRAME_HDR + want + OUT_RESERVE)
		want = fbuf_room(&r->out) > FRAME_HDR + OUT_RESERVE ? fbuf_room(&r->out) - FRAME_HDR - OUT_RESERVE : 0;
	if (!want)
		return;
	ssize_t n = read(r->pin.loop_end, buf, want);
	if (n > 0) {
		put(r, FR_STDIN, 0, buf, (uint32_t)n);
		h->window -= (uint32_t)n;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		if (put(r, FR_STDIN_EOF, 0, NULL, 0) == 0) {
			close(r->pin.loop_end);
			r->pin.loop_end = -1;
		}
	}
}

/* QEMU is up and the guest is in use (not on its way out): passt ends on
 * its own when QEMU closes the socket, so its end means something only
 * while QEMU has not exited (not yet reaped counts as exited) */
static bool qemu_running(const struct relay *r)
{
	siginfo_t si = { 0 };
	if (r->vm->qemu <= 0 || (r->state != ST_BOOTING && r->state != ST_RUNNING && r->state != ST_SIGNALLED))
		return false;
	return waitid(P_PID, (id_t)r->vm->qemu, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0;
}

static void on_signals(struct relay *r)
{
	struct signalfd_siginfo si;
	while (read(r->sfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGWINCH) {
			struct winsize ws;
			if (arg.tty && r->st[0].used && !r->st[0].exited && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0) {
				unsigned char p[4] = { (unsigned char)ws.ws_row, (unsigned char)(ws.ws_row >> 8),
						       (unsigned char)ws.ws_col, (unsigned char)(ws.ws_col >> 8) };
				put(r, FR_WINSIZE, 0, p, 4);
			}
			continue;
		}
		if (si.ssi_signo != SIGCHLD) {
			if (!r->sig)
				r->sig = (int)si.ssi_signo;
			fire(r, EV_SIGNAL);
		}
	}
	/* children are reaped whatever signal came: a SIGCHLD merged into one
	 * that was already read never leaves QEMU's end unseen */
	{
		int st;
		pid_t w;
		while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
			if (w == r->vm->qemu) {
				log_debug("QEMU exited after %.3f s", vm_elapsed(r->vm));
				r->vm->qemu = -1;
				r->vm->qemu_status = st;
				fire(r, EV_QEMU_EXIT);
			} else if (net_reap(r->vm, w, st, qemu_running(r))) {
				/* the guest's network is gone: so is the VM (a port that
				 * cannot be published ends it while it boots) */
				if (qemu_running(r)) {
					r->share_failed = true;
					fire(r, EV_SHARE_DIED);
				}
			} else if (shares_reap(r->vm, w, st, r->state == ST_RUNNING || r->state == ST_SIGNALLED) >= 0 &&
				   r->vm->qemu > 0 && (r->state == ST_RUNNING || r->state == ST_SIGNALLED)) {
				/* a daemon that dies while the VM runs fails it loudly (after
				 * the workload, the guest's reboot ends them) */
				r->share_failed = true;
				fire(r, EV_SHARE_DIED);
			}
		}
	}
}

/* ---- the loop ---------------------------------------------------------------------------- */

enum { P_SIG, P_TIMEOUT, P_DEADLINE, P_CTL, P_STDIN, P_OUT0, P_OUT1, P_CONSOLE, P_LISTEN, P_NETLOG, P_NETLINK, P_CONN };
#define P_VFSD (P_CONN + MONITOR_CONN_MAX)

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
		bool want_stdin = r->st[0].ep == EP_LOCAL && !r->st[0].exited && r->pin.loop_end >= 0 &&
				  r->st[0].window > 0 && fbuf_room(&r->out) > FRAME_HDR + 1024 + OUT_RESERVE &&
				  r->state == ST_RUNNING;
		pf[P_SIG] = (struct pollfd){ r->sfd, POLLIN, 0 };
		pf[P_TIMEOUT] = (struct pollfd){ r->tfd, POLLIN, 0 };
		pf[P_DEADLINE] = (struct pollfd){ r->dfd, POLLIN, 0 };
		pf[P_CTL] = (struct pollfd){ vm->ctl, ctl_ev, 0 };
		pf[P_STDIN] = (struct pollfd){ want_stdin ? r->pin.loop_end : -1, POLLIN, 0 };
		pf[P_OUT0] = (struct pollfd){ r->pend[0].len ? r->pout[0].loop_end : -1, POLLOUT, 0 };
		pf[P_OUT1] = (struct pollfd){ r->pend[1].len ? r->pout[1].loop_end : -1, POLLOUT, 0 };
		pf[P_CONSOLE] = (struct pollfd){ r->console, POLLIN, 0 };
		pf[P_LISTEN] = (struct pollfd){ r->listen_fd, POLLIN, 0 };
		pf[P_NETLOG] = (struct pollfd){ vm->net.log.fd, POLLIN, 0 };
		pf[P_NETLINK] = (struct pollfd){ vm->net.egress.nl, POLLIN, 0 };
		bool out_room = fbuf_room(&r->out) >= FRAME_HDR + GUEST_EXEC_MAX + OUT_RESERVE;
		for (int i = 0; i < MONITOR_CONN_MAX; i++) {
			struct conn *c = r->conns[i];
			short ev = 0;
			if (c && out_room && fbuf_room(&c->in))
				ev |= POLLIN;
			if (c && (c->out.len || c->pending_window))
				ev |= POLLOUT;
			pf[P_CONN + i] = (struct pollfd){ c ? c->fd : -1, ev, 0 };
		}
		int nv = vm->nvols < 64 ? vm->nvols : 64;
		for (int i = 0; i < nv; i++)
			pf[P_VFSD + i] = (struct pollfd){ vm->vols[i].log.fd, POLLIN, 0 };
		/* clients that connect and never ask hold a slot only so long */
		long timeout = -1, now = now_ms();
		for (int i = 0; i < MONITOR_CONN_MAX; i++) {
			struct conn *c = r->conns[i];
			struct frame fr;
			if (!c || c->stream >= 0 || c->stopper || frame_peek(&c->in, GUEST_EXEC_MAX, &fr) == 1)
				continue; /* one with a whole request in has asked (it may wait for room) */
			if (now >= c->idle_until) {
				static const char idle[] = "nothing asked within 5 s";
				unsigned char h[FRAME_HDR];
				h[0] = FR_FAIL;
				le32_put(h + 1, 0);
				le32_put(h + 5, sizeof(idle) - 1);
				struct iovec iov[2] = { { h, sizeof(h) }, { (void *)idle, sizeof(idle) - 1 } };
				struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
				if (sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
					log_debug("an idle client is gone");
				conn_drop(r, c, "it asked nothing within 5 s");
				pf[P_CONN + i].fd = -1;
				continue;
			}
			if (timeout < 0 || c->idle_until - now < timeout)
				timeout = c->idle_until - now;
		}
		/* a client left with whole frames (its share of a pass): no sleep */
		for (int i = 0; i < MONITOR_CONN_MAX && timeout != 0; i++) {
			struct frame f;
			if (r->conns[i] && out_room && frame_peek(&r->conns[i]->in, GUEST_EXEC_MAX, &f) == 1)
				timeout = 0;
		}
		if (poll(pf, (nfds_t)(P_VFSD + nv), (int)timeout) < 0) {
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
		if (pf[P_NETLOG].revents)
			logtail_drain(&vm->net.log);
		if (pf[P_NETLINK].revents) {
			char why[512];
			/* an address came to the host: the policy must know it at once */
			if (egress_refresh(&vm->net.egress, why, sizeof(why)) < 0) {
				log_error("%s: stopping the VM", why);
				r->share_failed = true;
				fire(r, EV_SHARE_DIED);
			}
		}
		for (int i = 0; i < nv; i++)
			if (pf[P_VFSD + i].revents)
				logtail_drain(&vm->vols[i].log);
		if (pf[P_OUT0].revents)
			flush_pend(r, 0);
		if (pf[P_OUT1].revents)
			flush_pend(r, 1);
		if (vm->ctl >= 0 && (pf[P_CTL].revents & POLLOUT))
			write_ctl(r);
		if (vm->ctl >= 0 && (pf[P_CTL].revents & (POLLIN | POLLHUP | POLLERR)))
			read_ctl(r);
		if (pf[P_STDIN].revents)
			read_stdin(r);
		if (pf[P_LISTEN].revents)
			conn_accept(r);
		static int turn;
		turn = (turn + 1) % MONITOR_CONN_MAX;
		for (int j = 0; j < MONITOR_CONN_MAX; j++) {
			int i = (turn + j) % MONITOR_CONN_MAX;
			if (r->conns[i] &&
			    (pf[P_CONN + i].revents || r->conns[i]->in.len || r->conns[i]->pending_window))
				conn_io(r, i, pf[P_CONN + i].revents);
		}
		flush_grants(r);
	}
	return 0;
}

/* Wait until fd is ready for events; false when a signal (not SIGCHLD or
 * SIGWINCH) or the timeout came first (noted in r), or poll failed. */
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
		if (pf[0].revents && read(r->sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGCHLD &&
		    si.ssi_signo != SIGWINCH) {
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

/* Run mode, after QEMU: what it wrote before it went is still in the
 * socket. Take every frame of it (the status may be among them) and hand
 * the output to the caller, as long as the caller reads it; a signal or the
 * timeout still ends this at once. */
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
		if (r->vm->ctl < 0 || !fbuf_room(&r->in) || r->stopped)
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

/* Keep mode: the stoppers hear that the sandbox is gone; other clients
 * get what is queued for them if their socket takes it at once. */
static void close_conns(struct relay *r)
{
	for (int i = 0; i < MONITOR_CONN_MAX; i++) {
		struct conn *c = r->conns[i];
		if (!c)
			continue;
		if (c->stopper && r->vm->nstoppers < MONITOR_CONN_MAX) {
			/* answered once everything is cleaned up (vm-launch's main) */
			int fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 3);
			if (fd >= 0)
				r->vm->stoppers[r->vm->nstoppers++] = fd;
		} else if (c->stream >= 0 && !r->st[c->stream].exited)
			conn_put(c, FR_FAIL, "the sandbox stopped", 19);
		/* one try, never waiting: a client that stopped reading gets
		 * EOF instead (the monitor stays stoppable within a second) */
		if (c->out.len && send(c->fd, c->out.data, c->out.len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			log_debug("client %d is gone or not reading", i);
		c->stream = -1;
		conn_free(r, i);
	}
}

static int start_pumps(struct relay *r)
{
	if (pump_start(&r->pout[0], STDOUT_FILENO, false) < 0 || pump_start(&r->pout[1], STDERR_FILENO, false) < 0 ||
	    pump_start(&r->pin, STDIN_FILENO, true) < 0)
		return -errno;
	r->pumps = true;
	return 0;
}

/* the monitor's socket, in the run directory (bound through the directory's
 * descriptor: the path may be longer than a socket address) */
static int monitor_listen(struct relay *r)
{
	unlinkat(r->run_fd, MONITOR_SOCK, 0);
	mode_t old = umask(0177); /* 0600 from the start */
	int fd = unix_listen_beneath(r->run_fd, MONITOR_SOCK, MONITOR_CONN_MAX);
	umask(old);
	if (fd < 0)
		return fd;
	fcntl(fd, F_SETFL, O_NONBLOCK); /* our own socket */
	r->listen_fd = fd;
	return 0;
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
			   .state = ST_BOOTING,
			   .keep = arg.detach,
			   .status = -1,
			   .sfd = -1,
			   .tfd = -1,
			   .dfd = -1,
			   .listen_fd = -1,
			   .console = vm->console_pipe,
			   .log_fd = vm->console_fd,
			   .run_fd = -1,
			   .owner = getuid() };
	sigset_t mask;
	int rc = 0;
	bool local = !r.keep;

	vm->console_pipe = vm->console_fd = -1; /* the relay owns them now */
	for (int k = 0; k < 2; k++)
		r.pout[k].loop_end = r.pout[k].done[0] = r.pout[k].done[1] = -1;
	r.pin.loop_end = -1;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGWINCH);
	r.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	r.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	r.dfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	r.run_fd = open(vm->run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (r.sfd < 0 || r.tfd < 0 || r.dfd < 0 || r.run_fd < 0) {
		rc = log_sys(errno, "cannot set up the relay");
		goto out;
	}
	{
		struct json_tokener *tok = json_tokener_new_ex(64);
		r.cfg = tok ? json_tokener_parse_ex(tok, config, (int)config_len) : NULL;
		if (tok)
			json_tokener_free(tok);
		if (!r.cfg || !json_object_is_type(r.cfg, json_type_object)) {
			log_error("the config is not a JSON object");
			rc = -EINVAL;
			goto out;
		}
	}
	if (fbuf_init(&r.in, IN_CAP) < 0 || fbuf_init(&r.out, OUT_CAP) < 0 ||
	    fbuf_init(&r.pend[0], OUTPUT_WINDOW) < 0 || fbuf_init(&r.pend[1], OUTPUT_WINDOW) < 0) {
		rc = log_sys(ENOMEM, "out of memory");
		goto out;
	}
	if (arg.timeout > 0) {
		/* from the launch: a cold boot after a failed restore gets what is left */
		double left = arg.timeout - vm_elapsed(vm);
		if (left < 0.001)
			left = 0.001;
		struct itimerspec its = { .it_value = { (time_t)left, (long)((left - (double)(time_t)left) * 1e9) } };
		timerfd_settime(r.tfd, 0, &its, NULL);
	}
	arm_deadline(&r, HELLO_DEADLINE_MS);
	fcntl(vm->ctl, F_SETFL, O_NONBLOCK); /* our own socket */
	if (r.keep) {
		int k = monitor_listen(&r);
		if (k < 0) {
			rc = log_sys(k, "cannot listen on '%s/" MONITOR_SOCK "'", vm->run_dir);
			goto out;
		}
		/* a first command (box run -d): its output goes to the console log */
		struct json_object *proc, *args;
		if (json_object_object_get_ex(r.cfg, "process", &proc) &&
		    json_object_object_get_ex(proc, "args", &args) && json_object_array_length(args) > 2 &&
		    !strcmp(json_object_get_string(json_object_array_get_idx(args, 1)), CONTAINER_INIT_WORKLOAD)) {
			/* stdin: EOF at its first window */
			r.st[0] = (struct hstream){ .used = true, .ep = EP_LOG, .out_win = OUTPUT_WINDOW };
		}
	} else if (vm->warm.mode == WARM_RESTORE || vm->warm.mode == WARM_BUILD) {
		/* the caller's stdin is not touched before the copy is alive: a
		 * restore that fails boots cold with all of it */
	} else {
		r.st[0] = (struct hstream){ .used = true, .ep = EP_LOCAL, .out_win = OUTPUT_WINDOW };
		if (start_pumps(&r) < 0) {
			rc = log_sys(errno, "cannot start the stdio threads");
			goto out;
		}
	}
	if (vm->warm.mode == WARM_RESTORE)
		send_resume(&r);
	rc = loop(&r);
	drain_console(&r);
	if (local && r.pumps && !r.stopped)
		drain_output(&r);
	close_conns(&r);
out:
	oc->status = r.status;
	oc->sig = r.sig;
	oc->timed_out = r.timed_out;
	oc->stop_asked = r.stop_asked || (r.keep && r.sig);
	oc->failed = r.bad || r.no_hello || r.share_failed || r.plan_failed || r.save_failed || rc != 0;
	oc->resume_failed = r.resume_failed && !r.sig && !r.timed_out;
	oc->saved = r.saved;
	snprintf(oc->fail, sizeof(oc->fail), "%s", r.fail);
	/* a reader that went away (EPIPE: `box run ... | head`) is no failure */
	for (int k = 0; k < 2; k++)
		if (r.pout[k].write_failed && r.pout[k].write_errno != EPIPE && !oc->output_errno)
			oc->output_errno = r.pout[k].write_errno;
	/* threads blocked on the caller's descriptors are left; exit ends them */
	json_object_put(r.cfg);
	if (r.listen_fd >= 0) {
		close(r.listen_fd);
		unlinkat(r.run_fd, MONITOR_SOCK, 0);
	}
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
