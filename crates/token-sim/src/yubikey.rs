//! Simulated YubiKey OTP application, written from the fact sheet (part 2) and its
//! recommended fixture behaviour (2.17): status reports, chunked frame writes with the write
//! flag, frame and configuration CRCs, access-code checks with silent rejection, pgmSeq
//! bookkeeping, delete and swap, UPDATE, serial reads in response mode, and OATH-HOTP slots
//! whose codes appear only when the key is touched.

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::checksum::yubikey_crc;
use crate::otp::hotp;

const REPORT: usize = 8;
const FRAME: usize = 70;
const CRC_OK_RESIDUAL: u16 = 0xF0B8;

/// What makes one simulated YubiKey different from another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YubiKeyProfile {
    /// Firmware version.
    pub version: (u8, u8, u8),
    /// Serial number.
    pub serial: u32,
    /// Status reads showing the write flag after an intermediate chunk.
    pub chunk_busy_reads: u8,
    /// Status reads showing the write flag after the last chunk (flash programming).
    pub commit_busy_reads: u8,
}

impl YubiKeyProfile {
    /// A key with this version and serial, busy for 2 reads after a frame.
    pub fn new(version: (u8, u8, u8), serial: u32) -> Self {
        Self {
            version,
            serial,
            chunk_busy_reads: 0,
            commit_busy_reads: 2,
        }
    }

    /// No busy reads at all (for transcript replay).
    pub fn instant(mut self) -> Self {
        self.chunk_busy_reads = 0;
        self.commit_busy_reads = 0;
        self
    }

    fn at_least(&self, v: (u8, u8, u8)) -> bool {
        self.version >= v
    }
}

#[derive(Clone)]
struct YkSlotState {
    key: Zeroizing<[u8; 20]>,
    access: Zeroizing<[u8; 6]>,
    ext: u8,
    tkt: u8,
    cfg: u8,
    counter: u64,
    hotp: bool,
}

enum Mode {
    Status,
    Response { data: Vec<u8>, next: usize },
}

/// Simulated YubiKey OTP firmware state.
pub struct YubiKeySim {
    profile: YubiKeyProfile,
    pgm_seq: u8,
    slots: [Option<YkSlotState>; 2],
    frame: Zeroizing<[u8; FRAME]>,
    busy_reads: u8,
    mode: Mode,
}

impl std::fmt::Debug for YubiKeySim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YubiKeySim")
            .field("profile", &self.profile)
            .field("pgm_seq", &self.pgm_seq)
            .finish_non_exhaustive()
    }
}

fn eq_ct(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl YubiKeySim {
    /// A key with both slots empty and pgmSeq 0.
    pub fn new(profile: YubiKeyProfile) -> Self {
        Self {
            profile,
            pgm_seq: 0,
            slots: [None, None],
            frame: Zeroizing::new([0; FRAME]),
            busy_reads: 0,
            mode: Mode::Status,
        }
    }

    /// The profile.
    pub fn profile(&self) -> &YubiKeyProfile {
        &self.profile
    }

    /// Power loss: response mode and partial frames are gone; slots persist.
    pub fn power_cycle(&mut self) {
        self.frame.zeroize();
        self.busy_reads = 0;
        self.mode = Mode::Status;
    }

    /// Keeps the write flag up for `reads` more status reads.
    pub fn inject_busy(&mut self, reads: u8) {
        self.busy_reads = self.busy_reads.saturating_add(reads);
    }

    /// Current programming sequence number.
    pub fn pgm_seq(&self) -> u8 {
        self.pgm_seq
    }

    /// HOTP counter of a slot (1 or 2), if it holds an OATH-HOTP configuration.
    pub fn hotp_counter(&self, slot: u8) -> Option<u64> {
        self.slot(slot).and_then(|s| s.hotp.then_some(s.counter))
    }

    /// True when the slot holds a configuration.
    pub fn slot_configured(&self, slot: u8) -> bool {
        self.slot(slot).is_some()
    }

    fn slot(&self, slot: u8) -> Option<&YkSlotState> {
        self.slots
            .get(usize::from(slot.wrapping_sub(1)))
            .and_then(Option::as_ref)
    }

    /// A touch of the given slot: an OATH-HOTP slot types its next code (the counter
    /// advances). Returns the code text as typed, `None` for other slots.
    pub fn touch(&mut self, slot: u8) -> Option<String> {
        let s = self
            .slots
            .get_mut(usize::from(slot.wrapping_sub(1)))?
            .as_mut()?;
        if !s.hotp {
            return None;
        }
        let digits = if s.cfg & 0x02 != 0 { 8 } else { 6 };
        let code = hotp(s.key.as_slice(), s.counter, digits);
        s.counter = s.counter.wrapping_add(1);
        Some(format!("{code:0width$}", width = digits as usize))
    }

    /// touchLevel low byte: only the "slot valid" bits. The touch-triggered bits (0x04/0x08,
    /// fw >= 3.0) have no documented rule in the sources, so the simulator never sets them.
    fn touch_level(&self) -> u16 {
        u16::from(self.slots[0].is_some()) | (u16::from(self.slots[1].is_some()) << 1)
    }

    fn status_report(&self, flags: u8) -> [u8; REPORT] {
        let (ma, mi, b) = self.profile.version;
        let t = self.touch_level().to_le_bytes();
        [0, ma, mi, b, self.pgm_seq, t[0], t[1], flags]
    }

    /// GET_REPORT(feature).
    pub fn get_report(&mut self) -> [u8; REPORT] {
        if self.busy_reads > 0 {
            self.busy_reads -= 1;
            return self.status_report(0x80);
        }
        match &mut self.mode {
            Mode::Status => self.status_report(0),
            Mode::Response { data, next } => {
                let chunks = data.len().div_ceil(7);
                let (idx, seq) = if *next < chunks {
                    let i = *next;
                    *next += 1;
                    (i, i as u8)
                } else {
                    (0, 0)
                };
                let mut r = [0u8; REPORT];
                for (d, s) in r.iter_mut().zip(data.iter().skip(idx * 7).take(7)) {
                    *d = *s;
                }
                r[7] = 0x40 | seq;
                r
            }
        }
    }

    /// SET_REPORT(feature).
    pub fn set_report(&mut self, report: &[u8]) {
        let Ok(r) = <[u8; REPORT]>::try_from(report) else {
            return;
        };
        if self.busy_reads > 0 {
            // Still consuming the previous chunk: the write is lost.
            return;
        }
        let flags = r[7];
        if flags == 0x8F || flags == 0xFF {
            self.mode = Mode::Status;
            return;
        }
        if flags & 0x80 == 0 {
            return;
        }
        let seq = usize::from(flags & 0x1F);
        if seq >= 10 {
            return;
        }
        if seq == 0 {
            self.frame.zeroize();
            self.mode = Mode::Status;
        }
        if let Some(dst) = self.frame.get_mut(seq * 7..seq * 7 + 7) {
            dst.copy_from_slice(&r[..7]);
        }
        if seq == 9 {
            self.busy_reads = self.profile.commit_busy_reads;
            self.process_frame();
            self.frame.zeroize();
        } else {
            self.busy_reads = self.profile.chunk_busy_reads;
        }
    }

    fn bump(&mut self) {
        self.pgm_seq = self.pgm_seq.wrapping_add(1);
        if self.pgm_seq == 0 {
            self.pgm_seq = 1;
        }
    }

    fn access_ok(&self, idx: usize, current: &[u8]) -> bool {
        match self.slots.get(idx).and_then(Option::as_ref) {
            Some(s) if s.access.iter().any(|&b| b != 0) => eq_ct(s.access.as_slice(), current),
            _ => true,
        }
    }

    fn process_frame(&mut self) {
        let payload: [u8; 64] = match self.frame.get(..64).and_then(|p| p.try_into().ok()) {
            Some(p) => p,
            None => return,
        };
        let mut payload = Zeroizing::new(payload);
        let cmd = self.frame[64];
        let crc = u16::from_le_bytes([self.frame[65], self.frame[66]]);
        if yubikey_crc(payload.as_slice()) != crc {
            return;
        }
        match cmd {
            0x01 | 0x03 => self.write_config(usize::from(cmd == 0x03), &payload),
            0x04 | 0x05 => self.update_config(usize::from(cmd == 0x05), &payload),
            0x06 if self.profile.at_least((2, 3, 0)) => {
                self.slots.swap(0, 1);
                self.bump();
            }
            0x10 if self.profile.at_least((2, 2, 0)) => {
                let mut data = self.profile.serial.to_be_bytes().to_vec();
                let crc = !yubikey_crc(&data);
                data.extend_from_slice(&crc.to_le_bytes());
                data.resize(data.len().div_ceil(7) * 7, 0);
                self.mode = Mode::Response { data, next: 0 };
            }
            _ => {}
        }
        payload.zeroize();
    }

    fn write_config(&mut self, idx: usize, payload: &[u8; 64]) {
        let config = &payload[..52];
        let current = &payload[52..58];
        if !self.access_ok(idx, current) {
            return;
        }
        if config.iter().all(|&b| b == 0) {
            if let Some(s) = self.slots.get_mut(idx) {
                *s = None;
            }
            if self.slots.iter().all(Option::is_none) {
                self.pgm_seq = 0;
            } else {
                self.bump();
            }
            return;
        }
        if yubikey_crc(config) != CRC_OK_RESIDUAL {
            return;
        }
        let (ext, tkt, cfg) = (config[45], config[46], config[47]);
        let hotp = tkt & 0x40 != 0 && cfg & 0x20 == 0;
        if hotp && !self.profile.at_least((2, 1, 0)) {
            return;
        }
        let imf = u64::from(u16::from_be_bytes([config[20], config[21]])) * 16;
        if hotp && imf != 0 && !self.profile.at_least((2, 2, 0)) {
            return;
        }
        let mut key = Zeroizing::new([0u8; 20]);
        key[..16].copy_from_slice(&config[22..38]);
        key[16..].copy_from_slice(&config[16..20]);
        let mut access = Zeroizing::new([0u8; 6]);
        access.copy_from_slice(&config[38..44]);
        if let Some(s) = self.slots.get_mut(idx) {
            *s = Some(YkSlotState {
                key,
                access,
                ext,
                tkt,
                cfg,
                counter: imf,
                hotp,
            });
        }
        self.bump();
    }

    fn update_config(&mut self, idx: usize, payload: &[u8; 64]) {
        if !self.profile.at_least((2, 3, 0)) || !self.access_ok(idx, &payload[52..58]) {
            return;
        }
        let config = &payload[..52];
        if yubikey_crc(config) != CRC_OK_RESIDUAL || config[..38].iter().any(|&b| b != 0) {
            return;
        }
        let Some(Some(s)) = self.slots.get_mut(idx) else {
            return;
        };
        if s.ext & 0x20 == 0 {
            return;
        }
        const TKT_MASK: u8 = 0x3F;
        const CFG_MASK: u8 = 0x0C;
        s.access.copy_from_slice(&config[38..44]);
        s.ext = config[45];
        s.tkt = (s.tkt & !TKT_MASK) | (config[46] & TKT_MASK);
        s.cfg = (s.cfg & !CFG_MASK) | (config[47] & CFG_MASK);
        self.bump();
    }
}
