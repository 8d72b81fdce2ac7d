//! The life of a token through the API: import, verify, replay, PIN, lockout, resync, status.

use okey_e2e::{
    RFC_SECRET_HEX, Server, check, hotp_token, reference_hotp, verify_serial, verify_user,
};
use okey_server::proto;

fn rfc_seed() -> Vec<u8> {
    hex::decode(RFC_SECRET_HEX).expect("hex")
}

async fn import(server: &Server, tokens: Vec<proto::ImportedToken>) {
    let mut admin = server.admin().await;
    admin
        .tokens
        .import_tokens(proto::ImportTokensRequest { tokens })
        .await
        .expect("import");
}

#[tokio::test]
async fn verify_accepts_once_and_rejects_replays() {
    let server = Server::start();
    import(&server, vec![hotp_token("0001", RFC_SECRET_HEX)]).await;
    let mut c = server.admin().await;
    // RFC 4226 Appendix D: counter 0 is 755224, 1 is 287082.
    assert_eq!(
        check(&mut c, verify_serial("0001", "755224")).await,
        (true, "accepted".into())
    );
    assert!(
        !check(&mut c, verify_serial("0001", "755224")).await.0,
        "replay"
    );
    assert!(check(&mut c, verify_serial("0001", "287082")).await.0);
    // A code further ahead inside the window skips the ones between; they are then dead.
    let seed = rfc_seed();
    assert!(
        check(&mut c, verify_serial("0001", &reference_hotp(&seed, 6, 6)))
            .await
            .0
    );
    assert!(
        !check(&mut c, verify_serial("0001", &reference_hotp(&seed, 4, 6)))
            .await
            .0
    );
    let t = c
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: "0001".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(t.counter, 7);
    // Leading zeros are kept: "0001" and "1" are different serials.
    let err = c
        .tokens
        .get_token(proto::GetTokenRequest { serial: "1".into() })
        .await
        .expect_err("no such token");
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn user_subject_pin_and_disabled_tokens() {
    let server = Server::start();
    let mut t = hotp_token("0002", RFC_SECRET_HEX);
    t.holder = "jean.dupont".into();
    import(&server, vec![t]).await;
    let mut c = server.admin().await;
    c.tokens
        .set_pin(proto::SetPinRequest {
            serial: "0002".into(),
            pin: "4711".into(),
        })
        .await
        .expect("set pin");
    // PIN ‖ OTP.
    assert!(
        !check(&mut c, verify_user("jean.dupont", "755224")).await.0,
        "no PIN"
    );
    assert!(
        !check(&mut c, verify_user("jean.dupont", "4712755224"))
            .await
            .0,
        "wrong PIN"
    );
    assert!(
        check(&mut c, verify_user("jean.dupont", "4711755224"))
            .await
            .0
    );
    assert!(
        !check(&mut c, verify_user("nobody", "4711287082")).await.0,
        "unknown user"
    );
    // Disabled: even a fresh valid code is rejected; enabled again, it works.
    c.tokens
        .disable_token(proto::TokenRef {
            serial: "0002".into(),
        })
        .await
        .expect("disable");
    let (ok, reason) = check(&mut c, verify_serial("0002", "4711287082")).await;
    assert!(!ok);
    assert_ne!(reason, "accepted");
    c.tokens
        .enable_token(proto::TokenRef {
            serial: "0002".into(),
        })
        .await
        .expect("enable");
    assert!(check(&mut c, verify_serial("0002", "4711287082")).await.0);
    // Revoked is final.
    c.tokens
        .revoke_token(proto::TokenRef {
            serial: "0002".into(),
        })
        .await
        .expect("revoke");
    let err = c
        .tokens
        .enable_token(proto::TokenRef {
            serial: "0002".into(),
        })
        .await
        .expect_err("revoked is final");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn lockout_then_unlock() {
    let server = Server::start_with("[lockout]\nhard_after = 4\nsoft_after = 0\n");
    import(&server, vec![hotp_token("0003", RFC_SECRET_HEX)]).await;
    let mut c = server.admin().await;
    for _ in 0..4 {
        assert!(!check(&mut c, verify_serial("0003", "000000")).await.0);
    }
    // Locked: the right code is refused too.
    let (ok, reason) = check(&mut c, verify_serial("0003", "755224")).await;
    assert!(!ok);
    assert_eq!(reason, "locked");
    let t = c
        .tokens
        .unlock_token(proto::TokenRef {
            serial: "0003".into(),
        })
        .await
        .expect("unlock")
        .into_inner();
    assert!(!t.locked);
    assert_eq!(t.failures, 0);
    assert!(check(&mut c, verify_serial("0003", "755224")).await.0);
}

#[tokio::test]
async fn resync_moves_the_counter_and_software_tokens_confirm() {
    let server = Server::start();
    import(&server, vec![hotp_token("0004", RFC_SECRET_HEX)]).await;
    let mut c = server.admin().await;
    let seed = rfc_seed();
    // Far beyond the window of 10.
    assert!(
        !check(
            &mut c,
            verify_serial("0004", &reference_hotp(&seed, 500, 6))
        )
        .await
        .0
    );
    let bad = c
        .tokens
        .resync_token(proto::ResyncTokenRequest {
            serial: "0004".into(),
            first_code: reference_hotp(&seed, 500, 6),
            second_code: reference_hotp(&seed, 502, 6),
        })
        .await
        .expect_err("not consecutive");
    assert_eq!(bad.code(), tonic::Code::FailedPrecondition);
    let t = c
        .tokens
        .resync_token(proto::ResyncTokenRequest {
            serial: "0004".into(),
            first_code: reference_hotp(&seed, 500, 6),
            second_code: reference_hotp(&seed, 501, 6),
        })
        .await
        .expect("resync")
        .into_inner();
    assert_eq!(t.counter, 502);
    assert!(
        check(
            &mut c,
            verify_serial("0004", &reference_hotp(&seed, 502, 6))
        )
        .await
        .0
    );

    // A software token is pending until its first valid code.
    let created = c
        .tokens
        .create_token(proto::CreateTokenRequest {
            serial: "SW-1".into(),
            kind: proto::TokenKind::Software as i32,
            holder: "marie.curie".into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let token = created.token.expect("token");
    assert_eq!(token.status, proto::TokenStatus::Pending as i32);
    let uri = created.otpauth_uri;
    assert!(uri.starts_with("otpauth://hotp/"), "{uri}");
    let secret_b32 = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .expect("secret parameter");
    let mut padded = secret_b32.to_owned();
    while padded.len() % 8 != 0 {
        padded.push('=');
    }
    let seed = data_encoding_decode(&padded);
    assert!(
        check(&mut c, verify_serial("SW-1", &reference_hotp(&seed, 0, 6)))
            .await
            .0
    );
    let t = c
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: "SW-1".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(t.status, proto::TokenStatus::Active as i32);
    // The seed never comes back.
    assert_eq!(c.serials().await.len(), 2);
}

/// RFC 4648 base32 decoding, written out so the test does not share okey's decoder.
fn data_encoding_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = alphabet.iter().position(|a| *a == c).expect("base32") as u64;
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[tokio::test]
async fn audit_chain_records_verifies_without_passcodes() {
    let server = Server::start();
    import(&server, vec![hotp_token("0005", RFC_SECRET_HEX)]).await;
    let mut c = server.admin().await;
    assert!(check(&mut c, verify_serial("0005", "755224")).await.0);
    assert!(!check(&mut c, verify_serial("0005", "755224")).await.0);
    let report = c
        .audit
        .verify_audit_chain(proto::VerifyAuditChainRequest::default())
        .await
        .expect("verify chain")
        .into_inner();
    assert!(report.intact, "{}", report.detail);
    let records = c.audit_records(100).await;
    let verifies: Vec<_> = records.iter().filter(|r| r.action == "verify").collect();
    assert_eq!(verifies.len(), 2);
    for r in &records {
        for field in [&r.subject, &r.reason, &r.result, &r.actor, &r.action] {
            assert!(
                !field.contains("755224"),
                "a passcode reached the audit log: {r:?}"
            );
        }
    }
}

#[tokio::test]
async fn bench_initialisation_activates_only_on_a_matching_read_back() {
    let server = Server::start();
    let mut c = server.admin().await;
    let begun = c
        .tokens
        .begin_initialisation(proto::BeginInitialisationRequest {
            serial: "NK-0000BEEF".into(),
            ..Default::default()
        })
        .await
        .expect("begin")
        .into_inner();
    let seed = begun.seed;
    assert_eq!(seed.len(), 20, "a SHA-1 token gets a 160-bit seed");
    assert_eq!(
        begun.token.expect("token").status,
        proto::TokenStatus::Initialising as i32
    );
    // Not active yet: even the right code does not log in.
    let (ok, reason) = check(
        &mut c,
        verify_serial("NK-0000BEEF", &reference_hotp(&seed, 0, 6)),
    )
    .await;
    assert!(!ok);
    assert_eq!(reason, "not_active");
    // Nor can anyone enable it by hand: only the read-back makes it active.
    let err = c
        .tokens
        .enable_token(proto::TokenRef {
            serial: "NK-0000BEEF".into(),
        })
        .await
        .expect_err("an initialising token is not enabled by hand");
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        err.message()
    );
    let (ok, _) = check(
        &mut c,
        verify_serial("NK-0000BEEF", &reference_hotp(&seed, 0, 6)),
    )
    .await;
    assert!(!ok, "still not active");
    // A wrong read-back leaves it initialising.
    let wrong = if reference_hotp(&seed, 0, 6) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let err = c
        .tokens
        .complete_initialisation(proto::CompleteInitialisationRequest {
            serial: "NK-0000BEEF".into(),
            code: wrong.into(),
        })
        .await
        .expect_err("wrong code");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    // The code the device shows activates it; the next code logs in; the read-back is spent.
    let t = c
        .tokens
        .complete_initialisation(proto::CompleteInitialisationRequest {
            serial: "NK-0000BEEF".into(),
            code: reference_hotp(&seed, 0, 6),
        })
        .await
        .expect("complete")
        .into_inner();
    assert_eq!(t.status, proto::TokenStatus::Active as i32);
    assert!(
        !check(
            &mut c,
            verify_serial("NK-0000BEEF", &reference_hotp(&seed, 0, 6))
        )
        .await
        .0
    );
    assert!(
        check(
            &mut c,
            verify_serial("NK-0000BEEF", &reference_hotp(&seed, 1, 6))
        )
        .await
        .0
    );
    // An aborted initialisation never verifies, and a new attempt re-seeds the same serial.
    c.tokens
        .begin_initialisation(proto::BeginInitialisationRequest {
            serial: "NK-0000DEAD".into(),
            ..Default::default()
        })
        .await
        .expect("begin");
    let t = c
        .tokens
        .abort_initialisation(proto::TokenRef {
            serial: "NK-0000DEAD".into(),
        })
        .await
        .expect("abort")
        .into_inner();
    assert_eq!(t.status, proto::TokenStatus::Initialising as i32);
    let again = c
        .tokens
        .begin_initialisation(proto::BeginInitialisationRequest {
            serial: "NK-0000DEAD".into(),
            ..Default::default()
        })
        .await
        .expect("begin again")
        .into_inner();
    let fresh = again.seed;
    c.tokens
        .complete_initialisation(proto::CompleteInitialisationRequest {
            serial: "NK-0000DEAD".into(),
            code: reference_hotp(&fresh, 0, 6),
        })
        .await
        .expect("complete with the new seed");
    assert!(
        check(
            &mut c,
            verify_serial("NK-0000DEAD", &reference_hotp(&fresh, 1, 6))
        )
        .await
        .0
    );
    // An active token is never re-seeded.
    let err = c
        .tokens
        .begin_initialisation(proto::BeginInitialisationRequest {
            serial: "NK-0000DEAD".into(),
            ..Default::default()
        })
        .await
        .expect_err("active");
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
}
