//! Technician workflows on the USB bench: `list`, `init`, `pin`, `resync` and batch
//! initialisation. The `okey hid ...` commands are thin wrappers around these functions.
//!
//! The server is reached through [`Registry`] (plain blocking methods; the CLI implements it
//! over gRPC). Time is always a parameter: single operations take the host's Unix time, batch
//! mode asks a [`HostClock`]. A YubiKey cannot report its codes over HID, so reading one means
//! asking the technician to touch the key ([`TouchSource`]); the simulator implements that
//! trait by emulating the touch.
//!
//! **No half-initialised token**: once the server has released a seed, every failure erases
//! the slot (Nitrokey `ERASE_SLOT`, YubiKey delete) and tells the server to abort, so the token
//! stays inactive; the error says what was cleaned up and what the technician should do.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

use crate::nitrokey::{
    CommandStatus, Generation, NitrokeyError, NitrokeyPro, Slot, SlotConfig, SlotWrite, TimeMode,
};
use crate::secret::{AccessCode, Digits, OtpCode, OtpSecret, Pin};
use crate::transport::{
    BoxedTransport, DeviceEvent, DeviceInfo, DeviceProvider, DiscoveryError, Family,
};
use crate::yubikey::proto::{ext, tkt};
use crate::yubikey::{HotpConfig, IdEncoding, YkSlot, YubiKeyError, YubiKeyOtp};

/// The identity under which the server knows a hardware token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenIdentity {
    /// Device family.
    pub family: Family,
    /// Nitrokey: smart-card serial (GET_STATUS); YubiKey: serial number.
    pub serial: u32,
}

impl fmt::Display for TokenIdentity {
    /// `NK-0000A1B2` (hex, as Nitrokey tools print card serials) or `YK-12345678` (decimal, as
    /// printed on YubiKeys).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.family {
            Family::NitrokeyPro => write!(f, "NK-{:08X}", self.serial),
            Family::YubiKeyOtp => write!(f, "YK-{}", self.serial),
        }
    }
}

/// HOTP or TOTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtpKind {
    /// Counter based (RFC 4226).
    Hotp,
    /// Time based (RFC 6238) with this step in seconds.
    Totp {
        /// Time step in seconds.
        step: u32,
    },
}

/// A slot on either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotRef {
    /// A Nitrokey HOTP/TOTP slot.
    Nitrokey(Slot),
    /// A YubiKey OTP configuration.
    YubiKey(YkSlot),
}

impl fmt::Display for SlotRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nitrokey(s) => s.fmt(f),
            Self::YubiKey(s) => write!(f, "YubiKey {s}"),
        }
    }
}

/// What the bench asks the server for when it starts initialising a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitRequest {
    /// The token.
    pub token: TokenIdentity,
    /// HOTP or TOTP.
    pub kind: OtpKind,
    /// Code length.
    pub digits: Digits,
    /// Where the seed will be written.
    pub slot: SlotRef,
    /// Longest seed the device stores (20 or 40 bytes).
    pub max_secret_len: usize,
    /// The device can only start HOTP at a multiple of this (YubiKey: 16).
    pub counter_multiple_of: u64,
}

/// What the server releases, once, for a token in the "initialising" state.
#[derive(Debug)]
pub struct IssuedSeed {
    /// The seed. Zeroized on drop; the workflow wipes it as soon as it is written.
    pub secret: OtpSecret,
    /// HOTP or TOTP (must match the request).
    pub kind: OtpKind,
    /// Code length (must match the request).
    pub digits: Digits,
    /// HOTP: the counter of the first code; ignored for TOTP.
    pub initial_counter: u64,
}

/// The server refused or could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    /// The server answered no (wrong state, code rejected, not allowed...).
    #[error("server refused: {0}")]
    Refused(String),
    /// The server could not be reached or failed.
    #[error("server unavailable: {0}")]
    Unavailable(String),
}

/// The server side of the bench workflows. Methods block; the CLI implements them over gRPC.
pub trait Registry {
    /// Creates (or finds) the token in the "initialising" state and releases its seed once.
    fn begin_init(&mut self, request: &InitRequest) -> Result<IssuedSeed, RegistryError>;

    /// Verifies a code read from the freshly written device; on success the token becomes
    /// active. `host_time` is the host's Unix time (used for TOTP).
    fn confirm_init(
        &mut self,
        token: &TokenIdentity,
        code: &OtpCode,
        host_time: u64,
    ) -> Result<(), RegistryError>;

    /// Abandons an initialisation: the token stays inactive and the released seed is void.
    fn abort_init(&mut self, token: &TokenIdentity, reason: &str) -> Result<(), RegistryError>;

    /// The server's next expected HOTP counter for the token.
    fn hotp_counter(&mut self, token: &TokenIdentity) -> Result<u64, RegistryError>;

    /// Server-side HOTP resynchronisation with two consecutive device codes; returns the
    /// server's new next counter.
    fn resync_hotp(
        &mut self,
        token: &TokenIdentity,
        first: &OtpCode,
        second: &OtpCode,
    ) -> Result<u64, RegistryError>;

    /// Records the drift of a TOTP token's clock from one code the device produced at
    /// `host_time`; returns the drift in time steps (device minus host).
    fn record_drift(
        &mut self,
        token: &TokenIdentity,
        code: &OtpCode,
        host_time: u64,
    ) -> Result<i64, RegistryError>;
}

/// The host's UTC clock, as seen by batch mode (the CLI implements it in its clock module).
pub trait HostClock {
    /// Unix time in seconds.
    fn unix_now(&mut self) -> u64;
}

/// Gets a code out of a YubiKey: the key types it when touched, so a person (or the
/// simulator) must touch it.
pub trait TouchSource {
    /// Asks for a touch of `slot` on `device` and returns the code it typed.
    fn read_touch_code(&mut self, device: &DeviceInfo, slot: YkSlot) -> Result<OtpCode, String>;
}

/// Which step of an initialisation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitStage {
    /// Before the server released anything.
    Prepare,
    /// Asking the server for the seed.
    BeginInit,
    /// Writing the slot.
    Write,
    /// Setting the TOTP clock.
    SetTime,
    /// Reading the slot or a code back.
    ReadBack,
    /// The server's verification of the code.
    Confirm,
}

/// What was done to undo a failed initialisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// The slot was erased (or never written).
    pub slot_clear: bool,
    /// The server was told to abort (or never released a seed).
    pub server_aborted: bool,
    /// Problems met while cleaning up.
    pub problems: Vec<String>,
}

/// A bench workflow failed.
#[derive(Debug, Error)]
pub enum BenchError {
    /// Nitrokey driver error.
    #[error("Nitrokey: {0}")]
    Nitrokey(#[from] NitrokeyError),
    /// YubiKey driver error.
    #[error("YubiKey: {0}")]
    YubiKey(#[from] YubiKeyError),
    /// Server error.
    #[error("{0}")]
    Registry(#[from] RegistryError),
    /// Device discovery or open failed.
    #[error("{0}")]
    Discovery(#[from] DiscoveryError),
    /// No code could be obtained by touch.
    #[error("no code from touch: {0}")]
    Touch(String),
    /// The target slot already holds a configuration.
    #[error("{slot} already holds a configuration")]
    SlotInUse {
        /// The slot.
        slot: SlotRef,
    },
    /// The device family cannot do this.
    #[error("not possible on a {family}: {what}")]
    Unsupported {
        /// Family.
        family: Family,
        /// What was asked.
        what: &'static str,
    },
    /// A parameter is inconsistent.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The slot did not read back as written.
    #[error("the slot did not read back as written ({0})")]
    ReadBackMismatch(&'static str),
    /// An initialisation failed after the server released the seed; cleanup was attempted.
    #[error("initialisation of {token} failed at {stage:?}: {cause}")]
    InitFailed {
        /// The token.
        token: TokenIdentity,
        /// Failed step.
        stage: InitStage,
        /// Underlying error.
        cause: Box<BenchError>,
        /// What was undone.
        cleanup: Cleanup,
    },
}

impl BenchError {
    /// True when the device disappeared during the operation.
    pub fn is_disconnected(&self) -> bool {
        match self {
            Self::Nitrokey(e) => e.is_disconnected(),
            Self::YubiKey(e) => e.is_disconnected(),
            Self::InitFailed { cause, .. } => cause.is_disconnected(),
            _ => false,
        }
    }

    /// One or two sentences telling the technician what to do next.
    pub fn advice(&self) -> String {
        match self {
            Self::InitFailed {
                cause,
                cleanup,
                stage,
                ..
            } => {
                // Once the slot has been written, "nothing was written" is no longer true: the
                // cleanup sentences below say what state the token and the server are in.
                let written = matches!(
                    stage,
                    InitStage::Write | InitStage::SetTime | InitStage::ReadBack | InitStage::Confirm
                );
                let mut s = match &**cause {
                    Self::Registry(RegistryError::Unavailable(_)) if written => {
                        "The server could not be reached after the token was written.".into()
                    }
                    other => other.advice(),
                };
                if cleanup.slot_clear && cleanup.server_aborted {
                    s.push_str(
                        " Nothing was left half-done: the slot is empty and the token stays inactive on the server; run init again.",
                    );
                } else {
                    if !cleanup.slot_clear {
                        s.push_str(
                            " The slot could not be erased: erase it (or factory-reset the token) before reusing it.",
                        );
                    }
                    if !cleanup.server_aborted {
                        s.push_str(
                            " The server could not be told to abort: make sure the token is not active before handing it out.",
                        );
                    }
                }
                s
            }
            e if e.is_disconnected() => {
                "The token was unplugged during the operation. Plug it back in and start again.".into()
            }
            Self::Nitrokey(NitrokeyError::Command { status, .. }) => match status {
                CommandStatus::WrongPassword => {
                    "Wrong PIN. Check the PIN and the remaining tries (`okey hid pin --show`) before trying again; at 0 tries the PIN is blocked.".into()
                }
                CommandStatus::ErrorChangingUserPassword
                | CommandStatus::ErrorChangingAdminPassword
                | CommandStatus::ErrorUnblockingPin => {
                    "The token refused the new PIN: user PINs need at least 6 characters, admin PINs at least 8.".into()
                }
                CommandStatus::NotAuthorized => {
                    "The token lost its authorisation (unplugged or re-authenticated elsewhere). Start the operation again.".into()
                }
                CommandStatus::SlotNotProgrammed => {
                    "That slot is empty on the token: initialise it first.".into()
                }
                _ => format!("The token reported: {status}. Retry once; if it repeats, set the token aside."),
            },
            Self::Nitrokey(_) | Self::YubiKey(YubiKeyError::Busy(_) | YubiKeyError::NoResponse(_)) => {
                "The token did not answer properly. Unplug it, plug it back in and retry; if it repeats, set it aside.".into()
            }
            Self::YubiKey(YubiKeyError::Rejected(_)) => {
                "The YubiKey refused the write without giving a reason: check the access code of that slot, then retry.".into()
            }
            Self::YubiKey(_) => {
                "The YubiKey could not complete the operation. Unplug it, plug it back in and retry.".into()
            }
            Self::Registry(RegistryError::Refused(_)) => {
                "The server refused: check that the token is registered and in the 'initialising' state for your site.".into()
            }
            Self::Registry(RegistryError::Unavailable(_)) => {
                "The server could not be reached. Check the network and retry; nothing was written.".into()
            }
            Self::Discovery(_) => {
                "The token could not be opened: check the USB connection and the udev permissions.".into()
            }
            Self::Touch(_) => "Touch the key when asked, within the time given.".into(),
            Self::SlotInUse { .. } => {
                "The slot is already programmed: choose another slot, or pass the overwrite option if the old contents are void.".into()
            }
            Self::Unsupported { .. } | Self::InvalidArgument(_) => {
                "Correct the request and try again.".into()
            }
            Self::ReadBackMismatch(_) => {
                "The token did not keep what was written: set it aside as faulty.".into()
            }
        }
    }
}

/// PIN retry counters of a Nitrokey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryCounters {
    /// User PIN tries left.
    pub user: u8,
    /// Admin PIN tries left.
    pub admin: u8,
}

/// One line of `okey hid list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    /// USB identity.
    pub info: DeviceInfo,
    /// Identity, when the device answered.
    pub token: Option<TokenIdentity>,
    /// Firmware version text.
    pub firmware: Option<String>,
    /// Slots holding a configuration.
    pub slots_in_use: Vec<SlotRef>,
    /// Nitrokey PIN retry counters.
    pub retry_counters: Option<RetryCounters>,
    /// Why the device could not be read, if it could not.
    pub error: Option<String>,
}

/// `okey hid list`: every supported device with family, firmware, serial and used slots. A
/// device that cannot be read is listed with its error.
pub fn list(provider: &mut dyn DeviceProvider) -> Result<Vec<DeviceSummary>, BenchError> {
    let mut out = Vec::new();
    for info in provider.enumerate()? {
        let mut summary = DeviceSummary {
            info: info.clone(),
            token: None,
            firmware: None,
            slots_in_use: Vec::new(),
            retry_counters: None,
            error: None,
        };
        if let Err(e) = describe(provider, &info, &mut summary) {
            summary.error = Some(e.to_string());
        }
        out.push(summary);
    }
    Ok(out)
}

fn describe(
    provider: &mut dyn DeviceProvider,
    info: &DeviceInfo,
    summary: &mut DeviceSummary,
) -> Result<(), BenchError> {
    let transport = provider.open(info)?;
    match info.family {
        Family::NitrokeyPro => {
            let mut nk = NitrokeyPro::open(transport)?;
            summary.firmware = Some(nk.firmware().to_string());
            summary.token = Some(TokenIdentity {
                family: Family::NitrokeyPro,
                serial: nk.card_serial(),
            });
            summary.slots_in_use = nk
                .programmed_slots()?
                .into_iter()
                .map(|(s, _)| SlotRef::Nitrokey(s))
                .collect();
            summary.retry_counters = Some(RetryCounters {
                user: nk.user_retry_count()?,
                admin: nk.admin_retry_count()?,
            });
        }
        Family::YubiKeyOtp => {
            let mut yk = YubiKeyOtp::open(transport)?;
            let status = yk.status()?;
            summary.firmware = Some(status.version.to_string());
            for slot in [YkSlot::One, YkSlot::Two] {
                if status.slot_valid(slot) {
                    summary.slots_in_use.push(SlotRef::YubiKey(slot));
                }
            }
            summary.token = Some(TokenIdentity {
                family: Family::YubiKeyOtp,
                serial: yk.serial()?,
            });
        }
    }
    Ok(())
}

/// Settings of an initialisation.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// HOTP or TOTP (a YubiKey only does HOTP).
    pub kind: OtpKind,
    /// Code length.
    pub digits: Digits,
    /// Nitrokey slot to write.
    pub nitrokey_slot: Slot,
    /// Nitrokey slot name (1..=15 bytes).
    pub slot_name: String,
    /// Nitrokey admin PIN (needed to write and erase slots).
    pub admin_pin: Pin,
    /// Nitrokey user PIN, needed to read a code only if the token requires it.
    pub user_pin: Option<Pin>,
    /// YubiKey configuration to write.
    pub yubikey_slot: YkSlot,
    /// YubiKey: the slot's current access code (none for a fresh key).
    pub access_code: AccessCode,
    /// YubiKey: the access code protecting the slot afterwards.
    pub new_access_code: AccessCode,
    /// Overwrite a slot that already holds a configuration.
    pub overwrite: bool,
}

/// A successful initialisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// The token, now active on the server.
    pub token: TokenIdentity,
    /// Slot written.
    pub slot: SlotRef,
    /// HOTP or TOTP.
    pub kind: OtpKind,
    /// HOTP: the device's next counter after the verification code.
    pub device_counter: Option<u64>,
    /// TOTP: the time the device clock was set to.
    pub clock_set_to: Option<u64>,
}

/// `okey hid init` on one device: take a seed from the server, write it, read a code back and
/// have the server confirm it. See the module documentation for the failure guarantees.
pub fn init(
    provider: &mut dyn DeviceProvider,
    device: &DeviceInfo,
    registry: &mut dyn Registry,
    touch: &mut dyn TouchSource,
    options: &InitOptions,
    host_time: u64,
) -> Result<InitReport, BenchError> {
    let transport = provider.open(device)?;
    match device.family {
        Family::NitrokeyPro => init_nitrokey(transport, registry, options, host_time),
        Family::YubiKeyOtp => init_yubikey(transport, device, registry, touch, options, host_time),
    }
}

fn check_issued(request: &InitRequest, seed: &IssuedSeed) -> Result<(), BenchError> {
    if seed.kind != request.kind || seed.digits != request.digits {
        return Err(BenchError::InvalidArgument(
            "the server issued a seed of another kind or length than requested".into(),
        ));
    }
    if seed.secret.is_empty() || seed.secret.len() > request.max_secret_len {
        return Err(BenchError::InvalidArgument(format!(
            "the server issued a {}-byte seed; this device stores 1 to {} bytes",
            seed.secret.len(),
            request.max_secret_len
        )));
    }
    if request.kind == OtpKind::Hotp
        && !seed
            .initial_counter
            .is_multiple_of(request.counter_multiple_of)
    {
        return Err(BenchError::InvalidArgument(format!(
            "the server's initial counter is not a multiple of {}",
            request.counter_multiple_of
        )));
    }
    Ok(())
}

fn fail(token: TokenIdentity, stage: InitStage, cause: BenchError, cleanup: Cleanup) -> BenchError {
    BenchError::InitFailed {
        token,
        stage,
        cause: Box::new(cause),
        cleanup,
    }
}

fn abort(registry: &mut dyn Registry, token: &TokenIdentity, reason: &str, c: &mut Cleanup) {
    match registry.abort_init(token, reason) {
        Ok(()) => c.server_aborted = true,
        Err(e) => c.problems.push(format!("server abort failed: {e}")),
    }
}

fn init_nitrokey(
    transport: BoxedTransport,
    registry: &mut dyn Registry,
    o: &InitOptions,
    host_time: u64,
) -> Result<InitReport, BenchError> {
    let mut nk = NitrokeyPro::open(transport)?;
    let token = TokenIdentity {
        family: Family::NitrokeyPro,
        serial: nk.card_serial(),
    };
    let slot = o.nitrokey_slot;
    match (o.kind, slot) {
        (OtpKind::Hotp, Slot::Hotp(_)) | (OtpKind::Totp { .. }, Slot::Totp(_)) => {}
        _ => {
            return Err(BenchError::InvalidArgument(
                "HOTP seeds go to HOTP slots and TOTP seeds to TOTP slots".into(),
            ));
        }
    }
    if let OtpKind::Totp { step: 0 } = o.kind {
        return Err(BenchError::InvalidArgument(
            "TOTP step must not be 0".into(),
        ));
    }
    match nk.read_slot(slot) {
        Ok(_) if !o.overwrite => {
            return Err(BenchError::SlotInUse {
                slot: SlotRef::Nitrokey(slot),
            });
        }
        Ok(_) => {}
        Err(e) if e.command_status() == Some(CommandStatus::SlotNotProgrammed) => {}
        Err(e) => return Err(e.into()),
    }
    // Check the admin PIN before anything is asked of the server.
    drop(nk.admin(&o.admin_pin)?);
    let legacy = nk.firmware().generation() == Generation::Authorize;
    let request = InitRequest {
        token,
        kind: o.kind,
        digits: o.digits,
        slot: SlotRef::Nitrokey(slot),
        max_secret_len: if legacy { 20 } else { 40 },
        counter_multiple_of: 1,
    };
    let mut seed = registry.begin_init(&request)?;
    let mut cleanup = Cleanup {
        slot_clear: true,
        server_aborted: false,
        problems: Vec::new(),
    };
    if let Err(e) = check_issued(&request, &seed) {
        drop(seed);
        abort(
            registry,
            &token,
            "seed does not fit the request",
            &mut cleanup,
        );
        return Err(fail(token, InitStage::BeginInit, e, cleanup));
    }
    let counter_or_step = match o.kind {
        OtpKind::Hotp => seed.initial_counter,
        OtpKind::Totp { step } => u64::from(step),
    };
    let write = SlotWrite {
        name: &o.slot_name,
        secret: &seed.secret,
        counter_or_step,
        config: SlotConfig {
            eight_digits: o.digits == Digits::Eight,
            send_enter: false,
            send_token_id: false,
        },
        token_id: [0; 13],
    };
    let written = nk
        .admin(&o.admin_pin)
        .and_then(|mut admin| admin.write_slot(slot, &write));
    // The seed is on the device (or nowhere): wipe the bench's copy now.
    seed.secret.wipe();
    drop(seed);
    let steps = (|| -> Result<InitReport, (InitStage, BenchError)> {
        written.map_err(|e| (InitStage::Write, e.into()))?;
        let mut clock_set_to = None;
        if let OtpKind::Totp { .. } = o.kind {
            nk.set_time(TimeMode::Force, host_time)
                .map_err(|e| (InitStage::SetTime, e.into()))?;
            clock_set_to = Some(host_time);
        }
        let info = nk
            .read_slot(slot)
            .map_err(|e| (InitStage::ReadBack, e.into()))?;
        if info.name != o.slot_name
            || info.counter_or_step != counter_or_step
            || info.config.eight_digits != (o.digits == Digits::Eight)
        {
            return Err((
                InitStage::ReadBack,
                BenchError::ReadBackMismatch("name, counter or digits"),
            ));
        }
        let code = nk
            .get_code(slot, o.user_pin.as_ref())
            .map_err(|e| (InitStage::ReadBack, e.into()))?;
        registry
            .confirm_init(&token, &code, host_time)
            .map_err(|e| (InitStage::Confirm, e.into()))?;
        Ok(InitReport {
            token,
            slot: SlotRef::Nitrokey(slot),
            kind: o.kind,
            device_counter: (o.kind == OtpKind::Hotp).then_some(counter_or_step + 1),
            clock_set_to,
        })
    })();
    match steps {
        Ok(r) => Ok(r),
        Err((stage, cause)) => {
            tracing::warn!(%token, ?stage, error = %cause, "initialisation failed, cleaning up");
            cleanup.slot_clear = false;
            match nk
                .admin(&o.admin_pin)
                .and_then(|mut admin| admin.erase_slot(slot))
            {
                Ok(()) => cleanup.slot_clear = true,
                Err(e) => cleanup.problems.push(format!("erasing {slot} failed: {e}")),
            }
            abort(registry, &token, &cause.to_string(), &mut cleanup);
            Err(fail(token, stage, cause, cleanup))
        }
    }
}

/// extFlags the bench writes: serial readable over the API (needed to identify the token),
/// later UPDATEs allowed (access-code changes), fast trigger (ykman's keyboard default).
const BENCH_EXT_FLAGS: u8 = ext::SERIAL_API_VISIBLE | ext::ALLOW_UPDATE | ext::FAST_TRIG;
/// tktFlags the bench writes besides OATH_HOTP: Enter after the code.
const BENCH_TKT_FLAGS: u8 = tkt::APPEND_CR;

fn init_yubikey(
    transport: BoxedTransport,
    device: &DeviceInfo,
    registry: &mut dyn Registry,
    touch: &mut dyn TouchSource,
    o: &InitOptions,
    host_time: u64,
) -> Result<InitReport, BenchError> {
    if o.kind != OtpKind::Hotp {
        return Err(BenchError::Unsupported {
            family: Family::YubiKeyOtp,
            what: "TOTP (the OTP application has no clock)",
        });
    }
    let mut yk = YubiKeyOtp::open(transport)?;
    let status = yk.status()?;
    let token = TokenIdentity {
        family: Family::YubiKeyOtp,
        serial: yk.serial()?,
    };
    let slot = o.yubikey_slot;
    if status.slot_valid(slot) && !o.overwrite {
        return Err(BenchError::SlotInUse {
            slot: SlotRef::YubiKey(slot),
        });
    }
    let request = InitRequest {
        token,
        kind: OtpKind::Hotp,
        digits: o.digits,
        slot: SlotRef::YubiKey(slot),
        max_secret_len: crate::yubikey::proto::HOTP_KEY_LEN,
        counter_multiple_of: 16,
    };
    let mut seed = registry.begin_init(&request)?;
    let mut cleanup = Cleanup {
        slot_clear: true,
        server_aborted: false,
        problems: Vec::new(),
    };
    let imf = u32::try_from(seed.initial_counter).unwrap_or(u32::MAX);
    let checked = check_issued(&request, &seed).and_then(|()| {
        if imf > crate::yubikey::proto::MAX_IMF {
            Err(BenchError::InvalidArgument(
                "initial counter above the YubiKey maximum 1048560".into(),
            ))
        } else {
            Ok(())
        }
    });
    if let Err(e) = checked {
        drop(seed);
        abort(
            registry,
            &token,
            "seed does not fit the request",
            &mut cleanup,
        );
        return Err(fail(token, InitStage::BeginInit, e, cleanup));
    }
    let config = HotpConfig {
        secret: &seed.secret,
        digits: o.digits,
        imf,
        token_id: &[],
        id_encoding: IdEncoding::None,
        append_cr: BENCH_TKT_FLAGS & tkt::APPEND_CR != 0,
        ext_flags: BENCH_EXT_FLAGS,
        new_access_code: &o.new_access_code,
    };
    let written = yk.program_hotp(slot, &config, &o.access_code);
    seed.secret.wipe();
    drop(seed);
    let steps = (|| -> Result<InitReport, (InitStage, BenchError)> {
        written.map_err(|e| (InitStage::Write, e.into()))?;
        let code = touch
            .read_touch_code(device, slot)
            .map_err(|e| (InitStage::ReadBack, BenchError::Touch(e)))?;
        registry
            .confirm_init(&token, &code, host_time)
            .map_err(|e| (InitStage::Confirm, e.into()))?;
        Ok(InitReport {
            token,
            slot: SlotRef::YubiKey(slot),
            kind: OtpKind::Hotp,
            device_counter: Some(u64::from(imf) + 1),
            clock_set_to: None,
        })
    })();
    match steps {
        Ok(r) => Ok(r),
        Err((stage, cause)) => {
            tracing::warn!(%token, ?stage, error = %cause, "initialisation failed, cleaning up");
            // A write that failed may or may not have landed: delete with the code that would
            // protect it now, then with the old one.
            cleanup.slot_clear = false;
            let deleted = match yk.status() {
                Ok(s) if !s.slot_valid(slot) => Ok(()),
                _ => yk
                    .delete_slot(slot, &o.new_access_code)
                    .or_else(|_| yk.delete_slot(slot, &o.access_code)),
            };
            match deleted {
                Ok(()) => cleanup.slot_clear = true,
                Err(e) => cleanup
                    .problems
                    .push(format!("deleting {slot} failed: {e}")),
            }
            abort(registry, &token, &cause.to_string(), &mut cleanup);
            Err(fail(token, stage, cause, cleanup))
        }
    }
}

/// A PIN operation.
#[derive(Debug, Clone)]
pub enum PinAction {
    /// Show the retry counters only.
    ShowCounters,
    /// Change the Nitrokey user PIN.
    ChangeUser {
        /// Current PIN.
        old: Pin,
        /// New PIN (at least 6 characters).
        new: Pin,
    },
    /// Change the Nitrokey admin PIN.
    ChangeAdmin {
        /// Current PIN.
        old: Pin,
        /// New PIN (at least 8 characters).
        new: Pin,
    },
    /// Unblock the Nitrokey user PIN with the admin PIN, setting a new user PIN.
    UnlockUser {
        /// Admin PIN.
        admin: Pin,
        /// New user PIN.
        new_user: Pin,
    },
    /// Change, set or remove (new = none) the access code of a YubiKey slot written by the bench.
    ChangeAccessCode {
        /// Slot.
        slot: YkSlot,
        /// Current access code.
        current: AccessCode,
        /// New access code.
        new: AccessCode,
    },
}

/// Outcome of `okey hid pin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinReport {
    /// The token.
    pub token: TokenIdentity,
    /// Nitrokey retry counters before the operation.
    pub before: Option<RetryCounters>,
    /// Nitrokey retry counters after it (also shown when it failed).
    pub after: Option<RetryCounters>,
}

fn counters<T: crate::transport::Transport>(
    nk: &mut NitrokeyPro<T>,
) -> Result<RetryCounters, NitrokeyError> {
    Ok(RetryCounters {
        user: nk.user_retry_count()?,
        admin: nk.admin_retry_count()?,
    })
}

/// `okey hid pin`: PIN changes, user PIN unblocking, retry counters, YubiKey access codes.
/// On a PIN error the returned error is accompanied by the counters through
/// [`PinFailure::after`], so the technician sees how many tries remain.
pub fn pin(
    provider: &mut dyn DeviceProvider,
    device: &DeviceInfo,
    action: &PinAction,
) -> Result<PinReport, PinFailure> {
    let transport = provider.open(device).map_err(|e| PinFailure {
        error: e.into(),
        after: None,
    })?;
    match device.family {
        Family::NitrokeyPro => {
            let mut nk = NitrokeyPro::open(transport).map_err(|e| PinFailure {
                error: e.into(),
                after: None,
            })?;
            let token = TokenIdentity {
                family: Family::NitrokeyPro,
                serial: nk.card_serial(),
            };
            let before = counters(&mut nk).map_err(|e| PinFailure {
                error: e.into(),
                after: None,
            })?;
            let result = match action {
                PinAction::ShowCounters => Ok(()),
                PinAction::ChangeUser { old, new } => nk.change_user_pin(old, new),
                PinAction::ChangeAdmin { old, new } => nk.change_admin_pin(old, new),
                PinAction::UnlockUser { admin, new_user } => nk.unlock_user_pin(admin, new_user),
                PinAction::ChangeAccessCode { .. } => {
                    return Err(PinFailure {
                        error: BenchError::Unsupported {
                            family: Family::NitrokeyPro,
                            what: "access codes (use the PIN actions)",
                        },
                        after: Some(before),
                    });
                }
            };
            let after = counters(&mut nk).ok();
            match result {
                Ok(()) => Ok(PinReport {
                    token,
                    before: Some(before),
                    after,
                }),
                Err(e) => Err(PinFailure {
                    error: e.into(),
                    after,
                }),
            }
        }
        Family::YubiKeyOtp => {
            let fail = |e: YubiKeyError| PinFailure {
                error: e.into(),
                after: None,
            };
            let mut yk = YubiKeyOtp::open(transport).map_err(fail)?;
            let token = TokenIdentity {
                family: Family::YubiKeyOtp,
                serial: yk.serial().map_err(fail)?,
            };
            match action {
                PinAction::ChangeAccessCode { slot, current, new } => {
                    yk.change_access_code(
                        *slot,
                        (BENCH_EXT_FLAGS, BENCH_TKT_FLAGS, 0),
                        current,
                        new,
                    )
                    .map_err(fail)?;
                    Ok(PinReport {
                        token,
                        before: None,
                        after: None,
                    })
                }
                PinAction::ShowCounters => Ok(PinReport {
                    token,
                    before: None,
                    after: None,
                }),
                _ => Err(PinFailure {
                    error: BenchError::Unsupported {
                        family: Family::YubiKeyOtp,
                        what: "PINs (the OTP application only has access codes)",
                    },
                    after: None,
                }),
            }
        }
    }
}

/// A failed PIN operation, with the retry counters read afterwards when possible.
#[derive(Debug, Error)]
#[error("{error}")]
pub struct PinFailure {
    /// What failed.
    pub error: BenchError,
    /// Counters after the failure.
    pub after: Option<RetryCounters>,
}

/// Settings of a resynchronisation.
#[derive(Debug, Clone)]
pub struct ResyncOptions {
    /// Nitrokey slot holding the token's seed.
    pub nitrokey_slot: Slot,
    /// YubiKey slot holding the token's seed.
    pub yubikey_slot: YkSlot,
    /// Nitrokey admin PIN: lets the bench move a lagging device counter by rewriting the slot
    /// (firmware >= 0.8). Without it the counter is stepped with GET_CODE.
    pub admin_pin: Option<Pin>,
    /// Nitrokey user PIN, if codes require it.
    pub user_pin: Option<Pin>,
    /// Most codes generated to step a lagging device counter forward.
    pub max_step_forward: u64,
}

/// What a resynchronisation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResyncOutcome {
    /// Server and device already agreed.
    InStep {
        /// Common next counter.
        counter: u64,
    },
    /// The server was behind and moved forward.
    ServerAdvanced {
        /// Server's counter before.
        from: u64,
        /// Server's counter after.
        to: u64,
    },
    /// The device was behind and moved forward.
    DeviceAdvanced {
        /// Device's counter before.
        from: u64,
        /// Device's counter after.
        to: u64,
    },
    /// A TOTP device clock was set; its drift was recorded on the server.
    ClockSet {
        /// Drift found, in time steps (device minus host).
        drift_steps: i64,
        /// The time the clock was set to.
        set_to: u64,
    },
}

/// `okey hid resync` on one device.
pub fn resync(
    provider: &mut dyn DeviceProvider,
    device: &DeviceInfo,
    registry: &mut dyn Registry,
    touch: &mut dyn TouchSource,
    options: &ResyncOptions,
    host_time: u64,
) -> Result<(TokenIdentity, ResyncOutcome), BenchError> {
    let transport = provider.open(device)?;
    match device.family {
        Family::NitrokeyPro => {
            let mut nk = NitrokeyPro::open(transport)?;
            let token = TokenIdentity {
                family: Family::NitrokeyPro,
                serial: nk.card_serial(),
            };
            let outcome = resync_nitrokey(&mut nk, &token, registry, options, host_time)?;
            Ok((token, outcome))
        }
        Family::YubiKeyOtp => {
            let mut yk = YubiKeyOtp::open(transport)?;
            let token = TokenIdentity {
                family: Family::YubiKeyOtp,
                serial: yk.serial()?,
            };
            let from = registry.hotp_counter(&token)?;
            let first = touch
                .read_touch_code(device, options.yubikey_slot)
                .map_err(BenchError::Touch)?;
            let second = touch
                .read_touch_code(device, options.yubikey_slot)
                .map_err(BenchError::Touch)?;
            let to = registry.resync_hotp(&token, &first, &second)?;
            Ok((token, ResyncOutcome::ServerAdvanced { from, to }))
        }
    }
}

fn resync_nitrokey(
    nk: &mut NitrokeyPro<BoxedTransport>,
    token: &TokenIdentity,
    registry: &mut dyn Registry,
    o: &ResyncOptions,
    host_time: u64,
) -> Result<ResyncOutcome, BenchError> {
    let slot = o.nitrokey_slot;
    let info = nk.read_slot(slot)?;
    if let Slot::Totp(_) = slot {
        // The device clock is RAM-only and drifts: measure with one code, then set it.
        let code = nk.get_code(slot, o.user_pin.as_ref())?;
        let drift_steps = registry.record_drift(token, &code, host_time)?;
        nk.set_time(TimeMode::Force, host_time)?;
        return Ok(ResyncOutcome::ClockSet {
            drift_steps,
            set_to: host_time,
        });
    }
    let device = info.counter_or_step;
    let server = registry.hotp_counter(token)?;
    if device == server {
        return Ok(ResyncOutcome::InStep { counter: device });
    }
    if device > server {
        let first = nk.get_code(slot, o.user_pin.as_ref())?;
        let second = nk.get_code(slot, o.user_pin.as_ref())?;
        let to = registry.resync_hotp(token, &first, &second)?;
        return Ok(ResyncOutcome::ServerAdvanced { from: server, to });
    }
    // The device is behind the server.
    let inline = nk.firmware().generation() == Generation::InlinePassword;
    match (&o.admin_pin, inline) {
        (Some(admin_pin), true) => {
            // Rewrite with an empty secret: the firmware keeps the stored one (fact sheet 1.9).
            let keep = OtpSecret::new(Vec::new())
                .map_err(|e| BenchError::InvalidArgument(e.to_string()))?;
            let write = SlotWrite {
                name: &info.name,
                secret: &keep,
                counter_or_step: server,
                config: info.config,
                token_id: info.token_id,
            };
            nk.admin(admin_pin)?.write_slot(slot, &write)?;
        }
        _ => {
            let gap = server - device;
            if gap > o.max_step_forward {
                return Err(BenchError::InvalidArgument(format!(
                    "the device is {gap} counts behind the server; stepping is limited to {} (give the admin PIN to rewrite the counter)",
                    o.max_step_forward
                )));
            }
            for _ in 0..gap {
                nk.get_code(slot, o.user_pin.as_ref())?;
            }
        }
    }
    let after = nk.read_slot(slot)?.counter_or_step;
    if after != server {
        return Err(BenchError::ReadBackMismatch("HOTP counter after resync"));
    }
    Ok(ResyncOutcome::DeviceAdvanced {
        from: device,
        to: after,
    })
}

/// Settings of a batch run.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Initialisation settings applied to every token.
    pub init: InitOptions,
    /// Stop after this many tokens (successful or not); `None` = until idle.
    pub limit: Option<usize>,
    /// Stop when no token is plugged in for this long.
    pub idle_timeout: Duration,
    /// How long to wait for the technician to pull a finished token.
    pub removal_timeout: Duration,
}

/// Progress of a batch run, for the CLI's display.
#[derive(Debug)]
pub enum BatchEvent<'a> {
    /// Waiting for the next token.
    WaitingForToken {
        /// Tokens handled so far.
        done: usize,
    },
    /// A token was plugged in.
    Plugged(&'a DeviceInfo),
    /// A token was initialised.
    Initialised(&'a InitReport),
    /// A token failed; the error carries the advice.
    Failed {
        /// Device.
        device: &'a DeviceInfo,
        /// Error.
        error: &'a BenchError,
    },
    /// Waiting for the technician to pull the token.
    WaitingForRemoval(&'a DeviceInfo),
    /// The token was pulled.
    Removed(&'a DeviceInfo),
}

/// One failed token in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFailure {
    /// Device path.
    pub device: String,
    /// Token identity, when it was read.
    pub token: Option<TokenIdentity>,
    /// Error text.
    pub error: String,
    /// What to do.
    pub advice: String,
    /// The device was pulled out during its initialisation.
    pub pulled_out: bool,
}

/// Summary of a batch run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Tokens initialised and active.
    pub initialised: Vec<InitReport>,
    /// Tokens that failed.
    pub failed: Vec<BatchFailure>,
}

/// Batch mode: for each token plugged in, initialise it, wait for it to be pulled, go on.
/// A failure (including a token pulled out mid-way) is recorded and the run continues.
pub fn run_batch(
    provider: &mut dyn DeviceProvider,
    registry: &mut dyn Registry,
    touch: &mut dyn TouchSource,
    clock: &mut dyn HostClock,
    options: &BatchOptions,
    progress: &mut dyn FnMut(BatchEvent<'_>),
) -> Result<BatchSummary, BenchError> {
    let mut summary = BatchSummary::default();
    let mut queue: std::collections::VecDeque<DeviceInfo> = provider.enumerate()?.into();
    loop {
        let done = summary.initialised.len() + summary.failed.len();
        if options.limit.is_some_and(|l| done >= l) {
            break;
        }
        let device = match queue.pop_front() {
            Some(d) => d,
            None => {
                progress(BatchEvent::WaitingForToken { done });
                match provider.wait_event(options.idle_timeout)? {
                    Some(DeviceEvent::Arrived(d)) => d,
                    Some(DeviceEvent::Left(_)) => continue,
                    None => break,
                }
            }
        };
        progress(BatchEvent::Plugged(&device));
        let host_time = clock.unix_now();
        match init(provider, &device, registry, touch, &options.init, host_time) {
            Ok(report) => {
                progress(BatchEvent::Initialised(&report));
                summary.initialised.push(report);
            }
            Err(error) => {
                progress(BatchEvent::Failed {
                    device: &device,
                    error: &error,
                });
                let token = match &error {
                    BenchError::InitFailed { token, .. } => Some(*token),
                    _ => None,
                };
                summary.failed.push(BatchFailure {
                    device: device.path.clone(),
                    token,
                    error: error.to_string(),
                    advice: error.advice(),
                    pulled_out: error.is_disconnected(),
                });
            }
        }
        progress(BatchEvent::WaitingForRemoval(&device));
        loop {
            match provider.wait_event(options.removal_timeout)? {
                Some(DeviceEvent::Left(d)) if d.path == device.path => {
                    progress(BatchEvent::Removed(&device));
                    break;
                }
                Some(DeviceEvent::Left(_)) => {}
                Some(DeviceEvent::Arrived(d)) => queue.push_back(d),
                None => {
                    // Not pulled in time: go on with the next token anyway.
                    tracing::info!(device = %device.path, "token not removed; continuing");
                    break;
                }
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod advice_tests {
    use super::*;

    fn failed(stage: InitStage, cause: BenchError, slot_clear: bool, aborted: bool) -> String {
        BenchError::InitFailed {
            token: TokenIdentity {
                family: Family::NitrokeyPro,
                serial: 0xA1B2,
            },
            stage,
            cause: Box::new(cause),
            cleanup: Cleanup {
                slot_clear,
                server_aborted: aborted,
                problems: Vec::new(),
            },
        }
        .advice()
    }

    #[test]
    fn a_server_lost_after_the_write_is_not_called_harmless() {
        let lost = || BenchError::Registry(RegistryError::Unavailable("timeout".into()));
        // Before anything was released or written, nothing was written.
        let early = failed(InitStage::BeginInit, lost(), true, true);
        assert!(early.contains("nothing was written"), "{early}");
        // At the confirmation the slot was written: the advice says so and what was undone.
        for (slot_clear, aborted) in [(true, false), (false, false), (true, true)] {
            let late = failed(InitStage::Confirm, lost(), slot_clear, aborted);
            assert!(!late.contains("nothing was written"), "{late}");
            assert!(late.contains("after the token was written"), "{late}");
            assert_eq!(late.contains("could not be erased"), !slot_clear, "{late}");
            assert_eq!(
                late.contains("could not be told to abort"),
                !aborted,
                "{late}"
            );
        }
    }
}
