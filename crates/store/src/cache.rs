//! The hot-path cache: unsealed keys (as the core's precomputed HMAC states) and the few row
//! fields a verify needs, in a bounded, sharded LRU. Evicted and dropped keys are zeroized by
//! `OtpKey`'s own `Drop`.
//!
//! The cache is a hint, never an authority: every state change is a compare-and-set on the row
//! version, and a rejection that did not go through one is re-checked against the database, so a
//! stale entry costs a retry, never a wrong answer. A cached key names the sealed seed it was
//! unsealed from ([`SealId`]); a row read from the database whose seed was sealed afresh (a new
//! seed, a rotation) does not get the old key.

use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use okey_otp::{Algorithm, OtpKey};

use crate::backend::{TokenRow, TokenState};
use crate::seal::{SealId, seal_id};
use crate::types::{OtpKind, TokenKind};

const SHARDS: usize = 16;

/// The scheme without its OCRA suite text (OCRA checks read the row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HotOtp {
    Hotp,
    Totp { step: u32, t0: u64 },
    Ocra,
}

/// What a verify needs besides the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hot {
    pub(crate) otp: HotOtp,
    pub(crate) algorithm: Algorithm,
    pub(crate) digits: u8,
    pub(crate) pin_verifier: Option<[u8; 32]>,
    /// For a holder-bound PIN verifier (scheme 2), the key's holder it is checked against
    /// (empty for a key that has none: nothing matches); `None` for a token-bound one.
    pub(crate) pin_holder: Option<Box<str>>,
    /// The state, custody and validity included (so the gate needs no query).
    pub(crate) state: TokenState,
    /// A software token (an assigned software key may enrol with its first code).
    pub(crate) software: bool,
    pub(crate) version: u64,
    /// The row's sealed seed.
    pub(crate) seal: SealId,
}

impl Hot {
    pub(crate) fn of(row: &TokenRow) -> Hot {
        Hot {
            otp: match row.otp {
                OtpKind::Hotp => HotOtp::Hotp,
                OtpKind::Totp { step, t0 } => HotOtp::Totp { step, t0 },
                OtpKind::Ocra { .. } => HotOtp::Ocra,
            },
            algorithm: row.algorithm,
            digits: row.digits,
            pin_verifier: row.pin_verifier,
            pin_holder: (row.pin_scheme == 2).then(|| row.holder.as_deref().unwrap_or("").into()),
            state: row.state(),
            software: row.kind == TokenKind::Software,
            version: row.version,
            seal: seal_id(&row.sealed_seed),
        }
    }
}

struct Slot {
    key: OtpKey,
    /// The sealed seed `key` was unsealed from (the hot fields may be of a newer row).
    seal: SealId,
    hot: Hot,
}

pub(crate) struct Cache {
    shards: Vec<Mutex<LruCache<Box<str>, Slot>>>,
    hasher: RandomState,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Cache {
        let per = NonZeroUsize::new(capacity.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        Cache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per)))
                .collect(),
            hasher: RandomState::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, serial: &str) -> std::sync::MutexGuard<'_, LruCache<Box<str>, Slot>> {
        let i = (self.hasher.hash_one(serial) as usize) % SHARDS;
        let m = &self.shards[i];
        // A panic while holding a shard cannot leave a slot half-written (slots are replaced
        // whole), so a poisoned lock is still usable.
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the key and hot fields (the copy is zeroized when the caller drops it); none
    /// when the hot fields are of a row whose seed is not the cached key's.
    pub(crate) fn get(&self, serial: &str) -> Option<(OtpKey, Hot)> {
        let found = self
            .shard(serial)
            .get(serial)
            .filter(|s| s.seal == s.hot.seal)
            .map(|s| (s.key.clone(), s.hot.clone()));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Just the key, if the cached one was unsealed from the sealed seed `seal`.
    pub(crate) fn key(&self, serial: &str, seal: &SealId) -> Option<OtpKey> {
        let found = self
            .shard(serial)
            .get(serial)
            .filter(|s| s.seal == *seal)
            .map(|s| s.key.clone());
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Insert the key unsealed from `hot`'s row. The hot fields replace older ones; the key
    /// replaces the cached one when it belongs to the row the slot's hot fields are now of (so a
    /// key unsealed from a newer seed replaces the old seed's).
    pub(crate) fn insert(&self, serial: &str, key: OtpKey, hot: Hot) {
        let mut shard = self.shard(serial);
        let seal = hot.seal;
        if let Some(slot) = shard.get_mut(serial) {
            if hot.version >= slot.hot.version {
                slot.hot = hot;
            }
            if slot.hot.seal == seal {
                slot.key = key;
                slot.seal = seal;
            }
            return;
        }
        shard.put(serial.into(), Slot { key, seal, hot });
    }

    /// Refresh the hot fields of a cached token, unless the cache already has a newer version.
    pub(crate) fn update(&self, serial: &str, hot: Hot) {
        if let Some(slot) = self.shard(serial).peek_mut(serial)
            && hot.version > slot.hot.version
        {
            slot.hot = hot;
        }
    }

    pub(crate) fn remove(&self, serial: &str) {
        self.shard(serial).pop(serial);
    }

    pub(crate) fn clear(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use okey_otp::{Algorithm, Digits, OtpKey, hotp};

    use super::{Cache, Hot, HotOtp};
    use crate::backend::TokenState;
    use crate::types::TokenStatus;

    fn hot(version: u64, seal: u8) -> Hot {
        Hot {
            otp: HotOtp::Hotp,
            algorithm: Algorithm::Sha1,
            digits: 6,
            pin_verifier: None,
            pin_holder: None,
            state: TokenState {
                counter: 0,
                last_step: None,
                drift: 0,
                failures: 0,
                locked: false,
                locked_until: None,
                status: TokenStatus::Active,
                updated_at: 0,
                custody: None,
                valid_until: None,
                active_until: None,
                handover_unconfirmed: false,
            },
            software: false,
            version,
            seal: [seal; 12],
        }
    }

    fn key(seed: &[u8]) -> OtpKey {
        OtpKey::new(Algorithm::Sha1, seed).expect("key")
    }

    fn first_code(k: &OtpKey) -> String {
        hotp(k, 0, Digits::SIX).to_text()
    }

    #[test]
    fn insert_replaces_the_key_of_a_newer_seed() {
        let (old, new) = (key(b"old seed old seed"), key(b"new seed new seed"));
        let c = Cache::new(16);
        c.insert("T", old.clone(), hot(1, 1));
        c.insert("T", new.clone(), hot(2, 2));
        let (k, h) = c.get("T").expect("cached");
        assert_eq!((first_code(&k), h.version), (first_code(&new), 2));
        assert!(c.key("T", &[1; 12]).is_none(), "the old seed's key is gone");
        assert!(c.key("T", &[2; 12]).is_some());
        // A late insert of the older row changes nothing.
        c.insert("T", old, hot(1, 1));
        let (k, h) = c.get("T").expect("cached");
        assert_eq!((first_code(&k), h.version), (first_code(&new), 2));
    }

    #[test]
    fn hot_fields_of_another_seed_hide_the_cached_key() {
        let c = Cache::new(16);
        c.insert("T", key(b"old seed old seed"), hot(1, 1));
        // Hot fields of a newer row sealed afresh: the cached key no longer goes with them.
        c.update("T", hot(2, 2));
        assert!(c.get("T").is_none());
        assert!(c.key("T", &[2; 12]).is_none());
    }
}
