//! RADIUS counters: replies by result, packets dropped by cause, retransmissions answered from
//! the duplicate cache, and a latency histogram (datagram received to reply sent).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Access-Accept.
    Accept,
    /// Access-Reject.
    Reject,
    /// Access-Challenge.
    Challenge,
}

/// Why a datagram got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropCause {
    /// From an address no client covers.
    UnknownClient,
    /// Not a well-formed RADIUS packet.
    Malformed,
    /// A code other than Access-Request.
    UnsupportedCode,
    /// No Message-Authenticator, from a client that must send one.
    MissingMessageAuthenticator,
    /// A Message-Authenticator that does not check (wrong shared secret, altered packet).
    BadMessageAuthenticator,
    /// A retransmission of a request still being verified.
    InProgress,
    /// The verify could not run (store unavailable): the client retries or fails over.
    Unavailable,
}

const DROPS: [(DropCause, &str); 7] = [
    (DropCause::UnknownClient, "unknown_client"),
    (DropCause::Malformed, "malformed"),
    (DropCause::UnsupportedCode, "unsupported_code"),
    (
        DropCause::MissingMessageAuthenticator,
        "missing_message_authenticator",
    ),
    (
        DropCause::BadMessageAuthenticator,
        "bad_message_authenticator",
    ),
    (DropCause::InProgress, "in_progress"),
    (DropCause::Unavailable, "unavailable"),
];

/// The counters.
#[derive(Default)]
pub struct Metrics {
    results: [AtomicU64; 3],
    drops: [AtomicU64; DROPS.len()],
    retransmissions: AtomicU64,
    relaxed: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// Count a reply that took `micros`.
    pub fn record(&self, outcome: Outcome, micros: u64) {
        let i = match outcome {
            Outcome::Accept => 0,
            Outcome::Reject => 1,
            Outcome::Challenge => 2,
        };
        self.results[i].fetch_add(1, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        if let Some(b) = self.latency.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Count a dropped datagram.
    pub fn dropped(&self, why: DropCause) {
        if let Some(i) = DROPS.iter().position(|(d, _)| *d == why) {
            self.drops[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count a retransmission answered from the cache.
    pub fn retransmission(&self) {
        self.retransmissions.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a request accepted without a Message-Authenticator from a relaxed client.
    pub fn relaxed(&self) {
        self.relaxed.fetch_add(1, Ordering::Relaxed);
    }

    /// Replies of `outcome` so far.
    pub fn results(&self, outcome: Outcome) -> u64 {
        let i = match outcome {
            Outcome::Accept => 0,
            Outcome::Reject => 1,
            Outcome::Challenge => 2,
        };
        self.results[i].load(Ordering::Relaxed)
    }

    /// Datagrams dropped for `why` so far.
    pub fn drops(&self, why: DropCause) -> u64 {
        DROPS
            .iter()
            .position(|(d, _)| *d == why)
            .map_or(0, |i| self.drops[i].load(Ordering::Relaxed))
    }

    /// Retransmissions answered from the cache so far.
    pub fn retransmissions(&self) -> u64 {
        self.retransmissions.load(Ordering::Relaxed)
    }

    /// Append the Prometheus exposition text.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP okey_radius_requests_total RADIUS Access-Requests answered, by result."
        );
        let _ = writeln!(out, "# TYPE okey_radius_requests_total counter");
        for (i, name) in ["accept", "reject", "challenge"].iter().enumerate() {
            let _ = writeln!(
                out,
                "okey_radius_requests_total{{result=\"{name}\"}} {}",
                self.results[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP okey_radius_dropped_total RADIUS datagrams dropped without an answer, by cause."
        );
        let _ = writeln!(out, "# TYPE okey_radius_dropped_total counter");
        for (i, (_, name)) in DROPS.iter().enumerate() {
            let _ = writeln!(
                out,
                "okey_radius_dropped_total{{cause=\"{name}\"}} {}",
                self.drops[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP okey_radius_retransmissions_total Retransmitted requests answered from the duplicate cache."
        );
        let _ = writeln!(out, "# TYPE okey_radius_retransmissions_total counter");
        let _ = writeln!(
            out,
            "okey_radius_retransmissions_total {}",
            self.retransmissions.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP okey_radius_unauthenticated_requests_total Requests taken without a Message-Authenticator from clients where it is relaxed."
        );
        let _ = writeln!(
            out,
            "# TYPE okey_radius_unauthenticated_requests_total counter"
        );
        let _ = writeln!(
            out,
            "okey_radius_unauthenticated_requests_total {}",
            self.relaxed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP okey_radius_latency_seconds RADIUS latency, datagram received to reply sent."
        );
        let _ = writeln!(out, "# TYPE okey_radius_latency_seconds histogram");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += self.latency[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "okey_radius_latency_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        cumulative += self.latency[LATENCY_BUCKETS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "okey_radius_latency_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "okey_radius_latency_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "okey_radius_latency_seconds_count {cumulative}");
    }
}
