//! The audit chain: each record's MAC is HMAC-SHA256, under a sealed audit key, of the previous
//! record's MAC, its sequence number and its fields. Changing, removing or reordering a record
//! breaks the chain at that record; without the audit key (sealed under the data key) nobody can
//! re-forge the chain after editing the database.
//!
//! What the chain cannot show on its own is the removal of the newest records (a truncated tail):
//! that needs the head to be anchored elsewhere. Every check reports the head it reached, the
//! server logs the head periodically, and a check given an earlier head ([`AuditAnchor`]) fails
//! when that record is gone or differs.

use okey_otp::OtpKey;

use crate::StoreError;
use crate::backend::WriteTx;
use crate::types::{AuditAnchor, AuditEntry, AuditRecord, AuditReport};

fn push_str(m: &mut Vec<u8>, s: &str) {
    m.extend_from_slice(&(s.len() as u32).to_be_bytes());
    m.extend_from_slice(s.as_bytes());
}

/// The MAC of a record.
pub(crate) fn mac(key: &OtpKey, prev: &[u8; 32], seq: u64, e: &AuditEntry) -> [u8; 32] {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(b"okey/audit/v1\0");
    m.extend_from_slice(prev);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&e.at.to_be_bytes());
    push_str(&mut m, &e.actor);
    push_str(&mut m, &e.action);
    push_str(&mut m, &e.subject);
    match &e.serial {
        Some(s) => {
            m.push(1);
            push_str(&mut m, s);
        }
        None => m.push(0),
    }
    push_str(&mut m, &e.result);
    push_str(&mut m, &e.reason);
    let d = key.mac(&m);
    let mut out = [0u8; 32];
    if let Some(b) = d.as_bytes().get(..32) {
        out.copy_from_slice(b);
    }
    out
}

/// Append `entry` after the current head, inside the caller's transaction.
pub(crate) fn append(
    tx: &mut dyn WriteTx,
    key: &OtpKey,
    entry: AuditEntry,
) -> Result<AuditRecord, StoreError> {
    let (seq, prev) = tx.audit_head()?.map_or((1, [0u8; 32]), |(s, m)| (s + 1, m));
    let rec = AuditRecord {
        seq,
        mac: mac(key, &prev, seq, &entry),
        entry,
        prev,
    };
    tx.insert_audit(&rec)?;
    Ok(rec)
}

/// Walks records in order and reports the first break.
pub(crate) struct ChainCheck<'k> {
    key: &'k OtpKey,
    expected: u64,
    prev: [u8; 32],
    /// The record to compare against the anchor's MAC, and whether it matched.
    anchor: Option<AuditAnchor>,
    anchor_seen: Option<bool>,
    pub(crate) report: AuditReport,
}

impl<'k> ChainCheck<'k> {
    pub(crate) fn new(key: &'k OtpKey, anchor: Option<AuditAnchor>) -> Self {
        ChainCheck {
            key,
            expected: 1,
            prev: [0u8; 32],
            anchor,
            anchor_seen: None,
            report: AuditReport {
                records: 0,
                first_bad: None,
                problem: None,
                head: None,
            },
        }
    }

    /// After the walk: whether the chain still holds the record `anchor` names, unchanged. A
    /// broken chain is reported as it is.
    pub(crate) fn finish(mut self) -> AuditReport {
        let Some(anchor) = self.anchor else {
            return self.report;
        };
        if self.report.first_bad.is_some() {
            return self.report;
        }
        let head = self.report.head.map_or(0, |h| h.seq);
        if anchor.seq > head {
            self.report.first_bad = Some(head + 1);
            self.report.problem = Some(format!(
                "the chain ends at record {head} but record {} was seen before: records {} to {} were removed",
                anchor.seq,
                head + 1,
                anchor.seq
            ));
        } else if self.anchor_seen != Some(true) {
            self.report.first_bad = Some(anchor.seq);
            self.report.problem = Some(format!(
                "record {} is not the one seen before (the chain was rewritten from there)",
                anchor.seq
            ));
        }
        self.report
    }

    /// Check one record; false once the chain is broken (stop walking).
    pub(crate) fn step(&mut self, rec: &AuditRecord) -> bool {
        let problem = if rec.seq != self.expected {
            Some((
                self.expected,
                format!(
                    "record {} is missing (found {} next)",
                    self.expected, rec.seq
                ),
            ))
        } else if rec.prev != self.prev {
            Some((
                rec.seq,
                format!(
                    "record {} does not follow record {} (removed or reordered)",
                    rec.seq,
                    rec.seq.saturating_sub(1)
                ),
            ))
        } else if !bool::from(subtle::ConstantTimeEq::ct_eq(
            &mac(self.key, &rec.prev, rec.seq, &rec.entry)[..],
            &rec.mac[..],
        )) {
            Some((rec.seq, format!("record {} has been altered", rec.seq)))
        } else {
            None
        };
        if let Some((seq, why)) = problem {
            self.report.first_bad = Some(seq);
            self.report.problem = Some(why);
            return false;
        }
        if let Some(a) = self.anchor.filter(|a| a.seq == rec.seq) {
            self.anchor_seen = Some(bool::from(subtle::ConstantTimeEq::ct_eq(
                &a.mac[..],
                &rec.mac[..],
            )));
        }
        self.report.records += 1;
        self.report.head = Some(AuditAnchor {
            seq: rec.seq,
            mac: rec.mac,
        });
        self.expected = rec.seq + 1;
        self.prev = rec.mac;
        true
    }
}
