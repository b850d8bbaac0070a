volume-tar_PKGS := json-c libarchive
