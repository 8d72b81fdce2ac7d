//! okey's USB HID bench: transport, drivers for the Nitrokey Pro and the YubiKey OTP
//! application, and the technician workflows (list, init, PIN, resync, batch).
//!
//! # Why it is built this way
//!
//! * **One seam, two sides.** Everything above [`transport::Transport`] (feature report out,
//!   feature report in, pause) is identical for hardware and for the simulated firmware in
//!   `okey-token-sim`, so the drivers and workflows tested against the simulator are the ones
//!   that run on the bench. The simulator's `pause` advances virtual time, which keeps the
//!   busy-polling logic testable without sleeping.
//! * **Wire formats are pure modules** ([`nitrokey::proto`], [`yubikey::proto`]): request
//!   builders and parsers without I/O, every read through the bounds-checked
//!   [`reader::Reader`]. A short, malformed or wrong-CRC report is an error, never a panic;
//!   the fuzz targets feed these parsers arbitrary bytes.
//! * **Byte-level facts come from one place**, `shared/protocols/hid-tokens.md`; offsets in the
//!   code cite its sections. Recorded transcripts in `firmware-fixtures/` are replayed against
//!   both this driver and the simulator so neither can drift from the sheet unnoticed.
//! * **Secrets have their own types** ([`secret`]): zeroized on drop, redacted in `Debug`,
//!   compared in constant time. Request and response buffers that may hold a secret are
//!   zeroized too.
//! * **Time is a parameter.** Library code never reads the system clock; workflows take the
//!   host's Unix time from the caller.
//! * **No USB bus is normal.** `rusb`'s global context panics where there is no USB subsystem;
//!   [`hidapi_backend`] only creates an explicit context and falls back to polling.
//! * **The server is a trait** ([`bench::Registry`]): the workflows are plain blocking code the
//!   CLI drives over gRPC, and tests drive with an in-memory registry.

#![forbid(unsafe_code)]

pub mod bench;
pub mod crc;
pub mod hidapi_backend;
pub mod nitrokey;
pub mod reader;
pub mod secret;
pub mod transport;
pub mod yubikey;

pub use transport::{
    BoxedTransport, DeviceEvent, DeviceInfo, DeviceProvider, DiscoveryError, Family, Transport,
    TransportError,
};
