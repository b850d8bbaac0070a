run-record_PKGS := json-c
