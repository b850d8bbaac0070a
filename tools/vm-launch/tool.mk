vm-launch_PKGS := json-c libseccomp libcap libcrypto
