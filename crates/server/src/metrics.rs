//! Prometheus text metrics: verify results, verify latency, and the store's commit and cache
//! figures, served on an optional plain HTTP listener.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use okey_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds of the latency buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Counters shared by the handlers.
#[derive(Default)]
pub struct Metrics {
    accepted: AtomicU64,
    rejected: AtomicU64,
    challenged: AtomicU64,
    errors: AtomicU64,
    unauthenticated: AtomicU64,
    permission_denied: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
    /// The RADIUS front end's own counters.
    pub radius: Arc<okey_radius::Metrics>,
    /// The mail sender's counters, when a relay is configured.
    pub(crate) mail_sender: std::sync::OnceLock<Arc<okey_notify::SenderMetrics>>,
    /// The audit chain's latest published anchor.
    pub anchor: Arc<crate::anchors::Latest>,
}

/// The outcome of one verify, for counting.
#[derive(Clone, Copy, Debug)]
pub enum VerifyResultKind {
    /// ACCEPT.
    Accept,
    /// REJECT.
    Reject,
    /// CHALLENGE.
    Challenge,
    /// An error status.
    Error,
}

/// A call refused before it did anything, for counting.
#[derive(Clone, Copy, Debug)]
pub enum RefusedKind {
    /// No valid credential.
    Unauthenticated,
    /// A valid credential whose roles do not allow the operation.
    PermissionDenied,
}

impl Metrics {
    /// Count one refused call.
    pub fn record_refused(&self, kind: RefusedKind) {
        match kind {
            RefusedKind::Unauthenticated => &self.unauthenticated,
            RefusedKind::PermissionDenied => &self.permission_denied,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Count one verify that took `micros`.
    pub fn record_verify(&self, result: VerifyResultKind, micros: u64) {
        let counter = match result {
            VerifyResultKind::Accept => &self.accepted,
            VerifyResultKind::Reject => &self.rejected,
            VerifyResultKind::Challenge => &self.challenged,
            VerifyResultKind::Error => &self.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        if let Some(b) = self.latency.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, store: &Store) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP okey_verify_total Verify requests by result.");
        let _ = writeln!(out, "# TYPE okey_verify_total counter");
        for (name, c) in [
            ("accept", &self.accepted),
            ("reject", &self.rejected),
            ("challenge", &self.challenged),
            ("error", &self.errors),
        ] {
            let _ = writeln!(
                out,
                "okey_verify_total{{result=\"{name}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP okey_verify_latency_seconds Verify latency, decode to reply."
        );
        let _ = writeln!(out, "# TYPE okey_verify_latency_seconds histogram");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += self.latency.get(i).map_or(0, |b| b.load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "okey_verify_latency_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        cumulative += self.latency.last().map_or(0, |b| b.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "okey_verify_latency_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "okey_verify_latency_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "okey_verify_latency_seconds_count {cumulative}");
        let _ = writeln!(
            out,
            "# HELP okey_refused_calls_total Calls refused for their credential, by status code."
        );
        let _ = writeln!(out, "# TYPE okey_refused_calls_total counter");
        for (code, c) in [
            ("unauthenticated", &self.unauthenticated),
            ("permission_denied", &self.permission_denied),
        ] {
            let _ = writeln!(
                out,
                "okey_refused_calls_total{{code=\"{code}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP okey_malformed_messages_total Received messages that did not decode as protobuf (answered INVALID_ARGUMENT)."
        );
        let _ = writeln!(out, "# TYPE okey_malformed_messages_total counter");
        let _ = writeln!(
            out,
            "okey_malformed_messages_total {}",
            crate::codec::malformed_messages()
        );
        self.radius.render(&mut out);
        if let Some(a) = self.anchor.get() {
            let _ = writeln!(
                out,
                "# HELP okey_audit_anchor_sequence The audit record last anchored (signed and published)."
            );
            let _ = writeln!(out, "# TYPE okey_audit_anchor_sequence gauge");
            let _ = writeln!(out, "okey_audit_anchor_sequence {}", a.seq);
            let _ = writeln!(
                out,
                "# HELP okey_audit_anchor_timestamp_seconds When the last anchor was signed."
            );
            let _ = writeln!(out, "# TYPE okey_audit_anchor_timestamp_seconds gauge");
            let _ = writeln!(out, "okey_audit_anchor_timestamp_seconds {}", a.at);
            let _ = writeln!(
                out,
                "# HELP okey_audit_anchor_info The last anchor: its record's hash and its node."
            );
            let _ = writeln!(out, "# TYPE okey_audit_anchor_info gauge");
            let _ = writeln!(
                out,
                "okey_audit_anchor_info{{sequence=\"{}\",head=\"{}\",node=\"{}\"}} 1",
                a.seq,
                hex::encode(a.head),
                a.node
            );
        }
        render_store(&mut out, &store.stats());
        match store.mail_stats() {
            Ok(stats) => crate::mail::render(
                &mut out,
                &stats,
                crate::clock::now(),
                self.mail_sender.get().map(|m| m.as_ref()),
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read the mail outbox for metrics"),
        }
        out
    }
}

fn render_store(out: &mut String, s: &okey_store::StoreStats) {
    let _ = writeln!(
        out,
        "# HELP okey_cache_entries Unsealed token keys held in memory."
    );
    let _ = writeln!(out, "# TYPE okey_cache_entries gauge");
    let _ = writeln!(out, "okey_cache_entries {}", s.cache_entries);
    let _ = writeln!(
        out,
        "# HELP okey_cache_lookups_total Key cache lookups by outcome."
    );
    let _ = writeln!(out, "# TYPE okey_cache_lookups_total counter");
    let _ = writeln!(
        out,
        "okey_cache_lookups_total{{outcome=\"hit\"}} {}",
        s.cache_hits
    );
    let _ = writeln!(
        out,
        "okey_cache_lookups_total{{outcome=\"miss\"}} {}",
        s.cache_misses
    );
    let _ = writeln!(
        out,
        "# HELP okey_commits_total State changes handled by the writer."
    );
    let _ = writeln!(out, "# TYPE okey_commits_total counter");
    let _ = writeln!(out, "okey_commits_total {}", s.commits);
    let _ = writeln!(
        out,
        "# HELP okey_commit_conflicts_total Compare-and-set conflicts retried."
    );
    let _ = writeln!(out, "# TYPE okey_commit_conflicts_total counter");
    let _ = writeln!(out, "okey_commit_conflicts_total {}", s.conflicts);
    let _ = writeln!(
        out,
        "# HELP okey_staff_code_failures_total Wrong codes in resynchronisations and bench \
         read-backs (never counted toward a holder's lockout)."
    );
    let _ = writeln!(out, "# TYPE okey_staff_code_failures_total counter");
    let _ = writeln!(out, "okey_staff_code_failures_total {}", s.staff_failures);
    render_histogram(
        out,
        "okey_commit_batch_size",
        "State changes per fsync'd transaction.",
        &s.batch_sizes,
        1.0,
        &s.commits.to_string(),
    );
    render_histogram(
        out,
        "okey_commit_duration_seconds",
        "Time to commit one transaction durably (write it, wait for the disk to flush it).",
        &s.commit_times_us,
        1e6,
        &(s.commit_micros as f64 / 1e6).to_string(),
    );
    let _ = writeln!(
        out,
        "# HELP okey_commit_requests_seconds_total Time the writer spent running requests before their commit."
    );
    let _ = writeln!(out, "# TYPE okey_commit_requests_seconds_total counter");
    let _ = writeln!(
        out,
        "okey_commit_requests_seconds_total {}",
        s.run_micros as f64 / 1e6
    );
}

/// One histogram from `(upper bound, count)` buckets (the last bound `u64::MAX`, shown as
/// `+Inf`), bounds divided by `unit`.
fn render_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    buckets: &[(u64, u64)],
    unit: f64,
    sum: &str,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, count) in buckets {
        cumulative += count;
        if *bound == u64::MAX {
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        } else {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / unit
            );
        }
    }
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// Serve `GET /metrics` on `listener` until the task is dropped.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, store: Store) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(buf.get(..n).unwrap_or(&[]));
            let (status, body) = if request.starts_with("GET /metrics ") {
                ("200 OK", metrics.render(&store))
            } else {
                ("404 Not Found", "not found\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}
