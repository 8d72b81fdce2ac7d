//! The organisation: units, people, their functions, their managers, and which lot each person
//! manages. Pure data and rules: the store loads the directory, the server asks these functions.
//!
//! ```text
//! Rectorat ─┬─ SupportCentre        (support agents: the Rectorat lot, the found-key desk)
//!           ├─ ItDepartment         (IT agents: the Rectorat lot, recycling and scrapping)
//!           ├─ ExamsOffice (DEC)    (exams office agents: the Examen lot only)
//!           ├─ School 2D (UAI)      (head, deputy, delegate: their school's lot)
//!           └─ District 1D ── School 1D (UAI)   (IEN, ATICE: the district's lot)
//! ```
//! A school's degree is where it hangs: under the Rectorat it is a secondary school
//! (établissement, 2D, one lot each); under a district it is a primary school (école, 1D, served
//! by the district's lot). Schools outside contract ("hors contrat") are not served: every
//! question about their lot is answered with [`OrgError::NotUnderContract`].
//!
//! Managers: a person's N+1 is the explicit manager given by the directory if any; otherwise the
//! chief of their unit (head of a 2D school, acting director or else director of a 1D school, IEN of
//! a district), or, for the chief themself (and for units without a chief function), the chief of
//! the nearest unit above. N+2 is the N+1 of the N+1. Two chiefs of one kind in one unit make the
//! derivation ambiguous: that is an error, never a silent choice.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Longest unit or person identifier accepted.
pub const MAX_ORG_ID_LEN: usize = 128;

/// Why a directory value or an organisation question was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgError {
    /// A UAI that is not 7 digits and a check letter.
    #[error("{0:?} is not a UAI code: expected 7 digits and a letter, such as 0750654D")]
    UaiFormat(String),
    /// A UAI whose letter does not match its digits.
    #[error("the UAI code {given:?} has the wrong check letter: its digits give {expected}")]
    UaiCheckLetter {
        /// As given.
        given: String,
        /// The letter its digits give.
        expected: char,
    },
    /// An identifier that is empty, too long or outside `A-Z a-z 0-9 . _ - @`.
    #[error("the {what} {value:?} must be 1 to 128 of letters, digits and . _ - @")]
    BadId {
        /// "unit id" or "person id".
        what: &'static str,
        /// As given.
        value: String,
    },
    /// A name not recognised as a unit kind, function or lot kind.
    #[error("unknown {what} {value:?}: expected one of {expected}")]
    UnknownName {
        /// "unit kind", "function" or "lot kind".
        what: &'static str,
        /// As given.
        value: String,
        /// The accepted names.
        expected: &'static str,
    },
    /// An e-mail address without exactly one `@` between non-empty parts, or with spaces.
    #[error("{0:?} is not an e-mail address")]
    BadEmail(String),
    /// A person's name that is empty or has control characters.
    #[error("a person's name must be 1 to 200 printable characters")]
    BadName,
    /// A unit or person that the directory does not hold.
    #[error("no unit {0:?} in the directory")]
    UnknownUnit(String),
    /// A person that the directory does not hold.
    #[error("no person {0:?} in the directory")]
    UnknownPerson(String),
    /// A unit placed under a unit where it cannot be.
    #[error("a {kind} cannot be placed under {parent}")]
    BadParent {
        /// The unit's kind.
        kind: &'static str,
        /// Where it was placed: a unit kind, or "nothing" for a missing parent.
        parent: &'static str,
    },
    /// A unit refused while building the tree, and why.
    #[error("unit {unit}: {error}")]
    InUnit {
        /// The unit refused.
        unit: String,
        /// Why.
        error: Box<OrgError>,
    },
    /// A unit that is its own ancestor.
    #[error("unit {0:?} is its own ancestor")]
    Cycle(String),
    /// A school outside contract: okey does not serve it.
    #[error("the school {0} is outside contract (hors contrat): okey does not serve it")]
    NotUnderContract(String),
    /// A lot kind asked of a unit that has no such lot.
    #[error("unit {unit:?} has no {kind} lot")]
    NoSuchLot {
        /// The unit asked.
        unit: String,
        /// The lot kind asked.
        kind: &'static str,
    },
    /// A function given to a person whose unit cannot hold it.
    #[error("the function {function} cannot be held in a {unit_kind}")]
    FunctionOutOfPlace {
        /// The function.
        function: &'static str,
        /// The kind of the person's unit.
        unit_kind: &'static str,
    },
    /// A person named as their own manager.
    #[error("person {0:?} cannot be their own manager")]
    SelfManager(String),
    /// Several chiefs of the same kind in one unit: N+1 cannot be derived.
    #[error(
        "unit {unit:?} has several people with the function {function}: give the manager explicitly"
    )]
    AmbiguousManager {
        /// The unit.
        unit: String,
        /// The chief function found more than once.
        function: &'static str,
    },
}

fn check_id(value: &str, what: &'static str) -> Result<(), OrgError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ORG_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(OrgError::BadId {
            what,
            value: value.to_owned(),
        })
    }
}

/// The 23 check letters of a UAI code (I, O and Q are never used).
const UAI_LETTERS: &[u8; 23] = b"ABCDEFGHJKLMNPRSTUVWXYZ";

/// An official school code (UAI, formerly RNE): 7 digits and a check letter, the letter being
/// `ABCDEFGHJKLMNPRSTUVWXYZ` indexed by the 7-digit number modulo 23. Stored upper-case; a
/// lower-case letter is accepted and folded.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uai(String);

impl Uai {
    /// Parse and check a UAI code.
    pub fn parse(s: &str) -> Result<Uai, OrgError> {
        let b = s.as_bytes();
        if b.len() != 8 || !b[..7].iter().all(u8::is_ascii_digit) || !b[7].is_ascii_alphabetic() {
            return Err(OrgError::UaiFormat(s.to_owned()));
        }
        let number = b[..7]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        let expected = char::from(UAI_LETTERS[(number % 23) as usize]);
        let given = char::from(b[7].to_ascii_uppercase());
        if given != expected {
            return Err(OrgError::UaiCheckLetter {
                given: s.to_owned(),
                expected,
            });
        }
        Ok(Uai(s.to_ascii_uppercase()))
    }

    /// The code, upper-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Uai {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A unit's stable identifier in the directory. A school's id is its UAI code. Compared
/// case-insensitively: stored upper-case (the case UAI codes are printed in).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitId(String);

impl UnitId {
    /// Check and fold a unit id.
    pub fn parse(s: &str) -> Result<UnitId, OrgError> {
        check_id(s, "unit id")?;
        Ok(UnitId(s.to_ascii_uppercase()))
    }

    /// The folded id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's stable identifier in the directory (the administration's login, e.g.
/// `jdupont` or `jean.dupont@ac-example.fr`). Compared case-insensitively: stored lower-case,
/// the same folding as holders ([`crate::fold_holder`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonId(String);

impl PersonId {
    /// Check and fold a person id.
    pub fn parse(s: &str) -> Result<PersonId, OrgError> {
        check_id(s, "person id")?;
        Ok(PersonId(s.to_ascii_lowercase()))
    }

    /// The folded id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a unit is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnitKind {
    /// A school (établissement 2D under the Rectorat, école 1D under a district).
    School {
        /// Its official code; also its [`UnitId`].
        uai: Uai,
        /// "Sous contrat": only those are served.
        under_contract: bool,
    },
    /// A circonscription (1D): one lot, managed by its IEN and ATICE.
    District,
    /// The regional office, root of the tree.
    Rectorat,
    /// The Rectorat's support centre.
    SupportCentre,
    /// The Rectorat's IT department (DSI).
    ItDepartment,
    /// The exams office (DEC).
    ExamsOffice,
}

impl UnitKind {
    /// The kind's name in the directory files.
    pub const fn name(&self) -> &'static str {
        match self {
            UnitKind::School { .. } => "school",
            UnitKind::District => "district",
            UnitKind::Rectorat => "rectorat",
            UnitKind::SupportCentre => "support_centre",
            UnitKind::ItDepartment => "it_department",
            UnitKind::ExamsOffice => "exams_office",
        }
    }

    /// The names accepted for a unit kind.
    pub const NAMES: &'static str =
        "school, district, rectorat, support_centre, it_department, exams_office";
}

/// A unit of the organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// Stable id (a school's UAI).
    pub id: UnitId,
    /// Display name.
    pub name: String,
    /// What it is.
    pub kind: UnitKind,
    /// The unit above; `None` only for the Rectorat.
    pub parent: Option<UnitId>,
}

impl Unit {
    /// Build a unit, checking that a school's id is its UAI.
    pub fn new(
        id: &str,
        name: &str,
        kind: UnitKind,
        parent: Option<&str>,
    ) -> Result<Unit, OrgError> {
        let id = match &kind {
            UnitKind::School { .. } => UnitId(Uai::parse(id)?.0),
            _ => UnitId::parse(id)?,
        };
        if let UnitKind::School { uai, .. } = &kind
            && uai.as_str() != id.as_str()
        {
            return Err(OrgError::BadId {
                what: "unit id",
                value: format!("{id} (the school's UAI is {uai})"),
            });
        }
        check_name(name)?;
        Ok(Unit {
            id,
            name: name.to_owned(),
            kind,
            parent: parent.map(UnitId::parse).transpose()?,
        })
    }
}

fn check_name(name: &str) -> Result<(), OrgError> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        Err(OrgError::BadName)
    } else {
        Ok(())
    }
}

/// A function a person holds. A person may hold several (a head of school who is also the ENT
/// correspondent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// Chef d'établissement (2D).
    HeadOfSchool,
    /// Adjoint (2D).
    DeputyHead,
    /// Someone a head of school has delegated lot management to (2D).
    Delegate,
    /// Directeur d'école (1D).
    SchoolDirector,
    /// Directeur faisant fonction, with the ONDE delegation (1D): stands in for the director.
    ActingDirector,
    /// Inspecteur de l'Éducation nationale, in charge of a district.
    DistrictInspector,
    /// Animateur TICE of a district.
    DistrictIctAdviser,
    /// Agent of the support centre.
    SupportAgent,
    /// Agent of the IT department (DSI).
    ItAgent,
    /// Agent of the exams office (DEC).
    ExamsOfficeAgent,
    /// Correspondant ENT.
    EntCorrespondent,
    /// Any other member of staff.
    Staff,
}

impl Function {
    /// Every function, in a fixed order.
    pub const ALL: [Function; 12] = [
        Function::HeadOfSchool,
        Function::DeputyHead,
        Function::Delegate,
        Function::SchoolDirector,
        Function::ActingDirector,
        Function::DistrictInspector,
        Function::DistrictIctAdviser,
        Function::SupportAgent,
        Function::ItAgent,
        Function::ExamsOfficeAgent,
        Function::EntCorrespondent,
        Function::Staff,
    ];

    /// The names accepted for a function.
    pub const NAMES: &'static str = "head, deputy, delegate, director, acting_director, ien, atice, support, it, exams, ent, staff";

    /// The function's name in the directory files and the API.
    pub const fn name(self) -> &'static str {
        match self {
            Function::HeadOfSchool => "head",
            Function::DeputyHead => "deputy",
            Function::Delegate => "delegate",
            Function::SchoolDirector => "director",
            Function::ActingDirector => "acting_director",
            Function::DistrictInspector => "ien",
            Function::DistrictIctAdviser => "atice",
            Function::SupportAgent => "support",
            Function::ItAgent => "it",
            Function::ExamsOfficeAgent => "exams",
            Function::EntCorrespondent => "ent",
            Function::Staff => "staff",
        }
    }

    /// Whether a person whose unit is of `kind` (a school of the given degree) may hold it.
    /// Staff and ENT correspondents may be anywhere.
    fn fits(self, place: Place) -> bool {
        use Function::*;
        match self {
            HeadOfSchool | DeputyHead | Delegate => place == Place::School2D,
            SchoolDirector | ActingDirector => place == Place::School1D,
            DistrictInspector | DistrictIctAdviser => place == Place::District,
            SupportAgent => place == Place::SupportCentre,
            ItAgent => place == Place::ItDepartment,
            ExamsOfficeAgent => place == Place::ExamsOffice,
            EntCorrespondent | Staff => true,
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Function {
    type Err = OrgError;
    fn from_str(s: &str) -> Result<Self, OrgError> {
        Function::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| OrgError::UnknownName {
                what: "function",
                value: s.to_owned(),
                expected: Function::NAMES,
            })
    }
}

/// Where a unit sits, for the rules: a school's degree comes from its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    School2D,
    School1D,
    District,
    Rectorat,
    SupportCentre,
    ItDepartment,
    ExamsOffice,
}

impl Place {
    const fn name(self) -> &'static str {
        match self {
            Place::School2D => "secondary school",
            Place::School1D => "primary school",
            Place::District => "district",
            Place::Rectorat => "rectorat",
            Place::SupportCentre => "support centre",
            Place::ItDepartment => "IT department",
            Place::ExamsOffice => "exams office",
        }
    }
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// Stable id.
    pub id: PersonId,
    /// Full name.
    pub name: String,
    /// Professional e-mail address.
    pub email: String,
    /// The unit they work in.
    pub unit: UnitId,
    /// What they do there (sorted, no duplicates).
    pub functions: Vec<Function>,
    /// N+1 given by the directory, overriding the derivation.
    pub manager: Option<PersonId>,
}

impl Person {
    /// Build a person from directory values, checking each (not yet against the tree: see
    /// [`OrgTree::check_person`]).
    pub fn new(
        id: &str,
        name: &str,
        email: &str,
        unit: &str,
        functions: &[Function],
        manager: Option<&str>,
    ) -> Result<Person, OrgError> {
        let id = PersonId::parse(id)?;
        check_name(name)?;
        check_email(email)?;
        let manager = manager.map(PersonId::parse).transpose()?;
        if manager.as_ref() == Some(&id) {
            return Err(OrgError::SelfManager(id.0));
        }
        let mut functions = functions.to_vec();
        functions.sort();
        functions.dedup();
        Ok(Person {
            id,
            name: name.to_owned(),
            email: email.to_owned(),
            unit: UnitId::parse(unit)?,
            functions,
            manager,
        })
    }

    /// Whether they hold `f`.
    pub fn has(&self, f: Function) -> bool {
        self.functions.contains(&f)
    }
}

fn check_email(email: &str) -> Result<(), OrgError> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(OrgError::BadEmail(email.to_owned()))
    }
}

/// The kinds of lot (FAQ 000, "Quels sont les différents lots dans OKEY").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LotKind {
    /// One per secondary school under contract, managed by its head, deputy or a delegate.
    School2D,
    /// One per district, managed by its IEN or ATICE.
    District1D,
    /// The Rectorat's software and hardware keys, managed by the support centre and the IT
    /// department.
    Rectorat,
    /// The exams office's lot, managed by the exams office alone.
    Examen,
}

impl LotKind {
    /// Every lot kind.
    pub const ALL: [LotKind; 4] = [
        LotKind::School2D,
        LotKind::District1D,
        LotKind::Rectorat,
        LotKind::Examen,
    ];

    /// The names accepted for a lot kind.
    pub const NAMES: &'static str = "2d, 1d, rectorat, examen";

    /// The kind's name in the API and files.
    pub const fn name(self) -> &'static str {
        match self {
            LotKind::School2D => "2d",
            LotKind::District1D => "1d",
            LotKind::Rectorat => "rectorat",
            LotKind::Examen => "examen",
        }
    }
}

impl fmt::Display for LotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LotKind {
    type Err = OrgError;
    fn from_str(s: &str) -> Result<Self, OrgError> {
        LotKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| OrgError::UnknownName {
                what: "lot kind",
                value: s.to_owned(),
                expected: LotKind::NAMES,
            })
    }
}

/// One lot: its kind and the unit it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LotRef {
    /// Which kind.
    pub kind: LotKind,
    /// The unit that owns it (the school, the district, the Rectorat, the exams office).
    pub unit: UnitId,
}

/// The units, checked into a tree: every parent exists and is of an allowed kind, no cycles.
#[derive(Clone, Debug, Default)]
pub struct OrgTree {
    units: BTreeMap<UnitId, Unit>,
}

impl OrgTree {
    /// Check `units` into a tree. A school sits under the Rectorat (2D) or a district (1D); a
    /// district, the support centre, the IT department and the exams office under the Rectorat;
    /// the Rectorat under nothing. A later unit with an id already given replaces the earlier.
    pub fn new(units: impl IntoIterator<Item = Unit>) -> Result<OrgTree, OrgError> {
        let units: BTreeMap<UnitId, Unit> = units.into_iter().map(|u| (u.id.clone(), u)).collect();
        for unit in units.values() {
            Self::check_unit(&units, unit).map_err(|error| OrgError::InUnit {
                unit: unit.id.0.clone(),
                error: Box::new(error),
            })?;
        }
        // With those parent kinds the depth is at most 3 and a cycle is impossible (the
        // Rectorat has no parent); this check keeps that true if the rules above change.
        let tree = OrgTree { units };
        for id in tree.units.keys() {
            if tree.ancestors(id).count() > tree.units.len() {
                return Err(OrgError::Cycle(id.0.clone()));
            }
        }
        Ok(tree)
    }

    fn check_unit(units: &BTreeMap<UnitId, Unit>, unit: &Unit) -> Result<(), OrgError> {
        {
            let parent = match &unit.parent {
                None => None,
                Some(p) => Some(
                    units
                        .get(p)
                        .ok_or_else(|| OrgError::UnknownUnit(p.0.clone()))?,
                ),
            };
            let ok = matches!(
                (&unit.kind, parent.map(|p| &p.kind)),
                (UnitKind::Rectorat, None)
                    | (
                        UnitKind::School { .. },
                        Some(UnitKind::Rectorat | UnitKind::District)
                    )
                    | (
                        UnitKind::District
                            | UnitKind::SupportCentre
                            | UnitKind::ItDepartment
                            | UnitKind::ExamsOffice,
                        Some(UnitKind::Rectorat),
                    )
            );
            if !ok {
                return Err(OrgError::BadParent {
                    kind: unit.kind.name(),
                    parent: parent.map_or("nothing", |p| p.kind.name()),
                });
            }
        }
        Ok(())
    }

    /// The unit with this id.
    pub fn unit(&self, id: &UnitId) -> Option<&Unit> {
        self.units.get(id)
    }

    /// Every unit, by id.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.units.values()
    }

    /// The units above `id`, nearest first (not `id` itself).
    pub fn ancestors<'a>(&'a self, id: &UnitId) -> impl Iterator<Item = &'a Unit> + 'a {
        let mut next = self.units.get(id).and_then(|u| u.parent.clone());
        let mut steps = 0usize;
        let limit = self.units.len();
        std::iter::from_fn(move || {
            let unit = self.units.get(next.as_ref()?)?;
            steps += 1;
            if steps > limit + 1 {
                return None;
            }
            next = unit.parent.clone();
            Some(unit)
        })
    }

    fn place(&self, unit: &Unit) -> Place {
        match unit.kind {
            UnitKind::School { .. } => {
                let under_district = unit
                    .parent
                    .as_ref()
                    .and_then(|p| self.units.get(p))
                    .is_some_and(|p| p.kind == UnitKind::District);
                if under_district {
                    Place::School1D
                } else {
                    Place::School2D
                }
            }
            UnitKind::District => Place::District,
            UnitKind::Rectorat => Place::Rectorat,
            UnitKind::SupportCentre => Place::SupportCentre,
            UnitKind::ItDepartment => Place::ItDepartment,
            UnitKind::ExamsOffice => Place::ExamsOffice,
        }
    }

    /// Check a person against the tree: their unit exists and can hold each of their functions.
    pub fn check_person(&self, person: &Person) -> Result<(), OrgError> {
        let unit = self
            .units
            .get(&person.unit)
            .ok_or_else(|| OrgError::UnknownUnit(person.unit.0.clone()))?;
        let place = self.place(unit);
        for f in &person.functions {
            if !f.fits(place) {
                return Err(OrgError::FunctionOutOfPlace {
                    function: f.name(),
                    unit_kind: place.name(),
                });
            }
        }
        Ok(())
    }

    /// The lot of `kind` that `unit` owns, refusing a unit that has none and a school outside
    /// contract.
    pub fn lot(&self, kind: LotKind, unit: &UnitId) -> Result<LotRef, OrgError> {
        let u = self
            .units
            .get(unit)
            .ok_or_else(|| OrgError::UnknownUnit(unit.0.clone()))?;
        if let UnitKind::School {
            uai,
            under_contract: false,
        } = &u.kind
        {
            return Err(OrgError::NotUnderContract(uai.0.clone()));
        }
        let fits = matches!(
            (kind, self.place(u)),
            (LotKind::School2D, Place::School2D)
                | (LotKind::District1D, Place::District)
                | (LotKind::Rectorat, Place::Rectorat)
                | (LotKind::Examen, Place::ExamsOffice)
        );
        if fits {
            Ok(LotRef {
                kind,
                unit: unit.clone(),
            })
        } else {
            Err(OrgError::NoSuchLot {
                unit: unit.0.clone(),
                kind: kind.name(),
            })
        }
    }

    /// The lot a unit's keys come from: a 2D school's own lot, a 1D school's district lot, the
    /// Rectorat lot for the Rectorat and its departments, the Examen lot for the exams office.
    pub fn home_lot(&self, unit: &UnitId) -> Result<LotRef, OrgError> {
        let u = self
            .units
            .get(unit)
            .ok_or_else(|| OrgError::UnknownUnit(unit.0.clone()))?;
        match self.place(u) {
            Place::School2D => self.lot(LotKind::School2D, unit),
            Place::School1D => {
                if let UnitKind::School {
                    uai,
                    under_contract: false,
                } = &u.kind
                {
                    return Err(OrgError::NotUnderContract(uai.0.clone()));
                }
                let district = u.parent.as_ref().ok_or(OrgError::BadParent {
                    kind: "school",
                    parent: "nothing",
                })?;
                self.lot(LotKind::District1D, district)
            }
            Place::District => self.lot(LotKind::District1D, unit),
            Place::Rectorat => self.lot(LotKind::Rectorat, unit),
            Place::SupportCentre | Place::ItDepartment => {
                let root = u.parent.as_ref().ok_or(OrgError::BadParent {
                    kind: u.kind.name(),
                    parent: "nothing",
                })?;
                self.lot(LotKind::Rectorat, root)
            }
            Place::ExamsOffice => self.lot(LotKind::Examen, unit),
        }
    }

    /// What `person` may act on, from their functions and unit. A person whose unit is not in
    /// the tree, or whose school is outside contract, has an empty scope.
    pub fn scope(&self, person: &Person) -> Scope {
        let mut scope = Scope::default();
        let Some(unit) = self.units.get(&person.unit) else {
            return scope;
        };
        let place = self.place(unit);
        let root = || {
            self.ancestors(&unit.id)
                .find(|u| u.kind == UnitKind::Rectorat)
                .map(|u| u.id.clone())
        };
        for f in &person.functions {
            if !f.fits(place) {
                continue;
            }
            let lot = match f {
                Function::HeadOfSchool | Function::DeputyHead | Function::Delegate => {
                    self.lot(LotKind::School2D, &unit.id).ok()
                }
                Function::DistrictInspector | Function::DistrictIctAdviser => {
                    self.lot(LotKind::District1D, &unit.id).ok()
                }
                Function::SupportAgent => {
                    scope.found_key_desk = true;
                    root().and_then(|r| self.lot(LotKind::Rectorat, &r).ok())
                }
                Function::ItAgent => {
                    scope.recycling = true;
                    root().and_then(|r| self.lot(LotKind::Rectorat, &r).ok())
                }
                Function::ExamsOfficeAgent => self.lot(LotKind::Examen, &unit.id).ok(),
                Function::SchoolDirector
                | Function::ActingDirector
                | Function::EntCorrespondent
                | Function::Staff => None,
            };
            if let Some(lot) = lot
                && !scope.lots.contains(&lot)
            {
                scope.lots.push(lot);
            }
        }
        scope.lots.sort();
        scope
    }

    /// The chief functions of a unit, in precedence order: the first one held by someone in the
    /// unit gives its chief.
    fn chief_functions(&self, unit: &Unit) -> &'static [Function] {
        match self.place(unit) {
            Place::School2D => &[Function::HeadOfSchool],
            // The acting director holds the director's delegation while the director is away.
            Place::School1D => &[Function::ActingDirector, Function::SchoolDirector],
            Place::District => &[Function::DistrictInspector],
            Place::Rectorat | Place::SupportCentre | Place::ItDepartment | Place::ExamsOffice => {
                &[]
            }
        }
    }

    /// The person's N+1: the explicit manager if given, else derived from the tree (see the
    /// module documentation). `Ok(None)` when nobody above them is known.
    pub fn manager<D: PeopleLookup>(
        &self,
        person: &Person,
        people: &D,
    ) -> Result<Option<Person>, ManagerError<D::Error>> {
        if let Some(id) = &person.manager {
            return match people.person(id).map_err(ManagerError::Lookup)? {
                Some(m) => Ok(Some(m)),
                None => Err(ManagerError::Org(OrgError::UnknownPerson(id.0.clone()))),
            };
        }
        let unit = self
            .units
            .get(&person.unit)
            .ok_or_else(|| ManagerError::Org(OrgError::UnknownUnit(person.unit.0.clone())))?;
        let mut candidate = Some(unit);
        while let Some(u) = candidate {
            let chief_functions = self.chief_functions(u);
            // A chief (or a stand-in chief) is not managed from their own unit: look above.
            let is_chief_here =
                person.unit == u.id && chief_functions.iter().any(|&f| person.has(f));
            for &f in chief_functions.iter().filter(|_| !is_chief_here) {
                let mut chiefs = people.people_with(&u.id, f).map_err(ManagerError::Lookup)?;
                chiefs.retain(|c| c.id != person.id);
                match chiefs.len() {
                    0 => continue,
                    1 => return Ok(chiefs.pop()),
                    _ => {
                        return Err(ManagerError::Org(OrgError::AmbiguousManager {
                            unit: u.id.0.clone(),
                            function: f.name(),
                        }));
                    }
                }
            }
            candidate = u.parent.as_ref().and_then(|p| self.units.get(p));
        }
        Ok(None)
    }

    /// The person's N+2: their manager's manager (`Ok(None)` when either is unknown, or when it
    /// would be the person themself).
    pub fn second_manager<D: PeopleLookup>(
        &self,
        person: &Person,
        people: &D,
    ) -> Result<Option<Person>, ManagerError<D::Error>> {
        let Some(n1) = self.manager(person, people)? else {
            return Ok(None);
        };
        Ok(self
            .manager(&n1, people)?
            .filter(|n2| n2.id != person.id && n2.id != n1.id))
    }
}

/// A directory entry with where it came from (e.g. `people.csv line 12`), for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    /// Where the entry was read.
    pub origin: String,
    /// The entry.
    pub value: T,
}

/// Looking people up, for the N+1 derivation: the store implements it over its tables,
/// [`MemoryPeople`] over a map.
pub trait PeopleLookup {
    /// A failure of the lookup itself (I/O); never "not found".
    type Error;
    /// The person with this id.
    fn person(&self, id: &PersonId) -> Result<Option<Person>, Self::Error>;
    /// Everyone in `unit` holding `function`.
    fn people_with(&self, unit: &UnitId, function: Function) -> Result<Vec<Person>, Self::Error>;
}

/// Why a manager could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError<E> {
    /// The directory is inconsistent or ambiguous.
    #[error(transparent)]
    Org(OrgError),
    /// The lookup failed.
    #[error("looking up the directory failed")]
    Lookup(E),
}

/// People in memory, for tests and for checks over a whole imported file.
#[derive(Clone, Debug, Default)]
pub struct MemoryPeople {
    people: BTreeMap<PersonId, Person>,
}

impl MemoryPeople {
    /// Hold these people (a later entry with the same id replaces an earlier one).
    pub fn new(people: impl IntoIterator<Item = Person>) -> MemoryPeople {
        MemoryPeople {
            people: people.into_iter().map(|p| (p.id.clone(), p)).collect(),
        }
    }
}

impl PeopleLookup for MemoryPeople {
    type Error = std::convert::Infallible;
    fn person(&self, id: &PersonId) -> Result<Option<Person>, Self::Error> {
        Ok(self.people.get(id).cloned())
    }
    fn people_with(&self, unit: &UnitId, function: Function) -> Result<Vec<Person>, Self::Error> {
        Ok(self
            .people
            .values()
            .filter(|p| &p.unit == unit && p.has(function))
            .cloned()
            .collect())
    }
}

/// What a person may act on: the lots they manage, and the two desks of the Rectorat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// The lots they manage, sorted.
    pub lots: Vec<LotRef>,
    /// The support centre's found-key desk: look any serial up and route a found key.
    pub found_key_desk: bool,
    /// The IT department's desk: recycle and scrap keys.
    pub recycling: bool,
}

impl Scope {
    /// Whether the scope includes the lot of `kind` owned by `unit`.
    pub fn manages(&self, kind: LotKind, unit: &UnitId) -> bool {
        self.lots.iter().any(|l| l.kind == kind && &l.unit == unit)
    }
}

/// Whether `person` manages the lot of `lot_kind` owned by `lot_unit`: a head of school, deputy
/// or delegate their school's lot; an IEN or ATICE their district's lot; a support or IT agent
/// the Rectorat lot; an exams office agent the Examen lot. Nobody manages the lot of a school
/// outside contract (it has none).
pub fn manages_lot(person: &Person, tree: &OrgTree, lot_kind: LotKind, lot_unit: &UnitId) -> bool {
    tree.scope(person).manages(lot_kind, lot_unit)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A small academy: the Rectorat and its departments, two 2D schools (one outside
    /// contract), a district with a 1D school.
    fn tree() -> OrgTree {
        let school = |uai: &str, c: bool| UnitKind::School {
            uai: Uai::parse(uai).unwrap(),
            under_contract: c,
        };
        OrgTree::new([
            Unit::new("RECTORAT", "Rectorat", UnitKind::Rectorat, None).unwrap(),
            Unit::new(
                "SUPPORT",
                "Centre support",
                UnitKind::SupportCentre,
                Some("RECTORAT"),
            )
            .unwrap(),
            Unit::new("DSI", "DSI", UnitKind::ItDepartment, Some("RECTORAT")).unwrap(),
            Unit::new("DEC", "DEC", UnitKind::ExamsOffice, Some("RECTORAT")).unwrap(),
            Unit::new(
                "0750654D",
                "Lycée A",
                school("0750654D", true),
                Some("RECTORAT"),
            )
            .unwrap(),
            Unit::new(
                "9740001H",
                "Lycée B",
                school("9740001H", true),
                Some("RECTORAT"),
            )
            .unwrap(),
            Unit::new(
                "9741234Y",
                "Privé hors contrat",
                school("9741234Y", false),
                Some("RECTORAT"),
            )
            .unwrap(),
            Unit::new(
                "CIRC-1",
                "Circonscription 1",
                UnitKind::District,
                Some("RECTORAT"),
            )
            .unwrap(),
            Unit::new(
                "CIRC-2",
                "Circonscription 2",
                UnitKind::District,
                Some("RECTORAT"),
            )
            .unwrap(),
            Unit::new(
                "9740100R",
                "École C",
                school("9740100R", true),
                Some("CIRC-1"),
            )
            .unwrap(),
        ])
        .unwrap()
    }

    fn person(id: &str, unit: &str, functions: &[Function]) -> Person {
        Person::new(
            id,
            id,
            &format!("{id}@ac-example.fr"),
            unit,
            functions,
            None,
        )
        .unwrap()
    }

    fn uid(s: &str) -> UnitId {
        UnitId::parse(s).unwrap()
    }

    #[test]
    fn uai_codes_carry_their_check_letter() {
        // Real codes: Lycée Henri-IV (Paris), Lycée Leconte-de-Lisle (La Réunion).
        assert_eq!(Uai::parse("0750654D").unwrap().as_str(), "0750654D");
        assert_eq!(Uai::parse("9740001h").unwrap().as_str(), "9740001H");
        assert_eq!(
            Uai::parse("9740001A"),
            Err(OrgError::UaiCheckLetter {
                given: "9740001A".into(),
                expected: 'H'
            })
        );
        for bad in [
            "",
            "974000H",
            "97400011H",
            "974000AH",
            "9740001-",
            "９740001H",
        ] {
            assert!(
                matches!(Uai::parse(bad), Err(OrgError::UaiFormat(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_check_letter_skips_i_o_and_q() {
        // 8 % 23 = 8 → J (after H), 13 → P, 15 → S.
        assert_eq!(Uai::parse("0000008J").unwrap().as_str(), "0000008J");
        assert_eq!(Uai::parse("0000013P").unwrap().as_str(), "0000013P");
        assert_eq!(Uai::parse("0000015S").unwrap().as_str(), "0000015S");
        assert!(Uai::parse("0000008I").is_err());
    }

    #[test]
    fn ids_fold_and_refuse_strange_characters() {
        assert_eq!(PersonId::parse("J.Dupont").unwrap().as_str(), "j.dupont");
        assert_eq!(UnitId::parse("circ-1").unwrap().as_str(), "CIRC-1");
        assert!(PersonId::parse("").is_err());
        assert!(PersonId::parse("a b").is_err());
        assert!(PersonId::parse(&"a".repeat(129)).is_err());
        assert!(UnitId::parse("x;y").is_err());
        assert!(Person::new("a", "A", "not-an-email", "DEC", &[], None).is_err());
        assert!(Person::new("a", "", "a@b", "DEC", &[], None).is_err());
        assert_eq!(
            Person::new("a", "A", "a@b", "DEC", &[], Some("A")),
            Err(OrgError::SelfManager("a".into()))
        );
    }

    #[test]
    fn a_school_is_identified_by_its_uai() {
        let kind = UnitKind::School {
            uai: Uai::parse("0750654D").unwrap(),
            under_contract: true,
        };
        assert!(Unit::new("0750654D", "x", kind.clone(), Some("R")).is_ok());
        assert!(Unit::new("9740001H", "x", kind, Some("R")).is_err());
    }

    #[test]
    fn the_tree_refuses_misplaced_units() {
        let r = Unit::new("R", "R", UnitKind::Rectorat, None).unwrap();
        let d = Unit::new("D", "D", UnitKind::District, Some("R")).unwrap();
        let check = |units: Vec<Unit>| {
            OrgTree::new(units).err().map(|e| match e {
                OrgError::InUnit { error, .. } => *error,
                other => other,
            })
        };
        assert_eq!(check(vec![r.clone(), d.clone()]), None);
        assert_eq!(
            check(vec![Unit::new("D", "D", UnitKind::District, None).unwrap()]),
            Some(OrgError::BadParent {
                kind: "district",
                parent: "nothing"
            })
        );
        assert_eq!(
            check(vec![
                r.clone(),
                d.clone(),
                Unit::new("D2", "D2", UnitKind::District, Some("D")).unwrap()
            ]),
            Some(OrgError::BadParent {
                kind: "district",
                parent: "district"
            })
        );
        assert_eq!(
            check(vec![
                r.clone(),
                Unit::new("X", "X", UnitKind::ExamsOffice, Some("Y")).unwrap()
            ]),
            Some(OrgError::UnknownUnit("Y".into()))
        );
        assert_eq!(
            check(vec![
                Unit::new("R", "R", UnitKind::Rectorat, Some("R")).unwrap()
            ]),
            Some(OrgError::BadParent {
                kind: "rectorat",
                parent: "rectorat"
            })
        );
    }

    #[test]
    fn each_function_manages_the_lots_the_faq_gives_it() {
        use Function::*;
        let t = tree();
        // (person's unit, function, expected lots)
        let rect = || LotRef {
            kind: LotKind::Rectorat,
            unit: uid("RECTORAT"),
        };
        let cases: Vec<(&str, Function, Vec<LotRef>, bool, bool)> = vec![
            (
                "0750654D",
                HeadOfSchool,
                vec![t.lot(LotKind::School2D, &uid("0750654D")).unwrap()],
                false,
                false,
            ),
            (
                "0750654D",
                DeputyHead,
                vec![t.lot(LotKind::School2D, &uid("0750654D")).unwrap()],
                false,
                false,
            ),
            (
                "0750654D",
                Delegate,
                vec![t.lot(LotKind::School2D, &uid("0750654D")).unwrap()],
                false,
                false,
            ),
            ("0750654D", Staff, vec![], false, false),
            ("0750654D", EntCorrespondent, vec![], false, false),
            ("9741234Y", HeadOfSchool, vec![], false, false),
            ("9740100R", SchoolDirector, vec![], false, false),
            ("9740100R", ActingDirector, vec![], false, false),
            (
                "CIRC-1",
                DistrictInspector,
                vec![t.lot(LotKind::District1D, &uid("CIRC-1")).unwrap()],
                false,
                false,
            ),
            (
                "CIRC-1",
                DistrictIctAdviser,
                vec![t.lot(LotKind::District1D, &uid("CIRC-1")).unwrap()],
                false,
                false,
            ),
            ("SUPPORT", SupportAgent, vec![rect()], true, false),
            ("DSI", ItAgent, vec![rect()], false, true),
            (
                "DEC",
                ExamsOfficeAgent,
                vec![t.lot(LotKind::Examen, &uid("DEC")).unwrap()],
                false,
                false,
            ),
            // A function held in the wrong place gives nothing.
            ("DEC", SupportAgent, vec![], false, false),
            ("CIRC-1", HeadOfSchool, vec![], false, false),
            ("0750654D", DistrictInspector, vec![], false, false),
        ];
        for (unit, f, lots, desk, recycling) in cases {
            let p = person("p", unit, &[f]);
            let s = t.scope(&p);
            assert_eq!(
                s,
                Scope {
                    lots: lots.clone(),
                    found_key_desk: desk,
                    recycling
                },
                "{f:?} in {unit}"
            );
            // manages_lot agrees with the scope over every lot of the tree.
            for u in t.units() {
                for k in LotKind::ALL {
                    let expected = lots.iter().any(|l| l.kind == k && l.unit == u.id);
                    assert_eq!(
                        manages_lot(&p, &t, k, &u.id),
                        expected,
                        "{f:?} in {unit}: {k} of {}",
                        u.id
                    );
                }
            }
        }
    }

    #[test]
    fn nobody_manages_another_schools_or_districts_lot() {
        let t = tree();
        let head = person("h", "0750654D", &[Function::HeadOfSchool]);
        assert!(manages_lot(&head, &t, LotKind::School2D, &uid("0750654D")));
        assert!(!manages_lot(&head, &t, LotKind::School2D, &uid("9740001H")));
        let ien = person("i", "CIRC-1", &[Function::DistrictInspector]);
        assert!(!manages_lot(&ien, &t, LotKind::District1D, &uid("CIRC-2")));
        let exams = person("e", "DEC", &[Function::ExamsOfficeAgent]);
        assert!(!manages_lot(
            &exams,
            &t,
            LotKind::Rectorat,
            &uid("RECTORAT")
        ));
    }

    #[test]
    fn lots_exist_only_where_the_faq_puts_them() {
        let t = tree();
        assert_eq!(
            t.lot(LotKind::School2D, &uid("9741234Y")),
            Err(OrgError::NotUnderContract("9741234Y".into()))
        );
        assert!(matches!(
            t.lot(LotKind::School2D, &uid("9740100R")),
            Err(OrgError::NoSuchLot { .. })
        ));
        assert!(matches!(
            t.lot(LotKind::Examen, &uid("RECTORAT")),
            Err(OrgError::NoSuchLot { .. })
        ));
        assert_eq!(
            t.home_lot(&uid("9740100R")).unwrap(),
            LotRef {
                kind: LotKind::District1D,
                unit: uid("CIRC-1")
            }
        );
        assert_eq!(t.home_lot(&uid("DSI")).unwrap().kind, LotKind::Rectorat);
        assert_eq!(
            t.home_lot(&uid("9741234Y")),
            Err(OrgError::NotUnderContract("9741234Y".into()))
        );
    }

    #[test]
    fn functions_must_fit_the_unit() {
        let t = tree();
        assert!(
            t.check_person(&person("a", "0750654D", &[Function::HeadOfSchool]))
                .is_ok()
        );
        assert!(
            t.check_person(&person("a", "DEC", &[Function::Staff]))
                .is_ok()
        );
        assert_eq!(
            t.check_person(&person("a", "9740100R", &[Function::HeadOfSchool])),
            Err(OrgError::FunctionOutOfPlace {
                function: "head",
                unit_kind: "primary school"
            })
        );
        assert_eq!(
            t.check_person(&person("a", "NOWHERE", &[])),
            Err(OrgError::UnknownUnit("NOWHERE".into()))
        );
    }

    #[test]
    fn managers_follow_the_tree_unless_given() {
        use Function::*;
        let t = tree();
        let head = person("head", "0750654D", &[HeadOfSchool]);
        let teacher = person("teacher", "0750654D", &[Staff]);
        let deputy = person("deputy", "0750654D", &[DeputyHead]);
        let ien = person("ien", "CIRC-1", &[DistrictInspector]);
        let atice = person("atice", "CIRC-1", &[DistrictIctAdviser]);
        let director = person("director", "9740100R", &[SchoolDirector]);
        let teacher1d = person("teacher1d", "9740100R", &[Staff]);
        let recteur = person("recteur", "RECTORAT", &[Staff]);
        let mut agent = person("agent", "SUPPORT", &[SupportAgent]);
        agent.manager = Some(PersonId::parse("recteur").unwrap());
        let people = MemoryPeople::new([
            head.clone(),
            teacher.clone(),
            deputy.clone(),
            ien.clone(),
            atice.clone(),
            director.clone(),
            teacher1d.clone(),
            recteur.clone(),
            agent.clone(),
        ]);
        let n1 = |p: &Person| t.manager(p, &people).unwrap().map(|m| m.id.0);
        let n2 = |p: &Person| t.second_manager(p, &people).unwrap().map(|m| m.id.0);
        assert_eq!(n1(&teacher).as_deref(), Some("head"));
        assert_eq!(n1(&deputy).as_deref(), Some("head"));
        assert_eq!(n1(&head), None);
        assert_eq!(n2(&teacher), None);
        assert_eq!(n1(&teacher1d).as_deref(), Some("director"));
        assert_eq!(n2(&teacher1d).as_deref(), Some("ien"));
        assert_eq!(n1(&director).as_deref(), Some("ien"));
        assert_eq!(n1(&atice).as_deref(), Some("ien"));
        assert_eq!(n1(&ien), None);
        assert_eq!(n1(&agent).as_deref(), Some("recteur"));
        assert_eq!(n1(&recteur), None);
    }

    #[test]
    fn an_acting_director_stands_in_for_the_director() {
        use Function::*;
        let t = tree();
        let director = person("director", "9740100R", &[SchoolDirector]);
        let acting = person("acting", "9740100R", &[ActingDirector]);
        let teacher = person("teacher", "9740100R", &[Staff]);
        let ien = person("ien", "CIRC-1", &[DistrictInspector]);
        let people = MemoryPeople::new([director.clone(), acting.clone(), teacher.clone(), ien]);
        let n1 = |p: &Person| t.manager(p, &people).unwrap().map(|m| m.id.0);
        assert_eq!(n1(&teacher).as_deref(), Some("acting"));
        assert_eq!(n1(&acting).as_deref(), Some("ien"));
        // The absent director is not managed by their stand-in.
        assert_eq!(n1(&director).as_deref(), Some("ien"));
    }

    #[test]
    fn two_heads_in_one_school_make_the_manager_ambiguous() {
        use Function::*;
        let t = tree();
        let teacher = person("teacher", "0750654D", &[Staff]);
        let people = MemoryPeople::new([
            person("h1", "0750654D", &[HeadOfSchool]),
            person("h2", "0750654D", &[HeadOfSchool]),
            teacher.clone(),
        ]);
        assert_eq!(
            t.manager(&teacher, &people),
            Err(ManagerError::Org(OrgError::AmbiguousManager {
                unit: "0750654D".into(),
                function: "head"
            }))
        );
        let mut given = teacher;
        given.manager = Some(PersonId::parse("h2").unwrap());
        assert_eq!(t.manager(&given, &people).unwrap().unwrap().id.0, "h2");
        given.manager = Some(PersonId::parse("gone").unwrap());
        assert_eq!(
            t.manager(&given, &people),
            Err(ManagerError::Org(OrgError::UnknownPerson("gone".into())))
        );
    }
}
