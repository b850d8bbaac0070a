/* SPDX-License-Identifier: MIT */
/* An exec request (lib/common/monitor-abi.h, from box-ctl) made into the
 * guest's EXEC spec (lib/common/guest-abi.h), once, for the monitor. */
#ifndef BOXKIT_EXECSPEC_H
#define BOXKIT_EXECSPEC_H
#include <json-c/json.h>
#include <stddef.h>

/* Check the request (len bytes, not NUL-terminated): a JSON object of at
 * most GUEST_EXEC_MAX bytes, no NUL byte, depth at most 16; "args" a
 * non-empty list of strings; "env" a list of NAME=VALUE strings (NAME of
 * [A-Za-z_][A-Za-z0-9_]*); "cwd" an absolute path; "tty" a boolean; "rows"
 * and "cols" 0 to 65535; "user" {"uid","gid","additionalGids"} (ids 0 to
 * 4294967294, at most GUEST_EXEC_GROUPS_MAX groups: the exec runs as that user,
 * which the container's init must be allowed to become); other keys ignored. Then build the spec: the
 * config's process environment with the request's on top (the same name
 * wins), the config's directory unless the request names one. 0 and *out
 * (malloc'd), or -EINVAL / -E2BIG / -ENOMEM with a message in err. */
int exec_spec_build(struct json_object *cfg, const char *req, size_t len, char **out, char *err, size_t errlen);
#endif
