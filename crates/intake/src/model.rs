//! The parsed form of one key package: what a vendor file says about one token and its seed.

use std::fmt;

use zeroize::Zeroizing;

/// The OTP algorithm a key is used with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HOTP, RFC 4226 (`urn:ietf:params:xml:ns:keyprov:pskc:hotp`).
    Hotp,
    /// TOTP, RFC 6238 (`urn:ietf:params:xml:ns:keyprov:pskc#totp` or `...:pskc:totp`).
    Totp,
    /// OCRA, RFC 6287, with its suite string such as `OCRA-1:HOTP-SHA1-6:QN08`.
    Ocra(String),
    /// A PIN key (`urn:ietf:params:xml:ns:keyprov:pskc:pin`): the device PIN that another
    /// key package's PIN policy refers to by key id; not a token of its own.
    Pin,
}

impl Algorithm {
    /// The PSKC algorithm URI for this algorithm (the one okey writes).
    #[must_use]
    pub fn uri(&self) -> String {
        match self {
            Self::Hotp => HOTP_URI.to_owned(),
            Self::Totp => TOTP_URI.to_owned(),
            Self::Ocra(suite) => format!("{OCRA_URI_PREFIX}{suite}"),
            Self::Pin => PIN_URI.to_owned(),
        }
    }

    /// Reads an algorithm URI; `None` for anything okey does not know.
    #[must_use]
    pub fn from_uri(uri: &str) -> Option<Self> {
        let uri = uri.trim();
        match uri {
            HOTP_URI => Some(Self::Hotp),
            TOTP_URI | TOTP_URI_COLON => Some(Self::Totp),
            PIN_URI => Some(Self::Pin),
            _ => {
                let suite = uri.strip_prefix(OCRA_URI_PREFIX)?;
                valid_ocra_suite(suite).then(|| Self::Ocra(suite.to_owned()))
            }
        }
    }
}

pub(crate) const HOTP_URI: &str = "urn:ietf:params:xml:ns:keyprov:pskc:hotp";
pub(crate) const TOTP_URI: &str = "urn:ietf:params:xml:ns:keyprov:pskc#totp";
pub(crate) const TOTP_URI_COLON: &str = "urn:ietf:params:xml:ns:keyprov:pskc:totp";
pub(crate) const PIN_URI: &str = "urn:ietf:params:xml:ns:keyprov:pskc:pin";
pub(crate) const OCRA_URI_PREFIX: &str = "urn:ietf:params:xml:ns:keyprov:pskc#";

/// Shape check of an OCRA suite (RFC 6287 section 6): `OCRA-1:HOTP-SHAx-d:DataInput`.
/// The full meaning of the data input is the OTP core's business; this only refuses what
/// cannot be a suite at all.
fn valid_ocra_suite(suite: &str) -> bool {
    let mut parts = suite.split(':');
    let (Some(version), Some(function), Some(input), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if version != "OCRA-1" || input.is_empty() || !input.is_ascii() {
        return false;
    }
    let Some(rest) = function.strip_prefix("HOTP-") else {
        return false;
    };
    let Some((hash, digits)) = rest.split_once('-') else {
        return false;
    };
    let hash_ok = matches!(hash, "SHA1" | "SHA256" | "SHA512");
    let digits_ok = matches!(digits, "0" | "4" | "5" | "6" | "7" | "8" | "9" | "10");
    hash_ok && digits_ok
}

/// The hash function under HMAC for HOTP/TOTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashAlgorithm {
    /// HMAC-SHA1, the default of RFC 4226 and RFC 6238.
    #[default]
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl HashAlgorithm {
    /// The name used in otpauth URIs and PSKC `Suite` elements (`SHA1`, `SHA256`, `SHA512`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// Reads a PSKC `Suite` value (`HMAC-SHA256`, `SHA256`, any case).
    #[must_use]
    pub fn from_suite(text: &str) -> Option<Self> {
        let t = text.trim().to_ascii_uppercase();
        let t = t.strip_prefix("HMAC-").unwrap_or(&t);
        match t {
            "SHA1" | "SHA-1" => Some(Self::Sha1),
            "SHA256" | "SHA-256" => Some(Self::Sha256),
            "SHA512" | "SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

/// How a response (or PIN) is encoded (PSKC `Encoding` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Decimal digits: the only encoding HOTP/TOTP tokens use.
    Decimal,
    /// Hexadecimal.
    Hexadecimal,
    /// Letters and digits.
    Alphanumeric,
    /// Base64.
    Base64,
    /// Raw binary.
    Binary,
}

impl Encoding {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "DECIMAL" => Some(Self::Decimal),
            "HEXADECIMAL" => Some(Self::Hexadecimal),
            "ALPHANUMERIC" => Some(Self::Alphanumeric),
            "BASE64" => Some(Self::Base64),
            "BINARY" => Some(Self::Binary),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Decimal => "DECIMAL",
            Self::Hexadecimal => "HEXADECIMAL",
            Self::Alphanumeric => "ALPHANUMERIC",
            Self::Base64 => "BASE64",
            Self::Binary => "BINARY",
        }
    }
}

/// The response format: number of digits (or characters) and their encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseFormat {
    /// Length of the response (the number of digits for decimal).
    pub length: u8,
    /// Encoding of the response.
    pub encoding: Encoding,
    /// Whether a Luhn check digit is appended.
    pub check_digit: bool,
}

/// How the PIN is used with the key (PSKC `PINUsageMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinUsageMode {
    /// The PIN is checked on the device.
    Local,
    /// The PIN is sent before the OTP.
    Prepend,
    /// The PIN is sent after the OTP.
    Append,
    /// The PIN is an input of the algorithm (OCRA `P`).
    Algorithmic,
}

impl PinUsageMode {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "Local" => Some(Self::Local),
            "Prepend" => Some(Self::Prepend),
            "Append" => Some(Self::Append),
            "Algorithmic" => Some(Self::Algorithmic),
            _ => None,
        }
    }
}

/// PIN policy of a key (PSKC `Policy/PINPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PinPolicy {
    /// Key id of the PIN key package holding the initial PIN, if any.
    pub pin_key_id: Option<String>,
    /// How the PIN is used.
    pub usage_mode: Option<PinUsageMode>,
    /// Failed attempts before the key locks.
    pub max_failed_attempts: Option<u32>,
    /// Minimum PIN length.
    pub min_length: Option<u32>,
    /// Maximum PIN length.
    pub max_length: Option<u32>,
    /// Encoding of the PIN.
    pub encoding: Option<Encoding>,
}

/// Something a seed file carried that the reader did not act on, to be reported to whoever
/// imports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// An XML signature (`ds:Signature`): it is not checked, so it proves nothing.
    Signature,
    /// A key (`"a password"`, `"a pre-shared key"`) was given, but the file encrypts nothing.
    UnusedKey(&'static str),
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::Signature => f.write_str(
                "the file carries a ds:Signature, which okey does not check: it proves nothing \
                 about where the file came from",
            ),
            Ignored::UnusedKey(kind) => write!(
                f,
                "{kind} was given but the file encrypts nothing: it was not used"
            ),
        }
    }
}

/// One key package read from a PSKC container or one line of an OATH CSV file.
///
/// The seed is held in a [`Zeroizing`] buffer and never shown by `Debug`. The same type
/// is the record that [`crate::pskc::PskcWriter`] exports, so what is read can be written
/// back.
#[derive(Clone)]
pub struct KeyPackage {
    /// 1-based position in the file (package number for PSKC, line number for CSV).
    pub position: usize,
    /// PSKC `Key/@Id`.
    pub key_id: Option<String>,
    /// Device serial number, verbatim (leading zeros kept).
    pub serial: Option<String>,
    /// Device manufacturer.
    pub manufacturer: Option<String>,
    /// Device model.
    pub model: Option<String>,
    /// Issuer of the key.
    pub issuer: Option<String>,
    /// The algorithm the key is used with.
    pub algorithm: Algorithm,
    /// Hash under HMAC (PSKC `AlgorithmParameters/Suite`; SHA1 when absent).
    pub hash: HashAlgorithm,
    /// Response length and encoding (PSKC `AlgorithmParameters/ResponseFormat`).
    pub response: Option<ResponseFormat>,
    /// HOTP moving factor.
    pub counter: Option<u64>,
    /// TOTP time origin (PSKC `Data/Time`).
    pub time: Option<u64>,
    /// TOTP step in seconds (PSKC `Data/TimeInterval`; RFC 6030 says 30 when absent).
    pub time_interval: Option<u32>,
    /// Known clock drift of the device, in steps (PSKC `Data/TimeDrift`).
    pub time_drift: Option<i64>,
    /// Start of validity, Unix seconds (PSKC `Policy/StartDate`, else `DeviceInfo/StartDate`).
    pub start_date: Option<i64>,
    /// End of validity, Unix seconds (PSKC `Policy/ExpiryDate`, else `DeviceInfo/ExpiryDate`).
    pub expiry_date: Option<i64>,
    /// The user the key is meant for (PSKC `Key/UserId`, else `DeviceInfo/UserId`), verbatim.
    pub user_id: Option<String>,
    /// PIN policy.
    pub pin_policy: Option<PinPolicy>,
    /// The seed.
    pub secret: Zeroizing<Vec<u8>>,
}

impl KeyPackage {
    /// A package with the given algorithm and seed and nothing else set.
    #[must_use]
    pub fn new(algorithm: Algorithm, secret: Zeroizing<Vec<u8>>) -> Self {
        Self {
            position: 0,
            key_id: None,
            serial: None,
            manufacturer: None,
            model: None,
            issuer: None,
            algorithm,
            hash: HashAlgorithm::Sha1,
            response: None,
            counter: None,
            time: None,
            time_interval: None,
            time_drift: None,
            start_date: None,
            expiry_date: None,
            user_id: None,
            pin_policy: None,
            secret,
        }
    }

    /// Number of decimal digits of the OTP, when the response format is decimal.
    #[must_use]
    pub fn digits(&self) -> Option<u8> {
        self.response
            .filter(|r| r.encoding == Encoding::Decimal)
            .map(|r| r.length)
    }

    /// A short public name of the package for messages: serial, key id, position.
    #[must_use]
    pub fn label(&self) -> crate::error::PackageRef {
        crate::error::PackageRef {
            position: crate::error::Position::Package(self.position),
            key_id: self.key_id.clone(),
            serial: self.serial.clone(),
        }
    }
}

impl fmt::Debug for KeyPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPackage")
            .field("position", &self.position)
            .field("key_id", &self.key_id)
            .field("serial", &self.serial)
            .field("manufacturer", &self.manufacturer)
            .field("model", &self.model)
            .field("issuer", &self.issuer)
            .field("algorithm", &self.algorithm)
            .field("hash", &self.hash)
            .field("response", &self.response)
            .field("counter", &self.counter)
            .field("time", &self.time)
            .field("time_interval", &self.time_interval)
            .field("time_drift", &self.time_drift)
            .field("start_date", &self.start_date)
            .field("expiry_date", &self.expiry_date)
            .field("user_id", &self.user_id)
            .field("pin_policy", &self.pin_policy)
            .field(
                "secret",
                &format_args!("<{} bytes redacted>", self.secret.len()),
            )
            .finish()
    }
}

/// Parses an `xs:dateTime` (`2006-05-01T00:00:00Z`, optional fraction, `Z` or `±hh:mm`,
/// no zone read as UTC) into Unix seconds.
pub(crate) fn parse_datetime(text: &str) -> Option<i64> {
    let t = text.trim().as_bytes();
    let num = |s: &[u8]| -> Option<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    if t.len() < 19 || t.get(4) != Some(&b'-') || t.get(7) != Some(&b'-') {
        return None;
    }
    if t.get(10) != Some(&b'T') || t.get(13) != Some(&b':') || t.get(16) != Some(&b':') {
        return None;
    }
    let year = num(t.get(0..4)?)?;
    let month = num(t.get(5..7)?)?;
    let day = num(t.get(8..10)?)?;
    let hour = num(t.get(11..13)?)?;
    let minute = num(t.get(14..16)?)?;
    let second = num(t.get(17..19)?)?;
    let mut rest = t.get(19..)?;
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = frac.get(digits..)?;
    }
    let offset = match rest {
        b"" | b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = num(&[*h1, *h2])?;
            let om = num(&[*m1, *m2])?;
            if oh > 14 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let max_day = *month_days.get(usize::try_from(month - 1).ok()?)?;
    if day < 1 || day > max_day {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats Unix seconds as `xs:dateTime` in UTC (`YYYY-MM-DDThh:mm:ssZ`).
pub fn format_datetime(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_date(text: &str, expected: Option<i64>) {
        assert_eq!(parse_datetime(text), expected, "{text}");
    }

    #[test]
    fn datetimes() {
        // Reference values: `date -u -d ... +%s`.
        check_date("1970-01-01T00:00:00Z", Some(0));
        check_date("2006-05-01T00:00:00Z", Some(1_146_441_600));
        check_date("2006-05-31T00:00:00Z", Some(1_149_033_600));
        check_date("2000-02-29T12:34:56.789Z", Some(951_827_696));
        check_date("2000-02-29T14:34:56+02:00", Some(951_827_696));
        check_date("2000-02-29T12:34:56", Some(951_827_696));
        check_date("2001-02-29T00:00:00Z", None);
        check_date("2006-13-01T00:00:00Z", None);
        check_date("2006-05-01", None);
        check_date("2006-05-01T00:00:00X", None);
        check_date("２006-05-01T00:00:00Z", None);
        for t in [0, 951_827_696, 1_146_441_600, 4_102_444_800] {
            assert_eq!(parse_datetime(&format_datetime(t)), Some(t));
        }
    }

    #[test]
    fn algorithms() {
        assert_eq!(Algorithm::from_uri(HOTP_URI), Some(Algorithm::Hotp));
        assert_eq!(Algorithm::from_uri(TOTP_URI), Some(Algorithm::Totp));
        assert_eq!(Algorithm::from_uri(TOTP_URI_COLON), Some(Algorithm::Totp));
        assert_eq!(
            Algorithm::from_uri("urn:ietf:params:xml:ns:keyprov:pskc#OCRA-1:HOTP-SHA512-8:C-QN08"),
            Some(Algorithm::Ocra("OCRA-1:HOTP-SHA512-8:C-QN08".into()))
        );
        assert_eq!(
            Algorithm::from_uri("urn:ietf:params:xml:ns:keyprov:pskc#OCRA-2:x:y"),
            None
        );
        assert_eq!(
            Algorithm::from_uri("urn:ietf:params:xml:ns:keyprov:pskc:securid-aes"),
            None
        );
        for a in [
            Algorithm::Hotp,
            Algorithm::Totp,
            Algorithm::Pin,
            Algorithm::Ocra("OCRA-1:HOTP-SHA1-6:QN08".into()),
        ] {
            assert_eq!(Algorithm::from_uri(&a.uri()), Some(a));
        }
    }

    #[test]
    fn debug_hides_secret() {
        let p = KeyPackage::new(
            Algorithm::Hotp,
            Zeroizing::new(b"super-secret-seed".to_vec()),
        );
        let s = format!("{p:?}");
        assert!(!s.contains("super"), "{s}");
        assert!(!s.contains("115, 117"), "{s}");
        assert!(s.contains("17 bytes redacted"));
    }
}
