/* SPDX-License-Identifier: MIT */
#include "common.h"

#include <string.h>

int jsonl_write(FILE *f, struct json_object *obj)
{
	const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!s)
		return -ENOMEM;
	if (fputs(s, f) == EOF || fputc('\n', f) == EOF)
		return errno ? -errno : -EIO;
	return 0;
}

int close_stdout(void)
{
	int err = 0;
	errno = 0;
	if (fflush(stdout) != 0)
		err = errno ? errno : EIO;
	if (ferror(stdout) && !err)
		err = EIO;
	if (fclose(stdout) != 0 && !err && errno != EBADF)
		err = errno ? errno : EIO;
	return -err;
}

ssize_t read_line_limited(FILE *f, char *buf, size_t max)
{
	size_t n = 0;
	int c;
	bool too_long = false;

	while ((c = getc(f)) != EOF) {
		if (c == '\n')
			break;
		if (n + 1 >= max) {
			too_long = true;
			continue;
		}
		buf[n++] = (char)c;
	}
	buf[n] = '\0';
	if (too_long)
		return -E2BIG;
	if (c == EOF && n == 0)
		return ferror(f) ? -EIO : 0;

	return n == 0 ? 1 : (ssize_t)n;
}
