vfsd-cap-install_PKGS := json-c libcap libcrypto
