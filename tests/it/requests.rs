//! Key requests (seeds 001 and 002) end to end: a real `okey serve`, the `okey` CLI acting as
//! directory people through keys bound to them, and a real SMTP server on loopback reading the
//! mails each step sends.

use std::path::Path;
use std::time::Duration;

use okey_e2e::{RFC_SECRET_HEX, SmtpSink, check, reference_hotp, unused_port, verify_user};
use serde_json::Value;

use crate::documents::{LYCEE, School};

const HEAD_MAIL: &str = "marie-helene.lefevre@ac-reunion.fr";
const AGENT_MAIL: &str = "eloise.techer@ac-reunion.fr";
const CHARTER_NUMBER: &str = "CH-2026-07";

fn smtp_config(port: u16) -> String {
    format!(
        "[smtp]\n\
         relay = \"127.0.0.1\"\n\
         port = {port}\n\
         tls = \"none\"\n\
         from = \"okey <okey@ac-reunion.fr>\"\n\
         retry_initial_seconds = 1\n\
         retry_max_seconds = 1\n\
         poll_seconds = 1\n\
         timeout_seconds = 5\n"
    )
}

/// The mails received for `address` with a subject containing `subject`.
fn mails_to<'a>(got: &'a [Value], address: &str, subject: &str) -> Vec<&'a Value> {
    got.iter()
        .filter(|m| {
            m["rcpt_tos"]
                .as_array()
                .is_some_and(|r| r.iter().any(|a| a == address))
                && m["subject"].as_str().is_some_and(|s| s.contains(subject))
        })
        .collect()
}

/// Wait until exactly one mail to `address` about `subject` arrived; return its body on one line.
fn one_mail(sink: &SmtpSink, address: &str, subject: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = sink.received();
        let found = mails_to(&got, address, subject);
        if found.len() == 1 || std::time::Instant::now() > deadline {
            assert_eq!(
                found.len(),
                1,
                "mails to {address} about {subject:?}: {}",
                serde_json::to_string_pretty(&got).unwrap_or_default()
            );
            return found[0]["body"]
                .as_str()
                .expect("body")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn pdf(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    std::fs::write(
        &p,
        b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n",
    )
    .expect("pdf");
    p.to_str().expect("path").to_owned()
}

struct Bench {
    s: School,
    sink: SmtpSink,
    agent: String,
    other: String,
    dir: tempfile::TempDir,
}

impl Bench {
    async fn new(serials: &[&str]) -> Bench {
        let sink = SmtpSink::start(unused_port());
        let s = School::new(&smtp_config(sink.port), serials).await;
        let agent = s
            .server
            .key_for_person("e.agent", "manager", "e.agent")
            .await;
        let other = s.server.key_for_person("n.un", "manager", "n.un").await;
        let dir = tempfile::tempdir().expect("dir");
        let charter = dir.path().join("charte.pdf");
        std::fs::write(&charter, b"%PDF-1.7 Charte d'utilisation ... CH-2026-07").expect("charter");
        s.admin_ok(&[
            "charter",
            "publish",
            charter.to_str().expect("path"),
            "--number",
            CHARTER_NUMBER,
        ]);
        Bench {
            s,
            sink,
            agent,
            other,
            dir,
        }
    }

    fn show(&self, key: &str, id: u64) -> Value {
        self.s.json(key, &["request", "show", &id.to_string()])
    }

    fn requests_of(&self, key: &str) -> Vec<Value> {
        self.s
            .json(key, &["request", "list"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn id_of(v: &Value) -> u64 {
    v["id"].as_u64().expect("request id")
}

/// 001 and 002, the 2D hardware path: a request with its attachment reaches the head of
/// school by mail, the head approves, the requester signs the charter and chooses the PIN, a
/// key is reserved from the lycée's lot and the requester is told to collect it, books a slot,
/// the head hands the key over, and the first login with PIN ‖ OTP is accepted.
#[tokio::test]
async fn a_2d_hardware_request_goes_from_draft_to_hand_over_and_a_first_login() {
    let b = Bench::new(&["R1"]).await;
    let s = &b.s;
    s.ok(&s.support.clone(), &["lot", "register", LYCEE, "R1"]);
    let at = (okey_server::clock::now() + 2 * 86_400).to_string();
    let slot = s.json(
        &s.head,
        &[
            "request",
            "slots",
            LYCEE,
            "--offer",
            &at,
            "--place",
            "Secrétariat, bureau 12",
        ],
    );
    let slot = slot["slot"].as_u64().expect("slot id");

    let attach = pdf(b.dir.path(), "arrete.pdf");
    let r = s.json(
        &b.agent,
        &[
            "request",
            "new",
            "--type",
            "hardware",
            "--reason",
            "accès aux applications de gestion",
            "--attach",
            &attach,
        ],
    );
    let id = id_of(&r);
    assert_eq!(r["state"], "submitted", "{r}");
    assert_eq!(r["validator"], "p.proviseur");
    assert_eq!(r["lot"], LYCEE);
    assert_eq!(r["attachments"][0]["media_type"], "application/pdf");
    let body = one_mail(&b.sink, HEAD_MAIL, "à valider");
    assert!(body.contains("Éloïse Técher"), "{body}");
    assert!(body.contains("accès aux applications de gestion"), "{body}");

    // The head's home list shows what waits for them.
    let waiting = s.json(&s.head, &["request", "list", "--waiting-for-me"]);
    assert_eq!(waiting.as_array().map(Vec::len), Some(1), "{waiting}");
    assert_eq!(id_of(&waiting[0]), id);

    let r = s.json(&s.head, &["request", "approve", &id.to_string()]);
    assert_eq!(r["state"], "approved", "{r}");
    one_mail(&b.sink, AGENT_MAIL, "est validée");

    // A wrong charter number is bad input (exit 2), nothing signed.
    let out = s.run(
        &b.agent,
        &[
            "request",
            "charter",
            &id.to_string(),
            "--number",
            "CH-2025-01",
            "--accept",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the number printed"),
        "{out:?}"
    );
    assert_eq!(b.show(&b.agent, id)["charter_version"], 0);
    let r = s.json(
        &b.agent,
        &[
            "request",
            "charter",
            &id.to_string(),
            "--number",
            "ch-2026-07",
            "--accept",
        ],
    );
    assert_eq!(r["charter_version"], 1, "{r}");

    // A weak PIN is refused, its sentence does not repeat it, nothing is kept.
    let out = s.server.cli(
        &["request", "pin", &id.to_string()],
        &[("OKEY_API_KEY", &b.agent), ("OKEY_PIN", "1234")],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("too easy to guess") && !err.contains("1234"),
        "{err}"
    );
    assert_eq!(b.show(&b.agent, id)["pin_set"], false);
    let out = s.server.cli(
        &["request", "pin", &id.to_string(), "--json"],
        &[("OKEY_API_KEY", &b.agent), ("OKEY_PIN", "2580")],
    );
    assert!(out.status.success(), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["state"], "ready_for_pickup", "{r}");
    assert_eq!(r["serial"], "R1");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("2580"));
    let body = one_mail(&b.sink, AGENT_MAIL, "votre clé est prête");
    assert!(body.contains("Lot du lycée Leconte de Lisle"), "{body}");

    let r = s.json(
        &b.agent,
        &[
            "request",
            "appointment",
            &id.to_string(),
            "--slot",
            &slot.to_string(),
        ],
    );
    assert_eq!(r["appointment"]["slot"], slot, "{r}");
    assert_eq!(r["appointment"]["place"], "Secrétariat, bureau 12");

    // 001 step 5: the head marks the key handed over; the request is completed and the key
    // has the PIN the requester chose (nobody else typed it).
    s.ok(&s.head, &["key", "handover", "R1", "--to", "e.agent"]);
    let r = b.show(&b.agent, id);
    assert_eq!(r["state"], "completed", "{r}");
    let mut c = s.server.admin().await;
    let seed = hex::decode(RFC_SECRET_HEX).expect("hex");
    let wrong = format!("1234{}", reference_hotp(&seed, 0, 6));
    assert!(!check(&mut c, verify_user("e.agent", &wrong)).await.0);
    let right = format!("2580{}", reference_hotp(&seed, 1, 6));
    let (ok, why) = check(&mut c, verify_user("e.agent", &right)).await;
    assert!(ok, "first login with PIN and OTP: {why}");
    // The audit chain holds every step.
    let audit = s.admin_ok(&["audit", "list", "--limit", "200"]);
    for step in [
        "request.file",
        "request.submit",
        "request.approve",
        "request.charter",
        "request.pin",
        "request.key_ready",
        "request.appointment",
        "request.complete",
    ] {
        assert!(audit.contains(step), "{step} in the audit: {audit}");
    }
}

/// The refusals: a refusal with its reason mailed to the requester, a draft without
/// attachments that never reaches the validator, someone else's request, approving one's own,
/// oversized and disguised attachments (nothing written), and staff of a school outside
/// contract.
#[tokio::test]
async fn refusals_drafts_and_bad_input_write_nothing() {
    let b = Bench::new(&[]).await;
    let s = &b.s;

    // A draft without attachments: no mail to the head, nothing on their list.
    let r = s.json(
        &b.agent,
        &[
            "request",
            "new",
            "--type",
            "hardware",
            "--reason",
            "remplacement",
        ],
    );
    let draft = id_of(&r);
    assert_eq!(r["state"], "draft", "{r}");
    let out = s.run(&b.agent, &["request", "submit", &draft.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stays a draft"),
        "{out:?}"
    );
    let waiting = s.json(&s.head, &["request", "list", "--waiting-for-me"]);
    assert_eq!(waiting.as_array().map(Vec::len), Some(0), "{waiting}");

    // One open request per need.
    let attach = pdf(b.dir.path(), "arrete.pdf");
    let out = s.run(
        &b.agent,
        &[
            "request", "new", "--type", "hardware", "--reason", "x", "--attach", &attach,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already have an open request"));

    // Disguised and oversized attachments: refused, nothing kept.
    let script = b.dir.path().join("justificatif.pdf");
    std::fs::write(&script, b"#!/bin/sh\nrm -rf /\n").expect("script");
    let big = b.dir.path().join("scan.pdf");
    let mut content = b"%PDF-1.7\n".to_vec();
    content.resize(5 * 1024 * 1024 + 1, b' ');
    std::fs::write(&big, content).expect("big");
    for (file, says) in [(&script, "not a PDF, PNG or JPEG"), (&big, "at most 5 MiB")] {
        let out = s.run(
            &b.agent,
            &[
                "request",
                "attach",
                &draft.to_string(),
                file.to_str().expect("path"),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{out:?}"
        );
    }
    assert_eq!(b.show(&b.agent, draft)["attachments"], Value::Array(vec![]));

    // Someone else's request: not seen, not cancelled.
    let out = s.run(&b.other, &["request", "show", &draft.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = s.run(&b.other, &["request", "cancel", &draft.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(b.show(&b.agent, draft)["state"], "draft");

    // With its attachment the draft goes to the head; its requester cannot approve it.
    s.ok(
        &b.agent,
        &["request", "attach", &draft.to_string(), &attach],
    );
    let r = s.json(&b.agent, &["request", "submit", &draft.to_string()]);
    assert_eq!(r["state"], "submitted", "{r}");
    one_mail(&b.sink, HEAD_MAIL, "à valider");
    let out = s.run(&b.agent, &["request", "approve", &draft.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not by the requester"),
        "{out:?}"
    );
    assert_eq!(b.show(&b.agent, draft)["state"], "submitted");

    // A refusal says why, to the requester.
    let out = s.run(
        &s.head,
        &["request", "refuse", &draft.to_string(), "--reason", ""],
    );
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let r = s.json(
        &s.head,
        &[
            "request",
            "refuse",
            &draft.to_string(),
            "--reason",
            "pas de besoin justifié",
        ],
    );
    assert_eq!(r["state"], "refused", "{r}");
    let body = one_mail(&b.sink, AGENT_MAIL, "est refusée");
    assert!(body.contains("pas de besoin justifié"), "{body}");
    assert_eq!(b.requests_of(&b.agent).len(), 1);
}
