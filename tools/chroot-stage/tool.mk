chroot-stage_PKGS := json-c libcap
