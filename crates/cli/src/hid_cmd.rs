//! `okey hid ...`: the USB bench for technicians. List tokens, initialise them (the server
//! creates the token and releases its seed once; the bench writes it, reads a code back, and
//! only the server's confirmation activates the token), change on-device PINs, repair desync,
//! and initialise a whole row of tokens in batch mode.
//!
//! The workflows themselves live in `okey_hid::bench`; this module resolves arguments and
//! secrets, picks the device provider (USB hardware, or the simulated bench with
//! `--simulate`), talks to the server through [`registry::GrpcRegistry`], and prints.
//!
//! Secrets (PINs, access codes) are read from the environment (`OKEY_ADMIN_PIN`,
//! `OKEY_USER_PIN`, `OKEY_NEW_PIN`, `OKEY_ACCESS_CODE`, `OKEY_NEW_ACCESS_CODE`) or prompted on
//! standard input; the equivalent flags exist but show in `ps`, so the environment is
//! preferred. Exit codes: 0 done, 1 a negative answer (a batch with failed tokens), 2 an
//! error (with advice for the technician on stderr).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use okey_hid::bench::{
    self, BatchEvent, BatchOptions, BatchSummary, BenchError, DeviceSummary, HostClock,
    InitOptions, InitReport, OtpKind, PinAction, PinReport, ResyncOptions, ResyncOutcome,
    RetryCounters, SlotRef, TouchSource,
};
use okey_hid::hidapi_backend::HidapiProvider;
use okey_hid::nitrokey::Slot;
use okey_hid::secret::{AccessCode, DEFAULT_ADMIN_PIN, DEFAULT_USER_PIN, Digits, OtpCode, Pin};
use okey_hid::yubikey::YkSlot;
use okey_hid::{DeviceInfo, DeviceProvider};
use zeroize::{Zeroize, Zeroizing};

use crate::client::ClientArgs;

pub mod clock;
pub mod registry;
pub mod sim;

use clock::{Stopwatch, SystemClock};
use registry::GrpcRegistry;
use sim::{SimArgs, Simulation};

/// USB HID bench.
#[derive(Debug, Args)]
pub struct HidArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    sim: SimArgs,
    #[command(flatten)]
    secrets: SecretArgs,
    #[command(subcommand)]
    command: HidCommand,
}

/// PINs and access codes. The environment variables are preferred: flags show in `ps`.
#[derive(Debug, Args, Default)]
struct SecretArgs {
    /// Nitrokey admin PIN (prefer OKEY_ADMIN_PIN; prompted when needed and unset).
    #[arg(long, env = "OKEY_ADMIN_PIN", hide_env_values = true, global = true)]
    admin_pin: Option<String>,
    /// Nitrokey user PIN (prefer OKEY_USER_PIN).
    #[arg(long, env = "OKEY_USER_PIN", hide_env_values = true, global = true)]
    user_pin: Option<String>,
    /// New PIN for `pin change-user|change-admin|unlock` (prefer OKEY_NEW_PIN).
    #[arg(long, env = "OKEY_NEW_PIN", hide_env_values = true, global = true)]
    new_pin: Option<String>,
    /// Current YubiKey access code, 12 hex digits (prefer OKEY_ACCESS_CODE; none when unset).
    #[arg(long, env = "OKEY_ACCESS_CODE", hide_env_values = true, global = true)]
    access_code: Option<String>,
    /// YubiKey access code protecting the slot afterwards, 12 hex digits (prefer
    /// OKEY_NEW_ACCESS_CODE; none when unset for `init`, prompted for `pin access-code`).
    #[arg(
        long,
        env = "OKEY_NEW_ACCESS_CODE",
        hide_env_values = true,
        global = true
    )]
    new_access_code: Option<String>,
}

#[derive(Debug, Subcommand)]
enum HidCommand {
    /// Tokens on the bench: family, firmware, serial, slots in use, PIN tries left.
    List,
    /// Initialise tokens: the server creates each token and its seed, the bench writes the
    /// seed, reads a code back, and the server's check of that code activates the token.
    Init(InitArgs),
    /// Change a Nitrokey user or admin PIN, unblock the user PIN, show retry counters, or
    /// change a YubiKey access code.
    Pin(PinArgs),
    /// Bring server and token back in step (HOTP: move whichever side is behind; TOTP: set the
    /// token clock from this host's UTC time and record the drift on the server).
    Resync(ResyncArgs),
    /// Initialise a row of tokens: plug one in, it is initialised, pull it out, plug the next.
    Batch(BatchArgs),
}

/// Which plugged-in tokens a command acts on.
#[derive(Debug, Args)]
struct Target {
    /// The token to act on: its device path or USB serial (see `okey hid list`).
    #[arg(long, conflicts_with = "all")]
    device: Option<String>,
    /// Act on every token plugged in.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KindArg {
    Hotp,
    Totp,
}

/// What to write where.
#[derive(Debug, Args)]
struct SlotArgs {
    /// HOTP (counter) or TOTP (time; Nitrokey only).
    #[arg(long, value_enum, default_value = "hotp")]
    kind: KindArg,
    /// TOTP time step in seconds.
    #[arg(long, default_value_t = 30)]
    step: u32,
    /// Code length: 6 or 8.
    #[arg(long, default_value_t = 6)]
    digits: u32,
    /// Nitrokey slot number, from 0 (HOTP 0..=2, TOTP 0..=14).
    #[arg(long, default_value_t = 0)]
    slot: u8,
    /// YubiKey configuration: 1 or 2.
    #[arg(long, default_value_t = 1)]
    yubikey_slot: u8,
}

impl SlotArgs {
    fn kind(&self) -> OtpKind {
        match self.kind {
            KindArg::Hotp => OtpKind::Hotp,
            KindArg::Totp => OtpKind::Totp { step: self.step },
        }
    }

    fn nitrokey_slot(&self) -> anyhow::Result<Slot> {
        let slot = match self.kind {
            KindArg::Hotp => Slot::Hotp(self.slot),
            KindArg::Totp => Slot::Totp(self.slot),
        };
        let max = match self.kind {
            KindArg::Hotp => okey_hid::nitrokey::proto::HOTP_SLOTS,
            KindArg::Totp => okey_hid::nitrokey::proto::TOTP_SLOTS,
        };
        if self.slot >= max {
            bail!(
                "--slot {}: a Nitrokey has {} {:?} slots, numbered from 0",
                self.slot,
                max,
                self.kind
            );
        }
        Ok(slot)
    }

    fn yubikey_slot(&self) -> anyhow::Result<YkSlot> {
        match self.yubikey_slot {
            1 => Ok(YkSlot::One),
            2 => Ok(YkSlot::Two),
            n => bail!("--yubikey-slot {n}: a YubiKey has configurations 1 and 2"),
        }
    }

    fn digits(&self) -> anyhow::Result<Digits> {
        Digits::from_count(self.digits).context("--digits: tokens show 6 or 8 digits")
    }
}

#[derive(Debug, Args)]
struct InitArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    slot: SlotArgs,
    /// Nitrokey slot name (1 to 15 characters).
    #[arg(long, default_value = "okey")]
    name: String,
    /// Overwrite a slot that already holds a configuration.
    #[arg(long)]
    overwrite: bool,
    /// Simulation only: after the initialisation, read the next code the simulated token
    /// shows and print it, to try a login with `okey verify --serial ...`.
    #[arg(long, requires = "simulate")]
    show_next_code: bool,
}

/// One PIN operation (exactly one flag).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PinActionArgs {
    /// Show the Nitrokey PIN retry counters.
    #[arg(long)]
    show: bool,
    /// Change the Nitrokey user PIN (current: OKEY_USER_PIN, new: OKEY_NEW_PIN).
    #[arg(long)]
    change_user: bool,
    /// Change the Nitrokey admin PIN (current: OKEY_ADMIN_PIN, new: OKEY_NEW_PIN).
    #[arg(long)]
    change_admin: bool,
    /// Unblock the Nitrokey user PIN with the admin PIN (OKEY_ADMIN_PIN), setting
    /// OKEY_NEW_PIN.
    #[arg(long)]
    unlock: bool,
    /// Change the access code of this YubiKey configuration, 1 or 2 (current:
    /// OKEY_ACCESS_CODE, new: OKEY_NEW_ACCESS_CODE; empty removes it).
    #[arg(long, value_name = "SLOT")]
    access_code_slot: Option<u8>,
}

#[derive(Debug, Args)]
struct PinArgs {
    #[command(flatten)]
    action: PinActionArgs,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
struct ResyncArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    slot: SlotArgs,
    /// Most codes generated to step a lagging Nitrokey counter forward without the admin PIN.
    #[arg(long, default_value_t = 100)]
    max_step_forward: u64,
    /// Simulation only: the simulated tokens are fresh on every run, so they are first
    /// initialised through the server, then the button is pressed this many times without
    /// logging in (HOTP: the token runs ahead of the server).
    #[arg(long, requires = "simulate", default_value_t = 0)]
    simulate_presses: u64,
    /// Simulation only: like --simulate-presses, but for TOTP: the simulated Nitrokey clock
    /// is set this many seconds away from the host's before the resync.
    #[arg(
        long,
        requires = "simulate",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    simulate_clock_offset: i64,
    /// Simulation only: after the resync, print the next code the simulated token shows.
    #[arg(long, requires = "simulate")]
    show_next_code: bool,
}

#[derive(Debug, Args)]
struct BatchArgs {
    #[command(flatten)]
    slot: SlotArgs,
    /// Nitrokey slot name (1 to 15 characters).
    #[arg(long, default_value = "okey")]
    name: String,
    /// Overwrite slots that already hold a configuration.
    #[arg(long)]
    overwrite: bool,
    /// Stop after this many tokens.
    #[arg(long)]
    limit: Option<usize>,
    /// Stop when no token has been plugged in for this many seconds.
    #[arg(long, default_value_t = 120)]
    idle_timeout: u64,
    /// Seconds to wait for a finished token to be pulled out before going on.
    #[arg(long, default_value_t = 60)]
    removal_timeout: u64,
}

/// Where the tokens are: USB hardware or the simulated bench.
enum Bench {
    Hardware(HidapiProvider),
    Simulated(Box<Simulation>),
}

impl Bench {
    fn open(sim: &SimArgs, plugged: bool, yubikey_slot: YkSlot) -> anyhow::Result<Self> {
        if sim.simulate {
            let epoch = SystemClock.unix_now();
            Ok(Self::Simulated(Box::new(sim.build(
                epoch,
                plugged,
                yubikey_slot,
            )?)))
        } else {
            Ok(Self::Hardware(
                HidapiProvider::new()
                    .map_err(BenchError::from)
                    .map_err(|e| anyhow::anyhow!("{e}\nadvice: {}", e.advice()))?,
            ))
        }
    }

    fn provider(&mut self) -> &mut dyn DeviceProvider {
        match self {
            Self::Hardware(p) => p,
            Self::Simulated(s) => &mut s.bench,
        }
    }

    /// The touch source; on hardware, `bar` (if any) is hidden while the prompt waits.
    fn touch(&self, bar: Option<ProgressBar>) -> Box<dyn TouchSource> {
        match self {
            Self::Hardware(_) => Box::new(StdinTouch { bar }),
            Self::Simulated(s) => Box::new(s.bench.touch_handle()),
        }
    }

    fn simulation(&mut self) -> Option<&mut Simulation> {
        match self {
            Self::Hardware(_) => None,
            Self::Simulated(s) => Some(s),
        }
    }

    fn select(&mut self, target: &Target) -> anyhow::Result<Vec<DeviceInfo>> {
        let present = self.provider().enumerate().map_err(|e| {
            let e = BenchError::from(e);
            anyhow::anyhow!("{e}\nadvice: {}", e.advice())
        })?;
        if let Some(wanted) = &target.device {
            let found: Vec<DeviceInfo> = present
                .into_iter()
                .filter(|d| &d.path == wanted || d.usb_serial.as_deref() == Some(wanted))
                .collect();
            if found.is_empty() {
                bail!("no token {wanted} on the bench (see `okey hid list`)");
            }
            return Ok(found);
        }
        match present.len() {
            0 => bail!("no supported token is plugged in"),
            1 => Ok(present),
            n if target.all => {
                tracing::debug!(tokens = n, "acting on every token");
                Ok(present)
            }
            n => bail!(
                "{n} tokens are plugged in ({}): pick one with --device or pass --all",
                present
                    .iter()
                    .map(|d| d.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// A YubiKey types its code when touched: the technician touches it with the cursor on this
/// prompt, and the typed line is read back.
struct StdinTouch {
    bar: Option<ProgressBar>,
}

impl TouchSource for StdinTouch {
    fn read_touch_code(&mut self, device: &DeviceInfo, slot: YkSlot) -> Result<OtpCode, String> {
        let read = || {
            eprint!("touch the YubiKey at {} ({slot}) now: ", device.path);
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            OtpCode::parse(&line).ok_or_else(|| "what was typed is not a 6 or 8 digit code".into())
        };
        match &self.bar {
            Some(bar) => bar.suspend(read),
            None => read(),
        }
    }
}

/// Takes a secret out of its flag/environment value (wiping the original), or prompts.
fn secret(
    value: &mut Option<String>,
    prompt: &str,
    default: Option<&str>,
) -> anyhow::Result<Zeroizing<String>> {
    if let Some(mut v) = value.take() {
        let out = Zeroizing::new(v.clone());
        v.zeroize();
        return Ok(out);
    }
    if let Some(d) = default {
        return Ok(Zeroizing::new(d.to_owned()));
    }
    crate::prompt::secret(prompt)
}

fn pin_of(text: &str, what: &str) -> anyhow::Result<Pin> {
    Pin::new(text).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

fn access_code_of(text: &str, what: &str) -> anyhow::Result<AccessCode> {
    if text.trim().is_empty() {
        return Ok(AccessCode::none());
    }
    AccessCode::parse_hex(text).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// Prints a workflow error and its advice; returns exit code 2.
fn report_error(context: &str, e: &BenchError) -> ExitCode {
    eprintln!("okey: {context}: {e}");
    eprintln!("advice: {}", e.advice());
    ExitCode::from(2)
}

/// Runs `okey hid ...`.
pub fn run(mut args: HidArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        HidCommand::List => list(&args.sim),
        HidCommand::Init(ref a) => init(a, &args.client, &args.sim, &mut args.secrets),
        HidCommand::Pin(ref a) => pin(a, &args.sim, &mut args.secrets),
        HidCommand::Resync(ref a) => resync(a, &args.client, &args.sim, &mut args.secrets),
        HidCommand::Batch(ref a) => batch(a, &args.client, &args.sim, &mut args.secrets),
    }
}

fn slots_text(slots: &[SlotRef]) -> String {
    if slots.is_empty() {
        "-".into()
    } else {
        slots
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn counters_text(c: Option<RetryCounters>) -> String {
    c.map_or_else(
        || "-".into(),
        |c| format!("user {} admin {}", c.user, c.admin),
    )
}

/// The `okey hid list` table.
fn list_table(devices: &[DeviceSummary]) -> String {
    let mut out = format!(
        "{:<24} {:<13} {:<9} {:<13} {:<22} {}\n",
        "DEVICE", "FAMILY", "FIRMWARE", "SERIAL", "SLOTS IN USE", "PIN TRIES"
    );
    for d in devices {
        out.push_str(&format!(
            "{:<24} {:<13} {:<9} {:<13} {:<22} {}\n",
            d.info.path,
            d.info.family.to_string(),
            d.firmware.as_deref().unwrap_or("?"),
            d.token.map_or_else(|| "?".into(), |t| t.to_string()),
            slots_text(&d.slots_in_use),
            counters_text(d.retry_counters),
        ));
        if let Some(e) = &d.error {
            out.push_str(&format!("    unreadable: {e}\n"));
        }
    }
    out
}

fn list(sim: &SimArgs) -> anyhow::Result<ExitCode> {
    let mut bench = Bench::open(sim, true, YkSlot::One)?;
    let devices = match bench::list(bench.provider()) {
        Ok(d) => d,
        Err(e) => return Ok(report_error("cannot list the bench", &e)),
    };
    print!("{}", list_table(&devices));
    if devices.is_empty() {
        eprintln!("no supported token is plugged in");
    }
    Ok(ExitCode::SUCCESS)
}

fn init_options(
    slot: &SlotArgs,
    name: &str,
    overwrite: bool,
    simulate: bool,
    needs_admin_pin: bool,
    secrets: &mut SecretArgs,
) -> anyhow::Result<InitOptions> {
    let admin = if needs_admin_pin {
        secret(
            &mut secrets.admin_pin,
            "Nitrokey admin PIN",
            simulate.then_some(DEFAULT_ADMIN_PIN),
        )?
    } else {
        // YubiKeys have no admin PIN; the field is not used for them.
        Zeroizing::new(DEFAULT_ADMIN_PIN.to_owned())
    };
    let user_pin = match secrets.user_pin.take() {
        Some(mut p) => {
            let pin = pin_of(&p, "user PIN")?;
            p.zeroize();
            Some(pin)
        }
        None => None,
    };
    let access = secret(&mut secrets.access_code, "", Some(""))?;
    let new_access = secret(&mut secrets.new_access_code, "", Some(""))?;
    Ok(InitOptions {
        kind: slot.kind(),
        digits: slot.digits()?,
        nitrokey_slot: slot.nitrokey_slot()?,
        slot_name: name.to_owned(),
        admin_pin: pin_of(&admin, "admin PIN")?,
        user_pin,
        yubikey_slot: slot.yubikey_slot()?,
        access_code: access_code_of(&access, "access code")?,
        new_access_code: access_code_of(&new_access, "new access code")?,
        overwrite,
    })
}

fn init_line(r: &InitReport) -> String {
    let mut s = format!("initialised {} ({}): active on the server", r.token, r.slot);
    if let Some(c) = r.device_counter {
        s.push_str(&format!(", device counter {c}"));
    }
    if let Some(t) = r.clock_set_to {
        s.push_str(&format!(", clock set to {t}"));
    }
    s
}

fn show_next_code(
    sim: &mut Simulation,
    device: &DeviceInfo,
    token: &okey_hid::bench::TokenIdentity,
    slot: &SlotArgs,
    options_user_pin: Option<&Pin>,
) -> anyhow::Result<()> {
    let code = sim.next_code(
        device,
        slot.kind(),
        slot.nitrokey_slot()?,
        slot.yubikey_slot()?,
        options_user_pin,
    )?;
    println!("next code {token}: {}", code.expose_text().as_str());
    Ok(())
}

fn init(
    a: &InitArgs,
    client: &ClientArgs,
    sim: &SimArgs,
    secrets: &mut SecretArgs,
) -> anyhow::Result<ExitCode> {
    let mut bench = Bench::open(sim, true, a.slot.yubikey_slot()?)?;
    let devices = bench.select(&a.target)?;
    let needs_admin = devices
        .iter()
        .any(|d| d.family == okey_hid::Family::NitrokeyPro);
    let options = init_options(
        &a.slot,
        &a.name,
        a.overwrite,
        sim.simulate,
        needs_admin,
        secrets,
    )?;
    let mut registry = GrpcRegistry::connect(client)?;
    let mut touch = bench.touch(None);
    let mut clock = SystemClock;
    let mut failed = 0usize;
    for device in &devices {
        let now = clock.unix_now();
        match bench::init(
            bench.provider(),
            device,
            &mut registry,
            touch.as_mut(),
            &options,
            now,
        ) {
            Ok(report) => {
                println!("{}", init_line(&report));
                if a.show_next_code
                    && let Some(s) = bench.simulation()
                {
                    show_next_code(s, device, &report.token, &a.slot, options.user_pin.as_ref())?;
                }
            }
            Err(e) => {
                failed += 1;
                report_error(&format!("initialising {} failed", device.path), &e);
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn pin_line(r: &PinReport, what: &str) -> String {
    match (r.before, r.after) {
        (Some(b), Some(a)) if b != a => format!(
            "{}: {what}; PIN tries left: {} (before: {})",
            r.token,
            counters_text(Some(a)),
            counters_text(Some(b))
        ),
        (Some(b), _) => format!(
            "{}: {what}; PIN tries left: {}",
            r.token,
            counters_text(Some(b))
        ),
        _ => format!("{}: {what}", r.token),
    }
}

fn pin(a: &PinArgs, sim: &SimArgs, secrets: &mut SecretArgs) -> anyhow::Result<ExitCode> {
    let mut bench = Bench::open(sim, true, YkSlot::One)?;
    let devices = bench.select(&a.target)?;
    let default = |d: &'static str| sim.simulate.then_some(d);
    let act = &a.action;
    let (action, done, doing) = if act.change_user {
        let old = secret(
            &mut secrets.user_pin,
            "current user PIN",
            default(DEFAULT_USER_PIN),
        )?;
        let new = secret(&mut secrets.new_pin, "new user PIN (6 or more)", None)?;
        (
            PinAction::ChangeUser {
                old: pin_of(&old, "user PIN")?,
                new: pin_of(&new, "new PIN")?,
            },
            "user PIN changed",
            "changing the user PIN",
        )
    } else if act.change_admin {
        let old = secret(
            &mut secrets.admin_pin,
            "current admin PIN",
            default(DEFAULT_ADMIN_PIN),
        )?;
        let new = secret(&mut secrets.new_pin, "new admin PIN (8 or more)", None)?;
        (
            PinAction::ChangeAdmin {
                old: pin_of(&old, "admin PIN")?,
                new: pin_of(&new, "new PIN")?,
            },
            "admin PIN changed",
            "changing the admin PIN",
        )
    } else if act.unlock {
        let admin = secret(
            &mut secrets.admin_pin,
            "admin PIN",
            default(DEFAULT_ADMIN_PIN),
        )?;
        let new = secret(&mut secrets.new_pin, "new user PIN (6 or more)", None)?;
        (
            PinAction::UnlockUser {
                admin: pin_of(&admin, "admin PIN")?,
                new_user: pin_of(&new, "new PIN")?,
            },
            "user PIN unblocked",
            "unblocking the user PIN",
        )
    } else if let Some(n) = act.access_code_slot {
        let slot = match n {
            1 => YkSlot::One,
            2 => YkSlot::Two,
            n => bail!("--access-code-slot {n}: a YubiKey has configurations 1 and 2"),
        };
        let current = secret(&mut secrets.access_code, "", Some(""))?;
        let new = secret(
            &mut secrets.new_access_code,
            "new access code (12 hex digits, empty for none)",
            None,
        )?;
        (
            PinAction::ChangeAccessCode {
                slot,
                current: access_code_of(&current, "access code")?,
                new: access_code_of(&new, "new access code")?,
            },
            "access code changed",
            "changing the access code",
        )
    } else {
        (
            PinAction::ShowCounters,
            "counters read",
            "reading the counters",
        )
    };
    let mut code = ExitCode::SUCCESS;
    for device in &devices {
        match bench::pin(bench.provider(), device, &action) {
            Ok(r) => println!("{}", pin_line(&r, done)),
            Err(f) => {
                code = report_error(&format!("{doing} on {} failed", device.path), &f.error);
                if f.after.is_some() {
                    eprintln!("PIN tries left: {}", counters_text(f.after));
                }
            }
        }
    }
    Ok(code)
}

fn resync_line(token: &okey_hid::bench::TokenIdentity, o: &ResyncOutcome) -> String {
    match o {
        ResyncOutcome::InStep { counter } => {
            format!("{token}: already in step (next counter {counter})")
        }
        ResyncOutcome::ServerAdvanced { from, to } => {
            format!("{token}: the server was behind; its counter moved from {from} to {to}")
        }
        ResyncOutcome::DeviceAdvanced { from, to } => {
            format!("{token}: the token was behind; its counter moved from {from} to {to}")
        }
        ResyncOutcome::ClockSet {
            drift_steps,
            set_to,
        } => format!(
            "{token}: clock set to {set_to}; drift recorded on the server: {drift_steps} steps"
        ),
    }
}

fn resync(
    a: &ResyncArgs,
    client: &ClientArgs,
    sim: &SimArgs,
    secrets: &mut SecretArgs,
) -> anyhow::Result<ExitCode> {
    let mut bench = Bench::open(sim, true, a.slot.yubikey_slot()?)?;
    let devices = bench.select(&a.target)?;
    let mut registry = GrpcRegistry::connect(client)?;
    let mut touch = bench.touch(None);
    let mut clock = SystemClock;
    let admin_pin = match secrets.admin_pin.take() {
        Some(mut p) => {
            let pin = pin_of(&p, "admin PIN")?;
            p.zeroize();
            Some(pin)
        }
        None => None,
    };
    let user_pin = match secrets.user_pin.take() {
        Some(mut p) => {
            let pin = pin_of(&p, "user PIN")?;
            p.zeroize();
            Some(pin)
        }
        None => None,
    };
    if sim.simulate {
        // Fresh simulated tokens: initialise them through the server, then desynchronise.
        let needs_admin = devices
            .iter()
            .any(|d| d.family == okey_hid::Family::NitrokeyPro);
        let init = init_options(&a.slot, "okey", false, true, needs_admin, secrets)?;
        for device in &devices {
            let now = clock.unix_now();
            let report = match bench::init(
                bench.provider(),
                device,
                &mut registry,
                touch.as_mut(),
                &init,
                now,
            ) {
                Ok(r) => r,
                Err(e) => return Ok(report_error("simulation: initialising failed", &e)),
            };
            println!("simulation: {}", init_line(&report));
            let Some(s) = bench.simulation() else {
                continue;
            };
            if a.simulate_presses > 0 {
                s.press(
                    device,
                    a.simulate_presses,
                    a.slot.nitrokey_slot()?,
                    a.slot.yubikey_slot()?,
                    user_pin.as_ref(),
                )?;
                println!(
                    "simulation: {} pressed {} times without logging in",
                    report.token, a.simulate_presses
                );
            }
            if a.simulate_clock_offset != 0 {
                s.skew_clock(device, clock.unix_now(), a.simulate_clock_offset)?;
                println!(
                    "simulation: {} clock set {} s away from the host's",
                    report.token, a.simulate_clock_offset
                );
            }
        }
    }
    let options = ResyncOptions {
        nitrokey_slot: a.slot.nitrokey_slot()?,
        yubikey_slot: a.slot.yubikey_slot()?,
        admin_pin,
        user_pin,
        max_step_forward: a.max_step_forward,
    };
    let mut code = ExitCode::SUCCESS;
    for device in &devices {
        let now = clock.unix_now();
        match bench::resync(
            bench.provider(),
            device,
            &mut registry,
            touch.as_mut(),
            &options,
            now,
        ) {
            Ok((token, outcome)) => {
                println!("{}", resync_line(&token, &outcome));
                if a.show_next_code
                    && let Some(s) = bench.simulation()
                {
                    show_next_code(s, device, &token, &a.slot, options.user_pin.as_ref())?;
                }
            }
            Err(e) => code = report_error(&format!("resync of {} failed", device.path), &e),
        }
    }
    Ok(code)
}

/// The summary printed after a batch run.
fn batch_summary_text(s: &BatchSummary) -> String {
    let mut out = format!(
        "batch: {} initialised, {} failed\n",
        s.initialised.len(),
        s.failed.len()
    );
    for r in &s.initialised {
        out.push_str(&format!("  ok      {} ({})\n", r.token, r.slot));
    }
    for f in &s.failed {
        let who = f
            .token
            .map_or_else(|| f.device.clone(), |t| format!("{t} at {}", f.device));
        out.push_str(&format!(
            "  FAILED  {who}{}: {}\n          advice: {}\n",
            if f.pulled_out { " (pulled out)" } else { "" },
            f.error,
            f.advice
        ));
    }
    out
}

fn batch(
    a: &BatchArgs,
    client: &ClientArgs,
    sim: &SimArgs,
    secrets: &mut SecretArgs,
) -> anyhow::Result<ExitCode> {
    let mut bench = Bench::open(sim, false, a.slot.yubikey_slot()?)?;
    // Any token of the row may be a Nitrokey: the admin PIN is needed up front.
    let options = BatchOptions {
        init: init_options(&a.slot, &a.name, a.overwrite, sim.simulate, true, secrets)?,
        limit: a.limit,
        idle_timeout: Duration::from_secs(a.idle_timeout),
        removal_timeout: Duration::from_secs(a.removal_timeout),
    };
    let mut registry = GrpcRegistry::connect(client)?;
    let mut clock = SystemClock;
    let expected = bench.simulation().map(|s| s.ids.len());
    let bar = match expected.or(a.limit) {
        Some(n) => ProgressBar::new(u64::try_from(n).unwrap_or(u64::MAX)).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => {
            let spinner = ProgressBar::new_spinner();
            spinner.enable_steady_tick(Duration::from_millis(150));
            spinner
        }
    };
    let mut touch = bench.touch(Some(bar.clone()));
    // Figures run from the start to the last token pulled out (not through the final idle
    // wait). The simulated bench's virtual clock counts device commands and the autopilot
    // technician's plugging and pulling; the stopwatch counts real time (server round trips).
    let virtual_clock = bench.simulation().map(|s| s.bench.clock().clone());
    let virtual_start = virtual_clock
        .as_ref()
        .map(okey_token_sim::VirtualClock::now_ms);
    let mut virtual_end = virtual_start;
    let watch = Stopwatch::start();
    let mut wall_end = Duration::ZERO;
    let mut failures = 0usize;
    let summary = bench::run_batch(
        bench.provider(),
        &mut registry,
        touch.as_mut(),
        &mut clock,
        &options,
        &mut |event| match event {
            BatchEvent::WaitingForToken { done } => {
                bar.set_message(format!(
                    "{done} done, {failures} failed: plug in the next token"
                ));
            }
            BatchEvent::Plugged(d) => bar.set_message(format!("initialising {}", d.path)),
            BatchEvent::Initialised(r) => {
                bar.inc(1);
                bar.suspend(|| println!("{}", init_line(r)));
            }
            BatchEvent::Failed { device, error } => {
                failures += 1;
                bar.inc(1);
                bar.suspend(|| {
                    eprintln!("FAILED {}: {error}", device.path);
                    eprintln!("advice: {}", error.advice());
                });
            }
            BatchEvent::WaitingForRemoval(d) => {
                bar.set_message(format!("pull out {}", d.path));
            }
            BatchEvent::Removed(_) => {
                wall_end = watch.elapsed();
                virtual_end = virtual_clock
                    .as_ref()
                    .map(okey_token_sim::VirtualClock::now_ms);
            }
        },
    );
    bar.finish_and_clear();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => return Ok(report_error("the batch stopped", &e)),
    };
    let wall = if wall_end.is_zero() {
        watch.elapsed()
    } else {
        wall_end
    };
    print!("{}", batch_summary_text(&summary));
    let handled = summary.initialised.len() + summary.failed.len();
    let virtual_ms = match (virtual_start, virtual_end) {
        (Some(start), Some(end)) => Some(end.saturating_sub(start)),
        _ => None,
    };
    if handled > 0 {
        let wall_s = wall.as_secs_f64();
        let total_s = wall_s + virtual_ms.map_or(0.0, |ms| ms as f64 / 1000.0);
        let mut line = format!("time: {wall_s:.2} s on this host (server round trips)",);
        if let Some(ms) = virtual_ms {
            line.push_str(&format!(
                " + {:.1} s of simulated bench time (device commands, 3 s to plug, 2 s to pull)",
                ms as f64 / 1000.0
            ));
        }
        if total_s > 0.0 {
            line.push_str(&format!(
                "; {:.1} tokens per minute",
                handled as f64 * 60.0 / total_s
            ));
        }
        println!("{line}");
    }
    Ok(if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use okey_hid::Family;
    use okey_hid::bench::{BatchFailure, TokenIdentity};

    fn slot_args(kind: KindArg, slot: u8, yk: u8, digits: u32) -> SlotArgs {
        SlotArgs {
            kind,
            step: 30,
            digits,
            slot,
            yubikey_slot: yk,
        }
    }

    #[test]
    fn slot_arguments_are_checked() {
        let ok = slot_args(KindArg::Hotp, 2, 2, 8);
        assert_eq!(ok.nitrokey_slot().ok(), Some(Slot::Hotp(2)));
        assert_eq!(ok.yubikey_slot().ok(), Some(YkSlot::Two));
        assert_eq!(ok.digits().ok(), Some(Digits::Eight));
        assert!(slot_args(KindArg::Hotp, 3, 1, 6).nitrokey_slot().is_err());
        assert_eq!(
            slot_args(KindArg::Totp, 14, 1, 6).nitrokey_slot().ok(),
            Some(Slot::Totp(14))
        );
        assert!(slot_args(KindArg::Totp, 15, 1, 6).nitrokey_slot().is_err());
        assert!(slot_args(KindArg::Hotp, 0, 0, 6).yubikey_slot().is_err());
        assert!(slot_args(KindArg::Hotp, 0, 3, 6).yubikey_slot().is_err());
        assert!(slot_args(KindArg::Hotp, 0, 1, 7).digits().is_err());
        assert_eq!(
            slot_args(KindArg::Totp, 0, 1, 6).kind(),
            OtpKind::Totp { step: 30 }
        );
    }

    #[test]
    fn access_codes_and_pins_from_text() {
        assert!(access_code_of("", "x").is_ok_and(|a| a.is_none()));
        assert!(access_code_of("0a0b0c0d0e0f", "x").is_ok_and(|a| !a.is_none()));
        assert!(access_code_of("0a0b0c", "x").is_err());
        assert!(pin_of("", "x").is_err());
        assert!(pin_of("123456", "x").is_ok());
    }

    #[test]
    fn a_flag_or_environment_secret_is_taken_out_of_the_arguments() {
        let mut v = Some("12345678".to_owned());
        let s = secret(&mut v, "unused", None).expect("secret");
        assert_eq!(s.as_str(), "12345678");
        assert!(v.is_none());
        let d = secret(&mut None, "unused", Some("dflt")).expect("default");
        assert_eq!(d.as_str(), "dflt");
    }

    fn sim(nk: Option<usize>, yk: Option<usize>, pull: Vec<usize>) -> SimArgs {
        SimArgs {
            simulate: true,
            simulate_nitrokey: nk,
            simulate_yubikey: yk,
            simulate_serial_base: Some(0x10),
            simulate_pull: pull,
        }
    }

    #[test]
    fn the_simulated_bench_is_built_as_documented() {
        let mut s = sim(None, None, vec![])
            .build(0, true, YkSlot::One)
            .expect("bench");
        let devices = s.bench.enumerate().expect("enumerate");
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].family, Family::NitrokeyPro);
        assert_eq!(devices[0].path, "sim:nitrokey:00000010");
        let mut s = sim(Some(2), Some(1), vec![])
            .build(0, true, YkSlot::One)
            .expect("bench");
        let paths: Vec<String> = s
            .bench
            .enumerate()
            .expect("enumerate")
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(
            paths,
            [
                "sim:nitrokey:00000010",
                "sim:nitrokey:00000011",
                "sim:yubikey:18"
            ]
        );
        // Batch mode starts with nothing plugged in: the autopilot plugs the row.
        let mut s = sim(Some(2), None, vec![])
            .build(0, false, YkSlot::One)
            .expect("bench");
        assert!(s.bench.enumerate().expect("enumerate").is_empty());
        assert!(
            sim(Some(0), Some(0), vec![])
                .build(0, true, YkSlot::One)
                .is_err()
        );
        assert!(
            sim(Some(2), None, vec![3])
                .build(0, true, YkSlot::One)
                .is_err()
        );
        assert!(
            sim(Some(2), None, vec![0])
                .build(0, true, YkSlot::One)
                .is_err()
        );
        let mut big = sim(Some(2), None, vec![]);
        big.simulate_serial_base = Some(u32::MAX);
        assert!(big.build(0, true, YkSlot::One).is_err());
    }

    #[test]
    fn batch_summary_lists_successes_then_failures_with_advice() {
        let nk = TokenIdentity {
            family: Family::NitrokeyPro,
            serial: 0xAB,
        };
        let summary = BatchSummary {
            initialised: vec![InitReport {
                token: nk,
                slot: SlotRef::Nitrokey(Slot::Hotp(0)),
                kind: OtpKind::Hotp,
                device_counter: Some(1),
                clock_set_to: None,
            }],
            failed: vec![
                BatchFailure {
                    device: "sim:nitrokey:000000AC".into(),
                    token: Some(TokenIdentity {
                        family: Family::NitrokeyPro,
                        serial: 0xAC,
                    }),
                    error: "boom".into(),
                    advice: "do this".into(),
                    pulled_out: true,
                },
                BatchFailure {
                    device: "/dev/hidraw3".into(),
                    token: None,
                    error: "no answer".into(),
                    advice: "retry".into(),
                    pulled_out: false,
                },
            ],
        };
        assert_eq!(
            batch_summary_text(&summary),
            "batch: 1 initialised, 2 failed
  ok      NK-000000AB (HOTP slot 0)
  FAILED  NK-000000AC at sim:nitrokey:000000AC (pulled out): boom
          advice: do this
  FAILED  /dev/hidraw3: no answer
          advice: retry
"
        );
    }
}
