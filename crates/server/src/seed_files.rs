//! Vendor seed files (PSKC, OATH CSV) arriving as a stream of chunks: decrypted and parsed here,
//! turned into tokens, and imported in one transaction (or, with `partial`, the good packages
//! only, with a report of the others).
//!
//! The bytes are parsed as they arrive, by a blocking parser reading from a channel, so a large
//! file is never held whole; only the parsed tokens (with their seeds in zeroizing buffers) are
//! kept until the transaction.

use std::io::Read;
use tokio::sync::mpsc;

use okey_domain::validate_serial;
use okey_intake::{
    Algorithm as FileAlgorithm, HashAlgorithm, ImportError, KeyPackage, OathCsvReader,
    PackageError, PskcOptions, PskcReader,
};
use okey_otp::{Algorithm, OcraSuite};
use okey_store::{NewToken, OtpKind, TokenKind, TokenStatus};
use zeroize::Zeroizing;

/// How to read a file.
pub enum Format {
    /// RFC 6030 key container.
    Pskc(PskcOptions),
    /// `serial, seed, type, digits, step` lines.
    OathCsv,
}

/// A package that was not turned into a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Which package.
    pub package: String,
    /// Why.
    pub reason: String,
}

/// The outcome of reading a whole file.
pub enum Parsed {
    /// Every package became a token.
    Complete(Vec<NewToken>),
    /// Some packages were refused (the good ones are kept for a partial import).
    WithRefusals(Vec<NewToken>, Vec<Refused>),
    /// The file as a whole is unusable (wrong key, bad XML, hostile constructs...).
    FileRefused(String),
}

/// A blocking `Read` over chunks sent through an async channel; end of stream when the sender
/// is dropped. Read it from a blocking thread only.
pub struct ChunkReader {
    rx: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    offset: usize,
}

impl ChunkReader {
    /// A reader and the sender that feeds it.
    pub fn new(bound: usize) -> (mpsc::Sender<Vec<u8>>, ChunkReader) {
        let (tx, rx) = mpsc::channel(bound);
        (
            tx,
            ChunkReader {
                rx,
                current: Vec::new(),
                offset: 0,
            },
        )
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.offset >= self.current.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.current = chunk;
                    self.offset = 0;
                }
                None => return Ok(0),
            }
        }
        let available = self.current.get(self.offset..).unwrap_or(&[]);
        let n = available.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(available.get(..n).unwrap_or(&[]));
        self.offset += n;
        Ok(n)
    }
}

fn hash_of(h: HashAlgorithm) -> Algorithm {
    match h {
        HashAlgorithm::Sha1 => Algorithm::Sha1,
        HashAlgorithm::Sha256 => Algorithm::Sha256,
        HashAlgorithm::Sha512 => Algorithm::Sha512,
    }
}

/// What to take from a file beside the keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mapping {
    /// The package's `UserId` becomes the token's holder.
    pub holder_from_user_id: bool,
}

/// One package → one token, or the reason it cannot be one.
pub fn token_of(p: KeyPackage, kind: TokenKind, map: Mapping) -> Result<Option<NewToken>, String> {
    let serial = p.serial.clone().ok_or("the package has no serial number")?;
    validate_serial(&serial).map_err(|e| e.to_string())?;
    if let Some(issuer) = &p.issuer {
        // Not stored, but a sign of a mangled file when it is not printable.
        if issuer.chars().any(char::is_control) {
            return Err("the issuer has control characters".into());
        }
    }
    let digits = match (&p.algorithm, p.response) {
        (FileAlgorithm::Ocra(_), _) => 0,
        (_, None) => 6,
        (_, Some(_)) => p.digits().ok_or("only decimal responses are supported")?,
    };
    let (otp, algorithm, digits) = match &p.algorithm {
        // A PIN key is not a token: it belongs to another package's PIN policy.
        FileAlgorithm::Pin => return Ok(None),
        FileAlgorithm::Hotp => (OtpKind::Hotp, hash_of(p.hash), digits),
        FileAlgorithm::Totp => (
            OtpKind::Totp {
                step: p.time_interval.unwrap_or(30),
                t0: p.time.unwrap_or(0),
            },
            hash_of(p.hash),
            digits,
        ),
        FileAlgorithm::Ocra(suite) => {
            let parsed: OcraSuite = suite
                .parse()
                .map_err(|e: okey_otp::OcraError| e.to_string())?;
            (
                OtpKind::Ocra {
                    suite: parsed.as_str().to_owned(),
                },
                parsed.algorithm(),
                parsed.digits().map_or(0, |d| d.get()),
            )
        }
    };
    if !matches!(otp, OtpKind::Ocra { .. }) && !(6..=10).contains(&digits) {
        return Err(format!("{digits} digits is not supported (6 to 10)"));
    }
    if let OtpKind::Totp { step, .. } = otp
        && (step == 0 || step > 3600)
    {
        return Err("the time step must be 1 to 3600 seconds".into());
    }
    let holder = match (&p.user_id, map.holder_from_user_id) {
        (Some(u), true) => {
            let u = u.trim().to_lowercase();
            okey_domain::validate_holder(&u).map_err(|e| format!("its UserId: {e}"))?;
            Some(u)
        }
        _ => None,
    };
    Ok(Some(NewToken {
        // Before 1970 is long past: the key imports expired.
        valid_until: p.expiry_date.map(|e| u64::try_from(e).unwrap_or(0)),
        serial,
        kind,
        otp,
        algorithm,
        digits,
        seed: Zeroizing::new(p.secret.to_vec()),
        counter: p.counter.unwrap_or(0),
        drift: p.time_drift.unwrap_or(0),
        status: TokenStatus::Active,
        holder,
        description: match (&p.manufacturer, &p.model) {
            (Some(m), Some(model)) => Some(format!("{m} {model}")),
            (Some(m), None) => Some(m.clone()),
            (None, Some(model)) => Some(model.clone()),
            (None, None) => None,
        }
        .map(|d| d.chars().filter(|c| !c.is_control()).take(256).collect()),
    }))
}

fn label(p: &KeyPackage) -> String {
    p.label().to_string()
}

fn refused_of(e: &PackageError) -> Refused {
    Refused {
        package: e.package.to_string(),
        reason: e.kind.to_string(),
    }
}

/// What the file carried that was not acted on: one sentence each, for the import summary.
fn ignored_notes(p: &KeyPackage, map: Mapping, notes: &mut Vec<String>) {
    let name = label(p);
    if p.user_id.is_some() && !map.holder_from_user_id {
        notes.push(format!(
            "{name}: its UserId was not used (ask for the holder to be taken from UserId to \
             assign the key)"
        ));
    }
    if p.start_date.is_some() {
        notes.push(format!(
            "{name}: its StartDate is not enforced (the key is usable once handed over)"
        ));
    }
    if p.issuer.is_some() {
        notes.push(format!("{name}: its Issuer is not stored"));
    }
    if p.pin_policy.is_some() {
        notes.push(format!(
            "{name}: its PINPolicy is not applied (okey's PIN is set with SetPin)"
        ));
    }
}

/// Turn one read item into a token, a refusal and notes; a file-level error stops the read.
fn take(
    item: Result<KeyPackage, ImportError>,
    kind: TokenKind,
    map: Mapping,
    tokens: &mut Vec<NewToken>,
    refused: &mut Vec<Refused>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    match item {
        Ok(p) => {
            let name = label(&p);
            ignored_notes(&p, map, notes);
            match token_of(p, kind, map) {
                Ok(Some(t)) => tokens.push(t),
                Ok(None) => {}
                Err(reason) => refused.push(Refused {
                    package: name,
                    reason,
                }),
            }
            Ok(())
        }
        Err(ImportError::Package(e)) => {
            refused.push(refused_of(&e));
            Ok(())
        }
        Err(ImportError::File(e)) => Err(e.to_string()),
    }
}

/// Read every package of `input` (blocking) and turn each into a token; with the notes of what
/// the file carried that was ignored (an unchecked signature, an unused password, fields okey
/// does not act on).
pub fn parse(
    input: impl Read,
    format: Format,
    kind: TokenKind,
    map: Mapping,
) -> (Parsed, Vec<String>) {
    let mut notes = Vec::new();
    let mut tokens = Vec::new();
    let mut refused = Vec::new();
    match format {
        Format::Pskc(options) => {
            let mut reader = PskcReader::new(input, options);
            for item in reader.by_ref() {
                if let Err(why) = take(item, kind, map, &mut tokens, &mut refused, &mut notes) {
                    return (Parsed::FileRefused(why), notes);
                }
            }
            let file_notes: Vec<String> =
                reader.ignored().iter().map(ToString::to_string).collect();
            notes.splice(0..0, file_notes);
        }
        Format::OathCsv => {
            for item in OathCsvReader::new(std::io::BufReader::new(input)) {
                if let Err(why) = take(item, kind, map, &mut tokens, &mut refused, &mut notes) {
                    return (Parsed::FileRefused(why), notes);
                }
            }
        }
    }
    let parsed = if refused.is_empty() {
        Parsed::Complete(tokens)
    } else {
        Parsed::WithRefusals(tokens, refused)
    };
    (parsed, notes)
}

/// A `Write` that sends what it is given as chunks of at most 64 KiB through an async channel;
/// for use from a blocking thread. A closed channel (the client went away) is an I/O error.
pub struct ChunkWriter<T> {
    tx: mpsc::Sender<Result<T, tonic::Status>>,
    buffer: Vec<u8>,
    wrap: fn(Vec<u8>) -> T,
}

const CHUNK: usize = 64 * 1024;

impl<T> ChunkWriter<T> {
    /// A writer sending `wrap(bytes)` items to `tx`.
    pub fn new(tx: mpsc::Sender<Result<T, tonic::Status>>, wrap: fn(Vec<u8>) -> T) -> Self {
        ChunkWriter {
            tx,
            buffer: Vec::with_capacity(CHUNK),
            wrap,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(Ok((self.wrap)(chunk))).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl<T> std::io::Write for ChunkWriter<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A token leaving in an export, as the package the PSKC writer takes.
pub fn package_of(stock: okey_store::StockSeed) -> KeyPackage {
    let t = &stock.token;
    let (algorithm, counter, time, interval) = match &t.otp {
        OtpKind::Hotp => (FileAlgorithm::Hotp, Some(t.counter), None, None),
        OtpKind::Totp { step, t0 } => (FileAlgorithm::Totp, None, Some(*t0), Some(*step)),
        OtpKind::Ocra { suite } => (
            FileAlgorithm::Ocra(suite.clone()),
            Some(t.counter),
            None,
            None,
        ),
    };
    let mut p = KeyPackage::new(algorithm, stock.seed.clone());
    p.serial = Some(t.serial.clone());
    p.hash = match t.algorithm {
        Algorithm::Sha1 => HashAlgorithm::Sha1,
        Algorithm::Sha256 => HashAlgorithm::Sha256,
        Algorithm::Sha512 => HashAlgorithm::Sha512,
    };
    if !matches!(t.otp, OtpKind::Ocra { .. }) {
        p.response = Some(okey_intake::ResponseFormat {
            length: t.digits,
            encoding: okey_intake::Encoding::Decimal,
            check_digit: false,
        });
    }
    p.counter = counter;
    p.time = time;
    p.time_interval = interval;
    p.time_drift = matches!(t.otp, OtpKind::Totp { .. }).then_some(t.drift);
    p.manufacturer = t.description.clone();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::indexing_slicing)]
    fn csv(text: &str) -> Parsed {
        parse(
            text.as_bytes(),
            Format::OathCsv,
            TokenKind::Hardware,
            Mapping::default(),
        )
        .0
    }

    #[test]
    fn csv_lines_become_tokens_or_named_refusals() {
        let good = "0001, 3132333435363738393031323334353637383930, hotp, 6, 0\n\
                    0002, 3132333435363738393031323334353637383930, totp, 8, 60\n";
        match csv(good) {
            Parsed::Complete(t) => {
                assert_eq!(t.len(), 2);
                assert_eq!(t[0].serial, "0001");
                assert_eq!(t[0].otp, OtpKind::Hotp);
                assert_eq!(t[1].otp, OtpKind::Totp { step: 60, t0: 0 });
                assert_eq!(t[1].digits, 8);
                assert_eq!(t[1].seed.as_slice(), b"12345678901234567890");
            }
            _ => panic!("a good file"),
        }
        let bad = "0001, 3132333435363738393031323334353637383930, hotp, 6, 0\n\
                   0 02, 3132333435363738393031323334353637383930, hotp, 6, 0\n";
        match csv(bad) {
            Parsed::WithRefusals(t, r) => {
                assert_eq!(t.len(), 1);
                assert_eq!(r.len(), 1);
                assert!(
                    !r[0].reason.contains("3132"),
                    "no seed in a reason: {}",
                    r[0].reason
                );
            }
            _ => panic!("one refusal"),
        }
    }

    #[test]
    fn chunk_reader_reassembles_the_stream() {
        let (tx, mut reader) = ChunkReader::new(4);
        std::thread::spawn(move || {
            for chunk in [b"ab".to_vec(), Vec::new(), b"cde".to_vec()] {
                let _ = tx.blocking_send(chunk);
            }
        });
        let mut all = String::new();
        reader.read_to_string(&mut all).expect("read");
        assert_eq!(all, "abcde");
    }
}
