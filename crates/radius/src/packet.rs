//! The RADIUS packet format of RFC 2865 section 3 and 5, to the byte, with the two
//! authenticators (RFC 2865 section 3: Request and Response Authenticator; RFC 3579 section 3.2
//! and RFC 2869 section 5.14: Message-Authenticator) and the User-Password hiding of section 5.2.
//!
//! Parsing borrows from the datagram and allocates only the attribute index. It never panics:
//! every length is checked before it is used (the fuzz target `radius_packet` holds it to that).

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Size of the fixed header: code, identifier, length, authenticator.
pub const HEADER_LEN: usize = 20;
/// Smallest packet (RFC 2865 section 3: "The minimum length is 20").
pub const MIN_PACKET: usize = 20;
/// Largest packet (RFC 2865 section 3: "maximum length is 4096").
pub const MAX_PACKET: usize = 4096;
/// Largest attribute value (its length octet counts the two header octets).
pub const MAX_ATTRIBUTE_VALUE: usize = 253;
/// Longest hidden User-Password (RFC 2865 section 5.2: at most 128 octets).
pub const MAX_PASSWORD: usize = 128;

/// Packet codes used here (RFC 2865 section 3).
pub mod code {
    /// Access-Request.
    pub const ACCESS_REQUEST: u8 = 1;
    /// Access-Accept.
    pub const ACCESS_ACCEPT: u8 = 2;
    /// Access-Reject.
    pub const ACCESS_REJECT: u8 = 3;
    /// Access-Challenge.
    pub const ACCESS_CHALLENGE: u8 = 11;
}

/// Attribute types used here (RFC 2865 section 5, RFC 2869 section 5.14).
pub mod attr {
    /// User-Name (string).
    pub const USER_NAME: u8 = 1;
    /// User-Password (hidden string).
    pub const USER_PASSWORD: u8 = 2;
    /// CHAP-Password.
    pub const CHAP_PASSWORD: u8 = 3;
    /// NAS-IP-Address (address).
    pub const NAS_IP_ADDRESS: u8 = 4;
    /// NAS-Port (integer).
    pub const NAS_PORT: u8 = 5;
    /// Service-Type (integer).
    pub const SERVICE_TYPE: u8 = 6;
    /// Framed-Protocol (integer).
    pub const FRAMED_PROTOCOL: u8 = 7;
    /// Filter-Id (text).
    pub const FILTER_ID: u8 = 11;
    /// Login-IP-Host (address).
    pub const LOGIN_IP_HOST: u8 = 14;
    /// Login-Service (integer).
    pub const LOGIN_SERVICE: u8 = 15;
    /// Reply-Message (text).
    pub const REPLY_MESSAGE: u8 = 18;
    /// State (string).
    pub const STATE: u8 = 24;
    /// Class (string).
    pub const CLASS: u8 = 25;
    /// Session-Timeout (integer).
    pub const SESSION_TIMEOUT: u8 = 27;
    /// Idle-Timeout (integer).
    pub const IDLE_TIMEOUT: u8 = 28;
    /// Calling-Station-Id (string).
    pub const CALLING_STATION_ID: u8 = 31;
    /// NAS-Identifier (string).
    pub const NAS_IDENTIFIER: u8 = 32;
    /// Proxy-State (string, echoed in replies).
    pub const PROXY_STATE: u8 = 33;
    /// Message-Authenticator (16 octets, RFC 2869 section 5.14).
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

/// Why a datagram is not a RADIUS packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer octets than the header.
    #[error("{0} octets is shorter than a RADIUS header")]
    Short(usize),
    /// The Length field is below 20 or above 4096.
    #[error("a Length of {0} is outside 20..=4096")]
    Length(u16),
    /// The datagram holds fewer octets than its Length field says.
    #[error("the Length field says {length} octets but the datagram has {got}")]
    Truncated {
        /// The Length field.
        length: u16,
        /// Octets received.
        got: usize,
    },
    /// An attribute at this offset has a length below 2 or runs past the packet's end.
    #[error("the attribute at offset {0} is malformed")]
    Attribute(usize),
}

/// One attribute, borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// Its type.
    pub kind: u8,
    /// Its value (the octets after the type and length).
    pub value: &'a [u8],
}

/// A parsed packet, borrowed from its datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Code.
    pub code: u8,
    /// Identifier.
    pub identifier: u8,
    /// Authenticator (Request Authenticator in a request).
    pub authenticator: [u8; 16],
    /// Attributes in wire order.
    pub attributes: Vec<Attribute<'a>>,
    /// The packet's octets (the datagram cut to the Length field; the rest is padding).
    pub raw: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parse one datagram (RFC 2865 section 3: octets beyond Length are padding and ignored; a
    /// datagram shorter than Length is discarded; so is any malformed attribute).
    pub fn parse(datagram: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        let header = datagram
            .get(..HEADER_LEN)
            .ok_or(PacketError::Short(datagram.len()))?;
        let length = u16::from_be_bytes([header[2], header[3]]);
        let len = usize::from(length);
        if !(MIN_PACKET..=MAX_PACKET).contains(&len) {
            return Err(PacketError::Length(length));
        }
        let raw = datagram.get(..len).ok_or(PacketError::Truncated {
            length,
            got: datagram.len(),
        })?;
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&header[4..HEADER_LEN]);
        let mut attributes = Vec::new();
        let mut at = HEADER_LEN;
        while at < len {
            let (kind, alen) = match raw.get(at..at + 2) {
                Some(&[k, l]) => (k, usize::from(l)),
                _ => return Err(PacketError::Attribute(at)),
            };
            if alen < 2 {
                return Err(PacketError::Attribute(at));
            }
            let value = raw
                .get(at + 2..at + alen)
                .ok_or(PacketError::Attribute(at))?;
            attributes.push(Attribute { kind, value });
            at += alen;
        }
        Ok(Packet {
            code: header[0],
            identifier: header[1],
            authenticator,
            attributes,
            raw,
        })
    }

    /// The first attribute of `kind`.
    pub fn first(&self, kind: u8) -> Option<&'a [u8]> {
        self.attributes
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.value)
    }

    /// How many attributes of `kind` the packet has.
    pub fn count(&self, kind: u8) -> usize {
        self.attributes.iter().filter(|a| a.kind == kind).count()
    }

    /// The Message-Authenticator check of an Access-Request (RFC 3579 section 3.2): HMAC-MD5
    /// keyed by the shared secret over the packet with the attribute's value zeroed.
    pub fn message_authenticator(&self, secret: &[u8]) -> Authenticity {
        let mut found = None;
        let mut at = HEADER_LEN;
        for a in &self.attributes {
            if a.kind == attr::MESSAGE_AUTHENTICATOR {
                if found.is_some() || a.value.len() != 16 {
                    return Authenticity::Invalid;
                }
                found = Some(at + 2);
            }
            at += 2 + a.value.len();
        }
        let Some(offset) = found else {
            return Authenticity::Missing;
        };
        let Some(received) = self.raw.get(offset..offset + 16) else {
            return Authenticity::Invalid;
        };
        let mut mac = hmac_md5(secret);
        mac.update(&self.raw[..offset]);
        mac.update(&[0u8; 16]);
        mac.update(&self.raw[offset + 16..]);
        let expected = mac.finalize().into_bytes();
        if bool::from(expected.as_slice().ct_eq(received)) {
            Authenticity::Valid
        } else {
            Authenticity::Invalid
        }
    }

    /// Whether this packet is a valid response to a request whose authenticator was
    /// `request_authenticator` (RFC 2865 section 3, Response Authenticator).
    pub fn is_response_to(&self, request_authenticator: &[u8; 16], secret: &[u8]) -> bool {
        let mut md5 = Md5::new();
        md5.update(&self.raw[..4]);
        md5.update(request_authenticator);
        md5.update(&self.raw[HEADER_LEN..]);
        md5.update(secret);
        bool::from(md5.finalize().as_slice().ct_eq(&self.authenticator))
    }
}

/// The state of a packet's Message-Authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authenticity {
    /// Present once, 16 octets, and right for the secret.
    Valid,
    /// Absent.
    Missing,
    /// Wrong for the secret, of the wrong size, or repeated.
    Invalid,
}

fn hmac_md5(secret: &[u8]) -> Hmac<Md5> {
    #[allow(clippy::expect_used)]
    <Hmac<Md5> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// Why a User-Password could not be recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The hidden value is not 16 to 128 octets in steps of 16.
    #[error("a hidden User-Password is 16 to 128 octets, a multiple of 16")]
    Length,
}

/// Recover a User-Password hidden as in RFC 2865 section 5.2 (trailing NUL padding removed).
pub fn unhide_password(
    hidden: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
) -> Result<Zeroizing<Vec<u8>>, PasswordError> {
    if hidden.is_empty() || hidden.len() > MAX_PASSWORD || !hidden.len().is_multiple_of(16) {
        return Err(PasswordError::Length);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(hidden.len()));
    let mut previous: &[u8] = authenticator;
    for chunk in hidden.chunks_exact(16) {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(previous);
        let b = md5.finalize();
        out.extend(chunk.iter().zip(b.iter()).map(|(c, b)| c ^ b));
        previous = chunk;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

/// Hide a User-Password as in RFC 2865 section 5.2 (for clients: the bench and tests).
pub fn hide_password(
    password: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
) -> Result<Vec<u8>, PasswordError> {
    if password.len() > MAX_PASSWORD {
        return Err(PasswordError::Length);
    }
    let padded_len = password.len().div_ceil(16).max(1) * 16;
    let mut padded = Zeroizing::new(vec![0u8; padded_len]);
    padded[..password.len()].copy_from_slice(password);
    let mut out = Vec::with_capacity(padded_len);
    for (i, chunk) in padded.chunks_exact(16).enumerate() {
        let mut md5 = Md5::new();
        md5.update(secret);
        match i {
            0 => md5.update(authenticator),
            _ => md5.update(&out[(i - 1) * 16..i * 16]),
        }
        let b = md5.finalize();
        let c: Vec<u8> = chunk.iter().zip(b.iter()).map(|(p, b)| p ^ b).collect();
        out.extend_from_slice(&c);
    }
    Ok(out)
}

/// Why a packet could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// An attribute value longer than 253 octets.
    #[error("an attribute value has at most 253 octets")]
    AttributeTooLong,
    /// The packet would exceed 4096 octets.
    #[error("a RADIUS packet has at most 4096 octets")]
    PacketTooLong,
}

/// A packet being written: header, then attributes in the order pushed.
#[derive(Debug, Clone)]
pub struct Builder {
    buf: Vec<u8>,
    message_authenticator_at: Option<usize>,
}

impl Builder {
    /// Start a packet of `code` and `identifier`; the authenticator is filled in by
    /// [`Builder::finish_response`] or [`Builder::finish_request`].
    pub fn new(code: u8, identifier: u8) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&[code, identifier, 0, 0]);
        buf.extend_from_slice(&[0u8; 16]);
        Builder {
            buf,
            message_authenticator_at: None,
        }
    }

    /// Add an attribute.
    pub fn push(&mut self, kind: u8, value: &[u8]) -> Result<&mut Self, WriteError> {
        if value.len() > MAX_ATTRIBUTE_VALUE {
            return Err(WriteError::AttributeTooLong);
        }
        if self.buf.len() + 2 + value.len() > MAX_PACKET {
            return Err(WriteError::PacketTooLong);
        }
        // Length fits: value.len() <= 253.
        self.buf.push(kind);
        self.buf.push((value.len() + 2) as u8);
        self.buf.extend_from_slice(value);
        Ok(self)
    }

    /// Add a Message-Authenticator, computed when the packet is finished. Put it first: RFC
    /// 3579 allows any place, and first is what the BlastRADIUS (CVE-2024-3596) mitigation asks.
    pub fn message_authenticator(&mut self) -> Result<&mut Self, WriteError> {
        let at = self.buf.len() + 2;
        self.push(attr::MESSAGE_AUTHENTICATOR, &[0u8; 16])?;
        self.message_authenticator_at = Some(at);
        Ok(self)
    }

    fn set_length(&mut self) {
        // At most MAX_PACKET octets, checked by every push.
        let len = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    fn sign_message_authenticator(&mut self, secret: &[u8]) {
        if let Some(at) = self.message_authenticator_at {
            let mut mac = hmac_md5(secret);
            mac.update(&self.buf);
            let sum = mac.finalize().into_bytes();
            self.buf[at..at + 16].copy_from_slice(&sum);
        }
    }

    /// Finish a response to a request with `request_authenticator`: the Message-Authenticator
    /// over the packet holding the Request Authenticator (RFC 3579 section 3.2), then the
    /// Response Authenticator MD5(Code+ID+Length+RequestAuth+Attributes+Secret).
    pub fn finish_response(mut self, request_authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        self.set_length();
        self.buf[4..HEADER_LEN].copy_from_slice(request_authenticator);
        self.sign_message_authenticator(secret);
        let mut md5 = Md5::new();
        md5.update(&self.buf);
        md5.update(secret);
        let sum = md5.finalize();
        self.buf[4..HEADER_LEN].copy_from_slice(&sum);
        self.buf
    }

    /// Finish a request with the random `request_authenticator` (which must also be the one
    /// any User-Password was hidden with).
    pub fn finish_request(mut self, request_authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        self.set_length();
        self.buf[4..HEADER_LEN].copy_from_slice(request_authenticator);
        self.sign_message_authenticator(secret);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let compact: String = s.split_whitespace().collect();
        hex::decode(compact).expect("hex")
    }

    const SECRET: &[u8] = b"xyzzy5461";
    // RFC 2865 section 7.1: User Telnet to Specified Host.
    const TELNET_REQUEST: &str = "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
        98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d
        93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8
        01 10 05 06 00 00 00 03";
    const TELNET_ACCEPT: &str = "02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
        9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00
        0e 06 c0 a8 01 03";
    // RFC 2865 section 7.2: Framed User Authenticating with CHAP.
    const CHAP_REQUEST: &str = "01 01 00 47 2a ee 86 f0 8d 0d 55 96 9c a5 97 8e
        0d 33 67 a2 01 08 66 6c 6f 70 73 79 03 13 16 e9
        75 57 c3 16 18 58 95 f2 93 ff 63 44 07 72 75 04
        06 c0 a8 01 10 05 06 00 00 00 14 06 06 00 00 00
        02 07 06 00 00 00 01";
    // RFC 2865 section 7.3: an Access-Challenge.
    const CHALLENGE: &str = "0b 02 00 4e 36 f3 c8 76 4a e8 c7 11 57 40 3c 0c
        71 ff 9c 45 12 30 43 68 61 6c 6c 65 6e 67 65 20
        33 32 37 36 39 34 33 30 2e 20 20 45 6e 74 65 72
        20 72 65 73 70 6f 6e 73 65 20 61 74 20 70 72 6f
        6d 70 74 2e 18 0a 33 32 37 36 39 34 33 30";

    #[test]
    fn rfc_2865_7_1_request_decodes_and_its_password_unhides() {
        let bytes = hex(TELNET_REQUEST);
        let p = Packet::parse(&bytes).expect("parse");
        assert_eq!((p.code, p.identifier), (code::ACCESS_REQUEST, 0));
        assert_eq!(p.authenticator.to_vec(), bytes[4..20].to_vec());
        let kinds: Vec<u8> = p.attributes.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [
                attr::USER_NAME,
                attr::USER_PASSWORD,
                attr::NAS_IP_ADDRESS,
                attr::NAS_PORT
            ]
        );
        assert_eq!(p.first(attr::USER_NAME), Some(&b"nemo"[..]));
        assert_eq!(p.first(attr::NAS_IP_ADDRESS), Some(&[192, 168, 1, 16][..]));
        assert_eq!(p.first(attr::NAS_PORT), Some(&[0, 0, 0, 3][..]));
        let hidden = p.first(attr::USER_PASSWORD).expect("password");
        let clear = unhide_password(hidden, SECRET, &p.authenticator).expect("unhide");
        assert_eq!(clear.as_slice(), b"arctangent");
        // Hiding it again gives the RFC's octets.
        assert_eq!(
            hide_password(b"arctangent", SECRET, &p.authenticator).expect("hide"),
            hidden
        );
        assert_eq!(p.message_authenticator(SECRET), Authenticity::Missing);
    }

    #[test]
    fn rfc_2865_7_1_accept_is_rebuilt_to_the_byte() {
        let request = hex(TELNET_REQUEST);
        let req = Packet::parse(&request).expect("request");
        let accept = hex(TELNET_ACCEPT);
        let a = Packet::parse(&accept).expect("accept");
        assert_eq!(a.code, code::ACCESS_ACCEPT);
        assert_eq!(a.first(attr::SERVICE_TYPE), Some(&[0, 0, 0, 1][..]));
        assert_eq!(a.first(attr::LOGIN_SERVICE), Some(&[0, 0, 0, 0][..]));
        assert_eq!(a.first(attr::LOGIN_IP_HOST), Some(&[192, 168, 1, 3][..]));
        assert!(a.is_response_to(&req.authenticator, SECRET));
        assert!(!a.is_response_to(&req.authenticator, b"xyzzy5462"));
        let mut b = Builder::new(code::ACCESS_ACCEPT, 0);
        b.push(attr::SERVICE_TYPE, &1u32.to_be_bytes())
            .expect("push");
        b.push(attr::LOGIN_SERVICE, &0u32.to_be_bytes())
            .expect("push");
        b.push(attr::LOGIN_IP_HOST, &[192, 168, 1, 3])
            .expect("push");
        assert_eq!(b.finish_response(&req.authenticator, SECRET), accept);
    }

    #[test]
    fn rfc_2865_7_2_and_7_3_decode() {
        let bytes = hex(CHAP_REQUEST);
        let p = Packet::parse(&bytes).expect("chap");
        assert_eq!((p.code, p.identifier), (code::ACCESS_REQUEST, 1));
        assert_eq!(p.first(attr::USER_NAME), Some(&b"flopsy"[..]));
        let chap = p.first(attr::CHAP_PASSWORD).expect("chap password");
        assert_eq!((chap.len(), chap[0]), (17, 22));
        assert_eq!(p.first(attr::NAS_PORT), Some(&[0, 0, 0, 20][..]));
        assert_eq!(p.first(attr::SERVICE_TYPE), Some(&[0, 0, 0, 2][..]));
        assert_eq!(p.first(attr::FRAMED_PROTOCOL), Some(&[0, 0, 0, 1][..]));
        assert_eq!(p.first(attr::USER_PASSWORD), None);

        let bytes = hex(CHALLENGE);
        let c = Packet::parse(&bytes).expect("challenge");
        assert_eq!((c.code, c.identifier), (code::ACCESS_CHALLENGE, 2));
        assert_eq!(
            c.first(attr::REPLY_MESSAGE),
            Some(&b"Challenge 32769430.  Enter response at prompt."[..])
        );
        assert_eq!(c.first(attr::STATE), Some(&b"32769430"[..]));
    }

    #[test]
    fn every_truncation_and_bad_length_is_refused() {
        for s in [TELNET_REQUEST, TELNET_ACCEPT, CHAP_REQUEST, CHALLENGE] {
            let bytes = hex(s);
            for n in 0..bytes.len() {
                let e = Packet::parse(&bytes[..n]).expect_err("truncated");
                if n < HEADER_LEN {
                    assert_eq!(e, PacketError::Short(n));
                } else {
                    assert!(matches!(e, PacketError::Truncated { got, .. } if got == n));
                }
            }
            // Padding past Length is ignored (RFC 2865 section 3).
            let mut padded = bytes.clone();
            padded.extend_from_slice(&[0xff; 7]);
            let p = Packet::parse(&padded).expect("padded");
            assert_eq!(p.raw, &bytes[..]);
        }
        let mut b = vec![1, 0, 0, 19];
        b.extend_from_slice(&[0; 16]);
        assert_eq!(Packet::parse(&b), Err(PacketError::Length(19)));
        b[2..4].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(Packet::parse(&b), Err(PacketError::Length(4097)));
        // An attribute of length 0 or 1, one past the end, a lone type octet.
        b[2..4].copy_from_slice(&22u16.to_be_bytes());
        b.extend_from_slice(&[1, 1]);
        assert_eq!(Packet::parse(&b), Err(PacketError::Attribute(20)));
        b[21] = 0;
        assert_eq!(Packet::parse(&b), Err(PacketError::Attribute(20)));
        b[21] = 3;
        assert_eq!(Packet::parse(&b), Err(PacketError::Attribute(20)));
        b[3] = 21;
        assert_eq!(Packet::parse(&b[..21]), Err(PacketError::Attribute(20)));
        // Length 2: an empty attribute.
        b[3] = 22;
        b[21] = 2;
        let p = Packet::parse(&b).expect("empty attribute");
        assert_eq!(
            p.attributes,
            [Attribute {
                kind: 1,
                value: &[]
            }]
        );
    }

    #[test]
    fn message_authenticator_signs_and_checks() {
        let secret = b"a shared secret of 32 characters";
        let auth = [7u8; 16];
        let mut b = Builder::new(code::ACCESS_REQUEST, 9);
        b.message_authenticator().expect("ma");
        b.push(attr::USER_NAME, b"alice").expect("push");
        let hidden = hide_password(b"123456", secret, &auth).expect("hide");
        b.push(attr::USER_PASSWORD, &hidden).expect("push");
        let bytes = b.finish_request(&auth, secret);
        let p = Packet::parse(&bytes).expect("parse");
        assert_eq!(p.message_authenticator(secret), Authenticity::Valid);
        assert_eq!(
            p.message_authenticator(b"another secret of 32 characters!"),
            Authenticity::Invalid
        );
        let clear = unhide_password(
            p.first(attr::USER_PASSWORD).expect("pw"),
            secret,
            &p.authenticator,
        )
        .expect("unhide");
        assert_eq!(clear.as_slice(), b"123456");
        // Any flipped octet breaks it.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            if let Ok(p) = Packet::parse(&bad) {
                assert_ne!(p.message_authenticator(secret), Authenticity::Valid, "{i}");
            }
        }
        // Two Message-Authenticators, or a short one, are invalid.
        let mut b = Builder::new(code::ACCESS_REQUEST, 9);
        b.message_authenticator().expect("ma");
        b.message_authenticator().expect("ma");
        let bytes = b.finish_request(&auth, secret);
        let p = Packet::parse(&bytes).expect("parse");
        assert_eq!(p.message_authenticator(secret), Authenticity::Invalid);
        let mut b = Builder::new(code::ACCESS_REQUEST, 9);
        b.push(attr::MESSAGE_AUTHENTICATOR, &[0; 15]).expect("push");
        let bytes = b.finish_request(&auth, secret);
        let p = Packet::parse(&bytes).expect("parse");
        assert_eq!(p.message_authenticator(secret), Authenticity::Invalid);
    }

    #[test]
    fn a_response_carries_a_message_authenticator_over_the_request_authenticator() {
        let secret = b"a shared secret of 32 characters";
        let request_auth = [0x42u8; 16];
        let mut b = Builder::new(code::ACCESS_REJECT, 3);
        b.message_authenticator().expect("ma");
        b.push(attr::REPLY_MESSAGE, b"no").expect("push");
        let bytes = b.finish_response(&request_auth, secret);
        let p = Packet::parse(&bytes).expect("parse");
        assert!(p.is_response_to(&request_auth, secret));
        // RFC 3579 section 3.2: the check puts the Request Authenticator back first.
        let mut as_signed = bytes.clone();
        as_signed[4..20].copy_from_slice(&request_auth);
        let q = Packet::parse(&as_signed).expect("parse");
        assert_eq!(q.message_authenticator(secret), Authenticity::Valid);
        assert_eq!(p.attributes[0].kind, attr::MESSAGE_AUTHENTICATOR);
    }

    #[test]
    fn passwords_of_every_length_round_trip() {
        let secret = b"0123456789abcdef";
        let auth = [0xa5u8; 16];
        for n in 0..=MAX_PASSWORD {
            let pw: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let hidden = hide_password(&pw, secret, &auth).expect("hide");
            assert_eq!(hidden.len(), n.div_ceil(16).max(1) * 16);
            let back = unhide_password(&hidden, secret, &auth).expect("unhide");
            assert_eq!(back.as_slice(), pw.as_slice());
        }
        assert!(hide_password(&[b'a'; 129], secret, &auth).is_err());
        for bad in [0, 15, 17, 144] {
            assert_eq!(
                unhide_password(&vec![0; bad], secret, &auth),
                Err(PasswordError::Length)
            );
        }
    }

    #[test]
    fn builder_limits() {
        let mut b = Builder::new(code::ACCESS_ACCEPT, 0);
        assert_eq!(
            b.push(attr::CLASS, &[0; 254]).map(|_| ()),
            Err(WriteError::AttributeTooLong)
        );
        for _ in 0..15 {
            b.push(attr::CLASS, &[0; 253]).expect("fits");
        }
        assert_eq!(
            b.push(attr::CLASS, &[0; 253]).map(|_| ()),
            Err(WriteError::PacketTooLong)
        );
        let bytes = b.finish_response(&[0; 16], b"s");
        assert_eq!(bytes.len(), 20 + 15 * 255);
        assert_eq!(Packet::parse(&bytes).map(|p| p.attributes.len()), Ok(15));
    }
}
