//! The directory in PostgreSQL: units, people and their functions (migration 4).

use okey_domain::org::{Function, LotRef, Person, PersonId, Uai, Unit, UnitId, UnitKind};
use tokio_postgres::Row;

use super::backend::{PgWriter, Postgres, all, get, to_i64, to_u64};
use super::conn::Conn;
use crate::StoreError;
use crate::directory_db::{DirectoryRead, DirectoryTx};
use crate::lots::LotRow;

macro_rules! person_cols {
    () => {
        "id, name, email, unit, manager, \
         (SELECT string_agg(function, ',') FROM person_functions f WHERE f.person = people.id)"
    };
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("bad {what} in the directory tables"))
}

fn unit_from(r: &Row) -> Result<Unit, StoreError> {
    let id: String = get(r, 0)?;
    let kind: String = get(r, 2)?;
    let kind = match kind.as_str() {
        "school" => UnitKind::School {
            uai: Uai::parse(&id).map_err(|_| corrupt("school code"))?,
            under_contract: get::<Option<i64>>(r, 3)? == Some(1),
        },
        "district" => UnitKind::District,
        "rectorat" => UnitKind::Rectorat,
        "support_centre" => UnitKind::SupportCentre,
        "it_department" => UnitKind::ItDepartment,
        "exams_office" => UnitKind::ExamsOffice,
        _ => return Err(corrupt("unit kind")),
    };
    let name: String = get(r, 1)?;
    let parent: Option<String> = get(r, 4)?;
    Unit::new(&id, &name, kind, parent.as_deref()).map_err(|_| corrupt("unit"))
}

fn person_from(r: &Row) -> Result<Person, StoreError> {
    let functions: Option<String> = get(r, 5)?;
    let functions = functions
        .unwrap_or_default()
        .split(',')
        .filter(|f| !f.is_empty())
        .map(|f| f.parse::<Function>().map_err(|_| corrupt("function")))
        .collect::<Result<Vec<_>, _>>()?;
    let (id, name, email, unit): (String, String, String, String) =
        (get(r, 0)?, get(r, 1)?, get(r, 2)?, get(r, 3)?);
    let manager: Option<String> = get(r, 4)?;
    Person::new(&id, &name, &email, &unit, &functions, manager.as_deref())
        .map_err(|_| corrupt("person"))
}

fn read_units(conn: &Conn) -> Result<Vec<Unit>, StoreError> {
    all(
        conn,
        "SELECT id, name, kind, under_contract, parent FROM units ORDER BY id COLLATE \"C\"",
        &[],
        unit_from,
    )
}

impl DirectoryRead for Postgres {
    fn units(&self) -> Result<Vec<Unit>, StoreError> {
        read_units(&*self.reader()?)
    }

    fn person(&self, id: &PersonId) -> Result<Option<Person>, StoreError> {
        self.reader()?
            .query_opt(
                concat!("SELECT ", person_cols!(), " FROM people WHERE id = $1"),
                &[&id.as_str()],
            )?
            .as_ref()
            .map(person_from)
            .transpose()
    }

    fn people_with(&self, unit: &UnitId, function: Function) -> Result<Vec<Person>, StoreError> {
        all(
            &*self.reader()?,
            concat!(
                "SELECT ",
                person_cols!(),
                " FROM people WHERE unit = $1 AND EXISTS \
                 (SELECT 1 FROM person_functions f WHERE f.person = people.id \
                  AND f.function = $2) ORDER BY id COLLATE \"C\""
            ),
            &[&unit.as_str(), &function.name()],
            person_from,
        )
    }

    fn people_count(&self, unit: &UnitId) -> Result<u64, StoreError> {
        let r = self.reader()?.query_one(
            "SELECT count(*) FROM people WHERE unit = $1",
            &[&unit.as_str()],
        )?;
        to_u64(get(&r, 0)?, "count")
    }

    fn children(&self, unit: &UnitId) -> Result<Vec<UnitId>, StoreError> {
        all(
            &*self.reader()?,
            "SELECT id FROM units WHERE parent = $1 ORDER BY id COLLATE \"C\"",
            &[&unit.as_str()],
            |r| {
                let id: String = get(r, 0)?;
                UnitId::parse(&id).map_err(|_| corrupt("unit id"))
            },
        )
    }

    fn caller_person(&self, name: &str) -> Result<Option<PersonId>, StoreError> {
        let Some(r) = self
            .reader()?
            .query_opt("SELECT person FROM api_keys WHERE name = $1", &[&name])?
        else {
            return Ok(None);
        };
        let person: Option<String> = get(&r, 0)?;
        person
            .map(|p| PersonId::parse(&p).map_err(|_| corrupt("caller's person")))
            .transpose()
    }

    fn lots_of(&self, lots: &[LotRef]) -> Result<Vec<LotRow>, StoreError> {
        let mut out = Vec::new();
        for l in lots {
            let rows = self.reader()?.query(
                "SELECT id, name, validity_days, created_at FROM lots \
                 WHERE unit = $1 AND kind = $2 ORDER BY id COLLATE \"C\"",
                &[&l.unit.as_str(), &l.kind.name()],
            )?;
            for r in &rows {
                out.push(LotRow {
                    id: get(r, 0)?,
                    kind: l.kind,
                    unit: l.unit.as_str().to_owned(),
                    name: get(r, 1)?,
                    validity_days: get::<Option<i64>>(r, 2)?
                        .map(|d| u32::try_from(d).map_err(|_| corrupt("lot validity")))
                        .transpose()?,
                    created_at: to_u64(get(r, 3)?, "lot creation time")?,
                });
            }
        }
        Ok(out)
    }

    fn callers_of(&self, person: &PersonId) -> Result<Vec<String>, StoreError> {
        all(
            &*self.reader()?,
            "SELECT name FROM api_keys WHERE person = $1 AND disabled = 0 \
             ORDER BY name COLLATE \"C\"",
            &[&person.as_str()],
            |r| get(r, 0),
        )
    }
}

impl DirectoryTx for PgWriter {
    fn units(&mut self) -> Result<Vec<Unit>, StoreError> {
        read_units(&self.conn)
    }

    fn put_unit(&mut self, unit: &Unit, at: u64) -> Result<bool, StoreError> {
        let existed = self
            .conn
            .query_opt("SELECT 1 FROM units WHERE id = $1", &[&unit.id.as_str()])?
            .is_some();
        let under_contract = match &unit.kind {
            UnitKind::School { under_contract, .. } => Some(i64::from(*under_contract)),
            _ => None,
        };
        self.conn.execute(
            "INSERT INTO units (id, name, kind, under_contract, parent, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
             name = EXCLUDED.name, kind = EXCLUDED.kind, \
             under_contract = EXCLUDED.under_contract, parent = EXCLUDED.parent, \
             updated_at = EXCLUDED.updated_at",
            &[
                &unit.id.as_str(),
                &unit.name,
                &unit.kind.name(),
                &under_contract,
                &unit.parent.as_ref().map(UnitId::as_str),
                &to_i64(at, "time")?,
            ],
        )?;
        Ok(!existed)
    }

    fn put_person(&mut self, p: &Person, at: u64) -> Result<bool, StoreError> {
        let id = p.id.as_str();
        let existed = self.person_exists(&p.id)?;
        self.conn.execute(
            "INSERT INTO people (id, name, email, unit, manager, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
             name = EXCLUDED.name, email = EXCLUDED.email, unit = EXCLUDED.unit, \
             manager = EXCLUDED.manager, updated_at = EXCLUDED.updated_at",
            &[
                &id,
                &p.name,
                &p.email,
                &p.unit.as_str(),
                &p.manager.as_ref().map(PersonId::as_str),
                &to_i64(at, "time")?,
            ],
        )?;
        if existed {
            self.conn
                .execute("DELETE FROM person_functions WHERE person = $1", &[&id])?;
        }
        for f in &p.functions {
            self.conn.execute(
                "INSERT INTO person_functions (person, function) VALUES ($1, $2)",
                &[&id, &f.name()],
            )?;
        }
        Ok(!existed)
    }

    fn bind_caller(&mut self, name: &str, person: &PersonId) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE api_keys SET person = $2 WHERE name = $1",
            &[&name, &person.as_str()],
        )?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::UnknownApiKey(name.to_owned()))
        }
    }

    fn person_exists(&mut self, id: &PersonId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_opt("SELECT 1 FROM people WHERE id = $1", &[&id.as_str()])?
            .is_some())
    }
}
