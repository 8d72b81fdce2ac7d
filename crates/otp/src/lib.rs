//! okey's authentication core: HOTP (RFC 4226), TOTP (RFC 6238) and OCRA (RFC 6287) codes,
//! constant-time window verification, resynchronisation and server-side PIN checks.
//!
//! # Why it looks like this
//!
//! * **Pure.** This crate does no I/O, reads no clock and depends on nothing async: time is a
//!   parameter of every function that needs it. That keeps the security decisions testable
//!   against published vectors and free of hidden inputs.
//! * **Keys are precomputed HMAC states** ([`OtpKey`]), never raw bytes, zeroized on drop, with a
//!   `Debug` that prints nothing secret. A candidate code costs two hash compressions.
//! * **Verification is constant-time over the window.** Every candidate is computed and compared
//!   with `subtle`; the lowest match is chosen with conditional moves. Whether and where a code
//!   matched does not change the work done. [`verify_unknown`] does the same work for subjects that
//!   do not exist.
//! * **Proof before state.** A successful check returns a [`CodeVerified`] that only this crate
//!   can create; it carries the state read and the state to write, so a store can commit with a
//!   compare-and-set and nothing can advance a counter without a real check.
#![forbid(unsafe_code)]

mod code;
mod key;
mod ocra;
mod pin;
mod verify;

pub use code::{Code, Digits};
pub use key::{Algorithm, MAX_KEY_LEN, Mac, OtpKey, digest};
pub use ocra::{OcraInput, OcraResponse, OcraSuite, QuestionKind, ocra, verify_ocra};
pub use pin::{
    MAX_PIN_LEN, MIN_PIN_LEN, Passcode, Pepper, Pin, PinBinding, PinVerifier, check_pin_unknown,
    split_passcode,
};
pub use verify::{
    CodeVerified, DEFAULT_HOTP_RESYNC_WINDOW, DEFAULT_HOTP_WINDOW, DEFAULT_TOTP_RESYNC_SECONDS,
    DEFAULT_TOTP_SKEW, MAX_COUNTER, Method, OtpState, TotpParams, codes_equal, hotp, resync_hotp,
    resync_totp, totp, verify_hotp, verify_totp, verify_unknown,
};

/// Errors of the core. Texts never contain key material, codes or PINs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An HMAC key of zero bytes.
    #[error("the key is empty")]
    EmptyKey,
    /// An HMAC key longer than [`MAX_KEY_LEN`].
    #[error("the key is {0} bytes long; at most 1024 are accepted")]
    KeyTooLong(usize),
    /// A hash name that is not sha1, sha256 or sha512.
    #[error("unknown algorithm {0:?}: expected sha1, sha256 or sha512")]
    UnknownAlgorithm(String),
    /// A digit count outside the allowed range.
    #[error("{0} digits is not supported: use 6 to 10 (OCRA: 0 or 4 to 10)")]
    BadDigits(u8),
    /// A code or passcode containing something other than ASCII digits.
    #[error("the code must contain only the digits 0-9")]
    NotDigits,
    /// A code of the wrong length.
    #[error("the code must be {expected} digits long, got {got} characters")]
    WrongLength {
        /// Digits the token shows.
        expected: u8,
        /// Characters received.
        got: usize,
    },
    /// A TOTP step of zero seconds.
    #[error("the time step must be at least one second")]
    ZeroStep,
    /// A time before the token's T0.
    #[error("the time is before the token's T0")]
    BeforeT0,
    /// A PIN of the wrong length.
    #[error("a PIN has 4 to 32 characters")]
    PinLength,
    /// A PIN with spaces, control or non-ASCII characters.
    #[error("a PIN uses printable ASCII characters without spaces")]
    PinCharset,
    /// The token has a PIN but the passcode had none in front of the code.
    #[error("this token expects its PIN in front of the code")]
    PinMissing,
    /// A pepper shorter than 16 bytes.
    #[error("the PIN pepper must be at least 16 bytes")]
    PepperTooShort,
}

/// OCRA errors: they name the bad part of a suite or input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcraError {
    /// A malformed suite; `part` is the offending piece.
    #[error("bad OCRA suite part {part:?}: {why}")]
    Suite {
        /// The piece of the suite that is wrong.
        part: String,
        /// What is expected there.
        why: &'static str,
    },
    /// The suite needs an input that was not given.
    #[error("the suite requires a {0}")]
    Missing(&'static str),
    /// An input was given that the suite does not use.
    #[error("the suite does not use a {0}")]
    Unexpected(&'static str),
    /// A malformed question.
    #[error("bad question: {0}")]
    Question(&'static str),
    /// A PIN hash whose length is not that of the suite's PIN hash function.
    #[error("the PIN hash length does not match the suite's hash function")]
    PinHashLength,
    /// Session information longer than the suite's `Snnn`.
    #[error("the session information is longer than the suite allows")]
    SessionTooLong,
    /// The key was loaded for another hash function than the suite's.
    #[error("the key's hash function does not match the suite's")]
    KeyAlgorithm,
    /// A response that is not of the suite's format.
    #[error("the response is not of the suite's length and alphabet")]
    ResponseFormat,
    /// The counter cannot advance past u64::MAX.
    #[error("the counter is exhausted")]
    CounterExhausted,
}
