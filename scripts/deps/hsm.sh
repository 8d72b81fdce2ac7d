# SoftHSM2: the PKCS#11 module the HSM master key tests initialise their own token in.
need_deb softhsm2-util softhsm2
need_deb_file /usr/lib/softhsm/libsofthsm2.so softhsm2
