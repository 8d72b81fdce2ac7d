//! Server-side sessions and pending logins, in memory.
//!
//! The browser holds only a random 256-bit identifier; the table is keyed by its SHA-256, so
//! the identifiers themselves are never kept. A session ends at its expiry (counted from the
//! login, not renewed by activity) or at logout, whichever comes first; an ended session's
//! cookie is refused from then on, from any browser. Each session carries its own CSRF token,
//! compared in constant time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use zeroize::Zeroizing;

/// Most sessions (and pending logins) kept at once; past it the oldest are dropped.
const MAX_ENTRIES: usize = 100_000;

/// How long a login may take at the provider.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

/// A random identifier, base64url (43 characters).
pub fn random_token() -> Result<Zeroizing<String>, getrandom::Error> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut())?;
    Ok(Zeroizing::new(
        data_encoding::BASE64URL_NOPAD.encode(bytes.as_ref()),
    ))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `given` is `expected`, in constant time.
pub fn same(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// A logged-in person.
#[derive(Clone)]
pub struct Session {
    /// Their directory id.
    pub person: String,
    /// Their name, as the directory gives it (else the id).
    pub name: String,
    /// The token every form of this session carries.
    pub csrf: Zeroizing<String>,
    /// The ID token of the login, the `id_token_hint` of the logout at the provider.
    pub id_token: Zeroizing<String>,
    /// The time zone this session's pages show dates in and its forms read them in.
    pub zone: okey_server::Zone,
    expires: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("person", &self.person)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for rendering tests, dated in `zone`.
    #[cfg(test)]
    pub(crate) fn for_tests(zone: okey_server::Zone) -> Session {
        Session {
            person: "f.test".into(),
            name: "Test".into(),
            csrf: Zeroizing::new("csrf".into()),
            id_token: Zeroizing::new(String::new()),
            zone,
            expires: Instant::now(),
        }
    }

    /// Whether `token` is this session's CSRF token.
    pub fn csrf_matches(&self, token: &str) -> bool {
        same(token, &self.csrf)
    }
}

/// A login started at the provider and not yet come back.
pub struct Pending {
    /// The `state` sent to the provider.
    pub state: Zeroizing<String>,
    /// The nonce the ID token must carry.
    pub nonce: Zeroizing<String>,
    /// The PKCE verifier of the challenge sent.
    pub pkce_verifier: Zeroizing<String>,
    /// The portal path to show once logged in (checked local by the login handler).
    pub back: String,
    expires: Instant,
}

/// Every session and pending login of this process.
pub struct Sessions {
    ttl: Duration,
    zone: okey_server::Zone,
    live: Mutex<HashMap<[u8; 32], Session>>,
    pending: Mutex<HashMap<[u8; 32], Pending>>,
}

fn prune<V>(map: &mut HashMap<[u8; 32], V>, now: Instant, expiry: impl Fn(&V) -> Instant) {
    map.retain(|_, v| expiry(v) > now);
    if map.len() >= MAX_ENTRIES {
        let mut by_age: Vec<_> = map.iter().map(|(k, v)| (expiry(v), *k)).collect();
        by_age.sort();
        for (_, k) in by_age.into_iter().take(map.len() + 1 - MAX_ENTRIES) {
            map.remove(&k);
        }
    }
}

impl Sessions {
    /// Sessions lasting `ttl` from login, their pages dated in `zone`.
    pub fn new(ttl: Duration, zone: okey_server::Zone) -> Self {
        Sessions {
            ttl,
            zone,
            live: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Open a session for `person`; returns the cookie value.
    pub fn open(
        &self,
        person: &str,
        name: &str,
        id_token: Zeroizing<String>,
    ) -> Result<Zeroizing<String>, getrandom::Error> {
        let id = random_token()?;
        let now = Instant::now();
        let session = Session {
            person: person.to_owned(),
            name: name.to_owned(),
            csrf: random_token()?,
            id_token,
            zone: self.zone.clone(),
            expires: now + self.ttl,
        };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut live, now, |s| s.expires);
        live.insert(digest(&id), session);
        Ok(id)
    }

    /// The live session of cookie value `id`.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let key = digest(id);
        match live.get(&key) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                live.remove(&key);
                None
            }
            None => None,
        }
    }

    /// End the session of cookie value `id` (logout).
    pub fn close(&self, id: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.remove(&digest(id));
    }

    /// Remember a login sent to the provider; returns the cookie value that finds it again.
    pub fn begin_login(
        &self,
        state: Zeroizing<String>,
        nonce: Zeroizing<String>,
        pkce_verifier: Zeroizing<String>,
        back: String,
    ) -> Result<Zeroizing<String>, getrandom::Error> {
        let id = random_token()?;
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut pending, now, |p| p.expires);
        pending.insert(
            digest(&id),
            Pending {
                state,
                nonce,
                pkce_verifier,
                back,
                expires: now + LOGIN_TTL,
            },
        );
        Ok(id)
    }

    /// Take (once) the pending login of cookie value `id`, if it has not expired.
    pub fn take_login(&self, id: &str) -> Option<Pending> {
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.remove(&digest(id)).filter(|p| p.expires > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_session_ends_at_its_expiry_and_at_logout() {
        let s = Sessions::new(Duration::from_secs(60), okey_server::Zone::utc());
        let a = s
            .open("f.head", "Head", Zeroizing::new(String::new()))
            .expect("random");
        let b = s
            .open("f.head", "Head", Zeroizing::new(String::new()))
            .expect("random");
        assert_ne!(*a, *b, "each login has its own identifier");
        let got = s.get(&a).expect("live");
        assert_eq!(got.person, "f.head");
        assert!(got.csrf_matches(&got.csrf.clone()));
        assert!(!got.csrf_matches(""));
        assert!(s.get("not-a-session").is_none());
        s.close(&a);
        assert!(s.get(&a).is_none(), "closed at logout");
        assert!(s.get(&b).is_some(), "the other session stays");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(s.get(&b).is_none(), "expired");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_login_is_taken_once_and_expires() {
        let s = Sessions::new(Duration::from_secs(60), okey_server::Zone::utc());
        let z = |v: &str| Zeroizing::new(v.to_owned());
        let id = s
            .begin_login(z("st"), z("n"), z("v"), "/".into())
            .expect("random");
        let p = s.take_login(&id).expect("pending");
        assert_eq!(p.state.as_str(), "st");
        assert!(s.take_login(&id).is_none(), "only once");
        let id = s
            .begin_login(z("st"), z("n"), z("v"), "/".into())
            .expect("random");
        tokio::time::advance(LOGIN_TTL + Duration::from_secs(1)).await;
        assert!(s.take_login(&id).is_none(), "expired");
    }
}
