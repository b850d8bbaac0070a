/* SPDX-License-Identifier: MIT */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

static struct {
	const char *prog;
	enum log_level level;
	const char *op_id;
} logst = { "boxkit", LOG_INFO, NULL };

void log_init(const char *prog)
{
	const char *slash = strrchr(prog, '/');
	const char *lvl = getenv("BOXKIT_LOG");
	const char *op = getenv("BOXKIT_OP_ID");

	logst.prog = slash ? slash + 1 : prog;
	if (lvl && strcmp(lvl, "debug") == 0)
		logst.level = LOG_DEBUG;
	else if (lvl && strcmp(lvl, "warn") == 0)
		logst.level = LOG_WARN;
	else if (lvl && strcmp(lvl, "error") == 0)
		logst.level = LOG_ERROR;
	logst.op_id = (op && *op) ? op : NULL;
}

void log_set_level(enum log_level lvl)
{
	logst.level = lvl;
}
enum log_level log_get_level(void)
{
	return logst.level;
}
const char *log_prog(void)
{
	return logst.prog;
}

/* ---- asynchronous lines: a bounded queue, written by a thread of its own ---- */
#define ASYNC_CAP 65536
static struct {
	bool on;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char buf[ASYNC_CAP];
	size_t len;
	unsigned long dropped;
	bool writing;
	bool started;
} as = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void *async_writer(void *unused)
{
	static char out[ASYNC_CAP];
	(void)unused;
	/* running: glibc has finished starting this thread (see log_async) */
	pthread_mutex_lock(&as.mu);
	as.started = true;
	pthread_cond_broadcast(&as.cv);
	pthread_mutex_unlock(&as.mu);
	for (;;) {
		pthread_mutex_lock(&as.mu);
		while (!as.len)
			pthread_cond_wait(&as.cv, &as.mu);
		size_t n = as.len;
		memcpy(out, as.buf, n);
		as.len = 0;
		as.writing = true;
		pthread_mutex_unlock(&as.mu);
		for (size_t o = 0; o < n;) {
			ssize_t w = write(STDERR_FILENO, out + o, n - o);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			o += (size_t)w;
		}
		pthread_mutex_lock(&as.mu);
		as.writing = false;
		pthread_cond_broadcast(&as.cv);
		pthread_mutex_unlock(&as.mu);
	}
	return NULL;
}

int log_async(void)
{
	pthread_t th;
	pthread_attr_t a;
	if (as.on)
		return 0;
	fflush(stderr);
	/* the writer takes no signal: a process-directed signal must reach the
	 * thread that waits for it (a signalfd sees only blocked signals) */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	int r = pthread_create(&th, &a, async_writer, NULL);
	pthread_attr_destroy(&a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return -r;
	/* Wait until the thread runs. Until then glibc marks it as being
	 * created, and a child cloned meanwhile with the raw clone syscall
	 * (spawn.c: namespaces) inherits that mark: its first setresuid or
	 * setgroups waits forever for a thread that never starts in the child,
	 * wedging the launcher (seen under load). */
	pthread_mutex_lock(&as.mu);
	while (!as.started)
		pthread_cond_wait(&as.cv, &as.mu);
	pthread_mutex_unlock(&as.mu);
	as.on = true;
	return 0;
}

void log_flush(int ms)
{
	struct timespec until;
	if (!as.on)
		return;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&as.mu);
	while ((as.len || as.writing) && pthread_cond_timedwait(&as.cv, &as.mu, &until) == 0) {
	}
	pthread_mutex_unlock(&as.mu);
}

static void emit(const char *line)
{
	if (!as.on) {
		/* one write per line so concurrent tools do not interleave mid-line */
		fprintf(stderr, "%s\n", line);
		return;
	}
	size_t n = strlen(line);
	pthread_mutex_lock(&as.mu);
	if (as.len + n + 1 <= ASYNC_CAP) {
		memcpy(as.buf + as.len, line, n);
		as.buf[as.len + n] = '\n';
		as.len += n + 1;
		pthread_cond_broadcast(&as.cv);
	} else
		as.dropped++;
	pthread_mutex_unlock(&as.mu);
}

void log_text(const char *text)
{
	emit(text);
}

void sanitize_text(char *s, size_t n)
{
	for (size_t i = 0; i < n && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
			s[i] = '?';
	}
}

static void (*log_sink)(enum log_level, const char *);
void log_set_sink(void (*sink)(enum log_level lvl, const char *msg))
{
	log_sink = sink;
}

static void vlog(enum log_level lvl, const char *fmt, va_list ap)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	char buf[4096];
	int n;

	if (lvl > logst.level)
		return;
	if (logst.op_id)
		n = snprintf(buf, sizeof(buf), "%s: [%s] %s: ", logst.prog, logst.op_id, names[lvl]);
	else
		n = snprintf(buf, sizeof(buf), "%s: %s: ", logst.prog, names[lvl]);
	if (n < 0 || (size_t)n >= sizeof(buf))
		n = 0;
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	/* names in messages come from archives, images and guests: none of
	 * their control characters reaches a terminal */
	sanitize_text(buf + n, sizeof(buf) - (size_t)n);
	emit(buf);
	if (log_sink)
		log_sink(lvl, buf + n);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(lvl, fmt, ap);
	va_end(ap);
}

bool is_enospc(int err)
{
	if (err < 0)
		err = -err;
	return err == ENOSPC || err == EDQUOT;
}

void enospc_hint(void)
{
	char buf[512];
	snprintf(buf, sizeof(buf),
		 "%s: %s%s%shint: no space left on the host; 'reserve release' frees boxkit's disk reserve so you can "
		 "clean up, then run 'reserve ensure'",
		 logst.prog, logst.op_id ? "[" : "", logst.op_id ? logst.op_id : "", logst.op_id ? "] " : "");
	emit(buf);
}

int log_sys(int err, const char *fmt, ...)
{
	char msg[3072];
	va_list ap;

	if (err < 0)
		err = -err;
	if (err == 0)
		err = EIO;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s: %s", msg, strerror(err));
	if (is_enospc(err))
		enospc_hint();
	return -err;
}
