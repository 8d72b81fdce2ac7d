//! Simulated token firmware for okey's USB bench: a Nitrokey Pro and a YubiKey OTP interface
//! that speak the real HID protocols through okey-hid's `Transport` trait.
//!
//! # Why it is built this way
//!
//! * **Written from the fact sheet, not from the driver.** The firmware models follow
//!   `shared/protocols/hid-tokens.md` (processing model, status codes, PIN rules, slot
//!   semantics) and share no protocol code with okey-hid: the checksums use the sheet's
//!   alternative formulations ([`checksum`]) and OTPs come from the `hmac`/`sha1` crates
//!   ([`otp`]), so a bug on one side shows up as a disagreement rather than cancelling out.
//! * **Virtual time.** The driver's `pause` advances a [`clock::VirtualClock`]; command
//!   durations, busy states and the Nitrokey's drifting RAM clock are functions of it, which
//!   makes busy polling and drift deterministic in tests and instant in `--simulate` runs.
//! * **Faults are first-class** ([`device::Fault`]): corrupted requests and responses, dropped
//!   reports, busy devices and unplugging in the middle of a write, each injectable per device.
//! * **A whole bench** ([`bench::SimBench`]) implements okey-hid's `DeviceProvider`
//!   and hands out its `TouchSource` and `HostClock`, so the bench workflows run end to end on it.

#![forbid(unsafe_code)]

pub mod bench;
pub mod checksum;
pub mod clock;
pub mod device;
pub mod nitrokey;
pub mod otp;
pub mod yubikey;

pub use bench::{DeviceId, SimBench, SimHostClock, SimTouch};
pub use clock::VirtualClock;
pub use device::{Fault, SimDevice, SimTransport};
pub use nitrokey::{NitrokeyProfile, NitrokeySim};
pub use yubikey::{YubiKeyProfile, YubiKeySim};
