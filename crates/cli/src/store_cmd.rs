//! `okey store`: maintenance of the embedded store, with the server stopped (backup also works
//! while it runs: it only reads).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use okey_store::{MasterKeySource, Store, StoreConfig};
use zeroize::Zeroizing;

/// Offline store maintenance.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Data directory of the embedded store.
    #[arg(
        long,
        env = "OKEY_DATA_DIR",
        default_value = "okey-data",
        global = true
    )]
    data_dir: PathBuf,
    /// Master key file (default <data-dir>/master.key).
    #[arg(long, env = "OKEY_MASTER_KEY_FILE", global = true)]
    master_key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Write an encrypted backup of the whole store (passphrase from OKEY_BACKUP_PASSPHRASE or stdin).
    Backup { out: PathBuf },
    /// Restore an encrypted backup into an empty data directory.
    Restore { input: PathBuf },
    /// Re-wrap the data key under a new master key file (created if missing, mode 0600).
    RotateMasterKey {
        /// The new master key file.
        new_key_file: PathBuf,
    },
    /// Re-seal every seed under a fresh data key.
    RotateDataKey,
}

fn passphrase() -> anyhow::Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("OKEY_BACKUP_PASSPHRASE") {
        return Ok(Zeroizing::new(p));
    }
    let p = crate::prompt::secret("backup passphrase")?;
    if p.len() < 12 {
        bail!("a backup passphrase has at least 12 characters");
    }
    Ok(p)
}

pub fn run(args: StoreArgs) -> anyhow::Result<ExitCode> {
    let config = StoreConfig {
        master_key: MasterKeySource::File(
            args.master_key_file
                .clone()
                .unwrap_or_else(|| args.data_dir.join("master.key")),
        ),
        ..StoreConfig::in_dir(&args.data_dir)
    };
    match args.command {
        StoreCommand::Backup { out } => {
            let pass = passphrase()?;
            let store = Store::open(config)?;
            let r = store.backup(&out, &pass)?;
            println!(
                "wrote {} ({} bytes): {} tokens, {} API keys, {} audit records",
                out.display(),
                r.bytes,
                r.tokens,
                r.api_keys,
                r.audit_records
            );
        }
        StoreCommand::Restore { input } => {
            let pass = passphrase()?;
            let r = Store::restore(config, &input, &pass)?;
            println!(
                "restored {} tokens, {} API keys, {} audit records into {}",
                r.tokens,
                r.api_keys,
                r.audit_records,
                args.data_dir.display()
            );
            if r.time_tokens_advanced > 0 {
                println!(
                    "{} time-based tokens accept no code of any step a verify could have accepted at the restore moment (their drift and the skew window included) or before",
                    r.time_tokens_advanced
                );
            }
            if r.counter_tokens > 0 {
                eprintln!(
                    "okey: {} HOTP tokens are back at their counters of backup time: codes used since the backup are valid again until each token moves past them; resync or replace the keys of anyone whose codes may have been seen",
                    r.counter_tokens
                );
            }
        }
        StoreCommand::RotateMasterKey { new_key_file } => {
            let store = Store::open(config)?;
            store.rotate_master_key(MasterKeySource::File(new_key_file.clone()))?;
            println!(
                "the data key is now wrapped by {}; start okey with --master-key-file {} and keep the old key until backups made with it expire",
                new_key_file.display(),
                new_key_file.display()
            );
        }
        StoreCommand::RotateDataKey => {
            let store = Store::open(config)?;
            let r = store.rotate_data_key()?;
            println!(
                "re-sealed {} seeds under data key version {} in {} batches",
                r.resealed, r.new_version, r.batches
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
