//! `okey`: one binary for everything okey does.
//!
//! Arguments are parsed without side effects, resolved into a checked configuration, then run.
//! Exit codes are fixed: 0 success, 1 a negative answer (a code rejected, an audit chain
//! broken), 2 bad input or error, with a one-line message on stderr.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod bench;
mod client;
mod directory_cmd;
mod hid_cmd;
mod lifecycle_cmd;
mod mail_cmd;
mod otp;
mod prompt;
mod request_cmd;
mod serve_cmd;
mod store_cmd;
mod support_cmd;
mod verify_client;

/// mimalloc (vendored C, built by cc): each thread allocates from its own pages and frees across
/// threads without a lock. A verify allocates and frees dozens of small buffers on whichever
/// runtime worker polls it, where glibc's malloc contended on its arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// okey: one-time-password security keys, from the vendor's seed file to every login.
#[derive(Debug, Parser)]
#[command(name = "okey", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: gRPC Verify for front ends and the administration API.
    Serve(Box<serve_cmd::ServeArgs>),
    /// Offline calculator: compute and verify HOTP, TOTP and OCRA codes.
    Otp(otp::OtpArgs),
    /// Administer tokens through a running server.
    Token(admin::TokenArgs),
    /// Check a passcode as a front end would.
    Verify(admin::VerifyArgs),
    /// Ask for an OCRA challenge for a user or token.
    Challenge(admin::ChallengeArgs),
    /// Verify or list the hash-chained audit log.
    Audit(admin::AuditArgs),
    /// Manage the API keys of callers.
    Caller(admin::CallerArgs),
    /// The directory of units and people: import the CSV exports, show one entry.
    Directory(directory_cmd::DirectoryArgs),
    /// Lots and stock: list, show, move, order, register, reserve.
    Lot(lifecycle_cmd::LotArgs),
    /// A key's custody: show, lost, return, found, handover, scrap, recycle, receipt.
    Key(lifecycle_cmd::KeyArgs),
    /// Support cases: open, list, show, reply, assign, resolve.
    Case(support_cmd::CaseArgs),
    /// E-mail: send a test mail through the relay, list the outbox.
    Mail(mail_cmd::MailArgs),
    /// Key requests: new, list, show, approve, refuse, cancel, charter, pin, appointment.
    Request(request_cmd::RequestArgs),
    /// Charters: publish a new version (admin).
    Charter(request_cmd::CharterArgs),
    /// Load benchmark of Verify (starts its own server unless --server is given).
    Bench(bench::BenchArgs),
    /// Offline store maintenance: encrypted backup and restore, key rotation.
    Store(store_cmd::StoreArgs),
    /// USB HID bench: initialise tokens, change their PINs, repair desync (--simulate without hardware).
    Hid(hid_cmd::HidArgs),
}

fn fail(e: &anyhow::Error) -> ExitCode {
    // gRPC errors carry a code and a sentence; show both on one line, with what the transport
    // said when the call never reached the server (a refused TLS handshake, a reset).
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        let cause = std::error::Error::source(status)
            .map(|c| format!(" ({})", client::error_chain(c)))
            .unwrap_or_default();
        eprintln!("okey: {:?}: {}{cause}", status.code(), status.message());
    } else {
        // Each cause once: an error whose text already shows its source is not followed by it.
        eprintln!("okey: {}", client::error_chain(e.as_ref()));
    }
    ExitCode::from(2)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout with success; everything else is bad input.
            let code = if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Otp(args) => return otp::run(args),
        Command::Serve(args) => serve_cmd::run(*args),
        Command::Store(args) => store_cmd::run(args),
        Command::Hid(args) => hid_cmd::run(args),
        Command::Token(args) => runtime().and_then(|rt| rt.block_on(admin::token(args))),
        Command::Verify(args) => runtime().and_then(|rt| rt.block_on(admin::verify(args))),
        Command::Challenge(args) => runtime().and_then(|rt| rt.block_on(admin::challenge(args))),
        Command::Audit(args) => runtime().and_then(|rt| rt.block_on(admin::audit(args))),
        Command::Caller(args) => runtime().and_then(|rt| rt.block_on(admin::caller(args))),
        Command::Directory(args) => runtime().and_then(|rt| rt.block_on(directory_cmd::run(args))),
        Command::Lot(args) => runtime().and_then(|rt| rt.block_on(lifecycle_cmd::lot(args))),
        Command::Key(args) => runtime().and_then(|rt| rt.block_on(lifecycle_cmd::key(args))),
        Command::Case(args) => runtime().and_then(|rt| rt.block_on(support_cmd::case(args))),
        Command::Mail(args) => runtime().and_then(|rt| rt.block_on(mail_cmd::run(args))),
        Command::Request(args) => runtime().and_then(|rt| rt.block_on(request_cmd::request(args))),
        Command::Charter(args) => runtime().and_then(|rt| rt.block_on(request_cmd::charter(args))),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(bench::run(args))),
    };
    result.unwrap_or_else(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand's arguments are well-formed: no clashing names, no impossible defaults.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
