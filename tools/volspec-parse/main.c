/* SPDX-License-Identifier: MIT */
/* volspec-parse: turn -v volume specs into JSON lines and create the managed
 * directories they name; --check re-verifies such lines (the runtime gate). */
#include "common.h"
#include "runrec.h"
#include "vol.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SPECS 256

static struct {
	const char *home;
	bool check;
	bool dry_run;
	char **specs;
	int nspecs;
	bool from_stdin;
	const char *check_file;
	const char *run;
	const char *remove;
} arg;

struct entry {
	const char *spec;
	struct volspec v;
	bool is_file;
	bool created; /* this run made the volume directory */
	char tag[VOL_TAG_MAX + 1];
};

static void usage(FILE *f)
{
	fputs("Usage: volspec-parse [--home DIR] [--dry-run] SPEC...\n"
	      "       volspec-parse [--home DIR] -            (one spec per line on stdin)\n"
	      "       volspec-parse [--home DIR] --check [FILE|-]\n"
	      "       volspec-parse [--home DIR] --remove NAME\n"
	      "\n"
	      "Turn volume specs into JSON lines and create the boxkit-managed volume\n"
	      "directories they name. Host paths are never mountable.\n"
	      "\n"
	      "Specs:  /guest[:ro|rw]                  anonymous volume, removed after the run\n"
	      "        NAME:/guest[:ro|rw]             named volume, persists\n"
	      "        type=volume,src=NAME,dst=/guest[,readonly][,volume-subpath=REL]\n"
	      "\n"
	      "Options:\n"
	      "  --home DIR    boxkit home (default $BOXKIT_HOME, $XDG_DATA_HOME/boxkit)\n"
	      "  --dry-run     validate and print, create nothing (sources are where they would be)\n"
	      "  --run ID      record the anonymous volumes in run ID before making them\n"
	      "                (run-record new): its cleanup and box gc remove them\n"
	      "  --check       the gate: read JSON lines (this tool's output) and verify each\n"
	      "                source is the managed volume its entry names, opened without\n"
	      "                following a symlink\n"
	      "  -v, --verbose debug lines on stderr\n"
	      "  -h, --help    this text\n"
	      "\n"
	      "Exit status: 0 ok, 1 a spec or entry was refused (nothing created),\n"
	      "2 usage error, 3 system failure.\n"
	      "Manual: tools/volspec-parse/volspec-parse.1.md\n",
	      f);
}

static int parse_argv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "home", required_argument, NULL, 'H' },   { "check", no_argument, NULL, 'c' },
		{ "dry-run", no_argument, NULL, 'n' },	    { "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },	    { "run", required_argument, NULL, 'r' },
		{ "remove", required_argument, NULL, 'R' }, { 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "+hv", opts, NULL)) != -1) {
		switch (c) {
		case 'H': arg.home = optarg; break;
		case 'c': arg.check = true; break;
		case 'R': arg.remove = optarg; break;
		case 'n': arg.dry_run = true; break;
		case 'r':
			if (!run_id_valid(optarg)) {
				log_error("--run '%s' is not a run id (26 characters of [0-9a-z])", optarg);
				return -1;
			}
			arg.run = optarg;
			break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h': usage(stdout); exit(EXIT_OK);
		default: usage(stderr); return -1;
		}
	}
	if (arg.remove) {
		if (optind != argc || arg.check) {
			log_error("--remove NAME takes nothing else");
			return -1;
		}
		return 0;
	}
	if (arg.check) {
		if (argc - optind > 1) {
			log_error("--check takes at most one FILE");
			return -1;
		}
		arg.check_file = optind < argc ? argv[optind] : "-";
		return 0;
	}
	if (optind == argc) {
		log_error("no volume spec given (try --help)");
		return -1;
	}
	if (argc - optind == 1 && strcmp(argv[optind], "-") == 0)
		arg.from_stdin = true;
	arg.specs = argv + optind;
	arg.nspecs = argc - optind;
	return 0;
}

/* ---- spec mode ------------------------------------------------------------- */

static int read_specs_stdin(char ***out, int *n)
{
	char line[VOLSPEC_MAX_LEN + 1];
	char **v = calloc(MAX_SPECS, sizeof(char *));
	int count = 0, lineno = 0;
	ssize_t r;

	if (!v)
		return log_sys(ENOMEM, "cannot read specs");
	while ((r = read_line_limited(stdin, line, sizeof(line))) != 0) {
		lineno++;
		if (r == -E2BIG) {
			log_error("stdin line %d: volume spec longer than %d bytes", lineno, VOLSPEC_MAX_LEN);
			goto refused;
		}
		if (r < 0) {
			log_sys((int)r, "cannot read stdin");
			goto system;
		}
		if (!line[0])
			continue;
		if (count == MAX_SPECS) {
			log_error("more than %d volume specs", MAX_SPECS);
			goto refused;
		}
		v[count] = strdup(line);
		if (!v[count++]) {
			log_sys(ENOMEM, "cannot read specs");
			goto system;
		}
	}
	*out = v;
	*n = count;
	return 0;
refused:
	for (int i = 0; i < count; i++)
		free(v[i]);
	free(v);
	return EXIT_REFUSED;
system:
	for (int i = 0; i < count; i++)
		free(v[i]);
	free(v);
	return EXIT_SYSTEM;
}

/* Validate a named volume's subpath without following symlinks or leaving
 * the store: it must exist beneath the volume and be a directory or a
 * regular file (which makes the entry a file mount). */
static int check_subpath(int volfd, const char *home, struct entry *e)
{
	cleanup_free char *rel = NULL;
	cleanup_close int fd = -1;
	struct stat st;

	if (asprintf(&rel, VOL_ROOT_NAMED "/%s/%s", e->v.name, e->v.subpath) < 0)
		return log_sys(ENOMEM, "out of memory");
	cleanup_close int volroot = volfd < 0 ? -ENOENT : vol_open_root(volfd, VOL_NAMED, e->v.name);
	fd = volroot < 0 ? volroot : open_beneath_noxdev(volroot, e->v.subpath, O_PATH | O_NOFOLLOW, 0);
	if (fd == -ENOENT || fd == -ENOTDIR) {
		log_error("'%s': volume-subpath '%s' does not exist in volume '%s'", e->spec, e->v.subpath, e->v.name);
		return EXIT_REFUSED;
	}
	if (fd == -ELOOP || fd == -EXDEV) {
		log_error(
			"'%s': volume-subpath '%s' goes through a symlink or a mount and could resolve outside volume "
			"'%s'",
			e->spec, e->v.subpath, e->v.name);
		return EXIT_REFUSED;
	}
	if (fd < 0)
		return log_sys(fd, "cannot open '%s/" VOL_STORE_DIR "/%s'", home, rel);
	if (fstat(fd, &st) < 0)
		return log_sys(errno, "cannot stat '%s/" VOL_STORE_DIR "/%s'", home, rel);
	if (S_ISREG(st.st_mode))
		e->is_file = true;
	else if (!S_ISDIR(st.st_mode)) {
		log_error("'%s': volume-subpath '%s' is neither a directory nor a regular file", e->spec, e->v.subpath);
		return EXIT_REFUSED;
	}
	return 0;
}

static int new_tag(struct entry *ents, int i)
{
	char hex[17];
	for (;;) {
		int r = random_hex(hex, 8);
		if (r < 0)
			return log_sys(r, "cannot get random bytes");
		snprintf(ents[i].tag, sizeof(ents[i].tag), "%s_%s", ents[i].is_file ? "fm" : "vol", hex);
		bool dup = false;
		for (int j = 0; j < i; j++)
			dup |= strcmp(ents[j].tag, ents[i].tag) == 0;
		if (!dup)
			return 0;
	}
}

static void rollback(int namedfd, int anonfd, struct entry *ents, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		if (!ents[i].created)
			continue;
		unlinkat(ents[i].v.kind == VOL_NAMED ? namedfd : anonfd, ents[i].v.name, AT_REMOVEDIR);
		ents[i].created = false;
	}
}

/* <parent>/<name>, a real directory of ours (made 0700 when missing), in
 * *fd. 0, EXIT_REFUSED, or -errno (logged). */
static int open_root_dir(int parent, const char *name, const char *what, int *fd)
{
	if (mkdirat(parent, name, 0700) < 0 && errno != EEXIST)
		return log_sys(errno, "cannot create %s", what);
	*fd = openat(parent, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0) {
		if (errno == ELOOP || errno == ENOTDIR) {
			log_error("%s is a symlink or not a directory; refusing it", what);
			return EXIT_REFUSED;
		}
		return log_sys(errno, "cannot open %s", what);
	}
	return 0;
}

static int materialise(int homefd, const char *home, struct entry *ents, int n)
{
	cleanup_close int volfd = -1, namedfd = -1, anonfd = -1;
	int r;

	if ((r = open_root_dir(homefd, VOL_STORE_DIR, "the volume store", &volfd)) != 0 ||
	    (r = open_root_dir(volfd, VOL_ROOT_NAMED, "the named volume root", &namedfd)) != 0 ||
	    (r = open_root_dir(volfd, VOL_ROOT_ANONYMOUS, "the anonymous volume root", &anonfd)) != 0)
		return r;

	for (int i = 0; i < n; i++) {
		struct entry *e = &ents[i];
		if (e->v.subpath[0])
			continue; /* it exists already (checked) */
		if (e->v.kind == VOL_NAMED) {
			if (mkdirat(namedfd, e->v.name, 0700) == 0)
				e->created = true;
			else if (errno != EEXIST) {
				r = log_sys(errno, "cannot create volume '%s'", e->v.name);
				goto fail;
			}
			/* existing or just made by a concurrent run: it must be a real directory */
			struct stat st;
			if (fstatat(namedfd, e->v.name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
				log_error("volume '%s' exists but is not a directory (a symlink or file at "
					  "'%s/" VOL_STORE_DIR "/" VOL_ROOT_NAMED "/%s')",
					  e->v.name, home, e->v.name);
				r = EXIT_REFUSED;
				goto fail;
			}
		} else {
			char id[27];
			if ((r = ulid_new(id)) < 0) {
				r = log_sys(r, "cannot make a volume id");
				goto fail;
			}
			snprintf(e->v.name, sizeof(e->v.name), "%s", id);
			/* recorded before it exists: box gc removes it whatever happens next */
			if (arg.run && (r = run_add(homefd, arg.run, RUN_ANONYMOUS, id)) < 0) {
				r = r == -ENOENT ? (log_error("no run '%s'", arg.run), EXIT_REFUSED)
						 : log_sys(r, "cannot record volume '%s' in run '%s'", id, arg.run);
				goto fail;
			}
			if (mkdirat(anonfd, id, 0700) < 0) {
				r = log_sys(errno, "cannot create volume '%s'", id);
				goto fail;
			}
			e->created = true;
		}
		log_debug("volume %s%s", e->v.name, e->created ? " (created)" : "");
	}
	return 0;
fail:
	rollback(namedfd, anonfd, ents, n);
	return r;
}

static int fill_entry(const char *home, struct entry *e, struct vol_entry *out)
{
	memset(out, 0, sizeof(*out));
	out->kind = e->v.kind;
	out->is_file = e->is_file;
	out->readonly = e->v.readonly;
	snprintf(out->name, sizeof(out->name), "%s", e->v.name);
	snprintf(out->tag, sizeof(out->tag), "%s", e->tag);
	snprintf(out->target, sizeof(out->target), "%s", e->v.target);
	snprintf(out->subpath, sizeof(out->subpath), "%s", e->v.subpath);
	snprintf(out->spec, sizeof(out->spec), "%s", e->spec);
	return vol_source_path(home, out, out->source, sizeof(out->source));
}

/* The home as it will be: canonical when it exists; else the absolute path
 * it will be made at (its existing parent canonical). */
static int resolve_home(char **home)
{
	int r = boxkit_home_canon(arg.home, false, home);
	if (r != -ENOENT)
		return r;
	cleanup_free char *raw = NULL;
	if ((r = boxkit_home(arg.home, &raw)) < 0)
		return r;
	if (raw[0] != '/') {
		log_error("home '%s' must be an absolute path", raw);
		return -EINVAL;
	}
	*home = steal_ptr(raw);
	return 0;
}

static int run_specs(void)
{
	cleanup_free char *home = NULL;
	cleanup_free struct entry *ents = NULL;
	cleanup_close int homefd = -1, volfd = -1;
	char **specs = arg.specs;
	int n = arg.nspecs, r, bad = 0;
	char err[512];

	if (arg.from_stdin && (r = read_specs_stdin(&specs, &n)) != 0)
		return r;
	if (n == 0) {
		log_error("no volume spec on stdin");
		r = EXIT_REFUSED;
		goto out_specs;
	}
	if (n > MAX_SPECS) {
		log_error("more than %d volume specs", MAX_SPECS);
		r = EXIT_REFUSED;
		goto out_specs;
	}
	ents = calloc((size_t)n, sizeof(*ents));
	if (!ents) {
		r = log_sys(ENOMEM, "out of memory");
		goto out_specs;
	}
	/* 1. parse everything */
	for (int i = 0; i < n; i++) {
		ents[i].spec = specs[i];
		if (volspec_parse(specs[i], &ents[i].v, err, sizeof(err)) < 0) {
			if (strlen(specs[i]) > 100 || !utf8_valid(specs[i], strlen(specs[i])))
				log_error("'%.60s...': %s",
					  utf8_valid(specs[i], strlen(specs[i])) ? specs[i] : "(not UTF-8)", err);
			else
				log_error("'%s': %s", specs[i], err);
			bad++;
		}
	}
	for (int i = 0; i < n && !bad; i++)
		for (int j = 0; j < i; j++)
			if (strcmp(ents[i].v.target, ents[j].v.target) == 0) {
				log_error("'%s': guest path '%s' is already used by '%s'", specs[i], ents[i].v.target,
					  specs[j]);
				bad++;
			}
	if (bad) {
		r = EXIT_REFUSED;
		goto out;
	}
	/* 2. check what is on disk: the home and the named volumes */
	if ((r = resolve_home(&home)) < 0) {
		r = r == -EINVAL ? EXIT_USAGE : log_sys(r, "cannot resolve the home");
		goto out;
	}
	homefd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (homefd >= 0)
		volfd = openat(homefd, VOL_STORE_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	for (int i = 0; i < n; i++) {
		struct entry *e = &ents[i];
		if (e->v.kind != VOL_NAMED)
			continue;
		if (e->v.subpath[0]) {
			if ((r = check_subpath(volfd, home, e)) != 0)
				bad = bad ? bad : r;
			continue;
		}
		struct stat st;
		char rel[128];
		snprintf(rel, sizeof(rel), VOL_ROOT_NAMED "/%s", e->v.name);
		if (volfd >= 0 && fstatat(volfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
			log_error("'%s': volume '%s' exists but is not a directory (a symlink or file at "
				  "'%s/" VOL_STORE_DIR "/%s')",
				  e->spec, e->v.name, home, rel);
			bad = bad ? bad : EXIT_REFUSED;
		}
	}
	if (bad) {
		r = bad;
		goto out;
	}
	for (int i = 0; i < n; i++)
		if ((r = new_tag(ents, i)) != 0)
			goto out;
	/* 3. create (or, with --dry-run, only name) the directories */
	if (arg.dry_run) {
		for (int i = 0; i < n; i++) {
			if (ents[i].v.kind != VOL_ANONYMOUS)
				continue;
			char id[27];
			if ((r = ulid_new(id)) < 0) {
				r = log_sys(r, "cannot make a volume id");
				goto out;
			}
			snprintf(ents[i].v.name, sizeof(ents[i].v.name), "%s", id);
		}
	} else {
		if (homefd < 0) {
			cleanup_free char *failed = NULL;
			if ((r = mkdir_p_0700(home, &failed)) < 0) {
				r = log_sys(r, "cannot create '%s'", failed ? failed : home);
				goto out;
			}
			free(home);
			home = NULL;
			if ((r = boxkit_home_canon(arg.home, false, &home)) < 0) {
				r = log_sys(r, "cannot resolve the home");
				goto out;
			}
			homefd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (homefd < 0) {
				r = log_sys(errno, "cannot open '%s'", home);
				goto out;
			}
		}
		if ((r = materialise(homefd, home, ents, n)) != 0)
			goto out;
	}
	for (int i = 0; i < n; i++) {
		struct vol_entry ve;
		if (fill_entry(home, &ents[i], &ve) < 0) {
			log_error("'%s': the volume's path is too long", ents[i].spec);
			r = EXIT_REFUSED;
			goto out;
		}
		cleanup_json struct json_object *o = vol_entry_json(&ve);
		if (!o || jsonl_write(stdout, o) < 0) {
			r = log_sys(o ? errno : ENOMEM, "cannot write output");
			goto out;
		}
	}
	r = 0;
out:
out_specs:
	if (arg.from_stdin) {
		for (int i = 0; i < n; i++)
			free(specs[i]);
		free(specs);
	}
	return r;
}

/* ---- remove a named volume ----------------------------------------------------- */

/* The volume's tree is the guest's: removed by descriptor beneath the named
 * root, no symlink followed, no mount crossed, in bounded memory (a volume
 * with a size limit is a mount: box unmounts it first). */
static int run_remove(void)
{
	cleanup_free char *home = NULL;
	int r;
	if (!volume_name_valid(arg.remove)) {
		log_error("invalid volume name '%s'", arg.remove);
		return EXIT_REFUSED;
	}
	if ((r = boxkit_home_canon(arg.home, false, &home)) < 0) {
		log_error("no volume '%s' (no home)", arg.remove);
		return EXIT_REFUSED;
	}
	cleanup_close int homefd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
	cleanup_close int volfd =
		homefd < 0 ? -1 : openat(homefd, VOL_STORE_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	cleanup_close int named =
		volfd < 0 ? -1 : open_beneath_noxdev(volfd, VOL_ROOT_NAMED, O_RDONLY | O_DIRECTORY, 0);
	struct stat st;
	if (named < 0 || fstatat(named, arg.remove, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		log_error("no volume '%s'", arg.remove);
		return EXIT_REFUSED;
	}
	r = rm_tree_at(named, arg.remove);
	if (r == -EBUSY) {
		log_error("volume '%s' holds a mount (a size limit's filesystem still mounted?); not removing it",
			  arg.remove);
		return EXIT_REFUSED;
	}
	return r < 0 ? log_sys(r, "cannot remove volume '%s'", arg.remove) : 0;
}

/* ---- check mode (the runtime gate) -------------------------------------------- */

static int run_check(void)
{
	cleanup_fclose FILE *in_owned = NULL;
	cleanup_free char *home = NULL;
	cleanup_free struct vol_entry *ents = NULL;
	FILE *in = stdin;
	size_t n = 0;
	char err[1024];
	int r;

	if ((r = boxkit_home_canon(arg.home, false, &home)) < 0) {
		log_error("home '%s': %s; nothing is managed there", arg.home ? arg.home : "(default)", strerror(-r));
		return EXIT_REFUSED;
	}
	cleanup_close int homefd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (homefd < 0)
		return log_sys(errno, "cannot open '%s'", home);
	cleanup_close int volfd = openat(homefd, VOL_STORE_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (strcmp(arg.check_file, "-") != 0) {
		in_owned = fopen(arg.check_file, "re");
		if (!in_owned)
			return log_sys(errno, "cannot open '%s'", arg.check_file);
		in = in_owned;
	}
	if ((r = vol_read(in, &ents, &n, err, sizeof(err))) < 0) {
		if (r == -EINVAL) {
			log_error("%s", err);
			return EXIT_REFUSED;
		}
		return log_sys(r, "cannot read input");
	}
	r = 0;
	for (size_t i = 0; i < n; i++) {
		int pinned = -1;
		int g = volfd < 0 ? -EINVAL : vol_gate(home, homefd, volfd, &ents[i], &pinned, err, sizeof(err));
		if (volfd < 0)
			snprintf(err, sizeof(err), "no volume store at '%s/" VOL_STORE_DIR "'", home);
		if (g == -EINVAL) {
			log_error("entry %zu: %s", i + 1, err);
			r = r ? r : EXIT_REFUSED;
		} else if (g < 0)
			r = r ? r : log_sys(g, "entry %zu: cannot open its source", i + 1);
		if (pinned >= 0)
			close(pinned);
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		cleanup_json struct json_object *o = vol_entry_json(&ents[i]);
		if (!o || jsonl_write(stdout, o) < 0)
			r = log_sys(o ? errno : ENOMEM, "cannot write output");
	}
	return r;
}

static int tool_main(int argc, char **argv)
{
	int r;

	log_init(argv[0]);
	if (parse_argv(argc, argv) < 0)
		return EXIT_USAGE;
	r = arg.remove ? run_remove() : arg.check ? run_check() : run_specs();
	if (close_stdout() < 0 && r == 0)
		r = log_sys(errno ? errno : EIO, "cannot write stdout");
	return r;
}

int main(int argc, char **argv)
{
	return tool_exit(tool_main(argc, argv));
}
