//! The master key in a hardware security module, through PKCS#11 (the `cryptoki` crate).
//!
//! This is the only module that talks to a PKCS#11 library. It needs no `unsafe` of its own:
//! `cryptoki` holds the FFI. The master key is an AES-256 secret key object on the token,
//! generated there as sensitive and non-extractable; okey only asks the HSM to encrypt or
//! decrypt a 32-byte data key with **CKM_AES_GCM** (12-byte random IV, 128-bit tag, the data
//! key's version as associated data). AES-GCM is used rather than CKM_AES_KEY_WRAP_KWP because
//! it binds the version through the AAD and SoftHSM2 (like most HSMs) offers it for
//! C_Encrypt/C_Decrypt on any AES key; key wrap would need the data key to be an HSM object.
//! A wrapped data key is `IV (12) ‖ ciphertext (32) ‖ tag (16)`, the layout of a file-key wrap.
//!
//! A removed or failed HSM is noticed by the next seal or unseal (at most one probe per
//! [`PROBE_EVERY`]): from then on nothing is sealed or unsealed and the error says why; keys
//! already unsealed in the cache go on verifying.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::StoreError;
use crate::clock::monotonic_now;
use crate::types::{PinSource, Pkcs11Source, Pkcs11Token};

const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// How long a successful use of the HSM vouches for it before the next seal or unseal probes
/// it again.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// An open, logged-in session on the token that holds the master key.
pub(crate) struct HsmKey {
    session: Mutex<Session>,
    key: ObjectHandle,
    what: String,
    /// When the HSM last answered; `None` once it failed (it is probed again at each use).
    alive_at: Mutex<Option<Instant>>,
    // Keeps the library initialised for as long as the session lives.
    _ctx: Pkcs11,
}

fn p11(what: &str, e: P11Error) -> StoreError {
    StoreError::Hsm(format!("{what}: {e}"))
}

/// Read the user PIN from its file (owner-only) or variable.
fn read_pin(src: &PinSource) -> Result<AuthPin, StoreError> {
    let text = match src {
        PinSource::Env(var) => Zeroizing::new(std::env::var(var).map_err(|_| {
            StoreError::HsmPinSource(format!("the environment variable {var} is not set"))
        })?),
        PinSource::File(path) => {
            let meta = std::fs::metadata(path).map_err(|e| {
                StoreError::HsmPinSource(format!("cannot read {}: {e}", path.display()))
            })?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::HsmPinSource(format!(
                    "the PIN file {} has mode {mode:04o}; it must be readable by its owner only (chmod 600)",
                    path.display()
                )));
            }
            let mut s = Zeroizing::new(String::new());
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_string(&mut s))
                .map_err(|e| {
                    StoreError::HsmPinSource(format!("cannot read {}: {e}", path.display()))
                })?;
            s
        }
    };
    let pin = text.trim_end_matches(['\n', '\r']);
    if pin.is_empty() {
        return Err(StoreError::HsmPinSource("the PIN is empty".into()));
    }
    Ok(AuthPin::new(pin.to_owned()))
}

fn find_slot(ctx: &Pkcs11, src: &Pkcs11Source) -> Result<Slot, StoreError> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| p11("cannot list the HSM's slots", e))?;
    for slot in slots {
        let found = match &src.token {
            Pkcs11Token::Slot(id) => slot.id() == *id,
            Pkcs11Token::Label(label) => ctx
                .get_token_info(slot)
                .map(|t| t.label().trim_end() == label.as_str())
                .unwrap_or(false),
        };
        if found {
            return Ok(slot);
        }
    }
    Err(StoreError::Hsm(match &src.token {
        Pkcs11Token::Slot(id) => format!("no initialised token in slot {id}"),
        Pkcs11Token::Label(l) => format!("no token labelled {l:?}"),
    }))
}

fn key_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// Load the module, find the token, open a session and log in.
fn login(src: &Pkcs11Source) -> Result<(Pkcs11, Session), StoreError> {
    src.validate()?;
    let pin = read_pin(&src.pin)?;
    let ctx = Pkcs11::new(&src.module).map_err(|e| {
        StoreError::Hsm(format!(
            "cannot load the PKCS#11 module {}: {e}",
            src.module.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(p11("cannot initialise the PKCS#11 module", e)),
    }
    let slot = find_slot(&ctx, src)?;
    let mechanisms = ctx
        .get_mechanism_list(slot)
        .map_err(|e| p11("cannot list the token's mechanisms", e))?;
    if !mechanisms.contains(&MechanismType::AES_GCM) {
        return Err(StoreError::Hsm(
            "the token does not offer AES-GCM (CKM_AES_GCM), which okey wraps data keys with"
                .into(),
        ));
    }
    let session = ctx
        .open_rw_session(slot)
        .map_err(|e| p11("cannot open a session on the token", e))?;
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(P11Error::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            return Err(StoreError::HsmPin(src.to_string()));
        }
        Err(P11Error::Pkcs11(RvError::PinLocked, _)) => {
            return Err(StoreError::Hsm(
                "the token's user PIN is locked (too many wrong PINs)".into(),
            ));
        }
        Err(e) => return Err(p11("cannot log in to the token", e)),
    }
    Ok((ctx, session))
}

impl HsmKey {
    /// Log in and find the master key. Every failure is an error: okey never falls back.
    pub(crate) fn open(src: &Pkcs11Source) -> Result<Self, StoreError> {
        let (ctx, session) = login(src)?;
        let found = session
            .find_objects(&key_template(&src.key_label))
            .map_err(|e| p11("cannot search the token", e))?;
        let key = match found.as_slice() {
            [k] => *k,
            [] => return Err(StoreError::HsmKeyMissing(src.to_string())),
            _ => {
                return Err(StoreError::Hsm(format!(
                    "{} AES keys on the token are labelled {:?}; label the master key uniquely",
                    found.len(),
                    src.key_label
                )));
            }
        };
        let hsm = HsmKey {
            session: Mutex::new(session),
            key,
            what: src.to_string(),
            alive_at: Mutex::new(None),
            _ctx: ctx,
        };
        hsm.probe()?;
        Ok(hsm)
    }

    /// Generate a new master key on the token: AES-256, sensitive, never extractable. Refused
    /// when a key with this label exists already.
    pub(crate) fn generate(src: &Pkcs11Source) -> Result<(), StoreError> {
        let (_ctx, session) = login(src)?;
        let found = session
            .find_objects(&key_template(&src.key_label))
            .map_err(|e| p11("cannot search the token", e))?;
        if !found.is_empty() {
            return Err(StoreError::Hsm(format!(
                "a key labelled {:?} is on the token already; okey does not replace it",
                src.key_label
            )));
        }
        let mut template = key_template(&src.key_label);
        template.extend([
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
        ]);
        session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| p11("cannot generate the key", e))?;
        Ok(())
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        // A poisoned lock still holds a usable session handle.
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gcm(
        &self,
        encrypt: bool,
        iv: &mut [u8; IV_LEN],
        aad: &[u8],
        input: &[u8],
    ) -> Result<Vec<u8>, P11Error> {
        let params = GcmParams::new(&mut iv[..], aad, TAG_BITS.into())?;
        let mechanism = Mechanism::AesGcm(params);
        let session = self.session();
        if encrypt {
            session.encrypt(&mechanism, self.key, input)
        } else {
            session.decrypt(&mechanism, self.key, input)
        }
    }

    fn record(&self, ok: bool) {
        let mut at = self.alive_at.lock().unwrap_or_else(|p| p.into_inner());
        *at = ok.then(monotonic_now);
    }

    /// A real operation with the key: encrypt a block. Any failure marks the HSM gone.
    fn probe(&self) -> Result<(), StoreError> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv).map_err(|e| StoreError::Corrupt(format!("no randomness: {e}")))?;
        match self.gcm(true, &mut iv, b"okey/hsm-probe/v1", &[0u8; 16]) {
            Ok(_) => {
                self.record(true);
                Ok(())
            }
            Err(e) => {
                self.record(false);
                tracing::error!(hsm = %self.what, error = %e, "the HSM holding the master key does not answer");
                Err(StoreError::HsmGone(e.to_string()))
            }
        }
    }

    /// Whether the HSM is still there: answered within [`PROBE_EVERY`], or answers a probe now.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let fresh = {
            let at = self.alive_at.lock().unwrap_or_else(|p| p.into_inner());
            at.is_some_and(|t| monotonic_now().saturating_duration_since(t) < PROBE_EVERY)
        };
        if fresh { Ok(()) } else { self.probe() }
    }

    /// Encrypt a data key under the master key, with `aad`.
    pub(crate) fn wrap(&self, aad: &[u8], data_key: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv).map_err(|e| StoreError::Corrupt(format!("no randomness: {e}")))?;
        let iv_sent = iv;
        let ct = self.gcm(true, &mut iv, aad, data_key).map_err(|e| {
            self.record(false);
            StoreError::HsmGone(format!("wrapping a data key: {e}"))
        })?;
        self.record(true);
        let mut out = Vec::with_capacity(IV_LEN + ct.len());
        out.extend_from_slice(&iv_sent);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypt a wrapped data key; `WrongMasterKey` when it does not authenticate.
    pub(crate) fn unwrap(
        &self,
        aad: &[u8],
        blob: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        let (iv, ct) = blob
            .split_first_chunk::<IV_LEN>()
            .ok_or(StoreError::WrongMasterKey)?;
        let mut iv = *iv;
        let plain = match self.gcm(false, &mut iv, aad, ct) {
            Ok(p) => Zeroizing::new(p),
            Err(P11Error::Pkcs11(
                RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                _,
            )) => {
                self.record(true);
                return Err(StoreError::WrongMasterKey);
            }
            Err(e) => {
                self.record(false);
                return Err(StoreError::HsmGone(format!("unwrapping a data key: {e}")));
            }
        };
        self.record(true);
        let mut k = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(StoreError::WrongMasterKey);
        }
        k.copy_from_slice(&plain);
        Ok(k)
    }
}
