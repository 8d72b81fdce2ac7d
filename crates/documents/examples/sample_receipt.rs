//! Writes a sample return receipt to the file named by the first argument, to look at the
//! layout: `cargo run -p okey-documents --example sample_receipt -- /tmp/receipt.pdf`.

use okey_documents::{Key, KeyCondition, LocalDateTime, Person, Receipt, ReceiptKind, Unit};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: sample_receipt OUT.pdf")?;
    let r = Receipt {
        kind: ReceiptKind::Return {
            condition: KeyCondition::Damaged,
        },
        number: "R-2026-000124".into(),
        unit: Unit {
            name: "Lycée Leconte de Lisle".into(),
            code: Some("9740001A".into()),
        },
        holder: Person {
            name: "Hélène Lefèvre".into(),
            function: Some("Professeure".into()),
            id: Some("hlefevre".into()),
        },
        agent: Person {
            name: "François Grégoire".into(),
            function: Some("Chef d'établissement".into()),
            id: None,
        },
        key: Key {
            serial: "0012345678".into(),
            model: Some("Nitrokey Pro 2".into()),
            lot: Some("Lot 2D 9740001A".into()),
        },
        at: LocalDateTime {
            year: 2026,
            month: 12,
            day: 31,
            hour: 16,
            minute: 45,
        },
        place: "Saint-Denis, secrétariat du lycée".into(),
        comment: Some("Étui fendu ; cordon rendu. Fin de fonction au 31 décembre.".into()),
        acknowledgement: None,
    };
    std::fs::write(out, okey_documents::render(&r)?)?;
    Ok(())
}
