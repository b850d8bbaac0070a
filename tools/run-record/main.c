/* SPDX-License-Identifier: MIT */
/* run-record: make, extend, show, list and clean up runs. A run's record
 * (lib/common/runrec.h) is written before anything of the run is created and
 * lists everything it creates; `rm` and `gc` are the same cleanup code that
 * vm-launch runs at its end. */
#include "common.h"
#include "runrec.h"

#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>

static struct {
	const char *cmd, *home, *id, *name;
	long owner;
	char **rest;
	int nrest;
} arg = { .owner = -1 };

static void usage(FILE *f)
{
	fputs("Usage: run-record new [--owner PID] [--name NAME]  make a run (a sandbox when named); print its id\n"
	      "       run-record find --name NAME           the id of the sandbox NAME\n"
	      "       run-record add --id ID LIST VALUE     LIST: jail, anonymous, socket\n"
	      "       run-record owner --id ID PID          one more process that owns the run\n"
	      "       run-record show --id ID               the record (one JSON line)\n"
	      "       run-record ls                         every run (JSON lines)\n"
	      "       run-record rm --id ID                 remove everything the run created\n"
	      "       run-record gc                         rm every run that no owner holds any more\n"
	      "Common options: --home DIR, -v, -h.\n"
	      "\n"
	      "The record is <home>/run/<id>/run.json, root's; the id also names the jail\n"
	      "and is the BOXKIT_OP_ID of the run's log lines. The owner of a new run is\n"
	      "--owner, else the calling process.\n"
	      "\n"
	      "Exit status: 0 ok, 1 refused (no such run, a bad value), 2 usage, 3 system\n"
	      "failure (something could not be removed: gc tries again).\n"
	      "Manual: tools/run-record/run-record.1.md\n",
	      f);
}

static int parse_argv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "home", required_argument, NULL, 'H' },
		{ "id", required_argument, NULL, 'i' },
		{ "owner", required_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "name", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char *const cmds[] = { "new", "add", "owner", "show", "ls", "rm", "gc", "find" };
	int c;
	char *end;
	if (argc < 2) {
		log_error("no command given (new, add, owner, show, ls, rm, gc, find)");
		return -1;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		exit(EXIT_OK);
	}
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		if (!strcmp(argv[1], cmds[i]))
			arg.cmd = cmds[i];
	if (!arg.cmd) {
		log_error("unknown command '%s' (new, add, owner, show, ls, rm, gc, find)", argv[1]);
		return -1;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "+hv", opts, NULL)) != -1) {
		switch (c) {
		case 'H': arg.home = optarg; break;
		case 'i': arg.id = optarg; break;
		case 'n': arg.name = optarg; break;
		case 'o':
			arg.owner = strtol(optarg, &end, 10);
			if (*end || end == optarg || arg.owner < 1) {
				log_error("--owner '%s' must be a process id", optarg);
				return -1;
			}
			break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h': usage(stdout); exit(EXIT_OK);
		default: usage(stderr); return -1;
		}
	}
	arg.rest = argv + optind;
	arg.nrest = argc - optind;
	bool needs_id =
		strcmp(arg.cmd, "new") && strcmp(arg.cmd, "ls") && strcmp(arg.cmd, "gc") && strcmp(arg.cmd, "find");
	if (!strcmp(arg.cmd, "find") && !arg.name) {
		log_error("find needs --name");
		return -1;
	}
	if (needs_id && !arg.id) {
		log_error("%s needs --id", arg.cmd);
		return -1;
	}
	int want = !strcmp(arg.cmd, "add") ? 2 : !strcmp(arg.cmd, "owner") ? 1 : 0;
	if (arg.nrest != want) {
		log_error("%s takes %d argument%s", arg.cmd, want, want == 1 ? "" : "s");
		return -1;
	}
	return 0;
}

static int refused_id(const char *id)
{
	log_error("'%s' is not a run id (26 characters of [0-9a-z])", id);
	return EXIT_REFUSED;
}

static int cmd_add(int homefd)
{
	static const struct {
		const char *name;
		enum run_list list;
	} lists[] = { { "jail", RUN_JAILS }, { "anonymous", RUN_ANONYMOUS }, { "socket", RUN_SOCKETS } };
	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		if (strcmp(arg.rest[0], lists[i].name))
			continue;
		int r = run_add(homefd, arg.id, lists[i].list, arg.rest[1]);
		if (r == -EINVAL) {
			log_error("'%s' is not a valid %s name (one component of [A-Za-z0-9_.-])", arg.rest[1],
				  arg.rest[0]);
			return EXIT_REFUSED;
		}
		if (r == -ENOENT) {
			log_error("no run '%s'", arg.id);
			return EXIT_REFUSED;
		}
		return r < 0 ? log_sys(r, "cannot update the record of '%s'", arg.id) : 0;
	}
	log_error("unknown list '%s' (jail, anonymous, socket)", arg.rest[0]);
	return EXIT_REFUSED;
}

static int cmd_ls(int homefd)
{
	cleanup_close int root = openat(homefd, RUN_ROOT, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (root < 0)
		return errno == ENOENT ? 0 : log_sys(errno, "cannot open the run directory");
	DIR *d = fdopendir(dup(root));
	if (!d)
		return log_sys(errno, "cannot list the runs");
	struct dirent *e;
	int r = 0;
	while ((e = readdir(d))) {
		if (!run_id_valid(e->d_name))
			continue;
		int lr;
		cleanup_json struct json_object *o = run_load(homefd, e->d_name, &lr);
		cleanup_json struct json_object *line = json_object_new_object();
		json_object_object_add(line, "id", json_object_new_string(e->d_name));
		struct json_object *v;
		if (o && json_object_object_get_ex(o, "created", &v))
			json_object_object_add(line, "created", json_object_get(v));
		if (o && json_object_object_get_ex(o, "name", &v))
			json_object_object_add(line, "name", json_object_get(v));
		if (o && json_object_object_get_ex(o, "stopped", &v))
			json_object_object_add(line, "stopped", json_object_get(v));
		json_object_object_add(line, "owned", json_object_new_boolean(o && run_owned(homefd, e->d_name)));
		if (!o)
			json_object_object_add(line, "error", json_object_new_string(strerror(-lr)));
		if (jsonl_write(stdout, line) < 0)
			r = log_sys(errno, "cannot write output");
	}
	closedir(d);
	return r;
}

static int run(void)
{
	cleanup_free char *home = NULL;
	char err[1024] = "";
	int r = boxkit_home_canon(arg.home, !strcmp(arg.cmd, "new"), &home);
	if (r == -ENOENT && strcmp(arg.cmd, "new"))
		return strcmp(arg.cmd, "ls") && strcmp(arg.cmd, "gc") && strcmp(arg.cmd, "rm")
			       ? (log_error("no boxkit home at '%s'", arg.home ? arg.home : "(default)"), EXIT_REFUSED)
			       : 0;
	if (r < 0)
		return log_sys(r, "cannot use the boxkit home");
	cleanup_close int homefd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (homefd < 0)
		return log_sys(errno, "cannot open '%s'", home);
	if (arg.id && !run_id_valid(arg.id))
		return refused_id(arg.id);

	if (arg.name && !run_name_valid(arg.name)) {
		log_error("'%s' is not a valid name (1 to 128 of [A-Za-z0-9_.-])", arg.name);
		return EXIT_REFUSED;
	}
	if (!strcmp(arg.cmd, "find")) {
		char id[RUN_ID_LEN + 1];
		r = run_find(homefd, arg.name, id);
		if (r == -ENOENT)
			return log_error("no sandbox named '%s'", arg.name), EXIT_REFUSED;
		if (r < 0)
			return log_sys(r, "cannot look up '%s'", arg.name);
		printf("%s\n", id);
		return 0;
	}
	if (!strcmp(arg.cmd, "new")) {
		char id[RUN_ID_LEN + 1];
		if ((r = run_id_new(id)) == 0)
			r = run_create_named(homefd, id, arg.owner > 0 ? (pid_t)arg.owner : getppid(), arg.name);
		if (r == -EEXIST)
			return log_error("the name '%s' is already in use by a sandbox", arg.name), EXIT_REFUSED;
		if (r < 0)
			return log_sys(r, "cannot create a run under '%s/" RUN_ROOT "'", home);
		printf("%s\n", id);
		return 0;
	}
	if (!strcmp(arg.cmd, "add"))
		return cmd_add(homefd);
	if (!strcmp(arg.cmd, "owner")) {
		char *end;
		long pid = strtol(arg.rest[0], &end, 10);
		if (*end || pid < 1) {
			log_error("'%s' is not a process id", arg.rest[0]);
			return EXIT_REFUSED;
		}
		r = run_add_process(homefd, arg.id, RUN_OWNERS, NULL, (pid_t)pid);
		if (r == -ENOENT)
			return log_error("no run '%s'", arg.id), EXIT_REFUSED;
		return r < 0 ? log_sys(r, "cannot update the record of '%s'", arg.id) : 0;
	}
	if (!strcmp(arg.cmd, "show")) {
		cleanup_json struct json_object *o = run_load(homefd, arg.id, &r);
		if (!o && r == -ENOENT)
			return log_error("no run '%s'", arg.id), EXIT_REFUSED;
		if (!o)
			return log_sys(r, "cannot read the record of '%s'", arg.id);
		return jsonl_write(stdout, o) < 0 ? log_sys(errno, "cannot write output") : 0;
	}
	if (!strcmp(arg.cmd, "ls"))
		return cmd_ls(homefd);
	if (!strcmp(arg.cmd, "rm")) {
		if ((r = run_cleanup(homefd, arg.id, err, sizeof(err))) < 0) {
			log_error("%s", err);
			return EXIT_SYSTEM;
		}
		return 0;
	}
	/* gc */
	r = run_gc(homefd, err, sizeof(err));
	if (r < 0) {
		log_error("%s", err);
		return EXIT_SYSTEM;
	}
	log_debug("removed %d run%s", r, r == 1 ? "" : "s");
	return 0;
}

static int tool_main(int argc, char **argv)
{
	log_init(argv[0]);
	if (parse_argv(argc, argv) < 0)
		return EXIT_USAGE;
	int r = run();
	if (close_stdout() < 0 && r == 0)
		r = EXIT_SYSTEM;
	return r;
}

int main(int argc, char **argv)
{
	return tool_exit(tool_main(argc, argv));
}
