//! Nitrokey Pro ("stick10") wire format: 64-byte feature reports, STM32 CRC-32, command and
//! status codes, request builders and bounds-checked response parsers. Pure: no I/O.
//!
//! Offsets follow the fact sheet `shared/protocols/hid-tokens.md` part 1 (`R[i]` = byte i of
//! the report without the report-ID byte; response payload `P[j]` = `R[7 + j]`).

use std::fmt;

use zeroize::Zeroize;

use crate::crc::stm32_crc32;
use crate::reader::{ParseError, Reader, put};
use crate::secret::{Pin, TEMP_PASSWORD_LEN, TempPassword};

/// Report length without the report-ID byte.
pub const REPORT_LEN: usize = 64;
/// Offset of the CRC field in requests and responses.
pub const CRC_OFFSET: usize = 60;
/// Offset of the response payload.
pub const RESPONSE_PAYLOAD_OFFSET: usize = 7;
/// Length of the response payload.
pub const RESPONSE_PAYLOAD_LEN: usize = 53;
/// Size of a name field.
pub const NAME_LEN: usize = 15;
/// Size of a token-ID field.
pub const TOKEN_ID_LEN: usize = 13;
/// Size of a PIN field.
pub const PIN_FIELD_LEN: usize = 25;
/// Data bytes carried by one SEND_OTP_DATA report.
pub const OTP_DATA_CHUNK: usize = 30;
/// Secret length limit on firmware <= 0.7.
pub const LEGACY_SECRET_LEN: usize = 20;
/// Secret length limit on firmware >= 0.8.
pub const SECRET_LEN: usize = 40;
/// Unix time of the firmware's persistent time epoch (2014-01-01 00:00:00 UTC).
pub const TIME_EPOCH: u64 = 1_388_534_400;

/// Command IDs (fact sheet 1.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CommandId {
    /// GET_STATUS.
    GetStatus = 0x00,
    /// WRITE_TO_SLOT.
    WriteToSlot = 0x01,
    /// READ_SLOT_NAME.
    ReadSlotName = 0x02,
    /// READ_SLOT.
    ReadSlot = 0x03,
    /// GET_CODE.
    GetCode = 0x04,
    /// WRITE_CONFIG.
    WriteConfig = 0x05,
    /// ERASE_SLOT.
    EraseSlot = 0x06,
    /// FIRST_AUTHENTICATE (admin PIN).
    FirstAuthenticate = 0x07,
    /// AUTHORIZE (firmware <= 0.7).
    Authorize = 0x08,
    /// GET_PASSWORD_RETRY_COUNT (admin).
    GetPasswordRetryCount = 0x09,
    /// SET_TIME.
    SetTime = 0x0B,
    /// USER_AUTHENTICATE.
    UserAuthenticate = 0x0E,
    /// GET_USER_PASSWORD_RETRY_COUNT.
    GetUserPasswordRetryCount = 0x0F,
    /// USER_AUTHORIZE (firmware <= 0.7).
    UserAuthorize = 0x10,
    /// UNLOCK_USER_PASSWORD.
    UnlockUserPassword = 0x11,
    /// LOCK_DEVICE.
    LockDevice = 0x12,
    /// FACTORY_RESET.
    FactoryReset = 0x13,
    /// CHANGE_USER_PIN.
    ChangeUserPin = 0x14,
    /// CHANGE_ADMIN_PIN.
    ChangeAdminPin = 0x15,
    /// SEND_OTP_DATA (firmware >= 0.8).
    SendOtpData = 0x17,
    /// VERIFY_OTP_CODE (firmware >= 0.9).
    VerifyOtpCode = 0x18,
    /// GET_RANDOM.
    GetRandom = 0x1B,
}

impl CommandId {
    /// Every command this crate knows, for lookups.
    pub const ALL: [CommandId; 22] = [
        Self::GetStatus,
        Self::WriteToSlot,
        Self::ReadSlotName,
        Self::ReadSlot,
        Self::GetCode,
        Self::WriteConfig,
        Self::EraseSlot,
        Self::FirstAuthenticate,
        Self::Authorize,
        Self::GetPasswordRetryCount,
        Self::SetTime,
        Self::UserAuthenticate,
        Self::GetUserPasswordRetryCount,
        Self::UserAuthorize,
        Self::UnlockUserPassword,
        Self::LockDevice,
        Self::FactoryReset,
        Self::ChangeUserPin,
        Self::ChangeAdminPin,
        Self::SendOtpData,
        Self::VerifyOtpCode,
        Self::GetRandom,
    ];

    /// The wire byte.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// The command with this wire byte, if known.
    pub fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.byte() == b)
    }
}

/// Device status, response byte R[0].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    /// 0: the buffer holds the result of the last processed command.
    Ready,
    /// 1: a command is executing.
    Busy,
    /// 2: error (defined but never set by the Pro firmware).
    Error,
    /// 3: request received, not yet started.
    ReceivedReport,
    /// Any other value.
    Unknown(u8),
}

impl DeviceStatus {
    /// From the wire byte.
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::Ready,
            1 => Self::Busy,
            2 => Self::Error,
            3 => Self::ReceivedReport,
            other => Self::Unknown(other),
        }
    }
}

/// Command status, response byte R[6].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// 0.
    Ok,
    /// 1: the request CRC did not match; not executed.
    WrongCrc,
    /// 2: slot number out of range.
    WrongSlot,
    /// 3: slot not programmed.
    SlotNotProgrammed,
    /// 4: wrong PIN.
    WrongPassword,
    /// 5: missing or wrong temporary password.
    NotAuthorized,
    /// 6: SET_TIME refused.
    TimestampWarning,
    /// 7: WRITE_TO_SLOT with an empty name.
    NoNameError,
    /// 8: not supported.
    NotSupported,
    /// 9: unknown command.
    UnknownCommand,
    /// 10: AES decryption failed.
    AesDecryptionFailed,
    /// 11: AES key creation failed.
    AesCreateKeyFailed,
    /// 12: the card refused the new user PIN.
    ErrorChangingUserPassword,
    /// 13: the card refused the new admin PIN.
    ErrorChangingAdminPassword,
    /// 14: the card refused to unblock the user PIN.
    ErrorUnblockingPin,
    /// Any other value.
    Unknown(u8),
}

impl CommandStatus {
    /// From the wire byte.
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::Ok,
            1 => Self::WrongCrc,
            2 => Self::WrongSlot,
            3 => Self::SlotNotProgrammed,
            4 => Self::WrongPassword,
            5 => Self::NotAuthorized,
            6 => Self::TimestampWarning,
            7 => Self::NoNameError,
            8 => Self::NotSupported,
            9 => Self::UnknownCommand,
            10 => Self::AesDecryptionFailed,
            11 => Self::AesCreateKeyFailed,
            12 => Self::ErrorChangingUserPassword,
            13 => Self::ErrorChangingAdminPassword,
            14 => Self::ErrorUnblockingPin,
            other => Self::Unknown(other),
        }
    }

    /// The wire byte.
    pub fn byte(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::WrongCrc => 1,
            Self::WrongSlot => 2,
            Self::SlotNotProgrammed => 3,
            Self::WrongPassword => 4,
            Self::NotAuthorized => 5,
            Self::TimestampWarning => 6,
            Self::NoNameError => 7,
            Self::NotSupported => 8,
            Self::UnknownCommand => 9,
            Self::AesDecryptionFailed => 10,
            Self::AesCreateKeyFailed => 11,
            Self::ErrorChangingUserPassword => 12,
            Self::ErrorChangingAdminPassword => 13,
            Self::ErrorUnblockingPin => 14,
            Self::Unknown(b) => b,
        }
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Ok => "ok",
            Self::WrongCrc => "request checksum rejected by the device",
            Self::WrongSlot => "no such slot",
            Self::SlotNotProgrammed => "slot is not programmed",
            Self::WrongPassword => "wrong PIN",
            Self::NotAuthorized => "not authorised (authentication missing or expired)",
            Self::TimestampWarning => "device refused the time",
            Self::NoNameError => "slot name is empty",
            Self::NotSupported => "not supported by the device",
            Self::UnknownCommand => "command not known to this firmware",
            Self::AesDecryptionFailed => "AES decryption failed",
            Self::AesCreateKeyFailed => "AES key creation failed",
            Self::ErrorChangingUserPassword => "smart card refused the new user PIN",
            Self::ErrorChangingAdminPassword => "smart card refused the new admin PIN",
            Self::ErrorUnblockingPin => "smart card refused to unblock the user PIN",
            Self::Unknown(b) => return write!(f, "unknown status {b}"),
        };
        f.write_str(text)
    }
}

/// Firmware version from GET_STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FirmwareVersion {
    /// Major (0 for every Pro firmware so far).
    pub major: u8,
    /// Minor.
    pub minor: u8,
}

impl FirmwareVersion {
    /// Which authentication protocol this firmware speaks.
    pub fn generation(self) -> Generation {
        if self.major == 0 && self.minor <= 7 {
            Generation::Authorize
        } else {
            Generation::InlinePassword
        }
    }

    /// True when HOTP slot 0x13 is the verification slot (firmware >= 0.9).
    pub fn has_verification_slot(self) -> bool {
        self.major > 0 || self.minor >= 9
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The two authentication protocol generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Firmware <= 0.7: AUTHORIZE with the CRC of the next report; single-report slot writes.
    Authorize,
    /// Firmware >= 0.8: temporary password inside each command; SEND_OTP_DATA + WRITE_TO_SLOT.
    InlinePassword,
}

/// A user-visible OTP slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// HOTP slot 0..=2 (wire 0x10 + n).
    Hotp(u8),
    /// TOTP slot 0..=14 (wire 0x20 + n).
    Totp(u8),
}

/// User HOTP slots.
pub const HOTP_SLOTS: u8 = 3;
/// TOTP slots.
pub const TOTP_SLOTS: u8 = 15;

impl Slot {
    /// The wire slot number, if the index is in range.
    pub fn wire(self) -> Option<u8> {
        match self {
            Self::Hotp(n) if n < HOTP_SLOTS => Some(0x10 + n),
            Self::Totp(n) if n < TOTP_SLOTS => Some(0x20 + n),
            _ => None,
        }
    }

    /// The slot with this wire number.
    pub fn from_wire(b: u8) -> Option<Self> {
        match b {
            0x10..=0x12 => Some(Self::Hotp(b - 0x10)),
            0x20..=0x2E => Some(Self::Totp(b - 0x20)),
            _ => None,
        }
    }

    /// All user slots in order.
    pub fn all() -> impl Iterator<Item = Slot> {
        (0..HOTP_SLOTS)
            .map(Slot::Hotp)
            .chain((0..TOTP_SLOTS).map(Slot::Totp))
    }

    /// True for an HOTP slot.
    pub fn is_hotp(self) -> bool {
        matches!(self, Self::Hotp(_))
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hotp(n) => write!(f, "HOTP slot {n}"),
            Self::Totp(n) => write!(f, "TOTP slot {n}"),
        }
    }
}

/// Slot configuration byte (bit 0: 8 digits; bit 1: Enter after typed code; bit 2: token ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotConfig {
    /// 8 digits instead of 6.
    pub eight_digits: bool,
    /// Send Enter after a typed code.
    pub send_enter: bool,
    /// Send the token ID before a typed code.
    pub send_token_id: bool,
}

impl SlotConfig {
    /// The wire byte.
    pub fn byte(self) -> u8 {
        u8::from(self.eight_digits)
            | (u8::from(self.send_enter) << 1)
            | (u8::from(self.send_token_id) << 2)
    }

    /// From the wire byte (unused bits ignored, as the firmware does).
    pub fn from_byte(b: u8) -> Self {
        Self {
            eight_digits: b & 1 != 0,
            send_enter: b & 2 != 0,
            send_token_id: b & 4 != 0,
        }
    }
}

/// A 64-byte request report. Zeroized on drop: requests carry PINs, secrets and temporary
/// passwords.
#[derive(Clone)]
pub struct Request {
    bytes: [u8; REPORT_LEN],
}

impl Drop for Request {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Request(cmd {:#04x}, crc {:#010x})",
            self.command(),
            self.crc()
        )
    }
}

impl Request {
    fn new(cmd: CommandId) -> Self {
        let mut bytes = [0u8; REPORT_LEN];
        bytes[0] = cmd.byte();
        let mut r = Self { bytes };
        r.seal();
        r
    }

    fn field(mut self, offset: usize, data: &[u8]) -> Result<Self, ParseError> {
        put(&mut self.bytes, offset, data)?;
        self.seal();
        Ok(self)
    }

    fn seal(&mut self) {
        let crc = stm32_crc32(&self.bytes[..CRC_OFFSET]);
        self.bytes[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    }

    /// Builds a request from raw bytes, recomputing nothing (for replay and tests).
    pub fn from_raw(bytes: [u8; REPORT_LEN]) -> Self {
        Self { bytes }
    }

    /// The command byte R[0].
    pub fn command(&self) -> u8 {
        self.bytes[0]
    }

    /// The CRC field R[60..63].
    pub fn crc(&self) -> u32 {
        u32::from_le_bytes([
            self.bytes[60],
            self.bytes[61],
            self.bytes[62],
            self.bytes[63],
        ])
    }

    /// The report bytes.
    pub fn as_bytes(&self) -> &[u8; REPORT_LEN] {
        &self.bytes
    }
}

fn pin_field(pin: &Pin) -> &[u8] {
    pin.expose_bytes()
}

/// GET_STATUS.
pub fn get_status() -> Request {
    Request::new(CommandId::GetStatus)
}

/// FIRST_AUTHENTICATE: admin PIN at R[1..25], new temporary password at R[26..50].
pub fn first_authenticate(admin_pin: &Pin, tmp: &TempPassword) -> Result<Request, ParseError> {
    Request::new(CommandId::FirstAuthenticate)
        .field(1, pin_field(admin_pin))?
        .field(26, tmp.expose_bytes())
}

/// USER_AUTHENTICATE: user PIN at R[1..25], new temporary password at R[26..50].
pub fn user_authenticate(user_pin: &Pin, tmp: &TempPassword) -> Result<Request, ParseError> {
    Request::new(CommandId::UserAuthenticate)
        .field(1, pin_field(user_pin))?
        .field(26, tmp.expose_bytes())
}

/// AUTHORIZE (fw <= 0.7): CRC of the next report at R[1..4], admin temporary password R[5..29].
pub fn authorize(next_crc: u32, tmp: &TempPassword) -> Result<Request, ParseError> {
    Request::new(CommandId::Authorize)
        .field(1, &next_crc.to_le_bytes())?
        .field(5, tmp.expose_bytes())
}

/// USER_AUTHORIZE (fw <= 0.7): as AUTHORIZE with the user temporary password.
pub fn user_authorize(next_crc: u32, tmp: &TempPassword) -> Result<Request, ParseError> {
    Request::new(CommandId::UserAuthorize)
        .field(1, &next_crc.to_le_bytes())?
        .field(5, tmp.expose_bytes())
}

/// Kind of a SEND_OTP_DATA chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpDataKind {
    /// 'N': the slot name.
    Name,
    /// 'S': a secret chunk.
    Secret,
}

impl OtpDataKind {
    /// ASCII type byte.
    pub fn byte(self) -> u8 {
        match self {
            Self::Name => b'N',
            Self::Secret => b'S',
        }
    }
}

/// SEND_OTP_DATA (fw >= 0.8): temp password R[1..25], kind R[26], chunk id R[27], data R[28..57].
pub fn send_otp_data(
    tmp: &TempPassword,
    kind: OtpDataKind,
    id: u8,
    data: &[u8],
) -> Result<Request, ParseError> {
    if data.len() > OTP_DATA_CHUNK {
        return Err(ParseError::Invalid {
            field: "otp data",
            detail: "more than 30 bytes in one chunk",
        });
    }
    Request::new(CommandId::SendOtpData)
        .field(1, tmp.expose_bytes())?
        .field(26, &[kind.byte(), id])?
        .field(28, data)
}

/// WRITE_TO_SLOT (fw >= 0.8): temp password R[1..25], slot R[26], counter/step R[27..34],
/// config R[35], token ID R[36..48].
pub fn write_to_slot(
    tmp: &TempPassword,
    wire_slot: u8,
    counter_or_step: u64,
    config: SlotConfig,
    token_id: &[u8; TOKEN_ID_LEN],
) -> Result<Request, ParseError> {
    Request::new(CommandId::WriteToSlot)
        .field(1, tmp.expose_bytes())?
        .field(26, &[wire_slot])?
        .field(27, &counter_or_step.to_le_bytes())?
        .field(35, &[config.byte()])?
        .field(36, token_id)
}

/// WRITE_TO_SLOT (fw <= 0.7): slot R[1], name R[2..16], secret R[17..36], config R[37],
/// token ID R[38..50], HOTP counter u64 / TOTP step u16 at R[51..].
pub fn write_to_slot_legacy(
    wire_slot: u8,
    name: &[u8],
    secret: &[u8],
    config: SlotConfig,
    token_id: &[u8; TOKEN_ID_LEN],
    counter_or_step: u64,
) -> Result<Request, ParseError> {
    if name.len() > NAME_LEN || secret.len() > LEGACY_SECRET_LEN {
        return Err(ParseError::Invalid {
            field: "slot data",
            detail: "name or secret too long for firmware <= 0.7",
        });
    }
    let is_hotp = (0x10..0x20).contains(&wire_slot);
    let req = Request::new(CommandId::WriteToSlot)
        .field(1, &[wire_slot])?
        .field(2, name)?
        .field(17, secret)?
        .field(37, &[config.byte()])?
        .field(38, token_id)?;
    if is_hotp {
        req.field(51, &counter_or_step.to_le_bytes())
    } else {
        let step = u16::try_from(counter_or_step).map_err(|_| ParseError::Invalid {
            field: "time step",
            detail: "firmware <= 0.7 stores a 16-bit time step",
        })?;
        req.field(51, &step.to_le_bytes())
    }
}

/// READ_SLOT_NAME: slot R[1].
pub fn read_slot_name(wire_slot: u8) -> Request {
    let mut r = Request::new(CommandId::ReadSlotName);
    r.bytes[1] = wire_slot;
    r.seal();
    r
}

/// READ_SLOT: slot R[1], counter format R[2] = 0 (ignored by the Pro).
pub fn read_slot(wire_slot: u8) -> Request {
    let mut r = Request::new(CommandId::ReadSlot);
    r.bytes[1] = wire_slot;
    r.seal();
    r
}

/// GET_CODE: slot R[1]; challenge, last time and interval zero (ignored by the firmware);
/// on fw >= 0.8 the user temporary password at R[19..43] (zeros when none).
pub fn get_code(wire_slot: u8, user_tmp: Option<&TempPassword>) -> Result<Request, ParseError> {
    let r = Request::new(CommandId::GetCode).field(1, &[wire_slot])?;
    match user_tmp {
        Some(t) => r.field(19, t.expose_bytes()),
        None => Ok(r),
    }
}

/// General configuration written by WRITE_CONFIG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneralConfig {
    /// HOTP slot bound to Num Lock double press (0..=2, anything else disables).
    pub numlock: u8,
    /// Caps Lock binding.
    pub capslock: u8,
    /// Scroll Lock binding.
    pub scrolllock: u8,
    /// GET_CODE requires the user PIN.
    pub otp_pin_required: bool,
}

/// WRITE_CONFIG: R[1..5] config; fw >= 0.8 adds the admin temporary password at R[6..30].
pub fn write_config(
    cfg: GeneralConfig,
    admin_tmp: Option<&TempPassword>,
) -> Result<Request, ParseError> {
    let r = Request::new(CommandId::WriteConfig).field(
        1,
        &[
            cfg.numlock,
            cfg.capslock,
            cfg.scrolllock,
            u8::from(cfg.otp_pin_required),
            0,
        ],
    )?;
    match admin_tmp {
        Some(t) => r.field(6, t.expose_bytes()),
        None => Ok(r),
    }
}

/// ERASE_SLOT: slot R[1]; fw >= 0.8 adds the admin temporary password at R[2..26].
pub fn erase_slot(wire_slot: u8, admin_tmp: Option<&TempPassword>) -> Result<Request, ParseError> {
    let r = Request::new(CommandId::EraseSlot).field(1, &[wire_slot])?;
    match admin_tmp {
        Some(t) => r.field(2, t.expose_bytes()),
        None => Ok(r),
    }
}

/// GET_PASSWORD_RETRY_COUNT (admin).
pub fn get_admin_retry_count() -> Request {
    Request::new(CommandId::GetPasswordRetryCount)
}

/// GET_USER_PASSWORD_RETRY_COUNT.
pub fn get_user_retry_count() -> Request {
    Request::new(CommandId::GetUserPasswordRetryCount)
}

/// SET_TIME mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMode {
    /// 0: refuse to move backwards or to set over an invalid stored time.
    Checked,
    /// 1: always set.
    Force,
}

/// SET_TIME: mode R[1], Unix seconds u64 LE R[2..9].
pub fn set_time(mode: TimeMode, unix_seconds: u64) -> Result<Request, ParseError> {
    let m = match mode {
        TimeMode::Checked => 0u8,
        TimeMode::Force => 1,
    };
    Request::new(CommandId::SetTime)
        .field(1, &[m])?
        .field(2, &unix_seconds.to_le_bytes())
}

fn two_pins(cmd: CommandId, first: &Pin, second: &Pin) -> Result<Request, ParseError> {
    Request::new(cmd)
        .field(1, pin_field(first))?
        .field(26, pin_field(second))
}

/// CHANGE_USER_PIN: old R[1..25], new R[26..50].
pub fn change_user_pin(old: &Pin, new: &Pin) -> Result<Request, ParseError> {
    two_pins(CommandId::ChangeUserPin, old, new)
}

/// CHANGE_ADMIN_PIN: old R[1..25], new R[26..50].
pub fn change_admin_pin(old: &Pin, new: &Pin) -> Result<Request, ParseError> {
    two_pins(CommandId::ChangeAdminPin, old, new)
}

/// UNLOCK_USER_PASSWORD: admin PIN R[1..25], new user PIN R[26..50].
pub fn unlock_user_password(admin: &Pin, new_user: &Pin) -> Result<Request, ParseError> {
    two_pins(CommandId::UnlockUserPassword, admin, new_user)
}

/// FACTORY_RESET: admin PIN from R[1].
pub fn factory_reset(admin: &Pin) -> Result<Request, ParseError> {
    Request::new(CommandId::FactoryReset).field(1, pin_field(admin))
}

/// A parsed 64-byte response report (zeroized on drop: SEND_OTP_DATA echoes the secret).
#[derive(Clone)]
pub struct Response {
    bytes: [u8; REPORT_LEN],
}

impl Drop for Response {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("device_status", &self.device_status())
            .field("command", &self.command())
            .field("command_status", &self.command_status())
            .finish_non_exhaustive()
    }
}

/// Why a GET_REPORT buffer is not (yet) a usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// CRC field zero: the device has not processed any command since power-up.
    Empty,
    /// Malformed: wrong length or wrong CRC.
    Malformed(ParseError),
}

impl Response {
    /// Checks length and CRC (computed with R[0] = 0, as the firmware does) of a report.
    pub fn parse(bytes: &[u8]) -> Result<Self, ResponseError> {
        if bytes.len() != REPORT_LEN {
            return Err(ResponseError::Malformed(ParseError::Length {
                expected: REPORT_LEN,
                actual: bytes.len(),
            }));
        }
        let mut r = Reader::new(bytes);
        let mut out = Self {
            bytes: r.array().map_err(ResponseError::Malformed)?,
        };
        let carried = u32::from_le_bytes(
            out.bytes
                .get(CRC_OFFSET..)
                .and_then(|s| s.try_into().ok())
                .unwrap_or([0; 4]),
        );
        if carried == 0 {
            return Err(ResponseError::Empty);
        }
        let status = out.bytes[0];
        out.bytes[0] = 0;
        let computed = stm32_crc32(&out.bytes[..CRC_OFFSET]);
        out.bytes[0] = status;
        if computed != carried {
            return Err(ResponseError::Malformed(ParseError::Checksum {
                expected: carried,
                computed,
            }));
        }
        Ok(out)
    }

    /// R[0].
    pub fn device_status(&self) -> DeviceStatus {
        DeviceStatus::from_byte(self.bytes[0])
    }

    /// R[1]: command the device last processed.
    pub fn command(&self) -> u8 {
        self.bytes[1]
    }

    /// R[2..5]: CRC of the request the device last processed.
    pub fn request_crc(&self) -> u32 {
        u32::from_le_bytes([self.bytes[2], self.bytes[3], self.bytes[4], self.bytes[5]])
    }

    /// R[6].
    pub fn command_status(&self) -> CommandStatus {
        CommandStatus::from_byte(self.bytes[6])
    }

    /// P[0..53].
    pub fn payload(&self) -> &[u8] {
        &self.bytes[RESPONSE_PAYLOAD_OFFSET..RESPONSE_PAYLOAD_OFFSET + RESPONSE_PAYLOAD_LEN]
    }

    /// The whole report.
    pub fn as_bytes(&self) -> &[u8; REPORT_LEN] {
        &self.bytes
    }
}

/// GET_STATUS payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusInfo {
    /// Firmware version.
    pub firmware: FirmwareVersion,
    /// Smart-card serial number (what libnitrokey reports as the device serial).
    pub card_serial: u32,
    /// Lock-key bindings and OTP-PIN flag.
    pub config: GeneralConfig,
}

impl StatusInfo {
    /// Parses P[0..10].
    pub fn parse(payload: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload);
        let minor = r.u8()?;
        let major = r.u8()?;
        let card_serial = r.u32_le()?;
        let numlock = r.u8()?;
        let capslock = r.u8()?;
        let scrolllock = r.u8()?;
        let otp_pin = r.u8()?;
        Ok(Self {
            firmware: FirmwareVersion { major, minor },
            card_serial,
            config: GeneralConfig {
                numlock,
                capslock,
                scrolllock,
                otp_pin_required: otp_pin == 1,
            },
        })
    }
}

/// A NUL-padded name field as text (invalid UTF-8 is replaced, never trusted).
fn name_text(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(raw.get(..end).unwrap_or_default()).into_owned()
}

/// READ_SLOT payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot name.
    pub name: String,
    /// Configuration byte.
    pub config: SlotConfig,
    /// Token ID.
    pub token_id: [u8; TOKEN_ID_LEN],
    /// HOTP: next counter value; TOTP: time step.
    pub counter_or_step: u64,
}

impl SlotInfo {
    /// Parses P[0..37].
    pub fn parse(payload: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload);
        let name = name_text(r.bytes(NAME_LEN)?);
        let config = SlotConfig::from_byte(r.u8()?);
        let token_id = r.array()?;
        let counter_or_step = r.u64_le()?;
        Ok(Self {
            name,
            config,
            token_id,
            counter_or_step,
        })
    }
}

/// READ_SLOT_NAME payload.
pub fn parse_slot_name(payload: &[u8]) -> Result<String, ParseError> {
    Ok(name_text(Reader::new(payload).bytes(NAME_LEN)?))
}

/// GET_CODE payload.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeInfo {
    /// Code value, already reduced modulo 10^digits.
    pub code: u32,
    /// Slot configuration (bit 0 gives the digit count).
    pub config: SlotConfig,
    /// Token ID.
    pub token_id: [u8; TOKEN_ID_LEN],
}

impl fmt::Debug for CodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeInfo")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CodeInfo {
    /// Parses P[0..18].
    pub fn parse(payload: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload);
        let code = r.u32_le()?;
        let config = SlotConfig::from_byte(r.u8()?);
        let token_id = r.array()?;
        Ok(Self {
            code,
            config,
            token_id,
        })
    }
}

/// Retry-count payload: P[0], 0xFF when the smart card could not be queried.
pub fn parse_retry_count(payload: &[u8]) -> Result<Option<u8>, ParseError> {
    let n = Reader::new(payload).u8()?;
    Ok((n != 0xFF).then_some(n))
}

/// Number of bytes of a temporary password field (re-exported for builders).
pub const TEMP_PASSWORD_FIELD: usize = TEMP_PASSWORD_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(s: &str) -> Pin {
        Pin::new(s).expect("valid pin")
    }

    #[test]
    fn request_crcs_match_the_fact_sheet_vectors() {
        let s = get_status();
        assert_eq!(s.crc(), 0xEF6E_B7DF);
        assert_eq!(&s.as_bytes()[60..], &[0xDF, 0xB7, 0x6E, 0xEF]);
        let tmp = TempPassword::from_text("123123123").expect("tmp");
        let fa = first_authenticate(&pin("12345678"), &tmp).expect("fa");
        assert_eq!(fa.crc(), 0x329E_1EF0);
        let st = set_time(TimeMode::Force, 1_700_000_000).expect("st");
        assert_eq!(st.crc(), 0x10F1_4A48);
    }

    #[test]
    fn layouts_put_fields_at_documented_offsets() {
        let tmp = TempPassword::from_text("123123123").expect("tmp");
        let w = write_to_slot(
            &tmp,
            0x11,
            0x0102,
            SlotConfig {
                eight_digits: true,
                ..SlotConfig::default()
            },
            &[7; TOKEN_ID_LEN],
        )
        .expect("w");
        let b = w.as_bytes();
        assert_eq!(b[0], 0x01);
        assert_eq!(&b[1..10], b"123123123");
        assert_eq!(b[26], 0x11);
        assert_eq!(&b[27..35], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b[35], 1);
        assert_eq!(&b[36..49], &[7; 13]);
        assert_eq!(b[49], 0);

        let l = write_to_slot_legacy(0x21, b"mail", &[9; 20], SlotConfig::default(), &[0; 13], 30)
            .expect("l");
        let b = l.as_bytes();
        assert_eq!(b[1], 0x21);
        assert_eq!(&b[2..6], b"mail");
        assert_eq!(&b[17..37], &[9; 20]);
        assert_eq!(&b[51..53], &[30, 0]);
        assert!(
            write_to_slot_legacy(0x21, b"m", &[1; 21], SlotConfig::default(), &[0; 13], 30)
                .is_err()
        );
        assert!(
            write_to_slot_legacy(0x21, b"m", &[1; 2], SlotConfig::default(), &[0; 13], 70_000)
                .is_err()
        );
        let e = erase_slot(0x20, Some(&tmp)).expect("e");
        assert_eq!(&e.as_bytes()[2..11], b"123123123");
        let c = get_code(0x10, Some(&tmp)).expect("c");
        assert_eq!(&c.as_bytes()[19..28], b"123123123");
        let wc = write_config(
            GeneralConfig {
                numlock: 0,
                capslock: 1,
                scrolllock: 0xFF,
                otp_pin_required: true,
            },
            Some(&tmp),
        )
        .expect("wc");
        assert_eq!(&wc.as_bytes()[1..6], &[0, 1, 0xFF, 1, 0]);
        assert_eq!(&wc.as_bytes()[6..9], b"123");
    }

    #[test]
    fn responses_are_checked() {
        assert_eq!(
            Response::parse(&[0u8; 64]).err(),
            Some(ResponseError::Empty)
        );
        assert!(matches!(
            Response::parse(&[0u8; 63]),
            Err(ResponseError::Malformed(ParseError::Length { .. }))
        ));
        let mut raw = [0u8; 64];
        raw[1] = 0x00;
        raw[7] = 15;
        let crc = stm32_crc32(&raw[..60]);
        raw[60..].copy_from_slice(&crc.to_le_bytes());
        let ok = Response::parse(&raw).expect("valid");
        assert_eq!(ok.device_status(), DeviceStatus::Ready);
        // The CRC is computed with R[0] = 0, so a busy copy still verifies.
        raw[0] = 1;
        let busy = Response::parse(&raw).expect("valid");
        assert_eq!(busy.device_status(), DeviceStatus::Busy);
        raw[8] ^= 1;
        assert!(matches!(
            Response::parse(&raw),
            Err(ResponseError::Malformed(ParseError::Checksum { .. }))
        ));
    }

    #[test]
    fn payload_parsers_reject_short_input() {
        assert!(StatusInfo::parse(&[0; 9]).is_err());
        assert!(SlotInfo::parse(&[0; 36]).is_err());
        assert!(CodeInfo::parse(&[0; 17]).is_err());
        assert!(parse_retry_count(&[]).is_err());
        assert_eq!(parse_retry_count(&[0xFF]), Ok(None));
        let s = SlotInfo::parse(&{
            let mut p = [0u8; 53];
            p[..3].copy_from_slice(b"abc");
            p[15] = 3;
            p[29] = 42;
            p
        })
        .expect("slot");
        assert_eq!(s.name, "abc");
        assert!(s.config.eight_digits && s.config.send_enter && !s.config.send_token_id);
        assert_eq!(s.counter_or_step, 42);
    }

    #[test]
    fn slots_map_to_wire_numbers() {
        assert_eq!(Slot::Hotp(0).wire(), Some(0x10));
        assert_eq!(Slot::Hotp(3).wire(), None);
        assert_eq!(Slot::Totp(14).wire(), Some(0x2E));
        assert_eq!(Slot::Totp(15).wire(), None);
        assert_eq!(Slot::from_wire(0x13), None);
        assert_eq!(Slot::all().count(), 18);
        for s in Slot::all() {
            assert_eq!(s.wire().and_then(Slot::from_wire), Some(s));
        }
    }
}
