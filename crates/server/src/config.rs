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
    /// The embedded store's directory.
    pub data_dir: PathBuf,
    /// Master key file; default `<data_dir>/master.key`, created on first start.
    pub master_key_file: Option<PathBuf>,
    /// Name of an environment variable holding the master key in hex (instead of a file).
    pub master_key_env: Option<String>,
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
    /// Seconds between runs of the scheduled key job (keys past their validity end marked
    /// expired, keys past their deactivation time put on their lot manager's return list);
    /// 0 turns it off (then only `RunScheduledJobs` runs it).
    pub key_job_seconds: u64,
    /// The RADIUS front end (`[radius]`, with its `[[radius.client]]`s); off when absent.
    pub radius: Option<okey_radius::RadiusConfig>,
    /// The mail relay (`[smtp]`); without it mails stay in the outbox until one is configured.
    pub smtp: Option<okey_notify::SmtpConfig>,
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
            master_key_file: None,
            master_key_env: None,
            metrics_listen: None,
            durability: Durability::Group,
            cache_capacity: 2_000_000,
            hotp_window: okey_otp::DEFAULT_HOTP_WINDOW,
            totp_skew: okey_otp::DEFAULT_TOTP_SKEW,
            challenge_ttl: 120,
            lockout: LockoutConfig::default(),
            tls: None,
            audit_head_log_seconds: 60,
            key_job_seconds: 300,
            radius: None,
            smtp: None,
        }
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
        if self.audit_head_log_seconds > 86_400 {
            return bad("audit_head_log_seconds must be 0 (off) to 86400");
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
        Ok(())
    }

    /// The store configuration this service configuration implies.
    pub fn store_config(&self) -> okey_store::StoreConfig {
        let master_key = match (&self.master_key_env, &self.master_key_file) {
            (Some(var), _) => okey_store::MasterKeySource::Env(var.clone()),
            (None, Some(path)) => okey_store::MasterKeySource::File(path.clone()),
            (None, None) => okey_store::MasterKeySource::File(self.data_dir.join("master.key")),
        };
        okey_store::StoreConfig {
            data_dir: self.data_dir.clone(),
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
        }
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
