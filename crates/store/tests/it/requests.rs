//! Key requests in the store: reminders after the configured days, each sent once, and a
//! refused move that writes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use okey_domain::org::Function;
use okey_domain::request::{Need, RequestedKey};
use okey_store::outbox::{MailState, NewMail};
use okey_store::*;

use crate::common::*;

const NOW: u64 = 1_800_000_000;

/// Renders every notice as its template's name, so the test reads which mails were queued.
struct Names(AtomicU64);

impl LifecycleMailer for Names {
    fn compose(&self, notice: &Notice, to: &[String]) -> Result<NewMail, String> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        Ok(NewMail {
            message_id: format!("<okey.{n}@example.org>"),
            template: notice.template().to_owned(),
            to: to.to_vec(),
            cc: vec![],
            subject: notice.template().to_owned(),
            body: "x\n".into(),
        })
    }
}

fn acting(person: &str) -> Acting {
    Acting {
        actor: Actor::new(person, "manager"),
        person: Some(person.into()),
        central: vec![],
        manages: vec![],
    }
}

fn templates(s: &Store) -> Vec<(String, Vec<String>)> {
    s.mail_list(&[MailState::Pending], 100)
        .expect("outbox")
        .into_iter()
        .map(|m| (m.mail.template, m.mail.to))
        .collect()
}

#[test]
fn a_waiting_request_reminds_its_validator_once_per_configured_day() {
    let db = Db::new(Kind::Sqlite).expect("sqlite");
    let s = db.open();
    s.set_lifecycle_mailer(Arc::new(Names(AtomicU64::new(0))));
    s.import_directory(
        crate::directory::units(),
        vec![
            crate::directory::person(2, "head", "0750654D", &[Function::HeadOfSchool]),
            crate::directory::person(3, "teacher", "0750654D", &[Function::Staff]),
        ],
        &actor(),
    )
    .expect("import");
    s.create_lot(
        LotRow {
            id: "S".into(),
            kind: "2d".parse().expect("kind"),
            unit: "0750654D".into(),
            name: "lot S".into(),
            validity_days: None,
            created_at: NOW,
        },
        &actor(),
    )
    .expect("lot");
    let r = s
        .file_request(
            NewRequest {
                need: Need::NewKey,
                key: RequestedKey::Hardware,
                reason: "accès".into(),
                validator: None,
                attachments: vec![NewAttachment {
                    name: "a.png".into(),
                    declared: None,
                    content: b"\x89PNG\r\n\x1a\n....".to_vec(),
                }],
                submit: true,
            },
            &acting("teacher"),
            NOW,
        )
        .expect("file");
    assert_eq!(r.row.state, "submitted");
    assert_eq!(
        templates(&s),
        vec![(
            "request.waiting".to_owned(),
            vec!["head@ac-example.fr".to_owned()]
        )]
    );
    let day = 86_400;
    let remind = |at: u64| s.remind_requests(vec![7, 3], &actor(), at).expect("remind");
    assert_eq!(remind(NOW + 2 * day), 0);
    assert_eq!(remind(NOW + 3 * day), 1);
    assert_eq!(remind(NOW + 3 * day + 60), 0, "once per configured day");
    assert_eq!(remind(NOW + 6 * day), 0);
    assert_eq!(remind(NOW + 7 * day), 1);
    assert_eq!(remind(NOW + 30 * day), 0, "no value left");
    let reminders = templates(&s)
        .into_iter()
        .filter(|(t, _)| t == "request.reminder")
        .count();
    assert_eq!(reminders, 2);

    // The requester cannot approve; the refusal writes nothing (no event, no mail).
    let before = s.request_view(r.row.id, None).expect("view");
    let e = s
        .decide_request(r.row.id, true, None, &acting("teacher"), NOW)
        .expect_err("own request");
    assert!(matches!(e, StoreError::Forbidden(_)), "{e}");
    let after = s.request_view(r.row.id, None).expect("view");
    assert_eq!(before, after);
    assert_eq!(templates(&s).len(), 3);
}
