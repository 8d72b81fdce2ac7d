//! OCRA challenge-response: issued for a user's token, answered once, bound, expiring.

use okey_e2e::{RFC_SECRET_HEX, Server};
use okey_otp::{OcraInput, OcraSuite, OtpKey, ocra};
use okey_server::proto;

const SUITE: &str = "OCRA-1:HOTP-SHA1-6:QN08";

fn response(question: &str) -> String {
    let suite: OcraSuite = SUITE.parse().expect("suite");
    let key = OtpKey::new(
        suite.algorithm(),
        &hex::decode(RFC_SECRET_HEX).expect("hex"),
    )
    .expect("key");
    ocra(
        &key,
        &suite,
        &OcraInput {
            question,
            ..OcraInput::default()
        },
    )
    .expect("ocra")
    .as_str()
    .to_owned()
}

/// A hardware challenge-response token of the RFC secret, held by `holder`.
fn ocra_token(serial: &str, holder: &str) -> proto::ImportedToken {
    proto::ImportedToken {
        serial: serial.into(),
        kind: proto::TokenKind::Hardware as i32,
        otp: Some(proto::OtpParameters {
            r#type: proto::OtpType::Ocra as i32,
            ocra_suite: SUITE.into(),
            ..Default::default()
        }),
        seed_hex: RFC_SECRET_HEX.into(),
        holder: holder.into(),
        ..Default::default()
    }
}

fn user(u: &str) -> Option<proto::Subject> {
    Some(proto::Subject {
        kind: Some(proto::subject::Kind::User(u.to_owned())),
    })
}

async fn answer(c: &mut okey_e2e::Client, who: &str, tx: &str, resp: &str) -> (i32, String) {
    let r = c
        .auth
        .verify(proto::VerifyRequest {
            subject: user(who),
            passcode: resp.to_owned(),
            transaction_id: tx.to_owned(),
            client: None,
        })
        .await
        .expect("verify")
        .into_inner();
    (r.result, r.reason)
}

#[tokio::test]
async fn challenge_response_single_use_bound_and_expiring() {
    let server = Server::start_with("challenge_ttl = 2\n");
    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![
                ocra_token("CR-1", "alice"),
                okey_e2e::hotp_token("HB-1", RFC_SECRET_HEX),
            ],
        })
        .await
        .expect("import");
    c.tokens
        .assign_token(proto::AssignTokenRequest {
            serial: "HB-1".into(),
            holder: "bob".into(),
        })
        .await
        .expect("assign");

    // An empty passcode asks for a challenge.
    let r = c
        .auth
        .verify(proto::VerifyRequest {
            subject: user("alice"),
            ..Default::default()
        })
        .await
        .expect("verify")
        .into_inner();
    assert_eq!(r.result, proto::VerifyResult::Challenge as i32);
    assert_eq!(r.serial, "CR-1");
    assert_eq!(r.challenge.len(), 8);
    let good = response(&r.challenge);
    // Bound to its token's holder: bob cannot answer alice's challenge (and that uses it up).
    let (res, reason) = answer(&mut c, "bob", &r.transaction_id, &good).await;
    assert_eq!(res, proto::VerifyResult::Reject as i32);
    assert_eq!(reason, "challenge_not_for_subject");
    let (res, reason) = answer(&mut c, "alice", &r.transaction_id, &good).await;
    assert_eq!(
        res,
        proto::VerifyResult::Reject as i32,
        "a challenge is single-use"
    );
    assert_eq!(reason, "challenge_used");

    // TriggerChallenge, a wrong answer, then the right answer to a fresh one.
    let t = c
        .auth
        .trigger_challenge(proto::TriggerChallengeRequest {
            subject: user("alice"),
            client: None,
        })
        .await
        .expect("trigger")
        .into_inner();
    assert_eq!(t.expires_in, 2);
    let (res, _) = answer(&mut c, "alice", &t.transaction_id, "000000").await;
    assert_eq!(res, proto::VerifyResult::Reject as i32);
    // The right answer after a wrong one: that challenge is spent, and the reason says so.
    let (res, reason) = answer(&mut c, "alice", &t.transaction_id, &response(&t.challenge)).await;
    assert_eq!(res, proto::VerifyResult::Reject as i32);
    assert_eq!(reason, "challenge_used");
    let (res, reason) = answer(&mut c, "alice", "00112233445566778899aabbccddeeff", "1").await;
    assert_eq!(res, proto::VerifyResult::Reject as i32);
    assert_eq!(reason, "unknown_transaction");
    let t = c
        .auth
        .trigger_challenge(proto::TriggerChallengeRequest {
            subject: user("alice"),
            client: None,
        })
        .await
        .expect("trigger")
        .into_inner();
    let (res, reason) = answer(&mut c, "alice", &t.transaction_id, &response(&t.challenge)).await;
    assert_eq!(res, proto::VerifyResult::Accept as i32, "{reason}");
    let (res, reason) = answer(&mut c, "alice", &t.transaction_id, &response(&t.challenge)).await;
    assert_eq!(res, proto::VerifyResult::Reject as i32, "replayed answer");
    assert_eq!(reason, "challenge_used");

    // Expiry.
    let t = c
        .auth
        .trigger_challenge(proto::TriggerChallengeRequest {
            subject: user("alice"),
            client: None,
        })
        .await
        .expect("trigger")
        .into_inner();
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (res, reason) = answer(&mut c, "alice", &t.transaction_id, &response(&t.challenge)).await;
    assert_eq!(res, proto::VerifyResult::Reject as i32);
    assert_eq!(reason, "challenge_expired");

    // A user without challenge-response tokens gets no challenge.
    let err = c
        .auth
        .trigger_challenge(proto::TriggerChallengeRequest {
            subject: user("bob"),
            client: None,
        })
        .await
        .expect_err("no OCRA token");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
}

/// An empty passcode sent to Verify asks for a challenge: that is TriggerChallenge's work, so
/// only its roles get one (support and technicians may call Verify, not TriggerChallenge).
#[tokio::test]
async fn a_challenge_through_verify_needs_the_challenge_roles() {
    let server = Server::start();
    let mut admin = server.admin().await;
    admin
        .tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![ocra_token("CR-9", "carol")],
        })
        .await
        .expect("import");
    for (role, allowed) in [
        ("support", false),
        ("technician", false),
        ("verifier", true),
    ] {
        let mut c = server.client_as(role).await;
        let r = c
            .auth
            .verify(proto::VerifyRequest {
                subject: user("carol"),
                passcode: String::new(),
                ..Default::default()
            })
            .await;
        match (allowed, r) {
            (true, Ok(r)) => {
                let r = r.into_inner();
                assert_eq!(r.result, proto::VerifyResult::Challenge as i32, "{role}");
                assert!(!r.transaction_id.is_empty(), "{role}");
            }
            (false, Err(s)) => assert_eq!(s.code(), tonic::Code::PermissionDenied, "{role}"),
            (_, other) => panic!("{role}: {other:?}"),
        }
    }
}

/// `okey verify --passcode ''`: what its help says is what it does. A challenge for a user
/// with a challenge-response key; bad input (exit 2, saying why) for a user without one.
#[tokio::test]
async fn the_verify_help_says_what_an_empty_passcode_does() {
    let server = Server::start();
    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![
                ocra_token("CR-1", "alice"),
                okey_e2e::hotp_token("HB-1", RFC_SECRET_HEX),
            ],
        })
        .await
        .expect("import");
    c.tokens
        .assign_token(proto::AssignTokenRequest {
            serial: "HB-1".into(),
            holder: "bob".into(),
        })
        .await
        .expect("assign");

    let help = server.cli(&["verify", "--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout).replace('\n', " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("asks for a challenge when the user has a challenge-response (OCRA) key")
            && help.contains("refused as bad input (exit 2) for anyone else"),
        "{help}"
    );

    let out = server.cli(&["verify", "--user", "alice", "--passcode", ""], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("challenge "), "{stdout}");

    let out = server.cli(&["verify", "--user", "bob", "--passcode", ""], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the passcode is empty, and this user has no challenge-response key"),
        "{stderr}"
    );
}
