//! RFC 4226 HOTP computed with the `hmac` and `sha1` crates: the simulator's own
//! implementation, independent of okey's authentication core.

use hmac::{Hmac, KeyInit, Mac};

/// HOTP value of `key` at `counter`, reduced modulo 10^`digits`.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key) else {
        return 0;
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h.get(19).copied().unwrap_or(0) & 0x0F);
    let word = h
        .get(offset..offset + 4)
        .and_then(|w| <[u8; 4]>::try_from(w).ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0)
        & 0x7FFF_FFFF;
    word % 10u32.pow(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4226_appendix_d() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (c, e) in (0u64..).zip(expected) {
            assert_eq!(hotp(b"12345678901234567890", c, 6), e);
        }
        // Zero padding of the key to 40 bytes (Nitrokey storage) does not change the value.
        let mut padded = b"12345678901234567890".to_vec();
        padded.resize(40, 0);
        assert_eq!(hotp(&padded, 1, 6), 287_082);
    }
}
