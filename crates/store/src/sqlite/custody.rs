//! Lots and custody in SQLite: migration 2 and the [`CustodyRead`] / [`CustodyTx`] statements.

use rusqlite::{Connection, Row, params};

use super::{Sqlite, SqliteWriter, opt_i64, to_i64, to_u64};
use crate::StoreError;
use crate::custody_db::{CustodyRead, CustodyTx};
use crate::lots::{CustodyRow, KeyEvent, LotKey, LotRow, Order, OrderState, Receipt};

/// The custody state, validity end and deactivation time join the token state row (so the
/// compare-and-set covers them and a verify reads them with the row); lots, the key's lot,
/// history, receipts and orders get their own tables.
pub(super) const MIGRATION: &str = "
    ALTER TABLE token_state ADD COLUMN custody TEXT;
    ALTER TABLE token_state ADD COLUMN valid_until INTEGER CHECK (valid_until >= 0);
    ALTER TABLE token_state ADD COLUMN active_until INTEGER CHECK (active_until >= 0);
    DROP VIEW token_rows;
    CREATE VIEW token_rows AS
        SELECT t.serial AS serial, kind, otp, step, t0, suite, algorithm, digits, key_version,
               sealed_seed, sealed_pin_hash, counter, last_step, drift, failures, locked,
               locked_until, status, holder, description, pin_verifier, created_at, updated_at,
               version, custody, valid_until, active_until
        FROM tokens t JOIN token_state s ON s.serial = t.serial;
    CREATE TABLE lots (
        id TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('2d', '1d', 'rectorat', 'examen')),
        unit TEXT NOT NULL,
        name TEXT NOT NULL,
        validity_days INTEGER CHECK (validity_days > 0),
        created_at INTEGER NOT NULL
    );
    CREATE TABLE key_custody (
        serial TEXT PRIMARY KEY NOT NULL REFERENCES tokens (serial),
        lot TEXT NOT NULL REFERENCES lots (id),
        origin_lot TEXT NOT NULL REFERENCES lots (id),
        return_due INTEGER,
        reserved_for TEXT,
        changed_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX key_custody_lot ON key_custody (lot, serial);
    CREATE INDEX token_state_valid_until ON token_state (valid_until)
        WHERE valid_until IS NOT NULL;
    CREATE INDEX token_state_active_until ON token_state (active_until)
        WHERE active_until IS NOT NULL;
    CREATE TABLE key_history (
        id INTEGER PRIMARY KEY,
        serial TEXT NOT NULL,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        state_before TEXT,
        state_after TEXT,
        lot_before TEXT,
        lot_after TEXT,
        holder_before TEXT,
        holder_after TEXT,
        comment TEXT
    );
    CREATE INDEX key_history_serial ON key_history (serial, id);
    CREATE TABLE receipts (
        number TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('handover', 'return')),
        serial TEXT NOT NULL,
        lot TEXT NOT NULL,
        holder TEXT NOT NULL,
        staff TEXT NOT NULL,
        at INTEGER NOT NULL,
        place TEXT,
        condition TEXT,
        until INTEGER,
        confirmed_at INTEGER,
        confirmed_how TEXT
    );
    CREATE INDEX receipts_serial ON receipts (serial, at);
    CREATE TABLE lot_orders (
        id INTEGER PRIMARY KEY,
        lot TEXT NOT NULL REFERENCES lots (id),
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        state TEXT NOT NULL CHECK (state IN ('open', 'fulfilled', 'cancelled')),
        comment TEXT,
        ordered_by TEXT NOT NULL,
        ordered_at INTEGER NOT NULL,
        closed_by TEXT,
        closed_at INTEGER,
        serials TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX lot_orders_lot ON lot_orders (lot, id);
    CREATE TABLE lot_delegates (
        lot TEXT NOT NULL REFERENCES lots (id),
        person TEXT NOT NULL,
        PRIMARY KEY (lot, person)
    ) WITHOUT ROWID;
    CREATE INDEX lot_delegates_person ON lot_delegates (person, lot);
";

const LOT_COLS: &str = "id, kind, unit, name, validity_days, created_at";
const CUSTODY_COLS: &str = "serial, lot, origin_lot, return_due, reserved_for, changed_at";
const EVENT_COLS: &str = "serial, at, actor, action, state_before, state_after, lot_before, \
     lot_after, holder_before, holder_after, comment";
const RECEIPT_COLS: &str = "number, kind, serial, lot, holder, staff, at, place, condition, \
     until, confirmed_at, confirmed_how";
const ORDER_COLS: &str = "id, lot, quantity, state, comment, ordered_by, ordered_at, closed_by, \
     closed_at, serials";

fn opt_u64(r: &Row<'_>, i: usize, what: &str) -> Result<Option<u64>, StoreError> {
    r.get::<_, Option<i64>>(i)?
        .map(|v| to_u64(v, what))
        .transpose()
}

fn lot_from(r: &Row<'_>) -> Result<LotRow, StoreError> {
    Ok(LotRow {
        id: r.get(0)?,
        kind: r
            .get::<_, String>(1)?
            .parse()
            .map_err(|_| StoreError::Corrupt("bad lot kind".into()))?,
        unit: r.get(2)?,
        name: r.get(3)?,
        validity_days: r
            .get::<_, Option<i64>>(4)?
            .map(|d| u32::try_from(d).map_err(|_| StoreError::Corrupt("bad validity".into())))
            .transpose()?,
        created_at: to_u64(r.get(5)?, "lot creation time")?,
    })
}

fn custody_from(r: &Row<'_>) -> Result<CustodyRow, StoreError> {
    Ok(CustodyRow {
        serial: r.get(0)?,
        lot: r.get(1)?,
        origin_lot: r.get(2)?,
        return_due: opt_u64(r, 3, "return due time")?,
        reserved_for: r.get(4)?,
        changed_at: to_u64(r.get(5)?, "custody change time")?,
    })
}

fn event_from(r: &Row<'_>) -> Result<KeyEvent, StoreError> {
    Ok(KeyEvent {
        serial: r.get(0)?,
        at: to_u64(r.get(1)?, "event time")?,
        actor: r.get(2)?,
        action: r.get(3)?,
        state_before: r.get(4)?,
        state_after: r.get(5)?,
        lot_before: r.get(6)?,
        lot_after: r.get(7)?,
        holder_before: r.get(8)?,
        holder_after: r.get(9)?,
        comment: r.get(10)?,
    })
}

fn receipt_from(r: &Row<'_>) -> Result<Receipt, StoreError> {
    Ok(Receipt {
        number: r.get(0)?,
        kind: r.get::<_, String>(1)?.parse()?,
        serial: r.get(2)?,
        lot: r.get(3)?,
        holder: r.get(4)?,
        staff: r.get(5)?,
        at: to_u64(r.get(6)?, "receipt time")?,
        place: r.get(7)?,
        condition: r.get(8)?,
        until: opt_u64(r, 9, "period end")?,
        confirmed_at: opt_u64(r, 10, "confirmation time")?,
        confirmed_how: r.get(11)?,
    })
}

fn order_from(r: &Row<'_>) -> Result<Order, StoreError> {
    let serials: String = r.get(9)?;
    Ok(Order {
        id: to_u64(r.get(0)?, "order id")?,
        lot: r.get(1)?,
        quantity: u32::try_from(r.get::<_, i64>(2)?)
            .map_err(|_| StoreError::Corrupt("bad order quantity".into()))?,
        state: r.get::<_, String>(3)?.parse()?,
        comment: r.get(4)?,
        ordered_by: r.get(5)?,
        ordered_at: to_u64(r.get(6)?, "order time")?,
        closed_by: r.get(7)?,
        closed_at: opt_u64(r, 8, "order close time")?,
        serials: serials
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
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

fn lot_key_from(r: &Row<'_>) -> Result<LotKey, StoreError> {
    Ok(LotKey {
        serial: r.get(0)?,
        kind: r
            .get::<_, String>(1)?
            .parse()
            .map_err(|_| StoreError::Corrupt("bad kind".into()))?,
        status: r
            .get::<_, String>(2)?
            .parse()
            .map_err(|_| StoreError::Corrupt("bad status".into()))?,
        custody: r
            .get::<_, Option<String>>(3)?
            .map(|c| {
                c.parse()
                    .map_err(|_| StoreError::Corrupt("bad custody state".into()))
            })
            .transpose()?,
        holder: r.get(4)?,
        lot: r.get(5)?,
        origin_lot: r.get(6)?,
        valid_until: opt_u64(r, 7, "validity end")?,
        active_until: opt_u64(r, 8, "deactivation time")?,
        return_due: opt_u64(r, 9, "return due time")?,
        reserved_for: r.get(10)?,
        changed_at: to_u64(r.get(11)?, "custody change time")?,
    })
}

fn lot_counts(conn: &Connection) -> Result<Vec<(String, String, u64)>, StoreError> {
    all(
        conn,
        "SELECT c.lot, s.custody, count(*) FROM key_custody c \
         JOIN token_state s ON s.serial = c.serial GROUP BY c.lot, s.custody",
        &[],
        |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                to_u64(r.get(2)?, "count")?,
            ))
        },
    )
}

impl CustodyRead for Sqlite {
    fn delegates(&self, lot: &str) -> Result<Vec<String>, StoreError> {
        delegates(&self.reader(), lot)
    }

    fn delegated_to(&self, person: &str) -> Result<Vec<String>, StoreError> {
        all(
            &self.reader(),
            "SELECT lot FROM lot_delegates WHERE person = ?1 ORDER BY lot",
            &[&person],
            |r| Ok(r.get(0)?),
        )
    }

    fn lot(&self, id: &str) -> Result<Option<LotRow>, StoreError> {
        one(
            &self.reader(),
            &format!("SELECT {LOT_COLS} FROM lots WHERE id = ?1"),
            &[&id],
            lot_from,
        )
    }

    fn lots(&self) -> Result<Vec<LotRow>, StoreError> {
        all(
            &self.reader(),
            &format!("SELECT {LOT_COLS} FROM lots ORDER BY id"),
            &[],
            lot_from,
        )
    }

    fn lot_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        lot_counts(&self.reader())
    }

    fn lot_keys(&self, lot: &str) -> Result<Vec<LotKey>, StoreError> {
        all(
            &self.reader(),
            "SELECT c.serial, t.kind, s.status, s.custody, t.holder, c.lot, c.origin_lot, \
             s.valid_until, s.active_until, c.return_due, c.reserved_for, c.changed_at \
             FROM key_custody c JOIN tokens t ON t.serial = c.serial \
             JOIN token_state s ON s.serial = c.serial \
             WHERE c.lot = ?1 ORDER BY c.serial",
            &[&lot],
            lot_key_from,
        )
    }

    fn custody(&self, serial: &str) -> Result<Option<CustodyRow>, StoreError> {
        one(
            &self.reader(),
            &format!("SELECT {CUSTODY_COLS} FROM key_custody WHERE serial = ?1"),
            &[&serial],
            custody_from,
        )
    }

    fn history(&self, serial: &str) -> Result<Vec<KeyEvent>, StoreError> {
        all(
            &self.reader(),
            &format!("SELECT {EVENT_COLS} FROM key_history WHERE serial = ?1 ORDER BY id"),
            &[&serial],
            event_from,
        )
    }

    fn receipts(&self, serial: &str) -> Result<Vec<Receipt>, StoreError> {
        all(
            &self.reader(),
            &format!("SELECT {RECEIPT_COLS} FROM receipts WHERE serial = ?1 ORDER BY at, rowid"),
            &[&serial],
            receipt_from,
        )
    }

    fn orders(&self, lot: Option<&str>) -> Result<Vec<Order>, StoreError> {
        let conn = self.reader();
        match lot {
            Some(l) => all(
                &conn,
                &format!("SELECT {ORDER_COLS} FROM lot_orders WHERE lot = ?1 ORDER BY id"),
                &[&l],
                order_from,
            ),
            None => all(
                &conn,
                &format!("SELECT {ORDER_COLS} FROM lot_orders ORDER BY id"),
                &[],
                order_from,
            ),
        }
    }
}

fn delegates(conn: &Connection, lot: &str) -> Result<Vec<String>, StoreError> {
    all(
        conn,
        "SELECT person FROM lot_delegates WHERE lot = ?1 ORDER BY person",
        &[&lot],
        |r| Ok(r.get(0)?),
    )
}

impl CustodyTx for SqliteWriter {
    fn set_delegate(&mut self, lot: &str, person: &str, remove: bool) -> Result<(), StoreError> {
        let sql = if remove {
            "DELETE FROM lot_delegates WHERE lot = ?1 AND person = ?2"
        } else {
            "INSERT OR IGNORE INTO lot_delegates (lot, person) VALUES (?1, ?2)"
        };
        self.conn
            .prepare_cached(sql)?
            .execute(params![lot, person])?;
        Ok(())
    }

    fn available_keys(&mut self, lot: &str, limit: u32) -> Result<Vec<String>, StoreError> {
        all(
            &self.conn,
            "SELECT c.serial FROM key_custody c JOIN token_state s ON s.serial = c.serial \
             WHERE c.lot = ?1 AND s.custody IN ('delivered', 'returned') \
             AND s.status <> 'revoked' ORDER BY c.serial LIMIT ?2",
            &[&lot, &i64::from(limit)],
            |r| Ok(r.get(0)?),
        )
    }

    fn insert_lot(&mut self, l: &LotRow) -> Result<(), StoreError> {
        let r = self
            .conn
            .prepare_cached(&format!(
                "INSERT INTO lots ({LOT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?
            .execute(params![
                l.id,
                l.kind.name(),
                l.unit,
                l.name,
                l.validity_days.map(i64::from),
                to_i64(l.created_at, "time")?
            ]);
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Precondition(format!(
                    "a lot with id {} already exists",
                    l.id
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn lot(&mut self, id: &str) -> Result<Option<LotRow>, StoreError> {
        one(
            &self.conn,
            &format!("SELECT {LOT_COLS} FROM lots WHERE id = ?1"),
            &[&id],
            lot_from,
        )
    }

    fn custody(&mut self, serial: &str) -> Result<Option<CustodyRow>, StoreError> {
        one(
            &self.conn,
            &format!("SELECT {CUSTODY_COLS} FROM key_custody WHERE serial = ?1"),
            &[&serial],
            custody_from,
        )
    }

    fn put_custody(&mut self, c: &CustodyRow) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO key_custody ({CUSTODY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (serial) DO UPDATE SET lot = ?2, origin_lot = ?3, return_due = ?4, \
                 reserved_for = ?5, changed_at = ?6"
            ))?
            .execute(params![
                c.serial,
                c.lot,
                c.origin_lot,
                opt_i64(c.return_due, "return due time")?,
                c.reserved_for,
                to_i64(c.changed_at, "time")?
            ])?;
        Ok(())
    }

    fn insert_event(&mut self, e: &KeyEvent) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO key_history ({EVENT_COLS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?
            .execute(params![
                e.serial,
                to_i64(e.at, "time")?,
                e.actor,
                e.action,
                e.state_before,
                e.state_after,
                e.lot_before,
                e.lot_after,
                e.holder_before,
                e.holder_after,
                e.comment
            ])?;
        Ok(())
    }

    fn insert_receipt(&mut self, r: &Receipt) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO receipts ({RECEIPT_COLS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?
            .execute(params![
                r.number,
                r.kind.as_str(),
                r.serial,
                r.lot,
                r.holder,
                r.staff,
                to_i64(r.at, "time")?,
                r.place,
                r.condition,
                opt_i64(r.until, "period end")?,
                opt_i64(r.confirmed_at, "confirmation time")?,
                r.confirmed_how
            ])?;
        Ok(())
    }

    fn receipts(&mut self, serial: &str) -> Result<Vec<Receipt>, StoreError> {
        all(
            &self.conn,
            &format!("SELECT {RECEIPT_COLS} FROM receipts WHERE serial = ?1 ORDER BY at, rowid"),
            &[&serial],
            receipt_from,
        )
    }

    fn receipt(&mut self, number: &str) -> Result<Option<Receipt>, StoreError> {
        one(
            &self.conn,
            &format!("SELECT {RECEIPT_COLS} FROM receipts WHERE number = ?1"),
            &[&number],
            receipt_from,
        )
    }

    fn confirm_receipt(&mut self, number: &str, at: u64, how: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE receipts SET confirmed_at = ?2, confirmed_how = ?3 \
                 WHERE number = ?1 AND confirmed_at IS NULL",
            )?
            .execute(params![number, to_i64(at, "time")?, how])?;
        Ok(n == 1)
    }

    fn confirm_latest_handover(&mut self, serial: &str, at: u64) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE receipts SET confirmed_at = ?2, confirmed_how = 'code' \
                 WHERE number = (SELECT number FROM receipts WHERE serial = ?1 \
                 AND kind = 'handover' ORDER BY at DESC, rowid DESC LIMIT 1) \
                 AND confirmed_at IS NULL",
            )?
            .execute(params![serial, to_i64(at, "time")?])?;
        Ok(n == 1)
    }

    fn insert_order(&mut self, o: &Order) -> Result<u64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO lot_orders (lot, quantity, state, comment, ordered_by, ordered_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                o.lot,
                i64::from(o.quantity),
                o.state.as_str(),
                o.comment,
                o.ordered_by,
                to_i64(o.ordered_at, "time")?
            ])?;
        to_u64(self.conn.last_insert_rowid(), "order id")
    }

    fn order(&mut self, id: u64) -> Result<Option<Order>, StoreError> {
        one(
            &self.conn,
            &format!("SELECT {ORDER_COLS} FROM lot_orders WHERE id = ?1"),
            &[&to_i64(id, "order id")?],
            order_from,
        )
    }

    fn close_order(
        &mut self,
        id: u64,
        state: OrderState,
        by: &str,
        at: u64,
        serials: &[String],
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE lot_orders SET state = ?2, closed_by = ?3, closed_at = ?4, serials = ?5 \
                 WHERE id = ?1 AND state = 'open'",
            )?
            .execute(params![
                to_i64(id, "order id")?,
                state.as_str(),
                by,
                to_i64(at, "time")?,
                serials.join(",")
            ])?;
        Ok(n == 1)
    }

    fn due_keys(&mut self, now: u64, limit: u32) -> Result<Vec<String>, StoreError> {
        let now = to_i64(now, "time")?;
        all(
            &self.conn,
            "SELECT s.serial FROM token_state s JOIN key_custody c ON c.serial = s.serial \
             WHERE s.status <> 'revoked' AND ((s.valid_until IS NOT NULL AND s.valid_until <= ?1 \
                    AND s.custody NOT IN ('expired', 'scrapped', 'recycled')) \
                OR (s.active_until IS NOT NULL AND s.active_until <= ?1 \
                    AND s.custody = 'handed_over' AND c.return_due IS NULL)) \
             ORDER BY s.serial LIMIT ?2",
            &[&now, &i64::from(limit)],
            |r| Ok(r.get(0)?),
        )
    }
}
