//! Lots and custody in PostgreSQL: the [`CustodyRead`] / [`CustodyTx`] statements over the
//! tables of migration 2.

use tokio_postgres::Row;

use super::backend::{PgWriter, Postgres, all, get, one, opt_i64, opt_u64, to_i64, to_u64};
use crate::StoreError;
use crate::custody_db::{CustodyRead, CustodyTx};
use crate::lots::{CustodyRow, KeyEvent, LotKey, LotRow, Order, OrderState, Receipt};

macro_rules! lot_cols {
    () => {
        "id, kind, unit, name, validity_days, created_at"
    };
}
macro_rules! custody_cols {
    () => {
        "serial, lot, origin_lot, return_due, reserved_for, changed_at"
    };
}
macro_rules! event_cols {
    () => {
        "serial, at, actor, action, state_before, state_after, lot_before, lot_after, \
         holder_before, holder_after, comment"
    };
}
macro_rules! receipt_cols {
    () => {
        "number, kind, serial, lot, holder, staff, at, place, condition, until, confirmed_at, \
         confirmed_how"
    };
}
macro_rules! order_cols {
    () => {
        "id, lot, quantity, state, comment, ordered_by, ordered_at, closed_by, closed_at, serials"
    };
}

fn lot_from(r: &Row) -> Result<LotRow, StoreError> {
    Ok(LotRow {
        id: get(r, 0)?,
        kind: get::<String>(r, 1)?
            .parse()
            .map_err(|_| StoreError::Corrupt("bad lot kind".into()))?,
        unit: get(r, 2)?,
        name: get(r, 3)?,
        validity_days: get::<Option<i64>>(r, 4)?
            .map(|d| u32::try_from(d).map_err(|_| StoreError::Corrupt("bad validity".into())))
            .transpose()?,
        created_at: to_u64(get(r, 5)?, "lot creation time")?,
    })
}

fn custody_from(r: &Row) -> Result<CustodyRow, StoreError> {
    Ok(CustodyRow {
        serial: get(r, 0)?,
        lot: get(r, 1)?,
        origin_lot: get(r, 2)?,
        return_due: opt_u64(r, 3, "return due time")?,
        reserved_for: get(r, 4)?,
        changed_at: to_u64(get(r, 5)?, "custody change time")?,
    })
}

fn event_from(r: &Row) -> Result<KeyEvent, StoreError> {
    Ok(KeyEvent {
        serial: get(r, 0)?,
        at: to_u64(get(r, 1)?, "event time")?,
        actor: get(r, 2)?,
        action: get(r, 3)?,
        state_before: get(r, 4)?,
        state_after: get(r, 5)?,
        lot_before: get(r, 6)?,
        lot_after: get(r, 7)?,
        holder_before: get(r, 8)?,
        holder_after: get(r, 9)?,
        comment: get(r, 10)?,
    })
}

fn receipt_from(r: &Row) -> Result<Receipt, StoreError> {
    Ok(Receipt {
        number: get(r, 0)?,
        kind: get::<String>(r, 1)?.parse()?,
        serial: get(r, 2)?,
        lot: get(r, 3)?,
        holder: get(r, 4)?,
        staff: get(r, 5)?,
        at: to_u64(get(r, 6)?, "receipt time")?,
        place: get(r, 7)?,
        condition: get(r, 8)?,
        until: opt_u64(r, 9, "period end")?,
        confirmed_at: opt_u64(r, 10, "confirmation time")?,
        confirmed_how: get(r, 11)?,
    })
}

fn order_from(r: &Row) -> Result<Order, StoreError> {
    let serials: String = get(r, 9)?;
    Ok(Order {
        id: to_u64(get(r, 0)?, "order id")?,
        lot: get(r, 1)?,
        quantity: u32::try_from(get::<i64>(r, 2)?)
            .map_err(|_| StoreError::Corrupt("bad order quantity".into()))?,
        state: get::<String>(r, 3)?.parse()?,
        comment: get(r, 4)?,
        ordered_by: get(r, 5)?,
        ordered_at: to_u64(get(r, 6)?, "order time")?,
        closed_by: get(r, 7)?,
        closed_at: opt_u64(r, 8, "order close time")?,
        serials: serials
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn lot_key_from(r: &Row) -> Result<LotKey, StoreError> {
    Ok(LotKey {
        serial: get(r, 0)?,
        kind: get::<String>(r, 1)?
            .parse()
            .map_err(|_| StoreError::Corrupt("bad kind".into()))?,
        status: get::<String>(r, 2)?
            .parse()
            .map_err(|_| StoreError::Corrupt("bad status".into()))?,
        custody: get::<Option<String>>(r, 3)?
            .map(|c| {
                c.parse()
                    .map_err(|_| StoreError::Corrupt("bad custody state".into()))
            })
            .transpose()?,
        holder: get(r, 4)?,
        lot: get(r, 5)?,
        origin_lot: get(r, 6)?,
        valid_until: opt_u64(r, 7, "validity end")?,
        active_until: opt_u64(r, 8, "deactivation time")?,
        return_due: opt_u64(r, 9, "return due time")?,
        reserved_for: get(r, 10)?,
        changed_at: to_u64(get(r, 11)?, "custody change time")?,
    })
}

fn text(r: &Row) -> Result<String, StoreError> {
    get(r, 0)
}

impl CustodyRead for Postgres {
    fn delegates(&self, lot: &str) -> Result<Vec<String>, StoreError> {
        all(
            &*self.reader()?,
            "SELECT person FROM lot_delegates WHERE lot = $1 ORDER BY person COLLATE \"C\"",
            &[&lot],
            text,
        )
    }

    fn delegated_to(&self, person: &str) -> Result<Vec<String>, StoreError> {
        all(
            &*self.reader()?,
            "SELECT lot FROM lot_delegates WHERE person = $1 ORDER BY lot COLLATE \"C\"",
            &[&person],
            text,
        )
    }

    fn lot(&self, id: &str) -> Result<Option<LotRow>, StoreError> {
        one(
            &*self.reader()?,
            concat!("SELECT ", lot_cols!(), " FROM lots WHERE id = $1"),
            &[&id],
            lot_from,
        )
    }

    fn lots(&self) -> Result<Vec<LotRow>, StoreError> {
        all(
            &*self.reader()?,
            concat!(
                "SELECT ",
                lot_cols!(),
                " FROM lots ORDER BY id COLLATE \"C\""
            ),
            &[],
            lot_from,
        )
    }

    fn lot_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        all(
            &*self.reader()?,
            "SELECT c.lot, s.custody, count(*) FROM key_custody c \
             JOIN token_state s ON s.serial = c.serial GROUP BY c.lot, s.custody",
            &[],
            |r| {
                Ok((
                    get(r, 0)?,
                    get::<Option<String>>(r, 1)?.unwrap_or_default(),
                    to_u64(get(r, 2)?, "count")?,
                ))
            },
        )
    }

    fn lot_keys(&self, lot: &str) -> Result<Vec<LotKey>, StoreError> {
        all(
            &*self.reader()?,
            "SELECT c.serial, t.kind, s.status, s.custody, t.holder, c.lot, c.origin_lot, \
             s.valid_until, s.active_until, c.return_due, c.reserved_for, c.changed_at \
             FROM key_custody c JOIN tokens t ON t.serial = c.serial \
             JOIN token_state s ON s.serial = c.serial \
             WHERE c.lot = $1 ORDER BY c.serial COLLATE \"C\"",
            &[&lot],
            lot_key_from,
        )
    }

    fn custody(&self, serial: &str) -> Result<Option<CustodyRow>, StoreError> {
        one(
            &*self.reader()?,
            concat!(
                "SELECT ",
                custody_cols!(),
                " FROM key_custody WHERE serial = $1"
            ),
            &[&serial],
            custody_from,
        )
    }

    fn history(&self, serial: &str) -> Result<Vec<KeyEvent>, StoreError> {
        all(
            &*self.reader()?,
            concat!(
                "SELECT ",
                event_cols!(),
                " FROM key_history WHERE serial = $1 ORDER BY id"
            ),
            &[&serial],
            event_from,
        )
    }

    fn receipts(&self, serial: &str) -> Result<Vec<Receipt>, StoreError> {
        all(
            &*self.reader()?,
            concat!(
                "SELECT ",
                receipt_cols!(),
                " FROM receipts WHERE serial = $1 ORDER BY at, number COLLATE \"C\""
            ),
            &[&serial],
            receipt_from,
        )
    }

    fn orders(&self, lot: Option<&str>) -> Result<Vec<Order>, StoreError> {
        all(
            &*self.reader()?,
            concat!(
                "SELECT ",
                order_cols!(),
                " FROM lot_orders WHERE ($1::text IS NULL OR lot = $1) ORDER BY id"
            ),
            &[&lot],
            order_from,
        )
    }
}

impl CustodyTx for PgWriter {
    fn set_delegate(&mut self, lot: &str, person: &str, remove: bool) -> Result<(), StoreError> {
        let sql = if remove {
            "DELETE FROM lot_delegates WHERE lot = $1 AND person = $2"
        } else {
            "INSERT INTO lot_delegates (lot, person) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        };
        self.conn.execute(sql, &[&lot, &person])?;
        Ok(())
    }

    fn available_keys(&mut self, lot: &str, limit: u32) -> Result<Vec<String>, StoreError> {
        all(
            &self.conn,
            "SELECT c.serial FROM key_custody c JOIN token_state s ON s.serial = c.serial \
             WHERE c.lot = $1 AND s.custody IN ('delivered', 'returned') \
             AND s.status <> 'revoked' ORDER BY c.serial COLLATE \"C\" LIMIT $2",
            &[&lot, &i64::from(limit)],
            text,
        )
    }

    fn insert_lot(&mut self, l: &LotRow) -> Result<(), StoreError> {
        let n = self.conn.execute(
            concat!(
                "INSERT INTO lots (",
                lot_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING"
            ),
            &[
                &l.id,
                &l.kind.name(),
                &l.unit,
                &l.name,
                &l.validity_days.map(i64::from),
                &to_i64(l.created_at, "time")?,
            ],
        )?;
        if n != 1 {
            return Err(StoreError::Precondition(format!(
                "a lot with id {} already exists",
                l.id
            )));
        }
        Ok(())
    }

    fn lot(&mut self, id: &str) -> Result<Option<LotRow>, StoreError> {
        one(
            &self.conn,
            concat!("SELECT ", lot_cols!(), " FROM lots WHERE id = $1"),
            &[&id],
            lot_from,
        )
    }

    fn custody(&mut self, serial: &str) -> Result<Option<CustodyRow>, StoreError> {
        one(
            &self.conn,
            concat!(
                "SELECT ",
                custody_cols!(),
                " FROM key_custody WHERE serial = $1"
            ),
            &[&serial],
            custody_from,
        )
    }

    fn put_custody(&mut self, c: &CustodyRow) -> Result<(), StoreError> {
        self.conn.execute(
            concat!(
                "INSERT INTO key_custody (",
                custody_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (serial) DO UPDATE SET lot = EXCLUDED.lot, \
                 origin_lot = EXCLUDED.origin_lot, return_due = EXCLUDED.return_due, \
                 reserved_for = EXCLUDED.reserved_for, changed_at = EXCLUDED.changed_at"
            ),
            &[
                &c.serial,
                &c.lot,
                &c.origin_lot,
                &opt_i64(c.return_due, "return due time")?,
                &c.reserved_for,
                &to_i64(c.changed_at, "time")?,
            ],
        )?;
        Ok(())
    }

    fn insert_event(&mut self, e: &KeyEvent) -> Result<(), StoreError> {
        self.conn.execute(
            concat!(
                "INSERT INTO key_history (",
                event_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            &[
                &e.serial,
                &to_i64(e.at, "time")?,
                &e.actor,
                &e.action,
                &e.state_before,
                &e.state_after,
                &e.lot_before,
                &e.lot_after,
                &e.holder_before,
                &e.holder_after,
                &e.comment,
            ],
        )?;
        Ok(())
    }

    fn insert_receipt(&mut self, r: &Receipt) -> Result<(), StoreError> {
        self.conn.execute(
            concat!(
                "INSERT INTO receipts (",
                receipt_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ),
            &[
                &r.number,
                &r.kind.as_str(),
                &r.serial,
                &r.lot,
                &r.holder,
                &r.staff,
                &to_i64(r.at, "time")?,
                &r.place,
                &r.condition,
                &opt_i64(r.until, "period end")?,
                &opt_i64(r.confirmed_at, "confirmation time")?,
                &r.confirmed_how,
            ],
        )?;
        Ok(())
    }

    fn receipts(&mut self, serial: &str) -> Result<Vec<Receipt>, StoreError> {
        all(
            &self.conn,
            concat!(
                "SELECT ",
                receipt_cols!(),
                " FROM receipts WHERE serial = $1 ORDER BY at, number COLLATE \"C\""
            ),
            &[&serial],
            receipt_from,
        )
    }

    fn receipt(&mut self, number: &str) -> Result<Option<Receipt>, StoreError> {
        one(
            &self.conn,
            concat!(
                "SELECT ",
                receipt_cols!(),
                " FROM receipts WHERE number = $1"
            ),
            &[&number],
            receipt_from,
        )
    }

    fn confirm_receipt(&mut self, number: &str, at: u64, how: &str) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE receipts SET confirmed_at = $2, confirmed_how = $3 \
             WHERE number = $1 AND confirmed_at IS NULL",
            &[&number, &to_i64(at, "time")?, &how],
        )? == 1)
    }

    fn confirm_latest_handover(&mut self, serial: &str, at: u64) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE receipts SET confirmed_at = $2, confirmed_how = 'code' \
             WHERE number = (SELECT number FROM receipts WHERE serial = $1 \
             AND kind = 'handover' ORDER BY at DESC, number DESC LIMIT 1) \
             AND confirmed_at IS NULL",
            &[&serial, &to_i64(at, "time")?],
        )? == 1)
    }

    fn insert_order(&mut self, o: &Order) -> Result<u64, StoreError> {
        let r = self.conn.query_one(
            "INSERT INTO lot_orders (lot, quantity, state, comment, ordered_by, ordered_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &o.lot,
                &i64::from(o.quantity),
                &o.state.as_str(),
                &o.comment,
                &o.ordered_by,
                &to_i64(o.ordered_at, "time")?,
            ],
        )?;
        to_u64(get(&r, 0)?, "order id")
    }

    fn order(&mut self, id: u64) -> Result<Option<Order>, StoreError> {
        one(
            &self.conn,
            concat!("SELECT ", order_cols!(), " FROM lot_orders WHERE id = $1"),
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
        Ok(self.conn.execute(
            "UPDATE lot_orders SET state = $2, closed_by = $3, closed_at = $4, serials = $5 \
             WHERE id = $1 AND state = 'open'",
            &[
                &to_i64(id, "order id")?,
                &state.as_str(),
                &by,
                &to_i64(at, "time")?,
                &serials.join(","),
            ],
        )? == 1)
    }

    fn due_keys(&mut self, now: u64, limit: u32) -> Result<Vec<String>, StoreError> {
        all(
            &self.conn,
            "SELECT s.serial FROM token_state s JOIN key_custody c ON c.serial = s.serial \
             WHERE s.status <> 'revoked' AND ((s.valid_until IS NOT NULL AND s.valid_until <= $1 \
                    AND s.custody NOT IN ('expired', 'scrapped', 'recycled')) \
                OR (s.active_until IS NOT NULL AND s.active_until <= $1 \
                    AND s.custody = 'handed_over' AND c.return_due IS NULL)) \
             ORDER BY s.serial COLLATE \"C\" LIMIT $2",
            &[&to_i64(now, "time")?, &i64::from(limit)],
            text,
        )
    }
}
