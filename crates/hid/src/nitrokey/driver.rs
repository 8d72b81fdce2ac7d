//! Nitrokey Pro driver: one request/response transaction at a time with the busy polling and
//! retry rules of the fact sheet (1.6, 1.7), and both authentication generations (1.8).

use std::time::Duration;

use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use super::proto::{
    self, CodeInfo, CommandId, CommandStatus, DeviceStatus, FirmwareVersion, GeneralConfig,
    Generation, OTP_DATA_CHUNK, OtpDataKind, REPORT_LEN, Request, Response, ResponseError,
    SECRET_LEN, Slot, SlotConfig, SlotInfo, StatusInfo, TOKEN_ID_LEN, TimeMode,
};
use crate::reader::ParseError;
use crate::secret::{
    Digits, OtpCode, OtpSecret, Pin, RandomTempPasswords, SecretError, TempPassword,
    TempPasswordSource,
};
use crate::transport::{Transport, TransportError};

/// A Nitrokey operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NitrokeyError {
    /// The transport failed (device unplugged, OS error).
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The device answered with a malformed report on every poll.
    #[error("malformed response to {command:?}: {error}")]
    Malformed {
        /// Command sent.
        command: CommandId,
        /// Last parse error.
        error: ParseError,
    },
    /// The device did not produce the response within the poll budget.
    #[error("no response to {command:?} after {polls} polls")]
    NoResponse {
        /// Command sent.
        command: CommandId,
        /// Polls made.
        polls: u32,
    },
    /// The device kept dropping the request or rejecting its CRC.
    #[error("device did not accept {command:?} after {attempts} attempts")]
    NotAccepted {
        /// Command sent.
        command: CommandId,
        /// Attempts made.
        attempts: u32,
    },
    /// The device executed the command and reported an error.
    #[error("{command:?} failed: {status}")]
    Command {
        /// Command sent.
        command: CommandId,
        /// Status reported.
        status: CommandStatus,
    },
    /// A caller-supplied value is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A secret was rejected or could not be generated.
    #[error("{0}")]
    Secret(#[from] SecretError),
    /// The firmware cannot do this.
    #[error("not supported by firmware {firmware}: {what}")]
    Unsupported {
        /// Firmware version.
        firmware: FirmwareVersion,
        /// What was asked.
        what: &'static str,
    },
    /// The smart card could not be queried for a retry counter (0xFF).
    #[error("the smart card did not report its retry counter")]
    CardQueryFailed,
    /// The device echoed different slot data than was sent.
    #[error("the device echoed different {0} data than was sent")]
    EchoMismatch(&'static str),
}

impl NitrokeyError {
    /// The command status, when the device reported one.
    pub fn command_status(&self) -> Option<CommandStatus> {
        match self {
            Self::Command { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the device is gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Transport(TransportError::Disconnected))
    }
}

/// Host timing and retry budget (defaults: libnitrokey's Pro values, fact sheet 1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Pause after SET_REPORT before the first GET_REPORT.
    pub send_delay: Duration,
    /// Pause between polls.
    pub poll_delay: Duration,
    /// GET_REPORT polls per attempt (busy runs excepted).
    pub max_polls: u32,
    /// Busy answers in a row that do not consume a poll.
    pub busy_run: u32,
    /// Cap of the doubling pause during long busy periods.
    pub busy_delay_cap: Duration,
    /// Retries of a failing SET_REPORT.
    pub send_retries: u32,
    /// Resends of a request the device dropped (stale answer) or rejected with WRONG_CRC.
    pub resends: u32,
    /// Timeout passed to each transfer.
    pub transfer_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            send_delay: Duration::from_millis(100),
            poll_delay: Duration::from_millis(100),
            max_polls: 15,
            busy_run: 10,
            busy_delay_cap: Duration::from_millis(300),
            send_retries: 3,
            resends: 2,
            transfer_timeout: Duration::from_millis(1000),
        }
    }
}

/// Data to write into a slot.
pub struct SlotWrite<'a> {
    /// Slot name (1..=15 bytes, no NUL).
    pub name: &'a str,
    /// Secret; empty = keep the stored secret (firmware >= 0.8 only).
    pub secret: &'a OtpSecret,
    /// HOTP: initial counter; TOTP: time step in seconds (never 0).
    pub counter_or_step: u64,
    /// Configuration byte.
    pub config: SlotConfig,
    /// Token ID (OMP, TT, MUI, layout), zeros when unused.
    pub token_id: [u8; TOKEN_ID_LEN],
}

/// A Nitrokey Pro on a transport.
pub struct NitrokeyPro<T: Transport> {
    transport: T,
    timing: Timing,
    firmware: FirmwareVersion,
    card_serial: u32,
    temp_passwords: Box<dyn TempPasswordSource>,
    user_tmp: Option<TempPassword>,
}

impl<T: Transport> std::fmt::Debug for NitrokeyPro<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NitrokeyPro")
            .field("firmware", &self.firmware)
            .field("card_serial", &self.card_serial)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> NitrokeyPro<T> {
    /// Opens the device with default timing and random temporary passwords: reads GET_STATUS
    /// to learn the firmware generation.
    pub fn open(transport: T) -> Result<Self, NitrokeyError> {
        Self::open_with(transport, Timing::default(), Box::new(RandomTempPasswords))
    }

    /// Opens with explicit timing and temporary-password source.
    pub fn open_with(
        transport: T,
        timing: Timing,
        temp_passwords: Box<dyn TempPasswordSource>,
    ) -> Result<Self, NitrokeyError> {
        let mut dev = Self {
            transport,
            timing,
            firmware: FirmwareVersion { major: 0, minor: 0 },
            card_serial: 0,
            temp_passwords,
            user_tmp: None,
        };
        dev.status()?;
        Ok(dev)
    }

    /// Firmware version read at open (refreshed by [`Self::status`]).
    pub fn firmware(&self) -> FirmwareVersion {
        self.firmware
    }

    /// Smart-card serial read at open.
    pub fn card_serial(&self) -> u32 {
        self.card_serial
    }

    /// Gives the transport back.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Lets time pass on the transport (used by workflows between steps).
    pub fn pause(&mut self, d: Duration) {
        self.transport.pause(d);
    }

    fn send(&mut self, req: &Request) -> Result<(), NitrokeyError> {
        let mut last = TransportError::Io("not sent".into());
        for _ in 0..=self.timing.send_retries {
            match self
                .transport
                .send_feature_report(req.as_bytes(), self.timing.transfer_timeout)
            {
                Ok(()) => return Ok(()),
                Err(TransportError::Disconnected) => {
                    return Err(TransportError::Disconnected.into());
                }
                Err(e) => last = e,
            }
            self.transport.pause(self.timing.poll_delay);
        }
        Err(last.into())
    }

    fn receive(&mut self) -> Result<Result<Response, ResponseError>, NitrokeyError> {
        let mut buf = Zeroizing::new([0u8; REPORT_LEN]);
        let n = self
            .transport
            .get_feature_report(buf.as_mut_slice(), self.timing.transfer_timeout)?;
        Ok(Response::parse(buf.get(..n).unwrap_or_default()))
    }

    /// Sends one request and returns the device's response to *that* request, checking that
    /// it is not a stale copy of an earlier one (command byte and request CRC echoed).
    /// Command-status errors are returned as [`NitrokeyError::Command`].
    pub fn transact(&mut self, req: &Request) -> Result<Response, NitrokeyError> {
        let command = CommandId::from_byte(req.command())
            .ok_or(NitrokeyError::InvalidArgument("unknown command byte"))?;
        let resp = self.transact_raw(req, command)?;
        match resp.command_status() {
            CommandStatus::Ok => Ok(resp),
            status => Err(NitrokeyError::Command { command, status }),
        }
    }

    fn transact_raw(
        &mut self,
        req: &Request,
        command: CommandId,
    ) -> Result<Response, NitrokeyError> {
        let attempts = self.timing.resends.saturating_add(1);
        for _ in 0..attempts {
            self.send(req)?;
            self.transport.pause(self.timing.send_delay);
            match self.poll(req, command)? {
                Some(resp) => return Ok(resp),
                None => continue,
            }
        }
        Err(NitrokeyError::NotAccepted { command, attempts })
    }

    /// Polls for the response. `Ok(None)`: the request was dropped or arrived corrupted and
    /// was not executed, so it is safe to send again.
    fn poll(
        &mut self,
        req: &Request,
        command: CommandId,
    ) -> Result<Option<Response>, NitrokeyError> {
        let mut polls = 0u32;
        let mut busy_in_run = 0u32;
        let mut busy_delay = self.timing.poll_delay;
        let mut last_error: Option<ParseError> = None;
        while polls < self.timing.max_polls {
            match self.receive()? {
                Ok(resp) => match resp.device_status() {
                    DeviceStatus::Busy => {
                        busy_in_run += 1;
                        if busy_in_run > self.timing.busy_run {
                            busy_in_run = 0;
                            polls += 1;
                            busy_delay = (busy_delay * 2).min(self.timing.busy_delay_cap);
                        }
                        self.transport.pause(busy_delay);
                        continue;
                    }
                    DeviceStatus::Ready => {
                        if resp.command() != req.command() || resp.request_crc() != req.crc() {
                            // Status ready but the buffer answers another request: ours was
                            // dropped (the device only accepts a request when ready).
                            tracing::debug!(?command, "stale response, resending");
                            return Ok(None);
                        }
                        if resp.command_status() == CommandStatus::WrongCrc {
                            tracing::debug!(?command, "device saw a corrupted request, resending");
                            return Ok(None);
                        }
                        return Ok(Some(resp));
                    }
                    DeviceStatus::ReceivedReport
                    | DeviceStatus::Error
                    | DeviceStatus::Unknown(_) => {}
                },
                Err(ResponseError::Empty) => {}
                Err(ResponseError::Malformed(e)) => {
                    tracing::debug!(?command, error = %e, "malformed report, polling again");
                    last_error = Some(e);
                }
            }
            polls += 1;
            self.transport.pause(self.timing.poll_delay);
        }
        match last_error {
            Some(error) => Err(NitrokeyError::Malformed { command, error }),
            None => Err(NitrokeyError::NoResponse { command, polls }),
        }
    }

    fn build(r: Result<Request, ParseError>) -> Result<Request, NitrokeyError> {
        r.map_err(|_| NitrokeyError::InvalidArgument("field does not fit the report"))
    }

    fn parsed<V>(command: CommandId, r: Result<V, ParseError>) -> Result<V, NitrokeyError> {
        r.map_err(|error| NitrokeyError::Malformed { command, error })
    }

    /// GET_STATUS.
    pub fn status(&mut self) -> Result<StatusInfo, NitrokeyError> {
        let resp = self.transact(&proto::get_status())?;
        let info = Self::parsed(CommandId::GetStatus, StatusInfo::parse(resp.payload()))?;
        self.firmware = info.firmware;
        self.card_serial = info.card_serial;
        Ok(info)
    }

    /// Remaining admin PIN tries.
    pub fn admin_retry_count(&mut self) -> Result<u8, NitrokeyError> {
        let resp = self.transact(&proto::get_admin_retry_count())?;
        Self::parsed(
            CommandId::GetPasswordRetryCount,
            proto::parse_retry_count(resp.payload()),
        )?
        .ok_or(NitrokeyError::CardQueryFailed)
    }

    /// Remaining user PIN tries.
    pub fn user_retry_count(&mut self) -> Result<u8, NitrokeyError> {
        let resp = self.transact(&proto::get_user_retry_count())?;
        Self::parsed(
            CommandId::GetUserPasswordRetryCount,
            proto::parse_retry_count(resp.payload()),
        )?
        .ok_or(NitrokeyError::CardQueryFailed)
    }

    fn wire(slot: Slot) -> Result<u8, NitrokeyError> {
        slot.wire()
            .ok_or(NitrokeyError::InvalidArgument("slot index out of range"))
    }

    /// READ_SLOT: name, configuration, token ID and HOTP next counter / TOTP step.
    pub fn read_slot(&mut self, slot: Slot) -> Result<SlotInfo, NitrokeyError> {
        let resp = self.transact(&proto::read_slot(Self::wire(slot)?))?;
        Self::parsed(CommandId::ReadSlot, SlotInfo::parse(resp.payload()))
    }

    /// READ_SLOT_NAME.
    pub fn read_slot_name(&mut self, slot: Slot) -> Result<String, NitrokeyError> {
        let resp = self.transact(&proto::read_slot_name(Self::wire(slot)?))?;
        Self::parsed(
            CommandId::ReadSlotName,
            proto::parse_slot_name(resp.payload()),
        )
    }

    /// Slots that hold a configuration (READ_SLOT on each user slot).
    pub fn programmed_slots(&mut self) -> Result<Vec<(Slot, SlotInfo)>, NitrokeyError> {
        let mut out = Vec::new();
        for slot in Slot::all() {
            match self.read_slot(slot) {
                Ok(info) => out.push((slot, info)),
                Err(NitrokeyError::Command {
                    status: CommandStatus::SlotNotProgrammed,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// SET_TIME with a host-provided Unix time.
    pub fn set_time(&mut self, mode: TimeMode, unix_seconds: u64) -> Result<(), NitrokeyError> {
        self.transact(&Self::build(proto::set_time(mode, unix_seconds))?)
            .map(|_| ())
    }

    /// USER_AUTHENTICATE with a fresh temporary password, kept for GET_CODE.
    pub fn authenticate_user(&mut self, user_pin: &Pin) -> Result<(), NitrokeyError> {
        self.user_tmp = None;
        let tmp = self.temp_passwords.next_password()?;
        self.transact(&Self::build(proto::user_authenticate(user_pin, &tmp))?)?;
        self.user_tmp = Some(tmp);
        Ok(())
    }

    /// GET_CODE. `user_pin` is needed only when the device requires the PIN for codes (GET_STATUS
    /// flag); HOTP codes advance the device counter.
    pub fn get_code(
        &mut self,
        slot: Slot,
        user_pin: Option<&Pin>,
    ) -> Result<OtpCode, NitrokeyError> {
        let wire = Self::wire(slot)?;
        let pin_needed = self.status()?.config.otp_pin_required;
        let resp = match self.firmware.generation() {
            Generation::InlinePassword => {
                if pin_needed && self.user_tmp.is_none() {
                    let pin = user_pin.ok_or(NitrokeyError::InvalidArgument(
                        "this device requires the user PIN for codes",
                    ))?;
                    self.authenticate_user(pin)?;
                }
                let tmp = if pin_needed {
                    self.user_tmp.clone()
                } else {
                    None
                };
                self.transact(&Self::build(proto::get_code(wire, tmp.as_ref()))?)?
            }
            Generation::Authorize => {
                let req = Self::build(proto::get_code(wire, None))?;
                if pin_needed {
                    let pin = user_pin.ok_or(NitrokeyError::InvalidArgument(
                        "this device requires the user PIN for codes",
                    ))?;
                    self.authenticate_user(pin)?;
                    let tmp = self
                        .user_tmp
                        .take()
                        .ok_or(NitrokeyError::InvalidArgument("user authentication lost"))?;
                    self.transact(&Self::build(proto::user_authorize(req.crc(), &tmp))?)?;
                }
                self.transact(&req)?
            }
        };
        let info = Self::parsed(CommandId::GetCode, CodeInfo::parse(resp.payload()))?;
        let digits = if info.config.eight_digits {
            Digits::Eight
        } else {
            Digits::Six
        };
        OtpCode::new(info.code, digits).ok_or(NitrokeyError::Malformed {
            command: CommandId::GetCode,
            error: ParseError::Invalid {
                field: "code",
                detail: "code has more digits than the slot configuration",
            },
        })
    }

    /// CHANGE_USER_PIN.
    pub fn change_user_pin(&mut self, old: &Pin, new: &Pin) -> Result<(), NitrokeyError> {
        self.transact(&Self::build(proto::change_user_pin(old, new))?)
            .map(|_| ())
    }

    /// CHANGE_ADMIN_PIN.
    pub fn change_admin_pin(&mut self, old: &Pin, new: &Pin) -> Result<(), NitrokeyError> {
        self.transact(&Self::build(proto::change_admin_pin(old, new))?)
            .map(|_| ())
    }

    /// UNLOCK_USER_PASSWORD: sets a new user PIN and resets its retry counter.
    pub fn unlock_user_pin(&mut self, admin: &Pin, new_user: &Pin) -> Result<(), NitrokeyError> {
        self.transact(&Self::build(proto::unlock_user_password(admin, new_user))?)
            .map(|_| ())
    }

    /// FACTORY_RESET: PINs back to 123456 / 12345678, all slots erased.
    pub fn factory_reset(&mut self, admin: &Pin) -> Result<(), NitrokeyError> {
        self.user_tmp = None;
        self.transact(&Self::build(proto::factory_reset(admin))?)
            .map(|_| ())
    }

    /// Authenticates with the admin PIN and returns a session for admin commands.
    pub fn admin(&mut self, admin_pin: &Pin) -> Result<AdminSession<'_, T>, NitrokeyError> {
        let mut s = AdminSession {
            dev: self,
            pin: admin_pin.clone(),
            tmp: None,
        };
        s.authenticate()?;
        Ok(s)
    }
}

/// Admin-authorised commands. On firmware >= 0.8 the temporary password set at creation is
/// embedded in every command; on firmware <= 0.7 every command is preceded by AUTHORIZE with
/// its CRC, and since that firmware forgets the password after one AUTHORIZE, the session
/// authenticates again before each command (it therefore keeps the admin PIN, zeroized on drop).
pub struct AdminSession<'d, T: Transport> {
    dev: &'d mut NitrokeyPro<T>,
    pin: Pin,
    tmp: Option<TempPassword>,
}

impl<T: Transport> std::fmt::Debug for AdminSession<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSession").finish_non_exhaustive()
    }
}

impl<T: Transport> AdminSession<'_, T> {
    fn authenticate(&mut self) -> Result<(), NitrokeyError> {
        self.tmp = None;
        let tmp = self.dev.temp_passwords.next_password()?;
        self.dev
            .transact(&NitrokeyPro::<T>::build(proto::first_authenticate(
                &self.pin, &tmp,
            ))?)?;
        self.tmp = Some(tmp);
        Ok(())
    }

    fn tmp(&mut self) -> Result<TempPassword, NitrokeyError> {
        if self.tmp.is_none() {
            self.authenticate()?;
        }
        self.tmp
            .clone()
            .ok_or(NitrokeyError::InvalidArgument("admin authentication lost"))
    }

    /// Runs an admin command built by `build` (given the temp password on firmware >= 0.8).
    fn run(
        &mut self,
        build: impl Fn(Option<&TempPassword>) -> Result<Request, ParseError>,
    ) -> Result<Response, NitrokeyError> {
        let tmp = self.tmp()?;
        match self.dev.firmware.generation() {
            Generation::InlinePassword => self
                .dev
                .transact(&NitrokeyPro::<T>::build(build(Some(&tmp)))?),
            Generation::Authorize => {
                let req = NitrokeyPro::<T>::build(build(None))?;
                // One-shot: whatever happens next, this password is spent.
                self.tmp = None;
                self.dev
                    .transact(&NitrokeyPro::<T>::build(proto::authorize(req.crc(), &tmp))?)?;
                self.dev.transact(&req)
            }
        }
    }

    /// Firmware of the device.
    pub fn firmware(&self) -> FirmwareVersion {
        self.dev.firmware
    }

    /// Writes a HOTP or TOTP slot.
    pub fn write_slot(&mut self, slot: Slot, data: &SlotWrite<'_>) -> Result<(), NitrokeyError> {
        let wire = NitrokeyPro::<T>::wire(slot)?;
        let name = data.name.as_bytes();
        if name.is_empty() || name.len() > proto::NAME_LEN || name.contains(&0) {
            return Err(NitrokeyError::InvalidArgument(
                "slot name must be 1 to 15 bytes without NUL",
            ));
        }
        if !slot.is_hotp() && data.counter_or_step == 0 {
            return Err(NitrokeyError::InvalidArgument(
                "TOTP time step must not be 0",
            ));
        }
        let secret = data.secret.expose_bytes();
        match self.dev.firmware.generation() {
            Generation::InlinePassword => {
                if secret.len() > SECRET_LEN {
                    return Err(SecretError::SecretLength {
                        len: secret.len(),
                        max: SECRET_LEN,
                    }
                    .into());
                }
                let tmp = self.tmp()?;
                let echo = self
                    .dev
                    .transact(&NitrokeyPro::<T>::build(proto::send_otp_data(
                        &tmp,
                        OtpDataKind::Name,
                        0,
                        name,
                    ))?)?;
                let echoed_name = echo.payload().get(..proto::NAME_LEN).unwrap_or_default();
                let mut sent_name = [0u8; proto::NAME_LEN];
                for (d, s) in sent_name.iter_mut().zip(name) {
                    *d = *s;
                }
                if echoed_name != sent_name {
                    return Err(NitrokeyError::EchoMismatch("name"));
                }
                let mut last_echo = None;
                for (id, chunk) in (0u8..).zip(secret.chunks(OTP_DATA_CHUNK)) {
                    last_echo = Some(self.dev.transact(&NitrokeyPro::<T>::build(
                        proto::send_otp_data(&tmp, OtpDataKind::Secret, id, chunk),
                    )?)?);
                }
                if let Some(last) = last_echo {
                    // The echo holds the whole 40-byte staged secret (fact sheet 1.10).
                    let mut staged = Zeroizing::new([0u8; SECRET_LEN]);
                    for (d, s) in staged.iter_mut().zip(secret) {
                        *d = *s;
                    }
                    let echoed = last.payload().get(..SECRET_LEN).unwrap_or_default();
                    if !bool::from(echoed.ct_eq(staged.as_slice())) {
                        return Err(NitrokeyError::EchoMismatch("secret"));
                    }
                }
                self.dev
                    .transact(&NitrokeyPro::<T>::build(proto::write_to_slot(
                        &tmp,
                        wire,
                        data.counter_or_step,
                        data.config,
                        &data.token_id,
                    ))?)
                    .map(|_| ())
            }
            Generation::Authorize => {
                if secret.is_empty() {
                    return Err(NitrokeyError::Unsupported {
                        firmware: self.dev.firmware,
                        what: "keeping the stored secret on rewrite",
                    });
                }
                if secret.len() > proto::LEGACY_SECRET_LEN {
                    return Err(SecretError::SecretLength {
                        len: secret.len(),
                        max: proto::LEGACY_SECRET_LEN,
                    }
                    .into());
                }
                let cfg = data.config;
                let token_id = data.token_id;
                let counter = data.counter_or_step;
                self.run(|_| {
                    proto::write_to_slot_legacy(wire, name, secret, cfg, &token_id, counter)
                })
                .map(|_| ())
            }
        }
    }

    /// ERASE_SLOT.
    pub fn erase_slot(&mut self, slot: Slot) -> Result<(), NitrokeyError> {
        let wire = NitrokeyPro::<T>::wire(slot)?;
        self.run(|tmp| proto::erase_slot(wire, tmp)).map(|_| ())
    }

    /// WRITE_CONFIG.
    pub fn write_config(&mut self, cfg: GeneralConfig) -> Result<(), NitrokeyError> {
        self.run(|tmp| proto::write_config(cfg, tmp)).map(|_| ())
    }
}
