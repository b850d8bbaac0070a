oci-spec_PKGS := json-c libcap libseccomp
