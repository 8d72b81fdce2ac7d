//! The durable mail outbox: an e-mail is a row written in the same transaction as the change
//! that causes it, so a committed change always has its mail and a rolled-back one never does.
//!
//! A workflow that sends mail calls [`enqueue`] on its [`WriteTx`] inside its write job (next to
//! its compare-and-set and its audit record). A sender (crate `okey-notify`) later leases the due
//! rows with [`Store::claim_mail`] (so that of several nodes one sends each mail), delivers them and records the outcome with
//! [`Store::mail_sent`], [`Store::mail_retry`] or [`Store::mail_failed`]. Each row carries the
//! Message-ID chosen when it was enqueued, so every delivery attempt of one row, before or after
//! a crash, is the same message: a relay or reader that sees it twice can tell.

use crate::backend::WriteTx;
use crate::clock::unix_now;
use crate::store::Store;
use crate::types::Actor;
use crate::{StoreError, audit};

/// Most recipients of one mail.
pub const MAX_RECIPIENTS: usize = 50;
/// Longest subject, in characters.
pub const MAX_SUBJECT: usize = 400;
/// Longest body, in bytes.
pub const MAX_BODY: usize = 256 * 1024;

/// A mail to enqueue, already rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMail {
    /// Globally unique Message-ID, with its angle brackets (`<...@domain>`).
    pub message_id: String,
    /// Template (kind of mail) it was rendered from, e.g. `test`, `request.pending`.
    pub template: String,
    /// Recipients' addresses.
    pub to: Vec<String>,
    /// Addresses in copy (`Cc`), none for most mails.
    pub cc: Vec<String>,
    /// Subject (one line).
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// Where a mail stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailState {
    /// Waiting for its (next) delivery attempt.
    Pending,
    /// Accepted by the relay.
    Sent,
    /// Given up: refused permanently by the relay, or too many attempts.
    Failed,
}

impl MailState {
    /// Its name in the database and in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            MailState::Pending => "pending",
            MailState::Sent => "sent",
            MailState::Failed => "failed",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<MailState> {
        match s {
            "pending" => Some(MailState::Pending),
            "sent" => Some(MailState::Sent),
            "failed" => Some(MailState::Failed),
            _ => None,
        }
    }
}

/// A mail as stored in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailRow {
    /// Row id (order of enqueueing).
    pub id: u64,
    /// The mail.
    pub mail: NewMail,
    /// Where it stands.
    pub state: MailState,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When it was enqueued (Unix seconds).
    pub created_at: u64,
    /// Earliest time of the next attempt (pending mails).
    pub next_attempt_at: u64,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// When the relay accepted it.
    pub sent_at: Option<u64>,
}

/// Counts of the outbox, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Mails waiting.
    pub pending: u64,
    /// Mails accepted by the relay.
    pub sent: u64,
    /// Mails given up.
    pub failed: u64,
    /// Enqueueing time of the oldest waiting mail.
    pub oldest_pending_at: Option<u64>,
}

fn check(m: &NewMail) -> Result<(), StoreError> {
    let id = &m.message_id;
    if id.len() < 5
        || id.len() > 250
        || !id.starts_with('<')
        || !id.ends_with('>')
        || !id.contains('@')
        || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(StoreError::invalid(
            "message id",
            "must be <local@domain> in printable ASCII, at most 250 characters",
        ));
    }
    if m.template.is_empty()
        || m.template.len() > 64
        || !m
            .template
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(StoreError::invalid(
            "template",
            "must be 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    if m.to.is_empty() || m.to.len() + m.cc.len() > MAX_RECIPIENTS {
        return Err(StoreError::invalid(
            "recipients",
            format!("a mail has 1 to {MAX_RECIPIENTS} recipients"),
        ));
    }
    for a in m.to.iter().chain(&m.cc) {
        // The sender parses addresses fully; here only what could break the stored list.
        if a.is_empty() || a.len() > 254 || a.chars().any(|c| c.is_control() || c == ' ') {
            return Err(StoreError::invalid(
                "recipient",
                "an address is 1 to 254 characters without spaces or control characters",
            ));
        }
    }
    if m.subject.trim().is_empty()
        || m.subject.chars().count() > MAX_SUBJECT
        || m.subject.chars().any(char::is_control)
    {
        return Err(StoreError::invalid(
            "subject",
            format!("must be one line of 1 to {MAX_SUBJECT} characters"),
        ));
    }
    if m.body.len() > MAX_BODY
        || m.body
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(StoreError::invalid(
            "body",
            format!("must be text (lines and tabs only) of at most {MAX_BODY} bytes"),
        ));
    }
    Ok(())
}

/// Enqueue a mail inside the caller's write transaction: it is durable exactly when the
/// transaction commits. The mail is due at once. Returns its row id.
pub fn enqueue(tx: &mut dyn WriteTx, mail: &NewMail, now: u64) -> Result<u64, StoreError> {
    check(mail)?;
    tx.enqueue_mail(mail, now)
}

impl Store {
    /// Enqueue one mail on its own (with an audit record naming the actor): used by
    /// `okey mail test`. Workflows enqueue through [`enqueue`] inside their own transaction.
    pub fn enqueue_mail(&self, mail: NewMail, actor: &Actor) -> Result<u64, StoreError> {
        check(&mail)?;
        let now = unix_now();
        let entry = Self::audit_entry(
            actor,
            "mail.enqueue",
            &mail.to.join(","),
            None,
            "ok",
            &format!("{} {}", mail.template, mail.message_id),
            now,
        );
        let key = self.inner.audit_key.clone();
        self.inner.writer.run_blocking(move |tx| {
            let id = enqueue(tx, &mail, now)?;
            audit::append(tx, &key, entry)?;
            Ok(id)
        })
    }

    /// Up to `limit` pending mails due at `now`, oldest first.
    pub fn mail_due(&self, now: u64, limit: u32) -> Result<Vec<MailRow>, StoreError> {
        self.inner.backend.mail_due(now, limit)
    }

    /// Lease up to `limit` pending mails due at `now` to the sender named `node` for `lease`
    /// seconds, durably, and return them, oldest first. A mail leased by a sender is not leased
    /// again (by it or by a sender on another node) until its outcome is recorded or the lease
    /// runs out: with several nodes on one database each mail is sent by one of them, and a
    /// node that dies mid-send leaves its mails to another once the lease has passed.
    pub async fn claim_mail(
        &self,
        now: u64,
        lease: u64,
        node: &str,
        limit: u32,
    ) -> Result<Vec<MailRow>, StoreError> {
        if node.is_empty() || node.len() > 64 || !node.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StoreError::invalid(
                "sender name",
                "1 to 64 printable ASCII characters",
            ));
        }
        if lease == 0 {
            return Err(StoreError::invalid("lease", "at least one second"));
        }
        let node = node.to_owned();
        let until = now.saturating_add(lease);
        self.inner
            .writer
            .run(true, move |tx| tx.claim_mail(now, until, &node, limit))
            .await
    }

    /// The earliest next attempt among pending mails (or the end of a lease on one).
    pub fn mail_next_due(&self) -> Result<Option<u64>, StoreError> {
        self.inner.backend.mail_next_due()
    }

    /// Mails in one of `states`, oldest first, up to `limit`.
    pub fn mail_list(&self, states: &[MailState], limit: u32) -> Result<Vec<MailRow>, StoreError> {
        self.inner.backend.mail_list(states, limit)
    }

    /// Counts for metrics.
    pub fn mail_stats(&self) -> Result<OutboxStats, StoreError> {
        self.inner.backend.mail_stats()
    }

    /// Record that the relay accepted mail `id` (attempt number `attempts`).
    pub async fn mail_sent(&self, id: u64, attempts: u32, at: u64) -> Result<(), StoreError> {
        self.mail_outcome(id, MailState::Sent, attempts, at, None)
            .await
    }

    /// Record a failed attempt of mail `id`; it is tried again at `next_at`.
    pub async fn mail_retry(
        &self,
        id: u64,
        attempts: u32,
        next_at: u64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.mail_outcome(id, MailState::Pending, attempts, next_at, Some(error))
            .await
    }

    /// Give mail `id` up: the relay refused it for good, or it ran out of attempts.
    pub async fn mail_failed(
        &self,
        id: u64,
        attempts: u32,
        at: u64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.mail_outcome(id, MailState::Failed, attempts, at, Some(error))
            .await
    }

    async fn mail_outcome(
        &self,
        id: u64,
        state: MailState,
        attempts: u32,
        at: u64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        // An error text comes from the relay: keep it short and on one line.
        let error: Option<String> = error.map(|e| {
            e.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(500)
                .collect()
        });
        self.inner
            .writer
            .run(true, move |tx| {
                if tx.mail_outcome(id, state, attempts, at, error.as_deref())? {
                    Ok(())
                } else {
                    Err(StoreError::Precondition(format!(
                        "mail {id} is not pending in the outbox"
                    )))
                }
            })
            .await
    }
}
