//! Outstanding OCRA challenges: single-use, bound to one token, expiring.
//!
//! A challenge lives only in memory: after a restart the user simply asks for a new one, and
//! nothing that could be replayed survives. Taking a challenge removes it whether or not the
//! response turns out right, so one challenge allows exactly one guess (a wrong answer counts
//! toward the token's lockout like any wrong code). Until it would have expired, a spent
//! transaction is remembered, so a second answer to it is told `challenge_used` (or
//! `challenge_replaced` when the token asked for too many newer ones), not that the
//! transaction is unknown.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use okey_otp::{OcraSuite, QuestionKind};
use rand::Rng;

/// Most challenges outstanding at once; beyond this the oldest expired ones are swept and, if
/// none expired, new requests are refused (a flood cannot exhaust memory).
pub const MAX_OUTSTANDING: usize = 100_000;

/// Most challenges outstanding for one token; a new one beyond this replaces that token's
/// oldest, so asking again and again for one user can neither fill the book for everyone nor
/// keep that user's newest challenge from working.
pub const MAX_PER_TOKEN: usize = 4;

/// An issued challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The token it was issued for.
    pub serial: String,
    /// The question shown to the user.
    pub question: String,
    /// Unix time after which it is no longer accepted.
    pub expires_at: u64,
}

/// Why a challenge could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// No such transaction (never issued, or expired long ago).
    #[error("unknown transaction")]
    Unknown,
    /// The challenge was already answered (rightly or wrongly): one challenge, one answer.
    #[error("the challenge was already answered; ask for a new one")]
    Used,
    /// The token asked for more challenges since, and this one, its oldest, was dropped.
    #[error("newer challenges replaced this one; answer the latest")]
    Replaced,
    /// Issued, but too late now.
    #[error("the challenge has expired")]
    Expired,
    /// Too many outstanding challenges.
    #[error("too many outstanding challenges")]
    Full,
}

/// The book of outstanding challenges.
pub struct Challenges {
    ttl: u64,
    book: Mutex<Book>,
}

/// Challenges by transaction, each token's transactions (oldest first), and the transactions
/// spent (answered or replaced) that have not yet expired, in the order they were spent.
#[derive(Default)]
struct Book {
    by_transaction: HashMap<String, Challenge>,
    by_token: HashMap<String, VecDeque<String>>,
    spent: HashMap<String, (u64, ChallengeError)>,
    spent_order: VecDeque<String>,
}

impl Book {
    /// Remember that `transaction` (live until `expires_at`) was spent, and why; forget spent
    /// transactions that have expired, and the oldest beyond [`MAX_OUTSTANDING`].
    fn spend(&mut self, transaction: String, expires_at: u64, why: ChallengeError, now: u64) {
        while let Some(front) = self.spent_order.front() {
            let expired = self.spent.get(front).is_none_or(|(e, _)| *e < now);
            if !expired && self.spent_order.len() < MAX_OUTSTANDING {
                break;
            }
            if let Some(t) = self.spent_order.pop_front() {
                self.spent.remove(&t);
            }
        }
        self.spent.insert(transaction.clone(), (expires_at, why));
        self.spent_order.push_back(transaction);
    }

    fn remove(&mut self, transaction: &str) -> Option<Challenge> {
        let c = self.by_transaction.remove(transaction)?;
        if let Some(q) = self.by_token.get_mut(&c.serial) {
            q.retain(|t| t != transaction);
            if q.is_empty() {
                self.by_token.remove(&c.serial);
            }
        }
        Some(c)
    }

    fn sweep(&mut self, now: u64) {
        self.by_transaction.retain(|_, c| c.expires_at >= now);
        let live = &self.by_transaction;
        self.by_token.retain(|_, q| {
            q.retain(|t| live.contains_key(t));
            !q.is_empty()
        });
    }
}

impl Challenges {
    /// A book whose challenges live `ttl_seconds`.
    pub fn new(ttl_seconds: u64) -> Self {
        Challenges {
            ttl: ttl_seconds,
            book: Mutex::new(Book::default()),
        }
    }

    /// Seconds a challenge lives.
    pub fn ttl(&self) -> u64 {
        self.ttl
    }

    /// Issue a challenge for `serial` in the suite's question format, at `now`.
    pub fn issue(
        &self,
        serial: &str,
        suite: &OcraSuite,
        now: u64,
    ) -> Result<(String, Challenge), ChallengeError> {
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
        let transaction = hex::encode(id);
        let challenge = Challenge {
            serial: serial.to_owned(),
            question,
            expires_at: now.saturating_add(self.ttl),
        };
        let mut book = self.book.lock().map_err(|_| ChallengeError::Full)?;
        let oldest = book
            .by_token
            .get(serial)
            .filter(|q| q.len() >= MAX_PER_TOKEN)
            .and_then(|q| q.front().cloned());
        if let Some(oldest) = oldest
            && let Some(c) = book.remove(&oldest)
        {
            book.spend(oldest, c.expires_at, ChallengeError::Replaced, now);
        }
        if book.by_transaction.len() >= MAX_OUTSTANDING {
            book.sweep(now);
            if book.by_transaction.len() >= MAX_OUTSTANDING {
                return Err(ChallengeError::Full);
            }
        }
        book.by_transaction
            .insert(transaction.clone(), challenge.clone());
        book.by_token
            .entry(serial.to_owned())
            .or_default()
            .push_back(transaction.clone());
        Ok((transaction, challenge))
    }

    /// Take (and so consume) the challenge of `transaction` at `now`.
    pub fn take(&self, transaction: &str, now: u64) -> Result<Challenge, ChallengeError> {
        let mut book = self.book.lock().map_err(|_| ChallengeError::Unknown)?;
        let Some(challenge) = book.remove(transaction) else {
            return Err(match book.spent.get(transaction) {
                Some((expires_at, _)) if now > *expires_at => ChallengeError::Expired,
                Some((_, why)) => *why,
                None => ChallengeError::Unknown,
            });
        };
        if now > challenge.expires_at {
            return Err(ChallengeError::Expired);
        }
        book.spend(
            transaction.to_owned(),
            challenge.expires_at,
            ChallengeError::Used,
            now,
        );
        Ok(challenge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(s: &str) -> OcraSuite {
        s.parse().expect("suite")
    }

    #[test]
    fn single_use_bound_and_expiring() {
        let book = Challenges::new(120);
        let (tx, c) = book
            .issue("0042", &suite("OCRA-1:HOTP-SHA1-6:QN08"), 1000)
            .expect("issued");
        assert_eq!(c.question.len(), 8);
        assert!(c.question.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(
            book.take(&tx, 1120).map(|c| c.serial),
            Ok("0042".to_owned())
        );
        assert_eq!(book.take(&tx, 1120), Err(ChallengeError::Used));
        assert_eq!(book.take(&tx, 1121), Err(ChallengeError::Expired));
        let (tx, _) = book
            .issue("0042", &suite("OCRA-1:HOTP-SHA1-6:QA10"), 1000)
            .expect("issued");
        assert_eq!(book.take(&tx, 1121), Err(ChallengeError::Expired));
        assert_eq!(book.take(&tx, 1000), Err(ChallengeError::Unknown));
        assert_eq!(
            book.take("never-issued", 1000),
            Err(ChallengeError::Unknown)
        );
    }

    /// Asking again and again for one token replaces its oldest challenges: the book does not
    /// fill up for everyone else, and the newest challenges of that token still work.
    #[test]
    fn one_token_cannot_fill_the_book() {
        let book = Challenges::new(120);
        let s = suite("OCRA-1:HOTP-SHA1-6:QN08");
        let mut issued = Vec::new();
        for _ in 0..MAX_OUTSTANDING + 10 {
            issued.push(book.issue("0042", &s, 1000).expect("issued").0);
        }
        let held = book.book.lock().expect("book").by_transaction.len();
        assert_eq!(held, MAX_PER_TOKEN);
        let (first, newest) = (&issued[0], &issued[issued.len() - 1]);
        // Recently replaced ones are remembered as such; the memory of them is bounded, so the
        // very first (more than MAX_OUTSTANDING replacements ago) is forgotten.
        let replaced = &issued[issued.len() - 1 - MAX_PER_TOKEN];
        assert_eq!(book.take(replaced, 1001), Err(ChallengeError::Replaced));
        assert_eq!(book.take(first, 1001), Err(ChallengeError::Unknown));
        assert_eq!(book.take(newest, 1001).map(|c| c.serial), Ok("0042".into()));
        book.issue("0043", &s, 1000)
            .expect("another token still gets one");
        let b = book.book.lock().expect("book");
        assert_eq!(b.by_transaction.len(), MAX_PER_TOKEN);
        assert_eq!(
            b.by_token.get("0042").map(VecDeque::len),
            Some(MAX_PER_TOKEN - 1)
        );
        assert!(
            b.spent.len() <= MAX_OUTSTANDING && b.spent_order.len() == b.spent.len(),
            "the memory of spent transactions is bounded"
        );
    }
}
