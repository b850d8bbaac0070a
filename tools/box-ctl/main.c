/* SPDX-License-Identifier: MIT */
/* box-ctl: a client of a sandbox's monitor (vm-launch --detach). `exec`
 * runs a command in the sandbox with stdin, stdout, stderr, signals, a
 * terminal and the exit status relayed as vm-launch does for a run; `stop`
 * stops the sandbox. It speaks lib/common/monitor-abi.h. */
#include "common.h"
#include "guest-abi.h"
#include "monitor-abi.h"
#include "runrec.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>

static struct {
	const char *cmd, *home, *run;
	const char *process; /* --process FILE: an OCI process object (an OCI runtime's) */
	bool interactive, tty;
	const char *workdir;
	const char **env;
	int nenv;
	char **argv;
	int argc;
	double stop_time;
} arg = { .stop_time = MONITOR_STOP_GRACE_MS / 1000.0 };

static void usage(FILE *f)
{
	fputs("Usage: box-ctl exec --run ID [-i] [-t] [-e K=V]... [-w DIR] -- CMD [ARG...]\n"
	      "       box-ctl stop --run ID [--time SECONDS]\n"
	      "\n"
	      "Talk to a sandbox's monitor (vm-launch --detach) over <home>/run/ID/monitor.sock.\n"
	      "\n"
	      "exec: run CMD in the sandbox's container, with the same user, capabilities,\n"
	      "namespaces and seccomp filter as its first process; stdout, stderr, signals\n"
	      "(INT, TERM, HUP, QUIT, USR1, USR2) and the exit status are relayed.\n"
	      "  -i, --interactive   relay stdin (else the command's stdin is empty)\n"
	      "  -t, --tty           a terminal for the command: stdin must be one; it goes\n"
	      "                      raw and is restored at exit; the window size follows\n"
	      "  -e, --env K=V       environment, on top of the sandbox's (repeatable)\n"
	      "  -w, --workdir DIR   working directory (default: the sandbox's)\n"
	      "  --process FILE      the command as an OCI runtime-spec process object (args,\n"
	      "                      env, cwd, user, terminal) instead of CMD, -e, -w, -t;\n"
	      "                      stdin is relayed and every signal that can be caught\n"
	      "                      (not CHLD, PIPE, WINCH, faults) goes on, however often\n"
	      "stop: every process gets SIGTERM, SIGKILL after the grace, then the VM goes.\n"
	      "  --time SECONDS      the grace (default 10)\n"
	      "Common: --home DIR (or BOXKIT_HOME), --run ID (run-record find --name NAME),\n"
	      "-v, -h.\n"
	      "\n"
	      "Exit status (exec): the command's; 128+N when it died of signal N; 125 box-ctl\n"
	      "or the sandbox failed (not running, refused); 126 the command cannot run;\n"
	      "127 not found. A third signal leaves at once (the command is killed).\n"
	      "Exit status (stop): 0 stopped, 1 not running, 2 usage, 3 refused or failed.\n"
	      "Manual: tools/box-ctl/box-ctl.1.md\n",
	      f);
}

static int parse_argv(int argc, char **argv)
{
	enum { O_HOME = 256, O_RUN, O_TIME, O_PROCESS };
	static const struct option opts[] = {
		{ "home", required_argument, NULL, O_HOME },
		{ "run", required_argument, NULL, O_RUN },
		{ "time", required_argument, NULL, O_TIME },
		{ "interactive", no_argument, NULL, 'i' },
		{ "process", required_argument, NULL, O_PROCESS },
		{ "tty", no_argument, NULL, 't' },
		{ "env", required_argument, NULL, 'e' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	char *end;
	if (argc < 2) {
		log_error("no command given (exec, stop)");
		return -1;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		exit(EXIT_OK);
	}
	if (strcmp(argv[1], "exec") && strcmp(argv[1], "stop")) {
		log_error("unknown command '%s' (exec, stop)", argv[1]);
		return -1;
	}
	arg.cmd = argv[1];
	arg.env = calloc((size_t)argc, sizeof(char *));
	if (!arg.env)
		return -1;
	optind = 2;
	while ((c = getopt_long(argc, argv, "+ite:w:vh", opts, NULL)) != -1) {
		switch (c) {
		case O_HOME: arg.home = optarg; break;
		case O_RUN: arg.run = optarg; break;
		case O_PROCESS: arg.process = optarg; break;
		case O_TIME:
			arg.stop_time = strtod(optarg, &end);
			if (*end || end == optarg || !(arg.stop_time >= 0) || arg.stop_time > 600) {
				log_error("--time '%s' must be 0 to 600 seconds", optarg);
				return -1;
			}
			break;
		case 'i': arg.interactive = true; break;
		case 't': arg.tty = true; break;
		case 'e':
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				log_error("--env '%s' must be NAME=VALUE", optarg);
				return -1;
			}
			arg.env[arg.nenv++] = optarg;
			break;
		case 'w':
			if (optarg[0] != '/') {
				log_error("--workdir '%s' must be an absolute path", optarg);
				return -1;
			}
			arg.workdir = optarg;
			break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h': usage(stdout); exit(EXIT_OK);
		default: usage(stderr); return -1;
		}
	}
	if (!arg.run) {
		log_error("--run ID is required (run-record find --name NAME gives it)");
		return -1;
	}
	if (!run_id_valid(arg.run)) {
		log_error("--run '%s' is not a run id (26 characters of [0-9a-z])", arg.run);
		return -1;
	}
	arg.argv = argv + optind;
	arg.argc = argc - optind;
	bool is_exec = !strcmp(arg.cmd, "exec");
	if (arg.process && (!is_exec || arg.argc || arg.tty || arg.nenv || arg.workdir)) {
		log_error("--process is for exec, instead of CMD, -t, -e and -w");
		return -1;
	}
	if (arg.process)
		arg.interactive = true;
	if (is_exec && arg.argc == 0 && !arg.process) {
		log_error("no command given: box-ctl exec --run ID [OPTIONS] -- CMD [ARG...]");
		return -1;
	}
	if (!is_exec && arg.argc) {
		log_error("unexpected argument '%s'", arg.argv[0]);
		return -1;
	}
	if (!is_exec && (arg.interactive || arg.tty || arg.nenv || arg.workdir)) {
		log_error("-i, -t, -e and -w are options of exec, not of stop");
		return -1;
	}
	if (arg.tty && !isatty(STDIN_FILENO)) {
		log_error("-t needs a terminal on stdin (run it from one, or leave out -t)");
		return -1;
	}
	return 0;
}

/* --process: the signals relayed (every one a process can catch but those
 * of the relay itself and the synchronous faults) */
static bool relayed(int sig)
{
	if (!arg.process) {
		static const int fwd[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
		for (size_t i = 0; i < ARRAY_SIZE(fwd); i++)
			if (fwd[i] == sig)
				return true;
		return false;
	}
	switch (sig) {
	case SIGKILL:
	case SIGSTOP:
	case SIGCHLD:
	case SIGPIPE:
	case SIGWINCH:
	case SIGSEGV:
	case SIGBUS:
	case SIGFPE:
	case SIGILL:
	case SIGTRAP:
	case SIGSYS: return false;
	/* and the real-time ones (systemd's SIGRTMIN+3 stop) */
	default: return (sig >= 1 && sig < 32) || (sig >= SIGRTMIN && sig <= SIGRTMAX);
	}
}

/* --process FILE into the exec request: args, env, cwd, user, terminal */
static int process_spec(struct json_object *spec)
{
	cleanup_free char *text = NULL;
	size_t len = 0;
	int r = read_small_file(arg.process, BOXCTL_PROCESS_MAX, &text, &len);
	if (r < 0)
		return log_sys(r, "cannot read the process '%s'", arg.process);
	struct json_tokener *tok = json_tokener_new_ex(16);
	cleanup_json struct json_object *p = tok ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
	if (tok)
		json_tokener_free(tok);
	struct json_object *v, *u;
	if (!p || !json_object_is_type(p, json_type_object))
		return log_error("the process '%s' is not a JSON object", arg.process), -EINVAL;
	if (!json_object_object_get_ex(p, "args", &v) || !json_object_is_type(v, json_type_array) ||
	    !json_object_array_length(v))
		return log_error("the process '%s' has no args", arg.process), -EINVAL;
	json_object_object_add(spec, "args", json_object_get(v));
	if (json_object_object_get_ex(p, "env", &v))
		json_object_object_add(spec, "env", json_object_get(v));
	if (json_object_object_get_ex(p, "cwd", &v))
		json_object_object_add(spec, "cwd", json_object_get(v));
	if (json_object_object_get_ex(p, "user", &u) && json_object_is_type(u, json_type_object)) {
		struct json_object *o = json_object_new_object();
		static const char *const keys[] = { "uid", "gid", "additionalGids" };
		for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
			if (json_object_object_get_ex(u, keys[i], &v))
				json_object_object_add(o, keys[i], json_object_get(v));
		json_object_object_add(spec, "user", o);
	}
	if (json_object_object_get_ex(p, "terminal", &v) && json_object_get_boolean(v)) {
		if (!isatty(STDIN_FILENO))
			return log_error("the process wants a terminal, but stdin is not one"), -EINVAL;
		arg.tty = true;
	}
	return 0;
}

/* ---- signals: flags and a self-pipe, so a blocked write returns EINTR ---------------------- */

static volatile sig_atomic_t pending[65];
static int wake[2] = { -1, -1 };
static void on_signal(int sig)
{
	int e = errno;
	pending[sig] = 1;
	if (write(wake[1], "", 1) < 0) {
		/* full: it is awake anyway */
	}
	errno = e;
}

static struct termios saved_tio;
static bool raw_on;
static void term_back(void)
{
	if (raw_on)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
	raw_on = false;
}

static char *home; /* canonical, once connect_monitor ran */

static int connect_monitor(int *fd_out)
{
	int r = boxkit_home_canon(arg.home, false, &home);
	if (r < 0)
		return log_sys(r, "cannot use the boxkit home");
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/" RUN_ROOT "/%s", home, arg.run);
	cleanup_close int dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? (log_error("no sandbox with run id '%s'", arg.run), -ENOENT)
				       : log_sys(errno, "cannot open '%s'", dir);
	int fd = unix_connect_beneath(dfd, MONITOR_SOCK);
	if (fd == -ENOENT || fd == -ECONNREFUSED)
		return log_error("the sandbox is not running (run %s)", arg.run), -ENOENT;
	if (fd < 0)
		return log_sys(fd, "cannot reach the sandbox's monitor '%s/" MONITOR_SOCK "'", dir);
	*fd_out = fd;
	return 0;
}

static int send_all(int fd, const void *b, size_t n)
{
	const char *p = b;
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = { fd, POLLOUT, 0 };
			poll(&pf, 1, 100);
			continue;
		}
		if (w <= 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int send_frame(int fd, char type, const void *p, uint32_t n)
{
	unsigned char h[FRAME_HDR];
	h[0] = (unsigned char)type;
	le32_put(h + 1, 0);
	le32_put(h + 5, n);
	int r = send_all(fd, h, sizeof(h));
	return r < 0 || !n ? r : send_all(fd, p, n);
}

static int send_u32(int fd, char type, uint32_t v)
{
	unsigned char p[4];
	le32_put(p, v);
	return send_frame(fd, type, p, 4);
}

static int handle_signals(int sock, int *nsig)
{
	char drain[64];
	while (read(wake[0], drain, sizeof(drain)) > 0) {
	}
	if (pending[SIGWINCH]) {
		pending[SIGWINCH] = 0;
		struct winsize ws;
		if (arg.tty && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0) {
			unsigned char p[4] = { (unsigned char)ws.ws_row, (unsigned char)(ws.ws_row >> 8),
					       (unsigned char)ws.ws_col, (unsigned char)(ws.ws_col >> 8) };
			send_frame(sock, FR_WINSIZE, p, 4);
		}
	}
	for (int sig = 1; sig <= SIGRTMAX && sig < (int)ARRAY_SIZE(pending); sig++) {
		if (!pending[sig] || !relayed(sig))
			continue;
		pending[sig] = 0;
		/* an OCI runtime's kill may come any number of times */
		if (!arg.process && ++*nsig >= 3) {
			/* the monitor kills the command when we go */
			log_error("signal %d a third time: leaving (the command is killed)", sig);
			return 128 + sig;
		}
		log_debug("passing signal %d on", sig);
		send_u32(sock, FR_SIGNAL, (uint32_t)sig);
	}
	return 0;
}

/* output to our caller: blocking, but a signal interrupts it (and is then
 * handled: forwarded, or the third one leaves) */
static int out_all(int fd, const unsigned char *b, size_t n, int sock, int *nsig)
{
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR) {
			int k = handle_signals(sock, nsig);
			if (k)
				return k;
			continue;
		}
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = { fd, POLLOUT, 0 };
			poll(&pf, 1, 100);
			continue;
		}
		if (w <= 0)
			return errno == EPIPE ? 0 : -errno; /* a reader that went away: drop the rest */
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int cmd_exec(void)
{
	int sock = -1, r, nsig = 0, status = -1;
	if ((r = connect_monitor(&sock)) < 0)
		return EXIT_LAUNCH;
	cleanup_json struct json_object *spec = json_object_new_object();
	if (arg.process) {
		if (process_spec(spec) < 0) {
			close(sock);
			return EXIT_LAUNCH;
		}
	} else {
		struct json_object *args = json_object_new_array(), *env = json_object_new_array();
		for (int i = 0; i < arg.argc; i++)
			json_object_array_add(args, json_object_new_string(arg.argv[i]));
		for (int i = 0; i < arg.nenv; i++)
			json_object_array_add(env, json_object_new_string(arg.env[i]));
		json_object_object_add(spec, "args", args);
		json_object_object_add(spec, "env", env);
	}
	if (arg.workdir)
		json_object_object_add(spec, "cwd", json_object_new_string(arg.workdir));
	json_object_object_add(spec, "tty", json_object_new_boolean(arg.tty));
	struct winsize ws;
	if (arg.tty && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		json_object_object_add(spec, "rows", json_object_new_int(ws.ws_row));
		json_object_object_add(spec, "cols", json_object_new_int(ws.ws_col));
	}
	const char *t = json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (strlen(t) > GUEST_EXEC_MAX) {
		log_error("the command and its environment are longer than %u bytes", GUEST_EXEC_MAX);
		close(sock);
		return EXIT_LAUNCH;
	}
	/* a send that fails (the monitor refused and closed) is not the end:
	 * its FAIL frame, naming why, is still there to read */
	if (send_frame(sock, FR_EXEC, t, (uint32_t)strlen(t)) == 0 && !arg.interactive)
		send_frame(sock, FR_STDIN_EOF, NULL, 0);
	if (arg.tty) {
		struct termios tio;
		if (tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
			tio = saved_tio;
			cfmakeraw(&tio);
			if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &tio) == 0)
				raw_on = true;
		}
	}
	struct fbuf in;
	if (fbuf_init(&in, FRAME_HDR + FRAME_DATA_MAX) < 0) {
		term_back();
		close(sock);
		return EXIT_LAUNCH;
	}
	uint32_t window = 0;
	bool stdin_open = arg.interactive, done = false;
	int rc = 0;
	while (!done && !rc) {
		struct pollfd pf[3] = {
			{ sock, POLLIN, 0 },
			{ stdin_open && window ? STDIN_FILENO : -1, POLLIN, 0 },
			{ wake[0], POLLIN, 0 },
		};
		if (poll(pf, 3, -1) < 0 && errno != EINTR) {
			rc = log_sys(errno, "poll");
			break;
		}
		if ((rc = handle_signals(sock, &nsig)))
			break;
		if (pf[1].revents) {
			unsigned char buf[FRAME_DATA_MAX];
			ssize_t n = read(STDIN_FILENO, buf, window < sizeof(buf) ? window : sizeof(buf));
			if (n > 0) {
				window -= (uint32_t)n;
				send_frame(sock, FR_STDIN, buf, (uint32_t)n);
			} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				stdin_open = false;
				send_frame(sock, FR_STDIN_EOF, NULL, 0);
			}
		}
		if (!pf[0].revents)
			continue;
		ssize_t n = read(sock, in.data + in.len, fbuf_room(&in));
		if (n <= 0) {
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			log_error("lost the sandbox's monitor before the command's exit status came");
			rc = EXIT_LAUNCH;
			break;
		}
		in.len += (size_t)n;
		struct frame f;
		int k;
		while (!rc && !done && (k = frame_peek(&in, FRAME_DATA_MAX, &f)) == 1) {
			switch (f.type) {
			case FR_WINDOW:
				if (f.len == 4)
					window += le32_get(f.payload);
				break;
			case FR_STDOUT:
			case FR_STDERR:
				rc = out_all(f.type == FR_STDOUT ? STDOUT_FILENO : STDERR_FILENO, f.payload, f.len,
					     sock, &nsig);
				if (rc < 0) {
					log_sys(-rc, "cannot write the command's output");
					rc = EXIT_LAUNCH;
				}
				break;
			case FR_EXIT:
				if (f.len == 4)
					status = (int)(le32_get(f.payload) & 0xff);
				done = true;
				break;
			case FR_FAIL: {
				char msg[1024];
				snprintf(msg, sizeof(msg), "%.*s", (int)(f.len < 1000 ? f.len : 1000),
					 (const char *)f.payload);
				sanitize_text(msg, sizeof(msg));
				term_back();
				log_error("%s", msg);
				rc = EXIT_LAUNCH;
				break;
			}
			default: log_error("the monitor sent an unknown frame '%c'", f.type); rc = EXIT_LAUNCH;
			}
			fbuf_consume(&in, FRAME_HDR + f.len);
		}
		if (k < 0) {
			log_error("the monitor sent a frame too large");
			rc = EXIT_LAUNCH;
		}
	}
	term_back();
	fbuf_free(&in);
	close(sock);
	return rc ? rc : status;
}

static int cmd_stop(void)
{
	int sock = -1;
	int r = connect_monitor(&sock);
	if (r == -ENOENT)
		return EXIT_REFUSED;
	if (r < 0)
		return EXIT_SYSTEM;
	if (send_u32(sock, FR_SHUTDOWN, (uint32_t)(arg.stop_time * 1000)) < 0) {
		close(sock);
		return log_sys(errno, "cannot talk to the sandbox's monitor"), EXIT_SYSTEM;
	}
	/* the answer: EXIT once the VM is gone, or the monitor's end */
	int wait_ms = (int)(arg.stop_time * 1000) + 15000;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned char buf[4096];
	size_t have = 0;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = wait_ms - ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
		struct pollfd pf = { sock, POLLIN, 0 };
		if (left <= 0 || (poll(&pf, 1, (int)left) < 0 && errno != EINTR)) {
			log_error("the sandbox did not stop within %d s", wait_ms / 1000);
			close(sock);
			return EXIT_SYSTEM;
		}
		if (!pf.revents)
			continue;
		ssize_t n = read(sock, buf + have, sizeof(buf) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the monitor is gone without an answer: see below */
		have += (size_t)n;
		if (have >= FRAME_HDR && buf[0] == FR_FAIL) {
			uint32_t len = le32_get(buf + 5);
			char msg[1024];
			snprintf(msg, sizeof(msg), "%.*s", (int)(len < have - FRAME_HDR ? len : have - FRAME_HDR),
				 (const char *)buf + FRAME_HDR);
			sanitize_text(msg, sizeof(msg));
			log_error("%s", msg);
			close(sock);
			return EXIT_SYSTEM; /* refused: not the same as not running */
		}
		if (have >= FRAME_HDR && buf[0] == FR_EXIT) {
			close(sock);
			return 0; /* answered after the cleanup */
		}
		if (have == sizeof(buf))
			have = 0;
	}
	close(sock);
	/* no answer (the monitor was ending as we came, or died): the record
	 * says whether the sandbox is stopped; gc marks a dead monitor's */
	cleanup_close int homefd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
	for (int i = 0; homefd >= 0 && i < 100; i++) {
		int lr;
		cleanup_json struct json_object *o = run_load(homefd, arg.run, &lr);
		struct json_object *v;
		if (!o || json_object_object_get_ex(o, "stopped", &v))
			return 0; /* stopped, or removed (--rm) */
		if (!run_owned(homefd, arg.run)) {
			char err[512];
			run_gc(homefd, err, sizeof(err));
			continue;
		}
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	log_error("the sandbox's monitor went away without confirming the stop");
	return EXIT_SYSTEM;
}

static int tool_main(int argc, char **argv)
{
	log_init(argv[0]);
	if (parse_argv(argc, argv) < 0)
		return !strcmp(arg.cmd ? arg.cmd : "", "exec") || argc < 2 ? EXIT_LAUNCH : EXIT_USAGE;
	signal(SIGPIPE, SIG_IGN);
	if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) < 0)
		return log_sys(errno, "pipe"), EXIT_LAUNCH;
	struct sigaction sa = { .sa_handler = on_signal }; /* no SA_RESTART: writes return EINTR */
	for (int sig = 1; sig <= SIGRTMAX && sig < (int)ARRAY_SIZE(pending); sig++)
		if (sig == SIGWINCH || relayed(sig))
			sigaction(sig, &sa, NULL);
	int r = !strcmp(arg.cmd, "exec") ? cmd_exec() : cmd_stop();
	term_back();
	return r;
}

int main(int argc, char **argv)
{
	int r = tool_main(argc, argv);
	free(arg.env);
	free(home);
	return r < 0 ? EXIT_LAUNCH : r;
}
