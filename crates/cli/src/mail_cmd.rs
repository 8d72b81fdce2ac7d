//! `okey mail`: a test mail through the relay, and the outbox's queue.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use okey_server::proto;

use crate::client::ClientArgs;

/// E-mail through the running server's `[smtp]` relay.
#[derive(Debug, Args)]
pub struct MailArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: MailCommand,
}

#[derive(Debug, Subcommand)]
enum MailCommand {
    /// Enqueue the test mail to ADDR (durably: it goes out once the relay accepts it, retried
    /// while the relay is down). Prints its Message-ID.
    Test {
        /// Recipient address.
        #[arg(long)]
        to: String,
    },
    /// The outbox: mails waiting and given up (with --all, sent ones too).
    Queue {
        /// List sent mails too.
        #[arg(long)]
        all: bool,
        /// Most mails listed.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object for scripts.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: MailArgs) -> anyhow::Result<ExitCode> {
    let mut c = args.client.connect().await?;
    match args.command {
        MailCommand::Test { to } => {
            let r = c
                .mail
                .send_test_mail(proto::SendTestMailRequest { to: to.clone() })
                .await?
                .into_inner();
            println!("queued mail {} to {to}: Message-ID {}", r.id, r.message_id);
            Ok(ExitCode::SUCCESS)
        }
        MailCommand::Queue { all, limit, json } => {
            let r = c
                .mail
                .list_mail_queue(proto::ListMailQueueRequest {
                    limit,
                    include_sent: all,
                })
                .await?
                .into_inner();
            if json {
                let mails: Vec<serde_json::Value> = r
                    .mails
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "id": m.id,
                            "message_id": m.message_id,
                            "template": m.template,
                            "to": m.to,
                            "cc": m.cc,
                            "subject": m.subject,
                            "state": m.state,
                            "attempts": m.attempts,
                            "created_at": m.created_at,
                            "next_attempt_at": m.next_attempt_at,
                            "last_error": m.last_error,
                            "sent_at": m.sent_at,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "pending": r.pending,
                        "failed": r.failed,
                        "sent": r.sent,
                        "oldest_pending_at": r.oldest_pending_at,
                        "mails": mails,
                    })
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{} pending, {} failed, {} sent",
                r.pending, r.failed, r.sent
            );
            if !r.mails.is_empty() {
                println!(
                    "{:>6}  {:<8} {:>8}  {:<12} {:<30} {:<30} last error",
                    "id", "state", "attempts", "template", "to", "cc"
                );
            }
            for m in r.mails {
                println!(
                    "{:>6}  {:<8} {:>8}  {:<12} {:<30} {:<30} {}",
                    m.id,
                    m.state,
                    m.attempts,
                    m.template,
                    m.to.join(","),
                    if m.cc.is_empty() {
                        "-".to_owned()
                    } else {
                        m.cc.join(",")
                    },
                    if m.last_error.is_empty() {
                        "-"
                    } else {
                        &m.last_error
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
