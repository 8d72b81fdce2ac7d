//! Simulated Nitrokey Pro firmware, written from the fact sheet (part 1): the
//! SET_REPORT/GET_REPORT processing model of 1.6 (requests accepted only when ready, busy and
//! "received" states, stale output buffer), CRC checks, both authentication generations,
//! slot storage with the "all-zero secret keeps the stored one" rule, HOTP counters that
//! advance on GET_CODE, a RAM-only TOTP clock that runs 1 % slow, SET_TIME with its flash
//! reference, and the OpenPGP card's PIN rules (retry counters, blocking, minimum lengths).
//!
//! Not simulated (answered with UNKNOWN_COMMAND like any unhandled ID): VERIFY_OTP_CODE,
//! firmware update, password safe, AES key commands.

use std::time::Duration;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::checksum::nitrokey_crc;
use crate::otp::hotp;

const LEN: usize = 64;
const PIN_FIELD: usize = 25;
const TMP_LEN: usize = 25;
const NAME_LEN: usize = 15;
const SECRET_LEN: usize = 40;
const TOKEN_ID_LEN: usize = 13;
const TIME_EPOCH: u64 = 1_388_534_400;

/// Command status codes used by the firmware.
mod st {
    pub const OK: u8 = 0;
    pub const WRONG_CRC: u8 = 1;
    pub const WRONG_SLOT: u8 = 2;
    pub const SLOT_NOT_PROGRAMMED: u8 = 3;
    pub const WRONG_PASSWORD: u8 = 4;
    pub const NOT_AUTHORIZED: u8 = 5;
    pub const TIMESTAMP_WARNING: u8 = 6;
    pub const NO_NAME_ERROR: u8 = 7;
    pub const NOT_SUPPORTED: u8 = 8;
    pub const UNKNOWN_COMMAND: u8 = 9;
    pub const ERROR_CHANGING_USER_PASSWORD: u8 = 12;
    pub const ERROR_CHANGING_ADMIN_PASSWORD: u8 = 13;
    pub const ERROR_UNBLOCKING_PIN: u8 = 14;
}

/// What makes one simulated Nitrokey different from another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NitrokeyProfile {
    /// Firmware minor version (major is 0): 7 = AUTHORIZE generation, >= 8 inline passwords.
    pub firmware_minor: u8,
    /// Smart-card serial reported by GET_STATUS.
    pub card_serial: u32,
    /// USB iSerial string.
    pub usb_serial: String,
    /// Processing time of a command that touches only RAM.
    pub fast_command: Duration,
    /// Processing time of a command that talks to the smart card or writes flash.
    pub slow_command: Duration,
    /// Length of a device "second" in real milliseconds (1010: 101 ticks of 10 ms).
    pub device_second_ms: u64,
}

impl NitrokeyProfile {
    /// A Pro with the given firmware minor version and card serial, hardware timing.
    pub fn new(firmware_minor: u8, card_serial: u32) -> Self {
        Self {
            firmware_minor,
            card_serial,
            usb_serial: format!("{card_serial:012X}"),
            fast_command: Duration::from_millis(5),
            slow_command: Duration::from_millis(150),
            device_second_ms: 1010,
        }
    }

    /// Every command completes before the host's first poll (for transcript replay).
    pub fn instant(mut self) -> Self {
        self.fast_command = Duration::ZERO;
        self.slow_command = Duration::ZERO;
        self
    }
}

#[derive(Clone)]
struct SlotRecord {
    hotp: bool,
    name: [u8; NAME_LEN],
    secret: Zeroizing<[u8; SECRET_LEN]>,
    config: u8,
    token_id: [u8; TOKEN_ID_LEN],
    counter_or_step: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeFlash {
    Erased,
    Minutes(u32),
    Invalid,
}

struct Staged {
    request: [u8; LEN],
    accepted_at_ms: u64,
    done_at_ms: u64,
    extra_busy_polls: u32,
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.request.zeroize();
    }
}

/// The RAM record SEND_OTP_DATA fills: name and secret.
type OtpStaging = (Zeroizing<[u8; NAME_LEN]>, Zeroizing<[u8; SECRET_LEN]>);

/// Simulated Nitrokey Pro firmware state.
pub struct NitrokeySim {
    profile: NitrokeyProfile,
    // Smart card and flash: survive power cycles.
    user_pin: Zeroizing<Vec<u8>>,
    admin_pin: Zeroizing<Vec<u8>>,
    user_retries: u8,
    admin_retries: u8,
    hotp: Vec<Option<SlotRecord>>,
    totp: Vec<Option<SlotRecord>>,
    general: [u8; 5],
    time_flash: TimeFlash,
    // RAM: lost on power cycle.
    device_status: u8,
    output: [u8; LEN],
    staged: Option<Staged>,
    admin_tmp: Option<Zeroizing<[u8; TMP_LEN]>>,
    user_tmp: Option<Zeroizing<[u8; TMP_LEN]>>,
    authorized_crc: Option<u32>,
    user_authorized_crc: Option<u32>,
    otp_staging: Option<OtpStaging>,
    clock_base_secs: u64,
    clock_base_ms: u64,
    rng: u64,
    pending_busy_polls: u32,
}

impl std::fmt::Debug for NitrokeySim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NitrokeySim")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// A slot as the simulator stores it (for tests and the bench's touch emulation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSlotView {
    /// Name.
    pub name: String,
    /// HOTP next counter or TOTP step.
    pub counter_or_step: u64,
    /// Configuration byte.
    pub config: u8,
}

fn c_string(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field.get(..end).unwrap_or_default()
}

fn get<const N: usize>(r: &[u8; LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = r.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn eq_ct(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl NitrokeySim {
    /// A factory-fresh device: default PINs 123456 / 12345678, 3 tries each, no slots,
    /// time reference erased, just powered on at `now_ms`.
    pub fn new(profile: NitrokeyProfile, now_ms: u64) -> Self {
        let hotp_slots = if profile.firmware_minor >= 9 { 4 } else { 3 };
        let rng = u64::from(profile.card_serial) | 1;
        Self {
            profile,
            user_pin: Zeroizing::new(b"123456".to_vec()),
            admin_pin: Zeroizing::new(b"12345678".to_vec()),
            user_retries: 3,
            admin_retries: 3,
            hotp: vec![None; hotp_slots],
            totp: vec![None; 15],
            general: [0xFF, 0xFF, 0xFF, 0, 0],
            time_flash: TimeFlash::Erased,
            device_status: 0,
            output: [0; LEN],
            staged: None,
            admin_tmp: None,
            user_tmp: None,
            authorized_crc: None,
            user_authorized_crc: None,
            otp_staging: None,
            clock_base_secs: 0,
            clock_base_ms: now_ms,
            rng,
            pending_busy_polls: 0,
        }
    }

    /// The profile.
    pub fn profile(&self) -> &NitrokeyProfile {
        &self.profile
    }

    /// Power loss: RAM state (temporary passwords, staging, output buffer, clock) is gone.
    pub fn power_cycle(&mut self, now_ms: u64) {
        self.device_status = 0;
        self.output = [0; LEN];
        self.staged = None;
        self.admin_tmp = None;
        self.user_tmp = None;
        self.authorized_crc = None;
        self.user_authorized_crc = None;
        self.otp_staging = None;
        self.clock_base_secs = 0;
        self.clock_base_ms = now_ms;
        self.pending_busy_polls = 0;
    }

    /// Makes the next accepted request stay busy for `polls` extra GET_REPORTs.
    pub fn inject_busy(&mut self, polls: u32) {
        self.pending_busy_polls = polls;
    }

    /// The device's idea of the current Unix time (RAM clock, drifting).
    pub fn device_time(&self, now_ms: u64) -> u64 {
        let elapsed = now_ms.saturating_sub(self.clock_base_ms);
        self.clock_base_secs + elapsed / self.profile.device_second_ms.max(1)
    }

    /// Remaining user / admin PIN tries.
    pub fn retry_counters(&self) -> (u8, u8) {
        (self.user_retries, self.admin_retries)
    }

    /// A stored slot (0x10.. HOTP, 0x20.. TOTP).
    pub fn slot(&self, wire: u8) -> Option<SimSlotView> {
        self.slot_ref(wire)
            .and_then(Option::as_ref)
            .map(|s| SimSlotView {
                name: String::from_utf8_lossy(c_string(&s.name)).into_owned(),
                counter_or_step: s.counter_or_step,
                config: s.config,
            })
    }

    fn slot_ref(&self, wire: u8) -> Option<&Option<SlotRecord>> {
        match wire {
            0x10..=0x1F => self.hotp.get(usize::from(wire - 0x10)),
            0x20..=0x2F => self.totp.get(usize::from(wire - 0x20)),
            _ => None,
        }
    }

    fn slot_mut(&mut self, wire: u8) -> Option<&mut Option<SlotRecord>> {
        match wire {
            0x10..=0x1F => self.hotp.get_mut(usize::from(wire - 0x10)),
            0x20..=0x2F => self.totp.get_mut(usize::from(wire - 0x20)),
            _ => None,
        }
    }

    fn advance(&mut self, now_ms: u64) {
        let due = match &self.staged {
            Some(s) => now_ms >= s.done_at_ms && s.extra_busy_polls == 0,
            None => false,
        };
        if due && let Some(s) = self.staged.take() {
            self.device_status = 1;
            self.output = self.execute(&s.request, now_ms);
            self.device_status = 0;
        } else if let Some(s) = &self.staged {
            // "Received" until the main loop picks the request up, then busy.
            self.device_status = if now_ms > s.accepted_at_ms || s.extra_busy_polls > 0 {
                1
            } else {
                3
            };
        }
    }

    /// SET_REPORT(feature). Accepted only when ready; otherwise silently dropped.
    pub fn set_report(&mut self, report: &[u8], now_ms: u64) {
        self.advance(now_ms);
        if self.device_status != 0 || self.staged.is_some() || report.len() != LEN {
            return;
        }
        let mut request = [0u8; LEN];
        request.copy_from_slice(report);
        let slow = matches!(
            request[0],
            0x01 | 0x05 | 0x06 | 0x07 | 0x09 | 0x0B | 0x0E | 0x0F | 0x11 | 0x13 | 0x14 | 0x15
        ) || (request[0] == 0x04 && (0x10..0x20).contains(&request[1]));
        let duration = if slow {
            self.profile.slow_command
        } else {
            self.profile.fast_command
        };
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.staged = Some(Staged {
            request,
            accepted_at_ms: now_ms,
            done_at_ms: now_ms.saturating_add(ms),
            extra_busy_polls: std::mem::take(&mut self.pending_busy_polls),
        });
        self.device_status = 3;
        self.advance(now_ms);
    }

    /// GET_REPORT(feature): the last completed output with R[0] = current device status.
    pub fn get_report(&mut self, now_ms: u64) -> [u8; LEN] {
        self.advance(now_ms);
        let mut out = self.output;
        out[0] = self.device_status;
        if let Some(s) = &mut self.staged {
            s.extra_busy_polls = s.extra_busy_polls.saturating_sub(1);
        }
        out
    }

    fn inline(&self) -> bool {
        self.profile.firmware_minor >= 8
    }

    fn check_admin_tmp(&self, field: &[u8]) -> bool {
        self.admin_tmp
            .as_ref()
            .is_some_and(|t| eq_ct(t.as_slice(), field))
    }

    fn check_user_tmp(&self, field: &[u8]) -> bool {
        self.user_tmp
            .as_ref()
            .is_some_and(|t| eq_ct(t.as_slice(), field))
    }

    /// Legacy firmware: the request must have been announced by AUTHORIZE with its CRC.
    fn take_authorization(&mut self, crc: u32) -> bool {
        if self.authorized_crc == Some(crc) {
            self.authorized_crc = None;
            true
        } else {
            false
        }
    }

    /// VERIFY on the card: blocked at 0, wrong decrements, right resets to 3.
    fn verify(pin: &[u8], stored: &[u8], retries: &mut u8) -> bool {
        if *retries == 0 {
            return false;
        }
        if eq_ct(pin, stored) {
            *retries = 3;
            true
        } else {
            *retries -= 1;
            false
        }
    }

    fn verify_admin(&mut self, field: &[u8]) -> bool {
        let pin = c_string(field);
        Self::verify(pin, &self.admin_pin, &mut self.admin_retries)
    }

    fn verify_user(&mut self, field: &[u8]) -> bool {
        let pin = c_string(field);
        Self::verify(pin, &self.user_pin, &mut self.user_retries)
    }

    fn execute(&mut self, r: &[u8; LEN], now_ms: u64) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        let computed = nitrokey_crc(&r[..60]);
        let carried = u32::from_le_bytes(get(r, 60));
        out[1] = r[0];
        out[2..6].copy_from_slice(&computed.to_le_bytes());
        let mut payload = [0u8; 53];
        let status = if computed != carried {
            st::WRONG_CRC
        } else {
            self.dispatch(r, computed, &mut payload, now_ms)
        };
        out[6] = status;
        out[7..60].copy_from_slice(&payload);
        payload.zeroize();
        let crc = nitrokey_crc(&out[..60]);
        out[60..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn dispatch(&mut self, r: &[u8; LEN], crc: u32, p: &mut [u8; 53], now_ms: u64) -> u8 {
        let inline = self.inline();
        match r[0] {
            0x00 => {
                p[0] = self.profile.firmware_minor;
                p[1] = 0;
                p[2..6].copy_from_slice(&self.profile.card_serial.to_le_bytes());
                p[6..11].copy_from_slice(&self.general);
                st::OK
            }
            0x07 => {
                self.admin_tmp = None;
                if self.verify_admin(&get::<PIN_FIELD>(r, 1)) {
                    self.admin_tmp = Some(Zeroizing::new(get(r, 26)));
                    st::OK
                } else {
                    st::WRONG_PASSWORD
                }
            }
            0x0E => {
                self.user_tmp = None;
                if self.verify_user(&get::<PIN_FIELD>(r, 1)) {
                    self.user_tmp = Some(Zeroizing::new(get(r, 26)));
                    st::OK
                } else {
                    st::WRONG_PASSWORD
                }
            }
            0x08 | 0x10 if inline => st::UNKNOWN_COMMAND,
            0x08 => {
                if self.check_admin_tmp(&get::<TMP_LEN>(r, 5)) {
                    self.authorized_crc = Some(u32::from_le_bytes(get(r, 1)));
                    // Firmware 0.7 forgets the temporary password after one AUTHORIZE.
                    self.admin_tmp = None;
                    st::OK
                } else {
                    st::NOT_AUTHORIZED
                }
            }
            0x10 => {
                if self.check_user_tmp(&get::<TMP_LEN>(r, 5)) {
                    self.user_authorized_crc = Some(u32::from_le_bytes(get(r, 1)));
                    self.user_tmp = None;
                    st::OK
                } else {
                    st::NOT_AUTHORIZED
                }
            }
            0x17 if inline => self.send_otp_data(r, p),
            0x01 if inline => self.write_to_slot(r),
            0x01 => {
                if !self.take_authorization(crc) {
                    return st::NOT_AUTHORIZED;
                }
                self.write_to_slot_legacy(r)
            }
            0x02 | 0x03 => {
                let Some(slot) = self.slot_ref(r[1]) else {
                    return st::WRONG_SLOT;
                };
                let Some(s) = slot else {
                    return st::SLOT_NOT_PROGRAMMED;
                };
                p[..NAME_LEN].copy_from_slice(&s.name);
                if r[0] == 0x03 {
                    p[15] = s.config;
                    p[16..29].copy_from_slice(&s.token_id);
                    p[29..37].copy_from_slice(&s.counter_or_step.to_le_bytes());
                }
                st::OK
            }
            0x04 => self.get_code(r, crc, p, now_ms),
            0x05 => {
                let ok = if inline {
                    self.check_admin_tmp(&get::<TMP_LEN>(r, 6))
                } else {
                    self.take_authorization(crc)
                };
                if !ok {
                    return st::NOT_AUTHORIZED;
                }
                self.general = get(r, 1);
                st::OK
            }
            0x06 => {
                let ok = if inline {
                    self.check_admin_tmp(&get::<TMP_LEN>(r, 2))
                } else {
                    self.take_authorization(crc)
                };
                if !ok {
                    return st::NOT_AUTHORIZED;
                }
                match self.slot_mut(r[1]) {
                    Some(s) => {
                        *s = None;
                        st::OK
                    }
                    None => st::WRONG_SLOT,
                }
            }
            0x09 => {
                p[0] = self.admin_retries;
                st::OK
            }
            0x0F => {
                p[0] = self.user_retries;
                st::OK
            }
            0x0B => self.set_time(r, now_ms),
            0x11 => {
                if !self.verify_admin(&get::<PIN_FIELD>(r, 1)) {
                    return st::WRONG_PASSWORD;
                }
                let new = get::<PIN_FIELD>(r, 26);
                let new = c_string(&new);
                if new.len() < 6 {
                    return st::ERROR_UNBLOCKING_PIN;
                }
                self.user_pin = Zeroizing::new(new.to_vec());
                self.user_retries = 3;
                st::OK
            }
            0x12 => st::OK,
            0x13 => {
                if !self.verify_admin(&get::<PIN_FIELD>(r, 1)) {
                    return st::WRONG_PASSWORD;
                }
                self.factory_reset();
                st::OK
            }
            0x14 => {
                if !self.verify_user(&get::<PIN_FIELD>(r, 1)) {
                    return st::WRONG_PASSWORD;
                }
                let new = get::<PIN_FIELD>(r, 26);
                let new = c_string(&new);
                if new.len() < 6 {
                    return st::ERROR_CHANGING_USER_PASSWORD;
                }
                self.user_pin = Zeroizing::new(new.to_vec());
                st::OK
            }
            0x15 => {
                if !self.verify_admin(&get::<PIN_FIELD>(r, 1)) {
                    return st::WRONG_PASSWORD;
                }
                let new = get::<PIN_FIELD>(r, 26);
                let new = c_string(&new);
                if new.len() < 8 {
                    return st::ERROR_CHANGING_ADMIN_PASSWORD;
                }
                self.admin_pin = Zeroizing::new(new.to_vec());
                st::OK
            }
            0x1B => {
                let size = r[1].min(55);
                p[0] = 1;
                p[1] = size;
                for b in p.iter_mut().skip(2).take(usize::from(size)) {
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    *b = (self.rng >> 32) as u8;
                }
                st::OK
            }
            _ => st::UNKNOWN_COMMAND,
        }
    }

    fn send_otp_data(&mut self, r: &[u8; LEN], p: &mut [u8; 53]) -> u8 {
        if !self.check_admin_tmp(&get::<TMP_LEN>(r, 1)) {
            return st::NOT_AUTHORIZED;
        }
        let (name, secret) = self.otp_staging.get_or_insert_with(|| {
            (
                Zeroizing::new([0u8; NAME_LEN]),
                Zeroizing::new([0u8; SECRET_LEN]),
            )
        });
        let data = get::<30>(r, 28);
        match r[26] {
            b'N' => {
                name.copy_from_slice(&data[..NAME_LEN]);
                p[..NAME_LEN].copy_from_slice(name.as_slice());
            }
            b'S' => {
                let mut offset = usize::from(r[27]) * 30;
                if offset > SECRET_LEN {
                    offset = 0;
                }
                let end = (offset + 30).min(SECRET_LEN);
                if let (Some(dst), Some(src)) =
                    (secret.get_mut(offset..end), data.get(..end - offset))
                {
                    dst.copy_from_slice(src);
                }
                p[..SECRET_LEN].copy_from_slice(secret.as_slice());
            }
            _ => {}
        }
        st::OK
    }

    fn store(
        &mut self,
        wire: u8,
        name: [u8; NAME_LEN],
        secret: Zeroizing<[u8; SECRET_LEN]>,
        config: u8,
        token_id: [u8; TOKEN_ID_LEN],
        counter_or_step: u64,
    ) -> u8 {
        let Some(slot) = self.slot_mut(wire) else {
            return st::WRONG_SLOT;
        };
        if name[0] == 0 {
            return st::NO_NAME_ERROR;
        }
        let secret = if secret.iter().all(|&b| b == 0) {
            // All-zero secret: keep the stored one (fact sheet 1.9).
            slot.as_ref().map(|s| s.secret.clone()).unwrap_or(secret)
        } else {
            secret
        };
        *slot = Some(SlotRecord {
            hotp: (0x10..0x20).contains(&wire),
            name,
            secret,
            config,
            token_id,
            counter_or_step,
        });
        st::OK
    }

    fn write_to_slot(&mut self, r: &[u8; LEN]) -> u8 {
        if !self.check_admin_tmp(&get::<TMP_LEN>(r, 1)) {
            return st::NOT_AUTHORIZED;
        }
        let Some((name, secret)) = self.otp_staging.take() else {
            return st::NOT_AUTHORIZED;
        };
        self.store(
            r[26],
            *name,
            secret,
            r[35],
            get(r, 36),
            u64::from_le_bytes(get(r, 27)),
        )
    }

    fn write_to_slot_legacy(&mut self, r: &[u8; LEN]) -> u8 {
        let wire = r[1];
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        secret[..20].copy_from_slice(&get::<20>(r, 17));
        let counter = if (0x10..0x20).contains(&wire) {
            u64::from_le_bytes(get(r, 51))
        } else {
            u64::from(u16::from_le_bytes(get(r, 51)))
        };
        self.store(wire, get(r, 2), secret, r[37], get(r, 38), counter)
    }

    fn get_code(&mut self, r: &[u8; LEN], crc: u32, p: &mut [u8; 53], now_ms: u64) -> u8 {
        let wire = r[1];
        let user_slot = (0x10..0x13).contains(&wire) || (0x20..0x2F).contains(&wire);
        if !user_slot {
            return st::WRONG_SLOT;
        }
        if self.general[3] == 1 {
            let ok = if self.inline() {
                self.check_user_tmp(&get::<TMP_LEN>(r, 19))
            } else if self.user_authorized_crc == Some(crc) {
                self.user_authorized_crc = None;
                true
            } else {
                false
            };
            if !ok {
                return st::NOT_AUTHORIZED;
            }
        }
        let device_time = self.device_time(now_ms);
        let Some(Some(slot)) = self.slot_mut(wire) else {
            return st::SLOT_NOT_PROGRAMMED;
        };
        let digits = if slot.config & 1 != 0 { 8 } else { 6 };
        let moving = if slot.hotp {
            let c = slot.counter_or_step;
            slot.counter_or_step = c.wrapping_add(1);
            c
        } else {
            let step = u64::from(slot.counter_or_step as u16);
            if step == 0 {
                return st::NOT_SUPPORTED;
            }
            device_time / step
        };
        let code = hotp(slot.secret.as_slice(), moving, digits);
        p[..4].copy_from_slice(&code.to_le_bytes());
        p[4] = slot.config;
        p[5..18].copy_from_slice(&slot.token_id);
        st::OK
    }

    fn set_time(&mut self, r: &[u8; LEN], now_ms: u64) -> u8 {
        let time = u64::from_le_bytes(get(r, 2));
        let minutes = u32::try_from(time.saturating_sub(TIME_EPOCH) / 60).unwrap_or(u32::MAX);
        let allowed = match (r[1], self.time_flash) {
            (0, TimeFlash::Invalid) => false,
            (0, TimeFlash::Minutes(m)) => minutes >= m,
            _ => true,
        };
        if !allowed {
            return st::TIMESTAMP_WARNING;
        }
        self.time_flash = TimeFlash::Minutes(minutes);
        self.clock_base_secs = time;
        self.clock_base_ms = now_ms;
        st::OK
    }

    fn factory_reset(&mut self) {
        self.user_pin = Zeroizing::new(b"123456".to_vec());
        self.admin_pin = Zeroizing::new(b"12345678".to_vec());
        self.user_retries = 3;
        self.admin_retries = 3;
        for s in self.hotp.iter_mut().chain(self.totp.iter_mut()) {
            *s = None;
        }
        self.general = [0xFF, 0xFF, 0xFF, 0, 0];
        self.admin_tmp = None;
        self.user_tmp = None;
        self.otp_staging = None;
    }

    /// Marks the persistent time reference invalid (a corrupted flash entry), for tests of
    /// SET_TIME's checked mode.
    pub fn invalidate_time_reference(&mut self) {
        self.time_flash = TimeFlash::Invalid;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cmd: u8) -> [u8; LEN] {
        let mut r = [0u8; LEN];
        r[0] = cmd;
        let crc = nitrokey_crc(&r[..60]);
        r[60..].copy_from_slice(&crc.to_le_bytes());
        r
    }

    #[test]
    fn processing_model_received_busy_ready_and_drops_while_busy() {
        let mut profile = NitrokeyProfile::new(15, 1);
        profile.slow_command = Duration::from_millis(150);
        let mut sim = NitrokeySim::new(profile, 0);
        // Before any command the output buffer is all zero (CRC field 0).
        assert_eq!(sim.get_report(0), [0u8; LEN]);
        sim.set_report(&request(0x0F), 0);
        assert_eq!(sim.get_report(0)[0], 3, "received, not started");
        assert_eq!(sim.get_report(50)[0], 1, "busy");
        // A request arriving while busy is dropped silently.
        sim.set_report(&request(0x09), 60);
        let done = sim.get_report(200);
        assert_eq!((done[0], done[1], done[7]), (0, 0x0F, 3));
        // The dropped admin-count request never ran: the buffer still answers 0x0F.
        assert_eq!(sim.get_report(400)[1], 0x0F);
    }

    #[test]
    fn wrong_crc_is_reported_and_not_executed() {
        let mut sim = NitrokeySim::new(NitrokeyProfile::new(15, 1).instant(), 0);
        let mut r = request(0x13);
        r[1..9].copy_from_slice(b"12345678");
        // CRC left over the unmodified request: wrong.
        sim.set_report(&r, 0);
        let out = sim.get_report(0);
        assert_eq!((out[1], out[6]), (0x13, 1));
        assert_eq!(sim.retry_counters(), (3, 3));
    }
}
