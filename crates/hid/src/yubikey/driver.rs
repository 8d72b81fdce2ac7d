//! YubiKey OTP driver: frame writes with write-flag polling, response reading, and the
//! pgmSeq rule that is the only evidence of an accepted configuration (fact sheet 2.5–2.7).

use std::time::Duration;

use thiserror::Error;

use super::proto::{
    self, Frame, HotpConfig, HotpConfigError, ResponseReport, SLOT_WRITE_FLAG, SlotConfiguration,
    YkSlot, YkStatus, YkVersion, cmd,
};
use crate::reader::ParseError;
use crate::secret::AccessCode;
use crate::transport::{Transport, TransportError};

/// A YubiKey operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum YubiKeyError {
    /// The transport failed (device unplugged, OS error).
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// A report was malformed.
    #[error("malformed report: {0}")]
    Malformed(ParseError),
    /// The device kept its write flag set beyond the budget.
    #[error("the YubiKey stayed busy beyond {0:?}")]
    Busy(Duration),
    /// The configuration was not accepted (pgmSeq unchanged). The key gives no reason.
    #[error(
        "the YubiKey rejected the {0}: wrong or missing access code, protected slot, or unsupported settings"
    )]
    Rejected(&'static str),
    /// No response arrived within the budget.
    #[error("the YubiKey did not answer within {0:?}")]
    NoResponse(Duration),
    /// The key waits for a touch, which a bench operation never asks for.
    #[error("the YubiKey waits for a touch")]
    TouchRequired,
    /// The firmware cannot do this.
    #[error("not supported by YubiKey firmware {version}: {what}")]
    Unsupported {
        /// Firmware version.
        version: YkVersion,
        /// What was asked.
        what: &'static str,
    },
    /// The requested configuration is invalid.
    #[error("invalid HOTP configuration: {0:?}")]
    Config(HotpConfigError),
}

impl YubiKeyError {
    /// True when the device is gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Transport(TransportError::Disconnected))
    }
}

/// Polling budget (defaults: ykpers, fact sheet 2.5–2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YkTiming {
    /// First pause when the device is busy; doubles each time.
    pub first_delay: Duration,
    /// Cap of the doubling pause.
    pub delay_cap: Duration,
    /// Total pause allowed for the write flag to clear.
    pub write_budget: Duration,
    /// Total pause allowed for a response to start.
    pub response_budget: Duration,
    /// Timeout of each transfer.
    pub transfer_timeout: Duration,
}

impl Default for YkTiming {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(1),
            delay_cap: Duration::from_millis(500),
            write_budget: Duration::from_millis(1150),
            response_budget: Duration::from_millis(1000),
            transfer_timeout: Duration::from_millis(1000),
        }
    }
}

/// Longest response this driver reads (chunks).
const MAX_RESPONSE_CHUNKS: usize = 16;

/// A YubiKey OTP interface on a transport.
pub struct YubiKeyOtp<T: Transport> {
    transport: T,
    timing: YkTiming,
    status: YkStatus,
}

impl<T: Transport> std::fmt::Debug for YubiKeyOtp<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YubiKeyOtp")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> YubiKeyOtp<T> {
    /// Opens with default timing (reads the status report).
    pub fn open(transport: T) -> Result<Self, YubiKeyError> {
        Self::open_with(transport, YkTiming::default())
    }

    /// Opens with explicit timing.
    pub fn open_with(transport: T, timing: YkTiming) -> Result<Self, YubiKeyError> {
        let mut dev = Self {
            transport,
            timing,
            status: YkStatus {
                version: YkVersion {
                    major: 0,
                    minor: 0,
                    build: 0,
                },
                pgm_seq: 0,
                touch_level: 0,
                flags: 0,
            },
        };
        dev.status()?;
        Ok(dev)
    }

    /// Gives the transport back.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Firmware version.
    pub fn version(&self) -> YkVersion {
        self.status.version
    }

    fn read_report(&mut self) -> Result<[u8; proto::REPORT_LEN], YubiKeyError> {
        let mut buf = [0u8; proto::REPORT_LEN];
        let n = self
            .transport
            .get_feature_report(&mut buf, self.timing.transfer_timeout)?;
        if n != proto::REPORT_LEN {
            return Err(YubiKeyError::Malformed(ParseError::Length {
                expected: proto::REPORT_LEN,
                actual: n,
            }));
        }
        Ok(buf)
    }

    /// Reads the status report.
    pub fn status(&mut self) -> Result<YkStatus, YubiKeyError> {
        let r = self.read_report()?;
        let s = YkStatus::parse(&r).map_err(YubiKeyError::Malformed)?;
        self.status = s;
        Ok(s)
    }

    /// Polls until the write flag is clear; returns that status.
    fn wait_write_clear(&mut self) -> Result<YkStatus, YubiKeyError> {
        let mut waited = Duration::ZERO;
        let mut delay = self.timing.first_delay;
        loop {
            let s = self.status()?;
            if s.flags & SLOT_WRITE_FLAG == 0 {
                return Ok(s);
            }
            if waited >= self.timing.write_budget {
                return Err(YubiKeyError::Busy(waited));
            }
            self.transport.pause(delay);
            waited += delay;
            delay = (delay * 2).min(self.timing.delay_cap);
        }
    }

    fn send_frame(&mut self, frame: &Frame) -> Result<YkStatus, YubiKeyError> {
        let mut first = None;
        for report in frame.reports() {
            let s = self.wait_write_clear()?;
            first.get_or_insert(s);
            self.transport
                .send_feature_report(&report, self.timing.transfer_timeout)?;
        }
        first.ok_or(YubiKeyError::Malformed(ParseError::Invalid {
            field: "frame",
            detail: "no reports",
        }))
    }

    /// Writes a configuration-type frame and checks pgmSeq (ykman's rule).
    fn write_config_frame(
        &mut self,
        frame: &Frame,
        what: &'static str,
    ) -> Result<(), YubiKeyError> {
        let before = self.send_frame(frame)?;
        let after = self.wait_write_clear()?;
        let old = before.pgm_seq;
        let new = after.pgm_seq;
        let accepted = new == old.wrapping_add(1)
            || (new == 0 && old > 0 && !after.slot1_valid() && !after.slot2_valid());
        if accepted {
            Ok(())
        } else {
            Err(YubiKeyError::Rejected(what))
        }
    }

    /// Sends a command frame and reads `expected_len` response bytes (CRC checked).
    fn read_response(
        &mut self,
        frame: &Frame,
        expected_len: usize,
    ) -> Result<Vec<u8>, YubiKeyError> {
        self.send_frame(frame)?;
        let result = self.collect_response();
        // Always leave response mode.
        let reset = self
            .transport
            .send_feature_report(&proto::reset_report(), self.timing.transfer_timeout);
        let data = result?;
        reset?;
        proto::check_response(&data, expected_len)
            .map(<[u8]>::to_vec)
            .map_err(YubiKeyError::Malformed)
    }

    fn collect_response(&mut self) -> Result<Vec<u8>, YubiKeyError> {
        let mut data = Vec::new();
        let mut expected_seq = 0u8;
        let mut waited = Duration::ZERO;
        let mut delay = self.timing.first_delay;
        loop {
            let report = self.read_report()?;
            match proto::classify_response_report(&report).map_err(YubiKeyError::Malformed)? {
                ResponseReport::Chunk(seq, chunk) => {
                    if seq == 0 && !data.is_empty() {
                        return Ok(data);
                    }
                    if seq == expected_seq {
                        data.extend_from_slice(&chunk);
                        expected_seq += 1;
                        if data.len() > MAX_RESPONSE_CHUNKS * proto::CHUNK_LEN {
                            return Err(YubiKeyError::Malformed(ParseError::Invalid {
                                field: "response",
                                detail: "longer than any known response",
                            }));
                        }
                    }
                    continue;
                }
                ResponseReport::TouchWait(_) => return Err(YubiKeyError::TouchRequired),
                ResponseReport::Idle => {
                    return Err(YubiKeyError::Rejected("command"));
                }
                ResponseReport::Writing => {}
            }
            if waited >= self.timing.response_budget {
                return Err(YubiKeyError::NoResponse(waited));
            }
            self.transport.pause(delay);
            waited += delay;
            delay = (delay * 2).min(self.timing.delay_cap);
        }
    }

    fn require(&self, ok: bool, what: &'static str) -> Result<(), YubiKeyError> {
        if ok {
            Ok(())
        } else {
            Err(YubiKeyError::Unsupported {
                version: self.status.version,
                what,
            })
        }
    }

    /// Serial number (firmware >= 2.2; the slot config must allow API reads).
    pub fn serial(&mut self) -> Result<u32, YubiKeyError> {
        self.require(self.status.version.at_least(2, 2, 0), "reading the serial")?;
        let frame = Frame::new(cmd::DEVICE_SERIAL, &[]).map_err(YubiKeyError::Malformed)?;
        let data = self.read_response(&frame, 4)?;
        crate::reader::Reader::new(&data)
            .u32_be()
            .map_err(YubiKeyError::Malformed)
    }

    /// Writes an OATH-HOTP configuration into `slot`, authorised by `current` (the slot's
    /// access code now; [`AccessCode::none`] when unprotected).
    pub fn program_hotp(
        &mut self,
        slot: YkSlot,
        config: &HotpConfig<'_>,
        current: &AccessCode,
    ) -> Result<(), YubiKeyError> {
        self.require(self.status.version.at_least(2, 1, 0), "OATH-HOTP")?;
        if config.imf != 0 {
            self.require(
                self.status.version.at_least(2, 2, 0),
                "an initial moving factor",
            )?;
        }
        let built = config.build().map_err(YubiKeyError::Config)?;
        self.write_configuration(slot, &built, current)
    }

    /// Writes a prepared configuration.
    pub fn write_configuration(
        &mut self,
        slot: YkSlot,
        config: &SlotConfiguration,
        current: &AccessCode,
    ) -> Result<(), YubiKeyError> {
        let frame = Frame::new(slot.config_cmd(), &config.payload(current).0)
            .map_err(YubiKeyError::Malformed)?;
        self.write_config_frame(&frame, "configuration")
    }

    /// Changes (or sets, or with `new` = none removes) the access code of a slot through an
    /// UPDATE, keeping its secret. `*_flags` are re-sent (only update-mask bits count).
    pub fn change_access_code(
        &mut self,
        slot: YkSlot,
        flags: (u8, u8, u8),
        current: &AccessCode,
        new: &AccessCode,
    ) -> Result<(), YubiKeyError> {
        let v = self.status.version;
        self.require(v.at_least(2, 3, 0), "slot updates")?;
        self.require(
            !v.at_least(4, 3, 2) || v.at_least(4, 3, 6),
            "changing the access code by update (firmware 4.3.2 to 4.3.5)",
        )?;
        let (ext_flags, tkt_flags, cfg_flags) = flags;
        let config = proto::update_configuration(ext_flags, tkt_flags, cfg_flags, new);
        let frame = Frame::new(slot.update_cmd(), &config.payload(current).0)
            .map_err(YubiKeyError::Malformed)?;
        self.write_config_frame(&frame, "access code change")
    }

    /// Deletes a slot configuration (all-zero configuration + current access code).
    pub fn delete_slot(&mut self, slot: YkSlot, current: &AccessCode) -> Result<(), YubiKeyError> {
        let frame = Frame::new(
            slot.config_cmd(),
            &SlotConfiguration::zero().payload(current).0,
        )
        .map_err(YubiKeyError::Malformed)?;
        self.write_config_frame(&frame, "deletion")
    }

    /// Swaps the two configurations (firmware >= 2.3).
    pub fn swap_slots(&mut self) -> Result<(), YubiKeyError> {
        self.require(self.status.version.at_least(2, 3, 0), "swapping slots")?;
        let frame = Frame::new(cmd::SWAP, &[]).map_err(YubiKeyError::Malformed)?;
        self.write_config_frame(&frame, "swap")
    }
}
