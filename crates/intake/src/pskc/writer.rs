//! Encrypted PSKC export: moves unassigned stock between sites without a seed in the clear.
//!
//! Every secret is encrypted (AES-CBC, a fresh random IV each) under a pre-shared key or
//! a PBKDF2-derived key, and carries a `ValueMAC` under a random MAC key that is itself
//! encrypted in the header, as RFC 6030 section 6 describes. The writer streams: it
//! writes each package as it comes and holds no more than one.

use std::borrow::Borrow;
use std::fmt::Write as _;
use std::io::Write;

use data_encoding::BASE64;
use zeroize::Zeroizing;

use crate::crypto::{self, Cipher, MacAlgorithm, Prf};
use crate::error::ExportError;
use crate::model::{Algorithm, HashAlgorithm, KeyPackage, PinUsageMode, format_datetime};

/// Minimum PBKDF2 iterations the writer accepts (the figure of RFC 6030's own example).
pub const MIN_EXPORT_ITERATIONS: u32 = 1000;

/// Default PBKDF2-HMAC-SHA256 iterations of a password export.
pub const DEFAULT_EXPORT_ITERATIONS: u32 = 600_000;

/// How an export is protected.
#[derive(Clone)]
pub enum ExportProtection {
    /// A pre-shared transport key, named in the file by `key_name`.
    PreSharedKey {
        /// The key (16, 24 or 32 bytes to match `cipher`).
        key: Zeroizing<Vec<u8>>,
        /// Name written to `ds:KeyName` so the receiver knows which key to use.
        key_name: String,
        /// Value cipher.
        cipher: Cipher,
        /// MAC algorithm.
        mac: MacAlgorithm,
    },
    /// A password, through PBKDF2 with a random 16-byte salt.
    Password {
        /// The password.
        password: Zeroizing<String>,
        /// PBKDF2 iterations.
        iterations: u32,
        /// PBKDF2 PRF.
        prf: Prf,
        /// Value cipher (its key size is the derived key length).
        cipher: Cipher,
        /// MAC algorithm.
        mac: MacAlgorithm,
    },
}

impl std::fmt::Debug for ExportProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PreSharedKey {
                key_name,
                cipher,
                mac,
                ..
            } => f
                .debug_struct("PreSharedKey")
                .field("key", &"<redacted>")
                .field("key_name", key_name)
                .field("cipher", cipher)
                .field("mac", mac)
                .finish(),
            Self::Password {
                iterations,
                prf,
                cipher,
                mac,
                ..
            } => f
                .debug_struct("Password")
                .field("password", &"<redacted>")
                .field("iterations", iterations)
                .field("prf", prf)
                .field("cipher", cipher)
                .field("mac", mac)
                .finish(),
        }
    }
}

impl ExportProtection {
    /// AES-256-CBC under a 32-byte pre-shared key, HMAC-SHA256 MAC.
    #[must_use]
    pub fn pre_shared_key(key: Zeroizing<Vec<u8>>, key_name: impl Into<String>) -> Self {
        Self::PreSharedKey {
            key,
            key_name: key_name.into(),
            cipher: Cipher::Aes256Cbc,
            mac: MacAlgorithm::HmacSha256,
        }
    }

    /// AES-256-CBC under PBKDF2-HMAC-SHA256 of `password` ([`DEFAULT_EXPORT_ITERATIONS`]),
    /// HMAC-SHA256 MAC.
    #[must_use]
    pub fn password(password: Zeroizing<String>) -> Self {
        Self::Password {
            password,
            iterations: DEFAULT_EXPORT_ITERATIONS,
            prf: Prf::HmacSha256,
            cipher: Cipher::Aes256Cbc,
            mac: MacAlgorithm::HmacSha256,
        }
    }

    /// Another value cipher (for a receiver that cannot read AES-256).
    #[must_use]
    pub fn with_cipher(mut self, c: Cipher) -> Self {
        match &mut self {
            Self::PreSharedKey { cipher, .. } | Self::Password { cipher, .. } => *cipher = c,
        }
        self
    }

    /// Another MAC algorithm.
    #[must_use]
    pub fn with_mac(mut self, m: MacAlgorithm) -> Self {
        match &mut self {
            Self::PreSharedKey { mac, .. } | Self::Password { mac, .. } => *mac = m,
        }
        self
    }

    /// Another PBKDF2 iteration count and PRF (password protection only).
    #[must_use]
    pub fn with_kdf(mut self, n: u32, p: Prf) -> Self {
        if let Self::Password {
            iterations, prf, ..
        } = &mut self
        {
            *iterations = n;
            *prf = p;
        }
        self
    }
}

/// Streaming writer of an encrypted PSKC container.
pub struct PskcWriter<W: Write> {
    out: W,
    cipher: Cipher,
    enc_key: Zeroizing<Vec<u8>>,
    mac: MacAlgorithm,
    mac_key: Zeroizing<Vec<u8>>,
    count: usize,
}

impl<W: Write> std::fmt::Debug for PskcWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PskcWriter")
            .field("cipher", &self.cipher)
            .field("mac", &self.mac)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl<W: Write> PskcWriter<W> {
    /// Writes the container header (key derivation, encrypted MAC key) to `out`.
    ///
    /// # Errors
    /// A key of the wrong size, a weak password setting, or a write error.
    pub fn new(mut out: W, protection: ExportProtection) -> Result<Self, ExportError> {
        let mut head = String::with_capacity(2048);
        head.push_str(concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
            "<KeyContainer Version=\"1.0\" xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\"",
            " xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"",
            " xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"",
            " xmlns:xenc11=\"http://www.w3.org/2009/xmlenc11#\"",
            " xmlns:pkcs5=\"http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#\">\n",
            "  <EncryptionKey>\n",
        ));
        let (cipher, mac, enc_key) = match protection {
            ExportProtection::PreSharedKey {
                key,
                key_name,
                cipher,
                mac,
            } => {
                if key.len() != cipher.key_len() {
                    return Err(ExportError::KeySize {
                        len: key.len(),
                        cipher: cipher.name(),
                        needed: cipher.key_len(),
                    });
                }
                let _ = writeln!(head, "    <ds:KeyName>{}</ds:KeyName>", escape(&key_name));
                (cipher, mac, key)
            }
            ExportProtection::Password {
                password,
                iterations,
                prf,
                cipher,
                mac,
            } => {
                if password.is_empty() {
                    return Err(ExportError::WeakPassword("empty password".into()));
                }
                if iterations < MIN_EXPORT_ITERATIONS {
                    return Err(ExportError::WeakPassword(format!(
                        "{iterations} PBKDF2 iterations; at least {MIN_EXPORT_ITERATIONS}"
                    )));
                }
                let salt = crypto::random_secret(16);
                let key = prf.derive(password.as_bytes(), &salt, iterations, cipher.key_len());
                let _ = write!(
                    head,
                    concat!(
                        "    <xenc11:DerivedKey>\n",
                        "      <xenc11:KeyDerivationMethod Algorithm=\"http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2\">\n",
                        "        <pkcs5:PBKDF2-params>\n",
                        "          <Salt><Specified>{salt}</Specified></Salt>\n",
                        "          <IterationCount>{iterations}</IterationCount>\n",
                        "          <KeyLength>{len}</KeyLength>\n",
                        "          <PRF Algorithm=\"{prf}\"/>\n",
                        "        </pkcs5:PBKDF2-params>\n",
                        "      </xenc11:KeyDerivationMethod>\n",
                        "    </xenc11:DerivedKey>\n",
                    ),
                    salt = BASE64.encode(&salt),
                    iterations = iterations,
                    len = cipher.key_len(),
                    prf = prf.uri(),
                );
                (cipher, mac, key)
            }
        };
        let mac_key = crypto::random_secret(mac.output_len());
        let wrapped =
            crypto::encrypt(cipher, &enc_key, &mac_key).map_err(|_| ExportError::KeySize {
                len: enc_key.len(),
                cipher: cipher.name(),
                needed: cipher.key_len(),
            })?;
        let _ = write!(
            head,
            concat!(
                "  </EncryptionKey>\n",
                "  <MACMethod Algorithm=\"{mac}\">\n",
                "    <MACKey>\n",
                "      <xenc:EncryptionMethod Algorithm=\"{cipher}\"/>\n",
                "      <xenc:CipherData><xenc:CipherValue>{value}</xenc:CipherValue></xenc:CipherData>\n",
                "    </MACKey>\n",
                "  </MACMethod>\n",
            ),
            mac = mac.uri(),
            cipher = cipher.uri(),
            value = BASE64.encode(&wrapped),
        );
        out.write_all(head.as_bytes())?;
        Ok(Self {
            out,
            cipher,
            enc_key,
            mac,
            mac_key,
            count: 0,
        })
    }

    /// Writes one key package; its secret is encrypted and MACed.
    ///
    /// # Errors
    /// An empty secret or a write error.
    pub fn write_package(&mut self, p: &KeyPackage) -> Result<(), ExportError> {
        self.count += 1;
        if p.secret.is_empty() {
            return Err(ExportError::Record {
                position: self.count,
                reason: "empty secret".into(),
            });
        }
        let encrypted = crypto::encrypt(self.cipher, &self.enc_key, &p.secret).map_err(|_| {
            ExportError::Record {
                position: self.count,
                reason: "encryption failed".into(),
            }
        })?;
        let value_mac = self.mac.compute(&self.mac_key, &encrypted);
        let mut s = String::with_capacity(1024);
        s.push_str("  <KeyPackage>\n");
        if p.manufacturer.is_some() || p.serial.is_some() || p.model.is_some() {
            s.push_str("    <DeviceInfo>\n");
            element(&mut s, 6, "Manufacturer", p.manufacturer.as_deref());
            element(&mut s, 6, "SerialNo", p.serial.as_deref());
            element(&mut s, 6, "Model", p.model.as_deref());
            s.push_str("    </DeviceInfo>\n");
        }
        let id = match (&p.key_id, &p.serial) {
            (Some(id), _) | (None, Some(id)) => id.clone(),
            (None, None) => format!("key-{}", self.count),
        };
        let _ = writeln!(
            s,
            "    <Key Id=\"{}\" Algorithm=\"{}\">",
            escape(&id),
            escape(&p.algorithm.uri())
        );
        element(&mut s, 6, "Issuer", p.issuer.as_deref());
        let suite = matches!(p.algorithm, Algorithm::Hotp | Algorithm::Totp)
            && p.hash != HashAlgorithm::Sha1;
        if suite || p.response.is_some() {
            s.push_str("      <AlgorithmParameters>\n");
            if suite {
                let _ = writeln!(s, "        <Suite>HMAC-{}</Suite>", p.hash.name());
            }
            if let Some(r) = p.response {
                let _ = write!(
                    s,
                    "        <ResponseFormat Length=\"{}\" Encoding=\"{}\"",
                    r.length,
                    r.encoding.as_str()
                );
                if r.check_digit {
                    s.push_str(" CheckDigits=\"true\"");
                }
                s.push_str("/>\n");
            }
            s.push_str("      </AlgorithmParameters>\n");
        }
        let _ = write!(
            s,
            concat!(
                "      <Data>\n",
                "        <Secret>\n",
                "          <EncryptedValue>\n",
                "            <xenc:EncryptionMethod Algorithm=\"{cipher}\"/>\n",
                "            <xenc:CipherData><xenc:CipherValue>{value}</xenc:CipherValue></xenc:CipherData>\n",
                "          </EncryptedValue>\n",
                "          <ValueMAC>{mac}</ValueMAC>\n",
                "        </Secret>\n",
            ),
            cipher = self.cipher.uri(),
            value = BASE64.encode(&encrypted),
            mac = BASE64.encode(&value_mac),
        );
        let plain = |s: &mut String, name: &str, v: Option<String>| {
            if let Some(v) = v {
                let _ = writeln!(s, "        <{name}><PlainValue>{v}</PlainValue></{name}>");
            }
        };
        plain(&mut s, "Counter", p.counter.map(|v| v.to_string()));
        plain(&mut s, "Time", p.time.map(|v| v.to_string()));
        plain(
            &mut s,
            "TimeInterval",
            p.time_interval.map(|v| v.to_string()),
        );
        plain(&mut s, "TimeDrift", p.time_drift.map(|v| v.to_string()));
        s.push_str("      </Data>\n");
        if p.start_date.is_some() || p.expiry_date.is_some() || p.pin_policy.is_some() {
            s.push_str("      <Policy>\n");
            element(
                &mut s,
                8,
                "StartDate",
                p.start_date.map(format_datetime).as_deref(),
            );
            element(
                &mut s,
                8,
                "ExpiryDate",
                p.expiry_date.map(format_datetime).as_deref(),
            );
            if let Some(pp) = &p.pin_policy {
                s.push_str("        <PINPolicy");
                if let Some(v) = &pp.pin_key_id {
                    let _ = write!(s, " PINKeyId=\"{}\"", escape(v));
                }
                if let Some(v) = pp.usage_mode {
                    let mode = match v {
                        PinUsageMode::Local => "Local",
                        PinUsageMode::Prepend => "Prepend",
                        PinUsageMode::Append => "Append",
                        PinUsageMode::Algorithmic => "Algorithmic",
                    };
                    let _ = write!(s, " PINUsageMode=\"{mode}\"");
                }
                for (name, v) in [
                    ("MaxFailedAttempts", pp.max_failed_attempts),
                    ("MinLength", pp.min_length),
                    ("MaxLength", pp.max_length),
                ] {
                    if let Some(v) = v {
                        let _ = write!(s, " {name}=\"{v}\"");
                    }
                }
                if let Some(e) = pp.encoding {
                    let _ = write!(s, " PINEncoding=\"{}\"", e.as_str());
                }
                s.push_str("/>\n");
            }
            s.push_str("      </Policy>\n");
        }
        s.push_str("    </Key>\n  </KeyPackage>\n");
        self.out.write_all(s.as_bytes())?;
        Ok(())
    }

    /// Closes the container and returns the output.
    ///
    /// # Errors
    /// A write error.
    pub fn finish(mut self) -> Result<W, ExportError> {
        self.out.write_all(b"</KeyContainer>\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes all `packages` to `out` as one encrypted container; returns how many.
///
/// # Errors
/// See [`PskcWriter::new`] and [`PskcWriter::write_package`].
pub fn export<W, I>(
    out: W,
    protection: ExportProtection,
    packages: I,
) -> Result<(W, usize), ExportError>
where
    W: Write,
    I: IntoIterator,
    I::Item: Borrow<KeyPackage>,
{
    let mut w = PskcWriter::new(out, protection)?;
    for p in packages {
        w.write_package(p.borrow())?;
    }
    let n = w.count;
    Ok((w.finish()?, n))
}

fn element(s: &mut String, indent: usize, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        let _ = writeln!(s, "{:indent$}<{name}>{}</{name}>", "", escape(v));
    }
}

/// XML escaping for text and attribute values.
pub(crate) fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters as references, so whitespace survives XML normalisation.
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}
