//! The support desk (seeds 004, 003 case 3, 001): who may open a case, what a case must say,
//! its priority, its number, and the diagnosis of a key that "no longer works".
//!
//! * **Who** (004): a secondary school's direction team (head, deputy) and the ENT
//!   correspondents the heads have named; a primary school's director or acting director (003
//!   case 3), whose IEN is copied on every mail of the case. Everyone else is refused with a
//!   sentence that says who may ([`may_open`]).
//! * **What** (004): name, function, telephone, unit / town, subject, population concerned,
//!   precise description, URL or breadcrumb, and a screenshot or attachment ([`CaseForm::check`]
//!   names the first missing field).
//! * **Priority** blocking / major / minor with 004's definitions ([`Priority::help`]); the queue
//!   is ordered by priority, then age.
//! * **Number**: the declarant's unit, the year and a per-unit sequence, `0421234A-2026-0007`
//!   ([`case_number`]).
//! * **Diagnosis** ([`diagnose`]): from a key's facts (custody, status, lock, failures, last
//!   accepted login, last failure reasons, validity, TOTP drift), the action that fits. A lost PIN
//!   is reset by its holder choosing a new one, never by support reading or setting it.

use std::fmt;
use std::str::FromStr;

use crate::keystate::KeyState;
use crate::org::{Function, OrgTree, Person, UnitKind};
use crate::status::Status;

/// Longest free-text field of a case form, in characters (the description and replies).
pub const MAX_TEXT: usize = 20_000;
/// Longest one-line field (name, function, telephone, subject...), in characters.
pub const MAX_LINE: usize = 300;
/// Most serials listed on a "keys not in okey" case.
pub const MAX_SERIALS: usize = 500;

/// How urgent a case is (004, "degré de priorité").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Bloquante: the service is unavailable.
    Blocking,
    /// Majeure: a major function of a service is unavailable.
    Major,
    /// Mineure: information, guidance, help on a minor function.
    Minor,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 3] = [Priority::Blocking, Priority::Major, Priority::Minor];

    /// The names accepted.
    pub const NAMES: &'static str = "blocking, major, minor";

    /// Its name in the API and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Blocking => "blocking",
            Priority::Major => "major",
            Priority::Minor => "minor",
        }
    }

    /// Its place in the queue: 0 is served first.
    pub const fn rank(self) -> u8 {
        match self {
            Priority::Blocking => 0,
            Priority::Major => 1,
            Priority::Minor => 2,
        }
    }

    /// The French word the mails use.
    pub const fn french(self) -> &'static str {
        match self {
            Priority::Blocking => "bloquante",
            Priority::Major => "majeure",
            Priority::Minor => "mineure",
        }
    }

    /// 004's definition, for the help text.
    pub const fn help(self) -> &'static str {
        match self {
            Priority::Blocking => "bloquante: the service (ENT, logins) is unavailable",
            Priority::Major => "majeure: a major function of a service is unavailable",
            Priority::Minor => {
                "mineure: a request for information, guidance, or help with a minor function \
                 of a service that is unavailable"
            }
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = CaseError;
    fn from_str(s: &str) -> Result<Self, CaseError> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| CaseError::Unknown {
                what: "priority",
                value: s.to_owned(),
                expected: Priority::NAMES,
            })
    }
}

/// What a case is about (001 and 003 list why people call support).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaseKind {
    /// "Ma clé ne fonctionne plus": the case names the key and offers its diagnosis.
    KeyNotWorking,
    /// The holder forgot their PIN.
    LostPin,
    /// The key is desynchronised.
    Desynchronised,
    /// The key is lost, stolen or broken: a replacement (and a temporary key meanwhile).
    KeyLost,
    /// Keys in a drawer that okey does not know (001): support registers the listed serials
    /// into the school's lot.
    KeysNotInOkey,
    /// Anything else.
    Other,
}

impl CaseKind {
    /// Every kind.
    pub const ALL: [CaseKind; 6] = [
        CaseKind::KeyNotWorking,
        CaseKind::LostPin,
        CaseKind::Desynchronised,
        CaseKind::KeyLost,
        CaseKind::KeysNotInOkey,
        CaseKind::Other,
    ];

    /// The names accepted.
    pub const NAMES: &'static str =
        "key_not_working, lost_pin, desynchronised, key_lost, keys_not_in_okey, other";

    /// Its name in the API and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            CaseKind::KeyNotWorking => "key_not_working",
            CaseKind::LostPin => "lost_pin",
            CaseKind::Desynchronised => "desynchronised",
            CaseKind::KeyLost => "key_lost",
            CaseKind::KeysNotInOkey => "keys_not_in_okey",
            CaseKind::Other => "other",
        }
    }

    /// Whether the case names one key (its serial is then required).
    pub const fn names_a_key(self) -> bool {
        matches!(
            self,
            CaseKind::KeyNotWorking
                | CaseKind::LostPin
                | CaseKind::Desynchronised
                | CaseKind::KeyLost
        )
    }
}

impl fmt::Display for CaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CaseKind {
    type Err = CaseError;
    fn from_str(s: &str) -> Result<Self, CaseError> {
        CaseKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| CaseError::Unknown {
                what: "case kind",
                value: s.to_owned(),
                expected: CaseKind::NAMES,
            })
    }
}

/// A refused case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    /// The person may not open a case.
    #[error(
        "only a secondary school's direction team (head of school or deputy), the ENT \
         correspondents the heads have named, and primary school directors (their IEN in copy) \
         may open a support case; {who} is {what}"
    )]
    NotAllowed {
        /// The person.
        who: String,
        /// What they are.
        what: String,
    },
    /// A required field is empty.
    #[error("the case needs its {0}")]
    Missing(&'static str),
    /// A field is too long or holds control characters.
    #[error("the {field} {why}")]
    Bad {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// An unknown name.
    #[error("unknown {what} {value:?}: expected one of {expected}")]
    Unknown {
        /// What was named.
        what: &'static str,
        /// The value given.
        value: String,
        /// The names accepted.
        expected: &'static str,
    },
}

/// Why a person may open a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opener {
    /// Head of school or deputy of a secondary school (004).
    DirectionTeam,
    /// An ENT correspondent named by a head of school (004).
    EntCorrespondent,
    /// A primary school's director or acting director (003 case 3): their IEN is copied.
    SchoolDirector,
}

impl Opener {
    /// Whether the mails of the case go to the declarant's IEN in copy (003 case 3).
    pub const fn copies_ien(self) -> bool {
        matches!(self, Opener::SchoolDirector)
    }
}

/// Whether `person` may open a support case, and as what. The function must fit their unit
/// (a head in a secondary school, a director in a primary school, an ENT correspondent in a
/// school); the school must be known to the tree.
pub fn may_open(person: &Person, tree: &OrgTree) -> Result<Opener, CaseError> {
    let refuse = |what: String| CaseError::NotAllowed {
        who: person.name.clone(),
        what,
    };
    let Some(unit) = tree.unit(&person.unit) else {
        return Err(refuse(format!(
            "in unit {}, which the directory does not know",
            person.unit
        )));
    };
    let degree = match &unit.kind {
        UnitKind::School { .. } => {
            let parent = unit.parent.as_ref().and_then(|p| tree.unit(p));
            match parent.map(|p| &p.kind) {
                Some(UnitKind::District) => Some(1),
                _ => Some(2),
            }
        }
        _ => None,
    };
    let has = |f| person.has(f);
    match degree {
        Some(2) if has(Function::HeadOfSchool) || has(Function::DeputyHead) => {
            Ok(Opener::DirectionTeam)
        }
        Some(1) if has(Function::SchoolDirector) || has(Function::ActingDirector) => {
            Ok(Opener::SchoolDirector)
        }
        Some(_) if has(Function::EntCorrespondent) => Ok(Opener::EntCorrespondent),
        _ => {
            let functions = person
                .functions
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ");
            let place = match degree {
                Some(2) => "a secondary school",
                Some(_) => "a primary school",
                None => unit.kind.name(),
            };
            Err(refuse(format!(
                "{} in {place} ({})",
                if functions.is_empty() {
                    "nothing"
                } else {
                    &functions
                },
                unit.id
            )))
        }
    }
}

/// An attachment's checked description (its content is checked with
/// [`crate::request::check_attachment`] before the form is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// File name.
    pub name: String,
    /// Media type found in its content.
    pub media_type: &'static str,
    /// Size in bytes.
    pub size: usize,
}

/// The fields a case must give (004, "devront renseigner les champs suivants").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseForm {
    /// Nom et prénom.
    pub name: String,
    /// Fonction.
    pub function: String,
    /// Numéro de téléphone.
    pub phone: String,
    /// Établissement / ville.
    pub unit_town: String,
    /// Objet de la demande.
    pub subject: String,
    /// Population concernée (enseignant, élève...).
    pub population: String,
    /// Description précise.
    pub description: String,
    /// URL de l'établissement ou fil d'Ariane.
    pub location: String,
    /// Capture d'écran et/ou pièce jointe: at least one.
    pub attachments: Vec<AttachmentInfo>,
}

fn line(field: &'static str, v: &str) -> Result<(), CaseError> {
    if v.trim().is_empty() {
        return Err(CaseError::Missing(field));
    }
    if v.chars().count() > MAX_LINE || v.chars().any(char::is_control) {
        return Err(CaseError::Bad {
            field,
            why: format!("is one line of at most {MAX_LINE} characters"),
        });
    }
    Ok(())
}

/// Check a free text (a description, a reply, a note): not blank, at most [`MAX_TEXT`]
/// characters, no control characters but lines and tabs.
pub fn check_text(field: &'static str, v: &str) -> Result<(), CaseError> {
    if v.trim().is_empty() {
        return Err(CaseError::Missing(field));
    }
    if v.chars().count() > MAX_TEXT
        || v.chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(CaseError::Bad {
            field,
            why: format!("is text of at most {MAX_TEXT} characters"),
        });
    }
    Ok(())
}

impl CaseForm {
    /// The first required field that is missing or malformed, in the order 004 lists them.
    pub fn check(&self) -> Result<(), CaseError> {
        line("name", &self.name)?;
        line("function", &self.function)?;
        let digits = self.phone.chars().filter(char::is_ascii_digit).count();
        line("telephone", &self.phone)?;
        if !(4..=20).contains(&digits)
            || !self
                .phone
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '.' | '-' | '(' | ')'))
        {
            return Err(CaseError::Bad {
                field: "telephone",
                why: "is a telephone number: 4 to 20 digits, with spaces, dots, dashes, \
                      brackets or a leading +"
                    .into(),
            });
        }
        line("unit / town", &self.unit_town)?;
        line("subject", &self.subject)?;
        line("population concerned", &self.population)?;
        check_text("description", &self.description)?;
        line("URL or breadcrumb", &self.location)?;
        if self.attachments.is_empty() {
            return Err(CaseError::Missing("screenshot or attachment"));
        }
        Ok(())
    }
}

/// A case's number: the declarant's unit, the year, and the unit's sequence for that year,
/// e.g. `0421234A-2026-0007` (at least four digits, more when a unit passes 9999 in a year).
pub fn case_number(unit: &str, year: i32, seq: u64) -> String {
    format!("{}-{year}-{seq:04}", unit.to_ascii_uppercase())
}

/// Whether `s` looks like a case number [`case_number`] gives (for input checks).
pub fn is_case_number(s: &str) -> bool {
    let mut parts = s.rsplitn(3, '-');
    let (Some(seq), Some(year), Some(unit)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !unit.is_empty()
        && unit.len() <= crate::org::MAX_ORG_ID_LEN
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && (4..=12).contains(&seq.len())
        && seq.bytes().all(|b| b.is_ascii_digit())
}

/// The civil year of a Unix time (UTC).
pub fn year_of(unix: u64) -> i32 {
    // Days since 1970-01-01, then the proleptic Gregorian calendar (H. Hinnant's algorithm).
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX / 2);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    i32::try_from(year).unwrap_or(i32::MAX)
}

/// Why a code was refused, as the audit records it (`okey_store::Reason` names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// When (Unix seconds).
    pub at: u64,
    /// The reason's name: `wrong_code`, `wrong_pin`, `locked`, `not_active`...
    pub reason: String,
}

/// What is known of a key, for its diagnosis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFacts {
    /// Its custody state (`None`: in no lot).
    pub custody: Option<KeyState>,
    /// Its status.
    pub status: Status,
    /// Hard-locked after too many failures.
    pub locked: bool,
    /// Soft-locked until then.
    pub locked_until: Option<u64>,
    /// Consecutive failures.
    pub failures: u32,
    /// Failures that lock it.
    pub lock_threshold: u32,
    /// Last accepted code.
    pub last_accept: Option<u64>,
    /// The most recent refusals, newest first.
    pub recent_failures: Vec<Failure>,
    /// Validity end.
    pub valid_until: Option<u64>,
    /// Deactivation (end of function).
    pub active_until: Option<u64>,
    /// For TOTP, the clock drift the key showed, in steps.
    pub totp_drift: Option<i64>,
    /// Steps either side of the expected one that verify accepts.
    pub totp_skew: u32,
    /// Whether a server-side PIN is set.
    pub has_pin: bool,
    /// A software key (enrolls with its first code).
    pub software: bool,
    /// Now.
    pub now: u64,
}

/// The action that fits a key that does not work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remedy {
    /// Nothing found wrong: the key should work.
    Nothing,
    /// Unlock it (support): the failures were wrong codes typed, not a fault of the key.
    Unlock,
    /// Resynchronise it from two consecutive codes (HOTP counter behind, TOTP clock drift).
    Resync,
    /// The holder chooses a new PIN (support never reads or sets it), then it is unlocked if
    /// locked.
    PinReset,
    /// Enable it again (it was disabled by an administrator).
    Enable,
    /// Finish the hand-over: it has not reached its holder yet.
    HandOver,
    /// Replace it (lost, expired, revoked, scrapped, past its end of function); a temporary
    /// key bridges the wait.
    Replacement,
}

impl Remedy {
    /// Its name in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Remedy::Nothing => "nothing",
            Remedy::Unlock => "unlock",
            Remedy::Resync => "resync",
            Remedy::PinReset => "pin_reset",
            Remedy::Enable => "enable",
            Remedy::HandOver => "hand_over",
            Remedy::Replacement => "replacement",
        }
    }

    /// What support does, in a sentence.
    pub const fn advice(self) -> &'static str {
        match self {
            Remedy::Nothing => {
                "no fault found: the key should work; ask for the exact message and time of a \
                 failed login"
            }
            Remedy::Unlock => "unlock the key (okey token unlock SERIAL)",
            Remedy::Resync => {
                "resynchronise the key from two consecutive codes the holder reads from it \
                 (okey token resync SERIAL CODE1 CODE2)"
            }
            Remedy::PinReset => {
                "the holder chooses a new PIN themselves (support never reads or sets it); \
                 unlock the key afterwards if it is locked"
            }
            Remedy::Enable => "enable the key again (okey token enable SERIAL)",
            Remedy::HandOver => "the key has not been handed over: finish the hand-over",
            Remedy::Replacement => {
                "prepare a replacement key; meanwhile issue a temporary key (okey key temporary \
                 SERIAL)"
            }
        }
    }
}

/// A diagnosis: what was found, and the action that fits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    /// Findings, one sentence each.
    pub findings: Vec<String>,
    /// The action.
    pub remedy: Remedy,
}

/// How many of the most recent refusals the diagnosis weighs.
const RECENT: usize = 10;

/// Diagnose a key that "no longer works": the first rule that applies wins, from the final
/// (replace it) to the mild (nothing found).
pub fn diagnose(k: &KeyFacts) -> Diagnosis {
    let mut findings = Vec::new();
    let recent = &k.recent_failures[..k.recent_failures.len().min(RECENT)];
    let count = |r: &str| recent.iter().filter(|f| f.reason == r).count();
    let (wrong_pin, wrong_code) = (count("wrong_pin"), count("wrong_code"));
    if let Some(c) = k.custody {
        findings.push(format!("custody: {}", c.words()));
    }
    findings.push(format!(
        "status {:?}, {} consecutive failure(s) of {} that lock it{}",
        k.status,
        k.failures,
        k.lock_threshold,
        if k.locked { ", locked" } else { "" }
    ));
    match k.last_accept {
        Some(t) => findings.push(format!("last accepted login at {t}")),
        None => findings.push("no accepted login on record".into()),
    }
    if !recent.is_empty() {
        let reasons = recent
            .iter()
            .map(|f| f.reason.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        findings.push(format!("last refusals, newest first: {reasons}"));
    }
    if let Some(d) = k.totp_drift {
        findings.push(format!("TOTP clock drift: {d} step(s)"));
    }
    let expired = k.valid_until.is_some_and(|t| t <= k.now);
    let ended = k.active_until.is_some_and(|t| t <= k.now);
    if let Some(t) = k.valid_until {
        findings.push(format!(
            "valid until {t}{}",
            if expired { " (expired)" } else { "" }
        ));
    }
    if ended {
        findings.push("deactivated (end of function or of a temporary period)".into());
    }
    let remedy = if k.status == Status::Revoked
        || expired
        || ended
        || matches!(
            k.custody,
            Some(KeyState::Lost | KeyState::Expired | KeyState::Scrapped | KeyState::Recycled)
        ) {
        Remedy::Replacement
    } else if k.status == Status::Disabled {
        Remedy::Enable
    } else if !crate::keystate::can_authenticate(k.custody, k.software) {
        Remedy::HandOver
    } else if wrong_pin > 0 && wrong_pin >= wrong_code {
        Remedy::PinReset
    } else if k.locked || k.locked_until.is_some_and(|t| t > k.now) {
        // Wrong codes typed until the lock: a counter or clock out of step shows the same
        // way, so the unlock comes first and a resync follows if the next code still fails.
        Remedy::Unlock
    } else if wrong_code > 0
        || k.totp_drift
            .is_some_and(|d| d.unsigned_abs() > u64::from(k.totp_skew))
    {
        Remedy::Resync
    } else {
        Remedy::Nothing
    };
    Diagnosis { findings, remedy }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::org::Unit;

    fn tree() -> OrgTree {
        let school = |uai: &str| UnitKind::School {
            uai: crate::org::Uai::parse(uai).unwrap(),
            under_contract: true,
        };
        OrgTree::new([
            Unit::new("ac", "Académie", UnitKind::Rectorat, None).unwrap(),
            Unit::new("sc", "Assistance", UnitKind::SupportCentre, Some("ac")).unwrap(),
            Unit::new("0750654D", "Collège", school("0750654D"), Some("ac")).unwrap(),
            Unit::new("d1", "Circonscription", UnitKind::District, Some("ac")).unwrap(),
            Unit::new("9740001H", "École", school("9740001H"), Some("d1")).unwrap(),
        ])
        .unwrap()
    }

    fn person(unit: &str, f: &[Function]) -> Person {
        Person::new("p1", "Ann Dupont", "ann@ac.fr", unit, f, None).unwrap()
    }

    #[test]
    fn the_direction_team_ent_correspondents_and_directors_may_open_a_case() {
        let t = tree();
        let open = |u, f: &[Function]| may_open(&person(u, f), &t);
        assert_eq!(
            open("0750654D", &[Function::HeadOfSchool]),
            Ok(Opener::DirectionTeam)
        );
        assert_eq!(
            open("0750654D", &[Function::DeputyHead]),
            Ok(Opener::DirectionTeam)
        );
        assert_eq!(
            open("0750654D", &[Function::EntCorrespondent, Function::Staff]),
            Ok(Opener::EntCorrespondent)
        );
        let director = open("9740001H", &[Function::SchoolDirector]).unwrap();
        assert_eq!(director, Opener::SchoolDirector);
        assert!(director.copies_ien());
        assert!(!Opener::DirectionTeam.copies_ien());
        assert_eq!(
            open("9740001H", &[Function::ActingDirector]),
            Ok(Opener::SchoolDirector)
        );
    }

    #[test]
    fn everyone_else_is_refused_with_who_may() {
        let t = tree();
        for (u, f) in [
            ("0750654D", vec![Function::Staff]),
            ("0750654D", vec![Function::Delegate]),
            ("d1", vec![Function::DistrictInspector]),
            ("sc", vec![Function::SupportAgent]),
            ("nowhere", vec![Function::HeadOfSchool]),
        ] {
            let e = may_open(&person(u, &f), &t).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with(
                    "only a secondary school's direction team (head of school or deputy)"
                ),
                "{text}"
            );
            assert!(text.contains("primary school directors"), "{text}");
            assert!(text.contains("Ann Dupont"), "{text}");
        }
        let e = may_open(&person("0750654D", &[Function::Staff]), &t).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("Ann Dupont is staff in a secondary school (0750654D)")
        );
    }

    fn form() -> CaseForm {
        CaseForm {
            name: "Ann Dupont".into(),
            function: "Principale".into(),
            phone: "04 77 48 41 41".into(),
            unit_town: "Collège du Pilat, Saint-Étienne".into(),
            subject: "Clé OTP refusée".into(),
            population: "enseignant".into(),
            description: "La clé de M. Martin est refusée depuis lundi.".into(),
            location: "Accueil > Applications".into(),
            attachments: vec![AttachmentInfo {
                name: "capture.png".into(),
                media_type: "image/png",
                size: 100,
            }],
        }
    }

    #[test]
    fn each_required_field_is_named_when_missing() {
        assert_eq!(form().check(), Ok(()));
        type Clear = fn(&mut CaseForm);
        let cases: [(Clear, &str); 9] = [
            (|f| f.name.clear(), "name"),
            (|f| f.function = "  ".into(), "function"),
            (|f| f.phone.clear(), "telephone"),
            (|f| f.unit_town.clear(), "unit / town"),
            (|f| f.subject.clear(), "subject"),
            (|f| f.population.clear(), "population concerned"),
            (|f| f.description.clear(), "description"),
            (|f| f.location.clear(), "URL or breadcrumb"),
            (|f| f.attachments.clear(), "screenshot or attachment"),
        ];
        for (clear, field) in cases {
            let mut f = form();
            clear(&mut f);
            let e = f.check().unwrap_err();
            assert_eq!(e, CaseError::Missing(field));
            assert_eq!(e.to_string(), format!("the case needs its {field}"));
        }
        let mut f = form();
        f.phone = "call me".into();
        assert!(matches!(
            f.check(),
            Err(CaseError::Bad {
                field: "telephone",
                ..
            })
        ));
        let mut f = form();
        f.subject = "two\nlines".into();
        assert!(matches!(
            f.check(),
            Err(CaseError::Bad {
                field: "subject",
                ..
            })
        ));
    }

    #[test]
    fn priorities_order_the_queue_and_carry_004s_definitions() {
        let mut p = vec![Priority::Minor, Priority::Blocking, Priority::Major];
        p.sort_by_key(|p| p.rank());
        assert_eq!(p, Priority::ALL);
        assert!(Priority::Blocking.help().contains("unavailable"));
        assert_eq!("major".parse::<Priority>(), Ok(Priority::Major));
        assert!("urgent".parse::<Priority>().is_err());
        assert_eq!(Priority::Minor.french(), "mineure");
    }

    #[test]
    fn case_numbers_are_unit_year_sequence() {
        assert_eq!(case_number("0421234a", 2026, 7), "0421234A-2026-0007");
        assert_eq!(case_number("d1", 2027, 12345), "D1-2027-12345");
        assert!(is_case_number("0421234A-2026-0007"));
        assert!(is_case_number("RECT-42-2026-0001"));
        assert!(!is_case_number("0421234A-26-0007"));
        assert!(!is_case_number("0421234A-2026-7"));
        assert!(!is_case_number("../etc-2026-0001/"));
        // 2026-12-31T23:59:59Z and 2027-01-01T00:00:00Z, 2024-02-29 (leap), 1970.
        assert_eq!(year_of(1_798_761_599), 2026);
        assert_eq!(year_of(1_798_761_600), 2027);
        assert_eq!(year_of(1_709_164_800), 2024);
        assert_eq!(year_of(0), 1970);
    }

    fn facts() -> KeyFacts {
        KeyFacts {
            custody: Some(KeyState::HandedOver),
            status: Status::Active,
            locked: false,
            locked_until: None,
            failures: 0,
            lock_threshold: 10,
            last_accept: Some(900),
            recent_failures: Vec::new(),
            valid_until: Some(10_000),
            active_until: None,
            totp_drift: None,
            totp_skew: 1,
            has_pin: true,
            software: false,
            now: 1_000,
        }
    }

    fn fails(reason: &str, n: usize) -> Vec<Failure> {
        (0..n)
            .map(|i| Failure {
                at: 1_000 - i as u64,
                reason: reason.into(),
            })
            .collect()
    }

    #[test]
    fn the_diagnosis_picks_the_action_that_fits() {
        assert_eq!(diagnose(&facts()).remedy, Remedy::Nothing);
        let d = |f: &dyn Fn(&mut KeyFacts)| {
            let mut k = facts();
            f(&mut k);
            diagnose(&k).remedy
        };
        assert_eq!(
            d(&|k| {
                k.locked = true;
                k.failures = 10;
                k.recent_failures = fails("wrong_code", 10);
            }),
            Remedy::Unlock
        );
        assert_eq!(
            d(&|k| {
                k.locked = true;
                k.recent_failures = fails("wrong_pin", 10);
            }),
            Remedy::PinReset
        );
        assert_eq!(
            d(&|k| k.recent_failures = fails("wrong_code", 2)),
            Remedy::Resync
        );
        assert_eq!(d(&|k| k.totp_drift = Some(5)), Remedy::Resync);
        assert_eq!(d(&|k| k.totp_drift = Some(1)), Remedy::Nothing);
        assert_eq!(d(&|k| k.status = Status::Disabled), Remedy::Enable);
        assert_eq!(
            d(&|k| k.custody = Some(KeyState::Lost)),
            Remedy::Replacement
        );
        assert_eq!(d(&|k| k.valid_until = Some(1_000)), Remedy::Replacement);
        assert_eq!(d(&|k| k.active_until = Some(999)), Remedy::Replacement);
        assert_eq!(d(&|k| k.status = Status::Revoked), Remedy::Replacement);
        assert_eq!(
            d(&|k| k.custody = Some(KeyState::Assigned)),
            Remedy::HandOver
        );
        assert_eq!(
            d(&|k| {
                k.custody = Some(KeyState::Assigned);
                k.software = true;
            }),
            Remedy::Nothing
        );
        // A lost key with wrong PINs still needs replacing: the final rule comes first.
        assert_eq!(
            d(&|k| {
                k.custody = Some(KeyState::Lost);
                k.recent_failures = fails("wrong_pin", 3);
            }),
            Remedy::Replacement
        );
        let full = diagnose(&KeyFacts {
            locked: true,
            failures: 10,
            recent_failures: fails("wrong_code", 3),
            totp_drift: Some(-2),
            ..facts()
        });
        let text = full.findings.join("\n");
        assert!(
            text.contains("10 consecutive failure(s) of 10 that lock it, locked"),
            "{text}"
        );
        assert!(text.contains("last accepted login at 900"), "{text}");
        assert!(
            text.contains("last refusals, newest first: wrong_code, wrong_code, wrong_code"),
            "{text}"
        );
        assert!(text.contains("TOTP clock drift: -2 step(s)"), "{text}");
        assert!(text.contains("valid until 10000"), "{text}");
    }
}
