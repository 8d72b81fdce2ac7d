//! Integration tests of okey-intake, one binary: RFC 6030 figures, round trips through
//! every encryption and MAC variant checked against the RFC 4226/6238 vectors, bad and
//! hostile files, OATH CSV, otpauth URIs and QR codes.

#![allow(clippy::unwrap_used)]

mod bad_files;
mod common;
mod csv;
mod hostile;
mod otpauth;
mod rfc6030;
mod roundtrip;
mod streaming;
