//! The directory tables: units, people and their functions.

use okey_domain::org::{Function, LotRef, Person, PersonId, Uai, Unit, UnitId, UnitKind};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Sqlite, SqliteWriter, to_i64, to_u64};
use crate::StoreError;
use crate::directory_db::{DirectoryRead, DirectoryTx};
use crate::lots::LotRow;

pub(super) const MIGRATION: &str = "
    CREATE TABLE units (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('school', 'district', 'rectorat', 'support_centre',
                                           'it_department', 'exams_office')),
        under_contract INTEGER CHECK (under_contract IN (0, 1)),
        parent TEXT,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE people (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        email TEXT NOT NULL,
        unit TEXT NOT NULL,
        manager TEXT,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX people_unit ON people (unit, id);
    CREATE TABLE person_functions (
        person TEXT NOT NULL,
        function TEXT NOT NULL,
        PRIMARY KEY (person, function)
    ) WITHOUT ROWID;
    ALTER TABLE api_keys ADD COLUMN person TEXT;
";

/// Migration 6: the API keys bound to a person (`api_keys.person`, added with the directory),
/// found by person.
/// And the lots of a unit, found by unit and kind, for the scope of each acting person.
pub(super) const MIGRATION_CALLER_PERSON: &str =
    "CREATE INDEX api_keys_person ON api_keys (person) WHERE person IS NOT NULL;
    CREATE INDEX lots_unit ON lots (unit, kind);";

const UNIT_COLS: &str = "id, name, kind, under_contract, parent";
const PERSON_COLS: &str = "id, name, email, unit, manager, \
     (SELECT group_concat(function) FROM person_functions f WHERE f.person = people.id)";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("bad {what} in the directory tables"))
}

fn unit_from(r: &Row<'_>) -> Result<Unit, StoreError> {
    let id: String = r.get(0)?;
    let kind: String = r.get(2)?;
    let kind = match kind.as_str() {
        "school" => UnitKind::School {
            uai: Uai::parse(&id).map_err(|_| corrupt("school code"))?,
            under_contract: r.get::<_, Option<i64>>(3)? == Some(1),
        },
        "district" => UnitKind::District,
        "rectorat" => UnitKind::Rectorat,
        "support_centre" => UnitKind::SupportCentre,
        "it_department" => UnitKind::ItDepartment,
        "exams_office" => UnitKind::ExamsOffice,
        _ => return Err(corrupt("unit kind")),
    };
    let name: String = r.get(1)?;
    let parent: Option<String> = r.get(4)?;
    Unit::new(&id, &name, kind, parent.as_deref()).map_err(|_| corrupt("unit"))
}

fn person_from(r: &Row<'_>) -> Result<Person, StoreError> {
    let functions: Option<String> = r.get(5)?;
    let functions = functions
        .unwrap_or_default()
        .split(',')
        .filter(|f| !f.is_empty())
        .map(|f| f.parse::<Function>().map_err(|_| corrupt("function")))
        .collect::<Result<Vec<_>, _>>()?;
    let (id, name, email, unit): (String, String, String, String) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let manager: Option<String> = r.get(4)?;
    Person::new(&id, &name, &email, &unit, &functions, manager.as_deref())
        .map_err(|_| corrupt("person"))
}

fn read_units(conn: &Connection) -> Result<Vec<Unit>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {UNIT_COLS} FROM units ORDER BY id"))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(unit_from(r)?);
    }
    Ok(out)
}

impl DirectoryRead for Sqlite {
    fn units(&self) -> Result<Vec<Unit>, StoreError> {
        read_units(&self.reader())
    }

    fn person(&self, id: &PersonId) -> Result<Option<Person>, StoreError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {PERSON_COLS} FROM people WHERE id = ?1"))?;
        let mut rows = stmt.query([id.as_str()])?;
        rows.next()?.map(person_from).transpose()
    }

    fn people_with(&self, unit: &UnitId, function: Function) -> Result<Vec<Person>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {PERSON_COLS} FROM people WHERE unit = ?1 AND EXISTS \
             (SELECT 1 FROM person_functions f WHERE f.person = people.id AND f.function = ?2) \
             ORDER BY id"
        ))?;
        let mut rows = stmt.query([unit.as_str(), function.name()])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(person_from(r)?);
        }
        Ok(out)
    }

    fn people_count(&self, unit: &UnitId) -> Result<u64, StoreError> {
        let conn = self.reader();
        let n: i64 = conn
            .prepare_cached("SELECT count(*) FROM people WHERE unit = ?1")?
            .query_row([unit.as_str()], |r| r.get(0))?;
        to_u64(n, "count")
    }

    fn children(&self, unit: &UnitId) -> Result<Vec<UnitId>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached("SELECT id FROM units WHERE parent = ?1 ORDER BY id")?;
        let mut rows = stmt.query([unit.as_str()])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            out.push(UnitId::parse(&id).map_err(|_| corrupt("unit id"))?);
        }
        Ok(out)
    }

    fn caller_person(&self, name: &str) -> Result<Option<PersonId>, StoreError> {
        let conn = self.reader();
        let person: Option<Option<String>> = conn
            .prepare_cached("SELECT person FROM api_keys WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?;
        person
            .flatten()
            .map(|p| PersonId::parse(&p).map_err(|_| corrupt("caller's person")))
            .transpose()
    }

    fn lots_of(&self, lots: &[LotRef]) -> Result<Vec<LotRow>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, validity_days, created_at FROM lots \
             WHERE unit = ?1 AND kind = ?2 ORDER BY id",
        )?;
        let mut out = Vec::new();
        for l in lots {
            let mut rows = stmt.query([l.unit.as_str(), l.kind.name()])?;
            while let Some(r) = rows.next()? {
                out.push(LotRow {
                    id: r.get(0)?,
                    kind: l.kind,
                    unit: l.unit.as_str().to_owned(),
                    name: r.get(1)?,
                    validity_days: r
                        .get::<_, Option<i64>>(2)?
                        .map(|d| u32::try_from(d).map_err(|_| corrupt("lot validity")))
                        .transpose()?,
                    created_at: to_u64(r.get(3)?, "lot creation time")?,
                });
            }
        }
        Ok(out)
    }

    fn callers_of(&self, person: &PersonId) -> Result<Vec<String>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT name FROM api_keys WHERE person = ?1 AND disabled = 0 ORDER BY name",
        )?;
        let mut rows = stmt.query([person.as_str()])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(r.get(0)?);
        }
        Ok(out)
    }
}

impl DirectoryTx for SqliteWriter {
    fn units(&mut self) -> Result<Vec<Unit>, StoreError> {
        read_units(&self.conn)
    }

    fn put_unit(&mut self, unit: &Unit, at: u64) -> Result<bool, StoreError> {
        let existed = self
            .conn
            .prepare_cached("SELECT 1 FROM units WHERE id = ?1")?
            .exists([unit.id.as_str()])?;
        let under_contract = match &unit.kind {
            UnitKind::School { under_contract, .. } => Some(i64::from(*under_contract)),
            _ => None,
        };
        self.conn
            .prepare_cached(
                "INSERT INTO units (id, name, kind, under_contract, parent, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET name = ?2, \
                 kind = ?3, under_contract = ?4, parent = ?5, updated_at = ?6",
            )?
            .execute(params![
                unit.id.as_str(),
                unit.name,
                unit.kind.name(),
                under_contract,
                unit.parent.as_ref().map(UnitId::as_str),
                to_i64(at, "time")?,
            ])?;
        Ok(!existed)
    }

    fn put_person(&mut self, p: &Person, at: u64) -> Result<bool, StoreError> {
        let id = p.id.as_str();
        let existed = self.person_exists(&p.id)?;
        self.conn
            .prepare_cached(
                "INSERT INTO people (id, name, email, unit, manager, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET name = ?2, \
                 email = ?3, unit = ?4, manager = ?5, updated_at = ?6",
            )?
            .execute(params![
                id,
                p.name,
                p.email,
                p.unit.as_str(),
                p.manager.as_ref().map(PersonId::as_str),
                to_i64(at, "time")?,
            ])?;
        if existed {
            self.conn
                .prepare_cached("DELETE FROM person_functions WHERE person = ?1")?
                .execute([id])?;
        }
        let mut insert = self
            .conn
            .prepare_cached("INSERT INTO person_functions (person, function) VALUES (?1, ?2)")?;
        for f in &p.functions {
            insert.execute([id, f.name()])?;
        }
        Ok(!existed)
    }

    fn bind_caller(&mut self, name: &str, person: &PersonId) -> Result<(), StoreError> {
        let n = self
            .conn
            .prepare_cached("UPDATE api_keys SET person = ?2 WHERE name = ?1")?
            .execute([name, person.as_str()])?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::UnknownApiKey(name.to_owned()))
        }
    }

    fn person_exists(&mut self, id: &PersonId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM people WHERE id = ?1")?
            .query_row([id.as_str()], |_| Ok(()))
            .optional()?
            .is_some())
    }
}
