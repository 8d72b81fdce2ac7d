//! Sealing: the master key, the data keys it wraps, and the AEAD that seals seeds and secrets.
//!
//! Every sealed blob is `nonce (12) ‖ AES-256-GCM ciphertext ‖ tag (16)` with a random nonce.
//! The associated data names what the blob is, whose it is and under which key version it was
//! sealed, so a blob copied to another row, or presented as another kind of secret, fails to
//! open. Data keys are wrapped by the master key the same way, bound to their version.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::StoreError;
use crate::types::MasterKeySource;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Bytes added by sealing.
pub(crate) const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// What tells one sealed blob from another: its random nonce. Every seal draws a fresh one, so
/// a token given a new seed (or re-sealed by a rotation) has a new id.
pub(crate) type SealId = [u8; NONCE_LEN];

/// The id of a sealed blob (zeros for a blob too short to hold a nonce, which never opens).
pub(crate) fn seal_id(blob: &[u8]) -> SealId {
    blob.get(..NONCE_LEN)
        .and_then(|n| <SealId>::try_from(n).ok())
        .unwrap_or_default()
}

/// 32 fresh random bytes from the operating system.
pub(crate) fn random_key() -> Result<Zeroizing<[u8; 32]>, StoreError> {
    let mut k = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut k[..]).map_err(|e| StoreError::Corrupt(format!("no randomness: {e}")))?;
    Ok(k)
}

/// An AES-256-GCM key with its version. The cipher's key schedule is zeroized on drop.
pub(crate) struct SealKey {
    version: u32,
    cipher: Aes256Gcm,
}

impl SealKey {
    pub(crate) fn new(version: u32, key: &[u8; 32]) -> Result<Self, StoreError> {
        let cipher = Aes256Gcm::new_from_slice(key)
            .map_err(|_| StoreError::Corrupt("bad AEAD key length".into()))?;
        Ok(SealKey { version, cipher })
    }

    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    /// Seal `plaintext` with `aad`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut buf = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        buf.extend_from_slice(plaintext);
        self.cipher
            .encrypt_in_place(&Nonce::from(nonce), aad, &mut buf)
            .map_err(|_| StoreError::Corrupt("sealing failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Open a blob sealed with `aad`; `None` if it does not authenticate.
    pub(crate) fn open(&self, aad: &[u8], blob: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if blob.len() < SEAL_OVERHEAD {
            return None;
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let mut buf = Zeroizing::new(ct.to_vec());
        self.cipher
            .decrypt_in_place(&Nonce::from(nonce), aad, &mut *buf)
            .ok()?;
        Some(buf)
    }
}

/// Associated data: a domain label, the owner (length-prefixed) and the key version.
pub(crate) fn aad(label: &[u8], owner: &str, version: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(label.len() + 2 + owner.len() + 4);
    a.extend_from_slice(label);
    a.extend_from_slice(&(owner.len() as u16).to_be_bytes());
    a.extend_from_slice(owner.as_bytes());
    a.extend_from_slice(&version.to_be_bytes());
    a
}

/// AAD of a token's seed.
pub(crate) fn seed_aad(serial: &str, version: u32) -> Vec<u8> {
    aad(b"okey/seed/v1\0", serial, version)
}

/// AAD of a token's OCRA PIN hash.
pub(crate) fn pin_hash_aad(serial: &str, version: u32) -> Vec<u8> {
    aad(b"okey/ocra-pin-hash/v1\0", serial, version)
}

/// AAD of a named store secret (pepper, audit key).
pub(crate) fn secret_aad(name: &str, version: u32) -> Vec<u8> {
    aad(b"okey/secret/v1\0", name, version)
}

/// AAD of a wrapped data key.
pub(crate) fn data_key_aad(version: u32) -> Vec<u8> {
    aad(b"okey/data-key/v1\0", "", version)
}

/// The master key: wraps data keys, nothing else. Either its bytes are in memory (a key file,
/// a variable) or it stays inside an HSM and only its wrap and unwrap operations are here.
pub(crate) enum MasterKey {
    Local(Box<SealKey>),
    Hsm(crate::hsm::HsmKey),
}

impl MasterKey {
    pub(crate) fn from_bytes(key: &[u8; 32]) -> Result<Self, StoreError> {
        Ok(MasterKey::Local(Box::new(SealKey::new(0, key)?)))
    }

    /// Load the master key. A missing key file is created only when `may_create` (a new store).
    /// An HSM key is never created here: an unusable HSM is an error, never a fallback.
    pub(crate) fn load(src: &MasterKeySource, may_create: bool) -> Result<Self, StoreError> {
        let bytes = match src {
            MasterKeySource::Bytes(b) => b.clone(),
            MasterKeySource::Env(var) => {
                let text = Zeroizing::new(
                    std::env::var(var).map_err(|_| StoreError::BadKeyEnv(var.clone()))?,
                );
                let mut k = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(text.trim(), &mut k[..])
                    .map_err(|_| StoreError::BadKeyEnv(var.clone()))?;
                k
            }
            MasterKeySource::File(path) => load_key_file(path, may_create)?,
            MasterKeySource::Pkcs11(p) => return Ok(MasterKey::Hsm(crate::hsm::HsmKey::open(p)?)),
        };
        MasterKey::from_bytes(&bytes)
    }

    /// Whether the master key can still be used (an HSM that went away cannot).
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        match self {
            MasterKey::Local(_) => Ok(()),
            MasterKey::Hsm(h) => h.check(),
        }
    }

    pub(crate) fn wrap(&self, version: u32, data_key: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        match self {
            MasterKey::Local(k) => k.seal(&data_key_aad(version), data_key),
            MasterKey::Hsm(h) => h.wrap(&data_key_aad(version), data_key),
        }
    }

    pub(crate) fn unwrap(
        &self,
        version: u32,
        blob: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        let k = match self {
            MasterKey::Hsm(h) => return h.unwrap(&data_key_aad(version), blob),
            MasterKey::Local(k) => k,
        };
        let plain = k
            .open(&data_key_aad(version), blob)
            .ok_or(StoreError::WrongMasterKey)?;
        let mut out = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(StoreError::WrongMasterKey);
        }
        out.copy_from_slice(&plain);
        Ok(out)
    }
}

fn load_key_file(path: &Path, may_create: bool) -> Result<Zeroizing<[u8; 32]>, StoreError> {
    match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !may_create {
                return Err(StoreError::MissingMasterKey(path.to_path_buf()));
            }
            create_key_file(path)
        }
        Err(e) => Err(StoreError::io("cannot read", path, e)),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::LooseKeyPermissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            if meta.len() != 32 {
                return Err(StoreError::BadKeyFile {
                    path: path.to_path_buf(),
                    len: meta.len(),
                });
            }
            let mut k = Zeroizing::new([0u8; 32]);
            let mut f = fs::File::open(path).map_err(|e| StoreError::io("cannot open", path, e))?;
            f.read_exact(&mut k[..])
                .map_err(|e| StoreError::io("cannot read", path, e))?;
            Ok(k)
        }
    }
}

/// Create a new key file: 32 random bytes, mode 0600, fsync'd with its directory.
pub(crate) fn create_key_file(path: &Path) -> Result<Zeroizing<[u8; 32]>, StoreError> {
    let key = random_key()?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io("cannot create the master key file", path, e))?;
    f.write_all(&key[..])
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io("cannot write the master key file", path, e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(key)
}

/// fsync a directory so a newly created file's name is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("cannot sync directory", dir, e))
}
