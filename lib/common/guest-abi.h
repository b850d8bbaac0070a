/* SPDX-License-Identifier: MIT */
/* The guest ABI: what the host side and the guest init agree on. Header-only
 * (the static guest init includes it without the rest of lib/common). */
#ifndef BOXKIT_GUEST_ABI_H
#define BOXKIT_GUEST_ABI_H

/* guest paths, made by the guest init */
#define GUEST_RUN_DIR "/run/boxkit"
#define GUEST_VOLUME_DIR GUEST_RUN_DIR "/volumes" /* a directory share: <dir>/<tag> */
#define GUEST_FILE_DIR GUEST_RUN_DIR "/files"	  /* a file mount: <dir>/<tag> */
#define GUEST_BUNDLE GUEST_RUN_DIR "/bundle"
/* the guest init binary on the system image; oci-spec --init binds it into
 * the container as its PID 1 */
#define GUEST_INIT "/sbin/boxkit-init"
#define CONTAINER_INIT "/.boxkit-init"
#endif
