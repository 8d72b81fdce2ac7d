//! `okey serve`: flags and environment over the TOML file over the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use okey_server::config::{Durability, ServeConfig};

/// Settings that exist only in the TOML file given with `--config`: tables whose parts belong
/// together (a certificate with its key, a module with its PIN source, a list of clients).
pub const TOML_ONLY: &str = "Only in the --config TOML file: [master_key] (the master key in an HSM: \
source, module, slot or token_label, key_label, pin_file or pin_env), [tls] (cert, key, \
client_ca), [radius] with its [[radius.client]] entries, [smtp] (the mail relay), [store] \
(backend, url or url_file: a connection string stays off the command line). Every other \
setting has the flag above and its OKEY_* variable; flags and variables override the file.";

/// Run the okey service (gRPC on 127.0.0.1:50051, embedded store in ./okey-data by default).
#[derive(Debug, Args)]
#[command(after_help = TOML_ONLY)]
pub struct ServeArgs {
    /// TOML configuration file (unknown keys are an error).
    #[arg(long, env = "OKEY_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, env = "OKEY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory of the embedded store.
    #[arg(long, env = "OKEY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Master key file (default <data-dir>/master.key, created on first start, mode 0600).
    #[arg(long, env = "OKEY_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Name of an environment variable that holds the master key in hex, instead of a file.
    #[arg(long, env = "OKEY_MASTER_KEY_ENV")]
    master_key_env: Option<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, env = "OKEY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// group (concurrent commits share one fsync) or per-commit.
    #[arg(long, env = "OKEY_DURABILITY")]
    durability: Option<Durability>,
    /// Most unsealed token keys held in memory.
    #[arg(long, env = "OKEY_CACHE_CAPACITY")]
    cache_capacity: Option<usize>,
    /// HOTP look-ahead window, in candidate counters (1 to 1000).
    #[arg(long, env = "OKEY_HOTP_WINDOW")]
    hotp_window: Option<u32>,
    /// TOTP steps accepted either side of the expected one (0 to 10).
    #[arg(long, env = "OKEY_TOTP_SKEW")]
    totp_skew: Option<u32>,
    /// Seconds an OCRA challenge stays valid (1 to 3600).
    #[arg(long, env = "OKEY_CHALLENGE_TTL")]
    challenge_ttl: Option<u64>,
    /// Failures after which a token is locked until support unlocks it.
    #[arg(long, env = "OKEY_LOCKOUT_HARD_AFTER")]
    lockout_hard_after: Option<u32>,
    /// Failures after which a short, self-expiring lock starts (0: none).
    #[arg(long, env = "OKEY_LOCKOUT_SOFT_AFTER")]
    lockout_soft_after: Option<u32>,
    /// Length of that short lock, in seconds.
    #[arg(long, env = "OKEY_LOCKOUT_SOFT_LOCK_SECONDS")]
    lockout_soft_lock_seconds: Option<u64>,
    /// Seconds between "audit chain head" log lines (0: off).
    #[arg(long, env = "OKEY_AUDIT_HEAD_LOG_SECONDS")]
    audit_head_log_seconds: Option<u64>,
    /// Seconds between runs of the scheduled key job: expiry, deactivations (0: off).
    #[arg(long, env = "OKEY_KEY_JOB_SECONDS")]
    key_job_seconds: Option<u64>,
    /// How long a temporary key issued by support works, in seconds (default 10 days).
    #[arg(long, env = "OKEY_TEMPORARY_KEY_SECONDS")]
    temporary_key_seconds: Option<u64>,
    /// Seconds between signed anchors of the audit chain (0: none).
    #[arg(long, env = "OKEY_AUDIT_ANCHOR_INTERVAL_SECONDS")]
    audit_anchor_interval_seconds: Option<u64>,
    /// The append-only file the audit anchors go to (default <data-dir>/audit-anchors.log).
    #[arg(long, env = "OKEY_AUDIT_ANCHORS_FILE")]
    audit_anchors_file: Option<PathBuf>,
    /// Also send each audit anchor to syslog (true or false).
    #[arg(long, env = "OKEY_AUDIT_SYSLOG")]
    audit_syslog: Option<bool>,
    /// The local syslog datagram socket (default /dev/log).
    #[arg(long, env = "OKEY_AUDIT_SYSLOG_SOCKET")]
    audit_syslog_socket: Option<PathBuf>,
    /// The node name signed into each audit anchor (default the host name).
    #[arg(long, env = "OKEY_AUDIT_NODE")]
    audit_node: Option<String>,
    /// Start the staff web portal (true or false; default true).
    #[arg(long, env = "OKEY_PORTAL_ENABLED")]
    portal_enabled: Option<bool>,
    /// The portal's HTTP listen address (default 127.0.0.1:8080).
    #[arg(long, env = "OKEY_PORTAL_LISTEN")]
    portal_listen: Option<SocketAddr>,
    /// The portal's address as browsers see it (https://... behind a TLS proxy: Secure cookies).
    #[arg(long, env = "OKEY_PORTAL_PUBLIC_URL")]
    portal_public_url: Option<String>,
    /// The OpenID Connect provider's issuer URL the portal logs people in with.
    #[arg(long, env = "OKEY_PORTAL_ISSUER")]
    portal_issuer: Option<String>,
    /// The portal's client id at that provider.
    #[arg(long, env = "OKEY_PORTAL_CLIENT_ID")]
    portal_client_id: Option<String>,
    /// A file (mode 0600) holding the portal's client secret.
    #[arg(long, env = "OKEY_PORTAL_CLIENT_SECRET_FILE")]
    portal_client_secret_file: Option<PathBuf>,
    /// The ID token claim holding the person's directory id (default preferred_username).
    #[arg(long, env = "OKEY_PORTAL_PERSON_CLAIM")]
    portal_person_claim: Option<String>,
    /// Minutes a portal session lasts from login (1 to 1440).
    #[arg(long, env = "OKEY_PORTAL_SESSION_MINUTES")]
    portal_session_minutes: Option<u64>,
    /// Offset from UTC, in minutes, of the dates on receipts the portal prints.
    #[arg(
        long,
        env = "OKEY_PORTAL_UTC_OFFSET_MINUTES",
        allow_hyphen_values = true
    )]
    portal_utc_offset_minutes: Option<i32>,
    /// IANA time zone of the portal's dates, shown and typed (default: [smtp] time_zone, else UTC).
    #[arg(long, env = "OKEY_PORTAL_TIME_ZONE")]
    portal_time_zone: Option<String>,
    /// Shortest PIN a requester may choose (default 4).
    #[arg(long, env = "OKEY_REQUESTS_PIN_MIN_LEN")]
    requests_pin_min_len: Option<usize>,
    /// Longest PIN a requester may choose (default 8).
    #[arg(long, env = "OKEY_REQUESTS_PIN_MAX_LEN")]
    requests_pin_max_len: Option<usize>,
    /// PINs of digits only (true, the default) or of letters and digits (false).
    #[arg(long, env = "OKEY_REQUESTS_PIN_DIGITS_ONLY")]
    requests_pin_digits_only: Option<bool>,
    /// Days after which a waiting request reminds its validator, comma-separated (default 3,7).
    #[arg(long, env = "OKEY_REQUESTS_REMIND_AFTER_DAYS", value_delimiter = ',')]
    requests_remind_after_days: Option<Vec<u32>>,
    /// Seconds after which a submitted request nobody decided expires (default 30 days; 0: never).
    #[arg(long, env = "OKEY_REQUESTS_EXPIRE_SUBMITTED_SECONDS")]
    requests_expire_submitted_seconds: Option<u64>,
    /// Seconds after which a key ready for pickup nobody collected goes back to stock and its
    /// request expires (default 60 days; 0: never).
    #[arg(long, env = "OKEY_REQUESTS_EXPIRE_READY_SECONDS")]
    requests_expire_ready_seconds: Option<u64>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "OKEY_LOG_JSON")]
    log_json: bool,
}

impl ServeArgs {
    /// Resolve into a checked configuration: defaults, then the file, then env and flags.
    pub fn resolve(&self) -> anyhow::Result<ServeConfig> {
        let mut config = match &self.config {
            Some(path) => ServeConfig::from_file(path)?,
            None => ServeConfig::default(),
        };
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = &self.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = &self.master_key_file {
            config.master_key_file = Some(v.clone());
        }
        if let Some(v) = &self.master_key_env {
            config.master_key_env = Some(v.clone());
        }
        if let Some(v) = self.metrics_listen {
            config.metrics_listen = Some(v);
        }
        if let Some(v) = self.durability {
            config.durability = v;
        }
        let set = |slot: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut config.challenge_ttl, self.challenge_ttl);
        set(
            &mut config.lockout.soft_lock_seconds,
            self.lockout_soft_lock_seconds,
        );
        set(
            &mut config.audit_head_log_seconds,
            self.audit_head_log_seconds,
        );
        set(&mut config.key_job_seconds, self.key_job_seconds);
        set(
            &mut config.temporary_key_seconds,
            self.temporary_key_seconds,
        );
        set(
            &mut config.audit.anchor_interval_seconds,
            self.audit_anchor_interval_seconds,
        );
        for (slot, v) in [
            (&mut config.hotp_window, self.hotp_window),
            (&mut config.totp_skew, self.totp_skew),
            (&mut config.lockout.hard_after, self.lockout_hard_after),
            (&mut config.lockout.soft_after, self.lockout_soft_after),
        ] {
            if let Some(v) = v {
                *slot = v;
            }
        }
        if let Some(v) = self.cache_capacity {
            config.cache_capacity = v;
        }
        if let Some(v) = &self.audit_anchors_file {
            config.audit.anchors_file = Some(v.clone());
        }
        if let Some(v) = self.audit_syslog {
            config.audit.syslog = v;
        }
        if let Some(v) = &self.audit_syslog_socket {
            config.audit.syslog_socket = v.clone();
        }
        if let Some(v) = &self.audit_node {
            config.audit.node = Some(v.clone());
        }
        let p = &mut config.portal;
        if let Some(v) = self.portal_enabled {
            p.enabled = v;
        }
        if let Some(v) = self.portal_listen {
            p.listen = v;
        }
        for (slot, v) in [
            (&mut p.public_url, &self.portal_public_url),
            (&mut p.issuer, &self.portal_issuer),
            (&mut p.client_id, &self.portal_client_id),
        ] {
            if let Some(v) = v {
                *slot = Some(v.clone());
            }
        }
        if let Some(v) = &self.portal_client_secret_file {
            p.client_secret_file = Some(v.clone());
        }
        if let Some(v) = &self.portal_person_claim {
            p.person_claim = v.clone();
        }
        if let Some(v) = self.portal_session_minutes {
            p.session_minutes = v;
        }
        if let Some(v) = &self.portal_time_zone {
            p.time_zone = Some(v.clone());
        }
        if let Some(v) = self.portal_utc_offset_minutes {
            p.utc_offset_minutes = v;
        }
        let r = &mut config.requests;
        for (slot, v) in [
            (&mut r.pin_min_len, self.requests_pin_min_len),
            (&mut r.pin_max_len, self.requests_pin_max_len),
        ] {
            if let Some(v) = v {
                *slot = v;
            }
        }
        if let Some(v) = self.requests_pin_digits_only {
            r.pin_digits_only = v;
        }
        if let Some(v) = &self.requests_remind_after_days {
            r.remind_after_days = v.clone();
        }
        for (slot, v) in [
            (
                &mut r.expire_submitted_seconds,
                self.requests_expire_submitted_seconds,
            ),
            (
                &mut r.expire_ready_seconds,
                self.requests_expire_ready_seconds,
            ),
        ] {
            if let Some(v) = v {
                *slot = v;
            }
        }
        config.validate()?;
        Ok(config)
    }
}

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OKEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or pipeline gets plain `key=value` text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.resolve()?;
    init_logging(args.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

/// Serve gRPC (and the portal beside it) until SIGINT or SIGTERM, then shut down gracefully.
async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let zone = config
        .portal_zone()
        .map_err(|e| anyhow::anyhow!("[portal] time_zone: {e}"))?;
    let mut server = okey_server::start(config.clone()).await?;
    okey_server::serve::announce(&server);
    let link = server.portal_link.as_ref().map(|l| l.target());
    let portal = match (server.portal_key.take(), link) {
        (Some(key), Some(link)) => {
            match okey_portal::start(&config.portal, link, key, zone).await {
                Ok(p) => {
                    eprintln!("okey: portal on {}/", p.public_url);
                    Some(p)
                }
                Err(e) => {
                    let _ = server.stop().await;
                    return Err(e.into());
                }
            }
        }
        _ => None,
    };
    okey_server::serve::wait_for_signal().await?;
    eprintln!("okey: shutting down");
    if let Some(p) = portal {
        p.stop().await;
    }
    server.stop().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// The keys a TOML table accepts, read from the parser's own refusal of an unknown key
    /// ("unknown field `x`, expected one of `a`, `b`"); `None` when `table` is not a table.
    fn keys_of(table: Option<&str>) -> Option<Vec<String>> {
        let text = match table {
            None => "zz_not_a_key = 1\n".to_owned(),
            Some(t) => format!("[{t}]\nzz_not_a_key = 1\n"),
        };
        let err = ServeConfig::from_toml(&text).expect_err("an unknown key is refused");
        let msg = err.to_string();
        let (_, list) = msg.split_once("expected one of ")?;
        Some(
            list.split(',')
                .map(|k| k.trim().trim_matches('`').to_owned())
                .filter(|k| !k.is_empty())
                .collect(),
        )
    }

    /// Every key of the configuration file has a flag with an `OKEY_*` variable, or is in a
    /// table the help names as TOML-only.
    #[test]
    fn every_config_key_has_a_flag_or_is_listed_as_toml_only() {
        let help = Cli::command().render_long_help().to_string();
        let top = keys_of(None).expect("the top level lists its keys");
        assert!(top.len() >= 10, "{top:?}");
        let mut missing = Vec::new();
        for key in &top {
            let flag = format!("--{}", key.replace('_', "-"));
            let var = format!("OKEY_{}", key.to_ascii_uppercase());
            if help.contains(&format!("{flag} ")) && help.contains(&var) {
                continue;
            }
            if help.contains(&format!("[{key}]")) {
                continue;
            }
            match keys_of(Some(key)) {
                Some(inner) => {
                    for k in inner {
                        let flag = format!("--{}-{}", key.replace('_', "-"), k.replace('_', "-"));
                        let var = format!("OKEY_{}_{}", key, k).to_ascii_uppercase();
                        if !(help.contains(&format!("{flag} ")) && help.contains(&var)) {
                            missing.push(format!("{key}.{k}"));
                        }
                    }
                }
                None => missing.push(key.clone()),
            }
        }
        assert!(
            missing.is_empty(),
            "config keys with neither a flag nor a TOML-only mention: {missing:?}"
        );
    }

    #[test]
    fn flags_override_the_file_and_are_checked() {
        let dir = std::env::temp_dir().join(format!("okey-serve-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("okey.toml");
        std::fs::write(&file, "hotp_window = 20\n[lockout]\nsoft_after = 4\n").expect("write");
        let cli = Cli::try_parse_from([
            "okey",
            "--config",
            file.to_str().expect("utf-8 path"),
            "--hotp-window",
            "30",
            "--totp-skew",
            "2",
            "--challenge-ttl",
            "60",
            "--lockout-hard-after",
            "6",
            "--lockout-soft-lock-seconds",
            "90",
            "--key-job-seconds",
            "0",
        ])
        .expect("flags parse");
        let c = cli.serve.resolve().expect("valid");
        assert_eq!(c.hotp_window, 30);
        assert_eq!(c.totp_skew, 2);
        assert_eq!(c.challenge_ttl, 60);
        assert_eq!(c.lockout.hard_after, 6);
        assert_eq!(c.lockout.soft_after, 4, "from the file");
        assert_eq!(c.lockout.soft_lock_seconds, 90);
        assert_eq!(c.key_job_seconds, 0);
        let bad = Cli::try_parse_from(["okey", "--hotp-window", "0"]).expect("parses");
        let err = bad.serve.resolve().expect_err("out of range");
        assert!(err.to_string().contains("hotp_window"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
