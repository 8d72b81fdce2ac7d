//! The two checksums of the supported protocols: the Nitrokey's STM32 hardware CRC-32 over
//! little-endian 32-bit words, and the YubiKey's ISO 13239 CRC-16 (raw form, no final XOR).

/// STM32 CRC unit: polynomial 0x04C11DB7, initial value 0xFFFF_FFFF, MSB first, no reflection,
/// no final XOR, fed with 32-bit words formed little-endian from 4 consecutive bytes.
///
/// `data.len()` must be a multiple of 4; a trailing partial word is padded with zeros (the
/// protocol never produces one: requests and responses checksum exactly 60 bytes).
pub fn stm32_crc32(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xFFFF_FFFF;
    for chunk in data.chunks(4) {
        let mut word = [0u8; 4];
        for (dst, src) in word.iter_mut().zip(chunk) {
            *dst = *src;
        }
        crc ^= u32::from_le_bytes(word);
        for _ in 0..32 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Raw YubiKey CRC-16 (ISO 13239 register, init 0xFFFF, reflected polynomial 0x8408, no final
/// XOR). The frame CRC is this value; the configuration CRC is its complement.
pub fn yk_crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            let lsb = crc & 1;
            crc >>= 1;
            if lsb != 0 {
                crc ^= 0x8408;
            }
        }
    }
    crc
}

/// Raw CRC-16 over data followed by its complemented CRC gives this residual.
pub const YK_CRC_OK_RESIDUAL: u16 = 0xF0B8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stm32_vectors_from_the_fact_sheet() {
        assert_eq!(stm32_crc32(&[0, 0, 0, 0]), 0xC704_DD7B);
        assert_eq!(stm32_crc32(&[0u8; 60]), 0xEF6E_B7DF);
    }

    #[test]
    fn stm32_equals_mpeg2_over_word_reversed_bytes() {
        // Independent formulation given by the fact sheet: CRC-32/MPEG-2 over the byte stream
        // with each 4-byte word reversed.
        fn mpeg2(data: &[u8]) -> u32 {
            let mut crc: u32 = 0xFFFF_FFFF;
            for &b in data {
                crc ^= u32::from(b) << 24;
                for _ in 0..8 {
                    crc = if crc & 0x8000_0000 != 0 {
                        (crc << 1) ^ 0x04C1_1DB7
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        }
        assert_eq!(mpeg2(b"123456789"), 0x0376_E6E7);
        let mut seed = 0x1234_5678u32;
        for len in [4usize, 8, 60, 64] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 24) as u8
                })
                .collect();
            let reversed: Vec<u8> = data
                .chunks(4)
                .flat_map(|w| w.iter().rev().copied())
                .collect();
            assert_eq!(stm32_crc32(&data), mpeg2(&reversed));
        }
    }

    #[test]
    fn yk_crc16_vectors() {
        assert_eq!(yk_crc16(b"123456789"), 0x6F91);
        assert_eq!(!yk_crc16(b"123456789"), 0x906E);
        assert_eq!(yk_crc16(&[0u8; 64]), 0x5B6B);
        let data = b"some config bytes";
        let c = !yk_crc16(data);
        let mut with = data.to_vec();
        with.extend_from_slice(&c.to_le_bytes());
        assert_eq!(yk_crc16(&with), YK_CRC_OK_RESIDUAL);
    }
}
