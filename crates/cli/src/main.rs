//! `okey`: one binary for everything okey does.
//!
//! Arguments are parsed without side effects, resolved into a checked configuration, then run.
//! Exit codes are fixed: 0 success, 1 a negative answer (a code rejected), 2 bad input or error.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod otp;

/// okey: one-time-password security keys, from the vendor's seed file to every login.
#[derive(Debug, Parser)]
#[command(name = "okey", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline calculator: compute and verify HOTP, TOTP and OCRA codes.
    Otp(otp::OtpArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout with success; everything else is bad input.
            let code = if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Otp(args) => otp::run(args),
    }
}
