//! Seed intake for okey: vendor seed files in, encrypted stock files out, software tokens
//! provisioned by otpauth:// URI and QR code.
//!
//! # Why it is built this way
//!
//! * **Streaming, bounded memory.** A region's stock arrives as one PSKC file of a hundred
//!   thousand key packages. [`PskcReader`] is an iterator over a `quick-xml` event stream:
//!   it holds the container header and the one package being read, never a tree of the
//!   document, so memory does not grow with the file. The store imports the packages as
//!   they come, inside one transaction.
//! * **One item per package, the caller decides.** Each item is a [`KeyPackage`] or the
//!   reason it was refused ([`ImportError::Package`], naming the package by position, key id
//!   and serial). Whatever makes the whole file untrustworthy — bad XML, a wrong key, a MAC
//!   mismatch (by default), hostile constructs — is an [`ImportError::File`] that ends the
//!   iteration. All-or-nothing import stops at the first error of either kind
//!   ([`collect_all`], or [`check_all`] for a validating first pass that keeps no seed);
//!   `--partial` import keeps the good packages and reports the others ([`collect_partial`]).
//! * **Hostile XML is refused, not tamed.** A DOCTYPE is refused outright, so no entity is
//!   ever declared or expanded and no external reference is ever followed; references to
//!   anything but the five predefined entities are refused; depth, attributes per element,
//!   the length of any text or tag and the number of packages are capped ([`Limits`]). The
//!   length cap is enforced below the parser, so a 100 MB text node is refused after the
//!   limit has been read, not after it has been buffered.
//! * **Integrity before secrets.** PSKC encrypts with AES-CBC, which has no integrity of its
//!   own: a wrong key can yield a plausible wrong seed. An encrypted value is therefore only
//!   decrypted after its `ValueMAC` checks, and an encrypted value without a MAC is refused.
//! * **Seeds stay secret.** Seeds, keys and passwords live only in `Zeroizing` buffers, are
//!   redacted from `Debug`, never appear in error messages, and nothing is written to disk:
//!   export goes to the caller's writer, encrypted ([`PskcWriter`]).
//!
//! The OATH CSV format ([`OathCsvReader`]) follows the same item contract. Software tokens
//! get a [`KeyUri`] (built with [`KeyUriBuilder`]) that renders as a URI, a PNG QR code
//! and a terminal QR code.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod crypto;
mod csv;
pub mod directory;
mod error;
mod guard;
mod model;
mod otpauth;
pub mod pskc;
pub mod synthetic;

pub use crate::crypto::{Cipher, MacAlgorithm, Prf};
pub use crate::csv::{MAX_LINE, OathCsvReader};
pub use crate::error::{
    ExportError, FileError, ImportError, PackageError, PackageErrorKind, PackageRef, Position,
    UriError,
};
pub use crate::model::{
    Algorithm, Encoding, HashAlgorithm, Ignored, KeyPackage, PinPolicy, PinUsageMode,
    ResponseFormat, format_datetime,
};
pub use crate::otpauth::{KeyUri, KeyUriBuilder, OtpKind};
pub use crate::pskc::{
    ExportProtection, KeyMaterial, Limits, MacPolicy, Progress, PskcOptions, PskcReader,
    PskcWriter, export,
};

/// Why an all-or-nothing read refused the file: every package error seen, and the file
/// error that stopped the read, if any.
#[derive(Debug, Default)]
pub struct Refusal {
    /// The error that refused the whole file.
    pub file: Option<FileError>,
    /// Every package refused.
    pub packages: Vec<PackageError>,
    /// Packages that were valid (not imported, since the file is refused).
    pub valid: usize,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "file refused, nothing imported")?;
        if let Some(e) = &self.file {
            write!(f, ": {e}")?;
        }
        for e in self.packages.iter().take(20) {
            write!(f, "\n  {e}")?;
        }
        if self.packages.len() > 20 {
            write!(
                f,
                "\n  ... and {} more refused packages",
                self.packages.len() - 20
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    fn absorb(&mut self, e: ImportError) {
        match e {
            ImportError::Package(p) => self.packages.push(p),
            ImportError::File(f) => self.file = Some(f),
        }
    }
}

/// All-or-nothing: every package if the whole file is good, else every reason it is not.
/// Holds all seeds in memory; for a validating pass that keeps none, see [`check_all`].
///
/// # Errors
/// A [`Refusal`] listing the file error and each refused package.
pub fn collect_all<I>(items: I) -> Result<Vec<KeyPackage>, Refusal>
where
    I: IntoIterator<Item = Result<KeyPackage, ImportError>>,
{
    let mut ok = Vec::new();
    let mut refusal = Refusal::default();
    for item in items {
        match item {
            Ok(p) if refusal.packages.is_empty() => ok.push(p),
            Ok(_) => refusal.valid += 1,
            Err(e) => {
                if refusal.packages.is_empty() && refusal.file.is_none() {
                    refusal.valid = ok.len();
                    ok.clear();
                }
                refusal.absorb(e);
            }
        }
    }
    if refusal.file.is_none() && refusal.packages.is_empty() {
        Ok(ok)
    } else {
        Err(refusal)
    }
}

/// Validates a whole file without keeping any seed; returns the number of packages.
/// The store's all-or-nothing import can run this first, then import in a second pass.
///
/// # Errors
/// A [`Refusal`] listing the file error and each refused package.
pub fn check_all<I>(items: I) -> Result<usize, Refusal>
where
    I: IntoIterator<Item = Result<KeyPackage, ImportError>>,
{
    let mut refusal = Refusal::default();
    for item in items {
        match item {
            Ok(_) => refusal.valid += 1,
            Err(e) => refusal.absorb(e),
        }
    }
    if refusal.file.is_none() && refusal.packages.is_empty() {
        Ok(refusal.valid)
    } else {
        Err(refusal)
    }
}

/// Report of a partial (`--partial`) read.
#[derive(Debug, Default)]
pub struct PartialReport {
    /// Packages accepted.
    pub accepted: Vec<KeyPackage>,
    /// Packages refused, and why.
    pub refused: Vec<PackageError>,
    /// Set when the file itself was refused: then nothing may be imported, `accepted` is
    /// empty, and `refused` lists what was seen before the stop.
    pub file: Option<FileError>,
}

/// Partial import: the good packages and a report of the refused ones. A file-level error
/// still refuses everything (a file with a wrong key or a broken structure has no good
/// packages to speak of).
pub fn collect_partial<I>(items: I) -> PartialReport
where
    I: IntoIterator<Item = Result<KeyPackage, ImportError>>,
{
    let mut report = PartialReport::default();
    for item in items {
        match item {
            Ok(p) => report.accepted.push(p),
            Err(ImportError::Package(e)) => report.refused.push(e),
            Err(ImportError::File(e)) => {
                report.file = Some(e);
                report.accepted.clear();
            }
        }
    }
    report
}
