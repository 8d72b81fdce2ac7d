//! Shared test helpers: an in-memory [`Registry`] that checks codes with its own HOTP/TOTP
//! computation (the `hmac` and `sha1` crates), and shortcuts to open simulated devices.

use std::collections::HashMap;

use hmac::{Hmac, KeyInit, Mac};
use okey_hid::bench::{InitRequest, IssuedSeed, OtpKind, Registry, RegistryError, TokenIdentity};
use okey_hid::secret::{Digits, OtpCode, OtpSecret, Pin};

/// RFC 4226 HOTP computed independently of the code under test.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key length");
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = usize::from(h[19] & 0x0F);
    let word = u32::from_be_bytes([h[off], h[off + 1], h[off + 2], h[off + 3]]) & 0x7FFF_FFFF;
    word % 10u32.pow(digits)
}

pub fn pin(s: &str) -> Pin {
    Pin::new(s).expect("valid PIN")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initialising,
    Active,
    Aborted,
}

pub struct Token {
    pub state: State,
    pub secret: Vec<u8>,
    pub kind: OtpKind,
    pub digits: Digits,
    /// HOTP: next expected counter.
    pub next: u64,
    /// TOTP: recorded drift in steps.
    pub drift: i64,
    pub seeds_released: u32,
}

/// The server as the bench sees it, in memory.
#[derive(Default)]
pub struct MemRegistry {
    pub tokens: HashMap<TokenIdentity, Token>,
    /// Next initial counter to hand out for HOTP.
    pub initial_counter: u64,
    /// Secret length to hand out.
    pub secret_len: usize,
    /// Refuse the next confirmation (simulates a server-side failure).
    pub refuse_next_confirm: bool,
    pub aborts: Vec<(TokenIdentity, String)>,
    serial_seed: u8,
}

impl MemRegistry {
    pub fn new() -> Self {
        Self {
            secret_len: 20,
            ..Self::default()
        }
    }

    pub fn state(&self, t: &TokenIdentity) -> Option<State> {
        self.tokens.get(t).map(|x| x.state)
    }

    /// Would the server accept this code as the next login? (HOTP window 10, TOTP ±1 step.)
    pub fn verify(&mut self, t: &TokenIdentity, code: &OtpCode, host_time: u64) -> bool {
        let Some(tok) = self.tokens.get_mut(t) else {
            return false;
        };
        if tok.state != State::Active {
            return false;
        }
        let d = tok.digits.count();
        match tok.kind {
            OtpKind::Hotp => {
                for c in tok.next..tok.next + 10 {
                    if hotp(&tok.secret, c, d) == code.expose_value() {
                        tok.next = c + 1;
                        return true;
                    }
                }
                false
            }
            OtpKind::Totp { step } => {
                let t0 = (host_time / u64::from(step)) as i64 + tok.drift;
                (t0 - 1..=t0 + 1)
                    .any(|s| s >= 0 && hotp(&tok.secret, s as u64, d) == code.expose_value())
            }
        }
    }
}

impl Registry for MemRegistry {
    fn begin_init(&mut self, request: &InitRequest) -> Result<IssuedSeed, RegistryError> {
        if let Some(t) = self.tokens.get(&request.token)
            && t.state == State::Active
        {
            return Err(RegistryError::Refused("token is already active".into()));
        }
        self.serial_seed = self.serial_seed.wrapping_add(17);
        let secret: Vec<u8> = (0..self.secret_len.min(request.max_secret_len))
            .map(|i| (i as u8).wrapping_mul(31) ^ self.serial_seed ^ request.token.serial as u8)
            .collect();
        let initial = self.initial_counter;
        let tok = self.tokens.entry(request.token).or_insert(Token {
            state: State::Initialising,
            secret: Vec::new(),
            kind: request.kind,
            digits: request.digits,
            next: 0,
            drift: 0,
            seeds_released: 0,
        });
        tok.state = State::Initialising;
        tok.secret = secret.clone();
        tok.kind = request.kind;
        tok.digits = request.digits;
        tok.next = initial;
        tok.seeds_released += 1;
        Ok(IssuedSeed {
            secret: OtpSecret::new(secret).expect("short"),
            kind: request.kind,
            digits: request.digits,
            initial_counter: initial,
        })
    }

    fn confirm_init(
        &mut self,
        token: &TokenIdentity,
        code: &OtpCode,
        host_time: u64,
    ) -> Result<(), RegistryError> {
        if std::mem::take(&mut self.refuse_next_confirm) {
            return Err(RegistryError::Unavailable("database is read-only".into()));
        }
        let tok = self
            .tokens
            .get_mut(token)
            .ok_or_else(|| RegistryError::Refused("unknown token".into()))?;
        if tok.state != State::Initialising {
            return Err(RegistryError::Refused("token is not initialising".into()));
        }
        tok.state = State::Active;
        if self.verify(token, code, host_time) {
            Ok(())
        } else {
            if let Some(t) = self.tokens.get_mut(token) {
                t.state = State::Initialising;
            }
            Err(RegistryError::Refused("code does not match".into()))
        }
    }

    fn abort_init(&mut self, token: &TokenIdentity, reason: &str) -> Result<(), RegistryError> {
        let tok = self
            .tokens
            .get_mut(token)
            .ok_or_else(|| RegistryError::Refused("unknown token".into()))?;
        tok.state = State::Aborted;
        tok.secret.clear();
        self.aborts.push((*token, reason.to_owned()));
        Ok(())
    }

    fn hotp_counter(&mut self, token: &TokenIdentity) -> Result<u64, RegistryError> {
        self.tokens
            .get(token)
            .map(|t| t.next)
            .ok_or_else(|| RegistryError::Refused("unknown token".into()))
    }

    fn resync_hotp(
        &mut self,
        token: &TokenIdentity,
        first: &OtpCode,
        second: &OtpCode,
    ) -> Result<u64, RegistryError> {
        let tok = self
            .tokens
            .get_mut(token)
            .ok_or_else(|| RegistryError::Refused("unknown token".into()))?;
        let d = tok.digits.count();
        for c in tok.next..tok.next + 1000 {
            if hotp(&tok.secret, c, d) == first.expose_value()
                && hotp(&tok.secret, c + 1, d) == second.expose_value()
            {
                tok.next = c + 2;
                return Ok(tok.next);
            }
        }
        Err(RegistryError::Refused(
            "codes not found in the resync window".into(),
        ))
    }

    fn record_drift(
        &mut self,
        token: &TokenIdentity,
        code: &OtpCode,
        host_time: u64,
    ) -> Result<i64, RegistryError> {
        let tok = self
            .tokens
            .get_mut(token)
            .ok_or_else(|| RegistryError::Refused("unknown token".into()))?;
        let OtpKind::Totp { step } = tok.kind else {
            return Err(RegistryError::Refused("not a TOTP token".into()));
        };
        let now = (host_time / u64::from(step)) as i64;
        let window = (86_400 / i64::from(step)).max(1);
        // Search nearest offsets first.
        for k in 0..=window {
            for off in [-k, k] {
                let s = now + off;
                if s >= 0 && hotp(&tok.secret, s as u64, tok.digits.count()) == code.expose_value()
                {
                    tok.drift = off;
                    return Ok(off);
                }
            }
        }
        Err(RegistryError::Refused(
            "code not within a day of host time".into(),
        ))
    }
}

use okey_hid::nitrokey::NitrokeyPro;
use okey_hid::transport::{BoxedTransport, DeviceInfo, DeviceProvider};
use okey_hid::yubikey::YubiKeyOtp;
use okey_token_sim::{DeviceId, NitrokeyProfile, SimBench, YubiKeyProfile};

/// Unix time the simulated host clock starts at.
pub const EPOCH: u64 = 1_700_000_000;

pub const RFC_SECRET: &[u8] = b"12345678901234567890";

/// A bench with one plugged Nitrokey of this firmware minor version.
pub fn nk_bench(minor: u8) -> (SimBench, DeviceId, DeviceInfo) {
    let mut bench = SimBench::new(EPOCH);
    let id = bench.add_nitrokey(NitrokeyProfile::new(minor, 0x00A1_B200 + u32::from(minor)));
    bench.plug(id);
    let info = bench.enumerate().expect("enumerate").remove(0);
    (bench, id, info)
}

pub fn open_nk(bench: &mut SimBench, info: &DeviceInfo) -> NitrokeyPro<BoxedTransport> {
    NitrokeyPro::open(bench.open(info).expect("open")).expect("status")
}

/// A bench with one plugged YubiKey.
pub fn yk_bench(version: (u8, u8, u8)) -> (SimBench, DeviceId, DeviceInfo) {
    let mut bench = SimBench::new(EPOCH);
    let id = bench.add_yubikey(YubiKeyProfile::new(version, 12_345_678));
    bench.plug(id);
    let info = bench.enumerate().expect("enumerate").remove(0);
    (bench, id, info)
}

pub fn open_yk(bench: &mut SimBench, info: &DeviceInfo) -> YubiKeyOtp<BoxedTransport> {
    YubiKeyOtp::open(bench.open(info).expect("open")).expect("status")
}

/// The three firmware generations worth testing: 0.7 (AUTHORIZE), 0.8 (inline passwords,
/// 3 HOTP slots), 0.15 (current, verification slot).
pub const NK_FIRMWARES: [u8; 3] = [7, 8, 15];
