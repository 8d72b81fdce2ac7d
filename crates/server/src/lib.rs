//! okey's gRPC service: the wire edge of okey.
//!
//! Data flows one way: a request is decoded and its caller authenticated here, the domain crate
//! decides whether the caller's roles allow the operation, the store verifies and commits, and
//! the reply goes back. This crate is the only one that knows protobuf: requests are turned into
//! checked values at the edge, every failure is mapped to a `tonic::Status` in one place
//! ([`status`]), and an unexpected error gives the caller a generic sentence while the detail
//! goes to the log.
//!
//! Secrets never reach a log: handlers are instrumented with the passcode, PIN and seed fields
//! skipped, and error texts are built from fixed sentences, never from input.
#![forbid(unsafe_code)]

pub mod anchors;
pub mod callers;
pub mod challenges;
pub mod clock;
pub mod codec;
pub mod config;
mod dates;
mod directory;
pub mod floor;
mod lifecycle;
mod mail;
pub mod metrics;
mod radius;
mod receipt_pdf;
mod requests;
pub mod seed_files;
pub mod serve;
mod service;
pub mod status;
mod support;

/// The generated protobuf and gRPC code of `okey.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod proto {
    tonic::include_proto!("okey.v1");

    /// The encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/okey_descriptor.bin"));
}

pub use config::ServeConfig;
pub use dates::{Zone, utc_minute};
pub use serve::{RunningServer, ServeError, run, start};
pub use service::MAX_ANCHORS;

/// The largest RequestService message (a request with all its attachments at their largest,
/// and its fields): its server and clients accept this much, where tonic's default is 4 MiB.
pub const MAX_REQUEST_MESSAGE_BYTES: usize = okey_domain::request::MAX_ATTACHMENTS
    * okey_domain::request::MAX_ATTACHMENT_BYTES
    + 1024 * 1024;
