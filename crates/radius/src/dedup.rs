//! Duplicate detection (RFC 5080 section 2.2.2): a request is known by its client's address
//! and port, its Identifier and its Request Authenticator. A retransmission that arrives while
//! the first copy is being verified is dropped; one that arrives after gets the very reply that
//! was sent, from the cache, so a code is never verified twice and an accepted code is not
//! answered Reject the second time.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most requests remembered at once; beyond it, new requests are answered without a cache
/// entry only after the oldest expire, and otherwise are refused (see [`Seen::Full`]).
pub const MAX_ENTRIES: usize = 262_144;

/// What identifies a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// Source address and port.
    pub from: SocketAddr,
    /// Identifier.
    pub identifier: u8,
    /// Request Authenticator.
    pub authenticator: [u8; 16],
}

enum Slot {
    InProgress,
    Done(Arc<[u8]>),
}

struct Entry {
    slot: Slot,
    expires: Instant,
}

/// What the cache knows of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// New: it is now marked in progress, and must be [`Cache::complete`]d or
    /// [`Cache::forget`]gotten.
    New,
    /// Being verified.
    InProgress,
    /// Answered: send this reply again.
    Answered(Arc<[u8]>),
    /// The cache is full of live entries: the request cannot be tracked, so it is dropped.
    Full,
}

/// The cache.
pub struct Cache {
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    order: VecDeque<(Instant, Key)>,
}

impl Inner {
    fn sweep(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front().copied() {
            if at > now {
                break;
            }
            self.order.pop_front();
            if self.entries.get(&key).is_some_and(|e| e.expires <= now) {
                self.entries.remove(&key);
            }
        }
    }
}

impl Cache {
    /// A cache keeping replies for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Cache {
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Look `key` up at `now`, marking it in progress when new.
    pub fn check(&self, key: Key, now: Instant) -> Seen {
        let Ok(mut inner) = self.inner.lock() else {
            return Seen::Full;
        };
        inner.sweep(now);
        if let Some(e) = inner.entries.get(&key) {
            return match &e.slot {
                Slot::InProgress => Seen::InProgress,
                Slot::Done(reply) => Seen::Answered(reply.clone()),
            };
        }
        if inner.entries.len() >= MAX_ENTRIES {
            return Seen::Full;
        }
        // An entry in progress lives until completed (then for ttl) or forgotten; the
        // expiry here only bounds a verify that never came back.
        let expires = now + self.ttl;
        inner.entries.insert(
            key,
            Entry {
                slot: Slot::InProgress,
                expires,
            },
        );
        inner.order.push_back((expires, key));
        Seen::New
    }

    /// Remember the reply sent for `key` at `now`.
    pub fn complete(&self, key: Key, reply: Arc<[u8]>, now: Instant) {
        if let Ok(mut inner) = self.inner.lock() {
            let expires = now + self.ttl;
            inner.entries.insert(
                key,
                Entry {
                    slot: Slot::Done(reply),
                    expires,
                },
            );
            inner.order.push_back((expires, key));
        }
    }

    /// Forget `key` (no reply was sent: a retransmission should be tried afresh).
    pub fn forget(&self, key: &Key) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.entries.remove(key);
        }
    }

    /// Requests remembered now.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.entries.len())
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16, id: u8, a: u8) -> Key {
        Key {
            from: SocketAddr::from(([127, 0, 0, 1], port)),
            identifier: id,
            authenticator: [a; 16],
        }
    }

    #[test]
    fn a_retransmission_is_answered_from_the_cache_until_it_expires() {
        let c = Cache::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let k = key(1000, 1, 1);
        assert_eq!(c.check(k, t0), Seen::New);
        assert_eq!(c.check(k, t0), Seen::InProgress);
        let reply: Arc<[u8]> = Arc::from(&b"reply"[..]);
        c.complete(k, reply.clone(), t0 + Duration::from_secs(1));
        assert_eq!(
            c.check(k, t0 + Duration::from_secs(5)),
            Seen::Answered(reply)
        );
        // The in-progress deadline (t0 + 5 s) does not cut the answered entry short.
        assert!(matches!(
            c.check(k, t0 + Duration::from_millis(5900)),
            Seen::Answered(_)
        ));
        assert_eq!(c.check(k, t0 + Duration::from_secs(7)), Seen::New);
    }

    #[test]
    fn port_identifier_and_authenticator_each_tell_requests_apart() {
        let c = Cache::new(Duration::from_secs(5));
        let t0 = Instant::now();
        for k in [key(1, 1, 1), key(2, 1, 1), key(1, 2, 1), key(1, 1, 2)] {
            assert_eq!(c.check(k, t0), Seen::New);
        }
        assert_eq!(c.len(), 4);
        c.forget(&key(1, 1, 1));
        assert_eq!(c.check(key(1, 1, 1), t0), Seen::New);
    }

    #[test]
    fn a_full_cache_refuses_until_entries_expire() {
        let c = Cache::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES {
            let k = Key {
                from: SocketAddr::from(([10, 0, (i >> 16) as u8, (i >> 8) as u8], i as u16)),
                identifier: i as u8,
                authenticator: [0; 16],
            };
            assert_eq!(c.check(k, t0), Seen::New);
        }
        assert_eq!(c.check(key(1, 1, 1), t0), Seen::Full);
        assert_eq!(
            c.check(key(1, 1, 1), t0 + Duration::from_secs(2)),
            Seen::New
        );
        assert_eq!(c.len(), 1);
    }
}
