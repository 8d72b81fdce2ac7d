//! Encrypted backup and restore.

use okey_store::*;

use crate::common::*;

fn pass(p: &str) -> Zeroizing<String> {
    Zeroizing::new(p.to_owned())
}

#[test]
fn backup_restores_under_another_master_key_and_refuses_tampering() {
    let dir = tempfile::tempdir().expect("dir");
    let src = dir.path().join("src");
    let file = dir.path().join("store.okb");
    let seed: Vec<u8> = (0..20u8)
        .map(|i| i.wrapping_mul(91).wrapping_add(3))
        .collect();
    {
        let s = open(&src);
        let mut t = hotp_token("B1");
        t.seed = Zeroizing::new(seed.clone());
        t.holder = Some("alice".into());
        s.create_token(t, &actor()).expect("create");
        s.create_token(totp_token("B2"), &actor()).expect("create");
        s.create_token(
            NewToken {
                valid_until: None,
                otp: OtpKind::Ocra {
                    suite: "OCRA-1:HOTP-SHA1-6:QN08".into(),
                },
                ..hotp_token("B3")
            },
            &actor(),
        )
        .expect("create");
        s.set_pin("B1", Some(&Pin::new("8642").expect("pin")), &actor())
            .expect("pin");
        s.add_api_key("radius", [9; 32], &["verifier".into()], &actor())
            .expect("key");
        rt().block_on(async {
            let o = verify(&s, "B1", &format!("8642{}", hotp(&seed, 0, 6)), 5).await;
            assert!(o.accepted);
        });
        assert!(matches!(
            s.backup(&file, &pass("short")),
            Err(StoreError::Invalid { .. })
        ));
        let r = s
            .backup(&file, &pass("correct horse battery"))
            .expect("backup");
        assert_eq!((r.tokens, r.api_keys), (3, 1));
        assert_eq!(r.audit_records, 6);
        assert_eq!(r.bytes, std::fs::metadata(&file).expect("file").len());
    }
    let bytes = std::fs::read(&file).expect("read");
    assert!(!bytes.windows(seed.len()).any(|w| w == seed.as_slice()));

    let target = |name: &str| StoreConfig {
        master_key: MasterKeySource::Bytes(key_bytes(42)),
        ..StoreConfig::in_dir(dir.path().join(name))
    };
    // Wrong passphrase, a flipped byte, a cut file: refused, nothing restored.
    assert!(matches!(
        Store::restore(target("x1"), &file, &pass("wrong horse battery")),
        Err(StoreError::BackupAuth)
    ));
    let mut flipped = bytes.clone();
    flipped[100] ^= 0x40;
    let bad = dir.path().join("flipped.okb");
    std::fs::write(&bad, &flipped).expect("write");
    assert!(matches!(
        Store::restore(target("x2"), &bad, &pass("correct horse battery")),
        Err(StoreError::BackupAuth)
    ));
    let cut = dir.path().join("cut.okb");
    std::fs::write(&cut, &bytes[..bytes.len() - 1]).expect("write");
    assert!(matches!(
        Store::restore(target("x3"), &cut, &pass("correct horse battery")),
        Err(StoreError::BackupAuth)
    ));
    for d in ["x1", "x2", "x3"] {
        assert!(!dir.path().join(d).exists(), "{d}: nothing written");
    }

    let r = Store::restore(target("dst"), &file, &pass("correct horse battery")).expect("restore");
    assert_eq!((r.tokens, r.api_keys, r.audit_records), (3, 1, 6));
    // One TOTP token moved to the restore's step; one HOTP token left at its backup counter
    // (the OCRA token answers fresh challenges and has nothing to replay).
    assert_eq!((r.time_tokens_advanced, r.counter_tokens), (1, 1));
    // Into a store that has data: refused.
    assert!(matches!(
        Store::restore(target("dst"), &file, &pass("correct horse battery")),
        Err(StoreError::NotEmpty(_))
    ));
    let s = Store::open(target("dst")).expect("open restored");
    let t = s.token("B1").expect("get");
    assert_eq!(
        (t.counter, t.holder.as_deref(), t.has_pin),
        (1, Some("alice"), true)
    );
    assert!(s.api_key(&[9; 32]).expect("lookup").is_some());
    let report = s.audit_verify().expect("audit");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 7, "the restore itself is recorded");
    rt().block_on(async {
        // Same PIN (the pepper came along), the used code stays used, the next one works.
        let o = verify(&s, "B1", &format!("8642{}", hotp(&seed, 0, 6)), 6).await;
        assert_eq!(o.reason, Reason::Replay);
        let o = verify(&s, "B1", &format!("8642{}", hotp(&seed, 1, 6)), 6).await;
        assert!(o.accepted, "{o:?}");
        // The time-based token refuses every code a verify at the restore could accept (up to
        // the restore's step plus the skew of one), even one still inside the skew window; the
        // first step past that works.
        let restored_step = r.at / 30;
        assert_eq!(
            s.token("B2").expect("get").last_step,
            Some(restored_step + 1)
        );
        let at = r.at;
        let o = verify(&s, "B2", &totp(SEED, at, 30, 6), at).await;
        assert!(!o.accepted, "{o:?}");
        assert_eq!(o.reason, Reason::Replay);
        let next = (restored_step + 2) * 30;
        let o = verify(&s, "B2", &totp(SEED, next, 30, 6), next).await;
        assert!(o.accepted, "{o:?}");
    });
}

/// The real clock: a restore advances time-based tokens to the step of its own moment.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// TOTP codes used after the backup are refused after a restore: one from a token whose clock
/// runs a step ahead (inside the skew window), and one from a token with a learnt drift.
#[test]
fn restore_refuses_totp_codes_used_ahead_of_the_clock_or_with_drift() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("b.okb");
    let pass = pass("correct horse battery");
    let t = unix_now();
    let ahead = hotp(SEED, t / 30 + 1, 6);
    let drifted = hotp(SEED, t / 30 + 5, 6);
    {
        let s = open(&dir.path().join("src"));
        s.create_token(totp_token("T1"), &actor()).expect("create");
        let mut d = totp_token("T2");
        d.drift = 5;
        s.create_token(d, &actor()).expect("create");
        s.backup(&file, &pass).expect("backup");
        // Used after the backup was taken.
        rt().block_on(async {
            assert!(verify(&s, "T1", &ahead, t).await.accepted);
            assert!(verify(&s, "T2", &drifted, t).await.accepted);
        });
    }
    let cfg = StoreConfig {
        master_key: MasterKeySource::Bytes(key_bytes(9)),
        ..StoreConfig::in_dir(dir.path().join("dst"))
    };
    let r = Store::restore(cfg.clone(), &file, &pass).expect("restore");
    assert_eq!(r.time_tokens_advanced, 2);
    let s = Store::open(cfg).expect("open");
    let restored_step = r.at / 30;
    assert_eq!(
        s.token("T1").expect("get").last_step,
        Some(restored_step + 1)
    );
    assert_eq!(
        s.token("T2").expect("get").last_step,
        Some(restored_step + 5 + 1)
    );
    rt().block_on(async {
        for (serial, code) in [("T1", &ahead), ("T2", &drifted)] {
            let o = verify(&s, serial, code, t).await;
            assert!(
                !o.accepted,
                "{serial}: a used code replayed after restore: {o:?}"
            );
        }
        // The first step past the window works.
        let later = (restored_step + 2) * 30;
        let o = verify(&s, "T1", &hotp(SEED, restored_step + 2, 6), later).await;
        assert!(o.accepted, "{o:?}");
        let o = verify(&s, "T2", &hotp(SEED, restored_step + 7, 6), later).await;
        assert!(o.accepted, "{o:?}");
    });
}
