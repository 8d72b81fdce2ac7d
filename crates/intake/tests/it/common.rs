//! Shared helpers: a second HOTP/TOTP implementation on the `hmac` crate, the published
//! vectors, and shortcuts to read containers.

use std::path::PathBuf;

use hmac::{Hmac, KeyInit, Mac};
use okey_intake::{HashAlgorithm, ImportError, KeyPackage, PskcOptions, PskcReader};
use serde_json::Value;

pub fn vectors(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mac_of<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <M as KeyInit>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// HOTP (RFC 4226 section 5.3) with the hash of `hash`.
pub fn hotp(hash: HashAlgorithm, secret: &[u8], counter: u64, digits: u32) -> String {
    let msg = counter.to_be_bytes();
    let h = match hash {
        HashAlgorithm::Sha1 => mac_of::<Hmac<sha1::Sha1>>(secret, &msg),
        HashAlgorithm::Sha256 => mac_of::<Hmac<sha2::Sha256>>(secret, &msg),
        HashAlgorithm::Sha512 => mac_of::<Hmac<sha2::Sha512>>(secret, &msg),
    };
    let off = usize::from(h[h.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
    format!(
        "{:0width$}",
        bin % 10u32.pow(digits),
        width = digits as usize
    )
}

/// TOTP (RFC 6238) at `unix` seconds with step `period` and T0 = 0.
pub fn totp(hash: HashAlgorithm, secret: &[u8], unix: u64, period: u64, digits: u32) -> String {
    hotp(hash, secret, unix / period, digits)
}

pub fn read(data: &[u8], options: PskcOptions) -> Vec<Result<KeyPackage, ImportError>> {
    PskcReader::new(data, options).collect()
}

pub fn read_ok(data: &[u8], options: PskcOptions) -> Vec<KeyPackage> {
    read(data, options)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// The RFC 4226 secret (ASCII "12345678901234567890").
pub const RFC4226_SECRET: &[u8] = b"12345678901234567890";

/// Checks `p`'s seed against every RFC 4226 Appendix D value (6 digits).
pub fn check_hotp_vectors(p: &KeyPackage) {
    let v = vectors("hotp-rfc4226.json");
    assert_eq!(
        hex::encode(&*p.secret),
        v["secret"]["hex"].as_str().unwrap()
    );
    for row in v["vectors"].as_array().unwrap() {
        let count = row["count"].as_u64().unwrap();
        let expected = row["hotp_6_digits"].as_str().unwrap();
        assert_eq!(hotp(p.hash, &p.secret, count, 6), expected, "count {count}");
    }
}

/// Checks `p`'s seed against the RFC 6238 Appendix B rows of its hash (8 digits).
pub fn check_totp_vectors(p: &KeyPackage) {
    let v = vectors("totp-rfc6238.json");
    let mode = p.hash.name();
    assert_eq!(
        hex::encode(&*p.secret),
        v["seeds"][mode]["hex"].as_str().unwrap()
    );
    let period = u64::from(p.time_interval.unwrap_or(30));
    let mut rows = 0;
    for row in v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["mode"] == mode)
    {
        let t = row["time_unix"].as_u64().unwrap();
        assert_eq!(
            totp(p.hash, &p.secret, t, period, 8),
            row["totp_8_digits"].as_str().unwrap(),
            "t {t}"
        );
        rows += 1;
    }
    assert_eq!(rows, 6, "RFC 6238 has six rows per mode");
}

/// The RFC 6238 seed of a hash mode.
pub fn totp_seed(hash: HashAlgorithm) -> Vec<u8> {
    let v = vectors("totp-rfc6238.json");
    hex::decode(v["seeds"][hash.name()]["hex"].as_str().unwrap()).unwrap()
}

#[test]
fn reference_hotp_matches_rfc4226() {
    let mut p = KeyPackage::new(
        okey_intake::Algorithm::Hotp,
        zeroize::Zeroizing::new(RFC4226_SECRET.to_vec()),
    );
    p.hash = HashAlgorithm::Sha1;
    check_hotp_vectors(&p);
}
