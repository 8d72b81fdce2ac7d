//! What the lifecycle hands to people: the PDF receipts of a hand-over and a return, written by
//! `okey key receipt SERIAL --out F.pdf` from a real `okey serve` and read back with poppler's
//! `pdftotext`, an independent reader, and the mails of the lifecycle steps received by a real
//! SMTP server on loopback.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use okey_e2e::{
    RFC_SECRET_HEX, Server, SmtpSink, check, hotp_token, reference_hotp, unused_port, verify_serial,
};
use okey_server::proto;
use serde_json::Value;

/// A lycée of La Réunion (UAI with its check letter) and its 2D lot.
pub const UAI: &str = "9740001H";
pub const LYCEE: &str = "2D-9740001H";
pub const CIRC: &str = "1D-CIRC-NORD";

pub const UNITS_CSV: &str = "id,kind,name,parent,under_contract\n\
RECTORAT,rectorat,Rectorat de La Réunion,,\n\
SUPPORT,support_centre,Centre de support,RECTORAT,\n\
CIRC-NORD,district,Circonscription Saint-Denis Nord,RECTORAT,\n\
9740001H,school,Lycée Leconte de Lisle,RECTORAT,yes\n";

pub const PEOPLE_CSV: &str = "id,name,email,unit,functions\n\
p.proviseur,Marie-Hélène Lefèvre,marie-helene.lefevre@ac-reunion.fr,9740001H,head\n\
e.agent,Éloïse Técher,eloise.techer@ac-reunion.fr,9740001H,staff\n\
p.ien,François Grégoire,francois.gregoire@ac-reunion.fr,CIRC-NORD,ien\n\
p.support,Jean Payet,jean.payet@ac-reunion.fr,SUPPORT,support\n\
n.un,Noémie Hoarau,noemie.hoarau@ac-reunion.fr,CIRC-NORD,staff\n\
n.deux,Kévin Grondin,kevin.grondin@ac-reunion.fr,CIRC-NORD,staff\n";

/// Load the directory into `server` with `okey directory import PEOPLE UNITS`, as an operator
/// does.
pub fn load_directory(server: &mut Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (people, units) = (dir.path().join("people.csv"), dir.path().join("units.csv"));
    std::fs::write(&people, PEOPLE_CSV).expect("people.csv");
    std::fs::write(&units, UNITS_CSV).expect("units.csv");
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
}

/// A server with the directory, the lycée's lot managed by its head, a district lot managed
/// by the IEN, and `serials` imported (RFC 4226 seed).
pub struct School {
    pub server: Server,
    pub head: String,
    pub ien: String,
    pub support: String,
}

impl School {
    pub async fn new(config: &str, serials: &[&str]) -> School {
        let mut server = Server::start_with(config);
        load_directory(&mut server);
        let s = School {
            head: server
                .key_for_person("p.proviseur", "manager", "p.proviseur")
                .await,
            ien: server.key_for_person("p.ien", "manager", "p.ien").await,
            support: server.key_with_role("p.support", "support").await,
            server,
        };
        s.admin_ok(&[
            "lot",
            "create",
            LYCEE,
            "--kind",
            "2d",
            "--unit",
            UAI,
            "--name",
            "Lot du lycée Leconte de Lisle",
        ]);
        s.admin_ok(&[
            "lot",
            "create",
            CIRC,
            "--kind",
            "1d",
            "--unit",
            "CIRC-NORD",
            "--name",
            "Lot de la circonscription Nord",
        ]);
        s.admin_ok(&["lot", "delegate", LYCEE, "p.proviseur"]);
        s.admin_ok(&["lot", "delegate", CIRC, "p.ien"]);
        if !serials.is_empty() {
            let mut admin = s.server.admin().await;
            admin
                .tokens
                .import_tokens(proto::ImportTokensRequest {
                    tokens: serials
                        .iter()
                        .map(|x| hotp_token(x, RFC_SECRET_HEX))
                        .collect(),
                })
                .await
                .expect("import");
        }
        s
    }

    pub fn run(&self, key: &str, args: &[&str]) -> Output {
        self.server.cli(args, &[("OKEY_API_KEY", key)])
    }

    pub fn ok(&self, key: &str, args: &[&str]) -> String {
        let out = self.run(key, args);
        assert!(
            out.status.success(),
            "okey {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn admin_ok(&self, args: &[&str]) -> String {
        self.ok(&self.server.admin_key.clone(), args)
    }

    pub fn json(&self, key: &str, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(key, &a)).expect("JSON")
    }

    pub async fn logs_in(&self, serial: &str, counter: u64) -> bool {
        let mut c = self.server.admin().await;
        let code = reference_hotp(&hex::decode(RFC_SECRET_HEX).expect("hex"), counter, 6);
        check(&mut c, verify_serial(serial, &code)).await.0
    }
}

fn pdftotext(pdf: &Path) -> String {
    let out = Command::new("pdftotext")
        .args(["-enc", "UTF-8"])
        .arg(pdf)
        .arg("-")
        .stdin(Stdio::null())
        .output()
        .expect(
            "pdftotext (Debian poppler-utils, see scripts/deps/documents.sh) must be installed",
        );
    assert!(
        out.status.success(),
        "pdftotext refused the PDF: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("pdftotext writes UTF-8")
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

fn has_line(text: &str, expected: &str) {
    let ls = lines(text);
    assert!(
        ls.iter().any(|l| l == expected),
        "no line {expected:?} in the extracted text:\n{}",
        ls.join("\n")
    );
}

/// The whole text on one line, for paragraphs the layout wraps.
fn flat(text: &str) -> String {
    lines(text).join(" ")
}

/// Unix time `t` at UTC+04:00 in the receipts' French wording, computed by GNU date.
fn french_at_reunion(t: u64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", t + 4 * 3600),
            "+%-d %-m %Y %H %M",
        ])
        .output()
        .expect("date");
    let s = String::from_utf8(out.stdout).expect("utf-8");
    let f: Vec<&str> = s.split_whitespace().collect();
    let months = [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ];
    let m: usize = f[1].parse().expect("month");
    let day = if f[0] == "1" { "1er" } else { f[0] };
    format!("{day} {} {} à {} h {}", months[m - 1], f[2], f[3], f[4])
}

fn receipt_pdf(s: &School, key: &str, serial: &str, dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let out = s.ok(
        key,
        &[
            "key",
            "receipt",
            serial,
            "--out",
            path.to_str().expect("path"),
            "--utc-offset",
            "+04:00",
        ],
    );
    assert!(out.contains("written to"), "{out}");
    let bytes = std::fs::read(&path).expect("the PDF was written");
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    pdftotext(&path)
}

#[tokio::test]
async fn the_hand_over_and_return_receipts_are_the_signed_pdfs_with_every_field() {
    let s = School::new("", &["NK-0042"]).await;
    let dir = tempfile::tempdir().expect("dir");
    s.ok(&s.support, &["lot", "register", LYCEE, "NK-0042"]);
    let out = s.json(
        &s.head,
        &[
            "key",
            "handover",
            "NK-0042",
            "--to",
            "e.agent",
            "--place",
            "Saint-Denis, secrétariat du lycée",
        ],
    );
    let number = out[0]["receipt"]["number"]
        .as_str()
        .expect("number")
        .to_owned();
    let at = out[0]["receipt"]["at"].as_u64().expect("at");

    // Before the holder signs: the receipt as printed for signature.
    let text = receipt_pdf(&s, &s.head, "NK-0042", dir.path(), "remise.pdf");
    has_line(&text, "Bordereau de remise de clé OTP");
    has_line(&text, &format!("Bordereau n° : {number}"));
    has_line(&text, &format!("Date : {}", french_at_reunion(at)));
    has_line(&text, "Lieu : Saint-Denis, secrétariat du lycée");
    has_line(&text, "Unité : Lycée Leconte de Lisle");
    has_line(&text, &format!("Code de l'unité : {UAI}"));
    has_line(&text, "Numéro de série : NK-0042");
    has_line(&text, "Modèle : clé matérielle");
    has_line(
        &text,
        &format!("Lot : Lot du lycée Leconte de Lisle ({LYCEE})"),
    );
    has_line(&text, "Nom : Éloïse Técher, Personnel");
    has_line(&text, "Identifiant : e.agent");
    has_line(&text, "Clé remise par");
    has_line(&text, "Nom : Marie-Hélène Lefèvre, Chef d'établissement");
    has_line(&text, "Identifiant : p.proviseur");
    assert!(
        flat(&text)
            .contains("Je soussigné(e) Éloïse Técher reconnais avoir reçu la clé OTP n° NK-0042"),
        "{text}"
    );
    assert!(
        !flat(&text).contains("Confirmée par le titulaire"),
        "{text}"
    );

    // The holder types the number back: the printed receipt says when and how.
    let holder = s
        .server
        .key_for_person("e.agent", "manager", "e.agent")
        .await;
    let signed = s.json(&holder, &["key", "confirm", "NK-0042", &number]);
    let confirmed_at = signed["confirmed_at"].as_u64().expect("confirmed");
    let text = receipt_pdf(&s, &holder, "NK-0042", dir.path(), "remise-signee.pdf");
    assert!(
        flat(&text).contains(&format!(
            "Confirmée par le titulaire le {} en saisissant le numéro du bordereau.",
            french_at_reunion(confirmed_at)
        )),
        "{text}"
    );

    // The return, damaged, at the head's office: the return receipt.
    let out = s.json(
        &s.head,
        &[
            "key",
            "return",
            "NK-0042",
            "--condition",
            "damaged",
            "--place",
            "bureau de la proviseure",
        ],
    );
    let rs = out["receipt"]["number"]
        .as_str()
        .expect("number")
        .to_owned();
    assert!(rs.starts_with("RS-"), "{rs}");
    let at = out["receipt"]["at"].as_u64().expect("at");
    let text = receipt_pdf(&s, &s.head, "NK-0042", dir.path(), "restitution.pdf");
    has_line(&text, "Bordereau de restitution de clé OTP");
    has_line(&text, &format!("Bordereau n° : {rs}"));
    has_line(&text, &format!("Date : {}", french_at_reunion(at)));
    has_line(&text, "Lieu : bureau de la proviseure");
    has_line(&text, "Unité : Lycée Leconte de Lisle");
    has_line(&text, &format!("Code de l'unité : {UAI}"));
    has_line(&text, "Numéro de série : NK-0042");
    has_line(&text, "État de la clé : endommagée");
    has_line(&text, "Nom : Éloïse Técher, Personnel");
    has_line(&text, "Clé reçue par");
    has_line(&text, "Nom : Marie-Hélène Lefèvre, Chef d'établissement");
    assert!(
        flat(&text).contains("Éloïse Técher a restitué la clé OTP n° NK-0042"),
        "{text}"
    );

    // The earlier hand-over receipt is still there by its number.
    let path = dir.path().join("again.pdf");
    s.ok(
        &s.head,
        &[
            "key",
            "receipt",
            "NK-0042",
            "--number",
            &number,
            "--out",
            path.to_str().expect("path"),
        ],
    );
    has_line(&pdftotext(&path), "Bordereau de remise de clé OTP");

    // Someone else's receipt is not theirs to print, and nothing is written.
    let other = s.server.key_for_person("x.autre", "manager", "n.un").await;
    let denied = dir.path().join("denied.pdf");
    let out = s.run(
        &other,
        &[
            "key",
            "receipt",
            "NK-0042",
            "--out",
            denied.to_str().expect("path"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!denied.exists());
    // A bad offset is bad input.
    let out = s.run(
        &s.head,
        &[
            "key",
            "receipt",
            "NK-0042",
            "--out",
            denied.to_str().expect("path"),
            "--utc-offset",
            "+15:00",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!denied.exists());
}

/// A stock gRPC client gets the same PDF bytes the CLI wrote (the portal's path).
#[tokio::test]
async fn the_pdf_comes_over_grpc_to_any_client() {
    let s = School::new("", &["NK-0043"]).await;
    s.ok(&s.support, &["lot", "register", LYCEE, "NK-0043"]);
    s.ok(&s.head, &["key", "handover", "NK-0043", "--to", "e.agent"]);
    let mut c = s.server.client(Some(&s.head)).await;
    let pdf = c
        .lifecycle
        .get_receipt_pdf(proto::GetReceiptRequest {
            serial: "NK-0043".into(),
            number: String::new(),
            utc_offset_minutes: 0,
        })
        .await
        .expect("pdf")
        .into_inner();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("r.pdf");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&pdf.pdf))
        .expect("write");
    let text = pdftotext(&path);
    has_line(&text, &format!("Bordereau n° : {}", pdf.number));
    // No place given: the unit's name stands for it.
    has_line(&text, "Lieu : Lycée Leconte de Lisle");
    assert!(!flat(&text).contains("Remise confirmée"), "{text}");

    // The holder's first valid code signs the hand-over, in the verify's own commit.
    assert!(s.logs_in("NK-0043", 0).await);
    let r = s.json(&s.head, &["key", "receipt", "NK-0043"]);
    assert_eq!(r["confirmed_how"], "code", "{r}");
    let at = r["confirmed_at"].as_u64().expect("signed");
    let path = dir.path().join("signed.pdf");
    s.ok(
        &s.head,
        &[
            "key",
            "receipt",
            "NK-0043",
            "--out",
            path.to_str().expect("path"),
            "--utc-offset",
            "+04:00",
        ],
    );
    assert!(
        flat(&pdftotext(&path)).contains(&format!(
            "Remise confirmée par le titulaire le {} par le premier code valide de la clé.",
            french_at_reunion(at)
        )),
        "{}",
        pdftotext(&path)
    );
    // Signed already: typing the number back is refused, and the next code changes nothing.
    let holder = s
        .server
        .key_for_person("e.agent", "manager", "e.agent")
        .await;
    let out = s.run(&holder, &["key", "confirm", "NK-0043", &pdf.number]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(s.logs_in("NK-0043", 1).await);
    let again = s.json(&s.head, &["key", "receipt", "NK-0043"]);
    assert_eq!(again["confirmed_at"].as_u64(), Some(at));
}

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

/// The one mail received for `address` with a subject containing `subject`.
fn mail_to<'a>(got: &'a [Value], address: &str, subject: &str) -> &'a Value {
    let found: Vec<&Value> = got
        .iter()
        .filter(|m| {
            m["rcpt_tos"]
                .as_array()
                .is_some_and(|r| r.iter().any(|a| a == address))
                && m["subject"].as_str().is_some_and(|s| s.contains(subject))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "mails to {address} about {subject:?}: {}",
        serde_json::to_string_pretty(got).unwrap_or_default()
    );
    found[0]
}

fn body(m: &Value) -> String {
    // Paragraphs wrap: compare on one line.
    m["body"]
        .as_str()
        .expect("body")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Seed 003 case 5 (a convocation to the hand-over meeting), the lot manager's mails of the
/// scheduled job (expired keys, returns due at an end of function) and a deactivation, and the
/// holder's mail of a key declared lost, as a real SMTP server receives them.
#[tokio::test]
async fn lifecycle_steps_mail_the_people_concerned_through_the_outbox() {
    let sink = SmtpSink::start(unused_port());
    let s = School::new(
        &smtp_config(sink.port),
        &["C1", "C2", "C3", "L1", "X1", "X2", "D1", "D2"],
    )
    .await;
    let sup = s.support.clone();
    s.ok(&sup, &["lot", "register", CIRC, "C1", "C2", "D1", "D2"]);
    s.ok(&sup, &["lot", "register", LYCEE, "L1"]);
    s.ok(
        &sup,
        &[
            "lot",
            "register",
            LYCEE,
            "X1",
            "X2",
            "--valid-until",
            "1000",
        ],
    );
    s.ok(
        &sup,
        &["lot", "register", CIRC, "C3", "--valid-until", "1000"],
    );

    // A batch larger than the stock is refused: nothing reserved, no convocation written.
    let meeting = okey_server::clock::now() + 7 * 86_400;
    let meeting_s = meeting.to_string();
    let out = s.run(
        &s.ien,
        &[
            "lot",
            "reserve",
            CIRC,
            "n.un",
            "n.deux",
            "n.trois",
            "n.quatre",
            "n.cinq",
            "n.six",
            "--meeting-at",
            &meeting_s,
            "--meeting-place",
            "Rectorat, salle du conseil",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // The first appointment batch with its meeting.
    s.ok(
        &s.ien,
        &[
            "lot",
            "reserve",
            CIRC,
            "n.un",
            "n.deux",
            "--meeting-at",
            &meeting_s,
            "--meeting-place",
            "Rectorat, salle du conseil",
        ],
    );
    // A key declared lost: its holder is told.
    s.ok(&s.head, &["key", "handover", "L1", "--to", "e.agent"]);
    s.ok(
        &s.head,
        &["key", "lost", "L1", "--comment", "oubliée dans le bus"],
    );
    // The director goes back to their school: the deputy's key is deactivated now.
    s.ok(&s.ien, &["key", "handover", "D1", "--to", "n.un"]);
    s.ok(
        &s.ien,
        &[
            "key",
            "deactivate",
            "D1",
            "--comment",
            "retour du directeur",
        ],
    );
    // An end of function in two seconds, reached by the scheduled job, and expired keys.
    s.ok(&s.ien, &["key", "handover", "D2", "--to", "n.deux"]);
    let end = okey_server::clock::now() + 2;
    s.ok(
        &s.ien,
        &["key", "deactivate", "D2", "--at", &end.to_string()],
    );
    while okey_server::clock::now() <= end {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let events = s.json(&s.server.admin_key.clone(), &["lot", "run-jobs"]);
    assert_eq!(events.as_array().map(Vec::len), Some(4), "{events}");

    // 2 convocations, 1 lost, 1 immediate return due, 1 scheduled return due, 2 expiries.
    let got = sink.wait_for(7, std::time::Duration::from_secs(30));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let got_all = sink.received();
    assert_eq!(
        got_all.len(),
        7,
        "{}",
        serde_json::to_string_pretty(&got_all).unwrap_or_default()
    );
    assert_eq!(got.len(), 7);
    let when = {
        let out = Command::new("date")
            .args(["-u", "-d", &format!("@{meeting}"), "+%-d %-m %Y %H %M"])
            .output()
            .expect("date");
        let s = String::from_utf8(out.stdout).expect("utf-8");
        let f: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
        let months = [
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ];
        let m: usize = f[1].parse().expect("month");
        let day = if f[0] == "1" {
            "1er".to_owned()
        } else {
            f[0].clone()
        };
        format!("{day} {} {} à {} h {} UTC", months[m - 1], f[2], f[3], f[4])
    };
    for (address, name) in [
        ("noemie.hoarau@ac-reunion.fr", "Noémie Hoarau"),
        ("kevin.grondin@ac-reunion.fr", "Kévin Grondin"),
    ] {
        let m = mail_to(&got, address, "convocation");
        assert_eq!(
            m["subject"],
            format!("okey : convocation à la remise de votre clé OTP le {when}").as_str()
        );
        let b = body(m);
        assert!(b.contains(&format!("Bonjour {name},")), "{b}");
        assert!(b.contains("Lot de la circonscription Nord"), "{b}");
        assert!(b.contains(&format!("Date : {when}")), "{b}");
        assert!(b.contains("Lieu : Rectorat, salle du conseil"), "{b}");
        assert_eq!(m["mail_from"], "okey@ac-reunion.fr");
    }
    let lost = mail_to(&got, "eloise.techer@ac-reunion.fr", "perdue");
    assert_eq!(
        lost["subject"],
        "okey : votre clé OTP L1 a été déclarée perdue"
    );
    let b = body(lost);
    assert!(b.contains("Bonjour Éloïse Técher,"), "{b}");
    assert!(
        b.contains("déclarée perdue par Marie-Hélène Lefèvre"),
        "{b}"
    );
    assert!(b.contains("Motif : oubliée dans le bus."), "{b}");
    let ien = "francois.gregoire@ac-reunion.fr";
    let d1 = mail_to(&got, ien, "D1");
    assert_eq!(
        d1["subject"],
        "okey : restitution attendue de la clé OTP D1 (Noémie Hoarau)"
    );
    assert!(body(d1).contains("okey key return D1"), "{}", body(d1));
    let d2 = mail_to(&got, ien, "D2");
    assert_eq!(
        d2["subject"],
        "okey : restitution attendue de la clé OTP D2 (Kévin Grondin)"
    );
    let x = mail_to(&got, "marie-helene.lefevre@ac-reunion.fr", "expirée");
    assert_eq!(
        x["subject"],
        format!("okey : 2 clé(s) OTP expirée(s) dans le lot {LYCEE}").as_str()
    );
    assert_eq!(
        x["rcpt_tos"],
        serde_json::json!(["marie-helene.lefevre@ac-reunion.fr"])
    );
    let lines: Vec<&str> = x["body"]
        .as_str()
        .expect("body")
        .lines()
        .map(str::trim)
        .collect();
    assert!(lines.windows(2).any(|w| w == ["- X1", "- X2"]), "{lines:?}");
    let c = mail_to(&got, ien, "expirée");
    assert!(c["body"].as_str().expect("body").contains("- C3"), "{c}");
}
