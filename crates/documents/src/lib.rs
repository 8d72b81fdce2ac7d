//! okey's printed documents: the French hand-over and return receipts of a key.
//!
//! When a key is handed to its holder ("bordereau de remise") or comes back to its lot
//! ("bordereau de restitution"), both parties get a paper receipt. [`render`] is a pure
//! function from a [`Receipt`] to the bytes of a one-page A4 PDF: no clock, no file system, no
//! randomness, so the same receipt always gives the same bytes and a stored receipt can be
//! printed again identically.
//!
//! **Why krilla.** The PDF is produced by [`krilla`], the high-level PDF writer maintained with
//! the typst project on top of `pdf-writer`. It embeds a subset of a real TrueType font with a
//! `ToUnicode` map, so accented French text ("clé", "délivré", "août") renders correctly and is
//! extracted back as the same characters by any PDF reader or text extractor; no PDF syntax is
//! written by hand here. The font is DejaVu Sans (regular and bold, in `fonts/`, under the
//! Bitstream Vera licence), embedded in the binary so a receipt never depends on the fonts of
//! the machine that prints it.
//!
//! **Input is checked, never guessed.** Every field is validated before anything is drawn: empty
//! required fields, control characters, over-long values and characters the font cannot show
//! are refused with a [`DocumentError`] naming the field, instead of printing a blank box.
#![forbid(unsafe_code)]

mod layout;

use std::fmt;

pub use layout::FONT_NAME;

/// Which receipt this is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptKind {
    /// "Bordereau de remise": the key is handed to its holder.
    HandOver,
    /// "Bordereau de restitution": the holder gives the key back, in this condition.
    Return {
        /// The key's condition as checked by the person receiving it.
        condition: KeyCondition,
    },
}

/// A returned key's condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCondition {
    /// Works and undamaged: can go back to stock.
    Good,
    /// Damaged (case, connector, display) but the holder returned it.
    Damaged,
    /// Does not work any more.
    Broken,
}

impl KeyCondition {
    /// The French wording printed on the receipt.
    pub fn label_fr(self) -> &'static str {
        match self {
            KeyCondition::Good => "bon état, en état de fonctionnement",
            KeyCondition::Damaged => "endommagée",
            KeyCondition::Broken => "hors d'usage",
        }
    }
}

/// A person named on a receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// Full name as printed ("Marie-Hélène Lefèvre").
    pub name: String,
    /// Function ("Cheffe d'établissement", "Professeur"), if known.
    pub function: Option<String>,
    /// Directory identifier (stable id), if known.
    pub id: Option<String>,
}

/// The unit (school, district, office) whose lot the key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// Name ("Lycée Leconte de Lisle").
    pub name: String,
    /// Official code, e.g. a school's 8-character code `9740001A`, if it has one.
    pub code: Option<String>,
}

/// The key being handed over or returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// Serial number printed on the key.
    pub serial: String,
    /// Model or kind ("Nitrokey Pro 2", "clé matérielle"), if known.
    pub model: Option<String>,
    /// The lot it belongs to (after the return: the lot it goes back to), if known.
    pub lot: Option<String>,
}

/// A local civil date and time, as printed (the caller converts from UTC in its time zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalDateTime {
    /// Year (2000..=2999).
    pub year: u16,
    /// Month 1..=12.
    pub month: u8,
    /// Day 1..=31 (checked against the month).
    pub day: u8,
    /// Hour 0..=23.
    pub hour: u8,
    /// Minute 0..=59.
    pub minute: u8,
}

impl LocalDateTime {
    fn check(&self, field: &'static str) -> Result<(), DocumentError> {
        let days = match self.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if is_leap(self.year) => 29,
            2 => 28,
            _ => 0,
        };
        let ok = (2000..=2999).contains(&self.year)
            && self.day >= 1
            && self.day <= days
            && self.hour <= 23
            && self.minute <= 59;
        if ok {
            Ok(())
        } else {
            Err(DocumentError::InvalidDate { field })
        }
    }

    /// French long form: "1er août 2026 à 09 h 05".
    pub fn to_french(&self) -> String {
        let day = if self.day == 1 {
            "1er".to_string()
        } else {
            self.day.to_string()
        };
        format!(
            "{day} {} {} à {:02} h {:02}",
            MONTHS_FR[usize::from(self.month.saturating_sub(1)) % 12],
            self.year,
            self.hour,
            self.minute
        )
    }
}

fn is_leap(y: u16) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

const MONTHS_FR: [&str; 12] = [
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

/// How the holder acknowledged the receipt, when not by a signature on paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acknowledgement {
    /// The holder's first valid code from the key confirmed the hand-over.
    FirstValidCode(LocalDateTime),
    /// The holder typed the receipt number back.
    ReceiptNumberTyped(LocalDateTime),
}

/// Everything a receipt shows. Build one, then call [`render`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Hand-over or return (with the key's condition).
    pub kind: ReceiptKind,
    /// The receipt number, unique per receipt ("R-2026-000123").
    pub number: String,
    /// The unit whose lot the key belongs to.
    pub unit: Unit,
    /// The key's holder.
    pub holder: Person,
    /// The other party: who hands the key over (hand-over) or receives it back (return).
    pub agent: Person,
    /// The key.
    pub key: Key,
    /// When it happened, local time.
    pub at: LocalDateTime,
    /// Where it happened ("Saint-Denis, secrétariat du lycée").
    pub place: String,
    /// A free comment (reason of a return, accessories), if any.
    pub comment: Option<String>,
    /// The holder's acknowledgement other than a paper signature, if any.
    pub acknowledgement: Option<Acknowledgement>,
}

impl Receipt {
    /// The document's French title.
    pub fn title_fr(&self) -> &'static str {
        match self.kind {
            ReceiptKind::HandOver => "Bordereau de remise de clé OTP",
            ReceiptKind::Return { .. } => "Bordereau de restitution de clé OTP",
        }
    }
}

/// Why a receipt could not be produced. Nothing is produced in that case.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    /// A required field is empty (or only spaces).
    #[error("the receipt's {field} is empty")]
    Empty {
        /// Field name.
        field: &'static str,
    },
    /// A field is longer than allowed.
    #[error("the receipt's {field} is longer than {max} characters")]
    TooLong {
        /// Field name.
        field: &'static str,
        /// Maximum length in characters.
        max: usize,
    },
    /// A field holds a control character (line breaks included, except in the comment).
    #[error("the receipt's {field} contains a control character")]
    ControlCharacter {
        /// Field name.
        field: &'static str,
    },
    /// A field holds a character the receipt's font cannot show.
    #[error(
        "the receipt's {field} contains {ch:?} (U+{code:04X}), which the receipt's font cannot print"
    )]
    Unprintable {
        /// Field name.
        field: &'static str,
        /// The character.
        ch: char,
        /// Its code point.
        code: u32,
    },
    /// A date is not a real date or time.
    #[error("the receipt's {field} is not a valid date and time")]
    InvalidDate {
        /// Field name.
        field: &'static str,
    },
    /// The PDF writer failed (not expected with a checked receipt).
    #[error("the PDF could not be written: {0}")]
    Pdf(String),
}

impl fmt::Display for ReceiptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiptKind::HandOver => f.write_str("remise"),
            ReceiptKind::Return { .. } => f.write_str("restitution"),
        }
    }
}

const SHORT: usize = 120;
const COMMENT: usize = 1000;

/// Check a receipt without producing it (what [`render`] does first).
pub fn validate(r: &Receipt) -> Result<(), DocumentError> {
    let fonts = layout::Fonts::get();
    let req = |field, v: &str, max| check_text(fonts, field, v, max, false, true);
    let opt = |field, v: &Option<String>, max| match v {
        Some(v) => check_text(fonts, field, v, max, false, true),
        None => Ok(()),
    };
    req("number", &r.number, 64)?;
    req("unit name", &r.unit.name, SHORT)?;
    opt("unit code", &r.unit.code, 32)?;
    req("holder name", &r.holder.name, SHORT)?;
    opt("holder function", &r.holder.function, SHORT)?;
    opt("holder id", &r.holder.id, 64)?;
    req("agent name", &r.agent.name, SHORT)?;
    opt("agent function", &r.agent.function, SHORT)?;
    opt("agent id", &r.agent.id, 64)?;
    req("serial", &r.key.serial, 64)?;
    opt("key model", &r.key.model, SHORT)?;
    opt("lot", &r.key.lot, SHORT)?;
    req("place", &r.place, SHORT)?;
    if let Some(c) = &r.comment {
        check_text(fonts, "comment", c, COMMENT, true, false)?;
    }
    r.at.check("date")?;
    match r.acknowledgement {
        Some(Acknowledgement::FirstValidCode(t)) | Some(Acknowledgement::ReceiptNumberTyped(t)) => {
            t.check("acknowledgement date")?
        }
        None => {}
    }
    Ok(())
}

fn check_text(
    fonts: &layout::Fonts,
    field: &'static str,
    v: &str,
    max: usize,
    newlines: bool,
    required: bool,
) -> Result<(), DocumentError> {
    if v.trim().is_empty() {
        return if required {
            Err(DocumentError::Empty { field })
        } else {
            Ok(())
        };
    }
    if v.chars().count() > max {
        return Err(DocumentError::TooLong { field, max });
    }
    for ch in v.chars() {
        if ch == '\n' && newlines {
            continue;
        }
        if ch.is_control() {
            return Err(DocumentError::ControlCharacter { field });
        }
        if !fonts.can_print(ch) {
            return Err(DocumentError::Unprintable {
                field,
                ch,
                code: u32::from(ch),
            });
        }
    }
    Ok(())
}

/// Render a receipt as the bytes of a one-page A4 PDF, in French.
///
/// Pure: the same receipt gives the same bytes. Fails, producing nothing, when a field is
/// invalid (see [`validate`]).
pub fn render(r: &Receipt) -> Result<Vec<u8>, DocumentError> {
    validate(r)?;
    layout::render(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_dates() {
        let d = |year, month, day, hour, minute| LocalDateTime {
            year,
            month,
            day,
            hour,
            minute,
        };
        assert_eq!(d(2026, 8, 1, 9, 5).to_french(), "1er août 2026 à 09 h 05");
        assert_eq!(
            d(2026, 12, 31, 23, 59).to_french(),
            "31 décembre 2026 à 23 h 59"
        );
        assert_eq!(
            d(2028, 2, 29, 0, 0).to_french(),
            "29 février 2028 à 00 h 00"
        );
        assert!(d(2028, 2, 29, 0, 0).check("d").is_ok());
        assert!(d(2026, 2, 29, 0, 0).check("d").is_err());
        assert!(d(2100, 2, 29, 0, 0).check("d").is_err());
        assert!(d(2000, 2, 29, 0, 0).check("d").is_ok());
        assert!(d(2026, 4, 31, 0, 0).check("d").is_err());
        assert!(d(2026, 13, 1, 0, 0).check("d").is_err());
        assert!(d(2026, 1, 0, 0, 0).check("d").is_err());
        assert!(d(2026, 1, 1, 24, 0).check("d").is_err());
        assert!(d(2026, 1, 1, 0, 60).check("d").is_err());
    }
}
