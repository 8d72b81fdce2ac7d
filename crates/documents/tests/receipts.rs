//! Receipts checked through an independent reader: poppler's `pdftotext` extracts the text of
//! the PDF, and every field must come back as written, accents included.

use std::io::Write;
use std::process::{Command, Stdio};

use okey_documents::{
    Acknowledgement, DocumentError, Key, KeyCondition, LocalDateTime, Person, Receipt, ReceiptKind,
    Unit, render,
};

fn pdftotext(pdf: &[u8]) -> String {
    let mut child = Command::new("pdftotext")
        .args(["-enc", "UTF-8", "-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "pdftotext (Debian poppler-utils, see scripts/deps/documents.sh) must be installed",
        );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pdf)
        .expect("write the PDF to pdftotext");
    let out = child.wait_with_output().expect("pdftotext runs");
    assert!(
        out.status.success(),
        "pdftotext refused the PDF: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("pdftotext writes UTF-8")
}

/// Text as lines with runs of spaces collapsed, so layout spacing does not matter.
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

fn at(year: u16, month: u8, day: u8, hour: u8, minute: u8) -> LocalDateTime {
    LocalDateTime {
        year,
        month,
        day,
        hour,
        minute,
    }
}

fn handover() -> Receipt {
    Receipt {
        kind: ReceiptKind::HandOver,
        number: "R-2026-000123".into(),
        unit: Unit {
            name: "Lycée Leconte de Lisle".into(),
            code: Some("9740001A".into()),
        },
        holder: Person {
            name: "Hélène Bérénice Lefèvre".into(),
            function: Some("Professeure d'éducation physique".into()),
            id: Some("hlefevre".into()),
        },
        agent: Person {
            name: "François Grégoire".into(),
            function: Some("Chef d'établissement".into()),
            id: Some("fgregoire".into()),
        },
        key: Key {
            serial: "0012345678".into(),
            model: Some("Nitrokey Pro 2".into()),
            lot: Some("Lot 2D 9740001A".into()),
        },
        at: at(2026, 8, 1, 9, 5),
        place: "Saint-Denis, secrétariat du lycée".into(),
        comment: None,
        acknowledgement: None,
    }
}

fn restitution() -> Receipt {
    Receipt {
        kind: ReceiptKind::Return {
            condition: KeyCondition::Damaged,
        },
        number: "R-2026-000124".into(),
        comment: Some("Étui fendu ; cordon rendu. Fin de fonction au 31 décembre.".into()),
        at: at(2026, 12, 31, 16, 45),
        ..handover()
    }
}

#[test]
fn a_hand_over_receipt_shows_every_field() {
    let pdf = render(&handover()).expect("renders");
    assert!(pdf.starts_with(b"%PDF-"));
    let text = pdftotext(&pdf);
    has_line(&text, "Bordereau de remise de clé OTP");
    has_line(&text, "Bordereau n° : R-2026-000123");
    has_line(&text, "Date : 1er août 2026 à 09 h 05");
    has_line(&text, "Lieu : Saint-Denis, secrétariat du lycée");
    has_line(&text, "Unité : Lycée Leconte de Lisle");
    has_line(&text, "Code de l'unité : 9740001A");
    has_line(&text, "Numéro de série : 0012345678");
    has_line(&text, "Modèle : Nitrokey Pro 2");
    has_line(&text, "Lot : Lot 2D 9740001A");
    has_line(
        &text,
        "Nom : Hélène Bérénice Lefèvre, Professeure d'éducation physique",
    );
    has_line(&text, "Identifiant : hlefevre");
    has_line(&text, "Clé remise par");
    has_line(&text, "Nom : François Grégoire, Chef d'établissement");
    has_line(&text, "Identifiant : fgregoire");
    assert!(
        text.contains("Signature du titulaire"),
        "no signature box:\n{text}"
    );
    assert!(
        !text.contains("État de la clé"),
        "a hand-over has no condition"
    );
    let flat = lines(&text).join(" ");
    assert!(
        flat.contains(
            "Je soussigné(e) Hélène Bérénice Lefèvre reconnais avoir reçu la clé OTP n° 0012345678"
        ),
        "{flat}"
    );
}

#[test]
fn a_return_receipt_shows_the_condition_and_the_comment() {
    let pdf = render(&restitution()).expect("renders");
    let text = pdftotext(&pdf);
    has_line(&text, "Bordereau de restitution de clé OTP");
    has_line(&text, "Bordereau n° : R-2026-000124");
    has_line(&text, "Date : 31 décembre 2026 à 16 h 45");
    has_line(&text, "État de la clé : endommagée");
    has_line(&text, "Clé reçue par");
    has_line(
        &text,
        "Étui fendu ; cordon rendu. Fin de fonction au 31 décembre.",
    );
    has_line(&text, "Numéro de série : 0012345678");
    let flat = lines(&text).join(" ");
    assert!(
        flat.contains("Hélène Bérénice Lefèvre a restitué la clé OTP n° 0012345678"),
        "{flat}"
    );
    for (condition, label) in [
        (
            KeyCondition::Good,
            "État de la clé : bon état, en état de fonctionnement",
        ),
        (KeyCondition::Broken, "État de la clé : hors d'usage"),
    ] {
        let r = Receipt {
            kind: ReceiptKind::Return { condition },
            ..restitution()
        };
        has_line(&pdftotext(&render(&r).expect("renders")), label);
    }
}

#[test]
fn an_acknowledgement_is_printed_with_its_date() {
    let r = Receipt {
        acknowledgement: Some(Acknowledgement::FirstValidCode(at(2026, 8, 1, 9, 12))),
        ..handover()
    };
    let flat = lines(&pdftotext(&render(&r).expect("renders"))).join(" ");
    assert!(
        flat.contains("Remise confirmée par le titulaire le 1er août 2026 à 09 h 12 par le premier code valide de la clé."),
        "{flat}"
    );
    let r = Receipt {
        acknowledgement: Some(Acknowledgement::ReceiptNumberTyped(at(2026, 8, 2, 10, 0))),
        ..handover()
    };
    let flat = lines(&pdftotext(&render(&r).expect("renders"))).join(" ");
    assert!(
        flat.contains("le 2 août 2026 à 10 h 00 en saisissant le numéro du bordereau"),
        "{flat}"
    );
}

#[test]
fn the_same_receipt_gives_the_same_bytes() {
    assert_eq!(render(&handover()), render(&handover()));
    assert_ne!(render(&handover()), render(&restitution()));
}

#[test]
fn a_long_comment_is_wrapped_and_kept_whole() {
    let words: Vec<String> = (0..120).map(|i| format!("mot{i}é")).collect();
    let r = Receipt {
        comment: Some(words.join(" ")),
        ..restitution()
    };
    let text = pdftotext(&render(&r).expect("renders"));
    let flat = lines(&text).join(" ");
    assert!(flat.contains(&words.join(" ")), "{flat}");
    assert!(lines(&text).iter().all(|l| l.chars().count() < 120));
}

#[test]
fn bad_fields_are_refused_by_name() {
    let check = |edit: &dyn Fn(&mut Receipt), expected: DocumentError| {
        let mut r = handover();
        edit(&mut r);
        assert_eq!(render(&r), Err(expected));
    };
    check(
        &|r| r.number = "  ".into(),
        DocumentError::Empty { field: "number" },
    );
    check(
        &|r| r.holder.name = String::new(),
        DocumentError::Empty {
            field: "holder name",
        },
    );
    check(
        &|r| r.agent.name = String::new(),
        DocumentError::Empty {
            field: "agent name",
        },
    );
    check(
        &|r| r.key.serial = String::new(),
        DocumentError::Empty { field: "serial" },
    );
    check(
        &|r| r.place = String::new(),
        DocumentError::Empty { field: "place" },
    );
    check(
        &|r| r.unit.name = String::new(),
        DocumentError::Empty { field: "unit name" },
    );
    check(
        &|r| r.holder.name = "Jean\nDupont".into(),
        DocumentError::ControlCharacter {
            field: "holder name",
        },
    );
    check(
        &|r| r.comment = Some("bip\u{7}".into()),
        DocumentError::ControlCharacter { field: "comment" },
    );
    check(
        &|r| r.place = "x".repeat(121),
        DocumentError::TooLong {
            field: "place",
            max: 120,
        },
    );
    check(
        &|r| r.unit.name = "École 中".into(),
        DocumentError::Unprintable {
            field: "unit name",
            ch: '中',
            code: 0x4E2D,
        },
    );
    check(
        &|r| r.at = at(2026, 2, 30, 10, 0),
        DocumentError::InvalidDate { field: "date" },
    );
    check(
        &|r| r.acknowledgement = Some(Acknowledgement::FirstValidCode(at(2026, 1, 1, 25, 0))),
        DocumentError::InvalidDate {
            field: "acknowledgement date",
        },
    );
    // A comment may span lines.
    let mut r = restitution();
    r.comment = Some("ligne une\nligne deux".into());
    let text = pdftotext(&render(&r).expect("renders"));
    has_line(&text, "ligne une");
    has_line(&text, "ligne deux");
}
