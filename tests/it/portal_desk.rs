//! The support centre's desk through a portal: a `portal` caller unlocks and resyncs a key only
//! for a person whose functions make them the support centre; for anyone else (a head of
//! school, a member of staff) it is `PERMISSION_DENIED`, audited, and the key is left as it was.

use okey_e2e::{RFC_SECRET_HEX, Server, check, hotp_token, reference_hotp, verify_serial};
use okey_server::proto;
use tonic::Code;

const UNITS: &str = "id,kind,name,parent,under_contract
RECTORAT,rectorat,Rectorat,,
SUPPORT,support_centre,Centre de support,RECTORAT,
9740001H,school,Lycée A,RECTORAT,yes
";

const PEOPLE: &str = "id,name,email,unit,functions
f.support,Support,f.support@ac-example.fr,SUPPORT,support
f.head,Head,f.head@ac-example.fr,9740001H,head
f.staff,Staff,f.staff@ac-example.fr,9740001H,staff
";

#[tokio::test]
async fn a_portal_unlocks_and_resyncs_for_the_support_centre_only() {
    // No soft lock: ten wrong codes lock the key until the support centre unlocks it.
    let server = Server::start_with("[lockout]\nsoft_after = 0\n");
    server.import_directory(UNITS, PEOPLE);
    let mut admin = server.admin().await;
    admin
        .tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("D-0001", RFC_SECRET_HEX)],
        })
        .await
        .expect("import");
    let seed = hex::decode(RFC_SECRET_HEX).expect("hex");
    // Lock the key: ten wrong codes.
    for _ in 0..10 {
        assert!(!check(&mut admin, verify_serial("D-0001", "000000")).await.0);
    }
    let failures = |t: proto::Token| t.failures;
    let before = admin
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: "D-0001".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(before.locked && before.failures >= 10, "{before:?}");

    let key = server.key_with_role("portal-1", "portal").await;
    for person in ["f.head", "f.staff"] {
        let mut c = server.client_acting(&key, person).await;
        let err = c
            .tokens
            .unlock_token(proto::TokenRef {
                serial: "D-0001".into(),
            })
            .await
            .expect_err("not the support centre");
        assert_eq!(err.code(), Code::PermissionDenied, "{person}: {err:?}");
        assert!(err.message().contains(person), "{err:?}");
        let err = c
            .tokens
            .resync_token(proto::ResyncTokenRequest {
                serial: "D-0001".into(),
                first_code: reference_hotp(&seed, 50, 6),
                second_code: reference_hotp(&seed, 51, 6),
            })
            .await
            .expect_err("not the support centre");
        assert_eq!(err.code(), Code::PermissionDenied, "{person}: {err:?}");
    }
    let unchanged = admin
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: "D-0001".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(unchanged.locked, "still locked");
    assert_eq!(failures(unchanged.clone()), before.failures);
    assert_eq!(unchanged.counter, before.counter, "not resynced");

    let mut desk = server.client_acting(&key, "f.support").await;
    let unlocked = desk
        .tokens
        .unlock_token(proto::TokenRef {
            serial: "D-0001".into(),
        })
        .await
        .expect("the support centre unlocks")
        .into_inner();
    assert_eq!((unlocked.failures, unlocked.locked), (0, false));
    desk.tokens
        .resync_token(proto::ResyncTokenRequest {
            serial: "D-0001".into(),
            first_code: reference_hotp(&seed, 50, 6),
            second_code: reference_hotp(&seed, 51, 6),
        })
        .await
        .expect("the support centre resyncs");
    assert_eq!(
        check(
            &mut admin,
            verify_serial("D-0001", &reference_hotp(&seed, 52, 6))
        )
        .await,
        (true, "accepted".into())
    );

    // The refusals and the desk's changes are on the audit chain, naming the person.
    let records = admin.audit_records(200).await;
    let denied = records
        .iter()
        .filter(|r| r.reason == "permission_denied" && r.actor == "portal-1")
        .count();
    assert!(denied >= 4, "{records:?}");
    assert!(
        records.iter().any(|r| r.actor == "portal-1 for f.support"),
        "{records:?}"
    );
}
