# radclient/radtest (FreeRADIUS) and pyrad: the independent RADIUS clients the front end is checked against.
need_deb radclient freeradius-utils
need_pip pyrad pyrad
