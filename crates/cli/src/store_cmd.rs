//! `okey store`: maintenance of the embedded store, with the server stopped (backup also works
//! while it runs: it only reads).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
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
    /// The store's current master key as file:PATH or a pkcs11: URI (instead of
    /// --master-key-file), e.g. pkcs11:token=okey;object=okey-master?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/etc/okey/hsm.pin
    #[arg(long, env = "OKEY_MASTER_KEY", global = true, conflicts_with = "master_key_file", value_parser = parse_source)]
    master_key: Option<SourceArg>,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Write an encrypted backup of the whole store (passphrase from OKEY_BACKUP_PASSPHRASE or stdin).
    Backup { out: PathBuf },
    /// Restore an encrypted backup into an empty data directory.
    Restore { input: PathBuf },
    /// Re-wrap the data keys under another master key: a key file (created if missing, mode
    /// 0600) or an AES key in an HSM. No seed is unsealed; the old master key opens nothing
    /// afterwards but backups made before.
    RotateMaster {
        /// file:PATH, or pkcs11:token=LABEL;object=KEY-LABEL?module-path=MODULE&pin-source=PIN-FILE
        /// (slot-id=N instead of token=, pin-env=VAR instead of pin-source=).
        #[arg(long, value_parser = parse_source)]
        to: SourceArg,
        /// Generate the HSM key first (AES-256, sensitive, not extractable); refused if a key
        /// with that label exists.
        #[arg(long)]
        generate: bool,
        /// Rotate the store of a running `okey serve` (admin credential; --server, OKEY_API_KEY)
        /// instead of a stopped one: verifies go on, and the server uses the new key at once.
        #[arg(long)]
        online: bool,
        #[command(flatten)]
        client: Box<crate::client::ClientArgs>,
    },
    /// Re-seal every seed under a fresh data key.
    RotateDataKey,
    /// Move the embedded store (okey stopped) into an empty PostgreSQL database: every row
    /// copied as it is (seeds stay sealed under the same keys), in one transaction, then opened
    /// there with the master key and its audit chain checked. Refused if the target holds any
    /// okey data, so it never runs twice. Then set [store] backend = "postgres".
    Migrate {
        /// sqlite:DIR, the embedded store's data directory.
        #[arg(long)]
        from: String,
        /// postgres:URL, a connection string without a password (or --to-url-file).
        #[arg(
            long,
            required_unless_present = "to_url_file",
            conflicts_with = "to_url_file"
        )]
        to: Option<String>,
        /// File (mode 0600) holding the connection string, password included.
        #[arg(long)]
        to_url_file: Option<PathBuf>,
    },
}

/// The target connection string of `okey store migrate`: never a password on the command line.
fn migrate_target(
    to: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Zeroizing<String>> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(to) = to {
        let Some(url) = to.strip_prefix("postgres:") else {
            bail!("--to must be postgres:URL (e.g. postgres:postgres://okey@db.example/okey)");
        };
        if okey_store::pg::connection_has_password(url)? {
            bail!(
                "--to holds a password, which every user of this machine could read on the \
                 command line; put the connection string in a 0600 file and use --to-url-file"
            );
        }
        return Ok(Zeroizing::new(url.to_owned()));
    }
    let Some(path) = file else {
        bail!("give --to postgres:URL or --to-url-file FILE");
    };
    let mode = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} has mode {mode:04o}; it holds the database password and must be readable by \
             its owner only (chmod 600)",
            path.display()
        );
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
    );
    Ok(Zeroizing::new(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// A parsed master key source, kept with its text (sent as is for an online rotation).
#[derive(Clone, Debug)]
struct SourceArg(MasterKeySource, String);

fn parse_source(s: &str) -> Result<SourceArg, String> {
    MasterKeySource::parse(s)
        .map(|src| SourceArg(src, s.to_owned()))
        .map_err(|e| e.to_string())
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
    let master_key = match &args.master_key {
        Some(SourceArg(src, _)) => src.clone(),
        None => MasterKeySource::File(
            args.master_key_file
                .clone()
                .unwrap_or_else(|| args.data_dir.join("master.key")),
        ),
    };
    let config = StoreConfig {
        master_key,
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
        StoreCommand::RotateMaster {
            online: true,
            client,
            to,
            generate,
        } => {
            let text = to.1;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let r = runtime.block_on(async {
                let mut c = client.connect().await?;
                let r = c
                    .tokens
                    .rotate_master_key(okey_server::proto::RotateMasterKeyRequest {
                        to: text,
                        generate,
                    })
                    .await?
                    .into_inner();
                anyhow::Ok(r)
            })?;
            println!("{}", r.detail);
        }
        StoreCommand::RotateMaster {
            to: SourceArg(to, _),
            generate,
            ..
        } => {
            if generate {
                match &to {
                    MasterKeySource::Pkcs11(p) => Store::generate_hsm_master_key(p)?,
                    _ => bail!(
                        "--generate creates a key in an HSM; a key file is created when missing"
                    ),
                }
            }
            let store = Store::open(config)?;
            store.rotate_master_key(to.clone())?;
            let next = match &to {
                MasterKeySource::Pkcs11(_) => {
                    "[master_key] source = \"pkcs11\" with the same module, token, key label and PIN"
                }
                _ => "--master-key-file (or master_key_file) pointing at it",
            };
            println!(
                "the data keys are now wrapped by {to}; start okey with {next}, and keep the old master key until the backups made with it expire"
            );
        }
        StoreCommand::Migrate {
            from,
            to,
            to_url_file,
        } => migrate(
            &from,
            to.as_deref(),
            to_url_file.as_deref(),
            args.master_key.map(|SourceArg(s, _)| s),
            args.master_key_file,
        )?,
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

/// `okey store migrate`: copy, then open the copy with the master key and check its chain.
fn migrate(
    from: &str,
    to: Option<&str>,
    to_url_file: Option<&std::path::Path>,
    master_key: Option<MasterKeySource>,
    master_key_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let Some(dir) = from.strip_prefix("sqlite:") else {
        bail!("--from must be sqlite:DIR, the embedded store's data directory");
    };
    let dir = PathBuf::from(dir);
    let url = migrate_target(to, to_url_file)?;
    let master_key = match (master_key, master_key_file) {
        (Some(src), _) => src,
        (None, Some(f)) => MasterKeySource::File(f),
        (None, None) => MasterKeySource::File(dir.join("master.key")),
    };
    let report = okey_store::pg::copy_sqlite_to_postgres(&dir, &url, &mut |t, done, total| {
        if done == total || done.is_multiple_of(10_000) {
            eprintln!("okey: {t}: {done}/{total} rows");
        }
    })?;
    let store = Store::open(StoreConfig {
        master_key,
        backend: okey_store::StoreBackend::Postgres(url),
        ..StoreConfig::in_dir(&dir)
    })?;
    let audit = store.audit_verify()?;
    if !audit.ok() {
        bail!("the moved audit chain does not check out: {audit:?}");
    }
    println!(
        "moved {} rows in {} tables ({} tokens, {} audit records, chain intact) from {} to \
         PostgreSQL; set [store] backend = \"postgres\" and keep {} as it is until the new \
         store has served",
        report.rows(),
        report.tables.len(),
        store.token_count()?,
        audit.records,
        dir.display(),
        dir.display()
    );
    Ok(())
}
