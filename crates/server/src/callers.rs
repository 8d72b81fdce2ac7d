//! Caller authentication: API keys sent as `authorization: Bearer <key>` metadata.
//!
//! A key is `okey_` followed by 43 base64url characters (32 random bytes). Only its SHA-256 is
//! stored: keys are high-entropy, so a fast hash is enough and keeps authentication off the hot
//! path's budget. Known principals are cached in memory; the cache is refreshed from the store
//! on a miss and dropped on revocation.

use std::collections::HashMap;
use std::sync::RwLock;

use okey_domain::{Operation, Role, authorize};
use okey_store::Store;
use sha2::{Digest, Sha256};
use tonic::Status;
use zeroize::Zeroizing;

/// The prefix of every okey API key, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "okey_";

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The principal's name, as recorded in audit entries.
    pub name: String,
    /// Its roles.
    pub roles: Vec<Role>,
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

    /// Whether this caller's roles allow `operation` too (for a request that does the work of
    /// a second operation, e.g. a creation that also assigns).
    pub fn may(&self, operation: Operation) -> Result<(), Status> {
        authorize(&self.roles, operation).map_err(|denied| {
            tracing::info!(caller = %self.name, operation = ?operation, "permission denied");
            Status::permission_denied(denied.to_string())
        })
    }
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
    cache: RwLock<KeyCache>,
}

/// Looked-up keys (`None`: no such enabled key), and a generation that every invalidation
/// bumps, so a lookup that raced a revocation is not cached.
#[derive(Default)]
struct KeyCache {
    generation: u64,
    keys: HashMap<[u8; 32], Option<Principal>>,
}

impl Callers {
    /// A caller registry over `store`.
    pub fn new(store: Store) -> Self {
        Callers {
            store,
            cache: RwLock::new(KeyCache::default()),
        }
    }

    /// Forget everything cached (after a key is created or revoked).
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.write() {
            cache.keys.clear();
            cache.generation = cache.generation.wrapping_add(1);
        }
    }

    /// Authenticate the request's bearer key and check that its roles allow `operation`.
    pub fn authorize<T>(
        &self,
        request: &tonic::Request<T>,
        operation: Operation,
    ) -> Result<Principal, Status> {
        let principal = self.authenticate(request.metadata())?;
        principal.may(operation)?;
        Ok(principal)
    }

    fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Principal, Status> {
        let unauthenticated =
            || Status::unauthenticated("a valid API key is required (authorization: Bearer <key>)");
        let header = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthenticated)?;
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| k.starts_with(KEY_PREFIX) && k.len() <= 128)
            .ok_or_else(unauthenticated)?;
        let hash = hash_key(key);
        let generation = match self.cache.read() {
            Ok(c) => {
                if let Some(entry) = c.keys.get(&hash) {
                    return entry.clone().ok_or_else(unauthenticated);
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
                Status::unavailable("the credential store is unavailable")
            })?
            .filter(|p| !p.disabled)
            .map(|p| Principal {
                name: p.name,
                roles: p.roles.iter().filter_map(|r| r.parse().ok()).collect(),
            });
        self.remember(hash, generation, found.clone());
        found.ok_or_else(unauthenticated)
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
        let callers = Callers::new(store.clone());
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
        });
        assert!(principal.is_some());
        // Meanwhile the key is revoked, and the cache invalidated.
        store.revoke_api_key("fe-1", &admin).expect("revoke");
        callers.invalidate();
        // The late insert is dropped, and the next request sees the revocation.
        callers.remember(hash, generation, principal);
        assert_eq!(
            callers.authenticate(&metadata).map_err(|s| s.code()),
            Err(tonic::Code::Unauthenticated)
        );
    }
}
