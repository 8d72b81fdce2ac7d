//! Outstanding OCRA challenges, in the database: single use, bound to one token, expiring.
//!
//! A challenge issued by one node can be answered through any other on the same database, and
//! only once: taking it is `UPDATE challenges SET state = 'used' WHERE transaction_id = ? AND
//! state = 'open'`, so of two nodes taking it at once the database lets exactly one change the
//! row (PostgreSQL re-checks the condition on the newest row version under READ COMMITTED;
//! SQLite has one writer). The take is committed before the response is checked, so a crash in
//! between leaves the challenge spent, never open twice. Taking a challenge spends it whether or
//! not the response turns out right: one challenge, one guess (a wrong answer counts toward the
//! token's lockout like any wrong code).
//!
//! Spent challenges are remembered until one lifetime after they expire, so a second answer is
//! told `Used` (or `Replaced`) rather than `Unknown`. Challenges are not carried by backups
//! ([`crate::backend::NOT_CARRIED`]): a restored open challenge could be answered a second time.

use crate::StoreError;
use crate::store::Store;

/// Most challenges outstanding at once; beyond this new requests are refused (a flood cannot
/// fill the database).
pub const MAX_OUTSTANDING: u64 = 100_000;

/// Most challenges outstanding for one token; a new one beyond this replaces that token's
/// oldest, so asking again and again for one user can neither fill the book for everyone nor
/// keep that user's newest challenge from working.
pub const MAX_PER_TOKEN: usize = 4;

/// Where a stored challenge stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeState {
    /// Issued, not yet answered.
    Open,
    /// Answered (rightly or wrongly).
    Used,
    /// Dropped because its token asked for too many newer ones.
    Replaced,
}

impl ChallengeState {
    /// Its name in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeState::Open => "open",
            ChallengeState::Used => "used",
            ChallengeState::Replaced => "replaced",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Result<ChallengeState, StoreError> {
        match s {
            "open" => Ok(ChallengeState::Open),
            "used" => Ok(ChallengeState::Used),
            "replaced" => Ok(ChallengeState::Replaced),
            _ => Err(StoreError::Corrupt(format!(
                "unknown challenge state {s:?}"
            ))),
        }
    }
}

/// A challenge as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeRow {
    /// The transaction id handed to the caller (random, 32 hex digits).
    pub transaction: String,
    /// The token it was issued for.
    pub serial: String,
    /// The question shown to the user.
    pub question: String,
    /// When it was issued (Unix seconds).
    pub issued_at: u64,
    /// Unix time after which it is no longer accepted.
    pub expires_at: u64,
    /// Where it stands.
    pub state: ChallengeState,
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeRefusal {
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

fn check_transaction(transaction: &str) -> Result<(), StoreError> {
    if transaction.is_empty()
        || transaction.len() > 64
        || !transaction.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(StoreError::invalid(
            "transaction id",
            "1 to 64 letters or digits",
        ));
    }
    Ok(())
}

impl Store {
    /// Record a challenge issued at `now` for `serial`, open until `now + ttl`. When the token
    /// already has [`MAX_PER_TOKEN`] open challenges its oldest is marked replaced; challenges
    /// expired for more than `ttl` are forgotten. Durable before it returns.
    /// `Err(ChallengeRefusal::Full)` when [`MAX_OUTSTANDING`] are open.
    pub async fn issue_challenge(
        &self,
        transaction: String,
        serial: String,
        question: String,
        now: u64,
        ttl: u64,
    ) -> Result<Result<ChallengeRow, ChallengeRefusal>, StoreError> {
        check_transaction(&transaction)?;
        if question.is_empty() || question.len() > 64 {
            return Err(StoreError::invalid("question", "1 to 64 characters"));
        }
        let row = ChallengeRow {
            transaction,
            serial,
            question,
            issued_at: now,
            expires_at: now.saturating_add(ttl),
            state: ChallengeState::Open,
        };
        self.inner
            .writer
            .run(true, move |tx| {
                tx.forget_challenges(now.saturating_sub(ttl))?;
                let open = tx.open_challenges(&row.serial)?;
                if open.len() >= MAX_PER_TOKEN {
                    for t in &open[..=open.len() - MAX_PER_TOKEN] {
                        tx.spend_challenge(t, ChallengeState::Replaced)?;
                    }
                }
                if tx.open_challenge_count(now)? >= MAX_OUTSTANDING {
                    return Ok(Err(ChallengeRefusal::Full));
                }
                tx.insert_challenge(&row)?;
                Ok(Ok(row))
            })
            .await
    }

    /// Take (and so spend, durably, on every node) the challenge of `transaction` at `now`.
    pub async fn take_challenge(
        &self,
        transaction: &str,
        now: u64,
    ) -> Result<Result<ChallengeRow, ChallengeRefusal>, StoreError> {
        check_transaction(transaction)?;
        let transaction = transaction.to_owned();
        self.inner
            .writer
            .run(true, move |tx| {
                if let Some(c) = tx.spend_challenge(&transaction, ChallengeState::Used)? {
                    // Spent whether or not it was still in time: an expired one stays refused.
                    if now > c.expires_at {
                        return Ok(Err(ChallengeRefusal::Expired));
                    }
                    return Ok(Ok(c));
                }
                Ok(Err(match tx.challenge(&transaction)? {
                    None => ChallengeRefusal::Unknown,
                    Some(c) if now > c.expires_at => ChallengeRefusal::Expired,
                    Some(c) if c.state == ChallengeState::Replaced => ChallengeRefusal::Replaced,
                    Some(_) => ChallengeRefusal::Used,
                }))
            })
            .await
    }
}
