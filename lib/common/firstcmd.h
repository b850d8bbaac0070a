/* SPDX-License-Identifier: MIT */
/* The config's first command as an EXEC spec (lib/common/guest-abi.h), for
 * the guest init (a cold run's stream 0) and vm-launch (a warm run's stream
 * 0, sent to a restored copy): one builder, so both runs start the same
 * process. Header-only, json-c: the static guest init includes it. */
#ifndef BOXKIT_FIRSTCMD_H
#define BOXKIT_FIRSTCMD_H
#include "guest-abi.h"

#include <json-c/json.h>
#include <stdbool.h>

/* The config's process is boxkit's container init (oci-spec --init):
 * [CONTAINER_INIT, CONTAINER_INIT_WORKLOAD, CMD...]. The spec: CMD, the
 * process's env and cwd, the terminal. NULL when the config's process is
 * not a workload (serve mode, or not boxkit's init). */
static inline struct json_object *first_command_spec(struct json_object *cfg, bool tty, int rows, int cols)
{
	struct json_object *proc, *args, *v;
	if (!json_object_object_get_ex(cfg, "process", &proc) || !json_object_object_get_ex(proc, "args", &args) ||
	    !json_object_is_type(args, json_type_array) || json_object_array_length(args) < 3)
		return NULL;
	const char *a0 = json_object_get_string(json_object_array_get_idx(args, 0));
	const char *a1 = json_object_get_string(json_object_array_get_idx(args, 1));
	if (!a0 || !a1 || strcmp(a0, CONTAINER_INIT) || strcmp(a1, CONTAINER_INIT_WORKLOAD))
		return NULL;
	struct json_object *spec = json_object_new_object(), *cmd = json_object_new_array();
	for (size_t i = 2; i < json_object_array_length(args); i++)
		json_object_array_add(cmd, json_object_get(json_object_array_get_idx(args, i)));
	json_object_object_add(spec, "args", cmd);
	if (json_object_object_get_ex(proc, "env", &v))
		json_object_object_add(spec, "env", json_object_get(v));
	if (json_object_object_get_ex(proc, "cwd", &v))
		json_object_object_add(spec, "cwd", json_object_get(v));
	json_object_object_add(spec, "tty", json_object_new_boolean(tty));
	json_object_object_add(spec, "rows", json_object_new_int(rows));
	json_object_object_add(spec, "cols", json_object_new_int(cols));
	return spec;
}

/* The same config as a saved VM's: the container init serves, with nothing
 * of any one run in it (no command, an empty environment, /), so no copy
 * learns another run's. The warm key hashes what is left. */
static inline void config_make_serving(struct json_object *cfg)
{
	struct json_object *proc;
	if (!json_object_object_get_ex(cfg, "process", &proc))
		return;
	struct json_object *serve = json_object_new_array();
	json_object_array_add(serve, json_object_new_string(CONTAINER_INIT));
	json_object_array_add(serve, json_object_new_string(CONTAINER_INIT_SERVE));
	json_object_object_add(proc, "args", serve);
	json_object_object_add(proc, "env", json_object_new_array());
	json_object_object_add(proc, "cwd", json_object_new_string("/"));
	json_object_object_add(proc, "terminal", json_object_new_boolean(0));
}
#endif
