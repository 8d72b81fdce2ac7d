//! Key rotation, online.
//!
//! * A new **master key** re-wraps every data key in one transaction. Nothing else changes, no
//!   seed is unsealed, and nothing in the clear is written anywhere.
//! * A new **data key** becomes active first (new seals use it), then every seed, OCRA PIN hash
//!   and store secret is re-sealed under it in batches, each batch its own short transaction
//!   through the writer, so verifies keep committing in between. Both keys stay in memory until
//!   the last batch, which also deletes the old wrapped keys; a verify that read a row sealed
//!   under a retired key reads the row again. A crash part-way leaves a store that opens (both
//!   keys are still wrapped in it); the next rotation finishes the job.

use okey_otp::OtpKey;

use crate::StoreError;
use crate::audit;
use crate::backend::{DataKeyRow, TokenRow, WriteTx};
use crate::clock::unix_now;
use crate::seal::{self, MasterKey, SealKey};
use crate::store::{KeyRing, Store};
use crate::types::{Actor, MasterKeySource, RotationReport};

/// Seeds re-sealed per transaction.
const RESEAL_BATCH: u32 = 2000;

fn operator() -> Actor {
    Actor::new("operator", "operator")
}

/// Re-seal one row's secrets under `to`.
fn reseal_row(
    tx: &mut dyn WriteTx,
    ring: &KeyRing,
    to: &SealKey,
    row: &TokenRow,
) -> Result<(), StoreError> {
    let seed = ring.open_seed(row)?;
    let sealed = to.seal(&seal::seed_aad(&row.serial, to.version()), &seed)?;
    let pin_hash = match &row.sealed_pin_hash {
        Some(blob) => {
            let plain = ring.open_pin_hash(&row.serial, row.key_version, blob)?;
            Some(to.seal(&seal::pin_hash_aad(&row.serial, to.version()), &plain)?)
        }
        None => None,
    };
    tx.reseal_token(&row.serial, to.version(), &sealed, pin_hash.as_deref())
}

impl Store {
    /// Re-wrap the data keys under a new master key, online. A file source that does not exist
    /// yet is created (32 random bytes, mode 0600) before anything is re-wrapped. Point the
    /// configuration at the new key before the next start.
    pub fn rotate_master_key(&self, new: MasterKeySource) -> Result<(), StoreError> {
        self.rotate_master_key_as(new, &operator())
    }

    /// [`Store::rotate_master_key`], audited as `actor` (an admin asking a running server).
    /// The running store uses the new master key as soon as the re-wrap is committed.
    pub fn rotate_master_key_as(
        &self,
        new: MasterKeySource,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let new_master = MasterKey::load(&new, true)?;
        let store = self.clone();
        let key = self.inner.audit_key.clone();
        let entry = Self::audit_entry(
            actor,
            "store.rotate-master-key",
            "master key",
            None,
            "ok",
            "",
            unix_now(),
        );
        let new_master = self.write_blocking(move |tx| {
            let rows = tx.data_keys()?;
            {
                let ring = store.keys();
                for r in rows {
                    let raw = ring.master.unwrap(r.version, &r.wrapped)?;
                    let wrapped = new_master.wrap(r.version, &raw)?;
                    // Written only once the new master key is seen to give the data key back.
                    if !bool::from(subtle::ConstantTimeEq::ct_eq(
                        &new_master.unwrap(r.version, &wrapped)?[..],
                        &raw[..],
                    )) {
                        return Err(StoreError::WrongMasterKey);
                    }
                    tx.put_data_key(&DataKeyRow {
                        version: r.version,
                        wrapped,
                        active: r.active,
                    })?;
                }
            }
            audit::append(tx, &key, entry)?;
            Ok(new_master)
        })?;
        self.keys_mut().master = new_master;
        Ok(())
    }

    /// Create the AES-256 master key in an HSM (sensitive, never extractable), before a
    /// rotation to it. Refused when a key with the label exists.
    pub fn generate_hsm_master_key(src: &crate::types::Pkcs11Source) -> Result<(), StoreError> {
        crate::hsm::HsmKey::generate(src)
    }

    /// Generate a new data key and re-seal every seed and secret under it in batches, while
    /// verifies keep working. Old data keys are deleted at the end.
    pub fn rotate_data_key(&self) -> Result<RotationReport, StoreError> {
        let raw = seal::random_key()?;
        let version = {
            let ring = self.keys();
            ring.data.keys().max().copied().unwrap_or(0) + 1
        };
        let wrapped = self.keys().master.wrap(version, &raw)?;
        // The new key is known before any row uses it, and active only once it is stored.
        self.keys_mut()
            .data
            .insert(version, SealKey::new(version, &raw)?);
        let to = SealKey::new(version, &raw)?;
        drop(raw);
        let store = self.clone();
        let to = std::sync::Arc::new(to);
        let to1 = to.clone();
        self.write_blocking(move |tx| {
            tx.put_data_key(&DataKeyRow {
                version,
                wrapped,
                active: true,
            })?;
            let ring = store.keys();
            for (name, v, blob) in tx.secrets()? {
                let plain = ring.open_secret(&name, v, &blob)?;
                let sealed = to1.seal(&seal::secret_aad(&name, version), &plain)?;
                tx.put_secret(&name, version, &sealed)?;
            }
            Ok(())
        })?;
        self.keys_mut().active = version;

        let mut resealed = 0u64;
        let mut batches = 1u64;
        loop {
            let store = self.clone();
            let to2 = to.clone();
            let n = self.write_blocking(move |tx| {
                let rows = tx.tokens_not_sealed_under(version, RESEAL_BATCH)?;
                let ring = store.keys();
                for row in &rows {
                    reseal_row(tx, &ring, &to2, row)?;
                }
                Ok(rows.len() as u64)
            })?;
            batches += 1;
            resealed += n;
            if n < u64::from(RESEAL_BATCH) {
                break;
            }
        }
        // Last transaction: anything sealed under an old key meanwhile, then retire old keys.
        let store = self.clone();
        let to3 = to.clone();
        let key: std::sync::Arc<OtpKey> = self.inner.audit_key.clone();
        let entry = Self::audit_entry(
            &operator(),
            "store.rotate-data-key",
            "data key",
            None,
            "ok",
            &format!("version {version}"),
            unix_now(),
        );
        let (late, retired) = self.write_blocking(move |tx| {
            let rows = tx.tokens_not_sealed_under(version, u32::MAX)?;
            let ring = store.keys();
            for row in &rows {
                reseal_row(tx, &ring, &to3, row)?;
            }
            crate::attachments::reseal_all(tx, &ring, &to3)?;
            let mut retired = Vec::new();
            for dk in tx.data_keys()? {
                if dk.version != version {
                    tx.delete_data_key(dk.version)?;
                    retired.push(dk.version);
                }
            }
            audit::append(tx, &key, entry)?;
            Ok((rows.len() as u64, retired))
        })?;
        batches += 1;
        resealed += late;
        {
            let mut ring = self.keys_mut();
            for v in retired {
                ring.data.remove(&v);
            }
        }
        Ok(RotationReport {
            new_version: version,
            resealed,
            batches,
        })
    }
}
