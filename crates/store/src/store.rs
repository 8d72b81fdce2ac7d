//! The store: opening, sealing keys, token administration, API keys and the audit log.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use okey_otp::{Algorithm, MAX_COUNTER, OcraSuite, OtpKey, Pepper, Pin, PinBinding};
use zeroize::Zeroizing;

use crate::StoreError;
use crate::audit::{self, ChainCheck};
use crate::backend::{Backend, DataKeyRow, TokenRow, WriteTx};
use crate::cache::{Cache, Hot};
use crate::clock::unix_now;
use crate::seal::{self, MasterKey, SealKey};
use crate::sqlite::Sqlite;
use crate::types::*;
use crate::writer::{BUCKETS, COMMIT_BUCKETS_US, Writer};

pub(crate) const PEPPER: &str = "pepper";
pub(crate) const AUDIT_KEY: &str = "audit-key";

/// The master key and the data keys it wraps.
pub(crate) struct KeyRing {
    pub(crate) master: MasterKey,
    pub(crate) data: BTreeMap<u32, SealKey>,
    pub(crate) active: u32,
}

impl KeyRing {
    pub(crate) fn active(&self) -> Result<&SealKey, StoreError> {
        self.data
            .get(&self.active)
            .ok_or_else(|| StoreError::Corrupt("no active data key".into()))
    }

    pub(crate) fn seal_seed(
        &self,
        serial: &str,
        seed: &[u8],
    ) -> Result<(u32, Vec<u8>), StoreError> {
        self.master.check()?;
        let k = self.active()?;
        Ok((
            k.version(),
            k.seal(&seal::seed_aad(serial, k.version()), seed)?,
        ))
    }

    /// Every seal and unseal first checks that the master key is still usable: with an HSM that
    /// went away, the data keys in memory unseal nothing more (fail closed).
    pub(crate) fn open_seed(&self, row: &TokenRow) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.master.check()?;
        let bad = || StoreError::Unseal {
            what: "seed",
            subject: row.serial.clone(),
        };
        let k = self.data.get(&row.key_version).ok_or_else(bad)?;
        k.open(
            &seal::seed_aad(&row.serial, row.key_version),
            &row.sealed_seed,
        )
        .ok_or_else(bad)
    }

    pub(crate) fn open_pin_hash(
        &self,
        serial: &str,
        version: u32,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.master.check()?;
        let bad = || StoreError::Unseal {
            what: "PIN hash",
            subject: serial.to_owned(),
        };
        let k = self.data.get(&version).ok_or_else(bad)?;
        k.open(&seal::pin_hash_aad(serial, version), blob)
            .ok_or_else(bad)
    }

    pub(crate) fn open_secret(
        &self,
        name: &str,
        version: u32,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.master.check()?;
        let bad = || StoreError::Unseal {
            what: "store secret",
            subject: name.to_owned(),
        };
        let k = self.data.get(&version).ok_or_else(bad)?;
        k.open(&seal::secret_aad(name, version), blob)
            .ok_or_else(bad)
    }
}

pub(crate) struct Inner {
    pub(crate) cfg: StoreConfig,
    pub(crate) writer: Writer,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) keys: RwLock<KeyRing>,
    pub(crate) pepper: Pepper,
    pub(crate) audit_key: Arc<OtpKey>,
    /// Signs the audit chain's head (zeroized on drop).
    pub(crate) anchor_key: ed25519_dalek::SigningKey,
    pub(crate) cache: Cache,
    pub(crate) conflicts: AtomicU64,
    /// Wrong codes in staff operations (resynchronisation, bench read-back).
    pub(crate) staff_failures: AtomicU64,
    /// The directory's unit tree, loaded on first use and dropped by an import.
    pub(crate) org_tree: RwLock<Option<Arc<okey_domain::org::OrgTree>>>,
    /// Renders the lifecycle's mails, when a relay is configured.
    pub(crate) mailer: RwLock<Option<Arc<dyn crate::notices::LifecycleMailer>>>,
}

/// The sealed store. Cheap to clone; all clones share one database, cache and writer.
///
/// `verify`, `resync`, `verify_ocra` and `audit` are async: they await the writer's durable
/// commit without blocking a thread. The administrative methods are synchronous and block until
/// their commit is durable (a few milliseconds); from async code, call them through
/// `tokio::task::spawn_blocking` so a runtime worker is not held meanwhile. Reads (`token`,
/// `list_tokens`, `api_key`, ...) use a small pool of read connections and never wait for the
/// writer.
///
/// Errors map naturally to RPC status codes: [`StoreError::Invalid`] → invalid argument,
/// [`StoreError::UnknownSerial`] / [`StoreError::UnknownApiKey`] → not found,
/// [`StoreError::DuplicateSerial`] / [`StoreError::DuplicateApiKey`] → already exists,
/// [`StoreError::Precondition`] → failed precondition, anything else → internal.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.inner.cfg.data_dir)
            .finish_non_exhaustive()
    }
}

pub(crate) fn valid_serial(serial: &str) -> Result<(), StoreError> {
    if serial.is_empty() || serial.len() > 64 {
        return Err(StoreError::invalid("serial", "must be 1 to 64 characters"));
    }
    if !serial
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(StoreError::invalid(
            "serial",
            "may contain only letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

fn valid_text(field: &'static str, text: &str, max: usize) -> Result<(), StoreError> {
    if text.is_empty() || text.chars().count() > max {
        return Err(StoreError::invalid(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

const MAX_DRIFT: i64 = 1_000_000;

pub(crate) fn info_of(row: &TokenRow) -> TokenInfo {
    TokenInfo {
        serial: row.serial.clone(),
        kind: row.kind,
        otp: row.otp.clone(),
        algorithm: row.algorithm,
        digits: row.digits,
        counter: row.counter,
        last_step: row.last_step,
        drift: row.drift,
        failures: row.failures,
        locked: row.locked,
        locked_until: row.locked_until,
        status: row.status,
        holder: row.holder.clone(),
        has_pin: row.pin_verifier.is_some(),
        created_at: row.created_at,
        updated_at: row.updated_at,
        description: row.description.clone(),
    }
}

/// Check a new token and build its row (seed not yet sealed: `sealed_seed` empty).
pub(crate) fn check_new(t: &NewToken) -> Result<(), StoreError> {
    valid_serial(&t.serial)?;
    match &t.otp {
        OtpKind::Hotp => {
            okey_otp::Digits::new(t.digits)
                .map_err(|e| StoreError::invalid("digits", e.to_string()))?;
        }
        OtpKind::Totp { step, t0 } => {
            okey_otp::Digits::new(t.digits)
                .map_err(|e| StoreError::invalid("digits", e.to_string()))?;
            if *step == 0 || *step > 86_400 {
                return Err(StoreError::invalid(
                    "step",
                    "the TOTP step must be 1 to 86400 seconds",
                ));
            }
            if *t0 > MAX_COUNTER {
                return Err(StoreError::invalid("t0", "must be below 2^63"));
            }
        }
        OtpKind::Ocra { suite } => {
            let s: OcraSuite = suite
                .parse()
                .map_err(|e: okey_otp::OcraError| StoreError::invalid("suite", e.to_string()))?;
            if s.algorithm() != t.algorithm {
                return Err(StoreError::invalid(
                    "algorithm",
                    format!("the suite uses {}", s.algorithm()),
                ));
            }
            let d = s.digits().map_or(0, |d| d.get());
            if t.digits != d {
                return Err(StoreError::invalid(
                    "digits",
                    format!("the suite shows {d} digits"),
                ));
            }
        }
    }
    if t.seed.len() < 16 || t.seed.len() > okey_otp::MAX_KEY_LEN {
        return Err(StoreError::invalid(
            "seed",
            format!(
                "must be 16 to {} bytes, got {}",
                okey_otp::MAX_KEY_LEN,
                t.seed.len()
            ),
        ));
    }
    if t.counter > MAX_COUNTER {
        return Err(StoreError::invalid(
            "counter",
            format!("must be at most {MAX_COUNTER}"),
        ));
    }
    if t.drift.abs() > MAX_DRIFT {
        return Err(StoreError::invalid(
            "drift",
            format!("must be within ±{MAX_DRIFT} steps"),
        ));
    }
    if t.status == TokenStatus::Revoked {
        return Err(StoreError::invalid(
            "status",
            "a token cannot be created revoked",
        ));
    }
    if let Some(h) = &t.holder {
        valid_text("holder", h, 256)?;
    }
    if let Some(d) = &t.description {
        valid_text("description", d, 1024)?;
    }
    Ok(())
}

fn actor_text(actor: &Actor) -> String {
    actor.name.clone()
}

/// Create `dir` (and missing parents) readable by its owner only (0700). An existing directory
/// keeps its mode: whoever made it chose it.
pub fn create_private_dir(dir: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::io("cannot create the data directory", dir, e))
}

impl Store {
    /// Open the store on `cfg.backend`: SQLite in `cfg.data_dir` (creating the directory and the
    /// database) or PostgreSQL. A new store with a file source also gets its master key file.
    /// Migrations are applied here.
    pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        let backend: Arc<dyn Backend> = match &cfg.backend {
            StoreBackend::Sqlite => {
                create_private_dir(&cfg.data_dir)?;
                Arc::new(Sqlite::open(&cfg.data_dir)?)
            }
            StoreBackend::Postgres(url) => {
                if matches!(cfg.master_key, MasterKeySource::File(_)) {
                    create_private_dir(&cfg.data_dir)?;
                }
                Arc::new(crate::pg::Postgres::open(url)?)
            }
        };
        Store::open_with_backend(cfg, backend)
    }

    /// Open the store on another [`Backend`] (e.g. a shared database), with the same sealing,
    /// caching, writer and audit as the embedded one. `cfg.data_dir` is then only where a file
    /// master key is looked for by default.
    pub fn open_with_backend(
        cfg: StoreConfig,
        backend: Arc<dyn Backend>,
    ) -> Result<Store, StoreError> {
        cfg.validate()?;
        let rows = backend.data_keys()?;
        let new_store = rows.is_empty();
        if new_store && backend.token_count()? > 0 {
            return Err(StoreError::Corrupt(
                "the store holds tokens but no data key".into(),
            ));
        }
        let master = MasterKey::load(&cfg.master_key, new_store)?;
        let writer = Writer::start(backend.write_session()?, cfg.durability)?;
        if new_store {
            let dk = seal::random_key()?;
            let wrapped = master.wrap(1, &dk)?;
            let sk = SealKey::new(1, &dk)?;
            let pepper = seal::random_key()?;
            let audit_key = seal::random_key()?;
            let sealed_pepper = sk.seal(&seal::secret_aad(PEPPER, 1), &pepper[..])?;
            let sealed_audit = sk.seal(&seal::secret_aad(AUDIT_KEY, 1), &audit_key[..])?;
            writer.run_blocking(move |tx| {
                // Another node sharing the database may have set it up meanwhile (its write
                // transaction ran first): then its keys stand, and this node's master key must
                // open them.
                if !tx.data_keys()?.is_empty() {
                    return Ok(());
                }
                tx.put_data_key(&DataKeyRow {
                    version: 1,
                    wrapped,
                    active: true,
                })?;
                tx.put_secret(PEPPER, 1, &sealed_pepper)?;
                tx.put_secret(AUDIT_KEY, 1, &sealed_audit)?;
                Ok(())
            })?;
        }
        let rows = backend.data_keys()?;
        let mut data = BTreeMap::new();
        let mut active = None;
        for r in &rows {
            let raw = master.unwrap(r.version, &r.wrapped)?;
            data.insert(r.version, SealKey::new(r.version, &raw)?);
            if r.active {
                active = Some(r.version);
            }
        }
        let active =
            active.ok_or_else(|| StoreError::Corrupt("no data key is marked active".into()))?;
        let ring = KeyRing {
            master,
            data,
            active,
        };
        let load = |name: &str| -> Result<Zeroizing<Vec<u8>>, StoreError> {
            let (v, blob) = backend.secret(name)?.ok_or_else(|| {
                StoreError::Corrupt(format!("the store secret {name} is missing"))
            })?;
            ring.open_secret(name, v, &blob)
        };
        let pepper = Pepper::new(&load(PEPPER)?).map_err(|_| StoreError::Unseal {
            what: "store secret",
            subject: PEPPER.into(),
        })?;
        let audit_key =
            OtpKey::new(Algorithm::Sha256, &load(AUDIT_KEY)?).map_err(|_| StoreError::Unseal {
                what: "store secret",
                subject: AUDIT_KEY.into(),
            })?;
        let anchor_key = load_anchor_key(&ring, backend.as_ref(), &writer)?;
        let cache = Cache::new(cfg.cache_capacity);
        Ok(Store {
            inner: Arc::new(Inner {
                cfg,
                writer,
                backend,
                keys: RwLock::new(ring),
                pepper,
                audit_key: Arc::new(audit_key),
                anchor_key,
                cache,
                conflicts: AtomicU64::new(0),
                staff_failures: AtomicU64::new(0),
                org_tree: RwLock::new(None),
                mailer: RwLock::new(None),
            }),
        })
    }

    pub(crate) fn keys(&self) -> RwLockReadGuard<'_, KeyRing> {
        // The ring is replaced whole under the write lock; a poisoned lock still holds a
        // consistent ring.
        self.inner.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn keys_mut(&self) -> RwLockWriteGuard<'_, KeyRing> {
        self.inner.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }

    pub(crate) fn seal_new(&self, t: &NewToken, now: u64) -> Result<TokenRow, StoreError> {
        check_new(t)?;
        // The key must load (length, algorithm) before anything is written.
        OtpKey::new(t.algorithm, &t.seed)
            .map_err(|e| StoreError::invalid("seed", e.to_string()))?;
        let (key_version, sealed_seed) = self.keys().seal_seed(&t.serial, &t.seed)?;
        Ok(TokenRow {
            serial: t.serial.clone(),
            kind: t.kind,
            otp: t.otp.clone(),
            algorithm: t.algorithm,
            digits: t.digits,
            key_version,
            sealed_seed,
            sealed_pin_hash: None,
            counter: t.counter,
            last_step: None,
            drift: t.drift,
            failures: 0,
            locked: false,
            locked_until: None,
            status: t.status,
            holder: t.holder.clone(),
            description: t.description.clone(),
            pin_verifier: None,
            created_at: now,
            updated_at: now,
            version: 1,
            // A key past the end of validity its seed file gives imports expired: it cannot log
            // in, and shows as expired until it is scrapped.
            custody: t
                .valid_until
                .filter(|end| *end <= now)
                .map(|_| okey_domain::KeyState::Expired),
            valid_until: t.valid_until,
            active_until: None,
            handover_unconfirmed: false,
            pin_scheme: 1,
        })
    }

    pub(crate) fn audit_entry(
        actor: &Actor,
        action: &str,
        subject: &str,
        serial: Option<&str>,
        result: &str,
        reason: &str,
        at: u64,
    ) -> AuditEntry {
        AuditEntry {
            actor: actor_text(actor),
            action: action.into(),
            subject: subject.into(),
            serial: serial.map(str::to_owned),
            result: result.into(),
            reason: reason.into(),
            at,
        }
    }

    /// Create one token. Bad input or a duplicate serial: an error, nothing written.
    pub fn create_token(&self, t: NewToken, actor: &Actor) -> Result<TokenInfo, StoreError> {
        self.import_rows(vec![t], actor, true)?
            .1
            .ok_or_else(|| StoreError::Corrupt("the created token vanished".into()))
    }

    /// Import tokens in one transaction: all or nothing. A duplicate serial (in the batch or in
    /// the store) refuses the whole batch, naming the serial.
    pub fn import_tokens(&self, batch: Vec<NewToken>, actor: &Actor) -> Result<usize, StoreError> {
        self.import_rows(batch, actor, false).map(|(n, _)| n)
    }

    fn import_rows(
        &self,
        batch: Vec<NewToken>,
        actor: &Actor,
        single: bool,
    ) -> Result<(usize, Option<TokenInfo>), StoreError> {
        let now = unix_now();
        let mut seen = HashSet::with_capacity(batch.len());
        for t in &batch {
            if !seen.insert(t.serial.as_str()) {
                return Err(StoreError::DuplicateSerial(t.serial.clone()));
            }
        }
        drop(seen);
        // A data-key rotation may retire the key a row was sealed under between sealing and
        // committing; the commit notices (the key is gone from the database) and we seal again.
        for _ in 0..3 {
            let mut rows = Vec::with_capacity(batch.len());
            for t in &batch {
                rows.push(self.seal_new(t, now).map_err(|e| match e {
                    StoreError::Invalid { field, why } if !single => StoreError::Invalid {
                        field,
                        why: format!("{why} (token {:?})", t.serial),
                    },
                    other => other,
                })?);
            }
            let n = rows.len();
            let first = rows.first().map(info_of);
            let entry = match (&first, single) {
                (Some(i), true) => Self::audit_entry(
                    actor,
                    "token.create",
                    &i.serial,
                    Some(&i.serial),
                    "ok",
                    "",
                    now,
                ),
                _ => Self::audit_entry(
                    actor,
                    "token.import",
                    &format!("{n} tokens"),
                    None,
                    "ok",
                    "",
                    now,
                ),
            };
            let key = self.inner.audit_key.clone();
            let res = self.inner.writer.run_blocking(move |tx| {
                let versions = tx.data_keys()?;
                for r in &rows {
                    if !versions.iter().any(|d| d.version == r.key_version) {
                        return Err(StoreError::Conflict);
                    }
                    tx.insert_token(r)?;
                }
                audit::append(tx, &key, entry)?;
                Ok(())
            });
            match res {
                Ok(()) => return Ok((n, first)),
                // Perhaps another node rotated the data key: follow it, then seal again.
                Err(StoreError::Conflict) => self.refresh_data_keys()?,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    /// USB bench: give a token that is still `Initialising` (a previous attempt failed or was
    /// aborted, so it never verified anything) a fresh seed and a fresh state, in place. Any
    /// other status is refused: a token that was ever active is never re-seeded this way.
    pub fn reinitialise(&self, t: NewToken, actor: &Actor) -> Result<TokenInfo, StoreError> {
        if t.status != TokenStatus::Initialising {
            return Err(StoreError::invalid(
                "status",
                "a re-initialised token starts as initialising",
            ));
        }
        let now = unix_now();
        for _ in 0..3 {
            let mut fresh = self.seal_new(&t, now)?;
            let entry = Self::audit_entry(
                actor,
                "token.reinitialise",
                &t.serial,
                Some(&t.serial),
                "ok",
                "",
                now,
            );
            let key = self.inner.audit_key.clone();
            let res = self.inner.writer.run_blocking(move |tx| {
                let current = tx
                    .token(&fresh.serial)?
                    .ok_or_else(|| StoreError::UnknownSerial(fresh.serial.clone()))?;
                if current.status != TokenStatus::Initialising {
                    return Err(StoreError::Precondition(format!(
                        "token {} is not being initialised; only such a token can be given a new seed",
                        fresh.serial
                    )));
                }
                if !tx.data_keys()?.iter().any(|d| d.version == fresh.key_version) {
                    return Err(StoreError::Conflict);
                }
                if (&current.otp, current.algorithm, current.digits)
                    != (&fresh.otp, fresh.algorithm, fresh.digits)
                {
                    return Err(StoreError::Precondition(format!(
                        "token {} was begun with other code parameters; use the same type, \
                         algorithm and digits",
                        fresh.serial
                    )));
                }
                fresh.created_at = current.created_at;
                if !tx.update_token(current.version, &fresh)? {
                    return Err(StoreError::Conflict);
                }
                tx.reseal_token(&fresh.serial, fresh.key_version, &fresh.sealed_seed, None)?;
                fresh.version = current.version + 1;
                audit::append(tx, &key, entry)?;
                Ok(fresh)
            });
            match res {
                Ok(row) => {
                    // The cached key is the old seed's: drop it.
                    self.inner.cache.remove(&row.serial);
                    return Ok(info_of(&row));
                }
                // Perhaps another node rotated the data key: follow it, then seal again.
                Err(StoreError::Conflict) => self.refresh_data_keys()?,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    /// One token's public information.
    pub fn token(&self, serial: &str) -> Result<TokenInfo, StoreError> {
        self.inner
            .backend
            .token(serial)?
            .map(|r| info_of(&r))
            .ok_or_else(|| StoreError::UnknownSerial(serial.to_owned()))
    }

    /// A page of tokens in serial order after `after_serial` (at most `limit`, capped at 10,000).
    pub fn list_tokens(
        &self,
        filter: &TokenFilter,
        after_serial: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TokenInfo>, StoreError> {
        Ok(self
            .inner
            .backend
            .list(filter, after_serial, limit.min(10_000))?
            .iter()
            .map(info_of)
            .collect())
    }

    /// Stock leaving this site: unassigned tokens with their seeds, unsealed, for an encrypted
    /// export. With `serials`, exactly those tokens (each must exist, be unassigned and not
    /// revoked); without, every unassigned active token. Nothing is changed here.
    pub fn stock_seeds(&self, serials: Option<&[String]>) -> Result<Vec<StockSeed>, StoreError> {
        let rows: Vec<TokenRow> = match serials {
            Some(list) => {
                let mut rows = Vec::with_capacity(list.len());
                for serial in list {
                    let row = self
                        .inner
                        .backend
                        .token(serial)?
                        .ok_or_else(|| StoreError::UnknownSerial(serial.clone()))?;
                    if row.holder.is_some() {
                        return Err(StoreError::Precondition(format!(
                            "token {serial} is assigned; only stock can be exported"
                        )));
                    }
                    if row.status == TokenStatus::Revoked {
                        return Err(StoreError::Precondition(format!(
                            "token {serial} is revoked and cannot be exported"
                        )));
                    }
                    rows.push(row);
                }
                rows
            }
            None => {
                let filter = TokenFilter {
                    status: Some(TokenStatus::Active),
                    ..TokenFilter::default()
                };
                let mut rows = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = self.inner.backend.list(&filter, after.as_deref(), 10_000)?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.serial.clone());
                    let full = page.len() == 10_000;
                    rows.extend(page.into_iter().filter(|r| r.holder.is_none()));
                    if !full {
                        break;
                    }
                }
                rows
            }
        };
        let keys = self.keys();
        rows.iter()
            .map(|row| {
                Ok(StockSeed {
                    token: info_of(row),
                    seed: keys.open_seed(row)?,
                })
            })
            .collect()
    }

    /// Number of tokens stored.
    pub fn token_count(&self) -> Result<u64, StoreError> {
        self.inner.backend.token_count()
    }

    /// Read-modify-write of one row in the writer, with an audit entry; refreshes the cache.
    pub(crate) fn modify<F>(
        &self,
        serial: &str,
        action: &'static str,
        reason: String,
        actor: &Actor,
        f: F,
    ) -> Result<TokenRow, StoreError>
    where
        F: FnOnce(&mut TokenRow, &Store) -> Result<(), StoreError> + Send + 'static,
    {
        self.modify_reading(serial, action, reason, actor, move |_, row, store| {
            f(row, store)
        })
    }

    /// [`Store::modify`] whose change may read other rows in the same transaction.
    fn modify_reading<F>(
        &self,
        serial: &str,
        action: &'static str,
        reason: String,
        actor: &Actor,
        f: F,
    ) -> Result<TokenRow, StoreError>
    where
        F: FnOnce(&mut dyn WriteTx, &mut TokenRow, &Store) -> Result<(), StoreError>
            + Send
            + 'static,
    {
        let now = unix_now();
        let serial_owned = serial.to_owned();
        let entry = Self::audit_entry(actor, action, serial, Some(serial), "ok", &reason, now);
        let store = self.clone();
        let row = self.inner.writer.run_blocking(move |tx| {
            let mut row = tx
                .token(&serial_owned)?
                .ok_or_else(|| StoreError::UnknownSerial(serial_owned.clone()))?;
            let expect = row.version;
            f(tx, &mut row, &store)?;
            row.updated_at = now;
            if !tx.update_token(expect, &row)? {
                return Err(StoreError::Conflict);
            }
            row.version = expect + 1;
            audit::append(tx, &store.inner.audit_key, entry)?;
            Ok(row)
        })?;
        if row.status == TokenStatus::Revoked {
            self.inner.cache.remove(serial);
        } else {
            self.inner.cache.update(serial, Hot::of(&row));
        }
        Ok(row)
    }

    /// Give the holder's PIN on key `from` to their key `to` (a renewal keeps the PIN), without
    /// anyone learning it: the holder-bound verifier (scheme 2) is copied as it is, and for a
    /// PIN-bound OCRA suite the sealed PIN hash is re-sealed under `to`'s name. Both keys must be
    /// the same person's; a token-bound verifier (set before scheme 2, or while the key had no
    /// holder) cannot be carried: its holder sets a new PIN. Nothing is written on refusal.
    pub fn carry_pin(&self, from: &str, to: &str, actor: &Actor) -> Result<(), StoreError> {
        if from == to {
            return Err(StoreError::invalid(
                "to",
                "the PIN is carried to another key",
            ));
        }
        let from_owned = from.to_owned();
        self.modify_reading(
            to,
            "token.pin",
            format!("carried from {from}"),
            actor,
            move |tx, row, store| {
                let source = tx
                    .token(&from_owned)?
                    .ok_or_else(|| StoreError::UnknownSerial(from_owned.clone()))?;
                carried_pin(store, &source, row)
            },
        )?;
        Ok(())
    }

    /// Give the token to `holder`, or take it back (`None`).
    pub fn assign(
        &self,
        serial: &str,
        holder: Option<&str>,
        actor: &Actor,
    ) -> Result<TokenInfo, StoreError> {
        if let Some(h) = holder {
            valid_text("holder", h, 256)?;
        }
        let holder = holder.map(str::to_owned);
        let reason = holder
            .as_ref()
            .map_or_else(|| "unassigned".to_owned(), |h| format!("holder {h}"));
        let row = self.modify(serial, "token.assign", reason, actor, move |row, _| {
            if row.status == TokenStatus::Revoked {
                return Err(StoreError::Precondition(format!(
                    "token {} is revoked",
                    row.serial
                )));
            }
            row.holder = holder;
            Ok(())
        })?;
        Ok(info_of(&row))
    }

    /// Change the status. `Revoked` is final.
    pub fn set_status(
        &self,
        serial: &str,
        status: TokenStatus,
        actor: &Actor,
    ) -> Result<TokenInfo, StoreError> {
        let row = self.modify(
            serial,
            "token.status",
            status.as_str().to_owned(),
            actor,
            move |row, _| {
                if row.status == TokenStatus::Revoked {
                    return Err(StoreError::Precondition(format!(
                        "token {} is revoked; revocation is final",
                        row.serial
                    )));
                }
                okey_domain::check_transition(row.status.domain(), status.domain()).map_err(
                    |_| {
                        StoreError::Precondition(format!(
                            "token {} is {} and cannot be made {} by hand{}",
                            row.serial,
                            row.status.as_str(),
                            status.as_str(),
                            match row.status {
                                TokenStatus::Initialising => {
                                    ": it becomes active when the bench reads its code back"
                                }
                                TokenStatus::Pending => {
                                    ": it becomes active with its first valid code, or is revoked"
                                }
                                _ => "",
                            }
                        ))
                    },
                )?;
                row.status = status;
                Ok(())
            },
        )?;
        Ok(info_of(&row))
    }

    /// Set (or with `None` remove) the token's server-side PIN. For PIN-bound OCRA suites the
    /// suite's hash of the PIN is sealed too.
    pub fn set_pin(
        &self,
        serial: &str,
        pin: Option<&Pin>,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let pin = pin.cloned();
        let reason = if pin.is_some() { "set" } else { "removed" };
        self.modify(
            serial,
            "token.pin",
            reason.into(),
            actor,
            move |row, store| {
                if row.status == TokenStatus::Revoked {
                    return Err(StoreError::Precondition(format!(
                        "token {} is revoked",
                        row.serial
                    )));
                }
                put_pin(row, store, pin.as_ref())
            },
        )?;
        Ok(())
    }

    /// Clear failures and any lock.
    pub fn unlock(&self, serial: &str, actor: &Actor) -> Result<TokenInfo, StoreError> {
        let row = self.modify(serial, "token.unlock", String::new(), actor, |row, _| {
            row.failures = 0;
            row.locked = false;
            row.locked_until = None;
            Ok(())
        })?;
        Ok(info_of(&row))
    }

    /// The OCRA suite of a challenge-response token; `None` for HOTP and TOTP tokens.
    pub fn ocra_suite(&self, serial: &str) -> Result<Option<OcraSuite>, StoreError> {
        let row = self
            .inner
            .backend
            .token(serial)?
            .ok_or_else(|| StoreError::UnknownSerial(serial.to_owned()))?;
        match &row.otp {
            OtpKind::Ocra { suite } => suite
                .parse()
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("token {serial} has a bad suite"))),
            _ => Ok(None),
        }
    }

    /// Append an entry to the audit chain (through the writer, durably).
    pub async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let key = self.inner.audit_key.clone();
        self.inner
            .writer
            .run(false, move |tx| audit::append(tx, &key, entry).map(|_| ()))
            .await
    }

    /// Walk the whole chain; the report names the first bad sequence number.
    pub fn audit_verify(&self) -> Result<AuditReport, StoreError> {
        self.audit_verify_anchored(None)
    }

    /// Walk the chain like [`Store::audit_verify`], and also check that it still holds the
    /// record `anchor` names (a head reported earlier and kept outside the database): a missing
    /// or different anchor record means the newest records were removed or rewritten.
    pub fn audit_verify_anchored(
        &self,
        anchor: Option<AuditAnchor>,
    ) -> Result<AuditReport, StoreError> {
        self.audit_verify_anchors(anchor.into_iter().collect())
    }

    /// Walk the chain and check that it holds every record the anchors name, unchanged (the
    /// heads of [`crate::anchor::read_anchors`], whose signatures the caller has checked). The
    /// report names the earliest sequence number where the chain and the anchors part: a broken
    /// link, an anchored record that differs (rewritten or replaced chain), or anchored records
    /// beyond the chain's end (a cut tail, an older database put back).
    pub fn audit_verify_anchors(
        &self,
        anchors: Vec<AuditAnchor>,
    ) -> Result<AuditReport, StoreError> {
        if anchors.iter().any(|a| a.seq == 0) {
            return Err(StoreError::invalid(
                "anchor",
                "an anchored sequence number starts at 1",
            ));
        }
        let mut check = ChainCheck::new(&self.inner.audit_key, anchors);
        self.inner
            .backend
            .audit_scan(1, &mut |rec| check.step(&rec))?;
        Ok(check.finish())
    }

    /// The public half of the key that signs anchors.
    pub fn anchor_public_key(&self) -> crate::anchor::AnchorPublicKey {
        crate::anchor::AnchorPublicKey::of(&self.inner.anchor_key)
    }

    /// Sign the chain's current head as seen by `node` at `at` (none before the first record).
    pub fn sign_anchor(
        &self,
        node: &str,
        at: u64,
    ) -> Result<Option<crate::anchor::SignedAnchor>, StoreError> {
        crate::anchor::check_node(node).map_err(|e| StoreError::invalid("node", e.to_string()))?;
        let Some(head) = self.audit_head()? else {
            return Ok(None);
        };
        crate::anchor::SignedAnchor::sign(&self.inner.anchor_key, head, at, node)
            .map(Some)
            .map_err(|e| StoreError::invalid("node", e.to_string()))
    }

    /// The newest audit record's sequence number and MAC (none before the first record).
    pub fn audit_head(&self) -> Result<Option<AuditAnchor>, StoreError> {
        Ok(self
            .inner
            .backend
            .audit_tail(1)?
            .first()
            .map(|r| AuditAnchor {
                seq: r.seq,
                mac: r.mac,
            }))
    }

    /// The newest `limit` records, newest first.
    pub fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.backend.audit_tail(limit)
    }

    /// Register a new API key by the SHA-256 hash of its secret. A name is never reused: one
    /// that any key (even a revoked one) has is refused, so a creation can neither replace
    /// another caller's key nor bring a revoked one back.
    pub fn add_api_key(
        &self,
        name: &str,
        key_hash: [u8; 32],
        roles: &[String],
        actor: &Actor,
    ) -> Result<(), StoreError> {
        self.add_api_key_bound(name, key_hash, roles, None, actor)
    }

    /// [`Store::add_api_key`], the key bound to a directory person (who must exist) in the same
    /// transaction.
    pub(crate) fn add_api_key_bound(
        &self,
        name: &str,
        key_hash: [u8; 32],
        roles: &[String],
        person: Option<okey_domain::org::PersonId>,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        valid_text("API key name", name, 128)?;
        for r in roles {
            if r.is_empty()
                || r.len() > 64
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return Err(StoreError::invalid(
                    "role",
                    "roles are 1 to 64 letters, digits, '_', '-' or '.'",
                ));
            }
        }
        let now = unix_now();
        let name_owned = name.to_owned();
        let roles = roles.to_vec();
        let detail = match &person {
            Some(p) => format!("{} for person {p}", roles.join(",")),
            None => roles.join(","),
        };
        let entry = Self::audit_entry(actor, "apikey.create", name, None, "ok", &detail, now);
        let key = self.inner.audit_key.clone();
        self.inner.writer.run_blocking(move |tx| {
            tx.add_api_key(&name_owned, &key_hash, &roles, now)?;
            if let Some(p) = &person {
                if !tx.directory().person_exists(p)? {
                    return Err(StoreError::invalid(
                        "person",
                        format!("no person {p} in the directory: import it first"),
                    ));
                }
                tx.directory().bind_caller(&name_owned, p)?;
            }
            audit::append(tx, &key, entry)?;
            Ok(())
        })
    }

    /// The principal whose key hashes to `key_hash` (disabled ones included: check the flag).
    pub fn api_key(&self, key_hash: &[u8; 32]) -> Result<Option<ApiPrincipal>, StoreError> {
        self.inner.backend.api_key(key_hash)
    }

    /// All API keys, by name.
    pub fn list_api_keys(&self) -> Result<Vec<ApiPrincipal>, StoreError> {
        Ok(self
            .inner
            .backend
            .api_keys()?
            .into_iter()
            .map(|(p, _)| p)
            .collect())
    }

    /// Disable an API key (it is kept, disabled, for the record).
    pub fn revoke_api_key(&self, name: &str, actor: &Actor) -> Result<(), StoreError> {
        let now = unix_now();
        let name_owned = name.to_owned();
        let entry = Self::audit_entry(actor, "apikey.revoke", name, None, "ok", "", now);
        let key = self.inner.audit_key.clone();
        self.inner.writer.run_blocking(move |tx| {
            if !tx.disable_api_key(&name_owned)? {
                return Err(StoreError::UnknownApiKey(name_owned));
            }
            audit::append(tx, &key, entry)?;
            Ok(())
        })
    }

    /// The database's own consistency check; `"ok"` when sound.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.inner.backend.integrity_check()
    }

    /// Load a token's key into the cache (warming it at start, or measuring its footprint).
    pub fn prefetch(&self, serial: &str) -> Result<(), StoreError> {
        let row = self
            .inner
            .backend
            .token(serial)?
            .ok_or_else(|| StoreError::UnknownSerial(serial.to_owned()))?;
        let key = self.unseal(&row)?;
        self.inner.cache.insert(serial, key, Hot::of(&row));
        Ok(())
    }

    /// Drop every cached key (they are zeroized).
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    pub(crate) fn unseal(&self, row: &TokenRow) -> Result<OtpKey, StoreError> {
        let seed = self.keys().open_seed(row)?;
        OtpKey::new(row.algorithm, &seed).map_err(|_| StoreError::Unseal {
            what: "seed",
            subject: row.serial.clone(),
        })
    }

    /// Counters for metrics.
    pub fn stats(&self) -> StoreStats {
        let w = &self.inner.writer.stats;
        StoreStats {
            cache_entries: self.inner.cache.len() as u64,
            cache_hits: self.inner.cache.hits.load(Ordering::Relaxed),
            cache_misses: self.inner.cache.misses.load(Ordering::Relaxed),
            commits: w.jobs.load(Ordering::Relaxed),
            batches: w.batches.load(Ordering::Relaxed),
            batch_sizes: histogram(&BUCKETS, &w.sizes),
            commit_times_us: histogram(&COMMIT_BUCKETS_US, &w.commit_times),
            commit_micros: w.commit_micros.load(Ordering::Relaxed),
            run_micros: w.run_micros.load(Ordering::Relaxed),
            linger_micros: w.linger_micros.load(Ordering::Relaxed),
            conflicts: self.inner.conflicts.load(Ordering::Relaxed),
            staff_failures: self.inner.staff_failures.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn write_blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn WriteTx) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.writer.run_blocking(f)
    }
}

/// `(upper bound, count)` pairs of a histogram whose last counter holds everything above the
/// last bound (reported with the bound `u64::MAX`).
fn histogram(bounds: &[u64], counts: &[AtomicU64]) -> Vec<(u64, u64)> {
    bounds
        .iter()
        .copied()
        .chain(std::iter::once(u64::MAX))
        .zip(counts)
        .map(|(b, c)| (b, c.load(Ordering::Relaxed)))
        .collect()
}

/// The anchor signing key: unsealed from the store, or made on the first open of a store that
/// has none yet (in one transaction that keeps a key another opener stored first).
fn load_anchor_key(
    ring: &KeyRing,
    backend: &dyn Backend,
    writer: &Writer,
) -> Result<ed25519_dalek::SigningKey, StoreError> {
    use crate::anchor::ANCHOR_KEY;
    let (version, blob) = match backend.secret(ANCHOR_KEY)? {
        Some(found) => found,
        None => {
            let fresh = seal::random_key()?;
            let active = ring.active()?;
            let v = active.version();
            let sealed = active.seal(&seal::secret_aad(ANCHOR_KEY, v), &fresh[..])?;
            writer.run_blocking(move |tx| {
                if let Some((_, v0, b0)) =
                    tx.secrets()?.into_iter().find(|(n, _, _)| n == ANCHOR_KEY)
                {
                    return Ok((v0, b0));
                }
                tx.put_secret(ANCHOR_KEY, v, &sealed)?;
                Ok((v, sealed))
            })?
        }
    };
    let plain = ring.open_secret(ANCHOR_KEY, version, &blob)?;
    let seed: &[u8; 32] = plain[..].try_into().map_err(|_| StoreError::Unseal {
        what: "store secret",
        subject: ANCHOR_KEY.into(),
    })?;
    Ok(ed25519_dalek::SigningKey::from_bytes(seed))
}

/// Put `pin` on `row` (or with `None` take its PIN away): a key with a holder gets the
/// holder-bound scheme, so the PIN can follow the person to their next key (`carry_pin`); for
/// PIN-bound OCRA suites the suite's hash of the PIN is sealed too.
pub(crate) fn put_pin(
    row: &mut TokenRow,
    store: &Store,
    pin: Option<&Pin>,
) -> Result<(), StoreError> {
    match pin {
        None => {
            row.pin_verifier = None;
            row.sealed_pin_hash = None;
            row.pin_scheme = 1;
        }
        Some(p) => {
            // A key with a holder gets the holder-bound scheme: the PIN can then
            // follow the person to their next key (`carry_pin`).
            let binding = pin_binding_for(&row.serial, row.holder.as_deref());
            row.pin_verifier = Some(store.inner.pepper.verifier(binding, p).0);
            row.pin_scheme = binding.scheme();
            row.sealed_pin_hash = None;
            if let OtpKind::Ocra { suite } = &row.otp
                && let Ok(s) = suite.parse::<OcraSuite>()
                && let Some(alg) = s.pin_hash()
            {
                let digest = Zeroizing::new(okey_otp::digest(alg, p.expose()));
                let keys = store.keys();
                let k = keys
                    .data
                    .get(&row.key_version)
                    .ok_or_else(|| StoreError::Corrupt("the token's data key is missing".into()))?;
                row.sealed_pin_hash = Some(k.seal(
                    &seal::pin_hash_aad(&row.serial, row.key_version),
                    digest.as_bytes(),
                )?);
            }
        }
    }
    Ok(())
}

/// What a PIN set on key `serial` held by `holder` is bound to: the holder when there is one.
pub(crate) fn pin_binding_for<'a>(serial: &'a str, holder: Option<&'a str>) -> PinBinding<'a> {
    match holder {
        Some(h) => PinBinding::Holder(h),
        None => PinBinding::Token(serial),
    }
}

/// `target` with `source`'s PIN, or why not.
pub(crate) fn carried_pin(
    store: &Store,
    source: &TokenRow,
    target: &mut TokenRow,
) -> Result<(), StoreError> {
    let refuse = |why: String| Err(StoreError::Precondition(why));
    let (Some(holder), Some(verifier)) = (source.holder.as_deref(), source.pin_verifier) else {
        return refuse(format!(
            "key {} has no PIN of a holder to carry",
            source.serial
        ));
    };
    if source.pin_scheme != 2 {
        return refuse(format!(
            "the PIN of key {} was set before PINs followed their holder: {holder} sets a new PIN",
            source.serial
        ));
    }
    if target.holder.as_deref() != Some(holder) {
        return refuse(format!(
            "key {} is not {holder}'s: a PIN only follows its holder",
            target.serial
        ));
    }
    if target.status == TokenStatus::Revoked {
        return refuse(format!("token {} is revoked", target.serial));
    }
    target.sealed_pin_hash = None;
    if let OtpKind::Ocra { suite } = &target.otp
        && let Ok(s) = suite.parse::<OcraSuite>()
        && let Some(alg) = s.pin_hash()
    {
        let same_hash = match &source.otp {
            OtpKind::Ocra { suite } => suite
                .parse::<OcraSuite>()
                .ok()
                .and_then(|s| s.pin_hash())
                .is_some_and(|a| a == alg),
            _ => false,
        };
        let (true, Some(blob)) = (same_hash, source.sealed_pin_hash.as_ref()) else {
            return refuse(format!(
                "key {}'s OCRA suite hashes the PIN itself, and key {} holds no such hash: \
                 {holder} sets the PIN",
                target.serial, source.serial
            ));
        };
        let keys = store.keys();
        let digest = keys.open_pin_hash(&source.serial, source.key_version, blob)?;
        let k = keys
            .data
            .get(&target.key_version)
            .ok_or_else(|| StoreError::Corrupt("the token's data key is missing".into()))?;
        target.sealed_pin_hash = Some(k.seal(
            &seal::pin_hash_aad(&target.serial, target.key_version),
            &digest,
        )?);
    }
    target.pin_verifier = Some(verifier);
    target.pin_scheme = 2;
    Ok(())
}
