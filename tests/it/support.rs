//! The support desk through a real `okey serve`, the `okey` CLI and a real SMTP server
//! (aiosmtpd) on loopback: a case's number is mailed to its declarant, replies and the
//! resolution too, a primary school director's IEN in copy, internal notes never; a person seed
//! 004 does not name is told who may open a case; a missing field is named; the queue goes by
//! priority then age; "keys not in okey" are registered into the school's lot; the diagnosis of
//! a locked and of a desynchronised key names the action that fits; a temporary key works with
//! the holder's PIN, then stops on its own while the lost key stays disabled.

use std::time::Duration;

use okey_e2e::{
    Client, RFC_SECRET_HEX, Server, SmtpSink, check, hotp_token, reference_hotp, verify_serial,
};
use okey_server::proto;
use serde_json::Value;
use tonic::Code;

const UNITS: &str = "id,kind,name,parent,under_contract
RECTORAT,rectorat,Rectorat,,
SUPPORT,support_centre,Centre de support,RECTORAT,
9740001H,school,Lycée A,RECTORAT,yes
CIRC-1,district,Circonscription 1,RECTORAT,
9740100R,school,École C,CIRC-1,yes
";

const PEOPLE: &str = "id,name,email,unit,functions
f.head,Marie Hoarau,f.head@ac-example.fr,9740001H,head
f.ent,Paul Payet,f.ent@ac-example.fr,9740001H,ent
f.staff,Luc Grondin,f.staff@ac-example.fr,9740001H,staff
f.director,Anne Técher,f.director@ac-example.fr,9740100R,director
f.ien,Jean Robert,f.ien@ac-example.fr,CIRC-1,ien
f.support,Agent Support,f.support@ac-example.fr,SUPPORT,support
";

/// The smallest PNG: an 8-byte signature and an IHDR chunk header suffice for the magic check.
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00";

fn config(smtp_port: u16, extra: &str) -> String {
    format!(
        "{extra}\n[smtp]\n\
         relay = \"127.0.0.1\"\n\
         port = {smtp_port}\n\
         tls = \"none\"\n\
         from = \"okey <okey@ac-example.fr>\"\n\
         retry_initial_seconds = 1\n\
         retry_max_seconds = 1\n\
         poll_seconds = 1\n\
         timeout_seconds = 5\n"
    )
}

fn request(kind: &str, priority: proto::CasePriority, subject: &str) -> proto::OpenCaseRequest {
    proto::OpenCaseRequest {
        kind: kind.into(),
        priority: priority as i32,
        name: "Marie Hoarau".into(),
        function: "Proviseure".into(),
        phone: "0262 48 41 41".into(),
        unit_town: "Lycée A, Saint-Denis".into(),
        subject: subject.into(),
        population: "enseignant".into(),
        description: "La clé de M. Payet est refusée depuis lundi matin.".into(),
        location: "Accueil > Applications > Base élèves".into(),
        attachments: vec![proto::CaseAttachment {
            name: "capture.png".into(),
            media_type: String::new(),
            content: PNG.to_vec(),
        }],
        ..Default::default()
    }
}

async fn person_client(server: &Server, name: &str, role: &str, person: &str) -> Client {
    let key = server.key_for_person(name, role, person).await;
    server.client(Some(&key)).await
}

fn cli_json(server: &Server, args: &[&str], key: &str) -> Value {
    let out = server.cli(args, &[("OKEY_API_KEY", key)]);
    assert!(
        out.status.success(),
        "okey {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "okey {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The mails received for `number`, waiting up to 20 s for at least `n`.
fn mails_about(sink: &SmtpSink, number: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<Value> = sink
            .received()
            .into_iter()
            .filter(|m| m["subject"].as_str().is_some_and(|s| s.contains(number)))
            .collect();
        if got.len() >= n || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_is_numbered_mailed_answered_and_resolved_with_the_ien_in_copy() {
    let sink = SmtpSink::start(0);
    let server = Server::start_with(&config(sink.port, ""));
    server.import_directory(UNITS, PEOPLE);
    let mut head = person_client(&server, "head", "manager", "f.head").await;
    let mut director = person_client(&server, "director", "manager", "f.director").await;
    let desk_key = server.key_for_person("desk", "support", "f.support").await;
    let mut desk = server.client(Some(&desk_key)).await;

    // Opened by the head of school: numbered by unit, year and sequence, mailed to her alone.
    let minor = head
        .support
        .open_case(request(
            "other",
            proto::CasePriority::Minor,
            "Question sur les clés",
        ))
        .await
        .expect("open")
        .into_inner();
    let parts: Vec<&str> = minor.number.split('-').collect();
    assert_eq!(parts.len(), 3, "{}", minor.number);
    assert_eq!(parts[0], "9740001H");
    assert!(parts[1].len() == 4 && parts[1].bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(parts[2], "0001", "{}", minor.number);
    let blocking = head
        .support
        .open_case(request(
            "other",
            proto::CasePriority::Blocking,
            "ENT indisponible",
        ))
        .await
        .expect("open")
        .into_inner();
    assert!(blocking.number.ends_with("-0002"), "{}", blocking.number);
    let got = mails_about(&sink, &minor.number, 1);
    assert_eq!(got.len(), 1, "the case number mail: {got:?}");
    assert_eq!(
        got[0]["rcpt_tos"],
        serde_json::json!(["f.head@ac-example.fr"])
    );
    let body = got[0]["body"].as_str().expect("body");
    assert!(body.contains(&minor.number), "{body}");
    assert!(body.contains("priorité mineure"), "{body}");
    assert!(!got[0]["raw"].as_str().expect("raw").contains("\nCc:"));

    // A primary school director's case: the IEN in copy of every mail.
    let mut key_case = request("key_lost", proto::CasePriority::Major, "Clé OTP perdue");
    let mut admin = server.admin().await;
    admin
        .tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![proto::ImportedToken {
                holder: "f.director".into(),
                ..hotp_token("NK-0001", RFC_SECRET_HEX)
            }],
        })
        .await
        .expect("import");
    key_case.serial = "NK-0001".into();
    let major = director
        .support
        .open_case(key_case)
        .await
        .expect("open")
        .into_inner();
    assert!(major.number.starts_with("9740100R-"), "{}", major.number);
    assert_eq!(major.copy_to, "f.ien@ac-example.fr");
    let got = mails_about(&sink, &major.number, 1);
    assert_eq!(got.len(), 1);
    let mut rcpt: Vec<String> = serde_json::from_value(got[0]["rcpt_tos"].clone()).expect("rcpt");
    rcpt.sort();
    assert_eq!(rcpt, ["f.director@ac-example.fr", "f.ien@ac-example.fr"]);
    assert!(
        got[0]["raw"]
            .as_str()
            .expect("raw")
            .contains("Cc: f.ien@ac-example.fr"),
        "{}",
        got[0]["raw"]
    );
    // The outbox listing shows who is in copy, and nobody for the head's own case.
    let outbox = cli_json(&server, &["mail", "queue", "--all", "--json"], &desk_key);
    let listed = |number: &str| -> Value {
        outbox["mails"]
            .as_array()
            .expect("mails")
            .iter()
            .find(|m| m["subject"].as_str().is_some_and(|s| s.contains(number)))
            .cloned()
            .unwrap_or_else(|| panic!("no mail about {number} in the outbox: {outbox}"))
    };
    assert_eq!(
        listed(&major.number)["cc"],
        serde_json::json!(["f.ien@ac-example.fr"])
    );
    assert_eq!(listed(&minor.number)["cc"], serde_json::json!([]));
    let text = server.cli(&["mail", "queue", "--all"], &[("OKEY_API_KEY", &desk_key)]);
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .lines()
            .any(|l| l.contains("case.opened") && l.contains("f.ien@ac-example.fr")),
        "{text:?}"
    );

    // The queue, through the CLI: by priority, then age.
    let queue = cli_json(&server, &["case", "list", "--json"], &desk_key);
    let numbers: Vec<&str> = queue
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["number"].as_str().expect("number"))
        .collect();
    assert_eq!(numbers, [&blocking.number, &major.number, &minor.number]);
    // The head sees her own cases only.
    let mine = head
        .support
        .list_cases(proto::ListCasesRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(mine.cases.len(), 2);
    let e = head
        .support
        .show_case(proto::ShowCaseRequest {
            number: major.number.clone(),
        })
        .await
        .expect_err("another's case");
    assert_eq!(e.code(), Code::PermissionDenied);

    // An internal note is never mailed nor shown to the declarant; a reply is mailed.
    let note = cli_json(
        &server,
        &[
            "case",
            "reply",
            &major.number,
            "--internal",
            "--body",
            "NOTE-INTERNE: vérifier le lot de la circonscription",
            "--json",
        ],
        &desk_key,
    );
    assert_eq!(note["messages"][0]["internal"], true);
    let e = director
        .support
        .reply_case(proto::ReplyCaseRequest {
            number: major.number.clone(),
            body: "note".into(),
            internal: true,
        })
        .await
        .expect_err("a declarant writes no internal note");
    assert_eq!(e.code(), Code::PermissionDenied);
    desk.support
        .reply_case(proto::ReplyCaseRequest {
            number: major.number.clone(),
            body: "Une nouvelle clé est en préparation.".into(),
            internal: false,
        })
        .await
        .expect("reply");
    let shown = director
        .support
        .show_case(proto::ShowCaseRequest {
            number: major.number.clone(),
        })
        .await
        .expect("own case")
        .into_inner();
    assert_eq!(shown.messages.len(), 1, "{:?}", shown.messages);
    assert!(!shown.messages[0].internal);
    assert!(shown.diagnosis.is_none(), "the diagnosis is the desk's");
    let desk_view = cli_json(
        &server,
        &["case", "show", &major.number, "--json"],
        &desk_key,
    );
    assert_eq!(desk_view["messages"].as_array().expect("messages").len(), 2);
    assert_eq!(desk_view["diagnosis"]["serial"], "NK-0001");

    // Assigned, resolved: the resolution is mailed with the IEN in copy.
    cli_json(
        &server,
        &[
            "case",
            "assign",
            &major.number,
            "--to",
            "f.support",
            "--json",
        ],
        &desk_key,
    );
    let out = server.cli(
        &["case", "assign", &major.number, "--to", "f.head"],
        &[("OKEY_API_KEY", &desk_key)],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a head of school is no support agent"
    );
    let resolved = cli_json(
        &server,
        &[
            "case",
            "resolve",
            &major.number,
            "--resolution",
            "Nouvelle clé NK-0002 à retirer auprès de votre IEN.",
            "--json",
        ],
        &desk_key,
    );
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["assignee"], "f.support");
    let got = mails_about(&sink, &major.number, 3);
    assert_eq!(got.len(), 3, "opened, reply, resolved: {got:?}");
    assert!(got.iter().all(|m| {
        m["raw"]
            .as_str()
            .is_some_and(|r| r.contains("Cc: f.ien@ac-example.fr"))
    }));
    let bodies: Vec<&str> = got.iter().filter_map(|m| m["body"].as_str()).collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("Une nouvelle clé est en préparation."))
    );
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("Nouvelle clé NK-0002 à retirer"))
    );
    assert!(
        sink.received()
            .iter()
            .all(|m| !m["raw"].as_str().unwrap_or("").contains("NOTE-INTERNE")),
        "an internal note was mailed"
    );
    let e = desk
        .support
        .reply_case(proto::ReplyCaseRequest {
            number: major.number.clone(),
            body: "encore".into(),
            internal: false,
        })
        .await
        .expect_err("resolved");
    assert_eq!(e.code(), Code::FailedPrecondition);

    // "Keys not in okey": support registers the listed serials into the school's lot.
    admin
        .lifecycle
        .create_lot(proto::CreateLotRequest {
            id: "2D-A".into(),
            kind: proto::LotKind::LotKind2d as i32,
            unit: "9740001H".into(),
            name: "Lot du lycée A".into(),
            validity_days: 0,
        })
        .await
        .expect("lot");
    admin
        .tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![
                hotp_token("DRAWER-1", RFC_SECRET_HEX),
                hotp_token("DRAWER-2", RFC_SECRET_HEX),
            ],
        })
        .await
        .expect("import");
    let mut drawer = request(
        "keys_not_in_okey",
        proto::CasePriority::Minor,
        "Clés en stock inconnues d'okey",
    );
    drawer.serials = vec!["DRAWER-1".into(), "DRAWER-2".into()];
    let mut ent = person_client(&server, "ent", "manager", "f.ent").await;
    let case = ent
        .support
        .open_case(drawer)
        .await
        .expect("an ENT correspondent opens a case")
        .into_inner();
    let reg = cli_json(
        &server,
        &["case", "register-keys", &case.number, "--json"],
        &desk_key,
    );
    assert_eq!(reg["lot"], "2D-A");
    let key = admin
        .lifecycle
        .show_key(proto::KeyRef {
            serial: "DRAWER-2".into(),
        })
        .await
        .expect("show")
        .into_inner();
    assert_eq!(key.key.expect("key").lot, "2D-A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_not_open_a_case_is_told_who_may_and_a_missing_field_is_named() {
    let sink = SmtpSink::start(0);
    let server = Server::start_with(&config(sink.port, ""));
    server.import_directory(UNITS, PEOPLE);
    let mut staff = person_client(&server, "staff", "manager", "f.staff").await;
    let e = staff
        .support
        .open_case(request("other", proto::CasePriority::Minor, "x"))
        .await
        .expect_err("staff may not open a case");
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains(
            "only a secondary school's direction team (head of school or deputy), the ENT \
             correspondents the heads have named, and primary school directors"
        ),
        "{}",
        e.message()
    );
    let mut head = person_client(&server, "head", "manager", "f.head").await;
    type Clear = fn(&mut proto::OpenCaseRequest);
    let cases: [(Clear, &str); 5] = [
        (|r| r.phone.clear(), "telephone"),
        (|r| r.location = " ".into(), "URL or breadcrumb"),
        (|r| r.population.clear(), "population concerned"),
        (|r| r.attachments.clear(), "screenshot or attachment"),
        (|r| r.priority = 0, "priority"),
    ];
    for (clear, field) in cases {
        let mut r = request("other", proto::CasePriority::Minor, "x");
        clear(&mut r);
        let e = head.support.open_case(r).await.expect_err(field);
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {}", e.message());
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    let mut r = request("other", proto::CasePriority::Minor, "x");
    r.attachments[0].content = b"MZ\x90\x00 not a picture".to_vec();
    let e = head.support.open_case(r).await.expect_err("an executable");
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut r = request("key_not_working", proto::CasePriority::Minor, "x");
    r.serial = "NOPE-1".into();
    let e = head.support.open_case(r).await.expect_err("unknown key");
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    // Nothing was written, nothing mailed; the sequence starts at 1.
    let desk_key = server.key_with_role("desk", "support").await;
    let queue = cli_json(&server, &["case", "list", "--all", "--json"], &desk_key);
    assert_eq!(queue, serde_json::json!([]));
    let ok = head
        .support
        .open_case(request("other", proto::CasePriority::Minor, "x"))
        .await
        .expect("open")
        .into_inner();
    assert!(ok.number.ends_with("-0001"), "{}", ok.number);
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{got:?}");
    // The CLI says the same, exit 1 for a refusal.
    let staff_key = server.key_for_person("staff2", "manager", "f.staff").await;
    let out = server.cli(
        &[
            "case",
            "open",
            "--kind",
            "other",
            "--priority",
            "minor",
            "--name",
            "L",
            "--function",
            "f",
            "--phone",
            "0262 00 00 00",
            "--unit-town",
            "u",
            "--subject",
            "s",
            "--population",
            "p",
            "--description",
            "d",
            "--location",
            "l",
        ],
        &[("OKEY_API_KEY", &staff_key)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("direction team"));
}

fn totp_now(secret: &[u8]) -> String {
    reference_hotp(secret, okey_server::clock::now() / 30, 6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnosis_names_the_action_and_a_temporary_key_works_then_stops() {
    let sink = SmtpSink::start(0);
    let server = Server::start_with(&config(
        sink.port,
        "temporary_key_seconds = 6\n[lockout]\nsoft_after = 0",
    ));
    server.import_directory(UNITS, PEOPLE);
    let desk_key = server.key_with_role("desk", "support").await;
    let mut desk = server.client(Some(&desk_key)).await;
    let mut admin = server.admin().await;
    let seed = hex::decode(RFC_SECRET_HEX).expect("hex");
    admin
        .tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![
                proto::ImportedToken {
                    holder: "f.head".into(),
                    ..hotp_token("LOCK-1", RFC_SECRET_HEX)
                },
                proto::ImportedToken {
                    holder: "f.ent".into(),
                    ..hotp_token("DESYNC-1", RFC_SECRET_HEX)
                },
            ],
        })
        .await
        .expect("import");
    desk.tokens
        .set_pin(proto::SetPinRequest {
            serial: "LOCK-1".into(),
            pin: "4711".into(),
        })
        .await
        .expect("pin");
    // Locked by wrong codes.
    for _ in 0..10 {
        check(&mut desk, verify_serial("LOCK-1", "4711000000")).await;
    }
    let d = cli_json(&server, &["key", "diagnose", "LOCK-1", "--json"], &desk_key);
    assert_eq!(d["locked"], true, "{d}");
    assert_eq!(d["action"], "unlock", "{d}");
    assert_eq!(d["recent_refusals"][0]["reason"], "wrong_code", "{d}");
    assert_eq!(d["holder"], "f.head");
    // Desynchronised: the device ran 200 presses ahead of the server's window.
    let ahead = reference_hotp(&seed, 200, 6);
    let (ok, _) = check(&mut desk, verify_serial("DESYNC-1", &ahead)).await;
    assert!(!ok);
    let d = cli_json(
        &server,
        &["key", "diagnose", "DESYNC-1", "--json"],
        &desk_key,
    );
    assert_eq!(d["locked"], false, "{d}");
    assert_eq!(d["action"], "resync", "{d}");
    let text = server.cli(
        &["key", "diagnose", "DESYNC-1"],
        &[("OKEY_API_KEY", &desk_key)],
    );
    assert!(text.status.success());
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("action: resync"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    // Only the desk diagnoses.
    let mut head = person_client(&server, "head", "manager", "f.head").await;
    let e = head
        .support
        .diagnose_key(proto::DiagnoseKeyRequest {
            serial: "LOCK-1".into(),
        })
        .await
        .expect_err("a manager");
    assert_eq!(e.code(), Code::PermissionDenied);

    // The temporary key: the holder's PIN with its code works, then it stops on its own.
    let t = cli_json(
        &server,
        &["key", "temporary", "LOCK-1", "--json"],
        &desk_key,
    );
    assert_eq!(t["holder"], "f.head");
    assert_eq!(t["replaces"], "LOCK-1");
    let serial = t["serial"].as_str().expect("serial").to_owned();
    let uri = okey_intake::KeyUri::parse(t["otpauth_uri"].as_str().expect("uri")).expect("uri");
    let secret = uri.secret().to_vec();
    let lost = admin
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: "LOCK-1".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        lost.status,
        proto::TokenStatus::Disabled as i32,
        "disabled, not deleted"
    );
    let (ok, why) = check(
        &mut desk,
        verify_serial(&serial, &format!("0000{}", totp_now(&secret))),
    )
    .await;
    assert!(!ok, "another PIN: {why}");
    let (ok, why) = check(
        &mut desk,
        verify_serial(&serial, &format!("4711{}", totp_now(&secret))),
    )
    .await;
    assert!(ok, "the holder's PIN and the temporary key's code: {why}");
    let d = cli_json(&server, &["key", "diagnose", "LOCK-1", "--json"], &desk_key);
    assert_eq!(d["action"], "enable", "{d}");
    assert!(
        d["temporary_keys"][0]
            .as_str()
            .is_some_and(|s| s.starts_with(&serial)),
        "{d}"
    );
    let expires = t["expires_at"].as_u64().expect("expiry");
    while okey_server::clock::now() < expires + 1 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A fresh code of the next step (not a replay), after the end: refused.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let code = reference_hotp(&secret, okey_server::clock::now() / 30 + 1, 6);
    let (ok, why) = check(&mut desk, verify_serial(&serial, &format!("4711{code}"))).await;
    assert!(!ok, "the temporary key stopped on its own: {why}");
    assert_eq!(why, "not_active", "{why}");
}

/// A case's attachment comes back byte for byte from the attachment store, to its declarant
/// and to the desk, through `okey case attachment NUMBER ID --output F`; someone who may not
/// read the case is refused (exit 1) and no file is written; an unknown id is an error; an
/// existing file is not overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_attachment_is_read_back_by_its_declarant_and_the_desk_only() {
    let sink = SmtpSink::start(0);
    let server = Server::start_with(&config(sink.port, ""));
    server.import_directory(UNITS, PEOPLE);
    let head_key = server.key_for_person("head", "manager", "f.head").await;
    let director_key = server
        .key_for_person("director", "manager", "f.director")
        .await;
    let desk_key = server.key_for_person("desk", "support", "f.support").await;
    let mut head = server.client(Some(&head_key)).await;
    let case = head
        .support
        .open_case(request(
            "other",
            proto::CasePriority::Minor,
            "Capture de l'erreur",
        ))
        .await
        .expect("open")
        .into_inner();
    let number = case.number.clone();
    let shown = cli_json(&server, &["case", "show", &number, "--json"], &head_key);
    let files = shown["files"].as_array().expect("files").clone();
    assert_eq!(files.len(), 1, "{shown}");
    assert_eq!(files[0]["name"], "capture.png");
    assert_eq!(files[0]["media_type"], "image/png");
    assert_eq!(files[0]["size"], PNG.len());
    let dir = tempfile::tempdir().expect("dir");
    // The digest, as coreutils computes it.
    let original = dir.path().join("original.png");
    std::fs::write(&original, PNG).expect("write");
    let sum = std::process::Command::new("sha256sum")
        .arg(&original)
        .output()
        .expect("sha256sum");
    let sum = String::from_utf8_lossy(&sum.stdout);
    assert_eq!(
        files[0]["sha256"].as_str(),
        sum.split_whitespace().next(),
        "{shown}"
    );
    let id = files[0]["id"].as_u64().expect("id").to_string();

    for (who, key) in [("head", &head_key), ("desk", &desk_key)] {
        let out = dir.path().join(format!("{who}.png"));
        let path = out.to_str().expect("path");
        let r = cli_json(
            &server,
            &[
                "case",
                "attachment",
                &number,
                &id,
                "--output",
                path,
                "--json",
            ],
            key,
        );
        assert_eq!(r["media_type"], "image/png", "{r}");
        assert_eq!(std::fs::read(&out).expect("written"), PNG, "{who}");
    }

    // The director did not declare this case.
    let out = dir.path().join("director.png");
    let path = out.to_str().expect("path");
    let got = server.cli(
        &["case", "attachment", &number, &id, "--output", path],
        &[("OKEY_API_KEY", &director_key)],
    );
    assert_eq!(got.status.code(), Some(1), "{got:?}");
    assert!(
        String::from_utf8_lossy(&got.stderr).contains("did not declare case"),
        "{got:?}"
    );
    assert!(!out.exists());
    // No such attachment on this case.
    let got = server.cli(
        &["case", "attachment", &number, "999999", "--output", path],
        &[("OKEY_API_KEY", &head_key)],
    );
    assert!(!got.status.success(), "{got:?}");
    assert!(
        String::from_utf8_lossy(&got.stderr).contains("has no attachment"),
        "{got:?}"
    );
    assert!(!out.exists());
    // An existing file is left alone.
    let kept = dir.path().join("head.png");
    std::fs::write(&kept, b"mine").expect("write");
    let got = server.cli(
        &[
            "case",
            "attachment",
            &number,
            &id,
            "--output",
            kept.to_str().expect("path"),
        ],
        &[("OKEY_API_KEY", &head_key)],
    );
    assert!(!got.status.success(), "{got:?}");
    assert_eq!(std::fs::read(&kept).expect("read"), b"mine");
}
