//! The mail outbox: durable with the transaction that enqueues it, delivered state by state.

use okey_store::backend::Backend as _;
use okey_store::outbox::{self, MailState, NewMail};
use okey_store::*;

use crate::common::*;

fn mail(n: u32) -> NewMail {
    NewMail {
        message_id: format!("<okey.{n}@example.org>"),
        template: "test".into(),
        to: vec!["marie.hoarau@ac-example.fr".into(), "b@example.org".into()],
        cc: Vec::new(),
        subject: "Clé prête à être retirée".into(),
        body: "Bonjour,\n\nvotre clé est prête.\n".into(),
    }
}

#[test]
fn a_mail_is_durable_exactly_when_its_transaction_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite::Sqlite::open(dir.path()).expect("open");
    let mut tx = db.write_session().expect("session");
    tx.begin().expect("begin");
    outbox::enqueue(tx.as_mut(), &mail(1), 100).expect("enqueue");
    tx.rollback().expect("rollback");
    assert!(
        db.mail_list(&[MailState::Pending], 10)
            .expect("list")
            .is_empty()
    );

    tx.begin().expect("begin");
    let id = outbox::enqueue(tx.as_mut(), &mail(2), 100).expect("enqueue");
    tx.commit().expect("commit");
    drop(tx);
    drop(db);
    // Reopened: the committed mail is there, pending, due at once, with its Message-ID.
    let db = sqlite::Sqlite::open(dir.path()).expect("reopen");
    let due = db.mail_due(100, 10).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, id);
    assert_eq!(due[0].mail, mail(2));
    assert_eq!(due[0].state, MailState::Pending);
    assert_eq!(due[0].attempts, 0);
    assert!(db.mail_due(99, 10).expect("due").is_empty());
}

fn retries_then_sent_then_nothing_more(db: &Db) {
    let store = db.open();
    let id = store.enqueue_mail(mail(1), &actor()).expect("enqueue");
    let created = store.mail_list(&[MailState::Pending], 10).expect("list")[0].created_at;
    let stats = store.mail_stats().expect("stats");
    assert_eq!((stats.pending, stats.sent, stats.failed), (1, 0, 0));
    assert_eq!(stats.oldest_pending_at, Some(created));
    assert_eq!(store.mail_next_due().expect("next"), Some(created));

    let rt = rt();
    rt.block_on(store.mail_retry(id, 1, created + 60, "connection refused"))
        .expect("retry");
    assert!(store.mail_due(created + 59, 10).expect("due").is_empty());
    let due = store.mail_due(created + 60, 10).expect("due");
    assert_eq!(due[0].attempts, 1);
    assert_eq!(due[0].last_error.as_deref(), Some("connection refused"));
    assert_eq!(store.mail_next_due().expect("next"), Some(created + 60));

    rt.block_on(store.mail_sent(id, 2, created + 61))
        .expect("sent");
    assert!(store.mail_due(u64::MAX >> 2, 10).expect("due").is_empty());
    let sent = store.mail_list(&[MailState::Sent], 10).expect("list");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].sent_at, Some(created + 61));
    assert_eq!(sent[0].attempts, 2);
    let stats = store.mail_stats().expect("stats");
    assert_eq!((stats.pending, stats.sent, stats.failed), (0, 1, 0));
    assert_eq!(stats.oldest_pending_at, None);
    assert_eq!(store.mail_next_due().expect("next"), None);

    // A sent mail cannot be sent, retried or failed again.
    assert!(matches!(
        rt.block_on(store.mail_sent(id, 3, created + 62)),
        Err(StoreError::Precondition(_))
    ));
    assert!(
        rt.block_on(store.mail_retry(id, 3, created + 62, "x"))
            .is_err()
    );
    assert!(
        rt.block_on(store.mail_failed(id, 3, created + 62, "x"))
            .is_err()
    );

    let id2 = store.enqueue_mail(mail(2), &actor()).expect("enqueue");
    rt.block_on(store.mail_failed(id2, 1, created + 70, "550 no such user"))
        .expect("failed");
    let failed = store.mail_list(&[MailState::Failed], 10).expect("list");
    assert_eq!(failed[0].last_error.as_deref(), Some("550 no such user"));
    assert_eq!(failed[0].sent_at, None);
    assert_eq!(
        store
            .mail_list(&[MailState::Pending, MailState::Failed], 10)
            .expect("list")
            .len(),
        1
    );
    // Each enqueue left an audit record in the chain.
    assert!(store.audit_verify().expect("audit").ok());
    let actions: Vec<String> = store
        .audit_tail(10)
        .expect("tail")
        .into_iter()
        .map(|r| r.entry.action)
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "mail.enqueue").count(), 2);
}

fn bad_mails_are_refused_and_write_nothing(db: &Db) {
    let store = db.open();
    store.enqueue_mail(mail(1), &actor()).expect("enqueue");
    let check = |edit: &dyn Fn(&mut NewMail), field: &str| {
        let mut m = mail(7);
        edit(&mut m);
        match store.enqueue_mail(m, &actor()) {
            Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    };
    check(
        &|m| m.message_id = "<okey.1@example.org>".into(),
        "message id",
    );
    check(
        &|m| m.message_id = "okey.7@example.org".into(),
        "message id",
    );
    check(
        &|m| m.message_id = "<okey 7@example.org>".into(),
        "message id",
    );
    check(&|m| m.to.clear(), "recipients");
    check(&|m| m.to = vec!["a@b".into(); 51], "recipients");
    check(&|m| m.to = vec!["a@b\r\nBcc: x@y".into()], "recipient");
    check(&|m| m.subject = "Objet\r\nBcc: x@y".into(), "subject");
    check(&|m| m.subject = " ".into(), "subject");
    check(&|m| m.body = "a\u{0}b".into(), "body");
    check(&|m| m.body = "x".repeat(outbox::MAX_BODY + 1), "body");
    check(&|m| m.template = "../x".into(), "template");
    let all = store
        .mail_list(
            &[MailState::Pending, MailState::Sent, MailState::Failed],
            100,
        )
        .expect("list");
    assert_eq!(all.len(), 1);
}

both!(
    retries_then_sent_then_nothing_more,
    bad_mails_are_refused_and_write_nothing,
);
