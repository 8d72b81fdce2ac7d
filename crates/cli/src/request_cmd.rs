//! `okey request ...` and `okey charter publish`: key requests through the RequestService,
//! acting as the person the API key belongs to.
//!
//! Exit codes as for `okey key`: 0 done, 1 refused (the request's state does not allow it, or
//! the acting person may not), 2 bad input or error. The PIN comes from OKEY_PIN or is prompted
//! without echo; it is never an argument.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use okey_server::proto;
use serde_json::{Value, json};

use crate::client::ClientArgs;

/// Largest attachment sent (the server checks it again, with the content's type).
const MAX_ATTACHMENT_BYTES: usize = 5 * 1024 * 1024;
use crate::lifecycle_cmd::{answer, parse_time};

/// Key requests.
#[derive(Debug, Args)]
pub struct RequestArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: RequestCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyType {
    Hardware,
    Software,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Platform {
    Android,
    Ios,
}

#[derive(Debug, Subcommand)]
enum RequestCommand {
    /// Ask for a key. With attachments it goes to your validator at once (unless --draft);
    /// without, it stays a draft until you attach them.
    New {
        #[arg(long = "type", value_enum)]
        key_type: KeyType,
        #[arg(long)]
        reason: String,
        /// A justifying document (PDF, PNG or JPEG); repeat for several.
        #[arg(long = "attach", num_args = 1..)]
        attach: Vec<PathBuf>,
        /// Renew your key (the new key keeps your PIN).
        #[arg(long)]
        renewal: bool,
        /// Your validator, when the directory's N+1 is not the right person.
        #[arg(long)]
        validator: Option<String>,
        /// Keep it a draft even with attachments.
        #[arg(long)]
        draft: bool,
    },
    /// Add attachments to a draft.
    Attach {
        id: u64,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Send a draft to your validator (optionally naming another one).
    Submit {
        id: u64,
        #[arg(long)]
        validator: Option<String>,
    },
    /// Your requests and those you may decide.
    List {
        /// Only those waiting for your decision.
        #[arg(long)]
        waiting_for_me: bool,
    },
    /// One request with its attachments and history.
    Show { id: u64 },
    /// Approve (its validator, or the N+2 when the N+1 is absent).
    Approve { id: u64 },
    /// Refuse, saying why (the requester sees it).
    Refuse {
        id: u64,
        #[arg(long)]
        reason: String,
    },
    /// Withdraw your request.
    Cancel { id: u64 },
    /// Sign the charter: type the number printed at its bottom and --accept.
    Charter {
        id: u64,
        #[arg(long)]
        number: String,
        /// "I have read the charter".
        #[arg(long)]
        accept: bool,
    },
    /// Choose your PIN (from OKEY_PIN, or prompted without echo).
    Pin { id: u64 },
    /// Book a pickup slot once your key is ready.
    Appointment {
        id: u64,
        #[arg(long)]
        slot: u64,
    },
    /// Software key: pick your phone's platform, get the install instructions and the QR code;
    /// your first code confirms the key.
    Enrol {
        id: u64,
        #[arg(long, value_enum)]
        platform: Platform,
        /// Also print the URI as a QR code in the terminal.
        #[arg(long)]
        qr: bool,
    },
    /// Save one attachment of a request (its parties only) to a file.
    Attachment {
        id: u64,
        /// The attachment's id, as `okey request show` lists it.
        attachment: u64,
        /// Where to write it.
        #[arg(long)]
        output: PathBuf,
    },
    /// Pickup slots: list those you may see (of a lot, or of every lot you manage or that
    /// serves you), or offer one in a lot you manage.
    Slots {
        lot: Option<String>,
        /// Offer a slot at this time (YYYY-MM-DDTHH:MM UTC, or Unix seconds) in LOT.
        #[arg(long, requires_all = ["place", "lot"])]
        offer: Option<String>,
        #[arg(long)]
        place: Option<String>,
    },
}

/// Charters.
#[derive(Debug, Args)]
pub struct CharterArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CharterCommand,
}

#[derive(Debug, Subcommand)]
enum CharterCommand {
    /// Publish a new charter version (admin): signers type its number back.
    Publish {
        file: PathBuf,
        #[arg(long)]
        number: String,
        #[arg(long, default_value = "Charte d'utilisation des clés OTP")]
        title: String,
    },
    /// Download the charter in force, as published, to sign or to check (its SHA-256 is
    /// checked against the one okey recorded when it was published).
    Get {
        /// Where to write the PDF.
        #[arg(long)]
        output: PathBuf,
    },
}

fn read_attachments(files: &[PathBuf]) -> anyhow::Result<Vec<proto::RequestAttachment>> {
    files
        .iter()
        .map(|f| {
            let meta =
                std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?;
            if meta.len() > MAX_ATTACHMENT_BYTES as u64 {
                anyhow::bail!(
                    "{}: an attachment must be at most {} MiB",
                    f.display(),
                    MAX_ATTACHMENT_BYTES / (1024 * 1024)
                );
            }
            let content =
                std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let media_type = match f
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("pdf") => "application/pdf",
                Some("png") => "image/png",
                Some("jpg" | "jpeg") => "image/jpeg",
                _ => "",
            };
            Ok(proto::RequestAttachment {
                name,
                media_type: media_type.to_owned(),
                content,
            })
        })
        .collect()
}

fn request_json(r: &proto::KeyRequest) -> Value {
    json!({
        "id": r.id,
        "requester": r.requester,
        "unit": r.unit,
        "need": r.need,
        "type": r.key_type,
        "reason": r.reason,
        "state": r.state,
        "validator": r.validator,
        "second_validator": r.second_validator,
        "decided_by": r.decided_by,
        "decision_reason": r.decision_reason,
        "lot": r.lot,
        "serial": r.serial,
        "charter_version": r.charter_version,
        "charter_signed_at": r.charter_signed_at,
        "pin_set": r.pin_set,
        "pin_source": r.pin_source,
        "slot": r.slot,
        "created_at": r.created_at,
        "submitted_at": r.submitted_at,
    })
}

fn detail_json(d: &proto::RequestDetail) -> Value {
    let mut v = d.request.as_ref().map(request_json).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert(
            "attachments".into(),
            d.attachments
                .iter()
                .map(|a| json!({"id": a.id, "name": a.name, "media_type": a.media_type, "size": a.size, "sha256": a.sha256}))
                .collect(),
        );
        m.insert(
            "events".into(),
            d.events
                .iter()
                .map(|e| json!({"at": e.at, "actor": e.actor, "action": e.action, "state_before": e.state_before, "state_after": e.state_after, "comment": e.comment}))
                .collect(),
        );
        if let Some(s) = &d.slot {
            m.insert(
                "appointment".into(),
                json!({"slot": s.id, "at": s.starts_at, "place": s.place}),
            );
        }
    }
    v
}

fn print_detail(d: &proto::RequestDetail, j: bool) {
    if j {
        println!("{}", detail_json(d));
        return;
    }
    let Some(r) = &d.request else { return };
    println!(
        "request {}: {} ({} {} key)",
        r.id, r.state, r.need, r.key_type
    );
    println!(
        "  requester: {}  unit: {}  lot: {}",
        r.requester, r.unit, r.lot
    );
    println!("  reason: {}", r.reason);
    println!("  validator: {}  N+2: {}", r.validator, r.second_validator);
    if !r.decided_by.is_empty() {
        println!("  decided by: {} {}", r.decided_by, r.decision_reason);
    }
    println!(
        "  charter: {}  PIN: {}  key: {}",
        if r.charter_version > 0 {
            format!("version {} signed", r.charter_version)
        } else {
            "not signed".into()
        },
        if r.pin_set {
            r.pin_source.as_str()
        } else {
            "not chosen"
        },
        if r.serial.is_empty() {
            "-"
        } else {
            r.serial.as_str()
        }
    );
    for a in &d.attachments {
        println!(
            "  attachment {}: {} ({}, {} bytes)",
            a.id, a.name, a.media_type, a.size
        );
    }
    if let Some(s) = &d.slot {
        println!(
            "  appointment: slot {} at {} in {}",
            s.id, s.starts_at, s.place
        );
    }
}

/// `okey request ...`.
pub async fn request(args: RequestArgs) -> anyhow::Result<ExitCode> {
    answer(request_inner(args).await)
}

async fn request_inner(args: RequestArgs) -> anyhow::Result<ExitCode> {
    let j = args.json;
    // Read local input before connecting: a bad file is bad input, nothing is sent.
    let pin = match &args.command {
        RequestCommand::Pin { .. } => Some(match std::env::var("OKEY_PIN") {
            Ok(p) => zeroize::Zeroizing::new(p),
            Err(_) => crate::prompt::secret("PIN")?,
        }),
        _ => None,
    };
    let mut c = args.client.connect().await?.requests;
    let d = match args.command {
        RequestCommand::New {
            key_type,
            reason,
            attach,
            renewal,
            validator,
            draft,
        } => {
            let attachments = read_attachments(&attach)?;
            c.file_request(proto::FileRequestRequest {
                key_type: match key_type {
                    KeyType::Hardware => "hardware",
                    KeyType::Software => "software",
                }
                .into(),
                reason,
                attachments,
                validator: validator.unwrap_or_default(),
                need: if renewal { "renewal" } else { "new" }.into(),
                submit: !draft,
            })
            .await?
            .into_inner()
        }
        RequestCommand::Attach { id, files } => {
            let attachments = read_attachments(&files)?;
            c.attach_to_request(proto::AttachToRequestRequest { id, attachments })
                .await?
                .into_inner()
        }
        RequestCommand::Submit { id, validator } => c
            .submit_request(proto::SubmitRequestRequest {
                id,
                validator: validator.unwrap_or_default(),
            })
            .await?
            .into_inner(),
        RequestCommand::List { waiting_for_me } => {
            let list = c
                .list_requests(proto::ListRequestsRequest { waiting_for_me })
                .await?
                .into_inner()
                .requests;
            if j {
                println!("{}", Value::Array(list.iter().map(request_json).collect()));
            } else {
                println!(
                    "{:<6} {:<18} {:<9} {:<16} {:<16} REASON",
                    "ID", "STATE", "TYPE", "REQUESTER", "VALIDATOR"
                );
                for r in &list {
                    println!(
                        "{:<6} {:<18} {:<9} {:<16} {:<16} {}",
                        r.id, r.state, r.key_type, r.requester, r.validator, r.reason
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        RequestCommand::Show { id } => c.show_request(proto::RequestRef { id }).await?.into_inner(),
        RequestCommand::Approve { id } => c
            .decide_request(proto::DecideRequestRequest {
                id,
                approve: true,
                reason: String::new(),
            })
            .await?
            .into_inner(),
        RequestCommand::Refuse { id, reason } => c
            .decide_request(proto::DecideRequestRequest {
                id,
                approve: false,
                reason,
            })
            .await?
            .into_inner(),
        RequestCommand::Cancel { id } => c
            .cancel_request(proto::RequestRef { id })
            .await?
            .into_inner(),
        RequestCommand::Charter { id, number, accept } => c
            .sign_charter(proto::SignCharterRequest { id, number, accept })
            .await?
            .into_inner(),
        RequestCommand::Pin { id } => {
            let pin = pin.unwrap_or_default();
            c.set_request_pin(proto::SetRequestPinRequest {
                id,
                pin: pin.to_string(),
            })
            .await?
            .into_inner()
        }
        RequestCommand::Appointment { id, slot } => c
            .book_pickup(proto::BookPickupRequest { id, slot })
            .await?
            .into_inner(),
        RequestCommand::Enrol { id, platform, qr } => {
            let r = c
                .enrol_software_key(proto::EnrolSoftwareKeyRequest {
                    id,
                    platform: match platform {
                        Platform::Android => "android",
                        Platform::Ios => "ios",
                    }
                    .into(),
                })
                .await?
                .into_inner();
            let uri = zeroize::Zeroizing::new(r.otpauth_uri);
            if j {
                let mut v = r.detail.as_ref().map(detail_json).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("otpauth_uri".into(), Value::String(uri.to_string()));
                    m.insert("instructions".into(), Value::String(r.instructions.clone()));
                }
                println!("{v}");
            } else {
                println!("{}", r.instructions);
                println!("{}", uri.as_str());
                if qr {
                    let parsed = okey_intake::KeyUri::parse(&uri)
                        .map_err(|e| anyhow::anyhow!("the server sent a bad URI: {e}"))?;
                    println!("{}", parsed.qr_terminal(false)?.as_str());
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        RequestCommand::Attachment {
            id,
            attachment,
            output,
        } => {
            let a = c
                .get_request_attachment(proto::GetRequestAttachmentRequest { id, attachment })
                .await?
                .into_inner();
            std::fs::write(&output, &a.content)
                .with_context(|| format!("cannot write {}", output.display()))?;
            if j {
                println!(
                    "{}",
                    json!({"name": a.name, "media_type": a.media_type, "bytes": a.content.len(), "out": output.display().to_string()})
                );
            } else {
                println!(
                    "{} ({}, {} bytes) written to {}",
                    a.name,
                    a.media_type,
                    a.content.len(),
                    output.display()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        RequestCommand::Slots { lot, offer, place } => {
            if let Some(at) = offer {
                let s = c
                    .offer_pickup_slot(proto::OfferPickupSlotRequest {
                        lot: lot.unwrap_or_default(),
                        starts_at: parse_time(&at)?,
                        place: place.unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                if j {
                    println!(
                        "{}",
                        json!({"slot": s.id, "lot": s.lot, "at": s.starts_at, "place": s.place})
                    );
                } else {
                    println!(
                        "slot {} offered in lot {} at {} ({})",
                        s.id, s.lot, s.starts_at, s.place
                    );
                }
            } else {
                let slots = c
                    .list_pickup_slots(proto::ListPickupSlotsRequest {
                        lot: lot.unwrap_or_default(),
                    })
                    .await?
                    .into_inner()
                    .slots;
                if j {
                    println!(
                        "{}",
                        Value::Array(
                            slots
                                .iter()
                                .map(|s| json!({"slot": s.id, "lot": s.lot, "at": s.starts_at, "place": s.place, "booked": s.request != 0}))
                                .collect()
                        )
                    );
                } else {
                    for s in &slots {
                        println!(
                            "slot {} of lot {} at {} in {}{}",
                            s.id,
                            s.lot,
                            s.starts_at,
                            s.place,
                            if s.request != 0 { " (booked)" } else { "" }
                        );
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    print_detail(&d, j);
    Ok(ExitCode::SUCCESS)
}

/// `okey charter publish|get`.
pub async fn charter(args: CharterArgs) -> anyhow::Result<ExitCode> {
    answer(charter_inner(args).await)
}

async fn charter_inner(args: CharterArgs) -> anyhow::Result<ExitCode> {
    let (file, number, title) = match args.command {
        CharterCommand::Publish {
            file,
            number,
            title,
        } => (file, number, title),
        CharterCommand::Get { output } => {
            let mut c = args.client.connect().await?.requests;
            let doc = c
                .get_charter(proto::GetCharterRequest {})
                .await?
                .into_inner();
            let digest = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(&doc.content)[..]);
            if digest != doc.sha256 {
                anyhow::bail!(
                    "the charter received does not match the SHA-256 recorded at its publication ({} against {})",
                    digest,
                    doc.sha256
                );
            }
            std::fs::write(&output, &doc.content)
                .with_context(|| format!("cannot write {}", output.display()))?;
            if args.json {
                println!(
                    "{}",
                    json!({"version": doc.version, "title": doc.title, "sha256": doc.sha256, "published_at": doc.published_at, "bytes": doc.content.len(), "out": output.display().to_string()})
                );
            } else {
                println!(
                    "charter version {} ({}, {} bytes, SHA-256 {}) written to {}",
                    doc.version,
                    doc.title,
                    doc.content.len(),
                    doc.sha256,
                    output.display()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let content =
        std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut c = args.client.connect().await?.requests;
    let info = c
        .publish_charter(proto::PublishCharterRequest {
            number,
            title,
            content,
        })
        .await?
        .into_inner();
    if args.json {
        println!(
            "{}",
            json!({"version": info.version, "number": info.number, "title": info.title, "sha256": info.sha256})
        );
    } else {
        println!(
            "charter version {} published (number {})",
            info.version, info.number
        );
    }
    Ok(ExitCode::SUCCESS)
}
