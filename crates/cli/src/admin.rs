//! The administration client: tokens, verification, audit and callers, over the gRPC API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use okey_server::proto;
use zeroize::Zeroizing;

use crate::client::ClientArgs;

/// Token administration.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OtpTypeArg {
    Hotp,
    Totp,
    Ocra,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum HashArg {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StatusArg {
    Initialising,
    Pending,
    Active,
    Disabled,
    Revoked,
}

#[derive(Debug, Args)]
struct OtpParamArgs {
    /// Code type.
    #[arg(long = "type", value_enum, default_value = "hotp")]
    otp_type: OtpTypeArg,
    /// HMAC hash (default sha1; an OCRA token's is its suite's).
    #[arg(long, value_enum)]
    algorithm: Option<HashArg>,
    /// Digits shown, 6 to 10 (default 6; an OCRA token's are its suite's).
    #[arg(long)]
    digits: Option<u32>,
    /// TOTP step in seconds (default 30; only with --type totp).
    #[arg(long)]
    step: Option<u32>,
    /// OCRA suite (with --type ocra).
    #[arg(long)]
    suite: Option<String>,
}

impl OtpParamArgs {
    fn to_proto(&self) -> proto::OtpParameters {
        proto::OtpParameters {
            r#type: match self.otp_type {
                OtpTypeArg::Hotp => proto::OtpType::Hotp,
                OtpTypeArg::Totp => proto::OtpType::Totp,
                OtpTypeArg::Ocra => proto::OtpType::Ocra,
            } as i32,
            // Unset values are left to the server's defaults, so a value given for a field
            // that does not apply to the type (a step on HOTP) is refused there, not dropped.
            algorithm: self
                .algorithm
                .map_or(proto::HashAlgorithm::Unspecified, hash_proto)
                as i32,
            digits: self.digits.unwrap_or(0),
            step: self.step.unwrap_or(0),
            t0: 0,
            ocra_suite: self.suite.clone().unwrap_or_default(),
        }
    }
}

fn hash_proto(h: HashArg) -> proto::HashAlgorithm {
    match h {
        HashArg::Sha1 => proto::HashAlgorithm::Sha1,
        HashArg::Sha256 => proto::HashAlgorithm::Sha256,
        HashArg::Sha512 => proto::HashAlgorithm::Sha512,
    }
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a software token; prints its otpauth:// URI once (and a QR code with --qr).
    Create {
        /// Serial (generated when omitted).
        #[arg(long)]
        serial: Option<String>,
        #[command(flatten)]
        otp: OtpParamArgs,
        /// Holder (user) to assign it to.
        #[arg(long)]
        holder: Option<String>,
        /// Issuer shown by the phone app.
        #[arg(long)]
        issuer: Option<String>,
        /// Account name shown by the phone app.
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Also print the URI as a QR code in the terminal.
        #[arg(long)]
        qr: bool,
        /// Also write the QR code as a PNG image (it carries the seed: a new file, mode 0600).
        #[arg(long)]
        qr_png: Option<PathBuf>,
    },
    /// Import one token with a known seed (migration).
    Import {
        #[arg(long)]
        serial: String,
        #[command(flatten)]
        otp: OtpParamArgs,
        /// Seed in hex (or --seed-base32). Either flag puts the seed in the process list and the
        /// shell history: prefer OKEY_SEED, or neither, to be asked (without echo) for it.
        #[arg(long, conflicts_with = "seed_base32")]
        seed_hex: Option<String>,
        /// Seed in base32 (same caution as --seed-hex).
        #[arg(long)]
        seed_base32: Option<String>,
        #[arg(long, default_value_t = 0)]
        counter: u64,
        #[arg(long)]
        holder: Option<String>,
        /// Software token (default: hardware).
        #[arg(long)]
        software: bool,
    },
    /// Import a vendor seed file: PSKC (RFC 6030) or OATH CSV (`serial, seed, type, digits, step`).
    /// The file is sent as it is and decrypted by the server. All or nothing unless --partial.
    ImportFile {
        /// The file.
        file: PathBuf,
        /// The file is OATH CSV (default: PSKC).
        #[arg(long)]
        csv: bool,
        /// Environment variable holding the PSKC password (PBKDF2-protected files).
        #[arg(long)]
        password_env: Option<String>,
        /// File holding the PSKC pre-shared key in hex.
        #[arg(long, conflicts_with = "password_env")]
        key_file: Option<PathBuf>,
        /// Import the good packages and report the others.
        #[arg(long)]
        partial: bool,
        /// The tokens are software tokens (default: hardware).
        #[arg(long)]
        software: bool,
        /// PSKC: each key's UserId becomes its holder.
        #[arg(long, conflicts_with = "csv")]
        holder_from_user_id: bool,
    },
    /// Export stock (unassigned tokens) with their seeds as an encrypted PSKC file, to move it
    /// to another site. The file is written with mode 0600 and must not exist yet.
    ExportStock {
        /// The file to write.
        out: PathBuf,
        /// Environment variable holding the export password (at least 12 characters).
        #[arg(long, required_unless_present = "key_file")]
        password_env: Option<String>,
        /// File holding a 32-byte pre-shared key in hex.
        #[arg(long, conflicts_with = "password_env")]
        key_file: Option<PathBuf>,
        /// Only these serials (default: every unassigned active token).
        #[arg(long = "serial")]
        serials: Vec<String>,
        /// Once the file is written, flushed to disk and read back (every package decrypts
        /// with the same password or key), revoke the tokens it holds here: a move, not a copy.
        #[arg(long)]
        revoke: bool,
    },
    /// List tokens.
    List {
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        #[arg(long)]
        holder: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Continue after this serial (the previous page's last).
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one token.
    Show {
        serial: String,
    },
    /// Give a token to a holder.
    Assign {
        serial: String,
        holder: String,
    },
    /// Take a token back from its holder.
    Unassign {
        serial: String,
    },
    /// Set the server-side PIN (read from OKEY_PIN or prompted on stdin), or clear it.
    Pin {
        serial: String,
        /// Remove the PIN instead.
        #[arg(long)]
        clear: bool,
    },
    /// Resynchronise with two consecutive codes.
    Resync {
        serial: String,
        first: String,
        second: String,
    },
    /// Clear failures and the lock.
    Unlock {
        serial: String,
    },
    Enable {
        serial: String,
    },
    Disable {
        serial: String,
    },
    /// Revoke for good.
    Revoke {
        serial: String,
    },
}

fn status_proto(s: StatusArg) -> proto::TokenStatus {
    match s {
        StatusArg::Initialising => proto::TokenStatus::Initialising,
        StatusArg::Pending => proto::TokenStatus::Pending,
        StatusArg::Active => proto::TokenStatus::Active,
        StatusArg::Disabled => proto::TokenStatus::Disabled,
        StatusArg::Revoked => proto::TokenStatus::Revoked,
    }
}

fn status_name(s: i32) -> &'static str {
    match proto::TokenStatus::try_from(s) {
        Ok(proto::TokenStatus::Initialising) => "initialising",
        Ok(proto::TokenStatus::Pending) => "pending",
        Ok(proto::TokenStatus::Active) => "active",
        Ok(proto::TokenStatus::Disabled) => "disabled",
        Ok(proto::TokenStatus::Revoked) => "revoked",
        _ => "?",
    }
}

fn otp_summary(p: Option<&proto::OtpParameters>) -> String {
    let Some(p) = p else { return "?".into() };
    let alg = match proto::HashAlgorithm::try_from(p.algorithm) {
        Ok(proto::HashAlgorithm::Sha256) => "sha256",
        Ok(proto::HashAlgorithm::Sha512) => "sha512",
        _ => "sha1",
    };
    match proto::OtpType::try_from(p.r#type) {
        Ok(proto::OtpType::Totp) => format!("totp/{alg}/{}d/{}s", p.digits, p.step),
        Ok(proto::OtpType::Ocra) => format!("ocra/{}", p.ocra_suite),
        _ => format!("hotp/{alg}/{}d", p.digits),
    }
}

pub fn print_token(t: &proto::Token) {
    let kind = if t.kind == proto::TokenKind::Software as i32 {
        "software"
    } else {
        "hardware"
    };
    println!("serial:      {}", t.serial);
    println!("kind:        {kind}");
    println!("otp:         {}", otp_summary(t.otp.as_ref()));
    println!("status:      {}", status_name(t.status));
    println!(
        "holder:      {}",
        if t.holder.is_empty() { "-" } else { &t.holder }
    );
    println!("counter:     {}", t.counter);
    println!("last step:   {}", t.last_step);
    println!("drift:       {}", t.drift);
    println!("failures:    {}", t.failures);
    println!("locked:      {}", if t.locked { "yes" } else { "no" });
    println!("server PIN:  {}", if t.has_pin { "yes" } else { "no" });
    if !t.description.is_empty() {
        println!("description: {}", t.description);
    }
}

/// The password (from an environment variable) or pre-shared key (from a hex file) that
/// protects a seed file; empty when not given.
fn file_protection(
    password_env: Option<&str>,
    key_file: Option<&std::path::Path>,
) -> anyhow::Result<(Zeroizing<String>, Zeroizing<Vec<u8>>)> {
    let password = match password_env {
        Some(var) => {
            Zeroizing::new(std::env::var(var).with_context(|| format!("{var} is not set"))?)
        }
        None => Zeroizing::new(String::new()),
    };
    let key = match key_file {
        Some(path) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            );
            Zeroizing::new(
                hex::decode(text.trim()).context("the key file must hold the key in hex")?,
            )
        }
        None => Zeroizing::new(Vec::new()),
    };
    Ok((password, key))
}

/// Create a file that will carry a secret (a QR code of a seed, a stock file): readable by its
/// owner only, never over an existing file or through a link left in its place.
fn create_secret_file(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Write `data` to a new secret file ([`create_secret_file`]), flushed to disk; removed again
/// if the write fails.
fn write_secret_file(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = create_secret_file(path)?;
    let written = file.write_all(data).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// `okey token export-stock`: the stock file is created (mode 0600, never over an existing
/// file), filled from the server's stream and flushed to disk; on any failure it is removed. With
/// `revoke`, the file is then read back with the same password or key, and only the tokens it
/// holds are revoked, one by one, so a file that did not reach the disk never costs the stock.
async fn export_stock(
    t: &mut proto::token_service_client::TokenServiceClient<crate::client::Authed>,
    out: &std::path::Path,
    password: Zeroizing<String>,
    key: Zeroizing<Vec<u8>>,
    serials: Vec<String>,
    revoke: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut file = create_secret_file(out)?;
    let mut bytes = 0usize;
    let written: anyhow::Result<()> = async {
        let mut stream = t
            .export_stock(proto::ExportStockRequest {
                serials,
                password: password.to_string(),
                pre_shared_key: key.to_vec(),
            })
            .await?
            .into_inner();
        while let Some(chunk) = stream.message().await? {
            file.write_all(&chunk.data)
                .with_context(|| format!("cannot write {}", out.display()))?;
            bytes += chunk.data.len();
        }
        file.sync_all()
            .with_context(|| format!("cannot flush {} to disk", out.display()))?;
        Ok(())
    }
    .await;
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    println!("wrote {} ({bytes} bytes)", out.display());
    if !revoke {
        return Ok(ExitCode::SUCCESS);
    }
    let options = if key.is_empty() {
        okey_intake::PskcOptions::with_password(password)
    } else {
        okey_intake::PskcOptions::with_key(key)
    };
    let reread =
        std::fs::File::open(out).with_context(|| format!("cannot read {} back", out.display()))?;
    let packages = okey_intake::collect_all(okey_intake::PskcReader::new(
        std::io::BufReader::new(reread),
        options,
    ))
    .map_err(|r| anyhow::anyhow!("{r}"))
    .with_context(|| {
        format!(
            "{} does not read back; nothing was revoked and the file is kept for inspection",
            out.display()
        )
    })?;
    let exported: Vec<String> = packages.iter().filter_map(|p| p.serial.clone()).collect();
    drop(packages);
    for (revoked, serial) in exported.iter().enumerate() {
        if let Err(status) = t
            .revoke_token(proto::TokenRef {
                serial: serial.clone(),
            })
            .await
        {
            let left: Vec<&str> = exported.iter().skip(revoked).map(String::as_str).collect();
            bail!(
                "revoking {serial} failed ({}): {revoked} of {} exported tokens revoked; still to revoke: {}",
                status.message(),
                exported.len(),
                left.join(" ")
            );
        }
    }
    println!(
        "read {} back ({} tokens) and revoked them here",
        out.display(),
        exported.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_secret(var: &str, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(v) = std::env::var(var) {
        return Ok(Zeroizing::new(v));
    }
    crate::prompt::secret(prompt)
}

pub async fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let mut c = args.client.connect().await?;
    let t = &mut c.tokens;
    let token = match args.command {
        TokenCommand::Create {
            serial,
            otp,
            holder,
            issuer,
            account,
            description,
            qr,
            qr_png,
        } => {
            let r = t
                .create_token(proto::CreateTokenRequest {
                    serial: serial.unwrap_or_default(),
                    kind: proto::TokenKind::Software as i32,
                    otp: Some(otp.to_proto()),
                    holder: holder.unwrap_or_default(),
                    description: description.unwrap_or_default(),
                    issuer: issuer.unwrap_or_default(),
                    account: account.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let uri = Zeroizing::new(r.otpauth_uri);
            println!("{}", uri.as_str());
            if qr || qr_png.is_some() {
                let parsed = okey_intake::KeyUri::parse(&uri)
                    .context("the server returned an unreadable URI")?;
                if qr {
                    println!("{}", parsed.qr_terminal(false)?.as_str());
                }
                if let Some(path) = qr_png {
                    write_secret_file(&path, parsed.qr_png(8)?.as_slice())?;
                }
            }
            eprintln!(
                "the URI and QR code carry the seed and are shown only now; the token stays pending until a first valid code"
            );
            r.token
        }
        TokenCommand::Import {
            serial,
            otp,
            seed_hex,
            seed_base32,
            counter,
            holder,
            software,
        } => {
            let (hex, b32) = match (seed_hex, seed_base32) {
                (Some(h), None) => (Zeroizing::new(h), Zeroizing::new(String::new())),
                (None, Some(b)) => (Zeroizing::new(String::new()), Zeroizing::new(b)),
                _ => (
                    read_secret("OKEY_SEED", "seed (hex)")?,
                    Zeroizing::new(String::new()),
                ),
            };
            let r = t
                .import_tokens(proto::ImportTokensRequest {
                    tokens: vec![proto::ImportedToken {
                        serial: serial.clone(),
                        kind: if software {
                            proto::TokenKind::Software
                        } else {
                            proto::TokenKind::Hardware
                        } as i32,
                        otp: Some(otp.to_proto()),
                        seed_hex: hex.to_string(),
                        seed_base32: b32.to_string(),
                        counter,
                        holder: holder.unwrap_or_default(),
                        description: String::new(),
                    }],
                })
                .await?
                .into_inner();
            println!("imported {}", r.imported);
            Some(
                t.get_token(proto::GetTokenRequest { serial })
                    .await?
                    .into_inner(),
            )
        }
        TokenCommand::ImportFile {
            file,
            csv,
            password_env,
            key_file,
            partial,
            software,
            holder_from_user_id,
        } => {
            let (password, key) = file_protection(password_env.as_deref(), key_file.as_deref())?;
            let mut input = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("cannot open {}", file.display()))?;
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            let first = proto::SeedFileChunk {
                options: Some(proto::SeedFileOptions {
                    format: if csv {
                        proto::SeedFileFormat::OathCsv
                    } else {
                        proto::SeedFileFormat::Pskc
                    } as i32,
                    password: password.to_string(),
                    pre_shared_key: key.to_vec(),
                    partial,
                    kind: if software {
                        proto::TokenKind::Software
                    } else {
                        proto::TokenKind::Hardware
                    } as i32,
                    holder_from_user_id,
                }),
                ..Default::default()
            };
            tx.send(first).await.context("internal channel")?;
            // The last message says `end` only once the whole file was read: a read that fails
            // half-way ends the stream without it, and the server imports nothing.
            let reader = tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                loop {
                    let mut buf = vec![0u8; 64 * 1024];
                    let n = input.read(&mut buf).await?;
                    buf.truncate(n);
                    let chunk = proto::SeedFileChunk {
                        data: buf,
                        end: n == 0,
                        ..Default::default()
                    };
                    if tx.send(chunk).await.is_err() || n == 0 {
                        return Ok::<(), std::io::Error>(());
                    }
                }
            });
            let call = t
                .import_seed_file(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            reader
                .await
                .context("file reader")?
                .with_context(|| format!("cannot read {}; nothing was imported", file.display()))?;
            let r = call?.into_inner();
            println!("imported {}", r.imported);
            for p in &r.refused {
                println!("refused {}: {}", p.package, p.reason);
            }
            for note in &r.ignored {
                println!("ignored: {note}");
            }
            return Ok(if r.refused.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        TokenCommand::ExportStock {
            out,
            password_env,
            key_file,
            serials,
            revoke,
        } => {
            let (password, key) = file_protection(password_env.as_deref(), key_file.as_deref())?;
            return export_stock(t, &out, password, key, serials, revoke).await;
        }
        TokenCommand::List {
            status,
            holder,
            prefix,
            limit,
            after,
        } => {
            let r = t
                .list_tokens(proto::ListTokensRequest {
                    status: status.map_or(0, |s| status_proto(s) as i32),
                    holder: holder.unwrap_or_default(),
                    kind: 0,
                    serial_prefix: prefix.unwrap_or_default(),
                    page_size: limit,
                    page_token: after.unwrap_or_default(),
                })
                .await?
                .into_inner();
            println!(
                "{:<20} {:<13} {:<28} {:<8} {:>4} HOLDER",
                "SERIAL", "STATUS", "OTP", "LOCKED", "FAIL"
            );
            for tok in &r.tokens {
                println!(
                    "{:<20} {:<13} {:<28} {:<8} {:>4} {}",
                    tok.serial,
                    status_name(tok.status),
                    otp_summary(tok.otp.as_ref()),
                    if tok.locked { "yes" } else { "no" },
                    tok.failures,
                    if tok.holder.is_empty() {
                        "-"
                    } else {
                        &tok.holder
                    }
                );
            }
            if !r.next_page_token.is_empty() {
                eprintln!("more: --after {}", r.next_page_token);
            }
            None
        }
        TokenCommand::Show { serial } => Some(
            t.get_token(proto::GetTokenRequest { serial })
                .await?
                .into_inner(),
        ),
        TokenCommand::Assign { serial, holder } => Some(
            t.assign_token(proto::AssignTokenRequest { serial, holder })
                .await?
                .into_inner(),
        ),
        TokenCommand::Unassign { serial } => Some(
            t.assign_token(proto::AssignTokenRequest {
                serial,
                holder: String::new(),
            })
            .await?
            .into_inner(),
        ),
        TokenCommand::Pin { serial, clear } => {
            let pin = if clear {
                Zeroizing::new(String::new())
            } else {
                read_secret("OKEY_PIN", "new PIN")?
            };
            if !clear && pin.is_empty() {
                bail!("an empty PIN: use --clear to remove the PIN");
            }
            Some(
                t.set_pin(proto::SetPinRequest {
                    serial,
                    pin: pin.to_string(),
                })
                .await?
                .into_inner(),
            )
        }
        TokenCommand::Resync {
            serial,
            first,
            second,
        } => Some(
            t.resync_token(proto::ResyncTokenRequest {
                serial,
                first_code: first,
                second_code: second,
            })
            .await?
            .into_inner(),
        ),
        TokenCommand::Unlock { serial } => Some(
            t.unlock_token(proto::TokenRef { serial })
                .await?
                .into_inner(),
        ),
        TokenCommand::Enable { serial } => Some(
            t.enable_token(proto::TokenRef { serial })
                .await?
                .into_inner(),
        ),
        TokenCommand::Disable { serial } => Some(
            t.disable_token(proto::TokenRef { serial })
                .await?
                .into_inner(),
        ),
        TokenCommand::Revoke { serial } => Some(
            t.revoke_token(proto::TokenRef { serial })
                .await?
                .into_inner(),
        ),
    };
    if let Some(tok) = token {
        print_token(&tok);
    }
    Ok(ExitCode::SUCCESS)
}

/// Check a passcode as a front end would.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The user (holder) logging in.
    #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
    user: Option<String>,
    /// Or one token by serial.
    #[arg(long)]
    serial: Option<String>,
    /// PIN followed by the code. An empty passcode (`--passcode ''`) asks for a challenge when
    /// the user has a challenge-response (OCRA) key, and is refused as bad input (exit 2) for
    /// anyone else. The flag puts the PIN in the process list: prefer OKEY_PASSCODE, or leave it
    /// out to be asked (without echo) for it.
    #[arg(long)]
    passcode: Option<String>,
    /// Answer to a challenge: its transaction id.
    #[arg(long)]
    transaction: Option<String>,
}

fn subject(user: Option<String>, serial: Option<String>) -> proto::Subject {
    proto::Subject {
        kind: match (user, serial) {
            (Some(u), _) => Some(proto::subject::Kind::User(u)),
            (None, Some(s)) => Some(proto::subject::Kind::Serial(s)),
            (None, None) => None,
        },
    }
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let passcode = match args.passcode {
        Some(p) => Zeroizing::new(p),
        None => read_secret("OKEY_PASSCODE", "passcode")?,
    };
    let mut c = args.client.connect().await?;
    let r = c
        .auth
        .verify(proto::VerifyRequest {
            subject: Some(subject(args.user, args.serial)),
            passcode: passcode.to_string(),
            transaction_id: args.transaction.unwrap_or_default(),
            client: Some(proto::ClientInfo {
                nas_identifier: "okey-cli".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    match proto::VerifyResult::try_from(r.result) {
        Ok(proto::VerifyResult::Accept) => {
            println!("accept {} ({})", r.serial, r.reason);
            Ok(ExitCode::SUCCESS)
        }
        Ok(proto::VerifyResult::Challenge) => {
            println!(
                "challenge {} transaction {} token {}",
                r.challenge, r.transaction_id, r.serial
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            println!("reject ({})", r.reason);
            Ok(ExitCode::from(1))
        }
    }
}

/// Ask for an OCRA challenge.
#[derive(Debug, Args)]
pub struct ChallengeArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
    user: Option<String>,
    #[arg(long)]
    serial: Option<String>,
}

pub async fn challenge(args: ChallengeArgs) -> anyhow::Result<ExitCode> {
    let mut c = args.client.connect().await?;
    let r = c
        .auth
        .trigger_challenge(proto::TriggerChallengeRequest {
            subject: Some(subject(args.user, args.serial)),
            client: None,
        })
        .await?
        .into_inner();
    println!(
        "challenge {} transaction {} token {} expires-in {}s",
        r.challenge, r.transaction_id, r.serial, r.expires_in
    );
    Ok(ExitCode::SUCCESS)
}

/// The audit chain.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; exit 1 when an entry was changed, removed or reordered. Prints the
    /// head (SEQ:HASH): keep it elsewhere and pass it as --anchor later, so that removing the
    /// newest entries is detected too.
    Verify {
        /// A head printed by an earlier check (or logged by the server) as SEQ:HASH; the chain
        /// must still hold that entry, unchanged.
        #[arg(long, value_parser = parse_anchor)]
        anchor: Option<(u64, String)>,
        /// The server's anchors file (`[audit] anchors_file`, or a copy kept elsewhere): every
        /// line's signature is checked, then the chain must hold every anchored entry. A cut
        /// tail, a rewritten entry or an older database put back is reported with its number.
        #[arg(long)]
        anchors: Option<PathBuf>,
        /// The anchor public key (`okey audit public-key > FILE`, kept off the server); without
        /// it the key is asked of the server being checked.
        #[arg(long, requires = "anchors")]
        public_key: Option<PathBuf>,
    },
    /// Print the public key that signs the anchors of the chain; keep it off the server and
    /// give it to `okey audit verify --anchors FILE --public-key KEYFILE`.
    PublicKey,
    /// The most recent entries.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// `SEQ:HASH`, as `okey audit verify` prints a head.
fn parse_anchor(s: &str) -> Result<(u64, String), String> {
    let (seq, hash) = s
        .split_once(':')
        .ok_or("an anchor is SEQ:HASH, as `okey audit verify` prints it")?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| format!("{seq} is not an entry number"))?;
    if seq == 0 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("an anchor is SEQ:HASH with SEQ from 1 and a 64-character hex HASH".into());
    }
    Ok((seq, hash.to_ascii_lowercase()))
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let mut c = args.client.connect().await?;
    match args.command {
        AuditCommand::PublicKey => {
            let r = c
                .audit
                .get_audit_public_key(proto::GetAuditPublicKeyRequest {})
                .await?
                .into_inner();
            println!("{}", r.public_key);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            anchor,
            anchors,
            public_key,
        } => {
            let (anchor_sequence, anchor_hash) = anchor.unwrap_or_default();
            let signed = match &anchors {
                Some(path) => match read_signed_anchors(&mut c, path, public_key.as_deref()).await?
                {
                    Ok(list) => list,
                    Err(refusal) => {
                        println!("refused: {refusal}");
                        return Ok(ExitCode::from(1));
                    }
                },
                None => Vec::new(),
            };
            // Distinct anchors, in order; a long file goes in parts, each checked against the
            // whole chain, and the first part that fails names the earliest break.
            let mut distinct: Vec<(u64, [u8; 32])> =
                signed.iter().map(|a| (a.seq, a.head)).collect();
            distinct.sort_unstable();
            distinct.dedup();
            let mut parts: Vec<Vec<proto::AnchoredRecord>> = distinct
                .chunks(okey_server::MAX_ANCHORS)
                .map(|part| {
                    part.iter()
                        .map(|(seq, head)| proto::AnchoredRecord {
                            sequence: *seq,
                            hash: head.to_vec(),
                        })
                        .collect()
                })
                .collect();
            if parts.is_empty() {
                parts.push(Vec::new());
            }
            let mut r = proto::VerifyAuditChainResponse::default();
            for part in parts {
                r = c
                    .audit
                    .verify_audit_chain(proto::VerifyAuditChainRequest {
                        anchor_sequence,
                        anchor_hash: anchor_hash.clone(),
                        anchors: part,
                    })
                    .await?
                    .into_inner();
                if !r.intact {
                    break;
                }
            }
            if anchors.is_some() {
                let newest = signed.iter().map(|a| a.seq).max().unwrap_or(0);
                println!(
                    "{} signed anchors checked ({} distinct, newest at entry {newest})",
                    signed.len(),
                    distinct.len()
                );
            }
            let head = if r.head_sequence == 0 {
                "none".to_owned()
            } else {
                format!("{}:{}", r.head_sequence, r.head_hash)
            };
            if r.intact {
                println!("intact: {} entries; head {head}", r.entries);
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "broken at entry {}: {} (last good entry: {head})",
                    r.first_bad_sequence, r.detail
                );
                Ok(ExitCode::from(1))
            }
        }
        AuditCommand::List { limit } => {
            let r = c
                .audit
                .list_audit(proto::ListAuditRequest { limit })
                .await?
                .into_inner();
            for e in r.records {
                println!(
                    "{:>8} {} {:<16} {:<22} {:<20} {:<14} {:<8} {}",
                    e.sequence,
                    e.at,
                    e.actor,
                    e.action,
                    e.subject,
                    if e.serial.is_empty() { "-" } else { &e.serial },
                    e.result,
                    e.reason
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Read and check an anchors file: `Ok(Err(sentence))` when a line is refused.
async fn read_signed_anchors(
    c: &mut crate::client::Clients,
    path: &std::path::Path,
    public_key: Option<&std::path::Path>,
) -> anyhow::Result<Result<Vec<okey_store::SignedAnchor>, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the anchors file {}", path.display()))?;
    let key_text = match public_key {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the public key {}", p.display()))?,
        None => {
            eprintln!(
                "okey: no --public-key: using the key of the server being checked (keep a copy elsewhere: okey audit public-key)"
            );
            c.audit
                .get_audit_public_key(proto::GetAuditPublicKeyRequest {})
                .await?
                .into_inner()
                .public_key
        }
    };
    let key = okey_store::AnchorPublicKey::parse(&key_text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(okey_store::read_anchors(&text, &key)
        .map_err(|e| format!("anchors file {}: {e}", path.display())))
}

/// API keys of callers (front ends, technicians, support, auditors).
#[derive(Debug, Args)]
pub struct CallerArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: CallerCommand,
}

#[derive(Debug, Subcommand)]
enum CallerCommand {
    /// Create an API key; it is printed once.
    Create {
        name: String,
        /// verifier, technician, support, admin, auditor, manager, portal (repeat or
        /// comma-separate).
        #[arg(long, value_delimiter = ',', required = true)]
        role: Vec<String>,
        /// The directory person this key acts as in the lifecycle (needed for a manager key).
        #[arg(long)]
        person: Option<String>,
    },
    List,
    Revoke {
        name: String,
    },
    /// Who the current credential is.
    Whoami,
}

pub async fn caller(args: CallerArgs) -> anyhow::Result<ExitCode> {
    let mut c = args.client.connect().await?;
    match args.command {
        CallerCommand::Create { name, role, person } => {
            let r = c
                .callers
                .create_api_key(proto::CreateApiKeyRequest {
                    name,
                    roles: role,
                    person: person.unwrap_or_default(),
                })
                .await?
                .into_inner();
            println!("{}", r.api_key);
            eprintln!("this key for {} is shown only now", r.name);
        }
        CallerCommand::List => {
            let r = c
                .callers
                .list_api_keys(proto::ListApiKeysRequest {})
                .await?
                .into_inner();
            for p in r.principals {
                println!(
                    "{:<24} {:<30} {:<8} {}",
                    p.name,
                    p.roles.join(","),
                    if p.disabled { "revoked" } else { "active" },
                    if p.person.is_empty() { "-" } else { &p.person }
                );
            }
        }
        CallerCommand::Revoke { name } => {
            c.callers
                .revoke_api_key(proto::RevokeApiKeyRequest { name: name.clone() })
                .await?;
            println!("revoked {name}");
        }
        CallerCommand::Whoami => {
            let p = c
                .callers
                .who_am_i(proto::WhoAmIRequest {})
                .await?
                .into_inner();
            if p.person.is_empty() {
                println!("{} ({})", p.name, p.roles.join(","));
            } else {
                println!("{} ({}) as {}", p.name, p.roles.join(","), p.person);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_anchor;

    #[test]
    fn an_anchor_is_parsed_as_printed_and_nothing_else() {
        let hash = "9F".repeat(32);
        assert_eq!(
            parse_anchor(&format!("12:{hash}")),
            Ok((12, hash.to_ascii_lowercase()))
        );
        for bad in [
            String::new(),
            hash.clone(),
            format!("0:{hash}"),
            format!("-1:{hash}"),
            format!("x:{hash}"),
            format!("12:{}", &hash[..63]),
            format!("12:{hash}0"),
            format!("12:{}zz", &hash[..62]),
        ] {
            assert!(parse_anchor(&bad).is_err(), "{bad}");
        }
    }
}
