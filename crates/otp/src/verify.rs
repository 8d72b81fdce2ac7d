//! HOTP and TOTP: generation, constant-time window verification, resynchronisation, and the
//! [`CodeVerified`] proof that state may move.
//!
//! Every verification scans its whole window: each candidate is computed and compared with
//! `subtle`, the lowest match is selected with conditional moves, and nothing returns early. The
//! work done therefore depends only on public parameters (window size, algorithm), not on whether
//! or where the presented code matched.

use std::sync::OnceLock;

use subtle::{Choice, ConditionallySelectable, ConstantTimeGreater};

use crate::code::{Code, Digits};
use crate::key::{BATCH, OtpKey};
use crate::{Algorithm, Error};

/// The default HOTP look-ahead: ten candidates, the stored counter and the nine after it.
pub const DEFAULT_HOTP_WINDOW: u32 = 10;
/// The default TOTP skew: one step either side of the expected step.
pub const DEFAULT_TOTP_SKEW: u32 = 1;
/// HOTP resynchronisation searches this many counters ahead for two consecutive codes.
pub const DEFAULT_HOTP_RESYNC_WINDOW: u32 = 1000;
/// TOTP resynchronisation searches this many seconds either side of now (24 hours).
pub const DEFAULT_TOTP_RESYNC_SECONDS: u64 = 24 * 3600;
/// The highest counter (and TOTP step) a token's state may hold: 2^63 - 1, so that every state
/// fits a signed 64-bit integer. A counter matches only if its successor, the counter the proof
/// asks to store, is at most this; a TOTP step matches only if it is at most this.
pub const MAX_COUNTER: u64 = i64::MAX as u64;

/// Whether `counter` may match: its successor must still be a storable counter. The counter is
/// public (a position in the window), so the branch leaks nothing.
fn below_max(counter: u64) -> Choice {
    Choice::from(u8::from(counter < MAX_COUNTER))
}

/// The moving part of a token's state, the thing replay protection is about.
///
/// HOTP and counter-based OCRA use `counter` (the next counter that may match). TOTP uses
/// `last_step` (a step at or below it never matches again) and `drift` (the token's clock offset
/// in steps, learnt from each match).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OtpState {
    /// Next HOTP/OCRA counter that may be accepted.
    pub counter: u64,
    /// Last TOTP step that was accepted, if any.
    pub last_step: Option<u64>,
    /// TOTP clock drift in steps (token step minus server step).
    pub drift: i64,
}

/// Why a proof was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A login code matched inside the normal window.
    Login,
    /// Two consecutive codes matched inside the wide resynchronisation window.
    Resync,
}

/// Proof that a presented code was checked against a token's key and state.
///
/// Only the verification functions of this crate create it, so a store that takes a
/// `CodeVerified` to commit a state change cannot be asked to advance state without a successful
/// check. It carries the state that was read (`before`, for compare-and-set) and the state to
/// write (`after`).
#[must_use = "a verified code must be committed before it is accepted"]
#[derive(Debug, PartialEq, Eq)]
pub struct CodeVerified {
    before: OtpState,
    after: OtpState,
    matched: u64,
    method: Method,
}

impl CodeVerified {
    pub(crate) fn issue(before: OtpState, after: OtpState, matched: u64, method: Method) -> Self {
        CodeVerified {
            before,
            after,
            matched,
            method,
        }
    }

    /// The state the check was made against.
    pub fn before(&self) -> OtpState {
        self.before
    }
    /// The state to commit.
    pub fn after(&self) -> OtpState {
        self.after
    }
    /// The counter or time step that matched (for resync, the second code's).
    pub fn matched(&self) -> u64 {
        self.matched
    }
    /// Login or resynchronisation.
    pub fn method(&self) -> Method {
        self.method
    }
}

/// TOTP parameters of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotpParams {
    /// Digits shown.
    pub digits: Digits,
    /// Time step in seconds (RFC 6238's X), at least 1.
    pub step: u32,
    /// Unix time at which step 0 starts (RFC 6238's T0).
    pub t0: u64,
}

impl Default for TotpParams {
    fn default() -> Self {
        TotpParams {
            digits: Digits::SIX,
            step: 30,
            t0: 0,
        }
    }
}

impl TotpParams {
    /// Check the parameters: a step of zero is meaningless.
    pub fn new(digits: Digits, step: u32, t0: u64) -> Result<Self, Error> {
        if step == 0 {
            return Err(Error::ZeroStep);
        }
        Ok(TotpParams { digits, step, t0 })
    }

    /// The RFC 6238 time step `T = floor((now - T0) / X)`; an error before T0.
    pub fn step_at(&self, unix_seconds: u64) -> Result<u64, Error> {
        if self.step == 0 {
            return Err(Error::ZeroStep);
        }
        unix_seconds
            .checked_sub(self.t0)
            .map(|d| d / u64::from(self.step))
            .ok_or(Error::BeforeT0)
    }
}

/// The HOTP code for `counter` (RFC 4226).
pub fn hotp(key: &OtpKey, counter: u64, digits: Digits) -> Code {
    Code::new(digits.reduce(key.mac_counter(counter).truncate()), digits)
}

/// The TOTP code at `unix_seconds` (RFC 6238).
pub fn totp(key: &OtpKey, params: &TotpParams, unix_seconds: u64) -> Result<Code, Error> {
    Ok(hotp(key, params.step_at(unix_seconds)?, params.digits))
}

/// Scan `count` consecutive counters from `first`, return the lowest one whose code equals
/// `presented` and that `eligible` admits. Every candidate is computed and compared; the MACs
/// are computed in batches (see [`OtpKey::truncated_counters`]).
fn scan(
    key: &OtpKey,
    digits: Digits,
    first: u64,
    count: u32,
    presented: &Code,
    eligible: impl Fn(u64) -> Choice,
) -> Option<u64> {
    let mut found = Choice::from(0);
    let mut matched = 0u64;
    // Counters past u64::MAX do not exist; the count is public, so stopping there leaks nothing.
    let total = u64::from(count).min((u64::MAX - first).saturating_add(1));
    let mut values = [0u32; BATCH];
    let mut done = 0u64;
    while done < total {
        let n = usize::try_from((total - done).min(BATCH as u64)).unwrap_or(BATCH);
        let base = first.wrapping_add(done);
        let batch = values.get_mut(..n).unwrap_or_default();
        key.truncated_counters(base, batch);
        for (j, value) in (0u64..).zip(batch.iter()) {
            let c = base.wrapping_add(j);
            let candidate = Code::new(digits.reduce(*value), digits);
            let hit = candidate.ct_eq_code(presented) & eligible(c) & !found;
            matched.conditional_assign(&c, hit);
            found |= hit;
        }
        done += n as u64;
    }
    if bool::from(found) {
        Some(matched)
    } else {
        None
    }
}

/// Verify an HOTP code against the stored counter with a look-ahead of `window` candidates
/// (counters `state.counter .. state.counter + window`). A code for a counter below the stored
/// one never matches: that is replay protection. On a match the new counter is match + 1, which
/// is at most [`MAX_COUNTER`] (the counter `MAX_COUNTER` itself never matches).
pub fn verify_hotp(
    key: &OtpKey,
    digits: Digits,
    state: &OtpState,
    window: u32,
    presented: &Code,
) -> Option<CodeVerified> {
    if presented.digits() != digits {
        return None;
    }
    let matched = scan(key, digits, state.counter, window, presented, below_max)?;
    Some(CodeVerified {
        before: *state,
        after: OtpState {
            counter: matched.checked_add(1)?,
            ..*state
        },
        matched,
        method: Method::Login,
    })
}

/// `a > b` for a TOTP step against an optional last-used step, in constant time.
fn after_last(step: u64, last: Option<u64>) -> Choice {
    match last {
        Some(last) => step.ct_gt(&last),
        None => Choice::from(1),
    }
}

fn expected_step(params: &TotpParams, state: &OtpState, now: u64) -> Result<(u64, i64), Error> {
    let real = params.step_at(now)?;
    let real_i = i64::try_from(real).map_err(|_| Error::BeforeT0)?;
    Ok((real, real_i.saturating_add(state.drift)))
}

/// Verify a TOTP code at `now`: candidates are the expected step (server step + stored drift)
/// and `skew` steps either side; a step at or below the last accepted one never matches. On a
/// match, `last_step` becomes the matched step and `drift` the matched step minus the server's.
pub fn verify_totp(
    key: &OtpKey,
    params: &TotpParams,
    state: &OtpState,
    now: u64,
    skew: u32,
    presented: &Code,
) -> Option<CodeVerified> {
    if presented.digits() != params.digits {
        return None;
    }
    let (real, expected) = expected_step(params, state, now).ok()?;
    let lowest = expected.saturating_sub(i64::from(skew)).max(0);
    let highest = expected.saturating_add(i64::from(skew));
    if highest < 0 {
        return None;
    }
    let first = u64::try_from(lowest).ok()?;
    let count = u32::try_from(highest - lowest + 1).ok()?;
    let last = state.last_step;
    let matched = scan(key, params.digits, first, count, presented, |s| {
        after_last(s, last)
    })?;
    Some(CodeVerified {
        before: *state,
        after: OtpState {
            last_step: Some(matched),
            drift: drift_of(matched, real)?,
            ..*state
        },
        matched,
        method: Method::Login,
    })
}

fn drift_of(matched: u64, real: u64) -> Option<i64> {
    let m = i64::try_from(matched).ok()?;
    let r = i64::try_from(real).ok()?;
    m.checked_sub(r)
}

/// Find `s` in `[first, first + count)` such that code(s) = `a` and code(s + 1) = `b`, scanning
/// every candidate. Each code is computed once.
fn scan_pair(
    key: &OtpKey,
    digits: Digits,
    first: u64,
    count: u32,
    a: &Code,
    b: &Code,
    eligible: impl Fn(u64) -> Choice,
) -> Option<u64> {
    let mut found = Choice::from(0);
    let mut matched = 0u64;
    let mut prev_hit_a = Choice::from(0);
    // Walk counters first ..= first + count; a pair (s, s + 1) is complete at s + 1.
    for i in 0..=u64::from(count) {
        let Some(c) = first.checked_add(i) else { break };
        let code = hotp(key, c, digits);
        let is_a = code.ct_eq_code(a) & eligible(c);
        let is_b = code.ct_eq_code(b);
        let hit = prev_hit_a & is_b & !found;
        matched.conditional_assign(&c, hit);
        found |= hit;
        prev_hit_a = is_a & Choice::from(u8::from(i < u64::from(count)));
    }
    if bool::from(found) {
        Some(matched)
    } else {
        None
    }
}

/// HOTP resynchronisation: two consecutive codes found within `window` counters ahead of the
/// stored one move the counter past the second (at most to [`MAX_COUNTER`]). A single code never
/// resyncs.
pub fn resync_hotp(
    key: &OtpKey,
    digits: Digits,
    state: &OtpState,
    window: u32,
    first: &Code,
    second: &Code,
) -> Option<CodeVerified> {
    if first.digits() != digits || second.digits() != digits {
        return None;
    }
    // The second code's counter must be below MAX_COUNTER, so the first's below MAX_COUNTER - 1.
    let second_at = scan_pair(key, digits, state.counter, window, first, second, |c| {
        below_max(c.saturating_add(1))
    })?;
    Some(CodeVerified {
        before: *state,
        after: OtpState {
            counter: second_at.checked_add(1)?,
            ..*state
        },
        matched: second_at,
        method: Method::Resync,
    })
}

/// TOTP resynchronisation: two codes of consecutive steps found within `window_seconds` either
/// side of `now` set `last_step` to the second one's step and `drift` to its offset from the
/// server's step. Steps at or below the last accepted one never match.
pub fn resync_totp(
    key: &OtpKey,
    params: &TotpParams,
    state: &OtpState,
    now: u64,
    window_seconds: u64,
    first: &Code,
    second: &Code,
) -> Option<CodeVerified> {
    if first.digits() != params.digits || second.digits() != params.digits {
        return None;
    }
    let real = params.step_at(now).ok()?;
    let span = window_seconds / u64::from(params.step.max(1));
    let lowest = real.saturating_sub(span);
    let count = u32::try_from(real.saturating_add(span) - lowest + 1).ok()?;
    let last = state.last_step;
    let second_at = scan_pair(key, params.digits, lowest, count, first, second, |s| {
        after_last(s, last)
    })?;
    Some(CodeVerified {
        before: *state,
        after: OtpState {
            last_step: Some(second_at),
            drift: drift_of(second_at, real)?,
            ..*state
        },
        matched: second_at,
        method: Method::Resync,
    })
}

/// The equal-cost path for an unknown token or user: the same number of MAC computations as a
/// real HOTP/TOTP verification over `candidates` codes, against a throw-away key loaded once. It
/// never accepts; its only purpose is that the caller's timing does not reveal who exists.
pub fn verify_unknown(algorithm: Algorithm, digits: Digits, candidates: u32, presented: &Code) {
    static DUMMIES: OnceLock<Vec<OtpKey>> = OnceLock::new();
    // A fixed, public key: matching it gains nothing because the result is discarded.
    const DUMMY: &[u8] = b"okey-unknown-subject";
    let keys = DUMMIES.get_or_init(|| {
        [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]
            .into_iter()
            .filter_map(|a| OtpKey::new(a, DUMMY).ok())
            .collect()
    });
    if let Some(key) = keys.iter().find(|k| k.algorithm() == algorithm) {
        let outcome = verify_hotp(key, digits, &OtpState::default(), candidates, presented);
        // Whatever the dummy computed is discarded; keep the optimiser from removing the work.
        std::hint::black_box(outcome);
    }
}

/// Equality of two codes in constant time (for callers that compare a code read back from a
/// device against one computed here).
pub fn codes_equal(a: &Code, b: &Code) -> bool {
    bool::from(a.ct_eq_code(b))
}
