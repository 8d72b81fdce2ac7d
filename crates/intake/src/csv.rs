//! The OATH CSV seed file: `serial, seed, type, digits, step`, one token a line.
//!
//! The seed is hexadecimal, the type `hotp` or `totp`; `#` starts a comment line, blank
//! lines are skipped and a first line naming the columns (`serial,seed,...`) is a header.
//! Lines are read with a length cap and each line buffer is zeroized after use, since it
//! held a seed in hex.

use std::collections::HashMap;
use std::io::{BufRead, Read};

use zeroize::{Zeroize, Zeroizing};

use crate::error::{
    FileError, ImportError, PackageError, PackageErrorKind, PackageRef, Position, quote,
};
use crate::model::{Algorithm, Encoding, KeyPackage, ResponseFormat};
use crate::pskc::Limits;

/// Longest accepted line, in bytes.
pub const MAX_LINE: usize = 4096;

/// Streaming reader of an OATH CSV file; same item contract as [`crate::PskcReader`].
pub struct OathCsvReader<R: BufRead> {
    input: R,
    line_no: usize,
    line: Zeroizing<Vec<u8>>,
    limits: Limits,
    seen_data: bool,
    serials: HashMap<Box<str>, usize>,
    finished: bool,
}

impl<R: BufRead> std::fmt::Debug for OathCsvReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OathCsvReader")
            .field("line", &self.line_no)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> OathCsvReader<R> {
    /// A reader over `input` with the default limits (seed length bounds, package count).
    pub fn new(input: R) -> Self {
        Self::with_limits(input, Limits::default())
    }

    /// A reader with explicit limits.
    pub fn with_limits(input: R, limits: Limits) -> Self {
        Self {
            input,
            line_no: 0,
            line: Zeroizing::new(Vec::with_capacity(256)),
            limits,
            seen_data: false,
            serials: HashMap::new(),
            finished: false,
        }
    }

    /// Reads one line into `self.line`; `Ok(false)` at end of input.
    fn read_line(&mut self) -> Result<bool, FileError> {
        self.line.zeroize();
        let n = (&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Ok(false);
        }
        if self.line.len() > MAX_LINE {
            return Err(FileError::Csv(format!(
                "line {} is longer than {MAX_LINE} bytes",
                self.line_no + 1
            )));
        }
        self.line_no += 1;
        Ok(true)
    }

    fn parse_line(&mut self) -> Option<Result<KeyPackage, ImportError>> {
        let line_no = self.line_no;
        let Ok(text) = std::str::from_utf8(&self.line) else {
            return Some(Err(
                FileError::Csv(format!("line {line_no} is not UTF-8")).into()
            ));
        };
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() || text.starts_with('#') {
            return None;
        }
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        let first = !self.seen_data;
        self.seen_data = true;
        if first
            && fields
                .first()
                .is_some_and(|f| f.eq_ignore_ascii_case("serial"))
        {
            return None;
        }
        let serial = fields
            .first()
            .filter(|s| !s.is_empty())
            .map(|s| (*s).to_owned());
        let package = PackageRef {
            position: Position::Line(line_no),
            key_id: None,
            serial: serial.clone(),
        };
        let fail = |kind| {
            Some(Err(ImportError::Package(PackageError {
                package: package.clone(),
                kind,
            })))
        };
        let [_, seed, kind, digits, step] = fields.as_slice() else {
            return fail(PackageErrorKind::FieldCount {
                found: fields.len(),
            });
        };
        let Some(serial) = serial else {
            return fail(PackageErrorKind::MissingSerial);
        };
        if let Some(first) = self.serials.get(serial.as_str()) {
            let first = PackageRef {
                position: Position::Line(*first),
                key_id: None,
                serial: Some(serial.clone()),
            };
            return fail(PackageErrorKind::DuplicateSerial {
                serial,
                first: Box::new(first),
            });
        }
        self.serials.insert(serial.as_str().into(), line_no);
        if seed.len() % 2 != 0 || !seed.bytes().all(|b| b.is_ascii_hexdigit()) {
            return fail(PackageErrorKind::InvalidHex { field: "seed" });
        }
        let mut secret = Zeroizing::new(vec![0u8; seed.len() / 2]);
        if hex::decode_to_slice(seed, &mut secret).is_err() {
            return fail(PackageErrorKind::InvalidHex { field: "seed" });
        }
        let (min, max) = (self.limits.min_secret_len, self.limits.max_secret_len);
        if secret.len() < min || secret.len() > max {
            return fail(PackageErrorKind::SecretLength {
                len: secret.len(),
                min,
                max,
            });
        }
        let algorithm = match kind.to_ascii_lowercase().as_str() {
            "hotp" => Algorithm::Hotp,
            "totp" => Algorithm::Totp,
            _ => {
                return fail(PackageErrorKind::UnknownAlgorithm(
                    (*kind).chars().take(64).collect(),
                ));
            }
        };
        let Some(digits) = digits.parse::<u8>().ok().filter(|d| (6..=10).contains(d)) else {
            return fail(PackageErrorKind::InvalidField {
                field: "digits",
                reason: format!("{} (6 to 10)", quote(digits)),
            });
        };
        let mut p = KeyPackage::new(algorithm.clone(), secret);
        p.position = line_no;
        p.serial = Some(serial);
        p.response = Some(ResponseFormat {
            length: digits,
            encoding: Encoding::Decimal,
            check_digit: false,
        });
        match algorithm {
            Algorithm::Totp => {
                let Some(step) = step.parse::<u32>().ok().filter(|s| *s >= 1) else {
                    return fail(PackageErrorKind::InvalidField {
                        field: "step",
                        reason: format!("{} (TOTP needs a step of at least 1 second)", quote(step)),
                    });
                };
                p.time_interval = Some(step);
            }
            _ => {
                if !(step.is_empty() || *step == "0") {
                    return fail(PackageErrorKind::InvalidField {
                        field: "step",
                        reason: format!(
                            "{} (HOTP takes no step: leave it empty or 0)",
                            quote(step)
                        ),
                    });
                }
                p.counter = Some(0);
            }
        }
        Some(Ok(p))
    }
}

impl<R: BufRead> Iterator for OathCsvReader<R> {
    type Item = Result<KeyPackage, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            match self.read_line() {
                Ok(true) => {}
                Ok(false) => {
                    self.finished = true;
                    self.line.zeroize();
                    return None;
                }
                Err(e) => {
                    self.finished = true;
                    self.line.zeroize();
                    return Some(Err(e.into()));
                }
            }
            if self.serials.len() >= self.limits.max_packages {
                self.finished = true;
                return Some(Err(
                    FileError::TooManyPackages(self.limits.max_packages).into()
                ));
            }
            let item = self.parse_line();
            self.line.zeroize();
            if let Some(Err(ImportError::File(_))) = &item {
                self.finished = true;
            }
            if item.is_some() {
                return item;
            }
        }
        None
    }
}
