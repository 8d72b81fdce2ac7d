//! `okey serve` configuration: defaults, a TOML file (unknown keys are an error), then
//! environment variables and flags on top (applied by the CLI).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything `okey serve` needs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// The embedded store's directory (with PostgreSQL, only where the default key file is).
    pub data_dir: PathBuf,
    /// The database (`[store]`): embedded SQLite (default) or a shared PostgreSQL.
    pub store: StoreTable,
    /// Master key file; default `<data_dir>/master.key`, created on first start.
    pub master_key_file: Option<PathBuf>,
    /// Name of an environment variable holding the master key in hex (instead of a file).
    pub master_key_env: Option<String>,
    /// Where the master key lives: `source = "file"` (the two settings above) or
    /// `source = "pkcs11"` (an HSM).
    pub master_key: MasterKeyConfig,
    /// Prometheus text on `http://<addr>/metrics` when set.
    pub metrics_listen: Option<SocketAddr>,
    /// `group` (default: concurrent commits share one fsync) or `per-commit`.
    pub durability: Durability,
    /// Most unsealed token keys held in memory.
    pub cache_capacity: usize,
    /// HOTP look-ahead window (candidates).
    pub hotp_window: u32,
    /// TOTP steps accepted either side of the expected one.
    pub totp_skew: u32,
    /// Seconds an OCRA challenge stays valid.
    pub challenge_ttl: u64,
    /// Brute-force protection.
    pub lockout: LockoutConfig,
    /// TLS for the gRPC listener (and mTLS when `client_ca` is set).
    pub tls: Option<TlsConfig>,
    /// Seconds between "audit chain head" log lines (sequence and hash of the newest audit
    /// entry, when it changed); 0 turns them off. Shipped off the machine by the log pipeline,
    /// they anchor `okey audit verify --anchor` so a removed tail of the chain is detected.
    pub audit_head_log_seconds: u64,
    /// Signed anchors of the audit chain (`[audit]`).
    pub audit: AuditConfig,
    /// Seconds between runs of the scheduled key job (keys past their validity end marked
    /// expired, keys past their deactivation time put on their lot manager's return list);
    /// 0 turns it off (then only `RunScheduledJobs` runs it).
    pub key_job_seconds: u64,
    /// The RADIUS front end (`[radius]`, with its `[[radius.client]]`s); off when absent.
    pub radius: Option<okey_radius::RadiusConfig>,
    /// The mail relay (`[smtp]`); without it mails stay in the outbox until one is configured.
    pub smtp: Option<okey_notify::SmtpConfig>,
    /// Key requests (`[requests]`): PIN rules and validator reminders.
    pub requests: RequestsConfig,
    /// How long a temporary key issued by support works before it stops on its own, in
    /// seconds (default 10 days; at most 60 days). A request may ask for a number of days.
    pub temporary_key_seconds: u64,
    /// The staff web portal (`[portal]`): on by default, on its own loopback listener.
    pub portal: PortalConfig,
}

/// The `[requests]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RequestsConfig {
    /// Shortest PIN a requester may choose.
    pub pin_min_len: usize,
    /// Longest PIN.
    pub pin_max_len: usize,
    /// PINs of digits only (a keypad PIN) or of letters and digits.
    pub pin_digits_only: bool,
    /// A request waiting this many days for its validator reminds them, once per value
    /// (default: after 3 and after 7 days); empty for no reminder.
    pub remind_after_days: Vec<u32>,
    /// A submitted request that nobody decided expires after this many seconds (default 30
    /// days; 0: never). The requester is told by mail.
    pub expire_submitted_seconds: u64,
    /// A key ready for pickup that nobody collected goes back to stock and its request expires
    /// this many seconds after it was reserved, or after the booked slot if later (default 60
    /// days; 0: never). The requester is told by mail.
    pub expire_ready_seconds: u64,
}

impl Default for RequestsConfig {
    fn default() -> Self {
        RequestsConfig {
            pin_min_len: 4,
            pin_max_len: 8,
            pin_digits_only: true,
            remind_after_days: vec![3, 7],
            expire_submitted_seconds: 30 * 86_400,
            expire_ready_seconds: 60 * 86_400,
        }
    }
}

impl RequestsConfig {
    /// The PIN rules.
    pub fn pin_policy(&self) -> okey_domain::request::PinPolicy {
        okey_domain::request::PinPolicy {
            min_len: self.pin_min_len,
            max_len: self.pin_max_len,
            digits_only: self.pin_digits_only,
        }
    }

    /// When requests expire.
    pub fn expiry(&self) -> okey_store::RequestExpiry {
        okey_store::RequestExpiry {
            submitted_seconds: self.expire_submitted_seconds,
            ready_seconds: self.expire_ready_seconds,
        }
    }
}

/// Which database holds the store.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// `okey.db` in `data_dir`.
    #[default]
    Sqlite,
    /// A PostgreSQL database several okey nodes may share.
    Postgres,
}

/// The `[store]` table: `backend = "sqlite" | "postgres"`; for PostgreSQL the connection string
/// in `url` or, to keep the password out of the configuration file, in `url_file` (mode 0600).
/// Never a flag: a command line is visible to every user of the machine.
#[derive(Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StoreTable {
    /// `sqlite` (default) or `postgres`.
    pub backend: StoreKind,
    /// PostgreSQL connection string (`postgres://...` or `host=... dbname=...`).
    pub url: Option<String>,
    /// File holding the connection string (one line, mode 0600).
    pub url_file: Option<PathBuf>,
}

impl std::fmt::Debug for StoreTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold the password.
        f.debug_struct("StoreTable")
            .field("backend", &self.backend)
            .field("url", &self.url.as_ref().map(|_| "<connection string>"))
            .field("url_file", &self.url_file)
            .finish()
    }
}

impl StoreTable {
    fn check(&self) -> Result<(), ConfigError> {
        let bad = |s: &str| Err(ConfigError::Invalid(format!("[store] {s}")));
        match (self.backend, &self.url, &self.url_file) {
            (StoreKind::Sqlite, None, None) => Ok(()),
            (StoreKind::Sqlite, _, _) => bad(
                "url and url_file are for backend = \"postgres\"; the SQLite store is in data_dir",
            ),
            (StoreKind::Postgres, Some(_), None) | (StoreKind::Postgres, None, Some(_)) => Ok(()),
            (StoreKind::Postgres, Some(_), Some(_)) => bad("give url or url_file, not both"),
            (StoreKind::Postgres, None, None) => {
                bad("backend = \"postgres\" needs url or url_file (the connection string)")
            }
        }
    }

    /// The store backend this table names, reading `url_file` (refused unless only its owner
    /// may read it).
    pub fn backend(&self) -> Result<okey_store::StoreBackend, ConfigError> {
        self.check()?;
        if self.backend == StoreKind::Sqlite {
            return Ok(okey_store::StoreBackend::Sqlite);
        }
        let url = match (&self.url, &self.url_file) {
            (Some(u), _) => {
                let has_password = okey_store::pg::connection_has_password(u)
                    .map_err(|e| ConfigError::Invalid(format!("[store] url: {e}")))?;
                if has_password {
                    return Err(ConfigError::Invalid(
                        "[store] url holds a password: a password is never in the configuration \
                         file; put the connection string in url_file (mode 0600) instead"
                            .into(),
                    ));
                }
                zeroize::Zeroizing::new(u.clone())
            }
            (None, Some(path)) => read_private(path)?,
            (None, None) => return Err(ConfigError::Invalid("[store] needs url".into())),
        };
        if url.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "[store] the PostgreSQL connection string is empty".into(),
            ));
        }
        Ok(okey_store::StoreBackend::Postgres(url))
    }
}

/// Read a secret file that its group and others may not read; trailing newlines dropped.
fn read_private(path: &Path) -> Result<zeroize::Zeroizing<String>, ConfigError> {
    read_private_for(path, "[store] url_file", "the database password")
}

/// [`read_private`] for the setting `what`, which holds `holds`.
fn read_private_for(
    path: &Path,
    what: &str,
    holds: &str,
) -> Result<zeroize::Zeroizing<String>, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Invalid(format!(
            "{what} {} has mode {mode:04o}; it holds {holds} and must be readable by its owner \
             only (chmod 600)",
            path.display()
        )));
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(read_err)?);
    Ok(zeroize::Zeroizing::new(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// Where the master key lives.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MasterKeyKind {
    /// A key file (or an environment variable): `master_key_file` / `master_key_env`.
    #[default]
    File,
    /// An AES key inside an HSM, through its PKCS#11 module.
    Pkcs11,
}

/// The `[master_key]` table.
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MasterKeyConfig {
    /// `file` (default) or `pkcs11`.
    pub source: MasterKeyKind,
    /// PKCS#11 module (shared library) of the HSM.
    pub module: Option<PathBuf>,
    /// Slot of the token (or `token_label`).
    pub slot: Option<u64>,
    /// Label of the token (or `slot`).
    pub token_label: Option<String>,
    /// Label of the AES-256 master key on the token.
    pub key_label: Option<String>,
    /// File holding the user PIN (mode 0600).
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN (instead of `pin_file`).
    pub pin_env: Option<String>,
    /// PKCS#11 modules an online rotation (`RotateMasterKey`) may load besides `module`; none
    /// by default, so an admin credential alone cannot make the server load a library.
    pub allowed_modules: Vec<PathBuf>,
}

impl MasterKeyConfig {
    /// Whether an online rotation may load the PKCS#11 module `path`.
    pub fn may_load(&self, path: &Path) -> bool {
        self.module.as_deref() == Some(path) || self.allowed_modules.iter().any(|m| m == path)
    }

    /// The HSM source this table names; `None` for `source = "file"`.
    pub fn pkcs11(&self) -> Result<Option<okey_store::Pkcs11Source>, ConfigError> {
        let bad = |s: &str| Err(ConfigError::Invalid(format!("[master_key] {s}")));
        if self.source == MasterKeyKind::File {
            if self.module.is_some()
                || self.slot.is_some()
                || self.token_label.is_some()
                || self.key_label.is_some()
                || self.pin_file.is_some()
                || self.pin_env.is_some()
            {
                return bad("has PKCS#11 settings but source is \"file\"; set source = \"pkcs11\"");
            }
            return Ok(None);
        }
        let Some(module) = &self.module else {
            return bad("source = \"pkcs11\" needs module = PATH of the PKCS#11 library");
        };
        let token = match (&self.slot, &self.token_label) {
            (Some(s), None) => okey_store::Pkcs11Token::Slot(*s),
            (None, Some(l)) => okey_store::Pkcs11Token::Label(l.clone()),
            _ => return bad("needs exactly one of slot or token_label"),
        };
        let Some(key_label) = &self.key_label else {
            return bad("source = \"pkcs11\" needs key_label");
        };
        let pin = match (&self.pin_file, &self.pin_env) {
            (Some(f), None) => okey_store::PinSource::File(f.clone()),
            (None, Some(v)) => okey_store::PinSource::Env(v.clone()),
            _ => return bad("needs exactly one of pin_file or pin_env for the user PIN"),
        };
        let src = okey_store::Pkcs11Source {
            module: module.clone(),
            token,
            key_label: key_label.clone(),
            pin,
        };
        src.validate()
            .map_err(|e| ConfigError::Invalid(format!("[master_key] {e}")))?;
        Ok(Some(src))
    }
}

/// The `[audit]` table: where and how often the chain's signed head is published.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Seconds between signed anchors (one is published at start, then at this interval when
    /// the head moved, and at a clean shutdown); 0 turns anchors off.
    pub anchor_interval_seconds: u64,
    /// The append-only anchors file (one line per anchor, created mode 0600); default
    /// `<data_dir>/audit-anchors.log`. Put it, or ship it, where the database's owner cannot
    /// rewrite it.
    pub anchors_file: Option<PathBuf>,
    /// Also send each anchor to syslog.
    pub syslog: bool,
    /// The local syslog socket (a datagram socket); when it is absent okey says so once.
    pub syslog_socket: PathBuf,
    /// The node name signed into each anchor (1 to 64 of `[A-Za-z0-9._-]`); default the host
    /// name.
    pub node: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            anchor_interval_seconds: 60,
            anchors_file: None,
            syslog: true,
            syslog_socket: PathBuf::from("/dev/log"),
            node: None,
        }
    }
}

/// Commit durability.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// A single writer batches concurrent commits into one fsync'd transaction.
    #[default]
    Group,
    /// One fsync'd transaction per state change (slower; the benchmark baseline).
    PerCommit,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "group" => Ok(Durability::Group),
            "per-commit" => Ok(Durability::PerCommit),
            _ => Err(format!(
                "unknown durability {s:?}: expected group or per-commit"
            )),
        }
    }
}

/// Failure counting and locks.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// Failures after which the token is locked until support unlocks it.
    pub hard_after: u32,
    /// Failures after which a short, self-expiring lock starts (0: none).
    pub soft_after: u32,
    /// Length of the soft lock in seconds (at most a year).
    pub soft_lock_seconds: u64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            hard_after: 10,
            soft_after: 3,
            soft_lock_seconds: 30,
        }
    }
}

/// TLS settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca: Option<PathBuf>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("okey-data"),
            store: StoreTable::default(),
            master_key_file: None,
            master_key_env: None,
            master_key: MasterKeyConfig::default(),
            metrics_listen: None,
            durability: Durability::Group,
            cache_capacity: 2_000_000,
            hotp_window: okey_otp::DEFAULT_HOTP_WINDOW,
            totp_skew: okey_otp::DEFAULT_TOTP_SKEW,
            challenge_ttl: 120,
            lockout: LockoutConfig::default(),
            tls: None,
            audit_head_log_seconds: 60,
            audit: AuditConfig::default(),
            key_job_seconds: 300,
            radius: None,
            smtp: None,
            requests: RequestsConfig::default(),
            temporary_key_seconds: 10 * 86_400,
            portal: PortalConfig::default(),
        }
    }
}

/// The `[portal]` table: the staff web portal that `okey serve` starts beside gRPC. It logs
/// people in through the administration's OpenID Connect provider and acts for them through
/// okey's own gRPC services; without `issuer` and `client_id` it serves its pages but nobody
/// can log in.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// Start the portal (default true).
    pub enabled: bool,
    /// Its HTTP listen address (default 127.0.0.1:8080; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The portal's address as browsers see it (`https://...` behind a TLS reverse proxy):
    /// the OpenID Connect redirect URI is built on it, and an `https` address makes the
    /// cookies `Secure`. Default: `http://` + the bound address.
    pub public_url: Option<String>,
    /// The OpenID Connect provider's issuer URL (discovery at `/.well-known/openid-configuration`).
    pub issuer: Option<String>,
    /// The portal's client id at the provider.
    pub client_id: Option<String>,
    /// A file (mode 0600) holding the client secret; none: a public client (PKCE only).
    pub client_secret_file: Option<PathBuf>,
    /// The ID token claim whose value is the person's directory id (default `preferred_username`).
    pub person_claim: String,
    /// Minutes a session lasts from login (1 to 1440; default 60).
    pub session_minutes: u64,
    /// Offset from UTC, in minutes, at which printed receipts give their dates (default 0:
    /// the offset of `time_zone` at the time of printing).
    pub utc_offset_minutes: i32,
    /// The IANA time zone the pages show dates in and forms read them in (default: `[smtp]
    /// time_zone`, else UTC).
    pub time_zone: Option<String>,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            issuer: None,
            client_id: None,
            client_secret_file: None,
            person_claim: "preferred_username".to_owned(),
            session_minutes: 60,
            utc_offset_minutes: 0,
            time_zone: None,
        }
    }
}

impl PortalConfig {
    /// The base URL mails link to: `public_url`, else `http://` + the listen address (a
    /// wildcard address reads as loopback), without a trailing slash.
    pub fn mail_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let mut a = self.listen;
                if a.ip().is_unspecified() {
                    a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{a}")
            }
        }
    }
}

impl std::fmt::Debug for PortalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalConfig")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret_file", &self.client_secret_file)
            .field("person_claim", &self.person_claim)
            .field("session_minutes", &self.session_minutes)
            .field("utc_offset_minutes", &self.utc_offset_minutes)
            .field("time_zone", &self.time_zone)
            .finish()
    }
}

impl PortalConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(format!("[portal] {s}")));
        if self.session_minutes == 0 || self.session_minutes > 1440 {
            return bad("session_minutes must be 1 to 1440".into());
        }
        if self.utc_offset_minutes.abs() > 840 {
            return bad("utc_offset_minutes must be -840 to 840".into());
        }
        if let Some(z) = &self.time_zone
            && let Err(e) = crate::dates::zone(z)
        {
            return bad(format!("time_zone: {e}"));
        }
        if self.issuer.is_some() != self.client_id.is_some() {
            return bad("give issuer and client_id together".into());
        }
        let claim_ok = !self.person_claim.is_empty()
            && self.person_claim.len() <= 64
            && self
                .person_claim
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !claim_ok {
            return bad("person_claim must be a claim name (letters, digits, _ - .)".into());
        }
        for (name, url) in [("public_url", &self.public_url), ("issuer", &self.issuer)] {
            if let Some(u) = url
                && !(u.starts_with("https://") || u.starts_with("http://"))
            {
                return bad(format!("{name} must be an http:// or https:// URL"));
            }
        }
        Ok(())
    }

    /// The client secret, read from `client_secret_file` (refused unless only its owner may
    /// read it); `None` without one.
    pub fn client_secret(&self) -> Result<Option<zeroize::Zeroizing<String>>, ConfigError> {
        self.client_secret_file
            .as_deref()
            .map(|p| read_private_for(p, "[portal] client_secret_file", "the client secret"))
            .transpose()
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML for this schema (unknown keys included).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's sentence.
        message: String,
    },
    /// A value out of range.
    #[error("{0}")]
    Invalid(String),
}

impl ServeConfig {
    /// The zone the portal's dates are in: `[portal] time_zone`, else `[smtp] time_zone`, else
    /// UTC (each checked when the configuration was read).
    pub fn portal_zone(&self) -> Result<crate::Zone, String> {
        let named = self
            .portal
            .time_zone
            .as_deref()
            .or(self.smtp.as_ref().and_then(|s| s.time_zone.as_deref()));
        match named {
            Some(n) => crate::Zone::named(n),
            None => Ok(crate::Zone::utc()),
        }
    }

    /// Read a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parse TOML text over the defaults.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: ServeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.message().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Check ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |s: &str| Err(ConfigError::Invalid(s.to_owned()));
        if self.hotp_window == 0 || self.hotp_window > 1000 {
            return bad("hotp_window must be 1 to 1000");
        }
        if self.totp_skew > 10 {
            return bad("totp_skew must be 0 to 10");
        }
        if self.lockout.hard_after == 0 {
            return bad("lockout.hard_after must be at least 1");
        }
        if self.lockout.soft_after >= self.lockout.hard_after && self.lockout.soft_after != 0 {
            return bad("lockout.soft_after must be below lockout.hard_after (or 0 for none)");
        }
        if self.lockout.soft_lock_seconds > okey_store::MAX_SOFT_LOCK_SECONDS {
            return Err(ConfigError::Invalid(format!(
                "lockout.soft_lock_seconds must be at most {} (a year); use lockout.hard_after \
                 for a lock that lasts until support lifts it",
                okey_store::MAX_SOFT_LOCK_SECONDS
            )));
        }
        if self.requests.pin_min_len < 4
            || self.requests.pin_max_len > 16
            || self.requests.pin_min_len > self.requests.pin_max_len
        {
            return bad("requests.pin_min_len and pin_max_len must satisfy 4 <= min <= max <= 16");
        }
        if self
            .requests
            .remind_after_days
            .iter()
            .any(|d| *d == 0 || *d > 365)
        {
            return bad("requests.remind_after_days must be days from 1 to 365");
        }
        if self.requests.expire_submitted_seconds > 365 * 86_400
            || self.requests.expire_ready_seconds > 365 * 86_400
        {
            return bad(
                "requests.expire_submitted_seconds and expire_ready_seconds must be 0 (never) \
                 to 31536000 (365 days)",
            );
        }
        if self.audit_head_log_seconds > 86_400 {
            return bad("audit_head_log_seconds must be 0 (off) to 86400");
        }
        if self.audit.anchor_interval_seconds > 86_400 {
            return bad("audit.anchor_interval_seconds must be 0 (off) to 86400");
        }
        if let Some(node) = &self.audit.node {
            okey_store::anchor::check_node(node)
                .map_err(|e| ConfigError::Invalid(format!("audit.node: {e}")))?;
        }
        if self.temporary_key_seconds == 0
            || self.temporary_key_seconds > okey_store::MAX_TEMPORARY_DAYS * 86_400
        {
            return bad("temporary_key_seconds must be 1 to 5184000 (60 days)");
        }
        if self.key_job_seconds > 86_400 {
            return bad("key_job_seconds must be 0 (off) to 86400");
        }
        if self.challenge_ttl == 0 || self.challenge_ttl > 3600 {
            return bad("challenge_ttl must be 1 to 3600 seconds");
        }
        if self.cache_capacity == 0 {
            return bad("cache_capacity must be at least 1");
        }
        if let Some(r) = &self.radius {
            r.validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        self.store.check()?;
        self.portal.check()?;
        if self.master_key.pkcs11()?.is_some()
            && (self.master_key_file.is_some() || self.master_key_env.is_some())
        {
            return bad(
                "[master_key] source = \"pkcs11\" cannot be combined with master_key_file or master_key_env",
            );
        }
        Ok(())
    }

    /// The anchors file this configuration names.
    pub fn anchors_file(&self) -> PathBuf {
        self.audit
            .anchors_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-anchors.log"))
    }

    /// The store configuration this service configuration implies.
    pub fn store_config(&self) -> Result<okey_store::StoreConfig, ConfigError> {
        let master_key = match (&self.master_key_env, &self.master_key_file) {
            _ if self.master_key.source == MasterKeyKind::Pkcs11 => {
                match self.master_key.pkcs11()? {
                    Some(p) => okey_store::MasterKeySource::Pkcs11(p),
                    None => return Err(ConfigError::Invalid("[master_key] is incomplete".into())),
                }
            }
            (Some(var), _) => okey_store::MasterKeySource::Env(var.clone()),
            (None, Some(path)) => okey_store::MasterKeySource::File(path.clone()),
            (None, None) => okey_store::MasterKeySource::File(self.data_dir.join("master.key")),
        };
        Ok(okey_store::StoreConfig {
            data_dir: self.data_dir.clone(),
            backend: self.store.backend()?,
            master_key,
            durability: match self.durability {
                Durability::Group => okey_store::Durability::GroupCommit,
                Durability::PerCommit => okey_store::Durability::PerCommit,
            },
            cache_capacity: self.cache_capacity,
            lockout: okey_store::LockoutPolicy {
                hard_after: self.lockout.hard_after,
                soft_after: (self.lockout.soft_after > 0).then_some(self.lockout.soft_after),
                soft_lock_seconds: self.lockout.soft_lock_seconds,
            },
            hotp_window: self.hotp_window,
            totp_skew: self.totp_skew,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c = ServeConfig::from_toml("").expect("empty is defaults");
        assert_eq!(c, ServeConfig::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:50051");
        let c = ServeConfig::from_toml(
            "listen = \"127.0.0.1:6000\"\n[lockout]\nhard_after = 5\nsoft_after = 2\n",
        )
        .expect("valid");
        assert_eq!(c.listen.port(), 6000);
        assert_eq!(c.lockout.hard_after, 5);
        let err = ServeConfig::from_toml("listn = \"127.0.0.1:6000\"").expect_err("typo");
        assert!(err.to_string().contains("listn"), "{err}");
        let err = ServeConfig::from_toml("[lockout]\nhard_afterr = 3").expect_err("typo");
        assert!(err.to_string().contains("hard_afterr"), "{err}");
        assert!(ServeConfig::from_toml("hotp_window = 0").is_err());
        assert!(ServeConfig::from_toml("durability = \"sometimes\"").is_err());
        assert_eq!(
            ServeConfig::from_toml("durability = \"per-commit\"")
                .map(|c| c.durability)
                .ok(),
            Some(Durability::PerCommit)
        );
    }

    #[test]
    fn an_smtp_table_is_read_and_its_unknown_keys_refused() {
        let c = ServeConfig::from_toml(
            "[smtp]\nrelay = \"smtp.ac-example.fr\"\ntls = \"tls\"\nfrom = \"okey <okey@ac-example.fr>\"\nusername = \"okey\"\npassword_file = \"/etc/okey/smtp.pass\"\n",
        )
        .expect("valid");
        let smtp = c.smtp.expect("an [smtp] table");
        assert_eq!(smtp.relay, "smtp.ac-example.fr");
        assert_eq!(smtp.tls, okey_notify::TlsMode::Tls);
        assert_eq!(smtp.username.as_deref(), Some("okey"));
        assert_eq!(ServeConfig::from_toml("").expect("defaults").smtp, None);
        let err = ServeConfig::from_toml(
            "[smtp]\nrelay = \"x\"\nfrom = \"a@b.fr\"\npassword = \"in-the-config\"\n",
        )
        .expect_err("a password is never in the configuration");
        assert!(err.to_string().contains("password"), "{err}");
        assert!(
            ServeConfig::from_toml("[smtp]\nrelay = \"x\"\nfrom = \"a@b.fr\"\ntls = \"ssl\"\n")
                .is_err()
        );
        assert!(ServeConfig::from_toml("[smtp]\nfrom = \"a@b.fr\"\n").is_err());
    }

    #[test]
    fn a_store_table_picks_the_backend_and_keeps_the_password_private() {
        let c = ServeConfig::from_toml("").expect("defaults");
        assert!(matches!(
            c.store_config().expect("store").backend,
            okey_store::StoreBackend::Sqlite
        ));
        let c = ServeConfig::from_toml(
            "[store]\nbackend = \"postgres\"\nurl = \"host=db.ac-example.fr user=okey dbname=okey sslmode=verify-full\"\n",
        )
        .expect("valid");
        assert!(matches!(
            c.store_config().expect("store").backend,
            okey_store::StoreBackend::Postgres(_)
        ));
        assert!(!format!("{c:?}").contains("db.ac-example.fr"));
        for bad in [
            "[store]\nbackend = \"postgres\"\n",
            "[store]\nurl = \"host=db\"\n",
            "[store]\nbackend = \"postgres\"\nurl = \"host=db\"\nurl_file = \"/etc/okey/db\"\n",
            "[store]\nbackend = \"mysql\"\n",
            "[store]\nbackend = \"postgres\"\nuri = \"host=db\"\n",
        ] {
            assert!(ServeConfig::from_toml(bad).is_err(), "{bad}");
        }
        let c = ServeConfig::from_toml(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://okey:s3cret@db/okey\"\n",
        )
        .expect("parses");
        let err = c.store_config().expect_err("a password in the file");
        assert!(err.to_string().contains("url_file"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");

        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("db.url");
        std::fs::write(&file, "postgres://okey:s3cret@db/okey\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let c = ServeConfig::from_toml(&format!(
            "[store]\nbackend = \"postgres\"\nurl_file = \"{}\"\n",
            file.display()
        ))
        .expect("parses");
        let err = c.store_config().expect_err("a 0644 url file");
        assert!(err.to_string().contains("0644"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        match c.store_config().expect("a 0600 url file").backend {
            okey_store::StoreBackend::Postgres(url) => {
                assert_eq!(url.as_str(), "postgres://okey:s3cret@db/okey")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_audit_table_is_read_and_checked() {
        let c = ServeConfig::from_toml(
            "data_dir = \"/var/lib/okey\"\n[audit]\nanchor_interval_seconds = 30\nnode = \"otp-2\"\nsyslog = false\n",
        )
        .expect("valid");
        assert_eq!(c.audit.anchor_interval_seconds, 30);
        assert_eq!(c.audit.node.as_deref(), Some("otp-2"));
        assert!(!c.audit.syslog);
        assert_eq!(
            c.anchors_file(),
            PathBuf::from("/var/lib/okey/audit-anchors.log")
        );
        assert!(ServeConfig::from_toml("[audit]\nanchor_interval_seconds = 86401\n").is_err());
        assert!(ServeConfig::from_toml("[audit]\nnode = \"a b\"\n").is_err());
        assert!(ServeConfig::from_toml("[audit]\nanchor_every = 3\n").is_err());
    }

    #[test]
    fn an_online_rotation_loads_only_the_modules_the_configuration_names() {
        let c = ServeConfig::from_toml(
            "[master_key]\nallowed_modules = [\"/usr/lib/softhsm/libsofthsm2.so\"]\n",
        )
        .expect("a file source may list modules to rotate to");
        assert!(
            c.master_key
                .may_load(Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert!(!c.master_key.may_load(Path::new("/tmp/evil.so")));
        assert!(
            !ServeConfig::default()
                .master_key
                .may_load(Path::new("/tmp/evil.so"))
        );
    }

    #[test]
    fn soft_lock_longer_than_a_year_is_refused() {
        let max = okey_store::MAX_SOFT_LOCK_SECONDS;
        let ok = ServeConfig::from_toml(&format!("[lockout]\nsoft_lock_seconds = {max}\n"))
            .expect("a year is allowed");
        assert_eq!(ok.lockout.soft_lock_seconds, max);
        for seconds in [max + 1, i64::MAX as u64] {
            let err =
                ServeConfig::from_toml(&format!("[lockout]\nsoft_lock_seconds = {seconds}\n"))
                    .expect_err("too long");
            assert!(
                matches!(err, ConfigError::Invalid(_))
                    && err.to_string().contains("lockout.soft_lock_seconds"),
                "{err}"
            );
        }
    }
}
