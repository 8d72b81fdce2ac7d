//! The simulator's own checksum code, written from the fact sheet's *alternative*
//! formulations so that it does not share a bug with the driver's: CRC-32/MPEG-2 over
//! word-reversed bytes (driver: word-wise STM32 register), and a table-driven CRC-16.

/// STM32 CRC as CRC-32/MPEG-2 over the byte stream with every 4-byte word reversed.
pub fn nitrokey_crc(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xFFFF_FFFF;
    for word in data.chunks(4) {
        for i in (0..4).rev() {
            let b = word.get(i).copied().unwrap_or(0);
            crc ^= u32::from(b) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04C1_1DB7
                } else {
                    crc << 1
                };
            }
        }
    }
    crc
}

const fn crc16_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u16;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x8408
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

const CRC16_TABLE: [u16; 256] = crc16_table();

/// Raw ISO 13239 CRC-16 (init 0xFFFF, no final XOR), table driven.
pub fn yubikey_crc(data: &[u8]) -> u16 {
    data.iter().fold(0xFFFF, |crc, &b| {
        let idx = usize::from((crc ^ u16::from(b)) as u8);
        (crc >> 8) ^ CRC16_TABLE.get(idx).copied().unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors() {
        assert_eq!(nitrokey_crc(&[0; 4]), 0xC704_DD7B);
        assert_eq!(nitrokey_crc(&[0; 60]), 0xEF6E_B7DF);
        assert_eq!(yubikey_crc(b"123456789"), 0x6F91);
        assert_eq!(yubikey_crc(&[0; 64]), 0x5B6B);
    }
}
