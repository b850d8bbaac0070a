reserve_PKGS := json-c
