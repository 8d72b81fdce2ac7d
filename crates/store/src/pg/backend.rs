//! The PostgreSQL backend: [`Backend`] over a few shared connections, [`WriteTx`] over the
//! writer's own connection. Several okey nodes may open one database at once; see
//! [`Postgres`] for what makes that safe.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

use super::conn::{Conn, Driver, Target, parse_target, wait};
use crate::StoreError;
use crate::backend::{
    Backend, Cell, DataKeyRow, ExportItem, TableRow, TokenRow, TokenState, WriteTx,
};
use crate::outbox::{MailRow, MailState, NewMail, OutboxStats};
use crate::types::{Algorithm, ApiPrincipal, AuditEntry, AuditRecord, OtpKind, TokenFilter};

/// Advisory lock taken by every write transaction before its first statement: the audit chain
/// is one chain across nodes, so appends (and with them the transactions that make them) take
/// turns. Taking it first, always, also means two nodes never wait on each other's row locks
/// in opposite orders (no deadlock between nodes). "okeychain" in ASCII, cut to 63 bits.
const CHAIN_LOCK: i64 = 0x6f6b_6579_6368;

/// Read connections shared by every thread.
const READERS: usize = 4;

/// Rows fetched per round trip by the long walks (audit scan, export).
const PAGE: i64 = 1000;

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(crate) fn get<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, StoreError> {
    Ok(r.try_get(i)?)
}

pub(crate) fn to_i64(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::invalid(what, "must be below 2^63"))
}

pub(crate) fn opt_i64(v: Option<u64>, what: &'static str) -> Result<Option<i64>, StoreError> {
    v.map(|v| to_i64(v, what)).transpose()
}

pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what} in the database")))
}

pub(crate) fn opt_u64(r: &Row, i: usize, what: &str) -> Result<Option<u64>, StoreError> {
    get::<Option<i64>>(r, i)?
        .map(|v| to_u64(v, what))
        .transpose()
}

macro_rules! token_cols {
    () => {
        "serial, kind, otp, step, t0, suite, algorithm, digits, key_version, sealed_seed, \
         sealed_pin_hash, counter, last_step, drift, failures, locked, locked_until, status, \
         holder, description, pin_verifier, created_at, updated_at, version, custody, \
         valid_until, active_until, handover_unconfirmed, pin_scheme"
    };
}

macro_rules! audit_cols {
    () => {
        "seq, at, actor, action, subject, serial, result, reason, prev, mac"
    };
}

macro_rules! mail_cols {
    () => {
        "id, message_id, template, recipients, subject, body, state, attempts, created_at, \
         next_attempt_at, last_error, sent_at, cc"
    };
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Every carried table's rows (`crate::backend::TYPED_TABLES`), in the order a restore inserts
/// them, inside the export's snapshot.
fn export_rows(
    conn: &Conn,
    sink: &mut dyn FnMut(ExportItem) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    use tokio_postgres::types::Type;
    let tables: Vec<String> = conn
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            &[],
        )?
        .iter()
        .map(|r| get(r, 0))
        .collect::<Result<_, _>>()?;
    for table in crate::backend::carried_in_order(tables) {
        let columns: Arc<[String]> = conn
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 ORDER BY ordinal_position",
                &[&table],
            )?
            .iter()
            .map(|r| get(r, 0))
            .collect::<Result<Vec<String>, _>>()?
            .into();
        for c in columns.iter() {
            crate::backend::check_carried_column(&table, c)?;
        }
        let list = columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = wait(conn.client.query(
            &format!("SELECT {list} FROM {} ORDER BY 1", quote(&table)),
            &[],
        ))?;
        for r in &rows {
            let mut cells = Vec::with_capacity(columns.len());
            for (i, col) in r.columns().iter().enumerate() {
                let cell = match *col.type_() {
                    Type::INT8 => get::<Option<i64>>(r, i)?.map(Cell::Int),
                    Type::INT4 => get::<Option<i32>>(r, i)?.map(|n| Cell::Int(i64::from(n))),
                    Type::BOOL => get::<Option<bool>>(r, i)?.map(|b| Cell::Int(i64::from(b))),
                    Type::TEXT => get::<Option<String>>(r, i)?.map(Cell::Text),
                    Type::BYTEA => get::<Option<Vec<u8>>>(r, i)?.map(Cell::Blob),
                    ref other => {
                        return Err(StoreError::Corrupt(format!(
                            "table {table} has column {} of type {other}, which a backup \
                             does not carry",
                            col.name()
                        )));
                    }
                };
                cells.push(cell.unwrap_or(Cell::Null));
            }
            sink(ExportItem::Row(TableRow {
                table: table.clone(),
                columns: columns.clone(),
                cells,
            }))?;
        }
    }
    Ok(())
}

fn token_from(r: &Row) -> Result<TokenRow, StoreError> {
    let otp_name: String = get(r, 2)?;
    let otp = match otp_name.as_str() {
        "hotp" => OtpKind::Hotp,
        "totp" => OtpKind::Totp {
            step: u32::try_from(get::<i64>(r, 3)?)
                .map_err(|_| StoreError::Corrupt("bad TOTP step".into()))?,
            t0: to_u64(get(r, 4)?, "t0")?,
        },
        "ocra" => OtpKind::Ocra { suite: get(r, 5)? },
        other => return Err(StoreError::Corrupt(format!("unknown OTP kind {other:?}"))),
    };
    let algorithm: Algorithm = get::<String>(r, 6)?
        .parse()
        .map_err(|_| StoreError::Corrupt("unknown algorithm".into()))?;
    let pin_verifier = match get::<Option<Vec<u8>>>(r, 20)? {
        None => None,
        Some(v) => Some(
            <[u8; 32]>::try_from(v.as_slice())
                .map_err(|_| StoreError::Corrupt("bad PIN verifier length".into()))?,
        ),
    };
    Ok(TokenRow {
        serial: get(r, 0)?,
        kind: get::<String>(r, 1)?
            .parse()
            .map_err(|_| StoreError::Corrupt("bad kind".into()))?,
        otp,
        algorithm,
        digits: u8::try_from(get::<i64>(r, 7)?)
            .map_err(|_| StoreError::Corrupt("bad digits".into()))?,
        key_version: u32::try_from(get::<i64>(r, 8)?)
            .map_err(|_| StoreError::Corrupt("bad key version".into()))?,
        sealed_seed: get(r, 9)?,
        sealed_pin_hash: get(r, 10)?,
        counter: to_u64(get(r, 11)?, "counter")?,
        last_step: opt_u64(r, 12, "last step")?,
        drift: get(r, 13)?,
        failures: u32::try_from(get::<i64>(r, 14)?)
            .map_err(|_| StoreError::Corrupt("bad failure count".into()))?,
        locked: get::<i64>(r, 15)? != 0,
        locked_until: opt_u64(r, 16, "lock time")?,
        status: get::<String>(r, 17)?
            .parse()
            .map_err(|_| StoreError::Corrupt("bad status".into()))?,
        holder: get(r, 18)?,
        description: get(r, 19)?,
        pin_verifier,
        created_at: to_u64(get(r, 21)?, "creation time")?,
        updated_at: to_u64(get(r, 22)?, "update time")?,
        version: to_u64(get(r, 23)?, "version")?,
        custody: get::<Option<String>>(r, 24)?
            .map(|c| {
                c.parse()
                    .map_err(|_| StoreError::Corrupt("bad custody state".into()))
            })
            .transpose()?,
        valid_until: opt_u64(r, 25, "validity end")?,
        active_until: opt_u64(r, 26, "deactivation time")?,
        handover_unconfirmed: get::<i64>(r, 27)? != 0,
        pin_scheme: crate::backend::pin_scheme(get::<i64>(r, 28)?)?,
    })
}

fn tokens_from(rows: Vec<Row>) -> Result<Vec<TokenRow>, StoreError> {
    rows.iter().map(token_from).collect()
}

fn mac(r: &Row, i: usize) -> Result<[u8; 32], StoreError> {
    let v: Vec<u8> = get(r, i)?;
    <[u8; 32]>::try_from(v.as_slice())
        .map_err(|_| StoreError::Corrupt("bad audit MAC length".into()))
}

fn audit_from(r: &Row) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: to_u64(get(r, 0)?, "audit sequence")?,
        entry: AuditEntry {
            at: to_u64(get(r, 1)?, "audit time")?,
            actor: get(r, 2)?,
            action: get(r, 3)?,
            subject: get(r, 4)?,
            serial: get(r, 5)?,
            result: get(r, 6)?,
            reason: get(r, 7)?,
        },
        prev: mac(r, 8)?,
        mac: mac(r, 9)?,
    })
}

fn principal_from(r: &Row) -> Result<ApiPrincipal, StoreError> {
    let roles: String = get(r, 1)?;
    Ok(ApiPrincipal {
        name: get(r, 0)?,
        roles: roles
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        disabled: get::<i64>(r, 2)? != 0,
    })
}

fn key_hash(r: &Row, i: usize) -> Result<[u8; 32], StoreError> {
    let h: Vec<u8> = get(r, i)?;
    <[u8; 32]>::try_from(h.as_slice()).map_err(|_| StoreError::Corrupt("bad API key hash".into()))
}

fn data_key_from(r: &Row) -> Result<DataKeyRow, StoreError> {
    Ok(DataKeyRow {
        version: u32::try_from(get::<i64>(r, 0)?)
            .map_err(|_| StoreError::Corrupt("bad data key version".into()))?,
        wrapped: get(r, 1)?,
        active: get::<i64>(r, 2)? != 0,
    })
}

fn secret_from(r: &Row) -> Result<(String, u32, Vec<u8>), StoreError> {
    let v = u32::try_from(get::<i64>(r, 1)?)
        .map_err(|_| StoreError::Corrupt("bad key version".into()))?;
    Ok((get(r, 0)?, v, get(r, 2)?))
}

fn mail_from(r: &Row) -> Result<MailRow, StoreError> {
    let recipients: String = get(r, 3)?;
    let state: String = get(r, 6)?;
    Ok(MailRow {
        id: to_u64(get(r, 0)?, "mail id")?,
        mail: NewMail {
            message_id: get(r, 1)?,
            template: get(r, 2)?,
            to: recipients.split('\n').map(str::to_owned).collect(),
            cc: crate::support_db::lines(&get::<String>(r, 12)?),
            subject: get(r, 4)?,
            body: get(r, 5)?,
        },
        state: MailState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown mail state {state:?}")))?,
        attempts: u32::try_from(get::<i64>(r, 7)?)
            .map_err(|_| StoreError::Corrupt("bad attempt count".into()))?,
        created_at: to_u64(get(r, 8)?, "time")?,
        next_attempt_at: to_u64(get(r, 9)?, "time")?,
        last_error: get(r, 10)?,
        sent_at: opt_u64(r, 11, "time")?,
    })
}

fn mails_from(rows: Vec<Row>) -> Result<Vec<MailRow>, StoreError> {
    rows.iter().map(mail_from).collect()
}

/// The PostgreSQL backend.
///
/// Several okey nodes on one database stay correct because every promise of
/// [`crate::backend`] is kept by the database, not by a node's memory:
/// * a state change is `UPDATE ... WHERE serial = $1 AND version = $2` (and counters not going
///   back); under READ COMMITTED the condition is re-checked on the newest row version once the
///   row lock is had, so of two nodes committing from one version exactly one changes the row;
/// * every write transaction takes the chain's advisory lock first and reads the chain head
///   from the table, never from memory, so appends from several nodes form one chain;
/// * the writer's session runs with `synchronous_commit = on`: `COMMIT` returns once the WAL is
///   flushed (and, with synchronous replicas configured, acknowledged by them).
pub struct Postgres {
    driver: Arc<Driver>,
    target: Target,
    readers: Vec<RwLock<Arc<Conn>>>,
    next: AtomicUsize,
}

impl Postgres {
    /// Connect to the database named by `url` (a `postgres://` URL or `key=value` pairs; see
    /// [`crate::pg`] for `sslmode`), bring its schema up to date and open the read pool.
    pub fn open(url: &str) -> Result<Postgres, StoreError> {
        let target = parse_target(url)?;
        let driver = Driver::start()?;
        let first = driver.connect(&target)?;
        wait(migrate_async(&first.client))?;
        let mut readers = vec![RwLock::new(Arc::new(first))];
        for _ in 1..READERS {
            readers.push(RwLock::new(Arc::new(driver.connect(&target)?)));
        }
        Ok(Postgres {
            driver,
            target,
            readers,
            next: AtomicUsize::new(0),
        })
    }

    /// A read connection: the next open one in turn. When the database went away (a restart,
    /// a failover), closed connections are opened again here, so reads recover by themselves
    /// once it is back; while it is not, the caller gets the connection error.
    pub(crate) fn reader(&self) -> Result<Arc<Conn>, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..READERS {
            if let Some(slot) = self.readers.get((start + i) % READERS) {
                let c = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
                if !c.is_closed() {
                    return Ok(c);
                }
            }
        }
        let slot = &self.readers[start % READERS];
        let mut c = slot.write().unwrap_or_else(|p| p.into_inner());
        if c.is_closed() {
            tracing::warn!("the PostgreSQL read connections were closed; reconnecting");
            *c = Arc::new(self.driver.connect(&self.target)?);
        }
        Ok(c.clone())
    }
}

pub(crate) async fn migrate_async(client: &tokio_postgres::Client) -> Result<(), StoreError> {
    // `pg::migrate` takes the synchronous client; the same steps on the async one.
    client.batch_execute("BEGIN").await?;
    let r = async {
        client
            .execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&super::MIGRATION_LOCK],
            )
            .await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS okey_schema (
                    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
                    version BIGINT NOT NULL
                );
                INSERT INTO okey_schema (one, version) VALUES (TRUE, 0)
                    ON CONFLICT (one) DO NOTHING;",
            )
            .await?;
        let found: i64 = client
            .query_one("SELECT version FROM okey_schema", &[])
            .await?
            .try_get(0)?;
        if found > super::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: super::SCHEMA_VERSION,
            });
        }
        for (version, sql) in super::MIGRATIONS {
            if *version > found {
                client.batch_execute(sql).await?;
                client
                    .execute("UPDATE okey_schema SET version = $1", &[version])
                    .await?;
            }
        }
        Ok(())
    }
    .await;
    match r {
        Ok(()) => Ok(client.batch_execute("COMMIT").await?),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

impl Backend for Postgres {
    fn write_session(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        let conn = self.driver.connect(&self.target)?;
        conn.batch("SET synchronous_commit = on")?;
        Ok(Box::new(PgWriter {
            conn,
            driver: self.driver.clone(),
            target: self.target.clone(),
            head: None,
            saved_head: None,
        }))
    }

    fn token(&self, serial: &str) -> Result<Option<TokenRow>, StoreError> {
        self.reader()?
            .query_opt(
                concat!(
                    "SELECT ",
                    token_cols!(),
                    " FROM token_rows WHERE serial = $1"
                ),
                &[&serial],
            )?
            .as_ref()
            .map(token_from)
            .transpose()
    }

    fn tokens_of(&self, holder: &str) -> Result<Vec<TokenRow>, StoreError> {
        tokens_from(self.reader()?.query(
            concat!(
                "SELECT ",
                token_cols!(),
                " FROM token_rows WHERE holder = $1 ORDER BY serial COLLATE \"C\""
            ),
            &[&holder],
        )?)
    }

    fn list(
        &self,
        filter: &TokenFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let status = filter.status.map(|s| s.as_str());
        let kind = filter.kind.map(|k| k.as_str());
        tokens_from(self.reader()?.query(
            concat!(
                "SELECT ",
                token_cols!(),
                " FROM token_rows WHERE ($1::text IS NULL OR status = $1) \
                 AND ($2::text IS NULL OR holder = $2) AND ($3::text IS NULL OR kind = $3) \
                 AND ($4::text IS NULL OR starts_with(serial, $4)) \
                 AND ($5::text IS NULL OR serial COLLATE \"C\" > $5) \
                 ORDER BY serial COLLATE \"C\" LIMIT $6"
            ),
            &[
                &status,
                &filter.holder,
                &kind,
                &filter.serial_prefix,
                &after,
                &i64::from(limit),
            ],
        )?)
    }

    fn token_count(&self) -> Result<u64, StoreError> {
        let r = self
            .reader()?
            .query_one("SELECT count(*) FROM tokens", &[])?;
        to_u64(get(&r, 0)?, "count")
    }

    fn data_keys(&self) -> Result<Vec<DataKeyRow>, StoreError> {
        self.reader()?
            .query(
                "SELECT version, wrapped, active FROM data_keys ORDER BY version",
                &[],
            )?
            .iter()
            .map(data_key_from)
            .collect()
    }

    fn secret(&self, name: &str) -> Result<Option<(u32, Vec<u8>)>, StoreError> {
        self.reader()?
            .query_opt(
                "SELECT name, key_version, sealed FROM secrets WHERE name = $1",
                &[&name],
            )?
            .as_ref()
            .map(|r| secret_from(r).map(|(_, v, s)| (v, s)))
            .transpose()
    }

    fn audit_scan(
        &self,
        from_seq: u64,
        f: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError> {
        let mut from = to_i64(from_seq, "sequence")?;
        loop {
            let rows = self.reader()?.query(
                concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2"
                ),
                &[&from, &PAGE],
            )?;
            let n = rows.len();
            for r in &rows {
                let rec = audit_from(r)?;
                from = to_i64(rec.seq, "sequence")? + 1;
                if !f(rec) {
                    return Ok(());
                }
            }
            if (n as i64) < PAGE {
                return Ok(());
            }
        }
    }

    fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.reader()?
            .query(
                concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit ORDER BY seq DESC LIMIT $1"
                ),
                &[&i64::from(limit)],
            )?
            .iter()
            .map(audit_from)
            .collect()
    }

    fn api_key(&self, key_hash: &[u8; 32]) -> Result<Option<ApiPrincipal>, StoreError> {
        self.reader()?
            .query_opt(
                "SELECT name, roles, disabled FROM api_keys WHERE key_hash = $1",
                &[&&key_hash[..]],
            )?
            .as_ref()
            .map(principal_from)
            .transpose()
    }

    fn api_keys(&self) -> Result<Vec<(ApiPrincipal, [u8; 32])>, StoreError> {
        self.reader()?
            .query(
                "SELECT name, roles, disabled, key_hash FROM api_keys ORDER BY name COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|r| Ok((principal_from(r)?, key_hash(r, 3)?)))
            .collect()
    }

    fn export(
        &self,
        sink: &mut dyn FnMut(ExportItem) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // A connection of its own, in one REPEATABLE READ transaction: one snapshot of
        // everything while the writers of every node go on.
        let conn = self.driver.connect(&self.target)?;
        conn.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        for r in conn.query(
            "SELECT name, key_version, sealed FROM secrets ORDER BY name COLLATE \"C\"",
            &[],
        )? {
            let (n, v, s) = secret_from(&r)?;
            sink(ExportItem::Secret(n, v, s))?;
        }
        let mut after = String::new();
        loop {
            let rows = conn.query(
                concat!(
                    "SELECT ",
                    token_cols!(),
                    " FROM token_rows WHERE serial COLLATE \"C\" > $1 \
                     ORDER BY serial COLLATE \"C\" LIMIT $2"
                ),
                &[&after, &PAGE],
            )?;
            let n = rows.len();
            for r in &rows {
                let t = token_from(r)?;
                after.clone_from(&t.serial);
                sink(ExportItem::Token(Box::new(t)))?;
            }
            if (n as i64) < PAGE {
                break;
            }
        }
        let mut from = 0i64;
        loop {
            let rows = conn.query(
                concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2"
                ),
                &[&from, &PAGE],
            )?;
            let n = rows.len();
            for r in &rows {
                let rec = audit_from(r)?;
                from = to_i64(rec.seq, "sequence")? + 1;
                sink(ExportItem::Audit(rec))?;
            }
            if (n as i64) < PAGE {
                break;
            }
        }
        super::requests::export_attachments(&conn, sink)?;
        export_rows(&conn, sink)?;
        conn.batch("COMMIT")?;
        Ok(())
    }

    fn integrity_check(&self) -> Result<String, StoreError> {
        // PostgreSQL checks its pages itself (checksums, WAL); what okey can check is that the
        // rows agree with each other.
        let c = self.reader()?;
        let mut problems = Vec::new();
        let orphans: i64 = get(
            &c.query_one(
                "SELECT count(*) FROM tokens t FULL JOIN token_state s ON s.serial = t.serial \
                 WHERE t.serial IS NULL OR s.serial IS NULL",
                &[],
            )?,
            0,
        )?;
        if orphans != 0 {
            problems.push(format!(
                "{orphans} tokens lack their state row or the reverse"
            ));
        }
        let r = c.query_one(
            "SELECT count(*), coalesce(min(seq), 1), coalesce(max(seq), 0) FROM audit",
            &[],
        )?;
        let (n, lo, hi): (i64, i64, i64) = (get(&r, 0)?, get(&r, 1)?, get(&r, 2)?);
        if n != 0 && hi - lo + 1 != n {
            problems.push(format!(
                "the audit chain has gaps: {n} records between {lo} and {hi}"
            ));
        }
        let active: i64 = get(
            &c.query_one("SELECT count(*) FROM data_keys WHERE active = 1", &[])?,
            0,
        )?;
        let keys: i64 = get(&c.query_one("SELECT count(*) FROM data_keys", &[])?, 0)?;
        if keys > 0 && active != 1 {
            problems.push(format!("{active} data keys are marked active"));
        }
        if problems.is_empty() {
            Ok("ok".into())
        } else {
            Ok(problems.join("\n"))
        }
    }

    fn custody(&self) -> &dyn crate::custody_db::CustodyRead {
        self
    }

    fn mail_due(&self, now: u64, limit: u32) -> Result<Vec<MailRow>, StoreError> {
        mails_from(self.reader()?.query(
            concat!(
                "SELECT ",
                mail_cols!(),
                " FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1 \
                 ORDER BY next_attempt_at, id LIMIT $2"
            ),
            &[&to_i64(now, "time")?, &i64::from(limit)],
        )?)
    }

    fn mail_next_due(&self) -> Result<Option<u64>, StoreError> {
        let r = self.reader()?.query_one(
            "SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending'",
            &[],
        )?;
        opt_u64(&r, 0, "next attempt")
    }

    fn mail_list(&self, states: &[MailState], limit: u32) -> Result<Vec<MailRow>, StoreError> {
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        mails_from(self.reader()?.query(
            concat!(
                "SELECT ",
                mail_cols!(),
                " FROM outbox WHERE state = ANY($1) ORDER BY id LIMIT $2"
            ),
            &[&names, &i64::from(limit)],
        )?)
    }

    fn mail_stats(&self) -> Result<OutboxStats, StoreError> {
        let mut stats = OutboxStats::default();
        for r in self.reader()?.query(
            "SELECT state, count(*), min(created_at) FROM outbox GROUP BY state",
            &[],
        )? {
            let state: String = get(&r, 0)?;
            let n = to_u64(get(&r, 1)?, "count")?;
            match MailState::parse(&state) {
                Some(MailState::Pending) => {
                    stats.pending = n;
                    stats.oldest_pending_at = opt_u64(&r, 2, "time")?;
                }
                Some(MailState::Sent) => stats.sent = n,
                Some(MailState::Failed) => stats.failed = n,
                None => return Err(StoreError::Corrupt(format!("unknown mail state {state:?}"))),
            }
        }
        Ok(stats)
    }

    fn directory(&self) -> &dyn crate::directory_db::DirectoryRead {
        self
    }

    fn support(&self) -> &dyn crate::support_db::SupportRead {
        self
    }
}

/// The audit chain head as this transaction last wrote or read it: `None` when unknown.
type Head = Option<Option<(u64, [u8; 32])>>;

/// The writer's session.
pub(crate) struct PgWriter {
    pub(crate) conn: Conn,
    driver: Arc<Driver>,
    target: Target,
    /// The chain head within the current transaction only: another node may append between
    /// two transactions, so each transaction reads it afresh under the chain lock.
    head: Head,
    saved_head: Head,
}

impl WriteTx for PgWriter {
    fn begin(&mut self) -> Result<(), StoreError> {
        if self.conn.is_closed() {
            // The database restarted or the network dropped: a new session, the same settings.
            tracing::warn!("the PostgreSQL write connection was closed; reconnecting");
            self.conn = self.driver.connect(&self.target)?;
            self.conn.batch("SET synchronous_commit = on")?;
        }
        self.head = None;
        self.saved_head = None;
        self.conn.batch("BEGIN")?;
        self.conn
            .execute("SELECT pg_advisory_xact_lock($1)", &[&CHAIN_LOCK])?;
        Ok(())
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        self.head = None;
        self.conn.batch("COMMIT")
    }
    fn rollback(&mut self) -> Result<(), StoreError> {
        self.head = None;
        self.conn.batch("ROLLBACK")
    }
    fn savepoint(&mut self) -> Result<(), StoreError> {
        self.saved_head = self.head;
        self.conn.batch("SAVEPOINT request")
    }
    fn release(&mut self) -> Result<(), StoreError> {
        self.conn.batch("RELEASE request")
    }
    fn rollback_savepoint(&mut self) -> Result<(), StoreError> {
        self.head = self.saved_head;
        let r = self.conn.batch("ROLLBACK TO request; RELEASE request");
        if r.is_err() {
            self.head = None;
        }
        r
    }

    fn token(&mut self, serial: &str) -> Result<Option<TokenRow>, StoreError> {
        self.conn
            .query_opt(
                concat!(
                    "SELECT ",
                    token_cols!(),
                    " FROM token_rows WHERE serial = $1"
                ),
                &[&serial],
            )?
            .as_ref()
            .map(token_from)
            .transpose()
    }

    fn insert_token(&mut self, t: &TokenRow) -> Result<(), StoreError> {
        let (step, t0, suite) = match &t.otp {
            OtpKind::Hotp => (None, None, None),
            OtpKind::Totp { step, t0 } => (Some(i64::from(*step)), Some(to_i64(*t0, "t0")?), None),
            OtpKind::Ocra { suite } => (None, None, Some(suite.as_str())),
        };
        let pin = t.pin_verifier.as_ref().map(|v| &v[..]);
        // ON CONFLICT DO NOTHING rather than a unique violation: an error would abort the
        // whole PostgreSQL transaction, not just this statement.
        let n = self.conn.execute(
            "INSERT INTO tokens (serial, kind, otp, step, t0, suite, algorithm, digits, \
             key_version, sealed_seed, sealed_pin_hash, holder, description, pin_verifier, \
             created_at, pin_scheme) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (serial) DO NOTHING",
            &[
                &t.serial,
                &t.kind.as_str(),
                &t.otp.as_str(),
                &step,
                &t0,
                &suite,
                &t.algorithm.name(),
                &i64::from(t.digits),
                &i64::from(t.key_version),
                &t.sealed_seed,
                &t.sealed_pin_hash,
                &t.holder,
                &t.description,
                &pin,
                &to_i64(t.created_at, "creation time")?,
                &i64::from(t.pin_scheme),
            ],
        )?;
        if n != 1 {
            return Err(StoreError::DuplicateSerial(t.serial.clone()));
        }
        let n = self.conn.execute(
            "INSERT INTO token_state (serial, counter, last_step, drift, failures, locked, \
             locked_until, status, updated_at, version, custody, valid_until, active_until, \
             handover_unconfirmed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (serial) DO NOTHING",
            &[
                &t.serial,
                &to_i64(t.counter, "counter")?,
                &opt_i64(t.last_step, "last step")?,
                &t.drift,
                &i64::from(t.failures),
                &i64::from(t.locked),
                &opt_i64(t.locked_until, "lock time")?,
                &t.status.as_str(),
                &to_i64(t.updated_at, "update time")?,
                &to_i64(t.version, "version")?,
                &t.custody.map(|c| c.as_str()),
                &opt_i64(t.valid_until, "validity end")?,
                &opt_i64(t.active_until, "deactivation time")?,
                &i64::from(t.handover_unconfirmed),
            ],
        )?;
        if n != 1 {
            return Err(StoreError::DuplicateSerial(t.serial.clone()));
        }
        Ok(())
    }

    fn update_token(&mut self, expect_version: u64, t: &TokenRow) -> Result<bool, StoreError> {
        // The compare-and-set first: if it loses, nothing has been written.
        if !self.update_state(&t.serial, expect_version, &t.state())? {
            return Ok(false);
        }
        let pin = t.pin_verifier.as_ref().map(|v| &v[..]);
        let n = self.conn.execute(
            "UPDATE tokens SET holder = $2, description = $3, pin_verifier = $4, \
             sealed_pin_hash = $5, pin_scheme = $6 WHERE serial = $1",
            &[
                &t.serial,
                &t.holder,
                &t.description,
                &pin,
                &t.sealed_pin_hash,
                &i64::from(t.pin_scheme),
            ],
        )?;
        if n != 1 {
            return Err(StoreError::Corrupt(format!(
                "token {} has state but no row",
                t.serial
            )));
        }
        Ok(true)
    }

    fn update_state(
        &mut self,
        serial: &str,
        expect_version: u64,
        s: &TokenState,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE token_state SET counter = $3, last_step = $4, drift = $5, failures = $6, \
             locked = $7, locked_until = $8, status = $9, updated_at = $10, version = $2::bigint + 1, \
             custody = $11, valid_until = $12, active_until = $13, handover_unconfirmed = $14 \
             WHERE serial = $1 AND version = $2 AND counter <= $3 \
             AND (last_step IS NULL OR last_step <= $4)",
            &[
                &serial,
                &to_i64(expect_version, "version")?,
                &to_i64(s.counter, "counter")?,
                &opt_i64(s.last_step, "last step")?,
                &s.drift,
                &i64::from(s.failures),
                &i64::from(s.locked),
                &opt_i64(s.locked_until, "lock time")?,
                &s.status.as_str(),
                &to_i64(s.updated_at, "update time")?,
                &s.custody.map(|c| c.as_str()),
                &opt_i64(s.valid_until, "validity end")?,
                &opt_i64(s.active_until, "deactivation time")?,
                &i64::from(s.handover_unconfirmed),
            ],
        )?;
        Ok(n == 1)
    }

    fn reseal_token(
        &mut self,
        serial: &str,
        key_version: u32,
        sealed_seed: &[u8],
        sealed_pin_hash: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE tokens SET key_version = $2, sealed_seed = $3, sealed_pin_hash = $4 \
             WHERE serial = $1",
            &[
                &serial,
                &i64::from(key_version),
                &sealed_seed,
                &sealed_pin_hash,
            ],
        )?;
        Ok(())
    }

    fn tokens_not_sealed_under(
        &mut self,
        version: u32,
        limit: u32,
    ) -> Result<Vec<TokenRow>, StoreError> {
        tokens_from(self.conn.query(
            concat!(
                "SELECT ",
                token_cols!(),
                " FROM token_rows WHERE key_version <> $1 LIMIT $2"
            ),
            &[&i64::from(version), &i64::from(limit)],
        )?)
    }

    fn is_empty(&mut self) -> Result<bool, StoreError> {
        let r = self.conn.query_one(
            "SELECT (SELECT count(*) FROM tokens) + (SELECT count(*) FROM api_keys) \
             + (SELECT count(*) FROM audit)",
            &[],
        )?;
        Ok(get::<i64>(&r, 0)? == 0)
    }

    fn insert_row(&mut self, row: &TableRow) -> Result<(), StoreError> {
        use tokio_postgres::types::Type;
        if !crate::backend::carried_as_rows(&row.table) || row.columns.len() != row.cells.len() {
            return Err(StoreError::BackupFormat(format!(
                "a row of table {} that a backup does not carry so",
                row.table
            )));
        }
        let list = row
            .columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let marks = (1..=row.columns.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO {} ({list}) OVERRIDING SYSTEM VALUE VALUES ({marks})",
            quote(&row.table)
        );
        let bad = |why: String| {
            StoreError::BackupFormat(format!("table {} does not take this row: {why}", row.table))
        };
        let stmt = wait(self.conn.client.prepare(&sql)).map_err(|e| bad(e.to_string()))?;
        let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(row.cells.len());
        for ((ty, cell), col) in stmt.params().iter().zip(&row.cells).zip(row.columns.iter()) {
            let boxed: Box<dyn ToSql + Sync> = match (ty, cell) {
                (&Type::INT8, Cell::Int(n)) => Box::new(Some(*n)),
                (&Type::INT8, Cell::Null) => Box::new(None::<i64>),
                (&Type::INT4, Cell::Int(n)) => Box::new(Some(
                    i32::try_from(*n).map_err(|_| bad(format!("{col} out of range")))?,
                )),
                (&Type::INT4, Cell::Null) => Box::new(None::<i32>),
                (&Type::BOOL, Cell::Int(n)) => Box::new(Some(*n != 0)),
                (&Type::BOOL, Cell::Null) => Box::new(None::<bool>),
                (&Type::TEXT, Cell::Text(t)) => Box::new(Some(t.clone())),
                (&Type::TEXT, Cell::Null) => Box::new(None::<String>),
                (&Type::BYTEA, Cell::Blob(b)) => Box::new(Some(b.clone())),
                (&Type::BYTEA, Cell::Null) => Box::new(None::<Vec<u8>>),
                (ty, cell) => return Err(bad(format!("{col} is {ty}, the backup holds {cell:?}"))),
            };
            values.push(boxed);
        }
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
        wait(self.conn.client.execute(&stmt, &refs))?;
        Ok(())
    }

    fn rows_inserted(&mut self) -> Result<(), StoreError> {
        for r in self.conn.query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
            &[],
        )? {
            let (t, c): (String, String) = (get(&r, 0)?, get(&r, 1)?);
            wait(self.conn.client.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence($1, $2), coalesce(max({}), 0) + 1, \
                     false) FROM {}",
                    quote(&c),
                    quote(&t)
                ),
                &[&t, &c],
            ))?;
        }
        Ok(())
    }

    fn audit_head(&mut self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        if let Some(head) = self.head {
            return Ok(head);
        }
        let head = self
            .conn
            .query_opt("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1", &[])?
            .map(|r| Ok::<_, StoreError>((to_u64(get(&r, 0)?, "audit sequence")?, mac(&r, 1)?)))
            .transpose()?;
        self.head = Some(head);
        Ok(head)
    }

    fn insert_audit(&mut self, rec: &AuditRecord) -> Result<(), StoreError> {
        let e = &rec.entry;
        self.head = None;
        self.conn.execute(
            concat!(
                "INSERT INTO audit (",
                audit_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            &[
                &to_i64(rec.seq, "audit sequence")?,
                &to_i64(e.at, "audit time")?,
                &e.actor,
                &e.action,
                &e.subject,
                &e.serial,
                &e.result,
                &e.reason,
                &&rec.prev[..],
                &&rec.mac[..],
            ],
        )?;
        self.head = Some(Some((rec.seq, rec.mac)));
        Ok(())
    }

    fn add_api_key(
        &mut self,
        name: &str,
        key_hash: &[u8; 32],
        roles: &[String],
        at: u64,
    ) -> Result<(), StoreError> {
        if self
            .conn
            .query_opt("SELECT 1 FROM api_keys WHERE name = $1", &[&name])?
            .is_some()
        {
            return Err(StoreError::ApiKeyNameTaken(name.to_owned()));
        }
        let n = self.conn.execute(
            "INSERT INTO api_keys (name, key_hash, roles, disabled, created_at) \
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT DO NOTHING",
            &[
                &name,
                &&key_hash[..],
                &roles.join(","),
                &to_i64(at, "time")?,
            ],
        )?;
        if n != 1 {
            return Err(StoreError::DuplicateApiKey);
        }
        Ok(())
    }

    fn disable_api_key(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("UPDATE api_keys SET disabled = 1 WHERE name = $1", &[&name])?
            == 1)
    }

    fn data_keys(&mut self) -> Result<Vec<DataKeyRow>, StoreError> {
        self.conn
            .query(
                "SELECT version, wrapped, active FROM data_keys ORDER BY version",
                &[],
            )?
            .iter()
            .map(data_key_from)
            .collect()
    }

    fn put_data_key(&mut self, row: &DataKeyRow) -> Result<(), StoreError> {
        if row.active {
            self.conn.execute("UPDATE data_keys SET active = 0", &[])?;
        }
        self.conn.execute(
            "INSERT INTO data_keys (version, wrapped, active) VALUES ($1, $2, $3) \
             ON CONFLICT (version) DO UPDATE SET wrapped = EXCLUDED.wrapped, \
             active = EXCLUDED.active",
            &[
                &i64::from(row.version),
                &row.wrapped,
                &i64::from(row.active),
            ],
        )?;
        Ok(())
    }

    fn delete_data_key(&mut self, version: u32) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM data_keys WHERE version = $1",
            &[&i64::from(version)],
        )?;
        Ok(())
    }

    fn put_secret(&mut self, name: &str, version: u32, sealed: &[u8]) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO secrets (name, key_version, sealed) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET key_version = EXCLUDED.key_version, \
             sealed = EXCLUDED.sealed",
            &[&name, &i64::from(version), &sealed],
        )?;
        Ok(())
    }

    fn secrets(&mut self) -> Result<Vec<(String, u32, Vec<u8>)>, StoreError> {
        self.conn
            .query(
                "SELECT name, key_version, sealed FROM secrets ORDER BY name COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(secret_from)
            .collect()
    }

    fn custody(&mut self) -> &mut dyn crate::custody_db::CustodyTx {
        self
    }

    fn enqueue_mail(&mut self, mail: &NewMail, now: u64) -> Result<u64, StoreError> {
        let now = to_i64(now, "time")?;
        let row = self.conn.query_opt(
            "INSERT INTO outbox (message_id, template, recipients, subject, body, state, \
             attempts, created_at, next_attempt_at, cc) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $7) \
             ON CONFLICT (message_id) DO NOTHING RETURNING id",
            &[
                &mail.message_id,
                &mail.template,
                &mail.to.join("\n"),
                &mail.subject,
                &mail.body,
                &now,
                &mail.cc.join("\n"),
            ],
        )?;
        match row {
            Some(r) => to_u64(get(&r, 0)?, "mail id"),
            None => Err(StoreError::invalid(
                "message id",
                "another mail in the outbox has this Message-ID",
            )),
        }
    }

    fn mail_outcome(
        &mut self,
        id: u64,
        state: MailState,
        attempts: u32,
        at: u64,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let at = to_i64(at, "time")?;
        let id = to_i64(id, "mail id")?;
        let attempts = i64::from(attempts);
        let n = match state {
            MailState::Pending => self.conn.execute(
                "UPDATE outbox SET attempts = $2, next_attempt_at = $3, last_error = $4 \
                 WHERE id = $1 AND state = 'pending'",
                &[&id, &attempts, &at, &error],
            )?,
            MailState::Sent | MailState::Failed => self.conn.execute(
                "UPDATE outbox SET state = $2, attempts = $3, \
                 sent_at = CASE WHEN $2 = 'sent' THEN $4::bigint END, \
                 last_error = coalesce($5, last_error) \
                 WHERE id = $1 AND state = 'pending'",
                &[&id, &state.as_str(), &attempts, &at, &error],
            )?,
        };
        Ok(n == 1)
    }

    fn directory(&mut self) -> &mut dyn crate::directory_db::DirectoryTx {
        self
    }

    fn support(&mut self) -> &mut dyn crate::support_db::SupportTx {
        self
    }

    fn requests(&mut self) -> &mut dyn crate::request_db::RequestTx {
        self
    }
}

/// Run `sql` and decode every row.
pub(crate) fn all<T>(
    conn: &Conn,
    sql: &'static str,
    args: Params<'_>,
    f: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    conn.query(sql, args)?.iter().map(f).collect()
}

/// Run `sql` and decode the first row, if any.
pub(crate) fn one<T>(
    conn: &Conn,
    sql: &'static str,
    args: Params<'_>,
    f: fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    conn.query_opt(sql, args)?.as_ref().map(f).transpose()
}
