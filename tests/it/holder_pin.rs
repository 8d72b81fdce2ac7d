//! The holder of a key in use changes its PIN ("changer son code PIN", also when they have
//! forgotten it): a code read from the key proves they hold it. Codes come from the harness's
//! own HOTP (`reference_hotp`), not from okey's.

use okey_e2e::{
    RFC_SECRET_HEX, Server, check, hotp_token, reference_hotp, verify_serial, verify_user,
};
use okey_server::proto;
use tonic::Code;

const UNITS: &str = "id,kind,name,parent,under_contract
RECTORAT,rectorat,Rectorat,,
9740001H,school,Lycée A,RECTORAT,yes
";

const PEOPLE: &str = "id,name,email,unit,functions
f.head,Head,f.head@ac-example.fr,9740001H,head
f.staff,Staff,f.staff@ac-example.fr,9740001H,staff
f.other,Other,f.other@ac-example.fr,9740001H,staff
";

#[tokio::test]
async fn the_holder_changes_the_pin_of_a_key_in_use_with_a_code_from_it() {
    let server = Server::start();
    server.import_directory(UNITS, PEOPLE);
    let mut admin = server.admin().await;
    admin
        .lifecycle
        .create_lot(proto::CreateLotRequest {
            id: "2D-A".into(),
            kind: proto::LotKind::LotKind2d as i32,
            unit: "9740001H".into(),
            name: "Lycée A".into(),
            validity_days: 0,
        })
        .await
        .expect("lot");
    admin
        .tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("K-0001", RFC_SECRET_HEX)],
        })
        .await
        .expect("import");
    admin
        .lifecycle
        .register_keys(proto::RegisterKeysRequest {
            lot: "2D-A".into(),
            serials: vec!["K-0001".into()],
            valid_until: 0,
        })
        .await
        .expect("register");
    admin
        .lifecycle
        .hand_over(proto::HandOverRequest {
            items: vec![proto::HandOverItem {
                serial: "K-0001".into(),
                to: "f.staff".into(),
                place: String::new(),
                until: 0,
            }],
        })
        .await
        .expect("hand over");
    admin
        .tokens
        .set_pin(proto::SetPinRequest {
            serial: "K-0001".into(),
            pin: "2580".into(),
        })
        .await
        .expect("first PIN");
    let seed = hex::decode(RFC_SECRET_HEX).expect("hex");
    let code = |c: u64| reference_hotp(&seed, c, 6);
    let token = |admin: &mut okey_e2e::Client| {
        let mut t = admin.tokens.clone();
        async move {
            t.get_token(proto::GetTokenRequest {
                serial: "K-0001".into(),
            })
            .await
            .expect("get")
            .into_inner()
        }
    };
    // The first PIN works (counter 0 spent).
    assert!(
        check(
            &mut admin,
            verify_serial("K-0001", &format!("2580{}", code(0)))
        )
        .await
        .0
    );

    let portal = server.key_with_role("portal-1", "portal").await;
    let change = |serial: &str, code: String, pin: &str| proto::ChangeHolderPinRequest {
        serial: serial.into(),
        code,
        pin: pin.into(),
    };

    // Somebody who does not hold the key, with a right code: refused, nothing spent.
    let mut other = server.client_acting(&portal, "f.other").await;
    let err = other
        .lifecycle
        .change_holder_pin(change("K-0001", code(1), "7395"))
        .await
        .expect_err("not the holder");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(token(&mut admin).await.counter, 1, "no code spent");

    // "Ma clef": the key is the holder's, whatever brought it (here a hand-over without a
    // request), and nobody else's.
    let mine = |keys: proto::KeysResponse| -> Vec<String> {
        keys.keys.into_iter().map(|k| k.serial).collect()
    };
    let theirs = other
        .lifecycle
        .list_my_keys(proto::ListMyKeysRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(mine(theirs).is_empty());
    let mut holder = server.client_acting(&portal, "f.staff").await;
    let held = holder
        .lifecycle
        .list_my_keys(proto::ListMyKeysRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(mine(held), ["K-0001"]);
    // A guessable PIN or one outside the rules: refused before any code is checked.
    for weak in ["1234", "0000", "12", "12ab"] {
        let err = holder
            .lifecycle
            .change_holder_pin(change("K-0001", code(1), weak))
            .await
            .expect_err("PIN rules");
        assert_eq!(err.code(), Code::InvalidArgument, "{weak}: {err:?}");
        assert!(!err.message().contains(weak), "{err:?}");
    }
    assert_eq!(token(&mut admin).await.counter, 1, "no code spent");

    // A wrong code: refused, counted toward the lockout, PIN unchanged.
    let err = holder
        .lifecycle
        .change_holder_pin(change("K-0001", "000000".into(), "7395"))
        .await
        .expect_err("wrong code");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("wrong_code"), "{err:?}");
    assert_eq!(token(&mut admin).await.failures, 1, "counted");

    // The code shown now, with a new PIN: accepted.
    let key = holder
        .lifecycle
        .change_holder_pin(change("K-0001", code(1), "7395"))
        .await
        .expect("changed")
        .into_inner();
    assert_eq!(key.serial, "K-0001");
    assert_eq!(key.holder, "f.staff");
    let after = token(&mut admin).await;
    assert_eq!(
        (after.counter, after.failures),
        (2, 0),
        "code spent, failures cleared"
    );

    // The same code again: a replay, refused, PIN as just set.
    let err = holder
        .lifecycle
        .change_holder_pin(change("K-0001", code(1), "8642"))
        .await
        .expect_err("replay");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // The old PIN no longer logs in; the new one does, by serial and by user.
    let (ok, reason) = check(
        &mut admin,
        verify_serial("K-0001", &format!("2580{}", code(2))),
    )
    .await;
    assert!(!ok);
    assert_eq!(reason, "wrong_pin");
    let (ok, reason) = check(
        &mut admin,
        verify_user("f.staff", &format!("7395{}", code(3))),
    )
    .await;
    assert!(ok, "{reason}");

    // A locked key must be unlocked first: the holder cannot guess codes through this door.
    for _ in 0..10 {
        let _ = holder
            .lifecycle
            .change_holder_pin(change("K-0001", "000000".into(), "7395"))
            .await;
    }
    let locked = token(&mut admin).await;
    assert!(
        locked.locked || locked.failures >= 3,
        "failures count toward the lock: {locked:?}"
    );
    let err = holder
        .lifecycle
        .change_holder_pin(change("K-0001", code(4), "8642"))
        .await
        .expect_err("locked");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("locked"), "{err:?}");
    assert_eq!(
        token(&mut admin).await.counter,
        4,
        "no code spent while locked"
    );

    // The audit chain records each try without the PIN or the code.
    let audit = admin
        .audit
        .list_audit(proto::ListAuditRequest { limit: 1000 })
        .await
        .expect("audit")
        .into_inner();
    let text = format!("{audit:?}");
    assert!(text.contains("pin.holder"), "{text}");
    assert!(text.contains("set by its holder"), "{text}");
    for secret in ["7395", "2580", "8642"] {
        assert!(!text.contains(secret), "{secret} in the audit");
    }
}
