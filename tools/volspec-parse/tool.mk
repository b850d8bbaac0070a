volspec-parse_PKGS := json-c
