//! `okey serve`: flags and environment over the TOML file over the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use okey_server::config::{Durability, ServeConfig};

/// Run the okey service (gRPC on 127.0.0.1:50051, embedded store in ./okey-data by default).
#[derive(Debug, Args)]
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
    runtime.block_on(okey_server::run(config))?;
    Ok(ExitCode::SUCCESS)
}
