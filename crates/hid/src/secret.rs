//! Secret-bearing types: PINs, OTP seeds, YubiKey access codes, Nitrokey temporary passwords and
//! one-time codes. Each is zeroized on drop, has a `Debug` that prints nothing secret, compares
//! in constant time, and exposes its bytes only through a function whose name says so.

use std::fmt;

use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

/// A secret value was rejected before it reached a device.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretError {
    /// PIN is empty, longer than 25 bytes, or contains a NUL byte.
    #[error("a PIN must be 1 to 25 bytes long and contain no NUL byte")]
    PinFormat,
    /// OTP secret longer than the device accepts.
    #[error("OTP secret is {len} bytes, the device accepts at most {max}")]
    SecretLength {
        /// Given length.
        len: usize,
        /// Device maximum.
        max: usize,
    },
    /// Access code text is not 12 hexadecimal digits.
    #[error("an access code is 6 bytes written as 12 hexadecimal digits")]
    AccessCodeFormat,
    /// The system random source failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Largest PIN the Nitrokey HID protocol can carry (field size).
pub const MAX_PIN_LEN: usize = 25;

/// A user or admin PIN as typed by a person (ASCII or UTF-8 bytes, no NUL).
#[derive(Clone)]
pub struct Pin(Zeroizing<Vec<u8>>);

impl Pin {
    /// Checks and wraps a PIN.
    pub fn new(pin: &str) -> Result<Self, SecretError> {
        Self::from_bytes(pin.as_bytes())
    }

    /// Checks and wraps PIN bytes.
    pub fn from_bytes(pin: &[u8]) -> Result<Self, SecretError> {
        if pin.is_empty() || pin.len() > MAX_PIN_LEN || pin.contains(&0) {
            return Err(SecretError::PinFormat);
        }
        Ok(Self(Zeroizing::new(pin.to_vec())))
    }

    /// The PIN bytes, to be placed in a request.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a checked PIN; present for API completeness.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Pin {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0.as_slice().ct_eq(other.0.as_slice()))
    }
}

impl Eq for Pin {}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Default Nitrokey user PIN after a factory reset.
pub const DEFAULT_USER_PIN: &str = "123456";
/// Default Nitrokey admin PIN after a factory reset.
pub const DEFAULT_ADMIN_PIN: &str = "12345678";

/// An OTP seed (HMAC-SHA1 key) as raw bytes.
#[derive(Clone)]
pub struct OtpSecret(Zeroizing<Vec<u8>>);

impl OtpSecret {
    /// Largest secret any supported device stores (Nitrokey Pro firmware >= 0.8).
    pub const MAX_LEN: usize = 40;

    /// Wraps seed bytes (taking ownership so the only copy is the zeroizing one).
    pub fn new(bytes: Vec<u8>) -> Result<Self, SecretError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() > Self::MAX_LEN {
            return Err(SecretError::SecretLength {
                len: bytes.len(),
                max: Self::MAX_LEN,
            });
        }
        Ok(Self(bytes))
    }

    /// Copies seed bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SecretError> {
        Self::new(bytes.to_vec())
    }

    /// The secret bytes, to be placed in a request.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty secret ("keep the stored secret" on a Nitrokey slot rewrite).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Erases the secret now (it is also erased on drop).
    pub fn wipe(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for OtpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OtpSecret(<{} bytes redacted>)", self.0.len())
    }
}

/// A YubiKey OTP access code: 6 bytes protecting a slot configuration. All zero means none.
#[derive(Clone, Default)]
pub struct AccessCode([u8; 6]);

impl AccessCode {
    /// No access code (all zero).
    pub fn none() -> Self {
        Self([0; 6])
    }

    /// Wraps 6 bytes.
    pub fn from_bytes(bytes: [u8; 6]) -> Self {
        Self(bytes)
    }

    /// Parses 12 hexadecimal digits.
    pub fn parse_hex(text: &str) -> Result<Self, SecretError> {
        let t = text.trim().as_bytes();
        if t.len() != 12 {
            return Err(SecretError::AccessCodeFormat);
        }
        let mut out = [0u8; 6];
        for (i, pair) in t.chunks(2).enumerate() {
            let hi = hex_val(pair.first().copied()).ok_or(SecretError::AccessCodeFormat)?;
            let lo = hex_val(pair.get(1).copied()).ok_or(SecretError::AccessCodeFormat)?;
            if let Some(slot) = out.get_mut(i) {
                *slot = (hi << 4) | lo;
            }
        }
        Ok(Self(out))
    }

    /// True when no access code is set.
    pub fn is_none(&self) -> bool {
        bool::from(self.0.ct_eq(&[0u8; 6]))
    }

    /// The code bytes, to be placed in a request.
    pub fn expose_bytes(&self) -> &[u8; 6] {
        &self.0
    }
}

fn hex_val(c: Option<u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Drop for AccessCode {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PartialEq for AccessCode {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for AccessCode {}

impl fmt::Debug for AccessCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            f.write_str("AccessCode(none)")
        } else {
            f.write_str("AccessCode(<redacted>)")
        }
    }
}

/// Length of a Nitrokey temporary password field.
pub const TEMP_PASSWORD_LEN: usize = 25;

/// A Nitrokey temporary password: 25 bytes held in the device's RAM after a successful
/// FIRST_AUTHENTICATE / USER_AUTHENTICATE, and embedded in (fw >= 0.8) or authorising (fw <= 0.7)
/// the commands that need it.
#[derive(Clone)]
pub struct TempPassword([u8; TEMP_PASSWORD_LEN]);

impl TempPassword {
    /// Wraps 25 raw bytes.
    pub fn from_bytes(bytes: [u8; TEMP_PASSWORD_LEN]) -> Self {
        Self(bytes)
    }

    /// A C-string style password (zero padded), as libnitrokey's tests use ("123123123").
    pub fn from_text(text: &str) -> Result<Self, SecretError> {
        let b = text.as_bytes();
        if b.is_empty() || b.len() > TEMP_PASSWORD_LEN || b.contains(&0) {
            return Err(SecretError::PinFormat);
        }
        let mut out = [0u8; TEMP_PASSWORD_LEN];
        for (dst, src) in out.iter_mut().zip(b) {
            *dst = *src;
        }
        Ok(Self(out))
    }

    /// 25 random alphanumeric bytes from the system random source.
    pub fn random() -> Result<Self, SecretError> {
        const ALPHABET: &[u8; 62] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut out = [0u8; TEMP_PASSWORD_LEN];
        let mut filled = 0;
        let mut raw = Zeroizing::new([0u8; 64]);
        while filled < TEMP_PASSWORD_LEN {
            getrandom::fill(raw.as_mut_slice()).map_err(|_| SecretError::Random)?;
            for &b in raw.iter() {
                // Rejection sampling keeps the distribution uniform: 248 = 4 * 62.
                if b < 248
                    && let (Some(dst), Some(c)) =
                        (out.get_mut(filled), ALPHABET.get(usize::from(b % 62)))
                {
                    *dst = *c;
                    filled += 1;
                }
            }
        }
        Ok(Self(out))
    }

    /// The raw bytes, to be placed in a request.
    pub fn expose_bytes(&self) -> &[u8; TEMP_PASSWORD_LEN] {
        &self.0
    }
}

impl Drop for TempPassword {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for TempPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TempPassword(<redacted>)")
    }
}

/// Where the driver gets a fresh temporary password for each authentication.
pub trait TempPasswordSource: Send {
    /// A new temporary password.
    fn next_password(&mut self) -> Result<TempPassword, SecretError>;
}

/// Fresh random passwords from the system random source (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomTempPasswords;

impl TempPasswordSource for RandomTempPasswords {
    fn next_password(&mut self) -> Result<TempPassword, SecretError> {
        TempPassword::random()
    }
}

/// Always the same password: for replaying recorded transcripts, never for real devices.
#[derive(Debug, Clone)]
pub struct FixedTempPassword(pub TempPassword);

impl TempPasswordSource for FixedTempPassword {
    fn next_password(&mut self) -> Result<TempPassword, SecretError> {
        Ok(self.0.clone())
    }
}

/// Number of digits of an OTP code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digits {
    /// Six digits.
    Six,
    /// Eight digits.
    Eight,
}

impl Digits {
    /// 6 or 8.
    pub fn count(self) -> u32 {
        match self {
            Self::Six => 6,
            Self::Eight => 8,
        }
    }

    /// 10^digits.
    pub fn modulus(self) -> u32 {
        match self {
            Self::Six => 1_000_000,
            Self::Eight => 100_000_000,
        }
    }

    /// From 6 or 8.
    pub fn from_count(n: u32) -> Option<Self> {
        match n {
            6 => Some(Self::Six),
            8 => Some(Self::Eight),
            _ => None,
        }
    }
}

/// A one-time code read from a device or typed by it. Short-lived but still a credential:
/// redacted in `Debug`, compared in constant time.
#[derive(Clone)]
pub struct OtpCode {
    value: u32,
    digits: Digits,
}

impl OtpCode {
    /// A code value reduced modulo 10^digits.
    pub fn new(value: u32, digits: Digits) -> Option<Self> {
        (value < digits.modulus()).then_some(Self { value, digits })
    }

    /// Parses exactly 6 or 8 ASCII digits (as typed by a token).
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let digits = Digits::from_count(u32::try_from(t.len()).ok()?)?;
        if !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value = t.parse::<u32>().ok()?;
        Self::new(value, digits)
    }

    /// Number of digits.
    pub fn digits(&self) -> Digits {
        self.digits
    }

    /// The numeric value.
    pub fn expose_value(&self) -> u32 {
        self.value
    }

    /// The zero-padded decimal text, as a person would type it.
    pub fn expose_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{:0width$}",
            self.value,
            width = self.digits.count() as usize
        ))
    }
}

impl Drop for OtpCode {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl PartialEq for OtpCode {
    fn eq(&self, other: &Self) -> bool {
        self.digits == other.digits && bool::from(self.value.ct_eq(&other.value))
    }
}

impl Eq for OtpCode {}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OtpCode(<{} digits redacted>)", self.digits.count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_checked_and_redacted() {
        assert!(Pin::new("").is_err());
        assert!(Pin::new(&"1".repeat(26)).is_err());
        assert!(Pin::from_bytes(b"12\x0034").is_err());
        let p = Pin::new("123456").expect("valid");
        assert_eq!(format!("{p:?}"), "Pin(<redacted>)");
        assert_eq!(p, Pin::new("123456").expect("valid"));
        assert_ne!(p, Pin::new("1234567").expect("valid"));
    }

    #[test]
    fn access_codes_parse_hex() {
        let a = AccessCode::parse_hex("0102030405ff").expect("valid");
        assert_eq!(a.expose_bytes(), &[1, 2, 3, 4, 5, 0xff]);
        assert!(AccessCode::parse_hex("0102030405f").is_err());
        assert!(AccessCode::parse_hex("0102030405fg").is_err());
        assert!(AccessCode::none().is_none());
        assert!(!a.is_none());
        assert_eq!(format!("{a:?}"), "AccessCode(<redacted>)");
    }

    #[test]
    fn codes_are_padded_and_parsed() {
        let c = OtpCode::new(4_212, Digits::Six).expect("valid");
        assert_eq!(c.expose_text().as_str(), "004212");
        assert_eq!(OtpCode::parse("004212"), Some(c));
        assert!(OtpCode::parse("4212").is_none());
        assert!(OtpCode::parse("00421a").is_none());
        assert!(OtpCode::new(1_000_000, Digits::Six).is_none());
        assert_eq!(
            OtpCode::parse("12345678").map(|c| c.digits()),
            Some(Digits::Eight)
        );
    }

    #[test]
    fn random_temp_passwords_are_alphanumeric_and_differ() {
        let a = TempPassword::random().expect("valid");
        let b = TempPassword::random().expect("valid");
        assert!(a.expose_bytes().iter().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.expose_bytes(), b.expose_bytes());
    }

    #[test]
    fn secrets_are_bounded() {
        assert!(OtpSecret::new(vec![1; 41]).is_err());
        let s = OtpSecret::new(vec![1; 40]).expect("valid");
        assert_eq!(format!("{s:?}"), "OtpSecret(<40 bytes redacted>)");
    }
}
