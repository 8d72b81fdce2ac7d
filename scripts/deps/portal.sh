# The portal's browser tests (tests/portal): Debian's Chromium driven by npm's playwright-core,
# against npm's oidc-provider as the OpenID Connect provider (installed by tests/portal/run.sh
# from its package-lock.json); pdftotext reads the receipt they download.
need_deb chromium chromium
need_deb pdftotext poppler-utils
# radclient (FreeRADIUS): the issue scenario also logs in over RADIUS.
need_deb radclient freeradius-utils
need_deb node nodejs
# openssl: the CA and certificate of the gRPC listener the browser tests run with [tls].
need_deb openssl openssl
need_deb npm npm
# A font for the screenshots (Chromium installed without its recommended packages).
need_deb_file /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf fonts-dejavu-core
