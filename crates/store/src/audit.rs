//! The audit chain: each record's MAC is HMAC-SHA256, under a sealed audit key, of the previous
//! record's MAC, its sequence number and its fields. Changing, removing or reordering a record
//! breaks the chain at that record; without the audit key (sealed under the data key) nobody can
//! re-forge the chain after editing the database.
//!
//! What the chain cannot show on its own is the removal of the newest records (a truncated tail):
//! that needs the head to be anchored elsewhere. Every check reports the head it reached, the
//! server publishes signed heads (`crate::anchor`), and a check given earlier heads
//! ([`AuditAnchor`]) fails when one of those records is gone or differs.

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
    /// Records known from outside the database, by sequence number; the next one to meet.
    anchors: Vec<AuditAnchor>,
    next_anchor: usize,
    /// The first anchored record that differs from its anchor.
    differs: Option<u64>,
    /// The last anchored record that matched, before `differs`.
    matched: u64,
    pub(crate) report: AuditReport,
}

impl<'k> ChainCheck<'k> {
    /// `anchors` in any order; several may name the same record.
    pub(crate) fn new(key: &'k OtpKey, mut anchors: Vec<AuditAnchor>) -> Self {
        anchors.sort_by_key(|a| a.seq);
        ChainCheck {
            key,
            expected: 1,
            prev: [0u8; 32],
            anchors,
            next_anchor: 0,
            differs: None,
            matched: 0,
            report: AuditReport {
                records: 0,
                first_bad: None,
                problem: None,
                head: None,
            },
        }
    }

    /// After the walk: whether the chain still holds every record the anchors name, unchanged.
    /// The earliest problem is reported: a broken link, an anchored record that differs, or
    /// anchored records beyond the chain's end.
    pub(crate) fn finish(mut self) -> AuditReport {
        if let Some(seq) = self.differs {
            self.report.first_bad = Some(seq);
            self.report.problem = Some(if self.matched == 0 {
                format!(
                    "record {seq} is not the one seen before (the chain was rewritten from there)"
                )
            } else {
                format!(
                    "record {seq} is not the one seen before (the chain was rewritten after record {}, which matches)",
                    self.matched
                )
            });
            return self.report;
        }
        if self.report.first_bad.is_some() {
            return self.report;
        }
        let head = self.report.head.map_or(0, |h| h.seq);
        if let Some(last) = self.anchors.last().filter(|a| a.seq > head) {
            self.report.first_bad = Some(head + 1);
            self.report.problem = Some(format!(
                "the chain ends at record {head} but record {} was seen before: records {} to {} were removed",
                last.seq,
                head + 1,
                last.seq
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
        while let Some(a) = self.anchors.get(self.next_anchor) {
            if a.seq > rec.seq {
                break;
            }
            // Anchors below the first record (sequence 0) never match anything.
            let same = a.seq == rec.seq
                && bool::from(subtle::ConstantTimeEq::ct_eq(&a.mac[..], &rec.mac[..]));
            if self.differs.is_none() {
                if same {
                    self.matched = a.seq;
                } else {
                    self.differs = Some(a.seq.max(1));
                }
            }
            self.next_anchor += 1;
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
