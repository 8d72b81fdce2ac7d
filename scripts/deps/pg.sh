# The PostgreSQL store tests (crates/store/tests/it/pg.rs) start a throwaway cluster with the
# server's own initdb and pg_ctl, found on the PATH or under /usr/lib/postgresql/*/bin.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_deb initdb postgresql
fi
# openssl makes the test CA and server certificate of the TLS test.
if ! command -v openssl >/dev/null 2>&1; then
  need_deb openssl openssl
fi
