//! The embedded backend: one SQLite database in WAL mode with `synchronous=FULL`, a small pool of
//! read-only connections, and one write connection owned by the writer thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use crate::StoreError;
use crate::backend::{
    Backend, Cell, DataKeyRow, ExportItem, TableRow, TokenRow, TokenState, WriteTx,
};
use crate::outbox::{MailRow, MailState, NewMail, OutboxStats};
use crate::types::{Algorithm, ApiPrincipal, AuditEntry, AuditRecord, OtpKind, TokenFilter};

mod custody;
mod directory;
mod requests;
mod support;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "okey.db";

/// File name of the lock that keeps a data directory to one process.
pub const LOCK_FILE: &str = "okey.lock";

/// Versioned migrations, applied in order at open; `PRAGMA user_version` records the last one.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE data_keys (
        version INTEGER PRIMARY KEY,
        wrapped BLOB NOT NULL,
        active INTEGER NOT NULL CHECK (active IN (0, 1))
    );
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY NOT NULL,
        key_version INTEGER NOT NULL,
        sealed BLOB NOT NULL
    );
    CREATE TABLE tokens (
        serial TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        otp TEXT NOT NULL,
        step INTEGER,
        t0 INTEGER,
        suite TEXT,
        algorithm TEXT NOT NULL,
        digits INTEGER NOT NULL,
        key_version INTEGER NOT NULL,
        sealed_seed BLOB NOT NULL,
        sealed_pin_hash BLOB,
        holder TEXT,
        description TEXT,
        pin_verifier BLOB CHECK (pin_verifier IS NULL OR length(pin_verifier) = 32),
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX tokens_holder ON tokens (holder, serial) WHERE holder IS NOT NULL;
    CREATE INDEX tokens_key_version ON tokens (key_version);
    CREATE TABLE token_state (
        serial TEXT PRIMARY KEY NOT NULL,
        counter INTEGER NOT NULL CHECK (counter >= 0),
        last_step INTEGER CHECK (last_step >= 0),
        drift INTEGER NOT NULL,
        failures INTEGER NOT NULL CHECK (failures >= 0),
        locked INTEGER NOT NULL CHECK (locked IN (0, 1)),
        locked_until INTEGER,
        status TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE VIEW token_rows AS
        SELECT t.serial AS serial, kind, otp, step, t0, suite, algorithm, digits, key_version,
               sealed_seed, sealed_pin_hash, counter, last_step, drift, failures, locked,
               locked_until, status, holder, description, pin_verifier, created_at, updated_at,
               version
        FROM tokens t JOIN token_state s ON s.serial = t.serial;
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        serial TEXT,
        result TEXT NOT NULL,
        reason TEXT NOT NULL,
        prev BLOB NOT NULL,
        mac BLOB NOT NULL
    );
    CREATE TABLE api_keys (
        name TEXT PRIMARY KEY NOT NULL,
        key_hash BLOB NOT NULL UNIQUE CHECK (length(key_hash) = 32),
        roles TEXT NOT NULL,
        disabled INTEGER NOT NULL CHECK (disabled IN (0, 1)),
        created_at INTEGER NOT NULL
    );",
    ),
    (2, custody::MIGRATION),
    (
        3,
        "CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL UNIQUE,
        template TEXT NOT NULL,
        recipients TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL CHECK (attempts >= 0),
        created_at INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        sent_at INTEGER
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX outbox_state ON outbox (state, id);",
    ),
    (4, directory::MIGRATION),
    (5, HOLDERS_FOLDED),
    (6, directory::MIGRATION_CALLER_PERSON),
    (
        7,
        "ALTER TABLE token_state ADD COLUMN handover_unconfirmed INTEGER NOT NULL DEFAULT 0
        CHECK (handover_unconfirmed IN (0, 1));
    UPDATE token_state SET handover_unconfirmed = 1
        WHERE custody = 'handed_over' AND EXISTS (
            SELECT 1 FROM receipts r WHERE r.serial = token_state.serial
            AND r.kind = 'handover' AND r.confirmed_at IS NULL
            AND r.at = (SELECT max(at) FROM receipts x
                        WHERE x.serial = r.serial AND x.kind = 'handover'));
    DROP VIEW token_rows;
    CREATE VIEW token_rows AS
        SELECT t.serial AS serial, kind, otp, step, t0, suite, algorithm, digits, key_version,
               sealed_seed, sealed_pin_hash, counter, last_step, drift, failures, locked,
               locked_until, status, holder, description, pin_verifier, created_at, updated_at,
               version, custody, valid_until, active_until, handover_unconfirmed
        FROM tokens t JOIN token_state s ON s.serial = t.serial;",
    ),
    (8, PIN_SCHEME),
    (9, requests::MIGRATION),
    (10, support::MIGRATION),
];

/// Migration 8: a PIN verifier names its scheme (`okey_otp::PinBinding`): 1 bound to the token
/// (every verifier written before), 2 bound to the holder, so that it can follow them to their
/// next key. PostgreSQL's is the same with BIGINT.
pub(crate) const PIN_SCHEME: &str =
    "ALTER TABLE tokens ADD COLUMN pin_scheme INTEGER NOT NULL DEFAULT 1 CHECK (pin_scheme IN (1, 2));
    DROP VIEW token_rows;
    CREATE VIEW token_rows AS
        SELECT t.serial AS serial, kind, otp, step, t0, suite, algorithm, digits, key_version,
               sealed_seed, sealed_pin_hash, counter, last_step, drift, failures, locked,
               locked_until, status, holder, description, pin_verifier, created_at, updated_at,
               version, custody, valid_until, active_until, handover_unconfirmed, pin_scheme
        FROM tokens t JOIN token_state s ON s.serial = t.serial;";

/// Migration 5: holders are people's logins, compared without regard to case
/// (`okey_domain::fold_holder`); rows written before that rule are folded to lower case, so
/// `Bob` and `bob` become the one person they always were. Serials stay exact. The SQL is
/// the same on PostgreSQL (`pg::MIGRATIONS` uses it as it is); `lower()` folds ASCII, the only
/// letters a holder may contain. A lot delegate named twice in two cases keeps one row.
pub(crate) const HOLDERS_FOLDED: &str = "UPDATE tokens SET holder = lower(holder)
        WHERE holder IS NOT NULL AND holder <> lower(holder);
    UPDATE key_custody SET reserved_for = lower(reserved_for)
        WHERE reserved_for IS NOT NULL AND reserved_for <> lower(reserved_for);
    UPDATE receipts SET holder = lower(holder) WHERE holder <> lower(holder);
    UPDATE key_history SET holder_before = lower(holder_before)
        WHERE holder_before IS NOT NULL AND holder_before <> lower(holder_before);
    UPDATE key_history SET holder_after = lower(holder_after)
        WHERE holder_after IS NOT NULL AND holder_after <> lower(holder_after);
    DELETE FROM lot_delegates WHERE EXISTS (
        SELECT 1 FROM lot_delegates AS other
        WHERE other.lot = lot_delegates.lot
          AND lower(other.person) = lower(lot_delegates.person)
          AND other.person < lot_delegates.person);
    UPDATE lot_delegates SET person = lower(person) WHERE person <> lower(person)";

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 10;

/// The columns of the `token_rows` view (static part in `tokens`, moving part in the narrow
/// `token_state`, so a verify rewrites a small row and dirties few pages).
const TOKEN_COLS: &str = "serial, kind, otp, step, t0, suite, algorithm, digits, key_version, \
     sealed_seed, sealed_pin_hash, counter, last_step, drift, failures, locked, locked_until, \
     status, holder, description, pin_verifier, created_at, updated_at, version, custody, \
     valid_until, active_until, handover_unconfirmed, pin_scheme";

const READERS: usize = 4;

/// The SQLite backend.
pub struct Sqlite {
    /// Held (an exclusive advisory lock on `okey.lock`) while the store is open, so a second
    /// process cannot open the same data directory and interleave its writes.
    _lock: std::fs::File,
    path: PathBuf,
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl Sqlite {
    /// Open (creating if needed) the database in `dir` and bring its schema up to date.
    pub fn open(dir: &Path) -> Result<Sqlite, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| StoreError::io("cannot open the lock file", &lock_path, e))?;
        // A process that just exited (or a child briefly holding a copy of the descriptor
        // between fork and exec) may still hold the lock for a moment: retry for two seconds.
        let mut tries = 0;
        loop {
            match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) if tries < 40 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(StoreError::Precondition(format!(
                        "the data directory {} is in use by another okey process",
                        dir.display()
                    )));
                }
                Err(e) => {
                    return Err(StoreError::io("cannot lock", &lock_path, e.into()));
                }
            }
        }
        let path = dir.join(DB_FILE);
        // Created here, owner-only, before SQLite would create it 0644: its -wal and -shm files
        // take the database file's mode.
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::io("cannot create the database", &path, e))?;
        for name in STORE_FILES {
            check_private(&dir.join(name))?;
        }
        let conn = Connection::open(&path)?;
        configure(&conn)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "the database refused WAL mode (got {mode})"
            )));
        }
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        migrate(&conn)?;
        drop(conn);
        crate::seal::sync_dir(dir)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let c = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&c)?;
            readers.push(Mutex::new(c));
        }
        Ok(Sqlite {
            _lock: lock,
            path,
            readers,
            next: AtomicUsize::new(0),
        })
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..READERS {
            if let Some(m) = self.readers.get((start + i) % READERS)
                && let Ok(g) = m.try_lock()
            {
                return g;
            }
        }
        let m = &self.readers[start % READERS];
        // A poisoned reader only means another thread panicked mid-read; the connection is
        // still sound (reads change nothing).
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The files of an embedded store: the database, its write-ahead log and shared memory, and the
/// lock file. Each is created readable and writable by its owner only (mode 0600).
pub const STORE_FILES: [&str; 4] = [DB_FILE, "okey.db-wal", "okey.db-shm", LOCK_FILE];

/// Refuse a store file that its group or others may read or write (one left 0644 by a copy or
/// an older okey): the database holds the audit chain and every token's state.
fn check_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("cannot read", path, e)),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                Ok(())
            } else {
                Err(StoreError::LooseFilePermissions {
                    path: path.to_path_buf(),
                    mode,
                })
            }
        }
    }
}

/// Run the SQL of migration `version` again on the SQLite database at `db`, without touching
/// its recorded version: for tests that put rows back as an earlier release wrote them and
/// check what the migration makes of them.
#[doc(hidden)]
pub fn rerun_migration(db: &Path, version: i64) -> Result<(), StoreError> {
    let Some((_, sql)) = MIGRATIONS.iter().find(|(v, _)| *v == version) else {
        return Err(StoreError::invalid("version", "no such migration"));
    };
    let conn = Connection::open(db)?;
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql}; COMMIT;"))?;
    Ok(())
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS {
        if *version > current {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {version}; COMMIT;"
            ))?;
        }
    }
    Ok(())
}

fn to_i64(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::invalid(what, "must be below 2^63"))
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what} in the database")))
}

/// Every carried table's rows (`crate::backend::TYPED_TABLES`), in the order a restore inserts
/// them, each table in its primary key's order.
fn export_rows(
    conn: &Connection,
    sink: &mut dyn FnMut(ExportItem) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    use rusqlite::types::ValueRef;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for table in crate::backend::carried_in_order(tables) {
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        let columns: std::sync::Arc<[String]> = conn
            .prepare(&format!(
                "SELECT name FROM pragma_table_info('{}')",
                table.replace('\'', "''")
            ))?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
            .into();
        for c in columns.iter() {
            crate::backend::check_carried_column(&table, c)?;
        }
        let list = columns
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = conn.prepare(&format!("SELECT {list} FROM {quoted} ORDER BY 1"))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let mut cells = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                cells.push(match r.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Text(t) => Cell::Text(
                        String::from_utf8(t.to_vec())
                            .map_err(|_| StoreError::Corrupt(format!("bad text in {table}")))?,
                    ),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                    ValueRef::Real(_) => {
                        return Err(StoreError::Corrupt(format!(
                            "table {table} holds a floating-point value, which okey never writes"
                        )));
                    }
                });
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

fn token_from_row(r: &Row<'_>) -> Result<TokenRow, StoreError> {
    let otp_name: String = r.get(2)?;
    let otp = match otp_name.as_str() {
        "hotp" => OtpKind::Hotp,
        "totp" => OtpKind::Totp {
            step: u32::try_from(r.get::<_, i64>(3)?)
                .map_err(|_| StoreError::Corrupt("bad TOTP step".into()))?,
            t0: to_u64(r.get(4)?, "t0")?,
        },
        "ocra" => OtpKind::Ocra { suite: r.get(5)? },
        other => return Err(StoreError::Corrupt(format!("unknown OTP kind {other:?}"))),
    };
    let algorithm: String = r.get(6)?;
    let algorithm: Algorithm = algorithm
        .parse()
        .map_err(|_| StoreError::Corrupt("unknown algorithm".into()))?;
    let kind: String = r.get(1)?;
    let status: String = r.get(17)?;
    let pin: Option<Vec<u8>> = r.get(20)?;
    let pin_verifier = match pin {
        None => None,
        Some(v) => Some(
            <[u8; 32]>::try_from(v.as_slice())
                .map_err(|_| StoreError::Corrupt("bad PIN verifier length".into()))?,
        ),
    };
    Ok(TokenRow {
        serial: r.get(0)?,
        kind: kind
            .parse()
            .map_err(|_| StoreError::Corrupt("bad kind".into()))?,
        otp,
        algorithm,
        digits: u8::try_from(r.get::<_, i64>(7)?)
            .map_err(|_| StoreError::Corrupt("bad digits".into()))?,
        key_version: u32::try_from(r.get::<_, i64>(8)?)
            .map_err(|_| StoreError::Corrupt("bad key version".into()))?,
        sealed_seed: r.get(9)?,
        sealed_pin_hash: r.get(10)?,
        counter: to_u64(r.get(11)?, "counter")?,
        last_step: r
            .get::<_, Option<i64>>(12)?
            .map(|v| to_u64(v, "last step"))
            .transpose()?,
        drift: r.get(13)?,
        failures: u32::try_from(r.get::<_, i64>(14)?)
            .map_err(|_| StoreError::Corrupt("bad failure count".into()))?,
        locked: r.get::<_, i64>(15)? != 0,
        locked_until: r
            .get::<_, Option<i64>>(16)?
            .map(|v| to_u64(v, "lock time"))
            .transpose()?,
        status: status
            .parse()
            .map_err(|_| StoreError::Corrupt("bad status".into()))?,
        holder: r.get(18)?,
        description: r.get(19)?,
        pin_verifier,
        created_at: to_u64(r.get(21)?, "creation time")?,
        updated_at: to_u64(r.get(22)?, "update time")?,
        version: to_u64(r.get(23)?, "version")?,
        custody: r
            .get::<_, Option<String>>(24)?
            .map(|c| {
                c.parse()
                    .map_err(|_| StoreError::Corrupt("bad custody state".into()))
            })
            .transpose()?,
        valid_until: r
            .get::<_, Option<i64>>(25)?
            .map(|v| to_u64(v, "validity end"))
            .transpose()?,
        active_until: r
            .get::<_, Option<i64>>(26)?
            .map(|v| to_u64(v, "deactivation time"))
            .transpose()?,
        handover_unconfirmed: r.get::<_, i64>(27)? != 0,
        pin_scheme: crate::backend::pin_scheme(r.get::<_, i64>(28)?)?,
    })
}

fn collect_tokens(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<TokenRow>, StoreError> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(token_from_row(r)?);
    }
    Ok(out)
}

fn audit_from_row(r: &Row<'_>) -> Result<AuditRecord, StoreError> {
    let hash = |i: usize| -> Result<[u8; 32], StoreError> {
        let v: Vec<u8> = r.get(i)?;
        <[u8; 32]>::try_from(v.as_slice())
            .map_err(|_| StoreError::Corrupt("bad audit MAC length".into()))
    };
    Ok(AuditRecord {
        seq: to_u64(r.get(0)?, "audit sequence")?,
        entry: AuditEntry {
            at: to_u64(r.get(1)?, "audit time")?,
            actor: r.get(2)?,
            action: r.get(3)?,
            subject: r.get(4)?,
            serial: r.get(5)?,
            result: r.get(6)?,
            reason: r.get(7)?,
        },
        prev: hash(8)?,
        mac: hash(9)?,
    })
}

const AUDIT_COLS: &str = "seq, at, actor, action, subject, serial, result, reason, prev, mac";

fn principal(name: String, roles: String, disabled: i64) -> ApiPrincipal {
    ApiPrincipal {
        name,
        roles: roles
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        disabled: disabled != 0,
    }
}

impl Backend for Sqlite {
    fn write_session(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        let conn = Connection::open(&self.path)?;
        configure(&conn)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
        Ok(Box::new(SqliteWriter {
            conn,
            head: None,
            saved_head: None,
        }))
    }

    fn token(&self, serial: &str) -> Result<Option<TokenRow>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM token_rows WHERE serial = ?1"
        ))?;
        Ok(collect_tokens(&mut stmt, &[&serial])?.into_iter().next())
    }

    fn tokens_of(&self, holder: &str) -> Result<Vec<TokenRow>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM token_rows WHERE holder = ?1 ORDER BY serial"
        ))?;
        collect_tokens(&mut stmt, &[&holder])
    }

    fn list(
        &self,
        filter: &TokenFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let mut sql = format!("SELECT {TOKEN_COLS} FROM token_rows WHERE 1");
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        if let Some(s) = filter.status {
            sql.push_str(" AND status = ?");
            args.push(Box::new(s.as_str()));
        }
        if let Some(h) = &filter.holder {
            sql.push_str(" AND holder = ?");
            args.push(Box::new(h.clone()));
        }
        if let Some(k) = filter.kind {
            sql.push_str(" AND kind = ?");
            args.push(Box::new(k.as_str()));
        }
        if let Some(p) = &filter.serial_prefix {
            sql.push_str(" AND serial >= ? AND substr(serial, 1, ?) = ?");
            args.push(Box::new(p.clone()));
            args.push(Box::new(p.chars().count() as i64));
            args.push(Box::new(p.clone()));
        }
        if let Some(a) = after {
            sql.push_str(" AND serial > ?");
            args.push(Box::new(a.to_owned()));
        }
        sql.push_str(" ORDER BY serial LIMIT ?");
        args.push(Box::new(i64::from(limit)));
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&sql)?;
        let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|b| b.as_ref()).collect();
        collect_tokens(&mut stmt, &refs)
    }

    fn token_count(&self) -> Result<u64, StoreError> {
        let conn = self.reader();
        let n: i64 = conn.query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))?;
        to_u64(n, "count")
    }

    fn data_keys(&self) -> Result<Vec<DataKeyRow>, StoreError> {
        read_data_keys(&self.reader())
    }

    fn secret(&self, name: &str) -> Result<Option<(u32, Vec<u8>)>, StoreError> {
        let conn = self.reader();
        let row: Option<(i64, Vec<u8>)> = conn
            .query_row(
                "SELECT key_version, sealed FROM secrets WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(v, s)| {
            u32::try_from(v)
                .map(|v| (v, s))
                .map_err(|_| StoreError::Corrupt("bad key version".into()))
        })
        .transpose()
    }

    fn audit_scan(
        &self,
        from_seq: u64,
        f: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError> {
        // A dedicated connection: the walk can be long and must not hold a pooled reader.
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        configure(&conn)?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {AUDIT_COLS} FROM audit WHERE seq >= ?1 ORDER BY seq"
        ))?;
        let mut rows = stmt.query([to_i64(from_seq, "sequence")?])?;
        while let Some(r) = rows.next()? {
            if !f(audit_from_row(r)?) {
                break;
            }
        }
        Ok(())
    }

    fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {AUDIT_COLS} FROM audit ORDER BY seq DESC LIMIT ?1"
        ))?;
        let mut rows = stmt.query([i64::from(limit)])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(audit_from_row(r)?);
        }
        Ok(out)
    }

    fn api_key(&self, key_hash: &[u8; 32]) -> Result<Option<ApiPrincipal>, StoreError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare_cached("SELECT name, roles, disabled FROM api_keys WHERE key_hash = ?1")?;
        Ok(stmt
            .query_row([&key_hash[..]], |r| {
                Ok(principal(r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?)
    }

    fn api_keys(&self) -> Result<Vec<(ApiPrincipal, [u8; 32])>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT name, roles, disabled, key_hash FROM api_keys ORDER BY name")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let h: Vec<u8> = r.get(3)?;
            let h = <[u8; 32]>::try_from(h.as_slice())
                .map_err(|_| StoreError::Corrupt("bad API key hash".into()))?;
            out.push((principal(r.get(0)?, r.get(1)?, r.get(2)?), h));
        }
        Ok(out)
    }

    fn export(
        &self,
        sink: &mut dyn FnMut(ExportItem) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        configure(&conn)?;
        // One read transaction: a consistent snapshot while writes go on.
        conn.execute_batch("BEGIN")?;
        {
            let mut stmt =
                conn.prepare("SELECT name, key_version, sealed FROM secrets ORDER BY name")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let v = u32::try_from(r.get::<_, i64>(1)?)
                    .map_err(|_| StoreError::Corrupt("bad key version".into()))?;
                sink(ExportItem::Secret(r.get(0)?, v, r.get(2)?))?;
            }
            let mut stmt = conn.prepare(&format!(
                "SELECT {TOKEN_COLS} FROM token_rows ORDER BY serial"
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink(ExportItem::Token(Box::new(token_from_row(r)?)))?;
            }
            let mut stmt = conn.prepare(&format!("SELECT {AUDIT_COLS} FROM audit ORDER BY seq"))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink(ExportItem::Audit(audit_from_row(r)?))?;
            }
            requests::export_attachments(&conn, sink)?;
            export_rows(&conn, sink)?;
        }
        conn.execute_batch("COMMIT")?;
        Ok(())
    }

    fn mail_due(&self, now: u64, limit: u32) -> Result<Vec<MailRow>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MAIL_COLS} FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1 \
             ORDER BY next_attempt_at, id LIMIT ?2"
        ))?;
        let mut rows = stmt.query(params![to_i64(now, "time")?, i64::from(limit)])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(mail_from_row(r)?);
        }
        Ok(out)
    }

    fn mail_next_due(&self) -> Result<Option<u64>, StoreError> {
        let conn = self.reader();
        let v: Option<i64> = conn
            .prepare_cached("SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending'")?
            .query_row([], |r| r.get(0))?;
        v.map(|v| to_u64(v, "next attempt")).transpose()
    }

    fn mail_list(&self, states: &[MailState], limit: u32) -> Result<Vec<MailRow>, StoreError> {
        let conn = self.reader();
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MAIL_COLS} FROM outbox WHERE instr(?1, ',' || state || ',') > 0 \
             ORDER BY id LIMIT ?2"
        ))?;
        let mut rows = stmt.query(params![format!(",{},", names.join(",")), i64::from(limit)])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(mail_from_row(r)?);
        }
        Ok(out)
    }

    fn mail_stats(&self) -> Result<OutboxStats, StoreError> {
        let conn = self.reader();
        let mut stats = OutboxStats::default();
        let mut stmt = conn
            .prepare_cached("SELECT state, count(*), min(created_at) FROM outbox GROUP BY state")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let state: String = r.get(0)?;
            let n = to_u64(r.get(1)?, "count")?;
            match MailState::parse(&state) {
                Some(MailState::Pending) => {
                    stats.pending = n;
                    stats.oldest_pending_at = r
                        .get::<_, Option<i64>>(2)?
                        .map(|v| to_u64(v, "time"))
                        .transpose()?;
                }
                Some(MailState::Sent) => stats.sent = n,
                Some(MailState::Failed) => stats.failed = n,
                None => return Err(StoreError::Corrupt(format!("unknown mail state {state:?}"))),
            }
        }
        Ok(stats)
    }

    fn integrity_check(&self) -> Result<String, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let mut rows = stmt.query([])?;
        let mut lines = Vec::new();
        while let Some(r) = rows.next()? {
            lines.push(r.get::<_, String>(0)?);
        }
        Ok(lines.join("\n"))
    }

    fn custody(&self) -> &dyn crate::custody_db::CustodyRead {
        self
    }

    fn directory(&self) -> &dyn crate::directory_db::DirectoryRead {
        self
    }

    fn support(&self) -> &dyn crate::support_db::SupportRead {
        self
    }
}

fn read_data_keys(conn: &Connection) -> Result<Vec<DataKeyRow>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT version, wrapped, active FROM data_keys ORDER BY version")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(DataKeyRow {
            version: u32::try_from(r.get::<_, i64>(0)?)
                .map_err(|_| StoreError::Corrupt("bad data key version".into()))?,
            wrapped: r.get(1)?,
            active: r.get::<_, i64>(2)? != 0,
        });
    }
    Ok(out)
}

/// The audit chain head as this session last wrote or read it: `None` when unknown.
type Head = Option<Option<(u64, [u8; 32])>>;

struct SqliteWriter {
    conn: Connection,
    /// The chain head, kept in memory so an append costs one statement. Valid because this
    /// session is the only writer of the database (the data directory is locked).
    head: Head,
    /// The head when the current savepoint was taken.
    saved_head: Head,
}

fn opt_i64(v: Option<u64>, what: &'static str) -> Result<Option<i64>, StoreError> {
    v.map(|v| to_i64(v, what)).transpose()
}

impl SqliteWriter {
    fn exec(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }
}

impl WriteTx for SqliteWriter {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.exec("BEGIN IMMEDIATE")
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        let r = self.exec("COMMIT");
        if r.is_err() {
            self.head = None;
        }
        r
    }
    fn rollback(&mut self) -> Result<(), StoreError> {
        self.head = None;
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.exec("ROLLBACK")
    }
    fn savepoint(&mut self) -> Result<(), StoreError> {
        self.saved_head = self.head;
        self.exec("SAVEPOINT request")
    }
    fn release(&mut self) -> Result<(), StoreError> {
        self.exec("RELEASE request")
    }
    fn rollback_savepoint(&mut self) -> Result<(), StoreError> {
        self.head = self.saved_head;
        let r = self
            .exec("ROLLBACK TO request")
            .and_then(|()| self.exec("RELEASE request"));
        if r.is_err() {
            self.head = None;
        }
        r
    }

    fn token(&mut self, serial: &str) -> Result<Option<TokenRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM token_rows WHERE serial = ?1"
        ))?;
        Ok(collect_tokens(&mut stmt, &[&serial])?.into_iter().next())
    }

    fn insert_token(&mut self, t: &TokenRow) -> Result<(), StoreError> {
        let (step, t0, suite) = match &t.otp {
            OtpKind::Hotp => (None, None, None),
            OtpKind::Totp { step, t0 } => (Some(i64::from(*step)), Some(to_i64(*t0, "t0")?), None),
            OtpKind::Ocra { suite } => (None, None, Some(suite.as_str())),
        };
        let counter = to_i64(t.counter, "counter")?;
        let last_step = opt_i64(t.last_step, "last step")?;
        let locked_until = opt_i64(t.locked_until, "lock time")?;
        let created_at = to_i64(t.created_at, "creation time")?;
        let updated_at = to_i64(t.updated_at, "update time")?;
        let version = to_i64(t.version, "version")?;
        let duplicate = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::DuplicateSerial(t.serial.clone())
            }
            e => e.into(),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO tokens (serial, kind, otp, step, t0, suite, algorithm, digits, \
                 key_version, sealed_seed, sealed_pin_hash, holder, description, pin_verifier, \
                 created_at, pin_scheme) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?
            .execute(params![
                t.serial,
                t.kind.as_str(),
                t.otp.as_str(),
                step,
                t0,
                suite,
                t.algorithm.name(),
                i64::from(t.digits),
                i64::from(t.key_version),
                t.sealed_seed,
                t.sealed_pin_hash,
                t.holder,
                t.description,
                t.pin_verifier.as_ref().map(|v| &v[..]),
                created_at,
                i64::from(t.pin_scheme),
            ])
            .map_err(duplicate)?;
        self.conn
            .prepare_cached(
                "INSERT INTO token_state (serial, counter, last_step, drift, failures, locked, \
                 locked_until, status, updated_at, version, custody, valid_until, active_until, \
                 handover_unconfirmed) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                t.serial,
                counter,
                last_step,
                t.drift,
                i64::from(t.failures),
                i64::from(t.locked),
                locked_until,
                t.status.as_str(),
                updated_at,
                version,
                t.custody.map(|c| c.as_str()),
                opt_i64(t.valid_until, "validity end")?,
                opt_i64(t.active_until, "deactivation time")?,
                i64::from(t.handover_unconfirmed),
            ])
            .map_err(duplicate)?;
        Ok(())
    }

    fn update_token(&mut self, expect_version: u64, t: &TokenRow) -> Result<bool, StoreError> {
        // The compare-and-set first: if it loses, nothing has been written.
        if !self.update_state(&t.serial, expect_version, &t.state())? {
            return Ok(false);
        }
        let mut stmt = self.conn.prepare_cached(
            "UPDATE tokens SET holder = ?2, description = ?3, pin_verifier = ?4, \
             sealed_pin_hash = ?5, pin_scheme = ?6 WHERE serial = ?1",
        )?;
        let n = stmt.execute(params![
            t.serial,
            t.holder,
            t.description,
            t.pin_verifier.as_ref().map(|v| &v[..]),
            t.sealed_pin_hash,
            i64::from(t.pin_scheme),
        ])?;
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
        let mut stmt = self.conn.prepare_cached(
            "UPDATE token_state SET counter = ?3, last_step = ?4, drift = ?5, failures = ?6, \
             locked = ?7, locked_until = ?8, status = ?9, updated_at = ?10, version = ?2 + 1, \
             custody = ?11, valid_until = ?12, active_until = ?13, handover_unconfirmed = ?14 \
             WHERE serial = ?1 AND version = ?2 AND counter <= ?3 \
             AND (last_step IS NULL OR last_step <= ?4)",
        )?;
        let n = stmt.execute(params![
            serial,
            to_i64(expect_version, "version")?,
            to_i64(s.counter, "counter")?,
            opt_i64(s.last_step, "last step")?,
            s.drift,
            i64::from(s.failures),
            i64::from(s.locked),
            opt_i64(s.locked_until, "lock time")?,
            s.status.as_str(),
            to_i64(s.updated_at, "update time")?,
            s.custody.map(|c| c.as_str()),
            opt_i64(s.valid_until, "validity end")?,
            opt_i64(s.active_until, "deactivation time")?,
            i64::from(s.handover_unconfirmed),
        ])?;
        Ok(n == 1)
    }

    fn reseal_token(
        &mut self,
        serial: &str,
        key_version: u32,
        sealed_seed: &[u8],
        sealed_pin_hash: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "UPDATE tokens SET key_version = ?2, sealed_seed = ?3, sealed_pin_hash = ?4 \
             WHERE serial = ?1",
        )?;
        stmt.execute(params![
            serial,
            i64::from(key_version),
            sealed_seed,
            sealed_pin_hash
        ])?;
        Ok(())
    }

    fn tokens_not_sealed_under(
        &mut self,
        version: u32,
        limit: u32,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM token_rows WHERE key_version <> ?1 LIMIT ?2"
        ))?;
        collect_tokens(&mut stmt, &[&i64::from(version), &i64::from(limit)])
    }

    fn is_empty(&mut self) -> Result<bool, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT (SELECT count(*) FROM tokens) + (SELECT count(*) FROM api_keys) \
             + (SELECT count(*) FROM audit)",
            [],
            |r| r.get(0),
        )?;
        Ok(n == 0)
    }

    fn insert_row(&mut self, row: &TableRow) -> Result<(), StoreError> {
        use rusqlite::types::Value;
        if !crate::backend::carried_as_rows(&row.table) || row.columns.len() != row.cells.len() {
            return Err(StoreError::BackupFormat(format!(
                "a row of table {} that a backup does not carry so",
                row.table
            )));
        }
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let list = row
            .columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let marks = (1..=row.columns.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let values: Vec<Value> = row
            .cells
            .iter()
            .map(|c| match c {
                Cell::Null => Value::Null,
                Cell::Int(n) => Value::Integer(*n),
                Cell::Text(t) => Value::Text(t.clone()),
                Cell::Blob(b) => Value::Blob(b.clone()),
            })
            .collect();
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO {} ({list}) VALUES ({marks})",
                quote(&row.table)
            ))
            .map_err(|e| {
                StoreError::BackupFormat(format!("table {} does not take this row: {e}", row.table))
            })?
            .execute(rusqlite::params_from_iter(values))?;
        Ok(())
    }

    fn audit_head(&mut self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        if let Some(head) = self.head {
            return Ok(head);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1")?;
        let row: Option<(i64, Vec<u8>)> = stmt
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let head = row
            .map(|(s, m)| {
                let mac = <[u8; 32]>::try_from(m.as_slice())
                    .map_err(|_| StoreError::Corrupt("bad audit MAC length".into()))?;
                Ok::<_, StoreError>((to_u64(s, "audit sequence")?, mac))
            })
            .transpose()?;
        self.head = Some(head);
        Ok(head)
    }

    fn insert_audit(&mut self, rec: &AuditRecord) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "INSERT INTO audit ({AUDIT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?;
        let e = &rec.entry;
        self.head = None;
        stmt.execute(params![
            to_i64(rec.seq, "audit sequence")?,
            to_i64(e.at, "audit time")?,
            e.actor,
            e.action,
            e.subject,
            e.serial,
            e.result,
            e.reason,
            &rec.prev[..],
            &rec.mac[..],
        ])?;
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
        let taken = self
            .conn
            .prepare_cached("SELECT 1 FROM api_keys WHERE name = ?1")?
            .exists(params![name])?;
        if taken {
            return Err(StoreError::ApiKeyNameTaken(name.to_owned()));
        }
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO api_keys (name, key_hash, roles, disabled, created_at) \
             VALUES (?1, ?2, ?3, 0, ?4)",
        )?;
        match stmt.execute(params![
            name,
            &key_hash[..],
            roles.join(","),
            to_i64(at, "time")?
        ]) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::DuplicateApiKey)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn disable_api_key(&mut self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached("UPDATE api_keys SET disabled = 1 WHERE name = ?1")?
            .execute([name])?;
        Ok(n == 1)
    }

    fn data_keys(&mut self) -> Result<Vec<DataKeyRow>, StoreError> {
        read_data_keys(&self.conn)
    }

    fn put_data_key(&mut self, row: &DataKeyRow) -> Result<(), StoreError> {
        if row.active {
            self.exec("UPDATE data_keys SET active = 0")?;
        }
        self.conn
            .prepare_cached(
                "INSERT INTO data_keys (version, wrapped, active) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (version) DO UPDATE SET wrapped = ?2, active = ?3",
            )?
            .execute(params![
                i64::from(row.version),
                row.wrapped,
                i64::from(row.active)
            ])?;
        Ok(())
    }

    fn delete_data_key(&mut self, version: u32) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM data_keys WHERE version = ?1")?
            .execute([i64::from(version)])?;
        Ok(())
    }

    fn put_secret(&mut self, name: &str, version: u32, sealed: &[u8]) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO secrets (name, key_version, sealed) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET key_version = ?2, sealed = ?3",
            )?
            .execute(params![name, i64::from(version), sealed])?;
        Ok(())
    }

    fn secrets(&mut self) -> Result<Vec<(String, u32, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, key_version, sealed FROM secrets ORDER BY name")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let v = u32::try_from(r.get::<_, i64>(1)?)
                .map_err(|_| StoreError::Corrupt("bad key version".into()))?;
            out.push((r.get(0)?, v, r.get(2)?));
        }
        Ok(out)
    }

    fn custody(&mut self) -> &mut dyn crate::custody_db::CustodyTx {
        self
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

    fn enqueue_mail(&mut self, mail: &NewMail, now: u64) -> Result<u64, StoreError> {
        let now = to_i64(now, "time")?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO outbox (message_id, template, recipients, subject, body, state, \
             attempts, created_at, next_attempt_at, cc) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?7)",
        )?;
        match stmt.execute(params![
            mail.message_id,
            mail.template,
            mail.to.join("\n"),
            mail.subject,
            mail.body,
            now,
            mail.cc.join("\n"),
        ]) {
            Ok(_) => to_u64(self.conn.last_insert_rowid(), "mail id"),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::invalid(
                    "message id",
                    "another mail in the outbox has this Message-ID",
                ))
            }
            Err(e) => Err(e.into()),
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
        let n = match state {
            MailState::Pending => self
                .conn
                .prepare_cached(
                    "UPDATE outbox SET attempts = ?2, next_attempt_at = ?3, last_error = ?4 \
                 WHERE id = ?1 AND state = 'pending'",
                )?
                .execute(params![id, attempts, at, error])?,
            MailState::Sent | MailState::Failed => self
                .conn
                .prepare_cached(
                    "UPDATE outbox SET state = ?2, attempts = ?3, sent_at = CASE WHEN ?2 = 'sent' \
                 THEN ?4 END, last_error = coalesce(?5, last_error) \
                 WHERE id = ?1 AND state = 'pending'",
                )?
                .execute(params![id, state.as_str(), attempts, at, error])?,
        };
        Ok(n == 1)
    }
}

const MAIL_COLS: &str = "id, message_id, template, recipients, subject, body, state, attempts, \
     created_at, next_attempt_at, last_error, sent_at, cc";

fn mail_from_row(r: &Row<'_>) -> Result<MailRow, StoreError> {
    let recipients: String = r.get(3)?;
    let state: String = r.get(6)?;
    Ok(MailRow {
        id: to_u64(r.get(0)?, "mail id")?,
        mail: NewMail {
            message_id: r.get(1)?,
            template: r.get(2)?,
            to: recipients.split('\n').map(str::to_owned).collect(),
            cc: crate::support_db::lines(&r.get::<_, String>(12)?),
            subject: r.get(4)?,
            body: r.get(5)?,
        },
        state: MailState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown mail state {state:?}")))?,
        attempts: u32::try_from(r.get::<_, i64>(7)?)
            .map_err(|_| StoreError::Corrupt("bad attempt count".into()))?,
        created_at: to_u64(r.get(8)?, "time")?,
        next_attempt_at: to_u64(r.get(9)?, "time")?,
        last_error: r.get(10)?,
        sent_at: r
            .get::<_, Option<i64>>(11)?
            .map(|v| to_u64(v, "time"))
            .transpose()?,
    })
}
