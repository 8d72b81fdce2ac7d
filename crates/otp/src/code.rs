//! Digit counts, presented codes, and the reduction of a truncated MAC to a decimal code.

use subtle::{Choice, ConstantTimeEq};

use crate::Error;

/// The number of decimal digits of a code: 6 to 10 for HOTP and TOTP (RFC 4226 §5.3 allows more
/// than 8 only with care: 9 and 10 digits show the 31-bit truncation mostly unreduced).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Digits(u8);

impl Digits {
    /// Six digits, the usual hardware token.
    pub const SIX: Digits = Digits(6);
    /// Eight digits.
    pub const EIGHT: Digits = Digits(8);

    /// A digit count for HOTP/TOTP: 6 to 10.
    pub fn new(digits: u8) -> Result<Self, Error> {
        if (6..=10).contains(&digits) {
            Ok(Digits(digits))
        } else {
            Err(Error::BadDigits(digits))
        }
    }

    /// A digit count for OCRA responses: 4 to 10 (0, "no truncation", is handled by the suite).
    pub(crate) fn new_ocra(digits: u8) -> Result<Self, Error> {
        if (4..=10).contains(&digits) {
            Ok(Digits(digits))
        } else {
            Err(Error::BadDigits(digits))
        }
    }

    /// The count as a number.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Reduce a 31-bit truncated value to this many decimal digits.
    ///
    /// Each arm divides by a constant, so the compiler emits a multiply-and-shift rather than a
    /// hardware division whose latency could depend on the (secret-derived) operand.
    #[inline]
    pub fn reduce(self, truncated: u32) -> u64 {
        let v = u64::from(truncated);
        match self.0 {
            4 => v % 10_000,
            5 => v % 100_000,
            6 => v % 1_000_000,
            7 => v % 10_000_000,
            8 => v % 100_000_000,
            9 => v % 1_000_000_000,
            _ => v % 10_000_000_000,
        }
    }
}

impl Default for Digits {
    fn default() -> Self {
        Digits::SIX
    }
}

/// A one-time code: its value and how many digits it is shown with (leading zeros count).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Code {
    value: u64,
    digits: Digits,
}

impl std::fmt::Debug for Code {
    // A code is a credential while it is fresh: never print it by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Code({} digits)", self.digits.get())
    }
}

impl Code {
    pub(crate) fn new(value: u64, digits: Digits) -> Self {
        Code { value, digits }
    }

    /// Parse a presented code: exactly `digits` ASCII digits. Anything else is an error (and not a
    /// timing-relevant path: the format of a code is not a secret).
    pub fn parse(text: &str, digits: Digits) -> Result<Self, Error> {
        let bytes = text.as_bytes();
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(Error::NotDigits);
        }
        if bytes.len() != usize::from(digits.get()) {
            return Err(Error::WrongLength {
                expected: digits.get(),
                got: bytes.len(),
            });
        }
        let value = bytes
            .iter()
            .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
        Ok(Code { value, digits })
    }

    /// The digit count.
    pub fn digits(&self) -> Digits {
        self.digits
    }

    /// The code as a zero-padded decimal string, for display on a calculator or a token.
    pub fn to_text(&self) -> String {
        format!(
            "{:0width$}",
            self.value,
            width = usize::from(self.digits.get())
        )
    }

    /// Constant-time equality of value and digit count.
    pub fn ct_eq_code(&self, other: &Code) -> Choice {
        self.value.ct_eq(&other.value) & self.digits.0.ct_eq(&other.digits.0)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_leading_zeros_and_checks_shape() {
        let d = Digits::SIX;
        assert_eq!(
            Code::parse("000123", d).map(|c| c.to_text()),
            Ok("000123".into())
        );
        assert_eq!(
            Code::parse("12345", d),
            Err(Error::WrongLength {
                expected: 6,
                got: 5
            })
        );
        assert_eq!(Code::parse("12a456", d), Err(Error::NotDigits));
        assert_eq!(Code::parse("１２３４５６", d), Err(Error::NotDigits));
        assert_eq!(Code::parse(" 23456", d), Err(Error::NotDigits));
        assert!(Digits::new(5).is_err());
        assert!(Digits::new(11).is_err());
    }

    #[test]
    fn reduce_matches_plain_modulo() {
        for digits in 4..=10u8 {
            let d = Digits(digits);
            for v in [0u32, 1, 999_999, 1_000_000, 0x7fff_ffff, 1_094_287_082] {
                assert_eq!(d.reduce(v), u64::from(v) % 10u64.pow(u32::from(digits)));
            }
        }
    }
}
