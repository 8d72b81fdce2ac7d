//! Shared helpers: stores in temporary directories and an independent HOTP/TOTP implementation
//! (the `hmac` crate) to compute the codes a real token would show.

use hmac::{Hmac, KeyInit, Mac};
use okey_store::*;

pub const SEED: &[u8] = b"12345678901234567890";

pub fn actor() -> Actor {
    Actor::new("tester", "admin")
}

pub fn key_bytes(b: u8) -> Zeroizing<[u8; 32]> {
    Zeroizing::new([b; 32])
}

pub fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        master_key: MasterKeySource::Bytes(key_bytes(7)),
        ..StoreConfig::in_dir(dir)
    }
}

pub fn open(dir: &std::path::Path) -> Store {
    Store::open(config(dir)).expect("open store")
}

/// RFC 4226 HOTP with the `hmac` crate (SHA-1), independent of okey-otp.
pub fn hotp(seed: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(seed).expect("key");
    mac.update(&counter.to_be_bytes());
    let d = mac.finalize().into_bytes();
    let off = usize::from(d[19] & 0x0f);
    let v = u32::from_be_bytes([d[off] & 0x7f, d[off + 1], d[off + 2], d[off + 3]]);
    format!(
        "{:0w$}",
        u64::from(v) % 10u64.pow(digits),
        w = digits as usize
    )
}

/// RFC 6238 TOTP (SHA-1, T0 = 0).
pub fn totp(seed: &[u8], unix: u64, step: u64, digits: u32) -> String {
    hotp(seed, unix / step, digits)
}

pub fn hotp_token(serial: &str) -> NewToken {
    NewToken {
        valid_until: None,
        serial: serial.into(),
        kind: TokenKind::Hardware,
        otp: OtpKind::Hotp,
        algorithm: Algorithm::Sha1,
        digits: 6,
        seed: Zeroizing::new(SEED.to_vec()),
        counter: 0,
        drift: 0,
        status: TokenStatus::Active,
        holder: None,
        description: None,
    }
}

pub fn totp_token(serial: &str) -> NewToken {
    NewToken {
        valid_until: None,
        otp: OtpKind::Totp { step: 30, t0: 0 },
        kind: TokenKind::Software,
        ..hotp_token(serial)
    }
}

pub async fn verify(store: &Store, serial: &str, passcode: &str, now: u64) -> VerifyOutcome {
    store
        .verify(VerifyRequest {
            subject: Subject::Serial(serial),
            passcode,
            now,
            actor: &actor(),
            client: "test",
        })
        .await
        .expect("verify")
}

pub async fn verify_user(store: &Store, user: &str, passcode: &str, now: u64) -> VerifyOutcome {
    store
        .verify(VerifyRequest {
            subject: Subject::User(user),
            passcode,
            now,
            actor: &actor(),
            client: "test",
        })
        .await
        .expect("verify")
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The database under a test's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A test's store location: a private directory (the SQLite database, or only the key file)
/// and, for PostgreSQL, a fresh database on the shared throwaway cluster.
pub struct Db {
    pub kind: Kind,
    dir: tempfile::TempDir,
    url: Option<String>,
}

impl Db {
    /// None (the cluster says why) when PostgreSQL is wanted but absent.
    pub fn new(kind: Kind) -> Option<Db> {
        let dir = tempfile::tempdir().expect("dir");
        let url = match kind {
            Kind::Sqlite => None,
            Kind::Postgres => Some(crate::pg::Cluster::shared()?.fresh_db()),
        };
        Some(Db { kind, dir, url })
    }

    pub fn config(&self) -> StoreConfig {
        let mut c = config(self.dir.path());
        if let Some(url) = &self.url {
            c.backend = StoreBackend::Postgres(Zeroizing::new(url.clone()));
        }
        c
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The PostgreSQL connection string (None for SQLite).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    pub fn open(&self) -> Store {
        Store::open(self.config()).expect("open store")
    }

    /// Run SQL on the database behind the store, around okey (tampering tests).
    pub fn exec(&self, sql: &str) {
        match &self.url {
            None => rusqlite::Connection::open(self.dir.path().join("okey.db"))
                .expect("db")
                .execute_batch(sql)
                .expect("sql"),
            // On a thread of its own: the synchronous client refuses to run inside a runtime.
            Some(url) => std::thread::scope(|t| {
                t.spawn(|| {
                    postgres::Client::connect(url, postgres::NoTls)
                        .expect("connect")
                        .batch_execute(sql)
                        .expect("sql")
                })
                .join()
                .expect("sql thread")
            }),
        }
    }
}

/// Run the test function `$name(&Db)` once per backend: `$name::sqlite` and `$name::postgres`.
macro_rules! both {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                let db = crate::common::Db::new(crate::common::Kind::Sqlite).expect("sqlite");
                super::$name(&db);
            }
            #[test]
            fn postgres() {
                match crate::common::Db::new(crate::common::Kind::Postgres) {
                    Some(db) => super::$name(&db),
                    None => eprintln!("skipped: the PostgreSQL server binaries are not installed"),
                }
            }
        }
    )+};
}
pub(crate) use both;
