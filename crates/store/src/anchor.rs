//! Signed anchors of the audit chain.
//!
//! The HMAC chain shows a changed record, but not a cut tail, nor a database replaced by an
//! older copy: both leave a chain that checks out. An anchor is the chain's head (sequence
//! number and MAC) with the time and the node that saw it, signed with an Ed25519 key sealed in
//! the store (secret `anchor-key`, sealed under the data key like the seeds, created on first
//! open). Published outside the database (an append-only file, syslog, the metrics endpoint),
//! anchors let `okey audit verify --anchors` check, with the public key only, that the chain
//! still holds every record once anchored.
//!
//! One anchor is one line of text:
//!
//! ```text
//! okey-anchor/v1 seq=42 head=<64 hex> at=1764000000 node=otp-1 sig=<128 hex>
//! ```
//!
//! The signature covers `okey/audit-anchor/v1\0 ‖ seq ‖ head ‖ at ‖ len(node) ‖ node`
//! (integers big-endian), never the text, so a line cannot be reformatted into another anchor.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::types::AuditAnchor;

/// The store secret holding the 32-byte Ed25519 signing seed.
pub(crate) const ANCHOR_KEY: &str = "anchor-key";

const LINE_TAG: &str = "okey-anchor/v1";
const KEY_TAG: &str = "okey-anchor-key/v1 ed25519";
const DOMAIN: &[u8] = b"okey/audit-anchor/v1\0";
/// Longest node name.
pub const MAX_NODE_LEN: usize = 64;

/// Why an anchor, an anchors file or a public key is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnchorError {
    /// A line that is not an anchor.
    #[error("line {line}: {why}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A well-formed line whose signature does not verify under the public key.
    #[error("line {line}: the signature of the anchor of record {seq} does not verify")]
    BadSignature {
        /// 1-based line number.
        line: usize,
        /// The sequence number the line claims.
        seq: u64,
    },
    /// A public key that cannot be read.
    #[error("not an anchor public key: {0}")]
    PublicKey(String),
    /// A node name that cannot be signed.
    #[error("a node name is 1 to 64 letters, digits, '.', '-' or '_': {0:?}")]
    Node(String),
}

/// Check a node name: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn check_node(node: &str) -> Result<(), AnchorError> {
    let ok = !node.is_empty()
        && node.len() <= MAX_NODE_LEN
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(AnchorError::Node(node.chars().take(80).collect()))
    }
}

fn message(seq: u64, head: &[u8; 32], at: u64, node: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 52 + node.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(head);
    m.extend_from_slice(&at.to_be_bytes());
    m.extend_from_slice(&(node.len() as u32).to_be_bytes());
    m.extend_from_slice(node.as_bytes());
    m
}

/// A signed head of the audit chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAnchor {
    /// The head record's sequence number.
    pub seq: u64,
    /// The head record's MAC.
    pub head: [u8; 32],
    /// Unix seconds when it was signed.
    pub at: u64,
    /// The node that signed it.
    pub node: String,
    /// Ed25519 signature of the fields.
    pub signature: [u8; 64],
}

impl SignedAnchor {
    pub(crate) fn sign(
        key: &SigningKey,
        head: AuditAnchor,
        at: u64,
        node: &str,
    ) -> Result<SignedAnchor, AnchorError> {
        check_node(node)?;
        let sig: Signature = key.sign(&message(head.seq, &head.mac, at, node));
        Ok(SignedAnchor {
            seq: head.seq,
            head: head.mac,
            at,
            node: node.to_owned(),
            signature: sig.to_bytes(),
        })
    }

    /// The record it names.
    pub fn anchor(&self) -> AuditAnchor {
        AuditAnchor {
            seq: self.seq,
            mac: self.head,
        }
    }

    /// Whether the signature verifies under `key` (strict verification: no malleable
    /// signatures, no weak keys).
    pub fn verifies(&self, key: &AnchorPublicKey) -> bool {
        let sig = Signature::from_bytes(&self.signature);
        key.0
            .verify_strict(&message(self.seq, &self.head, self.at, &self.node), &sig)
            .is_ok()
    }

    /// The anchor as one line (no newline).
    pub fn to_line(&self) -> String {
        format!(
            "{LINE_TAG} seq={} head={} at={} node={} sig={}",
            self.seq,
            hex::encode(self.head),
            self.at,
            self.node,
            hex::encode(self.signature)
        )
    }

    /// Read one line written by [`SignedAnchor::to_line`]; the signature is not checked here.
    /// `line` is the 1-based line number used in errors.
    pub fn parse_line(text: &str, line: usize) -> Result<SignedAnchor, AnchorError> {
        let bad = |why: &str| AnchorError::Malformed {
            line,
            why: why.to_owned(),
        };
        let mut parts = text.split(' ');
        if parts.next() != Some(LINE_TAG) {
            return Err(bad("an anchor line starts with okey-anchor/v1"));
        }
        let mut field = |name: &str| -> Result<&str, AnchorError> {
            parts
                .next()
                .and_then(|p| p.strip_prefix(name))
                .and_then(|p| p.strip_prefix('='))
                .ok_or_else(|| bad(&format!("expected {name}=")))
        };
        let seq: u64 = field("seq")?
            .parse()
            .map_err(|_| bad("seq is not a number"))?;
        let head_hex = field("head")?;
        let at: u64 = field("at")?
            .parse()
            .map_err(|_| bad("at is not a number"))?;
        let node = field("node")?.to_owned();
        let sig_hex = field("sig")?;
        if parts.next().is_some() {
            return Err(bad("unexpected text after sig="));
        }
        if seq == 0 {
            return Err(bad("seq starts at 1"));
        }
        let mut head = [0u8; 32];
        hex::decode_to_slice(head_hex, &mut head)
            .map_err(|_| bad("head is 64 hexadecimal characters"))?;
        let mut signature = [0u8; 64];
        hex::decode_to_slice(sig_hex, &mut signature)
            .map_err(|_| bad("sig is 128 hexadecimal characters"))?;
        check_node(&node).map_err(|e| bad(&e.to_string()))?;
        Ok(SignedAnchor {
            seq,
            head,
            at,
            node,
            signature,
        })
    }
}

/// Read an anchors file: every non-empty line must be an anchor whose signature verifies under
/// `key`. The first bad line refuses the whole file (a forged or damaged line is not skipped).
pub fn read_anchors(text: &str, key: &AnchorPublicKey) -> Result<Vec<SignedAnchor>, AnchorError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim_end_matches('\r');
        if l.trim().is_empty() {
            continue;
        }
        let a = SignedAnchor::parse_line(l, i + 1)?;
        if !a.verifies(key) {
            return Err(AnchorError::BadSignature {
                line: i + 1,
                seq: a.seq,
            });
        }
        out.push(a);
    }
    Ok(out)
}

/// The public half of the anchor key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorPublicKey(VerifyingKey);

impl AnchorPublicKey {
    pub(crate) fn of(key: &SigningKey) -> Self {
        AnchorPublicKey(key.verifying_key())
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// From 32 raw bytes; weak (small-order) keys are refused.
    pub fn from_bytes(b: &[u8; 32]) -> Result<Self, AnchorError> {
        let k = VerifyingKey::from_bytes(b)
            .map_err(|_| AnchorError::PublicKey("not a point of the curve".into()))?;
        if k.is_weak() {
            return Err(AnchorError::PublicKey("a weak key".into()));
        }
        Ok(AnchorPublicKey(k))
    }

    /// The text form `okey audit public-key` prints: `okey-anchor-key/v1 ed25519 <64 hex>`.
    pub fn to_text(&self) -> String {
        format!("{KEY_TAG} {}", hex::encode(self.to_bytes()))
    }

    /// Read [`AnchorPublicKey::to_text`]'s form (surrounding blank space is ignored).
    pub fn parse(text: &str) -> Result<Self, AnchorError> {
        let hex_part = text
            .trim()
            .strip_prefix(KEY_TAG)
            .map(str::trim)
            .ok_or_else(|| AnchorError::PublicKey(format!("expected \"{KEY_TAG} <hex>\"")))?;
        let mut b = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut b)
            .map_err(|_| AnchorError::PublicKey("the key is 64 hexadecimal characters".into()))?;
        Self::from_bytes(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn sample() -> SignedAnchor {
        SignedAnchor::sign(
            &key(7),
            AuditAnchor {
                seq: 42,
                mac: [0xab; 32],
            },
            1_764_000_000,
            "otp-1",
        )
        .expect("sign")
    }

    #[test]
    fn a_line_reads_back_and_verifies() {
        let a = sample();
        let line = a.to_line();
        let b = SignedAnchor::parse_line(&line, 1).expect("parse");
        assert_eq!(a, b);
        let pk = AnchorPublicKey::of(&key(7));
        assert!(b.verifies(&pk));
        assert!(!b.verifies(&AnchorPublicKey::of(&key(8))));
        let pk2 = AnchorPublicKey::parse(&format!("{}\n", pk.to_text())).expect("key");
        assert_eq!(pk, pk2);
    }

    #[test]
    fn every_field_is_signed() {
        let pk = AnchorPublicKey::of(&key(7));
        let a = sample();
        let mut b = a.clone();
        b.seq += 1;
        assert!(!b.verifies(&pk));
        let mut b = a.clone();
        b.head[31] ^= 1;
        assert!(!b.verifies(&pk));
        let mut b = a.clone();
        b.at += 1;
        assert!(!b.verifies(&pk));
        let mut b = a.clone();
        b.node = "otp-2".into();
        assert!(!b.verifies(&pk));
    }

    #[test]
    fn a_file_with_one_forged_line_is_refused_at_that_line() {
        let pk = AnchorPublicKey::of(&key(7));
        let a = sample();
        let mut forged = a.clone();
        forged.seq = 40;
        let text = format!("{}\n\n{}\n", a.to_line(), forged.to_line());
        assert_eq!(
            read_anchors(&text, &pk),
            Err(AnchorError::BadSignature { line: 3, seq: 40 })
        );
        let ok = read_anchors(&format!("{}\n", a.to_line()), &pk).expect("read");
        assert_eq!(ok, vec![a]);
        assert!(matches!(
            read_anchors("okey-anchor/v1 seq=1\n", &pk),
            Err(AnchorError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn bad_node_names_are_refused() {
        for n in ["", "a b", "x\ny", &"n".repeat(65), "é"] {
            assert!(check_node(n).is_err(), "{n:?}");
        }
        assert!(check_node("otp-1.rectorat_2").is_ok());
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 section 7.1, TEST 1: the empty message.
        let mut sk = [0u8; 32];
        hex::decode_to_slice(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            &mut sk,
        )
        .expect("hex");
        let k = SigningKey::from_bytes(&sk);
        assert_eq!(
            hex::encode(k.verifying_key().to_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            hex::encode(k.sign(b"").to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }
}
