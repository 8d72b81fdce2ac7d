//! The support desk's store: case numbers per unit and year, the number's mail written with the
//! case (the IEN of a primary school director in copy), refusals that write nothing, the queue's
//! order, replies and internal notes, and the temporary key bound to the holder's PIN that stops
//! working on its own, on SQLite and PostgreSQL.

use std::sync::Arc;

use okey_domain::org::Function;
use okey_domain::support::{AttachmentInfo, CaseForm, CaseKind, Priority};
use okey_store::outbox::{MailState, NewMail};
use okey_store::support_db::{CaseFilter, CaseState};
use okey_store::*;

use crate::common::*;
use crate::directory::{person, units};

/// A PNG's signature and IHDR header: enough for the content check.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR";

/// 2026-06-01T00:00:00Z.
const NOW: u64 = 1_780_272_000;

/// Renders every notice as one line naming its template and fields, so a test can read what
/// would be mailed.
struct PlainMailer;

impl LifecycleMailer for PlainMailer {
    fn compose(&self, notice: &Notice, to: &[String]) -> Result<NewMail, String> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(NewMail {
            message_id: format!("<t{n}.{}@okey.test>", std::process::id()),
            template: notice.template().into(),
            to: to.to_vec(),
            cc: Vec::new(),
            subject: notice.template().into(),
            body: format!("{notice:?}").replace(['\n', '\r'], " "),
        })
    }
}

pub(crate) fn form(subject: &str) -> CaseForm {
    CaseForm {
        name: "Marie Hoarau".into(),
        function: "Principale".into(),
        phone: "0262 48 41 41".into(),
        unit_town: "Lycée, Saint-Denis".into(),
        subject: subject.into(),
        population: "enseignant".into(),
        description: "La clé de M. Payet est refusée depuis lundi.".into(),
        location: "Accueil > Applications".into(),
        attachments: vec![AttachmentInfo {
            name: "capture.png".into(),
            media_type: "image/png",
            size: 68,
        }],
    }
}

pub(crate) fn new_case(declarant: &str, priority: Priority, subject: &str) -> NewCase {
    NewCase {
        declarant: declarant.into(),
        kind: CaseKind::Other,
        priority,
        form: form(subject),
        attachment_lines: vec!["capture.png image/png 16 bytes".into()],
        files: vec![NewAttachment {
            name: "capture.png".into(),
            declared: None,
            content: PNG.to_vec(),
        }],
        serial: None,
        serials: Vec::new(),
    }
}

fn directory(s: &Store) {
    let mut units = units();
    units.push(Located {
        origin: "units.csv line 6".into(),
        value: okey_domain::org::Unit::new(
            "SUPPORT",
            "Centre d'assistance",
            okey_domain::org::UnitKind::SupportCentre,
            Some("RECTORAT"),
        )
        .expect("unit"),
    });
    s.import_directory(
        units,
        vec![
            person(2, "head", "0750654D", &[Function::HeadOfSchool]),
            person(3, "teacher", "0750654D", &[Function::Staff]),
            person(4, "ien", "CIRC-1", &[Function::DistrictInspector]),
            person(5, "director", "9740100R", &[Function::SchoolDirector]),
            person(6, "agent", "SUPPORT", &[Function::SupportAgent]),
        ],
        &actor(),
    )
    .expect("import");
}

fn mails(s: &Store) -> Vec<NewMail> {
    s.mail_list(&[MailState::Pending], 100)
        .expect("mails")
        .into_iter()
        .map(|r| r.mail)
        .collect()
}

fn cases_are_numbered_mailed_and_queued(db: &Db) {
    let s = db.open();
    s.set_lifecycle_mailer(Arc::new(PlainMailer));
    directory(&s);
    let a = s
        .open_case(new_case("head", Priority::Minor, "Question"), &actor(), NOW)
        .expect("open");
    assert_eq!(a.number, "0750654D-2026-0001");
    assert_eq!(a.state, CaseState::Open);
    // The screenshot is kept sealed with the case, and opens to the same bytes.
    let files = s.attachment_infos(&case_owner(&a.number)).expect("infos");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].media_type, "image/png");
    let (_, content) = s
        .attachment_content(&case_owner(&a.number), files[0].id)
        .expect("content");
    assert_eq!(content.as_slice(), PNG);
    let b = s
        .open_case(
            new_case("head", Priority::Blocking, "ENT down"),
            &actor(),
            NOW + 10,
        )
        .expect("open");
    assert_eq!(b.number, "0750654D-2026-0002");
    let c = s
        .open_case(
            new_case("director", Priority::Major, "Clé"),
            &actor(),
            NOW + 20,
        )
        .expect("open");
    assert_eq!(c.number, "9740100R-2026-0001", "a sequence per unit");
    assert_eq!(c.copy_to.as_deref(), Some("ien@ac-example.fr"));
    let m = mails(&s);
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].template, "case.opened");
    assert_eq!(m[0].to, ["head@ac-example.fr"]);
    assert!(m[0].cc.is_empty());
    assert!(m[0].body.contains("0750654D-2026-0001"), "{}", m[0].body);
    assert_eq!(m[2].to, ["director@ac-example.fr"]);
    assert_eq!(m[2].cc, ["ien@ac-example.fr"], "the IEN in copy");
    // The queue: open cases by priority, then age.
    let q: Vec<String> = s
        .cases(
            &CaseFilter {
                open_only: true,
                ..CaseFilter::default()
            },
            100,
        )
        .expect("queue")
        .into_iter()
        .map(|c| c.number)
        .collect();
    assert_eq!(q, [b.number.clone(), c.number.clone(), a.number.clone()]);
    // A note is not mailed; a reply and the resolution are, with the IEN in copy.
    s.reply_case(
        &c.number,
        "agent",
        "vérifier le verrou",
        true,
        &actor(),
        NOW + 30,
    )
    .expect("note");
    assert_eq!(mails(&s).len(), 3);
    s.reply_case(
        &c.number,
        "agent",
        "Pouvez-vous rappeler ?",
        false,
        &actor(),
        NOW + 40,
    )
    .expect("reply");
    s.assign_case(&c.number, "agent", None, &actor(), NOW + 45)
        .expect("assign");
    assert!(
        s.assign_case(&c.number, "teacher", None, &actor(), NOW + 45)
            .is_err(),
        "only a support agent is assigned a case"
    );
    let done = s
        .resolve_case(&c.number, "agent", "Clé déverrouillée.", &actor(), NOW + 50)
        .expect("resolve");
    assert_eq!(done.state, CaseState::Resolved);
    assert_eq!(done.assignee.as_deref(), Some("agent"));
    let m = mails(&s);
    assert_eq!(m.len(), 5);
    assert_eq!(m[3].template, "case.reply");
    assert!(m[3].body.contains("Pouvez-vous rappeler ?"));
    assert_eq!(m[4].template, "case.resolved");
    assert_eq!(m[4].cc, ["ien@ac-example.fr"]);
    assert!(m.iter().all(|x| !x.body.contains("vérifier le verrou")));
    let view = s.case(&c.number).expect("case");
    assert_eq!(view.messages.len(), 3);
    assert!(view.messages[0].internal);
    assert!(
        s.reply_case(&c.number, "agent", "encore", false, &actor(), NOW + 60)
            .is_err(),
        "a resolved case takes no reply"
    );
}

fn a_refused_case_writes_nothing(db: &Db) {
    let s = db.open();
    s.set_lifecycle_mailer(Arc::new(PlainMailer));
    directory(&s);
    let e = s
        .open_case(new_case("teacher", Priority::Minor, "x"), &actor(), NOW)
        .expect_err("a teacher may not open a case");
    assert!(matches!(e, StoreError::Forbidden(_)), "{e:?}");
    assert!(e.to_string().contains("direction team"), "{e}");
    let mut c = new_case("head", Priority::Minor, "x");
    c.form.phone.clear();
    let e = s.open_case(c, &actor(), NOW).expect_err("no telephone");
    assert!(e.to_string().contains("telephone"), "{e}");
    let mut c = new_case("head", Priority::Minor, "x");
    c.kind = CaseKind::KeyNotWorking;
    let e = s.open_case(c, &actor(), NOW).expect_err("no key");
    assert!(e.to_string().contains("key serial"), "{e}");
    assert!(
        s.cases(&CaseFilter::default(), 100)
            .expect("list")
            .is_empty()
    );
    assert!(mails(&s).is_empty());
    // The sequence was not taken by the refusals.
    let ok = s
        .open_case(new_case("head", Priority::Minor, "x"), &actor(), NOW)
        .expect("open");
    assert_eq!(ok.number, "0750654D-2026-0001");
}

pub(crate) fn temporary(serial: &str) -> NewToken {
    NewToken {
        serial: serial.into(),
        kind: TokenKind::Software,
        otp: OtpKind::Hotp,
        description: Some("temporary".into()),
        valid_until: Some(NOW + 10 * 86_400),
        ..hotp_token(serial)
    }
}

fn a_temporary_key_carries_the_pin_and_stops_on_its_own(db: &Db) {
    let s = db.open();
    directory(&s);
    s.create_token(
        NewToken {
            holder: Some("head".into()),
            ..hotp_token("LOST1")
        },
        &actor(),
    )
    .expect("token");
    s.set_pin("LOST1", Some(&Pin::new("4711").expect("pin")), &actor())
        .expect("pin");
    let (info, rec) = s
        .issue_temporary_key("LOST1", temporary("TMP1"), None, &actor(), NOW)
        .expect("temporary");
    assert_eq!(info.holder.as_deref(), Some("head"));
    assert!(info.has_pin);
    assert_eq!(rec.expires_at, NOW + 10 * 86_400);
    assert_eq!(
        s.token("LOST1").expect("lost").status,
        TokenStatus::Disabled
    );
    assert_eq!(
        s.temporary_keys("LOST1").expect("list"),
        std::slice::from_ref(&rec)
    );
    let rt = rt();
    let wrong = rt.block_on(verify(
        &s,
        "TMP1",
        &format!("0000{}", hotp(SEED, 0, 6)),
        NOW + 1,
    ));
    assert!(!wrong.accepted, "the holder's PIN, not any");
    let ok = rt.block_on(verify(
        &s,
        "TMP1",
        &format!("4711{}", hotp(SEED, 1, 6)),
        NOW + 2,
    ));
    assert!(ok.accepted, "{ok:?}");
    let late = rt.block_on(verify(
        &s,
        "TMP1",
        &format!("4711{}", hotp(SEED, 2, 6)),
        rec.expires_at,
    ));
    assert!(!late.accepted, "it stops at its validity end: {late:?}");
    let lost = rt.block_on(verify(
        &s,
        "LOST1",
        &format!("4711{}", hotp(SEED, 0, 6)),
        NOW + 3,
    ));
    assert!(!lost.accepted, "the lost key is disabled");
    // A key without a holder, or a PIN that is not the holder's, is refused; nothing written.
    s.create_token(hotp_token("NOHOLDER"), &actor())
        .expect("token");
    assert!(
        s.issue_temporary_key("NOHOLDER", temporary("TMP2"), None, &actor(), NOW)
            .is_err()
    );
    assert!(matches!(s.token("TMP2"), Err(StoreError::UnknownSerial(_))));
    let mut long = temporary("TMP3");
    long.valid_until = Some(NOW + 365 * 86_400);
    assert!(
        s.issue_temporary_key("LOST1", long, None, &actor(), NOW)
            .is_err(),
        "a temporary key is short-lived"
    );
}

/// Something in every support table, for the backup test.
pub(crate) fn fill(s: &Store) {
    let c = s
        .open_case(
            new_case("head", Priority::Major, "Clé perdue"),
            &actor(),
            NOW,
        )
        .expect("case");
    s.reply_case(&c.number, "support", "note", true, &actor(), NOW)
        .expect("note");
    s.create_token(
        NewToken {
            holder: Some("head".into()),
            ..hotp_token("K4")
        },
        &actor(),
    )
    .expect("token");
    s.set_pin("K4", Some(&Pin::new("4711").expect("pin")), &actor())
        .expect("pin");
    s.issue_temporary_key("K4", temporary("T4"), Some(c.number), &actor(), NOW)
        .expect("temporary");
}

both!(
    cases_are_numbered_mailed_and_queued,
    a_refused_case_writes_nothing,
    a_temporary_key_carries_the_pin_and_stops_on_its_own,
);
