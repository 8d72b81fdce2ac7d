//! OCRA (RFC 6287): suite parsing, DataInput assembly, response computation and verification.
//!
//! A suite such as `OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1` fixes the hash, the response length and
//! which inputs go into the MAC. DataInput is `suite ‖ 0x00 ‖ C(8) ‖ Q(128) ‖ P ‖ S ‖ T(8)`,
//! with each optional part present exactly when the suite names it.
//!
//! The numeric-challenge encoding is the classic trap: RFC 6287's reference code turns the
//! decimal challenge into an integer, prints it as upper-case hex *without leading zeros*, and
//! right-pads that hex text with `0` to 256 digits. An odd number of hex digits therefore leaves
//! a half-filled byte (`22222222` → `153158E` → `15 31 58 E0`). We reproduce that exactly.

use std::fmt;
use std::str::FromStr;

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::OcraError;
use crate::code::Digits;
use crate::key::{Algorithm, OtpKey};
use crate::verify::{CodeVerified, MAX_COUNTER, Method, OtpState};

/// How a challenge question is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuestionKind {
    /// `QA`: printable ASCII.
    Alphanumeric,
    /// `QN`: decimal digits.
    Numeric,
    /// `QH`: hexadecimal digits.
    Hex,
}

/// A parsed OCRA suite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcraSuite {
    text: String,
    algorithm: Algorithm,
    /// `None` for `-0`: no truncation, the whole MAC is the response.
    digits: Option<Digits>,
    counter: bool,
    question_kind: QuestionKind,
    question_max: u8,
    pin: Option<Algorithm>,
    session_len: Option<u16>,
    time_step: Option<u64>,
}

const Q_FIELD: usize = 128;

impl FromStr for OcraSuite {
    type Err = OcraError;

    fn from_str(text: &str) -> Result<Self, OcraError> {
        let bad = |part: &str, why: &'static str| OcraError::Suite {
            part: part.chars().take(40).collect(),
            why,
        };
        let mut parts = text.split(':');
        let (Some(version), Some(crypto), Some(data), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(text, "a suite has three parts separated by ':'"));
        };
        if version != "OCRA-1" {
            return Err(bad(version, "the only OCRA version is OCRA-1"));
        }

        // CryptoFunction: HOTP-SHA{1,256,512}-{0,4..10}
        let mut cf = crypto.split('-');
        let (Some("HOTP"), Some(hash), Some(trunc), None) =
            (cf.next(), cf.next(), cf.next(), cf.next())
        else {
            return Err(bad(crypto, "expected HOTP-SHA1|SHA256|SHA512-<digits>"));
        };
        let algorithm =
            parse_sha(hash).ok_or_else(|| bad(hash, "hash must be SHA1, SHA256 or SHA512"))?;
        let digits = match parse_decimal(trunc, 2) {
            Some(0) if trunc == "0" => None,
            Some(d @ 4..=10) => Some(
                Digits::new_ocra(d as u8).map_err(|_| bad(trunc, "digits must be 0 or 4 to 10"))?,
            ),
            _ => return Err(bad(trunc, "digits must be 0 or 4 to 10")),
        };

        // DataInput: [C-]QFxx[-PH][-Snnn][-TG], in this order.
        let mut items = data.split('-').peekable();
        let counter = items.next_if_eq(&"C").is_some();
        let q = items
            .next()
            .ok_or_else(|| bad(data, "a question format QA/QN/QH is required"))?;
        let qb = q.as_bytes();
        let question_kind = match (qb.first(), qb.get(1)) {
            (Some(b'Q'), Some(b'A')) => QuestionKind::Alphanumeric,
            (Some(b'Q'), Some(b'N')) => QuestionKind::Numeric,
            (Some(b'Q'), Some(b'H')) => QuestionKind::Hex,
            _ => {
                return Err(bad(
                    q,
                    "expected a question format QA, QN or QH followed by 04..64",
                ));
            }
        };
        let question_max = q
            .get(2..)
            .filter(|s| s.len() == 2)
            .and_then(|s| parse_decimal(s, 2))
            .filter(|n| (4..=64).contains(n))
            .ok_or_else(|| bad(q, "question length must be two digits from 04 to 64"))?
            as u8;

        let mut pin = None;
        let mut session_len = None;
        let mut time_step = None;
        let mut stage = 0u8; // 1 after P, 2 after S, 3 after T: enforces the RFC order
        for item in items {
            // Split after the first character, not byte: a part may hold any UTF-8.
            let (head, rest) = item.split_at(item.chars().next().map_or(0, char::len_utf8));
            match head {
                "P" if stage < 1 => {
                    pin =
                        Some(parse_sha(rest).ok_or_else(|| {
                            bad(item, "PIN hash must be PSHA1, PSHA256 or PSHA512")
                        })?);
                    stage = 1;
                }
                "S" if stage < 2 => {
                    let n = Some(rest)
                        .filter(|r| r.len() == 3)
                        .and_then(|r| parse_decimal(r, 3))
                        .filter(|n| (1..=512).contains(n))
                        .ok_or_else(|| {
                            bad(item, "session length must be three digits from 001 to 512")
                        })?;
                    session_len = Some(n as u16);
                    stage = 2;
                }
                "T" if stage < 3 => {
                    let (num, unit) =
                        rest.split_at(rest.char_indices().last().map_or(0, |(i, _)| i));
                    let n = parse_decimal(num, 2)
                        .ok_or_else(|| bad(item, "time step must be T<number><S|M|H>"))?;
                    let seconds = match unit {
                        "S" if (1..=59).contains(&n) => n,
                        "M" if (1..=59).contains(&n) => n * 60,
                        "H" if (1..=48).contains(&n) => n * 3600,
                        _ => return Err(bad(item, "time step must be 1-59S, 1-59M or 1-48H")),
                    };
                    time_step = Some(seconds);
                    stage = 3;
                }
                _ => {
                    return Err(bad(
                        item,
                        "unexpected or out-of-order DataInput part (order: C, Q, P, S, T)",
                    ));
                }
            }
        }

        Ok(OcraSuite {
            text: text.to_owned(),
            algorithm,
            digits,
            counter,
            question_kind,
            question_max,
            pin,
            session_len,
            time_step,
        })
    }
}

fn parse_sha(s: &str) -> Option<Algorithm> {
    match s {
        "SHA1" => Some(Algorithm::Sha1),
        "SHA256" => Some(Algorithm::Sha256),
        "SHA512" => Some(Algorithm::Sha512),
        _ => None,
    }
}

fn parse_decimal(s: &str, max_len: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for OcraSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The inputs of one OCRA computation besides the key and the suite.
#[derive(Clone, Copy, Debug, Default)]
pub struct OcraInput<'a> {
    /// Counter C, required exactly when the suite has `C`.
    pub counter: Option<u64>,
    /// The question (for mutual mode, the two challenges concatenated).
    pub question: &'a str,
    /// The hash of the PIN, required exactly when the suite has `P`; its length must match.
    pub pin_hash: Option<&'a [u8]>,
    /// Session information, required exactly when the suite has `S`; at most `nnn` bytes, left
    /// padded with zeros.
    pub session: Option<&'a [u8]>,
    /// Timestamp in the suite's time steps, required exactly when the suite has `T`.
    pub timestamp: Option<u64>,
}

/// An OCRA response: decimal digits, or for `-0` suites the whole MAC in lower-case hex.
#[derive(Clone, PartialEq, Eq)]
pub struct OcraResponse(String);

impl OcraResponse {
    /// The response text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OcraResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OcraResponse({} chars)", self.0.len())
    }
}

impl fmt::Display for OcraResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl OcraSuite {
    /// The suite text as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// The hash under HMAC.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    /// Response digits; `None` means no truncation.
    pub fn digits(&self) -> Option<Digits> {
        self.digits
    }
    /// Whether the suite uses a counter.
    pub fn has_counter(&self) -> bool {
        self.counter
    }
    /// The question format and its maximum length.
    pub fn question(&self) -> (QuestionKind, u8) {
        (self.question_kind, self.question_max)
    }
    /// The PIN hash function, if the suite is PIN-bound.
    pub fn pin_hash(&self) -> Option<Algorithm> {
        self.pin
    }
    /// The session information length in bytes, if any.
    pub fn session_len(&self) -> Option<u16> {
        self.session_len
    }
    /// The time step in seconds, if the suite is time-based.
    pub fn time_step(&self) -> Option<u64> {
        self.time_step
    }

    /// Convert a Unix time to the suite's time steps.
    pub fn timestamp_at(&self, unix_seconds: u64) -> Result<u64, OcraError> {
        let step = self.time_step.ok_or(OcraError::Unexpected("timestamp"))?;
        Ok(unix_seconds / step)
    }

    /// Check a single challenge as a server would issue it: the suite's alphabet, 4 to `xx`
    /// characters.
    pub fn check_challenge(&self, question: &str) -> Result<(), OcraError> {
        let len = question.len();
        if len < 4 || len > usize::from(self.question_max) {
            return Err(OcraError::Question(
                "length outside 4 to the suite's maximum",
            ));
        }
        question_nibbles(self.question_kind, question).map(|_| ())
    }

    /// Assemble DataInput.
    fn data_input(&self, input: &OcraInput<'_>) -> Result<Zeroizing<Vec<u8>>, OcraError> {
        let mut data = Zeroizing::new(Vec::with_capacity(
            self.text.len() + 1 + 8 + Q_FIELD + 64 + usize::from(self.session_len.unwrap_or(0)) + 8,
        ));
        data.extend_from_slice(self.text.as_bytes());
        data.push(0);
        match (self.counter, input.counter) {
            (true, Some(c)) => data.extend_from_slice(&c.to_be_bytes()),
            (true, None) => return Err(OcraError::Missing("counter")),
            (false, Some(_)) => return Err(OcraError::Unexpected("counter")),
            (false, None) => {}
        }
        let nibbles = question_nibbles(self.question_kind, input.question)?;
        let mut q = [0u8; Q_FIELD];
        for (i, n) in nibbles.iter().enumerate() {
            let shift = if i % 2 == 0 { 4 } else { 0 };
            if let Some(byte) = q.get_mut(i / 2) {
                *byte |= n << shift;
            }
        }
        data.extend_from_slice(&q);
        match (self.pin, input.pin_hash) {
            (Some(alg), Some(hash)) if hash.len() == alg.output_len() => {
                data.extend_from_slice(hash)
            }
            (Some(_), Some(_)) => return Err(OcraError::PinHashLength),
            (Some(_), None) => return Err(OcraError::Missing("PIN hash")),
            (None, Some(_)) => return Err(OcraError::Unexpected("PIN hash")),
            (None, None) => {}
        }
        match (self.session_len, input.session) {
            (Some(n), Some(s)) if s.len() <= usize::from(n) => {
                data.extend(std::iter::repeat_n(0u8, usize::from(n) - s.len()));
                data.extend_from_slice(s);
            }
            (Some(_), Some(_)) => return Err(OcraError::SessionTooLong),
            (Some(_), None) => return Err(OcraError::Missing("session information")),
            (None, Some(_)) => return Err(OcraError::Unexpected("session information")),
            (None, None) => {}
        }
        match (self.time_step, input.timestamp) {
            (Some(_), Some(t)) => data.extend_from_slice(&t.to_be_bytes()),
            (Some(_), None) => return Err(OcraError::Missing("timestamp")),
            (None, Some(_)) => return Err(OcraError::Unexpected("timestamp")),
            (None, None) => {}
        }
        Ok(data)
    }
}

/// The question as the hex digits (nibbles) that go, left-aligned, into the 128-byte Q field.
fn question_nibbles(kind: QuestionKind, question: &str) -> Result<Vec<u8>, OcraError> {
    let nibbles = match kind {
        QuestionKind::Alphanumeric => {
            if !question.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(OcraError::Question("QA challenges are printable ASCII"));
            }
            question.bytes().flat_map(|b| [b >> 4, b & 0x0f]).collect()
        }
        QuestionKind::Hex => question
            .chars()
            .map(|c| c.to_digit(16).map(|d| d as u8))
            .collect::<Option<Vec<u8>>>()
            .ok_or(OcraError::Question("QH challenges are hexadecimal digits"))?,
        QuestionKind::Numeric => {
            if question.is_empty() || !question.bytes().all(|b| b.is_ascii_digit()) {
                return Err(OcraError::Question("QN challenges are decimal digits"));
            }
            decimal_to_hex_nibbles(question)
        }
    };
    if nibbles.len() > 2 * Q_FIELD {
        return Err(OcraError::Question(
            "the question does not fit in 128 bytes",
        ));
    }
    Ok(nibbles)
}

/// Decimal text → the hex digits of the integer, most significant first, without leading zeros
/// (zero has none at all). Arbitrary length: schoolbook multiply-by-ten over base-16 digits.
fn decimal_to_hex_nibbles(decimal: &str) -> Vec<u8> {
    // Little-endian base-16 digits.
    let mut digits: Vec<u8> = Vec::with_capacity(decimal.len());
    for b in decimal.bytes() {
        let mut carry = u32::from(b - b'0');
        for d in digits.iter_mut() {
            let v = u32::from(*d) * 10 + carry;
            *d = (v & 0x0f) as u8;
            carry = v >> 4;
        }
        while carry > 0 {
            digits.push((carry & 0x0f) as u8);
            carry >>= 4;
        }
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    digits.reverse();
    digits
}

/// Compute the OCRA response for `input`.
pub fn ocra(
    key: &OtpKey,
    suite: &OcraSuite,
    input: &OcraInput<'_>,
) -> Result<OcraResponse, OcraError> {
    if key.algorithm() != suite.algorithm {
        return Err(OcraError::KeyAlgorithm);
    }
    let data = suite.data_input(input)?;
    let mac = key.mac(&data);
    Ok(OcraResponse(match suite.digits {
        Some(d) => format!("{:0w$}", d.reduce(mac.truncate()), w = usize::from(d.get())),
        None => mac.as_bytes().iter().map(|b| format!("{b:02x}")).collect(),
    }))
}

/// Verify an OCRA response.
///
/// Counter suites scan `counter_window` counters from `state.counter` (a response for a lower
/// counter never matches, nor does [`MAX_COUNTER`], whose successor could not be stored) and
/// advance the counter past the match. Time suites scan
/// `time_skew` steps either side of `input.timestamp`. Every candidate is computed and compared in
/// constant time. Non-counter suites leave the state unchanged: their replay protection is the
/// single-use challenge the caller issued.
pub fn verify_ocra(
    key: &OtpKey,
    suite: &OcraSuite,
    state: &OtpState,
    input: &OcraInput<'_>,
    counter_window: u32,
    time_skew: u32,
    response: &str,
) -> Result<Option<CodeVerified>, OcraError> {
    let expected_len = suite
        .digits
        .map_or(2 * suite.algorithm.output_len(), |d| usize::from(d.get()));
    let well_formed = match suite.digits {
        Some(_) => response.bytes().all(|b| b.is_ascii_digit()),
        None => response.bytes().all(|b| b.is_ascii_hexdigit()),
    };
    if !well_formed || response.len() != expected_len {
        return Err(OcraError::ResponseFormat);
    }
    let response = response.to_ascii_lowercase();
    let counters: u64 = if suite.counter {
        u64::from(counter_window.max(1))
    } else {
        1
    };
    let times: Vec<Option<u64>> = match (suite.time_step, input.timestamp) {
        (Some(_), Some(t)) => {
            let lo = t.saturating_sub(u64::from(time_skew));
            (lo..=t.saturating_add(u64::from(time_skew)))
                .map(Some)
                .collect()
        }
        _ => vec![input.timestamp],
    };
    let mut found = Choice::from(0);
    let mut matched = 0u64;
    for i in 0..counters {
        let counter = if suite.counter {
            match state.counter.checked_add(i) {
                Some(c) => Some(c),
                None => break,
            }
        } else {
            None
        };
        for &timestamp in &times {
            let candidate = ocra(
                key,
                suite,
                &OcraInput {
                    counter,
                    timestamp,
                    ..*input
                },
            )?;
            // A counter whose successor cannot be stored never matches (the counter is public).
            let storable = Choice::from(u8::from(counter.is_none_or(|c| c < MAX_COUNTER)));
            let hit = candidate.0.as_bytes().ct_eq(response.as_bytes()) & storable & !found;
            matched.conditional_assign(&counter.unwrap_or(0), hit);
            found |= hit;
        }
    }
    if !bool::from(found) {
        return Ok(None);
    }
    let after = if suite.counter {
        OtpState {
            counter: matched.checked_add(1).ok_or(OcraError::CounterExhausted)?,
            ..*state
        }
    } else {
        *state
    };
    Ok(Some(CodeVerified::issue(
        *state,
        after,
        matched,
        Method::Login,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_suite(text: &str, expected: Result<(), &str>) {
        let parsed = text.parse::<OcraSuite>();
        match (parsed, expected) {
            (Ok(_), Ok(())) => {}
            (Err(OcraError::Suite { part, .. }), Err(bad_part)) => {
                assert_eq!(part, bad_part, "{text}")
            }
            (other, exp) => panic!("{text}: got {other:?}, expected {exp:?}"),
        }
    }

    #[test]
    fn suites_parse_or_name_the_bad_part() {
        check_suite("OCRA-1:HOTP-SHA1-6:QN08", Ok(()));
        check_suite("OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1", Ok(()));
        check_suite("OCRA-1:HOTP-SHA512-8:QA10-T1M", Ok(()));
        check_suite("OCRA-1:HOTP-SHA512-0:C-QH64-PSHA512-S512-T48H", Ok(()));
        check_suite("OCRA-1:HOTP-SHA1-4:QA04-S001-T59S", Ok(()));
        check_suite("OCRA-2:HOTP-SHA1-6:QN08", Err("OCRA-2"));
        check_suite("OCRA-1:HOTP-MD5-6:QN08", Err("MD5"));
        check_suite("OCRA-1:HOTP-SHA1-3:QN08", Err("3"));
        check_suite("OCRA-1:HOTP-SHA1-11:QN08", Err("11"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN03", Err("QN03"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN65", Err("QN65"));
        check_suite("OCRA-1:HOTP-SHA1-6:QX08", Err("QX08"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN08-PMD5", Err("PMD5"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN08-S64", Err("S64"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN08-T0H", Err("T0H"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN08-T49H", Err("T49H"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN08-T60M", Err("T60M"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN08-T1M-PSHA1", Err("PSHA1"));
        check_suite("OCRA-1:HOTP-SHA1-6:C", Err("C"));
        check_suite("OCRA-1:HOTP-SHA1-6", Err("OCRA-1:HOTP-SHA1-6"));
        check_suite(
            "OCRA-1:HOTP-SHA1-6:QN08:X",
            Err("OCRA-1:HOTP-SHA1-6:QN08:X"),
        );
    }

    #[test]
    fn non_ascii_suite_parts_are_errors_not_panics() {
        // Found by the otp_ocra_suite fuzz target: a DataInput part starting with, or a time
        // step ending in, a multi-byte character used to panic on a char boundary.
        check_suite("OCRA-1:HOTP-SHA1-6:QA10-\u{6040}", Err("\u{6040}"));
        check_suite("OCRA-1:HOTP-SHA1-6:QA10-\u{e9}S064", Err("\u{e9}S064"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN08-T1\u{6040}", Err("T1\u{6040}"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN08-T\u{e9}", Err("T\u{e9}"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN08-S\u{e9}12", Err("S\u{e9}12"));
        check_suite("OCRA-1:HOTP-SHA1-6:QN08-P\u{e9}", Err("P\u{e9}"));
        check_suite("OCRA-1:HOTP-SHA1-6:Q\u{e9}08", Err("Q\u{e9}08"));
        check_suite("OCRA-1:HOTP-SHA1-\u{e9}:QN08", Err("\u{e9}"));
    }

    #[test]
    fn numeric_questions_use_unpadded_hex() {
        let nib = |q| {
            decimal_to_hex_nibbles(q)
                .iter()
                .map(|n| format!("{n:X}"))
                .collect::<String>()
        };
        assert_eq!(nib("22222222"), "153158E");
        assert_eq!(nib("00000000"), "");
        assert_eq!(nib("0000000255"), "FF");
        // 2^64 crosses the u64 boundary: the conversion is arbitrary precision.
        assert_eq!(nib("18446744073709551616"), "10000000000000000");
    }
}
