//! The store's errors: each one a sentence an operator can act on, never a secret in the text.

use std::path::PathBuf;

/// Everything that can go wrong in the store. Texts never contain seeds, PINs, passcodes or keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A request was malformed; nothing was written.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is expected.
        why: String,
    },
    /// No token has this serial.
    #[error("no token has serial {0:?}")]
    UnknownSerial(String),
    /// A token with this serial already exists; nothing was written.
    #[error("a token with serial {0:?} already exists")]
    DuplicateSerial(String),
    /// No API key has this name.
    #[error("no API key is named {0:?}")]
    UnknownApiKey(String),
    /// An API key (enabled or revoked) already has this name.
    #[error("an API key named {0} exists already (names are never reused, revoked or not)")]
    ApiKeyNameTaken(String),
    /// Another API key already has this hash.
    #[error("another API key already has this key hash")]
    DuplicateApiKey,
    /// The requested change is not allowed from the token's current state.
    #[error("{0}")]
    Precondition(String),
    /// The acting person may not do this to this key or lot (not their lot, not their function).
    #[error("{0}")]
    Forbidden(String),
    /// No lot has this id.
    #[error("no lot has id {0:?}")]
    UnknownLot(String),
    /// The master key file has permissions looser than 0600.
    #[error(
        "the master key file {path} has mode {mode:04o}; it must be readable by its owner only (chmod 600)"
    )]
    LooseKeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A store file (database, its -wal or -shm, the lock file) has permissions looser than 0600.
    #[error(
        "the store file {path} has mode {mode:04o}; it must be readable and writable by its owner only (chmod 600 the okey.db* and okey.lock files)"
    )]
    LooseFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The master key file is not exactly 32 bytes.
    #[error(
        "the master key file {path} is {len} bytes long; a master key is exactly 32 bytes (truncated or not a key file)"
    )]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The master key is missing while the store already holds data.
    #[error(
        "the master key file {0} does not exist but the store already holds sealed data; restore the key file instead of starting with a new one"
    )]
    MissingMasterKey(PathBuf),
    /// The master key from an environment variable is absent or not 64 hex digits.
    #[error("environment variable {0} must hold the master key as 64 hex digits")]
    BadKeyEnv(String),
    /// The HSM holding the master key cannot be used: module, token, session or key missing.
    /// okey never falls back to another master key.
    #[error("the HSM holding the master key is unusable: {0}")]
    Hsm(String),
    /// The HSM refused the user PIN.
    #[error(
        "the HSM refused the user PIN for {0} (wrong PIN; the token may lock after more tries)"
    )]
    HsmPin(String),
    /// No key with this label is on the token.
    #[error(
        "{0}: no AES key with this label is on the token (create it with okey store rotate-master --generate)"
    )]
    HsmKeyMissing(String),
    /// The PIN file or variable is unusable.
    #[error("HSM PIN: {0}")]
    HsmPinSource(String),
    /// The HSM went away while the store was open: keys already unsealed in memory go on
    /// verifying, nothing new is sealed or unsealed until it is back.
    #[error(
        "the HSM holding the master key is unreachable ({0}): nothing can be sealed or unsealed until it is back (tokens already in memory go on verifying)"
    )]
    HsmGone(String),
    /// The master key does not open the store's data key.
    #[error("the master key does not open this store's data key (wrong master key?)")]
    WrongMasterKey,
    /// A sealed blob failed authentication: tampered with, moved from another row, or sealed
    /// under another key. Nothing from it is served.
    #[error("sealed {what} of {subject:?} failed authentication (tampered, moved or wrong key)")]
    Unseal {
        /// What kind of secret: seed, pepper, audit key, data key.
        what: &'static str,
        /// Whose secret it is (a serial or a secret name).
        subject: String,
    },
    /// A backup file could not be opened: wrong passphrase, or the file was changed or cut.
    #[error("the backup cannot be opened: wrong passphrase, or the file was changed or truncated")]
    BackupAuth,
    /// A backup file is not in okey's format.
    #[error("not an okey backup file: {0}")]
    BackupFormat(String),
    /// Restore targets a store that already holds data.
    #[error("restore needs an empty data directory; {0} already holds a store with data")]
    NotEmpty(PathBuf),
    /// The database was written by a newer okey.
    #[error("the database schema version {found} is newer than this okey supports ({supported})")]
    SchemaTooNew {
        /// Version found on disk.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The database reported corruption or an inconsistency.
    #[error("store integrity problem: {0}")]
    Corrupt(String),
    /// The state changed under a compare-and-set. The store retries internally; callers only
    /// see this after many consecutive losses.
    #[error("the token changed concurrently too many times; try again")]
    Conflict,
    /// The feature is not available for this token.
    #[error("{0}")]
    Unsupported(String),
    /// The writer thread has stopped (the store is shutting down or a fatal error occurred).
    #[error("the store's writer has stopped")]
    WriterGone,
    /// A database error.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// A PostgreSQL error.
    #[error("postgresql error: {0}")]
    Postgres(#[from] postgres::Error),
    /// A file system error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn invalid(field: &'static str, why: impl Into<String>) -> Self {
        StoreError::Invalid {
            field,
            why: why.into(),
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
