//! The `[smtp]` table of the serve configuration, and its resolution into checked settings.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;
use zeroize::Zeroizing;

/// How the connection to the relay is protected.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which is required (port 587 by default).
    #[default]
    Starttls,
    /// TLS from the first byte, "implicit TLS" (port 465 by default).
    Tls,
    /// No TLS: only to a relay on a loopback address, and never with a password.
    None,
}

/// `[smtp]` in the serve TOML. Without it okey sends no mail (mails stay queued).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host name or address.
    pub relay: String,
    /// Port (default: 587 for STARTTLS, 465 for TLS, 25 without TLS).
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub tls: TlsMode,
    /// Sender, e.g. `"okey <okey@ac-example.fr>"`.
    pub from: String,
    /// User name for SMTP AUTH (with `password_file`).
    pub username: Option<String>,
    /// File holding the SMTP password (mode 0600 or stricter; one line).
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the relay's certificate, if not a public one.
    pub ca_cert: Option<PathBuf>,
    /// Seconds one SMTP conversation may take (default 30).
    pub timeout_seconds: Option<u64>,
    /// Directory of operator templates overriding the embedded ones.
    pub templates: Option<PathBuf>,
    /// Attempts before a mail is given up (default 20).
    pub max_attempts: Option<u32>,
    /// First retry delay in seconds, doubled at each failure (default 30).
    pub retry_initial_seconds: Option<u64>,
    /// Longest retry delay in seconds (default 3600).
    pub retry_max_seconds: Option<u64>,
    /// Seconds between looks at the outbox when nothing wakes the sender (default 5).
    pub poll_seconds: Option<u64>,
    /// IANA time zone of the dates written in mails (default `UTC`; e.g. `Europe/Paris`,
    /// `Indian/Reunion`). okey carries its own copy of the time zone database.
    pub time_zone: Option<String>,
}

/// Why the `[smtp]` table cannot be used; okey refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting is wrong.
    #[error("[smtp] {0}")]
    Invalid(String),
    /// The password file is readable by others.
    #[error(
        "[smtp] the password file {path} has mode {mode:04o}; it must be readable by its owner only (chmod 600)"
    )]
    LoosePassword {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A file cannot be read.
    #[error("[smtp] cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Retry policy: exponential back-off between attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts before a mail is given up.
    pub max_attempts: u32,
    /// Delay after the first failure.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Retry {
    /// Delay before the next attempt after `attempts` failed ones (1 or more): `initial ×
    /// 2^(attempts−1)`, at most `max`.
    pub fn delay(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(30);
        let d = self.initial.saturating_mul(1u32 << shift);
        d.min(self.max)
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 20,
            initial: Duration::from_secs(30),
            max: Duration::from_secs(3600),
        }
    }
}

/// Checked SMTP settings. The password is never printed (`Debug` hides it).
#[derive(Clone)]
pub struct SmtpSettings {
    /// Relay host.
    pub relay: String,
    /// Port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// Sender.
    pub from: Mailbox,
    /// AUTH user and password.
    pub credentials: Option<(String, Zeroizing<String>)>,
    /// Extra CA certificate (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// Timeout of one SMTP conversation.
    pub timeout: Duration,
    /// Operator templates.
    pub templates: Option<PathBuf>,
    /// Retry policy.
    pub retry: Retry,
    /// Poll interval.
    pub poll: Duration,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("relay", &self.relay)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .field("username", &self.credentials.as_ref().map(|c| &c.0))
            .field("templates", &self.templates)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Read a secret file that must be private to its owner.
fn read_private(path: &Path) -> Result<Zeroizing<String>, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| ConfigError::Io(path.into(), e))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::LoosePassword {
            path: path.into(),
            mode,
        });
    }
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| ConfigError::Io(path.into(), e))?);
    let line = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_string());
    if line.is_empty() || line.contains(['\n', '\r']) {
        return Err(ConfigError::Invalid(format!(
            "the password file {} must hold the password on one line",
            path.display()
        )));
    }
    Ok(line)
}

impl SmtpConfig {
    /// Check every setting and read the files it names.
    pub fn resolve(&self) -> Result<SmtpSettings, ConfigError> {
        let relay = self.relay.trim();
        if relay.is_empty() || relay.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::Invalid(
                "relay must be a host name or address".into(),
            ));
        }
        let from: Mailbox = self.from.parse().map_err(|e| {
            ConfigError::Invalid(format!("from {:?} is not a mail address: {e}", self.from))
        })?;
        let credentials = match (&self.username, &self.password_file) {
            (Some(u), Some(p)) => {
                if u.is_empty() || u.chars().any(char::is_control) {
                    return Err(ConfigError::Invalid("username is empty or not text".into()));
                }
                Some((u.clone(), read_private(p)?))
            }
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "username and password_file go together".into(),
                ));
            }
        };
        if self.tls == TlsMode::None {
            if !is_loopback(relay) {
                return Err(ConfigError::Invalid(format!(
                    "tls = \"none\" is only allowed to a relay on this machine (loopback), not {relay}"
                )));
            }
            if credentials.is_some() {
                return Err(ConfigError::Invalid(
                    "a password is never sent without TLS: use tls = \"starttls\" or \"tls\""
                        .into(),
                ));
            }
        }
        let ca_pem = match &self.ca_cert {
            Some(p) => {
                let pem = std::fs::read(p).map_err(|e| ConfigError::Io(p.clone(), e))?;
                lettre::transport::smtp::client::Certificate::from_pem(&pem)
                    .map_err(|e| ConfigError::Invalid(format!("ca_cert {}: {e}", p.display())))?;
                Some(pem)
            }
            None => None,
        };
        let port = self.port.unwrap_or(match self.tls {
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        });
        let d = Retry::default();
        let retry = Retry {
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts),
            initial: self
                .retry_initial_seconds
                .map_or(d.initial, Duration::from_secs),
            max: self.retry_max_seconds.map_or(d.max, Duration::from_secs),
        };
        if retry.max_attempts == 0 || retry.initial.is_zero() || retry.max < retry.initial {
            return Err(ConfigError::Invalid(
                "max_attempts must be at least 1 and 0 < retry_initial_seconds <= retry_max_seconds"
                    .into(),
            ));
        }
        let timeout = Duration::from_secs(self.timeout_seconds.unwrap_or(30));
        let poll = Duration::from_secs(self.poll_seconds.unwrap_or(5));
        if timeout.is_zero() || poll.is_zero() {
            return Err(ConfigError::Invalid(
                "timeout_seconds and poll_seconds must be at least 1".into(),
            ));
        }
        Ok(SmtpSettings {
            relay: relay.to_owned(),
            port,
            tls: self.tls,
            from,
            credentials,
            ca_pem,
            timeout,
            templates: self.templates.clone(),
            retry,
            poll,
        })
    }
}
