//! The sender: delivers the outbox's due mails, one at a time, with exponential back-off.
//!
//! It runs as its own task and only leases outbox rows and records outcomes, so a relay that is
//! down or slow delays mail and never a workflow (which only inserted a row). Each mail is
//! leased durably before it is sent ([`Store::claim_mail`]): with several okey nodes on one
//! database, one of them sends it; a node that dies mid-send leaves it leased until the lease
//! (four SMTP timeouts, at least a minute) runs out, and another node then sends it. A mail
//! accepted by the relay is marked sent right after; if okey dies between the two, the mail is
//! sent again after the lease with the same Message-ID and Date (at-least-once delivery that a
//! reader can recognise), and a mail whose change was committed is never lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use okey_store::Store;
use okey_store::outbox::MailRow;
use tokio::sync::Notify;

use crate::clock::unix_now;
use crate::config::Retry;
use crate::smtp::Mailer;

/// Counters of this process's deliveries (the outbox itself holds the durable counts).
#[derive(Debug, Default)]
pub struct SenderMetrics {
    /// Attempts that the relay accepted.
    pub sent: AtomicU64,
    /// Attempts that failed (each retry counts).
    pub attempts_failed: AtomicU64,
    /// Mails given up.
    pub given_up: AtomicU64,
}

/// Wakes the sender when a mail was enqueued, instead of waiting for its next poll.
#[derive(Clone, Debug, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    /// Tell the sender there is mail.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// The sender's settings.
#[derive(Clone, Copy, Debug)]
pub struct SenderConfig {
    /// Retry policy.
    pub retry: Retry,
    /// Longest sleep between looks at the outbox.
    pub poll: Duration,
    /// How long a mail stays leased to this sender while it tries to deliver it.
    pub lease: Duration,
    /// This sender's name in the leases (random, drawn at start).
    pub node: u64,
}

impl SenderConfig {
    /// Settings for a relay whose every step is bounded by `timeout`: the lease is four such
    /// timeouts (connection, greeting, envelope, data), at least a minute.
    pub fn new(retry: Retry, poll: Duration, timeout: Duration) -> SenderConfig {
        let mut node = [0u8; 8];
        // Without randomness two senders could share a name; the process id still tells them
        // apart on one machine.
        if getrandom::fill(&mut node).is_err() {
            node[..4].copy_from_slice(&std::process::id().to_be_bytes());
        }
        SenderConfig {
            retry,
            poll,
            lease: timeout.saturating_mul(4).max(Duration::from_secs(60)),
            node: u64::from_be_bytes(node),
        }
    }

    fn node_name(&self) -> String {
        format!("{:016x}", self.node)
    }
}

/// Mails leased at once: each is delivered within its own lease.
const CLAIM: u32 = 1;

/// Deliver what is due now (and not leased to another sender); returns how many mails were
/// attempted.
pub async fn send_due<M: Mailer>(
    store: &Store,
    mailer: &M,
    cfg: &SenderConfig,
    metrics: &SenderMetrics,
) -> usize {
    let node = cfg.node_name();
    let mut n = 0;
    while n < BATCH {
        let due = match store
            .claim_mail(unix_now(), cfg.lease.as_secs(), &node, CLAIM)
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot lease mails from the outbox");
                break;
            }
        };
        if due.is_empty() {
            break;
        }
        for row in due {
            n += 1;
            attempt(store, mailer, cfg, metrics, &row).await;
        }
    }
    n
}

/// Most mails attempted by one [`send_due`].
const BATCH: usize = 32;

async fn attempt<M: Mailer>(
    store: &Store,
    mailer: &M,
    cfg: &SenderConfig,
    metrics: &SenderMetrics,
    row: &MailRow,
) {
    let attempts = row.attempts.saturating_add(1);
    let result = mailer.deliver(row).await;
    let now = unix_now();
    let recorded = match result {
        Ok(()) => {
            metrics.sent.fetch_add(1, Ordering::Relaxed);
            tracing::info!(id = row.id, message_id = %row.mail.message_id, template = %row.mail.template, attempts, "mail sent");
            store.mail_sent(row.id, attempts, now).await
        }
        Err(e) if e.permanent || attempts >= cfg.retry.max_attempts => {
            metrics.attempts_failed.fetch_add(1, Ordering::Relaxed);
            metrics.given_up.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(id = row.id, message_id = %row.mail.message_id, attempts, error = %e, "mail given up");
            store.mail_failed(row.id, attempts, now, &e.message).await
        }
        Err(e) => {
            metrics.attempts_failed.fetch_add(1, Ordering::Relaxed);
            let delay = cfg.retry.delay(attempts);
            tracing::warn!(id = row.id, message_id = %row.mail.message_id, attempts, retry_in_seconds = delay.as_secs(), error = %e, "mail not sent; will retry");
            store
                .mail_retry(
                    row.id,
                    attempts,
                    now.saturating_add(delay.as_secs()),
                    &e.message,
                )
                .await
        }
    };
    if let Err(e) = recorded {
        tracing::error!(id = row.id, error = %e, "cannot record a mail delivery outcome");
    }
}

/// Run the sender until the task is dropped: deliver what is due, then sleep until the next
/// due mail, a wake-up, or the poll interval, whichever comes first.
pub async fn run<M: Mailer>(
    store: Store,
    mailer: M,
    cfg: SenderConfig,
    metrics: Arc<SenderMetrics>,
    waker: Waker,
) {
    loop {
        // Keep going while a full batch came back.
        while send_due(&store, &mailer, &cfg, &metrics).await >= BATCH {}
        let sleep = match store.mail_next_due() {
            Ok(Some(at)) => Duration::from_secs(at.saturating_sub(unix_now())).min(cfg.poll),
            _ => cfg.poll,
        };
        let sleep = sleep.max(Duration::from_millis(200));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = waker.0.notified() => {}
        }
    }
}
