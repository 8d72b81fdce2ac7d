//! Shared helpers: stores in temporary directories and an independent HOTP/TOTP implementation
//! (the `hmac` crate) to compute the codes a real token would show.

use hmac::{Hmac, KeyInit, Mac};
use okey_store::*;

pub const SEED: &[u8] = b"12345678901234567890";

pub fn actor() -> Actor {
    Actor::new("tester", "admin")
}

pub fn key_bytes(b: u8) -> Zeroizing<[u8; 32]> {
    Zeroizing::new([b; 32])
}

pub fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        master_key: MasterKeySource::Bytes(key_bytes(7)),
        ..StoreConfig::in_dir(dir)
    }
}

pub fn open(dir: &std::path::Path) -> Store {
    Store::open(config(dir)).expect("open store")
}

/// RFC 4226 HOTP with the `hmac` crate (SHA-1), independent of okey-otp.
pub fn hotp(seed: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(seed).expect("key");
    mac.update(&counter.to_be_bytes());
    let d = mac.finalize().into_bytes();
    let off = usize::from(d[19] & 0x0f);
    let v = u32::from_be_bytes([d[off] & 0x7f, d[off + 1], d[off + 2], d[off + 3]]);
    format!(
        "{:0w$}",
        u64::from(v) % 10u64.pow(digits),
        w = digits as usize
    )
}

/// RFC 6238 TOTP (SHA-1, T0 = 0).
pub fn totp(seed: &[u8], unix: u64, step: u64, digits: u32) -> String {
    hotp(seed, unix / step, digits)
}

pub fn hotp_token(serial: &str) -> NewToken {
    NewToken {
        serial: serial.into(),
        kind: TokenKind::Hardware,
        otp: OtpKind::Hotp,
        algorithm: Algorithm::Sha1,
        digits: 6,
        seed: Zeroizing::new(SEED.to_vec()),
        counter: 0,
        drift: 0,
        status: TokenStatus::Active,
        holder: None,
        description: None,
    }
}

pub fn totp_token(serial: &str) -> NewToken {
    NewToken {
        otp: OtpKind::Totp { step: 30, t0: 0 },
        kind: TokenKind::Software,
        ..hotp_token(serial)
    }
}

pub async fn verify(store: &Store, serial: &str, passcode: &str, now: u64) -> VerifyOutcome {
    store
        .verify(VerifyRequest {
            subject: Subject::Serial(serial),
            passcode,
            now,
            actor: &actor(),
            client: "test",
        })
        .await
        .expect("verify")
}

pub async fn verify_user(store: &Store, user: &str, passcode: &str, now: u64) -> VerifyOutcome {
    store
        .verify(VerifyRequest {
            subject: Subject::User(user),
            passcode,
            now,
            actor: &actor(),
            client: "test",
        })
        .await
        .expect("verify")
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
