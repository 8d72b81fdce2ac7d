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
    cache: RwLock<HashMap<[u8; 32], Option<Principal>>>,
}

impl Callers {
    /// A caller registry over `store`.
    pub fn new(store: Store) -> Self {
        Callers {
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Forget everything cached (after a key is created or revoked).
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.write() {
            cache.clear();
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
        if let Some(entry) = self.cache.read().ok().and_then(|c| c.get(&hash).cloned()) {
            return entry.ok_or_else(unauthenticated);
        }
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
        if let Ok(mut cache) = self.cache.write() {
            // Bound the negative cache so random keys cannot grow it without limit.
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(hash, found.clone());
        }
        found.ok_or_else(unauthenticated)
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
}
