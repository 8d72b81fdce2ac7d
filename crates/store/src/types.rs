//! The store's public vocabulary: tokens, verify requests and outcomes, audit entries, configuration.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use zeroize::Zeroizing;

pub use okey_otp::Algorithm;

use crate::StoreError;

/// Hardware (a physical device) or software (an app).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A physical token.
    Hardware,
    /// A software token (an authenticator app).
    Software,
}

impl TokenKind {
    /// Stable lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenKind::Hardware => "hardware",
            TokenKind::Software => "software",
        }
    }
}

impl FromStr for TokenKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "hardware" => Ok(TokenKind::Hardware),
            "software" => Ok(TokenKind::Software),
            _ => Err(StoreError::invalid("kind", "expected hardware or software")),
        }
    }
}

/// Which one-time-password scheme a token runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OtpKind {
    /// RFC 4226 counter-based codes.
    Hotp,
    /// RFC 6238 time-based codes.
    Totp {
        /// Time step in seconds (1 to 86400).
        step: u32,
        /// Unix time of step 0.
        t0: u64,
    },
    /// RFC 6287 challenge-response with this suite, e.g. `OCRA-1:HOTP-SHA1-6:QN08`.
    Ocra {
        /// The suite text.
        suite: String,
    },
}

impl OtpKind {
    /// Stable lower-case name of the scheme.
    pub fn as_str(&self) -> &'static str {
        match self {
            OtpKind::Hotp => "hotp",
            OtpKind::Totp { .. } => "totp",
            OtpKind::Ocra { .. } => "ocra",
        }
    }
}

/// Where a token is in its life. Only `Active` tokens verify; a `Pending` token becomes `Active`
/// with its first valid code; `Revoked` is final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenStatus {
    /// Being initialised (e.g. on the technician's bench).
    Initialising,
    /// Handed over, waiting for its first valid code.
    Pending,
    /// In use.
    Active,
    /// Temporarily out of use.
    Disabled,
    /// Permanently out of use.
    Revoked,
}

impl TokenStatus {
    /// The same status in the domain's terms (where the allowed changes are defined).
    pub const fn domain(self) -> okey_domain::Status {
        match self {
            TokenStatus::Initialising => okey_domain::Status::Initialising,
            TokenStatus::Pending => okey_domain::Status::Pending,
            TokenStatus::Active => okey_domain::Status::Active,
            TokenStatus::Disabled => okey_domain::Status::Disabled,
            TokenStatus::Revoked => okey_domain::Status::Revoked,
        }
    }

    /// Stable lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Initialising => "initialising",
            TokenStatus::Pending => "pending",
            TokenStatus::Active => "active",
            TokenStatus::Disabled => "disabled",
            TokenStatus::Revoked => "revoked",
        }
    }
}

impl FromStr for TokenStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "initialising" => Ok(TokenStatus::Initialising),
            "pending" => Ok(TokenStatus::Pending),
            "active" => Ok(TokenStatus::Active),
            "disabled" => Ok(TokenStatus::Disabled),
            "revoked" => Ok(TokenStatus::Revoked),
            _ => Err(StoreError::invalid(
                "status",
                "expected initialising, pending, active, disabled or revoked",
            )),
        }
    }
}

/// A token to create or import. The seed is zeroized on drop and never printed.
#[derive(Clone)]
pub struct NewToken {
    /// Serial as printed on the device (1 to 64 of `A-Z a-z 0-9 . _ -`; leading zeros kept).
    pub serial: String,
    /// Hardware or software.
    pub kind: TokenKind,
    /// HOTP, TOTP or OCRA.
    pub otp: OtpKind,
    /// HMAC hash (for OCRA it must match the suite's).
    pub algorithm: Algorithm,
    /// Digits shown (HOTP/TOTP: 6 to 10; OCRA: the suite's, 0 for "no truncation").
    pub digits: u8,
    /// The secret seed (16 to 1024 bytes).
    pub seed: Zeroizing<Vec<u8>>,
    /// Next HOTP/OCRA counter (at most 2^63 - 1).
    pub counter: u64,
    /// Known TOTP drift in steps.
    pub drift: i64,
    /// Initial status (not `Revoked`).
    pub status: TokenStatus,
    /// Person holding the token, if any.
    pub holder: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// End of validity from the seed file (PSKC `ExpiryDate`); a key past it imports expired.
    pub valid_until: Option<u64>,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("serial", &self.serial)
            .field("kind", &self.kind)
            .field("otp", &self.otp)
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("seed", &"<secret>")
            .field("counter", &self.counter)
            .field("drift", &self.drift)
            .field("status", &self.status)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// What the store tells about a token: everything but the seed and the PIN verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Serial.
    pub serial: String,
    /// Hardware or software.
    pub kind: TokenKind,
    /// Scheme and its parameters.
    pub otp: OtpKind,
    /// HMAC hash.
    pub algorithm: Algorithm,
    /// Digits.
    pub digits: u8,
    /// Next HOTP/OCRA counter that may match.
    pub counter: u64,
    /// Last TOTP step accepted.
    pub last_step: Option<u64>,
    /// TOTP drift in steps.
    pub drift: i64,
    /// Consecutive failures.
    pub failures: u32,
    /// Hard-locked until support unlocks it.
    pub locked: bool,
    /// Soft-locked until this Unix time.
    pub locked_until: Option<u64>,
    /// Life-cycle status.
    pub status: TokenStatus,
    /// Holder.
    pub holder: Option<String>,
    /// Whether a server-side PIN is set.
    pub has_pin: bool,
    /// Creation time (Unix seconds).
    pub created_at: u64,
    /// Last change (Unix seconds).
    pub updated_at: u64,
    /// Free text.
    pub description: Option<String>,
}

/// Who or what a verify is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    /// One token by serial.
    Serial(&'a str),
    /// All active or pending tokens of a holder.
    User(&'a str),
}

/// One verification request.
#[derive(Clone, Copy)]
pub struct VerifyRequest<'a> {
    /// Token or user.
    pub subject: Subject<'a>,
    /// `PIN ‖ OTP` when the token has a server-side PIN, else the OTP.
    pub passcode: &'a str,
    /// Unix time of the request.
    pub now: u64,
    /// The caller on whose behalf this runs (audited).
    pub actor: &'a Actor,
    /// The front end or client address (audited).
    pub client: &'a str,
}

impl fmt::Debug for VerifyRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("subject", &self.subject)
            .field("passcode", &"<secret>")
            .field("now", &self.now)
            .field("actor", &self.actor)
            .field("client", &self.client)
            .finish()
    }
}

/// The answer to a verify, resync or OCRA check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOutcome {
    /// True only when the code was valid and the new state is durably committed.
    pub accepted: bool,
    /// The token the outcome is about, when one was identified.
    pub serial: Option<String>,
    /// Why.
    pub reason: Reason,
}

/// Why a verify ended as it did. [`Reason::as_str`] gives stable codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Valid code, state committed.
    Accepted,
    /// First valid code of a pending token: it is now active.
    Confirmed,
    /// Two consecutive codes moved the token's state.
    Resynced,
    /// The code did not match (counts as a failure).
    WrongCode,
    /// The server-side PIN did not match (counts as a failure).
    WrongPin,
    /// The code was just used by a concurrent request (not counted as a failure).
    Replay,
    /// Hard-locked after too many failures; support must unlock.
    Locked,
    /// Soft-locked for a while after a few failures.
    SoftLocked,
    /// The token is not active (initialising, disabled or revoked).
    NotActive,
    /// No such token or user.
    UnknownSubject,
    /// The passcode has the wrong shape (not counted as a failure: no code was tested).
    BadFormat,
    /// The user holds tokens, but none that can verify.
    NoTokens,
    /// The token answers challenges (OCRA) and cannot verify a plain code.
    ChallengeRequired,
}

impl Reason {
    /// Stable snake-case code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "accepted",
            Reason::Confirmed => "confirmed",
            Reason::Resynced => "resynced",
            Reason::WrongCode => "wrong_code",
            Reason::WrongPin => "wrong_pin",
            Reason::Replay => "replay",
            Reason::Locked => "locked",
            Reason::SoftLocked => "soft_locked",
            Reason::NotActive => "not_active",
            Reason::UnknownSubject => "unknown_subject",
            Reason::BadFormat => "bad_format",
            Reason::NoTokens => "no_tokens",
            Reason::ChallengeRequired => "challenge_required",
        }
    }

    /// Whether the outcome counts toward the lockout.
    pub const fn is_failure(self) -> bool {
        matches!(self, Reason::WrongCode | Reason::WrongPin)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked for a change or a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Caller name (an API key's name, a user, "system").
    pub name: String,
    /// The role the caller acted in.
    pub role: String,
}

impl Actor {
    /// A caller with a name and role.
    pub fn new(name: impl Into<String>, role: impl Into<String>) -> Self {
        Actor {
            name: name.into(),
            role: role.into(),
        }
    }
}

/// One audit entry. Never a passcode, PIN or seed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AuditEntry {
    /// Caller name.
    pub actor: String,
    /// What was done (`verify`, `token.create`, ...).
    pub action: String,
    /// What it was about (a serial, a user, an API key name).
    pub subject: String,
    /// The token concerned, if any.
    pub serial: Option<String>,
    /// `ok`, `rejected`, `error`.
    pub result: String,
    /// A stable reason code or a short sentence.
    pub reason: String,
    /// Unix time.
    pub at: u64,
}

/// An audit entry as stored: its place in the chain and its chained MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Sequence number, from 1, without gaps.
    pub seq: u64,
    /// The entry.
    pub entry: AuditEntry,
    /// The previous record's MAC (zeros for the first).
    pub prev: [u8; 32],
    /// HMAC-SHA256 under the sealed audit key of `prev ‖ seq ‖ entry`.
    pub mac: [u8; 32],
}

/// The result of walking the audit chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Records checked.
    pub records: u64,
    /// The first sequence number at which the chain breaks, if it does.
    pub first_bad: Option<u64>,
    /// What is wrong there.
    pub problem: Option<String>,
    /// The last record that chains correctly: its sequence number and MAC. Kept outside the
    /// database (a log pipeline, a ticket), it is the anchor a later check uses to detect that
    /// the newest records were removed, which the chain alone cannot show.
    pub head: Option<AuditAnchor>,
}

/// A record known from outside the database: its sequence number and MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditAnchor {
    /// Sequence number.
    pub seq: u64,
    /// The record's MAC.
    pub mac: [u8; 32],
}

impl AuditReport {
    /// True when the whole chain checks out.
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// A caller of the API, found by the hash of its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiPrincipal {
    /// Key name.
    pub name: String,
    /// Roles it may act in.
    pub roles: Vec<String>,
    /// Revoked keys are kept, disabled.
    pub disabled: bool,
}

/// A filter for [`crate::Store::list_tokens`]; `None` fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenFilter {
    /// Only this status.
    pub status: Option<TokenStatus>,
    /// Only this holder.
    pub holder: Option<String>,
    /// Only this kind.
    pub kind: Option<TokenKind>,
    /// Only serials starting with this.
    pub serial_prefix: Option<String>,
}

/// Failure counting and locking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures after which the token is locked until support unlocks it.
    pub hard_after: u32,
    /// Consecutive failures after which (and after each further one) the token is soft-locked.
    pub soft_after: Option<u32>,
    /// How long a soft lock lasts.
    pub soft_lock_seconds: u64,
}

/// The longest soft lock a [`LockoutPolicy`] may ask for (one year). A soft lock slows guessing;
/// locking for longer is what `hard_after` is for.
pub const MAX_SOFT_LOCK_SECONDS: u64 = 366 * 86_400;

impl LockoutPolicy {
    /// Check the policy: a soft lock of at most [`MAX_SOFT_LOCK_SECONDS`].
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.soft_lock_seconds > MAX_SOFT_LOCK_SECONDS {
            return Err(StoreError::invalid(
                "lockout.soft_lock_seconds",
                format!(
                    "must be at most {MAX_SOFT_LOCK_SECONDS} seconds (a year), got {}",
                    self.soft_lock_seconds
                ),
            ));
        }
        Ok(())
    }
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            hard_after: 10,
            soft_after: Some(3),
            soft_lock_seconds: 30,
        }
    }
}

/// How commits reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// One writer batches every queued commit into one fsync'd transaction.
    #[default]
    GroupCommit,
    /// One fsync'd transaction per state change (the baseline the benchmark compares against).
    PerCommit,
}

/// Where the master key comes from.
#[derive(Clone)]
pub enum MasterKeySource {
    /// A 32-byte key file, created (mode 0600) if it does not exist and the store is new.
    File(PathBuf),
    /// An environment variable holding the key as 64 hex digits.
    Env(String),
    /// The key itself (tests, or a key fetched from elsewhere by the caller).
    Bytes(Zeroizing<[u8; 32]>),
    /// An AES-256 key inside a hardware security module, used through its PKCS#11 module: the
    /// data keys are wrapped and unwrapped by the HSM, the master key never leaves it.
    Pkcs11(Pkcs11Source),
}

impl fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterKeySource::File(p) => f.debug_tuple("File").field(p).finish(),
            MasterKeySource::Env(v) => f.debug_tuple("Env").field(v).finish(),
            MasterKeySource::Bytes(_) => f.write_str("Bytes(<secret>)"),
            MasterKeySource::Pkcs11(p) => f.debug_tuple("Pkcs11").field(p).finish(),
        }
    }
}

impl fmt::Display for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterKeySource::File(p) => write!(f, "the key file {}", p.display()),
            MasterKeySource::Env(v) => write!(f, "the environment variable {v}"),
            MasterKeySource::Bytes(_) => f.write_str("a key given by the caller"),
            MasterKeySource::Pkcs11(p) => write!(f, "{p}"),
        }
    }
}

impl MasterKeySource {
    /// Parse `file:PATH` or a PKCS#11 URI (RFC 7512):
    /// `pkcs11:token=LABEL;object=KEY-LABEL?module-path=/path/to/module.so&pin-source=/path/to/pin`
    /// (`slot-id=N` instead of `token=`; `pin-env=VAR` instead of `pin-source=`; values may be
    /// percent-encoded).
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err(StoreError::invalid("master key", "file: needs a path"));
            }
            return Ok(MasterKeySource::File(PathBuf::from(path)));
        }
        if text.starts_with("pkcs11:") {
            return Pkcs11Source::parse_uri(text).map(MasterKeySource::Pkcs11);
        }
        Err(StoreError::invalid(
            "master key",
            "expected file:PATH or a pkcs11: URI",
        ))
    }
}

/// Which token of a PKCS#11 module holds the master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pkcs11Token {
    /// The token in this slot.
    Slot(u64),
    /// The token with this label.
    Label(String),
}

/// Where the HSM user PIN comes from (never the command line, never the configuration file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// A file readable by its owner only (mode 0600 or stricter); a trailing newline is ignored.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// A master key held in an HSM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Source {
    /// The PKCS#11 module (shared library) of the HSM.
    pub module: PathBuf,
    /// Which token.
    pub token: Pkcs11Token,
    /// Label (CKA_LABEL) of the AES-256 key.
    pub key_label: String,
    /// The user PIN.
    pub pin: PinSource,
}

impl fmt::Display for Pkcs11Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the HSM key {:?} on ", self.key_label)?;
        match &self.token {
            Pkcs11Token::Slot(s) => write!(f, "slot {s}")?,
            Pkcs11Token::Label(l) => write!(f, "token {l:?}")?,
        }
        write!(f, " of the PKCS#11 module {}", self.module.display())
    }
}

fn percent_decode(field: &'static str, s: &str) -> Result<String, StoreError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| StoreError::invalid(field, "bad percent-encoding"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| StoreError::invalid(field, "not UTF-8"))
}

impl Pkcs11Source {
    /// Parse a PKCS#11 URI; see [`MasterKeySource::parse`].
    pub fn parse_uri(uri: &str) -> Result<Self, StoreError> {
        const F: &str = "pkcs11 URI";
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| StoreError::invalid(F, "must start with pkcs11:"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (mut token, mut slot, mut object, mut module, mut pin) = (None, None, None, None, None);
        let attrs = path.split(';').chain(query.split('&'));
        for attr in attrs.filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| StoreError::invalid(F, format!("{attr:?} is not NAME=VALUE")))?;
            let v = percent_decode(F, v)?;
            match k {
                "token" => token = Some(v),
                "slot-id" => {
                    slot = Some(v.parse::<u64>().map_err(|_| {
                        StoreError::invalid(F, format!("slot-id {v:?} is not a number"))
                    })?)
                }
                "object" => object = Some(v),
                "module-path" => module = Some(PathBuf::from(v)),
                "pin-source" => {
                    let p = v.strip_prefix("file:").unwrap_or(&v);
                    pin = Some(PinSource::File(PathBuf::from(p)))
                }
                "pin-env" => pin = Some(PinSource::Env(v)),
                "type" if v == "secret-key" => {}
                "pin-value" => {
                    return Err(StoreError::invalid(
                        F,
                        "a PIN is never given in the URI; use pin-source=FILE (mode 0600) or pin-env=VAR",
                    ));
                }
                _ => {
                    return Err(StoreError::invalid(
                        F,
                        format!(
                            "unknown attribute {k:?} (known: token, slot-id, object, module-path, pin-source, pin-env)"
                        ),
                    ));
                }
            }
        }
        let token = match (token, slot) {
            (Some(l), None) => Pkcs11Token::Label(l),
            (None, Some(s)) => Pkcs11Token::Slot(s),
            _ => {
                return Err(StoreError::invalid(
                    F,
                    "name the token by exactly one of token=LABEL or slot-id=N",
                ));
            }
        };
        let source = Pkcs11Source {
            module: module.ok_or_else(|| StoreError::invalid(F, "module-path=PATH is missing"))?,
            token,
            key_label: object
                .ok_or_else(|| StoreError::invalid(F, "object=KEY-LABEL is missing"))?,
            pin: pin.ok_or_else(|| {
                StoreError::invalid(F, "pin-source=FILE or pin-env=VAR is missing")
            })?,
        };
        source.validate()?;
        Ok(source)
    }

    /// Check the fields are usable (not that the HSM is there).
    pub fn validate(&self) -> Result<(), StoreError> {
        const F: &str = "master_key";
        if self.key_label.is_empty() {
            return Err(StoreError::invalid(F, "the key label is empty"));
        }
        if self.module.as_os_str().is_empty() {
            return Err(StoreError::invalid(F, "the PKCS#11 module path is empty"));
        }
        if matches!(&self.token, Pkcs11Token::Label(l) if l.is_empty()) {
            return Err(StoreError::invalid(F, "the token label is empty"));
        }
        Ok(())
    }
}

/// Which database holds the store.
#[derive(Clone, Default)]
pub enum StoreBackend {
    /// The embedded SQLite database `okey.db` in the data directory (the default).
    #[default]
    Sqlite,
    /// A PostgreSQL database several okey nodes may share: a connection string (a
    /// `postgres://` URL or `key=value` pairs), which may hold the database password.
    Postgres(Zeroizing<String>),
}

impl fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreBackend::Sqlite => f.write_str("Sqlite"),
            // The connection string may carry the password: never printed.
            StoreBackend::Postgres(_) => f.write_str("Postgres(<connection string>)"),
        }
    }
}

/// Store configuration.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Data directory (holds `okey.db` and, by default, `master.key`; with PostgreSQL, only the
    /// default key file).
    pub data_dir: PathBuf,
    /// The database: embedded SQLite (default) or a shared PostgreSQL.
    pub backend: StoreBackend,
    /// Master key source.
    pub master_key: MasterKeySource,
    /// Group commit (default) or one transaction per change.
    pub durability: Durability,
    /// Most unsealed keys held in memory (about 400 bytes each). The cache is split in 16 shards
    /// of `cache_capacity / 16` each, so eviction can begin slightly before the total is reached.
    pub cache_capacity: usize,
    /// Lockout policy.
    pub lockout: LockoutPolicy,
    /// HOTP look-ahead window.
    pub hotp_window: u32,
    /// TOTP steps accepted either side.
    pub totp_skew: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let data_dir = PathBuf::from("./okey-data");
        StoreConfig {
            master_key: MasterKeySource::File(data_dir.join("master.key")),
            data_dir,
            backend: StoreBackend::Sqlite,
            durability: Durability::GroupCommit,
            cache_capacity: 100_000,
            lockout: LockoutPolicy::default(),
            hotp_window: okey_otp::DEFAULT_HOTP_WINDOW,
            totp_skew: okey_otp::DEFAULT_TOTP_SKEW,
        }
    }
}

impl StoreConfig {
    /// The defaults, with the data directory (and the default key file inside it) at `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        let data_dir = dir.into();
        StoreConfig {
            master_key: MasterKeySource::File(data_dir.join("master.key")),
            data_dir,
            ..StoreConfig::default()
        }
    }

    /// Check the settings [`crate::Store::open`] relies on (see [`LockoutPolicy::validate`]).
    pub fn validate(&self) -> Result<(), StoreError> {
        self.lockout.validate()
    }
}

/// Counters for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Unsealed keys in the cache.
    pub cache_entries: u64,
    /// Cache hits.
    pub cache_hits: u64,
    /// Cache misses (an unseal each).
    pub cache_misses: u64,
    /// Requests committed (or refused) by the writer.
    pub commits: u64,
    /// Transactions (fsyncs).
    pub batches: u64,
    /// Batch sizes: `(upper bound, count)` with bounds 1, 2, 4, ... 8192 and `u64::MAX`.
    pub batch_sizes: Vec<(u64, u64)>,
    /// How long each transaction's commit took (writing it and waiting for the disk to flush
    /// it): `(upper bound in microseconds, count)`, the last bound `u64::MAX`.
    pub commit_times_us: Vec<(u64, u64)>,
    /// Total time spent committing, in microseconds.
    pub commit_micros: u64,
    /// Total time spent running the requests of the transactions (their statements, before
    /// the commit), in microseconds.
    pub run_micros: u64,
    /// Total time the writer waited under load for more requests before its transactions,
    /// in microseconds.
    pub linger_micros: u64,
    /// Compare-and-set conflicts retried.
    pub conflicts: u64,
    /// Wrong codes typed into staff operations (resynchronisation, bench read-back): counted
    /// here, never toward the holder's lockout.
    pub staff_failures: u64,
}

/// What a data-key rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationReport {
    /// The new data key's version.
    pub new_version: u32,
    /// Seeds re-sealed.
    pub resealed: u64,
    /// Transactions used.
    pub batches: u64,
}

/// What a backup wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// Tokens.
    pub tokens: u64,
    /// API keys.
    pub api_keys: u64,
    /// Audit records.
    pub audit_records: u64,
    /// File size.
    pub bytes: u64,
}

/// What a restore loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// Tokens.
    pub tokens: u64,
    /// API keys.
    pub api_keys: u64,
    /// Audit records.
    pub audit_records: u64,
    /// When the restore ran (Unix seconds).
    pub at: u64,
    /// Time-based tokens whose last used step moved up to the highest step a verify at
    /// [`RestoreReport::at`] could accept (the token's drift and the skew window included): no
    /// code that could have been used before the restore is accepted again.
    pub time_tokens_advanced: u64,
    /// HOTP tokens left at their counters of backup time: codes used after the backup are
    /// valid again until the tokens move past them.
    pub counter_tokens: u64,
}

/// An unassigned token and its unsealed seed, on its way into an encrypted export.
pub struct StockSeed {
    /// The token.
    pub token: TokenInfo,
    /// Its seed; zeroized on drop.
    pub seed: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for StockSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StockSeed")
            .field("serial", &self.token.serial)
            .finish_non_exhaustive()
    }
}
