//! Encrypted backup and restore of the whole store.
//!
//! A backup carries what a new store needs to serve the same tokens under *another* master key:
//! seeds, OCRA PIN hashes and the store secrets (PIN pepper, audit key) in plaintext form, but
//! only inside an authenticated encryption under a key derived from a passphrase (Argon2id), so
//! no plaintext seed is ever written. Every other table (lots, custody, history, receipts,
//! orders, the directory, API keys and the person each is bound to, the mail outbox, and any
//! table added later) is carried row by row as it is (`backend::TYPED_TABLES` says which tables
//! are not, and why). Layout:
//!
//! ```text
//! "OKEYBAK1" ‖ m_cost u32 ‖ t_cost u32 ‖ p_cost u32 ‖ salt[16]            (the header)
//! then chunks: len u32 ‖ last u8 ‖ AES-256-GCM(records)
//!              nonce = 0u32 ‖ chunk index u64, AAD = header ‖ last
//! ```
//!
//! Chunk numbering in the nonce stops reordering, the `last` flag in the AAD stops truncation,
//! the header in the AAD stops parameter swaps. Everything is read and authenticated before a
//! restore writes anything, and the restore itself is one transaction into an empty store.
//!
//! Counters in a backup are those of the moment it was taken. A restore moves every time-based
//! token's last used step up to the step of the restore itself, so no TOTP code of that moment or
//! before is accepted again (its holder waits for the next step at most). HOTP tokens cannot be
//! moved that way: nothing records how far they went after the backup, so codes used in between
//! become valid again until the tokens move past them; the restore reports how many there are.
//! (OCRA answers a fresh, single-use challenge each time, so nothing of it can be replayed.)
//! Restore is a disaster recovery tool; take backups often.

use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Argon2, Params};
use okey_otp::{Algorithm, Digits, OtpKey, TotpParams};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::StoreError;
use crate::audit;
use crate::backend::{Cell, ExportItem, TableRow, TokenRow};
use crate::clock::unix_now;
use crate::seal;
use crate::store::{AUDIT_KEY, Store};
use crate::types::{
    Actor, ApiPrincipal, AuditEntry, AuditRecord, BackupReport, OtpKind, RestoreReport, StoreConfig,
};

const MAGIC: &[u8; 8] = b"OKEYBAK1";
const HEADER_LEN: usize = 8 + 12 + 16;
const CHUNK: usize = 64 * 1024;
const MAX_CHUNK: usize = 16 * 1024 * 1024;
/// Argon2id cost: OWASP's minimum recommendation (19 MiB, 2 passes, 1 lane).
const M_COST: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

const TAG_SECRET: u8 = 1;
const TAG_TOKEN: u8 = 2;
const TAG_API_KEY: u8 = 3;
const TAG_AUDIT: u8 = 4;
const TAG_END: u8 = 5;
/// A key's custody state, validity end and deactivation time, right after its token record
/// (absent for keys in no lot). Without it a restored key that was lost, expired or deactivated
/// would log in again.
const TAG_CUSTODY: u8 = 6;
/// What else a token row holds, right after its token record: the PIN verifier's scheme and
/// whether its hand-over still waits for the holder's signature.
const TAG_TOKEN_EXTRA: u8 = 7;
/// The table and columns of the [`TAG_ROW`] records that follow.
const TAG_TABLE: u8 = 8;
/// A row of every other table, carried as it is (`backend::TYPED_TABLES` says which are not).
const TAG_ROW: u8 = 9;
/// How many [`TAG_ROW`] records the backup holds, just before [`TAG_END`].
const TAG_ROW_COUNT: u8 = 10;
/// An attachment with its content opened (sealed again under the restored store's data key).
const TAG_ATTACHMENT: u8 = 11;

fn derive(pass: &Zeroizing<String>, header: &[u8]) -> Result<Aes256Gcm, StoreError> {
    let word = |i: usize| -> Result<u32, StoreError> {
        header
            .get(i..i + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| StoreError::BackupFormat("short header".into()))
    };
    let (m, t, p) = (word(8)?, word(12)?, word(16)?);
    if m > 4 * 1024 * 1024 || t > 64 || p > 16 {
        return Err(StoreError::BackupFormat(
            "key derivation costs beyond what okey writes".into(),
        ));
    }
    let salt = header
        .get(20..36)
        .ok_or_else(|| StoreError::BackupFormat("short header".into()))?;
    let params = Params::new(m, t, p, Some(32))
        .map_err(|e| StoreError::BackupFormat(format!("bad key derivation parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(pass.as_bytes(), salt, &mut key[..])
        .map_err(|e| StoreError::BackupFormat(format!("key derivation failed: {e}")))?;
    Aes256Gcm::new_from_slice(&key[..])
        .map_err(|_| StoreError::Corrupt("bad AEAD key length".into()))
}

fn nonce(index: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::from(n)
}

fn aad(header: &[u8], last: bool) -> Vec<u8> {
    let mut a = header.to_vec();
    a.push(u8::from(last));
    a
}

/// Little record encoder over a zeroized buffer.
struct Enc<'a>(&'a mut Zeroizing<Vec<u8>>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
            None => self.u8(0),
        }
    }
    fn opt_str(&mut self, s: Option<&str>) {
        self.opt_bytes(s.map(str::as_bytes));
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
            None => self.u8(0),
        }
    }
}

/// The matching decoder; every read is bounds-checked.
struct Dec<'a> {
    b: &'a [u8],
}

fn short() -> StoreError {
    StoreError::BackupFormat("a record is cut short".into())
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.b.len() < n {
            return Err(short());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        self.take(1)?.first().copied().ok_or_else(short)
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| short())?,
        ))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| short())?,
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, StoreError> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| StoreError::BackupFormat("text that is not UTF-8".into()))
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(StoreError::BackupFormat("bad optional marker".into())),
        }
    }
    fn hash(&mut self) -> Result<[u8; 32], StoreError> {
        self.bytes()?
            .try_into()
            .map_err(|_| StoreError::BackupFormat("a 32-byte value of the wrong length".into()))
    }
}

struct ChunkWriter<W: Write> {
    out: W,
    cipher: Aes256Gcm,
    header: Vec<u8>,
    index: u64,
    buf: Zeroizing<Vec<u8>>,
    bytes: u64,
}

impl<W: Write> ChunkWriter<W> {
    fn record(&mut self, f: impl FnOnce(&mut Enc<'_>)) -> Result<(), StoreError> {
        f(&mut Enc(&mut self.buf));
        if self.buf.len() >= CHUNK {
            self.flush(false)?;
        }
        Ok(())
    }

    fn flush(&mut self, last: bool) -> Result<(), StoreError> {
        let mut ct = Vec::with_capacity(self.buf.len() + 16);
        ct.extend_from_slice(&self.buf);
        self.buf.clear();
        self.cipher
            .encrypt_in_place(&nonce(self.index), &aad(&self.header, last), &mut ct)
            .map_err(|_| StoreError::Corrupt("backup encryption failed".into()))?;
        self.index += 1;
        let io = |e| StoreError::io("cannot write the backup", "", e);
        self.out
            .write_all(&(ct.len() as u32).to_be_bytes())
            .map_err(io)?;
        self.out.write_all(&[u8::from(last)]).map_err(io)?;
        self.out.write_all(&ct).map_err(io)?;
        self.bytes += 5 + ct.len() as u64;
        Ok(())
    }
}

/// A token from a backup: its row (unsealed fields), seed and OCRA PIN hash.
type BackupToken = (TokenRow, Zeroizing<Vec<u8>>, Option<Zeroizing<Vec<u8>>>);

/// Everything in a backup, authenticated and decoded.
struct Content {
    secrets: Vec<(String, Zeroizing<Vec<u8>>)>,
    tokens: Vec<BackupToken>,
    /// API keys of a backup written before they were carried as rows.
    api_keys: Vec<(ApiPrincipal, [u8; 32])>,
    audit: Vec<AuditRecord>,
    rows: Vec<TableRow>,
    attachments: Vec<(crate::attachments::AttachmentRow, Zeroizing<Vec<u8>>)>,
}

fn decode_token(d: &mut Dec<'_>) -> Result<TokenRow, StoreError> {
    let bad = |what: &str| StoreError::BackupFormat(format!("bad {what} in a token record"));
    let serial = d.string()?;
    let kind = d.string()?.parse().map_err(|_| bad("kind"))?;
    let otp = match d.u8()? {
        0 => OtpKind::Hotp,
        1 => OtpKind::Totp {
            step: d.u32()?,
            t0: d.u64()?,
        },
        2 => OtpKind::Ocra { suite: d.string()? },
        _ => return Err(bad("scheme")),
    };
    let algorithm: Algorithm = d.string()?.parse().map_err(|_| bad("algorithm"))?;
    let digits = d.u8()?;
    Ok(TokenRow {
        serial,
        kind,
        otp,
        algorithm,
        digits,
        key_version: 0,
        sealed_seed: Vec::new(),
        sealed_pin_hash: None,
        counter: 0,
        last_step: None,
        drift: 0,
        failures: 0,
        locked: false,
        locked_until: None,
        status: crate::types::TokenStatus::Disabled,
        holder: None,
        description: None,
        pin_verifier: None,
        created_at: 0,
        updated_at: 0,
        version: 1,
        custody: None,
        valid_until: None,
        active_until: None,
        handover_unconfirmed: false,
        pin_scheme: 1,
    })
}

fn read_backup(input: &Path, pass: &Zeroizing<String>) -> Result<Content, StoreError> {
    let f = fs::File::open(input).map_err(|e| StoreError::io("cannot open", input, e))?;
    let mut r = BufReader::new(f);
    let mut header = vec![0u8; HEADER_LEN];
    r.read_exact(&mut header)
        .map_err(|_| StoreError::BackupFormat("the file is shorter than a header".into()))?;
    if header.get(..8) != Some(&MAGIC[..]) {
        return Err(StoreError::BackupFormat("wrong magic number".into()));
    }
    let cipher = derive(pass, &header)?;
    let mut content = Content {
        secrets: Vec::new(),
        tokens: Vec::new(),
        api_keys: Vec::new(),
        audit: Vec::new(),
        rows: Vec::new(),
        attachments: Vec::new(),
    };
    let mut table_now: Option<(String, std::sync::Arc<[String]>)> = None;
    let mut row_count = None;
    let mut index = 0u64;
    let mut ended = false;
    let mut counts = None;
    loop {
        let mut head = [0u8; 5];
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(StoreError::io("cannot read", input, e)),
        }
        if ended {
            return Err(StoreError::BackupAuth);
        }
        let [a, b, c, d0, last] = head;
        let len = u32::from_be_bytes([a, b, c, d0]) as usize;
        if len > MAX_CHUNK || last > 1 {
            return Err(StoreError::BackupAuth);
        }
        let mut buf = Zeroizing::new(vec![0u8; len]);
        r.read_exact(&mut buf).map_err(|_| StoreError::BackupAuth)?;
        cipher
            .decrypt_in_place(&nonce(index), &aad(&header, last == 1), &mut *buf)
            .map_err(|_| StoreError::BackupAuth)?;
        index += 1;
        ended = last == 1;
        let mut d = Dec { b: &buf };
        while !d.b.is_empty() {
            match d.u8()? {
                TAG_SECRET => {
                    let name = d.string()?;
                    let value = Zeroizing::new(d.bytes()?.to_vec());
                    content.secrets.push((name, value));
                }
                TAG_TOKEN => {
                    let mut row = decode_token(&mut d)?;
                    let seed = Zeroizing::new(d.bytes()?.to_vec());
                    let pin_hash = d.opt(|d| Ok(Zeroizing::new(d.bytes()?.to_vec())))?;
                    row.counter = d.u64()?;
                    row.last_step = d.opt(Dec::u64)?;
                    row.drift = d.u64()? as i64;
                    row.failures = d.u32()?;
                    row.locked = d.u8()? != 0;
                    row.locked_until = d.opt(Dec::u64)?;
                    row.status = d.string()?.parse().map_err(|_| {
                        StoreError::BackupFormat("bad status in a token record".into())
                    })?;
                    row.holder = d.opt(Dec::string)?;
                    row.description = d.opt(Dec::string)?;
                    row.pin_verifier = d.opt(Dec::hash)?;
                    row.created_at = d.u64()?;
                    row.updated_at = d.u64()?;
                    content.tokens.push((row, seed, pin_hash));
                }
                TAG_CUSTODY => {
                    let bad = || StoreError::BackupFormat("bad custody record".into());
                    let serial = d.string()?;
                    let custody = d
                        .opt(Dec::string)?
                        .map(|c| c.parse().map_err(|_| bad()))
                        .transpose()?;
                    let valid_until = d.opt(Dec::u64)?;
                    let active_until = d.opt(Dec::u64)?;
                    let (row, _, _) = content
                        .tokens
                        .last_mut()
                        .filter(|(r, _, _)| r.serial == serial)
                        .ok_or_else(bad)?;
                    row.custody = custody;
                    row.valid_until = valid_until;
                    row.active_until = active_until;
                }
                TAG_TOKEN_EXTRA => {
                    let bad = || StoreError::BackupFormat("bad token extra record".into());
                    let serial = d.string()?;
                    let scheme =
                        crate::backend::pin_scheme(i64::from(d.u8()?)).map_err(|_| bad())?;
                    let unconfirmed = match d.u8()? {
                        0 => false,
                        1 => true,
                        _ => return Err(bad()),
                    };
                    let (row, _, _) = content
                        .tokens
                        .last_mut()
                        .filter(|(r, _, _)| r.serial == serial)
                        .ok_or_else(bad)?;
                    row.pin_scheme = scheme;
                    row.handover_unconfirmed = unconfirmed;
                }
                TAG_TABLE => {
                    let table = d.string()?;
                    let n = d.u32()? as usize;
                    if n == 0 || n > 256 {
                        return Err(StoreError::BackupFormat(format!(
                            "table {table} with {n} columns"
                        )));
                    }
                    let mut columns = Vec::with_capacity(n);
                    for _ in 0..n {
                        columns.push(d.string()?);
                    }
                    table_now = Some((table, columns.into()));
                }
                TAG_ROW => {
                    let (table, columns) = table_now.as_ref().ok_or_else(|| {
                        StoreError::BackupFormat("a row before its table record".into())
                    })?;
                    let mut cells = Vec::with_capacity(columns.len());
                    for _ in 0..columns.len() {
                        cells.push(match d.u8()? {
                            0 => Cell::Null,
                            1 => Cell::Int(d.u64()? as i64),
                            2 => Cell::Text(d.string()?),
                            3 => Cell::Blob(d.bytes()?.to_vec()),
                            _ => return Err(StoreError::BackupFormat("bad cell".into())),
                        });
                    }
                    content.rows.push(TableRow {
                        table: table.clone(),
                        columns: std::sync::Arc::clone(columns),
                        cells,
                    });
                }
                TAG_ROW_COUNT => row_count = Some(d.u64()?),
                TAG_ATTACHMENT => {
                    let bad = || StoreError::BackupFormat("bad attachment record".into());
                    let row = crate::attachments::AttachmentRow {
                        id: d.u64()?,
                        owner: d.string()?,
                        name: d.string()?,
                        media_type: d.string()?,
                        size: d.u64()?,
                        sha256: d.hash()?,
                        key_version: 0,
                        sealed_content: Vec::new(),
                        created_by: d.string()?,
                        created_at: d.u64()?,
                    };
                    let plain = Zeroizing::new(d.bytes()?.to_vec());
                    if plain.len() as u64 != row.size {
                        return Err(bad());
                    }
                    content.attachments.push((row, plain));
                }
                TAG_API_KEY => {
                    let name = d.string()?;
                    let roles = d.string()?;
                    let disabled = d.u8()? != 0;
                    let hash = d.hash()?;
                    content.api_keys.push((
                        ApiPrincipal {
                            name,
                            roles: roles
                                .split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_owned)
                                .collect(),
                            disabled,
                        },
                        hash,
                    ));
                }
                TAG_AUDIT => {
                    let seq = d.u64()?;
                    let entry = AuditEntry {
                        at: d.u64()?,
                        actor: d.string()?,
                        action: d.string()?,
                        subject: d.string()?,
                        serial: d.opt(Dec::string)?,
                        result: d.string()?,
                        reason: d.string()?,
                    };
                    let prev = d.hash()?;
                    let mac = d.hash()?;
                    content.audit.push(AuditRecord {
                        seq,
                        entry,
                        prev,
                        mac,
                    });
                }
                TAG_END => counts = Some((d.u64()?, d.u64()?, d.u64()?)),
                _ => return Err(StoreError::BackupFormat("unknown record type".into())),
            }
        }
    }
    if !ended {
        return Err(StoreError::BackupAuth);
    }
    let expected = (
        content.tokens.len() as u64,
        content.api_keys.len() as u64,
        content.audit.len() as u64,
    );
    if counts != Some(expected)
        || row_count.unwrap_or(0) != content.rows.len() as u64
        || (row_count.is_none() && !content.rows.is_empty())
    {
        return Err(StoreError::BackupFormat(
            "the record counts do not match the end record".into(),
        ));
    }
    Ok(content)
}

/// The highest TOTP step a verify at `now_step` may accept from a token with `drift`, under a
/// skew window of `skew` steps: every code up to it may have been used since the backup, so a
/// restore marks it used. Saturating; at least 0, at most what a state holds.
fn highest_acceptable_step(now_step: u64, drift: i64, skew: u32) -> u64 {
    let highest = i64::try_from(now_step)
        .unwrap_or(i64::MAX)
        .saturating_add(drift)
        .saturating_add(i64::from(skew));
    u64::try_from(highest)
        .unwrap_or(0)
        .min(okey_otp::MAX_COUNTER)
}

impl Store {
    /// Write an encrypted backup of the whole store to `out` (a new file, mode 0600), from one
    /// consistent snapshot. Seeds appear only inside the passphrase-keyed encryption.
    pub fn backup(
        &self,
        out: &Path,
        passphrase: &Zeroizing<String>,
    ) -> Result<BackupReport, StoreError> {
        if passphrase.chars().count() < 12 {
            return Err(StoreError::invalid(
                "passphrase",
                "must be at least 12 characters",
            ));
        }
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        for w in [M_COST, T_COST, P_COST] {
            header.extend_from_slice(&w.to_be_bytes());
        }
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        header.extend_from_slice(&salt);
        let cipher = derive(passphrase, &header)?;
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(|e| StoreError::io("cannot create the backup file", out, e))?;
        let result = (|| -> Result<BackupReport, StoreError> {
            let mut w = BufWriter::new(&file);
            w.write_all(&header)
                .map_err(|e| StoreError::io("cannot write", out, e))?;
            let mut cw = ChunkWriter {
                out: w,
                cipher,
                header: header.clone(),
                index: 0,
                buf: Zeroizing::new(Vec::with_capacity(CHUNK + 4096)),
                bytes: HEADER_LEN as u64,
            };
            let (mut tokens, mut api_keys, mut audit_records) = (0u64, 0u64, 0u64);
            let (mut rows, mut table_now) = (0u64, None::<String>);
            self.inner.backend.export(&mut |item| match item {
                ExportItem::Secret(name, v, blob) => {
                    let plain = self.keys().open_secret(&name, v, &blob)?;
                    cw.record(|e| {
                        e.u8(TAG_SECRET);
                        e.str(&name);
                        e.bytes(&plain);
                    })
                }
                ExportItem::Token(row) => {
                    let ring = self.keys();
                    let seed = ring.open_seed(&row)?;
                    let pin_hash = row
                        .sealed_pin_hash
                        .as_ref()
                        .map(|b| ring.open_pin_hash(&row.serial, row.key_version, b))
                        .transpose()?;
                    drop(ring);
                    tokens += 1;
                    cw.record(|e| {
                        e.u8(TAG_TOKEN);
                        e.str(&row.serial);
                        e.str(row.kind.as_str());
                        match &row.otp {
                            OtpKind::Hotp => e.u8(0),
                            OtpKind::Totp { step, t0 } => {
                                e.u8(1);
                                e.u32(*step);
                                e.u64(*t0);
                            }
                            OtpKind::Ocra { suite } => {
                                e.u8(2);
                                e.str(suite);
                            }
                        }
                        e.str(row.algorithm.name());
                        e.u8(row.digits);
                        e.bytes(&seed);
                        e.opt_bytes(pin_hash.as_ref().map(|h| h.as_slice()));
                        e.u64(row.counter);
                        e.opt_u64(row.last_step);
                        e.u64(row.drift as u64);
                        e.u32(row.failures);
                        e.u8(u8::from(row.locked));
                        e.opt_u64(row.locked_until);
                        e.str(row.status.as_str());
                        e.opt_str(row.holder.as_deref());
                        e.opt_str(row.description.as_deref());
                        e.opt_bytes(row.pin_verifier.as_ref().map(|v| &v[..]));
                        e.u64(row.created_at);
                        e.u64(row.updated_at);
                    })?;
                    cw.record(|e| {
                        e.u8(TAG_TOKEN_EXTRA);
                        e.str(&row.serial);
                        e.u8(row.pin_scheme);
                        e.u8(u8::from(row.handover_unconfirmed));
                    })?;
                    if row.custody.is_some()
                        || row.valid_until.is_some()
                        || row.active_until.is_some()
                    {
                        cw.record(|e| {
                            e.u8(TAG_CUSTODY);
                            e.str(&row.serial);
                            e.opt_str(row.custody.map(|c| c.as_str()));
                            e.opt_u64(row.valid_until);
                            e.opt_u64(row.active_until);
                        })?;
                    }
                    Ok(())
                }
                ExportItem::Row(row) => {
                    rows += 1;
                    if row.table == "api_keys" {
                        api_keys += 1;
                    }
                    if table_now.as_ref() != Some(&row.table) {
                        cw.record(|e| {
                            e.u8(TAG_TABLE);
                            e.str(&row.table);
                            e.u32(row.columns.len() as u32);
                            for c in row.columns.iter() {
                                e.str(c);
                            }
                        })?;
                        table_now = Some(row.table.clone());
                    }
                    cw.record(|e| {
                        e.u8(TAG_ROW);
                        for c in &row.cells {
                            match c {
                                Cell::Null => e.u8(0),
                                Cell::Int(n) => {
                                    e.u8(1);
                                    e.u64(*n as u64);
                                }
                                Cell::Text(t) => {
                                    e.u8(2);
                                    e.str(t);
                                }
                                Cell::Blob(b) => {
                                    e.u8(3);
                                    e.bytes(b);
                                }
                            }
                        }
                    })
                }
                ExportItem::Attachment(a) => {
                    let plain = crate::attachments::open(&self.keys(), &a)?;
                    cw.record(|e| {
                        e.u8(TAG_ATTACHMENT);
                        e.u64(a.id);
                        e.str(&a.owner);
                        e.str(&a.name);
                        e.str(&a.media_type);
                        e.u64(a.size);
                        e.bytes(&a.sha256);
                        e.str(&a.created_by);
                        e.u64(a.created_at);
                        e.bytes(&plain);
                    })
                }
                ExportItem::Audit(r) => {
                    audit_records += 1;
                    cw.record(|e| {
                        e.u8(TAG_AUDIT);
                        e.u64(r.seq);
                        e.u64(r.entry.at);
                        e.str(&r.entry.actor);
                        e.str(&r.entry.action);
                        e.str(&r.entry.subject);
                        e.opt_str(r.entry.serial.as_deref());
                        e.str(&r.entry.result);
                        e.str(&r.entry.reason);
                        e.bytes(&r.prev);
                        e.bytes(&r.mac);
                    })
                }
            })?;
            cw.record(|e| {
                e.u8(TAG_ROW_COUNT);
                e.u64(rows);
            })?;
            cw.record(|e| {
                e.u8(TAG_END);
                e.u64(tokens);
                // API keys are carried as rows: the end record counts typed API key records.
                e.u64(0);
                e.u64(audit_records);
            })?;
            cw.flush(true)?;
            cw.out
                .flush()
                .map_err(|e| StoreError::io("cannot write", out, e))?;
            Ok(BackupReport {
                tokens,
                api_keys,
                audit_records,
                bytes: cw.bytes,
            })
        })();
        match result {
            Ok(report) => {
                file.sync_all()
                    .map_err(|e| StoreError::io("cannot sync", out, e))?;
                if let Some(dir) = out.parent() {
                    seal::sync_dir(dir)?;
                }
                Ok(report)
            }
            Err(e) => {
                drop(file);
                let _ = fs::remove_file(out);
                Err(e)
            }
        }
    }

    /// Restore a backup into an empty data directory (a new store under `cfg`'s master key).
    /// The whole file is authenticated and decoded before anything is written; the load is one
    /// transaction.
    pub fn restore(
        cfg: StoreConfig,
        input: &Path,
        passphrase: &Zeroizing<String>,
    ) -> Result<RestoreReport, StoreError> {
        let mut content = read_backup(input, passphrase)?;
        let dir = cfg.data_dir.clone();
        let at = unix_now();
        let skew = cfg.totp_skew;
        let (mut time_tokens_advanced, mut counter_tokens) = (0, 0);
        for (row, _, _) in &mut content.tokens {
            match row.otp {
                OtpKind::Totp { step, t0 } => {
                    // (The digits play no part in the step.)
                    let now_step = TotpParams::new(Digits::SIX, step, t0)
                        .and_then(|p| p.step_at(at))
                        .ok();
                    if let Some(now_step) = now_step {
                        let highest = highest_acceptable_step(now_step, row.drift, skew);
                        if row.last_step.is_none_or(|last| last < highest) {
                            row.last_step = Some(highest);
                            time_tokens_advanced += 1;
                        }
                    }
                }
                OtpKind::Hotp => counter_tokens += 1,
                OtpKind::Ocra { .. } => {}
            }
        }
        let store = Store::open(cfg)?;
        let report = RestoreReport {
            tokens: content.tokens.len() as u64,
            api_keys: (content.api_keys.len()
                + content
                    .rows
                    .iter()
                    .filter(|r| r.table == "api_keys")
                    .count()) as u64,
            audit_records: content.audit.len() as u64,
            at,
            time_tokens_advanced,
            counter_tokens,
        };
        let audit_plain = content
            .secrets
            .iter()
            .find(|(n, _)| n == AUDIT_KEY)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| StoreError::BackupFormat("the backup has no audit key".into()))?;
        let audit_key = OtpKey::new(Algorithm::Sha256, &audit_plain)
            .map_err(|_| StoreError::BackupFormat("the backup's audit key is unusable".into()))?;
        let s = store.clone();
        let entry = AuditEntry {
            actor: Actor::new("operator", "operator").name,
            action: "store.restore".into(),
            subject: input.display().to_string(),
            serial: None,
            result: "ok".into(),
            reason: format!("{} tokens", report.tokens),
            at,
        };
        store.write_blocking(move |tx| {
            if !tx.is_empty()? {
                return Err(StoreError::NotEmpty(dir));
            }
            let ring = s.keys();
            let active = ring.active()?;
            let v = active.version();
            for (name, plain) in &content.secrets {
                tx.put_secret(name, v, &active.seal(&seal::secret_aad(name, v), plain)?)?;
            }
            for (row, seed, pin_hash) in &content.tokens {
                let mut row = row.clone();
                row.key_version = v;
                row.sealed_seed = active.seal(&seal::seed_aad(&row.serial, v), seed)?;
                row.sealed_pin_hash = pin_hash
                    .as_ref()
                    .map(|h| active.seal(&seal::pin_hash_aad(&row.serial, v), h))
                    .transpose()?;
                tx.insert_token(&row)?;
            }
            for (p, hash) in &content.api_keys {
                tx.add_api_key(&p.name, hash, &p.roles, 0)?;
                if p.disabled {
                    tx.disable_api_key(&p.name)?;
                }
            }
            for r in &content.rows {
                tx.insert_row(r)?;
            }
            for (a, plain) in &content.attachments {
                let mut a = a.clone();
                a.key_version = v;
                a.sealed_content = active.seal(
                    &crate::attachments::attachment_aad(&a.owner, &a.sha256, v),
                    plain,
                )?;
                tx.requests().insert_attachment(&a)?;
            }
            tx.rows_inserted()?;
            for r in &content.audit {
                tx.insert_audit(r)?;
            }
            audit::append(tx, &audit_key, entry)?;
            Ok(())
        })?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::highest_acceptable_step;

    #[test]
    fn restore_marks_the_whole_skew_and_drift_window_used() {
        assert_eq!(highest_acceptable_step(100, 0, 1), 101);
        assert_eq!(highest_acceptable_step(100, 5, 1), 106);
        assert_eq!(highest_acceptable_step(100, -5, 2), 97);
        // Negative: nothing acceptable yet, step 0 at most.
        assert_eq!(highest_acceptable_step(3, -10, 1), 0);
        // Saturating at what a state holds.
        assert_eq!(
            highest_acceptable_step(u64::MAX, 1, 1),
            okey_otp::MAX_COUNTER
        );
        assert_eq!(
            highest_acceptable_step(okey_otp::MAX_COUNTER - 1, i64::MAX, 10),
            okey_otp::MAX_COUNTER
        );
    }
}
