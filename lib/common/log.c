/* SPDX-License-Identifier: MIT */
#include "common.h"

#include <stdarg.h>
#include <string.h>

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
	/* one write per line so concurrent tools do not interleave mid-line */
	fprintf(stderr, "%s\n", buf);
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
	if (logst.op_id)
		fprintf(stderr,
			"%s: [%s] hint: no space left on the host; 'reserve release' frees boxkit's "
			"disk reserve so you can clean up, then run 'reserve ensure'\n",
			logst.prog, logst.op_id);
	else
		fprintf(stderr,
			"%s: hint: no space left on the host; 'reserve release' frees boxkit's "
			"disk reserve so you can clean up, then run 'reserve ensure'\n",
			logst.prog);
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
