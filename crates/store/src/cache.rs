//! The hot-path cache: unsealed keys (as the core's precomputed HMAC states) and the few row
//! fields a verify needs, in a bounded, sharded LRU. Evicted and dropped keys are zeroized by
//! `OtpKey`'s own `Drop`.
//!
//! The cache is a hint, never an authority: every state change is a compare-and-set on the row
//! version, and a rejection that did not go through one is re-checked against the database, so a
//! stale entry costs a retry, never a wrong answer.

use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use okey_otp::{Algorithm, OtpKey};

use crate::backend::{TokenRow, TokenState};
use crate::types::OtpKind;

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
    pub(crate) state: TokenState,
    pub(crate) version: u64,
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
            state: row.state(),
            version: row.version,
        }
    }
}

struct Slot {
    key: OtpKey,
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

    /// A copy of the key and hot fields (the copy is zeroized when the caller drops it).
    pub(crate) fn get(&self, serial: &str) -> Option<(OtpKey, Hot)> {
        let found = self
            .shard(serial)
            .get(serial)
            .map(|s| (s.key.clone(), s.hot.clone()));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Just the key, if cached.
    pub(crate) fn key(&self, serial: &str) -> Option<OtpKey> {
        let found = self.shard(serial).get(serial).map(|s| s.key.clone());
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Insert, unless a newer version is already there.
    pub(crate) fn insert(&self, serial: &str, key: OtpKey, hot: Hot) {
        let mut shard = self.shard(serial);
        if let Some(slot) = shard.get_mut(serial) {
            if hot.version > slot.hot.version {
                slot.hot = hot;
            }
            return;
        }
        shard.put(serial.into(), Slot { key, hot });
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
