//! `okey case ...`, `okey key diagnose` and `okey key temporary`: the support desk, through the
//! SupportService, acting as the person the API key belongs to.
//!
//! Human text by default, `--json` for scripts. Exit codes: 0 done, 1 refused (the person may
//! not, or the case's state does not allow it), 2 bad input or error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use okey_server::proto::{self, support_service_client::SupportServiceClient};
use serde_json::{Value, json};
use tonic::Code;

use crate::client::{Authed, ClientArgs};

/// Support cases.
#[derive(Debug, Args)]
pub struct CaseArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CaseCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PriorityArg {
    /// Bloquante: the service (ENT, logins) is unavailable.
    Blocking,
    /// Majeure: a major function of a service is unavailable.
    Major,
    /// Mineure: information, guidance, help with a minor function.
    Minor,
}

impl PriorityArg {
    fn proto(self) -> proto::CasePriority {
        match self {
            PriorityArg::Blocking => proto::CasePriority::Blocking,
            PriorityArg::Major => proto::CasePriority::Major,
            PriorityArg::Minor => proto::CasePriority::Minor,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    /// "My key no longer works": name it with --serial; its diagnosis comes with the case.
    KeyNotWorking,
    /// The holder forgot their PIN (--serial).
    LostPin,
    /// The key is desynchronised (--serial).
    Desynchronised,
    /// Lost, stolen or broken (--serial).
    KeyLost,
    /// Keys in a drawer that okey does not know: list them with --serials.
    KeysNotInOkey,
    /// Anything else.
    Other,
}

impl KindArg {
    fn name(self) -> &'static str {
        match self {
            KindArg::KeyNotWorking => "key_not_working",
            KindArg::LostPin => "lost_pin",
            KindArg::Desynchronised => "desynchronised",
            KindArg::KeyLost => "key_lost",
            KindArg::KeysNotInOkey => "keys_not_in_okey",
            KindArg::Other => "other",
        }
    }
}

/// The fields of a new case.
#[derive(Debug, Args)]
struct OpenArgs {
    #[arg(long, value_enum)]
    kind: KindArg,
    /// blocking: the service is unavailable; major: a major function of a service is
    /// unavailable; minor: information, guidance, help with a minor function.
    #[arg(long, value_enum)]
    priority: PriorityArg,
    /// Nom et prénom.
    #[arg(long)]
    name: String,
    /// Fonction.
    #[arg(long)]
    function: String,
    /// Téléphone.
    #[arg(long)]
    phone: String,
    /// Établissement / ville.
    #[arg(long)]
    unit_town: String,
    /// Objet de la demande.
    #[arg(long)]
    subject: String,
    /// Population concernée (enseignant, élève...).
    #[arg(long)]
    population: String,
    /// Description précise.
    #[arg(long)]
    description: String,
    /// URL de l'établissement or breadcrumb (Accueil > Disciplines > SVT).
    #[arg(long)]
    location: String,
    /// A screenshot or attachment (PDF, PNG, JPEG); repeat for several.
    #[arg(long = "attach")]
    attachments: Vec<PathBuf>,
    /// The key concerned.
    #[arg(long)]
    serial: Option<String>,
    /// Serials of keys okey does not know, comma-separated.
    #[arg(long, value_delimiter = ',')]
    serials: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum CaseCommand {
    /// Open a case (seed 004: every field below is required, and a screenshot or attachment).
    Open(Box<OpenArgs>),
    /// The queue: open cases by priority, then oldest first (--all: resolved ones too).
    List {
        #[arg(long)]
        all: bool,
        /// Only those assigned to this agent.
        #[arg(long)]
        assignee: Option<String>,
    },
    /// One case with its messages (and for support, the key's diagnosis).
    Show { number: String },
    /// Reply to the declarant (mailed), or with --internal add a note (never mailed).
    Reply {
        number: String,
        #[arg(long)]
        body: String,
        #[arg(long)]
        internal: bool,
    },
    /// Give the case to a support agent (a person of the support centre).
    Assign {
        number: String,
        #[arg(long)]
        to: String,
        #[arg(long, value_enum)]
        priority: Option<PriorityArg>,
    },
    /// Resolve the case; the resolution is mailed to the declarant.
    Resolve {
        number: String,
        #[arg(long)]
        resolution: String,
    },
    /// Register the serials a "keys not in okey" case lists into the declarant's school lot.
    RegisterKeys { number: String },
    /// Write one of the case's attachments (ID as `okey case show` lists it) to a new file.
    Attachment {
        number: String,
        id: u64,
        /// The file to create (an existing file is not overwritten).
        #[arg(long)]
        output: PathBuf,
    },
}

type Client = SupportServiceClient<Authed>;

async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    Ok(args.connect().await?.support)
}

/// Refusals are answers (exit 1), not errors.
fn answer(r: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match r {
        Err(e) => match e.downcast_ref::<tonic::Status>() {
            Some(s) if matches!(s.code(), Code::FailedPrecondition | Code::PermissionDenied) => {
                eprintln!("okey: refused: {}", s.message());
                Ok(ExitCode::from(1))
            }
            _ => Err(e),
        },
        ok => ok,
    }
}

fn priority_name(p: i32) -> &'static str {
    match proto::CasePriority::try_from(p) {
        Ok(proto::CasePriority::Blocking) => "blocking",
        Ok(proto::CasePriority::Major) => "major",
        Ok(proto::CasePriority::Minor) => "minor",
        _ => "-",
    }
}

fn case_json(c: &proto::Case) -> Value {
    json!({
        "number": c.number, "kind": c.kind, "priority": priority_name(c.priority),
        "state": c.state, "unit": c.unit, "declarant": c.declarant,
        "declarant_email": c.declarant_email, "copy_to": c.copy_to, "name": c.name,
        "function": c.function, "phone": c.phone, "unit_town": c.unit_town,
        "subject": c.subject, "population": c.population, "description": c.description,
        "location": c.location, "attachments": c.attachments, "serial": c.serial,
        "files": c.files.iter().map(|f| json!({
            "id": f.id, "name": f.name, "media_type": f.media_type, "size": f.size,
            "sha256": f.sha256,
        })).collect::<Vec<_>>(),
        "serials": c.serials, "assignee": c.assignee, "opened_at": c.opened_at,
        "updated_at": c.updated_at, "resolved_at": c.resolved_at, "resolution": c.resolution,
        "messages": c.messages.iter().map(|m| json!({
            "at": m.at, "author": m.author, "internal": m.internal, "body": m.body,
        })).collect::<Vec<_>>(),
        "diagnosis": c.diagnosis.as_ref().map(diagnosis_json),
    })
}

fn diagnosis_json(d: &proto::Diagnosis) -> Value {
    json!({
        "serial": d.serial, "holder": d.holder, "custody": d.custody, "status": d.status,
        "locked": d.locked, "locked_until": d.locked_until, "failures": d.failures,
        "lock_threshold": d.lock_threshold, "last_accept": d.last_accept,
        "recent_refusals": d.recent_refusals.iter().map(|r| json!({"at": r.at, "reason": r.reason})).collect::<Vec<_>>(),
        "valid_until": d.valid_until, "active_until": d.active_until,
        "totp": d.totp, "totp_drift": d.totp_drift, "has_pin": d.has_pin,
        "action": d.action, "advice": d.advice, "findings": d.findings,
        "temporary_keys": d.temporary_keys,
    })
}

fn print_diagnosis(d: &proto::Diagnosis) {
    println!(
        "key {}  holder {}  custody {}  status {}",
        d.serial,
        or_dash(&d.holder),
        or_dash(&d.custody),
        d.status
    );
    for f in &d.findings {
        println!("  {f}");
    }
    for t in &d.temporary_keys {
        println!("  temporary key {t}");
    }
    println!("action: {} — {}", d.action, d.advice);
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn print_case(j: bool, c: &proto::Case) {
    if j {
        println!("{}", case_json(c));
        return;
    }
    println!(
        "case {}  {}  priority {}  {}  declared by {} ({}){}",
        c.number,
        c.kind,
        priority_name(c.priority),
        c.state,
        c.declarant,
        c.declarant_email,
        if c.copy_to.is_empty() {
            String::new()
        } else {
            format!(", copy to {}", c.copy_to)
        }
    );
    println!("subject: {}", c.subject);
    println!(
        "from: {}, {}, {}, {}; population {}; at {}",
        c.name, c.function, c.phone, c.unit_town, c.population, c.location
    );
    if !c.serial.is_empty() {
        println!("key: {}", c.serial);
    }
    if !c.serials.is_empty() {
        println!("keys not in okey: {}", c.serials.join(", "));
    }
    if !c.assignee.is_empty() {
        println!("assigned to: {}", c.assignee);
    }
    for f in &c.files {
        println!(
            "attachment {}: {} {} {} bytes sha256:{}",
            f.id, f.name, f.media_type, f.size, f.sha256
        );
    }
    println!("\n{}\n", c.description);
    for m in &c.messages {
        println!(
            "[{}] {}{}: {}",
            m.at,
            m.author,
            if m.internal { " (internal note)" } else { "" },
            m.body
        );
    }
    if !c.resolution.is_empty() {
        println!("resolved at {}: {}", c.resolved_at, c.resolution);
    }
    if let Some(d) = &c.diagnosis {
        println!();
        print_diagnosis(d);
    }
}

/// `okey case ...`.
pub async fn case(args: CaseArgs) -> anyhow::Result<ExitCode> {
    answer(case_inner(args).await)
}

async fn case_inner(args: CaseArgs) -> anyhow::Result<ExitCode> {
    let mut c = connect(&args.client).await?;
    let j = args.json;
    let case = match args.command {
        CaseCommand::Open(open) => {
            let OpenArgs {
                kind,
                priority,
                name,
                function,
                phone,
                unit_town,
                subject,
                population,
                description,
                location,
                attachments,
                serial,
                serials,
            } = *open;
            let mut files = Vec::with_capacity(attachments.len());
            for path in &attachments {
                let content = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.push(proto::CaseAttachment {
                    name,
                    media_type: String::new(),
                    content,
                });
            }
            c.open_case(proto::OpenCaseRequest {
                kind: kind.name().to_owned(),
                priority: priority.proto() as i32,
                name,
                function,
                phone,
                unit_town,
                subject,
                population,
                description,
                location,
                attachments: files,
                serial: serial.unwrap_or_default(),
                serials,
            })
            .await?
            .into_inner()
        }
        CaseCommand::List { all, assignee } => {
            let r = c
                .list_cases(proto::ListCasesRequest {
                    all,
                    assignee: assignee.unwrap_or_default(),
                    limit: 0,
                })
                .await?
                .into_inner();
            if j {
                println!("{}", Value::Array(r.cases.iter().map(case_json).collect()));
            } else {
                for k in &r.cases {
                    println!(
                        "{}  {:<8}  {:<8}  {:<16}  {}  {}",
                        k.number,
                        priority_name(k.priority),
                        k.state,
                        k.kind,
                        or_dash(&k.assignee),
                        k.subject
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        CaseCommand::Show { number } => c
            .show_case(proto::ShowCaseRequest { number })
            .await?
            .into_inner(),
        CaseCommand::Reply {
            number,
            body,
            internal,
        } => c
            .reply_case(proto::ReplyCaseRequest {
                number,
                body,
                internal,
            })
            .await?
            .into_inner(),
        CaseCommand::Assign {
            number,
            to,
            priority,
        } => c
            .assign_case(proto::AssignCaseRequest {
                number,
                agent: to,
                priority: priority.map_or(proto::CasePriority::Unspecified, PriorityArg::proto)
                    as i32,
            })
            .await?
            .into_inner(),
        CaseCommand::Resolve { number, resolution } => c
            .resolve_case(proto::ResolveCaseRequest { number, resolution })
            .await?
            .into_inner(),
        CaseCommand::Attachment { number, id, output } => {
            let a = c
                .get_case_attachment(proto::GetCaseAttachmentRequest { number, id })
                .await?
                .into_inner();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&output)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", output.display()))?;
            std::io::Write::write_all(&mut f, &a.content)
                .and_then(|()| f.sync_all())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
            if j {
                println!(
                    "{}",
                    json!({"name": a.name, "media_type": a.media_type, "size": a.content.len(),
                           "sha256": a.sha256, "output": output.display().to_string()})
                );
            } else {
                println!(
                    "{} ({}, {} bytes, sha256 {}) written to {}",
                    a.name,
                    a.media_type,
                    a.content.len(),
                    a.sha256,
                    output.display()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        CaseCommand::RegisterKeys { number } => {
            let r = c
                .register_case_keys(proto::RegisterCaseKeysRequest { number })
                .await?
                .into_inner();
            if j {
                println!("{}", json!({"lot": r.lot, "serials": r.serials}));
            } else {
                println!("registered into lot {}: {}", r.lot, r.serials.join(", "));
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    print_case(j, &case);
    Ok(ExitCode::SUCCESS)
}

/// `okey key diagnose SERIAL`.
pub async fn diagnose(client: &ClientArgs, j: bool, serial: String) -> anyhow::Result<ExitCode> {
    answer(
        async {
            let mut c = connect(client).await?;
            let d = c
                .diagnose_key(proto::DiagnoseKeyRequest { serial })
                .await?
                .into_inner();
            if j {
                println!("{}", diagnosis_json(&d));
            } else {
                print_diagnosis(&d);
            }
            Ok(ExitCode::SUCCESS)
        }
        .await,
    )
}

/// `okey key temporary SERIAL`.
pub async fn temporary(
    client: &ClientArgs,
    j: bool,
    serial: String,
    days: Option<u32>,
    case_number: Option<String>,
) -> anyhow::Result<ExitCode> {
    answer(
        async {
            let mut c = connect(client).await?;
            let r = c
                .issue_temporary_key(proto::IssueTemporaryKeyRequest {
                    serial,
                    validity_days: days.unwrap_or(0),
                    case_number: case_number.unwrap_or_default(),
                })
                .await?
                .into_inner();
            if j {
                println!(
                    "{}",
                    json!({
                        "serial": r.serial, "replaces": r.replaces, "holder": r.holder,
                        "expires_at": r.expires_at, "otpauth_uri": r.otpauth_uri,
                    })
                );
            } else {
                println!(
                    "temporary key {} for {} in place of {} (now disabled), until {}",
                    r.serial, r.holder, r.replaces, r.expires_at
                );
                println!(
                    "the holder adds it to an authenticator app and logs in with their PIN \
                     followed by its code:"
                );
                println!("{}", r.otpauth_uri);
            }
            Ok(ExitCode::SUCCESS)
        }
        .await,
    )
}
