//! The PostgreSQL schema and transport against a real, throwaway PostgreSQL cluster started by
//! the test itself (`tests/pg_cluster.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};

use okey_store::{Store, StoreBackend, StoreConfig, StoreError, Zeroizing, pg};

#[path = "../../../../tests/pg_cluster.rs"]
mod cluster;
pub use cluster::Cluster;

fn connect(c: &Cluster) -> postgres::Client {
    postgres::Client::connect(&c.url(), postgres::NoTls).expect("connect")
}

fn tables(c: &mut postgres::Client) -> Vec<String> {
    c.query(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY 1",
        &[],
    )
    .expect("list tables")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn migrations_apply_once_and_record_the_version() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let mut c = connect(&cluster);
    assert_eq!(pg::schema_version(&mut c).expect("version"), 0);
    assert_eq!(pg::migrate(&mut c).expect("migrate"), 0);
    assert_eq!(
        pg::schema_version(&mut c).expect("version"),
        pg::SCHEMA_VERSION
    );
    // A second run finds the schema current and changes nothing.
    assert_eq!(
        pg::migrate(&mut c).expect("migrate again"),
        pg::SCHEMA_VERSION
    );
    let t = tables(&mut c);
    for want in [
        "api_keys",
        "audit",
        "data_keys",
        "key_custody",
        "key_history",
        "lot_delegates",
        "lot_orders",
        "lots",
        "okey_schema",
        "outbox",
        "people",
        "person_functions",
        "receipts",
        "secrets",
        "token_rows",
        "token_state",
        "units",
        "tokens",
    ] {
        assert!(t.iter().any(|x| x == want), "missing {want} in {t:?}");
    }
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let mut c = connect(&cluster);
    pg::migrate(&mut c).expect("migrate");
    c.execute(
        "UPDATE okey_schema SET version = $1",
        &[&(pg::SCHEMA_VERSION + 1)],
    )
    .expect("bump");
    let before = tables(&mut c);
    match pg::migrate(&mut c) {
        Err(okey_store::StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!(found, pg::SCHEMA_VERSION + 1);
            assert_eq!(supported, pg::SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert_eq!(tables(&mut c), before);
    assert_eq!(
        pg::schema_version(&mut c).expect("version"),
        pg::SCHEMA_VERSION + 1
    );
}

#[test]
fn nodes_migrating_at_once_apply_each_migration_once() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let nodes = 4;
    let barrier = Arc::new(Barrier::new(nodes));
    let url = cluster.url();
    let found: Vec<i64> = (0..nodes)
        .map(|_| {
            let b = barrier.clone();
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                b.wait();
                pg::migrate(&mut c).expect("migrate")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("node"))
        .collect();
    // Exactly one node found an empty database; every other found it already current.
    assert_eq!(found.iter().filter(|v| **v == 0).count(), 1, "{found:?}");
    assert_eq!(
        found.iter().filter(|v| **v == pg::SCHEMA_VERSION).count(),
        nodes - 1,
        "{found:?}"
    );
}

/// The compare-and-set on `token_state.version` that a verify commits with: when two nodes read
/// the same version and both try to advance the counter past the same code, PostgreSQL's
/// re-check of the WHERE clause after the row lock lets exactly one update through.
#[test]
fn two_nodes_advancing_one_counter_from_one_version_succeed_once() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let mut c = connect(&cluster);
    pg::migrate(&mut c).expect("migrate");
    c.batch_execute(
        "INSERT INTO tokens (serial, kind, otp, algorithm, digits, key_version, sealed_seed, \
         created_at) VALUES ('T1', 'hotp', 'hotp', 'sha1', 6, 1, '\\x00'::bytea, 0);
         INSERT INTO token_state (serial, counter, drift, failures, locked, status, updated_at, \
         version) VALUES ('T1', 0, 0, 0, 0, 'active', 0, 1);",
    )
    .expect("seed");
    let url = cluster.url();
    let rounds = 50;
    for round in 0..rounds {
        let barrier = Arc::new(Barrier::new(2));
        let accepted: u64 = (0..2)
            .map(|_| {
                let b = barrier.clone();
                let url = url.clone();
                std::thread::spawn(move || {
                    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                    let mut tx = c.transaction().expect("begin");
                    let row = tx
                        .query_one(
                            "SELECT counter, version FROM token_state WHERE serial = 'T1'",
                            &[],
                        )
                        .expect("read");
                    let (counter, version): (i64, i64) = (row.get(0), row.get(1));
                    b.wait();
                    let n = tx
                        .execute(
                            "UPDATE token_state SET counter = $1, version = version + 1 \
                             WHERE serial = 'T1' AND version = $2",
                            &[&(counter + 1), &version],
                        )
                        .expect("cas");
                    tx.commit().expect("commit");
                    n
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("node"))
            .sum();
        assert_eq!(
            accepted, 1,
            "round {round}: {accepted} nodes advanced the counter"
        );
    }
    let row = c
        .query_one(
            "SELECT counter, version FROM token_state WHERE serial = 'T1'",
            &[],
        )
        .expect("read");
    assert_eq!(row.get::<_, i64>(0), rounds);
    assert_eq!(row.get::<_, i64>(1), rounds + 1);
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (scripts/deps/notify.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate for 127.0.0.1 signed by it; returns the CA's PEM path.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    dir.join(format!("{name}.pem"))
}

/// okey talks TLS to a server that accepts nothing else, checks its certificate against the
/// configured CA, and refuses a server whose certificate another CA signed.
#[test]
fn tls_to_the_database_is_verified_against_the_configured_ca() {
    let certs = tempfile::tempdir().expect("dir");
    let d = certs.path();
    let ca = make_ca(d, "okey-test-ca");
    let other_ca = make_ca(d, "another-ca");
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "okey-test-ca.pem",
            "-CAkey",
            "okey-test-ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    );
    let Some(cluster) = Cluster::start_with(|c| {
        let data = c.data();
        for f in ["server.pem", "server.key"] {
            std::fs::copy(d.join(f), data.join(f)).expect("copy cert");
            c.give(&data.join(f));
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod key");
        // TLS or nothing, from anywhere.
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
        )
        .expect("hba");
        "-c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server.key".into()
    }) else {
        return;
    };
    let base = format!(
        "host=127.0.0.1 port={} user=okey dbname=postgres",
        cluster.port()
    );
    let cfg = |url: String| StoreConfig {
        backend: StoreBackend::Postgres(Zeroizing::new(url)),
        ..crate::common::config(certs.path())
    };
    // Verified TLS: the store opens and works.
    let s = Store::open(cfg(format!(
        "{base} sslmode=verify-full sslrootcert={}",
        ca.display()
    )))
    .expect("open over verified TLS");
    s.create_token(crate::common::hotp_token("TLS1"), &crate::common::actor())
        .expect("create");
    let o = crate::common::rt().block_on(crate::common::verify(
        &s,
        "TLS1",
        &crate::common::hotp(crate::common::SEED, 0, 6),
        1,
    ));
    assert!(o.accepted, "{o:?}");
    drop(s);
    // The same as a URL, sslmode=require: still verified.
    Store::open(cfg(format!(
        "postgresql://okey@127.0.0.1:{}/postgres?sslmode=require&sslrootcert={}",
        cluster.port(),
        ca.display()
    )))
    .expect("open over TLS from a URL");
    // A certificate from another CA is refused before anything is sent.
    let Err(err) = Store::open(cfg(format!(
        "{base} sslmode=verify-full sslrootcert={}",
        other_ca.display()
    ))) else {
        panic!("another CA's server is refused");
    };
    assert!(matches!(err, StoreError::Postgres(_)), "{err}");
    // Without TLS this server takes nothing (so the successes above were over TLS).
    let Err(err) = Store::open(cfg(format!("{base} sslmode=disable"))) else {
        panic!("plain refused");
    };
    assert!(matches!(err, StoreError::Postgres(_)), "{err}");
    // A CA file that is not one is a configuration error, not a silent fallback.
    std::fs::write(d.join("junk.pem"), "not a certificate").expect("junk");
    let Err(err) = Store::open(cfg(format!(
        "{base} sslmode=verify-full sslrootcert={}",
        d.join("junk.pem").display()
    ))) else {
        panic!("junk CA refused");
    };
    assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
}

/// The database restarts under a running node: requests during the outage fail with an error
/// (none is answered accepted), and the node recovers by itself, its reads and its writer
/// reconnecting, with the token's state and the audit chain intact.
#[test]
fn a_node_recovers_by_itself_after_the_database_restarts() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let s = Store::open(StoreConfig {
        backend: StoreBackend::Postgres(Zeroizing::new(cluster.fresh_db())),
        ..crate::common::config(cluster.data().parent().expect("cluster dir"))
    })
    .expect("open");
    s.create_token(crate::common::hotp_token("RS1"), &crate::common::actor())
        .expect("create");
    let rt = crate::common::rt();
    let code = |c| crate::common::hotp(crate::common::SEED, c, 6);
    assert!(
        rt.block_on(crate::common::verify(&s, "RS1", &code(0), 1))
            .accepted
    );
    cluster.restart();
    let mut accepted = None;
    for attempt in 0..50u64 {
        let r = rt.block_on(s.verify(okey_store::VerifyRequest {
            subject: okey_store::Subject::Serial("RS1"),
            passcode: &code(1),
            now: 2 + attempt,
            actor: &crate::common::actor(),
            client: "test",
        }));
        match r {
            Ok(o) => {
                accepted = Some(o);
                break;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
    let o = accepted.expect("the node answered again within ten seconds");
    assert!(o.accepted, "{o:?}");
    s.clear_cache();
    assert_eq!(s.token("RS1").expect("read after the restart").counter, 2);
    let report = s.audit_verify().expect("audit");
    assert!(report.ok(), "{report:?}");
}
