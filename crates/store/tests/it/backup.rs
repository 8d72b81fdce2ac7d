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
        s.put_api_key("radius", [9; 32], &["verifier".into()], &actor())
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
        // The time-based token refuses every code up to the restore's own step, even one still
        // inside the skew window; the next step's code works.
        let restored_step = r.at / 30;
        assert_eq!(s.token("B2").expect("get").last_step, Some(restored_step));
        let at = r.at;
        let o = verify(&s, "B2", &totp(SEED, at, 30, 6), at).await;
        assert!(!o.accepted, "{o:?}");
        assert_eq!(o.reason, Reason::Replay);
        let next = (restored_step + 1) * 30;
        let o = verify(&s, "B2", &totp(SEED, next, 30, 6), next).await;
        assert!(o.accepted, "{o:?}");
    });
}
