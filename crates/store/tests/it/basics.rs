//! Creating, listing, verifying, PINs, statuses, users, resync, OCRA, API keys, bad input.

use okey_store::*;

use crate::common::*;

#[test]
fn helper_matches_rfc4226_appendix_d() {
    let expected = [
        "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
        "520489",
    ];
    for (c, e) in expected.iter().enumerate() {
        assert_eq!(hotp(SEED, c as u64, 6), *e);
    }
}

fn create_get_list_and_reopen(db: &Db) {
    {
        let s = db.open();
        let mut t = hotp_token("000123");
        t.holder = Some("alice".into());
        let info = s.create_token(t, &actor()).expect("create");
        assert_eq!(info.serial, "000123");
        assert_eq!(info.counter, 0);
        assert!(!info.has_pin);
        s.create_token(totp_token("000124"), &actor())
            .expect("create");
        let mut t = hotp_token("B-1");
        t.status = TokenStatus::Disabled;
        s.create_token(t, &actor()).expect("create");
    }
    let s = db.open();
    assert_eq!(
        s.token("000123").expect("get").holder.as_deref(),
        Some("alice")
    );
    let all = s
        .list_tokens(&TokenFilter::default(), None, 100)
        .expect("list");
    let serials: Vec<_> = all.iter().map(|t| t.serial.as_str()).collect();
    assert_eq!(serials, ["000123", "000124", "B-1"]);
    let page = s
        .list_tokens(&TokenFilter::default(), Some("000123"), 1)
        .expect("list");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].serial, "000124");
    let check = |f: TokenFilter, expected: &[&str]| {
        let got: Vec<_> = s
            .list_tokens(&f, None, 100)
            .expect("list")
            .into_iter()
            .map(|t| t.serial)
            .collect();
        assert_eq!(got, expected, "{f:?}");
    };
    check(
        TokenFilter {
            status: Some(TokenStatus::Disabled),
            ..Default::default()
        },
        &["B-1"],
    );
    check(
        TokenFilter {
            holder: Some("alice".into()),
            ..Default::default()
        },
        &["000123"],
    );
    check(
        TokenFilter {
            kind: Some(TokenKind::Software),
            ..Default::default()
        },
        &["000124"],
    );
    check(
        TokenFilter {
            serial_prefix: Some("0001".into()),
            ..Default::default()
        },
        &["000123", "000124"],
    );
    assert_eq!(s.integrity_check().expect("check"), "ok");
}

fn hotp_accepts_once_and_moves_forward(db: &Db) {
    let s = db.open();
    s.create_token(hotp_token("H1"), &actor()).expect("create");
    rt().block_on(async {
        let o = verify(&s, "H1", &hotp(SEED, 0, 6), 1000).await;
        assert_eq!((o.accepted, o.reason), (true, Reason::Accepted));
        assert_eq!(o.serial.as_deref(), Some("H1"));
        assert_eq!(s.token("H1").expect("get").counter, 1);
        // The same code again: the counter has moved past it; a replay, not counted.
        let o = verify(&s, "H1", &hotp(SEED, 0, 6), 1001).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::Replay));
        assert_eq!(s.token("H1").expect("get").failures, 0);
        let o = verify(&s, "H1", "000000", 1001).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::WrongCode));
        assert_eq!(s.token("H1").expect("get").failures, 1);
        // Look-ahead inside the window (counter 1 + 9 = 10 is the last candidate).
        let o = verify(&s, "H1", &hotp(SEED, 10, 6), 1002).await;
        assert!(o.accepted, "{o:?}");
        let t = s.token("H1").expect("get");
        assert_eq!((t.counter, t.failures), (11, 0));
        // Beyond the window.
        let o = verify(&s, "H1", &hotp(SEED, 21, 6), 1003).await;
        assert!(!o.accepted);
        // An older code never comes back.
        let o = verify(&s, "H1", &hotp(SEED, 5, 6), 1004).await;
        assert!(!o.accepted);
    });
    // State survives a restart.
    drop(s);
    let s = db.open();
    assert_eq!(s.token("H1").expect("get").counter, 11);
}

fn totp_accepts_once_per_step_and_tracks_drift(db: &Db) {
    let s = db.open();
    s.create_token(totp_token("T1"), &actor()).expect("create");
    let now = 1_700_000_000u64;
    rt().block_on(async {
        let o = verify(&s, "T1", &totp(SEED, now, 30, 6), now).await;
        assert!(o.accepted, "{o:?}");
        let o = verify(&s, "T1", &totp(SEED, now, 30, 6), now + 1).await;
        assert_eq!(o.reason, Reason::Replay);
        // The token's clock runs one step ahead.
        let o = verify(&s, "T1", &totp(SEED, now + 60, 30, 6), now + 30).await;
        assert!(o.accepted, "{o:?}");
        let t = s.token("T1").expect("get");
        assert_eq!(t.last_step, Some((now + 60) / 30));
        assert_eq!(t.drift, 1);
    });
}

fn server_pin_is_checked_and_a_wrong_pin_consumes_nothing(db: &Db) {
    let s = db.open();
    s.create_token(hotp_token("P1"), &actor()).expect("create");
    s.set_pin("P1", Some(&Pin::new("4711").expect("pin")), &actor())
        .expect("pin");
    assert!(s.token("P1").expect("get").has_pin);
    rt().block_on(async {
        let code = hotp(SEED, 0, 6);
        let o = verify(&s, "P1", &format!("4712{code}"), 10).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::WrongPin));
        assert_eq!(s.token("P1").expect("get").counter, 0);
        assert_eq!(s.token("P1").expect("get").failures, 1);
        let o = verify(&s, "P1", &code, 11).await;
        assert_eq!(o.reason, Reason::BadFormat);
        assert_eq!(
            s.token("P1").expect("get").failures,
            1,
            "bad format is not counted"
        );
        let o = verify(&s, "P1", &format!("4711{code}"), 12).await;
        assert_eq!((o.accepted, o.reason), (true, Reason::Accepted));
        s.set_pin("P1", None, &actor()).expect("remove pin");
        let o = verify(&s, "P1", &hotp(SEED, 1, 6), 13).await;
        assert!(o.accepted, "{o:?}");
    });
}

/// No administrative change makes a token active that has not proved it holds its seed: an
/// initialising token waits for the bench to read its code back, a pending one for its first
/// valid code (and cannot be disabled, then enabled, around it). Nothing is written.
fn only_a_proof_of_the_seed_makes_a_token_active(db: &Db) {
    let s = db.open();
    for (serial, status) in [
        ("P1", TokenStatus::Pending),
        ("I1", TokenStatus::Initialising),
    ] {
        let mut t = hotp_token(serial);
        t.status = status;
        s.create_token(t, &actor()).expect("create");
        for to in [TokenStatus::Active, TokenStatus::Disabled] {
            let e = s.set_status(serial, to, &actor()).expect_err("not by hand");
            assert!(matches!(e, StoreError::Precondition(_)), "{serial}: {e}");
            assert_eq!(s.token(serial).expect("get").status, status, "{serial}");
        }
    }
    rt().block_on(async {
        let o = verify(&s, "I1", &hotp(SEED, 0, 6), 10).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::NotActive));
        let o = verify(&s, "P1", &hotp(SEED, 0, 6), 10).await;
        assert_eq!((o.accepted, o.reason), (true, Reason::Confirmed));
    });
    s.set_status("I1", TokenStatus::Revoked, &actor())
        .expect("an initialising token can be given up");
}

fn statuses_gate_verification_and_revocation_is_final(db: &Db) {
    let s = db.open();
    let mut t = hotp_token("S1");
    t.status = TokenStatus::Pending;
    s.create_token(t, &actor()).expect("create");
    rt().block_on(async {
        let o = verify(&s, "S1", &hotp(SEED, 0, 6), 10).await;
        assert_eq!((o.accepted, o.reason), (true, Reason::Confirmed));
        assert_eq!(s.token("S1").expect("get").status, TokenStatus::Active);
        s.set_status("S1", TokenStatus::Disabled, &actor())
            .expect("disable");
        let o = verify(&s, "S1", &hotp(SEED, 1, 6), 11).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::NotActive));
        s.set_status("S1", TokenStatus::Active, &actor())
            .expect("status");
        let o = verify(&s, "S1", &hotp(SEED, 1, 6), 12).await;
        assert!(o.accepted);
        s.set_status("S1", TokenStatus::Revoked, &actor())
            .expect("revoke");
        let o = verify(&s, "S1", &hotp(SEED, 2, 6), 13).await;
        assert_eq!(o.reason, Reason::NotActive);
    });
    let e = s
        .set_status("S1", TokenStatus::Active, &actor())
        .expect_err("revoked is final");
    assert!(matches!(e, StoreError::Precondition(_)), "{e}");
}

fn unknown_subjects_are_rejected_and_audited(db: &Db) {
    let s = db.open();
    rt().block_on(async {
        let o = verify(&s, "NOPE", "123456", 10).await;
        assert_eq!(
            (o.accepted, o.reason, o.serial),
            (false, Reason::UnknownSubject, None)
        );
        let o = verify_user(&s, "nobody", "4711123456", 10).await;
        assert_eq!(o.reason, Reason::UnknownSubject);
    });
    let tail = s.audit_tail(10).expect("tail");
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[0].entry.subject, "nobody");
    assert_eq!(tail[0].entry.reason, "unknown_subject");
    assert_eq!(tail[1].entry.actor, "tester@test");
    // The passcode is never recorded.
    assert!(
        tail.iter()
            .all(|r| !format!("{:?}", r.entry).contains("123456"))
    );
}

fn users_verify_with_any_of_their_tokens(db: &Db) {
    let s = db.open();
    let seed2: &[u8] = b"abcdefghijklmnopqrst";
    let mut a = hotp_token("U1");
    a.holder = Some("alice".into());
    let mut b = hotp_token("U2");
    b.holder = Some("alice".into());
    b.seed = Zeroizing::new(seed2.to_vec());
    let mut c = hotp_token("U3");
    c.holder = Some("bob".into());
    c.status = TokenStatus::Disabled;
    s.import_tokens(vec![a, b, c], &actor()).expect("import");
    rt().block_on(async {
        let o = verify_user(&s, "alice", &hotp(seed2, 0, 6), 10).await;
        assert_eq!((o.accepted, o.serial.as_deref()), (true, Some("U2")));
        assert_eq!(s.token("U2").expect("get").counter, 1);
        assert_eq!(s.token("U1").expect("get").counter, 0);
        let o = verify_user(&s, "alice", &hotp(seed2, 0, 6), 11).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::Replay));
        assert_eq!(s.token("U2").expect("get").failures, 0);
        let o = verify_user(&s, "alice", &hotp(seed2, 50, 6), 11).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::WrongCode));
        // Both tokens were tried, both count the failure.
        assert_eq!(s.token("U1").expect("get").failures, 1);
        assert_eq!(s.token("U2").expect("get").failures, 1);
        let o = verify_user(&s, "bob", &hotp(SEED, 0, 6), 12).await;
        assert_eq!(o.reason, Reason::NoTokens);
    });
}

fn resync_moves_a_far_counter(db: &Db) {
    let s = db.open();
    s.create_token(hotp_token("R1"), &actor()).expect("create");
    rt().block_on(async {
        let o = verify(&s, "R1", &hotp(SEED, 500, 6), 10).await;
        assert!(!o.accepted);
        let o = s
            .resync("R1", &hotp(SEED, 500, 6), &hotp(SEED, 502, 6), 11, &actor())
            .await
            .expect("resync");
        assert_eq!(o.reason, Reason::WrongCode, "not consecutive");
        let o = s
            .resync("R1", &hotp(SEED, 500, 6), &hotp(SEED, 501, 6), 12, &actor())
            .await
            .expect("resync");
        assert_eq!((o.accepted, o.reason), (true, Reason::Resynced));
        let t = s.token("R1").expect("get");
        assert_eq!((t.counter, t.failures), (502, 0));
        assert!(verify(&s, "R1", &hotp(SEED, 502, 6), 13).await.accepted);
    });
}

fn ocra_token(serial: &str, suite: &str, seed: &[u8], digits: u8) -> NewToken {
    let algorithm = if suite.contains("SHA256") {
        Algorithm::Sha256
    } else {
        Algorithm::Sha1
    };
    NewToken {
        valid_until: None,
        otp: OtpKind::Ocra {
            suite: suite.into(),
        },
        algorithm,
        digits,
        seed: Zeroizing::new(seed.to_vec()),
        ..hotp_token(serial)
    }
}

fn ocra_rfc6287_vectors_through_the_store(db: &Db) {
    let s = db.open();
    // RFC 6287 appendix C.1, OCRA-1:HOTP-SHA1-6:QN08, Q = 00000000 → 237653.
    s.create_token(
        ocra_token("O1", "OCRA-1:HOTP-SHA1-6:QN08", SEED, 6),
        &actor(),
    )
    .expect("create");
    // C.1, OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1 with PIN 1234: C = 0, Q = 12345678 → 65347737.
    let seed32 = b"12345678901234567890123456789012";
    s.create_token(
        ocra_token("O2", "OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1", seed32, 8),
        &actor(),
    )
    .expect("create");
    assert_eq!(
        s.ocra_suite("O1").expect("suite").map(|x| x.to_string()),
        Some("OCRA-1:HOTP-SHA1-6:QN08".into())
    );
    s.create_token(hotp_token("H0"), &actor()).expect("create");
    assert_eq!(s.ocra_suite("H0").expect("suite"), None);
    assert!(matches!(
        s.ocra_suite("NONE"),
        Err(StoreError::UnknownSerial(_))
    ));
    rt().block_on(async {
        let a = actor();
        let o = s
            .verify_ocra("O1", "00000000", "237653", 10, &a, "t")
            .await
            .expect("ocra");
        assert_eq!((o.accepted, o.reason), (true, Reason::Accepted));
        let o = s
            .verify_ocra("O1", "00000000", "237654", 10, &a, "t")
            .await
            .expect("ocra");
        assert_eq!((o.accepted, o.reason), (false, Reason::WrongCode));
        // The PIN-bound suite needs a PIN first.
        assert!(matches!(
            s.verify_ocra("O2", "12345678", "65347737", 10, &a, "t")
                .await,
            Err(StoreError::Precondition(_))
        ));
        s.set_pin("O2", Some(&Pin::new("1234").expect("pin")), &a)
            .expect("pin");
        let o = s
            .verify_ocra("O2", "12345678", "65347737", 10, &a, "t")
            .await
            .expect("ocra");
        assert!(o.accepted, "{o:?}");
        assert_eq!(s.token("O2").expect("get").counter, 1);
        // The counter moved: the same response is not accepted again.
        let o = s
            .verify_ocra("O2", "12345678", "65347737", 11, &a, "t")
            .await
            .expect("ocra");
        assert!(!o.accepted);
        // C.3, time-based OCRA-1:HOTP-SHA512-8:QN08-T1M at T = 0x132d0b6 minutes, Q = 00000000.
        let seed64 = b"1234567890123456789012345678901234567890123456789012345678901234";
        let mut t = ocra_token("O3", "OCRA-1:HOTP-SHA512-8:QN08-T1M", seed64, 8);
        t.algorithm = Algorithm::Sha512;
        s.create_token(t, &a).expect("create");
        let now = 0x132_d0b6 * 60 + 17;
        let o = s
            .verify_ocra("O3", "00000000", "95209754", now, &a, "t")
            .await
            .expect("ocra");
        assert!(o.accepted, "{o:?}");
        // Ten minutes later the response is outside the skew.
        let o = s
            .verify_ocra("O3", "00000000", "95209754", now + 600, &a, "t")
            .await
            .expect("ocra");
        assert_eq!(o.reason, Reason::WrongCode);
        // A plain verify of a challenge-response token is refused.
        let o = verify(&s, "O1", "237653", 12).await;
        assert_eq!(o.reason, Reason::ChallengeRequired);
    });
}

fn assert_invalid(r: Result<TokenInfo, StoreError>, field: &str) {
    match r {
        Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected invalid {field}, got {other:?}"),
    }
}

fn bad_input_is_refused_and_nothing_is_written(db: &Db) {
    let s = db.open();
    s.create_token(hotp_token("D1"), &actor()).expect("create");
    let audit_before = s.audit_tail(1000).expect("tail").len();
    let before = s.token("D1").expect("get");
    match s.create_token(hotp_token("D1"), &actor()) {
        Err(StoreError::DuplicateSerial(x)) => assert_eq!(x, "D1"),
        other => panic!("{other:?}"),
    }
    let with = |f: &dyn Fn(&mut NewToken)| {
        let mut t = hotp_token("D2");
        f(&mut t);
        s.create_token(t, &actor())
    };
    assert_invalid(with(&|t| t.counter = u64::MAX), "counter");
    assert_invalid(with(&|t| t.counter = 1 << 63), "counter");
    assert_invalid(with(&|t| t.digits = 5), "digits");
    assert_invalid(with(&|t| t.digits = 11), "digits");
    assert_invalid(with(&|t| t.seed = Zeroizing::new(vec![1; 8])), "seed");
    assert_invalid(with(&|t| t.serial = "has space".into()), "serial");
    assert_invalid(with(&|t| t.serial = String::new()), "serial");
    assert_invalid(with(&|t| t.status = TokenStatus::Revoked), "status");
    assert_invalid(with(&|t| t.otp = OtpKind::Totp { step: 0, t0: 0 }), "step");
    assert_invalid(
        with(&|t| {
            t.otp = OtpKind::Ocra {
                suite: "OCRA-1:HOTP-MD5-6:QN08".into(),
            }
        }),
        "suite",
    );
    assert_invalid(with(&|t| t.holder = Some("a\nb".into())), "holder");
    // A batch with one bad token or one duplicate writes nothing at all.
    let batch = vec![hotp_token("D3"), hotp_token("D4"), hotp_token("D3")];
    match s.import_tokens(batch, &actor()) {
        Err(StoreError::DuplicateSerial(x)) => assert_eq!(x, "D3"),
        other => panic!("{other:?}"),
    }
    let batch = vec![hotp_token("D5"), hotp_token("D1")];
    match s.import_tokens(batch, &actor()) {
        Err(StoreError::DuplicateSerial(x)) => assert_eq!(x, "D1"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.token("D5"), Err(StoreError::UnknownSerial(_))));
    assert!(matches!(s.token("NONE"), Err(StoreError::UnknownSerial(_))));
    assert!(matches!(
        s.unlock("NONE", &actor()),
        Err(StoreError::UnknownSerial(_))
    ));
    assert_eq!(s.token_count().expect("count"), 1);
    assert_eq!(s.token("D1").expect("get"), before);
    assert_eq!(s.audit_tail(1000).expect("tail").len(), audit_before);
}

fn api_keys_register_lookup_and_revoke(db: &Db) {
    let s = db.open();
    let h1 = [1u8; 32];
    let roles = vec!["support".to_string(), "auditor".to_string()];
    s.add_api_key("radius-1", h1, &roles, &actor())
        .expect("put");
    let p = s.api_key(&h1).expect("lookup").expect("found");
    assert_eq!(p.name, "radius-1");
    assert_eq!(p.roles, roles);
    assert!(!p.disabled);
    assert_eq!(s.api_key(&[2u8; 32]).expect("lookup"), None);
    assert!(matches!(
        s.add_api_key("other", h1, &roles, &actor()),
        Err(StoreError::DuplicateApiKey)
    ));
    assert!(matches!(
        s.add_api_key("bad", [3; 32], &["a b".to_string()], &actor()),
        Err(StoreError::Invalid { .. })
    ));
    s.revoke_api_key("radius-1", &actor()).expect("revoke");
    assert!(s.api_key(&h1).expect("lookup").expect("kept").disabled);
    assert!(matches!(
        s.revoke_api_key("nope", &actor()),
        Err(StoreError::UnknownApiKey(_))
    ));
    // A name is never reused: creating "radius-1" again neither brings the revoked key back
    // nor gives the name a new secret.
    assert!(matches!(
        s.add_api_key("radius-1", [4u8; 32], &roles, &actor()),
        Err(StoreError::ApiKeyNameTaken(_))
    ));
    assert!(s.api_key(&h1).expect("lookup").expect("kept").disabled);
    assert_eq!(s.api_key(&[4u8; 32]).expect("lookup"), None);
    s.add_api_key("radius-2", [5u8; 32], &roles, &actor())
        .expect("a new name");
    assert!(matches!(
        s.add_api_key("radius-2", [6u8; 32], &["admin".to_string()], &actor()),
        Err(StoreError::ApiKeyNameTaken(_))
    ));
    assert_eq!(
        s.api_key(&[5u8; 32]).expect("lookup").expect("kept").roles,
        roles
    );
    assert_eq!(s.list_api_keys().expect("list").len(), 2);
}

#[test]
fn a_data_directory_serves_one_process_at_a_time() {
    let dir = tempfile::tempdir().expect("dir");
    let s = open(dir.path());
    let e = Store::open(config(dir.path())).expect_err("second open");
    assert!(matches!(e, StoreError::Precondition(_)), "{e}");
    assert!(e.to_string().contains("in use"), "{e}");
    drop(s);
    open(dir.path());
}

/// The server holds the store in shared state and awaits its futures on a multi-threaded
/// runtime: the store must be `Send + Sync + Clone` and its futures `Send`.
#[test]
fn store_and_its_futures_are_send() {
    fn send_sync_clone<T: Send + Sync + Clone>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().expect("dir");
    let s = open(dir.path());
    send_sync_clone(&s);
    let a = actor();
    let v = s.verify(VerifyRequest {
        subject: Subject::Serial("X"),
        passcode: "123456",
        now: 1,
        actor: &a,
        client: "",
    });
    send(&v);
    let r = s.resync("X", "1", "2", 1, &a);
    send(&r);
    let o = s.verify_ocra("X", "q", "r", 1, &a, "");
    send(&o);
    let e = s.audit(AuditEntry::default());
    send(&e);
}

/// RFC 6238 appendix B vectors (as in shared/vectors/totp-rfc6238.json), verified through the
/// store (8 digits, each hash).
fn totp_rfc6238_vectors_through_the_store(db: &Db) {
    let s = db.open();
    let seed = |alg: Algorithm| -> Vec<u8> {
        let base = b"1234567890";
        let len = match alg {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        };
        base.iter().cycle().take(len).copied().collect()
    };
    let check = |serial: &str, alg: Algorithm, time: u64, code: &str| {
        let mut t = totp_token(serial);
        t.algorithm = alg;
        t.digits = 8;
        t.seed = Zeroizing::new(seed(alg));
        s.create_token(t, &actor()).expect("create");
        let o = rt().block_on(verify(&s, serial, code, time));
        assert!(o.accepted, "{serial} at {time}: {o:?}");
        assert_eq!(s.token(serial).expect("get").last_step, Some(time / 30));
    };
    check("V1", Algorithm::Sha1, 59, "94287082");
    check("V2", Algorithm::Sha256, 59, "46119246");
    check("V3", Algorithm::Sha512, 59, "90693936");
    check("V4", Algorithm::Sha1, 1_111_111_109, "07081804");
    check("V5", Algorithm::Sha256, 1_234_567_890, "91819424");
    check("V6", Algorithm::Sha512, 2_000_000_000, "38618901");
}

#[test]
fn a_new_data_directory_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().expect("dir");
    let dir = parent.path().join("a").join("okey-data");
    drop(open(&dir));
    for d in [&dir, &parent.path().join("a")] {
        let mode = std::fs::metadata(d).expect("created").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
    }
    // An existing directory keeps the mode its owner gave it.
    let shared = parent.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    drop(open(&shared));
    let mode = std::fs::metadata(&shared)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o750);
}

/// Holders written before the case rule (`Bob` and `bob`, two rows) are one person after
/// migration 5; serials keep their case (`new0` and `NEW0` stay two keys).
#[test]
fn migration_5_folds_holders_and_keeps_serials_exact() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let s = open(dir.path());
        for (serial, holder) in [("new0", "Bob"), ("NEW0", "bob"), ("x-1", "ALICE.Martin")] {
            let mut t = hotp_token(serial);
            t.holder = Some(holder.into());
            s.create_token(t, &actor()).expect("create");
        }
    }
    // Put the rows back as a release before the case rule wrote them (the store itself now
    // folds nothing: the server folds at the edge), then run migration 5 on them.
    {
        let db = rusqlite::Connection::open(dir.path().join("okey.db")).expect("sqlite");
        db.execute_batch(
            "UPDATE tokens SET holder = 'Bob' WHERE serial = 'new0';
             UPDATE tokens SET holder = 'ALICE.Martin' WHERE serial = 'x-1';",
        )
        .expect("unfold");
        let mixed: i64 = db
            .query_row(
                "SELECT count(*) FROM tokens WHERE holder <> lower(holder)",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(mixed, 2, "the rows start in mixed case");
    }
    okey_store::sqlite::rerun_migration(&dir.path().join("okey.db"), 5).expect("migration 5");
    let s = open(dir.path());
    let of = |h: &str| -> Vec<String> {
        s.list_tokens(
            &TokenFilter {
                holder: Some(h.into()),
                ..TokenFilter::default()
            },
            None,
            100,
        )
        .expect("list")
        .into_iter()
        .map(|t| t.serial)
        .collect()
    };
    assert_eq!(of("bob"), ["NEW0", "new0"]);
    assert_eq!(of("alice.martin"), ["x-1"]);
    assert!(of("Bob").is_empty(), "the store keeps only the folded form");
    assert_eq!(s.token("new0").expect("exact").serial, "new0");
    assert_eq!(s.token("NEW0").expect("exact").serial, "NEW0");
    assert!(s.token("New0").is_err(), "serials are exact");
}

/// A PIN set on a key that has a holder is bound to the holder: it follows them to their next key
/// (`carry_pin`, a renewal) without anyone typing it again, works there and only there, and stops
/// matching on a key that changes hands. A token-bound PIN (a key with no holder) is refused for
/// carrying. Every refusal writes nothing.
fn a_holders_pin_follows_them_to_their_next_key(db: &Db) {
    let s = db.open();
    let a = actor();
    for serial in ["OLD", "NEW", "OTHER", "LOOSE"] {
        let mut t = hotp_token(serial);
        t.holder = match serial {
            "OTHER" => Some("paul".into()),
            "LOOSE" => None,
            _ => Some("marie".into()),
        };
        s.create_token(t, &a).expect("create");
    }
    let pin = Pin::new("4711").expect("pin");
    s.set_pin("OLD", Some(&pin), &a).expect("pin");
    s.set_pin("LOOSE", Some(&pin), &a).expect("pin");
    let audit_before = s.audit_tail(1000).expect("audit").len();
    // Refusals: another person's key, a token-bound PIN, a key without PIN, the same key.
    for (from, to) in [
        ("OLD", "OTHER"),
        ("LOOSE", "NEW"),
        ("NEW", "OLD"),
        ("OLD", "OLD"),
    ] {
        let e = s.carry_pin(from, to, &a).expect_err("refused");
        assert!(
            matches!(e, StoreError::Precondition(_) | StoreError::Invalid { .. }),
            "{from}->{to}: {e}"
        );
    }
    assert!(!s.token("NEW").expect("get").has_pin);
    assert!(!s.token("OTHER").expect("get").has_pin);
    assert_eq!(
        s.audit_tail(1000).expect("audit").len(),
        audit_before,
        "nothing written"
    );
    s.carry_pin("OLD", "NEW", &a).expect("carry");
    assert!(s.token("NEW").expect("get").has_pin);
    rt().block_on(async {
        let code = hotp(SEED, 0, 6);
        let o = verify(&s, "NEW", &format!("4712{code}"), 10).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::WrongPin));
        let o = verify(&s, "NEW", &format!("4711{code}"), 11).await;
        assert_eq!(
            (o.accepted, o.reason),
            (true, Reason::Accepted),
            "the carried PIN"
        );
        let o = verify(&s, "OLD", &format!("4711{code}"), 12).await;
        assert!(o.accepted, "still the old key's PIN too: {o:?}");
    });
    // Reopened (no cache): the scheme is stored with the verifier.
    drop(s);
    let s = db.open();
    rt().block_on(async {
        let o = verify(&s, "NEW", &format!("4711{}", hotp(SEED, 1, 6)), 20).await;
        assert!(o.accepted, "{o:?}");
    });
    // A token-bound PIN (set while the key had no holder, like every PIN before holder-bound
    // verifiers) keeps working when the key is given to someone, but cannot be carried.
    s.assign("LOOSE", Some("marie"), &a).expect("assign");
    rt().block_on(async {
        let o = verify(&s, "LOOSE", &format!("4711{}", hotp(SEED, 0, 6)), 25).await;
        assert!(o.accepted, "{o:?}");
    });
    let e = s.carry_pin("LOOSE", "OTHER", &a).expect_err("token-bound");
    assert!(
        e.to_string().contains("sets a new PIN") || e.to_string().contains("not marie"),
        "{e}"
    );
    // The key changes hands: the holder-bound PIN no longer matches, for anyone.
    s.assign("NEW", Some("paul"), &a).expect("assign");
    rt().block_on(async {
        let o = verify(&s, "NEW", &format!("4711{}", hotp(SEED, 2, 6)), 30).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::WrongPin));
    });
}

both!(
    a_holders_pin_follows_them_to_their_next_key,
    create_get_list_and_reopen,
    hotp_accepts_once_and_moves_forward,
    totp_accepts_once_per_step_and_tracks_drift,
    server_pin_is_checked_and_a_wrong_pin_consumes_nothing,
    only_a_proof_of_the_seed_makes_a_token_active,
    statuses_gate_verification_and_revocation_is_final,
    unknown_subjects_are_rejected_and_audited,
    users_verify_with_any_of_their_tokens,
    resync_moves_a_far_counter,
    ocra_rfc6287_vectors_through_the_store,
    bad_input_is_refused_and_nothing_is_written,
    api_keys_register_lookup_and_revoke,
    totp_rfc6238_vectors_through_the_store,
);
