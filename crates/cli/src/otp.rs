//! `okey otp`: an offline HOTP, TOTP and OCRA calculator and verifier.
//!
//! For technicians checking a token against its seed, for tests, and as the bar of conformance
//! against other implementations (oathtool). It prints one code per line on stdout. Exit codes:
//! 0 success, 1 a verification rejected (`rejected` on stdout), 2 bad input (one line on stderr).
//!
//! Arguments are parsed by clap, resolved into checked core types (an [`OtpKey`], [`Digits`],
//! [`TotpParams`], an [`OcraSuite`]), and only then computed; every output line is computed before
//! the first one is printed, so an error never leaves half an answer on stdout. `--window` follows
//! oathtool: when generating it adds the W following counters or steps, when verifying TOTP it
//! accepts W steps either side.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use okey_otp::{
    Algorithm, Code, Digits, OcraInput, OcraSuite, OtpKey, OtpState, TotpParams, hotp, ocra,
    verify_hotp, verify_totp,
};
use zeroize::Zeroizing;

mod secret;

use secret::{KeyEncoding, SecretArg, decode_hex, decode_key};

/// The largest `--window`: a calculator prints or checks at most this many extra codes.
const MAX_WINDOW: u32 = 100_000;

/// Arguments of `okey otp`.
#[derive(Debug, Args)]
#[command(
    about = "Offline calculator: compute and verify HOTP, TOTP and OCRA codes",
    long_about = "Offline calculator: compute and verify HOTP (RFC 4226), TOTP (RFC 6238) and \
                  OCRA (RFC 6287) codes.\n\nPrints one code per line on stdout. Exit status: 0 \
                  success, 1 a verification rejected (prints `rejected`), 2 bad input (one line \
                  on stderr).\n\nKeys are given as --key HEX or --base32 TEXT; either may be `-` \
                  to read the key from standard input or `@FILE` to read it from a file, which \
                  keeps it out of the process arguments and the shell history."
)]
pub struct OtpArgs {
    #[command(subcommand)]
    command: OtpCommand,
}

#[derive(Debug, Subcommand)]
enum OtpCommand {
    /// Print the HOTP codes (RFC 4226) of counters N..=N+W.
    Hotp(HotpArgs),
    /// Print the TOTP codes (RFC 6238) of time steps T..=T+W.
    Totp(TotpArgs),
    /// Print an OCRA response (RFC 6287).
    Ocra(OcraArgs),
    /// Check a code: print the counter or time step it matches, or `rejected` with exit status 1.
    #[command(subcommand)]
    Verify(VerifyCommand),
}

#[derive(Debug, Subcommand)]
enum VerifyCommand {
    /// Check an HOTP code against counters N..=N+W; print the lowest matching counter.
    Hotp(VerifyHotpArgs),
    /// Check a TOTP code against time steps T-W..=T+W; print the lowest matching step.
    Totp(VerifyTotpArgs),
}

/// Where the key comes from: exactly one of `--key` and `--base32`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct KeyArgs {
    /// The key in hexadecimal (either case, spaces ignored); `-` reads it from stdin, `@FILE`
    /// from a file.
    #[arg(long, value_name = "HEX")]
    key: Option<SecretArg>,
    /// The key in base32 (RFC 4648; case, spaces and `=` padding ignored); `-` reads it from
    /// stdin, `@FILE` from a file.
    #[arg(long, value_name = "TEXT")]
    base32: Option<SecretArg>,
}

impl KeyArgs {
    /// The raw key bytes, zeroized on drop.
    fn bytes(&self) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        match (&self.key, &self.base32) {
            (Some(hex), None) => decode_key(hex, KeyEncoding::Hex),
            (None, Some(b32)) => decode_key(b32, KeyEncoding::Base32),
            _ => Err(anyhow!("give exactly one of --key and --base32")),
        }
    }

    /// The key loaded for `algorithm`; the decoded bytes are zeroized before this returns.
    fn load(&self, algorithm: Algorithm) -> anyhow::Result<OtpKey> {
        let bytes = self.bytes()?;
        OtpKey::new(algorithm, &bytes).context("bad key")
    }
}

/// The hash under HMAC.
#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "lower")]
enum AlgorithmArg {
    Sha1,
    Sha256,
    Sha512,
}

impl From<AlgorithmArg> for Algorithm {
    fn from(a: AlgorithmArg) -> Self {
        match a {
            AlgorithmArg::Sha1 => Algorithm::Sha1,
            AlgorithmArg::Sha256 => Algorithm::Sha256,
            AlgorithmArg::Sha512 => Algorithm::Sha512,
        }
    }
}

/// Digits and hash function of an HOTP or TOTP token.
#[derive(Debug, Args)]
struct Format {
    /// Digits per code: 6 to 10.
    #[arg(long, value_name = "DIGITS", default_value_t = 6)]
    digits: u8,
    /// Hash function under HMAC.
    #[arg(long, value_enum, ignore_case = true, default_value_t = AlgorithmArg::Sha1)]
    algorithm: AlgorithmArg,
}

impl Format {
    fn resolve(&self) -> anyhow::Result<(Algorithm, Digits)> {
        let digits = Digits::new(self.digits).context("--digits")?;
        Ok((self.algorithm.into(), digits))
    }
}

/// Time parameters of a TOTP token.
#[derive(Debug, Args)]
struct Clock {
    /// Unix time in seconds [default: now].
    #[arg(long, value_name = "UNIX_SECONDS")]
    time: Option<u64>,
    /// Time step in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    step: u32,
    /// Unix time at which step 0 starts.
    #[arg(long, value_name = "UNIX_SECONDS", default_value_t = 0)]
    t0: u64,
}

impl Clock {
    /// The TOTP parameters and the current time step.
    fn resolve(&self, digits: Digits) -> anyhow::Result<(TotpParams, u64, u64)> {
        let params = TotpParams::new(digits, self.step, self.t0).context("--step")?;
        let now = match self.time {
            Some(t) => t,
            None => clock()?,
        };
        let step = params.step_at(now).context("--time")?;
        Ok((params, now, step))
    }
}

#[derive(Debug, Args)]
struct HotpArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The first counter.
    #[arg(long, value_name = "N")]
    counter: u64,
    #[command(flatten)]
    format: Format,
    /// Also print the codes of the W following counters (N..=N+W), as `oathtool -w`.
    #[arg(long, value_name = "W", default_value_t = 0, value_parser = window_parser())]
    window: u32,
}

#[derive(Debug, Args)]
struct TotpArgs {
    #[command(flatten)]
    key: KeyArgs,
    #[command(flatten)]
    clock: Clock,
    #[command(flatten)]
    format: Format,
    /// Also print the codes of the W following time steps (T..=T+W), as `oathtool --totp -w`.
    #[arg(long, value_name = "W", default_value_t = 0, value_parser = window_parser())]
    window: u32,
}

#[derive(Debug, Args)]
struct OcraArgs {
    /// The OCRA suite, e.g. OCRA-1:HOTP-SHA1-6:QN08 (it fixes the hash and the inputs).
    #[arg(long, value_name = "SUITE")]
    suite: String,
    #[command(flatten)]
    key: KeyArgs,
    /// The challenge (for mutual mode the two challenges concatenated).
    #[arg(long, value_name = "Q")]
    question: String,
    /// The counter, for suites with C.
    #[arg(long, value_name = "N")]
    counter: Option<u64>,
    /// The PIN, for suites with P: hashed with the suite's PIN hash function.
    #[arg(long, value_name = "PIN", conflicts_with = "pin_hash")]
    pin: Option<SecretArg>,
    /// The PIN's hash in hexadecimal, for suites with P.
    #[arg(long, value_name = "HEX")]
    pin_hash: Option<String>,
    /// Session information in hexadecimal, for suites with S (left-padded to the suite's length).
    #[arg(long, value_name = "HEX")]
    session: Option<String>,
    /// Unix time in seconds for suites with T, converted to the suite's time steps [default: now].
    #[arg(long, value_name = "UNIX_SECONDS")]
    time: Option<u64>,
}

#[derive(Debug, Args)]
struct VerifyHotpArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The stored counter: the lowest counter that may match.
    #[arg(long, value_name = "N")]
    counter: u64,
    #[command(flatten)]
    format: Format,
    /// The code to check (exactly --digits digits).
    #[arg(long, value_name = "CODE")]
    code: SecretArg,
    /// Look ahead: accept counters N..=N+W, as `oathtool -w`.
    #[arg(long, value_name = "W", default_value_t = 0, value_parser = window_parser())]
    window: u32,
}

#[derive(Debug, Args)]
struct VerifyTotpArgs {
    #[command(flatten)]
    key: KeyArgs,
    #[command(flatten)]
    clock: Clock,
    #[command(flatten)]
    format: Format,
    /// The code to check (exactly --digits digits).
    #[arg(long, value_name = "CODE")]
    code: SecretArg,
    /// Accepted skew: time steps T-W..=T+W, as `oathtool --totp -w` when validating.
    #[arg(long, value_name = "W", default_value_t = 0, value_parser = window_parser())]
    window: u32,
}

fn window_parser() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(0..=i64::from(MAX_WINDOW))
}

/// The answer of a command: lines to print, and whether it is a rejection.
enum Outcome {
    Lines(Vec<String>),
    Rejected,
}

/// Run `okey otp`.
pub fn run(args: OtpArgs) -> ExitCode {
    let outcome = match execute(args.command) {
        Ok(outcome) => outcome,
        Err(e) => {
            // `{:#}` writes the context chain on one line: "--key: not hexadecimal: ...".
            let text = format!("{e:#}").replace(['\n', '\r'], " ");
            eprintln!("error: {text}");
            return ExitCode::from(2);
        }
    };
    let (lines, status) = match outcome {
        Outcome::Lines(lines) => (lines, ExitCode::SUCCESS),
        Outcome::Rejected => (vec!["rejected".to_owned()], ExitCode::from(1)),
    };
    let mut out = std::io::stdout().lock();
    for line in &lines {
        if let Err(e) = writeln!(out, "{line}") {
            eprintln!("error: writing to stdout: {e}");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = out.flush() {
        eprintln!("error: writing to stdout: {e}");
        return ExitCode::from(2);
    }
    status
}

fn execute(command: OtpCommand) -> anyhow::Result<Outcome> {
    match command {
        OtpCommand::Hotp(a) => {
            let (algorithm, digits) = a.format.resolve()?;
            let key = a.key.load(algorithm)?;
            codes_from(&key, digits, a.counter, a.window, "--counter")
        }
        OtpCommand::Totp(a) => {
            let (algorithm, digits) = a.format.resolve()?;
            let (_, _, step) = a.clock.resolve(digits)?;
            let key = a.key.load(algorithm)?;
            codes_from(&key, digits, step, a.window, "--time")
        }
        OtpCommand::Ocra(a) => ocra_response(&a),
        OtpCommand::Verify(VerifyCommand::Hotp(a)) => {
            let (algorithm, digits) = a.format.resolve()?;
            let code = Code::parse(a.code.expose(), digits).context("--code")?;
            let key = a.key.load(algorithm)?;
            let state = OtpState {
                counter: a.counter,
                ..OtpState::default()
            };
            let proof = verify_hotp(&key, digits, &state, a.window + 1, &code);
            Ok(proof.map_or(Outcome::Rejected, |p| {
                Outcome::Lines(vec![p.matched().to_string()])
            }))
        }
        OtpCommand::Verify(VerifyCommand::Totp(a)) => {
            let (algorithm, digits) = a.format.resolve()?;
            let code = Code::parse(a.code.expose(), digits).context("--code")?;
            let (params, now, _) = a.clock.resolve(digits)?;
            let key = a.key.load(algorithm)?;
            let proof = verify_totp(&key, &params, &OtpState::default(), now, a.window, &code);
            Ok(proof.map_or(Outcome::Rejected, |p| {
                Outcome::Lines(vec![p.matched().to_string()])
            }))
        }
    }
}

/// The codes of `first..=first + window`.
fn codes_from(
    key: &OtpKey,
    digits: Digits,
    first: u64,
    window: u32,
    what: &str,
) -> anyhow::Result<Outcome> {
    if first.checked_add(u64::from(window)).is_none() {
        bail!("{what}: the window runs past the last counter (2^64 - 1)");
    }
    let lines = (0..=u64::from(window))
        .map(|i| hotp(key, first + i, digits).to_text())
        .collect();
    Ok(Outcome::Lines(lines))
}

fn ocra_response(a: &OcraArgs) -> anyhow::Result<Outcome> {
    let suite: OcraSuite = a.suite.parse().context("--suite")?;
    let key = a.key.load(suite.algorithm())?;
    let pin_hash = match (&a.pin, &a.pin_hash, suite.pin_hash()) {
        (Some(pin), _, Some(alg)) => Some(Zeroizing::new(
            okey_otp::digest(alg, pin.expose().as_bytes())
                .as_bytes()
                .to_vec(),
        )),
        (Some(_), _, None) => bail!("--pin: the suite {suite} does not use a PIN"),
        (None, Some(hex), _) => Some(decode_hex(hex).context("--pin-hash")?),
        (None, None, _) => None,
    };
    let session = a
        .session
        .as_deref()
        .map(decode_hex)
        .transpose()
        .context("--session")?;
    let timestamp = match (suite.time_step(), a.time) {
        (Some(_), Some(t)) => Some(suite.timestamp_at(t).context("--time")?),
        (Some(_), None) => Some(suite.timestamp_at(clock()?).context("--time")?),
        (None, Some(_)) => bail!("--time: the suite {suite} is not time-based"),
        (None, None) => None,
    };
    let input = OcraInput {
        counter: a.counter,
        question: &a.question,
        pin_hash: pin_hash.as_ref().map(|h| h.as_slice()),
        session: session.as_ref().map(|s| s.as_slice()),
        timestamp,
    };
    let response = ocra(&key, &suite, &input)?;
    Ok(Outcome::Lines(vec![response.as_str().to_owned()]))
}

/// The current Unix time: the calculator's only clock read.
#[allow(clippy::disallowed_methods)]
fn clock() -> anyhow::Result<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| anyhow!("the system clock is set before 1970"))
}
