//! YubiKey OTP application: wire format ([`proto`]) and driver ([`driver`]).

pub mod driver;
pub mod proto;

pub use driver::{YkTiming, YubiKeyError, YubiKeyOtp};
pub use proto::{HotpConfig, IdEncoding, YkSlot, YkStatus, YkVersion};
