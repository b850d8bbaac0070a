/* SPDX-License-Identifier: MIT */
/* volspec-parse: turn -v volume specs into JSON lines and create the managed
 * directories they name; --check re-verifies such lines (the runtime gate). */
#include "common.h"
#include "spec.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SPECS 256
#define MAX_JSON_LINE 16384
#define MAX_JSON_DEPTH 4

static struct {
	const char *home;
	bool check;
	bool dry_run;
	char **specs;
	int nspecs;
	bool from_stdin;
	const char *check_file;
} arg;

struct entry {
	const char *spec;
	struct volspec v;
	char *source; /* absolute host path */
	bool is_file;
	bool created; /* this run made the volume directory */
	char tag[40];
};

static void usage(FILE *f)
{
	fputs("Usage: volspec-parse [--home DIR] [--dry-run] SPEC...\n"
	      "       volspec-parse [--home DIR] -            (one spec per line on stdin)\n"
	      "       volspec-parse [--home DIR] --check [FILE|-]\n"
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
	      "  --check       read JSON lines (this tool's output) and re-verify each source\n"
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
		{ "home", required_argument, NULL, 'H' }, { "check", no_argument, NULL, 'c' },
		{ "dry-run", no_argument, NULL, 'n' },	  { "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },	  { 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "+hv", opts, NULL)) != -1) {
		switch (c) {
		case 'H': arg.home = optarg; break;
		case 'c': arg.check = true; break;
		case 'n': arg.dry_run = true; break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h': usage(stdout); exit(EXIT_OK);
		default: usage(stderr); return -1;
		}
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

/* Validate a named volume's subpath without following symlinks: it must
 * exist beneath the volume and be a directory or regular file. */
static int check_subpath(int homefd, const char *home, struct entry *e)
{
	cleanup_free char *rel = NULL;
	cleanup_close int fd = -1;
	struct stat st;

	if (asprintf(&rel, "volumes/named/%s/%s", e->v.name, e->v.subpath) < 0)
		return log_sys(ENOMEM, "out of memory");
	fd = homefd < 0 ? -ENOENT : open_beneath(homefd, rel, O_PATH | O_NOFOLLOW, 0);
	if (fd == -ENOENT || fd == -ENOTDIR) {
		log_error("'%s': volume-subpath '%s' does not exist in volume '%s'", e->spec, e->v.subpath, e->v.name);
		return EXIT_REFUSED;
	}
	if (fd == -ELOOP || fd == -EXDEV) {
		log_error("'%s': volume-subpath '%s' goes through a symlink and could resolve outside volume '%s'",
			  e->spec, e->v.subpath, e->v.name);
		return EXIT_REFUSED;
	}
	if (fd < 0)
		return log_sys(fd, "cannot open '%s/%s'", home, rel);
	if (fstat(fd, &st) < 0)
		return log_sys(errno, "cannot stat '%s/%s'", home, rel);
	if (S_ISREG(st.st_mode))
		e->is_file = true;
	else if (!S_ISDIR(st.st_mode)) {
		log_error("'%s': volume-subpath '%s' is neither a directory nor a regular file", e->spec, e->v.subpath);
		return EXIT_REFUSED;
	}
	if (asprintf(&e->source, "%s/%s", home, rel) < 0)
		return log_sys(ENOMEM, "out of memory");
	return 0;
}

static int new_tag(struct entry *ents, int n, int i)
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
		const char *leaf = strrchr(ents[i].source, '/') + 1;
		unlinkat(ents[i].v.kind == VOL_NAMED ? namedfd : anonfd, leaf, AT_REMOVEDIR);
		ents[i].created = false;
	}
}

static int materialise(const char *home, struct entry *ents, int n)
{
	cleanup_free char *named = NULL, *anon = NULL, *failed = NULL;
	cleanup_close int namedfd = -1, anonfd = -1;
	int r;

	if (asprintf(&named, "%s/volumes/named", home) < 0 || asprintf(&anon, "%s/volumes/anonymous", home) < 0)
		return log_sys(ENOMEM, "out of memory");
	if ((r = mkdir_p_0700(named, &failed)) < 0 || (r = mkdir_p_0700(anon, &failed)) < 0)
		return log_sys(r, "cannot create '%s'", failed ? failed : home);
	namedfd = open(named, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	anonfd = open(anon, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (namedfd < 0 || anonfd < 0)
		return log_sys(errno, "cannot open '%s'", namedfd < 0 ? named : anon);

	for (int i = 0; i < n; i++) {
		struct entry *e = &ents[i];
		if (e->source)
			continue; /* a subpath: it exists already */
		if (e->v.kind == VOL_NAMED) {
			if (asprintf(&e->source, "%s/%s", named, e->v.name) < 0)
				goto nomem;
			if (mkdirat(namedfd, e->v.name, 0700) == 0)
				e->created = true;
			else if (errno != EEXIST) {
				r = log_sys(errno, "cannot create volume '%s'", e->source);
				goto fail;
			}
			/* existing or just made by a concurrent run: it must be a real directory */
			struct stat st;
			if (fstatat(namedfd, e->v.name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
				log_error("volume '%s' exists but is not a directory (a symlink or file at '%s')",
					  e->v.name, e->source);
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
			if (asprintf(&e->source, "%s/%s", anon, id) < 0)
				goto nomem;
			if (mkdirat(anonfd, id, 0700) < 0) {
				r = log_sys(errno, "cannot create volume '%s'", e->source);
				goto fail;
			}
			e->created = true;
		}
		log_debug("volume %s at '%s'%s", e->v.name, e->source, e->created ? " (created)" : "");
	}
	return 0;
nomem:
	r = log_sys(ENOMEM, "out of memory");
fail:
	rollback(namedfd, anonfd, ents, n);
	return r;
}

static struct json_object *entry_json(const struct entry *e)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "spec", json_object_new_string(e->spec));
	json_object_object_add(o, "kind", json_object_new_string(e->v.kind == VOL_NAMED ? "named" : "anonymous"));
	json_object_object_add(o, "name", json_object_new_string(e->v.name));
	json_object_object_add(o, "source", json_object_new_string(e->source));
	json_object_object_add(o, "target", json_object_new_string(e->v.target));
	json_object_object_add(o, "readonly", json_object_new_boolean(e->v.readonly));
	json_object_object_add(o, "type", json_object_new_string(e->is_file ? "file" : "directory"));
	if (e->v.subpath[0])
		json_object_object_add(o, "subpath", json_object_new_string(e->v.subpath));
	json_object_object_add(o, "tag", json_object_new_string(e->tag));
	return o;
}

static int run_specs(const char *home_in)
{
	cleanup_free char *home = NULL;
	cleanup_free struct entry *ents = NULL;
	cleanup_close int homefd = -1;
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
			if (strlen(specs[i]) > 100)
				log_error("'%.60s...': %s", specs[i], err);
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
	{
		char canon[PATH_MAX];
		if (realpath(home_in, canon)) {
			home = strdup(canon);
			homefd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
		} else if (errno == ENOENT)
			home = strdup(home_in); /* created below; nothing in it yet */
		else {
			r = log_sys(errno, "cannot resolve home '%s'", home_in);
			goto out;
		}
		if (!home) {
			r = log_sys(ENOMEM, "out of memory");
			goto out;
		}
		if (home[0] != '/') {
			log_error("home '%s' must be an absolute path", home);
			r = EXIT_USAGE;
			goto out;
		}
	}
	for (int i = 0; i < n; i++) {
		struct entry *e = &ents[i];
		if (e->v.kind != VOL_NAMED || homefd < 0)
			continue;
		if (e->v.subpath[0]) {
			if ((r = check_subpath(homefd, home, e)) != 0)
				bad = bad ? bad : r;
			continue;
		}
		struct stat st;
		char rel[128];
		snprintf(rel, sizeof(rel), "volumes/named/%s", e->v.name);
		if (fstatat(homefd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
			log_error("'%s': volume '%s' exists but is not a directory (a symlink or file at '%s/%s')",
				  e->spec, e->v.name, home, rel);
			bad = bad ? bad : EXIT_REFUSED;
		}
	}
	for (int i = 0; i < n; i++)
		if (ents[i].v.subpath[0] && homefd < 0) {
			log_error("'%s': volume-subpath '%s' does not exist in volume '%s'", ents[i].spec,
				  ents[i].v.subpath, ents[i].v.name);
			bad = EXIT_REFUSED;
		}
	if (bad) {
		r = bad;
		goto out;
	}
	for (int i = 0; i < n; i++)
		if ((r = new_tag(ents, n, i)) != 0)
			goto out;
	/* 3. create (or, with --dry-run, only name) the directories */
	if (arg.dry_run) {
		for (int i = 0; i < n; i++) {
			if (ents[i].source)
				continue;
			if (ents[i].v.kind == VOL_ANONYMOUS) {
				char id[27];
				if ((r = ulid_new(id)) < 0) {
					r = log_sys(r, "cannot make a volume id");
					goto out;
				}
				snprintf(ents[i].v.name, sizeof(ents[i].v.name), "%s", id);
			}
			if (asprintf(&ents[i].source, "%s/volumes/%s/%s", home,
				     ents[i].v.kind == VOL_NAMED ? "named" : "anonymous", ents[i].v.name) < 0) {
				r = log_sys(ENOMEM, "out of memory");
				goto out;
			}
		}
	} else if ((r = materialise(home, ents, n)) != 0)
		goto out;
	for (int i = 0; i < n; i++) {
		cleanup_json struct json_object *o = entry_json(&ents[i]);
		if (!o || jsonl_write(stdout, o) < 0) {
			r = log_sys(o ? errno : ENOMEM, "cannot write output");
			goto out;
		}
	}
	r = 0;
out:
	for (int i = 0; ents && i < n; i++)
		free(ents[i].source);
out_specs:
	if (arg.from_stdin) {
		for (int i = 0; i < n; i++)
			free(specs[i]);
		free(specs);
	}
	return r;
}

/* ---- check mode (the runtime gate) -------------------------------------------- */

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static bool tag_valid(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > 36)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= '0' && t[i] <= '9') ||
		      t[i] == '_' || t[i] == '-'))
			return false;
	return true;
}

/* Verify one entry; on success replace its source with the canonical path. */
static int check_entry(struct json_object *o, const char *home, int lineno)
{
	const char *source = jstr(o, "source"), *type = jstr(o, "type"), *target = jstr(o, "target");
	const char *tag = jstr(o, "tag"), *kind = jstr(o, "kind");
	struct json_object *sub = NULL, *ro = NULL;
	char canon[PATH_MAX], norm[VOLSPEC_MAX_LEN], err[512];
	const char *roots[2] = { "anonymous", "named" };
	bool has_sub = json_object_object_get_ex(o, "subpath", &sub);
	struct stat st;

	if (!source || !type || !target || !tag) {
		log_error("line %d: entry needs string keys source, type, target and tag", lineno);
		return EXIT_REFUSED;
	}
	if (json_object_object_get_ex(o, "readonly", &ro) && !json_object_is_type(ro, json_type_boolean)) {
		log_error("line %d: readonly must be true or false", lineno);
		return EXIT_REFUSED;
	}
	if (strcmp(type, "directory") != 0 && strcmp(type, "file") != 0) {
		log_error("line %d: type must be 'directory' or 'file', not '%s'", lineno, type);
		return EXIT_REFUSED;
	}
	if (!tag_valid(tag)) {
		log_error("line %d: tag '%s' must be 1 to 36 characters of [A-Za-z0-9_-]", lineno, tag);
		return EXIT_REFUSED;
	}
	{
		struct volspec dummy;
		char spec[VOLSPEC_MAX_LEN + 8];
		snprintf(spec, sizeof(spec), "%s", target);
		if (volspec_parse(spec, &dummy, err, sizeof(err)) < 0 || dummy.kind != VOL_ANONYMOUS) {
			log_error("line %d: target '%s': %s", lineno, target, dummy.kind != VOL_ANONYMOUS ? "must be an absolute guest path" : err);
			return EXIT_REFUSED;
		}
		snprintf(norm, sizeof(norm), "%s", dummy.target);
	}
	if (!realpath(source, canon)) {
		log_error("line %d: volume source '%s': %s; managed roots: '%s/volumes/anonymous' and '%s/volumes/named'",
			  lineno, source, strerror(errno), home, home);
		return EXIT_REFUSED;
	}
	int which = -1;
	const char *rest = NULL;
	for (int k = 0; k < 2; k++) {
		char root[PATH_MAX + 32];
		snprintf(root, sizeof(root), "%s/volumes/%s/", home, roots[k]);
		if (strncmp(canon, root, strlen(root)) == 0) {
			which = k;
			rest = canon + strlen(root);
		}
	}
	/* exactly one component below a root, or deeper only with a subpath */
	size_t depth = 0;
	if (rest && *rest) {
		depth = 1;
		for (const char *c = rest; *c; c++)
			depth += *c == '/';
	}
	if (which < 0 || depth == 0 || (!has_sub && depth != 1) || (has_sub && depth < 2)) {
		log_error("line %d: volume source '%s' (resolved '%s') is not %s; managed roots: "
			  "'%s/volumes/anonymous' and '%s/volumes/named'",
			  lineno, source, canon,
			  has_sub ? "beneath a boxkit-managed volume" : "a boxkit-managed volume directory", home, home);
		return EXIT_REFUSED;
	}
	if (kind && strcmp(kind, roots[which]) != 0) {
		log_error("line %d: volume source '%s' is under the %s root but kind is '%s'", lineno, canon,
			  roots[which], kind);
		return EXIT_REFUSED;
	}
	if (stat(canon, &st) < 0) {
		log_error("line %d: volume source '%s': %s", lineno, canon, strerror(errno));
		return EXIT_REFUSED;
	}
	if ((strcmp(type, "file") == 0 && !S_ISREG(st.st_mode)) ||
	    (strcmp(type, "directory") == 0 && !S_ISDIR(st.st_mode))) {
		log_error("line %d: volume source '%s' is not a %s as its type says; managed roots: "
			  "'%s/volumes/anonymous' and '%s/volumes/named'",
			  lineno, canon, type, home, home);
		return EXIT_REFUSED;
	}
	json_object_object_add(o, "source", json_object_new_string(canon));
	json_object_object_add(o, "target", json_object_new_string(norm));
	return 0;
}

static int run_check(const char *home_in)
{
	cleanup_fclose FILE *in_owned = NULL;
	FILE *in = stdin;
	char home[PATH_MAX];
	char *line = NULL;
	struct json_object *objs[MAX_SPECS] = { 0 };
	int n = 0, lineno = 0, r = 0;
	ssize_t len;

	if (!realpath(home_in, home)) {
		log_error("home '%s': %s; nothing is managed there", home_in, strerror(errno));
		return EXIT_REFUSED;
	}
	if (strcmp(arg.check_file, "-") != 0) {
		in_owned = fopen(arg.check_file, "re");
		if (!in_owned)
			return log_sys(errno, "cannot open '%s'", arg.check_file);
		in = in_owned;
	}
	line = malloc(MAX_JSON_LINE + 1);
	if (!line)
		return log_sys(ENOMEM, "out of memory");
	while ((len = read_line_limited(in, line, MAX_JSON_LINE + 1)) != 0) {
		lineno++;
		if (len == -E2BIG) {
			log_error("line %d: longer than %d bytes", lineno, MAX_JSON_LINE);
			r = EXIT_REFUSED;
			break;
		}
		if (len < 0) {
			r = log_sys((int)len, "cannot read input");
			break;
		}
		if (!line[0])
			continue;
		if (n == MAX_SPECS) {
			log_error("more than %d entries", MAX_SPECS);
			r = EXIT_REFUSED;
			break;
		}
		struct json_tokener *tok = json_tokener_new_ex(MAX_JSON_DEPTH);
		if (!tok) {
			r = log_sys(ENOMEM, "out of memory");
			break;
		}
		struct json_object *o = json_tokener_parse_ex(tok, line, (int)strlen(line));
		enum json_tokener_error jerr = json_tokener_get_error(tok);
		size_t used = json_tokener_get_parse_end(tok);
		json_tokener_free(tok);
		if (!o || jerr != json_tokener_success || used != strlen(line) ||
		    !json_object_is_type(o, json_type_object)) {
			log_error("line %d: not one JSON object: %s", lineno,
				  jerr != json_tokener_success ? json_tokener_error_desc(jerr) : "trailing data or not an object");
			json_object_put(o);
			r = EXIT_REFUSED;
			continue;
		}
		objs[n++] = o;
		int c = check_entry(o, home, lineno);
		if (c)
			r = r ? r : c;
	}
	free(line);
	if (r == 0) {
		for (int i = 0; i < n && r == 0; i++)
			for (int j = 0; j < i; j++)
				if (!strcmp(jstr(objs[i], "target"), jstr(objs[j], "target")) ||
				    !strcmp(jstr(objs[i], "tag"), jstr(objs[j], "tag"))) {
					log_error("entries %d and %d share a target or a tag", j + 1, i + 1);
					r = EXIT_REFUSED;
					break;
				}
	}
	for (int i = 0; i < n; i++) {
		if (r == 0 && jsonl_write(stdout, objs[i]) < 0)
			r = log_sys(errno, "cannot write output");
		json_object_put(objs[i]);
	}
	return r;
}

int main(int argc, char **argv)
{
	cleanup_free char *home = NULL;
	int r;

	log_init(argv[0]);
	if (parse_argv(argc, argv) < 0)
		return EXIT_USAGE;
	r = boxkit_home(arg.home, &home);
	if (r < 0) {
		log_error("cannot find the boxkit home: set --home, BOXKIT_HOME or HOME");
		return EXIT_USAGE;
	}
	r = arg.check ? run_check(home) : run_specs(home);
	if (close_stdout() < 0 && r == 0)
		r = log_sys(errno ? errno : EIO, "cannot write stdout");
	return r;
}
