//! The otpauth:// Key URI of authenticator apps, and its QR code (PNG and terminal).
//!
//! Format: `otpauth://TYPE/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`
//! (or `&counter=N` for HOTP), per the Key URI Format of Google Authenticator. The URI
//! carries the seed, so [`KeyUri`] zeroizes it, never prints it in `Debug`, and hands the
//! text out only as [`Zeroizing`] buffers.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use qrcode::{EcLevel, QrCode};
use zeroize::Zeroizing;

use crate::error::UriError;
use crate::model::HashAlgorithm;

/// Time- or counter-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpKind {
    /// TOTP with the period in seconds.
    Totp {
        /// Step in seconds (30 in most apps).
        period: u32,
    },
    /// HOTP with the initial counter.
    Hotp {
        /// Counter the app starts from.
        counter: u64,
    },
}

/// A provisioning URI for a software token.
#[derive(Clone)]
pub struct KeyUri {
    kind: OtpKind,
    issuer: Option<String>,
    account: String,
    secret: Zeroizing<Vec<u8>>,
    algorithm: HashAlgorithm,
    digits: u8,
}

impl fmt::Debug for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyUri")
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("account", &self.account)
            .field("secret", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .finish()
    }
}

/// Builder of a [`KeyUri`]; defaults: TOTP, 30 s period, SHA1, 6 digits.
#[derive(Clone)]
pub struct KeyUriBuilder {
    inner: KeyUri,
}

impl fmt::Debug for KeyUriBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyUriBuilder").field(&self.inner).finish()
    }
}

impl KeyUriBuilder {
    /// Starts a URI for `account` with `secret`.
    #[must_use]
    pub fn new(account: impl Into<String>, secret: Zeroizing<Vec<u8>>) -> Self {
        Self {
            inner: KeyUri {
                kind: OtpKind::Totp { period: 30 },
                issuer: None,
                account: account.into(),
                secret,
                algorithm: HashAlgorithm::Sha1,
                digits: 6,
            },
        }
    }

    /// Sets the issuer (shown by the app; written in the label and the `issuer` parameter).
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.inner.issuer = Some(issuer.into());
        self
    }

    /// TOTP with this period in seconds.
    #[must_use]
    pub fn totp(mut self, period: u32) -> Self {
        self.inner.kind = OtpKind::Totp { period };
        self
    }

    /// HOTP starting at this counter.
    #[must_use]
    pub fn hotp(mut self, counter: u64) -> Self {
        self.inner.kind = OtpKind::Hotp { counter };
        self
    }

    /// Hash algorithm.
    #[must_use]
    pub fn algorithm(mut self, algorithm: HashAlgorithm) -> Self {
        self.inner.algorithm = algorithm;
        self
    }

    /// Number of digits (6, 7 or 8).
    #[must_use]
    pub fn digits(mut self, digits: u8) -> Self {
        self.inner.digits = digits;
        self
    }

    /// Checks and returns the URI.
    ///
    /// # Errors
    /// Empty account, a colon or a control character in issuer or account, a secret
    /// outside 10..=64 bytes, digits other than 6–8, a zero period.
    pub fn build(self) -> Result<KeyUri, UriError> {
        let u = self.inner;
        if u.account.trim().is_empty() {
            return Err(UriError::EmptyAccount);
        }
        if u.account.contains(':') {
            return Err(UriError::Colon("the account"));
        }
        if u.issuer.as_deref().is_some_and(|i| i.contains(':')) {
            return Err(UriError::Colon("the issuer"));
        }
        if u.account.chars().any(char::is_control) {
            return Err(UriError::ControlCharacter("the account"));
        }
        if u.issuer
            .as_deref()
            .is_some_and(|i| i.chars().any(char::is_control))
        {
            return Err(UriError::ControlCharacter("the issuer"));
        }
        if !(10..=64).contains(&u.secret.len()) {
            return Err(UriError::SecretLength(u.secret.len()));
        }
        if !(6..=8).contains(&u.digits) {
            return Err(UriError::Digits(u.digits));
        }
        if u.kind == (OtpKind::Totp { period: 0 }) {
            return Err(UriError::Period);
        }
        Ok(u)
    }
}

impl KeyUri {
    /// Starts a builder (see [`KeyUriBuilder`]).
    #[must_use]
    pub fn builder(account: impl Into<String>, secret: Zeroizing<Vec<u8>>) -> KeyUriBuilder {
        KeyUriBuilder::new(account, secret)
    }

    /// TOTP or HOTP and its parameter.
    #[must_use]
    pub fn kind(&self) -> OtpKind {
        self.kind
    }

    /// The issuer.
    #[must_use]
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The account name.
    #[must_use]
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The hash algorithm.
    #[must_use]
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// Digits.
    #[must_use]
    pub fn digits(&self) -> u8 {
        self.digits
    }

    /// The seed (for the caller that seals it into the store).
    #[must_use]
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The URI text.
    #[must_use]
    pub fn to_uri(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(160));
        s.push_str(match self.kind {
            OtpKind::Totp { .. } => "otpauth://totp/",
            OtpKind::Hotp { .. } => "otpauth://hotp/",
        });
        if let Some(issuer) = &self.issuer {
            percent_encode(issuer, &mut s);
            s.push(':');
        }
        percent_encode(&self.account, &mut s);
        s.push_str("?secret=");
        let b32 = Zeroizing::new(BASE32_NOPAD.encode(&self.secret));
        s.push_str(&b32);
        if let Some(issuer) = &self.issuer {
            s.push_str("&issuer=");
            percent_encode(issuer, &mut s);
        }
        s.push_str("&algorithm=");
        s.push_str(self.algorithm.name());
        s.push_str("&digits=");
        s.push_str(&self.digits.to_string());
        match self.kind {
            OtpKind::Totp { period } => {
                s.push_str("&period=");
                s.push_str(&period.to_string());
            }
            OtpKind::Hotp { counter } => {
                s.push_str("&counter=");
                s.push_str(&counter.to_string());
            }
        }
        s
    }

    /// Reads an otpauth URI (for checks and re-display); the result is validated like
    /// [`KeyUriBuilder::build`].
    ///
    /// # Errors
    /// A malformed URI (among others: a percent escape that is not `%` and two hex digits,
    /// a `digits`, `period` or `counter` that is not plain decimal digits) or invalid
    /// parameters (among others: a control character in the label or issuer, escaped or
    /// not).
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        let bad = |m: &str| UriError::Malformed(m.to_owned());
        let rest = uri
            .strip_prefix("otpauth://")
            .ok_or_else(|| bad("not otpauth://"))?;
        let (kind, rest) = rest.split_once('/').ok_or_else(|| bad("no type"))?;
        let (label, query) = rest.split_once('?').ok_or_else(|| bad("no parameters"))?;
        let label =
            percent_decode(label).ok_or_else(|| bad("bad percent-encoding in the label"))?;
        let (label_issuer, account) = match label.split_once(':') {
            Some((i, a)) => (Some(i.to_owned()), a.trim_start().to_owned()),
            None => (None, label.clone()),
        };
        let mut secret = None;
        let mut issuer = None;
        let mut algorithm = HashAlgorithm::Sha1;
        let mut digits = 6u8;
        let mut period = None;
        let mut counter = None;
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "secret" => {
                    let v = v.trim_end_matches('=').to_ascii_uppercase();
                    let decoded = BASE32_NOPAD
                        .decode(v.as_bytes())
                        .map_err(|_| bad("secret is not base32"))?;
                    secret = Some(Zeroizing::new(decoded));
                }
                "issuer" => {
                    issuer = Some(
                        percent_decode(v).ok_or_else(|| bad("bad percent-encoding in issuer"))?,
                    )
                }
                "algorithm" => {
                    algorithm =
                        HashAlgorithm::from_suite(v).ok_or_else(|| bad("unknown algorithm"))?;
                }
                "digits" => digits = decimal(v).ok_or_else(|| bad("digits"))?,
                "period" => period = Some(decimal(v).ok_or_else(|| bad("period"))?),
                "counter" => counter = Some(decimal(v).ok_or_else(|| bad("counter"))?),
                _ => {}
            }
        }
        if let (Some(a), Some(b)) = (&label_issuer, &issuer)
            && a != b
        {
            return Err(bad("issuer in the label and the parameter differ"));
        }
        let secret = secret.ok_or_else(|| bad("no secret"))?;
        let mut b = KeyUriBuilder::new(account, secret)
            .algorithm(algorithm)
            .digits(digits);
        if let Some(i) = issuer.or(label_issuer) {
            b = b.issuer(i);
        }
        b = match kind {
            "totp" => b.totp(period.unwrap_or(30)),
            "hotp" => b.hotp(counter.ok_or_else(|| bad("hotp without counter"))?),
            _ => return Err(bad("type is neither totp nor hotp")),
        };
        b.build()
    }

    fn qr(&self) -> Result<QrCode, UriError> {
        let uri = self.to_uri();
        QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M)
            .map_err(|e| UriError::Qr(e.to_string()))
    }

    /// The QR code of the URI as a PNG image: 8-bit greyscale, `scale` pixels a module,
    /// a 4-module quiet zone.
    ///
    /// # Errors
    /// The URI does not fit in a QR code, or PNG encoding failed.
    pub fn qr_png(&self, scale: u32) -> Result<Zeroizing<Vec<u8>>, UriError> {
        let code = self.qr()?;
        let colors = code.to_colors();
        let width = code.width();
        let scale =
            usize::try_from(scale.clamp(1, 64)).map_err(|e| UriError::Png(e.to_string()))?;
        let quiet = 4;
        let side = (width + 2 * quiet) * scale;
        let mut pixels = Zeroizing::new(vec![255u8; side * side]);
        for (i, c) in colors.iter().enumerate() {
            if *c == qrcode::Color::Dark {
                let (mx, my) = (i % width + quiet, i / width + quiet);
                for dy in 0..scale {
                    let row = (my * scale + dy) * side;
                    if let Some(span) = pixels.get_mut(row + mx * scale..row + (mx + 1) * scale) {
                        span.fill(0);
                    }
                }
            }
        }
        let side32 = u32::try_from(side).map_err(|e| UriError::Png(e.to_string()))?;
        let mut out = Zeroizing::new(Vec::new());
        {
            let mut enc = png::Encoder::new(&mut *out, side32, side32);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc
                .write_header()
                .map_err(|e| UriError::Png(e.to_string()))?;
            w.write_image_data(&pixels)
                .map_err(|e| UriError::Png(e.to_string()))?;
            w.finish().map_err(|e| UriError::Png(e.to_string()))?;
        }
        Ok(out)
    }

    /// The QR code of the URI as an SVG image for inline HTML: one `path` of unit squares
    /// (dark modules) on a white square, a 4-module quiet zone, no style attribute or script
    /// (a strict Content-Security-Policy allows it). `label` is its accessible name.
    ///
    /// # Errors
    /// The URI does not fit in a QR code.
    pub fn qr_svg(&self, label: &str) -> Result<Zeroizing<String>, UriError> {
        let code = self.qr()?;
        let colors = code.to_colors();
        let width = code.width();
        let quiet = 4;
        let side = width + 2 * quiet;
        let escaped: String = label
            .chars()
            .map(|c| match c {
                '&' => "&amp;".to_owned(),
                '<' => "&lt;".to_owned(),
                '>' => "&gt;".to_owned(),
                '"' => "&quot;".to_owned(),
                c => c.to_string(),
            })
            .collect();
        let mut d = Zeroizing::new(String::with_capacity(colors.len() * 6));
        for (i, c) in colors.iter().enumerate() {
            if *c == qrcode::Color::Dark {
                let (x, y) = (i % width + quiet, i / width + quiet);
                d.push_str(&format!("M{x} {y}h1v1h-1z"));
            }
        }
        Ok(Zeroizing::new(format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" \
             width=\"{px}\" height=\"{px}\" role=\"img\" aria-label=\"{escaped}\" \
             shape-rendering=\"crispEdges\"><rect width=\"{side}\" height=\"{side}\" \
             fill=\"#fff\"/><path fill=\"#000\" d=\"{}\"/></svg>",
            d.as_str(),
            px = side * 6,
        )))
    }

    /// The QR code for a terminal, two modules a character with Unicode half blocks.
    ///
    /// Dark modules are drawn as blocks, so on a dark-background terminal pass
    /// `invert = true` (light modules drawn) to keep the dark-on-light contrast readers
    /// expect. A 2-module quiet zone surrounds the code.
    ///
    /// # Errors
    /// The URI does not fit in a QR code.
    pub fn qr_terminal(&self, invert: bool) -> Result<Zeroizing<String>, UriError> {
        let code = self.qr()?;
        let colors = code.to_colors();
        let width = code.width();
        let quiet = 2usize;
        let side = width + 2 * quiet;
        let drawn = |x: usize, y: usize| -> bool {
            let dark = x >= quiet
                && y >= quiet
                && x < quiet + width
                && y < quiet + width
                && colors.get((y - quiet) * width + (x - quiet)) == Some(&qrcode::Color::Dark);
            dark != invert
        };
        let mut s = Zeroizing::new(String::with_capacity((side + 1) * side.div_ceil(2) * 3));
        for y in (0..side).step_by(2) {
            for x in 0..side {
                let top = drawn(x, y);
                let bottom = y + 1 < side && drawn(x, y + 1);
                s.push(match (top, bottom) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
            s.push('\n');
        }
        Ok(s)
    }
}

/// Percent-encoding of everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str, out: &mut String) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

const HEX: [u8; 16] = *b"0123456789ABCDEF";

/// A number in plain ASCII decimal digits (no sign, no space), in range for `T`.
fn decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The value of one ASCII hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes, each exactly two ASCII hex digits, into UTF-8 text.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex_digit(*bytes.get(i + 1)?)?;
            let lo = hex_digit(*bytes.get(i + 2)?)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
