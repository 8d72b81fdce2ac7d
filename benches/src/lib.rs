//! Baselines for okey's benchmarks: the same one-time-code work done by independent code.
//!
//! The benches quote okey's figures as ratios to these baselines measured in the same run,
//! because absolute nanoseconds on a shared two-core machine drift from run to run while ratios
//! hold. Each baseline is checked against the RFC 4226 vectors below, so a bench never compares
//! okey with code that computes something else.
#![forbid(unsafe_code)]

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// RFC 4226 §5.3 dynamic truncation and reduction to `digits` decimal digits.
fn truncate(mac: &[u8], digits: u32) -> u32 {
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let word = mac
        .get(offset..offset + 4)
        .map_or(0, |w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    (word & 0x7fff_ffff) % 10u32.pow(digits)
}

/// HOTP with the `hmac` crate, keyed afresh for every code (as most libraries do).
pub fn hmac_fresh_hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return 0;
    };
    mac.update(&counter.to_be_bytes());
    truncate(&mac.finalize().into_bytes(), digits)
}

/// An `hmac` crate key whose inner and outer states are computed once and cloned per code: the
/// same precomputation okey does, with the `hmac` crate's code.
#[derive(Clone)]
pub struct HmacPrecomputed(Hmac<Sha1>);

impl HmacPrecomputed {
    /// Key the MAC once; `None` for keys the `hmac` crate refuses (none for HMAC).
    pub fn new(key: &[u8]) -> Option<Self> {
        Hmac::<Sha1>::new_from_slice(key).ok().map(HmacPrecomputed)
    }

    /// HOTP from a clone of the keyed state.
    pub fn hotp(&self, counter: u64, digits: u32) -> u32 {
        let mut mac = self.0.clone();
        mac.update(&counter.to_be_bytes());
        truncate(&mac.finalize().into_bytes(), digits)
    }

    /// A naive HOTP window check with the precomputed state, exiting at the first match: what a
    /// verifier built on the `hmac` crate typically does (and what okey must not do).
    pub fn verify_early_exit(&self, first: u64, count: u32, digits: u32, code: u32) -> Option<u64> {
        (first..first.saturating_add(u64::from(count))).find(|&c| self.hotp(c, digits) == code)
    }
}

/// A `totp-rs` TOTP (SHA-1, 30 s steps, no T0) for `key`, `digits` and a skew of `skew` steps.
pub fn totp_rs(key: &[u8], digits: u8, skew: u16) -> totp_rs::Totp {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(digits)
        .with_skew(skew)
        .with_step_duration(30)
        .with_secret(key.to_vec())
        .build_noncompliant()
}

#[cfg(test)]
mod tests {
    use super::*;
    use okey_otp::{Algorithm, Digits, OtpKey, hotp};

    const RFC_KEY: &[u8] = b"12345678901234567890";
    /// RFC 4226 Appendix D, counters 0 to 9.
    const RFC_CODES: [u32; 10] = [
        755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
    ];

    #[test]
    fn baselines_compute_rfc_4226_codes() {
        let pre = HmacPrecomputed::new(RFC_KEY).expect("key");
        let ours = OtpKey::new(Algorithm::Sha1, RFC_KEY).expect("key");
        for (counter, &code) in (0u64..).zip(RFC_CODES.iter()) {
            assert_eq!(hmac_fresh_hotp(RFC_KEY, counter, 6), code);
            assert_eq!(pre.hotp(counter, 6), code);
            assert_eq!(
                hotp(&ours, counter, Digits::SIX).to_text(),
                format!("{code:06}")
            );
        }
        assert_eq!(pre.verify_early_exit(0, 10, 6, 399871), Some(8));
        assert_eq!(pre.verify_early_exit(0, 8, 6, 399871), None);
    }

    #[test]
    fn totp_rs_baseline_computes_rfc_6238_codes() {
        // RFC 6238 Appendix B, SHA-1, 8 digits: 94287082 at 59 s, 07081804 at 1111111109 s.
        let t = totp_rs(RFC_KEY, 8, 1);
        assert_eq!(t.generate(59).to_string(), "94287082");
        assert_eq!(t.generate(1_111_111_109).to_string(), "07081804");
        assert_eq!(t.check("94287082", 89), Some(1));
    }
}
