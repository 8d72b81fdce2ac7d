//! Integration tests of okey-hid against the simulated firmware of okey-token-sim, and the
//! transcript conformance test. One binary, several modules.

mod common;
mod conformance;
mod faults;
mod nitrokey;
mod workflows;
mod yubikey;
