//! Errors of intake: per package (one token refused) and per file (everything refused).
//!
//! No error text ever contains a seed, a key, a password or a decrypted value; values of
//! public fields (a counter that is not a number, an unknown algorithm URI) are quoted,
//! cut to a short length.

use std::fmt;

/// Where a package sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// N-th key package of a PSKC container (1-based).
    Package(usize),
    /// Line of a CSV file (1-based).
    Line(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Package(n) => write!(f, "key package #{n}"),
            Self::Line(n) => write!(f, "line {n}"),
        }
    }
}

/// The public name of a package: position, key id and serial as far as they were read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackageRef {
    /// Position in the file.
    pub position: Position,
    /// PSKC key id, if read.
    pub key_id: Option<String>,
    /// Device serial, if read.
    pub serial: Option<String>,
}

impl fmt::Display for PackageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.position)?;
        match (&self.serial, &self.key_id) {
            (Some(s), Some(k)) => write!(f, " (serial {s:?}, key id {k:?})"),
            (Some(s), None) => write!(f, " (serial {s:?})"),
            (None, Some(k)) => write!(f, " (key id {k:?})"),
            (None, None) => Ok(()),
        }
    }
}

/// Why one package was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackageErrorKind {
    /// The key has no secret (or only a key reference, which okey cannot use).
    #[error("no secret in the key package")]
    MissingSecret,
    /// The key has no `Algorithm`.
    #[error("the key has no algorithm")]
    MissingAlgorithm,
    /// An algorithm okey does not support.
    #[error("unsupported algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// A KeyPackage with more than one Key.
    #[error("more than one Key in one KeyPackage")]
    MultipleKeys,
    /// A KeyPackage without Key.
    #[error("the key package has no Key")]
    NoKey,
    /// Base64 that does not decode (truncated, bad characters, bad padding).
    #[error("{field} is not valid base64")]
    InvalidBase64 {
        /// The element holding it.
        field: &'static str,
    },
    /// Hex that does not decode (CSV seeds).
    #[error("{field} is not valid hexadecimal")]
    InvalidHex {
        /// The column holding it.
        field: &'static str,
    },
    /// A public field with a value that cannot be used.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Element, attribute or column name.
        field: &'static str,
        /// What is wrong, quoting the (public) value.
        reason: String,
    },
    /// A seed too short or too long.
    #[error("secret is {len} bytes; accepted are {min} to {max}")]
    SecretLength {
        /// Length found.
        len: usize,
        /// Minimum accepted.
        min: usize,
        /// Maximum accepted.
        max: usize,
    },
    /// An encrypted value without `ValueMAC`: CBC has no integrity of its own, so a wrong
    /// key could yield a wrong seed that nobody notices.
    #[error("encrypted {field} has no ValueMAC")]
    MissingMac {
        /// The element.
        field: &'static str,
    },
    /// The `ValueMAC` does not match the encrypted value.
    #[error("MAC of {field} does not match: wrong key or altered file")]
    MacMismatch {
        /// The element.
        field: &'static str,
    },
    /// An encrypted value that does not decrypt (bad length or padding).
    #[error("{field} does not decrypt: wrong key or corrupted value")]
    Decrypt {
        /// The element.
        field: &'static str,
    },
    /// An encryption algorithm okey does not support for values.
    #[error("unsupported encryption algorithm {0:?}")]
    UnsupportedEncryption(String),
    /// The value is encrypted with a cipher whose key size differs from the container key.
    #[error("{field} uses {algorithm} but the container key is {key_len} bytes")]
    KeySizeMismatch {
        /// The element.
        field: &'static str,
        /// Cipher named by the value.
        algorithm: &'static str,
        /// Length of the key in hand.
        key_len: usize,
    },
    /// Same serial as an earlier package of the same file.
    #[error("serial {serial:?} is also used by {first}")]
    DuplicateSerial {
        /// The serial.
        serial: String,
        /// The earlier package.
        first: Box<PackageRef>,
    },
    /// A CSV line with the wrong number of fields.
    #[error("{found} fields; expected 5 (serial, seed, type, digits, step)")]
    FieldCount {
        /// Fields found.
        found: usize,
    },
    /// A CSV line without serial.
    #[error("no serial")]
    MissingSerial,
}

/// One package refused, and which one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{package}: {kind}")]
pub struct PackageError {
    /// The package.
    pub package: PackageRef,
    /// Why.
    pub kind: PackageErrorKind,
}

/// Something that refuses the whole file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Reading the input failed.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    /// Not well-formed XML.
    #[error("malformed XML near byte {position}: {message}")]
    Xml {
        /// Byte offset where the reader stopped.
        position: u64,
        /// Parser message.
        message: String,
    },
    /// A DOCTYPE: the only place entities and external references can be declared, so it
    /// is refused outright (no entity is ever expanded).
    #[error("refused: a DOCTYPE declaration (entities and external references are not accepted)")]
    DocType,
    /// A reference to an entity that is not one of the five XML predefined ones.
    #[error("refused: reference to undeclared entity &{0};")]
    UndeclaredEntity(String),
    /// Elements nested deeper than the limit.
    #[error("refused: elements nested deeper than {0}")]
    TooDeep(usize),
    /// An element with more attributes than the limit.
    #[error("refused: an element with more than {0} attributes")]
    TooManyAttributes(usize),
    /// A text value or markup run longer than the limit.
    #[error("refused: a text value or tag longer than {0} bytes")]
    TooLong(usize),
    /// More key packages than the limit.
    #[error("refused: more than {0} key packages")]
    TooManyPackages(usize),
    /// A document encoding other than UTF-8.
    #[error("refused: document encoding {0:?} (only UTF-8 is accepted)")]
    Encoding(String),
    /// The document is not a PSKC key container.
    #[error("not a PSKC key container: {0}")]
    NotPskc(String),
    /// PSKC version other than 1.0.
    #[error("unsupported PSKC version {0:?}")]
    Version(String),
    /// The container is encrypted and no key or password was given.
    #[error("the container is encrypted: give the pre-shared key or the password")]
    KeyRequired,
    /// The container wants another kind of key than the one given.
    #[error("the container is protected by {expected}, but {given} was given")]
    WrongKeyKind {
        /// What the container declares.
        expected: &'static str,
        /// What the caller gave.
        given: &'static str,
    },
    /// The pre-shared key given has the wrong size for the container's cipher.
    #[error("the key given is {len} bytes; the container's {cipher} needs {needed}")]
    KeySize {
        /// Given length.
        len: usize,
        /// Cipher of the container.
        cipher: &'static str,
        /// Needed length.
        needed: usize,
    },
    /// The MAC key does not decrypt under the key given.
    #[error("wrong key or password: the container's MAC key does not decrypt")]
    WrongKey,
    /// A container feature okey does not support (asymmetric keys, key wrap, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Bad key derivation parameters.
    #[error("key derivation: {0}")]
    KeyDerivation(String),
    /// Bad MAC parameters.
    #[error("MAC method: {0}")]
    MacMethod(String),
    /// A package whose MAC does not match: by default this refuses the file, since a
    /// file that was altered cannot be trusted in its other packages either.
    #[error("{0}; the whole file is refused")]
    Integrity(Box<PackageError>),
    /// The CSV file is not what it should be (binary, a line too long).
    #[error("CSV {0}")]
    Csv(String),
}

/// An item of the import iterators: either one package is refused, or the whole file.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// This package is refused; the following ones are still read.
    #[error(transparent)]
    Package(PackageError),
    /// The file is refused; the iterator ends after this.
    #[error(transparent)]
    File(FileError),
}

impl From<PackageError> for ImportError {
    fn from(e: PackageError) -> Self {
        Self::Package(e)
    }
}

impl From<FileError> for ImportError {
    fn from(e: FileError) -> Self {
        Self::File(e)
    }
}

/// Quotes a public value for an error message, cut to 64 characters.
pub(crate) fn quote(value: &str) -> String {
    let mut s: String = value.trim().chars().take(64).collect();
    if value.trim().chars().count() > 64 {
        s.push('…');
    }
    format!("{s:?}")
}

/// Errors of encrypted PSKC export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Writing failed.
    #[error("write error: {0}")]
    Io(#[from] std::io::Error),
    /// A pre-shared key of the wrong size for the cipher.
    #[error("the pre-shared key is {len} bytes; {cipher} needs {needed}")]
    KeySize {
        /// Given length.
        len: usize,
        /// Cipher.
        cipher: &'static str,
        /// Needed length.
        needed: usize,
    },
    /// Empty password or too few PBKDF2 iterations.
    #[error("weak password protection: {0}")]
    WeakPassword(String),
    /// A record that cannot be exported.
    #[error("record #{position}: {reason}")]
    Record {
        /// Position of the record in the input iterator (1-based).
        position: usize,
        /// Why.
        reason: String,
    },
}

/// Errors building or reading an otpauth:// URI or its QR code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// Empty account name.
    #[error("the account name is empty")]
    EmptyAccount,
    /// A colon in the issuer or the account (it separates them in the label).
    #[error("{0} must not contain ':'")]
    Colon(&'static str),
    /// A control character (C0, DEL or C1) in the issuer or the account.
    #[error("{0} must not contain control characters")]
    ControlCharacter(&'static str),
    /// Seed too short or too long.
    #[error("secret is {0} bytes; accepted are 10 to 64")]
    SecretLength(usize),
    /// Unsupported number of digits.
    #[error("digits must be 6, 7 or 8, not {0}")]
    Digits(u8),
    /// Period zero.
    #[error("the period must be at least 1 second")]
    Period,
    /// Not an otpauth URI or a malformed one.
    #[error("malformed otpauth URI: {0}")]
    Malformed(String),
    /// QR encoding failed (data too long).
    #[error("QR encoding failed: {0}")]
    Qr(String),
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
}
