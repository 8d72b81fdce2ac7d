//! OCRA challenges: questions drawn at random in the suite's format, kept in the store.
//!
//! The store holds them (`okey_store::challenge`): single use, bound to one token, expiring, and
//! shared by every node on one database, so a challenge issued through one node can be answered
//! through another, exactly once. Taking a challenge spends it whether or not the response turns
//! out right, so one challenge allows exactly one guess (a wrong answer counts toward the
//! token's lockout like any wrong code). Until a lifetime after it would have expired, a spent
//! transaction is remembered, so a second answer to it is told `challenge_used` (or
//! `challenge_replaced` when the token asked for too many newer ones), not that the
//! transaction is unknown.

use okey_otp::{OcraSuite, QuestionKind};
use okey_store::challenge::{ChallengeRefusal, ChallengeRow};
use okey_store::{Store, StoreError};
use rand::Rng;

pub use okey_store::challenge::{MAX_OUTSTANDING, MAX_PER_TOKEN};

/// Why a challenge could not be used (see [`ChallengeRefusal`]).
pub type ChallengeError = ChallengeRefusal;

/// Issues and takes challenges of one lifetime.
pub struct Challenges {
    ttl: u64,
}

/// A question of the suite's format and length, and a fresh transaction id (128 random bits).
pub fn draw(suite: &OcraSuite) -> (String, String) {
    let (kind, max_len) = suite.question();
    let mut rng = rand::rng();
    let alphabet: &[u8] = match kind {
        QuestionKind::Numeric => b"0123456789",
        QuestionKind::Hex => b"0123456789ABCDEF",
        QuestionKind::Alphanumeric => b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789",
    };
    let question: String = (0..max_len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect();
    let mut id = [0u8; 16];
    rng.fill(&mut id);
    (hex::encode(id), question)
}

impl Challenges {
    /// Challenges that live `ttl_seconds`.
    pub fn new(ttl_seconds: u64) -> Self {
        Challenges { ttl: ttl_seconds }
    }

    /// Seconds a challenge lives.
    pub fn ttl(&self) -> u64 {
        self.ttl
    }

    /// Issue a challenge for `serial` in the suite's question format, at `now`; durable (and
    /// so answerable through any node) when this returns.
    pub async fn issue(
        &self,
        store: &Store,
        serial: &str,
        suite: &OcraSuite,
        now: u64,
    ) -> Result<Result<(String, ChallengeRow), ChallengeError>, StoreError> {
        let (transaction, question) = draw(suite);
        Ok(store
            .issue_challenge(
                transaction.clone(),
                serial.to_owned(),
                question,
                now,
                self.ttl,
            )
            .await?
            .map(|c| (transaction, c)))
    }

    /// Take (and so spend, on every node) the challenge of `transaction` at `now`.
    pub async fn take(
        &self,
        store: &Store,
        transaction: &str,
        now: u64,
    ) -> Result<Result<ChallengeRow, ChallengeError>, StoreError> {
        if transaction.is_empty()
            || transaction.len() > 64
            || !transaction.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Ok(Err(ChallengeRefusal::Unknown));
        }
        store.take_challenge(transaction, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(s: &str) -> OcraSuite {
        s.parse().expect("suite")
    }

    #[test]
    fn questions_follow_the_suite_and_transactions_are_fresh() {
        let (t1, q) = draw(&suite("OCRA-1:HOTP-SHA1-6:QN08"));
        assert_eq!(q.len(), 8);
        assert!(q.bytes().all(|b| b.is_ascii_digit()));
        let (_, q) = draw(&suite("OCRA-1:HOTP-SHA1-6:QH40"));
        assert_eq!(q.len(), 40);
        assert!(q.bytes().all(|b| b.is_ascii_hexdigit()));
        let (t2, q) = draw(&suite("OCRA-1:HOTP-SHA1-6:QA10"));
        assert_eq!(q.len(), 10);
        assert!(q.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(t1.len(), 32);
        assert_ne!(t1, t2);
    }
}
