/* SPDX-License-Identifier: MIT */
/* The guest ABI: everything the host side (vm-launch) and the guest init
 * agree on, written once. Header-only: the static guest init includes it
 * without the rest of lib/common.
 *
 * The control channel is one virtio-serial port, "boxkit.ctl", carrying
 * frames:
 *
 *     [type:1][stream:4 LE][length:4 LE][payload: length bytes]
 *
 * `stream` names a process in the guest: 0 is the run's first command (the
 * OCI config's), a process started later in the same VM (exec) gets its own
 * number from the host (1 to GUEST_STREAMS_MAX-1), so several processes each
 * have their own stdin, stdout, stderr, window size and exit status on the
 * one channel. Frames about the whole VM use stream 0. Integers are little
 * endian. A frame is at most FRAME_MAX bytes of payload (the plan); data
 * frames carry at most FRAME_DATA_MAX.
 *
 * The conversation (protocol version GUEST_PROTO_VERSION):
 *   guest -> host  HELLO  {"proto":2}: the init is up
 *   host -> guest  PLAN   {"version":2,"config":{OCI config},"volumes":[...],
 *                         "keep":bool,"tty":bool,"rows":N,"cols":N,
 *                         "seed":"HEX",
 *                         "net":{"address","prefix","gateway","mtu","dns":[],
 *                         "files":bool}}
 *                  ("net" only with a network device: the guest init sets
 *                  up eth0 (prefix 1 to 32; the default route via
 *                  "gateway", none when it is left out) and the
 *                  container's /etc/resolv.conf, /etc/hosts and
 *                  /etc/hostname from it, unless "files" is false (an
 *                  engine's namespace, --network netns: the engine
 *                  provides those files; absent means true); the
 *                  container shares the VM's network namespace)
 *   guest -> host  READY  the container is up: execs may come (keep mode)
 *   host -> guest  EXEC   (stream s) {"args":[...],"env":[...],"cwd":"/",
 *                         "tty":bool,"rows":N,"cols":N,"user":{"uid":N,
 *                         "gid":N,"additionalGids":[N,...]}}: start a process
 *                         ("user" optional: the container's own otherwise)
 *   guest -> host  WINDOW (stream s, 4 bytes: n) the host may send n more
 *                  stdin bytes to s (the first window is STDIN_WINDOW,
 *                  granted when the stream starts)
 *   host -> guest  STDIN (bytes, never beyond the window), STDIN_EOF,
 *                  SIGNAL (4 bytes: the signal), WINSIZE (2+2 bytes: rows,
 *                  cols), OUT_WINDOW (4 bytes: n) the guest may send n more
 *                  bytes of s's stdout+stderr (the first window is
 *                  OUTPUT_WINDOW, implied when the stream starts)
 *   guest -> host  STDOUT, STDERR (bytes, within the output window), EXIT
 *                  (4 bytes: the status, 0-255, 128+N for signal N), FAIL (a
 *                  message: on stream 0 the init failed and the VM goes; on
 *                  another stream, that exec could not start)
 *   host -> guest  SHUTDOWN (4 bytes: grace in ms): TERM every process, KILL
 *                  what is left after the grace, then power off
 * A saved VM (warm starts): the host boots a sandbox in keep mode with no
 * first command, saves it with QEMU's migration once READY came, and later
 * restores copies of it. Before anything else reaches a copy:
 *   host -> guest  RESUME (RESUME_HDR bytes: the host's CLOCK_REALTIME as
 *                  seconds (8 LE) and nanoseconds (4 LE), flags (4 LE:
 *                  RESUME_KEEP), then RESUME_ENTROPY_MIN to
 *                  RESUME_ENTROPY_MAX bytes from the host's getrandom): the
 *                  guest sets its clock, mixes the bytes into its pool and
 *                  reseeds its CRNG at once (so no two copies share random
 *                  state); EXEC may then name stream 0, once (the run's
 *                  command, or a sandbox's first one); without RESUME_KEEP
 *                  the copy is a run: stream 0's end powers the VM off
 *   guest -> host  RESUMED (empty): done; the copy is alive
 * In run mode (keep false) the VM powers off once stream 0 has exited; in
 * keep mode it stays up until SHUTDOWN. Both directions are credit-based, so
 * neither side ever has to buffer more than it granted: the guest always
 * reads the channel (a SIGNAL is never stuck behind stdin nobody reads), and
 * the host always reads it too (a client that stops reading stalls only its
 * own process). Each side refuses a version it does not know, with a
 * message naming both. */
#ifndef BOXKIT_GUEST_ABI_H
#define BOXKIT_GUEST_ABI_H
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GUEST_PROTO_VERSION 2 /* the frames */
#define GUEST_PLAN_VERSION 2  /* the plan's JSON */
#define FRAME_PORT_NAME "boxkit.ctl"
/* the plan's network keys */
#define PLAN_NET "net"
/* the plan's "seed": PLAN_SEED_BYTES bytes from the host's getrandom, as
 * hex; the guest init credits them to its pool before anything else, so
 * its CRNG is ready at once (getrandom never waits for boot entropy) */
#define PLAN_SEED "seed"
#define PLAN_SEED_BYTES 64
#define PLAN_NET_ADDRESS "address"
#define PLAN_NET_PREFIX "prefix"
#define PLAN_NET_GATEWAY "gateway"
#define PLAN_NET_MTU "mtu"
#define PLAN_NET_DNS "dns"
#define PLAN_NET_FILES "files" /* false: leave /etc/hosts, hostname, resolv.conf alone */
#define GUEST_NET_IF "eth0"
/* Files of the container's /etc given by the host (an OCI runtime passes
 * the engine's /etc/hosts, /etc/hostname, /etc/resolv.conf): annotations of
 * the OCI config, CONFIG_ETC_PREFIX + NAME -> the file's content (at most
 * CONFIG_ETC_MAX bytes, no NUL); the guest init writes each into the
 * container's /etc before crun starts it (after the network's own). */
#define CONFIG_ETC_PREFIX "org.boxkit.etc."
#define CONFIG_ETC_MAX (64u << 10)
#define CONFIG_ETC_FILES 3
static inline int config_etc_name_valid(const char *n, size_t len)
{
	static const char *const names[CONFIG_ETC_FILES] = { "hosts", "hostname", "resolv.conf" };
	for (int i = 0; i < CONFIG_ETC_FILES; i++)
		if (strlen(names[i]) == len && !strncmp(names[i], n, len))
			return 1;
	return 0;
}
#define FRAME_HDR 9
#define FRAME_MAX (1u << 20)	  /* a plan */
#define FRAME_DATA_MAX (1u << 16) /* stdin, stdout, stderr */
#define STDIN_WINDOW (1u << 16)	  /* what the guest init buffers per process */
#define OUTPUT_WINDOW (1u << 16)  /* what the host buffers per process (stdout+stderr) */
#define GUEST_STREAMS_MAX 64	  /* processes at once, stream 0 included */
#define GUEST_EXEC_MAX (1u << 16) /* an EXEC frame's JSON */
#define GUEST_EXEC_GROUPS_MAX 64  /* an EXEC's "user": supplementary groups */

enum frame_type {
	/* guest -> host */
	FR_HELLO = 'H',
	FR_WINDOW = 'W',
	FR_STDOUT = 'O',
	FR_STDERR = 'R',
	FR_EXIT = 'X',
	FR_FAIL = 'F',
	FR_READY = 'Y',
	FR_RESUMED = 'M',
	/* host -> guest */
	FR_EXEC = 'C',
	FR_OUT_WINDOW = 'G',
	FR_SHUTDOWN = 'Q',
	FR_PLAN = 'P',
	FR_STDIN = 'I',
	FR_STDIN_EOF = 'E',
	FR_SIGNAL = 'S',
	FR_WINSIZE = 'Z',
	FR_RESUME = 'U',
};
#define RESUME_HDR 16
#define RESUME_KEEP 1u /* a sandbox: up until SHUTDOWN */
#define RESUME_ENTROPY_MIN 32
#define RESUME_ENTROPY_MAX 256

/* guest paths, made by the guest init */
#define GUEST_RUN_DIR "/run/boxkit"
#define GUEST_VOLUME_DIR GUEST_RUN_DIR "/volumes" /* a directory share: <dir>/<tag> */
#define GUEST_FILE_DIR GUEST_RUN_DIR "/files"	  /* a file mount: <dir>/<tag> */
#define GUEST_BUNDLE GUEST_RUN_DIR "/bundle"
/* the guest init binary on the system image; oci-spec --init binds it into
 * the container as its PID 1 */
#define GUEST_INIT "/sbin/boxkit-init"
#define CONTAINER_INIT "/.boxkit-init"
/* the container init's modes (its first argument): run the command that
 * follows as the only process, or serve the guest init's execs */
#define CONTAINER_INIT_WORKLOAD "--workload"
#define CONTAINER_INIT_SERVE "--serve"

/* a volume's tag (its virtiofs tag and its guest directory's name): 1 to
 * GUEST_TAG_MAX characters of [A-Za-z0-9_-] */
#define GUEST_TAG_MAX 36
static inline int guest_tag_valid(const char *t, size_t n)
{
	if (n == 0 || n > GUEST_TAG_MAX || strlen(t) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= '0' && t[i] <= '9') ||
		      t[i] == '_' || t[i] == '-'))
			return 0;
	return 1;
}

static inline void le32_put(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}
static inline uint32_t le32_get(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A byte buffer with a hard capacity: what is read from, or queued for, one
 * descriptor. It never grows past cap. */
struct fbuf {
	unsigned char *data;
	size_t len, cap;
};

static inline int fbuf_init(struct fbuf *b, size_t cap)
{
	b->data = (unsigned char *)malloc(cap);
	b->len = 0;
	b->cap = cap;
	return b->data ? 0 : -ENOMEM;
}
static inline void fbuf_free(struct fbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
static inline size_t fbuf_room(const struct fbuf *b)
{
	return b->cap - b->len;
}
/* drop n bytes from the front */
static inline void fbuf_consume(struct fbuf *b, size_t n)
{
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}
/* Queue one frame; -ENOSPC when it does not fit (nothing queued). */
static inline int frame_put(struct fbuf *b, char type, uint32_t stream, const void *data, uint32_t len)
{
	if (fbuf_room(b) < FRAME_HDR + (size_t)len)
		return -ENOSPC;
	unsigned char *p = b->data + b->len;
	p[0] = (unsigned char)type;
	le32_put(p + 1, stream);
	le32_put(p + 5, len);
	if (len)
		memcpy(p + FRAME_HDR, data, len);
	b->len += FRAME_HDR + len;
	return 0;
}

struct frame {
	char type;
	uint32_t stream;
	uint32_t len;
	const unsigned char *payload; /* points into the buffer, valid until it is consumed */
};

/* Look at the first frame in b: 1 and *f when complete (then the caller
 * consumes FRAME_HDR + f->len bytes), 0 when incomplete, -EPROTO when its
 * length is over max. */
static inline int frame_peek(const struct fbuf *b, uint32_t max, struct frame *f)
{
	if (b->len < FRAME_HDR)
		return 0;
	uint32_t n = le32_get(b->data + 5);
	if (n > max)
		return -EPROTO;
	if (b->len < FRAME_HDR + (size_t)n)
		return 0;
	f->type = (char)b->data[0];
	f->stream = le32_get(b->data + 1);
	f->len = n;
	f->payload = b->data + FRAME_HDR;
	return 1;
}
#endif
