//! Property tests against independent implementations: the `hmac` crate for every algorithm,
//! key length, counter and digit count, and `totp-rs` for TOTP.

use hmac::{Hmac, KeyInit, Mac};
use okey_otp::{
    Algorithm, Code, Digits, MAX_COUNTER, OtpKey, OtpState, TotpParams, hotp, totp, verify_hotp,
};
use proptest::prelude::*;

fn reference_mac(alg: Algorithm, key: &[u8], msg: &[u8]) -> Vec<u8> {
    match alg {
        Algorithm::Sha1 => {
            let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key length");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        Algorithm::Sha256 => {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        Algorithm::Sha512 => {
            let mut m = Hmac::<sha2::Sha512>::new_from_slice(key).expect("any key length");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
    }
}

fn reference_hotp(alg: Algorithm, key: &[u8], counter: u64, digits: u8) -> String {
    let mac = reference_mac(alg, key, &counter.to_be_bytes());
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let word = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    let modulus = 10u64.pow(u32::from(digits));
    format!("{:0w$}", u64::from(word) % modulus, w = usize::from(digits))
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::Sha1),
        Just(Algorithm::Sha256),
        Just(Algorithm::Sha512)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mac_equals_hmac_crate(alg in algorithm(), key in prop::collection::vec(any::<u8>(), 1..300),
                             msg in prop::collection::vec(any::<u8>(), 0..400)) {
        let ours = OtpKey::new(alg, &key).expect("key");
        let mac = ours.mac(&msg);
        let expected = reference_mac(alg, &key, &msg);
        prop_assert_eq!(mac.as_bytes(), expected.as_slice());
    }

    #[test]
    fn hotp_equals_reference(alg in algorithm(), key in prop::collection::vec(any::<u8>(), 1..200),
                             counter in any::<u64>(), digits in 6u8..=10) {
        let ours = OtpKey::new(alg, &key).expect("key");
        let d = Digits::new(digits).expect("digits");
        prop_assert_eq!(hotp(&ours, counter, d).to_text(), reference_hotp(alg, &key, counter, digits));
    }

    #[test]
    fn totp_equals_totp_rs(alg in algorithm(), key in prop::collection::vec(any::<u8>(), 16..64),
                           time in 0u64..=20_000_000_000, digits in 6usize..=8, step in 1u64..=120) {
        let rs_alg = match alg {
            Algorithm::Sha1 => totp_rs::Algorithm::SHA1,
            Algorithm::Sha256 => totp_rs::Algorithm::SHA256,
            Algorithm::Sha512 => totp_rs::Algorithm::SHA512,
        };
        let reference = totp_rs::Builder::new()
            .with_algorithm(rs_alg)
            .with_digits(digits as u8)
            .with_step_duration(step)
            .with_secret(key.clone())
            .build_noncompliant();
        let ours = OtpKey::new(alg, &key).expect("key");
        let params = TotpParams::new(Digits::new(digits as u8).expect("digits"), step as u32, 0).expect("params");
        prop_assert_eq!(totp(&ours, &params, time).expect("totp").to_text(), reference.generate(time).to_string());
    }

    #[test]
    fn verify_hotp_finds_the_lowest_reference_match(alg in algorithm(),
                             key in prop::collection::vec(any::<u8>(), 1..100),
                             start in prop_oneof![0u64..1_000_000, (MAX_COUNTER - 64)..=(MAX_COUNTER + 64), (u64::MAX - 64)..=u64::MAX],
                             window in 0u32..48, offset in 0u64..56) {
        // The presented code is the reference code of start + offset, which may lie inside the
        // window or past it; the expected answer is the lowest counter in the window whose
        // reference code is the same (or none), computed with the `hmac` crate.
        let target = start.saturating_add(offset);
        let text = reference_hotp(alg, &key, target, 6);
        let expected = (0..u64::from(window))
            .map_while(|i| start.checked_add(i))
            .find(|&c| reference_hotp(alg, &key, c, 6) == text)
            .filter(|&c| c < MAX_COUNTER);
        let ours = OtpKey::new(alg, &key).expect("key");
        let state = OtpState { counter: start, ..OtpState::default() };
        let presented = Code::parse(&text, Digits::SIX).expect("code");
        let got = verify_hotp(&ours, Digits::SIX, &state, window, &presented).map(|p| p.matched());
        prop_assert_eq!(got, expected);
    }
}
