//! `okey directory import|show`: the directory of units and people, through the
//! DirectoryService.
//!
//! An import streams the two CSV files in chunks of at most 1 MiB, printing its progress on
//! standard error; the server checks every row and writes all or nothing. Exit codes: 0 done,
//! 1 refused (the caller may not see this entry), 2 bad input (a bad row, named by file and line)
//! or error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use okey_server::proto;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tonic::Code;

use crate::client::ClientArgs;

/// The directory of units and people.
#[derive(Debug, Args)]
pub struct DirectoryArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: DirectoryCommand,
}

#[derive(Debug, Subcommand)]
enum DirectoryCommand {
    /// Load or update the directory from the administration's exports (admin): all or nothing.
    Import {
        /// people.csv: id, name, email, unit, functions, manager.
        people: PathBuf,
        /// units.csv: id, kind, name, parent, under_contract.
        units: PathBuf,
    },
    /// One person (by id) or unit (by id, a school by its UAI code).
    Show { id: String },
}

/// Bytes sent per chunk (the server takes at most 1 MiB).
const CHUNK: usize = 1 << 20;

pub async fn run(args: DirectoryArgs) -> anyhow::Result<ExitCode> {
    let mut c = args.client.connect().await?;
    match args.command {
        DirectoryCommand::Import { people, units } => {
            let files = [
                (proto::DirectoryFile::Units, units),
                (proto::DirectoryFile::People, people),
            ];
            // Both files must be readable before anything is sent.
            let mut total = 0u64;
            for (_, path) in &files {
                total += std::fs::metadata(path)
                    .with_context(|| format!("cannot read {}", path.display()))?
                    .len();
            }
            let (tx, rx) = tokio::sync::mpsc::channel::<proto::DirectoryChunk>(4);
            let sender = tokio::spawn(send_files(files, total, tx));
            let call = c
                .directory
                .import_directory(tokio_stream::wrappers::ReceiverStream::new(rx));
            tokio::pin!(call);
            let started = std::time::Instant::now();
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            tick.tick().await;
            let result = loop {
                tokio::select! {
                    r = &mut call => break r,
                    _ = tick.tick() => eprintln!(
                        "{} s: the server is still checking and writing",
                        started.elapsed().as_secs()
                    ),
                }
            };
            // A failure to read a file mid-way is the real cause of a cut stream.
            sender.await.context("the file reader stopped")??;
            let r = result?.into_inner();
            if args.json {
                println!(
                    "{}",
                    json!({
                        "units_read": r.units_read,
                        "people_read": r.people_read,
                        "units_created": r.units_created,
                        "units_updated": r.units_updated,
                        "people_created": r.people_created,
                        "people_updated": r.people_updated,
                    })
                );
            } else {
                println!(
                    "imported {} units ({} new, {} updated) and {} people ({} new, {} updated)",
                    r.units_read,
                    r.units_created,
                    r.units_updated,
                    r.people_read,
                    r.people_created,
                    r.people_updated
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DirectoryCommand::Show { id } => {
            let r = match c
                .directory
                .show_directory_entry(proto::DirectoryRef { id })
                .await
            {
                Ok(r) => r.into_inner(),
                Err(s) if matches!(s.code(), Code::PermissionDenied | Code::FailedPrecondition) => {
                    eprintln!("okey: refused: {}", s.message());
                    return Ok(ExitCode::from(1));
                }
                Err(s) => return Err(s.into()),
            };
            match r.entry {
                Some(proto::directory_entry::Entry::Person(p)) => show_person(&p, args.json),
                Some(proto::directory_entry::Entry::Unit(u)) => show_unit(&u, args.json),
                None => anyhow::bail!("the server sent an empty directory entry"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Send each file in chunks, printing progress every tenth of the bytes.
async fn send_files(
    files: [(proto::DirectoryFile, PathBuf); 2],
    total: u64,
    tx: tokio::sync::mpsc::Sender<proto::DirectoryChunk>,
) -> anyhow::Result<()> {
    let mut sent = 0u64;
    let mut next_report = 0u64;
    for (file, path) in files {
        let name = file_name(&path);
        let mut f = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut lines = 0u64;
        let mut first = true;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                let n = f
                    .read(&mut buf[filled..])
                    .await
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            if filled == 0 && !first {
                break;
            }
            lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
            sent += filled as u64;
            let chunk = proto::DirectoryChunk {
                file: file as i32,
                name: if first { name.clone() } else { String::new() },
                data: buf,
            };
            first = false;
            if tx.send(chunk).await.is_err() {
                // The server ended the call (a refusal): its answer says why.
                return Ok(());
            }
            if sent >= next_report {
                eprintln!(
                    "sent {name}: {lines} lines, {}% of {} MiB",
                    sent * 100 / total.max(1),
                    total.div_ceil(1 << 20)
                );
                next_report = sent + total / 10;
            }
            if filled < CHUNK {
                break;
            }
        }
    }
    eprintln!("sent everything; the server checks every row and writes all or nothing");
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn person_ref(r: &Option<proto::PersonRef>) -> String {
    match r {
        Some(p) => format!("{} ({})", p.id, p.name),
        None => "-".to_owned(),
    }
}

fn fields(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
}

fn show_person(p: &proto::DirectoryPerson, json_out: bool) {
    let person_json = |r: &Option<proto::PersonRef>| match r {
        Some(p) => json!({"id": p.id, "name": p.name}),
        None => Value::Null,
    };
    if json_out {
        println!(
            "{}",
            json!({
                "person": {
                    "id": p.id,
                    "name": p.name,
                    "email": p.email,
                    "unit": p.unit,
                    "unit_name": p.unit_name,
                    "unit_kind": p.unit_kind,
                    "functions": p.functions,
                    "explicit_manager": p.explicit_manager,
                    "manager": person_json(&p.manager),
                    "second_manager": person_json(&p.second_manager),
                    "manager_error": p.manager_error,
                    "manages": p.manages,
                    "found_key_desk": p.found_key_desk,
                    "recycling": p.recycling,
                    "callers": p.callers,
                }
            })
        );
        return;
    }
    let mut desks = Vec::new();
    if p.found_key_desk {
        desks.push("found-key desk");
    }
    if p.recycling {
        desks.push("recycling");
    }
    let mut manager = person_ref(&p.manager);
    if !p.manager_error.is_empty() {
        manager = format!("unknown: {}", p.manager_error);
    } else if !p.explicit_manager.is_empty() {
        manager.push_str(" (given by the directory)");
    }
    let mut rows = vec![
        ("PERSON", p.id.clone()),
        ("NAME", p.name.clone()),
        ("EMAIL", p.email.clone()),
        (
            "UNIT",
            format!(
                "{} ({}, {})",
                p.unit,
                dash(&p.unit_name),
                dash(&p.unit_kind)
            ),
        ),
        ("FUNCTIONS", dash(&p.functions.join(", ")).to_owned()),
        ("N+1", manager),
        ("N+2", person_ref(&p.second_manager)),
        ("MANAGES", dash(&p.manages.join(", ")).to_owned()),
        ("DESKS", dash(&desks.join(", ")).to_owned()),
    ];
    if !p.callers.is_empty() {
        rows.push(("API KEYS", p.callers.join(", ")));
    }
    fields(&rows);
}

fn show_unit(u: &proto::DirectoryUnit, json_out: bool) {
    if json_out {
        println!(
            "{}",
            json!({
                "unit": {
                    "id": u.id,
                    "name": u.name,
                    "kind": u.kind,
                    "parent": u.parent,
                    "parent_name": u.parent_name,
                    "under_contract": u.under_contract,
                    "home_lot": u.home_lot,
                    "lot_error": u.lot_error,
                    "people": u.people,
                    "children": u.children,
                }
            })
        );
        return;
    }
    let parent = if u.parent.is_empty() {
        "-".to_owned()
    } else {
        format!("{} ({})", u.parent, dash(&u.parent_name))
    };
    let mut rows = vec![
        ("UNIT", u.id.clone()),
        ("NAME", u.name.clone()),
        ("KIND", u.kind.clone()),
        ("PARENT", parent),
    ];
    if u.kind == "school" {
        rows.push((
            "CONTRACT",
            if u.under_contract {
                "sous contrat".to_owned()
            } else {
                "hors contrat (not served)".to_owned()
            },
        ));
    }
    rows.push((
        "LOT",
        if u.home_lot.is_empty() {
            format!("none: {}", u.lot_error)
        } else {
            u.home_lot.clone()
        },
    ));
    rows.push(("PEOPLE", u.people.to_string()));
    rows.push(("UNDER IT", dash(&u.children.join(", ")).to_owned()));
    fields(&rows);
}
