//! PostgreSQL schema for okey: the same tables as the SQLite backend, with versioned migrations.
//!
//! Each SQLite migration in `sqlite.rs` has a counterpart here under the same number, written in
//! PostgreSQL's dialect (`BIGINT` for `INTEGER`, `BYTEA` for `BLOB`, identity columns for SQLite's
//! implicit rowids, no `WITHOUT ROWID`). A test checks that both lists carry the same numbers, so a
//! new SQLite migration without its PostgreSQL counterpart fails the build's tests.
//!
//! The applied version is kept in the one-row table `okey_schema`. Migrations run in one
//! transaction under a transaction-scoped advisory lock, so several nodes starting at once on one
//! database apply each migration exactly once and all see the same schema.
//!
//! [`Postgres`] implements [`crate::backend::Backend`] and [`crate::backend::WriteTx`] over this
//! schema, so several okey nodes can share one database (see its docs for how the promises of
//! [`crate::backend`] hold across nodes). The connection string is a `postgres://` URL or
//! `key=value` pairs; `sslmode=require` or `verify-full` asks for TLS (rustls), checking the
//! server's certificate against `sslrootcert` (a PEM file) or the public web roots, and its host
//! name, in both modes.

use crate::StoreError;

mod backend;
mod conn;
mod copy;
mod custody;
mod directory;
mod requests;
mod support;
mod tls;

pub use backend::Postgres;
pub use copy::{CopyReport, copy_sqlite_to_postgres};

/// Whether a connection string carries a password (configuration refuses one in plain sight);
/// an error when the string is not one the driver reads.
pub fn connection_has_password(url: &str) -> Result<bool, StoreError> {
    let (rest, _, _) = conn::split_ssl(url)?;
    let config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreError::invalid("store url", e.to_string()))?;
    Ok(config.get_password().is_some())
}

/// Advisory lock key taken while migrating ("okey" in ASCII).
const MIGRATION_LOCK: i64 = 0x6f6b_6579;

/// Versioned migrations, applied in order; `okey_schema.version` records the last one.
/// The numbers match `sqlite::MIGRATIONS` one for one.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE data_keys (
        version BIGINT PRIMARY KEY,
        wrapped BYTEA NOT NULL,
        active BIGINT NOT NULL CHECK (active IN (0, 1))
    );
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY NOT NULL,
        key_version BIGINT NOT NULL,
        sealed BYTEA NOT NULL
    );
    CREATE TABLE tokens (
        serial TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        otp TEXT NOT NULL,
        step BIGINT,
        t0 BIGINT,
        suite TEXT,
        algorithm TEXT NOT NULL,
        digits BIGINT NOT NULL,
        key_version BIGINT NOT NULL,
        sealed_seed BYTEA NOT NULL,
        sealed_pin_hash BYTEA,
        holder TEXT,
        description TEXT,
        pin_verifier BYTEA CHECK (pin_verifier IS NULL OR octet_length(pin_verifier) = 32),
        created_at BIGINT NOT NULL
    );
    CREATE INDEX tokens_holder ON tokens (holder, serial) WHERE holder IS NOT NULL;
    CREATE INDEX tokens_key_version ON tokens (key_version);
    CREATE TABLE token_state (
        serial TEXT PRIMARY KEY NOT NULL,
        counter BIGINT NOT NULL CHECK (counter >= 0),
        last_step BIGINT CHECK (last_step >= 0),
        drift BIGINT NOT NULL,
        failures BIGINT NOT NULL CHECK (failures >= 0),
        locked BIGINT NOT NULL CHECK (locked IN (0, 1)),
        locked_until BIGINT,
        status TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        version BIGINT NOT NULL
    );
    CREATE VIEW token_rows AS
        SELECT t.serial AS serial, kind, otp, step, t0, suite, algorithm, digits, key_version,
               sealed_seed, sealed_pin_hash, counter, last_step, drift, failures, locked,
               locked_until, status, holder, description, pin_verifier, created_at, updated_at,
               version
        FROM tokens t JOIN token_state s ON s.serial = t.serial;
    CREATE TABLE audit (
        seq BIGINT PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        serial TEXT,
        result TEXT NOT NULL,
        reason TEXT NOT NULL,
        prev BYTEA NOT NULL,
        mac BYTEA NOT NULL
    );
    CREATE TABLE api_keys (
        name TEXT PRIMARY KEY NOT NULL,
        key_hash BYTEA NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
        roles TEXT NOT NULL,
        disabled BIGINT NOT NULL CHECK (disabled IN (0, 1)),
        created_at BIGINT NOT NULL
    );",
    ),
    (
        2,
        "ALTER TABLE token_state ADD COLUMN custody TEXT;
    ALTER TABLE token_state ADD COLUMN valid_until BIGINT CHECK (valid_until >= 0);
    ALTER TABLE token_state ADD COLUMN active_until BIGINT CHECK (active_until >= 0);
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
        validity_days BIGINT CHECK (validity_days > 0),
        created_at BIGINT NOT NULL
    );
    CREATE TABLE key_custody (
        serial TEXT PRIMARY KEY NOT NULL REFERENCES tokens (serial),
        lot TEXT NOT NULL REFERENCES lots (id),
        origin_lot TEXT NOT NULL REFERENCES lots (id),
        return_due BIGINT,
        reserved_for TEXT,
        changed_at BIGINT NOT NULL
    );
    CREATE INDEX key_custody_lot ON key_custody (lot, serial);
    CREATE INDEX token_state_valid_until ON token_state (valid_until)
        WHERE valid_until IS NOT NULL;
    CREATE INDEX token_state_active_until ON token_state (active_until)
        WHERE active_until IS NOT NULL;
    CREATE TABLE key_history (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        serial TEXT NOT NULL,
        at BIGINT NOT NULL,
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
        at BIGINT NOT NULL,
        place TEXT,
        condition TEXT,
        until BIGINT,
        confirmed_at BIGINT,
        confirmed_how TEXT
    );
    CREATE INDEX receipts_serial ON receipts (serial, at);
    CREATE TABLE lot_orders (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        lot TEXT NOT NULL REFERENCES lots (id),
        quantity BIGINT NOT NULL CHECK (quantity > 0),
        state TEXT NOT NULL CHECK (state IN ('open', 'fulfilled', 'cancelled')),
        comment TEXT,
        ordered_by TEXT NOT NULL,
        ordered_at BIGINT NOT NULL,
        closed_by TEXT,
        closed_at BIGINT,
        serials TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX lot_orders_lot ON lot_orders (lot, id);
    CREATE TABLE lot_delegates (
        lot TEXT NOT NULL REFERENCES lots (id),
        person TEXT NOT NULL,
        PRIMARY KEY (lot, person)
    );
    CREATE INDEX lot_delegates_person ON lot_delegates (person, lot);",
    ),
    (
        3,
        "CREATE TABLE outbox (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        template TEXT NOT NULL,
        recipients TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
        attempts BIGINT NOT NULL CHECK (attempts >= 0),
        created_at BIGINT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        last_error TEXT,
        sent_at BIGINT
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX outbox_state ON outbox (state, id);",
    ),
    (
        4,
        "CREATE TABLE units (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('school', 'district', 'rectorat', 'support_centre',
                                           'it_department', 'exams_office')),
        under_contract BIGINT CHECK (under_contract IN (0, 1)),
        parent TEXT,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE people (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        email TEXT NOT NULL,
        unit TEXT NOT NULL,
        manager TEXT,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX people_unit ON people (unit, id);
    CREATE TABLE person_functions (
        person TEXT NOT NULL,
        function TEXT NOT NULL,
        PRIMARY KEY (person, function)
    );
    ALTER TABLE api_keys ADD COLUMN person TEXT;",
    ),
    (5, crate::sqlite::HOLDERS_FOLDED),
    (
        6,
        "CREATE INDEX api_keys_person ON api_keys (person) WHERE person IS NOT NULL;
    CREATE INDEX lots_unit ON lots (unit, kind);",
    ),
    (
        7,
        "ALTER TABLE token_state ADD COLUMN handover_unconfirmed BIGINT NOT NULL DEFAULT 0
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

/// Migration 8 (`crate::sqlite::PIN_SCHEME`), with PostgreSQL's integer type (every integer
/// column here is BIGINT, as `copy_sqlite_to_postgres` expects).
const PIN_SCHEME: &str =
    "ALTER TABLE tokens ADD COLUMN pin_scheme BIGINT NOT NULL DEFAULT 1 CHECK (pin_scheme IN (1, 2));
    DROP VIEW token_rows;
    CREATE VIEW token_rows AS
        SELECT t.serial AS serial, kind, otp, step, t0, suite, algorithm, digits, key_version,
               sealed_seed, sealed_pin_hash, counter, last_step, drift, failures, locked,
               locked_until, status, holder, description, pin_verifier, created_at, updated_at,
               version, custody, valid_until, active_until, handover_unconfirmed, pin_scheme
        FROM tokens t JOIN token_state s ON s.serial = t.serial;";

/// The newest PostgreSQL schema version this build knows.
pub const SCHEMA_VERSION: i64 = 10;

/// Brings the database behind `client` to [`SCHEMA_VERSION`] and returns the version found
/// before. Safe to call from several nodes at once: the first applies, the others wait on the
/// advisory lock and then find nothing left to do. A database written by a newer okey is refused
/// and left untouched.
pub fn migrate(client: &mut postgres::Client) -> Result<i64, StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS okey_schema (
            one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
            version BIGINT NOT NULL
        );
        INSERT INTO okey_schema (one, version) VALUES (TRUE, 0) ON CONFLICT (one) DO NOTHING;",
    )?;
    let found: i64 = tx.query_one("SELECT version FROM okey_schema", &[])?.get(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS {
        if *version > found {
            tx.batch_execute(sql)?;
            tx.execute("UPDATE okey_schema SET version = $1", &[version])?;
        }
    }
    tx.commit()?;
    Ok(found)
}

/// The schema version recorded in the database, 0 when okey never migrated it.
pub fn schema_version(client: &mut postgres::Client) -> Result<i64, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('okey_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT version FROM okey_schema", &[])?
        .get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sqlite_migration_has_a_postgres_counterpart() {
        let sqlite: Vec<i64> = crate::sqlite::MIGRATIONS.iter().map(|m| m.0).collect();
        let pg: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(
            sqlite, pg,
            "a SQLite migration lacks its PostgreSQL counterpart"
        );
        // SQLite refuses to reopen a store whose user_version passes its SCHEMA_VERSION.
        assert_eq!(sqlite.last().copied(), Some(crate::sqlite::SCHEMA_VERSION));
        assert_eq!(crate::sqlite::SCHEMA_VERSION, SCHEMA_VERSION);
        assert_eq!(pg.last().copied(), Some(SCHEMA_VERSION));
    }
}
