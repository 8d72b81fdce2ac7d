//! YubiKey OTP application over HID (fact sheet part 2): 8-byte feature reports, 70-byte
//! frames cut into 7-byte chunks, the 52-byte slot configuration and the three uses of the
//! ISO 13239 CRC-16. Pure: no I/O.

use std::fmt;

use zeroize::Zeroize;

use crate::crc::{YK_CRC_OK_RESIDUAL, yk_crc16};
use crate::reader::{ParseError, Reader, put};
use crate::secret::{AccessCode, Digits, OtpSecret};

/// Feature report length without the report-ID byte.
pub const REPORT_LEN: usize = 8;
/// Data bytes per report.
pub const CHUNK_LEN: usize = 7;
/// Frame payload length.
pub const PAYLOAD_LEN: usize = 64;
/// Whole frame: payload, command, CRC, filler.
pub const FRAME_LEN: usize = 70;
/// Number of chunks in a frame.
pub const FRAME_CHUNKS: u8 = 10;
/// Slot configuration length.
pub const CONFIG_LEN: usize = 52;
/// Offset of the current access code in a slot-write payload.
pub const CURRENT_ACCESS_OFFSET: usize = CONFIG_LEN;

/// S[7] bit: the device has not finished with the last written chunk.
pub const SLOT_WRITE_FLAG: u8 = 0x80;
/// S[7] bit: this report carries a response chunk.
pub const RESP_PENDING_FLAG: u8 = 0x40;
/// S[7] bit: the device waits for a touch.
pub const RESP_TIMEOUT_WAIT_FLAG: u8 = 0x20;
/// Low bits of S[7]: sequence number or seconds left.
pub const SEQUENCE_MASK: u8 = 0x1F;
/// Report that aborts response mode (host to device).
pub const DUMMY_REPORT_WRITE: u8 = 0x8F;

/// Command ("slot") codes.
pub mod cmd {
    /// Write configuration 1.
    pub const CONFIG1: u8 = 0x01;
    /// Write configuration 2.
    pub const CONFIG2: u8 = 0x03;
    /// Update configuration 1.
    pub const UPDATE1: u8 = 0x04;
    /// Update configuration 2.
    pub const UPDATE2: u8 = 0x05;
    /// Swap configurations.
    pub const SWAP: u8 = 0x06;
    /// Read the serial number.
    pub const DEVICE_SERIAL: u8 = 0x10;
}

/// tktFlags.
pub mod tkt {
    /// Tab before the fixed part.
    pub const TAB_FIRST: u8 = 0x01;
    /// Tab after the fixed part.
    pub const APPEND_TAB1: u8 = 0x02;
    /// Tab after the second part.
    pub const APPEND_TAB2: u8 = 0x04;
    /// Delay after the fixed part.
    pub const APPEND_DELAY1: u8 = 0x08;
    /// Delay after the second part.
    pub const APPEND_DELAY2: u8 = 0x10;
    /// Enter after the output.
    pub const APPEND_CR: u8 = 0x20;
    /// OATH-HOTP mode.
    pub const OATH_HOTP: u8 = 0x40;
    /// Protect configuration 2.
    pub const PROTECT_CFG2: u8 = 0x80;
    /// Flags an UPDATE may change.
    pub const UPDATE_MASK: u8 =
        TAB_FIRST | APPEND_TAB1 | APPEND_TAB2 | APPEND_DELAY1 | APPEND_DELAY2 | APPEND_CR;
}

/// cfgFlags (OATH-HOTP meanings).
pub mod cfg {
    /// 8-digit OATH-HOTP codes.
    pub const OATH_HOTP8: u8 = 0x02;
    /// 10 ms pacing.
    pub const PACING_10MS: u8 = 0x04;
    /// 20 ms pacing.
    pub const PACING_20MS: u8 = 0x08;
    /// First byte of the token identifier as modhex.
    pub const OATH_FIXED_MODHEX1: u8 = 0x10;
    /// First two bytes of the token identifier as modhex.
    pub const OATH_FIXED_MODHEX2: u8 = 0x40;
    /// Whole token identifier as modhex.
    pub const OATH_FIXED_MODHEX: u8 = 0x50;
    /// Flags an UPDATE may change.
    pub const UPDATE_MASK: u8 = PACING_10MS | PACING_20MS;
}

/// extFlags.
pub mod ext {
    /// Serial visible by button at startup.
    pub const SERIAL_BTN_VISIBLE: u8 = 0x01;
    /// Serial visible in the USB descriptor.
    pub const SERIAL_USB_VISIBLE: u8 = 0x02;
    /// Serial readable through the API.
    pub const SERIAL_API_VISIBLE: u8 = 0x04;
    /// Numeric keypad for digits.
    pub const USE_NUMERIC_KEYPAD: u8 = 0x08;
    /// Fast trigger.
    pub const FAST_TRIG: u8 = 0x10;
    /// Later UPDATEs allowed.
    pub const ALLOW_UPDATE: u8 = 0x20;
    /// Dormant.
    pub const DORMANT: u8 = 0x40;
    /// LED inverted.
    pub const LED_INV: u8 = 0x80;
}

/// Firmware version from the status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YkVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Build.
    pub build: u8,
}

impl YkVersion {
    /// At least `major.minor.build`.
    pub fn at_least(self, major: u8, minor: u8, build: u8) -> bool {
        (self.major, self.minor, self.build) >= (major, minor, build)
    }
}

impl fmt::Display for YkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// A status report S[0..8].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YkStatus {
    /// Firmware version.
    pub version: YkVersion,
    /// Programming sequence number.
    pub pgm_seq: u8,
    /// touchLevel (slot valid / touch bits in the low byte).
    pub touch_level: u16,
    /// S[7].
    pub flags: u8,
}

impl YkStatus {
    /// Parses an 8-byte status report.
    pub fn parse(report: &[u8]) -> Result<Self, ParseError> {
        if report.len() != REPORT_LEN {
            return Err(ParseError::Length {
                expected: REPORT_LEN,
                actual: report.len(),
            });
        }
        let mut r = Reader::new(report);
        r.skip(1)?;
        let version = YkVersion {
            major: r.u8()?,
            minor: r.u8()?,
            build: r.u8()?,
        };
        let pgm_seq = r.u8()?;
        let touch_level = r.u16_le()?;
        let flags = r.u8()?;
        Ok(Self {
            version,
            pgm_seq,
            touch_level,
            flags,
        })
    }

    /// Slot 1 holds a configuration.
    pub fn slot1_valid(&self) -> bool {
        self.touch_level & 0x01 != 0
    }

    /// Slot 2 holds a configuration.
    pub fn slot2_valid(&self) -> bool {
        self.touch_level & 0x02 != 0
    }

    /// The given slot holds a configuration.
    pub fn slot_valid(&self, slot: YkSlot) -> bool {
        match slot {
            YkSlot::One => self.slot1_valid(),
            YkSlot::Two => self.slot2_valid(),
        }
    }
}

/// One of the two OTP configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum YkSlot {
    /// Configuration 1.
    One,
    /// Configuration 2.
    Two,
}

impl YkSlot {
    /// Write command.
    pub fn config_cmd(self) -> u8 {
        match self {
            Self::One => cmd::CONFIG1,
            Self::Two => cmd::CONFIG2,
        }
    }

    /// Update command.
    pub fn update_cmd(self) -> u8 {
        match self {
            Self::One => cmd::UPDATE1,
            Self::Two => cmd::UPDATE2,
        }
    }
}

impl fmt::Display for YkSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::One => "slot 1",
            Self::Two => "slot 2",
        })
    }
}

/// A 70-byte frame (zeroized on drop: it carries keys and access codes).
#[derive(Clone)]
pub struct Frame([u8; FRAME_LEN]);

impl Drop for Frame {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame(cmd {:#04x})", self.command())
    }
}

impl Frame {
    /// payload (zero-padded to 64) ‖ command ‖ raw CRC-16 of the payload (LE) ‖ 3 zero bytes.
    pub fn new(command: u8, payload: &[u8]) -> Result<Self, ParseError> {
        if payload.len() > PAYLOAD_LEN {
            return Err(ParseError::Invalid {
                field: "payload",
                detail: "more than 64 bytes",
            });
        }
        let mut f = [0u8; FRAME_LEN];
        put(&mut f, 0, payload)?;
        let crc = yk_crc16(&f[..PAYLOAD_LEN]);
        f[PAYLOAD_LEN] = command;
        put(&mut f, PAYLOAD_LEN + 1, &crc.to_le_bytes())?;
        Ok(Self(f))
    }

    /// Command byte.
    pub fn command(&self) -> u8 {
        self.0[PAYLOAD_LEN]
    }

    /// Frame bytes.
    pub fn as_bytes(&self) -> &[u8; FRAME_LEN] {
        &self.0
    }

    /// The reports to send, in order: 7 chunk bytes ‖ 0x80 | seq. All-zero chunks other than
    /// the first and last are skipped, as every host implementation does.
    pub fn reports(&self) -> Vec<[u8; REPORT_LEN]> {
        let mut out = Vec::with_capacity(usize::from(FRAME_CHUNKS));
        for (seq, chunk) in (0u8..).zip(self.0.chunks(CHUNK_LEN)) {
            let last = seq + 1 == FRAME_CHUNKS;
            if seq != 0 && !last && chunk.iter().all(|&b| b == 0) {
                continue;
            }
            let mut r = [0u8; REPORT_LEN];
            for (d, s) in r.iter_mut().zip(chunk) {
                *d = *s;
            }
            r[CHUNK_LEN] = SLOT_WRITE_FLAG | seq;
            out.push(r);
        }
        out
    }
}

/// The report that ends response mode: 7 zero bytes ‖ 0x8F.
pub fn reset_report() -> [u8; REPORT_LEN] {
    let mut r = [0u8; REPORT_LEN];
    r[CHUNK_LEN] = DUMMY_REPORT_WRITE;
    r
}

/// A 52-byte slot configuration (zeroized on drop).
#[derive(Clone)]
pub struct SlotConfiguration([u8; CONFIG_LEN]);

impl Drop for SlotConfiguration {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SlotConfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SlotConfiguration(ext {:#04x}, tkt {:#04x}, cfg {:#04x})",
            self.0[45], self.0[46], self.0[47]
        )
    }
}

/// Raw fields of a configuration.
pub struct ConfigFields<'a> {
    /// Fixed part (≤ 16 bytes).
    pub fixed: &'a [u8],
    /// uid (6 bytes).
    pub uid: [u8; 6],
    /// key (16 bytes).
    pub key: [u8; 16],
    /// Access code protecting the slot after the write.
    pub access_code: &'a AccessCode,
    /// extFlags.
    pub ext_flags: u8,
    /// tktFlags.
    pub tkt_flags: u8,
    /// cfgFlags.
    pub cfg_flags: u8,
}

impl SlotConfiguration {
    /// Builds a configuration with its complemented CRC in bytes 50..52.
    pub fn build(f: &ConfigFields<'_>) -> Result<Self, ParseError> {
        if f.fixed.len() > 16 {
            return Err(ParseError::Invalid {
                field: "fixed",
                detail: "more than 16 bytes",
            });
        }
        let mut c = [0u8; CONFIG_LEN];
        put(&mut c, 0, f.fixed)?;
        put(&mut c, 16, &f.uid)?;
        put(&mut c, 22, &f.key)?;
        put(&mut c, 38, f.access_code.expose_bytes())?;
        c[44] = u8::try_from(f.fixed.len()).unwrap_or(16);
        c[45] = f.ext_flags;
        c[46] = f.tkt_flags;
        c[47] = f.cfg_flags;
        let crc = !yk_crc16(&c[..50]);
        put(&mut c, 50, &crc.to_le_bytes())?;
        Ok(Self(c))
    }

    /// The all-zero configuration used to delete a slot (CRC not computed).
    pub fn zero() -> Self {
        Self([0; CONFIG_LEN])
    }

    /// Bytes.
    pub fn as_bytes(&self) -> &[u8; CONFIG_LEN] {
        &self.0
    }

    /// Wraps 52 received bytes (simulator side); checks nothing.
    pub fn from_bytes(bytes: [u8; CONFIG_LEN]) -> Self {
        Self(bytes)
    }

    /// True when the CRC residual is right.
    pub fn crc_ok(&self) -> bool {
        yk_crc16(&self.0) == YK_CRC_OK_RESIDUAL
    }

    /// The slot-write payload: configuration ‖ current access code ‖ zeros.
    pub fn payload(&self, current: &AccessCode) -> Payload {
        let mut p = [0u8; PAYLOAD_LEN];
        p[..CONFIG_LEN].copy_from_slice(&self.0);
        p[CURRENT_ACCESS_OFFSET..CURRENT_ACCESS_OFFSET + 6].copy_from_slice(current.expose_bytes());
        Payload(p)
    }
}

/// A 64-byte frame payload (zeroized on drop).
pub struct Payload(pub [u8; PAYLOAD_LEN]);

impl Drop for Payload {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Token-identifier encoding flags for an OATH-HOTP slot (cfgFlags bits 0x10/0x40).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdEncoding {
    /// Neither modhex flag.
    None,
    /// OATH_FIXED_MODHEX1.
    Modhex1,
    /// OATH_FIXED_MODHEX2 (ykman's default for HOTP).
    Modhex2,
    /// OATH_FIXED_MODHEX (both).
    Modhex,
}

impl IdEncoding {
    fn bits(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Modhex1 => cfg::OATH_FIXED_MODHEX1,
            Self::Modhex2 => cfg::OATH_FIXED_MODHEX2,
            Self::Modhex => cfg::OATH_FIXED_MODHEX,
        }
    }
}

/// Largest HOTP key the slot holds.
pub const HOTP_KEY_LEN: usize = 20;
/// Largest initial moving factor (multiple of 16).
pub const MAX_IMF: u32 = 0xF_FFF0;

/// An OATH-HOTP slot configuration request.
pub struct HotpConfig<'a> {
    /// Secret (≤ 20 bytes; shorter keys are zero-padded, which HMAC treats identically).
    pub secret: &'a OtpSecret,
    /// Code length.
    pub digits: Digits,
    /// Initial moving factor: multiple of 16, at most 1 048 560.
    pub imf: u32,
    /// Token identifier typed before the code (≤ 16 bytes), empty for none.
    pub token_id: &'a [u8],
    /// Token identifier encoding.
    pub id_encoding: IdEncoding,
    /// Press Enter after the code.
    pub append_cr: bool,
    /// extFlags (ykman default: SERIAL_API_VISIBLE | ALLOW_UPDATE, plus FAST_TRIG for
    /// keyboard modes = 0x34).
    pub ext_flags: u8,
    /// Access code protecting the slot after the write.
    pub new_access_code: &'a AccessCode,
}

/// Why a HOTP configuration cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotpConfigError {
    /// Secret longer than 20 bytes.
    SecretTooLong(usize),
    /// IMF not a multiple of 16 or above 1 048 560.
    BadImf(u32),
    /// Token identifier longer than 16 bytes.
    TokenIdTooLong,
}

impl HotpConfig<'_> {
    /// The 52-byte configuration (fact sheet 2.10).
    pub fn build(&self) -> Result<SlotConfiguration, HotpConfigError> {
        let secret = self.secret.expose_bytes();
        if secret.len() > HOTP_KEY_LEN {
            return Err(HotpConfigError::SecretTooLong(secret.len()));
        }
        if !self.imf.is_multiple_of(16) || self.imf > MAX_IMF {
            return Err(HotpConfigError::BadImf(self.imf));
        }
        if self.token_id.len() > 16 {
            return Err(HotpConfigError::TokenIdTooLong);
        }
        let mut key20 = zeroize::Zeroizing::new([0u8; HOTP_KEY_LEN]);
        for (d, s) in key20.iter_mut().zip(secret) {
            *d = *s;
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&key20[..16]);
        let mut uid = [0u8; 6];
        uid[..4].copy_from_slice(&key20[16..20]);
        let imf16 = u16::try_from(self.imf / 16).map_err(|_| HotpConfigError::BadImf(self.imf))?;
        uid[4..].copy_from_slice(&imf16.to_be_bytes());
        let mut tkt_flags = tkt::OATH_HOTP;
        if self.append_cr {
            tkt_flags |= tkt::APPEND_CR;
        }
        let mut cfg_flags = self.id_encoding.bits();
        if self.digits == Digits::Eight {
            cfg_flags |= cfg::OATH_HOTP8;
        }
        let out = SlotConfiguration::build(&ConfigFields {
            fixed: self.token_id,
            uid,
            key,
            access_code: self.new_access_code,
            ext_flags: self.ext_flags,
            tkt_flags,
            cfg_flags,
        });
        key.zeroize();
        uid.zeroize();
        out.map_err(|_| HotpConfigError::TokenIdTooLong)
    }
}

/// An UPDATE configuration: identity fields zero, only update-mask flags, new access code.
pub fn update_configuration(
    ext_flags: u8,
    tkt_flags: u8,
    cfg_flags: u8,
    new_access_code: &AccessCode,
) -> SlotConfiguration {
    let fields = ConfigFields {
        fixed: &[],
        uid: [0; 6],
        key: [0; 16],
        access_code: new_access_code,
        ext_flags,
        tkt_flags: tkt_flags & tkt::UPDATE_MASK,
        cfg_flags: cfg_flags & cfg::UPDATE_MASK,
    };
    // Cannot fail: `fixed` is empty.
    SlotConfiguration::build(&fields).unwrap_or_else(|_| SlotConfiguration::zero())
}

/// Checks the response CRC residual over `expected_len` data bytes + 2 CRC bytes and returns
/// the data bytes.
pub fn check_response(data: &[u8], expected_len: usize) -> Result<&[u8], ParseError> {
    let framed = Reader::new(data).bytes(expected_len + 2)?;
    let residual = yk_crc16(framed);
    if residual != YK_CRC_OK_RESIDUAL {
        return Err(ParseError::Checksum {
            expected: u32::from(YK_CRC_OK_RESIDUAL),
            computed: u32::from(residual),
        });
    }
    Reader::new(framed).bytes(expected_len)
}

/// Parses a serial-number response (4 bytes big-endian + CRC).
pub fn parse_serial(data: &[u8]) -> Result<u32, ParseError> {
    Reader::new(check_response(data, 4)?).u32_be()
}

/// One report read while a response is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseReport {
    /// A data chunk with this sequence number.
    Chunk(u8, [u8; CHUNK_LEN]),
    /// The device is still busy with the written frame.
    Writing,
    /// The device waits for a touch (seconds left).
    TouchWait(u8),
    /// Plain status, no response pending.
    Idle,
}

/// Classifies a report read in response mode.
pub fn classify_response_report(report: &[u8]) -> Result<ResponseReport, ParseError> {
    if report.len() != REPORT_LEN {
        return Err(ParseError::Length {
            expected: REPORT_LEN,
            actual: report.len(),
        });
    }
    let mut r = Reader::new(report);
    let data: [u8; CHUNK_LEN] = r.array()?;
    let flags = r.u8()?;
    Ok(if flags & RESP_PENDING_FLAG != 0 {
        ResponseReport::Chunk(flags & SEQUENCE_MASK, data)
    } else if flags & SLOT_WRITE_FLAG != 0 {
        ResponseReport::Writing
    } else if flags & RESP_TIMEOUT_WAIT_FLAG != 0 {
        ResponseReport::TouchWait(flags & SEQUENCE_MASK)
    } else {
        ResponseReport::Idle
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_secret() -> OtpSecret {
        OtpSecret::from_slice(b"12345678901234567890").expect("secret")
    }

    #[test]
    fn hotp_config_matches_the_fact_sheet_vector() {
        let secret = rfc_secret();
        let none = AccessCode::none();
        let c = HotpConfig {
            secret: &secret,
            digits: Digits::Six,
            imf: 0,
            token_id: &[],
            id_encoding: IdEncoding::Modhex2,
            append_cr: true,
            ext_flags: ext::SERIAL_API_VISIBLE | ext::FAST_TRIG | ext::ALLOW_UPDATE,
            new_access_code: &none,
        }
        .build()
        .expect("config");
        let b = c.as_bytes();
        assert_eq!(&b[..16], &[0; 16]);
        assert_eq!(&b[16..22], &[0x37, 0x38, 0x39, 0x30, 0, 0]);
        assert_eq!(&b[22..38], b"1234567890123456");
        assert_eq!(&b[44..48], &[0x00, 0x34, 0x60, 0x40]);
        assert_eq!(&b[50..52], &[0x5F, 0xC0]);
        assert!(c.crc_ok());

        let frame = Frame::new(cmd::CONFIG1, &c.payload(&none).0).expect("frame");
        assert_eq!(&frame.as_bytes()[64..67], &[0x01, 0x95, 0x56]);
        let reports = frame.reports();
        let expected: [[u8; 8]; 8] = [
            [0, 0, 0, 0, 0, 0, 0, 0x80],
            [0, 0, 0x37, 0x38, 0x39, 0x30, 0, 0x82],
            [0, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x83],
            [0x37, 0x38, 0x39, 0x30, 0x31, 0x32, 0x33, 0x84],
            [0x34, 0x35, 0x36, 0, 0, 0, 0, 0x85],
            [0, 0, 0, 0x34, 0x60, 0x40, 0, 0x86],
            [0, 0x5F, 0xC0, 0, 0, 0, 0, 0x87],
            [0, 0x01, 0x95, 0x56, 0, 0, 0, 0x89],
        ];
        assert_eq!(reports, expected);
    }

    #[test]
    fn imf_is_big_endian_divided_by_16() {
        let secret = rfc_secret();
        let none = AccessCode::none();
        let mk = |imf| HotpConfig {
            secret: &secret,
            digits: Digits::Eight,
            imf,
            token_id: &[],
            id_encoding: IdEncoding::None,
            append_cr: false,
            ext_flags: 0,
            new_access_code: &none,
        };
        let c = mk(0x1230).build().expect("config");
        assert_eq!(&c.as_bytes()[20..22], &[0x01, 0x23]);
        assert_eq!(c.as_bytes()[47], cfg::OATH_HOTP8);
        assert_eq!(c.as_bytes()[46], tkt::OATH_HOTP);
        assert_eq!(mk(17).build().err(), Some(HotpConfigError::BadImf(17)));
        assert_eq!(
            mk(MAX_IMF + 16).build().err(),
            Some(HotpConfigError::BadImf(MAX_IMF + 16))
        );
        assert!(mk(MAX_IMF).build().is_ok());
    }

    #[test]
    fn empty_payload_frame_crc() {
        let f = Frame::new(cmd::DEVICE_SERIAL, &[]).expect("frame");
        assert_eq!(&f.as_bytes()[64..67], &[0x10, 0x6B, 0x5B]);
        let reports = f.reports();
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[1], [0, 0x10, 0x6B, 0x5B, 0, 0, 0, 0x89]);
    }

    #[test]
    fn status_and_response_parsing() {
        let s = YkStatus::parse(&[0, 5, 4, 3, 7, 0x03, 0, 0]).expect("status");
        assert_eq!(s.version.to_string(), "5.4.3");
        assert!(s.slot1_valid() && s.slot2_valid());
        assert_eq!(s.pgm_seq, 7);
        assert!(YkStatus::parse(&[0; 7]).is_err());
        let serial = 12_345_678u32.to_be_bytes();
        let crc = !yk_crc16(&serial);
        let mut data = serial.to_vec();
        data.extend_from_slice(&crc.to_le_bytes());
        data.push(0);
        assert_eq!(parse_serial(&data), Ok(12_345_678));
        data[1] ^= 1;
        assert!(parse_serial(&data).is_err());
        assert!(parse_serial(&data[..5]).is_err());
        assert_eq!(
            classify_response_report(&[1, 2, 3, 4, 5, 6, 7, 0x41]),
            Ok(ResponseReport::Chunk(1, [1, 2, 3, 4, 5, 6, 7]))
        );
        assert_eq!(classify_response_report(&[0; 8]), Ok(ResponseReport::Idle));
    }
}
