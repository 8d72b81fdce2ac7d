//! Master-key and data-key rotation, online, with verifies running.

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
