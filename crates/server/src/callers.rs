//! Caller authentication: API keys sent as `authorization: Bearer <key>` metadata.
//!
//! A key is `okey_` followed by 43 base64url characters (32 random bytes). Only its SHA-256 is
//! stored: keys are high-entropy, so a fast hash is enough and keeps authentication off the hot
//! path's budget. Known principals are cached in memory; the cache is refreshed from the store
//! on a miss and dropped on revocation.
//!
//! A refused credential leaves a trace: every `UNAUTHENTICATED` and `PERMISSION_DENIED` is
//! counted in the metrics and logged at WARN with the peer's address (at most
//! [`WARNINGS_PER_SECOND`] lines a second; the next line says how many were not logged), and a
//! `PERMISSION_DENIED` is also an audit record naming the principal and the operation.
//!
//! A caller with the role `portal` (a trusted front end that authenticated a person itself) may
//! name, in the request metadata [`ACTING_PERSON`], the directory person it acts for; any other
//! caller sending it is refused `PERMISSION_DENIED`, whatever the operation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use okey_domain::{Operation, Role, authorize};
use okey_store::{AuditEntry, Store};
use sha2::{Digest, Sha256};
use tonic::Status;
use zeroize::Zeroizing;

use crate::clock;
use crate::metrics::{Metrics, RefusedKind};

/// The request metadata in which a portal caller names the directory person it acts for.
pub const ACTING_PERSON: &str = "okey-acting-person";

/// The prefix of every okey API key, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "okey_";

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The principal's name, as recorded in audit entries.
    pub name: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// The address the request came from, when the transport knows it.
    pub peer: Option<SocketAddr>,
    /// The directory person the API key is bound to (`okey caller create --person`).
    pub person: Option<String>,
    /// For a portal caller, the person named in this request's [`ACTING_PERSON`] metadata
    /// (checked as a person id, folded to lower case).
    pub acting_for: Option<String>,
}

impl Principal {
    /// The roles as one comma-separated string, for audit.
    pub fn role_names(&self) -> String {
        self.roles
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Most refused-credential lines logged in one second.
pub const WARNINGS_PER_SECOND: u32 = 10;

/// Why a request's credential was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// No `authorization` header.
    Missing,
    /// More than one `authorization` header: which one would count is ambiguous.
    Several,
    /// Not `Bearer okey_...`.
    Malformed,
    /// No enabled key has this hash.
    Unknown,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "no authorization header",
            Refusal::Several => "several authorization headers",
            Refusal::Malformed => "not a bearer okey API key",
            Refusal::Unknown => "unknown or revoked API key",
        }
    }

    fn status(self) -> Status {
        match self {
            Refusal::Several => Status::unauthenticated(
                "send exactly one authorization header (authorization: Bearer <key>)",
            ),
            _ => {
                Status::unauthenticated("a valid API key is required (authorization: Bearer <key>)")
            }
        }
    }
}

/// Why authentication did not produce a principal.
enum AuthError {
    Refused(Refusal),
    /// The key store could not be read: not the caller's fault.
    Unavailable(Status),
}

/// At most [`WARNINGS_PER_SECOND`] lines a second; counts the lines it held back.
#[derive(Default)]
struct LogLimit(Mutex<LogWindow>);

#[derive(Default)]
struct LogWindow {
    second: u64,
    logged: u32,
    held_back: u64,
}

impl LogLimit {
    /// Whether a line may be logged at `now`; if so, how many were held back before it.
    fn admit(&self, now: u64) -> Option<u64> {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if w.second != now {
            w.second = now;
            w.logged = 0;
        }
        if w.logged >= WARNINGS_PER_SECOND {
            w.held_back += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.held_back))
    }
}

fn peer_text(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
}

/// Make a new random API key. Returned once to whoever asked; only its hash is kept.
pub fn generate_key() -> Result<Zeroizing<String>, getrandom::Error> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut())?;
    let mut key = Zeroizing::new(String::from(KEY_PREFIX));
    key.push_str(&data_encoding::BASE64URL_NOPAD.encode(bytes.as_ref()));
    Ok(key)
}

/// The stored form of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Authenticates callers against the store's API keys, with a cache.
pub struct Callers {
    store: Store,
    metrics: Arc<Metrics>,
    cache: RwLock<KeyCache>,
    warnings: LogLimit,
    /// Keys made at start for okey's own front ends (the portal), held in memory only: never
    /// stored, gone when the process stops.
    builtin: RwLock<HashMap<[u8; 32], Principal>>,
}

/// Looked-up keys (`None`: no such enabled key), and a generation that every invalidation
/// bumps, so a lookup that raced a revocation is not cached.
#[derive(Default)]
struct KeyCache {
    generation: u64,
    keys: HashMap<[u8; 32], Option<Principal>>,
}

impl Callers {
    /// A caller registry over `store`, counting refusals in `metrics`.
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Callers {
            store,
            metrics,
            cache: RwLock::new(KeyCache::default()),
            warnings: LogLimit::default(),
            builtin: RwLock::new(HashMap::new()),
        }
    }

    /// Make a key for one of okey's own front ends, valid in this process only (never stored:
    /// a restart makes a new one), with the principal name `name` and `roles`.
    pub fn add_builtin(
        &self,
        name: &str,
        roles: Vec<Role>,
    ) -> Result<Zeroizing<String>, getrandom::Error> {
        let key = generate_key()?;
        let principal = Principal {
            name: name.to_owned(),
            roles,
            peer: None,
            person: None,
            acting_for: None,
        };
        let mut builtin = self.builtin.write().unwrap_or_else(|p| p.into_inner());
        builtin.insert(hash_key(&key), principal);
        Ok(key)
    }

    /// Forget everything cached (after a key is created or revoked).
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.write() {
            cache.keys.clear();
            cache.generation = cache.generation.wrapping_add(1);
        }
    }

    /// Authenticate the request's bearer key and check that its roles allow `operation`.
    pub async fn authorize<T>(
        &self,
        request: &tonic::Request<T>,
        operation: Operation,
    ) -> Result<Principal, Status> {
        let peer = request.remote_addr();
        let mut principal = match self.authenticate(request.metadata()) {
            Ok(p) => p,
            Err(AuthError::Unavailable(status)) => return Err(status),
            Err(AuthError::Refused(why)) => {
                self.metrics.record_refused(RefusedKind::Unauthenticated);
                if let Some(held_back) = self.warnings.admit(clock::now()) {
                    tracing::warn!(
                        peer = %peer_text(peer),
                        operation = ?operation,
                        why = why.as_str(),
                        not_logged_before = held_back,
                        "credential refused"
                    );
                }
                return Err(why.status());
            }
        };
        principal.peer = peer;
        principal.acting_for = self
            .acting_person(&principal, request.metadata(), operation)
            .await?;
        self.require(&principal, operation).await?;
        Ok(principal)
    }

    /// The person a portal caller names in [`ACTING_PERSON`]; a refusal for anyone else who
    /// names one.
    async fn acting_person(
        &self,
        principal: &Principal,
        metadata: &tonic::metadata::MetadataMap,
        operation: Operation,
    ) -> Result<Option<String>, Status> {
        let mut values = metadata.get_all(ACTING_PERSON).iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if !principal.roles.contains(&Role::Portal) {
            return Err(self
                .deny(
                    principal,
                    operation,
                    format!(
                        "only a caller with the role portal may act for another person \
                         ({ACTING_PERSON}); {} has the roles {}",
                        principal.name,
                        principal.role_names()
                    ),
                )
                .await);
        }
        if values.next().is_some() {
            return Err(Status::invalid_argument(format!(
                "send at most one {ACTING_PERSON} header"
            )));
        }
        let value = first.to_str().map_err(|_| {
            Status::invalid_argument(format!("{ACTING_PERSON} must be a person id in ASCII"))
        })?;
        let id = okey_domain::org::PersonId::parse(value).map_err(|_| {
            crate::status::invalid(format!(
                "{ACTING_PERSON} {} is not a person id: 1 to 128 letters, digits and . _ - @",
                crate::status::shown(value)
            ))
        })?;
        Ok(Some(id.as_str().to_owned()))
    }

    /// Check that `principal`'s roles allow `operation` too (for a request that does the work
    /// of a second operation, e.g. a creation that also assigns). A refusal is counted, logged
    /// and audited.
    pub async fn require(&self, principal: &Principal, operation: Operation) -> Result<(), Status> {
        let Err(denied) = authorize(&principal.roles, operation) else {
            return Ok(());
        };
        Err(self.deny(principal, operation, denied.to_string()).await)
    }

    /// Count, log and audit a `PERMISSION_DENIED` for `principal` asking `operation`, and make it.
    pub async fn deny(
        &self,
        principal: &Principal,
        operation: Operation,
        sentence: String,
    ) -> Status {
        self.metrics.record_refused(RefusedKind::PermissionDenied);
        let now = clock::now();
        if let Some(held_back) = self.warnings.admit(now) {
            tracing::warn!(
                peer = %peer_text(principal.peer),
                caller = %principal.name,
                roles = %principal.role_names(),
                operation = ?operation,
                not_logged_before = held_back,
                "permission denied"
            );
        }
        let entry = AuditEntry {
            actor: principal.name.clone(),
            action: "authorize".to_owned(),
            subject: format!("{operation:?}"),
            serial: None,
            result: "rejected".to_owned(),
            reason: "permission_denied".to_owned(),
            at: now,
        };
        if let Err(e) = self.store.audit(entry).await {
            tracing::error!(error = %e, "audit append failed");
        }
        Status::permission_denied(sentence)
    }

    fn authenticate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Principal, AuthError> {
        let refused = |why| AuthError::Refused(why);
        let mut headers = metadata.get_all("authorization").iter();
        let first = headers.next().ok_or(refused(Refusal::Missing))?;
        if headers.next().is_some() {
            return Err(refused(Refusal::Several));
        }
        let header = first.to_str().map_err(|_| refused(Refusal::Malformed))?;
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| k.starts_with(KEY_PREFIX) && k.len() <= 128)
            .ok_or(refused(Refusal::Malformed))?;
        let hash = hash_key(key);
        if let Some(p) = self
            .builtin
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
        {
            return Ok(p.clone());
        }
        let generation = match self.cache.read() {
            Ok(c) => {
                if let Some(entry) = c.keys.get(&hash) {
                    return entry.clone().ok_or(refused(Refusal::Unknown));
                }
                c.generation
            }
            Err(_) => u64::MAX,
        };
        let found = self
            .store
            .api_key(&hash)
            .map_err(|e| {
                tracing::error!(error = %e, "API key lookup failed");
                AuthError::Unavailable(Status::unavailable("the credential store is unavailable"))
            })?
            .filter(|p| !p.disabled);
        let found = match found {
            None => None,
            Some(p) => {
                let person = self.store.caller_person(&p.name).map_err(|e| {
                    tracing::error!(error = %e, "API key lookup failed");
                    AuthError::Unavailable(Status::unavailable(
                        "the credential store is unavailable",
                    ))
                })?;
                Some(Principal {
                    name: p.name,
                    roles: p.roles.iter().filter_map(|r| r.parse().ok()).collect(),
                    peer: None,
                    person: person.map(|id| id.as_str().to_owned()),
                    acting_for: None,
                })
            }
        };
        self.remember(hash, generation, found.clone());
        found.ok_or(refused(Refusal::Unknown))
    }

    /// Cache a lookup made at `generation`, unless keys changed since (the lookup may have
    /// read a key just before its revocation).
    fn remember(&self, hash: [u8; 32], generation: u64, found: Option<Principal>) {
        if let Ok(mut cache) = self.cache.write()
            && cache.generation == generation
        {
            // Bound the negative cache so random keys cannot grow it without limit.
            if cache.keys.len() > 10_000 {
                cache.keys.clear();
            }
            cache.keys.insert(hash, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_lines_are_limited_per_second_and_say_how_many_were_held_back() {
        let limit = LogLimit::default();
        for _ in 0..WARNINGS_PER_SECOND {
            assert_eq!(limit.admit(100), Some(0));
        }
        assert_eq!(limit.admit(100), None);
        assert_eq!(limit.admit(100), None);
        assert_eq!(limit.admit(101), Some(2));
        assert_eq!(limit.admit(101), Some(0));
    }

    #[test]
    fn keys_are_prefixed_random_and_hash_stably() {
        let a = generate_key().expect("random");
        let b = generate_key().expect("random");
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert_ne!(*a, *b);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
    }

    /// A lookup that read a key just before it was revoked must not be cached as valid: the
    /// revocation's invalidation comes between the read and the insert.
    #[test]
    fn a_lookup_that_raced_a_revocation_is_not_cached() {
        let dir = tempfile::tempdir().expect("dir");
        let config = crate::config::ServeConfig {
            data_dir: dir.path().join("data"),
            ..crate::config::ServeConfig::default()
        };
        okey_store::create_private_dir(&config.data_dir).expect("data dir");
        let store = Store::open(config.store_config().expect("config")).expect("store");
        let admin = okey_store::Actor {
            name: "test".into(),
            role: "admin".into(),
        };
        let key = generate_key().expect("random");
        let hash = hash_key(&key);
        store
            .add_api_key("fe-1", hash, &["verifier".into()], &admin)
            .expect("put");
        let callers = Callers::new(store.clone(), Arc::new(Metrics::default()));
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            "authorization",
            format!("Bearer {}", key.as_str()).parse().expect("ascii"),
        );

        // The lookup of a request in flight: the key is still enabled.
        let generation = callers.cache.read().expect("cache").generation;
        let principal = store.api_key(&hash).expect("lookup").map(|p| Principal {
            name: p.name,
            roles: vec![Role::Verifier],
            peer: None,
            person: None,
            acting_for: None,
        });
        assert!(principal.is_some());
        // Meanwhile the key is revoked, and the cache invalidated.
        store.revoke_api_key("fe-1", &admin).expect("revoke");
        callers.invalidate();
        // The late insert is dropped, and the next request sees the revocation.
        callers.remember(hash, generation, principal);
        assert!(matches!(
            callers.authenticate(&metadata),
            Err(AuthError::Refused(Refusal::Unknown))
        ));
    }
}
