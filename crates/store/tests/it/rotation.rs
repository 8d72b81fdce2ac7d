//! Master-key and data-key rotation, online, with verifies running.

use okey_store::backend::Backend as _;
use okey_store::*;

use crate::common::*;

#[test]
fn master_key_rotation_rewraps_and_the_old_key_stops_working() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let new_key = dir.path().join("new.key");
    {
        let s = Store::open(StoreConfig::in_dir(&data)).expect("open");
        s.create_token(hotp_token("M1"), &actor()).expect("create");
        s.rotate_master_key(MasterKeySource::File(new_key.clone()))
            .expect("rotate");
        // Still serving, without a restart.
        rt().block_on(async {
            assert!(verify(&s, "M1", &hotp(SEED, 0, 6), 1).await.accepted);
        });
    }
    assert_eq!(std::fs::metadata(&new_key).expect("new key").len(), 32);
    let e = Store::open(StoreConfig::in_dir(&data)).expect_err("old key");
    assert!(matches!(e, StoreError::WrongMasterKey), "{e}");
    let s = Store::open(StoreConfig {
        master_key: MasterKeySource::File(new_key),
        ..StoreConfig::in_dir(&data)
    })
    .expect("new key opens");
    rt().block_on(async {
        assert!(verify(&s, "M1", &hotp(SEED, 1, 6), 2).await.accepted);
    });
    assert!(s.audit_verify().expect("audit").ok());
}

#[test]
fn data_key_rotation_under_concurrent_verifies_loses_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let s = open(dir.path());
    let n = 2500usize;
    let batch: Vec<_> = (0..n).map(|i| hotp_token(&format!("R{i:05}"))).collect();
    s.import_tokens(batch, &actor()).expect("import");
    s.set_pin("R00000", Some(&Pin::new("9753").expect("pin")), &actor())
        .expect("pin");
    let mut ocra = hotp_token("OC");
    ocra.otp = OtpKind::Ocra {
        suite: "OCRA-1:HOTP-SHA1-6:QN08".into(),
    };
    s.create_token(ocra, &actor()).expect("create");
    let rt = rt();
    let accepted = rt.block_on(async {
        let rotation = {
            let s = s.clone();
            tokio::task::spawn_blocking(move || s.rotate_data_key())
        };
        let mut handles = Vec::new();
        for w in 0..8usize {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                let mut ok = 0u64;
                // Each worker walks its own tokens, three codes each, cache cold at first.
                for i in (w + 1..n).step_by(8).take(40) {
                    let serial = format!("R{i:05}");
                    for c in 0..3 {
                        let o = verify(&s, &serial, &hotp(SEED, c, 6), 5).await;
                        assert!(o.accepted, "{serial} counter {c}: {o:?}");
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut total = 0;
        for h in handles {
            total += h.await.expect("task");
        }
        let report = rotation.await.expect("join").expect("rotate");
        assert_eq!(report.new_version, 2);
        assert_eq!(report.resealed, n as u64 + 1);
        assert!(report.batches >= 3, "{report:?}");
        total
    });
    assert_eq!(accepted, 8 * 40 * 3);
    // Nothing lost: every verified token's counter is 3, the others 0.
    let moved = s
        .list_tokens(&TokenFilter::default(), None, 10_000)
        .expect("list")
        .iter()
        .filter(|t| t.counter == 3)
        .count();
    assert_eq!(moved, 8 * 40);
    // Cold cache: everything unseals under the new key, the pepper too.
    s.clear_cache();
    rt.block_on(async {
        let o = verify(&s, "R00000", &format!("9753{}", hotp(SEED, 0, 6)), 6).await;
        assert!(o.accepted, "{o:?}");
        let o = s
            .verify_ocra("OC", "00000000", "237653", 6, &actor(), "")
            .await
            .expect("ocra");
        assert!(o.accepted, "{o:?}");
    });
    drop(s);
    let db = rusqlite::Connection::open(dir.path().join("okey.db")).expect("db");
    let (keys, old): (i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM data_keys), \
             (SELECT count(*) FROM tokens WHERE key_version <> 2) + \
             (SELECT count(*) FROM secrets WHERE key_version <> 2)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("query");
    assert_eq!(
        (keys, old),
        (1, 0),
        "the old data key is gone and nothing uses it"
    );
    drop(db);
    let s = open(dir.path());
    rt.block_on(async {
        assert!(verify(&s, "R00001", &hotp(SEED, 3, 6), 7).await.accepted);
    });
    assert!(s.audit_verify().expect("audit").ok());
}

/// A backend that answers the next read of an armed serial with a row captured earlier: the
/// row a check read just before a rotation and a lock changed it.
struct StaleOnce {
    db: std::sync::Arc<sqlite::Sqlite>,
    stale: std::sync::Mutex<Vec<backend::TokenRow>>,
}

impl StaleOnce {
    fn arm(&self, row: backend::TokenRow) {
        self.stale.lock().expect("lock").push(row);
    }
}

impl backend::Backend for StaleOnce {
    fn write_session(&self) -> Result<Box<dyn backend::WriteTx>, StoreError> {
        self.db.write_session()
    }
    fn token(&self, serial: &str) -> Result<Option<backend::TokenRow>, StoreError> {
        let mut stale = self.stale.lock().expect("lock");
        if let Some(i) = stale.iter().position(|r| r.serial == serial) {
            return Ok(Some(stale.remove(i)));
        }
        drop(stale);
        self.db.token(serial)
    }
    fn tokens_of(&self, holder: &str) -> Result<Vec<backend::TokenRow>, StoreError> {
        self.db.tokens_of(holder)
    }
    fn list(
        &self,
        filter: &TokenFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<backend::TokenRow>, StoreError> {
        self.db.list(filter, after, limit)
    }
    fn token_count(&self) -> Result<u64, StoreError> {
        self.db.token_count()
    }
    fn data_keys(&self) -> Result<Vec<backend::DataKeyRow>, StoreError> {
        self.db.data_keys()
    }
    fn secret(&self, name: &str) -> Result<Option<(u32, Vec<u8>)>, StoreError> {
        self.db.secret(name)
    }
    fn audit_scan(
        &self,
        from_seq: u64,
        f: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError> {
        self.db.audit_scan(from_seq, f)
    }
    fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.db.audit_tail(limit)
    }
    fn api_key(&self, key_hash: &[u8; 32]) -> Result<Option<ApiPrincipal>, StoreError> {
        self.db.api_key(key_hash)
    }
    fn api_keys(&self) -> Result<Vec<(ApiPrincipal, [u8; 32])>, StoreError> {
        self.db.api_keys()
    }
    fn export(
        &self,
        sink: &mut dyn FnMut(backend::ExportItem) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.db.export(sink)
    }
    fn integrity_check(&self) -> Result<String, StoreError> {
        self.db.integrity_check()
    }
    fn custody(&self) -> &dyn okey_store::custody_db::CustodyRead {
        self.db.custody()
    }
    fn mail_due(&self, now: u64, limit: u32) -> Result<Vec<outbox::MailRow>, StoreError> {
        self.db.mail_due(now, limit)
    }
    fn mail_next_due(&self) -> Result<Option<u64>, StoreError> {
        self.db.mail_next_due()
    }
    fn mail_list(
        &self,
        states: &[outbox::MailState],
        limit: u32,
    ) -> Result<Vec<outbox::MailRow>, StoreError> {
        self.db.mail_list(states, limit)
    }
    fn mail_stats(&self) -> Result<outbox::OutboxStats, StoreError> {
        self.db.mail_stats()
    }
    fn directory(&self) -> &dyn okey_store::directory_db::DirectoryRead {
        self.db.directory()
    }
    fn support(&self) -> &dyn okey_store::support_db::SupportRead {
        self.db.support()
    }
}

/// Resync, OCRA and bench confirmation check the status and lock gate on a row, and when that
/// row's data key was retired meanwhile they read the row again: the gate then applies to the
/// row read again (here hard-locked), never only to the one read first.
#[test]
fn a_check_that_reads_the_row_again_applies_its_gate_to_that_row() {
    let dir = tempfile::tempdir().expect("dir");
    let db = std::sync::Arc::new(sqlite::Sqlite::open(dir.path()).expect("db"));
    let backend = std::sync::Arc::new(StaleOnce {
        db: db.clone(),
        stale: std::sync::Mutex::new(Vec::new()),
    });
    let s = Store::open_with_backend(
        StoreConfig {
            lockout: LockoutPolicy {
                hard_after: 1,
                soft_after: None,
                soft_lock_seconds: 0,
            },
            ..config(dir.path())
        },
        backend.clone(),
    )
    .expect("open");
    let suite = "OCRA-1:HOTP-SHA1-6:QN08";
    s.create_token(hotp_token("R1"), &actor()).expect("create");
    s.create_token(
        NewToken {
            valid_until: None,
            otp: OtpKind::Ocra {
                suite: suite.into(),
            },
            ..hotp_token("O1")
        },
        &actor(),
    )
    .expect("create");
    s.create_token(
        NewToken {
            valid_until: None,
            status: TokenStatus::Initialising,
            ..hotp_token("I1")
        },
        &actor(),
    )
    .expect("create");
    let before: Vec<_> = ["R1", "O1", "I1"]
        .iter()
        .map(|t| db.token(t).expect("read").expect("row"))
        .collect();
    s.rotate_data_key().expect("rotate");
    let ocra_suite: OcraSuite = suite.parse().expect("suite");
    let key = okey_otp::OtpKey::new(okey_otp::Algorithm::Sha1, SEED).expect("key");
    let answer = |q: &str| {
        let input = okey_otp::OcraInput {
            question: q,
            ..okey_otp::OcraInput::default()
        };
        okey_otp::ocra(&key, &ocra_suite, &input)
            .expect("ocra")
            .as_str()
            .to_owned()
    };
    rt().block_on(async {
        // One failure each hard-locks the three tokens.
        assert!(!verify(&s, "R1", "000000", 10).await.accepted);
        let wrong = if answer("12345678") == "000000" {
            "111111"
        } else {
            "000000"
        };
        let o = s
            .verify_ocra("O1", "12345678", wrong, 10, &actor(), "")
            .await
            .expect("ocra");
        assert!(!o.accepted);
        // Wrong read-backs never lock (they are staff mistakes): a lock on an initialising
        // token is one a database from before that rule holds, written here directly.
        {
            use okey_store::backend::Backend;
            let mut tx = db.write_session().expect("session");
            tx.begin().expect("begin");
            let row = tx.token("I1").expect("read").expect("row");
            let mut locked = row.state();
            locked.failures = 1;
            locked.locked = true;
            assert!(tx.update_state("I1", row.version, &locked).expect("lock"));
            tx.commit().expect("commit");
        }
        for t in ["R1", "O1", "I1"] {
            assert!(s.token(t).expect("get").locked, "{t} locked");
        }
        // Each check first reads the row as it was before the rotation and the lock.
        s.clear_cache();
        backend.arm(before[0].clone());
        let o = s
            .resync("R1", &hotp(SEED, 5, 6), &hotp(SEED, 6, 6), 11, &actor())
            .await
            .expect("resync");
        assert_eq!((o.accepted, o.reason), (false, Reason::Locked));
        backend.arm(before[1].clone());
        let o = s
            .verify_ocra("O1", "12345679", &answer("12345679"), 11, &actor(), "")
            .await
            .expect("ocra");
        assert_eq!((o.accepted, o.reason), (false, Reason::Locked));
        backend.arm(before[2].clone());
        let o = s
            .confirm_initialisation("I1", &hotp(SEED, 0, 6), 11, &actor())
            .await
            .expect("confirm");
        assert_eq!((o.accepted, o.reason), (false, Reason::Locked));
    });
    for t in ["R1", "O1", "I1"] {
        let info = s.token(t).expect("get");
        assert!(info.locked, "{t} still locked");
    }
    assert_eq!(s.token("R1").expect("get").counter, 0);
    assert_eq!(
        s.token("I1").expect("get").status,
        TokenStatus::Initialising
    );
}
