//! okey's RADIUS front end (RFC 2865): VPN concentrators, Wi-Fi controllers and portals log in
//! through okey with no plugin in between.
//!
//! # Why it looks like this
//!
//! * **One verify path.** This crate knows packets, clients and secrets, not tokens: each
//!   Access-Request becomes a [`VerifyCall`] handed to a [`Verifier`], which the server crate
//!   implements with the very function its gRPC `Verify` runs. Replay protection, lockout,
//!   PINs, OCRA challenges and audit are that function's, never re-implemented here.
//! * **Nothing unauthenticated gets an answer.** Datagrams from addresses no client covers,
//!   malformed packets, codes other than Access-Request, and requests without a valid
//!   Message-Authenticator (required by default: the BlastRADIUS mitigation, CVE-2024-3596)
//!   are dropped and counted by cause. Every reply carries a Message-Authenticator, first.
//! * **A retransmission is not a second login.** RFC 5080's duplicate cache answers a
//!   retransmitted request with the reply already sent; a code is verified once.
//! * **The reason stays home.** Reply-Message texts come from the configuration; why a request
//!   was rejected goes to okey's log and audit, never on the wire.
//! * **Own codec.** The parser and writer (RFC 2865 sections 3 and 5) are written here, checked
//!   against the RFC's section 7 packets and fuzzed: the crates available either bring their
//!   own server loop and dictionary machinery (`radius`, `radius-rust`) or only parse
//!   (`radius-parser`), and none enforces the Message-Authenticator policy this front end needs.
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::IpAddr;

use zeroize::Zeroizing;

pub mod config;
pub mod dedup;
pub mod metrics;
pub mod packet;
pub mod server;

pub use config::{RadiusConfig, RadiusConfigError, Resolved};
pub use metrics::Metrics;
pub use server::{Running, start};

/// One Access-Request to check, decoded and authenticated.
pub struct VerifyCall {
    /// The configured name of the RADIUS client that sent it.
    pub client: String,
    /// The address it came from.
    pub source: IpAddr,
    /// User-Name.
    pub user: String,
    /// The PAP password: `PIN ‖ OTP`, a response to a challenge, or empty to ask for one.
    pub password: Zeroizing<String>,
    /// State, when this answers an Access-Challenge (okey's transaction id).
    pub state: Option<String>,
    /// NAS-Identifier, if sent.
    pub nas_identifier: String,
    /// Calling-Station-Id, if sent.
    pub calling_station: String,
}

/// The answer to a [`VerifyCall`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Access-Accept.
    Accept,
    /// Access-Reject; the reason is logged, not sent.
    Reject {
        /// Stable reason code.
        reason: String,
    },
    /// Access-Challenge with `State` = `state` and the challenge in the Reply-Message.
    Challenge {
        /// okey's transaction id.
        state: String,
        /// The challenge to key into the token.
        challenge: String,
    },
    /// The check could not run (store unavailable): no answer, so the client retries or fails over.
    Unavailable {
        /// Why, for the log.
        reason: String,
    },
}

/// The verify path the front end calls.
pub trait Verifier: Send + Sync + 'static {
    /// Check one request.
    fn verify(&self, call: VerifyCall) -> impl Future<Output = Verdict> + Send;
}
