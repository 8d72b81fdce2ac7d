//! The storage interface: what any database under the store must provide.
//!
//! The store keeps all cryptography, caching, verification and the write protocol above this
//! line; a backend only stores rows. [`Backend`] serves reads from any thread; [`WriteTx`] is the
//! single write session the writer thread owns. SQLite implements both today
//! ([`crate::sqlite`]); a PostgreSQL backend with the same schema must keep these promises:
//!
//! * **Durable commit before acknowledgement.** [`WriteTx::commit`] returns `Ok` only once the
//!   transaction survives a power cut (SQLite: WAL + `synchronous=FULL`; PostgreSQL:
//!   `synchronous_commit = on`, and `remote_apply` or `on` with synchronous replicas when a
//!   replica may be promoted).
//! * **Compare-and-set on a row.** [`WriteTx::update_token`] changes a row only if its `version`
//!   still equals the one the caller read, and bumps it, as one statement with the condition in
//!   its `WHERE` clause (PostgreSQL: `UPDATE ... WHERE serial = $1 AND version = $2` under READ
//!   COMMITTED re-checks the condition on the latest row version, which is what we need). Counters
//!   and last steps never move backwards; the statement also refuses that.
//! * **A serial audit chain.** Audit records are appended with consecutive sequence numbers, each
//!   MAC covering the previous one. With several okey nodes, appends must be serialised (e.g. a
//!   `SELECT ... FOR UPDATE` of the chain head row, or an advisory lock, inside the transaction).
//! * **Savepoints.** One request's failure rolls back that request only ([`WriteTx::savepoint`]).
//! * **Atomic batches.** Everything between [`WriteTx::begin`] and [`WriteTx::commit`] is one
//!   transaction: all of it is durable, or none of it.
//! * Several nodes: each node caches rows, so the store re-reads a row before any rejection that
//!   did not go through a compare-and-set, and every state change is a compare-and-set; stale
//!   caches therefore cost a retry, never a wrong accept.

use okey_domain::KeyState;

use crate::StoreError;
use crate::custody_db::{CustodyRead, CustodyTx};
use crate::outbox::{MailRow, MailState, NewMail, OutboxStats};
use crate::types::{
    Algorithm, ApiPrincipal, AuditRecord, OtpKind, TokenFilter, TokenKind, TokenStatus,
};

/// A token as stored: public fields and sealed secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// Serial (primary key).
    pub serial: String,
    /// Hardware or software.
    pub kind: TokenKind,
    /// Scheme and parameters.
    pub otp: OtpKind,
    /// HMAC hash.
    pub algorithm: Algorithm,
    /// Digits.
    pub digits: u8,
    /// Version of the data key the seed is sealed under.
    pub key_version: u32,
    /// The sealed seed.
    pub sealed_seed: Vec<u8>,
    /// For PIN-bound OCRA suites: the sealed hash of the PIN.
    pub sealed_pin_hash: Option<Vec<u8>>,
    /// Next counter.
    pub counter: u64,
    /// Last TOTP step accepted.
    pub last_step: Option<u64>,
    /// TOTP drift.
    pub drift: i64,
    /// Consecutive failures.
    pub failures: u32,
    /// Hard lock.
    pub locked: bool,
    /// Soft lock end.
    pub locked_until: Option<u64>,
    /// Status.
    pub status: TokenStatus,
    /// Holder.
    pub holder: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Server-side PIN verifier.
    pub pin_verifier: Option<[u8; 32]>,
    /// Creation time.
    pub created_at: u64,
    /// Last change.
    pub updated_at: u64,
    /// Row version, bumped by every change: the compare-and-set token.
    pub version: u64,
    /// Custody state; `None` for a key in no lot (issued directly to its holder).
    pub custody: Option<KeyState>,
    /// Validity end (Unix time): no code is accepted from then on.
    pub valid_until: Option<u64>,
    /// Deactivation time (end of function, end of a deputy's period): no code is accepted
    /// from then on.
    pub active_until: Option<u64>,
    /// Handed over, and the holder has not yet signed the receipt: the first accepted code
    /// signs it (in the verify's own commit).
    pub handover_unconfirmed: bool,
    /// What `pin_verifier` is bound to: 1 the token, 2 the holder (`okey_otp::PinBinding`).
    pub pin_scheme: u8,
}

/// The PIN scheme column, checked.
pub(crate) fn pin_scheme(v: i64) -> Result<u8, StoreError> {
    match v {
        1 => Ok(1),
        2 => Ok(2),
        _ => Err(StoreError::Corrupt(format!("unknown PIN scheme {v}"))),
    }
}

/// The moving part of a token row: what a verify changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenState {
    /// Next counter.
    pub counter: u64,
    /// Last TOTP step accepted.
    pub last_step: Option<u64>,
    /// TOTP drift.
    pub drift: i64,
    /// Consecutive failures.
    pub failures: u32,
    /// Hard lock.
    pub locked: bool,
    /// Soft lock end.
    pub locked_until: Option<u64>,
    /// Status (a pending token becomes active with its first valid code).
    pub status: TokenStatus,
    /// Time of the change.
    pub updated_at: u64,
    /// Custody state (see [`TokenRow::custody`]).
    pub custody: Option<KeyState>,
    /// Validity end.
    pub valid_until: Option<u64>,
    /// Deactivation time.
    pub active_until: Option<u64>,
    /// See [`TokenRow::handover_unconfirmed`].
    pub handover_unconfirmed: bool,
}

impl TokenRow {
    /// The moving part of this row.
    pub fn state(&self) -> TokenState {
        TokenState {
            counter: self.counter,
            last_step: self.last_step,
            drift: self.drift,
            failures: self.failures,
            locked: self.locked,
            locked_until: self.locked_until,
            status: self.status,
            updated_at: self.updated_at,
            custody: self.custody,
            valid_until: self.valid_until,
            active_until: self.active_until,
            handover_unconfirmed: self.handover_unconfirmed,
        }
    }

    /// Copy a state into this row.
    pub fn set_state(&mut self, s: &TokenState) {
        self.counter = s.counter;
        self.last_step = s.last_step;
        self.drift = s.drift;
        self.failures = s.failures;
        self.locked = s.locked;
        self.locked_until = s.locked_until;
        self.status = s.status;
        self.updated_at = s.updated_at;
        self.custody = s.custody;
        self.valid_until = s.valid_until;
        self.active_until = s.active_until;
        self.handover_unconfirmed = s.handover_unconfirmed;
    }
}

/// A wrapped data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataKeyRow {
    /// Version.
    pub version: u32,
    /// The key sealed under the master key.
    pub wrapped: Vec<u8>,
    /// Whether new seals use it.
    pub active: bool,
}

/// One item of a consistent export (backup).
#[derive(Debug)]
pub enum ExportItem {
    /// A sealed store secret: name, key version, blob.
    Secret(String, u32, Vec<u8>),
    /// A token row.
    Token(Box<TokenRow>),
    /// An audit record.
    Audit(AuditRecord),
    /// A row of a table the backup carries as it is (every table not in [`TYPED_TABLES`]).
    Row(TableRow),
    /// An attachment, its content sealed under a data key (the backup opens it).
    Attachment(Box<crate::attachments::AttachmentRow>),
}

/// The tables a backup carries through typed records, because a restore cannot copy them as
/// they are: data keys and secrets are re-sealed under the new master key, seeds and OCRA PIN
/// hashes re-sealed under the new data key (`tokens`, with `token_state`), and the audit chain
/// is re-checked and extended. Every other table is carried row by row, column by column
/// ([`ExportItem::Row`]), so a table added later is in the next backup without anyone listing
/// it. A table that keeps blobs sealed under the data keys must be added here with a typed
/// record that opens and re-seals them: an export refuses a carried table with a column whose
/// name starts with `sealed`.
pub const TYPED_TABLES: &[&str] = &[
    "data_keys",
    "secrets",
    "tokens",
    "token_state",
    "audit",
    "attachments",
];

/// Tables carried as rows that others refer to, exported (and so restored) first.
pub(crate) const ROWS_FIRST: &[&str] = &["lots", "units"];

/// Whether an export carries `table` as rows (a table of okey's, not a typed one).
pub(crate) fn carried_as_rows(table: &str) -> bool {
    !TYPED_TABLES.contains(&table) && !table.starts_with("sqlite_") && table != "okey_schema"
}

/// `tables` with [`ROWS_FIRST`] first, the rest by name.
pub(crate) fn carried_in_order(mut tables: Vec<String>) -> Vec<String> {
    tables.retain(|t| carried_as_rows(t));
    tables.sort();
    tables.sort_by_key(|t| {
        ROWS_FIRST
            .iter()
            .position(|f| f == t)
            .unwrap_or(ROWS_FIRST.len())
    });
    tables
}

/// Refuse to carry, as it is, a column sealed under a data key the restored store will not have.
pub(crate) fn check_carried_column(table: &str, column: &str) -> Result<(), StoreError> {
    if column.starts_with("sealed") {
        return Err(StoreError::Corrupt(format!(
            "table {table} keeps sealed column {column}, which a backup cannot carry as it is: \
             it needs a typed backup record that re-seals it"
        )));
    }
    Ok(())
}

/// One value of a carried row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// NULL.
    Null,
    /// An integer (booleans as 0/1).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes (never sealed: see [`TYPED_TABLES`]).
    Blob(Vec<u8>),
}

/// A row of a carried table: its columns by name, in the order of `cells`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRow {
    /// Table name.
    pub table: String,
    /// Column names, shared by the rows of one table.
    pub columns: std::sync::Arc<[String]>,
    /// The values.
    pub cells: Vec<Cell>,
}

/// The read side, safe to share between threads.
pub trait Backend: Send + Sync + 'static {
    /// Open the write session. Called once, by the writer thread.
    fn write_session(&self) -> Result<Box<dyn WriteTx>, StoreError>;
    /// One token.
    fn token(&self, serial: &str) -> Result<Option<TokenRow>, StoreError>;
    /// A holder's tokens, in serial order.
    fn tokens_of(&self, holder: &str) -> Result<Vec<TokenRow>, StoreError>;
    /// A page of tokens in serial order after `after`.
    fn list(
        &self,
        filter: &TokenFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TokenRow>, StoreError>;
    /// Number of tokens.
    fn token_count(&self) -> Result<u64, StoreError>;
    /// All wrapped data keys.
    fn data_keys(&self) -> Result<Vec<DataKeyRow>, StoreError>;
    /// A sealed named secret and its key version.
    fn secret(&self, name: &str) -> Result<Option<(u32, Vec<u8>)>, StoreError>;
    /// Call `f` on every audit record from `from_seq` in order until it returns false.
    fn audit_scan(
        &self,
        from_seq: u64,
        f: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError>;
    /// The last `limit` audit records, newest first.
    fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
    /// An API key by hash.
    fn api_key(&self, key_hash: &[u8; 32]) -> Result<Option<ApiPrincipal>, StoreError>;
    /// All API keys with their hashes, by name.
    fn api_keys(&self) -> Result<Vec<(ApiPrincipal, [u8; 32])>, StoreError>;
    /// Stream everything a backup needs from one consistent snapshot: secrets, then tokens in
    /// serial order, then API keys, then the audit chain in order.
    fn export(
        &self,
        sink: &mut dyn FnMut(ExportItem) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// The database's own consistency check (`ok` when sound).
    fn integrity_check(&self) -> Result<String, StoreError>;
    /// Lots and custody (reads).
    fn custody(&self) -> &dyn CustodyRead;

    /// Up to `limit` pending mails whose next attempt is due at `now`, oldest first.
    fn mail_due(&self, now: u64, limit: u32) -> Result<Vec<MailRow>, StoreError>;
    /// The earliest next attempt among pending mails.
    fn mail_next_due(&self) -> Result<Option<u64>, StoreError>;
    /// Mails in one of `states`, oldest first.
    fn mail_list(&self, states: &[MailState], limit: u32) -> Result<Vec<MailRow>, StoreError>;
    /// Outbox counts.
    fn mail_stats(&self) -> Result<OutboxStats, StoreError>;
    /// The directory (reads).
    fn directory(&self) -> &dyn crate::directory_db::DirectoryRead;
    /// The support desk's tables.
    fn support(&self) -> &dyn crate::support_db::SupportRead;
}

/// The write session, owned by the writer thread.
pub trait WriteTx: Send {
    /// Start a transaction.
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Commit durably.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Abandon the transaction.
    fn rollback(&mut self) -> Result<(), StoreError>;
    /// Mark a point to roll back to (one request).
    fn savepoint(&mut self) -> Result<(), StoreError>;
    /// Keep the request's changes.
    fn release(&mut self) -> Result<(), StoreError>;
    /// Undo the request's changes.
    fn rollback_savepoint(&mut self) -> Result<(), StoreError>;

    /// One token, as this transaction sees it.
    fn token(&mut self, serial: &str) -> Result<Option<TokenRow>, StoreError>;
    /// Insert a token; [`StoreError::DuplicateSerial`] if the serial exists.
    fn insert_token(&mut self, row: &TokenRow) -> Result<(), StoreError>;
    /// Compare-and-set: write `row` (with version `expect_version + 1`) if the stored version is
    /// `expect_version` and neither the counter nor the last step moves backwards. False if not.
    fn update_token(&mut self, expect_version: u64, row: &TokenRow) -> Result<bool, StoreError>;
    /// Compare-and-set of the moving part only (the verify commit): same conditions as
    /// [`WriteTx::update_token`].
    fn update_state(
        &mut self,
        serial: &str,
        expect_version: u64,
        state: &TokenState,
    ) -> Result<bool, StoreError>;
    /// Replace a token's sealed secrets (data-key rotation); the version is not bumped.
    fn reseal_token(
        &mut self,
        serial: &str,
        key_version: u32,
        sealed_seed: &[u8],
        sealed_pin_hash: Option<&[u8]>,
    ) -> Result<(), StoreError>;
    /// Up to `limit` tokens sealed under a key version other than `version`.
    fn tokens_not_sealed_under(
        &mut self,
        version: u32,
        limit: u32,
    ) -> Result<Vec<TokenRow>, StoreError>;
    /// Whether the store holds no tokens, no API keys and no audit records.
    fn is_empty(&mut self) -> Result<bool, StoreError>;
    /// Insert a carried row of a backup as it is (restore into an empty store).
    fn insert_row(&mut self, row: &TableRow) -> Result<(), StoreError>;
    /// After the last [`WriteTx::insert_row`]: generated ids continue after the restored ones.
    fn rows_inserted(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The last audit record's sequence number and MAC.
    fn audit_head(&mut self) -> Result<Option<(u64, [u8; 32])>, StoreError>;
    /// Append an audit record (its sequence number must be the head's plus one).
    fn insert_audit(&mut self, rec: &AuditRecord) -> Result<(), StoreError>;

    /// Insert an API key; [`StoreError::ApiKeyNameTaken`] if any key (even a revoked one) has
    /// this name, [`StoreError::DuplicateApiKey`] if one has this hash.
    fn add_api_key(
        &mut self,
        name: &str,
        key_hash: &[u8; 32],
        roles: &[String],
        at: u64,
    ) -> Result<(), StoreError>;
    /// Disable an API key; false if no key has this name.
    fn disable_api_key(&mut self, name: &str) -> Result<bool, StoreError>;

    /// All wrapped data keys.
    fn data_keys(&mut self) -> Result<Vec<DataKeyRow>, StoreError>;
    /// Insert or replace a wrapped data key; `active` makes it the only active one.
    fn put_data_key(&mut self, row: &DataKeyRow) -> Result<(), StoreError>;
    /// Remove a data key no row is sealed under any more.
    fn delete_data_key(&mut self, version: u32) -> Result<(), StoreError>;
    /// Insert or replace a sealed named secret.
    fn put_secret(&mut self, name: &str, version: u32, sealed: &[u8]) -> Result<(), StoreError>;
    /// All sealed named secrets.
    fn secrets(&mut self) -> Result<Vec<(String, u32, Vec<u8>)>, StoreError>;
    /// Lots and custody, in this transaction.
    fn custody(&mut self) -> &mut dyn CustodyTx;

    /// Append a mail to the outbox, pending and due at `now`, in this transaction. Its
    /// Message-ID must be new. Returns the row id.
    fn enqueue_mail(&mut self, mail: &NewMail, now: u64) -> Result<u64, StoreError>;
    /// Record the outcome of a delivery attempt of a pending mail: its new state, attempt
    /// count, and either the next attempt's time (still pending) or the time of the outcome.
    /// False if the mail is not pending (already sent or given up).
    fn mail_outcome(
        &mut self,
        id: u64,
        state: MailState,
        attempts: u32,
        at: u64,
        error: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// The directory, in this transaction.
    fn directory(&mut self) -> &mut dyn crate::directory_db::DirectoryTx;
    /// The support desk's tables.
    fn support(&mut self) -> &mut dyn crate::support_db::SupportTx;
    /// Requests, charters, pickup slots and attachments, in this transaction.
    fn requests(&mut self) -> &mut dyn crate::request_db::RequestTx;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_tables_are_not_carried_as_rows_and_sealed_columns_are_refused() {
        for t in TYPED_TABLES {
            assert!(!carried_as_rows(t), "{t}");
        }
        assert!(!carried_as_rows("okey_schema"));
        assert!(!carried_as_rows("sqlite_sequence"));
        assert!(carried_as_rows("receipts"));
        let order = carried_in_order(vec![
            "receipts".into(),
            "tokens".into(),
            "lots".into(),
            "audit".into(),
            "api_keys".into(),
        ]);
        assert_eq!(order, ["lots", "api_keys", "receipts"]);
        assert!(check_carried_column("attachments", "sealed_content").is_err());
        assert!(check_carried_column("receipts", "holder").is_ok());
    }
}
