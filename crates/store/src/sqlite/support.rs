//! The support desk's tables (migration 10): cases, their per-unit sequences, messages and
//! internal notes, temporary keys; and the outbox's copy (`cc`) column.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Sqlite, SqliteWriter, to_i64, to_u64};
use crate::StoreError;
use crate::support_db::{
    CASE_COLS, CaseFilter, CaseMessage, CaseRow, CaseState, SupportRead, SupportTx, TemporaryKey,
    kind, lines, priority,
};

/// Migration 10. PostgreSQL's (`pg::support::MIGRATION`) is the same with BIGINT.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE support_sequences (
        unit TEXT NOT NULL,
        year INTEGER NOT NULL,
        last INTEGER NOT NULL CHECK (last >= 1),
        PRIMARY KEY (unit, year)
    ) WITHOUT ROWID;
    CREATE TABLE support_cases (
        number TEXT PRIMARY KEY NOT NULL,
        unit TEXT NOT NULL,
        declarant TEXT NOT NULL,
        declarant_email TEXT NOT NULL,
        copy_to TEXT,
        kind TEXT NOT NULL,
        priority TEXT NOT NULL CHECK (priority IN ('blocking', 'major', 'minor')),
        priority_rank INTEGER NOT NULL CHECK (priority_rank IN (0, 1, 2)),
        name TEXT NOT NULL,
        function TEXT NOT NULL,
        phone TEXT NOT NULL,
        unit_town TEXT NOT NULL,
        subject TEXT NOT NULL,
        population TEXT NOT NULL,
        description TEXT NOT NULL,
        location TEXT NOT NULL,
        attachments TEXT NOT NULL,
        serial TEXT,
        serials TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
        assignee TEXT,
        opened_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        resolved_at INTEGER,
        resolution TEXT
    ) WITHOUT ROWID;
    CREATE INDEX support_cases_queue ON support_cases (state, priority_rank, opened_at, number);
    CREATE INDEX support_cases_declarant ON support_cases (declarant, opened_at);
    CREATE TABLE support_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        number TEXT NOT NULL,
        at INTEGER NOT NULL,
        author TEXT NOT NULL,
        internal INTEGER NOT NULL CHECK (internal IN (0, 1)),
        body TEXT NOT NULL
    );
    CREATE INDEX support_messages_case ON support_messages (number, id);
    CREATE TABLE support_temporary_keys (
        serial TEXT PRIMARY KEY NOT NULL,
        replaces TEXT NOT NULL,
        holder TEXT NOT NULL,
        case_number TEXT,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        issued_by TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX support_temporary_keys_replaces ON support_temporary_keys (replaces);
    ALTER TABLE outbox ADD COLUMN cc TEXT NOT NULL DEFAULT '';";

fn case_from(r: &Row<'_>) -> Result<CaseRow, StoreError> {
    let opt_u64 = |i: usize| -> Result<Option<u64>, StoreError> {
        r.get::<_, Option<i64>>(i)?
            .map(|v| to_u64(v, "time"))
            .transpose()
    };
    Ok(CaseRow {
        number: r.get(0)?,
        unit: r.get(1)?,
        declarant: r.get(2)?,
        declarant_email: r.get(3)?,
        copy_to: r.get(4)?,
        kind: kind(&r.get::<_, String>(5)?)?,
        priority: priority(&r.get::<_, String>(6)?)?,
        name: r.get(7)?,
        function: r.get(8)?,
        phone: r.get(9)?,
        unit_town: r.get(10)?,
        subject: r.get(11)?,
        population: r.get(12)?,
        description: r.get(13)?,
        location: r.get(14)?,
        attachments: lines(&r.get::<_, String>(15)?),
        serial: r.get(16)?,
        serials: lines(&r.get::<_, String>(17)?),
        state: CaseState::parse(&r.get::<_, String>(18)?)?,
        assignee: r.get(19)?,
        opened_at: to_u64(r.get(20)?, "time")?,
        updated_at: to_u64(r.get(21)?, "time")?,
        resolved_at: opt_u64(22)?,
        resolution: r.get(23)?,
    })
}

fn message_from(r: &Row<'_>) -> Result<CaseMessage, StoreError> {
    Ok(CaseMessage {
        id: to_u64(r.get(0)?, "id")?,
        number: r.get(1)?,
        at: to_u64(r.get(2)?, "time")?,
        author: r.get(3)?,
        internal: r.get::<_, i64>(4)? == 1,
        body: r.get(5)?,
    })
}

fn temporary_from(r: &Row<'_>) -> Result<TemporaryKey, StoreError> {
    Ok(TemporaryKey {
        serial: r.get(0)?,
        replaces: r.get(1)?,
        holder: r.get(2)?,
        case_number: r.get(3)?,
        issued_at: to_u64(r.get(4)?, "time")?,
        expires_at: to_u64(r.get(5)?, "time")?,
        issued_by: r.get(6)?,
    })
}

fn read_case(conn: &Connection, number: &str) -> Result<Option<CaseRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CASE_COLS} FROM support_cases WHERE number = ?1"
    ))?;
    let mut rows = stmt.query([number])?;
    rows.next()?.map(case_from).transpose()
}

impl SupportRead for Sqlite {
    fn case(&self, number: &str) -> Result<Option<CaseRow>, StoreError> {
        read_case(&self.reader(), number)
    }

    fn cases(&self, f: &CaseFilter, limit: u32) -> Result<Vec<CaseRow>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {CASE_COLS} FROM support_cases \
             WHERE (?1 = 0 OR state = 'open') AND (?2 IS NULL OR declarant = ?2) \
             AND (?3 IS NULL OR assignee = ?3) \
             ORDER BY state = 'resolved', priority_rank, opened_at, number LIMIT ?4"
        ))?;
        let mut rows = stmt.query(params![
            i64::from(f.open_only),
            f.declarant,
            f.assignee,
            i64::from(limit)
        ])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(case_from(r)?);
        }
        Ok(out)
    }

    fn case_messages(&self, number: &str) -> Result<Vec<CaseMessage>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT id, number, at, author, internal, body FROM support_messages \
             WHERE number = ?1 ORDER BY id",
        )?;
        let mut rows = stmt.query([number])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(message_from(r)?);
        }
        Ok(out)
    }

    fn temporary_keys(&self, serial: &str) -> Result<Vec<TemporaryKey>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT serial, replaces, holder, case_number, issued_at, expires_at, issued_by \
             FROM support_temporary_keys WHERE serial = ?1 OR replaces = ?1 \
             ORDER BY issued_at, serial",
        )?;
        let mut rows = stmt.query([serial])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(temporary_from(r)?);
        }
        Ok(out)
    }
}

impl SupportTx for SqliteWriter {
    fn case(&mut self, number: &str) -> Result<Option<CaseRow>, StoreError> {
        read_case(&self.conn, number)
    }

    fn next_case_seq(&mut self, unit: &str, year: i32) -> Result<u64, StoreError> {
        let last: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO support_sequences (unit, year, last) VALUES (?1, ?2, 1) \
                 ON CONFLICT (unit, year) DO UPDATE SET last = last + 1 RETURNING last",
            )?
            .query_row(params![unit, i64::from(year)], |r| r.get(0))?;
        to_u64(last, "sequence")
    }

    fn insert_case(&mut self, c: &CaseRow) -> Result<(), StoreError> {
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM support_cases WHERE number = ?1")?
            .query_row([&c.number], |_| Ok(()))
            .optional()?
            .is_some();
        if exists {
            return Err(StoreError::Precondition(format!(
                "case {} already exists",
                c.number
            )));
        }
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO support_cases ({CASE_COLS}, priority_rank) VALUES (?1, ?2, ?3, ?4, \
                 ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, \
                 ?22, ?23, ?24, ?25)"
            ))?
            .execute(params![
                c.number,
                c.unit,
                c.declarant,
                c.declarant_email,
                c.copy_to,
                c.kind.as_str(),
                c.priority.as_str(),
                c.name,
                c.function,
                c.phone,
                c.unit_town,
                c.subject,
                c.population,
                c.description,
                c.location,
                c.attachments.join("\n"),
                c.serial,
                c.serials.join("\n"),
                c.state.as_str(),
                c.assignee,
                to_i64(c.opened_at, "time")?,
                to_i64(c.updated_at, "time")?,
                c.resolved_at.map(|t| to_i64(t, "time")).transpose()?,
                c.resolution,
                i64::from(c.priority.rank()),
            ])?;
        Ok(())
    }

    fn update_case(&mut self, c: &CaseRow) -> Result<(), StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE support_cases SET state = ?2, assignee = ?3, priority = ?4, \
                 priority_rank = ?5, updated_at = ?6, resolved_at = ?7, resolution = ?8 \
                 WHERE number = ?1",
            )?
            .execute(params![
                c.number,
                c.state.as_str(),
                c.assignee,
                c.priority.as_str(),
                i64::from(c.priority.rank()),
                to_i64(c.updated_at, "time")?,
                c.resolved_at.map(|t| to_i64(t, "time")).transpose()?,
                c.resolution,
            ])?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Precondition(format!("no case {}", c.number)))
        }
    }

    fn insert_case_message(&mut self, m: &CaseMessage) -> Result<u64, StoreError> {
        let id: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO support_messages (number, at, author, internal, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
            )?
            .query_row(
                params![
                    m.number,
                    to_i64(m.at, "time")?,
                    m.author,
                    i64::from(m.internal),
                    m.body
                ],
                |r| r.get(0),
            )?;
        to_u64(id, "id")
    }

    fn insert_temporary_key(&mut self, k: &TemporaryKey) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO support_temporary_keys (serial, replaces, holder, case_number, \
                 issued_at, expires_at, issued_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                k.serial,
                k.replaces,
                k.holder,
                k.case_number,
                to_i64(k.issued_at, "time")?,
                to_i64(k.expires_at, "time")?,
                k.issued_by,
            ])?;
        Ok(())
    }
}
