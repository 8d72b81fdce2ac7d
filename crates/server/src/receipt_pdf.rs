//! The printed receipt of a hand-over or a return: the stored receipt, its lot and unit, and
//! the directory's names of both parties, turned into an [`okey_documents::Receipt`] and
//! rendered as a PDF.

use okey_documents as doc;
use okey_domain::org::{Function, PersonId, UnitId};
use okey_store::{LotKey, LotRow, Receipt, ReceiptKind, Store, StoreError, TokenKind};

/// Largest offset from UTC accepted for printed dates, in minutes (UTC+14:00, Kiribati).
pub(crate) const MAX_UTC_OFFSET_MINUTES: i32 = 14 * 60;

/// Why a receipt could not be printed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrintError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value cannot be printed (e.g. a name with a character the font lacks).
    #[error("receipt {number} cannot be printed: {source}")]
    Document {
        /// The receipt's number.
        number: String,
        /// What the renderer refused.
        source: doc::DocumentError,
    },
}

/// The French name of a function, as printed under a person's name.
pub(crate) fn function_fr(f: Function) -> &'static str {
    match f {
        Function::HeadOfSchool => "Chef d'établissement",
        Function::DeputyHead => "Adjoint au chef d'établissement",
        Function::Delegate => "Délégué du chef d'établissement",
        Function::SchoolDirector => "Directeur d'école",
        Function::ActingDirector => "Directeur d'école faisant fonction",
        Function::DistrictInspector => "Inspecteur de l'Éducation nationale",
        Function::DistrictIctAdviser => "Animateur TICE de circonscription",
        Function::SupportAgent => "Agent du centre de support",
        Function::ItAgent => "Agent de la DSI",
        Function::ExamsOfficeAgent => "Agent de la division des examens",
        Function::EntCorrespondent => "Correspondant ENT",
        Function::Staff => "Personnel",
    }
}

/// A Unix time at `offset` minutes from UTC, as a civil date and time.
pub(crate) fn local_time(t: u64, offset_minutes: i32) -> doc::LocalDateTime {
    crate::dates::civil(t, &crate::dates::fixed(offset_minutes))
}

/// A person as printed: the directory's name and first function when they are in it, the id
/// alone otherwise.
fn person(store: &Store, id: &str) -> Result<doc::Person, StoreError> {
    let found = match PersonId::parse(id) {
        Ok(pid) => store.person(&pid)?,
        Err(_) => None,
    };
    Ok(match found {
        Some(p) => doc::Person {
            name: p.name,
            function: p.functions.first().map(|f| function_fr(*f).to_owned()),
            id: Some(p.id.as_str().to_owned()),
        },
        None => doc::Person {
            name: id.to_owned(),
            function: None,
            id: None,
        },
    })
}

/// Build the printed receipt of stored receipt `r` of key `key`, in lot `lot`.
pub(crate) fn build(
    store: &Store,
    r: &Receipt,
    key: &LotKey,
    lot: Option<&LotRow>,
    offset_minutes: i32,
) -> Result<doc::Receipt, StoreError> {
    let unit_name = match lot {
        Some(l) => {
            let from_directory = match UnitId::parse(&l.unit) {
                Ok(u) => store.org_tree()?.unit(&u).map(|u| u.name.clone()),
                Err(_) => None,
            };
            from_directory.unwrap_or_else(|| l.name.clone())
        }
        None => r.lot.clone(),
    };
    let kind = match r.kind {
        ReceiptKind::HandOver => doc::ReceiptKind::HandOver,
        ReceiptKind::Return => doc::ReceiptKind::Return {
            condition: match r.condition.as_deref() {
                Some("damaged") => doc::KeyCondition::Damaged,
                Some("broken") => doc::KeyCondition::Broken,
                _ => doc::KeyCondition::Good,
            },
        },
    };
    let comment = r.until.map(|u| {
        format!(
            "Remise temporaire : la clé est désactivée et doit être restituée le {}.",
            local_time(u, offset_minutes).to_french()
        )
    });
    let acknowledgement = match (r.confirmed_at, r.confirmed_how.as_deref()) {
        (Some(t), Some("code")) => Some(doc::Acknowledgement::FirstValidCode(local_time(
            t,
            offset_minutes,
        ))),
        (Some(t), Some(_)) => Some(doc::Acknowledgement::ReceiptNumberTyped(local_time(
            t,
            offset_minutes,
        ))),
        _ => None,
    };
    Ok(doc::Receipt {
        kind,
        number: r.number.clone(),
        unit: doc::Unit {
            name: unit_name.clone(),
            code: lot.map(|l| l.unit.clone()),
        },
        holder: person(store, &r.holder)?,
        agent: person(store, &r.staff)?,
        key: doc::Key {
            serial: r.serial.clone(),
            model: Some(
                match key.kind {
                    TokenKind::Hardware => "clé matérielle",
                    TokenKind::Software => "clé logicielle",
                }
                .to_owned(),
            ),
            lot: Some(match lot {
                Some(l) => format!("{} ({})", l.name, l.id),
                None => r.lot.clone(),
            }),
        },
        at: local_time(r.at, offset_minutes),
        place: r.place.clone().unwrap_or(unit_name),
        comment,
        acknowledgement,
    })
}

/// Render stored receipt `r` as PDF bytes.
pub(crate) fn render(
    store: &Store,
    r: &Receipt,
    key: &LotKey,
    lot: Option<&LotRow>,
    offset_minutes: i32,
) -> Result<Vec<u8>, PrintError> {
    let printed = build(store, r, key, lot, offset_minutes)?;
    doc::render(&printed).map_err(|source| PrintError::Document {
        number: r.number.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_become_civil_dates_at_an_offset() {
        // 2026-08-01T05:05:00Z.
        let t = 1_785_560_700;
        let utc = local_time(t, 0);
        assert_eq!(utc.to_french(), "1er août 2026 à 05 h 05");
        assert_eq!(local_time(t, 240).to_french(), "1er août 2026 à 09 h 05");
        assert_eq!(local_time(t, -360).to_french(), "31 juillet 2026 à 23 h 05");
        // 2028-02-29T23:59:00Z, a leap day.
        assert_eq!(
            local_time(1_835_481_540, 0).to_french(),
            "29 février 2028 à 23 h 59"
        );
    }
}
