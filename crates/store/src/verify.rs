//! The verify hot path: cached key, constant-time checks in the core, compare-and-set commit.
//!
//! A verify reads the token's key and state (from the cache when it can), lets `okey-otp` check
//! the PIN and the whole window in constant time, and sends the resulting state change to the
//! writer as a compare-and-set against the row version it read. Only when that commit is durable
//! does it answer `accepted`. A loser of the compare-and-set re-reads the row and checks again:
//! with the winner's counter in place, the same code is now a replay.

use okey_otp::{
    CodeVerified, Digits, OcraInput, OcraSuite, OtpKey, OtpState, Pin, PinBinding, PinVerifier,
    TotpParams, check_pin_unknown, split_passcode, verify_hotp, verify_totp, verify_unknown,
};
use subtle::Choice;

use crate::StoreError;
use crate::audit;
use crate::backend::{TokenRow, TokenState};
use crate::cache::{Hot, HotOtp};
use crate::store::Store;
use crate::types::{
    Actor, AuditEntry, OtpKind, Reason, Subject, TokenKind, TokenStatus, VerifyOutcome,
    VerifyRequest,
};

/// The largest counter, step, time or version a backend stores (a signed 64-bit column).
const MAX_STORED: u64 = okey_otp::MAX_COUNTER;

/// Refuse, for this request alone, a change holding a value the database cannot store. Checked
/// before the change reaches the writer: there a failing statement would fail the whole batch
/// of other callers' commits it shares a transaction with.
fn check_storable(updates: &[(String, u64, TokenState)], at: u64) -> Result<(), StoreError> {
    let too_big = |field: &'static str| {
        Err(StoreError::invalid(
            field,
            format!("must be at most {MAX_STORED}"),
        ))
    };
    if at > MAX_STORED {
        return too_big("time");
    }
    for (_, version, s) in updates {
        if *version >= MAX_STORED {
            return too_big("version");
        }
        if s.counter > MAX_STORED {
            return too_big("counter");
        }
        if s.last_step.is_some_and(|v| v > MAX_STORED) {
            return too_big("last step");
        }
        if s.locked_until.is_some_and(|v| v > MAX_STORED) {
            return too_big("lock time");
        }
        if s.updated_at > MAX_STORED {
            return too_big("time");
        }
    }
    Ok(())
}

/// How far behind its counter (HOTP) or its last accepted step (TOTP) a token's codes are still
/// recognised as replays rather than counted as guesses. A random guess falls among them with a
/// probability of 100 in 10^digits, so they give an attacker nothing worth having.
pub const REPLAY_LOOKBACK: u32 = 100;

/// Whether `code` is the code of one of the [`REPLAY_LOOKBACK`] counters (or TOTP steps, which
/// are HOTP counters) just below `end`.
fn used_below(
    key: &OtpKey,
    digits: Digits,
    state: &OtpState,
    end: u64,
    code: &okey_otp::Code,
) -> bool {
    let back = u64::from(REPLAY_LOOKBACK).min(end);
    let Ok(n) = u32::try_from(back) else {
        return false;
    };
    let earlier = OtpState {
        counter: end - back,
        ..*state
    };
    verify_hotp(key, digits, &earlier, n, code).is_some_and(|p| p.matched() < end)
}

/// Compare-and-set losses tolerated before giving up (each loss means another request for the
/// same token committed, so the system as a whole made progress).
const MAX_TRIES: usize = 1000;

enum Eval {
    Match(CodeVerified),
    WrongPin,
    WrongCode,
    Replay,
    BadFormat,
    /// Refused before any code is tested: not active, hard- or soft-locked ([`Store::gate`]).
    Gated(Reason),
    ChallengeRequired,
}

impl Eval {
    fn reason(&self) -> Reason {
        match self {
            Eval::Match(_) => Reason::Accepted,
            Eval::WrongPin => Reason::WrongPin,
            Eval::WrongCode => Reason::WrongCode,
            Eval::Replay => Reason::Replay,
            Eval::BadFormat => Reason::BadFormat,
            Eval::Gated(r) => *r,
            Eval::ChallengeRequired => Reason::ChallengeRequired,
        }
    }
}

fn outcome(accepted: bool, serial: Option<&str>, reason: Reason) -> VerifyOutcome {
    VerifyOutcome {
        accepted,
        serial: serial.map(str::to_owned),
        reason,
    }
}

fn who(actor: &Actor, client: &str) -> Actor {
    if client.is_empty() {
        actor.clone()
    } else {
        Actor {
            name: format!("{}@{}", actor.name, client),
            role: actor.role.clone(),
        }
    }
}

impl Store {
    /// The same work as checking a PIN-less 6-digit HOTP window (plus a PIN check when the
    /// passcode is long enough to hold one), for subjects that do not exist or cannot verify.
    fn dummy_work(&self, passcode: &str) {
        let digits = Digits::SIX;
        let has_pin = passcode.len() > usize::from(digits.get());
        if let Ok(p) = split_passcode(passcode, digits, has_pin) {
            if let Some(pin) = &p.pin {
                let _ = std::hint::black_box(check_pin_unknown(&self.inner.pepper, pin));
            }
            verify_unknown(
                okey_otp::Algorithm::Sha1,
                digits,
                self.inner.cfg.hotp_window,
                &p.code,
            );
        }
    }

    /// Why a token in `state` may not have a code checked at `now`, if it may not: not
    /// active, hard-locked or soft-locked. Verify, resync and OCRA answers all apply it.
    ///
    /// The key's custody is part of the same rule: only a key in its holder's hands (or a
    /// software key assigned to its holder, enrolling) that has not passed its validity end or
    /// its deactivation time may have a code checked ([`okey_domain::can_authenticate`]). All
    /// of it is read from the row (or the cached copy of it): the check costs no query.
    fn gate(state: &TokenState, software: bool, now: u64) -> Option<Reason> {
        let custody_ok = okey_domain::can_authenticate(state.custody, software)
            && state.valid_until.is_none_or(|end| now < end)
            && state.active_until.is_none_or(|end| now < end);
        if !matches!(state.status, TokenStatus::Active | TokenStatus::Pending) || !custody_ok {
            Some(Reason::NotActive)
        } else {
            Self::lock_gate(state, now)
        }
    }

    /// Hard or soft lock of a token in `state` at `now`.
    fn lock_gate(state: &TokenState, now: u64) -> Option<Reason> {
        if state.locked {
            Some(Reason::Locked)
        } else if state.locked_until.is_some_and(|until| now < until) {
            Some(Reason::SoftLocked)
        } else {
            None
        }
    }

    fn evaluate(&self, serial: &str, key: &OtpKey, hot: &Hot, passcode: &str, now: u64) -> Eval {
        let gate = Self::gate(&hot.state, hot.software, now)
            .map(Eval::Gated)
            .or((hot.otp == HotOtp::Ocra).then_some(Eval::ChallengeRequired));
        if let Some(g) = gate {
            self.dummy_work(passcode);
            return g;
        }
        let Ok(digits) = Digits::new(hot.digits) else {
            return Eval::BadFormat;
        };
        let Ok(pc) = split_passcode(passcode, digits, hot.pin_verifier.is_some()) else {
            return Eval::BadFormat;
        };
        let pin_ok = match (&hot.pin_verifier, &pc.pin) {
            (Some(v), Some(p)) => {
                let binding = match hot.pin_holder.as_deref() {
                    Some(holder) => PinBinding::Holder(holder),
                    None => PinBinding::Token(serial),
                };
                self.inner.pepper.check(binding, p, &PinVerifier(*v))
            }
            (None, None) => Choice::from(1),
            _ => Choice::from(0),
        };
        let state = OtpState {
            counter: hot.state.counter,
            last_step: hot.state.last_step,
            drift: hot.state.drift,
        };
        let cfg = &self.inner.cfg;
        let proof = match hot.otp {
            HotOtp::Hotp => verify_hotp(key, digits, &state, cfg.hotp_window, &pc.code),
            HotOtp::Totp { step, t0 } => match TotpParams::new(digits, step, t0) {
                Ok(params) => verify_totp(key, &params, &state, now, cfg.totp_skew, &pc.code),
                Err(_) => None,
            },
            HotOtp::Ocra => None,
        };
        if !bool::from(pin_ok) {
            // A right code behind a wrong PIN moves nothing: the proof is discarded.
            let _discarded = proof;
            return Eval::WrongPin;
        }
        match proof {
            Some(p) => Eval::Match(p),
            None if self.recently_used(key, hot, digits, &state, now, &pc.code) => Eval::Replay,
            None => Eval::WrongCode,
        }
    }

    /// Whether a code that did not match is one the token already showed recently: an HOTP code
    /// of one of the [`REPLAY_LOOKBACK`] counters below the current one, or a TOTP code of one of
    /// the [`REPLAY_LOOKBACK`] steps up to the last accepted one (or of a step in the skew window
    /// at or below it). Such a code is a replay (a retransmission, a code typed twice, the loser
    /// of a race), not a guess, so it does not count as a failure. The scan has a fixed size, and
    /// runs only on the (public) rejection path.
    fn recently_used(
        &self,
        key: &OtpKey,
        hot: &Hot,
        digits: Digits,
        state: &OtpState,
        now: u64,
        code: &okey_otp::Code,
    ) -> bool {
        let cfg = &self.inner.cfg;
        match hot.otp {
            HotOtp::Hotp => used_below(key, digits, state, state.counter, code),
            HotOtp::Totp { step, t0 } => {
                let Some(last) = state.last_step else {
                    return false;
                };
                if used_below(key, digits, state, last.saturating_add(1), code) {
                    return true;
                }
                let Ok(params) = TotpParams::new(digits, step, t0) else {
                    return false;
                };
                let any = OtpState {
                    last_step: None,
                    ..*state
                };
                verify_totp(key, &params, &any, now, cfg.totp_skew, code)
                    .is_some_and(|p| p.matched() <= last)
            }
            HotOtp::Ocra => false,
        }
    }

    fn after_success(state: &TokenState, proof: &CodeVerified, now: u64) -> TokenState {
        let after = proof.after();
        TokenState {
            counter: after.counter,
            last_step: after.last_step,
            drift: after.drift,
            failures: 0,
            locked: false,
            locked_until: None,
            status: match state.status {
                TokenStatus::Pending => TokenStatus::Active,
                s => s,
            },
            updated_at: now,
            custody: state.custody,
            valid_until: state.valid_until,
            active_until: state.active_until,
            // The holder's first accepted code signs their hand-over (see `commit`).
            handover_unconfirmed: false,
        }
    }

    fn after_failure(&self, state: &TokenState, now: u64) -> TokenState {
        let policy = self.inner.cfg.lockout;
        let mut s = *state;
        s.failures = s.failures.saturating_add(1);
        s.updated_at = now;
        if s.failures >= policy.hard_after {
            s.locked = true;
        } else if policy.soft_after.is_some_and(|soft| s.failures >= soft) {
            // Clamped to what the database holds: a lock ending past it lasts for good.
            s.locked_until = Some(now.saturating_add(policy.soft_lock_seconds).min(MAX_STORED));
        }
        s
    }

    /// The key of exactly `row`: from the cache when the cached key was unsealed from this
    /// row's sealed seed, or unsealed (and cached). `None` if the row was sealed under a data key
    /// that a rotation retired meanwhile: the caller must read the row again (and check again
    /// whatever it checked on this one).
    fn key_of(&self, row: &TokenRow) -> Result<Option<OtpKey>, StoreError> {
        let seal = crate::seal::seal_id(&row.sealed_seed);
        if let Some(k) = self.inner.cache.key(&row.serial, &seal) {
            return Ok(Some(k));
        }
        if !self.keys().data.contains_key(&row.key_version) {
            return Ok(None);
        }
        let key = self.unseal(row)?;
        self.inner
            .cache
            .insert(&row.serial, key.clone(), Hot::of(row));
        Ok(Some(key))
    }

    /// The key of `row`, and the row it belongs to: `row` itself, or (if its data key was
    /// retired meanwhile) the row read again once. Callers check the returned row.
    fn key_for(&self, row: TokenRow) -> Result<(OtpKey, TokenRow), StoreError> {
        if let Some(k) = self.key_of(&row)? {
            return Ok((k, row));
        }
        let row = self
            .inner
            .backend
            .token(&row.serial)?
            .ok_or_else(|| StoreError::UnknownSerial(row.serial.clone()))?;
        if !self.keys().data.contains_key(&row.key_version) {
            // Sealed under a data key made by another node sharing the database.
            self.refresh_data_keys()?;
        }
        let key = self.unseal(&row)?;
        self.inner
            .cache
            .insert(&row.serial, key.clone(), Hot::of(&row));
        Ok((key, row))
    }

    /// Key and hot fields of a serial: cached unless `fresh`; the flag says whether they came
    /// from the database.
    fn load(&self, serial: &str, fresh: bool) -> Result<Option<(OtpKey, Hot, bool)>, StoreError> {
        if !fresh && let Some((k, h)) = self.inner.cache.get(serial) {
            return Ok(Some((k, h, false)));
        }
        let Some(row) = self.inner.backend.token(serial)? else {
            return Ok(None);
        };
        let (key, row) = self.key_for(row)?;
        let hot = Hot::of(&row);
        self.inner.cache.update(serial, hot.clone());
        Ok(Some((key, hot, true)))
    }

    /// Commit state changes (each a compare-and-set) and one audit entry, durably. `signs`:
    /// a key whose hand-over this accepted code signs (its cached row said unsigned): its latest
    /// hand-over receipt is marked signed by code in the same commit.
    async fn commit(
        &self,
        updates: Vec<(String, u64, TokenState)>,
        signs: Option<String>,
        entry: AuditEntry,
    ) -> Result<(), StoreError> {
        check_storable(&updates, entry.at)?;
        let key = self.inner.audit_key.clone();
        // One compare-and-set first, then appends: a lost compare-and-set writes nothing, so
        // only multi-token changes need a savepoint.
        let savepoint = updates.len() > 1;
        self.inner
            .writer
            .run(savepoint, move |tx| {
                for (serial, version, state) in &updates {
                    if !tx.update_state(serial, *version, state)? {
                        return Err(StoreError::Conflict);
                    }
                }
                if let Some(serial) = &signs {
                    tx.custody().confirm_latest_handover(serial, entry.at)?;
                    crate::requests::confirmed_by_first_code(tx, &key, serial, entry.at)?;
                }
                audit::append(tx, &key, entry)?;
                Ok(())
            })
            .await
    }

    fn refresh_cache(&self, serial: &str, hot: &Hot, state: TokenState) {
        let mut h = hot.clone();
        h.state = state;
        h.version = hot.version + 1;
        self.inner.cache.update(serial, h);
    }

    fn conflict(&self) {
        self.inner
            .conflicts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Verify a passcode. `accepted` is true only once the new state is durable. Every outcome
    /// is appended to the audit chain (never the passcode).
    pub async fn verify(&self, req: VerifyRequest<'_>) -> Result<VerifyOutcome, StoreError> {
        let actor = who(req.actor, req.client);
        match req.subject {
            Subject::Serial(serial) => self.verify_serial(serial, &req, &actor).await,
            Subject::User(user) => self.verify_user(user, &req, &actor).await,
        }
    }

    async fn reject(
        &self,
        actor: &Actor,
        action: &str,
        subject: &str,
        serial: Option<&str>,
        reason: Reason,
        now: u64,
    ) -> Result<VerifyOutcome, StoreError> {
        let entry = Self::audit_entry(
            actor,
            action,
            subject,
            serial,
            "rejected",
            reason.as_str(),
            now,
        );
        self.commit(Vec::new(), None, entry).await?;
        Ok(outcome(false, serial, reason))
    }

    async fn verify_serial(
        &self,
        serial: &str,
        req: &VerifyRequest<'_>,
        actor: &Actor,
    ) -> Result<VerifyOutcome, StoreError> {
        let now = req.now;
        let mut fresh = false;
        let mut matched_before = false;
        for _ in 0..MAX_TRIES {
            let Some((key, hot, from_db)) = self.load(serial, fresh)? else {
                self.dummy_work(req.passcode);
                return self
                    .reject(actor, "verify", serial, None, Reason::UnknownSubject, now)
                    .await;
            };
            let eval = self.evaluate(serial, &key, &hot, req.passcode, now);
            drop(key);
            let (state, reason, accepted) = match eval {
                Eval::Match(proof) => {
                    let reason = if hot.state.status == TokenStatus::Pending {
                        Reason::Confirmed
                    } else {
                        Reason::Accepted
                    };
                    (Self::after_success(&hot.state, &proof, now), reason, true)
                }
                Eval::WrongCode if matched_before => {
                    return self
                        .reject(actor, "verify", serial, Some(serial), Reason::Replay, now)
                        .await;
                }
                e @ (Eval::WrongCode | Eval::WrongPin) => {
                    (self.after_failure(&hot.state, now), e.reason(), false)
                }
                // A rejection that commits no compare-and-set is only given on fresh data: a
                // cached row may be behind (a PIN, status or unlock done elsewhere).
                _ if !from_db => {
                    fresh = true;
                    continue;
                }
                e => {
                    return self
                        .reject(actor, "verify", serial, Some(serial), e.reason(), now)
                        .await;
                }
            };
            let result = if accepted { "accepted" } else { "rejected" };
            let entry = Self::audit_entry(
                actor,
                "verify",
                serial,
                Some(serial),
                result,
                reason.as_str(),
                now,
            );
            let signs = (accepted && hot.state.handover_unconfirmed).then(|| serial.to_owned());
            match self
                .commit(vec![(serial.to_owned(), hot.version, state)], signs, entry)
                .await
            {
                Ok(()) => {
                    self.refresh_cache(serial, &hot, state);
                    return Ok(outcome(accepted, Some(serial), reason));
                }
                Err(StoreError::Conflict) => {
                    self.conflict();
                    matched_before |= accepted;
                    fresh = true;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    async fn verify_user(
        &self,
        user: &str,
        req: &VerifyRequest<'_>,
        actor: &Actor,
    ) -> Result<VerifyOutcome, StoreError> {
        let now = req.now;
        let mut matched_before: Vec<String> = Vec::new();
        for _ in 0..MAX_TRIES {
            let rows = self.inner.backend.tokens_of(user)?;
            if rows.is_empty() {
                self.dummy_work(req.passcode);
                return self
                    .reject(actor, "verify", user, None, Reason::UnknownSubject, now)
                    .await;
            }
            let usable: Vec<TokenRow> = rows
                .into_iter()
                .filter(|r| matches!(r.status, TokenStatus::Active | TokenStatus::Pending))
                .collect();
            if usable.is_empty() {
                self.dummy_work(req.passcode);
                return self
                    .reject(actor, "verify", user, None, Reason::NoTokens, now)
                    .await;
            }
            let only = (usable.len() == 1)
                .then(|| usable.first().map(|r| r.serial.clone()))
                .flatten();
            // Every usable token is checked in full, whatever the earlier ones gave.
            let mut evals = Vec::with_capacity(usable.len());
            for row in usable {
                let (key, row) = self.key_for(row)?;
                let hot = Hot::of(&row);
                let eval = self.evaluate(&row.serial, &key, &hot, req.passcode, now);
                evals.push((row.serial, hot, eval));
            }
            let winner = evals
                .iter()
                .position(|(_, _, e)| matches!(e, Eval::Match(_)));
            let (updates, reason, accepted, serial) = if let Some(i) = winner {
                let Some((serial, hot, Eval::Match(proof))) = evals.into_iter().nth(i) else {
                    return Err(StoreError::Corrupt("lost the matching token".into()));
                };
                let reason = if hot.state.status == TokenStatus::Pending {
                    Reason::Confirmed
                } else {
                    Reason::Accepted
                };
                let state = Self::after_success(&hot.state, &proof, now);
                (
                    vec![(serial.clone(), hot, state)],
                    reason,
                    true,
                    Some(serial),
                )
            } else {
                let replay = evals.iter().any(|(s, _, e)| {
                    matches!(e, Eval::Replay)
                        || (matches!(e, Eval::WrongCode) && matched_before.contains(s))
                });
                if replay {
                    return self
                        .reject(actor, "verify", user, only.as_deref(), Reason::Replay, now)
                        .await;
                }
                let tried: Vec<_> = evals
                    .iter()
                    .filter(|(_, _, e)| matches!(e, Eval::WrongCode | Eval::WrongPin))
                    .collect();
                if tried.is_empty() {
                    let reason = evals
                        .first()
                        .map_or(Reason::NoTokens, |(_, _, e)| e.reason());
                    return self
                        .reject(actor, "verify", user, only.as_deref(), reason, now)
                        .await;
                }
                let reason = if tried.iter().all(|(_, _, e)| matches!(e, Eval::WrongPin)) {
                    Reason::WrongPin
                } else {
                    Reason::WrongCode
                };
                let updates = tried
                    .iter()
                    .map(|(s, h, _)| (s.clone(), h.clone(), self.after_failure(&h.state, now)))
                    .collect();
                (updates, reason, false, only)
            };
            let result = if accepted { "accepted" } else { "rejected" };
            let entry = Self::audit_entry(
                actor,
                "verify",
                user,
                serial.as_deref(),
                result,
                reason.as_str(),
                now,
            );
            let cas = updates
                .iter()
                .map(|(s, h, st)| (s.clone(), h.version, *st))
                .collect();
            let signs = updates
                .iter()
                .find(|(_, h, _)| accepted && h.state.handover_unconfirmed)
                .map(|(s, _, _)| s.clone());
            match self.commit(cas, signs, entry).await {
                Ok(()) => {
                    for (s, h, st) in &updates {
                        self.refresh_cache(s, h, *st);
                    }
                    return Ok(outcome(accepted, serial.as_deref(), reason));
                }
                Err(StoreError::Conflict) => {
                    self.conflict();
                    if accepted && let Some(s) = serial {
                        matched_before.push(s);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Resynchronise an HOTP or TOTP token with two consecutive codes found in the wide resync
    /// window (HOTP: 1000 counters ahead; TOTP: ±24 h). Wrong codes are staff mistakes: counted
    /// apart, never toward the holder's lockout.
    pub async fn resync(
        &self,
        serial: &str,
        first: &str,
        second: &str,
        now: u64,
        actor: &Actor,
    ) -> Result<VerifyOutcome, StoreError> {
        for _ in 0..MAX_TRIES {
            let row = self
                .inner
                .backend
                .token(serial)?
                .ok_or_else(|| StoreError::UnknownSerial(serial.to_owned()))?;
            if let Some(r) = Self::gate(&row.state(), row.kind == TokenKind::Software, now) {
                // The same work as a verify refused at its gate, for each code.
                self.dummy_work(first);
                self.dummy_work(second);
                return self
                    .reject(actor, "resync", serial, Some(serial), r, now)
                    .await;
            }
            if matches!(row.otp, OtpKind::Ocra { .. }) {
                return Err(StoreError::Unsupported(format!(
                    "token {serial} answers OCRA challenges and has nothing to resynchronise"
                )));
            }
            let parsed = Digits::new(row.digits).ok().and_then(|d| {
                Some((
                    d,
                    okey_otp::Code::parse(first, d).ok()?,
                    okey_otp::Code::parse(second, d).ok()?,
                ))
            });
            let Some((digits, a, b)) = parsed else {
                return self
                    .reject(
                        actor,
                        "resync",
                        serial,
                        Some(serial),
                        Reason::BadFormat,
                        now,
                    )
                    .await;
            };
            // The gate above was checked on this row: a key that needs the row read again
            // means checking again.
            let Some(key) = self.key_of(&row)? else {
                continue;
            };
            let hot = Hot::of(&row);
            let state = OtpState {
                counter: row.counter,
                last_step: row.last_step,
                drift: row.drift,
            };
            let proof = match &row.otp {
                OtpKind::Hotp => okey_otp::resync_hotp(
                    &key,
                    digits,
                    &state,
                    okey_otp::DEFAULT_HOTP_RESYNC_WINDOW,
                    &a,
                    &b,
                ),
                OtpKind::Totp { step, t0 } => {
                    TotpParams::new(digits, *step, *t0).ok().and_then(|p| {
                        okey_otp::resync_totp(
                            &key,
                            &p,
                            &state,
                            now,
                            okey_otp::DEFAULT_TOTP_RESYNC_SECONDS,
                            &a,
                            &b,
                        )
                    })
                }
                OtpKind::Ocra { .. } => None,
            };
            drop(key);
            let settled = Settle {
                action: "resync",
                success: Reason::Resynced,
                status: hot.state.status,
            };
            if let Some(done) = self
                .settle(actor, serial, &hot, proof, settled, now)
                .await?
            {
                return Ok(done);
            }
        }
        Err(StoreError::Conflict)
    }

    /// One code without a PIN, checked in `row`'s normal window (HOTP look-ahead, TOTP skew):
    /// the proof of the step it matched, if it did. OCRA keys answer challenges instead.
    fn one_code(
        &self,
        row: &TokenRow,
        key: &OtpKey,
        digits: Digits,
        code: &okey_otp::Code,
        now: u64,
    ) -> Option<CodeVerified> {
        let state = OtpState {
            counter: row.counter,
            last_step: row.last_step,
            drift: row.drift,
        };
        let cfg = &self.inner.cfg;
        match &row.otp {
            OtpKind::Hotp => verify_hotp(key, digits, &state, cfg.hotp_window, code),
            OtpKind::Totp { step, t0 } => TotpParams::new(digits, *step, *t0)
                .ok()
                .and_then(|p| verify_totp(key, &p, &state, now, cfg.totp_skew, code)),
            OtpKind::Ocra { .. } => None,
        }
    }

    /// The holder of a key in use chooses a new PIN ("changer son code PIN"), also when they
    /// have forgotten the old one. `code` is one code read from the key now, without the PIN,
    /// checked as a verify checks it: in the normal window, behind the same gate (a locked key
    /// must be unlocked first), a wrong code counted toward the lockout, a right one spent (it
    /// is a replay afterwards). Only after that commit is the new PIN put on the key, bound to
    /// the holder, in a compare-and-set that checks again that `holder` holds the key. The
    /// outcome says why a code was refused; nothing about the PIN is written then.
    pub async fn change_pin_as_holder(
        &self,
        serial: &str,
        holder: &str,
        code: &str,
        pin: &Pin,
        now: u64,
        actor: &Actor,
    ) -> Result<VerifyOutcome, StoreError> {
        let not_yours = || {
            StoreError::Forbidden(format!(
                "key {serial} is not in your hands: only its holder changes its PIN"
            ))
        };
        let proved = 'check: {
            for _ in 0..MAX_TRIES {
                let row = self
                    .inner
                    .backend
                    .token(serial)?
                    .ok_or_else(|| StoreError::UnknownSerial(serial.to_owned()))?;
                if row.holder.as_deref() != Some(holder) {
                    return Err(not_yours());
                }
                if matches!(row.otp, OtpKind::Ocra { .. }) {
                    return Err(StoreError::Unsupported(format!(
                        "key {serial} answers OCRA challenges with its PIN inside: its PIN is \
                         set again by the support centre"
                    )));
                }
                if let Some(r) = Self::gate(&row.state(), row.kind == TokenKind::Software, now) {
                    self.dummy_work(code);
                    break 'check self
                        .reject(actor, "pin.holder", serial, Some(serial), r, now)
                        .await?;
                }
                let parsed = Digits::new(row.digits)
                    .ok()
                    .and_then(|d| Some((d, okey_otp::Code::parse(code, d).ok()?)));
                let Some((digits, code)) = parsed else {
                    break 'check self
                        .reject(
                            actor,
                            "pin.holder",
                            serial,
                            Some(serial),
                            Reason::BadFormat,
                            now,
                        )
                        .await?;
                };
                let Some(key) = self.key_of(&row)? else {
                    continue;
                };
                let hot = Hot::of(&row);
                let proof = self.one_code(&row, &key, digits, &code, now);
                drop(key);
                let (new, reason) = match &proof {
                    Some(p) => {
                        let mut new = Self::after_success(&hot.state, p, now);
                        // Choosing a PIN is not the holder's signature of the hand-over.
                        new.handover_unconfirmed = hot.state.handover_unconfirmed;
                        (new, Reason::Accepted)
                    }
                    None => (self.after_failure(&hot.state, now), Reason::WrongCode),
                };
                let accepted = proof.is_some();
                let entry = Self::audit_entry(
                    actor,
                    "pin.holder",
                    serial,
                    Some(serial),
                    if accepted { "accepted" } else { "rejected" },
                    reason.as_str(),
                    now,
                );
                match self
                    .commit(vec![(serial.to_owned(), hot.version, new)], None, entry)
                    .await
                {
                    Ok(()) => {
                        self.refresh_cache(serial, &hot, new);
                        break 'check outcome(accepted, Some(serial), reason);
                    }
                    Err(StoreError::Conflict) => self.conflict(),
                    Err(e) => return Err(e),
                }
            }
            return Err(StoreError::Conflict);
        };
        if !proved.accepted {
            return Ok(proved);
        }
        let pin = pin.clone();
        let holder = holder.to_owned();
        self.modify(
            serial,
            "token.pin",
            "set by its holder".into(),
            actor,
            move |row, store| {
                if row.holder.as_deref() != Some(holder.as_str()) {
                    return Err(StoreError::Forbidden(format!(
                        "key {} changed hands meanwhile: its PIN was not changed",
                        row.serial
                    )));
                }
                crate::store::put_pin(row, store, Some(&pin))
            },
        )?;
        Ok(proved)
    }

    /// Check an OCRA response to `question` (the caller issued the challenge and enforces its
    /// single use and expiry). Counter suites move the counter; failures count.
    pub async fn verify_ocra(
        &self,
        serial: &str,
        question: &str,
        response: &str,
        now: u64,
        actor: &Actor,
        client: &str,
    ) -> Result<VerifyOutcome, StoreError> {
        let actor = who(actor, client);
        for _ in 0..MAX_TRIES {
            let Some(row) = self.inner.backend.token(serial)? else {
                self.dummy_work(response);
                return self
                    .reject(&actor, "ocra", serial, None, Reason::UnknownSubject, now)
                    .await;
            };
            let OtpKind::Ocra { suite } = &row.otp else {
                return Err(StoreError::Unsupported(format!(
                    "token {serial} is not an OCRA challenge-response token"
                )));
            };
            let suite: OcraSuite = suite
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("token {serial} has a bad suite")))?;
            if suite.session_len().is_some() {
                return Err(StoreError::Unsupported(format!(
                    "token {serial}'s suite needs session information, which this store does not supply"
                )));
            }
            if let Some(r) = Self::gate(&row.state(), row.kind == TokenKind::Software, now) {
                self.dummy_work(response);
                return self
                    .reject(&actor, "ocra", serial, Some(serial), r, now)
                    .await;
            }
            // The gate above was checked on this row: a key that needs the row read again
            // means checking again.
            let Some(key) = self.key_of(&row)? else {
                continue;
            };
            let pin_hash = match (suite.pin_hash(), &row.sealed_pin_hash) {
                (None, _) => None,
                (Some(_), Some(blob)) => {
                    Some(self.keys().open_pin_hash(serial, row.key_version, blob)?)
                }
                (Some(_), None) => {
                    return Err(StoreError::Precondition(format!(
                        "token {serial} has a PIN-bound suite but no PIN; set one first"
                    )));
                }
            };
            let timestamp = suite.time_step().and_then(|_| suite.timestamp_at(now).ok());
            let hot = Hot::of(&row);
            let state = OtpState {
                counter: row.counter,
                last_step: row.last_step,
                drift: row.drift,
            };
            let input = OcraInput {
                counter: None,
                question,
                pin_hash: pin_hash.as_ref().map(|h| h.as_slice()),
                session: None,
                timestamp,
            };
            let cfg = &self.inner.cfg;
            let checked = okey_otp::verify_ocra(
                &key,
                &suite,
                &state,
                &input,
                cfg.hotp_window,
                cfg.totp_skew,
                response,
            );
            drop(key);
            drop(pin_hash);
            let (new, reason, accepted) = match checked {
                Err(_) => {
                    return self
                        .reject(&actor, "ocra", serial, Some(serial), Reason::BadFormat, now)
                        .await;
                }
                Ok(Some(p)) => {
                    let reason = if hot.state.status == TokenStatus::Pending {
                        Reason::Confirmed
                    } else {
                        Reason::Accepted
                    };
                    (Self::after_success(&hot.state, &p, now), reason, true)
                }
                Ok(None) => (
                    self.after_failure(&hot.state, now),
                    Reason::WrongCode,
                    false,
                ),
            };
            let result = if accepted { "accepted" } else { "rejected" };
            let entry = Self::audit_entry(
                &actor,
                "ocra",
                serial,
                Some(serial),
                result,
                reason.as_str(),
                now,
            );
            let signs = (accepted && hot.state.handover_unconfirmed).then(|| serial.to_owned());
            match self
                .commit(vec![(serial.to_owned(), hot.version, new)], signs, entry)
                .await
            {
                Ok(()) => {
                    self.refresh_cache(serial, &hot, new);
                    return Ok(outcome(accepted, Some(serial), reason));
                }
                Err(StoreError::Conflict) => self.conflict(),
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    /// USB bench: a token created in `Initialising` becomes `Active` only when `code`, read back
    /// from the device it was written to, verifies against the issued seed within the normal
    /// window. A wrong code leaves it `Initialising` (counted apart as a staff mistake, not
    /// toward lockout); the bench then erases the slot and aborts.
    pub async fn confirm_initialisation(
        &self,
        serial: &str,
        code: &str,
        now: u64,
        actor: &Actor,
    ) -> Result<VerifyOutcome, StoreError> {
        for _ in 0..MAX_TRIES {
            let row = self
                .inner
                .backend
                .token(serial)?
                .ok_or_else(|| StoreError::UnknownSerial(serial.to_owned()))?;
            if row.status != TokenStatus::Initialising {
                return Err(StoreError::Precondition(format!(
                    "token {serial} is not being initialised"
                )));
            }
            if matches!(row.otp, OtpKind::Ocra { .. }) {
                return Err(StoreError::Unsupported(
                    "OCRA tokens cannot be confirmed from a single read-back code".into(),
                ));
            }
            // Locks hold here as on a verify: no code is tested, nothing is counted.
            if let Some(r) = Self::lock_gate(&row.state(), now) {
                self.dummy_work(code);
                return self
                    .reject(actor, "initialise", serial, Some(serial), r, now)
                    .await;
            }
            let Some((digits, presented)) = Digits::new(row.digits)
                .ok()
                .and_then(|d| Some((d, okey_otp::Code::parse(code, d).ok()?)))
            else {
                return self
                    .reject(
                        actor,
                        "initialise",
                        serial,
                        Some(serial),
                        Reason::BadFormat,
                        now,
                    )
                    .await;
            };
            // The checks above were made on this row: a key that needs the row read again
            // means checking again.
            let Some(key) = self.key_of(&row)? else {
                continue;
            };
            let hot = Hot::of(&row);
            let proof = self.one_code(&row, &key, digits, &presented, now);
            drop(key);
            let settled = Settle {
                action: "initialise",
                success: Reason::Confirmed,
                status: TokenStatus::Active,
            };
            if let Some(done) = self
                .settle(actor, serial, &hot, proof, settled, now)
                .await?
            {
                return Ok(done);
            }
        }
        Err(StoreError::Conflict)
    }
}

/// How a resync or a bench confirmation settles a checked code.
struct Settle {
    /// The audit action.
    action: &'static str,
    /// The reason given on success.
    success: Reason,
    /// The status the token has after a success.
    status: TokenStatus,
}

impl Store {
    /// Commit the outcome of an administrative code check with its audit record. A success
    /// commits the proof's state with `settle.status`, as a compare-and-set on the version read
    /// (`None` when it lost and the caller must re-read). A failure is a staff member's mistake,
    /// not a guess at the holder's codes: it leaves the token's failure counter (and so the
    /// holder's lockout) alone, and is counted apart ([`StoreStats::staff_failures`]).
    ///
    /// [`StoreStats::staff_failures`]: crate::StoreStats::staff_failures
    async fn settle(
        &self,
        actor: &Actor,
        serial: &str,
        hot: &Hot,
        proof: Option<CodeVerified>,
        settle: Settle,
        now: u64,
    ) -> Result<Option<VerifyOutcome>, StoreError> {
        let Some(p) = proof else {
            self.inner
                .staff_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return self
                .reject(
                    actor,
                    settle.action,
                    serial,
                    Some(serial),
                    Reason::WrongCode,
                    now,
                )
                .await
                .map(Some);
        };
        let mut new = Self::after_success(&hot.state, &p, now);
        new.status = settle.status;
        // A staff operation (resynchronisation, bench read-back) signs nothing for the holder.
        new.handover_unconfirmed = hot.state.handover_unconfirmed;
        let entry = Self::audit_entry(
            actor,
            settle.action,
            serial,
            Some(serial),
            "accepted",
            settle.success.as_str(),
            now,
        );
        match self
            .commit(vec![(serial.to_owned(), hot.version, new)], None, entry)
            .await
        {
            Ok(()) => {
                self.refresh_cache(serial, hot, new);
                Ok(Some(outcome(true, Some(serial), settle.success)))
            }
            Err(StoreError::Conflict) => {
                self.conflict();
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use okey_otp::{Digits, OtpKey, hotp};
    use zeroize::Zeroizing;

    use crate::cache::Hot;
    use crate::store::Store;
    use crate::types::{
        Actor, Algorithm, MasterKeySource, NewToken, OtpKind, Reason, StoreConfig, TokenKind,
        TokenStatus,
    };

    const OLD: &[u8] = b"old seed old seed old seed";
    const NEW: &[u8] = b"new seed new seed new seed";

    fn token(seed: &[u8]) -> NewToken {
        NewToken {
            valid_until: None,
            serial: "I1".into(),
            kind: TokenKind::Hardware,
            otp: OtpKind::Hotp,
            algorithm: Algorithm::Sha1,
            digits: 6,
            seed: Zeroizing::new(seed.to_vec()),
            counter: 0,
            drift: 0,
            status: TokenStatus::Initialising,
            holder: None,
            description: None,
        }
    }

    fn code(seed: &[u8], counter: u64) -> String {
        let key = OtpKey::new(okey_otp::Algorithm::Sha1, seed).expect("key");
        hotp(&key, counter, Digits::SIX).to_text()
    }

    /// A confirmation racing a re-initialisation can cache the old seed's key after the
    /// re-initialisation dropped it. The next check reads the row with the new sealed seed: it
    /// must not use the old key (old-seed codes refused, new-seed codes accepted).
    #[test]
    fn a_cached_key_of_a_replaced_seed_is_not_used() {
        let dir = tempfile::tempdir().expect("dir");
        let s = Store::open(StoreConfig {
            master_key: MasterKeySource::Bytes(Zeroizing::new([7; 32])),
            ..StoreConfig::in_dir(dir.path())
        })
        .expect("open");
        let actor = Actor::new("tester", "admin");
        s.create_token(token(OLD), &actor).expect("create");
        let old_row = s.inner.backend.token("I1").expect("read").expect("row");
        s.reinitialise(token(NEW), &actor).expect("reinitialise");
        // The racing confirmation's late insert of the key it unsealed from the old row.
        let old_key = s.unseal(&old_row).expect("unseal");
        s.inner.cache.insert("I1", old_key, Hot::of(&old_row));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let o = s
                .confirm_initialisation("I1", &code(OLD, 0), 5, &actor)
                .await
                .expect("confirm");
            assert_eq!((o.accepted, o.reason), (false, Reason::WrongCode));
            let o = s
                .confirm_initialisation("I1", &code(NEW, 0), 5, &actor)
                .await
                .expect("confirm");
            assert_eq!((o.accepted, o.reason), (true, Reason::Confirmed));
            // The cache now holds the new seed's key for the hot path too.
            let o = s
                .verify(crate::types::VerifyRequest {
                    subject: crate::types::Subject::Serial("I1"),
                    passcode: &code(NEW, 1),
                    now: 6,
                    actor: &actor,
                    client: "",
                })
                .await
                .expect("verify");
            assert!(o.accepted, "{o:?}");
        });
    }
}
