//! Server-side PINs: `passcode = PIN ‖ OTP`, and a keyed verifier for each token's PIN.
//!
//! PINs are short, so a slow password hash would buy little against someone holding the store
//! and cost a lot on the hot path. Instead the verifier is an HMAC-SHA256 under a pepper, a random
//! key sealed like the seeds: without the pepper, a stolen verifier table cannot be brute-forced
//! at all. What the PIN is bound to is a [`PinBinding`]:
//!
//! * [`PinBinding::Holder`] (scheme 2, every PIN set on a key that has a holder):
//!   `HMAC(pepper, "okey-pin-holder\0" ‖ len16(holder) ‖ holder ‖ PIN)`. The verifier belongs to
//!   the person, not the key: it can be copied to the holder's next key (a renewal keeps the PIN)
//!   without anyone learning the PIN, and it stops matching the moment the key is someone else's.
//! * [`PinBinding::Token`] (scheme 1, a key with no holder, and verifiers written before scheme 2):
//!   `HMAC(pepper, len16(token) ‖ token ‖ PIN)`.
//!
//! Identifiers are length-prefixed so that no (subject, PIN) pair collides with another by shifting
//! characters between the two; the holder scheme's tag starts with the bytes `ok` (0x6f6b), which as
//! a scheme-1 length prefix would need a token identifier of 28,523 bytes: the two schemes never
//! produce the same message.

use std::fmt;

use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;
use crate::code::{Code, Digits};
use crate::key::{Algorithm, OtpKey};

/// Shortest PIN accepted.
pub const MIN_PIN_LEN: usize = 4;
/// Longest PIN accepted.
pub const MAX_PIN_LEN: usize = 32;

/// A PIN as typed: 4 to 32 printable ASCII characters without spaces. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin(String);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<secret>)")
    }
}

impl Pin {
    /// Validate a PIN's shape.
    pub fn new(pin: &str) -> Result<Self, Error> {
        if pin.len() < MIN_PIN_LEN || pin.len() > MAX_PIN_LEN {
            return Err(Error::PinLength);
        }
        if !pin.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::PinCharset);
        }
        Ok(Pin(pin.to_owned()))
    }

    /// The PIN's bytes, for hashing.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The stored form of a PIN: 32 bytes of HMAC-SHA256. Not secret on its own (it is useless
/// without the pepper) but still compared only in constant time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PinVerifier(pub [u8; 32]);

impl fmt::Debug for PinVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinVerifier(..)")
    }
}

/// The PIN pepper: an HMAC-SHA256 key held as precomputed states.
#[derive(Clone)]
pub struct Pepper(OtpKey);

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<secret>)")
    }
}

impl Pepper {
    /// Load a pepper (at least 16 bytes).
    pub fn new(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < 16 {
            return Err(Error::PepperTooShort);
        }
        Ok(Pepper(OtpKey::new(Algorithm::Sha256, secret)?))
    }

    /// The verifier of `pin` bound to `binding`.
    pub fn verifier(&self, binding: PinBinding<'_>, pin: &Pin) -> PinVerifier {
        let (tag, id): (&[u8], &[u8]) = match binding {
            PinBinding::Token(t) => (b"", t.as_bytes()),
            PinBinding::Holder(h) => (HOLDER_TAG, h.as_bytes()),
        };
        let id_len = u16::try_from(id.len()).unwrap_or(u16::MAX);
        let mut message = Zeroizing::new(Vec::with_capacity(
            tag.len() + 2 + id.len() + pin.expose().len(),
        ));
        message.extend_from_slice(tag);
        message.extend_from_slice(&id_len.to_be_bytes());
        message.extend_from_slice(id.get(..usize::from(id_len)).unwrap_or(id));
        message.extend_from_slice(pin.expose());
        let mac = self.0.mac(&message);
        let mut out = [0u8; 32];
        out.copy_from_slice(mac.as_bytes().get(..32).unwrap_or(&[0u8; 32]));
        PinVerifier(out)
    }

    /// Check `pin` against a stored verifier bound to `binding`, in constant time.
    pub fn check(&self, binding: PinBinding<'_>, pin: &Pin, stored: &PinVerifier) -> Choice {
        self.verifier(binding, pin).0.ct_eq(&stored.0)
    }
}

/// Domain tag of holder-bound verifiers (scheme 2).
const HOLDER_TAG: &[u8] = b"okey-pin-holder\0";

/// What a PIN verifier is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinBinding<'a> {
    /// Scheme 1: the token's identifier.
    Token(&'a str),
    /// Scheme 2: the holder's identifier (folded as the store keeps holders).
    Holder(&'a str),
}

impl PinBinding<'_> {
    /// The scheme number stored beside the verifier: 1 token-bound, 2 holder-bound.
    pub const fn scheme(self) -> u8 {
        match self {
            PinBinding::Token(_) => 1,
            PinBinding::Holder(_) => 2,
        }
    }
}

/// A passcode split into its PIN part and its one-time code.
#[derive(Debug)]
pub struct Passcode {
    /// The PIN typed before the code, if any characters precede it.
    pub pin: Option<Pin>,
    /// The trailing one-time code.
    pub code: Code,
}

/// Split `PIN ‖ OTP` by the token's digit count: the last `digits` characters are the code, what
/// comes before is the PIN. `pin_expected` says whether the token has a server-side PIN; a
/// passcode of the wrong shape for it is an error.
pub fn split_passcode(
    passcode: &str,
    digits: Digits,
    pin_expected: bool,
) -> Result<Passcode, Error> {
    let n = usize::from(digits.get());
    if !passcode.is_ascii() {
        return Err(Error::NotDigits);
    }
    if passcode.len() < n {
        return Err(Error::WrongLength {
            expected: digits.get(),
            got: passcode.len(),
        });
    }
    let (pin_part, code_part) = passcode.split_at(passcode.len() - n);
    let code = Code::parse(code_part, digits)?;
    let pin = match (pin_expected, pin_part.is_empty()) {
        (true, true) => return Err(Error::PinMissing),
        (false, false) => {
            return Err(Error::WrongLength {
                expected: digits.get(),
                got: passcode.len(),
            });
        }
        (true, false) => Some(Pin::new(pin_part)?),
        (false, true) => None,
    };
    Ok(Passcode { pin, code })
}

/// The PIN check for an unknown token: the same HMAC work as [`Pepper::check`], then `false`.
pub fn check_pin_unknown(pepper: &Pepper, pin: &Pin) -> Choice {
    let dummy = PinVerifier([0u8; 32]);
    let _ = std::hint::black_box(pepper.check(PinBinding::Token(""), pin, &dummy));
    Choice::from(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pepper() -> Pepper {
        Pepper::new(b"0123456789abcdef0123456789abcdef").expect("valid pepper")
    }

    #[test]
    fn pin_right_and_wrong() {
        let p = pepper();
        let pin = Pin::new("4711").expect("pin");
        let stored = p.verifier(PinBinding::Token("00042"), &pin);
        assert!(bool::from(p.check(
            PinBinding::Token("00042"),
            &pin,
            &stored
        )));
        assert!(!bool::from(p.check(
            PinBinding::Token("00042"),
            &Pin::new("4712").expect("pin"),
            &stored
        )));
        // Same PIN, another token: a different verifier (the token is bound in).
        assert!(!bool::from(p.check(PinBinding::Token("42"), &pin, &stored)));
        // Shifting characters between token and PIN does not collide.
        let a = p.verifier(PinBinding::Token("0004"), &Pin::new("24711").expect("pin"));
        let b = p.verifier(PinBinding::Token("00042"), &Pin::new("4711").expect("pin"));
        assert_ne!(a, b);
        assert!(!bool::from(check_pin_unknown(&p, &pin)));
    }

    #[test]
    fn holder_bound_pin_follows_the_person_not_the_key() {
        let p = pepper();
        let pin = Pin::new("4711").expect("pin");
        let stored = p.verifier(PinBinding::Holder("marie.curie"), &pin);
        // The same holder's verifier checks on any of their keys: nothing of the key is bound in.
        assert!(bool::from(p.check(
            PinBinding::Holder("marie.curie"),
            &pin,
            &stored
        )));
        // Another holder with the same PIN does not match.
        assert!(!bool::from(p.check(
            PinBinding::Holder("paul.curie"),
            &pin,
            &stored
        )));
        // The two schemes never meet: a token named like the holder is another verifier.
        assert!(!bool::from(p.check(
            PinBinding::Token("marie.curie"),
            &pin,
            &stored
        )));
        assert_eq!(PinBinding::Holder("x").scheme(), 2);
        assert_eq!(PinBinding::Token("x").scheme(), 1);
    }

    #[test]
    fn holder_verifier_is_hmac_sha256_of_tag_length_prefixed_holder_and_pin() {
        use hmac::{Hmac, KeyInit, Mac};
        let secret = b"0123456789abcdef0123456789abcdef";
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("key");
        mac.update(b"okey-pin-holder");
        mac.update(&[0]);
        mac.update(&[0, 11]);
        mac.update(b"marie.curie");
        mac.update(b"4711");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        let got = pepper().verifier(
            PinBinding::Holder("marie.curie"),
            &Pin::new("4711").expect("pin"),
        );
        assert_eq!(got.0, expected);
    }

    #[test]
    fn verifier_is_hmac_sha256_of_length_prefixed_token_and_pin() {
        use hmac::{Hmac, KeyInit, Mac};
        let secret = b"0123456789abcdef0123456789abcdef";
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("key");
        mac.update(&[0, 5]);
        mac.update(b"00042");
        mac.update(b"4711");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        let got = pepper().verifier(PinBinding::Token("00042"), &Pin::new("4711").expect("pin"));
        assert_eq!(got.0, expected);
    }

    #[test]
    fn passcode_split() {
        let d = Digits::SIX;
        let p = split_passcode("4711123456", d, true).expect("split");
        assert_eq!(p.code.to_text(), "123456");
        assert_eq!(
            p.pin.as_ref().map(|p| p.expose().to_vec()),
            Some(b"4711".to_vec())
        );
        assert!(
            split_passcode("123456", d, false)
                .expect("split")
                .pin
                .is_none()
        );
        assert_eq!(
            split_passcode("123456", d, true).err(),
            Some(Error::PinMissing)
        );
        assert_eq!(
            split_passcode("4711123456", d, false).err(),
            Some(Error::WrongLength {
                expected: 6,
                got: 10
            })
        );
        assert_eq!(
            split_passcode("47112345x6", d, true).err(),
            Some(Error::NotDigits)
        );
        assert_eq!(
            split_passcode("12345", d, false).err(),
            Some(Error::WrongLength {
                expected: 6,
                got: 5
            })
        );
        assert_eq!(
            split_passcode("47 1123456", d, true).err(),
            Some(Error::PinCharset)
        );
        assert_eq!(
            split_passcode("471123456", d, true).err(),
            Some(Error::PinLength)
        );
    }
}
