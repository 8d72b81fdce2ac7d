//! Moving an embedded store to PostgreSQL: every row as it was, the sealed seeds opening under
//! the same master key, the audit chain intact, and a second run refused.

use okey_store::*;

use crate::common::*;

#[test]
fn an_embedded_store_moves_to_postgres_whole_and_only_once() {
    let Some(target) = Db::new(Kind::Postgres) else {
        eprintln!("skipped: the PostgreSQL server binaries are not installed");
        return;
    };
    let source = Db::new(Kind::Sqlite).expect("sqlite");
    let s = source.open();
    let mut t = hotp_token("MV1");
    t.holder = Some("maud".into());
    s.create_token(t, &actor()).expect("create");
    s.create_token(totp_token("MV2"), &actor()).expect("create");
    s.create_lot(
        LotRow {
            id: "LOT-MV".into(),
            kind: "2d".parse().expect("kind"),
            unit: "0750001A".into(),
            name: "lot moved".into(),
            validity_days: None,
            created_at: 1_800_000_000,
        },
        &actor(),
    )
    .expect("lot");
    s.add_api_key("radius-1", [9; 32], &["verifier".into()], &actor())
        .expect("api key");
    s.enqueue_mail(
        outbox::NewMail {
            message_id: "<mv-1@okey.test>".into(),
            template: "test".into(),
            to: vec!["maud@ac-example.fr".into()],
            cc: Vec::new(),
            subject: "essai".into(),
            body: "bonjour".into(),
        },
        &actor(),
    )
    .expect("mail");
    rt().block_on(async {
        for c in 0..3 {
            assert!(verify(&s, "MV1", &hotp(SEED, c, 6), 10 + c).await.accepted);
        }
        assert!(!verify(&s, "MV1", "000000", 20).await.accepted);
    });
    let before_tokens = s
        .list_tokens(&TokenFilter::default(), None, 100)
        .expect("list");
    let before_audit = s.audit_verify().expect("audit");
    assert!(before_audit.ok());
    let before_mails = s
        .mail_list(&[outbox::MailState::Pending], 10)
        .expect("mails");
    drop(s);

    let url = target.url().expect("url").to_owned();
    let mut seen = Vec::new();
    let report = pg::copy_sqlite_to_postgres(source.path(), &url, &mut |t, done, total| {
        seen.push((t.to_owned(), done, total))
    })
    .expect("copy");
    let count = |t: &str| report.tables.iter().find(|r| r.0 == t).map(|r| r.1);
    assert_eq!(count("tokens"), Some(2));
    assert_eq!(count("token_state"), Some(2));
    assert_eq!(count("audit"), Some(before_audit.records));
    assert_eq!(count("api_keys"), Some(1));
    assert_eq!(count("outbox"), Some(1));
    assert_eq!(count("lots"), Some(1));
    // Progress was reported for every table, ending at its total.
    for (t, n) in &report.tables {
        assert!(seen.contains(&(t.clone(), *n, *n)), "{t}: {seen:?}");
    }

    // The same master key opens the moved store; everything reads as before.
    let p = target.open();
    assert_eq!(
        p.list_tokens(&TokenFilter::default(), None, 100)
            .expect("list"),
        before_tokens
    );
    let after_audit = p.audit_verify().expect("audit");
    assert!(after_audit.ok(), "{after_audit:?}");
    assert_eq!(after_audit.head, before_audit.head);
    assert_eq!(
        p.mail_list(&[outbox::MailState::Pending], 10)
            .expect("mails"),
        before_mails
    );
    assert_eq!(p.lot("LOT-MV").expect("lot").lot.name, "lot moved");
    assert_eq!(
        p.api_key(&[9; 32]).expect("key").map(|k| k.name),
        Some("radius-1".into())
    );
    rt().block_on(async {
        // The counter moved with the row: used codes stay used, the next one works.
        assert!(!verify(&p, "MV1", &hotp(SEED, 2, 6), 30).await.accepted);
        assert!(verify(&p, "MV1", &hotp(SEED, 3, 6), 31).await.accepted);
    });
    // New rows with identities continue after the copied ones.
    let id = p
        .enqueue_mail(
            outbox::NewMail {
                message_id: "<mv-2@okey.test>".into(),
                template: "test".into(),
                to: vec!["maud@ac-example.fr".into()],
                cc: Vec::new(),
                subject: "essai".into(),
                body: "encore".into(),
            },
            &actor(),
        )
        .expect("a new mail");
    assert!(id > before_mails[0].id);
    assert!(p.audit_verify().expect("audit").ok());
    let records = p.audit_verify().expect("audit").records;
    drop(p);

    // A second run finds data and writes nothing.
    let err = pg::copy_sqlite_to_postgres(source.path(), &url, &mut |_, _, _| {})
        .expect_err("a second copy");
    assert!(
        matches!(&err, StoreError::Precondition(m) if m.contains("empty")),
        "{err}"
    );
    assert_eq!(
        target.open().audit_verify().expect("audit").records,
        records
    );
}
