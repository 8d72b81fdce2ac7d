//! PSKC (RFC 6030) key containers: a streaming reader and an encrypted writer.

mod reader;
mod writer;

use std::fmt;

use zeroize::Zeroizing;

pub use reader::{Progress, PskcReader};
pub use writer::{ExportProtection, PskcWriter, export};

/// The PSKC XML namespace.
pub const PSKC_NS: &str = "urn:ietf:params:xml:ns:keyprov:pskc";

/// What the caller holds to open an encrypted container.
#[derive(Clone, Default)]
pub enum KeyMaterial {
    /// Nothing: only plain containers can be read.
    #[default]
    None,
    /// The pre-shared transport key (`EncryptionKey/ds:KeyName`), raw bytes.
    PreSharedKey(Zeroizing<Vec<u8>>),
    /// The password of a PBKDF2-derived key (`EncryptionKey/xenc11:DerivedKey`).
    Password(Zeroizing<String>),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::PreSharedKey(_) => f.write_str("PreSharedKey(<redacted>)"),
            Self::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

impl KeyMaterial {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::None => "no key",
            Self::PreSharedKey(_) => "a pre-shared key",
            Self::Password(_) => "a password",
        }
    }
}

/// What a `ValueMAC` mismatch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MacPolicy {
    /// Refuse the whole file (default): an altered file is not trusted anywhere.
    #[default]
    RefuseFile,
    /// Refuse only the package whose MAC does not match.
    RefusePackage,
}

/// Bounds on what the reader accepts; the defaults fit any real vendor file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum element nesting depth (PSKC itself needs 8).
    pub max_depth: usize,
    /// Maximum attributes on one element.
    pub max_attributes: usize,
    /// Maximum length in bytes of one text node, tag (attribute values included), comment,
    /// CDATA section or processing instruction.
    pub max_text_len: usize,
    /// Maximum number of key packages in a file.
    pub max_packages: usize,
    /// Maximum PBKDF2 iteration count (a huge count is a denial of service).
    pub max_pbkdf2_iterations: u32,
    /// Minimum seed length in bytes (RFC 4226 section 4: at least 128 bits).
    pub min_secret_len: usize,
    /// Maximum seed length in bytes.
    pub max_secret_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_attributes: 32,
            max_text_len: 64 * 1024,
            max_packages: 1_000_000,
            max_pbkdf2_iterations: 10_000_000,
            min_secret_len: 16,
            max_secret_len: 128,
        }
    }
}

/// Options of [`PskcReader`].
#[derive(Debug, Clone, Default)]
pub struct PskcOptions {
    /// Key or password of an encrypted container.
    pub key: KeyMaterial,
    /// Bounds on the input.
    pub limits: Limits,
    /// What a MAC mismatch refuses.
    pub mac_policy: MacPolicy,
}

impl PskcOptions {
    /// Options for a plain container.
    #[must_use]
    pub fn plain() -> Self {
        Self::default()
    }

    /// Options for a container under a pre-shared key.
    #[must_use]
    pub fn with_key(key: Zeroizing<Vec<u8>>) -> Self {
        Self {
            key: KeyMaterial::PreSharedKey(key),
            ..Self::default()
        }
    }

    /// Options for a container under a password.
    #[must_use]
    pub fn with_password(password: Zeroizing<String>) -> Self {
        Self {
            key: KeyMaterial::Password(password),
            ..Self::default()
        }
    }
}
