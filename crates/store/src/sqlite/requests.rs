//! Key requests, charters, pickup slots and attachments in SQLite: migration 9 and the
//! [`RequestTx`] statements.

use rusqlite::{Connection, Row, params};

use super::{SqliteWriter, opt_i64, to_i64, to_u64};
use crate::StoreError;
use crate::attachments::AttachmentRow;
use crate::request_db::RequestTx;
use crate::requests::{Charter, PickupSlot, RequestEvent, RequestRow};

/// Requests with their history, charters, pickup slots and the generic attachments table (its
/// content sealed under a data key, carried by the backup as typed records).
pub(super) const MIGRATION: &str = "
    CREATE TABLE key_requests (
        id INTEGER PRIMARY KEY,
        requester TEXT NOT NULL,
        unit TEXT NOT NULL,
        need TEXT NOT NULL CHECK (need IN ('new', 'renewal')),
        key_type TEXT NOT NULL CHECK (key_type IN ('hardware', 'software')),
        reason TEXT NOT NULL,
        state TEXT NOT NULL,
        validator TEXT,
        second_validator TEXT,
        decided_by TEXT,
        decision_reason TEXT,
        lot TEXT,
        serial TEXT,
        charter_version INTEGER,
        charter_signed_at INTEGER,
        pin_verifier BLOB CHECK (pin_verifier IS NULL OR length(pin_verifier) = 32),
        pin_source TEXT,
        slot INTEGER,
        reminders INTEGER NOT NULL DEFAULT 0 CHECK (reminders >= 0),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        submitted_at INTEGER,
        version INTEGER NOT NULL
    );
    CREATE INDEX key_requests_requester ON key_requests (requester, id);
    CREATE INDEX key_requests_validator ON key_requests (validator, id);
    CREATE INDEX key_requests_second ON key_requests (second_validator, id);
    CREATE INDEX key_requests_state ON key_requests (state, id);
    CREATE TABLE request_events (
        id INTEGER PRIMARY KEY,
        request INTEGER NOT NULL REFERENCES key_requests (id),
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        state_before TEXT,
        state_after TEXT NOT NULL,
        comment TEXT
    );
    CREATE INDEX request_events_request ON request_events (request, id);
    CREATE TABLE charters (
        version INTEGER PRIMARY KEY CHECK (version > 0),
        number TEXT NOT NULL,
        title TEXT NOT NULL,
        content BLOB NOT NULL,
        sha256 BLOB NOT NULL,
        published_by TEXT NOT NULL,
        published_at INTEGER NOT NULL
    );
    CREATE TABLE pickup_slots (
        id INTEGER PRIMARY KEY,
        lot TEXT NOT NULL,
        starts_at INTEGER NOT NULL,
        place TEXT NOT NULL,
        request INTEGER UNIQUE,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX pickup_slots_lot ON pickup_slots (lot, starts_at);
    CREATE TABLE attachments (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL CHECK (size > 0),
        sha256 BLOB NOT NULL,
        key_version INTEGER NOT NULL,
        sealed_content BLOB NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX attachments_owner ON attachments (owner, id);
";

const REQUEST_COLS: &str = "id, requester, unit, need, key_type, reason, state, validator, \
    second_validator, decided_by, decision_reason, lot, serial, charter_version, \
    charter_signed_at, pin_verifier, pin_source, slot, reminders, created_at, updated_at, \
    submitted_at, version";
const EVENT_COLS: &str = "request, at, actor, action, state_before, state_after, comment";
const CHARTER_COLS: &str = "version, number, title, content, sha256, published_by, published_at";
const SLOT_COLS: &str = "id, lot, starts_at, place, request, created_by, created_at";
const ATTACHMENT_COLS: &str = "id, owner, name, media_type, size, sha256, key_version, sealed_content, created_by, created_at";

fn ou(r: &Row<'_>, i: usize, what: &str) -> Result<Option<u64>, StoreError> {
    r.get::<_, Option<i64>>(i)?
        .map(|v| to_u64(v, what))
        .transpose()
}

fn u32_of(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("bad {what} in the database")))
}

fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("bad {what} in the database")))
}

fn request_from(r: &Row<'_>) -> Result<RequestRow, StoreError> {
    Ok(RequestRow {
        id: to_u64(r.get(0)?, "request id")?,
        requester: r.get(1)?,
        unit: r.get(2)?,
        need: r.get(3)?,
        key_type: r.get(4)?,
        reason: r.get(5)?,
        state: r.get(6)?,
        validator: r.get(7)?,
        second_validator: r.get(8)?,
        decided_by: r.get(9)?,
        decision_reason: r.get(10)?,
        lot: r.get(11)?,
        serial: r.get(12)?,
        charter_version: r
            .get::<_, Option<i64>>(13)?
            .map(|v| u32_of(v, "charter version"))
            .transpose()?,
        charter_signed_at: ou(r, 14, "signature time")?,
        pin_verifier: r
            .get::<_, Option<Vec<u8>>>(15)?
            .map(|v| hash32(v, "PIN verifier"))
            .transpose()?,
        pin_source: r.get(16)?,
        slot: ou(r, 17, "slot")?,
        reminders: u32_of(r.get(18)?, "reminders")?,
        created_at: to_u64(r.get(19)?, "time")?,
        updated_at: to_u64(r.get(20)?, "time")?,
        submitted_at: ou(r, 21, "time")?,
        version: to_u64(r.get(22)?, "version")?,
    })
}

fn event_from(r: &Row<'_>) -> Result<RequestEvent, StoreError> {
    Ok(RequestEvent {
        request: to_u64(r.get(0)?, "request id")?,
        at: to_u64(r.get(1)?, "time")?,
        actor: r.get(2)?,
        action: r.get(3)?,
        state_before: r.get(4)?,
        state_after: r.get(5)?,
        comment: r.get(6)?,
    })
}

fn charter_from(r: &Row<'_>) -> Result<Charter, StoreError> {
    Ok(Charter {
        version: u32_of(r.get(0)?, "charter version")?,
        number: r.get(1)?,
        title: r.get(2)?,
        content: r.get(3)?,
        sha256: hash32(r.get(4)?, "charter digest")?,
        published_by: r.get(5)?,
        published_at: to_u64(r.get(6)?, "time")?,
    })
}

fn slot_from(r: &Row<'_>) -> Result<PickupSlot, StoreError> {
    Ok(PickupSlot {
        id: to_u64(r.get(0)?, "slot id")?,
        lot: r.get(1)?,
        starts_at: to_u64(r.get(2)?, "time")?,
        place: r.get(3)?,
        request: ou(r, 4, "request id")?,
        created_by: r.get(5)?,
        created_at: to_u64(r.get(6)?, "time")?,
    })
}

fn attachment_from(r: &Row<'_>) -> Result<AttachmentRow, StoreError> {
    Ok(AttachmentRow {
        id: to_u64(r.get(0)?, "attachment id")?,
        owner: r.get(1)?,
        name: r.get(2)?,
        media_type: r.get(3)?,
        size: to_u64(r.get(4)?, "size")?,
        sha256: hash32(r.get(5)?, "attachment digest")?,
        key_version: u32_of(r.get(6)?, "key version")?,
        sealed_content: r.get(7)?,
        created_by: r.get(8)?,
        created_at: to_u64(r.get(9)?, "time")?,
    })
}

fn all<T>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
    f: fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

fn one<T>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
    f: fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    Ok(all(conn, sql, args, f)?.into_iter().next())
}

/// Every attachment, for a backup (inside the export's read transaction).
pub(super) fn export_attachments(
    conn: &Connection,
    sink: &mut dyn FnMut(crate::backend::ExportItem) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ATTACHMENT_COLS} FROM attachments ORDER BY id"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        sink(crate::backend::ExportItem::Attachment(Box::new(
            attachment_from(r)?,
        )))?;
    }
    Ok(())
}

impl RequestTx for SqliteWriter {
    fn insert_request(&mut self, r: &RequestRow) -> Result<u64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO key_requests (requester, unit, need, key_type, reason, state, \
                 validator, second_validator, decided_by, decision_reason, lot, serial, \
                 charter_version, charter_signed_at, pin_verifier, pin_source, slot, reminders, \
                 created_at, updated_at, submitted_at, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
                 ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, 0)",
            )?
            .execute(params![
                r.requester,
                r.unit,
                r.need,
                r.key_type,
                r.reason,
                r.state,
                r.validator,
                r.second_validator,
                r.decided_by,
                r.decision_reason,
                r.lot,
                r.serial,
                r.charter_version.map(i64::from),
                opt_i64(r.charter_signed_at, "time")?,
                r.pin_verifier.map(|v| v.to_vec()),
                r.pin_source,
                opt_i64(r.slot, "slot")?,
                i64::from(r.reminders),
                to_i64(r.created_at, "time")?,
                to_i64(r.updated_at, "time")?,
                opt_i64(r.submitted_at, "time")?,
            ])?;
        to_u64(self.conn.last_insert_rowid(), "request id")
    }

    fn update_request(&mut self, expect: u64, r: &RequestRow) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE key_requests SET state = ?3, validator = ?4, second_validator = ?5, \
                 decided_by = ?6, decision_reason = ?7, lot = ?8, serial = ?9, \
                 charter_version = ?10, charter_signed_at = ?11, pin_verifier = ?12, \
                 pin_source = ?13, slot = ?14, reminders = ?15, updated_at = ?16, \
                 submitted_at = ?17, version = version + 1 WHERE id = ?1 AND version = ?2",
            )?
            .execute(params![
                to_i64(r.id, "request id")?,
                to_i64(expect, "version")?,
                r.state,
                r.validator,
                r.second_validator,
                r.decided_by,
                r.decision_reason,
                r.lot,
                r.serial,
                r.charter_version.map(i64::from),
                opt_i64(r.charter_signed_at, "time")?,
                r.pin_verifier.map(|v| v.to_vec()),
                r.pin_source,
                opt_i64(r.slot, "slot")?,
                i64::from(r.reminders),
                to_i64(r.updated_at, "time")?,
                opt_i64(r.submitted_at, "time")?,
            ])?;
        Ok(n == 1)
    }

    fn request(&mut self, id: u64) -> Result<Option<RequestRow>, StoreError> {
        one(
            &self.conn,
            &format!("SELECT {REQUEST_COLS} FROM key_requests WHERE id = ?1"),
            &[&to_i64(id, "request id")?],
            request_from,
        )
    }

    fn requests_of_person(&mut self, person: &str) -> Result<Vec<RequestRow>, StoreError> {
        all(
            &self.conn,
            &format!(
                "SELECT {REQUEST_COLS} FROM key_requests WHERE requester = ?1 OR validator = ?1 \
                 OR second_validator = ?1 ORDER BY id"
            ),
            &[&person],
            request_from,
        )
    }

    fn requests_in_state(&mut self, state: &str) -> Result<Vec<RequestRow>, StoreError> {
        all(
            &self.conn,
            &format!("SELECT {REQUEST_COLS} FROM key_requests WHERE state = ?1 ORDER BY id"),
            &[&state],
            request_from,
        )
    }

    fn insert_request_event(&mut self, e: &RequestEvent) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO request_events ({EVENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                to_i64(e.request, "request id")?,
                to_i64(e.at, "time")?,
                e.actor,
                e.action,
                e.state_before,
                e.state_after,
                e.comment
            ])?;
        Ok(())
    }

    fn request_events(&mut self, id: u64) -> Result<Vec<RequestEvent>, StoreError> {
        all(
            &self.conn,
            &format!("SELECT {EVENT_COLS} FROM request_events WHERE request = ?1 ORDER BY id"),
            &[&to_i64(id, "request id")?],
            event_from,
        )
    }

    fn insert_charter(&mut self, c: &Charter) -> Result<(), StoreError> {
        let n = self
            .conn
            .prepare_cached(&format!(
                "INSERT OR IGNORE INTO charters ({CHARTER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                i64::from(c.version),
                c.number,
                c.title,
                c.content,
                c.sha256.to_vec(),
                c.published_by,
                to_i64(c.published_at, "time")?
            ])?;
        if n != 1 {
            return Err(StoreError::Precondition(format!(
                "charter version {} exists already",
                c.version
            )));
        }
        Ok(())
    }

    fn current_charter(&mut self) -> Result<Option<Charter>, StoreError> {
        one(
            &self.conn,
            &format!("SELECT {CHARTER_COLS} FROM charters ORDER BY version DESC LIMIT 1"),
            &[],
            charter_from,
        )
    }

    fn insert_slot(&mut self, s: &PickupSlot) -> Result<u64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO pickup_slots (lot, starts_at, place, request, created_by, created_at) \
                 VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
            )?
            .execute(params![
                s.lot,
                to_i64(s.starts_at, "time")?,
                s.place,
                s.created_by,
                to_i64(s.created_at, "time")?
            ])?;
        to_u64(self.conn.last_insert_rowid(), "slot id")
    }

    fn slot(&mut self, id: u64) -> Result<Option<PickupSlot>, StoreError> {
        one(
            &self.conn,
            &format!("SELECT {SLOT_COLS} FROM pickup_slots WHERE id = ?1"),
            &[&to_i64(id, "slot id")?],
            slot_from,
        )
    }

    fn slots(&mut self, lot: &str) -> Result<Vec<PickupSlot>, StoreError> {
        all(
            &self.conn,
            &format!("SELECT {SLOT_COLS} FROM pickup_slots WHERE lot = ?1 ORDER BY starts_at, id"),
            &[&lot],
            slot_from,
        )
    }

    fn book_slot(&mut self, id: u64, request: u64) -> Result<bool, StoreError> {
        let req = to_i64(request, "request id")?;
        self.conn
            .prepare_cached("UPDATE pickup_slots SET request = NULL WHERE request = ?1")?
            .execute(params![req])?;
        let n = self
            .conn
            .prepare_cached(
                "UPDATE pickup_slots SET request = ?2 WHERE id = ?1 AND request IS NULL",
            )?
            .execute(params![to_i64(id, "slot id")?, req])?;
        Ok(n == 1)
    }

    fn free_slot_of(&mut self, request: u64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE pickup_slots SET request = NULL WHERE request = ?1")?
            .execute(params![to_i64(request, "request id")?])?;
        Ok(())
    }

    fn insert_attachment(&mut self, a: &AttachmentRow) -> Result<u64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO attachments (id, owner, name, media_type, size, sha256, key_version, \
                 sealed_content, created_by, created_at) \
                 VALUES (?10, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                a.owner,
                a.name,
                a.media_type,
                to_i64(a.size, "size")?,
                a.sha256.to_vec(),
                i64::from(a.key_version),
                a.sealed_content,
                a.created_by,
                to_i64(a.created_at, "time")?,
                (a.id != 0)
                    .then(|| to_i64(a.id, "attachment id"))
                    .transpose()?
            ])?;
        to_u64(self.conn.last_insert_rowid(), "attachment id")
    }

    fn attachments(&mut self, owner: &str) -> Result<Vec<AttachmentRow>, StoreError> {
        all(
            &self.conn,
            &format!("SELECT {ATTACHMENT_COLS} FROM attachments WHERE owner = ?1 ORDER BY id"),
            &[&owner],
            attachment_from,
        )
    }

    fn attachments_not_sealed_under(
        &mut self,
        version: u32,
        limit: u32,
    ) -> Result<Vec<AttachmentRow>, StoreError> {
        all(
            &self.conn,
            &format!(
                "SELECT {ATTACHMENT_COLS} FROM attachments WHERE key_version <> ?1 ORDER BY id LIMIT ?2"
            ),
            &[&i64::from(version), &i64::from(limit)],
            attachment_from,
        )
    }

    fn reseal_attachment(
        &mut self,
        id: u64,
        key_version: u32,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE attachments SET key_version = ?2, sealed_content = ?3 WHERE id = ?1",
            )?
            .execute(params![
                to_i64(id, "attachment id")?,
                i64::from(key_version),
                sealed
            ])?;
        Ok(())
    }
}
