box-ctl_PKGS := json-c
