boxkit-runtime_PKGS := json-c
