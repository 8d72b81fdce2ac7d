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
    // The requester reads the charter in force: the bytes published, and their SHA-256 as
    // coreutils' sha256sum gives it.
    let got = b.dir.path().join("charte-lue.pdf");
    let doc = s.json(
        &b.agent,
        &["charter", "get", "--output", got.to_str().expect("path")],
    );
    assert_eq!(
        std::fs::read(&got).expect("written"),
        std::fs::read(b.dir.path().join("charte.pdf")).expect("published")
    );
    let sum = std::process::Command::new("sha256sum")
        .arg(&got)
        .output()
        .expect("sha256sum");
    let sum = String::from_utf8_lossy(&sum.stdout);
    assert_eq!(
        doc["sha256"],
        sum.split_whitespace().next().expect("digest"),
        "{doc}"
    );
    assert_eq!(doc["version"], 1, "{doc}");
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

const UNITS: &str = "id,kind,name,parent,under_contract\n\
RECTORAT,rectorat,Rectorat de La Réunion,,\n\
SUPPORT,support_centre,Centre de support,RECTORAT,\n\
CIRC-NORD,district,Circonscription Saint-Denis Nord,RECTORAT,\n\
9740001H,school,Lycée Leconte de Lisle,RECTORAT,yes\n\
9741234Y,school,Cours privé du Nord,RECTORAT,no\n\
9740100R,school,École Jean Albany,CIRC-NORD,yes\n";

const PEOPLE: &str = "id,name,email,unit,functions\n\
p.proviseur,Marie-Hélène Lefèvre,marie-helene.lefevre@ac-reunion.fr,9740001H,head\n\
e.agent,Éloïse Técher,eloise.techer@ac-reunion.fr,9740001H,staff\n\
p.ien,François Grégoire,francois.gregoire@ac-reunion.fr,CIRC-NORD,ien\n\
p.support,Jean Payet,jean.payet@ac-reunion.fr,SUPPORT,support\n\
n.un,Noémie Hoarau,noemie.hoarau@ac-reunion.fr,CIRC-NORD,staff\n\
h.prive,Hugo Lebon,hugo.lebon@ac-reunion.fr,9741234Y,staff\n\
d.directeur,Denis Fontaine,denis.fontaine@ac-reunion.fr,9740100R,director\n\
t.prof,Tania Rivière,tania.riviere@ac-reunion.fr,9740100R,staff\n";

const CIRC: &str = "1D-CIRC-NORD";
const IEN_MAIL: &str = "francois.gregoire@ac-reunion.fr";

/// A server with the wider directory above (a school outside contract, a 1D school with its
/// director), the lycée's and the district's lots, and `serials` imported.
async fn org(serials: &[&str]) -> Bench {
    org_with(serials, "", "").await
}

/// [`org`] with top-level settings `top` and TOML tables `tables` in the configuration.
async fn org_with(serials: &[&str], top: &str, tables: &str) -> Bench {
    let sink = SmtpSink::start(unused_port());
    let server =
        okey_e2e::Server::start_with(&format!("{top}\n{}\n{tables}", smtp_config(sink.port)));
    let dir = tempfile::tempdir().expect("dir");
    let (people, units) = (dir.path().join("people.csv"), dir.path().join("units.csv"));
    std::fs::write(&people, PEOPLE).expect("people");
    std::fs::write(&units, UNITS).expect("units");
    let out = server.cli(
        &[
            "directory",
            "import",
            people.to_str().expect("path"),
            units.to_str().expect("path"),
        ],
        &[],
    );
    assert!(out.status.success(), "directory import: {out:?}");
    let s = School {
        head: server
            .key_for_person("p.proviseur", "manager", "p.proviseur")
            .await,
        ien: server.key_for_person("p.ien", "manager", "p.ien").await,
        support: server.key_with_role("p.support", "support").await,
        server,
    };
    for (id, kind, unit, name) in [
        (LYCEE, "2d", "9740001H", "Lot du lycée Leconte de Lisle"),
        (CIRC, "1d", "CIRC-NORD", "Lot de la circonscription Nord"),
    ] {
        s.admin_ok(&[
            "lot", "create", id, "--kind", kind, "--unit", unit, "--name", name,
        ]);
    }
    if !serials.is_empty() {
        let mut admin = s.server.admin().await;
        admin
            .tokens
            .import_tokens(okey_server::proto::ImportTokensRequest {
                tokens: serials
                    .iter()
                    .map(|x| okey_e2e::hotp_token(x, RFC_SECRET_HEX))
                    .collect(),
            })
            .await
            .expect("import");
    }
    let agent = s
        .server
        .key_for_person("e.agent", "manager", "e.agent")
        .await;
    let other = s.server.key_for_person("n.un", "manager", "n.un").await;
    let charter = dir.path().join("charte.pdf");
    std::fs::write(&charter, b"%PDF-1.7 Charte CH-2026-07").expect("charter");
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

fn file(b: &Bench, key: &str, extra: &[&str]) -> Value {
    let attach = pdf(b.dir.path(), "justificatif.pdf");
    let mut args = vec![
        "request",
        "new",
        "--type",
        "hardware",
        "--reason",
        "accès aux applications",
        "--attach",
        &attach,
    ];
    args.extend_from_slice(extra);
    b.s.json(key, &args)
}

fn charter_and_pin(b: &Bench, key: &str, id: u64, pin: Option<&str>) -> Value {
    b.s.json(
        key,
        &[
            "request",
            "charter",
            &id.to_string(),
            "--number",
            CHARTER_NUMBER,
            "--accept",
        ],
    );
    match pin {
        Some(p) => {
            let out = b.s.server.cli(
                &["request", "pin", &id.to_string(), "--json"],
                &[("OKEY_API_KEY", key), ("OKEY_PIN", p)],
            );
            assert!(out.status.success(), "{out:?}");
            serde_json::from_slice(&out.stdout).expect("json")
        }
        None => b.show(key, id),
    }
}

/// 001: "les établissements hors contrat ne sont pas traités sous OKEY".
#[tokio::test]
async fn staff_of_a_school_outside_contract_are_refused_with_a_sentence_saying_so() {
    let b = org(&[]).await;
    let prive =
        b.s.server
            .key_for_person("h.prive", "manager", "h.prive")
            .await;
    let attach = pdf(b.dir.path(), "a.pdf");
    let out = b.s.run(
        &prive,
        &[
            "request", "new", "--type", "hardware", "--reason", "x", "--attach", &attach,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outside contract (hors contrat)"), "{err}");
    assert!(b.requests_of(&prive).is_empty());
}

/// 002: when the N+1 is absent, the N+2 approves; the history says so.
#[tokio::test]
async fn the_n2_approves_while_the_n1_is_absent() {
    let b = org(&[]).await;
    let prof =
        b.s.server
            .key_for_person("t.prof", "manager", "t.prof")
            .await;
    let r = file(&b, &prof, &[]);
    let id = id_of(&r);
    assert_eq!(r["validator"], "d.directeur", "{r}");
    assert_eq!(r["second_validator"], "p.ien", "{r}");
    one_mail(&b.sink, "denis.fontaine@ac-reunion.fr", "à valider");
    // Someone who is neither may not decide.
    let out = b.s.run(&b.other, &["request", "approve", &id.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let r = b.s.json(&b.s.ien, &["request", "approve", &id.to_string()]);
    assert_eq!(
        r["state"], "waiting_for_stock",
        "approved, and the district lot is empty: {r}"
    );
    assert_eq!(r["decided_by"], "p.ien");
    let approve = r["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["action"] == "approve")
        .cloned()
        .expect("approve event");
    assert_eq!(approve["actor"], "p.ien");
    assert!(
        approve["comment"]
            .as_str()
            .is_some_and(|c| c.contains("as N+2")),
        "{approve}"
    );
    one_mail(&b.sink, "tania.riviere@ac-reunion.fr", "est validée");
}

/// 002: a 1D school director's request is approved at once, and the audit says why.
#[tokio::test]
async fn a_1d_directors_request_is_approved_at_once_and_the_audit_says_why() {
    let b = org(&["C1"]).await;
    b.s.ok(&b.s.support.clone(), &["lot", "register", CIRC, "C1"]);
    let dir =
        b.s.server
            .key_for_person("d.directeur", "manager", "d.directeur")
            .await;
    let r = file(&b, &dir, &[]);
    assert_eq!(r["state"], "approved", "{r}");
    assert_eq!(r["decided_by"], "okey");
    assert_eq!(
        r["decision_reason"],
        "automatic approval: 1D school director in post"
    );
    let audit = b.s.admin_ok(&["audit", "list", "--limit", "100"]);
    assert!(
        audit.contains("request.auto_approve")
            && audit.contains("automatic approval: 1D school director in post"),
        "{audit}"
    );
    // Nobody was asked to validate it.
    assert!(mails_to(&b.sink.received(), IEN_MAIL, "à valider").is_empty());
    one_mail(&b.sink, "denis.fontaine@ac-reunion.fr", "est validée");
    let r = charter_and_pin(&b, &dir, id_of(&r), Some("7319"));
    assert_eq!(r["state"], "ready_for_pickup", "{r}");
    assert_eq!(r["serial"], "C1");
}

/// 001: no key left in the lycée: the head and the requester are told; the head orders, the
/// order is fulfilled, the requester is told a key arrived and the request goes on to its
/// hand-over.
#[tokio::test]
async fn out_of_stock_then_an_order_restocks_and_the_request_completes() {
    let b = org(&["R9"]).await;
    let s = &b.s;
    let r = file(&b, &b.agent, &[]);
    let id = id_of(&r);
    let r = s.json(&s.head, &["request", "approve", &id.to_string()]);
    assert_eq!(r["state"], "waiting_for_stock", "{r}");
    for to in [AGENT_MAIL, HEAD_MAIL] {
        let body = one_mail(&b.sink, to, "plus de clé disponible");
        assert!(body.contains("Lot du lycée Leconte de Lisle"), "{body}");
    }
    let r = charter_and_pin(&b, &b.agent, id, Some("2580"));
    assert_eq!(r["state"], "waiting_for_stock", "{r}");
    let order = s.json(&s.head, &["lot", "order", LYCEE, "--quantity", "1"]);
    let order_id = order["id"].as_u64().expect("order id").to_string();
    s.ok(&s.support.clone(), &["lot", "fulfil", &order_id, "R9"]);
    one_mail(&b.sink, AGENT_MAIL, "une clé est disponible");
    let r = b.show(&b.agent, id);
    assert_eq!(r["state"], "ready_for_pickup", "{r}");
    assert_eq!(r["serial"], "R9");
    s.ok(&s.head, &["key", "handover", "R9", "--to", "e.agent"]);
    assert_eq!(b.show(&b.agent, id)["state"], "completed");
}

/// 002: "le code PIN de votre nouvelle clef sera identique à celui de la précédente": the
/// renewal's key logs in with the old PIN and its own code, and nobody typed the PIN again.
#[tokio::test]
async fn a_renewal_keeps_the_pin_of_the_previous_key() {
    let b = org(&["R1", "R2"]).await;
    let s = &b.s;
    s.ok(&s.support.clone(), &["lot", "register", LYCEE, "R1"]);
    let id = id_of(&file(&b, &b.agent, &[]));
    s.ok(&s.head, &["request", "approve", &id.to_string()]);
    charter_and_pin(&b, &b.agent, id, Some("2580"));
    s.ok(&s.head, &["key", "handover", "R1", "--to", "e.agent"]);
    assert_eq!(b.show(&b.agent, id)["state"], "completed");

    s.ok(&s.support.clone(), &["lot", "register", LYCEE, "R2"]);
    let r = file(&b, &b.agent, &["--renewal"]);
    let renewal = id_of(&r);
    assert_eq!(r["need"], "renewal");
    assert_eq!(r["pin_set"], true, "{r}");
    assert_eq!(r["pin_source"], "carried from R1");
    s.ok(&s.head, &["request", "approve", &renewal.to_string()]);
    let r = charter_and_pin(&b, &b.agent, renewal, None);
    assert_eq!(r["state"], "ready_for_pickup", "no PIN asked: {r}");
    assert_eq!(r["serial"], "R2");
    s.ok(&s.head, &["key", "handover", "R2", "--to", "e.agent"]);
    let mut c = s.server.admin().await;
    let seed = hex::decode(RFC_SECRET_HEX).expect("hex");
    let code = reference_hotp(&seed, 0, 6);
    let (ok, why) = check(
        &mut c,
        okey_e2e::verify_serial("R2", &format!("2580{code}")),
    )
    .await;
    assert!(ok, "old PIN and the new key's code: {why}");
    let code = reference_hotp(&seed, 1, 6);
    assert!(
        !check(
            &mut c,
            okey_e2e::verify_serial("R2", &format!("0000{code}"))
        )
        .await
        .0
    );
}

/// RFC 4648 base32 decoding, written out so the test does not share okey's decoder.
fn base32(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut n, mut out) = (0u64, 0, Vec::new());
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

/// 002, software key: once approved, the requester picks Android, gets the instructions and
/// the otpauth QR code; the key stays pending and the request approved until the first valid
/// code (PIN ‖ TOTP) confirms both.
#[tokio::test]
async fn a_software_key_enrolled_by_qr_is_confirmed_by_its_first_code() {
    let b = org(&[]).await;
    let s = &b.s;
    let attach = pdf(b.dir.path(), "mission.pdf");
    let r = s.json(
        &b.other,
        &[
            "request",
            "new",
            "--type",
            "software",
            "--reason",
            "astreinte",
            "--attach",
            &attach,
        ],
    );
    let id = id_of(&r);
    assert_eq!(r["validator"], "p.ien", "{r}");
    // Not before approval, charter and PIN.
    let out = s.run(
        &b.other,
        &["request", "enrol", &id.to_string(), "--platform", "android"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    s.ok(&s.ien, &["request", "approve", &id.to_string()]);
    charter_and_pin(&b, &b.other, id, Some("4096"));
    let r = s.json(
        &b.other,
        &["request", "enrol", &id.to_string(), "--platform", "android"],
    );
    assert!(
        r["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("Android")),
        "{r}"
    );
    let uri = r["otpauth_uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let serial = r["serial"].as_str().expect("serial").to_owned();
    assert_eq!(r["state"], "approved");
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .expect("secret");
    let seed = base32(secret);
    let tok = s.admin_ok(&["token", "show", &serial]);
    assert!(tok.contains("pending"), "{tok}");
    let step = okey_server::clock::now() / 30;
    let mut c = s.server.admin().await;
    let (ok, why) = check(
        &mut c,
        okey_e2e::verify_serial(&serial, &format!("4096{}", reference_hotp(&seed, step, 6))),
    )
    .await;
    assert!(ok, "first code: {why}");
    assert_eq!(b.show(&b.other, id)["state"], "completed");
    let tok = s.admin_ok(&["token", "show", &serial]);
    assert!(tok.contains("active") && !tok.contains("pending"), "{tok}");
}

/// Person scope of the request operations: an inspector who is neither the requester's N+1
/// nor N+2 may not see, decide or cancel it, nor offer slots in a lot they do not manage; the
/// head offers them in their own lot. Each refusal is exit 1 and writes nothing.
#[tokio::test]
async fn a_person_acts_only_on_requests_and_lots_in_their_scope() {
    let b = org(&[]).await;
    let s = &b.s;
    let id = id_of(&file(&b, &b.agent, &[])).to_string();
    let at = (okey_server::clock::now() + 86_400).to_string();
    for args in [
        vec!["request", "show", id.as_str()],
        vec!["request", "approve", id.as_str()],
        vec!["request", "refuse", id.as_str(), "--reason", "non"],
        vec!["request", "cancel", id.as_str()],
        vec![
            "request",
            "slots",
            LYCEE,
            "--offer",
            at.as_str(),
            "--place",
            "ailleurs",
        ],
    ] {
        let out = s.run(&s.ien, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
    }
    let r = b.show(&b.agent, id.parse().expect("id"));
    assert_eq!(r["state"], "submitted");
    assert_eq!(r["events"].as_array().map(Vec::len), Some(2), "{r}");
    let slots = s.json(&s.head, &["request", "slots", LYCEE]);
    assert_eq!(slots, Value::Array(vec![]));
    s.ok(
        &s.head,
        &[
            "request",
            "slots",
            LYCEE,
            "--offer",
            &at,
            "--place",
            "Secrétariat",
        ],
    );
    assert_eq!(
        s.json(&s.head, &["request", "slots", LYCEE])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// An attachment comes back byte for byte to the request's parties (its requester and its
/// validator), and is refused to anyone else with nothing written; an attachment the request
/// does not have is not found.
#[tokio::test]
async fn an_attachment_is_read_back_by_the_requests_parties_only() {
    let b = org(&[]).await;
    let s = &b.s;
    let r = file(&b, &b.agent, &[]);
    let id = id_of(&r).to_string();
    let att = r["attachments"][0]["id"].as_u64().expect("attachment id");
    let sent = std::fs::read(b.dir.path().join("justificatif.pdf")).expect("sent");
    for (who, key) in [("requester", &b.agent), ("validator", &s.head)] {
        let out = b.dir.path().join(format!("{who}.pdf"));
        let got = s.json(
            key,
            &[
                "request",
                "attachment",
                &id,
                &att.to_string(),
                "--output",
                out.to_str().expect("path"),
            ],
        );
        assert_eq!(got["name"], "justificatif.pdf", "{who}: {got}");
        assert_eq!(got["media_type"], "application/pdf", "{who}: {got}");
        assert_eq!(std::fs::read(&out).expect("written"), sent, "{who}");
    }
    for (who, key) in [
        ("an inspector of another unit", &s.ien),
        ("a colleague", &b.other),
    ] {
        let out = b.dir.path().join("refused.pdf");
        let run = s.run(
            key,
            &[
                "request",
                "attachment",
                &id,
                &att.to_string(),
                "--output",
                out.to_str().expect("path"),
            ],
        );
        assert_eq!(run.status.code(), Some(1), "{who}: {run:?}");
        assert!(!out.exists(), "{who}: nothing written");
    }
    // An attachment near the largest the domain allows crosses gRPC both ways intact.
    let big_path = b.dir.path().join("dossier.pdf");
    let mut big = b"%PDF-1.7\n".to_vec();
    // The domain allows 5 MiB (okey_domain::request::MAX_ATTACHMENT_BYTES), over gRPC's 4 MiB default.
    big.resize(5 * 1024 * 1024 - 16, b'x');
    big.extend_from_slice(b"\n%%EOF\n");
    std::fs::write(&big_path, &big).expect("big pdf");
    let r = s.json(
        &b.other,
        &[
            "request",
            "new",
            "--type",
            "hardware",
            "--reason",
            "dossier complet",
            "--attach",
            big_path.to_str().expect("path"),
        ],
    );
    let big_id = id_of(&r).to_string();
    let big_att = r["attachments"][0]["id"].as_u64().expect("id").to_string();
    let back = b.dir.path().join("dossier-back.pdf");
    s.ok(
        &b.other,
        &[
            "request",
            "attachment",
            &big_id,
            &big_att,
            "--output",
            back.to_str().expect("path"),
        ],
    );
    assert!(
        std::fs::read(&back).expect("back") == big,
        "the large attachment comes back intact"
    );

    let out = b.dir.path().join("missing.pdf");
    let run = s.run(
        &b.agent,
        &[
            "request",
            "attachment",
            &id,
            &(att + 1000).to_string(),
            "--output",
            out.to_str().expect("path"),
        ],
    );
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("has no attachment"),
        "{run:?}"
    );
    assert!(!out.exists());
}

/// The ids of the pickup slots `key`'s person sees (`okey request slots [LOT]`), with whether
/// each is booked.
fn seen_slots(b: &Bench, key: &str, lot: Option<&str>) -> Vec<(u64, bool)> {
    let mut args = vec!["request", "slots"];
    args.extend(lot);
    let v = b.s.json(key, &args);
    let mut out: Vec<(u64, bool)> = v
        .as_array()
        .expect("a list of slots")
        .iter()
        .map(|s| {
            (
                s["slot"].as_u64().expect("slot id"),
                s["booked"].as_bool().expect("booked"),
            )
        })
        .collect();
    out.sort_unstable();
    out
}

fn offer_slot(b: &Bench, key: &str, lot: &str, place: &str) -> u64 {
    let at = (okey_server::clock::now() + 2 * 86_400).to_string();
    b.s.json(
        key,
        &["request", "slots", lot, "--offer", &at, "--place", place],
    )["slot"]
        .as_u64()
        .expect("slot id")
}

/// 002: the requester books from the slots the manager of the lot that serves them offers. A
/// person sees the slots of their own unit's lot and of their requests' lots, and of those
/// only the free ones to come and the one their request booked; a lot manager sees every slot
/// of their lots; any other lot is refused (exit 1) for both.
#[tokio::test]
async fn a_person_sees_only_the_pickup_slots_of_the_lots_that_serve_them() {
    let b = org(&["C1"]).await;
    let s = &b.s;
    s.ok(&s.support.clone(), &["lot", "register", CIRC, "C1"]);
    let lycee = offer_slot(&b, &s.head, LYCEE, "Secrétariat du lycée");
    let circ_a = offer_slot(&b, &s.ien, CIRC, "Bureau de l'IEN");
    let circ_b = offer_slot(&b, &s.ien, CIRC, "Salle de réunion");

    // The lycée's staff see the lycée's slot, the district's staff the district's.
    assert_eq!(seen_slots(&b, &b.agent, None), [(lycee, false)]);
    assert_eq!(seen_slots(&b, &b.agent, Some(LYCEE)), [(lycee, false)]);
    assert_eq!(
        seen_slots(&b, &b.other, None),
        [(circ_a, false), (circ_b, false)]
    );
    assert_eq!(seen_slots(&b, &s.head, None), [(lycee, false)]);
    for (key, lot) in [
        (&b.agent, CIRC),
        (&b.other, LYCEE),
        (&s.head, CIRC),
        (&s.ien, LYCEE),
    ] {
        let out = s.run(key, &["request", "slots", lot]);
        assert_eq!(out.status.code(), Some(1), "{lot}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("may not see its pickup slots"),
            "{out:?}"
        );
    }

    // A teacher of the district's school books a slot of the district's lot.
    let prof = s.server.key_for_person("t.prof", "manager", "t.prof").await;
    let dir = s
        .server
        .key_for_person("d.directeur", "manager", "d.directeur")
        .await;
    let id = id_of(&file(&b, &prof, &[]));
    s.json(&dir, &["request", "approve", &id.to_string()]);
    let r = charter_and_pin(&b, &prof, id, Some("2580"));
    assert_eq!(r["state"], "ready_for_pickup", "{r}");
    s.json(
        &prof,
        &[
            "request",
            "appointment",
            &id.to_string(),
            "--slot",
            &circ_a.to_string(),
        ],
    );
    // The requester sees their booked slot and the free one, another person served by the lot
    // only the free one, the lot's manager both.
    assert_eq!(
        seen_slots(&b, &prof, None),
        [(circ_a, true), (circ_b, false)]
    );
    assert_eq!(seen_slots(&b, &b.other, Some(CIRC)), [(circ_b, false)]);
    assert_eq!(
        seen_slots(&b, &s.ien, Some(CIRC)),
        [(circ_a, true), (circ_b, false)]
    );
    // The support centre names the lot it looks at.
    assert_eq!(
        seen_slots(&b, &s.support.clone(), Some(LYCEE)),
        [(lycee, false)]
    );
}

/// Poll `okey request show ID` as `key` until the request is in `state` (30 s at most).
fn wait_state(b: &Bench, key: &str, id: u64, state: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = b.show(key, id);
        if r["state"] == state || std::time::Instant::now() > deadline {
            assert_eq!(r["state"], state, "{r}");
            return r;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn expire_events(r: &Value) -> Vec<Value> {
    r["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["action"] == "expire")
        .cloned()
        .collect()
}

/// A submitted request that nobody decides expires after `[requests] expire_submitted_seconds`
/// by `okey serve`'s own sweep: the history and the audit say okey expired it, the requester
/// gets one mail, and neither a later sweep nor a restart expires it again or mails twice; the
/// requester may then ask again.
#[tokio::test]
async fn okey_serve_expires_a_request_nobody_decided_once_across_restarts() {
    let mut b = org_with(
        &[],
        "key_job_seconds = 1",
        "[requests]\nexpire_submitted_seconds = 3\nexpire_ready_seconds = 0\n",
    )
    .await;
    let r = file(&b, &b.agent, &[]);
    let id = id_of(&r);
    assert_eq!(r["state"], "submitted", "{r}");
    let r = wait_state(&b, &b.agent, id, "expired");
    let ev = expire_events(&r);
    assert_eq!(ev.len(), 1, "{r}");
    assert_eq!(ev[0]["actor"], "okey");
    assert_eq!(ev[0]["state_before"], "submitted");
    assert!(
        ev[0]["comment"]
            .as_str()
            .is_some_and(|c| c.contains("no decision")),
        "{r}"
    );
    let body = one_mail(&b.sink, AGENT_MAIL, "a expiré");
    assert!(body.contains("sans décision du valideur"), "{body}");
    // The head may no longer decide it.
    let out = b.s.run(&b.s.head, &["request", "approve", &id.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expired"),
        "{out:?}"
    );

    // Later sweeps, and a restart, change nothing and send nothing more.
    b.s.server.restart();
    std::thread::sleep(Duration::from_secs(4));
    let r = b.show(&b.agent, id);
    assert_eq!(expire_events(&r).len(), 1, "{r}");
    let got = b.sink.received();
    assert_eq!(mails_to(&got, AGENT_MAIL, "a expiré").len(), 1);
    let audit = b.s.admin_ok(&["audit", "list", "--limit", "200"]);
    assert_eq!(audit.matches("request.expire").count(), 1, "{audit}");

    // An expired request is closed: the requester may ask again.
    let again = file(&b, &b.agent, &[]);
    assert_ne!(id_of(&again), id);
}

/// A key ready for pickup that nobody collects goes back to its lot's stock after
/// `expire_ready_seconds`, its request expires and the requester is told.
#[tokio::test]
async fn a_key_nobody_collects_goes_back_to_stock_and_its_request_expires() {
    let b = org_with(
        &["R1"],
        "key_job_seconds = 1",
        "[requests]\nexpire_submitted_seconds = 0\nexpire_ready_seconds = 3\n",
    )
    .await;
    let s = &b.s;
    s.ok(&s.support.clone(), &["lot", "register", LYCEE, "R1"]);
    let id = id_of(&file(&b, &b.agent, &[]));
    s.json(&s.head, &["request", "approve", &id.to_string()]);
    let r = charter_and_pin(&b, &b.agent, id, Some("2580"));
    assert_eq!(r["state"], "ready_for_pickup", "{r}");
    let key = s.json(&s.head, &["key", "show", "R1"]);
    assert_eq!(key["key"]["reserved_for"], "e.agent", "{key}");
    // The appointment is booked, and missed: the delay runs from the slot.
    let at = okey_server::clock::now() + 4;
    let slot = s.json(
        &s.head,
        &[
            "request",
            "slots",
            LYCEE,
            "--offer",
            &at.to_string(),
            "--place",
            "Secrétariat",
        ],
    )["slot"]
        .as_u64()
        .expect("slot id");
    s.json(
        &b.agent,
        &[
            "request",
            "appointment",
            &id.to_string(),
            "--slot",
            &slot.to_string(),
        ],
    );
    assert_eq!(seen_slots(&b, &s.head, Some(LYCEE)), [(slot, true)]);

    let r = wait_state(&b, &b.agent, id, "expired");
    assert!(
        okey_server::clock::now() >= at + 3,
        "expired before the booked slot and its delay"
    );
    let ev = expire_events(&r);
    assert_eq!(ev.len(), 1, "{r}");
    assert_eq!(ev[0]["state_before"], "ready_for_pickup");
    // The missed slot is free again.
    assert_eq!(r["appointment"], Value::Null, "{r}");
    assert_eq!(seen_slots(&b, &s.head, Some(LYCEE)), [(slot, false)]);
    let body = one_mail(&b.sink, AGENT_MAIL, "a expiré");
    assert!(body.contains("n'a pas été retirée"), "{body}");
    let key = s.json(&s.head, &["key", "show", "R1"]);
    assert_eq!(key["key"]["reserved_for"], "", "back in stock: {key}");
    assert_eq!(key["key"]["state"], "delivered", "{key}");
    // Nobody can hand it over on that request any more.
    let audit = s.admin_ok(&["audit", "list", "--limit", "200"]);
    assert!(audit.contains("request.expire"), "{audit}");
}

/// Two `okey serve` nodes on one PostgreSQL database, both sweeping every second: a submitted
/// request nobody decides expires once (one history event, one audit record, one mail), whichever
/// node's sweep gets there first. Skipped without the PostgreSQL server binaries.
#[tokio::test]
async fn two_nodes_on_one_postgres_expire_a_request_once() {
    let Some(cluster) = okey_e2e::pg_cluster::Cluster::shared() else {
        eprintln!("skipped: the PostgreSQL server binaries are not installed");
        return;
    };
    let sink = SmtpSink::start(unused_port());
    let tables = format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{}\"\n{}\n[requests]\n\
         expire_submitted_seconds = 4\nexpire_ready_seconds = 0\n",
        cluster.fresh_db(),
        smtp_config(sink.port)
    );
    let a = okey_e2e::Server::start_with(&format!("key_job_seconds = 1\n{tables}"));
    let b = okey_e2e::Server::start_node(
        &format!(
            "key_job_seconds = 1\nmaster_key_file = \"{}\"\n{tables}",
            a.data_dir.join("master.key").display()
        ),
        &a.admin_key,
    );
    a.import_directory(UNITS, PEOPLE);
    let out = a.cli(
        &[
            "lot",
            "create",
            LYCEE,
            "--kind",
            "2d",
            "--unit",
            "9740001H",
            "--name",
            "Lot du lycée Leconte de Lisle",
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let agent = a.key_for_person("e.agent", "manager", "e.agent").await;
    let dir = tempfile::tempdir().expect("dir");
    let attach = pdf(dir.path(), "justificatif.pdf");
    let out = a.cli(
        &[
            "request",
            "new",
            "--type",
            "hardware",
            "--reason",
            "accès aux applications",
            "--attach",
            &attach,
            "--json",
        ],
        &[("OKEY_API_KEY", &agent)],
    );
    assert!(out.status.success(), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["state"], "submitted", "{r}");
    let id = id_of(&r).to_string();
    let show = |node: &okey_e2e::Server| -> Value {
        let out = node.cli(
            &["request", "show", &id, "--json"],
            &[("OKEY_API_KEY", &agent)],
        );
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while show(&b)["state"] != "expired" {
        assert!(std::time::Instant::now() < deadline, "{}", show(&b));
        std::thread::sleep(Duration::from_millis(250));
    }
    // Both nodes go on sweeping: nothing more happens.
    std::thread::sleep(Duration::from_secs(4));
    for node in [&a, &b] {
        let r = show(node);
        assert_eq!(expire_events(&r).len(), 1, "{r}");
    }
    let got = sink.received();
    assert_eq!(mails_to(&got, AGENT_MAIL, "a expiré").len(), 1, "{got:?}");
    let out = a.cli(&["audit", "list", "--limit", "200"], &[]);
    let audit = String::from_utf8_lossy(&out.stdout);
    assert_eq!(audit.matches("request.expire").count(), 1, "{audit}");
}

/// 001: "when a key arrives in the lot, the requester gets an e-mail and the request continues
/// where it stopped". A key that comes back to the lot's stock because the request it was
/// reserved for expired is such a key: the request waiting for stock there takes it.
#[tokio::test]
async fn a_key_freed_by_an_expired_request_goes_to_the_request_waiting_for_stock() {
    let b = org_with(
        &["C1"],
        "key_job_seconds = 1",
        "[requests]\nexpire_submitted_seconds = 0\nexpire_ready_seconds = 6\n",
    )
    .await;
    let s = &b.s;
    s.ok(&s.support.clone(), &["lot", "register", CIRC, "C1"]);
    let prof = s.server.key_for_person("t.prof", "manager", "t.prof").await;
    let dir = s
        .server
        .key_for_person("d.directeur", "manager", "d.directeur")
        .await;
    let first = id_of(&file(&b, &prof, &[]));
    s.json(&dir, &["request", "approve", &first.to_string()]);
    let r = charter_and_pin(&b, &prof, first, Some("2580"));
    assert_eq!(r["state"], "ready_for_pickup", "{r}");
    assert_eq!(r["serial"], "C1");
    // The director's own request is approved at once, and the lot is empty.
    let second = id_of(&file(&b, &dir, &[]));
    let r = charter_and_pin(&b, &dir, second, Some("7319"));
    assert_eq!(r["state"], "waiting_for_stock", "{r}");

    wait_state(&b, &prof, first, "expired");
    let r = wait_state(&b, &dir, second, "ready_for_pickup");
    assert_eq!(r["serial"], "C1", "{r}");
    one_mail(
        &b.sink,
        "denis.fontaine@ac-reunion.fr",
        "une clé est disponible",
    );
    one_mail(
        &b.sink,
        "denis.fontaine@ac-reunion.fr",
        "votre clé est prête",
    );
    let key = s.json(&s.ien, &["key", "show", "C1"]);
    assert_eq!(key["key"]["reserved_for"], "d.directeur", "{key}");
}
