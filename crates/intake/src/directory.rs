//! Where the directory comes from: a [`DirectorySource`] yields checked units and people, each
//! with its origin (file and line). The CSV exports of the administration's directory are
//! [`CsvDirectory`]; an LDAP source can implement the same trait without changing its callers.
//!
//! `units.csv` columns (header required, any order): `id`, `kind` (school, district,
//! rectorat, support_centre, it_department, exams_office), `name`, `parent` (empty only for the
//! Rectorat), `under_contract` (schools only: yes or no). A school's id is its UAI code.
//!
//! `people.csv` columns: `id`, `name`, `email`, `unit`, `functions` (names separated by `;`:
//! head, deputy, delegate, director, acting_director, ien, atice, support, it, exams, ent,
//! staff), `manager` (optional: an explicit N+1's id).
//!
//! An unknown or repeated column, a missing one, or a bad value refuses the file, naming the
//! line; nothing is yielded after a refusal.

use std::io::Read;

use okey_domain::org::{Function, Located, OrgError, Person, Uai, Unit, UnitKind};

/// Why a directory source was refused.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The file could not be read or is not CSV.
    #[error("{origin}: {why}")]
    Read {
        /// File (and line when known).
        origin: String,
        /// What went wrong.
        why: String,
    },
    /// A column that is not known, missing or repeated.
    #[error("{file}: {why}")]
    Columns {
        /// The file.
        file: String,
        /// What is wrong with the header.
        why: String,
    },
    /// A value refused by the organisation's rules.
    #[error("{origin}: {error}")]
    Entry {
        /// File and line.
        origin: String,
        /// Why.
        error: OrgError,
    },
}

/// A source of directory entries.
pub trait DirectorySource {
    /// Every unit, in the source's order.
    fn units(&mut self, sink: &mut dyn FnMut(Located<Unit>)) -> Result<(), DirectoryError>;
    /// Every person, in the source's order.
    fn people(&mut self, sink: &mut dyn FnMut(Located<Person>)) -> Result<(), DirectoryError>;
}

/// The two CSV exports.
pub struct CsvDirectory<U: Read, P: Read> {
    units: Option<(String, U)>,
    people: Option<(String, P)>,
}

impl<U: Read, P: Read> std::fmt::Debug for CsvDirectory<U, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvDirectory").finish_non_exhaustive()
    }
}

impl<U: Read, P: Read> CsvDirectory<U, P> {
    /// Read units from `units` and people from `people`; the names appear in error messages.
    pub fn new(units_name: &str, units: U, people_name: &str, people: P) -> Self {
        CsvDirectory {
            units: Some((units_name.to_owned(), units)),
            people: Some((people_name.to_owned(), people)),
        }
    }
}

const UNIT_COLUMNS: &[&str] = &["id", "kind", "name", "parent", "under_contract"];
const UNIT_REQUIRED: &[&str] = &["id", "kind", "name", "parent"];
const PEOPLE_COLUMNS: &[&str] = &["id", "name", "email", "unit", "functions", "manager"];
const PEOPLE_REQUIRED: &[&str] = &["id", "name", "email", "unit", "functions"];

/// Called for each row with its origin and a getter of its columns by name.
type RowFn<'a> = dyn FnMut(String, &dyn Fn(&str) -> String) -> Result<(), DirectoryError> + 'a;

/// Read a CSV with a header of known columns; call `row` with the line and a column getter.
fn read_csv<R: Read>(
    file: &str,
    input: R,
    known: &[&str],
    required: &[&str],
    row: &mut RowFn<'_>,
) -> Result<(), DirectoryError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let read_err = |e: csv::Error| DirectoryError::Read {
        origin: match e.position() {
            Some(p) => format!("{file} line {}", p.line()),
            None => file.to_owned(),
        },
        why: e.to_string(),
    };
    let header = reader.headers().map_err(read_err)?.clone();
    let mut index = vec![None; known.len()];
    for (i, h) in header.iter().enumerate() {
        let Some(k) = known.iter().position(|k| *k == h) else {
            return Err(DirectoryError::Columns {
                file: file.to_owned(),
                why: format!("unknown column {h:?}: the columns are {}", known.join(", ")),
            });
        };
        if index[k].replace(i).is_some() {
            return Err(DirectoryError::Columns {
                file: file.to_owned(),
                why: format!("the column {h:?} is given twice"),
            });
        }
    }
    for r in required {
        if known
            .iter()
            .position(|k| k == r)
            .and_then(|k| index[k])
            .is_none()
        {
            return Err(DirectoryError::Columns {
                file: file.to_owned(),
                why: format!("the column {r:?} is missing"),
            });
        }
    }
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(read_err)? {
        let line = record.position().map_or(0, |p| p.line());
        let get = |name: &str| {
            known
                .iter()
                .position(|k| *k == name)
                .and_then(|k| index[k])
                .and_then(|i| record.get(i))
                .unwrap_or("")
                .to_owned()
        };
        row(format!("{file} line {line}"), &get)?;
    }
    Ok(())
}

fn entry(origin: &str) -> impl Fn(OrgError) -> DirectoryError + '_ {
    move |error| DirectoryError::Entry {
        origin: origin.to_owned(),
        error,
    }
}

/// One unit from its columns.
pub fn unit_of(
    id: &str,
    kind: &str,
    name: &str,
    parent: &str,
    under_contract: &str,
) -> Result<Unit, OrgError> {
    let yes_no = |v: &str| match v.to_ascii_lowercase().as_str() {
        "yes" | "oui" | "true" | "1" => Some(true),
        "no" | "non" | "false" | "0" => Some(false),
        _ => None,
    };
    let kind = match kind {
        "school" => UnitKind::School {
            uai: Uai::parse(id)?,
            under_contract: yes_no(under_contract).ok_or_else(|| OrgError::UnknownName {
                what: "under_contract value",
                value: under_contract.to_owned(),
                expected: "yes, no",
            })?,
        },
        other => {
            if !under_contract.is_empty() {
                return Err(OrgError::UnknownName {
                    what: "under_contract value (only schools have one)",
                    value: under_contract.to_owned(),
                    expected: "nothing",
                });
            }
            match other {
                "district" => UnitKind::District,
                "rectorat" => UnitKind::Rectorat,
                "support_centre" => UnitKind::SupportCentre,
                "it_department" => UnitKind::ItDepartment,
                "exams_office" => UnitKind::ExamsOffice,
                _ => {
                    return Err(OrgError::UnknownName {
                        what: "unit kind",
                        value: other.to_owned(),
                        expected: UnitKind::NAMES,
                    });
                }
            }
        }
    };
    Unit::new(id, name, kind, Some(parent).filter(|p| !p.is_empty()))
}

/// One person from their columns (`functions` separated by `;`).
pub fn person_of(
    id: &str,
    name: &str,
    email: &str,
    unit: &str,
    functions: &str,
    manager: &str,
) -> Result<Person, OrgError> {
    let functions = functions
        .split(';')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::parse::<Function>)
        .collect::<Result<Vec<_>, _>>()?;
    Person::new(
        id,
        name,
        email,
        unit,
        &functions,
        Some(manager).filter(|m| !m.is_empty()),
    )
}

impl<U: Read, P: Read> DirectorySource for CsvDirectory<U, P> {
    fn units(&mut self, sink: &mut dyn FnMut(Located<Unit>)) -> Result<(), DirectoryError> {
        let Some((file, input)) = self.units.take() else {
            return Ok(());
        };
        read_csv(
            &file,
            input,
            UNIT_COLUMNS,
            UNIT_REQUIRED,
            &mut |origin, get| {
                let unit = unit_of(
                    &get("id"),
                    &get("kind"),
                    &get("name"),
                    &get("parent"),
                    &get("under_contract"),
                )
                .map_err(entry(&origin))?;
                sink(Located {
                    origin,
                    value: unit,
                });
                Ok(())
            },
        )
    }

    fn people(&mut self, sink: &mut dyn FnMut(Located<Person>)) -> Result<(), DirectoryError> {
        let Some((file, input)) = self.people.take() else {
            return Ok(());
        };
        read_csv(
            &file,
            input,
            PEOPLE_COLUMNS,
            PEOPLE_REQUIRED,
            &mut |origin, get| {
                let person = person_of(
                    &get("id"),
                    &get("name"),
                    &get("email"),
                    &get("unit"),
                    &get("functions"),
                    &get("manager"),
                )
                .map_err(entry(&origin))?;
                sink(Located {
                    origin,
                    value: person,
                });
                Ok(())
            },
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    type Read = (Vec<Located<Unit>>, Vec<Located<Person>>);

    fn read(units: &str, people: &str) -> Result<Read, DirectoryError> {
        let mut src = CsvDirectory::new(
            "units.csv",
            units.as_bytes(),
            "people.csv",
            people.as_bytes(),
        );
        let (mut u, mut p) = (Vec::new(), Vec::new());
        src.units(&mut |x| u.push(x))?;
        src.people(&mut |x| p.push(x))?;
        Ok((u, p))
    }

    const UNITS: &str = "id,kind,name,parent,under_contract\n\
        RECTORAT,rectorat,Rectorat,,\n\
        0750654D,school,\"Lycée Henri-IV, Paris\",RECTORAT,yes\n";

    #[test]
    fn reads_both_files_with_quoted_commas_and_any_column_order() {
        let people = "email,id,unit,name,functions\n\
            h@ac.fr,Head,0750654D,\"Dupont, Jean\",head;ent\n";
        let (u, p) = read(UNITS, people).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].value.name, "Lycée Henri-IV, Paris");
        assert_eq!(u[1].origin, "units.csv line 3");
        assert_eq!(p[0].value.id.as_str(), "head");
        assert_eq!(
            p[0].value.functions,
            vec![Function::HeadOfSchool, Function::EntCorrespondent]
        );
        assert_eq!(p[0].value.manager, None);
    }

    #[test]
    fn refuses_unknown_missing_and_repeated_columns_and_bad_rows_by_line() {
        let e = |units: &str, people: &str| read(units, people).unwrap_err().to_string();
        assert!(e("id,kind,name,parent,colour\n", "").contains("unknown column \"colour\""));
        assert!(e("id,kind,name\n", "").contains("\"parent\" is missing"));
        assert!(e("id,id,kind,name,parent\n", "").contains("given twice"));
        let bad_uai = format!("{UNITS}9740001A,school,X,RECTORAT,yes\n");
        assert!(e(&bad_uai, "").starts_with("units.csv line 4: the UAI code"));
        let people =
            "id,name,email,unit,functions\nok,A,a@b,RECTORAT,staff\nx,B,b@c,RECTORAT,boss\n";
        assert!(e(UNITS, people).starts_with("people.csv line 3: unknown function \"boss\""));
        assert!(e(UNITS, "id,name,email,unit,functions\nx,B,nope,RECTORAT,\n").contains("line 2"));
    }
}
